"""The adjoint's backward pass: ours against torchdiffeq's ``odeint_adjoint``, per backward NFE.

Setting: the built-in learned problem ``mlp`` (a 3-32-32-2 tanh MLP field with shipped weights),
a batch of 64 starts around its ``y0``, float64, output at its 11 times over [0, 5],
rtol = atol = 1e-6, loss ``sum(ys^2)``, gradient with respect to ``y0`` and the field's
parameters. ``dopri5`` (ours, ``solvers.gradients.adjoint``) and ``tde-dopri5`` (torchdiffeq
0.2.5's ``odeint_adjoint``), each in ``adjoint`` and ``adjoint-seminorm`` mode.

The timed part is the backward pass alone: every round runs a fresh forward solve in
``setup`` (untimed), then ``torch.autograd.grad``. The two libraries choose different backward
steps (different norms on the augmented state), so the figure compared is the backward time
divided by the backward NFE (``extra_info``; the table after the run prints it).

Equal gradients: ``extra_info["grad_rel_diff"]`` is each gradient's relative difference from
a tight backprop gradient (ours, rtol = atol = 1e-11), and the test asserts it stays at the
tolerance's level, so a faster backward pass cannot come from a worse gradient.

``python -m pytest tests/bench --benchmark-enable -k adjoint``
"""

from __future__ import annotations

import pytest
import torch

from harness.measure.nfe import CountingRHS
from harness.registry import build_problem, discover, make_solver
from solvers.gradients import grad_rel_err, odeint

F64 = torch.float64
TOL = 1e-6
BATCH = 64
_reference: dict[str, tuple] = {}


def _setting():
    discover()
    problem = build_problem("mlp", F64, "cpu")
    gen = torch.Generator().manual_seed(3)
    y0 = problem.y0 + 0.1 * torch.randn(BATCH, problem.y0.shape[-1], dtype=F64, generator=gen)
    return problem, y0


def _grads(solver, f, y0, t, mode, rtol, atol):
    y = y0.clone().requires_grad_(True)
    params = tuple(f.parameters())
    gs = odeint(solver, f, y, t, mode=mode, params=params, rtol=rtol, atol=atol)
    return torch.autograd.grad((gs.ys**2).sum(), (y, *params))


def _reference_grads(problem, y0):
    if "ref" not in _reference:
        f = problem.f
        _reference["ref"] = _grads(
            make_solver("dopri5"), f, y0, problem.t, "backprop", 1e-11, 1e-11
        )
    return _reference["ref"]


@pytest.mark.parametrize("mode", ["adjoint", "adjoint-seminorm"])
@pytest.mark.parametrize("name", ["dopri5", "tde-dopri5"])
def test_bench_adjoint_backward(benchmark, name: str, mode: str) -> None:
    if name.startswith("tde-"):
        pytest.importorskip("torchdiffeq")
    problem, y0 = _setting()
    solver = make_solver(name)
    f = CountingRHS(problem.f)
    params = tuple(problem.f.parameters())
    t = problem.t

    def forward():
        f.reset()
        y = y0.clone().requires_grad_(True)
        gs = odeint(solver, f, y, t, mode=mode, params=params, rtol=TOL, atol=TOL)
        loss = (gs.ys**2).sum()
        forward.nfe = f.calls
        f.reset()
        return (loss, y), {}

    def backward(loss, y):
        return torch.autograd.grad(loss, (y, *params))

    grads = backward(*forward()[0])
    nfe_forward, nfe_backward = forward.nfe, f.calls
    diff = grad_rel_err(grads, _reference_grads(problem, y0))
    assert diff < 1e-4, f"{name} {mode}: gradient off by {diff:.2e} (relative) at rtol {TOL}"
    benchmark.extra_info.update(
        nfe=nfe_forward, nfe_backward=nfe_backward, grad_rel_diff=diff, batch=BATCH, mode=mode
    )
    benchmark.pedantic(backward, setup=forward, rounds=7, warmup_rounds=1)
