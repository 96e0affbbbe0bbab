"""Micro-benchmarks: our dopri5 beside scipy's RK45 and Hairer's DOPRI5 on Lotka-Volterra.

rtol = atol = 1e-6, float64, t in [0, 10]; batch 1 (state [2]) and batch 1000 (state
[1000, 2]). ``extra_info`` stores the attempted steps, so time per step is
``stats.mean / extra_info["n_steps"]``. Run with ``pytest tests/bench --benchmark-enable``.

torchdiffeq 0.2.5 and torchode (both DOPRI5, same tolerances; torchode with its
``IntegralController``) run beside ours when installed, for issue 5's ratios.

Two more rows put our per-step cost in context: ``rk4`` with 100 fixed steps (the fixed-step
path of the same engine), and one call of the right-hand side alone (``n_steps=1``, so its
"time per step" is the time per call). Our overhead beyond ``f`` is then
``(dopri5 per step - 6 * rhs call) / (6 * rhs call)`` (DOPRI5 with FSAL: 6 calls a step).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import ode, solve_ivp

from harness.measure.timing import Interleaved
from solvers.builtin import dopri5, rk4

TOL = 1e-6
T_END = 10.0


def lv_torch(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack((1.5 * x - x * v, -3.0 * v + x * v), dim=-1)


def lv_numpy(t, y):
    x, v = y[0::2], y[1::2]
    out = np.empty_like(y)
    out[0::2] = 1.5 * x - x * v
    out[1::2] = -3.0 * v + x * v
    return out


def initial(batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    y0 = np.ones((batch, 2))
    if batch > 1:
        y0 += 0.1 * rng.random((batch, 2))
    return y0


@pytest.mark.parametrize("batch", [1, 1000])
def test_bench_dopri5_torch(benchmark, batch: int) -> None:
    solver = dopri5()
    y0 = torch_initial(batch)
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    sol = benchmark(solver.solve, lv_torch, y0, t, rtol=TOL, atol=TOL)
    benchmark.extra_info.update(
        n_steps=sol.n_steps,
        n_accepted=sol.n_accepted,
        n_rejected=sol.n_rejected,
        nfe=sol.nfe,
        batch=batch,
    )


def torch_initial(batch: int) -> torch.Tensor:
    y0 = torch.from_numpy(initial(batch))
    return y0.reshape(2) if batch == 1 else y0


@pytest.mark.parametrize("batch", [1, 1000])
def test_bench_rk4_torch(benchmark, batch: int) -> None:
    solver = rk4()
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    sol = benchmark(solver.solve, lv_torch, torch_initial(batch), t, n_steps=100)
    benchmark.extra_info.update(n_steps=sol.n_steps, nfe=sol.nfe, batch=batch)


@pytest.mark.parametrize("grad", ["no_grad", "grad_enabled"])
@pytest.mark.parametrize("batch", [1, 1000])
def test_bench_rhs_call(benchmark, batch: int, grad: str) -> None:
    """One call of ``lv_torch``. ``no_grad`` is how the solvers call it when nothing requires a
    gradient; ``grad_enabled`` is a plain call from user code (autograd bookkeeping on)."""
    y0 = torch_initial(batch)
    with torch.set_grad_enabled(grad == "grad_enabled"):
        benchmark(lv_torch, 0.0, y0)
    benchmark.extra_info.update(n_steps=1, nfe=1, batch=batch)


@pytest.mark.parametrize("batch", [1, 1000])
def test_bench_scipy_solve_ivp_rk45(benchmark, batch: int) -> None:
    y0 = initial(batch).reshape(-1)
    sol = benchmark(solve_ivp, lv_numpy, (0.0, T_END), y0, method="RK45", rtol=TOL, atol=TOL)
    n_acc = len(sol.t) - 1
    attempts = (sol.nfev - 2) // 6
    benchmark.extra_info.update(
        n_steps=attempts, n_accepted=n_acc, n_rejected=attempts - n_acc, nfe=sol.nfev, batch=batch
    )


@pytest.mark.parametrize("batch", [1, 1000])
def test_bench_hairer_dopri5(benchmark, batch: int) -> None:
    y0 = initial(batch).reshape(-1)

    def run():
        r = ode(lv_numpy).set_integrator("dopri5", rtol=TOL, atol=TOL, nsteps=10**6)
        r.set_initial_value(y0, 0.0)
        r.integrate(T_END)
        return r._integrator.iwork[16:20].copy()

    nfcn, nstep, naccpt, nrejct = (int(x) for x in benchmark(run))
    benchmark.extra_info.update(
        n_steps=nstep, n_accepted=naccpt, n_rejected=nstep - naccpt, nfe=nfcn, batch=batch
    )


@pytest.mark.parametrize("batch", [1, 1000])
def test_bench_torchdiffeq_dopri5(benchmark, batch: int) -> None:
    tde = pytest.importorskip("torchdiffeq")
    y0 = torch_initial(batch)
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    n_steps, calls = _torchdiffeq_steps(tde, y0, t)
    benchmark(tde.odeint, lv_torch, y0, t, rtol=TOL, atol=TOL, method="dopri5")
    benchmark.extra_info.update(n_steps=n_steps, nfe=calls, batch=batch)


def _torchdiffeq_steps(tde, y0: torch.Tensor, t: torch.Tensor) -> tuple[int, int]:
    """torchdiffeq reports no counts: ``(attempted steps, calls)`` from counting ``f``'s calls
    (``f(t0)``, the initial-step probe, then 6 calls per attempted step, FSAL)."""
    calls = 0

    def counted(tt, y):
        nonlocal calls
        calls += 1
        return lv_torch(tt, y)

    tde.odeint(counted, y0, t, rtol=TOL, atol=TOL, method="dopri5")
    return (calls - 2) // 6, calls


def _torchode_dopri5(to, y0_rows: torch.Tensor, t: torch.Tensor):
    """torchode's Dopri5 with its integral controller, and the problem ``[B, 2]`` to ``t``."""
    term = to.ODETerm(lv_torch)
    controller = to.IntegralController(atol=TOL, rtol=TOL, term=term)
    solver = to.AutoDiffAdjoint(to.Dopri5(term=term), controller)
    problem = to.InitialValueProblem(y0=y0_rows, t_eval=t.repeat(y0_rows.shape[0], 1))
    return solver, problem


