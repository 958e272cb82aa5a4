"""Offline runtime-scaling curves (the Fig 6f stand-in): real cells resampled with noise to larger sizes, each
method run in a fresh process, wall time and peak RSS per run, growth exponents per method.

Also measures ``prepare`` on resampled *raw* inputs (all genes) against the size of the sparse input, the
check behind the memory-aware pipeline of docs/scaling.md.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/scaling_offline.py --sizes 10000 20000 50000 \
        --methods davae scvi scanorama desc --prepare-sizes 100000

``--params '{"davae": {"epochs": 1, "min_steps": 0, "corrected": false}}'`` overrides method params (merged
over the defaults below). ``--davae-steps`` also runs the DAVAE model step by step on each size (read, ``fit``,
``transform``, ``recover``; peak RSS after each), with the ``davae`` overrides of ``--params``.

Prints one table per part and the exponents; nothing is written into the repository (inputs go to a
temporary folder unless --workdir is given). Timings on a shared machine are noisy; repeat with --repeats.
"""

from __future__ import annotations

import argparse
import json
import os

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO / "data" / "demo" / "seuratTools_ifnb1k.h5ad"
# Method params for a 2-core machine: DAVAE as configured in the study; DESC with a short pretraining
# (the study's demo value), a cap on clustering rounds, and its Leiden initialisation on a 4,000-cell
# subsample: with scipy 1.17 + scanpy 1.11.5, sc.pp.neighbors fails on ~10k+ cells ('csr_array' object
# has no attribute 'getnnz'), see docs/scaling.md; Scanorama with its defaults.
PARAMS = {
    "pca": {"n_comps": 50},
    "davae": {"preset": "default"},
    "desc": {"pretrain_epochs": 30, "max_rounds": 20, "progress": False, "init_max_cells": 4000},
    "scanorama": {},
    "harmony": {},
    "scvi": {"n_latent": 10},  # scvi-tools' defaults (max_epochs: its heuristic, 400 up to 20k cells)
}


def _x_bytes(X) -> int:
    import scipy.sparse as sp

    return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes if sp.issparse(X) else X.nbytes


def child_method(path: str, method: str, threads: int, params: dict | None = None) -> dict:
    """Run one method on one input in this (fresh) process; return timings and peak RSS."""
    import anndata as ad
    import torch

    torch.set_num_threads(threads)
    from davae_study.methods import import_method, peak_rss_mb, run_method

    # the method's own imports (scanpy: ~150 MB) before the baseline, so that "over X" counts data, not code
    import_method(f"davae_study.methods.{method}")
    if method.startswith("davae"):
        import davae  # noqa: F401 - imported lazily by the wrapper
    elif method == "scvi":
        import scvi  # noqa: F401 - scvi-tools and Lightning (~0.3 GB), imported lazily by the wrapper
    base = peak_rss_mb()
    adata = ad.read_h5ad(path)
    loaded = peak_rss_mb()
    t = time.perf_counter()
    params = {**PARAMS.get(method, {}), **(params or {})}
    res = run_method(method, adata, params=params, seed=0, device="auto", on_error="raise")
    wall = time.perf_counter() - t
    epochs = _epochs_trained(res.uns.get("method_outputs") or {})
    return {"method": method, "n_cells": adata.n_obs, "wall_s": wall, "peak_rss_mb": peak_rss_mb(),
            "epochs": epochs, "cell_epochs_per_s": adata.n_obs * epochs / wall if epochs else None,
            "rss_after_imports_mb": base, "rss_after_read_mb": loaded, "input_X_mb": _x_bytes(adata.X) / 2**20,
            "device": res.uns["method"]["device"], "params": params,
            "corrected_mb": res.layers["corrected"].nbytes / 2**20 if "corrected" in res.layers else 0.0}


def _epochs_trained(outputs: dict) -> int | None:
    """Epochs a deep method trained (scVI: its record; DAVAE: the length of its per-epoch history)."""
    if "scvi" in outputs:
        return int(outputs["scvi"]["epochs_trained"])
    history = (outputs.get("davae") or {}).get("history") or {}
    return len(next(iter(history.values()))) if history else None


def child_davae_steps(path: str, threads: int, overrides: dict | None = None) -> dict:
    """The DAVAE model step by step (read, fit, transform, recover) with the peak RSS (VmHWM) after each."""
    import anndata as ad
    import torch

    torch.set_num_threads(threads)
    import davae
    from davae_study.methods import peak_rss_mb

    overrides = {k: v for k, v in (overrides or {}).items() if k not in ("corrected", "progress", "precision")}
    out = {"step": "davae_steps", "overrides": overrides, "rss_after_imports_mb": peak_rss_mb()}
    adata = ad.read_h5ad(path)
    out.update(n_cells=adata.n_obs, input_X_mb=_x_bytes(adata.X) / 2**20, peak_after_read_mb=peak_rss_mb())
    t = time.perf_counter()
    model = davae.DAVAE(adata, batch_key="batch", preset="default", **overrides).fit(seed=0, device="auto",
                                                                                      progress=False)
    out.update(fit_s=time.perf_counter() - t, peak_after_fit_mb=peak_rss_mb())
    model.transform()
    out["peak_after_transform_mb"] = peak_rss_mb()
    rec = model.recover()
    out.update(peak_after_recover_mb=peak_rss_mb(), recovered_mb=rec.nbytes / 2**20)
    return out


