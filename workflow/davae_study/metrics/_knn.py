"""Exact Euclidean k-nearest neighbours shared by LISI and graph connectivity."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors


def knn(x: np.ndarray, k: int, *, n_jobs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest *other* cells of every cell: ``(distances, indices)``, each ``(n, k)``, by distance.

    The cell itself is removed by index (a duplicate of it stays a neighbour at distance 0).
    """
    n = x.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k={k} neighbours need at least k + 1 cells, got {n}")
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="auto", n_jobs=n_jobs).fit(x)
    dist, idx = nn.kneighbors(x)
    self_pos = idx == np.arange(n)[:, None]
    # rows where the cell itself was not returned (ties among >k+1 duplicates): drop the last column instead
    missing = ~self_pos.any(axis=1)
    self_pos[missing, -1] = True
    keep = ~self_pos
    return dist[keep].reshape(n, k), idx[keep].reshape(n, k)
