"""Upstream VGGT's `python demo_viser.py --image_folder DIR`, with upstream's flags and defaults.

Runs the model on a folder of images and shows the points and cameras in the browser (viser). It corresponds to
`vggt predict --images DIR --out OUT --export none` followed by `vggt view OUT`, with the predictions kept in a
temporary folder that is deleted when the viewer stops. The work is done by vggt.demos.viser_folder; this script
only parses the arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vggt.cli import config_argument
from vggt.demos import add_model_options, run_demo
from vggt.demos.viser_folder import DEFAULT_IMAGE_FOLDER, ViserFolderOptions, view_folder
from vggt.predict.viewer import LOOPBACK_HOST

PROG = "demo_viser.py"
UNSUPPORTED = {
    "background_mode": "the viewer always serves in the foreground until Ctrl-C; to keep the shell, start the "
    "script in the background with `python demo_viser.py ... &`, or write the predictions once with `vggt predict` "
    "and serve them with `vggt view` whenever needed",
    "mask_sky": "sky masking needs an external sky-segmentation model, an ONNX network upstream downloads, which "
    "this project does not ship; raise --conf_threshold or the viewer's slider to hide low-confidence sky points",
}

DESCRIPTION = f"""\
Run VGGT on the images of a folder (every image file in it, by name; cropped to width 518 as
upstream's demo_viser.py loads them) and show the result in the browser: the point cloud with a
slider of the percentage of low-confidence points hidden, a point-size slider, and the camera
frustums with their images. By default the points are the depth maps unprojected by the predicted
cameras; --use_point_map shows the point head's world points instead.

The predictions are written by `vggt predict`'s pipeline into a temporary folder, deleted when the
viewer stops (Ctrl-C) or anything fails. To keep them, run
  vggt predict --images DIR --out OUT --export none && vggt view OUT --conf-threshold 25
instead. The server listens on {LOOPBACK_HOST} (this machine only) unless --host says otherwise;
upstream listened on every interface (--host 0.0.0.0, which warns)."""

EXAMPLES = """\
examples:
  python demo_viser.py --image_folder scenes/kitchen/images     # then open http://127.0.0.1:8080
  python demo_viser.py --image_folder imgs --use_point_map --conf_threshold 50 --port 8081
  python demo_viser.py --image_folder imgs --model weights/ --device cpu

not supported here (they stop with exit status 2): --background_mode, --mask_sky

exit status: 0 stopped with Ctrl-C, 2 bad input (a missing folder, a bad or unsupported flag)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--image_folder",
        type=Path,
        default=Path(DEFAULT_IMAGE_FOLDER),
        metavar="DIR",
        help=f"folder of images (default {DEFAULT_IMAGE_FOLDER}, upstream's example scene, not shipped here)",
    )
    parser.add_argument(
        "--use_point_map",
        action="store_true",
        help="show the point head's world points (and their confidence) instead of the depth-unprojected points",
    )
    parser.add_argument(
        "--conf_threshold",
        type=float,
        default=25.0,
        metavar="PCT",
        help="initial percentage of low-confidence points to hide, 0-100 (default 25)",
    )
    parser.add_argument("--port", type=int, default=8080, help="port of the viewer (default 8080)")
    parser.add_argument(
        "--host",
        default=LOOPBACK_HOST,
        help=f"address to listen on (default {LOOPBACK_HOST}: this machine only; 0.0.0.0 lets every machine on the "
        "network see the scene, and warns)",
    )
    parser.add_argument("--background_mode", action="store_true", help="not supported here (exit status 2)")
    parser.add_argument("--mask_sky", action="store_true", help="not supported here (exit status 2)")
    add_model_options(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    options = ViserFolderOptions(
        image_folder=args.image_folder,
        model=args.model,
        config=config_argument(args.config),
        device=args.device,
        dtype=args.dtype,
        use_point_map=args.use_point_map,
        conf_threshold=args.conf_threshold,
        host=args.host,
        port=args.port,
    )
    view_folder(options)


if __name__ == "__main__":
    sys.exit(run_demo(PROG, build_parser(), UNSUPPORTED, run))
