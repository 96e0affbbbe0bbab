"""The one entry point: a differentiable solve in any gradient mode, for any torch solver.

::

    gs = odeint(solver, f, y0, t, mode="adjoint", rtol=1e-6, atol=1e-8)
    loss = loss_fn(gs.ys)
    grads = torch.autograd.grad(loss, (y0, *f.parameters()))
    gs.solution.nfe, gs.backward.nfe   # the solver's own counts, forward and backward

Every call of ``f`` in the forward *and* the backward pass goes through the ``f`` passed in
(adjoint: one call per augmented evaluation, its vector-Jacobian product by autograd on that
call's graph; checkpoint: the replayed steps; time gradients: one call per output time), so a
counting wrapper around ``f`` counts forward and backward evaluations if it is reset between.

A solver may supply its own gradient modes (a peer wrapping another library's backprop and
adjoint, e.g. torchdiffeq's ``odeint_adjoint``) by declaring ``Capability.OWN_GRADIENTS`` in
its ``capabilities`` and defining ::

    def odeint_grad(self, f, y0, t, *, mode, params, backward, rtol, atol, n_steps, max_steps,
                    **options) -> tuple[Tensor, Solution]

:func:`odeint` then hands it every mode but ``none`` (after :func:`check_mode` against its
``grad_modes``): it returns ``ys`` (differentiable through ``mode``) and the forward solve's
record, fills the :class:`BackwardStats` ``backward`` as the backward pass runs (``done``, and
``nfe``, ``n_steps`` ... where it can; -1 where unknown) and must pass every call of ``f``
through the ``f`` it is given. ``options`` are :func:`odeint`'s, to be checked as ``solve``
checks them (:meth:`~solvers.base.Solver.request`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from solvers.base import RHS, Capability, GradMode, Solver
from solvers.gradients import adjoint, backprop, checkpoint
from solvers.gradients.common import (
    BACKWARD_OPTIONS,
    GradSolve,
    Run,
    capabilities_of,
    check_mode,
    parameters_of,
)


def odeint(
    solver: Solver,
    f: RHS,
    y0: torch.Tensor,
    t: torch.Tensor,
    *,
    mode: GradMode | str = GradMode.BACKPROP,
    params: Sequence[torch.Tensor] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    n_steps: int | None = None,
    max_steps: int | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    **options: Any,
) -> GradSolve:
    """Solve ``dy/dt = f(t, y)`` at the times ``t`` so that ``ys`` can be differentiated.

    ``mode``: a :class:`GradMode` (or its value); refused up front by :func:`check_mode` if the
    solver cannot do it. ``params``: the tensors ``f`` depends on that gradients are wanted for
    (default ``f.parameters()`` when ``f`` has them; those not requiring grad are skipped). The
    adjoint needs them explicitly, since its backward pass computes their gradient itself;
    the other modes let autograd find them. ``rtol``/``atol``/``n_steps``/``max_steps`` go to
    ``solver.solve`` in the forward pass and, for the adjoint, the backward solves too, unless
    ``adjoint_rtol``/``adjoint_atol`` give the backward solves their own tolerances.
    ``options``: the solver's own solve options (the keywords of its capabilities, e.g.
    ``controller``, ``backend``, ``callback``; the solver refuses those it does not take), for
    the forward solve; the adjoint's backward solves get the ``controller`` too
    (:data:`~solvers.gradients.common.BACKWARD_OPTIONS`). The options a mode sets itself
    (checkpoint's ``record_steps``, the adjoint's ``norm`` and ``step_grid`` in the backward
    solves) are the mode's.

    ``ys`` is differentiable w.r.t. ``y0``, the parameters and ``t`` (when they require grad).
    ``mode="none"`` solves under ``no_grad``.
    """
    m = check_mode(solver, mode)
    if not isinstance(y0, torch.Tensor) or not y0.is_floating_point():
        raise ValueError("`y0` must be a floating-point torch.Tensor")
    if not isinstance(t, torch.Tensor):
        raise ValueError("`t` must be a torch.Tensor of output times")
    kwargs = {"rtol": rtol, "atol": atol, "n_steps": n_steps, "max_steps": max_steps}
    run = Run(solver, f, t, kwargs | options, parameters_of(f, params))
    run.backward_kwargs = kwargs | {k: v for k, v in options.items() if k in BACKWARD_OPTIONS}
    if adjoint_rtol is not None or adjoint_atol is not None:
        run.backward_kwargs |= {
            "rtol": rtol if adjoint_rtol is None else adjoint_rtol,
            "atol": atol if adjoint_atol is None else adjoint_atol}
    if m == GradMode.NONE:
        with torch.no_grad():
            sol = run.solve(f, y0, t)
        run.backward.done = True
        return GradSolve(sol.ys, sol, m, run.backward)
    # a peer that computes its gradients itself (see the module docstring)
    if Capability.OWN_GRADIENTS in capabilities_of(solver):
        ys, sol = solver.odeint_grad(f, y0, t, mode=m, params=run.params, backward=run.backward,
                                     **kwargs, **options)
        return GradSolve(ys, sol, m, run.backward)
    if m == GradMode.BACKPROP:
        ys, sol = backprop.solve(run, y0)
        if ys.requires_grad:  # autograd replays the graph; note when it gets there
            ys.register_hook(lambda g: _mark_done(run))
    elif m == GradMode.CHECKPOINT:
        ys, sol = checkpoint.solve(run, y0)
    else:
        ys, sol = adjoint.solve(run, y0, seminorm=m == GradMode.ADJOINT_SEMINORM)
    return GradSolve(ys, sol, m, run.backward)


def _mark_done(run: Run) -> None:
    run.backward.done = True
