"""UMAP figures: the method × (batch, cell type) grid of Figs 2–3, UMAPs coloured by any obs column
(Figs 4a, 5a–b, 6a) and expression / gene-activity heatmaps on a UMAP (Figs 4c, 6b).

All functions read the cached 2-D coordinates (``results/<app>/umap/<method>.tsv``: ``cell, umap1, umap2``)
and ``prepared.obs``; none recomputes an embedding.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence

import anndata as ad
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .style import (
    suptitle,
    FULL_WIDTH,
    MAX_HEIGHT,
    category_colors,
    empty_panel,
    figure_style,
    method_label,
    order_methods,
    point_size,
    save_figure,
)

__all__ = ["umap_grid", "umap_by", "feature_umaps", "align_umap", "with_transferred_labels", "BATCH_LIKE_KEYS"]

#: obs columns coloured with the batch palette (everything else uses the cell-type palette).
BATCH_LIKE_KEYS = ("batch", "modality", "slice", "role", "technology", "sample")
_NA_COLOR = "#d9d9d9"
_MAX_COLS = 6


def _check_umap(df: pd.DataFrame, name: str) -> None:
    missing = {"cell", "umap1", "umap2"} - set(df.columns)
    if missing:
        raise ValueError(f"UMAP table {name!r} lacks columns {sorted(missing)}; expected cell, umap1, umap2 "
                         "(CONTRACTS: umap/<method>.tsv)")


def align_umap(umap: pd.DataFrame, obs: pd.DataFrame, name: str = "umap") -> tuple[np.ndarray, pd.DataFrame]:
    """Return the ``(n, 2)`` coordinates and the obs rows of the same cells, in the UMAP table's order.

    Raises a ValueError naming the first cells that are absent from ``obs`` (UMAP and prepared.h5ad from
    different runs).
    """
    _check_umap(umap, name)
    cells = umap["cell"].astype(str)
    index = obs.index.astype(str)
    missing = ~cells.isin(index)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} cells of UMAP {name!r} are not in obs (e.g. "
                         f"{list(cells[missing][:3])}); rerun the umap rule for this prepared.h5ad")
    sub = obs.copy()
    sub.index = index
    return umap[["umap1", "umap2"]].to_numpy(float), sub.loc[cells.to_numpy()]


def _style_embedding_axis(ax, xy: np.ndarray) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_linewidth(0.4)
        s.set_color("0.6")
        s.set_visible(True)
    if len(xy):
        lo, hi = np.nanmin(xy, 0), np.nanmax(xy, 0)
        pad = 0.04 * (hi - lo + 1e-9)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])


def _scatter_categorical(ax, xy: np.ndarray, values: pd.Series, colors: Mapping, s: float, seed: int = 0) -> None:
    """Draw unlabelled (NaN) cells in grey underneath, then the rest in a fixed random order so that no
    category is systematically drawn on top of another."""
    vals = pd.Series(values).reset_index(drop=True)
    na = vals.isna().to_numpy()
    if na.any():
        ax.scatter(xy[na, 0], xy[na, 1], s=s, c=_NA_COLOR, linewidths=0, rasterized=True)
    idx = np.flatnonzero(~na)
    idx = idx[np.random.default_rng(seed).permutation(len(idx))]
    # colour by category code (vectorised: a list of colour strings is slow for 10^5-10^6 cells)
    keys = list(colors)
    codes = pd.Categorical(vals.iloc[idx], categories=keys).codes
    table = np.array([matplotlib.colors.to_rgba(colors[k]) for k in keys] + [matplotlib.colors.to_rgba(_NA_COLOR)])
    ax.scatter(xy[idx, 0], xy[idx, 1], s=s, c=table[codes], linewidths=0, rasterized=True)


def _legend(ax, colors: Mapping, title: str, has_na: bool, na_label: str = "unlabelled", max_rows: int = 16,
            wrap: int = 20):
    title = textwrap.fill(str(title), wrap)
    handles = [Line2D([], [], marker="o", ls="", color=c, markersize=4, label=str(k)) for k, c in colors.items()]
    if has_na:
        handles.append(Line2D([], [], marker="o", ls="", color=_NA_COLOR, markersize=4, label=na_label))
    ncol = max(1, math.ceil(len(handles) / max_rows))
    ax.legend(handles=handles, title=title, loc="center left", bbox_to_anchor=(0.0, 0.5), ncol=ncol,
              handletextpad=0.1, columnspacing=0.6, borderaxespad=0.0, alignment="left")
    ax.axis("off")


def _palette_kind(key: str) -> str:
    return "batch" if key.lower() in BATCH_LIKE_KEYS else "label"


def umap_grid(
    umaps: Mapping[str, pd.DataFrame],
    obs: pd.DataFrame,
    out_png: str | os.PathLike,
    *,
    batch_key: str = "batch",
    label_key: str = "cell_type",
    title: str | None = None,
):
    """Figs 2a–e / 3a–e: one column per method, coloured by batch (upper row) and cell type (lower row).

    Parameters
    ----------
    umaps
        Method name → UMAP table (``cell, umap1, umap2``). A failed method's table has no rows and is drawn
        as an empty panel saying so. Methods are shown in the paper's order (RAW, DAVAE, Scanorama, DESC,
        then the others); more than six wrap onto further row pairs.
    obs
        ``prepared.obs``, indexed by cell, with ``batch_key`` and (optionally) ``label_key``.
    out_png
        Output PNG; the PDF is written beside it.
    batch_key, label_key
        obs columns for the two rows. A missing ``label_key`` (unlabelled application) drops the second row.
    title
        Figure title (e.g. the application).
    """
    if not umaps:
        raise ValueError("umap_grid needs at least one method's UMAP table")
    if batch_key not in obs:
        raise ValueError(f"obs has no column {batch_key!r}; pass batch_key= one of {list(obs.columns)[:8]}")
    rows = [(batch_key, "batch")] + ([(label_key, "cell type")] if label_key and label_key in obs else [])
    methods = order_methods(umaps)
    ncols = min(len(methods), _MAX_COLS)
    nblocks = math.ceil(len(methods) / ncols)
    colors = {key: category_colors(obs[key], kind) for key, kind in
              ((k, _palette_kind(k) if k != label_key else "label") for k, _ in rows)}
    has_na = {key: bool(obs[key].isna().any()) for key, _ in rows}
    # legend column: one legend per row kind, stacked; as many columns as the height allows
    row_h_in = 0.135  # one legend entry at 6 pt
    first_w = (FULL_WIDTH - 1.45) / ncols
    avail_rows = max(4, int(min(first_w, 1.9) * len(rows) * nblocks / row_h_in) - 2 * len(rows))
    entries = {key: len(colors[key]) + has_na[key] for key, _ in rows}
    label_ncol = max(1, math.ceil(sum(entries.values()) / avail_rows))
    longest = max((len(str(c)) for key, _ in rows for c in colors[key]), default=6)
    legend_w = max(1.2, 0.3 + label_ncol * (0.25 + 0.052 * min(longest, 24)))
    panel = min((FULL_WIDTH - legend_w) / ncols, 1.9)
    fig_w = panel * ncols + legend_w
    wrap = max(8, int(panel * 14))
    labels = {m: textwrap.fill(method_label(m), wrap) for m in methods}
    head_lines = max(lab.count("\n") + 1 for lab in labels.values())
    head_h = 0.06 + 0.13 * head_lines
    title_h = (0.22 if title else 0.0) + head_h
    fig_h = min(panel * len(rows) * nblocks + head_h * (nblocks - 1) + 0.06 * nblocks + title_h, MAX_HEIGHT)

    with figure_style():
        fig = plt.figure(figsize=(fig_w, fig_h))
        top = 1 - title_h / fig_h
        gs = fig.add_gridspec(len(rows) * nblocks, ncols + 1, left=0.03, right=0.995, bottom=0.01, top=top,
                              width_ratios=[panel] * ncols + [legend_w],
                              hspace=0.12 + (head_h / panel) * (nblocks > 1) / 2, wspace=0.05)
        for m_i, method in enumerate(methods):
            block, col = divmod(m_i, ncols)
            df = umaps[method]
            _check_umap(df, method)
            if len(df):
                xy, sub = align_umap(df, obs, method)
            for r_i, (key, row_name) in enumerate(rows):
                ax = fig.add_subplot(gs[block * len(rows) + r_i, col])
                if r_i == 0:
                    ax.set_title(labels[method], pad=2, fontweight="bold")
                if not len(df):
                    empty_panel(ax, f"{labels[method]}\nfailed", frame=True)
                    ax.yaxis.set_visible(True)
                else:
                    _scatter_categorical(ax, xy, sub[key], colors[key], point_size(len(df), panel))
                    _style_embedding_axis(ax, xy)
                if col == 0:
                    ax.set_ylabel(row_name, labelpad=1)
        lax = fig.add_subplot(gs[:, ncols])
        lax.axis("off")
        y = 1.0
        for key, row_name in rows:
            handles = [Line2D([], [], marker="o", ls="", color=c, markersize=4, label=str(k))
                       for k, c in colors[key].items()]
            if has_na[key]:
                handles.append(Line2D([], [], marker="o", ls="", color=_NA_COLOR, markersize=4, label="unlabelled"))
            ncol = 1 if key == batch_key and len(handles) <= avail_rows else label_ncol
            leg = lax.legend(handles=handles, title=row_name, loc="upper left", bbox_to_anchor=(0.0, y), ncol=ncol,
                             handletextpad=0.1, columnspacing=0.6, borderaxespad=0.0, alignment="left")
            lax.add_artist(leg)
            # measure the legend only (a full canvas draw would render every point once more)
            bb = leg.get_window_extent(fig.canvas.get_renderer()).transformed(lax.transAxes.inverted())
            y = bb.y0 - 0.04
        if title:
            suptitle(fig, title, y=1 - 0.04 / fig_h, va="top")
        return save_figure(fig, out_png)


def umap_by(
    umap: pd.DataFrame,
    obs: pd.DataFrame,
    keys: Sequence[str],
    out_png: str | os.PathLike,
    *,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    na_label: str = "n/a",
):
    """One UMAP per obs column, coloured by category (Fig 4a by modality and transferred cell type, Fig 5a–b
    by slice and cluster, Fig 6a by batch and cluster).

    Parameters
    ----------
    umap
        ``cell, umap1, umap2`` of one method.
    obs
        Indexed by cell; holds every column in ``keys`` (categorical or string).
    keys
        Columns to colour by, one panel each, side by side (at most three per figure row).
    titles
        Panel titles (default: the column names).
    na_label
        Legend label for cells without a value (e.g. reference cells in a "predicted" column).
    """
    _check_umap(umap, "umap")
    keys = list(keys)
    missing = [k for k in keys if k not in obs]
    if missing:
        raise ValueError(f"obs lacks columns {missing}; available: {list(obs.columns)[:10]}")
    titles = list(titles) if titles is not None else keys
    if len(titles) != len(keys):
        raise ValueError(f"{len(titles)} titles for {len(keys)} keys; pass one title per key")
    ncols = min(len(keys), 3)
    nrows = math.ceil(len(keys) / ncols)
    legend_w = 1.25 if ncols > 1 else 1.6
    panel = min((FULL_WIDTH - ncols * legend_w) / ncols, 2.2)
    title_h = 0.3 if title else 0.2
    fig_w = ncols * (panel + legend_w)
    fig_h = nrows * (panel + 0.25) + title_h
    with figure_style():
        fig = plt.figure(figsize=(fig_w, fig_h))
        gs = fig.add_gridspec(nrows, 2 * ncols, width_ratios=[panel, legend_w] * ncols, left=0.01, right=0.99,
                              bottom=0.01, top=1 - title_h / fig_h, wspace=0.04, hspace=0.15)
        xy, sub = align_umap(umap, obs) if len(umap) else (np.zeros((0, 2)), obs.iloc[:0])
        for i, (key, t) in enumerate(zip(keys, titles)):
            r, c = divmod(i, ncols)
            ax = fig.add_subplot(gs[r, 2 * c])
            lax = fig.add_subplot(gs[r, 2 * c + 1])
            ax.set_title(t, pad=2)
            if not len(umap):
                empty_panel(ax, "no embedding\n(method failed)")
                lax.axis("off")
                continue
            colors = category_colors(obs[key], _palette_kind(key))  # from all cells: stable across subsets
            _scatter_categorical(ax, xy, sub[key], colors, point_size(len(sub), panel))
            _style_embedding_axis(ax, xy)
            shown = set(sub[key].dropna())
            _legend(lax, {k: c for k, c in colors.items() if k in shown}, t, bool(sub[key].isna().any()),
                    na_label=na_label, max_rows=20)
        if title:
            suptitle(fig, title, y=1 - 0.04 / fig_h, va="top")
        return save_figure(fig, out_png)


def _gene_vector(adata: ad.AnnData, gene: str, layer: str | None) -> np.ndarray | None:
    names = pd.Index(adata.var_names.astype(str))
    if gene in names:
        j = names.get_loc(gene)
    else:
        low = names.str.upper()
        hits = np.flatnonzero(low == gene.upper())
        if not len(hits) and "symbol" in adata.var:
            hits = np.flatnonzero(adata.var["symbol"].astype(str).str.upper().to_numpy() == gene.upper())
        if not len(hits):
            return None
        j = int(hits[0])
    m = adata.layers[layer] if layer else adata.X
    col = m[:, j]
    col = col.toarray() if sp.issparse(col) else np.asarray(col)
    return np.asarray(col, dtype=float).ravel()


def feature_umaps(
    umap: pd.DataFrame,
    adata: ad.AnnData,
    genes: Sequence[str],
    out_png: str | os.PathLike,
    *,
    layer: str | None = None,
    cells: Sequence[str] | None = None,
    ncols: int = 3,
    value_label: str = "expression",
    title: str | None = None,
    cmap: str = "viridis",
):
    """Heatmaps of genes on a UMAP, one panel per gene (Fig 4c gene activity, Fig 6b marker expression).

    Parameters
    ----------
    umap
        ``cell, umap1, umap2`` of one method.
    adata
        Expression per cell (e.g. ``markers.h5ad`` / ``prepared.h5ad``: log-normalised ``X``; gene activity for
        ATAC cells).
        Genes are looked up in ``var_names`` (then case-insensitively, then in ``var['symbol']``).
    genes
        Genes to show; a gene absent from ``adata`` gets a panel saying so.
    layer
        Layer to read instead of ``X`` (e.g. ``'corrected'`` for an integrated object).
    cells
        Restrict to these cells (e.g. the ATAC cells); the rest of the UMAP is drawn in light grey.
    value_label
        Colour-bar label.
    """
    _check_umap(umap, "umap")
    genes = list(genes)
    if not genes:
        raise ValueError("feature_umaps needs at least one gene")
    obs_names = pd.Index(adata.obs_names.astype(str))
    ucells = umap["cell"].astype(str)
    missing = ~ucells.isin(obs_names)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} UMAP cells are not in the AnnData (e.g. {list(ucells[missing][:3])})"
                         "; pass the AnnData the UMAP was computed from")
    pos = obs_names.get_indexer(ucells)
    xy = umap[["umap1", "umap2"]].to_numpy(float)
    show = np.ones(len(umap), bool) if cells is None else ucells.isin(pd.Index(map(str, cells))).to_numpy()
    ncols = max(1, min(ncols, len(genes)))
    nrows = math.ceil(len(genes) / ncols)
    panel = min(FULL_WIDTH / ncols - 0.35, 2.2)
    title_h = (0.3 if title else 0.0) + 0.18
    fig_w = ncols * (panel + 0.35)
    fig_h = nrows * (panel + 0.2) + title_h
    with figure_style():
        fig = plt.figure(figsize=(fig_w, fig_h))
        gs = fig.add_gridspec(nrows, ncols, left=0.01, right=0.96, bottom=0.01, top=1 - title_h / fig_h,
                              wspace=0.2, hspace=0.2 / panel * 1.2)
        s = point_size(int(show.sum()) or 1, panel)
        for i, gene in enumerate(genes):
            ax = fig.add_subplot(gs[divmod(i, ncols)])
            ax.set_title(gene, pad=2, fontstyle="italic")
            v = _gene_vector(adata, gene, layer)
            if v is None:
                empty_panel(ax, f"{gene}\nnot in data")
                continue
            v = v[pos]
            if (~show).any():
                ax.scatter(xy[~show, 0], xy[~show, 1], s=s, c=_NA_COLOR, linewidths=0, rasterized=True)
            idx = np.flatnonzero(show)
            idx = idx[np.argsort(v[idx], kind="stable")]  # highest on top
            vmax = np.nanpercentile(v[idx], 99.5) if len(idx) else 1.0
            sc = ax.scatter(xy[idx, 0], xy[idx, 1], s=s, c=v[idx], cmap=cmap, vmin=0,
                            vmax=vmax if vmax > 0 else None, linewidths=0, rasterized=True)
            _style_embedding_axis(ax, xy)
            cb = fig.colorbar(sc, ax=ax, fraction=0.05, pad=0.02, aspect=25)
            cb.ax.tick_params(labelsize=5, length=1.5, width=0.4)
            cb.locator = MaxNLocator(4)
            cb.update_ticks()
            cb.outline.set_linewidth(0.4)
            if i % ncols == ncols - 1 or i == len(genes) - 1:
                cb.set_label(value_label, fontsize=5.5, labelpad=1)
        if title:
            suptitle(fig, title, y=1 - 0.04 / fig_h, va="top")
        return save_figure(fig, out_png)


def with_transferred_labels(
    obs: pd.DataFrame,
    transfer: pd.DataFrame,
    *,
    label_key: str = "cell_type",
    column: str = "cell type (transferred)",
) -> pd.DataFrame:
    """``obs`` plus a column holding the known label of reference cells and the predicted label of query
    cells (Fig 4a: RNA cells by annotation, ATAC cells by transfer).

    ``transfer`` is ``transfer/<method>.tsv`` (``cell, predicted, …``, or indexed by cell). Query cells
    without a prediction keep NaN (drawn grey, "n/a").
    """
    t = transfer.set_index("cell") if "cell" in transfer.columns else transfer
    if "predicted" not in t.columns:
        raise ValueError("transfer table has no 'predicted' column (CONTRACTS: transfer/<method>.tsv)")
    out = obs.copy()
    known = out[label_key].astype(object) if label_key in out else pd.Series(np.nan, index=out.index, dtype=object)
    pred = t["predicted"].astype(object)
    pred.index = pred.index.astype(str)
    pred = pred.reindex(out.index.astype(str))
    pred.index = out.index
    out[column] = pred.where(pred.notna(), known)
    return out
