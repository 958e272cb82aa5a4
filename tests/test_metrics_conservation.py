"""Clustering-free / clustering-robust conservation scores: kNN purity and scIB's Leiden NMI/ARI at the best
resolution, on hand-made embeddings with known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from davae_study.metrics import knn_purity, leiden_nmi_ari
from davae_study.metrics.leiden import RESOLUTIONS, leiden_rows
from davae_study.metrics.purity import purity_per_cell


def _rows(rows):
    return {(r["metric"], r["group"]): r for r in rows}


def _blobs(sizes, centres, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    x = np.vstack([rng.normal(scale=scale, size=(n, 2)) + c for n, c in zip(sizes, centres)])
    return x, np.repeat([f"t{i}" for i in range(len(sizes))], sizes)


# ------------------------------------------------------------------------------------------- kNN purity
def test_purity_two_separated_blobs_is_one_with_per_type_rows():
    x, ct = _blobs([40, 30], [(0, 0), (50, 0)])
    rows = _rows(knn_purity(x, ct, k=15))
    assert rows[("knn_purity", "all")]["value"] == 1.0
    assert rows[("knn_purity", "all")]["n"] == 70
    assert rows[("knn_purity", "t0")]["value"] == 1.0 and rows[("knn_purity", "t0")]["n"] == 40
    assert rows[("knn_purity", "t1")]["value"] == 1.0 and rows[("knn_purity", "t1")]["n"] == 30
    assert set(rows) == {("knn_purity", g) for g in ("all", "t0", "t1")}


def test_purity_of_one_mixed_blob_has_the_known_fraction():
    # 4 points on top of each other per label would tie; use a line so neighbourhoods are exact:
    # 6 cells at 0..5 with labels a a a b b b and k = 2.
    x = np.arange(6, dtype=float)[:, None]
    ct = np.array(list("aaabbb"))
    # neighbours: 0->{1,2} 2/2; 1->{0,2} 2/2; 2->{1,3} 1/2; 3->{2,4} 1/2; 4->{3,5} 2/2; 5->{4,3} 2/2
    rows = _rows(knn_purity(x, ct, k=2))
    assert rows[("knn_purity", "a")]["value"] == pytest.approx(5 / 6)
    assert rows[("knn_purity", "b")]["value"] == pytest.approx(5 / 6)
    assert rows[("knn_purity", "all")]["value"] == pytest.approx(5 / 6)


def test_purity_of_randomly_labelled_blob_is_near_the_label_share():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 2))
    ct = np.where(rng.random(600) < 0.25, "rare", "common")
    rows = _rows(knn_purity(x, ct, k=15))
    # labels independent of position: a cell's neighbours share its label at the label's frequency
    share = (ct == "rare").mean()
    assert rows[("knn_purity", "rare")]["value"] == pytest.approx(share, abs=0.05)
    assert rows[("knn_purity", "common")]["value"] == pytest.approx(1 - share, abs=0.05)
    expected_all = share * share + (1 - share) * (1 - share)
    assert rows[("knn_purity", "all")]["value"] == pytest.approx(expected_all, abs=0.05)


def test_purity_unlabelled_cells_are_neighbours_but_not_scored():
    labels = np.array([0, 0, -1, 1])
    idx = np.array([[1, 2], [0, 2], [0, 1], [2, 1]])
    p = purity_per_cell(idx, labels)
    assert p[:2].tolist() == [0.5, 0.5] and np.isnan(p[2]) and p[3] == 0.0
    x = np.arange(6, dtype=float)[:, None]
    ct = np.array(["a", "a", None, "b", "b", "b"], dtype=object)
    rows = _rows(knn_purity(x, ct, k=2))
    assert rows[("knn_purity", "all")]["n"] == 5


def test_purity_without_labels_or_with_too_few_cells_is_nan_with_reason():
    x = np.zeros((5, 2))
    (r,) = knn_purity(x, np.array([None] * 5, dtype=object), k=2)
    assert np.isnan(r["value"]) and "no cell-type labels" in r["note"]
    (r,) = knn_purity(x, np.array(list("aabbb")), k=15)
    assert np.isnan(r["value"]) and "too few cells" in r["note"]


# ----------------------------------------------------------------------------------- Leiden NMI / ARI
def test_leiden_perfect_separation_scores_one_and_reports_the_resolution():
    x, ct = _blobs([60, 50, 40], [(0, 0), (40, 0), (0, 40)])
    out = leiden_nmi_ari(x, ct, seed=0)
    assert out["nmi"] == pytest.approx(1.0) and out["ari"] == pytest.approx(1.0)
    assert out["n_clusters"] == 3 and out["n"] == 150
    assert out["resolution"] in RESOLUTIONS
    assert list(out["profile"]) == list(RESOLUTIONS)
    # the chosen resolution is the first with the highest NMI (scIB's strict '<' update)
    best = max(out["profile"].values())
    assert out["resolution"] == next(r for r, v in out["profile"].items() if v == best)
    assert out["nmi"] == out["profile"][out["resolution"]]


def test_leiden_resolutions_are_scibs_grid():
    assert RESOLUTIONS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
                           1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0)


def test_leiden_nmi_and_ari_come_from_the_same_clustering_and_match_scanpy():
    import anndata as ad
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    # overlapping types, so the resolution matters
    x, ct = _blobs([80, 80, 60], [(0, 0), (1.2, 0), (0.6, 1.0)], seed=4, scale=0.5)
    out = leiden_nmi_ari(x, ct, resolutions=[0.3, 1.0, 1.8], seed=0)
    a = ad.AnnData(obs={"i": np.arange(len(ct))}, obsm={"X_emb": x.astype(np.float32)})
    sc.pp.neighbors(a, n_neighbors=15, use_rep="X_emb", transformer="sklearn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sc.tl.leiden(a, resolution=out["resolution"], random_state=0, flavor="leidenalg", key_added="c")
    ref = a.obs["c"].astype(int).to_numpy()
    assert out["nmi"] == pytest.approx(normalized_mutual_info_score(ct, ref))
    assert out["ari"] == pytest.approx(adjusted_rand_score(ct, ref))
    assert out["n_clusters"] == np.unique(ref).size


def test_leiden_is_deterministic_for_a_seed():
    x, ct = _blobs([80, 80, 60], [(0, 0), (1.2, 0), (0.6, 1.0)], seed=5, scale=0.5)
    a = leiden_nmi_ari(x, ct, seed=3)
    b = leiden_nmi_ari(x, ct, seed=3)
    assert a == b


def test_leiden_rows_note_the_resolution_and_nan_without_labels():
    x, ct = _blobs([30, 30], [(0, 0), (40, 0)])
    rows = _rows(leiden_rows(x, ct, resolutions=[0.2, 0.5]))
    nmi, ari = rows[("nmi_leiden", "all")], rows[("ari_leiden", "all")]
    assert nmi["value"] == pytest.approx(1.0) and ari["value"] == pytest.approx(1.0)
    assert "resolution 0.2" in nmi["note"] and nmi["note"] == ari["note"] and nmi["n"] == 60
    for labels, why in ((np.array([None] * 60, dtype=object), "no cell-type labels"),
                        (np.array(["a"] * 60), "one cell type only")):
        rows = leiden_rows(x, labels)
        assert [r["metric"] for r in rows] == ["nmi_leiden", "ari_leiden"]
        assert all(np.isnan(r["value"]) and why in r["note"] for r in rows)
    with pytest.raises(ValueError, match="no cell-type labels"):
        leiden_nmi_ari(x, np.array([None] * 60, dtype=object))
