"""A glTF binary (.glb) scene: the coloured point cloud and one frustum mesh per camera (via trimesh).

glTF is y-up with cameras looking down -z, while our world frame is the first camera's OpenCV frame (x right,
y down, z forward), so every vertex is written as (x, -y, -z): viewers then show the scene upright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vggt.predict.colormap import colorize
from vggt.predict.frustum import frustum_vertices, scene_scale
from vggt.predict.points import PointCloud

OPENCV_TO_GLTF = np.array([1.0, -1.0, -1.0])
# The four side faces of a frustum (apex 0, rim 1-4), listed in both windings so they show from either side.
FRUSTUM_FACES = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
FRUSTUM_FACES = np.concatenate([FRUSTUM_FACES, FRUSTUM_FACES[:, ::-1]])
FRUSTUM_SIZE = 0.05  # frustum depth as a fraction of the scene scale


def import_trimesh():  # -> the trimesh module
    """trimesh, or a ValueError that says how to get it (optional dependencies; scipy colours the frustums)."""
    try:
        import scipy.sparse  # noqa: F401
        import trimesh
    except ImportError as err:
        raise ValueError(
            "the glb export needs trimesh and scipy: pip install 'vggt-npu[export]' (or leave glb out of --export)"
        ) from err
    return trimesh


def write_glb(
    path: Path,
    cloud: PointCloud,
    extrinsic: np.ndarray,
    intrinsic: np.ndarray,
    camera_valid: np.ndarray,
    image_hw: tuple[int, int],
) -> None:
    """Write the point cloud (geometry "points") and the frustums of the frames whose camera_valid (bool [S]) is
    True as "camera_0000", ... by frame index, coloured by frame order. Raises ValueError when both are empty."""
    trimesh = import_trimesh()
    scene = trimesh.Scene()
    if len(cloud):
        scene.add_geometry(trimesh.PointCloud(cloud.xyz * OPENCV_TO_GLTF, colors=cloud.rgb), geom_name="points")
    frames = np.flatnonzero(camera_valid)
    if not len(cloud) and not len(frames):
        raise ValueError("nothing to put in the scene: no point is kept and no camera is shown")
    depth = FRUSTUM_SIZE * scene_scale(cloud.xyz, extrinsic[frames])
    frustums = frustum_vertices(extrinsic[frames], intrinsic[frames], image_hw, depth) * OPENCV_TO_GLTF
    colors = colorize(np.arange(len(camera_valid)), 0, max(len(camera_valid) - 1, 1))
    for frame, vertices in zip(frames, frustums):
        mesh = trimesh.Trimesh(vertices=vertices, faces=FRUSTUM_FACES, process=False)
        mesh.visual.face_colors = np.append(colors[frame], 255)
        scene.add_geometry(mesh, geom_name=f"camera_{frame:04d}")
    path.write_bytes(scene.export(file_type="glb"))
