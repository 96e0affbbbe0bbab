"""The results store: one JSON line per finished case, and a loader with one documented schema.

``runs/<run-id>/results.jsonl`` gets a line per case as the case ends (one ``os.write`` of the
whole line to a file opened ``O_APPEND``, then fsynced), so an interrupted run keeps what it
finished, a crash (even ``kill -9``) can only tear the final line, and ``--resume`` can skip what
is done. :func:`read_results` reads the file without losing or doubling a row silently: a torn
last line, a garbage line and a repeated ``case_id`` are each reported, and a line odebench
cannot have written is refused with :class:`RunFolderError`. ``meta.json`` carries
``schema_version`` (:data:`SCHEMA_VERSION`; a folder without one is version 1) and is replaced
atomically by :func:`write_meta`.

``load_run`` returns the run's ``meta.json`` and a pandas DataFrame whose columns are
:data:`COLUMNS` (always all of them, in this order; extra columns a later version writes come
after). Scripts outside the project may rely on these names and units.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import math
import numbers
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from solvers.base import Status

SCHEMA_VERSION = 2
"""Version of the run-folder format this odebench writes and the newest it reads. 1: folders
written before ``meta.json`` had a ``schema_version``; 2: adds it, with atomic meta writes,
whole-line appends and unique case ids. Rows have the same columns in both."""

RESULTS_FILE = "results.jsonl"
META_FILE = "meta.json"
CSV_FILE = "results.csv"
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # pandas dtype: "string", "float64", "Int64", "boolean"
    unit: str
    meaning: str


COLUMNS: tuple[Column, ...] = (
    Column("case_id", "string", "", "id derived from the case's settings; same case, same id"),
    Column("kind", "string", "", "solve | gradient | train"),
    Column("problem", "string", "", "registered problem name"),
    Column("solver", "string", "", "registered solver name"),
    Column("solver_kind", "string", "", "the solver's kind, e.g. 'explicit RK, adaptive'"),
    Column("order", "Int64", "", "classical order of the solver's method"),
    Column("adaptive", "boolean", "", "whether the solver chooses its own steps"),
    Column("controller", "string", "", "the step-size controller that ran: hairer | pid | "
           "constant (solvers.controllers; the suite's controller key, --controller); empty "
           "where the solver steps by its own rule (scipy's, the peers')"),
    Column("backend", "string", "", "the arithmetic the solve ran in: tensor (torch tensors) | "
           "host (Python floats; small float64 CPU states); empty where the solver does not say"),
    Column("grad_mode", "string", "", "none for a plain solve"),
    Column("device", "string", "", "cpu, cuda, cuda:1, ..."),
    Column("dtype", "string", "", "float32 | float64"),
    Column("batch", "Int64", "", "number of trajectories solved at once"),
    Column("rtol", "float64", "", "relative tolerance (adaptive solvers)"),
    Column("atol", "float64", "", "absolute tolerance (adaptive solvers)"),
    Column("n_steps_requested", "Int64", "", "number of fixed steps (fixed-step solvers)"),
    Column("status", "string", "",
           "ok | max_steps | step_too_small | nonfinite | stiff | error | timeout | crashed | "
           "out_of_memory"),
    Column("message", "string", "", "what went wrong, empty when ok"),
    Column("nfe", "Int64", "calls", "calls of f counted by the harness, forward"),
    Column("nfe_solver", "Int64", "calls", "calls of f as the solver counts them"),
    Column("nfe_backward", "Int64", "calls", "calls of f (or its VJP) in the backward pass"),
    Column("n_steps", "Int64", "steps", "attempted steps"),
    Column("n_accepted", "Int64", "steps", "accepted steps; -1: unknown (torchdiffeq's "
           "adaptive solvers do not report them)"),
    Column("n_rejected", "Int64", "steps", "rejected steps; -1: unknown (a solver that does "
           "not report them, e.g. scipy's Radau, BDF and LSODA, torchdiffeq's adaptive ones)"),
    Column("njev", "Int64", "", "Jacobian evaluations (implicit solvers; empty else)"),
    Column("ndec", "Int64", "", "LU decompositions (implicit solvers)"),
    Column("nsol", "Int64", "", "forward-backward substitutions (implicit solvers)"),
    Column("t_reached", "float64", "time", "how far the solve got"),
    Column("err_max", "float64", "", "max absolute error over all output times and components"),
    Column("err_final", "float64", "", "max absolute error at the final time"),
    Column("err_rms_scaled", "float64", "", "RMS of err/(atol + rtol|ref|), problem's scales"),
    Column("scd", "float64", "digits", "significant correct digits at the end point (relative)"),
    Column("mescd", "float64", "digits", "mixed abs/rel significant correct digits, end point"),
    Column("ref_kind", "string", "", "exact | published | computed"),
    Column("ref_provenance", "string", "", "where the reference comes from"),
    Column("time_median_s", "float64", "s", "median wall time of one solve"),
    Column("time_iqr_s", "float64", "s", "interquartile range of the wall time"),
    Column("time_min_s", "float64", "s", "minimum wall time"),
    Column("cpu_median_s", "float64", "s", "median process CPU time of one solve"),
    Column("repeats", "Int64", "", "number of timed repeats"),
    Column("time_samples_s", "object", "s", "the raw wall-time samples"),
    Column("mem_saved_bytes", "Int64", "bytes", "bytes autograd saves for backward"),
    Column("mem_cuda_peak_bytes", "Int64", "bytes", "peak CUDA memory of the case"),
    Column("rss_peak_bytes", "Int64", "bytes", "peak resident set size of the process"),
    Column("rss_growth_bytes", "Int64", "bytes", "how much the case raised the process's peak "
           "resident set size (0 when it stayed below an earlier peak)"),
    Column("grad_rel_err", "float64", "", "relative error of (dL/dy0, dL/dtheta) against the "
           "reference gradient"),
    Column("grad_rel_err_y0", "float64", "", "relative error of dL/dy0 alone"),
    Column("grad_rel_err_theta", "float64", "", "relative error of dL/dtheta alone"),
    Column("grad_rel_diff_backprop", "float64", "", "relative difference of the gradient from "
           "the backprop gradient of the same solver and setting (mode disagreement)"),
    Column("grad_ref_provenance", "string", "", "how the reference gradient was computed"),
    Column("loss", "float64", "", "the loss the gradient is of"),
    Column("n_params", "Int64", "", "number of parameters of f differentiated"),
    Column("n_steps_backward", "Int64", "steps", "attempted steps of the backward solves; "
           "-1: unknown (torchdiffeq's adjoint does not report them)"),
    Column("n_rejected_backward", "Int64", "steps", "rejected steps of the backward solves; "
           "-1: unknown (a solver that does not report them)"),
    Column("status_backward", "string", "", "status of the backward pass"),
    Column("time_forward_median_s", "float64", "s", "median wall time of the forward pass"),
    Column("time_backward_median_s", "float64", "s", "median wall time of the backward pass"),
    Column("time_forward_iqr_s", "float64", "s", "interquartile range of the forward time"),
    Column("time_backward_iqr_s", "float64", "s", "interquartile range of the backward time"),
    # training cases (kind = train): the totals over the training run are in nfe, nfe_backward
    # (summed over iterations), mem_saved_bytes (the peak of the probed iterations), n_params
    Column("task", "string", "", "training task (kind train); problem holds the same name"),
    Column("model", "string", "", "trained model: ode (a neural ODE's field); Table 1: mlp | "
           "resnet | odenet"),
    Column("iterations", "Int64", "", "optimiser steps planned"),
    Column("iteration_reached", "Int64", "", "optimiser steps completed (the planned number "
           "when ok; where a failing solver stopped training otherwise)"),
    Column("epochs", "Int64", "", "passes over the training set (Table 1)"),
    Column("loss_first", "float64", "", "training loss of the first iteration (untrained)"),
    Column("loss_final", "float64", "", "training loss of the last iteration"),
    Column("loss_best", "float64", "", "lowest training loss of any iteration"),
    Column("val_err", "float64", "", "mean absolute error of the trained model's trajectory "
           "from y0 over every observation time, solved by the case's solver"),
    Column("test_error", "float64", "", "classification error on the held-out test set "
           "(Table 1), a fraction"),
    Column("target_loss", "float64", "", "the task's target training loss"),
    Column("iteration_to_target", "Int64", "", "first iteration at which the mean loss of the "
           "task's last few iterations reached the target (empty: never)"),
    Column("time_to_target_s", "float64", "s", "training wall time up to that iteration"),
    Column("time_train_s", "float64", "s", "wall time of all iterations (forward, backward, "
           "optimiser step)"),
    Column("time_iter_median_s", "float64", "s", "median wall time of one iteration, over "
           "those not probed for saved bytes"),
    Column("time_epoch_s", "float64", "s", "median wall time of one epoch (Table 1)"),
    Column("nfe_iter_median", "float64", "calls", "median forward NFE per iteration"),
    Column("nfe_backward_iter_median", "float64", "calls", "median backward NFE per iteration"),
    Column("saved_bytes_scaling", "object", "", "[[units, saved bytes], ...]: the gradient's "
           "saved bytes as the blocks or steps grow (Table 1)"),
    Column("saved_bytes_unit", "string", "", "block | step | NFE: the units of the scaling"),
    Column("saved_bytes_per_unit", "float64", "bytes", "least-squares slope of saved bytes "
           "against units"),
    Column("eval_rtol", "object", "", "tolerance ladder at which the trained field is "
           "evaluated (Figure 3 a, b)"),
    Column("eval_nfe", "object", "calls", "forward NFE at each tolerance of eval_rtol"),
    Column("eval_err", "object", "", "max absolute error at each tolerance, against the trained "
           "field solved at rtol 1e-10"),
    Column("eval_time_s", "object", "s", "forward wall time at each tolerance"),
    Column("torch_threads", "Int64", "", "torch intra-op threads the case ran with (training "
           "cases: the suite's train_threads, 1 by default; a Dask worker: 1 unless the run "
           "sets --threads, since its nanny sets OMP_NUM_THREADS=1)"),
    # where the case ran: timings are comparable only between rows of one machine, and only
    # the serial executor's timings are trusted for comparison (no case beside them)
    Column("executor", "string", "", "serial | process | dask: how the run executed the case; "
           "only serial timings are trusted for comparison"),
    Column("worker", "string", "", "what ran the case: the run's process (main), a worker "
           "process (pid N), or a Dask worker (its address)"),
    Column("host", "string", "", "host name of the machine that ran the case"),
    Column("cpu_model", "string", "", "CPU model of that machine"),
    Column("cpu_cores", "Int64", "", "logical CPU cores of that machine"),
    Column("gpu_name", "string", "", "the CUDA device's name, for a case on a GPU"),
    Column("hardware", "string", "", "one label for host, CPU model, cores and GPU: rows "
           "with different labels were timed on different hardware"),
    Column("records_file", "string", "", "per-iteration records of a training case, a JSON "
           "lines file relative to the run folder"),
    Column("started_at", "string", "", "ISO time the case started"),
    Column("wall_s", "float64", "s", "wall time of the whole case, measurement included"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


class _Unset:
    """The value of a column that a row does not have: left out of its line in results.jsonl
    (a loader reads it as missing), where ``None`` is written as ``null``."""

    _the: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._the is None:
            cls._the = super().__new__(cls)
        return cls._the

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> tuple:
        return (_Unset, ())


UNSET: Any = _Unset()
"""A :class:`Row` column that is not set (the default of every column)."""


class RowError(TypeError):
    """A result row built with a column outside :data:`COLUMNS`, or a value of the wrong type
    for its column: a bug in whatever built it, refused where the row is built."""


_COLUMN_OF = {c.name: c for c in COLUMNS}
_STATUS_COLUMNS = ("status", "status_backward")
# what each dtype's column holds as it is built (None, JSON null, in every column)
_WHAT = {"string": "a str", "Int64": "an int", "float64": "a number", "boolean": "a bool",
         "object": "a list"}
# a Row field's annotation for each column dtype (checked against COLUMNS at import)
_ANNOTATION = {"string": "str | None", "Int64": "int | None", "float64": "float | None",
               "boolean": "bool | None", "object": "list | None"}


def _status_type() -> type:
    from solvers.base import Status  # here: reading results must not import torch

    return Status


def _checked_value(name: str, value: Any) -> Any:
    """``value`` as column ``name`` stores it, or :class:`RowError` saying what is wrong."""
    column = _COLUMN_OF.get(name)
    if column is None:
        from harness.registry import did_you_mean

        raise RowError(f"a result row has no column {name!r}{did_you_mean(name, COLUMN_NAMES)}; "
                       "the columns are harness.results.COLUMNS")
    if value is None or value is UNSET:
        return value
    if name in _STATUS_COLUMNS:
        status = _status_type()
        if not isinstance(value, status):
            raise RowError(f"result column {name!r} takes a solvers.base.Status (one of "
                           f"{', '.join(s.value for s in status)}); got {value!r}")
        return value
    kind = column.dtype
    ok = {
        "string": lambda v: isinstance(v, str),
        "Int64": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
        "float64": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, list | tuple),
    }[kind](value)
    if not ok:
        raise RowError(f"result column {name!r} takes {_WHAT[kind]} or None; got "
                       f"{type(value).__name__} {_cut(repr(value), 40)}")
    if kind == "Int64" and type(value) is not int:  # a numpy integer: JSON takes only int
        return int(value)
    return value


@dataclass(kw_only=True)
class Row:
    """One result row, typed when it is built: a field per column of :data:`COLUMNS`, in that
    order (checked when this module is imported).

    A column that is not given stays :data:`UNSET` and is left out of the row's line, so a
    solve row has no gradient columns, as before rows were typed. A column outside the schema
    is refused by name, at construction, :meth:`update` or assignment; so is a value of the
    wrong type (``status`` must be a :class:`solvers.base.Status`). :meth:`to_dict` is what
    :class:`ResultsWriter` writes: the columns in the order they were first set (those given
    to the constructor in schema order), as the rows built as dicts were written.
    """

    case_id: str | None = UNSET
    kind: str | None = UNSET
    problem: str | None = UNSET
    solver: str | None = UNSET
    # the case and its solver
    solver_kind: str | None = UNSET
    order: int | None = UNSET
    adaptive: bool | None = UNSET
    controller: str | None = UNSET
    backend: str | None = UNSET
    grad_mode: str | None = UNSET
    device: str | None = UNSET
    dtype: str | None = UNSET
    batch: int | None = UNSET
    rtol: float | None = UNSET
    atol: float | None = UNSET
    n_steps_requested: int | None = UNSET
    # what happened: status, counts, accuracy, time
    status: Status | None = UNSET
    message: str | None = UNSET
    nfe: int | None = UNSET
    nfe_solver: int | None = UNSET
    nfe_backward: int | None = UNSET
    n_steps: int | None = UNSET
    n_accepted: int | None = UNSET
    n_rejected: int | None = UNSET
    njev: int | None = UNSET
    ndec: int | None = UNSET
    nsol: int | None = UNSET
    t_reached: float | None = UNSET
    err_max: float | None = UNSET
    err_final: float | None = UNSET
    err_rms_scaled: float | None = UNSET
    scd: float | None = UNSET
    mescd: float | None = UNSET
    ref_kind: str | None = UNSET
    ref_provenance: str | None = UNSET
    time_median_s: float | None = UNSET
    time_iqr_s: float | None = UNSET
    time_min_s: float | None = UNSET
    cpu_median_s: float | None = UNSET
    repeats: int | None = UNSET
    time_samples_s: list | None = UNSET
    # memory, gradients
    mem_saved_bytes: int | None = UNSET
    mem_cuda_peak_bytes: int | None = UNSET
    rss_peak_bytes: int | None = UNSET
    rss_growth_bytes: int | None = UNSET
    grad_rel_err: float | None = UNSET
    grad_rel_err_y0: float | None = UNSET
    grad_rel_err_theta: float | None = UNSET
    grad_rel_diff_backprop: float | None = UNSET
    grad_ref_provenance: str | None = UNSET
    loss: float | None = UNSET
    n_params: int | None = UNSET
    n_steps_backward: int | None = UNSET
    n_rejected_backward: int | None = UNSET
    status_backward: Status | None = UNSET
    time_forward_median_s: float | None = UNSET
    time_backward_median_s: float | None = UNSET
    time_forward_iqr_s: float | None = UNSET
    time_backward_iqr_s: float | None = UNSET
    # training cases (kind train)
    task: str | None = UNSET
    model: str | None = UNSET
    iterations: int | None = UNSET
    iteration_reached: int | None = UNSET
    epochs: int | None = UNSET
    loss_first: float | None = UNSET
    loss_final: float | None = UNSET
    loss_best: float | None = UNSET
    val_err: float | None = UNSET
    test_error: float | None = UNSET
    target_loss: float | None = UNSET
    iteration_to_target: int | None = UNSET
    time_to_target_s: float | None = UNSET
    time_train_s: float | None = UNSET
    time_iter_median_s: float | None = UNSET
    time_epoch_s: float | None = UNSET
    nfe_iter_median: float | None = UNSET
    nfe_backward_iter_median: float | None = UNSET
    saved_bytes_scaling: list | None = UNSET
    saved_bytes_unit: str | None = UNSET
    saved_bytes_per_unit: float | None = UNSET
    eval_rtol: list | None = UNSET
    eval_nfe: list | None = UNSET
    eval_err: list | None = UNSET
    eval_time_s: list | None = UNSET
    # where the case ran
    torch_threads: int | None = UNSET
    executor: str | None = UNSET
    worker: str | None = UNSET
    host: str | None = UNSET
    cpu_model: str | None = UNSET
    cpu_cores: int | None = UNSET
    gpu_name: str | None = UNSET
    hardware: str | None = UNSET
    records_file: str | None = UNSET
    started_at: str | None = UNSET
    wall_s: float | None = UNSET

    def __setattr__(self, name: str, value: Any) -> None:
        value = _checked_value(name, value)
        object.__setattr__(self, name, value)
        order = self.__dict__.setdefault("_set", {})  # the columns set, in order
        if value is UNSET:
            order.pop(name, None)
        else:
            order.setdefault(name, None)

    def update(self, **columns: Any) -> Row:
        """Set the given columns (each checked); returns the row."""
        for name, value in columns.items():
            setattr(self, name, value)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The set columns, in the order they were first set, as results.jsonl stores them (a
        status as its value, a plain str)."""
        out: dict[str, Any] = {}
        for name in self.__dict__.get("_set", ()):
            value = getattr(self, name)
            if name in _STATUS_COLUMNS and value is not None:
                value = value.value
            out[name] = value
        return out


