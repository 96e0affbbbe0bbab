"""Gradient modes: declared per solver, refused up front, every torch solver in every mode;
the engine hooks the modes need (error channels, recorded steps, explicit step grid)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from solvers import rk
from solvers.base import GradMode, Status
from solvers.gradients import check_mode, odeint
from solvers.norms import Seminorm
from solvers.resnet import EulerResNetSolver
from solvers.rk import RungeKutta
from solvers.scipy_ref import ScipyReference
from solvers.tableaux import DOPRI5, RK4

TORCH_MODES = [m for m in GradMode if m != GradMode.NONE]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _solvers():
    return {
        "euler": (EulerResNetSolver(), {"n_steps": 8}),
        "rk4": (RungeKutta(RK4, name="rk4", adaptive=False), {"n_steps": 8}),
        "dopri5": (RungeKutta(DOPRI5, name="dopri5", adaptive=True), {"rtol": 1e-6, "atol": 1e-8}),
    }


class Field(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()

    def forward(self, t, y):
        return self.net(y)


@pytest.mark.parametrize("method", ["RK45", "LSODA"])
@pytest.mark.parametrize("mode", TORCH_MODES)
def test_scipy_reference_refuses_gradient_modes_naming_solver_and_allowed_modes(
    method, mode
) -> None:
    solver = ScipyReference(method)
    with pytest.raises(ValueError) as info:
        check_mode(solver, mode)
    msg = str(info.value)
    assert solver.name in msg and f"'{mode.value}'" in msg
    assert "supports: 'none'" in msg and "not a torch solver" in msg
    with pytest.raises(ValueError, match="does not support"):
        odeint(
            solver,
            Field(),
            torch.zeros(1, 2, dtype=torch.float64),
            torch.tensor([0.0, 1.0]),
            mode=mode,
        )


def test_unknown_mode_lists_the_modes() -> None:
    with pytest.raises(ValueError, match="'adjoint-seminorm'"):
        check_mode(_solvers()["rk4"][0], "sensitivity")


@pytest.mark.parametrize("name", ["euler", "rk4", "dopri5"])
def test_every_torch_solver_declares_and_runs_every_mode(name) -> None:
    solver, kw = _solvers()[name]
    f = Field()
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64, requires_grad=True)
    for mode in GradMode:
        assert check_mode(solver, mode) == mode
        y0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
        gs = odeint(solver, f, y0, t, mode=mode, **kw)
        assert gs.solution.status == Status.OK and gs.ys.shape == (3, 3, 2)
        if mode == GradMode.NONE:
            assert not gs.ys.requires_grad
            continue
        grads = torch.autograd.grad(gs.ys.sum(), (y0, t, *f.parameters()))
        assert all(torch.isfinite(g).all() for g in grads)
        assert gs.backward.done


def test_one_channel_equal_to_the_whole_state_changes_nothing(monkeypatch) -> None:
    # a seminorm runs on the tensor loop: compare it with itself (a small float64 state
    # would otherwise take the Python-float loop, equal only to rounding)
    monkeypatch.setattr(rk, "HOST_MAX", 0)
    solver = RungeKutta(DOPRI5, name="dopri5", adaptive=True)
    f = Field()
    y0 = torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    with torch.no_grad():
        a = solver.solve(f, y0, t, rtol=1e-7, atol=1e-9)
        b = solver.solve(f, y0, t, rtol=1e-7, atol=1e-9, norm=Seminorm([(0, 8, 2)]))
    assert torch.equal(a.ys, b.ys) and a.n_steps == b.n_steps and a.nfe == b.nfe


def test_leaving_a_channel_out_of_the_norm_ignores_its_error() -> None:
    """A fast, stiff-ish component in an ignored channel no longer limits the steps."""
    solver = RungeKutta(DOPRI5, name="dopri5", adaptive=True)
    rates = torch.tensor([-1.0, -30.0], dtype=torch.float64)

    def f(t, y):
        return rates * y

    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    full = solver.solve(f, y0, t, rtol=1e-8, atol=1e-10)
    semi = solver.solve(f, y0, t, rtol=1e-8, atol=1e-10, norm=Seminorm([(0, 1, 1)]))
    assert semi.n_steps < full.n_steps
    with pytest.raises(ValueError, match="does not fit"):
        solver.solve(f, y0, t, norm=Seminorm([(0, 3, 1)]))


@pytest.mark.parametrize("name", ["euler", "rk4", "dopri5"])
def test_recorded_steps_chain_and_are_off_by_default(name, monkeypatch) -> None:
    monkeypatch.setattr(rk, "HOST_MAX", 0)  # record_steps runs on the tensor loop, as above
    solver, kw = _solvers()[name]
    f = Field()
    y0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    with torch.no_grad():
        plain = solver.solve(f, y0, t, **kw)
        rec = solver.solve(f, y0, t, record_steps=True, **kw)
    assert plain.steps is None and torch.equal(plain.ys, rec.ys)
    steps = rec.steps
    assert len(steps) == rec.n_accepted
    assert steps[0].t == 0.0 and steps[-1].t1 == 1.0
    assert all(a.t1 == b.t for a, b in zip(steps, steps[1:], strict=False))
    assert torch.equal(steps[0].y, y0.reshape(1, -1))


@pytest.mark.parametrize("name", ["euler", "rk4"])
def test_explicit_step_grid_equals_uniform_steps_and_is_validated(name) -> None:
    solver, _ = _solvers()[name]
    f = Field()
    y0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        a = solver.solve(f, y0, t, n_steps=4)
        b = solver.solve(f, y0, t, step_grid=[0.0, 0.25, 0.5, 0.75, 1.0])
        c = solver.solve(f, y0, t, step_grid=[0.0, 0.1, 1.0])
    assert torch.allclose(a.ys, b.ys, rtol=0, atol=1e-15) and c.n_steps == 2
    with pytest.raises(ValueError, match="step_grid"):
        solver.solve(f, y0, t, step_grid=[0.0, 0.6, 0.5, 1.0])
