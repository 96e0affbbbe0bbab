"""The Training section, and keeping training rows out of the sections not meant for them.

Golden data: ``tests/fixtures/run_train`` (written by ``make_run_train.py``; at present its
``--synthetic`` form, hand-made rows and records that follow the schema), beside
``run_small`` (plain solves) and ``run_grad`` (gradient cases). Expected numbers are computed
from the fixture's own rows and records, so a fixture regenerated from a real run passes too.
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

from harness.results import RESULTS_FILE, ResultsWriter, open_run, read_records, write_meta
from reports import format as fmt
from reports.build import SECTION_IDS, build_report, render_report
from reports.markup import esc
from reports.training import (
    PAPER_TABLE1,
    backward_forward_ratio,
    derived_label,
    memory_class,
    paper_citation,
    paper_key,
    paper_rows,
    seminorm_pairs,
    table1_label,
    with_train_columns,
)

FIXTURES = Path(__file__).parent / "fixtures"
TRAIN = FIXTURES / "run_train"
SMALL = FIXTURES / "run_small"
GRAD = FIXTURES / "run_grad"
EVIL = "<script>alert(1)</script>"


def section(html: str, name: str) -> str:
    """The HTML of section ``name``, up to the next section of :data:`SECTION_IDS`."""
    nxt = SECTION_IDS[SECTION_IDS.index(name) + 1]
    return html.split(f'id="{name}"')[1].split(f'id="{nxt}"')[0]


def table(html: str, cls: str) -> list[list[str]]:
    """The body rows of the first table of class ``cls``, as cell texts."""
    body = html.split(f'<table class="{cls}">')[1].split("</table>")[0].split("<tbody>")[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S) for r in body.split("<tr>")[1:]]


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


def copy_train(dest: Path, rows: list[dict[str, Any]] | None = None,
               meta_from: Path = TRAIN, records: bool = True) -> Path:
    """A run folder with ``rows`` (default: the fixture's) and the fixture's records."""
    dest.mkdir(parents=True)
    shutil.copy(meta_from / "meta.json", dest / "meta.json")
    if records:
        shutil.copytree(TRAIN / "train", dest / "train")
    rows = read_jsonl(TRAIN / RESULTS_FILE) if rows is None else rows
    (dest / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows),
                                     encoding="utf-8")
    return dest


def train_row(**over: Any) -> dict[str, Any]:
    row = {"case_id": "train/spiral/dopri5/x/adjoint", "kind": "train", "problem": "spiral",
           "task": "spiral", "model": "ode", "solver": "dopri5", "grad_mode": "adjoint",
           "device": "cpu", "dtype": "float64", "batch": 20, "rtol": 1e-6, "atol": 1e-8,
           "status": "ok", "message": "", "iterations": 10, "iteration_reached": 10,
           "loss_first": 1.0, "loss_final": 0.1, "loss_best": 0.09, "target_loss": 0.05,
           "time_iter_median_s": 0.01, "nfe_iter_median": 26.0,
           "nfe_backward_iter_median": 14.0}
    row.update(over)
    return row


@pytest.fixture(scope="module")
def train_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("train") / "report.html"
    return build_report(TRAIN, out=out).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def fixture_df() -> pd.DataFrame:
    return with_train_columns(open_run(TRAIN).df)


def records_of(df: pd.DataFrame, **match: str) -> pd.DataFrame:
    rows = df
    for k, v in match.items():
        rows = rows[rows[k].astype(str) == v]
    assert len(rows) == 1, match
    return read_records(TRAIN, rows.iloc[0]["records_file"])


# --- the fixture ----------------------------------------------------------------------------


def test_fixture_is_small_and_every_records_file_exists() -> None:
    size = sum(p.stat().st_size for p in TRAIN.rglob("*") if p.is_file())
    assert size < 200_000
    for row in read_jsonl(TRAIN / RESULTS_FILE):
        assert row["kind"] == "train"
        if row["status"] == "ok" or row.get("records_file"):
            assert (TRAIN / row["records_file"]).is_file()


# --- the section on the fixture ---------------------------------------------------------------


def test_training_section_sits_between_gradients_and_failures(train_html: str) -> None:
    assert SECTION_IDS.index("training") == SECTION_IDS.index("gradients") + 1
    positions = [train_html.index(f'id="{s}"') for s in SECTION_IDS]
    assert positions == sorted(positions)
    assert '<a href="#training">training</a>' in train_html


@pytest.mark.parametrize("anchor", ["training-task-spiral", "training-seminorm",
                                    "training-peers", "training-figure3", "training-table1"])
def test_training_section_has_each_part(train_html: str, anchor: str) -> None:
    assert f'id="{anchor}"' in section(train_html, "training")


@pytest.mark.parametrize("cls", ["trainruns", "trainsemi", "trainpeers", "table1"])
def test_training_section_has_each_table(train_html: str, cls: str) -> None:
    assert f'<table class="{cls}">' in section(train_html, "training")


def test_training_figures_are_the_loss_curve_and_figure3(train_html: str,
                                                         fixture_df: pd.DataFrame) -> None:
    training = section(train_html, "training")
    fig3 = fixture_df[(fixture_df["solver"] == "dopri5") & (fixture_df["mode"] == "adjoint")]
    tasks = fixture_df.loc[~fixture_df["task"].eq("digits"), "task"].nunique()
    assert training.count("<svg") == tasks + len(fig3)
    assert 'aria-label="spiral: training loss"' in training
    assert re.search(r'aria-label="spiral: dopri5 rtol=[^"]* adjoint"', training)
    assert re.search(r'aria-label="digits: dopri5 [^"]* adjoint \(odenet\)"', training)
    assert "<svg" not in train_html.split('id="training"')[0]


def test_task_table_has_one_row_per_case(train_html: str, fixture_df: pd.DataFrame) -> None:
    rows = table(section(train_html, "training"), "trainruns")
    assert len(rows) == int((fixture_df["task"] == "spiral").sum())
    assert all("→" in r[4] for r in rows)  # loss first → final (best)


def test_seminorm_saving_is_computed_from_the_records(train_html: str,
                                                      fixture_df: pd.DataFrame) -> None:
    adj = records_of(fixture_df, task="spiral", solver="dopri5", mode="adjoint")
    semi = records_of(fixture_df, task="spiral", solver="dopri5", mode="adjoint-seminorm")
    a, s = adj["nfe_backward"].median(), semi["nfe_backward"].median()
    rows = table(section(train_html, "training"), "trainsemi")
    spiral = next(r for r in rows if r[0] == "spiral" and "dopri5" in r[1])
    assert spiral[5] == f"{100 * (a - s) / a:+.1f} %"
    assert "report a median saving of 40 %" in section(train_html, "training")


def test_peer_ratios_are_ours_over_torchdiffeq(train_html: str,
                                               fixture_df: pd.DataFrame) -> None:
    spiral = fixture_df[fixture_df["task"] == "spiral"]
    rows = table(section(train_html, "training"), "trainpeers")
    assert rows, "the fixture has dopri5 and tde-dopri5 in the same modes"
    for r in rows:
        mode = r[2]
        ours = spiral[(spiral["solver"] == "dopri5") & (spiral["mode"] == mode)].iloc[0]
        peer = spiral[(spiral["solver"] == "tde-dopri5") & (spiral["mode"] == mode)].iloc[0]
        want = ours["time_iter_median_s"] / peer["time_iter_median_s"]
        assert r[7] == f"{want:.2f}×"
        assert "torchdiffeq" in r[3]


def test_figure3_caption_states_the_backward_forward_ratio(train_html: str,
                                                           fixture_df: pd.DataFrame) -> None:
    rec = records_of(fixture_df, task="spiral", solver="dopri5", mode="adjoint")
    q = float(np.median(rec["nfe_backward"] / rec["nfe_forward"]))
    assert (f"Median backward / forward NFE over {len(rec)} iteration(s): {q:.3g} (the paper "
            "found about 0.5)") in section(train_html, "training")


def test_table1_rows_labels_and_paper_figures(train_html: str,
                                              fixture_df: pd.DataFrame) -> None:
    rows = table(section(train_html, "training"), "table1")
    digits = fixture_df[fixture_df["task"] == "digits"]
    assert len(rows) == len(digits)
    by = {r[0]: r for r in rows}
    for _, d in digits.iterrows():
        model, solver, mode = str(d["model"]), str(d["solver"]), str(d["mode"])
        r = by[table1_label(model, solver, mode)]
        paper = paper_rows().get(paper_key(model, solver, mode) or "")
        if paper is None:
            assert r[-4:] == ["—", "—", "—", "—"]
        else:
            assert r[-4:] == [f"{100 * paper.test_error:.2f} %", f"{paper.params / 1e6:.2f} M",
                              paper.memory, paper.time]
        assert r[3] == ("—" if pd.isna(d["test_error"]) else f"{100 * d['test_error']:.2f} %")
        assert r[7] == memory_class(d["saved_bytes_scaling"], d["saved_bytes_unit"])[1]
    models = [str(m) for m in digits["model"]]
    first = [table1_label(m, "none", "backprop") for m in ("mlp", "resnet") if m in models]
    assert [r[0] for r in rows[:len(first)]] == first
    assert esc(paper_citation()) in section(train_html, "training")


@pytest.fixture(scope="module")
def failed_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The fixture with its spiral rk4 case turned into one that stopped at iteration 3 of its
    planned ones (status nonfinite, records cut there), the way a diverging solver ends."""
    rows = read_jsonl(TRAIN / RESULTS_FILE)
    run = copy_train(tmp_path_factory.mktemp("failed") / "run", rows)
    for r in rows:
        if r.get("task") == "spiral" and r["solver"] == "rk4":
            r.update(status="nonfinite", message="the loss became nan", iteration_reached=3,
                     val_err=None)
            path = run / r["records_file"]
            lines = path.read_text(encoding="utf-8").splitlines()[:3]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (run / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows),
                                    encoding="utf-8")
    return build_report(run).read_text(encoding="utf-8")


