"""Dense output: the state inside an accepted step, so output times never force the step grid.

Three interpolants, all evaluated for several output times of one step at once (one fused
matrix product), on states flattened to rows ``[1, N]``:

- :func:`continuous_extension`: a tableau's own continuous RK extension
  ``y(t + theta h) = y + h sum_i b_i(theta) k_i`` (HNW I, II.6); for DOPRI5, 4th order;
- :func:`cubic_hermite`: the cubic Hermite interpolant through ``(y0, f0)`` and ``(y1, f1)``,
  3rd order (HNW I, II.6, eq. 6.7 with its ``f1``), for methods without their own;
- :func:`linear`: the chord, 1st order, enough for Euler.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from solvers.tableaux import ButcherTableau


def _matrix(rows: Sequence[Sequence[float]], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


_DENSE_FLOATS: dict[int, tuple[ButcherTableau, tuple[tuple[float, ...], ...]]] = {}


def _dense_floats(tableau: ButcherTableau) -> tuple[tuple[float, ...], ...]:
    """The tableau's dense-output polynomial coefficients as floats, converted once (its
    exact ``Fraction``s cost a Python division each per conversion)."""
    hit = _DENSE_FLOATS.get(id(tableau))
    if hit is None or hit[0] is not tableau:
        if tableau.dense is None:
            raise ValueError(f"tableau {tableau.name!r} has no dense-output coefficients")
        hit = (tableau, tuple(tuple(float(c) for c in row) for row in tableau.dense))
        _DENSE_FLOATS[id(tableau)] = hit
    return hit[1]


def dense_weights(tableau: ButcherTableau, theta: float) -> list[float]:
    """``b_i(theta)`` for each stage: :meth:`ButcherTableau.dense_weights` with the same float
    arithmetic, term by term, on coefficients converted once."""
    out = []
    for row in _dense_floats(tableau):
        acc, p = 0.0, theta
        for coef in row:
            acc += coef * p
            p *= theta
        out.append(acc)
    return out


def continuous_extension(
    tableau: ButcherTableau,
    y0: torch.Tensor,
    stages: torch.Tensor,
    h: float,
    thetas: Sequence[float],
) -> torch.Tensor:
    """``[len(thetas), N]`` states from the stages ``[s, N]`` of the step ``h`` from ``y0``."""
    w = _matrix([dense_weights(tableau, th) for th in thetas], y0)
    return torch.addmm(y0, w, stages, alpha=h)


def hermite_weights(theta: float, h: float) -> list[float]:
    """Weights of ``(y0, y1, f0, f1)`` in the cubic Hermite interpolant at ``theta``."""
    t2, t3 = theta * theta, theta * theta * theta
    h01 = -2.0 * t3 + 3.0 * t2
    h10 = t3 - 2.0 * t2 + theta
    h11 = t3 - t2
    return [1.0 - h01, h01, h * h10, h * h11]


def cubic_hermite(
    y0: torch.Tensor,
    f0: torch.Tensor,
    y1: torch.Tensor,
    f1: torch.Tensor,
    h: float,
    thetas: Sequence[float],
) -> torch.Tensor:
    """``[len(thetas), N]`` states of the cubic Hermite interpolant on ``[t0, t0 + h]``."""
    w = _matrix([hermite_weights(th, h) for th in thetas], y0)
    return torch.mm(w, torch.cat((y0, y1, f0, f1)))


def linear(y0: torch.Tensor, y1: torch.Tensor, thetas: Sequence[float]) -> torch.Tensor:
    """``[len(thetas), N]`` points on the chord from ``y0`` to ``y1``."""
    w = _matrix([[th] for th in thetas], y0)
    return torch.lerp(y0, y1, w)
