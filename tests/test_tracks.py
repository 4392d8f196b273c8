"""GT tracks from depth: a fronto-parallel plane seen by three sideways-translated cameras, where every
projection is known in closed form (a pure horizontal shift of fx * baseline / depth pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.base import unproject
from training.data.tracks import build_tracks
from training.loss import TrackLossConfig, track_loss

HEIGHT, WIDTH = 40, 60
FOCAL, PLANE_DEPTH, BASELINE = 50.0, 2.0, 0.4
SHIFT_PX = FOCAL * BASELINE / PLANE_DEPTH  # 10 px to the left per camera step
BORDER = 4
OCCLUDER_ROWS, OCCLUDER_COLS = slice(10, 20), slice(30, 40)  # in frame 1's pixels


def _plane_scene(occluded: bool = True) -> dict[str, torch.Tensor]:
    """Three cameras at x = 0, 0.4, 0.8 looking down +z at the plane z = 2; frame 1 optionally sees an occluder."""
    intrinsic = np.array([[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1]], dtype=np.float32)
    extrinsics, depths, cams, worlds = [], [], [], []
    for i in range(3):
        extrinsic = np.hstack((np.eye(3), [[-BASELINE * i], [0], [0]])).astype(np.float32)
        depth = np.full((HEIGHT, WIDTH), PLANE_DEPTH, dtype=np.float32)
        if occluded and i == 1:
            depth[OCCLUDER_ROWS, OCCLUDER_COLS] = 1.0  # something in front of the plane
        cam, world = unproject(depth, extrinsic, intrinsic)
        extrinsics.append(extrinsic)
        depths.append(depth)
        cams.append(cam)
        worlds.append(world)
    depth_stack = np.stack(depths)
    return {
        "depths": torch.from_numpy(depth_stack),
        "extrinsics": torch.from_numpy(np.stack(extrinsics)),
        "intrinsics": torch.from_numpy(np.stack([intrinsic] * 3)),
        "cam_points": torch.from_numpy(np.stack(cams)),
        "world_points": torch.from_numpy(np.stack(worlds)),
        "point_masks": torch.from_numpy(depth_stack > 0),
    }


def _all_tracks(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Enough slots for every positive, so the positives come back in raster order of frame 0."""
    return build_tracks(sample, num_tracks=HEIGHT * WIDTH, rng=np.random.default_rng(0))


def test_tracks_land_where_the_analytic_projection_says():
    out = _all_tracks(_plane_scene())
    tracks, positive = out["tracks"], out["track_positive_mask"]
    assert tracks.dtype == torch.float32 and tracks.shape == (3, HEIGHT * WIDTH, 2)
    queries = tracks[0, positive]
    for frame in (1, 2):
        expected = queries - torch.tensor([SHIFT_PX * frame, 0.0])
        torch.testing.assert_close(tracks[frame, positive], expected, atol=1e-3, rtol=0)
    # frame 0 returns the query pixels themselves: integer coordinates inside the border
    torch.testing.assert_close(queries, queries.round(), atol=1e-3, rtol=0)
    assert queries[:, 0].min() >= BORDER and queries[:, 1].max() <= HEIGHT - 1 - BORDER


def test_points_shifted_past_the_border_are_invisible():
    out = _all_tracks(_plane_scene(occluded=False))
    tracks, vis, positive = out["tracks"], out["track_vis_mask"], out["track_positive_mask"]
    u0 = tracks[0, positive, 0]
    for frame in (1, 2):
        inside = (u0 - SHIFT_PX * frame >= BORDER).numpy()
        np.testing.assert_array_equal(vis[frame, positive].numpy(), inside)


def test_occluded_points_are_invisible_where_the_depth_disagrees():
    occluded = _all_tracks(_plane_scene(occluded=True))
    positive = occluded["track_positive_mask"]
    u1, v1 = occluded["tracks"][1, positive].unbind(-1)
    vis1 = occluded["track_vis_mask"][1, positive]
    # well inside the occluder all 4 neighbouring GT depths are 1.0 instead of 2.0
    deep_inside = (u1 > 31) & (u1 < 38) & (v1 > 11) & (v1 < 18)
    far_outside = (u1 > 45) | (v1 > 25)
    assert deep_inside.any() and far_outside.any()
    assert not vis1[deep_inside].any()
    assert vis1[far_outside].all()


