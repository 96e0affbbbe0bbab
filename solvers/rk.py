"""One explicit Runge–Kutta solver for every tableau, fixed step or adaptive, on the engine.

The method is data (:class:`solvers.tableaux.ButcherTableau`); a solve composes the engine's
parts (:mod:`solvers.loop`):

- a stepper (:mod:`solvers.stages` on tensors, :mod:`solvers.rk_host` on Python floats: the
  :class:`~solvers.base.Backend`, recorded in :attr:`Solution.backend`);
- a step rule: fixed steps on a uniform (``n_steps``) or given (``step_grid``) grid, or a
  controller (:mod:`solvers.controllers`: ``hairer``, DOPRI5's, by default; ``pid``;
  ``constant``) deciding from a norm (:mod:`solvers.norms`), with DOPRI5's initial step and
  Hairer's last-step rule (the solve ends exactly at ``t[-1]`` and never steps past it);
- output at the requested times from dense output (:mod:`solvers.output`), never from
  forcing steps onto them.

One step size serves the whole batch and the error norm is the worst trajectory's, as in
Hairer's codes; ``per_trajectory=True`` gives each trajectory its own steps instead
(:mod:`solvers.per_trajectory`). A new method is a tableau plus one registration::

    register_solver("heun")(lambda: RungeKutta(HEUN, name="heun", adaptive=False))
"""

from __future__ import annotations

import torch

from solvers.base import (
    DEFAULT_MAX_STEPS,
    RHS,
    Backend,
    Capability,
    GradMode,
    Request,
    Solution,
    Solver,
    StepRecord,
)
from solvers.control import initial_step
from solvers.controllers import (
    ConstantController,
    Controller,
    HairerController,
    controller_for,
    make_controller,
)
from solvers.loop import Adaptive, Grid, integrate
from solvers.norms import RMSNorm
from solvers.output import (
    DenseOutput,
    Interpolation,
    OutputCollector,
    check_step_grid,
    fixed_grid,
)
from solvers.per_trajectory import solve_per_trajectory
from solvers.rk_host import HOST_MAX, HostPlan, HostStages
from solvers.stages import GraphStages, coefficients, engine, recorded
from solvers.tableaux import ButcherTableau