def _row_init_naming_unknown_columns() -> None:
    """``Row(nfee=3)`` refused with the column's name and the nearest one, not Python's bare
    'unexpected keyword argument'."""
    generated = Row.__init__

    @functools.wraps(generated)
    def __init__(self: Row, **columns: Any) -> None:
        for name in columns:
            if name not in _COLUMN_OF:
                _checked_value(name, None)
        generated(self, **columns)

    Row.__init__ = __init__  # type: ignore[method-assign]


def _check_row_schema() -> None:
    """The Row's fields are :data:`COLUMNS`, in order, each annotated for its dtype."""
    names = tuple(f.name for f in dataclasses.fields(Row))
    if names != COLUMN_NAMES:
        missing = [n for n in COLUMN_NAMES if n not in names]
        extra = [n for n in names if n not in COLUMN_NAMES]
        raise RuntimeError(
            "harness.results.Row's fields differ from COLUMNS "
            f"(missing: {missing or 'none'}; not columns: {extra or 'none'}; otherwise the "
            "order): add a column to both, in the same place")
    for f in dataclasses.fields(Row):
        column = _COLUMN_OF[f.name]
        want = "Status | None" if f.name in _STATUS_COLUMNS else _ANNOTATION[column.dtype]
        if f.type != want:
            raise RuntimeError(f"harness.results.Row.{f.name} is annotated {f.type!r}; its "
                               f"column's dtype {column.dtype} wants {want!r}")


