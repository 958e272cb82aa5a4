"""Scanorama, Harmony and DESC each honour the method contract (docs/CONTRACTS.md) on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import IFNB  # the committed demo copy (data/demo): never skipped

METHOD_PARAMS = {
    "scanorama": {"dimred": 30},
    "harmony": {"n_pcs": 20, "ncores": 1},
    "desc": {"pretrain_epochs": 6, "max_rounds": 20, "progress": False},
}


def _prepared(path: Path, n_top_genes: int = 600, seed: int = 0):
    """Small stand-in for the prepare step: log-normalised HVGs (CSR), counts layer, shuffled cell order
    so that batches interleave (the wrappers must restore the input order)."""
    import anndata as ad
    import scanpy as sc

    adata = ad.read_h5ad(path)
    adata = adata[np.random.default_rng(seed).permutation(adata.n_obs)].copy()
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes, batch_key="batch")
    adata = adata[:, adata.var["highly_variable"]].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obs["batch"] = adata.obs["batch"].astype("category")
    return adata


@pytest.fixture(scope="module")
def ifnb():
    return _prepared(IFNB)


@pytest.fixture(scope="module")
def results(ifnb):
    import importlib

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    before = ifnb.copy()
    out = {}
    for name, params in METHOD_PARAMS.items():
        module = importlib.import_module(f"davae_study.methods.{name}")
        out[name] = module.run(ifnb, seed=0, device="cpu", **params)
    # no method may modify its input
    assert (ifnb.X != before.X).nnz == 0 and list(ifnb.obs_names) == list(before.obs_names)
    return out


@pytest.mark.parametrize("name", list(METHOD_PARAMS))
def test_result_round_trips_through_h5ad(results, name, tmp_path):
    import anndata as ad

    path = tmp_path / f"{name}.h5ad"
    results[name].write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_emb"], results[name].obsm["X_emb"])
    assert set(back.uns) == set(results[name].uns)


@pytest.mark.parametrize("name", list(METHOD_PARAMS))
def test_method_returns_contract(ifnb, results, name):
    from sklearn.metrics import adjusted_rand_score
    from sklearn.cluster import KMeans

    res = results[name]
    assert res is not ifnb
    assert list(res.obs_names) == list(ifnb.obs_names)
    assert res.obs["batch"].equals(ifnb.obs["batch"])
    emb = res.obsm["X_emb"]
    assert isinstance(emb, np.ndarray) and emb.dtype == np.float32
    assert emb.shape[0] == ifnb.n_obs and 2 <= emb.shape[1] <= 100
    assert np.isfinite(emb).all() and emb.std(0).max() > 0
    # the embedding carries the biology: k-means on it agrees with the six annotated types
    labels = KMeans(6, n_init=5, random_state=0).fit_predict(emb)
    assert adjusted_rand_score(ifnb.obs["cell_type"], labels) > 0.3


def test_scanorama_corrected_expression_aligns_with_input_cells_and_genes(ifnb, results):
    from sklearn.preprocessing import normalize

    res = results["scanorama"]
    corrected = res.layers["corrected"]
    assert sp.issparse(corrected) and corrected.shape == ifnb.shape
    assert list(res.var_names) == list(ifnb.var_names)
    assert res.obsm["X_emb"].shape[1] == 30
    A = ifnb.X.toarray()
    B = corrected.toarray()
    # Scanorama L2-normalises cells, then moves the non-reference batch(es): some cells really changed
    change = np.linalg.norm(B - normalize(A), axis=1)
    moved = np.flatnonzero(change > 0.1)
    assert moved.size > ifnb.n_obs / 4
    # a moved cell's corrected profile still resembles its own input profile (cell and gene order kept)
    # far more than another moved cell's
    cells = moved[::5]
    others = np.roll(moved, 17)[::5]
    own = np.median([np.corrcoef(A[i], B[i])[0, 1] for i in cells])
    other = np.median([np.corrcoef(A[i], B[j])[0, 1] for i, j in zip(cells, others)])
    assert own > 0.5 and own > other + 0.2, (own, other)


def test_harmony_mixes_batches_more_than_its_pca(ifnb, results):
    from sklearn.neighbors import NearestNeighbors

    def other_batch_fraction(emb):
        idx = NearestNeighbors(n_neighbors=16).fit(emb).kneighbors(emb, return_distance=False)[:, 1:]
        b = ifnb.obs["batch"].to_numpy()
        return float((b[idx] != b[:, None]).mean())

    res = results["harmony"]
    assert other_batch_fraction(res.obsm["X_emb"]) > other_batch_fraction(res.obsm["X_pca"]) + 0.1


def test_desc_extra_outputs(ifnb, results):
    res = results["desc"]
    q = res.obsm["desc_prob"]
    assert q.shape[0] == ifnb.n_obs and np.allclose(q.sum(1), 1, atol=1e-5)
    assert res.obs["desc_cluster"].dtype == "category"
    np.testing.assert_array_equal(res.obs["desc_cluster"].astype(int).to_numpy(), q.argmax(1))
    assert res.uns["desc"]["dims"] == [ifnb.n_vars, 64]  # 832 cells -> DESC's [G, 64]
    assert res.obsm["X_emb"].shape[1] == 64


@pytest.mark.parametrize("name", list(METHOD_PARAMS))
def test_unknown_param_names_the_valid_ones(ifnb, name):
    import importlib

    module = importlib.import_module(f"davae_study.methods.{name}")
    with pytest.raises(TypeError, match="valid params are") as err:
        module.run(ifnb, seed=0, not_a_param=1)
    assert "not_a_param" in str(err.value)


def test_dimensions_are_capped_by_the_data_and_recorded(ifnb):
    from davae_study.methods import harmony, scanorama

    small = ifnb[:, :20].copy()
    res = scanorama.run(small, dimred=100)
    assert res.obsm["X_emb"].shape[1] == 19 and res.uns["scanorama"]["dimred"] == 19
    res = harmony.run(small, n_pcs=50, ncores=1)
    assert res.obsm["X_emb"].shape[1] == 19 and res.uns["harmony"]["n_pcs"] == 19


def test_harmony_pca_is_the_raw_rows_pca(ifnb, results):
    """Harmony starts from the same PCA as the RAW reference row, so the comparison isolates Harmony."""
    from davae_study.methods import pca

    raw = pca.run(ifnb, seed=0, n_comps=20).obsm["X_emb"]
    np.testing.assert_allclose(np.abs(raw), np.abs(results["harmony"].obsm["X_pca"]), atol=1e-3)


def test_desc_params_accept_original_names_and_reject_bad_dims():
    from davae_study.methods.desc import DEFAULTS, _resolve_params

    p = _resolve_params({"louvain_resolution": 0.6, "max_iter": 3, "epochs_fit": 2})
    assert (p["resolution"], p["max_rounds"], p["epochs_per_round"]) == (0.6, 3, 2)
    assert p["pretrain_epochs"] == DEFAULTS["pretrain_epochs"] == 300  # the original package's default
    with pytest.raises(ValueError, match="'dims' must be null or a list"):
        _resolve_params({"dims": 64})
    with pytest.raises(ValueError, match="one 'resolution'"):
        _resolve_params({"resolution": [0.6, 0.8]})
