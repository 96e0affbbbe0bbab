"""What every gradient mode shares: the run it differentiates, its records, the mode check.

A :class:`Run` bundles the solver, the right-hand side, the output times and the solve options
of one differentiable solve, and collects what the forward and backward passes report
(:class:`BackwardStats`). The modes live in their own modules: :mod:`.backprop`,
:mod:`.adjoint`, :mod:`.checkpoint`; :mod:`.api` is the one entry point.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from solvers.base import RHS, GradMode, Solution, Solver, Status


@dataclass
class BackwardStats:
    """What the backward pass did, filled when it runs (``done`` tells whether it has).

    ``n_steps``/``n_accepted``/``n_rejected``/``nfe``: the solver's own counts over all backward
    solves (adjoint: the augmented solves, one per output interval; checkpoint: the replayed
    steps, ``nfe`` = calls of ``f`` made to rebuild them; backprop: zero, autograd replays the
    recorded graph without calling ``f``); the calls for gradients w.r.t. ``t`` (one per
    output time, see :mod:`.times`) are not in ``nfe``, a counting ``f`` sees them.
    ``n_solves``: the backward solves (adjoint).
    ``status``: the worst status of the backward solves (a failed adjoint solve leaves NaN
    gradients and says so here rather than raising inside autograd).
    """

    done: bool = False
    n_solves: int = 0
    n_steps: int = 0
    n_accepted: int = 0
    n_rejected: int = 0
    nfe: int = 0
    status: Status = Status.OK
    message: str = ""

    def add(self, sol: Solution) -> None:
        self.n_solves += 1
        self.n_steps += sol.n_steps
        self.n_accepted += sol.n_accepted
        self.n_rejected += sol.n_rejected
        self.nfe += sol.nfe
        if sol.status != Status.OK and self.status == Status.OK:
            self.status, self.message = sol.status, sol.message


@dataclass
class GradSolve:
    """What :func:`solvers.gradients.odeint` returns.

    ``ys``: ``[len(t), *y0.shape]``, differentiable w.r.t. ``y0``, the parameters and ``t``
    through the chosen ``mode``. ``solution``: the forward solve's record (status and counts;
    its ``ys`` are the same values). ``backward``: filled when the gradient is taken.
    """

    ys: torch.Tensor
    solution: Solution
    mode: GradMode
    backward: BackwardStats = field(default_factory=BackwardStats)


@dataclass
class Run:
    """One differentiable solve: the solver, ``f``, ``t`` and the solve keywords."""

    solver: Solver
    f: RHS
    t: torch.Tensor
    solve_kwargs: dict[str, Any]
    params: tuple[torch.Tensor, ...]
    solution: Solution | None = None
    backward: BackwardStats = field(default_factory=BackwardStats)
    # the adjoint's backward solves: these keywords where given (their own tolerances), else
    # the forward solve's
    backward_kwargs: dict[str, Any] | None = None

    def solve(self, f: RHS, y0: torch.Tensor, t: torch.Tensor, **extra: Any) -> Solution:
        return self.solver.solve(f, y0, t, **self.solve_kwargs, **extra)


def row_rhs(f: RHS, shape: torch.Size) -> Callable[[float, torch.Tensor], torch.Tensor]:
    """``f`` on rows ``[1, N]``, the way the RK engine calls it (same reshapes, same calls)."""

    def fv(tt: float, yy: torch.Tensor) -> torch.Tensor:
        return f(tt, yy.view(shape)).reshape(1, -1)

    return fv


def accepts(solver: Solver, keyword: str) -> bool:
    """Whether ``solver.solve`` takes the keyword (a capability, asked, not assumed)."""
    return keyword in inspect.signature(solver.solve).parameters


def parameters_of(f: RHS, params: Sequence[torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
    """The parameters to differentiate: ``params`` if given, else ``f.parameters()`` if ``f``
    has them (an ``nn.Module`` or the harness's counting wrapper), keeping those that require
    grad."""
    if params is None:
        get = getattr(f, "parameters", None)
        params = tuple(get()) if callable(get) else ()
    out = tuple(params)
    for p in out:
        if not isinstance(p, torch.Tensor):
            raise ValueError(f"`params` must be tensors; got {type(p).__name__}")
    return tuple(p for p in out if p.requires_grad)


_WHY = {
    GradMode.BACKPROP: "autograd must be able to record its operations (a torch solver)",
    GradMode.ADJOINT: "the adjoint solves the augmented system with the same torch solver",
    GradMode.ADJOINT_SEMINORM: (
        "the seminorm adjoint needs a torch solver whose `solve` takes `error_channels`"
    ),
    GradMode.CHECKPOINT: (
        "checkpointing needs `solve(..., record_steps=True)` and `replay_step` (RK engine)"
    ),
}


def check_mode(solver: Solver, mode: GradMode | str) -> GradMode:
    """Refuse, before any run, a gradient mode the solver cannot do.

    Returns the mode as a :class:`GradMode`; raises ``ValueError`` naming the solver, why the
    mode needs what it lacks, and the modes it supports (its ``grad_modes``).
    """
    try:
        m = GradMode(mode)
    except ValueError:
        allowed = ", ".join(repr(x.value) for x in GradMode)
        raise ValueError(f"unknown gradient mode {mode!r}; choose one of {allowed}") from None
    supported = tuple(GradMode(x) for x in getattr(solver, "grad_modes", (GradMode.NONE,)))
    lacks = m not in supported
    if not lacks and m == GradMode.CHECKPOINT:
        lacks = not (accepts(solver, "record_steps") and hasattr(solver, "replay_step"))
    if (not lacks and m == GradMode.ADJOINT_SEMINORM and getattr(solver, "adaptive", False)
            and not hasattr(solver, "odeint_grad")):  # a peer's own adjoint: see .api
        lacks = not accepts(solver, "error_channels")
    if lacks:
        name = getattr(solver, "name", type(solver).__name__)
        why = _WHY.get(m, "")
        if not getattr(solver, "differentiable", True):
            why = "it is not a torch solver (autograd cannot record it, and it has no adjoint)"
        modes = ", ".join(repr(GradMode(x).value) for x in supported)
        raise ValueError(
            f"solver {name!r} does not support gradient mode {m.value!r}: {why}; "
            f"{name!r} supports: {modes}"
        )
    return m
