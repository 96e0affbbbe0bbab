"""Step-size controllers and arithmetic backends in the report and in ``compare``.

A suite may run one solver under two controllers (``controller``: ``hairer``, ``pid``): two
sets of rows that differ only in that column. The report must keep them apart (two series,
curves, legend entries and table lines, labelled ``dopri5 · hairer`` and ``dopri5 · pid``),
a default-only run must read as before (``dopri5``), and ``compare`` must match each
controller with itself. ``backend`` (``host``: Python floats, ``tensor``: torch tensors) gets
a column in the case tables and a sentence where a solver's timings mix the two. Rows are
made by hand; a run without the columns reads them as ``""``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.compare import Mark, compare_frames, compare_runs, terminal_lines
from harness.results import RESULTS_FILE, to_frame, write_meta
from reports import findings as F
from reports import placement
from reports.build import render_report
from reports.figures import series_styles, work_precision_figure
from reports.gradients import add_labels
from reports.summary import add_series, solver_labels
from reports.training import with_train_columns

META = {"run_id": "controllers", "problems": {"p": {"tags": ["nonstiff"], "t_span": [0, 1]}}}
LADDER = ((2.0, 100, 1e-2), (4.0, 300, 1e-5), (7.0, 900, 1e-8))  # digits, NFE, rtol
PID, HAIRER = "dopri5 · pid", "dopri5 · hairer"
LIKE_WITH_LIKE = 'backend = "tensor" in the suite compares like with like'


def solve(solver: str, scd: float, nfe: float, rtol: float | None, *, n: int | None = None,
          problem: str = "p", batch: int = 1, scale: float = 1.0, **kw) -> dict:
    """One ok plain solve; ``kw`` adds columns (controller, backend) or replaces them."""
    setting = f"n={n}" if n is not None else f"rtol={rtol:.0e}"
    row = {"case_id": f"solve/{problem}/{solver}/{setting}/none/float64/cpu/b{batch}",
           "kind": "solve", "problem": problem, "solver": solver, "grad_mode": "none",
           "device": "cpu", "dtype": "float64", "batch": batch, "rtol": rtol, "atol": rtol,
           "n_steps_requested": n, "adaptive": n is None, "status": "ok", "message": "",
           "nfe": nfe, "n_steps": int(nfe // 6), "scd": scd, "err_max": 10.0 ** -scd,
           "time_median_s": nfe * 1e-6 * scale, "time_iqr_s": 0.0, "repeats": 5}
    return row | kw


def ladder(solver: str, scale: float = 1.0, nfe_scale: float = 1.0, **kw) -> list[dict]:
    return [solve(solver, d, n * nfe_scale, r, scale=scale, **kw) for d, n, r in LADDER]


def fixed(solver: str = "rk4", **kw) -> list[dict]:
    return [solve(solver, d, 4 * n, None, n=n, **kw) for d, n in ((2.0, 16), (4.0, 64),
                                                                  (6.0, 256))]


def frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as the loader gives them: every schema column, extra columns kept."""
    return to_frame(rows)


def two_controllers(**kw) -> list[dict]:
    """dopri5 under Hairer's controller and under PID (PID 20% dearer), rk4 and scipy."""
    return (ladder("dopri5", controller="hairer", **kw)
            + ladder("dopri5", 1.2, 1.2, controller="pid", **kw)
            + fixed(controller="constant") + ladder("scipy-rk45", 3.0, 1.5, controller=""))


def default_only(**kw) -> list[dict]:
    return (ladder("dopri5", controller="hairer", **kw) + fixed(controller="constant")
            + ladder("scipy-rk45", 3.0, 1.5, controller=""))


def without_columns(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("controller", "backend")} for r in rows]


@pytest.fixture(scope="module")
def split_html() -> str:
    return render_report(META, frame(two_controllers()))


@pytest.fixture(scope="module")
def default_html() -> str:
    return render_report(META, frame(default_only()))


def table(html: str, class_: str) -> str:
    (found,) = re.findall(rf'<table class="{class_}[^"]*".*?</table>', html, re.S)
    return found


def first_cells(table_html: str) -> list[str]:
    """The text of each body row's first cell."""
    body = table_html.split("<tbody>", 1)[1]
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<tr[^>]*>\s*<td[^>]*>(.*?)</td>",
                                                          body, re.S)]


def headers(table_html: str) -> list[str]:
    head = table_html.split("</thead>", 1)[0]
    return [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]


# --- labels --------------------------------------------------------------------------------


