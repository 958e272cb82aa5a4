"""The published mechanisms of issue 14, measured on DAVAE: Portal's boundary on the discriminator score,
IWAN's importance weights, uniPort's minibatch unbalanced optimal transport, SCALEX's domain-specific
batch normalisation, and CDAN's adversary conditioned on cluster pseudo-labels.

Each is written here from its paper's description (not from its code) as a patch of the DAVAE core for the
duration of one fit, so the core (``davae/``) keeps only what the study adopted and the rows of
``docs/davae.md`` ("The published mechanisms for composition shift, measured") can be reproduced. A patched
fit is otherwise the default fit: same preprocessing, schedule, decoder and seed handling.

- **Portal** (Zhao et al., Nat Comput Sci 2022). Portal's discriminators score each cell; their losses
  clip the score to [-t, t] (t = 5, after a few warm-up steps), so a cell scored beyond the boundary, far
  inside its own domain, gives no gradient to the discriminator nor to the encoder: a cell type only one
  domain has is left out of the alignment. Here, for the multi-class classifier behind the gradient
  reversal: the cell's log-odds of its own batch, m = logit_own - logsumexp(logits of the other batches)
  (after the local prior's log-probabilities when the prior is on), enters the cross-entropy as
  softplus(-clip(m, -t, t)), which equals the cross-entropy inside the boundary and is flat outside it.
- **IWAN** (Zhang et al., CVPR 2018; partial domain adaptation). Each cell's term of the adversary is
  weighted by how little the domain classifier believes the cell's own batch, 1 - p(own), detached and
  scaled to mean 1 in the minibatch: cells that look batch-specific (a type other batches lack) weigh
  little. IWAN reads the weights off a second classifier trained without gradient reversal; here the one
  classifier's output is used.
- **uniPort** (Cao et al., Nat Commun 2022). No adversary: in each minibatch, the latent means of every pair
  of batches are coupled by entropic *unbalanced* optimal transport (KL-relaxed marginals, so mass may go
  unmatched; squared Euclidean cost, entropic weight 0.1 on the cost scaled by its maximum, marginal weight
  1.0, as uniPort's defaults), and the loss adds ``weight`` · sum(P · C) with P held fixed (the cost carries
  the gradient).
- **SCALEX** (Xiong et al., Nat Commun 2022). No adversary: the decoder's batch normalisation layers are
  domain-specific (each batch normalised with its own statistics and its own learned shift), the batch's
  only route into the decoder; the encoder sees no batch.
- **CDAN** (Long et al., NeurIPS 2018). The domain classifier sees the multilinear map z ⊗ g of the latent and
  the cell's class prediction g, so it asks "which batch" within each class, not across all cells. With no
  labels, g is a cluster pseudo-label: at the end of the default's warm-up (the point where the local prior
  is read), Leiden clusters of the latent means of every cell (15 neighbours, resolution 1, scanpy's
  defaults otherwise); from then on each cell's g is the one-hot of its nearest cluster centroid at its
  current latent position (held fixed, no gradient), and the classifier's first layer has one block of
  weights per cluster. Without the prior the adversary then acts in every cluster; with it, also only
  between the batches present around the cell.

Usage (from the repository root)::

    # the development panel with these settings (all arguments after --panel go to davae_panel.py)
    OMP_NUM_THREADS=1 python benchmarks/davae_published.py --panel --methods portal5_prior --seeds 0 --tsv X.tsv
    # the simulated spots of benchmarks/transfer_groundtruth.py (spot r, the paper's similarity and the MLP)
    OMP_NUM_THREADS=1 python benchmarks/davae_published.py --spots portal5_prior --seeds 0,1,2
    # the same fits' latent, corrected PCs and both side by side (the default: --spots davae)
    OMP_NUM_THREADS=1 python benchmarks/davae_published.py --spots davae --embedding latent_and_pcs --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "workflow"), str(ROOT / "benchmarks"), str(ROOT)]

import davae.model  # noqa: E402
import davae.module  # noqa: E402
import davae.training  # noqa: E402
from davae.module import BN_EPS, BN_MOMENTUM, BatchNormNoScale, DAVAEModule, davae_loss  # noqa: E402


# ---------------------------------------------------------------------------------------------------------
# Portal: a boundary on the discriminator score


def own_batch_log_odds(logits: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Per cell, log p(own batch) - log(1 - p(own batch)) under softmax(``logits``)."""
    own = logits.gather(1, batch[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(batch, logits.shape[1]).bool(), float("-inf")).logsumexp(1)
    return own - others


def portal_loss(boundary: float) -> Callable:
    """``davae_loss`` with the domain cross-entropy clipped at Portal's boundary (see the module docstring)."""

    def loss(out, x, batch, w, domain_lambda, recon_loss="gaussian", recon_rows=None, logit_prior=None):
        parts = davae_loss(out, x, batch, w, 0.0, recon_loss, recon_rows=recon_rows, logit_prior=None)
        logits = out["logits"].float() + (0 if logit_prior is None else logit_prior)
        m = own_batch_log_odds(logits, batch).clamp(-boundary, boundary)
        parts["domain"] = (F.softplus(-m) * x.shape[1] * domain_lambda).mean()
        parts["loss"] = parts["recon"] + parts["kl"] + parts["domain"]
        return parts

    return loss


def iwan_loss() -> Callable:
    """``davae_loss`` with each cell's domain cross-entropy weighted by 1 - p(own batch), detached and
    scaled to mean 1 over the minibatch (IWAN's importance weights, read off the classifier itself)."""

    def loss(out, x, batch, w, domain_lambda, recon_loss="gaussian", recon_rows=None, logit_prior=None):
        parts = davae_loss(out, x, batch, w, 0.0, recon_loss, recon_rows=recon_rows, logit_prior=None)
        logits = out["logits"].float() + (0 if logit_prior is None else logit_prior)
        ce = F.cross_entropy(logits, batch, reduction="none")
        weight = (1.0 - torch.exp(-ce)).detach()
        weight = weight / weight.mean().clamp_min(1e-12)
        parts["domain"] = (ce * weight * x.shape[1] * domain_lambda).mean()
        parts["loss"] = parts["recon"] + parts["kl"] + parts["domain"]
        return parts

    return loss


# ---------------------------------------------------------------------------------------------------------
# uniPort: minibatch unbalanced optimal transport between batches


@torch.no_grad()
def unbalanced_plan(cost: torch.Tensor, reg: float = 0.1, reg_m: float = 1.0, iters: int = 50) -> torch.Tensor:
    """Entropic unbalanced OT plan between uniform marginals (KL-relaxed, weight ``reg_m``), by the generalised
    Sinkhorn scaling (Chizat et al. 2018) on the kernel exp(-C / (reg · max C))."""
    ns, nt = cost.shape
    a = torch.full((ns,), 1.0 / ns, dtype=cost.dtype)
    b = torch.full((nt,), 1.0 / nt, dtype=cost.dtype)
    k = torch.exp(-cost / (reg * cost.max().clamp_min(1e-12)))
    f = reg_m / (reg_m + reg)
    u, v = torch.ones_like(a), torch.ones_like(b)
    for _ in range(iters):
        u = (a / (k @ v).clamp_min(1e-30)) ** f
        v = (b / (k.T @ u).clamp_min(1e-30)) ** f
    return u[:, None] * k * v[None, :]


def uot_loss(weight: float) -> Callable:
    """``davae_loss`` plus ``weight`` · the minibatch UOT cost between every pair of batches' latent means."""

    def loss(out, x, batch, w, domain_lambda, recon_loss="gaussian", recon_rows=None, logit_prior=None):
        parts = davae_loss(out, x, batch, w, domain_lambda, recon_loss, recon_rows=recon_rows,
                           logit_prior=logit_prior)
        mu = out["mu"].float()
        present = torch.unique(batch).tolist()
        ot = mu.new_zeros(())
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                za, zb = mu[batch == a], mu[batch == b]
                cost = torch.cdist(za, zb).pow(2)
                ot = ot + (unbalanced_plan(cost.detach()) * cost).sum()
        parts["domain"] = parts["domain"] + weight * ot  # reported with the alignment term
        parts["loss"] = parts["recon"] + parts["kl"] + parts["domain"]
        return parts

    return loss


# ---------------------------------------------------------------------------------------------------------
# SCALEX: domain-specific batch normalisation in the decoder


class DomainSpecificBN(nn.Module):
    """Batch normalisation (shift only, as the network's others) with one set of statistics and one shift
    per batch; ``codes`` (the cells' batch codes) set by the decoder before each call."""

    def __init__(self, n: int, n_batches: int):
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm1d(n, eps=BN_EPS, momentum=BN_MOMENTUM, affine=False)
                                 for _ in range(n_batches))
        self.bias = nn.Parameter(torch.zeros(n_batches, n))
        self.codes: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = torch.empty_like(x)
        for b, bn in enumerate(self.bns):
            rows = torch.nonzero(self.codes == b)[:, 0]
            if len(rows) == 0:
                continue
            xb = x.index_select(0, rows)
            if self.training and len(rows) < 2:  # one cell: its batch's running statistics
                xb = F.batch_norm(xb, bn.running_mean, bn.running_var, training=False, eps=bn.eps)
            else:
                xb = bn(xb)
            out.index_copy_(0, rows, xb + self.bias[b])
        return out


