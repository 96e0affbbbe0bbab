"""Prothero-Robinson (problems/stiff.py): the exact solution, and the Rosenbrock solvers on it.

The fixed-step orders use the driver of ``scripts/rosenbrock_order.py`` (which prints the full
table, stiff regime included).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import problems.builtin  # noqa: F401  (registers the built-in problems)
from harness.measure.accuracy import measure_accuracy
from harness.registry import PROBLEMS
from problems.base import RefKind
from problems.stiff import PR_LAMBDA, PR_LAMBDA_MILD, build_prothero_robinson_lam
from scripts.rosenbrock_order import RUNS, measure_order
from solvers.rosenbrock import Rosenbrock
from solvers.rosenbrock_tableaux import RODAS4

NAMES = ("prothero-robinson", "prothero-robinson-mild")


def _build(name: str, dtype: torch.dtype = torch.float64):
    return PROBLEMS.get(name).factory(dtype, "cpu")


def test_both_forms_build_with_their_lambda_and_tags():
    stiff, mild = _build(NAMES[0]), _build(NAMES[1])
    assert stiff.f.lam == PR_LAMBDA == -1e6 and mild.f.lam == PR_LAMBDA_MILD == -1.0
    assert stiff.tags == {"stiff", "exact", "small"}
    assert mild.tags == {"nonstiff", "exact", "small"}
    assert stiff.max_steps and stiff.steps is None and mild.steps
    assert "Prothero" in stiff.citation and "Math. Comp. 28 (1974) 145-162" in stiff.citation


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_is_phi_at_the_output_times(name):
    p = _build(name)
    assert p.reference.kind is RefKind.EXACT
    t = p.t.numpy()
    assert t[0] == 0.0 and t[-1] == 1.0 and len(t) >= 3
    np.testing.assert_array_equal(p.reference.ys, np.sin(t).reshape(-1, 1))
    assert float(p.y0) == math.sin(0.0)


@pytest.mark.parametrize("lam", [PR_LAMBDA, PR_LAMBDA_MILD, -37.5])
def test_f_at_the_exact_solution_is_phi_prime(lam):
    """The residual lam (y - phi) vanishes on y = phi, so f(t, phi(t)) = phi'(t) = cos t."""
    p = build_prothero_robinson_lam(lam)
    for t in torch.linspace(0.0, 1.0, 9, dtype=torch.float64):
        y = torch.sin(t).reshape(1)
        torch.testing.assert_close(p.f(t, y), torch.cos(t).reshape(1), rtol=0.0, atol=1e-15)
        torch.testing.assert_close(p.f(float(t), y), p.f(t, y), rtol=0.0, atol=0.0)
    # off the solution the field pulls back at rate lam
    t, y = 0.5, torch.tensor([math.sin(0.5) + 1e-3], dtype=torch.float64)
    torch.testing.assert_close(p.f(t, y), torch.tensor([lam * 1e-3 + math.cos(0.5)],
                                                       dtype=torch.float64))


def test_the_builder_takes_any_lambda():
    p = build_prothero_robinson_lam(-50.0)
    assert p.f.lam == -50.0 and "stiff" not in p.tags and "-50" in p.name


@pytest.mark.parametrize("rtol", [1e-4, 1e-6])
def test_rodas4_reaches_the_tolerance_at_the_end_of_the_stiff_problem(rtol):
    p = _build(NAMES[0])
    sol = Rosenbrock(RODAS4).solve(p.f, p.y0, p.t, rtol=rtol, atol=rtol)
    assert sol.status == "ok", sol.message
    acc = measure_accuracy(sol.ys.numpy(), p.reference.ys, atol=p.atol, rtol=p.rtol)
    # the end point (scd) is within a digit of rtol or better; the interior outputs are not
    # held to it: in the stiff regime RODAS's error estimate is O(1/|lam|), so its steps grow
    # to ~0.8 and the dense output between them errs ~1e-3 (see the report of this problem)
    assert acc.scd >= -math.log10(rtol) - 1.0, acc


@pytest.mark.parametrize("rtol", [1e-4, 1e-6])
def test_rodas4_reaches_the_tolerance_everywhere_on_the_mild_problem(rtol):
    p = _build(NAMES[1])
    sol = Rosenbrock(RODAS4).solve(p.f, p.y0, p.t, rtol=rtol, atol=rtol)
    assert sol.status == "ok", sol.message
    err = np.abs(sol.ys.numpy() - p.reference.ys).max()
    assert err <= 10.0 * rtol, err


def _run(method: str, regime: str):
    (run,) = [r for r in RUNS if r.tab.name == method and r.regime == regime]
    return run


@pytest.mark.parametrize(("method", "order"), [("rodas4", 4), ("ros3p", 3)])
def test_fixed_step_order_on_the_mild_problem_is_the_methods_order(method, order):
    run = _run(method, "non-stiff")
    measured, errors = measure_order(run.tab, run.lam, run.n_steps)
    assert abs(measured - order) <= 0.15, (measured, errors)


@pytest.mark.parametrize(("method", "reduced"), [("rodas4", 1), ("ros3p", 2)])
def test_fixed_step_order_is_reduced_in_the_stiff_regime(method, reduced):
    """|lam h| >= 2000: the error is C h^q / |lam| with q below the classical order (measured
    1.04 for RODAS, 2.02 for ROS3P over 16..512 steps; a numpy implementation of the classic
    form gives the same errors)."""
    run = _run(method, "stiff")
    n_steps = run.n_steps[:-1]  # the script's range less its top rung, to keep this quick
    measured, errors = measure_order(run.tab, run.lam, n_steps)
    assert abs(measured - reduced) <= 0.15, (measured, errors)
    assert max(errors) < 1e-8  # far below the non-stiff error at the same steps
