"""`vggt eval` end to end: seed, select frames, load the model, evaluate, report."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import vggt
from vggt.evaluation.report import write_report
from vggt.evaluation.runner import evaluate, mean_over_groups
from vggt.evaluation.sequences import (
    CO3D_TEST_FORMAT,
    FAST_EVAL_SEQUENCES,
    MAX_TRANSLATION_SUM,
    Selection,
    select_co3d,
    select_custom,
)
from vggt.predict.inference import load_model
from vggt.runtime import (
    bf16_supported,
    configure_process,
    describe_dtype_choice,
    device_name,
    parse_dtype,
    resolve_device,
    seed_everything,
)
from vggt.scenes.co3d_files import SEEN_CATEGORIES
from vggt.weights import resolve_source

PUBLISHED_CO3D = {"num_frames": 10, "min_frames": 50, "seed": 0, "resolution": 518}


@dataclass
class EvalOptions:
    dataset: str  # "co3d" or "custom"
    model: str = "facebook/VGGT-1B"
    config: str | dict[str, Any] | None = None
    device: str = "auto"
    dtype: str = "auto"
    resolution: int = 518
    heads_autocast: bool = False  # camera, depth and point heads in the autocast dtype too
    num_frames: int = 10
    min_frames: int = 50
    seed: int = 0
    out: Path | None = None
    co3d_dir: Path | None = None  # co3d
    anno_dir: Path | None = None
    categories: Sequence[str] = SEEN_CATEGORIES
    fast_eval: bool = False
    root: Path | None = None  # custom


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def protocol_settings(options: EvalOptions, selection: Selection) -> dict[str, Any]:
    """Everything that decides which frames are evaluated and how they are fed: runs compare only if these match."""
    settings: dict[str, Any] = {
        "num_frames": options.num_frames,
        "min_frames": options.min_frames,
        "seed": options.seed,
        "resolution": options.resolution,
        "preprocessing": "crop",
    }
    if options.dataset == "co3d":
        settings |= {
            "categories": list(options.categories),
            "fast_eval": options.fast_eval,
            "fast_eval_sequences": FAST_EVAL_SEQUENCES,
            "max_translation_sum": MAX_TRANSLATION_SUM,
            "camera_formats": sorted(selection.camera_formats),
            "annotations_sha256": {
                category: file_sha256(options.anno_dir / f"{category}_test.jgz") for category in options.categories
            },
        }
    else:
        settings["scenes"] = sorted({sequence.group for sequence in selection.sequences})
    return settings


def differences_from_published(
    options: EvalOptions, selection: Selection, dtype: torch.dtype, device: torch.device
) -> list[str]:
    """Human-readable ways in which a Co3D run departs from the published protocol (empty: it follows it)."""
    differences = [
        f"{key.replace('_', '-')} {getattr(options, key)} (published: {value})"
        for key, value in PUBLISHED_CO3D.items()
        if getattr(options, key) != value
    ]
    if tuple(options.categories) != SEEN_CATEGORIES:
        differences.append(f"categories {', '.join(options.categories)} (published: the 41 seen categories)")
    if options.fast_eval:
        differences.append(
            f"--fast-eval: at most {FAST_EVAL_SEQUENCES} sequences per category (the published fast-eval numbers "
            "are about 90 AUC@30 for VGGT-1B, the full protocol's 88.2-89.5)"
        )
    if selection.camera_formats != {CO3D_TEST_FORMAT}:
        differences.append(
            f"annotations: {', '.join(sorted(selection.camera_formats))} (published: the evaluation preprocessing's "
            "PyTorch3D R, T test files)"
        )
    if selection.non_finite:
        differences.append(
            f"{len(selection.non_finite)} sequences with a non-finite ground-truth camera left out, e.g. "
            f"{selection.non_finite[0]} (published: kept, their pairs scored from NaN)"
        )
    expected = torch.bfloat16 if bf16_supported(device) else torch.float16  # published: bf16 (fp16 before sm80)
    if dtype != expected:
        differences.append(
            f"dtype {str(dtype).removeprefix('torch.')} (published: {str(expected).removeprefix('torch.')})"
        )
    if options.heads_autocast and dtype != torch.float32:
        differences.append("--heads-autocast: camera and depth heads in the autocast dtype (published: float32)")
    return differences


def run_evaluation(options: EvalOptions) -> dict[str, Any]:
    """Evaluate options.model on the dataset; returns the report (also written to options.out when given)."""
    device = resolve_device(options.device)
    dtype = parse_dtype(options.dtype, device)
    configure_process(device, allow_tf32=False)  # the protocol runs without TF32 / HF32
    seed_everything(options.seed)  # once, before the first category, as published
    if options.dataset == "co3d":
        selection = select_co3d(
            options.co3d_dir, options.anno_dir, options.categories, options.num_frames, options.min_frames,
            options.fast_eval,
        )  # fmt: skip
    else:
        selection = select_custom(options.root, options.num_frames, options.min_frames)
    if not selection.sequences:
        raise ValueError(
            f"no sequence has at least --min-frames {options.min_frames} frames (see the skipped list); nothing to "
            "evaluate"
        )
    weights_file, _ = resolve_source(options.model)
    model = load_model(options.model, options.config, options.heads_autocast, dtype)
    model.aggregator.kept_dtype = None  # the published protocol's heads read the layers as computed (float32)
    print(f"evaluating on {device} in {describe_dtype_choice(options.dtype, device)}")
    groups = evaluate(model, selection.sequences, device, dtype, options.resolution)
    rows = {name: group.summary() for name, group in groups.items()}
    report: dict[str, Any] = {
        "dataset": options.dataset,
        "protocol": protocol_settings(options, selection),
        "model": {
            "source": str(options.model),
            "weights_file": str(weights_file),
            "weights_sha256": file_sha256(weights_file),
            "config": options.config if options.config is not None else "config.json next to the weights, or vggt_1b",
        },
        "runtime": {
            "device": str(device),
            "device_name": device_name(device),
            "dtype": dtype_name(dtype),
            "heads_autocast": options.heads_autocast,
            "tf32": False,
            "torch": torch.__version__,
            "vggt_npu": vggt.__version__,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "skipped": selection.skipped,
        "groups": rows,
        "mean": mean_over_groups(rows),
    }
    if options.dataset == "co3d":
        report["differences_from_published"] = differences_from_published(options, selection, dtype, device)
        report["published_protocol"] = not report["differences_from_published"]
    if options.out is not None:
        write_report(report, options.out)
    return report
