"""Where cases ran, in the report: process/dask timings are flagged as untrusted, and times
from different hardware are never compared (series, standings, family findings, facets)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports import figures, placement
from reports import findings as F
from reports.build import build_report

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
NODE1 = "node1: AMD EPYC 7B13, 16 cores, 1 threads"
NODE2 = "node2: Intel Xeon 8375C, 8 cores, 1 threads"
UNTRUSTED = "ran beside other cases, contending for cores and memory bandwidth"


def solve(problem: str, solver: str, scd: float, nfe: float, time: float, rtol: float,
          **kw) -> dict:
    """One ok adaptive solve with the columns the findings read."""
    row = {"kind": "solve", "problem": problem, "solver": solver, "grad_mode": "none",
           "device": "cpu", "dtype": "float64", "batch": 1, "rtol": rtol, "atol": rtol,
           "n_steps_requested": None, "adaptive": True, "status": "ok", "nfe": nfe,
           "scd": scd, "time_median_s": time, "time_iqr_s": 0.0,
           "case_id": f"solve/{problem}/{solver}/{rtol}/{kw.get('hardware', '')}"}
    return row | kw


def ladder(problem: str, solver: str, time_scale: float, **kw) -> list[dict]:
    """Three rungs reaching 2, 4 and 7 digits; times ``time_scale`` × NFE × 1e-6."""
    return [solve(problem, solver, d, n, n * 1e-6 * time_scale, r, **kw)
            for d, n, r in ((2.0, 100, 1e-2), (4.0, 300, 1e-5), (7.0, 900, 1e-8))]


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype=object)


# --- executors -----------------------------------------------------------------------------


def test_a_row_without_an_executor_is_serial():
    df = frame([{"executor": None}, {"executor": "dask"}, {"executor": "serial"},
                {"executor": "dask"}, {"executor": "process"}])
    assert placement.executor_counts(df) == {"dask": 2, "process": 1, "serial": 2}
    assert placement.untrusted_counts(df) == {"dask": 2, "process": 1}
    assert placement.untrusted_counts(frame([{"solver": "x"}])) == {}


def test_untrusted_sentence_names_each_executor_and_its_count():
    df = frame([{"executor": "dask"}] * 3 + [{"executor": "process"}] + [{}])
    text = placement.untrusted_timing_text(df)
    assert text is not None and UNTRUSTED in text
    assert "3 row(s) from the dask executor and 1 from the process executor" in text
    assert "only serial timings are" in text
    assert placement.untrusted_timing_text(frame([{"executor": "serial"}, {}])) is None


# --- hardware in the findings --------------------------------------------------------------


def two_machines() -> pd.DataFrame:
    """fast and slow on node1; the same two on node2, where every time is 10× longer."""
    return frame(ladder("p", "fast", 1.0, hardware=NODE1) + ladder("p", "slow", 2.0,
                                                                    hardware=NODE1)
                 + ladder("p", "fast", 10.0, hardware=NODE2)
                 + ladder("p", "slow", 20.0, hardware=NODE2))


def test_a_solver_on_two_machines_is_two_series():
    curves = F.curves(two_machines())
    assert sorted(c.series for c in curves) == sorted(
        f"{s} [{hw}]" for s in ("fast", "slow") for hw in (NODE1, NODE2))
    assert {c.series: c.hardware for c in curves}[f"fast [{NODE2}]"] == NODE2


def test_no_time_ratio_crosses_hardware_labels():
    standings = F.problem_standings(F.curves(two_machines()), levels=(4.0,))[4.0]
    ratio = {s.series: s.time_ratio for s in standings}
    # fast on node2 is 10x slower than fast on node1, yet it is the best on its machine
    assert ratio[f"fast [{NODE1}]"] == pytest.approx(1.0)
    assert ratio[f"fast [{NODE2}]"] == pytest.approx(1.0)
    assert ratio[f"slow [{NODE1}]"] == pytest.approx(2.0)
    assert ratio[f"slow [{NODE2}]"] == pytest.approx(2.0)


def test_family_findings_rank_each_machine_on_its_own():
    found = F.family_findings(two_machines(), {"p": {"tags": ["nonstiff"]}}, levels=(4.0,))
    assert [(f.family, f.hardware) for f in found] == [("non-stiff", NODE1),
                                                       ("non-stiff", NODE2)]
    for f in found:
        assert {r.series for r in f.ranking} == {f"fast [{f.hardware}]",
                                                 f"slow [{f.hardware}]"}
        assert f.by_time.series == f"fast [{f.hardware}]"
        assert f.by_time.time_ratio_gmean == pytest.approx(1.0)
        assert f.group == f"non-stiff on {f.hardware}" and f.hardware in f.text


def test_time_fronts_are_per_machine():
    got = F.findings(two_machines(), {"problems": {"p": {"tags": ["nonstiff"]}}})
    assert set(got.fronts) == {f"p on {NODE1}", f"p on {NODE2}"}
    assert {p.series for p in got.fronts[f"p on {NODE2}"]} == {f"fast [{NODE2}]"}


def test_one_hardware_label_changes_no_series_and_no_finding():
    rows = ladder("p", "fast", 1.0) + ladder("p", "slow", 2.0)
    plain = frame(rows)
    labelled = frame([r | {"hardware": NODE1, "executor": "serial"} for r in rows])
    meta = {"problems": {"p": {"tags": ["nonstiff"]}}}
    a, b = F.findings(plain, meta), F.findings(labelled, meta)
    assert [c.series for c in F.curves(labelled)] == [c.series for c in F.curves(plain)]
    assert [c.hardware for c in F.curves(labelled)] == ["", ""]
    assert [f.text for f in b.solve] == [f.text for f in a.solve]
    assert [f.group for f in b.solve] == ["non-stiff", "non-stiff"]
    assert b.fronts == a.fronts


def test_rows_without_a_label_beside_labelled_ones_are_their_own_machine():
    rows = (ladder("p", "fast", 1.0, hardware=NODE1) + ladder("p", "fast", 5.0)
            + ladder("p", "fast", 9.0, hardware=NODE2))
    series = {c.series for c in F.curves(frame(rows))}
    assert f"fast [{placement.UNRECORDED_HARDWARE}]" in series and len(series) == 3


# --- hardware in the figures ---------------------------------------------------------------


def test_figures_facet_by_hardware_only_when_it_varies():
    data = figures.with_error(F._labelled(two_machines()))
    parts = figures.facets(data)
    assert [title for title, _ in parts] == [NODE1, NODE2]
    assert all(set(rows["hardware"]) == {title} for title, rows in parts)
    one = figures.with_error(F._labelled(frame(ladder("p", "fast", 1.0, hardware=NODE1))))
    assert [title for title, _ in figures.facets(one)] == [""]


# --- the report ----------------------------------------------------------------------------


def _rewrite(run: Path, change) -> Path:
    """``run``'s results.jsonl with each row ``change(i, row)``, appended rows included."""
    path = run / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    out = []
    for i, row in enumerate(rows):
        got = change(i, row)
        out += got if isinstance(got, list) else [got]
    path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    return run


