"""The report's findings: work-precision costs at a level, standings, family winners, Pareto
fronts, tolerance fits and flagged solves, pinned on hand-made frames, plus the stored runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.results import open_run
from reports import findings as F

FIXTURES = Path(__file__).parent / "fixtures"


def solve(problem: str, solver: str, scd: float, nfe: float, time: float | None = None, *,
          rtol: float | None = None, n: int | None = None, status: str = "ok",
          kind: str = "solve") -> dict:
    """One result row with the columns the findings read (values as JSON would give them)."""
    adaptive = n is None
    return {"kind": kind, "problem": problem, "solver": solver, "grad_mode": "none",
            "device": "cpu", "dtype": "float64", "batch": 1, "rtol": rtol,
            "atol": None if rtol is None else rtol, "n_steps_requested": n,
            "adaptive": adaptive, "status": status, "nfe": nfe, "scd": scd,
            "time_median_s": nfe * 1e-6 if time is None else time, "time_iqr_s": 0.0,
            "case_id": f"{kind}/{problem}/{solver}/{rtol if adaptive else n}"}


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype=object)


def curve(digits, nfe, time=None, setting=None, series="s", adaptive=True) -> F.Curve:
    digits = np.asarray(digits, dtype=float)
    nfe = np.asarray(nfe, dtype=float)
    time = nfe * 1e-6 if time is None else np.asarray(time, dtype=float)
    setting = (10.0 ** -np.arange(1, digits.size + 1) if setting is None
               else np.asarray(setting, dtype=float))
    return F.Curve(problem="p", series=series, solver=series, adaptive=adaptive,
                   setting=setting, digits=digits, nfe=nfe, time=time,
                   time_iqr=np.zeros_like(nfe))


def stored(name: str) -> tuple[pd.DataFrame, dict]:
    run = FIXTURES / name
    return open_run(run).df, json.loads((run / "meta.json").read_text(encoding="utf-8"))


# --- cost_at -------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2.5, 3.0, 4.0, 5.5, 6.0])
def test_cost_at_is_exact_on_a_straight_line_in_log_cost(d):
    # log10(nfe) = 1 + 0.5 d and log10(time) = -4 + 0.25 d: a straight work-precision line
    digits = np.array([2.0, 4.0, 6.0])
    c = curve(digits, 10 ** (1 + 0.5 * digits), 10 ** (-4 + 0.25 * digits))
    cost = F.cost_at(c, d)
    assert cost is not None and not cost.bound
    assert cost.nfe == pytest.approx(10 ** (1 + 0.5 * d), rel=1e-12)
    assert cost.time == pytest.approx(10 ** (-4 + 0.25 * d), rel=1e-12)


def test_cost_at_interpolates_within_the_bracketing_pair_not_at_the_next_point():
    a = curve([2.0, 3.99, 6.5], [1200, 2594, 4100], series="A")
    b = curve([4.2, 7.0], [2678, 5000], series="B")
    cost_a = F.cost_at(a, 4.0)
    w = (4.0 - 3.99) / (6.5 - 3.99)
    assert cost_a.nfe == pytest.approx(10 ** ((1 - w) * math.log10(2594) + w * math.log10(4100)))
    assert 2594 < cost_a.nfe < 2610
    assert not cost_a.bound
    standings = F.problem_standings([b, a], levels=(4.0,))[4.0]
    assert [s.series for s in standings] == ["A", "B"]
    assert standings[0].time_ratio == 1.0 and standings[0].nfe_ratio == 1.0
    assert standings[1].cost.bound
    assert standings[1].nfe_ratio == pytest.approx(2678 / cost_a.nfe)


def test_cost_at_the_loosest_point_already_there_is_an_upper_bound():
    cost = F.cost_at(curve([5.0, 7.0], [300, 900]), 4.0)
    assert cost == F.Cost(nfe=300.0, time=300e-6, bound=True)


def test_cost_at_is_capped_by_a_cheaper_point_further_along_the_ladder():
    # an implicit solver: 3 digits at 1000 NFE, then 5 digits at 400 NFE. Interpolating the
    # crossing would charge 632 NFE for 4 digits, more than the 400 it paid for 5.
    c = curve([3.0, 5.0], [1000.0, 400.0], time=[1.0, 0.5])
    cost = F.cost_at(c, 4.0)
    assert cost.nfe == pytest.approx(400.0) and cost.time == pytest.approx(0.5)
    assert cost.bound  # a measured point with more digits: an upper bound on the cost
    # where the cost grows along the ladder, nothing changes
    grow = F.cost_at(curve([3.0, 5.0], [400.0, 1000.0], time=[0.5, 1.0]), 4.0)
    assert grow.nfe == pytest.approx(10 ** np.mean(np.log10([400.0, 1000.0])))
    assert not grow.bound


@pytest.mark.parametrize("digits", [[1.0, 2.0, 3.5], [3.5], []])
def test_cost_at_never_extrapolates_past_the_last_point(digits):
    assert F.cost_at(curve(digits, np.arange(1, len(digits) + 1) * 100.0), 4.0) is None


def test_cost_at_a_level_hit_exactly_costs_that_point():
    cost = F.cost_at(curve([2.0, 4.0, 6.0], [100, 1000, 10000]), 4.0)
    assert cost.nfe == pytest.approx(1000.0) and not cost.bound


# --- curves ----------------------------------------------------------------------------------


def test_curves_follow_the_tolerance_ladder_not_nfe():
    # rtol 1e-2 .. 1e-5: the NFE zig-zags along the ladder (80 after 100, 150 after 200)
    rows = [solve("p", "z", 5.0, 200, rtol=1e-4), solve("p", "z", 2.0, 100, rtol=1e-2),
            solve("p", "z", 4.5, 150, rtol=1e-5), solve("p", "z", 3.0, 80, rtol=1e-3)]
    (c,) = F.curves(frame(rows))
    assert c.adaptive
    np.testing.assert_array_equal(c.setting, [1e-2, 1e-3, 1e-4, 1e-5])
    np.testing.assert_array_equal(c.nfe, [100, 80, 200, 150])
    np.testing.assert_array_equal(c.digits, [2.0, 3.0, 5.0, 4.5])
    # 4 digits is bracketed by (3.0, 80) and (5.0, 200) on the ladder; sorted by NFE the
    # first bracketing pair would have been (2.0, 100) and (4.5, 150)
    cost = F.cost_at(c, 4.0)
    assert cost.nfe == pytest.approx(math.sqrt(80 * 200))


def test_curves_order_fixed_steps_by_requested_steps():
    rows = [solve("p", "rk4", 8.0, 512, n=128), solve("p", "rk4", 5.0, 128, n=32),
            solve("p", "rk4", 6.5, 256, n=64)]
    (c,) = F.curves(frame(rows))
    assert not c.adaptive
    np.testing.assert_array_equal(c.setting, [32, 64, 128])
    np.testing.assert_array_equal(c.digits, [5.0, 6.5, 8.0])


def test_curves_keep_only_ok_solves_with_finite_figures():
    rows = [solve("p", "a", 3.0, 100, rtol=1e-3),
            solve("p", "a", 6.0, 400, rtol=1e-6, status="max_steps"),
            solve("p", "a", float("nan"), 300, rtol=1e-5),
            solve("p", "a", None, 300, rtol=1e-7),
            solve("p", "a", 9.0, 900, rtol=1e-9, kind="gradient"),
            solve("p", "a", 9.0, 900, rtol=1e-9, kind="train")]
    (c,) = F.curves(frame(rows))
    np.testing.assert_array_equal(c.digits, [3.0])
    assert c.case_ids == ("solve/p/a/0.001",)


def test_curves_of_nothing_usable_are_empty():
    assert F.curves(pd.DataFrame()) == []
    assert F.curves(frame([solve("p", "a", 3.0, 100, rtol=1e-3, status="error")])) == []


# --- families ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("tags", "expected"), [
    (["stiff"], "stiff"), (["learned", "stiff"], "stiff"), (["learned", "nonstiff"], "learned"),
    (["nonstiff", "exact"], "non-stiff"), (["exact"], "other"), ([], "other"), (None, "other"),
])
def test_family_from_tags(tags, expected):
    assert F.family(tags) == expected


def hand_family() -> tuple[pd.DataFrame, dict]:
    """Two non-stiff problems and one stiff one; every point has 5 digits, so each cost at
    4 digits is that point's (an upper bound)."""
    rows = [
        solve("p1", "a", 5.0, 100, 1.0, rtol=1e-5), solve("p1", "b", 5.0, 50, 2.0, rtol=1e-5),
        solve("p1", "c", 3.0, 10, 0.1, rtol=1e-5),  # c does not reach 4 digits on p1
        solve("p2", "a", 5.0, 100, 3.0, rtol=1e-5), solve("p2", "b", 5.0, 100, 2.0, rtol=1e-5),
        solve("p2", "c", 5.0, 10, 1.0, rtol=1e-5),
        solve("s1", "a", 2.0, 100, 1.0, rtol=1e-5),
    ]
    meta = {"p1": {"tags": ["nonstiff"]}, "p2": {"tags": ["nonstiff", "exact"]},
            "s1": {"tags": ["stiff"]}}
    return frame(rows), meta


