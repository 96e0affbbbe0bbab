"""What fills the registries, as data that any process can replay.

A registry is made of, in this order:

1. the built-in modules, :data:`DEFAULT_MODULES` (a plain list of names, as pytest lists its
   default plugins), each registering its solvers, problems or tasks when imported;
2. the installed entry points of the groups :data:`GROUPS` (the peer solvers among them,
   declared by odebench's own distribution, and any other installed package's);
3. the run's ``--plugin`` files and modules, in the order given.

:class:`Discovery` describes that as data, with each plugin file's text, so that a worker
process (a local one, or a Dask worker on another machine that has odebench but not the file)
rebuilds the same registry: :func:`rebuild` loads a file from its path when the file there has
the same text, and from the shipped text otherwise, under the same name either way.
:func:`harness.registry.snapshot` of the two processes must then be equal, which the executors
check before a worker runs a case.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from harness.registry import (
    PROBLEMS,
    SOLVERS,
    TASKS,
    PluginError,
    RegistryError,
    attributed_to,
    restore,
    save,
)

DEFAULT_MODULES: tuple[str, ...] = ("solvers.builtin", "problems.builtin", "training.builtin")
"""The built-in modules, imported first (each registers what it defines)."""

SOLVER_GROUP = "odebench.solvers"
PROBLEM_GROUP = "odebench.problems"
TASK_GROUP = "odebench.tasks"
GROUPS = (SOLVER_GROUP, PROBLEM_GROUP, TASK_GROUP)
_REGISTRY_OF = {SOLVER_GROUP: SOLVERS, PROBLEM_GROUP: PROBLEMS, TASK_GROUP: TASKS}


@dataclass(frozen=True)
class PluginFile:
    """A ``--plugin`` file: its absolute path and its text (what a worker loads when the path
    does not hold the same text there)."""

    path: str
    text: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class Discovery:
    """How a registry was filled: replayable in another process by :func:`rebuild`."""

    modules: tuple[str, ...] = DEFAULT_MODULES
    entry_points: bool = True
    plugins: tuple[str | PluginFile, ...] = ()  # a module name, or a file with its text

    @property
    def key(self) -> str:
        """Equal for equal discoveries (a worker rebuilds once per key)."""
        parts = [*self.modules, str(self.entry_points)]
        parts += [p if isinstance(p, str) else f"{p.path}@{p.digest}" for p in self.plugins]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


_loaded_modules: set[str] = set()
_entry_points_loaded = False
_loaded_plugins: set[str] = set()
# what this process has loaded, in order, for a worker to replay
_loaded: list[str | PluginFile] = []


def load_defaults(modules: tuple[str, ...] = DEFAULT_MODULES) -> None:
    """Import the built-in modules (once each)."""
    for name in modules:
        if name not in _loaded_modules:
            importlib.import_module(name)
            _loaded_modules.add(name)


def load_entry_points() -> list[str]:
    """Load the installed plugins (once). Returns one warning line for each that failed."""
    global _entry_points_loaded
    warnings: list[str] = []
    if _entry_points_loaded:
        return warnings
    _entry_points_loaded = True
    for group in GROUPS:
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            source = f"entry point {ep.name} = {ep.value} ({group}, {_dist_name(ep)})"
            try:
                with attributed_to(source):
                    obj = ep.load()
                    _register_loaded(group, ep.name, obj, source)
            except RegistryError:
                raise
            except Exception as exc:  # an installed plugin that is broken must not stop the run
                warnings.append(f"could not load {source}: {type(exc).__name__}: {exc}")
    return warnings


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return f"package {dist.name}" if dist is not None else "package ?"


def _register_loaded(group: str, name: str, obj: Any, source: str) -> None:
    """An entry point may name a module (that registers itself) or the object to register."""
    if inspect.ismodule(obj):
        return
    registry = _REGISTRY_OF[group]
    if name in registry and registry.get(name).factory is obj:
        return
    registry.add(name, obj, source)


def _module_name(path: str) -> str:
    # from the path, not hash(): the same name in every process (hash() is salted per process)
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    return f"odebench_plugin_{Path(path).stem}_{digest}"


def _exec_file(spec: str, load_from: Path) -> None:
    """Execute a plugin file (``load_from``, which may be a copy) as the plugin ``spec``."""
    source = f"plugin file {spec}"
    mod_name = _module_name(spec)
    try:
        module_spec = importlib.util.spec_from_file_location(mod_name, load_from)
        if module_spec is None or module_spec.loader is None:
            raise ImportError("not a Python source file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        with attributed_to(source):
            module_spec.loader.exec_module(module)
    except RegistryError:
        raise
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise PluginError(
            f"plugin file {spec} failed to import: {type(exc).__name__}: {exc}"
        ) from exc


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or Path(spec).exists()


def load_plugin(spec: str) -> None:
    """Load ``--plugin`` ``spec``: a path to a ``.py`` file, or an importable module name."""
    if spec in _loaded_plugins:
        return
    path = Path(spec)
    if is_file_spec(spec):
        if not path.is_file():
            raise PluginError(f"plugin file {spec} does not exist")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise PluginError(f"plugin file {spec} cannot be read: {exc}") from None
        _exec_file(spec, path)
        _loaded.append(PluginFile(spec, text))
    else:
        try:
            with attributed_to(f"plugin module {spec}"):
                importlib.import_module(spec)
        except RegistryError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin module {spec} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        _loaded.append(spec)
    _loaded_plugins.add(spec)


def _load_shipped(plugin: PluginFile) -> None:
    """A plugin file in a worker: from its path where that holds the same text, else from a
    copy of the shipped text (a worker on another machine)."""
    if plugin.path in _loaded_plugins:
        return
    path = Path(plugin.path)
    try:
        same = path.is_file() and path.read_text() == plugin.text
    except (OSError, UnicodeDecodeError):
        same = False
    if same:
        _exec_file(plugin.path, path)
    else:
        copy = Path(tempfile.gettempdir()) / "odebench-plugins" / plugin.digest / path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        # written aside, then renamed: a worker beside this one (on the same machine) that
        # reads the copy meanwhile sees the whole text, never a half-written or emptied file
        fd, aside = tempfile.mkstemp(dir=copy.parent, suffix=".part")
        with os.fdopen(fd, "w") as f:
            f.write(plugin.text)
        os.replace(aside, copy)
        _exec_file(plugin.path, copy)
    _loaded.append(plugin)
    _loaded_plugins.add(plugin.path)


def discover(plugins: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Load the built-ins, the entry points and the given plugins. Returns warnings to show."""
    load_defaults()
    warnings = load_entry_points()
    for spec in plugins:
        load_plugin(spec)
    return warnings


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """Inside, plugins may be loaded; after, the registries and what this process has loaded
    are as they were (for tests that load plugins in the test process)."""
    global _rebuilt_for
    state = save(), list(_loaded), set(_loaded_plugins), _rebuilt_for
    try:
        yield
    finally:
        restore(state[0])
        _loaded[:] = state[1]
        _loaded_plugins.clear()
        _loaded_plugins.update(state[2])
        _rebuilt_for = state[3]


