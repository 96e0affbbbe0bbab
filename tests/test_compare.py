"""`compare`: two real runs with planted changes, the significance rule, exits and escaping.

The fixture runs (tests/fixtures/run_cmp_a, run_cmp_b; see make_run_cmp.py) differ in exactly
four planted ways: plant-slow is slower, plant-extra-f makes one more call of f, plant-breaks
fails, plant-mends is fixed; plant-steady is the control. A has euler and B rk4 besides.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.compare import (
    Mark,
    compare_frames,
    compare_runs,
    median_ci,
    min_u_p_value,
    significance,
    u_test_can_decide,
)
from harness.results import META_FILE, RESULTS_FILE, ResultsWriter, to_frame, write_meta

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RUN_A = FIXTURES / "run_cmp_a"
RUN_B = FIXTURES / "run_cmp_b"
CASE = "solve/linear/{}/n=8/none/float64/cpu/b1"
PLANTED_MARKS = {
    "plant-steady": Mark.SAME,
    "plant-slow": Mark.WORSE,
    "plant-extra-f": Mark.SAME,  # its time is unchanged; its NFE is flagged
    "plant-breaks": Mark.NEWLY_FAILING,
    "plant-mends": Mark.FIXED,
}


def _compare(capsys, *args: str) -> tuple[int, list[str], str]:
    code = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def _line_of(lines: list[str], solver: str) -> str:
    (line,) = [x for x in lines if CASE.format(solver) in x]
    return line


# ------------------------------------------------------------------------------ fixture runs


def test_fixture_runs_have_enough_samples_for_the_u_test():
    comp, _ = compare_runs(RUN_A, RUN_B)
    timed = [c for c in comp.cases if c.time is not None]
    assert timed and all(c.time.n_a >= 7 and c.time.n_b >= 7 for c in timed)


def test_compare_flags_exactly_the_planted_cases():
    comp, warnings = compare_runs(RUN_A, RUN_B)
    assert warnings == [] and comp.machine_diffs == []
    marks = {c.solver: c.mark for c in comp.cases}
    assert marks == PLANTED_MARKS
    figures = {c.solver: [f.describe() for f in c.figures] for c in comp.cases}
    assert figures == {
        "plant-steady": [], "plant-slow": [], "plant-extra-f": ["NFE 33 -> 34"],
        "plant-breaks": ["status ok -> error"], "plant-mends": ["status error -> ok"],
    }
    assert {c.solver for c in comp.regressions} == {"plant-slow", "plant-extra-f",
                                                    "plant-breaks"}
    assert {c.solver for c in comp.changes} == {"plant-slow", "plant-extra-f", "plant-breaks",
                                                "plant-mends"}


def test_compare_lists_cases_present_in_only_one_run(capsys, tmp_path):
    code, lines, _ = _compare(capsys, RUN_A, RUN_B, "--out", tmp_path)
    assert code == 0
    a_head = "only in A (1) - missing from B, counted as regressions:"
    b_head = "only in B (1) - new in B, counted as changes:"
    assert lines[lines.index(a_head) + 1].strip() == CASE.format("euler")
    assert lines[lines.index(b_head) + 1].strip() == CASE.format("rk4")


def test_compare_terminal_marks(capsys, tmp_path):
    _, lines, _ = _compare(capsys, RUN_A, RUN_B, "--out", tmp_path)
    for solver, mark in PLANTED_MARKS.items():
        assert _line_of(lines, solver)[0] == str(mark), solver
    assert "NFE 33 -> 34" in _line_of(lines, "plant-extra-f")
    assert "Mann-Whitney U p=" in _line_of(lines, "plant-slow")
    assert lines[-1] == f"HTML: {tmp_path / 'compare.html'}"


def test_a_run_compared_with_itself_has_no_change(capsys, tmp_path):
    code, lines, _ = _compare(capsys, RUN_A, RUN_A, "--out", tmp_path,
                              "--fail-on", "any-change")
    assert code == 0
    assert "0 regression(s), 0 change(s)" in lines[-2]


@pytest.mark.parametrize("fail_on, code", [(None, 0), ("regression", 1), ("any-change", 1)])
def test_fail_on_exit_codes(capsys, tmp_path, fail_on, code):
    extra = ["--fail-on", fail_on] if fail_on else []
    assert _compare(capsys, RUN_A, RUN_B, "--out", tmp_path, *extra)[0] == code


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _only_solvers(run: Path, solvers: set[str]) -> None:
    path = run / RESULTS_FILE
    lines = [x for x in path.read_text().splitlines() if json.loads(x)["solver"] in solvers]
    path.write_text("\n".join(lines) + "\n")


def test_fail_on_regression_ignores_a_fixed_case(capsys, tmp_path):
    a, b = _copy(RUN_A, tmp_path / "a"), _copy(RUN_B, tmp_path / "b")
    for run in (a, b):
        _only_solvers(run, {"plant-steady", "plant-mends"})
    assert _compare(capsys, a, b, "--out", tmp_path, "--fail-on", "regression")[0] == 0
    assert _compare(capsys, a, b, "--out", tmp_path, "--fail-on", "any-change")[0] == 1


def test_html_goes_to_the_current_folder_by_default(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, lines, _ = _compare(capsys, RUN_A, RUN_B)
    assert lines[-1] == "HTML: compare.html"
    html = (tmp_path / "compare.html").read_text()
    assert "<style>" in html and 'rel="stylesheet"' not in html  # self-contained
    assert 'id="machine-warning"' not in html


# ------------------------------------------------------------------------------ machines


def _other_machine(tmp_path: Path) -> Path:
    b = _copy(RUN_B, tmp_path / "b-elsewhere")
    meta = json.loads((b / META_FILE).read_text())
    meta["environment"]["cpu"] = "Another CPU 9000"
    meta["environment"]["hostname"] = "elsewhere"
    (b / META_FILE).write_text(json.dumps(meta))
    return b


def test_different_machines_compare_only_deterministic_figures(capsys, tmp_path):
    b = _other_machine(tmp_path)
    code, lines, _ = _compare(capsys, RUN_A, b, "--out", tmp_path, "--fail-on", "regression")
    assert lines[0].startswith("WARNING: the runs were measured on different machines")
    assert "Another CPU 9000" in lines[0] and "elsewhere" in lines[0]
    assert "times are NOT compared" in lines[0]
    assert _line_of(lines, "plant-slow")[0] == " "  # its time is not compared
    assert _line_of(lines, "plant-breaks")[0] == "!"
    assert "NFE 33 -> 34" in _line_of(lines, "plant-extra-f")
    assert code == 1  # NFE up and a new failure are regressions on any machine
    html = (tmp_path / "compare.html").read_text()
    assert 'id="machine-warning"' in html and "different machines" in html


def test_times_compares_times_across_machines(capsys, tmp_path):
    b = _other_machine(tmp_path)
    _, lines, _ = _compare(capsys, RUN_A, b, "--out", tmp_path, "--times")
    assert lines[0].startswith("WARNING:") and "times compared anyway" in lines[0]
    assert _line_of(lines, "plant-slow")[0] == "+"


# ------------------------------------------------------------------------------ synthetic runs


def _row(solver: str, samples: list[float], **kw) -> dict:
    row = {"case_id": CASE.format(solver), "kind": "solve", "problem": "linear",
           "solver": solver, "status": "ok", "message": "", "nfe": 32, "n_steps": 8,
           "err_max": 1e-3, "scd": 3.0, "time_samples_s": samples,
           "time_median_s": float(np.median(samples)), "repeats": len(samples)}
    return row | kw


def _write_run(folder: Path, rows: list[dict], env: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    env = {"cpu": "x", "hostname": "h"} if env is None else env
    write_meta(folder, {"run_id": folder.name, "environment": env})
    with ResultsWriter(folder) as w:
        for row in rows:
            w.write(row)
    return folder


def test_no_stats_uses_the_factor_alone(capsys, tmp_path):
    # 3 samples a side: too few for the U test or a 99% CI, so never significant with stats
    a = _write_run(tmp_path / "a", [_row("few", [1.0, 1.01, 0.99])])
    b = _write_run(tmp_path / "b", [_row("few", [1.5, 1.52, 1.49])])
    _, lines, _ = _compare(capsys, a, b, "--out", tmp_path)
    assert _line_of(lines, "few").startswith("~")
    assert "too few samples" in _line_of(lines, "few")
    code, lines, _ = _compare(capsys, a, b, "--out", tmp_path, "--no-stats",
                              "--fail-on", "regression")
    assert _line_of(lines, "few").startswith("+") and code == 1


def test_factor_bounds_a_time_change(capsys, tmp_path):
    rng = np.random.default_rng(1)
    a = _write_run(tmp_path / "a", [_row("s", list(1.0 + 0.001 * rng.standard_normal(20)))])
    b = _write_run(tmp_path / "b", [_row("s", list(1.05 + 0.001 * rng.standard_normal(20)))])
    _, lines, _ = _compare(capsys, a, b, "--out", tmp_path)
    assert _line_of(lines, "s").startswith(" ")  # significant, but within 1.1
    _, lines, _ = _compare(capsys, a, b, "--out", tmp_path, "--factor", "1.01")
    assert _line_of(lines, "s").startswith("+")


@pytest.mark.parametrize("column, a, b, flagged", [
    ("err_max", 1e-3, 1e-3 * (1 + 1e-12), False),
    ("err_max", 1e-3, 1e-3 * (1 + 1e-6), True),
    ("scd", 3.0, 3.0 - 1e-5, True),
    ("scd", 3.0, 3.0 - 1e-7, False),  # within scd's absolute 1e-6 digits
    ("scd", 0.0, -8.7e-14, False),  # round-off is not "scd worse"
    ("err_max", 0.0, 1e-16, False),  # below the absolute floor 1e-14
    ("err_max", 0.0, 1e-12, True),
    ("err_max", 1e-20, 2e-20, False),
    ("nfe", 32, 33, True),
    ("n_steps", 8, 7, True),
    ("nfe_backward", 10, 10, False),
])
def test_deterministic_figures_flag_any_change_beyond_a_tiny_tolerance(column, a, b, flagged):
    samples = [1.0] * 8
    cases, _, _ = compare_frames(to_frame([_row("s", samples, **{column: a})]),
                                 to_frame([_row("s", samples, **{column: b})]))
    assert bool(cases[0].figures) is flagged
    if flagged:
        assert cases[0].changed


def test_fewer_steps_is_a_change_but_not_a_regression():
    samples = [1.0] * 8
    cases, _, _ = compare_frames(to_frame([_row("s", samples, n_steps=8)]),
                                 to_frame([_row("s", samples, n_steps=7)]))
    assert cases[0].changed and not cases[0].regression


# ------------------------------------------------------------------------------ escaping


def test_strings_from_a_run_are_escaped_in_compare_html(capsys, tmp_path):
    evil = '<script>alert("odebench")</script>'
    a, b = _copy(RUN_A, tmp_path / "a"), _copy(RUN_B, tmp_path / "b")
    for run in (a, b):
        path = run / RESULTS_FILE
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        for row in rows:
            if row["solver"] == "plant-breaks":
                row["solver"] = evil
                row["message"] = evil
        rows.append(dict(rows[0], case_id=f"only/{evil}/{run.name}", solver=evil))
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = json.loads((b / META_FILE).read_text())
    meta["environment"]["hostname"] = evil
    (b / META_FILE).write_text(json.dumps(meta))
    _compare(capsys, a, b, "--out", tmp_path / "page.html")
    html = (tmp_path / "page.html").read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#34;odebench&#34;)&lt;/script&gt;" in html


# ------------------------------------------------------------------------------ usage errors


def test_a_folder_that_is_not_a_run_is_a_usage_error(capsys, tmp_path):
    code, _, err = _compare(capsys, RUN_A, tmp_path)
    assert code == 2
    assert f"RUN_B {tmp_path} is not a run folder" in err and "meta.json" in err


def test_a_missing_folder_is_a_usage_error(capsys, tmp_path):
    code, _, err = _compare(capsys, tmp_path / "nope", RUN_B)
    assert code == 2 and "does not exist" in err


def test_more_than_two_runs_is_a_usage_error(capsys):
    code, _, err = _compare(capsys, RUN_A, RUN_B, RUN_B)
    assert code == 2 and "exactly two runs" in err


@pytest.mark.parametrize("args, says", [
    (["--fail-on", "sometimes"], "choose from 'regression', 'any-change'"),
    (["--factor", "0.9"], "the factor must be a number above 1"),
    (["--factor", "fast"], "'fast' is not a number above 1"),
])
def test_bad_option_values_exit_2_naming_what_is_allowed(capsys, args, says):
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(RUN_A), str(RUN_B), *args])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


# ------------------------------------------------------------------------------ significance


def test_clearly_different_samples_are_significant():
    rng = np.random.default_rng(0)
    sig = significance(1.0 + 0.01 * rng.standard_normal(10), 1.2 + 0.01 * rng.standard_normal(10))
    assert sig.significant and sig.test == "mann-whitney" and sig.p_value < 0.002


def test_samples_of_one_distribution_are_not_significant():
    rng = np.random.default_rng(0)
    sig = significance(1.0 + 0.01 * rng.standard_normal(30), 1.0 + 0.01 * rng.standard_normal(30))
    assert not sig.significant and sig.test == "mann-whitney"


def test_six_samples_a_side_use_the_ci_rule():
    # the U test cannot reach p < 0.002 with 6 a side (its smallest p is 2/924)
    sig = significance([1.0] * 6, [2.0] * 6)
    assert sig.test == "ci" and not sig.significant


def test_few_samples_are_never_significant():
    sig = significance([1.0, 1.0, 1.0], [5.0, 5.0, 5.0])
    assert sig.test == "ci" and not sig.significant and "too few samples" in sig.why


@pytest.mark.parametrize("n, expected", [(7, None), (8, (0.0, 7.0)), (20, (3.0, 16.0))])
def test_median_ci_from_order_statistics(n, expected):
    # n = 20 at 99%, B ~ Binomial(20, 1/2): k = 4 is the largest with 2 P(B <= k - 1) <= 0.01
    # (2 P(B <= 3) = 0.0026, 2 P(B <= 4) = 0.012), so the interval is [x_(4), x_(17)]
    assert median_ci(list(range(n))) == expected


@pytest.mark.parametrize("shift, significant", [(15.0, True), (0.5, False)])
def test_ci_rule_needs_disjoint_intervals(shift, significant):
    a = [float(x) for x in range(20)]
    b = [x + shift for x in a]
    sig = significance(a, b, rule="ci")  # force the CI rule
    assert sig.test == "ci" and sig.significant is significant


# ------------------------------------------------------------------------------ review fixes


def test_a_case_missing_from_b_is_a_regression(capsys, tmp_path):
    a = _write_run(tmp_path / "a", [_row("kept", [1.0] * 8), _row("gone", [1.0] * 8)])
    b = _write_run(tmp_path / "b", [_row("kept", [1.0] * 8), _row("new", [1.0] * 8)])
    comp, _ = compare_runs(a, b)
    assert comp.only_a == [CASE.format("gone")] and comp.only_b == [CASE.format("new")]
    assert (comp.n_regressions, comp.n_changes) == (1, 2)
    code, lines, _ = _compare(capsys, a, b, "--out", tmp_path, "--fail-on", "regression")
    assert code == 1 and "1 regression(s), 2 change(s)" in lines[-2]


def test_a_case_only_in_b_is_a_change_not_a_regression(capsys, tmp_path):
    a = _write_run(tmp_path / "a", [_row("kept", [1.0] * 8)])
    b = _write_run(tmp_path / "b", [_row("kept", [1.0] * 8), _row("new", [1.0] * 8)])
    assert _compare(capsys, a, b, "--out", tmp_path, "--fail-on", "regression")[0] == 0
    assert _compare(capsys, a, b, "--out", tmp_path, "--fail-on", "any-change")[0] == 1


def test_nothing_matched_fails_on_regression_and_says_so(capsys, tmp_path):
    a = _write_run(tmp_path / "a", [_row("x", [1.0] * 8)])
    b = _write_run(tmp_path / "b", [_row("y", [1.0] * 8)])
    code, lines, _ = _compare(capsys, a, b, "--out", tmp_path, "--fail-on", "regression")
    assert code == 1
    assert any(x.startswith("NO CASE MATCHED: none of A's 1 case(s) is in B") for x in lines)
    assert "NO CASE MATCHED" in (tmp_path / "compare.html").read_text()


def test_min_u_p_value_is_asvs_rule():
    assert min_u_p_value(6, 6) == pytest.approx(2 / 924)
    assert not u_test_can_decide(6, 6)
    assert u_test_can_decide(7, 7) and u_test_can_decide(9, 5) and u_test_can_decide(3, 40)
    assert not u_test_can_decide(2, 2) and not u_test_can_decide(1, 900)


def test_nine_vs_five_separated_samples_are_significant(capsys, tmp_path):
    # fewer repeats when a case slows down (the timing loop's time budget): 9 vs 5, 2x
    sa = [1.0 + 0.01 * i for i in range(9)]
    sb = [2.0 + 0.01 * i for i in range(5)]
    sig = significance(sa, sb)
    assert sig.test == "mann-whitney" and sig.significant and sig.p_value == pytest.approx(
        2 / 2002)
    a = _write_run(tmp_path / "a", [_row("slow", sa)])
    b = _write_run(tmp_path / "b", [_row("slow", sb)])
    code, lines, _ = _compare(capsys, a, b, "--out", tmp_path, "--fail-on", "regression")
    assert _line_of(lines, "slow").startswith("+") and code == 1


def test_three_vs_forty_use_the_u_test():
    sig = significance([1.0, 1.1, 1.2], [2.0 + 0.01 * i for i in range(40)])
    assert sig.test == "mann-whitney" and sig.significant


def test_too_few_samples_names_the_short_side():
    sig = significance([1.0], [2.0 + 0.01 * i for i in range(20)])
    assert sig.test == "ci" and not sig.significant
    assert "A has 1," in sig.why and "B has" not in sig.why and "8 a side" in sig.why
    sig = significance([1.0, 1.1, 1.2, 1.3, 1.4], [2.0, 2.1, 2.2, 2.3, 2.4])
    assert "A has 5 and B has 5" in sig.why


def _grad_row(**kw) -> dict:
    return _row("g", [1.0] * 8, kind="gradient", grad_mode="adjoint", grad_rel_err=1e-6,
                grad_rel_err_y0=1e-6, grad_rel_err_theta=2e-6, n_steps_backward=10,
                status_backward="ok") | kw


@pytest.mark.parametrize("change, column, worse", [
    ({"grad_rel_err": 1e-5}, "grad_rel_err", True),
    ({"grad_rel_err": 1e-7}, "grad_rel_err", False),
    ({"grad_rel_err_y0": 1e-3}, "grad_rel_err_y0", True),
    ({"grad_rel_err_theta": 1e-3}, "grad_rel_err_theta", True),
    ({"n_steps_backward": 12}, "n_steps_backward", True),
    ({"n_steps_backward": -1}, "n_steps_backward", False),  # -1: unknown, not worse
    ({"status_backward": "nonfinite"}, "status_backward", True),
])
def test_gradient_figures_are_compared(change, column, worse):
    cases, _, _ = compare_frames(to_frame([_grad_row()]), to_frame([_grad_row(**change)]))
    (fig,) = cases[0].figures
    assert fig.column == column and fig.worse is worse
    assert cases[0].regression is worse and cases[0].changed


def _train_row(**kw) -> dict:
    row = {"case_id": "train/spiral/dopri5", "kind": "train", "problem": "spiral",
           "solver": "dopri5", "status": "ok", "message": "", "nfe": 1000,
           "loss_final": 0.01, "loss_best": 0.009, "val_err": 0.02, "test_error": 0.05,
           "iteration_to_target": 120, "iteration_reached": 200, "iterations": 200,
           "time_train_s": 10.0, "time_iter_median_s": 0.05}
    return row | kw


@pytest.mark.parametrize("change, column, worse", [
    ({"loss_final": 0.02}, "loss_final", True),
    ({"loss_best": 0.005}, "loss_best", False),
    ({"val_err": 0.03}, "val_err", True),
    ({"test_error": 0.06}, "test_error", True),
    ({"iteration_to_target": 150}, "iteration_to_target", True),
    ({"iteration_to_target": None}, "iteration_to_target", True),  # never reached now
    ({"iteration_reached": 150}, "iteration_reached", True),
])
def test_training_figures_are_compared(change, column, worse):
    cases, _, _ = compare_frames(to_frame([_train_row()]), to_frame([_train_row(**change)]))
    (fig,) = cases[0].figures
    assert fig.column == column and fig.worse is worse


def test_training_time_is_compared_by_the_factor_alone(capsys, tmp_path):
    cases, _, _ = compare_frames(to_frame([_train_row()]),
                                 to_frame([_train_row(time_train_s=20.0)]))
    t = cases[0].time
    assert t.source == "time_train_s" and t.ratio == 2.0 and not t.significance.significant
    assert cases[0].mark is Mark.NOT_SIGNIFICANT and not cases[0].regression
    cases, _, _ = compare_frames(to_frame([_train_row(time_train_s=None)]),
                                 to_frame([_train_row(time_train_s=None,
                                                      time_iter_median_s=0.1)]))
    assert cases[0].time.source == "time_iter_median_s" and cases[0].time.ratio == 2.0
    a = _write_run(tmp_path / "a", [_train_row()])
    b = _write_run(tmp_path / "b", [_train_row(time_train_s=20.0)])
    _, lines, _ = _compare(capsys, a, b, "--out", tmp_path)
    (line,) = [x for x in lines if "train/spiral/dopri5" in x]
    assert line.startswith("~") and "time from time_train_s" in line
    code, lines, _ = _compare(capsys, a, b, "--out", tmp_path, "--no-stats",
                              "--fail-on", "regression")
    assert code == 1


ODD = [None, "0.5", [1.0], float("inf"), float("-inf"), float("nan"), -1.0, 0.0, True]


def test_odd_sample_values_are_skipped(capsys, tmp_path):
    sa = ODD + [1.0 + 0.01 * i for i in range(9)]
    sb = ODD + [2.0 + 0.01 * i for i in range(9)]
    cases, _, _ = compare_frames(to_frame([_row("s", [1.0], time_samples_s=sa)]),
                                 to_frame([_row("s", [1.0], time_samples_s=sb)]))
    assert (cases[0].time.n_a, cases[0].time.n_b) == (9, 9) and cases[0].mark is Mark.WORSE
    a = _write_run(tmp_path / "a", [_row("s", [1.0], time_samples_s=sa)])
    b = _write_run(tmp_path / "b", [_row("s", [1.0], time_samples_s=sb)])
    code, lines, _ = _compare(capsys, a, b, "--out", tmp_path)
    assert code == 0 and _line_of(lines, "s").startswith("+")


def test_samples_without_a_valid_value_give_no_time_verdict():
    cases, _, _ = compare_frames(to_frame([_row("s", [1.0], time_samples_s=ODD)]),
                                 to_frame([_row("s", [1.0], time_samples_s=[5.0] * 9)]))
    assert cases[0].time is None and cases[0].mark is Mark.SAME


def test_out_under_a_file_is_a_usage_error_before_comparing(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    code, lines, err = _compare(capsys, RUN_A, RUN_B, "--out", tmp_path / "file" / "c.html")
    assert code == 2 and lines == []
    assert "is a file, not a folder" in err and "Traceback" not in err


def test_out_in_an_unwritable_folder_is_a_usage_error(capsys, tmp_path, monkeypatch):
    import harness.export

    folder = tmp_path / "ro"
    folder.mkdir()
    real = harness.export.os.access
    monkeypatch.setattr(harness.export.os, "access",
                        lambda p, mode: False if Path(p) == folder else real(p, mode))
    code, lines, err = _compare(capsys, RUN_A, RUN_B, "--out", folder / "c.html")
    assert code == 2 and lines == [] and f"the folder {folder} is not writable" in err


def _env(**kw) -> dict:
    return {"cpu": "x", "hostname": "h", "n_cores": 2, "torch_threads": 1} | kw


@pytest.mark.parametrize("key, value", [("n_cores", 16), ("torch_threads", 4)])
def test_cores_and_threads_are_part_of_the_machine(capsys, tmp_path, key, value):
    a = _write_run(tmp_path / "a", [_row("s", [1.0] * 8)], env=_env())
    b = _write_run(tmp_path / "b", [_row("s", [2.0] * 8)], env=_env(**{key: value}))
    comp, _ = compare_runs(a, b)
    assert [d.key for d in comp.machine_diffs] == [key] and not comp.times_compared
    _, lines, _ = _compare(capsys, a, b, "--out", tmp_path)
    assert lines[0].startswith("WARNING: the runs were measured on different machines")


def test_runs_without_environment_are_not_known_to_be_the_same(capsys, tmp_path):
    a = _write_run(tmp_path / "a", [_row("s", [1.0] * 8)], env={})
    b = _write_run(tmp_path / "b", [_row("s", [2.0] * 8)], env={})
    comp, _ = compare_runs(a, b)
    assert comp.machine_unknown and not comp.times_compared and comp.cases[0].time is None
    _, lines, _ = _compare(capsys, a, b, "--out", tmp_path)
    assert lines[0].startswith("WARNING: the machines are not known to be the same")
    assert "times are NOT compared" in lines[0]
    _, lines, _ = _compare(capsys, a, b, "--out", tmp_path, "--times")
    assert _line_of(lines, "s").startswith("+")


def test_one_run_is_a_usage_error_naming_run_a_and_run_b(capsys):
    code, _, err = _compare(capsys, RUN_A)
    assert code == 2
    assert "RUN_A" in err and "RUN_B" in err and "RUN," not in err and "got 1" in err


def test_tied_small_samples_use_an_exact_p_value():
    # 9 vs 5, fully separated, with ties: the normal approximation would miss it
    sig = significance([1.0] * 4 + [1.01] * 5, [2.0] * 3 + [2.1] * 2)
    assert sig.test == "mann-whitney" and sig.significant
    assert sig.p_value == pytest.approx(2 / 2002)


# ------------------------------------------------------------------------------ executors, hardware


def test_dask_rows_are_warned_about_and_their_times_not_compared(capsys, tmp_path):
    a = _write_run(tmp_path / "a", [_row("s", [1.0] * 8), _row("t", [1.0] * 8)])
    b = _write_run(tmp_path / "b", [_row("s", [2.0] * 8, executor="dask"),
                                    _row("t", [1.0] * 8, executor="dask")])
    code, lines, _ = _compare(capsys, a, b, "--out", tmp_path, "--fail-on", "regression")
    (warning,) = [x for x in lines if x.startswith("WARNING")]
    assert "timings not trusted for comparison: B has 2 row(s) from the dask executor" in warning
    assert "contending for cores and memory bandwidth" in warning
    assert "the times of 2 such matched case(s) are NOT compared" in warning
    assert _line_of(lines, "s")[0] == " " and "B ran it on the dask executor" in _line_of(
        lines, "s")
    assert code == 0  # twice as slow, but timed beside other cases: not a regression
    html = (tmp_path / "compare.html").read_text()
    assert 'id="executor-warning"' in html and "B has 2 row(s) from the dask executor" in html
    _, lines, _ = _compare(capsys, a, b, "--out", tmp_path, "--times")
    assert _line_of(lines, "s")[0] == "+"
    assert any("compared anyway (--times)" in x for x in lines if x.startswith("WARNING"))


def test_executors_of_both_runs_are_named_with_their_counts(tmp_path):
    from harness.compare import executor_warning

    a = _write_run(tmp_path / "a", [_row("s", [1.0] * 8, executor="process"),
                                    _row("t", [1.0] * 8)])
    b = _write_run(tmp_path / "b", [_row("s", [1.0] * 8, executor="dask"),
                                    _row("t", [1.0] * 8, executor="process")])
    comp, _ = compare_runs(a, b)
    assert comp.untrusted_a == {"process": 1}
    assert comp.untrusted_b == {"dask": 1, "process": 1}
    text = executor_warning(comp)
    assert ("A has 1 row(s) from the process executor; B has 1 row(s) from the dask executor "
            "and 1 from the process executor") in text
    assert [c.time is None for c in comp.cases] == [True, True]


def test_cases_on_different_hardware_are_warned_about(capsys, tmp_path):
    a = _write_run(tmp_path / "a", [_row("s", [1.0] * 8, hardware="n1: CPU A, 4 cores"),
                                    _row("t", [1.0] * 8, hardware="n1: CPU A, 4 cores")])
    b = _write_run(tmp_path / "b", [_row("s", [2.0] * 8, hardware="n2: CPU B, 8 cores"),
                                    _row("t", [2.0] * 8, hardware="n1: CPU A, 4 cores")])
    comp, _ = compare_runs(a, b)
    assert comp.hardware_pairs == {("n1: CPU A, 4 cores", "n2: CPU B, 8 cores"): 1}
    _, lines, _ = _compare(capsys, a, b, "--out", tmp_path)
    (warning,) = [x for x in lines if x.startswith("WARNING")]
    assert "1 matched case(s) ran on different hardware" in warning
    assert "'n1: CPU A, 4 cores' in A vs 'n2: CPU B, 8 cores' in B" in warning
    assert _line_of(lines, "s")[0] == " "  # across machines: not compared
    assert _line_of(lines, "t")[0] == "+"  # one machine: compared as ever
    html = (tmp_path / "compare.html").read_text()
    assert 'id="hardware-warning"' in html and "ran on different hardware" in html


def test_runs_without_executor_or_hardware_get_no_new_warning(capsys, tmp_path):
    _, lines, _ = _compare(capsys, RUN_A, RUN_B, "--out", tmp_path)
    assert not any(x.startswith("WARNING") for x in lines)
    assert "time not compared" not in "\n".join(lines)
    html = (tmp_path / "compare.html").read_text()
    assert 'id="executor-warning"' not in html and 'id="hardware-warning"' not in html
    serial = [_row("s", [1.0] * 8, executor="serial", hardware="n1"), _row("t", [1.0] * 8)]
    a = _write_run(tmp_path / "a", serial)
    b = _write_run(tmp_path / "b", [_row("s", [2.0] * 8, executor="serial", hardware="n1"),
                                    _row("t", [2.0] * 8)])
    comp, _ = compare_runs(a, b)
    assert not comp.untrusted_a and not comp.untrusted_b and not comp.hardware_pairs
    assert [c.mark for c in comp.cases] == [Mark.WORSE, Mark.WORSE]
