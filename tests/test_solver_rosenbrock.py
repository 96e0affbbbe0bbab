"""The Rosenbrock solvers (rodas4, ros3p): coefficients, counts, Jacobians, failures, dense
output, gradients. The Bari stiff set's correctness targets are in
``tests/test_solver_rosenbrock_bari.py`` (slow); the fixed-step orders in
``tests/test_problem_prothero.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.plugins import discover
from harness.registry import build_problem, make_solver
from problems.stiff import (
    ROBER_RATES_T,
    RobertsonRatesField,
    robertson_rates_gradient,
    robertson_rates_loss,
)
from solvers.base import Status
from solvers.rosenbrock import Rosenbrock, autograd_jacobian, difference_jacobian
from solvers.rosenbrock_tableaux import RODAS4, ROS3P, RosenbrockTableau

F64 = torch.float64


@pytest.fixture(scope="module", autouse=True)
def _registry():
    discover()


def _conditions(tab: RosenbrockTableau, w: np.ndarray) -> list[float]:
    """The residuals of the order conditions up to order 4 (HW II, Table IV.7.1) of the weights
    ``w`` over the classic form's stages: beta_ij = alpha_ij + gamma_ij (j < i)."""
    alpha, Gamma, _, _ = tab.classic()
    g = tab.gamma
    beta = alpha + Gamma - np.diag(np.diag(Gamma))
    a, bp = alpha.sum(1), beta.sum(1)
    return [
        w.sum() - 1.0,  # order 1
        w @ bp - (0.5 - g),  # order 2
        w @ a**2 - 1.0 / 3.0,  # order 3
        w @ beta @ bp - (1.0 / 6.0 - g + g * g),
        w @ a**3 - 0.25,  # order 4
        w @ (a * (alpha @ bp)) - (1.0 / 8.0 - g / 3.0),
        w @ (beta @ a**2) - (1.0 / 12.0 - g / 3.0),
        w @ beta @ beta @ bp - (1.0 / 24.0 - g / 2.0 + 1.5 * g * g - g**3),
    ]


_UP_TO = {1: 1, 2: 2, 3: 4, 4: 8}  # conditions of order <= p


@pytest.mark.parametrize("tab", [RODAS4, ROS3P], ids=lambda t: t.name)
def test_the_order_conditions_hold_for_the_solution_and_the_embedded_solution(tab):
    _, _, b, b_hat = tab.classic()
    main = np.abs(_conditions(tab, b))
    n = _UP_TO[tab.order]
    assert main[:n].max() < 1e-13
    if tab.order < 4:
        assert main[n:].max() > 1e-3  # not of a higher order than said
    emb = np.abs(_conditions(tab, b_hat))
    assert emb[: _UP_TO[tab.error_order]].max() < 1e-13
    assert emb[_UP_TO[tab.error_order]:].max() > 1e-3


@pytest.mark.parametrize("tab", [RODAS4, ROS3P], ids=lambda t: t.name)
def test_the_stage_times_and_time_weights_come_from_the_classic_form(tab):
    alpha, Gamma, _, _ = tab.classic()
    assert np.allclose(alpha.sum(1), tab.c, atol=1e-14)  # c_i = sum_j alpha_ij
    assert np.allclose(Gamma.sum(1), tab.d, atol=1e-14)  # d_i = sum_j gamma_ij
    assert np.allclose(np.diag(Gamma), tab.gamma)


def test_rodas4_is_stiffly_accurate_and_its_dense_output_ends_at_y1():
    # the last stage's input is the embedded solution and y1 = that + u_6: m = a_6. + e_6
    assert RODAS4.m[:5] == RODAS4.A[5] and RODAS4.e == (0, 0, 0, 0, 0, 1)
    # the stability function at infinity is 0 (L-stable): R(z) = 1 + z b (I - z B)^-1 1,
    # B = alpha + Gamma; z -> -inf
    alpha, Gamma, b, _ = RODAS4.classic()
    B = alpha + Gamma
    z = -1e12
    R = 1.0 + z * b @ np.linalg.solve(np.eye(6) - z * B, np.ones(6))
    assert abs(R) < 1e-9


