"""``refs --check``: verify every problem's reference independently, and say by how many digits.

    python -m harness.refs --check                 # every registered problem
    python -m harness.refs --check hires pollu     # only these
    python -m harness.refs --check -v              # one row per component

For each problem (built in float64 on the CPU):

- every stored computed reference it reads (``RefCheck.computed``) is solved again with the
  method and tolerances it was made with (``problems.references.solve``) and compared with the
  file ("recompute"); the same scipy reproduces it bit for bit, another version to ~1e-12;
- every output time that has reference values (exact, published or computed rows) is compared
  with an independent tight scipy solve ("independent"): Radau/BDF for stiff problems,
  DOP853 for non-stiff ones, with the method, tolerances and expected digits the problem family
  declares in its ``CHECKS`` list (``problems.references.RefCheck``). A problem without a
  declared check (a plugin) is solved through its own torch ``f`` in float64 (DOP853, or Radau
  if tagged ``stiff``) and expected to agree to 6 digits.

Agreement of component i is ``-log10(max over rows |ours_i - ref_i| / (floor + |ref_i|))``
(``floor`` per problem; where it and the reference are both 0, the absolute error), capped at
16 for exact agreement. A check fails when its least component is below the expected digits;
then ``main`` exits 1 and names the problem. An error (a solve that fails, a problem that
does not build) is a failure too. Heavy solving lives here, not in the test suite; the agreement
table from a full run is kept in docs/references.md.

This module knows no particular problem: the recipes come from the problem families.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from harness import plugins, registry

DEFAULT_DIGITS = 6.0  # expected agreement for a problem that declares no check
MAX_DIGITS = 16.0  # what exact agreement is reported as


@dataclass
class CheckRow:
    """One comparison: a problem's reference against one recomputation."""

    problem: str
    kind: str  # the reference kind: exact / published / computed
    check: str  # "independent scipy Radau rtol=1e-11 ..." or "recompute <file>"
    digits: np.ndarray | None  # per component; None when the check errored
    expected: float
    seconds: float
    error: str = ""
    note: str = ""

    @property
    def min_digits(self) -> float:
        return float(np.min(self.digits)) if self.digits is not None else float("nan")

    @property
    def worst(self) -> int:
        return int(np.argmin(self.digits)) if self.digits is not None else -1

    @property
    def ok(self) -> bool:
        return not self.error and self.digits is not None and self.min_digits >= self.expected


@dataclass
class RefsReport:
    rows: list[CheckRow] = field(default_factory=list)
    seconds: float = 0.0
    verbose: bool = False

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failed(self) -> list[str]:
        return sorted({r.problem for r in self.rows if not r.ok})

    def format_table(self) -> str:
        """The agreement table: one row per check, digits per component (1-based)."""
        head = ["problem", "ref", "check", "min", "worst", "expect", "status", "time",
                "digits per component"]
        cells = []
        for r in self.rows:
            if r.digits is None:
                per, mn, worst = r.error, "-", "-"
            else:
                per = " ".join(f"{d:.1f}" for d in r.digits)
                mn, worst = f"{r.min_digits:.1f}", f"y{r.worst + 1}"
            status = "ok" if r.ok else ("ERROR" if r.error else "FAIL")
            cells.append([r.problem, r.kind, r.check, mn, worst, f"{r.expected:g}", status,
                          f"{r.seconds:.1f}s", per])
        widths = [max(len(str(c[i])) for c in [head, *cells]) for i in range(len(head) - 1)]
        lines = []
        for k, row in enumerate([head, *cells]):
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True))
                         + "  " + str(row[-1]))
            if k == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 20)
        if self.verbose:
            lines.append("")
            lines.append("per component (digits; expected in brackets):")
            for r in self.rows:
                if r.digits is None:
                    continue
                for i, d in enumerate(r.digits):
                    mark = "" if d >= r.expected else "  <-- below"
                    lines.append(f"  {r.problem:16s} {r.check[:40]:40s} y{i + 1:<3d} {d:5.1f} "
                                 f"[{r.expected:g}]{mark}")
        n_ok = sum(r.ok for r in self.rows)
        lines.append("")
        lines.append(f"{n_ok}/{len(self.rows)} checks ok, {len({r.problem for r in self.rows})} "
                     f"problems, {self.seconds:.1f}s")
        if not self.ok:
            lines.append("FAILED: " + ", ".join(self.failed))
        return "\n".join(lines)


