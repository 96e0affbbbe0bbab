"""Matplotlib figures rendered to inline SVG strings.

No pyplot and no global backend switch: each figure is a :class:`matplotlib.figure.Figure`
saved with the SVG writer inside an ``rc_context``, so building a report neither needs a
display nor changes the caller's matplotlib settings. Text stays text (``svg.fonttype =
none``), ids are prefixed per figure so several SVGs can share one HTML page, and the XML
prolog, DOCTYPE and namespace URLs are stripped (an SVG inside HTML needs none of them).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from reports.convergence import PRE_ASYMPTOTIC_MAX, OrderFit, roundoff_floor
from reports.markup import Markup, esc

RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "odebench",  # deterministic ids: the same data gives the same report
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}
_META = {"Date": None, "Creator": None, "Format": None, "Type": None}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
            "#e377c2", "#7f7f7f", "#bcbd22")
T = TypeVar("T")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


@dataclass(frozen=True)
class Style:
    """How one series (solver) is drawn, the same in every figure of a report."""

    color: str
    marker: str


def series_styles(series: Iterable[str]) -> dict[str, Style]:
    """A colour and marker per series name, assigned in sorted order (stable across figures).

    Colour and marker cycle with different periods, so 10 x 10 series stay distinct.
    """
    names = sorted(set(series))
    n_col, n_mark = len(_PALETTE), len(_MARKERS)
    return {name: Style(_PALETTE[i % n_col], _MARKERS[(i // n_col + i) % n_mark])
            for i, name in enumerate(names)}


_ID = re.compile(r'\bid="([^"]+)"')
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')


def to_svg(fig: Figure, prefix: str, label: str) -> Markup:
    """``fig`` as an inline ``<svg>`` element whose ids all start with ``prefix``.

    Call it inside :func:`with_rc` so the SVG writer sees the report's settings.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=_META)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = _XMLNS.sub("", svg, count=0)
    ids = set(_ID.findall(svg))
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    for ref in ("href=\"#", "url(#"):
        svg = re.sub(re.escape(ref) + r"([^\")]+)",
                     lambda m, ref=ref: ref + (f"{prefix}-{m.group(1)}" if m.group(1) in ids
                                               else m.group(1)), svg)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{esc(label)}" ', 1)
    return Markup(svg.strip())


def plain(text: str) -> str:
    """``text`` for a matplotlib label: ``$`` escaped, so a name is never parsed as mathtext
    (an unbalanced ``$`` in a plugin's name would otherwise crash the figure)."""
    return str(text).replace("$", r"\$")


def with_rc(fn: Callable[[], T]) -> T:
    """Run ``fn`` with the report's matplotlib settings, restoring the caller's afterwards."""
    with matplotlib.rc_context(RC):
        return fn()


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _short(x: float) -> str:
    return f"{x:g}"


def _power_of_ten(x: float, _pos: int | None = None) -> str:
    """``10⁻⁵`` in plain Unicode: reads like the mathtext default without its parsing cost."""
    if x <= 0:
        return ""
    e = np.log10(x)
    if abs(e - round(e)) > 1e-9:
        return _short(x)
    return "10" + str(int(round(e))).translate(_SUPERSCRIPT)


def tidy_log_axis(axis: Axis) -> None:
    """Label decades as ``10⁻⁵``, and minor ticks 2 and 5 only when the axis spans under
    ~1.5 decades (matplotlib's default labels many minor ticks on short log axes, and they
    overlap)."""
    axis.set_major_formatter(FuncFormatter(_power_of_ten))
    lo, hi = sorted(axis.get_view_interval())
    if lo <= 0 or hi / lo >= 30:
        axis.set_minor_formatter(NullFormatter())
        return

    def label(x: float, _pos: int) -> str:
        if x <= 0:
            return ""
        m = x / 10 ** np.floor(np.log10(x))
        return _short(x) if any(abs(m - k) < 1e-6 for k in (2, 5)) else ""

    axis.set_minor_formatter(FuncFormatter(label))


def widen_log_ylim(ax: Axes, min_ratio: float = 10.0) -> tuple[float, float]:
    """Make the log y axis span at least ``min_ratio`` (flat data would give a degenerate one)."""
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < min_ratio:
        mid = np.sqrt(lo * hi)
        lo, hi = mid / np.sqrt(min_ratio), mid * np.sqrt(min_ratio)
        ax.set_ylim(lo, hi)
    return lo, hi


def work_precision_svg(rows: pd.DataFrame, styles: dict[str, Style], prefix: str,
                       title: str) -> Markup:
    """Error against NFE (left) and against median wall time (right), one line per series.

    ``rows`` are the ok cases of one problem with a positive, finite ``err_max``; each
    series' points are joined in order of NFE.
    """

    def draw() -> Markup:
        fig = Figure(figsize=(8.0, 3.9), layout="constrained")
        ax_nfe, ax_time = fig.subplots(1, 2, sharey=True)
        for series, s in rows.groupby("series", sort=True):
            s = s.sort_values(["nfe", "time_median_s"])
            st = styles[str(series)]
            kw = dict(color=st.color, marker=st.marker, markersize=4, linewidth=1.2,
                      label=plain(str(series)))
            ax_nfe.plot(s["nfe"].astype(float), s["err_max"].astype(float), **kw)
            t = s[s["time_median_s"].astype(float) > 0]
            ax_time.plot(t["time_median_s"].astype(float), t["err_max"].astype(float), **kw)
        for ax in (ax_nfe, ax_time):
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax_nfe.set_xlabel("NFE (function evaluations, forward)")
        widen_log_ylim(ax_nfe)
        for ax in (ax_nfe, ax_time):
            tidy_log_axis(ax.xaxis)
        tidy_log_axis(ax_nfe.yaxis)
        ax_time.set_xlabel("median wall time of one solve [s]")
        ax_nfe.set_ylabel("err_max (max abs error)")
        n_series = rows["series"].nunique()
        fig.legend(*ax_nfe.get_legend_handles_labels(), loc="outside lower center",
                   ncols=min(n_series, 4))
        fig.suptitle(plain(title), fontsize=10)
        return to_svg(fig, prefix, title)

    return with_rc(draw)


