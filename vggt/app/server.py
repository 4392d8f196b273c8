"""`vggt app`: load the model once, serve the page on HOST:PORT offline, and remove every file it made at exit."""

from __future__ import annotations

import time
from pathlib import Path

from vggt.app.reconstruction import AppSettings, Reconstructor
from vggt.app.ui import build_app, import_gradio
from vggt.app.workspace import Workspace
from vggt.predict.viewer import LOOPBACK_HOST, warn_unless_loopback
from vggt.utils.load_fn import PATCH_SIZE

QUEUE_SIZE = 64  # waiting requests beyond this are refused (each sees its place in the line)
WAIT_SECONDS = 0.5  # how soon the main thread notices a stop signal


def check_settings(settings: AppSettings, host: str, port: int) -> None:
    """Refuse bad options before the model loads; warn about a host other than loopback."""
    if settings.max_frames is not None and settings.max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {settings.max_frames}")
    if settings.frames_chunk_size < 1:
        raise ValueError(f"--frames-chunk-size must be at least 1, got {settings.frames_chunk_size}")
    if settings.resolution <= 0 or settings.resolution % PATCH_SIZE:
        raise ValueError(
            f"--resolution must be a positive multiple of {PATCH_SIZE}, got {settings.resolution}; e.g. 518"
        )
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be 1-65535, got {port}")
    warn_unless_loopback(host, "use this app and see what is uploaded")


def serve(settings: AppSettings, host: str = LOOPBACK_HOST, port: int = 7860, temp_parent: Path | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM (under vggt.interrupts.stop_signals_raise, which raises Interrupted here); the
    temporary root, under `temp_parent` or the system's temp folder, is removed however the server stops."""
    check_settings(settings, host, port)
    workspace = Workspace(temp_parent)
    try:
        gr = import_gradio(workspace.gradio_cache)  # before the model loads: a missing gradio fails fast
        reconstructor = Reconstructor(settings, workspace)
        limit = reconstructor.max_frames
        print(
            f"at most {limit} frames a reconstruction" if limit is not None else "no frame limit: free memory unknown"
        )
        app = build_app(reconstructor, gr)
        app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
        print(f"serving on http://{host}:{port} (files in {workspace.root}, removed at exit); press Ctrl-C to stop")
        app.launch(
            server_name=host,
            server_port=port,
            share=False,
            show_error=True,
            ssr_mode=False,  # no Node server: the page is static files served by this process
            mcp_server=False,
            pwa=False,
            allowed_paths=[str(workspace.root)],
            prevent_thread_lock=True,  # Gradio's own wait swallows Ctrl-C and SIGTERM: ours lets them end the command
        )
        try:
            while True:
                time.sleep(WAIT_SECONDS)
        finally:
            app.close()
    finally:
        workspace.close()
