"""The local batch prior of DAVAE's domain classifier (davae/prior.py) and its use in training."""

from __future__ import annotations

import math
import warnings

import anndata as ad
import numpy as np
import pytest
import torch
from torch.nn import functional as F

import davae
import davae.prior as prior_mod
from davae.module import davae_loss
from davae.prior import (FLOOR, batch_groups, batch_overlap, knn_indices, knn_indices_brute, local_batch_prior,
                         neighbour_batch_shares)

from conftest import shared_file

from test_davae import TINY, _lognorm, _one_thread, _toy  # noqa: F401  (_one_thread: autouse fixture)


def _two_blobs(n=40, seed=0):
    """Blob A (around 0) holds batches 0 and 1; blob B (around 50) holds batch 0 only."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, (2 * n, 3))
    b = rng.normal(50, 1, (n, 3))
    z = np.vstack([a, b])
    codes = np.r_[np.zeros(n, int), np.ones(n, int), np.zeros(n, int)]
    return z, codes


def test_shares_find_the_batches_around_each_cell():
    z, codes = _two_blobs()
    shares = neighbour_batch_shares(z, codes, 2, k=10)
    assert shares.shape == (120, 2)
    assert np.allclose(shares.max(1), 1.0)
    # blob B: batch 1 has no cell within reach
    assert np.all(shares[80:, 1] == 0)
    # blob A: both batches present above the default share threshold (0.1) for every cell
    assert np.all(shares[:80].min(1) > 0.1)


def test_prior_marks_absent_batches_and_keeps_the_own_batch():
    z, codes = _two_blobs()
    prior = local_batch_prior(z, codes, 2, k=10)
    assert prior.dtype == np.float32
    assert np.all(prior[:80] == 0)
    assert np.allclose(prior[80:, 1], math.log(FLOOR)) and np.all(prior[80:, 0] == 0)
    # a lone cell of batch 1 inside blob B: its own batch stays allowed, batch 0 (all around it) too
    codes2 = codes.copy()
    codes2[100] = 1
    p2 = local_batch_prior(z, codes2, 2, k=10)
    assert np.all(p2[100] == 0)


def test_size_normalisation_keeps_a_small_batch_present():
    """A batch of 10 cells among 200 of another, all in one blob, is present everywhere despite its 5 % count
    share: shares are normalised by batch size."""
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1, (210, 2))
    codes = np.r_[np.zeros(200, int), np.ones(10, int)]
    prior = local_batch_prior(z, codes, 2, k=30)
    assert (prior == 0).mean() > 0.9


def test_loss_with_prior_is_the_cross_entropy_of_the_shifted_logits():
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    prior = torch.tensor([[0.0, math.log(FLOOR), 0.0]] * 4)
    batch = torch.tensor([0, 2, 0, 2])
    out = {"x_logits": torch.zeros(4, 5), "mu": torch.zeros(4, 2), "logvar": torch.zeros(4, 2), "logits": logits}
    x, w = torch.zeros(4, 5), torch.ones(4)
    got = davae_loss(out, x, batch, w, 1.0, logit_prior=prior)["domain"]
    want = F.cross_entropy(logits + prior, batch) * 5
    assert torch.allclose(got, want)
    plain = davae_loss(out, x, batch, w, 1.0)["domain"]
    assert not torch.allclose(plain, got)


def test_local_prior_training_warms_up_without_the_adversary():
    a = _lognorm(_toy(n_per_batch=40))
    res = davae.integrate(a, preprocess=False, seed=0, device="cpu", progress=False, recover=False,
                          **dict(TINY, epochs=8), domain_prior="local", prior_warmup=0.25, prior_neighbors=5)
    scales = list(res.uns["davae"]["history"]["grl_scale"])
    assert scales[:2] == [0.0, 0.0] and all(s == 1.0 for s in scales[2:])
    assert np.all(np.isfinite(res.obsm["X_davae"]))
    assert res.uns["davae"]["params"]["domain_prior"] == "local"


def test_the_neighbour_search_splits_between_threads_with_the_same_result(monkeypatch):
    rng = np.random.default_rng(3)
    z = rng.normal(0, 1, (3000, 10))
    codes = rng.integers(0, 3, 3000)
    one = neighbour_batch_shares(z, codes, 3, k=30)
    np.testing.assert_array_equal(neighbour_batch_shares(z, codes, 3, k=30, n_jobs=2), one)
    np.testing.assert_array_equal(local_batch_prior(z, codes, 3, n_jobs=2), local_batch_prior(z, codes, 3))
    # a fit searches on its threads (the minibatch loop may run on fewer)
    seen = []
    from davae import training
    real = training.local_batch_prior
    monkeypatch.setattr(training, "local_batch_prior",
                        lambda *a, **k: seen.append((k["n_jobs"], k["device"])) or real(*a, **k))
    a = _lognorm(_toy(n_per_batch=40))
    davae.integrate(a, preprocess=False, seed=0, device="cpu", progress=False, recover=False, threads=2,
                    **dict(TINY, epochs=4), domain_prior="local", prior_neighbors=5)
    assert seen == [(2, torch.device("cpu"))]


def test_brute_force_search_for_accelerators_finds_the_k_d_trees_neighbours(monkeypatch):
    rng = np.random.default_rng(4)
    z = (rng.normal(0, 2, (12, 10))[rng.integers(0, 12, 2500)] + rng.normal(0, 0.5, (2500, 10))).astype(np.float32)
    codes = rng.integers(0, 3, 2500)
    tree = knn_indices(z, 30)
    monkeypatch.setattr(prior_mod, "CHUNK_ELEMENTS", 2500 * 7 + 3)  # 7 query cells per chunk, ragged last one
    brute = knn_indices_brute(z, 30, "cpu")
    assert brute.shape == tree.shape == (2500, 31)
    assert (brute[:, 0] == np.arange(2500)).all()  # nearest first: the cell itself
    np.testing.assert_array_equal(np.sort(brute, 1), np.sort(tree, 1))
    # a fit on an accelerator searches by brute force there, and gets the same prior
    devices = []
    monkeypatch.setattr(prior_mod, "knn_indices_brute",
                        lambda z, k, device: devices.append(str(device)) or knn_indices_brute(z, k, "cpu"))
    np.testing.assert_array_equal(local_batch_prior(z, codes, 3, device="cuda"), local_batch_prior(z, codes, 3))
    assert devices == ["cuda"]
    np.testing.assert_array_equal(knn_indices(z, 30, device="mps"), tree)  # no float64 there: the k-d tree
    assert devices == ["cuda"]


def test_prior_parameters_are_checked():
    for bad in ({"domain_prior": "global"}, {"prior_warmup": 1.0}, {"prior_share": 0.0}, {"prior_neighbors": 0},
                {"prior_fallback": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            davae.get_params("default", **bad)


def test_released_preset_keeps_the_global_adversary():
    assert davae.PRESETS["scbean"].domain_prior == "none"


def _islands(n=40, bridge=0, seed=0):
    """Island A (around 0) holds batches 0 and 1, island B (around 50) batch 2; ``bridge`` cells of batch 2
    sit in island A."""
    rng = np.random.default_rng(seed)
    z = np.vstack([rng.normal(0, 1, (2 * n + bridge, 3)), rng.normal(50, 1, (n, 3))])
    codes = np.r_[np.zeros(n, int), np.ones(n, int), np.full(bridge, 2), np.full(n, 2)]
    return z, codes


def test_overlap_graph_finds_batches_that_share_no_neighbourhood():
    z, codes = _islands()
    overlap = batch_overlap(local_batch_prior(z, codes, 3, k=10), codes, 3)
    assert overlap.shape == (3, 3) and np.allclose(np.diag(overlap), 1.0)
    assert overlap[0, 1] == 1.0 and overlap[1, 0] == 1.0
    assert overlap[0, 2] == 0.0 and overlap[2, 0] == 0.0 and overlap[2, 1] == 0.0
    assert batch_groups(overlap) == [[0, 1], [2]]
    # ten cells of batch 2 inside island A bridge it to the others
    z, codes = _islands(bridge=10)
    assert batch_groups(batch_overlap(local_batch_prior(z, codes, 3, k=10), codes, 3)) == [[0, 1, 2]]


def test_one_sided_overlap_links_two_batches():
    """A link needs the share on one side only: batch 1 is present around 6 % of batch 0's cells."""
    overlap = np.eye(2)
    overlap[0, 1] = 0.06
    assert batch_groups(overlap) == [[0, 1]]
    overlap[0, 1] = 0.04
    assert batch_groups(overlap) == [[0], [1]]


