"""``evaluate``: every configured metric of one integrated AnnData -> tidy + per-repeat tables;
``summarise``: Tran et al.'s min-max normalised ARI scores and F1 across methods of each application."""

from __future__ import annotations

import copy
import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ._table import COLUMNS, REPEAT_COLUMNS, frame, method_notes, nan_row, with_notes
from .ari import ari_tran
from .asw import asw_batch
from .graph import graph_connectivity
from .kbet import kbet_per_celltype, kbet_pooled
from .leiden import RESOLUTIONS, leiden_rows
from .lisi import lisi
from .purity import knn_purity

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "enabled": ["ari", "kbet", "lisi", "asw_batch", "graph_connectivity", "knn_purity", "leiden"],
    "seed": 0,
    "ari": {"n_iter": 20, "frac": 0.8, "kmeans_n_init": 1, "kmeans_max_iter": 30, "kmeans_init": "random",
            "kmeans_algorithm": "hartigan-wong"},
    "kbet": {"pcts": [5, 10, 15, 20, 25], "n_repeat": 100, "alpha": 0.05, "adapt": True, "n_perm": 3,
             "test_size": None, "do_pca": False},
    "kbet_pooled": {"max_cells": None},  # plus any kbet key; unset kbet keys follow the kbet section
    "lisi": {"perplexity": 30},
    "asw_batch": {"max_cells_per_type": None},
    "graph_connectivity": {"n_neighbors": 15},
    "knn_purity": {"k": 15},
    "leiden": {"n_neighbors": 15, "resolutions": list(RESOLUTIONS)},
}
"""Default ``metrics:`` config section (docs/metrics.md)."""

METRIC_NAMES: dict[str, list[str]] = {
    "ari": ["ari_celltype", "one_minus_ari_batch"],
    "kbet": ["kbet_acceptance", "kbet_acceptance_null"],
    "kbet_pooled": ["kbet_acceptance_pooled"],
    "lisi": ["ilisi", "ilisi_median", "clisi", "clisi_median"],
    "asw_batch": ["asw_batch"],
    "graph_connectivity": ["graph_connectivity"],
    "knn_purity": ["knn_purity"],
    "leiden": ["nmi_leiden", "ari_leiden"],
}
"""Metric rows each enabled entry produces (the ``metric`` column)."""

NEEDS_LABELS = {"ari", "kbet", "kbet_pooled", "asw_batch", "graph_connectivity", "knn_purity", "leiden"}
LABEL_METRICS = {"ari_celltype", "one_minus_ari_batch", "kbet_acceptance", "kbet_acceptance_null",
                 "kbet_acceptance_pooled", "clisi", "clisi_median", "asw_batch", "graph_connectivity",
                 "knn_purity", "nmi_leiden", "ari_leiden"}


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge a config ``metrics:`` mapping onto :data:`DEFAULTS`; unknown names raise ``ValueError``."""
    out = copy.deepcopy(DEFAULTS)
    for key, val in (params or {}).items():
        if key not in out:
            raise ValueError(f"unknown metrics config key {key!r}; use one of {sorted(out)}")
        if isinstance(out[key], dict):
            if not isinstance(val, Mapping):
                raise ValueError(f"metrics.{key} must be a mapping, got {type(val).__name__}")
            allowed = set(out[key]) | (set(DEFAULTS["kbet"]) if key == "kbet_pooled" else set())
            bad = set(val) - allowed
            if bad:
                raise ValueError(f"unknown keys {sorted(bad)} in metrics.{key}; allowed: {sorted(allowed)}")
            out[key].update(val)
        else:
            out[key] = val
    unknown = set(out["enabled"]) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"metrics.enabled has unknown metrics {sorted(unknown)}; use {sorted(METRIC_NAMES)}")
    out["kbet_pooled"] = {**out["kbet"], **out["kbet_pooled"]}
    return out


def _failed_rows(enabled, n: int, note: str) -> list[dict]:
    return [nan_row(m, "all", n, note) for e in enabled for m in METRIC_NAMES[e]]


def _labels(adata, label_key: str):
    if label_key not in adata.obs:
        return None, f"no cell-type labels (obs[{label_key!r}] absent)"
    lab = adata.obs[label_key]
    if lab.isna().all():
        return None, f"no cell-type labels (obs[{label_key!r}] all missing)"
    return lab.to_numpy(), ""


def evaluate(
    adata,
    *,
    application: str,
    method: str,
    batch_key: str = "batch",
    label_key: str = "cell_type",
    embedding_key: str = "X_emb",
    params: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score one integrated AnnData with every enabled metric.

    Parameters
    ----------
    adata
        ``integrated/<method>.h5ad`` (docs/CONTRACTS.md): ``obsm[embedding_key]``, ``obs[batch_key]``,
        ``obs[label_key]`` where known, ``uns['method']['status']``.
    application, method
        Written into the ``application`` and ``method`` columns.
    batch_key, label_key, embedding_key
        Where batches, cell types and the embedding are.
    params
        The config's ``metrics:`` mapping (see :data:`DEFAULTS`); missing keys take the defaults.

    Returns
    -------
    tidy
        Columns ``application, method, metric, group, value, n, note``.
    repeats
        The same plus ``repeat``: per-repeat values (kBET repeats, ARI iterations).

    Notes
    -----
    Never raises for a failed method: a ``status: failed`` method (or a missing embedding) yields NaN rows
    for every enabled metric with ``note = 'method failed: <error>'``. Missing labels give NaN rows for the
    label-based metrics; an error inside one metric gives NaN rows for it with the error in ``note``.
    The method's own notes (``uns['method']['notes']``, e.g. DAVAE's batches left unaligned) are appended to
    every row's ``note`` of the tidy table. Bad ``params`` raise ``ValueError``.
    """
    p = resolve_params(params)
    enabled = list(p["enabled"])
    n = int(adata.n_obs)
    info = adata.uns.get("method", {}) if hasattr(adata, "uns") else {}
    rows: list[dict] = []
    reps: list[dict] = []
    status = str(info.get("status", "ok")) if isinstance(info, Mapping) else "ok"
    if status == "failed" or embedding_key not in adata.obsm:
        err = info.get("error", "") if isinstance(info, Mapping) else ""
        err = err or f"no obsm[{embedding_key!r}] in the integrated AnnData"
        rows = _failed_rows(enabled, n, f"method failed: {err}")
        return _finish(rows, reps, application, method)
    if batch_key not in adata.obs:
        raise ValueError(f"obs[{batch_key!r}] missing; the prepared AnnData must carry the batch labels")
    x = adata.obsm[embedding_key]
    batch = adata.obs[batch_key].to_numpy()
    labels, why = _labels(adata, label_key)
    seed = int(p["seed"])
    for name in enabled:
        try:
            t, r = _run_metric(name, x, batch, labels, why, p[name], seed)
        except Exception as exc:  # one broken metric must not hide the others
            log.exception("metric %s failed for %s/%s", name, application, method)
            rows += [nan_row(m, "all", n, f"metric error: {type(exc).__name__}: {exc}") for m in METRIC_NAMES[name]]
            continue
        rows += t
        reps += r
    tidy, rep = _finish(rows, reps, application, method)
    return with_notes(tidy, method_notes(adata)), rep


