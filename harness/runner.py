"""Running cases: one solve for accuracy and NFE, then timed repeats; one result row per case.

Every case ends as a row, whatever happens inside it: a solver that raises becomes status
``error`` with the message, one that runs past the suite's ``case_timeout`` becomes ``timeout``.
Rows are appended to ``results.jsonl`` as each case ends, so Ctrl-C keeps every finished case.
"""

from __future__ import annotations

import datetime as _dt
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import registry
from harness.measure.accuracy import Accuracy, measure_accuracy
from harness.measure.memory import cuda_peak_bytes, cuda_peak_reset, rss_peak_bytes
from harness.measure.nfe import CountingRHS
from harness.measure.timing import Timing, time_call
from harness.results import ResultsWriter, read_rows
from harness.suite import DTYPES, Case, Plan, Suite
from solvers.base import Solution, Solver, Status


class CaseTimeout(BaseException):
    """Raised inside a case that runs past its time budget (a BaseException, so that a
    solver's own ``except Exception`` cannot swallow it)."""


@dataclass
class CaseOutcome:
    row: dict[str, Any]
    elapsed: float


class _Timeout:
    """A wall-clock budget for the code inside ``with``, by SIGALRM (main thread, Unix)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = (
            seconds > 0
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )

    def _fire(self, signum: int, frame: Any) -> None:
        raise CaseTimeout(f"the case ran past its time budget of {self.seconds:g} s")

    def __enter__(self) -> _Timeout:
        if self.active:
            self._old = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)


class ProblemCache:
    """Builds each (problem, dtype, device) once per run; a build failure is kept and reported."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str], Any] = {}

    def get(self, name: str, dtype: str, device: str):
        key = (name, dtype, device)
        if key not in self._cache:
            try:
                self._cache[key] = registry.PROBLEMS.get(name).factory(DTYPES[dtype], device)
            except Exception as exc:
                self._cache[key] = exc
        value = self._cache[key]
        if isinstance(value, Exception):
            raise RuntimeError(
                f"problem {name!r} failed to build: {type(value).__name__}: {value}"
            ) from value
        return value


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        last = tb[-1]
        text += f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    return text


def _base_row(case: Case) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "kind": case.kind,
        "problem": case.problem,
        "solver": case.solver,
        "grad_mode": case.grad_mode,
        "device": case.device,
        "dtype": case.dtype,
        "batch": case.batch,
        "rtol": case.rtol,
        "atol": case.atol,
        "n_steps_requested": case.n_steps,
    }


def _error_row(case: Case, status: str, message: str, started: str, wall: float) -> dict:
    row = _base_row(case)
    row.update(status=status, message=message, started_at=started, wall_s=wall)
    return row


def solve_kwargs(case: Case, solver: Solver, problem: Any) -> dict[str, Any]:
    if solver.adaptive:
        max_steps = case.max_steps or getattr(problem, "max_steps", None)
        return {"rtol": case.rtol, "atol": case.atol, "max_steps": max_steps}
    return {"n_steps": case.n_steps}


def run_case(case: Case, problems: ProblemCache, suite: Suite) -> dict[str, Any]:
    """Run one case and return its result row. Never raises except KeyboardInterrupt."""
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    t_case = time.perf_counter()
    try:
        with _Timeout(suite.case_timeout):
            row = _run_case(case, problems, suite)
    except CaseTimeout as exc:
        return _error_row(case, "timeout", str(exc), started, time.perf_counter() - t_case)
    except Exception as exc:
        return _error_row(case, "error", _message(exc), started, time.perf_counter() - t_case)
    row["started_at"] = started
    row["wall_s"] = time.perf_counter() - t_case
    return row


