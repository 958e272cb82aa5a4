"""Accessibility near marker genes per predicted cell type (Fig 4d): aggregated peak coverage tracks.

The paper shows Signac coverage plots (fragment pileups). The study keeps the 10x filtered *peak* matrix,
not the fragment file, so each track here is the pseudo-bulk signal of every peak near the gene: the counts
of all cells predicted as one type in that peak, divided by the type's total peak counts, in counts per
million (CPM), drawn as a bar spanning the peak. Types are compared on one scale per gene.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.patches import FancyArrow, Rectangle

from .style import FULL_WIDTH, MAX_HEIGHT, category_colors, figure_style, natural_key, save_figure, suptitle

__all__ = ["aggregate_peaks", "coverage_tracks"]


def _gene_table(genes: pd.DataFrame) -> pd.DataFrame:
    need = {"chrom", "start", "end", "strand"}
    name_col = "gene_name" if "gene_name" in genes.columns else "gene" if "gene" in genes.columns else None
    missing = need - set(genes.columns)
    if missing or name_col is None:
        raise ValueError("gene annotation needs columns gene_name (or gene), chrom, start, end, strand "
                         "(davae_study.data.gene_activity.read_gtf_genes returns them)")
    g = genes.rename(columns={name_col: "gene_name"}).copy()
    g["chrom"] = g["chrom"].astype(str).str.replace(r"^chr", "", regex=True)
    return g.drop_duplicates("gene_name")


def aggregate_peaks(
    peaks: ad.AnnData,
    groups: pd.Series,
    region: tuple[str, int, int],
    *,
    min_cells: int = 20,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pseudo-bulk accessibility (CPM) of the peaks overlapping ``region`` per group.

    Parameters
    ----------
    peaks
        Cells × peaks counts (``var_names`` ``chr:start-end``; the 10x filtered peak matrix).
    groups
        Group (predicted cell type) per cell, indexed by cell; cells absent from ``peaks`` are ignored.
    region
        ``(chrom, start, end)``; ``chrom`` with or without ``chr``.
    min_cells
        Groups with fewer cells are left out (their pseudo-bulk is noise).

    Returns
    -------
    ``(peak_table, cpm)``: the overlapping peaks (``chrom, start, end``) and a groups × peaks table of CPM.
    """
    from davae_study.data.gene_activity import parse_peaks

    chrom, start, end = str(region[0]).removeprefix("chr"), int(region[1]), int(region[2])
    pk = parse_peaks(peaks.var_names)
    hit = np.flatnonzero((pk["chrom"].to_numpy() == chrom) & (pk["end"].to_numpy() >= start)
                         & (pk["start"].to_numpy() <= end))
    g = pd.Series(groups)
    g.index = g.index.astype(str)
    g = g.reindex(peaks.obs_names.astype(str))
    counts = g.value_counts()
    keep_groups = sorted(counts.index[counts >= min_cells], key=natural_key)
    x = peaks.X
    totals = np.asarray(x.sum(axis=1)).ravel()
    sub = x[:, hit]
    sub = sub.tocsr() if sp.issparse(sub) else sp.csr_matrix(np.asarray(sub))
    rows = []
    for grp in keep_groups:
        mask = (g == grp).to_numpy()
        denom = totals[mask].sum()
        num = np.asarray(sub[mask].sum(axis=0)).ravel()
        rows.append(num / denom * 1e6 if denom > 0 else np.zeros(len(hit)))
    cpm = pd.DataFrame(np.vstack(rows) if rows else np.zeros((0, len(hit))), index=keep_groups,
                       columns=peaks.var_names[hit])
    return pk.iloc[hit].reset_index(drop=True), cpm


