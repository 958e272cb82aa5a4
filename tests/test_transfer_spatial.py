"""Spatial: Leiden resolution search, soft cell-type scores, simulated spots and their ground truth."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from davae_study.groundtruth import (
    evaluate_spots,
    make_spots_application,
    simulate_config,
    spatial_clusters_step,
    transfer_config,
    transfer_step,
)
from davae_study.io import read_tsv, write_h5ad
from davae_study.spatial import (
    PROPORTION_PREFIX,
    leiden_n_clusters,
    proportion_correlation,
    similarity_scores,
    simulate_spots,
)

from conftest import IFNB  # the committed demo copy (data/demo): never skipped


def marker_cells(n_per=20, n_types=4):
    """Cells whose only expressed gene is their type's marker (gene i = type i, one count)."""
    labels = np.repeat([f"T{i}" for i in range(n_types)], n_per)
    X = sp.csr_matrix((np.ones(labels.size, dtype=np.float32), (np.arange(labels.size),
                       np.repeat(np.arange(n_types), n_per))), shape=(labels.size, n_types))
    return ad.AnnData(X=X, obs=pd.DataFrame({"cell_type": labels, "batch": "b"}, index=[f"c{i}" for i in range(labels.size)]),
                      var=pd.DataFrame(index=[f"g{i}" for i in range(n_types)]))


def test_simulated_spots_sum_the_cells_of_their_true_mixture():
    cells = marker_cells()
    spots = simulate_spots(cells, grid=(5, 6), cells_per_spot=(3, 9), seed=1)
    assert spots.n_obs == 30 and spots.obsm["spatial"].shape == (30, 2)
    props = spots.obs[[f"{PROPORTION_PREFIX}T{i}" for i in range(4)]].to_numpy()
    np.testing.assert_allclose(props.sum(1), 1.0)
    # marker counts of each spot are exactly the number of its cells of each type
    np.testing.assert_allclose(spots.X.toarray(), props * spots.obs["n_cells"].to_numpy()[:, None], atol=1e-6)
    assert spots.obs["n_cells"].between(3, 9).all()
    again = simulate_spots(cells, grid=(5, 6), cells_per_spot=(3, 9), seed=1)
    np.testing.assert_array_equal(again.X.toarray(), spots.X.toarray())
    with pytest.raises(ValueError, match="two cell types"):
        simulate_spots(cells[cells.obs["cell_type"] == "T0"], grid=(2, 2))


def test_similarity_scores_follow_mixture_proportions():
    # embedding = marker proportions: a spot's cosine similarity to each pure type rises with its share
    cells = marker_cells()
    spots = simulate_spots(cells, grid=(8, 8), cells_per_spot=6, seed=0)
    cell_emb = cells.X.toarray()
    spot_emb = spots.X.toarray() / spots.obs["n_cells"].to_numpy()[:, None]
    for normalise in ("paper", "proportion"):
        t = similarity_scores(spot_emb, cell_emb, cells.obs["cell_type"], normalise=normalise, spot_names=spots.obs_names)
        corr = proportion_correlation(spots.obs, t)
        assert (corr["r"] > 0.9).all(), (normalise, corr)
    t = similarity_scores(spot_emb, cell_emb, cells.obs["cell_type"], normalise="proportion")
    np.testing.assert_allclose(t.filter(like="prob:").sum(1), 1.0)
    with pytest.raises(ValueError, match="normalise"):
        similarity_scores(spot_emb, cell_emb, cells.obs["cell_type"], normalise="nope")


def test_proportion_correlation_notes_constant_types():
    truth = pd.DataFrame({"proportion:A": [0.1, 0.5, 0.9], "proportion:B": [0.2, 0.2, 0.2]}, index=list("xyz"))
    scores = pd.DataFrame({"prob:A": [1.0, 2.0, 3.0], "prob:B": [0.0, 1.0, 0.5]}, index=list("xyz"))
    c = proportion_correlation(truth, scores).set_index("type")
    assert c.loc["A", "r"] == pytest.approx(1.0)
    assert np.isnan(c.loc["B", "r"]) and "constant" in c.loc["B", "note"]


