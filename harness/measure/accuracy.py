"""Error metrics against a reference, defined in one place.

For a solution ``y`` and reference ``r`` at the output times (NaN reference entries are not
scored), with the problem's error scales ``atol`` and ``rtol``:

- ``err_max``: ``max |y - r|`` over all scored times and components;
- ``err_final``: the same at the final time only;
- ``err_rms_scaled``: ``sqrt(mean((|y - r| / (atol + rtol |r|))^2))`` over all scored entries,
  the norm adaptive codes control (Hairer, Nørsett & Wanner, *Solving ODEs I*, eq. II.4.11);
  below 1 means the solution is inside the tolerance the problem asks for;
- ``scd``: significant correct digits at the end point, ``-log10(max_i |y_i - r_i| / |r_i|)``
  (Mazzia & Magherini, *Test Set for IVP Solvers*, Univ. of Bari, release 2.4, section on
  "Reporting"); components whose reference is zero (or underflows below the dtype's tiny)
  use the absolute error instead;
- ``mescd``: mixed significant correct digits, ``-log10(max_i |y_i - r_i| / (atol/rtol + |r_i|))``
  (same source). The test set takes ``atol/rtol`` from the solver's tolerances; we take the
  problem's own scales so every case of one problem is measured against the same yardstick.

A solution with NaN or inf where the reference is scored gets NaN for every metric: a failed
solve has no accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Accuracy:
    err_max: float
    err_final: float
    err_rms_scaled: float
    scd: float
    mescd: float

    @classmethod
    def failed(cls) -> Accuracy:
        nan = float("nan")
        return cls(nan, nan, nan, nan, nan)


def _digits(x: float) -> float:
    """-log10(x), with exact agreement reported as the float64 limit rather than inf."""
    if not math.isfinite(x):
        return float("nan")
    return -math.log10(max(x, np.finfo(np.float64).eps / 2))


def measure_accuracy(
    ys: np.ndarray,
    ref: np.ndarray,
    *,
    atol: float,
    rtol: float,
    scd_components: Sequence[int] | None = None,
) -> Accuracy:
    """Compare ``ys`` (shape ``[len(t), *batch, n]``) with ``ref`` (broadcastable to it).

    ``scd_components``: the components ``scd`` and ``mescd`` are taken over, where the test set
    scores only some (PLEI: the 14 positions); default all.
    """
    ys = np.asarray(ys, dtype=np.float64)
    ref = np.broadcast_to(np.asarray(ref, dtype=np.float64), ys.shape)
    scored = ~np.isnan(ref)
    if not scored.any():
        raise ValueError("the reference has no values to score against")
    if not np.isfinite(ys[scored]).all():
        return Accuracy.failed()
    err = np.abs(ys - ref)
    err_max = float(err[scored].max())
    last = scored[-1]
    err_final = float(err[-1][last].max()) if last.any() else float("nan")
    scale = atol + rtol * np.abs(ref)
    err_rms_scaled = float(np.sqrt(np.mean((err[scored] / scale[scored]) ** 2)))

    # scd / mescd at the last time that has reference values (normally the end point).
    rows = np.flatnonzero(scored.reshape(scored.shape[0], -1).any(axis=1))
    i = rows[-1]
    last_err, last_ref, last_scored = err[i], np.abs(ref[i]), scored[i]
    if scd_components is not None:
        idx = list(scd_components)
        last_err, last_ref, last_scored = (
            last_err[..., idx], last_ref[..., idx], last_scored[..., idx]
        )
    e, r = last_err[last_scored], last_ref[last_scored]
    tiny = np.finfo(np.float64).tiny
    m = r > tiny
    rel = np.where(m, e / np.where(m, r, 1.0), e)
    scd = _digits(float(rel.max()))
    mescd = _digits(float((e / (atol / rtol + r)).max()))
    return Accuracy(err_max, err_final, err_rms_scaled, scd, mescd)
