"""Run the patched upstream VGGT at the reference's small sizes, VGGT_KERNELS=npu, through the torch_npu emulation.

A script for upstream's virtual environment (tests/test_npu_patch_upstream.py starts it): both trees hold a
package named `vggt`, so the patched tree goes first on sys.path and this repository stays off it; only the
emulation's folder joins, so that `import torch_npu` finds the emulation.

    python tests/upstream_patch_parity.py TREE WEIGHTS FIXTURE OUT SIZES

Builds the model from SIZES (JSON: the patched VGGT's constructor arguments), loads WEIGHTS (a state dict
file), runs FIXTURE's inputs, writes the outputs and the captured
aggregator layers to OUT (npz) and prints the fused-op call counts as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

FUSED_OPS = ("npu_fusion_attention", "npu_rotary_mul", "npu_gelu")


def count_calls(module, names: tuple[str, ...], counts: Counter) -> None:
    """Wrap module.<name> for each name so that every call adds one to counts[name]."""
    for name in names:
        original = getattr(module, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        setattr(module, name, counted)


def main(tree: str, weights: str, fixture: str, out: str, sizes: str) -> None:
    os.environ["VGGT_KERNELS"] = "npu"
    sys.path.insert(0, str(Path(__file__).resolve().parent / "npu_emulation"))
    sys.path.insert(0, tree)
    import torch_npu  # the emulation

    from vggt.models.vggt import VGGT  # the patched upstream model

    counts: Counter = Counter()
    count_calls(torch_npu, FUSED_OPS, counts)
    model = VGGT(**json.loads(sizes)).eval()
    model.load_state_dict(torch.load(weights), strict=True)
    ref = np.load(fixture)
    captured = {}
    model.aggregator.register_forward_hook(lambda module, args, output: captured.update(tokens=output[0]))
    with torch.no_grad():
        outputs = model(torch.from_numpy(ref["images"]), query_points=torch.from_numpy(ref["query_points"]))
    arrays = {key: outputs[key].numpy() for key in ("pose_enc", "depth", "depth_conf", "world_points", "track")}
    arrays.update({key: outputs[key].numpy() for key in ("world_points_conf", "vis", "conf")})
    arrays["pose_enc_list"] = torch.stack(outputs["pose_enc_list"]).numpy()
    for key in ref.files:
        if key.startswith("aggregated_tokens_"):
            arrays[key] = captured["tokens"][int(key.rsplit("_", 1)[1])].numpy()
    np.savez(out, **arrays)
    print(json.dumps(dict(counts)))


if __name__ == "__main__":
    main(*sys.argv[1:6])
