"""Output activations of the heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def inverse_log_transform(y: torch.Tensor) -> torch.Tensor:
    """sign(y) * (exp(|y|) - 1): the point head's 'inv_log'."""
    return torch.sign(y) * torch.expm1(y.abs())


_VALUE_ACTIVATIONS = {
    "exp": torch.exp,
    "inv_log": inverse_log_transform,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}

_CONF_ACTIVATIONS = {
    "expp1": lambda c: 1 + c.exp(),
    "expp0": torch.exp,
    "sigmoid": torch.sigmoid,
}


def activate_head(out: torch.Tensor, activation: str, conf_activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense head output [B, C, H, W] -> (values [B, H, W, C-1], confidence [B, H, W]).

    The last channel is the confidence, the others the predicted values.
    """
    fmap = out.permute(0, 2, 3, 1)
    return _VALUE_ACTIVATIONS[activation](fmap[..., :-1]), _CONF_ACTIVATIONS[conf_activation](fmap[..., -1])


def activate_pose(
    pose_enc: torch.Tensor, trans_act: str = "linear", quat_act: str = "linear", fl_act: str = "relu"
) -> torch.Tensor:
    """[..., 9] raw camera encoding -> activated [T(3) | quaternion(4) | FoV(2)]."""
    t, quat, fov = pose_enc[..., :3], pose_enc[..., 3:7], pose_enc[..., 7:]
    return torch.cat(
        (_VALUE_ACTIVATIONS[trans_act](t), _VALUE_ACTIVATIONS[quat_act](quat), _VALUE_ACTIVATIONS[fl_act](fov)), dim=-1
    )