def _run_case(case: Case, problems: ProblemCache, suite: Suite) -> dict[str, Any]:
    solver = registry.make_solver(case.solver)
    problem = problems.get(case.problem, case.dtype, case.device)
    row = _base_row(case)
    row.update(
        solver_kind=solver.kind,
        order=solver.order,
        adaptive=solver.adaptive,
        ref_kind=str(problem.reference.kind),
        ref_provenance=problem.reference.provenance,
    )
    y0 = problem.y0
    if case.batch > 1:
        y0 = y0.expand(case.batch, *y0.shape).clone()
    f = CountingRHS(problem.f)
    kwargs = solve_kwargs(case, solver, problem)

    def once() -> Solution:
        return solver.solve(f, y0, problem.t, **kwargs)

    cuda_peak_reset(case.device)
    with torch.no_grad():
        f.reset()
        w0 = time.perf_counter()
        c0 = time.process_time()
        try:
            sol = once()
        except (ValueError, TypeError) as exc:
            raise RuntimeError(f"solver {case.solver!r} refused the case: {exc}") from exc
        if torch.device(case.device).type == "cuda":
            torch.cuda.synchronize(case.device)
        first = Timing(wall=[time.perf_counter() - w0], cpu=[time.process_time() - c0])
        nfe = f.calls
        expected = (problem.t.shape[0], *y0.shape)
        if tuple(sol.ys.shape) != expected:
            raise RuntimeError(
                f"solver {case.solver!r} returned ys of shape {tuple(sol.ys.shape)}, "
                f"expected {expected} (len(t), *y0.shape)"
            )
        status = Status(sol.status)
        ys = sol.ys.detach().to("cpu", torch.float64).numpy()
        ref = problem.reference.ys
        if case.batch > 1:
            ref = np.expand_dims(ref, 1)
        acc = (
            measure_accuracy(ys, ref, atol=problem.atol, rtol=problem.rtol)
            if status is Status.OK
            else Accuracy.failed()
        )
        if status is Status.OK and not np.isfinite(acc.err_max):
            status, sol.message = Status.NONFINITE, "the solver returned non-finite values"
        timing = first
        if status is Status.OK:
            timing = time_call(
                once,
                device=case.device,
                warmup=suite.warmup,
                min_time=suite.min_time,
                min_repeats=suite.min_repeats,
                max_time=suite.max_time,
            )
    row.update(
        status=str(status),
        message=sol.message or "",
        nfe=nfe,
        nfe_solver=sol.nfe,
        n_steps=sol.n_steps,
        n_accepted=sol.n_accepted,
        n_rejected=sol.n_rejected,
        t_reached=sol.t_reached,
        err_max=acc.err_max,
        err_final=acc.err_final,
        err_rms_scaled=acc.err_rms_scaled,
        scd=acc.scd,
        mescd=acc.mescd,
        time_median_s=timing.median,
        time_iqr_s=timing.iqr,
        time_min_s=timing.minimum,
        cpu_median_s=timing.cpu_median,
        repeats=timing.repeats,
        time_samples_s=[round(s, 9) for s in timing.wall],
        mem_cuda_peak_bytes=cuda_peak_bytes(case.device),
        rss_peak_bytes=rss_peak_bytes(),
    )
    return row


@dataclass
class RunResult:
    done: int  # cases run in this invocation
    skipped: int  # cases skipped because a resumed run already had them
    interrupted: bool


def run_plan(
    plan: Plan,
    run_dir: Path,
    *,
    progress: Callable[[int, int, Case | None, float], None] | None = None,
) -> RunResult:
    """Run every case of ``plan`` not already in ``run_dir``'s results, appending rows."""
    finished = {r.get("case_id") for r in read_rows(run_dir)}
    todo = [c for c in plan.cases if c.case_id not in finished]
    skipped = len(plan.cases) - len(todo)
    problems = ProblemCache()
    done = 0
    t0 = time.perf_counter()
    interrupted = False
    with ResultsWriter(run_dir) as writer:
        try:
            for i, case in enumerate(todo):
                if progress:
                    progress(i, len(todo), case, time.perf_counter() - t0)
                writer.write(run_case(case, problems, plan.suite))
                done += 1
        except KeyboardInterrupt:
            interrupted = True
    if progress:
        progress(done, len(todo), None, time.perf_counter() - t0)
    return RunResult(done=done, skipped=skipped, interrupted=interrupted)
