"""Micro-benchmarks: our dopri5 beside scipy's RK45 and Hairer's DOPRI5 on Lotka-Volterra.

rtol = atol = 1e-6, float64, t in [0, 10]; batch 1 (state [2]) and batch 1000 (state
[1000, 2]). ``extra_info`` stores the attempted steps, so time per step is
``stats.mean / extra_info["n_steps"]``. Run with ``pytest tests/bench --benchmark-enable``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import ode, solve_ivp

from solvers.builtin import dopri5

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
    y0 = (
        torch.from_numpy(initial(batch)).reshape(2)
        if batch == 1
        else torch.from_numpy(initial(batch))
    )
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    sol = benchmark(solver.solve, lv_torch, y0, t, rtol=TOL, atol=TOL)
    benchmark.extra_info.update(
        n_steps=sol.n_steps,
        n_accepted=sol.n_accepted,
        n_rejected=sol.n_rejected,
        nfe=sol.nfe,
        batch=batch,
    )


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
