"""Frame selection follows the published Co3D rules, checked against a re-statement of them in the test."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.predict.conftest import run_cli
from training.data.co3d import write_annotations
from vggt.evaluation import co3d_opencv_extrinsics
from vggt.evaluation.report import TABLE_COLUMNS, write_report
from vggt.evaluation.sequences import select_co3d
from vggt.runtime import seed_everything


def rotation(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def annotated_frames(
    category: str, sequence: str, count: int, rng: np.random.Generator, far: float = 0.0
) -> list[dict]:
    frames = []
    for i in range(count):
        translation = rng.normal(size=3)
        if i == count // 2:
            translation[0] += far  # one camera far away (the skip rule looks at any frame)
        frames.append(
            {"filepath": f"{category}/{sequence}/images/frame{i:06d}.jpg", "R": rotation(rng).tolist(),
             "T": translation.tolist()}
        )  # fmt: skip
    return frames


@pytest.fixture
def annotations(tmp_path: Path) -> tuple[Path, dict[str, dict[str, list[dict]]]]:
    rng = np.random.default_rng(0)
    content = {
        "apple": {
            "s3": annotated_frames("apple", "s3", 12, rng),
            "s1": annotated_frames("apple", "s1", 9, rng),  # too short
            "s2": annotated_frames("apple", "s2", 15, rng, far=2e5),  # T sum above 1e5
            "s0": annotated_frames("apple", "s0", 11, rng, far=-3e5),  # signed: a large negative sum is kept
        },
        "tv": {f"t{i:02d}": annotated_frames("tv", f"t{i:02d}", 10 + i % 3, rng) for i in range(13)},
    }
    for category, sequences in content.items():
        write_annotations(tmp_path / f"{category}_test.jgz", sequences)
    return tmp_path, content


def restated_protocol(content, categories, num_frames, min_frames, fast_eval, seed):
    """(category, sequence, drawn frame ids) by the issue's wording of the protocol."""
    random.seed(seed)
    np.random.seed(seed)
    drawn = []
    for category in categories:
        names = sorted(content[category])
        if fast_eval and len(names) >= 10:
            names = sorted(random.sample(names, 10))
        for name in names:
            frames = content[category][name]
            if len(frames) < min_frames or any(sum(frame["T"]) > 1e5 for frame in frames):
                continue
            drawn.append((category, name, np.random.choice(len(frames), num_frames, replace=False).tolist()))
    return drawn


@pytest.mark.parametrize("fast_eval", [False, True])
def test_selection_matches_the_published_rules(annotations, fast_eval):
    anno_dir, content = annotations
    categories = ["tv", "apple"]  # list order, not alphabetical
    seed_everything(0)
    selection = select_co3d(Path("/co3d"), anno_dir, categories, 4, 10, fast_eval)
    got = [(s.group, s.name, [int(p.stem.removeprefix("frame")) for p in s.image_paths]) for s in selection.sequences]
    assert got == restated_protocol(content, categories, 4, 10, fast_eval, 0)
    assert sum(s.group == "tv" for s in selection.sequences) == (10 if fast_eval else 13)
    assert {s.name for s in selection.sequences if s.group == "apple"} == {"s0", "s3"}
    assert any("s1" in reason for reason in selection.skipped["apple"])
    assert any("s2" in reason for reason in selection.skipped["apple"])


def test_ground_truth_cameras_are_the_converted_pytorch3d_cameras_in_drawn_order(annotations):
    anno_dir, content = annotations
    seed_everything(3)
    sequence = select_co3d(Path("/co3d"), anno_dir, ["apple"], 5, 10, False).sequences[0]
    ids = [int(p.stem.removeprefix("frame")) for p in sequence.image_paths]
    frames = content["apple"][sequence.name]
    expected = [co3d_opencv_extrinsics(frames[i]["R"], frames[i]["T"]) for i in ids]
    np.testing.assert_allclose(sequence.extrinsics, np.stack(expected))
    assert sequence.image_paths[0] == Path("/co3d") / frames[ids[0]]["filepath"]
    assert sequence.depth_readers is None  # no depth maps on disk


