"""Prepare one application's data for integration: filter, normalise, log, select features.

The output follows the ``prepared.h5ad`` contract of docs/CONTRACTS.md: log-normalised expression of the
selected genes in ``X``, raw counts of the same genes in ``layers['counts']``, ``obs['batch']`` (and
``obs['cell_type']`` where known) as categoricals, parameters and provenance in ``uns['prepare']``.

Memory: for sparse input and the ``seurat`` flavour (what the readers give and the study uses) the input
matrix is only read, in blocks of rows: cell and gene filters, depths and the per-batch gene statistics of
the highly-variable-gene selection are computed block by block, and only the selected genes of the kept
cells are copied out (once as counts, once as log-normalised values). The peak is the input plus the
output plus a few blocks; see docs/scaling.md. Dense input and the other flavours take the in-memory path
(scanpy on a full copy).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from copy import deepcopy
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from .genes import find_genes

__all__ = ["prepare", "marker_expression", "check_raw_input"]

# Stored values read per block by the sparse path: ~1M values keep each block's temporaries near 30 MB.
_BLOCK_NNZ = 1 << 20
# scanpy's ``highly_variable_genes(flavor='seurat')`` default number of mean bins.
_N_BINS = 20


def check_raw_input(adata: ad.AnnData, batch_key: str = "batch") -> None:
    """Raise a one-line ValueError when ``adata`` cannot be prepared for integration."""
    _check_cells(adata, batch_key)
    X = adata.X
    data = X.data if sp.issparse(X) else np.asarray(X).reshape(-1)
    finite, low = True, np.inf
    for start in range(0, data.size, _BLOCK_NNZ):  # in blocks: no input-sized temporary
        block = data[start:start + _BLOCK_NNZ]
        finite = finite and bool(np.isfinite(block).all())
        low = min(low, block.min())
    if not finite:
        raise ValueError("input holds NaN or infinite values; give raw counts (or TPM)")
    if data.size and low < 0:
        raise ValueError("input holds negative values; give raw counts (or TPM), not scaled or log data")


def _check_cells(adata: ad.AnnData, batch_key: str = "batch") -> None:
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"input is empty ({adata.n_obs} cells x {adata.n_vars} genes); check the reader's filters")
    if batch_key not in adata.obs:
        raise ValueError(f"obs has no {batch_key!r} column; the reader must set obs['{batch_key}']")
    if adata.obs[batch_key].isna().any():
        raise ValueError(f"{int(adata.obs[batch_key].isna().sum())} cells have no batch; drop them or give them one")
    if adata.obs[batch_key].nunique() < 2:
        raise ValueError(f"only one batch ({adata.obs[batch_key].iloc[0]!r}): integration needs at least two; check input.params")


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
        Raw counts (or TPM, ``uns['counts_kind'] == 'tpm'``) with ``obs['batch']``; not modified, and the
        result shares no array with it. A CSR float32 ``X`` is read without being copied.
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

    Notes
    -----
    Sparse input with ``hvg_flavor='seurat'`` is prepared without copying the input matrix (see the module
    docstring); the selection reproduces scanpy 1.11's ``highly_variable_genes(flavor='seurat',
    batch_key='batch')`` from per-batch sums (tests/test_prepare.py checks genes, statistics and matrices
    against scanpy on real data). ``X`` then keeps the within-row order of the input's indices.
    """
    check_raw_input(adata)
    n_in = adata.shape
    kwargs = dict(n_top_genes=n_top_genes, target_sum=target_sum, normalize_per_batch=normalize_per_batch,
                  min_cells=min_cells, min_genes=min_genes)
    if sp.issparse(adata.X) and hvg_flavor == "seurat":
        adata = _prepare_sparse(adata, **kwargs)
    else:
        adata = _prepare_in_memory(adata, hvg_flavor=hvg_flavor, **kwargs)

    _categorical_obs(adata)
    if sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.uns.pop("log1p", None)
    adata.uns.pop("hvg", None)
    adata.uns["prepare"] = _record(dict(kwargs, hvg_flavor=hvg_flavor), adata.uns.pop("counts_kind", "counts"),
                                   n_in, adata.shape, provenance)
    return adata


