"""`export --format pytest-benchmark`: the file pytest-benchmark's own `compare` reads."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.export import FORMATS, sample_stats
from harness.results import load_run

RUN = Path(__file__).resolve().parent / "fixtures" / "run_cmp_a"
STATS_KEYS = {"min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "iqr_outliers",
              "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total", "rounds",
              "iterations", "data"}


def _export(capsys, out: Path) -> tuple[int, str, dict]:
    code = main(["export", str(RUN), "--format", "pytest-benchmark", "--out", str(out)])
    printed = capsys.readouterr().out
    return code, printed, json.loads(out.read_text())


def test_export_writes_pytest_benchmark_schema(capsys, tmp_path):
    code, printed, doc = _export(capsys, tmp_path / "bench.json")
    assert code == 0
    assert set(doc) >= {"machine_info", "commit_info", "datetime", "version", "benchmarks"}
    for bench in doc["benchmarks"]:
        assert set(bench) >= {"group", "name", "fullname", "params", "stats", "options"}
        assert set(bench["stats"]) >= STATS_KEYS
        assert bench["stats"]["rounds"] == len(bench["stats"]["data"]) >= 7


def test_export_keeps_only_ok_cases_with_samples_and_says_how_many_were_left_out(capsys,
                                                                                 tmp_path):
    _, printed, doc = _export(capsys, tmp_path / "bench.json")
    _, df = load_run(RUN)
    ok = df[df["status"] == "ok"]
    assert sorted(b["name"] for b in doc["benchmarks"]) == sorted(ok["case_id"])
    assert printed.strip() == (f"wrote {tmp_path / 'bench.json'}: {len(ok)} case(s) as "
                               f"pytest-benchmark; left out: 1 not ok")


def test_exported_stats_are_those_of_the_raw_samples(capsys, tmp_path):
    _, _, doc = _export(capsys, tmp_path / "bench.json")
    _, df = load_run(RUN)
    samples = dict(zip(df["case_id"], df["time_samples_s"], strict=True))
    for bench in doc["benchmarks"]:
        data = samples[bench["name"]]
        st = bench["stats"]
        assert st["data"] == data
        assert st["median"] == statistics.median(data)
        assert st["min"] == min(data) and st["max"] == max(data)
        assert st["mean"] == pytest.approx(statistics.mean(data))
        assert st["ops"] == pytest.approx(len(data) / sum(data))


def test_sample_stats_quartiles_and_outliers():
    # pytest-benchmark's quartiles for odd n (not Tukey's hinges 1.5 and 52)
    st = sample_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (st["q1"], st["median"], st["q3"]) == (1.75, 3.0, 28.0)
    st = sample_stats([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 9.0])
    assert st["iqr_outliers"] == 1 and st["hd15iqr"] == 1.6 and st["ld15iqr"] == 1.0
    assert st["outliers"] == f"{st['stddev_outliers']};1"


def _pytest_benchmark() -> list[str]:
    exe = shutil.which("pytest-benchmark") or shutil.which("py.test-benchmark")
    if exe is None:
        candidate = Path(sys.executable).parent / "pytest-benchmark"
        exe = str(candidate) if candidate.exists() else None
    return [exe] if exe else [sys.executable, "-m", "pytest_benchmark"]


def test_pytest_benchmark_compare_reads_the_export(capsys, tmp_path):
    pytest.importorskip("pytest_benchmark")
    out = tmp_path / "0001_odebench.json"
    _, _, doc = _export(capsys, out)
    proc = subprocess.run([*_pytest_benchmark(), "compare", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Failed to load" not in proc.stdout + proc.stderr
    for bench in doc["benchmarks"]:
        assert bench["name"] in proc.stdout
    assert "benchmark 'linear'" in proc.stdout


def test_unknown_format_exits_2_listing_the_formats(capsys, tmp_path):
    code = main(["export", str(RUN), "--format", "csv", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"error: unknown --format 'csv'; valid formats: {', '.join(FORMATS)}"
    assert not (tmp_path / "x").exists()


def test_export_of_a_folder_that_is_not_a_run_exits_2(capsys, tmp_path):
    code = main(["export", str(tmp_path), "--format", "pytest-benchmark"])
    assert code == 2 and "is not a run folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------ review fixes

PB_FIELDS = ("q1", "q3", "iqr", "outliers", "ld15iqr", "hd15iqr", "iqr_outliers",
             "stddev_outliers", "min", "max", "median", "mean", "stddev", "rounds", "total")


def _pb_stats(data: list[float]) -> dict:
    stats = pytest.importorskip("pytest_benchmark.stats")
    st = stats.Stats()
    for x in data:
        st.update(x)
    return {f: getattr(st, f) for f in PB_FIELDS}


def test_stats_match_pytest_benchmark_on_an_outlier():
    ours = sample_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert {f: ours[f] for f in PB_FIELDS} == _pb_stats([1.0, 2.0, 3.0, 4.0, 100.0])


@pytest.mark.parametrize("n", [*range(1, 22), 40, 41, 99, 100])
def test_stats_match_pytest_benchmark_for_odd_and_even_n(n):
    import numpy as np

    rng = np.random.default_rng(n)
    data = list(map(float, rng.lognormal(-3.0, 0.3, n)))
    if n > 4:
        data[rng.integers(n)] *= 10  # an outlier
    ours = sample_stats(data)
    assert {f: ours[f] for f in PB_FIELDS} == _pb_stats(data)


def _run_with_samples(folder: Path, samples: dict[str, list]) -> Path:
    from harness.results import ResultsWriter, write_meta

    folder.mkdir()
    write_meta(folder, {"run_id": "r", "environment": {"cpu": "x"}})
    with ResultsWriter(folder) as w:
        for name, s in samples.items():
            w.write({"case_id": f"solve/linear/{name}", "kind": "solve", "problem": "linear",
                     "solver": name, "status": "ok", "time_samples_s": s})
    return folder


ODD = [None, "0.5", [1.0], float("inf"), float("nan"), -1.0, 0.0, True]


def test_export_keeps_only_valid_samples_and_leaves_out_cases_with_none(capsys, tmp_path):
    run = _run_with_samples(tmp_path / "run", {"mixed": ODD + [0.1, 0.2, 0.3],
                                               "junk": ODD, "empty": []})
    code = main(["export", str(run), "--format", "pytest-benchmark",
                 "--out", str(tmp_path / "b.json")])
    printed = capsys.readouterr().out
    assert code == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    (bench,) = doc["benchmarks"]
    assert bench["name"] == "solve/linear/mixed" and bench["stats"]["data"] == [0.1, 0.2, 0.3]
    assert "1 without a valid sample (finite, positive seconds)" in printed
    assert "1 without raw samples" in printed


def test_export_out_under_a_file_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    code = main(["export", str(RUN), "--format", "pytest-benchmark",
                 "--out", str(tmp_path / "file" / "b.json")])
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err and "Traceback" not in err


def test_export_out_in_an_unwritable_folder_is_a_usage_error(capsys, tmp_path, monkeypatch):
    import harness.export

    real = harness.export.os.access
    monkeypatch.setattr(harness.export.os, "access",
                        lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    code = main(["export", str(RUN), "--format", "pytest-benchmark",
                 "--out", str(tmp_path / "b.json")])
    assert code == 2 and f"the folder {tmp_path} is not writable" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