def test_two_controllers_of_one_solver_are_two_labels_and_others_keep_their_names():
    labels = solver_labels(frame(two_controllers()))
    assert sorted(set(labels)) == sorted({HAIRER, PID, "rk4", "scipy-rk45"})


@pytest.mark.parametrize("rows", [default_only(), without_columns(two_controllers())],
                         ids=["default-only", "no-columns"])
def test_one_controller_per_solver_keeps_the_plain_names(rows):
    assert set(solver_labels(frame(rows))) == {"dopri5", "rk4", "scipy-rk45"}
    assert set(add_series(frame(rows))["series"]) == {"dopri5", "rk4", "scipy-rk45"}


def test_a_row_without_a_controller_beside_two_recorded_ones_is_unrecorded():
    rows = two_controllers() + [solve("dopri5", 5.0, 500, 1e-6, controller=None)]
    assert "dopri5 · unrecorded" in set(solver_labels(frame(rows)))


def test_a_resumed_run_with_one_recorded_controller_is_one_solver():
    """Rows from before the column ("") and after it ("hairer") are one controller's."""
    rows = without_columns(ladder("dopri5"))[:2] + ladder("dopri5", controller="hairer")[2:]
    assert set(solver_labels(frame(rows))) == {"dopri5"}


def test_controller_labels_come_before_the_variant():
    rows = two_controllers() + ladder("dopri5", controller="pid", dtype="float32")
    series = set(add_series(frame(rows))["series"])
    assert {f"{PID} [float32]", f"{PID} [float64]", f"{HAIRER} [float64]"} <= series


def test_two_controllers_share_a_hue_family_but_not_a_style():
    styles = series_styles([HAIRER, PID, "rk4", "tde-dopri5"])
    assert styles[HAIRER] != styles[PID]
    assert len({styles[s].color for s in styles}) == 4


# --- work-precision data and figures ---------------------------------------------------------


def test_curves_keep_the_two_controllers_apart():
    curves = {c.series: c for c in F.curves(frame(two_controllers()))}
    assert set(curves) == {HAIRER, PID, "rk4", "scipy-rk45"}
    np.testing.assert_allclose(curves[HAIRER].nfe, [100, 300, 900])
    np.testing.assert_allclose(curves[PID].nfe, [120, 360, 1080])  # not averaged together


def test_standings_and_family_ranking_list_each_controller():
    df = frame(two_controllers())
    standings = F.problem_standings(F.curves(df))
    assert {s.series for s in standings[3.0]} == {HAIRER, PID, "rk4", "scipy-rk45"}
    (three, _) = F.family_findings(df, META["problems"])
    ranked = [r.series for r in three.ranking]
    assert sorted(ranked) == sorted([HAIRER, PID, "rk4", "scipy-rk45"])
    assert ranked.index(HAIRER) < ranked.index(PID)  # PID is 1.2x dearer here


