"""Hartigan–Wong k-means (R's ``kmeans()`` default) against R's own results, and its use in Tran's ARI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans

from davae_study.metrics.ari import ari_tran
from davae_study.metrics.kmeans import hartigan_wong, kmeans_r

FIXTURES = json.loads((Path(__file__).parent / "data" / "kmeans_hw_r.json").read_text())


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_hartigan_wong_matches_r(name):
    """Same data and initial centres as R's ``kmeans(x, centers, iter.max, algorithm = "Hartigan-Wong")``
    (tests/data/kmeans_hw_r.R): the same cluster of every point, passes, fault code and WSS."""
    case = FIXTURES[name]
    x = np.array(case["x"])
    labels, centres, iters, fault = hartigan_wong(x, np.array(case["centers"]), case["iter_max"])
    assert labels.tolist() == [c - 1 for c in case["cluster"]]
    assert (iters, fault) == (case["iter"], case["ifault"])
    assert ((x - centres[labels]) ** 2).sum() == pytest.approx(case["tot_withinss"], rel=1e-12)


def test_fixtures_cover_a_start_where_lloyd_and_r_part_ways():
    """The fixtures would not tell the two algorithms apart if Lloyd's ended where R does on every case."""
    differ = []
    for name, case in FIXTURES.items():
        x, c = np.array(case["x"]), np.array(case["centers"])
        lloyd = KMeans(len(c), init=c, n_init=1, max_iter=case["iter_max"]).fit(x).labels_
        differ.append((lloyd != np.array(case["cluster"]) - 1).any())
    assert any(differ) and not all(differ)


def test_converged_result_admits_no_single_point_transfer():
    """Hartigan's optimality: moving any one point to another cluster does not lower the within-cluster
    sum of squares (n_j/(n_j+1)·d²(x, c_j) ≥ n_i/(n_i−1)·d²(x, c_i))."""
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(80, 4)) + rng.normal(scale=3, size=4) for _ in range(4)])
    labels, c, _, fault = hartigan_wong(x, x[rng.choice(len(x), 6, replace=False)], 50)
    assert fault == 0
    n = np.bincount(labels, minlength=6)
    d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    own = d2[np.arange(len(x)), labels]
    for i in np.flatnonzero(n[labels] > 1):
        gain_out = n[labels[i]] / (n[labels[i]] - 1) * own[i]
        cost_in = n / (n + 1) * d2[i]
        cost_in[labels[i]] = np.inf
        assert cost_in.min() >= gain_out - 1e-9


def test_bad_centres_are_refused_with_the_fix():
    x = np.arange(20.0).reshape(10, 2)
    with pytest.raises(ValueError, match="2 <= k < n"):
        hartigan_wong(x, x[:1])
    with pytest.raises(ValueError, match="must agree in d"):
        hartigan_wong(x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="empty cluster"):  # a centre nobody is closest to
        hartigan_wong(x, np.vstack([x[:2], [[1e6, 1e6]]]))


def test_kmeans_r_draws_distinct_centres_like_r():
    """Many duplicate rows: R redraws the centres from the distinct rows, so no centre starts empty."""
    x = np.repeat(np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]), [50, 3, 2], axis=0)
    for seed in range(20):
        labels = kmeans_r(x, 3, rng=np.random.default_rng(seed))
        assert sorted(np.bincount(labels).tolist()) == [2, 3, 50]
    with pytest.raises(ValueError, match="more cluster centres"):
        kmeans_r(x, 4, rng=np.random.default_rng(0))


def test_kmeans_r_keeps_the_best_of_several_starts():
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(size=(60, 3)) + m for m in (0, 4, 8, 12, 16)])
    wss = lambda lab: sum(((x[lab == j] - x[lab == j].mean(0)) ** 2).sum() for j in np.unique(lab))  # noqa: E731
    one = [wss(kmeans_r(x, 5, rng=np.random.default_rng(s))) for s in range(10)]
    best = wss(kmeans_r(x, 5, rng=np.random.default_rng(0), n_init=10))
    assert best <= min(one) + 1e-9 or best <= np.median(one)


def test_ari_tran_algorithm_switch():
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(scale=0.3, size=(40, 2)) + c for c in ((0, 0), (10, 0))])
    ct = np.repeat(["a", "b"], 40)
    b = rng.integers(0, 2, 80)
    for alg in ("hartigan-wong", "lloyd"):
        rows = {r["metric"]: r["value"] for r in ari_tran(x, b, ct, n_iter=3, seed=0, kmeans_algorithm=alg)[0]}
        assert rows["ari_celltype"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="kmeans_algorithm"):
        ari_tran(x, b, ct, kmeans_algorithm="macqueen")
    with pytest.raises(ValueError, match="needs kmeans_algorithm='lloyd'"):
        ari_tran(x, b, ct, kmeans_init="k-means++")


def test_ari_tran_with_one_cell_per_type_is_nan_not_an_error():
    """Three types of one cell each: the subsample holds k points, too few for R's k-means."""
    x = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    tidy, _ = ari_tran(x, np.array([0, 1, 0]), np.array(["a", "b", "c"]), n_iter=2, seed=0)
    rows = {r["metric"]: r for r in tidy}
    assert np.isnan(rows["ari_celltype"]["value"]) and "too few cells" in rows["ari_celltype"]["note"]
