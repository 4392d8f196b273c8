"""The peer watch ends a rank's process when another rank posts a failure or stops beating (in subprocesses:
it ends its process with os._exit)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch.distributed as dist

from tests.helpers import free_port
from tests.training_helpers import ROOT
from training.utils.peer_watch import post_failure, watch_store

pytestmark = pytest.mark.slow

WATCHED_RANK = textwrap.dedent(
    """
    import sys, time
    from training.utils.peer_watch import PeerWatch
    PeerWatch(rank=0, world_size=2, peer_timeout_s=float(sys.argv[1])).start()
    print("watching", flush=True)
    time.sleep(120)
    """
)


def watched_rank(store_port: int, peer_timeout_s: float) -> subprocess.Popen:
    """Rank 0 of a 2-rank job whose rank 1 is this test; returns once its watch is running."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store_port), "GROUP_RANK": "0"}
    process = subprocess.Popen(
        [sys.executable, "-c", WATCHED_RANK, str(peer_timeout_s)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout.readline().strip() == "watching"
    return process


def test_a_posted_failure_ends_the_other_ranks_within_seconds_with_the_reason():
    port = free_port()
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)
    process = watched_rank(port, peer_timeout_s=600)
    start = time.monotonic()
    post_failure(watch_store(store), "rank 1 (node 1) failed: OSError: disk")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1 and time.monotonic() - start < 5
    assert "rank 0 (node 0, local rank 0" in err and "stops because rank 1 (node 1) failed: OSError: disk" in err


def test_a_peer_without_heartbeat_ends_the_job_after_the_peer_timeout():
    port = free_port()
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)  # noqa: F841 (held open)
    process = watched_rank(port, peer_timeout_s=2)  # rank 1 never beats: killed before its first heartbeat
    start = time.monotonic()  # from a running watch: the bound is on the watch, not on importing torch under load
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and time.monotonic() - start < 30
    assert "stops because rank 1 sent no heartbeat for 2 s" in err


def test_an_error_that_follows_a_peers_posted_failure_names_the_peers_failure():
    """Rank 0's collective fails because rank 1 died first: rank 0 reports rank 1's posted failure as the cause."""
    port = free_port()
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)
    post_failure(watch_store(store), "rank 1 (node 1) failed: OSError: disk")
    reporting_rank = textwrap.dedent(
        """
        from training.utils.peer_watch import PeerWatch
        PeerWatch(rank=0, world_size=2, peer_timeout_s=600).report(RuntimeError("Connection closed by peer"))
        print("reported as the first failure", flush=True)
        """
    )
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GROUP_RANK": "0"}
    done = subprocess.run(
        [sys.executable, "-c", reporting_rank], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "reported as the first failure" not in done.stdout
    assert "stops because rank 1 (node 1) failed: OSError: disk" in done.stderr
