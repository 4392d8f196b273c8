"""demo_viser.py's work: a folder of images -> `vggt predict`'s predictions in a temporary folder -> `vggt view`.

As upstream's demo_viser.py: the images (sorted by name) are loaded as `load_and_preprocess_images` does by default
(crop mode, width 518), the model runs once, and a viser server shows the points and the cameras with a slider of
the percentage of low-confidence points hidden (initially 25). Either the depth unprojected by the predicted
cameras (the default) or, with the point map, the point head's world_points.

What is ours: the predictions go through `vggt predict`'s pipeline (vggt.predict.pipeline, exports=() so only
predictions.npz) into a temporary folder that is deleted when the viewer stops (Ctrl-C), when anything fails, and
on SIGTERM or SIGHUP; the viewer is `vggt view`'s (vggt.predict.viewer), listening on loopback unless told otherwise.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vggt.predict.pipeline import PredictOptions, predict
from vggt.predict.viewer import LOOPBACK_HOST, import_viser, serve

MAX_SHOWN_POINTS = 1_000_000  # the viewer thins the shown cloud to this many, as vggt view
DEFAULT_IMAGE_FOLDER = "examples/kitchen/images/"  # upstream's default: its example scene, not in this repository
MODEL_RESOLUTION = 518  # upstream's demo_viser loads the images at the default width
MAX_PORT = 65535


@dataclass
class ViserFolderOptions:
    """demo_viser.py's flags (upstream's names and defaults, plus --host) and the model options of `vggt predict`."""

    image_folder: Path = Path(DEFAULT_IMAGE_FOLDER)
    model: str = "facebook/VGGT-1B"
    config: str | dict[str, Any] | None = None  # preset name or config.json contents
    device: str = "auto"
    dtype: str = "auto"
    use_point_map: bool = False
    conf_threshold: float = 25.0  # initial percentage of low-confidence points hidden
    host: str = LOOPBACK_HOST
    port: int = 8080


def _check_options(options: ViserFolderOptions) -> Path:
    """The image folder, after every check that needs neither images nor model."""
    import_viser()
    if not 0 <= options.conf_threshold <= 100:
        raise ValueError(f"--conf_threshold is a percentage of points to hide, 0 to 100, got {options.conf_threshold}")
    if not 0 <= options.port <= MAX_PORT:
        raise ValueError(f"--port must be from 0 to {MAX_PORT}, got {options.port}")
    folder = Path(options.image_folder).expanduser()
    if not folder.is_dir():
        why = ""
        if Path(options.image_folder) == Path(DEFAULT_IMAGE_FOLDER):
            why = " (upstream's default: its example scene, which this repository does not ship)"
        raise FileNotFoundError(
            f"--image_folder {folder} is not a folder{why}; pass --image_folder DIR, a folder of images"
        )
    return folder


def predict_options(options: ViserFolderOptions, folder: Path, out: Path) -> PredictOptions:
    """The `vggt predict` run that demo_viser.py makes: crop mode at 518, predictions.npz only."""
    return PredictOptions(
        images=[folder],
        out=out,
        model=options.model,
        config=options.config,
        device=options.device,
        dtype=options.dtype,
        mode="crop",
        resolution=MODEL_RESOLUTION,
        exports=(),
    )


def view_folder(options: ViserFolderOptions) -> None:
    """Run demo_viser.py: predict into a temporary folder, serve it until Ctrl-C, delete the folder."""
    folder = _check_options(options)
    with tempfile.TemporaryDirectory(prefix="demo_viser-") as temporary:
        out = Path(temporary) / "predictions"
        predict(predict_options(options, folder, out))
        print(f"the predictions live in {out} until the viewer stops")
        serve(out, options.host, options.port, options.conf_threshold, MAX_SHOWN_POINTS, options.use_point_map)
