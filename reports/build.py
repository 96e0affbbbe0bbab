"""Build one self-contained HTML report from a run folder.

``build_report(run_dir)`` reads the run through :func:`harness.results.open_run` (reports
never run a solver) and writes ``run_dir/report.html``: one file, CSS and SVG figures inline,
no JavaScript, no external URL, readable offline and attachable to an issue. Sections, in
order and by id: ``header``, ``summary``, ``problems`` (one ``problem-<name>`` per problem
with its work-precision diagrams), ``convergence``, ``gradients``, ``training``, ``failures``,
``environment``, ``schema``.

Summary, work-precision and convergence use only plain solves (``kind == "solve"``); the
gradient cases have their own section (:mod:`reports.gradient_section`), the training cases
theirs (:mod:`reports.training`, which also reads each case's per-iteration records from the
run folder). The header and the failures section cover every row. Lines of results.jsonl the
loader could not use (a torn last line, garbage, a repeated case) are listed in a warning
block in the header, so nothing is left out silently.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.results import COLUMNS, REPORT_FILE, open_run
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
from reports.summary import TARGET_DIGITS, add_series, ok_rows, summarize
from reports.tables import (
    Cell,
    definition_table,
    environment_table,
    failures_table,
    num,
    render_table,
    summary_table,
)
from reports.training import train_rows, training_failures_table, training_section

TEMPLATES = Path(__file__).parent / "templates"
SECTION_IDS = ("header", "summary", "problems", "convergence", "gradients", "training",
               "failures", "environment", "schema")


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
    run_id = fmt.text(meta.get("run_id")) if not fmt.is_missing(meta.get("run_id")) else fallback_id
    ctx = _Context(meta, df)
    body = join([
        _header(meta, df, run_id, warnings),
        _summary(ctx),
        _problems(ctx),
        _convergence(ctx),
        gradients_section(df, ctx.figure_prefix),
        training_section(df, ctx.figure_prefix, run_dir, meta.get("tasks")),
        _failures(df),
        _section("environment", "Environment",
                 [tag("p", "Where and with what this run was measured (from meta.json).",
                      class_="note"), environment_table(meta)]),
        _schema(),
    ])
    template = string.Template((TEMPLATES / "report.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=esc(f"odebench report: {run_id}"),
        version=esc(fmt.text(meta.get("odebench_version"))),
        css=(TEMPLATES / "report.css").read_text(encoding="utf-8"),
        body=body,
    )


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


class _Context:
    """What several sections share: the rows, the meta tables, figure styles and id counters.

    ``df`` holds the plain solves only (what summary, work-precision and convergence draw);
    ``all_rows`` every row; ``gradient_problems`` the problems with gradient cases,
    ``training_tasks`` the tasks with training cases (not listed as problems).
    """

    def __init__(self, meta: Mapping[str, Any], all_rows: pd.DataFrame) -> None:
        self.meta = meta
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

    def figure_prefix(self) -> str:
        self._figures += 1
        return f"fig{self._figures}"

    def problem_id(self, name: str) -> str:
        return self._ids[name]

    def problem_info(self, name: str) -> Mapping[str, Any]:
        info = self.problems_meta.get(name)
        return info if isinstance(info, Mapping) else {}


def _section(id_: str, title: str, content: list[object]) -> Markup:
    return tag("section", join([tag("h2", title), *content]), id=id_)


def _figure(svg: Markup, caption: object) -> Markup:
    return tag("figure", join([svg, tag("figcaption", caption)]))


def _status_counts(df: pd.DataFrame) -> str:
    failed = df[df["status"].fillna("missing") != "ok"]
    if failed.empty:
        return ""
    counts = failed["status"].fillna("missing").value_counts().sort_index()
    return " (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"


MAX_WARNINGS = 10  # shown in the header; the rest are counted


def _warnings_block(warnings: Sequence[str]) -> Markup:
    """The loader's warnings as a banner with a short list: lines of the results file the
    report could not use are named, not dropped silently."""
    shown = [tag("li", tag("code", w)) for w in warnings[:MAX_WARNINGS]]
    if len(warnings) > MAX_WARNINGS:
        shown.append(tag("li", f"… and {len(warnings) - MAX_WARNINGS} more"))
    intro = (f"{len(warnings)} line(s) of this run's results could not be used; the report "
             "leaves them out:")
    return tag("div", join([tag("p", intro), tag("ul", join(shown))]), class_="banner warnings")


def _header(meta: Mapping[str, Any], df: pd.DataFrame, run_id: str,
            warnings: Sequence[str] = ()) -> Markup:
    n_total = len(df)
    n_ok = int((df["status"].fillna("") == "ok").sum())
    n_failed = n_total - n_ok
    interrupted = meta.get("interrupted")
    banner: list[object] = []
    if n_total == 0:
        why = ("it was interrupted before any case finished" if interrupted
               else "no case has finished (the run may still be going, or stopped early)")
        banner.append(tag("p", f"This run has no results: {why}.", class_="banner"))
    elif interrupted:
        by = f" by {meta['interrupted_by']}" if meta.get("interrupted_by") else ""
        planned = meta.get("n_cases")
        of = f" of the {planned} planned" if isinstance(planned, int) and planned > n_total else ""
        resume = (" python -m harness run --resume RUN_DIR (this run's folder) continues it."
                  if meta.get("plan") else "")
        banner.append(tag("p", f"This run was interrupted{by}: the report covers only the "
                               f"{n_total}{of} cases that finished.{resume}", class_="banner"))
    if warnings:
        banner.append(_warnings_block(warnings))
    counts = Markup(
        f'<span class="ok">{n_ok} ok</span>, '
        f'<span class="{"bad" if n_failed else "ok"}">{n_failed} failed</span>'
        f"{esc(_status_counts(df))}, {n_total} in all")
    started, ended = meta.get("started_at"), meta.get("ended_at")
    pairs: list[tuple[str, object]] = [
        ("run id", run_id),
        ("command", tag("code", fmt.text(meta.get("command")), class_="cmd")),
        ("started", fmt.text(started)),
        ("ended", fmt.text(ended) if not fmt.is_missing(ended) else "unknown (no end recorded)"),
        ("duration", fmt.duration(started, ended)),
        ("interrupted", fmt.text(interrupted) if isinstance(interrupted, bool) else fmt.UNKNOWN),
        ("cases", tag("span", counts, class_="counts")),
        ("problems / solvers", f"{df['problem'].nunique()} / {df['solver'].nunique()}"),
    ]
    nav = tag("nav", join([tag("a", i, href=f"#{i}") for i in SECTION_IDS[1:]], sep=" "))
    return tag("header", join([tag("h1", f"odebench report: {run_id}"), nav, *banner,
                               definition_table(pairs)]), id="header")


def _summary(ctx: _Context) -> Markup:
    if ctx.df.empty:
        return _section("summary", "Summary", [tag("p", "No results to summarise.")])
    rows = summarize(ctx.df, ctx.solvers_meta)
    digits = " and ".join(f"{d:g}" for d in TARGET_DIGITS)
    note = (
        "One group per problem, one row per solver. <em>best err_max</em> is the smallest max "
        "abs error any ok case reached, with its NFE and median wall time. <em>NFE to ≥ d "
        f"digits</em> (d = {esc(digits)}) is the cheapest ok case whose scd (significant "
        "correct digits at the end point, relative) is at least d; ★ marks the least NFE per "
        "problem and target (ties all marked). It is the cheapest case the sweep <em>ran</em>, "
        "not an interpolation: a coarse tolerance ladder can overshoot a target and pay for it. "
        "NFE counts calls of f; it compares methods, wall time compares implementations.")
    return _section("summary", "Summary", [tag("p", Markup(note), class_="note"),
                                           summary_table(rows, TARGET_DIGITS)])


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


def _problem_block(ctx: _Context, name: str) -> Markup:
    info = ctx.problem_info(name)
    rows = ctx.df[ctx.df["problem"] == name]
    any_rows = ctx.all_rows[ctx.all_rows["problem"] == name]
    ref_kind = info.get("ref_kind")
    ref_prov = info.get("ref_provenance")
    if fmt.is_missing(ref_kind) and len(any_rows):
        vals = any_rows["ref_kind"].dropna().unique()
        ref_kind = vals[0] if len(vals) else None
    if fmt.is_missing(ref_prov) and len(any_rows):
        vals = any_rows["ref_provenance"].dropna().unique()
        ref_prov = "; ".join(map(str, vals)) if len(vals) else None
    span = info.get("t_span")
    tags = info.get("tags")
    tag_html: object = fmt.UNKNOWN
    if isinstance(tags, (list, tuple)) and tags:
        tag_html = join([tag("span", t) for t in tags], sep="")
    pairs: list[tuple[str, object]] = [
        ("tags", tag("span", tag_html, class_="tags")),
        ("dimension", fmt.text(info.get("dim"))),
        ("time span", _span_text(span)),
        ("reference", fmt.text(ref_kind)),
        ("provenance", fmt.text(ref_prov)),
        ("citation", fmt.text(info.get("citation"))),
    ]
    content: list[object] = []
    if not fmt.is_missing(info.get("description")):
        content.append(tag("p", str(info["description"])))
    content.append(definition_table(pairs))
    ok = ok_rows(rows)
    plotted = ok[ok["err_max"].astype(float) > 0]
    plotted = plotted[plotted["nfe"].notna()]
    not_plotted_ok = len(ok) - len(plotted)
    failed = rows[rows["status"].fillna("missing") != "ok"]
    if rows.empty and name in ctx.gradient_problems:
        content.append(tag("p", Markup('Only gradient cases of this problem ran: see '
                                       '<a href="#gradients">Gradients</a>.'), class_="note"))
    elif rows.empty and name in ctx.training_tasks:
        content.append(tag("p", Markup('Only training cases of this task ran: see '
                                       '<a href="#training">Training</a>.'), class_="note"))
    elif rows.empty:
        content.append(tag("p", "No case of this problem finished in this run.", class_="note"))
    elif plotted.empty:
        content.append(tag("p", "No successful case with a positive error to plot. "
                                + _failed_caption(failed), class_="note"))
    else:
        svg = work_precision_svg(plotted, ctx.styles, ctx.figure_prefix(),
                                 f"{name}: work-precision")
        extra = (f" {not_plotted_ok} ok case(s) with zero or missing error or NFE cannot be "
                 "drawn on log axes." if not_plotted_ok else "")
        caption = (
            "Work-precision: error against cost. Each point is one case (a tolerance for an "
            "adaptive solver, a step count for a fixed-step one); each line joins one solver's "
            "cases in order of NFE. Left: cost in function evaluations; right: in median wall "
            "time of one solve. Lower and further left is better: at a given cost the lower "
            "line is more accurate. Error: err_max, the max abs error over all output times "
            f"and components against the reference. {_failed_caption(failed)}{extra}")
        content.append(_figure(svg, caption))
    return tag("section", join([tag("h3", name), *content]), id=ctx.problem_id(name))


def _problems(ctx: _Context) -> Markup:
    if not ctx.problem_names:
        more = (Markup(' The training cases are in <a href="#training">Training</a>.')
                if ctx.training_tasks else "")
        return _section("problems", "Problems", [tag("p", join(["No problems in this run.",
                                                                more], sep=""))])
    intro = tag("p", "For each problem: what it is, where its reference comes from, and the "
                     "work-precision diagrams of every solver that ran on it.", class_="note")
    return _section("problems", "Problems",
                    [intro, *(_problem_block(ctx, p) for p in ctx.problem_names)])


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
    for name in sorted(fixed["problem"].dropna().astype(str).unique()):
        span = time_span(ctx.problem_info(name))
        rows = fixed[fixed["problem"] == name]
        fits = [fit_series(name, str(series), g, span)
                for series, g in rows.groupby("series", sort=True)]
        drawable = [f for f in fits if (f.err > 0).any()]
        blocks.append(tag("h3", name))
        if drawable:
            svg = convergence_svg(drawable, ctx.styles, ctx.figure_prefix(),
                                  f"{name}: error vs step size")
            axis = ("h = (t1 − t0)/n from the problem's time span" if span
                    else "1/n, as the problem's time span is not in meta.json")
            blocks.append(_figure(svg, f"Error against step size ({axis}), one line per "
                                       "fixed-step solver; the legend gives fitted and "
                                       "theoretical order. Failed cases are not drawn."))
        blocks.append(_fit_table(fits, rows))
    return _section("convergence", "Convergence of fixed-step solvers", blocks)


def _failures(df: pd.DataFrame) -> Markup:
    failed = df[df["status"].fillna("missing") != "ok"]
    train = train_rows(failed)
    others = failed.drop(index=train.index)
    text = ("Every case whose status is not ok. A failure is a result, not a crash: "
            "the run went on. t_reached is how far the solve got.")
    if len(train):
        text += (" For a training case, iteration reached is how many optimiser steps it "
                 "completed before it stopped.")
    content: list[object] = [tag("p", text, class_="note")]
    if len(others) or train.empty:
        content.append(failures_table(others))
    if len(train):
        content += [tag("h3", "Training cases"), training_failures_table(train)]
    return _section("failures", "Failures", content)


def _schema() -> Markup:
    rows = [[tag("code", c.name), c.unit, c.meaning] for c in COLUMNS]
    details = tag("details", join([tag("summary", "columns of results.jsonl"),
                                   render_table(["column", "unit", "meaning"], rows)]))
    note = tag("p", Markup("Numbers in this report come from <code>results.jsonl</code> in the "
                           "run folder, loaded by <code>harness.results.load_run</code>; the "
                           "schema below keeps its names and units across versions."),
               class_="note")
    return _section("schema", "Data and schema", [note, details])
