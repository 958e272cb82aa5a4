"""The local batch prior of DAVAE's domain classifier (davae/prior.py) and its use in training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import davae
from davae.module import davae_loss
from davae.prior import FLOOR, local_batch_prior, neighbour_batch_shares

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


def test_prior_parameters_are_checked():
    for bad in ({"domain_prior": "global"}, {"prior_warmup": 1.0}, {"prior_share": 0.0}, {"prior_neighbors": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            davae.get_params("default", **bad)


def test_released_preset_keeps_the_global_adversary():
    assert davae.PRESETS["scbean"].domain_prior == "none"
