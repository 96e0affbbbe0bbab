"""Fixed-step order of convergence of the Rosenbrock methods ``rodas4`` and ``ros3p``.

    python scripts/rosenbrock_order.py

The problem is Prothero-Robinson (``problems.stiff``), ``y' = lam (y - sin t) + cos t``,
``y(0) = 0``, exact solution ``sin t``, on t in [0, 1], integrated with N = 2^k uniform steps by
the solvers' own step (:class:`solvers.rosenbrock.RosenbrockStages`, driven here without the
adaptive loop). The measured order is the least-squares slope of ``log |y_N - sin 1|`` against
``log h`` over the steps range.

- **Non-stiff**, ``lam = -1`` (``|lam h| <= 1/8``): the classical order shows (4 for RODAS,
  3 for ROS3P). Prothero-Robinson is non-autonomous, so this exercises the methods' ``df/dt``
  terms too, which the repo's autonomous ``linear`` problem would not.
- **Stiff**, ``lam = -1e6`` (``|lam h| >= 2000``): order reduction (A. Prothero, A. Robinson,
  Math. Comp. 28 (1974) 145-162). The error is far below the non-stiff one (it is of the form
  ``C h^q / |lam|``: ten times ``|lam|``, a tenth of the error) but falls more slowly with h:
  ``q`` is what the table reports for this regime.

The main table uses the exact ``df/dt``: the problem is solved in autonomous form,
``z = (y, tau)``, ``tau' = 1``, whose Jacobian (by autograd) carries ``df/dt``; for a Rosenbrock
method that is the same as the non-autonomous step with the exact ``f_t``. The second table
solves the non-autonomous form as the solvers do, with their forward-difference ``df/dt``
(``delta = sqrt(eps max(1e-5, |t|))``, as rodas.f): in the non-stiff regime its error puts a
floor near 1e-13 under RODAS's error, which bends the fitted slope over the same range.
The whole run takes about ten seconds on a CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from problems.stiff import PR_LAMBDA, PR_LAMBDA_MILD, ProtheroRobinsonField
from solvers.rosenbrock import RosenbrockStages
from solvers.rosenbrock_tableaux import RODAS4, ROS3P, RosenbrockTableau

T_END = 1.0


def _autonomous_field(lam: float):
    """``z = (y, tau)``: ``(lam (y - sin tau) + cos tau, 1)``, for the exact ``df/dt``."""
    pr = ProtheroRobinsonField(lam)

    def f(t, z: torch.Tensor) -> torch.Tensor:
        return torch.cat((pr(z[..., 1:2], z[..., 0:1]), torch.ones_like(z[..., 1:2])), dim=-1)

    return f


def fixed_step_error(tab: RosenbrockTableau, lam: float, n_steps: int, *,
                     exact_ft: bool = True, t_end: float = T_END) -> float:
    """``|y_N - sin(t_end)|`` after ``n_steps`` uniform steps of ``tab`` on Prothero-Robinson
    with ``lam``, from ``y(0) = 0``. ``exact_ft``: in autonomous form (the exact ``df/dt``), else
    the non-autonomous form with the engine's forward-difference ``df/dt``."""
    if exact_ft:
        f, d, autonomous = _autonomous_field(lam), 2, True
    else:
        f, d, autonomous = ProtheroRobinsonField(lam), 1, False
    shape = torch.Size([d])
    y = torch.zeros(1, d, dtype=torch.float64)  # y(0) = sin(0) = 0 (and tau(0) = 0)

    def fv(t: float, row: torch.Tensor) -> torch.Tensor:
        return f(t, row.view(shape)).reshape(1, -1)

    eng = RosenbrockStages(tab, fv, f, shape, (1, d), jac=None, autonomous=autonomous, like=y)
    h = t_end / n_steps
    with torch.no_grad():
        for n in range(n_steps):
            t = n * h
            k1 = eng.first(t, y)
            y = eng.step(t, y, k1, h)
    return abs(float(y[0, 0]) - math.sin(t_end))


