"""DESC's training loops: layer-wise denoising pretraining, end-to-end fine-tuning and the KL(P||Q) loop.

Schedules follow eleozzr/desc 2.1.1 (``SAE.fit`` and ``DescModel.fit_on_all``):

* each denoising stack trains ``pretrain_epochs / 2`` epochs split over 3 learning-rate phases
  0.1, 0.01, 0.001 (``ceil(epochs / 3)`` epochs each);
* the whole autoencoder is then fine-tuned in ``ceil(pretrain_epochs / 50)`` phases of 50 epochs at learning
  rates 1, 0.1, 0.01, ... (300 epochs: 1 ... 1e-5); below 50 epochs, one phase of ``pretrain_epochs``;
* every phase uses a fresh SGD (momentum 0.9) on MSE with Keras-style early stopping on the epoch's training
  loss (min_delta 1e-4, patience 10); mini-batches of 256 in a new random order each epoch;
* clustering: SGD(lr 0.01, momentum 0.9) on KL(P||Q) for the encoder and the centres; each round recomputes
  Q on all cells, P from Q, the labels argmax Q, stops once (after the first round) the fraction of changed
  labels is below ``tol``; otherwise trains ``epochs_per_round`` epochs against that P.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import iter_batches, predict, rows, to_device
from .model import DescAutoencoder, DescClusterer, target_distribution

_EPS = 1e-7  # Keras' epsilon, used by its KL divergence


class EarlyStopping:
    """Keras ``EarlyStopping(monitor='loss', min_delta, patience)``: stop after ``patience`` epochs
    without the loss falling by more than ``min_delta`` below the best so far."""

    def __init__(self, min_delta: float = 1e-4, patience: int = 10):
        self.min_delta, self.patience = float(min_delta), int(patience)
        self.best, self.wait = math.inf, 0

    def step(self, loss: float) -> bool:
        """Record one epoch's loss; True when training should stop."""
        if loss < self.best - self.min_delta:
            self.best, self.wait = loss, 0
            return False
        self.wait += 1
        return self.wait >= self.patience


@dataclass
class TrainConfig:
    """Optimisation settings shared by all stages (defaults: DESC's)."""

    batch_size: int = 256
    momentum: float = 0.9
    early_stopping: bool = True
    min_delta: float = 1e-4
    patience: int = 10
    progress: bool = True


@dataclass
class PhaseLog:
    stage: str
    lr: float
    epochs: int
    final_loss: float


def _check_loss(loss: float, stage: str, lr: float) -> None:
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"DESC {stage} diverged (loss {loss}) at learning rate {lr}; check the input scale "
            "(log-normalised X) or set scale_bygroup"
        )


def _run_phase(forward, params, X, target_of, n: int, lr: float, epochs: int, cfg: TrainConfig, rng,
               device, loss_fn, bar, stage: str) -> tuple[float, int]:
    """Train ``epochs`` epochs (or until early stopping) with a fresh SGD; return (last loss, epochs run)."""
    opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
    stopper = EarlyStopping(cfg.min_delta, cfg.patience) if cfg.early_stopping else None
    loss_value, ran = math.nan, 0
    for _ in range(epochs):
        total = 0.0
        for idx in iter_batches(n, cfg.batch_size, rng):
            x = rows(X, idx, device)
            loss = loss_fn(forward(x), target_of(idx, x))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        loss_value, ran = total / n, ran + 1
        _check_loss(loss_value, stage, lr)
        if bar is not None:
            bar.set_postfix(lr=lr, loss=f"{loss_value:.5f}", refresh=False)
            bar.update(1)
        if stopper is not None and stopper.step(loss_value):
            break
    return loss_value, ran


def _mse(pred, target):
    return torch.nn.functional.mse_loss(pred, target)


def _same(idx, x):
    return x


def pretrain_stacks(ae: DescAutoencoder, X, epochs: int, cfg: TrainConfig, rng, device,
                    decaying_step: int = 3) -> list[PhaseLog]:
    """Layer-wise pretraining: stack ``i`` learns to reconstruct the (dropout-corrupted) output of stack i-1."""
    log: list[PhaseLog] = []
    per_phase = math.ceil(epochs / decaying_step)
    features = to_device(X, device)
    n = X.shape[0]
    for i in range(ae.n_stacks):
        ae.train()
        bar = tqdm(total=per_phase * decaying_step, desc=f"DESC pretrain stack {i + 1}/{ae.n_stacks}",
                   disable=not cfg.progress, leave=False)
        for j in range(decaying_step):
            lr = 10.0 ** (-1 - j)
            loss, ran = _run_phase(lambda h, i=i: ae.stack_forward(i, h), ae.stack_parameters(i), features,
                                   _same, n, lr, per_phase, cfg, rng, device, _mse, bar,
                                   f"pretraining of stack {i + 1}")
            log.append(PhaseLog(f"stack{i}", lr, ran, loss))
        bar.close()
        ae.eval()
        features = torch.as_tensor(predict(lambda h, i=i: ae.encode_layer(i, h), features, device), device=device)
    return log


