"""The tidy metrics table shared by every metric: columns, row helpers, label handling."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

COLUMNS = ["application", "method", "metric", "group", "value", "n", "note"]
"""Columns of ``metrics/<method>.tsv`` (docs/CONTRACTS.md)."""

REPEAT_COLUMNS = COLUMNS + ["repeat"]
"""Columns of ``metrics/<method>.repeats.tsv``."""

_METRIC_COLUMNS = ["metric", "group", "value", "n", "note"]


def row(metric: str, group: str, value: float, n: int, note: str = "") -> dict:
    """One tidy row (without application/method, which :func:`evaluate` adds)."""
    return {"metric": metric, "group": group, "value": float(value), "n": int(n), "note": note}


def nan_row(metric: str, group: str, n: int, note: str) -> dict:
    """A NaN row whose ``note`` says why the value could not be computed."""
    return row(metric, group, np.nan, n, note)


def method_notes(adata) -> list[str]:
    """The notes a method left for the tables (``uns['method']['notes']``; docs/CONTRACTS.md)."""
    info = getattr(adata, "uns", {}).get("method", {})
    notes = info.get("notes", []) if isinstance(info, Mapping) else []
    return [notes] if isinstance(notes, str) else [str(n) for n in notes]  # a list, or an array read back


def with_notes(table: pd.DataFrame, notes: Iterable[str]) -> pd.DataFrame:
    """``table`` with ``notes`` (a method's notes, ``uns['method']['notes']``) appended to every row's ``note``,
    after its own, separated by "; "."""
    extra = "; ".join(str(n) for n in notes if str(n))
    if not extra or table.empty:
        return table
    own = table["note"].fillna("").astype(str)
    return table.assign(note=own.where(own == "", own + "; ") + extra)


def frame(rows: Iterable[dict], repeats: bool = False) -> pd.DataFrame:
    """Rows -> DataFrame with the metric columns (plus ``repeat``) in contract order."""
    cols = _METRIC_COLUMNS + (["repeat"] if repeats else [])
    df = pd.DataFrame(list(rows), columns=cols)
    df["value"] = df["value"].astype(float)
    df["n"] = df["n"].astype("int64")
    df["note"] = df["note"].fillna("").astype(str)
    if repeats:
        df["repeat"] = df["repeat"].astype("int64")
    return df


def codes(values) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for missing) and the category names of a label vector."""
    cat = pd.Categorical(pd.Series(values).astype("object").where(pd.notna(values), None))
    return np.asarray(cat.codes, dtype=np.int64), np.asarray(cat.categories, dtype=object)


def as_embedding(x) -> np.ndarray:
    """Dense float64 copy-free view of an embedding; raise a clear error on NaN/inf."""
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"embedding must be 2-D (cells x dims), got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("embedding contains NaN or inf; fix the method output before evaluating")
    return x
