"""Gradient cases through the CLI: modes, refusal of modes a solver cannot do, the columns."""

from __future__ import annotations

from cli_runner import run_cli

from harness.results import load_run


def test_gradient_suite_measures_every_mode(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--suite", "gradients", "--solvers", "rk4", "--steps", "10,40",
                   "--out", str(out), "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    _, df = load_run(out)
    assert set(df["kind"]) == {"gradient"}
    assert sorted(set(df["grad_mode"])) == ["adjoint", "adjoint-seminorm", "backprop",
                                            "checkpoint"]
    assert set(df["status"]) == {"ok"}
    rows = df.set_index(["grad_mode", "n_steps_requested"])
    # backprop replays its graph (no calls of f); the others call f backwards
    assert rows.loc[("backprop", 10), "nfe_backward"] == 0
    assert rows.loc[("adjoint", 10), "nfe_backward"] == 40
    assert rows.loc[("checkpoint", 40), "nfe_backward"] == 160
    # memory: backprop grows with the steps, the adjoint does not
    assert rows.loc[("backprop", 40), "mem_saved_bytes"] > 3 * rows.loc[("backprop", 10),
                                                                        "mem_saved_bytes"]
    assert rows.loc[("adjoint", 40), "mem_saved_bytes"] == rows.loc[("adjoint", 10),
                                                                    "mem_saved_bytes"]
    # checkpoint is backprop's gradient; every gradient has an error against the reference
    assert rows.loc[("checkpoint", 40), "grad_rel_diff_backprop"] < 1e-12
    assert df["grad_rel_err"].notna().all() and (df["n_params"] > 0).all()
    assert (df["rss_growth_bytes"] >= 0).all() and df["time_backward_iqr_s"].notna().all()


def test_mode_a_named_solver_cannot_do_is_refused_before_the_run(tmp_path):
    proc = run_cli("run", "--solvers", "scipy-radau", "--problems", "linear", "--grad",
                   "adjoint", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "'scipy-radau' does not support gradient mode 'adjoint'" in proc.stderr
    assert "supports: 'none'" in proc.stderr
    assert not (tmp_path / "r" / "results.jsonl").exists()


def test_unknown_grad_mode_lists_the_modes(tmp_path):
    proc = run_cli("run", "--grad", "adjoint2", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "unknown gradient mode 'adjoint2'" in proc.stderr and "checkpoint" in proc.stderr


def test_all_solvers_with_a_grad_mode_skip_those_that_cannot(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--suite", "quick", "--problems", "linear", "--grad", "backprop",
                   "--rtol", "1e-4", "--steps", "128", "--out", str(out), "--quiet",
                   "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert "skipped: solver 'scipy-rk45' does not support gradient mode 'backprop'" in proc.stderr
    _, df = load_run(out)
    assert sorted(df["solver"]) == ["dopri5", "euler", "rk4"]
