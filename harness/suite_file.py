"""Suite files: a built-in suite by name, or a TOML file, read into a :class:`~harness.suite.Suite`.

Every value is checked against what its key allows, and a bad one is refused with the file, the
line and what was expected (``key 'steps' must be a list of positive integers``). A suite file
must select problems, solvers or tags, or say ``everything = true``: an empty file would
otherwise run every case there is.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import registry
from harness.suite import BACKENDS, BUILTIN_SUITES, INT_MAX, Suite, SuiteError, toml_text
from solvers.controllers import CONTROLLERS

# the keys of a suite file that select problems or solvers: a file must name one of them, or
# write `everything = true`, since selecting nothing means every problem with every solver
_SELECTING = ("problems", "solvers", "tags", "tasks")


class _BadValue(Exception):
    """A suite-file value of the wrong kind; the message describes what was found."""


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    for kind, name in ((str, "string"), (int, "integer"), (float, "float"), (list, "list"),
                       (dict, "table")):
        if isinstance(value, kind):
            return name
    return "date/time"


def _got(value: Any, position: int | None = None) -> str:
    if isinstance(value, list) and not value and position is None:
        return "an empty list"
    where = f" at position {position}" if position is not None else ""
    return f"{_toml_type(value)} {toml_text(value)}{where}"


def _items(value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise _BadValue(_got(value))
    return value


def _names_value(value: Any) -> tuple[str, ...]:
    items = _items(value)
    for i, v in enumerate(items, 1):
        if not isinstance(v, str) or not v.strip():
            raise _BadValue(_got(v, i))
    return tuple(items)


def _number(v: Any, position: int | None, minimum: float, strict: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _BadValue(_got(v, position))
    try:
        x = float(v)
    except OverflowError:
        raise _BadValue(_got(v, position)) from None
    if not math.isfinite(x) or x < minimum or (strict and x == minimum):
        raise _BadValue(_got(v, position))
    return x


def _integer(v: Any, position: int | None, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= INT_MAX:
        raise _BadValue(_got(v, position))
    return v


def _tolerances_value(value: Any) -> tuple[float, ...]:
    return tuple(_number(v, i, 0.0, True) for i, v in enumerate(_items(value), 1))


def _counts_value(value: Any) -> tuple[int, ...]:
    return tuple(_integer(v, i, 1) for i, v in enumerate(_items(value), 1))


def _name_value(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or not value.isprintable() or any(
        c in value for c in "/\\"
    ):
        raise _BadValue(_got(value))
    return value


def _bool_value(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _BadValue(_got(value))
    return value


def _controllers_value(value: Any) -> tuple[str, ...]:
    """One controller name or a list of them, each a known one (:data:`CONTROLLERS`)."""
    names = _names_value([value] if isinstance(value, str) else value)
    for i, name in enumerate(names, 1):
        if name not in CONTROLLERS:
            where = f" at position {i}" if isinstance(value, list) else ""
            raise _BadValue(f"{toml_text(name)}{where}"
                            f"{registry.did_you_mean(name, list(CONTROLLERS))}")
    return names


def _backend_value(value: Any) -> str:
    if not isinstance(value, str) or value not in BACKENDS:
        hint = registry.did_you_mean(value, list(BACKENDS)) if isinstance(value, str) else ""
        raise _BadValue(_got(value) + hint)
    return value


def _int_value(minimum: int) -> Callable[[Any], int]:
    return lambda value: _integer(value, None, minimum)


def _float_value(strict: bool) -> Callable[[Any], float]:
    return lambda value: _number(value, None, 0.0, strict)


# key: (what it must be, as the error says it, and the check that returns the Suite's value)
_TOML_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "name": ("a string without slashes, e.g. name = \"mine\"", _name_value),
    "everything": ("true or false (true: every problem with every solver)", _bool_value),
    "problems": ("a list of problem names, e.g. problems = [\"kepler\"]", _names_value),
    "solvers": ("a list of solver names, e.g. solvers = [\"rk4\", \"dopri5\"]", _names_value),
    "tags": ("a list of tags, e.g. tags = [\"stiff\"]", _names_value),
    "rtol": ("a list of positive numbers, e.g. rtol = [1e-3, 1e-6]", _tolerances_value),
    "atol": ("a list of positive numbers, e.g. atol = [1e-6]", _tolerances_value),
    "steps": ("a list of positive integers, e.g. steps = [32, 64]", _counts_value),
    "devices": ("a list of devices, e.g. devices = [\"cpu\", \"cuda:0\"]", _names_value),
    "dtypes": ("a list of dtypes, e.g. dtypes = [\"float64\"]", _names_value),
    "batch": ("a list of positive integers, e.g. batch = [1, 1000]", _counts_value),
    "max_steps": ("a positive integer, e.g. max_steps = 100000", _int_value(1)),
    "grad_modes": ("a list of gradient modes, e.g. grad_modes = [\"backprop\"]", _names_value),
    "include": ("a list of built-in suite names, e.g. include = [\"gradients\"]",
                lambda v: () if v == [] else _names_value(v)),
    "problems_sample": ("true or false", _bool_value),
    "warmup": ("an integer >= 0", _int_value(0)),
    "min_time": ("a number of seconds >= 0", _float_value(strict=False)),
    "min_repeats": ("a positive integer", _int_value(1)),
    "max_time": ("a number of seconds >= 0", _float_value(strict=False)),
    "case_timeout": ("a positive number of seconds", _float_value(strict=True)),
    "tasks": ("a list of training task names, e.g. tasks = [\"spiral\"]", _names_value),
    "task_length": ("one of \"default\", \"full\", \"quick\"", _name_value),
    "iterations": ("a positive integer, e.g. iterations = 300", _int_value(1)),
    "epochs": ("a positive integer, e.g. epochs = 5", _int_value(1)),
    "grad_modes_fixed": ("a list of gradient modes for fixed-step solvers, e.g. "
                         "grad_modes_fixed = [\"backprop\"]", _names_value),
    "train_timeout": ("a positive number of seconds", _float_value(strict=True)),
    "train_threads": ("a positive integer (torch threads of a training case)", _int_value(1)),
    "threads": ("a positive integer (torch threads of a solve or gradient case)",
                _int_value(1)),
    "optional_solvers": ("a list of solver names used where installed, e.g. "
                         "optional_solvers = [\"tde-dopri5\"]", _names_value),
    "controller": (f"a step-size controller or a list of them ({', '.join(CONTROLLERS)}), "
                   "e.g. controller = [\"hairer\", \"pid\"]", _controllers_value),
    "backend": (f"one of {', '.join(repr(b) for b in BACKENDS)}, e.g. backend = \"host\"",
                _backend_value),
}
# keys whose Suite field has another name
_FIELD_OF = {"controller": "controllers"}


def _shown(path: Path) -> str:
    """A path for a one-line message (quoted where it holds a newline or other control)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def load_suite(spec: str) -> Suite:
    """A built-in suite by name, or a TOML file by path."""
    if spec in BUILTIN_SUITES:
        return BUILTIN_SUITES[spec]
    path = Path(spec)
    try:
        exists = bool(spec.strip()) and path.exists()
    except (OSError, ValueError):  # a name too long, a NUL byte
        exists = False
    if spec.endswith(".toml") or exists:
        return load_toml(path)
    raise SuiteError(registry.unknown_message(
        "suite", [spec], list(BUILTIN_SUITES),
        choices=f"built-in suites: {', '.join(BUILTIN_SUITES)}, or give the path of a .toml file",
    ))


