"""The README's `vggt predict` pictures: the tool's own previews of a held-out synthetic scene, next to the same
renderer fed that scene's ground truth (exact depth and cameras), so the two can be compared honestly.

    python -m training.launch --config-name synthetic          # trains the tiny model, writes the scenes too
    python examples/predict_docs_images.py --model runs/synthetic/ckpts/checkpoint.pt --out docs/images

writes predict_frames.png and predict_points.png (copied from `vggt predict ... --export preview`) and
predict_ground_truth.png (ground-truth depth lifted with the ground-truth cameras, rendered the same way).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from vggt.cli import main as vggt
from vggt.predict.points import PointCloud
from vggt.predict.render import render_points
from vggt.scenes.co3d_files import read_annotations, read_depth_png
from vggt.utils.geometry import closed_form_inverse_se3, unproject_depth_map_to_point_map


def depth_path(co3d_dir: Path, image_path: str) -> Path:
    """synthetic/seq/images/frame.jpg -> its depth map synthetic/seq/depths/frame.jpg.geometric.png (Co3D layout)."""
    return co3d_dir / (image_path.replace("/images/", "/depths/") + ".geometric.png")


def ground_truth_cloud(co3d_dir: Path, frames: list[dict]) -> tuple[PointCloud, np.ndarray, np.ndarray]:
    """(points, extrinsics [S, 3, 4], intrinsics [S, 3, 3]) of the annotated frames, expressed in the first
    camera's frame like the predictions; every other pixel, without the sky (depth 0)."""
    extrinsic = np.array([f["extri"] for f in frames], dtype=np.float64)
    intrinsic = np.array([f["intri"] for f in frames], dtype=np.float64)
    world_from_first = closed_form_inverse_se3(extrinsic[:1])[0]
    extrinsic = extrinsic @ world_from_first  # camera-from-first-camera, [S, 3, 4]
    depth = np.stack([read_depth_png(depth_path(co3d_dir, f["filepath"])) for f in frames])
    points = unproject_depth_map_to_point_map(depth, extrinsic, intrinsic)
    rgb = np.stack([np.asarray(Image.open(co3d_dir / f["filepath"]).convert("RGB")) for f in frames])
    every_other = np.zeros(depth.shape, dtype=bool)
    every_other[:, ::2, ::2] = True  # about as many points as the 112-px predictions give (and a smaller PNG)
    frame, v, u = np.nonzero((depth > 0) & every_other)
    cloud = PointCloud(points[frame, v, u], rgb[frame, v, u], np.ones(len(frame)), frame, np.stack([u, v], -1))
    return cloud, extrinsic, intrinsic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="weights for `vggt predict --model` (a tiny model)")
    parser.add_argument("--scenes", type=Path, default=Path("runs/synthetic_scenes"), help="generated scenes")
    parser.add_argument("--sequence", default="seq0012", help="a sequence of the test split (default seq0012)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()

    co3d_dir = args.scenes / "co3d"
    frames = read_annotations(args.scenes / "co3d_annotations" / "synthetic_test.jgz")[args.sequence]
    images = co3d_dir / "synthetic" / args.sequence / "images"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        predicted = Path(folder) / "predicted"
        command = [
            "predict",
            "--images",
            images,
            "--out",
            predicted,
            "--model",
            args.model,
            "--config",
            "tiny",
            "--resolution",
            "112",
            "--device",
            "cpu",
            "--export",
            "preview",
        ]
        if vggt([str(part) for part in command]):
            raise SystemExit("vggt predict failed")
        shutil.copy(predicted / "preview" / "frames.png", args.out / "predict_frames.png")
        shutil.copy(predicted / "preview" / "points.png", args.out / "predict_points.png")
    cloud, extrinsic, intrinsic = ground_truth_cloud(co3d_dir, frames)
    height, width = read_depth_png(depth_path(co3d_dir, frames[0]["filepath"])).shape
    picture = render_points(cloud, extrinsic, intrinsic, (height, width))
    Image.fromarray(picture).save(args.out / "predict_ground_truth.png", optimize=True)
    print(f"wrote {args.out}/predict_frames.png, predict_points.png, predict_ground_truth.png")


if __name__ == "__main__":
    main()
