"""The solver contract: what every solver takes and what it hands back.

A solver integrates ``dy/dt = f(t, y)`` from ``t[0]`` and returns the state at every requested
time in ``t``. It never raises for a numerical failure: it returns a :class:`Solution` whose
``status`` says what went wrong and whose ``ys`` hold what it reached (NaN after the failure).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import torch

RHS = Callable[[torch.Tensor | float, torch.Tensor], torch.Tensor]
"""``f(t, y) -> dy/dt``: torch ops, batched over leading dimensions of ``y``."""


class Status(enum.StrEnum):
    """How a solve ended. The values are what results files store."""

    OK = "ok"
    MAX_STEPS = "max_steps"  # the step (or NFE) budget ran out before the final time
    STEP_TOO_SMALL = "step_too_small"  # the step size fell below the floating-point limit
    NONFINITE = "nonfinite"  # the state or the error estimate became inf/NaN
    ERROR = "error"  # anything else, with the message


class GradMode(enum.StrEnum):
    """How a gradient through a solve is computed (issue 4 adds the adjoint modes)."""

    NONE = "none"
    BACKPROP = "backprop"


@dataclass
class Solution:
    """What a solve returns.

    ``ys`` has shape ``[len(t), *y0.shape]``. Rows after a failure are NaN.
    ``nfe`` is the solver's own count of calls of ``f``; the harness counts independently.
    """

    ys: torch.Tensor
    status: Status = Status.OK
    message: str = ""
    n_steps: int = 0  # attempted steps: n_accepted + n_rejected
    n_accepted: int = 0
    n_rejected: int = 0
    nfe: int = 0
    t_reached: float | None = None  # how far the solve got (the final time when ok)


class Solver:
    """Base class for solvers. Subclasses set the class attributes and implement ``solve``.

    Capabilities are declared, so the harness can refuse a bad combination before the run:

    - ``adaptive``: picks its own steps from ``rtol``/``atol`` (else needs ``n_steps``);
    - ``differentiable``: a torch solver autograd can record (``backprop``);
    - ``grad_modes``: the gradient modes it supports.
    """

    name: str = ""
    order: int = 0
    adaptive: bool = False
    differentiable: bool = True
    grad_modes: tuple[GradMode, ...] = (GradMode.NONE, GradMode.BACKPROP)
    kind: str = ""  # a few words for `list`, e.g. "explicit RK, adaptive"
    description: str = ""

    def solve(
        self,
        f: RHS,
        y0: torch.Tensor,
        t: torch.Tensor,
        *,
        rtol: float | None = None,
        atol: float | None = None,
        n_steps: int | None = None,
        max_steps: int | None = None,
    ) -> Solution:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} order={self.order} adaptive={self.adaptive}>"


def check_times(t: torch.Tensor) -> None:
    """Refuse output times that are not a 1-D, strictly monotone sequence of at least 2 points."""
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"`t` must be 1-D with at least 2 times; got shape {tuple(t.shape)}")
    d = torch.diff(t)
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise ValueError("`t` must be strictly increasing or strictly decreasing")
