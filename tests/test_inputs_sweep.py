"""Every bad input gets one clear line: did-you-mean for unknown names, suite files that select
nothing, unreadable suite paths, tolerances below a dtype's precision, and bad suite values."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli

from harness import cli, plugins, registry
from harness.suite import (
    BUILTIN_SUITES,
    Filters,
    Suite,
    SuiteError,
    expand,
    override,
)
from harness.suite_file import load_suite, load_toml

TAGS = {
    "linear": frozenset({"nonstiff", "exact"}),
    "lotka-volterra": frozenset({"nonstiff"}),
    "robertson": frozenset({"stiff"}),
    "mlp": frozenset({"learned"}),
}
EMPTY_SELECTION = ("selects nothing", "name problems, solvers or tags", "everything = true")


@pytest.fixture(scope="module", autouse=True)
def _discover():
    plugins.discover()


@pytest.fixture(scope="module")
def all_tags() -> dict[str, frozenset[str]]:
    """Every registered problem's tags (building a problem is cheap: its data is lazy)."""
    return {e.name: frozenset(e.factory(torch.float64, "cpu").tags)
            for e in registry.PROBLEMS.entries()}


def _suite_file(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _refusal(call) -> str:
    """The message of the SuiteError or RegistryError ``call()`` raises; it must be one line."""
    with pytest.raises((SuiteError, registry.RegistryError)) as exc:
        call()
    message = str(exc.value)
    assert message and "\n" not in message, message
    return message


# ------------------------------------------------------------------ through the real CLI
# Each process start costs seconds, so the few end-to-end runs go at once, in threads.

@pytest.fixture(scope="module")
def cli_runs() -> dict[str, object]:
    commands = {
        "dorpi5": ("run", "--solvers", "dorpi5", "--dry-run"),
        "lotka-voltera": ("run", "--problems", "lotka-voltera", "--dry-run"),
    }
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = {k: pool.submit(run_cli, *args, timeout=120) for k, args in commands.items()}
        return {k: f.result() for k, f in futures.items()}


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


def test_cli_suggests_dopri5_for_dorpi5_and_keeps_the_valid_list(cli_runs):
    line = _one_error_line(cli_runs["dorpi5"])
    assert line.startswith("error: unknown solver 'dorpi5' (did you mean 'dopri5'?); "
                           "valid solvers: ")
    assert "rk4" in line and "scipy-radau" in line


def test_cli_suggests_lotka_volterra_for_lotka_voltera(cli_runs):
    line = _one_error_line(cli_runs["lotka-voltera"])
    assert line.startswith("error: unknown problem 'lotka-voltera' (did you mean "
                           "'lotka-volterra'?); valid problems: ")
    assert "kepler" in line


# ------------------------------------------------------------------ in-process CLI

def _main(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["run", "--dry-run", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_refuses_a_comment_only_suite_file(tmp_path, capsys):
    path = _suite_file(tmp_path, "# nothing chosen yet\n")
    code, out, err = _main(capsys, "--suite", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"error: suite file {path} selects nothing") and err.count("\n") == 1
    for fragment in EMPTY_SELECTION:
        assert fragment in err


def test_dry_run_of_an_everything_file_counts_every_problem_and_solver(tmp_path, capsys,
                                                                       all_tags):
    path = _suite_file(tmp_path, "everything = true\n")
    code, out, err = _main(capsys, "--suite", str(path))
    assert code == 0, err
    n = int(re.match(r"(\d+) cases?", out).group(1))
    assert n == len(expand(load_toml(path), all_tags).cases) > 1000


def test_dry_run_of_a_directory_says_it_is_a_directory(tmp_path, capsys):
    code, out, err = _main(capsys, "--suite", str(tmp_path))
    assert code == 2 and out == ""
    assert err == f"error: suite file {tmp_path} is a directory, not a .toml file\n"


def test_dry_run_refuses_an_rtol_below_machine_epsilon(capsys):
    code, _, err = _main(capsys, "--solvers", "dopri5", "--problems", "linear",
                         "--rtol", "1e-300")
    assert code == 2
    assert err == (
        "error: rtol 1e-300 is below float64's machine epsilon (2.2e-16): no solver can meet "
        "it; use rtol >= 2.2e-13 (1000 eps) for float64\n"
    )


def test_dry_run_warns_of_float32_at_rtol_1e_6(capsys):
    code, out, err = _main(capsys, "--solvers", "dopri5", "--problems", "linear",
                           "--rtol", "1e-6", "--dtype", "float32")
    assert code == 0 and out.startswith("1 case")
    assert "warning: rtol 1e-06 is below 1000 eps of float32 (1.2e-04): expect step_too_small " \
           "or max_steps" in err


# ------------------------------------------------------------------ did you mean

@pytest.mark.parametrize(
    ("suite", "expected"),
    [
        (Suite("s", solvers=("dorpi5",)),
         "unknown solver 'dorpi5' (did you mean 'dopri5'?); valid solvers: dopri5, "),
        (Suite("s", problems=("lotka-voltera",)),
         "unknown problem 'lotka-voltera' (did you mean 'lotka-volterra'?); valid problems: "
         "linear, lotka-volterra, mlp, robertson"),
        (Suite("s", tags=("stif",)),
         "unknown tag 'stif' (did you mean 'stiff'?); valid tags: exact, learned, nonstiff, "
         "stiff"),
        (Suite("s", grad_modes=("backpropagation",)),
         "unknown gradient mode 'backpropagation' (did you mean 'backprop'?); valid gradient "
         "modes: none, backprop, adjoint, adjoint-seminorm, checkpoint"),
        (Suite("s", dtypes=("float46",)),
         "unknown dtype 'float46' (did you mean 'float64'?); valid dtypes: float32, float64"),
        (Suite("s", solvers=("rk4",), include=("gradient-lite",)),
         "suite 's' includes an unknown suite 'gradient-lite' (did you mean 'gradients-lite'?);"
         " built-in suites: default, full, gradients, gradients-lite, quick, train, train-full,"
         " train-lite, train-quick"),
        (Suite("s", devices=("cpy",)),
         "unknown device 'cpy' (did you mean 'cpu'?); use cpu, cuda or cuda:N"),
    ],
    ids=["solver", "problem", "tag", "gradient-mode", "dtype", "include", "device"],
)
def test_unknown_names_in_a_suite_get_the_nearest_valid_name(suite, expected):
    assert _refusal(lambda: expand(suite, TAGS)).startswith(expected)


def test_case_of_a_name_is_forgiven_in_the_suggestion():
    assert "(did you mean 'dopri5'?)" in _refusal(
        lambda: expand(Suite("s", solvers=("DOPRI5",)), TAGS))


def test_each_unknown_name_gets_its_own_suggestion():
    message = _refusal(lambda: expand(Suite("s", solvers=("dorpi5", "rk5", "zzzzzz")), TAGS))
    assert message.startswith("unknown solvers 'dorpi5' (did you mean 'dopri5'?), 'rk5' (did "
                              "you mean 'rk4'?), 'zzzzzz'; valid solvers: ")


def test_a_name_close_to_nothing_gets_only_the_valid_list():
    assert _refusal(lambda: expand(Suite("s", solvers=("qqqqqq",)), TAGS)).startswith(
        "unknown solver 'qqqqqq'; valid solvers: dopri5")


def test_unknown_suite_name_suggests_a_built_in_one():
    assert _refusal(lambda: load_suite("defualt")) == (
        "unknown suite 'defualt' (did you mean 'default'?); built-in suites: default, full, "
        "gradients, gradients-lite, quick, train, train-full, train-lite, train-quick, or give "
        "the path of a .toml file"
    )


def test_unknown_suite_file_key_suggests_the_allowed_one_and_its_line(tmp_path):
    path = _suite_file(tmp_path, 'problems = ["linear"]\nsolver = ["rk4"]\n')
    message = _refusal(lambda: load_toml(path))
    assert message.startswith(f"suite file {path}, line 2: unknown key 'solver' (did you mean "
                              "'solvers'?); allowed keys: name, everything, problems, solvers")


def test_a_built_in_suite_may_not_include_itself_but_a_file_of_its_name_may(tmp_path):
    assert _refusal(lambda: expand(Suite("quick", solvers=("rk4",), include=("quick",)), TAGS)
                    ).startswith("suite 'quick' includes itself; built-in suites to include: ")
    path = _suite_file(tmp_path, 'solvers = ["euler"]\ninclude = ["quick"]\n', "quick.toml")
    plan = expand(load_toml(path), TAGS)
    assert "quick" in plan.parts and {"euler", "rk4"} <= set(plan.solvers)


def test_registry_lookup_suggests_the_nearest_name():
    reg = registry.Registry("problem")
    for name in ("kepler", "arenstorf", "lotka-volterra"):
        reg.add(name, object, "x")
    assert _refusal(lambda: reg.get("lotka-voltera")) == (
        "unknown problem 'lotka-voltera' (did you mean 'lotka-volterra'?); valid problems: "
        "arenstorf, kepler, lotka-volterra"
    )


# ------------------------------------------------------------------ selecting nothing

@pytest.mark.parametrize(
    "text",
    ["", "# a suite, some day\n\n", 'name = "later"\n', "rtol = [1e-4]\n", "everything = false\n",
     'include = ["gradients"]\n'],
    ids=["empty", "comment-only", "only-name", "only-rtol", "everything-false", "only-include"],
)
def test_a_suite_file_that_selects_nothing_is_refused(tmp_path, text):
    message = _refusal(lambda: load_toml(_suite_file(tmp_path, text)))
    for fragment in EMPTY_SELECTION:
        assert fragment in message


def test_everything_true_means_every_problem_with_every_solver(tmp_path):
    suite = load_toml(_suite_file(tmp_path, "everything = true\nrtol = [1e-4]\nsteps = [64]\n"))
    assert suite.problems is None and suite.solvers is None and suite.tags is None
    plan = expand(suite, TAGS)
    assert plan.problems == sorted(TAGS)
    assert plan.solvers == registry.SOLVERS.names()


def test_everything_true_beside_a_selection_is_refused_as_contradictory(tmp_path):
    message = _refusal(lambda: load_toml(_suite_file(
        tmp_path, 'everything = true\nsolvers = ["rk4"]\n')))
    assert "everything = true" in message and "also selects solvers" in message


# ------------------------------------------------------------------ suite-file paths

def test_a_directory_given_as_suite_file_is_named_a_directory(tmp_path):
    folder = tmp_path / "suites.toml"
    folder.mkdir()
    assert _refusal(lambda: load_suite(str(folder))) == (
        f"suite file {folder} is a directory, not a .toml file")


def test_a_missing_suite_file_does_not_exist(tmp_path):
    missing = tmp_path / "nope.toml"
    assert _refusal(lambda: load_suite(str(missing))) == f"suite file {missing} does not exist"


def test_a_suite_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    assert _refusal(lambda: load_toml(path)).startswith(f"suite file {path} is not UTF-8 text")


def test_an_unreadable_suite_file_is_one_line(tmp_path, monkeypatch):
    path = _suite_file(tmp_path, 'solvers = ["rk4"]\n')

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    assert _refusal(lambda: load_toml(path)) == (
        f"suite file {path} cannot be read: Permission denied")


# ------------------------------------------------------------------ tolerance vs dtype

@pytest.mark.parametrize(
    ("dtype", "rtol", "expected"),
    [
        ("float64", 1e-300, "rtol 1e-300 is below float64's machine epsilon (2.2e-16): no solver "
                            "can meet it; use rtol >= 2.2e-13 (1000 eps) for float64"),
        ("float32", 1e-8, "rtol 1e-08 is below float32's machine epsilon (1.2e-07): no solver "
                          "can meet it; use rtol >= 1.2e-04 (1000 eps) for float32"),
    ],
)
def test_an_rtol_below_machine_epsilon_is_refused(dtype, rtol, expected):
    suite = Suite("s", solvers=("dopri5",), problems=("linear",), rtol=(1e-3, rtol),
                  dtypes=(dtype,))
    assert _refusal(lambda: expand(suite, TAGS)) == expected


def test_the_epsilon_check_reads_the_suite_file_too(tmp_path):
    path = _suite_file(tmp_path, 'solvers = ["dopri5"]\nrtol = [1e-17, 1e-20]\n')
    assert _refusal(lambda: expand(load_toml(path), TAGS)).startswith(
        "rtol 1e-17, 1e-20 are below float64's machine epsilon (2.2e-16): no solver can meet "
        "them;")


@pytest.mark.parametrize(
    ("dtype", "rtol", "expected"),
    [
        ("float32", (1e-3, 1e-5, 1e-6), "warning: rtol 1e-05, 1e-06 are below 1000 eps of float32 "
                                        "(1.2e-04): expect step_too_small or max_steps"),
        ("float64", (1e-14, 1e-3), "warning: rtol 1e-14 is below 1000 eps of float64 (2.2e-13): "
                                   "expect step_too_small or max_steps"),
    ],
)
def test_near_epsilon_rtols_give_one_warning_for_the_dtype(dtype, rtol, expected):
    suite = Suite("s", solvers=("dopri5", "scipy-rk45", "rk4"), problems=("linear", "robertson"),
                  rtol=rtol, dtypes=(dtype,), batch=(1, 4))
    assert [n for n in expand(suite, TAGS).notes if n.startswith("warning: ")] == [expected]


def test_a_float64_ladder_warns_only_for_float32_beside_it():
    suite = Suite("s", solvers=("dopri5",), problems=("linear",), rtol=(1e-3, 1e-6),
                  dtypes=("float32", "float64"))
    assert [n for n in expand(suite, TAGS).notes if n.startswith("warning: ")] == [
        "warning: rtol 1e-06 is below 1000 eps of float32 (1.2e-04): expect step_too_small or "
        "max_steps"]


def test_fixed_step_solvers_and_atol_are_not_held_to_epsilon():
    # rk4 takes no rtol; an absolute scale of 1e-30 is legitimate (E5's components are tiny)
    plan = expand(Suite("s", solvers=("rk4", "dopri5"), problems=("linear",), rtol=(1e-6,),
                        atol=(1e-30,), dtypes=("float32",)), TAGS)
    assert {c.atol for c in plan.cases if c.atol is not None} == {1e-30}


def test_an_included_suites_ladder_says_where_it_comes_from(all_tags):
    # --dtype float32 --rtol 1e-3: the default suite's own ladder is fine, but the included
    # gradients-lite ladder goes down to 1e-8, below float32's eps, and --rtol does not reach it
    suite = override(BUILTIN_SUITES["default"], rtol=(1e-3,), dtypes=("float32",))
    assert _refusal(lambda: expand(suite, all_tags, Filters(dtypes=("float32",)))) == (
        "rtol 1e-07, 1e-08 are below float32's machine epsilon (1.2e-07): no solver can meet "
        "them; use rtol >= 1.2e-04 (1000 eps) for float32; 1e-07, 1e-08 come from included "
        "suites 'gradients-lite', 'train-lite', which --grad none leaves out"
    )


def test_only_the_included_ladders_rtol_gets_the_include_hint(all_tags):
    suite = override(BUILTIN_SUITES["default"], rtol=(1e-3, 1e-8), dtypes=("float32",))
    message = _refusal(lambda: expand(suite, all_tags, Filters(dtypes=("float32",))))
    assert message.startswith("rtol 1e-07, 1e-08 are below float32's machine epsilon")
    assert message.endswith("; 1e-07 comes from included suites 'gradients-lite', "
                            "'train-lite', which --grad none leaves out")


@pytest.mark.parametrize("name", list(BUILTIN_SUITES))
def test_built_in_suites_expand_without_tolerance_errors_or_warnings(name, all_tags):
    plan = expand(BUILTIN_SUITES[name], all_tags)
    assert plan.cases
    assert not [n for n in plan.notes if n.startswith("warning: ")]


# ------------------------------------------------------------------ bad suite-file values

@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('solvers = "rk4"\n', "key 'solvers' must be a list of solver names"),
        ("solvers = []\n", "got an empty list"),
        ("solvers = [1]\n", "got integer 1 at position 1"),
        ('solvers = ["rk4", ""]\n', "got string '' at position 2"),
        ('solvers = [["rk4"]]\n', "got list ['rk4'] at position 1"),
        ('solvers = ["rk4"]\nrtol = [true]\n', "got boolean true at position 1"),
        ('solvers = ["rk4"]\nrtol = [nan]\n', "got float nan at position 1"),
        ('solvers = ["rk4"]\nrtol = [-1e-3]\n', "key 'rtol' must be a list of positive numbers"),
        ('solvers = ["rk4"]\natol = [inf]\n', "got float inf at position 1"),
        ('solvers = ["rk4"]\nrtol = [0]\n', "got integer 0 at position 1"),
        ('solvers = ["rk4"]\nsteps = [1.5]\n', "got float 1.5 at position 1"),
        ('solvers = ["rk4"]\nsteps = [99999999999999999999]\n',
         "got integer 99999999999999999999 at position 1"),
        ('solvers = ["rk4"]\nsteps = [' + "9" * 5000 + "]\n",
         "not valid TOML: an integer of more than 4300 digits"),
        ('solvers = ["rk4"]\nbatch = [0]\n', "key 'batch' must be a list of positive integers"),
        ('solvers = ["rk4"]\nmax_steps = true\n', "got boolean true"),
        ('solvers = ["rk4"]\nmax_steps = 0\n', "key 'max_steps' must be a positive integer"),
        ('solvers = ["rk4"]\nwarmup = -1\n', "key 'warmup' must be an integer >= 0"),
        ('solvers = ["rk4"]\nmin_time = -inf\n', "got float -inf"),
        ('solvers = ["rk4"]\ncase_timeout = 0\n', "key 'case_timeout' must be a positive"),
        ('solvers = ["rk4"]\nmin_repeats = 1979-05-27\n', "got date/time 1979-05-27"),
        ('solvers = ["rk4"]\nproblems_sample = 1\n', "key 'problems_sample' must be true or false"),
        ('solvers = ["rk4"]\neverything = "yes"\n', "key 'everything' must be true or false"),
        ('solvers = ["rk4"]\nname = "../elsewhere"\n', "key 'name' must be a string without"),
        ('solvers = ["rk4"]\n[rtol]\nfirst = 1e-3\n', "got table {first = 0.001}"),
        ('solvers = ["rk4"]\nrtol.first = 1e-3\n', "got table {first = 0.001}"),
        ('solvers = ["rk4"\n', "not valid TOML"),
        ("solvers = " + "[" * 5000 + "]" * 5000 + "\n", "not valid TOML: lists nested too deeply"),
    ],
)
def test_bad_suite_file_values_are_one_line_refusals(tmp_path, text, fragment):
    path = _suite_file(tmp_path, text)
    message = _refusal(lambda: expand(load_toml(path), TAGS))
    assert fragment in message
    assert message.startswith(f"suite file {path}")


def test_a_value_error_names_the_line_of_its_key(tmp_path):
    path = _suite_file(tmp_path, '# mine\nsolvers = ["rk4"]\n\nsteps = [0]\n')
    assert _refusal(lambda: load_toml(path)).startswith(f"suite file {path}, line 4: key 'steps'")


def test_a_name_given_twice_is_one_case():
    plan = expand(Suite("s", solvers=("rk4", "rk4"), problems=("linear", "linear"),
                        steps=(8, 8, 16)), TAGS)
    assert [c.n_steps for c in plan.cases] == [8, 16]
    assert plan.solvers == ["rk4"] and plan.problems == ["linear"]


def test_tolerances_that_share_a_case_id_are_refused():
    message = _refusal(lambda: expand(
        Suite("s", solvers=("dopri5",), problems=("linear",), rtol=(1e-3, 1.2e-3)), TAGS))
    assert "have the same case id" in message and "differ in their first digit" in message


@pytest.mark.parametrize(
    ("suite", "fragment"),
    [
        (Suite("s", rtol=(10**400,)), "rtol must be positive finite numbers"),
        (Suite("s", steps=(2**70,)), "steps must be positive integers of at most 2**63 - 1"),
        (Suite("s", batch=(True,)), "batch must be positive integers"),
        (Suite("s", max_steps=-3), "max_steps must be a positive integer of at most"),
        (Suite("s", solvers=(3,)), "unknown solver 3"),
    ],
)
def test_bad_values_of_a_suite_built_in_code_are_refused_by_expand_too(suite, fragment):
    assert fragment in _refusal(lambda: expand(suite, TAGS))
