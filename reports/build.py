"""Build one self-contained HTML report from a run folder.

``build_report(run_dir)`` reads the run through :func:`harness.results.open_run` (reports
never run a solver) and writes ``run_dir/report.html``: one file, CSS, SVG figures and a
small script (sortable and filterable tables) inline, no external URL, readable offline and
attachable to an issue. The page is drawn by the Jinja2 templates in ``templates/`` with
autoescape on: every string from a plugin, a suite file or an error message is escaped, and
only :class:`reports.markup.Markup` fragments (figures, the sections other modules build)
go in as they are.

Sections, in order and by id: ``header``, ``overview`` (what ran, the counts, the headline
findings; its solve part is ``summary``), ``problems`` (one ``problem-<name>`` per problem),
``convergence``, ``gradients``, ``training``, ``failures``, ``environment``, ``schema``.

Overview, problems and convergence use only plain solves (``kind == "solve"``); the gradient
cases have their own section (:mod:`reports.gradient_section`), the training cases theirs
(:mod:`reports.training`, which also reads each case's per-iteration records from the run
folder). The header, the counts and the failures section cover every row. Lines of
results.jsonl the loader could not use (a torn last line, garbage, a repeated case) are
listed in a warning block in the header, so nothing is left out silently.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from harness.results import COLUMNS, REPORT_FILE, open_run
from reports import figures
from reports import findings as fnd
from reports import format as fmt
from reports.convergence import (
    PRE_ASYMPTOTIC_MAX,
    ROUNDOFF_FACTOR,
    OrderFit,
    fit_series,
    time_span,
)
from reports.figures import convergence_svg, series_styles, work_precision_svg
from reports.gradient_section import gradients_section
from reports.gradients import gradient_rows, solve_rows
from reports.markup import Markup, esc, join, slug, tag
from reports.placement import (
    executor_counts,
    hardware_counts,
    hardware_varies,
    mixed_backend_text,
    untrusted_timing_text,
)
from reports.summary import add_series, ok_rows
from reports.tables import (
    Cell,
    Table,
    as_cell,
    cases_table,
    environment_pairs,
    failure_table,
    num,
    number,
    rank_table,
    ratio_text,
    render_table,
    solvers_table,
)
from reports.training import train_rows, training_failures_table, training_section

TEMPLATES = Path(__file__).parent / "templates"
SECTION_IDS = ("header", "overview", "summary", "more-findings", "problems", "convergence",
               "gradients", "training", "failures", "environment", "schema")
NAV_IDS = tuple(s for s in SECTION_IDS if s not in ("header", "summary", "more-findings"))
OPEN_MAX = 4
"""Problems (and convergence blocks) are folded in ``<details>``; they start open only when
there are at most this many, so a run of 30 problems stays a readable list."""
MAX_WARNINGS = 10  # shown in the header; the rest are counted
TOLERANCE_FIGURES = True
"""Draw each problem's tolerance-proportionality figure where :mod:`reports.figures` has
``tolerance_svg`` (one more ``<svg>`` per problem with adaptive cases)."""


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates' Jinja2 environment: autoescape on, undefined names an error."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.globals["as_cell"] = as_cell
    return env


def build_report(run_dir: str | Path, out: Path | None = None) -> Path:
    """Write the HTML report of ``run_dir`` to ``out`` (default ``run_dir/report.html``).

    Works for any run the loader accepts: an interrupted one, one with no rows yet, one
    whose every case failed. The file is written to a temporary name and renamed, so a
    reader never sees half a report. Returns the path written.
    """
    run_dir = Path(run_dir)
    run = open_run(run_dir)
    page = render_report(run.meta, run.df, fallback_id=run_dir.name, warnings=run.warnings,
                         run_dir=run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


def render_report(meta: Mapping[str, Any], df: pd.DataFrame, fallback_id: str = "unknown",
                  warnings: Sequence[str] = (), run_dir: str | Path | None = None) -> str:
    """The report page as a string (``build_report`` without writing it). ``warnings``
    (what the loader could not read, :attr:`harness.results.Run.warnings`) go in the header;
    ``run_dir`` is where the training cases' records files are (None: the Training section
    leaves their curves out and says so)."""
    df = _with_series(df)
    n_figures = _figures_expected(solve_rows(df))
    workers = _workers(n_figures)
    pool = None
    if workers > 1:
        try:
            pool = _pool(workers)
        except (OSError, ValueError, NotImplementedError, ImportError):
            pool = None  # no processes here (a sandbox, no semaphores): draw serially
    if pool is not None:
        try:
            with pool:
                return _render(meta, df, fallback_id, warnings, run_dir, _Figures(pool))
        except _FigureFailure:
            pass  # a figure failed in a worker: the serial build draws it, or says why
    return _render(meta, df, fallback_id, warnings, run_dir, _Figures(None))


def _render(meta: Mapping[str, Any], df: pd.DataFrame, fallback_id: str,
            warnings: Sequence[str], run_dir: str | Path | None, drawn: _Figures) -> str:
    run_id = fmt.text(meta.get("run_id")) if not fmt.is_missing(meta.get("run_id")) else fallback_id
    ctx = _Context(meta, df, drawn)
    env = environment()
    sections = [
        env.get_template("overview.html.j2").render(o=_overview(ctx)),
        env.get_template("problems.html.j2").render(p=_problems(ctx), open_max=OPEN_MAX),
        _convergence(ctx),
        gradients_section(df, ctx.figure_prefix),
        training_section(df, ctx.figure_prefix, run_dir, meta.get("tasks")),
        env.get_template("failures.html.j2").render(f=_failures(df)),
        env.get_template("environment.html.j2").render(e=_environment(meta, ctx)),
        env.get_template("schema.html.j2").render(columns=COLUMNS),
    ]
    page = env.get_template("report.html.j2").render(
        title=f"odebench report: {run_id}",
        version=fmt.text(meta.get("odebench_version")),
        css=Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
        script=_script(),
        header=_header(meta, df, run_id, warnings),
        nav=NAV_IDS,
        sections=[Markup(s) for s in sections],
    )
    return drawn.fill(page)


def _script() -> Markup:
    """report.js, trusted as it is ours; it must never hold ``</script``, which would end
    the element early."""
    js = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    if "</script" in js.lower():
        raise ValueError("report.js must not contain '</script'")
    return Markup(js)


def _with_series(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``series`` column, labelled within each kind: plain solves as before (a
    gradient row in the run does not turn ``dopri5`` into ``dopri5 [solve, none]``), training
    rows among themselves, gradient and other rows among themselves."""
    solve = solve_rows(df)
    if len(solve) == len(df):
        return add_series(df)
    train = train_rows(df)
    rest = df.drop(index=solve.index.union(train.index))
    parts = [add_series(part) for part in (solve, train, rest) if len(part)]
    return pd.concat(parts).loc[df.index]


