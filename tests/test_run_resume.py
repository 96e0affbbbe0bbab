"""A run survives its process: kill -9 at random moments, SIGTERM, a second process on the same
folder, and damaged files; ``--resume RUN_DIR`` replays exactly the stored plan."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import REPO, run_cli

from harness.cli import main
from harness.results import load_run

PLUGIN = str(Path(__file__).parent / "plugins" / "misbehaving.py")

# A small plan with solves and gradient cases (whose mode disagreement needs the backprop
# gradient of the same setting, which a resumed invocation must recompute): 2 solvers x 3
# modes x 2 settings.
SELECTION = ("--suite", "quick", "--solvers", "rk4,dopri5", "--problems", "linear", "--grad",
             "none,backprop,adjoint", "--steps", "16,32", "--rtol", "1e-3,1e-6")
N_CASES = 12
DETERMINISTIC = ["status", "nfe", "nfe_backward", "n_steps", "n_accepted", "n_rejected",
                 "err_max", "scd", "grad_rel_err", "grad_rel_diff_backprop", "loss"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", *args], cwd=REPO, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _n_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _wait_rows(out: Path, n: int, proc: subprocess.Popen, limit: float = 120) -> None:
    t0 = time.monotonic()
    while _n_lines(out / "results.jsonl") < n:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {n} rows: {proc.communicate()}")
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"fewer than {n} rows after {limit} s")
        time.sleep(0.02)


def _main(*args: str) -> tuple[int, str]:
    """``python -m harness ARGS`` in this process (for the checks that need no real process):
    the exit code and what went to stderr."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, err.getvalue()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (in this process: the killed runs below are real processes)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    code, err = _main("run", *SELECTION, "--out", str(out), "--quiet", "--no-report")
    assert code == 0, err
    meta, df = load_run(out)
    return out, meta, df.set_index("case_id").sort_index()


def test_the_plan_is_stored_and_resume_replays_it(reference):
    out, meta, df = reference
    assert meta["schema_version"] == 2 and meta["complete"] is True
    ids = [c["case_id"] for c in meta["plan"]]
    assert len(ids) == len(set(ids)) == meta["n_cases"] == N_CASES == len(df)
    assert set(ids) == set(df.index)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_at_random_moments_then_resume_equals_an_uninterrupted_run(
    reference, tmp_path, seed
):
    _, ref_meta, ref = reference
    rng = random.Random(seed)
    out = tmp_path / "run"
    proc = _start(*SELECTION, "--out", str(out), "--quiet", "--no-report")
    kills = 0
    # Two kills at random moments of a run in progress (after a random number of rows plus a
    # random fraction of a case), then a resume that finishes the plan.
    for k in range(2):
        _wait_rows(out, rng.randint(1 + 5 * k, 4 + 5 * k), proc)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate()
        proc = _start("--resume", str(out), "--quiet", "--no-report")
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    meta, df = load_run(out)
    assert kills >= 1
    assert meta["complete"] is True
    assert meta["command"].startswith("python -m harness run --suite quick")  # the original
    assert len(meta["resumes"]) == 2
    assert all(r["command"].endswith("--no-report") for r in meta["resumes"])
    assert [c["case_id"] for c in meta["plan"]] == [c["case_id"] for c in ref_meta["plan"]]
    assert df["case_id"].is_unique and len(df) == len(ref)
    got = df.set_index("case_id").sort_index()
    assert list(got.index) == list(ref.index)
    for col in DETERMINISTIC:
        a, b = got[col], ref[col]
        same = (a == b) | (a.isna() & b.isna())
        assert same.all(), (col, a[~same], b[~same])