def marker_expression(
    adata: ad.AnnData,
    genes: Sequence[str],
    *,
    n_top_genes: int = 2000,
    target_sum: float | None = 1e4,
    normalize_per_batch: bool = False,
    hvg_flavor: str = "seurat",
    min_cells: int = 3,
    min_genes: int = 1,
    provenance: Mapping[str, Any] | None = None,
) -> ad.AnnData:
    """The log-normalised expression :func:`prepare` computes for ``X``, taken before its feature selection,
    of only ``genes``: what the marker figures draw, whether or not a marker is a highly variable gene.

    Takes :func:`prepare`'s keywords, so an application's ``prepare:`` settings pass unchanged; the cells,
    depths and normalisation are prepare's (same filters, same per-cell factors, same functions), hence the
    same cells in the same order as ``prepare(adata, **same)`` and, for a gene it selects, the same values
    as its ``X`` column. ``n_top_genes`` and ``hvg_flavor`` change nothing here.

    Genes are looked up among the genes kept by ``min_cells`` as the figures look them up
    (:func:`davae_study.genes.find_genes`: name, name in any case, ``var['symbol']``); those not found are
    listed in ``uns['markers']['absent']``. Sparse input is read in place in blocks (the cell and gene
    filters and the depths, as :func:`prepare` does) and only the marker columns are copied out, so the peak
    is the input plus a few blocks. Dense input takes the in-memory path.

    Returns
    -------
    AnnData: the kept cells × the found genes (in the order asked, each column once), ``X`` the
    log-normalised values (CSR float32 for sparse input), ``layers['counts']`` their input values, ``var``
    the input's rows of those genes, ``obs`` as :func:`prepare` leaves it, ``uns['markers']`` (``genes``
    asked, ``found`` = the ``var_names`` they matched, ``absent``) and ``uns['prepare']`` (the parameters).
    """
    check_raw_input(adata)
    n_in = adata.shape
    genes = list(dict.fromkeys(str(g) for g in genes))
    kwargs = dict(n_top_genes=n_top_genes, target_sum=target_sum, normalize_per_batch=normalize_per_batch,
                  min_cells=min_cells, min_genes=min_genes)
    if sp.issparse(adata.X):
        X = _csr_float32(adata.X)
        meta = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy())
        meta, cells, kept = _filter_sparse(X, meta, min_cells=min_cells, min_genes=min_genes)
        scale = _sparse_scale(X, cells, kept, meta.obs["batch"].to_numpy(), target_sum, normalize_per_batch)
        n_kept = len(kept)
        matched, columns = _marker_columns(meta.var, genes)
        counts = X[:, kept[columns]] if len(columns) else sp.csr_matrix((X.shape[0], 0), dtype=np.float32)
        if len(cells) < X.shape[0]:
            counts = counts[cells]
        counts = sp.csr_matrix(counts, dtype=np.float32, copy=True)
        out = ad.AnnData(X=_log_normalised(counts, scale), obs=meta.obs, var=meta.var.iloc[columns].copy())
        out.layers["counts"] = counts
    else:
        full = _normalised_in_memory(adata, target_sum=target_sum, normalize_per_batch=normalize_per_batch,
                                     min_cells=min_cells, min_genes=min_genes)
        n_kept = full.n_vars
        matched, columns = _marker_columns(full.var, genes)
        out = full[:, columns].copy()
        out.uns.clear()  # the reader's and scanpy's entries; prepare keeps only its own record
        del full
    if n_top_genes < n_kept:
        out.strings_to_categoricals()  # as prepare's feature selection does (scanpy's HVG call): same obs
    _categorical_obs(out)
    out.uns["markers"] = {"genes": genes, "found": list(matched.values()),
                          "absent": [g for g in genes if g not in matched]}
    out.uns["prepare"] = _record(dict(kwargs, hvg_flavor=hvg_flavor), adata.uns.get("counts_kind", "counts"), n_in,
                                 out.shape, provenance)
    return out


