"""What the gradient cases (``kind == "gradient"``) say: memory per step, NFE, error, time.

Pure pandas/numpy; :mod:`reports.gradient_section` turns it into figures and tables.

- Memory: ``mem_saved_bytes`` (bytes autograd saves for backward, each storage counted once,
  peak over forward and backward) against attempted forward steps, fitted as
  ``bytes ≈ a + b · steps`` by least squares in linear space (:func:`fit_bytes_per_step`).
  Backprop through the solver stores every step, so b is the memory per step; the adjoint
  (Chen et al., NeurIPS 2018, §2) stores only the end state, b ≈ 0; checkpointing stores
  segment boundaries and recomputes inside a segment, in between.
- NFE: forward and backward calls of f per mode; the seminorm's saving (Kidger, Chen, Lyons,
  "Hey, that's not an ODE", ICML 2021) is ``(bwd[adjoint] - bwd[adjoint-seminorm]) /
  bwd[adjoint]`` per case (:func:`seminorm_savings`), negative where it costs more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.format import is_missing
from reports.summary import solver_labels

MODE_ORDER = ("backprop", "adjoint", "adjoint-seminorm", "checkpoint")
BACKPROP, ADJOINT, SEMINORM = "backprop", "adjoint", "adjoint-seminorm"
LABEL_VARIANTS = ("device", "dtype", "batch")  # what tells two gradient ladders apart


def solve_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Plain solves: ``kind == "solve"``, or no kind at all (runs written before kinds)."""
    if "kind" not in df:
        return df
    return df[df["kind"].astype("string").fillna("solve") == "solve"]


def gradient_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The gradient cases (``kind == "gradient"``)."""
    if "kind" not in df:
        return df.iloc[0:0]
    return df[df["kind"].astype("string").fillna("") == "gradient"]


def modes_in_order(modes: Sequence[object]) -> list[str]:
    """The modes present, the four built-in ones first in :data:`MODE_ORDER`, others by name."""
    present = {str(m) for m in modes if not is_missing(m)}
    return [m for m in MODE_ORDER if m in present] + sorted(present - set(MODE_ORDER))


def add_labels(grad: pd.DataFrame) -> pd.DataFrame:
    """A copy of the gradient rows with ``label`` (solver, with its controller where the rows
    hold two for it, plus any device/dtype/batch that varies: one ladder of settings) and
    ``setting_key`` (the tolerance or step count, the same for the four modes of one case)."""
    out = grad.copy()
    varying = [c for c in LABEL_VARIANTS if c in out and out[c].nunique(dropna=True) > 1]
    labels = (solver_labels(out) if len(out) else out["solver"]).astype("string")
    if varying:
        labels = labels + " [" + out[varying].astype("string").fillna("?").agg(", ".join,
                                                                               axis=1) + "]"
    out["label"] = labels.astype(str)
    out["fixed"] = out["n_steps_requested"].notna()
    key = []
    for _, r in out.iterrows():
        if not is_missing(r["n_steps_requested"]):
            key.append(f"n={int(r['n_steps_requested'])}")
        elif not is_missing(r["rtol"]):
            atol = "" if is_missing(r["atol"]) or r["atol"] == r["rtol"] else \
                f", atol={float(r['atol']):.0e}"
            key.append(f"rtol={float(r['rtol']):.0e}{atol}")
        else:
            key.append("default")
    out["setting_key"] = key
    out["x_setting"] = np.where(out["fixed"], out["n_steps_requested"].astype(float),
                                out["rtol"].astype(float))
    return out


def cases(grad: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """``(label, setting, rows)`` per case (its modes), ladders by name, fixed steps by n
    ascending, tolerances loose to tight."""
    out = []
    for label, g in grad.groupby("label", sort=True):
        order = g.groupby("setting_key")["x_setting"].first()
        fixed = bool(g["fixed"].iloc[0])
        keys = order.sort_values(ascending=fixed).index
        for key in keys:
            out.append((str(label), str(key), g[g["setting_key"] == key]))
    return out


def by_mode(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """The row of each mode in one case (the first, should a case appear twice)."""
    return {str(m): g.iloc[0] for m, g in rows.groupby("grad_mode", sort=False)}


def is_ok(row: pd.Series | None) -> bool:
    return row is not None and str(row.get("status")) == "ok" and \
        str(row.get("status_backward") if not is_missing(row.get("status_backward"))
            else "ok") == "ok"


@dataclass(frozen=True)
class LinearFit:
    """``bytes ≈ a + b · steps`` over ``n`` points; NaN when fewer than two distinct steps."""

    a: float
    b: float
    n: int
    steps_min: float = float("nan")
    steps_max: float = float("nan")


def fit_bytes_per_step(steps: Sequence[float] | np.ndarray,
                       nbytes: Sequence[float] | np.ndarray) -> LinearFit:
    """Least-squares line through (steps, bytes) in linear space: intercept a [bytes] and
    slope b [bytes/step]. Non-finite points are ignored."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(nbytes, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"steps and bytes must have the same shape, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if np.unique(x).size < 2:
        return LinearFit(float("nan"), float("nan"), int(x.size),
                         float(x.min()) if x.size else float("nan"),
                         float(x.max()) if x.size else float("nan"))
    b, a = np.polyfit(x, y, 1)
    return LinearFit(float(a), float(b), int(x.size), float(x.min()), float(x.max()))


