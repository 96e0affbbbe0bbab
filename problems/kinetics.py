"""Stiff chemical kinetics from the Bari IVP test set: OREGO, HIRES, E5 and POLLU.

Definitions, time spans and end values are those of F. Mazzia and C. Magherini, "Test Set for IVP
Solvers", release 2.4, Department of Mathematics, University of Bari
(https://archimede.uniba.it/~testset/), files ``orego.f`` ($Id: orego.F,v 1.4 2006/10/06$),
``hires.f`` ($Id: hires.F,v 1.2 2006/10/02$), ``e5.f`` ($Id: e5.F,v 1.3 2006/10/03$) and
``pollu.f`` ($Id: pollu.F,v 1.2 2006/10/02$), subroutines ``feval`` (the right-hand side),
``init`` (y0), ``prob`` (the span) and ``solut`` (the end value; computed there with RADAU or
RADAU5 in extended precision, uround 1.01e-19). The same problems are in Hairer & Wanner, Solving
ODEs II, Sect. IV.10.

Intermediate output rows (not published by the test set) are tight scipy Radau solves stored as
data (``problems/data/<name>.json``, cross-checked by BDF); the end row is the published value.
E5 is the exception (no intermediate rows, and its end value is Hairer's, not Bari's, whose y2
and y3 break a conservation law), see :func:`build_e5`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from harness.registry import register_problem
from problems import references
from problems.base import Problem, Reference, RefKind
from problems.references import RefCheck

BARI = "Mazzia & Magherini, Test Set for IVP Solvers, release 2.4, Univ. of Bari"
HW2 = "E. Hairer, G. Wanner, Solving Ordinary Differential Equations II, 2nd ed., Springer 1996"
# HIRES is only mildly stiff: dopri5 reaches its end in about 10,400 steps, so its budget leaves
# room for that. OREGO, POLLU and E5 (stiffness up to ~1e5, ~1e11, and a span of 1e13) are out of
# reach of any explicit solver; a short budget ends such runs sooner with the same verdict.
STEP_BUDGET = 20_000
SHORT_STEP_BUDGET = 2_000


def _published_rows(name: str, t: np.ndarray, y_end: Sequence[float]) -> tuple[np.ndarray, object]:
    """The stored computed rows at ``t`` with the last row replaced by the published value."""
    stored = references.load(name)
    references.check_times(stored, t)
    ys = stored.ys.copy()
    ys[-1] = y_end
    return ys, stored


def _rows_note(stored, t: np.ndarray) -> dict:
    inner = ", ".join(f"{v:g}" for v in t[1:-1])
    return {
        "0": "initial value",
        inner: "computed: " + stored.meta["solver"] + f" rtol={stored.meta['rtol']:g}",
        f"{t[-1]:g}": "published: " + BARI,
    }


# ---------------------------------------------------------------------------------------------
# OREGO: the Oregonator (Field & Noyes 1974)

OREGO_Y0 = (1.0, 2.0, 3.0)
OREGO_T = np.linspace(0.0, 360.0, 13)
OREGO_Y_360 = (0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3)  # orego.f solut


def orego_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return np.array(
        [
            77.27 * (y[1] + y[0] * (1.0 - 8.375e-6 * y[0] - y[1])),
            (y[2] - (1.0 + y[0]) * y[1]) / 77.27,
            0.161 * (y[0] - y[2]),
        ]
    )


def orego_jac(t: float, y: np.ndarray) -> np.ndarray:
    return np.array(
        [
            [77.27 * (1.0 - 2.0 * 8.375e-6 * y[0] - y[1]), 77.27 * (1.0 - y[0]), 0.0],
            [-y[1] / 77.27, -(1.0 + y[0]) / 77.27, 1.0 / 77.27],
            [0.161, 0.0, -0.161],
        ]
    )


class OregoField(nn.Module):
    """``y1' = 77.27 (y2 + y1 (1 - 8.375e-6 y1 - y2))``, ``y2' = (y3 - (1 + y1) y2) / 77.27``,
    ``y3' = 0.161 (y1 - y3)`` (test set OREGO)."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack(
            (
                77.27 * (y2 + y1 * (1.0 - 8.375e-6 * y1 - y2)),
                (y3 - (1.0 + y1) * y2) / 77.27,
                0.161 * (y1 - y3),
            ),
            dim=-1,
        )


