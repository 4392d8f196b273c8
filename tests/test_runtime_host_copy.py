"""HostCopier: offload's chunk copies, plain on a CPU, through a ring of pinned slots on a copy stream elsewhere.

The staged path runs here against a recording stand-in for torch.cuda / torch_npu.npu (streams and events that log
what is asked of them) with unpinned slots, since a CPU-only build cannot pin memory.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from vggt.runtime.host_copy import HostCopier


class RecordingEvent:
    def __init__(self, log: list):
        self.log = log
        self.synchronized = False

    def synchronize(self) -> None:
        self.synchronized = True
        self.log.append(("synchronize", self))


class RecordingStream:
    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def wait_stream(self, other: RecordingStream) -> None:
        self.log.append(("wait_stream", self.name, other.name))

    def wait_event(self, event: RecordingEvent) -> None:
        self.log.append(("wait_event", self.name, event))

    def record_event(self) -> RecordingEvent:
        event = RecordingEvent(self.log)
        self.log.append(("record_event", self.name, event))
        return event


class RecordingBackend:
    """The calls HostCopier makes of an accelerator module, recorded in `log`."""

    def __init__(self):
        self.log: list = []
        self.compute = RecordingStream("compute", self.log)

    def Stream(self, device=None):  # noqa: N802 - the device modules' name
        return RecordingStream("copy", self.log)

    def current_stream(self, device=None) -> RecordingStream:
        return self.compute

    @contextlib.contextmanager
    def stream(self, stream: RecordingStream):
        self.log.append(("enter", stream.name))
        yield
        self.log.append(("exit", stream.name))


class UnpinnedCopier(HostCopier):
    """The staged path with pageable slots; counts the slot buffers it makes."""

    allocations = 0

    def _pinned(self, nbytes: int) -> torch.Tensor:
        type(self).allocations += 1
        return torch.empty(nbytes, dtype=torch.uint8)


@pytest.fixture
def staged() -> tuple[UnpinnedCopier, RecordingBackend]:
    backend = RecordingBackend()
    UnpinnedCopier.allocations = 0
    return UnpinnedCopier(torch.device("cpu"), backend=backend), backend


def test_cpu_copies_are_plain_and_immediate() -> None:
    copier = HostCopier(torch.device("cpu"))
    assert not copier.staging
    source = torch.randn(2, 3, 4)
    destination = torch.zeros(4, 3, 2).permute(2, 1, 0)  # a strided view, as kept[..., :C] is
    copier.to_host(source, destination)
    assert torch.equal(destination, source)
    assert torch.equal(copier.to_device(source[:, 1:]), source[:, 1:])


def test_device_to_host_chunks_land_in_place_after_flush(staged) -> None:
    copier, backend = staged
    kept = torch.zeros(1, 5, 6, 8, dtype=torch.bfloat16)
    tokens = torch.randn(1, 5, 6, 4)
    for start in range(5):  # one frame a chunk into the second half of the channels, as the global block's copy
        copier.to_host(tokens[:, start : start + 1].to(torch.bfloat16), kept[:, start : start + 1, :, 4:])
    # two slots: the first three chunks were unloaded to make room, the last two wait for flush
    assert torch.equal(kept[:, :3, :, 4:], tokens[:, :3].to(torch.bfloat16))
    assert not kept[:, 3:].any()
    copier.flush()
    assert torch.equal(kept[..., 4:], tokens.to(torch.bfloat16))
    assert not kept[..., :4].any()
    events = [entry[2] for entry in backend.log if entry[0] == "record_event"]
    assert len(events) == 5 and all(event.synchronized for event in events)
    assert UnpinnedCopier.allocations == 2  # one buffer a slot, reused


def test_each_copy_to_host_waits_for_the_compute_stream_and_runs_on_the_copy_stream(staged) -> None:
    copier, backend = staged
    copier.to_host(torch.ones(3), torch.zeros(3))
    assert backend.log[:3] == [("wait_stream", "copy", "compute"), ("enter", "copy"), ("exit", "copy")]
    assert backend.log[3][:2] == ("record_event", "copy")


def test_a_slot_is_reused_only_after_its_copy_finished(staged) -> None:
    copier, backend = staged
    for _ in range(4):
        copier.to_host(torch.ones(2), torch.zeros(2))
    recorded = [entry[2] for entry in backend.log if entry[0] == "record_event"]
    synchronized = [entry[1] for entry in backend.log if entry[0] == "synchronize"]
    assert synchronized == recorded[:2]  # chunks 3 and 4 took the slots of chunks 1 and 2, after waiting for them


def test_host_to_device_chunks_arrive_whole_and_the_compute_stream_waits_for_them(staged) -> None:
    copier, backend = staged
    kept = torch.randn(1, 4, 6, 8).to(torch.bfloat16)
    arrived = [copier.to_device(kept[:, s : s + 2, 1:]) for s in (0, 2)]
    assert torch.equal(torch.cat(arrived, dim=1), kept[:, :, 1:])
    assert all(chunk.is_contiguous() for chunk in arrived)
    waited = [entry[2] for entry in backend.log if entry[0] == "wait_event"]
    recorded = [entry[2] for entry in backend.log if entry[0] == "record_event"]
    assert waited == recorded and len(waited) == 2


def test_a_larger_chunk_grows_its_slot(staged) -> None:
    copier, _ = staged
    for size in (2, 2, 8, 8, 3):
        source = torch.arange(size, dtype=torch.float32)
        destination = torch.zeros(size)
        copier.to_host(source, destination)
        copier.flush()
        assert torch.equal(destination, source)
    assert UnpinnedCopier.allocations == 4  # two small slots, both grown once for 8 elements, then reused


def test_mismatched_chunks_are_refused(staged) -> None:
    copier, _ = staged
    with pytest.raises(ValueError, match="like for like"):
        copier.to_host(torch.ones(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="like for like"):
        copier.to_host(torch.ones(2), torch.zeros(2, dtype=torch.bfloat16))
