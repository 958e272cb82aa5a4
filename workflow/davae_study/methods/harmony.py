"""Harmony (Korsunsky et al. 2019, ``harmonypy``) on the PCA of the prepared matrix.

Not in the DAVAE paper; included as the field's most-used reference integration. PCA is scanpy's
(``sc.pp.pca``: implicit centring, no scaling, sparse input stays sparse), then ``harmonypy.run_harmony``
corrects the PCs for ``obs['batch']``.

Params (config ``methods: harmony: params:``), defaults are harmonypy's unless stated:

n_pcs : int, default 50
    Principal components computed and corrected; capped at min(n_cells, n_genes) - 1 (the value used is
    recorded in ``uns['harmony']['n_pcs']``). Same PCA as the RAW row (``methods/pca.py``: arpack, no scaling).
theta : float, default 2.0
    Diversity penalty (higher = stronger mixing).
lamb : float or None, default None
    Ridge penalty; None estimates it per cluster (harmonypy >= 2).
sigma : float, default 0.1
    Soft-clustering kernel width.
nclust : int or None, default None
    Number of Harmony clusters; None = min(n_cells / 30, 100).
max_iter : int, default 10
    Maximum Harmony iterations (``max_iter_harmony``).
ncores : int, default 0
    Threads for harmonypy's C++ core; 0 = one per physical core.

Output
------
obsm['X_emb'] : float32 (n_cells, n_pcs), Harmony-corrected PCs. obsm['X_pca'] : the uncorrected PCs.
uns['harmony'] : n_pcs used, number of Harmony clusters and iterations run.
No corrected expression (Harmony corrects the embedding only). ``device`` is ignored (CPU).
"""

from __future__ import annotations

import anndata as ad
import numpy as np

DEFAULTS: dict = {
    "n_pcs": 50,
    "theta": 2.0,
    "lamb": None,
    "sigma": 0.1,
    "nclust": None,
    "max_iter": 10,
    "ncores": 0,
}


def _resolve_params(params: dict, defaults: dict, method: str) -> dict:
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise TypeError(f"{method}: unknown param(s) {unknown}; valid params are {sorted(defaults)}")
    return {**defaults, **params}


def pca(X, n_pcs: int, seed: int = 0) -> np.ndarray:
    """Top ``n_pcs`` principal components of ``X`` (cells x genes, sparse or dense), float32."""
    import scanpy as sc

    return np.asarray(sc.pp.pca(X, n_comps=n_pcs, random_state=seed, svd_solver="arpack"), dtype=np.float32)


def run(adata: ad.AnnData, *, seed: int = 0, device: str = "auto", **params) -> ad.AnnData:
    """Harmony-correct the PCA of ``adata`` for ``obs['batch']``; see the module docstring for params.

    Returns
    -------
    A new AnnData with ``adata``'s obs and var, ``obsm['X_emb']`` (corrected PCs) and ``obsm['X_pca']``.
    """
    import harmonypy

    p = _resolve_params(params, DEFAULTS, "harmony")
    if "batch" not in adata.obs:
        raise ValueError("harmony: adata.obs['batch'] is missing; run the prepare step first")
    n_pcs = min(int(p["n_pcs"]), adata.n_obs - 1, adata.n_vars - 1)
    if n_pcs < 2:
        raise ValueError(f"harmony: needs at least 3 cells and 3 genes, got {adata.shape}")

    Z = pca(adata.X, n_pcs, seed)
    meta = adata.obs[["batch"]].copy()
    meta["batch"] = meta["batch"].astype(str)
    ho = harmonypy.run_harmony(
        Z,
        meta,
        "batch",
        theta=p["theta"],
        lamb=p["lamb"],
        sigma=p["sigma"],
        nclust=p["nclust"],
        max_iter_harmony=int(p["max_iter"]),
        verbose=False,
        random_state=int(seed),
        ncores=int(p["ncores"]),
    )
    Z_corr = np.asarray(ho.Z_corr, dtype=np.float32)
    if Z_corr.shape != Z.shape:  # older harmonypy returned PCs x cells
        Z_corr = Z_corr.T

    result = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy())
    result.obsm["X_emb"] = np.ascontiguousarray(Z_corr)
    result.obsm["X_pca"] = Z
    result.uns["harmony"] = {"n_pcs": int(n_pcs), "n_clusters": int(ho.K), "iterations": len(ho.objective_harmony)}
    return result
