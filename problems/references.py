"""Computed references stored as data: how they are described, written, loaded and verified.

A reference that has no closed form and no published value is solved once at tight tolerance
with scipy (never with our own solvers: a solver must not be scored against itself) by
``python -m problems.make_references``, and stored in ``problems/data/<name>.json`` together
with how it was made (solver, tolerances, date, library versions, the command) and a sha256
checksum of the values. Building a problem only reads that file and checks the checksum, so a
hand-edited or corrupted value is refused rather than silently scored against.

The checksum is taken over the little-endian float64 bytes of ``t`` then ``ys``; JSON floats
written by Python's ``repr`` read back bit-for-bit, so the checksum survives the round trip.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
MAKE_COMMAND = "python -m problems.make_references"
FORMAT_VERSION = 1


class ReferenceDataError(RuntimeError):
    """A stored reference is missing, malformed, or fails its checksum."""


@dataclass(frozen=True)
class ComputedSpec:
    """How to compute one stored reference: a numpy right-hand side solved by scipy.

    ``method``/``rtol``/``atol`` make the stored values; ``check_method`` (with the same
    tolerances) is an independent second solve whose largest disagreement, relative to
    ``atol + rtol*|y|`` of the check, is recorded as ``cross_check`` so a reader can judge
    how many digits to trust. ``jac`` is passed to implicit methods where given.
    """

    name: str  # the data file is DATA_DIR / f"{name}.json"
    rhs: Callable[[float, np.ndarray], np.ndarray]
    y0: Sequence[float]
    t: Sequence[float]
    method: str = "DOP853"
    rtol: float = 1e-13
    atol: float = 1e-14
    check_method: str = "Radau"
    jac: Callable[[float, np.ndarray], np.ndarray] | None = None
    note: str = ""  # one line: what the problem is, for a person reading the file
    extra_meta: dict[str, Any] = field(default_factory=dict)  # e.g. a checksum of MLP weights


@dataclass(frozen=True)
class RefCheck:
    """How ``python -m harness.refs --check`` verifies one problem's reference, and how well.

    ``rhs``/``jac`` are the problem in numpy, as its source defines it, for an independent scipy
    solve with ``method`` at ``rtol``/``atol`` to every output time that has reference values.
    Agreement per component is ``-log10(max_rows |ours - ref| / (floor + |ref|))`` (with
    ``floor = 0`` and ``ref = 0`` it is the absolute error); ``digits`` is the documented
    minimum the check must reach (see docs/references.md for why each number is what it is).
    ``computed`` names the stored computed references (``ComputedSpec``) this problem reads;
    each is solved again with its own method and must match the file to ``recompute_digits``.
    """

    problem: str  # the registered problem name
    rhs: Callable[[float, np.ndarray], np.ndarray]
    jac: Callable[[float, np.ndarray], np.ndarray] | None = None
    method: str = "DOP853"
    rtol: float = 1e-13
    atol: float = 1e-15
    digits: float = 10.0
    floor: float = 0.0
    computed: tuple[str, ...] = ()
    recompute_digits: float = 10.0
    note: str = ""  # why the expected digits are what they are, one line


def path_for(name: str) -> Path:
    return DATA_DIR / f"{name}.json"


def values_sha256(t: np.ndarray, ys: np.ndarray) -> str:
    """sha256 of the little-endian float64 bytes of ``t`` followed by those of ``ys``."""
    h = hashlib.sha256()
    for a in (t, ys):
        h.update(np.ascontiguousarray(np.asarray(a, dtype="<f8")).tobytes())
    return h.hexdigest()


def array_sha256(*arrays: np.ndarray) -> str:
    """sha256 of the little-endian float64 bytes of the arrays in order (e.g. MLP weights)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, dtype="<f8")).tobytes())
    return h.hexdigest()


def solve(spec: ComputedSpec, method: str | None = None) -> np.ndarray:
    """Solve ``spec`` with scipy (its own method unless another is named), rows at ``spec.t``."""
    return _solve(spec, method or spec.method)


def _solve(spec: ComputedSpec, method: str) -> np.ndarray:
    from scipy.integrate import solve_ivp

    t = np.asarray(spec.t, dtype=np.float64)
    kwargs: dict[str, Any] = {}
    if spec.jac is not None and method in ("Radau", "BDF", "LSODA"):
        kwargs["jac"] = spec.jac
    sol = solve_ivp(
        spec.rhs,
        (float(t[0]), float(t[-1])),
        np.asarray(spec.y0, dtype=np.float64),
        method=method,
        t_eval=t,
        rtol=spec.rtol,
        atol=spec.atol,
        **kwargs,
    )
    # A reference solver that fails silently corrupts every figure built on it: refuse.
    if not sol.success or sol.y.shape[1] != len(t):
        raise ReferenceDataError(f"{spec.name}: scipy {method} failed: {sol.message}")
    ys = sol.y.T.copy()
    ys[0] = np.asarray(spec.y0, dtype=np.float64)  # the initial value is exact, not computed
    return ys