def test_failed_case_shows_status_and_iteration_reached(failed_html: str,
                                                        fixture_df: pd.DataFrame) -> None:
    planned = int(fixture_df.loc[fixture_df["solver"] == "rk4", "iterations"].iloc[0])
    rows = table(section(failed_html, "training"), "trainruns")
    rk4 = next(r for r in rows if r[0] == "rk4")
    assert f"nonfinite at 3 / {planned}" in rk4[3]
    assert "rk4 backprop: nonfinite at iteration 3" in section(failed_html, "training")


def test_train_failures_show_the_iteration_reached(failed_html: str,
                                                   fixture_df: pd.DataFrame) -> None:
    failures = section(failed_html, "failures")
    failed = read_jsonl(TRAIN / RESULTS_FILE)
    n_failed = sum(r["status"] != "ok" for r in failed) + 1
    rows = table(failures, "failures trainfailures")
    assert len(rows) == n_failed
    planned = int(fixture_df.loc[fixture_df["solver"] == "rk4", "iterations"].iloc[0])
    rk4 = next(r for r in rows if r[0] == "spiral" and r[2] == "rk4")
    assert rk4[-1] == f"3 / {planned}" and "the loss became nan" in rk4[6]
    assert "iteration reached is how many optimiser steps" in failures
    assert "none: every case finished" not in failures  # no solve failures: no empty table