def _copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / name))


def _section(html: str, section: str) -> str:
    return html.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]


def test_dask_and_process_rows_are_flagged_in_overview_and_environment(tmp_path):
    def executor(i: int, row: dict) -> dict:
        return row | {"executor": "dask" if i < 5 else "process" if i < 7 else "serial"}

    run = _rewrite(_copy(tmp_path, "run"), executor)
    html = build_report(run).read_text(encoding="utf-8")
    for section in ("overview", "environment"):
        part = _section(html, section)
        assert UNTRUSTED in part, section
        assert "5 row(s) from the dask executor and 2 from the process executor" in part
        assert "only serial timings are" in part
    env = _section(html, "environment")
    assert "<th>serial executor</th><td>26 row(s)</td>" in env


def test_a_run_without_executor_or_hardware_columns_reports_as_before(tmp_path):
    before = build_report(FIXTURE, out=tmp_path / "before.html").read_text(encoding="utf-8")
    run = _rewrite(_copy(tmp_path, "run"),
                   lambda i, row: row | {"executor": "serial", "hardware": NODE1})
    after = build_report(run).read_text(encoding="utf-8")
    assert UNTRUSTED not in before and 'id="machines"' not in before
    assert after == before  # one serial machine: the same page, byte for byte


@pytest.fixture(scope="module")
def two_machine_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """run_small on node1 and again on node2, where every time is 10× longer."""
    def twice(i: int, row: dict) -> list[dict]:
        other = row | {"case_id": row["case_id"] + "-node2", "hardware": NODE2}
        for key in ("time_median_s", "time_iqr_s", "time_min_s"):
            if isinstance(row.get(key), float):
                other[key] = row[key] * 10
        other["time_samples_s"] = [t * 10 for t in row.get("time_samples_s") or []]
        return [row | {"hardware": NODE1}, other]

    run = _rewrite(_copy(tmp_path_factory.mktemp("two"), "run"), twice)
    return build_report(run).read_text(encoding="utf-8")


