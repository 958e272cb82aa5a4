"""Path-level figure renderers (what the Snakemake figure rules call) on results files built from real data.

The results files follow docs/CONTRACTS.md and are produced here by the study's own code where it exists:
metrics tables by ``davae_study.metrics.evaluate``/``summarise`` on real embeddings (PCA of ifnb1k), obs
and prepared.h5ad written from the real cells. As in test_plotting_panels.py, what has no offline real
format is synthesised from the real cells: spot coordinates on a grid, and a peak matrix whose peaks split
each cell's real counts of six genes (with a matching hand-written GTF); for the RNA + ATAC application
read by ``pbmc_rna_atac``, the same for some 400 genes, with the real STIM cells as nuclei.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

os.environ.setdefault("OMP_NUM_THREADS", "2")

from davae_study.io import write_tsv  # noqa: E402
from davae_study.plotting.render import RENDERERS, read_obs, render_rule  # noqa: E402

from conftest import IFNB  # noqa: E402  (the committed demo copy, data/demo: never skipped)

GENES = ["LYN", "VCAN", "CCL5", "BANK1", "SULF2", "LDHB"]


def named(**items):
    """A Snakemake-style Namedlist (what ``snakemake.input``/``params`` are) from keyword items; list
    values become named slices, as Snakemake builds them for list-valued inputs."""
    from snakemake.iocontainers import Namedlist

    nl = Namedlist()
    for key, val in items.items():
        start = len(nl)
        if isinstance(val, list):
            nl.extend(str(v) for v in val)
            nl._set_name(key, start, len(nl))
        else:
            nl.append(val if not isinstance(val, Path) else str(val))
            nl._set_name(key, start)
    return nl


CALLED: set[str] = set()


def run_rule(renderer: str, out: Path, params: dict | None = None, **inputs) -> Path:
    CALLED.add(renderer)
    p = dict(params or {})
    smk = SimpleNamespace(input=named(**inputs), output=named(png=str(out), pdf=str(out.with_suffix(".pdf"))),
                          params=named(renderer=renderer, **p))
    render_rule(smk)
    assert out.stat().st_size > 5_000 and out.with_suffix(".pdf").stat().st_size > 1_000
    return out


def _write_10x_peaks_h5(path: Path, a) -> None:
    """The 10x v3 HDF5 layout of a filtered peak matrix (features x barcodes CSC, feature_type 'Peaks')."""
    import h5py

    x = sp.csr_matrix(a.X).astype(np.int32)  # cells x peaks CSR == peaks x cells CSC
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array(a.obs_names, dtype="S")
        g["data"], g["indices"], g["indptr"] = x.data, x.indices, x.indptr
        g["shape"] = np.array([a.n_vars, a.n_obs], dtype=np.int32)
        feat = g.create_group("features")
        feat["id"] = feat["name"] = np.array(a.var_names, dtype="S")
        feat["feature_type"] = np.array(["Peaks"] * a.n_vars, dtype="S")
        feat["genome"] = np.array(["GRCh38"] * a.n_vars, dtype="S")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results/<app>/ tree of real-data files in the contract formats."""
    import anndata as ad
    import scanpy as sc
    from sklearn.cluster import KMeans
    from sklearn.neighbors import KNeighborsClassifier

    from davae_study.metrics import evaluate, summarise

    root = tmp_path_factory.mktemp("results")
    a = ad.read_h5ad(IFNB)
    counts = a.X.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=10, random_state=0)
    a.layers["counts"] = counts
    a.obs["modality"] = np.where(a.obs["batch"] == "CTRL", "RNA", "ATAC")
    a.obs["role"] = np.where(a.obs["batch"] == "CTRL", "reference", "query")
    # synthetic spot grid (see module docstring)
    xy = np.zeros((a.n_obs, 2))
    for sl in ("CTRL", "STIM"):
        idx = np.flatnonzero(a.obs["batch"] == sl)
        side = int(np.ceil(np.sqrt(len(idx))))
        r, c = np.divmod(np.arange(len(idx)), side)
        xy[idx] = np.column_stack([c * 100.0 + 50 * (r % 2), r * 87.0])
    a.obsm["spatial"] = xy
    a.write_h5ad(root / "prepared.h5ad")
    # markers.h5ad in its contract format: marker columns of the same normalised expression, same cells
    a[:, ["CD3D", "CD79A", "S100A8", "HBB", "GNLY", "CST3"]].copy().write_h5ad(root / "markers.h5ad")
    write_tsv(a.obs.rename_axis("cell").reset_index(), root / "obs.tsv")

    embs = {"pca": a.obsm["X_pca"], "davae": a.obsm["X_pca"][:, :4]}
    paths = {"umap": {}, "repeats": []}
    tidy_all = []
    for m, x in embs.items():
        write_tsv(pd.DataFrame({"cell": a.obs_names, "umap1": x[:, 0], "umap2": x[:, 1]}), root / f"umap_{m}.tsv")
        paths["umap"][m] = root / f"umap_{m}.tsv"
        b = ad.AnnData(obs=a.obs[["batch", "cell_type"]].copy(), obsm={"X_emb": x})
        tidy, rep = evaluate(b, application="samples", method=m,
                             params={"kbet": {"n_repeat": 5}, "ari": {"n_iter": 3}, "enabled": ["ari", "kbet", "lisi"]})
        write_tsv(rep, root / f"{m}.repeats.tsv")
        paths["repeats"].append(root / f"{m}.repeats.tsv")
        tidy_all.append(tidy)
    # a failed method: header-only UMAP, NaN metric rows (what the pipeline writes)
    write_tsv(pd.DataFrame(columns=["cell", "umap1", "umap2"]), root / "umap_desc.tsv")
    paths["umap"]["desc"] = root / "umap_desc.tsv"
    failed = evaluate(ad.AnnData(obs=a.obs[["batch", "cell_type"]].copy(), uns={"method": {"status": "failed",
                      "error": "RuntimeError: boom"}}), application="samples", method="desc")[0]
    metrics = pd.concat(tidy_all + [failed], ignore_index=True)
    write_tsv(metrics, root / "metrics.tsv")
    write_tsv(summarise(pd.concat([metrics, metrics.assign(application="compositions")])), root / "summary.tsv")

    ref = (a.obs["batch"] == "CTRL").to_numpy()
    knn = KNeighborsClassifier(15).fit(a.obsm["X_pca"][ref], a.obs["cell_type"][ref].astype(str))
    prob = knn.predict_proba(a.obsm["X_pca"][~ref])
    tr = pd.DataFrame(prob, columns=[f"prob:{c}" for c in knn.classes_])
    tr.insert(0, "confidence", prob.max(1))
    tr.insert(0, "predicted", knn.classes_[prob.argmax(1)])
    tr.insert(0, "cell", a.obs_names[~ref])
    write_tsv(tr, root / "transfer.tsv")
    cl = KMeans(8, n_init=1, random_state=0).fit_predict(a.obsm["X_pca"])
    write_tsv(pd.DataFrame({"cell": a.obs_names, "batch": a.obs["batch"].to_numpy(), "cluster": cl, "x": xy[:, 0],
                            "y": xy[:, 1], "resolution": 1.0}), root / "clusters.tsv")

    # synthetic peaks + GTF; barcodes without the ':<part>' suffix that concatenation adds to cell names
    rng = np.random.default_rng(0)
    names, cols, gtf = [], [], []
    for gi, g in enumerate(GENES):
        start = 2_000_000 + gi * 400_000
        strand = "+" if gi % 2 == 0 else "-"
        attrs = f'gene_id "G{gi}"; gene_name "{g}";'
        gtf.append(f"chr{gi + 1}\ttest\tgene\t{start}\t{start + 20_000}\t.\t{strand}\t.\t{attrs}")
        v = np.asarray(counts[:, a.var_names.get_loc(g)].todense()).ravel().astype(int)
        for k in range(5):
            s = start - 4_000 + k * 6_000
            names.append(f"chr{gi + 1}:{s}-{s + 500}")
            cols.append(rng.binomial(v, 0.2))
    (root / "genes.gtf").write_text("\n".join(gtf) + "\n")
    pk = ad.AnnData(X=sp.csr_matrix(np.column_stack(cols).astype(np.float32)),
                    obs=pd.DataFrame(index=a.obs_names.str.replace(r":.*$", "", regex=True)),
                    var=pd.DataFrame(index=names))
    pk.write_h5ad(root / "peaks.h5ad")
    _write_10x_peaks_h5(root / "peaks.h5", pk)
    write_tsv(tr.assign(cell=tr["cell"] + ":atac"), root / "transfer_suffixed.tsv")

    bench = []
    for m, scale in (("davae", 1.0), ("desc", 2.0), ("scanorama", 0.5)):
        for n in (1000, 2000, 4000):
            p = root / f"bench_{m}_{n}.tsv"
            # a Snakemake benchmark file (header as Snakemake writes it); values from a known power law
            pd.DataFrame({"s": [scale * (n / 1000) ** 1.2], "h:m:s": ["0:00:01"], "max_rss": [100 + n / 10],
                          "max_vms": ["-"], "max_uss": ["-"], "max_pss": ["-"], "io_in": ["-"], "io_out": ["-"],
                          "mean_load": [0.0], "cpu_time": [1.0]}).to_csv(p, sep="\t", index=False)
            bench.append((m, n, p))
    return SimpleNamespace(root=root, umaps=paths["umap"], repeats=paths["repeats"], bench=bench)


