"""kBET: p-values, neighbourhood counting, adapt, permutation null and NaN rules, checked against hand
computations and a literal loop port of theislab/kBET R/kBET.R."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2

import davae_study.metrics.kbet as K  # noqa: N812
from davae_study.metrics.kbet import (
    chi2_pvalues,
    default_test_size,
    kbet,
    kbet_per_celltype,
    kbet_pooled,
    neighbourhood_counts,
)

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo" / "seuratTools_ifnb1k.h5ad"


# ---------------------------------------------------------------------------------------------- p-values
def test_pvalue_two_batches_equals_closed_form():
    # counts (3, 1), f = (1/2, 1/2), k0 = 4: chi2 = 1/2 + 1/2 = 1, dof 1 -> p = erfc(sqrt(1/2))
    p = chi2_pvalues(np.array([3, 1]), np.array([0.5, 0.5]), 4)
    assert p == pytest.approx(math.erfc(math.sqrt(0.5)), rel=1e-13)


def test_pvalue_three_batches_equals_closed_form():
    # counts (5, 0, 1), f = (1/2, 1/4, 1/4), k0 = 6: expected (3, 1.5, 1.5);
    # chi2 = 4/3 + 1.5 + 1/6 = 3, dof 2 -> p = exp(-3/2)
    p = chi2_pvalues(np.array([5, 0, 1]), np.array([0.5, 0.25, 0.25]), 6)
    assert p == pytest.approx(math.exp(-1.5), rel=1e-13)


def test_pvalues_equal_r_formula_vectorised():
    rng = np.random.default_rng(0)
    freq = np.array([0.2, 0.3, 0.5])
    counts = rng.multinomial(40, freq, size=500)
    stat = ((counts - 40 * freq) ** 2 / (40 * freq)).sum(axis=1)
    r_style = 1 - chi2.cdf(stat, 2)  # R: 1 - pchisq(chi.sq.value, df)
    np.testing.assert_allclose(chi2_pvalues(counts, freq, 40), r_style, rtol=0, atol=1e-14)


def test_pvalue_zero_expected_frequency_follows_r():
    # after adapt a batch can have frequency 0: 0/0 -> NaN (NA in R), x/0 -> inf -> p = 0
    p = chi2_pvalues(np.array([[4, 0], [3, 1]]), np.array([1.0, 0.0]), 4)
    assert np.isnan(p[0]) and p[1] == 0.0


def test_default_test_size_rule():
    # ceiling(0.1 n), raised to 25 when smaller and n > 25
    assert [default_test_size(n) for n in (11, 20, 25, 26, 250, 251, 1000)] == [2, 2, 3, 25, 25, 26, 100]


# ------------------------------------------------------------------------------------ neighbour counting
def _brute_counts(x, ks, labs, n_labels):
    fa, fb = K._augment(np.asarray(x, dtype=float))
    d = fa @ fb.T
    d[np.arange(len(d)), np.arange(len(d))] = np.inf
    order = np.argsort(d, axis=1, kind="stable")  # ties -> lower cell index
    n = len(d)
    counts = np.zeros((len(ks), labs.shape[0], n, n_labels), dtype=int)
    covered = np.zeros((len(ks), n), dtype=bool)
    for s, k in enumerate(ks):
        nb = order[:, : k - 1]
        covered[s, nb.ravel()] = True
        for m in range(labs.shape[0]):
            for i in range(n):
                counts[s, m, i] = np.bincount(np.append(labs[m][nb[i]], labs[m][i]), minlength=n_labels)
    return counts, covered


@pytest.mark.parametrize("engine", ["numba", "numba-per-labeling", "numpy"])
def test_neighbourhood_counts_match_brute_force_with_ties(engine, monkeypatch):
    if engine == "numba-per-labeling":  # the many-batches path: one counting pass per labeling
        monkeypatch.setattr(K, "_MAX_SEGMENTS", 1)
        engine = "numba"
    rng = np.random.default_rng(1)
    n = 150
    x = np.round(rng.normal(size=(n, 4)), 1)  # coarse grid: many exact distance ties
    x[5] = x[6] = x[7]  # duplicates
    b = rng.integers(0, 3, n)
    labs = np.vstack([b] + [b[rng.permutation(n)] for _ in range(3)])
    ks = [3, 10, 20, 35, 50, 70, 90]  # 7 sizes: two compiled passes
    got, cov = neighbourhood_counts(x, ks, labs, 3, engine=engine)
    ref, ref_cov = _brute_counts(x, ks, labs, 3)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(cov, ref_cov)
    assert (got.sum(axis=-1) == np.asarray(ks)[:, None, None]).all()  # k0 cells per neighbourhood


def test_neighbourhood_counts_hand_example():
    # 1-D: 0 1 2 | 10 11 | 30 ; k0 = 3 -> self + 2 nearest others
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [30.0]])
    b = np.array([0, 0, 1, 1, 1, 0])
    counts, covered = neighbourhood_counts(x, [3], b[None, :], 2)
    # neighbourhoods: 0:{0,1,2} 1:{1,0,2} 2:{2,1,0} 3:{3,4,2} 4:{4,3,2} 5:{5,4,3}
    expect = np.array([[2, 1], [2, 1], [2, 1], [0, 3], [0, 3], [1, 2]])
    np.testing.assert_array_equal(counts[0, 0], expect)
    # cell 5 (at 30) is nobody's neighbour: the only outsider
    np.testing.assert_array_equal(covered[0], [True, True, True, True, True, False])


# ----------------------------------------------------------------------------- literal R loop reference
def _r_kbet_reference(x, batch, k0, *, n_repeat, alpha, adapt, seed, n_perm=3):
    """Line-by-line port of R/kBET.R (kBET-only branch, latest version): per repeat, sample testSize cells,
    env = knn[idx, 1:(k0-1)] + idx, chi_batch_test per row with table(); null = mean over the 3 permuted
    labelings of the rejection fraction. Random draws in the same order as davae_study's kbet()."""
    rng = np.random.default_rng(seed)
    n = len(batch)
    nb = batch.max() + 1
    dof = nb - 1
    freq = np.bincount(batch, minlength=nb) / n
    shuff = [batch[rng.permutation(n)] for _ in range(n_perm)]
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    knn = np.argsort(d, axis=1, kind="stable")[:, : k0 - 1]

    def chi_batch_test(knn_set, class_freq, lab):
        observed = np.bincount(lab[knn_set], minlength=nb)
        expected = class_freq * len(knn_set)
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = np.sum((observed - expected) ** 2 / expected)
        result = 1 - chi2.cdf(stat, dof)
        return 0.0 if np.isnan(result) else result  # kBET-utils.R: if (is.na(result)) return(0)

    cf = freq
    outsider = np.setdiff1d(np.arange(n), knn.ravel())
    if adapt and outsider.size:
        p_out = chi_batch_test(outsider, freq, batch)
        if p_out < alpha:
            keep = np.setdiff1d(np.arange(n), outsider)
            cf = np.bincount(batch[keep], minlength=nb) / keep.size
    ts = default_test_size(n)
    observed, expected = np.empty(n_repeat), np.empty(n_repeat)
    for i in range(n_repeat):
        idx = rng.choice(n, size=ts, replace=False)
        env = np.column_stack([knn[idx], idx])
        p_test = np.array([chi_batch_test(e, cf, batch) for e in env])
        p_null = np.array([[chi_batch_test(e, freq, s) for e in env] for s in shuff])
        observed[i] = np.sum(p_test < alpha) / np.sum(~np.isnan(p_test))
        expected[i] = np.mean([np.sum(p < alpha) / np.sum(~np.isnan(p)) for p in p_null])
    return observed, expected


