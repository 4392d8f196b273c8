"""Upstream VGGT's `python demo_colmap.py --scene_dir=DIR [--use_ba]`, with upstream's flags and defaults.

Reads DIR/images/ and writes a COLMAP model to DIR/sparse/ (cameras.bin, images.bin, points3D.bin, points.ply).
The `vggt` command closest to it is `vggt predict --images DIR/images --out DIR --export colmap` (add --ba for
--use_ba); that one preprocesses like demo_viser.py (crop, width 518) instead of padded squares, filters by a
confidence percentile instead of an absolute value, and also writes predictions.npz. The work is done by
vggt.demos.colmap_scene; this script only parses the arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vggt.cli import config_argument
from vggt.demos import add_model_options, run_demo
from vggt.demos.colmap_scene import ColmapSceneOptions, reconstruct_scene

PROG = "demo_colmap.py"
UNSUPPORTED: dict[str, str] = {}  # every upstream flag works (--fine_tracking is accepted without effect)

DESCRIPTION = """\
A COLMAP sparse model of the images in DIR/images (every image file in it, by name), as upstream's
demo_colmap.py makes it. Each image is black-padded to a centred square, resized to 1024 px, then to
518 x 518 for the model. Cameras and 2D points are in the original images' pixels; images are named
by file name.

  without --use_ba  the depth points with depth confidence >= --conf_thres_value, at most 100000
                    drawn at random (--seed), each seen once; one PINHOLE camera per image (as
                    upstream, whatever --camera_type and --shared_camera say)
  with --use_ba     the track head's correspondences from --query_frame_num frames (--max_query_pts
                    in all), sightings above --vis_thresh within --max_reproj_error of the predicted
                    cameras, bundle-adjusted with pycolmap (--camera_type, --shared_camera)

writes into DIR (nothing else in it is touched; DIR/images is only read):
  sparse/             cameras.bin, images.bin, points3D.bin (and rigs.bin, frames.bin with pycolmap
                      >= 3.12), points.ply (the model's points, coloured)
  vggt_predict_manifest.json  the record that sparse/ is this script's: the next run replaces it.
A sparse/ the script did not write (yours, or COLMAP's) stops the run before the model loads. The model
is written into a staging folder first, so a failed or interrupted run leaves DIR as it was.

The closest `vggt` command: `vggt predict --images DIR/images --out DIR --export colmap [--ba]`; it
crops to width 518 instead, keeps a confidence percentile instead of an absolute value, measures
--max-reproj-error in model pixels, and also writes predictions.npz."""

EXAMPLES = """\
examples:
  python demo_colmap.py --scene_dir=scenes/kitchen
  python demo_colmap.py --scene_dir=scenes/kitchen --use_ba --camera_type SIMPLE_RADIAL --shared_camera
  python demo_colmap.py --scene_dir=scenes/kitchen --model weights/ --device cpu --dtype float32

exit status: 0 done, 2 bad input (a missing folder, a sparse/ of yours, a bad flag), 130 / 143 / 129
stopped by Ctrl-C / SIGTERM / SIGHUP (DIR is left as it was)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scene_dir", type=Path, required=True, metavar="DIR", help="scene folder holding images/")
    parser.add_argument("--seed", type=int, default=42, help="seed for Python, NumPy and torch (default 42)")
    parser.add_argument(
        "--use_ba", action="store_true", help="bundle-adjust track-head correspondences (needs a track head)"
    )
    parser.add_argument(
        "--conf_thres_value",
        type=float,
        default=5.0,
        metavar="C",
        help="without --use_ba: keep depth points whose depth confidence is at least C, an absolute value "
        "(VGGT's confidences start at 1; default 5)",
    )
    ba = parser.add_argument_group("bundle adjustment (--use_ba)")
    ba.add_argument(
        "--max_reproj_error",
        type=float,
        default=8.0,
        metavar="PX",
        help="drop sightings farther than PX from their point's projection, before and after the adjustment; "
        "pixels of the 1024 square, as upstream (default 8)",
    )
    ba.add_argument("--shared_camera", action="store_true", help="one camera for all images (they must be of one size)")
    ba.add_argument(
        "--camera_type",
        default="SIMPLE_PINHOLE",
        metavar="MODEL",
        help="COLMAP camera model: PINHOLE, SIMPLE_PINHOLE (default) or SIMPLE_RADIAL (distortion starts at 0)",
    )
    ba.add_argument(
        "--vis_thresh", type=float, default=0.2, metavar="V", help="minimum track visibility, 0-1 (default 0.2)"
    )
    ba.add_argument(
        "--query_frame_num", type=int, default=8, metavar="N", help="frames whose pixels are tracked (default 8)"
    )
    ba.add_argument("--max_query_pts", type=int, default=4096, metavar="N", help="tracked points in all (default 4096)")
    ba.add_argument(
        "--fine_tracking",
        action="store_true",
        default=True,
        help="accepted for upstream's command lines and has no effect: it switches upstream's VGGSfM tracker "
        "between coarse and fine; VGGT's own track head, used here, has no such switch",
    )
    add_model_options(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    options = ColmapSceneOptions(
        scene_dir=args.scene_dir,
        model=args.model,
        config=config_argument(args.config),
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        use_ba=args.use_ba,
        max_reproj_error=args.max_reproj_error,
        shared_camera=args.shared_camera,
        camera_type=args.camera_type,
        vis_thresh=args.vis_thresh,
        query_frame_num=args.query_frame_num,
        max_query_pts=args.max_query_pts,
        conf_thres_value=args.conf_thres_value,
    )
    print(reconstruct_scene(options).describe())


if __name__ == "__main__":
    sys.exit(run_demo(PROG, build_parser(), UNSUPPORTED, run))