def child_prepare(path: str) -> dict:
    """``prepare`` on a raw (all genes) resampled input; peak RSS against the sparse input's bytes."""
    import anndata as ad

    from davae_study.methods import peak_rss_mb
    from davae_study.prepare import prepare

    base = peak_rss_mb()
    raw = ad.read_h5ad(path)
    X = raw.X
    nbytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    t = time.perf_counter()
    out = prepare(raw, n_top_genes=2000)
    return {"step": "prepare", "n_cells": raw.n_obs, "n_genes": raw.n_vars, "nnz": int(X.nnz),
            "wall_s": time.perf_counter() - t, "input_X_mb": nbytes / 2**20, "rss_after_imports_mb": base,
            "peak_rss_mb": peak_rss_mb(), "out_shape": list(out.shape)}


def time_ratios(table, reference: str = "davae"):
    """Mean wall time of each method over ``reference``'s at the same size (rows: cells, columns: methods),
    and their wall times; None when ``reference`` was not run."""
    import pandas as pd

    ok = table[table["error"].isna()] if "error" in table else table
    if reference not in set(ok["method"]) or "wall_s" not in ok:
        return None
    wall = ok.pivot_table(index="n_cells", columns="method", values="wall_s", aggfunc="mean")
    out = wall.div(wall[reference], axis=0).drop(columns=reference)
    return pd.concat({"time / " + reference: out, "wall_s": wall}, axis=1)


def _spawn(args: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(DEFAULT_SOURCE), help="raw-count .h5ad with obs['batch']")
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 20_000, 50_000])
    ap.add_argument("--methods", nargs="*", default=["davae", "scvi", "scanorama", "desc"])
    ap.add_argument("--prepare-sizes", type=int, nargs="*", default=[], help="raw resampled sizes for prepare")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--params", default="{}", help='JSON {method: {param: value}} merged over the defaults')
    ap.add_argument("--davae-steps", action="store_true", help="also run the DAVAE model step by step per size")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    overrides = json.loads(a.params)
    if a.child:
        kind, *rest = a.child
        if kind == "method":
            out = child_method(rest[0], rest[1], a.threads, overrides.get(rest[1]))
        elif kind == "davae_steps":
            out = child_davae_steps(rest[0], a.threads, overrides.get("davae"))
        else:
            out = child_prepare(rest[0])
        print(json.dumps(out))
        return

    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from davae_study.prepare import prepare
    from davae_study.scaling import growth_table, make_size

    work = Path(a.workdir or tempfile.mkdtemp(prefix="davae_scaling_"))
    work.mkdir(parents=True, exist_ok=True)
    raw = ad.read_h5ad(a.source)
    raw.X = sp.csr_matrix(raw.X)
    prepared = prepare(raw, n_top_genes=2000)
    print(f"source {a.source}: {raw.n_obs} cells x {raw.n_vars} genes, prepared {prepared.shape}; work {work}")
    rows = []
    for n in a.sizes:
        path = work / f"prepared_{n}.h5ad"
        if not path.exists():
            make_size(prepared, n, mode="resample", seed=0).write_h5ad(path)
        if a.davae_steps:
            r = _spawn(["--threads", str(a.threads), "--params", a.params, "--child", "davae_steps", str(path)],
                       a.threads)
            print(json.dumps(r), flush=True)
        for method in a.methods:
            for rep in range(a.repeats):
                r = _spawn(["--threads", str(a.threads), "--params", a.params, "--child", "method", str(path), method],
                           a.threads)
                r.update(method=method, n_cells=n, repeat=rep)
                print(json.dumps(r), flush=True)
                rows.append(r)
    if rows:
        table = pd.DataFrame(rows)
        cols = [c for c in ("method", "n_cells", "repeat", "wall_s", "epochs", "cell_epochs_per_s", "peak_rss_mb",
                            "rss_after_read_mb", "input_X_mb", "device", "error") if c in table]
        print("\nmethods (fresh process per run; peak RSS includes the interpreter and imports):")
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        ratios = time_ratios(table)
        if ratios is not None:
            print("\nwall time relative to DAVAE at the same size (mean over repeats):")
            print(ratios.to_string(float_format=lambda v: f"{v:.2f}"))
        ok = table[table.get("error", pd.Series(index=table.index, dtype=object)).isna()] if "error" in table else table
        g = growth_table(ok.rename(columns={"wall_s": "s", "peak_rss_mb": "max_rss"}))
        print("\ngrowth exponents (quantity ∝ cells^b):")
        print(g.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    prep_rows = []
    for n in a.prepare_sizes:
        path = work / f"raw_{n}.h5ad"
        if not path.exists():
            base = ad.AnnData(obs=raw.obs[["batch"]].copy(), var=raw.var[[]].copy(), layers={"counts": raw.X})
            big = make_size(base, n, mode="resample", seed=0, target_sum=None)
            big = ad.AnnData(X=big.layers["counts"], obs=big.obs, var=big.var)
            big.write_h5ad(path)
            del big
        r = _spawn(["--child", "prepare", str(path)], a.threads)
        print(json.dumps(r), flush=True)
        prep_rows.append(r)
    if prep_rows:
        t = pd.DataFrame(prep_rows)
        if "peak_rss_mb" in t:
            t["peak_over_input"] = (t["peak_rss_mb"] - t["rss_after_imports_mb"]) / t["input_X_mb"]
        print("\nprepare on raw resampled input (peak_over_input = (peak RSS - RSS after imports) / sparse X bytes):")
        print(t.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