def compute(spec: ComputedSpec) -> dict[str, Any]:
    """Solve ``spec`` (and its cross-check) with scipy; return the record to store as JSON."""
    import scipy

    t = np.asarray(spec.t, dtype=np.float64)
    ys = _solve(spec, spec.method)
    check = _solve(spec, spec.check_method)
    scale = spec.atol + spec.rtol * np.abs(check)
    cross = float(np.max(np.abs(ys - check) / scale))
    return {
        "format": FORMAT_VERSION,
        "problem": spec.name,
        "note": spec.note,
        "solver": f"scipy.integrate.solve_ivp method={spec.method}",
        "rtol": spec.rtol,
        "atol": spec.atol,
        "cross_check": {
            "solver": f"scipy.integrate.solve_ivp method={spec.check_method}",
            "max_scaled_diff": cross,
            "max_abs_diff": float(np.max(np.abs(ys - check))),
        },
        "created": datetime.date.today().isoformat(),
        "command": MAKE_COMMAND,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        },
        **spec.extra_meta,
        "t": t.tolist(),
        "ys": ys.tolist(),
        "sha256": values_sha256(t, ys),
    }


def write(record: dict[str, Any], path: Path | None = None) -> Path:
    path = path or path_for(record["problem"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


@dataclass(frozen=True)
class StoredReference:
    """A verified computed reference read from ``problems/data``."""

    t: np.ndarray
    ys: np.ndarray
    meta: dict[str, Any]  # everything in the file except t and ys
    path: Path

    @property
    def provenance(self) -> str:
        return provenance_line(self.meta, self.path)


def load(name: str, path: Path | None = None) -> StoredReference:
    """Read ``problems/data/<name>.json`` and verify its checksum; raise if anything is off."""
    path = path or path_for(name)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReferenceDataError(
            f"reference data {path} is missing; regenerate it with `{MAKE_COMMAND}`"
        ) from None
    except json.JSONDecodeError as exc:
        raise ReferenceDataError(f"reference data {path} is not valid JSON: {exc}") from exc
    for key in ("t", "ys", "sha256", "solver", "rtol", "atol", "created"):
        if key not in record:
            raise ReferenceDataError(f"reference data {path} lacks the field {key!r}")
    t = np.asarray(record["t"], dtype=np.float64)
    ys = np.asarray(record["ys"], dtype=np.float64)
    if ys.shape[:1] != t.shape:
        raise ReferenceDataError(
            f"reference data {path}: ys has {ys.shape[0]} rows but t has {t.shape[0]} times"
        )
    digest = values_sha256(t, ys)
    if digest != record["sha256"]:
        raise ReferenceDataError(
            f"reference data {path} fails its checksum (stored {record['sha256'][:12]}..., "
            f"values give {digest[:12]}...): the values were changed; regenerate them with "
            f"`{MAKE_COMMAND}`"
        )
    meta = {k: v for k, v in record.items() if k not in ("t", "ys")}
    return StoredReference(t=t, ys=ys, meta=meta, path=path)


def provenance_line(meta: dict[str, Any], path: Path) -> str:
    """One checkable line: solver, tolerances, file, checksum prefix, date and versions."""
    v = meta.get("versions", {})
    try:
        shown = path.relative_to(DATA_DIR.parent.parent)
    except ValueError:
        shown = path
    return (
        f"computed: {meta['solver']} rtol={meta['rtol']:g} atol={meta['atol']:g}, "
        f"file {shown} (sha256 {meta['sha256'][:12]}), {meta['created']}, "
        f"scipy {v.get('scipy', '?')} numpy {v.get('numpy', '?')}; "
        f"regenerate: {meta.get('command', MAKE_COMMAND)}"
    )


def check_times(stored: StoredReference, t: np.ndarray) -> None:
    """Refuse a stored reference whose times differ from the problem's output times."""
    if stored.t.shape != t.shape or not np.array_equal(stored.t, t):
        raise ReferenceDataError(
            f"reference data {stored.path} was made for other output times; "
            f"regenerate it with `{MAKE_COMMAND}`"
        )