def legend_labels(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_work_precision_figure_draws_one_line_and_legend_entry_per_controller():
    df = add_series(frame(two_controllers()))
    fig = work_precision_figure(df, series_styles(df["series"]), "p")
    labels = legend_labels(fig)
    assert sorted(labels) == sorted([HAIRER, PID, "rk4", "scipy-rk45"])
    nfe_axis = fig.axes[0]
    lines = {ln.get_label(): ln for ln in nfe_axis.get_lines()}
    np.testing.assert_allclose(lines[PID].get_xdata(), [120, 360, 1080])
    np.testing.assert_allclose(lines[HAIRER].get_xdata(), [100, 300, 900])


def test_default_only_figure_legend_is_the_solver_names():
    df = add_series(frame(default_only()))
    labels = legend_labels(work_precision_figure(df, series_styles(df["series"]), "p"))
    assert sorted(labels) == ["dopri5", "rk4", "scipy-rk45"]


# --- the report's tables ---------------------------------------------------------------------


def test_report_figure_and_tables_have_a_line_per_controller(split_html):
    svg = split_html[split_html.index('aria-label="p: work-precision"'):]
    svg = svg[: svg.index("</svg>")]
    assert HAIRER in svg and PID in svg
    cases = first_cells(table(split_html, "cases"))
    assert cases.count(HAIRER) == 3 and cases.count(PID) == 3 and "dopri5" not in cases
    standings = first_cells(table(split_html, "standings"))
    assert sorted(standings) == sorted([HAIRER, PID, "rk4", "scipy-rk45"])
    solvers = table(split_html, "solvers")
    assert sorted(first_cells(solvers)) == sorted([HAIRER, PID, "rk4", "scipy-rk45"])
    assert "controller" in headers(solvers)


def test_default_only_report_names_solvers_as_before(default_html):
    assert "dopri5 · " not in default_html
    assert set(first_cells(table(default_html, "cases"))) == {"dopri5", "rk4", "scipy-rk45"}
    assert sorted(first_cells(table(default_html, "standings"))) == ["dopri5", "rk4",
                                                                      "scipy-rk45"]


def test_a_run_without_the_columns_has_no_controller_or_backend_column():
    html = render_report(META, frame(without_columns(two_controllers())))
    assert "controller" not in headers(table(html, "solvers"))
    assert "backend" not in headers(table(html, "cases"))
    assert "mixed-backends" not in html


def test_failures_are_grouped_by_controller():
    rows = two_controllers() + [solve("dopri5", 0.0, 50, 1e-9, controller="pid",
                                      status="max_steps", message="too many steps",
                                      case_id="solve/p/dopri5/rtol=1e-09/pid")]
    html = render_report(META, frame(rows))
    failures = html[html.index('id="failures"'):html.index('id="environment"')]
    assert PID in failures and HAIRER not in failures


# --- backend ---------------------------------------------------------------------------------


def batches_on_two_backends() -> list[dict]:
    """dopri5 at batch 1 on the host, at batch 1000 on tensors; scipy with no backend."""
    return (ladder("dopri5", controller="hairer", backend="host")
            + ladder("dopri5", 5.0, controller="hairer", backend="tensor", batch=1000)
            + ladder("scipy-rk45", 3.0, controller="", backend=""))


@pytest.fixture(scope="module")
def host_html() -> str:
    """The default-only run with dopri5's rows on the host backend."""
    return render_report(META, frame(default_only(backend="host")))


def test_backend_column_appears_only_where_a_row_records_one(default_html, host_html):
    assert "backend" not in headers(table(default_html, "cases"))
    html = host_html
    head = headers(table(html, "cases"))
    assert "backend" in head and head.index("backend") == head.index("time") - 1
    body = table(html, "cases").split("<tbody>", 1)[1]
    assert body.count("<td>host</td>") == 3  # dopri5's; rk4's and scipy's are a dash
    assert body.count("<td>—</td>") == 6


def test_one_backend_per_solver_gives_no_sentence(host_html):
    assert "mixed-backends" not in host_html and "Timings mix" not in host_html


def test_a_solver_on_two_backends_across_batch_sizes_is_flagged_where_timings_are():
    df = frame(batches_on_two_backends())
    assert placement.mixed_backends(add_series(df)) == {
        "dopri5": "on host at batch 1 and on tensor at batch 1000"}
    html = render_report(META, df)
    for anchor in ('id="mixed-backends"', 'id="mixed-backends-environment"'):
        start = html.index(anchor)
        sentence = html[start:html.index("</p>", start)]
        assert "dopri5 ran on host at batch 1 and on tensor at batch 1000" in sentence
        assert LIKE_WITH_LIKE.replace('"', "&#34;") in sentence
    problem = html[html.index('id="problem-p"'):html.index('id="convergence"')]
    assert "Timings mix arithmetic backends" in problem
    assert {"dopri5 [1]", "dopri5 [1000]"} <= set(first_cells(table(html, "cases")))


def test_backends_told_apart_by_problem_when_batch_does_not():
    rows = (ladder("dopri5", backend="host") + ladder("dopri5", backend="tensor", problem="q"))
    assert placement.mixed_backends(frame(rows), key="solver") == {
        "dopri5": "on host for p and on tensor for q"}


def test_one_curve_never_mixes_backends():
    """The same ladder on two backends (a suite part that forces tensor) is two series."""
    rows = ladder("dopri5", backend="host") + [
        dict(r, case_id=r["case_id"] + "/tensor") for r in ladder("dopri5", 2.0,
                                                                  backend="tensor")]
    assert set(add_series(frame(rows))["series"]) == {"dopri5 · host", "dopri5 · tensor"}


# --- gradients and training ------------------------------------------------------------------


def test_gradient_ladders_are_labelled_by_controller():
    rows = [solve("dopri5", 5.0, 300, r, kind="gradient", grad_mode=m, controller=c)
            for r in (1e-3, 1e-6) for m in ("backprop", "adjoint") for c in ("hairer", "pid")]
    labels = add_labels(frame(rows))
    assert set(labels["label"]) == {HAIRER, PID}
    assert set(add_labels(frame(without_columns(rows)))["label"]) == {"dopri5"}


def test_training_labels_and_findings_name_the_controller():
    rows = [{"case_id": f"train/spiral/dopri5/{c}", "kind": "train", "problem": "spiral",
             "task": "spiral", "solver": "dopri5", "grad_mode": "adjoint", "controller": c,
             "status": "ok", "rtol": 1e-6, "atol": 1e-6, "time_to_target_s": t,
             "iteration_to_target": 10, "target_loss": 0.1}
            for c, t in (("hairer", 2.0), ("pid", 3.0))]
    assert set(with_train_columns(frame(rows))["label"]) == {HAIRER, PID}
    (finding,) = F.training_findings(frame(rows))
    assert finding.text.startswith(f"On spiral, {HAIRER} · adjoint reached the target")
    assert finding.runner_up == f"{PID} · adjoint"


# --- compare ---------------------------------------------------------------------------------


CMP_CASE = "solve/p/dopri5/rtol=1e-06/none/float64/cpu/b1"


def cmp_row(controller: str | None, samples: list[float], *, backend: str | None = None,
            case: str = CMP_CASE, **kw) -> dict:
    row = {"case_id": case, "kind": "solve", "problem": "p", "solver": "dopri5",
           "status": "ok", "nfe": 300, "n_steps": 50, "err_max": 1e-6, "scd": 6.0,
           "time_samples_s": samples, "time_median_s": float(np.median(samples))}
    if controller is not None:
        row["controller"] = controller
    if backend is not None:
        row["backend"] = backend
    return row | kw


FAST, SLOW = [1.0 + 0.01 * i for i in range(10)], [2.0 + 0.01 * i for i in range(10)]


def test_compare_matches_each_controller_with_itself():
    a = frame([cmp_row("hairer", FAST), cmp_row("pid", SLOW)])
    b = frame([cmp_row("pid", SLOW, nfe=301), cmp_row("hairer", FAST)])  # B in another order
    cases, only_a, only_b = compare_frames(a, b)
    assert (only_a, only_b) == ([], [])
    by = {c.controller: c for c in cases}
    assert by["hairer"].mark is Mark.SAME and not by["hairer"].figures
    assert by["pid"].mark is Mark.SAME
    assert [f.describe() for f in by["pid"].figures] == ["NFE 300 -> 301"]
    assert by["pid"].case_id.endswith(" · pid") and by["hairer"].case_id.endswith(" · hairer")


def test_compare_never_pairs_two_recorded_controllers_that_differ():
    cases, only_a, only_b = compare_frames(frame([cmp_row("hairer", FAST)]),
                                           frame([cmp_row("pid", SLOW)]))
    assert cases == []
    assert only_a[0].endswith(" · hairer") and only_b[0].endswith(" · pid")


@pytest.mark.parametrize("a_ctrl, b_ctrl", [(None, None), (None, "hairer"), ("hairer", None)],
                         ids=["neither-records", "old-against-new", "new-against-old"])
def test_a_run_without_the_columns_matches_as_unrecorded(a_ctrl, b_ctrl):
    cases, only_a, only_b = compare_frames(frame([cmp_row(a_ctrl, FAST)]),
                                           frame([cmp_row(b_ctrl, SLOW)]))
    assert (only_a, only_b) == ([], [])
    (case,) = cases
    assert case.mark is Mark.WORSE and case.case_id == CMP_CASE


def test_an_old_run_is_not_paired_with_one_of_two_controllers():
    """A records no controller; B holds the case under two: which one A ran is unknown."""
    cases, only_a, only_b = compare_frames(frame([cmp_row(None, FAST)]),
                                           frame([cmp_row("hairer", FAST), cmp_row("pid", FAST)]))
    assert cases == [] and len(only_a) == 1 and len(only_b) == 2
    assert len(set(only_b)) == 2


@pytest.mark.parametrize("after, mark", [(SLOW, Mark.WORSE), (FAST, Mark.SAME)])
def test_compare_lists_a_backend_change_and_still_compares_its_time(after, mark):
    """host in A, tensor in B: the same case run differently; the time says what it cost."""
    cases, only_a, only_b = compare_frames(frame([cmp_row("hairer", FAST, backend="host")]),
                                           frame([cmp_row("hairer", after, backend="tensor")]))
    (case,) = cases
    assert (only_a, only_b) == ([], [])
    assert case.mark is mark and case.changed and case.case_id == CMP_CASE
    assert [f.describe() for f in case.figures] == ["backend host -> tensor"]
    assert case.regression is (mark is Mark.WORSE)  # the change alone is no regression


def test_compare_pairs_like_backends_first():
    a = frame([cmp_row("hairer", FAST, backend="host"), cmp_row("hairer", SLOW, backend="tensor")])
    b = frame([cmp_row("hairer", SLOW, backend="tensor"), cmp_row("hairer", FAST, backend="host")])
    cases, only_a, only_b = compare_frames(a, b)
    assert (only_a, only_b) == ([], []) and all(c.mark is Mark.SAME for c in cases)
    assert {c.case_id.rsplit(" · ", 1)[1] for c in cases} == {"host", "tensor"}


def write_run(folder: Path, rows: list[dict]) -> Path:
    """A run folder; results.jsonl written line by line as the harness writes it."""
    folder.mkdir(parents=True)
    write_meta(folder, {"run_id": folder.name, "environment": {"cpu": "x", "hostname": "h"}})
    (folder / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows),
                                       encoding="utf-8")
    return folder


