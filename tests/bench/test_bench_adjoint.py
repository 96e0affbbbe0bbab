"""The adjoint's backward pass: ours against torchdiffeq's ``odeint_adjoint``, per backward NFE.

Setting: the built-in learned problem ``mlp`` (a 3-32-32-2 tanh MLP field with shipped weights),
a batch of 64 starts around its ``y0``, float64, output at its 11 times over [0, 5],
rtol = atol = 1e-6, loss ``sum(ys^2)``, gradient with respect to ``y0`` and the field's
parameters. ``dopri5`` (ours, ``solvers.gradients.adjoint``) and ``tde-dopri5`` (torchdiffeq
0.2.5's ``odeint_adjoint``), each in ``adjoint`` and ``adjoint-seminorm`` mode.

The timed part is the backward pass alone: each round runs, for ours and for torchdiffeq in
alternating order, a fresh forward solve (untimed) and then ``torch.autograd.grad`` (timed), so
a load spike on a shared machine hits both alike. The two libraries choose different backward
steps (different norms on the augmented state), so the figure compared is the median backward
time divided by the backward NFE (``extra_info``; the table after the run prints it).

Equal gradients: ``extra_info["grad_rel_diff"]`` is each gradient's relative difference from
a tight backprop gradient (ours, rtol = atol = 1e-11), and the test asserts it stays at the
tolerance's level, so a faster backward pass cannot come from a worse gradient.

``python -m pytest tests/bench --benchmark-enable -k adjoint``
"""

from __future__ import annotations

import pytest
import torch

from harness.measure.nfe import CountingRHS
from harness.measure.timing import Interleaved
from harness.plugins import discover
from harness.registry import build_problem, make_solver
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
def test_bench_adjoint_backward(benchmark, mode: str) -> None:
    pytest.importorskip("torchdiffeq")
    problem, y0 = _setting()
    params = tuple(problem.f.parameters())
    reference = _reference_grads(problem, y0)
    runs = {}
    for name in ("dopri5", "tde-dopri5"):
        solver, f = make_solver(name), CountingRHS(problem.f)

        def forward(solver=solver, f=f):
            y = y0.clone().requires_grad_(True)
            gs = odeint(solver, f, y, problem.t, mode=mode, params=params, rtol=TOL, atol=TOL)
            f.reset()
            return (gs.ys**2).sum(), y

        loss, y = forward()
        grads = torch.autograd.grad(loss, (y, *params))
        diff = grad_rel_err(grads, reference)
        assert diff < 1e-4, f"{name} {mode}: gradient off by {diff:.2e} (relative) at rtol {TOL}"
        runs[name] = dict(forward=forward, nfe_backward=f.calls, grad_rel_diff=diff)

    def backward(loss, y):
        torch.autograd.grad(loss, (y, *params))

    # both backward passes, in alternating order; each forward solve runs outside the timer
    timer = Interleaved(
        {name: backward for name in runs},
        setups={name: r["forward"] for name, r in runs.items()},
        warmup=1,
    )
    benchmark.pedantic(timer.round, rounds=15 + timer.warmup)
    per = {name: v / runs[name]["nfe_backward"] for name, v in timer.medians().items()}
    benchmark.extra_info.update(
        mode=mode,
        batch=BATCH,
        per_nfe_us={k: round(v * 1e6, 1) for k, v in per.items()},
        nfe_backward={k: r["nfe_backward"] for k, r in runs.items()},
        grad_rel_diff={k: r["grad_rel_diff"] for k, r in runs.items()},
        ratio=round(per["dopri5"] / per["tde-dopri5"], 3),
    )
