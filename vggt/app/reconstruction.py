"""What the app does for a request, without Gradio: the model loaded once, `vggt predict` into a request folder,
and scenes re-rendered from its predictions.npz (no second inference) with the page's point and camera choices."""

from __future__ import annotations

import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggt.app.workspace import Workspace
from vggt.memory_plan import most_frames_that_fit, planning_config
from vggt.parallel.launch import process_device
from vggt.predict.colmap import import_pycolmap
from vggt.predict.glb import import_trimesh, write_glb
from vggt.predict.inference import load_model
from vggt.predict.pipeline import PREDICTIONS, PredictOptions, predict
from vggt.predict.points import saved_cloud
from vggt.predict.video import extract_frames
from vggt.runtime import configure_process, describe_dtype_choice, parse_dtype

PREDICTION_MODES = {"Depth and cameras": "depth", "Point map": "point_map"}  # upstream's prediction-mode choice
ALL_FRAMES = "All"
OUTPUTS = "outputs"  # predict's --out inside a request folder
OUTPUTS_ZIP = "vggt_outputs"  # .zip: everything predict wrote
COLMAP_ZIP = "colmap_sparse"  # .zip: the COLMAP model alone


@dataclass
class AppSettings:
    """The `vggt app` options that shape every request (the model options are `vggt predict`'s)."""

    model: str = "facebook/VGGT-1B"
    config: str | dict[str, Any] | None = None
    device: str = "auto"
    dtype: str = "auto"
    resolution: int = 518
    frames_chunk_size: int = 8
    heads_autocast: bool = False
    max_frames: int | None = None  # the user's limit; the memory plan's is applied too


@dataclass
class Reconstruction:
    """One request's result: where predict wrote, and what the page shows of it."""

    folder: Path  # the request folder
    names: list[str]  # frame names, in frame order
    seconds: float
    warnings: list[str]

    @property
    def outputs(self) -> Path:
        return self.folder / OUTPUTS

    def frame_choices(self) -> list[str]:
        """The frame filter's entries: all frames, then "index: file name"."""
        return [ALL_FRAMES] + [f"{index}: {name}" for index, name in enumerate(self.names)]

    def gallery(self, kind: str) -> list[tuple[str, str]]:
        """(PNG, "index: file name") of each frame's "depth" or "confidence" picture (predict numbers them)."""
        pictures = sorted((self.outputs / kind).glob("*.png"))
        return [(str(path), caption) for path, caption in zip(pictures, self.frame_choices()[1:])]

    def downloads(self) -> list[str]:
        """A zip of everything predict wrote and, when it wrote one, a zip of the COLMAP model."""
        archives = [shutil.make_archive(str(self.folder / OUTPUTS_ZIP), "zip", self.outputs)]
        if (self.outputs / "sparse").is_dir():
            archives.append(shutil.make_archive(str(self.folder / COLMAP_ZIP), "zip", self.outputs / "sparse"))
        return archives


def selected_frame(choice: str | None) -> int | None:
    """The frame filter's value -> a frame index, None for all frames."""
    if not choice or choice == ALL_FRAMES:
        return None
    return int(choice.split(":", 1)[0])


def available_exports() -> tuple[str, ...]:
    """What each request exports: depth (the galleries), ply, and colmap where pycolmap is installed."""
    try:
        import_pycolmap()
    except ValueError:
        return ("depth", "ply")
    return ("depth", "ply", "colmap")


