"""DESC re-implementation: kernel and target against hand-computed values, schedule pieces, determinism,
and recovery of the CellBench cell lines on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from davae_study.desc import (
    DescAutoencoder,
    EarlyStopping,
    fit_desc,
    get_dims,
    kl_divergence,
    scale_by_group,
    student_t,
    target_distribution,
)
from davae_study.desc.init import cluster_means

from conftest import CELLBENCH  # the committed demo copy (data/demo): never skipped


def _lognorm(path: Path):
    import anndata as ad
    import scanpy as sc

    adata = ad.read_h5ad(path)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


# --- kernel, target, loss: hand-computed values ---------------------------------------------------------


def test_student_t_matches_hand_computed_values():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    mu = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    # alpha = 1: kernel (1 + d²)^-1; cell 0: d² = 0, 4 -> 1, 0.2 -> /1.2; cell 1: d² = 1, 1 -> equal
    q = student_t(z, mu, alpha=1.0)
    np.testing.assert_allclose(q.numpy(), [[1 / 1.2, 0.2 / 1.2], [0.5, 0.5]], rtol=1e-6)
    # alpha = 2: kernel (1 + d²/2)^-1.5; cell 0: 1 and 3^-1.5
    q2 = student_t(z, mu, alpha=2.0)
    k = 3.0**-1.5
    np.testing.assert_allclose(q2.numpy()[0], [1 / (1 + k), k / (1 + k)], rtol=1e-6)


def test_target_distribution_matches_hand_computed_values():
    q = np.array([[0.8, 0.2], [0.5, 0.5]])
    # f = (1.3, 0.7); row 0: (0.64/1.3, 0.04/0.7) normalised = (0.896, 0.104); row 1: (0.35, 0.65)
    expected = np.array([[0.896, 0.104], [0.35, 0.65]])
    np.testing.assert_allclose(target_distribution(q), expected, atol=1e-12)
    np.testing.assert_allclose(target_distribution(torch.tensor(q)).numpy(), expected, atol=1e-12)


def test_kl_divergence_is_keras_kld():
    p = torch.tensor([[0.896, 0.104], [0.35, 0.65]])
    q = torch.tensor([[0.8, 0.2], [0.5, 0.5]])
    row0 = 0.896 * np.log(0.896 / 0.8) + 0.104 * np.log(0.104 / 0.2)
    row1 = 0.35 * np.log(0.35 / 0.5) + 0.65 * np.log(0.65 / 0.5)
    assert float(kl_divergence(p, q)) == pytest.approx((row0 + row1) / 2, rel=1e-5)
    assert float(kl_divergence(q, q)) == pytest.approx(0.0, abs=1e-7)


def test_early_stopping_keras_semantics():
    stop = EarlyStopping(min_delta=1e-4, patience=3)
    # 1.0 best; 0.99995 is not an improvement (< min_delta), nor are the next two -> stop on the 3rd
    assert [stop.step(v) for v in (1.0, 0.99995, 0.99999, 1.2)] == [False, False, False, True]
    stop = EarlyStopping(min_delta=1e-4, patience=2)
    assert [stop.step(v) for v in (1.0, 0.9, 0.95, 0.8, 0.85, 0.86)] == [False] * 5 + [True]


# --- architecture and helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_cells", "hidden"),
    [(20001, [128, 32]), (20000, [64, 32]), (10001, [64, 32]), (5001, [32, 16]),
     (2001, [128]), (501, [64]), (500, [16])],
)
def test_get_dims_follows_desc_cell_count_rule(n_cells, hidden):
    assert get_dims(n_cells, 999) == [999, *hidden]


def test_autoencoder_activations_and_shared_stacks():
    torch.manual_seed(0)
    ae = DescAutoencoder([20, 8, 3]).eval().requires_grad_(False)
    x = torch.randn(50, 20) * 10
    z, out = ae.encode(x), ae(x)
    assert z.shape == (50, 3) and out.shape == (50, 20)
    assert z.abs().max() <= 1 and out.abs().max() <= 1  # tanh bottleneck and tanh output
    h = ae.encode_layer(0, x)
    assert h.min() >= 0  # ReLU hidden layer
    # stack 1 (inner) reconstructs layer-1 features with ReLU output, tanh hidden; it shares AE weights
    assert ae.stack_forward(1, h).min() >= 0
    assert ae.stack_parameters(0)[0] is ae.encoders[0].weight
    # Glorot-uniform weights, zero biases (Keras Dense defaults)
    bound = np.sqrt(6 / (20 + 8))
    assert ae.encoders[0].weight.abs().max() <= bound and float(ae.encoders[0].bias.abs().sum()) == 0


def test_scale_by_group_zscores_within_batches():
    X = np.array([[1.0, 5.0], [3.0, 5.0], [10.0, 0.0], [20.0, 100.0]])
    g = np.array(["a", "a", "b", "b"])
    out = scale_by_group(sp.csr_matrix(X), g, max_value=0.5)
    s = np.sqrt(2.0)  # unbiased sd of (1, 3) and of (10, 20) / 5
    np.testing.assert_allclose(out[:, 0], [-1 / s, 0.5, -1 / s, 0.5], rtol=1e-6)  # +1/sqrt2 clipped at 0.5
    assert out[0, 1] == 0 and out[1, 1] == 0  # constant gene in batch a -> 0 (sd floor)
    np.testing.assert_allclose(out[2, 1], -1 / s, rtol=1e-6)


def test_cluster_means_rows_follow_labels():
    f = np.array([[0.0, 0.0], [2.0, 2.0], [10.0, 10.0]])
    np.testing.assert_allclose(cluster_means(f, np.array([1, 1, 0])), [[10, 10], [1, 1]])


# --- real data ------------------------------------------------------------------------------------------

FAST = dict(pretrain_epochs=6, max_rounds=20, progress=False, device="cpu")


@pytest.fixture(scope="module")
def cellbench():
    return _lognorm(CELLBENCH)


def test_desc_recovers_cellbench_cell_lines(cellbench):
    """DESC with its per-batch scaling separates the three cell lines across 10x/CEL-seq2/Drop-seq."""
    from sklearn.metrics import adjusted_rand_score

    X = scale_by_group(cellbench.X, cellbench.obs["batch"].to_numpy())
    res = fit_desc(X, resolution=0.1, seed=0, **{**FAST, "pretrain_epochs": 20})
    ari = adjusted_rand_score(cellbench.obs["cell_type"], res.labels)
    ari_batch = adjusted_rand_score(cellbench.obs["batch"], res.labels)
    assert ari > 0.8, f"ARI vs cell lines {ari:.3f}"
    assert ari_batch < 0.1, f"clusters follow technology (ARI vs batch {ari_batch:.3f})"
    np.testing.assert_allclose(res.q.sum(1), 1, rtol=1e-5)
    assert res.embedding.shape == (cellbench.n_obs, res.dims[-1])
    assert res.dims == [cellbench.n_vars, 64]  # 1394 cells -> DESC's [G, 64]


def test_desc_is_deterministic_given_seed_and_sparse_equals_dense(cellbench):
    sub = cellbench[::4].copy()  # 349 cells
    a = fit_desc(sub.X, seed=3, **FAST)
    b = fit_desc(sub.X, seed=3, **FAST)
    dense = fit_desc(sub.X.toarray(), seed=3, **FAST)
    other = fit_desc(sub.X, seed=4, **FAST)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    np.testing.assert_allclose(a.embedding, dense.embedding, atol=1e-5)
    assert not np.allclose(a.embedding, other.embedding)


def test_too_low_resolution_is_a_clear_error():
    from davae_study.desc.init import init_centres

    blob = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)  # one connected cloud
    with pytest.raises(ValueError, match="raise 'resolution'"):
        init_centres(blob, resolution=1e-6, seed=0)
    labels, centres = init_centres(blob, resolution=2.0, seed=0)
    assert labels.shape == (300,) and centres.shape == (labels.max() + 1, 4)


def test_max_rounds_caps_the_clustering_and_is_reported(cellbench):
    """The scaling benchmark caps DESC's KL rounds (config scaling.params.desc.max_rounds): the wrapper stops
    there, records converged=False / hit_max_rounds=True with a note, and a run that converges says so."""
    from davae_study.methods import desc as wrapper

    sub = cellbench[::4].copy()  # 349 cells
    fast = {k: v for k, v in FAST.items() if k != "device"}
    capped = wrapper.run(sub, seed=0, device="cpu", **{**fast, "max_rounds": 2, "tol": 0.0}).uns["desc"]
    # tol 0 can never be met: every allowed round runs, then the loop gives up
    assert capped["n_rounds"] == 2 and len(capped["delta_label"]) == 2
    assert capped["converged"] is False and capped["hit_max_rounds"] is True and capped["max_rounds"] == 2
    assert "max_rounds=2" in capped["note"] and "without converging" in capped["note"]
    done = wrapper.run(sub, seed=0, device="cpu", **{**fast, "max_rounds": 20, "tol": 1.0}).uns["desc"]
    # tol 1: the first check after a round (fewer than all labels changed) stops it
    assert done["converged"] is True and done["hit_max_rounds"] is False and done["note"] == ""
    assert done["n_rounds"] == 1 < done["max_rounds"]
