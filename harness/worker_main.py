"""The worker process's side of :mod:`harness.worker`: set up, then run cases until told to stop.

Imported once by the fork server (torch, the harness and the built-in solvers and problems),
so that each worker forked from it starts warm.
"""

from __future__ import annotations

import resource
import signal
from multiprocessing.connection import Connection

import torch

from harness import plugins, registry
from harness.runner import CASE_PROGRESS, ProblemCache, _message, run_case
from harness.worker import Msg, WorkerConfig, die_with_run

plugins.load_defaults()


def serve(conn: Connection, config: WorkerConfig) -> None:
    """Rebuild the run's registry, apply its thread count and memory limit, then answer each
    ``(case, suite)`` with ``(Msg.ROW, row)`` until ``None`` or the pipe closes."""
    # Ctrl-C and SIGTERM reach the whole process group: the run handles them, and kills us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_run(config.run_pid)
    try:
        if config.memory_limit:
            resource.setrlimit(resource.RLIMIT_DATA, (config.memory_limit, config.memory_limit))
        if config.threads:
            torch.set_num_threads(config.threads)
        plugins.rebuild(config.discovery)  # its warnings: the run's process showed them
    except BaseException as exc:  # noqa: BLE001 - reported to the run, which stops
        conn.send((Msg.SETUP_FAILED, _message(exc)))
        return
    conn.send((Msg.READY, registry.snapshot()))
    problems = ProblemCache()
    CASE_PROGRESS.append(lambda text: conn.send((Msg.PROGRESS, text)))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        case, suite = msg
        row = run_case(case, problems, suite, seed=config.seed, timeout=0)
        conn.send((Msg.ROW, row))