@pytest.mark.parametrize("adapt", [True, False])
def test_kbet_equals_literal_r_loop(adapt):
    rng = np.random.default_rng(3)
    n = 160
    batch = rng.integers(0, 3, n)
    # a partial batch effect, plus a few far-off batch-2 cells that nobody picks as a neighbour
    x = rng.normal(size=(n, 6)) + 0.8 * batch[:, None]
    far = np.flatnonzero(batch == 2)[:8]
    x[far] += 40.0 * rng.normal(size=(far.size, 6))
    obs_ref, exp_ref = _r_kbet_reference(x, batch, 15, n_repeat=30, alpha=0.05, adapt=adapt, seed=11)
    res = kbet(x, batch, 15, n_repeat=30, alpha=0.05, adapt=adapt, seed=11)
    np.testing.assert_array_equal(res.observed, obs_ref)
    np.testing.assert_array_equal(res.expected, exp_ref)
    assert res.test_size == 25
    assert res.adapted == adapt  # the far-off cells are outsiders with a significant batch make-up
    assert 0 < res.rejection < 1 and res.null_acceptance > res.acceptance


# ---------------------------------------------------------------------------------------- adapt branch
def _adapt_case():
    """40 cells on a line (t = 0..39, batches alternating) and 40 batch-1 cells far away on orthogonal
    axes. With k0 = 12 each neighbourhood is 12 consecutive line cells (6 + 6), and the 40 far cells are in
    nobody's first 11 neighbours: the outsiders."""
    n_line, n_far = 40, 40
    x = np.zeros((n_line + n_far, 1 + n_far))
    x[:n_line, 0] = np.arange(n_line)
    x[n_line + np.arange(n_far), 1 + np.arange(n_far)] = 50.0
    batch = np.concatenate([np.arange(n_line) % 2, np.ones(n_far, dtype=int)])
    return x, batch


