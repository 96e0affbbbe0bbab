"""Output collection: the state at the requested times, from the accepted steps.

:class:`OutputCollector` assigns each requested time to the accepted step that reaches it (at
its end, within rounding, or strictly inside); :class:`DenseOutput` evaluates the step's
interpolant inside (:mod:`solvers.dense`), so output times never force the step grid.
:func:`fixed_grid` and :func:`check_step_grid` are the fixed-step grids.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import torch

from solvers import dense
from solvers.tableaux import ButcherTableau


class Interpolation(enum.StrEnum):
    """The dense output inside a step: the tableau's own continuous extension, the cubic
    Hermite interpolant (3rd order, needs ``f`` at both ends), or the chord (1st order)."""

    AUTO = "auto"  # asked for only: continuous if the tableau has one, else linear for order 1
    # and Hermite otherwise
    CONTINUOUS = "continuous"
    HERMITE = "hermite"
    LINEAR = "linear"


def check_step_grid(step_grid: list[float], t0: float, t1: float) -> list[float]:
    """Validate an explicit fixed-step grid: from ``t0`` to ``t1``, strictly monotone."""
    grid = [float(x) for x in step_grid]
    if len(grid) < 2 or grid[0] != t0 or grid[-1] != t1:
        raise ValueError(
            f"`step_grid` must start at t[0] = {t0:g} and end at t[-1] = {t1:g} "
            f"with at least one step; got {len(grid)} points"
        )
    d = [b - a for a, b in zip(grid, grid[1:], strict=False)]
    if not (all(x > 0 for x in d) or all(x < 0 for x in d)):
        raise ValueError("`step_grid` must be strictly monotone in the direction of `t`")
    return grid


def fixed_grid(t0: float, t1: float, n_steps: int) -> tuple[list[float], float]:
    """The ``n_steps + 1`` times of a uniform grid (the last exactly ``t1``) and its step."""
    h = (t1 - t0) / n_steps
    times = [t0 + k * h for k in range(n_steps)] + [t1]
    return times, h


class OutputCollector:
    """Collects the state at the requested times as steps are accepted (shared by all solvers)."""

    def __init__(self, times: list[float], y0: torch.Tensor, eps: float) -> None:
        self.times = times
        self.rows: list[torch.Tensor | None] = [None] * len(times)
        self.rows[0] = y0[0]
        self.next = 1
        self.eps = eps

    def due(self, t: float, t1: float, y1: torch.Tensor) -> list[tuple[int, float]]:
        """Fill the outputs at ``t1`` (within rounding) with ``y1``.

        Returns the outputs strictly inside the step as ``(index, theta)`` pairs.
        """
        hits, interior = self.assign(t, t1)
        for j in hits:
            self.rows[j] = y1[0]
        return interior

    def quiet(self, t: float, t1: float) -> bool:
        """True when the step ``[t, t1]`` reaches no output (``assign`` would find none): a
        few float comparisons, so the solver's hot loop skips the bookkeeping."""
        if self.next >= len(self.times):
            return True
        h = t1 - t
        d = self.times[self.next] - t1
        return d * h >= 0 and abs(d) > 8.0 * self.eps * max(abs(t1), abs(h))

    def assign(self, t: float, t1: float) -> tuple[list[int], list[tuple[int, float]]]:
        """The outputs an accepted step ``[t, t1]`` produces: those at ``t1`` (within rounding)
        and those strictly inside as ``(index, theta)``; advances past them. The checkpoint
        gradient replays this to know which outputs each recomputed step feeds."""
        h = t1 - t
        tol = 8.0 * self.eps * max(abs(t1), abs(h))
        hits: list[int] = []
        interior = []
        while self.next < len(self.times):
            tj = self.times[self.next]
            if abs(tj - t1) <= tol:
                hits.append(self.next)
            elif (tj - t1) * h < 0:
                interior.append((self.next, (tj - t) / h))
            else:
                break
            self.next += 1
        return hits, interior

    def put(self, interior: list[tuple[int, float]], values: torch.Tensor) -> None:
        for (j, _), row in zip(interior, values.unbind(0), strict=True):
            self.rows[j] = row

    def stack(self, like: torch.Tensor) -> torch.Tensor:
        if any(r is None for r in self.rows):  # a solve that stopped early: NaN from there
            nan = torch.full_like(like[0], math.nan)
            return torch.stack([r if r is not None else nan for r in self.rows])
        return torch.stack(self.rows)


class DenseOutput:
    """A method's dense output inside accepted steps, written into an :class:`OutputCollector`.

    ``stages`` is the step's stage engine (``stacked()``: the stages ``[s, N]``, ``final()``: the
    last stage, ``keep(x)``: a copy that outlives the step)."""

    def __init__(self, tableau: ButcherTableau, interpolation: Interpolation) -> None:
        self.tableau, self.interpolation = tableau, interpolation
        # Hermite without FSAL needs f(t1, y1): the next step's first stage
        self.needs_next = interpolation == Interpolation.HERMITE and not tableau.fsal

    def rows(self, y, k1, y1, h, stages, thetas, f1=None) -> torch.Tensor:
        """The rows ``[len(thetas), N]`` inside the step; ``f1`` is ``f(t1, y1)`` (only
        Hermite without FSAL)."""
        if self.interpolation == Interpolation.CONTINUOUS:
            return dense.continuous_extension(self.tableau, y, stages.stacked(), h, thetas)
        if self.interpolation == Interpolation.LINEAR:
            return dense.linear(y, y1, thetas)
        if self.tableau.fsal:
            return dense.cubic_hermite(y, k1, y1, stages.final(), h, thetas)
        return dense.cubic_hermite(y, k1, y1, f1, h, thetas)

    def emit(self, out: OutputCollector, stages, t, y, k1, t1, y1, h):
        """The outputs of the accepted step ``[t, t1]``; returns a pending job when the rows
        need ``f(t1, y1)``, which :meth:`resolve` finishes."""
        interior = out.due(t, t1, y1)
        if not interior:
            return None
        thetas = [th for _, th in interior]
        if self.needs_next:
            return Pending(interior, y, stages.keep(k1), y1, h, thetas)
        out.put(interior, self.rows(y, k1, y1, h, stages, thetas))
        return None

    @staticmethod
    def resolve(out: OutputCollector, pending: Pending, f1: torch.Tensor) -> None:
        p = pending
        out.put(p.interior, dense.cubic_hermite(p.y, p.k1, p.y1, f1, p.h, p.thetas))


@dataclass
class Pending:
    """Outputs inside an accepted step whose Hermite rows wait for ``f(t1, y1)``."""

    interior: list[tuple[int, float]]
    y: torch.Tensor
    k1: torch.Tensor
    y1: torch.Tensor
    h: float
    thetas: list[float]
