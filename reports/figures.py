"""Matplotlib figures rendered to inline SVG strings.

No pyplot and no global backend switch: each figure is a :class:`matplotlib.figure.Figure`
saved with the SVG writer inside an ``rc_context``, so building a report neither needs a
display nor changes the caller's matplotlib settings. Text stays text (``svg.fonttype =
none``), ids are prefixed per figure so several SVGs can share one HTML page, and the XML
prolog, DOCTYPE and namespace URLs are stripped (an SVG inside HTML needs none of them),
unreferenced ids dropped and coordinates rounded to 0.1 pt, which keeps each figure lean.

Also here: the style of each series (:func:`series_styles`), one tick-label style for log
axes (:func:`tidy_log_axis`) and the figures of plain solves: work-precision, tolerance
proportionality and convergence, small multiples where device, dtype, batch or hardware
vary.
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
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter, LogLocator

from reports.convergence import PRE_ASYMPTOTIC_MAX, OrderFit, loglog_line, roundoff_floor
from reports.markup import Markup, esc
from reports.placement import UNRECORDED_HARDWARE, machine_labels
from reports.summary import LABEL_SEP

RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "odebench",  # deterministic ids: the same data gives the same report
    "path.simplify": True,
    "font.size": 9,
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],  # written into every <text>
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}
_META = {"Date": None, "Creator": None, "Format": None, "Type": None}
T = TypeVar("T")

# Hues that stay apart for the common colour-vision deficiencies: Paul Tol's "bright",
# "vibrant" and "muted" schemes (SRON/EPS/TN/09-002), the pale members left out as they
# vanish on white. One hue per method family; members of a family differ in shade,
# marker, dashes and fill.
_HUES = ("#0077BB", "#EE7733", "#009988", "#CC3311", "#AA4499", "#117733", "#33BBEE",
         "#EE3377", "#999933", "#882255", "#332288", "#DDAA33", "#555555")
PALETTE = _HUES  # the colours handed out when nothing says otherwise
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
_LINES: tuple[str | tuple[float, tuple[float, ...]], ...] = (
    "-", (0, (5, 2)), (0, (1.2, 1.6)), (0, (6, 2, 1.5, 2)), (0, (3, 1.5, 1, 1.5, 1, 1.5)))
# Leading name parts that say which library runs a method, not which method it is.
BACKEND_PREFIXES = frozenset({"scipy", "hairer", "tde", "to", "torchdiffeq", "torchode",
                              "diffrax"})


@dataclass(frozen=True)
class Style:
    """How one series (solver) is drawn, the same in every figure of a report."""

    color: str
    marker: str
    linestyle: str | tuple[float, tuple[float, ...]] = "-"
    filled: bool = True

    def line_kw(self) -> dict[str, object]:
        """Keyword arguments of ``Axes.plot`` for this style (line and marker)."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle,
                "markerfacecolor": self.color if self.filled else "white",
                "markeredgecolor": self.color}


def base_name(series: str) -> str:
    """The solver part of a series name: ``dopri5 [cuda, float32]`` -> ``dopri5``."""
    return str(series).split(" [", 1)[0]


def variant_of(series: str) -> str:
    """The variant part of a series name: ``dopri5 [cuda, float32]`` -> ``cuda, float32``."""
    name = str(series)
    if " [" not in name or not name.endswith("]"):
        return ""
    return name.split(" [", 1)[1][:-1]


def method_family(name: str, names: Iterable[str] = ()) -> str:
    """The method a solver name runs, without the library prefix or a variant suffix:
    ``dopri5``, ``dopri5-pt``, ``hairer-dopri5``, ``tde-dopri5`` and ``to-dopri5-pid`` are
    all ``dopri5``.

    A leading part is a library prefix when it is in :data:`BACKEND_PREFIXES`, or when it
    is not a solver name itself and starts two or more of ``names``. A controller (or
    backend) after the name is no part of the method: ``dopri5 · pid`` is ``dopri5``.
    """
    base = base_name(name).split(LABEL_SEP, 1)[0]
    tokens = [t for t in re.split(r"[-_]", base) if t] or [base]
    if len(tokens) > 1:
        first = tokens[0]
        bases = {base_name(n).split(LABEL_SEP, 1)[0] for n in names}
        sharing = sum(1 for n in bases if re.match(re.escape(first) + r"[-_]", n))
        if first in BACKEND_PREFIXES or (first not in bases and sharing >= 2):
            tokens = tokens[1:]
    return tokens[0]


