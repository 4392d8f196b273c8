"""`vggt view OUT_DIR`: an interactive viser viewer of a `vggt predict` output (needs the optional viser).

Shows the depth-unprojected point cloud of predictions.npz with a confidence-percentile slider, a point-size
slider and the camera frustums (with their input images), in the first camera's frame with -y up. Frames without a
usable camera (camera_valid) are left out. With the point map (load_scene's `use_point_map`, demo_viser.py's
--use_point_map) the point head's world_points and world_points_conf are shown instead; they need no camera, so
every frame's points are shown and only the frustums are limited to the usable cameras.
"""

from __future__ import annotations

import ipaddress
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vggt.predict.cameras import camera_validity
from vggt.predict.frustum import scene_scale
from vggt.predict.points import POINT_SOURCES, PointCloud, confident_points
from vggt.utils.geometry import closed_form_inverse_se3
from vggt.utils.rotation import mat_to_quat

THUMBNAIL_WIDTH = 160  # frustum images are shrunk to this width before they are sent to the browser
LOOPBACK_HOST = "127.0.0.1"  # the default: only this machine can connect
# The keys of predictions.npz the viewer reads; pose_enc only stands in for camera_valid, which older outputs lack.
REQUIRED_KEYS = ("world_points_from_depth", "depth_conf", "images", "extrinsic", "intrinsic", "content_box")


def import_viser():  # -> the viser module
    """viser, or a ValueError that says how to get it (it is an optional dependency)."""
    try:
        import viser
    except ImportError as err:
        raise ValueError("vggt view needs viser: pip install 'vggt-npu[demo]' (or pip install viser)") from err
    return viser


@dataclass
class ViewerScene:
    """The arrays of predictions.npz that the viewer shows."""

    world_points: np.ndarray  # [S, H, W, 3]: world_points_from_depth, or the point head's world_points
    confidence: np.ndarray  # [S, H, W]: depth_conf, or world_points_conf
    images: np.ndarray  # [S, 3, H, W] in [0, 1]
    valid: np.ndarray  # bool [S, H, W]: the content pixels shown (depth points: of frames with a usable camera)
    extrinsic: np.ndarray  # [S, 3, 4]
    intrinsic: np.ndarray  # [S, 3, 3]
    camera_valid: np.ndarray  # bool [S], at least one True for the depth points

    def points(self, percentile: float, max_points: int) -> PointCloud:
        """The cloud kept at `percentile`, evenly thinned to at most `max_points`."""
        cloud = confident_points(self.world_points, self.confidence, self.images, self.valid, percentile)
        if len(cloud) > max_points:
            cloud = cloud.subset(np.linspace(0, len(cloud) - 1, max_points).astype(np.int64))
        return cloud


def load_scene(out_dir: Path, use_point_map: bool = False) -> ViewerScene:
    """Read OUT_DIR/predictions.npz, or explain what to run first. `use_point_map`: show the point head's
    world_points (confidence world_points_conf) instead of the depth unprojected by the predicted cameras."""
    path = Path(out_dir) / "predictions.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `vggt predict --images ... --out {out_dir}` first")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable predictions.npz ({err}); run vggt predict again") from err
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if "camera_valid" not in arrays and "pose_enc" not in arrays:
        missing.append("camera_valid")
    if missing:
        raise ValueError(
            f"{path} lacks {', '.join(repr(key) for key in missing)}, so it was not written by vggt predict (or by "
            f"an old version); write one with `vggt predict --images ... --out {out_dir}`"
        )
    cameras = arrays.get("camera_valid")  # older outputs lack it
    if cameras is None:
        cameras = camera_validity(arrays["pose_enc"], arrays["extrinsic"], arrays["intrinsic"])
    points_key, confidence_key = POINT_SOURCES["point_map" if use_point_map else "depth"]
    absent = [key for key in POINT_SOURCES["point_map"] if key not in arrays]
    if use_point_map and absent:
        raise ValueError(
            f"{path} has no {' or '.join(absent)}: the model that wrote it has no point head, so there is no point map "
            "to show; show the depth points instead (leave out --use_point_map)"
        )
    if not cameras.any() and not use_point_map:
        raise ValueError(f"{path}: no frame has a usable camera (see camera_valid), so there are no points to show")
    frames, height, width = arrays["depth_conf"].shape
    valid = np.zeros((frames, height, width), dtype=bool)
    for frame, (x0, y0, x1, y1) in enumerate(arrays["content_box"]):
        valid[frame, y0:y1, x0:x1] = use_point_map or cameras[frame]
    return ViewerScene(
        arrays[points_key],
        arrays[confidence_key],
        arrays["images"],
        valid,
        arrays["extrinsic"],
        arrays["intrinsic"],
        cameras,
    )