PARALLEL_MIN_FIGURES = 12
"""The problems' and convergence figures (matplotlib, most of a large report's build time)
are drawn in a pool of processes when a run has at least this many, each figure in one
worker, the page filled in with them at the end: the same bytes as drawn one after another.
Fewer are drawn here, in order (a pool's start costs more than it saves)."""
MAX_WORKERS = 8


class _FigureFailure(Exception):
    """A figure drawn in a worker failed (or the pool broke): build the page serially."""


def _figures_expected(solves: pd.DataFrame) -> int:
    """About how many figures the problems and convergence sections draw: two per problem
    with ok solves (work-precision, tolerance), one per problem with fixed-step cases."""
    if solves.empty or "problem" not in solves:
        return 0
    ok = solves[solves["status"].fillna("") == "ok"] if "status" in solves else solves
    fixed = (solves[solves["n_steps_requested"].notna()] if "n_steps_requested" in solves
             else solves.iloc[0:0])
    return 2 * int(ok["problem"].nunique()) + int(fixed["problem"].nunique())


def _workers(n_figures: int) -> int:
    """How many processes draw the figures: 1 (here, serially) for few figures, or where
    fewer than two cores are free (on a shared machine a pool only adds its own cost);
    ``ODEBENCH_REPORT_WORKERS`` sets it outright."""
    if n_figures < PARALLEL_MIN_FIGURES:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    wanted = os.environ.get("ODEBENCH_REPORT_WORKERS", "").strip()
    if wanted.isdigit():
        return max(1, min(int(wanted), MAX_WORKERS, n_figures))
    free = float(cores)
    try:  # the 1-minute load counts this process too
        free = cores - max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):
        pass
    return max(1, min(cores, int(free + 0.5), MAX_WORKERS, n_figures))


def _pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of ``workers`` processes, forked where the platform can (no re-import)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)


class _Figures:
    """Draws the problems' and convergence figures: at once where ``pool`` is None, else in
    ``pool``, each call returning a placeholder that :meth:`fill` replaces in the page."""

    _TOKEN = re.compile(r"<!--odebench-figure-(\d+)-->")

    def __init__(self, pool: concurrent.futures.Executor | None) -> None:
        self.pool = pool
        self.jobs: list[concurrent.futures.Future[Markup]] = []

    def draw(self, fn: Callable[..., Markup], *args: Any) -> Markup:
        """``fn(*args)`` (an SVG), or a placeholder for it while a worker draws it."""
        if self.pool is None:
            return fn(*args)
        try:
            self.jobs.append(self.pool.submit(fn, *args))
        except Exception:  # noqa: BLE001 - a pool that cannot start: draw it here
            return fn(*args)
        return Markup(f"<!--odebench-figure-{len(self.jobs) - 1}-->")

    def fill(self, page: str) -> str:
        """``page`` with every placeholder replaced by its figure."""
        if not self.jobs:
            return page
        try:
            svgs = [str(job.result()) for job in self.jobs]
        except Exception as exc:  # noqa: BLE001 - any failure: the serial build decides
            raise _FigureFailure(f"{type(exc).__name__}: {exc}") from exc
        return self._TOKEN.sub(lambda m: svgs[int(m.group(1))], page)


