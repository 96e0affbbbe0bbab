"""Peer solvers (solvers/peers/): torchdiffeq, torchode and Hairer's codes behind our contract.

They load through the ``odebench.solvers`` entry points (installed by ``pip install -e .``),
agree with our solvers and the references at tight tolerance, call the ``f`` they are given for
every evaluation (the harness's count equals the peer's own), and without the optional extra
the run still works and ``list`` says how to add them.
"""

from __future__ import annotations

import importlib.metadata as md
import math
import os
import subprocess
import sys

import pytest
import torch

from harness import plugins, registry
from harness.measure.nfe import CountingRHS
from solvers.base import GradMode, Status
from solvers.gradients import odeint
from solvers.rk import RungeKutta
from solvers.tableaux import RK4

F64 = torch.float64
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = {ep.name: ep.value for ep in md.entry_points(group=plugins.SOLVER_GROUP)}
needs_install = pytest.mark.skipif(
    "peers-hairer" not in EPS,
    reason="odebench's entry points are not installed: pip install -e .",
)

TDE_ADAPTIVE = ["tde-dopri5", "tde-dopri8", "tde-bosh3"]
TO = ["to-dopri5", "to-dopri5-pid", "to-tsit5"]
HAIRER = ["hairer-dopri5", "hairer-dop853"]
# error bound at rtol = atol = 1e-10 on kepler: 1e-7, except torchdiffeq's dopri8, whose
# interpolant between steps is of lower order than its step (5.9e-7 at output times, 1.0e-7
# at the end), and bosh3, a 3rd-order method (6.8e-7)
KEPLER_ERR = {"tde-dopri8": 1e-6, "tde-bosh3": 1e-6}


def _solver(name: str):
    if name.startswith("tde-"):
        pytest.importorskip("torchdiffeq")
        import solvers.peers.tde as mod
    elif name.startswith("to-"):
        pytest.importorskip("torchode")
        import solvers.peers.tode as mod
    else:
        import solvers.peers.hairer as mod
    return mod._factory(name if not name.startswith("hairer-") else name[7:])()


def lotka_volterra(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack((1.5 * x - x * v, -3.0 * v + x * v), dim=-1)


@needs_install
def test_entry_points_register_the_peers():
    assert EPS["peers-hairer"] == "solvers.peers.hairer"
    plugins.discover()
    expected = set(HAIRER)
    try:
        import torchdiffeq  # noqa: F401

        expected |= {*TDE_ADAPTIVE, "tde-rk4", "tde-euler"}
    except ImportError:
        pass
    try:
        import torchode  # noqa: F401

        expected |= set(TO)
    except ImportError:
        pass
    assert expected <= set(registry.SOLVERS.names())
    for name in expected:
        entry = registry.SOLVERS.get(name)
        solver = registry.make_solver(name)
        assert solver.name == name
        assert "solvers.peers" in entry.source


@pytest.mark.parametrize("name", TDE_ADAPTIVE + TO + HAIRER)
def test_peers_reach_the_exact_kepler_solution_and_agree_with_dopri5(name):
    solver = _solver(name)
    problem = registry.build_problem("kepler", F64, "cpu")
    f = CountingRHS(problem.f)
    with torch.no_grad():
        sol = solver.solve(f, problem.y0, problem.t, rtol=1e-10, atol=1e-10, max_steps=10**6)
        ours = registry.make_solver("dopri5").solve(
            problem.f, problem.y0, problem.t, rtol=1e-10, atol=1e-10, max_steps=10**6
        )
    assert sol.status == Status.OK, sol.message
    assert sol.ys.shape == (len(problem.t), *problem.y0.shape)
    ref = torch.from_numpy(problem.reference.ys)
    bound = KEPLER_ERR.get(name, 1e-7)
    assert (sol.ys - ref).abs().max() < bound
    assert (sol.ys - ours.ys).abs().max() < bound
    # the peer calls the f it is given for every evaluation, and its own count agrees
    assert sol.nfe == f.calls
    assert sol.n_steps > 0


def test_hairer_dopri5_counts_equal_ours_on_one_interval():
    """With t = [t0, t1] nothing forces a step, and our dopri5 is Hairer's step for step."""
    y0, t = torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)
    theirs = _solver("hairer-dopri5").solve(lotka_volterra, y0, t, rtol=1e-6, atol=1e-6)
    ours = registry.make_solver("dopri5").solve(lotka_volterra, y0, t, rtol=1e-6, atol=1e-6)
    assert (theirs.nfe, theirs.n_steps, theirs.n_accepted) == (
        ours.nfe,
        ours.n_steps,
        ours.n_accepted,
    )
    assert (theirs.ys - ours.ys).abs().max() < 1e-6


