"""The published mechanisms measured in ``benchmarks/davae_published.py`` (Portal's boundary, IWAN's weights,
uniPort's unbalanced OT, SCALEX's domain-specific batch norm, CDAN's cluster-conditioned adversary) do what
their docstrings say, and the patches leave the DAVAE core as they found it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import davae.model
import davae.training
from davae.module import DAVAEModule, davae_loss

from conftest import benchmark_module

_BUILD = davae.model._build_module
_PRIOR = davae.training.local_batch_prior


@pytest.fixture(scope="module")
def pub():
    return benchmark_module("davae_published")


def _out(logits: torch.Tensor, n_genes: int = 20, n: int = 6) -> tuple[dict, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {"mu": torch.randn(n, 3, generator=g), "logvar": torch.zeros(n, 3),
           "x_logits": torch.randn(n, n_genes, generator=g), "logits": logits}
    x = torch.rand(n, n_genes, generator=g)
    return out, x, torch.ones(n)


def test_portal_loss_is_the_cross_entropy_inside_the_boundary_and_flat_outside(pub):
    batch = torch.tensor([0, 1, 2, 0, 1, 2])
    logits = torch.tensor([[0.5, 0.1, -0.2], [0.0, 0.3, 0.1], [1.0, -1.0, 0.2],
                           [9.0, -4.0, -4.0], [0.2, 0.2, 0.2], [-0.3, 0.4, 0.0]], requires_grad=True)
    out, x, w = _out(logits)
    clipped = pub.portal_loss(5.0)(out, x, batch, w, 0.1)
    plain = davae_loss(out, x, batch, w, 0.1)
    m = pub.own_batch_log_odds(logits.detach(), batch)
    assert m[3] > 5 and (m.abs()[[0, 1, 2, 4, 5]] < 5).all()
    # every cell inside the boundary: the same per-cell term; the confident cell 3 contributes the constant
    inside = torch.nn.functional.cross_entropy(logits, batch, reduction="none")
    expect = (inside[[0, 1, 2, 4, 5]].sum() + torch.nn.functional.softplus(torch.tensor(-5.0))) / 6 * 20 * 0.1
    assert torch.isclose(clipped["domain"], expect)
    assert not torch.isclose(clipped["domain"], plain["domain"])
    clipped["domain"].backward()
    assert torch.all(logits.grad[3] == 0) and torch.all(logits.grad[0] != 0)


def test_own_batch_log_odds_is_the_logit_of_the_softmax_probability(pub):
    logits = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    batch = torch.randint(0, 4, (50,), generator=torch.Generator().manual_seed(2))
    p = torch.softmax(logits, 1).gather(1, batch[:, None])[:, 0]
    assert torch.allclose(pub.own_batch_log_odds(logits, batch), torch.log(p / (1 - p)), atol=1e-5)


def test_iwan_weights_favour_cells_the_classifier_does_not_place(pub):
    batch = torch.tensor([0, 0, 1, 1])
    logits = torch.tensor([[6.0, -6.0], [0.0, 0.0], [0.0, 0.0], [-6.0, 6.0]], requires_grad=True)
    out, x, w = _out(logits, n=4)
    pub.iwan_loss()(out, x, batch, w, 0.1)["domain"].backward()
    g = logits.grad.abs().sum(1)
    assert g[1] > 100 * g[0] and g[2] > 100 * g[3]


def test_unbalanced_plan_leaves_an_outlier_unmatched_and_tends_to_balanced(pub):
    a = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1]])
    b = torch.tensor([[0.05, 0.05], [0.0, 0.05], [10.0, 10.0]])  # the last target has no partner
    cost = torch.cdist(a, b).pow(2)
    plan = pub.unbalanced_plan(cost, reg=0.1, reg_m=1.0)
    # the cost is scaled by its maximum (uniPort), so the outlier sets the kernel's scale: it keeps some mass
    assert plan[:, 2].sum() < 0.5 * plan[:, :2].sum(0).min()
    balanced = pub.unbalanced_plan(cost, reg=0.1, reg_m=1e4, iters=500)
    assert torch.allclose(balanced.sum(0), torch.full((3,), 1 / 3), atol=1e-2)


def test_domain_specific_bn_normalises_each_batch_with_its_own_statistics(pub):
    bn = pub.DomainSpecificBN(4, 2).train()
    x = torch.cat([torch.randn(30, 4) + 5.0, torch.randn(20, 4) - 3.0])
    bn.codes = torch.tensor([0] * 30 + [1] * 20)
    y = bn(x)
    assert torch.allclose(y[:30].mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(y[30:].mean(0), torch.zeros(4), atol=1e-4)
    bn.codes = torch.tensor([0] * 49 + [1])  # a batch with one cell uses its running statistics
    assert torch.isfinite(bn(x)).all()


def test_patches_change_the_fit_and_restore_the_core(pub):
    loss, build = davae.training.davae_loss, davae.model._build_module
    p = davae.presets.get_params("default", decoder_batch=False)
    with pub.patched(loss=pub.portal_loss(5.0), build=pub.dsbn_module):
        assert davae.training.davae_loss is not loss
        m = davae.model._build_module(p, 12, 3)
        assert any(isinstance(layer, pub.DomainSpecificBN) for layer in m.decoder)
        z, onehot = torch.randn(8, m.z_mean.out_features), torch.eye(3)[torch.tensor([0, 1, 2] * 2 + [0, 1])]
        assert m.decode_logits(z, onehot).shape == (8, 12)
    assert davae.training.davae_loss is loss and davae.model._build_module is build
    assert isinstance(build(p, 12, 3), DAVAEModule)
    assert not any(isinstance(layer, pub.DomainSpecificBN) for layer in build(p, 12, 3).decoder)


def test_settings_name_only_valid_davae_overrides(pub):
    for name, (params, ctx) in pub.SETTINGS.items():
        assert set(params) <= set(davae.OVERRIDE_NAMES), name
        with ctx():
            assert davae.training.davae_loss is not davae_loss or davae.model._build_module is not _BUILD, name
    assert davae.training.davae_loss is davae_loss and davae.model._build_module is _BUILD
    assert davae.training.local_batch_prior is _PRIOR


def test_conditioned_classifier_uses_one_weight_block_per_nearest_centroid(pub):
    torch.manual_seed(0)
    clf = pub.ConditionedClassifier(latent_dim=2, hidden=8, depth=1, dropout=0.0, n_batches=3).eval()
    z = torch.tensor([[0.0, 0.1], [0.2, 0.0], [5.0, 5.1], [4.9, 5.0]], requires_grad=True)
    assert (clf.assign(z) == 0).all()  # before the centroids: every cell in cluster 0
    clf.centroids = torch.tensor([[5.0, 5.0], [0.0, 0.0]])
    assert clf.assign(z).tolist() == [1, 1, 0, 0]
    before = clf(z).detach()
    first = clf.net[0]
    with torch.no_grad():  # the block of cluster 1 is the first layer's columns 1, 1 + K (z ⊗ onehot)
        first.weight[:, [1, 1 + pub.MAX_CLUSTERS]] = 0.0
    after = clf(z).detach()
    assert torch.equal(after[2:], before[2:]) and not torch.allclose(after[:2], before[:2])
    clf(z).sum().backward()  # the assignment carries no gradient, z's block does
    assert torch.isfinite(z.grad).all() and (z.grad[2:].abs().sum() > 0)


def test_leiden_centroids_lie_in_the_clusters_they_summarise(pub):
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 0.3, (80, 4)), rng.normal(6, 0.3, (80, 4))]).astype(np.float32)
    c = pub.leiden_centroids(z)
    near_second = np.linalg.norm(c - 6, axis=1) < np.linalg.norm(c, axis=1)
    assert 2 <= len(c) <= 12 and near_second.any() and (~near_second).any()
    assert np.all(np.minimum(np.linalg.norm(c, axis=1), np.linalg.norm(c - 6, axis=1)) < 1.0)


@pytest.mark.parametrize("use_prior", [False, True])
def test_cdan_patch_conditions_the_classifier_at_the_prior_and_restores_the_core(pub, use_prior):
    p = davae.presets.get_params("default")
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(0, 0.3, (60, 10)), rng.normal(5, 0.3, (60, 10))]).astype(np.float32)
    codes = np.r_[np.tile([0, 1], 30), np.zeros(60, dtype=int)]  # blob 2 holds batch 0 only: the real prior
    with pub.cdan_patches(use_prior=use_prior):
        m = davae.model._build_module(p, 12, 2)
        assert isinstance(m.classifier, pub.ConditionedClassifier) and m.classifier.centroids is None
        lp = davae.training.local_batch_prior(z, codes, 2, k=30, share=0.1)
        assert m.classifier.centroids is not None and m.classifier.centroids.shape[1] == 10
        real = _PRIOR(z, codes, 2, k=30, share=0.1)  # marks batch 1 absent around blob 2
        assert (real[60:, 1] < 0).all()
        np.testing.assert_array_equal(lp, real if use_prior else np.zeros_like(real))
    assert davae.training.local_batch_prior is _PRIOR and davae.model._build_module is _BUILD


def test_spots_score_every_embedding_of_one_fit(pub, monkeypatch, capsys):
    """``--spots NAME --embedding latent_and_pcs`` fits once per seed and scores the latent, the corrected PCs
    and both side by side, a line each; the default scores the latent only."""
    import anndata as ad
    import pandas as pd

    import davae
    import davae_study.groundtruth as gt
    import transfer_groundtruth as tg

    fits = []

    def fake_integrate(prep, **kw):  # writes the obsm keys davae.integrate writes for each embedding
        fits.append(kw["embedding"])
        out = prep.copy()
        written = {"latent": 1, "corrected_pca": 2, "latent_and_pcs": 3}[kw["embedding"]]
        for i, key in enumerate(("X_davae", "X_davae_pca", "X_davae_joint")[:written]):
            out.obsm[key] = np.full((prep.n_obs, 2), float(i))
        return out

    def fake_evaluate(z, obs, truth, **kw):
        return pd.DataFrame({"r": [float(z[0, 0]) / 10]})

    tiny = ad.AnnData(np.zeros((4, 3), dtype=np.float32))
    monkeypatch.setattr(davae, "integrate", fake_integrate)
    monkeypatch.setattr(gt, "evaluate_spots", fake_evaluate)
    monkeypatch.setattr(tg, "spots_design", lambda ifnb, seed: (tiny, None))
    pub.run_spots(["davae"], [0], "latent_and_pcs")
    lines = [ln.split("\t") for ln in capsys.readouterr().out.splitlines() if ln.startswith("spots")]
    assert fits == ["latent_and_pcs"]
    assert [ln[1] for ln in lines] == ["davae", "davae X_davae_pca", "davae X_davae_joint"]
    assert [ln[3] for ln in lines] == ["spot r 0.000", "spot r 0.100", "spot r 0.200"]
    pub.run_spots(["davae"], [0, 1])
    lines = [ln.split("\t") for ln in capsys.readouterr().out.splitlines() if ln.startswith("spots")]
    assert fits[1:] == ["latent", "latent"] and [ln[1] for ln in lines] == ["davae", "davae"]
