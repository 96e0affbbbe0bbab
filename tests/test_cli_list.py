"""`list` shows every solver and problem with its kind and where it came from; plugins load
through --plugin and through entry points."""

from __future__ import annotations

from cli_runner import EXAMPLES, run_cli


def test_list_shows_builtins_with_kind_and_source():
    proc = run_cli("list")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name in ("euler", "rk4", "dopri5", "scipy-radau", "scipy-bdf", "scipy-lsoda",
                 "scipy-dop853", "linear", "arenstorf", "kepler", "lotka-volterra",
                 "robertson", "vdpol-mu1000", "mlp"):
        assert f"\n{name} " in out, name
    assert "explicit RK, adaptive" in out and "built-in (solvers." in out
    assert "stiff" in out and "exact" in out


def test_list_with_plugin_file_names_its_source():
    proc = run_cli("list", "--plugin", str(EXAMPLES / "heun_solver.py"))
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("heun "))
    assert "plugin file" in line and "heun_solver.py" in line


def _fake_installed_package(root, module_name, source_file, group, ep_name):
    """A minimal installed distribution: the module plus a .dist-info with entry_points.txt,
    which is all importlib.metadata needs to find the entry point."""
    (root / f"{module_name}.py").write_text(source_file.read_text())
    info = root / f"{module_name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module_name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{ep_name} = {module_name}\n")


def test_example_plugins_load_through_entry_points(tmp_path):
    _fake_installed_package(tmp_path, "odebench_heun", EXAMPLES / "heun_solver.py",
                            "odebench.solvers", "heun")
    _fake_installed_package(tmp_path, "odebench_oscillator", EXAMPLES / "oscillator_problem.py",
                            "odebench.problems", "oscillator")
    env = {"PYTHONPATH": str(tmp_path)}
    proc = run_cli("list", env=env)
    assert proc.returncode == 0, proc.stderr
    heun = next(ln for ln in proc.stdout.splitlines() if ln.startswith("heun "))
    assert "entry point heun = odebench_heun (odebench.solvers, package odebench_heun)" in heun
    osc = next(ln for ln in proc.stdout.splitlines() if ln.startswith("oscillator "))
    assert "entry point oscillator" in osc

    out = tmp_path / "run"
    run = run_cli("run", "--solvers", "heun", "--problems", "oscillator", "--steps", "64",
                  "--out", str(out), "--quiet", "--no-report", env=env)
    assert run.returncode == 0, run.stderr
    assert '"status": "ok"' in (out / "results.jsonl").read_text()


def test_broken_installed_plugin_warns_and_the_rest_works(tmp_path):
    broken = tmp_path / "broken_src.py"
    broken.write_text("raise ImportError('missing dependency xyz')\n")
    _fake_installed_package(tmp_path, "odebench_broken", broken, "odebench.solvers", "broken")
    proc = run_cli("list", env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "could not load entry point broken" in proc.stderr
    assert "missing dependency xyz" in proc.stderr
    assert "dopri5" in proc.stdout


def test_refs_check_through_the_cli():
    ok = run_cli("refs", "--check", "linear", "detest-a1")
    assert ok.returncode == 0, ok.stderr
    assert "linear" in ok.stdout and "2/2 checks ok" in ok.stdout
    bad = run_cli("refs", "--check", "lineer")
    assert bad.returncode == 2 and "'lineer'" in bad.stderr and "valid problems" in bad.stderr
