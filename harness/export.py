"""Export a run's timings in another tool's format, so its viewers and comparers can read them.

One format so far, ``pytest-benchmark``: the JSON file that ``pytest --benchmark-save`` writes
and ``pytest-benchmark compare`` reads (``machine_info``, ``commit_info``, ``datetime``,
``version`` and one entry of ``benchmarks`` per case, its ``stats`` computed from the case's
raw wall-time samples by pytest-benchmark's own definitions). Only cases that ended ok and
have raw samples are exported (a failed case's time says where it stopped, not how fast it is);
only the finite, positive real numbers of a case's samples are kept, and a case with none is
left out; the others are counted by reason.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.compare import valid_samples
from harness.results import open_run

PYTEST_BENCHMARK_FORMAT_VERSION = "5.1.0"
"""The pytest-benchmark version whose saved-file layout we write (unchanged since 3.1)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    written: int
    left_out: dict[str, int]  # why -> how many cases
    warnings: list[str] = field(default_factory=list)


def _quartiles(xs: Sequence[float]) -> tuple[float, float]:
    """(Q1, Q3) of sorted ``xs`` as pytest-benchmark's ``Stats`` defines them (so that our
    export reads as if pytest-benchmark had measured it): even n, the medians of the lower and
    upper halves; odd n, a weighted mean of the two order statistics around n/4 and 3n/4
    (Wikipedia's "Quartile, method 3"); n = 1, the one value."""
    n = len(xs)
    if n == 1:
        return xs[0], xs[0]
    if n % 2 == 0:
        return statistics.median(xs[: n // 2]), statistics.median(xs[n // 2:])
    m = n // 4
    if n % 4 == 1:  # n = 4m + 1
        return 0.25 * xs[m - 1] + 0.75 * xs[m], 0.75 * xs[3 * m] + 0.25 * xs[3 * m + 1]
    # n = 4m + 3
    return 0.75 * xs[m] + 0.25 * xs[m + 1], 0.25 * xs[3 * m + 1] + 0.75 * xs[3 * m + 2]


def sample_stats(samples: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` of a list of seconds per call (one iteration a round),
    by the definitions of its ``pytest_benchmark.stats.Stats``: the mean and the sample
    standard deviation of :mod:`statistics`; Q1 and Q3 as :func:`_quartiles`; ``iqr`` Q3 - Q1;
    ``iqr_outliers`` the samples outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR]; ``stddev_outliers`` those
    outside [mean - stddev, mean + stddev]; ``outliers`` "stddev_outliers;iqr_outliers";
    ``ld15iqr`` the smallest sample at or above Q1 - 1.5 IQR and ``hd15iqr`` the largest at or
    below Q3 + 1.5 IQR. ``samples`` must be non-empty."""
    data = [float(x) for x in samples]
    xs = sorted(data)
    n = len(xs)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if n > 1 else 0
    q1, q3 = _quartiles(xs)
    iqr = q3 - q1
    lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_out = sum(x < lo or x > hi for x in data)
    std_out = sum(x < mean - stddev or x > mean + stddev for x in data)
    if n == 1:
        ld, hd = data[0], data[0]
    else:
        ld = xs[bisect.bisect_left(xs, lo)]
        hd = xs[bisect.bisect_right(xs, hi) - 1]
    total = sum(data)
    return {
        "min": xs[0], "max": xs[-1], "mean": mean, "stddev": stddev, "rounds": n,
        "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_out, "stddev_outliers": std_out,
        "outliers": f"{std_out};{iqr_out}",
        "ld15iqr": ld, "hd15iqr": hd,
        "ops": n / total if total else 0, "total": total,
        "data": data, "iterations": 1,
    }


def _value(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v


def _setting(row: pd.Series) -> str:
    steps = _value(row.get("n_steps_requested"))
    if steps is not None:
        return f"n={steps}"
    rtol = _value(row.get("rtol"))
    return f"rtol={rtol:g}" if rtol is not None else ""


def _machine_info(meta: dict[str, Any]) -> dict[str, Any]:
    env = meta.get("environment") or {}
    platform = str(env.get("platform") or "")
    cuda = env.get("cuda") if isinstance(env.get("cuda"), dict) else None
    return {
        "node": env.get("hostname"),
        "processor": env.get("cpu"),
        "machine": next((p for p in platform.split("-") if p in ("x86_64", "aarch64", "arm64")),
                        ""),
        "python_implementation": "CPython",
        "python_version": env.get("python"),
        "release": "",
        "system": platform.split("-")[0] if platform else "",
        "cpu": {"brand_raw": env.get("cpu"), "count": env.get("n_cores")},
        "torch": env.get("torch"),
        "torch_threads": env.get("torch_threads"),
        "cuda_device": cuda.get("device_name") if cuda else None,
    }


def _commit_info(meta: dict[str, Any]) -> dict[str, Any]:
    commit = str((meta.get("environment") or {}).get("git_commit") or "unknown")
    dirty = commit.endswith("-dirty")
    return {"id": commit.removesuffix("-dirty"), "time": None, "author_time": None,
            "dirty": dirty, "project": "odebench", "branch": "(unknown)"}


NOT_OK = "not ok"
NO_SAMPLES = "without raw samples"
NO_VALID_SAMPLES = "without a valid sample (finite, positive seconds)"


def to_pytest_benchmark(meta: dict[str, Any], df: pd.DataFrame
                        ) -> tuple[dict[str, Any], dict[str, int]]:
    """(the pytest-benchmark document, how many cases were left out and why)."""
    suite = meta.get("suite") or {}
    benchmarks = []
    left_out = {NOT_OK: 0, NO_SAMPLES: 0, NO_VALID_SAMPLES: 0}
    for _, row in df.iterrows():
        raw = row.get("time_samples_s")
        if str(row.get("status")) != "ok":
            left_out[NOT_OK] += 1
            continue
        samples = valid_samples(raw)  # finite, positive reals only
        if not samples:
            left_out[NO_SAMPLES if samples is None or not len(raw) else NO_VALID_SAMPLES] += 1
            continue
        params = {k: _value(row.get(k)) for k in ("problem", "solver", "grad_mode", "device",
                                                  "dtype", "batch")}
        params["setting"] = _setting(row)
        case_id = str(row["case_id"])
        benchmarks.append({
            "group": str(row.get("problem")),
            "name": case_id,
            "fullname": f"odebench::{case_id}",
            "params": params,
            "param": "-".join(str(v) for v in params.values()),
            "extra_info": {"status": _value(row.get("status")), "nfe": _value(row.get("nfe")),
                           "n_steps": _value(row.get("n_steps")),
                           "err_max": _value(row.get("err_max"))},
            "options": {"disable_gc": True, "timer": "perf_counter",
                        "min_rounds": suite.get("min_repeats"),
                        "max_time": suite.get("max_time"), "min_time": suite.get("min_time"),
                        "warmup": suite.get("warmup")},
            "stats": sample_stats(samples),
        })
    doc = {
        "machine_info": _machine_info(meta),
        "commit_info": _commit_info(meta),
        "benchmarks": benchmarks,
        "datetime": meta.get("started_at"),
        "version": PYTEST_BENCHMARK_FORMAT_VERSION,
    }
    return doc, {why: k for why, k in left_out.items() if k}


Exporter = Callable[[dict[str, Any], pd.DataFrame], tuple[dict[str, Any], dict[str, int]]]
FORMATS: dict[str, Exporter] = {
    "pytest-benchmark": to_pytest_benchmark,
}


def out_problem(path: Path) -> str | None:
    """Why the file ``path`` cannot be written (a folder above it is a file, a folder is not
    writable, it is a folder itself), or None when it can (its missing folders are made)."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder, not a file"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} exists and is not writable"
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        return f"{parent} is a file, not a folder, so {path} cannot be made under it"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the folder {parent} is not writable"
    return None


def out_path(run_dir: Path, fmt: str, out: Path | None = None) -> Path:
    """Where :func:`export` writes: ``out``, else ``RUN_DIR/<fmt>.json``."""
    return Path(out) if out is not None else Path(run_dir) / f"{fmt}.json"


def export(run_dir: Path, fmt: str, out: Path | None = None) -> ExportResult:
    """Write ``run_dir``'s timings as ``fmt`` (a key of :data:`FORMATS`) to ``out``
    (default: ``RUN_DIR/<fmt>.json``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    run = open_run(run_dir)
    doc, left_out = FORMATS[fmt](run.meta, run.df)
    path = out_path(run_dir, fmt, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    return ExportResult(path, len(doc["benchmarks"]), left_out, run.warnings)
