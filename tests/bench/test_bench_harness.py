"""What the harness adds to a case: ``run_case`` against the bare solve it wraps.

``run_case`` on ``linear`` with ``rk4`` at 64 steps, with ``max_time = 0`` so that its one
solve (the accuracy solve) is also its timing sample, beside the same solve called directly.
``extra_info["what"]`` tells them apart; the difference of the two medians is the harness's
overhead per case (problem lookup, the counting wrapper, accuracy, the result row), measured
in one run.
"""

from __future__ import annotations

import torch

from harness import registry
from harness.runner import ProblemCache, run_case
from harness.suite import Case, Suite

registry.discover()
SUITE = Suite("bench", warmup=0, min_time=0.0, min_repeats=1, max_time=0.0)
CASE = Case("linear", "rk4", n_steps=64)


def test_bench_harness_run_case(benchmark) -> None:
    problems = ProblemCache()
    row = benchmark(run_case, CASE, problems, SUITE)
    assert row["status"] == "ok"
    benchmark.extra_info.update(what="run_case (one solve)")


def test_bench_bare_solve(benchmark) -> None:
    problem = ProblemCache().get("linear", "float64", "cpu")
    solver = registry.make_solver("rk4")

    def solve():
        with torch.no_grad():
            return solver.solve(problem.f, problem.y0, problem.t, n_steps=64)

    sol = benchmark(solve)
    assert sol.status == "ok"
    benchmark.extra_info.update(what="the bare solve")
