"""User-facing model object: holds the data setup, the network (:class:`davae.module.DAVAEModule`) and the
training history; fit / transform / recover / save / load."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from . import training
from ._threads import limit_threads
from ._validate import batch_codes, check_batches, check_matrix
from .module import DAVAEModule
from .presets import DAVAEParams, get_params

_FORMAT = "davae-model/1"


def _build_module(p: DAVAEParams, n_genes: int, n_batches: int) -> DAVAEModule:
    """The network of parameters ``p`` for ``n_genes`` genes and ``n_batches`` batches (fit and load alike)."""
    return DAVAEModule(
        n_genes=n_genes, n_batches=n_batches, hidden_layers=p.hidden_layers, latent_dim=p.latent_dim,
        encoder_batch=p.encoder_batch, decoder_batch=p.decoder_batch, dropout_encoder=p.dropout_encoder,
        dropout_decoder=p.dropout_decoder, dropout_classifier=p.dropout_classifier,
        classifier_hidden=p.classifier_hidden, classifier_depth=p.classifier_depth,
        decoder_batch_mode=p.decoder_batch_mode,
    )


class DAVAE:
    """Domain-adversarial variational autoencoder for single-cell batch integration.

    Parameters
    ----------
    adata
        Cells × genes, ``X`` log-normalised expression (sparse CSR or dense), batches in ``obs[batch_key]``.
    batch_key
        Column of ``adata.obs`` holding each cell's batch.
    preset
        ``"default"`` or ``"scbean"`` (see :mod:`davae.presets`), or a :class:`DAVAEParams`.
    **overrides
        Any :class:`DAVAEParams` field (``epochs``, ``domain_lambda``, ``latent_dim``, ``batch_size``,
        ``hidden_layers``, ...).

    Examples
    --------
    >>> model = DAVAE(adata, batch_key="batch").fit(seed=0)
    >>> adata.obsm["X_davae"] = model.transform()
    """

    def __init__(self, adata: AnnData, batch_key: str = "batch", preset: str | DAVAEParams = "default",
                 **overrides: Any):
        self.params: DAVAEParams = get_params(preset, **overrides)
        self.preset = preset if isinstance(preset, str) else "custom"
        check_matrix(adata.X)
        codes, cats = batch_codes(adata, batch_key)
        check_batches(codes, cats, batch_key)
        self.adata = adata
        self.batch_key = batch_key
        self.batch_categories: list[str] = cats
        self.var_names: list[str] = [str(v) for v in adata.var_names]
        self._codes = codes
        self.module = _build_module(self.params, adata.n_vars, len(cats))
        self.history: dict[str, list[float]] = {}
        # what the fit found beyond the losses: with the local prior, each batch's group in the overlap graph
        # (prior_groups, in the order of batch_categories) and whether prior_fallback was applied
        self.fit_info: dict[str, object] = {}
        self.is_trained = False
        self.device = torch.device("cpu")

    # -- data helpers --------------------------------------------------------------------------------
    def reconstruction_weights(self, codes: np.ndarray) -> np.ndarray:
        """Per-cell reconstruction weights: all ones, or 1 for the reference batch only (scbean)."""
        if self.params.recon_weight == "all":
            return np.ones(len(codes), dtype=np.float32)
        ref = self.params.reference_batch
        if ref is None:
            ref_code = 0
        elif str(ref) in self.batch_categories:
            ref_code = self.batch_categories.index(str(ref))
        else:
            raise ValueError(f"reference_batch {ref!r} is not a batch; choose one of {self.batch_categories}")
        return (codes == ref_code).astype(np.float32)

    def _matrix_and_codes(self, adata: AnnData | None) -> tuple[Any, np.ndarray]:
        if adata is None:
            if self.adata is None:
                raise ValueError("this model was loaded without data; pass adata=")
            return self.adata.X, self._codes
        if [str(v) for v in adata.var_names] != self.var_names:
            raise ValueError("adata.var_names differ from the training genes; subset/reorder to model.var_names")
        check_matrix(adata.X)
        codes, _ = batch_codes(adata, self.batch_key, categories=self.batch_categories)
        return adata.X, codes

    # -- public API ----------------------------------------------------------------------------------
    def fit(self, seed: int = 0, device: str | torch.device = "auto", progress: bool = True,
            precision: str = "auto", threads: int | None = None) -> "DAVAE":
        """Train the network from a fresh initialisation. Seeds torch's global RNG with ``seed``.

        On CPU the same seed gives the same embedding (same torch build and thread count). ``precision``:
        ``"auto"`` (bf16 autocast on a CUDA device that supports it, float32 otherwise), ``"fp32"`` or
        ``"bf16"`` (see :func:`davae.training.resolve_precision`). ``threads``: CPU threads of torch and the
        BLAS / OpenMP pools during the fit, restored afterwards (None: leave them as they are).
        ``progress``: a bar on a terminal, one line of loss parts every few epochs (at most ~20) elsewhere.
        """
        if self.adata is None:
            raise ValueError("this model was loaded without data; construct DAVAE(adata, ...) to train")
        self.device = training.resolve_device(device)
        torch.manual_seed(seed)
        self.module.reset_parameters()
        X = self.adata.X
        if sp.issparse(X) and not sp.isspmatrix_csr(X):
            X = sp.csr_matrix(X)
        with limit_threads(threads):
            self.fit_info = {}
            self.history = training.train(
                self.module, X, self._codes, self.reconstruction_weights(self._codes), self.params,
                seed=seed, device=self.device, precision=precision, progress=progress,
                batch_names=self.batch_categories, fit_info=self.fit_info,
            )
        self.precision = precision
        self.seed = seed
        self.is_trained = True
        return self

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise ValueError("model is not trained; call model.fit() first")

    def transform(self, adata: AnnData | None = None) -> np.ndarray:
        """Latent mean ``z`` (cells × latent_dim) of ``adata`` (default: the training data)."""
        self._require_trained()
        X, codes = self._matrix_and_codes(adata)
        return training.encode(self.module, X, codes, device=self.device)

    def corrected_pca(self, adata: AnnData | None = None, n_comps: int | None = None,
                      latent: np.ndarray | None = None, corrected: np.ndarray | None = None) -> np.ndarray:
        """Principal components of the batch-corrected expression of ``adata`` (default: the training data).

        Each cell is decoded from its latent mean under the average batch and the decoded matrix is reduced
        to its first ``n_comps`` (default: the ``embedding_pcs`` parameter) principal components, fitted on
        these cells (:func:`davae.training.corrected_pca`). ``latent``: the cells' latent means when already
        computed (``transform``'s result), to skip encoding them again; ``corrected``: their batch-corrected
        expression when already computed (:meth:`corrected`'s result), to skip decoding them again (same
        result).
        """
        self._require_trained()
        Z = self.transform(adata) if latent is None else latent
        n = self.params.embedding_pcs if n_comps is None else int(n_comps)
        if n < 1:
            raise ValueError(f"n_comps must be >= 1, got {n}")
        return training.corrected_pca(self.module, Z, n, device=self.device, decoded=corrected)

    def corrected(self, adata: AnnData | None = None, latent: np.ndarray | None = None) -> np.ndarray:
        """Batch-corrected expression of ``adata`` (default: the training data), cells × genes dense float32.

        Each cell is decoded from its latent mean under the *average* batch (the one-hot replaced by ``1/B``;
        with the affine decoder, the mean of the batches' gene-wise log-scales and shifts), so no batch is the
        reference and the result is a function of ``z`` alone: the matrix :meth:`corrected_pca` reduces.
        :meth:`recover` keeps each cell's own batch instead. ``latent``: the cells' latent means when already
        computed (``transform``'s result), to skip encoding them again.
        """
        self._require_trained()
        Z = self.transform(adata) if latent is None else latent
        return training.decode(self.module, Z, None, device=self.device)

    def recover(self, adata: AnnData | None = None, target_batch: str | None = None) -> np.ndarray:
        """Decoded expression ``decoder(z mean, batch)`` (cells × genes, dense float32).

        ``target_batch=None`` decodes each cell under its own batch (scbean's recovered expression: denoised,
        the batch effect kept); a batch name decodes every cell as if it came from that batch. For the
        expression with no batch as the reference, see :meth:`corrected`.
        """
        self._require_trained()
        X, codes = self._matrix_and_codes(adata)
        Z = training.encode(self.module, X, codes, device=self.device)
        if target_batch is not None:
            if str(target_batch) not in self.batch_categories:
                raise ValueError(f"target_batch {target_batch!r} unknown; choose one of {self.batch_categories}")
            codes = np.full(len(codes), self.batch_categories.index(str(target_batch)), dtype=np.int64)
        return training.decode(self.module, Z, codes, device=self.device)

    def save(self, path: str | os.PathLike) -> None:
        """Write weights, parameters, genes and batch categories to one file (atomic)."""
        self._require_trained()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": _FORMAT,
            "params": self.params.to_dict(),
            "preset": self.preset,
            "batch_key": self.batch_key,
            "batch_categories": list(self.batch_categories),
            "var_names": list(self.var_names),
            "history": {k: list(map(float, v)) for k, v in self.history.items()},
            "fit_info": dict(self.fit_info),
            "state_dict": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, adata: AnnData | None = None, device: str = "auto") -> "DAVAE":
        """Read a model written by :meth:`save`; ``adata`` (same genes) becomes the default data."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a DAVAE model file written by DAVAE.save")
        saved = dict(state["params"])
        saved.setdefault("decoder_batch_mode", "input")  # files written before the parameter existed
        params = get_params(DAVAEParams(), **saved)
        self = cls.__new__(cls)
        self.params, self.preset = params, state["preset"]
        self.batch_key = state["batch_key"]
        self.batch_categories = list(state["batch_categories"])
        self.var_names = list(state["var_names"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.fit_info = dict(state.get("fit_info", {}))  # files written before it existed have none
        self.module = _build_module(params, len(self.var_names), len(self.batch_categories))
        self.module.load_state_dict(state["state_dict"])
        self.module.eval()
        self.device = training.resolve_device(device)
        self.is_trained = True
        self.adata, self._codes = None, None
        if adata is not None:
            X, codes = self._matrix_and_codes(adata)
            self.adata, self._codes = adata, codes
        return self

    def __repr__(self) -> str:
        p = self.params
        return (f"DAVAE(preset={self.preset!r}, genes={len(self.var_names)}, batches={len(self.batch_categories)}, "
                f"latent_dim={p.latent_dim}, trained={self.is_trained})")
