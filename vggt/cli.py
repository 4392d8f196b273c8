"""The `vggt` command line: one `add_<name>` (parser) and one `run_<name>` (action) per subcommand.

A new subcommand (predict, export, view) is an `add_*` function appended to SUBCOMMANDS that
builds its parser with `add_subcommand` and points it at its `run_*` function. Every `run_*`
returns the exit status; library errors for bad input (OSError, ValueError) become status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vggt.app.reconstruction import AppSettings
from vggt.app.server import serve as serve_app
from vggt.evaluation.pipeline import EvalOptions, run_evaluation
from vggt.evaluation.report import table_lines
from vggt.interrupts import Interrupted, stop_signals_raise
from vggt.models.vggt import VGGT
from vggt.parallel.launch import launch, under_torchrun
from vggt.predict.bundle_adjust import BundleAdjustmentOptions
from vggt.predict.pipeline import PredictOptions, parse_exports, predict
from vggt.predict.viewer import LOOPBACK_HOST, serve
from vggt.scenes.co3d_files import SEEN_CATEGORIES
from vggt.weights import convert_checkpoint, read_config_json, verify_weights

Handler = Callable[[argparse.Namespace], int]

EXIT_STATUSES = """exit status:
  0  success
  1  a check failed (verify-weights: the checkpoint does not fit the model)
  2  bad input: missing or unreadable file, wrong argument
  129, 130, 143  stopped by SIGHUP, SIGINT (Ctrl-C) or SIGTERM (128 + the signal's number); what the command
     was writing is rolled back"""


def add_subcommand(
    subparsers: argparse._SubParsersAction, name: str, handler: Handler, summary: str, details: str, examples: str
) -> argparse.ArgumentParser:
    """Register subcommand `name` with its help texts; the caller adds the arguments."""
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=f"{summary}\n\n{details}",
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples' line breaks
    )
    parser.set_defaults(handler=handler)
    return parser


# convert ---------------------------------------------------------------------------------------
def add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers,
        "convert",
        run_convert,
        summary="Convert a PyTorch checkpoint to a .safetensors weights file.",
        details=(
            "Reads a state dict saved with torch.save (e.g. upstream's model.pt), a training checkpoint\n"
            'that keeps it under "model", or a DDP ("module.") state dict, and writes its tensors as\n'
            "safetensors. The destination is written to a temporary file and renamed into place, so a\n"
            "failed conversion never leaves a half-written file."
        ),
        examples=(
            "  vggt convert model.pt model.safetensors\n"
            "  vggt convert runs/exp1/checkpoint.pt weights/vggt-finetuned.safetensors"
        ),
    )
    parser.add_argument("src", metavar="SRC", help="torch checkpoint to read, e.g. model.pt or checkpoint.pt")
    parser.add_argument(
        "dst", metavar="DST", help="weights file to write; must end in .safetensors, e.g. model.safetensors"
    )


def run_convert(args: argparse.Namespace) -> int:
    dst = Path(args.dst)
    count = convert_checkpoint(args.src, dst)
    print(f"converted {count} tensors ({dst.stat().st_size / 1e6:.1f} MB) to {dst}")
    return 0


# verify-weights --------------------------------------------------------------------------------
def add_verify_weights(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers,
        "verify-weights",
        run_verify_weights,
        summary="Check that a checkpoint's keys and shapes fit a VGGT architecture, without loading it.",
        details=(
            "Prints a JSON report to stdout: source, total_source_keys, loaded_keys, missing,\n"
            "unexpected, shape_mismatch and ok. When something does not fit, a readable summary with\n"
            "hints also goes to stderr and the exit status is 1."
        ),
        examples=(
            "  vggt verify-weights facebook/VGGT-1B\n"
            "  vggt verify-weights model.safetensors --config tiny\n"
            "  vggt verify-weights runs/exp1/checkpoint.pt --config runs/exp1/config.json\n"
            "  HF_HUB_OFFLINE=1 vggt verify-weights facebook/VGGT-1B   # from the local cache only"
        ),
    )
    parser.add_argument(
        "path",
        metavar="PATH",
        help=(
            "a weights file (.safetensors, .pt, .bin), a directory holding model.safetensors or model.pt, "
            "or a Hugging Face repo id such as facebook/VGGT-1B (read through the Hugging Face cache)"
        ),
    )
    parser.add_argument(
        "--config",
        metavar="CONFIG",
        help=(
            "architecture to check against: a preset (vggt_1b, small_reference, tiny) or a path ending in "
            ".json, e.g. --config tiny or --config runs/exp1/config.json; default: the config.json next to "
            "the weights, else vggt_1b"
        ),
    )


def run_verify_weights(args: argparse.Namespace) -> int:
    report = verify_weights(VGGT, args.path, config=config_argument(args.config))
    print(json.dumps({**report.to_dict(), "ok": report.ok}, indent=2))
    if report.ok:
        return 0
    print(report.describe(), file=sys.stderr)
    return 1


def config_argument(value: str | None) -> str | dict[str, Any] | None:
    """--config: a path ending in .json becomes its contents; anything else is a preset name."""
    if value is None or not value.endswith(".json"):
        return value
    return read_config_json(Path(value))


# predict ---------------------------------------------------------------------------------------
PREDICT_OUTPUTS = """writes into OUT (created if missing; anything else in it is left alone):
  predictions.npz  upstream's keys (pose_enc, depth [S,H,W,1], depth_conf, world_points, world_points_conf,
                   images [S,3,H,W]; track/vis/conf with --query-points) plus extrinsic [S,3,4]
                   (camera-from-world, OpenCV), intrinsic [S,3,3] (model pixels), world_points_from_depth,
                   intrinsic_original (original-image pixels), original_size, preprocess_scale,
                   preprocess_offset, content_box, image_names, camera_valid [S] (False: no usable
                   camera; such frames are left out of every camera-dependent output, with a warning)
  depth/, confidence/  colour-mapped PNGs per frame at the model's resolution     (--export depth)
  points.ply       binary PLY of the confidence-filtered coloured points          (--export ply)
  scene.glb        points and camera frustums, glTF y-up axes                     (--export glb)
  sparse/          COLMAP cameras.bin, images.bin, points3D.bin at the original
                   resolution (PINHOLE camera per image)                          (--export colmap)
  preview/         points.png (software render) and frames.png                    (--export preview)
  video_frames/    the sampled frames (video input only)
  vggt_predict_manifest.json  what this run wrote (the proof that predict may replace it)
