"""Step-size controllers: the accept/reject decision and the next step, as objects to choose.

A controller is configuration plus the state of one solve. The engine's loop
(:mod:`solvers.loop`) asks it ``decide(err, h) -> (accepted, h_new)`` after every attempted
step, where ``err`` is the error norm (:mod:`solvers.norms`; at most 1 is within tolerance).
Each controller works on Python floats (one step size for the whole batch) and, through
:meth:`Controller.rows`, on a batch of trajectories as ``[B]`` float64 tensors (a step size
per trajectory, :mod:`solvers.per_trajectory`), with the same rule.

The built-ins, by name (:data:`CONTROLLERS`; a suite's ``controller`` key and the CLI's
``--controller`` take these names):

- ``hairer``: :class:`HairerController`, DOPRI5's rule (the default of the adaptive solvers);
- ``pid``: :class:`PIDController`, Söderlind's PID filter;
- ``constant``: :class:`ConstantController`, the fixed-step solvers' (every step accepted).

Every controller bounds the next step by ``hmax`` (the solve's span unless smaller is asked) and
from below by ``hmin`` (0 unless asked; a step rejected at ``hmin`` stops the solve with
``step_too_small``). :meth:`Controller.initial_step` is where a solve's first step comes from:
DOPRI5's ``HINIT`` (:func:`solvers.control.initial_step`), or the given ``first_step``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass
class Controller:
    """The common part: the bounds, the first step, a fresh copy per solve.

    ``q`` is the order of the error estimate plus one (5 for DOPRI5's 4th-order estimate), set
    by the solver through :meth:`fresh`. ``first_step``: the first step's size instead of
    ``HINIT``'s estimate (None: estimate it).
    """

    name: ClassVar[str] = ""
    q: int = 5
    hmax: float = math.inf
    hmin: float = 0.0
    first_step: float | None = None

    def __post_init__(self) -> None:
        if not (self.hmin >= 0.0 and self.hmax > 0.0 and self.hmin <= self.hmax):
            raise ValueError(
                f"need 0 <= hmin <= hmax and hmax > 0; got hmin={self.hmin}, hmax={self.hmax}"
            )
        if self.first_step is not None and not (
                self.first_step > 0.0 and math.isfinite(self.first_step)):
            raise ValueError(f"`first_step` must be a finite number > 0; got {self.first_step}")

    def fresh(self, *, q: int, span: float) -> Controller:
        """A copy with the state of a new solve: ``q`` the method's, ``hmax`` at most ``span``."""
        return dataclasses.replace(self, q=q, hmax=min(self.hmax, span))

    def bound(self, h_new: float, h: float) -> float:
        """``h_new`` within ``[hmin, hmax]`` in magnitude, in the direction of ``h``."""
        a = abs(h_new)
        if a > self.hmax:
            return math.copysign(self.hmax, h)
        if a < self.hmin:
            return math.copysign(self.hmin, h)
        return h_new

    def at_floor(self, h: float) -> bool:
        """Whether a rejected step of size ``h`` can shrink no further (``hmin``)."""
        return self.hmin > 0.0 and abs(h) <= self.hmin

    def initial_step(self, estimate, direction: float) -> float:
        """The first signed step: ``first_step`` if given, else ``estimate()`` (HINIT), bounded."""
        if self.first_step is not None:
            return self.bound(direction * self.first_step, direction)
        return self.bound(estimate(), direction)

    def decide(self, err: float, h: float) -> tuple[bool, float]:
        raise NotImplementedError

    def rows(self, n: int, device: torch.device) -> RowController:
        raise NotImplementedError(f"the {self.name!r} controller has no per-trajectory form")


class RowController:
    """A controller's rule on ``[B]`` float64 tensors: one state per trajectory."""

    def __init__(self, ctrl: Controller) -> None:
        self.ctrl = ctrl

    def bound(self, h_new: torch.Tensor) -> torch.Tensor:
        c = self.ctrl
        if c.hmin > 0.0:
            h_new = torch.copysign(h_new.abs().clamp_(c.hmin, c.hmax), h_new)
            return h_new
        return h_new.clamp_(-c.hmax, c.hmax)

    def decide(self, err: torch.Tensor, h: torch.Tensor, active: torch.Tensor):
        raise NotImplementedError


@dataclass
class HairerController(Controller):
    """DOPRI5's step-size controller (defaults are DOPRI5's own, and scipy's ``dopri5``).

    The I controller ``h_new = h * safe * err**(-1/q)``, stabilised by Lund's PI term
    ``facold**beta`` (HNW II, IV.2, eq. 2.43c; Gustafsson 1991), bounded by
    ``fac1 <= h_new/h <= fac2``, with no growth right after a rejection (E. Hairer, G. Wanner,
    dopri5.f, the code of HNW I, 2nd ed.). ``safe``, ``fac1`` (smallest ratio ``h_new/h``),
    ``fac2`` (largest), ``beta`` (0 gives the plain I controller). scipy's
    ``ode(...).set_integrator("dopri5")`` passes ``beta=0.0`` into ``WORK(5)``, which DOPRI5
    reads as "use the default 0.04", so 0.04 is what scipy's dopri5 actually runs with.
    """

    name: ClassVar[str] = "hairer"
    safe: float = 0.9
    fac1: float = 0.2
    fac2: float = 10.0
    beta: float = 0.04
    # Gustafsson's predictive controller on top (rodas.f's default, "PRED"): after the second
    # accepted step, h_new is at most what (h_acc / h) (err^2 / err_acc)^(1/q) / safe gives,
    # h_acc and err_acc those of the previous accepted step (K. Gustafsson, "Control-theoretic
    # techniques for stepsize selection in implicit Runge-Kutta methods", ACM TOMS 20, 1994;
    # HNW II, Sec. IV.8, eq. 8.21)
    predictive: bool = False
    facold: float = 1.0e-4
    rejected_last: bool = False
    h_acc: float = 0.0
    err_acc: float = 1.0e-2
    n_acc: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.beta <= 0.2:
            raise ValueError(f"`beta` must lie in [0, 0.2]; got {self.beta}")
        if not 0.0 < self.safe < 1.0:
            raise ValueError(f"`safe` must lie in (0, 1); got {self.safe}")
        if not 0.0 < self.fac1 <= 1.0 <= self.fac2:
            raise ValueError(f"need 0 < `fac1` <= 1 <= `fac2`; got {self.fac1}, {self.fac2}")
        self._expo1 = 1.0 / self.q - 0.75 * self.beta

    def fresh(self, *, q: int, span: float) -> HairerController:
        return dataclasses.replace(
            self, q=q, hmax=min(self.hmax, span), facold=1.0e-4, rejected_last=False,
            h_acc=0.0, err_acc=1.0e-2, n_acc=0,
        )

    def decide(self, err: float, h: float) -> tuple[bool, float]:
        """Given the error norm of a step of size ``h``, return (accepted, next signed step).

        A non-finite ``err`` is a rejection with the strongest shrink ``fac1``.
        """
        if not math.isfinite(err):
            self.rejected_last = True
            return False, self.bound(h * self.fac1, h)
        fac11 = err**self._expo1
        if err <= 1.0:
            fac = fac11 / self.facold**self.beta
            fac = max(1.0 / self.fac2, min(1.0 / self.fac1, fac / self.safe))
            if self.predictive:
                if self.n_acc >= 1:
                    gus = (self.h_acc / h) * (err * err / self.err_acc) ** (1.0 / self.q)
                    fac = max(fac, max(1.0 / self.fac2, min(1.0 / self.fac1, gus / self.safe)))
                self.h_acc, self.err_acc = h, max(1.0e-2, err)
                self.n_acc += 1
            h_new = h / fac
            self.facold = max(err, 1.0e-4)
            if abs(h_new) > self.hmax:
                h_new = math.copysign(self.hmax, h)
            if self.rejected_last:
                h_new = math.copysign(min(abs(h_new), abs(h)), h)
            self.rejected_last = False
            return True, self.bound(h_new, h)
        self.rejected_last = True
        return False, self.bound(h / min(1.0 / self.fac1, fac11 / self.safe), h)

    def rows(self, n: int, device: torch.device) -> RowController:
        if self.predictive:
            raise NotImplementedError("the predictive Hairer controller has no per-trajectory "
                                      "form")
        return _HairerRows(self, n, device)


class _HairerRows(RowController):
    """:class:`HairerController` per row. Its branches as one division ``h / fac``: accepted,
    ``fac`` is ``fac11 / facold**beta / safe`` within ``[1/fac2, 1/fac1]`` (at least 1 right after
    a rejection: no growth), rejected ``min(fac11 / safe, 1/fac1)``; a NaN/inf error is a
    rejection by ``1/fac1``. Both as one clamp to ``[lo, 1/fac1]``, ``lo`` each row's lower
    bound (``1/fac2``, or 1 after a rejection): a rejected row's ``fac11 / safe`` exceeds 1, so
    ``lo`` binds accepted rows only (when ``1/q - 0.75 beta > 0``; else rejected rows get 0).
    The state is ``facold**beta`` (computed when ``facold`` changes) and ``lo``."""

    def __init__(self, ctrl: HairerController, n: int, device) -> None:
        super().__init__(ctrl)
        f64 = dict(dtype=torch.float64, device=device)
        self.fob = torch.full((n,), 1.0e-4, **f64).pow_(ctrl.beta)  # facold**beta
        self.lo = torch.full((n,), 1.0 / ctrl.fac2, **f64)
        self.lo_grow = torch.full((), 1.0 / ctrl.fac2, **f64)
        self.one = torch.ones((), **f64)
        self.zero = torch.zeros((), **f64)
        self.cap = torch.full((), 1.0 / ctrl.fac1, **f64)

    def decide(self, err: torch.Tensor, h: torch.Tensor, active: torch.Tensor):
        c = self.ctrl
        e = err.nan_to_num(nan=math.inf)
        fac11 = e.pow(c._expo1)
        ok = e <= 1.0
        fac = torch.div(fac11, torch.where(ok, self.fob, self.one)).div_(c.safe)
        lo = self.lo if c._expo1 > 0.0 else torch.where(ok, self.lo, self.zero)
        h_new = self.bound(h / fac.clamp_(min=lo, max=self.cap))
        accepted = ok & active
        self.fob = torch.where(accepted, e.clamp_(min=1.0e-4).pow_(c.beta), self.fob)
        self.lo = torch.where(active, torch.where(ok, self.lo_grow, self.one), self.lo)
        return accepted, h_new


@dataclass
class PIDController(Controller):
    """Söderlind's PID step-size filter (G. Söderlind, "Digital filters in adaptive
    time-stepping", ACM TOMS 29, 2003, eq. 34), with the coefficients divided by ``q``, as
    DifferentialEquations.jl, diffrax and torchode do:

    ``h_new = h * safety * r_n**(-(kI + kP + kD)) * r_{n-1}**(kP + 2 kD) * r_{n-2}**(-kD)``,

    ``k = coeff / q``, ``r`` the error norms of the last accepted steps (1 before the first),
    floored at 1e-10; the factor lies in ``[factor_min, factor_max]``. The defaults
    ``pcoeff=0.2, icoeff=0.5, dcoeff=0`` are the PI setting torchode's benchmarks name
    ``to-dopri5-pid`` (and the peer plugin of that name runs), so the two meet like with like;
    ``pcoeff = dcoeff = 0, icoeff = 1`` is the plain I controller. A step is accepted when
    ``err <= 1``, as with Hairer's rule; a non-finite error is a rejection by ``factor_min``.
    """

    name: ClassVar[str] = "pid"
    pcoeff: float = 0.2
    icoeff: float = 0.5
    dcoeff: float = 0.0
    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0
    prev: float = 1.0
    prev_prev: float = 1.0

    FLOOR: ClassVar[float] = 1.0e-10

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.safety <= 1.0:
            raise ValueError(f"`safety` must lie in (0, 1]; got {self.safety}")
        if not 0.0 < self.factor_min <= 1.0 <= self.factor_max:
            raise ValueError(
                f"need 0 < `factor_min` <= 1 <= `factor_max`; got {self.factor_min}, "
                f"{self.factor_max}"
            )
        if self.icoeff <= 0.0:
            raise ValueError(f"`icoeff` must be > 0 (the integral term); got {self.icoeff}")
        q = float(self.q)
        self._e1 = -(self.icoeff + self.pcoeff + self.dcoeff) / q
        self._e2 = (self.pcoeff + 2.0 * self.dcoeff) / q
        self._e3 = -self.dcoeff / q

    def fresh(self, *, q: int, span: float) -> PIDController:
        return dataclasses.replace(self, q=q, hmax=min(self.hmax, span), prev=1.0, prev_prev=1.0)

    def decide(self, err: float, h: float) -> tuple[bool, float]:
        if not math.isfinite(err):
            return False, self.bound(h * self.factor_min, h)
        r = max(err, self.FLOOR)
        factor = self.safety * r**self._e1 * self.prev**self._e2 * self.prev_prev**self._e3
        factor = min(self.factor_max, max(self.factor_min, factor))
        accepted = err <= 1.0
        if accepted:
            self.prev_prev, self.prev = self.prev, r
        return accepted, self.bound(h * factor, h)

    def rows(self, n: int, device: torch.device) -> RowController:
        return _PIDRows(self, n, device)


class _PIDRows(RowController):
    """:class:`PIDController` per row, in the scalar rule's order of operations. A NaN/inf
    error becomes +inf, whose ``r**e1`` is 0 (``e1 < 0``): the factor is then ``factor_min``,
    as the scalar rule's. A zero exponent's power (``dcoeff = 0``: no derivative term) is not
    computed."""

    def __init__(self, ctrl: PIDController, n: int, device) -> None:
        super().__init__(ctrl)
        self.prev = torch.ones(n, dtype=torch.float64, device=device)
        self.prev_prev = torch.ones(n, dtype=torch.float64, device=device)

    def decide(self, err: torch.Tensor, h: torch.Tensor, active: torch.Tensor):
        c = self.ctrl
        r = err.nan_to_num(nan=math.inf, posinf=math.inf).clamp_(min=c.FLOOR)
        factor = r.pow(c._e1).mul_(c.safety)
        if c._e2 != 0.0:
            factor.mul_(self.prev.pow(c._e2))
        if c._e3 != 0.0:
            factor.mul_(self.prev_prev.pow(c._e3))
        factor.clamp_(c.factor_min, c.factor_max)
        if c._e1 >= 0.0:  # r**e1 does not vanish at inf
            factor = torch.where(torch.isfinite(err), factor, c.factor_min)
        h_new = self.bound(h * factor)
        accepted = (err <= 1.0) & active
        if c._e3 != 0.0:
            self.prev_prev = torch.where(accepted, self.prev, self.prev_prev)
        self.prev = torch.where(accepted, r, self.prev)
        return accepted, h_new


@dataclass
class ConstantController(Controller):
    """Fixed steps: every step is accepted and the step size never changes (the fixed-step
    solvers' controller, named in the results so that every row says how its steps were set).
    With an adaptive method it runs the method's steps from ``first_step`` on, ignoring the
    error estimate."""

    name: ClassVar[str] = "constant"

    def decide(self, err: float, h: float) -> tuple[bool, float]:
        return True, h

    def rows(self, n: int, device: torch.device) -> RowController:
        return _ConstantRows(self)


class _ConstantRows(RowController):
    def decide(self, err: torch.Tensor, h: torch.Tensor, active: torch.Tensor):
        return active.clone(), h.clone()


CONTROLLERS: dict[str, type[Controller]] = {
    c.name: c for c in (HairerController, PIDController, ConstantController)
}
"""The built-in controllers by name."""


def make_controller(spec: str | Controller | None, default: str = "hairer") -> Controller:
    """A controller from a name (:data:`CONTROLLERS`), an instance (used as it is), or None (the
    ``default``). An unknown name raises ``ValueError`` listing the valid ones."""
    if spec is None:
        spec = default
    if isinstance(spec, Controller):
        return spec
    cls = CONTROLLERS.get(spec) if isinstance(spec, str) else None
    if cls is None:
        names = ", ".join(repr(n) for n in CONTROLLERS)
        raise ValueError(f"unknown controller {spec!r}; choose one of {names}")
    return cls()


def controller_for(solver, spec) -> Controller:
    """The controller a solve of ``solver`` runs: ``spec`` (a name or an instance; None: the
    solver's own ``controller``), refused with the ones it takes unless its name is among the
    solver's ``controllers``."""
    ctrl = solver.controller if spec is None else make_controller(spec)
    if ctrl.name not in solver.controllers:
        takes = ", ".join(repr(c) for c in solver.controllers)
        raise ValueError(f"solver {solver.name!r} takes the controllers {takes}; "
                         f"got {ctrl.name!r}")
    return ctrl
