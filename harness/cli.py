"""The command line: ``python -m harness VERB``.

Verbs are the user's vocabulary: ``run`` a suite, ``list`` what is registered, ``report`` a run
folder as HTML, ``show`` a run's summary (or the results schema), ``compare`` two runs,
``export`` a run's timings in another tool's format. A usage error (unknown name,
bad value, broken plugin) prints one message that says what was wrong and what is allowed, and
exits with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from harness import plugins, registry, session
from harness.executors import ExecutorName, dask_missing
from harness.results import (
    REPORT_FILE,
    RunFolderError,
    open_run,
    schema_markdown,
    write_csv,
)
from harness.runner import native_loop
from harness.session import Isolation, RunSettings
from harness.signals import graceful
from harness.suite import (
    BACKENDS,
    BUILTIN_SUITES,
    GRAD_MODES,
    Filters,
    Suite,
    SuiteError,
    expand,
    override,
)
from harness.suite_file import load_suite
from harness.worker import MIN_MEMORY, fmt_size, kill_all

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C; SIGTERM gives 143 (128 + the signal's number)


class UsageError(Exception):
    pass


def _list_of(conv: Callable[[str], Any], what: str) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        items = [s.strip() for s in text.split(",")]
        if not text.strip() or any(not s for s in items):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {what}, got {text!r}"
            )
        out = []
        for s in items:
            try:
                out.append(conv(s))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{s!r} is not {what}") from None
        return tuple(out)

    return parse


def _positive_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{s!r}: must be a positive finite number")
    return v


def _size(s: str) -> int:
    from harness.worker import parse_size

    return parse_size(s)


def _positive_int(s: str) -> int:
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{s!r}: must be a positive integer")
    return v


def _checked(conv: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def parse(s: str) -> Any:
        try:
            return conv(s)
        except argparse.ArgumentTypeError:
            raise
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not {what}") from None

    return parse


def _tolerances(text: str) -> tuple[float, ...]:
    values = _list_of(float, "a number")(text)
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(
                f"{v!r}: a tolerance must be a positive finite number, e.g. 1e-6"
            )
    return values


def _positive_ints(text: str) -> tuple[int, ...]:
    values = _list_of(int, "an integer")(text)
    for v in values:
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{v}: must be a positive integer")
    return values


_names = _list_of(str, "a name")


def _controller_names(text: str) -> tuple[str, ...]:
    """``--controller``: comma-separated names of :data:`solvers.controllers.CONTROLLERS`."""
    from solvers.controllers import CONTROLLERS

    names = _names(text)
    bad = [n for n in names if n not in CONTROLLERS]
    if bad:
        raise argparse.ArgumentTypeError(
            registry.unknown_message("controller", bad, list(CONTROLLERS)))
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness",
        description="odebench: benchmark ODE solvers for accuracy, NFE, memory and time.",
    )
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    plugin_help = "load solvers/problems from a .py file or an importable module (repeatable)"

    r = sub.add_parser(
        "run", help="run a suite and write a report",
        description="Run a suite and write a report. Each case ends as a result row, whatever "
        "happens in it. SIGINT (Ctrl-C) or SIGTERM ends the run cleanly (the case in flight is "
        "dropped, the report written, the resume command printed); a second signal stops at "
        "once.")
    r.add_argument("--suite",
                   help=f"built-in suite ({', '.join(BUILTIN_SUITES)}) or a .toml file "
                        "(default: default)")
    r.add_argument("--solvers", type=_names, help="comma-separated solver names")
    r.add_argument("--problems", type=_names, help="comma-separated problem names")
    r.add_argument("--tags", type=_names, help="keep problems with any of these tags")
    r.add_argument("--tasks", type=_names,
                   help="training tasks (spiral, lotka-volterra, digits, plugins), trained "
                        "under each solver and gradient mode (cases of kind train)")
    r.add_argument("--iterations", type=_checked(_positive_int, "a positive integer"),
                   help="optimiser steps of each trajectory training case (default: the "
                        "suite's, e.g. 300 for the spiral in the train suite)")
    r.add_argument("--rtol", type=_tolerances, help="tolerance ladder, e.g. 1e-3,1e-6,1e-9")
    r.add_argument("--atol", type=_tolerances,
                   help="absolute tolerances, paired with --rtol (default: each rtol times the "
                        "problem's own atol/rtol ratio, which is 1 for most problems)")
    r.add_argument("--steps", type=_positive_ints,
                   help="fixed-step ladder for every problem, e.g. 32,64,128 "
                        "(default: each problem's own ladder for the method's order)")
    r.add_argument("--device", type=_names, dest="devices", help="cpu, cuda, cuda:N (list)")
    r.add_argument("--dtype", type=_names, dest="dtypes", help="float32, float64 (list)")
    r.add_argument("--batch", type=_positive_ints, help="batch sizes, e.g. 1,1000")
    r.add_argument("--grad", type=_names, dest="grad_modes",
                   help="gradient modes: none (a plain solve), " + ", ".join(GRAD_MODES)
                   + " (list; default: the suite's)")
    r.add_argument("--controller", type=_controller_names, dest="controllers",
                   metavar="NAME[,NAME...]",
                   help="step-size controllers (hairer, pid, constant): each solver that takes "
                        "controllers runs once under each of these it takes (default: each "
                        "solver's own)")
    r.add_argument("--backend", choices=list(BACKENDS), default=None,
                   help="the arithmetic of solvers that offer a choice: tensor (torch), host "
                        "(Python floats, small float64 CPU states), auto (the solver's choice; "
                        "the default)")
    r.add_argument("--max-steps", type=_checked(_positive_int, "a positive integer"),
                   help="step budget for adaptive solvers (default: the problem's)")
    r.add_argument("--min-time", type=_checked(_positive_float, "a positive number"),
                   help="minimum total seconds of timed repeats per case")
    r.add_argument("--case-timeout", type=_checked(_positive_float, "a positive number"),
                   help="seconds after which a case ends with status timeout (default: 120). "
                        "In a worker (--isolate) the worker is killed; in the run's own process "
                        "the budget is checked at each call of f, so it cannot interrupt a C "
                        "call that hangs: isolate such solvers")
    r.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="run every case in a worker process, so that a crash, a hang or an "
                        "exhausted memory limit ends only that case (status crashed, timeout, "
                        "out_of_memory). Default: plugin and peer solvers and problems run in "
                        "a worker, built-ins in the run's process; --no-isolate: none")
    r.add_argument("--case-memory", type=_checked(_size, "a size"),
                   help="memory limit of each worker process, e.g. 2G or 512M (RLIMIT_DATA; "
                        "torch and the problems take about 0.3G of it); a case that exceeds it "
                        "ends out_of_memory. Implies --isolate")
    r.add_argument("--executor", choices=[str(e) for e in ExecutorName], default=None,
                   help="how cases run: serial (the default: one at a time; the only timings "
                        "trusted for comparison), process (--jobs worker processes side by "
                        "side, for accuracy and NFE sweeps) or dask (tasks on a Dask cluster: "
                        "--scheduler, or a LocalCluster of --jobs workers)")
    r.add_argument("-j", "--jobs", type=_checked(_positive_int, "a positive integer"),
                   help="process: worker processes; dask without --scheduler: LocalCluster "
                        "workers (default: the CPU count)")
    r.add_argument("--scheduler", metavar="ADDRESS|FILE",
                   help="dask: an existing cluster's scheduler, tcp://HOST:PORT, or its "
                        "scheduler file (dask scheduler --scheduler-file); default: start a "
                        "LocalCluster")
    r.add_argument("--chunk", type=_checked(_positive_int, "a positive integer"),
                   help="dask: cases per task (default: n / (4 x workers), at most 64; 1 "
                        "streams each row back as its case ends)")
    r.add_argument("--out", type=Path, help="run folder (default: runs/<run-id>)")
    r.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
                   help="continue RUN_DIR (or --out): run exactly the cases of its stored plan "
                        "that have no result yet; takes no selection flags")
    r.add_argument("--plugin", action="append", default=None, help=plugin_help)
    r.add_argument("--seed", type=int, help="seed for torch and numpy (default 0); each case "
                                            "is seeded from it and its own id")
    r.add_argument("--threads", type=_checked(_positive_int, "a positive integer"),
                   help="torch intra-op threads (default: torch's choice, recorded; training "
                        "cases: 1, or this)")
    r.add_argument("--no-report", action="store_true", help="skip writing report.html")
    r.add_argument("--dry-run", action="store_true",
                   help="check the selection and print the plan (its size, then one case id "
                        "per line); run and write nothing")
    r.add_argument("--quiet", action="store_true", help="no progress bar")

    _RUN_FLAGS.update({a.dest: a.option_strings[0] for a in r._actions if a.option_strings})

    ls = sub.add_parser("list", help="list registered solvers and problems")
    ls.add_argument("--plugin", action="append", default=[], help=plugin_help)

    rep = sub.add_parser("report", help="write RUN_DIR/report.html from a run folder")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--out", type=Path, help="where to write the HTML (default: in RUN_DIR)")

    rf = sub.add_parser("refs", help="verify every problem's reference (refs --check)")
    rf.add_argument("problems", nargs="*", help="problems to check (default: all)")
    rf.add_argument("--check", action="store_true", help="run the checks (the default action)")
    rf.add_argument("-v", "--verbose", action="store_true", help="one line per component too")
    rf.add_argument("-j", "--jobs", type=_checked(_positive_int, "a positive integer"),
                    default=1, help="worker processes (default 1)")
    rf.add_argument("--plugin", action="append", default=[], help=plugin_help)

    sh = sub.add_parser("show", help="print a run's summary, or the results schema")
    sh.add_argument("run_dir", type=Path, nargs="?")
    sh.add_argument("--schema", action="store_true", help="print the results schema")

    _compare_parser(sub)
    _export_parser(sub)
    return p


def _factor(s: str) -> float:
    v = float(s)
    if not math.isfinite(v) or v <= 1:
        raise argparse.ArgumentTypeError(f"{s!r}: the factor must be a number above 1, e.g. 1.1")
    return v


def _compare_parser(sub) -> None:
    from harness.compare import DEFAULT_FACTOR, FailOn

    fail_on = ", ".join(m.value for m in FailOn)
    c = sub.add_parser(
        "compare", help="compare two runs case by case (terminal table and compare.html)",
        usage="%(prog)s [options] RUN_A RUN_B",
        description="Compare run B against run A, matching cases by case id. A time counts as "
        "changed when the ratio of the medians is beyond --factor and the difference is "
        "significant: Mann-Whitney U at p < 0.002 whenever the two sample sizes allow it (its "
        "smallest attainable p, 2/C(n_a+n_b, min(n_a, n_b)), is below 0.002; e.g. 3 vs 40 "
        "samples), otherwise disjoint 99% confidence intervals of the medians (8 or more "
        "samples a side); with fewer, not significant, and the output says which side lacks "
        "samples. Training cases have no raw samples: their training time is compared by the "
        "factor alone (~ at most). Status, NFE, steps, errors, gradient errors, losses and "
        "iterations are deterministic: any change beyond round-off is flagged. Marks (asv's): "
        "+ slower, - faster, ~ beyond the factor but not significant or too few samples to "
        "tell, ! newly failing, * fixed. A case in A but not in B counts as a regression; a "
        "case in only one run as a change. Exactly two runs; to compare several against one, "
        "run compare once per pair. When the runs come from different machines, or neither "
        "records its machine, times are compared only with --times. Exit status: 0; 1 when "
        "--fail-on finds what it names; 2 for a usage error.")
    c.add_argument("run_a", type=Path, metavar="RUN_A", nargs="?", default=None,
                   help="the run before (the reference)")
    c.add_argument("run_b", type=Path, metavar="RUN_B", nargs="?", default=None,
                   help="the run after")
    c.add_argument("more", nargs="*", default=[], metavar="RUN", help=argparse.SUPPRESS)
    c.add_argument("--factor", type=_checked(_factor, "a number above 1"),
                   default=DEFAULT_FACTOR,
                   help=f"ratio of medians beyond which a time may count as changed "
                        f"(default {DEFAULT_FACTOR})")
    c.add_argument("--no-stats", action="store_true",
                   help="use the factor alone, no significance test")
    c.add_argument("--times", action="store_true",
                   help="compare times even when the runs come from different machines, or "
                        "from machines not known to be the same")
    c.add_argument("--fail-on", choices=[m.value for m in FailOn], default=None,
                   help=f"exit 1 on a regression (slower and significant, newly failing, NFE "
                        f"or steps up, error or loss worse, a case missing from B) or on any "
                        f"flagged change ({fail_on}; default: exit 0)")
    c.add_argument("--only-changed", action="store_true",
                   help="list only the cases with a mark or a changed figure")
    c.add_argument("--out", type=Path,
                   help="where to write the HTML: a file, or a folder to hold compare.html "
                        "(default: ./compare.html)")


def _export_parser(sub) -> None:
    from harness.export import FORMATS

    e = sub.add_parser(
        "export", help="write a run's timings in another tool's format",
        description="Write the timings of a run's cases in another tool's format "
        f"({', '.join(FORMATS)}). Only cases that ended ok and have raw wall-time samples are "
        "written; how many were left out, and why, is printed.")
    e.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    # (cases whose samples hold no finite, positive number are left out too, with that reason)
    e.add_argument("--format", dest="fmt", required=True, metavar="FORMAT",
                   help=f"one of: {', '.join(FORMATS)}")
    e.add_argument("--out", type=Path,
                   help="the file to write (default: RUN_DIR/<format>.json)")


# --------------------------------------------------------------------------------------- list


def _problem_table(steps: dict | None = None,
                   ) -> tuple[dict[str, frozenset[str]], dict[str, dict], list[str]]:
    """Build every problem once (cheap) for its tags and metadata; a build failure is a note.
    ``steps``, where given, is filled with each problem's fixed-step ladders
    (:attr:`problems.base.Problem.steps`), so that the plan need not build them again."""
    tags: dict[str, frozenset[str]] = {}
    info: dict[str, dict] = {}
    notes: list[str] = []
    for entry in registry.PROBLEMS.entries():
        try:
            prob = entry.factory(torch.float64, "cpu")
        except Exception as exc:
            tags[entry.name] = frozenset()
            info[entry.name] = {"source": entry.source, "error": f"{type(exc).__name__}: {exc}"}
            notes.append(f"problem {entry.name!r} ({entry.source}) failed to build: "
                         f"{type(exc).__name__}: {exc}")
            continue
        tags[entry.name] = frozenset(prob.tags)
        if steps is not None:
            steps[entry.name] = prob.steps
        info[entry.name] = {
            "tags": sorted(prob.tags),
            "dim": int(prob.y0.numel()),
            "t_span": [float(prob.t[0]), float(prob.t[-1])],
            "n_times": int(prob.t.shape[0]),
            "ref_kind": str(prob.reference.kind),
            "ref_provenance": prob.reference.provenance,
            "atol": prob.atol,
            "rtol": prob.rtol,
            "max_steps": prob.max_steps,
            "description": prob.description,
            "citation": prob.citation,
            "source": entry.source,
        }
    return tags, info, notes


def _solver_table() -> tuple[dict[str, dict], list[str]]:
    from solvers.gradients import supported_modes

    info: dict[str, dict] = {}
    notes: list[str] = []
    for entry in registry.SOLVERS.entries():
        try:
            s = entry.factory()
        except Exception as exc:
            info[entry.name] = {"source": entry.source, "error": f"{type(exc).__name__}: {exc}"}
            notes.append(f"solver {entry.name!r} ({entry.source}) failed to construct: "
                         f"{type(exc).__name__}: {exc}")
            continue
        info[entry.name] = {
            "kind": s.kind,
            "order": s.order,
            "adaptive": s.adaptive,
            "grad_modes": [str(m) for m in supported_modes(s)],
            "controllers": list(getattr(s, "controllers", ()) or ()),
            "source": entry.source,
        }
    return info, notes


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out=None) -> None:
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
        if k == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _task_info(name: str) -> dict[str, Any]:
    """What meta.json records of a training task: what it is, where it comes from, and the
    settings a reader of the report needs (target loss, data, model)."""
    entry = registry.TASKS.get(name)
    info: dict[str, Any] = {"source": entry.source}
    try:
        task = entry.factory()
    except Exception as exc:  # noqa: BLE001 - its cases fail and say why
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info
    for key in ("description", "citation", "target_loss", "target_window", "loss"):
        if hasattr(task, key):
            info[key] = getattr(task, key)
    for part in ("data", "model", "optimiser"):
        value = getattr(task, part, None)
        if dataclasses.is_dataclass(value):
            info[part] = dataclasses.asdict(value)
    system = getattr(task, "system", None)
    if system is not None:
        info["system"] = getattr(system, "description", "")
    return json.loads(json.dumps(info, default=str))


def _task_text(entry) -> str:
    try:
        task = entry.factory()
    except Exception as exc:  # noqa: BLE001 - a broken plugin task is listed with its error
        return f"fails to build: {type(exc).__name__}: {exc}"
    text = getattr(task, "description", "") or ""
    return text if len(text) <= 70 else text[:67] + "..."


def cmd_list(args: argparse.Namespace) -> int:
    for w in plugins.discover(args.plugin):
        print(f"warning: {w}", file=sys.stderr)
    solvers, s_notes = _solver_table()
    _, problems, p_notes = _problem_table()
    print(f"Solvers ({len(solvers)})")
    _print_table(
        ["name", "kind", "order", "adaptive", "controllers", "gradient modes", "source"],
        [[n, i.get("kind", "?"), i.get("order", "?"), i.get("adaptive", "?"),
          ",".join(i.get("controllers", [])) or "(its own)",
          ",".join(i.get("grad_modes", [])), i["source"]] for n, i in solvers.items()],
    )
    print()
    print(f"Problems ({len(problems)})")
    _print_table(
        ["name", "tags", "dim", "t span", "reference", "source"],
        [[n, ",".join(i.get("tags", [])), i.get("dim", "?"),
          "{:g}..{:g}".format(*i["t_span"]) if "t_span" in i else "?",
          i.get("ref_kind", "?"), i["source"]] for n, i in problems.items()],
    )
    print()
    print(f"Training tasks ({len(registry.TASKS)})")
    _print_table(["name", "what", "source"],
                 [[e.name, _task_text(e), e.source] for e in registry.TASKS.entries()])
    for line in registry.unavailable_lines():  # optional plugins whose package is missing
        print(f"\nnote: {line}")
    for note in s_notes + p_notes:
        print(f"warning: {note}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------- run


class Progress:
    """Progress on stderr, drawn by tqdm: cases done of all, the ETA, and the case running.

    On a terminal it is one live bar (with the running training case's ``detail``); when stderr
    is a file or a pipe it writes a plain line every 10% and at the end, never a carriage
    return. Called as ``progress(i, n, case, elapsed)`` before each case (``case`` None at the
    end) and ``progress.detail(text)`` while a case runs.
    """

    BAR_FORMAT = "[{bar:24}] {n_fmt}/{total_fmt} {percentage:3.0f}%  ETA {remaining}  {desc}"
    LINE_FORMAT = "{n_fmt}/{total_fmt} {percentage:3.0f}%  ETA {remaining}  {desc}"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._last_line = -1
        self._case = None
        self._bar = None

    @staticmethod
    def _what(case, detail: str = "") -> str:
        if case is None:
            return "done"
        if detail:  # short, so that a narrow terminal keeps it
            return f"{case.problem} / {case.solver} [{case.grad_mode}]: {detail}"
        return f"{case.problem} / {case.solver} {case.setting}"

    def detail(self, text: str) -> None:
        """How far the running case has got (a training case's iteration), on a terminal."""
        if self._bar is not None and self._case is not None:
            self._bar.set_description_str(self._what(self._case, text))

    def __call__(self, i: int, n: int, case, elapsed: float) -> None:
        if not self.enabled or n == 0:
            return
        self._case = case
        if self.tty:
            self._draw_bar(i, n, case)
        else:
            self._write_line(i, n, case, elapsed)

    def _draw_bar(self, i: int, n: int, case) -> None:
        from tqdm import tqdm

        what = self._what(case)
        if self._bar is None:
            # smoothing=0: the ETA from the average time per case so far, not the last one
            self._bar = tqdm(total=n, initial=i, desc=what, file=sys.stderr,
                             bar_format=self.BAR_FORMAT, ascii=" #", dynamic_ncols=True,
                             smoothing=0, leave=True)
        self._bar.set_description_str(what, refresh=False)
        self._bar.update(i - self._bar.n)
        self._bar.refresh()  # update draws at most every 0.1 s; a new case always shows
        if case is None:
            self._bar.close()
            self._bar = None

    def _write_line(self, i: int, n: int, case, elapsed: float) -> None:
        """A log file: a line every 10% and at the end."""
        from tqdm import tqdm

        step = int(i / n * 10)
        if step == self._last_line and case is not None:
            return
        self._last_line = step
        line = tqdm.format_meter(i, n, elapsed, prefix=self._what(case),
                                 bar_format=self.LINE_FORMAT)
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _new_run_id(suite: Suite) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{suite.name}"


def _suite_from_args(args: argparse.Namespace) -> Suite:
    return override(
        load_suite(args.suite or "default"),
        solvers=args.solvers,
        problems=args.problems,
        tags=args.tags,
        rtol=args.rtol,
        atol=args.atol,
        steps=args.steps,
        devices=args.devices,
        dtypes=args.dtypes,
        batch=args.batch,
        grad_modes=args.grad_modes,
        max_steps=args.max_steps,
        min_time=args.min_time,
        case_timeout=args.case_timeout,
        train_timeout=args.case_timeout,
        tasks=args.tasks,
        iterations=args.iterations,
        train_threads=args.threads,
        threads=args.threads,
        controllers=args.controllers,
        backend=args.backend,
    )


# What `run --resume` may be given beside the run folder: nothing that changes the plan.
_RUN_FLAGS: dict[str, str] = {}  # dest -> its flag, filled by build_parser
# How the cases are executed may change on resume (a cluster's address, say); what they are not.
_RESUME_ALLOWED = {"verb", "resume", "out", "quiet", "no_report", "executor", "jobs",
                   "scheduler", "chunk"}


def _flag(parser_flags: dict[str, str], dest: str, value: Any) -> str:
    if dest == "isolate":
        return "--isolate" if value else "--no-isolate"
    return parser_flags.get(dest, "--" + dest.replace("_", "-"))


def _resume_dir(args: argparse.Namespace, defaults: dict[str, Any]) -> Path:
    """The folder ``--resume`` continues; any selection flag beside it is refused."""
    flags = defaults.get("_flags", {})
    given = [_flag(flags, k, v) for k, v in vars(args).items()
             if k not in _RESUME_ALLOWED and v != defaults.get(k)]
    if given:
        raise UsageError(
            f"--resume continues the run's stored plan and takes no {', '.join(given)}; to run "
            "another selection, start a new run (another --out)"
        )
    if args.resume is True:
        if args.out is None:
            raise UsageError("--resume needs the run folder: python -m harness run --resume "
                             "RUN_DIR")
        return args.out
    run_dir = Path(args.resume)
    if args.out is not None and args.out.resolve() != run_dir.resolve():
        raise UsageError(f"--resume {run_dir} and --out {args.out} name different folders; "
                         "give one")
    return run_dir


def _plugin_spec(spec: str) -> str:
    """A plugin file as an absolute path (so a resume from another folder finds it); a module
    name as it is."""
    path = Path(spec)
    return str(path.resolve()) if spec.endswith(".py") or path.is_file() else spec


def _settings_from_args(args: argparse.Namespace) -> RunSettings:
    if args.case_memory and args.isolate is False:
        raise UsageError("--case-memory limits worker processes; it cannot go with --no-isolate")
    if args.case_memory and args.case_memory < MIN_MEMORY:
        raise UsageError(f"--case-memory {fmt_size(args.case_memory)} is less than a worker "
                         f"needs to start (torch and the problems take about 0.3G); give at "
                         f"least {fmt_size(MIN_MEMORY)}")
    if args.isolate is None:
        isolate = Isolation.ALWAYS if args.case_memory else Isolation.AUTO
    else:
        isolate = Isolation.ALWAYS if args.isolate else Isolation.NEVER
    executor = ExecutorName(args.executor or "serial")
    if executor is not ExecutorName.SERIAL and args.isolate is False:
        raise UsageError(f"--executor {executor} runs every case in a worker process; it "
                         "cannot go with --no-isolate")
    settings = RunSettings(isolate=isolate, case_memory=args.case_memory,
                           seed=0 if args.seed is None else args.seed, threads=args.threads,
                           plugins=tuple(_plugin_spec(p) for p in args.plugin or ()))
    return _with_executor(settings, args)


def _scheduler_spec(spec: str) -> str:
    return str(Path(spec).resolve()) if "://" not in spec and Path(spec).is_file() else spec


def _with_executor(settings: RunSettings, args: argparse.Namespace) -> RunSettings:
    """``settings`` with the executor that ``args`` names (for a resume: the stored one, with
    what the command changes); a combination that cannot run is a usage error."""
    executor = ExecutorName(args.executor or settings.executor)
    changed = args.executor is not None and executor is not settings.executor
    jobs = args.jobs if args.jobs is not None else (None if changed else settings.jobs)
    # a scheduler file as an absolute path (a resume from another folder finds it); --jobs
    # alone on a resumed dask run means a LocalCluster of that size, not the stored scheduler
    scheduler = (_scheduler_spec(args.scheduler) if args.scheduler else
                 None if changed or args.jobs is not None else settings.scheduler)
    chunk = args.chunk or (None if changed else settings.chunk)
    if executor is ExecutorName.DASK and settings.case_memory:
        raise UsageError("--case-memory limits the harness's own worker processes; a Dask "
                         "worker's memory is its own --memory-limit")
    if executor is ExecutorName.SERIAL and args.jobs is not None and args.jobs > 1:
        raise UsageError("--jobs runs cases side by side: give it with --executor process or "
                         "--executor dask (serial runs one case at a time)")
    if executor is not ExecutorName.DASK:
        for flag, value in (("--scheduler", args.scheduler), ("--chunk", args.chunk)):
            if value is not None:
                raise UsageError(f"{flag} is for --executor dask (valid executors: "
                                 f"{', '.join(ExecutorName)})")
        scheduler = chunk = None
    if executor is ExecutorName.DASK:
        missing = dask_missing()
        if missing:
            raise UsageError(missing)
        if scheduler is not None and args.jobs is not None:
            raise UsageError("--jobs sizes the LocalCluster that --executor dask starts; an "
                             "existing cluster (--scheduler) has the workers it has")
        if scheduler is not None and not (Path(scheduler).is_file() or "://" in scheduler):
            raise UsageError(f"--scheduler {scheduler}: not a scheduler file, nor an address "
                             "such as tcp://HOST:8786")
    if executor is not ExecutorName.SERIAL and scheduler is None:
        jobs = jobs or os.cpu_count() or 1
    if executor is ExecutorName.SERIAL:
        jobs = None
    isolate = Isolation.ALWAYS if executor is ExecutorName.PROCESS else settings.isolate
    return dataclasses.replace(settings, executor=executor, jobs=jobs, scheduler=scheduler,
                               chunk=chunk, isolate=isolate)


def _command(argv: Sequence[str]) -> str:
    return "python -m harness " + " ".join(shlex.quote(a) for a in argv)


def _plan_new(args: argparse.Namespace, argv: Sequence[str]):
    settings = _settings_from_args(args)
    for w in plugins.discover(list(settings.plugins)):
        print(f"warning: {w}", file=sys.stderr)
    suite = _suite_from_args(args)
    problem_steps: dict = {}
    problem_tags, problem_info, p_notes = _problem_table(problem_steps)
    filters = Filters(solvers=args.solvers, problems=args.problems, tags=args.tags,
                      grad_modes=args.grad_modes, devices=args.devices, dtypes=args.dtypes,
                      tasks=args.tasks, controllers=args.controllers, backend=args.backend)
    scales = {n: (i["atol"], i["rtol"]) for n, i in problem_info.items() if "atol" in i}
    plan = expand(suite, problem_tags, filters, scales, problem_steps)
    for note in p_notes + plan.notes:
        print(note if note.startswith("warning: ") else f"note: {note}", file=sys.stderr)
    return settings, suite, plan, problem_info


def cmd_run(args: argparse.Namespace, argv: Sequence[str], defaults: dict[str, Any]) -> int:
    if args.resume is not None:
        run_dir = _resume_dir(args, defaults)
        with graceful(on_second=kill_all) as interrupts:
            run = session.reopen(run_dir, _command(argv))
            try:
                run.settings = _with_executor(run.settings, args)
            except UsageError:
                run.close()
                raise
            session.record_resume_executor(run)
            return _execute(run, args, interrupts)

    settings, suite, plan, problem_info = _plan_new(args, argv)
    if args.dry_run:
        n = len(plan.cases)
        kinds: dict[str, int] = {}
        for c in plan.cases:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        by_kind = ", ".join(f"{k} {kind}" for kind, k in kinds.items())
        tasks = f", {len(plan.tasks)} training task(s)" if plan.tasks else ""
        print(f"{n} case{'s' if n != 1 else ''}: {len(plan.problems)} problem(s){tasks}, "
              f"{len(plan.solvers)} solver(s), suite {suite.name!r}; nothing run ({by_kind})")
        for c in plan.cases:
            print(c.case_id)
        return 0
    run_dir = args.out or Path("runs") / _new_run_id(suite)
    session.check_out_dir(run_dir)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    solver_info, _ = _solver_table()
    extra = {
        "problems": {p: problem_info[p] for p in plan.problems},
        "solvers": {s: solver_info.get(s, {}) for s in plan.solvers},
        "tasks": {t: _task_info(t) for t in plan.tasks},
    }
    with graceful(on_second=kill_all) as interrupts:
        run = session.start(plan, run_dir, _command(argv), settings, extra)
        return _execute(run, args, interrupts)


def _execute(run: session.Run, args: argparse.Namespace, interrupts) -> int:
    """Run what is left of ``run``'s plan, then record, summarise and report it."""
    try:
        for w in run.warnings:
            print(f"warning: {w}", file=sys.stderr)
        todo = run.todo
        problems = sorted({c.problem for c in run.cases if c.kind != "train"})
        tasks = sorted({c.problem for c in run.cases if c.kind == "train"})
        solvers = sorted({c.solver for c in run.cases if c.solver != "none"})
        trained = f", {len(tasks)} training tasks" if tasks else ""
        print(f"odebench: {len(todo)} of {len(run.cases)} cases to go ({len(problems)} "
              f"problems{trained}, {len(solvers)} solvers; suite {run.suite.name!r}; "
              f"{session.describe_settings(run.settings)}), run folder {run.run_dir}",
              file=sys.stderr)
        if run.settings.isolate is Isolation.NEVER:
            native = sorted({c.solver for c in todo if native_loop(c.solver)})
            if native:
                print(f"warning: {', '.join(native)} run their loop in native code, which "
                      "--case-timeout cannot stop in this process (--no-isolate)",
                      file=sys.stderr)
        outcome = session.execute(run, progress=Progress(not args.quiet))
        interrupts.raising = False  # from here a first signal is only recorded
        if outcome.interrupted_by is None and interrupts.first is not None:
            outcome.interrupted_by = interrupts.name
        left = session.finish(run, outcome)
        _, df = _open(run.run_dir)
        write_csv(run.run_dir, df)
        _print_summary(df)
        if outcome.interrupted_by:
            print(f"\ninterrupted by {outcome.interrupted_by}: kept {outcome.done} case(s) "
                  f"finished by this invocation, {left} of {len(run.cases)} to go; continue "
                  f"with: python -m harness run --resume {run.run_dir}", file=sys.stderr)
        if not args.no_report:
            path = _build_report(run.run_dir)
            print(f"\nReport: {path}")
        else:
            print(f"\nResults: {run.run_dir}")
    finally:
        run.close()
    if outcome.error:
        print(f"error: {outcome.error}", file=sys.stderr)
        return EXIT_USAGE
    if outcome.interrupted_by:
        return interrupts.exit_code
    return 0


def _build_report(run_dir: Path) -> Path:
    from reports.build import build_report

    return build_report(run_dir)


def _num(value: Any, spec: str, scale: float = 1.0) -> str:
    try:
        v = float(value) * scale
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(v) else format(v, spec)


def _print_training(df) -> None:
    """One line per training case: how far it got, its losses, its cost per iteration."""
    from reports.summary import solver_labels

    rows = []
    df = df.assign(solver=solver_labels(df))  # dopri5 · pid where two controllers ran
    df = df.astype(object).where(df.notna(), None)
    for _, r in df.iterrows():
        reached = f"{_num(r['iteration_reached'], '.0f')}/{_num(r['iterations'], '.0f')}"
        quality = (f"test err {_num(r['test_error'], '.2f', 100)}%"
                   if r.get("model") in ("mlp", "resnet", "odenet")
                   else f"val err {_num(r['val_err'], '.3g')}")
        rows.append([
            r["problem"], r["model"] if r["model"] not in ("", "ode", None) else "",
            r["solver"], r["grad_mode"], r["status"], reached,
            f"{_num(r['loss_first'], '.3g')} -> {_num(r['loss_final'], '.3g')}", quality,
            _num(r["time_iter_median_s"], ".1f", 1000),
            f"{_num(r['nfe_iter_median'], '.0f')} / {_num(r['nfe_backward_iter_median'], '.0f')}",
        ])
    print()
    _print_table(["task", "model", "solver", "mode", "status", "iterations", "loss",
                  "quality", "ms/iter", "NFE fwd/bwd per iter"], rows)


def _print_summary(df) -> None:
    if df.empty:
        print("no finished cases")
        return
    train = df[df["kind"] == "train"]
    df = df[df["kind"] != "train"]
    if not train.empty:
        _print_training(train)
    if df.empty:
        return
    from reports.summary import solver_labels

    rows = []
    df = df.assign(solver=solver_labels(df))  # dopri5 · pid where two controllers ran
    for solver, g in df.groupby("solver", sort=True):
        ok = g[g["status"] == "ok"]
        failed = g[g["status"] != "ok"]["status"].value_counts()
        fails = ", ".join(f"{k} {v}" for k, v in failed.items()) or "-"
        med_nfe = ok["nfe"].median() if len(ok) else float("nan")
        best = ok["scd"].max() if len(ok) else float("nan")
        rows.append([
            solver, len(g), len(ok), fails,
            "-" if math.isnan(med_nfe) else f"{med_nfe:.0f}",
            "-" if math.isnan(best) else f"{best:.1f}",
            f"{g['wall_s'].sum():.1f}",
        ])
    print()
    _print_table(["solver", "cases", "ok", "failed", "median NFE", "best scd", "wall s"], rows)


# ------------------------------------------------------------------------------ report / show


def _open(run_dir: Path, *, warn: bool = True):
    """(meta, DataFrame) of a run folder; what reading it found goes to stderr as warnings."""
    if not run_dir.is_dir():
        raise UsageError(f"run folder {run_dir} does not exist")
    run = open_run(run_dir)
    if warn:
        for w in run.warnings:
            print(f"warning: {w}", file=sys.stderr)
    return run.meta, run.df


def cmd_report(args: argparse.Namespace) -> int:
    _open(args.run_dir)  # refuses what is not a readable run folder, and shows what it found
    from reports.build import build_report

    print(build_report(args.run_dir, out=args.out or args.run_dir / REPORT_FILE))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if args.schema:
        print(schema_markdown())
        return 0
    if args.run_dir is None:
        raise UsageError("show needs RUN_DIR (or --schema)")
    meta, df = _open(args.run_dir)
    summary = {k: meta.get(k) for k in ("run_id", "command", "started_at", "ended_at",
                                        "complete", "interrupted", "interrupted_by", "n_cases")}
    summary["n_rows"] = len(df)
    if meta.get("resumes"):
        summary["resumes"] = [r.get("command") for r in meta["resumes"]]
    print(json.dumps(summary, indent=2))
    _print_findings(meta, df)
    _print_summary(df)
    return 0


def _print_findings(meta, df) -> None:
    """The report's headline findings, one sentence each: the solver to pick per problem
    family and accuracy, the gradient mode with least memory, the fastest way to train."""
    if df.empty:
        return
    from reports.findings import ERROR_TEXT, findings

    found = findings(df, meta)
    lines = [f.text for f in found.solve] + [g.text for g in found.gradients]
    lines += [t.text for t in found.training]
    if found.wrong_but_ok:
        lines.append(f"{found.wrong_but_ok} case(s) ended ok with no correct digit "
                     "(scd <= 0): their status is not to be trusted.")
    if not lines:
        return
    print()
    print(f"Findings (error: {ERROR_TEXT}):")
    for line in lines:
        print(f"- {line}")


def cmd_refs(args: argparse.Namespace) -> int:
    """Recompute computed references, check published and exact ones by independent solves."""
    from harness import refs

    for w in plugins.discover(args.plugin):
        print(f"warning: {w}", file=sys.stderr)
    argv = [*args.problems, "--jobs", str(args.jobs)] + (["-v"] if args.verbose else [])
    code = refs.main(argv)
    return EXIT_USAGE if code == 2 else code


def _run_folder(path: Path, what: str) -> None:
    """Refuse, as a usage error, what is not a run folder (the reader says what it lacks)."""
    from harness.results import META_FILE, RESULTS_FILE

    if not path.exists():
        raise UsageError(f"{what} {path} does not exist; give a run folder (as `run --out` "
                         "writes)")
    if not path.is_dir() or not ((path / META_FILE).exists() or (path / RESULTS_FILE).exists()):
        raise UsageError(f"{what} {path} is not a run folder: give a folder that holds "
                         f"{META_FILE} and {RESULTS_FILE} (as `run --out` writes)")


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.compare import FailOn, compare_runs, terminal_lines
    from harness.export import out_problem
    from reports.compare_page import COMPARE_FILE, target, write

    if args.run_a is None or args.run_b is None:
        raise UsageError(f"compare needs two runs, RUN_A (before) and RUN_B (after); got "
                         f"{0 if args.run_a is None else 1}. Usage: python -m harness compare "
                         "RUN_A RUN_B")
    if args.more:
        raise UsageError(f"compare takes exactly two runs, RUN_A and RUN_B; got "
                         f"{2 + len(args.more)}. To compare several against one, run compare "
                         "once per pair")
    _run_folder(args.run_a, "RUN_A")
    _run_folder(args.run_b, "RUN_B")
    out = target(args.out if args.out is not None else Path(COMPARE_FILE))
    problem = out_problem(out)
    if problem:
        raise UsageError(f"--out {args.out if args.out is not None else out}: {problem}; give "
                         "a writable file, or a folder to hold compare.html")
    comp, warnings = compare_runs(args.run_a, args.run_b, factor=args.factor,
                                  use_stats=not args.no_stats,
                                  times=True if args.times else None)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    for line in terminal_lines(comp, only_changed=args.only_changed):
        print(line)
    try:
        path = write(comp, out)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write the HTML: {exc}") from exc
    print(f"HTML: {path}")
    return 1 if comp.fails(FailOn(args.fail_on) if args.fail_on else None) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from harness.export import FORMATS, export, out_path, out_problem

    if args.fmt not in FORMATS:
        raise UsageError(f"unknown --format {args.fmt!r}; valid formats: {', '.join(FORMATS)}")
    _run_folder(args.run_dir, "RUN_DIR")
    path = out_path(args.run_dir, args.fmt, args.out)
    problem = out_problem(path)
    if problem:
        raise UsageError(f"--out {path}: {problem}; give a writable file path")
    try:
        result = export(args.run_dir, args.fmt, args.out)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write: {exc}") from exc
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    left = "; left out: " + ", ".join(f"{k} {why}" for why, k in result.left_out.items())
    if not result.left_out:
        left = "; none left out"
    print(f"wrote {result.path}: {result.written} case(s) as {args.fmt}{left}")
    return 0


# --------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.verb == "run":
            defaults = vars(parser.parse_args(["run"]))
            defaults["_flags"] = _RUN_FLAGS
            return cmd_run(args, argv, defaults)
        if args.verb == "list":
            return cmd_list(args)
        if args.verb == "report":
            return cmd_report(args)
        if args.verb == "show":
            return cmd_show(args)
        if args.verb == "refs":
            return cmd_refs(args)
        if args.verb == "compare":
            return cmd_compare(args)
        if args.verb == "export":
            return cmd_export(args)
    except (UsageError, SuiteError, registry.RegistryError, RunFolderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `show RUN | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13  # as a shell reports SIGPIPE
    parser.error(f"unknown verb {args.verb!r}")
    return EXIT_USAGE
