"""One explicit Runge–Kutta engine for every tableau, with fixed steps or adaptive steps.

The method is data (:class:`solvers.tableaux.ButcherTableau`); this module owns the loop:

- fixed-step mode takes ``n_steps`` uniform steps over ``[t[0], t[-1]]``;
- adaptive mode takes DOPRI5's initial step and controller from :mod:`solvers.control`, ends
  exactly at ``t[-1]`` (Hairer's last-step rule) and never steps past it;
- output at the requested times comes from dense output (:mod:`solvers.dense`), never from
  forcing steps onto them.

The state is flattened to a row ``[1, N]`` (``N`` = all elements of the batch), so each stage
is one fused ``addmm`` of the stacked earlier stages with a row of ``A``. One step size serves
the whole batch and the error norm runs over all elements, as in Hairer's codes. When autograd
records the solve (``backprop``), every tensor op is out of place (:class:`_GraphStages`);
when nothing requires a gradient, the stages are written in place into one preallocated
``[s, N]`` buffer under ``no_grad`` (:class:`_BufferedStages`): the same ops on the same
numbers, fewer tensor dispatches per step. An adaptive solve of a small float64 CPU state
that nothing records runs in Python floats instead (:mod:`solvers.rk_host`): at batch 1 a
torch op's dispatch costs more than its arithmetic. The controller works on Python floats,
detached; the one host sync per adaptive step is the error norm. A new method is a tableau plus
one registration::

    register_solver("heun")(lambda: RungeKutta(HEUN, name="heun", adaptive=False))
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from solvers import dense
from solvers.base import (
    DEFAULT_MAX_STEPS,
    RHS,
    GradMode,
    Solution,
    Solver,
    Status,
    StepRecord,
    check_max_steps,
    check_times,
    tolerances,
)
from solvers.control import clip_to_end, initial_step, nonfinite_failure, step_failure
from solvers.controllers import HairerController
from solvers.norms import Channels, RMSNorm, Seminorm, check_channels
from solvers.per_trajectory import solve_per_trajectory
from solvers.rk_host import HOST_MAX, HostPlan, adaptive_host
from solvers.tableaux import ButcherTableau


def check_step_grid(step_grid: list[float], t0: float, t1: float) -> list[float]:
    """Validate an explicit fixed-step grid: from ``t0`` to ``t1``, strictly monotone."""
    grid = [float(x) for x in step_grid]
    if len(grid) < 2 or grid[0] != t0 or grid[-1] != t1:
        raise ValueError(
            f"`step_grid` must start at t[0] = {t0:g} and end at t[-1] = {t1:g} "
            f"with at least one step; got {len(grid)} points"
        )
    d = [b - a for a, b in zip(grid, grid[1:], strict=False)]
    if not (all(x > 0 for x in d) or all(x < 0 for x in d)):
        raise ValueError("`step_grid` must be strictly monotone in the direction of `t`")
    return grid


def fixed_grid(t0: float, t1: float, n_steps: int) -> tuple[list[float], float]:
    """The ``n_steps + 1`` times of a uniform grid (the last exactly ``t1``) and its step."""
    h = (t1 - t0) / n_steps
    times = [t0 + k * h for k in range(n_steps)] + [t1]
    return times, h


class OutputCollector:
    """Collects the state at the requested times as steps are accepted (shared by all solvers)."""

    def __init__(self, times: list[float], y0: torch.Tensor, eps: float) -> None:
        self.times = times
        self.rows: list[torch.Tensor | None] = [None] * len(times)
        self.rows[0] = y0[0]
        self.next = 1
        self.eps = eps

    def due(self, t: float, t1: float, y1: torch.Tensor) -> list[tuple[int, float]]:
        """Fill the outputs at ``t1`` (within rounding) with ``y1``.

        Returns the outputs strictly inside the step as ``(index, theta)`` pairs.
        """
        hits, interior = self.assign(t, t1)
        for j in hits:
            self.rows[j] = y1[0]
        return interior

    def quiet(self, t: float, t1: float) -> bool:
        """True when the step ``[t, t1]`` reaches no output (``assign`` would find none): a
        few float comparisons, so the solver's hot loop skips the bookkeeping."""
        if self.next >= len(self.times):
            return True
        h = t1 - t
        d = self.times[self.next] - t1
        return d * h >= 0 and abs(d) > 8.0 * self.eps * max(abs(t1), abs(h))

    def assign(self, t: float, t1: float) -> tuple[list[int], list[tuple[int, float]]]:
        """The outputs an accepted step ``[t, t1]`` produces: those at ``t1`` (within rounding)
        and those strictly inside as ``(index, theta)``; advances past them. The checkpoint
        gradient replays this to know which outputs each recomputed step feeds."""
        h = t1 - t
        tol = 8.0 * self.eps * max(abs(t1), abs(h))
        hits: list[int] = []
        interior = []
        while self.next < len(self.times):
            tj = self.times[self.next]
            if abs(tj - t1) <= tol:
                hits.append(self.next)
            elif (tj - t1) * h < 0:
                interior.append((self.next, (tj - t) / h))
            else:
                break
            self.next += 1
        return hits, interior

    def put(self, interior: list[tuple[int, float]], values: torch.Tensor) -> None:
        for (j, _), row in zip(interior, values.unbind(0), strict=True):
            self.rows[j] = row

    def stack(self, like: torch.Tensor) -> torch.Tensor:
        if any(r is None for r in self.rows):  # a solve that stopped early: NaN from there
            nan = torch.full_like(like[0], math.nan)
            return torch.stack([r if r is not None else nan for r in self.rows])
        return torch.stack(self.rows)


