"""Solvers that misbehave the ways a plugin can: each kills, stops or hangs its process
(``sleep`` just takes its time).

Used by the isolation tests. The hog is bounded (it stops at 8 GiB even without a limit) so
that a test machine stays safe; the tests run it under ``--case-memory``.
"""

import ctypes
import os
import sys
import time

import torch

from harness.registry import register_solver
from solvers.base import Solution, Solver


class Misbehaving(Solver):
    adaptive = False
    order = 1
    kind = "test plugin"

    def __init__(self, how: str) -> None:
        self.name = how
        self.how = how

    def solve(self, f, y0, t, *, rtol=None, atol=None, n_steps=None, max_steps=None):
        if self.how == "segfault":
            ctypes.string_at(0)
        elif self.how == "os-exit":
            os._exit(1)
        elif self.how == "sys-exit":
            sys.exit(3)
        elif self.how == "deadlock":
            # A normal pthread mutex locked twice by one thread: stuck inside one C call,
            # which no Python signal handler can interrupt (ctypes releases the GIL).
            libc = ctypes.CDLL(None)
            mutex = ctypes.create_string_buffer(64)  # PTHREAD_MUTEX_INITIALIZER is all zeros
            libc.pthread_mutex_lock(mutex)
            libc.pthread_mutex_lock(mutex)
        elif self.how == "sleep":  # as long as the environment says (default 30 s)
            time.sleep(float(os.environ.get("ODEBENCH_TEST_SLEEP", "30")))
        elif self.how == "swallow":  # a solver whose own `except` eats Ctrl-C
            try:
                time.sleep(float(os.environ.get("ODEBENCH_TEST_SLEEP", "30")))
            except BaseException:
                pass
        elif self.how == "hog":
            held = []
            for _ in range(160):  # 50 MiB at a time, 8 GiB at most
                held.append(bytearray(50 * 2**20))
        ys = y0.expand(len(t), *y0.shape).clone()
        return Solution(ys=ys, n_steps=0, n_accepted=0, n_rejected=0, nfe=0,
                        t_reached=float(t[-1]))


for _how in ("segfault", "os-exit", "sys-exit", "deadlock", "hog", "sleep", "swallow"):
    register_solver(_how)(lambda how=_how: Misbehaving(how))

del torch
