"""`vggt eval` end to end on generated Co3D-layout and custom-layout scenes, and the runner's wiring."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.predict.conftest import run_cli
from training.data.synthetic import generate_scenes
from vggt.config import VGGTConfig
from vggt.evaluation.runner import GroupResult, evaluate_sequence, sample_at_model_pixels
from vggt.evaluation.sequences import select_co3d
from vggt.runtime import seed_everything
from vggt.scenes.co3d_files import depth_paths, read_annotations, read_masked_depth
from vggt.synthetic_weights import synthetic_model
from vggt.utils.geometry import unproject_depth_map_to_point_map
from vggt.utils.load_fn import load_and_preprocess_images_with_transforms
from vggt.utils.pose_enc import extri_intri_to_pose_encoding

CATEGORY = "mug"
SEQUENCES, FRAMES, NUM_FRAMES = 3, 8, 4


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval_scenes")
    return generate_scenes(out, SEQUENCES, FRAMES, image_size=(112, 84), category=CATEGORY, splits={"test": 1})


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("eval_tiny")
    synthetic_model(VGGTConfig.tiny()).save_pretrained(directory)
    return directory


def co3d_args(scenes: dict, weights: Path, out: Path, *extra: object) -> list[object]:
    return [
        "eval", "co3d", "--model", weights, "--co3d-dir", scenes["co3d_dir"], "--anno-dir", scenes["annotation_dir"],
        "--categories", CATEGORY, "--num-frames", NUM_FRAMES, "--min-frames", 6, "--device", "cpu",
        "--resolution", 112, "--out", out, *extra,
    ]  # fmt: skip


def test_eval_co3d_on_synthetic_scenes_writes_a_report_with_provenance(scenes, tiny_weights, tmp_path):
    result = run_cli(*co3d_args(scenes, tiny_weights, tmp_path / "res"))
    assert result.status == 0, result.stderr
    report = json.loads((tmp_path / "res" / "co3d_eval.json").read_text())
    row = report["groups"][CATEGORY]
    assert row["sequences"] == SEQUENCES and row["pairs"] == SEQUENCES * NUM_FRAMES * (NUM_FRAMES - 1) // 2
    for key in ("AUC30", "AUC15", "AUC5", "AUC3"):
        assert 0.0 <= report["mean"][key] <= 100.0
    assert report["mean"]["AUC30"] >= report["mean"]["AUC3"]
    assert report["mean"]["DepthAbsRel"] is not None and report["mean"]["DepthAbsRel"] >= 0
    assert report["mean"]["PointOverall"] is not None and report["mean"]["PointOverall"] >= 0
    weights_file = tiny_weights / "model.safetensors"
    assert report["model"]["weights_sha256"] == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert report["runtime"]["device"] == "cpu" and report["runtime"]["dtype"] == "float32"
    assert report["protocol"]["num_frames"] == NUM_FRAMES and report["protocol"]["categories"] == [CATEGORY]
    assert report["published_protocol"] is False
    differences = " ".join(report["differences_from_published"])
    for departure in ("num-frames 4", "min-frames 6", "resolution 112", "categories mug", "dtype float32"):
        assert departure in differences
    assert (
        f"{CATEGORY} " in result.stdout
        and "mean" in result.stdout
        and "differs from the published protocol" in result.stdout
    )
    markdown = (tmp_path / "res" / "co3d_eval.md").read_text()
    assert "Settings differ from the published Co3D protocol" in markdown and f"| {CATEGORY} |" in markdown
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["co3d_eval.json", "co3d_eval.md"]


def test_same_seed_gives_the_same_numbers_and_another_seed_other_frames(scenes, tiny_weights, tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 5)):
        assert run_cli(*co3d_args(scenes, tiny_weights, tmp_path / name, "--seed", seed)).status == 0
        runs[name] = json.loads((tmp_path / name / "co3d_eval.json").read_text())
    assert runs["a"]["groups"] == runs["b"]["groups"]
    assert runs["a"]["groups"] != runs["c"]["groups"]


def test_eval_custom_reads_the_custom_layout(scenes, tiny_weights, tmp_path):
    annotations = read_annotations(scenes["annotation_dir"] / f"{CATEGORY}_test.jgz")
    root = tmp_path / "custom"
    for name, frames in annotations.items():
        scene = root / name
        (scene / "depths").mkdir(parents=True)
        entries = []
        for i, frame in enumerate(frames):
            image = scenes["co3d_dir"] / frame["filepath"]
            depth_png = image.parent.parent / "depths" / f"{image.name}.geometric.png"
            np.save(scene / "depths" / f"{i}.npy", read_masked_depth(depth_png, None))
            entries.append({"image": str(image), "depth": f"depths/{i}.npy", "extrinsic": frame["extri"],
                            "intrinsic": frame["intri"]})  # fmt: skip
        (scene / "cameras.json").write_text(json.dumps({"frames": entries}))
    out = tmp_path / "res"
    result = run_cli(
        "eval", "custom", "--root", root, "--model", tiny_weights, "--num-frames", 3, "--min-frames", 3,
        "--device", "cpu", "--resolution", 112, "--out", out,
    )  # fmt: skip
    assert result.status == 0, result.stderr
    report = json.loads((out / "custom_eval.json").read_text())
    assert list(report["groups"]) == sorted(annotations)
    assert all(row["pairs"] == 3 for row in report["groups"].values())
    assert report["mean"]["DepthAbsRel"] is not None
    assert "published_protocol" not in report


def test_eval_refuses_missing_annotations_with_a_hint(scenes, tiny_weights, tmp_path):
    result = run_cli(*co3d_args(scenes, tiny_weights, tmp_path, "--categories", "apple"))
    assert result.status == 2 and "apple_test.jgz" in result.stderr and "--categories" in result.stderr


class GroundTruthModel(torch.nn.Module):
    """Predicts a sequence's true cameras (through the pose encoding), a scaled copy of its true depth maps and its
    true world points moved by a similarity. The scenes are 112x84 and evaluated at 112: model pixels are file
    pixels."""

    def __init__(self, annotations: list[dict], co3d_dir: Path, image_paths: list[Path]):
        super().__init__()
        frames = {str(co3d_dir / frame["filepath"]): frame for frame in annotations}
        chosen = [frames[str(path)] for path in image_paths]  # in the order the frames are fed
        self.extrinsics = np.array([frame["extri"] for frame in chosen], dtype=np.float32)
        self.intrinsics = np.array([frame["intri"] for frame in chosen], dtype=np.float32)
        self.depth = np.stack(
            [read_masked_depth(*depth_paths(co3d_dir, frame["filepath"])) for frame in chosen]
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        height, width = images.shape[-2:]
        assert (height, width) == self.depth.shape[1:]
        extrinsics, intrinsics = torch.from_numpy(self.extrinsics)[None], torch.from_numpy(self.intrinsics)[None]
        points = unproject_depth_map_to_point_map(self.depth, self.extrinsics, self.intrinsics)
        moved = 3.0 * points @ np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]).T + 2.0  # a similarity of the world
        return {
            "pose_enc": extri_intri_to_pose_encoding(extrinsics, intrinsics, (height, width)),
            "depth": torch.from_numpy(self.depth * 7.0)[None, ..., None],
            "world_points": torch.from_numpy(moved.astype(np.float32))[None],
        }


def test_a_model_that_predicts_the_ground_truth_scores_perfectly(scenes):
    seed_everything(0)
    selection = select_co3d(scenes["co3d_dir"], scenes["annotation_dir"], [CATEGORY], NUM_FRAMES, 6, False)
    annotations = read_annotations(scenes["annotation_dir"] / f"{CATEGORY}_test.jgz")
    group = GroupResult()
    for sequence in selection.sequences:
        model = GroundTruthModel(annotations[sequence.name], scenes["co3d_dir"], sequence.image_paths)
        evaluate_sequence(model, sequence, torch.device("cpu"), torch.float32, 112, group)
    summary = group.summary()
    assert summary["pairs"] == SEQUENCES * 6
    assert summary["AUC3"] == pytest.approx(100.0) and summary["RotErrMedian"] < 0.1
    assert summary["DepthAbsRel"] == pytest.approx(0.0, abs=1e-3) and summary["DepthDelta1.25"] == 1.0
    assert summary["PointOverall"] == pytest.approx(0.0, abs=1e-3)


def test_a_wrong_depth_order_is_caught(scenes):
    # the same model fed frames in reverse order no longer matches: the wiring test above can fail
    seed_everything(0)
    sequence = select_co3d(scenes["co3d_dir"], scenes["annotation_dir"], [CATEGORY], NUM_FRAMES, 6, False).sequences[0]
    annotations = read_annotations(scenes["annotation_dir"] / f"{CATEGORY}_test.jgz")
    group = GroupResult()
    model = GroundTruthModel(annotations[sequence.name], scenes["co3d_dir"], sequence.image_paths[::-1])
    evaluate_sequence(model, sequence, torch.device("cpu"), torch.float32, 112, group)
    assert group.summary()["AUC3"] < 100.0 and group.summary()["DepthAbsRel"] > 0.01


def test_ground_truth_depth_is_sampled_at_the_model_pixels(tmp_path):
    # a 56x28 image cropped to width 28 halves both axes: model pixel (u, v) sits on original pixel (2u + 1, 2v + 1)
    from PIL import Image

    Image.new("RGB", (56, 28)).save(tmp_path / "frame.png")
    images, transforms = load_and_preprocess_images_with_transforms([tmp_path / "frame.png"], "crop", 28)
    assert images.shape[-2:] == (14, 28)
    depth = np.arange(28 * 56, dtype=np.float32).reshape(28, 56)
    resampled = sample_at_model_pixels(depth, transforms[0], 14, 28)
    np.testing.assert_array_equal(resampled, depth[1::2, 1::2])


def test_default_settings_with_test_annotations_and_bf16_follow_the_published_protocol():
    from vggt.evaluation.pipeline import EvalOptions, differences_from_published
    from vggt.evaluation.sequences import CO3D_TEST_FORMAT, CO3D_TRAINING_FORMAT, Selection

    cpu = torch.device("cpu")  # bf16 is supported there, so it is the published dtype
    published = Selection(camera_formats={CO3D_TEST_FORMAT})
    assert differences_from_published(EvalOptions("co3d"), published, torch.bfloat16, cpu) == []
    changed = EvalOptions("co3d", num_frames=8, seed=1, categories=("tv",), fast_eval=True)
    mixed = Selection(camera_formats={CO3D_TEST_FORMAT, CO3D_TRAINING_FORMAT})
    differences = " | ".join(differences_from_published(changed, mixed, torch.float16, cpu))
    for departure in ("num-frames 8", "seed 1", "categories tv", "--fast-eval", "annotations", "dtype float16"):
        assert departure in differences


def test_bf16_evaluation_runs_and_leaves_other_files_in_out_alone(scenes, tiny_weights, tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_cli(*co3d_args(scenes, tiny_weights, out, "--dtype", "bfloat16"))
    assert result.status == 0, result.stderr
    report = json.loads((out / "co3d_eval.json").read_text())
    assert report["runtime"]["dtype"] == "bfloat16"
    assert not any(d.startswith("dtype") for d in report["differences_from_published"])
    assert (out / "notes.txt").read_text() == "mine"


def test_bf16_heads_are_recorded_as_a_departure_from_the_protocol(scenes, tiny_weights, tmp_path):
    out = tmp_path / "res"
    result = run_cli(*co3d_args(scenes, tiny_weights, out, "--dtype", "bfloat16", "--heads-autocast"))
    assert result.status == 0, result.stderr
    report = json.loads((out / "co3d_eval.json").read_text())
    assert report["runtime"]["heads_autocast"] is True
    assert any(d.startswith("--heads-autocast") for d in report["differences_from_published"])
    assert "bfloat16" in result.stdout