class RungeKutta(Solver):
    """An explicit RK solver defined by a :class:`ButcherTableau`.

    ``adaptive`` defaults to whether the tableau has an error estimate; ``interpolation`` is an
    :class:`~solvers.output.Interpolation` (``auto``: the tableau's continuous extension if it
    has one, else linear for order 1 and cubic Hermite otherwise). ``controller``: the default
    step-size controller, a name or an object (adaptive: ``hairer`` with ``safe``, ``fac1``,
    ``fac2``, ``beta``, DOPRI5's; fixed step: ``constant``); ``solve(controller=...)``
    overrides it per solve.

    Every gradient mode works (see :mod:`solvers.gradients`): the loop is out-of-place torch
    ops (``backprop``), ``solve`` runs any right-hand side (``adjoint``), takes a ``norm``
    (``adjoint-seminorm``), and reports its accepted steps and replays one of them
    (``record_steps``, :meth:`replay_step`: ``checkpoint``).
    """

    grad_modes = (
        GradMode.NONE,
        GradMode.BACKPROP,
        GradMode.ADJOINT,
        GradMode.ADJOINT_SEMINORM,
        GradMode.CHECKPOINT,
    )

    def __init__(
        self,
        tableau: ButcherTableau,
        *,
        name: str | None = None,
        adaptive: bool | None = None,
        interpolation: Interpolation | str = Interpolation.AUTO,
        safe: float = 0.9,
        fac1: float = 0.2,
        fac2: float = 10.0,
        beta: float = 0.04,
        controller: str | Controller | None = None,
        per_trajectory: bool = False,
        description: str = "",
    ) -> None:
        tableau.validate()
        self.tableau = tableau
        self.name = name or tableau.name
        self.order = tableau.order
        self.adaptive = tableau.b_err is not None if adaptive is None else adaptive
        if self.adaptive and tableau.b_err is None:
            raise ValueError(
                f"`adaptive=True` needs a tableau with `b_err`; {tableau.name} has none"
            )
        interpolation = self._interpolation(tableau, interpolation)
        self.interpolation = interpolation
        self.dense = DenseOutput(tableau, interpolation)
        if controller is None:
            controller = (HairerController(safe=safe, fac1=fac1, fac2=fac2, beta=beta)
                          if self.adaptive else ConstantController())
        self.controller = make_controller(controller)
        self.controllers = ("hairer", "pid", "constant") if self.adaptive else ("constant",)
        controller_for(self, None)  # refuses one this solver does not take
        self.per_trajectory = per_trajectory
        caps = {Capability.CONTROLLER, Capability.BACKEND}
        if per_trajectory:
            if not self.adaptive or interpolation != Interpolation.CONTINUOUS:
                raise ValueError(
                    "`per_trajectory=True` needs an adaptive solver with the tableau's own "
                    f"dense output; {tableau.name} is "
                    f"{'fixed step' if not self.adaptive else interpolation + ' dense output'}"
                )
            self.grad_modes = (GradMode.NONE, GradMode.BACKPROP)
        else:
            caps |= {Capability.RECORD_STEPS, Capability.REPLAY_STEP, Capability.CALLBACK}
            caps.add(Capability.NORM if self.adaptive else Capability.STEP_GRID)
        self.capabilities = frozenset(caps)
        steps = "adaptive" if self.adaptive else "fixed step"
        if per_trajectory:
            steps = "adaptive, a step size per trajectory"
        self.kind = f"explicit RK, {steps}"
        self.description = description or (
            f"{tableau.name} tableau, {tableau.stages} stages, {interpolation} dense output"
        )
        self._cache: dict = {}  # coefficients per (dtype, device), the host plan, buffers

    @staticmethod
    def _interpolation(tableau: ButcherTableau, interpolation) -> Interpolation:
        try:
            interpolation = Interpolation(interpolation)
        except ValueError:
            allowed = tuple(i.value for i in Interpolation)
            raise ValueError(
                f"`interpolation` must be one of {allowed}; got {interpolation!r}"
            ) from None
        if interpolation == Interpolation.AUTO:
            if tableau.dense is not None:
                return Interpolation.CONTINUOUS
            return Interpolation.LINEAR if tableau.order <= 1 else Interpolation.HERMITE
        if interpolation == Interpolation.CONTINUOUS and tableau.dense is None:
            raise ValueError(f"`interpolation='continuous'`: {tableau.name} has no `dense`")
        return interpolation

    def request(self, f, y0, t, rtol, atol, n_steps, max_steps, options) -> Request:
        if self.per_trajectory:
            shared = sorted(set(options) & {"norm", "record_steps", "callback", "step_grid"})
            if shared:
                raise ValueError(
                    f"{self.name!r} gives each trajectory its own steps: "
                    f"{', '.join(f'`{k}`' for k in shared)} (the adjoint and checkpoint "
                    "gradients, a step callback) need shared steps"
                )
        return super().request(f, y0, t, rtol, atol, n_steps, max_steps, options)

    # -- replay (the checkpoint gradient) ---------------------------------------------------

    def replay_step(
        self,
        fv: RHS,
        rec: StepRecord,
        y: torch.Tensor,
        k1: torch.Tensor | None,
        thetas: list[float],
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Recompute the accepted step ``rec`` from the row ``y`` (``[1, N]``), the same ops as
        the solve took, so autograd can record it (the ``checkpoint`` gradient). ``fv(t, row)``
        is ``f`` on rows ``[1, N]`` (the solve's own flattening).

        ``k1``: the carried first stage (FSAL) or None to evaluate ``f(t, y)``. ``thetas``: the
        dense outputs strictly inside the step. Returns ``(y1, k_last, rows)``: the new state,
        the last stage (FSAL methods: the next step's ``k1``; else None) and the dense rows
        ``[len(thetas), N]`` (None without thetas). The Hermite interpolant of a method without
        FSAL needs ``f(t1, y1)``: it is evaluated here, as the solve's next step did.
        """
        eng = GraphStages(fv, coefficients(self.tableau, y, self._cache))
        if k1 is None:
            k1 = fv(rec.t, y)
        y1 = eng.step(rec.t, y, k1, rec.h)
        rows = None
        if thetas:
            f1 = fv(rec.t1, y1) if self.dense.needs_next else None
            rows = self.dense.rows(y, k1, y1, rec.h, eng, thetas, f1)
        return y1, (eng.carry() if self.tableau.fsal else None), rows

    # -- the solve ------------------------------------------------------------------------

    def _solve(self, req: Request) -> Solution:
        """Options (:class:`~solvers.base.Capability`): ``controller`` (a name or an object),
        ``backend`` (``auto``, ``tensor``, ``host``), ``norm`` (adaptive; the error norm, e.g.
        a :class:`~solvers.norms.Seminorm`), ``record_steps`` (fill ``Solution.steps``),
        ``step_grid`` (fixed step: the step times from ``t[0]`` to ``t[-1]``), ``callback``
        (an object with ``step``, ``accept`` and ``reject`` methods, each called with the
        step's start ``t``, its state in ``y0``'s shape and the signed step ``h``)."""
        opts = req.options
        ctrl = controller_for(self, opts.get("controller"))
        backend = _backend(opts.get("backend", Backend.AUTO))
        norm, step_grid = opts.get("norm"), opts.get("step_grid")
        max_steps = req.max_steps
        if self.per_trajectory:
            if backend == Backend.HOST:
                raise ValueError(f"{self.name!r} runs on tensors only; got backend='host'")
            sol = solve_per_trajectory(
                self.tableau, ctrl, req.f, req.y0, req.times, rtol=req.rtol, atol=req.atol,
                max_steps=max_steps or DEFAULT_MAX_STEPS,
            )
            sol.backend, sol.controller = Backend.TENSOR, ctrl.name
            return sol
        y0, times, f = req.y0, req.times, req.f
        shape = y0.shape
        y = y0.reshape(1, -1)
        n_calls = [0]

        def fv(tt: float, yy: torch.Tensor) -> torch.Tensor:
            n_calls[0] += 1
            return f(tt, yy.view(shape)).reshape(1, -1)

        out = OutputCollector(times, y, torch.finfo(y0.dtype).eps)
        records: list[StepRecord] | None = [] if opts.get("record_steps") else None
        callback = _RowCallback(opts["callback"], shape) if opts.get("callback") else None
        co = coefficients(self.tableau, y, self._cache)
        k1 = fv(times[0], y)
        if self.adaptive:
            rule, h, norm = self._adaptive(fv, y, k1, times, ctrl, norm, req, out.eps)
        else:
            if norm is not None:
                raise ValueError(f"`norm` needs an adaptive solver; {self.name!r} is not")
            if step_grid is not None:
                rule = Grid(check_step_grid(step_grid, times[0], times[-1]), None, max_steps)
            else:
                grid, h_uniform = fixed_grid(times[0], times[-1], req.n_steps)
                rule = Grid(grid, h_uniform, max_steps)
            h = 0.0
        host = self._host(backend, y, k1, norm, records, callback)
        if host:
            eng = HostStages(self._host_plan(), f, shape, y.shape[-1])
            with torch.no_grad():
                res = integrate(eng, rule, out, self.dense, times[0], y.tolist()[0],
                                k1.tolist()[0], h, fsal=self.tableau.fsal)
        else:
            eng, context = engine(fv, f, shape, co, y, k1, self._cache)
            with context:
                res = integrate(eng, rule, out, self.dense, times[0], y, k1, h,
                                fsal=self.tableau.fsal, records=records, callback=callback)
        return res.solution(
            out.stack(y).view(len(times), *shape), n_calls[0] + eng.nfe, steps=records,
            backend=Backend.HOST if host else Backend.TENSOR, controller=ctrl.name,
        )

    def _adaptive(self, fv, y, k1, times, ctrl: Controller, norm, req: Request, eps: float):
        """The adaptive step rule, its first step and its norm."""
        tab = self.tableau
        t0, t_end = times[0], times[-1]
        direction = 1.0 if t_end > t0 else -1.0
        span = abs(t_end - t0)
        ctrl = ctrl.fresh(q=(tab.error_order or tab.order - 1) + 1, span=span)
        state_dim = req.y0.shape[-1] if req.y0.dim() else 1
        norm = (norm or RMSNorm()).bind(y.shape[-1], state_dim)
        q_init = min(tab.order, (tab.error_order or tab.order)) + 1
        h = ctrl.initial_step(
            lambda: initial_step(fv, t0, y, k1, direction, q_init, req.rtol, req.atol,
                                 ctrl.hmax, norm),
            direction,
        )
        rule = Adaptive(ctrl, norm, req.rtol, req.atol, req.max_steps or DEFAULT_MAX_STEPS,
                        t_end, eps)
        return rule, h, norm

    def _host(self, backend: Backend, y, k1, norm, records, callback) -> bool:
        """Whether the solve runs on the ``host`` backend: asked for, or ``auto`` on a small
        adaptive float64 CPU solve that autograd does not record, with the default norm and no
        step record or callback. ``host`` asked for where it cannot run is a ``ValueError``."""
        possible = (
            y.dtype == torch.float64 and y.device.type == "cpu"
            and k1.dtype == y.dtype and k1.shape == y.shape and k1.device == y.device
            and not recorded(y, k1) and isinstance(norm, RMSNorm | None)
            and records is None and callback is None
        )
        if backend == Backend.HOST:
            if not possible:
                raise ValueError(
                    f"backend='host' needs a float64 CPU state that autograd does not record, "
                    f"the default norm, and no record_steps or callback; {self.name!r} got "
                    f"{y.dtype} on {y.device.type}"
                    f"{', a recorded graph' if recorded(y, k1) else ''}"
                )
            return True
        return backend == Backend.AUTO and possible and self.adaptive and y.numel() <= HOST_MAX

    def _host_plan(self) -> HostPlan:
        plan = self._cache.get("host")
        if plan is None:
            plan = self._cache["host"] = HostPlan(self.tableau)
        return plan


def _backend(value) -> Backend:
    try:
        return Backend(value)
    except ValueError:
        allowed = ", ".join(repr(b.value) for b in Backend)
        raise ValueError(f"unknown backend {value!r}; choose one of {allowed}") from None


class _RowCallback:
    """The user's step callback, handed states in ``y0``'s shape instead of the loop's rows."""

    def __init__(self, callback, shape: torch.Size) -> None:
        self.callback, self.shape = callback, shape
        for name in ("step", "accept", "reject"):
            if not callable(getattr(callback, name, None)):
                setattr(self, name, _ignore)

    def step(self, t, y, h) -> None:
        self.callback.step(t, y.view(self.shape), h)

    def accept(self, t, y, h) -> None:
        self.callback.accept(t, y.view(self.shape), h)

    def reject(self, t, y, h) -> None:
        self.callback.reject(t, y.view(self.shape), h)


def _ignore(t, y, h) -> None:
    return None
