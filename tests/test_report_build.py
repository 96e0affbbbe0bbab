"""The report built from the golden run tests/fixtures/run_small: structure and self-containment."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.results import REPORT_FILE
from reports.build import SECTION_IDS, build_report

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    path = build_report(FIXTURE, out=out)
    return path, path.read_text(encoding="utf-8")


def test_report_is_written_to_the_requested_path_as_one_file(report: tuple[Path, str]) -> None:
    path, _ = report
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_report_defaults_to_report_html_in_the_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    assert build_report(run) == run / REPORT_FILE
    assert (run / REPORT_FILE).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("section", SECTION_IDS)
def test_report_has_each_section(report: tuple[Path, str], section: str) -> None:
    assert f'id="{section}"' in report[1]


def test_sections_come_in_the_documented_order(report: tuple[Path, str]) -> None:
    positions = [report[1].index(f'id="{s}"') for s in SECTION_IDS]
    assert positions == sorted(positions)


def test_each_problem_gets_a_subsection(report: tuple[Path, str]) -> None:
    assert 'id="problem-linear"' in report[1]
    assert 'id="problem-robertson"' in report[1]


def test_figures_are_inline_svg(report: tuple[Path, str]) -> None:
    # two work-precision figures (one per problem) and one convergence figure (linear)
    assert report[1].count("<svg") == 3
    assert "<img" not in report[1]


def test_report_references_nothing_outside_itself(report: tuple[Path, str]) -> None:
    html = report[1]
    assert not re.search(r"https?://", html)
    assert not re.search(r"\bsrc\s*=", html, re.I)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert "@import" not in html
    assert not re.search(r"url\((?!#)", html)


def test_element_ids_are_unique_across_the_inlined_figures(report: tuple[Path, str]) -> None:
    ids = re.findall(r'\bid="([^"]+)"', report[1])
    assert len(ids) == len(set(ids))
    for ref in re.findall(r'href="#([^"]+)"', report[1]):
        assert ref in ids


def test_header_shows_counts_and_duration(report: tuple[Path, str]) -> None:
    html = report[1]
    assert "29 ok" in html and "4 failed" in html and "33 in all" in html
    assert "2 min 42 s" in html


def test_summary_marks_the_cheapest_solver_per_problem(report: tuple[Path, str]) -> None:
    summary = report[1].split('id="summary"')[1].split('id="problems"')[0]
    rk4_row = next(r for r in summary.split("<tr>") if r.startswith("<td>rk4</td>"))
    assert "★" in rk4_row  # rk4 is the cheapest on linear in the fixture
    radau_row = next(r for r in summary.split("<tr>") if r.startswith("<td>scipy-radau</td>"))
    assert "★" in radau_row  # and Radau on Robertson, where dopri5 only failed


def test_failures_table_lists_every_failed_case(report: tuple[Path, str]) -> None:
    failures = report[1].split('id="failures"')[1].split('id="environment"')[0]
    assert failures.count('class="status"') == 4
    assert "max_steps" in failures and "nonfinite" in failures
    # the message's <, & and " are escaped
    assert "&lt;at t=0&gt; &amp; &quot;atol&quot;" in failures


def test_plugin_solver_appears_like_any_other(report: tuple[Path, str]) -> None:
    assert "my-rk3" in report[1].split('id="convergence"')[1]


def test_environment_shows_versions_and_no_cuda(report: tuple[Path, str]) -> None:
    env = report[1].split('id="environment"')[1]
    assert "2.4.1+cpu" in env
    assert "<th>cuda</th><td>none</td>" in env


def test_report_is_deterministic(report: tuple[Path, str], tmp_path: Path) -> None:
    again = build_report(FIXTURE, out=tmp_path / "again.html").read_text(encoding="utf-8")
    assert again == report[1]