def convergence_svg(fits: Sequence[OrderFit], styles: dict[str, Style], prefix: str,
                    title: str) -> Markup:
    """Log-log error against step size for fixed-step series, with the fitted slope drawn.

    Filled markers entered the fit; hollow ones lie outside the asymptotic range. The dashed
    line is the least-squares fit over the filled points.
    """

    def draw() -> Markup:
        fig = Figure(figsize=(6.0, 3.8), layout="constrained")
        ax = fig.add_subplot()
        handles: list[Line2D] = []
        for fit in fits:
            st = styles[fit.series]
            order = "?" if fit.theory is None else str(fit.theory)
            fitted = "—" if np.isnan(fit.fitted) else f"{fit.fitted:.2f}"
            label = plain(f"{fit.series}: fitted {fitted}, theory {order}")
            keep = fit.err > 0
            h, err, used = fit.h[keep], fit.err[keep], fit.used[keep]
            ax.plot(h, err, color=st.color, linewidth=1.0, alpha=0.6)
            handles.append(Line2D([], [], color=st.color, marker=st.marker, markersize=5,
                                  linewidth=1.0, label=label))
            ax.plot(h[used], err[used], linestyle="none", marker=st.marker, color=st.color,
                    markersize=5)
            ax.plot(h[~used], err[~used], linestyle="none", marker=st.marker,
                    markerfacecolor="white", color=st.color, markersize=5)
            if not np.isnan(fit.fitted) and used.sum() >= 2:
                lh, le = np.log10(h[used]), np.log10(err[used])
                c = np.mean(le - fit.fitted * lh)
                xs = np.array([h[used].min(), h[used].max()])
                ax.plot(xs, 10 ** (c + fit.fitted * np.log10(xs)), color="black",
                        linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        lo, hi = widen_log_ylim(ax)
        floor = min((f.floor for f in fits), default=roundoff_floor("float64"))
        if hi > PRE_ASYMPTOTIC_MAX:  # grey: outside the range the fit uses
            ax.axhspan(PRE_ASYMPTOTIC_MAX, hi, color="0.92", zorder=0, linewidth=0)
        if lo < floor:
            ax.axhspan(lo, floor, color="0.92", zorder=0, linewidth=0)
        ax.set_ylim(lo, hi)
        h_is_step = all(f.h_is_step for f in fits)
        ax.set_xlabel("step size h = (t1 − t0) / n" if h_is_step else "1 / n (time span unknown)")
        ax.set_ylabel("err_max (max abs error)")
        tidy_log_axis(ax.xaxis)
        tidy_log_axis(ax.yaxis)
        ax.legend(handles=handles, loc="best")
        ax.set_title(plain(title), fontsize=10)
        return to_svg(fig, prefix, title)

    return with_rc(draw)


MODE_COLORS = {"backprop": "#1f77b4", "adjoint": "#d62728", "adjoint-seminorm": "#ff7f0e",
               "checkpoint": "#2ca02c"}


def mode_colors(modes: Sequence[str]) -> dict[str, str]:
    """A fixed colour per built-in gradient mode; other modes take the remaining palette."""
    spare = [c for c in _PALETTE if c not in MODE_COLORS.values()]
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
    return {name: _MARKERS[i % len(_MARKERS)] for i, name in enumerate(sorted(set(labels)))}


def memory_svg(rows: pd.DataFrame, modes: Sequence[str], prefix: str, title: str) -> Markup:
    """Log-log ``mem_saved_bytes`` against attempted forward steps: colour = gradient mode,
    marker = solver (fixed-step ladders solid, adaptive ones dashed), all on one axes.

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
        ax.set_xlabel("attempted forward steps (n_steps)")
        ax.set_ylabel("mem_saved_bytes [bytes]")
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
    """``grad_rel_err`` per mode, one panel per solver ladder: against the number of steps
    for a fixed-step solver, against rtol (finer to the right) for an adaptive one.

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
            ax.set_xlabel("steps n" if fixed else "rtol (finer →)")
            ax.set_title(plain(label), fontsize=9)
            tidy_log_axis(ax.xaxis)
        for ax in axes[len(labels):]:
            ax.set_visible(False)
        widen_log_ylim(axes[0])
        tidy_log_axis(axes[0].yaxis)
        axes[0].set_ylabel("grad_rel_err")
        present = set(rows["grad_mode"].astype(str))
        handles = [Line2D([], [], linewidth=1.5, color=drawn[m]["color"],
                          linestyle=drawn[m]["linestyle"], marker="o",
                          markersize=drawn[m]["markersize"], label=plain(m))
                   for m in modes if m in present]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
        fig.suptitle(plain(title), fontsize=10)
        return to_svg(fig, prefix, title)

    return with_rc(draw)
