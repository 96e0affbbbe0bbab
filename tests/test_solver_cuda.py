"""The torch solvers on a CUDA device (skipped where there is none)."""

from __future__ import annotations

import pytest
import torch

from solvers.base import Status
from solvers.builtin import dopri5, rk4
from solvers.resnet import EulerResNetSolver

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def lotka_volterra(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack((1.5 * x - x * v, -3.0 * v + x * v), dim=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("make", [dopri5, rk4, EulerResNetSolver], ids=["dopri5", "rk4", "euler"])
def test_cuda_solve_matches_cpu_and_stays_on_the_device(make, dtype) -> None:
    y0 = torch.rand(64, 2, dtype=dtype, generator=torch.Generator().manual_seed(0)) + 0.5
    t = torch.linspace(0, 5, 11, dtype=dtype)
    kw = {"rtol": 1e-5, "atol": 1e-5, "n_steps": 200}
    cpu = make().solve(lotka_volterra, y0, t, **kw)
    gpu = make().solve(lotka_volterra, y0.cuda(), t.cuda(), **kw)
    assert gpu.status == Status.OK and gpu.ys.device.type == "cuda" and gpu.ys.dtype == dtype
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    assert torch.allclose(gpu.ys.cpu(), cpu.ys, rtol=tol, atol=tol)


def test_cuda_dopri5_gradient_flows() -> None:
    y0 = torch.tensor([1.0, 1.0], device="cuda", dtype=torch.float64, requires_grad=True)
    sol = dopri5().solve(
        lotka_volterra, y0, torch.tensor([0.0, 2.0], device="cuda", dtype=torch.float64)
    )
    (g,) = torch.autograd.grad(sol.ys[-1].sum(), y0)
    assert torch.isfinite(g).all()
