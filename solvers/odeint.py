"""A torchdiffeq-style front door to our solvers: change one import and keep the call.

::

    from solvers.odeint import odeint, odeint_adjoint   # was: from torchdiffeq import ...

    ys = odeint(func, y0, t, rtol=1e-7, atol=1e-9, method="dopri5")
    ys = odeint_adjoint(func, y0, t, adjoint_rtol=1e-5)

Same signature and semantics as ``torchdiffeq.odeint`` / ``odeint_adjoint`` (torchdiffeq 0.2.5):
``func(t, y)`` gets ``t`` as a 0-dim tensor of ``y0``'s dtype and device; ``t`` is a 1-D
tensor of output times, increasing or decreasing, of any length (length 1 returns ``y0``); the
result is ``[len(t), *y0.shape]``, differentiable w.r.t. ``y0``, ``func``'s parameters and
``t``; the defaults are ``rtol=1e-7``, ``atol=1e-9``, ``method="dopri5"``. ``odeint``
backpropagates through the solver; ``odeint_adjoint`` uses the continuous adjoint
(``adjoint_options=dict(norm="seminorm")`` for the seminorm adjoint), with its own
``adjoint_rtol``/``adjoint_atol`` where given.

What differs (refused with a message, never ignored silently):

- ``method`` is one of our solvers by registered name (``dopri5``, ``rk4``, ``euler``, a
  plugin's). ``rk4`` is the classical RK4 (torchdiffeq's ``rk4`` is the 3/8 rule), and a
  fixed-step solver takes uniform steps: ``options=dict(step_size=h)`` becomes
  ``ceil(|t_N - t_0| / h)`` steps over the whole span, not a grid through every output time.
- ``options`` takes ``step_size`` (fixed-step methods) and ``max_num_steps`` (adaptive); others
  (``first_step``, ``grid_constructor``, ``perturb``, ``norm``, ...) are refused.
- A solve that does not reach the end raises ``RuntimeError`` with the solver's status and
  message (torchdiffeq raises on ``max_num_steps`` and on an underflowing step too).
- Tuple states, ``event_fn`` and complex dtypes are not supported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from harness import registry
from solvers.base import Solver, Status
from solvers.gradients import odeint as _odeint
from solvers.gradients.common import parameters_of

DEFAULT_METHOD = "dopri5"
_OPTIONS = ("step_size", "max_num_steps")


def odeint(
    func: Callable,
    y0: torch.Tensor,
    t: torch.Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
) -> torch.Tensor:
    """The solution at ``t``, differentiable by backpropagation through the solver."""
    return _front(func, y0, t, rtol, atol, method, options, event_fn, mode="backprop")


def odeint_adjoint(
    func: Callable,
    y0: torch.Tensor,
    t: torch.Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict[str, Any] | None = None,
    adjoint_params: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The solution at ``t``, differentiable by the continuous adjoint (constant memory in the
    steps). ``func`` must be an ``nn.Module`` unless ``adjoint_params`` names the tensors."""
    if adjoint_params is None and not isinstance(func, torch.nn.Module):
        raise ValueError("odeint_adjoint: func must be an nn.Module, or pass adjoint_params "
                         "(the tensors to differentiate)")
    if adjoint_method is not None and adjoint_method != (method or DEFAULT_METHOD):
        raise ValueError("odeint_adjoint: adjoint_method must be the forward method here (the "
                         "backward pass solves with the same solver)")
    norm = (adjoint_options or {}).get("norm")
    unknown = sorted(set(adjoint_options or {}) - {"norm"})
    if unknown or norm not in (None, "seminorm"):
        raise ValueError(f"odeint_adjoint: adjoint_options {adjoint_options!r} not supported; "
                         "only norm='seminorm'")
    mode = "adjoint-seminorm" if norm == "seminorm" else "adjoint"
    return _front(func, y0, t, rtol, atol, method, options, event_fn, mode=mode,
                  params=adjoint_params,
                  adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol)


def _solver(method: str | None) -> Solver:
    name = method or DEFAULT_METHOD
    if name not in registry.SOLVERS:
        from harness import plugins

        plugins.load_defaults()
    if name not in registry.SOLVERS:
        raise ValueError(registry.unknown_message("method", [name], registry.SOLVERS.names()))
    return registry.make_solver(name)


def _front(func, y0, t, rtol, atol, method, options, event_fn, *, mode: str,
           params: Sequence[torch.Tensor] | None = None, **adjoint: Any) -> torch.Tensor:
    if event_fn is not None:
        raise ValueError("event_fn is not supported by this odeint (no event handling)")
    if not isinstance(y0, torch.Tensor):
        raise TypeError("y0 must be one tensor (tuple states are not supported: concatenate "
                        "them into one)")
    if y0.is_complex():
        raise TypeError("complex y0 is not supported (solve real and imaginary parts as one "
                        "real state)")
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or len(t) == 0:
        raise ValueError("t must be a 1-D tensor of output times")
    solver = _solver(method)
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"options {', '.join(map(repr, unknown))} not supported by "
                         f"{solver.name}; supported: {', '.join(_OPTIONS)}")
    if len(t) == 1:  # nothing to solve: the solution at t0 is y0
        return y0.unsqueeze(0) + 0 * t.sum()
    kwargs: dict[str, Any] = {}
    if solver.adaptive:
        if "step_size" in opts:
            raise ValueError(f"option 'step_size' is for fixed-step methods; {solver.name} is "
                             "adaptive")
        kwargs.update(rtol=rtol, atol=atol, max_steps=opts.get("max_num_steps"))
    else:
        step = opts.get("step_size")
        if step is None:
            raise ValueError(f"method {solver.name!r} takes fixed steps: give "
                             "options=dict(step_size=h)")
        span = abs(float(t[-1]) - float(t[0]))
        kwargs["n_steps"] = max(1, math.ceil(span / float(step) - 1e-9))
    dtype, device = y0.dtype, y0.device

    def f(tt, yy):  # t as a tensor, as torchdiffeq passes it
        return func(tt if isinstance(tt, torch.Tensor) else
                    torch.tensor(tt, dtype=dtype, device=device), yy)

    params = parameters_of(func, params)  # func's, not those of the wrapper f
    gs = _odeint(solver, f, y0, t, mode=mode, params=params, **kwargs, **adjoint)
    status = Status(gs.solution.status)
    if status is not Status.OK:
        raise RuntimeError(f"{solver.name}: the solve stopped at t = {gs.solution.t_reached:g} "
                           f"({status}): {gs.solution.message}")
    return gs.ys


__all__ = ["odeint", "odeint_adjoint"]
