"""Label transfer (MLP, kNN), transfer tables and the transfer workflow step."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from davae_study.groundtruth import evaluate_celltech, transfer_config, transfer_metric_rows, transfer_step
from davae_study.io import read_tsv, write_h5ad
from davae_study.transfer import (
    PROB_PREFIX,
    UNASSIGNED,
    apply_threshold,
    knn_transfer,
    mlp_transfer,
    split_reference_query,
    transfer_scores,
    transfer_table,
)

from conftest import CELLBENCH  # the committed demo copy (data/demo): never skipped


def blobs(n_per=40, n_types=3, dim=8, shift=0.0, seed=0):
    """Gaussian blobs, one per type; ``shift`` moves all points (a crude batch effect)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(0, 4, size=(n_types, dim))
    x = np.vstack([rng.normal(c, 1.0, size=(n_per, dim)) for c in centres]) + shift
    y = np.repeat([f"type{i}" for i in range(n_types)], n_per)
    return x.astype(np.float32), y


def test_transfer_table_columns_and_threshold():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8]])
    t = transfer_table(probs, ["A", "B"], ["c1", "c2", "c3"], threshold=0.6)
    assert list(t.columns) == ["predicted", "confidence", "prob:A", "prob:B"]
    assert t.index.name == "cell"
    assert t["predicted"].tolist() == ["A", UNASSIGNED, "B"]
    assert t["confidence"].tolist() == [0.9, 0.55, 0.8]
    # lowering the threshold again restores the label from the probabilities
    assert apply_threshold(t, 0.0)["predicted"].tolist() == ["A", "A", "B"]
    with pytest.raises(ValueError, match="threshold"):
        apply_threshold(t, 1.5)


