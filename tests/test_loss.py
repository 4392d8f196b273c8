"""Training losses and GT normalisation: upstream reference numbers, gates, the quantile filter, the track loss,
and no float64 / no host synchronisation on the loss path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests import upstream_loss_reference as upstream
from tests.helpers import FIXTURES
from training.data.normalize import normalize_camera_extrinsics_and_points_batch
from training.loss import MultitaskLoss
from vggt.utils.pose_enc import extri_intri_to_pose_encoding

LOSS_REL_TOL = 1e-5  # fixture README: losses within 1e-5 relative
FIXTURE_CONFIG = {
    "camera": {"weight": 5.0, "loss_type": "l1"},
    "depth": {"weight": 1.0, "gradient_loss_fn": "grad", "valid_range": 0.98},
    "point": {"weight": 1.0, "gradient_loss_fn": "normal", "valid_range": 0.98},
}
LOSS_KEYS = (
    "loss_camera",
    "loss_T",
    "loss_R",
    "loss_FL",
    "loss_conf_depth",
    "loss_reg_depth",
    "loss_grad_depth",
    "loss_conf_point",
    "loss_reg_point",
    "loss_grad_point",
    "objective",
)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "loss.npz") as data:
        return {key: data[key] for key in data.files}


def _group(reference: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: torch.from_numpy(value) for key, value in reference.items() if key.startswith(prefix)}


@pytest.fixture
def batch(reference) -> dict[str, torch.Tensor]:
    return _group(reference, "batch/")


@pytest.fixture
def predictions(reference) -> dict:
    pred = _group(reference, "pred/")
    pred["pose_enc_list"] = list(pred["pose_enc_list"])
    return pred


# ---------------------------------------------------------------------------------------------------------------
# reference numbers
# ---------------------------------------------------------------------------------------------------------------
def test_normalisation_reproduces_the_reference_batch(reference):
    raw = _group(reference, "batch_raw/")
    extrinsics, cam_points, world_points, depths = normalize_camera_extrinsics_and_points_batch(
        raw["extrinsics"], raw["cam_points"], raw["world_points"], raw["depths"], raw["point_masks"]
    )
    for name, ours in (
        ("extrinsics", extrinsics),
        ("cam_points", cam_points),
        ("world_points", world_points),
        ("depths", depths),
    ):
        assert ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), reference[f"batch/{name}"], rtol=0, atol=1e-6, err_msg=name)


def test_every_loss_matches_the_reference(reference, predictions, batch):
    losses = MultitaskLoss(**FIXTURE_CONFIG)(predictions, batch)
    assert set(losses) == set(LOSS_KEYS)
    for key in LOSS_KEYS:
        assert losses[key].dtype == torch.float32 and losses[key].shape == (), key
        expected = float(reference[f"loss/{key}"])
        assert abs(losses[key].item() - expected) <= LOSS_REL_TOL * abs(expected), (key, losses[key].item(), expected)


# ---------------------------------------------------------------------------------------------------------------
# normalisation properties
# ---------------------------------------------------------------------------------------------------------------
def test_normalisation_makes_the_first_camera_the_identity_and_zeroes_non_finite_values(reference):
    raw = _group(reference, "batch_raw/")
    depths = raw["depths"].clone()
    depths[0, 1, 5, 5] = float("inf")
    extrinsics, _, world_points, new_depths = normalize_camera_extrinsics_and_points_batch(
        raw["extrinsics"], None, raw["world_points"], depths, raw["point_masks"]
    )
    identity = torch.eye(3, 4).expand(2, 3, 4)
    torch.testing.assert_close(extrinsics[:, 0], identity, atol=1e-6, rtol=0)
    assert new_depths[0, 1, 5, 5] == 0 and torch.isfinite(new_depths).all()
    # unit mean distance of the valid points, computed independently in float64
    points = world_points.double().numpy()
    masks = raw["point_masks"].numpy()
    for b in range(points.shape[0]):
        assert np.linalg.norm(points[b][masks[b]], axis=-1).mean() == pytest.approx(1.0, rel=1e-5)


def test_normalisation_without_points_only_changes_the_frame():
    extrinsics = torch.tensor(
        [[[[1.0, 0, 0, 2.0], [0, 1, 0, 0], [0, 0, 1, 0]], [[1.0, 0, 0, 5.0], [0, 1, 0, 0], [0, 0, 1, 0]]]]
    )
    normalised, cam, world, depth = normalize_camera_extrinsics_and_points_batch(extrinsics)
    assert cam is None and world is None and depth is None
    torch.testing.assert_close(normalised[0, 1, :, 3], torch.tensor([3.0, 0.0, 0.0]))


# ---------------------------------------------------------------------------------------------------------------
# camera loss
# ---------------------------------------------------------------------------------------------------------------
def _gt_encoding(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return extri_intri_to_pose_encoding(batch["extrinsics"], batch["intrinsics"], batch["images"].shape[-2:])


def _upstream_camera_loss(pred_list: list[np.ndarray], gt: np.ndarray, valid: np.ndarray, loss_type: str) -> dict:
    """Spec 4.7 camera loss in float64 NumPy: per-group errors of valid sequences, sanitised, gamma 0.6 weighting."""
    n = len(pred_list)
    groups = {"loss_T": slice(0, 3), "loss_R": slice(3, 7), "loss_FL": slice(7, 9)}
    totals = dict.fromkeys(groups, 0.0)
    for k, pred in enumerate(pred_list):
        diff = (pred - gt)[valid]  # [valid sequences, S, 9]
        for name, part in groups.items():
            error = np.abs(diff[..., part]) if loss_type == "l1" else np.linalg.norm(diff[..., part], axis=-1)
            totals[name] += 0.6 ** (n - 1 - k) * upstream.check_and_fix_inf_nan(error).mean()
    losses = {name: total / n for name, total in totals.items()}
    losses["loss_camera"] = losses["loss_T"] + losses["loss_R"] + 0.5 * losses["loss_FL"]
    return losses


@pytest.mark.parametrize("loss_type", ["l1", "l2"])
def test_camera_loss_equals_an_independent_computation_on_upstreams_encodings(loss_type):
    """GT encodings from upstream (tests/fixtures/pose.npz), predictions offset from them, expected values in NumPy."""
    with np.load(FIXTURES / "pose.npz") as data:
        fixture = {key: data[key] for key in data.files}
    gt = fixture["pose_enc"].astype(np.float64)
    rng = np.random.default_rng(7)
    pred_list = [fixture["noisy_pose_enc"] + rng.normal(0.0, scale, gt.shape) for scale in (0.5, 0.2, 0.1, 0.0)]
    pred_list[0][0, 1, 0] = 250.0  # an error above the sanitiser's clamp at 100
    height, width = (int(v) for v in fixture["image_hw"])
    masks = torch.ones(2, 5, 4, 4, dtype=torch.bool)
    masks[1, 0] = False  # sequence 1: no points in frame 0, so no camera supervision
    batch = {
        "extrinsics": torch.from_numpy(fixture["extrinsics"]).float(),
        "intrinsics": torch.from_numpy(fixture["intrinsics"]).float(),
        "images": torch.zeros(1).expand(2, 5, 3, height, width),
        "point_masks": masks.repeat_interleave(26, dim=-1).repeat_interleave(26, dim=-2),  # 676 points per frame
    }
    predictions = {"pose_enc_list": [torch.from_numpy(p).float() for p in pred_list]}
    losses = MultitaskLoss(camera={"loss_type": loss_type})(predictions, batch)
    expected = _upstream_camera_loss(pred_list, gt, np.array([True, False]), loss_type)
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=LOSS_REL_TOL), name
    assert losses["objective"].item() == pytest.approx(expected["loss_camera"], rel=LOSS_REL_TOL)


def _with_frame0_points(batch: dict[str, torch.Tensor], sequence: int, count: int) -> dict[str, torch.Tensor]:
    masks = batch["point_masks"].clone()
    masks[sequence, 0] = False
    masks[sequence, 0].view(-1)[:count] = True
    return {**batch, "point_masks": masks}


def test_camera_loss_ignores_a_sequence_whose_first_frame_has_at_most_100_points(batch, predictions):
    loss = MultitaskLoss(camera={})
    gated = _with_frame0_points(batch, sequence=1, count=100)
    garbage = [p.clone() for p in predictions["pose_enc_list"]]
    for p in garbage:
        p[1] = 1e4
    first_only = loss(
        {"pose_enc_list": [p[:1] for p in predictions["pose_enc_list"]]}, {k: v[:1] for k, v in batch.items()}
    )
    for preds in (predictions["pose_enc_list"], garbage):
        assert loss({"pose_enc_list": preds}, gated)["loss_camera"].item() == pytest.approx(
            first_only["loss_camera"].item(), rel=1e-6
        )
    # 101 points in frame 0 are enough
    kept = loss({"pose_enc_list": garbage}, _with_frame0_points(batch, sequence=1, count=101))["loss_camera"]
    assert kept.item() > 10 * first_only["loss_camera"].item()


def test_camera_loss_is_zero_with_a_finite_gradient_when_no_sequence_qualifies(batch, predictions):
    gated = _with_frame0_points(_with_frame0_points(batch, 0, 0), 1, 0)
    preds = [p.clone().requires_grad_(True) for p in predictions["pose_enc_list"]]
    losses = MultitaskLoss(camera={})({"pose_enc_list": preds}, gated)
    losses["objective"].backward()
    assert losses["loss_camera"].item() == 0.0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in preds)


def test_camera_iterations_are_weighted_by_gamma_to_the_distance_from_the_last(batch):
    gt = _gt_encoding(batch)
    offsets = (1.0, 2.0, 4.0)  # a constant translation error per iteration
    preds = [gt + torch.tensor([o, 0, 0, 0, 0, 0, 0, 0, 0]) for o in offsets]
    losses = MultitaskLoss(camera={"gamma": 0.5})({"pose_enc_list": preds}, batch)
    # |error| is o on x and 0 on y, z: per-element mean o / 3
    expected = (0.25 * 1.0 + 0.5 * 2.0 + 1.0 * 4.0) / 3 / 3
    assert losses["loss_T"].item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# depth / point losses
# ---------------------------------------------------------------------------------------------------------------
def _depth_case(errors: np.ndarray, valid: int, conf: float = 1.5):
    """One sequence, one frame of 80x80 with `valid` valid pixels whose depth errors are `errors`."""
    height = width = 80
    gt = torch.full((1, 1, height, width), 2.0)
    mask = torch.zeros(1, 1, height, width, dtype=torch.bool)
    mask.view(-1)[:valid] = True
    pred = gt.clone()
    pred.view(-1)[:valid] += torch.from_numpy(errors.astype(np.float32))
    batch = {"depths": gt, "point_masks": mask}
    predictions = {"depth": pred.unsqueeze(-1), "depth_conf": torch.full_like(gt, conf)}
    return predictions, batch, (pred - gt).abs().view(-1)[:valid].double().numpy()


def test_quantile_filter_drops_the_top_two_percent_of_residuals():
    errors = np.random.default_rng(0).uniform(-3.0, 3.0, 5000)
    errors[:7] = 500.0  # beyond the hard clamp at 100
    predictions, batch, residual = _depth_case(errors, valid=5000)
    losses = MultitaskLoss(depth={"gradient_loss_fn": None, "valid_range": 0.98})(predictions, batch)
    clamped = np.minimum(residual, 100.0)
    threshold = np.quantile(clamped, 0.98, method="nearest")
    kept = clamped[clamped < threshold]
    assert len(kept) == pytest.approx(0.98 * 5000, abs=2)
    assert losses["loss_reg_depth"].item() == pytest.approx(kept.mean(), rel=1e-5)
    conf_term = 1.5 * clamped - 0.2 * math.log(1.5)
    conf_kept = conf_term[conf_term < np.quantile(conf_term, 0.98, method="nearest")]
    assert losses["loss_conf_depth"].item() == pytest.approx(conf_kept.mean(), rel=1e-5)


@pytest.mark.parametrize("valid_range", [None, 1.0, -1.0])
def test_valid_range_none_or_outside_zero_one_disables_the_filter(valid_range):
    errors = np.linspace(0.0, 3.0, 5000)
    predictions, batch, residual = _depth_case(errors, valid=5000)
    losses = MultitaskLoss(depth={"gradient_loss_fn": None, "valid_range": valid_range})(predictions, batch)
    assert losses["loss_reg_depth"].item() == pytest.approx(residual.mean(), rel=1e-5)


def test_quantile_filter_leaves_1000_or_fewer_values_unfiltered_but_residuals_are_still_clamped_at_100():
    errors = np.linspace(0.0, 300.0, 1000)
    predictions, batch, residual = _depth_case(errors, valid=1000)
    losses = MultitaskLoss(depth={"gradient_loss_fn": None})(predictions, batch)
    assert losses["loss_reg_depth"].item() == pytest.approx(np.minimum(residual, 100.0).mean(), rel=1e-5)


def _regime_case(regime: str, channels: int, seed: int):
    """pred, gt [1, 2, 40, 50, C], mask, conf [1, 2, 40, 50] float32 arrays for one of upstream's edge regimes."""
    rng = np.random.default_rng(seed)
    shape = (1, 2, 40, 50)
    mask = rng.random(shape) < 0.9  # ~3600 valid values: the quantile filter is active
    gt = rng.uniform(0.5, 3.0, (*shape, channels))
    pred = gt + rng.normal(0.0, 0.2, gt.shape)
    conf = 1.0 + np.exp(rng.normal(0.0, 1.0, shape))
    if regime == "gt_above_100":  # a far background after normalisation: GT up to 287, predictions short of it
        far = rng.random(shape) < 0.3
        gt[far] = rng.uniform(120.0, 287.0, (far.sum(), channels)) * rng.choice([-1.0, 1.0], (far.sum(), channels))
        pred[far] = np.clip(gt[far], -110.0, 110.0) + rng.normal(0.0, 3.0, (far.sum(), channels))
    elif regime == "residuals_above_100":  # 8 % outliers: more than the filter's 2 % drop
        wild = rng.random(shape) < 0.08
        pred[wild] += rng.uniform(120.0, 500.0, (wild.sum(), channels))
    elif regime == "confidence_overflow":  # expp1 of large logits: inf, and finite values whose products overflow
        conf[rng.random(shape) < 0.05] = np.inf
        conf[rng.random(shape) < 0.05] = 3e38
        conf[rng.random(shape) < 0.05] = 1e30
        pred[rng.random(shape) < 0.05] += 150.0
    elif regime == "at_most_1000_valid":  # a small batch: no filtering, but every clamp still applies
        mask = np.zeros(shape, dtype=bool)
        mask.reshape(-1)[rng.choice(mask.size, 1000, replace=False)] = True
        gt[rng.random(shape) < 0.2] *= 90.0
        pred[rng.random(shape) < 0.05] += 200.0
        conf[rng.random(shape) < 0.05] = np.inf
        conf[rng.random(shape) < 0.05] = 1e30
    elif regime == "few_valid_huge_confidences":  # under 1000 valid values with confidences overflowing
        mask = rng.random(shape) < 0.15
        logits = rng.uniform(0.0, 95.0, shape)  # exp overflows float32 above 88.7: about 7 % are inf
        conf = np.where(logits < 88.7, np.exp(np.minimum(logits, 88.7)), np.inf)
        pred[rng.random(shape) < 0.1] += 130.0
    return tuple(a.astype(np.float32) for a in (pred, gt, conf)) + (mask,)


