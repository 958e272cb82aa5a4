"""Input checks that turn bad input into one-line errors naming the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData


def check_matrix(X, *, what: str = "X") -> None:
    """Reject non-numeric, non-finite or negative expression matrices and empty shapes."""
    if X is None:
        raise ValueError(f"adata.{what} is empty (None); put expression values in {what}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"adata.{what} has shape {X.shape}; need at least one cell and one gene")
    data = X.data if sp.issparse(X) else np.asarray(X)
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise ValueError(f"adata.{what} has dtype {data.dtype}; convert it to float32 expression values")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"adata.{what} contains NaN or inf; remove or impute those values first")
    if data.size and data.min() < 0:
        raise ValueError(
            f"adata.{what} has negative values (min {data.min():.3g}); DAVAE needs counts or log-normalised "
            "expression, not scaled/centred data"
        )


def batch_codes(adata: AnnData, batch_key: str, categories=None) -> tuple[np.ndarray, list[str]]:
    """Integer batch codes and the category list for ``adata.obs[batch_key]``.

    Labels may be strings or numbers (they are treated as categories); missing labels are an error.
    """
    if batch_key not in adata.obs.columns:
        raise ValueError(
            f"batch key {batch_key!r} not in adata.obs (columns: {', '.join(map(str, adata.obs.columns)) or 'none'}); "
            "pass batch_key=<column holding the batch of each cell>"
        )
    col = adata.obs[batch_key]
    if col.isna().any():
        raise ValueError(f"adata.obs[{batch_key!r}] has {int(col.isna().sum())} missing labels; label every cell's batch")
    labels = col.astype(str)
    if categories is None:
        if isinstance(col.dtype, pd.CategoricalDtype):
            categories = [str(c) for c in col.cat.categories if (labels == str(c)).any()]
        else:
            categories = sorted(labels.unique())
    cat = pd.Categorical(labels, categories=list(categories))
    if (cat.codes < 0).any():
        unseen = sorted(set(labels[cat.codes < 0]))
        raise ValueError(f"batches {unseen} were not seen in training; the model knows {list(categories)}")
    return cat.codes.astype(np.int64), list(categories)


def check_batches(codes: np.ndarray, categories: list[str], batch_key: str) -> None:
    """At least two batches. A batch may have fewer cells than a minibatch: minibatches are drawn from all
    cells together, not per batch, and a data set smaller than ``batch_size`` trains on all its cells in one
    minibatch (two batches make at least two cells, what batch normalisation needs)."""
    if len(categories) < 2:
        raise ValueError(
            f"adata.obs[{batch_key!r}] has only one batch ({categories[0]!r}); DAVAE integrates two or more batches"
        )


def check_obs_names(adata: AnnData) -> None:
    """Cell names must be unique: the output keeps the input's names and order."""
    names = adata.obs_names
    if not names.is_unique:
        dup = names[names.duplicated()]
        raise ValueError(
            f"adata.obs_names has {len(dup)} duplicated cell names (e.g. {str(dup[0])!r}); make them unique with "
            "adata.obs_names_make_unique() (and write the file again) first"
        )


#: largest value of a matrix that is taken for log-scale data when it is not integer (log1p of CPM: <= 13.9)
LOG_SCALE_MAX = 30.0


def check_counts(X, *, sample: int = 1_000_000) -> None:
    """With preprocessing on, ``X`` must hold raw counts (or TPM / CPM): stop when it looks log-transformed,
    i.e. its values are not integers and its maximum is below :data:`LOG_SCALE_MAX`.

    The integer test reads at most ``sample`` stored values (evenly spaced); the maximum reads all of them.
    """
    data = X.data if sp.issparse(X) else np.asarray(X).ravel()
    if data.size == 0:
        return
    vmax = float(data.max())
    step = max(1, data.size // sample)
    part = data[::step]
    if vmax >= LOG_SCALE_MAX or np.array_equal(part, np.round(part)):
        return
    raise ValueError(
        f"adata.X looks log-transformed (not integers, max {vmax:.3g}) but preprocessing expects raw counts in X: "
        "if X is log-normalised pass preprocess=False (davae integrate --no-preprocess), or check_counts=False "
        "(--skip-count-check) to preprocess it anyway"
    )
