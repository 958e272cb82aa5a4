"""Figure functions of the study (davae_study.plotting): style, UMAP grid, ARI dot plot, kBET curves, summary.

Inputs are real: ifnb1k cells from data/demo (CTRL vs STIM, six PBMC types), normalised, PCA computed once
per module; planes of the PCA stand in for each method's 2-D embedding (the figure functions only read
``cell, umap1, umap2``; a real UMAP would add ~10 s of numba compilation to every test run). The metrics
tables are in the tidy CONTRACTS format; their ARI values are computed here from k-means on the real
embeddings, the kBET values are plausible constructed numbers (the metrics package computes the real ones,
see test_plotting_render.py; these tests check drawing, not scoring).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

from davae_study.plotting import (  # noqa: E402
    ari_scatter,
    category_colors,
    kbet_curves,
    method_color,
    method_label,
    order_methods,
    register_method_labels,
    summary_heatmap,
    umap_grid,
)
from davae_study.plotting.scores import _minmax_good, parse_kbet_group  # noqa: E402
from davae_study.plotting.style import DPI, FULL_WIDTH, HALF_WIDTH, MAX_HEIGHT  # noqa: E402

from conftest import IFNB  # noqa: E402  (the committed demo copy, data/demo: never skipped)


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def assert_figure(png: Path, width_in: float | None = None, max_width_in: float = FULL_WIDTH) -> tuple[int, int]:
    """PNG and PDF exist, the PNG has drawn content, its size fits a journal page (and matches width_in)."""
    import matplotlib.image as mpimg

    png = Path(png)
    assert png.is_file() and png.stat().st_size > 5_000, png
    pdf = png.with_suffix(".pdf")
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-"
    w, h = png_size(png)
    if width_in is not None:
        assert w == round(width_in * DPI)
    assert w <= round(max_width_in * DPI) + 1
    assert h <= round(MAX_HEIGHT * DPI) + 1
    img = mpimg.imread(png)[..., :3]
    non_white = (img < 0.95).any(axis=-1).mean()
    assert non_white > 0.01, f"{png.name}: almost blank ({non_white:.3%} drawn)"
    leftovers = [p.name for p in png.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    return w, h


@pytest.fixture(scope="module")
def ifnb():
    import anndata as ad
    import scanpy as sc

    a = ad.read_h5ad(IFNB)
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, n_top_genes=1000)
    sc.pp.pca(a, n_comps=20, mask_var="highly_variable", random_state=0)
    return a


@pytest.fixture(scope="module")
def umaps(ifnb):
    """Real 2-D embeddings of real cells (PCA planes); one failed method (header only)."""
    cells = ifnb.obs_names

    def table(xy):
        return pd.DataFrame({"cell": cells, "umap1": xy[:, 0], "umap2": xy[:, 1]})

    return {
        "pca": table(ifnb.obsm["X_pca"][:, [1, 0]]),
        "davae": table(ifnb.obsm["X_pca"][:, :2]),
        "scanorama": table(ifnb.obsm["X_pca"][:, 1:3]),
        "desc": table(ifnb.obsm["X_pca"][:, [0, 2]]),
        "harmony": pd.DataFrame(columns=["cell", "umap1", "umap2"]),
    }


@pytest.fixture(scope="module")
def metrics(ifnb):
    """Tidy metrics (CONTRACTS) for five methods: ARI from k-means on real embeddings; kBET constructed."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    obs = ifnb.obs
    k = obs["cell_type"].nunique()
    embs = {"pca": ifnb.obsm["X_pca"][:, :20], "davae": ifnb.obsm["X_pca"][:, :10],
            "scanorama": ifnb.obsm["X_pca"][:, :5],
            "desc": ifnb.obsm["X_pca"][:, :2]}
    rows, reps = [], []
    rng = np.random.default_rng(0)
    types = sorted(obs["cell_type"].unique())
    level = {"pca": 0.05, "davae": 0.6, "scanorama": 0.5, "desc": 0.3}
    for m, x in embs.items():
        cl = KMeans(k, n_init=1, random_state=0).fit_predict(x)
        rows += [dict(method=m, metric="ari_celltype", group="all", value=adjusted_rand_score(obs["cell_type"], cl)),
                 dict(method=m, metric="one_minus_ari_batch", group="all",
                      value=1 - adjusted_rand_score(obs["batch"], cl))]
        for pct in (5, 10, 15, 20, 25):
            per = []
            for t in types:
                v = np.nan if t == "CD8 T" else float(np.clip(level[m] - pct / 100 + rng.normal(0, 0.05), 0, 1))
                rows.append(dict(method=m, metric="kbet_acceptance", group=f"{t}|kbet@{pct}%", value=v,
                                 note="too few cells for k0 >= 10" if np.isnan(v) else None))
                reps += [dict(method=m, metric="kbet_acceptance", group=f"{t}|kbet@{pct}%", repeat=r,
                              value=v + rng.normal(0, 0.03)) for r in range(10)]
                per.append(v)
            rows.append(dict(method=m, metric="kbet_acceptance", group=f"kbet@{pct}%", value=np.nanmean(per)))
    for met in ("ari_celltype", "one_minus_ari_batch", "kbet_acceptance"):
        rows.append(dict(method="harmony", metric=met, group="all" if "ari" in met else "kbet@5%", value=np.nan,
                         note="method failed: ValueError: boom"))
    tidy = pd.DataFrame(rows).assign(application="samples", n=len(obs))
    rep = pd.DataFrame(reps).assign(application="samples", n=len(obs), note=None)
    cols = ["application", "method", "metric", "group", "value", "n", "note"]
    return tidy.reindex(columns=cols), rep.reindex(columns=cols + ["repeat"])