REGIMES = [
    "gt_above_100",
    "residuals_above_100",
    "confidence_overflow",
    "at_most_1000_valid",
    "few_valid_huge_confidences",
]


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("group", ["depth", "point"])
def test_dense_losses_equal_an_independent_statement_of_upstreams_semantics(regime, group):
    channels = 1 if group == "depth" else 3
    pred, gt, conf, mask = _regime_case(regime, channels, seed=REGIMES.index(regime) + 10 * channels)
    expected = upstream.dense_losses(pred, gt, mask, conf, quantile=0.98, with_gradient=True)
    if group == "depth":
        predictions = {"depth": torch.from_numpy(pred), "depth_conf": torch.from_numpy(conf)}
        batch = {"depths": torch.from_numpy(gt[..., 0]), "point_masks": torch.from_numpy(mask)}
    else:
        predictions = {"world_points": torch.from_numpy(pred), "world_points_conf": torch.from_numpy(conf)}
        batch = {"world_points": torch.from_numpy(gt), "point_masks": torch.from_numpy(mask)}
    config = {"weight": 1.0, "gradient_loss_fn": "grad", "valid_range": 0.98}
    losses = MultitaskLoss(**{group: config})(predictions, batch)
    names = (f"loss_conf_{group}", f"loss_reg_{group}", f"loss_grad_{group}")
    for name, value in zip(names, expected):
        assert losses[name].item() == pytest.approx(value, rel=LOSS_REL_TOL, abs=1e-7), (name, regime)
    assert losses["objective"].item() == pytest.approx(sum(expected), rel=LOSS_REL_TOL)


