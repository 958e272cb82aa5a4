"""Reader for inputs that are already AnnData files (the embedded demo data, users' own data sets)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def read_h5ad_input(
    paths: Mapping[str, str],
    *,
    batch_key: str = "batch",
    label_key: str | None = "cell_type",
    keep: Mapping[str, Sequence[str]] | None = None,
    batches: Sequence[str] | None = None,
    rename_batches: Mapping[str, str] | None = None,
    counts_layer: str | None = None,
) -> ad.AnnData:
    """Read one or more ``.h5ad`` files of raw counts into one AnnData.

    Several files are concatenated on their shared genes (inner join); cell names are made unique.

    Parameters
    ----------
    paths
        File key → path; every file is read.
    batch_key, label_key
        obs columns holding the batch and the cell type; copied to ``obs['batch']`` / ``obs['cell_type']``.
        ``label_key=None`` for unlabelled data.
    keep
        Batch → cell types to keep in that batch (other batches keep all their cells). This is how the
        demo's *compositions* application gives each batch a different composition, as the paper's
        293T / Jurkat / 50:50 design does.
    batches
        Keep only these batches (all when None).
    rename_batches
        Old → new batch names, applied after ``keep``/``batches``.
    counts_layer
        Read the counts from this layer instead of ``X``.
    """
    parts = []
    for key, path in paths.items():
        a = ad.read_h5ad(path)
        if counts_layer is not None:
            if counts_layer not in a.layers:
                raise ValueError(f"{path}: no layer {counts_layer!r}; set input.params.counts_layer to one of {list(a.layers)}")
            a.X = a.layers[counts_layer]
        if batch_key not in a.obs:
            raise ValueError(f"{path}: obs has no batch column {batch_key!r}; set input.params.batch_key to one of {list(a.obs.columns)}")
        if label_key is not None and label_key not in a.obs:
            raise ValueError(f"{path}: obs has no label column {label_key!r}; set input.params.label_key (or null for unlabelled data)")
        a = ad.AnnData(X=a.X, obs=a.obs[[c for c in (batch_key, label_key) if c is not None]].copy(), var=pd.DataFrame(index=a.var_names))
        a.obs = a.obs.rename(columns={batch_key: "batch", **({label_key: "cell_type"} if label_key else {})})
        a.obs["batch"] = a.obs["batch"].astype(str)
        parts.append(a)
    adata = parts[0] if len(parts) == 1 else ad.concat(parts, join="inner", index_unique="-", keys=list(paths))
    if not sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)

    mask = np.ones(adata.n_obs, dtype=bool)
    if batches is not None:
        missing = set(batches) - set(adata.obs["batch"])
        if missing:
            raise ValueError(f"input.params.batches names unknown batches {sorted(missing)}; present: {sorted(set(adata.obs['batch']))}")
        mask &= adata.obs["batch"].isin(list(batches)).to_numpy()
    if keep:
        missing = set(keep) - set(adata.obs["batch"])
        if missing:
            raise ValueError(f"input.params.keep names unknown batches {sorted(missing)}; present: {sorted(set(adata.obs['batch']))}")
        if "cell_type" not in adata.obs:
            raise ValueError("input.params.keep needs cell-type labels; set input.params.label_key")
        for batch, types in keep.items():
            in_batch = (adata.obs["batch"] == batch).to_numpy()
            mask &= ~in_batch | adata.obs["cell_type"].isin(list(types)).to_numpy()
    adata = adata[mask].copy()
    if rename_batches:
        adata.obs["batch"] = adata.obs["batch"].replace(dict(rename_batches))
    adata.obs["batch"] = pd.Categorical(adata.obs["batch"])
    if "cell_type" in adata.obs:
        adata.obs["cell_type"] = pd.Categorical(adata.obs["cell_type"].astype("string").replace({"": pd.NA}).astype(object))
    adata.obs_names_make_unique()
    adata.uns["counts_kind"] = "counts"
    return adata