@dataclass(frozen=True)
class MemoryFit:
    label: str
    mode: str
    fixed: bool
    fit: LinearFit


def memory_fits(grad: pd.DataFrame) -> list[MemoryFit]:
    """One fit per (ladder, mode) over the ok rows with ``n_steps`` and ``mem_saved_bytes``."""
    ok = grad[[is_ok(r) for _, r in grad.iterrows()]] if len(grad) else grad
    ok = ok[ok["n_steps"].notna() & ok["mem_saved_bytes"].notna()]
    out = []
    for label, g in ok.groupby("label", sort=True):
        for mode in modes_in_order(g["grad_mode"].unique()):
            m = g[g["grad_mode"] == mode]
            fit = fit_bytes_per_step(m["n_steps"].astype(float), m["mem_saved_bytes"].astype(float))
            out.append(MemoryFit(str(label), mode, bool(m["fixed"].all()), fit))
    return out


@dataclass(frozen=True)
class Saving:
    """The seminorm's saving of backward NFE in one case."""

    label: str
    setting: str
    fixed: bool
    nfe_adjoint: int
    nfe_seminorm: int

    @property
    def saving(self) -> float:
        return (self.nfe_adjoint - self.nfe_seminorm) / self.nfe_adjoint


def seminorm_saving(nfe_adjoint: float, nfe_seminorm: float) -> float:
    """``(adjoint - seminorm) / adjoint``: 0.25 saves a quarter, negative costs more; NaN
    where the adjoint made no backward call."""
    if not nfe_adjoint or is_missing(nfe_adjoint) or is_missing(nfe_seminorm):
        return float("nan")
    return (float(nfe_adjoint) - float(nfe_seminorm)) / float(nfe_adjoint)


def seminorm_savings(grad: pd.DataFrame) -> list[Saving]:
    """Per case where both the adjoint and the seminorm adjoint succeeded with a backward
    NFE (and the adjoint's is positive)."""
    out = []
    for label, setting, rows in cases(grad):
        modes = by_mode(rows)
        adj, semi = modes.get(ADJOINT), modes.get(SEMINORM)
        if not (is_ok(adj) and is_ok(semi)):
            continue
        a, s = adj["nfe_backward"], semi["nfe_backward"]  # type: ignore[index]
        if is_missing(a) or is_missing(s) or int(a) <= 0:
            continue
        out.append(Saving(label, setting, bool(rows["fixed"].iloc[0]), int(a), int(s)))
    return out


def median_saving(savings: Sequence[Saving]) -> float:
    """Median of the per-case savings (NaN for none)."""
    vals = [s.saving for s in savings]
    return float(np.median(vals)) if vals else float("nan")


def ratio(num: object, den: object) -> float:
    """``num / den`` or NaN when either is missing or den is not positive."""
    if is_missing(num) or is_missing(den):
        return float("nan")
    d = float(den)  # type: ignore[arg-type]
    return float(num) / d if d > 0 else float("nan")  # type: ignore[arg-type]
