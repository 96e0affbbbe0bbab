"""Checkpointing gives backprop's gradient (float64, to round-off) for euler, rk4 and dopri5,
with outputs on and off the step grid, w.r.t. y0, the parameters and the times."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn

from solvers.gradients import odeint
from solvers.resnet import EulerResNetSolver
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5, RK4, ButcherTableau


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Field(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3)).double()

    def forward(self, t, y):
        return self.net(y) - 0.1 * y


# a plugin-style adaptive method without FSAL: Hermite output needs the next step's first stage
HEUN_EULER = ButcherTableau(
    name="heun-euler",
    c=(0, 1),
    a=((), (1,)),
    b=(Fraction(1, 2), Fraction(1, 2)),
    order=2,
    b_err=(Fraction(-1, 2), Fraction(1, 2)),
    error_order=1,
)

CASES = {
    "euler": (EulerResNetSolver(), {"n_steps": 30}),
    "rk4": (RungeKutta(RK4, name="rk4", adaptive=False), {"n_steps": 30}),
    "dopri5": (RungeKutta(DOPRI5, name="dopri5", adaptive=True), {"rtol": 1e-7, "atol": 1e-9}),
    "dopri5-hermite": (
        RungeKutta(DOPRI5, name="dopri5h", adaptive=True, interpolation="hermite"),
        {"rtol": 1e-5, "atol": 1e-7},
    ),
    "heun-euler": (RungeKutta(HEUN_EULER, adaptive=True), {"rtol": 1e-4, "atol": 1e-6}),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("grid", ["on-grid", "off-grid"])
def test_checkpoint_gradient_equals_backprop_gradient(name, grid) -> None:
    solver, kw = CASES[name]
    f = Field()
    y0 = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    times = [0.0, 0.5, 1.0, 1.5] if grid == "on-grid" else [0.0, 0.37, 0.91, 1.5]
    t = torch.tensor(times, dtype=torch.float64)
    weights = torch.randn(len(times), 5, 3, dtype=torch.float64)
    out = {}
    for mode in ("backprop", "checkpoint"):
        y = y0.clone().requires_grad_(True)
        tt = t.clone().requires_grad_(True)
        gs = odeint(solver, f, y, tt, mode=mode, **kw)
        loss = (weights * gs.ys).sum() + (gs.ys**2).sum()
        out[mode] = (gs, torch.autograd.grad(loss, (y, tt, *f.parameters())))
    (gb, grads_b), (gc, grads_c) = out["backprop"], out["checkpoint"]
    assert torch.equal(gb.ys, gc.ys)
    assert gc.backward.n_accepted == gc.solution.n_accepted
    for a, b in zip(grads_c, grads_b, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_checkpoint_replays_dopri5_without_extra_calls() -> None:
    """FSAL: the carried first stage is stored, so the backward calls f once per stage."""
    solver, kw = CASES["dopri5"]
    y = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    gs = odeint(
        solver, Field(), y, torch.tensor([0.0, 1.5], dtype=torch.float64), mode="checkpoint", **kw
    )
    torch.autograd.grad(gs.ys.sum(), y)
    assert gs.backward.nfe == 6 * gs.solution.n_accepted + 1
