"""Cluster-centre initialisation for DESC: community detection on a kNN graph of the encoder features.

The original runs ``scanpy.tl.louvain`` (``louvain`` package) on ``sc.pp.neighbors(n_neighbors=10)`` of the
pretrained encoder's features and takes each community's mean as its centre. The ``louvain`` package is
deprecated and not installed here, so this uses Leiden (``scanpy.tl.leiden``, ``leidenalg``, the same
RBConfiguration quality function and resolution), which refines Louvain's communities and guarantees
connected ones. Above ``max_cells`` cells the graph is built on a random subsample, as in DESC (200k).
"""

from __future__ import annotations

import warnings

import numpy as np


def leiden_labels(features: np.ndarray, resolution: float, n_neighbors: int = 10, seed: int = 0) -> np.ndarray:
    """Leiden communities (integers 0..k-1) of the ``n_neighbors``-NN graph of ``features``."""
    import anndata as ad
    import scanpy as sc

    from ..jitcache import jit_cache

    tmp = ad.AnnData(np.asarray(features, dtype=np.float32))
    with jit_cache():  # umap-learn's numba code compiled once, not in every job
        sc.pp.neighbors(tmp, n_neighbors=n_neighbors, use_rep="X", random_state=seed)
    with warnings.catch_warnings():  # scanpy announces a future default flavour; we pin leidenalg
        warnings.simplefilter("ignore", FutureWarning)
        sc.tl.leiden(tmp, resolution=resolution, random_state=seed, flavor="leidenalg", key_added="c")
    return tmp.obs["c"].astype(int).to_numpy()


def cluster_means(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean feature vector of every label 0..k-1 (row j = label j)."""
    k = int(labels.max()) + 1
    sums = np.zeros((k, features.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, features)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return (sums / counts[:, None]).astype(np.float32)


def init_centres(features: np.ndarray, resolution: float = 0.8, n_neighbors: int = 10, seed: int = 0,
                 max_cells: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Initial labels for every cell and cluster centres, from Leiden on (a subsample of) ``features``.

    Cells outside the subsample (only above ``max_cells``) get the label of their nearest centre.

    Raises
    ------
    ValueError
        When Leiden finds a single community (resolution too low).
    """
    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    if n > max_cells:
        sub = np.sort(np.random.default_rng(seed).choice(n, max_cells, replace=False))
    else:
        sub = np.arange(n)
    labels_sub = leiden_labels(features[sub], resolution, n_neighbors, seed)
    if np.unique(labels_sub).size <= 1:
        raise ValueError(
            f"DESC init: Leiden found one cluster at resolution={resolution}; raise 'resolution' in the config"
        )
    centres = cluster_means(features[sub], labels_sub)
    if sub.size == n:
        return labels_sub, centres
    labels = np.empty(n, dtype=int)
    labels[sub] = labels_sub
    rest = np.setdiff1d(np.arange(n), sub)
    for s in range(0, rest.size, 65536):
        block = features[rest[s : s + 65536]]
        d2 = ((block[:, None, :] - centres[None]) ** 2).sum(-1)
        labels[rest[s : s + 65536]] = d2.argmin(1)
    return labels, centres