def finetune(ae: DescAutoencoder, X, epochs: int, cfg: TrainConfig, rng, device,
             phase_epochs: int = 50) -> list[PhaseLog]:
    """End-to-end fine-tuning in ``ceil(epochs / 50)`` phases at learning rates 1, 0.1, 0.01, ...

    Phases last 50 epochs as in DESC; below 50 total epochs the single phase lasts ``epochs`` (DESC would
    still run 50), so that small demo/test settings cost what they say.
    """
    log: list[PhaseLog] = []
    phase_epochs = max(1, min(phase_epochs, epochs))
    n_phases = math.ceil(epochs / phase_epochs)
    data = to_device(X, device)
    ae.train()
    bar = tqdm(total=n_phases * phase_epochs, desc="DESC fine-tune autoencoder", disable=not cfg.progress, leave=False)
    for j in range(n_phases):
        lr = 10.0 ** (-j)
        loss, ran = _run_phase(ae, list(ae.parameters()), data, _same, X.shape[0], lr, phase_epochs, cfg, rng,
                               device, _mse, bar, "fine-tuning")
        log.append(PhaseLog("finetune", lr, ran, loss))
    bar.close()
    ae.eval()
    return log


def pretrain(ae: DescAutoencoder, X, epochs: int, cfg: TrainConfig, rng, device,
             layerwise: bool = True) -> list[PhaseLog]:
    """DESC's ``SAE.fit``: layer-wise stacks for ``epochs / 2`` epochs each, then fine-tuning."""
    log = pretrain_stacks(ae, X, int(epochs / 2), cfg, rng, device) if layerwise else []
    return log + finetune(ae, X, epochs, cfg, rng, device)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Keras ``kld``: ``Σ_j p log(p / q)`` with both clipped to [1e-7, 1], averaged over the cells."""
    p = p.clamp(_EPS, 1.0)
    q = q.clamp(_EPS, 1.0)
    return (p * (p / q).log()).sum(1).mean()


@dataclass
class ClusterResult:
    labels: np.ndarray
    q: np.ndarray
    n_rounds: int
    converged: bool
    delta_labels: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def fit_clustering(model: DescClusterer, X, init_labels: np.ndarray, *, tol: float = 0.005, max_rounds: int = 1000,
                   epochs_per_round: int = 5, lr: float = 0.01, cfg: TrainConfig, rng, device) -> ClusterResult:
    """DESC's self-training loop (``fit_on_all``): refine encoder and centres on KL(P || Q)."""
    data = to_device(X, device)
    n = X.shape[0]
    opt = torch.optim.SGD(model.trainable_parameters(), lr=lr, momentum=cfg.momentum)
    last = np.asarray(init_labels)
    deltas: list[float] = []
    losses: list[float] = []
    converged = False
    bar = tqdm(total=max_rounds, desc="DESC clustering (KL)", disable=not cfg.progress, leave=False)
    rounds = 0
    for ite in range(int(max_rounds)):
        model.eval()
        q = predict(model, data, device)
        labels = q.argmax(1)
        delta = float(np.mean(labels != last))
        deltas.append(delta)
        last = labels
        if ite > 0 and delta < tol:
            converged = True
            break
        p = torch.as_tensor(target_distribution(q.astype(np.float64)).astype(np.float32), device=device)
        model.train()
        for _ in range(int(epochs_per_round)):
            total = 0.0
            for idx in iter_batches(n, cfg.batch_size, rng):
                loss = kl_divergence(p[torch.as_tensor(idx, device=device)], model(rows(data, idx, device)))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / n)
            _check_loss(losses[-1], "clustering", lr)
        rounds = ite + 1
        bar.set_postfix(delta_label=f"{delta:.4f}", loss=f"{losses[-1]:.5f}", refresh=False)
        bar.update(1)
    bar.close()
    model.eval()
    # Final Q and labels from the final weights (equal to the last check when the loop converged).
    q = predict(model, data, device)
    return ClusterResult(q.argmax(1), q, rounds, converged, deltas, losses)