def test_read_obs_from_tsv_and_h5ad(results):
    a = read_obs(results.root / "obs.tsv")
    b = read_obs(results.root / "prepared.h5ad")
    assert list(a.index) == list(b.index) and (a["cell_type"].astype(str) == b["cell_type"].astype(str)).all()
    write_tsv(pd.DataFrame({"x": [1]}), results.root / "bad_obs.tsv")
    with pytest.raises(ValueError, match="'cell' column"):
        read_obs(results.root / "bad_obs.tsv")


def test_every_renderer_through_the_rule_entry_point(tmp_path, results):
    CALLED.clear()  # the coverage check below counts this test's calls only, not other tests'
    r = results.root
    methods = list(results.umaps)
    run_rule("umap_grid", tmp_path / "umap_grid.png", {"methods": methods, "kwargs": {"title": "samples"}},
             umaps=[results.umaps[m] for m in methods], obs=r / "obs.tsv")
    run_rule("ari", tmp_path / "ari.png", {"kwargs": {"title": "samples"}}, metrics=r / "metrics.tsv",
             repeats=results.repeats)
    run_rule("kbet", tmp_path / "kbet.png", {}, metrics=r / "metrics.tsv", repeats=results.repeats)
    run_rule("summary", tmp_path / "summary.png", {}, summary=r / "summary.tsv")
    run_rule("umap_by", tmp_path / "umap_transfer.png",
             {"kwargs": {"keys": ["modality", "cell type (transferred)"]}},
             umap=results.umaps["davae"], obs=r / "obs.tsv", transfer=r / "transfer.tsv")
    run_rule("umap_by", tmp_path / "umap_clusters.png", {"kwargs": {"keys": ["batch", "cluster"]}},
             umap=results.umaps["davae"], obs=r / "prepared.h5ad", clusters=r / "clusters.tsv")
    run_rule("umap_by", tmp_path / "umap_spots.png", {"kwargs": {"keys": ["batch"], "select": {"role": "query"}}},
             umap=results.umaps["davae"], obs=r / "obs.tsv")
    run_rule("feature_umaps", tmp_path / "gene_activity.png",
             {"kwargs": {"genes": GENES, "select": {"modality": "ATAC"}, "value_label": "gene activity"}},
             umap=results.umaps["davae"], expression=r / "prepared.h5ad")
    run_rule("coverage", tmp_path / "coverage.png", {"kwargs": {"genes": GENES, "min_cells": 10}},
             peaks=r / "peaks.h5", gtf=r / "genes.gtf", transfer=r / "transfer_suffixed.tsv")
    run_rule("coverage", tmp_path / "coverage_h5ad.png", {"kwargs": {"genes": GENES[:2], "min_cells": 10}},
             peaks=r / "peaks.h5ad", gtf=r / "genes.gtf", transfer=r / "transfer.tsv")
    run_rule("spatial_clusters", tmp_path / "spatial_clusters.png", {}, clusters=r / "clusters.tsv")
    run_rule("spatial_probabilities", tmp_path / "spatial_prob.png", {"kwargs": {"types": ["B", "CD14 Mono"]}},
             transfer=r / "transfer.tsv", prepared=r / "prepared.h5ad")
    markers = ["CD3D", "CD79A", "S100A8", "HBB", "GNLY", "CST3"]
    run_rule("marker_violins", tmp_path / "violins.png", {"kwargs": {"markers": markers}},
             expression=r / "markers.h5ad", clusters=r / "clusters.tsv")
    run_rule("marker_dotplot", tmp_path / "dotplot.png", {"kwargs": {"markers": markers, "groupby": "cell_type"}},
             expression=r / "markers.h5ad")
    m, n, p = zip(*results.bench)
    run_rule("runtime", tmp_path / "runtime.png", {"kwargs": {"methods": list(m), "n_cells": list(n)}},
             benchmarks=list(p))
    assert len(list(tmp_path.glob("*.png"))) == 15
    assert set(RENDERERS) <= CALLED, f"renderers not exercised: {set(RENDERERS) - CALLED}"