def test_adapt_outsiders_and_frequencies_by_hand():
    x, batch = _adapt_case()
    res = kbet(x, batch, 12, n_repeat=20, adapt=True, seed=0)
    # outsiders: 40 cells, all batch 1; global f = (20/80, 60/80): expected (10, 30) ->
    # chi2 = 100/10 + 100/30 = 40/3 (dof 1)
    assert res.n_outsiders == 40
    assert res.p_outsiders == pytest.approx(math.erfc(math.sqrt(20 / 3)), rel=1e-12)
    assert res.adapted
    np.testing.assert_allclose(res.freq, [0.5, 0.5])
    # every neighbourhood holds 6 + 6 -> chi2 = 0 against (1/2, 1/2): p = 1, nothing rejected
    np.testing.assert_allclose(res.p_values, 1.0)
    assert res.acceptance == 1.0


def test_without_adapt_the_same_neighbourhoods_are_rejected():
    x, batch = _adapt_case()
    res = kbet(x, batch, 12, n_repeat=20, adapt=False, seed=0)
    # expected (3, 9) for counts (6, 6): chi2 = 9/3 + 9/9 = 4 -> p = erfc(sqrt(2)) = 0.0455 < 0.05
    np.testing.assert_allclose(res.p_values, math.erfc(math.sqrt(2.0)), rtol=1e-12)
    assert not res.adapted and res.acceptance == 0.0


def test_batch_made_only_of_outsiders_is_rejected_as_in_r():
    # batch 2 = the 40 far cells, all outsiders: adapted frequencies (1/2, 1/2, 0); line neighbourhoods
    # (6, 6, 0) give 0/0 -> NA -> p = 0 in theislab/kBET; far cells hold their own batch-2 label -> x/0 -> p = 0
    x, batch = _adapt_case()
    batch[40:] = 2
    res = kbet(x, batch, 12, n_repeat=10, adapt=True, seed=0)
    assert res.adapted and np.allclose(res.freq, [0.5, 0.5, 0.0])
    assert (res.p_values == 0).all() and res.acceptance == 0.0


def test_permutation_null_uses_unadapted_frequencies():
    x, batch = _adapt_case()
    res = kbet(x, batch, 12, n_repeat=5, adapt=True, seed=4)
    assert res.adapted and res.p_null.shape == (3, 80)
    # recompute the null p-values of permutation 0 from the permuted labels the generator produced
    rng = np.random.default_rng(4)
    perm = batch[rng.permutation(80)]
    c_perm, _ = neighbourhood_counts(x, [12], perm[None, :], 2)
    np.testing.assert_allclose(res.p_null[0], chi2_pvalues(c_perm[0, 0], [0.25, 0.75], 12), rtol=1e-12)


# ------------------------------------------------------------------------------------------ NaN rules
def test_not_computable_cases_give_nan_with_reason():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3))
    r = kbet(x, np.arange(10) % 2, 10, n_repeat=5)
    assert np.isnan(r.acceptance) and "too few cells" in r.note
    x = rng.normal(size=(60, 3))
    r = kbet(x, np.arange(60) % 2, 9, n_repeat=5)
    assert np.isnan(r.acceptance) and "k0=9 < 10" in r.note
    r = kbet(x, np.zeros(60, dtype=int), 12, n_repeat=5)
    assert np.isnan(r.acceptance) and "one batch" in r.note


