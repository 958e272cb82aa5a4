"""evaluate(): the tidy/repeats contract, failed methods, missing labels, params; summarise(): Tran's
normalised ARI scores and F1."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from davae_study.metrics import DEFAULTS, METRIC_NAMES, evaluate, resolve_params, score, summarise

COLS = ["application", "method", "metric", "group", "value", "n", "note"]
FAST = {"ari": {"n_iter": 3}, "kbet": {"n_repeat": 5}, "enabled": list(METRIC_NAMES)}


def _adata(n=300, seed=0, status="ok"):
    rng = np.random.default_rng(seed)
    ct = rng.choice(["T", "B", "Mono"], size=n)
    batch = rng.choice(["b1", "b2"], size=n)
    centres = {"T": 0.0, "B": 8.0, "Mono": 16.0}
    emb = rng.normal(size=(n, 6)) + np.array([centres[c] for c in ct])[:, None]
    a = ad.AnnData(X=np.zeros((n, 3), dtype=np.float32),
                   obs=pd.DataFrame({"batch": pd.Categorical(batch), "cell_type": pd.Categorical(ct)},
                                    index=[f"c{i}" for i in range(n)]))
    a.obsm["X_emb"] = emb
    a.uns["method"] = {"name": "pca", "status": status, "error": "" if status == "ok" else "CUDA out of memory"}
    return a


def test_evaluate_contract_and_values():
    tidy, reps = evaluate(_adata(), application="toy", method="pca", params=FAST)
    assert list(tidy.columns) == COLS
    assert list(reps.columns) == COLS + ["repeat"]
    assert (tidy["application"] == "toy").all() and (tidy["method"] == "pca").all()
    got = set(tidy["metric"])
    assert set(m for ms in METRIC_NAMES.values() for m in ms) <= got
    overall = tidy[tidy["group"] == "all"].set_index("metric")["value"]
    # types well separated, batches random: everything near its best
    assert overall["ari_celltype"] > 0.9 and overall["one_minus_ari_batch"] > 0.9
    assert overall["kbet_acceptance"] > 0.7 and overall["ilisi"] > 0.7 and overall["clisi"] > 0.9
    assert overall["asw_batch"] > 0.8 and overall["graph_connectivity"] > 0.9
    assert overall["knn_purity"] > 0.95 and overall["nmi_leiden"] > 0.9 and overall["ari_leiden"] > 0.9
    # purity has a row per cell type beside 'all'; Leiden names its chosen resolution
    assert set(tidy.loc[tidy["metric"] == "knn_purity", "group"]) == {"all", "T", "B", "Mono"}
    leiden = tidy[tidy["metric"].isin(["nmi_leiden", "ari_leiden"])]
    assert len(leiden) == 2 and leiden["note"].str.contains("Leiden resolution").all()
    assert set(reps["metric"]) >= {"ari_celltype", "one_minus_ari_batch", "kbet_acceptance"}
    kb = reps[reps["metric"] == "kbet_acceptance"]
    assert kb.groupby("group")["repeat"].nunique().eq(5).all()
    assert tidy["value"].notna().sum() > 0 and tidy["n"].dtype.kind == "i"


def test_a_methods_notes_are_appended_to_every_row_after_the_metrics_own(tmp_path):
    a = _adata()
    a.uns["method"]["notes"] = ["DAVAE: batch groups sharing no neighbourhood (b1 | b2) left unaligned"]
    a.write_h5ad(tmp_path / "m.h5ad")  # the notes come back from the file as an array
    tidy, reps = evaluate(ad.read_h5ad(tmp_path / "m.h5ad"), application="toy", method="davae",
                          params={"enabled": ["knn_purity", "leiden"]})
    assert tidy["note"].str.endswith("(b1 | b2) left unaligned").all()
    leiden = tidy.loc[tidy["metric"] == "nmi_leiden", "note"].iloc[0]
    assert leiden.startswith("Leiden resolution") and "; DAVAE: batch groups" in leiden  # its own note first
    per_type = tidy.loc[(tidy["metric"] == "knn_purity") & (tidy["group"] != "all"), "note"]
    assert len(per_type) == 3 and per_type.str.startswith("DAVAE:").all()  # no own note: no separator
    plain, _ = evaluate(_adata(), application="toy", method="pca", params={"enabled": ["knn_purity"]})
    assert not plain["note"].str.contains("DAVAE").any() and plain.loc[plain["group"] == "all", "note"].item() == "mean over labelled cells, k=15"


def test_failed_method_gives_nan_rows_never_raises():
    a = _adata(status="failed")
    del a.obsm["X_emb"]
    tidy, reps = evaluate(a, application="toy", method="davae", params=FAST)
    assert list(tidy.columns) == COLS and reps.empty and list(reps.columns) == COLS + ["repeat"]
    assert tidy["value"].isna().all()
    assert (tidy["note"] == "method failed: CUDA out of memory").all()
    assert set(tidy["metric"]) == {m for ms in METRIC_NAMES.values() for m in ms}


def test_missing_embedding_without_status_is_reported():
    a = _adata()
    del a.obsm["X_emb"]
    tidy, _ = evaluate(a, application="toy", method="pca", params=FAST)
    assert tidy["value"].isna().all() and tidy["note"].str.contains("no obsm\\['X_emb'\\]").all()


@pytest.mark.parametrize("how", ["absent", "all_nan"])
def test_missing_labels_make_label_metrics_nan(how):
    a = _adata()
    if how == "absent":
        del a.obs["cell_type"]
    else:
        a.obs["cell_type"] = pd.Categorical([np.nan] * a.n_obs, categories=["T"])
    tidy, _ = evaluate(a, application="toy", method="pca", params=FAST)
    by = tidy[tidy["group"] == "all"].set_index("metric")
    for m in ["ari_celltype", "one_minus_ari_batch", "kbet_acceptance", "clisi", "asw_batch", "graph_connectivity",
              "knn_purity", "nmi_leiden", "ari_leiden"]:
        assert np.isnan(by.loc[m, "value"]) and "no cell-type labels" in by.loc[m, "note"]
    assert by.loc["ilisi", "value"] > 0.7  # batch metric still computed


def test_params_defaults_and_errors():
    p = resolve_params({"kbet": {"n_repeat": 7}})
    assert p["kbet"]["n_repeat"] == 7 and p["kbet"]["pcts"] == DEFAULTS["kbet"]["pcts"]
    assert p["kbet_pooled"]["n_repeat"] == 7  # the pooled variant inherits the kbet section
    assert resolve_params({"kbet_pooled": {"max_cells": 500}})["kbet_pooled"]["max_cells"] == 500
    with pytest.raises(ValueError, match="unknown metrics config key"):
        resolve_params({"kbet_typo": {}})
    with pytest.raises(ValueError, match="unknown keys"):
        resolve_params({"kbet": {"k0": 5}})
    with pytest.raises(ValueError, match="unknown metrics"):
        resolve_params({"enabled": ["ari", "nmi"]})


def test_new_conservation_metrics_are_enabled_by_default_and_match_the_schema(repo):
    import yaml

    assert {"knn_purity", "leiden"} <= set(DEFAULTS["enabled"])
    assert METRIC_NAMES["knn_purity"] == ["knn_purity"] and METRIC_NAMES["leiden"] == ["nmi_leiden", "ari_leiden"]
    schema = yaml.safe_load((repo / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]["metrics"]["properties"]
    assert props["enabled"]["default"] == DEFAULTS["enabled"]
    assert set(props["enabled"]["items"]["enum"]) == set(METRIC_NAMES)
    for key in ("knn_purity", "leiden"):
        assert {k: v["default"] for k, v in props[key]["properties"].items()} == DEFAULTS[key]


def test_leiden_params_reach_the_metric():
    tidy, _ = evaluate(_adata(), application="toy", method="pca",
                       params={"enabled": ["leiden"], "leiden": {"resolutions": [0.7]}})
    assert list(tidy["metric"]) == ["nmi_leiden", "ari_leiden"]
    assert tidy["note"].str.contains("resolution 0.7").all()
    values, table, _ = score(_adata(), "knn_purity", k=5)
    assert values["knn_purity"] > 0.95 and "k=5" in table.set_index("group").loc["all", "note"]


def test_enabled_subset_only():
    tidy, reps = evaluate(_adata(), application="toy", method="pca",
                          params={"enabled": ["asw_batch", "graph_connectivity"]})
    assert set(tidy["metric"]) == {"asw_batch", "graph_connectivity"} and reps.empty


def _table(rows):
    df = pd.DataFrame(rows, columns=["application", "method", "metric", "value"])
    df["group"], df["n"], df["note"] = "all", 100, ""
    return df[COLS]


def test_summarise_tran_normalisation_and_f1():
    rows = []
    for m, ct, b in [("A", 0.2, 0.9), ("B", 0.5, 0.6), ("C", 0.8, 0.3), ("D", np.nan, np.nan)]:
        rows += [("app", m, "ari_celltype", ct), ("app", m, "one_minus_ari_batch", b)]
    rows += [("app2", "A", "ari_celltype", 0.4), ("app2", "A", "one_minus_ari_batch", 0.5),
             ("app2", "B", "ari_celltype", 0.6), ("app2", "B", "one_minus_ari_batch", 0.7)]
    t = _table(rows)
    t.loc[t["method"] == "D", "note"] = "method failed: boom"
    out = summarise(t)
    assert list(out.columns) == COLS and len(out) == len(t) + 6 * 3
    v = out.set_index(["application", "method", "metric"])["value"]
    # app: ct (0.2, 0.5, 0.8) -> (0, .5, 1); 1-ARIb (0.9, 0.6, 0.3) -> (1, .5, 0)
    assert v[("app", "B", "ari_celltype_norm")] == pytest.approx(0.5)
    assert v[("app", "A", "one_minus_ari_batch_norm")] == pytest.approx(1.0)
    assert v[("app", "A", "ari_f1")] == pytest.approx(0.0)
    assert v[("app", "B", "ari_f1")] == pytest.approx(0.5)  # 2 * .5 * .5 / (.5 + .5)
    assert np.isnan(v[("app", "D", "ari_f1")])
    note = out.set_index(["application", "method", "metric"])["note"]
    assert note[("app", "D", "ari_f1")] == "method failed: boom"
    # app2: two methods, normalised to 0 and 1 per application, independent of app
    assert v[("app2", "B", "ari_celltype_norm")] == 1.0 and v[("app2", "A", "ari_celltype_norm")] == 0.0
    assert v[("app2", "B", "ari_f1")] == 1.0


def test_summarise_on_evaluate_output():
    t1, _ = evaluate(_adata(seed=1), application="toy", method="m1", params={"enabled": ["ari"], "ari": {"n_iter": 3}})
    a = _adata(seed=1)
    a.obsm["X_emb"] = np.random.default_rng(0).normal(size=a.obsm["X_emb"].shape)  # a useless method
    t2, _ = evaluate(a, application="toy", method="m2", params={"enabled": ["ari"], "ari": {"n_iter": 3}})
    out = summarise(pd.concat([t1, t2], ignore_index=True))
    v = out.set_index(["method", "metric"])["value"]
    assert v[("m1", "ari_celltype_norm")] == 1.0 and v[("m2", "ari_celltype_norm")] == 0.0
    assert v[("m2", "ari_f1")] == 0.0  # worst cell-type ARI -> F1 0 whatever its batch score


def test_score_one_metric_on_an_anndata():
    a = _adata()
    values, table, reps = score(a, "kbet", n_repeat=4, pcts=[10, 20])
    assert list(table.columns) == ["metric", "group", "value", "n", "note"]
    assert set(table["group"]) >= {"T|kbet@10%", "Mono|kbet@20%", "kbet@10%", "all"}
    assert 0.7 < values["kbet_acceptance"] <= 1 and set(reps["repeat"]) == set(range(4))
    tidy, _ = evaluate(a, application="toy", method="pca", params={"enabled": ["asw_batch"]})
    v_asw, _, _ = score(a, "asw_batch")
    assert v_asw["asw_batch"] == tidy.set_index(["metric", "group"]).loc[("asw_batch", "all"), "value"]
    with pytest.raises(ValueError, match="unknown metric"):
        score(a, "nmi")
    with pytest.raises(ValueError, match="embedding_key"):
        score(a, "lisi", embedding_key="X_nope")


def test_summarise_after_tsv_round_trip(tmp_path):
    from davae_study.io import read_tsv, write_tsv

    a = _adata(status="failed")
    failed, _ = evaluate(a, application="toy", method="bad", params={"enabled": ["ari"]})
    ok, _ = evaluate(_adata(), application="toy", method="pca", params={"enabled": ["ari"], "ari": {"n_iter": 2}})
    write_tsv(pd.concat([ok, failed], ignore_index=True), tmp_path / "m.tsv")
    out = summarise(read_tsv(tmp_path / "m.tsv"))
    new = out[out["metric"].isin(["ari_celltype_norm", "one_minus_ari_batch_norm", "ari_f1"])]
    assert (new.loc[new["method"] == "bad", "note"] == "method failed: CUDA out of memory").all()
    assert not out["note"].isin(["nan"]).any()
