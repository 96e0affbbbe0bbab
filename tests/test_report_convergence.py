"""Observed order of convergence: the fit and the asymptotic-range selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from harness.results import load_run
from reports.convergence import (
    PRE_ASYMPTOTIC_MAX,
    asymptotic_mask,
    fit_order,
    fit_series,
    roundoff_floor,
)

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 8])
def test_fit_order_recovers_p_from_exact_power_law(p: int) -> None:
    h = 1.0 / 2.0 ** np.arange(3, 10)
    assert fit_order(h, 0.37 * h**p) == pytest.approx(p, abs=1e-10)


@pytest.mark.parametrize("p", [1, 4])
def test_fit_order_recovers_p_from_noisy_data(p: int) -> None:
    rng = np.random.default_rng(p)
    h = 1.0 / 2.0 ** np.arange(3, 12)
    err = 2.0 * h**p * np.exp(0.1 * rng.standard_normal(h.size))
    assert fit_order(h, err) == pytest.approx(p, abs=0.1)


def test_fit_order_ignores_nonpositive_and_nonfinite_points() -> None:
    h = np.array([0.1, 0.05, 0.025, 0.0125, 0.01])
    err = h**2
    err[-1] = 0.0
    h_bad = np.append(h, np.nan)
    err_bad = np.append(err, 1.0)
    assert fit_order(h_bad, err_bad) == pytest.approx(2.0)


@pytest.mark.parametrize("h, err", [([], []), ([0.1], [1e-3]), ([0.1, 0.1], [1e-3, 2e-3])])
def test_fit_order_is_nan_without_two_distinct_steps(h: list, err: list) -> None:
    assert math.isnan(fit_order(h, err))


def test_fit_order_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        fit_order([0.1, 0.2], [1e-3])


def test_asymptotic_mask_drops_large_errors_and_round_off() -> None:
    err = np.array([0.5, PRE_ASYMPTOTIC_MAX, 1e-3, 1e-12, 1e-14, np.nan])
    assert asymptotic_mask(err, "float64").tolist() == [False, True, True, True, False, False]


def test_round_off_floor_depends_on_dtype() -> None:
    assert roundoff_floor("float32") > 1e-5 > 1e-12 > roundoff_floor("float64")
    assert roundoff_floor(None) == roundoff_floor("float64")
    mask = asymptotic_mask([1e-3, 1e-6], "float32")
    assert mask.tolist() == [True, False]


def test_fit_series_on_golden_run_matches_theory() -> None:
    meta, df = load_run(FIXTURE)
    df = df.assign(series=df["solver"].astype(str))
    span = tuple(meta["problems"]["linear"]["t_span"])
    for solver, theory in [("euler", 1), ("my-rk3", 3), ("rk4", 4)]:
        rows = df[(df["problem"] == "linear") & (df["solver"] == solver)]
        fit = fit_series("linear", solver, rows, span)
        assert fit.theory == theory
        assert fit.fitted == pytest.approx(theory, abs=0.2)
        assert fit.h_is_step
    rk4 = fit_series("linear", "rk4", df[(df["problem"] == "linear") & (df["solver"] == "rk4")],
                     span)
    assert not rk4.used[0]  # the finest step is at round-off and is left out
    assert rk4.n_used == len(rk4.h) - 1


def test_fit_series_without_time_span_uses_one_over_n() -> None:
    _, df = load_run(FIXTURE)
    rows = df[(df["problem"] == "linear") & (df["solver"] == "rk4")]
    fit = fit_series("linear", "rk4", rows, None)
    assert not fit.h_is_step
    assert fit.h.max() == pytest.approx(1 / 32)
    assert fit.fitted == pytest.approx(4, abs=0.2)
