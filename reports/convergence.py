"""Observed order of convergence of fixed-step solvers.

A method of order p has global error ``err ≈ C h^p`` for small step ``h`` (Hairer, Nørsett,
Wanner, *Solving ODEs I*, §II.3), so on a log-log plot the errors of a step-doubling ladder
lie on a line of slope p. :func:`fit_order` is the least-squares slope of ``log err``
against ``log h``.

The line only holds in the asymptotic range, so :func:`asymptotic_mask` keeps the points
with ``ROUNDOFF_FACTOR * eps(dtype) < err_max <= PRE_ASYMPTOTIC_MAX``:

- above ``PRE_ASYMPTOTIC_MAX`` (0.1, absolute) the step is too large for the leading error
  term to dominate (or the solution has wandered off altogether);
- below ``ROUNDOFF_FACTOR * eps`` (1000 ulps: 2.2e-13 in float64, 1.2e-4 in float32) the
  error is round-off, which grows as h shrinks and would flatten the slope.

Both thresholds are absolute, which assumes solutions of order one; they are constants here
so a reader of the report can see exactly which points entered a fit (filled markers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PRE_ASYMPTOTIC_MAX = 1e-1
ROUNDOFF_FACTOR = 1e3
_EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps),
        "float16": float(np.finfo(np.float16).eps), "bfloat16": 2.0**-7}


def loglog_line(x: Sequence[float] | np.ndarray,
                y: Sequence[float] | np.ndarray) -> tuple[float, float, int]:
    """The least-squares line ``log10 y = b + a log10 x`` over the points where both are
    finite and positive: ``(a, b, n_points)``; a and b are NaN with fewer than two distinct
    x. The one fit behind an order of convergence and a tolerance proportionality."""
    x_arr = np.asarray(x, dtype=float)
    y_arr = np.asarray(y, dtype=float)
    if x_arr.shape != y_arr.shape:
        raise ValueError(f"x and y must have the same shape, got {x_arr.shape} and "
                         f"{y_arr.shape}")
    keep = np.isfinite(x_arr) & np.isfinite(y_arr) & (x_arr > 0) & (y_arr > 0)
    lx, ly = np.log10(x_arr[keep]), np.log10(y_arr[keep])
    if np.unique(lx).size < 2:
        return float("nan"), float("nan"), int(lx.size)
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept), int(lx.size)


def fit_order(h: Sequence[float] | np.ndarray, err: Sequence[float] | np.ndarray) -> float:
    """Least-squares slope of ``log10(err)`` against ``log10(h)``: the observed order.

    Points with a non-finite or non-positive ``h`` or ``err`` are ignored. Returns NaN when
    fewer than two distinct step sizes remain. Select the asymptotic range first
    (:func:`asymptotic_mask`); this function fits whatever it is given.
    """
    if np.shape(h) != np.shape(err):
        raise ValueError(f"h and err must have the same shape, got {np.shape(h)} and "
                         f"{np.shape(err)}")
    return loglog_line(h, err)[0]


def roundoff_floor(dtype: str | None) -> float:
    """The error below which a point counts as round-off for ``dtype`` (float64 if unknown)."""
    return ROUNDOFF_FACTOR * _EPS.get(str(dtype), _EPS["float64"])


def asymptotic_mask(err: Sequence[float] | np.ndarray, dtype: str | None = "float64") -> np.ndarray:
    """Which errors lie in the asymptotic range ``(roundoff_floor(dtype), PRE_ASYMPTOTIC_MAX]``."""
    e = np.asarray(err, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(e) & (e > roundoff_floor(dtype)) & (e <= PRE_ASYMPTOTIC_MAX)


@dataclass(frozen=True)
class OrderFit:
    """One solver's convergence on one problem: its points and the fitted order."""

    problem: str
    series: str  # the solver (plus the variant, where a run has several devices/dtypes)
    theory: int | None  # the solver's classical order, when known
    h: np.ndarray  # step sizes of the ok points (or 1/n when the time span is unknown)
    err: np.ndarray  # err_max of those points
    used: np.ndarray  # bool: which points entered the fit
    fitted: float  # NaN when fewer than two points are in range
    h_is_step: bool  # True: h is (t1 - t0)/n; False: h is 1/n (time span unknown)
    floor: float  # the round-off floor used for this series' dtype

    @property
    def n_used(self) -> int:
        return int(self.used.sum())


def time_span(problem_meta: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """``(t0, t1)`` from a problem's meta entry, or None when missing or malformed."""
    if not problem_meta:
        return None
    span = problem_meta.get("t_span")
    try:
        t0, t1 = float(span[0]), float(span[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    if not np.isfinite(t0) or not np.isfinite(t1) or t0 == t1:
        return None
    return t0, t1


def fit_series(problem: str, series: str, rows: pd.DataFrame,
               span: tuple[float, float] | None) -> OrderFit:
    """Fit one fixed-step solver's ok rows (``n_steps_requested`` and ``err_max`` set)."""
    ok = rows[(rows["status"] == "ok") & rows["n_steps_requested"].notna()
              & rows["err_max"].notna()]
    n = ok["n_steps_requested"].astype(float).to_numpy()
    err = ok["err_max"].astype(float).to_numpy()
    length = abs(span[1] - span[0]) if span else 1.0
    h = length / n
    order_idx = np.argsort(h)
    h, err = h[order_idx], err[order_idx]
    dtypes = ok["dtype"].dropna().unique()
    dtype = str(dtypes[0]) if len(dtypes) == 1 else "float64"
    used = asymptotic_mask(err, dtype)
    orders = rows["order"].dropna().unique()
    theory = int(orders[0]) if len(orders) == 1 else None
    return OrderFit(problem=problem, series=series, theory=theory, h=h, err=err, used=used,
                    fitted=fit_order(h[used], err[used]), h_is_step=span is not None,
                    floor=roundoff_floor(dtype))