def _run_metric(name, x, batch, labels, why, params, seed) -> tuple[list[dict], list[dict]]:
    """Rows and per-repeat rows of one metric; label-based ones become NaN rows (``why``) without labels."""
    n = len(batch)
    if labels is None and name in NEEDS_LABELS:
        return [nan_row(m, "all", n, why) for m in METRIC_NAMES[name]], []
    if name == "ari":
        return ari_tran(x, batch, labels, seed=seed, **params)
    if name == "kbet":
        return kbet_per_celltype(x, batch, labels, seed=seed, **params)
    if name == "kbet_pooled":
        return kbet_pooled(x, batch, labels, seed=seed, **params)
    if name == "lisi":
        rows = lisi(x, batch, labels, **params)
        if labels is None:
            rows = [r for r in rows if r["metric"] not in LABEL_METRICS]
            rows += [nan_row(m, "all", n, why) for m in ("clisi", "clisi_median")]
        return rows, []
    if name == "asw_batch":
        return asw_batch(x, batch, labels, seed=seed, **params), []
    if name == "graph_connectivity":
        return graph_connectivity(x, labels, **params), []
    if name == "knn_purity":
        return knn_purity(x, labels, **params), []
    if name == "leiden":
        return leiden_rows(x, labels, seed=seed, **params), []
    raise ValueError(f"unknown metric {name!r}; use one of {sorted(METRIC_NAMES)}")


def score(
    adata,
    metric: str,
    *,
    batch_key: str = "batch",
    label_key: str = "cell_type",
    embedding_key: str = "X_emb",
    seed: int = 0,
    **params,
) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
    """One metric of one AnnData, outside the pipeline.

    Parameters
    ----------
    adata
        AnnData with ``obsm[embedding_key]``, ``obs[batch_key]`` and (for label-based metrics)
        ``obs[label_key]``.
    metric
        ``ari``, ``kbet``, ``kbet_pooled``, ``lisi``, ``asw_batch``, ``graph_connectivity``, ``knn_purity``
        or ``leiden``.
    seed, **params
        Seed and the metric's own config keys (e.g. ``n_repeat=20`` for ``kbet``), over the defaults.

    Returns
    -------
    values
        The overall (``group == 'all'``) value of each row metric, indexed by metric name.
    table
        Tidy per-group rows: ``metric, group, value, n, note``.
    repeats
        Per-repeat rows (kBET repeats, ARI iterations), the same columns plus ``repeat``.

    Examples
    --------
    >>> values, table, _ = score(adata, "kbet", n_repeat=20)  # doctest: +SKIP
    >>> values["kbet_acceptance"]  # doctest: +SKIP
    """
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; use one of {sorted(METRIC_NAMES)}")
    p = resolve_params({metric: params})
    if embedding_key not in adata.obsm:
        raise ValueError(f"obsm[{embedding_key!r}] missing; pass embedding_key= naming the embedding")
    if batch_key not in adata.obs:
        raise ValueError(f"obs[{batch_key!r}] missing; pass batch_key= naming the batch column")
    labels, why = _labels(adata, label_key)
    rows, reps = _run_metric(metric, adata.obsm[embedding_key], adata.obs[batch_key].to_numpy(), labels, why,
                             p[metric], int(seed))
    table, rep = frame(rows), frame(reps, repeats=True)
    values = table[table["group"] == "all"].set_index("metric")["value"]
    return values, table, rep