def test_render_rule_errors(tmp_path, results):
    with pytest.raises(ValueError, match="unknown figure renderer"):
        run_rule("nope", tmp_path / "x.png", {}, metrics=results.root / "metrics.tsv")
    with pytest.raises(ValueError, match="needs an input named 'metrics'"):
        run_rule("ari", tmp_path / "x.png", {}, table=results.root / "metrics.tsv")
    m, n, p = zip(*results.bench)
    with pytest.raises(ValueError, match="one method and one cell count per file"):
        run_rule("runtime", tmp_path / "x.png", {"kwargs": {"methods": list(m)[:2], "n_cells": list(n)}},
                 benchmarks=list(p))


def test_workflow_helpers_read_figure_params():
    from davae_study.plotting.workflow import figure_clusters, figure_file, figure_kwargs, figure_options

    config = {"applications": {"rna_atac": {
        "title": "PBMC", "methods": ["pca", "davae"],
        "figure_params": {"gene_activity": {"method": "pca", "genes": ["LYN"]},
                          "umap_clusters": {"keys": ["batch"], "clusters": "results/{app}/clusters/{method}.tsv"}}}}}
    assert figure_options(config, "rna_atac", "coverage") == {}
    assert figure_file(config, "rna_atac", "gene_activity", "results/{app}/umap/{method}.tsv") == \
        "results/rna_atac/umap/pca.tsv"
    assert figure_file(config, "rna_atac", "coverage", "r/{app}/{method}") == "r/rna_atac/davae"
    assert figure_clusters(config, "rna_atac", "umap_clusters") == "results/rna_atac/clusters/davae.tsv"
    assert figure_clusters(config, "rna_atac", "spatial_clusters") == "results/rna_atac/spatial/davae.clusters.tsv"
    kw = figure_kwargs(config, "rna_atac", "gene_activity", genes=["X"], value_label="gene activity")
    assert kw == {"genes": ["LYN"], "value_label": "gene activity", "title": "PBMC"}
    kw = figure_kwargs(config, "rna_atac", "umap_clusters", keys=["batch", "cluster"], titles=["a", "b"])
    assert kw == {"keys": ["batch"], "title": "PBMC"}  # default titles dropped with the default keys
    config["applications"]["rna_atac"]["figure_params"]["coverage"] = {"method": "nope"}
    with pytest.raises(ValueError, match="not one of the application's methods"):
        figure_file(config, "rna_atac", "coverage", "{app}/{method}")
    with pytest.raises(ValueError, match="not in the config"):
        figure_options(config, "nope", "coverage")