def test_per_celltype_keeps_small_and_one_batch_types_as_nan_rows():
    rng = np.random.default_rng(2)
    n_a, n_b, n_c = 300, 120, 8
    x = np.vstack([rng.normal(size=(n_a, 5)), rng.normal(size=(n_b, 5)) + 10, rng.normal(size=(n_c, 5)) - 10])
    ct = np.array(["A"] * n_a + ["B"] * n_b + ["C"] * n_c)
    batch = np.concatenate([rng.integers(0, 2, n_a), np.zeros(n_b, dtype=int), rng.integers(0, 2, n_c)])
    tidy, reps = kbet_per_celltype(x, batch.astype(str), ct, n_repeat=10, seed=0)
    rows = {(r["metric"], r["group"]): r for r in tidy}
    a = [rows[("kbet_acceptance", f"A|kbet@{p}%")]["value"] for p in (5, 10, 15, 20, 25)]
    assert all(0.7 < v <= 1.0 for v in a)  # A is mixed
    assert np.isnan(rows[("kbet_acceptance", "B")]["value"]) and "one batch" in rows[("kbet_acceptance", "B")]["note"]
    assert np.isnan(rows[("kbet_acceptance", "C|kbet@25%")]["value"])
    assert "too few cells" in rows[("kbet_acceptance", "C")]["note"]
    assert rows[("kbet_acceptance", "all")]["value"] == pytest.approx(np.mean(a))
    assert "1 of 3" in rows[("kbet_acceptance", "all")]["note"]
    assert {r["repeat"] for r in reps} == set(range(10))
    assert len([r for r in reps if r["metric"] == "kbet_acceptance"]) == 3 * 5 * 10


def test_pooled_variant_downsamples_common_types_to_equal_batches():
    rng = np.random.default_rng(5)
    ct = np.array(["A"] * 200 + ["B"] * 100 + ["C"] * 50)
    batch = np.concatenate([np.r_[np.zeros(150), np.ones(50)], np.r_[np.zeros(30), np.ones(70)], np.zeros(50)])
    x = rng.normal(size=(350, 4)) + np.where(ct == "B", 8.0, 0.0)[:, None]
    tidy, reps = kbet_pooled(x, batch, ct, n_repeat=10, seed=0)
    # C is in one batch -> dropped; A -> 50 + 50, B -> 30 + 30: 160 pooled cells
    rows = {r["group"]: r for r in tidy}
    assert {r["n"] for r in tidy} == {160}
    # k0 = floor(0.05 * 160) = 8 < 10: not computable, kept as a NaN row
    assert np.isnan(rows["kbet@5%"]["value"]) and "k0=8 < 10" in rows["kbet@5%"]["note"]
    assert all(0.5 < rows[f"kbet@{p}%"]["value"] <= 1 for p in (10, 15, 20, 25))
    assert "4 of 5" in rows["all"]["note"]
    capped, _ = kbet_pooled(x, batch, ct, n_repeat=3, seed=0, max_cells=100)
    assert {r["n"] for r in capped} == {100}
    assert len(reps) == 5 * 10


def test_real_data_batch_effect_and_shuffled_labels():
    import anndata as ad
    import scanpy as sc

    a = ad.read_h5ad(DEMO)
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=20)
    emb = a.obsm["X_pca"]
    cd14 = (a.obs["cell_type"] == "CD14 Mono").to_numpy()
    batch = a.obs["batch"].to_numpy()
    raw = kbet(emb[cd14], batch[cd14], 30, n_repeat=20, seed=0)
    shuffled = kbet(emb[cd14], np.random.default_rng(0).permutation(batch[cd14]), 30, n_repeat=20, seed=0)
    # Kang 2018 CTRL vs STIM: a strong batch (stimulation) effect within CD14 monocytes
    assert raw.acceptance < 0.1
    assert shuffled.acceptance > 0.8
    assert raw.null_acceptance > 0.8


def test_do_pca_searches_r_default_space():
    # R kBET's do.pca=TRUE finds neighbours on svd(x)$u (uncentred, <= 50 columns)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(120, 8)) * np.arange(1, 9)  # unequal scales: the two spaces differ
    batch = rng.integers(0, 2, 120)
    u = np.linalg.svd(x, full_matrices=False)[0]
    via_flag = kbet(x, batch, 15, n_repeat=10, do_pca=True, seed=1)
    direct = kbet(u, batch, 15, n_repeat=10, seed=1)
    np.testing.assert_array_equal(via_flag.observed, direct.observed)
    np.testing.assert_array_equal(via_flag.p_values, direct.p_values)
