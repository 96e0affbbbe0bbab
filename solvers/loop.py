"""The engine's step loop, written once: a stepper, a step rule and the output collection.

:func:`integrate` runs every shared-step solve of the RK solvers, fixed or adaptive, on either
backend. What varies is passed in:

- the **stepper** (a stage engine of :mod:`solvers.stages`, or :mod:`solvers.rk_host`'s on
  Python floats): one step's stages and new state, its error norm, the carried first stage;
- the **step rule**: :class:`Adaptive` (a controller of :mod:`solvers.controllers` deciding
  from a norm of :mod:`solvers.norms`, Hairer's last-step rule and failure checks) or
  :class:`Grid` (fixed steps on a given grid, every step accepted);
- the **output** (:mod:`solvers.output`): the requested times that each accepted step
  reaches, filled from its dense output;
- optionally a record of the accepted steps (the ``checkpoint`` gradient) and a ``callback``
  object whose ``step``, ``accept`` and ``reject`` methods are called around each attempt
  (torchdiffeq's ``callback_step``, ``callback_accept_step``, ``callback_reject_step``).

The controller decides on Python floats, detached; the one host sync per adaptive step is the
error norm. A step per trajectory (:mod:`solvers.per_trajectory`) has its own loop: there the
step rule is branch-free over ``[B]`` tensors (every trajectory's clock, last-step rule and
failure masked), with the same controller objects, norms and initial steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solvers.base import Solution, Status, StepRecord
from solvers.control import clip_to_end, nonfinite_failure, step_failure
from solvers.controllers import Controller


@dataclass
class LoopResult:
    """How a loop ended: the status and message, the accepted and rejected steps, and the time
    and state (the stepper's form) it reached."""

    status: Status
    message: str
    n_accepted: int
    n_rejected: int
    t_reached: float
    y: object

    def solution(self, ys, nfe: int, **fields) -> Solution:
        """The :class:`~solvers.base.Solution` of a solve that ended so: its outputs ``ys``,
        its ``nfe`` and the solver's own ``fields`` (steps, backend, controller, counts)."""
        return Solution(ys=ys, status=self.status, message=self.message,
                        n_steps=self.n_accepted + self.n_rejected, n_accepted=self.n_accepted,
                        n_rejected=self.n_rejected, nfe=nfe, t_reached=self.t_reached, **fields)


class Adaptive:
    """Steps set by ``controller`` from the ``norm`` of each step's error estimate."""

    def __init__(self, controller: Controller, norm, rtol: float, atol: float, max_steps: int,
                 t_end: float, eps: float) -> None:
        self.ctrl, self.norm = controller, norm
        self.rtol, self.atol, self.max_steps = rtol, atol, max_steps
        self.t_end, self.eps = t_end, eps
        self.bad = 0  # consecutive rejections with an inf/NaN error estimate

    def failure(self, n_attempted: int, t: float, h: float):
        return step_failure(n_attempted, self.max_steps, h, t, self.eps)

    def clip(self, t: float, h: float) -> tuple[float, float, bool]:
        """The step to attempt from ``t``: ``(h, t1, last)``; the last ends exactly at the end."""
        h, last = clip_to_end(t, h, self.t_end)
        return h, (self.t_end if last else t + h), last

    def decide(self, eng, t: float, h: float, y, y1):
        """``(accepted, h_new, failure)``: the controller's decision on the step's error norm,
        and ``(status, message)`` when a rejection stops the solve."""
        err = eng.error_norm(self.norm, h, y, y1, self.rtol, self.atol)
        accepted, h_new = self.ctrl.decide(err, h)
        if accepted:
            self.bad = 0
            return True, h_new, None
        if not math.isfinite(err):
            self.bad += 1
            return False, h_new, nonfinite_failure(self.bad, t)
        if self.ctrl.at_floor(h):
            return False, h_new, (
                Status.STEP_TOO_SMALL,
                f"error estimate {err:.3g} above tolerance at the smallest step "
                f"hmin={self.ctrl.hmin:g}, t = {t:g}",
            )
        return False, h_new, None


class Grid:
    """Fixed steps from ``grid[0]`` to ``grid[-1]``: ``h`` the uniform step (None: each step
    is its interval), at most ``max_steps`` of them (None: all)."""

    def __init__(self, grid: list[float], h: float | None, max_steps: int | None) -> None:
        self.grid, self.h = grid, h
        self.n_steps = len(grid) - 1
        self.max_steps = max_steps
        self.limit = self.n_steps if max_steps is None else min(self.n_steps, max_steps)
        self.n = 0

    def failure(self, n_attempted: int, t: float, h: float):
        if n_attempted >= self.limit:
            return (Status.MAX_STEPS,
                    f"stopped after max_steps={self.max_steps} of n_steps={self.n_steps} steps")
        return None

    def clip(self, t: float, h: float) -> tuple[float, float, bool]:
        n = self.n
        t1 = self.grid[n + 1]
        return (self.h if self.h is not None else t1 - self.grid[n]), t1, n + 1 == self.n_steps

    def decide(self, eng, t: float, h: float, y, y1):
        self.n += 1
        return True, h, None


def integrate(eng, rule, out, dense, t: float, y, k1, h: float, *, fsal: bool,
              records: list[StepRecord] | None = None, callback=None) -> LoopResult:
    """Step from ``(t, y)`` (``k1`` its first stage, or None) with first step ``h`` until the
    ``rule`` ends or stops the solve, filling ``out``."""
    n_acc = n_rej = 0
    carried = pending = None
    status, message = Status.OK, ""
    while True:
        failure = rule.failure(n_acc + n_rej, t, h)
        if failure is not None:
            status, message = failure
            break
        h, t1, last = rule.clip(t, h)
        if k1 is None:
            k1 = eng.first(t, y)
            if pending is not None:
                dense.resolve(out, pending, eng.tensors(y, k1, y)[1])
                pending = None
        if callback is not None:
            callback.step(t, y, h)
        y1 = eng.step(t, y, k1, h)
        accepted, h_new, failure = rule.decide(eng, t, h, y, y1)
        if accepted:
            n_acc += 1
            if records is not None:
                records.append(StepRecord(t, h, t1, y, carried))
            if not out.quiet(t, t1):
                y_t, k1_t, y1_t = eng.tensors(y, k1, y1)
                pending = dense.emit(out, eng, t, y_t, k1_t, t1, y1_t, h)
            if callback is not None:
                callback.accept(t, y, h)
            t, y = t1, y1
            if last:
                break
            if fsal:
                k1 = eng.carry()
                carried = k1 if records is None else eng.keep(k1)
            else:
                k1 = carried = None
        else:
            n_rej += 1
            if callback is not None:
                callback.reject(t, y, h)
            if failure is not None:
                status, message = failure
                break
        h = h_new
    if pending is not None:
        k = eng.first(t, y)
        dense.resolve(out, pending, eng.tensors(y, k, y)[1])
    return LoopResult(status, message, n_acc, n_rej, t, y)
