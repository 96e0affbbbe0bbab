"""The scipy reference solvers: success, exact counts, and failures mapped to a status."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from harness.registry import SOLVERS
from solvers import builtin  # noqa: F401  (registers the built-ins)
from solvers.base import GradMode, Status
from solvers.scipy_ref import ScipyReference, status_of

F64 = torch.float64
METHODS = ["RK45", "DOP853", "Radau", "BDF", "LSODA"]


def lotka_volterra(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack((1.5 * x - x * v, -3.0 * v + x * v), dim=-1)


def np_lv(t, y):
    return lotka_volterra(t, torch.from_numpy(y)).numpy()


@pytest.mark.parametrize("method", METHODS)
def test_scipy_reference_matches_solve_ivp_at_the_requested_times(method) -> None:
    calls = []

    def counted(t, y):
        calls.append(t)
        return lotka_volterra(t, y)

    t = torch.linspace(0, 10, 11, dtype=F64)
    sol = ScipyReference(method).solve(
        counted, torch.tensor([1.0, 1.0], dtype=F64), t, rtol=1e-6, atol=1e-6
    )
    ref = solve_ivp(
        np_lv, (0, 10), [1.0, 1.0], method=method, rtol=1e-6, atol=1e-6, t_eval=t.numpy()
    )
    assert sol.status == Status.OK and sol.message == ""
    assert np.allclose(sol.ys.numpy(), ref.y.T, rtol=1e-9, atol=1e-9)
    assert sol.nfe == len(calls)
    every_step = solve_ivp(np_lv, (0, 10), [1.0, 1.0], method=method, rtol=1e-6, atol=1e-6)
    assert sol.n_accepted == len(every_step.t) - 1
    assert sol.t_reached == 10.0


def test_registered_scipy_solvers_are_not_differentiable() -> None:
    for name in ["scipy-rk45", "scipy-dop853", "scipy-radau", "scipy-bdf", "scipy-lsoda"]:
        s = SOLVERS.get(name).factory()
        assert s.name == name and s.adaptive and not s.differentiable
        assert s.grad_modes == (GradMode.NONE,)


@pytest.mark.parametrize(("method", "per_step"), [("RK45", 6), ("DOP853", 12)])
def test_explicit_pairs_derive_exact_rejections_from_nfev(method, per_step) -> None:
    sol = ScipyReference(method).solve(
        lotka_volterra,
        torch.tensor([1.0, 1.0], dtype=F64),
        torch.tensor([0.0, 10.0], dtype=F64),
        rtol=1e-6,
        atol=1e-6,
    )
    assert sol.n_rejected >= 0
    assert sol.nfe == 2 + per_step * (sol.n_accepted + sol.n_rejected)


@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA"])
def test_implicit_methods_report_rejections_as_unknown(method) -> None:
    sol = ScipyReference(method).solve(
        lotka_volterra, torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    )
    assert sol.n_rejected == -1 and sol.n_steps == sol.n_accepted


def test_step_too_small_failure_becomes_a_status_with_scipy_message() -> None:
    sol = ScipyReference("RK45").solve(
        lambda t, y: y * y, torch.ones(1, dtype=F64), torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    )
    assert sol.status == Status.STEP_TOO_SMALL
    assert "spacing" in sol.message and "RK45" in sol.message
    assert torch.isfinite(sol.ys[1]).all() and torch.isnan(sol.ys[2]).all()
    assert sol.t_reached is not None and 0.5 < sol.t_reached < 1.01


def test_max_steps_stops_the_scipy_reference() -> None:
    sol = ScipyReference("RK45").solve(
        lotka_volterra,
        torch.tensor([1.0, 1.0], dtype=F64),
        torch.tensor([0.0, 10.0], dtype=F64),
        max_steps=5,
    )
    assert sol.status == Status.MAX_STEPS and sol.n_accepted == 5


def test_exception_in_the_right_hand_side_is_an_error_status() -> None:
    def broken(t, y):
        raise RuntimeError("boom")

    sol = ScipyReference("BDF").solve(
        broken, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    )
    assert sol.status == Status.ERROR and "boom" in sol.message


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("Required step size is less than spacing between numbers.", Status.STEP_TOO_SMALL),
        ("Excess work done on this call.", Status.MAX_STEPS),
        ("Repeated convergence failures.", Status.ERROR),
    ],
)
def test_scipy_messages_map_to_statuses(message, status) -> None:
    assert status_of(message) == status


def test_float32_state_is_returned_as_float32() -> None:
    sol = ScipyReference("RK45").solve(
        lotka_volterra, torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])
    )
    assert sol.ys.dtype == torch.float32 and sol.status == Status.OK


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="RK45"):
        ScipyReference("Euler")
