"""The run's progress display: a live tqdm bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from types import SimpleNamespace

import pytest
from cli_runner import REPO

from harness.cli import Progress

CASE = SimpleNamespace(problem="linear", solver="rk4", setting="n=32", grad_mode="none")


def _feed(progress: Progress, n: int) -> None:
    for i in range(n):
        progress(i, n, CASE, 0.5 * i)
    progress(n, n, None, 0.5 * n)


def test_log_file_gets_a_line_every_tenth_and_at_the_end(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    _feed(Progress(True), 23)
    text = err.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 11  # 0%, each tenth reached, and the end
    assert lines[0].startswith("0/23") and "ETA ?" in lines[0]
    assert "linear / rk4 n=32" in lines[1] and "ETA 00:" in lines[1]
    assert lines[-1] == "23/23 100%  ETA 00:00  done"


def test_quiet_writes_nothing(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress = Progress(False)
    _feed(progress, 5)
    progress.detail("iteration 3/300")
    assert err.getvalue() == ""


def test_detail_in_a_log_file_is_not_written(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress = Progress(True)
    progress(0, 2, CASE, 0.0)
    progress.detail("iteration 3/300")
    assert "iteration" not in err.getvalue()


_SCRIPT = """
from types import SimpleNamespace
from harness.cli import Progress
case = SimpleNamespace(problem="spiral", solver="dopri5", setting="rtol=1e-3",
                       grad_mode="adjoint")
p = Progress(True)
for i in range(4):
    p(i, 4, case, 0.25 * i)
    p.detail(f"iteration {i + 1}/300")
p(4, 4, None, 1.0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses a Linux pty")
def test_terminal_gets_a_live_bar_with_the_case_and_its_detail():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode("utf-8", errors="replace")
    assert "\r" in text  # redrawn in place
    assert "ETA" in text and "4/4" in text and "done" in text
    assert "spiral / dopri5 rtol=1e-3" in text
    assert "spiral / dopri5 [adjoint]: iteration 2/300" in text
