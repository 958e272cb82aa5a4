"""ARI (Tran et al.), LISI, batch ASW and graph connectivity on hand-computed small cases."""

from __future__ import annotations

import numpy as np
import pytest

from davae_study.metrics import ari_tran, asw_batch, graph_connectivity
from davae_study.metrics.ari import common_types, stratified_subsample
from davae_study.metrics.lisi import lisi, lisi_per_cell, neighbour_probabilities


def _rows(rows):
    return {(r["metric"], r["group"]): r for r in rows}


# ------------------------------------------------------------------------------------------------- ARI
def test_stratified_subsample_takes_round_80_percent_of_every_type():
    labels = np.repeat([0, 1, 2, 3], [10, 5, 3, 17])
    sel = stratified_subsample(labels, 0.8, np.random.default_rng(0))
    # round(8) = 8, round(4) = 4, round(2.4) = 2, round(13.6) = 14; no cell twice
    assert np.bincount(labels[sel]).tolist() == [8, 4, 2, 14]
    assert np.unique(sel).size == sel.size


def test_common_types_are_those_in_every_batch():
    labels = np.array([0, 0, 1, 1, 2, 2])
    batch = np.array([0, 1, 0, 1, 0, 0])
    assert common_types(labels, batch).tolist() == [0, 1]


def _blobs(rng, sizes, centres, batches):
    x = np.vstack([rng.normal(scale=0.3, size=(n, 2)) + c for n, c in zip(sizes, centres)])
    ct = np.repeat(np.arange(len(sizes)), sizes).astype(str)
    return x, ct, np.asarray(batches)


def test_ari_separated_types_mixed_batches():
    rng = np.random.default_rng(0)
    sizes = [60, 50, 40]
    batch = np.concatenate([np.zeros(60), rng.integers(0, 2, 50), rng.integers(0, 2, 40)]).astype(int)
    x, ct, b = _blobs(rng, sizes, [(0, 0), (20, 0), (0, 20)], batch)
    tidy, reps = ari_tran(x, b, ct, n_iter=5, kmeans_n_init=5, seed=0)
    rows = _rows(tidy)
    assert rows[("ari_celltype", "all")]["value"] == pytest.approx(1.0)
    # type 0 sits in batch 0 only: the batch ARI uses types 1 and 2, round(0.8 * 50) + round(0.8 * 40) cells
    assert rows[("one_minus_ari_batch", "all")]["n"] == 40 + 32
    assert rows[("one_minus_ari_batch", "all")]["value"] > 0.95
    assert rows[("ari_celltype", "all")]["n"] == 48 + 40 + 32
    assert len(reps) == 2 * 5 and {r["repeat"] for r in reps} == set(range(5))


def test_ari_batch_driven_embedding_scores_low():
    rng = np.random.default_rng(1)
    n = 80
    ct = rng.integers(0, 2, n).astype(str)
    b = np.repeat([0, 1], n // 2)
    x = rng.normal(scale=0.3, size=(n, 2)) + 20 * b[:, None]  # clusters follow batch, not type
    rows = _rows(ari_tran(x, b, ct, n_iter=5, seed=0)[0])
    assert rows[("one_minus_ari_batch", "all")]["value"] == pytest.approx(0.0, abs=1e-12)
    assert rows[("ari_celltype", "all")]["value"] < 0.2


def test_ari_batch_without_a_type_in_every_batch_uses_per_type_fallback():
    """The 293T / Jurkat / mixture design: type 0 in batches 0 and 2, type 1 in batches 1 and 2."""
    rng = np.random.default_rng(2)
    sizes = [60, 60]
    b = np.concatenate([rng.choice([0, 2], 60), rng.choice([1, 2], 60)])
    x_mixed, ct, _ = _blobs(rng, sizes, [(0, 0), (20, 0)], b)
    rows = _rows(ari_tran(x_mixed, b, ct, n_iter=5, kmeans_n_init=5, seed=0)[0])
    # integrated: within each type the batches share one cluster, so 1 - ARI batch is 1 (pooling would not be)
    assert rows[("one_minus_ari_batch", "all")]["value"] == pytest.approx(1.0)
    assert "types in >= 2 batches" in rows[("one_minus_ari_batch", "all")]["note"]
    assert rows[("one_minus_ari_batch", "all")]["n"] == 48 + 48
    # unintegrated: the mixture batch lies far from the pure batches, so k-means (k=2) splits by batch and,
    # within each type, the clusters are the batches: 1 - ARI batch is 0
    x_split = x_mixed + 60 * (b == 2)[:, None] * np.array([0, 1])
    rows = _rows(ari_tran(x_split, b, ct, n_iter=5, kmeans_n_init=5, seed=0)[0])
    assert rows[("one_minus_ari_batch", "all")]["value"] == pytest.approx(0.0, abs=1e-12)


def test_ari_without_labels_is_nan_with_reason():
    tidy, reps = ari_tran(np.zeros((5, 2)), np.zeros(5), np.array([None] * 5))
    assert all(np.isnan(r["value"]) and "no cell-type labels" in r["note"] for r in tidy) and reps == []


def test_ari_is_seeded():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 3))
    ct, b = rng.integers(0, 3, 120), rng.integers(0, 2, 120)
    assert ari_tran(x, b, ct, n_iter=4, seed=3) == ari_tran(x, b, ct, n_iter=4, seed=3)