def dsbn_module(build: Callable) -> Callable:
    """Wrap ``davae.model._build_module``: the decoder's batch normalisation becomes domain-specific."""

    def _build(p, n_genes, n_batches):
        m: DAVAEModule = build(p, n_genes, n_batches)
        for i, layer in enumerate(m.decoder):
            if isinstance(layer, BatchNormNoScale):
                m.decoder[i] = DomainSpecificBN(layer.bn.num_features, n_batches)
        dsbn = [layer for layer in m.decoder if isinstance(layer, DomainSpecificBN)]
        plain = m.decode_logits

        def decode_logits(z, onehot, rows=None):
            codes = onehot.argmax(1)
            for layer in dsbn:
                layer.codes = codes
            return plain(z, onehot, rows)

        m.decode_logits = decode_logits
        return m

    return _build


# ---------------------------------------------------------------------------------------------------------
# CDAN: an adversary conditioned on cluster pseudo-labels

MAX_CLUSTERS = 64


class ConditionedClassifier(nn.Module):
    """CDAN's discriminator on z ⊗ onehot(cluster): the first layer has one block of weights per cluster (at
    most :data:`MAX_CLUSTERS`). Until ``centroids`` is set every cell is in cluster 0 (the plain classifier);
    then a cell's cluster is its nearest centroid, read off ``z`` without gradient."""

    def __init__(self, latent_dim: int, hidden: int, depth: int, dropout: float, n_batches: int):
        super().__init__()
        self.net = nn.Sequential(*davae.module._mlp(latent_dim * MAX_CLUSTERS, [hidden] * depth, dropout),
                                 nn.Linear(hidden, n_batches))
        self.centroids: torch.Tensor | None = None

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Each cell's cluster: its nearest centroid (all 0 before the centroids are set)."""
        if self.centroids is None:
            return torch.zeros(len(z), dtype=torch.long, device=z.device)
        return torch.cdist(z.detach().float(), self.centroids.to(z.device)).argmin(1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        onehot = F.one_hot(self.assign(z), MAX_CLUSTERS).to(z.dtype)
        return self.net((z[:, :, None] * onehot[:, None, :]).flatten(1))


def leiden_centroids(z: np.ndarray, seed: int = 0) -> np.ndarray:
    """Centroids of the Leiden clusters of ``z`` (15-NN graph, resolution 1)."""
    import anndata as ad
    import scanpy as sc

    a = ad.AnnData(np.asarray(z, dtype=np.float32))
    sc.pp.neighbors(a, n_neighbors=15, use_rep="X", random_state=seed)
    sc.tl.leiden(a, resolution=1.0, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    labels = a.obs["leiden"].astype(int).to_numpy()
    if labels.max() + 1 > MAX_CLUSTERS:
        raise ValueError(f"{labels.max() + 1} Leiden clusters, more than MAX_CLUSTERS={MAX_CLUSTERS}")
    return np.stack([z[labels == c].mean(0) for c in range(labels.max() + 1)])


def cdan_patches(use_prior: bool) -> contextlib.AbstractContextManager:
    """The fit's classifier becomes a :class:`ConditionedClassifier`; at the local prior's computation (end of
    the warm-up) its centroids are set from the latent means, and the prior is kept (``use_prior``) or
    replaced by the global one (every batch present around every cell)."""
    built: list[DAVAEModule] = []
    plain_prior = davae.training.local_batch_prior

    def build(old: Callable) -> Callable:
        def _build(p, n_genes, n_batches):
            m = old(p, n_genes, n_batches)
            m.classifier = ConditionedClassifier(p.latent_dim, p.classifier_hidden, p.classifier_depth,
                                                 p.dropout_classifier, n_batches)
            m.classifier.apply(_glorot)
            built.append(m)
            return m
        return _build

    def prior(z, codes, n_batches, **kw):
        built[-1].classifier.centroids = torch.from_numpy(leiden_centroids(z)).float()
        lp = plain_prior(z, codes, n_batches, **kw)
        return lp if use_prior else np.zeros_like(lp)

    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        with patched(build=build):
            davae.training.local_batch_prior = prior
            try:
                yield
            finally:
                davae.training.local_batch_prior = plain_prior

    return ctx()


def _glorot(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------------------
# the settings measured: name -> (DAVAE overrides, patch)


@contextlib.contextmanager
def patched(loss: Callable | None = None, build: Callable | None = None) -> Iterator[None]:
    old_loss, old_build = davae.training.davae_loss, davae.model._build_module
    try:
        if loss is not None:
            davae.training.davae_loss = loss
        if build is not None:
            davae.model._build_module = build(old_build)
        yield
    finally:
        davae.training.davae_loss, davae.model._build_module = old_loss, old_build


GLOBAL = {"domain_prior": "none"}
NO_ADVERSARY = {"domain_prior": "none", "domain_lambda": 0.0}
SETTINGS: dict[str, tuple[dict, Callable[[], contextlib.AbstractContextManager]]] = {
    # Portal's boundary alone (the adversary everywhere from the first step, as Portal's), at the default's
    # λ 0.1 and at λ 1 (the first default's); and on top of the default's local prior
    "portal5": (GLOBAL, lambda: patched(loss=portal_loss(5.0))),
    "portal5_l1": (dict(GLOBAL, domain_lambda=1.0), lambda: patched(loss=portal_loss(5.0))),
    "portal5_prior": ({}, lambda: patched(loss=portal_loss(5.0))),
    # IWAN-style importance weights on the adversary (Zhang et al. 2018), alone and with the local prior
    "iwan": (GLOBAL, lambda: patched(loss=iwan_loss())),
    "iwan_prior": ({}, lambda: patched(loss=iwan_loss())),
    # uniPort's minibatch UOT instead of the adversary, three weights
    "uot1": (NO_ADVERSARY, lambda: patched(loss=uot_loss(1.0))),
    "uot10": (NO_ADVERSARY, lambda: patched(loss=uot_loss(10.0))),
    "uot100": (NO_ADVERSARY, lambda: patched(loss=uot_loss(100.0))),
    # SCALEX: domain-specific BN as the decoder's only batch input, no adversary; and with the default's
    # adversary and local prior
    "dsbn": (dict(NO_ADVERSARY, decoder_batch=False), lambda: patched(build=dsbn_module)),
    "dsbn_prior": ({"decoder_batch": False}, lambda: patched(build=dsbn_module)),
    # CDAN: the adversary conditioned on Leiden pseudo-labels of the warm-up latent, everywhere after the
    # default's warm-up, and on top of the local prior
    "cdan": ({}, lambda: cdan_patches(use_prior=False)),
    "cdan_prior": ({}, lambda: cdan_patches(use_prior=True)),
}


def run_panel(argv: list[str]) -> int:
    import davae_panel

    for name, (params, _) in SETTINGS.items():
        davae_panel.VARIANTS[name] = params
    plain = davae_panel.run_one

    def run_one(method, prep, seed, threads):
        ctx = SETTINGS[method][1]() if method in SETTINGS else contextlib.nullcontext()
        with ctx:
            return plain(method, prep, seed, threads)

    davae_panel.run_one = run_one
    return davae_panel.main(argv)


def run_spots(names: list[str], seeds: list[int], embedding: str = "latent") -> None:
    """Spot r (the paper's similarity and the MLP) of each setting on the simulated spots, one fit per setting
    and seed. With ``embedding`` other than ``"latent"`` the fit also writes the corrected PCs (and, for
    ``"latent_and_pcs"``, both side by side), and every embedding of that one fit is scored, a line each."""
    import anndata as ad
    from davae_study.groundtruth import evaluate_spots
    from transfer_groundtruth import DEMO, spots_design

    ifnb = ad.read_h5ad(DEMO / "seuratTools_ifnb1k.h5ad")
    for seed in seeds:
        prep, truth = spots_design(ifnb, seed)
        for name in names:
            params, ctx = SETTINGS[name] if name in SETTINGS else ({}, contextlib.nullcontext)
            with ctx():
                out = davae.integrate(prep, batch_key="batch", preprocess=False, seed=seed, progress=False,
                                      threads=1, recover=False, **dict(params, embedding=embedding))
            for key in [k for k in ("X_davae", "X_davae_pca", "X_davae_joint") if k in out.obsm]:
                z = np.asarray(out.obsm[key])
                r = evaluate_spots(z, prep.obs, truth, variant="similarity", normalise="paper")["r"].mean()
                r_mlp = evaluate_spots(z, prep.obs, truth, variant="mlp", seed=seed)["r"].mean()
                label = name if key == "X_davae" else f"{name} {key}"
                print(f"spots\t{label}\tseed {seed}\tspot r {r:.3f}\tMLP {r_mlp:.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--panel"]:
        return run_panel(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spots", required=True, help=f"comma-separated settings ({', '.join(SETTINGS)}, or davae)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--embedding", default="latent", choices=["latent", "corrected_pca", "latent_and_pcs"],
                    help="fit with this embedding and score every embedding of the fit (default: the latent only)")
    args = ap.parse_args(argv)
    run_spots(args.spots.split(","), [int(s) for s in args.seeds.split(",")], args.embedding)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
