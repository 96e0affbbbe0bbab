"""Cases in worker processes: a plugin that crashes, exits, hangs or hogs memory loses only its
own case, with the right status, and the run goes on. Real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import REPO, run_cli

from harness.results import load_run

PLUGIN = str(Path(__file__).parent / "plugins" / "misbehaving.py")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="worker isolation is tested on Linux")


def _rows(out: Path) -> dict[str, dict]:
    _, df = load_run(out)
    return {r["solver"]: r for r in df.to_dict("records")}


def test_every_misbehaving_plugin_loses_only_its_own_case(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(
        "run", "--plugin", PLUGIN, "--problems", "linear", "--steps", "16",
        "--solvers", "segfault,os-exit,sys-exit,deadlock,hog,rk4,dopri5", "--rtol", "1e-6",
        "--case-timeout", "4", "--case-memory", "1G", "--out", str(out), "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = _rows(out)
    assert len(rows) == 7
    assert rows["segfault"]["status"] == "crashed"
    assert "SIGSEGV" in rows["segfault"]["message"]
    assert rows["os-exit"]["status"] == "crashed"
    assert "exited with code 1" in rows["os-exit"]["message"]
    assert rows["sys-exit"]["status"] == "crashed"
    assert "sys.exit(3)" in rows["sys-exit"]["message"]
    assert rows["deadlock"]["status"] == "timeout"
    assert "killed" in rows["deadlock"]["message"]
    assert rows["hog"]["status"] == "out_of_memory"
    assert "MemoryError" in rows["hog"]["message"]
    for ok in ("rk4", "dopri5"):
        assert rows[ok]["status"] == "ok", rows[ok]["message"]
        assert rows[ok]["nfe"] > 0 and rows[ok]["err_max"] < 0.1
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is True and meta["interrupted"] is False
    assert meta["isolate"] == "always" and meta["case_memory_bytes"] == 2**30
    assert (out / "report.html").exists()


def test_by_default_plugins_and_native_loops_run_in_a_worker_and_builtins_in_process(tmp_path):
    # Hairer's DOPRI5 (f2py) goes on calling f after f raises, so only a worker's kill can
    # hold it to its budget: at rtol 1e-15 on pleiades the case takes about 6 s here, four
    # times the 1.5 s budget; at 1e-6 on linear about 0.2 s, so a loaded machine has room
    out = tmp_path / "run"
    proc = run_cli("run", "--plugin", PLUGIN, "--problems", "linear,pleiades", "--steps", "16",
                   "--solvers", "os-exit,rk4,hairer-dopri5", "--rtol", "1e-6,1e-15",
                   "--min-time", "0.001", "--case-timeout", "1.5", "--out", str(out),
                   "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    _, df = load_run(out)
    got = {(r["solver"], r["problem"], r["rtol"]): r for r in df.to_dict("records")
           if r["solver"] != "rk4"}
    got |= {(r["solver"], r["problem"]): r for r in df.to_dict("records")}
    assert {got["os-exit", p]["status"] for p in ("linear", "pleiades")} == {"crashed"}
    assert {got["rk4", p]["status"] for p in ("linear", "pleiades")} == {"ok"}
    # where each ran, as its row says: built-ins in the run's process, the rest in a worker
    assert {got["rk4", p]["worker"] for p in ("linear", "pleiades")} == {"main"}
    assert all(r["worker"].startswith("pid ") for k, r in got.items()
               if k[0] == "hairer-dopri5" and r["status"] == "ok")
    assert got["hairer-dopri5", "linear", 1e-6]["status"] == "ok"
    slow = got["hairer-dopri5", "pleiades", 1e-15]
    assert slow["status"] == "timeout" and "worker process was killed" in slow["message"]
    assert slow["wall_s"] < 5
    assert "isolation auto" in proc.stderr


def test_without_isolation_sys_exit_is_contained_and_the_run_goes_on(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--plugin", PLUGIN, "--problems", "linear", "--steps", "16",
                   "--solvers", "sys-exit,rk4", "--no-isolate", "--out", str(out), "--quiet",
                   "--no-report")
    assert proc.returncode == 0, proc.stderr
    rows = _rows(out)
    assert rows["sys-exit"]["status"] == "crashed"
    assert "misbehaving.py" in rows["sys-exit"]["message"]  # where it was called
    assert rows["rk4"]["status"] == "ok"


def _start(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", *args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(path: Path, text: str, proc: subprocess.Popen, limit: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_a_second_signal_stops_a_run_hung_inside_a_c_call_at_once(tmp_path):
    # Without isolation nothing can interrupt the C call: the first SIGINT waits, the second
    # ends the process at once (the signal watcher thread), with 128 + SIGINT.
    out = tmp_path / "run"
    proc = _start("--plugin", PLUGIN, "--problems", "linear", "--steps", "16",
                  "--solvers", "rk4,deadlock", "--no-isolate", "--out", str(out), "--quiet")
    _wait_for(out / "results.jsonl", "rk4", proc)
    time.sleep(1.0)  # inside the deadlock by now
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # the first signal cannot get through the C call
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "again: stopping at once" in err


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc (parents by their ppid)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_of_the_run_takes_its_hung_worker_with_it(tmp_path):
    out = tmp_path / "run"
    proc = _start("--plugin", PLUGIN, "--problems", "linear", "--steps", "16",
                  "--solvers", "deadlock", "--isolate", "--out", str(out), "--quiet")
    t0 = time.monotonic()
    below: set[int] = set()
    while len(below) < 3 and time.monotonic() - t0 < 120:  # tracker, fork server, worker
        time.sleep(0.2)
        below = _descendants(proc.pid)
    assert len(below) >= 3, below
    time.sleep(1.0)  # the worker is inside the deadlock
    proc.kill()
    proc.communicate()
    t0 = time.monotonic()
    while any(_alive(p) for p in below) and time.monotonic() - t0 < 15:
        time.sleep(0.2)
    assert not any(_alive(p) for p in below), [p for p in below if _alive(p)]


def test_a_ctrl_c_that_a_solver_swallows_still_ends_the_run_and_drops_the_case(tmp_path):
    out = tmp_path / "run"
    proc = _start("--plugin", PLUGIN, "--problems", "linear", "--steps", "16",
                  "--solvers", "rk4,swallow,euler", "--no-isolate", "--out", str(out),
                  "--quiet", "--no-report")
    _wait_for(out / "results.jsonl", "rk4", proc)
    time.sleep(1.0)  # inside the swallowing sleep by now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    _, df = load_run(out)
    assert list(df["solver"]) == ["rk4"]  # the swallowed case is dropped, euler never ran
    meta = json.loads((out / "meta.json").read_text())
    assert meta["interrupted"] is True and meta["complete"] is False
    assert meta["interrupted_by"] == "SIGINT"
