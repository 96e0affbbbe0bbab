"""Ending a run cleanly on SIGINT (Ctrl-C) and SIGTERM (``timeout``, batch schedulers).

The first signal raises :class:`RunInterrupted` (a ``KeyboardInterrupt``) in the main thread:
the case in flight is dropped, and the run writes its report from the finished cases, records
``interrupted`` and the signal in ``meta.json`` and prints the command that resumes it. A second
signal stops the process at once: a watcher thread reads the signal numbers from the
interpreter's wakeup pipe, so this works even while the main thread is stuck inside a C call
(where no Python-level handler can run), and it kills the run's worker processes first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM)

_requested: list[int] = []  # the first signal of the active `graceful` block, if one came


def requested() -> int | None:
    """The signal that asked the run to stop, if one did (inside :func:`graceful`)."""
    return _requested[0] if _requested else None


def raise_if_requested() -> None:
    """Raise :class:`RunInterrupted` if a signal came, e.g. one that a solver's own ``except``
    swallowed (f2py turns a KeyboardInterrupt in its callback into a SystemError): the case
    is then dropped like any case in flight, never written as an error row."""
    if _requested:
        raise RunInterrupted(_requested[0])


class RunInterrupted(KeyboardInterrupt):
    """The run was asked to stop by ``signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class Interrupts:
    """What the handlers saw: the first signal (None until one arrives). Once the cases are
    done, ``raising = False`` makes a first signal only recorded, so that the run's last
    writes (meta.json, the report) are not cut short."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.raising = True

    @property
    def name(self) -> str | None:
        return signal.Signals(self.first).name if self.first else None

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by it."""
        return 128 + (self.first or signal.SIGINT)


@contextlib.contextmanager
def graceful(on_second: Callable[[], None] = lambda: None) -> Iterator[Interrupts]:
    """Inside ``with``, SIGINT and SIGTERM raise :class:`RunInterrupted` once; the second of
    them calls ``on_second`` (kill the workers) and ends the process with 128 + its number."""
    state = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield state  # signals are the main thread's; nothing to install
        return
    raised = False

    def handler(signum: int, frame: object) -> None:
        nonlocal raised
        if state.first is None:
            state.first = signum
            _requested.append(signum)
        if not raised and state.raising:  # a second signal is the watcher's: it ends it all
            raised = True
            raise RunInterrupted(signum)

    # The interpreter's C-level handler writes each signal's number to the wakeup fd as it
    # arrives, whatever the main thread is doing; the watcher counts them.
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch() -> None:
        count = 0
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum not in HANDLED:
                    continue
                count += 1
                if state.first is None:
                    state.first = signum
                    _requested.append(signum)
                if count >= 2:
                    with contextlib.suppress(Exception):
                        on_second()
                    name = signal.Signals(signum).name
                    os.write(2, f"\n{name} again: stopping at once\n".encode())
                    os._exit(128 + signum)

    old = {s: signal.getsignal(s) for s in HANDLED}
    for s in HANDLED:
        signal.signal(s, handler)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="odebench-signals", daemon=True)
    watcher.start()
    _requested.clear()
    try:
        yield state
    finally:
        _requested.clear()
        signal.set_wakeup_fd(old_fd)
        for s, h in old.items():
            signal.signal(s, h)
        os.close(write_fd)  # the watcher reads EOF and ends
        watcher.join(1)
        os.close(read_fd)
