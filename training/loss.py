"""Training losses: camera, depth, point map and point tracks, combined by `MultitaskLoss`.

Every term is computed in float32 with masks and `torch.where` instead of boolean indexing or Python branches on
tensor values, so a step never waits for the device (no `.item()`, no `nonzero`). Numbers reproduce the upstream
reference losses (tests/fixtures/loss.npz); the track loss, which upstream never finished, follows its draft.

Semantic choices (where upstream relies on data-dependent Python control flow):

* Masked selection: upstream gathers the valid pixels (`x[mask]`) and averages them; here every sum runs over the
  full tensor with masked entries replaced by 0 and divided by the masked count (clamped to >= 1, so an empty mask
  gives 0 with a zero, not NaN, gradient).
* "Too few valid points -> zero loss" gates (camera: frame 0 of a sequence has <= 100 valid points; depth/point:
  the batch has < 100) are `torch.where` on the count.
* Sanitising (upstream's `check_and_fix_inf_nan`): non-finite -> 0, then clamp to [-100, 100], elementwise, applied to
  the ground-truth depths / world points, the per-pixel residual r and the confidence term before the quantile filter
  whatever the element count (and, as a no-op on a subset of sanitised values, after it). An element whose
  confidence is non-finite or <= 0 makes upstream's confidence term non-finite, so it contributes 0; here that
  element's confidence is replaced by 1 before the arithmetic as well, so its gradient is 0 rather than NaN.
* Quantile filter: the threshold is the "nearest"-rank quantile of the masked values, taken from a sort of the values
  with unmasked entries filled with +inf and indexed by a tensor rank. Upstream subsamples 1e6 values at random when
  there are more than 1e8; this version always sorts all of them (deterministic; one O(n log n) device sort).
  `valid_range` of None, <= 0 or >= 1 means no filtering.
* Confidence-weighted gradient terms ("grad_conf", "normal_conf") only count valid neighbour pairs / normals,
  including the -alpha*log(conf) term.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.utils.sanitize import finite_or_zero
from vggt.utils.pose_enc import extri_intri_to_pose_encoding

_HARD_MAX = 100.0  # sanitiser clamp: camera errors, GT maps, residuals, confidence terms, image gradients
_MIN_FRAME0_POINTS = 100  # a sequence supervises cameras only if frame 0 has more valid points than this
_MIN_MASK_POINTS = 100  # depth/point losses need at least this many valid pixels in the batch
_MIN_FILTER_ELEMENTS = 1000  # the quantile filter acts only on more elements than this
_MIN_NORMALS = 10  # the normal loss needs at least this many valid normals per scale
_NORMAL_EPS = 1e-8
_PROB_EPS = 1e-6  # probabilities are clamped to [eps, 1 - eps] before the log: each BCE term is <= 13.8
_GRADIENT_SCALES = {"grad": 4, "normal": 3}
_GRADIENT_LOSS_FNS = (None, "grad", "normal", "grad_conf", "normal_conf")


# ----------------------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraLossConfig:
    weight: float = 1.0
    loss_type: str = "l1"  # "l1": per-element |error|; "l2": per-group (T, quaternion, FoV) vector norms
    gamma: float = 0.6  # iteration k of n is weighted gamma^(n-1-k)
    weight_trans: float = 1.0
    weight_rot: float = 1.0
    weight_focal: float = 0.5
    pose_encoding_type: str = "absT_quaR_FoV"

    def __post_init__(self) -> None:
        if self.loss_type not in ("l1", "l2"):
            raise ValueError(f"camera loss_type must be 'l1' or 'l2', got {self.loss_type!r}")


@dataclass(frozen=True)
class RegressionLossConfig:
    """Depth or point-map loss: confidence-weighted regression + optional gradient/normal matching."""

    weight: float = 1.0
    gradient_loss_fn: str | None = None  # None, "grad", "normal", "grad_conf" or "normal_conf"
    valid_range: float | None = None  # quantile kept by the filter; None (or outside (0, 1)) = no filtering
    gamma: float = 1.0
    alpha: float = 0.2

    def __post_init__(self) -> None:
        if self.gradient_loss_fn not in _GRADIENT_LOSS_FNS:
            raise ValueError(f"gradient_loss_fn must be one of {_GRADIENT_LOSS_FNS}, got {self.gradient_loss_fn!r}")

    @property
    def filter_quantile(self) -> float | None:
        """The quantile to filter at, or None when filtering is off."""
        valid = self.valid_range is not None and 0.0 < self.valid_range < 1.0
        return self.valid_range if valid else None


@dataclass(frozen=True)
class TrackLossConfig:
    """Track loss. Terms are O(1) at convergence (L1 ~ 1 px, BCE ~ 0.1-0.7), hence unit relative weights."""

    weight: float = 1.0  # multiplies the whole track term in the objective
    gamma: float = 0.8  # iteration i of n is weighted gamma^(n-1-i)
    vis_weight: float = 1.0
    conf_weight: float = 1.0
    conf_threshold: float = 3.0  # pixels: a prediction closer than this to the GT is the confidence target 1


_DEPTH_DEFAULTS = {"gradient_loss_fn": "grad", "valid_range": 0.98}  # upstream's default.yaml depth entry
_POINT_DEFAULTS = {"gradient_loss_fn": "normal", "valid_range": 0.98}  # upstream's commented point template


def _build_config(
    cls: type, group: str, values: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None
) -> Any:
    """A config dataclass from a (Hydra) mapping, or None when the group is disabled; unknown keys are errors."""
    if values is None:
        return None
    names = {field.name for field in dataclasses.fields(cls)}
    given = dict(values)
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(f"unknown {group} loss option(s) {unknown}; valid options: {sorted(names)}")
    return cls(**{**(defaults or {}), **given})


# ----------------------------------------------------------------------------------------------------------------
# masked reductions
# ----------------------------------------------------------------------------------------------------------------
def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` where `mask` (broadcast to values' shape) is True; 0 when nothing is selected."""
    mask = mask.expand_as(values)
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def _nearest_rank_quantile(values: Tensor, mask: Tensor, count: Tensor, quantile: float) -> Tensor:
    """The "nearest"-rank quantile of values[mask] (1-D inputs), as torch.quantile would give, without a sync."""
    filled = torch.where(mask, values, torch.full_like(values, float("inf")))  # unmasked entries sort last
    ordered = torch.sort(filled).values
    rank = (quantile * (count - 1).to(values.dtype)).round().long().clamp(0, values.numel() - 1)
    return ordered.gather(0, rank.reshape(1)).reshape(())


