"""build_reconstruction's camera models and shared camera (demo_colmap.py's --camera_type and --shared_camera)."""

from __future__ import annotations

import numpy as np
import pytest

from vggt.predict.colmap import Observations, build_reconstruction
from vggt.utils.load_fn import PreprocessTransform

pycolmap = pytest.importorskip("pycolmap")

NAMES = ["a.jpg", "b.jpg", "c.jpg"]
INTRINSICS = np.array(
    [
        [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
        for fx, fy, cx, cy in [(200, 210, 80, 60), (220, 230, 81, 59), (240, 250, 79, 61)]
    ],
    dtype=float,
)
POSES = np.stack([np.hstack([np.eye(3), [[0.1 * s], [0.0], [0.0]]]) for s in range(3)])


def transforms(sizes: list[tuple[int, int]]) -> list[PreprocessTransform]:
    return [PreprocessTransform(size, (1.0, 1.0), (0.0, 0.0), (0, 0, *size)) for size in sizes]


def build(registered=(True, True, True), sizes=((160, 120),) * 3, **cameras):
    """Two points, each seen in every registered frame."""
    frames = np.flatnonzero(registered)
    observations = Observations(
        point=np.tile([0, 1], len(frames)), frame=np.repeat(frames, 2), xy=np.full((2 * len(frames), 2), 50.0)
    )
    xyz = np.array([[0.0, 0.0, 5.0], [0.5, 0.2, 6.0]])
    return build_reconstruction(
        POSES, INTRINSICS, np.array(registered), transforms(list(sizes)), NAMES, xyz, np.zeros((2, 3), np.uint8),
        observations, **cameras,
    )  # fmt: skip


def test_by_default_each_frame_has_its_own_pinhole_camera_from_its_intrinsics() -> None:
    reconstruction = build()
    assert reconstruction.num_cameras() == 3
    for frame, name in enumerate(NAMES):
        image = reconstruction.images[frame + 1]
        camera = reconstruction.cameras[image.camera_id]
        k = INTRINSICS[frame]
        assert image.name == name and camera.model == pycolmap.CameraModelId.PINHOLE
        np.testing.assert_allclose(camera.params, [k[0, 0], k[1, 1], k[0, 2], k[1, 2]])


@pytest.mark.parametrize(
    ("model", "extra"), [("SIMPLE_PINHOLE", []), ("SIMPLE_RADIAL", [0.0]), ("simple_radial", [0.0])]
)
def test_one_focal_length_models_take_the_mean_of_fx_and_fy(model: str, extra: list[float]) -> None:
    reconstruction = build(camera_model=model)
    for frame in range(3):
        camera = reconstruction.cameras[reconstruction.images[frame + 1].camera_id]
        k = INTRINSICS[frame]
        assert camera.model == getattr(pycolmap.CameraModelId, model.upper())
        np.testing.assert_allclose(camera.params, [(k[0, 0] + k[1, 1]) / 2, k[0, 2], k[1, 2], *extra])


def test_a_shared_camera_is_the_mean_of_the_registered_frames_intrinsics() -> None:
    reconstruction = build(registered=(True, False, True), shared_camera=True)
    assert reconstruction.num_cameras() == 1 and reconstruction.num_images() == 2
    assert {image.camera_id for image in reconstruction.images.values()} == {1}
    mean = (INTRINSICS[0] + INTRINSICS[2]) / 2  # frame 1 has no usable camera
    camera = reconstruction.cameras[1]
    np.testing.assert_allclose(camera.params, [mean[0, 0], mean[1, 1], mean[0, 2], mean[1, 2]])
    assert (camera.width, camera.height) == (160, 120)
    assert all(point.track.length() == 2 for point in reconstruction.points3D.values())


def test_a_shared_camera_over_images_of_two_sizes_is_refused_naming_two_files() -> None:
    with pytest.raises(ValueError, match=r"a\.jpg is 160x120 and c\.jpg is 120x160"):
        build(sizes=((160, 120), (160, 120), (120, 160)), shared_camera=True)


def test_other_camera_models_are_refused_naming_the_supported_ones() -> None:
    with pytest.raises(
        ValueError, match="'OPENCV' is not supported; choose one of PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL"
    ):
        build(camera_model="OPENCV")
