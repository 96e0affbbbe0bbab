"""A run from its plan to its last row: start one, resume one, execute its cases.

A run folder is created with its whole plan in ``meta.json``: every case id with its settings,
the suite, the plugins, the seed, and how cases are isolated. ``--resume`` replays exactly that
plan: it runs the planned cases that have no row yet, nothing else, so a run is the same set of
cases however often it was interrupted. The folder is locked while a process works on it.

The run's executor (:mod:`harness.executors`: serial, process or dask) runs the cases; this
module alone writes their rows. With the serial executor, cases run in the run's own process
or in a worker process (:mod:`harness.worker`): ``isolate = auto`` (the default) sends a case
there when its solver or problem is not a built-in one (a plugin, or a peer library) or its
solver's loop is native code that an exception cannot stop (``Solver.native_loop``);
``always`` sends every case, ``never`` none.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness import executors, plugins, registry
from harness.environment import capture
from harness.executors import ExecutorName
from harness.results import (
    SCHEMA_VERSION,
    ResultsWriter,
    RunFolderError,
    drop_torn_tail,
    load_meta,
    read_results,
    write_meta,
    write_records,
)
from harness.rundir import RunLock
from harness.runner import RECORDS_KEY, native_loop, utc_now
from harness.suite import Case, Plan, Suite
from harness.worker import WorkerConfig, WorkerStartError, fmt_size


class Isolation(enum.StrEnum):
    AUTO = "auto"  # plugins and peers in a worker, built-ins in the run's process
    ALWAYS = "always"
    NEVER = "never"


def is_builtin(kind: str, name: str) -> bool:
    reg = {"solver": registry.SOLVERS, "problem": registry.PROBLEMS, "task": registry.TASKS}[kind]
    return name in reg and reg.get(name).source.startswith("built-in")


def isolated(case: Case, isolation: Isolation) -> bool:
    """Whether ``case`` runs in a worker: with ``auto``, a plugin or peer solver or problem,
    or a solver whose loop is native code (``Solver.native_loop``)."""
    if isolation is Isolation.ALWAYS:
        return True
    if isolation is Isolation.NEVER:
        return False
    if case.kind == "train":  # a Table-1 baseline has no solver ("none")
        solver_ok = case.solver == "none" or is_builtin("solver", case.solver)
        return not (solver_ok and is_builtin("task", case.problem)) or native_loop(case.solver)
    if not (is_builtin("solver", case.solver) and is_builtin("problem", case.problem)):
        return True
    return native_loop(case.solver)


# ------------------------------------------------------------------------------------- plan

_CASE_FIELDS = tuple(f.name for f in dataclasses.fields(Case))
# What each stored field may hold (JSON types): a damaged meta.json is refused, not run.
_STR, _INT, _NUM, _NONE = (str,), (int,), (int, float), (type(None),)
_CASE_TYPES: dict[str, tuple[type, ...]] = {
    "problem": _STR, "solver": _STR, "device": _STR, "dtype": _STR, "grad_mode": _STR,
    "kind": _STR, "batch": _INT, "rtol": _NUM + _NONE, "atol": _NUM + _NONE,
    "n_steps": _INT + _NONE, "max_steps": _INT + _NONE,
}
# fields added since (a plan stored before them has none, and its cases the defaults)
_CASE_TYPES_LATER: dict[str, tuple[type, ...]] = {
    "iterations": _INT + _NONE, "epochs": _INT + _NONE, "model": _STR,
    "controller": _STR, "backend": _STR,
}


def _check_type(where: str, what: str, value: Any, allowed: tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, allowed):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        raise RunFolderError(f"{where}: {what} is {value!r}, not {names}: the file is damaged; "
                             "start a new run")


def plan_record(cases: list[Case]) -> list[dict[str, Any]]:
    """The plan as stored in meta.json: each case's id and settings."""
    return [{"case_id": c.case_id, **dataclasses.asdict(c)} for c in cases]