def test_marker_genes_are_those_the_marker_figures_draw():
    """The genes of markers.h5ad: those of the Fig 6 marker figures and of the Fig 4c gene-activity figure."""
    from davae_study.plotting.workflow import PAPER_GENE_ACTIVITY, PAPER_MARKER_UMAPS, PAPER_MARKERS, marker_genes

    config = {"applications": {"hca": {"methods": ["davae"]}}}
    assert marker_genes(config, "hca") == (PAPER_MARKER_UMAPS + [g for g in PAPER_MARKERS if g not in PAPER_MARKER_UMAPS]
                                           + PAPER_GENE_ACTIVITY)
    config["applications"]["hca"]["figure_params"] = {"marker_umaps": {"genes": ["PTPRC"]},
                                                     "marker_violins": {"markers": []},
                                                     "marker_dotplot": {"markers": ["LYZ", "PTPRC"]}}
    assert marker_genes(config, "hca") == ["PTPRC", "LYZ"] + PAPER_GENE_ACTIVITY
    config["applications"]["hca"]["figure_params"]["gene_activity"] = {"genes": ["LDHB", "LYZ", "GAPDH"]}
    assert marker_genes(config, "hca") == ["PTPRC", "LYZ", "LDHB", "GAPDH"]
    config["applications"]["hca"]["figure_params"]["gene_activity"] = {"genes": "LDHB"}
    with pytest.raises(ValueError, match="gene_activity.genes must be a list of gene names"):
        marker_genes(config, "hca")
    config["applications"]["hca"]["figure_params"]["gene_activity"] = {}
    config["applications"]["hca"]["figure_params"]["marker_dotplot"] = {"markers": "LYZ"}
    with pytest.raises(ValueError, match="must be a list of gene names"):
        marker_genes(config, "hca")


