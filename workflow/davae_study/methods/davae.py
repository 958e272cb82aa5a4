"""DAVAE through the ``davae`` package: embedding and batch-corrected expression.

``X_emb`` is the embedding the preset recommends (``uns['davae']['embedding']``): the latent mean ``z``
(``obsm['X_davae']``) in both presets; ``embedding: corrected_pca`` makes it the principal components of the
batch-corrected decoded expression (``obsm['X_davae_pca']``), ``embedding: latent_and_pcs`` the latent and
those PCs side by side (``obsm['X_davae_joint']``; docs/davae.md, "The embedding").

Params are the ``davae.integrate`` overrides (see docs/davae.md), e.g. ``preset`` (``default`` — the study's
corrected model — or ``scbean``, the released behaviour), ``epochs``, ``domain_lambda``, ``batch_size``,
``hidden_layers``, ``early_stopping``; ``precision`` (default ``auto``: bf16 autocast on a CUDA device that
supports it, float32 on CPU); ``progress`` (default True: in a rule's log, not a terminal, this is one line of
loss parts every few epochs, at most ~20 per fit); ``corrected`` (default True: return the batch-corrected
expression as ``layers['corrected']``: every cell decoded from its latent mean under the average batch,
``layers['davae_corrected']`` of :func:`davae.integrate`, so no batch is the reference; set False at atlas
size, where it is a dense cells × genes matrix). ``threads``: the job's threads (the registry passes the
rule's ``threads:``), for torch and the BLAS / OpenMP pools. The prepared data are already log-normalised, so
DAVAE's own preprocessing is skipped.

When the local prior finds groups of batches that share no neighbourhood (``uns['davae']['prior_groups']``),
the fit's warning goes to the rule's log and a note naming the groups to ``uns['method_notes']``, which the
metric tables carry (docs/CONTRACTS.md): a user reading ``results/summary.tsv`` sees that those batches were
left apart, or aligned by ``prior_fallback``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np


def run(adata: ad.AnnData, *, seed: int = 0, device: str = "auto", preset: str = "default", progress: bool = True,
        corrected: bool = True, precision: str = "auto", threads: int | None = None, **overrides) -> ad.AnnData:
    import davae

    # the registry hands over its own copy: no second copy of X (copy=False)
    res = davae.integrate(adata, batch_key="batch", preset=preset, preprocess=False, seed=seed, device=device,
                          precision=precision, progress=progress, copy=False, recover=False, corrected=corrected,
                          threads=threads, **overrides)
    out = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy())
    out.obsm["X_emb"] = res.obsm[res.uns["davae"]["embedding"]]  # the preset's: z, or the corrected PCs
    if corrected:
        out.layers["corrected"] = res.layers["davae_corrected"]
    if "davae" in res.uns:
        out.uns["davae"] = res.uns["davae"]
        notes = prior_notes(res.uns["davae"])
        if notes:
            out.uns["method_notes"] = notes
    return out


def prior_notes(info: dict) -> list[str]:
    """A note for the tables when the local prior split the batches into groups that share no neighbourhood
    (``uns['davae']`` of :func:`davae.integrate`); none when every batch is linked or the prior is off."""
    from davae.prior import listed_groups

    groups = np.asarray(info.get("prior_groups", []))
    if len(np.unique(groups)) < 2:
        return []
    listed = listed_groups(groups, [str(b) for b in info["batch_categories"]])
    if info.get("prior_fallback_applied"):
        return [f"DAVAE: batch groups sharing no neighbourhood in the warm-up latent ({listed}) aligned by "
                f"prior_fallback"]
    return [f"DAVAE: batch groups sharing no neighbourhood in the warm-up latent ({listed}) left unaligned; "
            f"prior_fallback: true aligns them where they hold the same cell types"]
