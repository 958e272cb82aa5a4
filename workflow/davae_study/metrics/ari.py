"""ARI cell type and 1 - ARI batch, following Tran et al. 2020 (Genome Biology 21:12), whose R code is
``ari_calcul_sampled`` in JinmiaoChenLab/Batch-effect-removal-benchmarking.

Per iteration (20): draw ``round(0.8 n_t)`` cells of every cell type without replacement; k-means on the
embedding with k = number of cell types (R ``kmeans(x, centers=k, iter.max=30)``: Hartigan–Wong, one start
from k random cells, at most 30 passes; :mod:`.kmeans`); ARI(cell type, clusters) on all drawn cells; ARI(batch, clusters) on the drawn cells whose
cell type occurs in every batch (of the draw). Report the medians over iterations.

Beyond Tran: designs where no cell type is in every batch (the paper's 293T / Jurkat / 50:50 application,
the demo's *compositions*) would leave 1 − ARI batch undefined. There, the batch ARI of an iteration is the
cell-weighted mean, over the cell types found in at least two batches, of ARI(batch, clusters) among that
type's drawn cells; the ``note`` says so. (Pooling those cells instead would penalise perfect integration,
since batch then predicts cell type.)
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from ._table import as_embedding, codes, nan_row, row
from .kmeans import kmeans_r


def stratified_subsample(labels: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``round(frac * n_t)`` cells of every label ``t`` (R ``round``: halves to even), sorted."""
    out = []
    for t in np.unique(labels):
        pool = np.flatnonzero(labels == t)
        out.append(rng.choice(pool, size=int(np.round(frac * pool.size)), replace=False))
    return np.sort(np.concatenate(out)) if out else np.array([], dtype=np.int64)


def shared_types(labels: np.ndarray, batch: np.ndarray, min_batches: int = 2) -> np.ndarray:
    """Label codes present in at least ``min_batches`` batches."""
    present = [(t, np.unique(batch[labels == t]).size) for t in np.unique(labels)]
    return np.array([t for t, nb in present if nb >= min_batches], dtype=labels.dtype)


def per_type_batch_ari(labels: np.ndarray, batch: np.ndarray, clusters: np.ndarray, types: np.ndarray) -> float:
    """Cell-weighted mean over ``types`` of ARI(batch, clusters) among each type's cells."""
    scores, weights = [], []
    for t in types:
        m = labels == t
        scores.append(adjusted_rand_score(batch[m], clusters[m]))
        weights.append(int(m.sum()))
    return float(np.average(scores, weights=weights)) if scores else np.nan


