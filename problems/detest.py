"""DETEST problems with closed-form solutions (Hull, Enright, Fellen & Sedgwick 1972).

T.E. Hull, W.H. Enright, B.M. Fellen, A.E. Sedgwick, "Comparing numerical methods for
ordinary differential equations", SIAM J. Numer. Anal. 9(4) (1972) 603-637. Every DETEST problem
is integrated over t in [0, 20]. Only the problems that truly have a closed form are here:

- A1 ``y' = -y``, y(0) = 1: ``y = exp(-t)``;
- A2 ``y' = -y^3/2``, y(0) = 1: ``y = 1/sqrt(1 + t)``;
- A3 ``y' = y cos t``, y(0) = 1: ``y = exp(sin t)``;
- A4 ``y' = (y/4)(1 - y/20)``, y(0) = 1 (logistic): ``y = 20 / (1 + 19 exp(-t/4))``;
- B2 ``y1' = -y1 + y2, y2' = y1 - 2 y2 + y3, y3' = y2 - y3``, y(0) = (2, 0, 1): a symmetric
  linear system with eigenvalues 0, -1, -3, so ``y = (1 + e^-t/2 + e^-3t/2, 1 - e^-3t,
  1 - e^-t/2 + e^-3t/2)``;
- B4 ``y1' = -y2 - y1 y3/r, y2' = y1 - y2 y3/r, y3' = y1/r``, r = sqrt(y1^2 + y2^2),
  y(0) = (3, 0, 0). In polar form the angle advances at rate 1, ``y3' = cos t`` and
  ``r' = -y3``, so ``y3 = sin t``, ``r = 2 + cos t``, ``(y1, y2) = r (cos t, sin t)``;
- B5 (Euler's rigid body) ``y1' = y2 y3, y2' = -y1 y3, y3' = -0.51 y1 y2``, y(0) = (0, 1, 1):
  Jacobi's elliptic functions with parameter m = 0.51, ``y = (sn(t|m), cn(t|m), dn(t|m))``;
- D1-D5, the Kepler orbit with eccentricity 0.1, 0.3, 0.5, 0.7, 0.9 (``kepler-d1`` ...
  ``kepler-d5``; ``kepler`` in ``problems.nonstiff`` is D3 under its older name).

A1, A2 and A4 are the problems with solutions written in the paper; A3, B2, B4, B5 and class D are
derived above and checked in ``tests/test_problem_detest.py`` by a finite-difference residual.
A5 (``y' = (y - t)/(y + t)``) has only an implicit solution, and B1, B3, C and E have none, so
they are not included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.special
import torch
from torch import nn

from harness.registry import register_problem
from problems import nonstiff
from problems.base import Problem, Reference, RefKind, doubling
from problems.references import RefCheck

DETEST_CITATION = (
    "T.E. Hull, W.H. Enright, B.M. Fellen, A.E. Sedgwick, Comparing numerical methods for "
    "ordinary differential equations, SIAM J. Numer. Anal. 9(4) (1972) 603-637"
)
DETEST_T = np.linspace(0.0, 20.0, 11)
B5_M = 0.51


# --------------------------------------------------------------------------------- fields


class A1Field(nn.Module):
    """DETEST A1: ``y' = -y``."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -y


class A2Field(nn.Module):
    """DETEST A2: ``y' = -y^3 / 2``."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -0.5 * y**3


class A3Field(nn.Module):
    """DETEST A3: ``y' = y cos t`` (non-autonomous)."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = torch.cos(torch.as_tensor(t, dtype=y.dtype, device=y.device))
        return y * c


class A4Field(nn.Module):
    """DETEST A4: ``y' = (y/4)(1 - y/20)``."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.25 * y * (1.0 - 0.05 * y)


class B2Field(nn.Module):
    """DETEST B2: ``y' = A y``, A = [[-1, 1, 0], [1, -2, 1], [0, 1, -1]] (a buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("A", torch.tensor(B2_MATRIX, dtype=torch.float64))

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y @ self.A.T


B2_MATRIX = ((-1.0, 1.0, 0.0), (1.0, -2.0, 1.0), (0.0, 1.0, -1.0))


