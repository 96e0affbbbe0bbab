"""How a run's cases are executed: one interface, three executors.

- :class:`SerialExecutor` (``serial``, the default): one case at a time, in the run's process or
  in one worker process (:mod:`harness.worker`, as the run's isolation says). Nothing runs
  beside a case, so its timings are the only ones trusted for comparison.
- :class:`ProcessExecutor` (``process``, ``--jobs N``): N worker processes of
  :mod:`harness.worker` side by side, every case isolated. For accuracy and NFE sweeps: cases
  share the cores and the memory bandwidth, so their timings are not comparable.
- :class:`DaskExecutor` (``dask``): the cases as tasks on a ``dask.distributed`` cluster, an
  existing one (``--scheduler``) or a ``LocalCluster`` started for the run. Rows stream back with
  ``as_completed``.

Each executor's :meth:`~Executor.rows` yields ``(case, row)`` as cases end, in the run's process,
which alone writes ``results.jsonl`` (under the run's lock, as a serial run does), so a resumed
run of any executor skips exactly the cases that have rows.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harness import plugins, registry, signals
from harness.runner import CASE_PROGRESS, ProblemCache, error_row, ran_here, run_case, utc_now
from harness.suite import Case, Suite
from harness.worker import Worker, WorkerConfig, WorkerStartError
from solvers.base import Status


class ExecutorName(enum.StrEnum):
    SERIAL = "serial"
    PROCESS = "process"
    DASK = "dask"


DASK_INSTALL = "pip install 'odebench[dask]'"


class ExecutorError(RuntimeError):
    """The executor cannot run the cases (no cluster, workers without odebench, another
    registry on the workers): the run stops, keeping its rows, and can be resumed."""


def dask_missing() -> str | None:
    """Why ``--executor dask`` cannot run here (``None`` when it can)."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        return (f"--executor dask needs dask.distributed, which is not installed ({exc}); "
                f"install it with: {DASK_INSTALL}")
    return None


Started = Callable[[Case], None]  # told of each case as it starts (serial) or None
Detail = Callable[[str], None]  # a case's own progress ("iteration 40/300")


