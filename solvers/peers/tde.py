"""torchdiffeq's solvers as peers: ``tde-dopri5``, ``tde-dopri8``, ``tde-bosh3`` (adaptive),
``tde-rk4``, ``tde-euler`` (fixed step).

torchdiffeq (Chen, Rubanova, Bettencourt, Duvenaud, "Neural ordinary differential equations",
NeurIPS 2018; https://github.com/rtqichen/torchdiffeq), tested with 0.2.5, through its public
API only: ``torchdiffeq.odeint`` and ``torchdiffeq.odeint_adjoint``.

Gradient modes: ``backprop`` is its ``odeint`` (autograd through its steps, including its
step-size computation, which it does not detach); ``adjoint`` is its ``odeint_adjoint`` with
``adjoint_params`` = the parameters asked for; ``adjoint-seminorm`` is ``odeint_adjoint`` with
``adjoint_options=dict(norm="seminorm")`` (for the fixed-step methods it equals ``adjoint``).
The solver declares ``Capability.OWN_GRADIENTS`` and hands the gradient modes to torchdiffeq
through ``odeint_grad`` (see :func:`solvers.gradients.odeint`).

Fixed-step methods: torchdiffeq steps on a grid from ``t[0]`` to ``t[-1]`` and interpolates
*linearly* between grid points to the requested times (its default ``interp="linear"``), so
output times do not force the grid; but the output between grid points is only first-order
accurate (our ``rk4`` uses a cubic Hermite interpolant). We pass the grid with its
``grid_constructor`` option: ``n_steps`` uniform steps over the span. Its ``step_size`` option
was the first choice, but it builds ``ceil(span / step_size + 1)`` points, and the rounding of
``span / n_steps`` gives one extra sliver step for about 3% of ``n_steps`` (e.g. span 10,
``n_steps`` 61 takes 62 steps). For the adjoint's backward solves (one per output interval)
the same constructor gives ``max(1, round(n_steps * interval / span))`` uniform steps.
torchdiffeq's ``rk4`` is Kutta's 3/8-rule variant (its ``rk4_alt_step_func``), not the
classical tableau our ``rk4`` uses: same order, different error constant.

Adaptive methods take ``rtol``/``atol`` and ``options=dict(max_num_steps=max_steps)``.
torchdiffeq's ``max_num_steps`` bounds the *attempted* steps of each output interval (its
counter restarts at every requested time), not of the whole solve. Its failures are assertions:
``max_num_steps exceeded`` -> ``max_steps``; ``underflow in dt`` -> ``step_too_small``;
``non-finite values`` -> ``nonfinite``; anything else -> ``error`` with the message. Outputs
that are not finite without an assertion are :class:`~solvers.base.Solver`'s ``nonfinite``.

Counts: torchdiffeq reports none. ``nfe`` is the calls of ``f`` this wrapper passed on (the
harness's wrapper sees the same calls). ``n_steps`` is derived from it: the attempted steps,
``(nfe - 2) / stages`` (2 calls to start: ``f(t0, y0)`` and one for the initial step size;
``stages`` new calls per attempt: dopri5 6, bosh3 3 (both FSAL), dopri8 13 (12 stages plus
``f`` at the new point, which torchdiffeq evaluates because its tableau is not FSAL));
``n_accepted``/``n_rejected`` are unknown (-1). Fixed step: ``n_steps`` = ``n_accepted`` = the
grid's steps.

``f`` receives ``t`` as a 0-d tensor (torchdiffeq's convention) and ``y`` of ``y0``'s shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from harness.registry import register_solver
from solvers.base import (
    DEFAULT_MAX_STEPS,
    RHS,
    Capability,
    GradMode,
    Request,
    Solution,
    Solver,
    Status,
    finite_rows,
)
from solvers.gradients.common import BackwardStats
from solvers.peers import optional_import

MISSING: list[str] = []
torchdiffeq = optional_import("torchdiffeq", MISSING)

# name -> (torchdiffeq method, order, adaptive, new calls of f per attempted step)
METHODS: dict[str, tuple[str, int, bool, int]] = {
    "tde-dopri5": ("dopri5", 5, True, 6),
    "tde-dopri8": ("dopri8", 8, True, 13),
    "tde-bosh3": ("bosh3", 3, True, 3),
    "tde-rk4": ("rk4", 4, False, 4),
    "tde-euler": ("euler", 1, False, 1),
}
START_CALLS = 2  # adaptive: f(t0, y0) and the trial evaluation of the initial step size


class _Field(nn.Module):
    """``f`` as the ``nn.Module`` torchdiffeq's adjoint wants; counts the calls it passes on,
    forward and (after :meth:`backward_phase`) backward apart."""

    def __init__(self, f: RHS) -> None:
        super().__init__()
        self.f = f
        self.calls = 0
        self.backward: BackwardStats | None = None

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.backward is not None:
            self.backward.nfe += 1
            self.backward.done = True
        else:
            self.calls += 1
        return self.f(t, y)

    def backward_phase(self, stats: BackwardStats) -> None:
        self.backward = stats


def _status_of(exc: BaseException) -> Status:
    text = str(exc)
    if "max_num_steps exceeded" in text:
        return Status.MAX_STEPS
    if "underflow in dt" in text:
        return Status.STEP_TOO_SMALL
    if "non-finite" in text or "nan" in text.lower().split():
        return Status.NONFINITE
    return Status.ERROR


def _uniform_grid(n_steps: int, span: float):
    """torchdiffeq ``grid_constructor``: uniform steps, ``n_steps`` over the whole ``span``."""

    def grid(func: Any, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        length = abs(float(t[-1] - t[0]))
        n = max(1, round(n_steps * length / span)) if span > 0 else n_steps
        return torch.linspace(float(t[0]), float(t[-1]), n + 1, dtype=t.dtype, device=t.device)

    return grid


class TorchdiffeqSolver(Solver):
    """One torchdiffeq method behind our contract (forward solve and gradient modes)."""

    differentiable = True
    capabilities = frozenset({Capability.OWN_GRADIENTS})  # odeint_grad: torchdiffeq's adjoint

    def __init__(self, name: str) -> None:
        if torchdiffeq is None:
            raise RuntimeError("torchdiffeq is not installed: pip install 'odebench[peers]'")
        self.name = name
        self.method, self.order, self.adaptive, self._per_step = METHODS[name]
        self.grad_modes = (
            GradMode.NONE, GradMode.BACKPROP, GradMode.ADJOINT, GradMode.ADJOINT_SEMINORM,
        )
        self.kind = "torchdiffeq, " + ("adaptive" if self.adaptive else "fixed step")
        self.description = (
            f"torchdiffeq {torchdiffeq.__version__} method {self.method!r}"
            + ("" if self.adaptive else " (grid of n_steps, linear interpolation to t)")
        )

    # -- the options torchdiffeq takes ---------------------------------------------------

    def _options(self, req: Request) -> dict[str, Any]:
        if self.adaptive:
            opts = {"max_num_steps": req.max_steps or DEFAULT_MAX_STEPS}
            return {"rtol": req.rtol, "atol": req.atol, "method": self.method, "options": opts}
        span = abs(req.times[-1] - req.times[0])
        grid = _uniform_grid(req.n_steps, span)
        return {"method": self.method, "options": {"grid_constructor": grid}}

    def _solution(self, ys, field: _Field, t, n_steps, status=Status.OK, message="",
                  raised: bool = False) -> Solution:
        if self.adaptive:
            attempts, rem = divmod(field.calls - START_CALLS, self._per_step)
            steps = attempts if rem == 0 and attempts >= 0 else -1
            n_acc = n_rej = -1
        else:
            steps = n_acc = -1 if raised else n_steps
            n_rej = 0
        return Solution(
            ys=ys,
            status=status,
            message=message,
            n_steps=steps,
            n_accepted=n_acc,
            n_rejected=n_rej,
            nfe=field.calls,
            t_reached=float(t[-1]) if status == Status.OK else None,
        )

    def _failed(self, exc: BaseException, field, y0, t, n_steps) -> Solution:
        ys = torch.full((len(t), *y0.shape), float("nan"), dtype=y0.dtype, device=y0.device)
        if y0.requires_grad:  # keep the graph connected, so a gradient case fails by status
            ys = ys + 0 * y0.sum()
        ys[0] = y0
        msg = f"torchdiffeq {self.method}: {type(exc).__name__}: {exc}"
        sol = self._solution(ys, field, t, n_steps, _status_of(exc), msg, raised=True)
        sol.t_reached = float(t[0])
        return sol

    # -- the contract ----------------------------------------------------------------------

    def _solve(self, request: Request) -> Solution:
        """``torchdiffeq.odeint``; differentiable by autograd (``backprop``)."""
        kw = self._options(request)
        y0, t, n_steps = request.y0, request.t, request.n_steps
        field = _Field(request.f)
        try:
            ys = torchdiffeq.odeint(field, y0, t, **kw)
        except (AssertionError, RuntimeError) as exc:
            return self._failed(exc, field, y0, t, n_steps)
        return self._solution(ys, field, t, n_steps)

    def odeint_grad(
        self,
        f: RHS,
        y0: torch.Tensor,
        t: torch.Tensor,
        *,
        mode: GradMode,
        params: Sequence[torch.Tensor],
        backward: BackwardStats,
        rtol: float | None = None,
        atol: float | None = None,
        n_steps: int | None = None,
        max_steps: int | None = None,
        **options: Any,
    ) -> tuple[torch.Tensor, Solution]:
        """The gradient modes by torchdiffeq itself (the hook :func:`solvers.gradients.odeint`
        calls): ``backprop`` = ``odeint``; ``adjoint``/``adjoint-seminorm`` = ``odeint_adjoint``.

        ``backward.nfe`` counts the calls of ``f`` in the backward pass (the adjoint's
        augmented evaluations); torchdiffeq reports no backward steps, so ``backward.n_steps``
        and ``n_rejected`` are -1 for the adjoint (0 for backprop, which does not call ``f``).
        ``options`` are checked as :meth:`solve` checks them (torchdiffeq takes none of ours).
        """
        if mode == GradMode.BACKPROP:
            sol = self.solve(f, y0, t, rtol=rtol, atol=atol, n_steps=n_steps,
                             max_steps=max_steps, **options)
            if sol.ys.requires_grad:
                sol.ys.register_hook(lambda g: _mark(backward))
            return sol.ys, sol
        req = self.request(f, y0, t, rtol, atol, n_steps, max_steps, options)
        kw = self._options(req)
        adjoint_options = dict(kw["options"])
        if mode == GradMode.ADJOINT_SEMINORM and self.adaptive:
            adjoint_options["norm"] = "seminorm"
        field = _Field(f)
        try:
            ys = torchdiffeq.odeint_adjoint(
                field, y0, t, adjoint_params=tuple(params), adjoint_options=adjoint_options, **kw
            )
        except (AssertionError, RuntimeError) as exc:
            sol = self._failed(exc, field, y0, t, req.n_steps)
            return sol.ys, sol
        field.backward_phase(backward)
        backward.n_solves = len(t) - 1
        backward.n_steps = backward.n_rejected = backward.n_accepted = -1
        sol = finite_rows(self._solution(ys, field, t, req.n_steps), req.times)
        return sol.ys, sol


def _mark(backward: BackwardStats) -> None:
    backward.done = True


def _factory(name: str):
    def make() -> TorchdiffeqSolver:
        return TorchdiffeqSolver(name)

    make.__doc__ = f"torchdiffeq's {METHODS[name][0]!r} (peer)."
    return make


if torchdiffeq is not None:
    for _name in METHODS:
        register_solver(_name)(_factory(_name))
