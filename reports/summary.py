"""Series labels and solver descriptions shared by the report's sections.

:func:`add_series` names one comparable set of cases (a solver, plus the device, dtype,
batch or hardware that varies within the run); :func:`method_text` describes a solver once, for the
report's solvers table. Which solver to pick is :mod:`reports.findings`' job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.format import is_missing
from reports.placement import backends, hardware_of, hardware_varies

VARIANT_COLUMNS = ("kind", "grad_mode", "device", "dtype", "batch")
"""Columns whose values, where they vary, tell two series of one solver apart; the
``hardware`` label comes after them (:func:`add_series`)."""


LABEL_SEP = " · "
"""Between a solver's name and its controller (or backend) in a label: ``dopri5 · pid``."""
UNRECORDED_CONTROLLER = "unrecorded"
"""The controller part of a label for a row without one, among rows of its solver that have
two or more (a run resumed across the column's introduction)."""
CURVE_COLUMNS = ("kind", "problem", "grad_mode", "device", "dtype", "batch")
"""The columns (with the hardware) that, with a label, make one curve of a figure: a label
whose curve would hold two backends is split by backend (:func:`solver_labels`)."""


def _strings(df: pd.DataFrame, column: str) -> pd.Series:
    """``df[column]`` as stripped strings, ``""`` where missing or absent."""
    if column not in df:
        return pd.Series("", index=df.index, dtype=object)
    return df[column].astype("string").str.strip().fillna("").astype(str)


def controllers(df: pd.DataFrame) -> pd.Series:
    """Each row's step-size controller, ``""`` where it has none (a solver with its own, a
    run written before the column)."""
    return _strings(df, "controller")


def solver_labels(df: pd.DataFrame) -> pd.Series:
    """Each row's solver as the report names it: ``dopri5``, or ``dopri5 · pid`` where the
    rows hold more than one controller for that solver (a row without one among them:
    ``dopri5 · unrecorded``), so two controllers are two series, never averaged together.

    Where rows of one label that would otherwise draw one curve (same problem, kind, mode,
    device, dtype, batch and hardware) ran on more than one backend (``backend``: ``host``,
    ``tensor``), the label takes the backend too (``dopri5 · tensor``): no curve mixes
    backends. A run without the columns gets the plain solver names."""
    solver = (df["solver"].astype("string").fillna("unknown").astype(str) if "solver" in df
              else pd.Series("unknown", index=df.index, dtype=object))
    labels = solver.copy()
    ctrl = controllers(df)
    named = ctrl != ""
    if named.any():
        counts = ctrl[named].groupby(solver[named]).nunique()
        split = solver.isin(counts[counts > 1].index)
        if split.any():
            labels[split] = (solver[split] + LABEL_SEP
                             + ctrl[split].replace("", UNRECORDED_CONTROLLER))
    backend = backends(df)
    timed = backend != ""
    if timed.any():
        keys = [labels[timed]] + [_strings(df, c)[timed] for c in CURVE_COLUMNS if c in df]
        keys.append(pd.Series(hardware_of(df).to_numpy(), index=df.index).astype(str)[timed])
        n = backend[timed].groupby(keys).transform("nunique")
        mixed = labels[timed][n > 1].unique()
        if len(mixed):
            split = labels.isin(mixed) & timed
            labels[split] = labels[split] + LABEL_SEP + backend[split]
    return labels


def add_series(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with a ``series`` column: the solver name, plus the values of
    :data:`VARIANT_COLUMNS` that vary within the run (``dopri5 [cuda, float32]``), so that
    one line in a figure is one comparable set of cases. Where the rows carry more than one
    ``hardware`` label, it is part of the name too (``dopri5 [node7: AMD EPYC 7B13, 16
    cores, 1 threads]``): times measured on two machines are two series, never one. The
    solver part is :func:`solver_labels`: ``dopri5 · pid [float32]`` where the rows hold two
    controllers of dopri5."""
    out = df.copy()
    varying = [c for c in VARIANT_COLUMNS if c in out and out[c].nunique(dropna=True) > 1]
    labels = solver_labels(out).astype("string") if len(out) else \
        out["solver"].astype("string").fillna("unknown")
    extra = out[varying].astype("string").fillna("?") if varying else None
    if hardware_varies(out):
        hardware = hardware_of(out).astype("string")
        extra = (hardware.to_frame("hardware") if extra is None
                 else extra.assign(hardware=hardware))
    if extra is not None:
        labels = labels + " [" + extra.agg(", ".join, axis=1) + "]"
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