def current() -> Discovery:
    """What this process's registry was made of so far, for a worker to rebuild."""
    return Discovery(modules=tuple(m for m in DEFAULT_MODULES if m in _loaded_modules),
                     entry_points=_entry_points_loaded, plugins=tuple(_loaded))


_base: tuple[dict, ...] | None = None  # the registries before any plugin (a worker's)
_rebuilt_for: str | None = None  # the key of the discovery the registries hold now


def rebuild(discovery: Discovery) -> list[str]:
    """Fill this process's registry as ``discovery`` says: the built-ins and entry points,
    then exactly its plugins (those another run loaded here before are dropped first, so a
    long-lived worker that serves several runs holds each run's registry in turn). A no-op
    when it holds this discovery's already. Returns the entry points' warnings."""
    with _REBUILDING:
        return _rebuild(discovery)


_REBUILDING = threading.RLock()


def _rebuild(discovery: Discovery) -> list[str]:
    global _base, _rebuilt_for
    if discovery.key == _rebuilt_for:
        return []
    load_defaults(discovery.modules)
    warnings = load_entry_points() if discovery.entry_points else []
    if _base is None:
        _base = save()
    else:
        restore(_base)
    _loaded_plugins.clear()
    _loaded.clear()
    _rebuilt_for = None
    for plugin in discovery.plugins:
        if isinstance(plugin, PluginFile):
            _load_shipped(plugin)
        else:
            sys.modules.pop(plugin, None)  # imported for another run: register again
            load_plugin(plugin)
    _rebuilt_for = discovery.key
    return warnings
