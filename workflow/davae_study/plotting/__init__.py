"""Figures of the study, one consistent style (:mod:`.style`), one module per figure family.

Every figure function takes tables or AnnData in the shapes of ``docs/CONTRACTS.md`` (cached UMAP
coordinates, tidy metrics, transfer and spatial-cluster tables, prepared.h5ad, Snakemake benchmark files),
writes ``out_png`` and a PDF beside it atomically, and returns the two paths. None recomputes an integration.
``docs/figures.md`` maps each function to the paper's panel, the Snakemake rule and the output path.

=======================  =====================================================================
module                   figures
=======================  =====================================================================
:mod:`.embedding`        UMAP grid (Figs 2–3 a–e), UMAP by obs column (4a, 5a–b, 6a), genes on UMAP (4c, 6b)
:mod:`.scores`           ARI dot plot (2f, 3f), kBET curves (2g, 3g, 4b), summary heatmap (beyond the paper)
:mod:`.atac`             accessibility near marker genes per predicted type (4d)
:mod:`.spatial`          clusters in space (5c), cell-type probabilities in space (5d)
:mod:`.markers`          marker violins and dot plot over clusters (6c–e)
:mod:`.runtime`          run time and peak memory vs cells (6f)
=======================  =====================================================================
"""

from .atac import aggregate_peaks, coverage_tracks
from .embedding import feature_umaps, umap_by, umap_grid, with_transferred_labels
from .markers import group_expression, marker_dotplot, marker_violins, read_genes
from .runtime import growth_exponent, read_benchmarks, runtime_scaling
from .scores import ari_scatter, kbet_curves, summary_heatmap
from .spatial import spatial_clusters, spatial_probabilities
from .style import category_colors, method_color, method_label, order_methods, register_method_labels, save_figure

__all__ = [
    "aggregate_peaks",
    "ari_scatter",
    "category_colors",
    "coverage_tracks",
    "feature_umaps",
    "group_expression",
    "growth_exponent",
    "kbet_curves",
    "marker_dotplot",
    "marker_violins",
    "method_color",
    "method_label",
    "order_methods",
    "read_benchmarks",
    "read_genes",
    "register_method_labels",
    "runtime_scaling",
    "save_figure",
    "spatial_clusters",
    "spatial_probabilities",
    "summary_heatmap",
    "umap_by",
    "umap_grid",
    "with_transferred_labels",
]