def _marker_columns(var: pd.DataFrame, genes: Sequence[str]) -> tuple[dict[str, str], list[int]]:
    """``({gene: the var_name it matched}, the distinct rows of var in the order asked)`` for the genes found."""
    found = find_genes(var.index, genes, var["symbol"] if "symbol" in var else None)
    return {g: str(var.index[c]) for g, c in found.items()}, list(dict.fromkeys(found.values()))


def _categorical_obs(adata: ad.AnnData) -> None:
    """``obs['batch']`` (and ``obs['cell_type']``) as categoricals without unused categories."""
    adata.obs["batch"] = adata.obs["batch"].astype("category").cat.remove_unused_categories()
    if "cell_type" in adata.obs:
        adata.obs["cell_type"] = adata.obs["cell_type"].astype("category").cat.remove_unused_categories()


def _record(params: Mapping[str, Any], counts_kind: str, n_in: tuple[int, int], n_out: tuple[int, int],
            provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """``uns['prepare']``: the parameters used, shapes in and out, the inputs' provenance."""
    target_sum = params["target_sum"]
    return {
        "n_top_genes": int(params["n_top_genes"]),
        "target_sum": float(target_sum) if target_sum is not None else "none",
        "normalize_per_batch": bool(params["normalize_per_batch"]),
        "hvg_flavor": params["hvg_flavor"],
        "min_cells": int(params["min_cells"]),
        "min_genes": int(params["min_genes"]),
        "counts_kind": str(counts_kind),
        "input_shape": [int(n_in[0]), int(n_in[1])],
        "output_shape": [int(n_out[0]), int(n_out[1])],
        "provenance": dict(provenance or {}),
    }


def _prepare_in_memory(adata: ad.AnnData, *, n_top_genes: int, target_sum: float | None, normalize_per_batch: bool,
                       hvg_flavor: str, min_cells: int, min_genes: int) -> ad.AnnData:
    """Dense input, or ``seurat_v3`` / ``cell_ranger``: scanpy on a full copy (several copies of ``X``)."""
    adata = _normalised_in_memory(adata, target_sum=target_sum, normalize_per_batch=normalize_per_batch,
                                  min_cells=min_cells, min_genes=min_genes)
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
    return adata


def _normalised_in_memory(adata: ad.AnnData, *, target_sum: float | None, normalize_per_batch: bool,
                          min_cells: int, min_genes: int) -> ad.AnnData:
    """The in-memory path before feature selection: a copy filtered, with ``layers['counts']`` and the
    log-normalised ``X`` of every gene kept by ``min_cells``."""
    adata = adata.copy()
    if sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    else:
        adata.X = np.asarray(adata.X, dtype=np.float32)
    sc.pp.filter_cells(adata, min_genes=min_genes)
    sc.pp.filter_genes(adata, min_cells=min_cells)
    if adata.n_vars == 0:
        raise ValueError(f"no gene is seen in {min_cells} cells; lower prepare.min_cells")
    check_raw_input(adata)  # filtering may have emptied a batch
    adata.layers["counts"] = adata.X.copy()

    if target_sum is not None or normalize_per_batch:
        adata.X = _normalize(adata.X, adata.obs["batch"].to_numpy(), target_sum, normalize_per_batch)
    sc.pp.log1p(adata)
    return adata


def _prepare_sparse(adata: ad.AnnData, *, n_top_genes: int, target_sum: float | None, normalize_per_batch: bool,
                    min_cells: int, min_genes: int) -> ad.AnnData:
    """The in-memory path's result for sparse input and the ``seurat`` flavour, reading ``adata.X`` in blocks.

    Annotations go through the same AnnData steps as there (filters, ``strings_to_categoricals`` as scanpy's
    HVG call does, subsetting that drops unused categories), on a copy of ``adata`` that holds no ``X``.
    """
    X = _csr_float32(adata.X)
    meta = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy(), uns=deepcopy(adata.uns), obsm=adata.obsm,
                      varm=adata.varm, obsp=adata.obsp, varp=adata.varp, layers=dict(adata.layers),
                      raw=adata.raw.copy() if adata.raw is not None else None)
    meta, cells, genes = _filter_sparse(X, meta, min_cells=min_cells, min_genes=min_genes)
    scale = _sparse_scale(X, cells, genes, meta.obs["batch"].to_numpy(), target_sum, normalize_per_batch)

    if n_top_genes < meta.n_vars:
        meta.strings_to_categoricals()  # what sc.pp.highly_variable_genes(batch_key=...) does first
        df = _seurat_hvg_batched(X, cells, genes, scale, meta.obs["batch"], meta.var_names, n_top_genes)
        meta.var["highly_variable"] = df["highly_variable"]
        meta.var["means"] = df["means"]
        meta.var["dispersions"] = df["dispersions"]
        meta.var["dispersions_norm"] = df["dispersions_norm"].astype(np.float32, copy=False)
        meta.var["highly_variable_nbatches"] = df["highly_variable_nbatches"]
        meta.var["highly_variable_intersection"] = df["highly_variable_intersection"]
        selected = meta.var["highly_variable"].to_numpy()
        meta = meta[:, selected].copy()
        genes = genes[selected]
    else:
        meta.var["highly_variable"] = True
        meta.var["highly_variable_nbatches"] = meta.obs["batch"].nunique()

    # The output: selected genes of the kept cells, once as counts and once log-normalised.
    counts = X[:, genes] if len(genes) < X.shape[1] else X  # column selection copies only those values
    if len(cells) < X.shape[0]:
        counts = counts[cells]
    elif counts is X:
        counts = X.copy()
    counts = sp.csr_matrix(counts, dtype=np.float32)
    meta.X = _log_normalised(counts, scale)
    meta.layers["counts"] = counts
    return meta