def plan_from_record(items: Any, where: str) -> list[Case]:
    """The cases of a stored plan; a record this version cannot read is refused."""
    if not isinstance(items, list) or not items:
        raise RunFolderError(f"{where}: the stored plan is missing or empty")
    cases = []
    for k, item in enumerate(items):
        if not isinstance(item, dict) or "case_id" not in item:
            raise RunFolderError(f"{where}: plan entry {k} is not a case record")
        unknown = sorted(set(item) - set(_CASE_FIELDS) - {"case_id"})
        if unknown:
            raise RunFolderError(
                f"{where}: plan entry {k} has fields this odebench does not know "
                f"({', '.join(unknown)}); resume it with the odebench that started it"
            )
        missing = [f for f in _CASE_TYPES if f not in item]
        if missing:
            raise RunFolderError(f"{where}: plan entry {k} lacks {', '.join(missing)}: the file "
                                 "is damaged; start a new run")
        for name, allowed in _CASE_TYPES.items():
            _check_type(where, f"plan entry {k}'s {name}", item[name], allowed)
        for name, allowed in _CASE_TYPES_LATER.items():
            if name in item:
                _check_type(where, f"plan entry {k}'s {name}", item[name], allowed)
        case = Case(**{key: v for key, v in item.items() if key != "case_id"})
        if case.case_id != item["case_id"]:
            raise RunFolderError(
                f"{where}: plan entry {k} has id {item['case_id']!r}, but its settings give "
                f"{case.case_id!r} in this odebench; resume it with the odebench that started it"
            )
        cases.append(case)
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise RunFolderError(f"{where}: the stored plan names a case twice: the file is damaged; "
                             "start a new run")
    return cases


def odebench_version() -> str:
    """The installed odebench's version; the package's ``__version__`` when it is not
    installed; ``unknown`` when neither is known."""
    from importlib import metadata

    try:
        return metadata.version("odebench")
    except metadata.PackageNotFoundError:
        import harness

        return str(getattr(harness, "__version__", "unknown"))


# How each case's time is measured (harness.measure.timing.time_call): recorded in meta.json so
# that a report can say it
TIMING_STATISTIC = {"statistic": "median", "spread": "interquartile range (IQR)",
                    "clock": "wall (perf_counter; CUDA events on a GPU)"}


def suite_settings(plan: Plan) -> dict[str, Any]:
    """The run's settings that matter to a reader of its results, JSON-serialisable: the
    tolerance and step ladders (the step counts each problem got, where the suite left them
    to the problem), devices, dtypes, batch sizes, gradient modes, step budget, how time was
    measured (``timing``: warm-up, repeats, median and IQR) and the time limits."""
    suite = plan.suite
    settings: dict[str, Any] = {
        "rtol": list(suite.rtol),
        "atol": list(suite.atol) if suite.atol is not None else "rtol x the problem's atol/rtol",
        "steps": list(suite.steps) if suite.steps is not None else "each problem's own ladder",
    }
    if suite.steps is None:
        by_problem: dict[str, dict[str, dict[int, None]]] = {}
        for c in plan.cases:
            if c.kind == "solve" and c.n_steps is not None:
                by_problem.setdefault(c.problem, {}).setdefault(c.solver, {})[c.n_steps] = None
        # each ladder once, whatever the devices, dtypes, batches and modes it ran under
        settings["steps_by_problem"] = {p: {s: list(rungs) for s, rungs in solvers.items()}
                                        for p, solvers in by_problem.items()}
    settings.update(
        devices=list(suite.devices), dtypes=list(suite.dtypes), batch=list(suite.batch),
        grad_modes=list(suite.grad_modes), max_steps=suite.max_steps,
        timing=timing_settings(suite),
        case_timeout_s=suite.case_timeout, train_timeout_s=suite.train_timeout,
    )
    return settings


def timing_settings(suite: Suite) -> dict[str, Any]:
    """How a case is timed: untimed warm-up calls, then repeats (at least ``min_repeats`` and
    until ``min_time`` s, never beyond ``max_time`` s), summarised by the median and IQR."""
    return {"warmup": suite.warmup, "min_repeats": suite.min_repeats,
            "min_time_s": suite.min_time, "max_time_s": suite.max_time, **TIMING_STATISTIC}


_SUITE_RECORD_EXTRA = ("settings",)  # keys meta.json's suite has beside the Suite's fields


def suite_record(plan: Plan) -> dict[str, Any]:
    """The suite as stored in meta.json: its fields, and ``settings`` for a reader."""
    return {**dataclasses.asdict(plan.suite), "settings": suite_settings(plan)}


