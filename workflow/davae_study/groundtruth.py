"""Offline ground truth for label transfer and spatial soft scores, and the workflow steps that write them.

The paper had no ground truth for its transfer applications. Two offline substitutes:

(a) **Cross-technology transfer** (:func:`evaluate_celltech`): on CellBench, train on the 10x cells and
    predict the CEL-seq2 and Drop-seq cells, whose cell lines are known from SNP genotypes.
(b) **Simulated spots** (:func:`make_spots_application`, :func:`evaluate_spots`): spots built as known
    mixtures of real cells, integrated with single cells of other cells; true proportions per type are
    compared with the predicted scores.

Every evaluation takes an *embedding* (cells x dims) and the cells' obs; it never runs a method.

Workflow steps (file in, file out, atomic writes), one per rule of ``workflow/rules/transfer.smk``:
:func:`simulate_spots_step`, :func:`transfer_step`, :func:`spatial_clusters_step`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .io import read_tsv, write_h5ad, write_tsv
from .spatial import PROPORTION_PREFIX, leiden_n_clusters, proportion_correlation, simulate_spots, spot_type_scores
from .transfer import PROB_PREFIX, knn_transfer, mlp_transfer, split_reference_query, transfer_scores

log = logging.getLogger("davae_study")

TIDY_COLUMNS = ["application", "method", "metric", "group", "value", "n", "note"]

__all__ = [
    "evaluate_celltech",
    "make_celltech_application",
    "make_spots_application",
    "evaluate_spots",
    "transfer_metric_rows",
    "simulate_spots_step",
    "transfer_step",
    "spatial_clusters_step",
    "TRANSFER_DEFAULTS",
    "transfer_config",
    "spatial_config",
    "simulate_config",
]


def _as_list(v) -> list[str]:
    return [str(v)] if isinstance(v, (str, int, float)) else [str(x) for x in v]


# ----------------------------------------------------------------------------------------------------------
# (a) cross-technology transfer


def make_celltech_application(
    adata: ad.AnnData, *, reference: str | Sequence[str] = "10x", batch_key: str = "batch"
) -> ad.AnnData:
    """CellBench as a transfer application: a copy with ``obs['role']`` = ``reference`` for the
    ``reference`` batch(es) and ``query`` for the others (whose ``cell_type`` stays as ground truth)."""
    if batch_key not in adata.obs:
        raise ValueError(f"obs['{batch_key}'] is missing; pass the CellBench file with its batch column.")
    out = adata.copy()
    ref = out.obs[batch_key].astype(str).isin(_as_list(reference)).to_numpy()
    if not ref.any() or ref.all():
        raise ValueError(f"reference={reference!r} must name some but not all of {sorted(out.obs[batch_key].astype(str).unique())}.")
    out.obs["role"] = pd.Categorical(np.where(ref, "reference", "query"), categories=["reference", "query"])
    return out


def _classify(x_ref, y_ref, x_query, *, classifier: str, seed: int, device: str, threshold: float, names, **params):
    if classifier == "mlp":
        return mlp_transfer(x_ref, y_ref, x_query, seed=seed, device=device, threshold=threshold,
                            query_names=names, **params)
    if classifier == "knn":
        return knn_transfer(x_ref, y_ref, x_query, threshold=threshold, query_names=names, **params)
    raise ValueError(f"classifier={classifier!r}: use 'mlp' or 'knn'.")


def evaluate_celltech(
    emb,
    obs: pd.DataFrame,
    *,
    reference: str | Sequence[str] = "10x",
    query: str | Sequence[str] | None = None,
    batch_key: str = "batch",
    label_key: str = "cell_type",
    classifier: str = "mlp",
    threshold: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    **params,
) -> pd.DataFrame:
    """Train on the reference technology's cells, predict the others, score against their true labels.

    Parameters
    ----------
    emb
        Joint embedding of all cells (rows in ``obs`` order), e.g. ``obsm['X_emb']`` of one method.
    obs
        ``obs`` with ``batch_key`` and ``label_key`` (known for every cell, as in CellBench).
    reference, query
        Reference batch value(s); query batch value(s) (``None``: all other batches).
    classifier, threshold, seed, device, **params
        See :func:`davae_study.transfer.mlp_transfer` / :func:`~davae_study.transfer.knn_transfer`.

    Returns
    -------
    One row per query batch and one for ``all``: ``group, accuracy, macro_f1, unassigned_fraction,
    majority_rate, n``.
    """
    emb = np.asarray(emb)
    if emb.shape[0] != len(obs):
        raise ValueError(f"Embedding has {emb.shape[0]} rows for {len(obs)} cells: pass obsm['X_emb'] with its obs.")
    adata = ad.AnnData(obs=obs[[batch_key, label_key]].copy())
    ref, qry = split_reference_query(adata, key=batch_key, reference=reference, query=query)
    table = _classify(emb[ref], obs[label_key][ref], emb[qry], classifier=classifier, seed=seed, device=device,
                      threshold=threshold, names=obs.index[qry], **params)
    truth = obs[label_key][qry]
    batches = obs[batch_key][qry].astype(str)
    rows = [{"group": "all", **transfer_scores(table["predicted"], truth)}]
    for b in sorted(batches.unique()):
        m = (batches == b).to_numpy()
        rows.append({"group": b, **transfer_scores(table["predicted"][m], truth[m])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# (b) simulated spots


def make_spots_application(
    adata: ad.AnnData,
    *,
    reference_batches: str | Sequence[str] | None = None,
    spot_batches: str | Sequence[str] | None = None,
    spot_fraction: float = 0.5,
    batch_key: str = "batch",
    label_key: str = "cell_type",
    spot_batch: str = "spots",
    seed: int = 0,
    **simulate_params,
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Simulated spots plus a single-cell reference made of *other* cells, as one AnnData, and the truth.

    Spots are mixtures of the cells of ``spot_batches`` (e.g. IFN-β-stimulated PBMCs); the reference is the
    cells of ``reference_batches`` (e.g. control PBMCs), so spot and reference differ by a real biological
    or technical shift, not only by mixing. When the two overlap or ``spot_batches`` is None, the cells of
    the reference batches are split per type: ``spot_fraction`` feed the spots, the rest is the reference;
    no cell is in both.

    Parameters
    ----------
    adata
        Single cells: raw counts in ``X``, ``obs[batch_key]``, ``obs[label_key]``.
    reference_batches, spot_batches
        Batch values; ``reference_batches=None``: all batches.
    spot_fraction
        Share of each type's cells given to the spots when splitting.
    batch_key, label_key
        obs columns.
    spot_batch
        Batch name of the spots in the output.
    seed
        Seeds the split and the simulation.
    **simulate_params
        Passed to :func:`davae_study.spatial.simulate_spots` (``grid``, ``cells_per_spot``, …).

    Returns
    -------
    combined
        Reference cells then spots; ``X`` raw counts (CSR float32), ``obs['batch']`` (reference batches and
        ``spot_batch``), ``obs['cell_type']`` (a spot's dominant type, so that label-aware integration metrics
        cover the spots; transfer never trains on query labels), ``obs['role']`` (``reference``/``query``),
        ``obsm['spatial']`` (NaN for cells).
    truth
        Index spot name; ``cell_type`` (the spot's dominant type), ``x``, ``y``, ``n_cells`` and
        ``proportion:<type>`` true fractions.
    """
    for k in (batch_key, label_key):
        if k not in adata.obs:
            raise ValueError(f"obs['{k}'] is missing from the single-cell source.")
    batches = adata.obs[batch_key].astype(str)
    ref_vals = sorted(batches.unique()) if reference_batches is None else _as_list(reference_batches)
    in_ref = batches.isin(ref_vals).to_numpy() & adata.obs[label_key].notna().to_numpy()
    rng = np.random.default_rng(seed)
    if spot_batches is None or set(_as_list(spot_batches)) & set(ref_vals):
        if not 0 < spot_fraction < 1:
            raise ValueError(f"spot_fraction={spot_fraction} must lie in (0, 1) when spots and reference share batches.")
        pool = in_ref.copy()
        in_spot = np.zeros(adata.n_obs, dtype=bool)
        labels = adata.obs[label_key].astype(str).to_numpy()
        if spot_batches is not None:
            pool &= batches.isin(_as_list(spot_batches)).to_numpy()
        for t in np.unique(labels[pool]):
            members = np.flatnonzero(pool & (labels == t))
            take = rng.choice(members, int(round(spot_fraction * members.size)), replace=False)
            in_spot[take] = True
        in_ref &= ~in_spot
    else:
        in_spot = batches.isin(_as_list(spot_batches)).to_numpy() & adata.obs[label_key].notna().to_numpy()
    if not in_ref.any() or not in_spot.any():
        raise ValueError(f"Empty reference or spot pool: check reference_batches={reference_batches!r}, spot_batches={spot_batches!r}.")

    spots = simulate_spots(adata[in_spot], label_key=label_key, seed=seed, **simulate_params)
    ref = adata[in_ref]
    ref_part = ad.AnnData(
        X=sp.csr_matrix(ref.X, dtype=np.float32),
        obs=pd.DataFrame({"batch": ref.obs[batch_key].astype(str).to_numpy(),
                          "cell_type": ref.obs[label_key].astype(str).to_numpy(),
                          "role": "reference"}, index=ref.obs_names.copy()),
        var=pd.DataFrame(index=adata.var_names.copy()),
    )
    spot_part = ad.AnnData(
        X=spots.X,
        obs=pd.DataFrame({"batch": spot_batch, "cell_type": spots.obs["dominant_type"].astype(str).to_numpy(),
                          "role": "query"}, index=spots.obs_names),
        var=pd.DataFrame(index=adata.var_names.copy()),
    )
    if set(ref_part.obs_names) & set(spot_part.obs_names):
        raise ValueError("A reference cell is named like a spot ('spot_r..'); rename the cells first.")
    combined = ad.concat([ref_part, spot_part])
    combined.obs["batch"] = combined.obs["batch"].astype("category")
    combined.obs["cell_type"] = combined.obs["cell_type"].astype("category")
    combined.obs["role"] = pd.Categorical(combined.obs["role"], categories=["reference", "query"])
    combined.obsm["spatial"] = np.vstack([np.full((ref_part.n_obs, 2), np.nan), spots.obsm["spatial"]])
    combined.uns["simulate_spots"] = dict(spots.uns["simulate_spots"], reference_batches=ref_vals,
                                          spot_batches=None if spot_batches is None else _as_list(spot_batches))
    combined.uns["X_kind"] = "raw counts (spots: summed counts of their cells)"

    truth = spots.obs[["dominant_type", "n_cells"] + [c for c in spots.obs if c.startswith(PROPORTION_PREFIX)]].copy()
    truth = truth.rename(columns={"dominant_type": "cell_type"})
    truth.insert(1, "x", spots.obsm["spatial"][:, 0])
    truth.insert(2, "y", spots.obsm["spatial"][:, 1])
    truth.index.name = "cell"
    return combined, truth


