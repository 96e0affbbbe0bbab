"""One training case: fit a task's neural ODE under one solver, setting and gradient mode.

Every case of a task starts from the same initial weights and sees the same minibatches (both
drawn from the task's seed, offset by the run's ``--seed``), so the cases of one task differ only
in how they solve and differentiate: their loss curves can be laid side by side, and the same
seed gives the same losses, bit for bit, on the CPU.

Per iteration (one optimiser step) the case records the minibatch loss, the forward and backward
NFE (the harness's own count, through :class:`harness.measure.nfe.CountingRHS`), the wall time of
the forward solve, the backward pass and the optimiser step, and on some iterations (the first,
every ``PROBE_EVERY``-th and the last) the bytes autograd saves for backward
(:class:`harness.measure.saved.SavedBytes`, whose hooks cost time: the median time per
iteration leaves those iterations out).

A solve that fails (``max_steps``, ``nonfinite``, ...) in the forward or the backward pass, or a
loss or gradient that is not finite, ends the case with that status and the iteration reached;
the records up to it are kept. After training, the trained field is solved from ``y0`` over the
whole observed span (validation error), and, for adaptive solvers in the ``adjoint`` mode
(the paper's ODE-Net), at a ladder of tolerances against a tight solve of the same field: NFE
against error and against time, the Neural ODE paper's Figure 3 (a) and (b).
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from harness import registry
from harness.measure.memory import cuda_peak_bytes, cuda_peak_reset
from harness.measure.nfe import CountingRHS, Deadline
from harness.measure.saved import SavedBytes
from harness.suite import DTYPES, Case
from solvers.base import GradMode, Status
from training.tasks import Task

PROBE_EVERY = 50
EVAL_RTOL = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
EVAL_REFERENCE_TOL = 1e-10
Progress = Callable[[str], None]


class TrainingStopped(Exception):
    """A solve or gradient failed mid-training: ``status`` and the iteration reached."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def seeds(task_seed: int, run_seed: int) -> tuple[int, int]:
    """(weights, minibatches) seeds of a task's cases in a run."""
    base = task_seed + 1_000_003 * run_seed
    return base, base + 1


def minibatch_starts(n_points: int, window: int, batch: int, gen: torch.Generator
                     ) -> torch.Tensor:
    """``batch`` window starts drawn without replacement from ``range(n_points - window)``."""
    return torch.randperm(n_points - window, generator=gen)[:batch]


