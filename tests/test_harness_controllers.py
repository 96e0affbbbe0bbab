"""The controller and backend axes of a suite: the `controller`/`backend` suite keys and the
`--controller`/`--backend` flags, one case per controller a solver takes, what reaches
`solve`, the rows' `controller`/`backend` columns, and a resume that keeps the axis."""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
from dataclasses import dataclass

import pytest

from harness import plugins, registry
from harness.cli import main
from harness.runner import ProblemCache, run_case, solve_kwargs
from harness.session import plan_from_record, plan_record
from harness.suite import Case, Filters, Suite, SuiteError, expand
from harness.suite_file import load_toml

TAGS = {"linear": frozenset({"nonstiff"}), "robertson": frozenset({"stiff"})}

# Test solvers that declare the capabilities (independent of how far the RK solvers have got):
# `ctl` is adaptive and takes hairer/pid/constant, `ctl-fixed` takes constant only, `plain`
# takes neither a controller nor a backend. Each is RK4 on 64 steps and records what it got.
PLUGIN = textwrap.dedent('''
    import torch

    from harness.registry import register_solver
    from solvers.base import Backend, Capability, Solution, Solver


    class Recording(Solver):
        order = 4
        kind = "test plugin"
        calls = []  # the options each solve got, in this process

        def _solve(self, request):
            f, y0, times = request.f, request.y0, request.times
            self.calls.append(dict(request.options))
            ys, y = [y0], y0
            for t0, t1 in zip(times[:-1], times[1:]):
                h = (t1 - t0) / 64
                for i in range(64):
                    t = t0 + i * h
                    k1 = f(t, y)
                    k2 = f(t + h / 2, y + h / 2 * k1)
                    k3 = f(t + h / 2, y + h / 2 * k2)
                    k4 = f(t + h, y + h * k3)
                    y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
                ys.append(y)
            options = request.options
            controller = options.get("controller") or (self.controllers[0]
                                                       if self.controllers else "")
            backend = options.get("backend") or (
                Backend.TENSOR if Capability.BACKEND in self.capabilities else "")
            return Solution(torch.stack(ys), nfe=0, controller=str(controller),
                            backend=str(backend), t_reached=times[-1])


    @register_solver("ctl")
    class Ctl(Recording):
        name = "ctl"
        adaptive = True
        capabilities = frozenset({Capability.CONTROLLER, Capability.BACKEND})
        controllers = ("hairer", "pid", "constant")


    @register_solver("ctl-fixed")
    class CtlFixed(Recording):
        name = "ctl-fixed"
        capabilities = frozenset({Capability.CONTROLLER, Capability.BACKEND})
        controllers = ("constant",)


    @register_solver("ctl-hairer")
    class CtlHairer(Recording):
        name = "ctl-hairer"
        adaptive = True
        capabilities = frozenset({Capability.CONTROLLER})
        controllers = ("hairer", "constant")


    @register_solver("plain")
    class Plain(Recording):
        name = "plain"
        adaptive = True
''')


@pytest.fixture(scope="module", autouse=True)
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "controlled.py"
    path.write_text(PLUGIN)
    plugins.discover()  # the built-ins first: kept() restores what is loaded now
    with plugins.kept():  # after: the registry as it was, for the other test modules
        plugins.discover([str(path)])
        yield str(path)


