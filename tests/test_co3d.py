"""Co3dDataset on a tiny Co3D tree written into tmp_path: depth decoding, masks, clipping, samples, errors."""

from __future__ import annotations

import gzip
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from training.data.augment import AugmentConfig, target_shape
from training.data.base import DatasetError, SampleRequest
from training.data.co3d import Co3dDataset, write_annotations, write_depth_png
from training.data.sampler import DynamicBatchSampler
from vggt.scenes.co3d_files import SEEN_CATEGORIES, read_annotations, read_depth_png

H, W = 24, 32
K = np.array([[30.0, 0.0, 15.5], [0.0, 28.0, 11.5], [0.0, 0.0, 1.0]])
MASKED_COLUMNS = 5  # columns 0-3 are 0 and column 4 is 128 in every depth mask: all invalid (<= 128)


def pixel_id_depth() -> np.ndarray:
    """[H, W] depth 1 + (v * W + u) / 1024: exact in float16 (768 < 1024 steps of 2^-10) and names its pixel."""
    v, u = np.mgrid[:H, :W]
    return (1 + (v * W + u) / 1024).astype(np.float32)


def source_pixel(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(v, u) of the original pixel a pixel_id_depth value came from."""
    return np.divmod(np.rint((depth - 1) * 1024).astype(np.int64), W)


def write_float16_png(path: Path, depth: np.ndarray) -> None:
    """Co3D's depth encoding written straight with PIL (independent of write_depth_png)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(depth.astype(np.float16).view(np.uint16)).save(path)


def random_extrinsic(rng: np.random.Generator) -> np.ndarray:
    """[3, 4] camera-from-world with a random rotation (QR of a Gaussian matrix) and translation."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.diag(r))
    rotation *= np.linalg.det(rotation)  # det +1
    return np.concatenate([rotation, rng.normal(size=(3, 1))], axis=1)


def write_sequence(co3d_dir: Path, category: str, name: str, num_frames: int, rng: np.random.Generator) -> list[dict]:
    """Images, depths and masks of one sequence in the Co3D v2 layout; returns its annotation frames."""
    frames = []
    sequence_dir = co3d_dir / category / name
    for i in range(num_frames):
        for folder in ("images", "depths", "depth_masks"):
            (sequence_dir / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(sequence_dir / f"images/frame{i:06d}.jpg")
        write_float16_png(sequence_dir / f"depths/frame{i:06d}.jpg.geometric.png", pixel_id_depth())
        mask = np.full((H, W), 255, np.uint8)
        mask[:, :4], mask[:, 4], mask[:, 5] = 0, 128, 129
        Image.fromarray(mask).save(sequence_dir / f"depth_masks/frame{i:06d}.png")
        frames.append(
            {
                "filepath": f"{category}/{name}/images/frame{i:06d}.jpg",
                "extri": random_extrinsic(rng).tolist(),
                "intri": K.tolist(),
            }
        )
    return frames


def write_jgz(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as file:
        json.dump(content, file)


@pytest.fixture
def co3d(tmp_path: Path) -> tuple[Path, Path, dict]:
    """(co3d_dir, annotation_dir, annotations): apple sequences seqA and seqB of 4 frames, "short" of 2."""
    rng = np.random.default_rng(0)
    co3d_dir, annotation_dir = tmp_path / "co3d", tmp_path / "annotations"
    annotations = {
        name: write_sequence(co3d_dir, "apple", name, n, rng) for name, n in [("seqA", 4), ("short", 2), ("seqB", 4)]
    }
    write_jgz(annotation_dir / "apple_train.jgz", annotations)
    return co3d_dir, annotation_dir, annotations


def dataset(co3d: tuple[Path, Path, dict], **kwargs) -> Co3dDataset:
    options = {"categories": ["apple"], "min_num_images": 3, "img_size": 28, "patch_size": 14} | kwargs
    return Co3dDataset(co3d[0], co3d[1], **options)


# depth PNGs -------------------------------------------------------------------------------------------
def test_depth_png_round_trip_preserves_float16_values_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    depth = np.concatenate(
        [
            rng.uniform(0, 100, 60).astype(np.float16),
            np.array([0, 6e-8, 1e-5, 0.1, 1, 1000, 65504, -2.5], np.float16),  # subnormals, the max, a negative
        ]
    ).reshape(4, 17)
    path = tmp_path / "depth.png"

    write_depth_png(path, depth.astype(np.float32))

    with Image.open(path) as png:
        assert png.mode == "I;16"
        assert np.array_equal(np.asarray(png).astype(np.uint16), depth.view(np.uint16))  # the float16 bit patterns
    decoded = read_depth_png(path)
    assert decoded.dtype == np.float32
    assert np.array_equal(decoded.astype(np.float16).view(np.uint16), depth.view(np.uint16))


def test_write_depth_png_rejects_depths_beyond_float16(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="float16"):
        write_depth_png(tmp_path / "depth.png", np.full((2, 2), 7e4, np.float32))


def test_read_depth_png_rejects_an_8_bit_png_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "depth.png"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(path)
    with pytest.raises(DatasetError, match="depth.png.*16-bit"):
        read_depth_png(path)


# read_depth -------------------------------------------------------------------------------------------
def test_read_depth_zeroes_masked_and_non_finite_pixels(co3d) -> None:
    data = dataset(co3d, depth_percentile_clip=None)
    frame = data.sequence_frames(0)[0]
    raw = pixel_id_depth()
    raw[3, 10], raw[7, 20] = np.nan, np.inf
    write_float16_png(frame.depth_path, raw)

    depth = data.read_depth(frame)

    expected = pixel_id_depth()
    expected[:, :MASKED_COLUMNS] = 0
    expected[3, 10] = expected[7, 20] = 0
    np.testing.assert_array_equal(depth, expected)


def test_read_depth_clips_depths_above_the_98th_percentile_of_valid_depths(co3d) -> None:
    data = dataset(co3d)
    frame = data.sequence_frames(0)[0]
    depth = np.full((H, W), 1000, np.float32)  # the masked columns: must not count towards the percentile
    depth[:, MASKED_COLUMNS:] = np.arange(1, 649).reshape(H, W - MASKED_COLUMNS)  # valid depths 1..648
    write_float16_png(frame.depth_path, depth)

    clipped = data.read_depth(frame)

    # linear percentile of 1..648: position 0.98 * 647 = 634.06 -> 635.06, so 636..648 (13 values) are cleared;
    # counting the 120 masked zeros as upstream's whole-map nanpercentile does would clear 633..648 (16)
    expected = depth.copy()
    expected[:, :MASKED_COLUMNS] = 0
    expected[expected >= 636] = 0
    np.testing.assert_array_equal(clipped, expected)
    assert np.count_nonzero(clipped) == 648 - 13


def test_read_depth_without_a_mask_file_keeps_every_finite_depth(co3d) -> None:
    data = dataset(co3d, depth_percentile_clip=None)
    frame = data.sequence_frames(0)[0]
    frame.mask_path.unlink()
    np.testing.assert_array_equal(data.read_depth(frame), pixel_id_depth())


def test_sequences_without_a_depth_masks_folder_are_named_in_one_build_warning(co3d) -> None:
    shutil.rmtree(co3d[0] / "apple" / "seqB" / "depth_masks")
    (co3d[0] / "apple" / "seqA" / "depth_masks" / "frame000001.png").unlink()  # checked per folder, not per frame
    warnings = dataset(co3d).build_warnings()
    assert len(warnings) == 1
    assert "1 sequence(s) have no depth_masks/ folder" in warnings[0] and warnings[0].endswith(": apple/seqB")


# samples ----------------------------------------------------------------------------------------------
def test_sample_has_the_training_keys_shapes_and_dtypes(co3d) -> None:
    sample = dataset(co3d)[SampleRequest(index=1, num_frames=3, aspect_ratio=0.5, seed=0)]

    s, h, w = 3, 14, 28  # target_shape(0.5, 28, 14): H = int(14) // 14 * 14
    expected = {
        "images": ((s, 3, h, w), torch.float32),
        "depths": ((s, h, w), torch.float32),
        "extrinsics": ((s, 3, 4), torch.float32),
        "intrinsics": ((s, 3, 3), torch.float32),
        "cam_points": ((s, h, w, 3), torch.float32),
        "world_points": ((s, h, w, 3), torch.float32),
        "point_masks": ((s, h, w), torch.bool),
        "ids": ((s,), torch.int64),
    }
    assert set(sample) == set(expected) | {"seq_name"}
    assert sample["seq_name"] == "co3d_apple_seqB"
    for key, (shape, dtype) in expected.items():
        assert (tuple(sample[key].shape), sample[key].dtype) == (shape, dtype), key
    assert 0 <= sample["images"].min() and sample["images"].max() <= 1
    assert torch.equal(sample["point_masks"], sample["depths"] > 1e-8)


def test_world_points_reproject_to_their_pixel_and_onto_the_source_pixel_of_their_depth(co3d) -> None:
    annotations = co3d[2]["seqA"]
    sample = dataset(co3d, augment=AugmentConfig(), img_size=42)[SampleRequest(0, 4, 0.7, seed=3)]

    v, u = np.mgrid[: sample["depths"].shape[1], : sample["depths"].shape[2]]
    for i, frame_id in enumerate(sample["ids"].tolist()):
        extrinsic = np.asarray(annotations[frame_id]["extri"])
        np.testing.assert_allclose(sample["extrinsics"][i].numpy(), extrinsic, atol=1e-6)
        points = sample["world_points"][i].numpy().astype(np.float64)
        valid = sample["point_masks"][i].numpy()
        assert valid.mean() > 0.5
        cam = points @ extrinsic[:, :3].T + extrinsic[:, 3]
        np.testing.assert_allclose(cam[..., 2][valid], sample["depths"][i].numpy()[valid], rtol=1e-5)
        # into the sample's camera: the pixel the point was unprojected from
        k = sample["intrinsics"][i].numpy().astype(np.float64)
        np.testing.assert_allclose((k[0, 0] * cam[..., 0] / cam[..., 2] + k[0, 2])[valid], u[valid], atol=1e-3)
        np.testing.assert_allclose((k[1, 1] * cam[..., 1] / cam[..., 2] + k[1, 2])[valid], v[valid], atol=1e-3)
        # into the original camera: within half a pixel of the source pixel its (nearest-resampled) depth names
        src_v, src_u = source_pixel(sample["depths"][i].numpy())
        assert np.abs(K[0, 0] * cam[..., 0] / cam[..., 2] + K[0, 2] - src_u)[valid].max() <= 0.5 + 1e-3
        assert np.abs(K[1, 1] * cam[..., 1] / cam[..., 2] + K[1, 2] - src_v)[valid].max() <= 0.5 + 1e-3


def test_dynamic_batch_sampler_drives_a_dataloader_of_uniform_batches(co3d) -> None:
    data = dataset(co3d)
    sampler = DynamicBatchSampler(len(data), img_nums=(2, 3), max_img_per_gpu=4, batches_per_epoch=3)

    for requests, batch in zip(sampler, DataLoader(data, batch_sampler=sampler)):
        b, s = len(requests), requests[0].num_frames
        h = target_shape(requests[0].aspect_ratio, 28, 14)[0]
        assert batch["images"].shape == (b, s, 3, h, 28) and len(batch["seq_name"]) == b


def test_sequences_shorter_than_min_num_images_are_dropped(co3d) -> None:
    data = dataset(co3d, min_num_images=3)
    assert [data.sequence_name(i) for i in range(len(data))] == ["co3d_apple_seqA", "co3d_apple_seqB"]
    assert len(dataset(co3d, min_num_images=2)) == 3


def test_no_sequence_long_enough_raises_with_the_min_num_images_value(co3d) -> None:
    with pytest.raises(DatasetError, match="min_num_images=5"):
        dataset(co3d, min_num_images=5)


def test_frame_paths_follow_the_co3d_layout(co3d) -> None:
    frame = dataset(co3d).sequence_frames(0)[2]
    sequence_dir = co3d[0] / "apple" / "seqA"
    assert frame.image_path == sequence_dir / "images" / "frame000002.jpg"
    assert frame.depth_path == sequence_dir / "depths" / "frame000002.jpg.geometric.png"
    assert frame.mask_path == sequence_dir / "depth_masks" / "frame000002.png"


class _Records(logging.Handler):
    """Collects records on the logger itself (the trainer's logging setup stops propagation to the root)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_default_categories_are_the_41_seen_ones_and_missing_files_are_skipped_with_a_warning(co3d) -> None:
    handler = _Records()
    co3d_logger = logging.getLogger("training.data.co3d")
    co3d_logger.addHandler(handler)
    try:
        data = Co3dDataset(co3d[0], co3d[1], min_num_images=3)
    finally:
        co3d_logger.removeHandler(handler)
    assert len(SEEN_CATEGORIES) == 41 and "apple" in SEEN_CATEGORIES
    assert len(data) == 2
    skipped = [r.getMessage() for r in handler.records if "skipping category" in r.getMessage()]
    assert len(skipped) == 40 and any("tv_train.jgz" in message for message in skipped)


def test_annotation_file_round_trips_through_write_annotations(tmp_path: Path) -> None:
    frames = [{"filepath": "tv/s/images/frame000000.jpg", "extri": np.eye(3, 4), "intri": K}]
    write_annotations(tmp_path / "a" / "tv_train.jgz", {"s": frames})
    with gzip.open(tmp_path / "a" / "tv_train.jgz", "rt") as file:
        content = json.load(file)
    assert content == {"s": [{"filepath": frames[0]["filepath"], "extri": np.eye(3, 4).tolist(), "intri": K.tolist()}]}
    assert read_annotations(tmp_path / "a" / "tv_train.jgz") == content


# errors -----------------------------------------------------------------------------------------------
def test_missing_annotation_directory_is_named_with_how_to_get_the_files(co3d, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        Co3dDataset(co3d[0], tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "does not exist" in message
    assert "apple_train.jgz" in message and "JianyuanWang/co3d_anno" in message and "co3d_convert" in message


def test_no_requested_annotation_file_names_the_expected_files(co3d) -> None:
    with pytest.raises(DatasetError, match=r"tv_test\.jgz.*JianyuanWang/co3d_anno"):
        Co3dDataset(co3d[0], co3d[1], split="test", categories=["tv"])


def test_missing_co3d_directory_is_named(co3d, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nowhere"):
        Co3dDataset(tmp_path / "nowhere", co3d[1])


@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(b"{not json"), gzip.compress(b"{}")[:-6]])
def test_corrupt_annotation_file_is_named(co3d, content: bytes) -> None:
    (co3d[1] / "apple_train.jgz").write_bytes(content)
    with pytest.raises(DatasetError, match=r"apple_train\.jgz"):
        dataset(co3d)


def test_frame_without_extri_names_file_sequence_frame_and_key(co3d) -> None:
    annotations = co3d[2]
    del annotations["seqB"][2]["extri"]
    write_jgz(co3d[1] / "apple_train.jgz", annotations)
    with pytest.raises(DatasetError, match=r"apple_train\.jgz: sequence 'seqB' frame 2 has no 'extri'"):
        dataset(co3d)


def test_malformed_intrinsic_names_the_frame(co3d) -> None:
    annotations = co3d[2]
    annotations["seqA"][1]["intri"] = [[1, 0], [0, 1]]
    write_jgz(co3d[1] / "apple_train.jgz", annotations)
    with pytest.raises(DatasetError, match=r"sequence 'seqA' frame 1 'intri' must be a finite 3x3 matrix"):
        dataset(co3d)


@pytest.mark.parametrize("kind", ["depths/frame000001.jpg.geometric.png", "images/frame000001.jpg"])
def test_missing_depth_or_image_file_is_named_when_sampled(co3d, kind: str) -> None:
    missing = co3d[0] / "apple" / "seqA" / kind
    missing.unlink()
    with pytest.raises(DatasetError, match=re.escape(str(missing))):
        dataset(co3d)[SampleRequest(0, 4, 1.0, seed=0)]  # 4 distinct frames of 4: frame 1 is read


def test_frames_are_drawn_with_replacement_as_upstream_unless_allow_duplicate_img_is_off(co3d) -> None:
    def ids(data: Co3dDataset) -> list[list[int]]:
        return [data[SampleRequest(0, 3, 1.0, seed)]["ids"].tolist() for seed in range(20)]

    with_replacement = ids(dataset(co3d))
    assert any(len(set(sample)) < 3 for sample in with_replacement)  # P(no repeat) = 24/64 per sample
    assert all(len(set(sample)) == 3 for sample in ids(dataset(co3d, allow_duplicate_img=False)))