Points live in the first camera's frame (OpenCV axes: x right, y down, z forward); scale is arbitrary.
OUT may be your scene folder (e.g. beside images/): predict only ever replaces entries its manifest records
and that are unchanged since; an entry of one of its names that it did not write (your sparse/) stops the
run before any work, with or without --overwrite. If any step fails, OUT is left as it was."""


def add_model_arguments(group: argparse._ArgumentGroup) -> None:
    """--model, --config, --device, --dtype, --heads-autocast and --resolution: how predict, eval and app load and
    feed the model."""
    add_model_source_arguments(group)
    group.add_argument(
        "--heads-autocast",
        action="store_true",
        help="run the camera, depth and point heads in --dtype too (by default they compute in float32, as upstream "
        "on a GPU; upstream on a CPU runs them in bf16 by accident). On this CPU in bf16 the heads ran 2.8x faster, "
        "and VGGT-1B's outputs stay within the 1e-2 bf16 bound, but with less margin (world_points 9.2e-3)",
    )
    group.add_argument(
        "--resolution",
        type=int,
        default=518,
        metavar="PX",
        help="crop: image width, pad: longer side; a multiple of 14 (default 518, the model's training size)",
    )


def add_model_source_arguments(group: argparse._ArgumentGroup) -> None:
    """--model, --config, --device and --dtype: which model, where and in what precision (upstream's demo scripts
    take these too)."""
    group.add_argument(
        "--model",
        default="facebook/VGGT-1B",
        metavar="SOURCE",
        help="Hugging Face repo id (read through its cache), a directory with model.safetensors / model.pt, or a "
        "weights / training-checkpoint file (default facebook/VGGT-1B)",
    )
    group.add_argument(
        "--config",
        metavar="CONFIG",
        help="architecture: a preset (vggt_1b, small_reference, tiny) or a config.json path; default: the "
        "config.json next to the weights, else vggt_1b. Heads the checkpoint lacks are switched off",
    )
    group.add_argument("--device", default="auto", help="auto (NPU > CUDA > CPU), cpu, cuda, cuda:1, npu:0, ...")
    group.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="autocast dtype; auto: bfloat16 where the device computes it natively (Atlas A2 NPUs, CUDA sm80+, CPUs "
        "with AMX-BF16 or AVX512-BF16: outputs then differ from float32 within 1e-2 relative), else float16 on "
        "accelerators and float32 on the CPU; the choice is printed. VGGT_CPU_BF16=0/1 overrides the CPU detection",
    )


def add_predict(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers,
        "predict",
        run_predict,
        summary="Predict cameras, depth and points from images or a video and export them.",
        details=(
            "Loads the model, preprocesses the images (crop: width -> RESOLUTION; pad: longer side ->\n"
            "RESOLUTION, white square), runs one forward pass under the runtime's autocast and writes the\n"
            "predictions and exports. A folder is read in file-name order; files that are not images are\n"
            "skipped with a warning; images of different sizes are padded to a common size (with a warning)\n"
            "and the padding is left out of every export.\n\n" + PREDICT_OUTPUTS
        ),
        examples=(
            "  vggt predict --images scene/images --out scene/vggt\n"
            "  vggt predict --images a.jpg b.jpg c.jpg --out out --export ply,glb --conf-threshold 25\n"
            "  vggt predict --images walk.mp4 --fps 2 --out out          # needs `pip install av`\n"
            "  vggt predict --images scene/images --out out --ba         # bundle-adjusted COLMAP model\n"
            "  vggt predict --images imgs --out out --model runs/synthetic/ckpts/checkpoint.pt --config tiny \\\n"
            "      --resolution 112 --device cpu\n"
            "  HF_HUB_OFFLINE=1 vggt predict --images imgs --out out    # weights from the local cache only"
        ),
    )
    io = parser.add_argument_group("input and output")
    io.add_argument(
        "--images",
        nargs="+",
        required=True,
        metavar="PATH",
        help="a folder of images, image files, or one video (.mp4, .mov, .avi, .mkv, .webm, ...)",
    )
    io.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory (created)")
    io.add_argument(
        "--overwrite",
        action="store_true",
        help="replace every output an earlier run recorded in OUT (stale exports included); your files stay",
    )
    io.add_argument(
        "--export",
        default="all",
        metavar="LIST",
        help="comma-separated: depth, ply, glb, colmap, preview; or all (default) or none (predictions.npz only). "
        "glb needs trimesh and colmap pycolmap: pip install 'vggt-npu[export]'",
    )
    io.add_argument("--fps", type=float, default=1.0, help="video frames kept per second of video (default 1)")

    model = parser.add_argument_group("model and inference")
    add_model_arguments(model)
    model.add_argument("--mode", default="crop", choices=("crop", "pad"), help="preprocessing (default crop)")
    model.add_argument(
        "--frames-chunk-size",
        type=int,
        default=8,
        metavar="N",
        help="frames per chunk of the token-wise work in the aggregator and the heads (lower it to save memory; "
        "default 8)",
    )
    model.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="split the frames over N processes (one per device) with exact sequence-parallel inference; N must "
        "divide the attention head count (16 for VGGT-1B); rank 0 writes the outputs. Under torchrun the launcher's "
        "world size is used (default 1)",
    )
    model.add_argument(
        "--offload",
        action="store_true",
        help="hold the layers the heads read and the depth and point maps in host memory, bringing them back a chunk "
        "of frames at a time: on an accelerator about 2.5x the frames (VGGT-1B, 518 px, bf16: 14 MB a frame on the "
        "device instead of 36), for host memory (the estimate prints it) and the copies' time; the outputs are the "
        "same. On a CPU, host and device are one memory: it changes nothing",
    )
    model.add_argument(
        "--skip-memory-check",
        action="store_true",
        help="run even when the memory estimate printed before loading exceeds the free device or host memory",
    )
    model.add_argument(
        "--query-points",
        type=Path,
        metavar="FILE",
        help="track these pixels of the first image: a .npy [N, 2] or a text file of 'x y' lines, in pixels of "
        "the original image (as an image viewer shows them); adds track/vis/conf and track_original to the npz",
    )

    model.add_argument(
        "--strict",
        action="store_true",
        help="stop with an error when a frame's predicted camera is unusable (field of view not positive or a "
        "non-finite entry); by default such frames are left out of the outputs that need a camera, with a warning",
    )

    points = parser.add_argument_group("point clouds and COLMAP")
    points.add_argument(
        "--conf-threshold",
        type=float,
        default=50.0,
        metavar="PCT",
        help="keep points whose depth confidence reaches this percentile, 0-100 (default 50)",
    )
    points.add_argument(
        "--max-colmap-points",
        type=int,
        default=100_000,
        metavar="N",
        help="without --ba, a random subset of at most N points goes to sparse/ (default 100000)",
    )

    ba = parser.add_argument_group("bundle adjustment (--ba; needs pycolmap and a model with a track head)")
    ba.add_argument(
        "--ba",
        action="store_true",
        help="build sparse/ from track-head correspondences and refine it with pycolmap's bundle adjustment",
    )
    ba.add_argument("--query-frames", type=int, default=4, metavar="N", help="frames to track from (default 4)")
    ba.add_argument(
        "--max-query-points", type=int, default=2048, metavar="N", help="tracked points in all (default 2048)"
    )
    ba.add_argument("--vis-thresh", type=float, default=0.2, metavar="V", help="minimum track visibility (default 0.2)")
    ba.add_argument(
        "--max-reproj-error",
        type=float,
        default=4.0,
        metavar="PX",
        help="reprojection error limit in model pixels, before and after the adjustment (default 4)",
    )


def run_predict(args: argparse.Namespace) -> int:
    ba = None
    if args.ba:
        ba = BundleAdjustmentOptions(args.query_frames, args.max_query_points, args.vis_thresh, args.max_reproj_error)
    options = PredictOptions(
        images=args.images,
        out=args.out,
        model=args.model,
        config=config_argument(args.config),
        device=args.device,
        dtype=args.dtype,
        heads_autocast=args.heads_autocast,
        offload=args.offload,
        mode=args.mode,
        resolution=args.resolution,
        frames_chunk_size=args.frames_chunk_size,
        fps=args.fps,
        query_points=args.query_points,
        conf_threshold=args.conf_threshold,
        exports=parse_exports(args.export),
        max_colmap_points=args.max_colmap_points,
        ba=ba,
        overwrite=args.overwrite,
        strict=args.strict,
        memory_check=not args.skip_memory_check,
    )
    if args.nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc == 1 and not under_torchrun():
        predict_and_report(options)
        return 0
    if ba is not None:
        raise ValueError("--ba runs the track head on one process; use it without --nproc or torchrun")
    launch(args.nproc, args.device, functools.partial(predict_and_report, options))
    return 0


def predict_and_report(options: PredictOptions) -> None:
    """predict(options) and its summary, printed by the rank that wrote the outputs. A spawned rank runs this as
    its main function, so it installs the stop-signal handlers there too (in the parent they are in place)."""
    with stop_signals_raise(), readable_warnings("vggt predict"):
        summary = predict(options)
    if summary is not None:
        print(summary.describe())


# eval ------------------------------------------------------------------------------------------
EVAL_OUTPUTS = """prints a table per category (co3d) or scene (custom) and the mean over them:
  AUC30, AUC15, AUC5, AUC3  pose accuracy in percent: per frame pair max(rotation error, translation-direction
                            error), AUC up to 30/15/5/3 degrees, pooled per category, averaged over categories
  DepthAbsRel, DepthDelta1.25   depth after per-frame median scaling, where ground-truth depth exists
  PointOverall              point map vs true depth unprojected, after a similarity alignment (accuracy and
                            completeness in the JSON), where intrinsics exist too and scipy is installed
