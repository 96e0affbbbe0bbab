"""Stiff problems: right-hand sides, published values, the Van der Pol change of variables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from problems import stiff


def _f(field, y, t=0.0):
    return field(t, torch.tensor(y, dtype=torch.float64)).tolist()


def test_robertson_f_at_a_hand_point():
    assert _f(stiff.RobertsonField(), [1.0, 1.0, 1.0]) == pytest.approx(
        [-0.04 + 1e4, 0.04 - 1e4 - 3e7, 3e7], rel=1e-15
    )


def test_vdpol_f_at_a_hand_point():
    # x' = v = 1, v' = 1000 * (1 - 4) * 1 - 2 = -3002
    assert _f(stiff.VanDerPolField(), [2.0, 1.0]) == pytest.approx([1.0, -3002.0], rel=1e-15)
    # eps form: ((1 - 4) * 1 - 2) / 1e-6 = -5e6
    assert _f(stiff.VanDerPolEpsField(), [2.0, 1.0]) == pytest.approx([1.0, -5e6], rel=1e-15)


def test_numpy_and_torch_right_hand_sides_agree():
    y = np.array([0.9, 3e-5, 0.1])
    np.testing.assert_allclose(
        _f(stiff.RobertsonField(), y), stiff.robertson_rhs(0.0, y), rtol=1e-15
    )
    y = np.array([1.5, -0.3])
    np.testing.assert_allclose(
        _f(stiff.VanDerPolField(), y), stiff.vdpol_mu_rhs(0.0, y), rtol=1e-15
    )
    np.testing.assert_allclose(
        _f(stiff.VanDerPolEpsField(), y), stiff.vdpol_eps_rhs(0.0, y), rtol=1e-15
    )


def test_robertson_reference_conserves_mass():
    ref = stiff.build_robertson().reference.ys
    np.testing.assert_allclose(ref.sum(axis=1), 1.0, rtol=1e-12)


def test_robertson_published_end_value_is_reproduced_by_radau():
    sol = solve_ivp(
        stiff.robertson_rhs,
        (0.0, 1e11),
        list(stiff.ROBER_Y0),
        method="Radau",
        rtol=1e-8,
        atol=1e-20,
        jac=stiff.robertson_jac,
        t_eval=[40.0, 1e11],
    )
    assert sol.success
    np.testing.assert_allclose(sol.y[:, -1], stiff.ROBER_Y_1E11, rtol=1e-8)  # 5e-11 observed
    ref40 = stiff.build_robertson().reference.ys[1]
    np.testing.assert_allclose(sol.y[:, 0], ref40, rtol=1e-8)


def test_vdpol_published_values_agree_under_the_change_of_variables():
    t, mapped = stiff.eps_to_mu_form(np.array(2.0), np.array(stiff.VDPOL_EPS_Y_2))
    assert t == 2000.0
    np.testing.assert_allclose(mapped, stiff.VDPOLM_Y_2000, rtol=1e-13)
    assert stiff.VDPOL_EPS == 1.0 / stiff.VDPOL_MU**2


def test_vdpol_change_of_variables_holds_for_independent_radau_solves():
    """Solve both forms with scipy Radau; map the eps form's end to the mu form; compare."""
    mu_sol = solve_ivp(
        stiff.vdpol_mu_rhs,
        (0.0, 2000.0),
        list(stiff.VDPOL_Y0),
        method="Radau",
        rtol=1e-8,
        atol=1e-11,
        jac=stiff.vdpol_mu_jac,
    )
    eps_sol = solve_ivp(
        stiff.vdpol_eps_rhs,
        (0.0, 2.0),
        list(stiff.VDPOL_Y0),
        method="Radau",
        rtol=1e-8,
        atol=1e-8,
        jac=stiff.vdpol_eps_jac,
    )
    assert mu_sol.success and eps_sol.success
    _, mapped = stiff.eps_to_mu_form(eps_sol.t[-1], eps_sol.y[:, -1])
    np.testing.assert_allclose(mapped, mu_sol.y[:, -1], rtol=1e-8)
    np.testing.assert_allclose(mu_sol.y[:, -1], stiff.VDPOLM_Y_2000, rtol=1e-8)
    np.testing.assert_allclose(eps_sol.y[:, -1], stiff.VDPOL_EPS_Y_2, rtol=1e-8)


def test_vdpol_mu1000_reference_is_the_published_vdpolm_value():
    p = stiff.build_vdpol_mu1000()
    assert float(p.t[-1]) == 2000.0
    np.testing.assert_array_equal(p.reference.ys[-1], stiff.VDPOLM_Y_2000)


def test_vdpol_is_the_registered_eps_form_with_the_published_end_value():
    from harness.registry import PROBLEMS

    p = PROBLEMS.get("vdpol").factory(torch.float64, "cpu")
    assert isinstance(p.f, stiff.VanDerPolEpsField) and p.f.eps == 1e-6
    assert float(p.t[-1]) == 2.0
    np.testing.assert_array_equal(p.reference.ys[-1], stiff.VDPOL_EPS_Y_2)
    assert "published: y(2)" in p.reference.provenance and "computed:" in p.reference.provenance


def test_vdpol_stored_rows_agree_with_the_published_end_value():
    """The stored Radau file also holds s = 2; it must agree with the test set's value."""
    from problems import references

    stored = references.load("vdpol")
    np.testing.assert_allclose(stored.ys[-1], stiff.VDPOL_EPS_Y_2, rtol=1e-9)


def test_robertson_says_which_row_is_published_and_which_computed():
    p = stiff.build_robertson()
    rows = p.extra["reference_rows"]
    assert rows["1e11"].startswith("published") and rows["40"].startswith("computed")
    assert "y(40) computed:" in p.reference.provenance
    np.testing.assert_array_equal(p.reference.ys[-1], stiff.ROBER_Y_1E11)