def evaluate_spots(
    emb,
    obs: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    variant: str = "similarity",
    normalise: str = "paper",
    role_key: str = "role",
    label_key: str = "cell_type",
    seed: int = 0,
    device: str = "auto",
    **params,
) -> pd.DataFrame:
    """Correlation of true and predicted per-type proportions of simulated spots in one embedding.

    Parameters
    ----------
    emb
        Joint embedding of reference cells and spots (rows in ``obs`` order).
    obs
        With ``role`` (``reference``/``query``) and ``cell_type`` for the reference.
    truth
        From :func:`make_spots_application` (index: spot names present in ``obs``).
    variant, normalise, seed, device, **params
        See :func:`davae_study.spatial.spot_type_scores`.

    Returns
    -------
    ``type, r, n, note`` per type (see :func:`davae_study.spatial.proportion_correlation`).
    """
    emb = np.asarray(emb)
    if emb.shape[0] != len(obs):
        raise ValueError(f"Embedding has {emb.shape[0]} rows for {len(obs)} cells.")
    adata = ad.AnnData(obs=obs[[role_key, label_key]].copy())
    ref, qry = split_reference_query(adata, key=role_key, reference="reference", query="query")
    ref &= obs[label_key].notna().to_numpy()
    scores = spot_type_scores(emb[qry], emb[ref], obs[label_key][ref], variant=variant, normalise=normalise,
                              spot_names=obs.index[qry], seed=seed, device=device, **params)
    return proportion_correlation(truth, scores)


