"""The adaptive RK loop for a small float64 state on the CPU, in Python floats.

For a handful of numbers, a torch op costs microseconds of dispatch while the arithmetic costs
nanoseconds: at batch 1 the stage combinations, the error estimate and the step bookkeeping of
:mod:`solvers.rk` cost about half as much again as the six right-hand-side calls of a DOPRI5
step. Here the state and the stages are Python lists of floats, combined in the order Hairer's
DOPRI5 writes them (``y + h*(a1*k1 + a2*k2 + ...)``, left to right), and ``f`` still gets a
torch tensor in the user's shape: one preallocated float64 tensor whose memory numpy writes
the stage input into. Tensors are made only where an output time falls inside a step (dense
output reuses :mod:`solvers.dense` on them).

:meth:`solvers.rk.RungeKutta.solve` takes this path when nothing records a gradient, the state
is float64 on the CPU with at most :data:`HOST_MAX` elements, and no ``error_channels`` or
``record_steps`` are asked for; the decisions are the same code (:mod:`solvers.control`), so
the Hairer step-count tests hold on both paths.
"""

from __future__ import annotations

import math

import torch

from solvers.base import Status
from solvers.control import clip_to_end, nonfinite_failure, step_failure
from solvers.norms import error_norm_floats

HOST_MAX = 8
"""The largest state (elements, all trajectories) that takes the Python-float loop."""


def _weights(row) -> list[tuple[int, float]]:
    return [(j, float(w)) for j, w in enumerate(row) if float(w) != 0.0]


class HostPlan:
    """A tableau's nonzero coefficients as ``(stage, weight)`` lists, one per combination."""

    def __init__(self, tableau) -> None:
        rows = tableau.a_rows()
        self.c = [float(x) for x in tableau.c]
        self.rows = [_weights(r) for r in rows]
        self.b = _weights(tableau.b)
        self.e = _weights(tableau.b_err) if tableau.b_err is not None else None
        self.s = tableau.stages
        self.fsal = tableau.fsal
        self._compiled: dict[int, tuple] = {}

    def compiled(self, n: int) -> tuple:
        """``(stage combinations [1..s-1], b, e)`` unrolled for ``n`` elements, made once."""
        hit = self._compiled.get(n)
        if hit is None:
            hit = self._compiled[n] = (
                [compile_combination(r, n) for r in self.rows[1:]],
                compile_combination(self.b, n),
                compile_combination(self.e, n) if self.e else None,
            )
        return hit


def compile_combination(plan: list[tuple[int, float]], n: int):
    """``y + h * (w1*k_j1 + w2*k_j2 + ...)`` for states of ``n`` elements (Python lists),
    summed left to right as DOPRI5 writes it, unrolled into one expression per element (the
    weights as exact float literals, ``repr`` round-trips a float): the per-element loops of a
    generic version cost more than the arithmetic. A single weight is ``y + (h*w)*k``, as the
    tensor path's ``torch.add(y, k, alpha=h*w)``. Returns ``g(y, ks, h) -> list``."""
    if not plan:  # an all-zero row: the stage input is y itself
        src = "def g(y, ks, h):\n    return list(y)\n"
    elif len(plan) == 1:
        j, w = plan[0]
        body = ", ".join(f"y[{m}] + hw * ks[{j}][{m}]" for m in range(n))
        src = f"def g(y, ks, h):\n    hw = h * {w!r}\n    return [{body}]\n"
    else:

        def acc(m: int) -> str:
            return " + ".join(f"{w!r} * ks[{j}][{m}]" for j, w in plan)

        body = ", ".join(f"y[{m}] + h * ({acc(m)})" for m in range(n))
        src = f"def g(y, ks, h):\n    return [{body}]\n"
    scope: dict = {}
    exec(compile(src, f"<rk_host combination {plan}>", "exec"), scope)  # noqa: S102
    return scope["g"]