@pytest.mark.parametrize("batch", [1, 1000])
def test_bench_torchode_dopri5(benchmark, batch: int) -> None:
    to = pytest.importorskip("torchode")
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    solver, problem = _torchode_dopri5(to, torch_initial(batch).reshape(-1, 2), t)
    sol = benchmark(solver.solve, problem)
    if int(sol.status.max()) != 0:
        raise RuntimeError(f"torchode failed: status {sol.status.tolist()}")
    benchmark.extra_info.update(
        n_steps=int(sol.stats["n_steps"].max()),
        n_accepted=int(sol.stats["n_accepted"].max()),
        nfe=int(sol.stats["n_f_evals"].max()),
        batch=batch,
    )


ROUNDS = {1: 40, 1000: 30}


@pytest.mark.parametrize("batch", [1, 1000])
def test_bench_interleaved_ratios(benchmark, batch: int) -> None:
    """Issue 5's ratios from one interleaved run: each round times one solve of ours, of
    torchdiffeq and of torchode, and 100 RHS calls, in an order rotated every round, so a load
    spike on this shared machine hits them all alike. ``extra_info["per_step_us"]``: median time
    per attempted step (per call for ``rhs``); ``extra_info["ratios"]``: ours divided by each
    peer, and our overhead beyond the six RHS calls of a step divided by their cost."""
    tde = pytest.importorskip("torchdiffeq")
    to = pytest.importorskip("torchode")
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    y0 = torch_initial(batch)
    ours = dopri5()
    tode, problem = _torchode_dopri5(to, y0.reshape(-1, 2), t)

    def rhs_100():
        with torch.no_grad():
            for _ in range(100):
                lv_torch(0.0, y0)

    timer = Interleaved(
        {
            "dopri5": lambda: ours.solve(lv_torch, y0, t, rtol=TOL, atol=TOL),
            "torchdiffeq": lambda: tde.odeint(lv_torch, y0, t, rtol=TOL, atol=TOL, method="dopri5"),
            "torchode": lambda: tode.solve(problem),
            "rhs": rhs_100,
        },
        warmup=2,
    )
    steps = {
        "dopri5": ours.solve(lv_torch, y0, t, rtol=TOL, atol=TOL).n_steps,
        "torchdiffeq": _torchdiffeq_steps(tde, y0, t)[0],
        "torchode": int(tode.solve(problem).stats["n_steps"].max()),
        "rhs": 100,
    }
    benchmark.pedantic(timer.round, rounds=ROUNDS[batch] + timer.warmup)
    per = {k: v / steps[k] for k, v in timer.medians().items()}
    rhs6 = 6 * per["rhs"]
    benchmark.extra_info.update(
        batch=batch,
        per_step_us={k: round(v * 1e6, 1) for k, v in per.items()},
        steps=steps,
        ratios={
            "dopri5/torchdiffeq": round(per["dopri5"] / per["torchdiffeq"], 3),
            "dopri5/torchode": round(per["dopri5"] / per["torchode"], 3),
            "overhead/rhs": round((per["dopri5"] - rhs6) / rhs6, 3),
        },
    )