@register_problem("orego")
def build_orego(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
    ys, stored = _published_rows("orego", OREGO_T, OREGO_Y_360)
    return Problem(
        name="orego",
        tags=frozenset({"stiff", "small"}),
        f=OregoField(),
        y0=torch.tensor(OREGO_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(OREGO_T, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.PUBLISHED,
            provenance=f"published: y(360) from {BARI}, problem OREGO (orego.f, solut); rows "
            f"t = 30..330 {stored.provenance}",
        ),
        # Our choice of scales: y2 dips to 3e-3 between its spikes, y1 peaks at 1.2e5; with
        # atol/rtol = 1e-3 every component is scored relatively where it matters.
        atol=1e-9,
        rtol=1e-6,
        description="Oregonator (Belousov-Zhabotinskii reaction), 3 species on [0, 360]: "
        "relaxation oscillations, components ranging from 3e-3 to 1.2e5.",
        citation="R.J. Field, R.M. Noyes, J. Chem. Phys. 60 (1974); " + HW2 + ", Sect. IV.10; "
        + BARI + ", problem OREGO",
        max_steps=SHORT_STEP_BUDGET,
        extra={"reference_rows": _rows_note(stored, OREGO_T),
               "reference_cross_check": stored.meta.get("cross_check")},
    )


# ---------------------------------------------------------------------------------------------
# HIRES: High Irradiance RESponse of plant photomorphogenesis (Schaefer 1975)

HIRES_Y0 = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057)
HIRES_TEND = 321.8122
HIRES_T = np.array([0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, HIRES_TEND])
HIRES_Y_END = (  # hires.f solut
    0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4, 0.1175651343283149e-2,
    0.2386356198831331e-2, 0.6238968252742796e-2, 0.2849998395185769e-2, 0.2850001604814231e-2,
)  # fmt: skip


def hires_rhs(t: float, y: np.ndarray) -> np.ndarray:
    f7 = 280.0 * y[5] * y[7] - 1.81 * y[6]
    return np.array(
        [
            -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007,
            1.71 * y[0] - 8.75 * y[1],
            -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4],
            8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
            -1.745 * y[4] + 0.43 * (y[5] + y[6]),
            -280.0 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6],
            f7,
            -f7,
        ]
    )


def hires_jac(t: float, y: np.ndarray) -> np.ndarray:
    j = np.zeros((8, 8))
    j[0, :3] = (-1.71, 0.43, 8.32)
    j[1, :2] = (1.71, -8.75)
    j[2, 2:5] = (-10.03, 0.43, 0.035)
    j[3, 1:4] = (8.32, 1.71, -1.12)
    j[4, 4:7] = (-1.745, 0.43, 0.43)
    j[5, 3:8] = (0.69, 1.71, -280.0 * y[7] - 0.43, 0.69, -280.0 * y[5])
    j[6, 5:8] = (280.0 * y[7], -1.81, 280.0 * y[5])
    j[7, 5:8] = -j[6, 5:8]
    return j