def fitted_order(n_steps: Sequence[int], errors: Sequence[float],
                 t_end: float = T_END) -> float:
    """The least-squares slope of ``log(error)`` against ``log(h)``, ``h = t_end / N``."""
    log_h = np.log(t_end / np.asarray(n_steps, dtype=np.float64))
    log_e = np.log(np.asarray(errors, dtype=np.float64))
    return float(np.polyfit(log_h, log_e, 1)[0])


def measure_order(tab: RosenbrockTableau, lam: float, n_steps: Sequence[int], *,
                  exact_ft: bool = True) -> tuple[float, list[float]]:
    """``(fitted order, errors)`` of ``tab`` on Prothero-Robinson with ``lam`` over ``n_steps``."""
    errors = [fixed_step_error(tab, lam, n, exact_ft=exact_ft) for n in n_steps]
    return fitted_order(n_steps, errors), errors


def ladder(first: int, last: int) -> tuple[int, ...]:
    return tuple(2**k for k in range(int(math.log2(first)), int(math.log2(last)) + 1))


@dataclass(frozen=True)
class Run:
    tab: RosenbrockTableau
    regime: str
    lam: float
    n_steps: tuple[int, ...]


# Steps ranges inside the asymptotic range (measured): RODAS non-stiff errs 1.0e-7 at 8 steps
# and 9e-14 at 256 (6e-15 at 512 is near the floor); ROS3P non-stiff 1.1e-5 at 16, 3.6e-10 at
# 512; stiff, below 16 steps both are pre-asymptotic (ROS3P's error even grows from 2 to 4).
RUNS = (
    Run(RODAS4, "non-stiff", PR_LAMBDA_MILD, ladder(8, 256)),
    Run(ROS3P, "non-stiff", PR_LAMBDA_MILD, ladder(16, 512)),
    Run(RODAS4, "stiff", PR_LAMBDA, ladder(16, 512)),
    Run(ROS3P, "stiff", PR_LAMBDA, ladder(16, 512)),
)


def _steps(ns: Sequence[int]) -> str:
    return f"{ns[0]}..{ns[-1]}"


def _lam_h(lam: float, ns: Sequence[int]) -> str:
    a, b = abs(lam) * T_END / ns[-1], abs(lam) * T_END / ns[0]
    return f"{a:.3g}..{b:.3g}"


def main() -> None:
    start = time.perf_counter()
    print("Prothero-Robinson y' = lam (y - sin t) + cos t on [0, 1], N uniform steps; "
          "order = least-squares slope of log|y_N - sin 1| vs log h\n")
    print("exact df/dt (autonomous form):\n")
    print("| method | regime | lam | abs(lam h) | steps | measured order | method's order |")
    print("|---|---|---|---|---|---|---|")
    details = []
    for run in RUNS:
        order, errs = measure_order(run.tab, run.lam, run.n_steps)
        details.append((run, "exact", errs))
        print(f"| {run.tab.name} | {run.regime} | {run.lam:g} | {_lam_h(run.lam, run.n_steps)} "
              f"| {_steps(run.n_steps)} | {order:.2f} | {run.tab.order} |")
    print("\nthe solvers' forward-difference df/dt (non-autonomous form), same ranges:\n")
    print("| method | regime | lam | steps | measured order | method's order |")
    print("|---|---|---|---|---|---|")
    for run in RUNS:
        order, errs = measure_order(run.tab, run.lam, run.n_steps, exact_ft=False)
        details.append((run, "forward difference", errs))
        print(f"| {run.tab.name} | {run.regime} | {run.lam:g} | {_steps(run.n_steps)} "
              f"| {order:.2f} | {run.tab.order} |")
    print("\nerrors |y_N - sin 1| by N:\n")
    for run, ft, errs in details:
        cells = "  ".join(f"{n}: {e:.2e}" for n, e in zip(run.n_steps, errs, strict=True))
        print(f"- {run.tab.name}, {run.regime}, df/dt {ft}: {cells}")
    print(f"\n({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
