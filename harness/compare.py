"""Compare two run folders case by case: what got slower or faster, and what changed at all.

Cases are matched by ``case_id``. Two kinds of figures are compared, by different rules:

- **Wall time** is noisy. Following asv (airspeed velocity, ``asv compare`` and
  ``asv.step_detect``/``asv.statistics``), a time counts as changed only when the ratio of the
  medians is beyond a factor (default 1.1) *and* the difference is statistically significant:
  a two-sided Mann–Whitney U test at p < 0.002 when each side has enough raw samples, otherwise
  non-overlapping 99% confidence intervals of the two medians. ``use_stats=False`` uses the
  factor alone.
- **Deterministic figures** (status, NFE, steps, backward NFE, errors) have no noise: any change
  beyond a relative 1e-9 is reported, never explained away.

The marks are asv's: ``+`` slower (worse), ``-`` faster (better), ``~`` beyond the factor but
not significant, ``!`` newly failing (ok in A, not in B), blank for no change. asv shows a
fixed failure as a blank in green; a terminal without colour would lose it, so it is ``*``
here.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

DEFAULT_FACTOR = 1.1
P_THRESHOLD = 0.002  # asv's threshold for the Mann-Whitney U test
CI_LEVEL = 0.99
# At 6 samples a side the smallest two-sided exact p-value of the U test is 2/C(12, 6), about
# 0.0022, which cannot pass 0.002; from 7 a side it can (2/C(14, 7), about 0.0006).
MIN_SAMPLES_U_TEST = 7
REL_TOL = 1e-9  # deterministic figures: a relative change beyond this is a change

# Counted figures: (column, what it is); more is worse for each.
COUNTS: tuple[tuple[str, str], ...] = (
    ("nfe", "NFE"),
    ("n_steps", "steps"),
    ("nfe_backward", "backward NFE"),
)
# Error figures: (column, what it is, True when larger is worse).
ERRORS: tuple[tuple[str, str, bool], ...] = (
    ("err_max", "max error", True),
    ("scd", "scd", False),
)
# What describes the machine a run was measured on (meta.json's environment).
MACHINE_KEYS: tuple[str, ...] = ("cpu", "platform", "hostname", "torch", "cuda device")


class Mark(enum.StrEnum):
    """The one-character verdict on a case, as asv prints it (``FIXED`` is ours)."""

    WORSE = "+"
    BETTER = "-"
    NOT_SIGNIFICANT = "~"
    NEWLY_FAILING = "!"
    FIXED = "*"
    SAME = " "


MARK_MEANINGS: dict[Mark, str] = {
    Mark.WORSE: "slower beyond the factor, significant",
    Mark.BETTER: "faster beyond the factor, significant",
    Mark.NOT_SIGNIFICANT: "beyond the factor, not significant",
    Mark.NEWLY_FAILING: "newly failing (ok in A, not in B)",
    Mark.FIXED: "fixed (not ok in A, ok in B)",
}


class FailOn(enum.StrEnum):
    """What makes ``compare --fail-on`` exit 1."""

    REGRESSION = "regression"
    ANY_CHANGE = "any-change"


# ------------------------------------------------------------------------------ significance


@dataclass(frozen=True)
class Significance:
    significant: bool
    test: str  # "mann-whitney", "ci", or "none" (stats off, or no samples)
    p_value: float | None = None
    why: str = ""


def median_ci(samples: Sequence[float], level: float = CI_LEVEL) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median from order statistics.

    With ``B ~ Binomial(n, 1/2)``, ``[x_(k), x_(n-k+1)]`` covers the median with probability
    ``1 - 2 P(B <= k - 1)``; ``k`` is the largest for which that is at least ``level``
    (Conover, *Practical Nonparametric Statistics*, 3rd ed., 1999, §3.2). None when even
    ``[min, max]`` is too short (fewer than 8 samples at 99%).
    """
    xs = sorted(float(x) for x in samples)
    n = len(xs)
    alpha = 1.0 - level
    best = 0
    for k in range(1, n // 2 + 1):
        if 2.0 * stats.binom.cdf(k - 1, n, 0.5) <= alpha:
            best = k
        else:
            break
    if best == 0:
        return None
    return xs[best - 1], xs[n - best]


def significance(a: Sequence[float], b: Sequence[float], *,
                 min_samples: int = MIN_SAMPLES_U_TEST) -> Significance:
    """Whether samples ``a`` and ``b`` differ: the U test with ``min_samples`` or more a side,
    else non-overlapping 99% CIs of the medians (too few samples for one: not significant)."""
    a = [float(x) for x in a]
    b = [float(x) for x in b]
    if len(a) >= min_samples and len(b) >= min_samples:
        p = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
        return Significance(p < P_THRESHOLD, "mann-whitney", p,
                            f"Mann-Whitney U p={p:.2g} ({'<' if p < P_THRESHOLD else '>='} "
                            f"{P_THRESHOLD})")
    ci_a, ci_b = median_ci(a), median_ci(b)
    if ci_a is None or ci_b is None:
        return Significance(False, "ci", None,
                            f"too few samples for a 99% CI of the median ({len(a)} and "
                            f"{len(b)}; 8 needed)")
    apart = ci_a[1] < ci_b[0] or ci_b[1] < ci_a[0]
    return Significance(apart, "ci", None,
                        f"99% CIs of the medians {'do not overlap' if apart else 'overlap'}")


# ------------------------------------------------------------------------------ comparison


@dataclass(frozen=True)
class TimeChange:
    median_a: float
    median_b: float
    ratio: float  # B / A
    n_a: int
    n_b: int
    significance: Significance


@dataclass(frozen=True)
class FigureChange:
    """A deterministic figure that differs: ``name`` A -> B; ``worse`` when B is worse."""

    column: str
    name: str
    a: Any
    b: Any
    worse: bool

    def describe(self) -> str:
        return f"{self.name} {_show(self.a)} -> {_show(self.b)}"


@dataclass(frozen=True)
class CaseComparison:
    case_id: str
    problem: str
    solver: str
    status_a: str
    status_b: str
    mark: Mark
    time: TimeChange | None
    figures: tuple[FigureChange, ...]

    @property
    def regression(self) -> bool:
        return self.mark in (Mark.WORSE, Mark.NEWLY_FAILING) or any(f.worse for f in self.figures)

    @property
    def changed(self) -> bool:
        """Flagged: a significant time change, a status change, or any deterministic change
        (``~`` alone is not a change)."""
        return self.mark not in (Mark.SAME, Mark.NOT_SIGNIFICANT) or bool(self.figures)


@dataclass(frozen=True)
class MachineDiff:
    key: str
    a: Any
    b: Any


@dataclass
class Comparison:
    run_a: Path
    run_b: Path
    run_id_a: str
    run_id_b: str
    factor: float
    use_stats: bool
    times_compared: bool
    machine_diffs: list[MachineDiff]
    machine_a: dict[str, Any] = field(default_factory=dict)
    machine_b: dict[str, Any] = field(default_factory=dict)
    cases: list[CaseComparison] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.regression]

    @property
    def changes(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.changed]

    def fails(self, fail_on: FailOn | None) -> bool:
        if fail_on is FailOn.REGRESSION:
            return bool(self.regressions)
        if fail_on is FailOn.ANY_CHANGE:
            return bool(self.changes)
        return False


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _show(value: Any) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def machine(meta: dict[str, Any]) -> dict[str, Any]:
    """The figures of meta.json's environment that say which machine a run was measured on."""
    env = meta.get("environment") or {}
    cuda = env.get("cuda")
    return {
        "cpu": env.get("cpu"),
        "platform": env.get("platform"),
        "hostname": env.get("hostname"),
        "torch": env.get("torch"),
        "cuda device": cuda.get("device_name") if isinstance(cuda, dict) else None,
    }


