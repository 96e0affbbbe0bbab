"""The per problem x solver summary a person picks a solver from.

For every (problem, series) pair: how many cases succeeded, the best accuracy reached and
what it cost, and what it costs to reach each target accuracy in :data:`TARGET_DIGITS`.

The error is the report's one measure for plain solves, ``E = 10**-scd`` (scd: significant
correct digits at the end point, IVP Test Set definition). The cost of a target is
:func:`reports.findings.cost_at` on the pair's work-precision curve: interpolated between the
two ladder points that bracket the target, never extrapolated, so a solver whose ladder
skips past the target is not charged for the finer setting. Per problem and target the
least NFE and the least time are marked, ties included; a target no case reached shows as
not reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports.findings import DIGIT_LEVELS, Cost, cost_at, curves
from reports.format import is_missing

TARGET_DIGITS: tuple[float, ...] = DIGIT_LEVELS
VARIANT_COLUMNS = ("kind", "grad_mode", "device", "dtype", "batch")


def add_series(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with a ``series`` column: the solver name, plus the values of
    :data:`VARIANT_COLUMNS` that vary within the run (``dopri5 [cuda, float32]``), so that
    one line in a figure is one comparable set of cases."""
    out = df.copy()
    varying = [c for c in VARIANT_COLUMNS if c in out and out[c].nunique(dropna=True) > 1]
    labels = out["solver"].astype("string").fillna("unknown")
    if varying:
        extra = out[varying].astype("string").fillna("?").agg(", ".join, axis=1)
        labels = labels + " [" + extra + "]"
    out["series"] = labels.astype(str)
    return out


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose status is ``ok``."""
    return df[df["status"].fillna("") == "ok"]


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    """``rows[name]``, empty when the run has no such column."""
    return rows[name] if name in rows else pd.Series([], dtype=object)


def method_text(solver: str, rows: pd.DataFrame, solvers_meta: Mapping[str, Any]) -> str:
    """``explicit RK, adaptive · order 5`` from meta["solvers"], falling back to the columns."""
    info = solvers_meta.get(solver) if isinstance(solvers_meta, Mapping) else None
    info = info if isinstance(info, Mapping) else {}
    kind = info.get("kind")
    if is_missing(kind):
        kinds = _column(rows, "solver_kind").dropna().unique()
        kind = str(kinds[0]) if len(kinds) else None
    order = info.get("order")
    if is_missing(order):
        orders = _column(rows, "order").dropna().unique()
        order = int(orders[0]) if len(orders) else None
    adaptive = info.get("adaptive")
    if adaptive is None:
        vals = _column(rows, "adaptive").dropna().unique()
        adaptive = bool(vals[0]) if len(vals) == 1 else None
    parts = [str(kind) if kind else "unknown kind"]
    says_steps = bool(kind) and any(w in str(kind) for w in ("adaptive", "fixed"))
    if adaptive is not None and not says_steps:
        parts.append("adaptive" if adaptive else "fixed step")
    if order is not None:
        parts.append(f"order {order}")
    return " · ".join(parts)


@dataclass
class SummaryRow:
    """One (problem, series) line of the summary table."""

    problem: str
    series: str
    method: str
    n_ok: int
    n_total: int
    best_err: float = float("nan")  # least E = 10^-scd over the ok cases
    nfe_at_best: int | None = None
    time_at_best: float = float("nan")
    time_per_step: float = float("nan")
    nfe_to_target: dict[float, int | None] = field(default_factory=dict)  # rounded cost
    cheapest: set[float] = field(default_factory=set)  # targets at which its NFE is least
    cost_to_target: dict[float, Cost | None] = field(default_factory=dict)
    fastest: set[float] = field(default_factory=set)  # targets at which its time is least


def _first_solver(rows: pd.DataFrame) -> str:
    names = rows["solver"].dropna().unique()
    return str(names[0]) if len(names) else "unknown"


def _floats(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows:
        return pd.Series(np.nan, index=rows.index, dtype=float)
    return pd.to_numeric(rows[column].astype("object"), errors="coerce").astype(float)


def _mark(block: list[SummaryRow], d: float, value: str, marks: str) -> None:
    costs = [getattr(r.cost_to_target[d], value) for r in block
             if r.cost_to_target.get(d) is not None]
    if not costs:
        return
    least = min(costs)
    for r in block:
        c = r.cost_to_target.get(d)
        if c is not None and np.isclose(getattr(c, value), least, rtol=1e-12, atol=0.0):
            getattr(r, marks).add(d)


def summarize(df: pd.DataFrame, solvers_meta: Mapping[str, Any] | None = None,
              targets: tuple[float, ...] = TARGET_DIGITS) -> list[SummaryRow]:
    """One :class:`SummaryRow` per (problem, series), problems and series in name order.

    ``df`` must have the ``series`` column of :func:`add_series`.
    """
    solvers_meta = solvers_meta or {}
    by_pair = {(c.problem, c.series): c for c in curves(df)}
    out: list[SummaryRow] = []
    for problem, prob_rows in df.groupby("problem", sort=True, dropna=False):
        block: list[SummaryRow] = []
        for series, rows in prob_rows.groupby("series", sort=True):
            ok = ok_rows(rows)
            row = SummaryRow(problem=str(problem), series=str(series),
                             method=method_text(_first_solver(rows), rows, solvers_meta),
                             n_ok=len(ok), n_total=len(rows))
            scd = _floats(ok, "scd")
            scd = scd[np.isfinite(scd)]
            if len(scd):
                best = ok.loc[scd.idxmax()]
                row.best_err = float(10.0 ** -scd.max())
                row.nfe_at_best = None if is_missing(best["nfe"]) else int(best["nfe"])
                row.time_at_best = (float("nan") if is_missing(best["time_median_s"])
                                    else float(best["time_median_s"]))
            steps = _floats(ok, "n_steps")
            per_step = (_floats(ok, "time_median_s") / steps.where(steps > 0)).dropna()
            if len(per_step):
                row.time_per_step = float(np.median(per_step))
            curve = by_pair.get((str(problem), str(series)))
            for d in targets:
                cost = cost_at(curve, d) if curve is not None else None
                row.cost_to_target[d] = cost
                row.nfe_to_target[d] = None if cost is None else int(round(cost.nfe))
            block.append(row)
        for d in targets:
            _mark(block, d, "nfe", "cheapest")
            _mark(block, d, "time", "fastest")
        out.extend(block)
    return out
