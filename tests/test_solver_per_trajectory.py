"""``dopri5-pt``: each trajectory of a batch takes the steps it would take alone."""

from __future__ import annotations

import math

import pytest
import torch

from problems import nonstiff
from solvers.base import Status
from solvers.controllers import HairerController, PIDController
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5, RK4

F64 = torch.float64
ECCENTRICITIES = (0.1, 0.3, 0.5, 0.7, 0.9)  # DETEST D1-D5


def shared() -> RungeKutta:
    return RungeKutta(DOPRI5, name="dopri5")


def per_trajectory() -> RungeKutta:
    return RungeKutta(DOPRI5, name="dopri5-pt", per_trajectory=True)


def kepler_batch(dtype=F64) -> torch.Tensor:
    return torch.tensor([nonstiff.kepler_y0(e) for e in ECCENTRICITIES], dtype=dtype)


T20 = torch.linspace(0.0, 20.0, 11, dtype=F64)


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_each_kepler_orbit_takes_its_own_steps(tol):
    f = nonstiff.KeplerField()
    y0 = kepler_batch()
    alone = [shared().solve(f, y0[b], T20, rtol=tol, atol=tol) for b in range(len(y0))]
    sol = per_trajectory().solve(f, y0, T20, rtol=tol, atol=tol)
    assert sol.status == Status.OK
    stats = sol.trajectories
    assert stats.n_accepted == [a.n_accepted for a in alone]
    assert stats.n_rejected == [a.n_rejected for a in alone]
    assert stats.status == ["ok"] * 5
    assert stats.t_reached == [20.0] * 5
    # the loop runs as many iterations as the slowest trajectory takes attempts alone
    slowest = max(a.n_accepted + a.n_rejected for a in alone)
    assert sol.n_steps == slowest
    assert sol.n_accepted + sol.n_rejected == slowest
    # FSAL: 6 calls per iteration, plus f(t0) and HINIT's probe, as one trajectory alone
    assert sol.nfe == 6 * slowest + 2
    # the same numbers as alone, up to the last bits of the step sizes (amplified along the
    # eccentric orbits, far below the global error)
    for b, a in enumerate(alone):
        assert torch.allclose(sol.ys[:, b], a.ys, rtol=0, atol=1e-3 * tol)


def test_accurate_against_the_exact_orbits():
    f = nonstiff.KeplerField()
    sol = per_trajectory().solve(f, kepler_batch(), T20, rtol=1e-9, atol=1e-9)
    for b, e in enumerate(ECCENTRICITIES):
        exact = torch.from_numpy(nonstiff.kepler_exact(T20.numpy(), e))
        assert float((sol.ys[:, b] - exact).abs().max()) < 1e-5


def test_fewer_iterations_and_calls_than_shared_steps():
    f = nonstiff.KeplerField()
    y0 = kepler_batch()
    pt = per_trajectory().solve(f, y0, T20, rtol=1e-6, atol=1e-6)
    sh = shared().solve(f, y0, T20, rtol=1e-6, atol=1e-6)
    assert pt.n_steps < sh.n_steps and pt.nfe < sh.nfe


def test_copies_step_exactly_as_one():
    f = nonstiff.KeplerField()
    y0 = torch.tensor(nonstiff.kepler_y0(0.5), dtype=F64)
    one = shared().solve(f, y0, T20, rtol=1e-7, atol=1e-7)
    sol = per_trajectory().solve(f, y0.expand(3, 4).clone(), T20, rtol=1e-7, atol=1e-7)
    assert sol.trajectories.n_accepted == [one.n_accepted] * 3
    assert torch.equal(sol.ys[:, 0], sol.ys[:, 2])


def test_single_trajectory_gets_a_0d_time_and_batch_a_column():
    seen = []

    def f(t, y):
        seen.append(tuple(t.shape))
        return -y * torch.cos(t)

    t = torch.tensor([0.0, 1.0], dtype=F64)
    per_trajectory().solve(f, torch.ones(1, dtype=F64), t)
    assert set(seen) == {()}
    seen.clear()
    per_trajectory().solve(f, torch.ones(3, 1, dtype=F64), t)
    assert set(seen) == {(3, 1)}


def test_non_autonomous_rows_match_alone():
    """DETEST A3 (y' = y cos t) from different starts: each row's own time enters f."""

    def f(t, y):
        return y * torch.cos(torch.as_tensor(t, dtype=y.dtype))

    t = torch.linspace(0.0, 20.0, 5, dtype=F64)
    y0 = torch.tensor([[1.0], [1e-3], [50.0]], dtype=F64)
    sol = per_trajectory().solve(f, y0, t, rtol=1e-8, atol=1e-10)
    exact = y0[None] * torch.exp(torch.sin(t))[:, None, None]
    assert torch.allclose(sol.ys, exact, rtol=1e-6, atol=0)
    for b in range(3):
        alone = shared().solve(f, y0[b], t, rtol=1e-8, atol=1e-10)
        assert sol.trajectories.n_accepted[b] == alone.n_accepted
        assert sol.trajectories.n_rejected[b] == alone.n_rejected


