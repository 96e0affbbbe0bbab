"""Compare two run folders case by case: what got slower or faster, and what changed at all.

Cases are matched by their identity: ``case_id`` (less the ``/controller=...`` and
``/backend=...`` parts a suite that asks for them adds, :func:`base_id`) with the step-size
``controller`` and the arithmetic ``backend`` the row records (a run written before those
columns records ``""``).
dopri5 under the Hairer controller in A is compared with dopri5 under the Hairer controller in
B, never with dopri5 under PID. After the exact matches, a row left over on each side with the
same case id is paired where that is unambiguous (one candidate each way) and nothing recorded
on both sides tells them apart: a controller recorded on one side only (a run from before the
column against one after it) does not keep two rows apart, two recorded controllers that
differ always do. Two recorded backends that differ (``host`` in A, ``tensor`` in B: the fast
path for small states no longer taken) are the same case run differently: they are paired,
the backend change is listed as a change, and the time is compared, as that is where such a
change shows. Where a case id alone does not name one row, the case is shown with its
controller (and backend): ``solve/.../b1 · pid``.

Two kinds of figures are compared, by different rules:

- **Wall time** is noisy. Following asv (airspeed velocity, ``asv compare`` and
  ``asv.step_detect``/``asv.statistics``), a time counts as changed only when the ratio of the
  medians is beyond a factor (default 1.1) *and* the difference is statistically significant.
  As asv does, the two-sided Mann–Whitney U test (p < 0.002) is used whenever it can reach
  that level for the two sample sizes, i.e. when its smallest attainable p,
  ``2 / C(n_a + n_b, min(n_a, n_b))``, is below 0.002 (3 vs 40 samples qualify, 6 vs 6 do
  not); otherwise the 99% confidence intervals of the two medians (order statistics, 8 or more
  samples a side) must not overlap. A side with too few samples for either is not significant,
  and the output says which side lacks samples. ``use_stats=False`` uses the factor alone.
  A training case has no raw samples: its ``time_train_s`` (else ``time_iter_median_s``) is
  compared by the factor alone and is never significant (``~`` at most).
- **Deterministic figures** (status, NFE, steps, backward NFE, errors; for gradient cases the
  gradient errors, backward steps and backward status; for training cases the losses, errors
  and iterations) have no noise: any change is reported, never explained away, beyond a
  tolerance that only absorbs round-off: counts exactly; errors and losses relative 1e-9 of the
  larger magnitude with an absolute floor of 1e-14; ``scd`` (digits) absolute 1e-6.
- A case in A but not in B is a regression (it vanished); a case in only one run is a change.
- Where a case was timed matters as much as how. Only the serial executor times a case alone:
  the process and dask executors run cases beside one another, contending for cores and
  memory bandwidth, so a row of theirs (``executor``; none: serial) is not trusted for a time
  comparison. A case whose rows carry different ``hardware`` labels in A and B was timed on
  different machines. As for runs measured on different machines (meta.json's environment),
  both are said in a warning and such a case's time is not compared unless ``--times`` asks;
  its deterministic figures are compared as always.

The marks are asv's: ``+`` slower (worse), ``-`` faster (better), ``~`` beyond the factor but
not significant, ``!`` newly failing (ok in A, not in B), blank for no change. asv shows a
fixed failure as a blank in green; a terminal without colour would lose it, so it is ``*``
here.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from reports.placement import SERIAL, counts_text, untrusted_counts

DEFAULT_FACTOR = 1.1
P_THRESHOLD = 0.002  # asv's threshold for the Mann-Whitney U test
CI_LEVEL = 0.99
MIN_SAMPLES_CI = 8  # the fewest samples whose [min, max] covers the median at 99%
REL_TOL = 1e-9  # errors and losses: a relative change beyond this (of the larger) is a change
ABS_FLOOR = 1e-14  # ... and beyond this absolute amount (round-off near zero is no change)
SCD_ABS_TOL = 1e-6  # digits: scd is a log10, so its round-off is absolute

# Counted figures: (column, what it is, True when more is worse), compared exactly. A figure
# missing on both sides is no change, so the gradient and training ones cost nothing elsewhere.
COUNTS: tuple[tuple[str, str, bool], ...] = (
    ("nfe", "NFE", True),
    ("n_steps", "steps", True),
    ("nfe_backward", "backward NFE", True),
    ("n_steps_backward", "backward steps", True),  # gradient cases; -1: unknown
    ("iteration_reached", "iterations reached", False),  # training cases
    ("iteration_to_target", "iterations to target", True),  # training; missing: never reached
)
# Error figures: (column, what it is, True when larger is worse), compared with a tolerance.
ERRORS: tuple[tuple[str, str, bool], ...] = (
    ("err_max", "max error", True),
    ("scd", "scd", False),
    ("grad_rel_err", "gradient error", True),  # gradient cases
    ("grad_rel_err_y0", "gradient error dL/dy0", True),
    ("grad_rel_err_theta", "gradient error dL/dtheta", True),
    ("loss_final", "final loss", True),  # training cases
    ("loss_best", "best loss", True),
    ("val_err", "validation error", True),
    ("test_error", "test error", True),
)
# A count whose missing value in B is worse than any number (never reached the target).
MISSING_IS_WORSE: frozenset[str] = frozenset({"iteration_to_target"})
# Counts where -1 means "the solver does not report it": a change to or from -1 is listed, but
# it is not a regression (nothing is known to be worse).
UNKNOWN_IS_MINUS_ONE: frozenset[str] = frozenset({"n_steps_backward"})
# Time figures without raw samples, in order of preference, when there are no samples.
TIME_FALLBACKS: tuple[str, ...] = ("time_median_s", "time_train_s", "time_iter_median_s")
# What describes the machine a run was measured on (meta.json's environment).
MACHINE_KEYS: tuple[str, ...] = ("cpu", "n_cores", "platform", "hostname", "torch",
                                 "torch_threads", "cuda device")


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
    Mark.NOT_SIGNIFICANT: "beyond the factor, not significant (or too few samples to tell)",
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


def min_u_p_value(n_a: int, n_b: int) -> float:
    """The smallest two-sided p-value the exact Mann–Whitney U test can give for sample sizes
    ``n_a`` and ``n_b``: ``2 / C(n_a + n_b, min(n_a, n_b))`` (every sample of one side below
    every sample of the other), capped at 1."""
    if n_a < 1 or n_b < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, min(n_a, n_b)))


def u_test_can_decide(n_a: int, n_b: int) -> bool:
    """asv's rule: use the U test when it can reach p < 0.002 for these sample sizes."""
    return min_u_p_value(n_a, n_b) < P_THRESHOLD


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


