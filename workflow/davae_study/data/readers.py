"""Readers of the paper's five applications: downloaded files in, one AnnData out.

Every reader has the signature ``reader(paths, *, expected=None, **params) -> AnnData`` where ``paths`` maps
the application's file roles (``input.files`` in its config) to local paths and ``expected`` maps part names
to the paper's stated shape (``{cells, genes, labels}``); by default it comes from the data table
(``sources=``, default ``config/data_sources.yaml``, see :func:`expected_for`). The result holds raw counts
in ``X`` (CSR float32; TPM for the Smart-Seq2 dendritic cells, said by ``uns['counts_kind']``), unique gene
symbols as ``var_names``, categorical ``obs['batch']``, ``obs['cell_type']`` where known, ``obs['modality']``
and ``obs['role']`` where relevant, ``obsm['spatial']`` for Visium spots, and ``uns['provenance']``: one shape
check per part read (:func:`davae_study.data.provenance.shape_check`).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from davae_study.data.formats import (read_10x_h5, read_10x_mtx, read_csv_counts_chunked, read_geo_table,
                                      read_visium_spatial)
from davae_study.data.gene_activity import DEFAULT_SEQ_LEVELS, gene_activity, read_gtf_genes
from davae_study.data.download import load_sources
from davae_study.data.provenance import rows_to_uns, shape_check

__all__ = ["villani_dc", "tenx_293t_jurkat", "pbmc_rna_atac", "visium_mouse_brain", "hca_immune",
           "annotate_by_markers", "expected_for", "PAPER_READERS", "PBMC_MARKERS", "SCANORAMA_MIN_GENES",
           "TASIC_NON_CELL_LABELS"]


def _need(paths: Mapping[str, Any], *roles: str, reader: str) -> None:
    missing = [r for r in roles if r not in paths]
    if missing:
        raise ValueError(f"reader {reader} needs files {missing} (roles under 'files:'); got {sorted(paths)}")


def _categorical(a: ad.AnnData, *cols: str) -> ad.AnnData:
    for c in cols:
        if c in a.obs:
            a.obs[c] = pd.Categorical(a.obs[c])
    return a


def _concat(parts: Mapping[str, ad.AnnData]) -> ad.AnnData:
    """Inner-join on gene symbols, keep obs columns, prefix cell names with the part (no collisions)."""
    out = ad.concat(dict(parts), join="inner", label="_part", index_unique=":", merge="first", uns_merge=None)
    out.obs = out.obs.drop(columns="_part")
    out.X = sparse.csr_matrix(out.X, dtype=np.float32)
    return out


DEFAULT_SOURCES = "config/data_sources.yaml"


def expected_for(
    paths: Mapping[str, str], sources: str | os.PathLike | Mapping | None = DEFAULT_SOURCES
) -> dict[str, dict]:
    """``{role: expected shape}`` from the data table's ``expected:`` of each role's file.

    A file is matched to its data-table key ``<dataset>/<file>`` by the last two parts of its path (its place
    under ``resources/``). No data table (or no match): no expectation, the shape check says 'unchecked'.
    """
    if sources is None or (isinstance(sources, (str, os.PathLike)) and not Path(sources).is_file()):
        return {}
    table = load_sources(sources)
    out = {}
    for role, path in paths.items():
        key = "/".join(Path(path).parts[-2:])
        if key in table and table[key].get("expected"):
            out[role] = dict(table[key]["expected"])
    return out


def _with_expected(reader):
    """Let a reader take ``sources=`` (data table path or mapping) and derive ``expected`` from it."""

    @functools.wraps(reader)
    def wrapped(paths, *, expected=None, sources=DEFAULT_SOURCES, **params):
        if expected is None:
            expected = expected_for(paths, sources)
        return reader(paths, expected=expected, **params)

    return wrapped


# ------------------------------------------------------------------------------------------ 1. dendritic
VILLANI_TYPES = {"CD1C": "CD1C DC", "CD141": "CD141 DC", "pDC": "pDC", "DoubleNeg": "double negative"}
VILLANI_PLATES = {"batch1": ["P7", "P8", "P9", "P10"], "batch2": ["P3", "P4", "P13", "P14"]}


@_with_expected
def villani_dc(
    paths: Mapping[str, str],
    *,
    expected: Mapping[str, Mapping] | None = None,
    cell_types: Mapping[str, str] = VILLANI_TYPES,
    plate_batches: Mapping[str, Sequence[str]] = VILLANI_PLATES,
) -> ad.AnnData:
    """Human blood dendritic cells (Villani 2017, GEO GSE94820, Smart-Seq2, TPM).

    Files: ``matrix`` (``GSE94820_raw.expMatrix_DCnMono.discovery.set.submission.txt.gz``). Cell IDs are
    ``<CellType>_<Plate>_<Well>``; cells whose type prefix is a key of ``cell_types`` are kept and labelled with
    its value; ``plate_batches`` maps the plates to the two batches (the paper: P7-P10 vs P3, P4, P13, P14).
    ``X`` holds TPM as published (``uns['counts_kind'] = 'tpm'``).
    """
    _need(paths, "matrix", reader="villani_dc")
    a = read_geo_table(paths["matrix"])
    parts = pd.Series(a.obs_names).str.split("_", n=2, expand=True)
    if parts.shape[1] < 2:
        raise ValueError(f"{paths['matrix']}: cell IDs like {a.obs_names[0]!r} are not '<CellType>_<Plate>_<Well>'")
    ctype, plate = parts[0].to_numpy(), parts[1].to_numpy()
    keep = np.isin(ctype, list(cell_types))
    if not keep.any():
        raise ValueError(f"no cell of types {list(cell_types)}; the file has {sorted(set(ctype))}: fix cell_types")
    plate_to_batch = {p: b for b, plates in plate_batches.items() for p in plates}
    unknown = sorted(set(plate[keep]) - set(plate_to_batch))
    if unknown:
        raise ValueError(f"plates {unknown} are in no batch; add them to reader_params.plate_batches")
    a = a[keep].copy()
    a.obs["cell_type"] = [cell_types[t] for t in ctype[keep]]
    a.obs["plate"] = plate[keep]
    a.obs["batch"] = [plate_to_batch[p] for p in plate[keep]]
    a.uns["counts_kind"] = "tpm"
    _categorical(a, "batch", "cell_type", "plate")
    a.uns["provenance"] = rows_to_uns([shape_check(a, "matrix", {"matrix": paths["matrix"]},
                                                   (expected or {}).get("matrix"))])
    return a


# --------------------------------------------------------------------------------------- 2. 293T / Jurkat
#: Scanorama's cell filter (brianhie/scanorama bin/process.py: ``MIN_TRANSCRIPTS = 600``, cells with at least
#: that many expressed genes are kept); its ``cell_labels/293t_jurkat_cluster.txt`` labels the cells it keeps.
SCANORAMA_MIN_GENES = 600


def _align_293t_jurkat_labels(labels: list[str], n_all: Mapping[str, int], n_kept: Mapping[str, int]):
    """Which cells a Scanorama label file covers: ``(coverage, mixture labels or None, pure labels or None)``.

    Tried in this order: the cells kept by the filter (the file as published), all cells, the filtered
    mixture, the whole mixture. Coverage 'all' / 'mixture' means the labels of filtered-out cells are dropped
    by the caller; the mixture part is returned for the cells as counted by ``coverage``.
    """
    n = len(labels)
    for coverage, counts in (("filtered", n_kept), ("all", n_all)):
        if n == sum(counts.values()):
            k = counts["t293"] + counts["jurkat"]
            return coverage, labels[k:], labels[:k]
    for coverage, counts in (("filtered-mixture", n_kept), ("mixture", n_all)):
        if n == counts["mixture"]:
            return coverage, labels, None
    return None, None, None


@_with_expected
def tenx_293t_jurkat(
    paths: Mapping[str, str],
    *,
    expected: Mapping[str, Mapping] | None = None,
    genome: str | None = "hg19",
    min_genes: int = SCANORAMA_MIN_GENES,
) -> ad.AnnData:
    """10x cell lines: pure 293T, pure Jurkat and their 50:50 mixture (Cell Ranger 1.1.0, hg19).

    Files: ``t293``, ``jurkat``, ``mixture`` (``*_filtered_gene_bc_matrices.tar.gz``) and ``labels``
    (Scanorama's ``cell_labels/293t_jurkat_cluster.txt``: one label per line, for the 293T, Jurkat and mixture
    cells in that order). Scanorama's filter is applied first: cells with fewer than ``min_genes`` expressed
    genes are dropped (600, as Scanorama; 0 keeps every cell). The label file may cover the filtered cells of
    the three batches (Scanorama's file: 9,530 of the 9,531 cells), all cells, or the mixture only (filtered
    or not); the provenance note and ``uns['label_coverage']`` say which. Batches: ``293t``, ``jurkat``,
    ``mixture``; cell types ``293t`` / ``jurkat`` (pure lines by sample, mixture from the file).
    """
    _need(paths, "t293", "jurkat", "mixture", "labels", reader="tenx_293t_jurkat")
    parts, rows, kept = {}, [], {}
    for role, default_type in (("t293", "293t"), ("jurkat", "jurkat"), ("mixture", None)):
        a = read_10x_mtx(paths[role], genome=genome)
        a.obs["batch"] = {"t293": "293t"}.get(role, role)
        a.obs["cell_type"] = default_type
        parts[role] = a
        kept[role] = np.asarray((a.X > 0).sum(axis=1)).ravel() >= min_genes
    labels = [x.strip() for x in Path(paths["labels"]).read_text().split() if x.strip()]
    n_all = {r: parts[r].n_obs for r in parts}
    n_kept = {r: int(kept[r].sum()) for r in parts}
    empty = [r for r in parts if n_kept[r] == 0]
    if empty:
        raise ValueError(f"no cell of {empty} has >= {min_genes} expressed genes; lower input.params.min_genes "
                         "(Scanorama's filter is 600 on the full 10x matrices)")
    coverage, mix, pure = _align_293t_jurkat_labels(labels, n_all, n_kept)
    if coverage is None:
        raise ValueError(
            f"{paths['labels']} has {len(labels)} labels; expected {sum(n_kept.values())} (cells with >= {min_genes} "
            f"expressed genes, Scanorama's file), {sum(n_all.values())} (all cells), {n_kept['mixture']} or "
            f"{n_all['mixture']} (mixture only): is it 293t_jurkat_cluster.txt for these matrices?")
    filtered = coverage.startswith("filtered")
    mix = np.asarray(mix)[slice(None) if filtered else kept["mixture"]]
    note = (f"label file covers {'the filtered cells of ' if filtered else ''}"
            f"{'all 3 batches' if pure is not None else 'the mixture only'} ({len(labels)} lines)")
    if pure is not None:
        want = np.array(["293t"] * (n_kept["t293"] if filtered else n_all["t293"])
                        + ["jurkat"] * (n_kept["jurkat"] if filtered else n_all["jurkat"]))
        note += f"; pure-line labels agree with their batch for {np.mean(np.asarray(pure) == want):.1%}"
    mix_all = np.full(n_all["mixture"], None, dtype=object)
    mix_all[kept["mixture"]] = mix
    parts["mixture"].obs["cell_type"] = mix_all
    for role, a in parts.items():
        files = {role: paths[role], **({"labels": paths["labels"]} if role == "mixture" else {})}
        dropped = n_all[role] - n_kept[role]
        part_note = (f"{n_kept[role]} cells with >= {min_genes} expressed genes kept ({dropped} dropped, "
                     "Scanorama's filter)")
        # the shape check is of the file as published (the data table states the 10x cell counts)
        rows.append(shape_check(_categorical(a, "batch", "cell_type"), role, files, (expected or {}).get(role),
                                note=part_note + (f"; {note}" if role == "mixture" else "")))
        parts[role] = _categorical(a[kept[role]].copy(), "batch", "cell_type")
    out = _concat(parts)
    out.uns["counts_kind"] = "counts"
    out.uns["label_coverage"] = coverage
    out.uns["provenance"] = rows_to_uns(rows)
    return _categorical(out, "batch", "cell_type")


# ------------------------------------------------------------------------------------ 3. PBMC RNA + ATAC
# Marker genes of the 13 cell types of Seurat's pbmc_10k_v3 annotation (used only when no label file is given).
PBMC_MARKERS: dict[str, list[str]] = {
    "CD14+ Monocytes": ["CD14", "LYZ", "S100A8", "S100A9", "VCAN"],
    "CD16+ Monocytes": ["FCGR3A", "MS4A7", "LST1", "CDKN1C"],
    "Dendritic cell": ["FCER1A", "CD1C", "CLEC10A"],
    "pDC": ["LILRA4", "CLEC4C", "IL3RA", "TCF4"],
    "CD4 Naive": ["CD3E", "CD4", "CCR7", "LEF1", "TCF7"],
    "CD4 Memory": ["CD3E", "CD4", "IL7R", "S100A4", "AQP3"],
    "CD8 Naive": ["CD8A", "CD8B", "CCR7", "LEF1"],
    "CD8 effector": ["CD8A", "GZMK", "GZMH", "CCL5", "NKG7"],
    "Double negative T cell": ["CD3E", "TRDC", "TRGC1", "KLRB1"],
    "NK cell": ["GNLY", "NKG7", "KLRD1", "KLRF1", "PRF1"],
    "B cell progenitor": ["MS4A1", "CD79A", "TCL1A", "IGHD"],
    "pre-B cell": ["CD79A", "CD79B", "VPREB3", "IGLL1", "CD24"],
    "Platelets": ["PPBP", "PF4", "GP9"],
}


def annotate_by_markers(
    adata: ad.AnnData, markers: Mapping[str, Sequence[str]], *, resolution: float = 2.0, seed: int = 0,
) -> pd.Series:
    """Label clusters by marker genes: log-normalise a copy, Leiden-cluster it (50 PCs, 15 neighbours), score
    each type's markers (``scanpy.tl.score_genes``) and give every cluster the type of highest mean score.

    A documented approximation of an expert annotation; the result is returned, ``adata`` is not modified.
    """
    import scanpy as sc

    from ..jitcache import jit_cache

    b = ad.AnnData(X=adata.X.copy(), obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    sc.pp.highly_variable_genes(b, n_top_genes=min(2000, b.n_vars))
    sub = b[:, b.var["highly_variable"]].copy()
    sub.X = sub.X.toarray() if sparse.issparse(sub.X) else sub.X  # HVGs only: dense is small, scaling needs it
    sc.pp.scale(sub, max_value=10)
    sc.pp.pca(sub, n_comps=min(50, sub.n_obs - 1, sub.n_vars - 1), random_state=seed)
    with jit_cache():  # umap-learn's numba code compiled once, not in every job
        sc.pp.neighbors(sub, n_neighbors=15, random_state=seed)
    sc.tl.leiden(sub, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    scores = {}
    for t, genes in markers.items():
        genes = [g for g in genes if g in b.var_names]
        if not genes:
            continue
        sc.tl.score_genes(b, genes, score_name="_s", random_state=seed, ctrl_size=min(50, b.n_vars - len(genes)))
        scores[t] = b.obs["_s"].to_numpy()
    if not scores:
        raise ValueError("no marker gene is among the var_names; pass markers that match the gene symbols")
    S = pd.DataFrame(scores, index=b.obs_names)
    best = S.groupby(sub.obs["leiden"].to_numpy()).mean().idxmax(axis=1)
    return pd.Series(best.reindex(sub.obs["leiden"].to_numpy()).to_numpy(), index=adata.obs_names, name="cell_type")


@_with_expected
def pbmc_rna_atac(
    paths: Mapping[str, str],
    *,
    expected: Mapping[str, Mapping] | None = None,
    upstream: int = 2000,
    seq_levels: Sequence[str] | None = DEFAULT_SEQ_LEVELS,
    gene_biotypes: Sequence[str] | None = None,
    atac_counts_above: int | None = None,
    rna_labelled_only: bool = True,
    markers: Mapping[str, Sequence[str]] | None = None,
    marker_resolution: float = 2.0,
) -> ad.AnnData:
    """PBMC 10k: scRNA (10x v3) and scATAC (peaks -> gene activity) as two batches/modalities.

    Files: ``rna`` (``pbmc_10k_v3_filtered_feature_bc_matrix.h5``), ``atac``
    (``atac_v1_pbmc_10k_filtered_peak_bc_matrix.h5``), ``gtf`` (annotation of the peaks' genome build), and
    optionally ``rna_labels``: a CSV ``barcode,cell_type``, the paper's label source exported from Seurat's
    processed ``pbmc_10k_v3.rds`` (9,432 cells, 13 types) with
    ``write.csv(data.frame(barcode = colnames(pbmc.rna), cell_type = pbmc.rna$celltype), ...)``; with
    ``rna_labelled_only`` (default) only the cells the file labels are kept, as the authors did (their
    RNA batch is the rds' 9,432 cells). Without it every RNA cell of the 10x file (11,769) is labelled by
    :func:`annotate_by_markers` with ``markers`` (default :data:`PBMC_MARKERS`); ``uns['label_route']`` says
    which. ATAC cells get gene activity (gene body + ``upstream`` bp, strand aware,
    :func:`~davae_study.data.gene_activity.gene_activity`) and no label. ``atac_counts_above`` keeps nuclei
    with strictly more peak counts than that (the authors: ``subset(pbmc.atac, subset = nCount_ATAC > 5000)``;
    ``None`` keeps all). Genes: those of both modalities.
    """
    _need(paths, "rna", "atac", "gtf", reader="pbmc_rna_atac")
    expected = expected or {}
    rows = []
    rna = read_10x_h5(paths["rna"], feature_types=("Gene Expression",))
    if "rna_labels" in paths:
        lab = pd.read_csv(paths["rna_labels"])
        if lab.shape[1] < 2:
            raise ValueError(f"{paths['rna_labels']}: expected columns barcode,cell_type")
        lab = lab.drop_duplicates(lab.columns[0]).set_index(lab.columns[0])[lab.columns[1]]
        rna.obs["cell_type"] = lab.reindex(rna.obs_names).to_numpy()
        n_matched = int(rna.obs["cell_type"].notna().sum())
        if n_matched == 0:
            raise ValueError(f"{paths['rna_labels']}: none of its {len(lab)} barcodes (e.g. {lab.index[0]!r}) is a "
                             f"cell of {paths['rna']} (e.g. {rna.obs_names[0]!r}); export colnames(pbmc.rna) as is")
        route = (f"label file {Path(paths['rna_labels']).name} ({n_matched} of {rna.n_obs} cells labelled"
                 f"{', only those kept' if rna_labelled_only else ''})")
    else:
        labels = annotate_by_markers(rna, markers or PBMC_MARKERS, resolution=marker_resolution)
        rna.obs["cell_type"] = labels.to_numpy()
        route = "marker-gene annotation of Leiden clusters (approximate; see docs/data.md)"
    rna_files = {"rna": paths["rna"], **({"rna_labels": paths["rna_labels"]} if "rna_labels" in paths else {})}
    rows.append(shape_check(_categorical(rna, "cell_type"), "rna", rna_files, expected.get("rna"),
                            note=f"labels: {route}"))
    if "rna_labels" in paths and rna_labelled_only:
        rna = rna[rna.obs["cell_type"].notna().to_numpy()].copy()

    peaks = read_10x_h5(paths["atac"], feature_types=None)
    n_nuclei = peaks.n_obs
    atac_note = ""
    if atac_counts_above is not None:
        peaks = peaks[np.asarray(peaks.X.sum(axis=1)).ravel() > atac_counts_above].copy()
        atac_note = f"{peaks.n_obs} of {n_nuclei} nuclei with > {atac_counts_above} peak counts kept; "
    genes = read_gtf_genes(paths["gtf"], gene_biotypes=gene_biotypes, seq_levels=seq_levels)
    act, names, stats = gene_activity(peaks.X, peaks.var_names, genes, upstream=upstream)
    rows.append(shape_check(peaks, "atac", {"atac": paths["atac"], "gtf": paths["gtf"]}, expected.get("atac"),
                            note=f"{atac_note}peaks in gene windows: {stats['frac_peaks_in_windows']:.1%}"))
    atac = ad.AnnData(X=act, obs=pd.DataFrame(index=peaks.obs_names), var=pd.DataFrame(index=names))
    atac.obs["cell_type"] = np.nan
    rna.obs["modality"] = rna.obs["batch"] = "RNA"
    atac.obs["modality"] = atac.obs["batch"] = "ATAC"
    out = _concat({"RNA": rna, "ATAC": atac})
    out.uns.update(counts_kind="counts (RNA UMI) / gene activity (ATAC peak counts)", label_route=route,
                   gene_activity=stats, provenance=rows_to_uns(rows))
    return _categorical(out, "batch", "modality", "cell_type")


# ------------------------------------------------------------------------------ 4. Visium + Allen cortex
def _read_visium(h5: str, spatial: str, library_id: str) -> tuple[ad.AnnData, dict]:
    a = read_10x_h5(h5)
    sp = read_visium_spatial(spatial, a.obs_names, library_id=library_id)
    a.obsm["spatial"] = sp["spatial"]
    for c in ("in_tissue", "array_row", "array_col"):
        if c in sp["positions"]:
            a.obs[c] = sp["positions"][c].to_numpy()
    return a, sp["uns"]


#: ``cell_subclass`` values of Tasic 2018's GEO metadata that are not cell types; public pipelines on this table
#: drop them (and rows with an empty subclass): see docs/data.md, "Allen reference".
TASIC_NON_CELL_LABELS = ("Low Quality", "No Class", "Batch Grouping", "Doublet", "High Intronic")


@_with_expected
def visium_mouse_brain(
    paths: Mapping[str, str],
    *,
    expected: Mapping[str, Mapping] | None = None,
    label_column: str = "cell_subclass",
    drop_labels: Sequence[str] = TASIC_NON_CELL_LABELS,
    include_reference: bool = True,
) -> ad.AnnData:
    """Visium mouse brain (sagittal anterior + posterior) with the Allen cortex (Tasic 2018) reference.

    Files: ``anterior``, ``posterior`` (``*_filtered_feature_bc_matrix.h5``), ``anterior_spatial``,
    ``posterior_spatial`` (``*_spatial.tar.gz`` or unpacked folders), ``reference`` (GEO GSE115746
    ``cells_exon_counts.csv.gz``, genes x cells) and ``reference_metadata`` (``complete_metadata_*.csv.gz``,
    ``sample_name`` plus ``label_column``). Spots get ``obsm['spatial']``, ``role='query'``, batch = section;
    reference cells ``role='reference'``, their ``label_column`` as ``cell_type`` (rows in ``drop_labels``, with
    an empty label or absent from the metadata are dropped: :data:`TASIC_NON_CELL_LABELS`) and NaN coordinates. ``uns['spatial']`` holds both sections' images and scale factors.
    """
    _need(paths, "anterior", "posterior", "anterior_spatial", "posterior_spatial", reader="visium_mouse_brain")
    expected = expected or {}
    parts, rows, spatial_uns = {}, [], {}
    for sec in ("anterior", "posterior"):
        a, uns = _read_visium(paths[sec], paths[f"{sec}_spatial"], library_id=sec)
        a.obs["batch"], a.obs["role"], a.obs["modality"], a.obs["cell_type"] = sec, "query", "visium", np.nan
        spatial_uns.update(uns)
        files = {sec: paths[sec], f"{sec}_spatial": paths[f"{sec}_spatial"]}
        rows.append(shape_check(a, sec, files, expected.get(sec)))
        parts[sec] = a
    if include_reference:
        _need(paths, "reference", "reference_metadata", reader="visium_mouse_brain")
        ref = read_csv_counts_chunked(paths["reference"])
        meta = pd.read_csv(paths["reference_metadata"], low_memory=False)
        key = "sample_name" if "sample_name" in meta else meta.columns[0]
        if label_column not in meta:
            raise ValueError(f"{paths['reference_metadata']} has no column {label_column!r}; pick label_column from "
                             f"{list(meta.columns)[:30]}")
        lab = meta.drop_duplicates(key).set_index(key)[label_column].reindex(ref.obs_names)
        lab = lab.astype("string").str.strip()
        n_table = ref.n_obs
        keep = (lab.notna() & (lab != "") & ~lab.isin(list(drop_labels))).to_numpy(dtype=bool)
        ref = ref[keep].copy()
        ref.obs["cell_type"] = lab[keep].astype(str).to_numpy()
        ref.obs["batch"], ref.obs["role"], ref.obs["modality"] = "reference", "reference", "scRNA"
        ref.obsm["spatial"] = np.full((ref.n_obs, 2), np.nan)
        rows.append(shape_check(_categorical(ref, "cell_type"), "reference",
                                {"reference": paths["reference"], "reference_metadata": paths["reference_metadata"]},
                                expected.get("reference"),
                                note=f"{ref.n_obs} of the table's {n_table} cells kept (non-cell classes dropped)"))
        parts["reference"] = ref
    out = _concat(parts)
    out.obsm["spatial"] = np.vstack([p.obsm["spatial"] for p in parts.values()])
    out.uns.update(spatial=spatial_uns, counts_kind="counts", provenance=rows_to_uns(rows))
    return _categorical(out, "batch", "role", "modality", "cell_type")


# ---------------------------------------------------------------------------------------- 5. HCA immune
@_with_expected
def hca_immune(
    paths: Mapping[str, str],
    *,
    expected: Mapping[str, Mapping] | None = None,
    genome: str | None = None,
    max_cells_per_batch: int | None = None,
    seed: int = 0,
) -> ad.AnnData:
    """HCA census of immune cells: cord blood and bone marrow (10x v2 HDF5), one batch per tissue.

    Files: ``cord_blood`` (``ica_cord_blood_h5.h5``), ``bone_marrow`` (``ica_bone_marrow_h5.h5``). Read
    sparse, never densified. ``obs['donor']`` comes from the barcode prefix (``MantonCB1_HiSeq_1-...`` ->
    ``MantonCB1``). ``max_cells_per_batch`` subsamples (seeded) for quick runs; ``None`` keeps every cell.
    """
    _need(paths, "cord_blood", "bone_marrow", reader="hca_immune")
    parts, rows = {}, []
    rng = np.random.default_rng(seed)
    for role in ("cord_blood", "bone_marrow"):
        a = read_10x_h5(paths[role], genome=genome)
        rows.append(shape_check(a, role, {role: paths[role]}, (expected or {}).get(role)))
        if max_cells_per_batch and a.n_obs > max_cells_per_batch:
            a = a[np.sort(rng.choice(a.n_obs, max_cells_per_batch, replace=False))].copy()
        a.obs["batch"] = role
        a.obs["donor"] = [re.split(r"_", n, maxsplit=1)[0] for n in a.obs_names]
        parts[role] = a
    out = _concat(parts)
    out.uns.update(counts_kind="counts", provenance=rows_to_uns(rows))
    return _categorical(out, "batch", "donor")


PAPER_READERS = {
    "villani_dc": villani_dc,
    "tenx_293t_jurkat": tenx_293t_jurkat,
    "pbmc_rna_atac": pbmc_rna_atac,
    "visium_mouse_brain": visium_mouse_brain,
    "hca_immune": hca_immune,
}