# ------------------------------------------------------------------------------------------------ LISI
def test_neighbour_probabilities_reach_the_perplexity():
    rng = np.random.default_rng(0)
    dist = np.sort(rng.random((50, 90)) * 5, axis=1)
    p, h = neighbour_probabilities(dist, perplexity=30)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(h, np.log(30), atol=1e-5)
    # H is the entropy of P
    np.testing.assert_allclose(-(p * np.log(p)).sum(axis=1), h, atol=1e-9)


def test_lisi_hand_cases():
    # equal distances -> uniform weights: half the neighbours of each label -> Simpson 1/2 -> LISI 2
    dist = np.ones((1, 90))
    idx = np.arange(90)[None, :]
    labels = np.arange(90) % 2
    assert lisi_per_cell(dist, idx, labels, perplexity=30)[0] == pytest.approx(2.0)
    # one label only -> LISI 1; three equal labels -> 3
    assert lisi_per_cell(dist, idx, np.zeros(90, dtype=int), perplexity=30)[0] == pytest.approx(1.0)
    assert lisi_per_cell(dist, idx, np.arange(90) % 3, perplexity=30)[0] == pytest.approx(3.0)


def test_ilisi_clisi_scaled_as_scib():
    rng = np.random.default_rng(0)
    n = 400
    ct = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, 5)) + 30 * ct[:, None]
    mixed = _rows(lisi(x, rng.integers(0, 2, n), ct))
    split = _rows(lisi(x, ct, ct))  # batch == type: nothing mixed
    assert mixed[("ilisi", "all")]["value"] > 0.8
    assert split[("ilisi", "all")]["value"] == pytest.approx(0.0, abs=1e-6)
    assert split[("ilisi_median", "all")]["value"] == pytest.approx(1.0, abs=1e-6)
    # (L - median cLISI) / (L - 1) with pure types -> 1
    assert mixed[("clisi", "all")]["value"] == pytest.approx(1.0, abs=1e-6)


def test_lisi_too_few_cells():
    rows = lisi(np.random.default_rng(0).normal(size=(50, 2)), np.arange(50) % 2)
    assert all(np.isnan(r["value"]) and "too few cells" in r["note"] for r in rows)


# ------------------------------------------------------------------------------------------- batch ASW
def test_asw_batch_hand_case():
    # one type, 1-D points 0, 1 (batch a) and 10, 11 (batch b):
    # s = 1 - 1/10.5, 1 - 1/9.5, 1 - 1/9.5, 1 - 1/10.5 -> mean(1 - |s|) = (1/10.5 + 1/9.5) / 2
    x = np.array([[0.0], [1.0], [10.0], [11.0], [50.0], [51.0], [52.0]])
    batch = np.array(["a", "a", "b", "b", "a", "a", "a"])
    ct = np.array(["T", "T", "T", "T", "U", "U", "U"])
    rows = _rows(asw_batch(x, batch, ct))
    expect = (1 / 10.5 + 1 / 9.5) / 2
    assert rows[("asw_batch", "T")]["value"] == pytest.approx(expect)
    assert np.isnan(rows[("asw_batch", "U")]["value"]) and "one batch" in rows[("asw_batch", "U")]["note"]
    assert rows[("asw_batch", "all")]["value"] == pytest.approx(expect)
    assert "1 of 2" in rows[("asw_batch", "all")]["note"]


# -------------------------------------------------------------------------------- graph connectivity
def test_graph_connectivity_hand_case():
    # type X in two far groups (6 and 4 cells), type Y one group; 3 neighbours incl. itself
    x = np.concatenate([np.arange(6), 100 + np.arange(4), 1000 + np.arange(5)]).astype(float)[:, None]
    ct = np.array(["X"] * 10 + ["Y"] * 5)
    rows = _rows(graph_connectivity(x, ct, n_neighbors=3))
    assert rows[("graph_connectivity", "X")]["value"] == pytest.approx(0.6)
    assert rows[("graph_connectivity", "Y")]["value"] == pytest.approx(1.0)
    assert rows[("graph_connectivity", "all")]["value"] == pytest.approx(0.8)


def test_lisi_per_cell_equals_harmonypy():
    import harmonypy  # a pinned dependency (envs/requirements.lock): fail, never skip, when it is missing

    from davae_study.metrics._knn import knn

    rng = np.random.default_rng(0)
    b = rng.integers(0, 3, 500)
    x = rng.normal(size=(500, 5))
    x[:, 0] += b  # partly mixed
    ref = harmonypy.compute_lisi(x, __import__("pandas").DataFrame({"b": b.astype(str)}), ["b"], perplexity=30)[:, 0]
    dist, idx = knn(x, 90)
    np.testing.assert_allclose(lisi_per_cell(dist, idx, b, perplexity=30), ref, rtol=1e-10)