def test_unbridged_groups_warn_or_fall_back_to_the_global_prior():
    from davae.training import _unbridged

    z, codes = _islands()
    prior = local_batch_prior(z, codes, 3, k=10)
    advice = r"prior_fallback=True.*leave it off where a group is a different kind of sample"
    record = {}
    with pytest.warns(davae.UnbridgedBatchesWarning, match=r"share no neighbourhood.*: x, y \| z\. .*" + advice) as w:
        kept = _unbridged(prior, codes, 3, False, ["x", "y", "z"], record=record)
    assert kept is prior
    assert w[0].filename == __file__  # the warning names the caller's line, not one inside davae
    assert record == {"prior_groups": [0, 0, 1], "prior_fallback_applied": False}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*share no neighbourhood")
        dropped = _unbridged(prior, codes, 3, True, ["x", "y", "z"], record=record)
        assert dropped.shape == prior.shape and np.all(dropped == 0)  # every batch present around every cell
        assert record == {"prior_groups": [0, 0, 1], "prior_fallback_applied": True}
        z, codes = _islands(bridge=10)
        bridged = local_batch_prior(z, codes, 3, k=10)
        assert _unbridged(bridged, codes, 3, True, None, record=record) is bridged
        assert record == {"prior_groups": [0, 0, 0], "prior_fallback_applied": False}


