"""Suites and cases.

A :class:`Suite` is the matrix a run covers: which problems and solvers, the tolerance ladder for
adaptive solvers, the step-count ladder for fixed-step solvers (by default each problem's own,
:attr:`problems.base.Problem.steps`), devices, dtypes and batch sizes, and how to time. It comes
from a built-in name (``default``, ``quick``), a TOML file, and command-line overrides, in that
order (:mod:`harness.suite_file` reads names and files). :func:`expand` turns it into
:class:`Case` records after checking every name and value, so a bad setting is refused before
anything runs; an unknown name is answered with the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from harness import registry
from problems.base import ladder_for
from solvers.base import Backend, Capability
from solvers.controllers import CONTROLLERS


class SuiteError(ValueError):
    """A suite that cannot be run as given (a usage error: exit code 2)."""


DTYPES = {"float32": torch.float32, "float64": torch.float64}
# the fixed-step ladder of a problem that declares none, where the suite gives none
DEFAULT_STEPS = (32, 64, 128, 256, 512)
DEFAULT_ADAPTIVE_MAX_STEPS = 100_000


@dataclass(frozen=True)
class Suite:
    name: str
    problems: tuple[str, ...] | None = None  # None: every registered problem
    solvers: tuple[str, ...] | None = None  # None: every registered solver
    tags: tuple[str, ...] | None = None  # keep problems with any of these tags
    rtol: tuple[float, ...] = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
    # None: rtol times the problem's own ratio atol/rtol (1 for most problems; the stiff
    # test-set problems declare small absolute scales), pairwise with rtol
    atol: tuple[float, ...] | None = None
    # None: each problem's own ladder for the solver's order (Problem.steps), else
    # DEFAULT_STEPS; a ladder given here (--steps, a suite file) is used for every problem
    steps: tuple[int, ...] | None = None
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float64",)
    batch: tuple[int, ...] = (1,)
    max_steps: int | None = None  # None: the problem's budget, else the solver's default
    grad_modes: tuple[str, ...] = ("none",)  # "none": a plain solve; else gradient cases
    include: tuple[str, ...] = ()  # built-in suites whose cases are added (filtered by the CLI)
    # the problems are a sample: a --tags selection picks from every problem instead
    problems_sample: bool = False
    warmup: int = 0  # the untimed accuracy solve already warms each case up
    min_time: float = 0.05
    min_repeats: int = 3
    max_time: float = 0.5
    case_timeout: float = 120.0
    # training (cases of kind "train"): tasks to train, under each solver and gradient mode
    tasks: tuple[str, ...] = ()
    task_length: str = "default"  # default | full | quick: which of each task's lengths
    iterations: int | None = None  # trajectory tasks' optimiser steps (None: task_length's)
    epochs: int | None = None  # Table 1's epochs (None: task_length's)
    grad_modes_fixed: tuple[str, ...] | None = None  # fixed-step solvers' (None: grad_modes)
    optional_solvers: tuple[str, ...] = ()  # added to solvers where installed (the peers)
    train_timeout: float = 900.0  # seconds a training case may take
    # torch intra-op threads of a training case (None: the run's). Their fields are tiny: on
    # 2 cores one thread is faster, and two processes with two threads each slow each other
    # down by up to 100x (OpenMP's busy waiting)
    train_threads: int | None = 1
    # torch intra-op threads of a solve or gradient case (None: the process's own, which is
    # torch's choice in the run's process and 1 on a Dask worker, whose nanny sets
    # OMP_NUM_THREADS=1); each row records the threads it ran with
    threads: int | None = None
    # step-size controllers (solvers.controllers.CONTROLLERS) to run each solver that takes
    # one (Capability.CONTROLLER) under, a case each; None: each solver's own default, as the
    # suite key `controller` and --controller leave it unset
    controllers: tuple[str, ...] | None = None
    # the arithmetic (solvers.base.Backend) of solvers that take one (Capability.BACKEND);
    # "auto" passes nothing: the solver's own choice
    backend: str = "auto"
    source: str = "built-in"


GRAD_MODES = ("backprop", "adjoint", "adjoint-seminorm", "checkpoint")

# One or two of each family, so that the default run stays a few minutes on 2 cores; `full`,
# `--tags` and `--problems` reach every problem.
DEFAULT_PROBLEMS = (
    "linear", "kepler", "arenstorf", "lotka-volterra", "pleiades", "lorenz",
    "robertson", "vdpol-mu1000", "orego", "mlp", "mlp-hard",
)

TRAIN_TASKS = ("spiral", "lotka-volterra", "digits")
# the torch peers take part when they are installed (a built-in suite skips what is not)
TRAIN_SOLVERS = ("dopri5", "rk4", "euler")
TRAIN_PEERS = ("tde-dopri5", "to-dopri5")
TASK_LENGTHS = ("default", "full", "quick")

BUILTIN_SUITES: dict[str, Suite] = {
    "default": Suite(
        name="default",
        problems=DEFAULT_PROBLEMS,
        problems_sample=True,
        rtol=(1e-3, 1e-6, 1e-9),
        min_time=0.02,
        max_time=0.25,
        include=("gradients-lite", "train-lite"),
        source="built-in suite 'default': a cross-section of the problems (each family; "
        "--tags or --problems choose from all), every solver, tolerances 1e-3, 1e-6, 1e-9, "
        "each problem's own fixed-step ladder (32..512 where it declares none), plus the "
        "'gradients-lite' and 'train-lite' suites",
    ),
    "full": Suite(
        name="full",
        include=("gradients", "train-full"),
        source="built-in suite 'full': every problem and solver at tolerances 1e-3..1e-10 and "
        "each problem's own fixed-step ladder (32..512 where it declares none), plus the "
        "'gradients' and 'train-full' suites",
    ),
    "gradients": Suite(
        name="gradients",
        problems=("mlp",),
        solvers=("rk4", "dopri5"),
        rtol=(1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
        steps=(10, 100, 1000, 10000),
        batch=(16,),
        grad_modes=GRAD_MODES,
        min_time=0.02,
        max_time=0.25,
        source="built-in suite 'gradients': backprop, adjoint, adjoint-seminorm and checkpoint "
        "on a learned field: rk4 at 10..10000 steps, dopri5 at tolerances 1e-3..1e-8",
    ),
    "gradients-lite": Suite(
        name="gradients-lite",
        problems=("mlp",),
        solvers=("rk4", "dopri5"),
        rtol=(1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
        steps=(10, 100, 1000),
        batch=(16,),
        grad_modes=GRAD_MODES,
        min_time=0.02,
        max_time=0.25,
        source="built-in suite 'gradients-lite': the 'gradients' suite without its 10,000-step "
        "point (which alone takes about two minutes); this is what the default suite includes",
    ),
    "quick": Suite(
        name="quick",
        problems=("linear", "lotka-volterra"),
        solvers=("euler", "rk4", "dopri5", "scipy-rk45"),
        rtol=(1e-3, 1e-6),
        steps=(128, 256, 512, 1024),
        warmup=0,
        min_time=0.0,
        min_repeats=1,
        max_time=0.2,
        include=("train-quick",),
        source="built-in suite 'quick': a smoke test that runs in seconds, with one tiny "
        "training case",
    ),
    "train": Suite(
        name="train",
        problems=(),
        tasks=TRAIN_TASKS,
        solvers=TRAIN_SOLVERS,
        optional_solvers=TRAIN_PEERS,
        grad_modes=GRAD_MODES,
        grad_modes_fixed=("backprop", "adjoint"),
        rtol=(1e-7,),
        atol=(1e-9,),
        steps=(9,),
        source="built-in suite 'train': neural ODEs trained on the spiral of torchdiffeq's "
        "ode_demo (300 iterations) and on Lotka-Volterra, dopri5 in the four gradient modes, "
        "rk4 and euler (one step per observation) in backprop and adjoint, the torch peers "
        "when installed, at rtol 1e-7, atol 1e-9; plus Table 1 on the 8x8 digits",
    ),
    "train-lite": Suite(
        name="train-lite",
        problems=(),
        tasks=("spiral", "digits"),
        iterations=100,
        solvers=TRAIN_SOLVERS,
        optional_solvers=TRAIN_PEERS,
        grad_modes=GRAD_MODES,
        grad_modes_fixed=("backprop",),
        rtol=(1e-7,),
        atol=(1e-9,),
        steps=(9,),
        source="built-in suite 'train-lite': the spiral trained for 100 iterations by dopri5 in "
        "the four modes, rk4 and euler by backprop, the torch peers; and Table 1; what the "
        "default suite includes",
    ),
    "train-quick": Suite(
        name="train-quick",
        problems=(),
        tasks=("spiral",),
        task_length="quick",
        solvers=("dopri5",),
        grad_modes=("adjoint",),
        rtol=(1e-7,),
        atol=(1e-9,),
        source="built-in suite 'train-quick': one tiny training case (the spiral, 5 iterations, "
        "dopri5 with the adjoint); what the quick suite includes",
    ),
}

BUILTIN_SUITES["train-full"] = dataclasses.replace(
    BUILTIN_SUITES["train"],
    name="train-full",
    task_length="full",
    source="built-in suite 'train-full': the 'train' suite at upstream's length (2000 "
    "iterations) and Table 1's longer training; what 'full' includes",
)
BUILTIN_SUITES = {k: BUILTIN_SUITES[k] for k in (
    "default", "full", "gradients", "gradients-lite", "quick", "train", "train-full",
    "train-lite", "train-quick")}

# TOML ints have no bound in tomllib; torch and the loops take 64-bit ones
INT_MAX = 2**63 - 1


def toml_text(value: Any, limit: int = 60) -> str:
    """``value`` written as in TOML (``true``, ``nan``, ``[1, 2]``), cut to ``limit`` chars."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = "nan" if math.isnan(value) else repr(value)
    elif isinstance(value, int):  # str() of a huge int is slow, and limited to 4300 digits
        text = str(value) if abs(value) < 10**100 else f"an integer of {value.bit_length()} bits"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(toml_text(v, limit) for v in value[:10]) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', k) else repr(k)} = "
                               f"{toml_text(v, limit)}" for k, v in value.items()) + "}"
    else:  # dates and times
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def override(suite: Suite, **changes: Any) -> Suite:
    """The suite with the given (non-None) settings replaced. Tags given to a suite whose
    problems are a sample select from every problem."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if suite.problems_sample and "tags" in changes and "problems" not in changes:
        changes["problems"] = None
    if "solvers" in changes:  # the solvers named are the solvers run
        changes["optional_solvers"] = ()
    return dataclasses.replace(suite, **changes) if changes else suite


@dataclass(frozen=True)
class Case:
    """One point of the matrix: a problem solved by a solver at one setting."""

    problem: str
    solver: str
    device: str = "cpu"
    dtype: str = "float64"
    batch: int = 1
    rtol: float | None = None
    atol: float | None = None
    n_steps: int | None = None
    max_steps: int | None = None
    grad_mode: str = "none"
    kind: str = "solve"
    # training cases (kind "train"): problem is the task's name; iterations (trajectory tasks)
    # or epochs (Table 1) how long to train; model the architecture (Table 1), "" otherwise
    iterations: int | None = None
    epochs: int | None = None
    model: str = ""
    # what is passed to solve(controller=..., backend=...): a name, or "" for nothing (the
    # solver's own default); set only for a solver with that capability
    controller: str = ""
    backend: str = ""

    @property
    def case_id(self) -> str:
        """Derived from the settings only, so the same case has the same id in every run."""
        if self.n_steps is not None:
            setting = f"n={self.n_steps}"
        elif self.rtol is not None:
            setting = f"rtol={self.rtol:.0e},atol={self.atol:.0e}"
        else:
            setting = "default"
        case_id = (
            f"{self.kind}/{self.problem}/{self.solver}/{setting}/"
            f"{self.grad_mode}/{self.dtype}/{self.device}/b{self.batch}"
        )
        # only where set, so that a case without them keeps the id it always had (before a
        # training case's suffix, whose last part names its model)
        if self.controller:
            case_id += f"/controller={self.controller}"
        if self.backend:
            case_id += f"/backend={self.backend}"
        if self.kind == "train":
            length = f"ep{self.epochs}" if self.epochs is not None else f"it{self.iterations}"
            case_id += f"/{length}" + (f"/{self.model}" if self.model else "")
        return case_id

    @property
    def setting(self) -> str:
        mode = "" if self.grad_mode == "none" else f" [{self.grad_mode}]"
        if self.kind == "train":
            length = (f", {self.epochs} epochs" if self.epochs is not None
                      else f", {self.iterations} iterations")
            mode = (f" {self.model}" if self.model else "") + mode + length
        mode = (f" controller={self.controller}" if self.controller else "") + (
            f" backend={self.backend}" if self.backend else "") + mode
        if self.n_steps is not None:
            return f"n_steps={self.n_steps}{mode}"
        if self.rtol is not None:
            return f"rtol={self.rtol:g} atol={self.atol:g}{mode}"
        return "default" + mode


@dataclass
class Plan:
    suite: Suite
    cases: list[Case]
    problems: list[str]
    solvers: list[str]
    notes: list[str] = field(default_factory=list)
    parts: dict[str, Suite] = field(default_factory=dict)  # included suites, as narrowed
    tasks: list[str] = field(default_factory=list)  # training tasks


def _check_names(kind: str, given: Iterable[str], valid: list[str]) -> None:
    bad = [n for n in given if not isinstance(n, str) or n not in valid]
    if bad:
        raise SuiteError(registry.unknown_message(kind, bad, valid))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_positive(name: str, values: Iterable[float]) -> None:
    for v in values:
        try:
            ok = _is_number(v) and math.isfinite(v) and v > 0
        except OverflowError:  # an int too large for a float
            ok = False
        if not ok:
            raise SuiteError(f"{name} must be positive finite numbers; got {toml_text(v)}")


def _check_counts(name: str, values: Iterable[int], what: str = "positive integers") -> None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= INT_MAX:
            raise SuiteError(f"{name} must be {what} of at most 2**63 - 1; got {toml_text(v)}")


def _check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        hint = registry.did_you_mean(device, ["cpu", "cuda"])
        raise SuiteError(f"unknown device {device!r}{hint}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise SuiteError(f"unsupported device {device!r}; use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SuiteError(
                f"device {device!r} requested, but torch sees no CUDA device here "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SuiteError(
                f"device {device!r} requested; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )


def tolerance_pairs(suite: Suite) -> list[tuple[float, float]]:
    rtol = list(suite.rtol)
    atol = list(suite.atol) if suite.atol is not None else list(rtol)
    _check_positive("rtol", rtol)
    _check_positive("atol", atol)
    if len(rtol) == len(atol):
        return list(zip(rtol, atol, strict=True))
    if len(atol) == 1:
        return [(r, atol[0]) for r in rtol]
    if len(rtol) == 1:
        return [(rtol[0], a) for a in atol]
    raise SuiteError(
        f"rtol has {len(rtol)} values and atol {len(atol)}: give lists of the same length "
        "(paired), or one value for either"
    )


@dataclass(frozen=True)
class Filters:
    """What the command line narrows an included suite to (its own design stays as it is)."""

    solvers: tuple[str, ...] | None = None
    problems: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    grad_modes: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    controllers: tuple[str, ...] | None = None  # replace an included suite's (None: its own)
    backend: str | None = None  # replaces an included suite's (None: its own)


def _narrow(given: tuple[str, ...] | None, keep: tuple[str, ...] | None) -> tuple | None:
    if keep is None:
        return given
    return tuple(keep) if given is None else tuple(x for x in given if x in keep)


def expand(
    suite: Suite,
    problem_tags: dict[str, frozenset[str]],
    filters: Filters | None = None,
    problem_scales: dict[str, tuple[float, float]] | None = None,
    problem_steps: Ladders | None = None,
) -> Plan:
    """Check the suite against the registries and expand it, and its includes, into cases.

    ``problem_tags`` maps each registered problem to its tags (the caller builds the problems).
    ``filters`` (the command line's selection) narrows the included suites: their solvers,
    problems and gradient modes are intersected with it, devices and dtypes replaced.
    ``problem_scales`` maps a problem to its error scales ``(atol, rtol)``; where the suite
    gives no ``atol``, a case's atol is its rtol times the problem's ``atol / rtol``.
    ``problem_steps`` maps a problem to its fixed-step ladders (:attr:`Problem.steps`), used
    where the suite gives no ``steps``; a problem missing from it is built to read them.
    A relative tolerance below the machine epsilon of a dtype it runs in is refused, one
    below 1000 eps gets a ``warning:`` note.
    """
    filters = filters or Filters()
    _check_includes(suite)
    # Solvers the user named (on the command line or in a suite file) must do the gradient
    # modes asked for; of a built-in suite's solvers, those that cannot are skipped.
    builtin = suite.source.startswith("built-in")
    named = filters.solvers is not None or not builtin
    # the same for the controllers asked for, of the solvers named one by one
    named_solvers = frozenset(filters.solvers or ()) | frozenset(
        () if builtin or suite.solvers is None else suite.solvers)
    scales = problem_scales or {}
    ladders: Ladders = dict(problem_steps or {})
    plan = _expand_one(suite, problem_tags, strict_modes=named, scales=scales, ladders=ladders,
                       named_solvers=named_solvers)
    origins: dict[str, str] = {c.case_id: "" for c in plan.cases}  # case id -> included suite
    for name in dict.fromkeys(suite.include):
        inc = BUILTIN_SUITES[name]
        # a selection of problems (and no tasks) leaves the training tasks out
        picked_problems = (filters.problems is not None or filters.tags is not None)
        tasks = (() if picked_problems and filters.tasks is None
                 else _narrow(inc.tasks, filters.tasks))
        narrowed = dataclasses.replace(
            inc,
            solvers=_narrow(inc.solvers, filters.solvers),
            optional_solvers=_narrow(inc.optional_solvers, filters.solvers) or (),
            problems=_narrow(inc.problems, filters.problems),
            tags=filters.tags,
            grad_modes=_narrow(inc.grad_modes, filters.grad_modes),
            grad_modes_fixed=_narrow(inc.grad_modes_fixed, filters.grad_modes),
            devices=filters.devices or inc.devices,
            dtypes=filters.dtypes or inc.dtypes,
            tasks=tasks or (),
            controllers=filters.controllers if filters.controllers is not None
            else inc.controllers,
            backend=filters.backend or inc.backend,
            include=(),
        )
        if (not (narrowed.solvers or narrowed.optional_solvers)
                or not (narrowed.problems or narrowed.tasks) or not narrowed.grad_modes):
            continue
        part = _expand_one(narrowed, problem_tags, quiet_empty=True, scales=scales,
                           ladders=ladders)
        plan.notes.extend(part.notes)
        for case in part.cases:
            if case.case_id not in origins:
                origins[case.case_id] = name
                plan.cases.append(case)
                if case.kind != "train" and case.problem not in plan.problems:
                    plan.problems.append(case.problem)
                if case.kind == "train" and case.problem not in plan.tasks:
                    plan.tasks.append(case.problem)
                if case.solver not in plan.solvers:
                    plan.solvers.append(case.solver)
        plan.parts[name] = narrowed
    if not plan.cases:
        raise SuiteError("the selection leaves no case to run")
    plan.notes = list(dict.fromkeys(plan.notes))
    plan.notes.extend(_check_rtol_precision(plan.cases, origins))
    return plan


def _check_includes(suite: Suite) -> None:
    # a built-in suite may not include itself; a file may include the built-in of its name
    builtin = suite.source.startswith("built-in")
    others = [n for n in BUILTIN_SUITES if n != suite.name or not builtin]
    for name in suite.include:
        if builtin and name == suite.name:
            raise SuiteError(f"suite {suite.name!r} includes itself; built-in suites to include: "
                             f"{', '.join(others)}")
        if not isinstance(name, str) or name not in BUILTIN_SUITES:
            raise SuiteError(f"suite {suite.name!r} includes an " + registry.unknown_message(
                "suite", [name], others, choices=f"built-in suites: {', '.join(others)}"
            ))


def _check_rtol_precision(cases: list[Case], origins: dict[str, str]) -> list[str]:
    """Refuse a relative tolerance below the machine epsilon of the dtype a case runs in (no
    solver can meet it: rounding y once already costs eps); return one warning per dtype for
    those below 1000 eps, where round-off swamps the error estimate and step-size control
    tends to shrink the step until it fails."""
    used: dict[str, dict[float, set[str]]] = {}  # dtype -> rtol -> included suites ("" none)
    for c in cases:
        if c.rtol is not None and c.dtype in DTYPES:
            used.setdefault(c.dtype, {}).setdefault(c.rtol, set()).add(origins.get(c.case_id, ""))
    warnings = []
    for dtype, by_rtol in used.items():
        eps = torch.finfo(DTYPES[dtype]).eps
        below = sorted((r for r in by_rtol if r < eps), reverse=True)
        if below:
            one = len(below) == 1
            message = (
                f"rtol {_tolerance_list(below)} {'is' if one else 'are'} below {dtype}'s "
                f"machine epsilon ({eps:.1e}): no solver can meet {'it' if one else 'them'}; "
                f"use rtol >= {1000 * eps:.1e} (1000 eps) for {dtype}"
            )
            # the command line's --rtol does not reach an included suite's own ladder
            inherited = [r for r in below if "" not in by_rtol[r]]
            if inherited:
                parts = sorted({o for r in inherited for o in by_rtol[r]})
                message += (
                    f"; {_tolerance_list(inherited)} {'comes' if len(inherited) == 1 else 'come'}"
                    f" from included suite{'s' if len(parts) > 1 else ''} "
                    f"{', '.join(map(repr, parts))}, which --grad none "
                    "leaves out"
                )
            raise SuiteError(message)
        near = sorted((r for r in by_rtol if r < 1000 * eps), reverse=True)
        if near:
            warnings.append(
                f"warning: rtol {_tolerance_list(near)} {'is' if len(near) == 1 else 'are'} "
                f"below 1000 eps of {dtype} ({1000 * eps:.1e}): expect step_too_small or "
                "max_steps"
            )
    return warnings


def _tolerance_list(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _pairs_for(
    pairs: list[tuple[float, float]], suite: Suite, scale: tuple[float, float] | None
) -> list[tuple[float, float]]:
    """Tolerance pairs for one problem: with no atol in the suite, rtol times the problem's
    atol/rtol ratio (rounded to 3 significant digits, so case ids stay readable)."""
    if suite.atol is not None or scale is None:
        return pairs
    atol, rtol = scale
    ratio = atol / rtol
    if ratio == 1.0:
        return pairs
    return [(r, float(f"{r * ratio:.3g}")) for r, _ in pairs]


# problem -> its fixed-step ladders by method order (Problem.steps), None where it declares none
Ladders = dict[str, dict[int, tuple[int, ...]] | None]


def problem_ladders(names: Iterable[str]) -> Ladders:
    """Each named problem's fixed-step ladders (:attr:`problems.base.Problem.steps`), built
    once on the CPU (building is cheap); a problem that fails to build declares none (its
    cases report the failure)."""
    ladders: Ladders = {}
    for name in names:
        try:
            ladders[name] = registry.build_problem(name, torch.float64, "cpu").steps
        except Exception:  # noqa: BLE001 - the case rows carry the error
            ladders[name] = None
    return ladders


def steps_for(suite: Suite, problem: str, order: int, ladders: Ladders) -> tuple[int, ...]:
    """The step counts a fixed-step solver of ``order`` runs on ``problem``: the suite's ladder
    when it gives one (``--steps``, a suite file), else the problem's own, else
    :data:`DEFAULT_STEPS`. A problem not in ``ladders`` is built to read its own (and
    added)."""
    if suite.steps is not None:
        return tuple(suite.steps)
    if problem not in ladders:
        ladders.update(problem_ladders([problem]))
    own = ladder_for(ladders.get(problem), order)
    if own is None:
        return DEFAULT_STEPS
    _check_counts(f"problem {problem!r}'s fixed-step ladder", own)
    return own


def _check_grad_modes(modes: Iterable[str]) -> None:
    _check_names("gradient mode", modes, ["none", *GRAD_MODES])


BACKENDS = tuple(str(b) for b in Backend)


def _check_controls(suite: Suite) -> None:
    """The controller names (:data:`solvers.controllers.CONTROLLERS`) and the backend
    (:class:`solvers.base.Backend`) a suite asks for, checked before anything runs."""
    if suite.controllers is not None:
        if isinstance(suite.controllers, str) or not suite.controllers:
            raise SuiteError(f"controller must name one or more of {', '.join(CONTROLLERS)}; "
                             f"got {toml_text(suite.controllers)}")
        _check_names("controller", suite.controllers, list(CONTROLLERS))
    if not isinstance(suite.backend, str) or suite.backend not in BACKENDS:
        raise SuiteError(registry.unknown_message("backend", [suite.backend], list(BACKENDS)))


def _controllers_for(solver, name: str, suite: Suite, explicit: bool,
                     notes: list[str]) -> list[str]:
    """The controllers this solver runs under: ``[""]`` (nothing passed: its own default) where
    the suite asks for none or the solver takes none (no ``Capability.CONTROLLER``), else each
    asked-for one that it takes (:attr:`Solver.controllers`). One it does not take is refused
    for an adaptive solver the user named, and skipped otherwise; a solver left with none runs
    once, with its own (a fixed-step solver's steps need no controller by name)."""
    if suite.controllers is None or Capability.CONTROLLER not in solver.capabilities:
        return [""]
    explicit = explicit and solver.adaptive
    takes = tuple(getattr(solver, "controllers", ()) or ())
    wanted = list(dict.fromkeys(suite.controllers))
    chosen = [c for c in wanted if c in takes]
    left = [c for c in wanted if c not in takes]
    if left:
        what = (f"solver {name!r} takes the controller{'s' if len(takes) != 1 else ''} "
                f"{', '.join(takes) or '(none by name)'}, not {', '.join(left)}")
        if explicit:
            raise SuiteError(f"{what}: ask for a controller it takes, or leave it out of the "
                             "solvers")
        notes.append(f"skipped: {what}" + ("" if chosen else "; it runs with its own"))
    return chosen or [""]


def _backend_for(solver, suite: Suite) -> str:
    """What ``solve(backend=...)`` gets: the suite's backend for a solver that takes one
    (``Capability.BACKEND``), ``""`` (nothing) for ``auto`` and for the others."""
    if suite.backend == Backend.AUTO or Capability.BACKEND not in solver.capabilities:
        return ""
    return str(suite.backend)


def _modes_for(solver, suite: Suite, explicit: bool, notes: list[str]) -> list[str]:
    """The suite's gradient modes this solver can do. With solvers the user named, a mode a
    solver cannot do is refused; otherwise it is skipped with a note."""
    from solvers.gradients import check_mode

    modes = []
    for mode in suite.grad_modes:
        try:
            check_mode(solver, mode)
        except ValueError as exc:
            if explicit:
                raise SuiteError(str(exc)) from None
            notes.append(f"skipped: {exc}")
            continue
        modes.append(mode)
    return modes


def _expand_one(
    suite: Suite,
    problem_tags: dict[str, frozenset[str]],
    quiet_empty: bool = False,
    strict_modes: bool = False,
    scales: dict[str, tuple[float, float]] | None = None,
    ladders: Ladders | None = None,
    named_solvers: frozenset[str] = frozenset(),
) -> Plan:
    valid_solvers = registry.SOLVERS.names()
    valid_problems = sorted(problem_tags)
    if suite.optional_solvers and suite.solvers is not None:
        # solvers a suite takes where they are installed (the peers), and skips elsewhere
        extra = tuple(s for s in suite.optional_solvers
                      if s in registry.SOLVERS and s not in suite.solvers)
        suite = dataclasses.replace(suite, solvers=suite.solvers + extra, optional_solvers=())
    if suite.solvers is not None:
        _check_names("solver", suite.solvers, valid_solvers)
    if suite.problems is not None:
        _check_names("problem", suite.problems, valid_problems)
    all_tags = sorted(set().union(*problem_tags.values())) if problem_tags else []
    if suite.tags is not None:
        _check_names("tag", suite.tags, all_tags)
    _check_grad_modes(suite.grad_modes)
    pairs = tolerance_pairs(suite)
    if suite.steps is not None:
        _check_counts("steps", suite.steps)
    _check_counts("batch", suite.batch)
    _check_names("dtype", suite.dtypes, list(DTYPES))
    for d in suite.devices:
        _check_device(d)
    if suite.max_steps is not None:
        _check_counts("max_steps", [suite.max_steps], "a positive integer")
    _check_controls(suite)

    # a name given twice is one case, not two
    problems = list(dict.fromkeys(suite.problems if suite.problems is not None
                                  else valid_problems))
    if suite.tags is not None:
        problems = [p for p in problems if problem_tags[p] & set(suite.tags)]
        if not problems and not quiet_empty:
            raise SuiteError(
                f"no selected problem has any of the tags {', '.join(dict.fromkeys(suite.tags))}"
            )
    solvers = list(dict.fromkeys(suite.solvers if suite.solvers is not None else valid_solvers))

    cases: list[Case] = []
    notes: list[str] = []
    if ladders is None:
        ladders = {}
    for s in solvers:
        try:
            solver = registry.make_solver(s)
        except Exception as exc:  # a broken plugin: one error row per problem, the run goes on
            notes.append(f"solver {s!r} failed to construct: {type(exc).__name__}: {exc}")
            cases.extend(Case(problem=p, solver=s) for p in problems)
            continue
        modes = _modes_for(solver, suite, strict_modes, notes)
        controllers = _controllers_for(solver, s, suite, s in named_solvers, notes)
        backend = _backend_for(solver, suite)
        for p in problems:
            for mode in modes:
                kind = "solve" if mode == "none" else "gradient"
                for device, dtype, b, ctrl in itertools.product(
                        suite.devices, suite.dtypes, suite.batch, controllers):
                    common = dict(problem=p, solver=s, device=device, dtype=dtype, batch=b,
                                  grad_mode=mode, kind=kind, controller=ctrl, backend=backend)
                    if solver.adaptive:
                        tols = _in_range(solver, s, _pairs_for(pairs, suite, (scales or {}).get(p)),
                                         s in named_solvers, notes)
                        for r, a in tols:
                            cases.append(Case(**common, rtol=r, atol=a, max_steps=suite.max_steps))
                    else:
                        for n in steps_for(suite, p, solver.order, ladders):
                            cases.append(Case(**common, n_steps=n))
    cases.sort(key=lambda c: (problems.index(c.problem), solvers.index(c.solver)))
    train = _train_cases(suite, solvers, strict_modes, notes)
    cases.extend(train)
    return Plan(suite=suite, cases=_unique(cases), problems=problems, solvers=solvers,
                notes=notes, tasks=list(dict.fromkeys(c.problem for c in train)))


def _in_range(solver, name: str, tols: list[tuple[float, float]], named: bool,
              notes: list[str]) -> list[tuple[float, float]]:
    """The tolerances of a solver that declares the tightest it is made for (``rtol_min``,
    e.g. ros3p's moderate range), unless the user named it: then it runs where asked."""
    floor = getattr(solver, "rtol_min", 0.0) or 0.0
    if named or not floor:
        return tols
    kept = [(r, a) for r, a in tols if r >= floor]
    left = sorted({r for r, _ in tols if r < floor})
    note = (f"{name}: rtol {', '.join(f'{r:g}' for r in left)} left out, below the tolerances "
            f"it is made for (rtol >= {floor:g}); name it in --solvers to run it there")
    if left and note not in notes:
        notes.append(note)
    return kept


def _train_cases(suite: Suite, solvers: list[str], strict_modes: bool,
                 notes: list[str]) -> list[Case]:
    """The training cases of ``suite.tasks``: each trajectory task under every solver, setting
    and gradient mode of the suite (a training case needs a gradient: mode ``none`` is left
    out); Table 1's rows (:data:`training.digits.TABLE1`), of which those whose solver or mode
    the suite leaves out are dropped (its baselines without a solver always stay)."""
    if not suite.tasks:
        return []
    from solvers.gradients import check_mode
    from training.digits import TABLE1, DigitsTask

    _check_names("task", suite.tasks, registry.TASKS.names())
    if suite.task_length not in TASK_LENGTHS:
        raise SuiteError(f"task_length must be one of {', '.join(TASK_LENGTHS)}; got "
                         f"{toml_text(suite.task_length)}")
    for name in ("iterations", "epochs"):
        value = getattr(suite, name)
        if value is not None:
            _check_counts(name, [value])
    _check_positive("train_timeout", [suite.train_timeout])
    if suite.grad_modes_fixed is not None:
        _check_grad_modes(suite.grad_modes_fixed)
    builtin = suite.source.startswith("built-in")
    pairs = tolerance_pairs(suite)
    cases: list[Case] = []
    for task_name in dict.fromkeys(suite.tasks):
        task = registry.make_task(task_name)
        common = dict(kind="train", problem=task_name)
        if isinstance(task, DigitsTask):
            epochs = suite.epochs or {"default": task.epochs, "full": task.full_epochs,
                                      "quick": task.quick_epochs}[suite.task_length]
            for e in TABLE1:
                if e.solver != "none" and (e.solver not in solvers
                                           or e.grad_mode not in suite.grad_modes):
                    continue
                for device in suite.devices:
                    for dtype in suite.dtypes:
                        cases.append(Case(**common, solver=e.solver, model=e.model,
                                          grad_mode=e.grad_mode, n_steps=e.n_steps,
                                          rtol=e.rtol, atol=e.atol, epochs=epochs,
                                          device=device, dtype=dtype, batch=task.batch_size))
            continue
        iterations = suite.iterations or {"default": task.iterations,
                                          "full": task.full_iterations,
                                          "quick": task.quick_iterations}[suite.task_length]
        for s in solvers:
            try:
                solver = registry.make_solver(s)
            except Exception as exc:  # noqa: BLE001 - reported by the solve cases already
                notes.append(f"solver {s!r} failed to construct: {type(exc).__name__}: {exc}")
                continue
            modes = suite.grad_modes
            if not solver.adaptive and suite.grad_modes_fixed is not None:
                modes = suite.grad_modes_fixed
            for mode in modes:
                if mode == "none":
                    continue
                try:
                    check_mode(solver, mode)
                except ValueError as exc:
                    if strict_modes and not builtin:
                        raise SuiteError(str(exc)) from None
                    if not builtin:  # a built-in suite's matrix skips these by design
                        notes.append(f"skipped: {exc}")
                    continue
                settings = ([dict(rtol=r, atol=a, max_steps=suite.max_steps) for r, a in pairs]
                            if solver.adaptive else
                            [dict(n_steps=n) for n in (suite.steps or DEFAULT_STEPS)])
                controls = dict(backend=_backend_for(solver, suite))
                for device, dtype, setting, ctrl in itertools.product(
                        suite.devices, suite.dtypes, settings,
                        _controllers_for(solver, s, suite, False, notes)):
                    cases.append(Case(**common, solver=s, grad_mode=mode, controller=ctrl,
                                      iterations=iterations, device=device, dtype=dtype,
                                      batch=task.data.batch, **controls, **setting))
    return cases


def _unique(cases: list[Case]) -> list[Case]:
    """The cases without repeats (a step count or device given twice). Two different cases
    with one id are refused: a resumed run would take the second for done."""
    by_id: dict[str, Case] = {}
    for c in cases:
        first = by_id.setdefault(c.case_id, c)
        if first != c:
            raise SuiteError(
                f"{c.problem} / {c.solver}: {first.setting} and {c.setting} have the same case "
                f"id {c.case_id!r} (ids keep one significant digit of a tolerance); choose "
                "tolerances that differ in their first digit"
            )
    return list(by_id.values())
