"""Which batches a cell's neighbourhood holds: the *local batch prior* of the domain classifier.

A domain adversary asked to make the batches indistinguishable everywhere merges whatever separates them,
cell types included, when the batches differ in composition. With the prior, the classifier is only asked
which of the batches *present around a cell* the cell comes from: its logits get ``log(prior)``, 0 for a
batch present in the cell's neighbourhood of the latent space and ``log(FLOOR)`` for one that is absent
(``FLOOR`` a small probability, not 0, so the cross-entropy stays finite), so the encoder is only pushed to
mix a cell with the batches already near it. A cell with no other batch near it gets no push at all.

"Present" is measured on the latent means of a model trained without the adversary (the warm-up): batch
``b`` is present around cell ``i`` when the share of ``b``'s cells among ``i``'s ``k`` nearest neighbours,
normalised by ``b``'s size, is at least ``share`` × the largest such share there, after the neighbour
counts are averaged once over the neighbours (one step of smoothing on the kNN graph, so the estimate rests
on about k² cells). A cell's own batch is always present.

When the warm-up latent shows no overlap at all between groups of batches (the batches' overlap graph,
:func:`batch_groups`, falls apart), the prior leaves those groups unaligned: right when they hold different
cell types, wrong when a batch effect the warm-up did not bridge keeps shared types apart. Training then warns,
and ``prior_fallback=True`` drops the prior for every cell (the global adversary) instead.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import NearestNeighbors

FLOOR = 1e-3
"""Prior probability of a batch absent from a cell's neighbourhood."""

OVERLAP_MIN = 0.05
"""Two batches are linked in the overlap graph when at least this share of one's cells has the other present."""


class UnbridgedBatchesWarning(UserWarning):
    """A fit's local prior found groups of batches that share no neighbourhood in the warm-up latent, and left
    them unaligned (``prior_fallback=False``). Its message names the groups; ``uns['davae']['prior_groups']``
    records them. Turn it into an error with ``warnings.simplefilter("error", UnbridgedBatchesWarning)``."""


CHUNK_ELEMENTS = 1 << 26
"""Distances held at once by the brute-force search on an accelerator (float64: 512 MB)."""


def knn_indices(z: np.ndarray, k: int, *, n_jobs: int | None = None,
                device: str | torch.device | None = None) -> np.ndarray:
    """Cells × (``k`` + 1): the indices of each cell's ``k`` + 1 nearest neighbours in ``z`` (Euclidean,
    exact, nearest first; the cell itself is one of them).

    For a fit on a CUDA device: brute force there, the distances to all cells of :data:`CHUNK_ELEMENTS` // n
    query cells at a time in float64 and their smallest ``k`` + 1 kept (:func:`knn_indices_brute`).
    Otherwise (``device`` None, the CPU, or another backend, e.g. Apple's MPS, which has no float64):
    scikit-learn's k-d tree on the CPU, its queries split between ``n_jobs`` threads (the same neighbours
    whatever the number). In a 10-d latent the k-d tree's cost grows about as n^1.9 (docs/davae.md, "The
    local prior at atlas size"). Both are exact: they differ only where two neighbours lie at the same
    distance to within rounding."""
    if device is not None and torch.device(device).type == "cuda":
        return knn_indices_brute(z, k, device)
    return NearestNeighbors(n_neighbors=k + 1, n_jobs=n_jobs).fit(z).kneighbors(z, return_distance=False)