EXACT_U_MAX_PRODUCT = 10_000  # exact U p-values up to n_a * n_b of this (100 vs 100: ~0.03 s)
EXACT_PERMUTATIONS_MAX = 20_000  # with ties: exact over every split up to this many (~0.3 s)


def _u_p_value(a: list[float], b: list[float]) -> float:
    """Two-sided Mann–Whitney U p-value, exact where that is cheap: without ties, scipy's
    exact distribution (up to n_a * n_b = 10 000); with ties, the exact permutation
    distribution of U over every split of the pooled samples (up to 20 000 splits); otherwise
    scipy's tie-corrected normal approximation, accurate for large samples. (The normal
    approximation overstates p for small ones: 9 vs 5 fully separated gives 0.0034, not the
    exact 2/2002 = 0.001.)"""
    no_ties = len(set(a) | set(b)) == len(a) + len(b)
    splits = math.comb(len(a) + len(b), min(len(a), len(b)))
    if no_ties and len(a) * len(b) <= EXACT_U_MAX_PRODUCT:
        method: Any = "exact"
    elif not no_ties and splits <= EXACT_PERMUTATIONS_MAX:
        method = stats.PermutationMethod(n_resamples=splits)
    else:
        method = "asymptotic"
    return float(stats.mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue)


def significance(a: Sequence[float], b: Sequence[float], *,
                 rule: str | None = None) -> Significance:
    """Whether samples ``a`` and ``b`` differ.

    The U test when it can reach p < 0.002 for these sample sizes (:func:`u_test_can_decide`),
    else non-overlapping 99% CIs of the medians; a side with too few samples for a CI (fewer
    than 8): not significant, and ``why`` names that side. ``rule="ci"`` forces the CI rule.
    """
    a = [float(x) for x in a]
    b = [float(x) for x in b]
    if rule is None and u_test_can_decide(len(a), len(b)):
        p = _u_p_value(a, b)
        return Significance(p < P_THRESHOLD, "mann-whitney", p,
                            f"Mann-Whitney U p={p:.2g} ({'<' if p < P_THRESHOLD else '>='} "
                            f"{P_THRESHOLD})")
    ci_a, ci_b = median_ci(a), median_ci(b)
    if ci_a is None or ci_b is None:
        short = [f"{side} has {len(xs)}" for side, xs, ci in (("A", a, ci_a), ("B", b, ci_b))
                 if ci is None]
        return Significance(False, "ci", None,
                            f"too few samples to tell: {' and '.join(short)}, and a 99% CI of "
                            f"the median needs {MIN_SAMPLES_CI} a side (the U test cannot "
                            f"reach p < {P_THRESHOLD} with {len(a)} vs {len(b)})")
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
    source: str = "time_samples_s"  # the column the times come from


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
    case_id: str  # as shown: the row's case_id, plus " · controller" where the id is shared
    problem: str
    solver: str
    status_a: str
    status_b: str
    mark: Mark
    time: TimeChange | None
    figures: tuple[FigureChange, ...]
    # why its time was not compared although both sides are ok: "" when it was (or could
    # not be), else e.g. "B ran it on the dask executor"
    untimed: str = ""
    controller: str = ""  # the step-size controller (B's, else A's); "" where not recorded
    backend: str = ""  # the backend (B's, else A's); "" where not recorded

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
    machine_unknown: bool = False  # neither run records its machine: not known to be the same
    machine_a: dict[str, Any] = field(default_factory=dict)
    machine_b: dict[str, Any] = field(default_factory=dict)
    cases: list[CaseComparison] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    # rows per executor other than serial, in each run: timings not trusted for comparison
    untrusted_a: dict[str, int] = field(default_factory=dict)
    untrusted_b: dict[str, int] = field(default_factory=dict)
    # matched cases whose rows carry different hardware labels: (A's label, B's label): count
    hardware_pairs: dict[tuple[str, str], int] = field(default_factory=dict)
    trusted_only: bool = False  # times of untrusted or cross-hardware cases left out

    @property
    def regressions(self) -> list[CaseComparison]:
        """The matched cases that regressed (see :attr:`n_regressions` for the count that
        also holds the cases missing from B)."""
        return [c for c in self.cases if c.regression]

    @property
    def changes(self) -> list[CaseComparison]:
        """The matched cases that changed (see :attr:`n_changes`)."""
        return [c for c in self.cases if c.changed]

    @property
    def n_regressions(self) -> int:
        """Regressed matched cases plus the cases only in A (a case that vanished)."""
        return len(self.regressions) + len(self.only_a)

    @property
    def n_changes(self) -> int:
        """Changed matched cases plus the cases in only one of the runs."""
        return len(self.changes) + len(self.only_a) + len(self.only_b)

    @property
    def nothing_matched(self) -> bool:
        """A has cases but none of them is in B."""
        return not self.cases and bool(self.only_a)

    def fails(self, fail_on: FailOn | None) -> bool:
        if fail_on is FailOn.REGRESSION:
            return self.n_regressions > 0
        if fail_on is FailOn.ANY_CHANGE:
            return self.n_changes > 0
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
        "n_cores": env.get("n_cores"),
        "platform": env.get("platform"),
        "hostname": env.get("hostname"),
        "torch": env.get("torch"),
        "torch_threads": env.get("torch_threads"),
        # a recorded null is "no GPU"; a missing key is unknown
        "cuda device": (cuda.get("device_name") if isinstance(cuda, dict)
                        else "none" if "cuda" in env and cuda is None else cuda),
    }