def test_environment_lists_each_machine_with_its_rows(two_machine_report):
    env = _section(two_machine_report, "environment")
    assert 'id="machines"' in env
    for label in (NODE1, NODE2):
        assert f"<th>{label}</th><td>33 row(s)</td>" in env


def test_overview_picks_a_solver_per_machine(two_machine_report):
    overview = _section(two_machine_report, "overview")
    assert 'id="per-machine"' in overview
    picks = overview.split('<table class="picks">', 1)[1].split("</table>", 1)[0]
    rows = picks.split("<tbody>", 1)[1].split("<tr>")[1:]
    for label in (NODE1, NODE2):
        mine = [r for r in rows if f"on {label}</a>" in r]
        assert len(mine) == 2, label  # non-stiff and stiff, on this machine
        picked = [cell.split("</b>")[0] for r in mine for cell in r.split("<b>")[1:]]
        assert picked and all(p.endswith(f" [{label}]") for p in picked)
    assert overview.count("<h4>") == 2 * 2 * len(F.DIGIT_LEVELS)  # family x machine x level


def test_work_precision_figures_facet_by_machine(two_machine_report):
    problems = _section(two_machine_report, "problems")
    titles = re.findall(r"<text[^>]*>([^<]*)</text>", problems)
    for label in (NODE1, NODE2):
        assert titles.count(label) >= 2  # a panel title in each problem's figure
        assert f"dopri5 [{label}]" in problems  # two series of one solver, in the tables


def test_a_gpu_case_and_a_cpu_case_of_one_machine_stay_comparable():
    gpu = f"{NODE1}, NVIDIA H100"
    rows = (ladder("p", "fast", 1.0, hardware=NODE1)
            + ladder("p", "fast", 0.5, hardware=gpu, gpu_name="NVIDIA H100", device="cuda"))
    df = frame(rows)
    assert not placement.hardware_varies(df)
    assert placement.hardware_counts(df) == {NODE1: 3, gpu: 3}
    series = sorted(c.series for c in F.curves(df))
    assert series == ["fast [cpu]", "fast [cuda]"]  # by device, as before hardware labels
    ratio = {s.series: s.time_ratio for s in F.problem_standings(F.curves(df), (4.0,))[4.0]}
    assert ratio["fast [cpu]"] == pytest.approx(2.0)  # the GPU is compared on its machine
    other = frame(rows + ladder("p", "fast", 3.0, hardware=NODE2))
    assert sorted(placement.hardware_of(other).unique()) == [NODE1, NODE2]
