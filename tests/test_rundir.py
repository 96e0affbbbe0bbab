"""RunLock: one live odebench process per run folder; a dead holder (kill -9) never blocks."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results import RunFolderError
from harness.rundir import LOCK_FILE, RunFolderBusy, RunLock

REPO = Path(__file__).resolve().parents[1]

HOLD = """
import sys, time
from harness.rundir import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_lock_on_the_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        with pytest.raises(RunFolderBusy) as err:
            RunLock(tmp_path).acquire()
    msg = str(err.value)
    assert msg.startswith(f"run folder {tmp_path} is in use by another odebench run "
                          f"(pid {os.getpid()} on host {socket.gethostname()}, since 20")
    assert msg.endswith("); wait for it to end, or choose another --out")
    assert isinstance(err.value, RunFolderError)


def test_the_lock_file_names_the_holder_while_held_and_stays_after(tmp_path: Path) -> None:
    lock = RunLock(tmp_path)
    with lock:
        assert lock.held
        info = json.loads((tmp_path / LOCK_FILE).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert not lock.held
    assert (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path):  # released: free to take again
        pass


def test_a_stale_lock_file_does_not_block(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "gone", "since": "x"}))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_holder_that_wrote_no_name_is_reported_as_unknown(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("not json")
    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunFolderBusy, match=r"another odebench run \(holder unknown\)"):
            RunLock(tmp_path).acquire()
    finally:
        os.close(fd)


def test_taking_a_held_lock_object_again_is_a_programming_error(tmp_path: Path) -> None:
    with RunLock(tmp_path) as lock, pytest.raises(RuntimeError, match="already holds"):
        lock.acquire()


def test_locking_a_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="does not exist"):
        RunLock(tmp_path / "nope").acquire()


def test_the_lock_is_not_inherited_by_child_processes(tmp_path: Path) -> None:
    lock = RunLock(tmp_path).acquire()
    assert lock._fd is not None and not os.get_inheritable(lock._fd)
    # A child started while the lock is held (even with close_fds=False) must not keep it alive
    # once the holder is gone. The holder "dies": its descriptor closes without an unlock.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        close_fds=False, stdout=subprocess.PIPE, text=True)
    try:
        # Popen can return a moment before exec has closed the child's close-on-exec
        # descriptors; once the child prints, exec is done.
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        fd, lock._fd = lock._fd, None
        os.close(fd)
        with RunLock(tmp_path):
            pass
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_a_lock_held_by_another_process_is_freed_when_it_is_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH",
                                                                                   "")])}
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy, match=f"pid {child.pid} on host "):
            RunLock(tmp_path).acquire()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        with RunLock(tmp_path) as lock:
            assert lock.held
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
