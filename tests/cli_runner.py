"""Running the CLI in a fresh process, as a user would (imported by the CLI tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "plugins"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` in a new process; returns the completed process."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else [])
    )
    if env:
        for k, v in env.items():
            if k == "PYTHONPATH":
                full_env[k] = v + os.pathsep + full_env["PYTHONPATH"]
            else:
                full_env[k] = v
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
