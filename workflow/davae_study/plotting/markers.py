"""Marker-gene figures over clusters (Fig 6c–e): stacked violins and a dot plot, plus a reader that takes only
the marker columns out of a large ``.h5ad`` without loading the whole matrix (HCA: 762k cells).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import anndata as ad
import h5py
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.lines import Line2D

from ..genes import find_genes as _find_genes
from .style import FULL_WIDTH, MAX_HEIGHT, category_colors, figure_style, natural_key, save_figure, suptitle

__all__ = ["read_genes", "marker_dotplot", "marker_violins", "group_expression"]


def read_genes(path: str | os.PathLike, genes: Sequence[str], *, layer: str | None = None,
               chunk_rows: int = 50_000) -> ad.AnnData:
    """Read only ``genes`` (and obs) from an ``.h5ad``, streaming the matrix in row chunks.

    Memory stays at one chunk of the (sparse) matrix plus the ``n_cells × len(genes)`` result, so marker
    figures of the 762k-cell HCA set need neither the whole matrix nor an integrated object.

    Parameters
    ----------
    path
        An ``.h5ad`` (e.g. ``markers.h5ad``: log-normalised ``X`` of the marker genes, or ``prepared.h5ad``).
    genes
        Gene names; those absent are skipped (the figures say so). Matched exactly, then case-insensitively,
        then against ``var['symbol']``.
    layer
        Read ``layers[layer]`` instead of ``X``.

    Returns
    -------
    AnnData with the found genes (in the order asked) as a dense float32 ``X``, and the file's ``obs``.
    """
    from anndata.io import read_elem, sparse_dataset

    with h5py.File(path, "r") as f:
        obs = read_elem(f["obs"])
        var = read_elem(f["var"])
        if layer is not None:
            if "layers" not in f or layer not in f["layers"]:
                raise ValueError(f"{path} has no layer {layer!r}; use layer=None for X")
            elem = f["layers"][layer]
        else:
            elem = f["X"]
        found = _find_genes(var.index, genes, var["symbol"] if "symbol" in var else None)
        cols = np.array(list(found.values()), dtype=int)
        n = obs.shape[0]
        out = np.zeros((n, len(cols)), dtype=np.float32)
        if len(cols):
            mat = sparse_dataset(elem) if isinstance(elem, h5py.Group) else elem
            for start in range(0, n, chunk_rows):
                stop = min(start + chunk_rows, n)
                block = mat[start:stop]
                block = block[:, cols]
                out[start:stop] = block.toarray() if sp.issparse(block) else np.asarray(block)
    return ad.AnnData(X=out, obs=obs, var=pd.DataFrame(index=pd.Index(list(found), name="gene")))


def _groups(adata: ad.AnnData, groupby: str | pd.Series) -> pd.Series:
    if isinstance(groupby, str):
        if groupby not in adata.obs:
            raise ValueError(f"obs has no column {groupby!r}; pass groupby= one of {list(adata.obs.columns)[:10]} "
                             "or a Series of cluster labels indexed by cell")
        g = adata.obs[groupby]
    else:
        g = pd.Series(groupby)
        g.index = g.index.astype(str)
        g = g.reindex(adata.obs_names.astype(str))
    g = pd.Series(np.asarray(g, dtype=object), index=adata.obs_names.astype(str))
    if g.isna().all():
        raise ValueError("no cell has a group label; the clusters table and the expression have no cells in common")
    return g.map(lambda v: v if pd.isna(v) else str(v))


def group_expression(adata: ad.AnnData, genes: Sequence[str], groupby: str | pd.Series,
                     layer: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Mean expression and fraction of cells with expression > 0, per group (rows) and gene (columns).

    Genes absent from ``adata`` are dropped (a ValueError if none is present). Returns ``(mean, fraction,
    groups)`` with groups in natural order and the per-cell group labels.
    """
    found = _find_genes(adata.var_names, genes, adata.var["symbol"] if "symbol" in adata.var else None)
    if not found:
        raise ValueError(f"none of the markers {list(genes)} is in the data; check the gene names (symbols?)")
    g = _groups(adata, groupby)
    keep = g.notna().to_numpy()
    m = adata.layers[layer] if layer else adata.X
    x = m[:, list(found.values())]
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    x = pd.DataFrame(x[keep], columns=list(found), index=g.index[keep])
    labels = g[keep]
    order = sorted(labels.unique(), key=natural_key)
    mean = x.groupby(labels.to_numpy()).mean().reindex(order)
    frac = (x > 0).groupby(labels.to_numpy()).mean().reindex(order)
    return mean, frac, labels