_row_init_naming_unknown_columns()
_check_row_schema()


class RunFolderError(Exception):
    """A run folder that cannot be used as given: missing, corrupt, or from a newer odebench.

    The message is one line that names the file (and the line, where one is at fault) and says
    what to do; the CLI prints it as ``error: <message>`` and exits 2.
    """


class RunFolderNotFound(RunFolderError, FileNotFoundError):
    """The run folder does not exist, or holds neither results.jsonl nor meta.json.

    Also a FileNotFoundError, which is what the loader raised before RunFolderError existed.
    """


TORN_WHY = "incomplete last line (a case cut off mid-write)"
_TEXT_MAX = 80


def _cut(text: str, limit: int = _TEXT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(exc: BaseException | str) -> str:
    """An exception's text on one line (messages built from it must stay one line)."""
    return " ".join(str(exc).split())


@dataclass(frozen=True)
class BadLine:
    """A line of results.jsonl that is not a usable row: reported, never dropped silently."""

    line_no: int  # 1-based
    text: str  # the line, cut to about 80 characters
    why: str

    def describe(self, path: str | Path) -> str:
        """``<path> line 7: not valid JSON (...): '{"case_id": ...'``."""
        return f"{path} line {self.line_no}: {self.why}: {self.text!r}"

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.why}: {self.text!r}"


