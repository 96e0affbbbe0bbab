"""The solver contract: what every solver takes and what it hands back.

A solver integrates ``dy/dt = f(t, y)`` from ``t[0]`` and returns the state at every requested
time in ``t``. It never raises for a numerical failure: it returns a :class:`Solution` whose
``status`` says what went wrong and whose ``ys`` hold what it reached (NaN after the failure).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

RHS = Callable[[torch.Tensor | float, torch.Tensor], torch.Tensor]
"""``f(t, y) -> dy/dt``: torch ops, batched over leading dimensions of ``y``.

``t`` is a float for the solvers that step the whole batch together. Solvers that give each
trajectory its own clock (``dopri5-pt``, torchode's) pass a tensor of shape
``y.shape[:-1] + (1,)`` (0-d for a single trajectory), broadcastable against ``y``.
"""


class Status(enum.StrEnum):
    """How a solve ended. The values are what results files store."""

    OK = "ok"
    MAX_STEPS = "max_steps"  # the step (or NFE) budget ran out before the final time
    STEP_TOO_SMALL = "step_too_small"  # the step size fell below the floating-point limit
    NONFINITE = "nonfinite"  # the state or the error estimate became inf/NaN
    STIFF = "stiff"  # the solver's own stiffness detection stopped it (Hairer's IDID = -4)
    ERROR = "error"  # anything else, with the message
    # Set by the harness around a case, never by a solver:
    TIMEOUT = "timeout"  # the case ran past its time budget (--case-timeout)
    CRASHED = "crashed"  # the case's worker process died (a signal or an exit code)
    OUT_OF_MEMORY = "out_of_memory"  # the case ran out of memory (--case-memory, or the host's)


class GradMode(enum.StrEnum):
    """How a gradient through a solve is computed (see :mod:`solvers.gradients`).

    - ``none``: no gradient (plain solve);
    - ``backprop``: autograd records the solver's operations (memory grows with the steps);
    - ``adjoint``: the continuous adjoint, solved backwards with the same solver (Chen et al.,
      "Neural ordinary differential equations", NeurIPS 2018, Algorithm 1): O(1) memory in the
      number of steps;
    - ``adjoint-seminorm``: the adjoint whose error control ignores the parameter-gradient and
      time channels (Kidger, Chen, Lyons, "Hey, that's not an ODE", ICML 2021);
    - ``checkpoint``: backprop that keeps only the accepted steps' states and recomputes one
      step's graph at a time in the backward pass (Griewank & Walther, "Evaluating
      Derivatives", 2nd ed., ch. 12): backprop's gradient, states-plus-one-step memory.
    """

    NONE = "none"
    BACKPROP = "backprop"
    ADJOINT = "adjoint"
    ADJOINT_SEMINORM = "adjoint-seminorm"
    CHECKPOINT = "checkpoint"


@dataclass
class StepRecord:
    """One accepted step, as a solve with ``record_steps=True`` reports it.

    ``t`` the start, ``h`` the signed step, ``t1`` the exact end (``t + h`` except for the last
    step, which ends exactly at the final time), ``y`` the state at ``t`` and ``k1`` the first
    stage when the method carries it over from the previous step (FSAL), else None. ``y`` and
    ``k1`` are rows ``[1, N]`` of the flattened state, as the engine holds them.
    """

    t: float
    h: float
    t1: float
    y: torch.Tensor
    k1: torch.Tensor | None = None


@dataclass
class Solution:
    """What a solve returns.

    ``ys`` has shape ``[len(t), *y0.shape]``. Rows after a failure are NaN.
    ``nfe`` is the solver's own count of calls of ``f``; the harness counts independently.
    """

    ys: torch.Tensor
    status: Status = Status.OK
    message: str = ""
    n_steps: int = 0  # attempted steps: n_accepted + n_rejected
    n_accepted: int = 0
    n_rejected: int = 0
    nfe: int = 0
    t_reached: float | None = None  # how far the solve got (the final time when ok)
    steps: list[StepRecord] | None = None  # the accepted steps, only with record_steps=True
    # per-trajectory counts (solvers.per_trajectory.TrajectoryStats), only from a solver that
    # gives each trajectory of a batch its own steps; then n_steps counts loop iterations and
    # n_accepted/n_rejected are those of the trajectory that took the most attempts
    trajectories: object | None = None


class Solver:
    """Base class for solvers. Subclasses set the class attributes and implement ``solve``.

    Capabilities are declared, so the harness can refuse a bad combination before the run:

    - ``adaptive``: picks its own steps from ``rtol``/``atol`` (else needs ``n_steps``);
    - ``implicit``: an implicit (stiff) method; a problem's ``max_steps``, a budget that stops
      explicit solvers on stiff problems, does not apply to it;
    - ``differentiable``: a torch solver autograd can record (``backprop``);
    - ``native_loop``: its step loop is native code that calls ``f`` through a C callback
      that does not stop on a Python exception (f2py's DOPRI5/DOP853 wrappers go on calling
      ``f``, millions of times, and then report a ``SystemError``). The harness then never
      raises its time budget inside ``f``, and runs the solver in a worker process by
      default, where the budget kills the process;
    - ``grad_modes``: the gradient modes it supports.
    """

    name: str = ""
    order: int = 0
    adaptive: bool = False
    implicit: bool = False  # made for stiff problems: an explicit-solver step budget is not its
    differentiable: bool = True
    native_loop: bool = False
    grad_modes: tuple[GradMode, ...] = (GradMode.NONE, GradMode.BACKPROP)
    kind: str = ""  # a few words for `list`, e.g. "explicit RK, adaptive"
    description: str = ""

    def solve(
        self,
        f: RHS,
        y0: torch.Tensor,
        t: torch.Tensor,
        *,
        rtol: float | None = None,
        atol: float | None = None,
        n_steps: int | None = None,
        max_steps: int | None = None,
    ) -> Solution:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} order={self.order} adaptive={self.adaptive}>"


DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-9
DEFAULT_MAX_STEPS = 100_000


def tolerances(rtol: float | None, atol: float | None) -> tuple[float, float]:
    """``(rtol, atol)`` with the defaults filled in; refuses values no solver can honour."""
    rtol = DEFAULT_RTOL if rtol is None else float(rtol)
    atol = DEFAULT_ATOL if atol is None else float(atol)
    if not (rtol > 0 and math.isfinite(rtol)):
        raise ValueError(f"`rtol` must be a finite number > 0; got {rtol}")
    if not (atol >= 0 and math.isfinite(atol)):
        raise ValueError(f"`atol` must be a finite number >= 0; got {atol}")
    return rtol, atol


def check_max_steps(max_steps: int | None) -> None:
    """Refuse a step budget that is not a positive int (None: the solver's default)."""
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"`max_steps` must be a positive int or None; got {max_steps!r}")


def check_times(t: torch.Tensor) -> None:
    """Refuse output times that are not a 1-D, strictly monotone sequence of at least 2 points."""
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"`t` must be 1-D with at least 2 times; got shape {tuple(t.shape)}")
    d = torch.diff(t)
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise ValueError("`t` must be strictly increasing or strictly decreasing")
