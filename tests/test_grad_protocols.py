"""Gradient modes ask for declared capabilities, not signatures: a plugin solver that declares
the protocol a mode needs gets the mode, and one that does not is refused up front with a
message naming what it lacks."""

from __future__ import annotations

import pytest
import torch

from solvers import dense
from solvers.base import (
    Capability,
    GradMode,
    Request,
    Solution,
    Solver,
    Status,
    StepRecord,
)
from solvers.gradients import check_mode, odeint, supported_modes
from solvers.norms import RMSNorm, Seminorm
from solvers.output import OutputCollector, check_step_grid, fixed_grid

F64 = torch.float64
ALL_MODES = tuple(GradMode)


def _rows(f, shape):
    """``f`` on rows ``[1, N]`` of the flattened state."""
    return lambda t, y: f(t, y.view(shape)).reshape(1, -1)


class Midpoint(Solver):
    """A plugin: the explicit midpoint rule at a fixed step, with the checkpoint protocol
    (``record_steps``, :meth:`replay_step`) and the adjoint's grid retrace (``step_grid``)."""

    name = "midpoint-plugin"
    order = 2
    adaptive = False
    grad_modes = ALL_MODES
    capabilities = frozenset({Capability.RECORD_STEPS, Capability.REPLAY_STEP,
                              Capability.STEP_GRID})

    @staticmethod
    def _step(fv, t: float, h: float, y: torch.Tensor) -> torch.Tensor:
        k1 = fv(t, y)
        return y + h * fv(t + h / 2, y + (h / 2) * k1)

    def _solve(self, request: Request) -> Solution:
        times, shape = request.times, request.y0.shape
        step_grid = request.options.get("step_grid")
        if step_grid is not None:
            grid = check_step_grid(step_grid, times[0], times[-1])
        else:
            grid, _ = fixed_grid(times[0], times[-1], request.n_steps)
        fv = _rows(request.f, shape)
        y = request.y0.reshape(1, -1)
        out = OutputCollector(times, y, torch.finfo(y.dtype).eps)
        records = [] if request.options.get("record_steps") else None
        for t0, t1 in zip(grid, grid[1:], strict=False):
            if records is not None:
                records.append(StepRecord(t0, t1 - t0, t1, y))
            y1 = self._step(fv, t0, t1 - t0, y)
            interior = out.due(t0, t1, y1)
            if interior:
                out.put(interior, dense.linear(y, y1, [th for _, th in interior]))
            y = y1
        n = len(grid) - 1
        return Solution(out.stack(y).view(len(times), *shape), n_steps=n, n_accepted=n,
                        nfe=2 * n, t_reached=times[-1], steps=records)

    def replay_step(self, fv, rec: StepRecord, y, k1, thetas):
        y1 = self._step(fv, rec.t, rec.h, y)
        return y1, None, dense.linear(y, y1, thetas) if thetas else None


class BareMidpoint(Midpoint):
    """The same solver declaring no capabilities (``replay_step`` is still there: unasked)."""

    name = "bare-midpoint"
    capabilities = frozenset()


