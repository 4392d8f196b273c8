"""The library behind upstream's two demo scripts, which live at the repository root as drop-ins.

`colmap_scene` is demo_colmap.py's work (a scene folder's images/ -> its sparse/ COLMAP model) and
`viser_folder` demo_viser.py's (a folder of images -> predictions in a temporary folder -> the viser viewer). This
module holds what both scripts share: the model options they take like `vggt predict`, and the way they run
(unsupported upstream flags, library errors, stop signals and warnings become one line on stderr and an exit status,
as in `vggt`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping

from vggt.interrupts import Interrupted, stop_signals_raise

DEFAULT_MODEL = "facebook/VGGT-1B"
USAGE_ERROR = 2  # what argparse and `vggt` return for bad input


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --config, --device and --dtype, meaning what they mean for `vggt predict`."""
    group = parser.add_argument_group("model and inference (as in `vggt predict`)")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="SOURCE",
        help=f"Hugging Face repo id (read through its cache; HF_HUB_OFFLINE=1 keeps it offline), or a local folder "
        f"with model.safetensors / model.pt, or a weights or training-checkpoint file (default {DEFAULT_MODEL}; "
        "upstream always downloads its model.pt)",
    )
    group.add_argument(
        "--config",
        metavar="CONFIG",
        help="architecture: a preset (vggt_1b, small_reference, tiny) or a config.json path; default: the "
        "config.json next to the weights, else vggt_1b",
    )
    group.add_argument("--device", default="auto", help="auto (NPU > CUDA > CPU; the default), cpu, cuda:1, npu:0, ...")
    group.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="autocast dtype; auto (the default): bfloat16 where the device computes it natively, else float16 on "
        "accelerators and float32 on the CPU; the choice is printed",
    )


def unsupported_flag(prog: str, args: argparse.Namespace, unsupported: Mapping[str, str]) -> str | None:
    """The error line for the first unsupported upstream flag that `args` sets (dest -> why), or None."""
    for dest, why in unsupported.items():
        if getattr(args, dest):
            return f"{prog}: --{dest} is not supported here ({why})"
    return None


@contextlib.contextmanager
def script_warnings(prog: str) -> Iterator[None]:
    """Library warnings as `PROG: warning: ...` lines on stderr instead of Python's format."""

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def run_demo(
    prog: str,
    parser: argparse.ArgumentParser,
    unsupported: Mapping[str, str],
    action: Callable[[argparse.Namespace], None],
    argv: list[str] | None = None,
) -> int:
    """Parse `argv` (default sys.argv[1:]), refuse unsupported flags, run `action(args)`; the exit status.

    0: done. 2: a usage error (argparse's), an unsupported flag, or a library error for bad input (OSError,
    ValueError), each one line on stderr. 128 + the signal's number: stopped by SIGINT, SIGTERM or SIGHUP (whatever
    the action was writing is rolled back by the library).
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) and usage errors (2)
        return int(exit_.code or 0)
    refusal = unsupported_flag(prog, args, unsupported)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return USAGE_ERROR
    try:
        with stop_signals_raise(), script_warnings(prog):
            action(args)
    except (OSError, ValueError) as err:  # the library's bad-input errors carry a readable message
        print(f"{prog}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt as err:  # Interrupted, or a Ctrl-C that reached a thread without our handlers
        stop = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
        print(f"{prog}: {stop}; what it was writing is rolled back", file=sys.stderr)
        return stop.exit_status
    return 0
