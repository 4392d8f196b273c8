"""Phase times of every training step, for bench_vs_upstream.py: imported at start-up by each Python process with
this folder on PYTHONPATH, it does anything only where VGGT_PHASE_TIMES_DIR is set.

The hooks see both trainers alike, without editing either:
- forward: a module of class VGGT, from its forward pre-hook to its forward hook (global module hooks);
- backward: `torch.autograd.backward` (which `Tensor.backward` calls);
- optimizer: `Optimizer.step` (global step hooks), which also closes the step;
- the gaps between them: loss (forward -> backward), clip (backward -> optimizer: unscale, clipping) and data
  (optimizer -> next forward: the next batch, its move to the device, logging).
Each boundary synchronises the tensors' device first (vggt.runtime.synchronize; the patched upstream tree carries
vggt/runtime too). Each process appends one JSON line {phase: seconds} per optimizer step to DIR/phases-<pid>.jsonl
as the step ends, so a run stopped early keeps its steps.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

PHASE_TIMES_ENV = "VGGT_PHASE_TIMES_DIR"
GAP_AFTER = {"forward": "loss", "backward": "clip", "optimizer": "data"}  # what runs between a phase and the next


class PhaseClock:
    """Accumulates each step's phases and the gaps between them; a step ends with an optimizer step."""

    def __init__(self, synchronize, now=time.perf_counter, on_step=lambda step: None):
        self.synchronize, self.now, self.on_step = synchronize, now, on_step
        self.steps: list[dict[str, float]] = []
        self.current: dict[str, float] = {}
        self.last_phase: str | None = None
        self.last_end = 0.0
        self.started: dict[str, float] = {}

    def begin(self, phase: str, device) -> None:
        self.synchronize(device)
        start = self.now()
        if self.last_phase is not None:
            gap = GAP_AFTER[self.last_phase]
            self.current[gap] = self.current.get(gap, 0.0) + start - self.last_end
        self.started[phase] = start

    def end(self, phase: str, device) -> None:
        self.synchronize(device)
        self.last_end = self.now()
        self.current[phase] = self.current.get(phase, 0.0) + self.last_end - self.started.pop(phase)
        self.last_phase = phase
        if phase == "optimizer":
            self.steps.append(self.current)
            self.on_step(self.current)
            self.current = {}


def _first_device(values):
    """The device of the first tensor among `values` (nested in lists, tuples and dicts), else None (the CPU)."""
    import torch

    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device
        if isinstance(value, (list, tuple)):
            found = _first_device(value)
        elif isinstance(value, dict):
            found = _first_device(value.values())
        else:
            continue
        if found is not None:
            return found
    return None


def install(out_dir: Path) -> PhaseClock:
    """Hook the model's forward, backward and the optimizers' steps into one PhaseClock written at exit."""
    import torch
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    from vggt.runtime import synchronize

    def sync(device) -> None:
        if device is not None:
            synchronize(device)

    out_dir.mkdir(parents=True, exist_ok=True)
    record = out_dir / f"phases-{os.getpid()}.jsonl"

    def append(step: dict[str, float]) -> None:
        with record.open("a") as lines:
            lines.write(json.dumps(step) + "\n")

    clock = PhaseClock(sync, on_step=append)

    def forward_pre(module, args):
        if type(module).__name__ == "VGGT":
            clock.begin("forward", _first_device(args))

    def forward_post(module, args, output):
        if type(module).__name__ == "VGGT":
            clock.end("forward", _first_device(args))

    register_module_forward_pre_hook(forward_pre)
    register_module_forward_hook(forward_post)

    def timed_backward(backward):
        def run(tensors, *args, **kwargs):
            device = _first_device([tensors])
            clock.begin("backward", device)
            try:
                return backward(tensors, *args, **kwargs)
            finally:
                clock.end("backward", device)

        return run

    torch.autograd.backward = timed_backward(torch.autograd.backward)

    def optimizer_device(optimizer):
        return _first_device([group["params"] for group in optimizer.param_groups])

    register_optimizer_step_pre_hook(lambda opt, args, kwargs: clock.begin("optimizer", optimizer_device(opt)))
    register_optimizer_step_post_hook(lambda opt, args, kwargs: clock.end("optimizer", optimizer_device(opt)))

    return clock


if os.environ.get(PHASE_TIMES_ENV):
    install(Path(os.environ[PHASE_TIMES_ENV]))
