"""HTML reports built from run folders (reads results only).

Public API: :func:`reports.build.build_report` (also importable as ``reports.build_report``)
and :func:`reports.convergence.fit_order`. The import is lazy so that ``import reports``
does not load matplotlib until a report is built.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report", "fit_order"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from reports.build import build_report

        return build_report
    if name == "fit_order":
        from reports.convergence import fit_order

        return fit_order
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
