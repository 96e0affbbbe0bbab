"""The report's ``gradients`` section: memory, gradient error, NFE and time of each mode.

One block per problem that has gradient cases (``kind == "gradient"``), built from
:mod:`reports.gradients`; every figure and table has a line saying what it shows and how
to read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from reports import format as fmt
from reports.figures import gradient_error_svg, memory_svg
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


def _figure(svg: Markup, caption: object) -> Markup:
    return tag("figure", join([svg, tag("figcaption", caption)]))


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
        cells: list[object] = [label, setting, num(fmt.error(errs[0] if errs else None))]
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
        cells: list[object] = [label, setting]
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
        cells: list[object] = [label, setting]
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
