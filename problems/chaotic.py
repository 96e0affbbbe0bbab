"""Chaotic dynamics over a short horizon: the Lorenz system.

Lorenz (1963): ``x' = sigma (y - x)``, ``y' = x (rho - z) - y``, ``z' = x y - beta z`` with the
classical sigma = 10, rho = 28, beta = 8/3. The largest Lyapunov exponent is about 0.9, so an
error grows by about e^0.9 = 2.5 per time unit: over [0, 5] a reference made at rtol 1e-13 keeps
about 10 digits, while over [0, 40] no double-precision solve keeps any. The horizon is therefore
short on purpose; the reference is a tight scipy solve stored as data
(``problems/data/lorenz.json``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from harness.registry import register_problem
from problems import references
from problems.base import Problem, Reference, RefKind, doubling
from problems.references import RefCheck

LORENZ_PARAMS = (10.0, 28.0, 8.0 / 3.0)  # (sigma, rho, beta)
LORENZ_Y0 = (-8.0, 8.0, 27.0)
LORENZ_T = np.linspace(0.0, 5.0, 11)


def lorenz_rhs(t: float, y: np.ndarray) -> np.ndarray:
    s, r, b = LORENZ_PARAMS
    return np.array([s * (y[1] - y[0]), y[0] * (r - y[2]) - y[1], y[0] * y[1] - b * y[2]])


def lorenz_jac(t: float, y: np.ndarray) -> np.ndarray:
    s, r, b = LORENZ_PARAMS
    return np.array([[-s, s, 0.0], [r - y[2], -1.0, -y[0]], [y[1], y[0], -b]])


class LorenzField(nn.Module):
    """``(sigma (y - x), x (rho - z) - y, x y - beta z)``, batched over leading dims."""

    def __init__(self, params: tuple[float, float, float] = LORENZ_PARAMS) -> None:
        super().__init__()
        self.sigma, self.rho, self.beta = params

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, yy, z = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack(
            (self.sigma * (yy - x), x * (self.rho - z) - yy, x * yy - self.beta * z), dim=-1
        )


COMPUTED = [
    references.ComputedSpec(
        name="lorenz",
        rhs=lorenz_rhs,
        jac=lorenz_jac,
        y0=LORENZ_Y0,
        t=LORENZ_T.tolist(),
        method="DOP853",
        rtol=1e-13,
        atol=1e-12,
        check_method="Radau",
        note="Lorenz sigma=10 rho=28 beta=8/3 from (-8, 8, 27), outputs t = 0, 0.5, ..., 5",
    )
]


@register_problem("lorenz")
def build_lorenz(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Problem:
    stored = references.load("lorenz")
    references.check_times(stored, LORENZ_T)
    return Problem(
        name="lorenz",
        tags=frozenset({"nonstiff", "chaotic", "small"}),
        f=LorenzField(),
        y0=torch.tensor(LORENZ_Y0, dtype=dtype, device=device),
        t=torch.as_tensor(LORENZ_T, dtype=dtype, device=device),
        reference=Reference(ys=stored.ys, kind=RefKind.COMPUTED, provenance=stored.provenance),
        atol=1e-6,
        rtol=1e-6,
        description="Lorenz attractor (sigma, rho, beta) = (10, 28, 8/3) from (-8, 8, 27) on "
        "[0, 5]: 7 loops, switching wings 3 times; errors grow ~2.5x per time unit, so the "
        "horizon is short.",
        citation="E.N. Lorenz, Deterministic nonperiodic flow, J. Atmos. Sci. 20 (1963) 130-141",
        # rk4 errs 0.36 at 256 steps, 0.013 at 512: from 128 three rungs are in range; Euler
        # still errs ~20 at 16384 steps (chaos): the suite's ladder, pre-asymptotic
        steps={1: doubling(32), 4: doubling(128)},
        extra={"params": LORENZ_PARAMS, "reference_cross_check": stored.meta.get("cross_check")},
    )


# The stored DOP853 solve against an independent LSODA (Adams) solve; chaos costs ~2 digits.
CHECKS = [
    RefCheck(problem="lorenz", rhs=lorenz_rhs, jac=lorenz_jac, method="LSODA", rtol=1e-12,
             atol=1e-14, digits=8.0, floor=1.0, computed=("lorenz",),
             note="stored DOP853 solve vs independent LSODA (Adams); chaos amplifies errors"),
]
