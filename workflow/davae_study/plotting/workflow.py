"""Config → figure-rule inputs and options (used by ``workflow/rules/figures.smk``; kept here so they are
tested and the rules file holds rules only).

Per application, ``applications.<app>.figures`` lists the figures to draw and
``applications.<app>.figure_params.<figure>`` sets, for each, the method whose embedding is shown
(``method``, default ``davae``), an optional clusters table (``clusters``, a pattern with ``{app}`` and
``{method}``) and the renderer's keyword arguments (``genes``, ``types``, ``markers``, ``select`` …).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "PAPER_GENE_ACTIVITY",
    "PAPER_MARKER_UMAPS",
    "PAPER_MARKERS",
    "PAPER_SPATIAL_TYPES",
    "DEFAULT_METHOD",
    "MARKER_FIGURES",
    "figure_options",
    "figure_file",
    "figure_kwargs",
    "figure_clusters",
    "marker_genes",
]

#: Fig 4c/4d genes.
PAPER_GENE_ACTIVITY = ["LYN", "VCAN", "CCL5", "BANK1", "SULF2", "LDHB"]
#: Fig 6b genes.
PAPER_MARKER_UMAPS = ["CD79A", "S100A8", "HBB", "GNLY", "CST3", "CD3D"]
#: Fig 6c–e: 14 canonical immune markers (T, NK, B, monocytes, DC, erythrocytes, platelets), including the
#: six of Fig 6b.
PAPER_MARKERS = ["CD3D", "IL7R", "CD8A", "GNLY", "NKG7", "CD79A", "MS4A1", "CD14", "S100A8", "LYZ", "FCGR3A",
                 "CST3", "HBB", "PPBP"]
#: Fig 5d cell types (Allen mouse cortex subclasses).
PAPER_SPATIAL_TYPES = ["L2/3 IT", "L4", "L5 PT", "L6 CT"]
#: The figures that draw genes from ``results/{app}/markers.h5ad`` (rule ``marker_expression``): figure →
#: ``{renderer keyword: default genes}``. The rules take their defaults from here, so :func:`marker_genes`
#: asks for exactly the genes they draw. ``gene_activity`` (Fig 4c) is one of them: in the RNA + ATAC
#: application the ATAC cells' gene activity is a batch of the same matrix, normalised as the RNA cells.
MARKER_FIGURES = {
    "marker_umaps": {"genes": PAPER_MARKER_UMAPS},
    "marker_violins": {"markers": PAPER_MARKERS},
    "marker_dotplot": {"markers": PAPER_MARKERS},
    "gene_activity": {"genes": PAPER_GENE_ACTIVITY},
}
DEFAULT_METHOD = "davae"
DEFAULT_CLUSTERS = "results/{app}/spatial/{method}.clusters.tsv"
_NOT_KWARGS = ("method", "clusters")


def _app(config: Mapping[str, Any], app: str) -> Mapping[str, Any]:
    try:
        return config["applications"][app]
    except KeyError:
        raise ValueError(f"application {app!r} is not in the config's applications") from None


def figure_options(config: Mapping[str, Any], app: str, figure: str) -> dict[str, Any]:
    """``applications.<app>.figure_params.<figure>`` as a dict (empty when not configured)."""
    opts = (_app(config, app).get("figure_params") or {}).get(figure) or {}
    if not isinstance(opts, Mapping):
        raise ValueError(f"applications.{app}.figure_params.{figure} must be a mapping, got {type(opts).__name__}")
    return dict(opts)


def figure_file(config: Mapping[str, Any], app: str, figure: str, pattern: str) -> str:
    """``pattern`` (with ``{app}``, ``{method}``) for the figure's method (``figure_params.<figure>.method``)."""
    method = figure_options(config, app, figure).get("method", DEFAULT_METHOD)
    methods = _app(config, app).get("methods") or []
    if methods and method not in methods:
        raise ValueError(f"applications.{app}.figure_params.{figure}.method is {method!r}, which is not one of "
                         f"the application's methods {list(methods)}; set it to one of them")
    return pattern.format(app=app, method=method)


def figure_clusters(config: Mapping[str, Any], app: str, figure: str) -> str:
    """The clusters table a figure colours by: ``figure_params.<figure>.clusters`` or the spatial_clusters
    rule's ``results/{app}/spatial/{method}.clusters.tsv``."""
    pattern = figure_options(config, app, figure).get("clusters", DEFAULT_CLUSTERS)
    return figure_file(config, app, figure, pattern)


def figure_kwargs(config: Mapping[str, Any], app: str, figure: str, **defaults: Any) -> dict[str, Any]:
    """Renderer keyword arguments: ``defaults`` overridden by ``figure_params.<figure>`` (without ``method``
    and ``clusters``), plus the application's ``title``. Default ``titles`` are dropped when the config
    changes ``keys`` without giving titles (they would describe the wrong columns)."""
    opts = {k: v for k, v in figure_options(config, app, figure).items() if k not in _NOT_KWARGS}
    out = {**defaults, **opts}
    if "keys" in opts and "titles" not in opts:
        out.pop("titles", None)
    out.setdefault("title", _app(config, app).get("title", app))
    return out


def marker_genes(config: Mapping[str, Any], app: str) -> list[str]:
    """The genes ``markers.h5ad`` holds for ``app``: every gene its marker figures (:data:`MARKER_FIGURES`)
    draw with their ``figure_params``, in order, each once. Every one of those figures counts, listed under
    ``figures`` or not: the file serves whichever of them is asked for."""
    genes: list[str] = []
    for figure, defaults in MARKER_FIGURES.items():
        (key,) = defaults
        value = figure_kwargs(config, app, figure, **defaults)[key]
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"applications.{app}.figure_params.{figure}.{key} must be a list of gene names, "
                             f"got {value!r}")
        genes += [str(g) for g in value if str(g) not in genes]
    return genes
