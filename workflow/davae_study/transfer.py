"""Label transfer from an annotated reference to query cells through a joint embedding.

Two classifiers read the embedding every method writes (``obsm['X_emb']``):

- :func:`mlp_transfer`: the classifier of the DAVAE paper's code (``atac/deep_classifier.py``):
  Dense(64, relu) → Dropout(0.05) → Dense(32, relu) → Dropout(0.05) → Dense(C, softmax), Adam lr 0.01,
  categorical cross-entropy, 25 epochs, batch 100, validation split 0.1. Here in PyTorch, seeded, with
  early stopping on the validation loss (best weights restored).
- :func:`knn_transfer`: a k-nearest-neighbour vote, the usual baseline.

Both return a *transfer table*: a DataFrame indexed by query cell with columns ``predicted``,
``confidence`` (the winning probability) and ``prob:<type>`` per reference type, the shape of
``results/<app>/transfer/<method>.tsv`` (docs/CONTRACTS.md). Cells whose confidence falls below
``threshold`` are called :data:`UNASSIGNED`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

UNASSIGNED = "unassigned"
PROB_PREFIX = "prob:"

__all__ = [
    "UNASSIGNED",
    "PROB_PREFIX",
    "mlp_transfer",
    "knn_transfer",
    "transfer_table",
    "apply_threshold",
    "split_reference_query",
    "transfer_labels",
    "transfer_scores",
    "resolve_device",
]


# ----------------------------------------------------------------------------------------------------------
# helpers


def _check_inputs(x_ref, y_ref, x_query) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_ref = np.asarray(x_ref, dtype=np.float32)
    x_query = np.asarray(x_query, dtype=np.float32)
    y_ref = np.asarray(pd.Series(y_ref).astype(object))
    if x_ref.ndim != 2 or x_query.ndim != 2:
        raise ValueError("Embeddings must be 2-D arrays (cells x dimensions); pass obsm['X_emb'].")
    if x_ref.shape[1] != x_query.shape[1]:
        raise ValueError(
            f"Reference has {x_ref.shape[1]} embedding dimensions, query {x_query.shape[1]}: "
            "embed both in the same joint space."
        )
    if len(y_ref) != x_ref.shape[0]:
        raise ValueError(f"{len(y_ref)} reference labels for {x_ref.shape[0]} reference cells.")
    if pd.isna(y_ref).any():
        raise ValueError("Reference labels contain NaN: drop unlabelled reference cells first.")
    if x_ref.shape[0] == 0:
        raise ValueError("No reference cells: check the application's transfer 'reference' value.")
    if not (np.isfinite(x_ref).all() and np.isfinite(x_query).all()):
        raise ValueError("Embedding contains NaN/inf: the integration method probably failed; check uns['method'].")
    return x_ref, y_ref, x_query


def resolve_device(device: str = "auto") -> str:
    """``'auto'`` → ``'cuda'`` when a GPU is visible, else ``'cpu'``; anything else is passed to torch."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def transfer_table(
    probs: np.ndarray,
    classes: Sequence[str],
    index: Sequence[str] | None = None,
    threshold: float = 0.0,
) -> pd.DataFrame:
    """Build a transfer table from a (cells x classes) probability matrix.

    Parameters
    ----------
    probs
        Per-class probabilities (rows need not sum to one, e.g. similarity scores).
    classes
        Class names, one per column of ``probs``.
    index
        Query cell names.
    threshold
        Cells with ``confidence < threshold`` are labelled :data:`UNASSIGNED`.

    Returns
    -------
    DataFrame with columns ``predicted``, ``confidence``, ``prob:<class>`` ….
    """
    probs = np.asarray(probs, dtype=float)
    classes = [str(c) for c in classes]
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"probs has shape {probs.shape}, expected (cells, {len(classes)}).")
    best = probs.argmax(axis=1) if probs.shape[0] else np.zeros(0, dtype=int)
    table = pd.DataFrame(
        {
            "predicted": np.asarray(classes, dtype=object)[best] if len(classes) else [],
            "confidence": probs[np.arange(probs.shape[0]), best] if probs.shape[0] else [],
        },
        index=pd.Index(index if index is not None else np.arange(probs.shape[0]).astype(str), name="cell"),
    )
    prob_cols = pd.DataFrame(probs, index=table.index, columns=[PROB_PREFIX + c for c in classes])
    table = pd.concat([table, prob_cols], axis=1)
    return apply_threshold(table, threshold)


