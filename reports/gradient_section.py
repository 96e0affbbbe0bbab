"""The report's ``gradients`` section: memory, gradient error, NFE and time of each mode.

One block per problem that has gradient cases (``kind == "gradient"``), built from
:mod:`reports.gradients`; every figure and table has a line saying what it shows and how
to read it. The two figures (saved memory against steps, gradient error against the setting)
are drawn here; the settings of a case (``rtol=1e-03``) sit in cells that do not wrap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from reports import format as fmt
from reports.figures import (
    MARKERS,
    PALETTE,
    plain,
    tidy_log_axis,
    to_svg,
    widen_log_ylim,
    with_rc,
)
from reports.gradients import (
    ADJOINT,
    BACKPROP,
    SEMINORM,
    MemoryFit,
    Saving,
    add_labels,
    by_mode,
    cases,
    gradient_rows,
    is_ok,
    median_saving,
    memory_fits,
    modes_in_order,
    ratio,
    seminorm_savings,
)
from reports.markup import Markup, esc, join, tag
from reports.tables import Cell, num, render_table

KIB = 1024.0
TITLE = "Gradients: memory, accuracy, NFE and time of each mode"


# ---------------------------------------------------------------------------------------------
# figures
MODE_COLORS = {"backprop": "#1f77b4", "adjoint": "#d62728", "adjoint-seminorm": "#ff7f0e",
               "checkpoint": "#2ca02c"}


def mode_colors(modes: Sequence[str]) -> dict[str, str]:
    """A fixed colour per built-in gradient mode; other modes take the remaining palette."""
    spare = [c for c in PALETTE if c not in MODE_COLORS.values()]
    out, k = {}, 0
    for m in modes:
        if m in MODE_COLORS:
            out[m] = MODE_COLORS[m]
        else:
            out[m] = spare[k % len(spare)]
            k += 1
    return out


_MODE_LINES = ("-", "--", ":", "-.")
_MODE_SIZES = (7.5, 6.0, 4.5, 3.0)


def mode_draw(modes: Sequence[str]) -> dict[str, dict[str, object]]:
    """Line style and marker size per mode, in the given order: modes that coincide (the
    adjoint and its seminorm on fixed steps, backprop and checkpoint) still show, as
    concentric markers and interleaved dashes."""
    colors = mode_colors(modes)
    return {m: {"color": colors[m], "linestyle": _MODE_LINES[i % len(_MODE_LINES)],
                "markersize": _MODE_SIZES[i % len(_MODE_SIZES)]} for i, m in enumerate(modes)}


def label_markers(labels: Sequence[str]) -> dict[str, str]:
    """A marker per ladder (solver), in sorted order: o, s, ^, ..."""
    return {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(sorted(set(labels)))}


def memory_svg(rows: pd.DataFrame, modes: Sequence[str], prefix: str, title: str) -> Markup:
    """Log-log memory saved for backward (``mem_saved_bytes``) against attempted forward
    steps: colour = gradient mode, marker = solver (fixed-step ladders solid, adaptive ones
    dashed), all on one axes.

    ``rows`` are ok gradient rows with positive ``n_steps`` and ``mem_saved_bytes`` and the
    ``label``/``fixed`` columns of :func:`reports.gradients.add_labels`.
    """

    def draw() -> Markup:
        fig = Figure(figsize=(7.2, 4.0), layout="constrained")
        ax = fig.add_subplot()
        drawn = mode_draw(modes)
        markers = label_markers(rows["label"].tolist())
        for label in sorted(markers):
            for mode in modes:
                g = rows[(rows["label"] == label) & (rows["grad_mode"] == mode)]
                if g.empty:
                    continue
                g = g.sort_values("n_steps")
                ax.plot(g["n_steps"].astype(float), g["mem_saved_bytes"].astype(float),
                        marker=markers[label], linewidth=1.1, **drawn[mode])
        ax.set_xscale("log")
        ax.set_yscale("log")
        widen_log_ylim(ax)
        tidy_log_axis(ax.xaxis)
        tidy_log_axis(ax.yaxis)
        ax.set_xlabel("attempted forward steps")
        ax.set_ylabel("memory saved for the backward pass [bytes]")
        present = set(rows["grad_mode"].astype(str))
        handles = [Line2D([], [], linewidth=1.5, color=drawn[m]["color"],
                          linestyle=drawn[m]["linestyle"], label=plain(m))
                   for m in modes if m in present]
        handles += [Line2D([], [], color="0.3", marker=markers[lab], markersize=5,
                           linestyle="none", label=plain(lab)) for lab in sorted(markers)]
        fig.legend(handles=handles, loc="outside right center")
        ax.set_title(plain(title), fontsize=10)
        return to_svg(fig, prefix, title)

    return with_rc(draw)


def gradient_error_svg(rows: pd.DataFrame, modes: Sequence[str], prefix: str,
                       title: str) -> Markup:
    """The gradient's relative error (``grad_rel_err``) per mode, one panel per solver
    ladder: against the number of steps for a fixed-step solver, against rtol (finer to the
    right) for an adaptive one.

    ``rows`` are ok gradient rows with a positive ``grad_rel_err`` and the columns of
    :func:`reports.gradients.add_labels`.
    """

    def draw() -> Markup:
        labels = sorted(rows["label"].unique())
        ncols = min(len(labels), 3)
        nrows = -(-len(labels) // ncols)
        fig = Figure(figsize=(3.4 * ncols + 0.6, 3.2 * nrows + 0.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
        drawn = mode_draw(modes)
        markers = label_markers(labels)
        for ax, label in zip(axes, labels, strict=False):
            g = rows[rows["label"] == label]
            fixed = bool(g["fixed"].all())
            for mode in modes:
                m = g[g["grad_mode"] == mode].sort_values("x_setting")
                if m.empty:
                    continue
                ax.plot(m["x_setting"].astype(float), m["grad_rel_err"].astype(float),
                        marker=markers[label], linewidth=1.1, label=plain(mode),
                        **drawn[mode])
            ax.set_xscale("log")
            ax.set_yscale("log")
            if not fixed:
                ax.invert_xaxis()
            ax.set_xlabel("number of steps n" if fixed
                          else "requested relative tolerance rtol (finer →)")
            ax.set_title(plain(label), fontsize=9)
            tidy_log_axis(ax.xaxis)
        for ax in axes[len(labels):]:
            ax.set_visible(False)
        widen_log_ylim(axes[0])
        tidy_log_axis(axes[0].yaxis)
        for ax in axes[::ncols]:
            ax.set_ylabel("relative error of the gradient")
        present = set(rows["grad_mode"].astype(str))
        handles = [Line2D([], [], linewidth=1.5, color=drawn[m]["color"],
                          linestyle=drawn[m]["linestyle"], marker="o",
                          markersize=drawn[m]["markersize"], label=plain(m))
                   for m in modes if m in present]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
        fig.suptitle(plain(title), fontsize=10)
        return to_svg(fig, prefix, title)

    return with_rc(draw)


# ---------------------------------------------------------------------------------------------
# tables and text


def _figure(svg: Markup, caption: object) -> Markup:
    return tag("figure", join([svg, tag("figcaption", caption)]))


def _nowrap(text: object) -> Cell:
    """A cell kept on one line (``rtol=1e-03`` must not break at the hyphen)."""
    return Cell(text, class_="nowrap")


def _note(text: str | Markup) -> Markup:
    return tag("p", text, class_="note")


def _kib(x: float) -> str:
    return fmt.MISSING if pd.isna(x) else f"{x / KIB:,.1f}"


def _per_step(b: float) -> str:
    """Bytes per step in KiB/step, three decimals; a fit residue like -1e-12 reads 0.000."""
    if pd.isna(b):
        return fmt.MISSING
    v = round(b / KIB, 3)
    return f"{v if v else 0.0:,.3f}"


def _pct(x: float) -> str:
    return fmt.MISSING if pd.isna(x) else f"{100 * x:+.1f} %" if x else "0 %"


def _times(x: float) -> str:
    return fmt.MISSING if pd.isna(x) else f"{x:.2f}×"


def _failed_cell(row: pd.Series | None) -> Cell:
    if row is None:
        return num("not run", "num dim")
    status = str(row.get("status"))
    if status == "ok" and not fmt.is_missing(row.get("status_backward")):
        status = f"backward {row['status_backward']}"
    return num(status, "num warn", title=None if fmt.is_missing(row.get("message"))
               else str(row["message"])[:300])


def _fit_table(fits: Sequence[MemoryFit]) -> Markup:
    body = []
    for f in fits:
        fit = f.fit
        steps = (f"{fmt.count(fit.steps_min)} … {fmt.count(fit.steps_max)}" if fit.n
                 else fmt.MISSING)
        body.append([f.label, "fixed steps" if f.fixed else "adaptive", f.mode,
                     num(_per_step(fit.b)),
                     num(_kib(fit.a)), num(str(fit.n)), num(steps)])
    headers = ["solver", "steps", "mode",
               Cell("b [KiB/step]", title="least-squares slope of bytes against steps"),
               Cell("a [KiB]", title="intercept: what is saved whatever the step count"),
               "points", "steps range"]
    return render_table(headers, body, class_="memfit")


def _memory(grad: pd.DataFrame, modes: list[str], prefix: str, problem: str) -> list[object]:
    ok = grad[[is_ok(r) for _, r in grad.iterrows()]]
    drawn = ok[(ok["n_steps"].astype(float) > 0) & (ok["mem_saved_bytes"].astype(float) > 0)]
    out: list[object] = [tag("h4", "Memory against number of steps")]
    fits = memory_fits(grad)
    if not drawn.empty:
        svg = memory_svg(drawn, modes, prefix, f"{problem}: saved bytes vs steps")
        out.append(_figure(svg, Markup(
            "Memory of the gradient against the number of forward steps, log-log. "
            "<em>mem_saved_bytes</em> is the peak of the bytes autograd saves for the backward "
            "pass (each storage counted once), over the forward and the backward pass; it is "
            "exact and the same on any device. Colour and line style: gradient mode (where two "
            "modes coincide, their markers are concentric); marker shape: solver (a "
            "fixed-step solver's steps are the ladder n, an adaptive one's follow the "
            "tolerance). "
            "Backprop stores every step, so its line rises with slope 1; the adjoint stores "
            "only the end state, so its line is flat; checkpointing lies in between.")))
    else:
        out.append(_note("No ok gradient case with a positive step count and saved bytes to "
                         "draw."))
    if fits:
        fixed = [f for f in fits if f.fixed and not pd.isna(f.fit.b)]
        lead = ""
        if fixed:
            lead = " Fixed-step ladder: " + "; ".join(
                f"{f.mode} {_per_step(f.fit.b)} KiB/step" for f in fixed) + "."
        out.append(_note(Markup(
            "Bytes per step: a least-squares line <em>bytes ≈ a + b · steps</em> in linear "
            "space per solver and mode; b is what one more step costs in saved memory, a "
            "what is saved whatever the number of steps (parameters, inputs). b ≈ 0 means "
            "memory independent of the number of steps." + esc(lead))))
        out.append(_fit_table(fits))
    return out


def _error(grad: pd.DataFrame, modes: list[str], prefix: str, problem: str) -> list[object]:
    out: list[object] = [tag("h4", "Gradient error")]
    ok = grad[[is_ok(r) for _, r in grad.iterrows()]]
    drawn = ok[(ok["grad_rel_err"].astype(float) > 0) & ok["x_setting"].notna()]
    zero = len(ok[ok["grad_rel_err"].astype(float) == 0])
    if not drawn.empty:
        svg = gradient_error_svg(drawn, modes, prefix, f"{problem}: gradient error")
        prov = ok["grad_ref_provenance"].dropna().unique()
        ref = f" Reference gradient: {'; '.join(map(str, prov))}." if len(prov) else ""
        extra = f" {zero} ok case(s) with zero error cannot be drawn on log axes." if zero else ""
        out.append(_figure(svg, (
            "Relative error of the gradient (dL/dy0 and dL/dθ together) against a reference "
            "gradient, one panel per solver: against the number of steps for a fixed-step "
            "solver, against rtol for an adaptive one (finer to the right). Lower is better. "
            "Backprop and checkpoint differentiate exactly the computation that ran (the "
            "discretise-then-optimise gradient); the adjoint solves a second ODE backwards "
            "with its own error control (optimise-then-discretise), so its error can lie "
            "above or below theirs; where it lies above, its backward reconstruction of the "
            "trajectory lost accuracy." + ref + extra)))
    else:
        out.append(_note("No ok gradient case with a positive gradient error to draw."))
    others = [m for m in modes if m != BACKPROP]
    headers: list[object] = ["solver", "setting",
                             Cell("forward err_max", title="max abs error of the forward "
                                                           "solution (same in every mode)")]
    headers += [Cell(f"grad err {m}", title=f"grad_rel_err of {m}") for m in modes]
    if BACKPROP in modes:
        headers += [Cell(f"{m} vs backprop", title="grad_rel_diff_backprop: relative "
                                                   "difference from backprop's gradient")
                    for m in others]
    body = []
    for label, setting, rows in cases(grad):
        by = by_mode(rows)
        errs = [r["err_max"] for r in by.values() if is_ok(r)]
        cells: list[object] = [label, _nowrap(setting), num(fmt.error(errs[0] if errs else None))]
        for m in modes:
            r = by.get(m)
            if not is_ok(r):
                cells.append(_failed_cell(r))
                continue
            title = (f"dL/dy0: {fmt.error(r['grad_rel_err_y0'])}, "  # type: ignore[index]
                     f"dL/dθ: {fmt.error(r['grad_rel_err_theta'])}")  # type: ignore[index]
            cells.append(num(fmt.error(r["grad_rel_err"]), title=title))  # type: ignore[index]
        if BACKPROP in modes:
            for m in others:
                r = by.get(m)
                cells.append(num(fmt.error(r["grad_rel_diff_backprop"])) if is_ok(r)  # type: ignore[index]
                             else _failed_cell(r))
        body.append(cells)
    out.append(_note("Per case: the forward solution's error, each mode's gradient error "
                     "(hover for dL/dy0 and dL/dθ separately) and, on the right, how far each "
                     "mode's gradient is from backprop's for the same solver and setting "
                     "(round-off, ~1e-16, means the same gradient; larger means the mode "
                     "computes a different approximation)."))
    out.append(render_table(headers, body, class_="graderr"))
    return out


def _nfe(grad: pd.DataFrame, modes: list[str], savings: list[Saving]) -> list[object]:
    out: list[object] = [tag("h4", "Function evaluations, forward and backward")]
    saved = {(s.label, s.setting): s.saving for s in savings}
    has_semi = ADJOINT in modes and SEMINORM in modes
    headers: list[object] = ["solver", "setting"]
    headers += [Cell(f"{m}: fwd / bwd (bwd/fwd)", title=f"nfe, nfe_backward and their ratio "
                                                        f"for {m}") for m in modes]
    if has_semi:
        headers.append(Cell("seminorm saving", title="(bwd[adjoint] − bwd[adjoint-seminorm])"
                                                     " / bwd[adjoint]"))
    body = []
    for label, setting, rows in cases(grad):
        by = by_mode(rows)
        cells: list[object] = [label, _nowrap(setting)]
        for m in modes:
            r = by.get(m)
            if not is_ok(r):
                cells.append(_failed_cell(r))
                continue
            fwd, bwd = r["nfe"], r["nfe_backward"]  # type: ignore[index]
            cells.append(num(f"{fmt.count(fwd)} / {fmt.count(bwd)} "
                             f"({_times(ratio(bwd, fwd))})"))
        if has_semi:
            s = saved.get((label, setting), float("nan"))
            cells.append(num(_pct(s), "num" if pd.isna(s) or s >= 0 else "num warn"))
        body.append(cells)
    note = ("Calls of f counted by the harness in the forward pass (fwd) and the backward "
            "pass (bwd), and their ratio (the Neural ODE paper's Fig. 3c compares them). "
            "Backprop's backward pass replays autograd's record of the forward solve and calls "
            "f no more, so its bwd is 0; the adjoint solves the augmented system [y, a, a_θ] "
            "backwards, each step calling f and its vector-Jacobian product; checkpointing "
            "recomputes the forward solve segment by segment.")
    if has_semi:
        note += (" Seminorm saving: the share of the adjoint's backward calls the seminorm "
                 "adjoint avoids (its error test ignores the parameter-gradient channels); "
                 "0 % where it changes nothing (always so for fixed steps), negative where it "
                 "costs more.")
    out += [_note(note), render_table(headers, body, class_="gradnfe")]
    if has_semi:
        out.append(_note(_saving_sentence(savings)))
    return out


def _saving_sentence(savings: Sequence[Saving]) -> str:
    if not savings:
        return ("Seminorm saving: no case where both the adjoint and the seminorm adjoint "
                "succeeded.")
    adaptive = [s for s in savings if not s.fixed]
    text = (f"Median seminorm saving over {len(savings)} case(s): "
            f"{_pct(median_saving(savings))}")
    if adaptive and len(adaptive) != len(savings):
        text += (f"; over the {len(adaptive)} adaptive case(s), where it can matter: "
                 f"{_pct(median_saving(adaptive))}")
    vals = [s.saving for s in savings]
    return text + f" (range {_pct(min(vals))} … {_pct(max(vals))})."


def _time(grad: pd.DataFrame, modes: list[str]) -> list[object]:
    out: list[object] = [tag("h4", "Time")]
    others = [m for m in modes if m != BACKPROP] if BACKPROP in modes else []
    headers: list[object] = ["solver", "setting"]
    headers += [Cell(f"{m}: fwd + bwd", title=f"median forward and backward wall time of {m}")
                for m in modes]
    headers += [Cell(f"{m} / backprop", title="ratio of the median forward+backward times")
                for m in others]
    body = []
    for label, setting, rows in cases(grad):
        by = by_mode(rows)
        cells: list[object] = [label, _nowrap(setting)]
        for m in modes:
            r = by.get(m)
            if not is_ok(r):
                cells.append(_failed_cell(r))
                continue
            cells.append(num(f"{fmt.seconds(r['time_forward_median_s'])} + "  # type: ignore[index]
                             f"{fmt.seconds(r['time_backward_median_s'])}",  # type: ignore[index]
                             title=f"total {fmt.seconds(r['time_median_s'])}"))  # type: ignore[index]
        bp = by.get(BACKPROP)
        for m in others:
            r = by.get(m)
            ok = is_ok(r) and is_ok(bp)
            cells.append(num(_times(ratio(r["time_median_s"], bp["time_median_s"]))  # type: ignore[index]
                             if ok else fmt.MISSING))
        body.append(cells)
    devices = ", ".join(sorted(grad["device"].dropna().astype(str).unique())) or fmt.UNKNOWN
    out += [_note(f"Median wall time of the forward pass + the backward pass per mode "
                  f"(hover for the median of the whole forward+backward), on {devices}, and "
                  "each mode's total time relative to backprop's (above 1: slower than "
                  "backprop)."),
            render_table(headers, body, class_="gradtime")]
    return out


def _failures_note(grad: pd.DataFrame) -> Markup:
    bad = grad[[not is_ok(r) for _, r in grad.iterrows()]]
    if bad.empty:
        return _note("Every gradient case finished ok, forward and backward.")
    parts = []
    for (mode, status), g in bad.groupby(
            [bad["grad_mode"].fillna("?"), bad["status"].fillna("missing")], sort=True):
        parts.append(f"{mode} {len(g)}× {status}")
    back = bad[(bad["status"] == "ok")]
    tail = (f" ({len(back)} of them ok forward but failed backward.)" if len(back) else "")
    return _note(f"{len(bad)} gradient case(s) failed and are left out of the figures and "
                 f"fits: {'; '.join(parts)}; see Failures.{tail}")


def problem_block(grad: pd.DataFrame, problem: str,
                  figure_prefix: Callable[[], str]) -> Markup:
    """The memory, error, NFE and time figures and tables of one problem's gradient cases."""
    modes = modes_in_order(grad["grad_mode"].unique())
    first = grad.iloc[0]
    what = (f"{len(grad)} gradient case(s), modes {', '.join(modes)}; batch "
            f"{fmt.text(first['batch'])}, {fmt.text(first['dtype'])}, "
            f"{fmt.count(first['n_params'])} parameters differentiated.")
    parts: list[object] = [tag("h3", problem), _note(what)]
    parts += _memory(grad, modes, figure_prefix(), problem)
    parts += _error(grad, modes, figure_prefix(), problem)
    parts += _nfe(grad, modes, seminorm_savings(grad))
    parts += _time(grad, modes)
    parts.append(_failures_note(grad))
    return join(parts)


def gradients_section(df: pd.DataFrame, figure_prefix: Callable[[], str]) -> Markup:
    """The ``gradients`` section; one line when the run has no gradient cases."""
    grad = gradient_rows(df) if len(df) else df
    intro = _note(Markup(
        "Gradient cases: the loss of a solve differentiated with respect to the initial "
        "state and the parameters of f, in each gradient mode: <em>backprop</em> "
        "(autograd through the solver's operations), <em>adjoint</em> (solve the adjoint "
        "ODE backwards; Chen et al., NeurIPS 2018), <em>adjoint-seminorm</em> (the same, "
        "with the error test ignoring the parameter-gradient channels; Kidger et al., ICML "
        "2021) and <em>checkpoint</em> (store segment boundaries, recompute inside)."))
    if grad.empty:
        return tag("section", join([tag("h2", TITLE), tag("p", "No gradient cases in this "
                                                                "run.")]), id="gradients")
    grad = add_labels(grad)
    blocks = [problem_block(g, str(p), figure_prefix)
              for p, g in grad.groupby(grad["problem"].fillna("unknown"), sort=True)]
    return tag("section", join([tag("h2", TITLE), intro, *blocks]), id="gradients")