def test_family_winner_is_the_least_geomean_among_the_most_reached():
    df, meta = hand_family()
    found = {(f.family, f.digits): f for f in F.family_findings(df, meta, levels=(4.0,))}
    nonstiff = found[("non-stiff", 4.0)]
    assert nonstiff.problems == ("p1", "p2")
    ranks = {r.series: r for r in nonstiff.ranking}
    # time ratios: p1 a 1, b 2; p2 a 3, b 2, c 1
    assert ranks["a"].time_ratio_gmean == pytest.approx(math.sqrt(3))
    assert ranks["b"].time_ratio_gmean == pytest.approx(2.0)
    assert ranks["c"].time_ratio_gmean == pytest.approx(1.0)
    assert (ranks["a"].n_reached, ranks["c"].n_reached, ranks["a"].n_problems) == (2, 1, 2)
    assert (ranks["a"].wins_time, ranks["b"].wins_time, ranks["c"].wins_time) == (1, 0, 1)
    # c is fastest where it gets there, but reached the level on fewer problems
    assert nonstiff.by_time.series == "a"
    assert [r.series for r in nonstiff.ranking] == ["a", "b", "c"]
    # NFE ratios: p1 a 2, b 1; p2 a 10, b 10, c 1
    assert ranks["b"].nfe_ratio_gmean == pytest.approx(math.sqrt(10))
    assert ranks["a"].nfe_ratio_gmean == pytest.approx(math.sqrt(20))
    assert nonstiff.by_nfe.series == "b"
    assert "pick a" in nonstiff.text
    stiff = found[("stiff", 4.0)]
    assert stiff.by_time is None and stiff.by_nfe is None
    assert stiff.ranking[0].n_problems == 0


