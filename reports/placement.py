"""Where a run's cases ran: which executor and which hardware, read from the rows.

Three facts decide whether two timings may be compared (harness/results.py, ``executor``,
``hardware`` and ``backend``):

- Only the serial executor times a case alone. The process and dask executors run cases
  beside one another, contending for cores and memory bandwidth, so their timings are not
  trusted for comparison. A row without an executor (a run written before executors) is
  serial.
- Rows with different ``hardware`` labels were timed on different hardware. A run written
  before the column has none: it is one machine, the one its meta.json describes. A CUDA
  case's label adds its GPU to the machine's (``node7: AMD EPYC 7B13, 16 cores, NVIDIA
  H100``); the report tells machines apart by the label without it (:func:`machine_labels`),
  as the ``device`` already tells a GPU case from a CPU one and comparing the two on one
  machine is what a run with both is for.
- A row's ``backend`` says which arithmetic the solve ran in: ``tensor`` (torch tensors) or
  ``host`` (Python floats, taken automatically for a small float64 CPU state with no gradient
  recorded; the same steps, faster at batch 1); empty where the solver does not say (or the
  run was written before the column). A solver whose batch-1 cases ran on the host and whose
  large batches ran on tensors has timings across batch sizes that compare the two
  arithmetics as well as the sizes (:func:`mixed_backend_text`).

Pure pandas; the report (:mod:`reports.build`, :mod:`reports.findings`,
:mod:`reports.figures`) and ``compare`` (:mod:`harness.compare`) share these rules.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

SERIAL = "serial"
"""The one executor whose timings are trusted for comparison (and the default of a row)."""
UNRECORDED_HARDWARE = "hardware not recorded"
"""The hardware of a row without a label, in a run whose other rows have labels."""


def _strings(df: pd.DataFrame, column: str) -> pd.Series:
    """``df[column]`` as stripped strings, NA where missing, empty or absent."""
    if df is None or column not in df:
        return pd.Series(pd.NA, index=getattr(df, "index", pd.RangeIndex(0)), dtype="string")
    text = df[column].astype("string").str.strip()
    return text.mask(text == "")


def executors(df: pd.DataFrame) -> pd.Series:
    """Each row's executor; ``serial`` where the row has none."""
    return _strings(df, "executor").fillna(SERIAL).astype(str)


def executor_counts(df: pd.DataFrame) -> dict[str, int]:
    """Rows per executor, by name (a missing executor counts as serial)."""
    if df is None or len(df) == 0:
        return {}
    counts = executors(df).value_counts()
    return {str(k): int(counts[k]) for k in sorted(counts.index)}


def untrusted_counts(df: pd.DataFrame) -> dict[str, int]:
    """Rows per executor other than serial: the rows whose timings are not trusted."""
    return {k: n for k, n in executor_counts(df).items() if k != SERIAL}


def counts_text(counts: Mapping[str, int]) -> str:
    """``12 row(s) from the dask executor and 3 from the process executor``."""
    parts = [f"{n} {'row(s) ' if i == 0 else ''}from the {name} executor"
             for i, (name, n) in enumerate(counts.items())]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


UNTRUSTED_WHY = ("ran beside other cases, contending for cores and memory bandwidth, so their "
                 "timings are not trusted for comparison; only serial timings are")


def untrusted_timing_text(df: pd.DataFrame) -> str | None:
    """One sentence when any row ran on an executor other than serial, else None."""
    counts = untrusted_counts(df)
    if not counts:
        return None
    return (f"Timings of {counts_text(counts)} {UNTRUSTED_WHY}. Their NFE, steps and errors "
            "are unaffected.")


def hardware_labels(df: pd.DataFrame) -> pd.Series:
    """Each row's hardware label, NA where it has none."""
    return _strings(df, "hardware")


def machine_labels(df: pd.DataFrame) -> pd.Series:
    """Each row's machine: its hardware label without the GPU the label ends with (the
    row's ``gpu_name``); NA where the row has no label."""
    labels = hardware_labels(df)
    gpu = _strings(df, "gpu_name")
    both = (labels.notna() & gpu.notna()).to_numpy()
    if not both.any():
        return labels
    out = labels.astype(object).to_numpy(copy=True)
    for i in both.nonzero()[0]:
        suffix = f", {gpu.iat[i]}"
        if out[i].endswith(suffix):
            out[i] = out[i][: -len(suffix)]
    return pd.Series(out, index=labels.index, dtype="string")


def hardware_varies(df: pd.DataFrame) -> bool:
    """Whether the rows ran on more than one machine (:func:`machine_labels`; rows without
    a label are on the run's machine, not another)."""
    return bool(machine_labels(df).nunique(dropna=True) > 1)