# --------------------------------------------------------------------------------- digits


def agreement_digits(ours: np.ndarray, ref: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Digits of agreement per component over the rows where ``ref`` is finite.

    ``-log10(max_rows |ours - ref| / (floor + |ref|))``; where ``floor + |ref|`` is 0 the
    absolute error is used. Exact agreement is reported as 16; a NaN in ``ours`` where the
    reference is finite gives -inf (never agreement).
    """
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scored = np.isfinite(ref)
    err = np.abs(ours - ref)
    scale = floor + np.abs(ref)
    rel = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), err)
    rel = np.where(scored, rel, 0.0)
    rel = np.where(scored & ~np.isfinite(ours), np.inf, rel)
    worst = rel.reshape(-1, rel.shape[-1]).max(axis=0)
    out = np.empty(worst.shape)
    for i, w in enumerate(worst):
        out[i] = -math.inf if not math.isfinite(w) else (
            MAX_DIGITS if w == 0.0 else min(MAX_DIGITS, -math.log10(w))
        )
    return out


# ------------------------------------------------------------------------- the recipes


def _recipes() -> tuple[dict, dict]:
    """``{problem: RefCheck}`` and ``{name: ComputedSpec}`` from the built-in families."""
    from problems.builtin import FAMILIES

    checks, specs = {}, {}
    for family in FAMILIES:
        for c in getattr(family, "CHECKS", []):
            if c.problem in checks:
                raise registry.RegistryError(f"two refs checks for problem {c.problem!r}")
            checks[c.problem] = c
        for s in getattr(family, "COMPUTED", []):
            specs[s.name] = s
    return checks, specs


def build_problem(name: str):
    """The registered problem ``name`` in float64 on the CPU (a seam the tests patch)."""
    return registry.PROBLEMS.get(name).factory(torch.float64, "cpu")


def _torch_rhs(f: Callable) -> Callable[[float, np.ndarray], np.ndarray]:
    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = f(torch.tensor(t, dtype=torch.float64), torch.from_numpy(np.asarray(y)))
        return out.numpy()

    return rhs


def _independent(problem, check) -> tuple[np.ndarray, str]:
    """Solve the problem with scipy to its output times; rows where the reference is NaN are
    solved through but not compared."""
    from scipy.integrate import solve_ivp

    t = problem.t.detach().cpu().double().numpy()
    y0 = problem.y0.detach().cpu().double().numpy().reshape(-1)
    kwargs = {}
    if check.jac is not None and check.method in ("Radau", "BDF", "LSODA"):
        kwargs["jac"] = check.jac
    sol = solve_ivp(check.rhs, (float(t[0]), float(t[-1])), y0, method=check.method,
                    t_eval=t, rtol=check.rtol, atol=check.atol, **kwargs)
    if not sol.success or sol.y.shape[1] != len(t):
        raise RuntimeError(f"scipy {check.method} failed: {sol.message}")
    label = f"independent {check.method} rtol={check.rtol:g} atol={check.atol:g}"
    return sol.y.T, label


def _fallback_check(problem):
    from problems.references import RefCheck

    stiff = "stiff" in problem.tags
    return RefCheck(problem=problem.name, rhs=_torch_rhs(problem.f),
                    method="Radau" if stiff else "DOP853", rtol=1e-10, atol=1e-12,
                    digits=DEFAULT_DIGITS, floor=1e-10, note="no declared check: torch f")


def check_problem(name: str, checks: dict, specs: dict) -> list[CheckRow]:
    """All the check rows of one problem; errors become failing rows, never exceptions."""
    from problems import references

    start = time.perf_counter()
    try:
        problem = build_problem(name)
    except Exception as exc:  # a problem that does not build fails its check, loudly
        return [CheckRow(name, "?", "build", None, math.inf, time.perf_counter() - start,
                         error=f"{type(exc).__name__}: {exc}")]
    kind = str(problem.reference.kind)
    check = checks.get(name) or _fallback_check(problem)
    ref = np.asarray(problem.reference.ys, dtype=np.float64).reshape(len(problem.t), -1)
    rows: list[CheckRow] = []

    for spec_name in check.computed:
        t0 = time.perf_counter()
        label = f"recompute data/{spec_name}.json"
        try:
            spec = specs[spec_name]
            stored = references.load(spec_name)
            fresh = references.solve(spec)
            digits = agreement_digits(fresh[1:], stored.ys[1:], check.floor)
            rows.append(CheckRow(name, "computed", label, digits, check.recompute_digits,
                                 time.perf_counter() - t0,
                                 note=f"{spec.method} rtol={spec.rtol:g}"))
        except Exception as exc:
            rows.append(CheckRow(name, "computed", label, None, check.recompute_digits,
                                 time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}"))

    t0 = time.perf_counter()
    try:
        ours, label = _independent(problem, check)
        # row 0 is the initial value, equal by construction: not evidence of anything
        digits = agreement_digits(ours[1:], ref[1:], check.floor)
        rows.append(CheckRow(name, kind, label, digits, check.digits, time.perf_counter() - t0,
                             note=check.note))
    except Exception as exc:
        rows.append(CheckRow(name, kind, f"independent {check.method}", None, check.digits,
                             time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}"))
    return rows


def check_references(names: Sequence[str] | None = None, *, verbose: bool = False,
                     jobs: int = 1) -> RefsReport:
    """Check the named problems' references (all registered problems when ``names`` is None).

    Unknown names raise ``RegistryError`` listing the valid ones (a usage error). ``jobs > 1``
    checks problems in that many worker processes.
    """
    plugins.load_defaults()
    valid = [e.name for e in registry.PROBLEMS.entries()]
    todo = list(valid) if not names else list(names)
    unknown = [n for n in todo if n not in valid]
    if unknown:
        raise registry.RegistryError(
            f"unknown problem(s) {', '.join(map(repr, unknown))}; valid problems: "
            + ", ".join(sorted(valid))
        )
    start = time.perf_counter()
    checks, specs = _recipes()
    rows: list[CheckRow] = []
    if jobs > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for part in pool.map(_check_in_worker, todo):
                rows.extend(part)
    else:
        for name in todo:
            rows.extend(check_problem(name, checks, specs))
    return RefsReport(rows=rows, seconds=time.perf_counter() - start, verbose=verbose)


def _check_in_worker(name: str) -> list[CheckRow]:
    plugins.load_defaults()
    checks, specs = _recipes()
    return check_problem(name, checks, specs)


# ------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.refs",
        description="Verify every problem's reference: recompute computed references, compare "
        "published and exact ones with an independent tight scipy solve, print the digits of "
        "agreement per problem and component, exit 1 where agreement is below expectation.",
    )
    p.add_argument("problems", nargs="*", help="problems to check (default: all)")
    p.add_argument("--check", action="store_true",
                   help="run the checks (the default action; accepted for `refs --check`)")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per component too")
    p.add_argument("-j", "--jobs", type=int, default=1, help="worker processes (default 1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        report = check_references(args.problems or None, verbose=args.verbose, jobs=args.jobs)
    except registry.RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.format_table())
    if not report.ok:
        print(f"refs --check FAILED for: {', '.join(report.failed)} (agreement below the "
              "documented expectation, or an error; see the table)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
