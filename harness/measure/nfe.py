"""Counting function evaluations independently of the solver's own count.

The harness hands the solver a wrapped right-hand side; every call goes through the wrapper, so
the count holds whatever the solver claims (the way scipy's ``OdeSolver`` wraps ``fun`` to count
``nfev``). One call counts once, whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CountingRHS:
    """Wraps ``f(t, y)`` and counts its calls. ``reset()`` before each measured solve."""

    def __init__(self, f: Callable[..., Any]) -> None:
        self.f = f
        self.calls = 0

    def __call__(self, t: Any, y: Any) -> Any:
        self.calls += 1
        return self.f(t, y)

    def reset(self) -> None:
        self.calls = 0

    def parameters(self):
        """The wrapped field's parameters (empty for a plain function)."""
        params = getattr(self.f, "parameters", None)
        return params() if callable(params) else iter(())
