"""One-call integration: :func:`integrate`."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from ._threads import limit_threads
from ._validate import batch_codes, check_matrix, check_obs_names
from ._validate import check_counts as _check_counts
from .model import DAVAE
from .preprocess import preprocess as _preprocess
from .presets import get_params
from .training import joint_embedding


def integrate(
    adata: AnnData,
    batch_key: str = "batch",
    preset: str = "default",
    preprocess: bool = True,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    copy: bool = True,
    progress: bool = True,
    recover: bool = True,
    threads: int | None = None,
    check_counts: bool = True,
    corrected: bool = False,
    **overrides: Any,
) -> AnnData:
    """Integrate the batches of ``adata`` with DAVAE.

    Parameters
    ----------
    adata
        Cells × genes, sparse CSR or dense. With ``preprocess=True``: raw counts (or TPM) in ``X``. With
        ``preprocess=False``: log-normalised expression in ``X`` (e.g. the study's ``prepared.h5ad``),
        used as given.
    batch_key
        Column of ``adata.obs`` holding each cell's batch.
    preset
        ``"default"`` (integrates) or ``"scbean"`` (DACVAE as released in scbean 0.5.6).
    preprocess
        Apply the preset's preprocessing first (per-batch CPM + log1p, batch-aware Seurat HVG, top
        ``n_top_genes``); the result then holds the selected genes only (raw values in ``layers['counts']``).
    seed
        Seed for weights, minibatch order, dropout and sampling.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
    precision
        ``"auto"`` (bf16 autocast of the linear layers on a CUDA device that supports it; float32 on CPU),
        ``"fp32"`` or ``"bf16"``. The loss, batch statistics and optimiser always run in float32.
    copy
        Return a new AnnData (default). With ``copy=False`` and ``preprocess=False`` the results are written
        into ``adata`` and it is returned.
    progress
        Report the loss parts per epoch: a tqdm bar when stderr is a terminal, otherwise (e.g. a log file) one
        line every few epochs, at most ~20 lines per fit.
    recover
        Also compute the recovered expression (``layers['davae_recovered']``, dense cells × genes float32:
        6 GB at 762k cells × 2000 genes): each cell decoded under its own batch, denoised, the batch effect
        kept (scbean's recovered expression). ``False`` skips it.
    threads
        CPU threads for the call (preprocessing, training, encoding): torch's intra-op pool and the BLAS /
        OpenMP pools (threadpoolctl), restored afterwards. ``None`` (default) leaves them as they are; the
        ``davae`` command passes the cores the process may use.
    check_counts
        With ``preprocess=True``, stop when ``X`` looks log-transformed (values not integers, max < 30):
        preprocessing would normalise and log it a second time. ``False`` skips the check.
    corrected
        Also compute the batch-corrected expression (``layers['davae_corrected']``, dense cells × genes
        float32, the same size): each cell decoded from its latent mean under the *average* batch, so no batch
        is the reference (:meth:`davae.DAVAE.corrected`).
    **overrides
        :class:`davae.presets.DAVAEParams` fields, e.g. ``epochs``, ``domain_lambda``, ``latent_dim``,
        ``batch_size``, ``hidden_layers``, ``min_steps``, ``lr``.

    Returns
    -------
    AnnData with the input's cells and obs (same order) and
    ``obsm['X_davae']`` (latent mean), ``obsm['X_davae_pca']`` (only with ``embedding="corrected_pca"`` or
    ``"latent_and_pcs"``: principal components of the batch-corrected expression, see
    :meth:`davae.DAVAE.corrected_pca`), ``obsm['X_davae_joint']`` (only with ``"latent_and_pcs"``: both side by
    side, :func:`davae.training.joint_embedding`),
    ``layers['davae_recovered']`` (decoder(z mean, own batch), same shape as ``X``; only with
    ``recover=True``), ``layers['davae_corrected']`` (decoder(z mean, average batch); only with
    ``corrected=True``) and ``uns['davae']`` (``preset``, ``params``, ``seed``,
    ``device``, ``precision``, ``batch_key``, ``batch_categories``, ``history``, ``embedding``: the
    ``obsm`` key of the embedding to use downstream, ``X_davae``, ``X_davae_pca`` or ``X_davae_joint``; and
    with the local prior ``prior_groups``, each batch's group in the prior's overlap graph, in the order of
    ``batch_categories`` (all 0 when every batch shares neighbourhoods with another, several groups when some
    are left unaligned: see :class:`davae.prior.UnbridgedBatchesWarning`), and ``prior_fallback_applied``).
    """
    out, _ = integrate_with_model(adata, batch_key=batch_key, preset=preset, preprocess=preprocess, seed=seed,
                                  device=device, precision=precision, copy=copy, progress=progress, recover=recover,
                                  threads=threads, check_counts=check_counts, corrected=corrected, **overrides)
    return out


def integrate_with_model(adata: AnnData, batch_key: str = "batch", preset: str = "default",
                         preprocess: bool = True, seed: int = 0, device: str = "auto", precision: str = "auto",
                         copy: bool = True, progress: bool = True, recover: bool = True, threads: int | None = None,
                         check_counts: bool = True, corrected: bool = False,
                         **overrides: Any) -> tuple[AnnData, DAVAE]:
    """As :func:`integrate`, also returning the trained :class:`DAVAE` (e.g. to ``save`` it)."""
    if not isinstance(adata, AnnData):
        raise ValueError(f"integrate expects an AnnData, got {type(adata).__name__}")
    params = get_params(preset, **overrides)
    check_matrix(adata.X)
    batch_codes(adata, batch_key)  # fail early on a missing / incomplete batch column
    check_obs_names(adata)
    if preprocess and check_counts:
        _check_counts(adata.X)
    with limit_threads(threads):
        if preprocess:
            out = _preprocess(adata, batch_key, n_top_genes=params.n_top_genes, target_sum=params.target_sum)
        else:
            out = adata.copy() if copy else adata
            if sp.issparse(out.X) and not sp.isspmatrix_csr(out.X):
                out.X = sp.csr_matrix(out.X)
        model = DAVAE(out, batch_key=batch_key, preset=params)
        model.preset = preset
        model.fit(seed=seed, device=device, progress=progress, precision=precision)
        out.obsm["X_davae"] = model.transform()
        embedding = "X_davae"
        if corrected:
            out.layers["davae_corrected"] = model.corrected(latent=out.obsm["X_davae"])
        if params.embedding in ("corrected_pca", "latent_and_pcs"):  # from the corrected layer when there is
            embedding = "X_davae_pca"                                 # one: the cells are decoded once
            out.obsm[embedding] = model.corrected_pca(latent=out.obsm["X_davae"],
                                                      corrected=out.layers["davae_corrected"] if corrected else None)
        if params.embedding == "latent_and_pcs":
            embedding = "X_davae_joint"
            out.obsm[embedding] = joint_embedding(out.obsm["X_davae"], out.obsm["X_davae_pca"])
        if recover:
            out.layers["davae_recovered"] = model.recover()
        out.uns["davae"] = {
            "preset": preset,
            "params": {k: (v if v is not None else "None") for k, v in params.to_dict().items()},
            "seed": int(seed),
            "device": str(model.device),
            "precision": precision,
            "batch_key": batch_key,
            "embedding": embedding,
            "batch_categories": list(model.batch_categories),
            "history": {k: np.asarray(v, dtype=np.float64) for k, v in model.history.items()},
        }
        if "prior_groups" in model.fit_info:  # the local prior's overlap graph (docs/davae.md, prior_fallback)
            out.uns["davae"]["prior_groups"] = np.asarray(model.fit_info["prior_groups"], dtype=np.int64)
            out.uns["davae"]["prior_fallback_applied"] = bool(model.fit_info["prior_fallback_applied"])
        return out, model
