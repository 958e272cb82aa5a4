"""A miniature of the paper's input files: every file of the data table, tiny, in its real format and layout.

:func:`write_miniature` writes, from a seed, one small file per row of ``config/data_sources.yaml`` under
``<out>/<dataset>/<file>`` (the layout ``data.mirror`` expects) and a data table for it
(:func:`miniature_sources`: same keys and URLs, the miniature's own sha256 where the real table pins one,
its own shapes as ``expected``). Served on a loopback web server as ``data.mirror`` with that table as
``data.sources``, the paper's config runs end to end (tests/test_paper_miniature.py)::

    python -m davae_study.data.miniature OUT_DIR [--seed 0]      # writes OUT_DIR/... and OUT_DIR/data_sources.yaml

Formats (as the readers meet them in the real files):

* Villani DC: GEO tab-separated TPM table, gzipped, genes x cells, columns ``<Type>_<Plate>_<Well>`` with DC
  types on the paper's plates and monocytes on their own plates;
* 10x cell lines: Cell Ranger 1.1 ``filtered_gene_bc_matrices/hg19/`` (matrix.mtx, genes.tsv, barcodes.tsv) in a
  tar.gz; a few cells below Scanorama's 600 expressed genes; Scanorama's ``data.tar.gz`` holding
  ``data/cell_labels/293t_jurkat_cluster.txt`` with one label per cell that passes the filter;
* PBMC: 10x v3 feature-barcode HDF5 (RNA, PBMC marker programmes), 10x ATAC peak HDF5 with ``chr1:start-end``
  peaks over the genes of a gzipped Ensembl GTF (chromosomes ``1``, ``X``) and nuclei on both sides of 5,000
  peak counts (one exactly on it);
* Visium: Space Ranger 1.1 HDF5 + ``spatial/`` tar.gz (tissue_positions_list.csv without header, with
  off-tissue spots; scalefactors_json.json; hires / lowres PNG), spots mixing cortical layer types by depth;
* Allen: GEO CSV of exon counts (genes x cells, gzipped) and a metadata CSV with ``sample_name``,
  ``cell_class``, ``cell_subclass``, ``cell_cluster``, including non-cell classes, an empty subclass and rows
  for cells absent from the counts;
* HCA: 10x v2 HDF5 (group ``GRCh38``), barcodes ``<Donor>_HiSeq_<lane>-<barcode>-1``, two donors per tissue.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import pandas as pd
import scipy.io
import yaml
from scipy import sparse

__all__ = ["write_miniature", "miniature_sources", "MINIATURE_SIZES", "main"]

#: cells per type (or spots per section) of each part: small enough for the whole DAG in minutes
MINIATURE_SIZES = {"villani_per_type_batch": 9, "villani_monocytes": 12, "cell_line": 36, "pbmc_per_type": 12,
                   "atac_nuclei": 90, "spots": 64, "allen_per_type": 10, "hca_per_type": 16}

HUMAN_FILLER = 700
MOUSE_FILLER = 400

PBMC_TYPES = {  # programme genes of each type (the marker annotation's and the figures' genes among them)
    "CD14+ Monocytes": ["CD14", "LYZ", "S100A8", "S100A9", "VCAN", "CST3", "LYN", "SULF2"],
    "CD16+ Monocytes": ["FCGR3A", "MS4A7", "LST1", "CDKN1C", "CST3"],
    "Dendritic cell": ["FCER1A", "CD1C", "CLEC10A", "CST3"],
    "pDC": ["LILRA4", "CLEC4C", "IL3RA", "TCF4"],
    "CD4 Naive": ["CD3E", "CD3D", "CD4", "CCR7", "LEF1", "TCF7", "IL7R", "LDHB"],
    "CD8 effector": ["CD3E", "CD3D", "CD8A", "CD8B", "GZMK", "GZMH", "CCL5", "NKG7"],
    "NK cell": ["GNLY", "NKG7", "KLRD1", "KLRF1", "PRF1", "CCL5"],
    "B cell progenitor": ["MS4A1", "CD79A", "CD79B", "TCL1A", "IGHD", "BANK1"],
    "Platelets": ["PPBP", "PF4", "GP9"],
}
HCA_TYPES = {
    "T": ["CD3D", "CD3E", "IL7R", "LDHB"], "CD8 T": ["CD3D", "CD8A", "CCL5", "NKG7"],
    "NK": ["GNLY", "NKG7", "KLRD1"], "B": ["CD79A", "MS4A1", "BANK1"], "Monocyte": ["CD14", "LYZ", "S100A8", "CST3"],
    "CD16 Monocyte": ["FCGR3A", "MS4A7", "CST3"], "Erythroid": ["HBB", "HBA1", "HBA2"],
}
DC_TYPES = {"CD1C": ["CD1C", "FCER1A", "CLEC10A"], "CD141": ["CLEC9A", "XCR1", "CADM1"],
            "pDC": ["LILRA4", "IL3RA", "TCF4"], "DoubleNeg": ["AXL", "SIGLEC6", "CD22"]}
MOUSE_TYPES = {  # Allen cortex subclasses (the spatial figures' L2/3 IT, L4, L5 PT, L6 CT among them)
    "L2/3 IT": ["Cux2", "Otof", "Calb1"], "L4": ["Rorb", "Rspo1", "Whrn"], "L5 PT": ["Fezf2", "Bcl6", "Pou3f1"],
    "L6 CT": ["Foxp2", "Syt6", "Ctgf"], "Pvalb": ["Pvalb", "Gad1", "Tac1"], "Sst": ["Sst", "Gad1", "Chodl"],
    "Vip": ["Vip", "Gad1", "Cck"], "Astro": ["Gfap", "Aqp4", "Aldh1l1"], "Oligo": ["Mbp", "Plp1", "Mog"],
}
ALLEN_CLASS = {"L2/3 IT": "Glutamatergic", "L4": "Glutamatergic", "L5 PT": "Glutamatergic",
               "L6 CT": "Glutamatergic", "Pvalb": "GABAergic", "Sst": "GABAergic", "Vip": "GABAergic",
               "Astro": "Non-Neuronal", "Oligo": "Non-Neuronal"}
VILLANI_PLATES = {"batch1": ["P7", "P8", "P9", "P10"], "batch2": ["P3", "P4", "P13", "P14"]}
NUCLEOTIDES = np.array(list("ACGT"))


# ------------------------------------------------------------------------------------------------- helpers
def _genes(markers: Mapping[str, list[str]], n_filler: int, prefix: str) -> list[str]:
    genes = list(dict.fromkeys(g for gs in markers.values() for g in gs))
    return genes + [f"{prefix}{i:05d}" for i in range(n_filler)]


def _profile(rng, genes, markers, *, base_mean=0.4, fold=12.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A shared gene profile and each type's multiplier: its programme genes ``fold`` higher, and a random tenth
    of all genes shifted, so types differ beyond the named markers."""
    idx = {g: i for i, g in enumerate(genes)}
    base = rng.gamma(0.8, base_mean / 0.8, len(genes))
    prog = {}
    for t, gs in markers.items():
        prog[t] = np.ones(len(genes))
        prog[t][[idx[g] for g in gs]] = fold
        prog[t][rng.choice(len(genes), len(genes) // 10, replace=False)] *= rng.lognormal(0, 0.8, len(genes) // 10)
    return base, prog


def _counts(rng, genes, markers, types, *, base_mean=0.4, fold=12.0, depth=1.0, batch=None, batch_sd=0.5,
            profile=None):
    """Poisson counts of cells of ``types`` (one entry per cell) from a :func:`_profile` (given or drawn), a
    per-gene batch factor per batch label and log-normal depth."""
    base, prog = profile if profile is not None else _profile(rng, list(genes), markers, base_mean=base_mean, fold=fold)
    factors = {}
    out = np.zeros((len(types), len(base)), dtype=np.float64)
    for i, t in enumerate(types):
        b = None if batch is None else batch[i]
        if b not in factors:
            factors[b] = np.ones(len(base)) if b is None else rng.lognormal(0, batch_sd, len(base))
        out[i] = base * prog[t] * factors[b] * rng.lognormal(0, 0.3) * depth
    return rng.poisson(out).astype(np.int64)


def _barcodes(rng, n, suffix="-1", length=16):
    seen: set[str] = set()
    out = []
    while len(out) < n:
        bc = "".join(rng.choice(NUCLEOTIDES, length)) + suffix
        if bc not in seen:
            seen.add(bc)
            out.append(bc)
    return out


def _gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


def _targz(members: Mapping[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return _gzip_bytes(raw.getvalue())


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _ds(g: h5py.Group, name: str, value) -> None:
    g.create_dataset(name, data=value, track_times=False)


def _h5_v3(path: Path, X: np.ndarray, barcodes, names, ids, *, feature_type: str, genome: str) -> Path:
    """10x feature-barcode HDF5 (Cell Ranger >= 3 / ATAC / Space Ranger): /matrix, features x cells CSC."""
    path.parent.mkdir(parents=True, exist_ok=True)
    M = sparse.csc_matrix(np.asarray(X).T.astype(np.int32))
    with h5py.File(path, "w", track_order=False) as f:
        g = f.create_group("matrix")
        _ds(g, "barcodes", np.array(barcodes, dtype="S"))
        _ds(g, "data", M.data.astype(np.int32))
        _ds(g, "indices", M.indices.astype(np.int64))
        _ds(g, "indptr", M.indptr.astype(np.int64))
        _ds(g, "shape", np.array(M.shape, dtype=np.int32))
        feat = g.create_group("features")
        _ds(feat, "_all_tag_keys", np.array([b"genome"]))
        _ds(feat, "feature_type", np.array([feature_type] * M.shape[0], dtype="S"))
        _ds(feat, "genome", np.array([genome] * M.shape[0], dtype="S"))
        _ds(feat, "id", np.array(ids, dtype="S"))
        _ds(feat, "name", np.array(names, dtype="S"))
    return path


def _h5_v2(path: Path, X: np.ndarray, barcodes, names, ids, *, genome: str) -> Path:
    """10x HDF5 of Cell Ranger 2 (one group per genome), as the HCA preview files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    M = sparse.csc_matrix(np.asarray(X).T.astype(np.int32))
    with h5py.File(path, "w") as f:
        g = f.create_group(genome)
        _ds(g, "barcodes", np.array(barcodes, dtype="S"))
        _ds(g, "data", M.data.astype(np.int32))
        _ds(g, "gene_names", np.array(names, dtype="S"))
        _ds(g, "genes", np.array(ids, dtype="S"))
        _ds(g, "indices", M.indices.astype(np.int64))
        _ds(g, "indptr", M.indptr.astype(np.int64))
        _ds(g, "shape", np.array(M.shape, dtype=np.int32))
    return path


def _ensembl_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i + 1:011d}" for i in range(n)]


# ------------------------------------------------------------------------------------------ the applications
def _villani(rng, out: Path, key: str) -> dict:
    genes = _genes(DC_TYPES, 300, "DCG")
    rows, types, batch = [], [], []
    for b, plates in VILLANI_PLATES.items():
        for t in DC_TYPES:
            for i in range(MINIATURE_SIZES["villani_per_type_batch"]):
                plate = plates[i % len(plates)]
                rows.append(f"{t}_{plate}_{'ABCDEFGH'[i % 8]}{i % 12 + 1}")
                types.append(t)
                batch.append(b)
    mono = {"Mono": ["CD14", "LYZ", "S100A8"]}
    genes += [g for g in mono["Mono"] if g not in genes]
    for i in range(MINIATURE_SIZES["villani_monocytes"]):  # monocytes on their own plates (dropped by the reader)
        rows.append(f"Mono_P{1 + i % 2}_{'ABCDEFGH'[i % 8]}{i % 12 + 1}")
        types.append("Mono")
        batch.append("mono")
    counts = _counts(rng, genes, {**DC_TYPES, **mono}, types, base_mean=3.0, batch=batch)
    tpm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) * 1e6
    df = pd.DataFrame(tpm.T, index=pd.Index(genes, name="GENE"), columns=rows)
    _write(out / key, _gzip_bytes(df.to_csv(sep="\t", float_format="%.2f").encode()))
    n_dc = sum(t != "Mono" for t in types)
    return {"expected": {"cells": n_dc, "genes": len(genes), "labels": len(DC_TYPES)}}


def _mtx_targz(X: np.ndarray, genes, ids, barcodes) -> bytes:
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, sparse.coo_matrix(np.asarray(X).T), field="integer")
    folder = "filtered_gene_bc_matrices/hg19"
    return _targz({f"{folder}/matrix.mtx": buf.getvalue(),
                   f"{folder}/genes.tsv": "".join(f"{i}\t{g}\n" for i, g in zip(ids, genes)).encode(),
                   f"{folder}/barcodes.tsv": "".join(f"{b}\n" for b in barcodes).encode()})


def _cell_lines(rng, out: Path, keys: Mapping[str, str], min_genes: int = 600) -> dict:
    lines = {"293t": [f"L293G{i:03d}" for i in range(40)], "jurkat": ["CD3E", "CD3D", "LCK", "CD2"]
             + [f"LJURG{i:03d}" for i in range(36)]}
    genes = _genes(lines, 900, "CLG")
    ids = _ensembl_ids("ENSG", len(genes))
    n = MINIATURE_SIZES["cell_line"]
    parts = {"t293": ["293t"] * n, "jurkat": ["jurkat"] * (n + 4),
             "mixture": list(rng.permutation(["293t"] * (n // 2) + ["jurkat"] * (n // 2 + 2)))}
    recs, labels = {}, []
    profile = _profile(rng, genes, lines, base_mean=8.0)  # deep enough for ~800 expressed genes per cell
    for role, types in parts.items():
        X = _counts(rng, genes, lines, types, batch=[role] * len(types), batch_sd=0.3, profile=profile)
        nexp = (X > 0).sum(axis=1)
        if role == "jurkat":  # one low-quality Jurkat cell below Scanorama's filter, as the real file's one
            keep = rng.choice(np.flatnonzero(X[0] > 0), min_genes - 1, replace=False)
            low = np.zeros_like(X[0])
            low[keep] = X[0][keep]
            X[0] = low
            nexp = (X > 0).sum(axis=1)
        if (nexp[1:] < min_genes).any() or (role != "jurkat" and nexp[0] < min_genes):
            raise RuntimeError("miniature cell lines: a cell fell below the filter by chance; change the seed")
        _write(out / keys[role], _mtx_targz(X, genes, ids, _barcodes(rng, len(types))))
        labels += [t for t, k in zip(types, nexp >= min_genes) if k]
        recs[role] = {"expected": {"cells": len(types), "genes": len(genes),
                                   **({"labels": 2} if role == "mixture" else {})}}
    label_txt = ("\n".join(labels) + "\n").encode()
    # Scanorama's data.tar.gz, reduced to the label file and a neighbour (the mirror holds what the URL serves)
    _write(out / keys["labels"], _targz({"data/cell_labels/293t_jurkat_cluster.txt": label_txt,
                                         "data/cell_labels/pbmc_10x_cluster.txt": b"0\n1\n"}))
    recs["labels"] = {}
    return recs


def _gtf_and_peaks(rng, genes: list[str], chroms=("1", "2", "X")) -> tuple[bytes, list[str], dict[str, list[int]]]:
    """Ensembl GTF (gene/transcript/exon lines, chromosomes '1', ...) and peaks over the genes' windows."""
    lines = ["#!genome-build GRCh37.p13", "#!genome-version GRCh37", "#!genome-date 2009-02",
             "#!genome-build-accession NCBI:GCA_000001405.14", "#!genebuild-last-updated 2013-09"]
    peaks, gene_peaks = [], {}
    pos = {c: 100_000 for c in chroms}
    for i, g in enumerate(genes):
        c = chroms[i % len(chroms)]
        start = pos[c] + int(rng.integers(5_000, 20_000))
        end = start + int(rng.integers(2_000, 30_000))
        pos[c] = end
        strand = "+" if rng.random() < 0.5 else "-"
        gid = f"ENSG{i + 1:011d}"
        attrs = f'gene_id "{gid}"; gene_version "1"; gene_name "{g}"; gene_source "ensembl_havana"; ' \
                f'gene_biotype "protein_coding";'
        tattrs = attrs + f' transcript_id "ENST{i + 1:011d}"; transcript_version "1";'
        lines.append(f"{c}\tensembl_havana\tgene\t{start}\t{end}\t.\t{strand}\t.\t{attrs}")
        lines.append(f"{c}\tensembl_havana\ttranscript\t{start}\t{end}\t.\t{strand}\t.\t{tattrs}")
        lines.append(f"{c}\tensembl_havana\texon\t{start}\t{min(end, start + 500)}\t.\t{strand}\t.\t{tattrs} "
                     'exon_number "1";')
        tss = start if strand == "+" else end
        gene_peaks[g] = []
        for centre in (tss, int(rng.integers(start, end))):  # a promoter peak and one in the gene body
            a = max(1, centre - int(rng.integers(200, 600)))
            gene_peaks[g].append(len(peaks))
            peaks.append((c, a, a + int(rng.integers(300, 1200))))
        if rng.random() < 0.3:  # intergenic peak
            a = end + int(rng.integers(3_000, 4_000))
            peaks.append((c, a, a + 400))
    order = sorted(range(len(peaks)), key=lambda k: (chroms.index(peaks[k][0]), peaks[k][1]))
    rank = {old: new for new, old in enumerate(order)}
    names = [f"chr{peaks[k][0]}:{peaks[k][1]}-{peaks[k][2]}" for k in order]
    gene_peaks = {g: [rank[k] for k in ks] for g, ks in gene_peaks.items()}
    return _gzip_bytes(("\n".join(lines) + "\n").encode()), names, gene_peaks


def _pbmc(rng, out: Path, keys: Mapping[str, str], threshold: int = 5000) -> dict:
    genes = _genes(PBMC_TYPES, HUMAN_FILLER, "PBG")
    types = [t for t in PBMC_TYPES for _ in range(MINIATURE_SIZES["pbmc_per_type"])]
    X = _counts(rng, genes, PBMC_TYPES, types, base_mean=0.5, depth=2.0)
    _h5_v3(out / keys["rna"], X, _barcodes(rng, len(types)), genes, _ensembl_ids("ENSG", len(genes)),
           feature_type="Gene Expression", genome="GRCh38")
    gtf, peaks, gene_peaks = _gtf_and_peaks(rng, genes)
    _write(out / keys["gtf"], gtf)
    # nuclei: accessibility of each type's programme genes raised; totals on both sides of the threshold
    n = MINIATURE_SIZES["atac_nuclei"]
    ntypes = list(PBMC_TYPES)
    atac_types = [ntypes[i % len(ntypes)] for i in range(n)]
    base = rng.gamma(1.0, 1.0, len(peaks))
    totals = rng.integers(threshold + 200, 3 * threshold, n)
    totals[:6] = [threshold, threshold - 1, threshold + 1, threshold // 2, 1_000, threshold]  # edge nuclei
    A = np.zeros((n, len(peaks)), dtype=np.int64)
    for i, t in enumerate(atac_types):
        p = base.copy()
        for g in PBMC_TYPES[t]:
            p[gene_peaks[g]] *= 15
        A[i] = rng.multinomial(int(totals[i]), p / p.sum())
    _h5_v3(out / keys["atac"], A, _barcodes(rng, n), peaks, peaks, feature_type="Peaks", genome="hg19")
    return {"rna": {"expected": {"cells": len(types), "genes": len(genes)}},
            "atac": {"expected": {"cells": int((A.sum(axis=1) > threshold).sum()), "genes": len(peaks)}},
            "gtf": {}}


def _hex_spots(rng, n: int) -> pd.DataFrame:
    """Visium array coordinates (row 0-77, even/odd columns alternate by row) of an n-spot tissue patch plus
    off-tissue spots, with full-resolution pixel positions."""
    rows, cols = np.meshgrid(np.arange(78), np.arange(128), indexing="ij")
    ok = (rows % 2) == (cols % 2)
    rows, cols = rows[ok], cols[ok]
    centre = np.array([39, 64])
    d = np.hypot(rows - centre[0], (cols - centre[1]) / 2)
    order = np.argsort(d + rng.random(len(d)) * 0.01)
    on, off = order[:n], order[n:n + n // 4]
    sel = np.concatenate([on, off])
    return pd.DataFrame({"in_tissue": [1] * len(on) + [0] * len(off), "array_row": rows[sel], "array_col": cols[sel],
                         "pxl_row_in_fullres": (rows[sel] * 137.0 + 1500).astype(int),
                         "pxl_col_in_fullres": (cols[sel] * 79.1 + 1200).astype(int)})


def _png(rng, size: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    buf = io.BytesIO()
    img = np.clip(0.85 - 0.3 * rng.random((size, size, 3)), 0, 1)
    mpimg.imsave(buf, img, format="png", metadata={"Software": None})
    return buf.getvalue()


def _spatial(rng, out: Path, keys: Mapping[str, str]) -> dict:
    genes = _genes(MOUSE_TYPES, MOUSE_FILLER, "Gm")
    ids = _ensembl_ids("ENSMUSG", len(genes))
    layers = ["L2/3 IT", "L4", "L5 PT", "L6 CT"]
    recs = {}
    # one gene profile for spots and reference (the same tissue), spots a mixture of types by cortical depth
    ref_types = [t for t in MOUSE_TYPES for _ in range(MINIATURE_SIZES["allen_per_type"])]
    junk = ["Low Quality", "Batch Grouping", "Doublet", "High Intronic", ""]
    profile = _profile(rng, genes, {**MOUSE_TYPES, **{j: [] for j in junk}}, base_mean=0.6)
    per_type = np.array([profile[0] * profile[1][t] for t in MOUSE_TYPES])
    for sec in ("anterior", "posterior"):
        pos = _hex_spots(rng, MINIATURE_SIZES["spots"])
        pos.insert(0, "barcode", _barcodes(rng, len(pos)))
        tissue = pos[pos["in_tissue"] == 1]
        depth = (tissue["array_row"] - tissue["array_row"].min()) / max(1, np.ptp(tissue["array_row"]))
        X = np.zeros((len(tissue), len(genes)), dtype=np.int64)
        for i, dep in enumerate(depth.to_numpy()):
            w = np.array([np.exp(-((dep - k / 3) ** 2) / 0.03) for k in range(len(layers))])
            w = np.concatenate([w, [0.3] * (len(MOUSE_TYPES) - len(layers))])
            mix = (w / w.sum()) @ per_type
            X[i] = rng.poisson(mix * 6 * rng.lognormal(0, 0.2) * (1.3 if sec == "posterior" else 1.0))
        _h5_v3(out / keys[sec], X, tissue["barcode"], genes, ids, feature_type="Gene Expression", genome="mm10")
        scale = {"spot_diameter_fullres": 89.4, "tissue_hires_scalef": 0.17, "fiducial_diameter_fullres": 144.4,
                 "tissue_lowres_scalef": 0.051}
        _write(out / keys[f"{sec}_spatial"], _targz({
            "spatial/tissue_positions_list.csv": pos.to_csv(header=False, index=False).encode(),
            "spatial/scalefactors_json.json": json.dumps(scale).encode(),
            "spatial/tissue_hires_image.png": _png(rng, 64),
            "spatial/tissue_lowres_image.png": _png(rng, 24),
        }))
        recs[sec] = {"expected": {"cells": len(tissue), "genes": len(genes)}}
        recs[f"{sec}_spatial"] = {}
    # Allen reference: counts of typed cells plus non-cell classes; metadata with extra rows
    all_types = ref_types + junk * 2
    R = _counts(rng, genes, None, all_types, depth=6.0, batch=["smartseq"] * len(all_types), batch_sd=0.6,
                profile=profile)
    cells = [f"SM-{''.join(rng.choice(list('ABCDEFGHJKLMNPQRSTUVWXYZ23456789'), 5))}_S{i % 96 + 1:02d}_E1-50"
             for i in range(len(all_types))]
    counts = pd.DataFrame(R.T, index=pd.Index(genes, name=""), columns=cells)
    _write(out / keys["reference"], _gzip_bytes(counts.to_csv().encode()))
    extra = [f"SM-XTRA{i}_S01_E1-50" for i in range(6)]  # metadata rows of cells not in the counts table
    meta = pd.DataFrame({
        "sample_name": cells + extra, "title": cells + extra, "source_name": "Mouse VISp",
        "organism": "Mus musculus", "donor_sex": "F",
        "cell_class": [ALLEN_CLASS.get(t, "Low Quality" if t else "") for t in all_types] + ["No Class"] * 6,
        "cell_subclass": all_types + ["No Class"] * 6,
        "cell_cluster": [f"{t} {i % 3}" if t else "" for i, t in enumerate(all_types)] + ["No Class"] * 6,
    })
    _write(out / keys["reference_metadata"], _gzip_bytes(meta.to_csv(index=False).encode()))
    recs["reference"] = {"expected": {"cells": len(ref_types), "genes": len(genes), "labels": len(MOUSE_TYPES)}}
    recs["reference_metadata"] = {}
    return recs


def _hca(rng, out: Path, keys: Mapping[str, str]) -> dict:
    genes = _genes(HCA_TYPES, HUMAN_FILLER // 2, "HCG")
    ids = _ensembl_ids("ENSG", len(genes))
    recs = {}
    for role, donors in (("cord_blood", ["MantonCB1", "MantonCB2"]), ("bone_marrow", ["MantonBM1", "MantonBM2"])):
        types = [t for t in HCA_TYPES for _ in range(MINIATURE_SIZES["hca_per_type"])]
        if role == "cord_blood":
            types = [t for t in types if t != "Erythroid"] + ["Erythroid"] * 4
        donor = [donors[i % 2] for i in range(len(types))]
        X = _counts(rng, genes, HCA_TYPES, types, base_mean=0.5, depth=1.5, batch=[role] * len(types))
        bcs = [f"{d}_HiSeq_{1 + i % 8}-{b}" for i, (d, b) in enumerate(zip(donor, _barcodes(rng, len(types))))]
        _h5_v2(out / keys[role], X, bcs, genes, ids, genome="GRCh38")
        recs[role] = {"expected": {"cells": len(types), "genes": len(genes)}}
    return recs


# ---------------------------------------------------------------------------------------------------- API
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_miniature(out: str | os.PathLike, sources: str | os.PathLike | Mapping[str, Any], *, seed: int = 0
                    ) -> dict[str, dict[str, Any]]:
    """Write the miniature of every file of the data table ``sources`` under ``out/<dataset>/<file>``.

    Returns ``{key: {sha256, size, expected?}}`` (``expected`` as the readers will observe the miniature).
    Raises when the data table has a file the generator does not know (the miniature must cover the table).
    """
    from .download import load_sources

    table = load_sources(sources)
    out = Path(out)
    rng = np.random.default_rng(seed)

    def key(name: str) -> str:
        hits = [k for k in table if Path(k).name == name or k.endswith("/" + name)]
        if len(hits) != 1:
            raise ValueError(f"the data table has {len(hits)} entries named {name!r}; the miniature knows the "
                             "paper's files only (update davae_study.data.miniature with the table)")
        return hits[0]

    groups = [
        (_villani, "villani", {"matrix": "GSE94820_raw.expMatrix_DCnMono.discovery.set.submission.txt.gz"}),
        (_cell_lines, "cell_lines", {"t293": "293t_filtered_gene_bc_matrices.tar.gz",
                                     "jurkat": "jurkat_filtered_gene_bc_matrices.tar.gz",
                                     "mixture": "jurkat_293t_50_50_filtered_gene_bc_matrices.tar.gz",
                                     "labels": "293t_jurkat_cluster.txt"}),
        (_pbmc, "pbmc", {"rna": "pbmc_10k_v3_filtered_feature_bc_matrix.h5",
                         "atac": "atac_v1_pbmc_10k_filtered_peak_bc_matrix.h5",
                         "gtf": next(Path(k).name for k in table if k.startswith("reference/") and "gtf" in k)}),
        (_spatial, "spatial", {"anterior": "V1_Mouse_Brain_Sagittal_Anterior_filtered_feature_bc_matrix.h5",
                               "anterior_spatial": "V1_Mouse_Brain_Sagittal_Anterior_spatial.tar.gz",
                               "posterior": "V1_Mouse_Brain_Sagittal_Posterior_filtered_feature_bc_matrix.h5",
                               "posterior_spatial": "V1_Mouse_Brain_Sagittal_Posterior_spatial.tar.gz",
                               "reference": "GSE115746_cells_exon_counts.csv.gz",
                               "reference_metadata": "GSE115746_complete_metadata_28706-cells.csv.gz"}),
        (_hca, "hca", {"cord_blood": "ica_cord_blood_h5.h5", "bone_marrow": "ica_bone_marrow_h5.h5"}),
    ]
    records: dict[str, dict[str, Any]] = {}
    for fn, _, roles in groups:
        keys = {role: key(name) for role, name in roles.items()}
        if fn is _villani:
            recs = {"matrix": fn(rng, out, keys["matrix"])}
        else:
            recs = fn(rng, out, keys)
        for role, rec in recs.items():
            p = out / keys[role]
            records[keys[role]] = {"sha256": _sha256(p), "size": p.stat().st_size, **rec}
    missing = sorted(set(table) - set(records))
    if missing:
        raise ValueError(f"the miniature does not cover {missing}; add them to davae_study.data.miniature")
    return records


def miniature_sources(sources: str | os.PathLike | Mapping[str, Any], records: Mapping[str, Mapping[str, Any]]
                      ) -> dict[str, dict[str, Any]]:
    """The data table for the miniature: the real table's keys, URLs and ``extract``; the miniature's sha256
    where the real table pins one (so pinned checksums are enforced), ``null`` elsewhere (learnt into the
    lock file on first download, as for the real data); the miniature's shapes as ``expected``."""
    from .download import load_sources

    out = {}
    for k, entry in load_sources(sources).items():
        rec = records[k]
        row = {"url": entry["url"], "sha256": rec["sha256"] if entry.get("sha256") else None}
        if entry.get("extract"):
            row["extract"] = entry["extract"]
        if rec.get("expected"):
            row["expected"] = dict(rec["expected"])
        row["verified"] = "miniature (davae_study.data.miniature)"
        out[k] = row
    return {"files": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write a format-faithful miniature of the paper's input files.")
    ap.add_argument("out", help="folder to write <dataset>/<file> and data_sources.yaml into")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", default="config/data_sources.yaml", help="the real data table")
    args = ap.parse_args(argv)
    records = write_miniature(args.out, args.sources, seed=args.seed)
    table = miniature_sources(args.sources, records)
    path = Path(args.out, "data_sources.yaml")
    path.write_text("# data table of the miniature written by davae_study.data.miniature\n"
                    + yaml.safe_dump(table, sort_keys=False))
    print(f"{len(records)} files, {sum(r['size'] for r in records.values())} bytes under {args.out}; table {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