def test_leiden_search_hits_the_target_cluster_count():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, size=(6, 5))
    emb = np.vstack([rng.normal(c, 0.5, size=(40, 5)) for c in centres])
    labels, resolution = leiden_n_clusters(emb, 6, seed=0)
    assert len(labels.categories) == 6 and resolution > 0
    truth = np.repeat(np.arange(6), 40)
    assert pd.crosstab(truth, np.asarray(labels)).max(1).sum() == emb.shape[0]  # each blob one cluster
    with pytest.raises(ValueError, match="n_clusters"):
        leiden_n_clusters(emb, 0)


def test_spots_step_chain_writes_correlations_and_cluster_maps(tmp_path):
    """simulate → (embedding) → transfer_step with similarity scores → spatial_clusters_step."""
    cells = marker_cells(n_per=30)
    cells.obs["batch"] = np.where(np.arange(cells.n_obs) % 2, "A", "B")
    combined, truth = make_spots_application(cells, reference_batches="A", spot_batches="B", grid=(6, 6),
                                             cells_per_spot=5)
    assert not set(combined.obs_names[combined.obs["role"] == "reference"]) & set(truth.index)
    assert (combined.obs.loc[truth.index, "cell_type"].astype(str) == truth["cell_type"].astype(str)).all()
    truth_path = tmp_path / "truth.tsv"
    truth.reset_index().to_csv(truth_path, sep="\t", index=False)
    X = combined.X.toarray()
    emb = X / np.maximum(X.sum(1, keepdims=True), 1)  # proportions of markers: a perfect joint embedding
    prepared = ad.AnnData(X=combined.X, obs=combined.obs)
    integrated = prepared.copy()
    integrated.obsm["X_emb"] = emb
    write_h5ad(prepared, tmp_path / "p.h5ad")
    write_h5ad(integrated, tmp_path / "i.h5ad")
    cfg = {"applications": {"spots": {"transfer": {"key": "batch", "reference": "A", "query": "spots",
                                                   "scores": "similarity", "truth": str(truth_path)}}}}
    transfer_step(str(tmp_path / "p.h5ad"), str(tmp_path / "i.h5ad"), str(tmp_path / "t.tsv"), str(tmp_path / "m.tsv"),
                  application="spots", method="m", truth_path=str(truth_path), **transfer_config(cfg, "spots"))
    m = read_tsv(tmp_path / "m.tsv")
    corr = m.query("metric == 'spot_proportion_corr'").set_index("group")
    assert set(corr.index) == {"all", "T0", "T1", "T2", "T3"}
    assert corr.loc["all", "value"] > 0.8 and corr.loc["all", "n"] == 36
    assert "transfer_accuracy" in set(m["metric"])  # dominant type of each spot
    clusters = spatial_clusters_step(str(tmp_path / "p.h5ad"), str(tmp_path / "i.h5ad"), str(tmp_path / "c.tsv"),
                                     n_clusters=3, n_neighbors=10, key="batch", values="spots",
                                     truth_path=str(truth_path))
    assert list(clusters.columns) == ["cell", "batch", "cluster", "x", "y", "resolution"]
    assert len(clusters) == 36 and clusters[["x", "y"]].notna().all().all()
    assert clusters["cluster"].nunique() == 3


def test_simulate_config_reads_the_named_entry():
    cfg = {"transfer": {"simulate_spots": {"s": {"source": "x.h5ad", "grid": [3, 4], "cells_per_spot": [2, 5]}}}}
    assert simulate_config(cfg, "s") == {"grid": (3, 4), "cells_per_spot": (2, 5)}
    with pytest.raises(ValueError, match="simulate_spots"):
        simulate_config(cfg, "other")


def test_spots_of_stimulated_cells_against_control_reference():
    """Ground truth (b): spots mixed from IFN-β-stimulated PBMCs, reference of control PBMCs."""
    import scanpy as sc

    combined, truth = make_spots_application(ad.read_h5ad(IFNB), reference_batches="CTRL", spot_batches="STIM",
                                             grid=(10, 10), cells_per_spot=8, seed=0)
    assert (combined.obs["role"] == "query").sum() == 100
    adata = combined.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=2000, batch_key="batch")
    pca = sc.pp.pca(adata[:, adata.var["highly_variable"]].X, n_comps=20, random_state=0)
    for variant in ("similarity", "mlp"):
        corr = evaluate_spots(pca, combined.obs, truth, variant=variant, device="cpu")
        assert len(corr) == 6
        # uncorrected PCA still orders spots by their true share of every type
        assert corr["r"].mean() > 0.3 and (corr["r"] > 0).all(), (variant, corr)
