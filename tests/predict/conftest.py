"""Fixtures for the `vggt predict` / `vggt view` tests: tiny synthetic weights, a rendered scene, one full run."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.data.synthetic import generate_scenes
from vggt.cli import main
from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.synthetic_weights import synthetic_model

SCENE_SIZE = (160, 120)  # (W, H) of the rendered test images
RESOLUTION = 112  # crop mode: 160x120 -> 112x84, a scale of exactly 0.7 on both axes


@dataclass
class CliResult:
    status: int
    stdout: str
    stderr: str


def run_cli(*argv: object) -> CliResult:
    """`vggt argv...` in this process, with its exit status and captured output."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main([str(arg) for arg in argv])
    return CliResult(status, stdout.getvalue(), stderr.getvalue())


def predict_args(images: object, out: Path, weights: Path, *extra: object) -> list[object]:
    """The common `vggt predict` arguments: tiny weights, CPU, 112-px crops."""
    images = images if isinstance(images, (list, tuple)) else [images]
    return [
        "predict",
        "--images",
        *images,
        "--out",
        out,
        "--model",
        weights,
        "--device",
        "cpu",
        "--resolution",
        RESOLUTION,
        *extra,
    ]


def tiny_model_with_plausible_cameras() -> VGGT:
    """The tiny model with synthetic weights, its camera head damped so that every frame gets a distinct but sane
    camera (fields of view near 57 degrees, poses near the identity) instead of a 0-degree field of view."""
    model = synthetic_model(VGGTConfig.tiny())
    last = model.camera_head.pose_branch.fc2  # the head adds its output to the encoding in each of 4 iterations
    with torch.no_grad():
        last.weight.mul_(0.05)
        last.bias.zero_()
        last.bias[6] = 0.25  # quaternion w -> about 1: rotations near the identity
        last.bias[7:9] = 0.25  # fov_h, fov_w -> about 1 radian
    return model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding that model's weights (model.safetensors) and config.json."""
    directory = tmp_path_factory.mktemp("tiny_weights")
    tiny_model_with_plausible_cameras().save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def scene_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 3 rendered views (160x120 JPEGs) of one synthetic scene."""
    root = tmp_path_factory.mktemp("scene")
    scenes = generate_scenes(root, num_sequences=1, frames_per_sequence=3, image_size=SCENE_SIZE, splits={"train": 1})
    return scenes["co3d_dir"] / scenes["category"] / "seq0000" / "images"


@pytest.fixture(scope="session")
def predicted(
    tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path, scene_images: Path
) -> tuple[Path, CliResult]:
    """One `vggt predict` run with every export: (output directory, its CLI result)."""
    out = tmp_path_factory.mktemp("predicted") / "out"
    result = run_cli(*predict_args(scene_images, out, tiny_weights))
    assert result.status == 0, result.stderr
    return out, result


def write_scene_video(path: Path, scene_images: Path) -> Path:
    """A 3-second mpeg4 clip at 4 frames per second (each of the 3 scene images for 1 second); needs PyAV."""
    import av  # optional dependency: callers importorskip it first

    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(scene_images.iterdir())]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for index in range(12):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frames[index // 4], format="rgb24")))
        container.mux(stream.encode())
    return path
