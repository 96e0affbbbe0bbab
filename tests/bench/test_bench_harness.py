"""What the harness adds to a case: ``run_case`` against the bare solve it wraps.

``run_case`` on ``linear`` with ``rk4`` at 64 steps, with ``max_time = 0`` so that its one
solve (the accuracy solve) is also its timing sample, beside the same solve called directly.
``extra_info["what"]`` tells them apart; the difference of the two medians is the harness's
overhead per case (problem lookup, the counting wrapper, accuracy, the result row), measured
in one run.

A case in a worker process (``--isolate``) adds the hand-over of the case and its row
(``test_bench_worker_round_trip`` beside ``test_bench_harness_run_case``), and must not change
the case's own timing: ``test_bench_worker_timing_matches_in_process`` runs the same timed
case in the run's process and in a warm worker, alternately, and prints the ratio of the
medians of the rows' ``time_median_s`` (1 means the worker's figures are the same).
"""

from __future__ import annotations

import statistics

import torch

from harness import plugins, registry
from harness.runner import ProblemCache, run_case
from harness.suite import Case, Suite
from harness.worker import Worker, WorkerConfig

plugins.discover()
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


def test_bench_worker_round_trip(benchmark) -> None:
    with Worker(WorkerConfig()) as worker:
        worker.run(CASE, SUITE, timeout=60)  # start it, and warm it up
        row = benchmark(worker.run, CASE, SUITE, 60)
    assert row["status"] == "ok"
    benchmark.extra_info.update(what="run_case in a warm worker process (with the hand-over)")


def test_bench_worker_timing_matches_in_process(benchmark) -> None:
    timed = Suite("bench-timed", warmup=0, min_time=0.05, min_repeats=5, max_time=0.25)
    case = Case("lotka-volterra", "dopri5", rtol=1e-6, atol=1e-6)
    problems = ProblemCache()
    medians: dict[str, list[float]] = {"in process": [], "worker": []}
    with Worker(WorkerConfig()) as worker:
        worker.run(case, timed, timeout=60)

        def both() -> None:
            medians["in process"].append(run_case(case, problems, timed)["time_median_s"])
            medians["worker"].append(worker.run(case, timed, 60)["time_median_s"])

        benchmark.pedantic(both, rounds=15, iterations=1)
    ratio = statistics.median(medians["worker"]) / statistics.median(medians["in process"])
    per = {k: statistics.median(v) * 1e3 for k, v in medians.items()}
    print(f"\ncase time_median_s, median of 15 alternating runs: in process "
          f"{per['in process']:.3f} ms, worker {per['worker']:.3f} ms, ratio {ratio:.3f}")
    benchmark.extra_info.update(what="the case's own timing, in process vs in a worker",
                                worker_over_in_process=ratio)