def _shade(color: str, k: int) -> str:
    """``color`` (k = 0), darker (k = 1) or lighter (k = 2)."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    if k % 3 == 1:
        rgb = rgb * 0.68
    elif k % 3 == 2:
        rgb = rgb + (1.0 - rgb) * 0.38
    return matplotlib.colors.to_hex(np.clip(rgb, 0.0, 1.0))


def series_styles(series: Iterable[str]) -> dict[str, Style]:
    """A distinct style per solver, keyed by series name, stable for a given set of names.

    Solvers of one method (:func:`method_family`) share a hue and differ in shade, marker,
    dashes and hollow or filled markers, so lines that lie on top of one another stay
    visible; families take hues in name order. Series that differ only in their variant
    (``dopri5 [float32]``, ``dopri5 [float64]``) share their solver's style: figures draw
    variants in separate panels. Two controllers of one solver (``dopri5 · hairer``,
    ``dopri5 · pid``) are two solvers of one method: one hue, two styles, on one panel.
    """
    names = {str(s) for s in series}
    bases = sorted({base_name(s) for s in names})
    families: dict[str, list[str]] = {}
    for b in bases:
        families.setdefault(method_family(b, bases), []).append(b)
    by_base: dict[str, Style] = {}
    taken: set[tuple[object, ...]] = set()
    n_hue, n_mark = len(_HUES), len(MARKERS)
    for i, key in enumerate(sorted(families)):
        members = sorted(families[key], key=lambda b, key=key: (
            b.split(LABEL_SEP, 1)[0] != key, len(b.split(LABEL_SEP, 1)[0]), b))
        for j, b in enumerate(members):
            color = _shade(_HUES[i % n_hue], j)
            m = j + 3 * (i // n_hue)
            line = _LINES[j % len(_LINES)]
            filled = j % 2 == 0
            while (color, MARKERS[m % n_mark], line, filled) in taken:
                m += 1
            taken.add((color, MARKERS[m % n_mark], line, filled))
            by_base[b] = Style(color, MARKERS[m % n_mark], line, filled)
    return {s: by_base[base_name(s)] for s in names}


def style_of(styles: dict[str, Style], series: str) -> Style:
    """``styles[series]``, else the style of its solver, else a neutral grey."""
    if series in styles:
        return styles[series]
    base = base_name(series)
    for name, st in styles.items():
        if base_name(name) == base:
            return st
    return Style("#555555", "o")


_ID = re.compile(r'\bid="([^"]+)"')
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_COORDS = re.compile(r'(\s(?:d|x|y|x1|x2|y1|y2)=")([^"]*)(")')
_DECIMAL = re.compile(r"-?\d+\.\d{2,}")
_NO_ROTATION = re.compile(r'\s+transform="rotate\(-?0 [^"]*\)"')
_REF = re.compile(r'(?:href="#|url\(#)([^")]+)')
_ID_ATTR = re.compile(r'\s+id="([^"]+)"')


def _round_coords(svg: str) -> str:
    """Path data and positions to 0.1 pt (invisible at any zoom a page is read at); the
    SVG writer's six digits are most of a figure's bytes."""

    def one(m: re.Match[str]) -> str:
        v = f"{float(m.group(0)):.1f}"
        return "0" if v in ("0.0", "-0.0") else v.removesuffix(".0")

    return _COORDS.sub(lambda m: m.group(1) + _DECIMAL.sub(one, m.group(2)) + m.group(3), svg)


def to_svg(fig: Figure, prefix: str, label: str) -> Markup:
    """``fig`` as an inline ``<svg>`` element whose ids all start with ``prefix``.

    Call it inside :func:`with_rc` so the SVG writer sees the report's settings.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=_META)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = _XMLNS.sub("", svg, count=0)
    svg = _round_coords(svg)
    svg = _NO_ROTATION.sub("", svg)
    ids = set(_ID.findall(svg))
    used = set(_REF.findall(svg))
    svg = _ID_ATTR.sub(lambda m: m.group(0) if m.group(1) in used else "", svg)
    ids &= used
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


def _decade(e: int) -> str:
    return "10" + str(int(e)).translate(_SUPERSCRIPT)


