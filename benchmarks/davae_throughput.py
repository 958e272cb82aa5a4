"""Training throughput (cells·epochs/s) and peak RSS of DAVAE for 1k–100k cells.

Real cells are resampled (with replacement) from a shared data set to the requested size, so the sparsity
and value distribution stay real; the gene count is what preprocessing selects (``--genes``, ≤ the set's).
Each size runs in a fresh subprocess so that its peak RSS (``ru_maxrss``) is its own.

``--devices`` lists where to train: ``cpu``, ``cuda`` or ``auto`` (default: ``cpu`` and, when torch sees a
GPU, ``cuda`` too, so one command reports both). On CUDA the fit is timed after a synchronise and the peak
GPU memory (``torch.cuda.max_memory_allocated``) is reported; ``--precision`` is passed to ``fit``
(``auto``: bf16 autocast on CUDA, float32 on CPU).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/davae_throughput.py --sizes 1000,10000,100000 --epochs 2 --threads 2
    python benchmarks/davae_throughput.py --sizes 100000,762000 --epochs 20 --devices cuda --threads 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _one(n: int, epochs: int, genes: int, threads: int, preset: str, batch_size: int, source: str,
         device: str = "cpu", precision: str = "auto") -> dict:
    import anndata as ad
    import numpy as np
    import torch

    import davae

    torch.set_num_threads(threads)
    raw = ad.read_h5ad(DATA / source)
    prep = davae.preprocess(raw, "batch", n_top_genes=genes)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, prep.n_obs, n)
    big = prep[idx].copy()
    big.obs_names = [f"c{i}" for i in range(n)]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t, c = time.perf_counter(), time.process_time()
    model = davae.DAVAE(big, "batch", preset=preset, epochs=epochs, min_steps=0, batch_size=batch_size)
    model.fit(seed=0, device=device, progress=False, precision=precision)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    fit_s, cpu_s = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    model.transform()
    enc_s = time.perf_counter() - t
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if model.device.type == "cuda" else float("nan")
    return {"device": str(model.device), "precision": precision, "gpu_peak_mb": round(gpu_mb, 1), "cells": n, "genes": big.n_vars, "epochs": epochs, "batch_size": batch_size, "threads": threads,
            "preset": preset, "fit_s": round(fit_s, 2), "cells_epochs_per_s": round(n * epochs / fit_s, 1),
            "fit_cpu_s": round(cpu_s, 2), "cells_epochs_per_cpu_s": round(n * epochs / cpu_s, 1),
            "encode_s": round(enc_s, 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_before_fit_mb": round(rss0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--source", default="harmony_pbmc_stim.h5ad", help="file in ../shared/data to resample")
    ap.add_argument("--devices", default="", help="comma-separated: cpu, cuda, auto (default: cpu, plus cuda "
                                                   "when available)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args.epochs, args.genes, args.threads, args.preset, args.batch_size,
                              args.source, args.device, args.precision)))
        return 0
    if args.devices:
        devices = args.devices.split(",")
    else:
        import torch

        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| device | precision | cells | genes | epochs | batch | threads | fit wall s | cells·epochs/s (wall) | "
          "fit CPU s | cells·epochs/CPU-s | peak RSS MB | peak GPU MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        for n in (int(s) for s in args.sizes.split(",")):
            cmd = [sys.executable, __file__, "--one", str(n), "--epochs", str(args.epochs), "--genes",
                   str(args.genes), "--threads", str(args.threads), "--preset", args.preset, "--batch-size",
                   str(args.batch_size), "--source", args.source, "--device", device, "--precision", args.precision]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            print(f"| {r['device']} | {r['precision']} | {r['cells']} | {r['genes']} | {r['epochs']} | "
                  f"{r['batch_size']} | {r['threads']} | {r['fit_s']} | {r['cells_epochs_per_s']} | {r['fit_cpu_s']} | "
                  f"{r['cells_epochs_per_cpu_s']} | {r['peak_rss_mb']} | {r['gpu_peak_mb']} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
