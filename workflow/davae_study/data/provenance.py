"""Shape checks after every read, and the per-application provenance table.

Each reader calls :func:`shape_check` on every part it reads (one data file or one file group). The check
compares the observed cells / genes / label count with what the paper states (the data table's
``expected:``), writes a row, and warns on a mismatch: reported, never silent, never fatal. The rows travel
in ``adata.uns['provenance']`` and :func:`provenance_table` adds the URL, checksum and download date from
the data table and the lock file; rule ``prepare`` writes them to ``results/<app>/provenance.tsv``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import anndata as ad
import numpy as np
import pandas as pd

from davae_study.data.download import read_lock, sha256sum

__all__ = ["ShapeMismatchWarning", "shape_check", "provenance_table", "rows_to_uns", "rows_from_uns",
           "PROVENANCE_COLUMNS"]

PROVENANCE_COLUMNS = [
    "application", "part", "file", "url", "sha256", "downloaded",
    "cells", "expected_cells", "genes", "expected_genes", "labels", "expected_labels", "status", "note",
]


class ShapeMismatchWarning(UserWarning):
    """Observed data differ from the shape the paper states."""


def _n_labels(adata: ad.AnnData, label_key: str) -> int | None:
    if label_key not in adata.obs:
        return None
    return int(pd.Series(adata.obs[label_key]).dropna().nunique())


def shape_check(
    adata: ad.AnnData,
    part: str,
    files: Mapping[str, str | os.PathLike] | None = None,
    expected: Mapping[str, Any] | None = None,
    *,
    label_key: str = "cell_type",
    note: str = "",
) -> dict[str, Any]:
    """Compare ``adata`` with the stated shape; return a provenance row and warn on a mismatch.

    ``expected`` may hold ``cells``, ``genes``, ``labels`` (missing or null: not checked). ``files`` maps
    data-table keys (``<dataset>/<file>``) to the local paths the part was read from.
    """
    expected = dict(expected or {})
    obs = {"cells": int(adata.n_obs), "genes": int(adata.n_vars), "labels": _n_labels(adata, label_key)}
    diffs = [
        f"{k} {obs[k]} vs stated {expected[k]}"
        for k in ("cells", "genes", "labels")
        if expected.get(k) is not None and obs[k] != int(expected[k])
    ]
    status = "mismatch" if diffs else ("ok" if any(expected.get(k) is not None for k in obs) else "unchecked")
    if diffs:
        warnings.warn(f"{part}: observed shape differs from the paper: {'; '.join(diffs)}", ShapeMismatchWarning,
                      stacklevel=2)
    return {
        "part": part,
        "files": {str(k): str(v) for k, v in (files or {}).items()},
        "cells": obs["cells"], "expected_cells": expected.get("cells"),
        "genes": obs["genes"], "expected_genes": expected.get("genes"),
        "labels": obs["labels"], "expected_labels": expected.get("labels"),
        "status": status,
        "note": "; ".join([*diffs, note] if note else diffs),
    }


def provenance_table(
    rows: list[Mapping[str, Any]] | Mapping[str, Any],
    *,
    application: str,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
    lock_path: str | os.PathLike | None = None,
    hash_files: bool = True,
) -> pd.DataFrame:
    """One line per (part, file): shape check plus URL, sha256 and download date (columns
    :data:`PROVENANCE_COLUMNS`).

    The sha256 is that of the local file as read (computed when ``hash_files``), else the lock file's.
    """
    if isinstance(rows, Mapping):
        rows = rows_from_uns(rows)
    sources = sources or {}
    lock = read_lock(lock_path)
    out = []
    for row in rows:
        files = row.get("files") or {"": ""}
        for role, path in files.items():
            # the data-table key is the path's place under resources/: <dataset>/<file>
            key = "/".join(Path(path).parts[-2:]) if path else role
            key = key if (key in sources or key in lock) else role
            rec = lock.get(key, {})
            sha = sha256sum(path) if (hash_files and path and Path(path).is_file()) else rec.get("sha256")
            out.append({
                "application": application, "part": row["part"], "file": key,
                "url": sources.get(key, {}).get("url", rec.get("url")), "sha256": sha,
                "downloaded": rec.get("date"),
                **{k: row.get(k) for k in ("cells", "expected_cells", "genes", "expected_genes", "labels",
                                           "expected_labels", "status", "note")},
            })
    df = pd.DataFrame(out, columns=PROVENANCE_COLUMNS)
    for c in ("expected_cells", "expected_genes", "labels", "expected_labels"):
        df[c] = df[c].astype("Int64")
    return df


def rows_to_uns(rows: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Store rows in ``uns`` as columns (h5ad-safe: no None, files as 'key=path;...')."""
    df = pd.DataFrame(rows)
    df["files"] = [";".join(f"{k}={v}" for k, v in f.items()) for f in df["files"]]
    return {c: df[c].astype(str).to_numpy() for c in df.columns}


def rows_from_uns(uns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Inverse of :func:`rows_to_uns` (numbers back to int, 'None' back to None)."""
    df = pd.DataFrame({k: np.asarray(v, dtype=str) for k, v in uns.items()})
    rows = []
    for rec in df.to_dict("records"):
        rec = {k: (None if v in ("None", "nan") else v) for k, v in rec.items()}
        for k in ("cells", "expected_cells", "genes", "expected_genes", "labels", "expected_labels"):
            if rec.get(k) is not None:
                rec[k] = int(float(rec[k]))
        rec["files"] = dict(f.split("=", 1) for f in (rec.get("files") or "").split(";") if "=" in f)
        rows.append(rec)
    return rows