def marker_dotplot(
    adata: ad.AnnData,
    markers: Sequence[str],
    groupby: str | pd.Series,
    out_png: str | os.PathLike,
    *,
    layer: str | None = None,
    title: str | None = None,
    group_label: str = "cluster",
):
    """Fig 6e: dot plot of marker genes (columns) over clusters (rows).

    Dot area: fraction of the cluster's cells with expression > 0; colour: mean expression scaled to
    [0, 1] per gene across clusters (scanpy's ``standard_scale='var'``). Markers absent from the data are
    listed under the plot.
    """
    mean, frac, _ = group_expression(adata, markers, groupby, layer)
    absent = [g for g in markers if g not in mean.columns]
    rng = (mean.max() - mean.min()).replace(0, np.nan)
    scaled = ((mean - mean.min()) / rng).fillna(0.0)
    ng, nm = len(mean), len(mean.columns)
    label_w = 0.35 + 0.055 * max(len(str(i)) for i in mean.index)
    cell = min(0.3, (FULL_WIDTH - label_w - 1.1) / nm)
    head_h = 0.15 + 0.055 * max(len(g) for g in mean.columns)
    title_h = 0.3 if title else 0.05
    foot_h = 0.25 if absent else 0.08
    fig_w = label_w + cell * nm + 1.1
    fig_h = min(head_h + title_h + foot_h + cell * ng, MAX_HEIGHT)
    smax = (cell * 72 * 0.9) ** 2  # area of a full dot in pt²
    with figure_style():
        fig = plt.figure(figsize=(fig_w, fig_h))
        ax = fig.add_axes([label_w / fig_w, foot_h / fig_h, cell * nm / fig_w,
                           (fig_h - head_h - title_h - foot_h) / fig_h])
        yy, xx = np.meshgrid(np.arange(ng), np.arange(nm), indexing="ij")
        sc = ax.scatter(xx.ravel(), yy.ravel(), s=frac.to_numpy().ravel() * smax, c=scaled.to_numpy().ravel(),
                        cmap="Reds", vmin=0, vmax=1, edgecolors="0.3", linewidths=0.3)
        ax.set_xlim(-0.5, nm - 0.5)
        ax.set_ylim(ng - 0.5, -0.5)
        ax.set_xticks(range(nm))
        ax.set_xticklabels(mean.columns, rotation=90, fontstyle="italic")
        ax.xaxis.tick_top()
        ax.set_yticks(range(ng))
        ax.set_yticklabels(mean.index)
        ax.set_ylabel(group_label)
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(True)
            s.set_linewidth(0.4)
        ax.grid(True, lw=0.3, color="0.93")
        ax.set_axisbelow(True)
        # legends: colour bar and dot sizes, in the right margin
        x0 = (label_w + cell * nm + 0.2) / fig_w
        cax = fig.add_axes([x0, 0.55, 0.1 / fig_w, min(0.3, 0.9 / fig_h)])
        cb = fig.colorbar(sc, cax=cax)
        cb.set_label("mean expression\n(scaled per gene)", fontsize=5.5)
        cb.ax.tick_params(labelsize=5, length=1.5)
        cb.outline.set_linewidth(0.4)
        handles = [Line2D([], [], marker="o", ls="", color="0.5", markeredgecolor="0.3", markeredgewidth=0.3,
                          markersize=math.sqrt(f * smax), label=f"{int(f * 100)}%") for f in (0.1, 0.5, 1.0)]
        fig.legend(handles=handles, title="cells > 0", loc="upper left", bbox_to_anchor=(x0 - 0.01, 0.45),
                   labelspacing=1.6, handletextpad=0.8, borderaxespad=0, borderpad=0.8)
        if absent:
            fig.text(0.01, 0.02, "not in data: " + ", ".join(absent), fontsize=5.5, color="0.35")
        if title:
            suptitle(fig, title, y=1 - 0.04 / fig_h, va="top")
        return save_figure(fig, out_png)


