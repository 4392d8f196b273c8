"""`vggt predict --nproc 2` (sequence-parallel, 2 gloo processes) writes the predictions of `--nproc 1`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import vggt.predict.pipeline as pipeline
from tests.predict.conftest import predict_args, run_cli

DENSE = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf", "extrinsic", "intrinsic")


@pytest.mark.slow
def test_two_processes_write_the_predictions_of_one(tiny_weights: Path, scene_images: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_text("40 50\n100 60\n")
    outputs = {}
    for nproc in (1, 2):
        out = tmp_path / f"nproc{nproc}"
        # 224 px: the tracker needs at least 128 px
        extra = ("--export", "none", "--query-points", queries, "--resolution", 224, "--nproc", nproc)
        result = run_cli(*predict_args(scene_images, out, tiny_weights, *extra))
        assert result.status == 0, result.stderr
        outputs[nproc] = np.load(out / "predictions.npz")
    single, parallel = outputs[1], outputs[2]
    assert sorted(parallel.files) == sorted(single.files)
    assert single["depth"].shape[0] == 3  # 3 frames over 2 processes: 2 + 1
    for key in DENSE:
        scale = max(1.0, float(np.abs(single[key]).max()))
        assert np.abs(parallel[key] - single[key]).max() <= 1e-4 * scale, key
    assert single["camera_valid"].all()  # the tiny weights' plausible cameras
    assert np.array_equal(parallel["camera_valid"], single["camera_valid"])
    error = np.abs(parallel["track"] - single["track"])  # the reference README's pixel tolerances
    assert error.max() <= 1.0 and error.mean() <= 0.2
    assert np.abs(parallel["vis"] - single["vis"]).max() <= 0.05


@pytest.mark.slow
def test_two_processes_in_bf16_with_offload_stay_within_the_bf16_bound_of_one(
    tiny_weights: Path, scene_images: Path, tmp_path: Path
) -> None:
    """bf16 storage and --offload along the --nproc data path (kept layers and outputs in bf16 / in host memory,
    gathered to rank 0): the same predictions as one process but for bf16's other summation order."""
    outputs = {}
    for nproc in (1, 2):
        out = tmp_path / f"nproc{nproc}"
        extra = ("--export", "none", "--dtype", "bfloat16", "--offload", "--nproc", nproc)
        result = run_cli(*predict_args(scene_images, out, tiny_weights, *extra))
        assert result.status == 0, result.stderr
        outputs[nproc] = np.load(out / "predictions.npz")
    for key in DENSE:
        single, parallel = outputs[1][key].astype(np.float64), outputs[2][key].astype(np.float64)
        assert np.linalg.norm(parallel - single) <= 1e-2 * np.linalg.norm(single), key  # the bf16 bound


@pytest.mark.slow
def test_nproc_that_does_not_divide_the_heads_is_refused(tiny_weights: Path, scene_images: Path, tmp_path: Path):
    result = run_cli(*predict_args(scene_images, tmp_path / "out", tiny_weights, "--export", "none", "--nproc", 3))
    assert result.status != 0
    assert "use one of [1, 2, 4]" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_helper_rank_loads_and_serves_without_looking_at_out(
    tiny_weights: Path, scene_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.npz").write_text("mine")  # a conflict that stops rank 0 before any work
    served = []
    monkeypatch.setattr(pipeline, "is_helper_rank", lambda: True)
    monkeypatch.setattr(pipeline, "serve_forward", lambda model, *args: served.append(model))
    options = pipeline.PredictOptions(
        images=[scene_images], out=out, model=str(tiny_weights), device="cpu", resolution=112, exports=()
    )
    assert pipeline.predict(options) is None
    assert len(served) == 1
    assert [p.name for p in out.iterdir()] == ["predictions.npz"] and (out / "predictions.npz").read_text() == "mine"
    assert capsys.readouterr().out == ""  # rank 0 alone prints the estimate and the progress