class Reconstructor:
    """Holds the model (loaded once, at construction, and kept on its device) and runs requests in `workspace`.

    Reconstructions run one at a time (the page's queue); re-renders may run beside them and each other, so the
    predictions cache and the render folders are shared under one lock.
    """

    def __init__(self, settings: AppSettings, workspace: Workspace) -> None:
        self.settings, self.workspace = settings, workspace
        try:
            import_trimesh()  # the 3D scene is a GLB: say so before the model loads
        except ValueError:
            raise ValueError(
                "vggt app builds its 3D scene with trimesh and scipy, which are not installed: "
                "pip install 'vggt-npu[app]'"
            ) from None
        self.exports = available_exports()  # here, in the main thread: pycolmap's import takes the stop signals
        self.device = process_device(settings.device)
        configure_process(self.device)
        self.dtype = parse_dtype(settings.dtype, self.device)
        self.precision = describe_dtype_choice(settings.dtype, self.device)
        print(f"loading the model from {settings.model}")
        model = load_model(settings.model, settings.config, settings.heads_autocast, self.dtype)
        self.model = model.to_inference_device(self.device)
        self.max_frames = self._frame_limit()
        self._lock = threading.Lock()
        self._cached: tuple[Path, dict[str, np.ndarray]] | None = None  # the last predictions read

    def _frame_limit(self) -> int | None:
        """The memory plan's limit on this device now, with the model on it (square images of the resolution),
        lowered by --max-frames; a limit of 0 stops the server."""
        side, settings = self.settings.resolution, self.settings
        config = planning_config(settings.config, settings.model)
        planned = most_frames_that_fit(
            config, side, side, self.device, self.dtype, settings.frames_chunk_size, weights_resident=True
        )
        if planned == 0:
            raise ValueError(
                f"not even one frame of {side} px fits the memory free on {self.device} next to the model; "
                "lower --resolution or free some memory"
            )
        limits = [limit for limit in (planned, settings.max_frames) if limit is not None]
        return min(limits) if limits else None

    def _check_count(self, frames: int, video: bool) -> None:
        if self.max_frames is not None and frames > self.max_frames:
            detail = "sample the video at fewer frames per second" if video else "upload fewer images"
            raise ValueError(
                f"{frames} frames, but this server takes at most {self.max_frames} on {self.device} (its memory "
                f"plan at {self.settings.resolution} px, or its --max-frames); {detail}"
            )

    def reconstruct(
        self,
        session: str,
        images: Sequence[str] | None,
        video: str | None = None,
        fps: float = 1.0,
        percentile: float = 50.0,
    ) -> Reconstruction:
        """`vggt predict` of the upload (images, or the frames sampled from one video) into a new request folder of
        `session`; its earlier folder is removed once an image upload has passed its checks (a video's frames are
        counted once sampled)."""
        if images and video:
            raise ValueError("upload images or one video, not both (clear one of them)")
        if not images and not video:
            raise ValueError("upload images or a video first")
        if images:
            self._check_count(len(images), video=False)
            folder = self.workspace.new_request(session)
            paths = [Path(path) for path in images]
        else:
            folder = self.workspace.new_request(session)
            paths = extract_frames(Path(video), fps, folder / "video_frames", progress=True)
            self._check_count(len(paths), video=True)
        settings = self.settings
        options = PredictOptions(
            images=paths,
            out=folder / OUTPUTS,
            model=settings.model,
            config=settings.config,
            device=settings.device,
            dtype=settings.dtype,
            heads_autocast=settings.heads_autocast,
            resolution=settings.resolution,
            frames_chunk_size=settings.frames_chunk_size,
            conf_threshold=percentile,
            exports=self.exports,
            memory_check=False,  # the frame limit is that check, made at start (the allocator's cache reads as used)
        )
        start = time.perf_counter()
        # catch_warnings is process-wide: while this runs, a re-render's warnings land here too (there are none)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore")  # the web stack's ResourceWarnings and deprecations are not the user's
            warnings.simplefilter("always", UserWarning)  # predict's own: frames without a camera, skipped files
            predict(options, model=self.model)
        names = [str(name) for name in self.predictions(folder)["image_names"]]
        return Reconstruction(folder, names, time.perf_counter() - start, [str(w.message) for w in caught])

    def predictions(self, folder: Path | str) -> dict[str, np.ndarray]:
        """The arrays of a request folder's predictions.npz (the last one read is kept)."""
        folder = Path(folder)
        if not self.workspace.owns(folder):
            raise ValueError(
                "this reconstruction is gone (the server restarted or the page was reopened); run it again"
            )
        with self._lock:
            cached = self._cached
            if cached is None or cached[0] != folder:
                with np.load(folder / OUTPUTS / PREDICTIONS, allow_pickle=False) as data:
                    cached = self._cached = (folder, {key: data[key] for key in data.files})
        return cached[1]

    def render(
        self, folder: Path | str, source: str, percentile: float, show_cameras: bool, frame: int | None
    ) -> tuple[Path, int]:
        """A GLB of the request's points from `source` ("depth" or "point_map") at `percentile`, of one frame or all,
        with or without the camera frustums. Returns the file (a new name each time, so that no render overwrites
        one being sent) and its point count; the request's earlier renders are removed."""
        arrays = self.predictions(folder)
        cloud = saved_cloud(arrays, percentile, source, frame)
        renders = Path(folder) / "renders"
        with self._lock:
            renders.mkdir(exist_ok=True)
            for old in renders.glob("*.glb"):
                old.unlink(missing_ok=True)
            path = renders / f"scene_{time.monotonic_ns()}.glb"
            cameras = arrays["camera_valid"] & show_cameras
            write_glb(path, cloud, arrays["extrinsic"], arrays["intrinsic"], cameras, arrays["images"].shape[-2:])
        return path, len(cloud)

    def describe(self, result: Reconstruction) -> str:
        """The status line of a finished reconstruction (with predict's warnings)."""
        lines = [
            f"Reconstructed {len(result.names)} frames in {result.seconds:.1f} s ({self.device}, {self.precision})."
        ]
        lines += [f"Warning: {message}" for message in result.warnings]
        if "colmap" not in self.exports:
            lines.append("No COLMAP model: it needs pycolmap (pip install 'vggt-npu[export]'), then restart the app.")
        return "\n\n".join(lines)