# ----------------------------------------------------------------------------------------------------------
# tidy metric rows


def transfer_metric_rows(
    table: pd.DataFrame,
    *,
    application: str,
    method: str,
    truth_labels: pd.Series | None = None,
    truth_proportions: pd.DataFrame | None = None,
    note: str = "",
) -> pd.DataFrame:
    """Tidy rows (CONTRACTS format) scoring a transfer table against whatever ground truth exists.

    - ``transfer_accuracy`` (``all`` and per true type, i.e. per-type recall) and ``transfer_macro_f1``
      (``all``) where ``truth_labels`` (indexed by cell) is known for query cells;
    - ``spot_proportion_corr`` (per type, and ``all`` = mean over types) where ``truth_proportions`` has
      ``proportion:<type>`` columns.

    With no ground truth the result is empty (a real application without truth); a failed method gives
    NaN rows carrying ``note``.
    """
    rows: list[dict[str, Any]] = []

    def add(metric, group, value, n, why=""):
        rows.append({"application": application, "method": method, "metric": metric, "group": group,
                     "value": value, "n": n, "note": why or note})

    has_labels = truth_labels is not None and truth_labels.reindex(table.index).notna().any()
    has_props = truth_proportions is not None and any(c.startswith(PROPORTION_PREFIX) for c in truth_proportions)
    if note:  # method failed: NaN rows for every metric the application would have had
        if truth_labels is not None:
            add("transfer_accuracy", "all", np.nan, 0)
            add("transfer_macro_f1", "all", np.nan, 0)
        if has_props:
            add("spot_proportion_corr", "all", np.nan, 0)
        return pd.DataFrame(rows, columns=TIDY_COLUMNS)
    if has_labels:
        truth = truth_labels.reindex(table.index)
        scores = transfer_scores(table["predicted"], truth)
        add("transfer_accuracy", "all", scores["accuracy"], scores["n"])
        add("transfer_macro_f1", "all", scores["macro_f1"], scores["n"])
        known = truth.notna()
        for t in sorted(truth[known].astype(str).unique()):
            m = (truth.astype(str) == t) & known
            add("transfer_accuracy", t, float((table["predicted"][m].astype(str) == t).mean()), int(m.sum()))
    elif truth_labels is not None:
        add("transfer_accuracy", "all", np.nan, 0, "no query cell has a known label")
        add("transfer_macro_f1", "all", np.nan, 0, "no query cell has a known label")
    if has_props:
        corr = proportion_correlation(truth_proportions, table)
        add("spot_proportion_corr", "all", float(corr["r"].mean()) if corr["r"].notna().any() else np.nan,
            int(corr["n"].max()) if len(corr) else 0, "" if corr["r"].notna().any() else "no type could be scored")
        for row in corr.itertuples():
            add("spot_proportion_corr", row.type, row.r, row.n, row.note)
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)


