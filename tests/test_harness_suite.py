import pytest

from harness import registry
from harness.suite import BUILTIN_SUITES, Case, Suite, SuiteError, expand, override, tolerance_pairs


@pytest.fixture(scope="module", autouse=True)
def _discover():
    registry.discover()


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
