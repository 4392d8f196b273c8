"""Chunk copies between an accelerator and host memory for offload: pinned staging buffers and a copy stream.

Offloaded tensors live in pageable host memory (pinning a whole scene's buffers would cost up to twice their size in
the caching host allocator). What crosses the bus goes through a small ring of pinned staging buffers on a side
stream, so a chunk's DMA overlaps the next chunk's compute:

- device -> host: the copy stream waits for the compute stream, copies the chunk into a free staging slot and
  records an event; the slot is unloaded into the pageable destination only when it is needed again or on `flush`;
- host -> device: the chunk is packed into a staging slot, copied on the copy stream into a tensor made on the
  compute stream, which waits for it.

On the CPU there is nothing to stage: `to_host` and `to_device` are plain copies (the same calls, no pinning, no
streams; `pin_memory` raises on a CPU-only build).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch

from vggt.runtime.device import accelerator_module

STAGING_SLOTS = 2  # one slot in flight while the other is filled: enough for copy and compute to overlap


@dataclass
class _Slot:
    buffer: torch.Tensor | None = None  # pinned bytes, viewed as each chunk's dtype and shape
    event: object | None = None  # recorded after the slot's last copy on the copy stream
    source: torch.Tensor | None = None  # a device chunk being read: held so the allocator cannot hand it out yet
    destination: torch.Tensor | None = None  # a device -> host copy waiting to be unloaded here


class HostCopier:
    """Moves chunks between `device` and pageable host memory through pinned staging slots on a copy stream.

    `to_host(source, destination)` may finish later: read destinations only after `flush()`.
    """

    def __init__(self, device: torch.device, slots: int = STAGING_SLOTS, backend: ModuleType | None = None):
        self.device = device
        self.backend = backend if backend is not None else accelerator_module(device)
        self._slots = [_Slot() for _ in range(slots)]
        self._next = 0
        self._copy_stream = None if self.backend is None else self.backend.Stream(device=device)

    @property
    def staging(self) -> bool:
        """Whether copies go through pinned slots and a copy stream (an accelerator), or are plain (the CPU)."""
        return self.backend is not None

    def to_host(self, source: torch.Tensor, destination: torch.Tensor) -> None:
        """destination (host, any layout) = source (on the device, same shape and dtype), finished by `flush()`."""
        if source.shape != destination.shape or source.dtype != destination.dtype:
            raise ValueError(
                f"to_host copies like for like: source {tuple(source.shape)} {source.dtype}, "
                f"destination {tuple(destination.shape)} {destination.dtype}"
            )
        if not self.staging:
            destination.copy_(source)
            return
        slot, staged = self._take(source)
        compute = self.backend.current_stream(self.device)
        self._copy_stream.wait_stream(compute)
        with self.backend.stream(self._copy_stream):
            staged.copy_(source, non_blocking=True)
        slot.event = self._copy_stream.record_event()
        slot.source, slot.destination = source, destination

    def to_device(self, source: torch.Tensor) -> torch.Tensor:
        """source (host, any layout) -> a contiguous copy on the device, ordered before later work on the compute
        stream."""
        if not self.staging:
            return source.to(self.device)
        slot, staged = self._take(source)
        staged.copy_(source)
        compute = self.backend.current_stream(self.device)
        # made on the compute stream, which waits for the copy before any use: freeing it later needs no care
        result = torch.empty(source.shape, dtype=source.dtype, device=self.device)
        self._copy_stream.wait_stream(compute)  # `result`'s memory may have been another tensor's until now
        with self.backend.stream(self._copy_stream):
            result.copy_(staged, non_blocking=True)
        slot.event = self._copy_stream.record_event()
        compute.wait_event(slot.event)
        return result

    def flush(self) -> None:
        """Finish every pending device -> host copy (their destinations are complete afterwards)."""
        for slot in self._slots:
            self._unload(slot)

    def _take(self, chunk: torch.Tensor) -> tuple[_Slot, torch.Tensor]:
        """The next slot of the ring, its earlier copy finished and unloaded, viewed as `chunk`'s dtype and shape."""
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        self._unload(slot)
        nbytes = chunk.numel() * chunk.element_size()
        if slot.buffer is None or slot.buffer.numel() < nbytes:
            slot.buffer = self._pinned(nbytes)
        return slot, slot.buffer[:nbytes].view(chunk.dtype).view(chunk.shape)

    @staticmethod
    def _pinned(nbytes: int) -> torch.Tensor:
        """Page-locked host bytes; no device argument: torch_npu pins for the NPU this way (as its GradScaler does)."""
        return torch.empty(nbytes, dtype=torch.uint8).pin_memory()

    @staticmethod
    def _unload(slot: _Slot) -> None:
        """Wait for the slot's last copy; hand a device -> host chunk on to its pageable destination."""
        if slot.event is not None:
            slot.event.synchronize()
            slot.event = None
        slot.source = None
        if slot.destination is not None:
            nbytes = slot.destination.numel() * slot.destination.element_size()
            staged = slot.buffer[:nbytes].view(slot.destination.dtype).view(slot.destination.shape)
            slot.destination.copy_(staged)
            slot.destination = None