def _rotation_to_wxyz(rotation: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (w, x, y, z), viser's order (mat_to_quat returns x, y, z, w)."""
    x, y, z, w = mat_to_quat(torch.from_numpy(rotation).float()).tolist()
    return np.array([w, x, y, z])


def build_viewer(server: Any, scene: ViewerScene, percentile: float, max_points: int) -> dict[str, Any]:
    """Fill a viser server: point cloud, frustums and the GUI controls. Returns the GUI handles by name."""
    server.scene.set_up_direction("-y")  # OpenCV world: y points down
    size = scene_scale(scene.world_points[scene.valid], scene.extrinsic[scene.camera_valid])
    point_size = server.gui.add_slider("Point size", min=0.0005, max=0.02, step=0.0005, initial_value=0.002)
    confidence = server.gui.add_slider("Confidence percentile", min=0, max=100, step=1, initial_value=percentile)
    show_cameras = server.gui.add_checkbox("Show cameras", initial_value=True)

    def draw_points(_: Any = None) -> None:
        cloud = scene.points(float(confidence.value), max_points)
        server.scene.add_point_cloud(
            "/points", cloud.xyz, cloud.rgb, point_size=float(point_size.value) * size, point_shape="rounded"
        )

    world_from_cam = closed_form_inverse_se3(scene.extrinsic.astype(np.float32))
    height, width = scene.valid.shape[1:]
    frustums = []
    for frame in np.flatnonzero(scene.camera_valid):
        pose, k = world_from_cam[frame], scene.intrinsic[frame]
        thumb_step = max(1, width // THUMBNAIL_WIDTH)
        thumbnail = (scene.images[frame, :, ::thumb_step, ::thumb_step].transpose(1, 2, 0) * 255).astype(np.uint8)
        frustums.append(
            server.scene.add_camera_frustum(
                f"/cameras/{frame:04d}",
                fov=2 * math.atan(height / 2 / float(k[1, 1])),
                aspect=width / height,
                scale=0.05 * size,
                image=thumbnail,
                wxyz=_rotation_to_wxyz(pose[:3, :3]),
                position=pose[:3, 3],
            )
        )

    def toggle_cameras(_: Any = None) -> None:
        for handle in frustums:
            handle.visible = bool(show_cameras.value)

    confidence.on_update(draw_points)
    point_size.on_update(draw_points)
    show_cameras.on_update(toggle_cameras)
    draw_points()
    return {"confidence": confidence, "point_size": point_size, "show_cameras": show_cameras, "frustums": frustums}


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to any interface
        return False


def warn_unless_loopback(host: str, what_others_can_do: str) -> None:
    """Warn that a server on `host` other than loopback lets other machines do `what_others_can_do`."""
    if not is_loopback(host):
        warnings.warn(
            f"--host {host} lets other machines on the network {what_others_can_do}; leave --host out "
            f"({LOOPBACK_HOST}) to serve this machine only",
            stacklevel=3,
        )


def serve(out_dir: Path, host: str, port: int, percentile: float, max_points: int, use_point_map: bool = False) -> None:
    """Start the viewer on http://host:port and block until Ctrl-C. A host other than loopback is warned about.
    `use_point_map` as in load_scene."""
    viser = import_viser()
    scene = load_scene(out_dir, use_point_map)
    if not 0 <= percentile <= 100:
        raise ValueError(f"--conf-threshold is a percentile from 0 to 100, got {percentile}")
    warn_unless_loopback(host, "open the viewer and see this scene")
    server = viser.ViserServer(host=host, port=port)
    build_viewer(server, scene, percentile, max_points)
    shown = ", the point map" if use_point_map else ""
    print(f"viewing {out_dir} ({len(scene.extrinsic)} cameras{shown}) at http://{host}:{port}; press Ctrl-C to stop")
    try:
        server.sleep_forever()
    except KeyboardInterrupt:
        server.stop()
