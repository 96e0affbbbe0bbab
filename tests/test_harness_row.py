"""The typed result row: harness.results.Row is COLUMNS as a dataclass, refuses what is not a
column or not of its column's type, and writes the lines results.jsonl always had."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness import plugins
from harness.results import (
    COLUMN_NAMES,
    COLUMNS,
    RESULTS_FILE,
    UNSET,
    ResultsWriter,
    Row,
    RowError,
    _check_row_schema,
    load_run,
    read_results,
)
from harness.runner import ProblemCache, run_case
from harness.suite import Case, Suite
from solvers.base import Status


def test_row_fields_are_the_columns_in_order():
    assert tuple(f.name for f in dataclasses.fields(Row)) == COLUMN_NAMES


def test_controller_and_backend_follow_the_solver_description():
    i = COLUMN_NAMES.index("adaptive")
    assert COLUMN_NAMES[i + 1: i + 3] == ("controller", "backend")
    assert {c.name: c.dtype for c in COLUMNS}["controller"] == "string"


def test_the_schema_check_names_a_column_missing_from_the_row(monkeypatch):
    import harness.results as results

    monkeypatch.setattr(results, "COLUMN_NAMES", COLUMN_NAMES + ("new_column",))
    with pytest.raises(RuntimeError, match=r"missing: \['new_column'\]"):
        _check_row_schema()


@pytest.mark.parametrize("build", [
    lambda: Row(case_id="a", nfee=3),
    lambda: Row(case_id="a").update(nfee=3),
])
def test_a_row_refuses_an_unknown_column_by_name(build):
    with pytest.raises(RowError, match=r"no column 'nfee' \(did you mean 'nfe'\?\)"):
        build()


def test_setting_an_unknown_attribute_is_refused_too():
    row = Row(case_id="a")
    with pytest.raises(RowError, match="no column 'nfee'"):
        row.nfee = 3


@pytest.mark.parametrize("status", ["ok", "fine", 0])
def test_a_row_refuses_a_status_that_is_not_a_status(status):
    with pytest.raises(RowError, match="'status' takes a solvers.base.Status"):
        Row(case_id="a", status=status)
    with pytest.raises(RowError, match="'status_backward' takes a solvers.base.Status"):
        Row(case_id="a", status_backward=status)


@pytest.mark.parametrize("column, value", [
    ("nfe", 2.5), ("nfe", True), ("err_max", "small"), ("adaptive", 1), ("solver", 3),
    ("time_samples_s", 0.1),
])
def test_a_row_refuses_a_value_of_the_wrong_type_for_its_column(column, value):
    with pytest.raises(RowError, match=f"result column {column!r} takes"):
        Row(case_id="a", **{column: value})


def test_none_and_nan_are_values_of_every_column():
    row = Row(case_id="a", nfe=None, err_max=float("nan"), adaptive=None, status=None)
    assert row.to_dict() == {"case_id": "a", "adaptive": None, "status": None, "nfe": None,
                             "err_max": row.err_max}
    assert list(row.to_dict()) == ["case_id", "adaptive", "status", "nfe", "err_max"]


def test_to_dict_holds_the_set_columns_in_the_order_first_set_with_a_plain_status():
    # the constructor's in schema order, then as set: the order rows built as dicts had
    row = Row(status=Status.MAX_STEPS, case_id="a", nfe=3)
    row.update(backend="host", controller="pid", nfe=4)
    row.wall_s = 0.5
    d = row.to_dict()
    assert list(d) == ["case_id", "status", "nfe", "backend", "controller", "wall_s"]
    assert d["nfe"] == 4
    assert type(d["status"]) is str and d["status"] == "max_steps"
    assert row.n_steps is UNSET and "n_steps" not in d
    row.update(backend=UNSET)  # unset again: left out
    assert "backend" not in row.to_dict()


def test_a_row_pickles_with_its_columns_and_their_order():
    import pickle

    row = Row(case_id="a").update(wall_s=1.0, nfe=2)
    assert list(pickle.loads(pickle.dumps(row)).to_dict()) == ["case_id", "wall_s", "nfe"]


def test_a_numpy_integer_is_stored_as_an_int():
    np = pytest.importorskip("numpy")
    row = Row(case_id="a", nfe=np.int64(7))
    assert type(row.nfe) is int and json.dumps(row.to_dict())


def test_the_writer_writes_a_row_as_its_dict(tmp_path):
    with ResultsWriter(tmp_path) as w:
        w.write(Row(case_id="a", status=Status.OK, nfe=3))
    line = (tmp_path / RESULTS_FILE).read_text()
    assert line == '{"case_id": "a", "status": "ok", "nfe": 3}\n'


def test_a_results_file_without_the_controller_columns_still_loads(tmp_path):
    old = {"case_id": "solve/linear/rk4/n=16/none/float64/cpu/b1", "kind": "solve",
           "problem": "linear", "solver": "rk4", "status": "ok", "nfe": 64}
    (tmp_path / RESULTS_FILE).write_text(json.dumps(old) + "\n")
    _, df = load_run(tmp_path)
    assert tuple(df.columns[: len(COLUMN_NAMES)]) == COLUMN_NAMES
    assert df["controller"].isna().all() and df["backend"].isna().all()
    assert df.loc[0, "nfe"] == 64
    assert read_results(tmp_path).rows == [old]


@pytest.fixture(scope="module")
def _registry():
    plugins.discover()


@pytest.mark.parametrize("case", [
    Case("linear", "rk4", n_steps=16),
    Case("linear", "scipy-rk45", rtol=1e-6, atol=1e-6),
    Case("linear", "no-such-solver", n_steps=16),  # an error row
])
def test_every_row_the_runner_builds_is_made_of_columns_and_says_what_ran(_registry, case):
    suite = Suite("s", min_time=0.0, min_repeats=1, max_time=0.0)
    row = run_case(case, ProblemCache(), suite)
    assert set(row) <= set(COLUMN_NAMES)
    assert "controller" in row and "backend" in row
    assert Status(row["status"]) in Status and type(row["status"]) is str
    if case.solver == "no-such-solver":
        assert row["status"] == "error" and row["controller"] == ""
    elif case.solver == "scipy-rk45":
        assert row["controller"] == "" and row["backend"] == ""  # scipy steps by its own rule
    Row(**{**row, "status": Status(row["status"])})  # a written row reads back as a Row
