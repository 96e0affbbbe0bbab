"""Euler as a residual network is the fixed-step Euler loop, bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from solvers.base import Status
from solvers.resnet import EulerResNet, EulerResNetSolver, ResidualBlock
from solvers.rk import RungeKutta
from solvers.tableaux import EULER


class Field(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, t, y):
        return self.net(y) * (1.0 + 0.1 * t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "times", [[0.0, 1.0], [0.0, 0.13, 0.5, 0.77, 1.0]], ids=["ends", "interior"]
)
def test_resnet_output_is_bitwise_identical_to_the_rk_euler_loop(dtype, times) -> None:
    f = Field().to(dtype)
    y0 = torch.randn(5, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    t = torch.tensor(times, dtype=dtype)
    a = EulerResNetSolver().solve(f, y0, t, n_steps=17)
    b = RungeKutta(EULER, adaptive=False).solve(f, y0, t, n_steps=17)
    assert a.status == b.status == Status.OK
    assert torch.equal(a.ys, b.ys)
    assert (a.nfe, a.n_accepted) == (b.nfe, b.n_accepted) == (17, 17)


def test_resnet_is_a_stack_of_residual_blocks_one_per_step() -> None:
    net = EulerResNet(lambda t, y: -y, 0.0, 1.0, 4)
    assert len(net.blocks) == 4 and all(isinstance(b, ResidualBlock) for b in net.blocks)
    hs = net(torch.ones(2))
    assert len(hs) == 5 and torch.allclose(hs[-1], torch.full((2,), 0.75**4))


def test_resnet_gradients_reach_the_field_parameters() -> None:
    f = Field().double()
    sol = EulerResNetSolver().solve(
        f,
        torch.ones(2, 3, dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        n_steps=8,
    )
    grads = torch.autograd.grad(sol.ys[-1].sum(), list(f.parameters()))
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_resnet_needs_n_steps() -> None:
    with pytest.raises(ValueError, match="n_steps"):
        EulerResNetSolver().solve(lambda t, y: y, torch.ones(1), torch.tensor([0.0, 1.0]))
