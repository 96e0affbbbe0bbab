"""HTML tables for the report: table data, a small escaped renderer, and the report's tables.

We render tables ourselves rather than with ``DataFrame.to_html`` so that every cell is
escaped by one rule (:mod:`reports.markup`), numbers are formatted for people
(:mod:`reports.format`) and cells can carry a class (numbers right-aligned, the cheapest
solver highlighted) and a raw value to sort by (``data-sort``, read by the page's script).
The report's own tables are :class:`Table` records drawn by the ``table`` macro of
``templates/macros.html.j2``; :func:`render_table` is the same drawing in Python, for the
sections that still build their HTML as fragments.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reports import format as fmt
from reports.findings import FamilyFinding
from reports.markup import Markup, tag
from reports.placement import backends, has_backend
from reports.summary import controllers, method_text, solver_labels

MESSAGE_LIMIT = 300  # characters of a failure message shown; the full text is in results.jsonl


@dataclass(frozen=True)
class Cell:
    """A table cell: its content (escaped unless Markup), an optional class and title, and
    the raw value a sortable table sorts it by (None: its text)."""

    content: object
    class_: str | None = None
    title: str | None = None
    sort: object = None

    @property
    def sort_key(self) -> str | None:
        """``sort`` as the text of a ``data-sort`` attribute: a number in full precision, an
        empty string for a missing number (sorted last), None when there is nothing."""
        if self.sort is None:
            return None
        if isinstance(self.sort, (int, float)) and not isinstance(self.sort, bool):
            x = float(self.sort)
            return "" if math.isnan(x) else repr(x)
        return "" if fmt.is_missing(self.sort) else str(self.sort)


@dataclass(frozen=True)
class Row:
    """A table row: its cells and an optional class and title (e.g. a flagged case)."""

    cells: Sequence[object]
    class_: str | None = None
    title: str | None = None


@dataclass
class Table:
    """A table for the ``table`` macro: header cells, rows, and whether a click on a header
    sorts it and a text box above it filters its rows."""

    headers: Sequence[object]
    rows: Sequence[Row | Sequence[object]] = field(default_factory=list)
    class_: str | None = None
    sortable: bool = True
    filterable: bool = False
    caption: object = None

    def header_cells(self) -> list[Cell]:
        return [as_cell(h) for h in self.headers]

    def body(self) -> list[Row]:
        return [r if isinstance(r, Row) else Row(r) for r in self.rows]


def as_cell(value: object) -> Cell:
    return value if isinstance(value, Cell) else Cell(value)


def _cell(value: object, header: bool = False) -> Markup:
    c = as_cell(value)
    return tag("th" if header else "td", c.content, class_=c.class_, title=c.title,
               data_sort=c.sort_key)


def render_table(headers: Sequence[object], rows: Sequence[Sequence[object] | Markup],
                 class_: str | None = None, caption: object = None) -> Markup:
    """A ``<table>``; a row that is Markup (e.g. a group header) is inserted as it is."""
    head = tag("tr", Markup("".join(_cell(h, header=True) for h in headers)))
    body = []
    for row in rows:
        if isinstance(row, Markup):
            body.append(row)
        elif isinstance(row, Row):
            body.append(tag("tr", Markup("".join(_cell(v) for v in row.cells)),
                            class_=row.class_, title=row.title))
        else:
            body.append(tag("tr", Markup("".join(_cell(v) for v in row))))
    parts = [tag("caption", caption)] if caption is not None else []
    parts += [tag("thead", head), tag("tbody", Markup("\n".join(body)))]
    return tag("table", Markup("\n".join(parts)), class_=class_)


def num(text: str, class_: str = "num", title: str | None = None, sort: object = None) -> Cell:
    """A right-aligned numeric cell; ``sort`` is its raw value for sorting."""
    return Cell(text, class_=class_, title=title, sort=sort)


def number(value: Any) -> float:
    """``value`` as a float for ``data-sort`` (NaN when it is missing or not a number)."""
    if fmt.is_missing(value):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def message_cell(message: Any) -> Cell:
    """A failure message, cut to :data:`MESSAGE_LIMIT` characters (the full text in the
    title)."""
    text = "" if fmt.is_missing(message) else str(message)
    shown = text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + " …"
    return Cell(shown or fmt.MISSING, class_="message",
                title=text if len(text) > MESSAGE_LIMIT else None)


ENV_KEYS = ("python", "platform", "cpu", "n_cores", "torch", "numpy", "scipy", "pandas",
            "matplotlib", "torch_threads", "cuda", "git_commit", "hostname")


def cuda_text(cuda: Any) -> str:
    """The GPU entry of meta.json's environment: its model, driver and CUDA version."""
    if cuda is None:
        return "none"
    if isinstance(cuda, Mapping):
        return (f"{fmt.text(cuda.get('device_name'))} (driver {fmt.text(cuda.get('driver'))}, "
                f"CUDA {fmt.text(cuda.get('cuda_version'))})")
    return fmt.text(cuda)


