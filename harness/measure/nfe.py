"""Counting function evaluations independently of the solver's own count.

The harness hands the solver a wrapped right-hand side; every call goes through the wrapper, so
the count holds whatever the solver claims (the way scipy's ``OdeSolver`` wraps ``fun`` to count
``nfev``). One call counts once, whatever the batch size.

The wrapper is also where a case run in the harness's own process meets its time budget: each
call checks the deadline first and raises :class:`CaseTimeout` from here, the way an ``f`` that
raises would, so the budget never interrupts a solver at an arbitrary point of its own code (a
SIGALRM can land inside a C extension and corrupt it). A solver stuck in a C call that never
calls ``f`` is out of its reach: run such cases in a worker process (``--isolate``), whose
parent kills it at the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class CaseTimeout(BaseException):
    """A case ran past its time budget (a BaseException, so that a solver's own ``except
    Exception`` cannot swallow it)."""


def budget_message(seconds: float | None, killed: bool = False) -> str:
    """The message of a case that ran past its time budget."""
    text = f"the case ran past its time budget of {seconds:g} s"
    return text + ("; its worker process was killed" if killed else "")


class Deadline:
    """A point in ``time.monotonic()`` after which a case stops; ``expired`` records that it
    fired, whatever the exception became on its way out (autograd may wrap it)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds if seconds and seconds > 0 else None
        self.expired = False

    def check(self) -> None:
        if self.at is not None and time.monotonic() > self.at:
            self.expired = True
            raise CaseTimeout(budget_message(self.seconds))


class CountingRHS:
    """Wraps ``f(t, y)`` and counts its calls. ``reset()`` before each measured solve."""

    def __init__(self, f: Callable[..., Any], deadline: Deadline | None = None) -> None:
        self.f = f
        self.calls = 0
        self.deadline = deadline

    def __call__(self, t: Any, y: Any) -> Any:
        if self.deadline is not None:
            self.deadline.check()
        self.calls += 1
        return self.f(t, y)

    def reset(self) -> None:
        self.calls = 0

    def parameters(self):
        """The wrapped field's parameters (empty for a plain function)."""
        params = getattr(self.f, "parameters", None)
        return params() if callable(params) else iter(())
