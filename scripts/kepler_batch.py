"""Per-trajectory against shared step sizes on DETEST D1-D5 solved as one batch.

Prints, at rtol = atol = 1e-3, 1e-6, 1e-9: each orbit's accepted/rejected steps solved alone
(``dopri5``) and inside the batch (``dopri5-pt``), the batch loop's iterations and NFE for
``dopri5-pt``, and the shared-step ``dopri5`` on the same batch; then interleaved wall times
on 5 and 1000 orbits, and on one orbit. The README's tables come from
``python scripts/kepler_batch.py``; ``tests/test_solver_per_trajectory.py`` asserts the equalities.
"""

from __future__ import annotations

import torch

from harness.measure.timing import Interleaved
from problems import nonstiff
from problems.detest import KEPLER_D
from solvers.rk import RungeKutta
from solvers.tableaux import DOPRI5


def main() -> None:
    f = nonstiff.KeplerField()
    t = torch.as_tensor(nonstiff.KEPLER_T, dtype=torch.float64)
    eccs = list(KEPLER_D.values())
    y0 = torch.tensor([nonstiff.kepler_y0(e) for e in eccs], dtype=torch.float64)
    shared = RungeKutta(DOPRI5, name="dopri5")
    per = RungeKutta(DOPRI5, name="dopri5-pt", per_trajectory=True)
    print("| tol | orbit (e) | alone: accepted / rejected | in dopri5-pt's batch |")
    print("|---|---|---|---|")
    summary = []
    for tol in (1e-3, 1e-6, 1e-9):
        sol = per.solve(f, y0, t, rtol=tol, atol=tol)
        tr = sol.trajectories
        for b, e in enumerate(eccs):
            one = shared.solve(f, y0[b], t, rtol=tol, atol=tol)
            print(
                f"| {tol:g} | D{b + 1} ({e}) | {one.n_accepted} / {one.n_rejected} | "
                f"{tr.n_accepted[b]} / {tr.n_rejected[b]} |"
            )
        sh = shared.solve(f, y0, t, rtol=tol, atol=tol)
        summary.append((tol, sol.n_steps, sol.nfe, sh.n_steps, sh.nfe))
    print()
    print("| tol | dopri5-pt: loop iterations / NFE | dopri5 (shared step): attempts / NFE |")
    print("|---|---|---|")
    for tol, it, nfe, sh_steps, sh_nfe in summary:
        print(f"| {tol:g} | {it} / {nfe} | {sh_steps} / {sh_nfe} |")
    print()
    timing(f, t, shared, per)
    print()
    one_orbit(f, t, shared, per)


def one_orbit(f, t, shared, per, rounds: int = 15) -> None:
    """One orbit (D3) at 1e-6: the shared loop on each backend against the per-trajectory loop
    on a batch of one, what a per-trajectory loop costs where it has nothing to gain."""
    y0 = torch.tensor(nonstiff.kepler_y0(0.5), dtype=torch.float64)
    runners = {
        "dopri5 (host)": lambda: shared.solve(f, y0, t, rtol=1e-6, atol=1e-6, backend="host"),
        "dopri5 (tensor)": lambda: shared.solve(f, y0, t, rtol=1e-6, atol=1e-6,
                                                backend="tensor"),
        "dopri5-pt": lambda: per.solve(f, y0, t, rtol=1e-6, atol=1e-6),
    }
    steps = {k: run().n_steps for k, run in runners.items()}
    timer = Interleaved(runners, warmup=1)
    for _ in range(rounds + timer.warmup):
        timer.round()
    med = timer.medians()
    print("| one orbit (D3) | " + " | ".join(f"`{k}` ms (steps)" for k in runners) + " |")
    print("|---|" + "---|" * len(runners))
    print("| 1e-6 | " + " | ".join(f"{med[k] * 1e3:.1f} ({steps[k]})" for k in runners) + " |")
    print(f"`dopri5-pt` over `dopri5 (tensor)`: {med['dopri5-pt'] / med['dopri5 (tensor)']:.2f}")


def timing(f, t, shared, per, rounds: int = 15) -> None:
    """Interleaved wall times at 1e-6 (median of ``rounds``), and ``dopri5-pt``'s ratios; the
    goals at 1000 orbits are at most 1.5 over ``dopri5`` and at most 0.5 over ``to-dopri5``
    (``--threads N`` sets torch's threads first; default: torch's own)."""
    solvers = {"dopri5": shared, "dopri5-pt": per}
    try:
        from harness.plugins import discover
        from harness.registry import make_solver

        discover()
        solvers["to-dopri5"] = make_solver("to-dopri5")
    except Exception as exc:  # the peers extra is optional
        print(f"(torchode not timed: {exc})")
    print("| orbits | " + " | ".join(f"`{k}` ms (NFE)" for k in solvers) + " |")
    print("|---|" + "---|" * len(solvers))
    ratios = []
    for n in (5, 1000):
        eccs = torch.linspace(0.1, 0.9, 5) if n == 5 else torch.linspace(0.0, 0.9, n)
        y0 = torch.tensor([nonstiff.kepler_y0(float(e)) for e in eccs], dtype=torch.float64)
        nfe = {k: s.solve(f, y0, t, rtol=1e-6, atol=1e-6).nfe for k, s in solvers.items()}
        runners = {
            k: lambda s=s, y0=y0: s.solve(f, y0, t, rtol=1e-6, atol=1e-6)
            for k, s in solvers.items()
        }
        timer = Interleaved(runners, warmup=1)
        for _ in range(rounds + timer.warmup):
            timer.round()
        med = timer.medians()
        cells = [f"{med[k] * 1e3:.0f} ({nfe[k]})" for k in solvers]
        print(f"| {n} | " + " | ".join(cells) + " |")
        ratios.append((n, {k: med["dopri5-pt"] / med[k] for k in solvers if k != "dopri5-pt"}))
    print()
    print(f"`dopri5-pt`'s wall time over the others' ({torch.get_num_threads()} threads):")
    for n, r in ratios:
        print(f"- {n} orbits: " + ", ".join(f"over `{k}` {v:.2f}" for k, v in r.items()))


if __name__ == "__main__":
    import sys

    if "--threads" in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    main()
