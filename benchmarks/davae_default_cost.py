"""Fit time of DAVAE's default (local batch prior, λ 0.1, affine decoder batch) against the earlier defaults
on the same prepared matrix, alternately in one process, one thread: the ratios the composition-shift issue
bounds (≤ 1.5×). "input decoder" = the default before the affine decoder (the batch one-hot on the decoder's
input); "first default" = the default before the local prior (global adversary, λ 1), the one the issue
measured. Only ``davae.integrate`` is timed (the matrix is prepared once).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/davae_default_cost.py --design ifnb1k --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import davae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from davae_panel import DESIGNS, prepared  # noqa: E402

SETTINGS = {"default": {}, "input decoder": {"decoder_batch_mode": "input"},
            "first default": {"domain_prior": "none", "domain_lambda": 1.0, "decoder_batch_mode": "input"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--design", default="ifnb1k", choices=list(DESIGNS))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    prep, _ = prepared(args.design)
    times: dict[str, list[float]] = {k: [] for k in SETTINGS}
    for r in range(args.repeats):
        for name, ov in SETTINGS.items():
            torch.set_num_threads(1)
            t = time.perf_counter()
            davae.integrate(prep, preprocess=False, seed=r, device="cpu", progress=False, recover=False, **ov)
            times[name].append(time.perf_counter() - t)
            print(f"repeat {r} {name}: {times[name][-1]:.2f} s", flush=True)
    print(f"\n{args.design} ({prep.n_obs} cells x {prep.n_vars} genes), one thread, {args.repeats} rounds")
    for name, ts in times.items():
        print(f"  {name:17s} median {statistics.median(ts):.2f} s  (min {min(ts):.2f}, max {max(ts):.2f})")
    for other in [k for k in SETTINGS if k != "default"]:
        ratios = [a / b for a, b in zip(times["default"], times[other])]
        print(f"  default / {other}: median {statistics.median(ratios):.2f}x "
              f"(rounds {min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
