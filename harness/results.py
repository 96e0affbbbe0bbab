"""The results store: one JSON line per finished case, and a loader with one documented schema.

``runs/<run-id>/results.jsonl`` gets a line per case as the case ends (flushed and fsynced), so an
interrupted run keeps what it finished and ``--resume`` can skip it. ``load_run`` returns the run's
``meta.json`` and a pandas DataFrame whose columns are :data:`COLUMNS` (always all of them, in this
order; extra columns a later version writes come after). Scripts outside the project may rely on
these names and units.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_FILE = "results.jsonl"
META_FILE = "meta.json"
CSV_FILE = "results.csv"
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # pandas dtype: "string", "float64", "Int64", "boolean"
    unit: str
    meaning: str


COLUMNS: tuple[Column, ...] = (
    Column("case_id", "string", "", "id derived from the case's settings; same case, same id"),
    Column("kind", "string", "", "solve | gradient | train"),
    Column("problem", "string", "", "registered problem name"),
    Column("solver", "string", "", "registered solver name"),
    Column("solver_kind", "string", "", "the solver's kind, e.g. 'explicit RK, adaptive'"),
    Column("order", "Int64", "", "classical order of the solver's method"),
    Column("adaptive", "boolean", "", "whether the solver chooses its own steps"),
    Column("grad_mode", "string", "", "none for a plain solve"),
    Column("device", "string", "", "cpu, cuda, cuda:1, ..."),
    Column("dtype", "string", "", "float32 | float64"),
    Column("batch", "Int64", "", "number of trajectories solved at once"),
    Column("rtol", "float64", "", "relative tolerance (adaptive solvers)"),
    Column("atol", "float64", "", "absolute tolerance (adaptive solvers)"),
    Column("n_steps_requested", "Int64", "", "number of fixed steps (fixed-step solvers)"),
    Column("status", "string", "",
           "ok | max_steps | step_too_small | nonfinite | stiff | timeout | error"),
    Column("message", "string", "", "what went wrong, empty when ok"),
    Column("nfe", "Int64", "calls", "calls of f counted by the harness, forward"),
    Column("nfe_solver", "Int64", "calls", "calls of f as the solver counts them"),
    Column("nfe_backward", "Int64", "calls", "calls of f (or its VJP) in the backward pass"),
    Column("n_steps", "Int64", "steps", "attempted steps"),
    Column("n_accepted", "Int64", "steps", "accepted steps"),
    Column("n_rejected", "Int64", "steps", "rejected steps"),
    Column("t_reached", "float64", "time", "how far the solve got"),
    Column("err_max", "float64", "", "max absolute error over all output times and components"),
    Column("err_final", "float64", "", "max absolute error at the final time"),
    Column("err_rms_scaled", "float64", "", "RMS of err/(atol + rtol|ref|), problem's scales"),
    Column("scd", "float64", "digits", "significant correct digits at the end point (relative)"),
    Column("mescd", "float64", "digits", "mixed abs/rel significant correct digits, end point"),
    Column("ref_kind", "string", "", "exact | published | computed"),
    Column("ref_provenance", "string", "", "where the reference comes from"),
    Column("time_median_s", "float64", "s", "median wall time of one solve"),
    Column("time_iqr_s", "float64", "s", "interquartile range of the wall time"),
    Column("time_min_s", "float64", "s", "minimum wall time"),
    Column("cpu_median_s", "float64", "s", "median process CPU time of one solve"),
    Column("repeats", "Int64", "", "number of timed repeats"),
    Column("time_samples_s", "object", "s", "the raw wall-time samples"),
    Column("mem_saved_bytes", "Int64", "bytes", "bytes autograd saves for backward"),
    Column("mem_cuda_peak_bytes", "Int64", "bytes", "peak CUDA memory of the case"),
    Column("rss_peak_bytes", "Int64", "bytes", "peak resident set size of the process"),
    Column("rss_growth_bytes", "Int64", "bytes", "how much the case raised the process's peak "
           "resident set size (0 when it stayed below an earlier peak)"),
    Column("grad_rel_err", "float64", "", "relative error of (dL/dy0, dL/dtheta) against the "
           "reference gradient"),
    Column("grad_rel_err_y0", "float64", "", "relative error of dL/dy0 alone"),
    Column("grad_rel_err_theta", "float64", "", "relative error of dL/dtheta alone"),
    Column("grad_rel_diff_backprop", "float64", "", "relative difference of the gradient from "
           "the backprop gradient of the same solver and setting (mode disagreement)"),
    Column("grad_ref_provenance", "string", "", "how the reference gradient was computed"),
    Column("loss", "float64", "", "the loss the gradient is of"),
    Column("n_params", "Int64", "", "number of parameters of f differentiated"),
    Column("n_steps_backward", "Int64", "steps", "attempted steps of the backward solves"),
    Column("n_rejected_backward", "Int64", "steps", "rejected steps of the backward solves"),
    Column("status_backward", "string", "", "status of the backward pass"),
    Column("time_forward_median_s", "float64", "s", "median wall time of the forward pass"),
    Column("time_backward_median_s", "float64", "s", "median wall time of the backward pass"),
    Column("time_forward_iqr_s", "float64", "s", "interquartile range of the forward time"),
    Column("time_backward_iqr_s", "float64", "s", "interquartile range of the backward time"),
    Column("started_at", "string", "", "ISO time the case started"),
    Column("wall_s", "float64", "s", "wall time of the whole case, measurement included"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null so any JSON reader can load the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class ResultsWriter:
    """Appends one row per case to results.jsonl, flushed to disk at once."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / RESULTS_FILE
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, row: dict[str, Any]) -> None:
        unknown = [k for k in row if k not in COLUMN_NAMES]
        if unknown:
            raise KeyError(f"result row has columns outside the schema: {unknown}")
        self._fh.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of results.jsonl; a last line cut off by a crash is skipped."""
    path = Path(run_dir) / RESULTS_FILE
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with every schema column, in schema order, with the schema's dtypes."""
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col.name not in df.columns:
            df[col.name] = None
        if col.dtype == "object":
            continue
        series = df[col.name]
        if col.dtype == "float64":
            df[col.name] = pd.to_numeric(series, errors="coerce").astype("float64")
        elif col.dtype == "Int64":
            df[col.name] = pd.to_numeric(series, errors="coerce").astype("Int64")
        elif col.dtype == "boolean":
            df[col.name] = series.astype("boolean")
        else:
            df[col.name] = series.astype("string")
    extra = [c for c in df.columns if c not in COLUMN_NAMES]
    return df[list(COLUMN_NAMES) + extra]


def load_meta(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / META_FILE
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """Load a run folder: (meta, results DataFrame with the documented schema)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    if not (run_dir / RESULTS_FILE).exists() and not (run_dir / META_FILE).exists():
        raise FileNotFoundError(
            f"{run_dir} is not a run folder: it has neither {RESULTS_FILE} nor {META_FILE}"
        )
    return load_meta(run_dir), to_frame(read_rows(run_dir))


def write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    path = Path(run_dir) / META_FILE
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2, default=str)
    os.replace(tmp, path)


def write_csv(run_dir: Path, df: pd.DataFrame) -> Path:
    path = Path(run_dir) / CSV_FILE
    df.drop(columns=["time_samples_s"], errors="ignore").to_csv(path, index=False)
    return path


def schema_markdown() -> str:
    """The schema as a Markdown table (for the README and `harness show --schema`)."""
    lines = ["| column | unit | meaning |", "|---|---|---|"]
    for c in COLUMNS:
        lines.append(f"| `{c.name}` | {c.unit} | {c.meaning} |")
    return "\n".join(lines)