def value_text(value: Any) -> str:
    """A meta.json value as one line: mappings and lists as JSON, the rest as text."""
    if isinstance(value, (Mapping, list, tuple)) and not isinstance(value, str):
        try:
            return json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError):
            return str(value)
    return fmt.text(value)


def environment_pairs(meta: Mapping[str, Any]) -> list[tuple[str, object]]:
    """Versions, machine and run settings from meta.json. The machine's entries read
    ``unknown`` when missing; the optional keys (``odebench_version``, suite settings,
    threads) are left out when the run did not record them."""
    env = meta.get("environment")
    env = env if isinstance(env, Mapping) else {}
    pairs: list[tuple[str, object]] = []
    for key in ENV_KEYS:
        if key == "cuda":
            pairs.append(("cuda", cuda_text(env.get("cuda")) if "cuda" in env else fmt.UNKNOWN))
        else:
            pairs.append((key, value_text(env.get(key))))
    pairs += [(k, value_text(v)) for k, v in sorted(env.items()) if k not in ENV_KEYS]
    version = meta.get("odebench_version")
    if not fmt.is_missing(version) and value_text(version) != value_text(env.get("odebench")):
        pairs.append(("odebench_version", value_text(version)))
    if not fmt.is_missing(meta.get("threads")):
        pairs.append(("threads", value_text(meta.get("threads"))))
    pairs.append(("seed", value_text(meta.get("seed"))))
    suite = meta.get("suite")
    suite = suite if isinstance(suite, Mapping) else {}
    pairs.append(("suite", value_text(suite.get("name"))))
    settings = suite.get("settings")
    if isinstance(settings, Mapping):
        pairs += [(f"suite: {k}", v) for k, v in settings_pairs(settings)]
    elif not fmt.is_missing(settings):
        pairs.append(("suite settings", value_text(settings)))
    return pairs


def _ladder_text(ladder: Any) -> str:
    """``32..512`` for a doubling ladder, the rungs otherwise."""
    if not isinstance(ladder, (list, tuple)) or not ladder:
        return value_text(ladder)
    rungs = list(ladder)
    if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rungs):
        return value_text(rungs)
    doubling = len(rungs) > 2 and all(b == 2 * a for a, b in zip(rungs, rungs[1:], strict=False))
    return f"{rungs[0]:g}..{rungs[-1]:g}" if doubling else ", ".join(f"{r:g}" for r in rungs)


