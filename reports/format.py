"""Number and setting formatting for people: 3 significant digits, times in µs/ms/s.

Every formatter takes what a DataFrame cell may hold (a float, an int, ``pd.NA``, ``None``,
NaN) and returns a short string; a missing value becomes :data:`MISSING`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

MISSING = "—"
UNKNOWN = "unknown"


def is_missing(value: Any) -> bool:
    """True for None, pd.NA, NaN and empty strings."""
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value == ""


def _float(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a number (then shown as its text)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def sig(value: Any, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits (``1.23e-07``, ``0.0123``, ``123``)."""
    if is_missing(value):
        return MISSING
    x = _float(value)
    if x is None:
        return str(value)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.{digits}g}"


def error(value: Any) -> str:
    """An error magnitude, always in scientific notation so a column lines up: ``1.23e-07``."""
    if is_missing(value):
        return MISSING
    x = _float(value)
    if x is None:
        return str(value)
    if x == 0.0:
        return "0"
    if not math.isfinite(x):
        return sig(x)
    return f"{x:.2e}"


def count(value: Any) -> str:
    """An integer count with thousands separators: ``12,345``."""
    if is_missing(value):
        return MISSING
    x = _float(value)
    if x is None or not math.isfinite(x):
        return str(value)
    return f"{int(x):,}"


def seconds(value: Any) -> str:
    """A short duration in the unit that keeps it readable: ``850 ns``, ``12.3 µs``, ``4.56 ms``,
    ``1.23 s``, ``2 min 05 s``, ``1 h 02 min``."""
    if is_missing(value):
        return MISSING
    s = _float(value)
    if s is None:
        return str(value)
    if not math.isfinite(s):
        return sig(s)
    if s < 0:
        return "-" + seconds(-s)
    if s == 0:
        return "0 s"
    if s < 1e-6:
        return f"{s * 1e9:.3g} ns"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        m, r = divmod(round(s), 60)
        return f"{m} min {r:02d} s"
    h, r = divmod(round(s), 3600)
    return f"{h} h {r // 60:02d} min"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from meta.json, or None when missing or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def duration(started: Any, ended: Any) -> str:
    """The time between two ISO strings, or ``unknown`` when either is missing."""
    t0, t1 = parse_time(started), parse_time(ended)
    if t0 is None or t1 is None:
        return UNKNOWN
    try:
        return seconds((t1 - t0).total_seconds())
    except TypeError:  # one is timezone-aware, the other naive
        return UNKNOWN


def setting(row: Mapping[str, Any]) -> str:
    """The setting of a case: ``rtol=1e-06, atol=1e-09`` (adaptive) or ``n=64`` (fixed steps),
    followed by the gradient mode for a gradient case (``n=64, grad adjoint``)."""
    parts = []
    if not is_missing(row.get("rtol")):
        parts.append(f"rtol={float(row['rtol']):.0e}")
    if not is_missing(row.get("atol")):
        parts.append(f"atol={float(row['atol']):.0e}")
    if not is_missing(row.get("n_steps_requested")):
        parts.append(f"n={int(row['n_steps_requested'])}")
    mode = row.get("grad_mode")
    if not is_missing(mode) and (str(mode) != "none" or row.get("kind") == "gradient"):
        parts.append(f"grad {mode}")
    return ", ".join(parts) if parts else MISSING


def text(value: Any) -> str:
    """Any meta value as text; missing becomes ``unknown``."""
    if is_missing(value):
        return UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else UNKNOWN
    return str(value)


NOISY_IQR_RATIO = 0.2
"""A median time whose interquartile range is wider than this fraction of it is marked
noisy: the repeats disagree by more than 20 %, so a ranking on that time alone is shaky."""


def iqr_ratio(median: Any, iqr: Any) -> float | None:
    """IQR / median of a timed case, or None when either is missing or the median is 0."""
    m, q = _float(median), _float(iqr)
    if m is None or q is None or is_missing(median) or is_missing(iqr):
        return None
    if not (math.isfinite(m) and math.isfinite(q)) or m <= 0:
        return None
    return q / m


def is_noisy(median: Any, iqr: Any) -> bool:
    """True when the case's time spread (IQR / median) exceeds :data:`NOISY_IQR_RATIO`."""
    r = iqr_ratio(median, iqr)
    return r is not None and r > NOISY_IQR_RATIO


TIMING_KEYS: tuple[tuple[str, str], ...] = (
    ("warmup", "warm-up solves before timing"),
    ("min_repeats", "at least this many timed repeats"),
    ("repeats", "timed repeats"),
    ("min_time", "repeat until at least this much time (s) was timed"),
    ("repeats_min_time_s", "repeat until at least this much time (s) was timed"),
    ("max_time", "stop repeating after this much time (s)"),
    ("case_timeout", "a case is stopped (status timeout) after this many seconds"),
)


def timing_settings(meta: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """How the run timed its cases, from meta.json's suite (or its ``settings``): ``(key,
    value, meaning)`` for each timing key it recorded, in :data:`TIMING_KEYS` order."""
    suite = meta.get("suite")
    suite = suite if isinstance(suite, Mapping) else {}
    settings = suite.get("settings")
    settings = settings if isinstance(settings, Mapping) else {}
    out = []
    for key, meaning in TIMING_KEYS:
        value = settings.get(key, suite.get(key))
        if value is None or isinstance(value, (Mapping, list, tuple)) or is_missing(value):
            continue
        out.append((key, text(value), meaning))
    return out