# ----------------------------------------------------------------------------------------------------------
# workflow steps (called by workflow/scripts/transfer*.py)


def simulate_spots_step(source: str, out_h5ad: str, out_truth: str, **params) -> ad.AnnData:
    """Read single cells (h5ad of raw counts), write the spots application file and its truth table."""
    adata = ad.read_h5ad(source)
    combined, truth = make_spots_application(adata, **params)
    log.info("simulated %d spots from %s; reference %d cells", (combined.obs["role"] == "query").sum(), source,
             (combined.obs["role"] == "reference").sum())
    write_h5ad(combined, out_h5ad)
    write_tsv(truth.reset_index(), out_truth)
    return combined


def _read_truth(path: str | None) -> pd.DataFrame | None:
    if not path:
        return None
    truth = read_tsv(path)
    if "cell" not in truth:
        raise ValueError(f"{path}: the truth table needs a 'cell' column (see simulate_spots_step).")
    return truth.set_index(truth["cell"].astype(str)).drop(columns="cell")


def transfer_step(
    prepared_path: str,
    integrated_path: str,
    out_table: str,
    out_metrics: str,
    *,
    application: str,
    method: str,
    key: str = "role",
    reference: str | Sequence[str] = "reference",
    query: str | Sequence[str] | None = "query",
    label_key: str = "cell_type",
    scores: str = "classifier",
    classifier: str = "mlp",
    threshold: float = 0.0,
    mlp: Mapping[str, Any] | None = None,
    knn: Mapping[str, Any] | None = None,
    similarity: Mapping[str, Any] | None = None,
    truth_path: str | None = None,
    seed: int = 0,
    device: str = "auto",
) -> pd.DataFrame:
    """Transfer labels to the query cells of one integrated application and score them.

    Writes ``transfer/<method>.tsv`` (``cell, predicted, confidence, prob:<type>…``) and the tidy
    ``transfer/<method>.metrics.tsv``. ``scores='classifier'`` uses ``classifier`` (``mlp``/``knn``);
    ``scores='similarity'`` the paper's cosine-similarity scores (for spots). Ground truth: the
    ``truth_path`` table (``cell``, ``cell_type``, ``proportion:<type>``…) when given, else the query cells'
    own ``obs[label_key]`` where known. A failed method gives a header-only table and NaN metric rows; the
    method's notes (``uns['method']['notes']``) are appended to every metric row's ``note``.
    """
    from .metrics._table import method_notes, with_notes
    from .pipeline import method_failed  # imported lazily to keep this module light

    prepared = ad.read_h5ad(prepared_path, backed="r")
    obs = prepared.obs.copy()
    prepared.file.close()
    integrated = ad.read_h5ad(integrated_path)
    if not integrated.obs_names.equals(obs.index):
        raise ValueError(f"{integrated_path} and {prepared_path} differ in cells; rerun the integrate rule.")
    if label_key not in obs:
        raise ValueError(f"obs['{label_key}'] is missing from {prepared_path}: the reference needs cell-type labels.")
    ref, qry = split_reference_query(ad.AnnData(obs=obs), key=key, reference=reference, query=query)
    truth = _read_truth(truth_path)
    if truth is not None and "cell_type" in truth:
        truth_labels = truth["cell_type"]
    elif obs.loc[qry, label_key].notna().any():
        truth_labels = obs.loc[qry, label_key]
    else:
        truth_labels = None
    ref &= obs[label_key].notna().to_numpy()

    failed = method_failed(integrated)
    types = sorted(obs.loc[ref, label_key].astype(str).unique())
    if failed:
        table = pd.DataFrame(columns=["predicted", "confidence"] + [PROB_PREFIX + t for t in types])
        table.index.name = "cell"
        metrics = transfer_metric_rows(table, application=application, method=method, truth_labels=truth_labels,
                                       truth_proportions=truth, note=f"method failed: {failed}")
    else:
        emb = np.asarray(integrated.obsm["X_emb"])
        names = obs.index[qry]
        if scores == "similarity":
            table = spot_type_scores(emb[qry], emb[ref], obs.loc[ref, label_key], variant="similarity",
                                     spot_names=names, threshold=threshold, **dict(similarity or {}))
        elif scores == "classifier":
            params = dict((mlp if classifier == "mlp" else knn) or {})
            table = _classify(emb[ref], obs.loc[ref, label_key], emb[qry], classifier=classifier, seed=seed,
                              device=device, threshold=threshold, names=names, **params)
        else:
            raise ValueError(f"transfer scores={scores!r}: use 'classifier' or 'similarity'.")
        metrics = transfer_metric_rows(table, application=application, method=method, truth_labels=truth_labels,
                                       truth_proportions=truth)
        metrics = with_notes(metrics, method_notes(integrated))
        log.info("transfer %s/%s: %d reference, %d query cells; %s", application, method, int(ref.sum()),
                 int(qry.sum()), metrics.loc[metrics["group"] == "all", ["metric", "value"]].to_dict("records"))
    write_tsv(table.reset_index(names="cell"), out_table)
    write_tsv(metrics, out_metrics)
    return metrics


