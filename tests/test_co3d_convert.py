"""Raw Co3D v2 -> VGGT annotations: cameras built from known OpenCV ones come back reprojecting identically."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from training.data.co3d import Co3dDataset
from training.data.co3d_convert import main
from vggt.scenes.co3d_files import read_annotations

H, W = 24, 40  # not square, so the isotropic and per-axis NDC scales differ
FLIP = np.diag([-1.0, -1.0, 1.0])


def opencv_camera(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random OpenCV camera (R [3, 3], t [3], K [3, 3]) looking at the origin from about 4 units."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.diag(r))
    rotation *= np.linalg.det(rotation)
    translation = np.array([0.2, -0.1, 4.0]) + rng.normal(scale=0.1, size=3)
    fx, fy = rng.uniform(30, 50, size=2)
    cx, cy = W / 2 + rng.uniform(-3, 3), H / 2 + rng.uniform(-3, 3)
    return rotation, translation, np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])


def pytorch3d_viewpoint(rotation: np.ndarray, translation: np.ndarray, k: np.ndarray, fmt: str) -> dict:
    """Invert the documented conversion: PyTorch3D R = R_cv^T F, T = F t_cv; NDC focal / principal point."""
    if fmt == "ndc_isotropic":
        scale_x = scale_y = min(H, W) / 2
    else:
        scale_x, scale_y = W / 2, H / 2
    return {
        "R": (rotation.T @ FLIP).tolist(),
        "T": (FLIP @ translation).tolist(),
        "focal_length": [k[0, 0] / scale_x, k[1, 1] / scale_y],
        "principal_point": [(W / 2 - k[0, 2]) / scale_x, (H / 2 - k[1, 2]) / scale_y],
        "intrinsics_format": fmt,
    }


def frame_annotation(sequence: str, number: int, viewpoint: dict | None, category: str = "tv") -> dict:
    """A FrameAnnotation dict as in Co3D v2's frame_annotations.jgz."""
    image = f"{category}/{sequence}/images/frame{number + 1:06d}.jpg"  # file numbers need not equal frame_number
    return {
        "sequence_name": sequence,
        "frame_number": number,
        "frame_timestamp": number / 30,
        "image": {"path": image, "size": [H, W]},
        "depth": {
            "path": image.replace("/images/", "/depths/") + ".geometric.png",
            "scale_adjustment": 1.0,
            "mask_path": image.replace("/images/", "/depth_masks/").replace(".jpg", ".png"),
        },
        "mask": {"path": image.replace("/images/", "/masks/").replace(".jpg", ".png"), "mass": 100.0},
        "viewpoint": viewpoint,
        "meta": {},
    }


def write_raw(co3d_dir: Path, annotations: list[dict], category: str = "tv", set_list: dict | None = None) -> None:
    (co3d_dir / category / "set_lists").mkdir(parents=True, exist_ok=True)
    with gzip.open(co3d_dir / category / "frame_annotations.jgz", "wt") as file:
        json.dump(annotations, file)
    if set_list is not None:
        (co3d_dir / category / "set_lists" / "set_lists_fewview_dev.json").write_text(json.dumps(set_list))