def test_a_bad_tableau_is_refused_with_what_is_wrong():
    bad = RosenbrockTableau(name="bad", order=2, error_order=1, gamma=0.5, A=((), ()),
                            C=((), (0.0,)), c=(0.0, 1.0), d=(0.5, 0.0), m=(0.5, 0.5),
                            e=(1.0, 0.0))
    with pytest.raises(ValueError, match="A must have rows of 0..1 entries"):
        Rosenbrock(bad)


def _rober():
    return build_problem("robertson")


def test_the_counts_are_those_of_a_rosenbrock_step():
    """Per attempted step: one LU, one solve per stage, s - 1 calls of f; per accepted step
    (the Jacobian is kept after a rejection): one Jacobian (one call of f on d copies of the
    batch) and f at the step's start; plus HINIT's probe and the autonomy check."""
    p = _rober()
    for tab in (RODAS4, ROS3P):
        sol = Rosenbrock(tab).solve(p.f, p.y0, p.t, rtol=1e-5, atol=1e-11)
        assert sol.status == Status.OK
        c = sol.counts
        assert c["ndec"] == sol.n_steps
        assert c["nsol"] == tab.stages * sol.n_steps
        assert c["njev"] == sol.n_accepted
        # (the last output is at the last step's end: no Hermite row waits for f(t1, y1))
        # f at each accepted step's start and the Jacobian's one call of f there
        assert sol.nfe == (tab.stages - 1) * sol.n_steps + 2 * sol.n_accepted + 2
        assert sol.n_rejected > 0  # the counts were checked with rejections in them


def test_the_autograd_jacobian_is_robers_own_row_by_row():
    p = _rober()
    y = torch.tensor([[1.0, 0.0, 0.0], [0.9, 3e-5, 0.1], [0.5, 1e-5, 0.5]], dtype=F64)
    k1, k2, k3 = 0.04, 3e7, 1e4
    want = torch.stack([torch.tensor([
        [-k1, k3 * y3, k3 * y2],
        [k1, -k3 * y3 - 2 * k2 * y2, -k3 * y2],
        [0.0, 2 * k2 * y2, 0.0],
    ], dtype=F64) for _, y2, y3 in y.tolist()])
    for jac in (autograd_jacobian(p.f, 0.0, y, y.shape),
                autograd_jacobian(p.f, 0.0, y[:1], y[0].shape)):
        assert torch.allclose(jac, want[: len(jac)], rtol=1e-14, atol=0)
    k = p.f(0.0, y)
    fd = difference_jacobian(p.f, 0.0, y, k, y.shape)
    # forward differences carry about half the digits: k2 * delta ~ 3e7 * 1e-10 absolute
    assert torch.allclose(fd[1:], want[1:], rtol=1e-5, atol=0)
    assert float((fd - want).abs().max()) < 1e-2


def test_a_problems_own_jacobian_gives_the_same_steps():
    p = _rober()

    def jac(t, y):
        return autograd_jacobian(p.f, t, y.reshape(1, -1), y.shape)

    a = Rosenbrock(RODAS4).solve(p.f, p.y0, p.t, rtol=1e-6, atol=1e-12)
    b = Rosenbrock(RODAS4).solve(p.f, p.y0, p.t, rtol=1e-6, atol=1e-12, jac=jac)
    assert (a.n_accepted, a.n_rejected) == (b.n_accepted, b.n_rejected)
    assert torch.equal(a.ys, b.ys)


def test_bad_options_are_refused_with_the_allowed_values():
    p = _rober()
    s = Rosenbrock(RODAS4)
    with pytest.raises(ValueError, match="'autograd', 'fd'"):
        s.solve(p.f, p.y0, p.t, jac="numeric")
    with pytest.raises(ValueError, match="`autonomous` must be True, False or None"):
        s.solve(p.f, p.y0, p.t, autonomous="yes")
    with pytest.raises(ValueError, match="takes the controllers 'hairer', 'pid'; got 'constant'"):
        s.solve(p.f, p.y0, p.t, controller="constant")
    with pytest.raises(ValueError, match="does not take `backend`"):
        s.solve(p.f, p.y0, p.t, backend="host")


