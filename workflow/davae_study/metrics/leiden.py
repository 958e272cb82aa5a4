"""Leiden NMI / ARI at the best resolution (scIB's ``cluster_optimal_resolution`` + ``nmi`` + ``ari``;
Luecken et al. 2022).

Protocol, as scIB runs it on an embedding: the neighbour graph of ``sc.pp.neighbors`` (``n_neighbors`` = 15
including the cell itself, UMAP connectivities as edge weights; here the neighbour search is exact, so
the graph does not depend on an approximate index); Leiden (``leidenalg``, RBConfiguration quality, edge
weights, iterated to convergence, ``seed``, the directed graph ``scanpy.tl.leiden`` builds) at resolutions
0.1, 0.2, …, 2.0; the resolution whose clustering has the highest NMI with the cell types (arithmetic
normalisation; the first one on ties) is kept, and NMI and ARI are both reported for that one clustering.
The graph is built once; only Leiden runs per resolution.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from ._table import as_embedding, codes, nan_row, row

#: scIB's default resolutions (``get_resolutions(n=10, max=2)``): 0.1, 0.2, ..., 2.0.
RESOLUTIONS = tuple(x / 10 for x in range(1, 21))


def neighbour_graph(x: np.ndarray, n_neighbors: int = 15):
    """Symmetric UMAP connectivities of the exact ``n_neighbors``-NN graph (self included), as
    ``sc.pp.neighbors(transformer='sklearn')`` computes them (CSR, ``n x n``)."""
    import anndata as ad
    import scanpy as sc

    from ..jitcache import jit_cache

    n = x.shape[0]
    tmp = ad.AnnData(obs={"i": np.arange(n)}, obsm={"X_emb": np.asarray(x, dtype=np.float32)})
    with jit_cache():  # umap-learn's numba code compiled once, not in every job
        sc.pp.neighbors(tmp, n_neighbors=min(n_neighbors, n), use_rep="X_emb", transformer="sklearn")
    return tmp.obsp["connectivities"].tocsr()


def _igraph(conn):
    """Weighted directed igraph of a sparse adjacency (scanpy's ``get_igraph_from_adjacency``)."""
    import igraph as ig

    src, dst = conn.nonzero()
    g = ig.Graph(n=conn.shape[0], edges=np.column_stack([src, dst]).tolist(), directed=True)
    g.es["weight"] = np.asarray(conn[src, dst]).ravel().tolist()
    return g


def leiden_labels(graph, resolution: float, seed: int = 0) -> np.ndarray:
    """Leiden communities of an igraph ``graph`` (edge attribute ``weight``) at one resolution."""
    import leidenalg

    part = leidenalg.find_partition(graph, leidenalg.RBConfigurationVertexPartition, weights="weight",
                                    resolution_parameter=float(resolution), n_iterations=-1, seed=int(seed))
    return np.asarray(part.membership, dtype=np.int64)


def leiden_nmi_ari(x, cell_type, *, n_neighbors: int = 15, resolutions=None, seed: int = 0) -> dict:
    """NMI and ARI of the Leiden clustering, at the resolution maximising NMI with the cell types.

    Parameters
    ----------
    x
        Embedding, cells x dims.
    cell_type
        Cell type per cell; every cell is clustered, only labelled ones are scored.
    n_neighbors
        Neighbours of the graph, the cell itself included (scanpy's convention).
    resolutions
        Leiden resolutions to try (default :data:`RESOLUTIONS`, 0.1 to 2.0 by 0.1), in order; on ties the
        first is kept.
    seed
        Leiden's seed (the exact graph has no randomness).

    Returns
    -------
    ``{"nmi", "ari", "resolution", "n_clusters", "n", "profile"}``: NMI and ARI at the chosen resolution,
    the number of clusters there, the number of labelled cells scored, and ``profile`` = NMI per resolution
    (a dict). Raises ``ValueError`` without labels, with fewer than two cell types or fewer than three cells.
    """
    x = as_embedding(x)
    ct, types = codes(cell_type)
    lab = ct >= 0
    if not lab.any():
        raise ValueError("no cell-type labels: Leiden NMI/ARI need obs cell types")
    if np.unique(ct[lab]).size < 2:
        raise ValueError("one cell type only: NMI/ARI against the cell types are not informative")
    if x.shape[0] < 3:
        raise ValueError(f"Leiden NMI/ARI need at least three cells, got {x.shape[0]}")
    res = list(RESOLUTIONS if resolutions is None else resolutions)
    if not res:
        raise ValueError("resolutions is empty; pass at least one Leiden resolution (scIB: 0.1 to 2.0)")
    g = _igraph(neighbour_graph(x, n_neighbors))
    truth = ct[lab]
    best = None
    profile = {}
    for r in res:
        clusters = leiden_labels(g, r, seed)
        nmi = float(normalized_mutual_info_score(truth, clusters[lab], average_method="arithmetic"))
        profile[float(r)] = nmi
        if best is None or nmi > best[1]:  # strict: the first resolution wins ties (scIB)
            best = (float(r), nmi, clusters)
    r, nmi, clusters = best
    ari = float(adjusted_rand_score(truth, clusters[lab]))
    return {"nmi": nmi, "ari": ari, "resolution": r, "n_clusters": int(np.unique(clusters).size),
            "n": int(lab.sum()), "profile": profile}


def leiden_rows(x, cell_type, *, n_neighbors: int = 15, resolutions=None, seed: int = 0) -> list[dict]:
    """``nmi_leiden`` and ``ari_leiden`` tidy rows (group ``all``); the note names the chosen resolution.

    Without labels or with a single cell type both rows are NaN with the reason.
    """
    ct, types = codes(cell_type)
    lab = ct >= 0
    n_lab = int(lab.sum())
    if len(types) == 0 or not lab.any():
        why = "no cell-type labels"
    elif np.unique(ct[lab]).size < 2:
        why = "one cell type only: NMI/ARI against the cell types are not informative"
    elif len(ct) < 3:
        why = "fewer than three cells"
    else:
        why = ""
    if why:
        return [nan_row(m, "all", n_lab, why) for m in ("nmi_leiden", "ari_leiden")]
    out = leiden_nmi_ari(x, cell_type, n_neighbors=n_neighbors, resolutions=resolutions, seed=seed)
    res = list(out["profile"])
    note = (f"Leiden resolution {out['resolution']:g} ({out['n_clusters']} clusters): best NMI of "
            f"{len(res)} resolutions {min(res):g}-{max(res):g}")
    return [row("nmi_leiden", "all", out["nmi"], out["n"], note),
            row("ari_leiden", "all", out["ari"], out["n"], note)]
