"""A worker process that runs cases for the run, so that a case cannot take the run down.

A case in a worker can segfault, call ``os._exit``, hang inside a C call or exhaust its memory
limit: the run's process sees the worker die or go quiet, writes the case's row (``crashed``
with the signal or exit code, ``timeout``, ``out_of_memory``) and starts a new worker for the
next case. The worker is long-lived and warm: it keeps its problems and reference gradients
between cases, and it runs a case whole (the accuracy solve and every timed repeat), so timing
inside it measures what timing in the run's process measures; only the hand-over of a case
and its row crosses the process boundary (``tests/bench/test_bench_harness.py`` measures it).

Workers start from a fork server that has imported torch and the harness once
(``multiprocessing``'s ``forkserver`` context), so a new worker after a crash costs a fork,
not a fresh interpreter. The parent keeps the time budget: it waits for the row on the pipe
and the worker's death at once, and kills the worker (SIGKILL) at the budget. A worker ignores
SIGINT and SIGTERM (a signal to the whole process group is the run's to handle) and ends
itself when the run's process is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from harness import plugins, registry
from harness.measure.nfe import budget_message
from harness.plugins import Discovery
from harness.suite import Case, Suite
from solvers.base import Status

# What the fork server imports once, before it forks workers.
_PRELOAD = ["harness.worker_main"]
_START_TIMEOUT_S = 300.0  # a worker that cannot load its plugins in this long is broken


MIN_MEMORY = 512 * 2**20  # a worker's limit below this cannot even import torch's problems


class WorkerStartError(RuntimeError):
    """A worker could not start (its plugins failed to load, or it died at once): the run stops,
    since every later isolated case would fail the same way."""


class Msg(enum.StrEnum):
    """What a worker sends the run: ``(Msg, payload)``."""

    READY = "ready"  # set up; payload: the worker's registry snapshot
    SETUP_FAILED = "setup_failed"  # payload: the error's message
    ROW = "row"  # payload: a case's result row
    PROGRESS = "progress"  # payload: how far the case has got, e.g. "iteration 40/300"


# The pids of the live workers of this process, for a second signal to kill at once.
LIVE: set[int] = set()


def kill_all() -> None:
    """SIGKILL every live worker of this process (a second signal: stop at once)."""
    for pid in list(LIVE):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def parse_size(text: str) -> int:
    """``'2G'``, ``'512M'``, ``'1.5g'``, ``'800000000'`` -> bytes (K, M, G, T are powers of
    1024)."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    s = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = 1
    if s and s[-1] in units:
        factor, s = units[s[-1]], s[:-1]
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a size; use e.g. 512M, 2G or bytes") from None
    if not value > 0 or value * factor > 2**62:
        raise ValueError(f"{text!r}: a size must be positive (e.g. 512M, 2G)")
    return int(value * factor)