def test_backwards_in_time():
    f = nonstiff.KeplerField()
    y0 = kepler_batch()[:2]
    t = torch.tensor([5.0, 2.0, 0.0], dtype=F64)
    sol = per_trajectory().solve(f, y0, t, rtol=1e-8, atol=1e-8)
    for b in range(2):
        alone = shared().solve(f, y0[b], t, rtol=1e-8, atol=1e-8)
        assert sol.trajectories.n_accepted[b] == alone.n_accepted
        assert torch.allclose(sol.ys[:, b], alone.ys, rtol=0, atol=1e-10)


def test_float32():
    f = nonstiff.KeplerField()
    sol = per_trajectory().solve(f, kepler_batch(torch.float32), T20, rtol=1e-5, atol=1e-5)
    assert sol.status == Status.OK and sol.ys.dtype == torch.float32
    assert bool(torch.isfinite(sol.ys).all())


def test_one_failing_trajectory_leaves_the_others_finished():
    """y' = y^2 blows up at t = 1/y0: the row from 1 fails, the row from 0.1 finishes."""

    def f(t, y):
        return y * y

    t = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    sol = per_trajectory().solve(f, torch.tensor([[0.1], [1.0]], dtype=F64), t)
    assert sol.status != Status.OK
    assert sol.trajectories.status[0] == "ok"
    assert sol.trajectories.status[1] != "ok"
    assert "1 of 2 trajectories stopped early; trajectory 1" in sol.message
    assert sol.ys[-1, 0, 0].item() == pytest.approx(0.1 / (1 - 0.2), rel=1e-5)
    assert math.isnan(sol.ys[-1, 1, 0].item())
    assert sol.ys[1, 1, 0].item() == pytest.approx(2.0, rel=1e-5)  # reached before the failure
    assert sol.t_reached == pytest.approx(1.0, abs=1e-3)  # the blow-up time


def test_max_steps_per_trajectory():
    f = nonstiff.KeplerField()
    sol = per_trajectory().solve(f, kepler_batch(), T20, rtol=1e-6, atol=1e-6, max_steps=100)
    assert sol.status == Status.MAX_STEPS
    assert sol.trajectories.status[0] == "ok"  # D1 needs 76 steps
    assert sol.trajectories.status[-1] == "max_steps"
    assert "max_steps=100" in sol.message


def test_backprop_gradient_matches_shared_steps():
    f = nonstiff.KeplerField()
    t = torch.tensor([0.0, 3.0], dtype=F64)
    grads = []
    for solver in (shared(), per_trajectory()):
        y0 = torch.tensor(nonstiff.kepler_y0(0.3), dtype=F64, requires_grad=True)
        sol = solver.solve(f, y0, t, rtol=1e-10, atol=1e-10)
        (sol.ys[-1] ** 2).sum().backward()
        grads.append(y0.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-7, atol=1e-9)


def test_options_it_refuses():
    with pytest.raises(ValueError, match="needs an adaptive solver"):
        RungeKutta(RK4, name="rk4", adaptive=False, per_trajectory=True)
    f = nonstiff.KeplerField()
    with pytest.raises(ValueError, match="need shared steps"):
        per_trajectory().solve(f, kepler_batch(), T20, record_steps=True)
    assert [str(m) for m in per_trajectory().grad_modes] == ["none", "backprop"]


