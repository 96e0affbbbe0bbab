"""The report's ``training`` section: neural ODEs trained under each solver, setting and mode.

Built from the rows of ``kind == "train"`` and their per-iteration records
(``RUN_DIR/<records_file>``, read by :func:`harness.results.read_records`); a case whose
records are missing keeps its table row (the row has its own medians) and is left out of the
figures, with a note saying so. Five parts:

1. per trajectory task (the spiral of torchdiffeq's ``ode_demo``, Lotka-Volterra, ...): a table,
   one row per case, and the training loss against the iteration;
2. the seminorm adjoint's saving of backward NFE per iteration against the plain adjoint
   (Kidger, Chen & Lyons, "Hey, that's not an ODE", ICML 2021, report a 40 % median);
3. ours against the torch peers (torchdiffeq, torchode): time to target and per iteration;
4. Figure 3 of the Neural ODE paper (Chen, Rubanova, Bettencourt & Duvenaud, NeurIPS 2018) in
   miniature for dopri5 with the adjoint: NFE against error and time, backward against
   forward NFE, forward NFE over training;
5. Table 1 of the same paper in miniature (task ``digits``), our numbers beside the paper's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from harness.results import read_records
from reports import format as fmt
from reports.figures import (
    Style,
    plain,
    series_styles,
    tidy_log_axis,
    to_svg,
    widen_log_ylim,
    with_rc,
)
from reports.gradients import (
    ADJOINT,
    MODE_ORDER,
    SEMINORM,
    LinearFit,
    fit_bytes_per_step,
    seminorm_saving,
)
from reports.markup import Markup, esc, join, slug, tag
from reports.summary import solver_labels
from reports.tables import MESSAGE_LIMIT, Cell, num, render_table

TITLE = "Training: neural ODEs trained under each solver and gradient mode"
TABLE1_TASK = "digits"
TABLE1_MODELS = ("mlp", "resnet", "odenet")
SOLVER_ORDER = ("dopri5", "rk4", "euler", "tde-dopri5", "to-dopri5")
PEERS: Mapping[str, tuple[str, str]] = {"tde-dopri5": ("dopri5", "torchdiffeq"),
                                        "to-dopri5": ("dopri5", "torchode")}
FIG3_SOLVER, FIG3_MODE, FIG3_TASK = "dopri5", ADJOINT, "spiral"
O1_GROWTH = 0.05  # saved bytes that grow by less than this share over the ladder: O(1)
SEMINORM_PAPER = ("Kidger, Chen & Lyons (“Hey, that's not an ODE”, ICML 2021) report a median "
                  "saving of 40 % of backward NFE on their tasks")
PAPER_CITATION = ("Chen, Rubanova, Bettencourt & Duvenaud, “Neural Ordinary Differential "
                  "Equations”, NeurIPS 2018, Table 1 (MNIST)")
LABEL_VARIANTS = ("device", "dtype", "batch")
TRAIN_COLUMNS = (
    "task", "model", "iterations", "iteration_reached", "epochs", "loss_first", "loss_final",
    "loss_best", "val_err", "test_error", "target_loss", "iteration_to_target",
    "time_to_target_s", "time_train_s", "time_iter_median_s", "time_epoch_s", "nfe_iter_median",
    "nfe_backward_iter_median", "saved_bytes_scaling", "saved_bytes_unit",
    "saved_bytes_per_unit", "eval_rtol", "eval_nfe", "eval_err", "eval_time_s", "records_file",
    "solver", "grad_mode", "device", "dtype", "batch", "rtol", "atol", "n_steps_requested",
    "status", "message", "mem_saved_bytes", "n_params", "case_id", "problem",
)
RECORD_NUMBERS = ("iteration", "epoch", "loss", "nfe_forward", "nfe_backward", "time_forward_s",
                  "time_backward_s", "time_step_s", "saved_bytes", "cuda_peak_bytes")
_MODE_LINES = ("-", "--", ":", "-.")


# ---------------------------------------------------------------------------------------------
# rows and records


def train_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The training cases (``kind == "train"``); none in a run written before kinds."""
    if "kind" not in df:
        return df.iloc[0:0]
    return df[df["kind"].astype("string").fillna("") == "train"]


