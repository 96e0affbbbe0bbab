"""DETEST problems: right-hand sides as the paper defines them; exact solutions that solve them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from harness.registry import PROBLEMS
from problems import detest, nonstiff


def _f(field, y, t=0.0):
    return field(t, torch.tensor(y, dtype=torch.float64)).tolist()


@pytest.mark.parametrize(
    "field,t,y,want",
    [
        (detest.A1Field(), 0.0, [2.0], [-2.0]),
        (detest.A2Field(), 0.0, [2.0], [-4.0]),  # -2^3/2
        (detest.A3Field(), math.pi / 3, [2.0], [1.0]),  # 2 cos(pi/3)
        (detest.A4Field(), 0.0, [10.0], [1.25]),  # 10/4 (1 - 10/20)
        (detest.B2Field(), 0.0, [1.0, 2.0, 4.0], [1.0, 1.0, -2.0]),
        # r = 5: (-4 - 3*2/5, 3 - 4*2/5, 3/5)
        (detest.B4Field(), 0.0, [3.0, 4.0, 2.0], [-5.2, 1.4, 0.6]),
        (detest.B5Field(), 0.0, [1.0, 2.0, 3.0], [6.0, -3.0, -1.02]),
    ],
    ids=["A1", "A2", "A3", "A4", "B2", "B4", "B5"],
)
def test_f_at_a_hand_point(field, t, y, want):
    assert _f(field, y, t) == pytest.approx(want, rel=1e-15, abs=1e-15)


def _fd_residual(exact, field, times, h=1e-5):
    """max |(y(t+h) - y(t-h)) / 2h - f(t, y(t))|: O(h^2) for a true solution."""
    deriv = (exact(times + h) - exact(times - h)) / (2 * h)
    rhs = np.stack([field(float(tj), torch.from_numpy(yj)).numpy()
                    for tj, yj in zip(times, exact(times), strict=True)])
    return float(np.max(np.abs(deriv - rhs)))


@pytest.mark.parametrize("spec", detest.EXACT_DETEST, ids=lambda s: s.name)
def test_exact_solution_satisfies_its_ode(spec):
    times = np.linspace(0.3, 19.7, 41)
    assert _fd_residual(spec.exact, spec.field(), times) < 1e-8


@pytest.mark.parametrize("name,ecc", list(detest.KEPLER_D.items()))
def test_kepler_exact_solution_satisfies_its_ode(name, ecc):
    def exact(t):
        return nonstiff.kepler_exact(t, ecc)

    # e = 0.9 has periapsis speed 4.4 and acceleration 100: a smaller h keeps O(h^2) small
    assert _fd_residual(exact, nonstiff.KeplerField(), np.linspace(0.3, 19.7, 41), h=1e-6) < 1e-6


@pytest.mark.parametrize("spec", detest.EXACT_DETEST, ids=lambda s: s.name)
def test_exact_solution_starts_at_y0(spec):
    np.testing.assert_allclose(spec.exact(np.array([0.0]))[0], spec.y0, rtol=0, atol=1e-15)


def test_b2_closed_form_matches_expm():
    t = detest.DETEST_T
    a = np.asarray(detest.B2_MATRIX)
    want = np.array([scipy.linalg.expm(a * tj) @ np.array([2.0, 0.0, 1.0]) for tj in t])
    np.testing.assert_allclose(detest.b2_exact(t), want, rtol=1e-13, atol=1e-13)


def test_b5_elliptic_functions_keep_their_identities():
    sn, cn, dn = detest.b5_exact(np.linspace(0, 20, 101)).T
    np.testing.assert_allclose(sn**2 + cn**2, 1.0, rtol=1e-14)
    np.testing.assert_allclose(dn**2 + detest.B5_M * sn**2, 1.0, rtol=1e-14)


@pytest.mark.parametrize("name,ecc", list(detest.KEPLER_D.items()))
def test_kepler_d_problems_have_detest_initial_values(name, ecc):
    p = PROBLEMS.get(name).factory(torch.float64, "cpu")
    assert p.extra["eccentricity"] == ecc
    want = [1 - ecc, 0.0, 0.0, math.sqrt((1 + ecc) / (1 - ecc))]
    np.testing.assert_array_equal(p.y0.numpy(), want)
    assert float(p.t[-1]) == 20.0


def test_kepler_keeps_its_name_and_is_d3():
    k = PROBLEMS.get("kepler").factory(torch.float64, "cpu")
    d3 = PROBLEMS.get("kepler-d3").factory(torch.float64, "cpu")
    np.testing.assert_array_equal(k.reference.ys, d3.reference.ys)