def settings_pairs(settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A suite's recorded settings as readable key/value lines: lists joined, the timing
    as ``key = value``, the per-problem fixed-step ladders one problem at a time."""
    out: list[tuple[str, str]] = []
    for key in sorted(settings):
        value = settings[key]
        if key == "steps_by_problem" and isinstance(value, Mapping):
            parts = []
            for problem in sorted(value):
                ladders = value[problem]
                if isinstance(ladders, Mapping):
                    inner = ", ".join(f"{solver} {_ladder_text(lad)}"
                                      for solver, lad in sorted(ladders.items()))
                else:
                    inner = _ladder_text(ladders)
                parts.append(f"{problem}: {inner}")
            out.append(("fixed steps per problem", "; ".join(parts)))
        elif isinstance(value, Mapping):
            out.append((key, ", ".join(f"{k} = {value_text(v)}" for k, v in sorted(value.items()))))
        elif isinstance(value, (list, tuple)):
            out.append((key, ", ".join(value_text(v) for v in value)))
        else:
            out.append((key, "not set" if value is None else value_text(value)))
    return out


# --- the report's tables of cases, solvers, rankings and failures ---------------------


def rank_table(f: FamilyFinding) -> Table:
    headers = ["#", "solver",
               Cell("problems reached", title=f"problems on which it reached {f.digits:g} digits"),
               Cell("time ratio", title="geometric mean over the problems it reached of its "
                                        "time / the fastest solver's time (1 = always fastest)"),
               Cell("NFE ratio", title="the same with function evaluations"),
               Cell("fastest on", title="problems on which it was the fastest"),
               Cell("least NFE on", title="problems on which it needed the fewest NFE")]
    rows = []
    for i, r in enumerate(f.ranking, 1):
        rows.append([num(str(i), sort=i), r.series,
                     num(f"{r.n_reached} / {r.n_problems}", sort=r.n_reached),
                     num(ratio_text(r.time_ratio_gmean), sort=number(r.time_ratio_gmean)),
                     num(ratio_text(r.nfe_ratio_gmean), sort=number(r.nfe_ratio_gmean)),
                     num(str(r.wins_time), sort=r.wins_time),
                     num(str(r.wins_nfe), sort=r.wins_nfe)])
    return Table(headers, rows, class_="ranking")


def ratio_text(x: Any) -> str:
    v = number(x)
    return fmt.MISSING if pd.isna(v) else f"{v:.2f}×"


CONTROLLER_TITLE = ("the step-size controller: hairer (DOPRI5's rule), pid (Söderlind's PID "
                    "filter), constant (fixed steps)")
CONTROLLER_NONE = "the solver chooses its steps itself (or the run does not record it)"
BACKEND_TITLE = ("the arithmetic the solve ran in: tensor (torch tensors) or host (Python "
                 "floats, for a small float64 CPU state with no gradient recorded; the same "
                 "steps, faster at batch 1)")


def solvers_table(df: pd.DataFrame, solvers_meta: Mapping[str, Any]) -> Table | None:
    """One row per solver of the plain solves: its method, order and step control. A solver
    run with two controllers is two rows (``dopri5 · hairer``, ``dopri5 · pid``:
    :func:`reports.summary.solver_labels`); a ``controller`` column is shown where the rows
    record one."""
    if df.empty:
        return None
    names = solver_labels(df)
    ctrl = controllers(df)
    show_controller = bool((ctrl != "").any())
    rows = []
    for label in sorted(names.unique()):
        mine = df[(names == label).to_numpy()]
        given = mine["solver"].dropna().astype(str)
        solver = str(given.iloc[0]) if len(given) else label
        info = solvers_meta.get(solver)
        info = info if isinstance(info, Mapping) else {}
        kind = info.get("kind")
        if fmt.is_missing(kind) and "solver_kind" in mine:
            kinds = mine["solver_kind"].dropna().unique()
            kind = kinds[0] if len(kinds) else None
        order = info.get("order")
        if fmt.is_missing(order) and "order" in mine:
            orders = mine["order"].dropna().unique()
            order = orders[0] if len(orders) else None
        adaptive = info.get("adaptive")
        if not isinstance(adaptive, bool) and "adaptive" in mine:
            vals = mine["adaptive"].dropna().unique()
            adaptive = bool(vals[0]) if len(vals) == 1 else None
        n_ok = int((mine["status"].fillna("") == "ok").sum())
        method = fmt.text(kind) if not fmt.is_missing(kind) else method_text(solver, mine, {})
        cells = [label, method, num(fmt.text(order), sort=number(order)),
                 "yes" if adaptive is True else "no" if adaptive is False else fmt.UNKNOWN]
        if show_controller:
            used = sorted(set(ctrl[(names == label).to_numpy()]) - {""})
            cells.append(", ".join(used) or Cell(fmt.MISSING, title=CONTROLLER_NONE))
        rows.append(cells + [num(f"{n_ok} / {len(mine)}", sort=n_ok),
                             fmt.text(info.get("source"))])
    headers = ["solver", "method", "order", "adaptive",
               *([Cell("controller", title=CONTROLLER_TITLE)] if show_controller else []),
               Cell("ok / cases", title="plain solves that finished with status ok"), "source"]
    return Table(headers, rows, class_="solvers")


def int_cell(value: Any) -> Cell:
    return num(fmt.count(value), sort=number(value))


def time_cell(row: Mapping[str, Any]) -> Cell:
    median, iqr = row.get("time_median_s"), row.get("time_iqr_s")
    ratio = fmt.iqr_ratio(median, iqr)
    if fmt.is_noisy(median, iqr):
        reps = row.get("repeats")
        over = "" if fmt.is_missing(reps) else f" over {fmt.count(reps)} repeats"
        return num(fmt.seconds(median) + " ~", "num noisy", sort=number(median),
                   title=f"noisy: IQR / median = {ratio:.2f}{over} "
                         f"(more than {fmt.NOISY_IQR_RATIO:g})")
    return num(fmt.seconds(median), sort=number(median))


def setting_key(row: Mapping[str, Any]) -> float:
    """Sort key of a setting: tighter tolerance or more steps sorts later."""
    rtol, n = number(row.get("rtol")), number(row.get("n_steps_requested"))
    if not pd.isna(rtol) and rtol > 0:
        return -math.log10(rtol)
    return n


ALGEBRA_COLUMNS = {
    "njev": ("Jacobians", "Jacobian evaluations; empty: an explicit solver, which needs none"),
    "ndec": ("LU", "LU decompositions of the step's matrix; empty: an explicit solver"),
    "nsol": ("solves", "forward-backward substitutions with the LU; empty: not counted"),
}


def cases_table(rows: pd.DataFrame, wrong: pd.Series) -> Table:
    """Every plain solve of one problem, one row each; flagged when ok but wrong. A
    ``backend`` column (before the time) where some row records one; the implicit
    solvers' linear-algebra counts (after the rejections) where some row has them."""
    show_backend = has_backend(rows)
    backend = backends(rows)
    algebra = [c for c in ALGEBRA_COLUMNS if c in rows and rows[c].notna().any()]
    headers = ["solver", "setting", "status", "NFE", "steps",
               Cell("rejected", title="rejected steps; -1: the solver does not report them"),
               *[Cell(ALGEBRA_COLUMNS[c][0], title=ALGEBRA_COLUMNS[c][1]) for c in algebra],
               Cell("err_max", title="max abs error over output times and components"),
               Cell("scd", title="significant correct digits at the end point"),
               *([Cell("backend", title=BACKEND_TITLE)] if show_backend else []),
               Cell("time", title="median wall time of one solve; ~ noisy (IQR > "
                                  f"{fmt.NOISY_IQR_RATIO:.0%} of the median)"),
               Cell("IQR", title="interquartile range of the timed repeats"), "repeats"]
    body = []
    ordered = rows.assign(_key=[setting_key(r) for _, r in rows.iterrows()])
    ordered = ordered.sort_values(["series", "_key"], na_position="last", kind="stable")
    for idx, r in ordered.iterrows():
        status = fmt.text(r["status"])
        flagged = bool(wrong.get(idx, False))
        scd = r.get("scd")
        scd_cell = (num(f"{fmt.sig(scd)} ✗", "num warn", sort=number(scd),
                        title="no correct digits: the solve finished ok but its answer is wrong")
                    if flagged else num(fmt.sig(scd), sort=number(scd)))
        cells = [r["series"], Cell(fmt.setting(r), sort=setting_key(r)),
                 Cell(status, class_=None if status == "ok" else "status bad"),
                 int_cell(r.get("nfe")), int_cell(r.get("n_steps")),
                 int_cell(r.get("n_rejected")),
                 *[int_cell(r.get(c)) for c in algebra],
                 num(fmt.error(r.get("err_max")), sort=number(r.get("err_max"))), scd_cell,
                 *([backend.get(idx, "") or fmt.MISSING] if show_backend else []),
                 time_cell(r), num(fmt.seconds(r.get("time_iqr_s")),
                                    sort=number(r.get("time_iqr_s"))),
                 int_cell(r.get("repeats"))]
        body.append(Row(cells, class_="wrong" if flagged else None,
                        title="no correct digits" if flagged else None))
    return Table(headers, body, class_="cases", filterable=True)


def failure_table(rows: pd.DataFrame) -> Table:
    headers = ["problem", "solver", "setting", "status", "message", "t_reached"]
    body = []
    for _, r in rows.sort_values(["problem"], na_position="last", kind="stable").iterrows():
        body.append([fmt.text(r["problem"]), r["series"], fmt.setting(r),
                     Cell(fmt.text(r["status"]), class_="status"), message_cell(r["message"]),
                     num(fmt.sig(r.get("t_reached")), sort=number(r.get("t_reached")))])
    return Table(headers, body, class_="failures")
