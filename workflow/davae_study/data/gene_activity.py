"""Gene activity of scATAC cells from a peak count matrix and a GTF, in pure numpy/pandas/scipy.

The activity of gene g in cell c is the sum of the counts of c over every peak that overlaps g's body
extended by ``upstream`` bases on the 5' side (strand aware): ``[start - upstream, end]`` on the ``+``
strand, ``[start, end + upstream]`` on the ``-`` strand. This is the definition of Seurat v3's
``CreateGeneActivityMatrix(upstream = 2000)`` used by the paper's source pipeline. Coordinates are
compared as closed intervals exactly as written (GTF: 1-based closed; peak names ``chr:start-end`` taken
as written, as Seurat does), so a peak that touches a window in one base counts. A peak overlapping several
genes counts for each of them; GTF records sharing a gene name are merged (a peak counts once per name).
"""

from __future__ import annotations

import gzip
import os
import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["read_gtf_genes", "parse_peaks", "gene_windows", "peak_gene_overlaps", "gene_activity",
           "DEFAULT_SEQ_LEVELS"]

DEFAULT_SEQ_LEVELS: tuple[str, ...] = tuple([str(i) for i in range(1, 23)] + ["X", "Y"])

_ATTR = re.compile(r'(\S+)\s+"([^"]*)"')


def _norm_chrom(chrom: pd.Series | np.ndarray) -> np.ndarray:
    """Drop a leading 'chr' (UCSC/GENCODE vs Ensembl naming) and map 'M' to 'MT'."""
    s = pd.Series(np.asarray(chrom, dtype=str)).str.replace(r"^chr", "", regex=True)
    return s.where(s != "M", "MT").to_numpy()


def read_gtf_genes(
    path: str | os.PathLike,
    *,
    feature: str = "gene",
    gene_biotypes: Sequence[str] | None = None,
    seq_levels: Iterable[str] | None = DEFAULT_SEQ_LEVELS,
) -> pd.DataFrame:
    """Gene records of a (gzipped) GTF as a table ``chrom, start, end, strand, gene_id, gene_name, gene_type``.

    ``chrom`` is normalised (no ``chr`` prefix). ``gene_biotypes`` keeps only those ``gene_type``/
    ``gene_biotype`` values (``None``: all); ``seq_levels`` keeps those chromosomes (``None``: all).
    Records without a ``gene_name`` use their ``gene_id``.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) < 9:
                raise ValueError(f"{path}: not a GTF (a line has {len(f)} tab-separated fields, 9 expected)")
            if f[2] != feature:
                continue
            attrs = dict(_ATTR.findall(f[8]))
            gid = attrs.get("gene_id", "")
            rows.append((f[0], int(f[3]), int(f[4]), f[6], gid, attrs.get("gene_name", gid),
                         attrs.get("gene_type", attrs.get("gene_biotype", ""))))
    genes = pd.DataFrame(rows, columns=["chrom", "start", "end", "strand", "gene_id", "gene_name", "gene_type"])
    if genes.empty:
        raise ValueError(f"{path}: no '{feature}' records; is this a GTF of genes?")
    genes["chrom"] = _norm_chrom(genes["chrom"])
    if seq_levels is not None:
        genes = genes[genes["chrom"].isin(list(seq_levels))]
    if gene_biotypes is not None:
        genes = genes[genes["gene_type"].isin(list(gene_biotypes))]
    return genes.reset_index(drop=True)


def parse_peaks(names: Sequence[str]) -> pd.DataFrame:
    """Parse peak names ``chr1:100-200`` / ``chr1-100-200`` / ``chr1_100_200`` into ``chrom, start, end``."""
    s = pd.Series(np.asarray(names, dtype=str))
    parts = s.str.extract(r"^(.+?)[:_-](\d+)[_-](\d+)$")
    bad = parts[0].isna()
    if bad.any():
        raise ValueError(f"cannot parse peak name {s[bad].iloc[0]!r}; expected 'chr:start-end'")
    return pd.DataFrame({"chrom": _norm_chrom(parts[0]), "start": parts[1].astype(np.int64).to_numpy(),
                         "end": parts[2].astype(np.int64).to_numpy()})


def gene_windows(genes: pd.DataFrame, upstream: int = 2000) -> pd.DataFrame:
    """Gene body plus ``upstream`` bases on the 5' side (strand aware); start clipped at 1."""
    if upstream < 0:
        raise ValueError("upstream must be >= 0")
    if not genes["strand"].isin(["+", "-"]).all():
        raise ValueError("every gene needs strand '+' or '-' for a strand-aware upstream window")
    w = genes.copy()
    plus = (w["strand"] == "+").to_numpy()
    w["start"] = np.where(plus, w["start"] - upstream, w["start"]).clip(min=1)
    w["end"] = np.where(plus, w["end"], w["end"] + upstream)
    return w