def test_positives_are_visible_in_frame_zero_and_in_at_least_two_frames():
    out = _all_tracks(_plane_scene(occluded=False))
    positive = out["track_positive_mask"]
    # frame 0 sees u in [4, 55]; frame 1 sees u - 10 >= 4: positives are exactly u in [14, 55], v in [4, 35]
    expected_count = (WIDTH - 1 - BORDER - (BORDER + int(SHIFT_PX)) + 1) * (HEIGHT - 2 * BORDER)
    assert int(positive.sum()) == expected_count
    vis = out["track_vis_mask"][:, positive]
    assert vis[0].all() and (vis.sum(dim=0) >= 2).all()
    u0 = out["tracks"][0, positive, 0]
    assert u0.min() == pytest.approx(BORDER + SHIFT_PX, abs=1e-3)


def test_abundant_positives_keep_the_best_seen_half_then_sample():
    out = build_tracks(_plane_scene(), num_tracks=100, rng=np.random.default_rng(1))
    assert out["track_positive_mask"].all()
    # over a thousand positives are seen in all 3 frames, so the best-seen half holds only those
    assert out["track_vis_mask"].all()
    queries = out["tracks"][0]
    assert len({tuple(q) for q in queries.tolist()}) == 100  # sampled without replacement


def test_missing_positives_are_padded_with_non_positive_repeats():
    sample = _plane_scene(occluded=False)
    count = int(_all_tracks(sample)["track_positive_mask"].sum())
    out = build_tracks(sample, num_tracks=count + 5, rng=np.random.default_rng(0))
    positive = out["track_positive_mask"]
    assert int(positive.sum()) == count and not positive[count:].any()
    torch.testing.assert_close(out["tracks"][:, count:], out["tracks"][:, :5])


def test_a_sample_without_positives_gives_empty_non_positive_tracks():
    sample = _plane_scene(occluded=False)
    sample["depths"][1:] = 0.0  # nothing to agree with in frames 1 and 2
    out = build_tracks(sample, num_tracks=8, rng=np.random.default_rng(0))
    assert not out["track_positive_mask"].any() and not out["track_vis_mask"].any()
    assert torch.equal(out["tracks"], torch.zeros(3, 8, 2))


def _bce(prob: np.ndarray, target: np.ndarray) -> np.ndarray:
    return -(target * np.log(prob) + (1 - target) * np.log(1 - prob))


def test_track_loss_of_built_tracks_matches_a_numpy_computation_over_their_masks():
    """Predictions off the built GT by random offsets: the loss terms equal masked means computed here by hand."""
    out = _all_tracks(_plane_scene())
    gt = out["tracks"].numpy().astype(np.float64)
    visible, positive = out["track_vis_mask"].numpy(), out["track_positive_mask"].numpy()
    assert 0 < visible[:, positive].mean() < 1  # the occluder and the border hide some positives in some frames
    assert 0 < positive.mean() < 1  # and the slots past the positives are padding
    rng = np.random.default_rng(3)
    offsets = [rng.uniform(-6, 6, gt.shape) for _ in range(2)]  # two tracker iterations; |offset| straddles 3 px
    vis_prob, conf_prob = rng.uniform(0.05, 0.95, (2, *visible.shape))
    predictions = {
        "track_list": [torch.from_numpy(gt + o).float()[None] for o in offsets],
        "vis": torch.from_numpy(vis_prob).float()[None],
        "conf": torch.from_numpy(conf_prob).float()[None],
    }
    predictions["track"] = predictions["track_list"][-1]
    cfg = {"gamma": 0.8, "conf_threshold": 3.0}
    terms = track_loss(predictions, {key: value[None] for key, value in out.items()}, TrackLossConfig(**cfg))

    supervised = visible & positive[None, :]  # [S, N]
    per_iteration_l1 = [np.abs(o).mean(axis=-1)[supervised].mean() for o in offsets]
    expected_track = (cfg["gamma"] * per_iteration_l1[0] + per_iteration_l1[1]) / 2
    all_frames_of_positives = np.broadcast_to(positive[None, :], visible.shape)
    expected_vis = _bce(vis_prob, visible.astype(np.float64))[all_frames_of_positives].mean()
    accurate = (np.linalg.norm(offsets[-1], axis=-1) < cfg["conf_threshold"]).astype(np.float64)
    expected_conf = _bce(conf_prob, accurate)[supervised].mean()
    assert terms["loss_track"].item() == pytest.approx(expected_track, rel=1e-5)
    assert terms["loss_vis"].item() == pytest.approx(expected_vis, rel=1e-5)
    assert terms["loss_track_conf"].item() == pytest.approx(expected_conf, rel=1e-5)