def _power_of_ten(x: float, _pos: int | None = None) -> str:
    """``10⁻⁵`` in plain Unicode: reads like the mathtext default without its parsing cost;
    a value between decades as ``2×10⁻⁵``."""
    if x <= 0 or not np.isfinite(x):
        return ""
    e = int(np.floor(np.log10(x) + 1e-9))
    m = x / 10.0**e
    if abs(m - 1.0) < 1e-6:
        return _decade(e)
    return f"{m:.3g}×{_decade(e)}"


def _decades_in(lo: float, hi: float) -> int:
    """How many powers of ten lie in ``[lo, hi]``."""
    if lo <= 0 or hi <= 0:
        return 0
    return max(0, int(np.floor(np.log10(hi) + 1e-9) - np.ceil(np.log10(lo) - 1e-9)) + 1)


class LogTickLabels(Formatter):
    """One label style on a log axis: decades as ``10ⁿ``, minor ticks unlabelled; on an axis
    holding fewer than two decades, the 2 and 5 (or, under a factor of 3, every) minor tick
    too, as ``2×10ⁿ``. Decided at draw time, from the limits the axis ends up with."""

    def __init__(self, minor: bool = False) -> None:
        self.minor = minor

    def __call__(self, x: float, pos: int | None = None) -> str:
        if x <= 0 or not np.isfinite(x):
            return ""
        if not self.minor:
            return _power_of_ten(x)
        lo, hi = sorted(self.axis.get_view_interval()) if self.axis else (0.0, 0.0)
        if lo <= 0 or _decades_in(lo, hi) >= 2:
            return ""
        e = int(np.floor(np.log10(x) + 1e-9))
        m = round(x / 10.0**e, 6)
        wanted = (2, 3, 4, 5, 6, 7, 8, 9) if hi / lo < 3 else (2, 5)
        return _power_of_ten(x) if any(abs(m - k) < 1e-6 for k in wanted) else ""


class _MinorLogLocator(LogLocator):
    """Minor ticks 2..9 on a log axis spanning at most :attr:`MAX_DECADES` decades, none on a
    longer one (there they crowd, and each tick costs bytes in the SVG)."""

    MAX_DECADES = 2.0

    def __init__(self) -> None:
        super().__init__(base=10.0, subs=tuple(range(2, 10)), numticks=40)

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        lo, hi = sorted((vmin, vmax))
        if lo <= 0 or np.log10(hi / lo) > self.MAX_DECADES:
            return np.array([])
        return super().tick_values(vmin, vmax)


def tidy_log_axis(axis: Axis) -> None:
    """Label a log axis in one style (:class:`LogTickLabels`): matplotlib's default mixes
    ``50`` with ``10¹`` on short axes, and its many minor labels overlap."""
    axis.set_major_locator(LogLocator(base=10.0, numticks=8))
    axis.set_minor_locator(_MinorLogLocator())
    axis.set_major_formatter(LogTickLabels(minor=False))
    axis.set_minor_formatter(LogTickLabels(minor=True))


def _widen(get, set_, min_ratio: float) -> tuple[float, float]:
    lo, hi = get()
    if lo > 0 and hi / lo < min_ratio:
        mid = np.sqrt(lo * hi)
        lo, hi = mid / np.sqrt(min_ratio), mid * np.sqrt(min_ratio)
        set_(lo, hi)
    return lo, hi


def widen_log_ylim(ax: Axes, min_ratio: float = 10.0) -> tuple[float, float]:
    """Make the log y axis span at least ``min_ratio`` (flat data would give a degenerate one)."""
    return _widen(ax.get_ylim, ax.set_ylim, min_ratio)


def widen_log_xlim(ax: Axes, min_ratio: float = 10.0) -> tuple[float, float]:
    """:func:`widen_log_ylim` for the x axis."""
    return _widen(ax.get_xlim, ax.set_xlim, min_ratio)


# ---------------------------------------------------------------------------------------------
# plain solves: work-precision, tolerance proportionality, convergence