def _finish(rows, reps, application, method) -> tuple[pd.DataFrame, pd.DataFrame]:
    tidy = frame(rows)
    rep = frame(reps, repeats=True)
    for df in (tidy, rep):
        df.insert(0, "method", str(method))
        df.insert(0, "application", str(application))
    return tidy[COLUMNS].reset_index(drop=True), rep[REPEAT_COLUMNS].reset_index(drop=True)


def _minmax(v: pd.Series) -> tuple[pd.Series, str]:
    ok = v.notna()
    if ok.sum() == 0:
        return v * np.nan, "no method has a value"
    lo, hi = v[ok].min(), v[ok].max()
    if hi == lo:
        return v * np.nan, f"min-max undefined: all {ok.sum()} methods score {lo:.4g}"
    return (v - lo) / (hi - lo), f"min-max over {ok.sum()} methods"


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """Add Tran et al.'s normalised ARI scores and F1 per application (as extra ``metric`` rows).

    For every application, across its methods (``group == 'all'`` rows):
    ``ari_celltype_norm`` = min-max of ``ari_celltype``; ``one_minus_ari_batch_norm`` = min-max of
    ``one_minus_ari_batch`` (equal to ``1 - `` the min-max normalised ARI batch);
    ``ari_f1 = 2 a b / (a + b)`` with ``a = one_minus_ari_batch_norm``, ``b = ari_celltype_norm``.
    NaN inputs stay NaN (their note is carried over); an application where all methods tie gives NaN.

    Returns the input rows followed by the new rows, same columns.
    """
    missing = set(COLUMNS) - set(metrics.columns)
    if missing:
        raise ValueError(f"metrics table lacks columns {sorted(missing)}; pass the tidy table from evaluate()")
    new = []
    metrics = metrics.assign(note=metrics["note"].fillna("").astype(str))  # empty notes read back as NaN
    base = metrics[metrics["group"] == "all"]
    for app, sub in base.groupby("application", sort=False):
        wide_v = sub.pivot_table(index="method", columns="metric", values="value", aggfunc="first", dropna=False)
        notes = sub.set_index(["method", "metric"])["note"]
        ns = sub.set_index(["method", "metric"])["n"]
        if not {"ari_celltype", "one_minus_ari_batch"} <= set(wide_v.columns):
            continue
        methods = list(dict.fromkeys(sub["method"]))
        wide_v = wide_v.reindex(methods)
        ct_norm, ct_note = _minmax(wide_v["ari_celltype"])
        b_norm, b_note = _minmax(wide_v["one_minus_ari_batch"])
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = 2 * ct_norm * b_norm / (ct_norm + b_norm)
        f1[(ct_norm + b_norm) == 0] = 0.0
        for m in methods:
            def note_for(src: str, fallback: str) -> str:
                v = wide_v.loc[m, src] if src in wide_v else np.nan
                return str(notes.get((m, src), "")) if pd.isna(v) else fallback

            n_ct = int(ns.get((m, "ari_celltype"), 0))
            n_b = int(ns.get((m, "one_minus_ari_batch"), 0))
            new.append({"application": app, "method": m, "metric": "ari_celltype_norm", "group": "all",
                        "value": ct_norm[m], "n": n_ct, "note": note_for("ari_celltype", ct_note)})
            new.append({"application": app, "method": m, "metric": "one_minus_ari_batch_norm", "group": "all",
                        "value": b_norm[m], "n": n_b, "note": note_for("one_minus_ari_batch", b_note)})
            f_note = note_for("ari_celltype", "") or note_for("one_minus_ari_batch", "")
            if not f_note and pd.isna(f1[m]):
                f_note = ct_note if pd.isna(ct_norm[m]) else b_note
            new.append({"application": app, "method": m, "metric": "ari_f1", "group": "all",
                        "value": f1[m], "n": min(n_ct, n_b),
                        "note": f_note or "Tran et al. F1 of the normalised scores"})
    out = pd.concat([metrics[COLUMNS], pd.DataFrame(new, columns=COLUMNS)], ignore_index=True)
    out["value"] = out["value"].astype(float)
    out["note"] = out["note"].fillna("").astype(str)
    return out
