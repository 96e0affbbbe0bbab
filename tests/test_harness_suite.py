import pytest

from harness import plugins
from harness.suite import BUILTIN_SUITES, Case, Suite, SuiteError, expand, override, tolerance_pairs


@pytest.fixture(scope="module", autouse=True)
def _discover():
    plugins.discover()


TAGS = {"linear": frozenset({"nonstiff", "exact"}), "robertson": frozenset({"stiff"})}


def test_tolerances_pair_up_or_broadcast():
    assert tolerance_pairs(Suite("s", rtol=(1e-3, 1e-6))) == [(1e-3, 1e-3), (1e-6, 1e-6)]
    assert tolerance_pairs(Suite("s", rtol=(1e-3, 1e-6), atol=(1e-9,))) == [
        (1e-3, 1e-9), (1e-6, 1e-9)]
    with pytest.raises(SuiteError, match="same length"):
        tolerance_pairs(Suite("s", rtol=(1e-3, 1e-6), atol=(1e-3, 1e-6, 1e-9)))


def test_adaptive_solvers_get_the_tolerance_ladder_and_fixed_ones_the_step_ladder():
    suite = Suite("s", solvers=("dopri5", "rk4"), rtol=(1e-3, 1e-6), steps=(8, 16, 32))
    plan = expand(suite, TAGS)
    by_solver = {}
    for c in plan.cases:
        by_solver.setdefault(c.solver, []).append(c)
    assert [(c.rtol, c.n_steps) for c in by_solver["dopri5"] if c.problem == "linear"] == [
        (1e-3, None), (1e-6, None)]
    assert [c.n_steps for c in by_solver["rk4"] if c.problem == "linear"] == [8, 16, 32]
    assert len(plan.cases) == 2 * (2 + 3)


def test_tags_select_problems_with_any_of_them():
    plan = expand(Suite("s", solvers=("rk4",), steps=(8,), tags=("stiff",)), TAGS)
    assert plan.problems == ["robertson"]


def test_case_id_depends_on_settings_only():
    a = Case("kepler", "dopri5", rtol=1e-6, atol=1e-6)
    assert a.case_id == Case("kepler", "dopri5", rtol=1e-6, atol=1e-6).case_id
    assert a.case_id != Case("kepler", "dopri5", rtol=1e-6, atol=1e-9).case_id
    assert a.case_id == "solve/kepler/dopri5/rtol=1e-06,atol=1e-06/none/float64/cpu/b1"


def test_override_ignores_unset_flags():
    base = BUILTIN_SUITES["quick"]
    assert override(base, solvers=None) is base
    assert override(base, solvers=("rk4",)).solvers == ("rk4",)


def test_cuda_refused_where_there_is_none():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SuiteError, match="no CUDA device"):
        expand(Suite("s", devices=("cuda",)), TAGS)


def test_fixed_step_solvers_take_the_problems_own_ladder_for_their_order():
    from problems.nonstiff import build_linear

    linear = build_linear()
    plan = expand(Suite("s", solvers=("euler", "rk4", "dopri5"), problems=("linear",)), TAGS)
    steps = {s: [c.n_steps for c in plan.cases if c.solver == s] for s in ("euler", "rk4")}
    assert steps["euler"] == list(linear.steps_for(1)) != steps["rk4"]
    assert steps["rk4"] == list(linear.steps_for(4))


def test_explicit_steps_win_over_the_problems_ladder():
    suite = override(Suite("s", solvers=("euler", "rk4"), problems=("linear", "lorenz")),
                     steps=(8, 16))
    plan = expand(suite, {"linear": frozenset(), "lorenz": frozenset()})
    assert {c.n_steps for c in plan.cases} == {8, 16}
    assert len(plan.cases) == 2 * 2 * 2


def test_a_problem_without_a_ladder_gets_the_default_one():
    from harness.suite import DEFAULT_STEPS

    plan = expand(Suite("s", solvers=("rk4",), problems=("robertson",)), TAGS)
    assert tuple(c.n_steps for c in plan.cases) == DEFAULT_STEPS


def test_problem_ladders_given_by_the_caller_are_used_and_checked():
    suite = Suite("s", solvers=("euler", "rk4"), problems=("linear",))
    plan = expand(suite, TAGS, problem_steps={"linear": {1: (10, 20), 4: (5,)}})
    assert [(c.solver, c.n_steps) for c in plan.cases] == [("euler", 10), ("euler", 20),
                                                           ("rk4", 5)]
    with pytest.raises(SuiteError, match="problem 'linear'.s fixed-step ladder"):
        expand(suite, TAGS, problem_steps={"linear": {1: (0,)}})


@pytest.mark.parametrize("ladders, order, expected", [
    ({1: (1,), 4: (4,)}, 1, (1,)), ({1: (1,), 4: (4,)}, 4, (4,)), ({1: (1,), 4: (4,)}, 2, (1,)),
    ({1: (1,), 4: (4,)}, 5, (4,)), ({4: (4,)}, 1, (4,)), (None, 4, None), ({}, 4, None),
])
def test_a_method_takes_the_ladder_of_the_largest_order_not_above_its_own(ladders, order,
                                                                           expected):
    from problems.base import ladder_for

    assert ladder_for(ladders, order) == expected


def test_rk4_on_its_ladder_fits_order_four_from_three_points_in_range():
    from harness.runner import ProblemCache, run_case
    from reports.convergence import asymptotic_mask, fit_order

    problem = "detest-a4"  # cheap: one equation; its own rk4 ladder
    plan = expand(Suite("s", solvers=("rk4",), problems=(problem,), min_time=0.0,
                        min_repeats=1, max_time=0.0), {problem: frozenset()})
    cache = ProblemCache()
    rows = [run_case(c, cache, plan.suite) for c in plan.cases]
    assert all(r["status"] == "ok" for r in rows)
    span = float(cache.get(problem, "float64", "cpu").t[-1])
    h = [span / r["n_steps_requested"] for r in rows]
    err = [r["err_max"] for r in rows]
    used = asymptotic_mask(err, "float64")
    assert used.sum() >= 3
    assert fit_order([x for x, u in zip(h, used, strict=True) if u],
                     [e for e, u in zip(err, used, strict=True) if u]) == pytest.approx(4, abs=0.3)