@dataclass
class ResultsFile:
    """results.jsonl as read: the rows (first of each case_id, in file order), the lines that
    are not rows, and a last line torn by a crash (the one thing ``--resume`` may drop)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    torn_tail: BadLine | None = None

    def warnings(self, path: str | Path) -> list[str]:
        """One line per bad line and for the torn tail, empty for a clean file.

        ``path`` is the results file, or the run folder that holds it.
        """
        path = Path(path)
        if path.name != RESULTS_FILE:
            path = path / RESULTS_FILE
        out = [bad.describe(path) for bad in self.bad_lines]
        if self.torn_tail is not None:
            out.append(f"{path} line {self.torn_tail.line_no}: {self.torn_tail.why}; "
                       "--resume drops it")
        return out


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list"}.get(type(value), type(value).__name__)


_Line = dict[str, Any] | BadLine | None  # a row, a line that is not one, or a blank line


def _line_text(raw: bytes) -> str:
    return _cut(raw.decode("utf-8", errors="replace").rstrip("\r"))


def _parse_line(raw: bytes, line_no: int, path: Path, last: bool) -> _Line:
    """One line of results.jsonl (its newline removed): a row, a BadLine, or None when blank.

    ``last`` marks a final line with no newline after it: if it is not JSON, it is a row cut
    off mid-write (why :data:`TORN_WHY`). Valid JSON that is not an object with a string
    ``case_id`` was not written by odebench: refused rather than guessed at.
    """
    if not raw.strip():
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        why = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        return BadLine(line_no, _line_text(raw), TORN_WHY if last else why)
    except json.JSONDecodeError as exc:
        why = f"not valid JSON ({exc.msg}: column {exc.colno})"
        return BadLine(line_no, _line_text(raw), TORN_WHY if last else why)
    except (ValueError, RecursionError) as exc:  # an over-long integer, nesting too deep
        return BadLine(line_no, _line_text(raw), f"not readable JSON ({_cut(_one_line(exc))})")
    refuse = (f"odebench did not write it; delete the line, or check that {path.parent} is the "
              "run folder you meant")
    if not isinstance(value, dict):
        raise RunFolderError(f"{path} line {line_no} is {_json_kind(value)}, not a result row: "
                             f"{refuse}")
    case_id = value.get("case_id")
    if not isinstance(case_id, str):
        what = ("no case_id" if "case_id" not in value
                else f"case_id {_cut(repr(case_id), 40)} is not a string")
        raise RunFolderError(f"{path} line {line_no} is not a result row ({what}): {refuse}")
    return value


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes, None when it does not exist; RunFolderError when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunFolderError(f"cannot read {path} ({_one_line(exc.strerror or exc)}): check "
                             "that it is a readable file") from None


def read_results(run_dir: str | Path) -> ResultsFile:
    """Read ``run_dir/results.jsonl`` so that no row is lost or doubled silently.

    A last line with no newline that is not JSON is the torn tail (a crash mid-write). Any
    other line that is not valid UTF-8 or JSON is a :class:`BadLine`; so is a repeated
    ``case_id`` (the first row is kept). Blank lines are skipped. A line that is JSON but not
    an object with a string ``case_id`` raises :class:`RunFolderError`. A missing file reads
    as no rows.
    """
    path = Path(run_dir) / RESULTS_FILE
    result = ResultsFile()
    data = _read_bytes(path)
    if data is None:
        return result
    lines = data.split(b"\n")  # ends with b"" (blank, skipped) when the file ends in "\n"
    first_line: dict[str, int] = {}
    for i, raw in enumerate(lines):
        line_no = i + 1
        parsed = _parse_line(raw, line_no, path, last=i == len(lines) - 1)
        if parsed is None:
            continue
        if isinstance(parsed, BadLine):
            if parsed.why == TORN_WHY:
                result.torn_tail = parsed
            else:
                result.bad_lines.append(parsed)
            continue
        case_id = parsed["case_id"]
        if case_id in first_line:
            why = f"duplicate of line {first_line[case_id]} (case_id {_cut(repr(case_id), 60)})"
            result.bad_lines.append(BadLine(line_no, _line_text(raw), why))
            continue
        first_line[case_id] = line_no
        result.rows.append(parsed)
    return result


def read_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of results.jsonl (see :func:`read_results`, which also says what it skipped)."""
    return read_results(run_dir).rows


