"""Per-trajectory against shared step sizes on DETEST D1-D5 solved as one batch.

Prints, at rtol = atol = 1e-3, 1e-6, 1e-9: each orbit's accepted/rejected steps solved alone
(``dopri5``) and inside the batch (``dopri5-pt``), the batch loop's iterations and NFE for
``dopri5-pt``, and the shared-step ``dopri5`` on the same batch. The README's table comes from
``python scripts/kepler_batch.py``; ``tests/test_solver_per_trajectory.py`` asserts the equalities.
"""

from __future__ import annotations

import torch

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


if __name__ == "__main__":
    main()
