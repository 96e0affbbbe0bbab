"""The logic of ``refs --check`` (harness.refs): digits of agreement, and failing loudly.

Only cheap problems are solved here (DETEST A1, Lotka-Volterra); the full check of every
reference is ``python -m harness.refs --check`` (minutes), recorded in docs/references.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import plugins, refs
from problems import references


@pytest.fixture(autouse=True)
def _builtins():
    plugins.load_defaults()


def test_digits_are_relative_per_component_and_take_the_worst_row():
    ref = np.array([[1.0, 100.0], [2.0, 200.0]])
    ours = ref * np.array([[1 + 1e-8, 1 + 1e-3], [1 + 1e-6, 1.0]])
    np.testing.assert_allclose(refs.agreement_digits(ours, ref), [6.0, 3.0], atol=1e-6)


def test_digits_use_the_absolute_error_below_the_floor_and_for_zero_references():
    ref = np.array([[0.0, 1e-20]])
    ours = np.array([[1e-9, 2e-20]])
    np.testing.assert_allclose(refs.agreement_digits(ours, ref), [9.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(refs.agreement_digits(ours, ref, floor=1e-6), [3.0, 14.0],
                               atol=1e-6)


def test_exact_agreement_is_capped_and_nan_reference_rows_are_not_scored():
    ref = np.array([[1.0, np.nan], [2.0, 3.0]])
    ours = np.array([[5.0, 7.0], [2.0, 3.0]])
    ours[0, 0] = 1.0
    assert refs.agreement_digits(ours, ref).tolist() == [refs.MAX_DIGITS, refs.MAX_DIGITS]


def test_a_nan_solution_never_agrees():
    d = refs.agreement_digits(np.array([[np.nan]]), np.array([[1.0]]))
    assert d[0] == -math.inf


def test_a_true_reference_passes_with_its_digits():
    report = refs.check_references(["detest-a1"])
    assert report.ok, report.format_table()
    (row,) = report.rows
    assert row.kind == "exact" and row.check.startswith("independent DOP853")
    assert row.min_digits >= row.expected
    table = report.format_table()
    assert "detest-a1" in table and "ok" in table and "1/1 checks ok" in table


def test_computed_reference_is_recomputed_and_independently_solved():
    report = refs.check_references(["lotka-volterra"])
    assert report.ok, report.format_table()
    checks = [r.check for r in report.rows]
    assert checks[0] == "recompute data/lotka_volterra.json"
    assert checks[1].startswith("independent LSODA")


def _with_wrong_reference(monkeypatch, name, factor):
    real = refs.build_problem

    def build(n):
        p = real(n)
        if n == name:
            p.reference.ys = p.reference.ys.copy()
            p.reference.ys[-1] = p.reference.ys[-1] * factor
        return p

    monkeypatch.setattr(refs, "build_problem", build)


def test_a_deliberately_wrong_reference_is_caught_and_named(monkeypatch, capsys):
    _with_wrong_reference(monkeypatch, "detest-a1", 1 + 1e-7)  # 7 digits; 11 expected
    report = refs.check_references(["detest-a1", "detest-a2"])
    assert not report.ok
    assert report.failed == ["detest-a1"]
    assert "FAIL" in report.format_table() and "FAILED: detest-a1" in report.format_table()

    assert refs.main(["--check", "detest-a1", "detest-a2"]) == 1
    out, err = capsys.readouterr()
    assert "detest-a1" in err and "FAILED" in err
    assert "7.0" in out  # the digits it did reach are shown


def test_a_stored_value_the_solver_no_longer_reproduces_is_caught(monkeypatch):
    real = references.solve

    def drifted(spec, method=None):
        ys = real(spec, method)
        return ys * (1 + 1e-6) if spec.name == "lotka_volterra" else ys

    monkeypatch.setattr(references, "solve", drifted)
    report = refs.check_references(["lotka-volterra"])
    assert not report.ok
    bad = [r for r in report.rows if not r.ok]
    assert [r.check for r in bad] == ["recompute data/lotka_volterra.json"]
    assert 5.5 < bad[0].min_digits < 6.5


def test_a_problem_that_fails_to_build_is_an_error_row(monkeypatch):
    def broken(n):
        raise references.ReferenceDataError("reference data x.json fails its checksum")

    monkeypatch.setattr(refs, "build_problem", broken)
    report = refs.check_references(["detest-a1"])
    assert not report.ok and report.rows[0].error
    assert "ERROR" in report.format_table() and "checksum" in report.format_table()


def test_a_problem_without_a_declared_check_is_solved_through_its_torch_f(monkeypatch):
    monkeypatch.setattr(refs, "_recipes", lambda: ({}, {}))
    report = refs.check_references(["detest-a3"])
    (row,) = report.rows
    assert row.ok and row.expected == refs.DEFAULT_DIGITS
    assert row.check.startswith("independent DOP853 rtol=1e-10")


def test_unknown_problem_is_a_usage_error(capsys):
    assert refs.main(["--check", "no-such-problem"]) == 2
    assert "valid problems:" in capsys.readouterr().err


def test_verbose_lists_every_component():
    report = refs.check_references(["detest-b2"], verbose=True)
    table = report.format_table()
    assert all(f"y{i}" in table for i in (1, 2, 3))
    assert "per component" in table
