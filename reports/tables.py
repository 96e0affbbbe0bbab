"""HTML tables for the report: a small escaped renderer and the report's tables built on it.

We render tables ourselves rather than with ``DataFrame.to_html`` so that every cell is
escaped by one rule (:mod:`reports.markup`), numbers are formatted for people
(:mod:`reports.format`) and cells can carry a class (numbers right-aligned, the cheapest
solver highlighted).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports import format as fmt
from reports.markup import Markup, tag
from reports.summary import SummaryRow

MESSAGE_LIMIT = 300  # characters of a failure message shown; the full text is in results.jsonl


@dataclass(frozen=True)
class Cell:
    """A table cell: its content (escaped unless Markup), an optional class and title."""

    content: object
    class_: str | None = None
    title: str | None = None


def _cell(value: object, header: bool = False) -> Markup:
    c = value if isinstance(value, Cell) else Cell(value)
    return tag("th" if header else "td", c.content, class_=c.class_, title=c.title)


def render_table(headers: Sequence[object], rows: Sequence[Sequence[object] | Markup],
                 class_: str | None = None, caption: object = None) -> Markup:
    """A ``<table>``; a row that is Markup (e.g. a group header) is inserted as it is."""
    head = tag("tr", Markup("".join(_cell(h, header=True) for h in headers)))
    body = []
    for row in rows:
        if isinstance(row, Markup):
            body.append(row)
        else:
            body.append(tag("tr", Markup("".join(_cell(v) for v in row))))
    parts = [tag("caption", caption)] if caption is not None else []
    parts += [tag("thead", head), tag("tbody", Markup("\n".join(body)))]
    return tag("table", Markup("\n".join(parts)), class_=class_)


def num(text: str, class_: str = "num", title: str | None = None) -> Cell:
    """A right-aligned numeric cell."""
    return Cell(text, class_=class_, title=title)


def definition_table(pairs: Sequence[tuple[str, object]], class_: str = "kv") -> Markup:
    """A two-column key/value table (no header row)."""
    rows = "".join(tag("tr", Markup(tag("th", k) + tag("td", v))) for k, v in pairs)
    return tag("table", Markup(rows), class_=class_)


def summary_table(rows: Sequence[SummaryRow], targets: Sequence[float]) -> Markup:
    """The per problem x solver summary, one group of rows per problem."""
    headers: list[object] = [
        "solver", "method", "ok / total",
        Cell("best err_max", title="smallest max abs error among the ok cases"),
        Cell("NFE at best", title="function evaluations of the case with the best error"),
        Cell("time at best", title="median wall time of that case"),
    ]
    headers += [Cell(f"NFE to ≥{d:g} digits",
                     title=f"least NFE among ok cases with scd ≥ {d:g}; ★ = cheapest for "
                           "this problem") for d in targets]
    headers.append(Cell("time / step", title="median over ok cases of wall time / steps"))
    body: list[Sequence[object] | Markup] = []
    current = None
    for r in rows:
        if r.problem != current:
            current = r.problem
            body.append(tag("tr", tag("th", r.problem, colspan=len(headers)), class_="group"))
        ok_class = "num" if r.n_ok == r.n_total else "num warn"
        cells: list[object] = [
            r.series, r.method, num(f"{r.n_ok} / {r.n_total}", ok_class),
            num(fmt.error(r.best_err)), num(fmt.count(r.nfe_at_best)),
            num(fmt.seconds(r.time_at_best)),
        ]
        for d in targets:
            nfe = r.nfe_to_target.get(d)
            if nfe is None:
                cells.append(num("not reached", "num dim"))
            elif d in r.cheapest:
                cells.append(num(f"★ {fmt.count(nfe)}", "num best",
                                 title="cheapest solver on this problem for this accuracy"))
            else:
                cells.append(num(fmt.count(nfe)))
        cells.append(num(fmt.seconds(r.time_per_step)))
        body.append(cells)
    return render_table(headers, body, class_="summary")


def failures_table(failed: pd.DataFrame) -> Markup:
    """Every case whose status is not ok: what, which setting, why, how far it got."""
    if failed.empty:
        return Markup("<p class=\"none\">none: every case finished with status ok.</p>")
    headers = ["problem", "solver", "setting", "status", "message", "t_reached"]
    body = []
    ordered = failed.sort_values(["problem", "series", "status"], na_position="last")
    for _, row in ordered.iterrows():
        message = "" if fmt.is_missing(row["message"]) else str(row["message"])
        shown = message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT] + " …"
        body.append([
            fmt.text(row["problem"]), row["series"], fmt.setting(row),
            Cell(fmt.text(row["status"]), class_="status"),
            Cell(shown or fmt.MISSING, class_="message",
                 title=message if len(message) > MESSAGE_LIMIT else None),
            num(fmt.sig(row["t_reached"])),
        ])
    return render_table(headers, body, class_="failures")


ENV_KEYS = ("python", "platform", "cpu", "n_cores", "torch", "numpy", "scipy", "pandas",
            "matplotlib", "torch_threads", "cuda", "git_commit", "hostname")


def _cuda_text(cuda: Any) -> str:
    if cuda is None:
        return "none"
    if isinstance(cuda, Mapping):
        return (f"{fmt.text(cuda.get('device_name'))} (driver {fmt.text(cuda.get('driver'))}, "
                f"CUDA {fmt.text(cuda.get('cuda_version'))})")
    return fmt.text(cuda)


def _value_text(value: Any) -> str:
    if isinstance(value, (Mapping, list, tuple)) and not isinstance(value, str):
        try:
            return json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError):
            return str(value)
    return fmt.text(value)


def environment_table(meta: Mapping[str, Any]) -> Markup:
    """Versions, machine and run settings from meta.json; missing entries read ``unknown``."""
    env = meta.get("environment")
    env = env if isinstance(env, Mapping) else {}
    pairs: list[tuple[str, object]] = []
    for key in ENV_KEYS:
        if key == "cuda":
            pairs.append(("cuda", _cuda_text(env.get("cuda")) if "cuda" in env else fmt.UNKNOWN))
        else:
            pairs.append((key, _value_text(env.get(key))))
    pairs += [(k, _value_text(v)) for k, v in sorted(env.items()) if k not in ENV_KEYS]
    suite = meta.get("suite")
    suite = suite if isinstance(suite, Mapping) else {}
    pairs += [
        ("odebench_version", _value_text(meta.get("odebench_version"))),
        ("seed", _value_text(meta.get("seed"))),
        ("suite", _value_text(suite.get("name"))),
        ("suite settings", _value_text(suite.get("settings"))),
    ]
    return definition_table(pairs)
