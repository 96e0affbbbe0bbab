"""Gradient modes side by side: saved memory and time of forward + backward (issue 4's setting).

MLP 2-64-64-2 (tanh) vector field, batch 256, float64, ``rk4`` over [0, 1] with 10, 100 and
1000 steps, loss ``sum(y(1)^2)``. ``extra_info`` holds the bytes autograd saves (peak, each
storage once; ``harness.measure.saved``), forward and backward NFE and the gradient's relative
difference from backprop's. Heavy (backprop at 1000 steps saves about 1 GiB), so it runs only
with ``--benchmark-enable``: ``python -m pytest tests/bench --benchmark-enable -k gradients``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.measure.nfe import CountingRHS
from harness.measure.saved import SavedBytes
from solvers.gradients import grad_rel_err, odeint
from solvers.rk import RungeKutta
from solvers.tableaux import RK4

F64 = torch.float64
MODES = ("backprop", "adjoint", "checkpoint")
_backprop_grads: dict[int, tuple] = {}


class MLP(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        sizes = [(2, width), (width, width), (width, 2)]
        self.layers = nn.ModuleList(nn.Linear(a, b).to(F64) for a, b in sizes)
        with torch.no_grad():
            for layer in self.layers:
                bound = layer.in_features**-0.5
                layer.weight.uniform_(-bound, bound, generator=gen)
                layer.bias.uniform_(-bound, bound, generator=gen)

    def forward(self, t, y):
        for layer in self.layers[:-1]:
            y = torch.tanh(layer(y))
        return self.layers[-1](y)


@pytest.fixture(autouse=True)
def _heavy_only_when_benchmarking(request):
    if not request.config.getoption("benchmark_enable"):
        pytest.skip("heavy gradient benchmark: run with --benchmark-enable")


@pytest.mark.parametrize("n_steps", [10, 100, 1000])
@pytest.mark.parametrize("mode", MODES)
def test_bench_gradients(benchmark, mode: str, n_steps: int) -> None:
    f = CountingRHS(MLP())
    y0 = torch.randn(256, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    solver = RungeKutta(RK4, name="rk4", adaptive=False)
    params = tuple(f.parameters())

    def run():
        y = y0.clone().requires_grad_(True)
        gs = odeint(solver, f, y, t, mode=mode, n_steps=n_steps)
        return torch.autograd.grad((gs.ys[-1] ** 2).sum(), (y, *params))

    f.reset()
    with SavedBytes() as probe:
        y = y0.clone().requires_grad_(True)
        gs = odeint(solver, f, y, t, mode=mode, n_steps=n_steps)
        nfe = f.calls
        f.reset()
        grads = torch.autograd.grad((gs.ys[-1] ** 2).sum(), (y, *params))
        nfe_backward = f.calls
    if mode == "backprop":
        _backprop_grads[n_steps] = grads
    reference = _backprop_grads.get(n_steps)
    benchmark.extra_info.update(
        saved_mib=probe.peak_bytes / 2**20,
        nfe=nfe,
        nfe_backward=nfe_backward,
        grad_rel_diff_backprop=grad_rel_err(grads, reference) if reference else None,
    )
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
