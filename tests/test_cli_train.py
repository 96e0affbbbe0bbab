"""Training cases through the command line: suites, filters, records files, errors, resume."""

from __future__ import annotations

import json

from cli_runner import run_cli

from harness.results import load_run, read_records


def _suite(tmp_path, text: str):
    path = tmp_path / "train.toml"
    path.write_text(text)
    return str(path)


def test_quick_suite_plans_one_tiny_training_case(tmp_path):
    proc = run_cli("run", "--suite", "quick", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "train/spiral/dopri5/" in proc.stdout
    assert proc.stdout.count("train/") == 1


def test_a_training_suite_end_to_end(tmp_path):
    suite = _suite(tmp_path, 'tasks = ["spiral"]\nsolvers = ["dopri5", "rk4"]\n'
                   'grad_modes = ["backprop", "adjoint"]\ngrad_modes_fixed = ["backprop"]\n'
                   'rtol = [1e-6]\natol = [1e-8]\nsteps = [9]\niterations = 4\n')
    out = tmp_path / "run"
    proc = run_cli("run", "--suite", suite, "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    meta, df = load_run(out)
    assert list(df["kind"]) == ["train"] * 3
    assert set(zip(df["solver"], df["grad_mode"], strict=True)) == {
        ("dopri5", "backprop"), ("dopri5", "adjoint"), ("rk4", "backprop")}
    assert (df["status"] == "ok").all(), df["message"].tolist()
    assert (df["iteration_reached"] == 4).all()
    for _, row in df.iterrows():
        records = read_records(out, row["records_file"])
        assert list(records["iteration"]) == [0, 1, 2, 3]
        assert int(records["nfe_forward"].sum()) == row["nfe"]
        assert (out / row["records_file"]).is_file()
    assert (out / "report.html").is_file()
    assert all(c["kind"] == "train" for c in meta["plan"])


def test_solvers_and_grad_filter_training_cases(tmp_path):
    proc = run_cli("run", "--suite", "train", "--solvers", "dopri5", "--grad", "adjoint",
                   "--dry-run")
    assert proc.returncode == 0, proc.stderr
    ids = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("train/")]
    assert ids, proc.stdout
    assert all("/dopri5/" in i and "/adjoint/" in i for i in ids if "/digits/" not in i)
    # Table 1's baselines (no solver) stay; its rows of other solvers and modes go
    digits = [i for i in ids if "/digits/" in i]
    assert any("/none/" in i for i in digits)
    assert all("/none/" in i or ("/dopri5/" in i and "/adjoint/" in i) for i in digits)


def test_an_unknown_task_is_a_usage_error_with_the_nearest_name(tmp_path):
    proc = run_cli("run", "--suite", "train", "--tasks", "spirall", "--dry-run")
    assert proc.returncode == 2
    assert "unknown task 'spirall' (did you mean 'spiral'?)" in proc.stderr
    assert "valid tasks:" in proc.stderr


def test_problems_selection_leaves_the_default_suites_training_out():
    proc = run_cli("run", "--problems", "kepler", "--solvers", "dopri5", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "train/" not in proc.stdout


def test_list_shows_the_training_tasks():
    proc = run_cli("list")
    assert proc.returncode == 0, proc.stderr
    assert "Training tasks" in proc.stdout
    for name in ("spiral", "lotka-volterra", "digits"):
        assert name in proc.stdout


def test_a_resumed_training_run_reruns_only_what_has_no_row(tmp_path):
    suite = _suite(tmp_path, 'tasks = ["spiral"]\nsolvers = ["dopri5"]\n'
                   'grad_modes = ["backprop", "adjoint"]\nrtol = [1e-6]\natol = [1e-8]\n'
                   'iterations = 3\n')
    out = tmp_path / "run"
    assert run_cli("run", "--suite", suite, "--out", str(out), "--quiet",
                   "--no-report").returncode == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    (out / "results.jsonl").write_text(lines[0] + "\n")  # as if killed after the first case
    meta = json.loads((out / "meta.json").read_text())
    meta["complete"] = False
    (out / "meta.json").write_text(json.dumps(meta))
    proc = run_cli("run", "--resume", str(out), "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert "1 of 2 cases to go" in proc.stdout + proc.stderr
    _, df = load_run(out)
    assert len(df) == 2 and (df["status"] == "ok").all()
    assert df.iloc[0]["case_id"] == first["case_id"]
    # the resumed case's losses are those an uninterrupted run gives
    again = read_records(out, df.iloc[1]["records_file"])
    assert len(again) == 3


def test_a_task_plugin_trains_through_the_cli(tmp_path):
    from cli_runner import EXAMPLES

    out = tmp_path / "run"
    proc = run_cli("run", "--plugin", str(EXAMPLES / "pendulum_task.py"), "--suite", "train",
                   "--tasks", "pendulum", "--solvers", "dopri5", "--grad", "backprop",
                   "--iterations", "3", "--out", str(out), "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    _, df = load_run(out)
    assert list(df["task"]) == ["pendulum"] and list(df["status"]) == ["ok"]
    assert list(df["iteration_reached"]) == [3]
