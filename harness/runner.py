"""Running cases: one solve for accuracy and NFE, then timed repeats; one result row per case.

Every case ends as a row, whatever happens inside it: a solver that raises becomes status
``error`` with the message and the place it was raised, one that calls ``sys.exit``
``crashed``, one that runs out of memory ``out_of_memory``, one that runs past the suite's
``case_timeout`` ``timeout``.
Only ``KeyboardInterrupt`` (Ctrl-C, SIGTERM: see :mod:`harness.signals`) goes through: the run
stops and drops the case in flight. In the harness's own process the time budget is met at each
call of ``f`` (:class:`harness.measure.nfe.Deadline`); a case that can crash the process or hang
inside a C call runs in a worker process instead (:mod:`harness.worker`).

Each case seeds torch and numpy from the run's seed and its own id, so its figures do not
depend on which cases ran before it, in which process: a resumed or isolated run reproduces an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import statistics
import sysconfig
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import registry, signals
from harness.environment import hardware_fields
from harness.measure.accuracy import Accuracy, measure_accuracy
from harness.measure.memory import cuda_peak_bytes, cuda_peak_reset, rss_peak_bytes
from harness.measure.nfe import CaseTimeout, CountingRHS, Deadline, budget_message
from harness.measure.timing import Timing, time_call
from harness.results import Row
from harness.suite import DTYPES, Case, Suite
from solvers.base import Capability, Solution, Solver, Status


def case_seed(run_seed: int, case_id: str) -> int:
    """The seed of one case: the run's seed and the case id, hashed (stable across processes
    and Python versions, unlike ``hash``)."""
    digest = hashlib.sha256(f"{run_seed}/{case_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def seed_case(run_seed: int, case_id: str) -> None:
    seed = case_seed(run_seed, case_id)
    torch.manual_seed(seed)
    np.random.seed(seed)


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


_LIBRARY_DIRS = tuple(
    str(Path(p).resolve())
    for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
              sysconfig.get_paths()["platlib"], str(Path(torch.__file__).parent.parent)}
)


def _where(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    try:
        shown = str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        shown = str(path)
    return f"{shown}:{frame.lineno} in {frame.name}"


def _message(exc: BaseException) -> str:
    """``Type: text (at file:line in function)``: the innermost frame outside the standard
    library and installed packages, i.e. in the plugin or solver that raised; the innermost
    frame of all beside it when that is elsewhere (inside torch, say)."""
    if isinstance(exc, SystemExit):
        text = f"SystemExit: the case called sys.exit({exc.code!r})"
    else:
        text = f"{type(exc).__name__}: {exc}"
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return text
    ours = [fr for fr in tb if not str(Path(fr.filename).resolve()).startswith(_LIBRARY_DIRS)]
    if ours and ours[-1] is not tb[-1]:
        return f"{text} (at {_where(ours[-1])}; raised in {_where(tb[-1])})"
    return f"{text} (at {_where(tb[-1])})"


def _is_out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, and torch's allocator failures (CPU: a RuntimeError saying it
    "can't allocate memory"; CUDA: torch.OutOfMemoryError)."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def _base_row(case: Case) -> Row:
    """A row with the case's settings; ``controller`` and ``backend`` are what the case asks
    for ("" for nothing) until a solve says what ran."""
    row = Row(
        case_id=case.case_id,
        kind=case.kind,
        problem=case.problem,
        solver=case.solver,
        grad_mode=case.grad_mode,
        device=case.device,
        dtype=case.dtype,
        batch=case.batch,
        rtol=case.rtol,
        atol=case.atol,
        n_steps_requested=case.n_steps,
        controller=case.controller,
        backend=case.backend,
    )
    if case.kind == "train":
        row.update(task=case.problem, model=case.model or "ode", iterations=case.iterations,
                   epochs=case.epochs)
    return row


def _described(row: Row, solver: Solver, problem: Any) -> Row:
    """Add what the solver is and where the problem's reference comes from."""
    row.update(
        solver_kind=solver.kind,
        order=solver.order,
        adaptive=solver.adaptive,
        ref_kind=str(problem.reference.kind),
        ref_provenance=problem.reference.provenance,
    )
    return row