def machine_diffs(meta_a: dict[str, Any], meta_b: dict[str, Any]) -> list[MachineDiff]:
    ma, mb = machine(meta_a), machine(meta_b)
    return [MachineDiff(k, ma[k], mb[k]) for k in MACHINE_KEYS if ma[k] != mb[k]]


def machine_unknown(meta_a: dict[str, Any], meta_b: dict[str, Any]) -> bool:
    """True when neither run records any of :data:`MACHINE_KEYS`: the machines are not known
    to be the same (one that records them and one that does not differ, by machine_diffs)."""
    return all(_missing(v) for m in (machine(meta_a), machine(meta_b)) for v in m.values())


def positive_real(x: Any) -> float | None:
    """``x`` as a float when it is a finite real number above 0 (not a bool, string, list,
    None, NaN or inf), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return None
    v = float(x)
    return v if math.isfinite(v) and v > 0 else None


def valid_samples(raw: Any) -> list[float] | None:
    """The finite, positive real numbers of a ``time_samples_s`` value, in order; None when
    it holds no list of samples at all (missing)."""
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)):
        return None
    return [v for v in map(positive_real, raw) if v is not None]


def _time_change(ra: pd.Series, rb: pd.Series, use_stats: bool) -> TimeChange | None:
    """Raw samples when both sides have them; a side whose samples hold no valid number: no
    verdict; no samples on either side: the first of :data:`TIME_FALLBACKS` that both sides
    have, compared by the factor alone."""
    sa, sb = valid_samples(ra.get("time_samples_s")), valid_samples(rb.get("time_samples_s"))
    if sa == [] or sb == []:
        return None  # samples recorded, none of them a usable time
    if sa and sb:
        med_a, med_b = float(np.median(sa)), float(np.median(sb))
        if not use_stats:
            sig = Significance(True, "none", None,
                               "statistics off (--no-stats): the factor alone")
        else:
            sig = significance(sa, sb)
        return TimeChange(med_a, med_b, med_b / med_a, len(sa), len(sb), sig)
    for col in TIME_FALLBACKS:
        fa, fb = positive_real(ra.get(col)), positive_real(rb.get(col))
        if fa is not None and fb is not None:
            break
    else:
        return None
    if not use_stats:
        sig = Significance(True, "none", None,
                           f"statistics off (--no-stats): the factor alone ({col})")
    else:
        sig = Significance(False, "none", None,
                           f"no raw samples, one {col} a side: factor only, not testable")
    return TimeChange(fa, fb, fb / fa, 0, 0, sig, source=col)


def _time_mark(change: TimeChange | None, factor: float) -> Mark:
    if change is None:
        return Mark.SAME
    if change.ratio > factor:
        return Mark.WORSE if change.significance.significant else Mark.NOT_SIGNIFICANT
    if change.ratio < 1.0 / factor:
        return Mark.BETTER if change.significance.significant else Mark.NOT_SIGNIFICANT
    return Mark.SAME


def _number(value: Any) -> float | None:
    """A figure as a float; None when missing or not a number (a figure that is not a number
    is compared as text by the caller)."""
    if _missing(value) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _differs(a: Any, b: Any, rel_tol: float = REL_TOL, abs_tol: float = ABS_FLOOR) -> bool:
    """Whether two figures differ beyond round-off: ``|a - b| > max(rel_tol * max(|a|, |b|),
    abs_tol)``; missing on one side only is a difference, on both none."""
    if _missing(a) and _missing(b):
        return False
    if _missing(a) or _missing(b):
        return True
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return str(a) != str(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) != math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x != y
    return abs(x - y) > max(rel_tol * max(abs(x), abs(y)), abs_tol)


def _worse(col: str, a: Any, b: Any, larger_worse: bool, *, count: bool) -> bool:
    """Whether B's figure is worse than A's. A figure that vanished from B is worse for an
    error (and for iterations to target: never reached), not for a count; one that appeared
    is not worse (iterations to target: reached now)."""
    x, y = _number(a), _number(b)
    if x is None or y is None:
        if col in MISSING_IS_WORSE:
            return y is None and x is not None
        return y is None and not count
    if col in UNKNOWN_IS_MINUS_ONE and (x < 0 or y < 0):
        return False
    return y > x if larger_worse else y < x


def _figures(ra: pd.Series, rb: pd.Series, status_a: str, status_b: str) -> list[FigureChange]:
    out: list[FigureChange] = []
    if status_a != status_b:
        out.append(FigureChange("status", "status", status_a, status_b,
                                worse=status_a == "ok" and status_b != "ok"))
    if status_a != "ok" or status_b != "ok":
        return out  # a failed case's counts and errors say where it stopped, not how well
    sba, sbb = ra.get("status_backward"), rb.get("status_backward")
    if not (_missing(sba) and _missing(sbb)) and str(sba) != str(sbb):
        a_txt = None if _missing(sba) else str(sba)
        b_txt = None if _missing(sbb) else str(sbb)
        out.append(FigureChange("status_backward", "backward status", a_txt, b_txt,
                                worse=a_txt == "ok" and b_txt != "ok"))
    for col, name, more_worse in COUNTS:
        a, b = ra.get(col), rb.get(col)
        if _differs(a, b, 0.0, 0.0):
            out.append(FigureChange(col, name, a, b, worse=_worse(col, a, b, more_worse,
                                                                   count=True)))
    for col, name, larger_worse in ERRORS:
        a, b = ra.get(col), rb.get(col)
        tol = (0.0, SCD_ABS_TOL) if col == "scd" else (REL_TOL, ABS_FLOOR)
        if _differs(a, b, *tol):
            out.append(FigureChange(col, name, a, b, worse=_worse(col, a, b, larger_worse,
                                                                   count=False)))
    return out


def _label(value: Any) -> str | None:
    """A row's executor or hardware as stripped text; None when missing or empty."""
    return None if _missing(value) or not str(value).strip() else str(value).strip()