def peak_gene_overlaps(peaks: pd.DataFrame, windows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """All ``(peak_index, window_index)`` pairs whose closed intervals overlap, per chromosome.

    Windows are sorted by start; for each peak the candidates are the windows with
    ``start in [peak.start - max_len, peak.end]``, then filtered by ``window.end >= peak.start``.
    """
    p_idx, w_idx = [], []
    for chrom, wsub in windows.groupby("chrom", sort=False):
        psel = np.flatnonzero(peaks["chrom"].to_numpy() == chrom)
        if psel.size == 0:
            continue
        order = np.argsort(wsub["start"].to_numpy(), kind="stable")
        ws = wsub["start"].to_numpy()[order]
        we = wsub["end"].to_numpy()[order]
        wid = wsub.index.to_numpy()[order]
        max_len = int((we - ws).max())
        ps = peaks["start"].to_numpy()[psel]
        pe = peaks["end"].to_numpy()[psel]
        lo = np.searchsorted(ws, ps - max_len, side="left")
        hi = np.searchsorted(ws, pe, side="right")
        n = hi - lo
        if n.sum() == 0:
            continue
        rep_p = np.repeat(np.arange(psel.size), n)
        cand = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(n.sum())
        keep = we[cand] >= ps[rep_p]
        p_idx.append(psel[rep_p[keep]])
        w_idx.append(wid[cand[keep]])
    if not p_idx:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(p_idx), np.concatenate(w_idx)


def gene_activity(
    counts: sparse.spmatrix | np.ndarray,
    peak_names: Sequence[str],
    genes: pd.DataFrame,
    *,
    upstream: int = 2000,
) -> tuple[sparse.csr_matrix, pd.Index, dict]:
    """Cells x genes activity: summed peak counts over each gene body + ``upstream`` (strand aware).

    Parameters
    ----------
    counts
        Cells x peaks counts (sparse stays sparse).
    peak_names
        One ``chr:start-end`` name per column of ``counts``.
    genes
        Output of :func:`read_gtf_genes` (``chrom, start, end, strand, gene_name``).
    upstream
        Bases added on the 5' side of each gene (2,000 in the paper).

    Returns
    -------
    activity
        CSR cells x genes (dtype of ``counts``, float32 if integer-free); genes with no peak are kept (zeros).
    gene_names
        Unique gene names, in order of first appearance in ``genes``.
    stats
        ``n_peaks``, ``n_peaks_in_windows`` and ``frac_peaks_in_windows`` (a low fraction, e.g. < 0.2, hints
        at a GTF of the wrong genome build or chromosome naming).
    """
    counts = sparse.csr_matrix(counts)
    if counts.shape[1] != len(peak_names):
        raise ValueError(f"counts has {counts.shape[1]} peak columns but {len(peak_names)} peak names")
    peaks = parse_peaks(peak_names)
    windows = gene_windows(genes.reset_index(drop=True), upstream)
    names = pd.Index(pd.unique(windows["gene_name"].to_numpy()))
    gene_col = names.get_indexer(windows["gene_name"].to_numpy())
    p, w = peak_gene_overlaps(peaks, windows)
    # peak x gene-name incidence, binary: a peak counts once per gene name even if two records overlap it
    inc = sparse.csr_matrix((np.ones(p.size, dtype=np.float32), (p, gene_col[w])),
                            shape=(len(peaks), len(names)))
    inc.data[:] = 1.0
    inc.sum_duplicates()
    inc.data = np.minimum(inc.data, 1.0)
    dtype = counts.dtype if np.issubdtype(counts.dtype, np.floating) else np.float32
    act = (counts.astype(dtype) @ inc.astype(dtype)).tocsr()
    n_in = int(np.unique(p).size)
    stats = {"n_peaks": int(len(peaks)), "n_peaks_in_windows": n_in,
             "frac_peaks_in_windows": n_in / max(len(peaks), 1), "upstream": int(upstream)}
    return act, names, stats