def _csr_float32(X) -> sp.csr_matrix:
    """``X`` itself when it is CSR float32 (the readers' format: read in place), else a converted copy."""
    if sp.issparse(X) and X.format == "csr" and X.dtype == np.float32:
        return X
    return sp.csr_matrix(X, dtype=np.float32)


def _filter_sparse(X, meta: ad.AnnData, *, min_cells: int, min_genes: int) -> tuple[ad.AnnData, np.ndarray, np.ndarray]:
    """``sc.pp.filter_cells(min_genes)`` then ``sc.pp.filter_genes(min_cells)`` on ``meta`` (annotations of
    ``X``, no matrix), counting genes as stored values > 0 of ``X`` read in blocks. Returns the filtered
    ``meta`` and the rows (``cells``) and columns (``genes``) of ``X`` it keeps."""
    n_genes = np.zeros(X.shape[0], dtype=np.int64)
    for rows, block in _row_blocks(X, np.arange(X.shape[0])):
        n_genes[rows] = np.diff(np.r_[0, np.cumsum(block.data > 0)][block.indptr])
    meta.obs["n_genes"] = n_genes
    cells = np.flatnonzero(n_genes >= min_genes)
    meta = meta[n_genes >= min_genes].copy()  # also drops unused categories, as anndata's subsetting does
    n_cells = np.zeros(X.shape[1], dtype=np.int64)
    for _, block in _row_blocks(X, cells):
        n_cells += np.bincount(block.indices[block.data > 0], minlength=X.shape[1])
    meta.var["n_cells"] = n_cells
    meta = meta[:, n_cells >= min_cells].copy()
    if meta.n_vars == 0:
        raise ValueError(f"no gene is seen in {min_cells} cells; lower prepare.min_cells")
    _check_cells(meta)  # filtering may have emptied a batch
    return meta, cells, np.flatnonzero(n_cells >= min_cells)


def _sparse_scale(X, cells: np.ndarray, genes: np.ndarray, batches: np.ndarray, target_sum: float | None,
                  per_batch: bool) -> np.ndarray | None:
    """Per-cell factors (:func:`_scale_factors`) from each kept cell's depth over the kept genes, read in
    blocks; None when the data are not depth-normalised."""
    if target_sum is None and not per_batch:
        return None
    depth = np.empty(len(cells), dtype=np.float64)
    for rows, block in _row_blocks(X, cells):
        if len(genes) < X.shape[1]:
            block = block[:, genes]
        depth[rows] = np.asarray(block.sum(axis=1)).ravel()  # float32 sums, as X.sum(axis=1) did
    return _scale_factors(depth, batches, target_sum, per_batch)