@torch.no_grad()
def knn_indices_brute(z: np.ndarray, k: int, device: str | torch.device) -> np.ndarray:
    """:func:`knn_indices` by brute force with torch on ``device`` (any device; used on accelerators)."""
    zt = torch.as_tensor(np.asarray(z), device=device).double()
    n = zt.shape[0]
    sq = (zt * zt).sum(1)
    rows = max(1, CHUNK_ELEMENTS // n)
    out = torch.empty((n, k + 1), dtype=torch.long, device=zt.device)
    for start in range(0, n, rows):
        q = zt[start:start + rows]
        d = torch.addmm(sq[None, :], q, zt.T, alpha=-2.0).add_(sq[start:start + rows, None])
        out[start:start + rows] = d.topk(k + 1, dim=1, largest=False, sorted=True).indices
    return out.cpu().numpy()


def neighbour_batch_shares(z: np.ndarray, codes: np.ndarray, n_batches: int, k: int,
                           smoothing: int = 1, n_jobs: int | None = None,
                           device: str | torch.device | None = None) -> np.ndarray:
    """Cells × batches: each batch's share among a cell's ``k`` nearest neighbours in ``z`` (the cell itself
    included), divided by the batch's share of all cells, then scaled so every row's maximum is 1.

    ``n_jobs``, ``device``: where the exact neighbour search runs (:func:`knn_indices`: the CPU's k-d tree on
    ``n_jobs`` threads, or brute force on an accelerator). The search is most of the prior's cost at atlas
    size (docs/davae.md, "The local prior at atlas size")."""
    n = z.shape[0]
    k = int(min(k, n - 1))
    idx = knn_indices(z, k, n_jobs=n_jobs, device=device)
    graph = sp.csr_matrix((np.full(idx.size, 1.0 / (k + 1)), idx.ravel(), np.arange(0, idx.size + 1, k + 1)),
                          shape=(n, n))
    onehot = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, n_batches))
    counts = graph @ onehot
    for _ in range(int(smoothing)):
        counts = graph @ counts
    counts = np.asarray(counts.todense() if sp.issparse(counts) else counts)
    sizes = np.bincount(codes, minlength=n_batches).astype(np.float64)
    shares = counts / np.maximum(sizes / n, 1e-12)
    return shares / shares.max(1, keepdims=True)


def local_batch_prior(z: np.ndarray, codes: np.ndarray, n_batches: int, *, k: int = 30, share: float = 0.1,
                      smoothing: int = 1, n_jobs: int | None = None,
                      device: str | torch.device | None = None) -> np.ndarray:
    """Cells × batches log-prior for the classifier's logits: 0 where the batch is present around the cell
    (see the module docstring), ``log(FLOOR)`` elsewhere; the cell's own batch always 0. ``n_jobs``,
    ``device``: where the neighbour search runs (:func:`knn_indices`)."""
    present = neighbour_batch_shares(z, codes, n_batches, k, smoothing, n_jobs=n_jobs, device=device) >= share
    present[np.arange(len(codes)), codes] = True
    return np.where(present, 0.0, np.log(FLOOR)).astype(np.float32)


def batch_overlap(log_prior: np.ndarray, codes: np.ndarray, n_batches: int) -> np.ndarray:
    """Batches × batches: entry ``[a, b]`` is the share of batch ``a``'s cells around which the prior (from
    :func:`local_batch_prior`) counts batch ``b`` as present (1 on the diagonal; NaN for an empty batch)."""
    present = np.asarray(log_prior) == 0
    codes = np.asarray(codes)
    out = np.full((n_batches, n_batches), np.nan)
    for a in range(n_batches):
        rows = present[codes == a]
        if len(rows):
            out[a] = rows.mean(0)
    return out


def listed_groups(group_of: np.ndarray, names: list[str]) -> str:
    """The groups of batches as text, "a, b | c": ``group_of[b]`` is batch ``b``'s group (as recorded in
    ``uns['davae']['prior_groups']``), ``names`` the batch labels; groups in order of their number."""
    group_of = np.asarray(group_of)
    return " | ".join(", ".join(str(n) for n, g in zip(names, group_of) if g == k) for k in np.unique(group_of))


def batch_groups(overlap: np.ndarray, min_share: float = OVERLAP_MIN) -> list[list[int]]:
    """Connected groups of batches in the overlap graph: ``a`` and ``b`` are linked when at least
    ``min_share`` of ``a``'s cells have ``b`` present, or of ``b``'s cells ``a``. One group = every batch
    reachable from every other through shared neighbourhoods; several = the prior aligns nothing between
    them. Groups in order of their first batch."""
    o = np.nan_to_num(np.asarray(overlap, dtype=float))
    link = (o >= min_share) | (o.T >= min_share)
    _, label = connected_components(sp.csr_matrix(link), directed=False)
    groups: dict[int, list[int]] = {}
    for b, g in enumerate(label):
        groups.setdefault(int(g), []).append(b)
    return list(groups.values())
