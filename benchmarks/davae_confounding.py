"""Where DAVAE's embedding merges cell types, group by group: per batch × cell-type group, the fraction of
the 15 nearest neighbours with the same cell type, in the warm-up latent (the one the local batch prior is
read from) and in the final embedding, plus the share of each group's cells around which the prior counts
each batch as present. The diagnosis behind the affine decoder (docs/davae.md, "The decoder's batch").

Usage::

    OMP_NUM_THREADS=1 python benchmarks/davae_confounding.py --design compositions --seed 0
    OMP_NUM_THREADS=1 python benchmarks/davae_confounding.py --design compositions --set '{"domain_lambda": 0}'
    OMP_NUM_THREADS=1 python benchmarks/davae_confounding.py --design compositions --set '{"decoder_batch_mode": "input"}' --floor 0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import davae
import davae.prior
import davae.training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from davae_panel import DESIGNS, neighbours, prepared  # noqa: E402


def own_type_share(x: np.ndarray, cell_type: np.ndarray, groups: np.ndarray, k: int = 15) -> pd.DataFrame:
    """Per group: cells, fraction of the k nearest neighbours (the cell excluded) of the cell's own type, and
    the groups most of the other-type neighbours come from."""
    idx = neighbours(x, k)
    rows = []
    for g in pd.unique(groups):
        m = groups == g
        nb = groups[idx[m]].ravel()
        other = nb[cell_type[idx[m]].ravel() != cell_type[m][0]]
        top = pd.Series(other).value_counts().head(2)
        rows.append({"group": g, "cells": int(m.sum()), "own_type": round(1 - len(other) / nb.size, 3),
                     "other_type_from": ", ".join(f"{a} ({b})" for a, b in top.items())})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--design", default="compositions", choices=list(DESIGNS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", default="{}", help="DAVAE parameters as JSON, e.g. '{\"domain_lambda\": 0}'")
    ap.add_argument("--floor", type=float, default=None,
                    help="prior probability of an absent batch (default: davae.prior.FLOOR; 0 masks it out)")
    args = ap.parse_args(argv)
    if args.floor is not None:
        davae.prior.FLOOR = args.floor
    prep, _ = prepared(args.design)
    seen: dict[str, np.ndarray] = {}
    compute = davae.training.local_batch_prior

    def spy(z, codes, n_batches, **kw):
        seen["z"], seen["prior"] = z.copy(), compute(z, codes, n_batches, **kw)
        return seen["prior"]

    davae.training.local_batch_prior = spy
    with np.errstate(divide="ignore"):  # log(0) when --floor 0
        out = davae.integrate(prep, batch_key="batch", preprocess=False, seed=args.seed, device="cpu",
                              progress=False, recover=False, **json.loads(args.set))
    ct = prep.obs["cell_type"].astype(str).to_numpy()
    groups = (prep.obs["batch"].astype(str) + ":" + prep.obs["cell_type"].astype(str)).to_numpy()
    print(f"{args.design}, seed {args.seed}, settings {args.set}, floor {davae.prior.FLOOR}")
    if "z" in seen:
        print("\nwarm-up latent\n" + own_type_share(seen["z"], ct, groups).to_string(index=False))
        present = pd.DataFrame(seen["prior"] == 0, columns=list(prep.obs["batch"].cat.categories))
        print("\nshare of each group's cells around which the prior counts a batch as present")
        print(present.groupby(groups).mean().round(2).to_string())
    print("\nfinal embedding\n" + own_type_share(out.obsm["X_davae"], ct, groups).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
