"""The reference gradient a gradient case is measured against, and the error measure.

:func:`reference_gradient` differentiates a float64 DOPRI5 solve at a very tight tolerance
(``rtol = atol = 1e-12`` by default) in ``checkpoint`` mode: the exact gradient of a solution
that is itself within about the tolerance of the exact one, so its error is far below any
benchmarked setting's; checkpointing gives backprop's gradient (to round-off) with memory that
holds only the accepted states, which a tight tolerance makes many. The harness computes it once
per problem and caches it. A test checks it against central finite differences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from solvers.base import RHS, GradMode, Status
from solvers.gradients.api import odeint
from solvers.gradients.common import parameters_of
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5


@dataclass
class ReferenceGradient:
    """``dL/dy0`` and ``dL/dtheta`` (one tensor per parameter), with the loss and provenance."""

    y0: torch.Tensor
    params: tuple[torch.Tensor, ...]
    loss: float
    provenance: str
    nfe: int


def reference_gradient(
    f: RHS,
    y0: torch.Tensor,
    t: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    params: Sequence[torch.Tensor] | None = None,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    max_steps: int = 1_000_000,
) -> ReferenceGradient:
    """The gradient of ``loss_fn(ys)`` w.r.t. ``y0`` and ``params`` (default ``f``'s).

    Computed in float64: ``y0`` and ``t`` are cast, so ``f`` (and its parameters) must work in
    float64 (build the problem with ``dtype=torch.float64``). Raises ``RuntimeError`` if the
    reference solve does not reach the final time (a reference must not fail silently).
    """
    ps = parameters_of(f, params)
    for p in ps:
        if p.dtype != torch.float64:
            raise ValueError(
                f"the reference gradient runs in float64; a parameter of `f` is {p.dtype} "
                "(build the problem with dtype=torch.float64)"
            )
    y = y0.detach().to(torch.float64).requires_grad_(True)
    tt = t.detach().to(torch.float64)
    solver = RungeKutta(DOPRI5, name="dopri5", adaptive=True)
    gs = odeint(
        solver,
        f,
        y,
        tt,
        mode=GradMode.CHECKPOINT,
        params=ps,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )
    if gs.solution.status != Status.OK:
        raise RuntimeError(
            f"reference gradient: dopri5 at rtol={rtol:g}, atol={atol:g} ended with "
            f"{gs.solution.status.value}: {gs.solution.message}"
        )
    loss = loss_fn(gs.ys)
    grads = torch.autograd.grad(loss, (y, *ps), allow_unused=True)
    filled = [
        torch.zeros_like(x) if gr is None else gr for gr, x in zip(grads, (y, *ps), strict=True)
    ]
    return ReferenceGradient(
        y0=filled[0],
        params=tuple(filled[1:]),
        loss=float(loss.detach()),
        provenance=f"computed: dopri5 checkpoint gradient, float64, rtol={rtol:g}, atol={atol:g}",
        nfe=gs.solution.nfe + gs.backward.nfe,
    )


def grad_rel_err(grads: Sequence[torch.Tensor | None], reference: Sequence[torch.Tensor]) -> float:
    """``||g - g_ref|| / ||g_ref||`` over all the tensors together (2-norm, float64).

    ``grads`` and ``reference`` are in the same order, e.g. ``(dL/dy0, *dL/dtheta)``; a missing
    gradient (None) counts as zero. Returns ``inf`` when the reference is zero and ``g`` is not.
    """
    if len(grads) != len(reference):
        raise ValueError(f"{len(grads)} gradients against {len(reference)} reference tensors")
    num = den = 0.0
    for g, r in zip(grads, reference, strict=True):
        r64 = r.detach().to(torch.float64).cpu()
        g64 = torch.zeros_like(r64) if g is None else g.detach().to(torch.float64).cpu()
        num += float(((g64 - r64) ** 2).sum())
        den += float((r64**2).sum())
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return (num / den) ** 0.5
