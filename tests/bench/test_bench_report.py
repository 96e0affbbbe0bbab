"""How long a large run takes to read and to report: 10,000 cases.

What is measured: the wall time of (a) :func:`harness.results.open_run` reading the run
folder (three rounds) and (b) :func:`reports.build.build_report` writing its whole HTML
report, figures included (one round: the headline analysis of :mod:`reports.findings`, the
work-precision, tolerance and convergence figures of :mod:`reports.figures`, drawn in a pool
of processes where enough cores are free, and every per-case table). Not measured: building
the run folder, which is done once per session, before the clock starts.

The run folder is synthetic, in a temporary directory: meta.json and results.jsonl written
by :mod:`harness.results`' own writers (``write_meta``, ``ResultsWriter``), with rows shaped
like the runner's: 30 problems x 11 solvers (7 adaptive over 8 tolerances, 4 fixed-step over
8 step counts), on two devices and two dtypes, cut to 10,000 cases, about 1 in 50 of them
failed. With benchmarks disabled (the normal test run) each benchmark runs once, on a folder
of 300 cases: a check that such a folder reads and reports, not a timing. The 10,000-case
figures come from ``python -m pytest tests/bench/test_bench_report.py --benchmark-enable``
(on 2 cores, about a minute and a half for the report; it took over eight minutes before
the figures and the analysis were made cheaper).

Also here: the report drawn with its figures in a pool of processes is byte for byte the
report drawn serially (on tests/fixtures/run_small, with the pool forced on).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from pathlib import Path

import pytest

from harness import results
from harness.results import ResultsWriter, open_run, write_meta
from harness.suite import Suite

N_CASES = 10_000
PROBLEMS = [f"problem-{k:02d}" for k in range(30)]
ADAPTIVE = {"dopri5": 5, "bosh3": 3, "dopri8": 8, "scipy-rk45": 5, "scipy-dop853": 8,
            "scipy-radau": 5, "tde-dopri5": 5}
FIXED = {"euler": 1, "rk4": 4, "tde-euler": 1, "tde-rk4": 4}
RTOL = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
STEPS = (16, 32, 64, 128, 256, 512, 1024, 2048)
FAILURES = ("max_steps", "step_too_small", "nonfinite", "timeout")


def _row(rng: random.Random, problem: str, solver: str, device: str, dtype: str,
         rtol: float | None, n: int | None) -> dict:
    adaptive = rtol is not None
    order = ADAPTIVE[solver] if adaptive else FIXED[solver]
    setting = f"rtol={rtol:.0e},atol={rtol:.0e}" if adaptive else f"n={n}"
    case_id = f"solve/{problem}/{solver}/{setting}/none/{dtype}/{device}/b1"
    steps = int(30 * (1e-3 / rtol) ** (1 / order)) if adaptive else n
    err = (10 * rtol * rng.uniform(0.3, 3.0) if adaptive
           else min(50.0, 20.0 * (1.0 / n) ** order * 20**order))
    failed = rng.random() < 0.02
    samples = [rng.uniform(1e-3, 2e-3) * steps / 100 for _ in range(3)]
    row = {
        "case_id": case_id, "kind": "solve", "problem": problem, "solver": solver,
        "grad_mode": "none", "device": device, "dtype": dtype, "batch": 1,
        "rtol": rtol, "atol": rtol, "n_steps_requested": n,
        "solver_kind": "explicit RK, adaptive" if adaptive else "explicit RK, fixed step",
        "order": order, "adaptive": adaptive, "ref_kind": "exact",
        "ref_provenance": f"exact: the closed form of {problem}",
        "status": "ok", "message": "", "nfe": 6 * steps + 2, "nfe_solver": 6 * steps + 2,
        "n_steps": steps, "n_accepted": steps, "n_rejected": -1 if "scipy" in solver else 2,
        "t_reached": 10.0, "err_max": err, "err_final": err / 2,
        "err_rms_scaled": err / 1e-6, "scd": -math.log10(err), "mescd": -math.log10(err),
        "time_median_s": sorted(samples)[1], "time_iqr_s": max(samples) - min(samples),
        "time_min_s": min(samples), "cpu_median_s": sorted(samples)[1], "repeats": 3,
        "time_samples_s": samples, "mem_cuda_peak_bytes": 0 if device == "cpu" else 2**20,
        "rss_peak_bytes": 300 * 2**20, "rss_growth_bytes": 0,
        "started_at": "2026-01-01T00:00:00Z", "wall_s": sum(samples) * 2,
    }
    if failed:
        status = rng.choice(FAILURES)
        row.update(status=status, message=f"{status}: stopped at t = 3.5", t_reached=3.5,
                   err_max=None, err_final=None, err_rms_scaled=None, scd=None, mescd=None)
    return row


def build_run(run_dir: Path, n_cases: int = N_CASES, seed: int = 0) -> Path:
    """A run folder of ``n_cases`` synthetic cases, written with harness.results' writers."""
    rng = random.Random(seed)
    rows = []
    for problem in PROBLEMS:
        for device in ("cpu", "cuda"):
            for dtype in ("float64", "float32"):
                rows += [_row(rng, problem, s, device, dtype, r, None)
                         for s in ADAPTIVE for r in RTOL]
                rows += [_row(rng, problem, s, device, dtype, None, n)
                         for s in FIXED for n in STEPS]
    rows = rows[:n_cases]
    run_dir.mkdir(parents=True, exist_ok=True)
    suite = Suite("bench", rtol=RTOL, steps=STEPS, devices=("cpu", "cuda"),
                  dtypes=("float64", "float32"))
    meta = {
        "schema_version": results.SCHEMA_VERSION, "run_id": run_dir.name,
        "command": "python -m harness run (synthetic)", "started_at": "2026-01-01T00:00:00Z",
        "ended_at": "2026-01-01T01:00:00Z", "complete": True, "interrupted": False,
        "odebench_version": "0.1.0", "seed": 0,
        "suite": {**dataclasses.asdict(suite), "settings": {"rtol": list(RTOL),
                                                            "steps": list(STEPS)}},
        "n_cases": len(rows),
        "environment": {"python": "3.11", "torch": "2", "n_cores": 2, "cuda": None},
        "problems": {p: {"tags": ["nonstiff", "exact"], "dim": 4, "t_span": [0.0, 10.0],
                         "n_times": 11, "ref_kind": "exact", "atol": 1e-6, "rtol": 1e-6,
                         "description": f"synthetic {p}", "citation": "", "source": "built-in"}
                     for p in PROBLEMS},
        "solvers": {s: {"kind": "explicit RK", "order": o, "adaptive": s in ADAPTIVE,
                        "source": "built-in"} for s, o in {**ADAPTIVE, **FIXED}.items()},
    }
    write_meta(run_dir, meta)
    # the writer fsyncs each row (a crash loses at most the last); that is not what is measured
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", lambda fd: None)
        with ResultsWriter(run_dir) as writer:
            for row in rows:
                writer.write(row)
    return run_dir


