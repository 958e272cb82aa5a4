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
    X = adata.X
    if scale:  # scaling densifies and rewrites X: only then is a copy needed
        X = sc.pp.scale(X, max_value=10, copy=True)
    # PCA of the matrix itself (sparse input stays sparse: scanpy centres implicitly), no copy of the AnnData
    x_pca, _, variance_ratio, _ = sc.pp.pca(X, n_comps=n_comps, random_state=seed, svd_solver="arpack",
                                            return_info=True)
    out = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy())
    out.obsm["X_emb"] = np.asarray(x_pca, dtype=np.float32)
    out.uns["pca"] = {"variance_ratio": np.asarray(variance_ratio)}
    return out