def test_a_rhs_returning_a_non_contiguous_tensor():
    """``(A @ y.T).T`` (a common way to write a linear system) is a transposed view."""
    a = torch.tensor([[0.0, 1.0], [-1.0, -0.1]], dtype=F64)

    def f(t, y):
        return (a @ y.T).T

    y0 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    t = torch.linspace(0.0, 3.0, 4, dtype=F64)
    sol = per_trajectory().solve(f, y0, t, rtol=1e-8, atol=1e-10)
    ref = shared().solve(f, y0, t, rtol=1e-8, atol=1e-10)
    assert sol.status == Status.OK
    torch.testing.assert_close(sol.ys, ref.ys, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_pid_rows_take_each_orbits_steps_alone(tol):
    """Under Söderlind's PID controller too, each orbit of the batch takes its steps alone."""
    f = nonstiff.KeplerField()
    y0 = kepler_batch()
    alone = RungeKutta(DOPRI5, name="dopri5", controller="pid")
    pt = RungeKutta(DOPRI5, name="dopri5-pt", per_trajectory=True, controller="pid")
    sol = pt.solve(f, y0, T20, rtol=tol, atol=tol)
    assert sol.status == Status.OK and sol.controller == "pid"
    runs = [alone.solve(f, y0[b], T20, rtol=tol, atol=tol) for b in range(len(y0))]
    assert sol.trajectories.n_accepted == [a.n_accepted for a in runs]
    assert sol.trajectories.n_rejected == [a.n_rejected for a in runs]
    for b, a in enumerate(runs):
        assert torch.allclose(sol.ys[:, b], a.ys, rtol=0, atol=1e-3 * tol)


def _scalar_rows(ctrl, errs, hs):
    """The scalar controller's decisions, one trajectory after another (each its own copy)."""
    copies = [ctrl.fresh(q=5, span=10.0) for _ in errs[0]]
    out = []
    for err_row, h_row in zip(errs, hs, strict=True):
        out.append([c.decide(e, h) for c, e, h in zip(copies, err_row, h_row, strict=True)])
    return out


@pytest.mark.parametrize("ctrl", [HairerController(), PIDController(),
                                  PIDController(pcoeff=0.1, icoeff=0.3, dcoeff=0.05)],
                         ids=["hairer", "pid", "pid-d"])
def test_row_controllers_equal_the_scalar_rule_per_trajectory(ctrl):
    """Random error norms (with inf and NaN) and steps: the rows' decisions are the scalar
    rule's, row by row, step after step (the steps up to the last bits: torch's and Python's
    ``pow`` may round differently)."""
    g = torch.Generator().manual_seed(0)
    n, steps = 7, 40
    errs = torch.exp(torch.randn(steps, n, generator=g, dtype=F64) * 2.0)
    errs[5, 2], errs[9, 4], errs[10, 4] = math.inf, math.nan, math.nan
    hs = torch.rand(steps, n, generator=g, dtype=F64) * 0.5 + 1e-3
    want = _scalar_rows(ctrl, errs.tolist(), hs.tolist())
    rows = ctrl.fresh(q=5, span=10.0).rows(n, torch.device("cpu"))
    active = torch.ones(n, dtype=torch.bool)
    for k in range(steps):
        accepted, h_new = rows.decide(errs[k].clone(), hs[k].clone(), active)
        assert accepted.tolist() == [a for a, _ in want[k]]
        assert h_new.tolist() == pytest.approx([h for _, h in want[k]], rel=1e-14)


def test_row_controllers_leave_inactive_rows_alone():
    rows = HairerController().fresh(q=5, span=10.0).rows(2, torch.device("cpu"))
    active = torch.tensor([True, False])
    err, h = torch.tensor([3.0, 3.0], dtype=F64), torch.tensor([0.1, 0.0], dtype=F64)
    accepted, _ = rows.decide(err, h, active)
    assert accepted.tolist() == [False, False]
    # the active row was rejected (no growth next), the other keeps its fresh state
    small = torch.tensor([1e-6, 1e-6], dtype=F64)
    accepted, h_new = rows.decide(small, h, torch.ones(2, dtype=torch.bool))
    assert accepted.tolist() == [True, True]
    assert h_new[0].item() == pytest.approx(0.1)


def test_many_outputs_in_one_step_match_alone():
    """Output times far denser than the steps (several per step) come from dense output, as
    with the shared loop; the iteration that reaches several outputs takes another path."""
    f = nonstiff.KeplerField()
    y0 = kepler_batch()[:3]
    t = torch.linspace(0.0, 20.0, 401, dtype=F64)
    sol = per_trajectory().solve(f, y0, t, rtol=1e-5, atol=1e-5)
    assert sol.status == Status.OK
    for b in range(3):
        alone = shared().solve(f, y0[b], t, rtol=1e-5, atol=1e-5)
        assert sol.trajectories.n_accepted[b] == alone.n_accepted
        assert torch.allclose(sol.ys[:, b], alone.ys, rtol=0, atol=1e-7)


def test_a_batch_longer_than_the_ring_of_stage_buffers():
    """More iterations than stage buffers kept for the outputs, and rows finishing at
    different iterations: every output is filled, as alone."""
    f = nonstiff.KeplerField()
    y0 = torch.tensor([nonstiff.kepler_y0(e) for e in (0.0, 0.2, 0.95)], dtype=F64)
    t = torch.linspace(0.0, 20.0, 23, dtype=F64)
    sol = per_trajectory().solve(f, y0, t, rtol=1e-8, atol=1e-8)
    assert sol.n_steps > 16 and bool(torch.isfinite(sol.ys).all())
    for b in range(3):
        alone = shared().solve(f, y0[b], t, rtol=1e-8, atol=1e-8)
        assert torch.allclose(sol.ys[:, b], alone.ys, rtol=0, atol=1e-9)