@dataclass
class _Coefficients:
    """A tableau's coefficients as tensors on one device/dtype, in the form the loop uses."""

    c: list[float]
    rows: list[tuple]  # per stage: ("one", j, a) or ("mm", n, row [1, n]); row 0 unused
    b: tuple
    e: torch.Tensor | None


def _combination(weights: list[float], like: torch.Tensor) -> tuple:
    nonzero = [j for j, w in enumerate(weights) if w != 0.0]
    if len(nonzero) == 1:
        return ("one", nonzero[0], weights[nonzero[0]])
    n = (nonzero[-1] + 1) if nonzero else 1
    return ("mm", n, torch.tensor([weights[:n]], dtype=like.dtype, device=like.device))


def _combine(y: torch.Tensor, ks: list[torch.Tensor], spec: tuple, h: float) -> torch.Tensor:
    """``y + h * sum_j w_j k_j`` in one or two fused ops."""
    if spec[0] == "one":
        return torch.add(y, ks[spec[1]], alpha=h * spec[2])
    n = spec[1]
    k = ks[0] if n == 1 else torch.cat(ks[:n])
    return torch.addmm(y, spec[2], k, alpha=h)


class _GraphStages:
    """A step's stages as a list of out-of-place tensors: autograd can record them."""

    def __init__(self, solver: RungeKutta, fv, co: _Coefficients) -> None:
        self.solver, self.fv, self.co = solver, fv, co
        self.ks: list[torch.Tensor] = []
        self.nfe = 0  # the calls go through ``fv``, which counts them

    def step(self, t: float, y: torch.Tensor, k1: torch.Tensor, h: float) -> torch.Tensor:
        self.ks, y1 = self.solver._stages(self.fv, t, y, k1, h, self.co)
        return y1

    def stacked(self) -> torch.Tensor:
        return torch.cat(self.ks)

    def final(self) -> torch.Tensor:
        return self.ks[-1]

    def carry(self) -> torch.Tensor:
        return self.ks[-1]

    def first(self, t: float, y: torch.Tensor) -> torch.Tensor:
        return self.fv(t, y)

    def error(self, e: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.mm(e, torch.cat(self.ks))

    @staticmethod
    def keep(x: torch.Tensor) -> torch.Tensor:
        return x


class _BufferedStages:
    """A step's stages written in place into one preallocated buffer ``K`` ``[s, N]``.

    The same ops as :class:`_GraphStages` on the same numbers (each stage input is one ``add`` or
    ``addmm`` over the leading rows of ``K``, the error one ``mm``), without the per-stage
    ``cat``, reshapes and allocations. Only for solves autograd does not record (the caller runs
    it under ``no_grad``): ``K`` and the stage-input buffer are overwritten every step. The new
    state ``y1`` is always a fresh tensor; the rows handed out by :meth:`first`, :meth:`final`
    and :meth:`carry` are views of ``K``, valid until the next step (:meth:`keep` copies one
    that must outlive it). ``f`` is called on views of the user's shape, as ``fv`` would.
    A solver keeps the buffers of its last buffered solve and reuses them for the next one of
    the same layout (:meth:`RungeKutta._engine`; ``busy`` while a solve runs on them).
    """

    def __init__(
        self, tableau: ButcherTableau, f: RHS, shape: torch.Size, co: _Coefficients, y: torch.Tensor
    ) -> None:
        s, n = tableau.stages, y.shape[-1]
        self.f, self.shape, self.s, self.fsal = f, shape, s, tableau.fsal
        self.K = K = y.new_empty(s, n)
        self.rows = K.split(1)  # row i as [1, N]
        self.views = K.view(s, *shape).unbind(0)  # row i in the user's shape
        self.buf = y.new_empty(1, n)
        self.bufv = self.buf.view(shape)
        self.b = self._plan(co.b)
        # stages whose input goes into ``buf``: (c_i, row view, plan); the FSAL last stage's
        # input is y1 itself
        inner = range(1, s - 1) if self.fsal else range(1, s)
        self.inner = [(co.c[i], self.views[i], *self._plan(co.rows[i])) for i in inner]
        self.c_last = co.c[s - 1]
        self.nfe = 0
        self.busy = False  # a solve is running on these buffers

    def _plan(self, spec: tuple) -> tuple[bool, torch.Tensor, object]:
        """``(one, rows, weight)``: ``y + (h w) k_j`` (torch.add) or ``y + h w @ K[:n]``
        (addmm), the ops of :func:`_combine`."""
        if spec[0] == "one":
            return (True, self.rows[spec[1]], spec[2])
        return (False, self.K[: spec[1]], spec[2])

    def step(self, t: float, y: torch.Tensor, k1: torch.Tensor, h: float) -> torch.Tensor:
        K0 = self.rows[0]
        if k1 is not K0:
            K0.copy_(k1)
        f, shape, buf, bufv = self.f, self.shape, self.buf, self.bufv
        for c, view, one, k, w in self.inner:
            if one:
                torch.add(y, k, alpha=h * w, out=buf)
            else:
                torch.addmm(y, w, k, alpha=h, out=buf)
            ki = f(t + c * h, bufv)
            if ki.shape != shape:
                ki = ki.reshape(shape)  # what ``fv`` does; raises on a wrong size
            view.copy_(ki)
        self.nfe += self.s - 1
        y1 = self._combine(y, self.b, h)
        if self.fsal:
            ki = f(t + self.c_last * h, y1.view(shape))
            if ki.shape != shape:
                ki = ki.reshape(shape)
            self.views[-1].copy_(ki)
        return y1

    @staticmethod
    def _combine(y: torch.Tensor, plan: tuple, h: float) -> torch.Tensor:
        one, k, w = plan
        if one:
            return torch.add(y, k, alpha=h * w)
        return torch.addmm(y, w, k, alpha=h)

    def stacked(self) -> torch.Tensor:
        return self.K

    def final(self) -> torch.Tensor:
        """The last stage (a view of ``K``)."""
        return self.rows[-1]

    def carry(self) -> torch.Tensor:
        """The last stage, moved to row 0 (the next step's first stage, FSAL)."""
        K0 = self.rows[0]
        K0.copy_(self.rows[-1])
        return K0

    def first(self, t: float, y: torch.Tensor) -> torch.Tensor:
        """``f(t, y)`` into row 0 (the first stage of a method without FSAL)."""
        k = self.f(t, y.view(self.shape))
        if k.shape != self.shape:
            k = k.reshape(self.shape)
        self.views[0].copy_(k)
        self.nfe += 1
        return self.rows[0]

    def error(self, e: torch.Tensor) -> torch.Tensor:
        return torch.mm(e, self.K)

    @staticmethod
    def keep(x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class _Holding:
    """The buffered loop's context: ``no_grad``, and the engine free for the next solve after it
    (see :meth:`RungeKutta._engine`)."""

    def __init__(self, eng: _BufferedStages) -> None:
        self.eng = eng
        self.no_grad = torch.no_grad()

    def __enter__(self) -> None:
        self.no_grad.__enter__()

    def __exit__(self, *exc) -> None:
        self.no_grad.__exit__(*exc)
        self.eng.f = None  # hold no reference to the solve's right-hand side
        self.eng.busy = False


class RungeKutta(Solver):
    """An explicit RK solver defined by a :class:`ButcherTableau`.

    ``adaptive`` defaults to whether the tableau has an error estimate; ``interpolation`` is
    ``"auto"`` (the tableau's continuous extension if it has one, else linear for order 1 and
    cubic Hermite otherwise), ``"continuous"``, ``"hermite"`` or ``"linear"``. The controller
    parameters are DOPRI5's (see :class:`solvers.control.HairerController`).

    Every gradient mode works (see :mod:`solvers.gradients`): the loop is out-of-place torch
    ops (``backprop``), ``solve`` runs any right-hand side (``adjoint``), takes
    ``error_channels`` (``adjoint-seminorm``), and reports its accepted steps and replays one
    of them (``record_steps``, :meth:`replay_step`: ``checkpoint``).
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
        interpolation: str = "auto",
        safe: float = 0.9,
        fac1: float = 0.2,
        fac2: float = 10.0,
        beta: float = 0.04,
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
        if interpolation == "auto":
            if tableau.dense is not None:
                interpolation = "continuous"
            else:
                interpolation = "linear" if tableau.order <= 1 else "hermite"
        allowed = ("continuous", "hermite", "linear")
        if interpolation not in allowed:
            raise ValueError(f"`interpolation` must be one of {allowed}; got {interpolation!r}")
        if interpolation == "continuous" and tableau.dense is None:
            raise ValueError(f"`interpolation='continuous'`: {tableau.name} has no `dense`")
        self.interpolation = interpolation
        self.controller_options = {"safe": safe, "fac1": fac1, "fac2": fac2, "beta": beta}
        HairerController(**self.controller_options)  # validate now, not mid-run
        self.per_trajectory = per_trajectory
        if per_trajectory:
            if not self.adaptive or interpolation != "continuous":
                raise ValueError(
                    "`per_trajectory=True` needs an adaptive solver with the tableau's own "
                    f"dense output; {tableau.name} is "
                    f"{'fixed step' if not self.adaptive else interpolation + ' dense output'}"
                )
            self.grad_modes = (GradMode.NONE, GradMode.BACKPROP)
        steps = "adaptive" if self.adaptive else "fixed step"
        if per_trajectory:
            steps = "adaptive, a step size per trajectory"
        self.kind = f"explicit RK, {steps}"
        self.description = description or (
            f"{tableau.name} tableau, {tableau.stages} stages, {interpolation} dense output"
        )
        self._cache: dict = {}  # coefficients per (dtype, device), the host plan, buffers

    # -- coefficients --------------------------------------------------------------------

    def _coefficients(self, like: torch.Tensor) -> _Coefficients:
        key = (like.dtype, like.device)
        co = self._cache.get(key)
        if co is None:
            tab = self.tableau
            rows = [("none",)] + [_combination(r, like) for r in tab.a_rows()[1:]]
            b = _combination([float(x) for x in tab.b], like)
            e = None
            if tab.b_err is not None:
                e = torch.tensor(
                    [[float(x) for x in tab.b_err]], dtype=like.dtype, device=like.device
                )
            co = _Coefficients([float(x) for x in tab.c], rows, b, e)
            self._cache[key] = co
        return co

    # -- one step -------------------------------------------------------------------------

    def _stages(
        self, fv, t: float, y: torch.Tensor, k1: torch.Tensor, h: float, co: _Coefficients
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """All stages of a step of size ``h`` from ``(t, y)`` and the new state ``y1``."""
        s = self.tableau.stages
        fsal = self.tableau.fsal
        ks = [k1]
        y1 = None
        for i in range(1, s):
            if fsal and i == s - 1:
                y1 = _combine(y, ks, co.b, h)
                yi = y1
            else:
                yi = _combine(y, ks, co.rows[i], h)
            ks.append(fv(t + co.c[i] * h, yi))
        if y1 is None:
            y1 = _combine(y, ks, co.b, h)
        return ks, y1

    def _dense(self, y, k1, y1, h, eng, thetas, f1):
        """Dense output rows inside a step whose stages ``eng`` holds; ``f1`` is ``f(t1, y1)``
        (only Hermite non-FSAL)."""
        if self.interpolation == "continuous":
            return dense.continuous_extension(self.tableau, y, eng.stacked(), h, thetas)
        if self.interpolation == "linear":
            return dense.linear(y, y1, thetas)
        if self.tableau.fsal:
            return dense.cubic_hermite(y, k1, y1, eng.final(), h, thetas)
        return dense.cubic_hermite(y, k1, y1, f1, h, thetas)

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
        eng = _GraphStages(self, fv, self._coefficients(y))
        if k1 is None:
            k1 = fv(rec.t, y)
        y1 = eng.step(rec.t, y, k1, rec.h)
        rows = None
        if thetas:
            f1 = None
            if self.interpolation == "hermite" and not self.tableau.fsal:
                f1 = fv(rec.t1, y1)
            rows = self._dense(y, k1, y1, rec.h, eng, thetas, f1)
        return y1, (eng.carry() if self.tableau.fsal else None), rows

    # -- the solve ------------------------------------------------------------------------

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
        error_channels: Channels | None = None,
        record_steps: bool = False,
        step_grid: list[float] | None = None,
    ) -> Solution:
        """Integrate ``dy/dt = f(t, y)`` from ``t[0]``; the state at every time in ``t``.

        Adaptive: ``rtol`` (default 1e-6, > 0) and ``atol`` (default 1e-9, >= 0) drive the
        steps; ``max_steps`` (default 100 000) bounds the attempted steps. Fixed step:
        ``n_steps`` (> 0) uniform steps; ``rtol``/``atol`` are ignored; ``max_steps`` (default
        none) stops early. Wrong arguments raise ``ValueError``; numerical failure returns a
        status.

        Options for the gradient modes (:mod:`solvers.gradients`), all off by default at no
        cost: ``error_channels`` (adaptive only) restricts the error norm to segments of the
        flattened state (:data:`solvers.control.Channels`; a seminorm when segments are left
        out); ``record_steps`` fills ``Solution.steps`` with the accepted steps and their
        states; ``step_grid`` (fixed step only) gives the step times explicitly, from ``t[0]``
        to ``t[-1]``, instead of ``n_steps`` uniform steps.
        """
        check_times(t)
        if not isinstance(y0, torch.Tensor) or not y0.is_floating_point():
            raise ValueError("`y0` must be a floating-point torch.Tensor")
        check_max_steps(max_steps)
        times = [float(x) for x in t.tolist()]
        shape = y0.shape
        y = y0.reshape(1, -1)
        eps = torch.finfo(y0.dtype).eps
        nfe = 0

        def fv(tt: float, yy: torch.Tensor) -> torch.Tensor:
            nonlocal nfe
            nfe += 1
            return f(tt, yy.view(shape)).reshape(1, -1)

        out = OutputCollector(times, y, eps)
        records: list[StepRecord] | None = [] if record_steps else None
        if error_channels is not None and not self.adaptive:
            raise ValueError(f"`error_channels` needs an adaptive solver; {self.name!r} is not")
        if step_grid is not None and self.adaptive:
            raise ValueError(f"`step_grid` needs a fixed-step solver; {self.name!r} is adaptive")
        if self.per_trajectory:
            if error_channels is not None or record_steps:
                raise ValueError(
                    f"{self.name!r} gives each trajectory its own steps: `error_channels` and "
                    "`record_steps` (the adjoint and checkpoint gradients) need shared steps"
                )
            rtol, atol = tolerances(rtol, atol)
            return solve_per_trajectory(
                self.tableau, HairerController(**self.controller_options), f, y0, times,
                rtol=rtol, atol=atol, max_steps=max_steps or DEFAULT_MAX_STEPS,
            )
        if self.adaptive:
            rtol, atol = tolerances(rtol, atol)
            state_dim = shape[-1] if len(shape) else 1
            channels = None
            if error_channels is not None:
                channels = check_channels(error_channels, y.shape[-1])
            result = self._adaptive(
                fv,
                f,
                shape,
                y,
                times,
                out,
                rtol,
                atol,
                max_steps or DEFAULT_MAX_STEPS,
                state_dim,
                channels,
                records,
            )
        elif step_grid is not None:
            grid = check_step_grid(step_grid, times[0], times[-1])
            result = self._fixed(
                fv, f, shape, y, times, out, len(grid) - 1, max_steps, records, grid
            )
        else:
            if n_steps is None or not isinstance(n_steps, int) or n_steps < 1:
                raise ValueError(
                    f"`n_steps` must be a positive int for the fixed-step solver {self.name!r}; "
                    f"got {n_steps!r}"
                )
            result = self._fixed(fv, f, shape, y, times, out, n_steps, max_steps, records)
        status, message, n_acc, n_rej, t_reached, nfe_buffered = result
        nfe += nfe_buffered
        ys = out.stack(y)
        if status == Status.OK and not bool(torch.isfinite(ys).all()):
            finite = torch.isfinite(ys).reshape(len(times), -1).all(dim=1).tolist()
            first_bad = finite.index(False)
            ys = ys.clone()
            ys[first_bad:] = math.nan
            status = Status.NONFINITE
            message = f"the state became inf/NaN before t = {times[first_bad]:g}"
            t_reached = times[first_bad - 1]
        return Solution(
            ys=ys.view(len(times), *shape),
            status=status,
            message=message,
            n_steps=n_acc + n_rej,
            n_accepted=n_acc,
            n_rejected=n_rej,
            nfe=nfe,
            t_reached=t_reached,
            steps=records,
        )

    def _emit(self, out, eng, t, y, k1, t1, y1, h):
        """Dense output for the accepted step ``[t, t1]``; returns a pending Hermite job."""
        if out.quiet(t, t1):
            return None
        interior = out.due(t, t1, y1)
        if not interior:
            return None
        thetas = [th for _, th in interior]
        if self.interpolation == "hermite" and not self.tableau.fsal:
            # needs f(t1, y1): the next step's k1, which overwrites a buffered k1
            return (interior, y, eng.keep(k1), y1, h, thetas)
        out.put(interior, self._dense(y, k1, y1, h, eng, thetas, None))
        return None

    @staticmethod
    def _resolve(out, pending, f1) -> None:
        interior, y, k1, y1, h, thetas = pending
        out.put(interior, dense.cubic_hermite(y, k1, y1, f1, h, thetas))

    def _engine(self, fv, f, shape, co, y, k1):
        """The stage engine and the context to run the loop in.

        Buffered (in place, under ``no_grad``) unless autograd would record the solve: grad mode
        is on and the state or ``f(t0, y0)`` requires a gradient. ``k1`` is that first
        evaluation (a row ``[1, N]``)."""
        recorded = torch.is_grad_enabled() and (y.requires_grad or k1.requires_grad)
        if recorded or k1.shape != y.shape or k1.dtype != y.dtype or k1.device != y.device:
            return _GraphStages(self, fv, co), contextlib.nullcontext()
        # the buffers of the last buffered solve are reused when the layout is the same (the
        # adjoint solves every output interval anew); a solve nested inside ``f`` gets its own
        key = (shape, y.dtype, y.device, id(co))
        slot = self._cache.get("buffered")
        if slot is not None and slot[0] == key and not slot[1].busy:
            eng = slot[1]
            eng.f, eng.nfe = f, 0
        else:
            eng = _BufferedStages(self.tableau, f, shape, co, y)
            if slot is None or not slot[1].busy:
                self._cache["buffered"] = (key, eng)
        eng.busy = True
        return eng, _Holding(eng)

    def _host_ok(self, y: torch.Tensor, k1: torch.Tensor) -> bool:
        """Whether the adaptive loop runs on Python floats (:mod:`solvers.rk_host`): a small
        float64 CPU state that autograd does not record."""
        return (
            y.numel() <= HOST_MAX
            and y.dtype == torch.float64
            and y.device.type == "cpu"
            and k1.dtype == y.dtype
            and k1.shape == y.shape
            and k1.device == y.device
            and not (torch.is_grad_enabled() and (y.requires_grad or k1.requires_grad))
        )

    def _host_plan(self) -> HostPlan:
        plan = self._cache.get("host")
        if plan is None:
            plan = self._cache["host"] = HostPlan(self.tableau)
        return plan

    def _fixed(self, fv, f, shape, y, times, out, n_steps, max_steps, records, grid=None):
        co = self._coefficients(y)
        uniform = grid is None
        if uniform:
            grid, h = fixed_grid(times[0], times[-1], n_steps)
        limit = n_steps if max_steps is None else min(n_steps, max_steps)
        fsal = self.tableau.fsal
        k1 = fv(grid[0], y)
        eng, mode = self._engine(fv, f, shape, co, y, k1)
        carried = None
        pending = None
        with mode:
            for n in range(limit):
                tn = grid[n]
                t1 = grid[n + 1]
                if not uniform:
                    h = t1 - tn
                if k1 is None:
                    k1 = eng.first(tn, y)
                    if pending is not None:
                        self._resolve(out, pending, k1)
                        pending = None
                if records is not None:
                    records.append(StepRecord(tn, h, t1, y, carried))
                y1 = eng.step(tn, y, k1, h)
                pending = self._emit(out, eng, tn, y, k1, t1, y1, h)
                y = y1
                if fsal:
                    k1 = eng.carry()
                    carried = k1 if records is None else eng.keep(k1)
                else:
                    k1 = None
        t_end = grid[limit]
        if pending is not None:
            self._resolve(out, pending, fv(t_end, y))
        if limit < n_steps:
            msg = f"stopped after max_steps={max_steps} of n_steps={n_steps} steps"
            return Status.MAX_STEPS, msg, limit, 0, t_end, eng.nfe
        return Status.OK, "", limit, 0, t_end, eng.nfe

    def _adaptive(
        self, fv, f, shape, y, times, out, rtol, atol, max_steps, state_dim, channels, records
    ):
        co = self._coefficients(y)
        tab = self.tableau
        fsal = tab.fsal
        t, t_end = times[0], times[-1]
        direction = 1.0 if t_end > t else -1.0
        hmax = abs(t_end - t)
        ctrl = HairerController(**self.controller_options).fresh(
            q=(tab.error_order or tab.order - 1) + 1, span=hmax
        )
        norm = (RMSNorm(state_dim) if channels is None else Seminorm(channels)).bind(
            y.shape[-1], state_dim)
        decide = ctrl.decide
        eps = out.eps
        k1 = fv(t, y)
        q_init = min(tab.order, (tab.error_order or tab.order)) + 1
        h = initial_step(fv, t, y, k1, direction, q_init, rtol, atol, hmax, norm)
        if channels is None and records is None and self._host_ok(y, k1):
            return adaptive_host(self, f, shape, y, k1, t, t_end, h, out, rtol, atol, max_steps,
                                 state_dim, ctrl)
        eng, mode = self._engine(fv, f, shape, co, y, k1)
        e = co.e
        carried = None
        n_acc = n_rej = bad = 0
        pending = None
        status, message = Status.OK, ""
        with mode:
            while True:
                failure = step_failure(n_acc + n_rej, max_steps, h, t, eps)
                if failure is not None:
                    status, message = failure
                    break
                h, last = clip_to_end(t, h, t_end)
                if k1 is None:
                    k1 = eng.first(t, y)
                    if pending is not None:
                        self._resolve(out, pending, k1)
                        pending = None
                y1 = eng.step(t, y, k1, h)
                err = norm(eng.error(e), h, y, y1, rtol, atol)
                accepted, h_new = decide(err, h)
                if accepted:
                    n_acc += 1
                    bad = 0
                    t1 = t_end if last else t + h
                    if records is not None:
                        records.append(StepRecord(t, h, t1, y, carried))
                    pending = self._emit(out, eng, t, y, k1, t1, y1, h)
                    t, y = t1, y1
                    if last:
                        break
                    if fsal:
                        k1 = eng.carry()
                        carried = k1 if records is None else eng.keep(k1)
                    else:
                        k1 = carried = None
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
            self._resolve(out, pending, fv(t, y))
        return status, message, n_acc, n_rej, t, eng.nfe
