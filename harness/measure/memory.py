"""Memory probes: peak resident set size of the process, and peak CUDA memory.

Issue 4 adds the bytes autograd saves for backward. ``ru_maxrss`` is the process's high-water
mark (kilobytes on Linux, bytes on macOS), so it is a peak since the process started, not per case.
"""

from __future__ import annotations

import resource
import sys

import torch


def rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def cuda_peak_reset(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_bytes(device: str | torch.device) -> int | None:
    if torch.device(device).type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))