def project(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pinhole projection of world points [N, 3] to pixels [N, 2]."""
    cam = points @ rotation.T + translation
    return np.stack([k[0, 0] * cam[:, 0] / cam[:, 2] + k[0, 2], k[1, 1] * cam[:, 1] / cam[:, 2] + k[1, 2]], axis=1)


@pytest.mark.parametrize("fmt", ["ndc_isotropic", "ndc_norm_image_bounds"])
def test_converted_cameras_reproject_points_to_the_original_pixels(tmp_path: Path, capsys, fmt: str) -> None:
    rng = np.random.default_rng(0)
    cameras = {number: opencv_camera(rng) for number in range(5)}
    raw = [frame_annotation("s1", n, pytorch3d_viewpoint(*cameras[n], fmt)) for n in (3, 0, 4, 1, 2)]  # unordered
    write_raw(tmp_path / "co3d", raw)

    assert main(["--co3d-dir", str(tmp_path / "co3d"), "--out-dir", str(tmp_path / "anno")]) == 0

    converted = read_annotations(tmp_path / "anno" / "tv_train.jgz")["s1"]
    assert [f["filepath"] for f in converted] == [f"tv/s1/images/frame{n + 1:06d}.jpg" for n in range(5)]
    points = rng.uniform(-1, 1, size=(50, 3))
    for number, frame in enumerate(converted):
        extri, intri = np.asarray(frame["extri"]), np.asarray(frame["intri"])
        assert extri.shape == (3, 4) and intri.shape == (3, 3)
        np.testing.assert_allclose(
            project(points, extri[:, :3], extri[:, 3], intri), project(points, *cameras[number]), atol=1e-9
        )
    assert "tv: train 1 sequences / 5 frames" in capsys.readouterr().out


def test_pytorch3d_points_in_front_of_the_camera_stay_in_front_and_left_right_flips(tmp_path: Path) -> None:
    # identity PyTorch3D camera 2 units back: X_cam = X_world + (0, 0, 2); +X is left in the image
    viewpoint = {"R": np.eye(3).tolist(), "T": [0, 0, 2], "focal_length": [2, 2], "principal_point": [0, 0]}
    write_raw(tmp_path / "co3d", [frame_annotation("s", 0, viewpoint | {"intrinsics_format": "ndc_isotropic"})])
    main(["--co3d-dir", str(tmp_path / "co3d"), "--out-dir", str(tmp_path / "anno")])
    frame = read_annotations(tmp_path / "anno" / "tv_train.jgz")["s"][0]

    extri, intri = np.asarray(frame["extri"]), np.asarray(frame["intri"])
    u, v = project(np.array([[0.5, 0.25, 0.0]]), extri[:, :3], extri[:, 3], intri)[0]
    # PyTorch3D NDC (+x left, +y up): (2 * 0.5 / 2, 2 * 0.25 / 2) = (0.5, 0.25); s = 12 -> 6 px left, 3 px up
    assert (u, v) == pytest.approx((W / 2 - 6, H / 2 - 3))


def test_frames_without_intrinsics_format_use_the_ndc_norm_image_bounds_default(tmp_path: Path) -> None:
    viewpoint = {"R": np.eye(3).tolist(), "T": [0, 0, 2], "focal_length": [2, 1], "principal_point": [0.5, -0.5]}
    write_raw(tmp_path / "co3d", [frame_annotation("s", 0, viewpoint)])
    main(["--co3d-dir", str(tmp_path / "co3d"), "--out-dir", str(tmp_path / "anno")])
    intri = np.asarray(read_annotations(tmp_path / "anno" / "tv_train.jgz")["s"][0]["intri"])
    expected = [[2 * W / 2, 0, W / 2 - 0.5 * W / 2], [0, 1 * H / 2, H / 2 + 0.5 * H / 2], [0, 0, 1]]
    np.testing.assert_allclose(intri, expected)


def test_subset_splits_train_to_train_and_val_and_test_to_test(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    viewpoint = pytorch3d_viewpoint(*opencv_camera(rng), "ndc_isotropic")
    raw = [frame_annotation(s, n, viewpoint) for s in ("a", "b", "c") for n in range(3)]
    raw.append(frame_annotation("a", 3, None))  # no viewpoint: left out
    set_list = {
        "train": [["a", n, "p"] for n in range(4)],
        "val": [["b", 0, "p"], ["b", 2, "p"]],
        "test": [["c", 1, "p"]],
    }  # b1, c0, c2 are in no list
    write_raw(tmp_path / "co3d", raw, set_list=set_list)

    status = main(
        ["--co3d-dir", str(tmp_path / "co3d"), "--out-dir", str(tmp_path / "anno"), "--subset", "fewview_dev"]
    )

    assert status == 0
    train = read_annotations(tmp_path / "anno" / "tv_train.jgz")
    test = read_annotations(tmp_path / "anno" / "tv_test.jgz")
    assert {s: [f["filepath"][-10:-4] for f in frames] for s, frames in train.items()} == {
        "a": ["000001", "000002", "000003"]
    }
    assert {s: [f["filepath"][-10:-4] for f in frames] for s, frames in test.items()} == {
        "b": ["000001", "000003"],
        "c": ["000002"],
    }
    out = capsys.readouterr().out
    assert "1 without viewpoint, 3 not in set list" in out and "wrote 2 annotation files" in out


def test_converted_annotations_load_as_a_co3d_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    cameras = [opencv_camera(rng) for _ in range(3)]
    write_raw(
        tmp_path / "co3d",
        [frame_annotation("s", n, pytorch3d_viewpoint(*c, "ndc_isotropic")) for n, c in enumerate(cameras)],
    )
    main(["--co3d-dir", str(tmp_path / "co3d"), "--out-dir", str(tmp_path / "anno")])

    data = Co3dDataset(tmp_path / "co3d", tmp_path / "anno", categories=["tv"], min_num_images=3)

    frames = data.sequence_frames(0)
    assert data.sequence_name(0) == "co3d_tv_s"
    for frame, (rotation, translation, k) in zip(frames, cameras):
        np.testing.assert_allclose(frame.extrinsic, np.concatenate([rotation, translation[:, None]], 1), atol=1e-6)
        np.testing.assert_allclose(frame.intrinsic, k, rtol=1e-6)
        assert frame.depth_path.name.endswith(".jpg.geometric.png") and frame.depth_path.parent.name == "depths"


# errors -----------------------------------------------------------------------------------------------
def run_expecting_error(tmp_path: Path, capsys, *extra: str) -> str:
    status = main(["--co3d-dir", str(tmp_path / "co3d"), "--out-dir", str(tmp_path / "anno"), *extra])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    return captured.err


def test_unknown_intrinsics_format_names_the_frame(tmp_path: Path, capsys) -> None:
    viewpoint = {"R": np.eye(3).tolist(), "T": [0, 0, 2], "focal_length": [1, 1], "principal_point": [0, 0]}
    write_raw(tmp_path / "co3d", [frame_annotation("s", 7, viewpoint | {"intrinsics_format": "screen"})])
    err = run_expecting_error(tmp_path, capsys)
    assert "frame_annotations.jgz" in err and "sequence 's' frame 7" in err and "'screen'" in err


def test_viewpoint_without_rotation_names_the_key(tmp_path: Path, capsys) -> None:
    viewpoint = {"T": [0, 0, 2], "focal_length": [1, 1], "principal_point": [0, 0]}
    write_raw(tmp_path / "co3d", [frame_annotation("s", 0, viewpoint)])
    assert "has no 'viewpoint.R'" in run_expecting_error(tmp_path, capsys)


def test_missing_set_list_lists_the_available_ones(tmp_path: Path, capsys) -> None:
    write_raw(tmp_path / "co3d", [], set_list={"train": []})
    err = run_expecting_error(tmp_path, capsys, "--subset", "manyview_dev_0")
    assert "set_lists_manyview_dev_0.json does not exist" in err and "set_lists_fewview_dev.json" in err


def test_directory_without_categories_is_reported(tmp_path: Path, capsys) -> None:
    (tmp_path / "co3d").mkdir()
    assert "no <category>/frame_annotations.jgz" in run_expecting_error(tmp_path, capsys)


def test_help_describes_the_options(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(option in out for option in ("--co3d-dir", "--out-dir", "--categories", "--subset"))
