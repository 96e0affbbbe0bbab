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

Times measured on different hardware are never compared: where the rows carry more than one
``hardware`` label (:mod:`reports.placement`), a solver on two machines is two series (its
name says which), each :class:`Curve` knows its ``hardware``, standings take ratios to the
best on the same hardware, and the family findings are made per family, hardware and level.
A solver run under two step-size controllers is two series (``dopri5 · hairer``, ``dopri5 ·
pid``: :func:`reports.summary.solver_labels`), ranked and costed apart, never averaged.
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

from reports.convergence import loglog_line
from reports.format import is_missing
from reports.format import seconds as fmt_seconds
from reports.gradients import add_labels, gradient_rows, is_ok, modes_in_order, solve_rows
from reports.placement import hardware_of

ERROR_TEXT = "relative error at the end point, 10^-scd (scd: significant correct digits)"
# 3 digits is the accuracy neural-ODE training asks for (rtol 1e-3), 6 an engineer's; the
# default tolerance ladder (1e-3, 1e-6, 1e-9) spans both for every adaptive solver, where
# explicit solvers fall short of 8 digits at rtol 1e-9 on most non-stiff problems (global
# error grows over the span) and a level beyond a ladder can only count as not reached.
DIGIT_LEVELS: tuple[float, ...] = (3.0, 6.0)
FAMILIES: tuple[str, ...] = ("non-stiff", "stiff", "learned", "other")
GRAD_ERROR_LEVEL = 1e-6
"""Relative gradient error (``grad_rel_err``) at or below which a gradient counts as right when
the fastest mode is chosen: about six correct digits, so a coarse setting that is quick only
because its gradient is far off does not win."""


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
    hardware: str = ""  # its rows' hardware label where the run spans several, else ""


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
    ranking: tuple[FamilyRank, ...]  # by time: eligible by geomean ratio, then the rest
    text: str = ""  # one sentence, for the overview
    # the fastest of the series that reached the level on the most problems, where that is
    # not by_time (by_time reached it on fewer problems)
    robust: FamilyRank | None = None
    hardware: str = ""  # the hardware all its series ran on, where the run spans several

    @property
    def group(self) -> str:
        """The family, and the hardware where the run spans several: what one row of the
        'which solver to pick' table is about."""
        return f"{self.family} on {self.hardware}" if self.hardware else self.family


# A series is ranked on its speed only where it reached the level on more than this share
# of the family's problems (those where any series reached it); below that, a few easy
# problems would make a solver look fast. Others rank after it, by problems reached.
COVERAGE = 0.5


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
    problem: str = ""
    rms_residual: float = float("nan")  # of the fit, in decades of E


@dataclass(frozen=True)
class GradientFinding:
    problem: str
    least_memory_mode: str | None
    least_memory_bytes: float
    fastest_mode: str | None  # fastest at the gradient error level below
    fastest_time_s: float
    grad_error_level: float
    text: str  # one sentence, for the overview
    least_memory_modes: tuple[str, ...] = ()  # every mode tied for the least memory
    fastest_case: str = ""  # ladder and setting of the fastest case, "dopri5, rtol=1e-07"
    modes: tuple[str, ...] = ()  # the modes the problem has, in MODE_ORDER


@dataclass(frozen=True)
class TrainingFinding:
    task: str
    solver: str | None
    grad_mode: str | None
    time_to_target_s: float
    runner_up: str | None  # "solver · grad_mode" of the next fastest to the target
    text: str
    n_reached: int = 0  # cases that reached the target
    n_cases: int = 0


@dataclass
class Findings:
    solve: list[FamilyFinding] = field(default_factory=list)
    # by problem; where the run spans several hardware labels, by "problem on hardware" (a
    # time front across machines would compare their times)
    fronts: dict[str, list[FrontPiece]] = field(default_factory=dict)
    gradients: list[GradientFinding] = field(default_factory=list)
    training: list[TrainingFinding] = field(default_factory=list)
    status_counts: dict[str, int] = field(default_factory=dict)
    wrong_but_ok: int = 0  # ok cases with no correct digits
    wrong_but_ok_cases: tuple[str, ...] = ()  # their case ids
    fronts_nfe: dict[str, list[FrontPiece]] = field(default_factory=dict)  # cost = NFE
    tolerance_fits: dict[str, list[ToleranceFit]] = field(default_factory=dict)  # by problem


