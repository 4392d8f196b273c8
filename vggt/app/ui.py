"""The page of `vggt app` (Gradio Blocks) and its one public API endpoint, `/reconstruct`.

The page: images or one video in, Reconstruct, then the scene (gr.Model3D), depth and confidence galleries and
downloads. The prediction mode, confidence percentile, frame filter and camera toggle re-render the scene from the
cached predictions.npz without a second inference. The API: `reconstruct(images, confidence percentile) -> (GLB,
zip of the outputs, status text)`; the page's own events are private. Reconstructions share one queue slot.

Gradio is optional and reads its environment when imported, so `import_gradio` sets that first. This module has
no `from __future__ import annotations`: Gradio injects gr.Request by the evaluated annotation of the handlers.
"""

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from vggt.app.reconstruction import ALL_FRAMES, PREDICTION_MODES, Reconstructor, selected_frame

RECONSTRUCT_QUEUE = "reconstruct"  # the page's button and the API wait in one line, one job at a time
# API clients close no page (no unload event), so all their requests share one folder: each replaces the last,
# after Gradio has copied the last one's results into its cache
API_SESSION = "api"
DEFAULT_PERCENTILE = 50.0
TITLE = "VGGT: cameras, depth and points from images"
INTRO = (
    "Upload a few images of a scene (or one video), press **Reconstruct**, then look around the scene. "
    "The controls below it re-render from the same prediction. Nothing leaves this machine."
)


def import_gradio(cache: Path) -> ModuleType:
    """gradio, imported offline (no analytics, no version check) with its upload and output cache in `cache`; or
    a ValueError that says how to get it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    try:
        import gradio
    except ImportError as err:
        raise ValueError(f"vggt app needs gradio ({err}): pip install 'vggt-npu[app]' (Python 3.10 or newer)") from err
    return gradio


def _failure(err: Exception) -> str:
    return f"**Error:** {err}"


def session_of(request: Any) -> str:
    """The browser session of a gr.Request (API clients have one too)."""
    return getattr(request, "session_hash", None) or API_SESSION


def build_app(reconstructor: Reconstructor, gr: ModuleType) -> Any:  # -> gr.Blocks
    """The Blocks app over `reconstructor`; `gr` is the module import_gradio returned."""

    def render(folder, mode, percentile, show_cameras, frame):
        """-> (scene, status) for the page's controls."""
        if folder is None:
            return None, "Upload images or a video and press **Reconstruct**."
        try:
            path, points = reconstructor.render(
                folder, PREDICTION_MODES[mode], percentile, show_cameras, selected_frame(frame)
            )
        except (OSError, ValueError) as err:
            return None, _failure(err)
        return str(path), f"Showing {points} points ({mode.lower()}, confidence >= {percentile:g}th percentile)."

    tracked = gr.Progress(track_tqdm=True)  # Gradio finds the progress tracker by its default value

    def reconstruct_page(images, video, fps, mode, percentile, show_cameras, request: gr.Request, progress=tracked):
        """The button: -> (folder, scene, status, depth gallery, confidence gallery, downloads, frame filter)."""
        progress(0, desc="reconstructing")
        try:
            result = reconstructor.reconstruct(session_of(request), images, video, float(fps or 1.0), percentile)
            scene, shown = render(str(result.folder), mode, percentile, show_cameras, ALL_FRAMES)
            downloads = result.downloads()
        except (OSError, ValueError) as err:
            empty = gr.Dropdown(choices=[ALL_FRAMES], value=ALL_FRAMES)
            return None, None, _failure(err), [], [], None, empty
        status = f"{reconstructor.describe(result)}\n\n{shown}"
        frames = gr.Dropdown(choices=result.frame_choices(), value=ALL_FRAMES)
        depth, confidence = result.gallery("depth"), result.gallery("confidence")
        return str(result.folder), scene, status, depth, confidence, downloads, frames

    def reconstruct_api(images, percentile):
        """/reconstruct: (image files, confidence percentile) -> (GLB, zip of the outputs, status text)."""
        try:
            result = reconstructor.reconstruct(API_SESSION, images, None, 1.0, float(percentile))
            scene, points = reconstructor.render(result.folder, "depth", float(percentile), True, None)
            archive = result.downloads()[0]
        except (OSError, ValueError) as err:
            return None, None, f"error: {err}"
        return str(scene), archive, f"{reconstructor.describe(result)} Scene: {points} points."

    def end_session(request: gr.Request) -> None:
        reconstructor.workspace.end_session(session_of(request))

    limit = reconstructor.max_frames
    limit_text = f"at most {limit} frames" if limit is not None else "no frame limit (free memory unknown)"
    with gr.Blocks(title="VGGT", delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO} This server takes {limit_text}.")
        folder = gr.State(None)  # the request folder, kept on the server
        with gr.Row():
            with gr.Column(scale=2):
                images = gr.File(file_count="multiple", label="Images", elem_id="vggt-images")
                video = gr.Video(label="Or one video", sources=["upload"])
                fps = gr.Number(value=1.0, minimum=0.01, label="Video frames per second")
                button = gr.Button("Reconstruct", variant="primary", elem_id="vggt-reconstruct")
                status = gr.Markdown("Upload images or a video and press **Reconstruct**.", elem_id="vggt-status")
            with gr.Column(scale=4):
                scene = gr.Model3D(label="Scene (drag to orbit)", height=520, elem_id="vggt-scene")
                with gr.Row():
                    mode = gr.Radio(list(PREDICTION_MODES), value=next(iter(PREDICTION_MODES)), label="Points from")
                    percentile = gr.Slider(0, 100, value=DEFAULT_PERCENTILE, step=1, label="Confidence percentile")
                with gr.Row():
                    frame = gr.Dropdown([ALL_FRAMES], value=ALL_FRAMES, label="Show points of frame")
                    show_cameras = gr.Checkbox(value=True, label="Show cameras")
                with gr.Tab("Depth"):
                    depth = gr.Gallery(label="Depth (near is bright)", columns=4, height=300)
                with gr.Tab("Confidence"):
                    confidence = gr.Gallery(label="Depth confidence", columns=4, height=300)
                downloads = gr.File(label="Downloads: all outputs, the COLMAP model", file_count="multiple")
        with gr.Column(visible=False):  # the API's own fixed signature
            api_images = gr.File(file_count="multiple", label="images")
            api_percentile = gr.Number(value=DEFAULT_PERCENTILE, label="confidence_percentile")
            api_scene, api_zip, api_status = (
                gr.File(label="scene"),
                gr.File(label="outputs"),
                gr.Textbox(label="status"),
            )
            api_button = gr.Button()

        button.click(
            reconstruct_page,
            [images, video, fps, mode, percentile, show_cameras],
            [folder, scene, status, depth, confidence, downloads, frame],
            api_visibility="private",
            concurrency_id=RECONSTRUCT_QUEUE,
            concurrency_limit=1,
        )
        controls = [folder, mode, percentile, show_cameras, frame]
        for event in (mode.input, show_cameras.input, frame.input):
            event(render, controls, [scene, status], api_visibility="private", concurrency_limit=None)
        percentile.change(  # dragging and typing alike; while dragging, only the last value is rendered
            render, controls, [scene, status], api_visibility="private", concurrency_limit=None,
            trigger_mode="always_last",
        )  # fmt: skip
        api_button.click(
            reconstruct_api,
            [api_images, api_percentile],
            [api_scene, api_zip, api_status],
            api_name="reconstruct",
            concurrency_id=RECONSTRUCT_QUEUE,
            concurrency_limit=1,
        )
        app.unload(end_session)
    return app
