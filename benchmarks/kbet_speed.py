"""kBET speed: the paper's per-cell-type protocol (5 neighbourhood sizes x 100 repeats) on 100k cells.

Synthetic embedding (Gaussian blobs per cell type, each batch shifted by its own random offset), 10 cell
types of unequal size (largest 25k, so k0 reaches 6,250), 3 batches, 30 dimensions. Prints wall and CPU
time (with the machine's load average: on a shared machine wall time inflates, CPU time much less) and the
acceptance per type and size. Run on 2 cores:

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/kbet_speed.py

Options: --n-cells, --dims, --types, --batches, --repeats, --seed, --pooled (also Tran's pooled variant,
on --pooled-max-cells cells).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def synthetic(n_cells: int, dims: int, n_types: int, n_batches: int, seed: int):
    rng = np.random.default_rng(seed)
    w = np.array([25, 18, 15, 12, 10, 8, 5, 4, 2, 1], dtype=float)[:n_types]
    if n_types > w.size:
        w = np.concatenate([w, np.ones(n_types - w.size)])
    sizes = np.floor(w / w.sum() * n_cells).astype(int)
    sizes[0] += n_cells - sizes.sum()
    cell_type = np.repeat(np.arange(n_types), sizes)
    batch = rng.integers(0, n_batches, size=n_cells)
    centres = rng.normal(scale=6.0, size=(n_types, dims))
    shifts = rng.normal(scale=1.0, size=(n_batches, dims))
    x = centres[cell_type] + rng.normal(size=(n_cells, dims)) + 0.5 * shifts[batch]
    return x, batch.astype(str), np.array([f"type{t}" for t in cell_type])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cells", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=30)
    ap.add_argument("--types", type=int, default=10)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pooled", action="store_true")
    ap.add_argument("--pooled-max-cells", type=int, default=20_000,
                    help="subsample the pooled set to this many cells (its cost is quadratic); 0 = all")
    args = ap.parse_args(argv)

    from davae_study.metrics.kbet import kbet_per_celltype, kbet_pooled

    x, batch, ct = synthetic(args.n_cells, args.dims, args.types, args.batches, args.seed)
    sizes = np.unique(ct, return_counts=True)[1]
    print(f"{args.n_cells} cells, {args.dims} dims, {args.types} types (largest {sizes.max()}, "
          f"max k0 {sizes.max() // 4}), {args.batches} batches, 5 sizes x {args.repeats} repeats")
    kbet_per_celltype(x[:300], batch[:300], ct[:300], n_repeat=2)  # load / compile the numba kernel
    load0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    tidy, reps = kbet_per_celltype(x, batch, ct, n_repeat=args.repeats, seed=args.seed)
    c1, t1 = time.process_time(), time.perf_counter()
    print(f"per-cell-type kBET: {t1 - t0:.1f} s wall, {c1 - c0:.1f} s CPU (all threads); "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          f"({len(reps)} per-repeat rows, {len(tidy)} tidy rows)")
    for r in tidy:
        if r["metric"] == "kbet_acceptance" and "|" not in r["group"]:
            print(f"  {r['group']:>10}: acceptance {r['value']:.3f}")
    if args.pooled:
        c2, t2 = time.process_time(), time.perf_counter()
        ptidy, _ = kbet_pooled(x, batch, ct, n_repeat=args.repeats, seed=args.seed,
                               max_cells=args.pooled_max_cells or None)
        print(f"pooled (Tran) kBET: {time.perf_counter() - t2:.1f} s wall, {time.process_time() - c2:.1f} s CPU, "
              f"n={ptidy[0]['n']}")
        for r in ptidy:
            print(f"  {r['group']:>10}: median acceptance {r['value']:.3f}")


if __name__ == "__main__":
    main()