def with_train_columns(train: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``train`` with every column this section reads (missing ones empty, as in a
    run written before a column existed), ``task`` filled from ``problem``, plus ``label``
    (solver, with its controller where the task holds two for it, and any device/dtype/batch
    that varies) and ``setting`` (rtol or step count)."""
    out = train.copy()
    for c in TRAIN_COLUMNS:
        if c not in out:
            out[c] = pd.NA
    out["task"] = out["task"].astype("object").where(out["task"].notna(), out["problem"])
    out["task"] = out["task"].map(lambda v: "unknown" if fmt.is_missing(v) else str(v))
    # a row that failed before its fields were filled in may lack its model; a Table 1 case id
    # ends in it (harness.suite.Case.case_id)
    tail = out["case_id"].map(lambda c: str(c).rsplit("/", 1)[-1])
    guess = tail.where(tail.isin(TABLE1_MODELS))
    out["model"] = out["model"].astype("object").where(out["model"].notna(), guess)
    out["label"] = ""
    for _, g in out.groupby("task", sort=False):  # what varies among one task's cases
        varying = [c for c in LABEL_VARIANTS if g[c].nunique(dropna=True) > 1]
        labels = solver_labels(g).map(lambda v: "unknown" if fmt.is_missing(v) else str(v))
        if varying:
            labels = labels + " [" + g[varying].astype("string").fillna("?").agg(
                ", ".join, axis=1) + "]"
        out.loc[g.index, "label"] = labels.astype(str)
    out["setting"] = [setting_text(r) for _, r in out.iterrows()]
    out["mode"] = out["grad_mode"].map(lambda v: "unknown" if fmt.is_missing(v) else str(v))
    return out


def setting_text(row: Mapping[str, Any]) -> str:
    """``rtol=1e-07, atol=1e-09`` or ``n=9``; ``default`` where neither applies."""
    if not fmt.is_missing(row.get("n_steps_requested")):
        return f"n={int(row['n_steps_requested'])}"
    if not fmt.is_missing(row.get("rtol")):
        atol = row.get("atol")
        tail = "" if fmt.is_missing(atol) else f", atol={float(atol):.0e}"
        return f"rtol={float(row['rtol']):.0e}{tail}"
    return "default"


def is_table1(row: Mapping[str, Any]) -> bool:
    """A row of Table 1 (task ``digits``, or a model of the table)."""
    return str(row.get("task")) == TABLE1_TASK or str(row.get("model")) in TABLE1_MODELS


def is_ok(row: Mapping[str, Any] | None) -> bool:
    return row is not None and str(row.get("status")) == "ok"


def _records_path(run_dir: Path, name: object) -> Path | None:
    """The records file of a row, or None when it has none or it points outside the run."""
    if not isinstance(name, str) or not name:
        return None
    root = run_dir.resolve()
    path = (root / name).resolve()
    return path if path.is_relative_to(root) else None


def load_records(run_dir: str | Path | None, train: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each case's per-iteration records by ``case_id``, numeric columns as floats; cases whose
    file is missing, empty or unreadable are left out (the caller names them)."""
    out: dict[str, pd.DataFrame] = {}
    if run_dir is None:
        return out
    run_dir = Path(run_dir)
    for _, row in train.iterrows():
        path = _records_path(run_dir, row.get("records_file"))
        if path is None or not path.is_file():
            continue
        rec = read_records(run_dir, str(row["records_file"]))
        if rec.empty:
            continue
        for c in RECORD_NUMBERS:
            rec[c] = pd.to_numeric(rec[c], errors="coerce") if c in rec else np.nan
        out[str(row["case_id"])] = rec.sort_values("iteration", kind="stable")
    return out


def _median(rec: pd.DataFrame | None, column: str, fallback: object = None) -> float:
    """Median of a records column, else the row's own figure (``fallback``)."""
    if rec is not None and column in rec:
        vals = rec[column].dropna()
        if len(vals):
            return float(vals.median())
    return float("nan") if fmt.is_missing(fallback) else float(fallback)  # type: ignore[arg-type]


def _floats(value: object) -> np.ndarray:
    """A list cell (``eval_nfe``, ...) as floats; empty when it is not a list."""
    if not isinstance(value, (list, tuple, np.ndarray)):
        return np.array([], dtype=float)
    return np.array(pd.to_numeric(pd.Series(list(value), dtype=object), errors="coerce"),
                    dtype=float)


def backward_forward_ratio(rec: pd.DataFrame | None) -> tuple[float, int]:
    """Median over iterations of backward / forward NFE, and how many iterations had both."""
    if rec is None or rec.empty:
        return float("nan"), 0
    f, b = rec["nfe_forward"].astype(float), rec["nfe_backward"].astype(float)
    keep = (f > 0) & b.notna()
    if not keep.any():
        return float("nan"), 0
    return float(np.median(b[keep] / f[keep])), int(keep.sum())


def _solver_rank(name: str) -> tuple[int, str]:
    return (SOLVER_ORDER.index(name) if name in SOLVER_ORDER else len(SOLVER_ORDER), name)


def _mode_rank(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def ordered(rows: pd.DataFrame) -> pd.DataFrame:
    """Ours first (dopri5, rk4, euler), then the peers; by setting, then mode."""
    if rows.empty:
        return rows
    key = [(_solver_rank(str(r["solver"])), r["label"], r["setting"], _mode_rank(r["mode"]))
           for _, r in rows.iterrows()]
    return rows.iloc[sorted(range(len(rows)), key=key.__getitem__)]


# ---------------------------------------------------------------------------------------------
# the numbers: seminorm, peers, memory class, Table 1 labels


@dataclass(frozen=True)
class SeminormPair:
    """One (task, solver, setting) trained by both the adjoint and the seminorm adjoint."""

    task: str
    label: str
    setting: str
    adjoint: pd.Series
    seminorm: pd.Series
    bwd_adjoint: float  # median backward NFE per iteration
    bwd_seminorm: float

    @property
    def saving(self) -> float:
        if not (is_ok(self.adjoint) and is_ok(self.seminorm)):
            return float("nan")
        return seminorm_saving(self.bwd_adjoint, self.bwd_seminorm)


def _groups(train: pd.DataFrame, columns: Sequence[str]) -> Iterable[tuple[tuple, pd.DataFrame]]:
    keys = train[list(columns)].astype("string").fillna("?")
    for key, g in train.groupby([keys[c] for c in columns], sort=True):
        yield (key if isinstance(key, tuple) else (key,)), g


def seminorm_pairs(train: pd.DataFrame, records: Mapping[str, pd.DataFrame]) -> list[SeminormPair]:
    """Every (task, model, solver, setting) with both an adjoint and a seminorm row; the
    medians come from the records (the row's ``nfe_backward_iter_median`` without them)."""
    out = []
    for _, g in _groups(train, ("task", "model", "label", "setting")):
        by = {m: r.iloc[0] for m, r in g.groupby("mode")}
        if ADJOINT not in by or SEMINORM not in by:
            continue
        adj, semi = by[ADJOINT], by[SEMINORM]
        out.append(SeminormPair(
            str(adj["task"]), str(adj["label"]), str(adj["setting"]), adj, semi,
            _median(records.get(str(adj["case_id"])), "nfe_backward",
                    adj["nfe_backward_iter_median"]),
            _median(records.get(str(semi["case_id"])), "nfe_backward",
                    semi["nfe_backward_iter_median"])))
    return sorted(out, key=lambda p: (p.task, _solver_rank(p.label), p.setting))


@dataclass(frozen=True)
class PeerPair:
    """Ours and a peer's implementation of the same method, same case otherwise."""

    task: str
    setting: str
    mode: str
    peer: str  # the peer's solver name, e.g. tde-dopri5
    library: str  # torchdiffeq
    ours: pd.Series
    theirs: pd.Series
    ours_label: str = ""  # ours, where it ran with two controllers: "dopri5 · pid"


def peer_pairs(train: pd.DataFrame) -> list[PeerPair]:
    """For each peer solver in :data:`PEERS`, its rows matched with ours (same task, model,
    setting, mode, device, dtype, batch); where ours ran with two controllers, one pair per
    controller (``ours_label`` names it)."""
    out = []
    cols = ("task", "model", "setting", "mode", "device", "dtype", "batch")
    for _, g in _groups(train, cols):
        by = {str(s): r.iloc[0] for s, r in g.groupby("solver")}
        for peer, (ours, library) in PEERS.items():
            if peer in by and ours in by:
                mine = g[g["solver"].astype(str) == ours]
                for label, r in mine.groupby(mine["label"].astype(str), sort=True):
                    r = r.iloc[0]
                    out.append(PeerPair(str(r["task"]), str(r["setting"]), str(r["mode"]),
                                        peer, library, r, by[peer],
                                        "" if str(label).split(" [", 1)[0] == ours
                                        else str(label)))
    return sorted(out, key=lambda p: (p.task, p.peer, p.setting, _mode_rank(p.mode),
                                      p.ours_label))


def ratio(a: object, b: object) -> float:
    """``a / b``, NaN when either is missing or ``b`` is not positive."""
    if fmt.is_missing(a) or fmt.is_missing(b) or float(b) <= 0:  # type: ignore[arg-type]
        return float("nan")
    return float(a) / float(b)  # type: ignore[arg-type]


UNIT_SYMBOL = {"block": "L", "step": "L̃", "NFE": "L̃"}


def scaling_points(value: object) -> tuple[np.ndarray, np.ndarray]:
    """``saved_bytes_scaling`` ([[units, bytes], ...]) as two float arrays, bad pairs dropped."""
    pairs = []
    if isinstance(value, (list, tuple)):
        for p in value:
            if isinstance(p, (list, tuple)) and len(p) == 2:
                u, b = pd.to_numeric(pd.Series(list(p), dtype=object), errors="coerce")
                if np.isfinite(u) and np.isfinite(b):
                    pairs.append((float(u), float(b)))
    arr = np.array(pairs, dtype=float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def memory_class(scaling: object, unit: object) -> tuple[LinearFit, str]:
    """The least-squares line ``bytes ≈ a + b · units`` through the scaling points, and the
    O(·) class it shows: O(1) when the bytes grow by less than :data:`O1_GROWTH` of their
    largest value over the ladder, else O(L) (blocks) or O(L̃) (steps or NFE: the paper's
    symbol for the solver's function evaluations)."""
    units, nbytes = scaling_points(scaling)
    fit = fit_bytes_per_step(units, nbytes)
    if np.isnan(fit.b):
        return fit, fmt.MISSING
    growth = fit.b * (units.max() - units.min()) / max(float(np.abs(nbytes).max()), 1.0)
    if abs(growth) < O1_GROWTH:
        return fit, "O(1)"
    return fit, f"O({UNIT_SYMBOL.get(str(unit), 'n')})"


def derived_label(model: str, solver: str, mode: str) -> str:
    """Table 1's row name from model, solver and mode."""
    if model == "mlp":
        return "1-layer MLP"
    if model == "resnet":
        return "ResNet"
    if model == "odenet" and solver == "euler":
        return "ResNet (tied) = euler"
    if model == "odenet" and mode == "backprop":
        return f"RK-Net ({solver})"
    if model == "odenet" and mode.startswith("adjoint"):
        return f"ODE-Net ({solver}, {mode})"
    return f"{model} ({solver}, {mode})"


def _field(entry: object, name: str) -> object:
    return entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)


def _table1_entry(model: str, solver: str, mode: str) -> object | None:
    """The row of :data:`training.digits.TABLE1` with this model, solver and mode, if any."""
    try:
        from training.digits import TABLE1
    except ImportError:
        return None
    for e in TABLE1:
        if (str(_field(e, "model")) == model and str(_field(e, "solver")) == solver
                and str(_field(e, "grad_mode")) == mode):
            return e
    return None


def table1_label(model: str, solver: str, mode: str) -> str:
    """The label :data:`training.digits.TABLE1` gives the row, else :func:`derived_label`."""
    label = _field(_table1_entry(model, solver, mode), "label")
    return label if isinstance(label, str) and label else derived_label(model, solver, mode)


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 1."""

    label: str  # 1-layer MLP | ResNet | RK-Net | ODE-Net
    test_error: float  # a fraction
    params: float  # a count
    memory: str  # O(1) | O(L) | O(L̃); — where the paper gives none
    time: str = fmt.MISSING


PAPER_TABLE1 = (  # the paper prints no memory or time for the MLP (LeCun et al. 1998)
    PaperRow("1-layer MLP", 0.0160, 0.24e6, fmt.MISSING, fmt.MISSING),
    PaperRow("ResNet", 0.0041, 0.60e6, "O(L)", "O(L)"),
    PaperRow("RK-Net", 0.0047, 0.22e6, "O(L̃)", "O(L̃)"),
    PaperRow("ODE-Net", 0.0042, 0.22e6, "O(1)", "O(L̃)"),
)


def _order_text(value: object) -> str:
    """``O(L~)`` as ``O(L̃)``; ``-`` or nothing as —."""
    if not isinstance(value, str) or value.strip() in ("", "-"):
        return fmt.MISSING
    return value.replace("L~", "L̃")


def _paper_row(label: object, entry: object) -> PaperRow | None:
    err, memory = _field(entry, "test_error"), _field(entry, "memory")
    params = _field(entry, "n_params")
    params = _field(entry, "params") if params is None else params
    if not (isinstance(label, str) and isinstance(err, (int, float))
            and isinstance(params, (int, float))):
        return None
    err = err / 100 if err > 0.2 else err  # 1.60 (%) or 0.016
    params = params * 1e6 if params < 100 else params  # 0.24 (M) or 240000
    return PaperRow(label, float(err), float(params), _order_text(memory),
                    _order_text(_field(entry, "time")))


def paper_rows() -> dict[str, PaperRow]:
    """The paper's Table 1 by label: :data:`training.digits.PAPER_TABLE1` where it exists and
    reads (rows with label, test_error, n_params, memory, time), else ours above."""
    try:
        from training.digits import PAPER_TABLE1 as theirs
    except ImportError:
        theirs = None
    if isinstance(theirs, Mapping):
        rows = [_paper_row(k, v) for k, v in theirs.items()]
    elif isinstance(theirs, (list, tuple)):
        rows = [_paper_row(_field(e, "label"), e) for e in theirs]
    else:
        rows = []
    if not rows or any(r is None for r in rows):
        rows = list(PAPER_TABLE1)
    return {r.label: r for r in rows if r is not None}


def paper_citation() -> str:
    """:data:`training.digits.PAPER_CITATION` where it exists, else :data:`PAPER_CITATION`."""
    try:
        from training.digits import PAPER_CITATION as theirs
    except ImportError:
        return PAPER_CITATION
    return theirs if isinstance(theirs, str) and theirs else PAPER_CITATION


def paper_key(model: str, solver: str, mode: str) -> str | None:
    """Which of the paper's rows ours stands beside: the ``paper`` of its
    :data:`training.digits.TABLE1` entry, else by model and mode (the tied ResNet has none)."""
    entry = _table1_entry(model, solver, mode)
    if entry is not None:
        paper = _field(entry, "paper")
        return paper if isinstance(paper, str) and paper else None
    if model == "mlp":
        return "1-layer MLP"
    if model == "resnet":
        return "ResNet"
    if model == "odenet" and solver != "euler":
        return "ODE-Net" if mode.startswith("adjoint") else "RK-Net"
    return None


# ---------------------------------------------------------------------------------------------
# formatting


def _note(text: str | Markup) -> Markup:
    return tag("p", text, class_="note")


def _figure(svg: Markup, caption: object) -> Markup:
    return tag("figure", join([svg, tag("figcaption", caption)]))


def nbytes(x: object) -> str:
    """``12.3 KiB``: bytes in binary units, three significant digits."""
    if fmt.is_missing(x):
        return fmt.MISSING
    v = float(x)  # type: ignore[arg-type]
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{v:.3g} {unit}" if unit != "B" else f"{v:.0f} B"
        v /= 1024
    return fmt.MISSING  # pragma: no cover


def _pct(x: float) -> str:
    return fmt.MISSING if pd.isna(x) else f"{100 * x:+.1f} %" if x else "0 %"


def _times(x: float) -> str:
    return fmt.MISSING if pd.isna(x) else f"{x:.2f}×"


def status_cell(row: Mapping[str, Any]) -> Cell:
    """``ok``, or the status with the iteration reached (``nonfinite at 7 / 12``)."""
    status = "missing" if fmt.is_missing(row.get("status")) else str(row["status"])
    if status == "ok":
        return Cell("ok")
    reached, planned = row.get("iteration_reached"), row.get("iterations")
    where = ""
    if not fmt.is_missing(reached):
        where = f" at {fmt.count(reached)}" + ("" if fmt.is_missing(planned)
                                               else f" / {fmt.count(planned)}")
    message = row.get("message")
    return Cell(status + where, class_="status",
                title=None if fmt.is_missing(message) else str(message)[:MESSAGE_LIMIT])


def _nowrap(text: object) -> Cell:
    return Cell(text, class_="nowrap")


def _nfe_pair(fwd: float, bwd: float) -> str:
    if pd.isna(fwd) and pd.isna(bwd):
        return fmt.MISSING
    return f"{fmt.sig(fwd)} / {fmt.sig(bwd)}"


# ---------------------------------------------------------------------------------------------
# figures


def mode_lines(modes: Sequence[str]) -> dict[str, str]:
    """A line style per mode: the four built-in ones fixed, others after in turn."""
    order = list(MODE_ORDER) + sorted(set(modes) - set(MODE_ORDER))
    return {m: _MODE_LINES[order.index(m) % len(_MODE_LINES)] for m in modes}


def loss_svg(curves: Sequence[tuple[pd.Series, pd.DataFrame]], styles: Mapping[str, Style],
             target: float, prefix: str, title: str) -> Markup:
    """Training loss against iteration (log y), one line per case: colour = solver, line
    style = mode; a cross ends a case that stopped early; the wide grey line is the target."""

    def draw() -> Markup:
        fig = Figure(figsize=(7.4, 3.7), layout="constrained")
        ax = fig.add_subplot()
        modes = sorted({str(r["mode"]) for r, _ in curves}, key=_mode_rank)
        lines = mode_lines(modes)
        for row, rec in curves:
            keep = rec["loss"].notna() & (rec["loss"] > 0) & np.isfinite(rec["loss"])
            it, loss = rec["iteration"][keep].astype(float), rec["loss"][keep].astype(float)
            if it.empty:
                continue
            st = styles[str(row["label"])]
            ax.plot(it, loss, color=st.color, linestyle=lines[str(row["mode"])], linewidth=1.2)
            if not is_ok(row):
                ax.plot(it.iloc[-1:], loss.iloc[-1:], color=st.color, marker="x",
                        markersize=7, linestyle="none")
        target_line = dict(color="0.55", linestyle="-", linewidth=3.0, alpha=0.35)
        if not pd.isna(target) and target > 0:
            ax.axhline(target, zorder=0, **target_line)
        ax.set_yscale("log")
        widen_log_ylim(ax)
        tidy_log_axis(ax.yaxis)
        ax.set_xlabel("training iteration")
        ax.set_ylabel("training loss (minibatch)")
        labels = sorted({str(r["label"]) for r, _ in curves}, key=_solver_rank)
        handles = [Line2D([], [], color=styles[lab].color, linewidth=2, label=plain(lab))
                   for lab in labels]
        handles += [Line2D([], [], color="0.3", linestyle=lines[m], linewidth=1.2,
                           label=plain(m)) for m in modes]
        if not pd.isna(target) and target > 0:
            handles.append(Line2D([], [], label="target loss", **target_line))
        fig.legend(handles=handles, loc="outside right center")
        ax.set_title(plain(title), fontsize=10)
        return to_svg(fig, prefix, title)

    return with_rc(draw)


def _empty_panel(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_xticks([])
    ax.set_yticks([])


def figure3_svg(row: pd.Series, rec: pd.DataFrame | None, prefix: str, title: str) -> Markup:
    """The Neural ODE paper's Figure 3 for one case, four panels: (a) forward NFE against the
    numerical error and (b) forward time against forward NFE, at the evaluation ladder of the
    trained field; (c) backward against forward NFE and (d) forward NFE against the
    iteration, over training (y = x/2 dashed in (c))."""

    def draw() -> Markup:
        fig = Figure(figsize=(10.0, 2.9))  # a fixed layout: constrained costs seconds here
        ax_a, ax_b, ax_c, ax_d = fig.subplots(1, 4)
        fig.subplots_adjust(left=0.065, right=0.99, bottom=0.19, top=0.83, wspace=0.42)
        nfe, err, secs = (_floats(row.get(c)) for c in ("eval_nfe", "eval_err", "eval_time_s"))
        n = min(len(nfe), len(err))
        keep = (np.isfinite(nfe[:n]) & np.isfinite(err[:n]) & (nfe[:n] > 0) & (err[:n] > 0))
        if keep.any():
            ax_a.plot(err[:n][keep], nfe[:n][keep], marker="o", markersize=4, color="#1f77b4")
            ax_a.set_xscale("log")
            ax_a.set_yscale("log")
            tidy_log_axis(ax_a.xaxis)
            tidy_log_axis(ax_a.yaxis)
            ax_a.set_xlabel("numerical error")
            ax_a.set_ylabel("NFE forward")
        else:
            _empty_panel(ax_a, "no evaluation ladder")
        m = min(len(nfe), len(secs))
        keep = np.isfinite(nfe[:m]) & np.isfinite(secs[:m])
        if keep.any():
            ax_b.plot(nfe[:m][keep], secs[:m][keep] * 1e3, marker="o", markersize=4,
                      color="#1f77b4")
            ax_b.set_xlim(left=0)
            ax_b.set_ylim(bottom=0)
            ax_b.set_xlabel("NFE forward")
            ax_b.set_ylabel("forward time [ms]")
        else:
            _empty_panel(ax_b, "no evaluation ladder")
        have = rec is not None and not rec.empty
        if have and rec["nfe_forward"].notna().any():  # type: ignore[index]
            f, b = rec["nfe_forward"].astype(float), rec["nfe_backward"].astype(float)  # type: ignore[index]
            ax_c.plot(f, b, marker="o", markersize=3, linestyle="none", color="#d62728",
                      alpha=0.7)
            hi = float(np.nanmax(f)) if f.notna().any() else 1.0
            ax_c.plot([0, hi], [0, hi / 2], color="0.4", linestyle="--", linewidth=0.9,
                      label="y = x / 2")
            ax_c.set_xlim(left=0)
            ax_c.set_ylim(bottom=0)
            ax_c.legend(loc="upper left")
            ax_c.set_xlabel("NFE forward")
            ax_c.set_ylabel("NFE backward")
            ax_d.plot(rec["iteration"].astype(float), f, color="#2ca02c",  # type: ignore[index]
                      linewidth=1.2)
            ax_d.set_ylim(bottom=0)
            ax_d.set_xlabel("training iteration")
            ax_d.set_ylabel("NFE forward")
        else:
            _empty_panel(ax_c, "no records")
            _empty_panel(ax_d, "no records")
        for ax, letter in zip((ax_a, ax_b, ax_c, ax_d), "abcd", strict=True):
            ax.set_title(f"({letter})", fontsize=9, loc="left")
        fig.suptitle(plain(title), fontsize=10)
        return to_svg(fig, prefix, title)

    return with_rc(draw)


# ---------------------------------------------------------------------------------------------
# the section's parts


def _task_block(task: str, rows: pd.DataFrame, records: Mapping[str, pd.DataFrame],
                styles: Mapping[str, Style], prefix: str, anchor: str,
                info: Mapping[str, Any]) -> Markup:
    """Part 1 for one trajectory task: the table of its cases and the loss figure."""
    rows = ordered(rows)
    first = rows.iloc[0]
    target = first["target_loss"]
    facts = [f"{fmt.count(first['iterations'])} iterations planned"
             if not fmt.is_missing(first["iterations"]) else "",
             f"batch {first['batch']}" if not fmt.is_missing(first["batch"]) else "",
             "" if fmt.is_missing(first["dtype"]) else str(first["dtype"]),
             f"{fmt.count(first['n_params'])} parameters"
             if not fmt.is_missing(first["n_params"]) else ""]
    what = f"{len(rows)} case(s)" + "".join(f", {f}" for f in facts if f)
    what += f"; target loss {fmt.sig(target)}." if not fmt.is_missing(target) else "."
    parts: list[object] = [tag("h3", task, id=anchor)]
    if not fmt.is_missing(info.get("description")):
        parts.append(_note(str(info["description"])))
    parts.append(_note(what))
    headers: list[object] = [
        "solver", "setting", "mode", "status",
        Cell("loss first → final (best)", title="training loss of the first and the last "
                                                 "iteration, and the lowest of any"),
        Cell("val err", title="mean abs error of the trained model's trajectory from y0 over "
                              "every observation time"),
        Cell("iters to target", title="first iteration whose recent mean loss reached the "
                                      "target"),
        Cell("time to target", title="training wall time up to that iteration"),
        Cell("time / iter", title="median wall time of one iteration (forward, backward, step)"),
        Cell("NFE / iter fwd / bwd", title="median forward and backward NFE per iteration"),
        Cell("peak saved", title="peak bytes autograd saved for backward, probed iterations"),
    ]
    body = []
    for _, r in rows.iterrows():
        rec = records.get(str(r["case_id"]))
        fwd = _median(rec, "nfe_forward", r["nfe_iter_median"])
        bwd = _median(rec, "nfe_backward", r["nfe_backward_iter_median"])
        hit = r["iteration_to_target"]
        reached = "not reached" if fmt.is_missing(hit) and not fmt.is_missing(target) else \
            fmt.count(hit)
        body.append([
            _nowrap(r["label"]), _nowrap(r["setting"]), _nowrap(r["mode"]), status_cell(r),
            num(f"{fmt.sig(r['loss_first'])} → {fmt.sig(r['loss_final'])} "
                f"({fmt.sig(r['loss_best'])})"),
            num(fmt.error(r["val_err"])),
            num(reached, "num dim" if reached == "not reached" else "num"),
            num(fmt.seconds(r["time_to_target_s"])), num(fmt.seconds(r["time_iter_median_s"])),
            num(_nfe_pair(fwd, bwd)), num(nbytes(r["mem_saved_bytes"])),
        ])
    parts.append(render_table(headers, body, class_="trainruns"))
    curves = [(r, records[str(r["case_id"])]) for _, r in rows.iterrows()
              if str(r["case_id"]) in records]
    if curves:
        svg = loss_svg(curves, styles, float("nan") if fmt.is_missing(target) else
                       float(target), prefix, f"{task}: training loss")
        left = len(rows) - len(curves)
        extra = f" {left} case(s) without records are not drawn." if left else ""
        parts.append(_figure(svg, (
            "Training loss of each iteration's minibatch against the iteration, log scale. "
            "Colour: solver (the same in every figure of this section); line style: gradient "
            "mode; a cross marks where a failed case stopped; the wide grey line is the task's "
            "target loss. Backprop, the adjoint and checkpointing compute gradients of the "
            "same loss by different routes, so their curves differ only as far as the "
            "gradients do." + extra)))
    else:
        parts.append(_note("No per-iteration records for this task's cases: no loss curve."))
    bad = rows[[not is_ok(r) for _, r in rows.iterrows()]]
    if len(bad):
        parts.append(_note(f"{len(bad)} case(s) did not finish training: "
                           + "; ".join(f"{r['label']} {r['mode']}: {r['status']} at iteration "
                                       f"{fmt.count(r['iteration_reached'])}"
                                       for _, r in bad.iterrows()) + " (see Failures)."))
    return join(parts)


def _seminorm_block(pairs: Sequence[SeminormPair]) -> list[object]:
    """Part 2: the seminorm adjoint's backward NFE per iteration against the adjoint's."""
    out: list[object] = [tag("h3", "Seminorm adjoint: backward NFE per iteration",
                             id="training-seminorm")]
    if not pairs:
        out.append(_note("No (task, solver, setting) was trained by both the adjoint and the "
                         "seminorm adjoint in this run."))
        return out
    headers: list[object] = [
        "task", "solver", "setting",
        Cell("adjoint: bwd NFE / iter", title="median over iterations of the backward NFE"),
        Cell("seminorm: bwd NFE / iter", title="the same for adjoint-seminorm"),
        Cell("saving", title="(adjoint − seminorm) / adjoint"),
        Cell("time / iter adjoint → seminorm", title="median wall time of one iteration"),
    ]
    body = []
    for p in pairs:
        s = p.saving
        cells: list[object] = [p.task, _nowrap(p.label), _nowrap(p.setting)]
        for r, bwd in ((p.adjoint, p.bwd_adjoint), (p.seminorm, p.bwd_seminorm)):
            cells.append(num(fmt.sig(bwd)) if is_ok(r) else status_cell(r))
        cells.append(num(_pct(s), "num" if pd.isna(s) or s >= 0 else "num warn"))
        cells.append(num(f"{fmt.seconds(p.adjoint['time_iter_median_s'])} → "
                         f"{fmt.seconds(p.seminorm['time_iter_median_s'])}"))
        body.append(cells)
    out.append(_note(Markup(
        "The seminorm adjoint (Kidger, Chen &amp; Lyons, ICML 2021) leaves the parameter-"
        "gradient channels out of the backward solve's error test, so it may take fewer "
        "backward steps for the same forward solve. Backward NFE per iteration are medians "
        "over the training iterations, from the records. A fixed-step solver has no error "
        "test, so there the saving is 0 by construction.")))
    out.append(render_table(headers, body, class_="trainsemi"))
    vals = [p.saving for p in pairs if not pd.isna(p.saving)]
    if vals:
        out.append(_note(f"Median saving over {len(vals)} case(s) in this run: "
                         f"{_pct(float(np.median(vals)))} (range {_pct(min(vals))} … "
                         f"{_pct(max(vals))}). {SEMINORM_PAPER}; ours is what these tasks, "
                         "tolerances and iterations gave."))
    else:
        out.append(_note("No pair in which both cases finished ok with backward NFE: no saving "
                         "to state."))
    return out


def _peer_block(pairs: Sequence[PeerPair]) -> list[object]:
    """Part 3: ours against the torch peers, time to target and per iteration."""
    out: list[object] = [tag("h3", "Ours against torchdiffeq and torchode", id="training-peers")]
    if not pairs:
        out.append(_note("No case was trained by both our dopri5 and a peer's (tde-dopri5: "
                         "torchdiffeq, to-dopri5: torchode) in this run; a peer that is not "
                         "installed is left out of the built-in suites."))
        return out
    headers: list[object] = [
        "task", "setting", "mode", "peer",
        Cell("time to target: ours / peer", title="training wall time to the target loss"),
        Cell("ratio", title="ours / peer: below 1, ours reached the target sooner"),
        Cell("time / iter: ours / peer", title="median wall time of one iteration"),
        Cell("ratio", title="ours / peer: below 1, ours is faster per iteration"),
        Cell("NFE / iter fwd: ours / peer", title="median forward NFE per iteration"),
    ]
    body = []
    per_iter = []
    for p in pairs:
        o, t = p.ours, p.theirs
        cells: list[object] = [p.task, _nowrap(p.setting), _nowrap(p.mode),
                               _nowrap(f"{p.peer} ({p.library})"
                                       + (f" vs {p.ours_label}" if p.ours_label else ""))]
        if is_ok(o) and is_ok(t):
            tt = ratio(o["time_to_target_s"], t["time_to_target_s"])
            ti = ratio(o["time_iter_median_s"], t["time_iter_median_s"])
            if not pd.isna(ti):
                per_iter.append(ti)
            cells += [num(f"{fmt.seconds(o['time_to_target_s'])} / "
                          f"{fmt.seconds(t['time_to_target_s'])}"), num(_times(tt)),
                      num(f"{fmt.seconds(o['time_iter_median_s'])} / "
                          f"{fmt.seconds(t['time_iter_median_s'])}"), num(_times(ti)),
                      num(f"{fmt.sig(o['nfe_iter_median'])} / {fmt.sig(t['nfe_iter_median'])}")]
        else:
            bad = o if not is_ok(o) else t
            who = "ours" if bad is o else p.peer
            cell = status_cell(bad)
            cells += [Cell(f"{who}: {cell.content}", class_="status", title=cell.title),
                      num(fmt.MISSING), num(fmt.MISSING), num(fmt.MISSING), num(fmt.MISSING)]
        body.append(cells)
    out.append(_note("Our dopri5 against the peers' implementation of the same method in the "
                     "same case (task, tolerances, mode, device, dtype); both are counted and "
                     "timed by the same harness. A time to target is missing where a case "
                     "never reached the target; the NFE show whether a difference in time is "
                     "one of steps or of cost per step."))
    out.append(render_table(headers, body, class_="trainpeers"))
    if per_iter:
        out.append(_note(f"Median ratio of time per iteration, ours / peer, over {len(per_iter)} "
                         f"case(s): {_times(float(np.median(per_iter)))} (below 1: ours is "
                         "faster)."))
    return out


def figure3_rows(train: pd.DataFrame) -> pd.DataFrame:
    """The cases Figure 3 is drawn for: dopri5 with the adjoint, on the spiral and as Table 1's
    ODE-Net."""
    keep = [(str(r["solver"]) == FIG3_SOLVER and str(r["mode"]) == FIG3_MODE
             and (str(r["task"]) == FIG3_TASK or str(r["model"]) == "odenet"))
            for _, r in train.iterrows()]
    return train[keep] if len(train) else train


def _figure3_block(train: pd.DataFrame, records: Mapping[str, pd.DataFrame],
                   figure_prefix: Callable[[], str]) -> list[object]:
    """Part 4: the paper's Figure 3 in miniature, one four-panel figure per case."""
    out: list[object] = [tag("h3", "Figure 3 of the Neural ODE paper, in miniature",
                             id="training-figure3")]
    rows = figure3_rows(train)
    if rows.empty:
        out.append(_note("No dopri5 adjoint case of the spiral or of Table 1's ODE-Net in this "
                         "run."))
        return out
    out.append(_note(Markup(
        "After Chen et al., NeurIPS 2018, Figure 3, for the trained field of each case: "
        "(a) forward NFE against the numerical error and (b) forward wall time against forward "
        "NFE, at each tolerance of the evaluation ladder (<code>eval_rtol</code>; error against "
        "the same field solved at rtol 1e-10); (c) backward against forward NFE of every "
        "training iteration, with y = x/2 dashed; (d) forward NFE over training. The paper "
        "found time proportional to NFE, the backward pass about half the forward one's NFE, "
        "and the forward NFE growing as training goes on.")))
    rows = rows.iloc[sorted(range(len(rows)), key=lambda i: (
        is_table1(rows.iloc[i]), str(rows.iloc[i]["task"]), str(rows.iloc[i]["label"]),
        str(rows.iloc[i]["setting"])))]
    for _, r in rows.iterrows():
        rec = records.get(str(r["case_id"]))
        model = "" if fmt.is_missing(r["model"]) or str(r["model"]) == "ode" else \
            f" ({r['model']})"
        name = f"{r['task']}: {r['label']} {r['setting']} {r['mode']}{model}"
        svg = figure3_svg(r, rec, figure_prefix(), name)
        q, n = backward_forward_ratio(rec)
        found = (f"Median backward / forward NFE over {n} iteration(s): {fmt.sig(q)} (the paper "
                 "found about 0.5)." if n else "No records with forward NFE: no ratio (c).")
        if not is_ok(r):
            found += f" This case did not finish: {status_cell(r).content}."
        out.append(_figure(svg, found))
    return out


def _table1_block(rows: pd.DataFrame, records: Mapping[str, pd.DataFrame]) -> list[object]:
    """Part 5: Table 1 in miniature, the paper's figures beside."""
    out: list[object] = [tag("h3", "Table 1 of the Neural ODE paper, in miniature",
                             id="training-table1")]
    paper = paper_rows()
    order = {k: i for i, k in enumerate(("mlp", "resnet", "odenet"))}
    solver_order = ("none", "euler", "rk4", "dopri5")
    rows = rows.iloc[sorted(range(len(rows)), key=lambda i: (
        order.get(str(rows.iloc[i]["model"]), 9),
        solver_order.index(str(rows.iloc[i]["solver"]))
        if str(rows.iloc[i]["solver"]) in solver_order else 9,
        _mode_rank(str(rows.iloc[i]["mode"]))))]
    first = rows.iloc[0]
    epochs = rows["epochs"].dropna()
    length = f", {fmt.count(epochs.max())} epoch(s)" if len(epochs) else ""
    out.append(_note(f"{len(rows)} model(s) on task {first['task']}{length}, batch "
                     f"{fmt.text(first['batch'])}, {fmt.text(first['dtype'])}."))
    headers: list[object] = [
        "model", "solver · mode", "status", Cell("test error", title="on the held-out test set"),
        "parameters",
        Cell("peak saved", title="peak bytes autograd saved for backward, probed iterations"),
        Cell("saved per unit", title="least-squares slope of saved bytes against blocks, "
                                     "steps or NFE"),
        Cell("memory (fit)", title="the O(·) class the saved-bytes ladder shows"),
        Cell("time / epoch", title="median wall time of one epoch"),
        Cell("NFE / iter fwd / bwd", title="median forward and backward NFE per iteration"),
        Cell("paper: test error", class_="paper"), Cell("paper: params", class_="paper"),
        Cell("paper: memory", class_="paper"), Cell("paper: time", class_="paper"),
    ]
    body = []
    for _, r in rows.iterrows():
        model, solver, mode = str(r["model"]), str(r["solver"]), str(r["mode"])
        rec = records.get(str(r["case_id"]))
        fit, klass = memory_class(r["saved_bytes_scaling"], r["saved_bytes_unit"])
        per_unit = r["saved_bytes_per_unit"]
        if fmt.is_missing(per_unit):
            per_unit = fit.b
        unit = "" if fmt.is_missing(r["saved_bytes_unit"]) else f" / {r['saved_bytes_unit']}"
        err = r["test_error"]
        p = paper.get(paper_key(model, solver, mode) or "")
        fwd = _median(rec, "nfe_forward", r["nfe_iter_median"])
        bwd = _median(rec, "nfe_backward", r["nfe_backward_iter_median"])
        if solver == "none":
            fwd = bwd = float("nan")  # a baseline without a solver calls no f
        body.append([
            table1_label(model, solver, mode), "—" if solver == "none" else f"{solver} · {mode}",
            status_cell(r),
            num(fmt.MISSING if fmt.is_missing(err) else f"{100 * float(err):.2f} %"),
            num(fmt.count(r["n_params"])), num(nbytes(r["mem_saved_bytes"])),
            num(fmt.MISSING if pd.isna(per_unit) else nbytes(per_unit) + unit),
            num(klass), num(fmt.seconds(r["time_epoch_s"])), num(_nfe_pair(fwd, bwd)),
            num(f"{100 * p.test_error:.2f} %" if p else fmt.MISSING, "num paper"),
            num(f"{p.params / 1e6:.2f} M" if p else fmt.MISSING, "num paper"),
            num(p.memory if p else fmt.MISSING, "num paper"),
            num(p.time if p else fmt.MISSING, "num paper"),
        ])
    out.append(_note(Markup(
        "Our runs on scikit-learn's 8×8 digits, a miniature of the paper's MNIST set-up; the "
        "grey columns on the right are the paper's own figures (" + esc(paper_citation())
        + "), shown "
        "as context, not as a target: the data set, the model sizes and the training budget "
        "differ. <em>Saved per unit</em> is the least-squares slope of the bytes autograd "
        "saves against the number of blocks (ResNet), steps or NFE (the ODE nets) along the "
        "case's ladder; <em>memory (fit)</em> reads it as a class: O(1) when the bytes grow "
        f"by less than {100 * O1_GROWTH:.0f} % over the ladder, else O(L) in blocks or O(L̃) "
        "in the solver's function evaluations, the paper's notation.")))
    out.append(render_table(headers, body, class_="table1"))
    return out


def _records_note(train: pd.DataFrame, records: Mapping[str, pd.DataFrame],
                  have_run_dir: bool) -> Markup | None:
    missing = [r for _, r in train.iterrows() if str(r["case_id"]) not in records]
    if not missing:
        return None
    if not have_run_dir:
        return _note("The run folder was not given, so the per-iteration records could not be "
                     "read: the tables show each case's own summary, and the curves are "
                     "left out.")
    names = "; ".join(f"{r['task']} {r['label']} {r['setting']} {r['mode']}"
                      for r in missing[:8]) + (" …" if len(missing) > 8 else "")
    return tag("p", f"No per-iteration records for {len(missing)} training case(s) (records "
                    f"file missing, empty or outside the run folder): {names}. Their table "
                    "rows use the case's own summary; their curves are not drawn.",
               class_="note warn")


def training_section(df: pd.DataFrame, figure_prefix: Callable[[], str],
                     run_dir: str | Path | None = None,
                     tasks_meta: Mapping[str, Any] | None = None) -> Markup:
    """The ``training`` section; one line when the run has no training cases. ``run_dir`` is
    where the records files are (None: the curves are left out, with a note);
    ``tasks_meta`` meta.json's description of each task, where it has one."""
    train = train_rows(df) if len(df) else df.iloc[0:0]
    if train.empty:
        return tag("section", join([tag("h2", TITLE), tag("p", "No training cases in this "
                                                                "run.")]), id="training")
    train = with_train_columns(train)
    records = load_records(run_dir, train)
    tasks_meta = tasks_meta if isinstance(tasks_meta, Mapping) else {}
    styles = series_styles(train["label"].tolist())
    intro = _note(Markup(
        "Training cases: a neural ODE (or, for Table 1, a classifier) trained for a fixed "
        "number of iterations under one solver, setting, gradient mode, device and dtype. Each "
        "iteration's loss, NFE, times and (on probed iterations) saved bytes are in the case's "
        "records file; the tables give the medians over iterations. Modes: "
        "<em>backprop</em> (autograd through the solver), <em>adjoint</em> (Chen et al., "
        "NeurIPS 2018), <em>adjoint-seminorm</em> (Kidger et al., ICML 2021), "
        "<em>checkpoint</em>. Ours: dopri5, rk4, euler; peers: tde-dopri5 (torchdiffeq), "
        "to-dopri5 (torchode)."))
    parts: list[object] = [tag("h2", TITLE), intro]
    note = _records_note(train, records, run_dir is not None)
    if note is not None:
        parts.append(note)
    table1 = train[[is_table1(r) for _, r in train.iterrows()]]
    trajectory = train.drop(index=table1.index)
    used: set[str] = set()
    for task, rows in trajectory.groupby("task", sort=True):
        base = "training-task-" + (slug(str(task)) or "unnamed")
        anchor, k = base, 2
        while anchor in used:
            anchor, k = f"{base}-{k}", k + 1
        used.add(anchor)
        info = tasks_meta.get(str(task))
        parts.append(_task_block(str(task), rows, records, styles, figure_prefix(), anchor,
                                 info if isinstance(info, Mapping) else {}))
    parts += _seminorm_block(seminorm_pairs(train, records))
    parts += _peer_block(peer_pairs(trajectory))
    parts += _figure3_block(train, records, figure_prefix)
    if len(table1):
        parts += _table1_block(table1, records)
    else:
        parts += [tag("h3", "Table 1 of the Neural ODE paper, in miniature",
                      id="training-table1"),
                  _note("No Table 1 cases (task digits) in this run.")]
    return tag("section", join(parts), id="training")


def training_failures_table(failed: pd.DataFrame) -> Markup:
    """The failed training cases for the Failures section: what, why, how far training got."""
    failed = ordered(with_train_columns(failed))
    headers = ["task", "model", "solver", "setting", "mode", "status", "message",
               Cell("iteration reached", title="optimiser steps completed, of those planned")]
    body = []
    for _, r in failed.iterrows():
        message = "" if fmt.is_missing(r["message"]) else str(r["message"])
        shown = message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT] + " …"
        reached = fmt.count(r["iteration_reached"])
        if not fmt.is_missing(r["iterations"]):
            reached += f" / {fmt.count(r['iterations'])}"
        body.append([r["task"], fmt.text(r["model"]), _nowrap(r["label"]),
                     _nowrap(r["setting"]), _nowrap(r["mode"]),
                     Cell(fmt.text(r["status"]), class_="status"),
                     Cell(shown or fmt.MISSING, class_="message",
                          title=message if len(message) > MESSAGE_LIMIT else None),
                     num(reached)])
    return render_table(headers, body, class_="failures trainfailures")
