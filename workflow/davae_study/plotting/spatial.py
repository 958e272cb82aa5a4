"""Spatial figures of the Visium application (Fig 5): clusters of the joint embedding drawn at the spots'
coordinates, one panel per slice (Fig 5c), and per-spot cell-type probabilities from the label transfer
(Fig 5d).

Inputs are the cached tables: ``spatial/<method>.clusters.tsv`` (``cell, batch, cluster, x, y, …``) and
``transfer/<method>.tsv`` (``cell, predicted, confidence, prob:<type>…``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from .embedding import _legend
from .style import (
    FULL_WIDTH,
    MAX_HEIGHT,
    category_colors,
    empty_panel,
    figure_style,
    natural_key,
    save_figure,
    suptitle,
)

__all__ = ["spatial_clusters", "spatial_probabilities", "PROB_PREFIX"]

PROB_PREFIX = "prob:"


def _check_coords(df: pd.DataFrame, what: str, extra: Sequence[str] = ()) -> None:
    need = {"cell", "batch", "x", "y", *extra}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"{what} lacks columns {sorted(missing)}; expected cell, batch, x, y (the "
                         "spatial_clusters table, or prepared obs['batch'] with obsm['spatial'])")


def _spot_size(n: int, panel_w: float) -> float:
    """Marker area (pt²) so that a Visium-like hexagonal grid of n spots roughly tiles a square panel."""
    spacing_pt = panel_w * 72 / max(math.sqrt(n), 1)
    return float(np.clip(0.6 * spacing_pt**2, 0.5, 30.0))


def _style_spatial_axis(ax, x: np.ndarray, y: np.ndarray, invert_y: bool) -> None:
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if invert_y and not ax.yaxis_inverted():
        ax.invert_yaxis()  # image (pixel) coordinates grow downwards


def _slices(coords: pd.DataFrame) -> list:
    return sorted(pd.unique(coords["batch"].dropna()), key=natural_key)


def spatial_clusters(
    clusters: pd.DataFrame,
    out_png: str | os.PathLike,
    *,
    title: str | None = None,
    invert_y: bool = True,
):
    """Fig 5c: clusters of the joint embedding at the spots' coordinates, one panel per slice (``batch``).

    Parameters
    ----------
    clusters
        ``cell, batch, cluster, x, y`` (``spatial/<method>.clusters.tsv``). Rows without coordinates (e.g.
        reference cells) are left out; a header-only table (failed method) gives a panel saying so.
    invert_y
        Draw ``y`` growing downwards, as in the tissue image (Visium pixel coordinates).
    """
    _check_coords(clusters, "clusters table", ("cluster",))
    spots = clusters.dropna(subset=["x", "y"])
    if spots.empty:
        return _message_figure("no clusters: the method failed (header-only table)" if clusters.empty
                               else "no spot has coordinates", out_png, title)
    slices = _slices(spots)
    colors = category_colors(clusters["cluster"].astype(str) if len(clusters) else [], "label")
    ncols = len(slices)
    legend_w = 1.1 if len(colors) <= 16 else 1.55
    panel = min((FULL_WIDTH - legend_w) / ncols, 3.2)
    title_h = 0.3 if title else 0.2
    fig_w, fig_h = panel * ncols + legend_w, panel + 0.25 + title_h
    with figure_style():
        fig = plt.figure(figsize=(fig_w, fig_h))
        gs = fig.add_gridspec(1, ncols + 1, width_ratios=[panel] * ncols + [legend_w], left=0.01, right=0.99,
                              bottom=0.02, top=1 - title_h / fig_h, wspace=0.04)
        for i, sl in enumerate(slices):
            ax = fig.add_subplot(gs[0, i])
            d = spots[spots["batch"] == sl]
            ax.set_title(str(sl), pad=2)
            if d.empty:
                empty_panel(ax, "no spots\n(method failed)" if clusters.empty else "no coordinates")
                continue
            cols = [colors.get(c, "#d9d9d9") for c in d["cluster"].astype(str)]
            ax.scatter(d["x"], d["y"], c=cols, s=_spot_size(len(d), panel), linewidths=0, rasterized=True)
            _style_spatial_axis(ax, d["x"].to_numpy(float), d["y"].to_numpy(float), invert_y)
        lax = fig.add_subplot(gs[0, ncols])
        if colors:
            _legend(lax, colors, "cluster", False, max_rows=16)
        else:
            lax.axis("off")
        if title:
            suptitle(fig, title, y=1 - 0.04 / fig_h, va="top")
        return save_figure(fig, out_png)


def _message_figure(message: str, out_png, title: str | None):
    """A small figure that only says why there is nothing to draw (keeps the DAG and the report whole)."""
    from .style import HALF_WIDTH

    with figure_style():
        fig = plt.figure(figsize=(HALF_WIDTH, 1.2))
        ax = fig.add_axes([0.02, 0.02, 0.96, 0.7 if title else 0.96])
        empty_panel(ax, message)
        if title:
            suptitle(fig, title, y=0.96, va="top")
        return save_figure(fig, out_png)


def _prob_table(transfer: pd.DataFrame) -> pd.DataFrame:
    t = transfer.set_index("cell") if "cell" in transfer.columns else transfer
    t.index = t.index.astype(str)
    return t


def spatial_probabilities(
    transfer: pd.DataFrame,
    coords: pd.DataFrame,
    types: Sequence[str],
    out_png: str | os.PathLike,
    *,
    title: str | None = None,
    invert_y: bool = True,
    cmap: str = "magma_r",
):
    """Fig 5d: per-spot probability of each cell type in space; one column per type, one row per slice.

    Parameters
    ----------
    transfer
        ``transfer/<method>.tsv``: ``cell`` (or the index) and ``prob:<type>`` columns for the spots.
    coords
        ``cell, batch, x, y`` of the spots (the spatial clusters table, or prepared obs + obsm['spatial']).
    types
        Cell types to show (e.g. ``['L2/3 IT', 'L4', 'L5 PT', 'L6 CT']``); each must have a ``prob:`` column.
    cmap
        Colour map; each type (column) has its own scale from 0 to its 99.5th percentile, shown below it.
    """
    _check_coords(coords, "coordinates table")
    types = list(types)
    if not types:
        raise ValueError("spatial_probabilities needs at least one cell type")
    t = _prob_table(transfer)
    available = [c[len(PROB_PREFIX):] for c in t.columns if str(c).startswith(PROB_PREFIX)]
    missing = [ty for ty in types if ty not in available]
    if missing and len(t):
        raise ValueError(f"no '{PROB_PREFIX}<type>' column for {missing} in the transfer table; "
                         f"available types: {available}")
    c = coords.dropna(subset=["x", "y"]).copy()
    c["cell"] = c["cell"].astype(str)
    c = c[c["cell"].isin(t.index)]
    if c.empty:
        why = ("no spots: the method failed (header-only transfer table)" if t.empty else
               "no spot of the transfer table has coordinates" if len(coords.dropna(subset=["x", "y"])) else
               "no spot has coordinates")
        return _message_figure(why, out_png, title)
    slices = _slices(c)
    nrows, ncols = len(slices), len(types)
    row_label_w = 0.2
    cbar_h = 0.45
    title_h = (0.3 if title else 0.0) + 0.2
    panel = min((FULL_WIDTH - row_label_w) / ncols, (MAX_HEIGHT - cbar_h - title_h) / nrows, 2.4)
    fig_w = panel * ncols + row_label_w
    fig_h = nrows * panel + cbar_h + title_h
    with figure_style():
        fig = plt.figure(figsize=(fig_w, fig_h))
        gs = fig.add_gridspec(nrows + 1, ncols, height_ratios=[panel] * nrows + [0.06], left=row_label_w / fig_w,
                              right=0.99, bottom=(cbar_h - 0.1) / fig_h, top=1 - title_h / fig_h, wspace=0.04,
                              hspace=0.04)
        for j, ty in enumerate(types):
            col = f"{PROB_PREFIX}{ty}"
            vals = t[col].astype(float) if col in t else pd.Series(dtype=float)
            vmax = float(np.nanpercentile(vals, 99.5)) if vals.notna().any() else 1.0
            vmax = vmax if vmax > 0 else 1.0
            sc = None
            for i, sl in enumerate(slices):
                ax = fig.add_subplot(gs[i, j])
                if i == 0:
                    ax.set_title(ty, pad=2, fontweight="bold")
                d = c[c["batch"] == sl]
                if d.empty:
                    empty_panel(ax, "no spots")
                else:
                    v = vals.reindex(d["cell"]).to_numpy(float)
                    order = np.argsort(np.nan_to_num(v, nan=-1.0), kind="stable")
                    sc = ax.scatter(d["x"].to_numpy()[order], d["y"].to_numpy()[order], c=v[order], cmap=cmap,
                                    vmin=0, vmax=vmax, s=_spot_size(len(d), panel), linewidths=0, rasterized=True)
                    _style_spatial_axis(ax, d["x"].to_numpy(float), d["y"].to_numpy(float), invert_y)
                if j == 0:
                    ax.text(-0.03, 0.5, str(sl), transform=ax.transAxes, rotation=90, ha="right", va="center")
            cax = fig.add_subplot(gs[nrows, j])
            if sc is not None:
                pos = cax.get_position()
                cax.set_position([pos.x0 + pos.width * 0.15, pos.y0, pos.width * 0.7, pos.height])
                cb = fig.colorbar(sc, cax=cax, orientation="horizontal")
                cb.ax.tick_params(labelsize=5, length=1.5, width=0.4)
                cb.locator = MaxNLocator(4)
                cb.update_ticks()
                cb.outline.set_linewidth(0.4)
                cb.set_label(f"P({ty})", fontsize=5.5, labelpad=1)
            else:
                cax.axis("off")
        if title:
            suptitle(fig, title, y=1 - 0.04 / fig_h, va="top")
        return save_figure(fig, out_png)
