"""An example problem plugin: a damped harmonic oscillator with its exact solution.

Copy this file, change the right-hand side and the reference, and run

    python -m harness run --plugin examples/plugins/oscillator_problem.py --problems oscillator

x'' + 2 zeta w x' + w^2 x = 0 as a first-order system y = (x, x'), underdamped (zeta < 1):
x(t) = exp(-zeta w t) (x0 cos(wd t) + (v0 + zeta w x0) / wd sin(wd t)), wd = w sqrt(1 - zeta^2).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from harness.registry import register_problem
from problems.base import Problem, Reference, RefKind

W, ZETA = 2.0, 0.1  # natural frequency, damping ratio
X0, V0 = 1.0, 0.0


def _exact(t: np.ndarray) -> np.ndarray:
    wd = W * math.sqrt(1 - ZETA**2)
    decay = np.exp(-ZETA * W * t)
    a, b = X0, (V0 + ZETA * W * X0) / wd
    x = decay * (a * np.cos(wd * t) + b * np.sin(wd * t))
    c, s = np.cos(wd * t), np.sin(wd * t)
    v = decay * ((b * wd - ZETA * W * a) * c - (a * wd + ZETA * W * b) * s)
    return np.stack([x, v], axis=-1)


def oscillator_rhs(t, y: torch.Tensor) -> torch.Tensor:
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, -2 * ZETA * W * v - W**2 * x], dim=-1)


@register_problem("oscillator")
def build(dtype: torch.dtype, device: str | torch.device) -> Problem:
    t = np.linspace(0.0, 10.0, 11)
    return Problem(
        name="oscillator",
        tags=frozenset({"nonstiff", "exact", "small"}),
        f=oscillator_rhs,
        y0=torch.tensor([X0, V0], dtype=dtype, device=device),
        t=torch.tensor(t, dtype=dtype, device=device),
        reference=Reference(
            ys=_exact(t), kind=RefKind.EXACT, provenance="exact: closed-form damped oscillator"
        ),
        atol=1e-6,
        rtol=1e-6,
        description="damped harmonic oscillator, w = 2, zeta = 0.1 (example plugin)",
    )