with --out DIR, also writes DIR/<dataset>_eval.json and DIR/<dataset>_eval.md (only these two files): the
numbers, every protocol setting, the weights' sha256, device and dtype, and how the run departs from the
published protocol."""

CO3D_PROTOCOL = """the published Co3D protocol: the 41 seen categories in list order; sequences sorted; a sequence
with fewer than 50 frames, or with a camera whose PyTorch3D T[0] + T[1] + T[2] exceeds 1e5, is skipped; seed 0
set once; per kept sequence 10 frames from np.random.choice(n, 10, replace=False) in drawn order (the first is
the reference); images cropped to width 518; bf16 (fp16 where unsupported), TF32 off; all pairs i < j; metrics
in double precision on the host."""


def add_eval_settings(parser: argparse.ArgumentParser, min_frames: int) -> None:
    """Frame drawing, output and model options shared by `eval co3d` and `eval custom`."""
    protocol = parser.add_argument_group("protocol")
    protocol.add_argument(
        "--num-frames", type=int, default=10, metavar="N", help="frames drawn per sequence (default 10)"
    )
    protocol.add_argument(
        "--min-frames",
        type=int,
        default=min_frames,
        metavar="N",
        help=f"skip sequences with fewer frames (default {min_frames})",
    )
    protocol.add_argument("--seed", type=int, default=0, help="seed for Python, NumPy and torch, set once (default 0)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="write the JSON and Markdown reports into DIR")
    add_model_arguments(parser.add_argument_group("model and inference"))


def add_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="Evaluate a model's cameras and depth on Co3D or on your own posed scenes.",
        description="Evaluate a model's cameras and depth on Co3D (the published protocol) or on your own scenes.\n\n"
        + EVAL_OUTPUTS,
        epilog="run `vggt eval co3d --help` or `vggt eval custom --help` for the arguments",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    datasets = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    co3d = add_subcommand(
        datasets,
        "co3d",
        run_eval,
        summary="Evaluate on Co3D test sequences by the published camera-pose protocol.",
        details=CO3D_PROTOCOL + "\n\n" + EVAL_OUTPUTS,
        examples=(
            "  vggt eval co3d --co3d-dir /data/co3d --anno-dir /data/co3d_test_anno --out results/vggt1b\n"
            "  vggt eval co3d --co3d-dir /data/co3d --anno-dir /data/co3d_anno --categories apple tv --fast-eval\n"
            "  vggt eval co3d --model runs/full/ckpts/checkpoint.pt --co3d-dir D --anno-dir A --device npu:0"
        ),
    )
    data = co3d.add_argument_group("data")
    data.add_argument("--co3d-dir", type=Path, required=True, metavar="DIR", help="the Co3D v2 root (category folders)")
    data.add_argument(
        "--anno-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder of {category}_test.jgz: the evaluation preprocessing's (PyTorch3D R, T per frame) or the "
        "training annotations (extri, intri)",
    )
    data.add_argument(
        "--categories", nargs="+", metavar="NAME", help="categories in this order (default: the 41 seen categories)"
    )
    data.add_argument(
        "--fast-eval",
        action="store_true",
        help="per category with >= 10 sequences, 10 drawn with random.sample from the sorted list, then sorted",
    )
    add_eval_settings(co3d, min_frames=50)
    custom = add_subcommand(
        datasets,
        "custom",
        run_eval,
        summary="Evaluate on your own posed RGB-D scenes (the custom training layout).",
        details=(
            "ROOT holds one folder per scene, each with a cameras.json or a COLMAP sparse/0 model plus images/ and\n"
            "depths/ (the layout training reads; documented in vggt/scenes/custom_layout.py). Per scene\n"
            "NUM_FRAMES frames are drawn after seeding once, as in the Co3D protocol; each scene is one row.\n\n"
            + EVAL_OUTPUTS
        ),
        examples="  vggt eval custom --root my_data --out results/my_data\n"
        "  vggt eval custom --root my_data --num-frames 8 --min-frames 8 --model runs/ft/ckpts/checkpoint.pt",
    )
    custom.add_argument("--root", type=Path, required=True, metavar="ROOT", help="folder of scenes (or one scene)")
    add_eval_settings(custom, min_frames=10)


def run_eval(args: argparse.Namespace) -> int:
    options = EvalOptions(
        dataset=args.dataset,
        model=args.model,
        config=config_argument(args.config),
        device=args.device,
        dtype=args.dtype,
        heads_autocast=args.heads_autocast,
        resolution=args.resolution,
        num_frames=args.num_frames,
        min_frames=args.min_frames,
        seed=args.seed,
        out=args.out,
        co3d_dir=getattr(args, "co3d_dir", None),
        anno_dir=getattr(args, "anno_dir", None),
        categories=tuple(getattr(args, "categories", None) or SEEN_CATEGORIES),
        fast_eval=getattr(args, "fast_eval", False),
        root=getattr(args, "root", None),
    )
    with readable_warnings("vggt eval"):
        report = run_evaluation(options)
    print("\n".join(table_lines(report, markdown=False)))
    for difference in report.get("differences_from_published", []):
        print(f"differs from the published protocol: {difference}")
    if args.out is not None:
        print(f"wrote {args.out / f'{args.dataset}_eval.json'} and {args.out / f'{args.dataset}_eval.md'}")
    return 0


# view ------------------------------------------------------------------------------------------
def add_view(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers,
        "view",
        run_view,
        summary="Browse a `vggt predict` output in an interactive 3D viewer (viser, in the web browser).",
        details=(
            "Serves the depth point cloud of OUT_DIR/predictions.npz and the camera frustums with a\n"
            "confidence-percentile slider, a point-size slider and a camera toggle. Needs the optional\n"
            "viser package: pip install 'vggt-npu[demo]'. Stop it with Ctrl-C."
        ),
        examples=(
            "  vggt view scene/vggt                     # then open http://127.0.0.1:8080\n"
            "  vggt view out --port 8081 --conf-threshold 25\n"
            "  vggt view out --host 0.0.0.0             # every machine on the network may connect (warns)"
        ),
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="a directory written by vggt predict")
    parser.add_argument(
        "--host",
        default=LOOPBACK_HOST,
        help=f"address to listen on (default {LOOPBACK_HOST}: this machine only; 0.0.0.0 serves every interface, "
        "so anyone on the network sees the scene, and warns)",
    )
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument(
        "--conf-threshold", type=float, default=50.0, metavar="PCT", help="initial confidence percentile (default 50)"
    )
    parser.add_argument(
        "--max-points",
        type=int,
        default=1_000_000,
        metavar="N",
        help="thin the shown cloud to at most N points (default 1000000)",
    )


def run_view(args: argparse.Namespace) -> int:
    with readable_warnings("vggt view"):
        serve(args.out_dir, args.host, args.port, args.conf_threshold, args.max_points)
    return 0


# app -------------------------------------------------------------------------------------------
def add_app(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers,
        "app",
        run_app,
        summary="Reconstruct in the web browser: upload images or a video, look around the scene (Gradio).",
        details=(
            "Loads the model once, then serves a page: upload images or one video, press Reconstruct, and\n"
            "see the points and cameras in 3D with depth and confidence galleries and downloads (a zip of\n"
            "everything `vggt predict` writes, the COLMAP model). The prediction mode, confidence percentile,\n"
            "frame filter and camera toggle re-render without a second inference. One reconstruction runs at\n"
            "a time; others wait in a queue and see their place. Scripts can call the /reconstruct endpoint\n"
            "(gradio_client: Client(url).predict([handle_file(p), ...], 50, api_name='/reconstruct') returns the\n"
            "GLB, the zip and a status line). Offline: no analytics, no share link, nothing from a CDN (weights:\n"
            "a local --model, or HF_HUB_OFFLINE=1 to read the Hugging Face cache only). Every file lives in a\n"
            "temporary folder removed when its page closes and at exit (Ctrl-C, SIGTERM).\n"
            "Needs gradio: pip install 'vggt-npu[app]' (Python >= 3.10)."
        ),
        examples=(
            "  vggt app                                   # facebook/VGGT-1B; then open http://127.0.0.1:7860\n"
            "  vggt app --model weights/ --device cpu --resolution 224 --max-frames 16\n"
            "  vggt app --host 0.0.0.0 --port 8000        # every machine on the network may connect (warns)"
        ),
    )
    add_model_arguments(parser.add_argument_group("model and inference"))
    parser.add_argument("--frames-chunk-size", type=int, default=8, metavar="N", help="as in vggt predict (default 8)")
    parser.add_argument(
        "--max-frames",
        type=int,
        metavar="N",
        help="refuse larger uploads before inference (default: the most the memory plan allows on this device at "
        "start; this option can only lower that)",
    )
    parser.add_argument(
        "--host",
        default=LOOPBACK_HOST,
        help=f"address to listen on (default {LOOPBACK_HOST}: this machine only; 0.0.0.0 serves every interface and "
        "warns)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")


def run_app(args: argparse.Namespace) -> int:
    settings = AppSettings(
        model=args.model,
        config=config_argument(args.config),
        device=args.device,
        dtype=args.dtype,
        resolution=args.resolution,
        frames_chunk_size=args.frames_chunk_size,
        heads_autocast=args.heads_autocast,
        max_frames=args.max_frames,
    )
    with readable_warnings("vggt app"):
        for noise in (ResourceWarning, DeprecationWarning, FutureWarning):  # the web stack's, not the user's business
            warnings.filterwarnings("ignore", category=noise)
        serve_app(settings, args.host, args.port)
    return 0


@contextlib.contextmanager
def readable_warnings(prog: str) -> Iterator[None]:
    """Show library warnings as `PROG: warning: ...` lines on stderr (e.g. "vggt predict") instead of Python's
    format."""

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


# entry point -----------------------------------------------------------------------------------
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_convert,
    add_verify_weights,
    add_predict,
    add_eval,
    add_view,
    add_app,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vggt",
        description="VGGT (Visual Geometry Grounded Transformer) from the command line.",
        epilog=f"{EXIT_STATUSES}\n\nrun `vggt COMMAND --help` for a command's arguments and examples, "
        "e.g. vggt convert --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `vggt` with `argv` (default: sys.argv[1:]) and return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help and usage errors: hand back their status instead of exiting
        return int(exit_.code or 0)
    return run_reporting_errors(f"vggt {args.command}", lambda: args.handler(args))


def run_reporting_errors(prog: str, action: Callable[[], int]) -> int:
    """`action()`'s exit status, with stop signals raising (vggt.interrupts): a library error for bad input (OSError,
    ValueError) becomes `PROG: error: ...` and status 2, a stop signal one line and 128 + its number."""
    try:
        with stop_signals_raise():
            return action()
    except (OSError, ValueError) as err:  # the library's bad-input errors carry a readable message
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Interrupted, or a Ctrl-C that reached a thread without our handlers
        stop = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
        print(f"{prog}: {stop}; what it was writing is rolled back", file=sys.stderr)
        return stop.exit_status
