"""Reports of unusual runs: hostile names, no rows, only failures, missing meta."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from harness.results import RESULTS_FILE, ResultsWriter, write_meta
from reports.build import OPEN_MAX, SECTION_IDS, build_report

EVIL = "<script>alert(1)</script>"


def write_run(run: Path, meta: dict[str, Any] | None, rows: list[dict[str, Any]]) -> Path:
    """A run folder with ``meta`` (None: no meta.json) and ``rows`` in results.jsonl."""
    run.mkdir(parents=True, exist_ok=True)
    if meta is not None:
        write_meta(run, meta)
    (run / RESULTS_FILE).touch()
    with ResultsWriter(run) as writer:
        for row in rows:
            writer.write(row)
    return run


def row(problem: str = "linear", solver: str = "rk4", status: str = "ok", *, n: int | None = 32,
        rtol: float | None = None, err: float = 1e-6, message: str = "") -> dict[str, Any]:
    failed = status != "ok"
    return {
        "case_id": f"{problem}-{solver}-{n}-{rtol}", "kind": "solve", "problem": problem,
        "solver": solver, "order": 4, "adaptive": rtol is not None, "grad_mode": "none",
        "device": "cpu", "dtype": "float64", "batch": 1, "rtol": rtol,
        "atol": None if rtol is None else rtol * 1e-3, "n_steps_requested": n,
        "status": status, "message": message, "nfe": 4 * (n or 50), "n_steps": n or 12,
        "t_reached": 0.5 if failed else 1.0,
        "err_max": math.nan if failed else err, "err_final": math.nan if failed else err,
        "scd": math.nan if failed else -math.log10(err),
        "mescd": math.nan if failed else -math.log10(err),
        "time_median_s": 1e-3, "ref_kind": "exact", "ref_provenance": "exact",
    }


def build(run: Path) -> str:
    return build_report(run).read_text(encoding="utf-8")


def assert_all_sections(html: str) -> None:
    for section in SECTION_IDS:
        assert f'id="{section}"' in html


def test_hostile_names_and_messages_are_escaped(tmp_path: Path) -> None:
    meta = {"run_id": EVIL, "command": f"run --solvers '{EVIL}'",
            "problems": {f"p{EVIL}": {"tags": [EVIL], "description": EVIL,
                                       "ref_provenance": EVIL, "t_span": [0, 1]}},
            "solvers": {EVIL: {"kind": EVIL, "order": 4}},
            "environment": {"hostname": EVIL, "cuda": {"device_name": EVIL}},
            "suite": {"name": EVIL, "settings": {"x": EVIL}}}
    rows = [row(f"p{EVIL}", EVIL, n=n, err=1e-2 / n**4) for n in (8, 16, 32)]
    rows.append(row(f"p{EVIL}", EVIL, "error", n=64, message=f"boom {EVIL} & more"))
    html = build(write_run(tmp_path / "run", meta, rows))
    assert html.lower().count("<script") == 1  # the page's own script, nothing else
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "boom &lt;script&gt;" in html
    assert "alert(1)" not in html.replace("&lt;script&gt;alert(1)&lt;/script&gt;", "")
    assert not re.search(r"\son[a-z]+=", html)  # no inline handlers
    assert_all_sections(html)


def test_escaping_holds_inside_svg_text(tmp_path: Path) -> None:
    rows = [row("p", f"a&b{EVIL}", n=n, err=1e-2 / n**4) for n in (8, 16, 32)]
    html = build(write_run(tmp_path / "run", {}, rows))
    svgs = "".join(part.split("</svg>")[0] for part in html.split("<svg")[1:])
    assert "<script" not in svgs and "a&amp;b" in svgs


def test_dollar_signs_in_names_are_not_parsed_as_math(tmp_path: Path) -> None:
    # unescaped, "$\\frac{$" is invalid mathtext and makes matplotlib raise
    rows = [row("p$x", "cost $\\frac{$", n=n, err=1e-2 / n**4) for n in (8, 16, 32)]
    html = build(write_run(tmp_path / "run", {}, rows))
    assert html.count("<svg") == 2
    assert "cost $\\frac{$" in html


def test_run_interrupted_before_any_case_says_so(tmp_path: Path) -> None:
    meta = {"run_id": "r0", "command": "python -m harness run", "interrupted": True,
            "started_at": "2026-01-28T10:00:00+00:00"}
    html = build(write_run(tmp_path / "run", meta, []))
    assert "no results" in html and "interrupted before any case finished" in html
    assert "0 ok" in html
    assert "<svg" not in html
    assert "unknown (no end recorded)" in html
    assert_all_sections(html)


def test_interrupted_run_with_rows_warns_the_report_is_partial(tmp_path: Path) -> None:
    meta = {"run_id": "r1", "interrupted": True}
    html = build(write_run(tmp_path / "run", meta, [row(n=n) for n in (16, 32)]))
    assert "interrupted: the report covers only the 2 cases" in html



def test_interrupted_run_names_the_signal_the_plan_and_how_to_resume(tmp_path: Path) -> None:
    meta = {"run_id": "r2", "interrupted": True, "interrupted_by": "SIGTERM", "n_cases": 5,
            "plan": [{"case_id": "x"}]}
    html = build(write_run(tmp_path / "r2", meta, [row(), row(n=64)]))
    assert ("interrupted by SIGTERM: the report covers only the 2 of the 5 planned cases that "
            "finished. python -m harness run --resume RUN_DIR") in html

def test_incomplete_run_counts_what_was_planned(tmp_path: Path) -> None:
    meta = {"run_id": "r3", "interrupted": False, "n_cases": 443}
    html = build(write_run(tmp_path / "r3", meta, [row(n=n) for n in (16, 32, 64)]))
    assert "3 of 443 planned" in html.split('id="overview"')[0]
    assert "in all" not in html.split('id="overview"')[0]


def test_many_problems_start_folded(tmp_path: Path) -> None:
    rows = [row(f"p{i}", n=n, err=1e-2 / n**4) for i in range(OPEN_MAX + 1) for n in (8, 16)]
    html = build(write_run(tmp_path / "run", {}, rows))
    problems = html.split('id="problems"')[1].split('id="convergence"')[0]
    assert problems.count('<details class="fold">') == OPEN_MAX + 1
    assert "<details class=\"fold\" open>" not in problems


def test_ok_case_with_no_correct_digits_is_flagged(tmp_path: Path) -> None:
    rows = [row(n=n, err=1e-2 / n**4) for n in (8, 16)] + [row(n=4, err=10.0)]
    html = build(write_run(tmp_path / "run", {}, rows))
    assert "1 ok case(s) have no correct digits" in html.split('id="problems"')[0]
    block = html.split('id="problem-linear"')[1].split("</section>")[0]
    assert block.count('<tr class="wrong" title="no correct digits">') == 1


def test_absent_optional_meta_keys_are_left_out_not_unknown(tmp_path: Path) -> None:
    html = build(write_run(tmp_path / "run", {"run_id": "r"}, [row(n=16)]))
    env = html.split('id="environment"')[1]
    assert "odebench_version" not in env and "suite settings" not in env


def test_run_where_every_case_failed_still_builds(tmp_path: Path) -> None:
    rows = [row(solver="dopri5", status="max_steps", n=None, rtol=r, message="too many steps")
            for r in (1e-3, 1e-6)]
    rows += [row(solver="euler", status="nonfinite", n=n, message="inf") for n in (8, 16)]
    html = build(write_run(tmp_path / "run", {"run_id": "bad"}, rows))
    assert_all_sections(html)
    assert "0 ok" in html and "4 failed" in html
    assert "<svg" not in html
    assert "No successful case" in html
    assert html.split('id="failures"')[1].count('class="status"') == 4


def test_meta_missing_entirely_shows_unknown(tmp_path: Path) -> None:
    html = build(write_run(tmp_path / "run", None, [row(n=n, err=1e-2 / n**4) for n in (8, 16)]))
    assert_all_sections(html)
    assert "unknown" in html
    assert "odebench report: run" in html  # the folder name stands in for the run id
    assert "1/n, as the problem" in html  # no time span: convergence plotted against 1/n


def test_malformed_meta_entries_do_not_break_the_report(tmp_path: Path) -> None:
    meta = {"environment": "not a dict", "problems": ["linear"], "solvers": None,
            "suite": 3, "started_at": "yesterday", "ended_at": 5}
    html = build(write_run(tmp_path / "run", meta, [row(n=n) for n in (8, 16)]))
    assert_all_sections(html)


def test_malformed_problem_entries_do_not_break_the_report(tmp_path: Path) -> None:
    meta = {"problems": {"linear": {"t_span": ["a", None], "tags": "stiff", "dim": "two"}},
            "solvers": {"rk4": "not a dict"}, "environment": {"cuda": "weird", "extra": [1]}}
    html = build(write_run(tmp_path / "run", meta, [row(n=n) for n in (8, 16)]))
    assert_all_sections(html)
    assert "[a, —]" in html


def test_problem_listed_in_meta_without_rows_is_shown(tmp_path: Path) -> None:
    meta = {"problems": {"kepler": {"tags": ["nonstiff"], "ref_kind": "exact"}}}
    html = build(write_run(tmp_path / "run", meta, [row(n=16)]))
    assert 'id="problem-kepler"' in html
    assert "No case of this problem finished" in html


def test_problem_names_that_slug_alike_get_distinct_ids(tmp_path: Path) -> None:
    rows = [row("a b", n=16), row("a-b", n=16), row("???", n=16)]
    html = build(write_run(tmp_path / "run", {}, rows))
    for anchor in ('id="problem-a-b"', 'id="problem-a-b-2"', 'id="problem-unnamed"'):
        assert anchor in html


def test_truncated_last_line_is_ignored(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", {}, [row(n=16)])
    with open(run / RESULTS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row(n=32))[:40])
    assert "1 in all" in build(run)


def test_missing_run_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "nope")
