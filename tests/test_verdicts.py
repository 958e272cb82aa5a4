"""Reproduction verdicts (davae_study.verdicts): each comparison on hand-made tables, ties and NaN rows (a
failed method) included; the shipped claims table; the file-level step and its markdown rendering."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from davae_study.spatial import cluster_morans_i, cluster_slice_mixing
from davae_study.verdicts import (
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPPORTED,
    VERDICT_COLUMNS,
    ClaimsError,
    Context,
    Field,
    compare_best,
    compare_better,
    compare_top_k,
    judge_claims,
    load_claims,
    markdown_table,
    scaling_rows,
    select_groups,
    wilcoxon_greater,
    write_verdicts,
)

from conftest import REPO

FAILED = "method failed: CUDA out of memory"
BASE = ["pca", "scanorama", "harmony", "desc"]


def field(values, notes=None, lower=False):
    return Field({k: float(v) for k, v in values.items()}, notes or {}, lower)


# ---- best --------------------------------------------------------------------------------------------------
def test_best_strict_win_and_evidence_ranks_all():
    o = compare_best(field({"davae": 0.8, "pca": 0.4, "scanorama": 0.7}), "davae", ["pca", "scanorama"])
    assert o.verdict == SUPPORTED
    assert o.evidence == "davae 0.800, scanorama 0.700, pca 0.400"


def test_best_tie_counts_against_the_claim():
    o = compare_best(field({"davae": 1.0, "pca": 0.4, "scanorama": 1.0}), "davae", ["pca", "scanorama"])
    assert o.verdict == NOT_SUPPORTED and "(tied: scanorama)" in o.reason
    # a tolerance widens the tie
    o = compare_best(field({"davae": 0.81, "scanorama": 0.80}), "davae", ["scanorama"], tol=0.02)
    assert o.verdict == NOT_SUPPORTED and "tied within 0.020" in o.reason
    assert compare_best(field({"davae": 0.81, "scanorama": 0.80}), "davae", ["scanorama"]).verdict == SUPPORTED


def test_best_leaves_out_a_failed_competitor_and_says_so():
    f = field({"davae": 0.5, "pca": 0.4, "desc": np.nan}, {"desc": FAILED})
    o = compare_best(f, "davae", ["pca", "desc"])
    assert o.verdict == SUPPORTED
    assert "desc NA (method failed" in o.reason and "desc" not in o.evidence


def test_best_subject_failed_or_undefined():
    failed = compare_best(field({"davae": np.nan, "pca": 0.4}, {"davae": FAILED}), "davae", ["pca"])
    assert failed.verdict == NOT_SUPPORTED and "davae failed" in failed.reason
    undefined = compare_best(field({"davae": np.nan, "pca": np.nan}, {"davae": "one batch only"}), "davae", ["pca"])
    assert undefined.verdict == NOT_TESTABLE and "one batch only" in undefined.reason
    alone = compare_best(field({"davae": 0.3, "pca": np.nan}, {"pca": FAILED}), "davae", ["pca"])
    assert alone.verdict == NOT_TESTABLE and "no other method has a value" in alone.reason


def test_best_lower_is_better():
    f = field({"davae": 10.0, "scanorama": 30.0}, lower=True)
    assert compare_best(f, "davae", ["scanorama"]).verdict == SUPPORTED
    assert compare_best(f, "scanorama", ["davae"]).verdict == NOT_SUPPORTED


# ---- top two -----------------------------------------------------------------------------------------------
def test_top_two_holds_and_breaks():
    f = field({"davae": 0.9, "desc": 0.8, "pca": 0.5, "scanorama": 0.6})
    assert compare_top_k(f, "davae", BASE, ["desc"], k=2).verdict == SUPPORTED
    # order inside the top two does not matter
    f2 = field({"davae": 0.8, "desc": 0.9, "pca": 0.5, "scanorama": 0.6})
    assert compare_top_k(f2, "davae", BASE, ["desc"], k=2).verdict == SUPPORTED
    broken = field({"davae": 0.9, "desc": 0.5, "pca": 0.5, "scanorama": 0.6})
    o = compare_top_k(broken, "davae", BASE, ["desc"], k=2)
    assert o.verdict == NOT_SUPPORTED and "scanorama" in o.reason and "pca" in o.reason  # pca ties desc


def test_top_two_tie_at_the_boundary_and_failed_partner():
    tie = field({"davae": 0.9, "desc": 0.6, "scanorama": 0.6, "pca": 0.1})
    o = compare_top_k(tie, "davae", BASE, ["desc"], k=2)
    assert o.verdict == NOT_SUPPORTED and "tied" in o.reason
    gone = field({"davae": 0.9, "desc": np.nan, "scanorama": 0.6}, {"desc": FAILED})
    o = compare_top_k(gone, "davae", BASE, ["desc"], k=2)
    assert o.verdict == NOT_SUPPORTED and "desc" in o.reason


# ---- higher than X, with and without the test ----------------------------------------------------------------
def test_better_than_plain_tie_and_threshold():
    f = field({"davae": 0.7, "scanorama": 0.7, "pca": 0.3})
    assert compare_better(f, "davae", ["pca"]).verdict == SUPPORTED
    o = compare_better(f, "davae", ["scanorama"])
    assert o.verdict == NOT_SUPPORTED and "(tie)" in o.reason
    assert compare_better(field({"davae": 0.9}, lower=True), "davae", [], threshold=1.2).verdict == SUPPORTED
    assert compare_better(field({"davae": 1.5}, lower=True), "davae", [], threshold=1.2).verdict == NOT_SUPPORTED


def test_better_than_unknown_or_failed_against_is_not_testable():
    f = field({"davae": 0.7, "scanorama": np.nan}, {"scanorama": FAILED})
    o = compare_better(f, "davae", ["seurat_v3"], unknown={"seurat_v3": "seurat_v3 is not a method of this study"})
    assert o.verdict == NOT_TESTABLE and "not a method of this study" in o.reason
    o = compare_better(f, "davae", ["scanorama"])
    assert o.verdict == NOT_TESTABLE and "method failed" in o.reason


def test_not_worse_than_uses_the_tolerance():
    f = field({"davae": 0.46, "pca": 0.50})
    assert compare_better(f, "davae", ["pca"], tol=0.05, not_worse=True).verdict == SUPPORTED
    assert compare_better(f, "davae", ["pca"], tol=0.01, not_worse=True).verdict == NOT_SUPPORTED


def test_wilcoxon_paired_by_repeat():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.6, 20)
    a = dict(enumerate(base + 0.05 + rng.uniform(0, 0.01, 20)))
    b = dict(enumerate(base))
    p, n, _ = wilcoxon_greater(a, b)
    assert n == 20 and p < 1e-4  # 20 positive differences: p = 2^-20 exactly
    p_rev, _, _ = wilcoxon_greater(b, a)
    assert p_rev > 0.99
    p0, n0, note = wilcoxon_greater(b, b)
    assert p0 == 1.0 and n0 == 20 and "zero" in note
    # NaN repeats (skipped iterations) and unmatched repeat indices are dropped from the pairs
    a_nan = {**a, 3: np.nan, 99: 1.0}
    assert wilcoxon_greater(a_nan, b)[1] == 19
    assert np.isnan(wilcoxon_greater({}, b)[0])


def test_better_than_with_test_reports_p_and_alpha():
    reps = {"davae": {i: 0.8 + 0.001 * i for i in range(10)}, "scanorama": {i: 0.7 + 0.001 * i for i in range(10)}}
    f = field({"davae": 0.805, "scanorama": 0.705})
    o = compare_better(f, "davae", ["scanorama"], test="wilcoxon", repeats=reps, alpha=0.05)
    assert o.verdict == SUPPORTED and "Wilcoxon p=" in o.evidence and "n=10 paired repeats" in o.evidence
    # higher median but only 4 repeats: the smallest one-sided p is 1/16 > 0.05
    few = {m: {i: v for i, v in r.items() if i < 4} for m, r in reps.items()}
    o = compare_better(f, "davae", ["scanorama"], test="wilcoxon", repeats=few, alpha=0.05)
    assert o.verdict == NOT_SUPPORTED and "not significant" in o.reason
    o = compare_better(f, "davae", ["scanorama"], test="wilcoxon", repeats={}, alpha=0.05)
    assert o.verdict == NOT_TESTABLE


# ---- groups: per cell type, at every size ------------------------------------------------------------------
def test_group_selection():
    groups = ["all", "A", "B", "kbet@5%", "kbet@10%", "A|kbet@5%", "A|kbet@10%", "B|kbet@5%", "cells=1000"]
    assert select_groups(groups, None) == ["all"]
    assert select_groups(groups, ["cell_type"]) == ["A", "B"]
    assert select_groups(groups, ["size"]) == ["kbet@5%", "kbet@10%", "cells=1000"]
    assert select_groups(groups, ["size", "cell_type"]) == ["A|kbet@5%", "A|kbet@10%", "B|kbet@5%"]
    assert select_groups(groups, ["cell_type", "size"], types=["B"]) == ["B|kbet@5%"]


def tidy_rows(app, metric, table):
    """{(method, group): value} → tidy rows; a NaN value gets a failed note for method 'broken'."""
    return [{"application": app, "method": m, "metric": metric, "group": g, "value": v, "n": 10,
             "note": FAILED if m == "broken" else ("" if v == v else "too few cells")}
            for (m, g), v in table.items()]


def context(rows, app_methods, judge=("davae",), repeats=None, analog=False):
    tidy = pd.DataFrame(rows)
    return Context(tidy=tidy, repeats=pd.DataFrame(repeats or [], columns=[*tidy.columns, "repeat"]),
                   app_methods=app_methods, known_methods=sorted({m for ms in app_methods.values() for m in ms}),
                   applications={"paper": ("app", analog)}, judge=list(judge))


def claim(**kw):
    return {"id": "c", "figure": "Fig 0", "application": "paper", "claim": "a claim", **kw}


def test_every_size_per_type_names_the_failing_group_and_skips_empty_ones():
    t = {}
    for g, (d, h) in {"A|kbet@5%": (0.9, 0.5), "A|kbet@10%": (0.8, 0.85), "B|kbet@5%": (0.7, 0.2),
                      "B|kbet@10%": (0.6, 0.1)}.items():
        t[("davae", g)], t[("harmony", g)] = d, h
    t[("davae", "C|kbet@5%")] = t[("harmony", "C|kbet@5%")] = np.nan  # C: one batch, NaN for everyone
    ctx = context(tidy_rows("app", "kbet_acceptance", t), {"app": ["davae", "harmony"]})
    out = judge_claims([claim(compare="best", metrics=["kbet_acceptance"], per=["cell_type", "size"])], ctx)
    row = out.iloc[0]
    assert row["verdict"] == NOT_SUPPORTED
    assert "holds in 3 of 4 groups" in row["evidence"] and "A|kbet@10%" in row["evidence"]
    assert "skipped" in row["reason"] and "C|kbet@5%" in row["reason"]
    assert "does not hold in 1 of 4: A|kbet@10%" in row["reason"]
    t[("davae", "A|kbet@10%")] = 0.9
    ctx = context(tidy_rows("app", "kbet_acceptance", t), {"app": ["davae", "harmony"]})
    assert judge_claims([claim(compare="best", metrics=["kbet_acceptance"], per=["cell_type", "size"])],
                        ctx).iloc[0]["verdict"] == SUPPORTED


def test_per_cell_type_with_a_failed_method_row():
    t = {("davae", "A"): 0.8, ("davae", "B"): 0.7, ("pca", "A"): 0.1, ("pca", "B"): 0.2,
         ("broken", "A"): np.nan, ("broken", "B"): np.nan}
    ctx = context(tidy_rows("app", "kbet_acceptance", t), {"app": ["davae", "pca", "broken"]})
    row = judge_claims([claim(compare="best", metrics=["kbet_acceptance"], per=["cell_type"])], ctx).iloc[0]
    assert row["verdict"] == SUPPORTED and "holds in 2 of 2 groups" in row["evidence"]
    assert "broken NA (method failed" in row["reason"]


def test_claim_types_apply_to_the_paper_application_only():
    t = {("davae", "A"): 0.8, ("pca", "A"): 0.1, ("davae", "B"): 0.1, ("pca", "B"): 0.9}
    c = claim(compare="best", metrics=["kbet_acceptance"], per=["cell_type"], types=["A", "Z"])
    rows = tidy_rows("app", "kbet_acceptance", t)
    paper = judge_claims([c], context(rows, {"app": ["davae", "pca"]})).iloc[0]
    assert paper["verdict"] == NOT_TESTABLE and "cell type 'Z' not in" in paper["reason"]
    assert "A" in paper["evidence"] and "B:" not in paper["evidence"]
    analog = judge_claims([c], context(rows, {"app": ["davae", "pca"]}, analog=True)).iloc[0]
    assert analog["verdict"] == NOT_SUPPORTED and analog["application"] == "app (analog on embedded data)"


# ---- claims × judged methods ------------------------------------------------------------------------------
def test_each_judged_method_competes_with_the_baselines_only():
    t = {("davae", "all"): 0.9, ("davae_released", "all"): 0.2, ("pca", "all"): 0.5}
    ctx = context(tidy_rows("app", "ari_celltype", t), {"app": ["pca", "davae", "davae_released"]},
                  judge=("davae_released", "davae"))
    out = judge_claims([claim(compare="best", metrics=["ari_celltype"])], ctx).set_index("method")
    assert out.loc["davae", "verdict"] == SUPPORTED and "davae_released" not in out.loc["davae", "evidence"]
    assert out.loc["davae_released", "verdict"] == NOT_SUPPORTED
    assert list(judge_claims([claim(compare="best", metrics=["ari_celltype"])], ctx).columns) == VERDICT_COLUMNS


def test_metric_alternatives_and_absent_metrics():
    t = {("davae", "all"): 0.9, ("pca", "all"): 0.5}
    rows = tidy_rows("app", "clisi", t)
    ctx = context(rows, {"app": ["davae", "pca"]})
    row = judge_claims([claim(compare="best", metrics=[["knn_purity", "clisi"]], proxy="separation")], ctx).iloc[0]
    assert row["verdict"] == SUPPORTED and row["evidence"].startswith("clisi:") and "proxy: separation" in row["reason"]
    row = judge_claims([claim(compare="best", metrics=[["knn_purity", "clisi"], "asw_batch"])], ctx).iloc[0]
    assert row["verdict"] == NOT_TESTABLE and "asw_batch not in the metrics table" in row["reason"]
    # several metrics: each reason names its metric
    rows3 = rows + tidy_rows("app", "asw_batch", {("davae", "all"): 0.1, ("pca", "all"): 0.5})
    row = judge_claims([claim(compare="best", metrics=["clisi", "asw_batch"])], context(rows3, {"app": ["davae", "pca"]})).iloc[0]
    assert row["verdict"] == NOT_SUPPORTED and row["reason"] == "asw_batch: not best: pca at least as good"
    # a metric undefined for every method: not testable, with the metric's note
    rows4 = tidy_rows("app", "cluster_slice_mixing", {("davae", "all"): np.nan, ("pca", "all"): np.nan})
    row = judge_claims([claim(compare="best", metrics=["cluster_slice_mixing"])], context(rows4, {"app": ["davae", "pca"]})).iloc[0]
    assert row["verdict"] == NOT_TESTABLE and row["reason"] == "no method has a cluster_slice_mixing value (too few cells)"
    rows2 = rows + tidy_rows("app", "knn_purity", {("davae", "all"): 0.1, ("pca", "all"): 0.5})
    row = judge_claims([claim(compare="best", metrics=[["knn_purity", "clisi"]])], context(rows2, {"app": ["davae", "pca"]})).iloc[0]
    assert row["verdict"] == NOT_SUPPORTED and row["evidence"].startswith("knn_purity:")


def test_not_testable_kinds():
    ctx = context(tidy_rows("app", "ari_celltype", {("davae", "all"): 0.9, ("pca", "all"): 0.5}), {"app": ["davae", "pca"]})
    ctx.unavailable = {"other": "not downloaded here"}
    out = judge_claims([
        claim(id="q", compare="not_testable", reason="qualitative"),
        claim(id="u", application="other", compare="best", metrics=["ari_celltype"]),
        claim(id="s", compare="better_than", against=["seurat_v3"], metrics=["ari_celltype"]),
        claim(id="f", compare="better_than", source="scaling", against=["scanorama"], metrics=["runtime_s"]),
    ], ctx).set_index("claim_id")
    assert (out["verdict"] == NOT_TESTABLE).all()
    assert out.loc["q", "reason"] == "qualitative" and out.loc["u", "reason"] == "not downloaded here"
    assert "seurat_v3 is not a method of this study" in out.loc["s", "reason"]
    assert "scaling" in out.loc["f", "reason"]


def test_scaling_rows_every_size_faster():
    bench = pd.DataFrame({"method": ["davae", "davae", "scanorama", "scanorama"], "n_cells": [1000, 2000] * 2,
                          "repeat": 0, "s": [5.0, 9.0, 20.0, 8.0], "max_rss": [100.0] * 4,
                          "method_wall_s": [4.0, 8.0, 19.0, 7.5], "method_status": ["ok"] * 4})
    growth = pd.DataFrame({"method": ["davae", "davae", "scanorama"], "quantity": ["s", "method_wall_s", "s"],
                           "exponent": [1.5, 0.85, 2.0], "n_sizes": [2, 2, 2]})
    rows = scaling_rows(bench, growth, "hca@scaling")
    tidy = pd.DataFrame(rows)
    assert set(tidy["group"]) == {"cells=1000", "cells=2000", "all"}
    ctx = Context(tidy=tidy, repeats=pd.DataFrame(columns=[*tidy.columns, "repeat"]),
                  app_methods={"hca": ["davae", "scanorama"], "hca@scaling": ["davae", "scanorama"]},
                  known_methods=["davae", "scanorama"], applications={"hca": ("hca", False)}, judge=["davae"])
    c = {"id": "f", "figure": "Fig 6f", "application": "hca", "claim": "faster", "compare": "better_than",
         "source": "scaling", "against": ["scanorama"], "per": ["size"], "metrics": ["runtime_s"]}
    row = judge_claims([c], ctx).iloc[0]
    # method_wall_s is used (the method itself): 8.0 vs 7.5 at 2000 cells → not faster at every size
    assert row["verdict"] == NOT_SUPPORTED and "cells=2000" in row["evidence"] and "holds in 1 of 2" in row["evidence"]
    # the exponent of the method's own time (0.85) where recorded, else of the job's (scanorama: 2.0)
    g = dict(c, id="g", source="scaling_growth", against=[], per=[], threshold=1.2, metrics=["runtime_exponent"])
    row = judge_claims([g], ctx).iloc[0]
    assert row["verdict"] == SUPPORTED and "davae 0.850 vs threshold 1.200" in row["evidence"]
    ctx.judge = ["scanorama"]
    assert judge_claims([g], ctx).iloc[0]["verdict"] == NOT_SUPPORTED


# ---- spatial proxies -----------------------------------------------------------------------------------------
def grid_clusters(labels_fn, n=12, batch="s1"):
    xs, ys = np.meshgrid(np.arange(n), np.arange(n))
    xs, ys = xs.ravel(), ys.ravel()
    return pd.DataFrame({"cell": [f"{batch}{i}" for i in range(xs.size)], "batch": batch,
                         "cluster": labels_fn(xs, ys), "x": xs.astype(float), "y": ys.astype(float)})


def test_morans_i_layers_vs_scattered_clusters():
    layers = grid_clusters(lambda x, y: y // 3)  # four horizontal bands: layers
    scattered = grid_clusters(lambda x, y: np.random.default_rng(0).integers(0, 4, x.size))
    i_layers, note = cluster_morans_i(layers)
    i_random, _ = cluster_morans_i(scattered)
    assert i_layers > 0.6 and abs(i_random) < 0.1, (i_layers, i_random)
    assert "1 slice" in note
    no_xy = layers.assign(x=np.nan, y=np.nan)
    assert np.isnan(cluster_morans_i(no_xy)[0])


def test_slice_mixing():
    a = grid_clusters(lambda x, y: y // 3, batch="a")
    b = grid_clusters(lambda x, y: y // 3, batch="b")
    shared, _ = cluster_slice_mixing(pd.concat([a, b]))
    separate, _ = cluster_slice_mixing(pd.concat([a, b.assign(cluster=b["cluster"] + 10)]))
    assert shared == pytest.approx(1.0) and separate == pytest.approx(0.0)
    value, note = cluster_slice_mixing(a)
    assert np.isnan(value) and "one slice" in note


# ---- the claims table and the file-level step ---------------------------------------------------------------
def test_shipped_claims_cover_every_figure():
    claims = load_claims(REPO / "config" / "claims.yaml")
    figures = {c["figure"] for c in claims}
    assert {"Fig 2", "Fig 3", "Fig 4", "Fig 5", "Fig 6", "Fig 6f"} <= figures
    tests = [c for c in claims if c.get("test")]
    assert tests and all(c["compare"] == "better_than" for c in tests)


@pytest.mark.parametrize("bad, message", [
    ([{"id": "a", "figure": "F", "application": "x", "claim": "c", "compare": "biggest", "metrics": ["m"]}], "compare"),
    ([{"id": "a", "figure": "F", "application": "x", "claim": "c", "compare": "best", "metrics": ["m"]}] * 2,
     "appears twice"),
    ([{"id": "a", "figure": "F", "application": "x", "claim": "c", "compare": "better_than", "metrics": ["m"]}],
     "needs 'against'"),
    ([{"id": "a", "figure": "F", "application": "x", "claim": "c", "compare": "best"}], "needs 'metrics'"),
])
def test_bad_claims_one_line(bad, message):
    with pytest.raises(ClaimsError) as err:
        load_claims(bad)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_write_verdicts_end_to_end_and_markdown(tmp_path):
    metrics = tmp_path / "metrics.tsv"
    rows = []
    for m, ct, b in [("pca", 0.45, 0.69), ("scanorama", 0.65, 0.97), ("desc", np.nan, np.nan),
                     ("davae", 0.77, 1.0), ("davae_released", 0.36, 0.9)]:
        note = FAILED if m == "desc" else ""
        rows += [{"application": "samples", "method": m, "metric": "ari_celltype", "group": "all", "value": ct,
                  "n": 800, "note": note},
                 {"application": "samples", "method": m, "metric": "one_minus_ari_batch", "group": "all", "value": b,
                  "n": 800, "note": note}]
    # a cell type called "NA" stays a name
    rows.append({"application": "samples", "method": "davae", "metric": "kbet_acceptance", "group": "NA",
                 "value": 0.5, "n": 10, "note": ""})
    pd.DataFrame(rows).to_csv(metrics, sep="\t", index=False)
    reps = []
    rng = np.random.default_rng(1)
    for m, shift in [("pca", 0.0), ("scanorama", 0.2), ("davae", 0.3), ("davae_released", -0.1)]:
        for i in range(20):
            reps.append({"application": "samples", "method": m, "metric": "ari_celltype", "group": "all",
                         "value": 0.45 + shift + rng.normal(0, 0.01), "n": 600, "note": "", "repeat": i})
    rep_path = tmp_path / "reps.tsv"
    pd.DataFrame(reps).to_csv(rep_path, sep="\t", index=False)
    claims = [
        {"id": "top2", "figure": "Fig 2", "application": "dendritic", "claim": "DAVAE and DESC are the two best",
         "compare": "top_k", "with": ["desc"], "metrics": ["ari_celltype"]},
        {"id": "sig", "figure": "Fig 2", "application": "dendritic", "claim": "significantly higher than Scanorama",
         "compare": "better_than", "against": ["scanorama"], "test": "wilcoxon", "metrics": ["ari_celltype"]},
        {"id": "atac", "figure": "Fig 4", "application": "rna_atac", "claim": "modalities mix",
         "compare": "better_than", "against": ["pca"], "metrics": ["ilisi"]},
    ]
    # Fig 5 proxy from clusters tables: layered clusters for davae, scattered for pca, a failed davae_released
    clusters = {}
    for m, fn in [("davae", lambda x, y: y // 3), ("pca", lambda x, y: np.random.default_rng(2).integers(0, 4, x.size))]:
        path = tmp_path / f"{m}.clusters.tsv"
        grid_clusters(fn).assign(x=lambda d: d["x"].where(d.index != 0)).to_csv(path, sep="\t", index=False)  # one spot without xy
        clusters[m] = str(path)
    (tmp_path / "released.clusters.tsv").write_text("cell\tbatch\tcluster\tx\ty\tresolution\n")
    clusters["davae_released"] = str(tmp_path / "released.clusters.tsv")
    claims.append({"id": "layers", "figure": "Fig 5", "application": "dendritic", "claim": "layers",
                   "compare": "better_than", "source": "spatial", "against": ["pca"], "metrics": ["cluster_morans_i"],
                   "proxy": "Moran's I of the clusters"})
    out = tmp_path / "verdicts.tsv"
    table = write_verdicts(out, claims=claims, metrics={"samples": str(metrics)}, repeats={"samples": [str(rep_path)]},
                           clusters={"samples": clusters},
                           app_methods={"samples": ["pca", "scanorama", "desc", "davae", "davae_released"]},
                           known_methods=["pca", "scanorama", "desc", "davae", "davae_released"],
                           settings={"analogs": {"dendritic": "samples"},
                                     "unavailable": {"rna_atac": "no RNA + ATAC data here"}})
    back = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert list(back.columns) == VERDICT_COLUMNS and len(back) == 8
    v = table.set_index(["claim_id", "method"])
    assert v.loc[("top2", "davae"), "verdict"] == NOT_SUPPORTED  # DESC failed: it cannot be in the top two
    assert v.loc[("sig", "davae"), "verdict"] == SUPPORTED
    assert v.loc[("sig", "davae_released"), "verdict"] == NOT_SUPPORTED
    assert "Wilcoxon p=" in v.loc[("sig", "davae"), "evidence"]
    assert v.loc[("atac", "davae"), "verdict"] == NOT_TESTABLE and v.loc[("atac", "davae"), "reason"] == "no RNA + ATAC data here"
    assert (table.loc[table["claim_id"] != "atac", "application"] == "samples (analog on embedded data)").all()
    # an analog missing from the config (a trimmed config, or a typo) is named in the reason
    trimmed = write_verdicts(tmp_path / "trimmed.tsv", claims=claims[:1], metrics={"samples": str(metrics)},
                             app_methods={"samples": ["pca", "davae"]}, known_methods=["pca", "davae"],
                             settings={"judge": ["davae"], "analogs": {"dendritic": "sampels"}})
    assert trimmed.iloc[0]["reason"] == "its analog sampels is not an application of this config"
    assert v.loc[("layers", "davae"), "verdict"] == SUPPORTED and "cluster_morans_i" in v.loc[("layers", "davae"), "evidence"]
    assert v.loc[("layers", "davae_released"), "verdict"] == NOT_SUPPORTED  # header-only table: the method failed
    md = markdown_table(back)
    lines = md.splitlines()
    assert lines[0].startswith("| figure | claim | application | davae_released | davae |")
    assert "| layers (proxy) |" in md and "Moran's I of the clusters" not in md
    assert len(lines) == 2 + 4 and all(line.count(" | ") == lines[0].count(" | ") for line in lines[2:])