def run_cli(*args: str) -> _Done:
    """``python -m harness ARGS`` in this process (fast: no new interpreter to start)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    return _Done(code, out.getvalue(), err.getvalue())


@dataclass
class _Done:
    returncode: int
    stdout: str
    stderr: str


def _suite(**kw) -> Suite:
    kw.setdefault("problems", ("linear",))
    kw.setdefault("rtol", (1e-3,))
    kw.setdefault("steps", (16,))
    return Suite("s", **kw)


def _by_solver(plan) -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for c in plan.cases:
        out.setdefault(c.solver, []).append(c)
    return out


# ------------------------------------------------------------------------------ suite keys


def _toml(tmp_path, text: str) -> Suite:
    path = tmp_path / "s.toml"
    path.write_text('solvers = ["dopri5"]\n' + text)
    return load_toml(path)


def test_suite_file_takes_one_controller_or_a_list_and_a_backend(tmp_path):
    assert _toml(tmp_path, 'controller = "pid"\n').controllers == ("pid",)
    suite = _toml(tmp_path, 'controller = ["hairer", "pid"]\nbackend = "host"\n')
    assert suite.controllers == ("hairer", "pid") and suite.backend == "host"
    plain = _toml(tmp_path, "")
    assert plain.controllers is None and plain.backend == "auto"


@pytest.mark.parametrize("text, says", [
    ('controller = "pdi"\n', "'pdi' (did you mean 'pid'?)"),
    ('controller = ["hairer", "nope"]\n', "'nope' at position 2"),
    ('controller = 3\n', "integer 3"),
    ('controller = []\n', "an empty list"),
    ('backend = "gpu"\n', "string 'gpu'"),
])
def test_suite_file_refuses_unknown_controllers_and_backends_naming_the_valid_ones(
        tmp_path, text, says):
    with pytest.raises(SuiteError) as exc:
        _toml(tmp_path, text)
    message = str(exc.value)
    assert ", line 2: key " in message and says in message
    assert ("hairer, pid, constant" in message if text.startswith("controller")
            else "'auto', 'tensor', 'host'" in message)


def test_a_suite_with_an_unknown_controller_or_backend_is_refused_at_expansion():
    with pytest.raises(SuiteError, match="unknown controller 'pdi'.*valid controllers: hairer, "
                                         "pid, constant"):
        expand(_suite(solvers=("dopri5",), controllers=("pdi",)), TAGS)
    with pytest.raises(SuiteError, match="unknown backend 'gpu'.*auto, tensor, host"):
        expand(_suite(solvers=("dopri5",), backend="gpu"), TAGS)


# ------------------------------------------------------------------------------- CLI flags


def test_cli_refuses_an_unknown_controller_with_exit_2_and_the_valid_names():
    proc = run_cli("run", "--problems", "linear", "--controller", "hairer,pdi", "--dry-run")
    assert proc.returncode == 2
    assert ("argument --controller: unknown controller 'pdi' (did you mean 'pid'?); valid "
            "controllers: hairer, pid, constant") in proc.stderr


def test_cli_refuses_an_unknown_backend_with_exit_2_and_the_valid_names():
    proc = run_cli("run", "--problems", "linear", "--backend", "gpu", "--dry-run")
    assert proc.returncode == 2
    assert "argument --backend: invalid choice: 'gpu'" in proc.stderr
    assert "'auto', 'tensor', 'host'" in proc.stderr


def test_cli_dry_run_plans_a_case_per_controller(plugin):
    proc = run_cli("run", "--plugin", plugin, "--problems", "linear", "--solvers",
                   "ctl,plain", "--rtol", "1e-3,1e-6", "--controller", "hairer,pid",
                   "--backend", "host", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    ids = proc.stdout.strip().splitlines()[1:]
    assert ids == [
        "solve/linear/ctl/rtol=1e-03,atol=1e-03/none/float64/cpu/b1/controller=hairer/backend=host",
        "solve/linear/ctl/rtol=1e-06,atol=1e-06/none/float64/cpu/b1/controller=hairer/backend=host",
        "solve/linear/ctl/rtol=1e-03,atol=1e-03/none/float64/cpu/b1/controller=pid/backend=host",
        "solve/linear/ctl/rtol=1e-06,atol=1e-06/none/float64/cpu/b1/controller=pid/backend=host",
        "solve/linear/plain/rtol=1e-03,atol=1e-03/none/float64/cpu/b1",
        "solve/linear/plain/rtol=1e-06,atol=1e-06/none/float64/cpu/b1",
    ]


def test_cli_refuses_a_named_solver_that_does_not_take_a_controller_asked_for(plugin):
    proc = run_cli("run", "--plugin", plugin, "--problems", "linear", "--solvers",
                   "ctl,ctl-hairer", "--controller", "pid", "--dry-run")
    assert proc.returncode == 2
    assert "solver 'ctl-hairer' takes the controllers hairer, constant, not pid" in proc.stderr
    # a fixed-step solver named beside them runs with its own steps, with a note
    proc = run_cli("run", "--plugin", plugin, "--problems", "linear", "--solvers",
                   "ctl,ctl-fixed", "--controller", "pid", "--dry-run")
    assert proc.returncode == 0, proc.stderr


def test_cli_controller_is_a_selection_flag_that_resume_refuses(tmp_path):
    proc = run_cli("run", "--resume", str(tmp_path), "--controller", "pid")
    assert proc.returncode == 2
    assert "takes no --controller" in proc.stderr


# --------------------------------------------------------------------------- case planning


def test_two_controllers_give_two_cases_for_dopri5_and_one_for_rk4_and_scipy():
    suite = _suite(solvers=("dopri5", "rk4", "scipy-rk45"), controllers=("hairer", "pid"),
                   source="built-in test suite")
    plan = expand(suite, TAGS)
    by = _by_solver(plan)
    assert [c.controller for c in by["dopri5"]] == ["hairer", "pid"]
    assert [c.controller for c in by["rk4"]] == [""]  # takes neither: its own (constant)
    assert [c.controller for c in by["scipy-rk45"]] == [""]  # takes no controller at all
    assert len({c.case_id for c in plan.cases}) == len(plan.cases) == 4
    assert any("'rk4' takes the controller constant, not hairer, pid" in n for n in plan.notes)


def test_without_a_controller_key_the_plan_is_exactly_as_before():
    suite = _suite(solvers=("dopri5", "rk4", "scipy-rk45"), rtol=(1e-3, 1e-6), steps=(8, 16))
    plan = expand(suite, TAGS)
    assert len(plan.cases) == 2 + 2 + 2
    assert all(c.controller == "" and c.backend == "" for c in plan.cases)
    assert plan.cases[0].case_id == "solve/linear/dopri5/rtol=1e-03,atol=1e-03/none/float64/cpu/b1"


def test_a_controller_a_solver_does_not_take_is_skipped_unless_the_solver_was_named(plugin):
    suite = _suite(solvers=("ctl", "ctl-fixed"), controllers=("hairer", "constant"),
                   source="built-in test suite")
    by = _by_solver(expand(suite, TAGS))
    assert [c.controller for c in by["ctl"]] == ["hairer", "constant"]
    assert [c.controller for c in by["ctl-fixed"]] == ["constant"]  # hairer skipped
    # named, an adaptive solver must take every controller asked for; a fixed-step one runs
    # with its own steps
    named = expand(suite, TAGS, Filters(solvers=("ctl", "ctl-fixed")))
    assert [c.controller for c in _by_solver(named)["ctl-fixed"]] == ["constant"]
    with pytest.raises(SuiteError, match="solver 'ctl-hairer' takes the controllers hairer, "
                                         "constant, not pid"):
        expand(_suite(solvers=("ctl", "ctl-hairer"), controllers=("pid",),
                      source="built-in test suite"), TAGS,
               Filters(solvers=("ctl", "ctl-hairer")))
    # a suite file's solvers are named ones too
    with pytest.raises(SuiteError, match="'ctl-hairer'"):
        expand(_suite(solvers=("ctl-hairer",), controllers=("pid",), source="suite file x"),
               TAGS)


def test_a_backend_reaches_only_solvers_that_take_one_and_auto_reaches_none(plugin):
    by = _by_solver(expand(_suite(solvers=("ctl", "plain"), backend="host"), TAGS))
    assert [c.backend for c in by["ctl"]] == ["host"]
    assert [c.backend for c in by["plain"]] == [""]
    auto = expand(_suite(solvers=("ctl",), backend="auto"), TAGS)
    assert [c.backend for c in auto.cases] == [""]


def test_the_command_line_controller_narrows_included_suites_too(plugin):
    suite = Suite("s", problems=(), solvers=("ctl",), include=("gradients-lite",),
                  source="built-in test suite")
    plan = expand(suite, {**TAGS, "mlp": frozenset()},
                  Filters(solvers=("dopri5",), controllers=("hairer", "pid")))
    grads = [c for c in plan.cases if c.kind == "gradient"]
    assert grads and {c.controller for c in grads} == {"hairer", "pid"}
    assert len(grads) == 2 * len({(c.rtol, c.grad_mode) for c in grads})


def test_cases_differing_only_in_controller_or_backend_have_different_ids():
    ids = {Case("linear", "dopri5", rtol=1e-6, atol=1e-6, controller=c, backend=b).case_id
           for c in ("", "hairer", "pid") for b in ("", "host")}
    assert len(ids) == 6
    train = Case("spiral", "dopri5", kind="train", rtol=1e-6, atol=1e-6, epochs=3,
                 model="odenet", controller="pid")
    assert train.case_id.endswith("/controller=pid/ep3/odenet")  # the model stays last
    assert "controller=pid" in Case("linear", "dopri5", rtol=1e-6, atol=1e-6,
                                    controller="pid").setting


# ------------------------------------------------------------------------ the stored plan


def test_a_stored_plan_keeps_the_controller_and_backend():
    cases = [Case("linear", "dopri5", rtol=1e-6, atol=1e-6, controller=c, backend="host")
             for c in ("hairer", "pid")]
    record = json.loads(json.dumps(plan_record(cases)))
    assert plan_from_record(record, "meta.json") == cases


def test_a_plan_stored_before_the_controller_axis_still_resumes():
    old = Case("linear", "dopri5", rtol=1e-6, atol=1e-6)
    record = plan_record([old])
    for item in record:
        del item["controller"], item["backend"]
    assert plan_from_record(record, "meta.json") == [old]


# ------------------------------------------------------------------ what reaches the solver


def test_solve_kwargs_pass_controller_and_backend_only_to_solvers_that_take_them(plugin):
    problem = registry.build_problem("linear", __import__("torch").float64, "cpu")
    case = Case("linear", "ctl", rtol=1e-6, atol=1e-6, controller="pid", backend="host")
    got = solve_kwargs(case, registry.make_solver("ctl"), problem)
    assert got["controller"] == "pid" and got["backend"] == "host"
    plain = solve_kwargs(case, registry.make_solver("plain"), problem)
    assert "controller" not in plain and "backend" not in plain
    none = solve_kwargs(Case("linear", "ctl", rtol=1e-6, atol=1e-6),
                        registry.make_solver("ctl"), problem)
    assert "controller" not in none and "backend" not in none
    # a gradient case's solve gets the same (the gradient modes call solve with them)
    grad = Case("mlp", "ctl", rtol=1e-6, atol=1e-6, controller="pid", grad_mode="backprop",
                kind="gradient")
    assert solve_kwargs(grad, registry.make_solver("ctl"), problem)["controller"] == "pid"


def test_rows_say_which_controller_and_backend_ran(plugin):
    suite = Suite("s", min_time=0.0, min_repeats=1, max_time=0.0)
    problems = ProblemCache()
    row = run_case(Case("linear", "ctl", rtol=1e-6, atol=1e-6, controller="pid",
                        backend="host"), problems, suite)
    assert row["status"] == "ok", row["message"]
    assert row["controller"] == "pid" and row["backend"] == "host"
    own = run_case(Case("linear", "ctl", rtol=1e-6, atol=1e-6), problems, suite)
    assert own["controller"] == "hairer" and own["backend"] == "tensor"  # from the Solution
    plain = run_case(Case("linear", "plain", rtol=1e-6, atol=1e-6), problems, suite)
    assert plain["controller"] == "" and plain["backend"] == ""


def test_a_gradient_row_says_what_its_forward_solve_ran(plugin):
    suite = Suite("s", min_time=0.0, min_repeats=1, max_time=0.0)
    ctl = registry.make_solver("ctl")
    ctl.calls.clear()
    row = run_case(Case("linear", "ctl", rtol=1e-6, atol=1e-6, grad_mode="backprop",
                        kind="gradient", controller="pid", backend="host"), ProblemCache(), suite)
    assert row["status"] == "ok", row["message"]
    assert row["controller"] == "pid" and row["backend"] == "host"
    assert ctl.calls and all(c == {"controller": "pid", "backend": "host"} for c in ctl.calls)


def test_an_error_row_keeps_the_controller_the_case_asked_for(tmp_path):
    from harness.runner import error_row
    from solvers.base import Status

    row = error_row(Case("linear", "dopri5", rtol=1e-6, atol=1e-6, controller="pid"),
                    Status.CRASHED, "died", "now", 0.1)
    assert row["controller"] == "pid" and row["status"] == "crashed"


# ---------------------------------------------------------------------------------- resume


def test_resume_runs_the_missing_controller_case_and_keeps_the_axis(plugin, tmp_path):
    out = tmp_path / "run"
    selection = ("--plugin", plugin, "--problems", "linear", "--solvers", "ctl,plain",
                 "--rtol", "1e-3", "--controller", "hairer,pid", "--min-time", "0.001",
                 "--no-isolate")
    proc = run_cli("run", *selection, "--out", str(out), "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    results = out / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    rows = [json.loads(line) for line in lines]
    assert [(r["solver"], r["controller"]) for r in rows] == [
        ("ctl", "hairer"), ("ctl", "pid"), ("plain", "")]
    results.write_text(lines[0] + lines[2])  # as if the run had stopped before the pid case
    proc = run_cli("run", "--resume", str(out), "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert "1 of 3 cases to go" in proc.stderr
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["solver"], r["controller"]) for r in rows] == [
        ("ctl", "hairer"), ("plain", ""), ("ctl", "pid")]
    assert rows[-1]["case_id"].endswith("/controller=pid")