_EXECUTOR = "executor"  # the phrases of untimed_why, which the warnings count by
_HARDWARE = "different hardware"


def executor_of(row: pd.Series) -> str:
    """The row's executor; ``serial`` where it has none (a run written before executors)."""
    return _label(row.get("executor")) or SERIAL


def untimed_why(ra: pd.Series, rb: pd.Series) -> str:
    """Why the time of a case with rows ``ra`` (A) and ``rb`` (B) is not to be compared:
    a side ran on an executor other than serial, or the two carry different hardware
    labels; ``""`` when neither (a side without a label is on its run's machine, which the
    run-level machine check covers)."""
    why = [f"{side} ran it on the {ex} {_EXECUTOR}" for side, ex in
           (("A", executor_of(ra)), ("B", executor_of(rb))) if ex != SERIAL]
    hw_a, hw_b = _label(ra.get("hardware")), _label(rb.get("hardware"))
    if hw_a is not None and hw_b is not None and hw_a != hw_b:
        why.append(f"{_HARDWARE} ({hw_a!r} vs {hw_b!r})")
    return "; ".join(why)


IDENTITY: tuple[str, ...] = ("controller", "backend")
"""The columns that, with ``case_id``, say which case a row is (``""`` where not recorded)."""
CONTROLLER, BACKEND = IDENTITY


