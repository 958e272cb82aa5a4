"""Prepare one application's data for integration: filter, normalise, log, select features.

The output follows the ``prepared.h5ad`` contract of docs/CONTRACTS.md: log-normalised expression of the
selected genes in ``X``, raw counts of the same genes in ``layers['counts']``, ``obs['batch']`` (and
``obs['cell_type']`` where known) as categoricals, parameters and provenance in ``uns['prepare']``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

__all__ = ["prepare", "check_raw_input"]


def check_raw_input(adata: ad.AnnData, batch_key: str = "batch") -> None:
    """Raise a one-line ValueError when ``adata`` cannot be prepared for integration."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"input is empty ({adata.n_obs} cells x {adata.n_vars} genes); check the reader's filters")
    if batch_key not in adata.obs:
        raise ValueError(f"obs has no {batch_key!r} column; the reader must set obs['{batch_key}']")
    if adata.obs[batch_key].isna().any():
        raise ValueError(f"{int(adata.obs[batch_key].isna().sum())} cells have no batch; drop them or give them one")
    if adata.obs[batch_key].nunique() < 2:
        raise ValueError(f"only one batch ({adata.obs[batch_key].iloc[0]!r}): integration needs at least two; check input.params")
    data = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if not np.all(np.isfinite(data)):
        raise ValueError("input holds NaN or infinite values; give raw counts (or TPM)")
    if data.size and data.min() < 0:
        raise ValueError("input holds negative values; give raw counts (or TPM), not scaled or log data")


def prepare(
    adata: ad.AnnData,
    *,
    n_top_genes: int = 2000,
    target_sum: float | None = 1e4,
    normalize_per_batch: bool = False,
    hvg_flavor: str = "seurat",
    min_cells: int = 3,
    min_genes: int = 1,
    provenance: Mapping[str, Any] | None = None,
) -> ad.AnnData:
    """Filter, normalise, log-transform and select highly variable genes batch-aware.

    Parameters
    ----------
    adata
        Raw counts (or TPM, ``uns['counts_kind'] == 'tpm'``) with ``obs['batch']``; not modified.
    n_top_genes
        Number of genes kept, ranked first by the number of batches that call them variable (scanpy's
        ``highly_variable_genes(batch_key=...)``, as DAVAE's released preprocessing does), then by
        normalised dispersion. All genes are kept when there are no more than this.
    target_sum
        Counts per cell after normalisation (1e4: scanpy's default; 1e6: CPM as in DAVAE's release).
        ``None``: no depth normalisation (for TPM input), unless ``normalize_per_batch``.
    normalize_per_batch
        With ``target_sum=None``, scale each cell to the median depth of its own batch.
    hvg_flavor
        ``seurat`` (on log data, the release's choice) or ``seurat_v3`` / ``cell_ranger``.
    min_cells, min_genes
        Genes seen in fewer cells, and cells with fewer genes, are dropped before everything else.
    provenance
        Extra entries (source files, checksums) recorded in ``uns['prepare']``.
    """
    check_raw_input(adata)
    adata = adata.copy()
    if sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    else:
        adata.X = np.asarray(adata.X, dtype=np.float32)
    n_in = adata.shape
    sc.pp.filter_cells(adata, min_genes=min_genes)
    sc.pp.filter_genes(adata, min_cells=min_cells)
    if adata.n_vars == 0:
        raise ValueError(f"no gene is seen in {min_cells} cells; lower prepare.min_cells")
    check_raw_input(adata)  # filtering may have emptied a batch
    adata.layers["counts"] = adata.X.copy()

    if target_sum is not None or normalize_per_batch:
        adata.X = _normalize(adata.X, adata.obs["batch"].to_numpy(), target_sum, normalize_per_batch)
    sc.pp.log1p(adata)

    flavor_kwargs: dict[str, Any] = {}
    if hvg_flavor == "seurat_v3":
        flavor_kwargs["layer"] = "counts"
    if n_top_genes < adata.n_vars:
        sc.pp.highly_variable_genes(
            adata, n_top_genes=n_top_genes, flavor=hvg_flavor, batch_key="batch", subset=False, **flavor_kwargs
        )
        adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    else:
        adata.var["highly_variable"] = True
        adata.var["highly_variable_nbatches"] = adata.obs["batch"].nunique()

    adata.obs["batch"] = adata.obs["batch"].astype("category").cat.remove_unused_categories()
    if "cell_type" in adata.obs:
        adata.obs["cell_type"] = adata.obs["cell_type"].astype("category").cat.remove_unused_categories()
    if sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.uns.pop("log1p", None)
    adata.uns.pop("hvg", None)
    adata.uns["prepare"] = {
        "n_top_genes": int(n_top_genes),
        "target_sum": float(target_sum) if target_sum is not None else "none",
        "normalize_per_batch": bool(normalize_per_batch),
        "hvg_flavor": hvg_flavor,
        "min_cells": int(min_cells),
        "min_genes": int(min_genes),
        "counts_kind": str(adata.uns.pop("counts_kind", "counts")),
        "input_shape": [int(n_in[0]), int(n_in[1])],
        "output_shape": [int(adata.n_obs), int(adata.n_vars)],
        "provenance": dict(provenance or {}),
    }
    return adata


def _normalize(X, batches: np.ndarray, target_sum: float | None, per_batch: bool):
    """Scale each cell to ``target_sum`` counts (or to the median depth of its batch / of all cells when
    ``target_sum`` is None), keeping sparse input sparse."""
    depth = np.asarray(X.sum(axis=1)).ravel().astype(np.float64)
    if target_sum is not None:
        target = np.full_like(depth, float(target_sum))
    elif per_batch:
        target = pd.Series(depth).groupby(batches).transform("median").to_numpy()
    else:  # pragma: no cover - the caller only normalises with a target or per batch
        target = np.full_like(depth, np.median(depth))
    scale = np.divide(target, depth, out=np.zeros_like(depth), where=depth > 0).astype(np.float32)
    if sp.issparse(X):
        return sp.csr_matrix(sp.diags(scale) @ X, dtype=np.float32)
    return (X * scale[:, None]).astype(np.float32)