def test_cluster_ids_read_back_as_integers(tmp_path):
    from davae_study.plotting.render import _clusters

    write_tsv(pd.DataFrame({"cell": ["a", "b", "c"], "cluster": [0.0, 12.0, np.nan]}), tmp_path / "c.tsv")
    c = _clusters(tmp_path / "c.tsv")
    assert c["a"] == "0" and c["b"] == "12" and pd.isna(c["c"])


def test_titles_fit_the_figure_width():
    from davae_study.plotting.style import fit_title

    short, size = fit_title("samples", 3.5)
    assert short == "samples" and size == 8.5
    long = "Simulated spots (IFN-β-stimulated PBMC mixtures) + control PBMC reference, " * 2
    text, size = fit_title(long, 3.5)
    assert size == 6.5 and text.endswith("…") and len(text) * 0.62 * size <= 3.5 * 72


def _figure_texts(monkeypatch) -> list[list[str]]:
    """Every text (titles, tick labels, notes) of each figure the renderers save, in order."""
    import matplotlib.text

    from davae_study.plotting import embedding, markers, style

    drawn: list[list[str]] = []

    def save(fig, out_png):
        drawn.append([t.get_text() for t in fig.findobj(matplotlib.text.Text)])
        return style.save_figure(fig, out_png)

    monkeypatch.setattr(embedding, "save_figure", save)
    monkeypatch.setattr(markers, "save_figure", save)
    return drawn


