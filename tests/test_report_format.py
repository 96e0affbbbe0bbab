"""Number formatting for people: significant digits, units, settings, missing values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from reports import format as fmt


@pytest.mark.parametrize("s, text", [
    (850e-9, "850 ns"), (12.34e-6, "12.3 µs"), (4.567e-3, "4.57 ms"), (1.234, "1.23 s"),
    (125, "2 min 05 s"), (3720, "1 h 02 min"), (0, "0 s"), (float("nan"), fmt.MISSING),
    (None, fmt.MISSING), (pd.NA, fmt.MISSING),
])
def test_seconds_picks_a_readable_unit(s: object, text: str) -> None:
    assert fmt.seconds(s) == text


@pytest.mark.parametrize("x, text", [(1.2345e-7, "1.23e-07"), (0.0, "0"),
                                     (math.nan, fmt.MISSING), (math.inf, "∞")])
def test_error_uses_scientific_notation(x: float, text: str) -> None:
    assert fmt.error(x) == text


def test_sig_keeps_three_significant_digits() -> None:
    assert fmt.sig(0.012345) == "0.0123"
    assert fmt.sig(123456) == "1.23e+05"


def test_count_has_thousands_separators() -> None:
    assert fmt.count(1234567) == "1,234,567"
    assert fmt.count(pd.NA) == fmt.MISSING


@pytest.mark.parametrize("row, text", [
    ({"rtol": 1e-6, "atol": 1e-9, "n_steps_requested": pd.NA}, "rtol=1e-06, atol=1e-09"),
    ({"rtol": math.nan, "atol": math.nan, "n_steps_requested": 64}, "n=64"),
    ({}, fmt.MISSING),
])
def test_setting_describes_tolerances_or_step_count(row: dict, text: str) -> None:
    assert fmt.setting(row) == text


def test_duration_is_unknown_without_an_end() -> None:
    assert fmt.duration("2026-01-28T10:15:00+00:00", None) == fmt.UNKNOWN
    assert fmt.duration("2026-01-28T10:15:00+00:00", "2026-01-28T10:15:30+00:00") == "30 s"
    assert fmt.duration("2026-01-28T10:15:00+00:00", "2026-01-28T10:15:30") == fmt.UNKNOWN


@pytest.mark.parametrize("formatter", [fmt.sig, fmt.error, fmt.count, fmt.seconds])
def test_formatters_show_non_numbers_as_text(formatter) -> None:  # noqa: ANN001
    assert formatter("n/a") == "n/a"


@pytest.mark.parametrize("median, iqr, noisy", [
    (1.0, 0.1, False), (1.0, fmt.NOISY_IQR_RATIO, False), (1.0, 0.3, True),
    (0.0, 0.1, False), (None, 0.1, False), (1.0, math.nan, False), ("x", 0.1, False),
])
def test_a_time_is_noisy_when_its_iqr_is_wide(median: object, iqr: object,
                                              noisy: bool) -> None:
    assert fmt.is_noisy(median, iqr) is noisy


def test_timing_settings_come_from_the_suite_or_its_settings() -> None:
    meta = {"suite": {"warmup": 1, "min_repeats": 3, "max_time": 0.5, "rtol": [1e-3],
                      "settings": {"repeats_min_time_s": 0.2}}}
    keys = [k for k, _, _ in fmt.timing_settings(meta)]
    assert keys == ["warmup", "min_repeats", "repeats_min_time_s", "max_time"]
    assert fmt.timing_settings({"suite": "quick"}) == []


def test_suite_settings_read_as_lines_not_a_json_blob():
    from reports.tables import environment_pairs

    meta = {"environment": {"odebench": "0.1.0"}, "odebench_version": "0.1.0",
            "suite": {"name": "default", "settings": {
                "rtol": [1e-3, 1e-6], "max_steps": None,
                "timing": {"statistic": "median", "min_repeats": 3},
                "steps_by_problem": {"kepler": {"euler": [32, 64, 128], "rk4": [128, 256, 512]},
                                     "pleiades": {"rk4": [4000, 5000, 6000]}}}}}
    pairs = dict(environment_pairs(meta))
    assert pairs["suite: rtol"] == "0.001, 1e-06"
    assert pairs["suite: max_steps"] == "not set"
    assert pairs["suite: timing"] == "min_repeats = 3, statistic = median"
    assert pairs["suite: fixed steps per problem"] == (
        "kepler: euler 32..128, rk4 128..512; pleiades: rk4 4000, 5000, 6000")
    assert "odebench_version" not in pairs  # the same version is already the odebench row
