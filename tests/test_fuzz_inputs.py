"""Fuzzing what a user can type: whatever a suite file or the `run` command line holds, the
answer is a plan with cases or one line of error, never a traceback."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import cli, plugins, registry
from harness.suite import BUILTIN_SUITES, GRAD_MODES, SuiteError, expand
from harness.suite_file import load_toml

plugins.discover()
SOLVERS = registry.SOLVERS.names()
PROBLEMS = registry.PROBLEMS.names()
TAGS = {e.name: frozenset(e.factory(torch.float64, "cpu").tags)
        for e in registry.PROBLEMS.entries()}
ALL_TAGS = sorted(set().union(*TAGS.values()))
SUITE_KEYS = ["name", "everything", "problems", "solvers", "tags", "rtol", "atol", "steps",
              "devices", "dtypes", "batch", "max_steps", "grad_modes", "include",
              "problems_sample", "warmup", "min_time", "min_repeats", "max_time", "case_timeout"]
NEAR_MISSES = ["dorpi5", "rk5", "DOPRI5", "lotka-voltera", "keppler", "stif", "backpro",
               "float16", "float", "defualt", "gradient-lite", "solver", "rtols", "cpu:0", "cuda",
               "tpu", "", " ", "rk4,dopri5", "none"]
# no surrogates: a suite file is UTF-8 text
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NAME = st.one_of(st.sampled_from(SOLVERS + PROBLEMS + ALL_TAGS + list(GRAD_MODES)
                                 + ["float32", "float64", "cpu"] + list(BUILTIN_SUITES)),
                 st.sampled_from(NEAR_MISSES), TEXT)
NUMBER = st.one_of(
    st.sampled_from([1e-3, 1e-6, 1e-9, 1e-14, 1e-300, 1e-30, 0.0, -1e-3, 1.0, 1e300]),
    st.floats(), st.integers(min_value=-(2**70), max_value=2**70),
)
EXAMPLES = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _one_line(message: str) -> None:
    assert message.strip(), "an empty message"
    assert len(message.splitlines()) == 1, message


# ------------------------------------------------------------------ suite files

def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, but for DEL, which TOML wants escaped too
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def to_toml(value: object) -> str:
    """``value`` as a TOML value (inline tables for dicts); a dict at the top level as keys."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(to_toml, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {to_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def toml_document(doc: dict[str, object]) -> str:
    return "".join(f"{_toml_key(k)} = {to_toml(v)}\n" for k, v in doc.items())


