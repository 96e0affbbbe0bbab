"""What a run says, computed from its rows: the report's headline findings.

CONTRACT (filled in by the analysis work; the page codes against these names):

One error measure for plain solves, everywhere in the report: the relative error at the end
point, ``E = 10**-scd`` (``scd``: significant correct digits over the problem's scored
components, as the IVP Test Set defines it; Mazzia & Magherini). Levels are given in digits.

- :func:`curves` -- one work-precision :class:`Curve` per (problem, series), its ok points in
  ladder order (adaptive: rtol from loose to tight; fixed-step: n from few to many).
- :func:`cost_at` -- the NFE and median time at which a curve reaches ``digits``,
  interpolated (linear in log cost against digits) between the first bracketing pair of
  ladder points; ``bound=True`` when the loosest point already had the digits (the cost is
  then an upper bound); ``None`` when the curve never gets there. Never extrapolates.
- :func:`problem_standings` -- per problem and level, every series' :class:`Standing`.
- :func:`family_findings` -- per family and level, :class:`FamilyFinding`: the fastest series
  by time and by NFE, and a ranking of all series (geometric-mean ratio to the best).
- :func:`pareto_front` -- per problem, which series are on the front of (cost, digits).
- :func:`tolerance_fit` -- ``E ≈ C · rtol^p`` for an adaptive curve (DETEST, TOMS 648).
- :func:`no_correct_digits` -- ok rows whose scd <= 0 (a "successful" solve that is wrong).
- :func:`gradient_findings`, :func:`training_findings` -- the gradient and training headlines.
- :func:`findings` -- all of it, for a run's rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ERROR_MEASURE = "scd"
ERROR_TEXT = "relative error at the end point, 10^-scd (scd: significant correct digits)"
DIGIT_LEVELS: tuple[float, ...] = (4.0, 8.0)
FAMILIES: tuple[str, ...] = ("non-stiff", "stiff", "learned", "other")


def family(tags: Sequence[str] | None) -> str:
    """A problem's family from its tags: ``stiff``, ``learned``, ``non-stiff`` or ``other``."""
    raise NotImplementedError


@dataclass(frozen=True)
class Curve:
    """One series' ok points on one problem, in ladder order (coarse to fine)."""

    problem: str
    series: str
    solver: str
    adaptive: bool
    setting: np.ndarray  # rtol (adaptive) or n_steps (fixed), ladder order
    digits: np.ndarray  # scd
    nfe: np.ndarray
    time: np.ndarray  # median wall time of one solve, s
    time_iqr: np.ndarray
    case_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cost:
    nfe: float
    time: float
    bound: bool = False  # True: the loosest setting already reached the level (upper bound)


@dataclass(frozen=True)
class Standing:
    """One series on one problem at one level."""

    series: str
    cost: Cost | None  # None: not reached
    time_ratio: float = float("nan")  # to the fastest series on this problem at this level
    nfe_ratio: float = float("nan")  # to the least-NFE series


@dataclass(frozen=True)
class FamilyRank:
    series: str
    n_reached: int
    n_problems: int
    time_ratio_gmean: float  # geometric mean over the problems it reached
    nfe_ratio_gmean: float
    wins_time: int  # problems on which it was the fastest
    wins_nfe: int


@dataclass(frozen=True)
class FamilyFinding:
    family: str
    digits: float
    problems: tuple[str, ...]
    by_time: FamilyRank | None
    by_nfe: FamilyRank | None
    ranking: tuple[FamilyRank, ...]  # by time: most problems reached, then geomean ratio


@dataclass(frozen=True)
class FrontPiece:
    """A stretch of one problem's Pareto front held by one series."""

    series: str
    digits_lo: float
    digits_hi: float


@dataclass(frozen=True)
class ToleranceFit:
    series: str
    C: float
    p: float
    n_points: int


@dataclass(frozen=True)
class GradientFinding:
    problem: str
    least_memory_mode: str | None
    least_memory_bytes: float
    fastest_mode: str | None  # fastest at the gradient error level below
    fastest_time_s: float
    grad_error_level: float
    text: str  # one sentence, for the overview


@dataclass(frozen=True)
class TrainingFinding:
    task: str
    solver: str | None
    grad_mode: str | None
    time_to_target_s: float
    runner_up: str | None
    text: str


@dataclass
class Findings:
    solve: list[FamilyFinding] = field(default_factory=list)
    fronts: dict[str, list[FrontPiece]] = field(default_factory=dict)
    gradients: list[GradientFinding] = field(default_factory=list)
    training: list[TrainingFinding] = field(default_factory=list)
    status_counts: dict[str, int] = field(default_factory=dict)
    wrong_but_ok: int = 0  # ok cases with no correct digits


def curves(df: pd.DataFrame) -> list[Curve]:
    raise NotImplementedError


def cost_at(curve: Curve, digits: float) -> Cost | None:
    raise NotImplementedError


def problem_standings(problem_curves: Sequence[Curve],
                      levels: Sequence[float] = DIGIT_LEVELS) -> dict[float, list[Standing]]:
    raise NotImplementedError


def family_findings(df: pd.DataFrame, problems_meta: Mapping[str, Any],
                    levels: Sequence[float] = DIGIT_LEVELS) -> list[FamilyFinding]:
    raise NotImplementedError


def pareto_front(problem_curves: Sequence[Curve], cost: str = "time") -> list[FrontPiece]:
    raise NotImplementedError


def tolerance_fit(curve: Curve) -> ToleranceFit | None:
    raise NotImplementedError


def no_correct_digits(df: pd.DataFrame) -> pd.Series:
    raise NotImplementedError


def gradient_findings(df: pd.DataFrame) -> list[GradientFinding]:
    raise NotImplementedError


def training_findings(df: pd.DataFrame) -> list[TrainingFinding]:
    raise NotImplementedError


def findings(df: pd.DataFrame, meta: Mapping[str, Any]) -> Findings:
    raise NotImplementedError