def _filtered_mean(values: Tensor, mask: Tensor, quantile: float | None) -> Tensor:
    """Mean of values[mask] after upstream's outlier filter.

    With more than 1000 masked values, drop those >= the `quantile` of the masked values, unless that would leave
    1000 or fewer. `values` must be sanitised (in [-100, 100]): upstream's clamp at 100 inside the filter and its
    sanitising of the kept values are then no-ops. Args: values, mask: same shape (any). Returns a scalar.
    """
    values, mask = values.reshape(-1), mask.reshape(-1)
    if quantile is None:
        return _masked_mean(values, mask)
    count = mask.sum()
    filtering = count > _MIN_FILTER_ELEMENTS
    threshold = _nearest_rank_quantile(values.detach(), mask, count, quantile)
    kept = mask & (values < threshold)
    use_kept = filtering & (kept.sum() > _MIN_FILTER_ELEMENTS)
    return _masked_mean(values, torch.where(use_kept, kept, mask))


# ----------------------------------------------------------------------------------------------------------------
# camera
# ----------------------------------------------------------------------------------------------------------------
def _camera_errors(pred: Tensor, gt: Tensor, loss_type: str) -> tuple[Tensor, Tensor, Tensor]:
    """Per-frame errors of the translation, quaternion and FoV groups of [B, S, 9] encodings -> [B, S, k] each."""
    diff = pred - gt
    groups = (diff[..., :3], diff[..., 3:7], diff[..., 7:])
    if loss_type == "l1":
        return tuple(group.abs() for group in groups)
    return tuple(torch.linalg.vector_norm(group, dim=-1, keepdim=True) for group in groups)