ANY_VALUE = st.recursive(
    st.one_of(st.booleans(), NUMBER, NAME),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
def _some(items: list) -> st.SearchStrategy:
    return st.lists(st.sampled_from(items), min_size=1, max_size=3)


NAMES_LIST = st.lists(NAME, min_size=1, max_size=3)
TOLERANCES = [1e-3, 1e-4, 1e-6, 1e-9, 1e-14, 1e-300, 1e-30]
# values that fit their key, so that some documents get through to a plan
FITTING = {
    "problems": _some(PROBLEMS), "solvers": _some(SOLVERS), "tags": _some(ALL_TAGS),
    "devices": st.just(["cpu"]), "dtypes": _some(["float32", "float64"]),
    "grad_modes": _some(["none", *GRAD_MODES]), "include": st.lists(
        st.sampled_from(list(BUILTIN_SUITES)), max_size=2),
    "rtol": _some(TOLERANCES), "atol": _some(TOLERANCES),
    "steps": st.lists(st.integers(1, 512), min_size=1, max_size=3),
    "batch": st.lists(st.integers(1, 8), min_size=1, max_size=2),
    "everything": st.booleans(), "problems_sample": st.booleans(),
    "max_steps": st.integers(1, 10**6), "warmup": st.integers(0, 3),
    "min_repeats": st.integers(1, 5), "min_time": st.floats(0, 1), "max_time": st.floats(0, 1),
    "case_timeout": st.floats(0.1, 100), "name": st.sampled_from(["mine", "x-1", "a b"]),
}
# values of the right shape with a wrong or doubtful content: near-miss names, any numbers
NEARLY = {k: NAMES_LIST for k in ("problems", "solvers", "tags", "devices", "dtypes",
                                  "grad_modes", "include")}
NEARLY.update({k: st.lists(NUMBER, min_size=0, max_size=3)
               for k in ("rtol", "atol", "steps", "batch")})
NEARLY.update({k: NUMBER for k in ("max_steps", "warmup", "min_repeats", "min_time",
                                   "max_time", "case_timeout")})
NEARLY.update({"everything": NUMBER, "problems_sample": NAME, "name": NAME})
GOOD_DOCUMENTS = st.fixed_dictionaries({}, optional=FITTING)
# a fitting document with one key spoiled
SPOILED_DOCUMENTS = st.builds(
    lambda doc, bad: {**doc, bad[0]: bad[1]},
    GOOD_DOCUMENTS,
    st.sampled_from(SUITE_KEYS).flatmap(
        lambda k: st.tuples(st.just(k), st.one_of(NEARLY[k], ANY_VALUE))),
)
# any key, fitting or not, and now and then one that is not a key
WILD_DOCUMENTS = st.builds(
    lambda known, extra: {**known, **extra},
    st.fixed_dictionaries({}, optional={
        k: st.one_of(FITTING[k], NEARLY[k], ANY_VALUE) for k in SUITE_KEYS}),
    st.dictionaries(st.one_of(st.sampled_from(NEAR_MISSES), TEXT), ANY_VALUE, max_size=1),
)
DOCUMENTS = st.one_of(GOOD_DOCUMENTS, SPOILED_DOCUMENTS, WILD_DOCUMENTS)
FRAGMENTS = ['solvers = ["rk4"]', 'problems = ["linear"]', "everything = true", "rtol = [",
             "1e-300", "nan", "]", "[rtol]", "[[steps]]", "=", '"', "'", "\n", "#", ",",
             "steps = 99999999999999999999", "include = []", "{", "}", "1979-05-27", " "]
TOML_ISH = st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join)


@pytest.fixture(scope="module")
def scales() -> dict[str, tuple[float, float]]:
    _, info, _ = cli._problem_table()
    return {n: (i["atol"], i["rtol"]) for n, i in info.items() if "atol" in i}


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzzed.toml"


def _plan_or_one_line(path: Path, scales: dict[str, tuple[float, float]]) -> None:
    try:
        plan = expand(load_toml(path), TAGS, None, scales)
    except (SuiteError, registry.RegistryError) as exc:
        _one_line(str(exc))
    else:
        assert plan.cases


@EXAMPLES
@given(doc=DOCUMENTS)
def test_any_suite_document_gives_a_plan_or_one_line(doc, suite_path, scales):
    suite_path.write_text(toml_document(doc), encoding="utf-8")
    _plan_or_one_line(suite_path, scales)


@EXAMPLES
@given(text=st.one_of(TOML_ISH, st.text(st.characters(blacklist_categories=("Cs",)))))
def test_any_suite_text_gives_a_plan_or_one_line(text, suite_path, scales):
    suite_path.write_text(text, encoding="utf-8")
    _plan_or_one_line(suite_path, scales)


@settings(EXAMPLES, max_examples=50)
@given(data=st.binary(max_size=64))
def test_any_suite_bytes_give_a_plan_or_one_line(data, suite_path, scales):
    suite_path.write_bytes(data)
    _plan_or_one_line(suite_path, scales)


# ------------------------------------------------------------------ the run command line