def _accuracy(ys: torch.Tensor, case: Case, problem: Any, ok: bool) -> Accuracy:
    """The solution's accuracy against the problem's reference (batch broadcast); none if the
    solve failed."""
    if not ok:
        return Accuracy.failed()
    values = ys.detach().to("cpu", torch.float64).numpy()
    ref = problem.reference.ys
    if case.batch > 1:
        ref = np.expand_dims(ref, 1)
    return measure_accuracy(values, ref, atol=problem.atol, rtol=problem.rtol,
                            scd_components=problem.extra.get("scd_components"))


def _time(fn, case: Case, suite: Suite) -> Timing:
    return time_call(fn, device=case.device, warmup=suite.warmup, min_time=suite.min_time,
                     min_repeats=suite.min_repeats, max_time=suite.max_time)


def _result_fields(case: Case, sol: Solution, acc: Accuracy, timing: Timing
                   ) -> dict[str, Any]:
    """The columns a solve and a gradient case share: what ran (the controller and backend
    the solution names; else what the case asked for), counts, accuracy, time."""
    return dict(
        controller=sol.controller or case.controller,
        backend=sol.backend or case.backend,
        nfe_solver=sol.nfe,
        n_steps=sol.n_steps,
        n_accepted=sol.n_accepted,
        n_rejected=sol.n_rejected,
        njev=sol.counts.get("njev"),
        ndec=sol.counts.get("ndec"),
        nsol=sol.counts.get("nsol"),
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
        time_samples_s=[round(x, 9) for x in timing.wall],
        rss_peak_bytes=rss_peak_bytes(),
    )


def utc_now() -> str:
    """Now, as the ISO time stamps of rows and meta.json write it."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def error_row(case: Case, status: Status, message: str, started: str, wall: float) -> dict:
    """The row of a case that ended without figures: its settings, status and message."""
    return _error_row(case, status, message, started, wall).to_dict()


def _error_row(case: Case, status: Status, message: str, started: str, wall: float) -> Row:
    return _base_row(case).update(status=Status(status), message=message, started_at=started,
                                  wall_s=wall)


def solve_kwargs(case: Case, solver: Solver, problem: Any) -> dict[str, Any]:
    """What ``solver.solve`` gets beside ``f``, ``y0`` and ``t`` (gradient modes pass it on):
    the tolerances and step budget (adaptive) or the step count (fixed step), and the case's
    ``controller`` and ``backend`` where it sets them and the solver takes them (its
    :class:`~solvers.base.Capability`)."""
    if solver.adaptive:
        # The problem's budget is there to stop explicit solvers on stiff problems quickly.
        budget = None if getattr(solver, "implicit", False) else problem.max_steps
        kwargs = {"rtol": case.rtol, "atol": case.atol, "max_steps": case.max_steps or budget}
    else:
        kwargs = {"n_steps": case.n_steps}
    capabilities = getattr(solver, "capabilities", frozenset())
    if case.controller and Capability.CONTROLLER in capabilities:
        kwargs["controller"] = case.controller
    if case.backend and Capability.BACKEND in capabilities:
        kwargs["backend"] = case.backend
    if getattr(problem, "jac", None) is not None and Capability.JACOBIAN in capabilities:
        kwargs["jac"] = problem.jac
    return kwargs


def ran_here(row: dict[str, Any], case: Case, worker: str | None = None) -> dict[str, Any]:
    """Add where the case ran (this process's machine, torch threads, GPU, ``worker``: by
    default this process's pid); what the row already says (a training case's threads) stays."""
    for key, value in hardware_fields(case.device).items():
        row.setdefault(key, value)
    row.setdefault("worker", worker or f"pid {os.getpid()}")
    return row


def run_case(
    case: Case,
    problems: ProblemCache,
    suite: Suite,
    *,
    seed: int = 0,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run one case and return its result row, with where it ran (:func:`ran_here`). Never
    raises except KeyboardInterrupt.

    ``timeout`` (default: the suite's ``case_timeout``; 0 or None for none) is checked at each
    call of ``f``. A worker process passes 0: its parent keeps the time.
    """
    result = _run_case_row(case, problems, suite, seed, timeout)
    row = result.row.to_dict()
    if result.records is not None:
        row[RECORDS_KEY] = result.records
    return ran_here(row, case)


@dataclass
class CaseResult:
    """A case's row, and a training case's per-iteration records (None for other cases), which
    the run writes beside results.jsonl (:func:`harness.results.write_records`)."""

    row: Row
    records: list[dict[str, Any]] | None = None


