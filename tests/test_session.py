"""The run's plan and folder rules, in process: what is isolated, how a plan is stored and read
back, which --out folders are refused, sizes and death messages."""

from __future__ import annotations

import json
import signal

import pytest

from harness import plugins
from harness.cli import main
from harness.results import RunFolderError
from harness.session import Isolation, check_out_dir, isolated, plan_from_record, plan_record
from harness.suite import Case
from harness.worker import death_message, parse_size

plugins.discover()


@pytest.mark.parametrize("solver, auto", [("rk4", False), ("dopri5", False),
                                          ("scipy-lsoda", False), ("hairer-dopri5", True),
                                          ("hairer-dop853", True)])
def test_auto_isolates_native_loops_and_nothing_else_builtin(solver, auto):
    case = Case("linear", solver, n_steps=8)
    assert isolated(case, Isolation.AUTO) is auto
    assert isolated(case, Isolation.ALWAYS) is True
    assert isolated(case, Isolation.NEVER) is False


def test_a_plan_round_trips_through_its_record():
    cases = [Case("linear", "rk4", n_steps=16),
             Case("mlp", "dopri5", rtol=1e-6, atol=1e-6, grad_mode="adjoint", kind="gradient",
                  batch=16)]
    record = json.loads(json.dumps(plan_record(cases)))
    assert plan_from_record(record, "meta.json") == cases


@pytest.mark.parametrize("change, says", [
    ({"case_id": "solve/linear/rk4/n=32/none/float64/cpu/b1"}, "its settings give"),
    ({"colour": "red"}, "fields this odebench does not know"),
])
def test_a_plan_this_version_cannot_read_is_refused(change, says):
    record = plan_record([Case("linear", "rk4", n_steps=16)])
    record[0].update(change)
    with pytest.raises(RunFolderError, match=says):
        plan_from_record(record, "meta.json")


def test_out_folders_that_cannot_hold_a_new_run(tmp_path):
    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(RunFolderError, match="is a file, not a run folder"):
        check_out_dir(afile)
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        check_out_dir(afile / "run")
    used = tmp_path / "used"
    used.mkdir()
    (used / "meta.json").write_text("{}")
    with pytest.raises(RunFolderError, match=f"--resume {used}"):
        check_out_dir(used)
    check_out_dir(tmp_path / "new" / "run")  # absent: fine
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty")  # an empty folder: fine


@pytest.mark.parametrize("out", ["{file}", "{file}/sub", "/proc/1/odebench-run"])
def test_bad_out_is_one_line_and_exit_2_and_leaves_no_run(tmp_path, capsys, out):
    afile = tmp_path / "f"
    afile.write_text("x")
    path = out.format(file=afile)
    code = main(["run", "--suite", "quick", "--solvers", "rk4", "--out", path, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert afile.read_text() == "x"


@pytest.mark.parametrize("flags, says", [
    (["--resume"], "--resume needs the run folder"),
    (["--resume", "{d}", "--out", "{d}x"], "name different folders"),
    (["--resume", "{d}", "--solvers", "rk4"], "takes no --solvers"),
    (["--resume", "{d}", "--seed", "3"], "takes no --seed"),
    (["--resume", "{d}"], "is not a run folder"),
    (["--case-memory", "1G", "--no-isolate"], "cannot go with --no-isolate"),
    (["--case-memory", "lots"], "is not a size"),
    (["--case-memory", "1M"], "less than a worker needs to start"),
    (["--resume", "{d}", "--no-isolate"], "takes no --no-isolate"),
    (["--resume", "{d}", "--plugin", "x.py"], "takes no --plugin"),
])
def test_run_flag_combinations_refused(tmp_path, capsys, flags, says):
    d = tmp_path / "r"
    d.mkdir()
    args = [f.format(d=d) for f in flags]
    try:
        code = main(["run", "--suite", "quick", "--quiet", *args]
                    if "--resume" not in args else ["run", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and says in err, err


@pytest.mark.parametrize("text, size", [("2G", 2 * 2**30), ("512M", 512 * 2**20),
                                        ("1.5g", int(1.5 * 2**30)), ("1000", 1000),
                                        ("64KiB", 64 * 2**10)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "-1G", "0", "two", "1e30T"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_death_messages_name_the_signal_or_the_exit_code():
    assert death_message(-signal.SIGSEGV, None) == (
        "the worker process running the case was killed by SIGSEGV (a segmentation fault)")
    assert "out-of-memory killer" in death_message(-signal.SIGKILL, None)
    assert "exited with code 3" in death_message(3, None)


def test_output_into_a_closed_pipe_is_no_traceback():
    # `python -m harness show RUN | head`: the reader goes away before the output is written.
    import os
    import subprocess
    import sys

    from cli_runner import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO))
    read, write = os.pipe()
    os.close(read)  # nobody will read
    proc = subprocess.run([sys.executable, "-m", "harness", "show", "--schema"], cwd=REPO,
                          env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 141
    assert "Traceback" not in proc.stderr


def _meta_of_a_run(tmp_path, *flags: str) -> dict:
    out = tmp_path / "run"
    assert main(["run", "--solvers", "rk4", "--problems", "linear", "--min-time", "0.001",
                 "--no-report", "--quiet", "--out", str(out), *flags]) == 0
    return json.loads((out / "meta.json").read_text())


def test_meta_records_the_version_and_the_settings_a_reader_needs(tmp_path):
    from importlib import metadata

    meta = _meta_of_a_run(tmp_path, "--steps", "8,16")
    assert meta["odebench_version"] == metadata.version("odebench")
    settings = meta["suite"]["settings"]
    assert settings["steps"] == [8, 16]
    assert settings["rtol"] == [1e-3, 1e-6, 1e-9]
    assert settings["devices"] == ["cpu"] and settings["dtypes"] == ["float64"]
    assert settings["batch"] == [1] and settings["grad_modes"] == ["none"]
    assert settings["timing"]["statistic"] == "median"
    assert "IQR" in settings["timing"]["spread"]
    assert settings["timing"]["min_time_s"] == 0.001
    assert {"warmup", "min_repeats", "max_time_s"} <= set(settings["timing"])
    assert settings["case_timeout_s"] > 0


def test_meta_lists_each_problems_own_ladder_when_the_suite_leaves_steps_to_it(tmp_path):
    from problems.nonstiff import build_linear

    meta = _meta_of_a_run(tmp_path)
    settings = meta["suite"]["settings"]
    assert settings["steps"] == "each problem's own ladder"
    assert settings["steps_by_problem"] == {"linear": {"rk4": list(build_linear().steps_for(4))}}


def test_a_stored_suite_with_its_settings_reads_back(tmp_path):
    from harness.session import suite_from_record

    meta = _meta_of_a_run(tmp_path, "--steps", "8")
    suite = suite_from_record(meta["suite"], "meta.json")
    assert suite.steps == (8,) and suite.name == "default"


def test_the_version_falls_back_when_odebench_is_not_installed(monkeypatch):
    from importlib import metadata

    from harness import session

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert session.odebench_version() == "unknown"
