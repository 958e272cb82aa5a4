"""kBET (k-nearest-neighbour batch effect test; Büttner et al. 2019, Nat. Methods), faithful to the R
reference ``theislab/kBET`` (``R/kBET.R``, ``R/kBET-utils.R``), vectorised.

What the R code does, and what this module reproduces (see docs/metrics.md for line-level notes):

* neighbourhood of a tested cell = the cell itself + its ``k0 - 1`` nearest other cells (``FNN::get.knn``,
  exact Euclidean; ``env <- cbind(knn[idx, 1:(k0-1)], idx)``);
* expected batch frequencies ``f_b = n_b / n`` over the cells given to kBET; per tested cell
  ``chi2 = sum_b (o_b - f_b k0)^2 / (f_b k0)`` over all B batches, ``p = 1 - pchisq(chi2, B - 1)``
  (``chi_batch_test``); a NaN statistic (0/0, possible after ``adapt`` when every cell of a batch is an
  outsider) gives p = 0, i.e. a rejection, as theislab/kBET's ``if (is.na(result)) return(0)``;
* ``testSize = ceiling(0.1 n)``, raised to 25 when smaller and ``n > 25``; each of ``n_repeat`` repeats
  tests ``testSize`` cells drawn without replacement; ``kBET.observed`` = fraction with ``p < alpha``;
* null: the batch labels are permuted 3 times once per call (``batch.shuff``); each repeat tests the same
  neighbourhoods under every permutation with the *unadapted* frequencies; ``kBET.expected`` = mean over
  permutations of the rejection fraction (one call here serves all sizes of a cell type, which therefore
  share the permutations);
* ``adapt``: "outsiders" = cells that are in no cell's first ``k0 - 1`` neighbours; their batch counts are
  tested as one set against ``f`` (``chi_batch_test(outsider, ...)``); if ``p < alpha`` the observed test uses
  the batch frequencies of the non-outsiders instead;
* ``n <= 10`` or ``k0 < 10`` -> NA (here: NaN with the reason); one batch -> NaN (R: dof 0, all rejected).

Speed (:func:`neighbourhood_counts`): per call, float32 distances in row chunks, each row sorted once so
every size's threshold distance is read from the same sort (the largest-k0 search serves the smaller
sizes); a numba kernel counts the cells within each threshold per label combination (observed and
permuted labels together); each cell's p-value is computed once and the repeats only subsample cells.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import chi2

from ._table import as_embedding, codes, nan_row, row

try:  # scanpy already depends on numba; the numpy engine is the fallback and the cross-check
    import numba

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    _HAVE_NUMBA = False

DEFAULT_PCTS = (5, 10, 15, 20, 25)
MIN_CELLS = 11  # R: dim.dataset[1] <= 10 -> NA
MIN_K0 = 10  # R: k0 < 10 -> NA


# ----------------------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------------------
def default_test_size(n: int) -> int:
    """R kBET's ``testSize``: ``ceiling(0.1 n)``, raised to 25 when smaller and ``n > 25``."""
    ts = math.ceil(n * 0.1)
    if ts < 25 and n > 25:
        ts = 25
    return ts


def chi2_pvalues(counts: np.ndarray, freq: np.ndarray, k0: int) -> np.ndarray:
    """Per-neighbourhood chi-square p-values, R's ``chi_batch_test``.

    Parameters
    ----------
    counts
        ``(..., B)`` observed batch counts in each neighbourhood (summing to ``k0``).
    freq
        ``(B,)`` expected batch frequencies (may contain 0 after ``adapt``: 0/0 -> NaN p-value, x/0 -> p = 0,
        as in R).
    k0
        Neighbourhood size (``length(knn.set)`` in R).

    Returns
    -------
    ``1 - CDF_chi2(B - 1)`` of the statistic; NaN where the statistic is NaN.
    """
    freq = np.asarray(freq, dtype=np.float64)
    dof = freq.shape[-1] - 1
    expected = freq * k0
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = ((np.asarray(counts, dtype=np.float64) - expected) ** 2 / expected).sum(axis=-1)
    return chi2.sf(stat, dof)