def test_the_regime_cases_reach_the_regimes_they_are_named_after():
    def residuals(regime: str) -> np.ndarray:
        pred, gt, _, mask = _regime_case(regime, 1, seed=0)
        return np.abs(pred - upstream.check_and_fix_inf_nan(gt))[..., 0][mask]

    assert _regime_case("gt_above_100", 1, 0)[1].max() > 250
    assert (residuals("residuals_above_100") > 100).mean() > 0.05
    assert np.isinf(_regime_case("confidence_overflow", 1, 0)[2]).any()
    assert _regime_case("at_most_1000_valid", 1, 0)[3].sum() == 1000
    _, _, conf, mask = _regime_case("few_valid_huge_confidences", 1, 0)
    assert 100 <= mask.sum() <= 1000 and np.isinf(conf[mask]).any()


def test_infinite_confidences_give_a_finite_loss_and_finite_gradients():
    pred, gt, conf, mask = _regime_case("confidence_overflow", 1, seed=3)
    pred_t, conf_t = torch.from_numpy(pred).requires_grad_(True), torch.from_numpy(conf).requires_grad_(True)
    batch = {"depths": torch.from_numpy(gt[..., 0]), "point_masks": torch.from_numpy(mask)}
    losses = MultitaskLoss(depth={})({"depth": pred_t, "depth_conf": conf_t}, batch)
    losses["objective"].backward()
    assert torch.isfinite(losses["objective"])
    assert torch.isfinite(pred_t.grad).all() and torch.isfinite(conf_t.grad).all()