def machine_diffs(meta_a: dict[str, Any], meta_b: dict[str, Any]) -> list[MachineDiff]:
    ma, mb = machine(meta_a), machine(meta_b)
    return [MachineDiff(k, ma[k], mb[k]) for k in MACHINE_KEYS if ma[k] != mb[k]]


def _samples(row: pd.Series) -> list[float]:
    raw = row.get("time_samples_s")
    if isinstance(raw, (list, tuple)):
        return [float(x) for x in raw if not _missing(x)]
    return []


def _time_change(ra: pd.Series, rb: pd.Series, use_stats: bool) -> TimeChange | None:
    sa, sb = _samples(ra), _samples(rb)
    med_a = float(pd.Series(sa).median()) if sa else ra.get("time_median_s")
    med_b = float(pd.Series(sb).median()) if sb else rb.get("time_median_s")
    if _missing(med_a) or _missing(med_b) or float(med_a) <= 0 or float(med_b) <= 0:
        return None
    med_a, med_b = float(med_a), float(med_b)
    if not use_stats:
        sig = Significance(True, "none", None, "statistics off (--no-stats): the factor alone")
    elif sa and sb:
        sig = significance(sa, sb)
    else:
        sig = Significance(False, "none", None, "no raw samples to test")
    return TimeChange(med_a, med_b, med_b / med_a, len(sa), len(sb), sig)