def _run_case_row(case: Case, problems: ProblemCache, suite: Suite, seed: int,
                  timeout: float | None) -> CaseResult:
    started = utc_now()
    t_case = time.perf_counter()
    rss_before = rss_peak_bytes()
    if timeout is not None:
        budget = timeout
    else:
        budget = suite.train_timeout if case.kind == "train" else suite.case_timeout
    deadline = Deadline(None if native_loop(case.solver) else budget)
    seed_case(seed, case.case_id)
    try:
        if case.kind == "train":
            result = _run_train_case(case, suite, deadline, seed)
        else:
            with _threads(suite.threads):
                result = CaseResult(_run_case(case, problems, suite, deadline))
                result.row.torch_threads = torch.get_num_threads()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a case must not end the run (SystemExit too)
        signals.raise_if_requested()  # a Ctrl-C that the case's code swallowed
        wall = time.perf_counter() - t_case
        if deadline.expired or isinstance(exc, CaseTimeout):
            return CaseResult(_error_row(case, Status.TIMEOUT, budget_message(budget), started,
                                         wall))
        if isinstance(exc, SystemExit):  # an attempt to end the process: contained
            status = Status.CRASHED
        elif _is_out_of_memory(exc):
            status = Status.OUT_OF_MEMORY
        else:
            status = Status.ERROR
        return CaseResult(_error_row(case, status, _message(exc), started, wall))
    signals.raise_if_requested()
    row = result.row
    row.update(started_at=started, wall_s=time.perf_counter() - t_case)
    if deadline.expired:  # the solver swallowed the CaseTimeout and went on
        return CaseResult(_error_row(case, Status.TIMEOUT, budget_message(budget), started,
                                     row.wall_s))
    row.rss_growth_bytes = rss_peak_bytes() - rss_before
    return result


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside (none changed for None), restored after."""
    before = torch.get_num_threads()
    if not n or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Where a training case reports how far it has got ("iteration 40/300"): the progress bar of
# the run's process, or the pipe of a worker (set by whoever runs the case).
CASE_PROGRESS: list[Callable[[str], None]] = []


def _case_progress(text: str) -> None:
    for hook in CASE_PROGRESS:
        hook(text)


def _run_train_case(case: Case, suite: Suite, deadline: Deadline, seed: int) -> CaseResult:
    """A training case's row and its per-iteration records, for the run to write next to
    results.jsonl (:func:`harness.results.write_records`; :func:`run_case` hands them on under
    ``RECORDS_KEY``). It runs with the suite's ``train_threads`` torch threads (the run's own
    count is restored)."""
    from training.loop import run_train_case

    row = _base_row(case)
    if case.solver != "none":
        solver = registry.make_solver(case.solver)
        row.update(solver_kind=solver.kind, order=solver.order, adaptive=solver.adaptive)
    with _threads(suite.train_threads):
        row.torch_threads = torch.get_num_threads()
        fields, records = run_train_case(case, deadline, seed=seed, progress=_case_progress)
    if "status" in fields:  # the training loop writes the value
        fields = {**fields, "status": Status(fields["status"])}
    row.update(**fields)
    row.update(epochs=case.epochs, mem_cuda_peak_bytes=cuda_peak_bytes(case.device),
               rss_peak_bytes=rss_peak_bytes())
    return CaseResult(row, records)


RECORDS_KEY = "_records"
"""Where a training case's records ride along in the row :func:`run_case` returns."""


def native_loop(name: str) -> bool:
    """A solver whose native loop must not get an exception from ``f`` (``native_loop``)."""
    try:
        return bool(getattr(registry.make_solver(name), "native_loop", False))
    except Exception:  # a solver that cannot be built fails in its case, wherever it runs
        return False