def test_training_report_is_deterministic(train_html: str, tmp_path: Path) -> None:
    again = build_report(TRAIN, out=tmp_path / "again.html").read_text(encoding="utf-8")
    assert again == train_html


# --- train rows stay out of the other sections -----------------------------------------------


@pytest.fixture(scope="module")
def pair_html(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Reports of run_small and run_grad alone and with training rows added. To keep this
    quick the added rows draw nothing: no records, and no Figure 3 case."""
    train = [r for r in read_jsonl(TRAIN / RESULTS_FILE)
             if not (r["solver"] == "dopri5" and r["grad_mode"] == "adjoint")]
    out = {}
    for name, src in (("small", SMALL), ("grad", GRAD)):
        alone = tmp_path_factory.mktemp(name) / "report.html"
        out[name] = build_report(src, out=alone).read_text(encoding="utf-8")
        mixed = copy_train(tmp_path_factory.mktemp(f"{name}-train") / "run",
                           read_jsonl(src / RESULTS_FILE) + train, meta_from=src,
                           records=False)
        out[f"{name}+train"] = build_report(mixed).read_text(encoding="utf-8")
    return out


@pytest.mark.parametrize("name", ["summary", "problems", "convergence", "gradients"])
@pytest.mark.parametrize("base", ["small", "grad"])
def test_training_rows_leave_other_sections_as_they_were(pair_html: dict[str, str], base: str,
                                                         name: str) -> None:
    assert section(pair_html[f"{base}+train"], name) == section(pair_html[base], name)


def test_gradient_failures_keep_their_labels_beside_training_rows(tmp_path: Path) -> None:
    """Series labels are made within each kind: a training row does not turn a failed
    gradient case's ``rk4 [adjoint]`` into ``rk4 [gradient, adjoint]``."""
    grad = [{"case_id": f"g/{m}", "kind": "gradient", "problem": "mlp", "solver": "rk4",
             "grad_mode": m, "n_steps_requested": 10, "status": s, "message": "",
             "device": "cpu", "dtype": "float64", "batch": 4}
            for m, s in (("backprop", "ok"), ("adjoint", "max_steps"))]
    html = build_report(write_run(tmp_path / "run", {}, grad + [train_row()])).read_text("utf-8")
    failures = section(html, "failures")
    assert "<td>rk4 [adjoint]</td>" in failures
    assert "[gradient" not in html and "[train" not in html


def test_mixed_run_still_has_the_training_section(pair_html: dict[str, str]) -> None:
    training = section(pair_html["small+train"], "training")
    assert '<table class="trainruns">' in training and '<table class="table1">' in training


def test_run_without_training_rows_has_one_line(pair_html: dict[str, str]) -> None:
    training = section(pair_html["small"], "training")
    assert "No training cases in this run." in training
    assert "<svg" not in training and "<table" not in training


# --- edge cases -------------------------------------------------------------------------------


def test_missing_records_file_keeps_the_row_and_says_so(tmp_path: Path,
                                                        fixture_df: pd.DataFrame) -> None:
    run = copy_train(tmp_path / "run")
    gone = fixture_df[(fixture_df["solver"] == "rk4") & (fixture_df["task"] == "spiral")]
    (run / gone.iloc[0]["records_file"]).unlink()
    training = section(build_report(run).read_text("utf-8"), "training")
    had = sum(1 for _, r in fixture_df.iterrows() if not fmt.is_missing(r["records_file"])
              and (TRAIN / r["records_file"]).is_file())
    assert f"No per-iteration records for {len(fixture_df) - had + 1} training case(s)" in training
    assert "rk4" in training.split("No per-iteration records")[1].split("</p>")[0]
    assert len(table(training, "trainruns")) == int((fixture_df["task"] == "spiral").sum())
    assert "1 case(s) without records are not drawn." in training


def test_records_outside_the_run_folder_are_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text(json.dumps({"iteration": 0, "loss": 1.0, "nfe_forward": 10,
                                   "nfe_backward": 5}) + "\n", encoding="utf-8")
    run = write_run(tmp_path / "run", {}, [train_row(records_file="../elsewhere.jsonl")])
    training = section(build_report(run).read_text("utf-8"), "training")
    assert "outside the run folder" in training
    assert "aria-label=\"spiral: training loss\"" not in training  # nothing drawn from it


def test_render_report_without_run_dir_notes_the_records(fixture_df: pd.DataFrame) -> None:
    run = open_run(TRAIN)
    html = render_report(run.meta, run.df)
    training = section(html, "training")
    assert "The run folder was not given" in training
    assert '<table class="trainruns">' in training
    assert 'aria-label="spiral: training loss"' not in training


def test_failed_train_row_without_numbers_builds(tmp_path: Path) -> None:
    rows = [train_row(), train_row(case_id="train/spiral/dopri5/x/backprop", grad_mode="backprop",
                                   status="error", message=f"boom {EVIL}", iteration_reached=0,
                                   loss_first=None, loss_final=None, loss_best=None,
                                   nfe_iter_median=None, time_iter_median_s=None)]
    html = build_report(write_run(tmp_path / "run", {}, rows)).read_text("utf-8")
    assert html.lower().count("<script") == 1  # the page's own script only
    training = section(html, "training")
    assert "error at 0 / 10" in training
    assert "boom &lt;script&gt;" in section(html, "failures")


def test_train_rows_with_only_the_common_columns_build(tmp_path: Path) -> None:
    """A training row from before the training columns existed."""
    rows = [{"case_id": "train/old", "kind": "train", "problem": "spiral", "solver": "dopri5",
             "grad_mode": "adjoint", "status": "ok", "message": "", "nfe": 100}]
    html = build_report(write_run(tmp_path / "run", {}, rows)).read_text("utf-8")
    training = section(html, "training")
    assert len(table(training, "trainruns")) == 1
    assert "No per-iteration records for 1 training case(s)" in training


def test_dataframe_without_training_columns_renders() -> None:
    """render_report on a frame that never went through the loader: no column is assumed."""
    df = pd.DataFrame([{"case_id": "t", "kind": "train", "problem": "spiral", "solver": "rk4",
                        "grad_mode": "backprop", "status": "ok", "message": "",
                        "n_steps_requested": 9, "rtol": None, "atol": None, "nfe": 36,
                        "device": "cpu", "dtype": "float64", "batch": 1,
                        "t_reached": None, "err_max": None, "n_steps": None,
                        "ref_kind": None, "ref_provenance": None}])
    training = section(render_report({}, df), "training")
    assert "n=9" in training


def test_hostile_task_and_solver_names_are_escaped(tmp_path: Path) -> None:
    rows = [train_row(case_id=f"a{EVIL}", problem=f"t{EVIL}", task=f"t{EVIL}",
                      solver=f"s{EVIL}", grad_mode="adjoint"),
            train_row(case_id=f"b{EVIL}", problem=f"t{EVIL}", task=f"t{EVIL}",
                      solver=f"s{EVIL}", grad_mode="adjoint-seminorm", status="nonfinite",
                      message=EVIL)]
    html = build_report(write_run(tmp_path / "run", {"run_id": EVIL}, rows)).read_text("utf-8")
    assert html.lower().count("<script") == 1  # the page's own script only
    assert "t&lt;script&gt;" in section(html, "training")


def test_run_of_only_nan_and_missing_lists_builds(tmp_path: Path) -> None:
    rows = [train_row(eval_rtol=[1e-3, None], eval_nfe=[10, float("nan")], eval_err=None,
                      eval_time_s="garbage", val_err=float("nan"),
                      saved_bytes_scaling=[[1, None], "x"], task="digits", problem="digits",
                      model="odenet")]
    html = build_report(write_run(tmp_path / "run", {}, rows)).read_text("utf-8")
    training = section(html, "training")
    assert '<table class="table1">' in training
    assert training.count("<svg") == 1  # Figure 3, its panels saying what is missing


# --- the numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("scaling", "unit", "klass"), [
    ([[1, 40_000], [2, 72_000], [4, 136_000]], "block", "O(L)"),
    ([[14, 2400], [26, 2400], [62, 2410]], "NFE", "O(1)"),
    ([[2, 10_000], [6, 40_000]], "step", "O(L̃)"),
    ([[3, 10_000]], "step", "—"),
    (None, None, "—"),
])
def test_memory_class_from_the_saved_bytes_ladder(scaling: object, unit: object,
                                                  klass: str) -> None:
    assert memory_class(scaling, unit)[1] == klass