def _time_mark(change: TimeChange | None, factor: float) -> Mark:
    if change is None:
        return Mark.SAME
    if change.ratio > factor:
        return Mark.WORSE if change.significance.significant else Mark.NOT_SIGNIFICANT
    if change.ratio < 1.0 / factor:
        return Mark.BETTER if change.significance.significant else Mark.NOT_SIGNIFICANT
    return Mark.SAME


def _differs(a: Any, b: Any, rel_tol: float = REL_TOL) -> bool:
    if _missing(a) and _missing(b):
        return False
    if _missing(a) or _missing(b):
        return True
    x, y = float(a), float(b)
    if math.isinf(x) or math.isinf(y):
        return x != y
    return abs(x - y) > rel_tol * max(abs(x), abs(y))


def _figures(ra: pd.Series, rb: pd.Series, status_a: str, status_b: str) -> list[FigureChange]:
    out: list[FigureChange] = []
    if status_a != status_b:
        out.append(FigureChange("status", "status", status_a, status_b,
                                worse=status_a == "ok" and status_b != "ok"))
    if status_a != "ok" or status_b != "ok":
        return out  # a failed case's counts and errors say where it stopped, not how well
    for col, name in COUNTS:
        a, b = ra.get(col), rb.get(col)
        if _differs(a, b, 0.0):
            out.append(FigureChange(col, name, a, b,
                                    worse=not _missing(a) and not _missing(b) and b > a))
    for col, name, larger_worse in ERRORS:
        a, b = ra.get(col), rb.get(col)
        if _differs(a, b):
            known = not _missing(a) and not _missing(b)
            worse = (b > a if larger_worse else b < a) if known else _missing(b)
            out.append(FigureChange(col, name, a, b, worse=bool(worse)))
    return out


def compare_frames(df_a: pd.DataFrame, df_b: pd.DataFrame, *, factor: float = DEFAULT_FACTOR,
                   use_stats: bool = True, times: bool = True
                   ) -> tuple[list[CaseComparison], list[str], list[str]]:
    """(matched cases, case ids only in A, only in B); ``times=False`` compares only the
    deterministic figures."""
    a = {str(r["case_id"]): r for _, r in df_a.iterrows()}
    b = {str(r["case_id"]): r for _, r in df_b.iterrows()}
    cases: list[CaseComparison] = []
    for cid in [c for c in a if c in b]:
        ra, rb = a[cid], b[cid]
        st_a, st_b = str(ra.get("status")), str(rb.get("status"))
        time = None
        if st_a == "ok" and st_b == "ok":
            mark = Mark.SAME
            if times:
                time = _time_change(ra, rb, use_stats)
                mark = _time_mark(time, factor)
        elif st_a == "ok":
            mark = Mark.NEWLY_FAILING
        elif st_b == "ok":
            mark = Mark.FIXED
        else:
            mark = Mark.SAME
        cases.append(CaseComparison(
            case_id=cid, problem=str(rb.get("problem")), solver=str(rb.get("solver")),
            status_a=st_a, status_b=st_b, mark=mark, time=time,
            figures=tuple(_figures(ra, rb, st_a, st_b)),
        ))
    return cases, [c for c in a if c not in b], [c for c in b if c not in a]


def compare_runs(run_a: Path, run_b: Path, *, factor: float = DEFAULT_FACTOR,
                 use_stats: bool = True, times: bool | None = None
                 ) -> tuple[Comparison, list[str]]:
    """Compare two run folders; (the comparison, warnings from reading them).

    ``times=None`` compares times only when the two runs were measured on the same machine.
    """
    from harness.results import open_run

    ra, rb = open_run(run_a), open_run(run_b)
    diffs = machine_diffs(ra.meta, rb.meta)
    compare_times = (not diffs) if times is None else times
    cases, only_a, only_b = compare_frames(ra.df, rb.df, factor=factor, use_stats=use_stats,
                                           times=compare_times)
    comp = Comparison(
        run_a=Path(run_a), run_b=Path(run_b),
        run_id_a=str(ra.meta.get("run_id") or Path(run_a).name),
        run_id_b=str(rb.meta.get("run_id") or Path(run_b).name),
        factor=factor, use_stats=use_stats, times_compared=compare_times,
        machine_diffs=diffs, machine_a=machine(ra.meta), machine_b=machine(rb.meta),
        cases=cases, only_a=only_a, only_b=only_b,
    )
    return comp, ra.warnings + rb.warnings


