"""Figures of the study, one consistent style (:mod:`.style`), one module per figure family.

Every function takes tables or AnnData in the shapes of ``docs/CONTRACTS.md`` (cached UMAP coordinates,
tidy metrics, transfer tables, prepared.h5ad), writes ``out_png`` and a PDF beside it atomically, and
returns the two paths. None recomputes an integration. ``docs/figures.md`` maps each function to the paper's
panel, the Snakemake rule and the output path.
"""

from .embedding import feature_umaps, umap_by, umap_grid
from .scores import ari_scatter, kbet_curves, summary_heatmap
from .style import category_colors, method_color, method_label, order_methods, save_figure

__all__ = [
    "ari_scatter",
    "category_colors",
    "feature_umaps",
    "kbet_curves",
    "method_color",
    "method_label",
    "order_methods",
    "save_figure",
    "summary_heatmap",
    "umap_by",
    "umap_grid",
]
