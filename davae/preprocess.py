"""scbean's preprocessing (``davae_preprocessing``) on one AnnData with a batch column."""

from __future__ import annotations

import numpy as np
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

from ._validate import batch_codes, check_matrix


def preprocess(adata: AnnData, batch_key: str = "batch", *, n_top_genes: int = 2000,
               target_sum: float = 1e6) -> AnnData:
    """Per-batch library-size normalisation + ``log1p`` and batch-aware HVG selection.

    Each batch is normalised to ``target_sum`` counts per cell (scbean: CPM, 1e6) and log1p-transformed,
    without scaling. Seurat-flavour highly variable genes are chosen within each batch and genes are
    ranked by the number of batches that chose them (ties by mean normalised dispersion); the top
    ``n_top_genes`` are kept, in their original order.

    Parameters
    ----------
    adata
        Raw counts (or TPM) in ``X``, cells × genes, sparse or dense.
    batch_key
        Column of ``adata.obs`` with the batch of each cell.
    n_top_genes, target_sum
        Number of genes kept and per-cell total after normalisation.

    Returns
    -------
    A new AnnData: ``X`` log-normalised selected genes (float32, CSR when the input was sparse),
    ``layers['counts']`` the input values of those genes, the input's ``obs`` and ``var`` plus
    ``var['highly_variable_nbatches']``.
    """
    check_matrix(adata.X)
    codes, cats = batch_codes(adata, batch_key)
    totals = np.asarray(adata.X.sum(1)).ravel()
    if (totals <= 0).any():
        raise ValueError(f"{int((totals <= 0).sum())} cells have no counts; filter them (sc.pp.filter_cells(min_counts=1))")
    ad = AnnData(X=adata.X.astype(np.float32) if sp.issparse(adata.X) else np.asarray(adata.X, dtype=np.float32),
                 obs=adata.obs.copy(), var=adata.var.copy())
    if sp.issparse(ad.X):
        ad.X = sp.csr_matrix(ad.X)
    ad.layers["counts"] = ad.X.copy()
    scale = target_sum / totals
    if sp.issparse(ad.X):
        ad.X = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ ad.X)
        ad.X.data = np.log1p(ad.X.data)
    else:
        ad.X = np.log1p(ad.X * scale[:, None].astype(np.float32))
    # per-cell normalisation is the same whether done per batch or jointly; HVG is per batch
    n_top = min(int(n_top_genes), ad.n_vars)
    hv = ad.copy()
    hv.obs["_davae_batch"] = np.asarray(cats)[codes]
    # genes constant in a batch make seurat dispersions NaN; scanpy handles them (never selected there)
    sc.pp.highly_variable_genes(hv, flavor="seurat", n_top_genes=n_top, batch_key="_davae_batch")
    nb = hv.var["highly_variable_nbatches"].to_numpy()
    disp = hv.var["dispersions_norm"].to_numpy(dtype=float)
    disp = np.where(np.isfinite(disp), disp, -np.inf)
    order = np.lexsort((-disp, -nb))  # primary: n batches desc, secondary: dispersion desc
    keep = np.sort(order[:n_top])
    out = ad[:, keep].copy()
    out.var["highly_variable"] = True
    out.var["highly_variable_nbatches"] = nb[keep]
    out.uns["davae_preprocess"] = {"target_sum": float(target_sum), "n_top_genes": int(n_top_genes),
                                   "batch_key": batch_key}
    return out