def _joined(items: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(items, min_size=1, max_size=3).map(",".join)


def _flag_value(valid: list[str], doubtful: st.SearchStrategy, joined: bool = True):
    """Mostly valid values, some doubtful ones (near misses, edge numbers) and some junk."""
    item = st.one_of(st.sampled_from(valid), st.sampled_from(valid), doubtful, TEXT)
    return _joined(item) if joined else item


def _joined(items: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(items, min_size=1, max_size=3).map(",".join)


EDGE_NUMBERS = st.one_of(NUMBER.map(str), st.sampled_from(
    ["0", "-1", "abc", "inf", "nan", "1e400", "9" * 30, "1e-300", "1e-14", "5e-324", ""]))
TOLERANCE_TEXT = ["1e-3", "1e-6", "1e-9", "1e-4"]
COUNT_TEXT = ["1", "8", "64", "100"]
SECONDS_TEXT = ["0.01", "1", "30"]
FLAG_VALUES = {
    "--solvers": _flag_value(SOLVERS, NAME),
    "--problems": _flag_value(PROBLEMS, NAME),
    "--tags": _flag_value(ALL_TAGS, NAME),
    "--rtol": _flag_value(TOLERANCE_TEXT, EDGE_NUMBERS),
    "--atol": _flag_value(TOLERANCE_TEXT + ["1e-30"], EDGE_NUMBERS),
    "--steps": _flag_value(COUNT_TEXT, EDGE_NUMBERS),
    "--batch": _flag_value(COUNT_TEXT[:3], EDGE_NUMBERS),
    "--max-steps": _flag_value(COUNT_TEXT, EDGE_NUMBERS, joined=False),
    "--min-time": _flag_value(SECONDS_TEXT, EDGE_NUMBERS, joined=False),
    "--case-timeout": _flag_value(SECONDS_TEXT, EDGE_NUMBERS, joined=False),
    "--dtype": _flag_value(["float32", "float64"], NAME),
    "--grad": _flag_value(["none", *GRAD_MODES], NAME),
    "--suite": _flag_value([*BUILTIN_SUITES, "valid", "empty", "everything", "folder", "bad",
                            "missing"], NAME, joined=False),
}
ARGS = st.lists(
    st.tuples(st.sampled_from(sorted(FLAG_VALUES)), st.booleans()).flatmap(
        lambda fb: FLAG_VALUES[fb[0]].map(lambda v: [f"{fb[0]}={v}"] if fb[1] else [fb[0], v])
    ),
    max_size=4,
).map(lambda groups: [a for g in groups for a in g])


@pytest.fixture(scope="module")
def suite_files(tmp_path_factory) -> dict[str, str]:
    """The --suite values that name files: a good one, one that selects nothing, one that says
    everything, a directory, one with a bad value, and one that is not there."""
    root = tmp_path_factory.mktemp("suites")
    texts = {"valid": 'solvers = ["rk4", "dopri5"]\nproblems = ["linear"]\n', "empty": "# later\n",
             "everything": "everything = true\n", "bad": 'solvers = ["rk4"]\nsteps = [0]\n'}
    files = {}
    for name, text in texts.items():
        (root / f"{name}.toml").write_text(text)
        files[name] = str(root / f"{name}.toml")
    (root / "folder").mkdir()
    files["folder"] = str(root / "folder")
    files["missing"] = str(root / "missing.toml")
    return files


@EXAMPLES
@given(args=ARGS)
def test_any_run_command_line_gives_a_plan_or_one_error_line(args, suite_files, capsys):
    args = [suite_files.get(a, a) if i and args[i - 1] == "--suite" else a
            for i, a in enumerate(args)]
    args = [f"--suite={suite_files[a[8:]]}" if a.startswith("--suite=") and a[8:] in suite_files
            else a for a in args]
    capsys.readouterr()
    try:
        code = cli.main(["run", "--dry-run", *args])
    except SystemExit as exc:  # argparse's own refusal: usage, then "...: error: ..."
        err = capsys.readouterr().err
        assert exc.code == 2, (args, err)
        assert err.startswith("usage:") and "error:" in err, (args, err)
        return
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 0:
        assert re.match(r"\d+ cases?\b", out), (args, out)
        assert all(line.startswith(("note: ", "warning: ")) for line in err.splitlines()), err
    else:
        assert code == 2, (args, code, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
