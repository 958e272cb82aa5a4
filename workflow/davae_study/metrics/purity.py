"""kNN cell-type purity: a clustering-free conservation score (docs/metrics.md).

For every labelled cell, the fraction of its ``k`` nearest *other* cells (exact Euclidean on the embedding)
that carry the same cell type; ``all`` is the mean over labelled cells, a type's row the mean over its cells
(1 = every neighbourhood is pure). Unlabelled cells stay in the neighbourhoods (as a neighbour they never
match) but are not scored.
"""

from __future__ import annotations

import numpy as np

from ._knn import knn
from ._table import as_embedding, codes, nan_row, row


def purity_per_cell(idx: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-cell fraction of neighbours ``idx`` (``(n, k)``) sharing the cell's integer label (-1 = missing,
    never a match; a missing cell gets NaN)."""
    same = (labels[idx] == labels[:, None]) & (labels[:, None] >= 0)
    out = same.mean(axis=1)
    out[labels < 0] = np.nan
    return out


def knn_purity(x, cell_type, k: int = 15, *, n_jobs: int | None = None) -> list[dict]:
    """Per-type and overall (``all``) kNN purity rows (metric ``knn_purity``).

    Parameters
    ----------
    x
        Embedding, cells x dims.
    cell_type
        Cell-type label per cell (missing values allowed: those cells are not scored).
    k
        Neighbours per cell, the cell itself excluded.
    n_jobs
        Threads of the neighbour search (scikit-learn's ``n_jobs``).

    Returns
    -------
    Tidy rows: one per cell type (its mean purity), then ``all`` (mean over all labelled cells; always the
    last row, also when NaN).
    """
    x = as_embedding(x)
    ct, types = codes(cell_type)
    lab = ct >= 0
    if len(types) == 0 or not lab.any():
        return [nan_row("knn_purity", "all", 0, "no cell-type labels")]
    n = x.shape[0]
    if n <= k:
        return [nan_row("knn_purity", "all", int(lab.sum()), f"too few cells for k={k} neighbours ({n} cells)")]
    _, idx = knn(x, k, n_jobs=n_jobs)
    p = purity_per_cell(idx, ct)
    sums = np.bincount(ct[lab], weights=p[lab], minlength=len(types))
    counts = np.bincount(ct[lab], minlength=len(types))
    rows = [row("knn_purity", str(name), sums[t] / counts[t], counts[t]) for t, name in enumerate(types)
            if counts[t] > 0]
    rows.append(row("knn_purity", "all", float(p[lab].mean()), int(lab.sum()),
                    f"mean over labelled cells, k={k}"))
    return rows