class HeunEuler(Solver):
    """A plugin: adaptive Heun–Euler 2(1) that takes the error norm as an object (``norm``)."""

    name = "heun-euler-plugin"
    order = 2
    adaptive = True
    grad_modes = (GradMode.NONE, GradMode.BACKPROP, GradMode.ADJOINT, GradMode.ADJOINT_SEMINORM)
    capabilities = frozenset({Capability.NORM})

    def __init__(self) -> None:
        self.norms: list[type] = []  # the norm each solve measured its error with
        self.options: list[list[str]] = []  # the options each solve got

    def _solve(self, request: Request) -> Solution:
        times, y0 = request.times, request.y0
        self.options.append(sorted(request.options))
        norm = (request.options.get("norm") or RMSNorm()).bind(y0.numel(), y0.shape[-1])
        self.norms.append(type(norm))
        fv = _rows(request.f, y0.shape)
        y = y0.reshape(1, -1)
        rows, t, h = [y[0]], times[0], (times[1] - times[0]) / 10
        n_acc = n_rej = 0
        for t_out in times[1:]:
            while t != t_out:
                if n_acc + n_rej >= (request.max_steps or 10_000):
                    rows += [torch.full_like(y[0], float("nan"))] * (len(times) - len(rows))
                    return Solution(torch.stack(rows).view(len(times), *y0.shape),
                                    Status.MAX_STEPS, "out of steps", n_acc + n_rej, n_acc,
                                    n_rej, 2 * (n_acc + n_rej), t)
                last = abs(h) >= abs(t_out - t)
                h_try = t_out - t if last else h
                k1 = fv(t, y)
                k2 = fv(t + h_try, y + h_try * k1)
                y1 = y + (h_try / 2) * (k1 + k2)
                err = norm((k2 - k1) / 2, h_try, y, y1, request.rtol, request.atol)
                if err <= 1.0:
                    t, y, n_acc = (t_out if last else t + h_try), y1, n_acc + 1
                else:
                    n_rej += 1
                h = h_try * min(5.0, max(0.2, 0.9 * err ** -0.5 if err > 0 else 5.0))
            rows.append(y[0])
        return Solution(torch.stack(rows).view(len(times), *y0.shape), n_steps=n_acc + n_rej,
                        n_accepted=n_acc, n_rejected=n_rej, nfe=2 * (n_acc + n_rej),
                        t_reached=times[-1])


class HeunEulerWithoutNorm(HeunEuler):
    name = "heun-euler-no-norm"
    capabilities = frozenset()


class HeunEulerWithOptions(HeunEuler):
    """Takes a controller and a step callback too (and ignores them: only what reaches it is
    looked at)."""

    capabilities = HeunEuler.capabilities | {Capability.CONTROLLER, Capability.CALLBACK}