def test_memory_class_fit_recovers_bytes_per_unit() -> None:
    fit, _ = memory_class([[u, 1000 + 512 * u] for u in (1, 2, 4, 8)], "block")
    assert fit.b == pytest.approx(512)


@pytest.mark.parametrize(("model", "solver", "mode", "label", "paper"), [
    ("mlp", "none", "backprop", "1-layer MLP", "1-layer MLP"),
    ("resnet", "none", "backprop", "ResNet", "ResNet"),
    ("odenet", "euler", "backprop", "ResNet (tied) = euler", None),
    ("odenet", "rk4", "backprop", "RK-Net (rk4)", "RK-Net"),
    ("odenet", "dopri5", "backprop", "RK-Net (dopri5)", "RK-Net"),
    ("odenet", "dopri5", "adjoint", "ODE-Net (dopri5, adjoint)", "ODE-Net"),
])
def test_table1_labels_and_paper_rows(model: str, solver: str, mode: str, label: str,
                                      paper: str | None) -> None:
    assert derived_label(model, solver, mode) == label
    assert paper_key(model, solver, mode) == paper


def test_paper_table_has_the_four_rows_of_the_paper() -> None:
    rows = paper_rows()
    assert set(rows) == {r.label for r in PAPER_TABLE1}
    assert rows["ODE-Net"].test_error == pytest.approx(0.0042)
    assert (rows["ODE-Net"].memory, rows["ODE-Net"].time) == ("O(1)", "O(L̃)")
    assert rows["ResNet"].params == pytest.approx(0.60e6)
    assert rows["1-layer MLP"].memory == "—"  # the paper prints none