def test_marker_figures_draw_markers_prepare_did_not_select(tmp_path, monkeypatch):
    """The chain of the rules on real data: prepare keeps 300 genes, which leave out CD3D and CST3; rule
    marker_expression writes markers.h5ad from every input gene, and the three marker figures drawn from it
    show CD3D and CST3 (from prepared.h5ad, as before, they said "not in data"). A gene the input lacks is
    still reported as absent, without an error."""
    import anndata as ad
    import scanpy as sc

    from davae_study import pipeline
    from davae_study.plotting.workflow import PAPER_GENE_ACTIVITY, figure_kwargs, marker_genes

    app = tmp_path / "samples"
    spec = {"reader": "h5ad", "files": {"counts": str(IFNB)}}
    params = {"n_top_genes": 300}
    config = {"applications": {"samples": {"title": "ifnb", "methods": ["davae"], "input": spec, "prepare": params,
                                           "figure_params": {"marker_umaps": {"genes": ["CD3D", "LYZ", "NOT_A_GENE"]},
                                                             "marker_violins": {"markers": ["CD3D", "CST3", "LYZ"]},
                                                             "marker_dotplot": {"markers": ["CST3", "NOT_A_GENE",
                                                                                            "LYZ", "CD3D"]}}}}}
    genes = marker_genes(config, "samples")
    assert genes == ["CD3D", "LYZ", "NOT_A_GENE", "CST3"] + PAPER_GENE_ACTIVITY  # + Fig 4c's genes (default)
    prepared = pipeline.prepare_application(spec["files"], spec, params, app / "prepared.h5ad", app / "obs.tsv")
    assert not {"CD3D", "CST3"} & set(prepared.var_names) and "LYZ" in prepared.var_names
    pipeline.marker_expression({**spec["files"], "obs": str(app / "obs.tsv")}, spec, params, app / "obs.tsv",
                               app / "markers.h5ad", genes=genes)
    emb = sc.pp.pca(ad.read_h5ad(app / "prepared.h5ad"), n_comps=2, random_state=0, copy=True).obsm["X_pca"]
    write_tsv(pd.DataFrame({"cell": prepared.obs_names, "umap1": emb[:, 0], "umap2": emb[:, 1]}), app / "umap.tsv")
    kw = {f: figure_kwargs(config, "samples", f) for f in ("marker_umaps", "marker_violins", "marker_dotplot")}
    kw["marker_violins"]["groupby"] = kw["marker_dotplot"]["groupby"] = "cell_type"

    def draw(expression: str) -> list[list[str]]:
        drawn = _figure_texts(monkeypatch)
        out = tmp_path / expression.replace(".h5ad", "")
        run_rule("feature_umaps", out / "marker_umaps.png", {"kwargs": kw["marker_umaps"]},
                 umap=app / "umap.tsv", expression=app / expression)
        run_rule("marker_violins", out / "marker_violins.png", {"kwargs": kw["marker_violins"]},
                 expression=app / expression)
        run_rule("marker_dotplot", out / "marker_dotplot.png", {"kwargs": kw["marker_dotplot"]},
                 expression=app / expression)
        assert len(drawn) == 3
        return drawn

    umaps, violins, dots = draw("markers.h5ad")
    # marker UMAPs: one coloured panel per gene found, "not in data" only for the gene the input lacks
    assert [t for t in umaps if "not in data" in t] == ["NOT_A_GENE\nnot in data"]
    assert {"CD3D", "LYZ"} <= set(umaps)
    # violins: one row (label) per marker, nothing missing
    assert {"CD3D", "CST3", "LYZ"} <= set(violins) and not [t for t in violins if "not in data" in t]
    # dot plot: columns for the three genes, the absent one listed under the plot
    assert {"CD3D", "CST3", "LYZ"} <= set(dots)
    assert [t for t in dots if "not in data" in t] == ["not in data: NOT_A_GENE"]

    # control, the old input: prepared.h5ad has the selected genes only
    umaps, violins, dots = draw("prepared.h5ad")
    assert "CD3D\nnot in data" in umaps
    assert [t for t in violins if "not in data" in t] == ["not in data: CD3D, CST3"]
    assert [t for t in dots if "not in data" in t] == ["not in data: CST3, NOT_A_GENE, CD3D"]