def _num(df: pd.DataFrame, column: str) -> pd.Series:
    """``df[column]`` as floats (NaN where missing or not a number); all NaN when absent."""
    if column not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column].astype("object"), errors="coerce").astype(float)


def _text(df: pd.DataFrame, column: str, default: str = "") -> pd.Series:
    """``df[column]`` as plain strings, ``default`` where missing or absent."""
    if column not in df:
        return pd.Series(default, index=df.index, dtype=object)
    return df[column].astype("object").map(lambda v: default if is_missing(v) else str(v))


def _solves(df: pd.DataFrame) -> pd.DataFrame:
    if df is None or len(df) == 0 or "problem" not in df:
        return pd.DataFrame(columns=["problem", "series", "solver"])
    return solve_rows(df)


def _labelled(solves: pd.DataFrame) -> pd.DataFrame:
    """``solves`` with the ``series`` column of :func:`reports.summary.add_series`."""
    if "series" in solves:
        return solves
    from reports.summary import add_series  # imported late: reports.summary builds on this

    return add_series(solves)


def _gmean(values: Sequence[float]) -> float:
    vals = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    return float(np.exp(np.mean(np.log(vals)))) if vals.size else float("nan")


def family(tags: Sequence[str] | None) -> str:
    """A problem's family from its tags: ``stiff``, ``learned``, ``non-stiff`` or ``other``.

    A stiff tag wins over the others (a learned stiff problem is judged by stiff solvers)."""
    if tags is None or isinstance(tags, str | bytes):
        tags = [tags] if isinstance(tags, str) else []
    names = {str(t).strip().lower() for t in tags if not is_missing(t)}
    if "stiff" in names:
        return "stiff"
    if "learned" in names:
        return "learned"
    if names & {"nonstiff", "non-stiff", "non_stiff"}:
        return "non-stiff"
    return "other"


def _problem_family(problems_meta: Mapping[str, Any] | None, problem: str) -> str:
    info = problems_meta.get(problem) if isinstance(problems_meta, Mapping) else None
    tags = info.get("tags") if isinstance(info, Mapping) else None
    return family(tags if isinstance(tags, Sequence) else None)


def curves(df: pd.DataFrame) -> list[Curve]:
    """One :class:`Curve` per (problem, series) of the plain solves in ``df``, problems and
    series in name order.

    A point is an ok row with a finite scd and a positive, finite NFE and median time (the
    costs are read on a log scale). Points are in ladder order: adaptive series by rtol from
    loose to tight (then atol loose to tight), fixed-step series by the requested steps from
    few to many; never by NFE, which need not grow along the ladder. Rows of kind gradient
    or train are not solves and are left out. ``df`` may lack ``series``; then it is
    :func:`reports.summary.add_series` of the plain solves. Where the solves carry more than
    one hardware label, each curve's ``hardware`` says which it ran on.
    """
    solves = _solves(df)
    if len(solves) == 0:
        return []
    solves = _labelled(solves)
    solves = solves.assign(_hardware=hardware_of(solves).to_numpy())
    ok = solves[(_text(solves, "status") == "ok").to_numpy()]
    scd, nfe, time = (_num(ok, c).to_numpy() for c in ("scd", "nfe", "time_median_s"))
    keep = (np.isfinite(scd) & np.isfinite(nfe) & np.isfinite(time) & (nfe > 0)
            & (time > 0))
    if not keep.any():
        return []
    ok = ok[keep]
    scd, nfe, time = scd[keep], nfe[keep], time[keep]
    # every column converted once for the whole frame, one sort, then split by group
    problem = _text(ok, "problem", "unknown").to_numpy(dtype=object)
    series = _text(ok, "series", "unknown").to_numpy(dtype=object)
    solver = _text(ok, "solver", "unknown").to_numpy(dtype=object)
    case_id = _text(ok, "case_id").to_numpy(dtype=object)
    hardware = ok["_hardware"].to_numpy(dtype=object)
    rtol, atol, n_steps, iqr = (_num(ok, c).to_numpy() for c in
                                ("rtol", "atol", "n_steps_requested", "time_iqr_s"))
    group = pd.MultiIndex.from_arrays([problem, series]).to_frame(index=False)
    codes = group.groupby([0, 1], sort=True).ngroup().to_numpy()
    n_groups = int(codes.max()) + 1
    adaptive = _adaptive_by_group(ok, codes, n_groups, rtol, n_steps)
    mine = adaptive[codes]
    key = np.where(mine, -rtol, n_steps)  # adaptive: loose to tight; fixed: few to many
    key2 = np.where(mine, -atol, 0.0)
    order = np.lexsort((nfe, key2, key, codes))  # stable; NaN keys last, as pandas puts them
    codes = codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], codes.size]
    setting = np.where(mine, rtol, n_steps)[order]
    scd, nfe, time, iqr = scd[order], nfe[order], time[order], iqr[order]
    problem, series, solver, case_id, hardware = (a[order] for a in (problem, series, solver,
                                                                     case_id, hardware))
    out: list[Curve] = []
    for lo, hi in zip(starts, ends, strict=True):
        out.append(Curve(
            problem=str(problem[lo]), series=str(series[lo]), solver=str(solver[lo]),
            adaptive=bool(adaptive[codes[lo]]), setting=setting[lo:hi].copy(),
            digits=scd[lo:hi].copy(), nfe=nfe[lo:hi].copy(), time=time[lo:hi].copy(),
            time_iqr=iqr[lo:hi].copy(), case_ids=tuple(case_id[lo:hi].tolist()),
            hardware=str(hardware[lo])))
    return out