def drop_torn_tail(run_dir: str | Path) -> BadLine | None:
    """Make results.jsonl end on a complete line before rows are appended to it (``--resume``).

    A torn last line (a crash mid-write) is truncated away, fsynced, and returned; a complete
    last row that lacks its newline gets one, so the next row starts on a line of its own.
    Returns None when nothing was cut (or there is no file). Call it under the folder's
    :class:`harness.rundir.RunLock`: no other process may be appending.
    """
    path = Path(run_dir) / RESULTS_FILE
    try:
        fh = open(path, "r+b")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunFolderError(f"cannot open {path} to repair it ({_one_line(exc.strerror or exc)})"
                             ": check that it is a writable file") from None
    with fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return None
        cut = data.rfind(b"\n") + 1
        line_no = data.count(b"\n", 0, cut) + 1
        parsed = _parse_line(data[cut:], line_no, path, last=True)
        if isinstance(parsed, BadLine) and parsed.why == TORN_WHY:
            fh.truncate(cut)
        else:
            fh.seek(0, os.SEEK_END)
            fh.write(b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return parsed if isinstance(parsed, BadLine) and parsed.why == TORN_WHY else None


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null so any JSON reader can load the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


class ResultsWriter:
    """Appends one row per case to results.jsonl, on disk before ``write`` returns.

    Each row is a single ``os.write`` of the whole line to a file opened ``O_APPEND``, then an
    fsync: a crash (``kill -9`` included) can tear only the line being written, the last one,
    which :func:`read_results` reports and :func:`drop_torn_tail` removes. One process should
    append at a time: hold the folder's :class:`harness.rundir.RunLock`.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / RESULTS_FILE
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd: int | None = os.open(self.path, flags, 0o666)
        self._failed: str | None = None

    def write(self, row: Row | dict[str, Any]) -> None:
        if isinstance(row, Row):
            row = row.to_dict()
        unknown = [k for k in row if k not in COLUMN_NAMES]
        if unknown:
            raise KeyError(f"result row has columns outside the schema: {unknown}")
        case_id = row.get("case_id")
        if not isinstance(case_id, str) or not case_id:
            raise ValueError(f"result row needs a case_id that is a non-empty string, not "
                             f"{_cut(repr(case_id), 40)}")
        if self._fd is None:
            raise ValueError(f"the results writer of {self.path} is closed")
        if self._failed is not None:
            raise RunFolderError(f"an earlier write to {self.path} failed ({self._failed}), so "
                                 "it may end in a torn line; stop, and continue with --resume")
        data = (json.dumps({k: _clean(v) for k, v in row.items()}) + "\n").encode("utf-8")
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # a short write (a full disk): finish the line or fail
                n = os.write(self._fd, data[written:])
                if n <= 0:
                    raise OSError(f"wrote {written} of {len(data)} bytes")
                written += n
            os.fsync(self._fd)
        except OSError as exc:
            self._failed = _one_line(exc.strerror or exc)
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _number(value: Any) -> float:
    """One value as a float; anything that is not a number (or numeric text) is NaN."""
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:  # an int beyond the float range
            return math.nan
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def _numeric(series: pd.Series) -> pd.Series:
    """Numbers kept, anything else (a dict, a list, non-numeric text) missing; never raises."""
    try:
        num = pd.to_numeric(series, errors="coerce")
        if num.dtype.kind in "iuf":
            return num
    except (TypeError, ValueError, OverflowError):
        pass
    return series.map(_number).astype("float64")  # value by value: only the odd ones go missing


def _as_float(series: pd.Series) -> pd.Series:
    return _numeric(series).astype("float64")


def _as_int(series: pd.Series) -> pd.Series:
    """Whole numbers as Int64; a fraction, inf or a value beyond int64 is missing."""
    num = _numeric(series)
    if num.dtype.kind == "i":
        return num.astype("Int64")
    num = num.astype("float64")
    whole = np.isfinite(num) & (num == np.round(num)) & (num.abs() < 2.0**63)
    return num.where(whole).astype("Int64")


def _flag(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Real) and value in (0, 1):
        return bool(value)
    return pd.NA


def _as_boolean(series: pd.Series) -> pd.Series:
    """true/false (or 1/0) kept, anything else missing."""
    return series.map(_flag).astype("boolean")


def _text(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


def _as_string(series: pd.Series) -> pd.Series:
    try:
        return series.astype("string")
    except (TypeError, ValueError):
        return series.map(_text).astype("string")


_CONVERT = {"float64": _as_float, "Int64": _as_int, "boolean": _as_boolean,
            "string": _as_string}


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with every schema column, in schema order, with the schema's dtypes.

    A value of the wrong type (a dict where a number belongs, a fraction in an integer column)
    becomes missing, so one odd row cannot stop a report.
    """
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col.name not in df.columns:
            df[col.name] = None
        if col.dtype != "object":
            df[col.name] = _CONVERT[col.dtype](df[col.name])
    extra = [c for c in df.columns if c not in COLUMN_NAMES]
    return df[list(COLUMN_NAMES) + extra]


def _corrupt_meta(path: Path, why: str) -> RunFolderError:
    return RunFolderError(f"{path} is corrupt ({why}): it cannot be read or resumed; "
                          "start a new run")


def load_meta(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/meta.json`` ({} when there is none), read as the current schema.

    A folder from before schema versions is version 1: it reads as it is, with
    ``schema_version`` set to 1 in the returned dict (not written back). A meta.json that is
    not a JSON object, has a bad ``schema_version``, or comes from a newer odebench raises
    :class:`RunFolderError`.
    """
    path = Path(run_dir) / META_FILE
    data = _read_bytes(path)
    if data is None:
        return {}
    try:
        meta = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _corrupt_meta(path, f"not valid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise _corrupt_meta(path, f"not valid JSON: {exc.msg}: line {exc.lineno} column "
                                  f"{exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise _corrupt_meta(path, f"not readable JSON: {_cut(_one_line(exc))}") from None
    if not isinstance(meta, dict):
        raise _corrupt_meta(path, f"{_json_kind(meta)}, not a JSON object")
    if "schema_version" not in meta:
        meta["schema_version"] = 1
        return meta
    version = meta["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _corrupt_meta(path, f"schema_version {_cut(repr(version), 40)} is not a "
                                  "positive integer")
    if version > SCHEMA_VERSION:
        raise RunFolderError(f"{path} was written by a newer odebench (results schema {version}; "
                             f"this one reads up to {SCHEMA_VERSION}): upgrade odebench to read "
                             "it")
    return meta


def write_meta(run_dir: str | Path, meta: dict[str, Any]) -> None:
    """Replace ``run_dir/meta.json`` with ``meta`` atomically: a reader, or a crash at any
    moment, sees the old file or the new one, never part of one.

    Sets ``meta["schema_version"] = SCHEMA_VERSION`` (in the caller's dict too) unless the
    caller set it. The text goes to a temporary file in the same folder, is fsynced, renamed
    onto meta.json, and the folder fsynced so the rename itself survives a power cut.
    """
    run_dir = Path(run_dir)
    meta.setdefault("schema_version", SCHEMA_VERSION)
    text = json.dumps(meta, indent=2, default=str) + "\n"  # before any file: a failure leaves none
    tmp = run_dir / f".{META_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, run_dir / META_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(run_dir)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the file system supports it)."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


@dataclass
class Run:
    """A run folder as read: meta.json, the rows as a DataFrame with the documented schema, the
    parsed results file, and one line per problem found in it (empty for a clean folder)."""

    meta: dict[str, Any]
    df: pd.DataFrame
    results: ResultsFile
    warnings: list[str]


def open_run(run_dir: str | Path) -> Run:
    """Read a run folder; :class:`RunFolderError` (never a pandas or JSON error) when it
    cannot be used. What could not be read is in ``warnings``, for the caller to show."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunFolderNotFound(f"run folder {run_dir} does not exist; check the path")
    if not run_dir.is_dir():
        raise RunFolderNotFound(f"{run_dir} is a file, not a run folder; pass the folder that "
                                f"holds {META_FILE} and {RESULTS_FILE}")
    if not (run_dir / RESULTS_FILE).exists() and not (run_dir / META_FILE).exists():
        raise RunFolderNotFound(f"{run_dir} is not a run folder: it has neither {RESULTS_FILE} "
                                f"nor {META_FILE}; check the path")
    meta = load_meta(run_dir)
    results = read_results(run_dir)
    path = run_dir / RESULTS_FILE
    try:
        df = to_frame(results.rows)
    except Exception as exc:  # a safety net: to_frame is meant never to raise on odd values
        raise RunFolderError(f"the rows of {path} cannot be tabulated ({_cut(_one_line(exc))}): "
                             "a bug in odebench; please report it with the file") from exc
    return Run(meta=meta, df=df, results=results, warnings=results.warnings(path))


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """Load a run folder: (meta, results DataFrame with the documented schema).

    Raises :class:`RunFolderError` when the folder cannot be used; use :func:`open_run` to
    also get the warnings about lines it skipped.
    """
    run = open_run(run_dir)
    return run.meta, run.df


def write_csv(run_dir: Path, df: pd.DataFrame) -> Path:
    path = Path(run_dir) / CSV_FILE
    df.drop(columns=["time_samples_s"], errors="ignore").to_csv(path, index=False)
    return path


def schema_markdown() -> str:
    """The schema as a Markdown table (for the README and `harness show --schema`)."""
    lines = ["| column | unit | meaning |", "|---|---|---|"]
    for c in COLUMNS:
        lines.append(f"| `{c.name}` | {c.unit} | {c.meaning} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Per-iteration records of training cases: RUN_DIR/train/<case file>.jsonl

RECORDS_DIR = "train"
RECORD_FIELDS: tuple[tuple[str, str], ...] = (
    ("iteration", "0-based optimiser step"),
    ("epoch", "pass over the training set (Table 1; absent for trajectory tasks)"),
    ("loss", "training loss of the minibatch, before the step"),
    ("nfe_forward", "calls of f in the forward solve (the harness's count)"),
    ("nfe_backward", "calls of f (or its vector-Jacobian product) in the backward pass"),
    ("time_forward_s", "wall time of the forward solve and the loss"),
    ("time_backward_s", "wall time of the backward pass"),
    ("time_step_s", "wall time of the optimiser step"),
    ("saved_bytes", "peak bytes autograd saved for backward (null where not probed)"),
    ("cuda_peak_bytes", "peak CUDA memory of the iteration (null on the CPU)"),
)


def records_name(case_id: str) -> str:
    """The records file of a case, relative to the run folder: the case id made a file name
    (``/`` becomes ``__``, anything outside ``[A-Za-z0-9._=,+-]`` becomes ``_``)."""
    import re

    slug = re.sub(r"[^A-Za-z0-9._=,+-]", "_", case_id.replace("/", "__"))
    return f"{RECORDS_DIR}/{slug}.jsonl"


def write_records(run_dir: str | Path, case_id: str, records: list[dict[str, Any]]) -> str:
    """Write a case's per-iteration records atomically (a temporary file, fsync, rename); returns
    the name relative to ``run_dir`` that its row's ``records_file`` holds."""
    name = records_name(case_id)
    path = Path(run_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    text = "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in records)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return name


def read_records(run_dir: str | Path, records_file: str | None) -> pd.DataFrame:
    """A training case's per-iteration records as a DataFrame (columns :data:`RECORD_FIELDS`
    that are present); empty where the case has none or the file is missing."""
    if not records_file or not isinstance(records_file, str):
        return pd.DataFrame()
    path = Path(run_dir) / records_file
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return pd.DataFrame()
    rows = []
    for line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            rows.append(value)
    return pd.DataFrame(rows)