def _decay(t, y):
    """``y' = -1000 (y - cos t) - sin t``: y = cos t + (y0 - 1) e^(-1000 t), non-autonomous."""
    tt = torch.as_tensor(t, dtype=y.dtype)
    return -1000.0 * (y - torch.cos(tt)) - torch.sin(tt)


def test_a_non_autonomous_field_gets_its_time_derivative():
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    y0 = torch.tensor([1.0], dtype=F64)
    exact = torch.cos(t).unsqueeze(-1)
    s = Rosenbrock(RODAS4)
    good = s.solve(_decay, y0, t, rtol=1e-4, atol=1e-6)
    assert float((good.ys - exact).abs().max()) < 1e-3
    # told a lie (no df/dt term), the method drops to order 1 in the stiff component and the
    # controller needs hundreds of times the steps for the same tolerance
    wrong = s.solve(_decay, y0, t, rtol=1e-4, atol=1e-6, autonomous=True)
    assert wrong.n_accepted > 100 * good.n_accepted


def _square(t, y):
    return -y * y  # y = 1 / (1 + t)


def test_the_dense_output_inside_steps_is_as_accurate_as_the_steps():
    """rodas4's continuous extension (order 3) and ros3p's Hermite interpolant at 41 outputs,
    most of them inside steps: the error stays at the tolerance's size and falls with it."""
    t = torch.linspace(0.0, 10.0, 41, dtype=F64)
    y0 = torch.tensor([1.0], dtype=F64)
    exact = (1.0 / (1.0 + t)).unsqueeze(-1)
    for tab in (RODAS4, ROS3P):
        errs = []
        for tol in (1e-4, 1e-6):
            sol = Rosenbrock(tab).solve(_square, y0, t, rtol=tol, atol=tol)
            errs.append(float((sol.ys - exact).abs().max()))
            assert errs[-1] < 2.0 * tol, tab.name
        assert sol.n_accepted < 40 or tab is ROS3P
        assert errs[1] < errs[0] / 50.0, tab.name


def test_ros3p_estimates_no_error_on_a_linear_constant_coefficient_problem():
    """A property of the published method, not of this code: ROS3P's embedded weights
    b_hat = (1/3, 1/3, 1/3) give the same stability function as its solution, so on
    y' = A y the error estimate is 0 (to rounding) and the controller grows the step to its
    largest. The README warns about it; rodas4 has no such blind spot."""
    for tab, blind in ((ROS3P, True), (RODAS4, False)):
        alpha, Gamma, b, b_hat = tab.classic()
        B = alpha + Gamma
        one = np.ones(tab.stages)
        for z in (-50.0, -0.3, 0.2, 1j):
            R = z * b @ np.linalg.solve(np.eye(tab.stages) - z * B, one)
            R_hat = z * b_hat @ np.linalg.solve(np.eye(tab.stages) - z * B, one)
            assert (abs(R - R_hat) < 1e-13) == blind


def test_a_batch_is_solved_as_independent_trajectories():
    p = _rober()
    y0 = torch.stack([p.y0, torch.tensor([0.5, 0.0, 0.5], dtype=F64)])
    batch = Rosenbrock(RODAS4).solve(p.f, y0, p.t, rtol=1e-7, atol=1e-13)
    for b in range(2):
        alone = Rosenbrock(RODAS4).solve(p.f, y0[b], p.t, rtol=1e-7, atol=1e-13)
        scale = 1e-6 + alone.ys.abs()
        assert float(((batch.ys[:, b] - alone.ys).abs() / scale).max()) < 1e-4


def test_a_jacobian_that_is_not_finite_stops_the_solve_as_nonfinite():
    p = _rober()

    def jac(t, y):
        return torch.full((3, 3), math.nan, dtype=F64)

    sol = Rosenbrock(RODAS4).solve(p.f, p.y0, p.t, rtol=1e-6, jac=jac)
    assert sol.status == Status.NONFINITE
    assert "inf/NaN" in sol.message


