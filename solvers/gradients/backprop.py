"""``backprop``: autograd records the solver's operations; the gradient replays them backwards.

This is "discretise-then-optimise": the exact gradient of the *discrete* solution that was
computed (up to round-off), at the cost of keeping every stage of every attempted step for the
backward pass, so memory grows linearly with the number of steps (Chen et al., "Neural ordinary
differential equations", NeurIPS 2018, section 2; Gholami, Keutzer, Biros, "ANODE", IJCAI 2019).

Step-size decisions are detached: the controller works on Python floats, so the step sizes
``h_n`` are constants to autograd. torchdiffeq instead differentiates through the step-size
computation (its ``h`` is a tensor built from the error estimate). We detach because (i) the
accepted step grid is a piecewise-constant function of the inputs (accept/reject is a
discontinuous decision), so its derivative is a partial artefact of the controller that
converges to zero with the tolerance and is not part of the ODE's gradient; (ii) the adjoint
and checkpoint modes cannot see it either, so detaching makes all three modes estimate the same
quantity, the derivative of the solution along a fixed step grid; (iii) it keeps the controller
off the autograd graph and free of host-device syncs per step in the backward pass.
"""

from __future__ import annotations

import torch

from solvers.base import Solution
from solvers.gradients import times
from solvers.gradients.common import Run


def solve(run: Run, y0: torch.Tensor) -> tuple[torch.Tensor, Solution]:
    """The recorded solve; ``t``'s gradient comes from :mod:`solvers.gradients.times`."""
    y_in = times.start(run.f, run.t, y0)
    sol = run.solve(run.f, y_in, run.t)
    return times.outputs(run.f, run.t, sol.ys), sol