def test_a_solver_fast_on_most_problems_wins_and_the_one_that_reached_all_is_named():
    # x is fastest on p1..p3 and never reaches the level on p4; y reaches all four, slowly
    rows = []
    for p in ("p1", "p2", "p3", "p4"):
        rows += [dict(problem=p, solver="y", adaptive=True, rtol=r, scd=d, nfe=n, time_median_s=t,
                      status="ok", kind="solve")
                 for r, d, n, t in ((1e-3, 2.0, 100, 1.0), (1e-6, 5.0, 400, 4.0))]
        if p != "p4":
            rows += [dict(problem=p, solver="x", adaptive=True, rtol=r, scd=d, nfe=n,
                          time_median_s=t, status="ok", kind="solve")
                     for r, d, n, t in ((1e-3, 2.0, 50, 0.5), (1e-6, 5.0, 200, 2.0))]
    df = pd.DataFrame(rows)
    df["series"] = df["solver"]
    meta = {p: {"tags": ["nonstiff"]} for p in ("p1", "p2", "p3", "p4")}
    (f,) = F.family_findings(df, meta, levels=(4.0,))
    assert f.by_time.series == "x" and (f.by_time.n_reached, f.by_time.n_problems) == (3, 4)
    assert f.robust.series == "y" and f.robust.n_reached == 4
    assert "on all 4 problem(s) where it was reached: y" in f.text
    # reaching half the problems is not enough to be ranked on speed
    half = df[~df["problem"].isin(["p3"]) | (df["solver"] == "y")]
    half = half[~((half["solver"] == "x") & (half["problem"] == "p2"))]
    (g,) = F.family_findings(half, meta, levels=(4.0,))
    assert g.by_time.series == "y" and g.robust is None