# ------------------------------------------------------------------------------ terminal


def machine_warning(comp: Comparison) -> str | None:
    """One line when the runs were measured on different machines, else None."""
    if not comp.machine_diffs:
        return None
    what = "; ".join(f"{d.key} {_show(d.a)!r} vs {_show(d.b)!r}" for d in comp.machine_diffs)
    then = ("times compared anyway (--times)" if comp.times_compared else
            "times are NOT compared, only status, NFE, steps and errors (--times compares them "
            "anyway)")
    return f"WARNING: the runs were measured on different machines ({what}): {then}"


def _seconds(value: float | None) -> str:
    from reports.format import seconds

    return "-" if value is None else seconds(value)


def _changes_text(case: CaseComparison) -> str:
    parts = [f.describe() for f in case.figures if f.column != "status"]
    if case.status_a != case.status_b:
        parts.insert(0, f"status {case.status_a} -> {case.status_b}")
    if case.time is not None and case.mark is not Mark.SAME:
        parts.append(case.time.significance.why)
    return "; ".join(parts)


def summary_line(comp: Comparison) -> str:
    count = {m: sum(c.mark is m for c in comp.cases) for m in Mark}
    figures = sum(bool([f for f in c.figures if f.column != "status"]) for c in comp.cases)
    parts = [f"{len(comp.cases)} cases matched"]
    if comp.times_compared:
        parts.append(f"{count[Mark.WORSE]} slower, {count[Mark.BETTER]} faster, "
                     f"{count[Mark.NOT_SIGNIFICANT]} beyond the factor but not significant")
    parts.append(f"{count[Mark.NEWLY_FAILING]} newly failing, {count[Mark.FIXED]} fixed, "
                 f"{figures} with changed NFE, steps or errors")
    parts.append(f"{len(comp.regressions)} regression(s), {len(comp.changes)} change(s)")
    return "; ".join(parts)


def terminal_lines(comp: Comparison, *, only_changed: bool = False) -> list[str]:
    """The comparison as asv prints one: a mark, before, after, ratio, then the case."""
    out: list[str] = []
    warning = machine_warning(comp)
    if warning:
        out.append(warning)
    out.append(f"A (before): {comp.run_a}  run {comp.run_id_a}")
    out.append(f"B (after):  {comp.run_b}  run {comp.run_id_b}")
    stats_rule = ("Mann-Whitney U p < 0.002, or disjoint 99% CIs of the medians"
                  if comp.use_stats else "no statistics (--no-stats)")
    timing = (f"times: ratio of medians beyond {comp.factor:g}x and significant ({stats_rule})"
              if comp.times_compared else "times: not compared")
    out.append(timing + f"; deterministic figures: any change beyond {REL_TOL:g} relative")
    out.append("")
    rows = [c for c in comp.cases if c.changed or c.mark is not Mark.SAME or not only_changed]
    header = ["", "before", "after", "ratio", "case", "changes"]
    cells = [header]
    for c in rows:
        t = c.time
        cells.append([
            str(c.mark),
            _seconds(t.median_a) if t else "-",
            _seconds(t.median_b) if t else "-",
            f"{t.ratio:.2f}" if t else "-",
            c.case_id,
            _changes_text(c),
        ])
    if rows:
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        right = {1, 2, 3}
        for r in cells:
            line = "  ".join(v.rjust(w) if i in right else v.ljust(w)
                             for i, (v, w) in enumerate(zip(r, widths, strict=True)))
            out.append(line.rstrip())
    else:
        out.append("no changed cases" if only_changed else "no cases in common")
    for label, ids in (("only in A", comp.only_a), ("only in B", comp.only_b)):
        if ids:
            out.append("")
            out.append(f"{label} ({len(ids)}):")
            out.extend(f"  {cid}" for cid in ids)
    out.append("")
    out.append("marks: " + "; ".join(f"{m} {t}" for m, t in MARK_MEANINGS.items())
               + "; blank: no change in time or status")
    out.append(summary_line(comp))
    return out