_ID_SETTING = re.compile(r"/(?:controller|backend)=[^/]*")
"""The parts of a case id that name a controller or backend the suite asked for
(``.../b1/controller=pid``: :attr:`harness.suite.Case.case_id`); the row's own columns say
which ran, so the match reads those instead."""


def base_id(case_id: str) -> str:
    """``case_id`` without its ``/controller=...`` and ``/backend=...`` parts, so that a
    default run's ``.../b1`` (controller hairer) and a suite's ``.../b1/controller=hairer``
    are the same case."""
    return _ID_SETTING.sub("", case_id)


@dataclass(frozen=True)
class _Row:
    """One row of a run and its identity."""

    row: pd.Series
    case_id: str  # as written
    base: str  # :func:`base_id` of it
    controller: str
    backend: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.base, self.controller, self.backend)


def identity_of(row: pd.Series) -> tuple[str, str, str]:
    """``(base case id, controller, backend)``: what a row is matched by (:func:`base_id`);
    a controller or backend that is missing (a run written before the column) or empty is
    ``""``."""
    return (base_id(str(row["case_id"])), _label(row.get(CONTROLLER)) or "",
            _label(row.get(BACKEND)) or "")


def _rows(df: pd.DataFrame) -> list[_Row]:
    """Each row of ``df`` once per identity (a later duplicate is left out, as the loader
    leaves out a repeated case)."""
    seen: dict[tuple[str, str, str], _Row] = {}
    for _, r in df.iterrows():
        key = identity_of(r)
        seen.setdefault(key, _Row(r, str(r["case_id"]), *key))
    return list(seen.values())


def _compatible(a: _Row, b: _Row) -> bool:
    """Whether two leftover rows of one case id may be the same case: their controllers agree
    or one side does not record it (backends may differ: the change is listed)."""
    return a.controller == b.controller or not a.controller or not b.controller


def match_rows(df_a: pd.DataFrame, df_b: pd.DataFrame
               ) -> tuple[list[tuple[_Row, _Row]], list[_Row], list[_Row]]:
    """(pairs, rows only in A, rows only in B), A's order: exact identities first, then the
    leftovers of one (base) case id paired where each has exactly one :func:`_compatible`
    partner."""
    return _match(_rows(df_a), _rows(df_b))


def _match(rows_a: list[_Row], rows_b: list[_Row]
           ) -> tuple[list[tuple[_Row, _Row]], list[_Row], list[_Row]]:
    by_key_b = {r.key: r for r in rows_b}
    matched: dict[int, _Row] = {}  # index in rows_a -> its B row
    used_b: set[tuple[str, str, str]] = set()
    for i, ra in enumerate(rows_a):
        rb = by_key_b.get(ra.key)
        if rb is not None:
            matched[i] = rb
            used_b.add(rb.key)
    left_a: dict[str, list[int]] = {}  # base id -> A's leftover rows (their index)
    for i, ra in enumerate(rows_a):
        if i not in matched:
            left_a.setdefault(ra.base, []).append(i)
    left_b: dict[str, list[_Row]] = {}
    for rb in rows_b:
        if rb.key not in used_b and rb.base in left_a:
            left_b.setdefault(rb.base, []).append(rb)
    for i in [i for ids in left_a.values() for i in ids]:
        ra = rows_a[i]
        others = [rb for rb in left_b.get(ra.base, []) if _compatible(ra, rb)]
        if len(others) != 1:
            continue
        rivals = [j for j in left_a[ra.base]
                  if j not in matched and _compatible(rows_a[j], others[0])]
        if rivals == [i]:
            matched[i] = others[0]
            used_b.add(others[0].key)
            left_b[ra.base].remove(others[0])
    pairs = [(rows_a[i], matched[i]) for i in sorted(matched)]
    only_a = [ra for i, ra in enumerate(rows_a) if i not in matched]
    only_b = [rb for rb in rows_b if rb.key not in used_b]
    return pairs, only_a, only_b


