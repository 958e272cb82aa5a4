"""Training loop: sparse CSR minibatches, one Adam optimiser over all parts, optional λ ramp, tqdm."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from .module import DAVAEModule, davae_loss, ganin_lambda
from .presets import DAVAEParams


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"invalid device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def dense_rows(X: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of ``X`` as a dense float32 array; only these rows are densified."""
    rows = X[idx]
    if sp.issparse(rows):
        rows = rows.toarray()
    return np.asarray(rows, dtype=np.float32)


def n_epochs(n_cells: int, params: DAVAEParams) -> int:
    """Epochs to run: ``params.epochs`` raised so that at least ``params.min_steps`` optimiser steps run."""
    steps_per_epoch = math.ceil(n_cells / params.batch_size)
    if params.min_steps > 0:
        return max(params.epochs, math.ceil(params.min_steps / steps_per_epoch))
    return params.epochs


def _minibatches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled minibatches covering every cell once (Keras ``shuffle=True``); a trailing single cell is
    folded into the previous minibatch because batch normalisation needs at least two cells."""
    perm = rng.permutation(n)
    chunks = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        chunks[-2] = np.concatenate([chunks[-2], chunks.pop()])
    return chunks


def train(
    module: DAVAEModule,
    X: Any,
    codes: np.ndarray,
    weights: np.ndarray,
    params: DAVAEParams,
    *,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    progress: bool = True,
) -> dict[str, list[float]]:
    """Fit ``module`` in place on ``X`` (cells × genes, CSR or dense), batch ``codes`` and per-cell
    reconstruction ``weights``. Returns the per-epoch history (mean loss parts and the GRL scale)."""
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    module.to(device).train()
    clf = list(module.classifier.parameters())
    clf_ids = {id(p) for p in clf}
    rest = [p for p in module.parameters() if id(p) not in clf_ids]
    opt = torch.optim.Adam(
        [{"params": rest}, {"params": clf, "lr": params.lr * params.classifier_lr_factor}],
        lr=params.lr, eps=params.adam_eps, weight_decay=params.weight_decay,
    )
    epochs = n_epochs(n, params)
    steps_per_epoch = len(_minibatches(n, params.batch_size, np.random.default_rng(0)))
    total_steps = epochs * steps_per_epoch
    codes_t = torch.as_tensor(codes, dtype=torch.long)
    w_t = torch.as_tensor(weights, dtype=torch.float32)
    eye = torch.eye(module.n_batches)
    history: dict[str, list[float]] = {k: [] for k in ("loss", "recon", "kl", "domain", "grl_scale")}
    step = 0
    bar = tqdm(range(epochs), desc="DAVAE", unit="epoch", disable=not progress, leave=False)
    for _ in bar:
        sums = dict.fromkeys(("loss", "recon", "kl", "domain"), 0.0)
        scale = 1.0
        for idx in _minibatches(n, params.batch_size, rng):
            if params.lambda_schedule == "ganin":
                scale = ganin_lambda(step / max(total_steps - 1, 1))
            x = torch.from_numpy(dense_rows(X, idx)).to(device)
            b = codes_t[idx].to(device)
            out = module(x, eye[codes_t[idx]].to(device), grl_scale=scale)
            parts = davae_loss(out, x, b, w_t[idx].to(device), params.domain_lambda, params.recon_loss)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            step += 1
            for k in sums:
                sums[k] += float(parts[k].detach()) * len(idx)
        for k in sums:
            history[k].append(sums[k] / n)
        history["grl_scale"].append(scale)
        if not all(math.isfinite(history[k][-1]) for k in sums):
            raise FloatingPointError(
                f"DAVAE loss became non-finite at epoch {len(history['loss'])}; lower lr or domain_lambda"
            )
        bar.set_postfix(recon=f"{history['recon'][-1]:.4g}", kl=f"{history['kl'][-1]:.3g}",
                        domain=f"{history['domain'][-1]:.4g}", grl=f"{scale:.2f}")
    module.eval()
    return history


@torch.no_grad()
def encode(module: DAVAEModule, X: Any, codes: np.ndarray, *, batch_size: int = 4096,
           device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Latent means for all cells (evaluation mode), computed in chunks into one preallocated array."""
    module.to(device).eval()
    eye = torch.eye(module.n_batches)
    out = np.empty((X.shape[0], module.z_mean.out_features), dtype=np.float32)
    for i in range(0, X.shape[0], batch_size):
        idx = np.arange(i, min(i + batch_size, X.shape[0]))
        x = torch.from_numpy(dense_rows(X, idx)).to(device)
        mu, _ = module.encode(x, eye[codes[idx]].to(device))
        out[idx[0] : idx[-1] + 1] = mu.cpu().numpy()
    return out


@torch.no_grad()
def decode(module: DAVAEModule, Z: np.ndarray, codes: np.ndarray, *, batch_size: int = 4096,
           device: torch.device = torch.device("cpu"), out: Any = None) -> np.ndarray:
    """Decoder output for latent ``Z`` under batch ``codes`` (evaluation mode), computed in chunks.

    Chunks are written straight into ``out`` (a preallocated float32 array, or e.g. a chunked h5py dataset for
    atlas-size data), so the peak is the result itself, not the result plus a list of chunks and its copy.
    """
    module.to(device).eval()
    eye = torch.eye(module.n_batches)
    if out is None:
        out = np.empty((Z.shape[0], module.n_genes), dtype=np.float32)
    for i in range(0, Z.shape[0], batch_size):
        z = torch.from_numpy(np.ascontiguousarray(Z[i : i + batch_size], dtype=np.float32)).to(device)
        out[i : i + batch_size] = module.decode(z, eye[codes[i : i + batch_size]].to(device)).cpu().numpy()
    return out
