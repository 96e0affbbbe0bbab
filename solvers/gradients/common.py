"""What every gradient mode shares: the run it differentiates, its records, the mode check.

A :class:`Run` bundles the solver, the right-hand side, the output times and the solve options
of one differentiable solve, and collects what the forward and backward passes report
(:class:`BackwardStats`). The modes live in their own modules: :mod:`.backprop`,
:mod:`.adjoint`, :mod:`.checkpoint`; :mod:`.api` is the one entry point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from solvers.base import RHS, Capability, GradMode, Solution, Solver, Status


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


BACKWARD_OPTIONS = ("controller",)
"""The solve options the adjoint's backward solves share with the forward solve: the step-size
controller is part of the method. A ``callback`` sees the forward solve only; a ``backend`` is
the forward solve's (the backward solves take the solver's default: ``host`` could not run the
augmented state's seminorm)."""


@dataclass
class Run:
    """One differentiable solve: the solver, ``f``, ``t`` and the solve keywords (tolerances,
    step counts and the solver's options, see :class:`~solvers.base.Capability`)."""

    solver: Solver
    f: RHS
    t: torch.Tensor
    solve_kwargs: dict[str, Any]
    params: tuple[torch.Tensor, ...]
    solution: Solution | None = None
    backward: BackwardStats = field(default_factory=BackwardStats)
    # the adjoint's backward solves: these keywords where given (their own tolerances, the
    # BACKWARD_OPTIONS), else the forward solve's
    backward_kwargs: dict[str, Any] | None = None

    def solve(self, f: RHS, y0: torch.Tensor, t: torch.Tensor, **extra: Any) -> Solution:
        """The forward solve; ``extra`` (a mode's own options) overrides the given ones."""
        return self.solver.solve(f, y0, t, **(self.solve_kwargs | extra))


def row_rhs(f: RHS, shape: torch.Size) -> Callable[[float, torch.Tensor], torch.Tensor]:
    """``f`` on rows ``[1, N]``, the way the RK engine calls it (same reshapes, same calls)."""

    def fv(tt: float, yy: torch.Tensor) -> torch.Tensor:
        return f(tt, yy.view(shape)).reshape(1, -1)

    return fv


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
    GradMode.ADJOINT_SEMINORM: "the adjoint solves the augmented system with the same torch solver",
    GradMode.CHECKPOINT: "checkpointing records the accepted steps and replays them one by one",
}

# what each mode asks of a solver, and why (a solver with OWN_GRADIENTS asks nothing of them)
_NEEDS_WHY = {
    GradMode.CHECKPOINT: (
        "the forward solve keeps its accepted steps (`solve(..., record_steps=True)`) and the "
        "backward pass rebuilds each one's graph (`replay_step`)"
    ),
    GradMode.ADJOINT: (
        "the adaptive backward solves measure their error with the adjoint's channel norm "
        "(`solve(..., norm=solvers.norms.Seminorm(...))`)"
    ),
    GradMode.ADJOINT_SEMINORM: (
        "the adaptive backward solves measure their error with the adjoint's seminorm "
        "(`solve(..., norm=solvers.norms.Seminorm(...))`)"
    ),
}


def capabilities_of(solver: Solver) -> frozenset[Capability]:
    """The solver's declared :class:`~solvers.base.Capability` set (none if it declares none)."""
    return frozenset(Capability(c) for c in getattr(solver, "capabilities", ()))


def needs(solver: Solver, mode: GradMode) -> tuple[Capability, ...]:
    """The capabilities ``mode`` asks of ``solver``, in a fixed order.

    ``checkpoint``: ``record_steps`` and ``replay_step``; ``adjoint``, ``adjoint-seminorm`` on
    an adaptive solver: ``norm`` (the channel norm of the backward solves; a fixed-step solver
    needs none, and retraces the forward grid where it has ``step_grid``). None for a solver
    with ``own_gradients``: it computes the modes itself (:mod:`.api`).
    """
    if Capability.OWN_GRADIENTS in capabilities_of(solver):
        return ()
    if mode == GradMode.CHECKPOINT:
        return (Capability.RECORD_STEPS, Capability.REPLAY_STEP)
    if mode in (GradMode.ADJOINT, GradMode.ADJOINT_SEMINORM) and getattr(solver, "adaptive",
                                                                         False):
        return (Capability.NORM,)
    return ()


def missing(solver: Solver, mode: GradMode) -> tuple[Capability, ...]:
    """The capabilities ``mode`` needs that ``solver`` does not declare."""
    have = capabilities_of(solver)
    return tuple(c for c in needs(solver, mode) if c not in have)


def supported_modes(solver: Solver) -> tuple[GradMode, ...]:
    """The modes of the solver's ``grad_modes`` whose capabilities it declares."""
    declared = (GradMode(x) for x in getattr(solver, "grad_modes", (GradMode.NONE,)))
    return tuple(m for m in declared if not missing(solver, m))


def check_mode(solver: Solver, mode: GradMode | str) -> GradMode:
    """Refuse, before any run, a gradient mode the solver cannot do.

    A mode must be in the solver's ``grad_modes`` and the solver must declare the capabilities
    the mode needs (:func:`needs`). Returns the mode as a :class:`GradMode`; raises
    ``ValueError`` naming the solver, what it lacks and why the mode needs it, and the modes it
    supports.
    """
    try:
        m = GradMode(mode)
    except ValueError:
        allowed = ", ".join(repr(x.value) for x in GradMode)
        raise ValueError(f"unknown gradient mode {mode!r}; choose one of {allowed}") from None
    declared = tuple(GradMode(x) for x in getattr(solver, "grad_modes", (GradMode.NONE,)))
    lacks = missing(solver, m)
    if m in declared and not lacks:
        return m
    name = getattr(solver, "name", "") or type(solver).__name__
    if m not in declared:
        why = _WHY.get(m, "")
        if not getattr(solver, "differentiable", True):
            why = "it is not a torch solver (autograd cannot record it, and it has no adjoint)"
    else:
        caps = ", ".join(c.value for c in lacks)
        word = "capability" if len(lacks) == 1 else "capabilities"
        why = (
            f"it lacks the {word} {caps} ({_NEEDS_WHY[m]}; a solver offers them by "
            "implementing them and declaring them in its `capabilities`, "
            "solvers.base.Capability)"
        )
    modes = ", ".join(repr(x.value) for x in supported_modes(solver))
    raise ValueError(
        f"solver {name!r} does not support gradient mode {m.value!r}: {why}; "
        f"{name!r} supports: {modes}"
    )