def common_types(labels: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Label codes present in every batch."""
    sets = [set(np.unique(labels[batch == b])) for b in np.unique(batch)]
    return np.array(sorted(set.intersection(*sets)) if sets else [], dtype=labels.dtype)


def ari_tran(
    x,
    batch,
    cell_type,
    *,
    n_iter: int = 20,
    frac: float = 0.8,
    kmeans_n_init: int = 1,
    kmeans_max_iter: int = 30,
    kmeans_init: str = "random",
    kmeans_algorithm: str = "hartigan-wong",
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """Tran et al.'s sampled ARI: ``ari_celltype`` and ``one_minus_ari_batch`` (medians over iterations).

    Parameters
    ----------
    x
        ``(n, d)`` embedding.
    batch, cell_type
        Labels per cell; cells with a missing cell type are left out.
    n_iter, frac
        Iterations and the stratified fraction drawn per cell type (Tran: 20, 0.8).
    kmeans_n_init, kmeans_max_iter, kmeans_init, kmeans_algorithm
        k-means starts, iterations, initialisation and algorithm (Tran / R defaults: 1 start,
        ``iter.max=30``, random cells as centres, ``"hartigan-wong"``); ``"lloyd"`` runs scikit-learn's
        ``KMeans`` instead (this module before it matched R; ``kmeans_init="k-means++"`` only with it).
    seed
        Seeds both subsampling and k-means.

    Returns
    -------
    Tidy rows (group ``all``) and per-iteration rows (``repeat`` = iteration).
    """
    if kmeans_algorithm not in ("hartigan-wong", "lloyd"):
        raise ValueError(f"kmeans_algorithm must be 'hartigan-wong' or 'lloyd', got {kmeans_algorithm!r}")
    if kmeans_algorithm == "hartigan-wong" and kmeans_init != "random":
        raise ValueError("kmeans_init='k-means++' needs kmeans_algorithm='lloyd' (R's kmeans starts from random cells)")
    x = as_embedding(x)
    ct, types = codes(cell_type)
    b, _ = codes(batch)
    lab = ct >= 0
    n_lab = int(lab.sum())
    if n_lab == 0 or len(types) == 0:
        why = "no cell-type labels"
        return [nan_row("ari_celltype", "all", 0, why), nan_row("one_minus_ari_batch", "all", 0, why)], []
    x, ct, b = x[lab], ct[lab], b[lab]
    k = int(np.unique(ct).size)
    if k < 2:
        why = "one cell type only: ARI against k-means with k=1 is undefined"
        return [nan_row("ari_celltype", "all", n_lab, why), nan_row("one_minus_ari_batch", "all", n_lab, why)], []
    rng = np.random.default_rng(seed)
    ari_ct, ari_b, n_common = np.full(n_iter, np.nan), np.full(n_iter, np.nan), np.zeros(n_iter, dtype=int)
    per_type = common_types(ct, b).size == 0  # no type in every batch: the per-type fallback (module doc)
    for i in range(n_iter):
        sel = stratified_subsample(ct, frac, rng)
        if sel.size <= k:  # R's kmeans needs more points than centres (AS 136: ifault 3)
            continue
        kseed = int(rng.integers(2**31 - 1))
        if kmeans_algorithm == "hartigan-wong":
            clusters = kmeans_r(x[sel], k, rng=np.random.default_rng(kseed), n_init=kmeans_n_init,
                                max_iter=kmeans_max_iter)
        else:
            km = KMeans(n_clusters=k, n_init=kmeans_n_init, max_iter=kmeans_max_iter, init=kmeans_init,
                        random_state=kseed)
            with threadpool_limits(limits=1, user_api="openmp"):  # OpenMP spin-waits thrash on busy machines
                clusters = km.fit_predict(x[sel])
        ari_ct[i] = adjusted_rand_score(ct[sel], clusters)
        if per_type:
            shared = shared_types(ct[sel], b[sel])
            n_common[i] = int(np.isin(ct[sel], shared).sum())
            ari_b[i] = per_type_batch_ari(ct[sel], b[sel], clusters, shared)
            continue
        common = np.isin(ct[sel], common_types(ct[sel], b[sel]))
        n_common[i] = int(common.sum())
        if np.unique(b[sel]).size >= 2 and common.any():
            ari_b[i] = adjusted_rand_score(b[sel][common], clusters[common])
    tidy, reps = [], []
    n_sub = int(sum(int(np.round(frac * (ct == t).sum())) for t in np.unique(ct)))
    if np.isfinite(ari_ct).any():
        tidy.append(row("ari_celltype", "all", float(np.nanmedian(ari_ct)), n_sub,
                        f"median over {np.isfinite(ari_ct).sum()} iterations, k={k}"))
    else:
        tidy.append(nan_row("ari_celltype", "all", n_sub, "too few cells for k-means"))
    if np.isfinite(ari_b).any():
        tidy.append(row("one_minus_ari_batch", "all", float(1.0 - np.nanmedian(ari_b)), int(np.median(n_common)),
                        f"median over {np.isfinite(ari_b).sum()} iterations; " + (
                            "no cell type in every batch: mean per-type ARI over types in >= 2 batches" if per_type
                            else "cell types in every batch")))
    else:
        why = "one batch only" if np.unique(b).size < 2 else "no cell type present in two batches"
        tidy.append(nan_row("one_minus_ari_batch", "all", int(np.median(n_common)), why))
    for i in range(n_iter):
        reps.append({**row("ari_celltype", "all", ari_ct[i], n_sub), "repeat": i})
        reps.append({**row("one_minus_ari_batch", "all", 1.0 - ari_b[i], int(n_common[i])), "repeat": i})
    return tidy, reps
