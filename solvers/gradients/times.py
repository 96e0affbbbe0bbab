"""Gradients w.r.t. the output times for the modes that differentiate the discrete solve.

The RK engine reads ``t`` as Python floats (the step grid and the controller are detached), so
``backprop`` and ``checkpoint`` get the time gradient from the flow, as the adjoint does
(Chen et al., "Neural ordinary differential equations", NeurIPS 2018, Algorithm 1 and its
``dL/dt`` terms):

- an output ``y(t_i)``, ``i >= 1``, moves with ``t_i`` at the rate ``f(t_i, y(t_i))``, so
  ``dL/dt_i = <dL/dy(t_i), f(t_i, y(t_i))>``;
- moving the start ``t_0`` with ``y0`` fixed shifts the whole trajectory:
  ``d y(t)/d t_0 = -Phi(t, t_0) f(t_0, y0)``, so ``dL/dt_0 = -<a(t_0), f(t_0, y0)>`` with
  ``a(t_0)`` the gradient w.r.t. ``y0`` through the solve (``ys[0] = y0`` itself does not move).

Each costs one call of ``f`` in the backward pass (``len(t) + 1`` in all), and only when ``t``
requires grad. The values are exact for the exact flow and as accurate as the solve otherwise.
"""

from __future__ import annotations

import torch

from solvers.base import RHS


class _OutputTimes(torch.autograd.Function):
    """Identity on ``ys``; its backward adds ``<g_i, f(t_i, ys_i)>`` to ``dL/dt_i``, and for
    ``i = 0`` cancels the part of ``_StartTime``'s term that ``ys[0] = y0`` contributes."""

    @staticmethod
    def forward(ctx, f: RHS, t: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        ctx.f = f
        ctx.save_for_backward(t, ys)
        return ys.view_as(ys)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        t, ys = ctx.saved_tensors
        times = t.tolist()
        grad_t = torch.zeros_like(t)
        for i, ti in enumerate(times):
            if i == 0 and not bool(g[0].any()):
                continue
            fi = ctx.f(ti, ys[i])
            grad_t[i] = (g[i] * fi).sum()
        return None, grad_t, g


class _StartTime(torch.autograd.Function):
    """Identity on ``y0``; its backward gives ``dL/dt_0 = -<a(t_0), f(t_0, y0)>``."""

    @staticmethod
    def forward(ctx, f: RHS, t: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        ctx.f = f
        ctx.save_for_backward(t, y0)
        return y0.view_as(y0)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        t, y0 = ctx.saved_tensors
        grad_t = torch.zeros_like(t)
        grad_t[0] = -(g * ctx.f(float(t[0]), y0)).sum()
        return None, grad_t, g


def start(f: RHS, t: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """``y0`` routed through the start-time gradient (identity when ``t`` needs no grad)."""
    if not (t.requires_grad and torch.is_grad_enabled()):
        return y0
    return _StartTime.apply(f, t, y0)


def outputs(f: RHS, t: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """``ys`` routed through the output-time gradients (identity when ``t`` needs no grad)."""
    if not (t.requires_grad and torch.is_grad_enabled()):
        return ys
    return _OutputTimes.apply(f, t, ys)
