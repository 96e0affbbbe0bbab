"""The gradients section, and keeping gradient rows out of the solve-only sections.

Golden data: ``tests/fixtures/run_grad`` (a real gradient run, trimmed by
``make_run_grad.py``) and ``tests/fixtures/run_small`` (hand-made plain solves).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.results import RESULTS_FILE, ResultsWriter, write_meta
from reports.build import build_report
from reports.gradients import (
    add_labels,
    fit_bytes_per_step,
    median_saving,
    memory_fits,
    seminorm_saving,
    seminorm_savings,
)

FIXTURES = Path(__file__).parent / "fixtures"
GRAD = FIXTURES / "run_grad"
SMALL = FIXTURES / "run_small"
EVIL = "<script>alert(1)</script>"


def section(html: str, name: str, nxt: str) -> str:
    return html.split(f'id="{name}"')[1].split(f'id="{nxt}"')[0]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def write_run(run: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    write_meta(run, meta)
    (run / RESULTS_FILE).touch()
    with ResultsWriter(run) as writer:
        for r in rows:
            writer.write(r)
    return run


def grad_row(mode: str, *, solver: str = "rk4", n: int | None = 10, rtol: float | None = None,
             nfe_bwd: int = 40, mem: int = 1000, err: float = 1e-3, status: str = "ok",
             message: str = "", problem: str = "mlp") -> dict[str, Any]:
    return {
        "case_id": f"g/{problem}/{solver}/{n}/{rtol}/{mode}", "kind": "gradient",
        "problem": problem, "solver": solver, "grad_mode": mode, "device": "cpu",
        "dtype": "float64", "batch": 4, "n_steps_requested": n, "rtol": rtol, "atol": rtol,
        "status": status, "message": message, "status_backward": "ok" if status == "ok" else "",
        "nfe": 4 * (n or 10), "nfe_backward": nfe_bwd, "n_steps": n or 10, "mem_saved_bytes": mem,
        "grad_rel_err": err if status == "ok" else None, "grad_rel_diff_backprop": 1e-8,
        "err_max": 1e-4, "time_median_s": 0.01, "time_forward_median_s": 0.004,
        "time_backward_median_s": 0.006, "n_params": 10, "t_reached": 1.0,
    }


@pytest.fixture(scope="module")
def grad_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("grad") / "report.html"
    return build_report(GRAD, out=out).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def small_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("small") / "report.html"
    return build_report(SMALL, out=out).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def mixed_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    """run_small's solves plus run_grad's gradient rows, one of whose solvers is renamed to a
    solver that appears only in gradient rows."""
    run = tmp_path_factory.mktemp("mixed") / "run"
    run.mkdir()
    shutil.copy(SMALL / "meta.json", run / "meta.json")
    grad = read_jsonl(GRAD / RESULTS_FILE)
    for r in grad:
        if r["solver"] == "dopri5":
            r["solver"] = "gradonly-dopri5"
    rows = read_jsonl(SMALL / RESULTS_FILE) + grad
    (run / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return build_report(run).read_text(encoding="utf-8")


# --- the section on a real gradient run -------------------------------------------------


def test_gradient_section_has_memory_and_error_figures(grad_html: str) -> None:
    grads = section(grad_html, "gradients", "failures")
    assert grads.count("<svg") == 2
    assert 'aria-label="mlp: saved bytes vs steps"' in grads
    assert 'aria-label="mlp: gradient error"' in grads


@pytest.mark.parametrize("table", ["memfit", "graderr", "gradnfe", "gradtime"])
def test_gradient_section_has_each_table(grad_html: str, table: str) -> None:
    assert f'<table class="{table}">' in section(grad_html, "gradients", "failures")


def test_memory_caption_says_what_saved_bytes_are(grad_html: str) -> None:
    grads = section(grad_html, "gradients", "failures")
    assert "autograd saves for the backward pass (each storage counted once)" in grads
    assert "KiB/step" in grads


def test_adjoint_memory_is_flat_and_backprop_grows_in_the_real_run(grad_html: str) -> None:
    table = grad_html.split('<table class="memfit">')[1].split("</table>")[0]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in table.split("<tr>")[2:]]
    rows = {tuple(c[:3]): c for c in cells}
    adjoint = rows[("rk4", "fixed steps", "adjoint")]
    backprop = rows[("rk4", "fixed steps", "backprop")]
    checkpoint = rows[("rk4", "fixed steps", "checkpoint")]
    assert abs(float(adjoint[3])) < 0.01
    assert float(backprop[3].replace(",", "")) > float(checkpoint[3].replace(",", "")) > 0


def test_solve_sections_of_a_gradient_only_run_draw_nothing(grad_html: str) -> None:
    before = grad_html.split('id="gradients"')[0]
    assert "<svg" not in before
    assert "Only gradient cases of this problem ran" in section(grad_html, "problems",
                                                                "convergence")
    assert "No fixed-step cases in this run" in section(grad_html, "convergence", "gradients")


# --- solve sections use solve rows only --------------------------------------------------


@pytest.mark.parametrize(("name", "nxt"), [("summary", "more-findings"),
                                           ("convergence", "gradients")])
def test_gradient_rows_leave_solve_sections_as_they_were(small_html: str, mixed_html: str,
                                                         name: str, nxt: str) -> None:
    assert section(mixed_html, name, nxt) == section(small_html, name, nxt)


@pytest.mark.parametrize("problem", ["linear", "robertson"])
def test_gradient_rows_leave_work_precision_as_it_was(small_html: str, mixed_html: str,
                                                      problem: str) -> None:
    def block(html: str) -> str:
        return html.split(f'id="problem-{problem}"')[1].split("</section>")[0]

    assert "<svg" in block(small_html)
    assert block(mixed_html) == block(small_html)


def test_solver_only_in_gradient_rows_is_not_in_solve_sections(mixed_html: str) -> None:
    before = mixed_html.split('id="gradients"')[0]
    assert "gradonly-dopri5" not in before
    assert "gradonly-dopri5" in section(mixed_html, "gradients", "failures")
    assert "[solve, none]" not in mixed_html


def test_solve_only_run_has_one_line_and_no_gradient_figures(small_html: str) -> None:
    grads = section(small_html, "gradients", "failures")
    assert "No gradient cases in this run." in grads
    assert "<svg" not in grads and "<table" not in grads
    labels = re.findall(r'<svg[^>]*aria-label="([^"]*)"', small_html)
    assert sorted(labels) == sorted(["linear: work-precision", "robertson: work-precision",
                                     "linear: error vs step size"]
                                    + [lab for lab in labels if "tolerance" in lab])


# --- the numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(12_000.0, 34_304.0), (21_480.0, 0.0), (500.0, 256.0)])
def test_bytes_per_step_fit_recovers_a_line(a: float, b: float) -> None:
    steps = np.array([10, 100, 1000, 10000], dtype=float)
    fit = fit_bytes_per_step(steps, a + b * steps)
    assert fit.b == pytest.approx(b, abs=1e-6)
    assert fit.a == pytest.approx(a, rel=1e-6, abs=1e-3)
    assert fit.n == 4


def test_bytes_per_step_fit_with_noise_and_bad_points() -> None:
    rng = np.random.default_rng(0)
    steps = np.array([10, 100, 1000, 10000, np.nan], dtype=float)
    nbytes = 3000 + 2048 * steps + rng.normal(0, 50, steps.size)
    fit = fit_bytes_per_step(steps, nbytes)
    assert fit.b == pytest.approx(2048, rel=1e-3)
    assert fit.n == 4


def test_bytes_per_step_fit_needs_two_step_counts() -> None:
    assert np.isnan(fit_bytes_per_step([11, 11], [5.0, 6.0]).b)
    assert np.isnan(fit_bytes_per_step([], []).b)


def test_memory_fits_per_mode_on_synthetic_rows() -> None:
    rows = []
    for n in (10, 100, 1000):
        rows += [grad_row("backprop", n=n, mem=1000 + 4096 * n),
                 grad_row("adjoint", n=n, mem=2000),
                 grad_row("checkpoint", n=n, mem=1500 + 64 * n)]
    rows.append(grad_row("backprop", n=10_000, mem=1, status="error"))  # failed: not fitted
    fits = {f.mode: f.fit for f in memory_fits(add_labels(pd.DataFrame(rows)))}
    assert list(fits) == ["backprop", "adjoint", "checkpoint"]
    assert fits["backprop"].b == pytest.approx(4096)
    assert fits["adjoint"].b == pytest.approx(0, abs=1e-9)
    assert fits["checkpoint"].b == pytest.approx(64)


@pytest.mark.parametrize(("adjoint", "seminorm", "expected"),
                         [(100, 75, 0.25), (100, 100, 0.0), (100, 120, -0.2), (272, 224, 48 / 272)])
def test_seminorm_saving(adjoint: int, seminorm: int, expected: float) -> None:
    assert seminorm_saving(adjoint, seminorm) == pytest.approx(expected)


def test_seminorm_saving_undefined_without_adjoint_calls() -> None:
    assert np.isnan(seminorm_saving(0, 10))
    assert np.isnan(seminorm_saving(None, 10))


def savings_rows() -> list[dict[str, Any]]:
    rows = []
    for rtol, adj, semi in ((1e-3, 100, 75), (1e-5, 200, 200), (1e-7, 100, 120)):
        rows += [grad_row("backprop", solver="dopri5", n=None, rtol=rtol, nfe_bwd=0),
                 grad_row("adjoint", solver="dopri5", n=None, rtol=rtol, nfe_bwd=adj),
                 grad_row("adjoint-seminorm", solver="dopri5", n=None, rtol=rtol, nfe_bwd=semi)]
    # a case whose seminorm run failed has no saving
    rows += [grad_row("adjoint", solver="dopri5", n=None, rtol=1e-8, nfe_bwd=300),
             grad_row("adjoint-seminorm", solver="dopri5", n=None, rtol=1e-8, status="max_steps",
                      message="too many steps")]
    return rows


def test_seminorm_savings_per_case_and_median() -> None:
    savings = seminorm_savings(add_labels(pd.DataFrame(savings_rows())))
    assert [s.setting for s in savings] == ["rtol=1e-03", "rtol=1e-05", "rtol=1e-07"]
    assert [s.saving for s in savings] == pytest.approx([0.25, 0.0, -0.2])
    assert median_saving(savings) == pytest.approx(0.0)


def test_seminorm_savings_are_shown_honestly(tmp_path: Path) -> None:
    html = build_report(write_run(tmp_path / "run", {}, savings_rows())).read_text("utf-8")
    nfe = html.split('<table class="gradnfe">')[1].split("</table>")[0]
    assert "+25.0 %" in nfe and ">0 %<" in nfe and "-20.0 %" in nfe
    assert "Median seminorm saving over 3 case(s): 0 %" in html


# --- failures and escaping -----------------------------------------------------------------


def test_failed_gradient_rows_show_their_mode_in_failures(tmp_path: Path) -> None:
    html = build_report(write_run(tmp_path / "run", {}, savings_rows())).read_text("utf-8")
    failures = section(html, "failures", "environment")
    assert "rtol=1e-08, atol=1e-08, grad adjoint-seminorm" in failures
    assert "too many steps" in failures
    grads = section(html, "gradients", "failures")
    assert "1 gradient case(s) failed" in grads and "adjoint-seminorm 1× max_steps" in grads


def test_hostile_names_in_gradient_rows_are_escaped(tmp_path: Path) -> None:
    rows = [grad_row(mode, solver=f"s{EVIL}", n=n, problem=f"p{EVIL}", message=EVIL,
                     status="ok" if n < 1000 else "error")
            for mode in ("backprop", f"m{EVIL}") for n in (10, 100, 1000)]
    html = build_report(write_run(tmp_path / "run", {"run_id": EVIL}, rows)).read_text("utf-8")
    assert html.lower().count("<script") == 1  # the page's own script only
    grads = section(html, "gradients", "failures")
    assert "s&lt;script&gt;" in grads and "m&lt;script&gt;" in grads
    assert grads.count("<svg") == 2


def test_gradient_report_is_deterministic(grad_html: str, tmp_path: Path) -> None:
    again = build_report(GRAD, out=tmp_path / "again.html").read_text(encoding="utf-8")
    assert again == grad_html