class HiresField(nn.Module):
    """The 8 HIRES reactions (test set ``hires.f``, ``feval``), batched over leading dims."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y1, y2, y3, y4, y5, y6, y7, y8 = y.unbind(-1)
        f7 = 280.0 * y6 * y8 - 1.81 * y7
        return torch.stack(
            (
                -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
                1.71 * y1 - 8.75 * y2,
                -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
                8.32 * y2 + 1.71 * y3 - 1.12 * y4,
                -1.745 * y5 + 0.43 * (y6 + y7),
                -280.0 * y6 * y8 + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
                f7,
                -f7,
            ),
            dim=-1,
        )


@register_problem("hires")
def build_hires(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
    ys, stored = _published_rows("hires", HIRES_T, HIRES_Y_END)
    return Problem(
        name="hires",
        tags=frozenset({"stiff", "small"}),
        f=HiresField(),
        y0=torch.tensor(HIRES_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(HIRES_T, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.PUBLISHED,
            provenance=f"published: y(321.8122) from {BARI}, problem HIRES (hires.f, solut); rows "
            f"t = 1..200 {stored.provenance}",
        ),
        # Our choice of scales: the smallest end component is 5.9e-5; atol/rtol = 1e-6 keeps
        # every component scored relatively.
        atol=1e-12,
        rtol=1e-6,
        description="HIRES: light-induced plant growth reactions, 8 species on [0, 321.8122]; "
        "a fast transient, then slow kinetics.",
        citation="E. Schaefer, J. Math. Biol. 2 (1975); " + HW2 + ", Sect. IV.10; " + BARI
        + ", problem HIRES",
        max_steps=STEP_BUDGET,
        extra={"reference_rows": _rows_note(stored, HIRES_T),
               "reference_cross_check": stored.meta.get("cross_check")},
    )


# ---------------------------------------------------------------------------------------------
# E5: a chemical pyrolysis model (stiff DETEST, Enright, Hull & Lindberg 1975)

E5_K = (7.89e-10, 1.1e7, 1.13e9, 1.13e3)  # A, B, CM, C of e5.f
E5_Y0 = (1.76e-3, 0.0, 0.0, 0.0)
E5_TEND = 1.0e13
# e5.f solut (Bari release 2.4), as published. Not our reference: see build_e5 and E5_BARI_NOTE.
E5_Y_BARI = (0.1152903278711829e-290, 0.8867655517642120e-22, 0.8854814626268838e-22, 0.0)
# Hairer's stiff test set, e5_exact.txt (exact values for E5, beside its RADAU5 driver,
# http://www.unige.ch/~hairer/testset/testset.html), row t = 1e13: y2 = y3 = 8.86123349...e-23,
# y1 = y4 = 0. (Public copies of the same table print y3 with a last digit ...421e-23 instead of
# ...420e-23: 20 digits, the same float64.) Agrees with our own analysis in docs/references.md.
E5_Y23_END = 8.8612334976263783420e-23
E5_Y_END = (0.0, E5_Y23_END, E5_Y23_END, 0.0)
E5_HAIRER = (
    "E. Hairer, stiff test set, e5_exact.txt (exact values for E5, beside its RADAU5 driver), "
    "http://www.unige.ch/~hairer/testset/testset.html"
)
E5_BARI_NOTE = (
    "Bari release 2.4 e5.f solut, kept aside and not scored: (y2 - y3 - y4)' = 0 with y(0) giving "
    "0 and y4(1e13) = 0 force y2 = y3, yet the pair differs by 0.14% (each ~0.07% off Hairer's "
    "y2 = y3 = 8.8612334976263783420e-23); its y1 = 1.15e-290 is rounding noise (true < 1e-3400)"
)


def e5_rhs(t: float, y: np.ndarray) -> np.ndarray:
    a, b, cm, c = E5_K
    p1, p2, p3, p4 = a * y[0], b * y[0] * y[2], cm * y[1] * y[2], c * y[3]
    f2, f4 = p1 - p3, p2 - p4
    return np.array([-p1 - p2, f2, f2 - f4, f4])


def e5_jac(t: float, y: np.ndarray) -> np.ndarray:
    a, b, cm, c = E5_K
    return np.array(
        [
            [-a - b * y[2], 0.0, -b * y[0], 0.0],
            [a, -cm * y[2], -cm * y[1], 0.0],
            [a - b * y[2], -cm * y[2], -b * y[0] - cm * y[1], c],
            [b * y[2], 0.0, b * y[0], -c],
        ]
    )


class E5Field(nn.Module):
    """``p1 = A y1, p2 = B y1 y3, p3 = CM y2 y3, p4 = C y4``; ``y1' = -p1 - p2``,
    ``y2' = p1 - p3``, ``y4' = p2 - p4``, ``y3' = y2' - y4'`` (test set ``e5.f``)."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b, cm, c = E5_K
        y1, y2, y3, y4 = y.unbind(-1)
        p1, p2, p3, p4 = a * y1, b * y1 * y3, cm * y2 * y3, c * y4
        f2, f4 = p1 - p3, p2 - p4
        return torch.stack((-p1 - p2, f2, f2 - f4, f4), dim=-1)