def run_train_case(
    case: Case, deadline: Deadline, *, seed: int = 0, progress: Progress | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train ``case`` and return its row's fields and its per-iteration records."""
    task = registry.make_task(case.problem)
    from training.digits import DigitsTask, run_digits_case

    if isinstance(task, DigitsTask):
        return run_digits_case(case, task, deadline, progress=progress, seed=seed)
    if not isinstance(task, Task):
        raise TypeError(f"task {case.problem!r} is a {type(task).__name__}, not a "
                        "training.tasks.Task")
    return _train(case, task, deadline, seed, progress)


def _train(case: Case, task: Task, deadline: Deadline, run_seed: int,
           progress: Progress | None, evaluate: bool = True
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from solvers.gradients import check_mode, odeint

    solver = registry.make_solver(case.solver)
    mode = check_mode(solver, case.grad_mode)
    dtype, device = DTYPES[case.dtype], case.device
    cuda = torch.device(device).type == "cuda"
    t_np, ys_np = task.true_trajectory()
    t_all = torch.as_tensor(t_np, dtype=dtype, device=device)
    y_all = torch.tensor(ys_np, dtype=dtype, device=device)
    n_points, window, batch = len(t_np), task.data.window, case.batch
    if not 2 <= window < n_points or not 1 <= batch <= n_points - window:
        raise ValueError(f"task {task.name!r}: window {window} and batch {batch} do not fit "
                         f"{n_points} observations")
    weight_seed, batch_seed = seeds(task.seed, run_seed)
    torch.manual_seed(weight_seed)
    field = task.make_field(dtype, device)
    gen = torch.Generator().manual_seed(batch_seed)
    optimiser = task.make_optimiser(field.parameters())
    f = CountingRHS(field, deadline)
    params = tuple(p for p in field.parameters() if p.requires_grad)
    t_win = t_all[:window]
    offsets = torch.arange(window, device=device).unsqueeze(1)
    if solver.adaptive:
        kwargs: dict[str, Any] = dict(rtol=case.rtol, atol=case.atol, max_steps=case.max_steps)
    else:
        kwargs = dict(n_steps=case.n_steps)
    # the step-size controller and backend the case asks for (only set for a solver that
    # takes them, see harness.suite)
    kwargs.update({k: v for k in ("controller", "backend") if (v := getattr(case, k, ""))})

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    records: list[dict[str, Any]] = []
    status, message = Status.OK, ""
    n_iter = int(case.iterations or task.iterations)
    last_shown = time.monotonic()
    for it in range(n_iter):
        starts = minibatch_starts(n_points, window, batch, gen).to(device)
        y0 = y_all[starts]
        target = y_all[starts.unsqueeze(0) + offsets]
        probed = it % PROBE_EVERY == 0 or it == n_iter - 1
        optimiser.zero_grad(set_to_none=True)
        cuda_peak_reset(device)
        try:
            rec = _iteration(f, lambda y0=y0, target=target: (odeint(
                solver, f, y0, t_win, mode=mode, params=params, **kwargs), target),
                task, params, probed, sync)
        except TrainingStopped as stop:
            status, message = stop.status, f"{stop.message} (at iteration {it})"
            break
        w = time.perf_counter()
        optimiser.step()
        sync()
        rec["time_step_s"] = time.perf_counter() - w
        rec["cuda_peak_bytes"] = cuda_peak_bytes(device) if cuda else None
        records.append({"iteration": it, **rec})
        if progress is not None and time.monotonic() - last_shown > 0.5:
            progress(f"iteration {it + 1}/{n_iter}")
            last_shown = time.monotonic()

    row = summarise(records, task, n_iter)
    row.update(status=str(status), message=message, model="ode", task=task.name,
               n_params=sum(p.numel() for p in params))
    if status is Status.OK and evaluate:
        row.update(_evaluate(case, solver, field, f, t_all, y_all, kwargs, window))
    return row, records


def _iteration(f: CountingRHS, forward: Callable, task: Task, params: tuple[torch.Tensor, ...],
               probed: bool, sync: Callable[[], None]) -> dict[str, Any]:
    """One forward and backward pass; the optimiser step is the caller's."""
    probe = SavedBytes() if probed else contextlib.nullcontext()
    with probe:
        f.reset()
        w0 = time.perf_counter()
        gs, target = forward()
        loss = task.loss_of(gs.ys, target)
        sync()
        w1 = time.perf_counter()
        nfe_forward = f.calls
        sol = gs.solution
        if Status(sol.status) is not Status.OK:
            raise TrainingStopped(Status(sol.status), f"forward solve: {sol.message}")
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingStopped(Status.NONFINITE, "the training loss is not finite")
        f.reset()
        loss.backward()
        sync()
        w2 = time.perf_counter()
        nfe_backward = f.calls
    back = gs.backward
    if Status(back.status) is not Status.OK:
        raise TrainingStopped(Status(back.status), f"backward pass: {back.message}")
    if not all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params):
        raise TrainingStopped(Status.NONFINITE, "the gradient has inf/NaN entries")
    return {
        "loss": value,
        "nfe_forward": nfe_forward,
        "nfe_backward": nfe_backward,
        "time_forward_s": w1 - w0,
        "time_backward_s": w2 - w1,
        "saved_bytes": probe.peak_bytes if probed else None,
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarise(records: list[dict[str, Any]], task: Task, n_iter: int) -> dict[str, Any]:
    """The per-case figures of a training run's records (what the row holds besides its
    settings): losses, time to target, totals and medians."""
    losses = [r["loss"] for r in records]
    walls = [r["time_forward_s"] + r["time_backward_s"] + r["time_step_s"] for r in records]
    plain = [w for w, r in zip(walls, records, strict=True) if r.get("saved_bytes") is None]
    to_target, time_to_target = None, math.nan
    k = max(1, task.target_window)
    for i in range(len(losses)):
        if i + 1 >= k and sum(losses[i + 1 - k: i + 1]) / k <= task.target_loss:
            to_target, time_to_target = i, float(sum(walls[: i + 1]))
            break
    saved = [r["saved_bytes"] for r in records if r.get("saved_bytes") is not None]
    return {
        "iterations": n_iter,
        "iteration_reached": len(records),
        "loss_first": losses[0] if losses else math.nan,
        "loss_final": losses[-1] if losses else math.nan,
        "loss_best": min(losses) if losses else math.nan,
        "target_loss": task.target_loss,
        "iteration_to_target": to_target,
        "time_to_target_s": time_to_target,
        "time_train_s": float(sum(walls)),
        "time_iter_median_s": _median(plain or walls),
        "nfe": int(sum(r["nfe_forward"] for r in records)),
        "nfe_backward": int(sum(r["nfe_backward"] for r in records)),
        "nfe_iter_median": _median([r["nfe_forward"] for r in records]),
        "nfe_backward_iter_median": _median([r["nfe_backward"] for r in records]),
        "mem_saved_bytes": max(saved) if saved else None,
    }


def _evaluate(case: Case, solver, field: torch.nn.Module, f: CountingRHS, t_all: torch.Tensor,
              y_all: torch.Tensor, kwargs: dict[str, Any], window: int) -> dict[str, Any]:
    """The trained field from ``y0`` over every observation time: the validation error with
    the case's own solver and setting, and (adaptive solvers in the adjoint mode, the paper's
    ODE-Net) NFE, error and time at each tolerance of :data:`EVAL_RTOL`."""
    out: dict[str, Any] = {}
    y0 = y_all[0]
    cuda = torch.device(case.device).type == "cuda"
    if not solver.adaptive:  # the training window's step size over the whole span
        kwargs = dict(n_steps=max(1, round(case.n_steps * (len(t_all) - 1) / (window - 1))))
    with torch.no_grad():
        sol = solver.solve(f, y0, t_all, **kwargs)
        if Status(sol.status) is Status.OK:
            out["val_err"] = float(torch.mean(torch.abs(sol.ys - y_all)))
        else:
            out["message"] = f"validation solve: {sol.status}: {sol.message}"
        if not (solver.adaptive and case.grad_mode == GradMode.ADJOINT):
            return out  # the ladder is the ODE-Net's (the adjoint's): Figure 3
        ref_field = copy.deepcopy(field).to(dtype=torch.float64, device="cpu")
        ref = registry.make_solver("dopri5").solve(
            ref_field, y0.to("cpu", torch.float64), t_all.to("cpu", torch.float64),
            rtol=EVAL_REFERENCE_TOL, atol=EVAL_REFERENCE_TOL, max_steps=1_000_000)
        if Status(ref.status) is not Status.OK:
            return out
        ratio = case.atol / case.rtol if case.rtol else 1.0
        controls = {k: v for k, v in kwargs.items() if k in ("controller", "backend")}
        tols, nfes, errs, times = [], [], [], []
        for rtol in EVAL_RTOL:
            f.reset()
            w0 = time.perf_counter()
            sol = solver.solve(f, y0, t_all, rtol=rtol, atol=rtol * ratio,
                               max_steps=case.max_steps, **controls)
            if cuda:
                torch.cuda.synchronize(case.device)
            wall = time.perf_counter() - w0
            if Status(sol.status) is not Status.OK:
                continue
            err = float(np.max(np.abs(sol.ys.detach().to("cpu", torch.float64).numpy()
                                      - ref.ys.numpy())))
            tols.append(rtol)
            nfes.append(f.calls)
            errs.append(err)
            times.append(wall)
    out.update(eval_rtol=tols, eval_nfe=nfes, eval_err=errs, eval_time_s=times)
    return out