ERROR_LABEL = "relative error at the end point"
NFE_LABEL = "function evaluations (NFE)"
TIME_LABEL = "median wall time of one solve [s]"
RTOL_LABEL = "requested relative tolerance (rtol)"
FACET_COLUMNS = ("device", "dtype", "batch", "hardware")
"""What the panels of a figure split by, where it varies; ``hardware`` by machine
(:func:`reports.placement.machine_labels`: the label without a GPU, which ``device`` tells
apart) and only where the rows carry more than one (a row without one is on the run's
machine), so that times measured on two machines are never drawn on one axis."""


def end_point_error(rows: pd.DataFrame) -> pd.Series:
    """``E = 10**-scd``: the report's one error measure for plain solves (relative error at
    the end point; scd as the IVP Test Set defines it, Mazzia & Magherini)."""
    scd = pd.to_numeric(rows["scd"], errors="coerce") if "scd" in rows else \
        pd.Series(np.nan, index=rows.index)
    return 10.0 ** (-scd.astype(float))


DRAWN_COLUMNS = ("problem", "series", "solver", "scd", "nfe", "time_median_s", "time_iqr_s",
                 "rtol", "atol", "n_steps_requested", *FACET_COLUMNS, "gpu_name")
"""The columns the solve figures read: the rest of a case's row is left behind, so that
sorting and splitting the rows moves a few columns, not sixty."""
_NUMERIC = ("nfe", "time_median_s", "time_iqr_s")  # converted to floats once, in with_error


