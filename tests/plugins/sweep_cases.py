"""Solvers for the executor tests: ``nap`` is rk4 that first takes a nap (so that a sweep is
still running when a test kills a worker), ``die`` kills its own process with SIGKILL."""

from __future__ import annotations

import os
import signal
import time

from harness.registry import register_solver
from solvers.rk import RungeKutta
from solvers.tableaux import RK4

NAP_S = 0.4


class Nap(RungeKutta):
    def __init__(self) -> None:
        super().__init__(RK4, name="nap", adaptive=False)
        self._napped = False

    def solve(self, *args, **kwargs):
        if not self._napped:  # once per case: the timed repeats run at rk4's speed
            self._napped = True
            time.sleep(NAP_S)
        return super().solve(*args, **kwargs)


class Die(RungeKutta):
    def __init__(self) -> None:
        super().__init__(RK4, name="die", adaptive=False)

    def solve(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


register_solver("nap")(Nap)
register_solver("die")(Die)
