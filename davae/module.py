"""The DAVAE network (PyTorch): encoder, decoder, domain classifier behind a gradient-reversal layer, and
the loss. No data handling here (see :mod:`davae.training`) and no AnnData (see :mod:`davae.model`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .presets import DECODER_BATCH_MODES

# Keras BatchNormalization defaults (momentum 0.99 = PyTorch momentum 0.01, epsilon 1e-3)
BN_MOMENTUM = 0.01
BN_EPS = 1e-3


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the incoming gradient by ``-scale`` backward (Ganin & Lempitsky 2015)."""
    return _GradReverse.apply(x, float(scale))


class BatchNormNoScale(nn.Module):
    """Batch normalisation with a learned shift and no learned scale (Keras ``center=True, scale=False``)."""

    def __init__(self, n: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(n, eps=BN_EPS, momentum=BN_MOMENTUM, affine=False)
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.bn(x) + self.bias


def _mlp(n_in: int, widths: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear → BatchNorm (shift only) → ReLU → Dropout, for each width."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(n_in, w), BatchNormNoScale(w), nn.ReLU(), nn.Dropout(dropout)]
        n_in = w
    return nn.Sequential(*layers)


class DAVAEModule(nn.Module):
    """Domain-adversarial (conditional) VAE.

    Parameters
    ----------
    n_genes, n_batches
        Input width and number of batches (domains).
    hidden_layers, latent_dim
        Encoder widths and latent size; the decoder mirrors the encoder.
    encoder_batch, decoder_batch
        Concatenate the batch one-hot to the encoder / decoder input.
    dropout_encoder, dropout_decoder, dropout_classifier, classifier_hidden
        See :class:`davae.presets.DAVAEParams`.
    decoder_batch_mode
        How the decoder gets the batch (with ``decoder_batch``): ``"input"``, the one-hot concatenated to its
        input (scbean); ``"affine"``, a per-batch, per-gene scale and shift of its output before the
        softplus, ``softplus(out(h(z))·exp(s_b) + o_b)``, the hidden layers seeing ``z`` only.
    """

    def __init__(
        self,
        n_genes: int,
        n_batches: int,
        hidden_layers: Sequence[int] = (128, 64, 32),
        latent_dim: int = 10,
        encoder_batch: bool = False,
        decoder_batch: bool = True,
        dropout_encoder: float = 0.1,
        dropout_decoder: float = 0.1,
        dropout_classifier: float = 0.01,
        classifier_hidden: int = 16,
        classifier_depth: int = 1,
        decoder_batch_mode: str = "input",
    ):
        super().__init__()
        if decoder_batch_mode not in DECODER_BATCH_MODES:
            raise ValueError(f"decoder_batch_mode must be one of {DECODER_BATCH_MODES}, got {decoder_batch_mode!r}")
        self.n_genes, self.n_batches = int(n_genes), int(n_batches)
        self.encoder_batch, self.decoder_batch = bool(encoder_batch), bool(decoder_batch)
        self.decoder_batch_mode = decoder_batch_mode
        self.batch_input = self.decoder_batch and decoder_batch_mode == "input"
        hidden = [int(h) for h in hidden_layers]
        self.encoder = _mlp(n_genes + (n_batches if encoder_batch else 0), hidden, dropout_encoder)
        self.z_mean = nn.Linear(hidden[-1], latent_dim)
        self.z_logvar = nn.Linear(hidden[-1], latent_dim)
        self.decoder = _mlp(latent_dim + (n_batches if self.batch_input else 0), hidden[::-1], dropout_decoder)
        self.out = nn.Linear(hidden[0], n_genes)
        # "affine": per batch and gene, log-scale and shift of the output layer (zeros: the identity at first)
        self.batch_log_scale = self.batch_shift = None
        if self.decoder_batch and decoder_batch_mode == "affine":
            self.batch_log_scale = nn.Parameter(torch.zeros(n_batches, n_genes))
            self.batch_shift = nn.Parameter(torch.zeros(n_batches, n_genes))
        self.classifier = nn.Sequential(
            *_mlp(latent_dim, [classifier_hidden] * classifier_depth, dropout_classifier),
            nn.Linear(classifier_hidden, n_batches),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases (Keras ``Dense`` defaults); fresh batch-norm statistics."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, BatchNormNoScale):
                m.bn.reset_running_stats()
                nn.init.zeros_(m.bias)
        for p in (self.batch_log_scale, self.batch_shift):
            if p is not None:
                nn.init.zeros_(p)

    def encode(self, x: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the latent mean and log-variance."""
        h = torch.cat([x, onehot], 1) if self.encoder_batch else x
        h = self.encoder(h)
        return self.z_mean(h), self.z_logvar(h)

    def decode(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Return the reconstructed expression (softplus output, non-negative)."""
        return F.softplus(self.decode_logits(z, onehot))

    def decode_logits(self, z: torch.Tensor, onehot: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's output before the softplus (``decode`` = ``softplus(decode_logits)``), with the batch
        (``onehot``) as ``decoder_batch_mode`` says; with ``rows``, only for those cells (the hidden layers, and
        so their batch statistics, still see every cell)."""
        h = self.decoder(torch.cat([z, onehot], 1) if self.batch_input else z)
        if rows is not None:
            h, onehot = h.index_select(0, rows), onehot.index_select(0, rows)
        out = self.out(h)
        if self.batch_shift is not None:
            out = out * torch.exp(onehot @ self.batch_log_scale) + onehot @ self.batch_shift
        return out

    def forward(self, x: torch.Tensor, onehot: torch.Tensor, grl_scale: float = 1.0,
                recon_rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Encode, sample ``z`` (reparameterisation), decode, and classify the domain of ``z`` through the GRL.

        The decoder output is returned before its softplus (``x_logits``): :func:`davae_loss` applies the
        softplus inside its fused reconstruction term, which saves the elementwise passes of a separate one.
        ``recon_rows`` (indices into the minibatch): compute ``x_logits`` for these cells only, e.g. those
        with a non-zero reconstruction weight. The decoder's hidden layers, and so their batch statistics,
        still see every cell; only the genes-wide output layer is skipped for the others.
        """
        mu, logvar = self.encode(x, onehot)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        x_logits = self.decode_logits(z, onehot, rows=recon_rows)
        logits = self.classifier(grad_reverse(z, grl_scale))
        return {"mu": mu, "logvar": logvar, "z": z, "x_logits": x_logits, "logits": logits}


def scbean_reconstruction(x: torch.Tensor, x_hat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per-cell reconstruction term of scbean 0.5.6, as coded.

    ``mse = mean_j (w·x − w·x̂)²``, ``σ² = var(w·x − w·x̂)`` over the whole minibatch matrix (population
    variance, gradient flows through it), ``recon = mse·(D/2)/σ² + (D/2)/σ²·log σ²``.
    """
    d = x.shape[1]
    resid = w[:, None] * x - w[:, None] * x_hat
    mse = resid.pow(2).mean(1)
    var = resid.var(unbiased=False)
    return mse * (0.5 * d) / var + (0.5 * d) / var * torch.log(var)


def gaussian_reconstruction(x: torch.Tensor, x_hat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per-cell unit-variance Gaussian negative log-likelihood (up to a constant): ``w·½·Σ_j (x − x̂)²``."""
    return w * 0.5 * (x - x_hat).pow(2).sum(1)


class _SoftplusReconstruction(torch.autograd.Function):
    """Minibatch mean of a reconstruction term of ``x̂ = softplus(logits)``, forward and backward fused.

    Numerically the same as :func:`scbean_reconstruction` / :func:`gaussian_reconstruction` applied to
    ``softplus(logits)`` and averaged over cells (a test compares values and gradients), but in about a third
    of the elementwise passes over the cells × genes matrix: the gradient with respect to the logits is
    written in closed form, ``−w·sigmoid(logits)·∂L/∂r``, where ``∂L/∂r`` is ``r/N`` for the Gaussian term
    and ``(2A·r + B)/(N·D)`` for scbean's minibatch-variance term (``A``, ``B`` scalars from ``σ²`` and the
    residual mean). Only ``logits`` receives a gradient; ``x`` and ``w`` are data.

    ``n`` is the number of cells of the minibatch when ``logits`` holds only some of them: the others have
    weight 0, so their residual ``w·(x − x̂)`` is 0 and they add nothing to the sums, only to the counts.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor, w: torch.Tensor, kind: str, n: int) -> torch.Tensor:  # noqa: D102
        d = x.shape[1]
        numel = n * d
        resid = x - F.softplus(logits)
        if kind == "scbean":
            resid.mul_(w[:, None])
            flat = resid.view(-1)
            # one BLAS dot and one sum (torch.var_mean is ~50x slower here); scalars in float64 so that
            # σ² = E[r²] − E[r]² keeps its precision
            s2 = torch.dot(flat, flat).double() / numel  # mean of r² = mean over cells of mse_i
            m = flat.sum().double() / numel
            var = s2 - m * m
            log_var = torch.log(var)
            loss = 0.5 * d * (s2 + log_var) / var
            dl_dvar = 0.5 * d * (1.0 - s2 - log_var) / (var * var)
            coef_r = 2.0 * (0.5 * d / var + dl_dvar) / numel  # ∂L/∂r = coef_r·r + coef_1
            coef_1 = -2.0 * m * dl_dvar / numel
            loss, coef_r, coef_1 = loss.to(resid.dtype), coef_r.to(resid.dtype), coef_1.to(resid.dtype)
            ctx.save_for_backward(logits, resid, w, coef_r, coef_1)
            ctx.gaussian = False
        else:
            loss = (resid.pow(2).sum(1) * w).sum() * (0.5 / n)
            # the coefficient stays a Python float: a device tensor made from it would be a host-to-device
            # copy, i.e. a synchronisation, in every CUDA step
            ctx.save_for_backward(logits, resid, w)
            ctx.gaussian, ctx.inv_n = True, 1.0 / n
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        if ctx.gaussian:
            logits, resid, w = ctx.saved_tensors
            g = torch.sigmoid(logits).mul_(resid * ctx.inv_n)
        else:
            logits, resid, w, coef_r, coef_1 = ctx.saved_tensors
            g = torch.sigmoid(logits).mul_(resid * coef_r + coef_1)
        g.mul_(w[:, None] * -grad)
        return g, None, None, None, None


def softplus_reconstruction(logits: torch.Tensor, x: torch.Tensor, w: torch.Tensor, kind: str,
                            n_cells: int | None = None) -> torch.Tensor:
    """Minibatch mean of the ``kind`` (``"scbean"`` or ``"gaussian"``) reconstruction term of
    ``softplus(logits)`` against ``x`` with per-cell weights ``w``, fused (see :class:`_SoftplusReconstruction`).

    ``n_cells``: size of the minibatch when ``logits``/``x``/``w`` hold only its cells of non-zero weight
    (default: ``len(x)``); the result equals the term over the whole minibatch with the others at weight 0."""
    return _SoftplusReconstruction.apply(logits, x, w, kind, len(x) if n_cells is None else int(n_cells))


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-cell KL(N(μ, σ²) ‖ N(0, 1)) = −½ Σ(1 + log σ² − μ² − σ²)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def _full(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when autocast left it in a half-precision type; unchanged otherwise."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def davae_loss(
    out: dict[str, torch.Tensor],
    x: torch.Tensor,
    batch: torch.Tensor,
    w: torch.Tensor,
    domain_lambda: float,
    recon_loss: str = "gaussian",
    recon_rows: torch.Tensor | None = None,
    logit_prior: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Minibatch loss: mean over cells of ``recon + KL + CE·D·λ``; returns the total and its parts.

    ``batch`` holds integer batch codes, ``w`` the per-cell reconstruction weight. ``out`` is what
    :meth:`DAVAEModule.forward` returns; its decoder output ``x_logits`` is taken before the softplus, which
    :func:`softplus_reconstruction` applies inside the fused reconstruction term (equal in value and gradient
    to :func:`scbean_reconstruction` / :func:`gaussian_reconstruction` of ``softplus(x_logits)``). Every part
    is computed in at least float32, also when the network ran under bf16 autocast. ``recon_rows``: the
    minibatch rows ``x_logits`` was computed for (see :meth:`DAVAEModule.forward`); every other row must
    have weight 0. ``logit_prior`` (cells × batches, log-probabilities): added to the classifier's logits
    before the cross-entropy (the local batch prior, :mod:`davae.prior`).
    """
    xr, wr = (x, w) if recon_rows is None else (x.index_select(0, recon_rows), w.index_select(0, recon_rows))
    recon = softplus_reconstruction(_full(out["x_logits"]), xr, wr, recon_loss, n_cells=x.shape[0])
    kl = kl_normal(_full(out["mu"]), _full(out["logvar"]))
    logits = _full(out["logits"]) if logit_prior is None else _full(out["logits"]) + logit_prior
    domain = F.cross_entropy(logits, batch, reduction="none") * x.shape[1] * domain_lambda
    parts = {"recon": recon, "kl": kl.mean(), "domain": domain.mean()}
    parts["loss"] = parts["recon"] + parts["kl"] + parts["domain"]
    return parts


def ganin_lambda(progress: float) -> float:
    """Ganin et al. (2016) ramp 2/(1+exp(−10p)) − 1, from 0 at p=0 to ~1 at p=1."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
