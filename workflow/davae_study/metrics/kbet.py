"""kBET (k-nearest-neighbour batch effect test; Büttner et al. 2019, Nat. Methods), faithful to the R
reference ``theislab/kBET`` (``R/kBET.R``, ``R/kBET-utils.R``), vectorised.

What the R code does, and what this module reproduces (see docs/metrics.md for line-level notes):

* neighbourhood of a tested cell = the cell itself + its ``k0 - 1`` nearest other cells (``FNN::get.knn``,
  exact Euclidean; ``env <- cbind(knn[idx, 1:(k0-1)], idx)``);
* expected batch frequencies ``f_b = n_b / n`` over the cells given to kBET; per tested cell
  ``chi2 = sum_b (o_b - f_b k0)^2 / (f_b k0)`` over all B batches, ``p = 1 - pchisq(chi2, B - 1)``
  (``chi_batch_test``); a NaN statistic (0/0 after ``adapt``) gives an NA p-value that is left out of the
  rejection rate (``sum(p < alpha, na.rm=TRUE) / sum(!is.na(p))``);
* ``testSize = ceiling(0.1 n)``, raised to 25 when smaller and ``n > 25``; each of ``n_repeat`` repeats
  tests ``testSize`` cells drawn without replacement; ``kBET.observed`` = fraction with ``p < alpha``;
* null: the batch labels are permuted 3 times once per call (``batch.shuff``); each repeat tests the same
  neighbourhoods under every permutation with the *unadapted* frequencies; ``kBET.expected`` = mean over
  permutations of the rejection fraction;
* ``adapt``: "outsiders" = cells that are in no cell's first ``k0 - 1`` neighbours; their batch counts are
  tested as one set against ``f`` (``chi_batch_test(outsider, ...)``); if ``p < alpha`` the observed test uses
  the batch frequencies of the non-outsiders instead;
* ``n <= 10`` or ``k0 < 10`` -> NA (here: NaN with the reason); one batch -> NaN (dof = 0).

Speed: per call, distances are computed in row chunks and one ``np.partition`` with every requested ``k0``
gives each cell's neighbour sets for all sizes at once (the largest-k0 query reused for the smaller ones);
batch counts come from a matrix product of the neighbour mask with one-hot labels (observed and permuted
labels together); each cell's p-value is computed once and the repeats only subsample cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import chi2

from ._table import as_embedding, codes, nan_row, row

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


def _sq_dist_rows(xc: np.ndarray, sqc: np.ndarray, x: np.ndarray, sq: np.ndarray) -> np.ndarray:
    d = xc @ x.T
    d *= -2.0
    d += sqc[:, None]
    d += sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def neighbourhood_counts(
    x: np.ndarray,
    ks: Sequence[int],
    labelings: Sequence[np.ndarray],
    n_labels: int,
    *,
    chunk_bytes: int = 1 << 26,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Label counts in every cell's kBET neighbourhood (itself + ``k - 1`` nearest others), for many ``k``.

    Parameters
    ----------
    x
        ``(n, d)`` coordinates; exact Euclidean distances.
    ks
        Neighbourhood sizes ``k0`` (each ``2 <= k0 <= n``).
    labelings
        One ``(L_j, n)`` integer array per ``k`` (codes ``0..n_labels-1``): the labelings counted at that size
        (row 0 the observed batches, further rows permutations).
    n_labels
        Number of label codes ``B``.

    Returns
    -------
    counts
        Per ``k``, an ``(L_j, n, B)`` int array of label counts (the cell itself included).
    covered
        ``(len(ks), n)`` bool: cell is among some other cell's ``k - 1`` nearest neighbours (``!outsider``).

    Notes
    -----
    Ties at the ``(k-1)``-th distance are broken towards the lower cell index (R's FNN breaks them by its
    search order); the cell itself is excluded by index, so a duplicate of it still counts as a neighbour.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = x.shape[0]
    ks = [int(k) for k in ks]
    if any(k < 2 or k > n for k in ks):
        raise ValueError(f"neighbourhood sizes must lie in [2, n={n}], got {ks}")
    sq = np.einsum("ij,ij->i", x, x)
    onehots = []
    for lab in labelings:
        lab = np.atleast_2d(np.asarray(lab))
        oh = np.zeros((n, lab.shape[0] * n_labels), dtype=np.float32)
        for j in range(lab.shape[0]):
            oh[np.arange(n), j * n_labels + lab[j]] = 1.0
        onehots.append((lab, oh))
    counts = [np.zeros((lab.shape[0], n, n_labels), dtype=np.int64) for lab, _ in onehots]
    covered = np.zeros((len(ks), n), dtype=bool)
    kth = sorted({k - 2 for k in ks})
    chunk = max(1, min(n, chunk_bytes // (8 * n)))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        rows = np.arange(r1 - r0)
        d = _sq_dist_rows(x[r0:r1], sq[r0:r1], x, sq)
        d[rows, r0 + rows] = np.inf  # exclude the cell itself
        part = np.partition(d, kth, axis=1)
        for j, k in enumerate(ks):
            thr = part[:, k - 2]
            mask = d <= thr[:, None]
            tied = np.flatnonzero(mask.sum(axis=1) != k - 1)
            for r in tied:  # rare: exact ties at the threshold distance
                lt = d[r] < thr[r]
                need = k - 1 - int(lt.sum())
                mask[r] = lt
                mask[r, np.flatnonzero(d[r] == thr[r])[:need]] = True
            covered[j] |= mask.any(axis=0)
            lab, oh = onehots[j]
            c = (mask.astype(np.float32) @ oh).reshape(r1 - r0, lab.shape[0], n_labels)
            c = np.rint(c).astype(np.int64).transpose(1, 0, 2)
            own = lab[:, r0:r1]
            np.add.at(c, (np.arange(lab.shape[0])[:, None], rows[None, :], own), 1)
            counts[j][:, r0:r1] = c
    return counts, covered


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
    p_obs = chi2_pvalues(counts[0], test_freq, k0)
    p_null = chi2_pvalues(counts[1:], freq, k0)
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
        Seed or Generator; each size gets its own permutations, like separate R calls.

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
        perms = [np.vstack([b] + [b[rng.permutation(n)] for _ in range(n_perm)]) for _ in todo]
        counts, covered = neighbourhood_counts(space, [k0s[i] for i in todo], perms, nb)
        for j, i in enumerate(todo):
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
    metric: str = "kbet_acceptance_pooled",
) -> tuple[list[dict], list[dict]]:
    """Tran et al. (2020)'s variant: cell types present in every batch, each downsampled to equal batch
    sizes (the smallest batch of that type), pooled; kBET at ``k0 = floor(pct * n_pooled / 100)``;
    the value is the median acceptance over repeats."""
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
