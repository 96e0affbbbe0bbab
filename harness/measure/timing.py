"""Wall and CPU time of a callable: warm-up, then repeats until a minimum total time.

Like ``timeit``'s autorange, the number of repeats adapts to the cost of one call: at least
``min_repeats`` and until ``min_time`` seconds are spent, never beyond ``max_time`` (a single
long call is timed once; the runner does not repeat a solve whose first run, the one that
measures accuracy, already outlasted ``max_time``, and reports that run as the one sample).
Garbage collection is off while timing, as ``timeit`` does. The raw samples are kept; the
summary is the median, the interquartile range and the minimum. On CUDA, the wall time of
each call is measured with CUDA events after synchronising the device.

:class:`Interleaved` times several callables round-robin, for ratios measured in one run (the
benchmarks in ``tests/bench`` and ``scripts/kepler_batch.py`` use it).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def repeats(self) -> int:
        return len(self.wall)

    @property
    def median(self) -> float:
        return statistics.median(self.wall) if self.wall else float("nan")

    @property
    def minimum(self) -> float:
        return min(self.wall) if self.wall else float("nan")

    @property
    def iqr(self) -> float:
        if len(self.wall) < 2:
            return 0.0 if self.wall else float("nan")
        q = statistics.quantiles(self.wall, n=4, method="inclusive")
        return q[2] - q[0]

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")


def _is_cuda(device: str | torch.device | None) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def time_call(
    fn: Callable[[], object],
    *,
    device: str | torch.device | None = None,
    warmup: int = 1,
    min_time: float = 0.2,
    min_repeats: int = 3,
    max_repeats: int = 1000,
    max_time: float = 5.0,
) -> Timing:
    """Time ``fn()``; see the module docstring for the repeat rule."""
    cuda = _is_cuda(device)
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    timing = Timing()
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        spent = 0.0
        while True:
            c0 = time.process_time()
            if cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize(device)
                wall = start.elapsed_time(end) / 1e3
            else:
                w0 = time.perf_counter()
                fn()
                wall = time.perf_counter() - w0
            timing.cpu.append(time.process_time() - c0)
            timing.wall.append(wall)
            spent += wall
            n = timing.repeats
            if n >= max_repeats or spent >= max_time:
                break
            if n >= min_repeats and spent >= min_time:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return timing


class Interleaved:
    """Time several callables side by side, round-robin, for ratios on a noisy machine.

    Each :meth:`round` runs every callable once, in an order rotated by one place per round, so
    a slow spell of a shared machine lands on all of them alike; comparing medians of the kept
    samples gives a ratio measured in one run. ``setups`` (optional, by name) run before their
    callable, outside the timer, and their return value is passed to it as its arguments (a
    tuple), e.g. a forward solve before a timed backward pass. The first ``warmup`` rounds are
    not kept.
    """

    def __init__(
        self,
        runners: dict[str, Callable],
        setups: dict[str, Callable[[], tuple]] | None = None,
        warmup: int = 0,
    ) -> None:
        self.runners = runners
        self.setups = setups or {}
        self.warmup = warmup
        self.times: dict[str, list[float]] = {k: [] for k in runners}
        self._turn = 0

    def round(self) -> None:
        names = list(self.runners)
        k = self._turn % len(names)
        keep = self._turn >= self.warmup
        self._turn += 1
        for name in names[k:] + names[:k]:
            args = self.setups[name]() if name in self.setups else ()
            start = time.perf_counter()
            self.runners[name](*args)
            elapsed = time.perf_counter() - start
            if keep:
                self.times[name].append(elapsed)

    def medians(self) -> dict[str, float]:
        """The median kept time of each callable (NaN where none was kept)."""
        return {k: statistics.median(v) if v else float("nan") for k, v in self.times.items()}
