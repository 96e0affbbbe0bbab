"""Non-stiff problems: right-hand sides at hand-checked points, exact solutions, references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.integrate import solve_ivp

from problems import nonstiff


def _f(field, y, t=0.0):
    return field(t, torch.tensor(y, dtype=torch.float64)).tolist()


def test_kepler_f_at_a_hand_point():
    # r = 5, r^3 = 125: (x', y', -x/r^3, -y/r^3)
    assert _f(nonstiff.KeplerField(), [3.0, 4.0, 1.0, 2.0]) == pytest.approx(
        [1.0, 2.0, -3 / 125, -4 / 125], rel=1e-15
    )


def test_lotka_volterra_f_at_a_hand_point():
    # x' = 1.5*2 - 2*3 = -3, y' = -3*3 + 2*3 = -3
    assert _f(nonstiff.LotkaVolterraField(), [2.0, 3.0]) == pytest.approx([-3.0, -3.0], rel=1e-15)


def test_arenstorf_f_at_a_hand_point():
    # at (y1, y2) = (0.5, 0): D1 = (0.5 + mu)^3, D2 = (0.5 - mu')^3 = (mu - 0.5)^3 < 0 in sign
    mu = nonstiff.ARENSTORF_MU
    mup = 1 - mu
    d1, d2 = (0.5 + mu) ** 3, abs(0.5 - mup) ** 3
    a1 = 0.5 + 2 * 0.25 - mup * (0.5 + mu) / d1 - mu * (0.5 - mup) / d2
    a2 = 0.0 - 2 * 0.1
    got = _f(nonstiff.ArenstorfField(), [0.5, 0.0, 0.1, 0.25])
    assert got == pytest.approx([0.1, 0.25, a1, a2], rel=1e-14)


def test_linear_matrix_has_the_stated_spectrum():
    ev = np.sort_complex(np.linalg.eigvals(nonstiff.linear_matrix()))
    want = np.sort_complex(np.array([-0.25 + 1j, -0.25 - 1j, -0.5 + 2j, -0.5 - 2j]))
    np.testing.assert_allclose(ev, want, atol=1e-13)


def test_linear_f_is_a_times_y():
    a = nonstiff.linear_matrix()
    y = np.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(_f(nonstiff.LinearField(torch.from_numpy(a)), y), a @ y, rtol=1e-15)


def test_linear_closed_form_matches_expm():
    t = nonstiff.LINEAR_T
    want = np.array(
        [scipy.linalg.expm(nonstiff.linear_matrix() * tj) @ nonstiff.LINEAR_Y0 for tj in t]
    )
    np.testing.assert_allclose(nonstiff.linear_exact(t), want, rtol=1e-12, atol=1e-12)


def _fd_residual(exact, field, times, h=1e-5):
    """max |(y(t+h) - y(t-h)) / 2h - f(t, y(t))| over the times: O(h^2) for a true solution."""
    times = np.asarray(times)
    deriv = (exact(times + h) - exact(times - h)) / (2 * h)
    rhs = field(0.0, torch.from_numpy(exact(times))).numpy()
    return np.max(np.abs(deriv - rhs))


@pytest.mark.parametrize(
    "exact,field",
    [
        (nonstiff.linear_exact, nonstiff.LinearField(torch.from_numpy(nonstiff.linear_matrix()))),
        (nonstiff.kepler_exact, nonstiff.KeplerField()),
    ],
    ids=["linear", "kepler"],
)
def test_exact_solution_satisfies_its_ode(exact, field):
    assert _fd_residual(exact, field, np.linspace(0.3, 19.7, 37)) < 1e-8


def test_kepler_equation_is_solved_to_machine_precision():
    e = nonstiff.KEPLER_ECC
    for m in np.linspace(0.0, 20.0, 201):
        ea = nonstiff.solve_kepler_equation(float(m), e)
        assert abs(ea - e * math.sin(ea) - m) <= 4e-15 * max(1.0, m)


def test_kepler_exact_keeps_energy_and_angular_momentum_and_period():
    ys = nonstiff.kepler_exact(np.linspace(0.0, 20.0, 101))
    x, y, vx, vy = ys.T
    energy = 0.5 * (vx**2 + vy**2) - 1 / np.hypot(x, y)
    np.testing.assert_allclose(energy, -0.5, rtol=1e-14)  # -1/(2a), a = 1
    np.testing.assert_allclose(x * vy - y * vx, math.sqrt(1 - 0.25), rtol=1e-14)
    np.testing.assert_allclose(
        nonstiff.kepler_exact(np.array([2 * math.pi]))[0], nonstiff.kepler_y0(), atol=1e-14
    )


def test_arenstorf_returns_to_its_start_after_one_period():
    field = nonstiff.ArenstorfField()

    def rhs(t, y):
        return field(t, torch.from_numpy(y)).numpy()

    sol = solve_ivp(
        rhs,
        (0.0, nonstiff.ARENSTORF_PERIOD),
        np.array(nonstiff.ARENSTORF_Y0),
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
    )
    assert sol.success
    assert np.max(np.abs(sol.y[:, -1] - nonstiff.ARENSTORF_Y0)) < 1e-7  # 1.5e-9 observed


def test_arenstorf_reference_is_the_start_at_t_and_nan_between():
    ref = nonstiff.build_arenstorf().reference.ys
    np.testing.assert_array_equal(ref[-1], nonstiff.ARENSTORF_Y0)
    assert np.isnan(ref[1:-1]).all()


def test_lotka_volterra_reference_keeps_its_first_integral():
    ref = nonstiff.build_lotka_volterra().reference.ys
    v = nonstiff.lotka_volterra_invariant(ref)
    np.testing.assert_allclose(v, v[0], rtol=1e-12)


def test_lotka_volterra_f_matches_the_numpy_rhs_used_for_its_reference():
    y = np.array([0.7, 2.3])
    np.testing.assert_allclose(
        _f(nonstiff.LotkaVolterraField(), y), nonstiff.lotka_volterra_rhs(0.0, y), rtol=1e-15
    )