def test_compare_runs_keeps_controllers_apart_end_to_end(tmp_path):
    pid_case = f"{CMP_CASE}/controller=pid"  # harness.suite.Case.case_id of a chosen controller
    a = write_run(tmp_path / "a", [cmp_row("hairer", FAST), cmp_row("pid", FAST, case=pid_case)])
    b = write_run(tmp_path / "b", [cmp_row("hairer", FAST), cmp_row("pid", SLOW, case=pid_case)])
    comp, warnings = compare_runs(a, b)
    assert warnings == []
    marks = {c.controller: c.mark for c in comp.cases}
    assert marks == {"hairer": Mark.SAME, "pid": Mark.WORSE}
    lines = terminal_lines(comp)
    (slower,) = [x for x in lines if x.startswith("+")]
    assert pid_case in slower and " · " not in slower  # its own id names it: no suffix


def test_a_default_run_matches_the_same_controller_asked_for_by_name():
    """A: the default run (ids without a controller, rows say hairer); B: a suite that runs
    dopri5 under hairer and pid (ids end in /controller=...)."""
    a = frame([cmp_row("hairer", FAST)])
    b = frame([cmp_row("hairer", SLOW, case=f"{CMP_CASE}/controller=hairer"),
               cmp_row("pid", FAST, case=f"{CMP_CASE}/controller=pid")])
    cases, only_a, only_b = compare_frames(a, b)
    (case,) = cases
    assert case.controller == "hairer" and case.mark is Mark.WORSE
    assert case.case_id == f"{CMP_CASE}/controller=hairer"
    assert (only_a, only_b) == ([], [f"{CMP_CASE}/controller=pid"])