class _Stages:
    """What :meth:`RungeKutta._emit` and :meth:`RungeKutta._dense` read of a step, as
    tensors made on demand (only for steps with an output inside)."""

    def __init__(self, ks: list[list[float]], like: torch.Tensor) -> None:
        self.K = torch.tensor(ks, dtype=like.dtype)

    def stacked(self) -> torch.Tensor:
        return self.K

    def final(self) -> torch.Tensor:
        return self.K[-1:]

    @staticmethod
    def keep(x: torch.Tensor) -> torch.Tensor:
        return x


def adaptive_host(
    solver, f, shape, y_row, k1_row, t, t_end, h, out, rtol, atol, max_steps, state_dim, ctrl
):
    """The loop of :meth:`RungeKutta._adaptive` on Python floats; the same return value
    ``(status, message, n_acc, n_rej, t_reached, nfe)``, ``nfe`` the calls made here."""
    with torch.no_grad():
        return _loop(
            solver,
            f,
            shape,
            y_row,
            k1_row,
            t,
            t_end,
            h,
            out,
            rtol,
            atol,
            max_steps,
            state_dim,
            ctrl,
        )


def _loop(
    solver, f, shape, y_row, k1_row, t, t_end, h, out, rtol, atol, max_steps, state_dim, ctrl
):
    plan: HostPlan = solver._host_plan()
    s, fsal, c = plan.s, plan.fsal, plan.c
    like = y_row
    xbuf = torch.empty(shape, dtype=torch.float64)  # f's input, in the user's shape
    xn = xbuf.numpy().reshape(-1)
    flat = len(shape) == 1
    nfe = 0

    def call(tt: float, vals: list[float]) -> list[float]:
        nonlocal nfe
        nfe += 1
        xn[:] = vals
        k = f(tt, xbuf)
        if k.shape != shape:
            k = k.reshape(shape)  # what ``fv`` does; raises on a wrong size
        return k.tolist() if flat else k.reshape(-1).tolist()

    def row(vals: list[float]) -> torch.Tensor:
        return torch.tensor([vals], dtype=like.dtype)

    y = y_row.tolist()[0]
    ks: list = [None] * s
    ks[0] = k1_row.tolist()[0]
    eps = out.eps
    decide = ctrl.decide
    n_acc = n_rej = bad = 0
    pending = None
    status, message = Status.OK, ""
    combos, comb_b, comb_e = plan.compiled(len(y))
    stage_plans = list(zip(c[1:], combos, strict=True))
    zeros = [0.0] * len(y)
    while True:
        failure = step_failure(n_acc + n_rej, max_steps, h, t, eps)
        if failure is not None:
            status, message = failure
            break
        h, last = clip_to_end(t, h, t_end)
        if ks[0] is None:
            ks[0] = call(t, y)
            if pending is not None:
                solver._resolve(out, pending, row(ks[0]))
                pending = None
        y1 = None
        for i, (ci, comb) in enumerate(stage_plans, start=1):
            yi = comb(y, ks, h)
            if fsal and i == s - 1:
                y1 = yi
            ks[i] = call(t + ci * h, yi)
        if y1 is None:
            y1 = comb_b(y, ks, h)
        err_vec = comb_e(zeros, ks, 1.0)
        err = error_norm_floats(err_vec, h, y, y1, rtol, atol, state_dim)
        accepted, h_new = decide(err, h)
        if accepted:
            n_acc += 1
            bad = 0
            t1 = t_end if last else t + h
            if not out.quiet(t, t1):
                y_t, y1_t = row(y), row(y1)
                eng = _Stages(ks, like)
                pending = solver._emit(out, eng, t, y_t, row(ks[0]), t1, y1_t, h)
            t, y = t1, y1
            if fsal:
                ks = [ks[-1]] + [None] * (s - 1)
            else:
                ks = [None] * s
            if last:
                break
        else:
            n_rej += 1
            if not math.isfinite(err):
                bad += 1
                failure = nonfinite_failure(bad, t)
                if failure is not None:
                    status, message = failure
                    break
        h = h_new
    if pending is not None:
        solver._resolve(out, pending, row(call(t, y)))
    return status, message, n_acc, n_rej, t, nfe
