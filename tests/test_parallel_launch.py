"""vggt.parallel.launch: a spawned rank's bad-input error reaches the caller whole, and no rank is left waiting."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from vggt.memory_plan import MemoryPlanError
from vggt.parallel.launch import launch

MESSAGE = "memory estimate for 9 frames: 3 GiB\nthis does not fit: 3 GiB > 1 GiB free on cpu"


def _helper_rank_runs_out_of_memory() -> None:
    if dist.get_rank() == 1:
        raise MemoryPlanError(MESSAGE)
    dist.barrier()  # rank 0 waits for a peer that is gone: the launcher must stop it


def _helper_rank_runs_out_of_disk() -> None:
    if dist.get_rank() == 1:
        raise OSError(28, "No space left on device")
    dist.barrier()


def _helper_rank_is_killed() -> None:
    if dist.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer ends a process: no exception, no error file
    dist.barrier()


def _rank_zero_fails_unreadably() -> None:
    if dist.get_rank() == 0:
        raise RuntimeError("kernel failure")
    dist.barrier()


@pytest.mark.slow
def test_multi_line_error_of_a_helper_rank_is_reported_whole() -> None:
    with pytest.raises(ValueError) as caught:
        launch(2, "cpu", _helper_rank_runs_out_of_memory)
    assert str(caught.value) == f"process 1 of 2: {MESSAGE}"


@pytest.mark.slow
def test_other_errors_keep_their_traceback() -> None:
    # the first rank reported may be the peer whose barrier lost its connection, so the message is not checked
    with pytest.raises(mp.ProcessRaisedException):
        launch(2, "cpu", _rank_zero_fails_unreadably)


@pytest.mark.slow
def test_an_os_error_of_a_helper_rank_is_reported_as_a_message() -> None:
    with pytest.raises(ValueError, match=r"^process 1 of 2: \[Errno 28\] No space left on device$"):
        launch(2, "cpu", _helper_rank_runs_out_of_disk)


@pytest.mark.slow
def test_a_killed_helper_rank_ends_the_job_naming_its_signal() -> None:
    begin = time.monotonic()
    with pytest.raises(mp.ProcessExitedException) as caught:
        launch(2, "cpu", _helper_rank_is_killed)
    assert caught.value.error_index == 1 and caught.value.signal_name == "SIGKILL"
    assert time.monotonic() - begin < 120  # rank 0's barrier is not left to gloo's 30-minute timeout
