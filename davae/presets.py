"""Named hyper-parameter sets ("presets") and the override names :func:`davae.integrate` accepts.

Two presets:

``"scbean"``
    DACVAE exactly as released in scbean 0.5.6 (``scbean.model.davae.fit_integration(mode='DACVAE')``):
    batch one-hot on encoder and decoder input, hidden layers 128-64-32, latent 5, only the first
    (reference) batch reconstructed (``loss_weight`` 1/0), the minibatch-variance reconstruction term as
    coded (see :func:`davae.module.scbean_reconstruction`), constant gradient reversal, Adam lr 0.01,
    20 epochs of 128 cells.
``"default"``
    The same network with the changes the ablation (``benchmarks/davae_ablation.py``, ``docs/davae.md``)
    showed are needed for it to integrate real data: every batch reconstructed, a fixed-variance Gaussian
    reconstruction term, a stronger domain classifier (256 hidden units) that learns 5x faster than the
    encoder (two-timescale adversarial training), a batch-free encoder input, a 10-d latent, Adam lr 1e-3,
    a floor on the number of optimiser steps so small data sets are trained long enough; the local batch
    prior (:mod:`davae.prior`, λ 0.1) and the batch as a gene-wise scale and shift of the decoder's output
    (``decoder_batch_mode="affine"``) so that batches of different composition keep their cell types apart.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

RECON_WEIGHTS = ("all", "reference")
RECON_LOSSES = ("scbean", "gaussian")
LAMBDA_SCHEDULES = ("constant", "ganin")
DOMAIN_PRIORS = ("none", "local")
DECODER_BATCH_MODES = ("input", "affine")
EMBEDDINGS = ("latent", "corrected_pca", "latent_and_pcs")


@dataclass(frozen=True)
class DAVAEParams:
    """All hyper-parameters of a DAVAE run (a preset plus overrides).

    Parameters
    ----------
    hidden_layers
        Encoder hidden widths; the decoder mirrors them. scbean's ``hidden_layers=[128, 64, 32, 5]`` is
        ``hidden_layers=(128, 64, 32), latent_dim=5`` here.
    latent_dim
        Size of the latent space ``z`` (``obsm['X_davae']``).
    encoder_batch, decoder_batch
        Give the encoder / the decoder the batch (scbean's DACVAE: both; the default: the decoder only).
    decoder_batch_mode
        How the decoder gets it: ``"input"``, the one-hot concatenated to the decoder's input (scbean);
        ``"affine"``, a learned per-batch, per-gene scale and shift of the decoder's output before the
        softplus, the hidden layers seeing ``z`` only. With ``"input"`` a decoder can explain any difference
        between batches through the one-hot, cell types that only one batch has included, so ``z`` need not
        keep them apart; a gene-wise scale and shift cannot stand in for a cell type's programme.
    dropout_encoder, dropout_decoder, dropout_classifier
        Dropout after each hidden layer of the three networks.
    classifier_hidden, classifier_depth
        Width and number of the domain classifier's hidden layers (scbean: one layer of 16).
    classifier_lr_factor
        The classifier's learning rate is ``lr × classifier_lr_factor`` (two-timescale adversarial training).
    recon_weight
        ``"reference"``: only cells of the reference batch are reconstructed (scbean's ``loss_weight`` = 1
        for the first data set, 0 for the others); ``"all"``: every cell.
    reference_batch
        Batch whose cells are reconstructed under ``recon_weight="reference"``; ``None`` = first category.
    recon_loss
        ``"scbean"``: the released minibatch-variance term; ``"gaussian"``: ``½·Σ_j (x − x̂)²`` (unit variance).
    domain_lambda
        Weight λ of the domain-classifier cross-entropy (multiplied by the number of genes, as released).
    lambda_schedule
        ``"constant"``: λ from the first step; ``"ganin"``: λ·(2/(1+exp(−10p)) − 1), p = training progress.
    domain_prior
        ``"none"``: the classifier tells every batch from every other, everywhere (the released adversary);
        ``"local"``: it only tells apart the batches present around each cell (:mod:`davae.prior`), measured
        on the latent space after ``prior_warmup`` of the epochs have run without the adversary.
    prior_warmup
        Fraction of the epochs trained without the adversary (gradient-reversal scale 0; the classifier still
        learns) before the local prior is computed; only with ``domain_prior="local"``.
    prior_neighbors, prior_share, prior_smoothing
        The local prior's neighbourhood size, share threshold and smoothing steps (see :mod:`davae.prior`).
    prior_fallback
        When the warm-up latent splits the batches into groups that share no neighbourhood (no batch of one
        group present around even 5 % of another group's cells: :func:`davae.prior.batch_groups`), the local
        prior leaves the groups unaligned and training warns. ``True`` drops the prior for every cell instead
        (the global adversary, after the same warm-up): for batches known to share cell types under a batch
        effect the warm-up does not bridge. Not for mixtures against single cells (spots) or batches with
        different cell types (docs/davae.md, "Batches that share no neighbourhood").
    epochs
        Passes over the data.
    min_steps
        Floor on optimiser steps: epochs are raised to ``ceil(min_steps / steps_per_epoch)`` (0 = off).
    early_stopping
        Hold out ``validation_fraction`` of the cells (stratified by batch), compute their reconstruction + KL
        loss (evaluation mode) after every epoch, stop after ``patience`` epochs without a relative improvement
        of ``1e-3``, and restore the best epoch's weights. Never stops before ``min_steps`` steps; ``epochs``
        (raised by ``min_steps``) is the maximum. The domain term is not monitored: it is adversarial and does
        not decrease. The held-out cells are still embedded by ``transform``. Off in both presets.
    validation_fraction, patience
        See ``early_stopping``.
    batch_size
        Cells per minibatch.
    lr, adam_eps, weight_decay
        Adam settings (scbean: Keras Adam, lr 0.01, eps 1e-7).
    embedding, embedding_pcs
        The embedding recommended for downstream use (``uns['davae']['embedding']`` names its ``obsm`` key;
        the study's ``X_emb``). ``"latent"`` (both presets): the latent mean ``z`` (``obsm['X_davae']``).
        ``"corrected_pca"``: also compute, and recommend, the first ``embedding_pcs`` principal components of
        the batch-corrected expression, every cell decoded from its ``z`` under the average batch
        (``obsm['X_davae_pca']``, :func:`davae.training.corrected_pca`). The same batch mixing (a function of
        ``z`` alone) in the geometry of expression space, where types lie far apart relative to the spread
        within them: k-means finds them (Tran's ARI 1.00 on every cell-line design of the panel, where the
        latent gives 0.52–0.92), but Leiden splits types more and mixtures (Visium spots) are scored worse,
        so it is not the default (docs/davae.md, "The embedding"). ``"latent_and_pcs"``: the latent and those
        PCs side by side, the PCs scaled to the latent's total variance (``obsm['X_davae_joint']``,
        :func:`davae.training.joint_embedding`; ``X_davae_pca`` is written too): the latent's mixing and
        purity with the PCs' separation for k-means (*compositions* Tran ARI 1.00 vs 0.71), at some cost in
        Leiden NMI on cell lines; not the default either (docs/davae.md, "The embedding"). ``X_davae`` is
        written either way.
    n_top_genes, target_sum
        Preprocessing when ``preprocess=True``: per-batch ``normalize_total(target_sum)`` + ``log1p``,
        Seurat-flavour HVG per batch ranked by the number of batches, top ``n_top_genes``.
    """

    hidden_layers: tuple[int, ...] = (128, 64, 32)
    latent_dim: int = 10
    encoder_batch: bool = False
    decoder_batch: bool = True
    decoder_batch_mode: str = "affine"
    dropout_encoder: float = 0.1
    dropout_decoder: float = 0.1
    dropout_classifier: float = 0.01
    classifier_hidden: int = 256
    classifier_depth: int = 1
    classifier_lr_factor: float = 5.0
    recon_weight: str = "all"
    reference_batch: str | None = None
    recon_loss: str = "gaussian"
    domain_lambda: float = 0.1
    lambda_schedule: str = "constant"
    domain_prior: str = "local"
    prior_warmup: float = 0.25
    prior_neighbors: int = 30
    prior_share: float = 0.1
    prior_smoothing: int = 1
    prior_fallback: bool = False
    epochs: int = 20
    min_steps: int = 2000
    early_stopping: bool = False
    validation_fraction: float = 0.1
    patience: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    adam_eps: float = 1e-7
    weight_decay: float = 0.0
    embedding: str = "latent"
    embedding_pcs: int = 30
    n_top_genes: int = 2000
    target_sum: float = 1e6

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden_layers"] = list(self.hidden_layers)
        return d


PRESETS: dict[str, DAVAEParams] = {
    "scbean": DAVAEParams(
        hidden_layers=(128, 64, 32),
        latent_dim=5,
        encoder_batch=True,
        decoder_batch=True,
        decoder_batch_mode="input",
        dropout_encoder=0.1,
        dropout_decoder=0.1,
        dropout_classifier=0.01,
        classifier_hidden=16,
        classifier_lr_factor=1.0,
        recon_weight="reference",
        recon_loss="scbean",
        domain_lambda=1.0,
        lambda_schedule="constant",
        domain_prior="none",
        epochs=20,
        min_steps=0,
        batch_size=128,
        lr=0.01,
    ),
    "default": DAVAEParams(),
}

OVERRIDE_NAMES = tuple(f.name for f in fields(DAVAEParams))


def get_params(preset: str | DAVAEParams = "default", **overrides: Any) -> DAVAEParams:
    """Resolve a preset name (or params object) plus keyword overrides into a checked :class:`DAVAEParams`."""
    if isinstance(preset, DAVAEParams):
        base = preset
    else:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        base = PRESETS[preset]
    unknown = sorted(set(overrides) - set(OVERRIDE_NAMES))
    if unknown:
        raise ValueError(f"unknown DAVAE parameter(s) {unknown}; valid names: {', '.join(OVERRIDE_NAMES)}")
    overrides = copy.deepcopy(overrides)
    if "hidden_layers" in overrides:
        hl = overrides["hidden_layers"]
        if isinstance(hl, str):
            hl = [int(v) for v in hl.split(",") if v.strip()]
        overrides["hidden_layers"] = tuple(int(v) for v in hl)
    params = replace(base, **overrides)
    _check(params)
    return params


def _check(p: DAVAEParams) -> None:
    if not p.hidden_layers or any(int(h) < 1 for h in p.hidden_layers):
        raise ValueError(f"hidden_layers must be positive widths, got {list(p.hidden_layers)}")
    for name in ("latent_dim", "epochs", "batch_size", "classifier_hidden", "classifier_depth", "n_top_genes",
                 "embedding_pcs"):
        if int(getattr(p, name)) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(p, name)}")
    if p.batch_size < 2:
        raise ValueError("batch_size must be >= 2 (batch normalisation needs two cells)")
    if not 0.0 < p.validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {p.validation_fraction}")
    if p.patience < 1:
        raise ValueError(f"patience must be >= 1, got {p.patience}")
    if p.min_steps < 0:
        raise ValueError(f"min_steps must be >= 0, got {p.min_steps}")
    for name in ("dropout_encoder", "dropout_decoder", "dropout_classifier"):
        if not 0.0 <= getattr(p, name) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(p, name)}")
    if p.domain_lambda < 0:
        raise ValueError(f"domain_lambda must be >= 0, got {p.domain_lambda}")
    if p.classifier_lr_factor <= 0:
        raise ValueError(f"classifier_lr_factor must be > 0, got {p.classifier_lr_factor}")
    if p.lr <= 0:
        raise ValueError(f"lr must be > 0, got {p.lr}")
    if p.recon_weight not in RECON_WEIGHTS:
        raise ValueError(f"recon_weight must be one of {RECON_WEIGHTS}, got {p.recon_weight!r}")
    if p.recon_loss not in RECON_LOSSES:
        raise ValueError(f"recon_loss must be one of {RECON_LOSSES}, got {p.recon_loss!r}")
    if p.decoder_batch_mode not in DECODER_BATCH_MODES:
        raise ValueError(f"decoder_batch_mode must be one of {DECODER_BATCH_MODES}, got {p.decoder_batch_mode!r}")
    if p.embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {p.embedding!r}")
    if p.domain_prior not in DOMAIN_PRIORS:
        raise ValueError(f"domain_prior must be one of {DOMAIN_PRIORS}, got {p.domain_prior!r}")
    if not 0.0 <= p.prior_warmup < 1.0:
        raise ValueError(f"prior_warmup must be in [0, 1), got {p.prior_warmup}")
    if p.prior_neighbors < 1 or p.prior_smoothing < 0 or not 0.0 < p.prior_share <= 1.0:
        raise ValueError("prior_neighbors must be >= 1, prior_smoothing >= 0 and prior_share in (0, 1]; got "
                         f"{p.prior_neighbors}, {p.prior_smoothing}, {p.prior_share}")
    if not isinstance(p.prior_fallback, bool):
        raise ValueError(f"prior_fallback must be True or False, got {p.prior_fallback!r}")
    if p.lambda_schedule not in LAMBDA_SCHEDULES:
        raise ValueError(f"lambda_schedule must be one of {LAMBDA_SCHEDULES}, got {p.lambda_schedule!r}")
