"""The run-folder storage: results.jsonl never loses or doubles a row silently, meta.json is
versioned and replaced atomically, and odd values cannot crash the DataFrame."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.results import (
    COLUMN_NAMES,
    META_FILE,
    RESULTS_FILE,
    SCHEMA_VERSION,
    TORN_WHY,
    BadLine,
    ResultsFile,
    ResultsWriter,
    RunFolderError,
    drop_torn_tail,
    load_meta,
    load_run,
    open_run,
    read_results,
    read_rows,
    to_frame,
    write_meta,
)
from reports.build import build_report


def line(case_id: str, **extra: Any) -> str:
    return json.dumps({"case_id": case_id, "kind": "solve", **extra}) + "\n"


def write_results(run: Path, text: str | bytes) -> Path:
    path = run / RESULTS_FILE
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def ids(results: ResultsFile) -> list[str]:
    return [r["case_id"] for r in results.rows]


# ------------------------------------------------------------------------------ torn tail


def test_last_line_cut_mid_write_is_the_torn_tail(tmp_path: Path) -> None:
    torn = line("c", nfe=12)[:20]
    write_results(tmp_path, line("a") + line("b") + torn)
    res = read_results(tmp_path)
    assert ids(res) == ["a", "b"]
    assert res.bad_lines == []
    assert res.torn_tail == BadLine(3, torn, TORN_WHY)
    assert res.warnings(tmp_path) == [
        f"{tmp_path / RESULTS_FILE} line 3: incomplete last line (a case cut off mid-write); "
        "--resume drops it"]


def test_last_line_cut_inside_a_multibyte_character_is_the_torn_tail(tmp_path: Path) -> None:
    full = (json.dumps({"case_id": "b", "message": "é"}, ensure_ascii=False) + "\n").encode()
    write_results(tmp_path, line("a").encode() + full[: full.index("é".encode()) + 1])
    res = read_results(tmp_path)
    assert ids(res) == ["a"] and res.torn_tail is not None and res.bad_lines == []


def test_drop_torn_tail_truncates_then_appending_gives_a_clean_file(tmp_path: Path) -> None:
    write_results(tmp_path, line("a") + line("b") + line("c")[:15])
    cut = drop_torn_tail(tmp_path)
    assert cut is not None and cut.line_no == 3 and cut.why == TORN_WHY
    assert (tmp_path / RESULTS_FILE).read_text() == line("a") + line("b")
    with ResultsWriter(tmp_path) as w:
        w.write({"case_id": "c"})
    res = read_results(tmp_path)
    assert ids(res) == ["a", "b", "c"]
    assert res.bad_lines == [] and res.torn_tail is None
    assert drop_torn_tail(tmp_path) is None  # nothing more to cut


def test_drop_torn_tail_of_a_file_that_is_only_a_torn_line_empties_it(tmp_path: Path) -> None:
    write_results(tmp_path, '{"case_id": "a", "nf')
    assert drop_torn_tail(tmp_path) is not None
    assert (tmp_path / RESULTS_FILE).read_bytes() == b""


@pytest.mark.parametrize("text", ["", line("a"), line("a") + "\n\n"])
def test_drop_torn_tail_leaves_a_clean_file_alone(tmp_path: Path, text: str) -> None:
    write_results(tmp_path, text)
    assert drop_torn_tail(tmp_path) is None
    assert (tmp_path / RESULTS_FILE).read_text() == text


def test_drop_torn_tail_without_a_results_file_does_nothing(tmp_path: Path) -> None:
    assert drop_torn_tail(tmp_path) is None
    assert not (tmp_path / RESULTS_FILE).exists()


def test_complete_last_line_without_newline_is_a_row_and_gets_its_newline(tmp_path: Path) -> None:
    write_results(tmp_path, line("a") + line("b").rstrip("\n"))
    res = read_results(tmp_path)
    assert ids(res) == ["a", "b"] and res.torn_tail is None and res.bad_lines == []
    assert drop_torn_tail(tmp_path) is None
    with ResultsWriter(tmp_path) as w:
        w.write({"case_id": "c"})
    assert ids(read_results(tmp_path)) == ["a", "b", "c"]
    assert read_results(tmp_path).bad_lines == []


# ------------------------------------------------------------------------------ bad lines


def test_garbage_line_in_the_middle_is_reported_with_its_line_number(tmp_path: Path) -> None:
    garbage = '{"case_id": "solve/linear/rk4" "nfe": 12}'
    write_results(tmp_path, line("a") + line("b") + garbage + "\n" + line("c"))
    res = read_results(tmp_path)
    assert ids(res) == ["a", "b", "c"]
    assert res.torn_tail is None
    [bad] = res.bad_lines
    assert bad.line_no == 3 and bad.text == garbage
    assert bad.why == "not valid JSON (Expecting ',' delimiter: column 32)"
    assert res.warnings(tmp_path / RESULTS_FILE) == [
        f"{tmp_path / RESULTS_FILE} line 3: not valid JSON (Expecting ',' delimiter: column 32): "
        f"{garbage!r}"]


def test_bad_line_text_is_cut_to_about_80_characters(tmp_path: Path) -> None:
    garbage = "{" + "x" * 500
    write_results(tmp_path, garbage + "\n" + line("a"))
    [bad] = read_results(tmp_path).bad_lines
    assert len(bad.text) == 80 and bad.text.endswith("...")
    assert str(bad).startswith("line 1: not valid JSON")


def test_garbage_last_line_with_a_newline_is_a_bad_line_not_a_torn_tail(tmp_path: Path) -> None:
    write_results(tmp_path, line("a") + '{"case_id": "b", "nf\n')
    res = read_results(tmp_path)
    assert res.torn_tail is None and [b.line_no for b in res.bad_lines] == [2]


def test_invalid_utf8_line_is_reported(tmp_path: Path) -> None:
    write_results(tmp_path, line("a").encode() + b'{"case_id": "\xff"}\n' + line("b").encode())
    res = read_results(tmp_path)
    assert ids(res) == ["a", "b"]
    [bad] = res.bad_lines
    assert bad.line_no == 2 and bad.why == "not valid UTF-8 (byte 0xff at column 14)"


def test_blank_lines_are_ignored_but_counted(tmp_path: Path) -> None:
    write_results(tmp_path, line("a") + "\n   \n" + "oops\n" + line("b"))
    res = read_results(tmp_path)
    assert ids(res) == ["a", "b"] and [b.line_no for b in res.bad_lines] == [4]


def test_a_row_glued_to_a_torn_line_is_reported_not_dropped(tmp_path: Path) -> None:
    # what the old writer and resume could leave: a torn line, then the next row on the same line
    write_results(tmp_path, line("a") + line("b")[:12] + line("c") + line("d"))
    res = read_results(tmp_path)
    assert ids(res) == ["a", "d"] and [b.line_no for b in res.bad_lines] == [2]


def test_a_huge_integer_is_a_bad_line_not_a_crash(tmp_path: Path) -> None:
    write_results(tmp_path, '{"case_id": "a", "nfe": ' + "9" * 5000 + "}\n" + line("b"))
    res = read_results(tmp_path)
    assert ids(res) == ["b"] and res.bad_lines[0].why.startswith("not readable JSON")


@pytest.mark.parametrize(("text", "kind"), [("null", "null"), ("[1, 2]", "a list"),
                                            ("3", "a number"), ('"x"', "a string"),
                                            ("true", "true or false")])
def test_json_that_is_not_an_object_is_refused_naming_the_line(tmp_path: Path, text: str,
                                                               kind: str) -> None:
    write_results(tmp_path, line("a") + text + "\n" + line("b"))
    with pytest.raises(RunFolderError) as err:
        read_results(tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / RESULTS_FILE} line 2 is {kind}, not a result row")
    assert "\n" not in msg and "odebench did not write it" in msg


@pytest.mark.parametrize(("row", "what"), [({"kind": "solve"}, "no case_id"),
                                           ({"case_id": 7}, "case_id 7 is not a string"),
                                           ({"case_id": None}, "case_id None is not a string")])
def test_object_without_a_string_case_id_is_refused(tmp_path: Path, row: dict[str, Any],
                                                    what: str) -> None:
    write_results(tmp_path, line("a") + json.dumps(row) + "\n")
    with pytest.raises(RunFolderError, match=f"line 2 is not a result row \\({what}\\)"):
        read_rows(tmp_path)


def test_a_non_object_last_line_is_refused_by_drop_torn_tail_too(tmp_path: Path) -> None:
    write_results(tmp_path, line("a") + "[1, 2]")
    with pytest.raises(RunFolderError, match="line 2 is a list"):
        drop_torn_tail(tmp_path)
    assert (tmp_path / RESULTS_FILE).read_text() == line("a") + "[1, 2]"


def test_duplicate_case_ids_keep_the_first_row_and_report_the_rest(tmp_path: Path) -> None:
    write_results(tmp_path, line("a", nfe=1) + line("b") + line("a", nfe=2) + line("a", nfe=3))
    res = read_results(tmp_path)
    assert ids(res) == ["a", "b"] and res.rows[0]["nfe"] == 1
    assert [(b.line_no, b.why) for b in res.bad_lines] == [
        (3, "duplicate of line 1 (case_id 'a')"), (4, "duplicate of line 1 (case_id 'a')")]
    _, df = load_run(tmp_path)
    assert df["case_id"].tolist() == ["a", "b"]


def test_missing_results_file_reads_as_no_rows(tmp_path: Path) -> None:
    assert read_results(tmp_path) == ResultsFile([], [], None)
    assert read_rows(tmp_path) == []


def test_unreadable_results_file_is_a_run_folder_error(tmp_path: Path) -> None:
    (tmp_path / RESULTS_FILE).mkdir()
    with pytest.raises(RunFolderError, match=r"cannot read .*results.jsonl \(Is a directory\)"):
        read_results(tmp_path)


# ------------------------------------------------------------------------------ writer


def test_many_rows_written_read_back_equal(tmp_path: Path) -> None:
    rows = [{"case_id": f"solve/p{i}/rk4", "nfe": i, "err_max": 1.0 / (i + 1),
             "message": "ünïcode \"quoted\"\nnewline", "time_samples_s": [0.1] * (i % 50)}
            for i in range(500)]
    with ResultsWriter(tmp_path) as w:
        for r in rows:
            w.write(r)
    res = read_results(tmp_path)
    assert res.rows == rows and res.bad_lines == [] and res.torn_tail is None
    assert (tmp_path / RESULTS_FILE).read_bytes().count(b"\n") == len(rows)


def test_two_writers_appending_interleave_whole_lines(tmp_path: Path) -> None:
    with ResultsWriter(tmp_path) as w1, ResultsWriter(tmp_path) as w2:
        for i in range(50):
            w1.write({"case_id": f"one/{i}"})
            w2.write({"case_id": f"two/{i}"})
    res = read_results(tmp_path)
    assert len(res.rows) == 100 and res.bad_lines == []


def test_writer_refuses_a_row_without_a_string_case_id(tmp_path: Path) -> None:
    with ResultsWriter(tmp_path) as w, pytest.raises(ValueError, match="case_id"):
        w.write({"kind": "solve"})
    assert (tmp_path / RESULTS_FILE).read_bytes() == b""


def test_writer_descriptor_is_not_inherited(tmp_path: Path) -> None:
    with ResultsWriter(tmp_path) as w:
        assert w._fd is not None and not os.get_inheritable(w._fd)


def test_writer_cleans_nan_inside_nested_values(tmp_path: Path) -> None:
    with ResultsWriter(tmp_path) as w:
        w.write({"case_id": "a", "time_samples_s": [math.nan, 1.0], "scd": math.inf})
    row = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert row["time_samples_s"] == [None, 1.0] and row["scd"] is None


# ------------------------------------------------------------------------------ meta.json


def test_corrupt_meta_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text("")
    with pytest.raises(RunFolderError) as err:
        load_meta(tmp_path)
    assert str(err.value) == (
        f"{tmp_path / META_FILE} is corrupt (not valid JSON: Expecting value: line 1 column 1): "
        "it cannot be read or resumed; start a new run")


def test_truncated_meta_is_refused(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text('{"run_id": "x",\n  "seed"')
    with pytest.raises(RunFolderError, match="is corrupt .*line 2 column 9"):
        load_meta(tmp_path)


@pytest.mark.parametrize(("text", "kind"), [("[]", "a list"), ("null", "null"), ("1", "a number")])
def test_meta_that_is_not_an_object_is_refused(tmp_path: Path, text: str, kind: str) -> None:
    (tmp_path / META_FILE).write_text(text)
    with pytest.raises(RunFolderError, match=f"is corrupt \\({kind}, not a JSON object\\)"):
        load_meta(tmp_path)


def test_meta_from_a_newer_odebench_is_refused(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(RunFolderError) as err:
        load_meta(tmp_path)
    assert str(err.value) == (
        f"{tmp_path / META_FILE} was written by a newer odebench (results schema "
        f"{SCHEMA_VERSION + 1}; this one reads up to {SCHEMA_VERSION}): upgrade odebench to "
        "read it")


@pytest.mark.parametrize("version", ["2", 2.0, None, True, 0, -1])
def test_meta_with_a_schema_version_that_is_not_a_positive_int_is_refused(
        tmp_path: Path, version: Any) -> None:
    (tmp_path / META_FILE).write_text(json.dumps({"schema_version": version}))
    with pytest.raises(RunFolderError, match="schema_version .* is not a positive integer"):
        load_meta(tmp_path)


def test_old_meta_without_a_version_reads_as_version_1_and_is_not_rewritten(tmp_path: Path) -> None:
    text = json.dumps({"run_id": "old", "seed": 3})
    (tmp_path / META_FILE).write_text(text)
    assert load_meta(tmp_path) == {"run_id": "old", "seed": 3, "schema_version": 1}
    assert (tmp_path / META_FILE).read_text() == text


def test_missing_meta_reads_as_empty(tmp_path: Path) -> None:
    assert load_meta(tmp_path) == {}


def test_write_meta_stamps_the_version_and_leaves_no_temp_file(tmp_path: Path) -> None:
    meta: dict[str, Any] = {"run_id": "r"}
    write_meta(tmp_path, meta)
    assert meta["schema_version"] == SCHEMA_VERSION
    assert [p.name for p in tmp_path.iterdir()] == [META_FILE]
    assert load_meta(tmp_path) == {"run_id": "r", "schema_version": SCHEMA_VERSION}
    write_meta(tmp_path, {"run_id": "r2", "schema_version": 1})  # the caller's version is kept
    assert load_meta(tmp_path)["schema_version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [META_FILE]


def test_write_meta_that_fails_keeps_the_old_file_and_no_temp_file(tmp_path: Path,
                                                                    monkeypatch) -> None:
    write_meta(tmp_path, {"run_id": "old"})
    before = (tmp_path / META_FILE).read_text()

    def boom(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("harness.results.os.fsync", boom)
    with pytest.raises(OSError, match="No space"):
        write_meta(tmp_path, {"run_id": "new"})
    assert (tmp_path / META_FILE).read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [META_FILE]


# ------------------------------------------------------------------------------ open_run / frame


def test_open_run_collects_the_warnings(tmp_path: Path) -> None:
    write_meta(tmp_path, {"run_id": "r"})
    write_results(tmp_path, line("a") + "junk\n" + line("a") + line("b")[:10])
    run = open_run(tmp_path)
    assert run.meta["run_id"] == "r"
    assert run.df["case_id"].tolist() == ["a"]
    assert [w.split(": ", 1)[0] for w in run.warnings] == [
        f"{tmp_path / RESULTS_FILE} line {n}" for n in (2, 3, 4)]
    assert run.warnings == run.results.warnings(tmp_path)


def test_a_clean_run_has_no_warnings(tmp_path: Path) -> None:
    write_meta(tmp_path, {})
    write_results(tmp_path, line("a"))
    assert open_run(tmp_path).warnings == []


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_open_run_of_something_that_is_no_run_folder_is_a_run_folder_error(
        tmp_path: Path, make: str) -> None:
    target = tmp_path / "run"
    if make == "file":
        target.write_text("")
    elif make == "empty":
        target.mkdir()
    with pytest.raises(RunFolderError, match=str(target)) as err:
        load_run(target)
    assert isinstance(err.value, FileNotFoundError)  # what callers of the old loader catch


def test_load_run_turns_a_corrupt_meta_into_a_run_folder_error(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text("{")
    with pytest.raises(RunFolderError, match="is corrupt"):
        load_run(tmp_path)


def test_odd_value_types_do_not_crash_the_frame() -> None:
    odd: list[dict[str, Any]] = [
        {"case_id": "dict-in-number", "nfe": {"a": 1}, "err_max": {"x": 2}, "adaptive": "yes"},
        {"case_id": "list-in-string", "solver": [1, 2], "status": {"s": 1}, "order": [4]},
        {"case_id": "fraction-in-int", "nfe": 12.5, "n_steps": float("inf"), "batch": 2**70},
        {"case_id": "huge-int", "err_max": 10**400, "rtol": "1e-3", "adaptive": 2},
        {"case_id": "ok", "nfe": 7, "err_max": 1e-6, "adaptive": True, "solver": "rk4"},
        {"case_id": "bools", "nfe": True, "adaptive": 0, "extra_col": {"a": [1]}},
    ]
    df = to_frame(odd)
    assert tuple(df.columns[: len(COLUMN_NAMES)]) == COLUMN_NAMES
    assert str(df["nfe"].dtype) == "Int64" and str(df["err_max"].dtype) == "float64"
    assert str(df["adaptive"].dtype) == "boolean" and str(df["solver"].dtype) == "string"
    by = df.set_index("case_id")
    assert pd.isna(by.loc["dict-in-number", "nfe"]) and pd.isna(by.loc["dict-in-number", "err_max"])
    assert pd.isna(by.loc["dict-in-number", "adaptive"])
    assert by.loc["list-in-string", "solver"] == "[1, 2]"
    assert pd.isna(by.loc["fraction-in-int", "nfe"]) and pd.isna(by.loc["fraction-in-int", "batch"])
    assert pd.isna(by.loc["huge-int", "err_max"]) and by.loc["huge-int", "rtol"] == 1e-3
    assert by.loc["ok", "nfe"] == 7 and bool(by.loc["ok", "adaptive"]) is True
    assert by.loc["bools", "adaptive"] == False  # noqa: E712 (a pandas boolean scalar)
    assert by.loc["bools", "extra_col"] == {"a": [1]}


def test_odd_rows_on_disk_still_load(tmp_path: Path) -> None:
    write_results(tmp_path, line("a", nfe={"x": 1}, solver=[1], adaptive="maybe", order=1.5))
    _, df = load_run(tmp_path)
    assert len(df) == 1 and pd.isna(df.loc[0, "nfe"])


# ------------------------------------------------------------------------------ report


def test_report_shows_the_warnings_near_the_top(tmp_path: Path) -> None:
    write_meta(tmp_path, {"run_id": "r"})
    write_results(tmp_path, line("a", status="error", problem="p", solver="s")
                  + "<b>junk</b>\n" + line("b")[:12])
    html = build_report(tmp_path).read_text(encoding="utf-8")
    block = html.split('<div class="banner warnings">')[1].split("</div>")[0]
    # an apostrophe may be escaped or not; markup in a line must be
    assert "2 line(s) of this run's results could not be used" in block.replace("&#x27;", "'")
    assert "line 2: not valid JSON" in block and "&lt;b&gt;junk&lt;/b&gt;" in block
    assert "line 3: incomplete last line" in block
    assert html.index("banner warnings") < html.index('id="summary"')


def test_report_lists_at_most_ten_warnings(tmp_path: Path) -> None:
    write_results(tmp_path, line("a", status="error") + "junk\n" * 25)
    html = build_report(tmp_path).read_text(encoding="utf-8")
    block = html.split('<div class="banner warnings">')[1].split("</div>")[0]
    assert block.count("<li>") == 11 and "… and 15 more" in block


def _rows_file(run_dir: Path, n: int, monkeypatch) -> Path:
    run_dir.mkdir()
    row = {"kind": "solve", "problem": "linear", "solver": "rk4", "grad_mode": "none",
           "device": "cpu", "dtype": "float64", "batch": 1, "status": "ok", "message": "",
           "nfe": 260, "err_max": 1e-6, "time_median_s": 1e-3, "time_samples_s": [1e-3] * 3}
    with monkeypatch.context() as mp:
        mp.setattr(os, "fsync", lambda fd: None)  # not what is measured
        with ResultsWriter(run_dir) as writer:
            for k in range(n):
                writer.write({"case_id": f"solve/linear/rk4/n={k}/none/float64/cpu/b1",
                              "n_steps_requested": k, **row})
    return run_dir


def test_reading_results_takes_time_linear_in_the_rows(tmp_path, monkeypatch):
    """4x the rows take well under 16x the time (quadratic): the best of 3 reads of 2,000 and
    of 8,000 rows, measured in this test, compared as a ratio (no absolute time limit)."""
    import time

    small = _rows_file(tmp_path / "small", 2_000, monkeypatch)
    big = _rows_file(tmp_path / "big", 8_000, monkeypatch)

    def best_of_3(run_dir: Path) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            assert len(read_results(run_dir).rows) in (2_000, 8_000)
            times.append(time.perf_counter() - t0)
        return min(times)

    best_of_3(small)  # warm up
    assert best_of_3(big) / best_of_3(small) < 8.0