@pytest.mark.parametrize("n_steps", [7, 61])
def test_tde_euler_is_our_euler_with_exactly_n_steps(n_steps):
    solver = _solver("tde-euler")
    y0, t = torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)

    def decay(t, y):
        return -0.3 * y

    f = CountingRHS(decay)
    sol = solver.solve(f, y0, t, n_steps=n_steps)
    ours = registry.make_solver("euler").solve(decay, y0, t, n_steps=n_steps)
    assert sol.status == Status.OK, sol.message
    assert f.calls == sol.nfe == sol.n_steps == n_steps  # torchdiffeq's step_size gives 62
    assert torch.allclose(sol.ys, ours.ys, rtol=1e-12, atol=1e-12)


def test_tde_rk4_converges_at_fourth_order():
    solver = _solver("tde-rk4")
    y0, t = torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([0.0, 2.0], dtype=F64)
    ref = registry.make_solver("dopri5").solve(lotka_volterra, y0, t, rtol=1e-12, atol=1e-12)
    errs = [
        float((solver.solve(lotka_volterra, y0, t, n_steps=n).ys[-1] - ref.ys[-1]).abs().max())
        for n in (40, 80)
    ]
    assert 12 < errs[0] / errs[1] < 20


@pytest.mark.parametrize("n_steps", [40, 61, 200])
def test_tde_rk4_steps_on_our_rk4_grid(n_steps):
    """torchdiffeq's fixed-grid rk4 takes exactly our rk4's steps: the same grid, 4 calls each.
    The values differ at the methods' error level (its rk4 is Kutta's 3/8 rule, ours the
    classical tableau), and at output times between grid points (linear against Hermite)."""
    y0, t = torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)
    theirs_f, ours_f = CountingRHS(lotka_volterra), CountingRHS(lotka_volterra)
    theirs = _solver("tde-rk4").solve(theirs_f, y0, t, n_steps=n_steps)
    ours = RungeKutta(RK4, name="rk4", adaptive=False).solve(ours_f, y0, t, n_steps=n_steps)
    assert theirs.n_steps == ours.n_steps == n_steps
    assert theirs_f.calls == ours_f.calls == theirs.nfe == 4 * n_steps
    h = 10.0 / n_steps
    assert float((theirs.ys[-1] - ours.ys[-1]).abs().max()) < 50 * h**4


@pytest.mark.parametrize("name", ["to-dopri5", "to-tsit5"])
def test_torchode_time_broadcasts_against_a_batch(name):
    """torchode gives each trajectory its own clock: a time-dependent f gets t as a column
    ``[B, 1]`` it can broadcast against y (DETEST A3, y' = y cos t, from three starts)."""

    def f(t, y):
        return y * torch.cos(torch.as_tensor(t, dtype=y.dtype))

    y0 = torch.tensor([[1.0], [1e-3], [50.0]], dtype=F64)
    t = torch.linspace(0.0, 20.0, 5, dtype=F64)
    sol = _solver(name).solve(f, y0, t, rtol=1e-9, atol=1e-12)
    assert sol.status == Status.OK, sol.message
    exact = y0[None] * torch.exp(torch.sin(t))[:, None, None]
    assert torch.allclose(sol.ys, exact, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["tde-dopri5", "to-dopri5", "hairer-dopri5"])
def test_a_small_budget_ends_with_max_steps(name):
    solver = _solver(name)
    y0, t = torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)
    sol = solver.solve(lotka_volterra, y0, t, rtol=1e-10, atol=1e-10, max_steps=5)
    assert sol.status == Status.MAX_STEPS, sol.message
    assert sol.message and torch.isnan(sol.ys[-1]).all()