def _rna_atac_application(root: Path) -> dict[str, str]:
    """The input files of an RNA + ATAC application (reader ``pbmc_rna_atac``, as the paper's application 3),
    synthesised from real cells (module docstring): RNA = the real CTRL cells of ifnb1k as a 10x HDF5 (all
    genes) with their labels; ATAC = the real STIM cells as nuclei of a 10x peak matrix, in which each gene of
    a hand-written GTF (the 400 most expressed genes and the Fig 4c genes, not MS4A1) has two peaks inside its
    window that split the cell's real counts of the gene, plus two peaks outside every window. The gene
    activity of an ATAC cell is therefore its real counts of the gene. Returns the files by role."""
    import anndata as ad

    from test_data_formats import write_10x_h5, write_gtf

    from davae_study.plotting.workflow import PAPER_GENE_ACTIVITY

    a = ad.read_h5ad(IFNB)
    rna, stim = a[a.obs["batch"] == "CTRL"].copy(), a[a.obs["batch"] == "STIM"].copy()
    total = np.asarray(a.X.sum(axis=0)).ravel()
    genes = list(a.var_names[np.argsort(-total, kind="stable")[:400]])
    genes += [g for g in PAPER_GENE_ACTIVITY if g not in genes]
    genes = [g for g in genes if g != "MS4A1"]  # a gene with RNA expression and no gene activity
    counts = sp.csc_matrix(stim[:, genes].X)
    gtf, peaks, columns = [], [], []
    for i, gene in enumerate(genes):
        start = 100_000 * (i + 1)
        gtf.append(("1", start, start + 5_000, "+" if i % 2 == 0 else "-", gene))
        c = counts[:, i].toarray().ravel()
        peaks += [f"chr1:{start + 100}-{start + 600}", f"chr1:{start + 3000}-{start + 3500}"]
        columns += [np.floor(c / 2), c - np.floor(c / 2)]
    peaks += ["chr2:10000-10500", "chr2:50000-50500"]
    columns += [counts[:, 0].toarray().ravel(), counts[:, 1].toarray().ravel()]
    atac = ad.AnnData(X=sp.csr_matrix(np.column_stack(columns)), obs=pd.DataFrame(index=stim.obs_names),
                      var=pd.DataFrame(index=peaks))
    pd.DataFrame({"barcode": rna.obs_names, "cell_type": rna.obs["cell_type"].to_numpy()}).to_csv(
        root / "labels.csv", index=False)
    files = {"rna": str(write_10x_h5(root / "rna.h5", rna)),
             "atac": str(write_10x_h5(root / "peaks.h5", atac, feature_type="Peaks", genome="hg19")),
             "gtf": str(write_gtf(root / "genes.gtf.gz", gtf)), "rna_labels": str(root / "labels.csv")}
    return files


