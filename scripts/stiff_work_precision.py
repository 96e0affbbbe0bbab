"""Work-precision of rodas4 and ros3p against scipy's Radau, BDF and LSODA on the Bari stiff set.

Each solver runs on each problem over a ladder of tolerances (rtol = 10^-2 .. 10^-7 in half
decades, atol = rtol * Problem.atol / Problem.rtol, the problem's own scales), timed
interleaved: each round times one solve of every solver at one rung, in an order that rotates,
and the figure is the median of the rounds. Accuracy is mescd against the published reference
(``harness.measure.accuracy``). Each curve is then read at mescd = 5 (5 correct digits), with
log10(time) and the counts interpolated linearly in mescd between the two rungs around 5, in
ladder order; a solver whose curve does not reach 5 gets no figure.

Prints one table per problem (time, NFE, Jacobians, LU decompositions and steps at mescd 5,
and rodas4's time over scipy-radau's) and a summary line. Run
``python scripts/stiff_work_precision.py`` (about 14 minutes on 2 cores, E5 most of it), or
name problems: ``python scripts/stiff_work_precision.py robertson hires``.
"""

from __future__ import annotations

import math
import statistics
import sys
import time

import numpy as np
import torch

from harness.measure.accuracy import measure_accuracy
from harness.plugins import discover
from harness.registry import build_problem, make_solver

PROBLEMS = ("robertson", "vdpol", "vdpol-mu1000", "orego", "hires", "e5", "pollu")
SOLVERS = ("rodas4", "ros3p", "scipy-radau", "scipy-bdf", "scipy-lsoda")
LADDER = tuple(10.0 ** (-k / 2) for k in range(4, 15))  # 1e-2 .. 1e-7
ROUNDS = 3
TARGET = 5.0


def _run(solver, p, rtol: float) -> dict:
    atol = rtol * p.atol / p.rtol
    t0 = time.perf_counter()
    sol = solver.solve(p.f, p.y0, p.t, rtol=rtol, atol=atol)
    wall = time.perf_counter() - t0
    ok = sol.status == "ok" and bool(torch.isfinite(sol.ys).all())
    mescd = math.nan
    if ok:
        mescd = measure_accuracy(sol.ys.numpy(), p.reference.ys, atol=p.atol, rtol=p.rtol,
                                 scd_components=p.extra.get("scd_components")).mescd
    return dict(wall=wall, mescd=mescd, status=str(sol.status), nfe=sol.nfe,
                njev=sol.counts.get("njev", math.nan), ndec=sol.counts.get("ndec", math.nan),
                steps=sol.n_accepted)


def curve(p, solvers: dict) -> dict[str, list[dict]]:
    """Per solver, its rungs in ladder order, each with the median wall time of ROUNDS."""
    out: dict[str, list[dict]] = {name: [] for name in solvers}
    for rtol in LADDER:
        walls: dict[str, list[float]] = {name: [] for name in solvers}
        last: dict[str, dict] = {}
        names = list(solvers)
        for r in range(ROUNDS):
            for name in names[r % len(names):] + names[: r % len(names)]:
                res = _run(solvers[name], p, rtol)
                walls[name].append(res["wall"])
                last[name] = res
        for name in solvers:
            out[name].append(dict(last[name], rtol=rtol, wall=statistics.median(walls[name])))
    return out


def at_target(points: list[dict]) -> dict | None:
    """The figures at mescd = TARGET, interpolated between the first pair of consecutive rungs
    that brackets it (log10 of the time and counts, linear in mescd)."""
    for a, b in zip(points, points[1:], strict=False):
        ma, mb = a["mescd"], b["mescd"]
        if not (math.isfinite(ma) and math.isfinite(mb)):
            continue
        if ma <= TARGET <= mb and mb > ma:
            w = (TARGET - ma) / (mb - ma)
            out = {}
            for key in ("wall", "nfe", "njev", "ndec", "steps"):
                va, vb = a[key], b[key]
                if not (va > 0 and vb > 0):
                    out[key] = math.nan
                    continue
                out[key] = 10.0 ** ((1 - w) * math.log10(va) + w * math.log10(vb))
            out["rtol"] = 10.0 ** ((1 - w) * math.log10(a["rtol"]) + w * math.log10(b["rtol"]))
            return out
    return None


def _cell(x: float, fmt: str = "{:.0f}") -> str:
    return "–" if x is None or not math.isfinite(x) else fmt.format(x)


def main(names: list[str]) -> None:
    discover()
    torch.set_num_threads(1)
    solvers = {name: make_solver(name) for name in SOLVERS}
    ratios = []
    for name in names:
        p = build_problem(name)
        pts = curve(p, solvers)
        print(f"\n### {name}: at mescd = {TARGET:g} (interpolated)\n")
        print("| solver | rtol | ms | NFE | Jacobians | LU | steps | mescd at the rungs |")
        print("|---|---|---|---|---|---|---|---|")
        figures = {}
        for s, points in pts.items():
            fig = at_target(points)
            figures[s] = fig
            rungs = " ".join(_cell(q["mescd"], "{:.1f}") for q in points)
            if fig is None:
                print(f"| {s} | – | – | – | – | – | – | {rungs} |")
                continue
            print(f"| {s} | {fig['rtol']:.1e} | {fig['wall'] * 1e3:.1f} | {_cell(fig['nfe'])} | "
                  f"{_cell(fig['njev'])} | {_cell(fig['ndec'])} | {_cell(fig['steps'])} | "
                  f"{rungs} |")
        ours, radau = figures.get("rodas4"), figures.get("scipy-radau")
        if ours and radau:
            ratio = ours["wall"] / radau["wall"]
            ratios.append((name, ratio))
            print(f"\nrodas4's time over scipy-radau's at mescd {TARGET:g}: {ratio:.2f}")
        else:
            print(f"\nrodas4 against scipy-radau at mescd {TARGET:g}: no figure (a curve does "
                  "not reach it)")
    if ratios:
        print("\nrodas4 ÷ scipy-radau at 5 digits: "
              + ", ".join(f"{n} {r:.2f}" for n, r in ratios)
              + f"; geometric mean {np.exp(np.mean(np.log([r for _, r in ratios]))):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(PROBLEMS))
