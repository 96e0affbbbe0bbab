"""An example solver plugin: Heun's method, as a Butcher tableau and one registration.

Copy this file, put in your tableau, and run

    python -m harness run --plugin examples/plugins/heun_solver.py --solvers heun,rk4

Heun's method (the explicit trapezoidal rule) is second order. With the embedded Euler
solution it is also the Heun–Euler 2(1) pair, so the same tableau gives an adaptive solver:
``b_err = b - b_hat`` with ``b_hat = (1, 0)``. The RK engine (fixed-step and adaptive loops,
step-size control, dense output) is shared with the built-in solvers.
"""

from fractions import Fraction

from harness.registry import register_solver
from solvers.rk import RungeKutta
from solvers.tableaux import ButcherTableau

HEUN = ButcherTableau(
    name="heun",
    c=(0, 1),
    a=((), (1,)),
    b=(Fraction(1, 2), Fraction(1, 2)),
    order=2,
    b_err=(Fraction(-1, 2), Fraction(1, 2)),  # b - b_hat, b_hat = (1, 0): explicit Euler
    error_order=1,
)

register_solver("heun")(lambda: RungeKutta(HEUN, adaptive=False))
register_solver("heun-euler")(lambda: RungeKutta(HEUN, name="heun-euler", adaptive=True))
