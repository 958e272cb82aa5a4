"""Runtime-scaling benchmark (Fig 6f): cells drawn from a prepared data set, one method run per size, and the
table and growth exponents of wall time and peak memory against the number of cells.

Two ways to make a data set of ``n`` cells from a prepared AnnData (docs/CONTRACTS.md):

``downsample``
    Uniform sampling without replacement, seeded (the paper's design on the 762k-cell HCA sets).
``resample``
    Uniform sampling *with* replacement and Poisson noise on the counts, for sizes beyond the source (the
    offline stand-in: a few thousand real cells grown to 10k-200k). Each drawn cell gets a depth factor
    (log-normal) and every stored count ``c`` becomes ``Poisson(c * factor)``; then ``X`` is recomputed from
    the noisy counts as prepare did (``normalize_total(target_sum)`` + ``log1p``). Only stored entries are
    touched, so a CSR input stays CSR and zeros stay zeros (the sparsity pattern can only lose entries).

Everything works on CSR rows and ``.data`` arrays; nothing is densified.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

log = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "downsample",
    "resample_with_noise",
    "make_size",
    "run_scaling_method",
    "benchmark_table",
    "growth_table",
    "check_scaling_config",
]

MODES = ("downsample", "resample")


def _as_csr32(X) -> sp.csr_matrix | np.ndarray:
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float32)
    return np.asarray(X, dtype=np.float32)


def _take_rows(adata: ad.AnnData, idx: np.ndarray, *, suffix: bool) -> ad.AnnData:
    """Rows ``idx`` of ``adata`` (X, layers, obs, obsm) as a new AnnData; obs_names made unique when
    ``suffix`` (cells drawn more than once)."""
    obs = adata.obs.iloc[idx].copy()
    if suffix:
        obs.index = pd.Index([f"{name}-{k}" for k, name in enumerate(adata.obs_names[idx])])
    out = ad.AnnData(X=None if adata.X is None else adata.X[idx], obs=obs, var=adata.var.copy())
    for key, layer in adata.layers.items():
        out.layers[key] = layer[idx]
    for key, value in adata.obsm.items():
        out.obsm[key] = np.asarray(value)[idx] if not sp.issparse(value) else value[idx]
    out.uns = dict(adata.uns)
    return out


def downsample(adata: ad.AnnData, n_cells: int, *, seed: int = 0) -> ad.AnnData:
    """``n_cells`` cells drawn uniformly without replacement (seeded), in their original order.

    Raises
    ------
    ValueError
        When ``n_cells`` exceeds the cells available (use ``mode: resample`` to grow a data set).
    """
    n_cells = int(n_cells)
    if n_cells < 1:
        raise ValueError(f"n_cells must be >= 1, got {n_cells}")
    if n_cells > adata.n_obs:
        raise ValueError(f"cannot downsample {adata.n_obs} cells to {n_cells}; lower scaling.sizes or use "
                         "scaling.mode: resample")
    idx = np.sort(np.random.default_rng(seed).choice(adata.n_obs, size=n_cells, replace=False))
    return _take_rows(adata, idx, suffix=False)


def _poisson_rows(counts: sp.csr_matrix, factor: np.ndarray, rng: np.random.Generator,
                  chunk: int = 1 << 22) -> sp.csr_matrix:
    """``Poisson(count * factor[row])`` on the stored entries of a CSR matrix, in chunks of ``.data``."""
    counts = counts.copy()
    row_of = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    data = counts.data
    for start in range(0, data.size, chunk):
        stop = min(start + chunk, data.size)
        lam = data[start:stop].astype(np.float64) * factor[row_of[start:stop]]
        data[start:stop] = rng.poisson(lam)
    del row_of
    counts.eliminate_zeros()
    return counts


def resample_with_noise(adata: ad.AnnData, n_cells: int, *, seed: int = 0, depth_sd: float = 0.2,
                        counts_layer: str = "counts", target_sum: float | None | str = "from_uns") -> ad.AnnData:
    """Grow (or shrink) a prepared data set to ``n_cells`` cells: uniform draws with replacement, Poisson
    noise on the counts and a log-normal depth factor per drawn cell; ``X`` recomputed from the counts.

    Parameters
    ----------
    adata
        Prepared AnnData with raw counts in ``layers[counts_layer]`` (CSR or dense).
    n_cells
        Cells in the result.
    seed
        Seeds the draws and the noise.
    depth_sd
        Standard deviation of the log depth factor (0: Poisson noise only).
    counts_layer
        Layer holding the counts the noise is applied to.
    target_sum
        Depth ``X`` is normalised to before ``log1p``; ``"from_uns"`` (default) takes
        ``uns['prepare']['target_sum']`` (1e4 when absent); ``None`` or ``"none"``: ``log1p(counts)``.

    Returns
    -------
    AnnData with ``n_cells`` cells named ``<source cell>-<k>``, the source's obs columns, ``X`` (float32,
    CSR when the counts are sparse) and ``layers[counts_layer]``; ``uns['scaling']`` records the draw.
    """
    n_cells = int(n_cells)
    if n_cells < 1:
        raise ValueError(f"n_cells must be >= 1, got {n_cells}")
    if counts_layer not in adata.layers:
        raise ValueError(f"no layers[{counts_layer!r}] to add count noise to; give a prepared.h5ad "
                         "(it keeps raw counts there) or use scaling.mode: downsample")
    if depth_sd < 0:
        raise ValueError(f"depth_sd must be >= 0, got {depth_sd}")
    if isinstance(target_sum, str):
        if target_sum == "from_uns":
            target_sum = adata.uns.get("prepare", {}).get("target_sum", 1e4)
        if target_sum == "none":
            target_sum = None
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.integers(0, adata.n_obs, size=n_cells))
    base = ad.AnnData(obs=adata.obs, var=adata.var, layers={counts_layer: adata.layers[counts_layer]})
    out = _take_rows(base, idx, suffix=True)
    factor = np.exp(rng.normal(0.0, depth_sd, size=n_cells)) if depth_sd > 0 else np.ones(n_cells)
    counts = out.layers[counts_layer]
    if sp.issparse(counts):
        counts = _poisson_rows(sp.csr_matrix(counts, dtype=np.float32), factor, rng)
    else:
        counts = rng.poisson(np.asarray(counts, dtype=np.float64) * factor[:, None]).astype(np.float32)
    out.layers[counts_layer] = counts
    out.X = _lognorm(counts, None if target_sum is None else float(target_sum))
    out.uns = {k: v for k, v in adata.uns.items() if k == "prepare"}
    out.uns["scaling"] = {"mode": "resample", "n_source": int(adata.n_obs), "seed": int(seed),
                          "depth_sd": float(depth_sd), "target_sum": "none" if target_sum is None else float(target_sum)}
    return out


def _lognorm(counts, target_sum: float | None):
    """``log1p(counts * target_sum / depth)`` per cell (``log1p(counts)`` when ``target_sum`` is None)."""
    if target_sum is None:
        scale = None
    else:
        depth = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)
        scale = np.divide(float(target_sum), depth, out=np.zeros_like(depth), where=depth > 0).astype(np.float32)
    if sp.issparse(counts):
        X = sp.csr_matrix(counts, dtype=np.float32, copy=True)
        if scale is not None:
            X.data *= np.repeat(scale, np.diff(X.indptr))
        np.log1p(X.data, out=X.data)
        return X
    X = np.asarray(counts, dtype=np.float32) * (scale[:, None] if scale is not None else 1.0)
    return np.log1p(X).astype(np.float32)


def make_size(adata: ad.AnnData, n_cells: int, *, mode: str = "downsample", seed: int = 0,
              **resample_kwargs: Any) -> ad.AnnData:
    """One benchmark input of ``n_cells`` cells by ``mode`` (``downsample`` or ``resample``); see the
    module docstring. ``uns['scaling']`` records mode, seed and source size."""
    if mode not in MODES:
        raise ValueError(f"scaling.mode must be one of {MODES}, not {mode!r}")
    if mode == "downsample":
        out = downsample(adata, n_cells, seed=seed)
        out.uns["scaling"] = {"mode": mode, "n_source": int(adata.n_obs), "seed": int(seed)}
    else:
        out = resample_with_noise(adata, n_cells, seed=seed, **resample_kwargs)
    if sp.issparse(out.X):
        out.X = sp.csr_matrix(out.X, dtype=np.float32)
    return out


def method_note(result: ad.AnnData) -> str:
    """The one-line ``note`` entries a method left in its own ``uns`` record (``uns['method_outputs']``
    after :func:`davae_study.methods.run_method`), joined by ``; ``: e.g. DESC's note that its clustering
    stopped at ``max_rounds`` without converging. Empty when there are none."""
    outputs = result.uns.get("method_outputs") or {}
    notes = [str(rec["note"]) for rec in outputs.values() if isinstance(rec, Mapping) and rec.get("note")]
    return "; ".join(notes)


def run_scaling_method(prepared_path: str | os.PathLike, out_h5ad: str | os.PathLike, *, method: str,
                       module: str | None, params: Mapping[str, Any] | None = None, seed: int = 0,
                       device: str = "auto", keep_corrected: bool = False,
                       threads: int | None = None) -> ad.AnnData:
    """Run one method on one benchmark input through :func:`davae_study.methods.run_method` (errors raise)
    and write the embedding and ``uns['method']`` (``wall_s``, ``peak_rss_mb``, ``device``) to ``out_h5ad``.

    ``uns['method']['note']`` carries the method's own note (:func:`method_note`; e.g. DESC stopped at its
    ``max_rounds`` cap), so that the benchmark table can say a timing is of a capped run.
    ``layers['corrected']`` is dropped unless ``keep_corrected`` (at HCA size it is cells × genes dense and
    is not what the benchmark measures); the file is written uncompressed so that compression time does not
    enter the ``benchmark:`` record. ``threads`` caps torch and BLAS threads during the method call.
    """
    from .io import write_h5ad
    from .methods import run_method, thread_limit

    start = time.perf_counter()
    prepared = ad.read_h5ad(prepared_path)
    read_s = time.perf_counter() - start
    with thread_limit(threads):
        result = run_method(method, prepared, module=module, params=params, seed=seed, device=device,
                            on_error="raise", threads=threads)
    if not keep_corrected and "corrected" in result.layers:
        del result.layers["corrected"]
    info = dict(result.uns["method"])
    info.update(n_cells=int(prepared.n_obs), n_genes=int(prepared.n_vars), read_s=float(read_s),
                input_nnz=int(prepared.X.nnz) if sp.issparse(prepared.X) else int(prepared.X.size),
                note=method_note(result))
    result.uns["method"] = info
    log.info("scaling %s on %d cells: %.1f s, peak RSS %.0f MB (%s)%s", method, prepared.n_obs, info["wall_s"],
             info.get("peak_rss_mb", float("nan")), info["device"], f"; {info['note']}" if info["note"] else "")
    write_h5ad(result, out_h5ad, compression=None)
    return result


def benchmark_table(records: Iterable[tuple[str, int, str | os.PathLike]],
                    method_infos: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row per (method, cells, repeat) from Snakemake ``benchmark:`` files.

    Parameters
    ----------
    records
        ``(method, n_cells, benchmark.tsv)`` per job.
    method_infos
        Optional ``uns['method']`` of each job's output (same order as ``records``): adds the in-process
        ``wall_s``, ``peak_rss_mb``, ``device`` and ``status`` of the method call itself (the benchmark file
        times the whole job: start-up, reading, writing), and the method's ``note`` (empty, or e.g. that
        DESC stopped at its ``max_rounds`` cap).

    Returns
    -------
    DataFrame ``method, n_cells, repeat, s, max_rss, …`` (Snakemake's columns, memory in MB).
    """
    from .plotting.runtime import read_benchmarks

    records = list(records)
    if not records:
        raise ValueError("no benchmark files given; check scaling.sizes and scaling.methods")
    infos = list(method_infos) if method_infos is not None else [None] * len(records)
    frames = []
    for record, info in zip(records, infos):
        df = read_benchmarks([record])
        if info is not None:
            for key in ("wall_s", "peak_rss_mb", "device", "status", "note"):
                df[f"method_{key}"] = info.get(key, np.nan)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def loglog_fit(n_cells, values) -> tuple[float, float]:
    """``(b, a)`` of ``value = a · cells^b`` by least squares on log–log over the finite positive points
    (NaN, NaN with fewer than two distinct sizes)."""
    n, v = np.asarray(n_cells, float), np.asarray(values, float)
    ok = np.isfinite(n) & np.isfinite(v) & (n > 0) & (v > 0)
    if np.unique(n[ok]).size < 2:
        return float("nan"), float("nan")
    slope, icpt = np.polyfit(np.log(n[ok]), np.log(v[ok]), 1)
    return float(slope), float(np.exp(icpt))