@pytest.mark.parametrize("classifier", [knn_transfer, mlp_transfer])
def test_classifiers_recover_shifted_blobs(classifier):
    x_ref, y_ref = blobs(seed=0)
    x_q, y_q = blobs(n_per=20, seed=1, shift=0.5)
    t = classifier(x_ref, y_ref, x_q)
    probs = t[[c for c in t if c.startswith(PROB_PREFIX)]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(t["confidence"], probs.max(1), rtol=1e-6)
    assert transfer_scores(t["predicted"], y_q)["accuracy"] > 0.95


def test_mlp_is_seeded_and_stops_early():
    x_ref, y_ref = blobs(seed=0)
    x_q, _ = blobs(n_per=10, seed=2)
    a = mlp_transfer(x_ref, y_ref, x_q, seed=3)
    b = mlp_transfer(x_ref, y_ref, x_q, seed=3)
    pd.testing.assert_frame_equal(a, b)
    _, hist = mlp_transfer(x_ref, y_ref, x_q, seed=3, epochs=200, patience=3, return_history=True)
    # separable blobs: the validation loss stops improving long before 200 epochs
    assert 3 < len(hist) < 200
    assert hist["val_accuracy"].notna().all()


def test_threshold_marks_uncertain_cells_unassigned():
    x_ref, y_ref = blobs(seed=0)
    # query points halfway between two type centres are ambiguous for a kNN vote
    mid = (x_ref[y_ref == "type0"].mean(0) + x_ref[y_ref == "type1"].mean(0)) / 2
    x_q = np.vstack([mid, x_ref[y_ref == "type2"][:3]])
    t = knn_transfer(x_ref, y_ref, x_q, k=30, weights="distance", threshold=0.9)
    assert t["predicted"].iloc[0] == UNASSIGNED
    assert (t["predicted"].iloc[1:] == "type2").all()


def test_bad_inputs_raise_clear_errors():
    x, y = blobs()
    with pytest.raises(ValueError, match="dimensions"):
        knn_transfer(x, y, x[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        knn_transfer(x, np.where(np.arange(len(y)) == 0, None, y), x)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        mlp_transfer(bad, y, x)
    obs = pd.DataFrame({"batch": ["a", "b"]}, index=["c1", "c2"])
    with pytest.raises(ValueError, match="No cell has"):
        split_reference_query(ad.AnnData(obs=obs), key="batch", reference="z", query=None)


def test_transfer_scores_counts_unassigned_as_wrong():
    s = transfer_scores(["A", UNASSIGNED, "B", "B"], ["A", "A", "B", None])
    assert s["n"] == 3
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["unassigned_fraction"] == pytest.approx(1 / 3)
    assert s["majority_rate"] == pytest.approx(2 / 3)


def _transfer_files(tmp_path, failed=False, notes=None):
    x_ref, y_ref = blobs(n_per=30, seed=0)
    x_q, y_q = blobs(n_per=10, seed=1, shift=0.3)
    obs = pd.DataFrame(
        {"batch": ["ref"] * len(y_ref) + ["qry"] * len(y_q), "cell_type": list(y_ref) + list(y_q)},
        index=[f"c{i}" for i in range(len(y_ref) + len(y_q))],
    )
    prepared = ad.AnnData(X=np.zeros((len(obs), 2), dtype=np.float32), obs=obs)
    integrated = prepared.copy()
    if failed:
        integrated.uns["method"] = {"name": "m", "status": "failed", "error": "boom"}
    else:
        integrated.obsm["X_emb"] = np.vstack([x_ref, x_q])
        integrated.uns["method"] = {"name": "m", "status": "ok"}
        if notes:
            integrated.uns["method"]["notes"] = notes
    write_h5ad(prepared, tmp_path / "prepared.h5ad")
    write_h5ad(integrated, tmp_path / "integrated.h5ad")
    return obs


@pytest.mark.parametrize("classifier", ["mlp", "knn"])
def test_transfer_step_writes_contract_table_and_tidy_metrics(tmp_path, classifier):
    obs = _transfer_files(tmp_path)
    cfg = {"applications": {"app": {"transfer": {"key": "batch", "reference": "ref", "classifier": classifier,
                                                 "mlp": {"epochs": 10}}}}}
    transfer_step(str(tmp_path / "prepared.h5ad"), str(tmp_path / "integrated.h5ad"), str(tmp_path / "t.tsv"),
                  str(tmp_path / "m.tsv"), application="app", method="m", **transfer_config(cfg, "app"))
    table = read_tsv(tmp_path / "t.tsv")
    assert list(table.columns) == ["cell", "predicted", "confidence", "prob:type0", "prob:type1", "prob:type2"]
    assert table["cell"].tolist() == obs.index[obs["batch"] == "qry"].tolist()
    metrics = read_tsv(tmp_path / "m.tsv")
    assert list(metrics.columns) == ["application", "method", "metric", "group", "value", "n", "note"]
    acc = metrics.query("metric == 'transfer_accuracy' and group == 'all'")["value"].item()
    assert acc > 0.9
    assert set(metrics.query("metric == 'transfer_accuracy'")["group"]) == {"all", "type0", "type1", "type2"}
    assert metrics.query("metric == 'transfer_macro_f1'")["n"].item() == 30


def test_transfer_metrics_carry_the_methods_notes(tmp_path):
    _transfer_files(tmp_path, notes=["DAVAE: batch groups sharing no neighbourhood (ref | qry) left unaligned"])
    cfg = {"applications": {"app": {"transfer": {"key": "batch", "reference": "ref", "classifier": "knn"}}}}
    transfer_step(str(tmp_path / "prepared.h5ad"), str(tmp_path / "integrated.h5ad"), str(tmp_path / "t.tsv"),
                  str(tmp_path / "m.tsv"), application="app", method="m", **transfer_config(cfg, "app"))
    metrics = read_tsv(tmp_path / "m.tsv")
    assert len(metrics) > 2 and metrics["note"].str.endswith("(ref | qry) left unaligned").all()


def test_transfer_step_records_failed_method_as_nan_rows(tmp_path):
    _transfer_files(tmp_path, failed=True)
    cfg = {"applications": {"app": {"transfer": {"key": "batch", "reference": "ref"}}}}
    transfer_step(str(tmp_path / "prepared.h5ad"), str(tmp_path / "integrated.h5ad"), str(tmp_path / "t.tsv"),
                  str(tmp_path / "m.tsv"), application="app", method="m", **transfer_config(cfg, "app"))
    assert len(read_tsv(tmp_path / "t.tsv")) == 0
    metrics = read_tsv(tmp_path / "m.tsv")
    assert set(metrics["metric"]) == {"transfer_accuracy", "transfer_macro_f1"}
    assert metrics["value"].isna().all()
    assert metrics["note"].str.contains("boom").all()


def test_transfer_metric_rows_without_truth_is_empty():
    t = transfer_table(np.array([[0.7, 0.3]]), ["A", "B"], ["c1"])
    assert transfer_metric_rows(t, application="a", method="m").empty


def test_transfer_config_merges_defaults_global_and_application():
    cfg = {
        "transfer": {"classifier": "knn", "knn": {"k": 5}, "mlp": {"epochs": 7}},
        "applications": {"a": {"transfer": {"key": "batch", "reference": "10x", "knn": {"metric": "cosine"}}},
                         "b": {"transfer": {"query": "q"}}, "c": {"transfer": {"reference": "r", "bogus": 1}}},
    }
    p = transfer_config(cfg, "a")
    assert p["classifier"] == "knn" and p["query"] is None and p["scores"] == "classifier"
    assert p["knn"] == {"k": 5, "weights": "uniform", "metric": "cosine"}
    assert p["mlp"]["epochs"] == 7 and p["mlp"]["lr"] == 0.01
    with pytest.raises(ValueError, match="reference"):
        transfer_config(cfg, "b")
    with pytest.raises(ValueError, match="bogus"):
        transfer_config(cfg, "c")


def test_cellbench_cross_technology_transfer_beats_majority_rate():
    """Ground truth (a): train on 10x, predict CEL-seq2 and Drop-seq cells of known cell line."""
    import scanpy as sc

    adata = ad.read_h5ad(CELLBENCH)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=20, random_state=0)
    for classifier in ("mlp", "knn"):
        res = evaluate_celltech(adata.obsm["X_pca"], adata.obs, reference="10x", classifier=classifier,
                                device="cpu").set_index("group")
        assert set(res.index) == {"all", "sc_celseq2", "sc_dropseq"}
        assert res.loc["all", "n"] == 499
        # three lines, majority ~0.41: a working transfer is far above it
        assert res.loc["all", "accuracy"] > res.loc["all", "majority_rate"] + 0.3, (classifier, res)
        assert res.loc["all", "macro_f1"] > 0.7, (classifier, res)


def test_transfer_labels_reads_roles_from_anndata():
    from davae_study.groundtruth import make_celltech_application
    from davae_study.transfer import transfer_labels

    x_ref, y_ref = blobs(n_per=20, seed=0)
    x_q, y_q = blobs(n_per=5, seed=1)
    obs = pd.DataFrame({"batch": ["10x"] * len(y_ref) + ["celseq"] * len(y_q), "cell_type": list(y_ref) + list(y_q)},
                       index=[f"c{i}" for i in range(len(y_ref) + len(y_q))])
    adata = make_celltech_application(ad.AnnData(obs=obs), reference="10x")
    assert adata.obs["role"].value_counts().to_dict() == {"reference": 60, "query": 15}
    adata.obsm["X_emb"] = np.vstack([x_ref, x_q])
    t = transfer_labels(adata, classifier="knn", k=5)
    assert t.index.tolist() == adata.obs_names[adata.obs["role"] == "query"].tolist()
    assert (t["predicted"].to_numpy() == y_q).all()
    with pytest.raises(ValueError, match="classifier"):
        transfer_labels(adata, classifier="svm")
    del adata.obsm["X_emb"]
    with pytest.raises(ValueError, match="X_emb"):
        transfer_labels(adata)