def test_problem_standings_put_not_reached_last():
    df, _ = hand_family()
    p1 = [c for c in F.curves(df) if c.problem == "p1"]
    standings = F.problem_standings(p1, levels=(4.0,))[4.0]
    assert [s.series for s in standings] == ["a", "b", "c"]
    assert standings[-1].cost is None and math.isnan(standings[-1].time_ratio)
    assert standings[1].time_ratio == pytest.approx(2.0)
    assert standings[1].nfe_ratio == pytest.approx(1.0)


# --- Pareto front ------------------------------------------------------------------------------


def test_pareto_front_keeps_the_undominated_points_in_digits_order():
    a = curve([2.0, 6.0], [1, 4], time=[1.0, 4.0], series="a")
    b = curve([4.0, 3.0, 9.0], [2, 3, 8], time=[2.0, 3.0, 8.0], series="b")
    front = F.pareto_front([a, b], cost="time")
    assert front == [F.FrontPiece("a", 2.0, 2.0), F.FrontPiece("b", 4.0, 4.0),
                     F.FrontPiece("a", 6.0, 6.0), F.FrontPiece("b", 9.0, 9.0)]


def test_pareto_front_merges_one_series_stretch_and_reads_the_cost_asked_for():
    a = curve([2.0, 4.0, 6.0], [10, 20, 40], time=[5.0, 5.0, 5.0], series="a")
    b = curve([1.0, 8.0], [5, 100], time=[1.0, 9.0], series="b")
    assert F.pareto_front([a, b], cost="nfe") == [
        F.FrontPiece("b", 1.0, 1.0), F.FrontPiece("a", 2.0, 6.0), F.FrontPiece("b", 8.0, 8.0)]
    # by time a's three points cost the same: only its most accurate one is on the front
    assert F.pareto_front([a, b], cost="time") == [
        F.FrontPiece("b", 1.0, 1.0), F.FrontPiece("a", 6.0, 6.0), F.FrontPiece("b", 8.0, 8.0)]


def test_pareto_front_refuses_an_unknown_cost():
    with pytest.raises(ValueError, match="time, nfe"):
        F.pareto_front([], cost="memory")
    assert F.pareto_front([]) == []


# --- tolerance fit -----------------------------------------------------------------------------


def test_tolerance_fit_recovers_c_and_p():
    rtol = 10.0 ** -np.arange(3, 10)
    err = 3.0 * rtol ** 0.8
    fit = F.tolerance_fit(curve(-np.log10(err), np.arange(7) * 10 + 10, setting=rtol))
    assert fit.C == pytest.approx(3.0, rel=1e-9)
    assert fit.p == pytest.approx(0.8, rel=1e-9)
    assert fit.n_points == 7 and fit.rms_residual == pytest.approx(0.0, abs=1e-9)