# With benchmarks disabled (the normal test run) each benchmark runs once, on a smaller folder:
# a 10,000-case report takes minutes on 2 cores
SMOKE_CASES = 300


@pytest.fixture(scope="module")
def run_of(tmp_path_factory):
    built: dict[int, Path] = {}

    def run_of(n_cases: int) -> Path:
        if n_cases not in built:
            built[n_cases] = build_run(tmp_path_factory.mktemp("bench-report") / "run", n_cases)
        return built[n_cases]

    return run_of


def _size(benchmark) -> int:
    return SMOKE_CASES if benchmark.disabled else N_CASES


def test_bench_open_run_10k(benchmark, run_of) -> None:
    n = _size(benchmark)
    run = benchmark.pedantic(open_run, args=(run_of(n),), rounds=3, iterations=1)
    assert len(run.df) == n and not run.warnings
    benchmark.extra_info.update(what=f"open_run of {n} cases")


def test_bench_build_report_10k(benchmark, run_of, tmp_path) -> None:
    from reports.build import build_report

    n = _size(benchmark)
    out = benchmark.pedantic(build_report, args=(run_of(n), tmp_path / "report.html"),
                             rounds=1, iterations=1)
    assert out.stat().st_size > 0
    benchmark.extra_info.update(what=f"build_report of {n} cases")


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("name", ["run_small", "run_cmp_a"])
def test_parallel_figures_give_the_serial_report(name: str, monkeypatch) -> None:
    from reports import build

    run = open_run(FIXTURES / name)

    def render() -> str:
        return build.render_report(run.meta, run.df, fallback_id=name, warnings=run.warnings,
                                   run_dir=FIXTURES / name)

    monkeypatch.setattr(build, "PARALLEL_MIN_FIGURES", 10**9)
    serial = render()
    monkeypatch.setattr(build, "PARALLEL_MIN_FIGURES", 1)
    monkeypatch.setenv("ODEBENCH_REPORT_WORKERS", "2")
    used: list[int] = []
    fill = build._Figures.fill
    monkeypatch.setattr(build._Figures, "fill",
                        lambda self, page: (used.append(len(self.jobs)), fill(self, page))[1])
    parallel = render()
    assert used and used[-1] > 0  # the figures really went to the pool
    assert "odebench-figure" not in parallel
    assert parallel == serial
