"""The executors with real components: worker processes, and a real dask.distributed
LocalCluster of worker processes on loopback. Every test is bounded and ends by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_runner import REPO

from harness import plugins, registry
from harness.cli import main
from harness.executors import chunk_size, worker_setup
from harness.plugins import Discovery, PluginFile
from harness.worker import Worker, WorkerConfig, WorkerStartError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="worker processes are tested on Linux")

PLUGIN = str(Path(__file__).parent / "plugins" / "sweep_cases.py")
# what must not depend on where a case ran
DETERMINISTIC = ("status", "nfe", "nfe_solver", "n_steps", "n_accepted", "n_rejected",
                 "t_reached", "err_max", "err_final", "scd", "mescd", "grad_rel_err",
                 "nfe_backward", "mem_saved_bytes")
SWEEP = ["--problems", "linear,kepler", "--solvers", "rk4,dopri5", "--rtol", "1e-4,1e-7",
         "--steps", "16,64", "--min-time", "0.001", "--quiet", "--no-report"]



@pytest.fixture(scope="module", autouse=True)
def _plugin_loaded():
    """The test plugin in this process's registry for this module's tests only (a worker
    started later by another module's test must see the registry it expects)."""
    with plugins.kept():
        plugins.discover([PLUGIN])
        yield


def _rows(run_dir: Path) -> dict[str, dict]:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    by_id = {r["case_id"]: r for r in rows}
    assert len(by_id) == len(rows), "a case has two rows"
    return by_id


def _same_figures(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert set(a) == set(b)
    for case_id in a:
        for col in DETERMINISTIC:
            assert a[case_id].get(col) == b[case_id].get(col), (case_id, col)


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("serial") / "run"
    assert main(["run", *SWEEP, "--out", str(out)]) == 0
    rows = _rows(out)
    assert {r["executor"] for r in rows.values()} == {"serial"}
    return rows


def test_process_pool_gives_the_serial_figures(serial_sweep, tmp_path):
    out = tmp_path / "run"
    assert main(["run", *SWEEP, "--executor", "process", "--jobs", "2", "--out", str(out)]) == 0
    rows = _rows(out)
    _same_figures(serial_sweep, rows)
    assert {r["executor"] for r in rows.values()} == {"process"}
    assert len({r["worker"] for r in rows.values()}) == 2  # two worker processes shared them
    meta = json.loads((out / "meta.json").read_text())
    assert meta["executor"] == {"name": "process", "jobs": 2, "scheduler": None, "chunk": None}


# ------------------------------------------------------------------------- registries


def test_a_worker_process_rebuilds_the_parents_registry():
    with Worker(WorkerConfig(discovery=plugins.current())) as worker:
        worker._start()
        assert worker.registry == registry.snapshot()
        assert ("nap", f"plugin file {PLUGIN}") in worker.registry["solver"]


def test_a_worker_that_sees_another_registry_is_refused(tmp_path):
    extra = tmp_path / "extra_solver.py"
    extra.write_text("from harness.registry import register_solver\n"
                     "from solvers.builtin import rk4\n"
                     "register_solver('only-in-the-worker')(rk4)\n")
    discovery = Discovery(plugins=(*plugins.current().plugins, PluginFile(str(extra),
                                                                          extra.read_text())))
    with Worker(WorkerConfig(discovery=discovery)) as worker:
        with pytest.raises(WorkerStartError, match="solvers only there: only-in-the-worker"):
            worker._start()


def test_the_registry_imports_nothing_of_the_project():
    code = ("import sys, harness.registry; print(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('harness', 'solvers', 'problems', 'training', 'reports')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "['harness', 'harness.registry']"


def test_peers_are_registered_once_by_entry_point():
    sources = dict(registry.snapshot()["solver"])
    assert sources["hairer-dopri5"].startswith("entry point peers-hairer = solvers.peers.hairer")
    assert sources["rk4"] == "built-in (solvers.builtin)"


@pytest.mark.parametrize("n, workers, chunk, want", [
    (10_000, 2, None, 64), (453, 2, None, 57), (5, 2, None, 1), (10, 4, 3, 3), (0, 2, None, 1)])
def test_chunk_size(n, workers, chunk, want):
    assert chunk_size(n, workers, chunk) == want


# -------------------------------------------------------------------------------- dask

distributed = pytest.importorskip("distributed", reason="dask is an extra: pip install "
                                  "'odebench[dask]'")


def _local_cluster():
    """Two worker processes, one thread each, on loopback. A task may lose one worker and
    run again; the second death is KilledWorker (allowed-failures 1, to keep the test short)."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=":0")
    client = distributed.Client(cl)
    return cl, client


@pytest.fixture(scope="module")
def cluster():
    cl, client = _local_cluster()
    yield cl, client
    client.close()
    cl.close()


@pytest.fixture
def doomed_cluster():
    """A cluster of its own for a test that kills its workers over and over: the shared one
    would then hang on the nannies bringing them back, which can take a minute on a loaded
    machine."""
    cl, client = _local_cluster()
    yield cl, client
    client.close()
    cl.close()


def test_a_dask_sweep_gives_the_serial_figures(cluster, serial_sweep, tmp_path):
    cl, client = cluster
    out = tmp_path / "run"
    assert main(["run", *SWEEP, "--executor", "dask", "--scheduler", cl.scheduler_address,
                 "--out", str(out)]) == 0
    rows = _rows(out)
    _same_figures(serial_sweep, rows)
    workers = set(client.scheduler_info()["workers"])
    assert {r["worker"] for r in rows.values()} <= workers
    assert {r["executor"] for r in rows.values()} == {"dask"}
    # the nanny sets OMP_NUM_THREADS=1, and the row says what torch really used
    assert {r["torch_threads"] for r in rows.values()} == {1}
    assert all(r["hardware"] and r["cpu_cores"] == os.cpu_count() for r in rows.values())


def test_the_suite_sets_a_dask_workers_threads(cluster, tmp_path):
    cl, _ = cluster
    suite = tmp_path / "threads.toml"
    suite.write_text('problems = ["linear"]\nsolvers = ["rk4"]\nsteps = [8, 16]\nthreads = 2\n'
                     "min_time = 0.001\n")
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--executor", "dask", "--scheduler",
                 cl.scheduler_address, "--quiet", "--no-report", "--out", str(out)]) == 0
    assert {r["torch_threads"] for r in _rows(out).values()} == {2}


def test_dask_workers_rebuild_the_parents_registry_even_without_the_file(cluster, tmp_path):
    _, client = cluster
    snapshots = client.run(worker_setup, plugins.current())
    assert len(snapshots) == 2
    for snap in snapshots.values():
        assert snap == registry.snapshot()
    # a plugin file that the workers cannot read by its path: loaded from the shipped text
    gone = tmp_path / "gone" / "shipped_solver.py"
    text = ("from harness.registry import register_solver\nfrom solvers.builtin import rk4\n"
            "register_solver('shipped')(rk4)\n")
    discovery = Discovery(plugins=(PluginFile(str(gone), text),))
    for snap in client.run(worker_setup, discovery).values():
        assert ("shipped", f"plugin file {gone}") in snap["solver"]


def test_a_plugin_solver_runs_on_the_workers_and_a_killed_worker_loses_no_case(cluster,
                                                                               tmp_path):
    cl, client = cluster
    out = tmp_path / "run"
    pids = list(client.run(os.getpid).values())
    steps = ",".join(str(n) for n in range(8, 20))  # 12 cases of 0.4 s each on 2 workers

    rows_at_kill: list[int] = []

    def kill_one_when_a_row_is_in() -> None:
        deadline = time.monotonic() + 60
        results = out / "results.jsonl"
        while time.monotonic() < deadline:
            n = results.read_text().count("\n") if results.exists() else 0
            if n >= 2:
                os.kill(pids[0], signal.SIGKILL)
                rows_at_kill.append(n)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_when_a_row_is_in, daemon=True)
    killer.start()
    code = main(["run", "--plugin", PLUGIN, "--problems", "linear", "--solvers", "nap",
                 "--steps", steps, "--min-time", "0.001", "--quiet", "--no-report",
                 "--executor", "dask", "--scheduler", cl.scheduler_address, "--chunk", "1",
                 "--out", str(out)])
    killer.join(5)
    assert code == 0
    assert rows_at_kill and rows_at_kill[0] < 12  # mid-sweep
    rows = _rows(out)
    assert len(rows) == 12
    assert {r["status"] for r in rows.values()} == {"ok"}  # the lost task ran again elsewhere
    assert {r["solver"] for r in rows.values()} == {"nap"}
    client.wait_for_workers(2, timeout=60)  # the nanny brought the worker back
    assert pids[0] not in client.run(os.getpid).values()  # it was killed mid-sweep


def test_a_case_that_kills_every_worker_becomes_a_crashed_row(doomed_cluster, tmp_path):
    cl, _ = doomed_cluster
    out = tmp_path / "run"
    code = main(["run", "--plugin", PLUGIN, "--problems", "linear", "--solvers", "die,rk4",
                 "--steps", "16,32", "--min-time", "0.001", "--quiet", "--no-report",
                 "--executor", "dask", "--scheduler", cl.scheduler_address, "--chunk", "4",
                 "--out", str(out)])
    assert code == 0
    rows = _rows(out)
    assert len(rows) == 4  # a task of four: split after KilledWorker, each case alone
    by = {(r["solver"], r["n_steps_requested"]): r for r in rows.values()}
    for n in (16, 32):
        assert by["rk4", n]["status"] == "ok"
        assert by["die", n]["status"] == "crashed"
        assert "KilledWorker" in by["die", n]["message"]


def test_a_dask_run_resumes(cluster, serial_sweep, tmp_path):
    cl, _ = cluster
    out = tmp_path / "run"
    assert main(["run", *SWEEP, "--executor", "dask", "--scheduler", cl.scheduler_address,
                 "--out", str(out)]) == 0
    results = out / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:5]))  # as if stopped after five cases
    assert main(["run", "--resume", str(out), "--quiet", "--no-report"]) == 0
    rows = _rows(out)
    _same_figures(serial_sweep, rows)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resumes"][-1]["executor"]["name"] == "dask"
    assert meta["resumes"][-1]["n_to_go"] == len(lines) - 5


# ----------------------------------------------------------------------- usage errors


def _cli(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = (f"import sys\n{prelude}\nfrom harness.cli import main\n"
            f"sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_dask_without_distributed_exits_2_and_says_how_to_install(tmp_path):
    proc = _cli("run", "--executor", "dask", "--problems", "linear", "--solvers", "rk4",
                "--out", str(tmp_path / "run"),
                prelude="sys.modules['distributed'] = None  # as if not installed")
    assert proc.returncode == 2
    assert "pip install 'odebench[dask]'" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, says", [
    (["--jobs", "2"], "--jobs runs cases side by side"),
    (["--executor", "process", "--chunk", "2"], "--chunk is for --executor dask"),
    (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler is for --executor dask"),
    (["--executor", "process", "--no-isolate"], "cannot go with --no-isolate"),
    (["--executor", "dask", "--scheduler", "nowhere"], "not a scheduler file, nor an address"),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--jobs", "2"],
     "an existing cluster (--scheduler) has the workers it has"),
])
def test_executor_usage_errors(args, says, tmp_path, capsys):
    code = main(["run", "--problems", "linear", "--solvers", "rk4", *args,
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_unknown_executor_is_refused_with_the_valid_names(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--executor", "threads"])
    assert exc.value.code == 2
    assert "invalid choice: 'threads' (choose from 'serial', 'process', 'dask')" in \
        capsys.readouterr().err


def test_an_unreachable_scheduler_stops_the_run_and_it_resumes_on_a_local_cluster(tmp_path,
                                                                                  capsys):
    out = tmp_path / "run"
    code = main(["run", "--problems", "linear", "--solvers", "rk4", "--steps", "16,32",
                 "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "--quiet",
                 "--no-report", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reach tcp://127.0.0.1:9" in err
    assert "resume on a LocalCluster with --jobs N" in err
    assert f"python -m harness run --resume {out}" in err
    assert main(["run", "--resume", str(out), "--jobs", "1", "--quiet", "--no-report"]) == 0
    rows = _rows(out)
    assert len(rows) == 2 and {r["executor"] for r in rows.values()} == {"dask"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resumes"][-1]["executor"] == {"name": "dask", "jobs": 1, "scheduler": None,
                                               "chunk": None}


def test_a_cluster_without_workers_stops_the_run_with_exit_2(tmp_path, capsys, monkeypatch):
    from harness import executors

    monkeypatch.setattr(executors, "WORKER_WAIT_S", 1.0)
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as empty:
        code = main(["run", "--problems", "linear", "--solvers", "rk4", "--steps", "16",
                     "--executor", "dask", "--scheduler", empty.scheduler_address, "--quiet",
                     "--no-report", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "no worker joined the scheduler" in capsys.readouterr().err