def test_tolerance_fit_needs_three_adaptive_points():
    assert F.tolerance_fit(curve([3.0, 5.0], [10, 20], setting=[1e-3, 1e-5])) is None
    assert F.tolerance_fit(curve([3.0, 5.0, 7.0], [10, 20, 40], setting=[8, 16, 32],
                                 adaptive=False)) is None
    assert F.tolerance_fit(curve([3.0, 5.0, 7.0], [10, 20, 40],
                                 setting=[1e-3, np.nan, 1e-5])) is None


# --- no correct digits -------------------------------------------------------------------------


def test_no_correct_digits_flags_ok_solves_that_are_wrong():
    rows = [solve("robertson", "scipy-bdf", -13.0, 100, rtol=1e-3),
            solve("robertson", "scipy-bdf", 0.0, 100, rtol=1e-4),
            solve("robertson", "scipy-bdf", 3.0, 100, rtol=1e-5),
            solve("robertson", "dopri5", -5.0, 100, rtol=1e-3, status="max_steps"),
            solve("robertson", "dopri5", None, 100, rtol=1e-4),
            solve("robertson", "dopri5", -1.0, 100, rtol=1e-3, kind="gradient")]
    df = frame(rows)
    df.index = [10, 11, 12, 13, 14, 15]
    flags = F.no_correct_digits(df)
    assert flags.dtype == bool
    assert flags.to_dict() == {10: True, 11: True, 12: False, 13: False, 14: False, 15: False}
    found = F.findings(df, {})
    assert found.wrong_but_ok == 2
    assert found.wrong_but_ok_cases == ("solve/robertson/scipy-bdf/0.001",
                                        "solve/robertson/scipy-bdf/0.0001")


def test_no_correct_digits_of_an_empty_frame_is_empty():
    assert len(F.no_correct_digits(pd.DataFrame())) == 0
    assert not F.no_correct_digits(pd.DataFrame({"status": ["ok"]})).any()


# --- gradients and training --------------------------------------------------------------------


def grad(mode: str, n: int, mem: float, err: float, time: float, status: str = "ok") -> dict:
    return {"kind": "gradient", "problem": "g", "solver": "rk4", "grad_mode": mode,
            "device": "cpu", "dtype": "float64", "batch": 1, "rtol": None, "atol": None,
            "n_steps_requested": n, "status": status, "status_backward": "ok",
            "mem_saved_bytes": mem, "grad_rel_err": err, "time_median_s": time}


def test_gradient_findings_compare_memory_at_common_settings_and_speed_at_an_error_level():
    rows = [grad("backprop", 10, 1000, 1e-3, 0.01), grad("backprop", 100, 10000, 1e-7, 0.1),
            grad("adjoint", 10, 50, 1e-3, 0.02), grad("adjoint", 100, 50, 1e-7, 0.3),
            # checkpoint has only the coarse case, and a fine one that failed
            grad("checkpoint", 10, 200, 1e-3, 0.005),
            grad("checkpoint", 100, 10, 1e-7, 0.001, status="error")]
    (g,) = F.gradient_findings(frame(rows))
    assert g.least_memory_mode == "adjoint"
    assert g.least_memory_bytes == 50.0
    # the coarse cases are fastest, but their gradients are wrong beyond 1e-6
    assert g.fastest_mode == "backprop" and g.fastest_time_s == pytest.approx(0.1)
    assert g.grad_error_level == F.GRAD_ERROR_LEVEL
    assert "adjoint" in g.text and "backprop" in g.text


def test_gradient_findings_on_the_stored_gradient_run():
    df, _ = stored("run_grad")
    (g,) = F.gradient_findings(df)
    assert g.problem == "mlp"
    assert g.least_memory_modes == ("adjoint", "adjoint-seminorm")
    assert g.least_memory_mode == "adjoint"
    assert g.fastest_mode is not None and g.fastest_time_s > 0
    assert F.gradient_findings(stored("run_small")[0]) == []