def hardware_of(df: pd.DataFrame) -> pd.Series:
    """Each row's machine where the run spans several (:data:`UNRECORDED_HARDWARE` for a
    row without a label); ``""`` for every row where it spans one, so nothing changes for
    the usual run."""
    if df is None or len(df) == 0 or not hardware_varies(df):
        return pd.Series("", index=getattr(df, "index", pd.RangeIndex(0)), dtype=object)
    return machine_labels(df).fillna(UNRECORDED_HARDWARE).astype(object)


def hardware_counts(df: pd.DataFrame) -> dict[str, int]:
    """Rows per hardware label, by label (rows without one as :data:`UNRECORDED_HARDWARE`);
    empty when no row has a label (a run written before the column)."""
    labels = hardware_labels(df)
    if labels.notna().sum() == 0:
        return {}
    counts = labels.fillna(UNRECORDED_HARDWARE).value_counts()
    return {str(k): int(counts[k]) for k in sorted(counts.index)}


BACKEND_ORDER = ("host", "tensor")
"""The backends of :mod:`solvers` in the order the report names them; others after, by name."""
BACKEND_LIKE_WITH_LIKE = 'backend = "tensor" in the suite compares like with like'


def backends(df: pd.DataFrame) -> pd.Series:
    """Each row's backend, ``""`` where it has none (absent column, missing or empty)."""
    return _strings(df, "backend").fillna("").astype(str)


def has_backend(df: pd.DataFrame) -> bool:
    """Whether any row records a backend."""
    return df is not None and len(df) > 0 and bool((backends(df) != "").any())


def _backend_rank(name: str) -> tuple[int, str]:
    return (BACKEND_ORDER.index(name) if name in BACKEND_ORDER else len(BACKEND_ORDER), name)


def _values_text(values: list[str]) -> str:
    return ", ".join(values[:-1]) + " and " + values[-1] if len(values) > 1 else "".join(values)


def _batch_text(value: object) -> str:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return str(int(f)) if f.is_integer() else str(value)


def _where(names: pd.Series, by: pd.Series, present: list[str]) -> list[str] | None:
    """Where each backend of ``present`` ran, by the values of ``by`` (batch or problem),
    when those tell the backends apart (no value ran on two of them), else None."""
    owner: dict[str, str] = {}
    parts = []
    for name in present:
        values = sorted(set(by[(names == name).to_numpy()].dropna().astype(str)),
                        key=lambda v: (_batch_sort(v), v))
        if not values or any(owner.setdefault(v, name) != name for v in values):
            return None
        parts.append(_values_text(values))
    return parts


def _batch_sort(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("inf")


def mixed_backends(df: pd.DataFrame, key: str = "series") -> dict[str, str]:
    """Per solver (``key``'s value without a bracketed variant: ``dopri5``, ``dopri5 · pid``)
    whose rows ran on more than one backend, where each ran: ``on host at batch 1 and on
    tensor at batch 1000``, by batch size where that tells them apart, else by problem, else
    by count. Rows without a backend are left out."""
    if df is None or len(df) == 0:
        return {}
    names = backends(df)
    rows = df[(names != "").to_numpy()]
    if rows.empty:
        return {}
    label = (rows[key] if key in rows else rows["solver"]).astype("string").fillna("unknown")
    base = label.astype(str).str.split(" [", n=1, regex=False).str[0]
    out: dict[str, str] = {}
    for solver, mine in rows.groupby(base.to_numpy(), sort=True):
        present = sorted(set(backends(mine)), key=_backend_rank)
        if len(present) < 2:
            continue
        for column, word in (("batch", "at batch"), ("problem", "for")):
            if column not in mine:
                continue
            values = mine[column].astype(object).map(
                lambda v: None if v is None or v is pd.NA or v != v else _batch_text(v))
            got = _where(backends(mine), values, present)
            if got is not None:
                out[str(solver)] = _values_text([f"on {b} {word} {w}"
                                                 for b, w in zip(present, got, strict=True)])
                break
        else:
            counts = backends(mine).value_counts()
            out[str(solver)] = _values_text([f"on {b} in {int(counts[b])} case(s)"
                                             for b in present])
    return out


def mixed_backend_text(df: pd.DataFrame, key: str = "series") -> str | None:
    """One sentence when a solver's rows ran on more than one backend (:func:`mixed_backends`),
    else None: its timings across those cases (batch sizes, problems) mix the host's Python
    floats with torch tensors."""
    mixed = mixed_backends(df, key)
    if not mixed:
        return None
    who = "; ".join(f"{solver} ran {where}" for solver, where in mixed.items())
    return (f"Timings mix arithmetic backends: {who}. The host backend (Python floats, chosen "
            "automatically for a small float64 CPU state with no gradient recorded) takes the "
            "same steps as the tensor backend (torch tensors) but is faster at batch 1, so "
            "these times across batch sizes (or problems) compare the two backends as well as "
            f"the sizes; {BACKEND_LIKE_WITH_LIKE}.")
