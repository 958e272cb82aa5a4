"""Input handling for DESC: sparse-aware mini-batches, chunked prediction and per-batch scaling.

A CSR matrix stays CSR: only the rows of one mini-batch (or one prediction chunk) are densified at a time,
so memory grows with ``batch_size x n_genes``, not ``n_cells x n_genes``.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch


def as_matrix(X) -> sp.csr_matrix | np.ndarray:
    """CSR (for any sparse input) or C-contiguous dense float32; rejects non-finite values."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float32)
        values = X.data
    else:
        X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
        values = X
    if not np.isfinite(values).all():
        raise ValueError("DESC input contains NaN or inf; fix the prepared matrix (log-normalised X)")
    return X


def rows(X, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """Dense float32 tensor of rows ``idx`` of ``X`` (CSR, ndarray or tensor) on ``device``."""
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(idx, device=X.device)].to(device)
    block = X[idx]
    if sp.issparse(block):
        block = block.toarray()
    return torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(device)


def to_device(X, device: torch.device):
    """Dense inputs move to ``device`` once (fast indexing); CSR stays on the host and is sliced per batch."""
    if sp.issparse(X):
        return X
    return torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)


def iter_batches(n: int, batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Index blocks covering ``range(n)``, in a fresh random order when ``rng`` is given (Keras shuffle)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
def predict(fn: Callable[[torch.Tensor], torch.Tensor], X, device: torch.device, chunk: int = 4096) -> np.ndarray:
    """Apply ``fn`` to ``X`` in row chunks and return the stacked result as a float32 numpy array."""
    n = X.shape[0]
    out = [fn(rows(X, np.arange(s, min(s + chunk, n)), device)).float().cpu() for s in range(0, n, chunk)]
    return torch.cat(out).numpy()


def scale_by_group(X, groups, max_value: float | None = 6.0, sd_floor: float = 1e-5) -> np.ndarray:
    """Z-score every gene within each group (batch), as DESC's ``scale_bygroup``.

    Unbiased (n - 1) standard deviation, floored at ``sd_floor`` (a gene constant within a batch becomes 0
    there); values above ``max_value`` are clipped to it (DESC clips the upper side only; None = no clip).
    The result is dense: centring destroys sparsity.
    """
    groups = np.asarray(groups)
    if groups.shape[0] != X.shape[0]:
        raise ValueError(f"scale_by_group: {groups.shape[0]} group labels for {X.shape[0]} cells")
    out = np.empty(X.shape, dtype=np.float32)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        block = X[idx]
        block = (block.toarray() if sp.issparse(block) else np.asarray(block)).astype(np.float64)
        mean = block.mean(0)
        sd = block.std(0, ddof=1) if idx.size > 1 else np.zeros_like(mean)
        sd[sd <= sd_floor] = sd_floor
        block = (block - mean) / sd
        if max_value is not None:
            np.minimum(block, max_value, out=block)
        out[idx] = block
    return out
