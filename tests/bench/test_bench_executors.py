"""Executors side by side: a sweep of cheap accuracy cases (``linear`` x ``rk4`` x step counts
x batch sizes x dtypes; one solve each, no timed repeats) on ``serial``, ``process --jobs 2``
and a 2-worker ``LocalCluster``, through ``python -m harness run`` as a user runs it.

For each: throughput (cases per second of the whole execution, the executor's start included)
and the overhead per case, ``(slots x elapsed - sum of the cases' own wall_s) / cases``: the time
a worker slot spends on anything but running a case (handing it over, writing its row, idling
for lack of work, starting up). The figures in the README come from::

    python -m pytest tests/bench/test_bench_executors.py --benchmark-enable -s

``ODEBENCH_BENCH_CASES`` (default 10000) sizes the sweep.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.cli import main

N_CASES = int(os.environ.get("ODEBENCH_BENCH_CASES", "10000"))
STEPS = 50


def _suite(tmp: Path) -> Path:
    """``N_CASES`` cases: steps 1..50, float32 and float64, batch sizes 1, 2, ..."""
    n_batch = max(1, N_CASES // (2 * STEPS))
    path = tmp / "sweep.toml"
    path.write_text(
        'name = "sweep"\nproblems = ["linear"]\nsolvers = ["rk4"]\n'
        f"steps = {list(range(1, STEPS + 1))}\nbatch = {list(range(1, n_batch + 1))}\n"
        'dtypes = ["float32", "float64"]\nwarmup = 0\nmin_repeats = 1\nmin_time = 0\n'
        "max_time = 0\n")
    return path


EXECUTORS = {
    "serial": (1, []),
    "process-2": (2, ["--executor", "process", "--jobs", "2"]),
    "dask-local-2": (2, ["--executor", "dask", "--jobs", "2"]),
    # one case per task: what the chunking saves
    "dask-local-2-chunk1": (2, ["--executor", "dask", "--jobs", "2", "--chunk", "1"]),
}


@pytest.mark.parametrize("name", list(EXECUTORS))
def test_executor_throughput(benchmark, tmp_path, name):
    slots, flags = EXECUTORS[name]
    suite = _suite(tmp_path)
    out = tmp_path / "run"

    def sweep() -> None:
        assert main(["run", "--suite", str(suite), "--out", str(out), "--quiet", "--no-report",
                     *flags]) == 0

    benchmark.pedantic(sweep, rounds=1, iterations=1)
    meta = json.loads((out / "meta.json").read_text())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == meta["n_cases"] and all(r["status"] == "ok" for r in rows)
    ex = meta["execution"]
    busy = sum(r["wall_s"] for r in rows)
    n = len(rows)
    benchmark.extra_info.update(
        executor=name, cases=n, slots=slots, elapsed_s=ex["elapsed_s"],
        startup_s=ex["startup_s"], cases_per_s=n / ex["elapsed_s"],
        case_ms=1e3 * busy / n,
        overhead_ms=1e3 * (slots * ex["elapsed_s"] - busy) / n,
        overhead_after_start_ms=1e3 * (slots * (ex["elapsed_s"] - ex["startup_s"]) - busy) / n)
