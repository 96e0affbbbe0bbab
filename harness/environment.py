"""What a run ran on: versions, CPU, GPU, threads, git commit. Stored in meta.json."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
        commit = out.stdout.strip()
        if not commit:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _cuda_info() -> dict | None:
    if not torch.cuda.is_available():
        return None
    info = {
        "device_name": torch.cuda.get_device_name(0),
        "device_count": torch.cuda.device_count(),
        "cuda_version": torch.version.cuda,
        "driver": None,
    }
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=False,
        )
        info["driver"] = out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def capture() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "n_cores": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "pandas": _version("pandas"),
        "matplotlib": _version("matplotlib"),
        "odebench": _version("odebench"),
        "torch_threads": torch.get_num_threads(),
        "cuda": _cuda_info(),
        "git_commit": _git_commit(),
        "hostname": socket.gethostname(),
    }


_MACHINE: dict | None = None


def machine() -> dict:
    """This process's machine, for each result row: host, CPU model and logical cores
    (computed once per process)."""
    global _MACHINE
    if _MACHINE is None:
        _MACHINE = {"host": socket.gethostname(), "cpu_model": _cpu_name(),
                    "cpu_cores": os.cpu_count()}
    return _MACHINE


def hardware_fields(device: str) -> dict:
    """Where a case ran, as row columns: the machine, torch's intra-op threads now, the GPU's
    name for a CUDA case, and ``hardware``, one label of machine and GPU (torch threads are a
    setting of the case, recorded beside it, not part of the label)."""
    fields = dict(machine(), torch_threads=torch.get_num_threads(), gpu_name=None)
    label = f"{fields['host']}: {fields['cpu_model']}, {fields['cpu_cores']} cores"
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        fields["gpu_name"] = torch.cuda.get_device_name(torch.device(device))
        label += f", {fields['gpu_name']}"
    fields["hardware"] = label
    return fields