def load_toml(path: Path) -> Suite:
    """The suite a TOML file describes; every key and value is checked, and a file that selects
    no problems, solvers or tags must say ``everything = true``."""
    shown = _shown(path)
    try:
        if path.is_dir():
            raise SuiteError(f"suite file {shown} is a directory, not a .toml file")
        if not path.exists():
            raise SuiteError(f"suite file {shown} does not exist")
        if not path.is_file():  # a FIFO or a device would block or read garbage
            raise SuiteError(f"suite file {shown} is not a regular file")
        text = path.read_text(encoding="utf-8")
    except SuiteError:
        raise
    except UnicodeDecodeError as exc:
        raise SuiteError(
            f"suite file {shown} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or _one_line(str(exc))
        raise SuiteError(f"suite file {shown} cannot be read: {why}") from None
    return _suite_from_toml(text, path)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _line_of(text: str, key: str) -> str:
    """``, line N`` where ``key`` is set at the top level of ``text`` (best effort), else ``""``."""
    k = re.escape(key)
    pattern = rf"""^[ \t]*(?:\[{{1,2}}[ \t]*)?(?:{k}|"{k}"|'{k}')[ \t]*[=.\]]"""
    found = re.search(pattern, text, re.MULTILINE)
    if found is None:
        return ""
    line = text.count("\n", 0, found.start()) + 1
    return f", line {line}"


def _suite_from_toml(text: str, path: Path) -> Suite:
    shown = _shown(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"suite file {shown}: not valid TOML: {_one_line(str(exc))}") from None
    except ValueError as exc:  # tomllib reads ints with int(), which stops at 4300 digits
        why = "an integer of more than 4300 digits" if "digits" in str(exc) else str(exc)
        raise SuiteError(f"suite file {shown}: not valid TOML: {_one_line(why)}") from None
    except RecursionError:
        raise SuiteError(f"suite file {shown}: not valid TOML: lists nested too deeply") from None
    unknown = [k for k in data if k not in _TOML_KEYS]
    if unknown:
        raise SuiteError(
            f"suite file {shown}{_line_of(text, unknown[0])}: " + registry.unknown_message(
                "key", unknown, list(_TOML_KEYS), choices=f"allowed keys: {', '.join(_TOML_KEYS)}"
            )
        )
    values: dict[str, Any] = {"name": path.stem, "source": f"suite file {shown}"}
    for key, value in data.items():
        what, check = _TOML_KEYS[key]
        try:
            values[_FIELD_OF.get(key, key)] = check(value)
        except _BadValue as exc:
            raise SuiteError(
                f"suite file {shown}{_line_of(text, key)}: key {key!r} must be {what}; got {exc}"
            ) from None
    everything = values.pop("everything", False)
    selecting = [k for k in _SELECTING if k in values]
    if not selecting and not everything:
        raise SuiteError(
            f"suite file {shown} selects nothing, which would run every problem with every "
            "solver: name problems, solvers or tags (e.g. solvers = [\"rk4\"]), or write "
            "everything = true to mean that"
        )
    if selecting and everything:
        raise SuiteError(
            f"suite file {shown}: everything = true means every problem and solver, but the "
            f"file also selects {', '.join(selecting)}; keep one or the other"
        )
    if "tasks" in values and "problems" not in values and "tags" not in values:
        values["problems"] = ()  # a training suite: no plain solves unless it names problems
    return Suite(**values)