def camera_loss(pose_enc_list: Sequence[Tensor], batch: Mapping[str, Tensor], cfg: CameraLossConfig) -> dict:
    """Iteration-weighted pose-encoding error against the GT cameras.

    Args:
        pose_enc_list: n iterations of [B, S, 9] predicted encodings (last = final).
        batch: normalised extrinsics [B, S, 3, 4], intrinsics [B, S, 3, 3], images [B, S, 3, H, W],
            point_masks [B, S, H, W].

    Returns:
        loss_camera, loss_T, loss_R, loss_FL (scalars).
    """
    image_hw = tuple(batch["images"].shape[-2:])
    gt = extri_intri_to_pose_encoding(batch["extrinsics"], batch["intrinsics"], image_hw, cfg.pose_encoding_type)
    # whole sequences whose first frame is (nearly) without depth give no camera supervision
    valid = (batch["point_masks"][:, 0].flatten(1).sum(dim=1) > _MIN_FRAME0_POINTS).reshape(-1, 1, 1)
    n = len(pose_enc_list)
    totals = [gt.new_zeros(()) for _ in range(3)]
    for i, pred in enumerate(pose_enc_list):
        stage_weight = cfg.gamma ** (n - 1 - i)
        errors = _camera_errors(pred.float(), gt, cfg.loss_type)
        for j, error in enumerate(errors):
            error = finite_or_zero(error, _HARD_MAX)
            totals[j] = totals[j] + stage_weight * _masked_mean(error, valid)
    loss_t, loss_r, loss_fl = (total / n for total in totals)
    loss = cfg.weight_trans * loss_t + cfg.weight_rot * loss_r + cfg.weight_focal * loss_fl
    return {"loss_camera": loss, "loss_T": loss_t, "loss_R": loss_r, "loss_FL": loss_fl}


# ----------------------------------------------------------------------------------------------------------------
# depth / point maps
# ----------------------------------------------------------------------------------------------------------------
def _gradient_matching(pred: Tensor, gt: Tensor, mask: Tensor, conf: Tensor | None, gamma: float, alpha: float):
    """Image-gradient matching of the error map pred - gt; [N, H, W, C], mask/conf [N, H, W] -> scalar.

    Sum over valid horizontal and vertical neighbour pairs of |d(pred - gt)| (clamped at 100), divided by the
    number of valid pixel-channels. With `conf`, a pair costs gamma*g*c - alpha*log(c), c at the pair's second pixel.
    """
    diff = torch.where(mask.unsqueeze(-1), pred - gt, torch.zeros_like(pred))
    total = pred.new_zeros(())
    for dim in (2, 1):  # x then y
        size = mask.shape[dim]
        grad = (diff.narrow(dim, 1, size - 1) - diff.narrow(dim, 0, size - 1)).abs().clamp(max=_HARD_MAX)
        pair_mask = (mask.narrow(dim, 1, size - 1) & mask.narrow(dim, 0, size - 1)).unsqueeze(-1)
        if conf is not None:
            pair_conf = torch.where(pair_mask, conf.narrow(dim, 1, size - 1).unsqueeze(-1), torch.ones_like(grad))
            grad = gamma * grad * pair_conf - alpha * torch.log(pair_conf)
        total = total + torch.where(pair_mask, grad, torch.zeros_like(grad)).sum()
    return total / (mask.sum() * pred.shape[-1]).clamp(min=1)


