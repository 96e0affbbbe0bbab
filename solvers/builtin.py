"""The built-in solvers and their registrations (imported by the harness at discovery).

Each explicit RK method here is a tableau plus one registration; a plugin adds its own the
same way::

    from harness.registry import register_solver
    from solvers.rk import RungeKutta
    from solvers.tableaux import HEUN

    register_solver("heun")(lambda: RungeKutta(HEUN, name="heun", adaptive=False))
"""

from __future__ import annotations

from harness.registry import register_solver
from solvers.resnet import EulerResNetSolver
from solvers.rk import RungeKutta
from solvers.rosenbrock import Rosenbrock
from solvers.rosenbrock_tableaux import RODAS4, ROS3P
from solvers.scipy_ref import ScipyReference
from solvers.tableaux import DOPRI5, RK4

register_solver("euler")(EulerResNetSolver)


@register_solver("rk4")
def rk4() -> RungeKutta:
    """The classical 4th-order method, fixed step, cubic Hermite dense output."""
    return RungeKutta(RK4, name="rk4", adaptive=False)


@register_solver("dopri5")
def dopri5() -> RungeKutta:
    """Dormand–Prince 5(4) with Hairer's DOPRI5 controller and 4th-order dense output."""
    return RungeKutta(DOPRI5, name="dopri5", adaptive=True)


@register_solver("dopri5-pt")
def dopri5_per_trajectory() -> RungeKutta:
    """dopri5 with a step size per trajectory of a batch (each takes the steps it would alone)."""
    return RungeKutta(DOPRI5, name="dopri5-pt", adaptive=True, per_trajectory=True)


@register_solver("rodas4")
def rodas4() -> Rosenbrock:
    """Hairer & Wanner's RODAS: Rosenbrock 4(3), 6 stages, L-stable, stiffly accurate."""
    return Rosenbrock(RODAS4)


@register_solver("ros3p")
def ros3p() -> Rosenbrock:
    """Lang & Verwer's ROS3P: Rosenbrock 3(2), 3 stages, A-stable, for moderate tolerances."""
    return Rosenbrock(ROS3P)


def _scipy(method: str) -> None:
    register_solver(f"scipy-{method.lower()}")(lambda: ScipyReference(method))


for _method in ("RK45", "DOP853", "Radau", "BDF", "LSODA"):
    _scipy(_method)