def test_fit_does_not_warn_where_batches_overlap():
    a = _lognorm(_toy(n_per_batch=40))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*share no neighbourhood")
        out = davae.integrate(a, preprocess=False, seed=0, device="cpu", progress=False, recover=False,
                              prior_neighbors=5, **dict(TINY, epochs=8))
    assert out.uns["davae"]["prior_groups"].tolist() == [0] * a.obs["batch"].nunique()
    assert out.uns["davae"]["prior_fallback_applied"] is False


def test_fallback_aligns_mesc_batches_the_local_prior_leaves_apart():
    """mESC (2 batches, the same 3 culture conditions in each): the default's warm-up latent keeps the
    batches apart, so the local prior leaves them so (and warns); with the fallback the batches meet and each
    cell's neighbours keep its condition."""
    from davae_study.prepare import prepare
    from sklearn.neighbors import NearestNeighbors

    prep = prepare(ad.read_h5ad(shared_file("scMerge_example_sce_mESC.h5ad")), n_top_genes=2000)
    batch = prep.obs["batch"].to_numpy().astype(str)
    ct = prep.obs["cell_type"].to_numpy().astype(str)

    def scores(x):
        idx = NearestNeighbors(n_neighbors=16).fit(x).kneighbors(x, return_distance=False)[:, 1:]
        return (batch[idx] != batch[:, None]).mean(), (ct[idx] == ct[:, None]).mean()

    kw = dict(batch_key="batch", preprocess=False, seed=0, device="cpu", progress=False, recover=False)
    with pytest.warns(davae.UnbridgedBatchesWarning, match="share no neighbourhood") as w:
        local = davae.integrate(prep, **kw)
    assert w[0].filename == __file__  # the user's integrate call, through five frames of davae
    assert sorted(local.uns["davae"]["prior_groups"]) == [0, 1] and not local.uns["davae"]["prior_fallback_applied"]
    mixed_local, purity_local = scores(local.obsm["X_davae"])
    fallback = davae.integrate(prep, prior_fallback=True, **kw)
    assert fallback.uns["davae"]["prior_fallback_applied"]
    mixed, purity = scores(fallback.obsm["X_davae"])
    assert mixed_local < 0.05 and mixed > 0.1  # measured 0.02 and 0.28 (other-batch share of 15 neighbours)
    assert purity >= 0.9 and purity_local >= 0.9  # measured 0.95 and 0.97
