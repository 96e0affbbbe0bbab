"""Bad input exits with code 2 and a message that says what was wrong and what is allowed."""

from __future__ import annotations

import pytest
from cli_runner import run_cli


def _fails_with(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_unknown_solver_lists_valid_names(tmp_path):
    proc = run_cli("run", "--solvers", "dopri6", "--out", str(tmp_path / "r"))
    _fails_with(proc, "unknown solver 'dopri6'", "valid solvers:", "dopri5", "rk4", "scipy-radau")


def test_unknown_problem_lists_valid_names(tmp_path):
    proc = run_cli("run", "--problems", "keppler", "--out", str(tmp_path / "r"))
    _fails_with(proc, "unknown problem 'keppler'", "valid problems:", "kepler", "robertson")


def test_unknown_tag_lists_valid_tags(tmp_path):
    proc = run_cli("run", "--tags", "stif", "--out", str(tmp_path / "r"))
    _fails_with(proc, "unknown tag 'stif'", "valid tags:", "stiff", "nonstiff")


@pytest.mark.parametrize("value", ["-1e-3", "0", "abc", "nan", "1e-3,,1e-6"])
def test_bad_tolerance(tmp_path, value):
    proc = run_cli("run", f"--rtol={value}", "--out", str(tmp_path / "r"))
    _fails_with(proc, "--rtol")


def test_bad_steps(tmp_path):
    _fails_with(run_cli("run", "--steps=0", "--out", str(tmp_path / "r")), "--steps",
                "positive integer")


def test_unknown_suite_lists_builtin_suites(tmp_path):
    proc = run_cli("run", "--suite", "fast", "--out", str(tmp_path / "r"))
    _fails_with(proc, "unknown suite 'fast'", "default", "quick")


def test_unknown_dtype_and_device(tmp_path):
    _fails_with(run_cli("run", "--dtype", "float16", "--out", str(tmp_path / "r")),
                "unknown dtype 'float16'", "float32, float64")
    _fails_with(run_cli("run", "--device", "tpu", "--out", str(tmp_path / "r")),
                "device 'tpu'", "cpu, cuda or cuda:N")


def test_plugin_file_that_fails_to_import(tmp_path):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("import does_not_exist_anywhere\n")
    proc = run_cli("list", "--plugin", str(bad))
    _fails_with(proc, "bad_plugin.py", "ModuleNotFoundError", "does_not_exist_anywhere")


def test_duplicate_registration_names_both_sources(tmp_path):
    dup = tmp_path / "dup.py"
    dup.write_text(
        "from harness.registry import register_solver\n"
        "from solvers.rk import RungeKutta\nfrom solvers.tableaux import RK4\n"
        "register_solver('rk4')(lambda: RungeKutta(RK4))\n"
    )
    proc = run_cli("list", "--plugin", str(dup))
    _fails_with(proc, "'rk4' is registered twice", "built-in", "dup.py")


def test_bad_toml_suite(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('solvers = ["rk4"]\ntolerance = [1e-3]\n')
    _fails_with(run_cli("run", "--suite", str(suite), "--out", str(tmp_path / "r")),
                "unknown key 'tolerance'", "allowed keys:")
    suite.write_text('rtol = "1e-3"\n')
    _fails_with(run_cli("run", "--suite", str(suite), "--out", str(tmp_path / "r")),
                "'rtol' must be a list")


def test_existing_run_folder_needs_resume(tmp_path):
    out = tmp_path / "r"
    ok = run_cli("run", "--suite", "quick", "--problems", "linear", "--solvers", "rk4",
                 "--steps", "8", "--out", str(out), "--quiet", "--no-report")
    assert ok.returncode == 0, ok.stderr
    again = run_cli("run", "--suite", "quick", "--out", str(out))
    _fails_with(again, "already holds a run", f"--resume {out}")


def test_no_verb_is_a_usage_error():
    proc = run_cli()
    assert proc.returncode == 2 and "VERB" in proc.stderr
