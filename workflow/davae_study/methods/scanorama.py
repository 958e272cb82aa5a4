"""Scanorama (Hie, Bryson & Berger 2019) behind the study's method contract.

Runs ``scanorama.correct_scanpy(..., return_dimred=True)`` once on the per-batch pieces of the prepared
matrix, which yields both the integrated low-dimensional embedding and the corrected expression.

Params (config ``methods: scanorama: params:``), defaults are Scanorama's own:

knn : int, default 20
    Nearest neighbours used to find mutual matches between batches.
sigma : float, default 15
    Bandwidth of the Gaussian kernel that smooths the correction vectors.
alpha : float, default 0.1
    Minimum alignment score for two batches to be merged.
batch_size : int, default 5000
    Cells per block when computing correction vectors (memory, not results).
dimred : int, default 100
    Dimension of the integrated embedding (randomised SVD); capped at min(n_cells, n_genes) - 1 (the value
    used is recorded in ``uns['scanorama']['dimred']``).
approx : bool, default True
    Approximate nearest neighbours (Annoy) instead of exact ones.
verbose : int, default 0
    Scanorama's own logging to stderr (0 = silent).

Output (contract in docs/CONTRACTS.md)
--------------------------------------
obsm['X_emb'] : float32 (n_cells, dimred), Scanorama's integrated embedding.
layers['corrected'] : CSR float32 (n_cells, n_genes), same genes and order as the input ``var``. Scanorama
    L2-normalises every cell before correcting, so values are on that scale, not log-normalised counts.

Notes
-----
Scanorama reorders genes alphabetically internally; the corrected matrix is mapped back to the input's
gene order here. Cells are split by ``obs['batch']`` (categories in their categorical order) and put back
in the input's order. ``seed`` seeds Scanorama's ``numpy``/``random`` calls; ``device`` is ignored
(Scanorama is CPU-only).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

DEFAULTS: dict = {
    "knn": 20,
    "sigma": 15.0,
    "alpha": 0.1,
    "batch_size": 5000,
    "dimred": 100,
    "approx": True,
    "verbose": 0,
}


def _resolve_params(params: dict, defaults: dict, method: str) -> dict:
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise TypeError(f"{method}: unknown param(s) {unknown}; valid params are {sorted(defaults)}")
    return {**defaults, **params}


def _batch_pieces(adata: ad.AnnData) -> tuple[list[np.ndarray], list]:
    """Row indices of each batch (categorical order, empty categories dropped) and the batch names."""
    if "batch" not in adata.obs:
        raise ValueError("scanorama: adata.obs['batch'] is missing; run the prepare step first")
    batch = pd.Categorical(adata.obs["batch"])
    names = [c for c in batch.categories if (batch == c).any()]
    return [np.flatnonzero(batch == c) for c in names], names


def _as_csr_or_dense(X) -> sp.csr_matrix | np.ndarray:
    """Scanorama accepts only CSR matrices or ndarrays."""
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float32)
    return np.asarray(X, dtype=np.float32)


def run(adata: ad.AnnData, *, seed: int = 0, device: str = "auto", **params) -> ad.AnnData:
    """Integrate ``adata`` with Scanorama; see the module docstring for params and outputs.

    Parameters
    ----------
    adata
        Prepared AnnData: ``X`` log-normalised features (CSR or dense), ``obs['batch']``.
    seed
        Seed for Scanorama's random number generators.
    device
        Ignored (CPU-only method); accepted for the common contract.
    **params
        See module docstring.

    Returns
    -------
    A new AnnData with ``adata``'s obs and var, ``obsm['X_emb']`` and ``layers['corrected']``.
    """
    import scanorama  # heavy import, only when the method runs

    p = _resolve_params(params, DEFAULTS, "scanorama")
    if not adata.var_names.is_unique:
        raise ValueError("scanorama: var_names must be unique; call adata.var_names_make_unique() first")
    dimred = min(int(p["dimred"]), adata.n_obs - 1, adata.n_vars - 1)
    if dimred < 2:
        raise ValueError(f"scanorama: needs at least 3 cells and 3 genes, got {adata.shape}")

    X = _as_csr_or_dense(adata.X)
    pieces, names = _batch_pieces(adata)
    adatas = [ad.AnnData(X=X[idx], var=pd.DataFrame(index=adata.var_names.copy())) for idx in pieces]

    out = scanorama.correct_scanpy(
        adatas,
        return_dimred=True,
        knn=int(p["knn"]),
        sigma=float(p["sigma"]),
        alpha=float(p["alpha"]),
        batch_size=int(p["batch_size"]),
        dimred=dimred,
        approx=bool(p["approx"]),
        verbose=p["verbose"],
        ds_names=[str(n) for n in names],
        seed=int(seed),
    )

    # Put the cells back in input order and the genes back in input order.
    order = np.concatenate(pieces)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    emb = np.vstack([np.asarray(a.obsm["X_scanorama"], dtype=np.float32) for a in out])[inverse]
    gene_pos = pd.Index(out[0].var_names).get_indexer(adata.var_names)
    if (gene_pos < 0).any():
        missing = list(adata.var_names[gene_pos < 0][:5])
        raise RuntimeError(f"scanorama: corrected matrix lacks input genes {missing}")
    corrected = sp.vstack([sp.csr_matrix(a.X) for a in out], format="csr")[inverse][:, gene_pos]

    result = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy())
    result.obsm["X_emb"] = emb
    result.layers["corrected"] = sp.csr_matrix(corrected, dtype=np.float32)
    result.uns["scanorama"] = {"dimred": int(dimred), "batches": [str(n) for n in names]}
    return result
