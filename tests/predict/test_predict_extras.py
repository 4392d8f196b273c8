"""The core of `vggt predict` needs no optional package; the exports that do say which one; --help teaches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.predict.conftest import predict_args, run_cli, tiny_model_with_plausible_cameras
from training.utils.checkpoint import rng_state, save_atomic

OPTIONAL = ("trimesh", "scipy", "pycolmap", "viser", "av", "matplotlib")
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_optional_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every optional package unimportable for this test (an entry of None makes `import` raise ImportError)."""
    for name in OPTIONAL:
        monkeypatch.setitem(sys.modules, name, None)


def test_importing_the_cli_and_every_predict_module_loads_no_optional_package() -> None:
    """Optional packages are imported lazily, by the export that needs them; a fresh interpreter, where nothing
    else has loaded them yet, shows whether importing our modules did."""
    code = "\n".join(
        (
            "import importlib, pkgutil, sys",
            "import vggt.cli, vggt.predict",
            "for module in pkgutil.iter_modules(vggt.predict.__path__, 'vggt.predict.'):",
            "    importlib.import_module(module.name)",
            f"print(sorted(set({OPTIONAL!r}) & set(sys.modules)))",
        )
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"imported at module level: {result.stdout.strip()}"


def test_core_exports_work_without_optional_packages(tmp_path, tiny_weights, scene_images, no_optional_packages):
    out = tmp_path / "new" / "parents" / "out"
    result = run_cli(*predict_args(scene_images, out, tiny_weights, "--export", "depth,ply,preview"))
    assert result.status == 0, result.stderr
    written = {"predictions.npz", "depth", "confidence", "points.ply", "preview", "vggt_predict_manifest.json"}
    assert {p.name for p in out.iterdir()} == written
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # no staging directory left in the new parents


@pytest.mark.parametrize(("export", "package"), [("glb", "trimesh"), ("colmap", "pycolmap")])
def test_an_export_whose_package_is_missing_names_the_extra(
    tmp_path, tiny_weights, scene_images, no_optional_packages, export: str, package: str
) -> None:
    result = run_cli(*predict_args(scene_images, tmp_path / "out", tiny_weights, "--export", export))
    assert result.status == 2
    assert f"needs {package}" in result.stderr and "pip install 'vggt-npu[export]'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_help_lists_predict_and_view_and_predict_help_shows_examples_and_outputs() -> None:
    top = run_cli("--help")
    assert top.status == 0 and "predict" in top.stdout and "view" in top.stdout
    predict = run_cli("predict", "--help")
    for text in ("vggt predict --images scene/images --out scene/vggt", "--ba", "sparse/", "points.ply", "--fps"):
        assert text in predict.stdout
    view = run_cli("view", "--help")
    assert "vggt view scene/vggt" in view.stdout and "pip install 'vggt-npu[demo]'" in view.stdout


def test_a_training_checkpoint_without_point_and_track_heads_runs_with_those_heads_off(tmp_path, scene_images) -> None:
    model = tiny_model_with_plausible_cameras()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("point_head.", "track_head."))}
    checkpoint = tmp_path / "checkpoint.pt"
    save_atomic({"model": state, "epoch": 3, "rng": rng_state()}, checkpoint)  # as the trainer writes it
    out = tmp_path / "out"

    result = run_cli(*predict_args(scene_images, out, checkpoint, "--config", "tiny", "--export", "none"))

    assert result.status == 0, result.stderr
    assert "has no weights for point_head, track_head; running without them" in result.stderr
    with np.load(out / "predictions.npz") as data:
        assert "depth" in data.files and "world_points" not in data.files
