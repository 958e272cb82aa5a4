"""Runtime and peak memory of the integration methods from 1k to 50k real cells.

Checks the paper's claim that the deep models (DAVAE, DESC) scale better with the number of cells than
Scanorama, and times scVI (scvi-tools, its default epochs) beside DAVAE at the same sizes. Cells of a real data set are resampled with replacement to each size, and every resampled cell's
counts are binomially thinned (keep probability ``--thin``) so that no two cells are identical; then the
usual preparation (normalize_total 1e4, log1p, batch-aware top-2000 HVGs, CSR) and each method in a fresh
child process (so that peak RSS and one-off JIT/import costs are per run, as in the Snakemake jobs).

A method that takes longer than ``--timeout`` seconds at one size is not run at larger sizes.

Usage (from the repository root)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/methods_scaling.py \\
        --sizes 1000 2000 5000 10000 20000 50000 --methods scanorama harmony desc davae scvi pca

Writes ``benchmarks/results/methods_scaling.tsv`` (columns ``method, n_cells, n_genes, wall_s, peak_rss_mb,
status, note``) and prints it with the time ratio of each method to Scanorama and to DAVAE at the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "data" / "demo" / "cellbench_3cl_10x_celseq2_dropseq_symbols.h5ad"


def resample(adata, n_cells: int, thin: float, seed: int):
    """``n_cells`` cells drawn with replacement, stratified by batch proportions, counts thinned."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    idx = rng.choice(adata.n_obs, n_cells, replace=True)
    X = sp.csr_matrix(adata.X[idx], dtype=np.float32)
    X.data = rng.binomial(X.data.astype(np.int64), thin).astype(np.float32)
    X.eliminate_zeros()
    obs = adata.obs.iloc[idx].copy()
    obs.index = [f"c{i}" for i in range(n_cells)]
    out = ad.AnnData(X=X, obs=obs, var=adata.var.copy())
    keep = np.asarray(X.sum(1)).ravel() > 0
    return out[keep].copy()


def prepare(adata, n_top_genes: int = 2000):
    import scanpy as sc
    import scipy.sparse as sp

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=min(n_top_genes, adata.n_vars), batch_key="batch")
    adata = adata[:, adata.var["highly_variable"]].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obs["batch"] = adata.obs["batch"].astype("category")
    return adata


def child(args) -> None:
    """Run one method on one prepared file; print a JSON line with wall time and peak RSS."""
    import importlib
    import resource

    import anndata as ad

    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    adata = ad.read_h5ad(args.child_input)
    params = json.loads(args.params)
    module = importlib.import_module(f"davae_study.methods.{args.child_method}")
    t0 = time.perf_counter()
    res = module.run(adata, seed=0, device=args.device, **params)
    wall = time.perf_counter() - t0
    assert res.obsm["X_emb"].shape[0] == adata.n_obs
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "peak_rss_mb": peak}))


DEFAULT_PARAMS = {
    "desc": {"progress": False},
    "harmony": {"ncores": 0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="raw-count .h5ad with obs['batch']")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000, 50000])
    ap.add_argument("--methods", nargs="+", default=["scanorama", "harmony", "desc", "davae", "scvi"])
    ap.add_argument("--params", type=str, default="{}",
                    help="JSON {method: {param: value}} overriding defaults, "
                         'e.g. \'{"desc": {"pretrain_epochs": 100}}\'')
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run; larger sizes skipped after")
    ap.add_argument("--thin", type=float, default=0.9)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "methods_scaling.tsv")
    ap.add_argument("--child-method", help=argparse.SUPPRESS)
    ap.add_argument("--child-input", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_method:
        return child(args)

    import anndata as ad

    from davae_study.io import write_h5ad, write_tsv

    overrides = json.loads(args.params)
    raw = ad.read_h5ad(args.data)
    work = args.out.parent / "methods_scaling_inputs"
    rows, given_up = [], set()
    for n in sorted(args.sizes):
        prepared = prepare(resample(raw, n, args.thin, seed=n))
        path = work / f"n{n}.h5ad"
        write_h5ad(prepared, path, compression=None)
        for method in args.methods:
            row = {"method": method, "n_cells": prepared.n_obs, "n_genes": prepared.n_vars}
            if method in given_up:
                rows.append({**row, "wall_s": np.nan, "peak_rss_mb": np.nan, "status": "skipped",
                             "note": f"exceeded {args.timeout:.0f} s at a smaller size"})
                continue
            params = {**DEFAULT_PARAMS.get(method, {}), **overrides.get(method, {})}
            cmd = [sys.executable, __file__, "--child-method", method, "--child-input", str(path),
                   "--params", json.dumps(params), "--device", args.device]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                given_up.add(method)
                rows.append({**row, "wall_s": np.nan, "peak_rss_mb": np.nan, "status": "timeout",
                             "note": f"> {args.timeout:.0f} s"})
            else:
                if proc.returncode == 0:
                    rows.append({**row, **json.loads(proc.stdout.strip().splitlines()[-1]), "status": "ok", "note": ""})
                else:
                    err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    rows.append({**row, "wall_s": np.nan, "peak_rss_mb": np.nan, "status": "failed", "note": err})
            print(pd.DataFrame([rows[-1]]).to_string(index=False, header=len(rows) == 1), flush=True)
        path.unlink()

    table = pd.DataFrame(rows)
    for reference in ("scanorama", "davae"):
        ref = table[table["method"] == reference].set_index("n_cells")["wall_s"]
        table[f"time_vs_{reference}"] = table["wall_s"] / table["n_cells"].map(ref)
    write_tsv(table, args.out)
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
