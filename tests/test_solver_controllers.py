"""Step-size controllers as objects: Hairer's, PID and constant; by name on the solver; bounds;
the per-trajectory rows equal to the scalar rule; the per-step callback."""

from __future__ import annotations

import math

import pytest
import torch

from solvers.base import Status
from solvers.controllers import (
    CONTROLLERS,
    ConstantController,
    HairerController,
    PIDController,
    make_controller,
)
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5, RK4

T = torch.tensor([0.0, 2.0], dtype=torch.float64)


def decay(t, y):
    return -y


def kepler(t, y):  # DETEST D5-like orbit: a hard one for step control
    q, p = y[..., :2], y[..., 2:]
    r3 = (q * q).sum(-1, keepdim=True) ** 1.5
    return torch.cat((p, -q / r3), -1)


def orbit(e: float) -> torch.Tensor:
    return torch.tensor([1.0 - e, 0.0, 0.0, math.sqrt((1 + e) / (1 - e))], dtype=torch.float64)


def test_the_names_are_the_built_ins() -> None:
    assert set(CONTROLLERS) == {"hairer", "pid", "constant"}
    assert isinstance(make_controller("pid"), PIDController)
    assert isinstance(make_controller(None), HairerController)
    with pytest.raises(ValueError, match="unknown controller 'pi'; choose one of 'hairer', 'pid'"):
        make_controller("pi")


def test_pid_factor_is_soderlinds_formula_with_coefficients_over_q() -> None:
    c = PIDController(pcoeff=0.3, icoeff=0.4, dcoeff=0.1, q=5)
    h = 0.1
    errs = [0.5, 0.8, 0.3]
    prev = prev_prev = 1.0
    for err in errs:
        k_i, k_p, k_d = 0.4 / 5, 0.3 / 5, 0.1 / 5
        factor = 0.9 * err ** -(k_i + k_p + k_d) * prev ** (k_p + 2 * k_d) * prev_prev ** -k_d
        ok, h_new = c.decide(err, h)
        assert ok and h_new == pytest.approx(h * min(10.0, max(0.2, factor)), rel=1e-14)
        prev_prev, prev, h = prev, err, h_new


def test_pid_rejects_above_one_and_does_not_remember_a_rejected_error() -> None:
    c = PIDController()
    ok, h = c.decide(4.0, 1.0)
    assert not ok and h < 1.0 and (c.prev, c.prev_prev) == (1.0, 1.0)
    ok, h = c.decide(math.nan, 1.0)
    assert not ok and h == pytest.approx(0.2)


@pytest.mark.parametrize("make", [HairerController, PIDController, ConstantController])
def test_rows_follow_the_scalar_rule_per_trajectory(make) -> None:
    torch.manual_seed(0)
    n = 6
    errs = torch.rand(8, n, dtype=torch.float64) * 2.5  # accepted and rejected steps mixed
    errs[3, 1] = math.inf
    scalars = [make().fresh(q=5, span=3.0) for _ in range(n)]
    rows = make().fresh(q=5, span=3.0).rows(n, torch.device("cpu"))
    h = torch.full((n,), 0.1, dtype=torch.float64)
    active = torch.ones(n, dtype=torch.bool)
    hs = [0.1] * n
    for err in errs:
        acc, h = rows.decide(err, h, active)
        for b in range(n):
            ok, hs[b] = scalars[b].decide(float(err[b]), hs[b])
            assert bool(acc[b]) == ok
        torch.testing.assert_close(h, torch.tensor(hs, dtype=torch.float64), rtol=1e-13, atol=0)


def test_hmax_and_hmin_bound_every_controller() -> None:
    for cls in (HairerController, PIDController):
        c = cls(hmax=0.5, hmin=0.01).fresh(q=5, span=10.0)
        assert c.decide(1e-12, 0.4)[1] == 0.5
        assert c.decide(1e6, 0.02)[1] == 0.01
        assert c.at_floor(0.01) and not c.at_floor(0.02)
    with pytest.raises(ValueError, match="hmin <= hmax"):
        HairerController(hmin=1.0, hmax=0.5)


