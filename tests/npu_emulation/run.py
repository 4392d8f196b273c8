"""Run a module under the torch_npu emulation, in this process: the way a test starts a whole program on the NPU path.

    python -m tests.npu_emulation.run [--profile 2.1.0.post17] [--visible-cards 1] [--register-npu-device] \
        -m vggt.cli predict ...

(also as torchrun's module: `torch.distributed.run --nproc_per_node 2 -m tests.npu_emulation.run ... -m MODULE`).
"""

from __future__ import annotations

import argparse
import runpy
import sys

from tests.npu_emulation import profiles
from tests.npu_emulation.install import activate_in_this_process


def main(argv: list[str]) -> None:
    """Parse the emulation's options up to `-m MODULE`, activate it, then run MODULE as __main__ with the rest."""
    if "-m" not in argv:
        raise SystemExit("usage: python -m tests.npu_emulation.run [options] -m MODULE [ARGS...]")
    split = argv.index("-m")
    parser = argparse.ArgumentParser(prog="python -m tests.npu_emulation.run")
    parser.add_argument("--profile", default=profiles.NEWEST, choices=sorted(profiles.PROFILES))
    parser.add_argument("--visible-cards", type=int, default=0)
    parser.add_argument("--register-npu-device", action="store_true")
    options = parser.parse_args(argv[:split])
    module, *rest = argv[split + 1 :]
    activate_in_this_process(options.profile, options.visible_cards, options.register_npu_device)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