def test_backward_forward_ratio_is_the_median_over_iterations() -> None:
    rec = pd.DataFrame({"nfe_forward": [20.0, 40.0, 0.0, 30.0],
                        "nfe_backward": [10.0, 30.0, 5.0, np.nan]})
    q, n = backward_forward_ratio(rec)
    assert n == 2 and q == pytest.approx(0.625)
    assert np.isnan(backward_forward_ratio(None)[0])


def test_seminorm_pairs_need_both_modes_and_ok_for_a_saving() -> None:
    rows = [train_row(case_id="a", grad_mode="adjoint", nfe_backward_iter_median=40.0),
            train_row(case_id="s", grad_mode="adjoint-seminorm", nfe_backward_iter_median=30.0),
            train_row(case_id="b", grad_mode="adjoint", solver="rk4", rtol=None, atol=None,
                      n_steps_requested=9),
            train_row(case_id="c", grad_mode="adjoint", task="lotka-volterra",
                      problem="lotka-volterra"),
            train_row(case_id="d", grad_mode="adjoint-seminorm", task="lotka-volterra",
                      problem="lotka-volterra", status="max_steps")]
    pairs = seminorm_pairs(with_train_columns(pd.DataFrame(rows)), {})
    assert [(p.task, p.label) for p in pairs] == [("lotka-volterra", "dopri5"),
                                                  ("spiral", "dopri5")]
    assert np.isnan(pairs[0].saving)
    assert pairs[1].saving == pytest.approx(0.25)