def test_a_singular_matrix_is_a_rejection_not_a_crash():
    """``I / (h gamma) - J`` singular at the first step's size: the step is rejected and a
    smaller one taken. J = diag(1 / (h0 gamma)) makes the first attempt's matrix 0."""
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = torch.tensor([1.0], dtype=F64)
    h0 = 0.1

    def f(tt, y):
        return -y

    def jac(tt, y):
        return torch.full((1, 1), 1.0 / (h0 * RODAS4.gamma), dtype=F64)

    from solvers.controllers import HairerController
    sol = Rosenbrock(RODAS4).solve(f, y0, t, rtol=1e-6, jac=jac,
                                   controller=HairerController(first_step=h0, fac2=6.0))
    assert sol.n_rejected >= 1
    assert sol.counts["ndec"] == sol.n_steps


def test_float32_and_the_pid_controller_work():
    p = _rober()
    sol = Rosenbrock(RODAS4).solve(p.f, p.y0.float(), p.t.float(), rtol=1e-4, atol=1e-8,
                                   controller="pid")
    assert sol.status == Status.OK and sol.controller == "pid"
    assert sol.ys.dtype == torch.float32
    ref = torch.as_tensor(p.reference.ys[-1], dtype=torch.float32)
    assert float(((sol.ys[-1] - ref).abs() / (1e-6 + ref.abs())).max()) < 1e-2


def test_backprop_through_the_steps_matches_the_closed_form():
    """``y' = -k y`` with a learnable rate: ``y(T) = y0 e^(-k T)``, ``dy/dk = -T y(T)``,
    ``dy/dy0 = e^(-k T)``; stiff enough that an explicit solver would need many steps."""
    k = torch.tensor(400.0, dtype=F64, requires_grad=True)
    y0 = torch.tensor([2.0], dtype=F64, requires_grad=True)
    T = 0.01
    t = torch.tensor([0.0, T], dtype=F64)
    sol = Rosenbrock(RODAS4).solve(lambda tt, y: -k * y, y0, t, rtol=1e-10, atol=1e-12)
    g_k, g_y0 = torch.autograd.grad(sol.ys[-1, 0], (k, y0))
    want = 2.0 * math.exp(-4.0)
    assert abs(float(sol.ys[-1, 0].detach()) - want) < 1e-9
    assert abs(float(g_k) - (-T * want)) < 1e-8
    assert abs(float(g_y0) - math.exp(-4.0)) < 1e-8


def test_the_harness_runs_rodas4_and_records_its_linear_algebra(tmp_path):
    from harness.cli import main
    from harness.results import load_run

    out = tmp_path / "run"
    code = main(["run", "--problems", "robertson", "--solvers", "rodas4,scipy-radau",
                 "--rtol", "1e-5", "--grad", "none", "--min-time", "0.001", "--quiet",
                 "--no-report", "--out", str(out)])
    assert code == 0
    _, df = load_run(out)
    by = {r["solver"]: r for r in df.to_dict("records")}
    assert by["rodas4"]["status"] == "ok" and by["rodas4"]["mescd"] > 5
    assert by["rodas4"]["ndec"] == by["rodas4"]["n_steps"]
    assert by["rodas4"]["nsol"] == 6 * by["rodas4"]["n_steps"]
    assert by["rodas4"]["njev"] == by["rodas4"]["n_accepted"]
    assert by["scipy-radau"]["njev"] > 0 and by["scipy-radau"]["ndec"] > 0
    assert make_solver("rodas4").implicit


