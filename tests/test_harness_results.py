import json

import pandas as pd

from harness.results import COLUMN_NAMES, ResultsWriter, load_run, read_rows, write_csv


def test_rows_are_flushed_as_written_and_load_with_the_full_schema(tmp_path):
    writer = ResultsWriter(tmp_path)
    writer.write({"case_id": "a", "problem": "p", "nfe": 12, "err_max": float("nan")})
    # Visible on disk before close: an interrupted run keeps it.
    assert read_rows(tmp_path)[0]["case_id"] == "a"
    writer.close()
    meta, df = load_run(tmp_path)
    assert meta == {}
    assert tuple(df.columns[: len(COLUMN_NAMES)]) == COLUMN_NAMES
    assert df.loc[0, "nfe"] == 12 and str(df["nfe"].dtype) == "Int64"
    assert pd.isna(df.loc[0, "err_max"])


def test_nan_is_stored_as_json_null(tmp_path):
    with ResultsWriter(tmp_path) as w:
        w.write({"case_id": "a", "scd": float("inf")})
    line = (tmp_path / "results.jsonl").read_text().strip()
    assert json.loads(line)["scd"] is None


def test_unknown_column_is_refused(tmp_path):
    with ResultsWriter(tmp_path) as w:
        try:
            w.write({"case_id": "a", "speed": 1})
        except KeyError as exc:
            assert "speed" in str(exc)
        else:
            raise AssertionError("an unknown column was accepted")


def test_truncated_last_line_is_skipped(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"case_id": "a"}\n{"case_id": "b", "nf')
    assert [r["case_id"] for r in read_rows(tmp_path)] == ["a"]


def test_csv_has_no_raw_samples(tmp_path):
    with ResultsWriter(tmp_path) as w:
        w.write({"case_id": "a", "time_samples_s": [0.1, 0.2]})
    _, df = load_run(tmp_path)
    text = write_csv(tmp_path, df).read_text()
    assert "time_samples_s" not in text.splitlines()[0]
