"""The report's figures: series styles, ladder order, facets, tolerance proportionality, and
the words and tick labels on their axes.

Figures are inspected before SVG conversion (``*_figure`` functions return the matplotlib
Figure); the figures of whole reports are caught by replacing ``to_svg``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import rgb_to_hsv, to_rgb
from matplotlib.figure import Figure

from harness.results import load_run
from reports import figures, gradient_section, training
from reports.build import render_report
from reports.convergence import fit_series
from reports.figures import (
    Style,
    base_name,
    facets,
    fit_tolerance,
    ladder_order,
    method_family,
    series_styles,
    tolerance_figure,
    tolerance_svg,
    with_rc,
    work_precision_figure,
    work_precision_svg,
)
from reports.markup import Markup

FIXTURES = Path(__file__).parent / "fixtures"
SOLVERS = ["dopri5", "dopri5-pt", "euler", "hairer-dop853", "hairer-dopri5", "rk4",
           "scipy-bdf", "scipy-dop853", "scipy-lsoda", "scipy-radau", "scipy-rk45",
           "tde-bosh3", "tde-dopri5", "tde-dopri8", "tde-euler", "tde-rk4", "to-dopri5",
           "to-dopri5-pid", "to-tsit5", "heun"]
DOPRI5 = ["dopri5", "dopri5-pt", "hairer-dopri5", "tde-dopri5", "to-dopri5", "to-dopri5-pid"]


def solve_row(solver: str, *, rtol: float | None = None, n: int | None = None,
              scd: float = 5.0, nfe: int = 100, dtype: str = "float64", batch: int = 1,
              series: str | None = None) -> dict[str, object]:
    return {"problem": "p", "solver": solver, "series": series or solver, "kind": "solve",
            "status": "ok", "device": "cpu", "dtype": dtype, "batch": batch,
            "rtol": np.nan if rtol is None else rtol, "atol": np.nan if rtol is None else rtol,
            "n_steps_requested": np.nan if n is None else n, "scd": scd,
            "err_max": 10.0**-scd, "nfe": nfe, "time_median_s": nfe * 1e-5,
            "time_iqr_s": nfe * 1e-6}


def style_key(st: Style) -> tuple[object, ...]:
    return (st.color, st.marker, st.linestyle, st.filled)


# --- styles ---------------------------------------------------------------------------------


def test_twenty_series_get_twenty_distinct_styles() -> None:
    styles = series_styles(SOLVERS)
    assert len(SOLVERS) == 20
    assert len({style_key(st) for st in styles.values()}) == 20


def test_styles_are_distinct_for_many_unrelated_names() -> None:
    names = [f"solver{i}" for i in range(30)]
    styles = series_styles(names)
    assert len({style_key(st) for st in styles.values()}) == 30


def test_styles_do_not_depend_on_the_order_names_come_in() -> None:
    assert series_styles(SOLVERS) == series_styles(list(reversed(SOLVERS)) + SOLVERS[:3])


@pytest.mark.parametrize("name", DOPRI5)
def test_method_family_strips_library_prefix_and_suffix(name: str) -> None:
    assert method_family(name, SOLVERS) == "dopri5"


@pytest.mark.parametrize("name, family", [("scipy-rk45", "rk45"), ("hairer-dop853", "dop853"),
                                          ("tde-euler", "euler"), ("heun", "heun"),
                                          ("dopri5 [cuda, float32]", "dopri5")])
def test_method_family_of_other_names(name: str, family: str) -> None:
    assert method_family(name, SOLVERS) == family


def test_one_method_shares_a_hue_but_differs_in_marker_dashes_and_fill() -> None:
    styles = series_styles(SOLVERS)
    family = [styles[n] for n in DOPRI5]
    hues = [rgb_to_hsv(to_rgb(st.color))[0] for st in family]
    assert len({st.color for st in family}) >= 2  # shades of one hue ...
    assert max(hues) - min(hues) < 0.02  # ... not unrelated colours
    assert len({st.marker for st in family}) == len(family)
    assert len({st.linestyle for st in family}) >= 4
    assert {st.filled for st in family} == {True, False}
    others = {styles[n].color for n in SOLVERS if n not in DOPRI5}
    assert not others & {st.color for st in family}


def test_variants_of_one_solver_share_its_style() -> None:
    styles = series_styles(["dopri5 [float32]", "dopri5 [float64]", "rk4 [float32]"])
    assert styles["dopri5 [float32]"] == styles["dopri5 [float64]"]
    assert styles["dopri5 [float32]"] != styles["rk4 [float32]"]
    assert base_name("dopri5 [float32]") == "dopri5"


# --- ladder order and facets ----------------------------------------------------------------


def line_of(fig: Figure, label: str) -> tuple[np.ndarray, np.ndarray]:
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_label() == label:
                return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    raise AssertionError(f"no line labelled {label}")


def test_adaptive_points_are_joined_loose_to_tight_not_by_nfe() -> None:
    # NFE is not monotonic in rtol here: joined by NFE, the line would zig-zag
    rtols = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7]
    nfes = [400, 120, 300, 900, 700]
    rows = pd.DataFrame([solve_row("scipy-bdf", rtol=r, nfe=n, scd=-np.log10(r))
                         for r, n in zip(rtols, nfes, strict=True)])
    rows = rows.sample(frac=1.0, random_state=3)
    fig = with_rc(lambda: work_precision_figure(rows, series_styles(["scipy-bdf"]), "p"))
    x, y = line_of(fig, "scipy-bdf")
    assert x.tolist() == nfes
    assert np.allclose(y, rtols)


def test_fixed_step_points_are_joined_by_step_count() -> None:
    rows = pd.DataFrame([solve_row("rk4", n=n, nfe=4 * n) for n in (64, 16, 256, 32)])
    assert ladder_order(rows)["n_steps_requested"].tolist() == [16, 32, 64, 256]


def test_rows_without_finite_scd_are_left_out() -> None:
    rows = pd.DataFrame([solve_row("dopri5", rtol=1e-3, scd=3.0),
                         solve_row("dopri5", rtol=1e-6, scd=np.nan),
                         solve_row("dopri5", rtol=1e-9, scd=np.inf)])
    fig = with_rc(lambda: work_precision_figure(rows, series_styles(["dopri5"]), "p"))
    x, _ = line_of(fig, "dopri5")
    assert len(x) == 1


def two_dtype_rows() -> pd.DataFrame:
    out = []
    for dtype in ("float32", "float64"):
        for solver in ("dopri5", "tde-dopri5", "rk4"):
            for k in range(3):
                kw = {"n": 16 * 2**k} if solver == "rk4" else {"rtol": 10.0 ** (-3 - k)}
                out.append(solve_row(solver, dtype=dtype, batch=16, scd=3.0 + k,
                                     series=f"{solver} [{dtype}]", **kw))
    return pd.DataFrame(out)


def test_a_varying_dtype_gives_one_row_of_panels_per_dtype() -> None:
    rows = two_dtype_rows()
    styles = series_styles(rows["series"])
    fig = with_rc(lambda: work_precision_figure(rows, styles, "p"))
    assert len(fig.axes) == 4
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert titles == ["float32", "float64"]
    per_panel = [sorted(line.get_label() for line in ax.get_lines()
                        if not line.get_label().startswith("_")) for ax in fig.axes]
    assert per_panel[0] == ["dopri5", "rk4", "tde-dopri5"]
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[2])


def test_facet_titles_name_each_varying_value() -> None:
    rows = pd.DataFrame([solve_row("dopri5", rtol=1e-3, dtype=d, batch=b)
                         for d in ("float32", "float64") for b in (1, 16)])
    assert [t for t, _ in facets(rows)] == ["float32, batch 1", "float32, batch 16",
                                            "float64, batch 1", "float64, batch 16"]


def test_nothing_varying_gives_a_single_row() -> None:
    rows = pd.DataFrame([solve_row("dopri5", rtol=10.0**-k, scd=k) for k in (3, 5, 7)])
    fig = with_rc(lambda: work_precision_figure(rows, series_styles(["dopri5"]), "p"))
    assert len(fig.axes) == 2
    assert not any(ax.get_title(loc="left") for ax in fig.axes)


def test_time_panel_has_iqr_bars_around_the_median() -> None:
    rows = pd.DataFrame([solve_row("dopri5", rtol=1e-3, nfe=1000)])
    fig = with_rc(lambda: work_precision_figure(rows, series_styles(["dopri5"]), "p"))
    bars = [ln for ln in fig.axes[1].get_lines() if ln.get_label().startswith("_")]
    x = np.asarray(bars[0].get_xdata(), float)
    assert x[0] == pytest.approx(1e-2 - 5e-4) and x[1] == pytest.approx(1e-2 + 5e-4)


# --- tolerance proportionality --------------------------------------------------------------


@pytest.mark.parametrize("C, p", [(1.0, 1.0), (0.3, 0.8), (25.0, 1.2)])
def test_tolerance_fit_recovers_c_and_p(C: float, p: float) -> None:
    rtol = 10.0 ** -np.arange(3, 11)
    rng = np.random.default_rng(0)
    fit = fit_tolerance(rtol, C * rtol**p * np.exp(0.02 * rng.standard_normal(rtol.size)))
    assert fit.p == pytest.approx(p, abs=0.02)
    assert fit.C == pytest.approx(C, rel=0.1)
    assert fit.n == rtol.size


def test_tolerance_fit_needs_two_tolerances() -> None:
    assert np.isnan(fit_tolerance([1e-3, 1e-3], [1e-4, 2e-4]).p)


def test_tolerance_figure_shows_fit_in_legend_and_the_diagonal() -> None:
    rows = pd.DataFrame([solve_row("dopri5", rtol=r, scd=-np.log10(0.5 * r**0.9))
                         for r in 10.0 ** -np.arange(3, 9)]
                        + [solve_row("rk4", n=32)])
    fig = with_rc(lambda: tolerance_figure(rows, series_styles(["dopri5", "rk4"]), "p"))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["dopri5: p = 0.90, C = 0.5", "E = rtol"]
    svg = tolerance_svg(rows, series_styles(["dopri5", "rk4"]), "fig9", "p: tolerance")
    assert isinstance(svg, Markup) and svg.startswith("<svg")


# --- words and tick labels on the axes ------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_figures() -> list[Figure]:
    """Every figure of the reports of the three fixture runs, plus the tolerance and
    convergence figures of run_small."""
    caught: list[Figure] = []

    def catch(fig: Figure, prefix: str, label: str) -> Markup:
        fig.draw_without_rendering()  # tick labels are made at draw time
        caught.append(fig)
        return Markup("<svg></svg>")

    mp = pytest.MonkeyPatch()
    mp.setattr(figures, "to_svg", catch)
    mp.setattr(training, "to_svg", catch)
    mp.setattr(gradient_section, "to_svg", catch)
    try:
        for name in ("run_small", "run_grad", "run_train"):
            meta, df = load_run(FIXTURES / name)
            render_report(meta, df, run_dir=FIXTURES / name)
        meta, df = load_run(FIXTURES / "run_small")
        ok = df[df["status"] == "ok"].assign(series=lambda d: d["solver"].astype(str))
        styles = series_styles(ok["series"])
        for problem, g in ok.groupby("problem"):
            figures.tolerance_svg(g, styles, "t", f"{problem}: tolerance")
            fits = [fit_series(str(problem), str(s), r, (0.0, 1.0))
                    for s, r in g[g["n_steps_requested"].notna()].groupby("series")]
            if fits:
                figures.convergence_svg(fits, styles, "c", f"{problem}: convergence")
    finally:
        mp.undo()
    assert len(caught) >= 8
    return caught


def axis_labels(fig: Figure) -> list[str]:
    return [t for ax in fig.axes for t in (ax.get_xlabel(), ax.get_ylabel()) if t]


def test_no_axis_is_labelled_with_a_raw_column_name(fixture_figures: list[Figure]) -> None:
    labels = [t for fig in fixture_figures for t in axis_labels(fig)]
    assert labels
    assert [t for t in labels if "_" in t] == []


def log_tick_labels(fig: Figure) -> list[list[str]]:
    out = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() != "log" or not ax.get_visible():
                continue
            lo, hi = sorted(axis.get_view_interval())
            ticks = axis.get_major_ticks() + axis.get_minor_ticks()
            shown = [t.label1.get_text() for t in ticks
                     if t.label1.get_text() and lo <= t.get_loc() <= hi]
            out.append(shown)
    return out


TICK = re.compile(r"^(?:\d(?:\.\d+)?×)?10[⁻]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+$")


def test_log_ticks_use_one_style(fixture_figures: list[Figure]) -> None:
    axes = [labels for fig in fixture_figures for labels in log_tick_labels(fig)]
    assert axes
    for labels in axes:
        assert labels, "a log axis with no labelled tick"
        assert [t for t in labels if not TICK.match(t)] == []


def test_short_log_axis_labels_a_few_ticks_in_the_same_style() -> None:
    rows = pd.DataFrame([solve_row("rk4", n=n, nfe=n, scd=2 + n / 50) for n in (20, 30, 50)])
    fig = with_rc(lambda: work_precision_figure(rows, series_styles(["rk4"]), "p"))
    fig.draw_without_rendering()
    labels = log_tick_labels(fig)[0]  # NFE: 20 ... 50, under one decade
    assert len(labels) >= 2
    assert all(TICK.match(t) for t in labels)
    assert "5×10¹" in labels or "2×10¹" in labels


def test_work_precision_axes_are_in_words() -> None:
    rows = pd.DataFrame([solve_row("dopri5", rtol=10.0**-k, scd=k) for k in (3, 5, 7)])
    fig = with_rc(lambda: work_precision_figure(rows, series_styles(["dopri5"]), "p"))
    assert set(axis_labels(fig)) == {"relative error at the end point",
                                     "function evaluations (NFE)",
                                     "median wall time of one solve [s]"}


def test_work_precision_svg_is_lean() -> None:
    rows = pd.DataFrame([solve_row(s, rtol=10.0**-k, scd=k + i / 10, nfe=50 * k + i)
                         for i, s in enumerate(SOLVERS[:12]) for k in range(3, 11)])
    svg = work_precision_svg(rows, series_styles(rows["series"]), "fig1", "p")
    assert len(svg) < 75_000
    assert not re.search(r'd="[^"]*\d\.\d\d', svg)  # coordinates rounded to 0.1 pt