# ---------------------------------------------------------------- style


def test_method_colours_fixed_by_name_and_aliases():
    assert method_color("DAVAE") == method_color("davae") == method_color(" Davae ")
    assert method_color("pca") == method_color("raw") == method_color("uncorrected")
    assert method_label("pca") == "RAW" and method_label("scanorama") == "Scanorama"
    assert method_label("my_method") == "my_method"
    assert method_color("my_method") == method_color("my_method")  # stable for unknown names
    colours = [method_color(m) for m in ("raw", "davae", "scanorama", "desc", "harmony")]
    assert len(set(colours)) == len(colours)
    assert order_methods(["harmony", "desc", "zeta", "davae", "pca", "scanorama", "davae_released"]) == [
        "pca", "davae", "davae_released", "scanorama", "desc", "harmony", "zeta"]
    assert method_color("davae_released") not in colours
    # scVI, a method of every shipped application: its own label and colour, after the paper's methods
    assert method_label("scvi") == "scVI" and method_color("scVI") == method_color("scvi")
    assert method_color("scvi") not in colours + [method_color("davae_released")]
    assert order_methods(["scvi", "zeta", "harmony", "davae"]) == ["davae", "harmony", "scvi", "zeta"]


def test_config_labels_override_builtin_labels():
    from davae_study.plotting.style import _CONFIG_LABELS

    before = dict(_CONFIG_LABELS)
    try:
        register_method_labels({"my_method": "Mine", "pca": None})
        assert method_label("my_method") == "Mine" and method_label("pca") == "RAW"
    finally:
        _CONFIG_LABELS.clear()
        _CONFIG_LABELS.update(before)


def test_category_colours_stable_by_sorted_category():
    a = category_colors(["b", "a", "c", "a"])
    b = category_colors(pd.Categorical(["c", "b", "a"], categories=["c", "a", "b"]))
    assert a == b and list(a) == ["a", "b", "c"]
    # a subset of cells of a categorical keeps the colours of the full category list
    full = pd.Series(pd.Categorical(["x", "y", "z"]))
    assert category_colors(full[full != "x"]) == category_colors(full)
    assert len(set(category_colors([f"c{i}" for i in range(30)]).values())) == 30
    with pytest.raises(ValueError, match="kind"):
        category_colors(["a"], kind="nope")


# ---------------------------------------------------------------- UMAP grid


def test_umap_grid_writes_png_and_pdf_with_failed_panel(tmp_path, ifnb, umaps):
    out = tmp_path / "fig" / "umap_grid.png"
    png, pdf = umap_grid(umaps, ifnb.obs, out, title="samples (ifnb1k)")
    assert png == out and pdf == out.with_suffix(".pdf")
    w, h = assert_figure(out, width_in=FULL_WIDTH)
    assert h < w  # two rows of panels under one row of titles


def test_umap_grid_wraps_many_methods_and_drops_missing_label_row(tmp_path, ifnb, umaps):
    many = {f"m{i}": umaps["pca"] for i in range(7)}
    _, h8 = assert_figure(umap_grid(many, ifnb.obs, tmp_path / "many.png")[0])
    _, h1 = assert_figure(umap_grid(many, ifnb.obs.drop(columns="cell_type"), tmp_path / "nolabel.png")[0])
    assert h8 > h1


