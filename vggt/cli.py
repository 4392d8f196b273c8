"""The `vggt` command line: one `add_<name>` (parser) and one `run_<name>` (action) per subcommand.

A new subcommand (predict, export, view) is an `add_*` function appended to SUBCOMMANDS that
builds its parser with `add_subcommand` and points it at its `run_*` function. Every `run_*`
returns the exit status; library errors for bad input (OSError, ValueError) become status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], int]

EXIT_STATUSES = """exit status:
  0  success
  1  a check failed (verify-weights: the checkpoint does not fit the model)
  2  bad input: missing or unreadable file, wrong argument"""


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
    from vggt.weights import convert_checkpoint  # imported here so that `vggt --help` does not load torch

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
    from vggt.weights import verify_weights

    report = verify_weights(args.path, config=config_argument(args.config))
    print(json.dumps({**report.to_dict(), "ok": report.ok}, indent=2))
    if report.ok:
        return 0
    print(report.describe(), file=sys.stderr)
    return 1


def config_argument(value: str | None) -> str | dict[str, Any] | None:
    """--config: a path ending in .json becomes its contents; anything else is a preset name."""
    if value is None or not value.endswith(".json"):
        return value
    from vggt.weights import read_config_json

    return read_config_json(Path(value))


# entry point -----------------------------------------------------------------------------------
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (add_convert, add_verify_weights)


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
    try:
        return args.handler(args)
    except (OSError, ValueError) as err:  # the library's bad-input errors carry a readable message
        print(f"vggt {args.command}: error: {err}", file=sys.stderr)
        return 2
