"""After a benchmark run, print the time per attempted step of each solver, side by side.

Benchmarks that store ``extra_info["n_steps"]`` get a line: median and minimum of one solve
divided by its attempted steps, and the ratio to the fastest at the same batch size. The figures
in the README come from this table (``tox -e bench`` or
``python -m pytest tests/bench --benchmark-enable``).
"""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or getattr(session, "disabled", True):
        return
    rows = []
    for bench in session.benchmarks:
        info = bench.extra_info or {}
        n = info.get("n_steps")
        if not n or not bench.stats:
            continue
        stats = bench.stats
        rows.append((info.get("batch", 1), bench.name, stats.median / n, stats.min / n, n))
    tr = terminalreporter
    if rows:
        _step_table(tr, rows)
    _gradient_table(tr, session)
    _adjoint_table(tr, session)
    _ratio_table(tr, session)
    _executor_table(tr, session)


def _step_table(tr, rows) -> None:
    tr.write_sep("-", "time per attempted step (median, min of one solve / its steps)")
    tr.write_line(
        f"{'batch':>5}  {'benchmark':<48} {'median':>10} {'min':>10} {'steps':>6} {'x fastest':>9}"
    )
    for batch in sorted({r[0] for r in rows}):
        group = sorted((r for r in rows if r[0] == batch), key=lambda r: r[2])
        fastest = group[0][2]
        for b, name, med, mn, n in group:
            tr.write_line(
                f"{b:>5}  {name:<48} {med * 1e6:>8.1f}us {mn * 1e6:>8.1f}us {n:>6} "
                f"{med / fastest:>9.2f}"
            )


def _gradient_table(tr, session) -> None:
    rows = [b for b in session.benchmarks if "saved_mib" in (b.extra_info or {})]
    if not rows:
        return
    tr.write_sep("-", "gradient modes: saved memory (peak), NFE, time of forward + backward")
    tr.write_line(f"{'benchmark':<44} {'saved MiB':>11} {'nfe fwd':>8} {'nfe bwd':>8} "
                  f"{'median s':>9} {'vs backprop':>12}")
    for b in rows:
        info = b.extra_info
        diff = info.get("grad_rel_diff_backprop")
        tr.write_line(f"{b.name:<44} {info['saved_mib']:>11.3f} {info['nfe']:>8} "
                      f"{info['nfe_backward']:>8} {b.stats.median:>9.4f} "
                      f"{'' if diff is None else f'{diff:.1e}':>12}")


def _adjoint_table(tr, session) -> None:
    rows = [b for b in session.benchmarks if "per_nfe_us" in (b.extra_info or {})]
    if not rows:
        return
    tr.write_sep("-", "adjoint backward pass, interleaved: median time per backward NFE")
    for b in rows:
        info = b.extra_info
        cells = "  ".join(
            f"{k} {v:.1f}us ({info['nfe_backward'][k]} NFE, grad diff "
            f"{info['grad_rel_diff'][k]:.1e})"
            for k, v in info["per_nfe_us"].items()
        )
        tr.write_line(f"{info['mode']:<17} {cells}  ours/theirs {info['ratio']:.3f}")


def _ratio_table(tr, session) -> None:
    rows = [b for b in session.benchmarks if "ratios" in (b.extra_info or {})]
    if not rows:
        return
    tr.write_sep("-", "interleaved in one run: median us per attempted step, and ratios")
    for b in rows:
        info = b.extra_info
        per = "  ".join(f"{k} {v:.1f}us" for k, v in info["per_step_us"].items())
        ratios = "  ".join(f"{k} {v:.3f}" for k, v in info["ratios"].items())
        tr.write_line(f"batch {info['batch']:>5}: {per}")
        tr.write_line(f"{'':>12} {ratios}  (rounds: {b.stats.rounds})")


def _executor_table(tr, session) -> None:
    rows = [b.extra_info for b in session.benchmarks if "cases_per_s" in (b.extra_info or {})]
    if not rows:
        return
    tr.write_sep("-", "executors: a sweep of cheap cases, throughput and overhead per case")
    tr.write_line(f"{'executor':<14} {'cases':>6} {'elapsed s':>10} {'start s':>8} "
                  f"{'cases/s':>8} {'case ms':>8} {'overhead ms':>12} {'after start':>12}")
    for i in rows:
        tr.write_line(f"{i['executor']:<14} {i['cases']:>6} {i['elapsed_s']:>10.1f} "
                      f"{i['startup_s']:>8.2f} {i['cases_per_s']:>8.0f} {i['case_ms']:>8.2f} "
                      f"{i['overhead_ms']:>12.2f} {i['overhead_after_start_ms']:>12.2f}")