def test_rober_rate_gradients_by_backprop_and_checkpoint_agree_with_finite_differences():
    from solvers.gradients.api import odeint

    want = robertson_rates_gradient()
    f = RobertsonRatesField()
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.tensor(ROBER_RATES_T, dtype=F64)
    got = {}
    for mode in ("backprop", "checkpoint"):
        gs = odeint(Rosenbrock(RODAS4), f, y0, t, mode=mode, rtol=1e-8, atol=1e-12)
        (g,) = torch.autograd.grad(robertson_rates_loss(gs.ys), f.log_k)
        got[mode] = g.numpy()
        assert np.abs(got[mode] - want).max() / np.abs(want).max() < 1e-6, mode
        assert gs.backward.status == Status.OK
    # checkpoint replays backprop's own steps: the same gradient to rounding
    assert np.allclose(got["backprop"], got["checkpoint"], rtol=1e-10, atol=0)


def test_the_adjoint_with_rodas4_matches_the_closed_form_on_a_stiff_linear_problem():
    """The backward solves use the augmented system's exact Jacobian. (On ROBER the
    backsolve adjoint fails: its backward solve of y is unstable, see the README.)"""
    from solvers.gradients.api import odeint

    k = torch.nn.Parameter(torch.tensor(400.0, dtype=F64))

    class Decay(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = k

        def forward(self, t, y):
            return -self.k * y

    f = Decay()
    y0 = torch.tensor([2.0], dtype=F64, requires_grad=True)
    T = 0.01
    t = torch.tensor([0.0, T], dtype=F64)
    for mode in ("adjoint", "adjoint-seminorm"):
        gs = odeint(Rosenbrock(RODAS4), f, y0, t, mode=mode, rtol=1e-10, atol=1e-12)
        g_k, g_y0 = torch.autograd.grad(gs.ys[-1, 0], (f.k, y0))
        want = 2.0 * math.exp(-4.0)
        assert abs(float(g_k) - (-T * want)) < 1e-8, mode
        assert abs(float(g_y0) - math.exp(-4.0)) < 1e-8, mode
        assert gs.backward.status == Status.OK and gs.backward.nfe > 0


def test_every_solver_leaves_ros3p_out_below_its_range_and_naming_it_runs_it(capsys):
    from harness.cli import main

    assert main(["run", "--problems", "robertson", "--rtol", "1e-4,1e-9", "--dry-run"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "ros3p: rtol 1e-09 left out, below the tolerances it is made for (rtol >= 1e-07)" in text
    assert "robertson/ros3p/rtol=1e-04" in text and "robertson/ros3p/rtol=1e-09" not in text
    assert "robertson/rodas4/rtol=1e-09" in text
    assert main(["run", "--problems", "robertson", "--solvers", "ros3p", "--rtol", "1e-9",
                 "--dry-run"]) == 0
    assert "robertson/ros3p/rtol=1e-09" in capsys.readouterr().out


def test_the_predictive_controller_is_gustafssons_formula_and_cuts_rejections():
    from solvers.controllers import HairerController

    c = HairerController(safe=0.9, fac1=0.2, fac2=6.0, beta=0.0, predictive=True).fresh(
        q=4, span=10.0)
    assert c.decide(0.5, 0.1) == (True, pytest.approx(0.1 / max(1 / 6, 0.5**0.25 / 0.9)))
    # second accepted step: fac = max(I-controller's, (h_acc/h)(err^2/err_acc)^(1/4)/safe)
    ok, h_new = c.decide(0.8, 0.12)
    fac_i = max(1 / 6, 0.8**0.25 / 0.9)
    fac_g = max(1 / 6, min(5.0, (0.1 / 0.12) * (0.8**2 / 0.5) ** 0.25 / 0.9))
    assert ok and h_new == pytest.approx(0.12 / max(fac_i, fac_g))
    with pytest.raises(NotImplementedError, match="no per-trajectory form"):
        c.rows(2, torch.device("cpu"))
    p = build_problem("vdpol")
    plain = HairerController(safe=0.9, fac1=0.2, fac2=6.0, beta=0.0)
    a = Rosenbrock(RODAS4).solve(p.f, p.y0, p.t, rtol=1e-4, atol=1e-4)
    b = Rosenbrock(RODAS4, controller=plain).solve(p.f, p.y0, p.t, rtol=1e-4, atol=1e-4)
    assert a.n_rejected * 4 < b.n_rejected  # rodas.f's default: 17 against 165 here
