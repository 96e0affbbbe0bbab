"""compare.html: one self-contained page for a comparison of two runs (harness.compare).

Rendered with Jinja2 with autoescaping on, so every string that comes from a run (case ids,
solver names, statuses, machine names) is escaped; the stylesheet is the report's own,
inlined, so the page needs no other file.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from markupsafe import Markup

from harness.compare import (
    ABS_FLOOR,
    MARK_MEANINGS,
    REL_TOL,
    SCD_ABS_TOL,
    STATS_RULE,
    Comparison,
    Mark,
    executor_warning,
    hardware_warning,
    machine,
    machine_warning,
    nothing_matched_line,
    summary_line,
)
from reports import format as fmt

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "compare.html.j2"
COMPARE_FILE = "compare.html"

_MARK_CLASS = {
    Mark.WORSE: "worse", Mark.NEWLY_FAILING: "worse", Mark.BETTER: "better",
    Mark.FIXED: "better", Mark.NOT_SIGNIFICANT: "unsure", Mark.SAME: "same",
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env


def _rows(comp: Comparison) -> list[dict]:
    rows = []
    for c in comp.cases:
        t = c.time
        rows.append({
            "mark": str(c.mark), "css": _MARK_CLASS[c.mark], "case_id": c.case_id,
            "problem": c.problem, "solver": c.solver,
            "status_a": c.status_a, "status_b": c.status_b,
            "before": fmt.seconds(t.median_a) if t else fmt.MISSING,
            "after": fmt.seconds(t.median_b) if t else fmt.MISSING,
            "ratio": f"{t.ratio:.2f}" if t else fmt.MISSING,
            "samples": (f"{t.n_a} / {t.n_b}" if t.source == "time_samples_s"
                        else f"none ({t.source})") if t else fmt.MISSING,
            "test": t.significance.why if t else "",
            "untimed": c.untimed,
            "figures": [{"text": f.describe(), "worse": f.worse} for f in c.figures],
            "regression": c.regression,
        })
    return rows


def render(comp: Comparison) -> str:
    """The comparison as one HTML page."""
    template = _environment().get_template(TEMPLATE)
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    return template.render(
        comp=comp,
        title=f"odebench compare: {comp.run_id_a} vs {comp.run_id_b}",
        css=Markup(css),  # the project's own stylesheet, not data from a run
        warning=machine_warning(comp),
        executor_warning=executor_warning(comp),
        hardware_warning=hardware_warning(comp),
        summary=summary_line(comp),
        rows=_rows(comp),
        marks=[(str(m), text) for m, text in MARK_MEANINGS.items()],
        rel_tol=f"{REL_TOL:g}", abs_floor=f"{ABS_FLOOR:g}", scd_tol=f"{SCD_ABS_TOL:g}",
        stats_rule=STATS_RULE, nothing_matched=nothing_matched_line(comp),
        machine_keys=list(machine({}).keys()),
        diffs={d.key for d in comp.machine_diffs},
        machine_a={k: fmt.text(v) for k, v in comp.machine_a.items()},
        machine_b={k: fmt.text(v) for k, v in comp.machine_b.items()},
    )


def target(out: Path) -> Path:
    """The file the page goes to for ``--out OUT``: OUT/compare.html when OUT is a folder."""
    out = Path(out)
    return out / COMPARE_FILE if out.is_dir() else out


def write(comp: Comparison, out: Path) -> Path:
    """Write the page to ``out`` (a file, or a folder to hold compare.html); its path."""
    out = target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(comp), encoding="utf-8")
    return out