def _adaptive_by_group(rows: pd.DataFrame, codes: np.ndarray, n_groups: int,
                       rtol: np.ndarray, n_steps: np.ndarray) -> np.ndarray:
    """Whether each group of ``rows`` (``codes``: the group of each row) forms a tolerance
    ladder: the ``adaptive`` column where it says (the majority of its values), else whether
    the group's rows carry an rtol rather than a step count; for all groups at once."""
    if "adaptive" in rows:
        flags = rows["adaptive"]
        given = flags.notna().to_numpy()
        truth = np.array([bool(v) for v in flags[given]], dtype=float)
        n_given = np.bincount(codes[given], minlength=n_groups)
        n_true = np.bincount(codes[given], weights=truth, minlength=n_groups)
    else:
        n_given = n_true = np.zeros(n_groups)
    has_n = np.bincount(codes, weights=~np.isnan(n_steps), minlength=n_groups)
    has_rtol = np.bincount(codes, weights=~np.isnan(rtol), minlength=n_groups)
    by_counts = (has_rtol > 0) & (has_rtol >= has_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        by_flags = n_true / np.where(n_given > 0, n_given, 1) >= 0.5
    return np.where(n_given > 0, by_flags, by_counts)


def cost_at(curve: Curve, digits: float) -> Cost | None:
    """The NFE and median time at which ``curve`` reaches ``digits`` along its ladder.

    Walks the ladder; the first consecutive pair with ``digits[i] < d <= digits[i+1]``
    brackets the level, and log10(NFE) and log10(time) are interpolated linearly in digits
    between the two points (a work-precision diagram is close to straight in these axes;
    Hairer, Nørsett & Wanner, Solving ODEs I, §II.10). If the loosest point already has the
    digits its cost is returned with ``bound=True`` (the level may be cheaper still). None
    when no point reaches the level: never extrapolates.

    Cost need not grow along a ladder (an implicit solver at a tighter tolerance can take
    fewer, better steps), so a measured point with at least ``d`` digits that is cheaper
    than the interpolated crossing caps the cost, in NFE and in time separately; a cost so
    capped is an upper bound too (``bound=True``).
    """
    d = float(digits)
    dig = np.asarray(curve.digits, dtype=float)
    if dig.size == 0 or not np.isfinite(d):
        return None
    nfe = np.asarray(curve.nfe, dtype=float)
    time = np.asarray(curve.time, dtype=float)
    reached = dig >= d
    if not reached.any():
        return None
    if reached[0]:
        crossing = Cost(nfe=float(nfe[0]), time=float(time[0]), bound=True)
    else:
        crossing = None
        for i in range(dig.size - 1):
            lo, hi = dig[i], dig[i + 1]
            if lo < d <= hi:
                w = (d - lo) / (hi - lo)
                crossing = Cost(nfe=_log_interp(nfe[i], nfe[i + 1], w),
                                time=_log_interp(time[i], time[i + 1], w))
                break
        if crossing is None:  # no bracketing pair (cannot happen with finite digits)
            return Cost(nfe=float(nfe[reached].min()), time=float(time[reached].min()),
                        bound=True)
    cap_nfe, cap_time = float(nfe[reached].min()), float(time[reached].min())
    if cap_nfe < crossing.nfe or cap_time < crossing.time:
        return Cost(nfe=min(crossing.nfe, cap_nfe), time=min(crossing.time, cap_time),
                    bound=True)
    return crossing


def _log_interp(a: float, b: float, w: float) -> float:
    """``a`` to ``b`` at fraction ``w``, linear in log10 (linear where a cost is not positive)."""
    if a > 0 and b > 0:
        return float(10 ** ((1 - w) * np.log10(a) + w * np.log10(b)))
    return float((1 - w) * a + w * b)


def problem_standings(problem_curves: Sequence[Curve],
                      levels: Sequence[float] = DIGIT_LEVELS) -> dict[float, list[Standing]]:
    """Per level, one :class:`Standing` per curve (the curves of one problem): its cost and
    its time and NFE ratios to the fastest and to the least-NFE series that reached the level.
    Sorted by time, then NFE, then name; series that did not reach the level last, by name.

    Ratios are taken among the curves of the same ``hardware`` only: a time measured on one
    machine is never divided by a time measured on another (so each machine has its own
    fastest series, its ratio 1)."""
    out: dict[float, list[Standing]] = {}
    for level in levels:
        costs = [(c.series, c.hardware, cost_at(c, level)) for c in problem_curves]
        best_t: dict[str, float] = {}
        best_n: dict[str, float] = {}
        for _, hw, c in costs:
            if c is not None:
                best_t[hw] = min(best_t.get(hw, np.inf), c.time)
                best_n[hw] = min(best_n.get(hw, np.inf), c.nfe)
        rows = [Standing(s, c, _ratio(c.time, best_t[hw]), _ratio(c.nfe, best_n[hw]))
                if c is not None else Standing(s, None) for s, hw, c in costs]
        rows.sort(key=lambda r: (r.cost is None, r.cost.time if r.cost else 0.0,
                                 r.cost.nfe if r.cost else 0.0, r.series))
        out[float(level)] = rows
    return out


def _ratio(value: float, best: float) -> float:
    return value / best if best > 0 else float("nan")


def _eligible(rank: FamilyRank) -> bool:
    return rank.n_reached > 0 and rank.n_reached > COVERAGE * rank.n_problems


def rank_key(rank: FamilyRank, by: str) -> tuple:
    """Eligible series (:data:`COVERAGE`) first, by geometric-mean ratio, then more problems
    reached; the others after them, by problems reached, then ratio."""
    g = rank.time_ratio_gmean if by == "time" else rank.nfe_ratio_gmean
    g = g if np.isfinite(g) else np.inf
    if _eligible(rank):
        return (0, g, -rank.n_reached, rank.series)
    return (1, -rank.n_reached, g, rank.series)


def _family_text(fam: str, level: float, by_time: FamilyRank | None,
                 by_nfe: FamilyRank | None, ranking: Sequence[FamilyRank],
                 n_family: int, robust: FamilyRank | None = None, hardware: str = "") -> str:
    on = f" (on {hardware})" if hardware else ""
    head = f"{fam.capitalize()} problems, {level:g} digits{on}: "
    if by_time is None:
        return head + f"no solver reached this accuracy on any of the {n_family} problem(s)."
    text = (head + f"pick {by_time.series} (reached it on {by_time.n_reached} of "
            f"{by_time.n_problems} problem(s), fastest on {by_time.wins_time}, time "
            f"{by_time.time_ratio_gmean:.2f}× the best in geometric mean")
    others = [r for r in ranking if r.series != by_time.series and r.n_reached]
    if others:
        nxt = others[0]
        text += (f"; next {nxt.series}: {nxt.n_reached} of {nxt.n_problems}, "
                 f"{nxt.time_ratio_gmean:.2f}×")
    text += ")"
    if robust is not None:
        text += (f"; on all {robust.n_reached} problem(s) where it was reached: "
                 f"{robust.series}, {robust.time_ratio_gmean:.2f}×"
                 if robust.n_reached == robust.n_problems else
                 f"; on the most problems ({robust.n_reached}): {robust.series}, "
                 f"{robust.time_ratio_gmean:.2f}×")
    if by_nfe is not None and by_nfe.series != by_time.series:
        text += f"; fewest evaluations: {by_nfe.series}"
    return text + "."


def family_findings(df: pd.DataFrame, problems_meta: Mapping[str, Any],
                    levels: Sequence[float] = DIGIT_LEVELS,
                    curves_of_df: Sequence[Curve] | None = None) -> list[FamilyFinding]:
    """Per family present in ``df`` (in :data:`FAMILIES` order) and level, which series to
    pick for that family's problems.

    Over the family's problems on which any series reached the level (``n_problems``), each
    series' :class:`FamilyRank`: on how many it reached the level, the geometric mean of its
    time ratio and of its NFE ratio to the best on each problem it reached (the mean of
    normalised results, as Fleming & Wallace, CACM 1986, advise for benchmark ratios), and on
    how many it was the fastest / least NFE (ties count for each). The winner by time is,
    among the series that reached the level on more than :data:`COVERAGE` of those problems,
    the one with the least geometric-mean time ratio (by NFE likewise); where it reached
    fewer problems than another series, ``robust`` names the fastest of those that reached
    the most, so a solver that is fast where it gets there is not confused with one that
    gets there everywhere. ``by_time`` is None where no problem of the
    family reached the level. ``curves_of_df``: :func:`curves` of ``df`` where the caller has
    it already (computed here otherwise).

    Where the solves carry more than one hardware label, the findings are per family,
    hardware (``hardware``, in label order) and level, each ranking only the series that ran
    on that hardware, over the family's problems that ran there: no time is compared across
    machines.
    """
    by_problem: dict[str, list[Curve]] = {}
    for c in curves(df) if curves_of_df is None else curves_of_df:
        by_problem.setdefault(c.problem, []).append(c)
    solves = _solves(df)
    problems = sorted(set(_text(solves, "problem", "unknown"))) if len(solves) else []
    series_of: dict[tuple[str, str], set[str]] = {}  # (problem, hardware): its series
    if len(solves):
        labelled = _labelled(solves)
        for p, s, hw in zip(_text(labelled, "problem", "unknown"),
                            _text(labelled, "series", "unknown"), hardware_of(labelled),
                            strict=True):
            series_of.setdefault((p, hw), set()).add(s)
    machines = sorted({hw for _, hw in series_of}) or [""]
    fams: dict[str, list[str]] = {}
    for p in problems:
        fams.setdefault(_problem_family(problems_meta, p), []).append(p)
    order = list(FAMILIES) + sorted(set(fams) - set(FAMILIES))
    out: list[FamilyFinding] = []
    for fam, hw in ((f, hw) for f in order if f in fams for hw in machines):
        fam_problems = [p for p in fams[fam] if (p, hw) in series_of or len(machines) == 1]
        if not fam_problems:
            continue
        standings = {p: problem_standings([c for c in by_problem.get(p, [])
                                           if c.hardware == hw], levels)
                     for p in fam_problems}
        all_series = sorted(set().union(*(series_of.get((p, hw), set())
                                          for p in fam_problems)))
        for level in levels:
            level = float(level)
            counted = [p for p in fam_problems
                       if any(s.cost is not None for s in standings[p][level])]
            ranks = []
            for name in all_series:
                mine = [s for p in counted for s in standings[p][level]
                        if s.series == name and s.cost is not None]
                ranks.append(FamilyRank(
                    series=name, n_reached=len(mine), n_problems=len(counted),
                    time_ratio_gmean=_gmean([s.time_ratio for s in mine]),
                    nfe_ratio_gmean=_gmean([s.nfe_ratio for s in mine]),
                    wins_time=sum(1 for s in mine if np.isclose(s.time_ratio, 1.0)),
                    wins_nfe=sum(1 for s in mine if np.isclose(s.nfe_ratio, 1.0))))
            ranking = tuple(sorted(ranks, key=lambda r: rank_key(r, "time")))
            reached = [r for r in ranks if r.n_reached > 0]
            by_time = min(reached, key=lambda r: rank_key(r, "time")) if reached else None
            by_nfe = min(reached, key=lambda r: rank_key(r, "nfe")) if reached else None
            robust = None
            if by_time is not None:
                most = max(r.n_reached for r in reached)
                if by_time.n_reached < most:
                    robust = min((r for r in reached if r.n_reached == most),
                                 key=lambda r: rank_key(r, "time"))
            out.append(FamilyFinding(
                family=fam, digits=level, problems=tuple(fam_problems), by_time=by_time,
                by_nfe=by_nfe, ranking=ranking, robust=robust, hardware=hw,
                text=_family_text(fam, level, by_time, by_nfe, ranking, len(fam_problems),
                                  robust, hw)))
    return out


_FRONT_COSTS = ("time", "nfe")


def pareto_front(problem_curves: Sequence[Curve], cost: str = "time") -> list[FrontPiece]:
    """The Pareto front of one problem's points in (cost, digits), ``cost`` ``time`` or
    ``nfe``: the points no other point beats in both (no cheaper-or-equal point with as many
    or more digits, one of them strictly). Walked from few digits to many, consecutive front
    points of one series merge into one :class:`FrontPiece`. Identical points are kept once,
    for the series first by name."""
    if cost not in _FRONT_COSTS:
        raise ValueError(f"cost must be one of {', '.join(_FRONT_COSTS)}, got {cost!r}")
    pts = []
    for c in problem_curves:
        values = np.asarray(c.time if cost == "time" else c.nfe, dtype=float)
        for x, d in zip(values, np.asarray(c.digits, dtype=float), strict=True):
            if np.isfinite(x) and np.isfinite(d):
                pts.append((float(x), -float(d), c.series))
    pts.sort()  # cost ascending, then digits descending, then series name
    front: list[tuple[float, float, str]] = []
    best = -np.inf
    for x, neg_d, series in pts:
        d = -neg_d
        if d > best:  # more digits than every cheaper-or-equal point
            front.append((x, d, series))
            best = d
    pieces: list[FrontPiece] = []
    for _, d, series in front:  # cost and digits both ascend along the front
        if pieces and pieces[-1].series == series:
            pieces[-1] = FrontPiece(series, pieces[-1].digits_lo, d)
        else:
            pieces.append(FrontPiece(series, d, d))
    return pieces


def tolerance_fit(curve: Curve) -> ToleranceFit | None:
    """``E ≈ C · rtol^p`` by least squares in log10 (E = 10^-scd) over an adaptive curve's
    points with a finite, positive E and rtol: the tolerance proportionality that DETEST
    (Hull, Enright, Fellen & Sedgwick, SIAM J. Numer. Anal. 1972) and ACM TOMS algorithm 648
    report; p near 1 means the error is proportional to the tolerance, C how far the error
    sits above (C > 1) or below it. None for a fixed-step curve or fewer than three points
    (or fewer than two distinct tolerances)."""
    if not curve.adaptive:
        return None
    rtol = np.asarray(curve.setting, dtype=float)
    err = 10.0 ** -np.asarray(curve.digits, dtype=float)
    p, log_c, n = loglog_line(rtol, err)
    if n < 3 or not np.isfinite(p):
        return None
    keep = np.isfinite(rtol) & (rtol > 0) & np.isfinite(err) & (err > 0)
    x, y = np.log10(rtol[keep]), np.log10(err[keep])
    resid = y - (log_c + p * x)
    return ToleranceFit(series=curve.series, C=float(10 ** log_c), p=float(p),
                        n_points=n, problem=curve.problem,
                        rms_residual=float(np.sqrt(np.mean(resid ** 2))))


def no_correct_digits(df: pd.DataFrame) -> pd.Series:
    """True for the plain solves whose status is ok but whose scd is at most 0: the solver
    said it succeeded, and not one digit of its answer is right (scd -13 is an error 10^13
    times the solution). Aligned with ``df``'s index; False elsewhere."""
    if df is None or len(df) == 0:
        return pd.Series(False, index=getattr(df, "index", pd.RangeIndex(0)), dtype=bool)
    kind = _text(df, "kind", "solve").replace("", "solve")
    flag = (kind == "solve") & (_text(df, "status") == "ok") & (_num(df, "scd") <= 0)
    return flag.astype(bool)


def _nbytes(n: float) -> str:
    if not np.isfinite(n):
        return "unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def _grad_time(rows: pd.DataFrame) -> pd.Series:
    """The median time of a gradient: ``time_median_s``, else forward plus backward."""
    total = _num(rows, "time_median_s")
    parts = _num(rows, "time_forward_median_s") + _num(rows, "time_backward_median_s")
    return total.where(total.notna(), parts)


def gradient_findings(df: pd.DataFrame,
                      error_level: float = GRAD_ERROR_LEVEL) -> list[GradientFinding]:
    """Per problem with gradient cases (name order): the mode that saves the least memory and
    the fastest mode at a gradient error of at most ``error_level``.

    Memory: each mode's peak ``mem_saved_bytes`` over the cases (ladder and setting) in
    which every mode of the problem succeeded with a memory figure, so that the modes are
    compared at the same settings (the finest of them included); where no case has all modes,
    over each mode's own ok cases. Ties go to the first mode in
    :data:`reports.gradients.MODE_ORDER`. Speed: the case with the least median gradient time
    (``time_median_s``, else forward plus backward) among the ok cases whose ``grad_rel_err``
    is at most ``error_level``: a fast gradient that is wrong is no use.
    """
    grad = gradient_rows(df) if df is not None and len(df) and "problem" in df else None
    if grad is None or len(grad) == 0:
        return []
    grad = grad.copy()
    for c in ("solver", "device", "dtype", "batch", "rtol", "atol", "n_steps_requested",
              "grad_mode", "status", "status_backward"):
        if c not in grad:
            grad[c] = pd.NA
    for c in ("rtol", "atol", "n_steps_requested"):  # JSON values may come as objects
        grad[c] = _num(grad, c)
    grad = add_labels(grad)
    grad["_ok"] = [is_ok(r) for _, r in grad.iterrows()]
    grad["_mode"] = _text(grad, "grad_mode", "unknown")
    grad["_mem"], grad["_err"], grad["_time"] = (_num(grad, "mem_saved_bytes"),
                                                 _num(grad, "grad_rel_err"), _grad_time(grad))
    grad["_problem"] = _text(grad, "problem", "unknown")
    out = []
    for problem, rows in grad.groupby("_problem", sort=True):
        out.append(_gradient_finding(str(problem), rows, error_level))
    return out


def _gradient_finding(problem: str, rows: pd.DataFrame, level: float) -> GradientFinding:
    ok = rows[rows["_ok"]]
    modes = modes_in_order(rows["_mode"].unique())
    with_mem = ok[ok["_mem"].notna()]
    mem_modes = modes_in_order(with_mem["_mode"].unique())
    common = [g for _, g in with_mem.groupby(["label", "setting_key"], sort=False)
              if set(g["_mode"]) >= set(mem_modes)]
    pool = pd.concat(common) if common else with_mem
    peaks = {m: float(pool.loc[pool["_mode"] == m, "_mem"].max()) for m in mem_modes
             if (pool["_mode"] == m).any()}
    least_mode, least_bytes, tied = None, float("nan"), ()
    if peaks:
        least_bytes = min(peaks.values())
        tied = tuple(m for m in mem_modes if m in peaks and peaks[m] == least_bytes)
        least_mode = tied[0]
    good = ok[ok["_err"].notna() & (ok["_err"] <= level) & ok["_time"].notna()]
    fast_mode, fast_time, fast_case = None, float("nan"), ""
    if len(good):
        best = good.loc[good["_time"].idxmin()]
        fast_mode, fast_time = str(best["_mode"]), float(best["_time"])
        fast_case = f"{best['label']}, {best['setting_key']}"
    parts = []
    if least_mode is not None:
        who = " and ".join(tied) if len(tied) > 1 else least_mode
        verb = "save" if len(tied) > 1 else "saves"
        worst = max(peaks, key=lambda m: peaks[m])
        where = "at the same settings" if common else "over their own cases"
        memo = f"{who} {verb} the least memory ({_nbytes(least_bytes)} at most {where}"
        if peaks[worst] > least_bytes:
            memo += f", against {_nbytes(peaks[worst])} for {worst}"
        parts.append(memo + ")")
    elif modes:
        parts.append("no mode has a memory figure")
    if fast_mode is not None:
        parts.append(f"the fastest gradient within a relative error of {level:.0e} is "
                     f"{fast_mode} ({fast_case}: {fmt_seconds(fast_time)})")
    else:
        parts.append(f"no ok case reached a gradient error of {level:.0e}")
    text = f"On {problem}, " + "; ".join(parts) + "."
    return GradientFinding(problem=problem, least_memory_mode=least_mode,
                           least_memory_bytes=least_bytes, fastest_mode=fast_mode,
                           fastest_time_s=fast_time, grad_error_level=float(level), text=text,
                           least_memory_modes=tied, fastest_case=fast_case,
                           modes=tuple(modes))


def training_findings(df: pd.DataFrame) -> list[TrainingFinding]:
    """Per training task (name order): the (solver, grad_mode) that reached the task's target
    loss in the least wall time (``time_to_target_s``) among the ok cases that reached it,
    and the runner-up; where none reached the target (or the task has none), ``solver`` is
    None and the text says so."""
    from reports.training import train_rows  # imported late: reports.training draws figures

    train = train_rows(df) if df is not None and len(df) and "kind" in df else None
    if train is None or len(train) == 0:
        return []
    train = train.copy()
    task = _text(train, "task")
    train["_task"] = task.where(task != "", _text(train, "problem", "unknown"))
    from reports.summary import solver_labels  # imported late: reports.summary builds on this

    who = pd.Series("", index=train.index, dtype=object)
    for _, rows in train.groupby("_task", sort=False):  # dopri5 · pid where a task has two
        who[rows.index] = solver_labels(rows).to_numpy(dtype=object)
    train["_who"] = who + " · " + _text(train, "grad_mode", "unknown")
    train["_ttt"] = _num(train, "time_to_target_s")
    train["_it"] = _num(train, "iteration_to_target")
    train["_target"] = _num(train, "target_loss")
    out = []
    for name, rows in train.groupby("_task", sort=True):
        ok = rows[_text(rows, "status") == "ok"]
        hit = ok[ok["_ttt"].notna() & (ok["_it"].notna() | ("iteration_to_target" not in ok))]
        hit = hit.sort_values(["_ttt", "_who"], kind="mergesort")
        if len(hit):
            best = hit.iloc[0]
            runner = hit[hit["_who"] != best["_who"]]
            runner_up = str(runner.iloc[0]["_who"]) if len(runner) else None
            text = (f"On {name}, {best['_who']} reached the target loss first, in "
                    f"{fmt_seconds(best['_ttt'])}")
            if runner_up is not None:
                ratio = float(runner.iloc[0]["_ttt"]) / float(best["_ttt"]) \
                    if best["_ttt"] > 0 else float("nan")
                text += f"; next {runner_up} at {ratio:.2g}× that time"
            text += f" ({len(hit)} of {len(rows)} case(s) reached it)."
            out.append(TrainingFinding(task=str(name), solver=_text(hit, "solver").iloc[0],
                                       grad_mode=_text(hit, "grad_mode").iloc[0],
                                       time_to_target_s=float(best["_ttt"]),
                                       runner_up=runner_up, text=text,
                                       n_reached=len(hit), n_cases=len(rows)))
            continue
        if rows["_target"].notna().any():
            target = float(rows["_target"].dropna().iloc[0])
            text = (f"On {name}, no case reached the target loss {target:.3g} "
                    f"({len(ok)} of {len(rows)} case(s) ran to the end).")
        else:
            text = f"On {name}, there is no target loss, so no time to target is compared."
        out.append(TrainingFinding(task=str(name), solver=None, grad_mode=None,
                                   time_to_target_s=float("nan"), runner_up=None, text=text,
                                   n_reached=0, n_cases=len(rows)))
    return out


def findings(df: pd.DataFrame, meta: Mapping[str, Any],
             curves_of_df: Sequence[Curve] | None = None) -> Findings:
    """Everything above for one run's rows and its meta.json: the family findings at
    :data:`DIGIT_LEVELS`, each problem's Pareto fronts, the tolerance fits, the gradient and
    training headlines, the count of rows by status and the ok solves with no correct
    digit. ``curves_of_df``: :func:`curves` of ``df`` where the caller has it already."""
    meta = meta if isinstance(meta, Mapping) else {}
    problems_meta = meta.get("problems")
    problems_meta = problems_meta if isinstance(problems_meta, Mapping) else {}
    if df is None or len(df) == 0:
        return Findings()
    out = Findings()
    all_curves = curves(df) if curves_of_df is None else curves_of_df
    out.solve = family_findings(df, problems_meta, curves_of_df=all_curves)
    by_problem: dict[str, list[Curve]] = {}
    for c in all_curves:
        by_problem.setdefault(c.problem, []).append(c)
        fit = tolerance_fit(c)
        if fit is not None:
            out.tolerance_fits.setdefault(c.problem, []).append(fit)
    for p, cs in by_problem.items():
        for hw in sorted({c.hardware for c in cs}):
            key = f"{p} on {hw}" if hw else p
            out.fronts[key] = pareto_front([c for c in cs if c.hardware == hw], "time")
        out.fronts_nfe[p] = pareto_front(cs, "nfe")
    out.gradients = gradient_findings(df)
    out.training = training_findings(df)
    status = _text(df, "status", "unknown").replace("", "unknown")
    out.status_counts = {str(k): int(v) for k, v in status.value_counts().sort_index().items()}
    wrong = no_correct_digits(df)
    out.wrong_but_ok = int(wrong.sum())
    out.wrong_but_ok_cases = tuple(_text(df[wrong], "case_id"))
    return out
