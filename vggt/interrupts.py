"""SIGINT, SIGTERM and SIGHUP as one exception, so that every signal that asks a run to stop cleans up like Ctrl-C.

Python turns only SIGINT into an exception (KeyboardInterrupt); SIGTERM (`kill`, `timeout`, job schedulers) and
SIGHUP (a closed terminal) end the process at once, skipping every `finally`, so `vggt predict` would leave its
staging directory behind. Inside `stop_signals_raise()` the first of these signals raises `Interrupted` in the main
thread; it is a KeyboardInterrupt, so everything that already cleans up after Ctrl-C does so for all three. An
error that leaves the block after a stop signal is reported as that Interrupted (code that called back into Python
may have swallowed it into an error of its own). Later signals are ignored until the block ends, so that a second
Ctrl-C cannot break off that clean-up half-way.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_active = threading.Event()  # set while a stop_signals_raise block holds the handlers (they are process-wide)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; `exit_status` is the shell's convention, 128 + the signal's number."""

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number
        self.signal_name = signal.Signals(signal_number).name
        self.exit_status = 128 + signal_number
        super().__init__(f"interrupted by {self.signal_name}")


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, the first of STOP_SIGNALS raises Interrupted; the earlier handlers come back after it.

    Nested blocks and blocks outside the main thread (where Python cannot install handlers) change nothing.
    """
    if _active.is_set() or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handle(signal_number: int, _frame: object) -> None:
        if received:  # already stopping: let the clean-up finish
            return
        received.append(signal_number)
        raise Interrupted(signal_number)

    previous = {number: signal.signal(number, handle) for number in STOP_SIGNALS}
    _active.set()
    try:
        yield
    except Exception as err:
        if received:  # raised inside a library that turned Interrupted into an error of its own (safetensors' loader)
            raise Interrupted(received[0]) from err
        raise
    finally:
        for number, handler in previous.items():  # None: a handler not set from Python, i.e. the default
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        _active.clear()


def reclaim_stop_signals() -> None:
    """Reinstall at the C level the handlers Python holds for STOP_SIGNALS. Call after importing a library that
    replaces them behind Python's back: pycolmap's glog installs a crash handler for SIGTERM that prints a stack
    trace and kills the process, skipping every clean-up. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number in STOP_SIGNALS:
        handler = signal.getsignal(number)
        if handler is not None:  # None: set outside Python, nothing of ours to restore
            signal.signal(number, handler)