class Executor:
    """Runs cases and yields ``(case, row)`` as each ends. ``close`` stops what is still
    running (a run that is interrupted drops its cases in flight)."""

    name: ExecutorName
    started_hook = True  # whether rows() calls ``started`` before each case

    def rows(self, cases: Sequence[Case], suite: Suite, *, started: Started | None = None,
             detail: Detail | None = None) -> Iterator[tuple[Case, dict[str, Any]]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _budget(case: Case, suite: Suite) -> float | None:
    return suite.train_timeout if case.kind == "train" else suite.case_timeout


class SerialExecutor(Executor):
    """One case at a time: in this process, or in a worker when ``isolated(case)``."""

    name = ExecutorName.SERIAL

    def __init__(self, config: WorkerConfig, isolated: Callable[[Case], bool]) -> None:
        self.config = config
        self.isolated = isolated
        self.problems = ProblemCache()
        self.worker = Worker(config)

    def rows(self, cases, suite, *, started=None, detail=None):
        for case in cases:
            signals.raise_if_requested()
            if started is not None:
                started(case)
            if self.isolated(case):
                row = self.worker.run(case, suite, _budget(case, suite), progress=detail)
                ran_here(row, case, "worker process")  # a row the worker could not send
            else:
                CASE_PROGRESS[:] = [detail] if detail is not None else []
                row = run_case(case, self.problems, suite, seed=self.config.seed)
                row["worker"] = "main"
            yield case, row

    def close(self) -> None:
        self.worker.close()


class ProcessExecutor(Executor):
    """``jobs`` worker processes side by side, each fed the next case as it finishes one."""

    name = ExecutorName.PROCESS
    started_hook = False

    def __init__(self, config: WorkerConfig, jobs: int) -> None:
        self.jobs = jobs
        self.workers = [Worker(config) for _ in range(jobs)]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def rows(self, cases, suite, *, started=None, detail=None):
        todo: queue.SimpleQueue[Case] = queue.SimpleQueue()
        for case in cases:
            todo.put(case)
        done: queue.SimpleQueue[tuple[Case, Any]] = queue.SimpleQueue()

        def serve(worker: Worker) -> None:
            while not self._stop.is_set():
                try:
                    case = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    row = worker.run(case, suite, _budget(case, suite))
                except BaseException as exc:  # noqa: BLE001 - handed to the run's thread
                    done.put((case, exc))
                    return
                done.put((case, ran_here(row, case, "worker process")))

        self._threads = [threading.Thread(target=serve, args=(w,), daemon=True,
                                          name=f"odebench-process-{k}")
                         for k, w in enumerate(self.workers[:max(1, min(self.jobs, len(cases)))])]
        for t in self._threads:
            t.start()
        for _ in range(len(cases)):
            while True:
                signals.raise_if_requested()
                try:
                    case, row = done.get(timeout=0.2)
                    break
                except queue.Empty:
                    if not any(t.is_alive() for t in self._threads) and done.empty():
                        return  # pragma: no cover - every thread ended without its rows
            if isinstance(row, BaseException):
                raise row
            yield case, row

    def close(self) -> None:
        self._stop.set()
        for worker in self.workers:
            worker.shut()
        for t in self._threads:
            t.join(5)
        for worker in self.workers:  # one a thread started as close() began
            worker.shut()


# ------------------------------------------------------------------------------------ dask

# A Dask worker process's problem cache, one per run's registry (problems and reference
# gradients are built once per worker), and the lock that runs one task at a time in it: the
# registry, torch's thread count and the timings are the process's, whatever its --nthreads.
_PROBLEMS: dict[str, ProblemCache] = {}
_ONE_AT_A_TIME = threading.Lock()


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def worker_setup(discovery: plugins.Discovery) -> dict[str, Any]:
    """On a Dask worker: hold the run's registry (:func:`harness.plugins.rebuild`, a no-op
    when it holds it already) and return its snapshot, for the run to compare with its own."""
    with _ONE_AT_A_TIME:
        plugins.rebuild(discovery)
        return registry.snapshot()


@dataclass(frozen=True)
class ChunkSettings:
    """What a task needs beside its cases (sent with each, small)."""

    discovery: plugins.Discovery
    seed: int


def run_chunk(cases: list[Case], suite: Suite, settings: ChunkSettings) -> list[dict[str, Any]]:
    """A Dask task: run ``cases`` one after another in this worker process; their rows.

    The torch threads are the suite's ``threads`` (``--threads``) where it sets them, else what
    the worker has (1: the nanny sets ``OMP_NUM_THREADS=1``); each row records what it used."""
    where = _worker_address()
    rows = []
    with _ONE_AT_A_TIME:
        plugins.rebuild(settings.discovery)
        problems = _PROBLEMS.setdefault(settings.discovery.key, ProblemCache())
        for case in cases:
            row = run_case(case, problems, suite, seed=settings.seed)
            row["worker"] = where
            rows.append(row)
    return rows


def _quiet_dask_logs() -> None:
    for name in ("distributed", "distributed.nanny", "distributed.scheduler",
                 "distributed.worker", "distributed.core", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)


WORKER_WAIT_S = 120.0  # how long a run waits for a cluster's first worker


def chunk_size(n_cases: int, n_workers: int, chunk: int | None) -> int:
    """Cases per Dask task: ``chunk`` when given; else enough that a task's overhead (a few ms
    on a loaded scheduler) is small beside its cases, while every worker still gets several
    tasks to balance the load: ``ceil(n / (4 workers))``, at most 64."""
    if chunk:
        return chunk
    return max(1, min(64, math.ceil(n_cases / (4 * max(1, n_workers)))))


class DaskExecutor(Executor):
    """Cases as tasks on a Dask cluster; rows stream back as tasks end."""

    name = ExecutorName.DASK
    started_hook = False

    def __init__(self, config: WorkerConfig, *, scheduler: str | None, jobs: int | None,
                 chunk: int | None, run_id: str) -> None:
        missing = dask_missing()
        if missing:
            raise ExecutorError(missing)
        from distributed import Client, LocalCluster

        _quiet_dask_logs()
        self.chunk = chunk
        self.run_id = run_id
        self.cluster = None
        self.scheduler = scheduler
        try:
            if scheduler is None:
                self.cluster = LocalCluster(
                    n_workers=jobs or os.cpu_count() or 1, threads_per_worker=1,
                    processes=True, host="127.0.0.1", dashboard_address=":0",
                    silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
            elif os.path.isfile(scheduler):
                self.client = Client(scheduler_file=scheduler, timeout="10s")
            else:
                self.client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            self.close()
            where = scheduler or "a LocalCluster"
            other = ("; resume on a LocalCluster with --jobs N, or on another cluster with "
                     "--scheduler ADDRESS" if scheduler else "")
            raise ExecutorError(f"--executor dask: cannot reach {where}: "
                                f"{type(exc).__name__}: {exc}{other}") from None
        self.settings = ChunkSettings(config.discovery, config.seed)
        self._futures: list[Any] = []
        self._token = uuid.uuid4().hex[:8]  # keys of this invocation: never another run's
        try:
            self._check_workers()
        except BaseException:
            self.close()
            raise

    def _check_workers(self) -> None:
        """Every worker rebuilds the run's registry and must see exactly the run's."""
        try:
            self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except (TimeoutError, OSError) as exc:
            raise ExecutorError(f"--executor dask: no worker joined the scheduler at "
                                f"{self.scheduler or 'the LocalCluster'} within "
                                f"{WORKER_WAIT_S:g} s ({type(exc).__name__})") from None
        try:
            theirs = self.client.run(worker_setup, self.settings.discovery)
        except Exception as exc:
            raise ExecutorError(
                f"--executor dask: the workers cannot set up the run's registry "
                f"({type(exc).__name__}: {exc}); each worker needs odebench installed, the "
                f"same version as here") from None
        mine = registry.snapshot()
        for address, snap in sorted(theirs.items()):
            differs = registry.snapshot_difference(mine, snap)
            if differs:
                raise ExecutorError(f"--executor dask: worker {address} sees another registry "
                                    f"than this process ({differs}); install the same odebench "
                                    "and plugin packages on the workers")

    def rows(self, cases, suite, *, started=None, detail=None):
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        n_workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        size = chunk_size(len(cases), n_workers, self.chunk)
        chunk_of: dict[str, list[Case]] = {}

        def submit(chunk: list[Case]) -> Any:
            # a key per task and attempt: equal-looking cases are never deduplicated
            key = f"odebench-{self.run_id}-{self._token}-{len(self._futures)}-{chunk[0].case_id}"
            fut = self.client.submit(run_chunk, chunk, suite, self.settings, key=key,
                                     pure=False, retries=0)
            chunk_of[fut.key] = chunk
            self._futures.append(fut)
            return fut

        chunks = [list(cases[i:i + size]) for i in range(0, len(cases), size)]
        pending = as_completed([submit(c) for c in chunks], with_results=False)
        # A worker's death counts against every task that it held, the one that killed it and
        # the one queued behind it alike. So a case whose own task died is only a suspect: it
        # runs again alone, with nothing else in flight, and only a death there is its own.
        suspects: list[Case] = []
        alone = False
        while True:
            signals.raise_if_requested()
            try:
                fut = next(pending)
            except StopIteration:
                if not suspects:
                    return
                alone = True
                pending.add(submit([suspects.pop(0)]))
                continue
            chunk = chunk_of.pop(fut.key)
            try:
                rows = fut.result()
            except KilledWorker as exc:
                if len(chunk) > 1:  # which case killed its workers? one task each tells
                    for case in chunk:
                        pending.add(submit([case]))
                    continue
                if not alone:
                    suspects.append(chunk[0])
                    continue
                rows = [_killed_row(chunk[0], exc)]
            except Exception as exc:
                # run_chunk itself never raises for a case (a case's failure is its row): this
                # is the cluster (the scheduler lost, a task cancelled, a worker that cannot
                # load the run's plugins). No row: the run stops, and --resume runs them.
                raise ExecutorError(
                    f"--executor dask: a task of {len(chunk)} case(s) did not come back "
                    f"({type(exc).__name__}: {exc})") from None
            finally:
                fut.release()
            yield from zip(chunk, rows, strict=True)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.cancel(self._futures, force=True)
            with contextlib.suppress(Exception):
                client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=20)


def _killed_row(case: Case, exc: Any) -> dict[str, Any]:
    row = error_row(case, Status.CRASHED,
                    "every Dask worker that ran the case alone died (the scheduler gave up after "
                    f"distributed.scheduler.allowed-failures retries): KilledWorker: {exc}",
                    utc_now(), 0.0)
    last = getattr(getattr(exc, "last_worker", None), "address", None)
    if last:  # the machine that ran it last is not known beyond its address
        row["worker"] = str(last)
    return row


def make(name: ExecutorName, config: WorkerConfig, isolated: Callable[[Case], bool], *,
         jobs: int | None = None, scheduler: str | None = None, chunk: int | None = None,
         run_id: str = "run") -> Executor:
    if name is ExecutorName.PROCESS:
        return ProcessExecutor(config, jobs or os.cpu_count() or 1)
    if name is ExecutorName.DASK:
        return DaskExecutor(config, scheduler=scheduler, jobs=jobs, chunk=chunk, run_id=run_id)
    return SerialExecutor(config, isolated)


__all__ = ["DASK_INSTALL", "DaskExecutor", "Executor", "ExecutorError", "ExecutorName",
           "ProcessExecutor", "SerialExecutor", "WorkerStartError", "chunk_size", "make",
           "run_chunk", "worker_setup"]
