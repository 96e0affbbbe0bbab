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
SIGINT (Ctrl-C reaches the whole process group; the run decides) and dies with its parent
(``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import multiprocessing as mp
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from harness.suite import Case, Suite
from solvers.base import Status

# What the fork server imports once, before it forks workers.
_PRELOAD = ["harness.worker_main"]
_START_TIMEOUT_S = 300.0  # a worker that cannot load its plugins in this long is broken


class WorkerStartError(RuntimeError):
    """A worker could not start (its plugins failed to load, or it died at once)."""


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


def death_message(exitcode: int | None, memory_limit: int | None) -> tuple[Status, str]:
    """The status and message of a case whose worker died with ``exitcode`` (negative: killed
    by that signal, as multiprocessing reports it)."""
    if exitcode is not None and exitcode < 0:
        name = _signal_name(-exitcode)
        why = f"the worker process running the case was killed by {name}"
        if -exitcode == signal.SIGKILL:
            why += " (by another process, or by the kernel's out-of-memory killer)"
        elif -exitcode == signal.SIGSEGV:
            why += " (a segmentation fault)"
        elif -exitcode == signal.SIGABRT and memory_limit:
            why += f" (an abort: an allocation past --case-memory {fmt_size(memory_limit)}?)"
        return Status.CRASHED, why
    return Status.CRASHED, f"the worker process running the case exited with code {exitcode}"


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker of a run is set up with."""

    plugins: tuple[str, ...] = ()
    threads: int | None = None
    memory_limit: int | None = None  # bytes of RLIMIT_DATA, None for no limit
    seed: int = 0


class Worker:
    """The run's side of one worker process at a time: ``run(case)`` returns the case's row,
    whatever happens to the process; a dead or killed worker is replaced on the next case."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)
        self._proc: Any = None
        self._conn: Connection | None = None
        self.started = 0  # how many worker processes this run has started

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        from harness import worker_main

        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=worker_main.serve, args=(child, self.config),
                                 name="odebench-worker", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self.started += 1
        ready = wait([parent, proc.sentinel], timeout=_START_TIMEOUT_S)
        if parent in ready:
            try:
                kind, payload = parent.recv()
            except (EOFError, OSError):
                kind, payload = "died", None
            if kind == "ready":
                return
            self.kill()
            if kind == "setup_failed":
                raise WorkerStartError(f"a worker process could not start: {payload}")
        self.kill()
        _, why = death_message(proc.exitcode, self.config.memory_limit)
        raise WorkerStartError(f"a worker process did not start: {why}")

    def run(self, case: Case, suite: Suite, timeout: float | None) -> dict[str, Any]:
        """The row of ``case``, run in the worker (started if there is none)."""
        if self._proc is None or not self._proc.is_alive():
            self.kill()
            self._start()
        assert self._conn is not None
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        try:
            self._conn.send((case, suite))
        except (BrokenPipeError, OSError):
            pass  # it died between cases: its sentinel says so below
        budget = timeout if timeout and timeout > 0 else None
        ready = wait([self._conn, self._proc.sentinel], timeout=budget)
        wall = time.perf_counter() - t0
        if self._conn in ready:
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                kind, payload = "died", None
            if kind == "row":
                if payload.get("status") == str(Status.OUT_OF_MEMORY):
                    self.kill()  # a fresh heap for the next case
                return payload
        if not ready:  # the budget ran out
            self.kill()
            return _row(case, Status.TIMEOUT,
                        f"the case ran past its time budget of {budget:g} s; its worker "
                        "process was killed", started, wall)
        self._proc.join(5)
        status, why = death_message(self._proc.exitcode, self.config.memory_limit)
        self.kill()
        return _row(case, status, why, started, wall)

    def kill(self) -> None:
        """End the worker now (SIGKILL) and forget it."""
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.kill()
                self._proc.join(5)
            with contextlib.suppress(Exception):
                self._proc.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._proc = self._conn = None

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


def _row(case: Case, status: Status, message: str, started: str, wall: float) -> dict[str, Any]:
    from harness.runner import _error_row

    return _error_row(case, status, message, started, wall)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
