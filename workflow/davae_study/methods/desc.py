"""DESC (Li et al. 2020) behind the study's method contract, via the PyTorch re-implementation
:mod:`davae_study.desc` (faithful to eleozzr/desc 2.1.1; differences in docs/desc.md).

DESC has no batch term in its model: batch effects are removed only insofar as clustering pulls cells of
one type together, optionally helped by per-batch scaling of the input (``scale_bygroup``).

Params (config ``methods: desc: params:``), defaults are the original package's unless stated:

dims : list[int] or None, default None
    Encoder sizes after the input layer, e.g. ``[64]`` or ``[128, 32]``. None = DESC's choice by cell
    count (>20k [128,32]; >10k [64,32]; >5k [32,16]; >2k [128]; >500 [64]; else [16]).
pretrain_epochs : int, default 300
    Each denoising stack trains pretrain_epochs/2 epochs (3 LR phases), fine-tuning ceil(pretrain_epochs/50)
    phases of 50 epochs (LR 1, 0.1, ...), all with early stopping.
layerwise : bool, default True
    Layer-wise stack pretraining before end-to-end fine-tuning (DESC ``is_stacked``).
resolution : float, default 0.8
    Leiden resolution of the centre initialisation (the paper's runs used Louvain at 0.8; the package's
    default list is [0.6, 0.8]; one value per run here).
n_neighbors : int, default 10
    kNN size of the initialisation graph.
alpha : float, default 1.0
    Student-t degrees of freedom.
tol : float, default 0.005
    Stop when fewer than this fraction of cells change cluster between rounds.
max_rounds : int, default 1000
    Maximum clustering rounds (DESC ``max_iter``).
epochs_per_round : int, default 5
    Epochs of KL training per round (DESC ``epochs_fit``).
batch_size : int, default 256
drop_rate : float, default 0.2
    Dropout of the denoising stacks.
early_stopping : bool, default True
    Keras-style early stopping (min_delta 1e-4, patience 10) in every pretraining phase.
scale_bygroup : bool, default False
    Z-score each gene within each batch (sd floor 1e-5, clipped above at ``max_value``) before DESC, as
    the package's ``scale_bygroup``. Off by default: the DAVAE paper's runs fed log-normalised data.
max_value : float, default 6.0
    Upper clip of ``scale_bygroup``.
init_max_cells : int, default 200000
    Above this many cells the initialisation graph is built on a random subsample (as DESC).
progress : bool, default True
    tqdm progress bars on stderr.

The original's names ``louvain_resolution``, ``max_iter`` and ``epochs_fit`` are accepted as aliases of
``resolution``, ``max_rounds`` and ``epochs_per_round``.

Output
------
obsm['X_emb'] : float32 (n_cells, dims[-1]), the encoder's features after clustering.
obs['desc_cluster'] : categorical cluster labels (argmax of the soft assignments).
obsm['desc_prob'] : float32 (n_cells, n_clusters), Student-t soft assignments Q.
uns['desc'] : dims, n_clusters, n_rounds, converged, max_rounds, tol, hit_max_rounds, note, delta_label per
    round, device, epochs run per pretraining phase (early stopping), wall seconds per stage.
    ``hit_max_rounds`` is True when the clustering loop stopped at ``max_rounds`` without converging (fewer
    than ``tol`` of the labels changing); ``note`` then says so in one line (logged as a warning, and copied
    into the scaling benchmark table's ``method_note``), else it is empty.
No corrected expression. Pretrains fresh on every call (nothing is cached on disk).
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd

DEFAULTS: dict = {
    "dims": None,
    "pretrain_epochs": 300,
    "layerwise": True,
    "resolution": 0.8,
    "n_neighbors": 10,
    "alpha": 1.0,
    "tol": 0.005,
    "max_rounds": 1000,
    "epochs_per_round": 5,
    "batch_size": 256,
    "drop_rate": 0.2,
    "early_stopping": True,
    "scale_bygroup": False,
    "max_value": 6.0,
    "init_max_cells": 200_000,
    "progress": True,
}
log = logging.getLogger(__name__)

_ALIASES = {"louvain_resolution": "resolution", "max_iter": "max_rounds", "epochs_fit": "epochs_per_round"}


def _resolve_params(params: dict) -> dict:
    params = {_ALIASES.get(k, k): v for k, v in params.items()}
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"desc: unknown param(s) {unknown}; valid params are {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if isinstance(p["resolution"], (list, tuple)):
        raise ValueError("desc: give one 'resolution' per method entry (a number), not a list")
    if p["dims"] is not None and (isinstance(p["dims"], (int, str)) or not all(int(d) > 0 for d in p["dims"])):
        raise ValueError(f"desc: 'dims' must be null or a list of positive layer sizes, got {p['dims']!r}")
    for key in ("pretrain_epochs", "max_rounds", "epochs_per_round", "batch_size", "n_neighbors"):
        if int(p[key]) < 1:
            raise ValueError(f"desc: '{key}' must be >= 1, got {p[key]!r}")
    return p


def run(adata: ad.AnnData, *, seed: int = 0, device: str = "auto", **params) -> ad.AnnData:
    """Run DESC on ``adata.X``; see the module docstring for params and outputs.

    Parameters
    ----------
    adata
        Prepared AnnData: ``X`` log-normalised features (CSR or dense), ``obs['batch']``.
    seed
        Seeds Python, NumPy, torch and the Leiden initialisation.
    device
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``...
    """
    from davae_study.desc import fit_desc, scale_by_group

    p = _resolve_params(params)
    X = adata.X
    if p["scale_bygroup"]:
        if "batch" not in adata.obs:
            raise ValueError("desc: scale_bygroup needs adata.obs['batch']; run the prepare step first")
        X = scale_by_group(X, adata.obs["batch"].astype(str).to_numpy(), max_value=p["max_value"])

    res = fit_desc(
        X,
        dims=p["dims"],
        pretrain_epochs=int(p["pretrain_epochs"]),
        layerwise=bool(p["layerwise"]),
        resolution=float(p["resolution"]),
        n_neighbors=int(p["n_neighbors"]),
        alpha=float(p["alpha"]),
        tol=float(p["tol"]),
        max_rounds=int(p["max_rounds"]),
        epochs_per_round=int(p["epochs_per_round"]),
        batch_size=int(p["batch_size"]),
        drop_rate=float(p["drop_rate"]),
        early_stopping=bool(p["early_stopping"]),
        init_max_cells=int(p["init_max_cells"]),
        seed=int(seed),
        device=device,
        progress=bool(p["progress"]),
    )

    result = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy())
    result.obsm["X_emb"] = np.ascontiguousarray(res.embedding, dtype=np.float32)
    k = res.q.shape[1]
    result.obs["desc_cluster"] = pd.Categorical(res.labels.astype(str), categories=[str(j) for j in range(k)])
    result.obs["desc_cluster"] = result.obs["desc_cluster"].cat.remove_unused_categories()
    result.obsm["desc_prob"] = np.ascontiguousarray(res.q, dtype=np.float32)
    hit_cap = not res.converged
    note = ""
    if hit_cap:
        last = float(res.delta_labels[-1]) if len(res.delta_labels) else float("nan")
        note = (f"desc: clustering stopped at max_rounds={int(p['max_rounds'])} without converging "
                f"(last delta_label {last:.4f}, tol {float(p['tol']):g})")
        log.warning(note)
    result.uns["desc"] = {
        "dims": [int(d) for d in res.dims],
        "n_clusters": int(k),
        "n_clusters_init": int(res.init_labels.max() + 1),
        "n_rounds": int(res.n_rounds),
        "converged": bool(res.converged),
        "max_rounds": int(p["max_rounds"]),
        "tol": float(p["tol"]),
        "hit_max_rounds": bool(hit_cap),
        "note": note,
        "delta_label": np.asarray(res.delta_labels, dtype=float),
        "device": res.device,
        "scale_bygroup": bool(p["scale_bygroup"]),
        "pretrain_epochs_run": {f"{ph.stage}@lr={ph.lr:g}": int(ph.epochs) for ph in res.pretrain_log},
        "timings_s": {k: float(v) for k, v in res.timings.items()},
    }
    return result
