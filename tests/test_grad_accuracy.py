"""Adjoint and backprop gradients against the exact gradient of y' = A y and against finite
differences on a small time-dependent MLP field, w.r.t. y0, the parameters and the times."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from solvers.gradients import odeint
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5, RK4

D64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Linear(nn.Module):
    """``y' = A y`` on rows: ``f(t, y) = y A^T``."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(a.clone())

    def forward(self, t, y):
        return y @ self.A.T


def _linear_case():
    gen = torch.Generator().manual_seed(1)
    a = 0.5 * torch.randn(3, 3, generator=gen, dtype=D64) - 0.3 * torch.eye(3, dtype=D64)
    y0 = torch.randn(4, 3, generator=gen, dtype=D64)
    t = torch.tensor([0.0, 0.4, 1.1, 1.5], dtype=D64)
    w = torch.randn(len(t), 4, 3, generator=gen, dtype=D64)  # L = sum_i <W_i, y(t_i)>
    return a, y0, t, w


def _exact_gradients(a, y0, t, w):
    """dL/dy0, dL/dA (Frechet derivative of expm by the block-matrix identity), dL/dt."""
    n = a.shape[0]
    g_y0 = torch.zeros_like(y0)
    g_a = torch.zeros_like(a)
    g_t = torch.zeros_like(t)
    for i in range(len(t)):
        s = float(t[i] - t[0])
        e = torch.linalg.matrix_exp(a * s)
        g_y0 += w[i] @ e
        yi = y0 @ e.T
        if i > 0:
            g_t[i] = (w[i] * (yi @ a.T)).sum()
            g_t[0] -= (w[i] @ e * (y0 @ a.T)).sum()
        for k in range(n):
            for m in range(n):
                direction = torch.zeros_like(a)
                direction[k, m] = s
                block = torch.zeros(2 * n, 2 * n, dtype=D64)
                block[:n, :n] = a * s
                block[n:, n:] = a * s
                block[:n, n:] = direction
                de = torch.linalg.matrix_exp(block)[:n, n:]
                g_a[k, m] += (w[i] * (y0 @ de.T)).sum()
    return g_y0, g_a, g_t


def _grads(mode, solver, f, y0, t, w, **kw):
    y = y0.clone().requires_grad_(True)
    tt = t.clone().requires_grad_(True)
    gs = odeint(solver, f, y, tt, mode=mode, **kw)
    loss = (w * gs.ys).sum()
    return torch.autograd.grad(loss, (y, *f.parameters(), tt))


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("mode", ["adjoint", "adjoint-seminorm", "backprop", "checkpoint"])
@pytest.mark.parametrize("tol", [1e-6, 1e-9])
def test_dopri5_gradients_of_linear_ode_match_the_exact_ones_to_the_tolerance(mode, tol) -> None:
    a, y0, t, w = _linear_case()
    exact = _exact_gradients(a, y0, t, w)
    solver = RungeKutta(DOPRI5, name="dopri5", adaptive=True)
    got = _grads(mode, solver, Linear(a), y0, t, w, rtol=tol, atol=tol)
    for g, e in zip(got, exact, strict=True):
        assert _rel(g, e) < 100 * tol


def test_rk4_adjoint_and_backprop_converge_together_to_the_exact_gradient() -> None:
    a, y0, t, w = _linear_case()
    exact = _exact_gradients(a, y0, t, w)
    solver = RungeKutta(RK4, name="rk4", adaptive=False)
    errs = {}
    for mode in ("adjoint", "backprop"):
        for n in (15, 30):
            got = _grads(mode, solver, Linear(a), y0, t, w, n_steps=n)
            errs[mode, n] = max(_rel(g, e) for g, e in zip(got, exact, strict=True))
    for mode in ("adjoint", "backprop"):
        assert errs[mode, 30] < 1e-5
        assert errs[mode, 15] / errs[mode, 30] > 8  # 4th order in h (about 16)


class TimeMLP(nn.Module):
    """A small non-autonomous field: ``net(y) * (1 + 0.5 sin t)``; accepts a tensor ``t``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(2, 12), nn.Tanh(), nn.Linear(12, 2)).double()

    def forward(self, t, y):
        return self.net(y) * (1.0 + 0.5 * torch.sin(torch.as_tensor(t, dtype=y.dtype)))


def _loss(ys):
    return (ys**2).sum() + ys[..., 0].sum()


@pytest.mark.parametrize("mode", ["adjoint", "backprop"])
def test_mlp_gradients_wrt_y0_params_and_times_match_central_differences(mode) -> None:
    f = TimeMLP()
    solver = RungeKutta(DOPRI5, name="dopri5", adaptive=True)
    kw = {"rtol": 1e-10, "atol": 1e-10}
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.8]], dtype=D64)
    t = torch.tensor([0.2, 0.7, 1.3], dtype=D64)
    y = y0.clone().requires_grad_(True)
    tt = t.clone().requires_grad_(True)
    gs = odeint(solver, f, y, tt, mode=mode, **kw)
    g_y0, g_w, g_t = torch.autograd.grad(_loss(gs.ys), (y, f.net[0].weight, tt))

    def loss_at(y0_, t_):
        with torch.no_grad():
            return float(_loss(solver.solve(f, y0_, t_, **kw).ys))

    eps = 1e-5

    def central(bump):
        return (bump(eps) - bump(-eps)) / (2 * eps)

    for idx in [(0, 0), (1, 1)]:
        e = torch.zeros_like(y0)
        e[idx] = 1.0
        assert abs(central(lambda s, e=e: loss_at(y0 + s * e, t)) - float(g_y0[idx])) < 1e-6
    for i in range(len(t)):
        e = torch.zeros_like(t)
        e[i] = 1.0
        assert abs(central(lambda s, e=e: loss_at(y0, t + s * e)) - float(g_t[i])) < 1e-6
    w = f.net[0].weight
    for idx in [(0, 0), (5, 1)]:

        def bump(s, idx=idx):
            with torch.no_grad():
                w[idx] += s
            val = loss_at(y0, t)
            with torch.no_grad():
                w[idx] -= s
            return val

        assert abs(central(bump) - float(g_w[idx])) < 1e-6


def test_rk4_adjoint_agrees_with_backprop_on_an_mlp() -> None:
    f = TimeMLP()
    solver = RungeKutta(RK4, name="rk4", adaptive=False)
    y0 = torch.randn(8, 2, dtype=D64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 0.5, 1.0], dtype=D64)
    out = {}
    for mode in ("adjoint", "backprop"):
        y = y0.clone().requires_grad_(True)
        gs = odeint(solver, f, y, t, mode=mode, n_steps=40)
        out[mode] = torch.autograd.grad(_loss(gs.ys), (y, *f.parameters()))
    for a, b in zip(out["adjoint"], out["backprop"], strict=True):
        assert _rel(a, b) < 1e-6