def fmt_size(n: int) -> str:
    for unit, factor in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= factor:
            return f"{n / factor:.3g}{unit}"
    return f"{n} bytes"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def death_message(exitcode: int | None, memory_limit: int | None) -> str:
    """Why a case's worker died, from its ``exitcode`` (negative: killed by that signal, as
    multiprocessing reports it); the case's status is ``crashed``."""
    if exitcode is not None and exitcode < 0:
        name = _signal_name(-exitcode)
        why = f"the worker process running the case was killed by {name}"
        if -exitcode == signal.SIGKILL:
            why += " (by another process, or by the kernel's out-of-memory killer)"
        elif -exitcode == signal.SIGSEGV:
            why += " (a segmentation fault)"
        elif -exitcode == signal.SIGABRT and memory_limit:
            why += f" (an abort: an allocation past --case-memory {fmt_size(memory_limit)}?)"
        return why
    return f"the worker process running the case exited with code {exitcode}"


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker of a run is set up with."""

    # the registry to rebuild; None: the run's process's own at the worker's start
    discovery: Discovery | None = None
    threads: int | None = None
    memory_limit: int | None = None  # bytes of RLIMIT_DATA, None for no limit
    seed: int = 0
    run_pid: int = 0  # the run's process: a worker ends itself when it is gone


class Worker:
    """The run's side of one worker process at a time: ``run(case)`` returns the case's row,
    whatever happens to the process; a dead or killed worker is replaced on the next case."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)
        self._proc: Any = None
        self._conn: Connection | None = None
        self.registry: dict[str, Any] | None = None  # the last worker's registry snapshot
        self._shut = False  # shut(): no worker is started again

    def _start(self) -> None:
        from harness import worker_main

        if self._shut:
            raise WorkerStartError("the run is ending: no new worker process")
        parent, child = self._ctx.Pipe(duplex=True)
        discovery = self.config.discovery or plugins.current()
        config = dataclasses.replace(self.config, run_pid=os.getpid(), discovery=discovery)
        proc = self._ctx.Process(target=worker_main.serve, args=(child, config),
                                 name="odebench-worker", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        LIVE.add(proc.pid)
        ready = wait([parent, proc.sentinel], timeout=_START_TIMEOUT_S)
        kind, payload = None, None
        if parent in ready:
            with contextlib.suppress(EOFError, OSError):
                kind, payload = parent.recv()
        if kind == Msg.READY:
            self.registry = payload
            differs = registry.snapshot_difference(registry.snapshot(), payload)
            if not differs:
                return
            payload = f"its registry differs from the run's ({differs})"
        elif kind != Msg.SETUP_FAILED:
            proc.join(5)
            payload = (death_message(proc.exitcode, self.config.memory_limit) if ready else
                       f"it was not ready after {_START_TIMEOUT_S:g} s")
        self.kill()
        raise WorkerStartError(f"a worker process could not start: {payload}")

    def run(self, case: Case, suite: Suite, timeout: float | None,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """The row of ``case``, run in the worker (started if there is none); ``progress``
        gets what the case reports of its progress on the way."""
        from harness.runner import error_row, utc_now

        if self._proc is None or self._conn is None or not self._proc.is_alive():
            self.kill()
            self._start()
        conn, proc = self._conn, self._proc
        if conn is None or proc is None:  # pragma: no cover - _start raises instead
            raise WorkerStartError("a worker process could not start")
        started = utc_now()
        t0 = time.perf_counter()
        with contextlib.suppress(OSError):  # it died between cases: its sentinel says so
            conn.send((case, suite))
        budget = timeout if timeout and timeout > 0 else None
        while True:
            left = None if budget is None else max(0.0, budget - (time.perf_counter() - t0))
            ready = wait([conn, proc.sentinel], timeout=left)
            if conn not in ready:
                break
            kind, payload = None, None
            with contextlib.suppress(EOFError, OSError):
                kind, payload = conn.recv()
            if kind != Msg.PROGRESS:
                break
            if progress is not None:
                progress(payload)
        wall = time.perf_counter() - t0
        if conn in ready:
            if kind == Msg.ROW:
                if payload.get("status") == str(Status.OUT_OF_MEMORY):
                    self.kill()  # a fresh heap for the next case
                return payload
        if not ready:  # the budget ran out: the worker cannot answer for a later case
            self.kill()
            return error_row(case, Status.TIMEOUT, budget_message(budget, killed=True),
                             started, wall)
        proc.join(5)
        why = death_message(proc.exitcode, self.config.memory_limit)
        self.kill()
        return error_row(case, Status.CRASHED, why, started, wall)

    def kill(self) -> None:
        """End the worker now (SIGKILL) and forget it."""
        if self._proc is not None:
            LIVE.discard(self._proc.pid)
            with contextlib.suppress(Exception):
                self._proc.kill()
                self._proc.join(5)
            with contextlib.suppress(Exception):
                self._proc.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._proc = self._conn = None

    def shut(self) -> None:
        """Kill the worker now, and start none again (a run that is ending)."""
        self._shut = True
        self.kill()

    def close(self) -> None:
        """Ask the worker to exit, and kill it if it does not within a second."""
        if self._proc is not None and self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.send(None)
                self._proc.join(1)
        self.kill()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def die_with_run(run_pid: int) -> None:
    """End this worker as soon as the run's process is gone (killed with -9, say).

    A worker's parent is the fork server, not the run, and the fork server outlives the run
    while any worker holds its pipe; so the worker watches the run itself: a pidfd where Linux
    has one, else a poll every half second.
    """
    if run_pid <= 0:
        return

    def watch() -> None:
        try:
            fd = os.pidfd_open(run_pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            import select

            select.select([fd], [], [])  # readable when the process ends
            os._exit(1)
        while True:
            time.sleep(0.5)
            try:
                os.kill(run_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except OSError:
                pass

    threading.Thread(target=watch, name="odebench-run-watch", daemon=True).start()