def test_torchode_batch_is_reshaped_and_matches_single_solves():
    solver = _solver("to-dopri5")
    y0 = torch.tensor([[1.0, 1.0], [2.0, 1.0], [1.0, 3.0]], dtype=F64)
    t = torch.linspace(0.0, 5.0, 6, dtype=F64)
    f = CountingRHS(lotka_volterra)
    sol = solver.solve(f, y0, t, rtol=1e-8, atol=1e-8)
    assert sol.status == Status.OK and sol.ys.shape == (6, 3, 2)
    assert sol.nfe == f.calls
    for b in range(3):
        one = solver.solve(lotka_volterra, y0[b], t, rtol=1e-8, atol=1e-8)
        assert (sol.ys[:, b] - one.ys).abs().max() < 1e-12  # per-trajectory steps


@pytest.mark.parametrize("mode", ["backprop", "adjoint", "adjoint-seminorm"])
def test_tde_gradients_agree_with_our_backprop(mode):
    solver = _solver("tde-dopri5")
    torch.manual_seed(0)
    field = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    field = field.to(F64)

    def f(t, y):
        return field(y)

    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    params = tuple(field.parameters())

    def grads(solver, mode, fc):
        y0 = torch.tensor([0.5, -0.3], dtype=F64, requires_grad=True)
        gs = odeint(solver, fc, y0, t, mode=mode, params=params, rtol=1e-9, atol=1e-9)
        g = torch.autograd.grad(gs.ys.square().sum(), (y0, *params))
        return torch.cat([x.reshape(-1) for x in g]), gs

    fc = CountingRHS(f)
    theirs, gs = grads(solver, mode, fc)
    ours, _ = grads(registry.make_solver("dopri5"), "backprop", f)
    assert ((theirs - ours).norm() / ours.norm()) < 1e-6
    assert gs.backward.done
    if mode != "backprop":  # every backward evaluation went through f, and was counted
        assert gs.backward.nfe > 0 and fc.calls == gs.solution.nfe + gs.backward.nfe


def test_torchode_backprop_and_refused_adjoint():
    solver = _solver("to-dopri5")
    y0 = torch.tensor([1.0, 1.0], dtype=F64, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 3, dtype=F64)
    gs = odeint(solver, lotka_volterra, y0, t, mode="backprop", rtol=1e-9, atol=1e-9)
    (g,) = torch.autograd.grad(gs.ys[-1].sum(), (y0,))
    ref = odeint(
        registry.make_solver("dopri5"), lotka_volterra, y0, t, mode="backprop", rtol=1e-9, atol=1e-9
    )
    (g_ref,) = torch.autograd.grad(ref.ys[-1].sum(), (y0,))
    assert (g - g_ref).abs().max() < 1e-6
    with pytest.raises(ValueError, match="does not support gradient mode 'adjoint'"):
        odeint(solver, lotka_volterra, y0, t, mode=GradMode.ADJOINT)


def test_hairer_refuses_gradients():
    with pytest.raises(ValueError, match="not a torch solver"):
        odeint(
            _solver("hairer-dop853"),
            lotka_volterra,
            torch.ones(2, dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            mode="backprop",
        )


@needs_install
def test_without_the_extra_list_says_how_to_add_the_peers():
    code = (
        "import sys\n"
        "sys.modules['torchdiffeq'] = None\n"
        "sys.modules['torchode'] = None\n"
        "from harness.cli import main\n"
        "sys.exit(main(['list']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "not installed: torchdiffeq, torchode" in out
    assert "pip install 'odebench[peers]'" in out
    assert "\ntde-" not in out and "\nto-" not in out
    assert "\nhairer-dopri5 " in out and "\ndopri5 " in out
    assert "could not load" not in proc.stderr


def test_dop853_reports_every_call():
    """scipy 1.17's DOP853 NFCN equals the calls it makes (checked: no per-step miscount)."""
    solver = _solver("hairer-dop853")
    f = CountingRHS(lotka_volterra)
    y0, t = torch.tensor([1.0, 1.0], dtype=F64), torch.linspace(0.0, 10.0, 11, dtype=F64)
    sol = solver.solve(f, y0, t, rtol=1e-6, atol=1e-6)
    assert sol.status == Status.OK and sol.nfe == f.calls
    assert not math.isnan(float(sol.ys[-1, 0]))