def train(solver: str, mode: str, ttt: float | None, status: str = "ok") -> dict:
    return {"kind": "train", "problem": "spiral", "task": "spiral", "solver": solver,
            "grad_mode": mode, "status": status, "target_loss": 0.05,
            "iteration_to_target": None if ttt is None else 10, "time_to_target_s": ttt,
            "case_id": f"train/spiral/{solver}/{mode}"}


def test_training_findings_pick_the_first_to_the_target():
    rows = [train("dopri5", "adjoint", 3.0), train("rk4", "backprop", 1.5),
            train("euler", "backprop", 0.5, status="nonfinite"),
            train("dopri5", "backprop", None)]
    (t,) = F.training_findings(frame(rows))
    assert (t.solver, t.grad_mode, t.time_to_target_s) == ("rk4", "backprop", 1.5)
    assert t.runner_up == "dopri5 · adjoint"
    assert t.n_reached == 2 and t.n_cases == 4


def test_training_findings_say_when_no_case_reached_the_target():
    (t,) = F.training_findings(frame([train("dopri5", "adjoint", None)]))
    assert t.solver is None and t.runner_up is None
    assert "no case reached the target" in t.text
    tasks = {t.task: t for t in F.training_findings(stored("run_train")[0])}
    assert set(tasks) == {"spiral", "digits"}
    assert all(t.solver is None for t in tasks.values())


# --- the whole run -----------------------------------------------------------------------------


def test_findings_on_the_small_run():
    df, meta = stored("run_small")
    found = F.findings(df, meta)
    by = {(f.family, f.digits): f for f in found.solve}
    assert set(by) == {(fam, d) for fam in ("non-stiff", "stiff") for d in F.DIGIT_LEVELS}
    for f in found.solve:
        assert f.by_time is not None and f.by_time.n_reached == f.by_time.n_problems == 1
        assert f.text
    assert set(found.fronts) == {"linear", "robertson"}
    for pieces in found.fronts.values():
        lows = [p.digits_lo for p in pieces]
        assert lows == sorted(lows)
        assert all(p.digits_lo <= p.digits_hi for p in pieces)
    assert found.status_counts == {"error": 1, "max_steps": 2, "nonfinite": 1, "ok": 29}
    assert found.wrong_but_ok == 0
    assert found.gradients == [] and found.training == []


@pytest.mark.parametrize("name", ["run_small", "run_grad", "run_train"])
def test_findings_on_the_stored_runs_and_on_object_columns(name):
    df, meta = stored(name)
    found = F.findings(df.astype(object), meta)
    assert sum(found.status_counts.values()) == len(df)
    assert repr(found) == repr(F.findings(df, meta))  # repr: NaN equals NaN


def test_findings_of_nothing():
    assert F.findings(pd.DataFrame(), {}) == F.Findings()
    failed = frame([solve("p", "a", 3.0, 100, rtol=1e-3, status="error")])
    found = F.findings(failed, {"problems": {"p": {"tags": ["stiff"]}}})
    assert [(f.family, f.by_time) for f in found.solve] == [("stiff", None), ("stiff", None)]
    assert found.fronts == {} and found.status_counts == {"error": 1}


# --- odd input -----------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [
    {"problem": ["p", "p"], "solver": ["a", "a"], "status": ["ok", "ok"]},
    {"problem": ["p", "p"], "solver": ["a", "a"], "status": ["ok", None], "scd": [3, "x"],
     "nfe": [10, 20], "time_median_s": [1e-3, 2e-3], "rtol": [1e-3, 1e-4]},
    {"kind": ["gradient", "train", "solve"], "problem": [None] * 3, "solver": [None] * 3,
     "status": [None] * 3},
    {"status": ["ok"]},
])
def test_findings_cope_with_missing_columns_and_values(columns):
    df = pd.DataFrame(columns, dtype=object)
    found = F.findings(df, {"problems": None})
    assert sum(found.status_counts.values()) == len(df)
    assert all(f.text for f in found.solve)