def test_depth_loss_is_zero_with_fewer_than_100_valid_pixels():
    predictions, batch, _ = _depth_case(np.full(99, 2.0), valid=99)
    losses = MultitaskLoss(depth={})(predictions, batch)
    assert all(losses[k].item() == 0.0 for k in ("loss_conf_depth", "loss_reg_depth", "loss_grad_depth"))


def test_gradient_losses_are_zero_for_a_perfect_prediction(batch):
    depth = batch["depths"].unsqueeze(-1)
    conf = torch.full_like(batch["depths"], 2.0)
    predictions = {"depth": depth, "depth_conf": conf, "world_points": batch["world_points"], "world_points_conf": conf}
    losses = MultitaskLoss(depth={}, point={})(predictions, batch)
    assert losses["loss_grad_depth"].item() == 0.0
    assert abs(losses["loss_grad_point"].item()) < 1e-6
    assert losses["loss_reg_depth"].item() == 0.0 and losses["loss_reg_point"].item() == 0.0


def test_gradient_losses_ignore_a_constant_offset(batch):
    conf = torch.full_like(batch["depths"], 2.0)
    predictions = {
        "depth": batch["depths"].unsqueeze(-1) + 0.3,
        "depth_conf": conf,
        "world_points": batch["world_points"] + torch.tensor([0.2, -0.1, 0.4]),
        "world_points_conf": conf,
    }
    losses = MultitaskLoss(depth={}, point={})(predictions, batch)
    assert abs(losses["loss_grad_depth"].item()) < 1e-6
    assert abs(losses["loss_grad_point"].item()) < 1e-5
    assert losses["loss_reg_depth"].item() == pytest.approx(0.3, rel=1e-5)


