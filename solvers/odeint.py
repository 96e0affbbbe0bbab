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
- ``options`` takes ``step_size`` (fixed-step methods), and for adaptive ones
  ``max_num_steps``, ``first_step``, ``min_step``, ``max_step`` (bounds on the step size; a
  step rejected at ``min_step`` stops the solve), torchdiffeq's controller settings ``safety``,
  ``ifactor`` and ``dfactor`` (Hairer's ``safe``, ``fac2``, ``fac1``), and ``controller``
  (``"hairer"``, the default, or ``"pid"``: :mod:`solvers.controllers`); others
  (``grid_constructor``, ``perturb``, ``norm``, ``step_t``, ``jump_t``, ...) are refused.
- ``func``'s step callbacks, as torchdiffeq calls them: ``func.callback_step(t0, y0, dt)``
  before each attempted step, ``func.callback_accept_step(t0, y0, dt)`` or
  ``func.callback_reject_step(t0, y0, dt)`` after it (``t0``, ``dt`` as 0-dim tensors), in the
  forward solve; the adjoint's backward callbacks (``callback_step_adjoint`` ...) are not
  called.
- A solve that does not reach the end raises ``RuntimeError`` with the solver's status and
  message (torchdiffeq raises on ``max_num_steps`` and on an underflowing step too).
- Tuple states, ``event_fn`` and complex dtypes are not supported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from harness import registry
from solvers.base import Capability, Solver, Status
from solvers.controllers import Controller, HairerController, make_controller
from solvers.gradients import odeint as _odeint
from solvers.gradients.common import parameters_of

DEFAULT_METHOD = "dopri5"
_FIXED_OPTIONS = ("step_size",)
_ADAPTIVE_OPTIONS = ("max_num_steps", "first_step", "min_step", "max_step", "safety",
                     "ifactor", "dfactor", "controller")
_OPTIONS = _FIXED_OPTIONS + _ADAPTIVE_OPTIONS
# torchdiffeq's names for Hairer's controller settings
_HAIRER = {"safety": "safe", "ifactor": "fac2", "dfactor": "fac1"}
_BOUNDS = {"first_step": "first_step", "min_step": "hmin", "max_step": "hmax"}


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
        controller = _controller(solver, opts)
        if controller is not None:
            kwargs["controller"] = controller
    else:
        wrong = sorted(set(opts) & set(_ADAPTIVE_OPTIONS))
        if wrong:
            raise ValueError(f"options {', '.join(map(repr, wrong))} are for adaptive methods; "
                             f"{solver.name} takes fixed steps (options: step_size)")
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

    callback = _Callbacks.of(func, dtype, device)
    if callback is not None:
        if Capability.CALLBACK not in solver.capabilities:
            raise ValueError(f"{solver.name} calls no step callbacks; func has "
                             f"{', '.join(callback.names)}")
        kwargs["callback"] = callback
    params = parameters_of(func, params)  # func's, not those of the wrapper f
    gs = _odeint(solver, f, y0, t, mode=mode, params=params, **kwargs, **adjoint)
    status = Status(gs.solution.status)
    if status is not Status.OK:
        raise RuntimeError(f"{solver.name}: the solve stopped at t = {gs.solution.t_reached:g} "
                           f"({status}): {gs.solution.message}")
    return gs.ys


def _controller(solver: Solver, opts: dict[str, Any]) -> Controller | None:
    """The step-size controller the options ask for (None: the solver's own default)."""
    settings = {k: opts[k] for k in (*_HAIRER, *_BOUNDS) if opts.get(k) is not None}
    name = opts.get("controller")
    if name is None and not settings:
        return None
    if Capability.CONTROLLER not in solver.capabilities:
        raise ValueError(f"{solver.name} has its own step-size control; options "
                         f"{', '.join(map(repr, sorted(settings)))} are for our solvers")
    ctrl = make_controller(name, default=solver.controllers[0])
    changes = {_BOUNDS[k]: float(v) for k, v in settings.items() if k in _BOUNDS}
    hairer = {_HAIRER[k]: float(v) for k, v in settings.items() if k in _HAIRER}
    if hairer and not isinstance(ctrl, HairerController):
        given = sorted(k for k in settings if k in _HAIRER)
        raise ValueError(f"options {', '.join(map(repr, given))} set Hairer's "
                         f"controller; controller={name!r} does not take them")
    return dataclasses.replace(ctrl, **changes, **hairer)


class _Callbacks:
    """``func``'s torchdiffeq step callbacks as the engine's callback object."""

    NAMES = {"step": "callback_step", "accept": "callback_accept_step",
             "reject": "callback_reject_step"}

    def __init__(self, func, dtype, device) -> None:
        self.dtype, self.device = dtype, device
        self.calls = {k: getattr(func, n) for k, n in self.NAMES.items()
                      if callable(getattr(func, n, None))}
        self.names = [self.NAMES[k] for k in self.calls]

    @classmethod
    def of(cls, func, dtype, device) -> _Callbacks | None:
        cb = cls(func, dtype, device)
        return cb if cb.calls else None

    def _call(self, kind: str, t: float, y: torch.Tensor, h: float) -> None:
        fn = self.calls.get(kind)
        if fn is not None:
            def scalar(x: float) -> torch.Tensor:
                return torch.tensor(x, dtype=self.dtype, device=self.device)

            fn(scalar(t), y, scalar(h))

    def step(self, t, y, h) -> None:
        self._call("step", t, y, h)

    def accept(self, t, y, h) -> None:
        self._call("accept", t, y, h)

    def reject(self, t, y, h) -> None:
        self._call("reject", t, y, h)


__all__ = ["odeint", "odeint_adjoint"]