def with_error(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with a finite, positive :func:`end_point_error`, as a column ``E`` (only
    the columns the figures read, :data:`DRAWN_COLUMNS`)."""
    out = rows[[c for c in DRAWN_COLUMNS if c in rows]].copy()
    for c in _NUMERIC:  # once here, not per series and panel
        if c in out:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    out["E"] = end_point_error(out)
    return out[np.isfinite(out["E"]) & (out["E"] > 0)]


def is_fixed_step(rows: pd.DataFrame) -> bool:
    """Whether a series' rows are a fixed-step ladder (a requested step count, no rtol)."""
    if "n_steps_requested" not in rows:
        return False
    return bool(rows["n_steps_requested"].notna().all())


def ladder_order(rows: pd.DataFrame) -> pd.DataFrame:
    """One series' rows in ladder order, the order its points are joined in: rtol from loose
    to tight for an adaptive solver, the step count ascending for a fixed-step one (NFE
    breaks ties). Joining in NFE order instead zig-zags where NFE is not monotonic."""
    if is_fixed_step(rows):
        a = rows["n_steps_requested"].to_numpy(dtype=float)
    elif "rtol" in rows and rows["rtol"].notna().any():
        a = -np.nan_to_num(rows["rtol"].to_numpy(dtype=float), nan=-np.inf)  # no rtol: last
    else:
        a = np.zeros(len(rows))
    b = rows["nfe"].to_numpy(dtype=float) if "nfe" in rows else np.zeros(len(rows))
    return rows.iloc[np.lexsort((b, a))]  # stable, NaN last: a mergesort by (a, b)


def _facet_sort(value: object) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _integer_text(value: object) -> str:
    """``16`` for a batch read back as ``16.0``; anything else as it is."""
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return str(int(f)) if f.is_integer() else str(value)


def _facet_values(rows: pd.DataFrame, column: str) -> pd.Series:
    if column == "hardware":
        return machine_labels(rows)
    return rows[column].astype("string")


def _varies(rows: pd.DataFrame, column: str) -> bool:
    if column not in rows:
        return False
    return _facet_values(rows, column).nunique(dropna=column == "hardware") > 1


def facets(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(title, rows)`` per combination of the device, dtype, batch and hardware values
    that vary in ``rows`` (``"float32, batch 16"``); one untitled facet when none varies."""
    varying = [c for c in FACET_COLUMNS if _varies(rows, c)]
    if not varying or rows.empty:
        return [("", rows)]
    keys = pd.DataFrame({c: _facet_values(rows, c).fillna(
        UNRECORDED_HARDWARE if c == "hardware" else "?") for c in varying}, index=rows.index)
    out = []
    groups = keys.groupby(varying if len(varying) > 1 else varying[0], sort=False).groups
    for values in sorted(groups, key=lambda v: [_facet_sort(x) for x in
                                                (v if isinstance(v, tuple) else (v,))]):
        vals = values if isinstance(values, tuple) else (values,)
        title = ", ".join(f"batch {_integer_text(v)}" if c == "batch" else str(v)
                          for c, v in zip(varying, vals, strict=True))
        out.append((title, rows.loc[groups[values]]))
    return out


def _series_label(series: str, faceted: bool) -> str:
    return base_name(series) if faceted else series


def _legend(fig: Figure, axes: Iterable[Axes], n_max_cols: int = 4) -> Legend | None:
    """One legend for the figure, below it, each label once."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    if not seen:
        return None
    width = float(fig.get_size_inches()[0])
    longest = max(len(lab) for lab in seen)
    fits = max(1, int(width // (0.065 * longest + 0.55)))  # 8 pt text, handle, gap
    return fig.legend(list(seen.values()), list(seen.keys()), loc="lower center",
                      ncols=min(len(seen), n_max_cols, fits))


# A fixed layout, computed once from the panel grid and the text it holds: matplotlib's
# constrained layout draws every figure two or three extra times to find the same margins,
# which was most of a large report's build time. Distances in inches.
_PAD = 0.04  # around the figure's edge
_TICKS = (3.5 + 3.5) / 72  # major tick length and its label pad
_LABEL = (9 * 1.2 + 4.0) / 72  # a 9 pt axis label and its pad
_TITLE = 0.22  # a 9 pt panel title above its panel, with its pad
_SUPTITLE = 0.23  # the 10 pt figure title at the top
_COL_GAP = 0.18  # between panels side by side (shared y: no tick labels between them)


def _renderer(fig: Figure) -> RendererAgg:
    """A 1x1 pixel renderer: enough to measure text, far cheaper than a draw."""
    return RendererAgg(1, 1, fig.dpi)


def _tick_texts(axis: Axis) -> list[tuple[float, str]]:
    """The (value, label) of the labelled ticks ``axis`` will draw, without making ticks."""
    if not axis._major_tick_kw.get("label1On", True):  # hidden on an inner shared panel
        return []
    lo, hi = sorted(axis.get_view_interval())
    out: list[tuple[float, str]] = []
    for locator, formatter in ((axis.get_major_locator(), axis.get_major_formatter()),
                               (axis.get_minor_locator(), axis.get_minor_formatter())):
        values = [float(v) for v in locator() if lo <= v <= hi]
        out += [(v, t) for v, t in zip(values, formatter.format_ticks(values), strict=True)
                if t]
    return out


def _text_size(renderer: RendererAgg, text: str, size: float) -> tuple[float, float]:
    """Width and height of ``text`` at ``size`` pt, in inches."""
    w, h, _ = renderer.get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False)
    return w / renderer.dpi, h / renderer.dpi


def _fraction(axis: Axis, value: float) -> float:
    """Where ``value`` lies along ``axis``, 0 at its low end, 1 at its high end."""
    lo, hi = sorted(axis.get_view_interval())
    if axis.get_scale() == "log" and lo > 0 and value > 0:
        return float((np.log10(value) - np.log10(lo)) / (np.log10(hi) - np.log10(lo) or 1.0))
    return float((value - lo) / ((hi - lo) or 1.0))


def _place(fig: Figure, grid: np.ndarray, legend: Legend | None, *, titled: bool) -> None:
    """Lay ``grid`` (rows x columns of axes) out by hand: the y tick labels of the left
    column and the axis labels set the left margin, the bottom row's last x tick label the
    right one, the legend (below) and the x labels the bottom one, the figure title (and
    the panel titles, where ``titled``) the top one and the gaps between rows."""
    renderer = _renderer(fig)
    width, height = (float(v) for v in fig.get_size_inches())
    nrows, ncols = grid.shape
    tick_w = max((_text_size(renderer, t, 9)[0] for ax in grid[:, 0]
                  for _, t in _tick_texts(ax.yaxis)), default=0.0)
    left = _PAD + _LABEL + tick_w + _TICKS
    right = _PAD
    ax_w = (width - left - right - (ncols - 1) * _COL_GAP) / ncols
    for ax in grid[-1]:  # a tick label centred near the right end reaches past the panel
        for v, t in _tick_texts(ax.xaxis):
            reach = _text_size(renderer, t, 9)[0] / 2 - (1 - _fraction(ax.xaxis, v)) * ax_w
            right = max(right, _PAD + reach)
    ax_w = (width - left - right - (ncols - 1) * _COL_GAP) / ncols
    leg_h = 0.0
    if legend is not None:
        leg_h = legend.get_window_extent(renderer).height / renderer.dpi + 0.056
    has_x_label = any(ax.get_xlabel() for ax in grid[-1])
    has_x_ticks = any(_tick_texts(ax.xaxis) for ax in grid[-1])
    bottom = (_PAD + leg_h + (_LABEL if has_x_label else 0.0)
              + (_TICKS + 9 / 72 if has_x_ticks else 0.0))
    top = _PAD + _SUPTITLE + (_TITLE if titled else 0.0)
    gap = (_TITLE if titled else 0.0) + 0.12
    ax_h = (height - top - bottom - (nrows - 1) * gap) / nrows
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=_COL_GAP / ax_w if ncols > 1 else 0.0,
                        hspace=gap / ax_h if nrows > 1 else 0.0)


def _suptitle(fig: Figure, title: str) -> None:
    height = float(fig.get_size_inches()[1])
    fig.suptitle(plain(title), fontsize=10, y=1 - _PAD / height, va="top")


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_xticks([])
    ax.set_yticks([])


def _iqr_bounds(median: np.ndarray, iqr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances left and right of ``median`` covering ``median ± iqr/2`` (the IQR's width
    centred on the median; the quartiles themselves are not in the results), kept positive
    for a log axis."""
    half = np.where(np.isfinite(iqr) & (iqr > 0), iqr / 2.0, 0.0)
    left = np.minimum(half, median * 0.9)
    return left, half


def work_precision_figure(rows: pd.DataFrame, styles: dict[str, Style], title: str) -> Figure:
    """The work-precision figure before SVG conversion: ``E = 10**-scd`` against NFE (left)
    and against median wall time with its IQR (right), log-log, one line per series joined
    in :func:`ladder_order`; one row of panels per :func:`facets` variant, shared axes."""
    data = with_error(rows)
    parts = facets(data)
    faceted = len(parts) > 1
    fig = Figure(figsize=(7.6, 2.7 * len(parts) + 0.9))
    axes = fig.subplots(len(parts), 2, sharex="col", sharey=True, squeeze=False)
    for (facet, part), (ax_nfe, ax_time) in zip(parts, axes, strict=True):
        for series, s in part.groupby("series", sort=True):
            s = ladder_order(s)
            st = style_of(styles, str(series))
            kw = dict(st.line_kw(), markersize=4, linewidth=1.1,
                      label=plain(_series_label(str(series), faceted)))
            nfe, err = s["nfe"].to_numpy(dtype=float), s["E"].to_numpy(dtype=float)
            ax_nfe.plot(nfe[nfe > 0], err[nfe > 0], **kw)
            median = s["time_median_s"].to_numpy(dtype=float)
            timed = median > 0
            x, y = median[timed], err[timed]
            ax_time.plot(x, y, **kw)
            iqr = (s["time_iqr_s"].to_numpy(dtype=float)[timed] if "time_iqr_s" in s
                   else np.full(len(x), np.nan))
            if len(x) and np.isfinite(iqr).any():
                left, right = _iqr_bounds(x, iqr)
                gap = np.full(len(x), np.nan)  # one path per series, broken between points
                bx = np.column_stack([x - left, x + right, gap]).ravel()
                by = np.column_stack([y, y, gap]).ravel()
                ax_time.plot(bx, by, color=st.color, linewidth=0.8, alpha=0.55,
                             solid_capstyle="butt")
        if facet:
            ax_nfe.set_title(plain(facet), fontsize=9, loc="left", y=1.0)
        ax_nfe.set_ylabel(ERROR_LABEL)
        for ax in (ax_nfe, ax_time):
            ax.set_xscale("log")
            ax.set_yscale("log")
    if data.empty:
        _no_data(axes[0][0], "no case with a finite error")
    else:
        widen_log_ylim(axes[0][0])
        for ax in axes[0]:
            widen_log_xlim(ax, 4.0)
        for ax in axes.ravel():
            tidy_log_axis(ax.xaxis)
            tidy_log_axis(ax.yaxis)
    axes[-1][0].set_xlabel(NFE_LABEL)
    axes[-1][1].set_xlabel(TIME_LABEL)
    legend = _legend(fig, axes.ravel(), 5)
    _suptitle(fig, title)
    _place(fig, axes, legend, titled=faceted)
    return fig


def work_precision_svg(rows: pd.DataFrame, styles: dict[str, Style], prefix: str,
                       title: str) -> Markup:
    """:func:`work_precision_figure` as inline SVG. ``rows`` are the ok cases of one problem;
    those without a finite ``scd`` are left out."""
    return with_rc(lambda: to_svg(work_precision_figure(rows, styles, title), prefix, title))


@dataclass(frozen=True)
class TolFit:
    """``E ≈ C · rtol^p`` over ``n`` points (NaN when fewer than two distinct rtol)."""

    C: float
    p: float
    n: int


def fit_tolerance(rtol: Sequence[float] | np.ndarray,
                  err: Sequence[float] | np.ndarray) -> TolFit:
    """Tolerance proportionality ``E ≈ C · rtol^p``: the least-squares line through
    ``(log10 rtol, log10 E)``, as DETEST (Hull, Enright, Fellen, Sedgwick 1972) and ACM TOMS
    648 report it. p = 1 and C near 1 mean the solver delivers what is asked for;
    non-finite and non-positive points are ignored."""
    p, log_c, n = loglog_line(rtol, err)
    return TolFit(float(10.0**log_c), p, n)


def _tolerance_fit(problem: str, series: str, s: pd.DataFrame) -> TolFit:
    """The analysis' :func:`reports.findings.tolerance_fit` of one series' points, so that
    the figure's legend and the report's tables give the same C and p."""
    from reports import findings

    rtol = s["rtol"].astype(float).to_numpy()
    err = s["E"].astype(float).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        digits = -np.log10(err)
    curve = findings.Curve(
        problem=problem, series=series, solver=base_name(series), adaptive=True,
        setting=rtol, digits=digits, nfe=s["nfe"].astype(float).to_numpy(),
        time=s["time_median_s"].astype(float).to_numpy(), time_iqr=np.full(len(s), np.nan))
    got = findings.tolerance_fit(curve)
    if got is None:
        return TolFit(float("nan"), float("nan"), len(s))
    return TolFit(float(got.C), float(got.p), int(got.n_points))


def adaptive_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of adaptive cases: a requested rtol and no requested step count."""
    if "rtol" not in rows:
        return rows.iloc[0:0]
    keep = rows["rtol"].notna()
    if "n_steps_requested" in rows:
        keep &= rows["n_steps_requested"].isna()
    return rows[keep & (pd.to_numeric(rows["rtol"], errors="coerce") > 0)]


def tolerance_figure(rows: pd.DataFrame, styles: dict[str, Style], title: str) -> Figure:
    """Tolerance proportionality before SVG conversion: achieved ``E = 10**-scd`` against the
    requested rtol, log-log, one series per adaptive solver with its fit ``E ≈ C·rtol^p``
    dashed (C and p in the legend) and the diagonal ``E = rtol`` dotted; one panel per
    :func:`facets` variant."""
    data = with_error(adaptive_rows(rows))
    parts = facets(data)
    faceted = len(parts) > 1
    problem = str(data["problem"].iloc[0]) if "problem" in data and len(data) else ""
    fig = Figure(figsize=(6.4, 3.0 * len(parts) + 1.0))
    axes = fig.subplots(len(parts), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for (facet, part), ax in zip(parts, axes, strict=True):
        for series, s in part.groupby("series", sort=True):
            s = ladder_order(s)
            st = style_of(styles, str(series))
            fit = _tolerance_fit(problem, str(series), s)
            name = _series_label(str(series), faceted)
            text = (f"{name}: p = {fit.p:.2f}, C = {fit.C:.2g}" if np.isfinite(fit.p)
                    else f"{name}: no fit")
            x, y = s["rtol"].astype(float), s["E"].astype(float)
            ax.plot(x, y, **dict(st.line_kw(), linestyle="none"), markersize=4,
                    label=plain(text))
            if np.isfinite(fit.p):
                xs = np.array([x.min(), x.max()])
                ax.plot(xs, fit.C * xs**fit.p, color=st.color, linestyle="--", linewidth=1.0)
        if facet:
            ax.set_title(plain(facet), fontsize=9, loc="left", y=1.0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel(ERROR_LABEL)
    if data.empty:
        _no_data(axes[0], "no adaptive case with a finite error")
    else:
        widen_log_ylim(axes[0])
        widen_log_xlim(axes[0])
        lo = max(min(axes[0].get_xlim()[0], axes[0].get_ylim()[0]), 1e-300)
        hi = max(axes[0].get_xlim()[1], axes[0].get_ylim()[1])
        xlim, ylim = axes[0].get_xlim(), axes[0].get_ylim()
        for ax in axes:
            ax.plot([lo, hi], [lo, hi], color="0.45", linestyle=":", linewidth=1.0,
                    label="E = rtol", zorder=0)
        axes[0].set_xlim(xlim)
        axes[0].set_ylim(ylim)
        for ax in axes:
            tidy_log_axis(ax.xaxis)
            tidy_log_axis(ax.yaxis)
    axes[-1].set_xlabel(RTOL_LABEL)
    legend = _legend(fig, axes, 3)
    _suptitle(fig, title)
    _place(fig, axes[:, None], legend, titled=faceted)
    return fig


def tolerance_svg(rows: pd.DataFrame, styles: dict[str, Style], prefix: str,
                  title: str) -> Markup:
    """:func:`tolerance_figure` as inline SVG. ``rows`` are the ok cases of one problem;
    fixed-step cases and rows without a finite ``scd`` are left out."""
    return with_rc(lambda: to_svg(tolerance_figure(rows, styles, title), prefix, title))


CONVERGENCE_ERROR_LABEL = "maximum absolute error"


def convergence_figure(fits: Sequence[OrderFit], styles: dict[str, Style],
                       title: str) -> Figure:
    """Log-log error against step size for fixed-step series, with the fitted slope drawn;
    one panel per variant (``[float32]``) when the series carry several.

    Filled markers entered the fit; hollow ones lie outside the asymptotic range. The dashed
    line is the least-squares fit over the filled points.
    """
    variants = sorted({variant_of(f.series) for f in fits}) or [""]
    faceted = len(variants) > 1
    fig = Figure(figsize=(6.0, 3.4 * len(variants) + 0.4))
    axes = fig.subplots(len(variants), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for variant, ax in zip(variants, axes, strict=True):
        handles: list[Line2D] = []
        for fit in (f for f in fits if variant_of(f.series) == variant):
            st = style_of(styles, fit.series)
            order = "?" if fit.theory is None else str(fit.theory)
            fitted = "—" if np.isnan(fit.fitted) else f"{fit.fitted:.2f}"
            name = base_name(fit.series) if faceted else fit.series
            label = plain(f"{name}: fitted {fitted}, theory {order}")
            keep = fit.err > 0
            h, err, used = fit.h[keep], fit.err[keep], fit.used[keep]
            ax.plot(h, err, color=st.color, linestyle=st.linestyle, linewidth=1.0, alpha=0.6)
            handles.append(Line2D([], [], color=st.color, marker=st.marker, markersize=5,
                                  linestyle=st.linestyle, linewidth=1.0, label=label))
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
        ax.legend(handles=handles, loc="best")
        if faceted:
            ax.set_title(plain(variant), fontsize=9, loc="left", y=1.0)
        ax.set_ylabel(CONVERGENCE_ERROR_LABEL)
    lo, hi = widen_log_ylim(axes[0])
    floor = min((f.floor for f in fits), default=roundoff_floor("float64"))
    for ax in axes:
        if hi > PRE_ASYMPTOTIC_MAX:  # grey: outside the range the fit uses
            ax.axhspan(PRE_ASYMPTOTIC_MAX, hi, color="0.92", zorder=0, linewidth=0)
        if lo < floor:
            ax.axhspan(lo, floor, color="0.92", zorder=0, linewidth=0)
    axes[0].set_ylim(lo, hi)
    h_is_step = all(f.h_is_step for f in fits)
    axes[-1].set_xlabel("step size h = (t1 − t0) / n" if h_is_step
                        else "1 / n (time span unknown)")
    for ax in axes:
        tidy_log_axis(ax.xaxis)
        tidy_log_axis(ax.yaxis)
    _suptitle(fig, title)
    _place(fig, axes[:, None], None, titled=faceted)
    return fig


def convergence_svg(fits: Sequence[OrderFit], styles: dict[str, Style], prefix: str,
                    title: str) -> Markup:
    """:func:`convergence_figure` as inline SVG."""
    return with_rc(lambda: to_svg(convergence_figure(fits, styles, title), prefix, title))