def _augment(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 factors ``a``, ``b`` with ``a @ b.T`` = squared distances of the centred rows of ``x``."""
    xc = x - x.mean(axis=0)
    sq = np.einsum("ij,ij->i", xc, xc)
    ones = np.ones((x.shape[0], 1))
    a = np.hstack([xc, sq[:, None], ones]).astype(np.float32)
    b = np.hstack([-2.0 * xc, ones, sq[:, None]]).astype(np.float32)
    return a, b


_GROUP = 5  # sizes counted per compiled pass (the paper's 5; more sizes take several passes)
_MAX_SEGMENTS = 4096  # label combinations counted in one pass; beyond, one pass per labeling

if _HAVE_NUMBA:

    @numba.njit(parallel=True, cache=True)
    def _segment_kernel(d, thr, seg, le_out, sh_out):  # pragma: no cover - compiled
        """Row ``i`` of ``d`` has its columns grouped in segments ``seg[g]:seg[g+1]`` (cells sharing one
        combination of labels). ``le_out[i, s, g]`` = cells of segment ``g`` with ``d[i, q] <= thr[i, s]``;
        ``sh_out[i, q]`` = number of thresholds below ``d[i, q]``. Five thresholds (pad with +inf), compared
        branch-free."""
        c = d.shape[0]
        n_seg = seg.shape[0] - 1
        for i in numba.prange(c):
            t0 = thr[i, 0]
            t1 = thr[i, 1]
            t2 = thr[i, 2]
            t3 = thr[i, 3]
            t4 = thr[i, 4]
            for g in range(n_seg):
                c0 = c1 = c2 = c3 = c4 = np.int32(0)
                for q in range(seg[g], seg[g + 1]):
                    v = d[i, q]
                    b0 = np.int32(v <= t0)
                    b1 = np.int32(v <= t1)
                    b2 = np.int32(v <= t2)
                    b3 = np.int32(v <= t3)
                    b4 = np.int32(v <= t4)
                    c0 += b0
                    c1 += b1
                    c2 += b2
                    c3 += b3
                    c4 += b4
                    sh_out[i, q] = np.int8(5 - (b0 + b1 + b2 + b3 + b4))
                le_out[i, 0, g] = c0
                le_out[i, 1, g] = c1
                le_out[i, 2, g] = c2
                le_out[i, 3, g] = c3
                le_out[i, 4, g] = c4


def neighbourhood_counts(
    x: np.ndarray,
    ks: Sequence[int],
    labelings: np.ndarray,
    n_labels: int,
    *,
    engine: str = "auto",
    chunk_bytes: int = 1 << 25,
) -> tuple[np.ndarray, np.ndarray]:
    """Label counts in every cell's kBET neighbourhood (itself + ``k - 1`` nearest others), for many ``k``.

    Parameters
    ----------
    x
        ``(n, d)`` coordinates (Euclidean distances).
    ks
        Neighbourhood sizes ``k0``, increasing, each in ``[2, n]``.
    labelings
        ``(L, n)`` integer codes ``0..n_labels-1`` (row 0: observed batches; further rows: permutations).
    n_labels
        Number of label codes ``B``.
    engine
        ``"numba"`` (one compiled counting pass per row), ``"numpy"`` (a mask and a matrix product per size),
        or ``"auto"`` (numba when importable). Both give identical counts.

    Returns
    -------
    counts
        ``(len(ks), L, n, B)`` label counts in each cell's neighbourhood (the cell itself included).
    covered
        ``(len(ks), n)`` bool: cell is among some other cell's ``k - 1`` nearest neighbours (``!outsider``).

    Notes
    -----
    Distances are squared Euclidean in float32 on centred coordinates (one matrix product per row chunk);
    each row is sorted once to read every size's threshold distance, so the largest-``k`` neighbour search
    serves all smaller sizes. The numba engine orders the columns by the cells' combination of labels over all
    labelings and counts, per combination, the cells within each threshold (branch-free, no scatter).
    Cells at exactly the threshold distance are taken in cell-index order (R's FNN breaks such ties by its
    search order); rows with such ties are recounted exactly. The cell itself is excluded by index, so a
    duplicate of it still counts as a neighbour.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    ks = [int(k) for k in ks]
    if not ks or any(k < 2 or k > n for k in ks) or ks != sorted(ks):
        raise ValueError(f"neighbourhood sizes must increase within [2, n={n}], got {ks}")
    lab = np.atleast_2d(np.asarray(labelings, dtype=np.int64))
    if lab.shape[1] != n or lab.min() < 0 or lab.max() >= n_labels:
        raise ValueError(f"labelings must be (L, n={n}) codes in [0, {n_labels})")
    if engine == "auto":
        engine = "numba" if _HAVE_NUMBA else "numpy"
    if engine not in ("numba", "numpy"):
        raise ValueError(f"engine must be 'auto', 'numba' or 'numpy', got {engine!r}")
    if engine == "numba" and not _HAVE_NUMBA:
        raise ValueError("engine='numba' needs numba installed; use engine='numpy'")
    n_sizes, n_lab = len(ks), lab.shape[0]
    # columns ordered by label combination ("segments"); col[q] = cell at column q, pos = its inverse
    combo, inverse = np.unique(lab.T, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    onehot = np.zeros((n, n_lab * n_labels), dtype=np.float32)  # cell -> one-hot labels of every labeling
    for m in range(n_lab):
        onehot[np.arange(n), m * n_labels + lab[m]] = 1.0
    if combo.shape[0] <= _MAX_SEGMENTS:  # one pass over segments of cells sharing all their labels
        views = [(inverse, combo, np.arange(n_lab))]
    else:  # many batches: one pass per labeling, segments of cells sharing that label
        views = [(lab[m], np.arange(n_labels)[:, None], np.array([m])) for m in range(n_lab)]
    view_data = []
    for key, combos, which in views:
        order = np.argsort(key, kind="stable")
        seg = np.searchsorted(key[order], np.arange(combos.shape[0] + 1)).astype(np.int64)
        digits = np.zeros((combos.shape[0], n_lab * n_labels))  # segment -> one-hot labels
        for j, m in enumerate(which):
            digits[np.arange(combos.shape[0]), m * n_labels + combos[:, j]] = 1.0
        view_data.append([order, seg, digits])
    col = view_data[0][0]  # distance columns are computed in the first view's order
    pos = np.empty(n, dtype=np.int64)
    pos[col] = np.arange(n)
    for v in view_data:
        v[0] = None if v[0] is col else pos[v[0]]  # columns of the first-view distances, per view
    fa, fb = _augment(x)
    fb = np.ascontiguousarray(fb[col])
    counts = np.zeros((n_sizes, n_lab, n, n_labels), dtype=np.int64)
    min_shell = np.full(n, n_sizes, dtype=np.int64)  # in column (segment) order
    chunk = max(1, min(n, chunk_bytes // (4 * n)))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        d = fa[r0:r1] @ fb.T
        d[np.arange(r1 - r0), pos[r0:r1]] = np.inf  # the cell itself
        srt = _sort_rows(d)
        out = counts[:, :, r0:r1]
        if engine == "numba":
            _count_numba(d, srt, ks, view_data, onehot, col, pos, n_lab, n_labels, out, min_shell)
        else:
            _count_numpy(d[:, pos], srt, ks, onehot, n_lab, n_labels, out, min_shell, pos)
    rows = np.arange(n)
    for m in range(n_lab):
        counts[:, m, rows, lab[m]] += 1  # the cell itself
    covered = min_shell[pos][None, :] <= np.arange(n_sizes)[:, None]
    return counts, covered


def _count_numba(d, srt, ks, views, onehot, col, pos, n_lab, n_labels, out, min_shell) -> None:
    """numba engine for one row chunk; ``d`` columns in the first view's order. Each view is (columns of
    ``d`` in its order or None, segment bounds, segment -> one-hot labels). Counts into ``out`` ``(S, L, c, B)``."""
    c = d.shape[0]
    ks_arr = np.asarray(ks)
    for s0 in range(0, len(ks), _GROUP):
        part = np.arange(s0, min(len(ks), s0 + _GROUP))
        sl = slice(s0, s0 + part.size)
        thr = np.full((c, _GROUP), np.inf, dtype=np.float32)
        thr[:, : part.size] = srt[:, ks_arr[part] - 2]
        acc = np.zeros((c * part.size, n_lab * n_labels))
        sh = np.empty(d.shape, dtype=np.int8)
        bad = None
        for v, (perm, seg, digits) in enumerate(views):
            dv = d if perm is None else np.take(d, perm, axis=1)
            le = np.empty((c, _GROUP, seg.size - 1), dtype=np.int32)
            _segment_kernel(dv, thr, seg, le, sh if v == 0 else np.empty(d.shape, dtype=np.int8))
            le = le[:, : part.size].astype(np.float64)
            acc += le.reshape(c * part.size, -1) @ digits
            if v == 0:  # more than k - 1 cells within a threshold: ties -> exact recount below
                bad = np.flatnonzero((le.sum(axis=2) != (ks_arr[part] - 1)[None, :]).any(axis=1))
        out[sl] = np.rint(acc).reshape(c, part.size, n_lab, n_labels).transpose(1, 2, 0, 3)
        for r in bad:
            sh_orig = _recount_row(d[r, pos], srt[r], ks_arr[part], onehot, n_lab, n_labels, out[sl][:, :, r])
            sh[r] = sh_orig[col]
        shell = sh.min(axis=0).astype(np.int64)  # padded +inf thresholds hold every cell: not counted
        np.minimum(min_shell, np.where(shell < part.size, shell + s0, len(ks)), out=min_shell)


def _recount_row(drow, srow, ks, onehot, n_lab, n_labels, out_row) -> np.ndarray:
    """Exact counts for one row (original cell order) with cells at the threshold taken in index order.
    Writes ``out_row`` ``(S, L, B)``; returns each cell's shell (number of sizes not holding it)."""
    prev = np.zeros(drow.shape, dtype=bool)
    sh = np.full(drow.shape, len(ks), dtype=np.int8)
    for s, k in enumerate(ks):
        t = srow[k - 2]
        mask = drow < t
        need = (k - 1) - int(mask.sum())
        if need > 0:
            mask[np.flatnonzero(drow == t)[:need]] = True
        mask |= prev
        sh[mask & ~prev] = s
        out_row[s] = np.rint(mask.astype(np.float32) @ onehot).reshape(n_lab, n_labels)
        prev = mask
    return sh


def _sort_rows(d: np.ndarray) -> np.ndarray:
    """Row-wise sort in two threads (numpy releases the GIL while sorting)."""
    if d.shape[0] < 64:
        return np.sort(d, axis=1)
    half = d.shape[0] // 2
    out = np.empty_like(d)

    def work(sl):
        out[sl] = np.sort(d[sl], axis=1)

    with ThreadPoolExecutor(max_workers=2) as ex:
        list(ex.map(work, [slice(0, half), slice(half, None)]))
    return out


def _count_numpy(d, srt, ks, onehot, n_lab, n_labels, out, min_shell, pos) -> None:
    """numpy engine for one row chunk (``d`` in original cell order; same tie rule as the numba engine)."""
    c = d.shape[0]
    prev = np.zeros(d.shape, dtype=bool)
    for s, k in enumerate(ks):
        thr = srt[:, k - 2]
        mask = d < thr[:, None]
        need = (k - 1) - mask.sum(axis=1)
        for r in np.flatnonzero(need > 0):  # cells at the threshold distance, in index order
            mask[r, np.flatnonzero(d[r] == thr[r])[: need[r]]] = True
        mask |= prev  # nested neighbourhoods
        newly = np.zeros(min_shell.shape, dtype=bool)
        newly[pos] = (mask & ~prev).any(axis=0)
        min_shell[newly & (min_shell > s)] = s
        out[s] = np.rint(mask.astype(np.float32) @ onehot).reshape(c, n_lab, n_labels).transpose(1, 0, 2)
        prev = mask


@dataclass
class KBETResult:
    """One kBET call (one set of cells, one ``k0``).

    ``observed``/``expected`` are R's per-repeat ``kBET.observed``/``kBET.expected`` (rejection rates);
    acceptance = 1 - rejection. ``note`` says why the result is NaN (empty when computed).
    """

    n: int
    k0: int
    test_size: int = 0
    n_batches: int = 0
    observed: np.ndarray = field(default_factory=lambda: np.array([]))
    expected: np.ndarray = field(default_factory=lambda: np.array([]))
    p_values: np.ndarray | None = None
    p_null: np.ndarray | None = None
    freq: np.ndarray | None = None
    adapted: bool = False
    n_outsiders: int = 0
    p_outsiders: float = np.nan
    note: str = ""

    @property
    def rejection(self) -> float:
        """R's ``summary$kBET.observed[1]`` (mean over repeats)."""
        return float(np.nanmean(self.observed)) if np.isfinite(self.observed).any() else np.nan

    @property
    def acceptance(self) -> float:
        return 1.0 - self.rejection

    @property
    def null_acceptance(self) -> float:
        return 1.0 - float(np.nanmean(self.expected)) if np.isfinite(self.expected).any() else np.nan


def not_computable(n: int, k0: int, n_batches: int) -> str:
    """Why kBET cannot run on ``n`` cells, ``k0``, ``n_batches`` (empty string when it can)."""
    if n < MIN_CELLS:
        return f"too few cells for kBET ({n} <= 10)"
    if n_batches < 2:
        return "one batch only: kBET needs at least two"
    if k0 < MIN_K0:
        return f"neighbourhood too small for kBET (k0={k0} < 10)"
    if k0 >= n:
        return f"k0={k0} >= number of cells {n}"
    return ""


def kbet_from_counts(
    counts: np.ndarray,
    covered: np.ndarray,
    batch: np.ndarray,
    n_batches: int,
    k0: int,
    *,
    n_repeat: int = 100,
    alpha: float = 0.05,
    adapt: bool = True,
    test_size: int | None = None,
    rng: np.random.Generator,
) -> KBETResult:
    """kBET given neighbourhood counts (observed labels in ``counts[0]``, permuted labels in ``counts[1:]``).

    Parameters
    ----------
    counts
        ``(1 + n_perm, n, B)`` batch counts in each cell's neighbourhood of size ``k0``.
    covered
        ``(n,)`` bool, the cell is in another cell's first ``k0 - 1`` neighbours (``False`` = outsider).
    batch
        ``(n,)`` codes ``0..B-1``, every code present.
    """
    n = batch.shape[0]
    res = KBETResult(n=n, k0=k0, n_batches=n_batches)
    freq = np.bincount(batch, minlength=n_batches) / n
    test_freq = freq
    if adapt:
        outsiders = np.flatnonzero(~covered)
        res.n_outsiders = int(outsiders.size)
        if outsiders.size:
            oc = np.bincount(batch[outsiders], minlength=n_batches)
            res.p_outsiders = float(chi2_pvalues(oc, freq, outsiders.size))
            if res.p_outsiders < alpha:  # NaN compares False, as R's !is.na guard
                inside = np.bincount(batch[covered], minlength=n_batches)
                test_freq = inside / inside.sum()
                res.adapted = True
    res.freq = test_freq
    # theislab/kBET chi_batch_test: an NA p-value (0/0 after adapt) is returned as 0, i.e. rejected
    p_obs = np.nan_to_num(chi2_pvalues(counts[0], test_freq, k0), nan=0.0)
    p_null = np.nan_to_num(chi2_pvalues(counts[1:], freq, k0), nan=0.0)
    res.p_values, res.p_null = p_obs, p_null
    ts = int(test_size) if test_size is not None and 1 <= int(test_size) <= n else default_test_size(n)
    res.test_size = ts
    rej_obs, val_obs = p_obs < alpha, ~np.isnan(p_obs)
    rej_null, val_null = p_null < alpha, ~np.isnan(p_null)
    observed = np.empty(n_repeat)
    expected = np.empty(n_repeat)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(n_repeat):
            idx = rng.choice(n, size=ts, replace=False)
            observed[i] = rej_obs[idx].sum() / val_obs[idx].sum()
            expected[i] = np.mean(rej_null[:, idx].sum(axis=1) / val_null[:, idx].sum(axis=1))
    res.observed, res.expected = observed, expected
    return res


def _svd_u(x: np.ndarray, dim: int = 50) -> np.ndarray:
    """R kBET's ``do.pca=TRUE`` space: left singular vectors of the (uncentred) input, ``min(dim, d)`` of them."""
    u, _, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, : min(dim, x.shape[1])]


def kbet(
    x,
    batch,
    k0s: int | Sequence[int],
    *,
    n_repeat: int = 100,
    alpha: float = 0.05,
    adapt: bool = True,
    n_perm: int = 3,
    test_size: int | None = None,
    do_pca: bool = False,
    seed: int | np.random.Generator = 0,
    engine: str = "auto",
) -> list[KBETResult]:
    """kBET on one set of cells for one or several neighbourhood sizes (one kNN pass for all).

    Parameters
    ----------
    x
        ``(n, d)`` embedding.
    batch
        ``(n,)`` batch labels (unused categories are dropped, as R's ``droplevels``).
    k0s
        Neighbourhood size(s), each including the cell itself.
    n_repeat, alpha, adapt, test_size
        As R's ``n_repeat``, ``alpha``, ``adapt``, ``testSize``.
    n_perm
        Label permutations for the null (R: 3).
    do_pca
        Search neighbours in R's ``do.pca=TRUE`` space (left singular vectors, <= 50) instead of ``x``.
    seed
        Seed or Generator (permutations first, then the repeats' test cells, size by size).
    engine
        Neighbour-counting engine of :func:`neighbourhood_counts`.

    Returns
    -------
    One :class:`KBETResult` per ``k0`` (NaN with ``note`` when not computable).
    """
    single = np.isscalar(k0s)
    k0s = [int(k) for k in np.atleast_1d(k0s)]
    x = as_embedding(x)
    b, cats = codes(batch)
    if (b < 0).any():
        raise ValueError("batch labels contain missing values; fill obs['batch'] before evaluating")
    present = np.unique(b)
    b = np.searchsorted(present, b)
    n, nb = b.shape[0], present.size
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    results: list[KBETResult | None] = [None] * len(k0s)
    todo = []
    for i, k in enumerate(k0s):
        why = not_computable(n, k, nb)
        if why:
            results[i] = KBETResult(n=n, k0=k, n_batches=nb, note=why,
                                    observed=np.full(n_repeat, np.nan), expected=np.full(n_repeat, np.nan))
        else:
            todo.append(i)
    if todo:
        space = _svd_u(x) if do_pca else x
        # R draws its 3 permutations once per kBET call; one call here serves all sizes, which share them
        perms = np.vstack([b] + [b[rng.permutation(n)] for _ in range(n_perm)])
        sizes = sorted({k0s[i] for i in todo})
        counts, covered = neighbourhood_counts(space, sizes, perms, nb, engine=engine)
        for i in todo:
            j = sizes.index(k0s[i])
            results[i] = kbet_from_counts(counts[j], covered[j], b, nb, k0s[i], n_repeat=n_repeat,
                                          alpha=alpha, adapt=adapt, test_size=test_size, rng=rng)
    return results[0] if single else results  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------
# protocols: per cell type over neighbourhood sizes (the paper), and Tran et al.'s pooled variant
# ----------------------------------------------------------------------------------------------------------
def _size_group(pct: float) -> str:
    return f"kbet@{pct:g}%"


def kbet_per_celltype(
    x,
    batch,
    cell_type,
    *,
    pcts: Sequence[float] = DEFAULT_PCTS,
    n_repeat: int = 100,
    alpha: float = 0.05,
    adapt: bool = True,
    n_perm: int = 3,
    test_size: int | None = None,
    do_pca: bool = False,
    seed: int = 0,
    metric: str = "kbet_acceptance",
) -> tuple[list[dict], list[dict]]:
    """The paper's protocol: kBET within each cell type at ``k0 = floor(pct * n_type / 100)``.

    Returns tidy rows (per ``type|kbet@pct%``, per type averaged over sizes, per size averaged over types,
    and ``all``) and per-repeat rows. Unlabelled cells are ignored; types that are too small or sit in one
    batch get NaN rows with the reason. Also reports ``<metric>_null`` (acceptance under permuted labels).
    """
    x = as_embedding(x)
    ct, types = codes(cell_type)
    batch = np.asarray(pd.Series(batch).astype("object"))
    pcts = [float(p) for p in pcts]
    if any(not 0 < p < 100 for p in pcts):
        raise ValueError(f"kbet pcts must lie in (0, 100), got {pcts}")
    seqs = np.random.SeedSequence(seed).spawn(max(1, len(types)))
    tidy, reps = [], []
    table = {}  # (type, pct) -> (acceptance, null acceptance)
    null_metric = f"{metric}_null"
    for t, name in enumerate(types):
        idx = np.flatnonzero(ct == t)
        n_t = idx.size
        k0s = [int(math.floor(p * n_t / 100)) for p in pcts]
        res = kbet(x[idx], batch[idx], k0s, n_repeat=n_repeat, alpha=alpha, adapt=adapt, n_perm=n_perm,
                   test_size=test_size, do_pca=do_pca, seed=np.random.default_rng(seqs[t]))
        for p, r in zip(pcts, res):
            g = f"{name}|{_size_group(p)}"
            note = r.note or (f"k0={r.k0}, testSize={r.test_size}" + (
                f", adapted ({r.n_outsiders} outsiders)" if r.adapted else ""))
            tidy.append(row(metric, g, r.acceptance, n_t, note))
            tidy.append(row(null_metric, g, r.null_acceptance, n_t, r.note))
            table[(name, p)] = (r.acceptance, r.null_acceptance, r.note)
            for i in range(n_repeat):
                reps.append({**row(metric, g, 1.0 - r.observed[i], n_t, r.note), "repeat": i})
                reps.append({**row(null_metric, g, 1.0 - r.expected[i], n_t, r.note), "repeat": i})
        accs = [table[(name, p)][0] for p in pcts]
        nulls = [table[(name, p)][1] for p in pcts]
        ok = np.isfinite(accs)
        if ok.any():
            note = "" if ok.all() else f"mean over {ok.sum()} of {len(pcts)} sizes"
            tidy.append(row(metric, str(name), float(np.mean(np.asarray(accs)[ok])), n_t, note))
            tidy.append(row(null_metric, str(name), float(np.nanmean(nulls)), n_t, note))
        else:
            why = table[(name, pcts[0])][2]
            tidy.append(nan_row(metric, str(name), n_t, why))
            tidy.append(nan_row(null_metric, str(name), n_t, why))
    counts_t = {name: int((ct == t).sum()) for t, name in enumerate(types)}
    for p in pcts:
        vals = [(table[(nm, p)][0], table[(nm, p)][1], counts_t[nm]) for nm in types]
        ok = [v for v in vals if np.isfinite(v[0])]
        if ok:
            note = "" if len(ok) == len(vals) else f"mean over {len(ok)} of {len(vals)} cell types"
            n_ok = sum(v[2] for v in ok)
            tidy.append(row(metric, _size_group(p), float(np.mean([v[0] for v in ok])), n_ok, note))
            tidy.append(row(null_metric, _size_group(p), float(np.mean([v[1] for v in ok])), n_ok, note))
        else:
            tidy.append(nan_row(metric, _size_group(p), 0, "no cell type computable at this size"))
            tidy.append(nan_row(null_metric, _size_group(p), 0, "no cell type computable at this size"))
    # overall: mean over cell types of their size-averaged acceptance
    per_type = [(table_mean, counts_t[nm]) for nm in types
                for table_mean in [np.nanmean([table[(nm, p)][0] for p in pcts])
                                   if np.isfinite([table[(nm, p)][0] for p in pcts]).any() else np.nan]]
    per_type_null = [np.nanmean([table[(nm, p)][1] for p in pcts])
                     if np.isfinite([table[(nm, p)][1] for p in pcts]).any() else np.nan for nm in types]
    ok = [i for i, (v, _) in enumerate(per_type) if np.isfinite(v)]
    if ok:
        note = "" if len(ok) == len(types) else f"mean over {len(ok)} of {len(types)} cell types"
        n_ok = sum(per_type[i][1] for i in ok)
        tidy.append(row(metric, "all", float(np.mean([per_type[i][0] for i in ok])), n_ok, note))
        tidy.append(row(null_metric, "all", float(np.mean([per_type_null[i] for i in ok])), n_ok, note))
    else:
        why = "no cell type computable (too small or one batch)" if len(types) else "no labelled cells"
        tidy.append(nan_row(metric, "all", 0, why))
        tidy.append(nan_row(null_metric, "all", 0, why))
    return tidy, reps


def kbet_pooled(
    x,
    batch,
    cell_type,
    *,
    pcts: Sequence[float] = DEFAULT_PCTS,
    n_repeat: int = 100,
    alpha: float = 0.05,
    adapt: bool = True,
    n_perm: int = 3,
    test_size: int | None = None,
    do_pca: bool = False,
    seed: int = 0,
    max_cells: int | None = None,
    metric: str = "kbet_acceptance_pooled",
) -> tuple[list[dict], list[dict]]:
    """Tran et al. (2020)'s variant: cell types present in every batch, each downsampled to equal batch
    sizes (the smallest batch of that type), pooled; kBET at ``k0 = floor(pct * n_pooled / 100)``;
    the value is the median acceptance over repeats.

    The cost grows with the square of the pooled size (k0 reaches a quarter of it): ``max_cells``
    subsamples the pool uniformly (seeded) beforehand; ``None`` keeps it whole."""
    x = as_embedding(x)
    ct, types = codes(cell_type)
    b, _ = codes(batch)
    nb = np.unique(b).size
    rng = np.random.default_rng(seed)
    keep = []
    for t in range(len(types)):
        idx = np.flatnonzero(ct == t)
        per_b = [idx[b[idx] == j] for j in range(nb)]
        m = min(len(p) for p in per_b) if per_b else 0
        if m == 0:
            continue
        keep.extend(np.concatenate([rng.choice(p, size=m, replace=False) for p in per_b]))
    keep = np.sort(np.asarray(keep, dtype=np.int64))
    if max_cells is not None and keep.size > max_cells:
        keep = np.sort(rng.choice(keep, size=int(max_cells), replace=False))
    n = keep.size
    tidy, reps = [], []
    if n == 0:
        why = "no cell type present in every batch" if len(types) else "no labelled cells"
        for p in pcts:
            tidy.append(nan_row(metric, _size_group(p), 0, why))
        tidy.append(nan_row(metric, "all", 0, why))
        return tidy, reps
    k0s = [int(math.floor(p * n / 100)) for p in pcts]
    res = kbet(x[keep], np.asarray(b)[keep], k0s, n_repeat=n_repeat, alpha=alpha, adapt=adapt,
               n_perm=n_perm, test_size=test_size, do_pca=do_pca, seed=rng)
    meds = []
    for p, r in zip(pcts, res):
        acc = 1.0 - r.observed
        med = float(np.nanmedian(acc)) if np.isfinite(acc).any() else np.nan
        meds.append(med)
        tidy.append(row(metric, _size_group(p), med, n, r.note or f"k0={r.k0}, median over {n_repeat} repeats"))
        for i in range(n_repeat):
            reps.append({**row(metric, _size_group(p), acc[i], n, r.note), "repeat": i})
    ok = np.isfinite(meds)
    if ok.any():
        tidy.append(row(metric, "all", float(np.mean(np.asarray(meds)[ok])), n,
                        "" if ok.all() else f"mean over {ok.sum()} of {len(pcts)} sizes"))
    else:
        tidy.append(nan_row(metric, "all", n, res[0].note))
    return tidy, reps