def suite_from_record(data: Any, where: str) -> Suite:
    if not isinstance(data, dict):
        raise RunFolderError(f"{where}: the stored suite is missing")
    data = {k: v for k, v in data.items() if k not in _SUITE_RECORD_EXTRA}
    try:
        suite = Suite(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except TypeError as exc:
        raise RunFolderError(f"{where}: the stored suite cannot be read: {exc}") from None
    for name in ("min_time", "max_time", "case_timeout"):
        _check_type(where, f"the suite's {name}", getattr(suite, name), _NUM)
    for name in ("warmup", "min_repeats"):
        _check_type(where, f"the suite's {name}", getattr(suite, name), _INT)
    return suite


# ------------------------------------------------------------------------------------ runs


@dataclass
class RunSettings:
    """How the cases of a run are executed (stored in meta.json, kept on resume)."""

    isolate: Isolation = Isolation.AUTO
    case_memory: int | None = None  # bytes (RLIMIT_DATA of each worker)
    seed: int = 0
    threads: int | None = None
    plugins: tuple[str, ...] = ()
    executor: ExecutorName = ExecutorName.SERIAL
    jobs: int | None = None  # process: workers; dask: LocalCluster workers
    scheduler: str | None = None  # dask: an address or a scheduler file; None: a LocalCluster
    chunk: int | None = None  # dask: cases per task; None: chosen from the plan and workers

    def record(self) -> dict[str, Any]:
        return {"isolate": str(self.isolate), "case_memory_bytes": self.case_memory,
                "seed": self.seed, "threads": self.threads, "plugins": list(self.plugins),
                "executor": self.executor_record()}

    def executor_record(self) -> dict[str, Any]:
        return {"name": str(self.executor), "jobs": self.jobs, "scheduler": self.scheduler,
                "chunk": self.chunk}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], where: str) -> RunSettings:
        isolate = meta.get("isolate", "auto")
        if isolate not in set(Isolation):
            raise RunFolderError(f"{where}: isolate is {isolate!r}, not one of "
                                 f"{', '.join(Isolation)}: the file is damaged; start a new run")
        _check_type(where, "case_memory_bytes", meta.get("case_memory_bytes"), _INT + _NONE)
        _check_type(where, "seed", meta.get("seed", 0), _INT)
        _check_type(where, "threads", meta.get("threads"), _INT + _NONE)
        plugins = meta.get("plugins", [])
        _check_type(where, "plugins", plugins, (list,))
        for p in plugins:
            _check_type(where, "a plugin", p, _STR)
        executor = meta.get("executor") or {"name": "serial"}
        _check_type(where, "executor", executor, (dict,))
        if executor.get("name") not in set(ExecutorName):
            raise RunFolderError(f"{where}: executor is {executor.get('name')!r}, not one of "
                                 f"{', '.join(ExecutorName)}: the file is damaged; start a new "
                                 "run")
        for name in ("jobs", "chunk"):
            _check_type(where, f"executor {name}", executor.get(name), _INT + _NONE)
        _check_type(where, "executor scheduler", executor.get("scheduler"), _STR + _NONE)
        return cls(isolate=Isolation(isolate), case_memory=meta.get("case_memory_bytes"),
                   seed=meta.get("seed", 0), threads=meta.get("threads"),
                   plugins=tuple(plugins), executor=ExecutorName(executor["name"]),
                   jobs=executor.get("jobs"), scheduler=executor.get("scheduler"),
                   chunk=executor.get("chunk"))

    def worker_config(self) -> WorkerConfig:
        return WorkerConfig(discovery=plugins.current(), threads=self.threads,
                            memory_limit=self.case_memory, seed=self.seed)


@dataclass
class Run:
    """A locked run folder and what is left of its plan."""

    run_dir: Path
    meta: dict[str, Any]
    suite: Suite
    cases: list[Case]
    settings: RunSettings
    lock: RunLock
    done_ids: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)  # what reading the results found
    resumed: bool = False

    @property
    def todo(self) -> list[Case]:
        return [c for c in self.cases if c.case_id not in self.done_ids]

    def close(self) -> None:
        self.lock.release()


