"""End-to-end runs of the CLI, as a user types them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cli_runner import EXAMPLES, REPO, run_cli

from harness.results import load_run

REPORT_SECTIONS = ['id="summary"', 'id="convergence"', 'id="failures"', 'id="environment"']


def test_quick_suite_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--suite", "quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last == f"Report: {out / 'report.html'}"
    meta, df = load_run(out)
    # 2 problems x (2 fixed-step solvers x 4 step counts + 2 adaptive x 2 tolerances), and one
    # tiny training case
    assert (df["kind"] == "train").sum() == 1
    train, df = df[df["kind"] == "train"], df[df["kind"] != "train"]
    assert len(df) == 2 * (2 * 4 + 2 * 2)
    assert set(df["status"]) == {"ok"} and set(train["status"]) == {"ok"}
    assert (df["nfe"] > 0).all() and df["err_max"].notna().all()
    assert (df["nfe"] == df["nfe_solver"]).all()
    assert meta["interrupted"] is False and meta["ended_at"]
    for key in ("command", "environment", "seed", "suite", "problems", "solvers"):
        assert key in meta
    assert (out / "results.csv").exists()
    html = (out / "report.html").read_text()
    for section in REPORT_SECTIONS:
        assert section in html
    assert "<svg" in html
    assert "ETA" in proc.stderr  # the progress bar


def test_explicit_solver_on_stiff_problem_ends_by_its_budget(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--problems", "robertson", "--solvers", "dopri5", "--rtol", "1e-6",
                   "--max-steps", "300", "--out", str(out), "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    _, df = load_run(out)
    row = df.iloc[0]
    assert row["status"] == "max_steps"
    assert row["n_steps"] <= 300
    assert row["t_reached"] < 1e11
    assert "300" in row["message"]


def test_solver_that_raises_becomes_an_error_row_and_the_run_goes_on(tmp_path):
    plugin = tmp_path / "raising.py"
    plugin.write_text(
        "from harness.registry import register_solver\n"
        "from solvers.base import Solver\n"
        "@register_solver('raiser')\n"
        "class Raiser(Solver):\n"
        "    name = 'raiser'; order = 1; adaptive = False\n"
        "    def solve(self, f, y0, t, **kw):\n"
        "        raise ZeroDivisionError('deliberate failure')\n"
    )
    out = tmp_path / "run"
    proc = run_cli("run", "--plugin", str(plugin), "--solvers", "raiser,rk4",
                   "--problems", "linear", "--steps", "32", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    _, df = load_run(out)
    by_solver = df.set_index("solver")
    assert by_solver.loc["raiser", "status"] == "error"
    message = by_solver.loc["raiser", "message"]
    assert "ZeroDivisionError: deliberate failure" in message  # the original type
    assert "raising.py:7 in solve" in message  # and where in the plugin it was raised
    assert by_solver.loc["rk4", "status"] == "ok"
    assert "deliberate failure" in (out / "report.html").read_text()


def test_case_timeout_becomes_a_timeout_row(tmp_path):
    plugin = tmp_path / "sleepy.py"
    plugin.write_text(
        "import time\n"
        "from harness.registry import register_solver\n"
        "from solvers.base import Solver\n"
        "@register_solver('sleepy')\n"
        "class Sleepy(Solver):\n"
        "    name = 'sleepy'; order = 1; adaptive = False\n"
        "    def solve(self, f, y0, t, **kw):\n"
        "        time.sleep(30)\n"
    )
    out = tmp_path / "run"
    proc = run_cli("run", "--plugin", str(plugin), "--solvers", "sleepy", "--problems", "linear",
                   "--steps", "8", "--case-timeout", "0.5", "--out", str(out), "--quiet",
                   "--no-report")
    assert proc.returncode == 0, proc.stderr
    _, df = load_run(out)
    assert df.iloc[0]["status"] == "timeout"
    assert "0.5 s" in df.iloc[0]["message"]


def test_ctrl_c_keeps_finished_cases_writes_report_and_resume_finishes(tmp_path):
    # The plugin sleeps as long as the environment says: long in the run that gets Ctrl-C (so
    # the signal surely lands mid-run, however loaded the machine), not at all on resume.
    plugin = tmp_path / "slow.py"
    plugin.write_text(
        "import os, time\n"
        "from harness.registry import register_solver\n"
        "from solvers.base import Solution, Solver\n"
        "@register_solver('slow')\n"
        "class Slow(Solver):\n"
        "    name = 'slow'; order = 1; adaptive = False\n"
        "    def solve(self, f, y0, t, n_steps=None, **kw):\n"
        "        time.sleep(float(os.environ.get('SLOW_PLUGIN_SLEEP', '0')))\n"
        "        f(t[0], y0)\n"
        "        ys = y0.expand(len(t), *y0.shape).clone()\n"
        "        return Solution(ys=ys, nfe=1, n_steps=1, n_accepted=1)\n"
    )
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness", "run", "--suite", "quick", "--plugin", str(plugin),
           "--solvers", "slow", "--problems", "linear", "--steps", "1,2,3,4,5,6,7,8,9,10",
           "--out", str(out), "--quiet"]
    env = dict(os.environ, SLOW_PLUGIN_SLEEP="1.0")
    # A shell's background job starts with SIGINT ignored, and children inherit that: give
    # the run the default disposition, as in a terminal, so Python turns it into Ctrl-C.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if results.exists() and results.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    meta, df = load_run(out)
    assert meta["interrupted"] is True
    assert 2 <= len(df) < 10
    assert (out / "report.html").exists()
    assert "--resume" in stderr

    again = run_cli("run", "--out", str(out), "--resume", "--quiet")
    assert again.returncode == 0, again.stderr
    _, df = load_run(out)
    assert len(df) == 10 and df["case_id"].is_unique


def test_toml_suite(tmp_path):
    suite = tmp_path / "mine.toml"
    suite.write_text(
        'problems = ["kepler"]\nsolvers = ["dopri5", "rk4"]\n'
        "rtol = [1e-4, 1e-8]\nsteps = [64, 128]\nmin_time = 0.0\nmin_repeats = 1\n"
    )
    out = tmp_path / "run"
    proc = run_cli("run", "--suite", str(suite), "--out", str(out), "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    meta, df = load_run(out)
    assert meta["suite"]["name"] == "mine"
    assert sorted(df["case_id"]) == sorted(
        [f"solve/kepler/dopri5/rtol={r},atol={r}/none/float64/cpu/b1" for r in ("1e-04", "1e-08")]
        + [f"solve/kepler/rk4/n={n}/none/float64/cpu/b1" for n in (64, 128)]
    )


def test_float32_and_batch(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--suite", "quick", "--solvers", "dopri5", "--problems",
                   "lotka-volterra", "--dtype", "float32,float64", "--batch", "1,8",
                   "--rtol", "1e-4", "--out", str(out), "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    _, df = load_run(out)
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    err = df.set_index(["dtype", "batch"])["err_max"]
    # Same tolerance, same steps: float32 carries the float64 error plus round-off only,
    # and every trajectory of a batch gets the accuracy of a single one (to rounding: a single
    # float64 trajectory runs in Python floats, a batch in tensors).
    assert abs(err["float32", 1] - err["float64", 1]) < 0.05 * err["float64", 1]
    assert err["float64", 8] == pytest.approx(err["float64", 1], rel=1e-8)
    steps = df.set_index(["dtype", "batch"])["n_steps"]
    assert steps["float64", 8] == steps["float64", 1]


def test_show_and_report_verbs(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", "--suite", "quick", "--problems", "linear", "--out", str(out),
                   "--quiet", "--no-report").returncode == 0
    assert not (out / "report.html").exists()
    rep = run_cli("report", str(out))
    assert rep.returncode == 0, rep.stderr
    assert (out / "report.html").exists()
    show = run_cli("show", str(out))
    assert show.returncode == 0 and "dopri5" in show.stdout
    assert json.loads(show.stdout.split("\n\n")[0])["run_id"] == "run"
    schema = run_cli("show", "--schema")
    assert "| `err_rms_scaled` |" in schema.stdout


def test_example_plugins_through_the_cli(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--plugin", str(EXAMPLES / "heun_solver.py"), "--plugin",
                   str(EXAMPLES / "oscillator_problem.py"), "--solvers", "heun,heun-euler",
                   "--problems", "oscillator", "--steps", "64,128,256,512", "--rtol", "1e-5",
                   "--out", str(out), "--quiet", "--min-time", "0.001")
    assert proc.returncode == 0, proc.stderr
    _, df = load_run(out)
    assert set(df["status"]) == {"ok"}
    fixed = df[df["solver"] == "heun"].sort_values("n_steps_requested")
    err = fixed["err_max"].to_numpy()
    # Heun is second order: halving the step divides the error by about 4.
    assert all(3.3 < a / b < 4.7 for a, b in zip(err[:-1], err[1:], strict=True))
    assert (df[df["solver"] == "heun"]["nfe"] == 2 * df[df["solver"] == "heun"]
            ["n_steps_requested"]).all()
