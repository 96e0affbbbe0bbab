"""The per problem x solver summary a person picks a solver from.

For every (problem, solver) pair: how many cases succeeded, the best error reached and what
it cost, and the cheapest case reaching each target accuracy in :data:`TARGET_DIGITS`.

"Cheapest to reach d digits" is the smallest harness-counted NFE among the pair's ok cases
whose ``scd`` (significant correct digits at the end point, IVP test set definition) is at
least d. It is what this sweep observed, not an interpolation: a solver whose tolerance
ladder skips past the target pays for the finer setting. Per problem and target the minimum
is marked, ties included; a target no case reached shows as not reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports.format import is_missing

TARGET_DIGITS: tuple[float, ...] = (4.0, 8.0)
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


def method_text(solver: str, rows: pd.DataFrame, solvers_meta: Mapping[str, Any]) -> str:
    """``explicit RK, adaptive · order 5`` from meta["solvers"], falling back to the columns."""
    info = solvers_meta.get(solver) if isinstance(solvers_meta, Mapping) else None
    info = info if isinstance(info, Mapping) else {}
    kind = info.get("kind")
    if is_missing(kind):
        kinds = rows["solver_kind"].dropna().unique()
        kind = str(kinds[0]) if len(kinds) else None
    order = info.get("order")
    if is_missing(order):
        orders = rows["order"].dropna().unique()
        order = int(orders[0]) if len(orders) else None
    adaptive = info.get("adaptive")
    if adaptive is None:
        vals = rows["adaptive"].dropna().unique()
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
    """One (problem, solver) line of the summary table."""

    problem: str
    series: str
    method: str
    n_ok: int
    n_total: int
    best_err: float = float("nan")
    nfe_at_best: int | None = None
    time_at_best: float = float("nan")
    time_per_step: float = float("nan")
    nfe_to_target: dict[float, int | None] = field(default_factory=dict)
    cheapest: set[float] = field(default_factory=set)


def _first_solver(rows: pd.DataFrame) -> str:
    names = rows["solver"].dropna().unique()
    return str(names[0]) if len(names) else "unknown"


def summarize(df: pd.DataFrame, solvers_meta: Mapping[str, Any] | None = None,
              targets: tuple[float, ...] = TARGET_DIGITS) -> list[SummaryRow]:
    """One :class:`SummaryRow` per (problem, series), problems and series in name order.

    ``df`` must have the ``series`` column of :func:`add_series`.
    """
    solvers_meta = solvers_meta or {}
    out: list[SummaryRow] = []
    for problem, prob_rows in df.groupby("problem", sort=True, dropna=False):
        block: list[SummaryRow] = []
        for series, rows in prob_rows.groupby("series", sort=True):
            ok = ok_rows(rows)
            row = SummaryRow(problem=str(problem), series=str(series),
                             method=method_text(_first_solver(rows), rows, solvers_meta),
                             n_ok=len(ok), n_total=len(rows))
            with_err = ok[ok["err_max"].notna()]
            if len(with_err):
                best = with_err.loc[with_err["err_max"].astype(float).idxmin()]
                row.best_err = float(best["err_max"])
                row.nfe_at_best = None if is_missing(best["nfe"]) else int(best["nfe"])
                row.time_at_best = (float("nan") if is_missing(best["time_median_s"])
                                    else float(best["time_median_s"]))
            per_step = (ok["time_median_s"].astype(float)
                        / ok["n_steps"].astype(float).where(ok["n_steps"].astype(float) > 0))
            per_step = per_step.dropna()
            if len(per_step):
                row.time_per_step = float(np.median(per_step))
            for d in targets:
                hit = ok[(ok["scd"].astype(float) >= d) & ok["nfe"].notna()]
                row.nfe_to_target[d] = int(hit["nfe"].min()) if len(hit) else None
            block.append(row)
        for d in targets:
            reached = [r.nfe_to_target[d] for r in block if r.nfe_to_target[d] is not None]
            if reached:
                least = min(reached)
                for r in block:
                    if r.nfe_to_target[d] == least:
                        r.cheapest.add(d)
        out.extend(block)
    return out
