"""Offline ground truth for label transfer and spot deconvolution scores, across integration methods.

(a) CellBench cross-technology transfer: prepare the three technologies jointly, integrate with each method,
    train on the 10x cells, predict the CEL-seq2 and Drop-seq cells (true lines known): accuracy, macro-F1.
(a') The same across a biological shift: ifnb1k, train on control PBMCs, predict IFN-β-stimulated PBMCs
    (6 annotated types; harder than three cell lines).
(b) Simulated spots: spots mixed from IFN-β-stimulated PBMCs (ifnb1k STIM), reference of control PBMCs
    (CTRL), integrated jointly; per-type Pearson r between true proportions and predicted scores.

Usage (from the repository root; a few minutes on 2 CPU cores):

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/transfer_groundtruth.py [--methods pca scanorama harmony davae]
        [--seeds 0 1 2] [--out results/benchmarks/transfer_groundtruth.tsv]

Prints one table per ground truth (mean ± sd over seeds) and writes the tidy rows when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from davae_study.groundtruth import evaluate_celltech, evaluate_spots, make_spots_application
from davae_study.io import write_tsv
from davae_study.methods import run_method
from davae_study.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"


def spots_design(ifnb: ad.AnnData, seed: int) -> tuple[ad.AnnData, pd.DataFrame]:
    """Ground truth (b): STIM cells mixed 8 to a spot on a 12 × 12 grid beside the CTRL cells as reference,
    prepared jointly; returns the prepared AnnData and the spots' true proportions."""
    combined, truth = make_spots_application(ifnb, reference_batches="CTRL", spot_batches="STIM",
                                             grid=(12, 12), cells_per_spot=8, seed=seed)
    return prepare(combined, n_top_genes=2000), truth


def integrate_all(prepared: ad.AnnData, methods: list[str], seed: int) -> dict[str, np.ndarray]:
    embs = {}
    for m in methods:
        t = time.time()
        res = run_method(m, prepared, seed=seed, device="auto")
        info = res.uns["method"]
        if info["status"] != "ok":
            print(f"  {m}: FAILED ({info.get('error')})")
            continue
        embs[m] = np.asarray(res.obsm["X_emb"])
        print(f"  {m}: {time.time() - t:.1f} s, {embs[m].shape[1]} dims")
    return embs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["pca", "scanorama", "harmony", "davae"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    except ImportError:  # pragma: no cover
        pass

    rows = []
    cellbench = ad.read_h5ad(DEMO / "cellbench_3cl_10x_celseq2_dropseq_symbols.h5ad")
    ifnb = ad.read_h5ad(DEMO / "seuratTools_ifnb1k.h5ad")
    for seed in args.seeds:
        print(f"seed {seed}: (a) CellBench, reference 10x, query CEL-seq2 + Drop-seq")
        prep = prepare(cellbench, n_top_genes=2000)
        for m, emb in integrate_all(prep, args.methods, seed).items():
            for clf in ("mlp", "knn"):
                res = evaluate_celltech(emb, prep.obs, reference="10x", classifier=clf, seed=seed)
                for r in res.itertuples():
                    rows += [
                        {"truth": "celltech", "seed": seed, "method": m, "scorer": clf, "group": r.group,
                         "metric": "transfer_accuracy", "value": r.accuracy, "n": r.n, "baseline": r.majority_rate},
                        {"truth": "celltech", "seed": seed, "method": m, "scorer": clf, "group": r.group,
                         "metric": "transfer_macro_f1", "value": r.macro_f1, "n": r.n, "baseline": np.nan},
                    ]
        print(f"seed {seed}: (a') ifnb1k, reference CTRL, query STIM (6 PBMC types across IFN-beta stimulation)")
        prep = prepare(ifnb, n_top_genes=2000)
        for m, emb in integrate_all(prep, args.methods, seed).items():
            for clf in ("mlp", "knn"):
                res = evaluate_celltech(emb, prep.obs, reference="CTRL", classifier=clf, seed=seed)
                r = res.set_index("group").loc["all"]
                rows += [
                    {"truth": "ifnb_condition", "seed": seed, "method": m, "scorer": clf, "group": "all",
                     "metric": "transfer_accuracy", "value": r.accuracy, "n": r.n, "baseline": r.majority_rate},
                    {"truth": "ifnb_condition", "seed": seed, "method": m, "scorer": clf, "group": "all",
                     "metric": "transfer_macro_f1", "value": r.macro_f1, "n": r.n, "baseline": np.nan},
                ]
        print(f"seed {seed}: (b) simulated spots (STIM mixtures) vs CTRL reference")
        prep, truth = spots_design(ifnb, seed)
        for m, emb in integrate_all(prep, args.methods, seed).items():
            for scorer, kw in (("similarity_paper", {"variant": "similarity", "normalise": "paper"}),
                               ("similarity_proportion", {"variant": "similarity", "normalise": "proportion"}),
                               ("mlp", {"variant": "mlp", "seed": seed})):
                corr = evaluate_spots(emb, prep.obs, truth, **kw)
                rows.append({"truth": "spots", "seed": seed, "method": m, "scorer": scorer, "group": "all",
                             "metric": "spot_proportion_corr", "value": corr["r"].mean(), "n": int(corr["n"].max()),
                             "baseline": 0.0})
                for r in corr.itertuples():
                    rows.append({"truth": "spots", "seed": seed, "method": m, "scorer": scorer, "group": r.type,
                                 "metric": "spot_proportion_corr", "value": r.r, "n": r.n, "baseline": 0.0})

    table = pd.DataFrame(rows)
    allg = table[table["group"] == "all"]
    summary = (allg.groupby(["truth", "metric", "scorer", "method"], sort=False)["value"]
               .agg(["mean", "std", "count"]).round(3))
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.max_columns", 10):
        print(summary)
        for truth in ("celltech", "ifnb_condition"):
            maj = table.query("truth == @truth and metric == 'transfer_accuracy' and group == 'all'")["baseline"]
            if len(maj):
                print(f"majority-class rate of the {truth} query: {maj.iloc[0]:.3f}")
    if args.out:
        write_tsv(table, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
