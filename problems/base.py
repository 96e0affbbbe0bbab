"""The problem contract: a right-hand side, initial value, output times, and a trusted reference.

A problem is built by a registered function ``build(dtype, device) -> Problem``. Building must be
cheap (no solving): references are exact formulas, published values, or computed values stored as
data files with how they were made.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch


class RefKind(enum.StrEnum):
    EXACT = "exact"  # closed form
    PUBLISHED = "published"  # values taken from a named source
    COMPUTED = "computed"  # solved at tight tolerance, stored as data with how it was made


@dataclass
class Reference:
    """Trusted values at the problem's output times.

    ``ys`` has shape ``[len(t), *y0.shape]`` in float64. Entries the source does not give
    (a published value only at the end point, say) are NaN and are not scored.
    ``provenance`` is one line a person can check: the formula, the source, or the command.
    """

    ys: np.ndarray
    kind: RefKind
    provenance: str


@dataclass
class Problem:
    name: str
    tags: frozenset[str]
    # f(t, y) -> dy/dt in torch ops, batched over leading dims; an nn.Module if it has parameters
    f: Callable
    y0: torch.Tensor
    t: torch.Tensor  # output times, t[0] is the start
    reference: Reference
    atol: float = 1e-6  # absolute scale for the scaled error (and mescd)
    rtol: float = 1e-6  # relative scale for the scaled error (and mescd)
    description: str = ""
    citation: str = ""
    max_steps: int | None = None  # a budget for explicit solvers, where the problem needs one
    # the loss a gradient case differentiates, ys [len(t), *y0.shape] -> scalar; None: sum_sq
    loss: Callable | None = None
    # The fixed-step ladder (step counts over the whole span) by method order: a solver of
    # order p takes the entry of the largest order <= p (the smallest entry if none is). Chosen
    # from the problem's own scale so that the errors fall in the asymptotic range where an
    # order can be fitted. None: the suite's ladder. An explicit --steps or a suite file's
    # steps wins over it.
    steps: dict[int, tuple[int, ...]] | None = None
    # the field's own Jacobian df/dy in torch, jac(t, y) -> [..., d, d] (batched as f is), for
    # the solvers that take one (Capability.JACOBIAN); None: they use autograd
    jac: Callable | None = None
    extra: dict = field(default_factory=dict)

    def steps_for(self, order: int) -> tuple[int, ...] | None:
        """The problem's fixed-step ladder for a method of ``order`` (None: it declares none)."""
        return ladder_for(self.steps, order)

    def loss_of(self, ys: torch.Tensor) -> torch.Tensor:
        """The problem's loss of a solution; by default the sum of squares of the solution at
        the output times (what a gradient case differentiates)."""
        return self.loss(ys) if self.loss is not None else sum_of_squares(ys)

    @property
    def dim(self) -> int:
        return int(self.y0.numel())


def doubling(first: int, rungs: int = 5) -> tuple[int, ...]:
    """A step-doubling ladder: ``first, 2 first, ..., 2**(rungs-1) first``."""
    return tuple(first << k for k in range(rungs))


def ladder_for(
    ladders: dict[int, tuple[int, ...]] | None, order: int
) -> tuple[int, ...] | None:
    """The ladder of ``ladders`` (by method order) for a method of ``order``: the entry of the
    largest order not above it, else the entry of the smallest order; None if there are none."""
    if not ladders:
        return None
    below = [k for k in ladders if k <= order]
    return tuple(ladders[max(below) if below else min(ladders)])


def sum_of_squares(ys: torch.Tensor) -> torch.Tensor:
    """The default loss: the sum of squares of the solution at every output time."""
    return (ys * ys).sum()
