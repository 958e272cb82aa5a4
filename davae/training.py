"""Training loop: sparse CSR minibatches, one (fused) Adam optimiser over all parts, optional λ ramp,
optional early stopping on a held-out split, optional bf16 autocast, tqdm progress with the loss parts."""

from __future__ import annotations

import copy
import inspect
import math
import os
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ._progress import EpochProgress
from ._threads import torch_threads
from .module import DAVAEModule, davae_loss, ganin_lambda
from .presets import DAVAEParams
from .prior import UnbridgedBatchesWarning, batch_groups, batch_overlap, listed_groups, local_batch_prior


#: Minibatch entries (cells × input genes) per torch thread in the CPU minibatch loop. A training step's
#: matrix products are small (batch 128 × 2,000 genes × 128 units); woken from passive waits, a second thread
#: costs more than it saves there: on the study's 2-core machine, idle, a default step took 8.3 ms on one
#: thread and 14 ms on two (6.4 ms with spinning threads, which stall beside other jobs); two threads first
#: paid off at 2,048 × 2,000 (docs/davae.md, "Threads"; ``benchmarks/davae_threads.py``).
STEP_ENTRIES_PER_THREAD = 1_000_000


def step_threads(batch_size: int, n_genes: int, threads: int) -> int:
    """Torch threads for the CPU minibatch loop: one per :data:`STEP_ENTRIES_PER_THREAD` entries of a
    minibatch, at least 1 and at most ``threads`` (the fit's cap). Encoding all cells, the local prior's
    neighbour search and everything outside the loop keep ``threads``."""
    return max(1, min(int(threads), (int(batch_size) * int(n_genes)) // STEP_ENTRIES_PER_THREAD))


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


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or ``None`` for plain float32.

    ``"auto"`` → bfloat16 autocast on a CUDA device that supports it, float32 elsewhere (on CPU, bf16 autocast
    costs as much in casts as it saves on these small layers); ``"bf16"`` → bfloat16 autocast on any device;
    ``"fp32"`` → none. Under autocast only the linear layers run in bf16: batch statistics, the loss and the
    optimiser stay in float32, and bf16 keeps float32's range, so no loss scaling is needed.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return torch.bfloat16


def make_optimizer(groups: list[dict], params: DAVAEParams) -> torch.optim.Optimizer:
    """Adam over ``groups``, with the fused kernel (one pass over all parameters) where torch has one for
    the parameters' device; the update is Adam's either way."""
    kw = dict(lr=params.lr, eps=params.adam_eps, weight_decay=params.weight_decay)
    try:
        return torch.optim.Adam(groups, fused=True, **kw)
    except (RuntimeError, ValueError):  # no fused kernel for this device / dtype
        return torch.optim.Adam(groups, **kw)


def dense_rows(X: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of ``X`` as a dense float32 array; only these rows are densified."""
    rows = X[idx]
    if sp.issparse(rows):
        rows = rows.toarray()
    return np.asarray(rows, dtype=np.float32)


class MinibatchSource:
    """Minibatches (dense float32 rows, batch codes, one-hots, weights) of the training data on ``device``.

    Rows come from ``X`` (CSR or dense, on the host) one minibatch at a time: only those rows are densified
    and copied to the device. With ``on_device=True`` the whole matrix is instead densified once, in chunks
    of rows, into one device tensor, and minibatches are gathered there: no host work and no host-to-device
    copy per step, at the cost of cells × genes × 4 bytes of device memory. ``on_device=None`` (auto) does
    that on CUDA when the dense matrix takes at most half of the free GPU memory (762k cells × 2,000 genes =
    6.1 GB), never on CPU, where gathering CSR rows is not the bottleneck and the dense copy would cost RAM.
    Either way a minibatch holds the same values, so training is the same.
    """

    def __init__(self, X: Any, codes: np.ndarray, weights: np.ndarray, n_batches: int, device: torch.device,
                 on_device: bool | None = None, chunk: int = 8192):
        n, g = X.shape
        if on_device is None:
            on_device = device.type == "cuda" and n * g * 4 <= 0.5 * torch.cuda.mem_get_info(device)[0]
        self.X, self.device, self.on_device = X, device, bool(on_device)
        self.codes = torch.from_numpy(np.array(codes, dtype=np.int64)).to(device)  # np.array: own, writable copy
        self.weights = torch.from_numpy(np.array(weights, dtype=np.float32)).to(device)
        self.eye = torch.eye(n_batches, device=device)
        if self.on_device:
            self.dense = torch.empty((n, g), dtype=torch.float32, device=device)
            for i in range(0, n, chunk):
                rows = np.arange(i, min(i + chunk, n))
                self.dense[i : i + len(rows)] = torch.from_numpy(dense_rows(X, rows)).to(device)

    def to_device(self, index_sets: list[np.ndarray]) -> list[torch.Tensor]:
        """``index_sets`` (integer arrays) as device tensors, sent in one host-to-device copy.

        A blocking copy to a CUDA device waits for the GPU to finish the work queued before it; sending an
        epoch's minibatch indices at once makes that one wait per epoch instead of one per step, so the
        host can queue a step while the GPU still runs the previous one. The tensors are views of one buffer.
        """
        if not index_sets:
            return []
        flat = torch.from_numpy(np.concatenate([np.asarray(i, dtype=np.int64) for i in index_sets]))
        return list(torch.split(flat.to(self.device), [len(i) for i in index_sets]))

    def __call__(self, idx: np.ndarray, it: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, codes, onehot, weights)`` of the cells ``idx``; ``it``: the same indices already on the
        device (from :meth:`to_device`), else they are copied here."""
        if it is None:
            it = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(self.device)
        if self.on_device:
            x = self.dense.index_select(0, it)
        else:
            x = torch.from_numpy(dense_rows(self.X, idx)).to(self.device)
        b = self.codes[it]
        return x, b, self.eye[b], self.weights[it]


def n_epochs(n_cells: int, params: DAVAEParams) -> int:
    """Epochs to run: ``params.epochs`` raised so that at least ``params.min_steps`` optimiser steps run."""
    steps_per_epoch = math.ceil(n_cells / params.batch_size)
    if params.min_steps > 0:
        return max(params.epochs, math.ceil(params.min_steps / steps_per_epoch))
    return params.epochs


def _minibatches(cells: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled minibatches covering every cell of ``cells`` once (Keras ``shuffle=True``); a trailing single
    cell is folded into the previous minibatch because batch normalisation needs at least two cells."""
    perm = rng.permutation(cells)
    chunks = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        last = chunks.pop()  # popped first: chunks[-2] = concat(chunks[-2], chunks.pop()) hit the wrong index
        chunks[-1] = np.concatenate([chunks[-1], last])
    return chunks


def validation_split(codes: np.ndarray, fraction: float, seed: int,
                     batch_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out cell indices, the same ``fraction`` of every batch held out (at least one cell;
    at least two kept for training). Drawn from its own generator, so the minibatch order is unaffected.
    ``batch_names[code]`` names a batch in the error for one too small to split (default: its code)."""
    rng = np.random.default_rng([seed, 1])
    held = []
    for b in np.unique(codes):
        members = np.flatnonzero(codes == b)
        k = max(1, int(round(fraction * len(members))))
        if len(members) - k < 2:
            name = repr(batch_names[b]) if batch_names is not None else str(b)
            raise ValueError(f"batch {name} has {len(members)} cells, too few to hold out {fraction:.0%} for early "
                             "stopping; set early_stopping=False or lower validation_fraction")
        held.append(rng.choice(members, size=k, replace=False))
    val = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(codes)), val), val


def _unbridged(log_prior: np.ndarray, codes: np.ndarray, n_batches: int, fallback: bool,
               batch_names: list[str] | None, record: dict | None = None) -> np.ndarray:
    """The local prior as computed, unless the batches' overlap graph falls apart
    (:func:`davae.prior.batch_groups`): then a warning naming the groups
    (:class:`davae.prior.UnbridgedBatchesWarning`), or with ``fallback`` the global prior (every batch present
    around every cell). ``record`` (a dict) gets ``prior_groups``, each batch code's group (0, 1, ...; one
    group when every batch is linked), and ``prior_fallback_applied``."""
    groups = batch_groups(batch_overlap(log_prior, codes, n_batches))
    group_of = np.zeros(n_batches, dtype=np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g
    if record is not None:
        record.update(prior_groups=group_of.tolist(), prior_fallback_applied=bool(fallback and len(groups) > 1))
    if len(groups) < 2:
        return log_prior
    if fallback:
        return np.zeros_like(log_prior)
    listed = listed_groups(group_of, batch_names or [str(b) for b in range(n_batches)])
    warnings.warn(f"DAVAE: these groups of batches share no neighbourhood in the warm-up latent, so the local "
                  f"batch prior leaves them unaligned: {listed}. If they hold the same cell types (technical "
                  f"batches, or modalities of one sample), refit with prior_fallback=True (command line: "
                  f"--prior-fallback); leave it off where a group is a different kind of sample (e.g. spots "
                  f"against single cells); docs/davae.md, 'Batches that share no neighbourhood'.",
                  UnbridgedBatchesWarning, stacklevel=_user_stack_level())
    return log_prior


def _user_stack_level() -> int:
    """``stacklevel`` for a warning raised in this package that names the first frame outside it (the user's
    ``davae.integrate`` or ``DAVAE.fit`` call, however deep inside the package it is raised), as pandas'
    ``find_stack_level`` does."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = inspect.currentframe(), 0
    try:
        while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
            frame, level = frame.f_back, level + 1
    finally:
        del frame
    return max(level, 1)


def train(
    module: DAVAEModule,
    X: Any,
    codes: np.ndarray,
    weights: np.ndarray,
    params: DAVAEParams,
    *,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    precision: str = "auto",
    progress: bool = True,
    rows_on_device: bool | None = None,
    batch_names: list[str] | None = None,
    fit_info: dict | None = None,
) -> dict[str, list[float]]:
    """Fit ``module`` in place on ``X`` (cells × genes, CSR or dense), batch ``codes`` and per-cell
    reconstruction ``weights``. Returns the per-epoch history: mean loss parts, the GRL scale and, with
    ``params.early_stopping``, the held-out loss ``val_loss`` (the best epoch's weights are restored).

    ``precision``: see :func:`resolve_precision`; ``rows_on_device``: see :class:`MinibatchSource`;
    ``batch_names``: the batch labels of the codes, for error messages and the unbridged-batches warning;
    ``fit_info`` (a dict): gets what the local prior found (:func:`_unbridged`'s ``record``)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    module.to(device).train()
    clf = list(module.classifier.parameters())
    clf_ids = {id(p) for p in clf}
    rest = [p for p in module.parameters() if id(p) not in clf_ids]
    opt = make_optimizer([{"params": rest}, {"params": clf, "lr": params.lr * params.classifier_lr_factor}], params)
    amp_dtype = resolve_precision(precision, device)
    amp = dict(device_type=device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None)
    if params.early_stopping:
        cells, held_out = validation_split(np.asarray(codes), params.validation_fraction, seed, batch_names)
    else:
        cells, held_out = np.arange(X.shape[0]), None
    n = len(cells)
    epochs = n_epochs(n, params)
    steps_per_epoch = len(_minibatches(cells, params.batch_size, np.random.default_rng(0)))
    total_steps = epochs * steps_per_epoch
    source = MinibatchSource(X, codes, weights, module.n_batches, device, on_device=rows_on_device)
    # cells of weight 0 (all but the reference under recon_weight="reference") add nothing to the
    # reconstruction term: the genes-wide output layer and the term run on the others only (found on the
    # host, so no device synchronisation). A minibatch without any weighted cell keeps all rows.
    w_host = np.asarray(weights, dtype=np.float32)
    some_zero = bool((w_host == 0).any())

    def device_batches(chunks: list[np.ndarray]) -> list[tuple[np.ndarray, torch.Tensor, torch.Tensor | None]]:
        """Per minibatch: host indices, the same on the device, and its weighted rows on the device (None =
        all). Everything goes to the device in one copy per call (one epoch), not one per step."""
        rows: list[np.ndarray | None] = [None] * len(chunks)
        if some_zero:
            for i, idx in enumerate(chunks):
                keep = np.flatnonzero(w_host[idx] != 0)
                rows[i] = keep if 0 < len(keep) < len(idx) else None
        sent = source.to_device(list(chunks) + [r for r in rows if r is not None])
        its, rest = sent[: len(chunks)], iter(sent[len(chunks):])
        return [(idx, it, None if r is None else next(rest)) for idx, it, r in zip(chunks, its, rows)]

    # local batch prior (domain_prior="local"): the first warmup_epochs run without the adversary's push on
    # the encoder (GRL scale 0), then the prior is computed once from the latent means of every cell
    prior: torch.Tensor | None = None
    warmup_epochs = int(round(params.prior_warmup * epochs)) if params.domain_prior == "local" else 0

    def batch_loss(idx: np.ndarray, scale: float, it: torch.Tensor | None = None,
                   rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x, b, onehot, w = source(idx, it)
        with torch.autocast(**amp):
            out = module(x, onehot, grl_scale=scale, recon_rows=rows)
        lp = None
        if prior is not None:
            lp = prior[it] if it is not None else prior[torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(device)]
        return davae_loss(out, x, b, w, params.domain_lambda, params.recon_loss, recon_rows=rows, logit_prior=lp)

    history: dict[str, list[float]] = {k: [] for k in ("loss", "recon", "kl", "domain", "grl_scale")}
    if held_out is not None:
        history["val_loss"] = []
    best: tuple[float, int, dict] | None = None
    step = 0
    bar = EpochProgress(epochs, enabled=progress, desc="DAVAE")  # a bar on a terminal, a short table in a log
    # the minibatch loop on CPU runs on step_threads() of the fit's threads; the prior's encode and kNN
    # search, and everything after the loop, on all of them
    all_threads = torch.get_num_threads()
    loop_threads = step_threads(params.batch_size, X.shape[1], all_threads) if device.type == "cpu" else all_threads
    with torch_threads(loop_threads):
        for epoch in bar:
            if params.domain_prior == "local" and epoch == warmup_epochs:
                with torch_threads(all_threads):
                    z = encode(module, X, np.asarray(codes), device=device)
                    module.train()
                    lp = local_batch_prior(z, np.asarray(codes), module.n_batches, k=params.prior_neighbors,
                                           share=params.prior_share, smoothing=params.prior_smoothing,
                                           n_jobs=all_threads, device=device)
                    lp = _unbridged(lp, np.asarray(codes), module.n_batches, params.prior_fallback, batch_names,
                                    record=fit_info)
                    prior = torch.from_numpy(lp).to(device)
            # loss parts summed on the device and read back once per epoch (a per-step read would make every
            # CUDA step wait for the GPU)
            sums = {k: torch.zeros((), device=device) for k in ("loss", "recon", "kl", "domain")}
            scale = 1.0
            for idx, it, rows in device_batches(_minibatches(cells, params.batch_size, rng)):
                if params.lambda_schedule == "ganin":
                    scale = ganin_lambda(step / max(total_steps - 1, 1))
                if epoch < warmup_epochs:
                    scale = 0.0
                parts = batch_loss(idx, scale, it, rows)
                opt.zero_grad(set_to_none=True)
                parts["loss"].backward()
                opt.step()
                step += 1
                for k in sums:
                    sums[k] += parts[k].detach() * len(idx)
            for k in sums:
                history[k].append(float(sums[k]) / n)
            history["grl_scale"].append(scale)
            if not all(math.isfinite(history[k][-1]) for k in sums):
                raise FloatingPointError(
                    f"DAVAE loss became non-finite at epoch {len(history['loss'])}; lower lr or domain_lambda"
                )
            post = {"recon": f"{history['recon'][-1]:.4g}", "kl": f"{history['kl'][-1]:.3g}",
                    "domain": f"{history['domain'][-1]:.4g}", "grl": f"{scale:.2f}"}
            if held_out is not None:
                val = held_out_loss(module, batch_loss, held_out, params.batch_size)
                history["val_loss"].append(val)
                post["val"] = f"{val:.4g}"
                if best is None or best[0] - val > 1e-3 * abs(best[0]):
                    best = (val, epoch, copy.deepcopy(module.state_dict()))
                elif epoch - best[1] >= params.patience and step >= params.min_steps:
                    break
            bar.set_postfix(post)
    if best is not None:
        module.load_state_dict(best[2])
    module.eval()
    return history


@torch.no_grad()
def held_out_loss(module: DAVAEModule, batch_loss, cells: np.ndarray, batch_size: int) -> float:
    """Mean reconstruction + KL loss of ``cells`` in evaluation mode (no dropout, running batch statistics)."""
    module.eval()
    total = None
    for i in range(0, len(cells), batch_size):
        idx = cells[i : i + batch_size]
        parts = batch_loss(idx, 1.0)
        part = (parts["recon"] + parts["kl"]).double() * len(idx)  # float64, as Python floats were
        total = part if total is None else total + part
    module.train()
    return float(total) / len(cells)  # one read-back per evaluation


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


def _decoded_chunks(module: DAVAEModule, Z: np.ndarray, codes: np.ndarray | None, batch_size: int,
                    device: torch.device):
    """``(start, decoded chunk)`` over ``Z`` in chunks of ``batch_size`` cells (float32 tensors on ``device``),
    each cell under its batch in ``codes``, or with ``codes=None`` under the *average* batch (the one-hot
    replaced by ``1/B``)."""
    eye = torch.eye(module.n_batches)
    for i in range(0, Z.shape[0], batch_size):
        z = torch.from_numpy(np.ascontiguousarray(Z[i : i + batch_size], dtype=np.float32)).to(device)
        if codes is None:
            onehot = torch.full((z.shape[0], module.n_batches), 1.0 / module.n_batches, device=device)
        else:
            onehot = eye[codes[i : i + batch_size]].to(device)
        yield i, module.decode(z, onehot).float()


@torch.no_grad()
def decode(module: DAVAEModule, Z: np.ndarray, codes: np.ndarray | None, *, batch_size: int = 4096,
           device: torch.device = torch.device("cpu"), out: Any = None) -> np.ndarray:
    """Decoder output for latent ``Z`` under batch ``codes`` (evaluation mode), computed in chunks.

    ``codes=None`` decodes every cell under the *average* batch (the one-hot replaced by ``1/B``; with
    ``decoder_batch_mode="affine"`` the mean of the batches' gene-wise log-scales and shifts): the
    batch-corrected expression, a function of ``z`` alone.

    Chunks are written straight into ``out`` (a preallocated float32 array, or e.g. a chunked h5py dataset for
    atlas-size data), so the peak is the result itself, not the result plus a list of chunks and its copy.
    """
    module.to(device).eval()
    if out is None:
        out = np.empty((Z.shape[0], module.n_genes), dtype=np.float32)
    for i, x in _decoded_chunks(module, Z, codes, batch_size, device):
        out[i : i + x.shape[0]] = x.cpu().numpy()
    return out


def joint_embedding(latent: np.ndarray, pcs: np.ndarray) -> np.ndarray:
    """The latent and the corrected PCs side by side (``embedding="latent_and_pcs"``), the PCs scaled so their
    total variance equals the latent's: cells × (latent dims + PCs), float32.

    Distances then add the two geometries with equal weight: the latent's local structure (Leiden, spots)
    and the PCs', where cell types lie far apart relative to the spread within them (k-means). Measured on
    the panel in docs/davae.md, "The embedding"."""
    z = np.asarray(latent, dtype=np.float64)
    p = np.asarray(pcs, dtype=np.float64)
    if z.ndim != 2 or p.ndim != 2 or len(z) != len(p):
        raise ValueError(f"joint_embedding needs two cells × dims matrices of the same cells, got {z.shape} "
                         f"and {p.shape}")
    vp = p.var(0).sum()
    scale = np.sqrt(z.var(0).sum() / vp) if vp > 0 else 0.0
    return np.hstack([z, p * scale]).astype(np.float32)


@torch.no_grad()
def corrected_pca(module: DAVAEModule, Z: np.ndarray, n_comps: int, *, batch_size: int = 4096,
                  device: torch.device = torch.device("cpu"), decoded: np.ndarray | None = None) -> np.ndarray:
    """Principal components of the batch-corrected expression of latent ``Z`` (cells × ``n_comps`` float32).

    Every cell is decoded from its latent mean under the *average* batch (the one-hot replaced by ``1/B`` for
    each of the ``B`` batches: with ``decoder_batch_mode="affine"`` the mean of the batches' gene-wise log-scales
    and shifts), so no batch is the reference and the result is a function of ``z`` alone. The decoded matrix
    is never held whole: two passes over chunks of ``batch_size`` cells, the first accumulating the genes ×
    genes covariance (float64 sums of float32 chunk products, centred on the first chunk's mean), the second
    projecting onto its top eigenvectors (exact ``eigh``). With no more cells than genes, the decoded matrix
    (then no larger than that covariance) is held and the cells × cells Gram matrix decomposed instead.
    Component signs are fixed (largest loading positive), so the result is deterministic. At most
    ``min(n_comps, n_genes, n_cells - 1)`` components.

    ``decoded``: the batch-corrected expression of ``Z`` when already computed (:func:`decode` with
    ``codes=None`` and the same ``batch_size``, e.g. the ``davae_corrected`` layer); its row chunks are then
    used instead of decoding again, with the same result to the bit.
    """
    n, n_genes = Z.shape[0], module.n_genes
    if decoded is not None and tuple(decoded.shape) != (n, n_genes):
        raise ValueError(f"decoded has shape {tuple(decoded.shape)}, expected {(n, n_genes)} (cells x genes of Z)")
    if n < 2:
        raise ValueError(f"corrected_pca needs at least two cells, got {n}")
    k = int(min(n_comps, n_genes, n - 1))
    module.to(device).eval()

    def chunks():
        if decoded is None:
            return _decoded_chunks(module, Z, None, batch_size, device)
        return ((i, torch.from_numpy(np.ascontiguousarray(decoded[i : i + batch_size], dtype=np.float32)).to(device))
                for i in range(0, n, batch_size))

    held = None
    if n <= n_genes:  # few cells: the cells × cells Gram matrix is the smaller eigenproblem (same result)
        held = torch.cat([c for _, c in chunks()]).double()
        centre = held.mean(0)
        c = held - centre
        vals, vecs = torch.linalg.eigh(c @ c.T)  # ascending eigenvalues
        # the covariance's unit eigenvectors
        comps = (c.T @ vecs[:, -k:].flip(1)) / vals[-k:].flip(0).clamp_min(1e-300).sqrt()
    else:
        shift = s1 = s2 = None
        for _, x in chunks():
            if shift is None:
                shift = x.mean(0)
                s1 = torch.zeros(n_genes, dtype=torch.float64, device=device)
                s2 = torch.zeros(n_genes, n_genes, dtype=torch.float64, device=device)
            y = x - shift
            s1 += y.sum(0, dtype=torch.float64)
            s2 += (y.T @ y).double()
        m = s1 / n
        _, vecs = torch.linalg.eigh(s2 - n * torch.outer(m, m))  # ascending eigenvalues
        comps = vecs[:, -k:].flip(1)
        centre = shift.double() + m
    comps = comps * torch.sign(comps[comps.abs().argmax(0), torch.arange(k, device=device)])
    if held is not None:  # the decoded cells are at hand: no second decoding pass
        return ((held - centre) @ comps).float().cpu().numpy()
    out = np.empty((n, k), dtype=np.float32)
    for i, x in chunks():
        out[i : i + x.shape[0]] = ((x.double() - centre) @ comps).float().cpu().numpy()
    return out
