"""Path-level entry points: read the cached results files of one figure and draw it.

Snakemake's figure rules for Figs 4–6 call these (through one thin script, ``workflow/scripts/figure.py``:
``render_rule(snakemake)``), so every rule is a few lines of inputs/params and no rule reads an integration
output: they take ``umap/*.tsv``, ``metrics*.tsv``, ``transfer/*.tsv``, ``spatial/*.clusters.tsv``,
``obs.tsv`` / ``prepared.h5ad`` / ``markers.h5ad`` (expression for gene heatmaps, streamed gene by gene) and
benchmark files.

Each ``render_<figure>`` takes paths and keyword parameters and writes ``out_png`` (+ PDF).
:data:`RENDERERS` maps the figure names used in the config (``applications.<app>.figures``) to them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from davae_study.io import read_tsv

from .atac import coverage_tracks
from .embedding import feature_umaps, umap_by, umap_grid, with_transferred_labels
from .markers import marker_dotplot, marker_violins, read_genes
from .runtime import read_benchmarks, runtime_scaling
from .scores import ari_scatter, kbet_curves, summary_heatmap
from .spatial import spatial_clusters, spatial_probabilities
from .style import register_method_labels

__all__ = ["read_obs", "RENDERERS", "render_rule"] + [
    "render_umap_grid", "render_ari", "render_kbet", "render_summary", "render_umap_by", "render_feature_umaps",
    "render_coverage", "render_spatial_clusters", "render_spatial_probabilities", "render_marker_violins",
    "render_marker_dotplot", "render_runtime",
]

PathLike = str | os.PathLike


def read_obs(path: PathLike) -> pd.DataFrame:
    """Cell annotations indexed by cell, from ``obs.tsv`` (column ``cell``) or an ``.h5ad`` (obs only: the
    matrix is not read, so this is cheap on the 762k-cell HCA file)."""
    path = str(path)
    if path.endswith(".h5ad"):
        import h5py
        from anndata.io import read_elem

        with h5py.File(path, "r") as f:
            obs = read_elem(f["obs"])
    else:
        obs = read_tsv(path)
        if "cell" not in obs.columns:
            raise ValueError(f"{path} has no 'cell' column; write obs with the cell names in a 'cell' column")
        obs = obs.set_index("cell")
    obs.index = obs.index.astype(str)
    return obs


def _concat_tsv(paths: Sequence[PathLike]) -> pd.DataFrame | None:
    frames = [read_tsv(p) for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


def _clusters(path: PathLike, column: str = "cluster") -> pd.Series:
    t = read_tsv(path)
    if not {"cell", column} <= set(t.columns):
        raise ValueError(f"{path} needs columns 'cell' and {column!r} (the spatial_clusters/cluster table)")
    labels = t[column]
    if pd.api.types.is_float_dtype(labels) and np.allclose(labels.dropna() % 1, 0):
        labels = labels.astype("Int64")  # integer cluster ids, not '3.0'
    labels = labels.astype(str).where(labels.notna())
    return pd.Series(labels.to_numpy(), index=t["cell"].astype(str), name=column)


# ------------------------------------------------------------------------------------------------ Figs 2-3


def render_umap_grid(umaps: Mapping[str, PathLike], obs: PathLike, out_png: PathLike, *, title: str | None = None,
                     batch_key: str = "batch", label_key: str = "cell_type"):
    """Figs 2–3 a–e from ``umap/<method>.tsv`` and ``obs.tsv`` (or prepared.h5ad)."""
    return umap_grid({m: read_tsv(p) for m, p in umaps.items()}, read_obs(obs), out_png, batch_key=batch_key,
                     label_key=label_key, title=title)


def render_ari(metrics: PathLike, out_png: PathLike, *, repeats: Sequence[PathLike] = (), title: str | None = None):
    """Figs 2f / 3f from ``metrics.tsv`` (+ ``metrics/<method>.repeats.tsv`` for whiskers)."""
    return ari_scatter(read_tsv(metrics), out_png, title=title, repeats=_concat_tsv(repeats))


def render_kbet(metrics: PathLike, out_png: PathLike, *, repeats: Sequence[PathLike] = (), title: str | None = None,
                by_celltype: bool = True):
    """Figs 2g / 3g / 4b from ``metrics.tsv`` and the per-method repeats tables."""
    return kbet_curves(read_tsv(metrics), _concat_tsv(repeats), out_png, title=title, by_celltype=by_celltype)


def render_summary(summary: PathLike, out_png: PathLike, *, metrics: Sequence[str] | None = None):
    """Summary heatmap from ``results/summary.tsv``."""
    return summary_heatmap(read_tsv(summary), out_png, metrics=list(metrics) if metrics else None)


# ------------------------------------------------------------------------------------------------ Figs 4-6


def render_umap_by(umap: PathLike, obs: PathLike, out_png: PathLike, *, keys: Sequence[str],
                   titles: Sequence[str] | None = None, transfer: PathLike | None = None,
                   clusters: PathLike | None = None, select: Mapping[str, Any] | None = None,
                   label_key: str = "cell_type", title: str | None = None):
    """UMAP coloured by obs columns (Fig 4a, 5a–b, 6a).

    ``transfer`` adds the column ``cell type (transferred)`` (reference: annotation, query: prediction);
    ``clusters`` adds ``cluster`` from a clusters table (``cell, cluster``); ``select`` keeps only the cells
    whose obs match (e.g. ``{'role': 'query'}``: the Visium spots without the reference cells).
    """
    o = read_obs(obs)
    if transfer is not None:
        o = with_transferred_labels(o, read_tsv(transfer), label_key=label_key)
    if clusters is not None:
        o["cluster"] = _clusters(clusters).reindex(o.index).to_numpy()
    u = read_tsv(umap)
    cells = _select_cells(o, select)
    if cells is not None:
        u = u[u["cell"].astype(str).isin(cells)]
    return umap_by(u, o, list(keys), out_png, titles=titles, title=title)


def _select_cells(obs: pd.DataFrame, select: Mapping[str, Any] | None) -> pd.Index | None:
    """Cells whose obs columns hold the given values, e.g. ``{'modality': 'ATAC'}``."""
    if not select:
        return None
    keep = np.ones(len(obs), bool)
    for key, val in select.items():
        if key not in obs:
            raise ValueError(f"obs has no column {key!r} to select cells by; available: {list(obs.columns)[:10]}")
        vals = [val] if isinstance(val, (str, int, float)) else list(val)
        keep &= obs[key].astype(str).isin([str(v) for v in vals]).to_numpy()
    return obs.index[keep]


def render_feature_umaps(umap: PathLike, expression: PathLike, out_png: PathLike, *, genes: Sequence[str],
                         layer: str | None = None, select: Mapping[str, Any] | None = None,
                         value_label: str = "expression", title: str | None = None, ncols: int = 3):
    """Genes on a UMAP (Fig 4c gene activity of the ATAC cells: ``select={'modality': 'ATAC'}``; Fig 6b).

    Only the listed genes are read from ``expression`` (markers.h5ad for Figs 4c and 6b: every input gene,
    normalised as prepared.h5ad's ``X``), in row chunks.
    """
    expr = read_genes(expression, genes, layer=layer)
    cells = _select_cells(expr.obs, select)
    return feature_umaps(read_tsv(umap), expr, list(genes), out_png, cells=cells, value_label=value_label,
                         title=title, ncols=ncols)


def _match_cells(groups: pd.Series, barcodes: pd.Index) -> pd.Series:
    """Map prepared cell names to peak-matrix barcodes: exact, else without a ``:<part>`` suffix that
    concatenation added (``AAAC…-1:atac`` → ``AAAC…-1``)."""
    if groups.index.isin(barcodes).any():
        return groups
    stripped = groups.copy()
    stripped.index = groups.index.str.replace(r":[^:]+$", "", regex=True)
    return stripped


def render_coverage(peaks: PathLike, gtf: PathLike, transfer: PathLike, out_png: PathLike, *,
                    genes: Sequence[str], flank: int = 10_000, min_cells: int = 20, title: str | None = None):
    """Fig 4d from the scATAC peak matrix (10x ``.h5`` or ``.h5ad``), the GTF and ``transfer/<method>.tsv``."""
    from davae_study.data.gene_activity import read_gtf_genes

    if str(peaks).endswith(".h5ad"):
        import anndata as ad

        pk = ad.read_h5ad(peaks)
    else:
        from davae_study.data.formats import read_10x_h5

        pk = read_10x_h5(peaks, feature_types=None)
    t = read_tsv(transfer)
    groups = pd.Series(t["predicted"].to_numpy(), index=t["cell"].astype(str)) if len(t) else pd.Series(dtype=object)
    groups = _match_cells(groups.dropna(), pd.Index(pk.obs_names.astype(str)))
    return coverage_tracks(pk, groups, read_gtf_genes(gtf, seq_levels=None), list(genes), out_png, flank=flank,
                           min_cells=min_cells, title=title)


def _coords(clusters: PathLike | None, obs: PathLike | None) -> pd.DataFrame:
    """``cell, batch, x, y``: from a clusters table, or from prepared.h5ad's obs + obsm['spatial']."""
    if clusters is not None:
        t = read_tsv(clusters)
        if len(t) or obs is None:
            return t
    if obs is None or not str(obs).endswith(".h5ad"):
        raise ValueError("spot coordinates come from a clusters table or prepared.h5ad (obsm['spatial'])")
    import h5py
    from anndata.io import read_elem

    with h5py.File(obs, "r") as f:
        o = read_elem(f["obs"])
        if "obsm" not in f or "spatial" not in f["obsm"]:
            raise ValueError(f"{obs} has no obsm['spatial']; is this the Visium application?")
        xy = np.asarray(read_elem(f["obsm"]["spatial"]), dtype=float)
    return pd.DataFrame({"cell": o.index.astype(str), "batch": o["batch"].to_numpy(), "x": xy[:, 0], "y": xy[:, 1]})


def render_spatial_clusters(clusters: PathLike, out_png: PathLike, *, title: str | None = None,
                            invert_y: bool = True):
    """Fig 5c from ``spatial/<method>.clusters.tsv``."""
    return spatial_clusters(read_tsv(clusters), out_png, title=title, invert_y=invert_y)


def render_spatial_probabilities(transfer: PathLike, out_png: PathLike, *, types: Sequence[str],
                                 clusters: PathLike | None = None, prepared: PathLike | None = None,
                                 title: str | None = None, invert_y: bool = True):
    """Fig 5d from ``transfer/<method>.tsv`` and the spots' coordinates (clusters table or prepared.h5ad)."""
    return spatial_probabilities(read_tsv(transfer), _coords(clusters, prepared), list(types), out_png,
                                 title=title, invert_y=invert_y)


def _marker_inputs(expression: PathLike, markers: Sequence[str], clusters: PathLike | None, groupby: str | None,
                   layer: str | None):
    expr = read_genes(expression, markers, layer=layer)
    if clusters is not None:
        return expr, _clusters(clusters)
    if groupby is None:
        raise ValueError("pass clusters= (a clusters table) or groupby= (an obs column)")
    return expr, groupby


def render_marker_violins(expression: PathLike, out_png: PathLike, *, markers: Sequence[str],
                          clusters: PathLike | None = None, groupby: str | None = None, layer: str | None = None,
                          title: str | None = None, max_cells_per_group: int = 1000, seed: int = 0):
    """Fig 6c–d: marker violins over clusters (only the markers are read from ``expression``, markers.h5ad)."""
    expr, g = _marker_inputs(expression, markers, clusters, groupby, layer)
    return marker_violins(expr, list(markers), g, out_png, title=title, max_cells_per_group=max_cells_per_group,
                          seed=seed)


def render_marker_dotplot(expression: PathLike, out_png: PathLike, *, markers: Sequence[str],
                          clusters: PathLike | None = None, groupby: str | None = None, layer: str | None = None,
                          title: str | None = None):
    """Fig 6e: marker dot plot over clusters."""
    expr, g = _marker_inputs(expression, markers, clusters, groupby, layer)
    return marker_dotplot(expr, list(markers), g, out_png, title=title)


def render_runtime(benchmarks: Sequence[PathLike], out_png: PathLike, *, methods: Sequence[str],
                   n_cells: Sequence[int], title: str | None = None):
    """Fig 6f from Snakemake benchmark files; ``methods[i]``/``n_cells[i]`` describe ``benchmarks[i]``."""
    if not len(benchmarks) == len(methods) == len(n_cells):
        raise ValueError(f"{len(benchmarks)} benchmark files but {len(methods)} methods and {len(n_cells)} sizes; "
                         "pass one method and one cell count per file")
    return runtime_scaling(read_benchmarks(zip(methods, n_cells, benchmarks)), out_png, title=title)


# ------------------------------------------------------------------------------------------------ dispatch

RENDERERS: dict[str, Callable] = {
    "umap_grid": render_umap_grid,
    "ari": render_ari,
    "kbet": render_kbet,
    "summary": render_summary,
    "umap_by": render_umap_by,
    "feature_umaps": render_feature_umaps,
    "coverage": render_coverage,
    "spatial_clusters": render_spatial_clusters,
    "spatial_probabilities": render_spatial_probabilities,
    "marker_violins": render_marker_violins,
    "marker_dotplot": render_marker_dotplot,
    "runtime": render_runtime,
}


def render_rule(smk) -> None:
    """Entry point of the figure rules' script (``workflow/scripts/figure.py``): draw ``params.renderer``
    from the rule's named inputs.

    The rule names its inputs as the renderer's path arguments (``umap=…``, ``obs=…``, ``transfer=…``;
    ``umaps`` + ``params.methods`` for the grid), its first output is the PNG, and ``params.kwargs`` holds the
    other keyword arguments (genes, types, title …). Method labels come from the config's
    ``methods.<name>.label`` where set.
    """
    methods_cfg = (getattr(smk, "config", None) or {}).get("methods") or {}
    register_method_labels({m: (c or {}).get("label") for m, c in methods_cfg.items()})
    name = smk.params.renderer
    if name not in RENDERERS:
        raise ValueError(f"unknown figure renderer {name!r}; use one of {sorted(RENDERERS)}")
    fn = RENDERERS[name]
    inputs = {k: v for k, v in smk.input.items()}
    kwargs = dict(getattr(smk.params, "kwargs", None) or {})
    out_png = str(smk.output[0])
    if name == "umap_grid":
        methods = list(smk.params.methods)
        umaps = dict(zip(methods, list(inputs.pop("umaps"))))
        return fn(umaps, inputs.pop("obs"), out_png, **kwargs)
    if name == "runtime":
        return fn(list(inputs.pop("benchmarks")), out_png, **kwargs)
    args = {}
    for key, val in inputs.items():
        args[key] = list(val) if key in ("repeats",) else (val[0] if isinstance(val, list) and len(val) == 1 else val)
    first = _FIRST_ARG[name]
    if first not in args:
        raise ValueError(f"figure rule for {name!r} needs an input named {first!r}; it has {sorted(args)}")
    positional = [args.pop(a) for a in _POSITIONAL[name]]
    return fn(*positional, out_png, **args, **kwargs)


_POSITIONAL = {
    "ari": ["metrics"],
    "kbet": ["metrics"],
    "summary": ["summary"],
    "umap_by": ["umap", "obs"],
    "feature_umaps": ["umap", "expression"],
    "coverage": ["peaks", "gtf", "transfer"],
    "spatial_clusters": ["clusters"],
    "spatial_probabilities": ["transfer"],
    "marker_violins": ["expression"],
    "marker_dotplot": ["expression"],
}
_FIRST_ARG = {k: v[0] for k, v in _POSITIONAL.items()}