def check_out_dir(run_dir: Path) -> None:
    """A new run's folder: absent, or an empty directory; refused with the reason otherwise."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"--out {run_dir} is a file, not a run folder; choose another --out")
    if run_dir.is_dir():
        if (run_dir / "meta.json").exists() or (run_dir / "results.jsonl").exists():
            raise RunFolderError(
                f"run folder {run_dir} already holds a run; continue it with "
                f"python -m harness run --resume {run_dir}, or choose another --out"
            )
    parent = run_dir.parent if not run_dir.exists() else run_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise RunFolderError(f"--out {run_dir}: {parent} is a file, not a folder")


def start(plan: Plan, run_dir: Path, command: str, settings: RunSettings,
          extra: dict[str, Any]) -> Run:
    """Create and lock ``run_dir`` and write its meta.json with the whole plan."""
    check_out_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create run folder {run_dir}: {exc.strerror}") from None
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        check_out_dir(run_dir)  # again, now that no other run can start in it
    except BaseException:
        lock.release()
        raise
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_dir.name,
        "command": command,
        "started_at": utc_now(),
        "ended_at": None,
        "complete": False,
        "interrupted": False,
        "interrupted_by": None,
        "odebench_version": odebench_version(),
        **settings.record(),
        "suite": suite_record(plan),
        "suite_parts": {k: dataclasses.asdict(v) for k, v in plan.parts.items()},
        "n_cases": len(plan.cases),
        "plan": plan_record(plan.cases),
        "resumes": [],
        "environment": capture(),
        **extra,
    }
    try:
        write_meta(run_dir, meta)
    except OSError as exc:
        lock.release()
        raise RunFolderError(f"cannot write to run folder {run_dir}: {exc.strerror}") from None
    return Run(run_dir=run_dir, meta=meta, suite=plan.suite, cases=list(plan.cases),
               settings=settings, lock=lock)


def reopen(run_dir: Path, command: str) -> Run:
    """Lock ``run_dir`` for ``--resume``: its stored plan, and the ids it has rows for (after
    cutting away a torn last line)."""
    if not run_dir.is_dir():
        raise RunFolderError(f"--resume: run folder {run_dir} does not exist")
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        meta = load_meta(run_dir)
        where = str(run_dir / "meta.json")
        if not meta:
            raise RunFolderError(f"--resume: {run_dir} is not a run folder (no meta.json)")
        if meta.get("schema_version", 1) < SCHEMA_VERSION or "plan" not in meta:
            raise RunFolderError(
                f"--resume: {run_dir} was written by an older odebench (results schema "
                f"{meta.get('schema_version', 1)}) that did not store its plan; it can be shown "
                "and reported, not resumed: start a new run"
            )
        cases = plan_from_record(meta.get("plan"), where)
        suite = suite_from_record(meta.get("suite"), where)
        settings = RunSettings.from_meta(meta, where)
        warnings = [f"{w}" for w in plugins.discover(list(settings.plugins))]
        cut = drop_torn_tail(run_dir)
        if cut is not None:
            warnings.append(f"{run_dir / 'results.jsonl'} line {cut.line_no}: an incomplete "
                            "last line (a case cut off mid-write) was removed; that case runs "
                            "again")
        results = read_results(run_dir)
        warnings.extend(results.warnings(run_dir / "results.jsonl"))
        planned = {c.case_id for c in cases}
        done = {r["case_id"] for r in results.rows if r["case_id"] in planned}
        stray = sorted({r["case_id"] for r in results.rows} - planned)
        if stray:
            warnings.append(f"{len(stray)} row(s) of results.jsonl are not in the plan "
                            f"(e.g. {stray[0]!r}); they are kept and not rerun")
    except BaseException:
        lock.release()
        raise
    if settings.threads:
        torch.set_num_threads(settings.threads)
    meta.setdefault("resumes", []).append({"command": command, "started_at": utc_now(),
                                           "ended_at": None, "n_to_go": len(planned - done),
                                           "environment": capture()})
    run = Run(run_dir=run_dir, meta=meta, suite=suite, cases=cases, settings=settings,
              lock=lock, done_ids=done, warnings=warnings, resumed=True)
    write_meta(run_dir, meta)
    return run


@dataclass
class Outcome:
    done: int  # cases run in this invocation
    interrupted_by: str | None  # the signal's name, if a signal stopped it
    error: str | None = None  # why the run stopped early, other than a signal
    startup_s: float = 0.0  # setting the executor up (a LocalCluster's start, say)
    elapsed_s: float = 0.0  # the whole execution, setup included

    def record(self, executor: str) -> dict[str, Any]:
        """meta.json's ``execution``: how long this invocation's executor took (cases per
        second and the overhead per case follow from it and the rows' ``wall_s``)."""
        return {"executor": executor, "cases": self.done, "startup_s": round(self.startup_s, 4),
                "elapsed_s": round(self.elapsed_s, 4)}


Progress = Callable[[int, int, Case | None, float], None]


def execute(run: Run, progress: Progress | None = None) -> Outcome:
    """Run every planned case of ``run`` that has no row, appending rows as cases end, with the
    run's executor (:mod:`harness.executors`); each row records the executor.

    A KeyboardInterrupt (Ctrl-C, or SIGTERM through :mod:`harness.signals`) drops the cases in
    flight and returns; the rows written so far are on disk.
    """
    from harness.signals import RunInterrupted

    todo = run.todo
    done = 0
    interrupted_by = None
    t0 = time.perf_counter()
    error = None
    startup = 0.0
    detail = getattr(progress, "detail", None) if progress is not None else None
    executor: executors.Executor | None = None
    try:
        with ResultsWriter(run.run_dir) as writer:
            executor = executors.make(
                run.settings.executor, run.settings.worker_config(),
                lambda case: isolated(case, run.settings.isolate), jobs=run.settings.jobs,
                scheduler=run.settings.scheduler, chunk=run.settings.chunk,
                run_id=run.run_dir.name)
            startup = time.perf_counter() - t0
            started = None
            if progress is not None and executor.started_hook:
                def started(case: Case) -> None:
                    progress(done, len(todo), case, time.perf_counter() - t0)
            for case, row in executor.rows(todo, run.suite, started=started, detail=detail):
                row["executor"] = str(executor.name)
                _write(run, writer, case, row)
                run.done_ids.add(case.case_id)
                done += 1
                if progress is not None and not executor.started_hook:
                    progress(done, len(todo), case, time.perf_counter() - t0)
    except KeyboardInterrupt as exc:
        interrupted_by = exc.name if isinstance(exc, RunInterrupted) else "SIGINT"
    except (WorkerStartError, executors.ExecutorError) as exc:
        # every later case would fail the same way
        error = f"{exc}; the run stopped (continue with: python -m harness run --resume " \
                f"{run.run_dir})"
    finally:
        if executor is not None:
            executor.close()
    elapsed = time.perf_counter() - t0
    if progress:
        progress(done, len(todo), None, elapsed)
    return Outcome(done=done, interrupted_by=interrupted_by, error=error,
                   startup_s=startup, elapsed_s=elapsed)


def _write(run: Run, writer: ResultsWriter, case: Case, row: dict[str, Any]) -> None:
    try:
        records = row.pop(RECORDS_KEY, None)
        if records is not None:
            row["records_file"] = write_records(run.run_dir, case.case_id, records)
        writer.write(row)
    except OSError as exc:
        raise RunFolderError(
            f"cannot write {run.run_dir / 'results.jsonl'}: {exc.strerror}; make room, then "
            f"continue with: python -m harness run --resume {run.run_dir}"
        ) from None


def finish(run: Run, outcome: Outcome) -> int:
    """Record how this invocation ended in meta.json; returns how many planned cases still
    have no row."""
    ended = utc_now()
    left = len(run.todo)  # done_ids: the rows found on opening, and those written since
    execution = outcome.record(str(run.settings.executor))
    if run.resumed and run.meta.get("resumes"):
        run.meta["resumes"][-1].update(ended_at=ended, done=outcome.done,
                                       interrupted_by=outcome.interrupted_by,
                                       execution=execution)
    else:
        run.meta["execution"] = execution
    run.meta.update(ended_at=ended, complete=left == 0,
                    interrupted=outcome.interrupted_by is not None,
                    interrupted_by=outcome.interrupted_by)
    write_meta(run.run_dir, run.meta)
    return left


def record_resume_executor(run: Run) -> None:
    """Note in meta.json's last resume how it executes the cases (it may differ from the
    run's first invocation: another cluster, say)."""
    if run.meta.get("resumes"):
        run.meta["resumes"][-1]["executor"] = run.settings.executor_record()
        write_meta(run.run_dir, run.meta)


def describe_settings(settings: RunSettings) -> str:
    parts = [_executor_text(settings)]
    if settings.executor is ExecutorName.SERIAL:
        parts.append(f"isolation {settings.isolate}")
    if settings.case_memory:
        parts.append(f"case memory {fmt_size(settings.case_memory)}")
    return ", ".join(parts)


def _executor_text(settings: RunSettings) -> str:
    if settings.executor is ExecutorName.PROCESS:
        return f"executor process, {settings.jobs} worker processes"
    if settings.executor is ExecutorName.DASK:
        where = settings.scheduler or f"a LocalCluster of {settings.jobs} workers"
        return f"executor dask at {where}"
    return "executor serial"