def _run_case(case: Case, problems: ProblemCache, suite: Suite, deadline: Deadline) -> Row:
    if case.kind == "gradient":
        return _run_gradient_case(case, problems, suite, deadline)
    solver = registry.make_solver(case.solver)
    problem = problems.get(case.problem, case.dtype, case.device)
    row = _described(_base_row(case), solver, problem)
    y0 = _batched(problem.y0, case.batch)  # a copy: a solver that writes into y0 harms no one
    f = CountingRHS(problem.f, deadline)
    kwargs = solve_kwargs(case, solver, problem)

    def once() -> Solution:
        return solver.solve(f, y0, problem.t, **kwargs)

    cuda_peak_reset(case.device)
    with torch.no_grad():
        f.reset()
        w0 = time.perf_counter()
        c0 = time.process_time()
        sol = once()
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
        acc = _accuracy(sol.ys, case, problem, status is Status.OK)
        if status is Status.OK and not np.isfinite(acc.err_max):
            status, sol.message = Status.NONFINITE, "the solver returned non-finite values"
        timing = first
        # A solve that alone outlasts max_time is its own single sample: repeating it would
        # only spend time (its warm-up share is negligible at that length).
        if status is Status.OK and first.wall[0] < suite.max_time:
            timing = _time(once, case, suite)
    row.update(
        status=status,
        message=sol.message or "",
        nfe=nfe,
        mem_cuda_peak_bytes=cuda_peak_bytes(case.device),
        **_result_fields(case, sol, acc, timing),
    )
    return row


class GradientCache:
    """Per run: the reference gradient of each (problem, batch), and the backprop gradient of
    each solver and setting, against which the other modes' disagreement is measured."""

    def __init__(self) -> None:
        self.reference: dict[tuple[str, int], Any] = {}
        self.backprop: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def reference_for(self, case: Case, problems: ProblemCache):
        key = (case.problem, case.batch)
        if key not in self.reference:
            from solvers.gradients import reference_gradient

            prob = problems.get(case.problem, "float64", "cpu")
            y0 = _batched(prob.y0, case.batch)
            try:
                self.reference[key] = reference_gradient(prob.f, y0, prob.t, prob.loss_of)
            except Exception as exc:
                self.reference[key] = exc
        ref = self.reference[key]
        if isinstance(ref, Exception):
            raise RuntimeError(f"the reference gradient failed: {type(ref).__name__}: {ref}")
        return ref

    @staticmethod
    def backprop_key(case: Case) -> tuple:
        return (case.problem, case.solver, case.rtol, case.atol, case.n_steps, case.dtype,
                case.device, case.batch, case.controller, case.backend)


_GRADIENTS = GradientCache()


def _batched(y0: torch.Tensor, batch: int) -> torch.Tensor:
    return y0.expand(batch, *y0.shape).clone() if batch > 1 else y0.clone()