def test_training_annotations_are_accepted_and_skipped_by_the_same_translation_rule(tmp_path):
    rng = np.random.default_rng(1)
    pytorch3d = {"a": annotated_frames("cup", "a", 12, rng), "b": annotated_frames("cup", "b", 12, rng, far=2e5)}
    as_training = {
        name: [{"filepath": f["filepath"], "extri": co3d_opencv_extrinsics(f["R"], f["T"]).tolist(),
                "intri": np.eye(3).tolist()} for f in frames]
        for name, frames in pytorch3d.items()
    }  # fmt: skip
    write_annotations(tmp_path / "cup_test.jgz", as_training)
    seed_everything(0)
    selection = select_co3d(Path("/co3d"), tmp_path, ["cup"], 4, 10, False)
    assert [s.name for s in selection.sequences] == ["a"]
    assert selection.camera_formats == {"OpenCV extri (training annotations)"}


def test_missing_annotation_files_and_bad_counts_are_refused(annotations):
    anno_dir, _ = annotations
    with pytest.raises(FileNotFoundError, match="--categories"):
        select_co3d(Path("/co3d"), anno_dir, ["apple", "banana"], 4, 10, False)
    with pytest.raises(ValueError, match="--min-frames"):
        select_co3d(Path("/co3d"), anno_dir, ["apple"], 10, 5, False)


def test_a_frame_without_filepath_is_refused_naming_the_file_sequence_and_frame(annotations):
    anno_dir, content = annotations
    del content["apple"]["s3"][7]["filepath"]
    write_annotations(anno_dir / "apple_test.jgz", content["apple"])
    result = run_cli("eval", "co3d", "--co3d-dir", "/co3d", "--anno-dir", anno_dir, "--categories", "apple",
                     "--num-frames", 4, "--min-frames", 10, "--device", "cpu")  # fmt: skip
    assert result.status == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert f"{anno_dir / 'apple_test.jgz'} sequence 's3' frame 7: no \"filepath\"" in message


def test_a_sequence_with_a_non_finite_ground_truth_camera_is_left_out_with_a_warning(annotations):
    anno_dir, content = annotations
    content["apple"]["s0"][2]["T"][1] = float("nan")  # its T sum is NaN: not above 1e5, so the T rule keeps it
    write_annotations(anno_dir / "apple_test.jgz", content["apple"])
    seed_everything(0)
    with pytest.warns(UserWarning, match=r"apple_test.jgz: sequence 's0' left out, .* frame 2 holds non-finite"):
        selection = select_co3d(Path("/co3d"), anno_dir, ["apple"], 4, 10, False)
    assert [s.name for s in selection.sequences] == ["s3"]
    assert selection.non_finite == ["apple/s0"]
    assert any(reason.startswith("s0: the ground-truth camera of frame 2") for reason in selection.skipped["apple"])
    np.random.seed(0)  # the left-out s0 (sorted first) draws nothing: s3 gets the first draw after seeding
    expected = np.random.choice(len(content["apple"]["s3"]), 4, replace=False).tolist()
    assert [int(p.stem.removeprefix("frame")) for p in selection.sequences[0].image_paths] == expected


def test_the_json_report_holds_null_for_non_finite_numbers_and_is_strict_json(tmp_path):
    row = dict.fromkeys(TABLE_COLUMNS, float("nan")) | {"sequences": 1, "pairs": 0}
    report = {
        "dataset": "custom",
        "protocol": {"seed": 0},
        "model": {"source": "m", "weights_sha256": "0", "config": "tiny"},
        "runtime": {"device": "cpu", "device_name": "cpu", "dtype": "float32", "torch": "2", "vggt_npu": "0"},
        "created": "now",
        "skipped": {},
        "groups": {"scene": row},
        "mean": {"AUC30": float("inf"), "DepthAbsRel": 0.5},
    }
    json_path, _ = write_report(report, tmp_path)

    def refuse(constant: str) -> None:
        raise AssertionError(f"{json_path} holds the non-JSON constant {constant}")

    written = json.loads(json_path.read_text(), parse_constant=refuse)
    assert written["groups"]["scene"]["AUC30"] is None and written["groups"]["scene"]["pairs"] == 0
    assert written["mean"] == {"AUC30": None, "DepthAbsRel": 0.5}
