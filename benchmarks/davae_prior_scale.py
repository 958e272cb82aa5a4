"""Cost of DAVAE's local batch prior (``davae.prior.local_batch_prior``) as the cells grow to atlas size.

The prior is computed once per fit from the latent means of every cell: an exact 30-nearest-neighbour search
(scikit-learn's k-d tree on the CPU; brute force in torch when the fit runs on a GPU) and two sparse products.
In a 10-d latent the k-d tree's queries get slower as the tree grows, so the search grows faster than linearly
with the cells. This times it on a synthetic latent shaped like a VAE's (10-d, 30 Gaussian groups of sd 0.5
around centres of sd 2, float32) with batches drawn at random, for each size and search, each in this process.
With ``--device`` it also times the brute-force search on that device and prints the share of cells whose prior
equals the k-d tree's.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/davae_prior_scale.py --sizes 100000,300000,762000 --batches 16 --jobs 1,2
    # on a GPU machine: the brute-force search there beside the CPU's k-d tree, and whether they agree
    python benchmarks/davae_prior_scale.py --sizes 100000,762000 --jobs 16 --device cuda
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from davae.prior import batch_groups, batch_overlap, local_batch_prior


def latent(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (30, 10))
    return (centres[rng.integers(0, 30, n)] + rng.normal(0, 0.5, (n, 10))).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,300000")
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument("--jobs", default="1,2", help="thread counts for the CPU's neighbour search")
    ap.add_argument("--device", default="cpu", help="cuda: also time the brute-force search there")
    args = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| cells | batches | search | prior s | groups | prior equal to the k-d tree's |")
    print("|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        z = latent(n)
        codes = np.random.default_rng(1).integers(0, args.batches, n)
        ref = None
        runs = [(f"k-d tree, {j} threads", dict(n_jobs=int(j))) for j in args.jobs.split(",")]
        if torch.device(args.device).type == "cuda":
            runs.append((f"brute force on {args.device}", dict(device=args.device)))
        for label, kw in runs:
            t = time.perf_counter()
            lp = local_batch_prior(z, codes, args.batches, **kw)
            wall = time.perf_counter() - t
            ref = lp if ref is None else ref
            groups = len(batch_groups(batch_overlap(lp, codes, args.batches)))
            same = f"{(lp == ref).all(1).mean():.5f} of cells"
            print(f"| {n} | {args.batches} | {label} | {wall:.1f} | {groups} | {same} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