def test_sigterm_ends_the_run_cleanly_with_a_report_and_the_resume_command(tmp_path):
    out = tmp_path / "run"
    proc = _start(*SELECTION, "--out", str(out))
    _wait_rows(out, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in err
    assert f"python -m harness run --resume {out}" in err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["interrupted"] is True and meta["interrupted_by"] == "SIGTERM"
    assert meta["complete"] is False and meta["ended_at"]
    assert (out / "report.html").exists()
    _, df = load_run(out)
    assert 3 <= len(df) < N_CASES


def test_a_second_process_on_a_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    selection = ("--plugin", PLUGIN, "--solvers", "rk4,sleep", "--problems", "linear",
                 "--steps", "16", "--no-isolate", "--out", str(out), "--quiet", "--no-report")
    proc = _start(*selection)
    try:
        _wait_rows(out, 1, proc)  # rk4 is done, sleep is sleeping
        second = run_cli("run", "--resume", str(out), "--quiet", "--no-report")
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "in use by another odebench run" in lines[0], lines
        assert f"pid {proc.pid}" in lines[0]
    finally:
        proc.kill()  # the kernel releases the lock of a killed process
        proc.communicate()
    again = run_cli("run", "--resume", str(out), "--quiet", "--no-report",
                    env={"ODEBENCH_TEST_SLEEP": "0"})
    assert again.returncode == 0, again.stderr
    assert "1 of 2 cases to go" in again.stderr
    _, df = load_run(out)
    assert sorted(df["solver"]) == ["rk4", "sleep"] and df["case_id"].is_unique


def test_resume_refuses_selection_flags_and_keeps_one_case_one_case(tmp_path):
    out = tmp_path / "one"
    code, err = _main("run", "--solvers", "dopri5", "--problems", "linear", "--rtol", "1e-6",
                      "--out", str(out), "--quiet", "--no-report")
    assert code == 0, err
    code, err = _main("run", "--out", str(out), "--resume", "--quiet", "--no-report")
    assert code == 0, err
    assert "0 of 1 cases to go" in err
    _, df = load_run(out)
    assert len(df) == 1
    code, err = _main("run", "--resume", str(out), "--rtol", "1e-3")
    assert code == 2 and "takes no --rtol" in err
    assert len(err.strip().splitlines()) == 1


def _damaged(reference, tmp_path, how: str) -> Path:
    src = reference[0]
    out = tmp_path / how
    shutil.copytree(src, out)
    results = out / "results.jsonl"
    data = results.read_bytes()
    lines = data.splitlines(keepends=True)
    if how == "torn":
        results.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    elif how == "garbage":
        results.write_bytes(b"".join(lines[:5] + [b"#!garbage{\n"] + lines[5:]))
    elif how == "null":
        results.write_bytes(b"".join(lines[:5] + [b"null\n"] + lines[5:]))
    elif how == "meta":
        (out / "meta.json").write_text('{"run_id": "x", "plan": [')
    return out


@pytest.mark.parametrize("verb", ["show", "report", "resume"])
@pytest.mark.parametrize("how", ["torn", "garbage", "null", "meta"])
def test_damaged_run_folders_are_reported_never_a_traceback(reference, tmp_path, how, verb):
    # In this process: a traceback would fail the test itself.
    out = _damaged(reference, tmp_path, how)
    if verb == "resume":
        code, err = _main("run", "--resume", str(out), "--quiet", "--no-report")
    else:
        code, err = _main(verb, str(out))
    if how in ("null", "meta"):  # not odebench's writing: refused, naming the place
        assert code == 2
        assert len(err.strip().splitlines()) == 1
        assert ("line 6" if how == "null" else "meta.json") in err
        return
    assert code == 0, err
    where = f"line {N_CASES}" if how == "torn" else "line 6"
    assert where in err  # reported with its line number
    if verb == "resume":
        _, df = load_run(out)
        assert len(df) == N_CASES and df["case_id"].is_unique  # the torn case ran again
        if how == "torn":
            assert (out / "results.jsonl").read_bytes().endswith(b"\n")
            assert _n_lines(out / "results.jsonl") == N_CASES


def test_nothing_under_a_run_folder_is_a_pickle(reference):
    for path in reference[0].rglob("*"):
        if path.is_file():
            head = path.read_bytes()[:2]
            assert not head.startswith(b"\x80"), path  # pickle protocol 2+ opcode PROTO
            assert path.suffix not in (".pkl", ".pickle", ".pt")