def apply_threshold(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Relabel rows whose confidence is below ``threshold`` as :data:`UNASSIGNED` (returns a copy)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold} must lie in [0, 1] (0 assigns every cell).")
    out = table.copy()
    prob_cols = [c for c in out.columns if c.startswith(PROB_PREFIX)]
    # recompute from the probabilities so that raising then lowering the threshold is reversible
    if prob_cols and len(out):
        probs = out[prob_cols].to_numpy(dtype=float)
        out["predicted"] = np.asarray([c[len(PROB_PREFIX):] for c in prob_cols], dtype=object)[probs.argmax(1)]
    out.loc[out["confidence"] < threshold, "predicted"] = UNASSIGNED
    return out


# ----------------------------------------------------------------------------------------------------------
# classifiers


def knn_transfer(
    x_ref,
    y_ref,
    x_query,
    *,
    k: int = 15,
    weights: str = "uniform",
    metric: str = "euclidean",
    threshold: float = 0.0,
    query_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Label query cells by a vote of their ``k`` nearest reference cells in the embedding.

    Parameters
    ----------
    x_ref, y_ref
        Reference embedding (cells x dims) and labels.
    x_query
        Query embedding in the same space.
    k
        Neighbours per query cell (capped at the number of reference cells).
    weights
        ``'uniform'`` (each neighbour one vote) or ``'distance'`` (votes weighted by 1/distance).
    metric
        Any metric :class:`sklearn.neighbors.NearestNeighbors` accepts (``'euclidean'``, ``'cosine'``).
    threshold
        Minimum vote share to assign a label.
    query_names
        Index of the returned table.

    Returns
    -------
    Transfer table (see :func:`transfer_table`); ``prob:<type>`` is the (weighted) vote share.
    """
    from sklearn.neighbors import NearestNeighbors

    x_ref, y_ref, x_query = _check_inputs(x_ref, y_ref, x_query)
    if k < 1:
        raise ValueError(f"k={k}: use k >= 1.")
    if weights not in ("uniform", "distance"):
        raise ValueError(f"weights={weights!r}: use 'uniform' or 'distance'.")
    classes, codes = np.unique(y_ref, return_inverse=True)
    k = min(k, x_ref.shape[0])
    nn = NearestNeighbors(n_neighbors=k, metric=metric).fit(x_ref)
    dist, idx = nn.kneighbors(x_query)
    w = np.ones_like(dist) if weights == "uniform" else 1.0 / np.maximum(dist, 1e-12)
    probs = np.zeros((x_query.shape[0], len(classes)))
    rows = np.repeat(np.arange(x_query.shape[0]), k)
    np.add.at(probs, (rows, codes[idx].ravel()), w.ravel())
    probs /= probs.sum(axis=1, keepdims=True)
    return transfer_table(probs, classes, query_names, threshold)


def _stratified_validation(codes: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of validation cells: ``fraction`` of each class, at least one kept for training."""
    val = np.zeros(codes.shape[0], dtype=bool)
    if fraction <= 0:
        return val
    for c in np.unique(codes):
        members = np.flatnonzero(codes == c)
        n_val = int(round(fraction * members.size))
        n_val = min(n_val, members.size - 1)
        if n_val > 0:
            val[rng.choice(members, n_val, replace=False)] = True
    return val


def mlp_transfer(
    x_ref,
    y_ref,
    x_query,
    *,
    hidden: Sequence[int] = (64, 32),
    dropout: float = 0.05,
    lr: float = 0.01,
    epochs: int = 25,
    batch_size: int = 100,
    validation_split: float = 0.1,
    patience: int | None = 5,
    standardize: str = "global",
    seed: int = 0,
    device: str = "auto",
    threshold: float = 0.0,
    query_names: Sequence[str] | None = None,
    return_history: bool = False,
):
    """Train the paper's MLP classifier on the reference embedding and predict the query.

    Parameters
    ----------
    x_ref, y_ref
        Reference embedding (cells x dims) and labels.
    x_query
        Query embedding in the same space.
    hidden, dropout, lr, epochs, batch_size, validation_split
        Architecture and training as in the paper's code (defaults are the paper's values).
    patience
        Stop when the validation loss has not improved for this many epochs and restore the best
        weights; ``None`` (or ``validation_split=0``) trains all ``epochs``.
    standardize
        ``'global'``: centre on the reference's mean and divide by one number, the reference's overall
        standard deviation, so that embeddings of any scale (a unit-scale latent, PCA in tens) meet the
        paper's learning rate alike while the relative variance of the dimensions is kept.
        ``'per_dimension'``: z-score each dimension (amplifies low-variance dimensions, which in an
        uncorrected PCA carry mostly batch effect). ``'none'``: raw embedding, as the paper's code.
    seed
        Seeds weight initialisation, the validation split, shuffling and dropout.
    device
        ``'auto'``, ``'cpu'``, ``'cuda'``, ….
    threshold
        Minimum softmax probability to assign a label.
    query_names
        Index of the returned table.
    return_history
        Also return a DataFrame of per-epoch ``train_loss``, ``val_loss``, ``val_accuracy``.

    Returns
    -------
    Transfer table (see :func:`transfer_table`), and the history when ``return_history``.

    Notes
    -----
    Keras' ``validation_split`` holds out the *last* 10 % of the rows; here the held-out 10 % is a seeded,
    class-stratified random draw, so that row order (e.g. cells sorted by type) cannot bias it.
    """
    import torch
    from torch import nn

    x_ref, y_ref, x_query = _check_inputs(x_ref, y_ref, x_query)
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split={validation_split} must lie in [0, 1).")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1.")
    classes, codes = np.unique(y_ref, return_inverse=True)
    dev = torch.device(resolve_device(device))

    if standardize not in ("global", "per_dimension", "none"):
        raise ValueError(f"standardize={standardize!r}: use 'global', 'per_dimension' or 'none'.")
    if standardize != "none":
        mean = x_ref.mean(axis=0)
        if standardize == "global":
            std = np.float32(np.sqrt(((x_ref - mean) ** 2).sum(axis=1).mean() / x_ref.shape[1]))
            std = std if std > 0 else np.float32(1.0)
        else:
            std = x_ref.std(axis=0)
            std[std == 0] = 1.0
        x_ref = (x_ref - mean) / std
        x_query = (x_query - mean) / std

    rng = np.random.default_rng(seed)
    val_mask = _stratified_validation(codes, validation_split, rng)
    x_tr = torch.as_tensor(x_ref[~val_mask], device=dev)
    y_tr = torch.as_tensor(codes[~val_mask], dtype=torch.long, device=dev)
    x_va = torch.as_tensor(x_ref[val_mask], device=dev)
    y_va = torch.as_tensor(codes[val_mask], dtype=torch.long, device=dev)

    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        width = x_ref.shape[1]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, len(classes)))  # softmax folded into the loss / predict
        model = nn.Sequential(*layers).to(dev)
        for m in model:
            if isinstance(m, nn.Linear):  # Keras' glorot_uniform / zeros, as in the paper
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(seed)

        history = []
        best_loss, best_state, bad_epochs = np.inf, None, 0
        n_tr = x_tr.shape[0]
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(n_tr, generator=gen).to(dev)
            total = 0.0
            for start in range(0, n_tr, batch_size):
                b = order[start : start + batch_size]
                opt.zero_grad()
                loss = loss_fn(model(x_tr[b]), y_tr[b])
                loss.backward()
                opt.step()
                total += loss.item() * b.numel()
            row = {"epoch": epoch + 1, "train_loss": total / max(n_tr, 1), "val_loss": np.nan, "val_accuracy": np.nan}
            if x_va.shape[0]:
                model.eval()
                with torch.no_grad():
                    logits = model(x_va)
                    row["val_loss"] = float(loss_fn(logits, y_va))
                    row["val_accuracy"] = float((logits.argmax(1) == y_va).float().mean())
            history.append(row)
            if patience is not None and x_va.shape[0]:
                if row["val_loss"] < best_loss - 1e-6:
                    best_loss, bad_epochs = row["val_loss"], 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad_epochs += 1
                    if bad_epochs >= patience:
                        break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        with torch.no_grad():
            probs = torch.softmax(model(torch.as_tensor(x_query, device=dev)), dim=1).cpu().numpy()

    table = transfer_table(probs, classes, query_names, threshold)
    if return_history:
        return table, pd.DataFrame(history)
    return table


