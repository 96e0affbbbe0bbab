"""Gradient modes, orthogonal to solvers: backprop, adjoint, adjoint-seminorm, checkpoint.

- :func:`odeint`: a differentiable solve in any mode (:mod:`.api`);
- :func:`check_mode`: refuse a mode a solver cannot do, before the run, naming the
  capabilities it lacks; :func:`supported_modes`: the modes it can do (:mod:`.common`);
- :func:`reference_gradient`, :func:`grad_rel_err`: the gradient to measure against
  (:mod:`.reference`).
"""

from solvers.gradients.api import odeint
from solvers.gradients.common import BackwardStats, GradSolve, check_mode, supported_modes
from solvers.gradients.reference import ReferenceGradient, grad_rel_err, reference_gradient

__all__ = [
    "BackwardStats",
    "GradSolve",
    "ReferenceGradient",
    "check_mode",
    "grad_rel_err",
    "odeint",
    "reference_gradient",
    "supported_modes",
]