def test_umap_grid_rejects_foreign_cells(tmp_path, ifnb, umaps):
    bad = umaps["pca"].assign(cell=lambda d: "x" + d["cell"])
    with pytest.raises(ValueError, match="not in obs"):
        umap_grid({"pca": bad}, ifnb.obs, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="umap1"):
        umap_grid({"pca": bad.drop(columns="umap1")}, ifnb.obs, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\.png"):
        umap_grid(umaps, ifnb.obs, tmp_path / "bad.pdf")
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- scores


def test_ari_scatter(tmp_path, metrics):
    tidy, rep = metrics
    assert_figure(ari_scatter(tidy, tmp_path / "ari.png", title="samples")[0], width_in=HALF_WIDTH)
    with pytest.raises(ValueError, match="ari_celltype"):
        ari_scatter(tidy[tidy["metric"] == "kbet_acceptance"], tmp_path / "none.png")
    with pytest.raises(ValueError, match="tidy"):
        ari_scatter(tidy.drop(columns="group"), tmp_path / "none.png")


def test_parse_kbet_group():
    assert parse_kbet_group("kbet@5%") == (None, 5.0)
    assert parse_kbet_group("CD14 Mono|kbet@12.5%") == ("CD14 Mono", 12.5)
    assert parse_kbet_group("all") is None and parse_kbet_group("B") is None


def test_kbet_curves_with_and_without_repeats(tmp_path, metrics):
    tidy, rep = metrics
    assert_figure(kbet_curves(tidy, rep, tmp_path / "kbet.png", title="samples")[0], width_in=FULL_WIDTH)
    assert_figure(kbet_curves(tidy, None, tmp_path / "kbet_avg.png", by_celltype=False)[0], width_in=HALF_WIDTH)
    # no average rows: the per-type rows are averaged instead
    per_type_only = tidy[~tidy["group"].str.match(r"^kbet@")]
    assert_figure(kbet_curves(per_type_only, rep, tmp_path / "kbet_pt.png")[0])
    with pytest.raises(ValueError, match="kbet_acceptance"):
        kbet_curves(tidy[tidy["metric"] != "kbet_acceptance"], None, tmp_path / "none.png")


def test_summary_heatmap(tmp_path, metrics):
    tidy, _ = metrics
    other = tidy.assign(application="compositions", value=tidy["value"] * 0.8)
    extra = pd.DataFrame([dict(application=a, method=m, metric=x, group="all", value=v, n=1, note=None)
                          for a in ("samples", "compositions") for m, v in (("pca", 3.0), ("davae", 40.0))
                          for x in ("clisi", "wall_s")])
    summary = pd.concat([tidy, other, extra], ignore_index=True)
    w, _ = assert_figure(summary_heatmap(summary, tmp_path / "summary.png")[0])
    assert w <= FULL_WIDTH * DPI
    with pytest.raises(ValueError, match="not in the summary"):
        summary_heatmap(summary, tmp_path / "x.png", metrics=["nope"])


def test_summary_heatmap_shows_the_conservation_scores_after_trans_ari(tmp_path, metrics):
    from davae_study.metrics import summarise
    from davae_study.plotting.scores import summary_columns

    tidy, _ = metrics
    rng = np.random.default_rng(0)
    new = pd.DataFrame([dict(application="samples", method=m, metric=x, group=g, n=1,
                             value=np.nan if m == "harmony" else rng.uniform(0.5, 1),  # harmony failed
                             note="Leiden resolution 0.4 (5 clusters)" if "leiden" in x else "")
                        for m in tidy["method"].unique()
                        for x, g in (("knn_purity", "all"), ("knn_purity", "CD14 Mono"), ("nmi_leiden", "all"),
                                     ("ari_leiden", "all"))])
    summary = summarise(pd.concat([tidy, new], ignore_index=True))
    cols = summary_columns(summary.loc[summary["group"] == "all", "metric"])
    assert cols[:6] == ["ari_celltype", "one_minus_ari_batch", "ari_f1", "knn_purity", "nmi_leiden", "ari_leiden"]
    assert "ari_celltype_norm" not in cols
    w, _ = assert_figure(summary_heatmap(summary, tmp_path / "summary_new.png")[0])
    assert w <= FULL_WIDTH * DPI


def test_summary_scaling_direction():
    hi_good = _minmax_good(pd.Series([0.2, 0.6, np.nan], name="ari_celltype"))
    assert hi_good.tolist()[:2] == [0.0, 1.0] and np.isnan(hi_good.iloc[2])
    lo_good = _minmax_good(pd.Series([10.0, 100.0], name="wall_s"))
    assert lo_good.tolist() == [1.0, 0.0]
    assert _minmax_good(pd.Series([0.5, 0.5], name="ilisi")).tolist() == [1.0, 1.0]