def _log_normalised(counts: sp.csr_matrix, scale: np.ndarray | None) -> sp.csr_matrix:
    """``log1p(scale[cell] * counts)`` as a new CSR float32 matrix (``counts`` is not modified)."""
    data = counts.data.copy() if scale is None else counts.data * np.repeat(scale, np.diff(counts.indptr))
    np.log1p(data, out=data)
    logged = sp.csr_matrix((data, counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)
    if scale is not None:
        logged.eliminate_zeros()  # the sparse product of the in-memory path drops the zeros it makes
    return logged


def _row_blocks(X, rows: np.ndarray) -> Iterator[tuple[slice, Any]]:
    """``(positions in rows, X[those rows])`` for consecutive blocks of ``rows`` of about ``_BLOCK_NNZ`` values."""
    ends = np.cumsum(np.diff(X.indptr)[rows])
    start = 0
    while start < len(rows):
        before = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + _BLOCK_NNZ, side="right")))
        yield slice(start, stop), X[rows[start:stop]]
        start = stop


def _seurat_hvg_batched(X, cells: np.ndarray, genes: np.ndarray, scale: np.ndarray | None, batch: pd.Series,
                        var_names: pd.Index, n_top_genes: int) -> pd.DataFrame:
    """scanpy 1.11's ``highly_variable_genes(flavor='seurat', n_top_genes=..., batch_key=...)`` on the log-normalised
    matrix (``X`` rows ``cells``, columns ``genes``, scaled by ``scale``, log1p), without building it.

    Per batch, the sums and squared sums of ``expm1`` of the float32 log values are accumulated as scanpy's
    numba kernel does (float64 sums, float32 squares, one partial sum per numba thread with the batch's rows
    dealt round-robin), so means and dispersions agree with scanpy's to the bit; the binning, normalisation,
    per-batch ranking and the ranking across batches are scanpy's steps on those numbers.
    """
    import numba

    threads = numba.get_num_threads()
    n_genes = len(genes)
    column = np.full(X.shape[1], -1, dtype=np.int64)
    column[genes] = np.arange(n_genes)
    batch = batch if isinstance(batch.dtype, pd.CategoricalDtype) else batch.astype("category")
    codes = batch.cat.codes.to_numpy()
    batches = batch.cat.categories
    frames = []
    for code in range(len(batches)):
        members = np.flatnonzero(codes == code)
        sums = np.zeros(threads * n_genes)
        squares = np.zeros(threads * n_genes)
        expressed = np.zeros(n_genes, dtype=np.int64)
        for rows, block in _row_blocks(X, cells[members]):
            lengths = np.diff(block.indptr)
            col = column[block.indices]
            keep = col >= 0
            col = col[keep]
            slot = np.repeat(np.arange(rows.start, rows.stop) % threads, lengths)[keep]
            values = block.data[keep]
            if scale is not None:
                values = values * np.repeat(scale[members[rows]], lengths)[keep]
            np.log1p(values, out=values)  # the float32 X of the in-memory path
            expressed += np.bincount(col[values > 0], minlength=n_genes)
            np.expm1(values, out=values)
            at = slot * n_genes + col
            # float64 operands (exact) keep np.add.at on its fast path; it adds in order, like the kernel
            np.add.at(sums, at, values.astype(np.float64))
            np.add.at(squares, at, (values * values).astype(np.float64))
        n = len(members)
        total = sums.reshape(threads, n_genes).sum(axis=0)
        mean = total / n
        var = squares.reshape(threads, n_genes).sum(axis=0) / n - (total / n) ** 2
        if n != 1:
            var *= n / (n - 1)
        frames.append(_seurat_hvg_one_batch(mean, var, expressed > 0, var_names, n_top_genes))

    # scanpy's _highly_variable_genes_batched from here on
    df = pd.concat(frames, axis=0)
    df["highly_variable"] = df["highly_variable"].astype(int)
    df = df.groupby(df.index, observed=True).agg(
        dict(means="mean", dispersions="mean", dispersions_norm="mean", highly_variable="sum")
    )
    df["highly_variable_nbatches"] = df["highly_variable"]
    df["highly_variable_intersection"] = df["highly_variable_nbatches"] == len(batches)
    df.sort_values(["highly_variable_nbatches", "dispersions_norm"], ascending=False, na_position="last", inplace=True)
    df["highly_variable"] = np.arange(df.shape[0]) < n_top_genes
    return df.loc[var_names.copy()]


