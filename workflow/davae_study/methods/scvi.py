"""scVI (Lopez et al., Nat Methods 2018) through scvi-tools: the field's standard deep generative integration
model, beside DAVAE. Same model family (a VAE), a different answer to batches: the decoder is conditioned on
the batch and there is no adversary. It models the raw counts (zero-inflated negative binomial), so it reads
``layers['counts']`` (declared in :data:`LAYERS`), not the log-normalised ``X``.

scvi-tools' defaults throughout, with the tutorial's ``n_latent`` of 10; seeded through
``scvi.settings.seed``; CPU/GPU by the study's ``device`` rule; Lightning's and scvi-tools' progress bars and
INFO messages are off, so rule logs hold only warnings.

Params (config ``methods: scvi: params:``)
------------------------------------------
n_latent : int, default 10
    Latent dimensions (the embedding's width).
max_epochs : int or None, default None
    None = scvi-tools' heuristic, ``min(round(20000 / n_cells * 400), 400)`` (400 up to 20k cells, 13 at
    600k). The demo and the tests set fewer.
batch_size : int, default 128
    Minibatch size (scvi-tools' default).
early_stopping : bool, default False
    scvi-tools' early stopping on the validation ELBO (off by default, as in scvi-tools).
corrected : bool, default True
    Return batch-corrected expression as ``layers['corrected']`` (``get_normalized_expression``). Set false
    at atlas size: it is a dense cells × genes matrix.
transform_batch : "all", None, or a batch name or list of names, default "all"
    Batches the corrected expression is decoded in. ``"all"``: every batch, averaged, so that no cell keeps
    its own batch's effect; None: each cell's own batch (denoised, not batch-corrected), as scvi-tools'
    default.
model_kwargs, train_kwargs : dict, default {}
    Further keyword arguments of ``scvi.model.SCVI`` (``n_hidden``, ``n_layers``, ``gene_likelihood``,
    ``dispersion``, ...) and of ``SCVI.train`` (``train_size``, ``plan_kwargs``, ...).
progress : bool, default False
    Lightning's progress bar (off: rule logs stay readable).

Output
------
obsm['X_emb'] : float32 (n_cells, n_latent), the posterior means of the latent variable
    (``get_latent_representation``).
layers['corrected'] : float32 dense (n_cells, n_genes), with ``corrected``: the decoder's normalised
    expression scaled so that each cell's row sums to prepare's ``target_sum`` (1e4 when the data were TPM)
    over the selected genes, then ``log1p``-transformed: the scale of the prepared ``X`` (whose rows sum to
    ``target_sum`` over all input genes).
uns['scvi'] : max_epochs, epochs trained, final training ELBO, n_latent, transform_batch, scvi-tools version.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

LAYERS = ("counts",)

log = logging.getLogger(__name__)

# Lightning's INFO lines ("GPU available", "Seed set to", its logger tip) and two warnings about a small
# data set (fewer minibatches than the logging interval, no data-loader workers) that say nothing about
# the result
_QUIET_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "scvi")
_QUIET_WARNINGS = (r".*smaller than the logging interval.*", r".*does not have many workers.*", r".*treespec.*")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import scvi  # noqa: F401 - importing Lightning sets its loggers to INFO: set them after the import

    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def trainer_device(device: str) -> tuple[str, int | list[int]]:
    """Lightning's ``(accelerator, devices)`` for the study's device string: ``cpu`` → ``("cpu", 1)``,
    ``cuda`` → ``("gpu", 1)``, ``cuda:N`` → ``("gpu", [N])``, ``mps`` → ``("mps", 1)``; ``auto`` is resolved
    first as for every method (CUDA when torch sees a GPU). One device always: scvi-tools' own ``auto`` would
    take every GPU of the node."""
    from . import resolve_device

    device = resolve_device(device)
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return "cpu", 1
    if kind == "cuda":
        return "gpu", [int(index)] if index else 1
    if kind == "mps":
        return "mps", 1
    raise ValueError(f"scvi: unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def _transform_batches(transform_batch: Any, batches: Sequence[str]) -> list[str] | str | None:
    if transform_batch is None:
        return None
    if isinstance(transform_batch, str) and transform_batch == "all":
        return list(batches)
    wanted = [transform_batch] if isinstance(transform_batch, str) else [str(b) for b in transform_batch]
    unknown = sorted(set(wanted) - set(batches))
    if unknown:
        raise ValueError(f"scvi: transform_batch {unknown} not among the batches {list(batches)}; "
                         "use 'all', null or batch names")
    return wanted[0] if isinstance(transform_batch, str) else wanted


def run(adata: ad.AnnData, *, seed: int = 0, device: str = "auto", n_latent: int = 10, max_epochs: int | None = None,
        batch_size: int = 128, early_stopping: bool = False, corrected: bool = True, transform_batch: Any = "all",
        model_kwargs: dict | None = None, train_kwargs: dict | None = None, progress: bool = False) -> ad.AnnData:
    """Train scVI on ``adata.layers['counts']`` with ``obs['batch']`` as its batch covariate; see the module
    docstring for params and outputs."""
    if "counts" not in adata.layers:
        raise ValueError("scvi: needs the raw counts in layers['counts'] (prepared.h5ad of rule prepare; "
                         "the method module declares LAYERS = ('counts',))")
    if "batch" not in adata.obs:
        raise ValueError("scvi: needs adata.obs['batch']; run the prepare step first")
    if max_epochs is not None and int(max_epochs) < 1:
        raise ValueError(f"scvi: max_epochs must be >= 1 or null (scvi-tools' heuristic), got {max_epochs!r}")
    prep = adata.uns.get("prepare", {}) if isinstance(adata.uns.get("prepare"), dict) else {}
    if prep.get("counts_kind", "counts") != "counts":
        log.warning("scvi: layers['counts'] holds %s, not counts; scVI's count likelihood assumes counts",
                    prep.get("counts_kind"))
    accelerator, devices = trainer_device(device)
    batches = pd.Categorical(adata.obs["batch"].astype(str))
    tb = _transform_batches(transform_batch, list(batches.categories))  # checked before the fit, not after

    with _quiet():
        import scvi

        scvi.settings.seed = int(seed)  # Python, NumPy and torch (Lightning's seed_everything)
        # the counts as X of a new AnnData (shared, not copied): setup_anndata writes into obs and uns
        work = ad.AnnData(X=adata.layers["counts"], obs=pd.DataFrame({"batch": batches}, index=adata.obs_names),
                          var=pd.DataFrame(index=adata.var_names))
        scvi.model.SCVI.setup_anndata(work, batch_key="batch")
        model = scvi.model.SCVI(work, n_latent=int(n_latent), **(model_kwargs or {}))
        model.train(max_epochs=None if max_epochs is None else int(max_epochs), accelerator=accelerator,
                    devices=devices, batch_size=int(batch_size), early_stopping=bool(early_stopping),
                    enable_progress_bar=bool(progress), **(train_kwargs or {}))
        emb = np.asarray(model.get_latent_representation(), dtype=np.float32)
        out = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy())
        out.obsm["X_emb"] = emb
        if corrected:
            target = prep.get("target_sum")
            library_size = float(target) if isinstance(target, (int, float)) else 1e4
            expr = model.get_normalized_expression(library_size=library_size, transform_batch=tb,
                                                   batch_size=int(batch_size) * 8, return_numpy=True)
            expr = np.asarray(expr, dtype=np.float32)
            out.layers["corrected"] = np.log1p(expr, out=expr)  # in place: a dense cells x genes matrix

    history = model.history.get("elbo_train")
    out.uns["scvi"] = {
        "max_epochs": int(model.trainer.max_epochs) if getattr(model, "trainer", None) else -1,
        "epochs_trained": int(len(history)) if history is not None else -1,
        "elbo_train": float(history.iloc[-1, 0]) if history is not None and len(history) else float("nan"),
        "n_latent": int(n_latent),
        "transform_batch": "none" if tb is None else tb,
        "corrected": bool(corrected),
        "scvi_tools": scvi.__version__,
    }
    return out