class B4Field(nn.Module):
    """DETEST B4: ``y1' = -y2 - y1 y3/r``, ``y2' = y1 - y2 y3/r``, ``y3' = y1/r``."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
        r = torch.sqrt(y1 * y1 + y2 * y2)
        return torch.stack((-y2 - y1 * y3 / r, y1 - y2 * y3 / r, y1 / r), dim=-1)


class B5Field(nn.Module):
    """DETEST B5, Euler's equations of a rigid body: ``y1' = y2 y3``, ``y2' = -y1 y3``,
    ``y3' = -0.51 y1 y2``."""

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack((y2 * y3, -y1 * y3, -B5_M * y1 * y2), dim=-1)


# ------------------------------------------------------------------------ numpy and exact


def a1_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return -y


def a2_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return -0.5 * y**3


def a3_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return y * math.cos(t)


def a4_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return 0.25 * y * (1.0 - 0.05 * y)


def b2_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return np.asarray(B2_MATRIX) @ y


def b4_rhs(t: float, y: np.ndarray) -> np.ndarray:
    r = math.hypot(y[0], y[1])
    return np.array([-y[1] - y[0] * y[2] / r, y[0] - y[1] * y[2] / r, y[0] / r])


def b5_rhs(t: float, y: np.ndarray) -> np.ndarray:
    return np.array([y[1] * y[2], -y[0] * y[2], -B5_M * y[0] * y[1]])


def a1_exact(t: np.ndarray) -> np.ndarray:
    return np.exp(-np.asarray(t, dtype=np.float64))[:, None]


def a2_exact(t: np.ndarray) -> np.ndarray:
    return (1.0 / np.sqrt(1.0 + np.asarray(t, dtype=np.float64)))[:, None]


def a3_exact(t: np.ndarray) -> np.ndarray:
    return np.exp(np.sin(np.asarray(t, dtype=np.float64)))[:, None]


def a4_exact(t: np.ndarray) -> np.ndarray:
    return (20.0 / (1.0 + 19.0 * np.exp(-np.asarray(t, dtype=np.float64) / 4.0)))[:, None]


