"""The solver contract: what every solver takes and what it hands back.

A solver integrates ``dy/dt = f(t, y)`` from ``t[0]`` and returns the state at every requested
time in ``t``. It never raises for a numerical failure: it returns a :class:`Solution` whose
``status`` says what went wrong and whose ``ys`` hold what it reached (NaN after the failure).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field

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


class Backend(enum.StrEnum):
    """The arithmetic a solve ran in, recorded in :attr:`Solution.backend` and the results.

    - ``tensor``: torch tensors on the state's device (every dtype, CPU and GPU, autograd);
    - ``host``: Python floats for a small float64 CPU state that autograd does not record (at
      batch 1 a torch op's dispatch costs more than its arithmetic): the same steps, faster;
    - ``auto`` (asked for only, never recorded): ``host`` where it applies, else ``tensor``.
    """

    AUTO = "auto"
    TENSOR = "tensor"
    HOST = "host"


class Capability(enum.StrEnum):
    """What a solver offers beyond a plain solve, declared in :attr:`Solver.capabilities`.

    The gradient modes ask for these (:func:`solvers.gradients.check_mode`) instead of probing
    signatures or private names:

    - ``record_steps``: ``solve(..., record_steps=True)`` fills :attr:`Solution.steps`;
    - ``replay_step``: :meth:`replay_step` recomputes one recorded step with autograd on
      (with ``record_steps``: the ``checkpoint`` mode);
    - ``norm``: ``solve(..., norm=...)`` takes the error norm as an object
      (:mod:`solvers.norms`; the ``adjoint-seminorm`` mode's seminorm);
    - ``step_grid``: a fixed-step ``solve(..., step_grid=[...])`` steps on the given times
      (the adjoint retraces the forward grid);
    - ``own_gradients``: :meth:`odeint_grad` computes the gradient modes itself (a peer
      library's own adjoint, see :mod:`solvers.gradients.api`);
    - ``controller``: ``solve(..., controller=...)`` takes a step-size controller
      (:mod:`solvers.controllers`) by name or as an object;
    - ``backend``: ``solve(..., backend=...)`` takes a :class:`Backend`;
    - ``callback``: ``solve(..., callback=...)`` calls an object's ``step``, ``accept`` and
      ``reject`` around each attempted step (see :mod:`solvers.loop`);
    - ``jacobian``: a linearly implicit solver that uses ``df/dy``: ``solve(..., jac=fn)``
      takes the field's own Jacobian ``fn(t, y) -> [..., d, d]`` (default: autograd), and
      ``solve(..., autonomous=True)`` says that ``f`` does not depend on ``t``.
    """

    RECORD_STEPS = "record_steps"
    REPLAY_STEP = "replay_step"
    NORM = "norm"
    STEP_GRID = "step_grid"
    OWN_GRADIENTS = "own_gradients"
    CONTROLLER = "controller"
    BACKEND = "backend"
    CALLBACK = "callback"
    JACOBIAN = "jacobian"


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
    backend: str = ""  # the Backend that ran ("" from a solver that does not say)
    controller: str = ""  # the step-size controller's name ("" where the solver's own)
    # the linear algebra of an implicit solver, as Hairer's codes count it: Jacobian
    # evaluations (njev), LU decompositions (ndec), forward-backward solves (nsol); empty else
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Request:
    """A solve's arguments after :meth:`Solver.solve` has checked them, for ``_solve``.

    ``times``: ``t`` as Python floats. ``rtol``/``atol``: filled with the defaults for an
    adaptive solver, as given otherwise. ``n_steps``: a positive int for a fixed-step solver
    (None for an adaptive one). ``max_steps``: as given (None: the solver's default).
    ``options``: the keywords the solver's capabilities take (``record_steps``, ``norm``,
    ``step_grid``, ``controller``, ``backend``, ``callback``), only those given.
    """

    f: RHS
    y0: torch.Tensor
    t: torch.Tensor
    times: list[float]
    rtol: float | None
    atol: float | None
    n_steps: int | None
    max_steps: int | None
    options: dict


# the keyword each capability adds to ``solve``
_OPTION_OF = {
    Capability.RECORD_STEPS: "record_steps",
    Capability.NORM: "norm",
    Capability.STEP_GRID: "step_grid",
    Capability.CONTROLLER: "controller",
    Capability.BACKEND: "backend",
    Capability.CALLBACK: "callback",
}
_OPTIONS_OF = {Capability.JACOBIAN: ("jac", "autonomous")}


class Solver:
    """Base class for solvers. Subclasses set the class attributes and implement ``_solve``.

    :meth:`solve` is a template method (as scipy's ``OdeSolver.step`` wraps ``_step_impl``): it
    checks the times, the state, the tolerances (adaptive), ``n_steps`` (fixed step), the step
    budget and the options once, hands a :class:`Request` to ``_solve``, and turns a returned
    state that is not finite into a ``nonfinite`` status with NaN rows from there on.

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
    - ``grad_modes``: the gradient modes it supports;
    - ``capabilities``: the :class:`Capability` set (what the gradient modes and the harness
      may ask of ``solve``);
    - ``controllers``: the names of the step-size controllers ``solve(controller=...)`` takes
      (:mod:`solvers.controllers`), the first the default; empty for a solver with its own.
    """

    name: str = ""
    order: int = 0
    adaptive: bool = False
    implicit: bool = False  # made for stiff problems: an explicit-solver step budget is not its
    differentiable: bool = True
    native_loop: bool = False
    grad_modes: tuple[GradMode, ...] = (GradMode.NONE, GradMode.BACKPROP)
    capabilities: frozenset[Capability] = frozenset()
    controllers: tuple[str, ...] = ()
    kind: str = ""  # a few words for `list`, e.g. "explicit RK, adaptive"
    description: str = ""
    # the tightest rtol the method is made for (0: none); a suite that takes every solver
    # leaves its cases below it out (and says so), one that names the solver runs them
    rtol_min: float = 0.0

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
        **options,
    ) -> Solution:
        """Integrate ``dy/dt = f(t, y)`` from ``t[0]``; the state at every time in ``t``.

        Adaptive: ``rtol`` (default 1e-6, > 0) and ``atol`` (default 1e-9, >= 0) drive the
        steps, ``n_steps`` is ignored. Fixed step: ``n_steps`` (> 0) steps, ``rtol``/``atol``
        are ignored. ``max_steps`` bounds the steps. Wrong arguments raise ``ValueError``;
        a numerical failure returns a status. ``options``: see :class:`Capability`.
        """
        request = self.request(f, y0, t, rtol, atol, n_steps, max_steps, options)
        return finite_rows(self._solve(request), request.times)

    def request(self, f, y0, t, rtol, atol, n_steps, max_steps, options) -> Request:
        """The checks :meth:`solve` makes, as a :class:`Request` (``ValueError`` naming what is
        wrong and what is allowed)."""
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"`t` must be a torch.Tensor; got {type(t).__name__}")
        check_times(t)
        if not isinstance(y0, torch.Tensor) or not y0.is_floating_point():
            raise ValueError("`y0` must be a floating-point torch.Tensor")
        check_max_steps(max_steps)
        allowed = {_OPTION_OF[c] for c in self.capabilities if c in _OPTION_OF}
        allowed |= {k for c in self.capabilities for k in _OPTIONS_OF.get(c, ())}
        unknown = sorted(set(options) - allowed)
        if unknown:
            takes = ", ".join(f"`{k}`" for k in sorted(allowed)) or "none"
            raise ValueError(
                f"solver {self.name!r} does not take {', '.join(f'`{k}`' for k in unknown)}; "
                f"its options: {takes}"
            )
        if self.adaptive:
            rtol, atol = tolerances(rtol, atol)
            n_steps = None
        elif not options.get("step_grid"):
            if n_steps is None or not isinstance(n_steps, int) or n_steps < 1:
                raise ValueError(
                    f"`n_steps` must be a positive int for the fixed-step solver {self.name!r}; "
                    f"got {n_steps!r}"
                )
        times = [float(x) for x in t.tolist()]
        return Request(f, y0, t, times, rtol, atol, n_steps, max_steps, options)

    def _solve(self, request: Request) -> Solution:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} order={self.order} adaptive={self.adaptive}>"


def finite_rows(sol: Solution, times: list[float]) -> Solution:
    """A solve that says ``ok`` but returned inf/NaN rows: ``nonfinite``, NaN from the first bad
    output time on, ``t_reached`` the last good one. Other statuses are left as they are."""
    if sol.status != Status.OK:
        return sol
    ys = sol.ys
    flat = ys.detach().reshape(len(times), -1)
    finite = torch.isfinite(flat).all(dim=1)
    if bool(finite.all()):
        return sol
    first_bad = finite.tolist().index(False)
    ys = ys.clone()
    ys[first_bad:] = math.nan
    sol.ys = ys
    sol.status = Status.NONFINITE
    sol.message = f"the state became inf/NaN before t = {times[first_bad]:g}"
    sol.t_reached = times[first_bad - 1] if first_bad else times[0]
    return sol


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
