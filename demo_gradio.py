"""Upstream's `python demo_gradio.py`, served by `vggt app`: the same page (upload, Reconstruct, look around),
offline and on this machine only unless told otherwise (upstream's script opens a public share link; this one
never does). Every `vggt app` option works here, e.g. `python demo_gradio.py --model weights/ --device cpu`;
`python demo_gradio.py --help` lists them."""

from __future__ import annotations

import sys

from vggt.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
