"""Why Tran's k-means ARI and the Leiden scores read DAVAE's latent and its corrected PCs differently.

One default fit on a panel design (with ``embedding="corrected_pca"``, which changes nothing in the fit); for embeddings of the same cells (the latent mean ``X_davae``, the
principal components of the batch-corrected expression ``X_davae_pca``, 50 PCs of the log-normalised input,
uncorrected, and with ``--screen`` the alternatives screened for ``X_davae_pca``: decoding under the first
batch instead of the average one, the decoder's output before its softplus, its last hidden layer, the
corrected PCs whitened, and two linear maps of the latent read off the decoder, :func:`linear_metric` and
:func:`jacobian_metric`), per cell type: its rms radius over the distance to the nearest other type's centroid;
then k-means (k = number of types, one random start, 30 iterations: Tran's protocol) ARI over five starts,
the Leiden clustering at resolution 0.1 (clusters, ARI) and the panel's scores. Also the time
``DAVAE.corrected_pca`` took. The measurements behind docs/davae.md, "The embedding".

Usage::

    OMP_NUM_THREADS=1 python benchmarks/davae_embedding_geometry.py --design compositions --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import davae
import davae.training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from davae_panel import DESIGNS, prepared, score  # noqa: E402


def spread_ratios(x: np.ndarray, cell_type: np.ndarray) -> dict[str, float]:
    """Per type: rms distance of its cells to their centroid / distance to the nearest other centroid."""
    types = sorted(set(cell_type))
    cen = np.array([x[cell_type == t].mean(0) for t in types])
    rad = np.array([np.sqrt(((x[cell_type == t] - c) ** 2).sum(1).mean()) for t, c in zip(types, cen)])
    d = np.sqrt(((cen[:, None] - cen[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return dict(zip(types, np.round(rad / d.min(1), 2)))


def _decoded(model, z: np.ndarray) -> np.ndarray:
    """Expression decoded from latent ``z`` under the average batch (float64), as ``X_davae_pca`` uses it."""
    return davae.training.decode(model.module, z, None).astype(np.float64)


def linear_metric(model, z: np.ndarray) -> np.ndarray:
    """The latent through the least-squares linear map ``A`` (latent x genes) from the centred latent to the
    centred average-batch decoded expression, in its principal axes: ``z_c U S`` where ``A = U S V^T``. A
    linear map of ``z`` (distances are those between the linear parts of the decoded profiles)."""
    xc = _decoded(model, z)
    xc -= xc.mean(0)
    zc = z.astype(np.float64) - z.mean(0)
    a = np.linalg.lstsq(zc, xc, rcond=None)[0]
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    return (zc @ u * s).astype(np.float32)


def jacobian_metric(model, z: np.ndarray, eps: float = 1e-2) -> np.ndarray:
    """The latent in the decoder's mean Jacobian metric: ``z_c M`` with ``M = (mean_i J_i^T J_i)^(1/2)``,
    ``J_i`` the finite-difference Jacobian (genes x latent) of the average-batch decoder at cell ``i``."""
    base = _decoded(model, z)
    jac = np.stack([(_decoded(model, z + eps * np.eye(z.shape[1], dtype=z.dtype)[d]) - base) / eps
                    for d in range(z.shape[1])], axis=2)  # cells x genes x latent
    w, v = np.linalg.eigh(np.einsum("ngl,ngm->lm", jac, jac) / len(z))
    return ((z - z.mean(0)) @ (v * np.sqrt(np.clip(w, 0, None))) @ v.T).astype(np.float32)


def screened(model, z: np.ndarray, pcs: np.ndarray) -> dict[str, np.ndarray]:
    """The alternatives to the corrected PCs measured on the way (docs/davae.md, "The embedding")."""
    import torch
    from sklearn.decomposition import PCA

    mod = model.module.eval()
    n = pcs.shape[1]

    def pca(a: np.ndarray) -> np.ndarray:
        return PCA(n, random_state=0).fit_transform(a - a.mean(0))

    first = model.recover(target_batch=model.batch_categories[0])
    with torch.no_grad():
        zt = torch.from_numpy(z)
        logits = mod.decode_logits(zt, torch.full((len(z), mod.n_batches), 1.0 / mod.n_batches)).numpy()
        hidden = mod.decoder(zt).numpy() if not mod.batch_input else None
    out = {f"decoded under the first batch ({model.batch_categories[0]}), PCs": pca(first),
           "decoder output before the softplus (average batch), PCs": pca(logits),
           "corrected PCs whitened (each / its sd)": pcs / pcs.std(0)}
    if hidden is not None:
        out["decoder's last hidden layer"] = hidden
    out["latent, linear map to the decoded expression (z_c U S)"] = linear_metric(model, z)
    out["latent, decoder's mean Jacobian metric"] = jacobian_metric(model, z)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--design", default="compositions", choices=list(DESIGNS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--screen", action="store_true", help="also the screened alternatives to X_davae_pca")
    args = ap.parse_args(argv)

    from davae_study.metrics.leiden import leiden_labels, neighbour_graph, _igraph

    prep, _ = prepared(args.design)
    ct = prep.obs["cell_type"].astype(str).to_numpy()
    out, model = davae.integrate_with_model(prep, batch_key="batch", preprocess=False, seed=args.seed,
                                            progress=False, recover=False, threads=1, embedding="corrected_pca")
    t = time.perf_counter()
    model.corrected_pca(latent=out.obsm["X_davae"])
    pca_s = time.perf_counter() - t
    sc.pp.pca(prep, n_comps=50, random_state=0)
    embs = {"latent (X_davae)": out.obsm["X_davae"], "corrected PCs (X_davae_pca)": out.obsm["X_davae_pca"],
            "input PCA (uncorrected)": prep.obsm["X_pca"]}
    if args.screen:
        embs.update(screened(model, np.asarray(out.obsm["X_davae"]), np.asarray(out.obsm["X_davae_pca"])))
    k = len(set(ct))
    for name, x in embs.items():
        x = np.asarray(x)
        km = [adjusted_rand_score(ct, KMeans(k, n_init=1, max_iter=30, init="random", random_state=s).fit_predict(x))
              for s in range(5)]
        lab = leiden_labels(_igraph(neighbour_graph(x, 15)), 0.1, args.seed)
        s = score(x, prep, args.seed)
        print(f"\n{name}\n  radius / nearest other centroid: {spread_ratios(x, ct)}\n"
              f"  k-means ARI over 5 starts: {np.round(km, 2).tolist()}\n"
              f"  Leiden at resolution 0.1: {len(set(lab))} clusters, ARI {adjusted_rand_score(ct, lab):.3f}\n"
              f"  panel scores: " + ", ".join(f"{m} {v:.3f}" for m, v in s.items()))
    print(f"\ncorrected_pca: {pca_s:.2f} s for {prep.n_obs} cells x {prep.n_vars} genes "
          f"(fit and encode not included)")
    print(pd.crosstab(prep.obs["cell_type"], prep.obs["batch"]).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
