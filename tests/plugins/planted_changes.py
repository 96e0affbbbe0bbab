"""Solvers with a change planted behind an environment variable, for the compare tests.

Each is classical RK4 at a fixed step that sleeps 30 ms per solve, so that its wall time (a
few steps of work beside the sleep) is steady on a busy machine. With ``ODEBENCH_PLANT=1`` in
the environment (the second fixture run) each changes in one way:

- ``plant-steady``: nothing changes (the control);
- ``plant-slow``: sleeps 30 ms more per solve, twice as long (a time regression);
- ``plant-extra-f``: calls ``f`` once more per solve (NFE up by one, same answer);
- ``plant-breaks``: returns status ``error`` (a newly failing case);
- ``plant-mends``: returns status ``error`` unless the variable is set (a fixed case).

Load with ``--plugin tests/plugins/planted_changes.py``.
"""

from __future__ import annotations

import dataclasses
import os
import time

import torch

from harness.registry import register_solver
from solvers.base import Solution, Status
from solvers.rk import RungeKutta
from solvers.tableaux import RK4

BASE_SLEEP_S = 0.03
EXTRA_SLEEP_S = 0.03


def planted() -> bool:
    """Whether this process runs with the planted changes on."""
    return os.environ.get("ODEBENCH_PLANT") == "1"


class Planted(RungeKutta):
    def __init__(self, name: str, change: str) -> None:
        super().__init__(RK4, name=name, adaptive=False)
        self.change = change

    def solve(self, f, y0, t, **options) -> Solution:
        on = planted()
        time.sleep(BASE_SLEEP_S + (EXTRA_SLEEP_S if on and self.change == "slow" else 0.0))
        fails = (on and self.change == "breaks") or (not on and self.change == "mends")
        if fails:
            ys = torch.full((len(t), *y0.shape), float("nan"), dtype=y0.dtype, device=y0.device)
            ys[0] = y0
            return Solution(ys=ys, status=Status.ERROR, message="planted failure",
                            t_reached=float(t[0]))
        extra = 0
        if on and self.change == "extra-f":
            f(t[0], y0)
            extra = 1
        sol = super().solve(f, y0, t, **options)
        return dataclasses.replace(sol, nfe=sol.nfe + extra)


def _register(change: str) -> None:
    name = f"plant-{change}"
    register_solver(name)(lambda: Planted(name, change))


for _change in ("steady", "slow", "extra-f", "breaks", "mends"):
    _register(_change)
