"""No float64 tensor is ever created on the model's forward and backward paths (NPUs lack fast fp64)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.utils.pose_enc import extri_intri_to_pose_encoding, pose_encoding_to_extri_intri


class Float64Guard(TorchDispatchMode):
    """Fails on the first op that takes or produces a float64 tensor."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        leaves, _ = torch.utils._pytree.tree_flatten((args, kwargs, out))
        tensors = [t for t in leaves if isinstance(t, torch.Tensor)]
        if any(t.dtype == torch.float64 for t in tensors):
            raise AssertionError(f"float64 tensor in {func}")
        return out


def test_the_guard_catches_float64():
    with pytest.raises(AssertionError, match="float64"), Float64Guard():
        torch.ones(2) * torch.ones(2, dtype=torch.float64)


def test_forward_and_backward_with_tracking_use_no_float64():
    torch.manual_seed(0)
    model = VGGT(config=VGGTConfig.tiny()).train()
    images = torch.rand(1, 2, 3, 140, 140)
    query_points = torch.tensor([[[30.0, 40.0], [90.5, 100.0]]])
    with Float64Guard():
        out = model(images, query_points=query_points)
        loss = sum(out[k].float().mean() for k in ("pose_enc", "depth", "world_points", "track", "vis", "conf"))
        loss.backward()


def test_pose_encoding_round_trip_uses_no_float64():
    extrinsics = torch.eye(3, 4).expand(1, 2, 3, 4).clone()
    intrinsics = torch.tensor([[100.0, 0, 70], [0, 100.0, 70], [0, 0, 1]]).expand(1, 2, 3, 3)
    with Float64Guard():
        encoding = extri_intri_to_pose_encoding(extrinsics, intrinsics, (140, 140))
        pose_encoding_to_extri_intri(encoding, (140, 140))