def test_a_solver_takes_a_controller_by_name_and_says_which_ran() -> None:
    solver = RungeKutta(DOPRI5)
    y0 = orbit(0.9)
    t = torch.tensor([0.0, 20.0], dtype=torch.float64)
    hairer = solver.solve(kepler, y0, t, rtol=1e-6, atol=1e-6)
    pid = solver.solve(kepler, y0, t, rtol=1e-6, atol=1e-6, controller="pid")
    assert (hairer.controller, pid.controller) == ("hairer", "pid")
    assert hairer.status == pid.status == Status.OK
    assert (hairer.n_accepted, hairer.n_rejected) != (pid.n_accepted, pid.n_rejected)
    torch.testing.assert_close(pid.ys[-1], hairer.ys[-1], rtol=0, atol=1e-3)
    # the same object by instance, and the default by name, change nothing
    again = solver.solve(kepler, y0, t, rtol=1e-6, atol=1e-6, controller=HairerController())
    assert torch.equal(again.ys, hairer.ys) and again.nfe == hairer.nfe


def test_a_controller_a_solver_does_not_take_is_refused_with_its_list() -> None:
    with pytest.raises(ValueError, match="'rk4' takes the controllers 'constant'; got 'pid'"):
        RungeKutta(RK4, name="rk4").solve(decay, torch.ones(1), T, n_steps=4, controller="pid")


def test_constant_controller_takes_the_first_step_throughout() -> None:
    sol = RungeKutta(DOPRI5).solve(decay, torch.ones(1, dtype=torch.float64), T,
                                   controller=ConstantController(first_step=0.25),
                                   record_steps=True)
    assert sol.n_rejected == 0 and sol.n_accepted == 8
    assert [r.h for r in sol.steps] == [0.25] * 8
    assert sol.ys[-1].item() == pytest.approx(math.exp(-2.0), rel=1e-6)


def test_max_step_bounds_the_steps_and_min_step_stops_a_solve_that_needs_less() -> None:
    solver = RungeKutta(DOPRI5)
    y0 = torch.ones(1, dtype=torch.float64)
    sol = solver.solve(decay, y0, T, controller=HairerController(hmax=0.1), record_steps=True)
    assert sol.status == Status.OK and max(abs(r.h) for r in sol.steps) <= 0.1
    stuck = solver.solve(kepler, orbit(0.9), torch.tensor([0.0, 20.0], dtype=torch.float64),
                         rtol=1e-10, atol=1e-10, controller=HairerController(hmin=0.05))
    assert stuck.status == Status.STEP_TOO_SMALL
    assert "smallest step hmin=0.05" in stuck.message


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, tuple, float]] = []

    def step(self, t, y, h):
        self.calls.append(("step", t, tuple(y.shape), h))

    def accept(self, t, y, h):
        self.calls.append(("accept", t, tuple(y.shape), h))

    def reject(self, t, y, h):
        self.calls.append(("reject", t, tuple(y.shape), h))


def test_the_callback_sees_every_attempt_in_the_users_shape() -> None:
    rec = Recorder()
    y0 = torch.stack([orbit(0.5), orbit(0.9)])
    sol = RungeKutta(DOPRI5).solve(kepler, y0, torch.tensor([0.0, 10.0], dtype=torch.float64),
                                   rtol=1e-6, atol=1e-6, callback=rec)
    kinds = [c[0] for c in rec.calls]
    assert kinds.count("step") == sol.n_steps
    assert kinds.count("accept") == sol.n_accepted and kinds.count("reject") == sol.n_rejected
    assert all(c[2] == (2, 4) for c in rec.calls)
    assert kinds[::2] == ["step"] * sol.n_steps and "step" not in kinds[1::2]
    accepted = [c for c in rec.calls if c[0] == "accept"]
    assert accepted[0][1] == 0.0
    pairs = zip(accepted, accepted[1:], strict=False)
    assert all(b[1] == pytest.approx(a[1] + a[3]) for a, b in pairs)
    assert sol.backend == "tensor"  # a callback runs on tensors


def test_a_callback_with_only_some_methods_is_fine() -> None:
    seen = []

    class OnlyAccept:
        def accept(self, t, y, h):
            seen.append(t)

    sol = RungeKutta(DOPRI5).solve(decay, torch.ones(1, dtype=torch.float64), T,
                                   callback=OnlyAccept())
    assert len(seen) == sol.n_accepted
