"""The harness counts calls of f itself; every built-in solver's own count must agree with it."""

from __future__ import annotations

import pytest

from harness import plugins, registry
from harness.runner import ProblemCache, run_case
from harness.suite import Case, Suite

plugins.discover()
BUILTIN_SOLVERS = [e.name for e in registry.SOLVERS.entries() if e.source.startswith("built-in")]
SUITE = Suite("t", warmup=0, min_time=0.0, min_repeats=1, max_time=0.0)


@pytest.mark.parametrize("solver", BUILTIN_SOLVERS)
@pytest.mark.parametrize("problem", ["lotka-volterra", "robertson"])
def test_harness_and_solver_count_the_same_calls(solver, problem):
    adaptive = registry.make_solver(solver).adaptive
    case = Case(problem, solver, rtol=1e-6 if adaptive else None,
                atol=1e-6 if adaptive else None, n_steps=None if adaptive else 64,
                max_steps=300)
    row = run_case(case, ProblemCache(), SUITE)
    assert row["status"] in {"ok", "max_steps", "nonfinite"}, row["message"]
    assert row["nfe"] > 0
    assert row["nfe"] == row["nfe_solver"]


def test_every_builtin_solver_is_covered():
    assert {"euler", "rk4", "dopri5", "scipy-rk45", "scipy-dop853", "scipy-radau", "scipy-bdf",
            "scipy-lsoda"} <= set(BUILTIN_SOLVERS)