class Linear(torch.nn.Module):
    """``dy/dt = A y + sin t``: a parameter and a time dependence to differentiate."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=F64))
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return y @ self.a.T + torch.sin(torch.as_tensor(t, dtype=F64))


def _grads(solver, mode, t_values=(0.0, 0.35, 1.0), **kw):
    f = Linear()
    y0 = torch.tensor([[1.0, 0.5], [-0.3, 0.8]], dtype=F64, requires_grad=True)
    t = torch.tensor(t_values, dtype=F64, requires_grad=True)
    gs = odeint(solver, f, y0, t, mode=mode, **kw)
    assert gs.solution.status == Status.OK, gs.solution.message
    grads = torch.autograd.grad(gs.ys.square().sum(), (y0, f.a, t))
    assert gs.backward.done
    return torch.cat([g.reshape(-1) for g in grads]), gs


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("mode", ALL_MODES)
def test_a_plugin_that_declares_the_protocol_gets_every_mode(mode) -> None:
    solver = Midpoint()
    assert supported_modes(solver) == ALL_MODES
    assert check_mode(solver, mode) == mode
    if mode == GradMode.NONE:
        return
    grads, _ = _grads(solver, mode, n_steps=20)
    assert torch.isfinite(grads).all()


def test_the_plugins_checkpoint_gradient_equals_its_backprop_gradient() -> None:
    solver = Midpoint()
    backprop, _ = _grads(solver, GradMode.BACKPROP, n_steps=20)
    checkpoint, gs = _grads(solver, GradMode.CHECKPOINT, n_steps=20)
    assert torch.allclose(checkpoint, backprop, rtol=1e-12, atol=1e-14)
    assert gs.backward.n_accepted == 20 and gs.backward.nfe == 2 * 20  # every step replayed


def test_the_plugins_adjoint_retraces_its_forward_grid_through_step_grid() -> None:
    """Output at 0.35 off the grid of 10 steps: the retrace walks the forward grid points in
    each interval (4 + 7 steps); without ``step_grid`` each interval gets its share of uniform
    steps instead (round(3.5) + round(6.5) = 4 + 6)."""
    backprop, _ = _grads(Midpoint(), GradMode.BACKPROP, n_steps=10)
    retraced, gs = _grads(Midpoint(), GradMode.ADJOINT, n_steps=10)
    uniform, gs_bare = _grads(BareMidpoint(), GradMode.ADJOINT, n_steps=10)
    assert (gs.backward.n_solves, gs.backward.n_steps) == (2, 11)
    assert (gs_bare.backward.n_solves, gs_bare.backward.n_steps) == (2, 10)
    assert _rel(retraced, backprop) < 1e-2 and _rel(uniform, backprop) < 1e-2  # O(h^2) apart


def test_without_the_capabilities_checkpoint_is_refused_naming_what_is_missing() -> None:
    solver = BareMidpoint()
    with pytest.raises(ValueError) as info:
        check_mode(solver, GradMode.CHECKPOINT)
    msg = str(info.value)
    assert msg.startswith("solver 'bare-midpoint' does not support gradient mode 'checkpoint': "
                          "it lacks the capabilities record_steps, replay_step (")
    assert "`capabilities`" in msg  # and says how to offer them
    assert msg.endswith("supports: 'none', 'backprop', 'adjoint', 'adjoint-seminorm'")
    assert supported_modes(solver) == (GradMode.NONE, GradMode.BACKPROP, GradMode.ADJOINT,
                                       GradMode.ADJOINT_SEMINORM)
    f = Linear()
    with pytest.raises(ValueError, match="lacks the capabilities record_steps, replay_step"):
        odeint(solver, f, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               mode="checkpoint", n_steps=4)
    assert f.calls == 0  # refused before the run
    with pytest.raises(ValueError, match="does not take `record_steps`"):
        solver.solve(f, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                     n_steps=4, record_steps=True)


@pytest.mark.parametrize("mode", [GradMode.ADJOINT, GradMode.ADJOINT_SEMINORM])
def test_an_adaptive_plugin_with_norm_gets_the_adjoint_and_its_seminorm(mode) -> None:
    solver = HeunEuler()
    assert check_mode(solver, mode) == mode
    backprop, _ = _grads(HeunEuler(), GradMode.BACKPROP, rtol=1e-4, atol=1e-6)
    adjoint, gs = _grads(solver, mode, rtol=1e-4, atol=1e-6)
    assert _rel(adjoint, backprop) < 1e-4
    # the forward solve used the default norm; the 2 backward solves the adjoint's
    assert solver.norms == [RMSNorm, Seminorm, Seminorm] and gs.backward.n_solves == 2


@pytest.mark.parametrize("mode", [GradMode.ADJOINT, GradMode.ADJOINT_SEMINORM])
def test_an_adaptive_plugin_without_norm_is_refused_the_adjoint(mode) -> None:
    solver = HeunEulerWithoutNorm()
    assert check_mode(solver, GradMode.BACKPROP) == GradMode.BACKPROP
    with pytest.raises(ValueError, match=f"'{mode.value}': it lacks the capability norm \\("):
        check_mode(solver, mode)


def test_the_solvers_options_reach_the_forward_solve_and_the_controller_the_backward() -> None:
    solver = HeunEulerWithOptions()
    _grads(solver, GradMode.ADJOINT, rtol=1e-3, atol=1e-5, controller="mine", callback=object())
    assert solver.options == [["callback", "controller"], ["controller", "norm"],
                              ["controller", "norm"]]


def test_an_option_the_solver_does_not_take_is_refused() -> None:
    with pytest.raises(ValueError, match="does not take `controller`"):
        _grads(Midpoint(), GradMode.CHECKPOINT, n_steps=4, controller="pid")


class _Own(Midpoint):
    """A plugin with its own ``odeint_grad``: used only where it declares ``own_gradients``."""

    def __init__(self, declares: bool) -> None:
        self.capabilities = Midpoint.capabilities | (
            {Capability.OWN_GRADIENTS} if declares else set())
        self.asked: list[GradMode] = []

    def odeint_grad(self, f, y0, t, *, mode, params, backward, **kw):
        self.asked.append(mode)
        sol = self.solve(f, y0, t, **kw)
        backward.done = True
        return sol.ys, sol


@pytest.mark.parametrize("declares", [True, False])
def test_own_gradients_are_used_where_declared_not_where_a_method_exists(declares) -> None:
    solver = _Own(declares)
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    gs = odeint(solver, Linear(), y0, torch.tensor([0.0, 1.0], dtype=F64),
                mode=GradMode.CHECKPOINT, n_steps=8)
    torch.autograd.grad(gs.ys.sum(), y0)
    assert solver.asked == ([GradMode.CHECKPOINT] if declares else [])