def b2_exact(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    e1, e3 = np.exp(-t), np.exp(-3.0 * t)
    return np.stack((1.0 + 0.5 * e1 + 0.5 * e3, 1.0 - e3, 1.0 - 0.5 * e1 + 0.5 * e3), axis=-1)


def b4_exact(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    r = 2.0 + np.cos(t)
    return np.stack((r * np.cos(t), r * np.sin(t), np.sin(t)), axis=-1)


def b5_exact(t: np.ndarray) -> np.ndarray:
    sn, cn, dn, _ = scipy.special.ellipj(np.asarray(t, dtype=np.float64), B5_M)
    return np.stack((sn, cn, dn), axis=-1)


# ------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class ExactDetest:
    """One DETEST problem with a closed form: everything its build and its check need."""

    name: str
    label: str  # DETEST's own name, e.g. "A1"
    field: Callable[[], nn.Module]
    rhs: Callable[[float, np.ndarray], np.ndarray]
    exact: Callable[[np.ndarray], np.ndarray]
    y0: tuple[float, ...]
    formula: str  # the closed form, one line, for the provenance
    description: str
    check_digits: float = 11.0


EXACT_DETEST = (
    ExactDetest("detest-a1", "A1", A1Field, a1_rhs, a1_exact, (1.0,), "y = exp(-t)",
                "Exponential decay y' = -y: the simplest smooth problem."),
    ExactDetest("detest-a2", "A2", A2Field, a2_rhs, a2_exact, (1.0,), "y = 1/sqrt(1+t)",
                "Cubic decay y' = -y^3/2: algebraic, not exponential, decay."),
    ExactDetest("detest-a3", "A3", A3Field, a3_rhs, a3_exact, (1.0,), "y = exp(sin t)",
                "Non-autonomous y' = y cos t: a periodic solution between 1/e and e."),
    ExactDetest("detest-a4", "A4", A4Field, a4_rhs, a4_exact, (1.0,),
                "y = 20/(1 + 19 exp(-t/4))", "Logistic growth y' = y/4 (1 - y/20) from 1 to 20."),
    ExactDetest("detest-b2", "B2", B2Field, b2_rhs, b2_exact, (2.0, 0.0, 1.0),
                "y = (1 + e^-t/2 + e^-3t/2, 1 - e^-3t, 1 - e^-t/2 + e^-3t/2)",
                "3-dim linear diffusion chain, eigenvalues 0, -1, -3."),
    ExactDetest("detest-b4", "B4", B4Field, b4_rhs, b4_exact, (3.0, 0.0, 0.0),
                "y3 = sin t, (y1, y2) = (2 + cos t)(cos t, sin t)",
                "3-dim nonlinear system whose polar form is linear: a limacon-like loop."),
    ExactDetest("detest-b5", "B5", B5Field, b5_rhs, b5_exact, (0.0, 1.0, 1.0),
                "y = (sn, cn, dn)(t | m = 0.51) (scipy.special.ellipj)",
                "Euler's rigid body: Jacobi elliptic functions with parameter m = 0.51.",
                check_digits=10.0),
)


# Fixed-step ladders by method order (Problem.steps), chosen by measuring err_max against the
# report's asymptotic range (1000 eps, 0.1]; a problem not named here uses the suite's
# (32..512), which already puts every rk4 rung and most Euler rungs in range. Euler is given a
# ladder where a fit costs at most about a second a solve.
DETEST_STEPS: dict[str, dict[int, tuple[int, ...]]] = {
    # Euler errs 0.11 at 2048 steps, 0.058 at 4096: only the top two rungs can enter the range
    "detest-a3": {1: doubling(512), 4: doubling(32)},
    # Euler errs 0.081 at 256 steps: from 128 four rungs are in range
    "detest-a4": {1: doubling(128), 4: doubling(32)},
    # Euler errs 0.073 at 2048 steps (0.15 at 1024): the top two rungs are in range
    "detest-b5": {1: doubling(256), 4: doubling(32)},
    # e = 0.3: rk4 errs 0.3 at 64 steps, 0.01 at 128: from 64 four rungs are in range
    "kepler-d2": {1: doubling(32), 4: doubling(64)},
    # e = 0.5: rk4 errs 0.19 at 128 steps, 0.0063 at 256: from 128 four rungs are in range
    "kepler-d3": {1: doubling(32), 4: doubling(128)},
    # e = 0.7: rk4 errs 0.45 at 256 steps, 0.015 at 512: from 128 three rungs are in range
    "kepler-d4": {1: doubling(32), 4: doubling(128)},
    # e = 0.9: rk4 errs 0.16 at 2048 steps, 0.006 at 4096 (periapsis speed 4.4): three rungs
    # at 3000..5000, each solve a second or two; Euler still errs 34 at 2048: the suite's
    "kepler-d5": {1: doubling(32), 4: (3000, 4000, 5000)},
}
# kepler-batch holds D1..D5: its error is D5's
DETEST_STEPS["kepler-batch"] = DETEST_STEPS["kepler-d5"]


def _builder(spec: ExactDetest):
    def build(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
        t = DETEST_T
        return Problem(
            name=spec.name,
            tags=frozenset({"nonstiff", "exact", "small"}),
            f=spec.field().to(dtype=dtype, device=device),
            y0=torch.tensor(spec.y0, dtype=dtype, device=device),
            t=torch.as_tensor(t, dtype=dtype, device=device),
            reference=Reference(
                ys=spec.exact(t),
                kind=RefKind.EXACT,
                provenance=f"exact: {spec.formula}, DETEST {spec.label}, Hull/Enright/Fellen/"
                f"Sedgwick 1972 (problems.detest.{spec.exact.__name__})",
            ),
            atol=1e-6,
            rtol=1e-6,
            description=f"DETEST {spec.label}: {spec.description}",
            citation=DETEST_CITATION + f", problem {spec.label}",
            steps=DETEST_STEPS.get(spec.name),
            extra={"detest": spec.label},
        )

    build.__name__ = f"build_{spec.name.replace('-', '_')}"
    build.__qualname__ = build.__name__
    build.__module__ = __name__
    return build


for _spec in EXACT_DETEST:
    register_problem(_spec.name)(_builder(_spec))


# ------------------------------------------------------------------ class D: Kepler orbits

KEPLER_D = {"kepler-d1": 0.1, "kepler-d2": 0.3, "kepler-d3": 0.5, "kepler-d4": 0.7,
            "kepler-d5": 0.9}


def _kepler_builder(name: str, ecc: float):
    label = "D" + name[-1]

    def build(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
        t = nonstiff.KEPLER_T
        ys = nonstiff.kepler_exact(t, ecc)
        ys[0] = nonstiff.kepler_y0(ecc)  # the same value, without the last-bit rounding of E
        return Problem(
            name=name,
            tags=frozenset({"nonstiff", "exact", "small"}),
            f=nonstiff.KeplerField(),
            y0=torch.tensor(nonstiff.kepler_y0(ecc), dtype=dtype, device=device),
            t=torch.as_tensor(t, dtype=dtype, device=device),
            reference=Reference(
                ys=ys,
                kind=RefKind.EXACT,
                provenance=f"exact: Kepler orbit e={ecc} via E - e sin E = t (Newton to machine "
                f"precision), DETEST {label}, Hull/Enright/Fellen/Sedgwick 1972",
            ),
            atol=1e-6,
            rtol=1e-6,
            description=f"DETEST {label}: two-body orbit with eccentricity {ecc} over about 3 "
            f"periods; periapsis speed is {math.sqrt((1 + ecc) / (1 - ecc)):.3g}, apoapsis "
            f"{math.sqrt((1 - ecc) / (1 + ecc)):.3g}.",
            citation=DETEST_CITATION + f", problem {label}",
            steps=DETEST_STEPS.get(name),
            extra={"eccentricity": ecc, "detest": label},
        )

    build.__name__ = f"build_{name.replace('-', '_')}"
    build.__qualname__ = build.__name__
    build.__module__ = __name__
    return build


for _name, _ecc in KEPLER_D.items():
    register_problem(_name)(_kepler_builder(_name, _ecc))



@register_problem("kepler-batch")
def build_kepler_batch(
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> Problem:
    """DETEST D1-D5 as one batch ``[5, 4]``: five orbits of one field, easy beside hard."""
    t = nonstiff.KEPLER_T
    eccs = list(KEPLER_D.values())
    ys = np.stack([nonstiff.kepler_exact(t, e) for e in eccs], axis=1)
    ys[0] = [nonstiff.kepler_y0(e) for e in eccs]
    return Problem(
        name="kepler-batch",
        tags=frozenset({"nonstiff", "exact", "medium", "batch"}),  # 20 numbers
        f=nonstiff.KeplerField(),
        y0=torch.tensor(ys[0], dtype=dtype, device=device),
        t=torch.as_tensor(t, dtype=dtype, device=device),
        reference=Reference(
            ys=ys,
            kind=RefKind.EXACT,
            provenance="exact: the Kepler orbits of DETEST D1-D5 (e = 0.1 ... 0.9) via "
            "E - e sin E = t, as kepler-d1 ... kepler-d5",
        ),
        atol=1e-6,
        rtol=1e-6,
        description="DETEST D1-D5 solved as one batch of 5 trajectories [5, 4]: a shared step "
        "size follows the most eccentric orbit, dopri5-pt and torchode give each orbit its "
        "own steps.",
        citation=DETEST_CITATION + ", problems D1-D5",
        steps=DETEST_STEPS["kepler-batch"],
        extra={"eccentricity": eccs, "detest": "D1-D5"},
    )

# ------------------------------------------------------------------------ refs --check

# Exact references: an independent DOP853 solve at rtol 1e-13 is a spot check of the formula
# (atol 1e-20 so that A1's tail, e^-20 = 2e-9, is still controlled relatively). The eccentric
# Kepler orbits lose digits at each periapsis pass (speed sqrt((1+e)/(1-e)), up to 4.4).
CHECKS = [
    RefCheck(problem=s.name, rhs=s.rhs, method="DOP853", rtol=1e-13, atol=1e-20,
             digits=s.check_digits, floor=1e-12,
             note="closed form vs DOP853 rtol 1e-13")
    for s in EXACT_DETEST
] + [
    RefCheck(problem=name, rhs=nonstiff.kepler_rhs, method="DOP853", rtol=1e-13, atol=1e-15,
             digits=10.0 if ecc < 0.6 else 9.0, floor=1e-12,
             note="closed form vs DOP853 rtol 1e-13")
    for name, ecc in KEPLER_D.items()
] + [
    RefCheck(problem="kepler-batch", rhs=lambda t, y: np.concatenate(
        [nonstiff.kepler_rhs(t, row) for row in y.reshape(-1, 4)]), method="DOP853",
             rtol=1e-13, atol=1e-15, digits=9.0, floor=1e-12,
             note="closed form vs DOP853 rtol 1e-13, the five orbits as one state")
]