def _display_names(rows_a: Sequence[_Row], rows_b: Sequence[_Row], only_a: Sequence[_Row],
                   only_b: Sequence[_Row]) -> dict[tuple[str, str, str], str]:
    """The name each row is shown by: its case id, plus `` · controller`` where that id
    alone does not name one case (one run holds it twice, or the runs record two different
    controllers for it), plus `` · backend`` where even that does not (one run holds the id
    and controller twice, or each run has one left over)."""
    per_run: set[str] = set()  # case ids a run holds more than once
    twice: set[tuple[str, str]] = set()  # (case id, controller) a run holds more than once
    for rows in (rows_a, rows_b):
        ids = pd.Series([r.case_id for r in rows], dtype=object)
        per_run |= set(ids[ids.duplicated()])
        both = pd.Series([(r.case_id, r.controller) for r in rows], dtype=object)
        twice |= set(both[both.duplicated()])
    twice |= ({(r.case_id, r.controller) for r in only_a}
              & {(r.case_id, r.controller) for r in only_b})
    named: dict[str, set[str]] = {}
    for r in (*rows_a, *rows_b):
        if r.controller:
            named.setdefault(r.case_id, set()).add(r.controller)
    out = {}
    for r in (*rows_a, *rows_b):
        parts = [r.case_id]
        if r.case_id in per_run or len(named.get(r.case_id, ())) > 1:
            parts.append(r.controller or "controller not recorded")
        if (r.case_id, r.controller) in twice:
            parts.append(r.backend or "backend not recorded")
        out[r.key] = " · ".join(parts)
    return out


def _backend_change(a: _Row, b: _Row) -> list[FigureChange]:
    """The backend as a listed change where both sides record it and it differs (not worse
    in itself: the time says whether it cost)."""
    if a.backend and b.backend and a.backend != b.backend:
        return [FigureChange(BACKEND, "backend", a.backend, b.backend, worse=False)]
    return []


def compare_frames(df_a: pd.DataFrame, df_b: pd.DataFrame, *, factor: float = DEFAULT_FACTOR,
                   use_stats: bool = True, times: bool = True, trusted_only: bool = False
                   ) -> tuple[list[CaseComparison], list[str], list[str]]:
    """(matched cases, cases only in A, only in B), matched by :func:`match_rows`;
    ``times=False`` compares only the deterministic figures; ``trusted_only`` leaves out the
    times of cases that :func:`untimed_why` gives a reason for (each case's ``untimed`` says
    it). A case is named by its case id, with its controller where that id is shared."""
    rows_a, rows_b = _rows(df_a), _rows(df_b)
    pairs, only_a, only_b = _match(rows_a, rows_b)
    names = _display_names(rows_a, rows_b, only_a, only_b)
    cases: list[CaseComparison] = []
    for xa, xb in pairs:
        ra, rb = xa.row, xb.row
        st_a, st_b = str(ra.get("status")), str(rb.get("status"))
        time = None
        untimed = ""
        if st_a == "ok" and st_b == "ok":
            mark = Mark.SAME
            untimed = untimed_why(ra, rb) if times and trusted_only else ""
            if times and not untimed:
                time = _time_change(ra, rb, use_stats)
                mark = _time_mark(time, factor)
        elif st_a == "ok":
            mark = Mark.NEWLY_FAILING
        elif st_b == "ok":
            mark = Mark.FIXED
        else:
            mark = Mark.SAME
        cases.append(CaseComparison(
            case_id=names[xb.key], problem=str(rb.get("problem")), solver=str(rb.get("solver")),
            status_a=st_a, status_b=st_b, mark=mark, time=time,
            figures=tuple(_backend_change(xa, xb) + _figures(ra, rb, st_a, st_b)),
            untimed=untimed, controller=xb.controller or xa.controller,
            backend=xb.backend or xa.backend,
        ))
    return cases, [names[r.key] for r in only_a], [names[r.key] for r in only_b]