def coverage_tracks(
    peaks: ad.AnnData,
    groups: pd.Series,
    genes: pd.DataFrame,
    markers: Sequence[str],
    out_png: str | os.PathLike,
    *,
    flank: int = 10_000,
    min_cells: int = 20,
    title: str | None = None,
    group_label: str = "predicted type",
):
    """Fig 4d: accessibility near marker genes, one column per gene and one track per predicted cell type.

    Parameters
    ----------
    peaks
        Cells × peaks counts of the scATAC cells (``var_names`` ``chr:start-end``).
    groups
        Predicted cell type per ATAC cell (``transfer/<method>.tsv`` ``predicted``, indexed by cell).
    genes
        Gene annotation (``read_gtf_genes``: ``gene_name, chrom, start, end, strand``).
    markers
        Genes to show (e.g. LYN, VCAN, CCL5, BANK1, SULF2, LDHB); one absent from the annotation gets a column
        saying so.
    flank
        Bases shown on each side of the gene body.
    min_cells
        Predicted types with fewer cells are left out.
    """
    gt = _gene_table(genes)
    markers = list(markers)
    if not markers:
        raise ValueError("coverage_tracks needs at least one marker gene")
    common = pd.Index(peaks.obs_names.astype(str)).intersection(pd.Index(pd.Series(groups).index.astype(str)))
    if not len(common):
        raise ValueError("no cell of the peak matrix has a predicted type; pass the transfer table of the same "
                         "ATAC cells (cell names must match the peak matrix's barcodes)")
    data = {}
    for gene in markers:
        row = gt[gt["gene_name"] == gene]
        if row.empty:
            data[gene] = None
            continue
        r = row.iloc[0]
        region = (r["chrom"], int(r["start"]) - flank, int(r["end"]) + flank)
        data[gene] = (r, region, *aggregate_peaks(peaks, groups, region, min_cells=min_cells))
    all_groups = sorted({gname for d in data.values() if d is not None for gname in d[3].index}, key=natural_key)
    if not all_groups:
        raise ValueError(f"no predicted type has >= {min_cells} cells; lower min_cells")
    colors = category_colors(pd.Series(groups).dropna().astype(str), "label")
    ng, nm = len(all_groups), len(markers)
    label_w = 0.15 + 0.05 * max(len(str(x)) for x in all_groups)
    track_h = 0.24
    title_h = 0.3 if title else 0.05
    head_h = 0.22
    model_h = 0.45
    fig_w = FULL_WIDTH
    foot_h = 0.32
    fig_h = min(title_h + head_h + ng * track_h + model_h + foot_h, MAX_HEIGHT)
    with figure_style():
        fig = plt.figure(figsize=(fig_w, fig_h))
        gs = fig.add_gridspec(ng + 1, nm, height_ratios=[track_h] * ng + [model_h], left=label_w / fig_w,
                              right=0.99, top=1 - (title_h + head_h) / fig_h, bottom=foot_h / fig_h,
                              hspace=0.0, wspace=0.12)
        for j, gene in enumerate(markers):
            d = data[gene]
            ax_model = fig.add_subplot(gs[ng, j])
            if d is None:
                ax0 = fig.add_subplot(gs[0:ng, j])
                ax0.axis("off")
                ax0.set_title(gene, fontstyle="italic", pad=2)
                ax0.text(0.5, 0.5, f"{gene}\nnot in annotation", ha="center", va="center", transform=ax0.transAxes,
                         fontsize=6, color="0.4")
                ax_model.axis("off")
                continue
            r, region, ptab, cpm = d
            lo, hi = region[1], region[2]
            ymax = float(cpm.to_numpy().max()) if cpm.size else 0.0
            ymax = ymax if ymax > 0 else 1.0
            for i, grp in enumerate(all_groups):
                ax = fig.add_subplot(gs[i, j])
                if i == 0:
                    ax.set_title(gene, fontstyle="italic", pad=2)
                if grp in cpm.index:
                    for (_, p), v in zip(ptab.iterrows(), cpm.loc[grp].to_numpy()):
                        s, e = max(p["start"], lo), min(p["end"], hi)
                        # peaks are ~500 bp in a ~20-60 kb window: keep each at least 0.6% of the window wide
                        w = max(e - s, 0.006 * (hi - lo))
                        ax.add_patch(Rectangle((s, 0), w, v, facecolor=colors.get(grp, "0.5"), lw=0))
                ax.set_xlim(lo, hi)
                ax.set_ylim(0, ymax * 1.05)
                ax.set_xticks([])
                ax.set_yticks([])
                for sname, spine in ax.spines.items():
                    spine.set_visible(sname == "bottom")
                    spine.set_linewidth(0.3)
                    spine.set_color("0.7")
                if j == 0:
                    ax.text(-0.03, 0.3, str(grp), transform=ax.transAxes, ha="right", va="center", fontsize=5.5,
                            color=colors.get(grp, "0.2"))
                if i == 0:
                    scale = f"0–{ymax:,.0f} CPM" if ymax >= 10 else f"0–{ymax:.2g} CPM"
                    ax.text(0.01, 0.95, scale, transform=ax.transAxes, ha="left", va="top",
                            fontsize=4.8, color="0.4")
            # gene model: body as a thick bar with its strand, window in kb
            ax_model.set_xlim(lo, hi)
            ax_model.set_ylim(-1, 1)
            ax_model.add_patch(Rectangle((r["start"], 0.05), r["end"] - r["start"], 0.5, facecolor="0.2", lw=0))
            length = (hi - lo) * 0.06
            x0 = r["end"] if r["strand"] == "+" else r["start"]
            ax_model.add_patch(FancyArrow(x0, 0.3, length if r["strand"] == "+" else -length, 0, width=0.08,
                                          head_width=0.45, head_length=length * 0.5, color="0.2", lw=0,
                                          length_includes_head=True))
            ax_model.set_yticks([])
            ax_model.set_xticks([lo, hi])
            ax_model.set_xticklabels([f"{lo / 1e6:.3f}", f"{hi / 1e6:.3f}"], fontsize=5)
            ax_model.get_xticklabels()[0].set_ha("left")
            ax_model.get_xticklabels()[-1].set_ha("right")
            for sname, spine in ax_model.spines.items():
                spine.set_visible(sname == "bottom")
            ax_model.set_xlabel(f"chr{region[0]} (Mb)", fontsize=5.5, labelpad=1)
        fig.text(0.005, 1 - (title_h + head_h * 0.2) / fig_h, group_label, fontsize=5.5, color="0.35", va="top")
        if title:
            suptitle(fig, title, y=1 - 0.04 / fig_h, va="top")
        return save_figure(fig, out_png)
