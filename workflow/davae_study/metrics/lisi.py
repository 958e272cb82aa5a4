"""LISI (local inverse Simpson's index; Korsunsky et al. 2019) with the scIB summaries (Luecken et al. 2022).

Per cell: the ``3 * perplexity`` nearest other cells (exact Euclidean, unsquared distances, as harmony's
``compute_lisi`` and scib-metrics' ``lisi_knn``); Gaussian weights ``exp(-beta d)`` with ``beta`` found by
bisection so the weights' entropy equals ``log(perplexity)`` (tolerance 1e-5, at most 50 steps); Simpson's
index ``sum_l (sum of weights of label l)^2``; LISI = 1 / Simpson. Summaries as scIB: ``ilisi`` =
``(median iLISI - 1) / (B - 1)``, ``clisi`` = ``(L - median cLISI) / (L - 1)``, both in [0, 1], higher = better
(batches mixed / cell types kept apart); the raw medians are reported as ``ilisi_median``/``clisi_median``.
"""

from __future__ import annotations

import numpy as np

from ._knn import knn
from ._table import as_embedding, codes, nan_row, row


def neighbour_probabilities(dist: np.ndarray, perplexity: float, tol: float = 1e-5, max_tries: int = 50):
    """Row-wise Gaussian weights ``P`` (rows sum to 1) and entropies ``H`` calibrated to ``perplexity``.

    Vectorised version of harmony's / scib-metrics' per-cell bisection (start ``beta = 1``; double or halve
    until bracketed, then bisect). Rows whose weights all underflow get ``P = 0``, ``H = 0``.
    """
    dist = np.asarray(dist, dtype=np.float64)
    n = dist.shape[0]
    logu = np.log(perplexity)
    beta = np.ones(n)
    bmin = np.full(n, -np.inf)
    bmax = np.full(n, np.inf)

    h, p = hbeta_rows(dist, beta)
    hdiff = h - logu
    active = np.abs(hdiff) > tol
    tries = 0
    while active.any() and tries < max_tries:
        up = active & (hdiff > 0)
        down = active & (hdiff <= 0)
        bmin[up] = beta[up]
        beta[up] = np.where(np.isinf(bmax[up]), beta[up] * 2, (beta[up] + bmax[up]) / 2)
        bmax[down] = beta[down]
        beta[down] = np.where(np.isinf(bmin[down]), beta[down] / 2, (beta[down] + bmin[down]) / 2)
        rows = np.flatnonzero(active)
        h_a, p_a = hbeta_rows(dist[rows], beta[rows])
        h[rows], p[rows] = h_a, p_a
        hdiff = h - logu
        active = np.abs(hdiff) > tol
        tries += 1
    return p, h


def hbeta_rows(dist: np.ndarray, beta: np.ndarray):
    """Normalised weights ``exp(-beta d)`` and their entropy, row-wise (``P = 0``, ``H = 0`` if all underflow)."""
    p = np.exp(-dist * beta[:, None])
    s = p.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(s == 0, 0.0, np.log(s) + beta * (dist * p).sum(axis=1) / s)
        p = np.where(s[:, None] == 0, 0.0, p / s[:, None])
    return h, p


def lisi_per_cell(dist: np.ndarray, idx: np.ndarray, labels: np.ndarray, perplexity: float = 30) -> np.ndarray:
    """Per-cell LISI for integer ``labels`` (codes >= 0) given kNN ``dist``/``idx``; NaN where undefined."""
    p, h = neighbour_probabilities(dist, perplexity)
    n_lab = int(labels.max()) + 1
    onehot = np.eye(n_lab)[labels[idx]]  # (n, k, L)
    mass = np.einsum("nk,nkl->nl", p, onehot)
    simpson = (mass**2).sum(axis=1)
    with np.errstate(divide="ignore"):
        out = 1.0 / simpson
    out[(h == 0) | (simpson == 0)] = np.nan
    return out


def lisi(x, batch, cell_type=None, *, perplexity: float = 30, n_jobs: int | None = None) -> list[dict]:
    """iLISI (batch) and, when labels are given, cLISI (cell type) as tidy rows (group ``all``)."""
    x = as_embedding(x)
    n = x.shape[0]
    k = int(3 * perplexity)
    metrics = ["ilisi", "ilisi_median"] + (["clisi", "clisi_median"] if cell_type is not None else [])
    if n <= k:
        return [nan_row(m, "all", n, f"too few cells for LISI ({n} <= 3 x perplexity = {k})") for m in metrics]
    dist, idx = knn(x, k, n_jobs=n_jobs)
    rows = []
    b, _ = codes(batch)
    nb = np.unique(b).size
    il = lisi_per_cell(dist, idx, b, perplexity)
    med = float(np.nanmedian(il))
    if nb < 2:
        rows.append(nan_row("ilisi", "all", n, "one batch only: iLISI cannot be scaled"))
    else:
        rows.append(row("ilisi", "all", (med - 1) / (nb - 1), n, f"scIB-scaled median, {nb} batches"))
    rows.append(row("ilisi_median", "all", med, n, "raw median iLISI (1 = unmixed)"))
    if cell_type is not None:
        ct, _ = codes(cell_type)
        lab = ct >= 0
        if not lab.any():
            rows += [nan_row(m, "all", 0, "no cell-type labels") for m in ("clisi", "clisi_median")]
        else:
            # unlabelled cells keep their place in neighbourhoods but are not scored (their label is 'missing')
            codes_all = np.where(lab, ct, ct.max() + 1)
            cl = lisi_per_cell(dist, idx, codes_all, perplexity)[lab]
            nl = np.unique(ct[lab]).size
            cmed = float(np.nanmedian(cl))
            if nl < 2:
                rows.append(nan_row("clisi", "all", int(lab.sum()), "one cell type only: cLISI cannot be scaled"))
            else:
                rows.append(row("clisi", "all", (nl - cmed) / (nl - 1), int(lab.sum()),
                                f"scIB-scaled median, {nl} types"))
            rows.append(row("clisi_median", "all", cmed, int(lab.sum()), "raw median cLISI (1 = pure)"))
    return rows
