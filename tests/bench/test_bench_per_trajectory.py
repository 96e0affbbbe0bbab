"""``dopri5-pt`` beside the shared-step ``dopri5`` and torchode's ``to-dopri5``, interleaved.

The ``kepler-batch`` setting of ``scripts/kepler_batch.py``: 1000 Kepler orbits with their
eccentricities spread over [0, 0.9], rtol = atol = 1e-6, float64, output at 11 times on
[0, 20]. Each round solves once with each solver, in an order rotated every round, so a slow
spell of this shared machine hits them alike; the ratios are of medians from one run
(``extra_info["ratios"]``: ``dopri5-pt`` over each of the others, per solve; the goals are at
most 1.5 over ``dopri5`` and at most 0.5 over ``to-dopri5``). ``per_step_us`` is a solve's
median divided by its loop iterations (attempted steps for the shared loop). torchode is timed
when installed (the ``peers`` extra), else left out of the ratios. Run with
``python -m pytest tests/bench/test_bench_per_trajectory.py --benchmark-enable``.
"""

from __future__ import annotations

import torch

from harness.measure.timing import Interleaved
from problems import nonstiff
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5

TOL = 1e-6
ORBITS = 1000
ROUNDS = 15


def _torchode_solver():
    """``to-dopri5`` through its plugin, or None when torchode is not installed."""
    try:
        from harness.plugins import discover
        from harness.registry import make_solver

        discover()
        return make_solver("to-dopri5")
    except Exception:  # the peers extra is optional
        return None


def test_bench_per_trajectory_interleaved(benchmark) -> None:
    f = nonstiff.KeplerField()
    t = torch.as_tensor(nonstiff.KEPLER_T, dtype=torch.float64)
    eccs = torch.linspace(0.0, 0.9, ORBITS)
    y0 = torch.tensor([nonstiff.kepler_y0(float(e)) for e in eccs], dtype=torch.float64)
    solvers = {
        "dopri5-pt": RungeKutta(DOPRI5, name="dopri5-pt", per_trajectory=True),
        "dopri5": RungeKutta(DOPRI5, name="dopri5"),
    }
    tode = _torchode_solver()
    if tode is not None:
        solvers["to-dopri5"] = tode
    sols = {k: s.solve(f, y0, t, rtol=TOL, atol=TOL) for k, s in solvers.items()}
    for k, sol in sols.items():
        assert sol.status == "ok", (k, sol.message)
    # the same orbits (the global errors of the eccentric ones grow to ~1e-3 along 20 time units)
    assert torch.allclose(sols["dopri5-pt"].ys, sols["dopri5"].ys, rtol=0, atol=1e-2)
    timer = Interleaved(
        {k: (lambda s=s: s.solve(f, y0, t, rtol=TOL, atol=TOL)) for k, s in solvers.items()},
        warmup=2,
    )
    benchmark.pedantic(timer.round, rounds=ROUNDS + timer.warmup)
    med = timer.medians()
    steps = {k: sol.n_steps for k, sol in sols.items()}
    ratios = {f"dopri5-pt/{k}": round(med["dopri5-pt"] / med[k], 3) for k in med
              if k != "dopri5-pt"}
    benchmark.extra_info.update(
        batch=ORBITS,
        per_step_us={k: round(v / steps[k] * 1e6, 1) for k, v in med.items()},
        solve_ms={k: round(v * 1e3, 1) for k, v in med.items()},
        steps=steps,
        nfe={k: sol.nfe for k, sol in sols.items()},
        ratios=ratios,
        threads=torch.get_num_threads(),
    )
    print(f"\ndopri5-pt at {ORBITS} orbits, rtol {TOL:g}: "
          + "  ".join(f"{k} {v:.3f}" for k, v in ratios.items())
          + "  (" + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in med.items()) + ")")
