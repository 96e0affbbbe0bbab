"""How many digits of E5's end value y(1e13) double-precision solves get, against its reference.

E5's stored reference (``problems/kinetics.py``, ``build_e5``) is Hairer's y2 = y3 =
8.8612334976263783420e-23 at t = 1e13 (``e5_exact.txt`` of his stiff test set). This script
solves E5 at tight tolerances with

- scipy's ``solve_ivp`` directly (Radau, BDF and LSODA, analytic Jacobian ``e5_jac``),
  rtol 1e-10 .. 1e-12 with atol 1e-40 .. 1e-50, as in docs/references.md;
- the registered harness solvers ``scipy-radau`` and (if registered) ``rodas4``, through
  ``harness.registry.make_solver(name).solve(p.f, p.y0, p.t, ...)`` on the torch problem;

and prints, for each, the correct digits ``-log10(|err| / |ref|)`` of y2, of y3 and of
y2 + y3 against the stored reference, with the invariant ``y2 - y3 - y4`` (0 exactly; each
solve leaves the roundoff of the time when y2, y3 were ~1e-10) and the wall time. A last row
scores the Bari release 2.4 pair (``extra["bari_y_end"]``) the same way.

What it shows: every solve gets the sum y2 + y3 to ~5-8 digits but y2 and y3 separately to
only ~2-4 digits, because the invariant's roundoff, ~1e-26 .. 1e-24, splits the sum between
them; a solve's y2 and y3 digits are about -log10(|y2 - y3| / 2 / ref). So no float64 solve
decides y2 and y3 individually beyond ~3 digits; the reference's y2 = y3 comes from the
conservation law, and its value from Hairer, whose sum agrees with ours (and with Bari's sum)
to 6.7 digits, within the scatter of the float64 solves.

Run from the repository root (about 100 s on 2 CPU cores, most of it in the harness solves):

    python scripts/e5_digits.py
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.integrate import solve_ivp

from harness import registry
from harness.plugins import discover
from problems import kinetics

SCIPY_RUNS = [("Radau", 1e-10, 1e-40), ("Radau", 1e-11, 1e-45), ("Radau", 1e-12, 1e-50),
              ("BDF", 1e-10, 1e-40), ("BDF", 1e-11, 1e-45), ("BDF", 1e-12, 1e-50),
              ("LSODA", 1e-10, 1e-40), ("LSODA", 1e-12, 1e-50)]  # fmt: skip
# Through the harness, on the torch f (no analytic Jacobian): slower, so fewer tolerances.
HARNESS_RUNS = [("scipy-radau", 1e-8, 1e-30), ("scipy-radau", 1e-10, 1e-40),
                ("rodas4", 1e-8, 1e-30), ("rodas4", 1e-10, 1e-40)]  # fmt: skip


def digits(x: float, ref: float) -> float:
    """Correct digits of x against ref: -log10(|x - ref| / |ref|), inf when equal."""
    err = abs(x - ref)
    return math.inf if err == 0 else -math.log10(err / abs(ref))


def row(label: str, rtol: float | None, atol: float | None, status: str, steps: str,
        seconds: float | None, y: np.ndarray, ref: np.ndarray) -> str:
    tol = f"{rtol:<7.0e} {atol:<7.0e}" if rtol is not None else f"{'-':<7} {'-':<7}"
    secs = f"{seconds:6.1f}" if seconds is not None else f"{'-':>6}"
    return (
        f"{label:<22} {tol} {status:<14} {steps:>7} {secs}  "
        f"{digits(y[1], ref[1]):5.2f} {digits(y[2], ref[2]):5.2f} "
        f"{digits(y[1] + y[2], ref[1] + ref[2]):5.2f}  {y[1] - y[2] - y[3]:+.2e}"
    )


def main() -> None:
    discover()
    p = registry.build_problem("e5")
    ref = np.asarray(p.reference.ys[-1], dtype=np.float64)
    t_end = float(p.t[-1])
    print(f"E5 at t = {t_end:g}; reference y2 = {float(ref[1])!r}, y3 = {float(ref[2])!r} "
          "(Hairer's e5_exact.txt)")
    print("digits = -log10(|y - ref| / |ref|); inv = y2 - y3 - y4 (exactly 0 for E5)\n")
    head = (f"{'solver':<22} {'rtol':<7} {'atol':<7} {'status':<14} {'steps':>7} {'sec':>6}  "
            f"{'y2':>5} {'y3':>5} {'y2+y3':>5}  {'inv':>9}")
    print(head)
    print("-" * len(head))
    for method, rtol, atol in SCIPY_RUNS:
        t0 = time.perf_counter()
        sol = solve_ivp(kinetics.e5_rhs, (0.0, t_end), kinetics.E5_Y0, method=method,
                        rtol=rtol, atol=atol, jac=kinetics.e5_jac)
        sec = time.perf_counter() - t0
        status = "ok" if sol.success else "failed"
        print(row(f"scipy {method}", rtol, atol, status, str(sol.t.size - 1), sec,
                  sol.y[:, -1], ref), flush=True)
    for name, rtol, atol in HARNESS_RUNS:
        if name not in registry.SOLVERS:
            print(f"{'harness ' + name:<22} not registered, skipped")
            continue
        t0 = time.perf_counter()
        sol = registry.make_solver(name).solve(p.f, p.y0, p.t, rtol=rtol, atol=atol)
        sec = time.perf_counter() - t0
        y = sol.ys[-1].detach().cpu().double().numpy()
        print(row(f"harness {name}", rtol, atol, str(sol.status), str(sol.n_steps), sec,
                  y, ref), flush=True)
    bari = np.asarray(p.extra["bari_y_end"], dtype=np.float64)
    print(row("Bari 2.4 (not used)", None, None, "-", "-", None, bari, ref))


if __name__ == "__main__":
    main()
