"""The registries of solvers, problems and training tasks, and the decorators that fill them.

A leaf module: it imports nothing of the project, so any module may register into it without
an import circle. What fills it, and in which order (the built-in modules, the installed entry
points, ``--plugin`` files and modules), is :mod:`harness.plugins`. A name registered twice is
an error that names both sources.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


class RegistryError(Exception):
    """A registration or lookup that cannot be honoured (a usage error: exit code 2)."""


class PluginError(RegistryError):
    """A plugin failed to load; the message names the plugin and the error."""


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]  # solver: () -> Solver; problem: (dtype, device) -> Problem
    source: str  # "built-in (solvers.rk)", "plugin file examples/plugins/heun.py", ...


# While a plugin loads, registrations are attributed to it rather than to the defining module.
_current_source: list[str] = []


@contextlib.contextmanager
def attributed_to(source: str) -> Iterator[None]:
    _current_source.append(source)
    try:
        yield
    finally:
        _current_source.pop()


def _source_of(obj: Any) -> str:
    if _current_source:
        return _current_source[-1]
    module = getattr(obj, "__module__", None) or "?"
    top = module.split(".")[0]
    if top in ("solvers", "problems", "training"):
        return f"built-in ({module})"
    try:
        where = inspect.getsourcefile(obj) or module
    except TypeError:
        where = module
    return f"module {module} ({where})"


def did_you_mean(name: object, valid: Iterable[str]) -> str:
    """`` (did you mean 'dopri5'?)`` when ``name`` is a near miss of one of ``valid`` (by
    :func:`difflib.get_close_matches`, ignoring case), else ``""``."""
    if not isinstance(name, str) or not name:
        return ""
    by_lower: dict[str, str] = {}
    for v in valid:
        by_lower.setdefault(v.lower(), v)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unknown_message(
    kind: str, bad: Sequence[object], valid: Sequence[str], choices: str | None = None
) -> str:
    """The one-line refusal of unknown names, each with its nearest valid name, then the valid
    ones: ``unknown solver 'dorpi5' (did you mean 'dopri5'?); valid solvers: dopri5, euler, ...``.

    ``choices`` replaces the closing ``valid <kind>s: ...`` (e.g. to add "or a path").
    """
    names = ", ".join(f"{_short_repr(n)}{did_you_mean(n, valid)}" for n in bad)
    plural = "s" if len(bad) > 1 else ""
    choices = choices if choices is not None else f"valid {kind}s: {', '.join(valid)}"
    return f"unknown {kind}{plural} {names}; {choices}"


def save() -> tuple[dict, ...]:
    """The registries' contents, to :func:`restore` later (a worker that serves several runs
    goes back to its built-ins before it loads the next run's plugins)."""
    return (dict(SOLVERS._entries), dict(PROBLEMS._entries), dict(TASKS._entries),
            dict(UNAVAILABLE))


def restore(saved: tuple[dict, ...]) -> None:
    for target, entries in zip((SOLVERS._entries, PROBLEMS._entries, TASKS._entries,
                                UNAVAILABLE), saved, strict=True):
        target.clear()
        target.update(entries)


def snapshot() -> dict[str, list[tuple[str, str]]]:
    """What the registries hold, as data: for each kind, each (name, source), sorted by name;
    and what is unavailable. Two processes that discovered the same plugins give equal
    snapshots (the check that a worker sees what the run's process saw)."""
    return {
        "solver": [(e.name, e.source) for e in SOLVERS.entries()],
        "problem": [(e.name, e.source) for e in PROBLEMS.entries()],
        "task": [(e.name, e.source) for e in TASKS.entries()],
        "unavailable": sorted((u.what, u.fix) for u in UNAVAILABLE.values()),
    }


def snapshot_difference(mine: dict, theirs: dict) -> str:
    """``""`` when the snapshots are equal; else what differs, in a few words (for the error
    that stops a run whose worker sees another registry)."""
    parts = []
    for kind in sorted(set(mine) | set(theirs)):
        a, b = dict(map(tuple, mine.get(kind, []))), dict(map(tuple, theirs.get(kind, [])))
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        moved = sorted(n for n in set(a) & set(b) if a[n] != b[n])
        if only_a:
            parts.append(f"{kind}s missing there: {', '.join(only_a)}")
        if only_b:
            parts.append(f"{kind}s only there: {', '.join(only_b)}")
        if moved:
            parts.append(f"{kind}s from another source there: "
                         + ", ".join(f"{n} ({b[n]}, here {a[n]})" for n in moved))
    return "; ".join(parts)


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, factory: Callable[..., Any], source: str | None = None) -> None:
        if not isinstance(name, str) or not name or name != name.strip() or "," in name:
            raise RegistryError(
                f"invalid {self.kind} name {name!r}: use a non-empty name without commas or spaces"
            )
        source = source or _source_of(factory)
        if name in self._entries:
            old = self._entries[name]
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: first by {old.source}, "
                f"then by {source}"
            )
        self._entries[name] = Entry(name, factory, source)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            raise RegistryError(unknown_message(self.kind, [name], self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


SOLVERS = Registry("solver")
PROBLEMS = Registry("problem")
TASKS = Registry("task")  # training tasks: () -> training.tasks.Task (or a Table-1 task)


@dataclass(frozen=True)
class Unavailable:
    """A plugin that loaded but registered nothing, because what it wraps is not installed."""

    what: str  # the missing package, e.g. "torchdiffeq"
    why: str  # the import error, e.g. "No module named 'torchdiffeq'"
    fix: str  # how to get it, e.g. "pip install 'odebench[peers]'"


UNAVAILABLE: dict[str, Unavailable] = {}


def note_unavailable(what: str, why: str, fix: str) -> None:
    """Record that a plugin's solvers or problems are missing and how to add them (for `list`)."""
    UNAVAILABLE[what] = Unavailable(what, why, fix)


def unavailable_lines() -> list[str]:
    """One line per install command, e.g. "not installed: torchdiffeq, torchode (add them with:
    pip install 'odebench[peers]')"."""
    by_fix: dict[str, list[str]] = {}
    for u in UNAVAILABLE.values():
        by_fix.setdefault(u.fix, []).append(u.what)
    return [f"not installed: {', '.join(sorted(w))} (add them with: {fix})"
            for fix, w in by_fix.items()]


def register_solver(name: str) -> Callable:
    """Register a solver class or a zero-argument factory that returns a ``Solver``."""

    def deco(factory: Callable) -> Callable:
        SOLVERS.add(name, factory)
        return factory

    return deco


def register_task(name: str) -> Callable:
    """Register a training task: a zero-argument factory returning a ``training.tasks.Task``
    (what to fit, with which model, data, optimiser and iterations)."""

    def deco(factory: Callable) -> Callable:
        TASKS.add(name, factory)
        return factory

    return deco


def register_problem(name: str) -> Callable:
    """Register ``build(dtype, device) -> Problem``."""

    def deco(build: Callable) -> Callable:
        PROBLEMS.add(name, build)
        return build

    return deco


def make_solver(name: str):
    return SOLVERS.get(name).factory()


def build_problem(name: str, dtype=None, device=None):
    import torch

    return PROBLEMS.get(name).factory(dtype or torch.float64, device or "cpu")


def make_task(name: str):
    return TASKS.get(name).factory()
