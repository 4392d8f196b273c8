"""Weights: read .safetensors / .pt files and Hugging Face repos, load with a report, convert, verify.

Models are built on the meta device and the checkpoint tensors are assigned in place, so loading
VGGT-1B costs no random initialisation and no second copy of the weights. Nothing here names the model
class: the functions that build one take it (`VGGT.from_pretrained` passes itself), so the model
module imports this one and never the reverse.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vggt.config import VGGTConfig

WEIGHT_FILES = ("model.safetensors", "model.pt", "pytorch_model.bin")
CONFIG_FILE = "config.json"
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers


class WeightsMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the model; the message holds the full report."""

    def __init__(self, report: LoadReport):
        super().__init__(report.describe())
        self.report = report


@dataclass
class LoadReport:
    source: str
    total_source_keys: int
    loaded_keys: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[dict[str, Any]] = field(default_factory=list)
    absent_modules: list[str] = field(default_factory=list)  # top-level modules with no tensor in the checkpoint

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON form (absent_modules only feeds the hints)."""
        report = asdict(self)
        del report["absent_modules"]
        return report

    def describe(self, max_keys: int = 8) -> str:
        """Human-readable summary with what to do about it."""
        lines = [
            f"weights {self.source}: {self.loaded_keys} of {self.total_source_keys} checkpoint tensors fit the model"
        ]

        def listing(title: str, items: list[str]) -> None:
            if items:
                shown = ", ".join(items[:max_keys]) + (
                    f", ... ({len(items) - max_keys} more)" if len(items) > max_keys else ""
                )
                lines.append(f"  {title} ({len(items)}): {shown}")

        listing("missing in checkpoint", self.missing)
        listing("unexpected in checkpoint", self.unexpected)
        listing(
            "shape mismatch",
            [
                f"{m['key']} checkpoint {tuple(m['checkpoint'])} vs model {tuple(m['model'])}"
                for m in self.shape_mismatch
            ],
        )
        lines.extend(f"  hint: {hint}" for hint in self._hints())
        return "\n".join(lines)

    def _hints(self) -> list[str]:
        hints = []
        absent_heads = [m for m in self.absent_modules if m.endswith("_head")]
        if absent_heads and all(k.split(".")[0] in absent_heads for k in self.missing):
            flags = ", ".join(f"enable_{h.removesuffix('_head')}=False" for h in absent_heads)
            hints.append(f"the checkpoint has no weights for {', '.join(absent_heads)}: build the model with {flags}")
        unexpected_heads = sorted({k.split(".")[0] for k in self.unexpected})
        if unexpected_heads and all(k.endswith("_head") for k in unexpected_heads) and not self.missing:
            hints.append(f"the checkpoint also holds {', '.join(unexpected_heads)}, which this model disables")
        if self.shape_mismatch or (self.missing and self.unexpected):
            hints.append(
                "the checkpoint was made for another architecture: pass the matching config "
                "(presets: vggt_1b, small_reference, tiny) or the config.json saved with it"
            )
        if not self.ok:
            hints.append("strict=False loads the matching tensors and leaves the rest randomly initialised")
        return hints


# reading ------------------------------------------------------------------------------------
# The dtypes a VGGT checkpoint may hold; no F64: NPUs compute 64-bit floats slowly or not at all.
SAFETENSORS_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip
MAX_SAFETENSORS_HEADER = 100 * 1024**2  # the format's own limit on the JSON header


def _safetensors_header(path: Path, file: Any) -> tuple[dict[str, Any], int]:
    """(tensor name -> {"dtype", "shape", "data_offsets"}, offset of the data) of an open .safetensors file."""
    size = int.from_bytes(file.read(8), "little")
    if not 2 <= size <= MAX_SAFETENSORS_HEADER:
        raise ValueError(f"{path} is not a readable safetensors file: a header of {size} bytes")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"{path} is not a readable safetensors file: a tensor name appears twice")
        return dict(pairs)

    try:
        header = json.loads(file.read(size), object_pairs_hook=unique)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: its header is not JSON ({err})") from err
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a readable safetensors file: its header is not a JSON object")
    header.pop("__metadata__", None)
    data_start, data_size = 8 + size, os.path.getsize(path) - 8 - size
    for name, entry in header.items():
        try:
            stored_dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a readable safetensors file: bad entry for {name!r} ({err!r})") from err
        if stored_dtype not in SAFETENSORS_DTYPES:
            raise ValueError(
                f"{path}: {name!r} is stored as {stored_dtype!r}; VGGT weights load from "
                f"{', '.join(SAFETENSORS_DTYPES)} (convert 64-bit float checkpoints to float32 first)"
            )
        dtype = SAFETENSORS_DTYPES[stored_dtype]
        if not all(type(n) is int and n >= 0 for n in (*shape, begin, end)):
            raise ValueError(f"{path} is not a readable safetensors file: {name!r} has a bad shape or offsets")
        expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if not 0 <= begin <= end <= data_size or end - begin != expected:
            raise ValueError(f"{path} is not a readable safetensors file: {name!r} lies outside its data")
    return header, data_start


def _read_safetensors(path: Path, dtypes: Mapping[str, torch.dtype]) -> dict[str, torch.Tensor]:
    """The tensors of `path`, read one at a time with plain reads and each cast at once to `dtypes[name]` (after
    WRAPPER_PREFIXES are stripped) where given. No memory map: the file's pages never count as this process's
    memory, and a float32 file loads into bfloat16 without ever holding all of it in float32."""
    if sys.byteorder != "little":  # safetensors stores little-endian; reading it raw here would scramble it
        raise ValueError(f"{path}: reading safetensors on a {sys.byteorder}-endian machine is not supported")
    with open(path, "rb") as file:
        header, data_start = _safetensors_header(path, file)
        names = strip_wrapper_prefixes(dict.fromkeys(header))  # stored name -> the model's name, in file order
        renamed = dict(zip(header, names))
        state = {}
        for stored, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            begin, end = entry["data_offsets"]
            dtype = SAFETENSORS_DTYPES[entry["dtype"]]
            buffer = bytearray(end - begin)
            file.seek(data_start + begin)
            if file.readinto(buffer) != len(buffer):
                raise ValueError(f"{path} is not a readable safetensors file: {stored!r} is cut short")
            flat = torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
            name = renamed[stored]
            state[name] = flat.reshape(entry["shape"]).to(dtypes.get(name, dtype))
    return state


def read_state_dict(path: str | Path, dtypes: Mapping[str, torch.dtype] | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a torch checkpoint (plain state dict or {"model": ...}), on CPU, cast to
    `dtypes[name]` where given (a .safetensors file tensor by tensor as it is read; see _read_safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, dtypes or {})
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(
                f"{path} is not a readable PyTorch checkpoint of tensors "
                f"({type(err).__name__}: {str(err).strip().splitlines()[0]}); "
                "expected a state dict saved with torch.save or a .safetensors file"
            ) from err
        if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
            state = state["model"]  # training checkpoints keep the model under "model"
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    state = strip_wrapper_prefixes(dict(state))
    return {name: tensor.to((dtypes or {}).get(name, tensor.dtype)) for name, tensor in state.items()}


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a 'module.' (DDP) or '_orig_mod.' (torch.compile) prefix carried by every key."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


# comparing and loading ------------------------------------------------------------------------
def compare_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "") -> LoadReport:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatch = [
        {"key": k, "checkpoint": list(v.shape), "model": list(expected[k])}
        for k, v in state.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    loaded = len(state) - len(unexpected) - len(mismatch)
    modules = dict.fromkeys(k.split(".")[0] for k in expected)
    absent = [m for m in modules if not any(k.split(".")[0] == m for k in state)]
    return LoadReport(str(source), len(state), loaded, missing, unexpected, mismatch, absent)


def build_on_meta_device(model_cls: type[nn.Module], config: VGGTConfig) -> nn.Module:
    """`model_cls(config=config)` with its parameters on the meta device: no memory, no random init."""
    with torch.device("meta"):
        return model_cls(config=config)


def load_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True, source: str = ""
) -> LoadReport:
    """Load `state` into `model` and return the report.

    Strict loading raises WeightsMismatchError unless every key and shape matches. A model on the
    meta device takes the checkpoint tensors as its parameters (cast to its dtype); it cannot be
    loaded partially, since its missing tensors would have no values.
    """
    report = compare_state_dict(model, state, source)
    if strict and not report.ok:
        raise WeightsMismatchError(report)
    bad = set(report.unexpected) | {m["key"] for m in report.shape_mismatch}
    fitting = {k: v for k, v in state.items() if k not in bad}
    params = dict(model.named_parameters())
    if not any(p.is_meta for p in params.values()):
        model.load_state_dict(fitting, strict=False)
        return report
    if report.missing or report.shape_mismatch:
        raise ValueError(f"cannot partially load a model on the meta device:\n{report.describe()}")
    requires_grad = {k: p.requires_grad for k, p in params.items()}
    dtypes = {k: t.dtype for k, t in model.state_dict().items()}
    model.load_state_dict({k: v.to(dtypes[k]) for k, v in fitting.items()}, strict=True, assign=True)
    for name, param in model.named_parameters():
        param.requires_grad_(requires_grad[name])  # keep the module's flags (frozen mask_token) whatever assign did
    return report


# sources: files, directories, Hugging Face repos ----------------------------------------------
def resolve_source(source: str | Path, hub_kwargs: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any] | None]:
    """(weights file, config.json contents or None) for a file, a directory or a Hugging Face repo id."""
    path = Path(source).expanduser()
    if path.is_file():
        config_path = path.parent / CONFIG_FILE
        return path, read_config_json(config_path) if config_path.is_file() else None
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                config_path = path / CONFIG_FILE
                return path / name, read_config_json(config_path) if config_path.is_file() else None
        raise FileNotFoundError(f"directory {path} holds none of {', '.join(WEIGHT_FILES)}")
    text = str(source)
    if (
        text.startswith((".", "/", "~"))
        or text.count("/") > 1
        or path.suffix in {".pt", ".pth", ".bin", ".safetensors"}
    ):
        raise FileNotFoundError(f"{source} does not exist (and is not a Hugging Face repo id like 'facebook/VGGT-1B')")
    return download_from_hub(str(source), hub_kwargs or {})


def download_from_hub(repo_id: str, hub_kwargs: dict[str, Any]) -> tuple[Path, dict[str, Any] | None]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, HFValidationError, LocalEntryNotFoundError

    def fetch(filename: str) -> Path | None:
        try:
            return Path(hf_hub_download(repo_id, filename, **hub_kwargs))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            return None
        except HFValidationError as err:
            raise FileNotFoundError(
                f"{repo_id} is neither an existing file or directory nor a valid repo id: {err}"
            ) from err

    for name in WEIGHT_FILES:
        weights = fetch(name)
        if weights is not None:
            config_path = fetch(CONFIG_FILE)
            return weights, read_config_json(config_path) if config_path else None
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE or hub_kwargs.get("local_files_only")
    where = "in the local Hugging Face cache (offline mode)" if offline else "on the Hugging Face Hub or in the cache"
    raise FileNotFoundError(
        f"found none of {', '.join(WEIGHT_FILES)} for {repo_id} {where}; "
        "download them once with network access, or pass a local file or directory"
    )


def read_config_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable JSON config: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object of config values")
    if isinstance(data.get("config"), dict):
        data = data["config"]  # some Hub mixin versions nest the init arguments
    return data


def config_from_json(data: dict[str, Any]) -> VGGTConfig:
    """A VGGTConfig from config.json (our full config or upstream's keyword arguments)."""
    known = set(VGGTConfig.__dataclass_fields__)
    values = {k: v for k, v in data.items() if v is not None and not k.startswith("_")}
    ignored = sorted(set(values) - known)
    if ignored:
        warnings.warn(f"config.json keys {ignored} are not VGGTConfig fields and are ignored", stacklevel=3)
    return VGGTConfig.from_dict({**VGGTConfig().to_dict(), **{k: v for k, v in values.items() if k in known}})


def as_config(config: VGGTConfig | dict[str, Any] | str) -> VGGTConfig:
    if isinstance(config, VGGTConfig):
        return config
    if isinstance(config, str):
        return VGGTConfig.preset(config)
    return config_from_json(config)


def load_pretrained(
    model_cls: type[nn.Module],
    source: str | Path,
    config: VGGTConfig | dict[str, Any] | str | None = None,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
    hub_kwargs: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    lower_precision: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """The implementation of `VGGT.from_pretrained`. `lower_precision(model)` casts some of a model's parameters
    (on the meta device: free) before loading, and the checkpoint's tensors are read straight into those dtypes."""
    weights_path, json_config = resolve_source(source, hub_kwargs)
    if config is not None:
        cfg = as_config(config)
    elif json_config is not None:
        cfg = config_from_json(json_config)
    else:
        cfg = VGGTConfig()
    if model_kwargs:
        cfg = VGGTConfig.from_dict({**cfg.to_dict(), **model_kwargs})
    model = build_on_meta_device(model_cls, cfg)
    if lower_precision is not None:
        lower_precision(model)
    state = read_state_dict(weights_path, {name: t.dtype for name, t in model.state_dict().items()})
    fit = compare_state_dict(model, state)
    if not strict and (fit.missing or fit.shape_mismatch):
        model = model_cls(config=cfg)  # tensors the checkpoint cannot fill keep a real random init
        if lower_precision is not None:
            lower_precision(model)
    report = load_weights(model, state, strict=strict, source=str(weights_path))
    if not report.ok:
        warnings.warn(report.describe(), stacklevel=3)
    return model.to(map_location).eval()


# writing ---------------------------------------------------------------------------------------
def save_model(model: nn.Module, directory: Path) -> None:
    """model.safetensors + config.json (the full VGGTConfig) into `directory`."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(model.config.to_json())


def convert_checkpoint(src: str | Path, dst: str | Path) -> int:
    """Rewrite a torch checkpoint's state dict as safetensors; returns the number of tensors."""
    from safetensors.torch import save_file

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"destination {dst} must end in .safetensors")
    state = read_state_dict(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed or interrupted write leaves neither dst nor a stray .tmp
        raise
    return len(state)


def verify_weights(
    model_cls: type[nn.Module], path: str | Path, config: VGGTConfig | dict[str, Any] | str | None = None
) -> LoadReport:
    """Compare a weights file, directory or repo against `model_cls` of `config` without loading it."""
    weights_path, json_config = resolve_source(path)
    if config is not None:
        cfg = as_config(config)
    else:
        cfg = config_from_json(json_config) if json_config is not None else VGGTConfig()
    return compare_state_dict(build_on_meta_device(model_cls, cfg), read_state_dict(weights_path), str(weights_path))