def growth_table(bench: pd.DataFrame, quantities: Sequence[str] = ("s", "max_rss")) -> pd.DataFrame:
    """Growth exponent ``b`` of ``quantity ∝ cells^b`` per method (least squares on log–log of the means
    over repeats), with the prefactor, the sizes used and the value at the largest size.

    Returns a DataFrame ``method, quantity, exponent, prefactor, n_sizes, min_cells, max_cells,
    value_at_max``; ``exponent`` is NaN with fewer than two sizes with positive values.
    """
    if {"method", "n_cells"} - set(bench.columns):
        raise ValueError("benchmark table lacks 'method'/'n_cells'; build it with benchmark_table()")
    rows = []
    for method, sub in bench.groupby("method", sort=True):
        for q in quantities:
            if q not in sub.columns:
                continue
            means = sub.groupby("n_cells")[q].mean()
            means = means[np.isfinite(means.to_numpy(float)) & (means.to_numpy(float) > 0)]
            row = {"method": method, "quantity": q, "exponent": np.nan, "prefactor": np.nan,
                   "n_sizes": int(len(means)), "min_cells": np.nan, "max_cells": np.nan, "value_at_max": np.nan}
            if len(means):
                row.update(min_cells=int(means.index.min()), max_cells=int(means.index.max()),
                           value_at_max=float(means.iloc[-1]))
            if len(means) >= 2:
                slope, prefactor = loglog_fit(means.index.to_numpy(float), means.to_numpy(float))
                row.update(exponent=slope, prefactor=prefactor)
            rows.append(row)
    return pd.DataFrame(rows, columns=["method", "quantity", "exponent", "prefactor", "n_sizes", "min_cells",
                                       "max_cells", "value_at_max"])