def _seurat_hvg_one_batch(mean: np.ndarray, var: np.ndarray, expressed: np.ndarray, var_names: pd.Index,
                          n_top_genes: int) -> pd.DataFrame:
    """scanpy's _highly_variable_genes_single_batch (seurat flavour) on the genes one batch expresses; the
    others get zeros, as there."""
    mean, var = mean[expressed], var[expressed]
    mean[mean == 0] = 1e-12
    dispersion = var / mean
    dispersion[dispersion == 0] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersion = np.log(dispersion)
    mean = np.log1p(mean)
    df = pd.DataFrame(dict(means=mean, dispersions=dispersion))
    df["mean_bin"] = pd.cut(df["means"], bins=_N_BINS)
    stats = df.groupby("mean_bin", observed=True)["dispersions"].agg(avg="mean", dev="std")
    single = stats["dev"].isnull()  # a bin holding one gene: its normalised dispersion is set to 1
    if np.flatnonzero(single.loc[df["mean_bin"]]).size:
        stats.loc[single, "dev"] = stats.loc[single, "avg"]
        stats.loc[single, "avg"] = 0
    stats = stats.loc[df["mean_bin"]].set_index(df.index)
    df["dispersions_norm"] = (df["dispersions"] - stats["avg"]) / stats["dev"]
    norm = df["dispersions_norm"].to_numpy()
    ranked = norm[~np.isnan(norm)]
    n = min(n_top_genes, len(df), ranked.size)
    ranked[::-1].sort()
    df["highly_variable"] = np.nan_to_num(norm, nan=-np.inf) >= ranked[n - 1]
    df.index = var_names[expressed]
    n_removed = int((~expressed).sum())
    if n_removed:
        missing = pd.DataFrame(np.zeros((n_removed, len(df.columns))), columns=df.columns)
        missing["highly_variable"] = missing["highly_variable"].astype(bool)
        missing.index = var_names[~expressed]
        df = pd.concat([df, missing]).loc[var_names]
    return df


def _scale_factors(depth: np.ndarray, batches: np.ndarray, target_sum: float | None, per_batch: bool) -> np.ndarray:
    """Per-cell float32 factors to ``target_sum`` counts (or to the median depth of the cell's batch / of all
    cells when ``target_sum`` is None); 0 for cells without counts."""
    if target_sum is not None:
        target = np.full_like(depth, float(target_sum))
    elif per_batch:
        target = pd.Series(depth).groupby(batches).transform("median").to_numpy()
    else:  # pragma: no cover - the caller only normalises with a target or per batch
        target = np.full_like(depth, np.median(depth))
    return np.divide(target, depth, out=np.zeros_like(depth), where=depth > 0).astype(np.float32)


def _normalize(X, batches: np.ndarray, target_sum: float | None, per_batch: bool):
    """Scale each cell to ``target_sum`` counts (or to the median depth of its batch / of all cells when
    ``target_sum`` is None), keeping sparse input sparse."""
    depth = np.asarray(X.sum(axis=1)).ravel().astype(np.float64)
    scale = _scale_factors(depth, batches, target_sum, per_batch)
    if sp.issparse(X):
        return sp.csr_matrix(sp.diags(scale) @ X, dtype=np.float32)
    return (X * scale[:, None]).astype(np.float32)
