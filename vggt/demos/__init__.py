"""The library behind upstream's two demo scripts, which live at the repository root as drop-ins.

`colmap_scene` is demo_colmap.py's work (a scene folder's images/ -> its sparse/ COLMAP model) and
`viser_folder` demo_viser.py's (a folder of images -> predictions in a temporary folder -> the viser viewer). This
module holds what both scripts share: the model options they take like `vggt predict`, and the way they run
(unsupported upstream flags, library errors, stop signals and warnings become one line on stderr and an exit status,
as in `vggt`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping

from vggt.cli import add_model_source_arguments, readable_warnings, run_reporting_errors

USAGE_ERROR = 2  # what argparse and `vggt` return for bad input


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --config, --device and --dtype, meaning what they mean for `vggt predict`."""
    add_model_source_arguments(parser.add_argument_group("model and inference (as in `vggt predict`)"))


def unsupported_flag(prog: str, args: argparse.Namespace, unsupported: Mapping[str, str]) -> str | None:
    """The error line for the first unsupported upstream flag that `args` sets (dest -> why), or None."""
    for dest, why in unsupported.items():
        if getattr(args, dest):
            return f"{prog}: --{dest} is not supported here ({why})"
    return None


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

    def run() -> int:
        with readable_warnings(prog):
            action(args)
        return 0

    return run_reporting_errors(prog, run)