def test_gene_activity_figure_draws_genes_prepare_did_not_select(tmp_path, monkeypatch):
    """Fig 4c through the chain of the rules on an RNA + ATAC application (``_rna_atac_application``):
    prepare keeps 100 genes, which leave out LYN, VCAN, BANK1 and SULF2 of the paper's six; rule
    marker_expression writes markers.h5ad from every input gene, in which the ATAC cells' gene activity is
    normalised exactly as in prepared.h5ad; the gene-activity figure drawn from it (the rule's own keyword
    arguments) colours the ATAC cells by that value for all six genes and greys the RNA cells. A gene with RNA
    expression but no gene activity (MS4A1: not in the GTF, hence not in the joint data) and a gene of neither
    are reported as absent, without an error. From prepared.h5ad, as before, four panels said "not in data"."""
    import anndata as ad
    import matplotlib.collections
    import scanpy as sc

    from davae_study import pipeline
    from davae_study.data import read_application
    from davae_study.plotting import embedding, style
    from davae_study.plotting.workflow import MARKER_FIGURES, PAPER_GENE_ACTIVITY, figure_kwargs, marker_genes

    app = tmp_path / "rna_atac"
    app.mkdir()
    files = _rna_atac_application(tmp_path)
    spec = {"reader": "pbmc_rna_atac", "files": files}
    params = {"n_top_genes": 100}
    asked = PAPER_GENE_ACTIVITY + ["MS4A1", "NOT_A_GENE"]
    config = {"applications": {"rna_atac": {"title": "RNA + ATAC", "methods": ["davae"], "input": spec,
                                            "prepare": params, "figure_params": {"gene_activity": {"genes": asked}}}}}
    genes = marker_genes(config, "rna_atac")  # also the Fig 6 figures' markers: the rule asks for all of them
    assert set(asked) <= set(genes)
    prepared = pipeline.prepare_application(files, spec, params, app / "prepared.h5ad", app / "obs.tsv")
    not_selected = ["LYN", "VCAN", "BANK1", "SULF2"]
    assert not set(not_selected) & set(prepared.var_names) and {"CCL5", "LDHB"} <= set(prepared.var_names)
    pipeline.marker_expression({**files, "obs": str(app / "obs.tsv")}, spec, params, app / "obs.tsv",
                               app / "markers.h5ad", genes=genes)
    markers = ad.read_h5ad(app / "markers.h5ad")
    assert list(markers.obs_names) == list(prepared.obs_names)
    assert {"MS4A1", "NOT_A_GENE"} <= set(markers.uns["markers"]["absent"])
    assert set(PAPER_GENE_ACTIVITY) <= set(markers.var_names)
    atac = (markers.obs["modality"] == "ATAC").to_numpy()
    assert atac.sum() == 441 and (prepared.obs["modality"] == "ATAC").sum() == 441

    # the same normalisation for the ATAC batch: a selected gene's column is prepared X's, bit for bit ...
    ldhb = prepared.var_names.get_loc("LDHB")
    assert (markers[:, "LDHB"].X != prepared[:, ldhb].X).nnz == 0 and markers[atac, "LDHB"].X.nnz > 100
    # ... and an unselected gene's ATAC rows are its gene activity (the nuclei's real counts, by construction)
    # normalised as scanpy normalises the joint matrix of every gene
    stim = ad.read_h5ad(IFNB)
    stim = stim[stim.obs["batch"] == "STIM"]
    np.testing.assert_array_equal(markers[atac, "LYN"].layers["counts"].toarray().ravel(),
                                  stim[:, "LYN"].X.toarray().ravel())
    ref = read_application(spec, files)
    sc.pp.filter_cells(ref, min_genes=1)
    sc.pp.filter_genes(ref, min_cells=3)
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    assert list(ref.obs_names) == list(markers.obs_names)
    for gene in not_selected:
        np.testing.assert_allclose(markers[:, gene].X.toarray(), ref[:, gene].X.toarray(), rtol=1e-6)

    emb = sc.pp.pca(ad.read_h5ad(app / "prepared.h5ad"), n_comps=2, random_state=0, copy=True).obsm["X_pca"]
    write_tsv(pd.DataFrame({"cell": prepared.obs_names, "umap1": emb[:, 0], "umap2": emb[:, 1]}), app / "umap.tsv")
    # the keyword arguments of rule figure_gene_activity
    kw = figure_kwargs(config, "rna_atac", "gene_activity", **MARKER_FIGURES["gene_activity"],
                       select={"modality": "ATAC"}, value_label="gene activity")
    assert kw["genes"] == asked

    def draw(expression: str) -> dict:
        """Per panel (gene): its texts, the points drawn grey and the values the coloured points show."""
        figs = []

        def save(fig, out_png):
            figs.append(fig)
            return style.save_figure(fig, out_png)

        monkeypatch.setattr(embedding, "save_figure", save)
        run_rule("feature_umaps", tmp_path / expression.replace(".h5ad", ".png"), {"kwargs": kw},
                 umap=app / "umap.tsv", expression=app / expression)
        (fig,) = figs
        panels = {}
        for ax in fig.axes:
            if ax.get_title() not in asked:
                continue  # colour bars
            dots = [c for c in ax.collections if isinstance(c, matplotlib.collections.PathCollection)]
            panels[ax.get_title()] = {"texts": [t.get_text() for t in ax.texts],
                                      "grey": len(dots[0].get_offsets()) if len(dots) == 2 else 0,
                                      "values": np.asarray(dots[-1].get_array()) if dots else None}
        assert list(panels) == asked
        return panels

    panels = draw("markers.h5ad")
    for gene in PAPER_GENE_ACTIVITY:
        p = panels[gene]
        assert not p["texts"] and p["grey"] == 391, (gene, p)  # the RNA cells in grey
        want = np.sort(markers[atac, gene].X.toarray().ravel())  # the ATAC cells coloured by gene activity
        np.testing.assert_array_equal(np.sort(p["values"]), want)
    assert panels["LYN"]["values"].max() > 0
    assert [panels[g]["texts"] for g in ("MS4A1", "NOT_A_GENE")] == [["MS4A1\nnot in data"], ["NOT_A_GENE\nnot in data"]]

    # control, the old input: prepared.h5ad holds the selected genes only
    panels = draw("prepared.h5ad")
    assert [g for g, p in panels.items() if p["texts"]] == not_selected + ["MS4A1", "NOT_A_GENE"]
