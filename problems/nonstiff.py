"""Non-stiff problems: a linear system, the Arenstorf orbit (one and two periods), the Kepler
orbit, Lotka-Volterra.

Each problem is a torch right-hand side (an ``nn.Module``, batched over the leading dims of
``y``), output times, and a reference whose source is named: a closed form (``linear``,
``kepler``), a published fact (``arenstorf`` returns to its start after one period), or a
tight scipy solve stored as data (``lotka-volterra``, see ``problems.make_references``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from harness.registry import register_problem
from problems import references
from problems.base import Problem, Reference, RefKind, doubling
from problems.references import RefCheck

# ---------------------------------------------------------------------------------------------
# linear: y' = A y with a known spectrum


# (decay a, frequency w) of each block. Explicit Euler is stable for h < 2a / (a^2 + w^2), here
# h < 0.235 (43 steps on [0, 10]), so fixed-step sweeps from 16 steps reach the stable regime.
LINEAR_BLOCKS = ((0.25, 1.0), (0.5, 2.0))


def _linear_blocks() -> tuple[np.ndarray, np.ndarray]:
    """The matrices of ``linear``: ``A = Q B Q`` with B two rotation+decay blocks.

    ``B = diag([[-a1, w1], [-w1, -a1]], [[-a2, w2], [-w2, -a2]])`` has eigenvalues
    ``-a_k +- i w_k`` = -0.25 +- 1i and -0.5 +- 2i; ``Q = I - (1/2) 1 1^T`` is the Householder
    reflection across (1, 1, 1, 1), symmetric and orthogonal with entries +-1/2, so A couples
    every component but keeps B's spectrum. All entries are exact in binary floating point.
    """
    b = np.zeros((4, 4))
    for k, (a, w) in enumerate(LINEAR_BLOCKS):
        i = 2 * k
        b[i : i + 2, i : i + 2] = [[-a, w], [-w, -a]]
    q = np.eye(4) - 0.5 * np.ones((4, 4))
    return q, b


LINEAR_Y0 = (1.0, 0.0, -0.5, 2.0)
LINEAR_T = np.linspace(0.0, 10.0, 11)


def linear_matrix() -> np.ndarray:
    q, b = _linear_blocks()
    return q @ b @ q


def linear_exact(t: np.ndarray) -> np.ndarray:
    """``y(t) = Q exp(B t) Q y0`` in closed form, each block ``exp(-a t) [[c, s], [-s, c]]``.

    The test suite checks it against ``scipy.linalg.expm(A t) y0``.
    """
    q, _ = _linear_blocks()
    z0 = q @ np.asarray(LINEAR_Y0)
    out = np.empty((len(t), 4))
    for j, tj in enumerate(np.asarray(t, dtype=np.float64)):
        z = np.empty(4)
        for k, (a, w) in enumerate(LINEAR_BLOCKS):
            i = 2 * k
            c, s, d = math.cos(w * tj), math.sin(w * tj), math.exp(-a * tj)
            z[i] = d * (c * z0[i] + s * z0[i + 1])
            z[i + 1] = d * (-s * z0[i] + c * z0[i + 1])
        out[j] = q @ z
    return out


def linear_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return linear_matrix() @ y


class LinearField(nn.Module):
    """``f(t, y) = A y`` with A a buffer (moves with ``.to``), batched over leading dims."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("A", a)

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y @ self.A.T