@register_problem("e5")
def build_e5(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
    """E5 on [0, 1e13], end point only.

    The reference y(1e13) = (0, 8.8612334976263783420e-23, 8.8612334976263783420e-23, 0) is
    Hairer's (``e5_exact.txt`` of his stiff test set, beside its RADAU5 driver). It agrees with
    our own analysis (docs/references.md): the system conserves ``y2 - y3 - y4`` (0 at t = 0)
    and y4(1e13) = 0, so y2 = y3 exactly, and the well-determined sum y2 + y3 of tight
    double-precision solves gives y2 = y3 = 8.861235e-23, 6.7 digits from Hairer's value.

    y1: ``y1' = -(A + B y3) y1`` with ``y3 >= 0`` gives ``y1(t) <= y1(0) exp(-A t) = 1.76e-3
    exp(-7890)``, about 1e-3429, whose double-precision value is 0 (Hairer's file gives 0 too).
    The Bari test set publishes 1.15e-290 there, rounding noise of its reference run (atol
    1.1e-40); scoring against it would give every solver scd = 0 (the test set itself skips
    |y_ref| < 1e-200 in its scd).

    The Bari release 2.4 end value (``e5.f``, ``solut``) is kept in ``extra["bari_y_end"]``
    but not used (``extra["bari_note"]``): its y2 and y3 differ by 0.14%, which the
    conservation law rules out; each is ~0.07% off. No double-precision solve splits y2 and y3
    beyond ~3 digits (each violates the invariant by 1e-26 .. 6e-25, see
    ``scripts/e5_digits.py``), so expect ~3 digits in y2, y3 from any float64 check. No
    intermediate rows: double-precision solves agree only to ~3 digits at late times.
    """
    t = np.array([0.0, E5_TEND])
    ys = np.array([E5_Y0, E5_Y_END], dtype=np.float64)
    return Problem(
        name="e5",
        tags=frozenset({"stiff", "small"}),
        f=E5Field(),
        y0=torch.tensor(E5_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(t, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.PUBLISHED,
            provenance=f"published: y(1e13) from {E5_HAIRER}: y1 = y4 = 0, y2 = y3 (as the "
            "invariant y2 - y3 - y4 = 0 requires); agrees with our own analysis "
            "(docs/references.md). Bari's e5.f solut is not used (its y2, y3 differ by 0.14%), "
            "see extra['bari_note']",
        ),
        # Our choice of scales: y2, y3 end near 8.9e-23, so atol/rtol must be below that.
        atol=1e-30,
        rtol=1e-6,
        description="E5: pyrolysis kinetics, 4 species on [0, 1e13]; rate constants span 18 "
        "orders of magnitude and the solution decays to ~1e-22.",
        citation="W.H. Enright, T.E. Hull, B. Lindberg, BIT 15 (1975), problem E5; " + HW2
        + ", Sect. IV.10; " + BARI + ", problem E5; " + E5_HAIRER,
        max_steps=SHORT_STEP_BUDGET,
        extra={"bari_y_end": E5_Y_BARI, "bari_note": E5_BARI_NOTE},
    )


# ---------------------------------------------------------------------------------------------
# POLLU: air pollution chemistry of the Dutch RIVM model (Verwer 1994)

POLLU_K = (
    0.35, 26.6, 1.23e4, 8.6e-4, 8.2e-4, 1.5e4, 1.3e-4, 2.4e4, 1.65e4, 9.0e3, 0.022, 1.2e4, 1.88,
    1.63e4, 4.8e6, 3.5e-4, 0.0175, 1.0e8, 4.44e11, 1240.0, 2.1, 5.78, 0.0474, 1780.0, 3.12,
)  # fmt: skip
POLLU_Y0 = tuple(
    {1: 0.2, 3: 0.04, 6: 0.1, 7: 0.3, 8: 0.01, 16: 0.007}.get(i, 0.0) for i in range(20)
)
POLLU_T = np.array([0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
POLLU_Y_60 = (  # pollu.f solut
    0.5646255480022769e-01, 0.1342484130422339e00, 0.4139734331099427e-08, 0.5523140207484359e-02,
    0.2018977262302196e-06, 0.1464541863493966e-06, 0.7784249118997964e-01, 0.3245075353396018e00,
    0.7494013383880406e-02, 0.1622293157301561e-07, 0.1135863833257075e-07, 0.2230505975721359e-02,
    0.2087162882798630e-03, 0.1396921016840158e-04, 0.8964884856898295e-02, 0.4352846369330103e-17,
    0.6899219696263405e-02, 0.1007803037365946e-03, 0.1772146513969984e-05, 0.5682943292316392e-04,
)  # fmt: skip
# (reaction r, reactant indices (0-based)) for r_k = K_k * prod(y[reactants])
POLLU_REACTANTS = (
    (0,), (1, 3), (4, 1), (6,), (6,), (6, 5), (8,), (8, 5), (10, 1), (10, 0), (12,), (9, 1),
    (13,), (0, 5), (2,), (3,), (3,), (15,), (15,), (16, 5), (18,), (18,), (0, 3), (18, 0), (19,),
)  # fmt: skip
# dy_i/dt = sum_k S[i, k] r_k, the stoichiometry of pollu.f's feval (reaction k is column k-1)
POLLU_NET = {
    0: {1: -1, 10: -1, 14: -1, 23: -1, 24: -1, 2: 1, 3: 1, 9: 1, 11: 1, 12: 1, 22: 1, 25: 1},
    1: {2: -1, 3: -1, 9: -1, 12: -1, 1: 1, 21: 1},
    2: {15: -1, 1: 1, 17: 1, 19: 1, 22: 1},
    3: {2: -1, 16: -1, 17: -1, 23: -1, 15: 1},
    4: {3: -1, 4: 2, 6: 1, 7: 1, 13: 1, 20: 1},
    5: {6: -1, 8: -1, 14: -1, 20: -1, 3: 1, 18: 2},
    6: {4: -1, 5: -1, 6: -1, 13: 1},
    7: {4: 1, 5: 1, 6: 1, 7: 1},
    8: {7: -1, 8: -1},
    9: {12: -1, 7: 1, 9: 1},
    10: {9: -1, 10: -1, 8: 1, 11: 1},
    11: {9: 1},
    12: {11: -1, 10: 1},
    13: {13: -1, 12: 1},
    14: {14: 1},
    15: {18: -1, 19: -1, 16: 1},
    16: {20: -1},
    17: {20: 1},
    18: {21: -1, 22: -1, 24: -1, 23: 1, 25: 1},
    19: {25: -1, 24: 1},
}


def pollu_stoichiometry() -> np.ndarray:
    """S with ``dy/dt = S r``, 20 x 25, from :data:`POLLU_NET` (1-based reaction numbers)."""
    s = np.zeros((20, 25))
    for i, row in POLLU_NET.items():
        for k, coef in row.items():
            s[i, k - 1] = coef
    return s


def pollu_rates(y: np.ndarray) -> np.ndarray:
    return np.array([k * np.prod(y[list(idx)]) for k, idx in zip(POLLU_K, POLLU_REACTANTS,
                                                                strict=True)])


_POLLU_S = pollu_stoichiometry()


def pollu_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return _POLLU_S @ pollu_rates(y)


def pollu_jac(t: float, y: np.ndarray) -> np.ndarray:
    """``S dr/dy``; each rate is a monomial of degree 1 or 2 in y."""
    dr = np.zeros((25, 20))
    for k, (kk, idx) in enumerate(zip(POLLU_K, POLLU_REACTANTS, strict=True)):
        if len(idx) == 1:
            dr[k, idx[0]] += kk
        else:
            a, b = idx
            dr[k, a] += kk * y[b]
            dr[k, b] += kk * y[a]
    return _POLLU_S @ dr


class PolluField(nn.Module):
    """POLLU as ``S r(y)``: the 25 reaction rates (monomials of y) times the stoichiometry S.

    ``S`` and the rate constants are buffers; batched over leading dims.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("S", torch.tensor(_POLLU_S, dtype=torch.float64))
        self.register_buffer("k", torch.tensor(POLLU_K, dtype=torch.float64))
        first = [idx[0] for idx in POLLU_REACTANTS]
        second = [idx[1] if len(idx) == 2 else -1 for idx in POLLU_REACTANTS]
        self.register_buffer("i1", torch.tensor(first))
        self.register_buffer("i2", torch.tensor([j if j >= 0 else 0 for j in second]))
        self.register_buffer("has2", torch.tensor([j >= 0 for j in second]))

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = y[..., self.i1]
        b = torch.where(self.has2, y[..., self.i2], torch.ones_like(a))
        return (self.k * a * b) @ self.S.T


@register_problem("pollu")
def build_pollu(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
    ys, stored = _published_rows("pollu", POLLU_T, POLLU_Y_60)
    return Problem(
        name="pollu",
        tags=frozenset({"stiff", "medium"}),
        f=PolluField().to(dtype=dtype, device=device),
        y0=torch.tensor(POLLU_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(POLLU_T, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.PUBLISHED,
            provenance=f"published: y(60) from {BARI}, problem POLLU (pollu.f, solut); rows "
            f"t = 0.1..50 {stored.provenance}",
        ),
        # Our choice of scales: y16 ends near 4e-18, y3 near 4e-9; atol/rtol = 1e-12 scores
        # everything above that relatively.
        atol=1e-18,
        rtol=1e-6,
        description="POLLU: 25 reactions of 20 species from the RIVM air pollution model on "
        "[0, 60] minutes; rates span 1e-4 .. 4e11.",
        citation="J.G. Verwer, Gauss-Seidel iteration for stiff ODEs from chemical kinetics, "
        "SIAM J. Sci. Comput. 15 (1994); " + BARI + ", problem POLLU",
        max_steps=SHORT_STEP_BUDGET,
        extra={"reference_rows": _rows_note(stored, POLLU_T),
               "reference_cross_check": stored.meta.get("cross_check")},
    )


# ---------------------------------------------------------------------------------------------
# stored computed rows and refs --check

COMPUTED = [
    references.ComputedSpec(
        name="orego", rhs=orego_rhs, jac=orego_jac, y0=OREGO_Y0, t=OREGO_T.tolist(),
        method="Radau", rtol=1e-12, atol=1e-12, check_method="BDF",
        note="OREGO rows t = 0, 30, ..., 360; the t = 360 row is replaced by the published value",
    ),
    references.ComputedSpec(
        name="hires", rhs=hires_rhs, jac=hires_jac, y0=HIRES_Y0, t=HIRES_T.tolist(),
        method="Radau", rtol=1e-12, atol=1e-16, check_method="BDF",
        note="HIRES rows; the t = 321.8122 row is replaced by the published value",
    ),
    references.ComputedSpec(
        name="pollu", rhs=pollu_rhs, jac=pollu_jac, y0=POLLU_Y0, t=POLLU_T.tolist(),
        method="Radau", rtol=1e-12, atol=1e-22, check_method="BDF",
        note="POLLU rows; the t = 60 row is replaced by the published value",
    ),
]

CHECKS = [
    RefCheck(problem="orego", rhs=orego_rhs, jac=orego_jac, method="Radau", rtol=1e-11,
             atol=1e-11, digits=9.0, floor=1e-6, computed=("orego",),
             note="published end and stored rows vs Radau rtol 1e-11"),
    RefCheck(problem="hires", rhs=hires_rhs, jac=hires_jac, method="Radau", rtol=1e-11,
             atol=1e-15, digits=9.0, floor=1e-12, computed=("hires",),
             note="published end and stored rows vs Radau rtol 1e-11"),
    RefCheck(problem="e5", rhs=e5_rhs, jac=e5_jac, method="Radau", rtol=1e-12, atol=1e-50,
             digits=2.5, floor=1e-30,
             note="y2, y3 ~ 9e-23 keep ~3 digits in double precision (y2 - y3 - y4 invariant "
             "violated by roundoff); their sum ~6 digits, scripts/e5_digits.py"),
    RefCheck(problem="pollu", rhs=pollu_rhs, jac=pollu_jac, method="Radau", rtol=1e-11,
             atol=1e-20, digits=8.0, floor=1e-18, computed=("pollu",),
             note="published end and stored rows vs Radau rtol 1e-11"),
]