@pytest.mark.parametrize("kind", ["grad", "normal"])
def test_confidence_weighted_gradient_loss_with_unit_confidence_equals_the_plain_one(predictions, batch, kind):
    ones = torch.ones_like(batch["depths"])
    unit_conf = {**predictions, "depth_conf": ones, "world_points_conf": ones}
    group = "depth" if kind == "grad" else "point"
    plain = MultitaskLoss(**{group: {"gradient_loss_fn": kind}})(unit_conf, batch)[f"loss_grad_{group}"]
    weighted = MultitaskLoss(**{group: {"gradient_loss_fn": f"{kind}_conf"}})(unit_conf, batch)[f"loss_grad_{group}"]
    assert weighted.item() == pytest.approx(plain.item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# track loss
# ---------------------------------------------------------------------------------------------------------------
def _track_batch() -> dict[str, torch.Tensor]:
    """B=1, S=3, N=4: track 3 is not positive; track 1 is invisible in frame 2."""
    tracks = torch.tensor([[[10.0, 20.0], [30.0, 40.0], [50.0, 60.0], [70.0, 80.0]]]).repeat(3, 1, 1)
    tracks[1:, :, 0] += 5.0
    vis = torch.ones(3, 4, dtype=torch.bool)
    vis[2, 1] = False
    positive = torch.tensor([True, True, True, False])
    return {"tracks": tracks[None], "track_vis_mask": vis[None], "track_positive_mask": positive[None]}


def _track_predictions(track_list: list[torch.Tensor], batch: dict[str, torch.Tensor]) -> dict:
    vis = batch["track_vis_mask"].float()
    return {"track": track_list[-1], "track_list": track_list, "vis": vis, "conf": torch.ones_like(vis)}


def test_track_loss_is_zero_for_perfect_tracks():
    batch = _track_batch()
    losses = MultitaskLoss(track={})(_track_predictions([batch["tracks"].clone()], batch), batch)
    assert losses["loss_track"].item() == 0.0
    # perfect probabilities cost only the 1e-6 clamp: -log(1 - 1e-6)
    assert losses["loss_vis"].item() < 2e-6 and losses["loss_track_conf"].item() < 2e-6


def test_track_iterations_are_weighted_by_gamma_to_the_distance_from_the_last():
    batch = _track_batch()
    gt = batch["tracks"]
    offsets = (1.0, 2.0, 4.0)  # x error per iteration; per-point L1 is the mean of |dx| and |dy| = offset / 2
    track_list = [gt + torch.tensor([o, 0.0]) for o in offsets]
    losses = MultitaskLoss(track={"gamma": 0.8})(_track_predictions(track_list, batch), batch)
    expected = (0.8**2 * 0.5 + 0.8 * 1.0 + 1.0 * 2.0) / 3
    assert losses["loss_track"].item() == pytest.approx(expected, rel=1e-6)


def test_track_loss_uses_the_final_track_when_there_is_no_track_list():
    batch = _track_batch()
    predictions = _track_predictions([batch["tracks"] + torch.tensor([0.0, 3.0])], batch)
    del predictions["track_list"]
    assert MultitaskLoss(track={})(predictions, batch)["loss_track"].item() == pytest.approx(1.5, rel=1e-6)


def test_track_loss_ignores_invisible_and_non_positive_entries():
    batch = _track_batch()
    pred = batch["tracks"] + torch.tensor([1.0, 1.0])
    pred[0, 2, 1] = 1e6  # invisible entry
    pred[0, :, 3] = -1e6  # non-positive track
    assert MultitaskLoss(track={})(_track_predictions([pred], batch), batch)["loss_track"].item() == pytest.approx(1.0)


def test_visibility_and_confidence_bce_match_a_hand_computation():
    batch = {
        "tracks": torch.zeros(1, 2, 2, 2),
        "track_vis_mask": torch.tensor([[[True, True], [False, True]]]),
        "track_positive_mask": torch.tensor([[True, True]]),
    }
    track = batch["tracks"].clone()
    track[0, 0, 0] = torch.tensor([2.9, 0.0])  # within 3 px: confidence target 1
    track[0, 1, 1] = torch.tensor([3.0, 0.1])  # 3.002 px: confidence target 0
    vis = torch.tensor([[[0.9, 0.6], [0.2, 0.7]]])
    conf = torch.tensor([[[0.8, 0.3], [0.5, 0.4]]])
    losses = MultitaskLoss(track={})({"track": track, "vis": vis, "conf": conf}, batch)
    expected_vis = -(math.log(0.9) + math.log(0.6) + math.log(1 - 0.2) + math.log(0.7)) / 4
    # confidence only on the 3 visible entries: targets 1 (2.9 px), 1 (0 px), 0 (3.002 px); [1, 0] is invisible
    expected_conf = -(math.log(0.8) + math.log(0.3) + math.log(1 - 0.4)) / 3
    assert losses["loss_vis"].item() == pytest.approx(expected_vis, rel=1e-5)
    assert losses["loss_track_conf"].item() == pytest.approx(expected_conf, rel=1e-5)


def test_track_terms_enter_the_objective_with_their_weights():
    batch = _track_batch()
    predictions = _track_predictions([batch["tracks"] + 1.0], batch)
    predictions["vis"] = torch.full_like(predictions["vis"], 0.5)
    config = {"weight": 0.5, "vis_weight": 2.0, "conf_weight": 3.0}
    losses = MultitaskLoss(track=config)(predictions, batch)
    expected = 0.5 * (losses["loss_track"] + 2.0 * losses["loss_vis"] + 3.0 * losses["loss_track_conf"])
    assert losses["objective"].item() == pytest.approx(expected.item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------
def test_unknown_options_and_gradient_losses_are_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match="valid options"):
        MultitaskLoss(depth={"valid_rnage": 0.98})
    with pytest.raises(ValueError, match="gradient_loss_fn"):
        MultitaskLoss(point={"gradient_loss_fn": "normals"})
    with pytest.raises(ValueError, match="at least one"):
        MultitaskLoss()


# ---------------------------------------------------------------------------------------------------------------
# device friendliness
# ---------------------------------------------------------------------------------------------------------------
_SYNC_OPS = {"_local_scalar_dense", "item", "nonzero", "masked_select", "is_nonzero", "kthvalue"}
_BOOL_INDEXED_OPS = {"index", "index_put", "index_put_"}  # x[mask] needs the number of True entries on the host


def _is_sync(func, args) -> bool:
    name = func.overloadpacket.__name__
    if name in _SYNC_OPS:
        return True
    indices = args[1] if name in _BOOL_INDEXED_OPS and len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


class SyncAndFloat64Guard(TorchDispatchMode):
    """Fails on an op that reads a device value back to the host, or on any float64 tensor."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _is_sync(func, args):
            raise AssertionError(f"host synchronisation: {func}")
        out = func(*args, **(kwargs or {}))
        leaves, _ = torch.utils._pytree.tree_flatten((args, kwargs, out))
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in leaves):
            raise AssertionError(f"float64 tensor in {func}")
        return out


def test_the_guard_catches_item_boolean_indexing_and_float64():
    x = torch.ones(3)
    for bad in (lambda: x.sum().item(), lambda: x[x > 0], lambda: x.masked_fill(x > 0, 0).double()):
        with pytest.raises(AssertionError), SyncAndFloat64Guard():
            bad()


def test_normalisation_and_every_loss_run_without_float64_or_host_sync(reference, predictions):
    raw = _group(reference, "batch_raw/")
    track_batch = _track_batch()
    batch_tracks = {k: v.expand(2, *v.shape[1:]).clone() for k, v in track_batch.items()}
    tracks = batch_tracks["tracks"][:, :1].expand(2, 3, 4, 2)
    batch_tracks["tracks"] = tracks.clone()
    batch_tracks["track_vis_mask"] = torch.ones(2, 3, 4, dtype=torch.bool)
    leaves = {k: v.clone().requires_grad_(True) for k, v in predictions.items() if k != "pose_enc_list"}
    pose_list = [p.clone().requires_grad_(True) for p in predictions["pose_enc_list"]]
    track = (tracks + 1.0).requires_grad_(True)
    vis = torch.full((2, 3, 4), 0.7, requires_grad=True)
    config = {
        "camera": {"weight": 5.0, "loss_type": "l2"},
        "depth": {"gradient_loss_fn": "grad_conf", "valid_range": 0.98},
        "point": {"gradient_loss_fn": "normal_conf", "valid_range": 0.98},
        "track": {},
    }
    loss = MultitaskLoss(**config)
    with SyncAndFloat64Guard():
        extrinsics, cam_points, world_points, depths = normalize_camera_extrinsics_and_points_batch(
            raw["extrinsics"], raw["cam_points"], raw["world_points"], raw["depths"], raw["point_masks"]
        )
        batch = {
            "images": torch.from_numpy(reference["batch/images"]),
            "extrinsics": extrinsics,
            "intrinsics": raw["intrinsics"],
            "cam_points": cam_points,
            "world_points": world_points,
            "depths": depths,
            "point_masks": raw["point_masks"],
            **batch_tracks,
        }
        preds = {**leaves, "pose_enc_list": pose_list, "track": track, "track_list": [track], "vis": vis, "conf": vis}
        losses = loss(preds, batch)
        losses["objective"].backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(torch.isfinite(t.grad).all() for t in (*leaves.values(), *pose_list, track, vis))


def test_normalisation_and_losses_run_on_tensors_without_host_data(reference, predictions, batch):
    """The meta device has no data: any CPU-only assert or value read-back would raise."""
    raw = {k: v.to("meta") for k, v in _group(reference, "batch_raw/").items()}
    normalised = normalize_camera_extrinsics_and_points_batch(
        raw["extrinsics"], raw["cam_points"], raw["world_points"], raw["depths"], raw["point_masks"]
    )
    assert all(t.device.type == "meta" for t in normalised)
    meta_predictions = {k: v.to("meta") for k, v in predictions.items() if k != "pose_enc_list"}
    meta_predictions["pose_enc_list"] = [p.to("meta") for p in predictions["pose_enc_list"]]
    losses = MultitaskLoss(**FIXTURE_CONFIG)(meta_predictions, {k: v.to("meta") for k, v in batch.items()})
    assert losses["objective"].device.type == "meta"
