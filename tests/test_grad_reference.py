"""The reference gradient against central finite differences, and the relative-error measure;
the seminorm adjoint against the plain adjoint (same gradient, no more backward evaluations)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.measure.nfe import CountingRHS
from solvers.gradients import grad_rel_err, odeint, reference_gradient
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5

D64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class MLP(nn.Module):
    def __init__(self, width: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Linear(2, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 2)
        ).double()

    def forward(self, t, y):
        return self.net(y)


def _loss(ys):
    return (ys[1:] ** 2).sum() + ys[-1, :, 1].sum()


def test_reference_gradient_matches_central_differences_on_a_small_mlp() -> None:
    f = MLP(8)
    y0 = torch.tensor([[0.3, -0.7], [1.0, 0.2]], dtype=D64)
    t = torch.tensor([0.0, 0.6, 1.2], dtype=D64)
    ref = reference_gradient(f, y0, t, _loss)
    assert ref.provenance.startswith("computed: dopri5") and len(ref.params) == 6
    solver = RungeKutta(DOPRI5, name="dopri5", adaptive=True)

    def loss_at(y):
        with torch.no_grad():
            return float(_loss(solver.solve(f, y, t, rtol=1e-12, atol=1e-12).ys))

    eps = 1e-6
    fd = torch.zeros_like(y0)
    for idx in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        e = torch.zeros_like(y0)
        e[idx] = eps
        fd[idx] = (loss_at(y0 + e) - loss_at(y0 - e)) / (2 * eps)
    assert torch.allclose(ref.y0, fd, rtol=1e-7, atol=1e-8)
    bias = f.net[4].bias
    fd_b = torch.zeros_like(bias)
    for i in range(2):
        with torch.no_grad():
            bias[i] += eps
        up = loss_at(y0)
        with torch.no_grad():
            bias[i] -= 2 * eps
        down = loss_at(y0)
        with torch.no_grad():
            bias[i] += eps
        fd_b[i] = (up - down) / (2 * eps)
    assert torch.allclose(ref.params[5], fd_b, rtol=1e-7, atol=1e-8)


def test_grad_rel_err_is_relative_and_treats_missing_as_zero() -> None:
    ref = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]
    assert grad_rel_err([torch.tensor([3.0, 0.0]), torch.tensor([4.0])], ref) == 0.0
    assert grad_rel_err([torch.tensor([3.0, 0.0]), None], ref) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        grad_rel_err([None], ref)


def test_reference_gradient_refuses_float32_parameters() -> None:
    f = MLP(4).float()
    with pytest.raises(ValueError, match="float64"):
        reference_gradient(f, torch.zeros(1, 2), torch.tensor([0.0, 1.0]), _loss)


def test_seminorm_adjoint_needs_no_more_backward_calls_for_the_same_gradient() -> None:
    """2-64-64-2 tanh MLP (4482 parameters), batch 16, dopri5 at 1e-5 on [0, 1]."""
    solver = RungeKutta(DOPRI5, name="dopri5", adaptive=True)
    y0 = torch.randn(16, 2, dtype=D64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 1.0], dtype=D64)
    f = CountingRHS(MLP(64))
    out = {}
    for mode in ("adjoint", "adjoint-seminorm"):
        y = y0.clone().requires_grad_(True)
        gs = odeint(solver, f, y, t, mode=mode, rtol=1e-5, atol=1e-5)
        f.reset()
        grads = torch.autograd.grad((gs.ys[-1] ** 2).sum(), (y, *f.parameters()))
        out[mode] = (f.calls, grads, gs.backward)
    (n_plain, g_plain, b_plain), (n_semi, g_semi, b_semi) = out["adjoint"], out["adjoint-seminorm"]
    assert n_semi <= n_plain
    assert n_plain == b_plain.nfe and n_semi == b_semi.nfe  # every call goes through f
    assert grad_rel_err(g_semi, g_plain) < 1e-6
