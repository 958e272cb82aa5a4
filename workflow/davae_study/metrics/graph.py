"""Graph connectivity (scIB; Luecken et al. 2022).

The kNN graph of the embedding (``n_neighbors`` including the cell itself, as scanpy's ``pp.neighbors``;
an edge wherever one cell is among the other's neighbours, i.e. the support of scanpy's symmetric UMAP
connectivities) is restricted to each cell type; the score of a type is the fraction of its cells in the
largest connected component, and ``all`` is the mean over types (1 = every type connected).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ._knn import knn
from ._table import as_embedding, codes, nan_row, row


def knn_graph(x: np.ndarray, n_neighbors: int = 15) -> sp.csr_matrix:
    """Symmetric 0/1 kNN adjacency (``n_neighbors - 1`` other cells per cell, union with the transpose)."""
    n = x.shape[0]
    k = min(n_neighbors - 1, n - 1)
    _, idx = knn(x, k)
    a = sp.csr_matrix((np.ones(idx.size, dtype=np.float32), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    return ((a + a.T) > 0).astype(np.float32).tocsr()


def graph_connectivity(x, cell_type, *, n_neighbors: int = 15) -> list[dict]:
    """Per-type and overall (``all``) graph connectivity rows."""
    x = as_embedding(x)
    ct, types = codes(cell_type)
    if len(types) == 0:
        return [nan_row("graph_connectivity", "all", 0, "no cell-type labels")]
    if x.shape[0] < 2:
        return [nan_row("graph_connectivity", "all", x.shape[0], "fewer than two cells")]
    g = knn_graph(x, n_neighbors)
    rows, vals, ns = [], [], []
    for t, name in enumerate(types):
        idx = np.flatnonzero(ct == t)
        _, lab = connected_components(g[idx][:, idx], directed=False)
        v = float(np.bincount(lab).max() / idx.size)
        rows.append(row("graph_connectivity", str(name), v, idx.size))
        vals.append(v)
        ns.append(idx.size)
    rows.append(row("graph_connectivity", "all", float(np.mean(vals)), int(sum(ns))))
    return rows
