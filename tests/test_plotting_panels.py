"""Fig 4–6 panel functions of davae_study.plotting on small real inputs.

Real cells: ifnb1k from data/demo (CTRL vs STIM PBMCs, six annotated types). Where the real format is
not available offline the inputs are *synthesised from these real cells*, and each test says so:
- scATAC peaks: no peak matrix ships offline, so peaks are laid on a grid around six made-up gene loci and
  each cell's real UMI count of the gene is split over the gene's peaks (binomial, fixed weights), plus
  Poisson background peaks;
- Visium: no spatial data ships offline, so the cells of each batch are placed on a hexagonal grid (two
  "slices"), ordered along PC1 so that the clusters form regions;
- benchmarks: real Snakemake-format benchmark files of a real timed step (SVD on growing subsets).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

os.environ.setdefault("OMP_NUM_THREADS", "2")

from davae_study.plotting import (  # noqa: E402
    aggregate_peaks,
    coverage_tracks,
    feature_umaps,
    group_expression,
    growth_exponent,
    marker_dotplot,
    marker_violins,
    read_benchmarks,
    read_genes,
    runtime_scaling,
    spatial_clusters,
    spatial_probabilities,
    umap_by,
    with_transferred_labels,
)
from davae_study.plotting.style import DPI, FULL_WIDTH, MAX_HEIGHT  # noqa: E402

from conftest import IFNB  # noqa: E402  (the committed demo copy, data/demo: never skipped)

ATAC_GENES = ["LYN", "VCAN", "CCL5", "BANK1", "SULF2", "LDHB"]
HCA_MARKERS = ["CD3D", "CD79A", "MS4A1", "S100A8", "LYZ", "CD14", "FCGR3A", "GNLY", "NKG7", "CST3", "FCER1A",
               "PPBP", "HBB", "IL7R"]


def assert_figure(png, min_ink: float = 0.01) -> tuple[int, int]:
    """PNG + PDF written, something drawn, fits a journal page (width ≤ 183 mm, height ≤ page)."""
    import matplotlib.image as mpimg
    from PIL import Image

    png = Path(png)
    assert png.is_file() and png.stat().st_size > 5_000
    assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    with Image.open(png) as im:
        w, h = im.size
    assert 0 < w <= round(FULL_WIDTH * DPI) + 1 and 0 < h <= round(MAX_HEIGHT * DPI) + 1
    img = mpimg.imread(png)[..., :3]
    assert (img < 0.95).any(axis=-1).mean() > min_ink, "almost blank"
    return w, h


@pytest.fixture(scope="module")
def ifnb():
    import anndata as ad
    import scanpy as sc

    a = ad.read_h5ad(IFNB)
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=15, random_state=0)
    return a


@pytest.fixture(scope="module")
def umap_table(ifnb):
    """A real 2-D embedding of the cells (PCA plane) in the umap/<method>.tsv format."""
    return pd.DataFrame({"cell": ifnb.obs_names, "umap1": ifnb.obsm["X_pca"][:, 0], "umap2": ifnb.obsm["X_pca"][:, 1]})


@pytest.fixture(scope="module")
def transfer(ifnb):
    """A real transfer table: kNN vote from the CTRL cells (reference) to the STIM cells (query)."""
    from sklearn.neighbors import KNeighborsClassifier

    ref = (ifnb.obs["batch"] == "CTRL").to_numpy()
    knn = KNeighborsClassifier(15).fit(ifnb.obsm["X_pca"][ref], ifnb.obs["cell_type"][ref].astype(str))
    p = knn.predict_proba(ifnb.obsm["X_pca"][~ref])
    t = pd.DataFrame(p, columns=[f"prob:{c}" for c in knn.classes_])
    t.insert(0, "confidence", p.max(1))
    t.insert(0, "predicted", knn.classes_[p.argmax(1)])
    t.insert(0, "cell", ifnb.obs_names[~ref])
    return t


# ---------------------------------------------------------------- Fig 4a, 4c (and 6b)


def test_umap_by_modality_and_transferred_type(tmp_path, ifnb, umap_table, transfer):
    obs = ifnb.obs.assign(modality=np.where(ifnb.obs["batch"] == "CTRL", "RNA", "ATAC"))
    obs = with_transferred_labels(obs, transfer)
    col = obs["cell type (transferred)"]
    ref = obs["modality"] == "RNA"
    assert (col[ref] == obs.loc[ref, "cell_type"].astype(str)).all()
    assert (col[~ref].to_numpy() == transfer.set_index("cell").loc[obs.index[~ref], "predicted"].to_numpy()).all()
    w, h = assert_figure(umap_by(umap_table, obs, ["modality", "cell type (transferred)"], tmp_path / "a.png",
                                 title="scATAC + scRNA")[0])
    assert h < w  # one row of two panels with their legends
    with pytest.raises(ValueError, match="lacks columns"):
        umap_by(umap_table, obs, ["nope"], tmp_path / "b.png")
    with pytest.raises(ValueError, match="predicted"):
        with_transferred_labels(obs, transfer.drop(columns="predicted"))


def test_feature_umaps_restricted_cells_and_missing_gene(tmp_path, ifnb, umap_table, transfer):
    out = tmp_path / "genes.png"
    assert_figure(feature_umaps(umap_table, ifnb, ATAC_GENES + ["NOT_A_GENE"], out, cells=transfer["cell"],
                                value_label="gene activity")[0])
    # lower-case lookup and a layer
    assert_figure(feature_umaps(umap_table, ifnb, ["cd3d"], tmp_path / "one.png", layer="counts")[0])
    with pytest.raises(ValueError, match="not in the AnnData"):
        feature_umaps(umap_table.assign(cell="x" + umap_table["cell"]), ifnb, ["CD3D"], tmp_path / "x.png")


# ---------------------------------------------------------------- Fig 4d


@pytest.fixture(scope="module")
def peaks(ifnb):
    """Synthetic peak matrix built from real counts (see module docstring) + its gene annotation."""
    import anndata as ad

    rng = np.random.default_rng(0)
    counts = ifnb.layers["counts"]
    names, cols, genes = [], [], []
    for gi, g in enumerate(ATAC_GENES):
        start = 1_000_000 + gi * 500_000
        genes.append(dict(gene_name=g, chrom=f"chr{gi + 1}", start=start, end=start + 25_000,
                          strand="+" if gi % 2 == 0 else "-"))
        v = np.asarray(counts[:, ifnb.var_names.get_loc(g)].todense()).ravel().astype(int)
        w = rng.dirichlet(np.ones(6))
        for k in range(6):
            s = start - 5_000 + k * 6_000
            names.append(f"chr{gi + 1}:{s}-{s + 500}")
            cols.append(rng.binomial(v, w[k]))
    names += [f"chr22:{k * 10_000}-{k * 10_000 + 400}" for k in range(100)]
    x = sp.csr_matrix(np.column_stack(cols + [rng.poisson(0.3, (ifnb.n_obs, 100))]).astype(np.float32))
    pk = ad.AnnData(X=x, obs=pd.DataFrame(index=ifnb.obs_names), var=pd.DataFrame(index=names))
    return pk, pd.DataFrame(genes)


def test_aggregate_peaks_is_pseudobulk_cpm(ifnb, peaks, transfer):
    pk, genes = peaks
    groups = transfer.set_index("cell")["predicted"]
    g = genes.iloc[0]
    ptab, cpm = aggregate_peaks(pk, groups, (g["chrom"], g["start"] - 10_000, g["end"] + 10_000), min_cells=20)
    assert len(ptab) == 6 and list(cpm.columns) == list(pk.var_names[:6])
    assert set(cpm.index) == {t for t, n in groups.value_counts().items() if n >= 20}
    grp = cpm.index[0]
    cells = groups.index[groups == grp]
    sub = pk[cells]
    expected = np.asarray(sub.X[:, :6].sum(0)).ravel() / sub.X.sum() * 1e6
    np.testing.assert_allclose(cpm.loc[grp].to_numpy(), expected, rtol=1e-6)
    # a region without peaks gives an empty table, not an error
    assert aggregate_peaks(pk, groups, ("chr9", 1, 100))[1].shape[1] == 0


def test_coverage_tracks(tmp_path, peaks, transfer):
    pk, genes = peaks
    groups = transfer.set_index("cell")["predicted"]
    w, h = assert_figure(coverage_tracks(pk, groups, genes, ATAC_GENES + ["NOT_A_GENE"], tmp_path / "cov.png",
                                         title="accessibility near markers")[0])
    assert w == round(FULL_WIDTH * DPI)
    with pytest.raises(ValueError, match="no cell of the peak matrix"):
        coverage_tracks(pk, pd.Series(["B"], index=["nope"]), genes, ATAC_GENES, tmp_path / "x.png")
    with pytest.raises(ValueError, match="gene_name"):
        coverage_tracks(pk, groups, genes.drop(columns="strand"), ATAC_GENES, tmp_path / "x.png")


# ---------------------------------------------------------------- Fig 5


@pytest.fixture(scope="module")
def spots(ifnb):
    """Real cells on a synthetic hexagonal grid, one slice per batch, with k-means clusters of the PCA."""
    from sklearn.cluster import KMeans

    cl = KMeans(10, n_init=1, random_state=0).fit_predict(ifnb.obsm["X_pca"])
    rows = []
    for sl in ("CTRL", "STIM"):
        idx = np.flatnonzero(ifnb.obs["batch"] == sl)
        idx = idx[np.argsort(ifnb.obsm["X_pca"][idx, 0])]
        side = int(np.ceil(np.sqrt(len(idx))))
        for k, i in enumerate(idx):
            r, c = divmod(k, side)
            rows.append(dict(cell=ifnb.obs_names[i], batch=sl, cluster=int(cl[i]), x=c * 100.0 + 50 * (r % 2),
                             y=r * 87.0, resolution=1.0))
    return pd.DataFrame(rows)


def test_spatial_clusters(tmp_path, spots, umap_table, ifnb):
    assert_figure(spatial_clusters(spots, tmp_path / "sp.png", title="clusters in space")[0])
    # Fig 5a-b from the same table: UMAP by slice and by cluster
    obs = spots.set_index("cell").rename(columns={"batch": "slice"})
    assert_figure(umap_by(umap_table, obs, ["slice", "cluster"], tmp_path / "umap.png")[0])
    # a failed method writes a header-only table: the figure says so instead of crashing
    empty = spots.iloc[:0]
    assert_figure(spatial_clusters(empty, tmp_path / "failed.png", title="failed method")[0], min_ink=0.002)
    with pytest.raises(ValueError, match="cluster"):
        spatial_clusters(spots.drop(columns="cluster"), tmp_path / "x.png")


def test_spatial_probabilities(tmp_path, spots, ifnb):
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(15).fit(ifnb.obsm["X_pca"], ifnb.obs["cell_type"].astype(str))
    p = knn.predict_proba(ifnb.obsm["X_pca"])
    tr = pd.DataFrame(p, columns=[f"prob:{c}" for c in knn.classes_]).assign(cell=ifnb.obs_names)
    types = ["CD14 Mono", "B", "CD4 Naive T", "CD8 T"]
    w, h = assert_figure(spatial_probabilities(tr, spots, types, tmp_path / "prob.png", title="probabilities")[0])
    assert w == round(FULL_WIDTH * DPI) and h < w
    with pytest.raises(ValueError, match="available types"):
        spatial_probabilities(tr, spots, ["L4"], tmp_path / "x.png")
    # failed method (header-only transfer table) or spots without coordinates: a small figure saying so
    failed = pd.DataFrame(columns=["cell", "predicted", "confidence"])
    w, h = assert_figure(spatial_probabilities(failed, spots, types, tmp_path / "failed.png", title="t")[0],
                         min_ink=0.002)
    assert h < 300
    assert_figure(spatial_probabilities(tr, spots.assign(x=np.nan), types, tmp_path / "nocoords.png")[0],
                  min_ink=0.002)


# ---------------------------------------------------------------- Fig 6c-e


def test_group_expression_matches_manual(ifnb):
    mean, frac, labels = group_expression(ifnb, ["CD3D", "LYZ", "nope"], "cell_type")
    assert list(mean.columns) == ["CD3D", "LYZ"]
    b = (ifnb.obs["cell_type"] == "B").to_numpy()
    col = np.asarray(ifnb[:, "LYZ"].X.todense()).ravel()
    assert mean.loc["B", "LYZ"] == pytest.approx(col[b].mean(), rel=1e-5)
    assert frac.loc["B", "LYZ"] == pytest.approx((col[b] > 0).mean())
    with pytest.raises(ValueError, match="none of the markers"):
        group_expression(ifnb, ["nope"], "cell_type")
    with pytest.raises(ValueError, match="groupby"):
        group_expression(ifnb, ["CD3D"], "nope")


def test_marker_violins_and_dotplot(tmp_path, ifnb, spots):
    clusters = spots.set_index("cell")["cluster"]  # a Series indexed by cell, as read from a clusters table
    assert_figure(marker_violins(ifnb, HCA_MARKERS, clusters, tmp_path / "violin.png", title="markers",
                                 max_cells_per_group=200)[0])
    assert_figure(marker_dotplot(ifnb, HCA_MARKERS + ["NOT_A_GENE"], clusters, tmp_path / "dot.png")[0])


def test_read_genes_streams_only_the_markers(tmp_path, ifnb):
    path = tmp_path / "prepared.h5ad"
    ifnb.write_h5ad(path)
    sub = read_genes(path, ["LYZ", "cd3d", "NOT_A_GENE"], chunk_rows=100)
    assert list(sub.var_names) == ["LYZ", "cd3d"] and sub.n_obs == ifnb.n_obs
    np.testing.assert_allclose(sub.X[:, 0], np.asarray(ifnb[:, "LYZ"].X.todense()).ravel(), rtol=1e-6)
    np.testing.assert_allclose(sub.X[:, 1], np.asarray(ifnb[:, "CD3D"].X.todense()).ravel(), rtol=1e-6)
    assert (sub.obs["cell_type"] == ifnb.obs["cell_type"]).all()
    raw = read_genes(path, ["LYZ"], layer="counts")
    assert raw.X.max() == ifnb.layers["counts"][:, ifnb.var_names.get_loc("LYZ")].max()
    with pytest.raises(ValueError, match="no layer"):
        read_genes(path, ["LYZ"], layer="nope")


# ---------------------------------------------------------------- Fig 6f


def test_growth_exponent():
    n = np.array([1e4, 2e4, 4e4, 8e4])
    assert growth_exponent(n, 3 * n**1.5) == pytest.approx(1.5)
    assert np.isnan(growth_exponent(n[:1], n[:1]))


def test_runtime_scaling_from_snakemake_benchmark_files(tmp_path, ifnb):
    """Benchmark files in Snakemake's format, of a real timed step (SVD of growing subsets of the cells)."""
    import resource

    cols = ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load", "cpu_time"]
    records, written = [], []
    x = ifnb.X[:, :200].toarray()
    for method, k in (("davae", 3), ("scanorama", 2), ("desc", 1)):
        for n in (200, 400, 800):
            rows = []
            for _ in range(2):
                t0 = time.perf_counter()
                for _ in range(k):
                    np.linalg.svd(x[:n], full_matrices=False)
                s = time.perf_counter() - t0
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                rows.append([s, time.strftime("%H:%M:%S", time.gmtime(s)), rss, "-", "-", "-", "-", "-", 0.0, s])
            path = tmp_path / f"{method}_{n}.tsv"
            pd.DataFrame(rows, columns=cols).to_csv(path, sep="\t", index=False)
            records.append((method, n, path))
            written += [(method, n, r, row[0], row[2]) for r, row in enumerate(rows)]
    bench = read_benchmarks(records)
    assert len(bench) == 18 and {"method", "n_cells", "repeat", "s", "max_rss"} <= set(bench.columns)
    # every row read back as written: method, cell count, repeat (file row), seconds and memory
    got = bench.sort_values(["method", "n_cells", "repeat"])[["method", "n_cells", "repeat", "s", "max_rss"]]
    want = pd.DataFrame(written, columns=got.columns).sort_values(["method", "n_cells", "repeat"])
    assert got["method"].tolist() == want["method"].tolist()
    assert got["n_cells"].tolist() == want["n_cells"].tolist() and got["repeat"].tolist() == want["repeat"].tolist()
    np.testing.assert_allclose(got[["s", "max_rss"]].to_numpy(float), want[["s", "max_rss"]].to_numpy(float), rtol=1e-9)
    assert bench["max_vms"].isna().all()
    w, h = assert_figure(runtime_scaling(bench, tmp_path / "runtime.png", title="scaling")[0])
    assert w == round(FULL_WIDTH * DPI)
    # without memory: one panel, half the width
    w1, _ = assert_figure(runtime_scaling(bench.assign(max_rss=np.nan), tmp_path / "time.png")[0])
    assert w1 < w
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="benchmark"):
        read_benchmarks([("davae", 10, bad)])
