"""Gradients of a stiff inverse problem: ROBER's rate constants, by every gradient mode of
rodas4, against finite differences of a tight scipy solve.

ROBER (``y1' = -k1 y1 + k3 y2 y3``, ``y2' = k1 y1 - k3 y2 y3 - k2 y2^2``, ``y3' = k2 y2^2``)
with learnable ``log k = log (0.04, 3e7, 1e4)``, from (1, 0, 0), outputs at t = 0.1, 1, 10,
40; the loss ``100 sum y1 y3 + 1e4 sum y2`` over the outputs. The reference gradient is
the central difference (step 1e-5 in log k) of scipy Radau solves at rtol 1e-12, atol 1e-16
with the analytic Jacobian. Each mode of ``solvers.gradients.api.odeint`` runs rodas4 at
rtol 1e-8, atol 1e-12 (the backward solves too, max_steps 5000), and the script prints the
largest relative error of its gradient, the forward and backward NFE, the backward pass's
status and the wall time.

What it shows: backprop (through the steps, the Jacobian recorded) and checkpoint (the
accepted steps replayed) agree with the finite differences to about 1e-9; the backsolve adjoint
does not reach the start: solving ROBER's state backwards in time turns its fast decaying
modes into growing ones, so the backward solve fails (``nonfinite`` or ``max_steps``) and the
gradient is NaN. Run ``python scripts/rober_gradients.py`` (about a minute).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from problems.stiff import (
    ROBER_RATES_T,
    RobertsonRatesField,
    robertson_rates_gradient,
    robertson_rates_loss,
)
from solvers.builtin import rodas4
from solvers.gradients.api import odeint

F64 = torch.float64


def main() -> None:
    want = robertson_rates_gradient()
    print("finite differences d loss / d log k:", ", ".join(f"{x:.10g}" for x in want))
    print("\n| mode | max rel. error | forward NFE | backward NFE | backward | s |")
    print("|---|---|---|---|---|---|")
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.tensor(ROBER_RATES_T, dtype=F64)
    for mode in ("backprop", "checkpoint", "adjoint", "adjoint-seminorm"):
        f = RobertsonRatesField()
        t0 = time.perf_counter()
        gs = odeint(rodas4(), f, y0, t, mode=mode, rtol=1e-8, atol=1e-12, max_steps=5000)
        (g,) = torch.autograd.grad(robertson_rates_loss(gs.ys), f.log_k)
        wall = time.perf_counter() - t0
        err = float(np.max(np.abs(g.numpy() - want) / np.abs(want)))
        print(f"| {mode} | {err:.1e} | {gs.solution.nfe} | {gs.backward.nfe} | "
              f"{gs.backward.status} | {wall:.1f} |")


if __name__ == "__main__":
    main()
