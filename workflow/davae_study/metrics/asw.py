"""Batch ASW within cell types (scIB ``silhouette_batch``; Luecken et al. 2022).

For each cell type with at least two batches (and more cells than batches), the silhouette of every cell
with respect to the *batch* labels is computed inside the type; the score is ``1 - |s|`` averaged per type,
then over types (1 = batches fully mixed within the type).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_samples

from ._table import as_embedding, codes, nan_row, row


def asw_batch(x, batch, cell_type, *, max_cells_per_type: int | None = None, seed: int = 0) -> list[dict]:
    """Per-type and overall (``all``) batch ASW rows; NaN with the reason for types with one batch.

    ``max_cells_per_type`` subsamples large types (uniformly, seeded) to bound the O(n^2) cost; ``None`` keeps
    every cell (scIB's behaviour).
    """
    x = as_embedding(x)
    ct, types = codes(cell_type)
    b, _ = codes(batch)
    rng = np.random.default_rng(seed)
    rows, vals, ns = [], [], []
    for t, name in enumerate(types):
        idx = np.flatnonzero(ct == t)
        nbt = np.unique(b[idx]).size
        if nbt < 2:
            rows.append(nan_row("asw_batch", str(name), idx.size, "cell type in one batch only"))
            continue
        if nbt >= idx.size:
            rows.append(nan_row("asw_batch", str(name), idx.size, "as many batches as cells"))
            continue
        note = ""
        if max_cells_per_type is not None and idx.size > max_cells_per_type:
            idx = np.sort(rng.choice(idx, size=max_cells_per_type, replace=False))
            note = f"subsampled to {max_cells_per_type} cells"
            if np.unique(b[idx]).size < 2:
                rows.append(nan_row("asw_batch", str(name), idx.size, "subsample holds one batch only"))
                continue
        s = silhouette_samples(x[idx], b[idx])
        v = float(np.mean(1.0 - np.abs(s)))
        rows.append(row("asw_batch", str(name), v, idx.size, note))
        vals.append(v)
        ns.append(idx.size)
    if vals:
        skipped = len(types) - len(vals)
        rows.append(row("asw_batch", "all", float(np.mean(vals)), int(sum(ns)),
                        "" if not skipped else f"mean over {len(vals)} of {len(types)} cell types"))
    else:
        why = "no cell type with two or more batches" if len(types) else "no cell-type labels"
        rows.append(nan_row("asw_batch", "all", 0, why))
    return rows
