"""The ``host`` backend: the RK stepper's arithmetic in Python floats, for a small float64 CPU
state.

For a handful of numbers, a torch op costs microseconds of dispatch while the arithmetic costs
nanoseconds: at batch 1 the stage combinations, the error estimate and the step bookkeeping on
tensors cost about half as much again as the six right-hand-side calls of a DOPRI5 step. Here
the state and the stages are Python lists of floats, combined in the order Hairer's DOPRI5
writes them (``y + h*(a1*k1 + a2*k2 + ...)``, left to right), and ``f`` still gets a torch
tensor in the user's shape. The loop, the controller and the norm's rule are the engine's own
(:mod:`solvers.loop`; :meth:`solvers.norms.RMSNorm.floats`), so the steps are the tensor
backend's, and the Hairer step-count tests hold on both.

:class:`solvers.rk.RungeKutta` takes this backend (``auto``) when nothing records a gradient,
the state is float64 on the CPU with at most :data:`HOST_MAX` elements, the norm is the
default RMS, and no ``record_steps`` or ``callback`` is asked for; ``backend="host"`` asks for
it at any size, ``backend="tensor"`` never takes it. :attr:`Solution.backend` records which ran.
"""

from __future__ import annotations

import torch

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


class HostStages:
    """The stage engine of the ``host`` backend: the interface of :mod:`solvers.stages`'s
    engines on Python lists. ``f`` gets one preallocated float64 tensor in the user's shape,
    whose memory numpy writes the stage input into; its result comes back as a list. Tensors
    are made only where an output falls inside a step (:meth:`tensors`, :meth:`stacked`)."""

    def __init__(self, plan: HostPlan, f, shape: torch.Size, n: int) -> None:
        self.f, self.shape, self.flat = f, shape, len(shape) == 1
        self.xbuf = torch.empty(shape, dtype=torch.float64)  # f's input, in the user's shape
        self.xn = self.xbuf.numpy().reshape(-1)
        combos, self.comb_b, self.comb_e = plan.compiled(n)
        self.stage_plans = list(zip(plan.c[1:], combos, strict=True))
        self.s, self.fsal = plan.s, plan.fsal
        self.ks: list = [None] * plan.s
        self.zeros = [0.0] * n
        self.nfe = 0

    def call(self, t: float, vals: list[float]) -> list[float]:
        self.nfe += 1
        self.xn[:] = vals
        k = self.f(t, self.xbuf)
        if k.shape != self.shape:
            k = k.reshape(self.shape)  # what the tensor engines do; raises on a wrong size
        return k.tolist() if self.flat else k.reshape(-1).tolist()

    def first(self, t: float, y: list[float]) -> list[float]:
        return self.call(t, y)

    def step(self, t: float, y: list[float], k1: list[float], h: float) -> list[float]:
        ks = self.ks
        ks[0] = k1
        y1 = None
        last = self.s - 1
        for i, (ci, comb) in enumerate(self.stage_plans, start=1):
            yi = comb(y, ks, h)
            if self.fsal and i == last:
                y1 = yi
            ks[i] = self.call(t + ci * h, yi)
        return self.comb_b(y, ks, h) if y1 is None else y1

    def error_norm(self, norm, h, y, y1, rtol, atol) -> float:
        return norm.floats(self.comb_e(self.zeros, self.ks, 1.0), h, y, y1, rtol, atol)

    def carry(self) -> list[float]:
        return self.ks[-1]

    @staticmethod
    def tensors(y, k1, y1):
        return tuple(torch.tensor([v], dtype=torch.float64) for v in (y, k1, y1))

    def stacked(self) -> torch.Tensor:
        return torch.tensor(self.ks, dtype=torch.float64)

    def final(self) -> torch.Tensor:
        return self.stacked()[-1:]

    @staticmethod
    def keep(x):
        return x
