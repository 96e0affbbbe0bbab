"""The report built from the golden run tests/fixtures/run_small: structure and self-containment."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from harness.results import REPORT_FILE
from reports import figures
from reports import findings as findings_module
from reports.build import SECTION_IDS, TOLERANCE_FIGURES, build_report
from reports.findings import FamilyFinding, FamilyRank, Findings, GradientFinding
from reports.format import NOISY_IQR_RATIO

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
    # per problem a work-precision figure and, where reports.figures draws one, a tolerance
    # figure (both problems have adaptive cases); one convergence figure (linear)
    tolerance = 2 if hasattr(figures, "tolerance_svg") and TOLERANCE_FIGURES else 0
    assert report[1].count("<svg") == 3 + tolerance
    assert "<img" not in report[1]


def test_report_references_nothing_outside_itself(report: tuple[Path, str]) -> None:
    html = report[1]
    assert not re.search(r"https?://", html)
    assert not re.search(r"\bsrc\s*=", html, re.I)
    assert "<link" not in html.lower()
    assert "@import" not in html
    assert not re.search(r"url\((?!#)", html)


def test_the_only_script_is_the_pages_own_inline_one(report: tuple[Path, str]) -> None:
    html = report[1]
    assert html.lower().count("<script") == 1 and "<script src" not in html.lower()
    assert not re.search(r"\son[a-z]+=", html)  # no inline handlers
    script = html[html.lower().index("<script>"):]
    assert "table.sortable" in script and script.rstrip().endswith("</html>")


def test_element_ids_are_unique_across_the_inlined_figures(report: tuple[Path, str]) -> None:
    ids = re.findall(r'\bid="([^"]+)"', report[1])
    assert len(ids) == len(set(ids))
    for ref in re.findall(r'href="#([^"]+)"', report[1]):
        assert ref in ids


def test_header_shows_counts_and_duration(report: tuple[Path, str]) -> None:
    html = report[1]
    assert "29 ok" in html and "4 failed" in html and "33 in all" in html
    assert "2 min 42 s" in html


def overview(html: str) -> str:
    return html.split('id="overview"')[1].split('id="problems"')[0]


def test_overview_comes_first_and_holds_the_summary(report: tuple[Path, str]) -> None:
    html = report[1]
    assert html.index('id="overview"') < html.index('id="summary"') < html.index('id="problems"')
    assert 'id="summary"' in overview(html)


def test_overview_lists_what_ran_and_counts_by_status(report: tuple[Path, str]) -> None:
    part = overview(report[1])
    assert "<th>suite</th><td>small</td>" in part
    assert "29 ok" in part and "2 max_steps" in part and "1 nonfinite" in part
    assert '<a href="#failures">Failures</a>' in part
    assert "repeats_min_time_s = 0.2" in part and "5 repeats per case" in part


def test_solvers_table_has_one_row_per_solver_with_its_method(report: tuple[Path, str]) -> None:
    table = overview(report[1]).split('<table class="solvers sortable">')[1].split("</table>")[0]
    rows = table.split("<tbody>")[1].split("<tr>")[1:]
    assert len(rows) == 7
    rk4 = next(r for r in rows if r.startswith("<td>rk4</td>"))
    assert "<td>explicit RK, fixed step</td>" in rk4 and "<td>no</td>" in rk4
    assert report[1].count("explicit RK, fixed step") == 3  # euler, rk4, my-rk3: once each
    assert 'class="summary"' not in report[1]  # the old per problem x solver table is gone


def test_headline_names_the_fastest_solver_per_family_and_level(
        report: tuple[Path, str]) -> None:
    part = overview(report[1])
    if "headline analysis is not available" in part:
        pytest.skip("reports.findings is not implemented yet")
    stiff6 = part.split("<h4>stiff problems, 6 digits")[1].split("</ul>")[0]
    assert "Fastest by time: scipy-radau" in stiff6
    assert 'class="ranking sortable"' in part


def test_each_problem_folds_with_a_standings_and_a_case_table(report: tuple[Path, str]) -> None:
    block = report[1].split('id="problem-linear"')[1].split("</section>")[0]
    assert '<details class="fold" open>' in block  # two problems: open by default
    assert '<table class="cases sortable">' in block and 'input type="search"' in block
    if "headline analysis is not available" not in report[1]:
        assert '<table class="standings sortable">' in block
    # numbers carry their raw value for sorting
    assert re.search(r'<td class="num" data-sort="[0-9.e+-]+">[0-9,]+</td>', block)


def test_noisy_times_are_marked(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    lines = (run / "results.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["time_iqr_s"] = first["time_median_s"] * (NOISY_IQR_RATIO + 0.1)
    lines[0] = json.dumps(first)
    (run / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    html = build_report(run).read_text(encoding="utf-8")
    assert html.count('class="num noisy"') == 1
    assert "noisy: IQR / median = 0.30 over 5 repeats" in html


def test_schema_explains_unknown_rejections(report: tuple[Path, str]) -> None:
    schema = report[1].split('id="schema"')[1]
    assert "n_rejected = -1 means unknown" in schema
    assert "<details" in schema


def test_stylesheet_has_the_nowrap_class(report: tuple[Path, str]) -> None:
    assert re.search(r"\.nowrap[^{]*\{ white-space: nowrap; \}", report[1])


def test_failures_are_grouped_by_status_then_solver(report: tuple[Path, str]) -> None:
    failures = report[1].split('id="failures"')[1].split('id="environment"')[0]
    assert failures.count('class="status"') == 4
    assert 'id="failures-max-steps">max_steps <span class="dim">(2 cases)' in failures
    assert "<summary>dopri5 <span class=\"dim\">(2)</span></summary>" in failures
    assert failures.index("failures-error") < failures.index("failures-max-steps")
    # the message's <, & and " are escaped
    assert "&lt;at t=0&gt; &amp; &#34;atol&#34;" in failures


def test_plugin_solver_appears_like_any_other(report: tuple[Path, str]) -> None:
    assert "my-rk3" in report[1].split('id="convergence"')[1]


def test_environment_shows_versions_and_no_cuda(report: tuple[Path, str]) -> None:
    env = report[1].split('id="environment"')[1]
    assert "2.4.1+cpu" in env
    assert "<th>cuda</th><td>none</td>" in env
    assert "<th>odebench_version</th><td>0.1.0</td>" in env
    assert "How time was measured" in env and "median wall time" in env


def test_report_is_deterministic(report: tuple[Path, str], tmp_path: Path) -> None:
    again = build_report(FIXTURE, out=tmp_path / "again.html").read_text(encoding="utf-8")
    assert again == report[1]


# --- the overview against hand-made findings -----------------------------------------------


def _rank(series: str, time: float, nfe: float, wins: int = 0) -> FamilyRank:
    return FamilyRank(series=series, n_reached=2, n_problems=2, time_ratio_gmean=time,
                      nfe_ratio_gmean=nfe, wins_time=wins, wins_nfe=wins)


def test_overview_renders_hand_made_findings(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    best, other = _rank("fast<b>", 1.0, 1.2, wins=2), _rank("slow", 2.5, 1.0)
    finding = FamilyFinding(family="stiff", digits=6.0, problems=("a", "b"), by_time=best,
                            by_nfe=other, ranking=(best, other))
    grad = GradientFinding(problem="mlp", least_memory_mode="adjoint", least_memory_bytes=2048,
                           fastest_mode="backprop", fastest_time_s=0.012,
                           grad_error_level=1e-6, text="unused")
    monkeypatch.setattr(findings_module, "findings",
                        lambda df, meta, **_: Findings(solve=[finding], gradients=[grad]))
    html = build_report(FIXTURE, out=tmp_path / "r.html").read_text(encoding="utf-8")
    part = overview(html)
    assert "<h4>stiff problems, 6 digits" in part
    assert "Fastest by time: fast&lt;b&gt; (reached it on 2 of 2 problems, the best on 2; " \
           "the next, slow, " \
           "takes 2.50× as long)" in part
    assert "Fewest NFE: slow" in part and "fast&lt;b&gt;, takes 1.20× as many" in part
    assert part.count("<tr><td class=\"num\" data-sort=") == 2  # the ranking's rows
    assert "mlp: least memory: adjoint (2,048 bytes" in part and "backprop (12 ms)" in part


def test_build_survives_an_analysis_that_is_not_there(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise NotImplementedError

    for name in ("findings", "family_findings", "curves", "problem_standings",
                 "no_correct_digits"):
        monkeypatch.setattr(findings_module, name, missing)
    html = build_report(FIXTURE, out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert "The headline analysis is not available" in overview(html)
    assert '<table class="cases sortable">' in html  # every case is still there
    for section in SECTION_IDS:
        assert f'id="{section}"' in html