@register_problem("linear")
def build_linear(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
    a = torch.as_tensor(linear_matrix(), dtype=dtype, device=device)
    t = LINEAR_T
    return Problem(
        name="linear",
        tags=frozenset({"nonstiff", "exact", "small"}),
        f=LinearField(a),
        y0=torch.tensor(LINEAR_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(t, dtype=dtype, device=device),
        reference=Reference(
            ys=linear_exact(t),
            kind=RefKind.EXACT,
            provenance="exact: y(t) = Q exp(Bt) Q y0, B = rotation+decay blocks "
            "(eigenvalues -0.25+-1i, -0.5+-2i), Q = I - 11^T/2 (problems.nonstiff.linear_exact)",
        ),
        atol=1e-6,
        rtol=1e-6,
        description="4-dim linear system y' = Ay, A = QBQ: two damped rotations mixed by a "
        "Householder reflection; the closed form checks order and dense output.",
        citation="closed form of exp(At) for 2x2 rotation+decay blocks",
        # Euler errs 0.11 at 256 steps, 0.052 at 512: from 256 four rungs are in range (rk4: all)
        steps={1: doubling(256), 4: doubling(32)},
        extra={"eigenvalues": ["-0.25+1j", "-0.25-1j", "-0.5+2j", "-0.5-2j"]},
    )


# ---------------------------------------------------------------------------------------------
# arenstorf: restricted three-body problem, one period of a closed orbit

ARENSTORF_MU = 0.012277471
ARENSTORF_Y0 = (0.994, 0.0, 0.0, -2.00158510637908252240537862224)  # (y1, y2, y1', y2')
ARENSTORF_PERIOD = 17.0652165601579625588917206249


class ArenstorfField(nn.Module):
    """Arenstorf orbit, Hairer, Norsett & Wanner, Solving ODEs I (2nd ed.), Sect. II.0, (0.1).

    State ``(y1, y2, y1', y2')``; with ``mu' = 1 - mu``, ``D1 = ((y1+mu)^2 + y2^2)^(3/2)``,
    ``D2 = ((y1-mu')^2 + y2^2)^(3/2)``:
    ``y1'' = y1 + 2 y2' - mu' (y1+mu)/D1 - mu (y1-mu')/D2``,
    ``y2'' = y2 - 2 y1' - mu' y2/D1 - mu y2/D2``.
    """

    def __init__(self, mu: float = ARENSTORF_MU) -> None:
        super().__init__()
        self.mu = mu

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu = self.mu
        mup = 1.0 - mu
        y1, y2, v1, v2 = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
        d1 = ((y1 + mu) ** 2 + y2**2) ** 1.5
        d2 = ((y1 - mup) ** 2 + y2**2) ** 1.5
        a1 = y1 + 2.0 * v2 - mup * (y1 + mu) / d1 - mu * (y1 - mup) / d2
        a2 = y2 - 2.0 * v1 - mup * y2 / d1 - mu * y2 / d2
        return torch.stack((v1, v2, a1, a2), dim=-1)


def arenstorf_rhs(t: float, y: np.ndarray, mu: float = ARENSTORF_MU) -> np.ndarray:
    """numpy form of :class:`ArenstorfField`, for scipy solves."""
    mup = 1.0 - mu
    d1 = ((y[0] + mu) ** 2 + y[1] ** 2) ** 1.5
    d2 = ((y[0] - mup) ** 2 + y[1] ** 2) ** 1.5
    return np.array(
        [
            y[2],
            y[3],
            y[0] + 2.0 * y[3] - mup * (y[0] + mu) / d1 - mu * (y[0] - mup) / d2,
            y[1] - 2.0 * y[2] - mup * y[1] / d1 - mu * y[1] / d2,
        ]
    )


def arenstorf_times(periods: int = 1) -> np.ndarray:
    """Start, quarter periods and the ends of the periods: 0, T/4, ..., periods * T."""
    return np.arange(4 * periods + 1) / 4.0 * ARENSTORF_PERIOD


@register_problem("arenstorf")
def build_arenstorf(
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> Problem:
    """One period of the Arenstorf orbit; only the return to the start is a trusted value.

    The orbit is periodic with period T, so ``y(T) = y0``: that is the published fact. The
    intermediate quarter-period outputs make a solver produce dense output along the orbit, but
    no source gives their values, so they are NaN (not scored) rather than a solve of ours.
    """
    t = arenstorf_times()
    ys = np.full((len(t), 4), np.nan)
    ys[0] = ARENSTORF_Y0
    ys[-1] = ARENSTORF_Y0
    return Problem(
        name="arenstorf",
        tags=frozenset({"nonstiff", "small"}),
        f=ArenstorfField(),
        y0=torch.tensor(ARENSTORF_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(t, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.PUBLISHED,
            provenance="published: periodic orbit, y(T) = y0, T = 17.0652165601579625588917206249, "
            "Hairer/Norsett/Wanner, Solving ODEs I, 2nd ed., Sect. II.0; the reference is the "
            "state at the end of the period; the quarter-period output times have no reference "
            "and are not scored",
        ),
        atol=1e-6,
        rtol=1e-6,
        description="Restricted three-body (Earth-Moon) orbit of Arenstorf, one period; hard "
        "for fixed steps because of close approaches, the classic test of step-size control.",
        citation="E. Hairer, S.P. Norsett, G. Wanner, Solving Ordinary Differential Equations I, "
        "2nd ed., Springer 1993, Sect. II.0, eq. (0.1)-(0.2); R.F. Arenstorf, Amer. J. Math. 85 "
        "(1963)",
        # no own fixed-step ladder: rk4 still errs 1.0 at 16384 steps (15 s a solve; the orbit
        # ends at the close approach to the Moon), Euler ~100 at 8192; the suite's ladder shows
        # fixed steps failing, which is what this problem tests
        extra={"mu": ARENSTORF_MU, "period": ARENSTORF_PERIOD},
    )


@register_problem("arenstorf-2")
def build_arenstorf_2(
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> Problem:
    """Two periods of the Arenstorf orbit: the orbit returns to its start at T and at 2T.

    The close approach to the Moon (distance 0.006) happens at t = T, mid-span here, so errors
    made there are carried through the whole second period. Only the returns (t = T, 2T) are
    scored, as for ``arenstorf``; the quarter periods are NaN.
    """
    t = arenstorf_times(2)
    ys = np.full((len(t), 4), np.nan)
    ys[0] = ys[4] = ys[8] = ARENSTORF_Y0
    return Problem(
        name="arenstorf-2",
        tags=frozenset({"nonstiff", "small"}),
        f=ArenstorfField(),
        y0=torch.tensor(ARENSTORF_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(t, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.PUBLISHED,
            provenance="published: periodic orbit, y(T) = y(2T) = y0, "
            "T = 17.0652165601579625588917206249, Hairer/Norsett/Wanner, Solving ODEs I, 2nd ed., "
            "Sect. II.0; the reference is the state at the end of each period; the "
            "quarter-period output times have no reference and are not scored",
        ),
        atol=1e-6,
        rtol=1e-6,
        description="Arenstorf orbit over two periods: the close approach to the Moon "
        "(distance 0.006) at t = T lies mid-span, so errors made there are carried through "
        "the whole second period.",
        citation="E. Hairer, S.P. Norsett, G. Wanner, Solving Ordinary Differential Equations I, "
        "2nd ed., Springer 1993, Sect. II.0, eq. (0.1)-(0.2); R.F. Arenstorf, Amer. J. Math. 85 "
        "(1963)",
        # no own fixed-step ladder, as for arenstorf (whose one period fixed steps already miss)
        extra={"mu": ARENSTORF_MU, "period": ARENSTORF_PERIOD, "periods": 2},
    )


# ---------------------------------------------------------------------------------------------
# kepler: two-body orbit, DETEST class D

KEPLER_ECC = 0.5
KEPLER_T = np.linspace(0.0, 20.0, 11)


def kepler_y0(e: float = KEPLER_ECC) -> tuple[float, float, float, float]:
    """DETEST D: ``(x, y, x', y')(0) = (1-e, 0, 0, sqrt((1+e)/(1-e)))`` (periapsis, a = 1)."""
    return (1.0 - e, 0.0, 0.0, math.sqrt((1.0 + e) / (1.0 - e)))


def solve_kepler_equation(m: float, e: float) -> float:
    """Eccentric anomaly E with ``E - e sin E = m``, by Newton to machine precision.

    Starting from ``E = m + e sin m`` (or pi for e > 0.8) Newton converges monotonically for
    e < 1; iteration stops when the update no longer changes E.
    """
    m_red = math.fmod(m, 2.0 * math.pi)
    big = e > 0.8
    ecc_anom = math.pi if big else m_red + e * math.sin(m_red)
    for _ in range(100):
        step = (ecc_anom - e * math.sin(ecc_anom) - m_red) / (1.0 - e * math.cos(ecc_anom))
        new = ecc_anom - step
        if new == ecc_anom or abs(step) <= 4e-16 * max(1.0, abs(new)):
            ecc_anom = new
            break
        ecc_anom = new
    return ecc_anom + (m - m_red)


def kepler_exact(t: np.ndarray, e: float = KEPLER_ECC) -> np.ndarray:
    """Closed form with mean motion 1 (period 2 pi): ``x = cos E - e``,
    ``y = sqrt(1-e^2) sin E``, ``x' = -sin E / (1 - e cos E)``,
    ``y' = sqrt(1-e^2) cos E / (1 - e cos E)`` where ``E - e sin E = t``.
    """
    b = math.sqrt(1.0 - e * e)
    out = np.empty((len(t), 4))
    for j, tj in enumerate(np.asarray(t, dtype=np.float64)):
        ea = solve_kepler_equation(float(tj), e)
        c, s = math.cos(ea), math.sin(ea)
        den = 1.0 - e * c
        out[j] = (c - e, b * s, -s / den, b * c / den)
    return out


def kepler_rhs(t: float, y: np.ndarray) -> np.ndarray:
    """numpy form of :class:`KeplerField`, for scipy solves."""
    r3 = (y[0] ** 2 + y[1] ** 2) ** 1.5
    return np.array([y[2], y[3], -y[0] / r3, -y[1] / r3])


class KeplerField(nn.Module):
    """Two-body problem ``x'' = -x / r^3``, ``y'' = -y / r^3``, state ``(x, y, x', y')``."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, yy, vx, vy = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
        r3 = (x**2 + yy**2) ** 1.5
        return torch.stack((vx, vy, -x / r3, -yy / r3), dim=-1)


@register_problem("kepler")
def build_kepler(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
    t = KEPLER_T
    y0 = kepler_y0()
    return Problem(
        name="kepler",
        tags=frozenset({"nonstiff", "exact", "small"}),
        f=KeplerField(),
        y0=torch.tensor(y0, dtype=dtype, device=device),
        t=torch.as_tensor(t, dtype=dtype, device=device),
        reference=Reference(
            ys=kepler_exact(t),
            kind=RefKind.EXACT,
            provenance="exact: Kepler orbit e=0.5 via E - e sin E = t (Newton to machine "
            "precision), DETEST D3, Hull/Enright/Fellen/Sedgwick 1972",
        ),
        atol=1e-6,
        rtol=1e-6,
        description="Two-body orbit with eccentricity 0.5 over about 3 periods (DETEST D3); "
        "speed varies 3:1 around the orbit, so step-size control matters.",
        citation="T.E. Hull, W.H. Enright, B.M. Fellen, A.E. Sedgwick, Comparing numerical "
        "methods for ordinary differential equations, SIAM J. Numer. Anal. 9 (1972), "
        "problem class D",
        # rk4 errs 0.19 at 128 steps, 0.0063 at 256: from 128 four rungs are in range; Euler
        # still errs 1.9 at 8192 steps: the suite's ladder, pre-asymptotic
        steps={1: doubling(32), 4: doubling(128)},
        extra={"eccentricity": KEPLER_ECC},
    )


# ---------------------------------------------------------------------------------------------
# lotka-volterra: predator-prey, computed reference

LV_PARAMS = (1.5, 1.0, 3.0, 1.0)  # (a, b, c, d): x' = a x - b x y, y' = -c y + d x y
LV_Y0 = (1.0, 1.0)
LV_T = np.linspace(0.0, 10.0, 21)


def lotka_volterra_rhs(t: float, y: np.ndarray) -> np.ndarray:
    """numpy form of the right-hand side, for the scipy reference solve."""
    a, b, c, d = LV_PARAMS
    return np.array([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


def lotka_volterra_jac(t: float, y: np.ndarray) -> np.ndarray:
    a, b, c, d = LV_PARAMS
    return np.array([[a - b * y[1], -b * y[0]], [d * y[1], -c + d * y[0]]])


def lotka_volterra_invariant(y: np.ndarray) -> np.ndarray:
    """First integral ``V = d x - c ln x + b y - a ln y``, constant along exact solutions."""
    a, b, c, d = LV_PARAMS
    x, yy = y[..., 0], y[..., 1]
    return d * x - c * np.log(x) + b * yy - a * np.log(yy)


class LotkaVolterraField(nn.Module):
    """``x' = a x - b x y``, ``y' = -c y + d x y`` (Lotka 1925, Volterra 1926)."""

    def __init__(self, params: tuple[float, float, float, float] = LV_PARAMS) -> None:
        super().__init__()
        self.a, self.b, self.c, self.d = params

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, yy = y[..., 0], y[..., 1]
        xy = x * yy
        return torch.stack((self.a * x - self.b * xy, -self.c * yy + self.d * xy), dim=-1)


COMPUTED = [
    references.ComputedSpec(
        name="lotka_volterra",
        rhs=lotka_volterra_rhs,
        jac=lotka_volterra_jac,
        y0=LV_Y0,
        t=LV_T.tolist(),
        method="DOP853",
        rtol=1e-13,
        atol=1e-14,
        check_method="Radau",
        note="x' = 1.5x - xy, y' = -3y + xy, y(0) = (1, 1), outputs t = 0, 0.5, ..., 10",
    )
]


@register_problem("lotka-volterra")
def build_lotka_volterra(
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> Problem:
    stored = references.load("lotka_volterra")
    references.check_times(stored, LV_T)
    return Problem(
        name="lotka-volterra",
        tags=frozenset({"nonstiff", "small"}),
        f=LotkaVolterraField(),
        y0=torch.tensor(LV_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(LV_T, dtype=dtype, device=device),
        reference=Reference(ys=stored.ys, kind=RefKind.COMPUTED, provenance=stored.provenance),
        atol=1e-6,
        rtol=1e-6,
        description="Predator-prey cycles (a, b, c, d) = (1.5, 1, 3, 1) from (1, 1) on [0, 10]; "
        "periodic, with a first integral the tests use to check the reference.",
        citation="A.J. Lotka, Elements of Physical Biology (1925); V. Volterra, Mem. R. Accad. "
        "Lincei 2 (1926); parameters as in the scipy.integrate.solve_ivp documentation example",
        extra={"params_abcd": LV_PARAMS, "reference_cross_check": stored.meta.get("cross_check")},
    )


# ---------------------------------------------------------------------------------------------
# refs --check: how each reference here is verified (see harness.refs and docs/references.md)

CHECKS = [
    RefCheck(problem="linear", rhs=linear_rhs, method="DOP853", rtol=1e-13, atol=1e-15,
             digits=11.0, floor=1e-12, note="closed form vs DOP853 rtol 1e-13"),
    RefCheck(problem="kepler", rhs=kepler_rhs, method="DOP853", rtol=1e-13, atol=1e-15,
             digits=10.0, floor=1e-12, note="closed form vs DOP853 rtol 1e-13"),
    # y(T) = y0 holds for the exact orbit; a double-precision solve through the close approaches
    # reproduces it to about 1e-9 after one period and 1e-8 after two (measured).
    RefCheck(problem="arenstorf", rhs=arenstorf_rhs, method="DOP853", rtol=1e-13, atol=1e-15,
             digits=7.0, floor=1.0, note="periodicity vs DOP853 rtol 1e-13; close approaches"),
    RefCheck(problem="arenstorf-2", rhs=arenstorf_rhs, method="DOP853", rtol=1e-13, atol=1e-15,
             digits=6.0, floor=1.0, note="periodicity vs DOP853 rtol 1e-13; close approaches"),
    RefCheck(problem="lotka-volterra", rhs=lotka_volterra_rhs, jac=lotka_volterra_jac,
             method="LSODA", rtol=1e-12, atol=1e-14, digits=9.0, floor=1e-12,
             computed=("lotka_volterra",), note="stored DOP853 solve vs independent LSODA"),
]
