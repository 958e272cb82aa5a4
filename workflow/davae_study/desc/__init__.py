"""DESC (Li et al. 2020, Nat Commun 11:2338) re-implemented in PyTorch, faithful to eleozzr/desc 2.1.1.

Deep Embedding for Single-cell Clustering: a stacked denoising autoencoder is pretrained on the expression
matrix, its encoder features are clustered (Leiden here, Louvain in the original) to initialise cluster
centres, then encoder and centres are refined together by minimising KL(P || Q) between Student-t soft
assignments Q and the sharpened target P, until fewer than ``tol`` of the cells change cluster.

Layout: :mod:`.model` (networks, kernel, target), :mod:`.train` (pretraining and KL loops), :mod:`.init`
(centre initialisation), :mod:`.data` (sparse-aware batching, per-batch scaling). :func:`fit_desc` runs it
all. See docs/desc.md for what is faithful, what differs, and what the DAVAE paper's runs used.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import as_matrix, predict, scale_by_group, to_device
from .init import init_centres
from .model import ClusteringLayer, DescAutoencoder, DescClusterer, get_dims, student_t, target_distribution
from .train import EarlyStopping, PhaseLog, TrainConfig, fit_clustering, kl_divergence, pretrain

__all__ = [
    "DescResult", "fit_desc", "resolve_device", "get_dims", "student_t", "target_distribution",
    "DescAutoencoder", "DescClusterer", "ClusteringLayer", "EarlyStopping", "TrainConfig", "kl_divergence",
    "scale_by_group", "init_centres",
]


@dataclass
class DescResult:
    """Outputs of :func:`fit_desc`."""

    embedding: np.ndarray  # (n_cells, dims[-1]) encoder features after clustering
    labels: np.ndarray  # (n_cells,) argmax of q
    q: np.ndarray  # (n_cells, n_clusters) Student-t soft assignments
    centres: np.ndarray  # (n_clusters, dims[-1])
    init_labels: np.ndarray
    dims: list[int]
    n_rounds: int
    converged: bool
    device: str
    pretrain_log: list[PhaseLog] = field(default_factory=list)
    delta_labels: list[float] = field(default_factory=list)
    kl_losses: list[float] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per stage


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit_desc(
    X,
    *,
    dims: list[int] | None = None,
    pretrain_epochs: int = 300,
    layerwise: bool = True,
    resolution: float = 0.8,
    n_neighbors: int = 10,
    alpha: float = 1.0,
    tol: float = 0.005,
    max_rounds: int = 1000,
    epochs_per_round: int = 5,
    batch_size: int = 256,
    drop_rate: float = 0.2,
    activation: str = "relu",
    actincenter: str = "tanh",
    early_stopping: bool = True,
    init_max_cells: int = 200_000,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> DescResult:
    """Run DESC on a cells x features matrix ``X`` (CSR or dense). Pretrains fresh on every call.

    Parameters
    ----------
    X
        Expression matrix (log-normalised, optionally scaled); sparse input is densified per mini-batch only.
    dims
        Encoder sizes after the input, e.g. ``[64]`` or ``[128, 32]``; None = DESC's choice by cell count
        (:func:`get_dims`). A full list starting with ``X.shape[1]`` is accepted too.
    pretrain_epochs
        DESC's ``pretrain_epochs`` (300): stacks ``pretrain_epochs/2`` each, fine-tuning ``pretrain_epochs``.
    layerwise
        Layer-wise stack pretraining before fine-tuning (DESC ``is_stacked=True``).
    resolution, n_neighbors
        Leiden resolution and kNN size of the initialisation graph.
    alpha
        Student-t degrees of freedom.
    tol, max_rounds, epochs_per_round
        Stop when fewer than ``tol`` of labels change between rounds; at most ``max_rounds`` rounds of
        ``epochs_per_round`` epochs.
    batch_size, drop_rate, activation, actincenter, early_stopping
        As in DESC (256, 0.2, relu, tanh, True).
    init_max_cells
        Cells used to build the initialisation graph (subsample above this).
    seed, device, progress
        Seeds Python, NumPy and torch; ``auto`` picks CUDA when present; tqdm bars on stderr.
    """
    X = as_matrix(X)
    n_cells, n_genes = X.shape
    if n_cells < max(3, n_neighbors + 1):
        raise ValueError(f"DESC needs more than n_neighbors={n_neighbors} cells, got {n_cells}")
    if dims is None:
        full_dims = get_dims(n_cells, n_genes)
    else:
        dims = [int(d) for d in dims]
        full_dims = dims if (len(dims) > 1 and dims[0] == n_genes) else [n_genes, *dims]
    dev = resolve_device(device)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    cfg = TrainConfig(batch_size=int(batch_size), early_stopping=bool(early_stopping), progress=bool(progress))

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ae = DescAutoencoder(full_dims, activation=activation, actincenter=actincenter, drop_rate=drop_rate).to(dev)
    log = pretrain(ae, X, int(pretrain_epochs), cfg, rng, dev, layerwise=layerwise)
    timings["pretrain"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    data = to_device(X, dev)
    features = predict(ae.encode, data, dev)
    init_labels, centres = init_centres(features, resolution, n_neighbors, seed, init_max_cells)
    timings["init"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = DescClusterer(ae, centres, alpha).to(dev)
    res = fit_clustering(model, data, init_labels, tol=tol, max_rounds=max_rounds, epochs_per_round=epochs_per_round,
                         cfg=cfg, rng=rng, device=dev)
    embedding = predict(ae.encode, data, dev)
    timings["clustering"] = time.perf_counter() - t0
    return DescResult(
        embedding=embedding,
        labels=res.labels,
        q=res.q,
        centres=model.clustering.centres.detach().cpu().numpy(),
        init_labels=init_labels,
        dims=full_dims,
        n_rounds=res.n_rounds,
        converged=res.converged,
        device=str(dev),
        pretrain_log=log,
        delta_labels=res.delta_labels,
        kl_losses=res.losses,
        timings=timings,
    )