def spatial_clusters_step(
    prepared_path: str,
    integrated_path: str,
    out_tsv: str,
    *,
    n_clusters: int = 26,
    n_neighbors: int = 15,
    key: str | None = None,
    values: str | Sequence[str] | None = None,
    truth_path: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Leiden clusters of the joint embedding (resolution searched for ``n_clusters``), with coordinates.

    Writes ``cell, batch, cluster, x, y, resolution``; ``x``/``y`` come from the prepared
    ``obsm['spatial']`` or, failing that, from the truth table (NaN for cells without coordinates). With
    ``key``/``values`` only those cells (e.g. the spots) are clustered. A failed method gives a header-only
    table.
    """
    from .pipeline import method_failed

    columns = ["cell", "batch", "cluster", "x", "y", "resolution"]
    prepared = ad.read_h5ad(prepared_path)
    integrated = ad.read_h5ad(integrated_path)
    if method_failed(integrated):
        table = pd.DataFrame(columns=columns)
        write_tsv(table, out_tsv)
        return table
    keep = np.ones(prepared.n_obs, dtype=bool)
    if key is not None:
        if key not in prepared.obs:
            raise ValueError(f"obs['{key}'] is missing; fix the application's spatial 'key'.")
        keep = prepared.obs[key].astype(str).isin(_as_list(values)).to_numpy()
    xy = np.full((prepared.n_obs, 2), np.nan)
    if "spatial" in prepared.obsm:
        xy = np.asarray(prepared.obsm["spatial"], dtype=float)[:, :2]
    else:
        truth = _read_truth(truth_path)
        if truth is not None and {"x", "y"} <= set(truth.columns):
            xy = truth.reindex(prepared.obs_names)[["x", "y"]].to_numpy(dtype=float)
    labels, resolution = leiden_n_clusters(np.asarray(integrated.obsm["X_emb"])[keep], n_clusters,
                                           n_neighbors=n_neighbors, seed=seed)
    table = pd.DataFrame({"cell": prepared.obs_names[keep], "batch": prepared.obs["batch"].to_numpy()[keep],
                          "cluster": np.asarray(labels), "x": xy[keep, 0], "y": xy[keep, 1],
                          "resolution": resolution})
    log.info("%d clusters (target %d) at resolution %.4g", len(labels.categories), n_clusters, resolution)
    write_tsv(table, out_tsv)
    return table


# ----------------------------------------------------------------------------------------------------------
# config → step keyword arguments (used by workflow/rules/transfer.smk; kept here so they are tested)

#: defaults of the global ``transfer:`` config block
TRANSFER_DEFAULTS: dict[str, Any] = {
    "classifier": "mlp",
    "threshold": 0.0,
    "mlp": {"hidden": [64, 32], "dropout": 0.05, "lr": 0.01, "epochs": 25, "batch_size": 100,
            "validation_split": 0.1, "patience": 5, "standardize": "global"},
    "knn": {"k": 15, "weights": "uniform", "metric": "euclidean"},
    "similarity": {"normalise": "paper"},
    "spatial": {"n_clusters": 26, "n_neighbors": 15},
}

_APP_KEYS = {"key", "reference", "query", "label_key", "scores", "classifier", "threshold", "mlp", "knn",
             "similarity", "truth", "spatial"}


def transfer_config(config: Mapping[str, Any], app: str) -> dict[str, Any]:
    """Keyword arguments of :func:`transfer_step` for ``app``: the application's ``transfer:`` entries over
    the global ``transfer:`` block over :data:`TRANSFER_DEFAULTS` (``truth`` and ``spatial`` excluded)."""
    glob = dict(config.get("transfer") or {})
    app_cfg = dict(config["applications"][app].get("transfer") or {})
    unknown = set(app_cfg) - _APP_KEYS
    if unknown:
        raise ValueError(f"applications.{app}.transfer: unknown keys {sorted(unknown)}; use {sorted(_APP_KEYS)}.")
    if "reference" not in app_cfg:
        raise ValueError(f"applications.{app}.transfer has no 'reference': name the reference value of obs[key].")
    out: dict[str, Any] = {
        "key": app_cfg.get("key", "role"),
        "reference": app_cfg["reference"],
        "query": app_cfg.get("query", "query" if app_cfg.get("key", "role") == "role" else None),
        "label_key": app_cfg.get("label_key", "cell_type"),
        "scores": app_cfg.get("scores", "classifier"),
    }
    for k in ("classifier", "threshold"):
        out[k] = app_cfg.get(k, glob.get(k, TRANSFER_DEFAULTS[k]))
    for k in ("mlp", "knn", "similarity"):
        out[k] = {**TRANSFER_DEFAULTS[k], **dict(glob.get(k) or {}), **dict(app_cfg.get(k) or {})}
    return out


def spatial_config(config: Mapping[str, Any], app: str) -> dict[str, Any]:
    """Keyword arguments of :func:`spatial_clusters_step` for ``app`` (its ``transfer.spatial`` block over the
    global ``transfer.spatial`` over the defaults)."""
    glob = dict((config.get("transfer") or {}).get("spatial") or {})
    app_spatial = (config["applications"][app].get("transfer") or {}).get("spatial")
    if app_spatial is True:
        app_spatial = {}
    return {**TRANSFER_DEFAULTS["spatial"], **glob, **dict(app_spatial or {})}


def simulate_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Keyword arguments of :func:`simulate_spots_step` for ``transfer.simulate_spots.<name>`` (minus
    ``source``, the rule's input)."""
    table = (config.get("transfer") or {}).get("simulate_spots") or {}
    if name not in table:
        raise ValueError(f"transfer.simulate_spots has no entry {name!r}; add one with a 'source' h5ad.")
    params = dict(table[name])
    params.pop("source", None)
    if "grid" in params:
        params["grid"] = tuple(params["grid"])
    if isinstance(params.get("cells_per_spot"), list):
        params["cells_per_spot"] = tuple(params["cells_per_spot"])
    return params