def _neighbour_normals(points: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Unit normals from the 4 neighbour cross products; points [N, H, W, 3] -> ([4, N, H, W, 3], valid [4, N, H, W]).

    Normal k is (up x left, left x down, down x right, right x up)[k], valid where its three pixels are valid.
    """
    padded = F.pad(points.permute(0, 3, 1, 2), (1, 1, 1, 1)).permute(0, 2, 3, 1)
    valid = F.pad(mask, (1, 1, 1, 1))
    centre = padded[:, 1:-1, 1:-1]
    up, left = padded[:, :-2, 1:-1] - centre, padded[:, 1:-1, :-2] - centre
    down, right = padded[:, 2:, 1:-1] - centre, padded[:, 1:-1, 2:] - centre
    v_c, v_up, v_left = valid[:, 1:-1, 1:-1], valid[:, :-2, 1:-1], valid[:, 1:-1, :-2]
    v_down, v_right = valid[:, 2:, 1:-1], valid[:, 1:-1, 2:]
    normals = torch.stack(
        (
            torch.cross(up, left, dim=-1),
            torch.cross(left, down, dim=-1),
            torch.cross(down, right, dim=-1),
            torch.cross(right, up, dim=-1),
        )
    )
    valids = torch.stack((v_up & v_left, v_left & v_down, v_down & v_right, v_right & v_up)) & v_c
    return F.normalize(normals, dim=-1, eps=_NORMAL_EPS), valids


def _normal_matching(pred: Tensor, gt: Tensor, mask: Tensor, conf: Tensor | None, gamma: float, alpha: float):
    """Mean (1 - cos) between predicted and GT surface normals; [N, H, W, 3], mask/conf [N, H, W] -> scalar.

    Zero when fewer than 10 normals are valid in both. With `conf`, a normal costs gamma*l*c - alpha*log(c), c at
    its centre pixel.
    """
    pred_normals, pred_valid = _neighbour_normals(pred, mask)
    gt_normals, gt_valid = _neighbour_normals(gt, mask)
    valid = pred_valid & gt_valid
    # upstream's +-1e-8 cosine margin is below float32 resolution at 1, so it is a plain clamp to [-1, 1]
    loss = 1.0 - (pred_normals * gt_normals).sum(dim=-1).clamp(-1.0, 1.0)
    if conf is not None:
        normal_conf = torch.where(valid, conf.unsqueeze(0).expand_as(loss), torch.ones_like(loss))
        loss = gamma * loss * normal_conf - alpha * torch.log(normal_conf)
    mean = _masked_mean(finite_or_zero(loss), valid)
    return torch.where(valid.sum() >= _MIN_NORMALS, mean, torch.zeros_like(mean))


def _multi_scale(fn, pred: Tensor, gt: Tensor, mask: Tensor, conf: Tensor | None, scales: int, **kw) -> Tensor:
    """Average of `fn` over `scales` subsamplings [:, ::2^s, ::2^s] of [N, H, W, ...] maps."""
    total = pred.new_zeros(())
    for scale in range(scales):
        step = 2**scale
        sub_conf = None if conf is None else conf[:, ::step, ::step]
        total = total + fn(pred[:, ::step, ::step], gt[:, ::step, ::step], mask[:, ::step, ::step], sub_conf, **kw)
    return total / scales


def regression_loss(pred: Tensor, gt: Tensor, mask: Tensor, conf: Tensor, cfg: RegressionLossConfig):
    """Confidence-weighted regression of a dense map (depth or points).

    Args:
        pred, gt: [B, S, H, W, C] (gt sanitised); mask: [B, S, H, W] bool; conf: [B, S, H, W] (> 0 from the
            head's expp1; non-finite or <= 0 entries contribute 0 to the confidence term).

    Returns:
        (loss_conf, loss_reg, loss_grad) scalars: mean filtered sanitised gamma*r*c - alpha*log(c), mean filtered r
        with r = sanitised ||gt - pred|| per pixel, and the multi-scale gradient/normal term (0 when
        gradient_loss_fn is None).
    """
    # masking before the norm keeps garbage outside the mask out of the forward and the backward pass
    diff = torch.where(mask.unsqueeze(-1), gt - pred, torch.zeros_like(pred))
    residual = finite_or_zero(torch.linalg.vector_norm(diff, dim=-1), _HARD_MAX)
    usable_conf = mask & torch.isfinite(conf) & (conf > 0)
    safe_conf = torch.where(usable_conf, conf, torch.ones_like(conf))
    conf_term = cfg.gamma * residual * safe_conf - cfg.alpha * torch.log(safe_conf)
    conf_term = finite_or_zero(torch.where(usable_conf, conf_term, torch.zeros_like(conf_term)), _HARD_MAX)
    loss_conf = _filtered_mean(conf_term, mask, cfg.filter_quantile)
    loss_reg = _filtered_mean(residual, mask, cfg.filter_quantile)

    loss_grad = pred.new_zeros(())
    if cfg.gradient_loss_fn is not None:
        kind = "normal" if cfg.gradient_loss_fn.startswith("normal") else "grad"
        fn = _normal_matching if kind == "normal" else _gradient_matching
        frames = pred.shape[:2].numel()
        flat_conf = conf.reshape(frames, *conf.shape[2:]) if cfg.gradient_loss_fn.endswith("conf") else None
        loss_grad = _multi_scale(
            fn,
            pred.reshape(frames, *pred.shape[2:]),
            gt.reshape(frames, *gt.shape[2:]),
            mask.reshape(frames, *mask.shape[2:]),
            flat_conf,
            _GRADIENT_SCALES[kind],
            gamma=cfg.gamma,
            alpha=cfg.alpha,
        )
    return loss_conf, loss_reg, loss_grad


def _dense_loss(pred: Tensor, gt: Tensor, mask: Tensor, conf: Tensor, cfg: RegressionLossConfig, suffix: str):
    """regression_loss as named outputs, zeroed when the batch has fewer than 100 valid pixels."""
    terms = regression_loss(pred.float(), finite_or_zero(gt.float(), _HARD_MAX), mask.bool(), conf.float(), cfg)
    enough = mask.sum() >= _MIN_MASK_POINTS
    names = (f"loss_conf_{suffix}", f"loss_reg_{suffix}", f"loss_grad_{suffix}")
    return {name: torch.where(enough, term, torch.zeros_like(term)) for name, term in zip(names, terms)}


# ----------------------------------------------------------------------------------------------------------------
# tracks
# ----------------------------------------------------------------------------------------------------------------
def _bce_on_probabilities(prob: Tensor, target: Tensor) -> Tensor:
    """Element-wise binary cross-entropy of probabilities (the tracker applies the sigmoid itself)."""
    prob = prob.float().clamp(_PROB_EPS, 1.0 - _PROB_EPS)
    return -(target * torch.log(prob) + (1.0 - target) * torch.log1p(-prob))


def track_loss(predictions: Mapping[str, Any], batch: Mapping[str, Tensor], cfg: TrackLossConfig) -> dict:
    """Iteration-weighted L1 on tracks + visibility BCE + confidence BCE.

    Args:
        predictions: track [B, S, N, 2] pixels (final iteration), optional track_list (n iterations of
            [B, S, N, 2], or a stacked [n, B, S, N, 2]), vis and conf [B, S, N] probabilities.
        batch: tracks [B, S, N, 2] pixels, track_vis_mask [B, S, N] bool, track_positive_mask [B, N] bool.

    Returns:
        loss_track: sum_i gamma^(n-1-i) * L1_i / n, L1_i the mean over visible positive entries of the
            per-point mean |dx|, |dy|;
        loss_vis: BCE of vis against the GT visibility over all frames of positive tracks;
        loss_track_conf: BCE of conf against (||gt - final track|| < conf_threshold) over visible positive entries.
    """
    track_list = predictions.get("track_list")
    track_list = [predictions["track"]] if track_list is None else list(track_list)
    gt = batch["tracks"].float()
    visible = batch["track_vis_mask"].bool()
    positive = batch["track_positive_mask"].bool().unsqueeze(1).expand_as(visible)
    supervised = visible & positive
    for name, tensor in (("track", track_list[-1]), ("vis", predictions["vis"]), ("conf", predictions["conf"])):
        expected = gt.shape if name == "track" else visible.shape
        if tensor.shape != expected:
            raise ValueError(f"predictions[{name!r}] has shape {tuple(tensor.shape)}, GT needs {tuple(expected)}")

    n = len(track_list)
    loss_track = gt.new_zeros(())
    for i, pred in enumerate(track_list):
        error = torch.where(supervised.unsqueeze(-1), pred.float() - gt, torch.zeros_like(gt))
        loss_track = loss_track + cfg.gamma ** (n - 1 - i) * _masked_mean(error.abs().mean(dim=-1), supervised)
    loss_track = loss_track / n

    loss_vis = _masked_mean(_bce_on_probabilities(predictions["vis"], visible.float()), positive)
    final_error = torch.linalg.vector_norm(track_list[-1].detach().float() - gt, dim=-1)
    accurate = (final_error < cfg.conf_threshold).float()
    loss_conf = _masked_mean(_bce_on_probabilities(predictions["conf"], accurate), supervised)
    return {"loss_track": loss_track, "loss_vis": loss_vis, "loss_track_conf": loss_conf}


# ----------------------------------------------------------------------------------------------------------------
# the multitask objective
# ----------------------------------------------------------------------------------------------------------------
class MultitaskLoss(nn.Module):
    """Weighted sum of the enabled losses (a group is enabled by passing its config mapping, e.g. from Hydra).

    objective = camera.weight * loss_camera + depth.weight * (conf + reg + grad)_depth
                + point.weight * (conf + reg + grad)_point
                + track.weight * (loss_track + vis_weight * loss_vis + conf_weight * loss_track_conf)

    Options per group and their defaults are the fields of CameraLossConfig, RegressionLossConfig (depth defaults
    to gradient_loss_fn "grad", point to "normal", both valid_range 0.98, as upstream's config) and TrackLossConfig.
    """

    def __init__(
        self,
        camera: Mapping[str, Any] | None = None,
        depth: Mapping[str, Any] | None = None,
        point: Mapping[str, Any] | None = None,
        track: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.camera = _build_config(CameraLossConfig, "camera", camera)
        self.depth = _build_config(RegressionLossConfig, "depth", depth, _DEPTH_DEFAULTS)
        self.point = _build_config(RegressionLossConfig, "point", point, _POINT_DEFAULTS)
        self.track = _build_config(TrackLossConfig, "track", track)
        if self.camera is None and self.depth is None and self.point is None and self.track is None:
            raise ValueError("MultitaskLoss needs at least one of camera, depth, point or track configured")

    def forward(self, predictions: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """predictions: the model's output dict; batch: the normalised batch. Returns float32 scalars."""
        losses: dict[str, Tensor] = {}
        weighted: list[Tensor] = []
        if self.camera is not None:
            pose_enc_list = predictions.get("pose_enc_list")
            pose_enc_list = [predictions["pose_enc"]] if pose_enc_list is None else list(pose_enc_list)
            losses.update(camera_loss(pose_enc_list, batch, self.camera))
            weighted.append(self.camera.weight * losses["loss_camera"])
        if self.depth is not None:
            terms = _dense_loss(
                predictions["depth"],
                batch["depths"].unsqueeze(-1),
                batch["point_masks"],
                predictions["depth_conf"],
                self.depth,
                "depth",
            )
            losses.update(terms)
            weighted.append(self.depth.weight * sum(terms.values()))
        if self.point is not None:
            terms = _dense_loss(
                predictions["world_points"],
                batch["world_points"],
                batch["point_masks"],
                predictions["world_points_conf"],
                self.point,
                "point",
            )
            losses.update(terms)
            weighted.append(self.point.weight * sum(terms.values()))
        if self.track is not None:
            if "track" not in predictions:
                raise ValueError("the track loss is configured but predictions have no 'track' (pass query_points)")
            terms = track_loss(predictions, batch, self.track)
            losses.update(terms)
            track_total = (
                terms["loss_track"]
                + self.track.vis_weight * terms["loss_vis"]
                + self.track.conf_weight * terms["loss_track_conf"]
            )
            weighted.append(self.track.weight * track_total)
        losses["objective"] = torch.stack(weighted).sum()
        return losses
