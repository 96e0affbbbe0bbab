"""The explicit RK engine: convergence orders, dense output, counts, statuses, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from solvers.base import Status
from solvers.builtin import dopri5, rk4
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5, EULER, HEUN, RK4

F64 = torch.float64
A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=F64)  # rotation plus decay


def linear(t, y):
    return y @ A.to(y.dtype).T


def linear_exact(t: float, y0: torch.Tensor) -> torch.Tensor:
    return y0 @ torch.linalg.matrix_exp(A * t).T


def lotka_volterra(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack((1.5 * x - x * v, -3.0 * v + x * v), dim=-1)


def slope(hs: list[float], errs: list[float]) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


Y0 = torch.tensor([1.0, 0.5], dtype=F64)


@pytest.mark.parametrize(
    ("tableau", "ladder", "t_end"),
    [
        (EULER, [40, 80, 160, 320], 2.0),
        (HEUN, [20, 40, 80, 160], 2.0),
        (RK4, [10, 20, 40, 80], 4.0),
        (DOPRI5, [10, 20, 40, 80], 8.0),
    ],
    ids=lambda x: getattr(x, "name", None),
)
def test_fixed_step_global_error_converges_at_the_classical_order(tableau, ladder, t_end) -> None:
    solver = RungeKutta(tableau, adaptive=False)
    t = torch.tensor([0.0, t_end], dtype=F64)
    errs = [
        float((solver.solve(linear, Y0, t, n_steps=n).ys[-1] - linear_exact(t_end, Y0)).abs().max())
        for n in ladder
    ]
    measured = slope([t_end / n for n in ladder], errs)
    assert abs(measured - tableau.order) < 0.15, (measured, errs)


@pytest.mark.parametrize(
    ("tableau", "local_order"),
    [(DOPRI5, 5), (RK4, 4)],  # continuous extension of order 4; cubic Hermite of order 3
    ids=["dopri5-continuous", "rk4-hermite"],
)
def test_dense_output_inside_one_step_has_local_error_of_interpolant_order_plus_one(
    tableau, local_order
) -> None:
    """One step from the exact state; the interpolant at theta = 0.3 against the exact value.

    The interpolation error of an order-p interpolant is O(h^(p+1)) locally: DOPRI5's
    4th-order extension gives slope 5, the 3rd-order Hermite gives slope 4.
    """
    solver = RungeKutta(tableau, adaptive=False)
    hs = [0.4, 0.2, 0.1, 0.05]
    errs = []
    for h in hs:
        t = torch.tensor([0.0, 0.3 * h, h], dtype=F64)
        ys = solver.solve(linear, Y0, t, n_steps=1).ys
        errs.append(float((ys[1] - linear_exact(0.3 * h, Y0)).abs().max()))
    assert abs(slope(hs, errs) - local_order) < 0.15, errs


def test_adaptive_dopri5_dense_output_never_changes_the_step_grid() -> None:
    solver = dopri5()
    y0 = torch.tensor([1.0, 1.0], dtype=F64)
    few = solver.solve(
        lotka_volterra, y0, torch.tensor([0.0, 10.0], dtype=F64), rtol=1e-8, atol=1e-8
    )
    many = solver.solve(
        lotka_volterra, y0, torch.linspace(0, 10, 201, dtype=F64), rtol=1e-8, atol=1e-8
    )
    assert (few.n_accepted, few.n_rejected) == (many.n_accepted, many.n_rejected)
    assert torch.equal(few.ys[-1], many.ys[-1])
    from scipy.integrate import solve_ivp

    ref = solve_ivp(
        lambda t, y: lotka_volterra(t, torch.from_numpy(y)).numpy(),
        (0, 10),
        [1.0, 1.0],
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
        t_eval=np.linspace(0, 10, 201),
    )
    assert np.abs(many.ys.numpy() - ref.y.T).max() < 1e-6


@pytest.mark.parametrize(
    ("tableau", "per_step"), [(EULER, 1), (RK4, 4), (HEUN, 2)], ids=["euler", "rk4", "heun"]
)
def test_fixed_step_nfe_is_stages_times_steps_when_outputs_lie_on_the_grid(
    tableau, per_step
) -> None:
    sol = RungeKutta(tableau, adaptive=False).solve(
        linear, Y0, torch.linspace(0, 1, 5, dtype=F64), n_steps=20
    )
    assert (sol.nfe, sol.n_accepted, sol.n_rejected) == (per_step * 20, 20, 0)


def test_rk4_hermite_output_inside_the_last_step_costs_one_extra_call() -> None:
    sol = rk4().solve(linear, Y0, torch.tensor([0.0, 0.99, 1.0], dtype=F64), n_steps=10)
    assert sol.nfe == 4 * 10 + 1


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_dopri5_nfe_is_six_per_attempted_step_plus_two_to_start(tol) -> None:
    sol = dopri5().solve(
        lotka_volterra,
        torch.tensor([1.0, 1.0], dtype=F64),
        torch.linspace(0, 10, 7, dtype=F64),
        rtol=tol,
        atol=tol,
    )
    assert sol.status == Status.OK
    assert sol.nfe == 6 * (sol.n_accepted + sol.n_rejected) + 2
    assert sol.n_steps == sol.n_accepted + sol.n_rejected


def test_float32_dopri5_keeps_dtype_and_accuracy() -> None:
    y0 = torch.tensor([1.0, 0.5])
    sol = dopri5().solve(linear, y0, torch.linspace(0, 5, 6), rtol=1e-5, atol=1e-6)
    assert sol.status == Status.OK and sol.ys.dtype == torch.float32
    exact = torch.stack([linear_exact(float(s), Y0) for s in torch.linspace(0, 5, 6)])
    assert (sol.ys.double() - exact).abs().max() < 1e-4


@pytest.mark.parametrize("make", [rk4, dopri5], ids=["rk4", "dopri5"])
def test_batched_states_solve_every_member(make) -> None:
    y0 = torch.rand(3, 4, 2, dtype=F64, generator=torch.Generator().manual_seed(0)) + 0.5
    t = torch.linspace(0, 3, 4, dtype=F64)
    sol = make().solve(linear, y0, t, rtol=1e-8, atol=1e-8, n_steps=200)
    assert sol.status == Status.OK and sol.ys.shape == (4, 3, 4, 2)
    exact = linear_exact(3.0, y0.reshape(-1, 2)).reshape(3, 4, 2)
    assert (sol.ys[-1] - exact).abs().max() < 1e-6


def test_solve_backwards_in_time_reaches_the_exact_initial_value() -> None:
    y_end = linear_exact(2.0, Y0)
    sol = dopri5().solve(
        linear, y_end, torch.tensor([2.0, 1.0, 0.0], dtype=F64), rtol=1e-9, atol=1e-9
    )
    assert sol.status == Status.OK and sol.t_reached == 0.0
    assert (sol.ys[-1] - Y0).abs().max() < 1e-7


def test_stiff_problem_stops_with_max_steps_quickly() -> None:
    def stiff(t, y):
        return -1e6 * (y - math.cos(t))

    sol = dopri5().solve(
        stiff,
        torch.zeros(1, dtype=F64),
        torch.tensor([0.0, 10.0], dtype=F64),
        rtol=1e-6,
        atol=1e-6,
        max_steps=500,
    )
    assert sol.status == Status.MAX_STEPS and sol.n_steps == 500
    assert "max_steps" in sol.message and math.isnan(float(sol.ys[-1]))
    assert sol.t_reached is not None and sol.t_reached < 10.0


def blow_up(t, y):
    return y * y


def test_fixed_step_blow_up_past_the_singularity_is_nonfinite() -> None:
    t = torch.linspace(0, 2, 5, dtype=F64)
    sol = rk4().solve(blow_up, torch.ones(1, dtype=F64), t, n_steps=40)
    assert sol.status == Status.NONFINITE
    assert torch.isfinite(sol.ys[:2]).all() and torch.isnan(sol.ys[-1]).all()


def test_adaptive_blow_up_ends_with_a_failure_status_not_a_hang() -> None:
    sol = dopri5().solve(
        blow_up, torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64), rtol=1e-6, atol=1e-6
    )
    assert sol.status in (Status.NONFINITE, Status.STEP_TOO_SMALL)
    assert sol.t_reached is not None and sol.t_reached < 1.01 and sol.n_steps < 10_000
    assert torch.isnan(sol.ys[-1]).all() and sol.message


def test_nan_from_the_right_hand_side_is_nonfinite() -> None:
    def nan_after_one(t, y):
        return y if t < 1.0 else y * math.nan

    sol = dopri5().solve(
        nan_after_one, torch.ones(2, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64)
    )
    assert sol.status in (Status.NONFINITE, Status.STEP_TOO_SMALL)


@pytest.mark.parametrize("make", [rk4, dopri5], ids=["rk4", "dopri5"])
def test_gradients_flow_through_the_solver_by_backprop(make) -> None:
    theta = torch.tensor(0.7, dtype=F64, requires_grad=True)
    y0 = Y0.clone().requires_grad_(True)

    def f(t, y):
        return theta * (y @ A.T)

    T = 1.5
    sol = make().solve(
        f, y0, torch.tensor([0.0, 0.5, T], dtype=F64), rtol=1e-10, atol=1e-10, n_steps=200
    )
    g_y0, g_theta = torch.autograd.grad(sol.ys[-1].sum(), (y0, theta))
    with torch.no_grad():
        expm = torch.linalg.matrix_exp(A * 0.7 * T)
        want_y0 = expm.T @ torch.ones(2, dtype=F64)
        want_theta = (T * (A @ expm @ Y0)).sum()
    assert torch.allclose(g_y0, want_y0, rtol=1e-6)
    assert torch.allclose(g_theta, want_theta, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rtol": 0.0}, "rtol"),
        ({"rtol": -1.0}, "rtol"),
        ({"atol": -1.0}, "atol"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_bad_tolerances_are_refused_by_name(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        dopri5().solve(linear, Y0, torch.tensor([0.0, 1.0], dtype=F64), **kwargs)


@pytest.mark.parametrize("n_steps", [None, 0, 2.5])
def test_fixed_step_solver_needs_a_positive_n_steps(n_steps) -> None:
    with pytest.raises(ValueError, match="n_steps"):
        rk4().solve(linear, Y0, torch.tensor([0.0, 1.0], dtype=F64), n_steps=n_steps)


@pytest.mark.parametrize("t", [[0.0], [0.0, 1.0, 0.5], [[0.0, 1.0]]])
def test_output_times_must_be_a_monotone_sequence(t) -> None:
    with pytest.raises(ValueError, match="`t`"):
        dopri5().solve(linear, Y0, torch.tensor(t, dtype=F64))


def test_adaptive_without_an_error_estimate_is_refused() -> None:
    with pytest.raises(ValueError, match="b_err"):
        RungeKutta(RK4, adaptive=True)


def test_fixed_step_max_steps_stops_early_with_nan_after() -> None:
    sol = rk4().solve(linear, Y0, torch.linspace(0, 1, 3, dtype=F64), n_steps=10, max_steps=6)
    assert sol.status == Status.MAX_STEPS and sol.n_accepted == 6
    assert torch.isfinite(sol.ys[1]).all() and torch.isnan(sol.ys[2]).all()


def test_non_fsal_adaptive_method_uses_hermite_output_from_the_next_first_stage() -> None:
    heun = RungeKutta(HEUN, name="heun-adaptive", adaptive=True)
    assert heun.interpolation == "hermite"
    t = torch.linspace(0, 3, 13, dtype=F64)
    sol = heun.solve(linear, Y0, t, rtol=1e-7, atol=1e-7)
    exact = torch.stack([linear_exact(float(s), Y0) for s in t])
    assert sol.status == Status.OK and (sol.ys - exact).abs().max() < 1e-4
    # per attempt one new stage; per accepted point one first stage; 1 to start the probe
    assert sol.nfe <= 2 + sol.n_steps + sol.n_accepted + 1


def test_a_new_rk_method_is_a_tableau_plus_one_registration() -> None:
    from harness.registry import SOLVERS, make_solver, register_solver

    register_solver("heun-test")(lambda: RungeKutta(HEUN, name="heun-test", adaptive=False))
    try:
        solver = make_solver("heun-test")
        sol = solver.solve(linear, Y0, torch.tensor([0.0, 1.0], dtype=F64), n_steps=100)
        assert solver.order == 2 and sol.status == Status.OK and sol.nfe == 200
        assert (sol.ys[-1] - linear_exact(1.0, Y0)).abs().max() < 1e-4
    finally:
        SOLVERS.remove("heun-test")


def test_builtin_registrations_are_the_documented_solvers() -> None:
    from harness.registry import SOLVERS

    names = {
        "euler",
        "rk4",
        "dopri5",
        "scipy-rk45",
        "scipy-dop853",
        "scipy-radau",
        "scipy-bdf",
        "scipy-lsoda",
    }
    assert names <= set(SOLVERS.names())
    for name in names:
        assert SOLVERS.get(name).factory().name == name


def test_batch_of_identical_trajectories_steps_exactly_as_one() -> None:
    """Step control takes each trajectory's own norm (the worst one decides), so a batch of
    copies takes the same steps and gives the same values as a single trajectory."""
    from solvers.rk import RungeKutta
    from solvers.tableaux import DOPRI5

    def make_dopri5():
        return RungeKutta(DOPRI5)

    def lv(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([1.5 * x - x * v, -3 * v + x * v], dim=-1)

    t = torch.linspace(0.0, 10.0, 5, dtype=torch.float64)
    y0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    one = make_dopri5().solve(lv, y0, t, rtol=1e-4, atol=1e-4)
    many = make_dopri5().solve(lv, y0.expand(7, 2).clone(), t, rtol=1e-4, atol=1e-4)
    assert (many.n_accepted, many.n_rejected) == (one.n_accepted, one.n_rejected)
    # the single trajectory ran in Python floats (solvers.rk_host), the batch in tensors
    torch.testing.assert_close(many.ys[:, 3], one.ys, rtol=1e-12, atol=0)
    from solvers import rk

    old, rk.HOST_MAX = rk.HOST_MAX, 0
    try:  # both on the tensor loop: bit for bit
        one = make_dopri5().solve(lv, y0, t, rtol=1e-4, atol=1e-4)
    finally:
        rk.HOST_MAX = old
    assert torch.equal(many.ys[:, 3], one.ys)


def test_batch_step_control_serves_the_hardest_trajectory() -> None:
    """A fast trajectory in a batch of slow ones still meets its tolerance."""
    from solvers.rk import RungeKutta
    from solvers.tableaux import DOPRI5

    def make_dopri5():
        return RungeKutta(DOPRI5)

    rates = torch.tensor([[1.0], [1.0], [1.0], [40.0]], dtype=torch.float64)

    def rot(t, y):  # rotation at a per-trajectory rate: exact solution known
        return rates * torch.stack([-y[..., 1], y[..., 0]], dim=-1)

    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64).expand(4, 2).clone()
    sol = make_dopri5().solve(rot, y0, t, rtol=1e-6, atol=1e-6)
    w = rates[:, 0] * 2.0
    exact = torch.stack([torch.cos(w), torch.sin(w)], dim=-1)
    assert (sol.ys[-1] - exact).abs().max() < 1e-4


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_dopri5_never_evaluates_f_past_the_final_time(tol: float) -> None:
    """Unlike codes that step past the end and interpolate back, every stage lies in [t0, T]."""
    seen: list[float] = []

    def lv(t, y):
        seen.append(float(t))
        x, v = y[..., 0], y[..., 1]
        return torch.stack([1.5 * x - x * v, -3 * v + x * v], dim=-1)

    t = torch.tensor([0.0, 2.5, 7.3], dtype=torch.float64)
    sol = RungeKutta(DOPRI5).solve(lv, torch.tensor([1.0, 1.0], dtype=torch.float64), t,
                                   rtol=tol, atol=tol)
    assert sol.status == "ok" and sol.t_reached == 7.3
    assert max(seen) == 7.3 and min(seen) == 0.0