def test_a_forced_tensor_backend_matches_the_automatic_host_one():
    cases, only_a, only_b = compare_frames(
        frame([cmp_row("hairer", FAST, backend="host")]),
        frame([cmp_row("hairer", SLOW, backend="tensor", case=f"{CMP_CASE}/backend=tensor")]))
    (case,) = cases
    assert (only_a, only_b) == ([], []) and case.mark is Mark.WORSE
    assert [f.describe() for f in case.figures] == ["backend host -> tensor"]


# --- linear-algebra counts ------------------------------------------------------------------


def test_jacobian_lu_and_solve_columns_appear_only_where_an_implicit_solver_counts_them(
        default_html):
    assert not {"Jacobians", "LU", "solves"} & set(headers(table(default_html, "cases")))
    rows = default_only() + ladder("rodas4", 2.0, controller="hairer", njev=7, ndec=9, nsol=36)
    html = render_report(META, frame(rows))
    cases = table(html, "cases")
    head = headers(cases)
    assert head[head.index("rejected") + 1:head.index("rejected") + 4] == [
        "Jacobians", "LU", "solves"]
    body = cases.split("<tbody>", 1)[1]
    rodas = [tr for tr in re.findall(r"<tr[^>]*>.*?</tr>", body, re.S) if ">rodas4<" in tr]
    assert len(rodas) == 3
    counts = slice(head.index("Jacobians"), head.index("solves") + 1)
    for tr in rodas:
        assert row_cells(tr)[counts] == ["7", "9", "36"]
    explicit = [tr for tr in re.findall(r"<tr[^>]*>.*?</tr>", body, re.S) if ">rk4<" in tr]
    assert explicit and all(row_cells(tr)[counts] == ["—"] * 3 for tr in explicit)


def row_cells(tr: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