def marker_violins(
    adata: ad.AnnData,
    markers: Sequence[str],
    groupby: str | pd.Series,
    out_png: str | os.PathLike,
    *,
    layer: str | None = None,
    title: str | None = None,
    max_cells_per_group: int = 1000,
    seed: int = 0,
    group_label: str = "cluster",
):
    """Fig 6c–d: stacked violins, one row per marker, one violin per cluster (cluster colours).

    Each cluster is subsampled to ``max_cells_per_group`` cells (seeded) for the density estimate, so the
    figure takes the same time at 762k cells as at 10k. A cluster whose values are all equal is drawn as a
    tick at that value.
    """
    found = _find_genes(adata.var_names, markers, adata.var["symbol"] if "symbol" in adata.var else None)
    if not found:
        raise ValueError(f"none of the markers {list(markers)} is in the data; check the gene names (symbols?)")
    g = _groups(adata, groupby)
    keep = np.flatnonzero(g.notna().to_numpy())
    labels = g.iloc[keep]
    rng = np.random.default_rng(seed)
    picked = []
    for lab, idx in pd.Series(keep).groupby(labels.to_numpy()):
        idx = idx.to_numpy()
        picked.append(idx if len(idx) <= max_cells_per_group else rng.choice(idx, max_cells_per_group, replace=False))
    rows = np.sort(np.concatenate(picked))
    m = adata.layers[layer] if layer else adata.X
    x = m[rows][:, list(found.values())]
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    lab = g.iloc[rows].to_numpy()
    order = sorted(pd.unique(lab), key=natural_key)
    colors = category_colors(order, "label")
    genes = list(found)
    absent = [m_ for m_ in markers if m_ not in found]
    row_h = 0.34
    label_w = 0.2 + 0.06 * max(len(g) for g in genes)
    fig_w = min(FULL_WIDTH, label_w + 0.1 + 0.38 * max(len(order), 6))
    title_h = 0.3 if title else 0.05
    foot_h = 0.45 + 0.05 * max(len(str(o)) for o in order) + (0.18 if absent else 0)
    fig_h = min(len(genes) * row_h + title_h + foot_h, MAX_HEIGHT)
    with figure_style():
        fig, axes = plt.subplots(len(genes), 1, figsize=(fig_w, fig_h), sharex=True, squeeze=False)
        axes = axes[:, 0]
        fig.subplots_adjust(left=label_w / fig_w, right=0.98, top=1 - title_h / fig_h, bottom=foot_h / fig_h,
                            hspace=0.08)
        for gi, (gene, ax) in enumerate(zip(genes, axes)):
            ymax = float(np.nanmax(x[:, gi])) if x.size else 1.0
            for j, grp in enumerate(order):
                v = x[lab == grp, gi]
                if v.size and np.ptp(v) > 0:
                    parts = ax.violinplot([v], positions=[j], widths=0.8, showextrema=False)
                    for b in parts["bodies"]:
                        b.set_facecolor(colors[grp])
                        b.set_edgecolor("0.25")
                        b.set_linewidth(0.3)
                        b.set_alpha(1.0)
                elif v.size:
                    ax.plot([j - 0.3, j + 0.3], [v[0], v[0]], color=colors[grp], lw=1.0)
            ax.set_ylim(0, ymax * 1.05 if ymax > 0 else 1)
            ax.set_yticks([])
            ax.text(1.0, 0.98, f"max {ymax:.1f}", transform=ax.transAxes, ha="right", va="top", fontsize=4.8,
                    color="0.45")
            ax.set_ylabel(gene, rotation=0, ha="right", va="center", fontstyle="italic", labelpad=3)
            ax.spines["bottom"].set_visible(gi == len(genes) - 1)
            ax.tick_params(axis="x", length=0 if gi < len(genes) - 1 else 2)
        axes[-1].set_xticks(range(len(order)))
        axes[-1].set_xticklabels(order, rotation=90 if max(len(str(o)) for o in order) > 3 else 0)
        axes[-1].set_xlim(-0.6, len(order) - 0.4)
        axes[-1].set_xlabel(group_label)
        if absent:
            fig.text(0.01, 0.01, "not in data: " + ", ".join(absent), fontsize=5.5, color="0.35")
        if title:
            suptitle(fig, title, y=1 - 0.04 / fig_h, va="top")
        return save_figure(fig, out_png)
