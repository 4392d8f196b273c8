"""Reading .safetensors tensor by tensor: the same tensors as the safetensors package reads, cast as they are read,
never the whole float32 file in memory, and VGGT.from_pretrained(torch_dtype=bfloat16) built on that."""

from __future__ import annotations

import copy
import re
import tracemalloc
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vggt.models.vggt import VGGT
from vggt.weights import read_state_dict


def mixed_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "module.a.weight": torch.randn(7, 5, generator=generator),
        "module.b.half": torch.randn(3, generator=generator).to(torch.bfloat16),
        "module.c.index": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "module.d.mask": torch.tensor([True, False, True]),
        "module.e.empty": torch.zeros(0, 4),
        "module.f.scalar": torch.tensor(2.5),
    }


def test_streamed_tensors_equal_the_safetensors_package_and_drop_the_ddp_prefix(tmp_path: Path) -> None:
    path = tmp_path / "mixed.safetensors"
    save_file(mixed_tensors(), str(path), metadata={"format": "pt"})
    reference = {key.removeprefix("module."): value for key, value in load_file(str(path)).items()}
    streamed = read_state_dict(path)
    assert sorted(streamed) == sorted(reference)
    for key, value in reference.items():
        assert streamed[key].dtype == value.dtype and streamed[key].shape == value.shape, key
        assert torch.equal(streamed[key], value), key


def test_tensors_are_cast_as_they_are_read(tmp_path: Path) -> None:
    path = tmp_path / "mixed.safetensors"
    save_file(mixed_tensors(), str(path))
    streamed = read_state_dict(path, {"a.weight": torch.bfloat16, "c.index": torch.int32})
    assert streamed["a.weight"].dtype == torch.bfloat16 and streamed["c.index"].dtype == torch.int32
    assert torch.equal(streamed["a.weight"], load_file(str(path))["module.a.weight"].to(torch.bfloat16))
    assert streamed["b.half"].dtype == torch.bfloat16  # not named: as stored


def test_reading_holds_one_float32_tensor_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    tensors = {f"layer{i}.weight": torch.full((256, 1024), float(i)) for i in range(16)}  # 1 MiB each, 16 MiB
    save_file(tensors, str(path))
    tracemalloc.start()  # the read buffers are Python bytearrays: tracemalloc sees them, torch's casts it does not
    try:
        streamed = read_state_dict(path, dict.fromkeys(tensors, torch.bfloat16))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(streamed[key].dtype == torch.bfloat16 for key in tensors)
    assert peak < 3 * 1024**2, f"{peak / 1024**2:.1f} MiB of read buffers at once for 1 MiB tensors"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[:-10], "cut short|outside its data"),
        (lambda data: (10**9).to_bytes(8, "little") + data[8:], "header of"),
        (lambda data: data[:8] + b"{" * (len(data) - 8), "not JSON"),
    ],
)
def test_a_damaged_file_is_refused_naming_it(tmp_path: Path, damage, message: str) -> None:
    path = tmp_path / "model.safetensors"
    save_file(mixed_tensors(), str(path))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*(" + message + ")"):
        read_state_dict(path)


def test_from_pretrained_in_bfloat16_holds_aggregator_matmuls_in_bf16_and_computes_the_same(
    tiny_model: VGGT, tmp_path: Path
) -> None:
    tiny_model.save_pretrained(tmp_path)
    loaded = VGGT.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    dtypes = {name: tensor.dtype for name, tensor in loaded.state_dict().items()}
    matmuls = {
        f"aggregator.{module_name}.{param}"
        for module_name, module in tiny_model.aggregator.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
        for param, _ in module.named_parameters(recurse=False)
    }
    assert matmuls and all(dtypes[name] == torch.bfloat16 for name in matmuls)
    assert all(dtype == torch.float32 for name, dtype in dtypes.items() if name not in matmuls)  # norms and heads
    held = copy.deepcopy(tiny_model)
    held.hold_in_compute_dtype(torch.bfloat16)
    for name, tensor in held.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name  # the cast a float32 load then makes
    assert loaded.aggregator.kept_dtype == torch.bfloat16
    images = torch.rand(1, 2, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected, out = held(images), loaded(images)
    for key in ("pose_enc", "depth", "world_points"):
        torch.testing.assert_close(out[key], expected[key], rtol=0, atol=0, msg=key)  # loaded as if cast after


def raw_safetensors(path: Path, header: str, data: bytes) -> Path:
    """A file of the format by hand: the header's length (8 bytes, little-endian), the JSON header, the data."""
    encoded = header.encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data)
    return path


@pytest.mark.parametrize(
    "header, message",
    [
        ('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4.0]}}', "bad shape or offsets"),
        ('{"a": {"dtype": "F32", "shape": [-1, -1], "data_offsets": [0, 4]}}', "bad shape or offsets"),
        ('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], '
         '"data_offsets": [0, 4]}}', "appears twice"),
        ('{"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 4]}}', "stored as 'C64'"),
        ('{"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}', "stored as 'F64'.*float32"),
    ],
)  # fmt: skip
def test_a_malformed_header_is_refused_naming_the_file(tmp_path: Path, header: str, message: str) -> None:
    path = raw_safetensors(tmp_path / "model.safetensors", header, b"\0" * 4)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        read_state_dict(path)


def test_torch_dtype_takes_hugging_face_names_and_refuses_the_rest(tiny_model: VGGT, tmp_path: Path) -> None:
    tiny_model.save_pretrained(tmp_path)
    by_name = VGGT.from_pretrained(tmp_path, torch_dtype="bfloat16")
    assert by_name.aggregator.frame_blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    half = VGGT.from_pretrained(tmp_path, torch_dtype=torch.float16)
    assert half.aggregator.frame_blocks[0].mlp.fc1.weight.dtype == torch.float16
    assert half.aggregator.kept_dtype is None  # float16 could overflow the kept layers: they stay as computed
    with pytest.raises(ValueError, match="torch_dtype must be one of"):
        VGGT.from_pretrained(tmp_path, torch_dtype=torch.float64)
