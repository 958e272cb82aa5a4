"""Cost of the conservation scores beside Tran's ARI: kNN purity and scIB's Leiden NMI/ARI (20 resolutions).

Same synthetic embedding as benchmarks/kbet_speed.py (Gaussian blobs per cell type, 10 types of unequal
size, 3 batches, 30 dimensions). Times, in CPU and wall seconds (with the load average: on a shared
machine wall time inflates, CPU time much less): Tran's ARI (20 k-means draws, the headline), kNN purity,
and Leiden NMI/ARI split into the neighbour graph and the Leiden runs; prints each as a ratio of the ARI's
CPU time. Run on 1 thread:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/conservation_speed.py --n-cells 20000

Options: --n-cells, --dims, --types, --batches, --seed, --spread (blob centre scale: lower = types overlap
more, Leiden works harder).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def synthetic(n_cells: int, dims: int, n_types: int, n_batches: int, seed: int, spread: float):
    rng = np.random.default_rng(seed)
    w = np.array([25, 18, 15, 12, 10, 8, 5, 4, 2, 1], dtype=float)[:n_types]
    if n_types > w.size:
        w = np.concatenate([w, np.ones(n_types - w.size)])
    sizes = np.floor(w / w.sum() * n_cells).astype(int)
    sizes[0] += n_cells - sizes.sum()
    cell_type = np.repeat(np.arange(n_types), sizes)
    batch = rng.integers(0, n_batches, size=n_cells)
    centres = rng.normal(scale=spread, size=(n_types, dims))
    shifts = rng.normal(scale=1.0, size=(n_batches, dims))
    x = centres[cell_type] + rng.normal(size=(n_cells, dims)) + 0.5 * shifts[batch]
    return x, batch.astype(str), np.array([f"type{t}" for t in cell_type])


def timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cells", type=int, default=20_000)
    ap.add_argument("--dims", type=int, default=30)
    ap.add_argument("--types", type=int, default=10)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spread", type=float, default=2.0)
    args = ap.parse_args(argv)

    from davae_study.metrics import ari_tran, knn_purity, leiden_nmi_ari
    from davae_study.metrics.leiden import RESOLUTIONS, _igraph, leiden_labels, neighbour_graph

    x, batch, ct = synthetic(args.n_cells, args.dims, args.types, args.batches, args.seed, args.spread)
    print(f"{args.n_cells} cells, {args.dims} dims, {args.types} types, {args.batches} batches, "
          f"spread {args.spread}; load average {os.getloadavg()[0]:.1f}")
    warm = np.random.default_rng(0).permutation(args.n_cells)[:300]
    leiden_nmi_ari(x[warm], ct[warm], resolutions=[1.0])  # imports, numba compilation of the connectivities

    rows, c_ari, w_ari = timed(lambda: ari_tran(x, batch, ct, seed=args.seed)[0])
    ari = {r["metric"]: r["value"] for r in rows if r["group"] == "all"}
    rows, c_pur, w_pur = timed(lambda: knn_purity(x, ct))
    pur = rows[-1]["value"]
    conn, c_graph, w_graph = timed(lambda: neighbour_graph(x))
    g, c_ig, w_ig = timed(lambda: _igraph(conn))
    runs = [timed(lambda r=r: leiden_labels(g, r, args.seed)) for r in RESOLUTIONS]
    c_leiden, w_leiden = sum(r[1] for r in runs), sum(r[2] for r in runs)
    out, c_all, w_all = timed(lambda: leiden_nmi_ari(x, ct, seed=args.seed))

    print(f"{'step':<38}{'CPU s':>9}{'wall s':>9}{'x ARI CPU':>11}")
    for name, c, w in [("Tran ARI (20 k-means draws)", c_ari, w_ari), ("kNN purity (k=15)", c_pur, w_pur),
                       ("  Leiden: neighbour graph", c_graph, w_graph), ("  Leiden: igraph", c_ig, w_ig),
                       (f"  Leiden: {len(RESOLUTIONS)} runs", c_leiden, w_leiden),
                       ("leiden_nmi_ari (all of it)", c_all, w_all)]:
        print(f"{name:<38}{c:>9.2f}{w:>9.2f}{c / c_ari:>11.2f}")
    slow = max(range(len(runs)), key=lambda i: runs[i][1])
    print(f"slowest Leiden run: resolution {RESOLUTIONS[slow]:g}, {runs[slow][1]:.2f} CPU s")
    print(f"values: ari_celltype {ari['ari_celltype']:.3f}, knn_purity {pur:.3f}, nmi_leiden {out['nmi']:.3f}, "
          f"ari_leiden {out['ari']:.3f} at resolution {out['resolution']:g} ({out['n_clusters']} clusters)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