def _run_gradient_case(
    case: Case, problems: ProblemCache, suite: Suite, deadline: Deadline
) -> Row:
    """Forward solve and gradient of the problem's loss w.r.t. y0 and f's parameters.

    One untimed pass under the saved-bytes probe measures memory, NFE (forward and backward
    separately, from the counting wrapper, reset between them) and the gradient's accuracy;
    then forward+backward is timed, with each half's time recorded too.
    """
    from harness.measure.saved import SavedBytes
    from solvers.gradients import check_mode, grad_rel_err, odeint

    solver = registry.make_solver(case.solver)
    mode = check_mode(solver, case.grad_mode)
    problem = problems.get(case.problem, case.dtype, case.device)
    ref = _GRADIENTS.reference_for(case, problems)
    row = _described(_base_row(case), solver, problem)
    row.grad_ref_provenance = ref.provenance
    f = CountingRHS(problem.f, deadline)
    params = tuple(p for p in f.parameters() if p.requires_grad)
    y0 = _batched(problem.y0, case.batch).requires_grad_(True)
    kwargs = solve_kwargs(case, solver, problem)
    cuda = torch.device(case.device).type == "cuda"
    fwd_times: list[float] = []
    bwd_times: list[float] = []

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(case.device)

    def forward_backward():
        w0 = time.perf_counter()
        gs = odeint(solver, f, y0, problem.t, mode=mode, params=params, **kwargs)
        loss = problem.loss_of(gs.ys)
        sync()
        w1 = time.perf_counter()
        grads = torch.autograd.grad(loss, (y0, *params), allow_unused=True)
        sync()
        fwd_times.append(w1 - w0)
        bwd_times.append(time.perf_counter() - w1)
        return gs, loss, grads

    cuda_peak_reset(case.device)
    f.reset()
    with SavedBytes() as probe:
        w0 = time.perf_counter()
        c0 = time.process_time()
        gs = odeint(solver, f, y0, problem.t, mode=mode, params=params, **kwargs)
        nfe = f.calls
        loss = problem.loss_of(gs.ys)
        f.reset()
        grads = torch.autograd.grad(loss, (y0, *params), allow_unused=True)
        sync()
        nfe_backward = f.calls
        first = Timing(wall=[time.perf_counter() - w0], cpu=[time.process_time() - c0])
    mem_cuda = cuda_peak_bytes(case.device)
    sol = gs.solution
    status, message = Status(sol.status), sol.message or ""
    back = gs.backward
    if status is Status.OK and back.status != Status.OK:
        status, message = Status(back.status), f"backward pass: {back.message}"
    finite = all(g is None or bool(torch.isfinite(g).all()) for g in grads)
    if status is Status.OK and not finite:
        status, message = Status.NONFINITE, "the gradient has inf/NaN entries"

    acc = _accuracy(gs.ys, case, problem, status is Status.OK)
    nan = float("nan")
    g64 = tuple(None if g is None else g.detach().to("cpu", torch.float64) for g in grads)
    if status is Status.OK:
        err_all = grad_rel_err(g64, (ref.y0, *ref.params))
        err_y0 = grad_rel_err(g64[:1], (ref.y0,))
        err_theta = grad_rel_err(g64[1:], ref.params) if params else nan
        key = GradientCache.backprop_key(case)
        if mode == "backprop":
            _GRADIENTS.backprop[key] = g64
        elif key not in _GRADIENTS.backprop:  # its backprop case ran in another process
            _GRADIENTS.backprop[key] = _backprop_gradient(case, problems, deadline)
        bp = _GRADIENTS.backprop.get(key)
        diff = grad_rel_err(g64, bp) if bp is not None else nan
    else:
        err_all = err_y0 = err_theta = diff = nan
        if mode == "backprop":  # no backprop gradient for this setting: none to recompute
            _GRADIENTS.backprop[GradientCache.backprop_key(case)] = None

    timing = first
    if status is Status.OK:
        fwd_times.clear()
        bwd_times.clear()
        timing = _time(forward_backward, case, suite)
    row.update(
        status=status,
        message=message,
        nfe=nfe,
        nfe_backward=nfe_backward,
        n_steps_backward=back.n_steps,
        n_rejected_backward=back.n_rejected,
        status_backward=Status(back.status),
        loss=float(loss.detach()),
        n_params=sum(p.numel() for p in params),
        grad_rel_err=err_all,
        grad_rel_err_y0=err_y0,
        grad_rel_err_theta=err_theta,
        grad_rel_diff_backprop=diff,
        time_forward_median_s=_median(fwd_times),
        time_backward_median_s=_median(bwd_times),
        time_forward_iqr_s=Timing(wall=fwd_times).iqr,
        time_backward_iqr_s=Timing(wall=bwd_times).iqr,
        mem_saved_bytes=probe.peak_bytes,
        mem_cuda_peak_bytes=mem_cuda,
        **_result_fields(case, sol, acc, timing),
    )
    return row


def _backprop_gradient(
    case: Case, problems: ProblemCache, deadline: Deadline
) -> tuple[torch.Tensor | None, ...] | None:
    """The backprop gradient of the case's solver and setting, as its backprop case computes it
    (None where that case would not end ok), for a mode's disagreement with backprop when the
    backprop case ran elsewhere (a worker, an earlier invocation of a resumed run). A failure
    here (backprop's memory, say) leaves the disagreement empty; it does not fail the case."""
    try:
        return _backprop_gradient_or_raise(case, problems, deadline)
    except Exception:
        return None


def _backprop_gradient_or_raise(
    case: Case, problems: ProblemCache, deadline: Deadline
) -> tuple[torch.Tensor | None, ...] | None:
    from solvers.gradients import check_mode, odeint

    solver = registry.make_solver(case.solver)
    try:
        mode = check_mode(solver, "backprop")
    except ValueError:
        return None
    problem = problems.get(case.problem, case.dtype, case.device)
    f = CountingRHS(problem.f, deadline)
    params = tuple(p for p in f.parameters() if p.requires_grad)
    y0 = _batched(problem.y0, case.batch).requires_grad_(True)
    gs = odeint(solver, f, y0, problem.t, mode=mode, params=params,
                **solve_kwargs(case, solver, problem))
    if gs.solution.status != Status.OK:
        return None
    grads = torch.autograd.grad(problem.loss_of(gs.ys), (y0, *params), allow_unused=True)
    if gs.backward.status != Status.OK or not all(
        g is None or bool(torch.isfinite(g).all()) for g in grads
    ):
        return None
    return tuple(None if g is None else g.detach().to("cpu", torch.float64) for g in grads)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