def hardware_pairs(df_a: pd.DataFrame, df_b: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Per (A's hardware label, B's label) that differ, how many matched cases ran so; rows
    without a label are left out (their run's meta.json says where they ran)."""
    if "hardware" not in df_a or "hardware" not in df_b:
        return {}
    pairs, _, _ = match_rows(df_a, df_b)
    out: dict[tuple[str, str], int] = {}
    for xa, xb in pairs:
        hw_a, hw_b = _label(xa.row.get("hardware")), _label(xb.row.get("hardware"))
        if hw_a is not None and hw_b is not None and hw_a != hw_b:
            out[(hw_a, hw_b)] = out.get((hw_a, hw_b), 0) + 1
    return dict(sorted(out.items()))


def compare_runs(run_a: Path, run_b: Path, *, factor: float = DEFAULT_FACTOR,
                 use_stats: bool = True, times: bool | None = None
                 ) -> tuple[Comparison, list[str]]:
    """Compare two run folders; (the comparison, warnings from reading them).

    ``times=None`` compares times only when the two runs were measured on the same machine,
    and then only of the cases timed by the serial executor on the same hardware in both.
    """
    from harness.results import open_run

    ra, rb = open_run(run_a), open_run(run_b)
    diffs = machine_diffs(ra.meta, rb.meta)
    unknown = machine_unknown(ra.meta, rb.meta)
    compare_times = (not diffs and not unknown) if times is None else times
    cases, only_a, only_b = compare_frames(ra.df, rb.df, factor=factor, use_stats=use_stats,
                                           times=compare_times, trusted_only=times is None)
    comp = Comparison(
        run_a=Path(run_a), run_b=Path(run_b),
        run_id_a=str(ra.meta.get("run_id") or Path(run_a).name),
        run_id_b=str(rb.meta.get("run_id") or Path(run_b).name),
        factor=factor, use_stats=use_stats, times_compared=compare_times,
        machine_diffs=diffs, machine_unknown=unknown,
        machine_a=machine(ra.meta), machine_b=machine(rb.meta),
        cases=cases, only_a=only_a, only_b=only_b,
        untrusted_a=untrusted_counts(ra.df), untrusted_b=untrusted_counts(rb.df),
        hardware_pairs=hardware_pairs(ra.df, rb.df), trusted_only=times is None,
    )
    return comp, ra.warnings + rb.warnings


# ------------------------------------------------------------------------------ terminal


def machine_warning(comp: Comparison) -> str | None:
    """One line when the runs were measured on different machines, or on machines not known
    to be the same (neither run records its environment), else None."""
    if not comp.machine_diffs and not comp.machine_unknown:
        return None
    then = ("times compared anyway (--times)" if comp.times_compared else
            "times are NOT compared, only status, NFE, steps and errors (--times compares them "
            "anyway)")
    if comp.machine_unknown:
        return ("WARNING: the machines are not known to be the same (neither run records its "
                f"environment in meta.json): {then}")
    what = "; ".join(f"{d.key} {_show(d.a)!r} vs {_show(d.b)!r}" for d in comp.machine_diffs)
    return f"WARNING: the runs were measured on different machines ({what}): {then}"


def _then(comp: Comparison, reason: str) -> str:
    """What became of the times of the cases that ``reason`` (a phrase of
    :func:`untimed_why`) keeps from being compared."""
    if not comp.times_compared:
        return "times are not compared anyway"
    if not comp.trusted_only:
        return "their times are compared anyway (--times)"
    n = sum(reason in c.untimed for c in comp.cases)
    if n:
        return (f"the times of {n} such matched case(s) are NOT compared, only status, NFE, "
                "steps and errors (--times compares them anyway)")
    return "none of them is a case both runs finished ok, so no time of theirs is compared"


def executor_warning(comp: Comparison) -> str | None:
    """One line when either run has rows from an executor other than serial (process,
    dask): their timings are not trusted for comparison; else None."""
    if not comp.untrusted_a and not comp.untrusted_b:
        return None
    sides = "; ".join(f"{side} has {counts_text(counts)}" for side, counts in
                      (("A", comp.untrusted_a), ("B", comp.untrusted_b)) if counts)
    return (f"WARNING: timings not trusted for comparison: {sides}, which ran beside other "
            "cases, contending for cores and memory bandwidth (only serial timings are "
            f"trusted): {_then(comp, _EXECUTOR)}")


def hardware_warning(comp: Comparison) -> str | None:
    """One line when matched cases ran on different hardware in A and B (the rows'
    ``hardware`` labels, beyond the runs' machines in meta.json); else None."""
    if not comp.hardware_pairs:
        return None
    n = sum(comp.hardware_pairs.values())
    what = "; ".join(f"{k} case(s) {a!r} in A vs {b!r} in B"
                     for (a, b), k in comp.hardware_pairs.items())
    return (f"WARNING: {n} matched case(s) ran on different hardware in the two runs ({what}): "
            f"{_then(comp, _HARDWARE)}")


def warnings_of(comp: Comparison) -> list[str]:
    """Every warning line about where the runs were measured: machines, executors, hardware."""
    return [w for w in (machine_warning(comp), executor_warning(comp), hardware_warning(comp))
            if w]


STATS_RULE = ("Mann-Whitney U p < 0.002 when the sample sizes allow it (smallest attainable p "
              "2/C(n_a+n_b, min(n_a, n_b)) below 0.002), else disjoint 99% CIs of the medians "
              "(8 or more samples a side); fewer: not significant (~)")


def _seconds(value: float | None) -> str:
    from reports.format import seconds

    return "-" if value is None else seconds(value)


def _changes_text(case: CaseComparison) -> str:
    parts = [f.describe() for f in case.figures if f.column != "status"]
    if case.status_a != case.status_b:
        parts.insert(0, f"status {case.status_a} -> {case.status_b}")
    if case.time is not None and case.mark is not Mark.SAME:
        if case.time.source != "time_samples_s":
            parts.append(f"time from {case.time.source}")
        parts.append(case.time.significance.why)
    if case.untimed:
        parts.append(f"time not compared: {case.untimed}")
    return "; ".join(parts)


def summary_line(comp: Comparison) -> str:
    count = {m: sum(c.mark is m for c in comp.cases) for m in Mark}
    figures = sum(bool([f for f in c.figures if f.column != "status"]) for c in comp.cases)
    parts = [f"{len(comp.cases)} cases matched"]
    if comp.times_compared:
        parts.append(f"{count[Mark.WORSE]} slower, {count[Mark.BETTER]} faster, "
                     f"{count[Mark.NOT_SIGNIFICANT]} beyond the factor but not significant")
    parts.append(f"{count[Mark.NEWLY_FAILING]} newly failing, {count[Mark.FIXED]} fixed, "
                 f"{figures} with changed NFE, steps, errors or other deterministic figures")
    if comp.only_a or comp.only_b:
        parts.append(f"{len(comp.only_a)} only in A (counted as regressions), "
                     f"{len(comp.only_b)} only in B")
    parts.append(f"{comp.n_regressions} regression(s), {comp.n_changes} change(s)")
    return "; ".join(parts)


def nothing_matched_line(comp: Comparison) -> str | None:
    if not comp.nothing_matched:
        return None
    return (f"NO CASE MATCHED: none of A's {len(comp.only_a)} case(s) is in B; each counts as a "
            "regression (--fail-on regression exits 1)")


def terminal_lines(comp: Comparison, *, only_changed: bool = False) -> list[str]:
    """The comparison as asv prints one: a mark, before, after, ratio, then the case."""
    out: list[str] = list(warnings_of(comp))
    out.append(f"A (before): {comp.run_a}  run {comp.run_id_a}")
    out.append(f"B (after):  {comp.run_b}  run {comp.run_id_b}")
    stats_rule = STATS_RULE if comp.use_stats else "no statistics (--no-stats)"
    timing = (f"times: ratio of medians beyond {comp.factor:g}x and significant ({stats_rule})"
              if comp.times_compared else "times: not compared")
    out.append(timing + f"; deterministic figures: any change beyond round-off (counts exact; "
               f"errors {REL_TOL:g} relative, at least {ABS_FLOOR:g}; scd {SCD_ABS_TOL:g} digits)")
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
    for label, note, ids in (("only in A", " - missing from B, counted as regressions",
                              comp.only_a),
                             ("only in B", " - new in B, counted as changes", comp.only_b)):
        if ids:
            out.append("")
            out.append(f"{label} ({len(ids)}){note}:")
            out.extend(f"  {cid}" for cid in ids)
    out.append("")
    out.append("marks: " + "; ".join(f"{m} {t}" for m, t in MARK_MEANINGS.items())
               + "; blank: no change in time or status")
    nothing = nothing_matched_line(comp)
    if nothing:
        out.append(nothing)
    out.append(summary_line(comp))
    return out
