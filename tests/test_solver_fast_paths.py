"""The RK engine's fast paths give what the general paths give.

- A solve autograd does not record runs its stages in place in one buffer
  (``solvers.rk._BufferedStages``); one it records runs them out of place
  (``solvers.rk._GraphStages``). Both must take the same steps and return the same numbers.
- An adaptive solve of a small CPU float64 state that autograd does not record runs in Python
  floats (``solvers.rk_host``): the same steps and calls as the tensor loop, the same numbers
  to rounding (its sums are Hairer's left-to-right ones, not BLAS's).
- A small CPU float64 state takes the error norm in Python floats
  (``solvers.norms._error_norm_host``); it must agree with the tensor norm to rounding,
  NaN and inf included.
"""

from __future__ import annotations

import math

import pytest
import torch

from solvers import norms, rk
from solvers.base import Status
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5, HEUN, RK4


def lotka_volterra(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack((1.5 * x - x * v, -3.0 * v + x * v), dim=-1)


CASES = [
    pytest.param(RungeKutta(DOPRI5), {"rtol": 1e-6, "atol": 1e-8}, id="dopri5-continuous"),
    pytest.param(
        RungeKutta(DOPRI5, interpolation="hermite"),
        {"rtol": 1e-5, "atol": 1e-8},
        id="dopri5-hermite",
    ),
    pytest.param(RungeKutta(RK4), {"n_steps": 37}, id="rk4-hermite-pending"),
    pytest.param(RungeKutta(RK4, interpolation="linear"), {"n_steps": 20}, id="rk4-linear"),
]


def _solve_both(solver, y0, t, **kw):
    with torch.no_grad():
        fast = solver.solve(lotka_volterra, y0, t, **kw)
    y_rec = y0.clone().requires_grad_(True)
    slow = solver.solve(lotka_volterra, y_rec, t, **kw)
    assert slow.ys.requires_grad and not fast.ys.requires_grad
    return fast, slow


@pytest.fixture
def tensor_loop(monkeypatch):
    """Every solve takes the tensor loop (no Python-float loop)."""
    monkeypatch.setattr(rk, "HOST_MAX", 0)


@pytest.mark.parametrize("shape", [(2,), (5, 2)], ids=["single", "batch"])
@pytest.mark.parametrize("solver, kw", CASES)
def test_buffered_solve_matches_the_recorded_solve(solver, kw, shape, tensor_loop) -> None:
    y0 = (1.0 + 0.1 * torch.arange(math.prod(shape), dtype=torch.float64)).reshape(shape)
    t = torch.linspace(0.0, 5.0, 13, dtype=torch.float64)  # outputs inside steps
    fast, slow = _solve_both(solver, y0, t, **kw)
    assert (fast.n_accepted, fast.n_rejected, fast.nfe) == (
        slow.n_accepted,
        slow.n_rejected,
        slow.nfe,
    )
    torch.testing.assert_close(fast.ys, slow.ys.detach(), rtol=0, atol=0)


HOST_CASES = [
    pytest.param(RungeKutta(DOPRI5), {"rtol": 1e-6, "atol": 1e-8}, id="dopri5-continuous"),
    pytest.param(
        RungeKutta(DOPRI5, interpolation="hermite"), {"rtol": 1e-5, "atol": 1e-8},
        id="dopri5-hermite",
    ),
    pytest.param(RungeKutta(HEUN, adaptive=True), {"rtol": 1e-4, "atol": 1e-6},
                 id="heun-hermite-pending"),
]


@pytest.mark.parametrize("shape", [(), (2,), (2, 2)], ids=["0d", "single", "batch-of-2"])
@pytest.mark.parametrize("solver, kw", HOST_CASES)
def test_python_float_loop_matches_the_tensor_loop(solver, kw, shape, monkeypatch) -> None:
    n = math.prod(shape)
    y0 = (1.0 + 0.1 * torch.arange(n, dtype=torch.float64)).reshape(shape)
    t = torch.linspace(0.0, 5.0, 13, dtype=torch.float64)

    def f(tt, y):
        return lotka_volterra(tt, y) if shape else -0.5 * y * math.cos(tt)

    host = solver.solve(f, y0, t, **kw)
    assert host.backend == "host", "the Python-float backend was not taken"
    ref = solver.solve(f, y0, t, backend="tensor", **kw)
    assert ref.backend == "tensor"
    assert (host.status, host.n_accepted, host.n_rejected, host.nfe) == (
        ref.status, ref.n_accepted, ref.n_rejected, ref.nfe)
    torch.testing.assert_close(host.ys, ref.ys, rtol=1e-9, atol=1e-12)  # rounding, amplified


def test_python_float_loop_statuses() -> None:
    solver = RungeKutta(DOPRI5)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    y0 = torch.tensor([1.0], dtype=torch.float64)
    blowup = solver.solve(lambda tt, y: y * y, y0, t)  # y = 1/(1 - t): infinite at t = 1
    assert blowup.status == Status.STEP_TOO_SMALL and abs(blowup.t_reached - 1.0) < 1e-3
    nan = solver.solve(lambda tt, y: y * math.nan, y0, t)
    assert nan.status == Status.NONFINITE
    budget = solver.solve(lotka_volterra, torch.ones(2, dtype=torch.float64), t, max_steps=3)
    assert budget.status == Status.MAX_STEPS and budget.n_steps == 3
    assert torch.isnan(budget.ys[-1]).all()


def test_python_float_loop_is_not_taken_for_float32_or_a_recorded_solve() -> None:
    solver = RungeKutta(DOPRI5)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    runs = [
        solver.solve(lotka_volterra, torch.ones(2), t),
        solver.solve(lotka_volterra, torch.ones(2, dtype=torch.float64, requires_grad=True), t),
        solver.solve(lotka_volterra, torch.ones(rk.HOST_MAX // 2 + 1, 2, dtype=torch.float64), t),
        solver.solve(lotka_volterra, torch.ones(2, dtype=torch.float64), t, record_steps=True),
    ]
    assert [s.backend for s in runs] == ["tensor"] * 4


def test_a_backend_can_be_forced_and_the_solution_says_which_ran() -> None:
    solver = RungeKutta(DOPRI5)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    big = torch.ones(rk.HOST_MAX, 2, dtype=torch.float64)  # past the automatic size
    host = solver.solve(lotka_volterra, big, t, backend="host")
    tensor = solver.solve(lotka_volterra, big, t)
    assert (host.backend, tensor.backend) == ("host", "tensor")
    assert (host.n_accepted, host.n_rejected, host.nfe) == (
        tensor.n_accepted, tensor.n_rejected, tensor.nfe)
    torch.testing.assert_close(host.ys, tensor.ys, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="backend='host' needs a float64 CPU state"):
        solver.solve(lotka_volterra, torch.ones(2), t, backend="host")
    with pytest.raises(ValueError, match="unknown backend 'gpu'; choose one of 'auto'"):
        solver.solve(lotka_volterra, torch.ones(2), t, backend="gpu")


@pytest.mark.parametrize("solver, kw", CASES[:1] + CASES[2:3])
def test_buffered_solve_records_the_steps_the_recorded_solve_records(solver, kw) -> None:
    y0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    t = torch.tensor([0.0, 3.0], dtype=torch.float64)
    fast, slow = _solve_both(solver, y0, t, record_steps=True, **kw)
    assert len(fast.steps) == len(slow.steps)
    for a, b in zip(fast.steps, slow.steps, strict=True):
        assert (a.t, a.h, a.t1) == (b.t, b.h, b.t1)
        torch.testing.assert_close(a.y, b.y.detach(), rtol=0, atol=0)
        assert (a.k1 is None) == (b.k1 is None)
        if a.k1 is not None:  # a copy, not a view of the stage buffer
            torch.testing.assert_close(a.k1, b.k1.detach(), rtol=0, atol=0)


def test_buffered_solve_accepts_a_rhs_that_returns_another_shape_of_the_same_size() -> None:
    y0 = torch.ones(3, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    solver = RungeKutta(DOPRI5)
    ref = solver.solve(lotka_volterra, y0, t)
    flat = solver.solve(lambda tt, y: lotka_volterra(tt, y).reshape(-1), y0, t)
    assert flat.n_steps == ref.n_steps
    torch.testing.assert_close(flat.ys, ref.ys, rtol=0, atol=0)


def _tensor_norm(*args) -> float:
    old, norms.HOST_NORM_MAX = norms.HOST_NORM_MAX, -1
    try:
        with torch.no_grad():
            return norms.error_norm(*args)
    finally:
        norms.HOST_NORM_MAX = old


SPECIAL = [0.0, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("seed", range(40))
def test_error_norm_in_python_floats_matches_the_tensor_norm(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = [1, 2, 3, 4, 6, 8, 12, 16][seed % 8]
    dims = [k for k in (1, 2, n) if n % k == 0]  # trajectories of d elements
    d = dims[seed % len(dims)]

    def row(scale):
        x = torch.randn(1, n, dtype=torch.float64, generator=gen) * scale
        if seed % 5 == 0:
            x[0, seed % n] = SPECIAL[(seed // 5) % 4]
        return x

    err, y_old, y_new = row(1e-6), row(1.0), row(1.0)
    if seed % 7 == 0:
        y_old.zero_(), y_new.zero_()
    atol = 0.0 if seed % 3 == 0 else 1e-9
    args = (err, 0.37, y_old, y_new, 1e-6, atol, d)
    fast, ref = norms.error_norm(*args), _tensor_norm(*args)
    if math.isnan(ref):
        assert math.isnan(fast)
    else:
        assert fast == pytest.approx(ref, rel=1e-14, abs=0)


def test_python_float_loop_takes_a_tableau_with_an_all_zero_row(monkeypatch) -> None:
    """A stage whose row of A is all zeros gets y itself as its input (c = (0, 0, 1))."""
    from fractions import Fraction as Fr

    from solvers.tableaux import ButcherTableau

    tab = ButcherTableau(
        name="heun-repeated-stage", c=(0, 0, 1), a=((), (0,), (1, 0)),
        b=(Fr(1, 2), 0, Fr(1, 2)), order=2, b_err=(Fr(-1, 2), 0, Fr(1, 2)), error_order=1,
    )
    solver = RungeKutta(tab, adaptive=True)
    y0, t = torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    host = solver.solve(lambda tt, y: -y, y0, t)
    monkeypatch.setattr(rk, "HOST_MAX", 0)
    ref = solver.solve(lambda tt, y: -y, y0, t)
    assert host.status == ref.status == Status.OK and host.n_steps == ref.n_steps
    torch.testing.assert_close(host.ys, ref.ys, rtol=1e-12, atol=0)


def test_overlapping_channels_are_each_measured_in_full() -> None:
    """Three one-row segments that overlap: each is its own RMS, the worst decides (1.0 here:
    the first segment holds both ones)."""
    err = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.zeros(1, 5, dtype=torch.float64)
    channels = [(0, 2, 2), (1, 3, 2), (2, 4, 2)]
    assert norms.error_norm(err, 1.0, y, y, 1e-3, 1.0, None, channels) == pytest.approx(1.0)
    apart = [(0, 2, 2), (2, 4, 2), (4, 5, 1)]  # no overlap: measured together, same norm
    assert norms.error_norm(err, 1.0, y, y, 1e-3, 1.0, None, apart) == pytest.approx(1.0)
