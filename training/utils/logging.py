"""Training logs: device-side loss meters, the published launcher line format, TensorBoard scalars.

Line format (what the Ascend model-zoo launchers parse):
  Train Epoch: [e][i/N] | Batch Time: v (avg) | Data Time: v (avg) | Mem (GB): v | Loss/train_<name>: v (avg) | ...
`v` is the mean over the steps since the previous line (the step's own value when log_freq is 1) and
`(avg)` the mean over the epoch so far. Losses are summed on the device and read once per line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from training.utils.distributed import all_reduce_mean
from vggt.runtime import resident_memory_bytes

LOGGER = logging.getLogger("training")


def setup_logging(log_file: Path | None, is_main: bool) -> None:
    """Rank 0 logs INFO to stdout and `log_file`; other ranks log warnings only."""
    LOGGER.handlers.clear()
    LOGGER.disabled = False  # Hydra's logging setup disables loggers that already exist
    LOGGER.setLevel(logging.INFO if is_main else logging.WARNING)
    LOGGER.propagate = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None and is_main:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)


class DeviceMeters:
    """Running sums of scalar tensors kept on the device; `read` costs one host transfer."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.window: torch.Tensor | None = None
        self.epoch: torch.Tensor | None = None
        self.window_steps = 0
        self.epoch_steps = 0

    def update(self, values: Mapping[str, torch.Tensor]) -> None:
        if not self.names:
            self.names = list(values)
        stacked = torch.stack([values[name].detach().float() for name in self.names])
        self.window = stacked if self.window is None else self.window + stacked
        self.epoch = stacked.clone() if self.epoch is None else self.epoch + stacked
        self.window_steps += 1
        self.epoch_steps += 1

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """(means since the last read, means since the epoch began), averaged over DDP ranks; restarts the window.

        Every rank must call it at the same step (it all-reduces).
        """
        if self.window is None:
            return {}, {}
        both = torch.stack((self.window / self.window_steps, self.epoch / self.epoch_steps))
        both = all_reduce_mean(both).cpu().tolist()
        self.window, self.window_steps = None, 0
        return dict(zip(self.names, both[0])), dict(zip(self.names, both[1]))


class HostMeter:
    """A running value measured on the host (seconds): window and epoch means."""

    def __init__(self) -> None:
        self.window_total = self.epoch_total = 0.0
        self.window_count = self.epoch_count = 0

    def add(self, value: float, count: int = 1) -> None:
        self.window_total += value
        self.epoch_total += value
        self.window_count += count
        self.epoch_count += count

    def read(self) -> tuple[float, float]:
        window = self.window_total / max(self.window_count, 1)
        epoch = self.epoch_total / max(self.epoch_count, 1)
        self.window_total, self.window_count = 0.0, 0
        return window, epoch


def format_line(
    phase: str,
    epoch: int,
    step: int,
    num_steps: int,
    batch_time: tuple[float, float],
    data_time: tuple[float, float],
    mem_gb: float,
    losses: tuple[Mapping[str, float], Mapping[str, float]],
    extras: Mapping[str, float] | None = None,
) -> str:
    """One progress line in the published launcher format."""
    parts = [
        f"{phase} Epoch: [{epoch}][{step}/{num_steps}]",
        f"Batch Time: {batch_time[0]:.4f} ({batch_time[1]:.4f})",
        f"Data Time: {data_time[0]:.4f} ({data_time[1]:.4f})",
        f"Mem (GB): {mem_gb:.2f}",
    ]
    window, epoch_means = losses
    prefix = phase.lower()
    parts += [f"Loss/{prefix}_{name}: {window[name]:.4f} ({epoch_means[name]:.4f})" for name in window]
    parts += [f"{name}: {value:.4f}" for name, value in (extras or {}).items()]
    return " | ".join(parts)


def process_memory_gb() -> float:
    """Resident memory of this process in GB (0 where the OS does not report it), for CPU runs."""
    rss = resident_memory_bytes()
    return 0.0 if rss is None else rss / 1e9


class TensorBoard:
    """Scalars to TensorBoard from rank 0; a no-op elsewhere or when tensorboard is not installed."""

    def __init__(self, log_dir: Path | None):
        self.writer = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            LOGGER.warning("tensorboard is not installed: no TensorBoard scalars (pip install tensorboard)")
            return
        self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
