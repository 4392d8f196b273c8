"""The training configuration's numbers and switches checked before anything is built, every problem in one error,
and the kind of a file named by checkpoint.resume checked once it is read.

Without these checks a bad value fails far from its cause (`optim.lr=abc` inside AdamW, `accum_steps=0` at the first
step) or not at all (`max_epochs=0` trains nothing and exits 0). Keys a preset leaves out are not checked here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

ABSENT = object()
RESUME_KEYS = ("model", "optimizer", "scaler", "epoch", "step", "global_step", "rng")  # what Trainer.save writes


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if _is_int(value) and value >= minimum else f"an integer >= {minimum}"

    return check


def _number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """A number in [low, high] (either end open when asked; high None: unbounded)."""
    left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
    description = f"a number in {left}{low:g}, {'inf' if high is None else f'{high:g}'}{right}"
    if low == 0 and high is None:
        description = "a positive number" if low_open else "a number >= 0"

    def check(value: Any) -> str | None:
        if not _is_number(value):
            return description
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        return None if above and below else description

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _pair(element: Callable[[Any], str | None], ordered: bool) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        description = f"a list of two, each {element(None)}" + (", the first <= the second" if ordered else "")
        if not isinstance(value, (list, tuple)) or len(value) != 2 or any(element(v) for v in value):
            return description
        return description if ordered and value[0] > value[1] else None

    return check


POSITIVE_INT = _integer(1)
COUNT = _integer(0)
RULES: dict[str, Callable[[Any], str | None]] = {
    "seed": COUNT,
    "deterministic": _boolean,
    "allow_tf32": _boolean,
    "max_epochs": POSITIVE_INT,
    "limit_train_batches": POSITIVE_INT,
    "limit_val_batches": COUNT,
    "val_epoch_freq": POSITIVE_INT,
    "accum_steps": POSITIVE_INT,
    "log_freq": POSITIVE_INT,
    "data.img_size": POSITIVE_INT,
    "data.patch_size": POSITIVE_INT,
    "data.num_workers": COUNT,
    "optim.lr": _number(0, low_open=True),
    "optim.min_lr": _number(0),
    "optim.warmup_fraction": _number(0, 1, high_open=True),
    "optim.weight_decay": _number(0),
    "optim.eps": _number(0, low_open=True),
    "optim.betas": _pair(_number(0, 1, high_open=True), ordered=False),
    "checkpoint.save_freq": COUNT,
    "checkpoint.save_every_steps": COUNT,
    "distributed.timeout_minutes": _number(0, low_open=True),
    "distributed.peer_timeout_seconds": _number(0, low_open=True),
}
SPLIT_RULES: dict[str, Callable[[Any], str | None]] = {
    "min_num_images": POSITIVE_INT,
    "img_nums": _pair(POSITIVE_INT, ordered=True),
    "aspects": _pair(_number(0, low_open=True), ordered=True),
    "max_img_per_gpu": POSITIVE_INT,
    "track_num": COUNT,
}
TRAIN_RULES: dict[str, Callable[[Any], str | None]] = {"repeat_batch": _boolean}


def _shown(value: Any) -> str:
    """The value as the user wrote it, with a hint where YAML made a string of what looks like a number."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return f"{value!r} (a string)"
        return f"{value!r} (a string: YAML reads a number in e-notation as one unless it has a dot, e.g. 5.0e-5)"
    return repr(value)


def config_problems(cfg: DictConfig) -> list[str]:
    """One line per value of `cfg` that breaks its rule (key, expected, got), in RULES order."""
    rules = dict(RULES)
    for split in ("train", "val"):
        if OmegaConf.select(cfg, f"data.{split}", default=None) is not None:
            rules.update({f"data.{split}.{key}": rule for key, rule in SPLIT_RULES.items()})
    rules.update({f"data.train.{key}": rule for key, rule in TRAIN_RULES.items()})
    problems = []
    for key, rule in rules.items():
        value = OmegaConf.select(cfg, key, default=ABSENT)
        if value is ABSENT:
            continue
        if isinstance(value, DictConfig) or OmegaConf.is_list(value):
            value = OmegaConf.to_container(value, resolve=True)
        expected = rule(value)
        if expected is not None:
            problems.append(f"{key} must be {expected}, got {_shown(value)}")
    lr, min_lr = OmegaConf.select(cfg, "optim.lr", default=None), OmegaConf.select(cfg, "optim.min_lr", default=None)
    if _is_number(lr) and _is_number(min_lr) and lr > 0 and min_lr > lr:
        problems.append(f"optim.min_lr ({min_lr:g}) must not exceed optim.lr ({lr:g}): the schedule decays to it")
    if OmegaConf.select(cfg, "data.train.repeat_batch", default=False) is True:
        tracks = [
            f"data.{split}.track_num={num}"
            for split in ("train", "val")
            if _is_int(num := OmegaConf.select(cfg, f"data.{split}.track_num", default=0)) and num > 0
        ]
        if tracks or OmegaConf.select(cfg, "loss.track", default=None) is not None:
            problems.append(
                f"data.train.repeat_batch=true reverses each sequence's frames, which its ground-truth tracks "
                f"(queried in frame 0) do not follow ({', '.join(tracks) or 'loss.track is set'}): set "
                "data.train.repeat_batch=false, or train without tracks (loss.track=null, track_num=0)"
            )
    return problems


def problems_message(problems: list[str]) -> str:
    """The error text for config_problems' lines: how many, where to fix them, one line each."""
    listing = "\n".join(f"  {problem}" for problem in problems)
    return (
        f"the training configuration has {len(problems)} invalid value(s); fix them in the YAML or on the "
        f"command line (key=value):\n{listing}"
    )


def check_training_config(cfg: DictConfig) -> None:
    """Raise one ValueError listing every problem config_problems(cfg) finds."""
    problems = config_problems(cfg)
    if problems:
        raise ValueError(problems_message(problems))


def check_resume_state(state: Any, path: object) -> None:
    """`state`, read from checkpoint.resume=`path`, must be a training checkpoint as Trainer.save writes it."""
    if not isinstance(state, Mapping):
        raise ValueError(
            f"cannot resume from {path}: it holds a {type(state).__name__}, not a training checkpoint (a dict with "
            f"{', '.join(RESUME_KEYS)}, as the trainer writes to ckpts/checkpoint.pt)"
        )
    missing = [key for key in RESUME_KEYS if key not in state]
    if not missing:
        return
    tensors = [key for key, value in state.items() if hasattr(value, "shape")]
    if tensors and len(tensors) == len(state):
        raise ValueError(
            f"cannot resume from {path}: it is a plain model state dict ({len(tensors)} tensors, e.g. {tensors[0]!r}), "
            f"not a training checkpoint (model, optimizer, scaler, epoch, step and RNG state, as the trainer writes "
            f"to ckpts/checkpoint.pt); to start training from these weights, pass model.init_weights={path} and "
            "checkpoint.resume=null"
        )
    raise ValueError(
        f"cannot resume from {path}: a training checkpoint holds {', '.join(RESUME_KEYS)}, and it lacks "
        f"{', '.join(missing)}; pass a ckpts/checkpoint.pt the trainer wrote (or model.init_weights={path} to start "
        "from its weights)"
    )