def check_scaling_config(scaling: Mapping[str, Any], methods: Mapping[str, Any],
                         applications: Mapping[str, Any]) -> None:
    """Raise a one-line ValueError when the config's ``scaling:`` block cannot be run."""
    if not scaling:
        return
    sizes = scaling.get("sizes", [])
    if not sizes or any(int(s) < 2 for s in sizes) or len(set(sizes)) != len(sizes):
        raise ValueError(f"scaling.sizes must be distinct cell counts >= 2, got {sizes!r}")
    unknown = [m for m in scaling.get("methods", []) if m not in methods]
    if not scaling.get("methods") or unknown:
        raise ValueError(f"scaling.methods must name entries of methods: (unknown: {unknown}, "
                         f"configured: {sorted(methods)})")
    source = scaling.get("source")
    if not source or (source not in applications and not str(source).endswith(".h5ad")):
        raise ValueError(f"scaling.source must be an application ({sorted(applications)}) or a prepared .h5ad "
                         f"path, got {source!r}")
    if scaling.get("mode", "downsample") not in MODES:
        raise ValueError(f"scaling.mode must be one of {MODES}, got {scaling.get('mode')!r}")
    if int(scaling.get("repeats", 1)) < 1:
        raise ValueError(f"scaling.repeats must be >= 1, got {scaling.get('repeats')!r}")
    stray = [m for m in (scaling.get("params") or {}) if m not in scaling.get("methods", [])]
    if stray:
        raise ValueError(f"scaling.params names {stray}, which scaling.methods does not run "
                         f"({scaling.get('methods')}); a misspelt method would silently lose its overrides")