# ----------------------------------------------------------------------------------------------------------
# AnnData front end


def split_reference_query(
    adata: AnnData,
    *,
    key: str = "role",
    reference: str | Sequence[str] = "reference",
    query: str | Sequence[str] | None = "query",
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of reference and query cells from ``adata.obs[key]``.

    ``reference``/``query`` are one value or a list of values of ``obs[key]`` (e.g. ``key='batch'``,
    ``reference='10x'``); ``query=None`` means every cell that is not reference.
    """
    if key not in adata.obs:
        raise ValueError(f"obs['{key}'] is missing: set the application's transfer 'key' to an existing obs column.")
    def as_list(v) -> list[str]:
        return [str(v)] if isinstance(v, (str, int, float, np.integer)) else [str(x) for x in v]

    values = adata.obs[key].astype(str).to_numpy()
    ref_vals = as_list(reference)
    ref = np.isin(values, ref_vals)
    if query is None:
        qry = ~ref
    else:
        qry = np.isin(values, as_list(query))
    if not ref.any():
        raise ValueError(f"No cell has obs['{key}'] in {ref_vals}; present values: {sorted(set(values))[:10]}.")
    if not qry.any():
        raise ValueError(f"No query cell has obs['{key}'] in {query}; present values: {sorted(set(values))[:10]}.")
    if (ref & qry).any():
        raise ValueError("A value is listed as both reference and query: make them disjoint.")
    return ref, qry


def transfer_labels(
    adata: AnnData,
    *,
    classifier: str = "mlp",
    emb_key: str = "X_emb",
    label_key: str = "cell_type",
    key: str = "role",
    reference: str | Sequence[str] = "reference",
    query: str | Sequence[str] | None = "query",
    threshold: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    **params,
) -> pd.DataFrame:
    """Transfer ``obs[label_key]`` from reference to query cells through ``obsm[emb_key]``.

    Parameters
    ----------
    adata
        Integrated AnnData (``obsm['X_emb']`` for all cells).
    classifier
        ``'mlp'`` (:func:`mlp_transfer`) or ``'knn'`` (:func:`knn_transfer`).
    key, reference, query
        Which cells are reference/query (see :func:`split_reference_query`).
    threshold
        Confidence below which a query cell is :data:`UNASSIGNED`.
    seed, device
        For the MLP.
    **params
        Passed to the classifier (``epochs``, ``k``, …).

    Returns
    -------
    Transfer table indexed by query cell name.
    """
    if emb_key not in adata.obsm:
        raise ValueError(f"obsm['{emb_key}'] is missing: run the integration first (or the method failed).")
    if label_key not in adata.obs:
        raise ValueError(f"obs['{label_key}'] is missing: the reference needs cell-type labels.")
    ref, qry = split_reference_query(adata, key=key, reference=reference, query=query)
    labels = adata.obs[label_key]
    labelled = ref & labels.notna().to_numpy()
    if not labelled.any():
        raise ValueError(f"No reference cell has a label in obs['{label_key}'].")
    emb = np.asarray(adata.obsm[emb_key])
    names = adata.obs_names[qry]
    if classifier == "mlp":
        return mlp_transfer(
            emb[labelled], labels[labelled], emb[qry], seed=seed, device=device, threshold=threshold,
            query_names=names, **params,
        )
    if classifier == "knn":
        return knn_transfer(emb[labelled], labels[labelled], emb[qry], threshold=threshold, query_names=names, **params)
    raise ValueError(f"classifier={classifier!r}: use 'mlp' or 'knn'.")


def transfer_scores(predicted: Sequence[str], truth: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of predicted against true labels, on cells whose truth is known.

    :data:`UNASSIGNED` counts as wrong. Macro-F1 averages over the *true* classes present (a predicted
    class absent from the truth, e.g. unassigned, is not averaged in, but its cells are recall errors).

    Returns
    -------
    ``{'accuracy', 'macro_f1', 'unassigned_fraction', 'majority_rate', 'n'}``; NaN values and ``n=0`` when
    no truth is known.
    """
    from sklearn.metrics import f1_score

    pred = pd.Series(np.asarray(predicted, dtype=object))
    true = pd.Series(np.asarray(pd.Series(truth).astype(object), dtype=object))
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predictions for {len(true)} true labels.")
    known = true.notna().to_numpy()
    n = int(known.sum())
    if n == 0:
        return {"accuracy": np.nan, "macro_f1": np.nan, "unassigned_fraction": np.nan, "majority_rate": np.nan, "n": 0}
    p = pred[known].astype(str).to_numpy()
    t = true[known].astype(str).to_numpy()
    return {
        "accuracy": float((p == t).mean()),
        "macro_f1": float(f1_score(t, p, labels=np.unique(t), average="macro", zero_division=0)),
        "unassigned_fraction": float((p == UNASSIGNED).mean()),
        "majority_rate": float(pd.Series(t).value_counts(normalize=True).iloc[0]),
        "n": n,
    }
