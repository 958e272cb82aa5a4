"""Uncorrected PCA ("RAW"): the reference row every integration method is compared against.

Params
------
n_comps : int, default 50
    Principal components (capped at min(cells, genes) - 1).
scale : bool, default False
    z-score genes first (clipped at 10, scanpy's convention); the paper's RAW used log data as is.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc


def run(adata: ad.AnnData, *, seed: int = 0, device: str = "auto", n_comps: int = 50, scale: bool = False) -> ad.AnnData:
    n_comps = int(min(n_comps, adata.n_obs - 1, adata.n_vars - 1))
    if n_comps < 2:
        raise ValueError(f"PCA needs at least 3 cells and 3 genes, got {adata.shape}")
    work = adata.copy()
    if scale:
        sc.pp.scale(work, max_value=10)
    sc.pp.pca(work, n_comps=n_comps, random_state=seed, svd_solver="arpack")
    out = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy())
    out.obsm["X_emb"] = np.asarray(work.obsm["X_pca"], dtype=np.float32)
    out.uns["pca"] = {"variance_ratio": work.uns["pca"]["variance_ratio"]}
    return out
