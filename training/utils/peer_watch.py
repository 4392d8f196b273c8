"""Fail fast across ranks and nodes: no rank waits for a collective timeout when another one has failed.

A failing rank posts its error on the rendezvous store (torchrun's TCPStore at MASTER_ADDR:MASTER_PORT). A
daemon thread in every rank polls the store each second: it ends its process (exit status 1, the failure
named on stderr and in torchrun's per-rank error file) when a failure is posted, when a peer's heartbeat
stops for `peer_timeout_s` (a rank killed outright, a node gone) or when the store is unreachable (node 0 gone).
Exiting from the thread works even while the main thread is blocked in a collective.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import threading
import time

import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import get_error_handler

POLL_SECONDS = 1.0
HEARTBEAT_CHECK_POLLS = 10  # peers' heartbeats are read every 10 polls: O(world size) store reads per 10 s
_PREFIX = "vggt/peer_watch/"
_FAILED = "failed"
_FAILURES = "failures"  # counted with add(): PrefixStore has no check() before torch 2.2, add() exists everywhere
_STORE_TIMEOUT = datetime.timedelta(seconds=30)


def watch_store(client: dist.Store) -> dist.PrefixStore:
    """The peer watch's keys on the job's rendezvous store `client`."""
    return dist.PrefixStore(_PREFIX, client)


def post_failure(store: dist.Store, message: str) -> str:
    """Post `message` on the watch store as the job's failure unless one came first; returns the one that stands."""
    posted = store.compare_set(_FAILED, "", message).decode()
    store.add(_FAILURES, 1)
    return posted


def rank_label(rank: int) -> str:
    """'rank R (node N, local rank L, host H)' from torchrun's environment."""
    node = os.environ.get("GROUP_RANK", "0")
    local = os.environ.get("LOCAL_RANK", "0")
    return f"rank {rank} (node {node}, local rank {local}, host {socket.gethostname()})"


class PeerWatch:
    """One per process of a multi-process job; `start` after the process group exists, `stop` before it goes."""

    def __init__(self, rank: int, world_size: int, peer_timeout_s: float):
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        self.address = f"{host}:{port}"
        client = dist.TCPStore(host, port, is_master=False, timeout=_STORE_TIMEOUT)
        self.store = watch_store(client)
        self.rank = rank
        self.world_size = world_size
        self.peer_timeout_s = peer_timeout_s
        self.label = rank_label(rank)
        self._lock = threading.Lock()  # the store client is shared by the watch thread and `report`
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="vggt-peer-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def report(self, error: BaseException) -> None:
        """Post this rank's failure (the first one posted wins); never raises. When a peer's failure was posted
        first, this rank ends as the watch would, naming that failure as the cause."""
        message = f"{self.label} failed: {type(error).__name__}: {error}"
        try:
            with self._lock:
                posted = post_failure(self.store, message)
        except Exception:  # the store may be gone already; this rank's own exit still ends the job
            return
        if posted != message:  # a peer failed first and this error follows from it (e.g. its closed connection)
            self._abort(posted)

    def stop(self) -> None:
        """This rank ends normally: peers stop expecting its heartbeat."""
        self._stopping.set()
        try:
            with self._lock:
                self.store.add(f"done/{self.rank}", 1)
        except Exception:
            pass
        self._thread.join(timeout=2 * POLL_SECONDS)

    def _watch(self) -> None:
        last_seen = {peer: (-1, time.monotonic()) for peer in range(self.world_size) if peer != self.rank}
        polls = 0
        while not self._stopping.wait(POLL_SECONDS):
            polls += 1
            silent: list[int] = []
            try:
                with self._lock:
                    self.store.add(f"beat/{self.rank}", 1)
                    failure = self.store.get(_FAILED).decode() if self.store.add(_FAILURES, 0) else None
                    if failure is None and polls % HEARTBEAT_CHECK_POLLS == 0:
                        silent = self._silent_peers(last_seen)
            except Exception as err:
                if not self._stopping.is_set():
                    self._abort(f"the rendezvous store {self.address} is unreachable ({err}); node 0 has ended")
                return
            if failure is not None:
                self._abort(failure)
            if polls % HEARTBEAT_CHECK_POLLS == 0 and silent:
                self._abort(
                    f"rank {silent[0]} sent no heartbeat for {self.peer_timeout_s:.0f} s (killed, or its node is gone)"
                )

    def _silent_peers(self, last_seen: dict[int, tuple[int, float]]) -> list[int]:
        """Peers whose heartbeat has not moved for peer_timeout_s and that did not end normally (store held)."""
        now = time.monotonic()
        silent = []
        for peer in last_seen:
            count = self.store.add(f"beat/{peer}", 0)
            if count != last_seen[peer][0]:
                last_seen[peer] = (count, now)
            elif now - last_seen[peer][1] > self.peer_timeout_s and not self.store.add(f"done/{peer}", 0):
                silent.append(peer)
        return silent

    def _abort(self, reason: str) -> None:
        message = f"{self.label} stops because {reason}"
        print(message, file=sys.stderr, flush=True)
        try:  # raised and caught so that torchrun's per-rank error file (if set) gets a traceback with the reason
            raise RuntimeError(message)
        except RuntimeError as error:
            get_error_handler().record_exception(error)
        os._exit(1)