def _slim(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with only the columns the solve figures read (what a worker is sent)."""
    return rows[[c for c in figures.DRAWN_COLUMNS if c in rows]]


class _Context:
    """What several sections share: the rows, the meta tables, figure styles and id counters.

    ``df`` holds the plain solves only (what overview, problems and convergence draw);
    ``all_rows`` every row; ``gradient_problems`` the problems with gradient cases,
    ``training_tasks`` the tasks with training cases (not listed as problems).
    """

    def __init__(self, meta: Mapping[str, Any], all_rows: pd.DataFrame,
                 drawn: _Figures | None = None) -> None:
        self.meta = meta
        self.figures = drawn if drawn is not None else _Figures(None)
        self.all_rows = all_rows
        df = solve_rows(all_rows)
        self.df = df
        self.gradient_problems = set(gradient_rows(all_rows)["problem"].dropna().astype(str))
        self.training_tasks = set(train_rows(all_rows)["problem"].dropna().astype(str))
        problems = meta.get("problems")
        self.problems_meta: Mapping[str, Any] = problems if isinstance(problems, Mapping) else {}
        solvers = meta.get("solvers")
        self.solvers_meta: Mapping[str, Any] = solvers if isinstance(solvers, Mapping) else {}
        self.styles = series_styles(df["series"].tolist())
        names = (set(df["problem"].dropna().astype(str)) | set(map(str, self.problems_meta))
                 | self.gradient_problems)
        self.problem_names = sorted(names)
        self._figures = 0
        self._ids: dict[str, str] = {}
        for name in self.problem_names:
            base = "problem-" + (slug(name) or "unnamed")
            anchor, k = base, 2
            while anchor in self._ids.values():
                anchor, k = f"{base}-{k}", k + 1
            self._ids[name] = anchor
        self.curves, self.curves_note = _attempt(lambda: fnd.curves(df) if len(df) else [])
        # how time was measured: one statement, in the overview and the environment alike
        self.timing = timing_statement(meta, all_rows)
        # ... and, where some cases ran beside others, that their times are not trusted
        self.untrusted = untrusted_timing_text(all_rows)
        # ... and, where a solver's solves ran on two backends (host floats at batch 1,
        # tensors at batch 1000), that its times across them mix the two
        self.backends = mixed_backend_text(df)
        counts = hardware_counts(all_rows)
        self.machines = counts if len(counts) > 1 else {}  # hardware labels: rows
        self.per_machine = hardware_varies(all_rows)  # several machines, ranked apart
        self.wrong = _no_correct_digits(df)

    def figure_prefix(self) -> str:
        self._figures += 1
        return f"fig{self._figures}"

    def problem_id(self, name: str) -> str:
        return self._ids[name]

    def problem_info(self, name: str) -> Mapping[str, Any]:
        info = self.problems_meta.get(name)
        return info if isinstance(info, Mapping) else {}

    def problem_curves(self, name: str) -> list[fnd.Curve]:
        return [c for c in self.curves or [] if c.problem == name]


def _attempt(compute: Any) -> tuple[Any, str | None]:
    """``(compute(), None)``, or ``(None, why)`` when the analysis is not available: the
    findings are a headline, and a page without them beats no page."""
    try:
        return compute(), None
    except NotImplementedError:
        return None, "The headline analysis is not available in this version of odebench."
    except Exception as exc:  # noqa: BLE001 - any analysis failure becomes a note
        return None, f"The headline analysis failed: {type(exc).__name__}: {exc}"


def _no_correct_digits(df: pd.DataFrame) -> pd.Series:
    """The ok solves with no correct digit (scd ≤ 0): "successful" but wrong."""
    if df.empty:
        return pd.Series(False, index=df.index, dtype=bool)
    mask, _ = _attempt(lambda: fnd.no_correct_digits(df))
    if isinstance(mask, pd.Series) and mask.dtype == bool:
        return mask.reindex(df.index, fill_value=False)
    scd = pd.to_numeric(df["scd"], errors="coerce")
    return (df["status"].fillna("") == "ok") & (scd <= 0)


# --- header --------------------------------------------------------------------------------


@dataclass
class _Header:
    run_id: str
    banners: list[str]
    warnings: Sequence[str]
    more_warnings: int
    pairs: list[tuple[str, object]]


def _status_counts(df: pd.DataFrame) -> str:
    failed = df[df["status"].fillna("missing") != "ok"]
    if failed.empty:
        return ""
    counts = failed["status"].fillna("missing").value_counts().sort_index()
    return " (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"


def _planned(meta: Mapping[str, Any]) -> int | None:
    planned = meta.get("n_cases")
    return planned if isinstance(planned, int) and not isinstance(planned, bool) else None


def _header(meta: Mapping[str, Any], df: pd.DataFrame, run_id: str,
            warnings: Sequence[str] = ()) -> _Header:
    n_total = len(df)
    n_ok = int((df["status"].fillna("") == "ok").sum())
    n_failed = n_total - n_ok
    interrupted = meta.get("interrupted")
    planned = _planned(meta)
    banners: list[str] = []
    if n_total == 0:
        why = ("it was interrupted before any case finished" if interrupted
               else "no case has finished (the run may still be going, or stopped early)")
        banners.append(f"This run has no results: {why}.")
    elif interrupted:
        by = f" by {meta['interrupted_by']}" if meta.get("interrupted_by") else ""
        of = f" of the {planned} planned" if planned is not None and planned > n_total else ""
        resume = (" python -m harness run --resume RUN_DIR (this run's folder) continues it."
                  if meta.get("plan") else "")
        banners.append(f"This run was interrupted{by}: the report covers only the "
                       f"{n_total}{of} cases that finished.{resume}")
    of_all = (f"{n_total} of {planned} planned" if planned is not None and planned > n_total
              else f"{n_total} in all")
    counts = Markup('<span class="counts"><span class="ok">{} ok</span>, '
                    '<span class="{}">{} failed</span>{}, {}</span>').format(
        n_ok, "bad" if n_failed else "ok", n_failed, _status_counts(df), of_all)
    started, ended = meta.get("started_at"), meta.get("ended_at")
    pairs: list[tuple[str, object]] = [
        ("run id", run_id),
        ("command", tag("code", fmt.text(meta.get("command")), class_="cmd")),
        ("started", fmt.text(started)),
        ("ended", fmt.text(ended) if not fmt.is_missing(ended) else "unknown (no end recorded)"),
        ("duration", fmt.duration(started, ended)),
        ("interrupted", fmt.text(interrupted) if isinstance(interrupted, bool) else fmt.UNKNOWN),
        ("cases", counts),
        ("problems / solvers", f"{df['problem'].nunique()} / {df['solver'].nunique()}"),
    ]
    return _Header(run_id, banners, list(warnings[:MAX_WARNINGS]),
                   max(0, len(warnings) - MAX_WARNINGS), pairs)


# --- overview ------------------------------------------------------------------------------


@dataclass
class _FamilyView:
    """One family at one level, ready for the template."""

    finding: fnd.FamilyFinding
    time_text: str
    nfe_text: str
    ranking: Table
    anchor: str


@dataclass
class _Overview:
    ran: list[tuple[str, object]]
    statuses: list[tuple[str, int]]
    n_failed: int
    n_wrong: int
    gradient_lines: list[str]
    training_lines: list[str]
    findings_note: str | None
    families: list[_FamilyView]
    levels: Sequence[float]
    solvers: Table | None
    timing: str
    error_text: str = fnd.ERROR_TEXT
    notes: list[str] = field(default_factory=list)
    untrusted: str | None = None  # the timings of process/dask executors are not trusted
    per_machine: str | None = None  # the rows span several hardware labels
    backends: str | None = None  # a solver's solves ran on more than one backend


def _values(df: pd.DataFrame, column: str) -> list[str]:
    if column not in df:
        return []
    return sorted(df[column].dropna().astype(str).unique())


def _suite_text(meta: Mapping[str, Any]) -> str:
    suite = meta.get("suite")
    if not isinstance(suite, Mapping):
        return fmt.UNKNOWN
    name = fmt.text(suite.get("name"))
    source = suite.get("source")
    return f"{name}: {source}" if isinstance(source, str) and source else name


def _kind_counts(df: pd.DataFrame) -> str:
    if df.empty or "kind" not in df:
        return "none"
    counts = df["kind"].fillna("unknown").astype(str).value_counts().sort_index()
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def timing_statement(meta: Mapping[str, Any], df: pd.DataFrame) -> str:
    """How the times in this report were measured and which statistic it shows."""
    reps = pd.to_numeric(df["repeats"], errors="coerce").dropna() if "repeats" in df else []
    span = ""
    if len(reps):
        lo, hi = int(min(reps)), int(max(reps))
        span = f" ({lo} repeats per case)" if lo == hi else f" ({lo} to {hi} repeats per case)"
    settings = "; ".join(f"{k} = {v}" for k, v, _ in fmt.timing_settings(meta))
    text = (f"Times are the median wall time of one solve over its timed repeats{span}, "
            "with the interquartile range (IQR) of those repeats; a time whose IQR is more "
            f"than {fmt.NOISY_IQR_RATIO:.0%} of its median is marked noisy.")
    return text + (f" Timing settings of the suite: {settings}." if settings else "")


def _best_text(best: fnd.FamilyRank | None, ranking: Sequence[fnd.FamilyRank],
               attr: str, what: str, robust: fnd.FamilyRank | None = None) -> str:
    """``dopri5, 1.8× ahead of rk4`` (the margin: the runner-up's mean ratio to the best)."""
    if best is None:
        return f"no solver reached this level (by {what})"
    others = [r for r in ranking
              if r.series != best.series and not pd.isna(number(getattr(r, attr)))]
    wins = best.wins_time if attr == "time_ratio_gmean" else best.wins_nfe
    text = (f"{best.series} (reached it on {best.n_reached} of {best.n_problems} problems, "
            f"the best on {wins}")
    runner_name = None
    if not others:
        text += "; no other solver reached this level"
    else:  # the runner-up in the analysis' own order
        by = "time" if attr == "time_ratio_gmean" else "nfe"
        runner = min(others, key=lambda r: fnd.rank_key(r, by))
        runner_name = runner.series
        mine = number(getattr(best, attr))
        margin = (number(getattr(runner, attr)) / mine if mine and not pd.isna(mine)
                  else float("nan"))
        how = "as long" if attr == "time_ratio_gmean" else "as many function evaluations"
        text += (f"; the next, {runner.series}, takes {ratio_text(margin)} {how}"
                 if not pd.isna(margin) else f"; then {runner.series}")
    if robust is not None and robust.series not in (best.series, runner_name):
        g = number(getattr(robust, attr))
        text += (f"; of those that reached it on {robust.n_reached} problems, "
                 f"{robust.series}, at {ratio_text(g)} the best")
    return text + ")"


def _gradient_line(g: fnd.GradientFinding) -> str:
    """One gradient headline, by mode (the cases behind it are in the Gradients section)."""
    tied = tuple(getattr(g, "least_memory_modes", ()) or ())
    parts = []
    if g.least_memory_mode is not None:
        who = " and ".join(tied) if len(tied) > 1 else g.least_memory_mode
        parts.append(f"least memory: {who} ({fmt.count(g.least_memory_bytes)} bytes saved "
                     "for the backward pass at most)")
    if g.fastest_mode is not None:
        parts.append(f"fastest gradient within a relative error of {g.grad_error_level:.0e}: "
                     f"{g.fastest_mode} ({fmt.seconds(g.fastest_time_s)})")
    else:
        parts.append(f"no ok case reached a gradient error of {g.grad_error_level:.0e}")
    return f"{g.problem}: " + "; ".join(parts) + "."


def _overview(ctx: _Context) -> _Overview:
    meta, rows, df = ctx.meta, ctx.all_rows, ctx.df
    statuses = sorted(rows["status"].fillna("missing").astype(str).value_counts().items())
    statuses.sort(key=lambda kv: (kv[0] != "ok", kv[0]))
    n_failed = sum(n for s, n in statuses if s != "ok")
    ran: list[tuple[str, object]] = [
        ("suite", _suite_text(meta)),
        ("cases", _kind_counts(rows)),
        ("problems", str(len(ctx.problem_names))),
        ("solvers", str(rows["solver"].nunique()) if len(rows) else "0"),
        ("devices", ", ".join(_values(rows, "device")) or fmt.MISSING),
        ("dtypes", ", ".join(_values(rows, "dtype")) or fmt.MISSING),
    ]
    planned = _planned(meta)
    if planned is not None:
        ran.insert(2, ("planned", str(planned)))
    # one analysis of the run: the solve headline is its family findings (over the plain
    # solves, whose curves ctx already has), the gradient and training lines the rest
    all_findings, note = (_attempt(lambda: fnd.findings(rows, meta, curves_of_df=ctx.curves))
                          if len(rows) else (None, None))
    families = all_findings.solve if all_findings is not None and len(df) else None
    solve_note = note if len(df) else None
    views = []
    for f in families or []:
        views.append(_FamilyView(
            f, _best_text(f.by_time, f.ranking, "time_ratio_gmean", "time",
                          getattr(f, "robust", None)),
            _best_text(f.by_nfe, f.ranking, "nfe_ratio_gmean", "NFE"), rank_table(f),
            "-".join(["rank", slug(f.family) or "family",
                      *([slug(f.hardware) or "hardware"] if f.hardware else []),
                      slug(f"{f.digits:g}")])))
    grad_lines = [_gradient_line(g) for g in all_findings.gradients] if all_findings else []
    train_lines = [t.text for t in all_findings.training] if all_findings else []
    return _Overview(
        ran=ran, statuses=statuses, n_failed=n_failed, n_wrong=int(ctx.wrong.sum()),
        gradient_lines=grad_lines, training_lines=train_lines,
        findings_note=solve_note, families=views,
        levels=fnd.DIGIT_LEVELS, solvers=solvers_table(ctx.df, ctx.solvers_meta),
        timing=ctx.timing,
        notes=[note] if note and len(rows) and not len(df) else [],
        untrusted=ctx.untrusted, backends=ctx.backends,
        per_machine=("The cases ran on several machines (see Environment): a solver on "
                     "two machines is two series, and solvers are ranked per machine; no "
                     "time is compared across machines." if ctx.per_machine else None),
    )


# --- problems ------------------------------------------------------------------------------


@dataclass
class _Problem:
    name: str
    anchor: str
    summary: str
    description: str | None
    pairs: list[tuple[str, object]]
    notes: list[object]
    figures: list[tuple[Markup, str]]
    standings: Table | None
    standings_note: str | None
    cases: Table | None
    n_wrong: int


def _failed_caption(failed: pd.DataFrame) -> str:
    if failed.empty:
        return "No case failed."
    parts = []
    for (series, status), g in failed.groupby(["series", failed["status"].fillna("missing")],
                                              sort=True):
        parts.append(f"{series} {len(g)}× {status}")
    return f"{len(failed)} failed case(s) not drawn: " + "; ".join(parts) + " (see Failures)."


def _span_text(span: Any) -> str:
    if isinstance(span, (list, tuple)) and len(span) == 2:
        return f"[{fmt.sig(span[0])}, {fmt.sig(span[1])}]"
    return fmt.UNKNOWN


def _reference(info: Mapping[str, Any], any_rows: pd.DataFrame) -> tuple[Any, Any]:
    ref_kind, ref_prov = info.get("ref_kind"), info.get("ref_provenance")
    if fmt.is_missing(ref_kind) and len(any_rows) and "ref_kind" in any_rows:
        vals = any_rows["ref_kind"].dropna().unique()
        ref_kind = vals[0] if len(vals) else None
    if fmt.is_missing(ref_prov) and len(any_rows) and "ref_provenance" in any_rows:
        vals = any_rows["ref_provenance"].dropna().unique()
        ref_prov = "; ".join(map(str, vals)) if len(vals) else None
    return ref_kind, ref_prov


def _problem(ctx: _Context, name: str) -> _Problem:
    info = ctx.problem_info(name)
    rows = ctx.df[ctx.df["problem"] == name]
    any_rows = ctx.all_rows[ctx.all_rows["problem"] == name]
    ref_kind, ref_prov = _reference(info, any_rows)
    tags = info.get("tags")
    tag_html: object = fmt.UNKNOWN
    if isinstance(tags, (list, tuple)) and tags:
        tag_html = join([tag("span", t) for t in tags], sep="")
    pairs: list[tuple[str, object]] = [
        ("tags", tag("span", tag_html, class_="tags")),
        ("dimension", fmt.text(info.get("dim"))),
        ("time span", _span_text(info.get("t_span"))),
        ("reference", fmt.text(ref_kind)),
        ("provenance", fmt.text(ref_prov)),
        ("citation", fmt.text(info.get("citation"))),
    ]
    ok = ok_rows(rows)
    plotted = ok[ok["err_max"].astype(float) > 0]
    plotted = plotted[plotted["nfe"].notna()]
    not_plotted_ok = len(ok) - len(plotted)
    failed = rows[rows["status"].fillna("missing") != "ok"]
    notes: list[object] = []
    figs: list[tuple[Markup, str]] = []
    if rows.empty and name in ctx.gradient_problems:
        notes.append(Markup('Only gradient cases of this problem ran: see '
                            '<a href="#gradients">Gradients</a>.'))
    elif rows.empty and name in ctx.training_tasks:
        notes.append(Markup('Only training cases of this task ran: see '
                            '<a href="#training">Training</a>.'))
    elif rows.empty:
        notes.append("No case of this problem finished in this run.")
    elif plotted.empty:
        notes.append("No successful case with a positive error to plot. "
                     + _failed_caption(failed))
    else:
        svg = ctx.figures.draw(work_precision_svg, _slim(plotted), ctx.styles,
                               ctx.figure_prefix(), f"{name}: work-precision")
        extra = (f" {not_plotted_ok} ok case(s) with zero or missing error or NFE cannot be "
                 "drawn on log axes." if not_plotted_ok else "")
        figs.append((svg,
            "Work-precision: error against cost. Each point is one case (a tolerance for an "
            "adaptive solver, a step count for a fixed-step one); each line joins one solver's "
            "cases from its coarsest setting to its finest. Left: cost in function "
            "evaluations; right: in median wall time of one solve (bars: the IQR of the "
            "repeats). Lower and further left is better: at a given cost the lower line is "
            f"more accurate. Error: the {fnd.ERROR_TEXT}. {_failed_caption(failed)}{extra}"))
        figs += _tolerance_figure(ctx, name, ok)
        mixed = mixed_backend_text(rows) if ctx.backends else None
        if mixed:
            notes.append(mixed)
    standings, standings_note = _standings(ctx, name) if len(ok) else (None, None)
    wrong = ctx.wrong.reindex(rows.index, fill_value=False)
    n_ok = int((rows["status"].fillna("") == "ok").sum())
    summary = (f"{len(rows)} case(s), {n_ok} ok" if len(rows)
               else "no plain solves")
    return _Problem(name, ctx.problem_id(name), summary,
                    None if fmt.is_missing(info.get("description")) else str(info["description"]),
                    pairs, notes, figs, standings, standings_note,
                    cases_table(rows, wrong) if len(rows) else None, int(wrong.sum()))


def _tolerance_figure(ctx: _Context, name: str, ok: pd.DataFrame) -> list[tuple[Markup, str]]:
    """The tolerance-proportionality figure, where :mod:`reports.figures` draws one."""
    draw = getattr(figures, "tolerance_svg", None) if TOLERANCE_FIGURES else None
    adaptive = ok[ok["rtol"].notna()] if "rtol" in ok else ok.iloc[0:0]
    if draw is None or adaptive.empty:
        return []
    if "n_steps_requested" in adaptive:
        adaptive = adaptive[adaptive["n_steps_requested"].isna()]
    if adaptive.empty:
        return []
    svg, _ = _attempt(lambda: ctx.figures.draw(draw, _slim(adaptive), ctx.styles,
                                               ctx.figure_prefix(),
                                               f"{name}: tolerance proportionality"))
    if not isinstance(svg, Markup):
        return []
    return [(svg, "Tolerance proportionality: the error reached against the requested rtol, "
                  "one series per adaptive solver, with its fit E ≈ C·rtol^p dashed (C and p "
                  "in the legend) and E = rtol dotted. A well-behaved solver's points lie on "
                  "a straight line of slope p near 1: a tenfold tighter tolerance buys a "
                  "tenfold smaller error.")]


def _cost_cells(st: fnd.Standing) -> list[Cell]:
    if st.cost is None:
        return [num("not reached", "num dim", sort=float("nan")),
                num("not reached", "num dim", sort=float("nan"))]
    le = "≤ " if st.cost.bound else ""
    title = ("the loosest setting already reached this level: an upper bound"
             if st.cost.bound else None)
    best_t = number(st.time_ratio) == 1.0
    best_n = number(st.nfe_ratio) == 1.0
    return [num(le + fmt.count(round(st.cost.nfe)), "num best" if best_n else "num",
                title=title, sort=number(st.cost.nfe)),
            num(le + fmt.seconds(st.cost.time), "num best" if best_t else "num",
                title=title, sort=number(st.cost.time))]


def _standings(ctx: _Context, name: str) -> tuple[Table | None, str | None]:
    """Per solver, the cost to reach each digit level on this problem (interpolated)."""
    if ctx.curves is None:
        return None, ctx.curves_note
    curves = ctx.problem_curves(name)
    if not curves:
        return None, None
    table, note = _attempt(lambda: fnd.problem_standings(curves))
    if not table:
        return None, note
    levels = sorted(table)
    series = sorted({s.series for level in levels for s in table[level]})
    headers: list[object] = ["solver"]
    for d in levels:
        headers += [Cell(f"NFE to {d:g} digits", title="interpolated between the two ladder "
                         "points that bracket the level; ≤: an upper bound"),
                    Cell(f"time to {d:g} digits", title="median wall time, interpolated")]
    rows = []
    for s in series:
        cells: list[object] = [s]
        for d in levels:
            st = next((x for x in table[d] if x.series == s), fnd.Standing(s, None))
            cells += _cost_cells(st)
        rows.append(cells)
    return Table(headers, rows, class_="standings"), None


def _problems(ctx: _Context) -> dict[str, Any]:
    return {"names": ctx.problem_names, "blocks": [_problem(ctx, p) for p in ctx.problem_names],
            "training_tasks": bool(ctx.training_tasks)}


# --- convergence ---------------------------------------------------------------------------


def _section(id_: str, title: str, content: list[object]) -> Markup:
    return tag("section", join([tag("h2", title), *content]), id=id_)


def _figure(svg: Markup, caption: object) -> Markup:
    return tag("figure", join([svg, tag("figcaption", caption)]))


def _fit_table(fits: list[OrderFit], rows: pd.DataFrame) -> Markup:
    n_failed = rows[rows["status"].fillna("missing") != "ok"].groupby("series").size()
    body = []
    for f in fits:
        used_h = f.h[f.used]
        h_range = (f"{fmt.sig(used_h.min())} … {fmt.sig(used_h.max())}" if len(used_h)
                   else fmt.MISSING)
        fitted = fmt.MISSING if pd.isna(f.fitted) else f"{f.fitted:.2f}"
        off = (not pd.isna(f.fitted) and f.theory is not None and abs(f.fitted - f.theory) > 0.3)
        body.append([f.series, num(fmt.text(f.theory)),
                     num(fitted, "num warn" if off else "num",
                         title="differs from theory by more than 0.3" if off else None),
                     num(f"{f.n_used} / {len(f.h)}"), num(h_range),
                     num(str(int(n_failed.get(f.series, 0))))])
    headers = ["solver", "theory order", "fitted order",
               Cell("points used / ok", title="ok points inside the asymptotic range"),
               "h range used", Cell("failed", title="failed cases, not in the fit")]
    return render_table(headers, body, class_="fits")


def _convergence(ctx: _Context) -> Markup:
    fixed = ctx.df[ctx.df["n_steps_requested"].notna()] if len(ctx.df) else ctx.df
    intro = tag("p", Markup(
        "Fixed-step solvers only. A method of order p has error ≈ C h<sup>p</sup>, a line "
        "of slope p on these log-log axes. The fitted order is the least-squares slope of "
        "log err_max against log h over the ok points in the asymptotic range "
        f"{ROUNDOFF_FACTOR:g} ε &lt; err_max ≤ {esc(fmt.sig(PRE_ASYMPTOTIC_MAX))} "
        "(ε the machine epsilon of the case's dtype; above: steps too large for the leading "
        "error term; below: round-off). Filled markers entered the fit, hollow ones did not; "
        "the dashed line is the fit; grey bands are outside the range. A fitted order well "
        "below the theoretical one points at a bug, a non-smooth problem, or a range that "
        "is not yet asymptotic."), class_="note")
    if fixed.empty:
        return _section("convergence", "Convergence of fixed-step solvers",
                        [intro, tag("p", "No fixed-step cases in this run.")])
    blocks: list[object] = [intro]
    names = sorted(fixed["problem"].dropna().astype(str).unique())
    for name in names:
        span = time_span(ctx.problem_info(name))
        rows = fixed[fixed["problem"] == name]
        fits = [fit_series(name, str(series), g, span)
                for series, g in rows.groupby("series", sort=True)]
        drawable = [f for f in fits if (f.err > 0).any()]
        inner: list[object] = []
        if drawable:
            svg = ctx.figures.draw(convergence_svg, drawable, ctx.styles,
                                   ctx.figure_prefix(), f"{name}: error vs step size")
            axis = ("h = (t1 − t0)/n from the problem's time span" if span
                    else "1/n, as the problem's time span is not in meta.json")
            inner.append(_figure(svg, f"Error against step size ({axis}), one line per "
                                      "fixed-step solver; the legend gives fitted and "
                                      "theoretical order. Failed cases are not drawn."))
        inner.append(_fit_table(fits, rows))
        title = tag("summary", tag("h3", name))
        blocks.append(tag("details", join([title, *inner]),
                          open="open" if len(names) <= OPEN_MAX else None,
                          class_="fold"))
    return _section("convergence", "Convergence of fixed-step solvers", blocks)


# --- failures ------------------------------------------------------------------------------


@dataclass
class _FailureGroup:
    status: str
    count: int
    anchor: str
    by_solver: list[tuple[str, int, Table]]


def _failures(df: pd.DataFrame) -> dict[str, Any]:
    failed = df[df["status"].fillna("missing") != "ok"]
    train = train_rows(failed)
    others = failed.drop(index=train.index)
    groups = []
    status = others["status"].fillna("missing").astype(str)
    for st in sorted(status.unique()):
        mine = others[status == st]
        by = [(str(series), len(g), failure_table(g))
              for series, g in mine.groupby(mine["series"].astype(str), sort=True)]
        groups.append(_FailureGroup(st, len(mine), f"failures-{slug(st) or 'status'}", by))
    return {"n": len(failed), "groups": groups, "show_none": others.empty and train.empty,
            "train": training_failures_table(train) if len(train) else None}


# --- environment ---------------------------------------------------------------------------


def _environment(meta: Mapping[str, Any], ctx: _Context) -> dict[str, Any]:
    executors = executor_counts(ctx.all_rows) if ctx.untrusted else {}
    return {"pairs": environment_pairs(meta), "command": fmt.text(meta.get("command")),
            "timing": ctx.timing, "untrusted": ctx.untrusted, "backends": ctx.backends,
            "executors": [(f"{k} executor", f"{n} row(s)") for k, n in executors.items()],
            "machines": [(k, f"{n} row(s)") for k, n in ctx.machines.items()],
            "settings": [(k, f"{v}: {what}") for k, v, what in fmt.timing_settings(meta)]}
