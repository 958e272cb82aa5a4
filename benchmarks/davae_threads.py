"""DAVAE fit time by thread count and OpenMP wait policy, idle and beside a busy core.

torch's CPU build runs its intra-op work (MKL's included) on GNU OpenMP, whose waiting threads spin. When
another process holds a core, a spinning thread can take the core its peer needs. This script fits DAVAE
(default preset, ``--steps`` optimiser steps on the demo CellBench set after ``davae.preprocess``) in a fresh
process per run, for every combination of: threads 1 / 2, ``OMP_WAIT_POLICY`` unset (libgomp's default) /
``PASSIVE`` (exported before torch loads), and the machine as it is / with a busy-loop process
(``python -c 'while True: pass'``) pinned to the last core. With more than one thread, the minibatch loop
runs on ``davae.training.step_threads`` of them (``--loop rule``, the default: one thread for a 128-cell step)
or on all of them (``--loop all``, as before that rule); ``--batch-sizes`` varies the minibatch (the step count
scales so that the same number of cells is seen). It prints the median fit time of ``--repeats`` runs per row
and each row's ratio to the one-thread run of the same condition, policy and batch size.

Usage::

    .venv/bin/python benchmarks/davae_threads.py --steps 300 --repeats 3
    .venv/bin/python benchmarks/davae_threads.py --steps 600 --repeats 3 --policies PASSIVE --batch-sizes 128,512,2048
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "demo" / "cellbench_3cl_10x_celseq2_dropseq_symbols.h5ad"


def child(threads: int, steps: int, policy: str, batch_size: int, loop: str) -> None:
    if policy == "unset":
        os.environ.pop("OMP_WAIT_POLICY", None)
        import torch  # noqa: F401 - loaded before davae, which would otherwise export PASSIVE
    else:
        os.environ["OMP_WAIT_POLICY"] = policy
    import anndata as ad

    import davae
    import davae.training

    if loop == "all":  # every step counts as large: the minibatch loop runs on all the fit's threads
        davae.training.STEP_ENTRIES_PER_THREAD = 1
    prep = davae.preprocess(ad.read_h5ad(DATA), "batch")
    model = davae.DAVAE(prep, batch_key="batch", min_steps=steps, epochs=1, batch_size=batch_size)
    t, c = time.perf_counter(), time.process_time()
    model.fit(seed=0, device="cpu", progress=False, threads=threads)
    print(json.dumps({"fit_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}))


def busy_loop() -> subprocess.Popen:
    last = max(os.sched_getaffinity(0))
    return subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            preexec_fn=lambda: os.sched_setaffinity(0, {last}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--policies", default="unset,PASSIVE", help="OMP_WAIT_POLICY values; unset = libgomp's default")
    ap.add_argument("--conditions", default="idle,busy", help="idle (the machine as it is) and/or busy")
    ap.add_argument("--batch-sizes", default="128", help="minibatch sizes (steps scaled to keep the cells seen)")
    ap.add_argument("--loop", default="rule,all",
                    help="threads of the minibatch loop: 'rule' (davae.training.step_threads, the default) "
                         "and/or 'all' (the fit's threads, as before the rule)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--policy", help=argparse.SUPPRESS)
    ap.add_argument("--child-batch", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--child-loop", default="rule", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.steps, args.policy, args.child_batch, args.child_loop)
        return 0

    import numpy as np
    import pandas as pd

    rows = []
    for busy in (c == "busy" for c in args.conditions.split(",")):
        loop = busy_loop() if busy else None
        try:
            time.sleep(0.5 if busy else 0)
            for policy, bs, threads, loop_mode in ((p, int(b), int(t), m) for p in args.policies.split(",")
                                                   for b in args.batch_sizes.split(",")
                                                   for t in args.threads.split(",")
                                                   for m in (["rule"] if t == "1" else args.loop.split(","))):
                    steps = max(1, args.steps * 128 // bs)
                    runs = []
                    for _ in range(args.repeats):
                        out = subprocess.run([sys.executable, __file__, "--child", str(threads), "--steps",
                                              str(steps), "--policy", policy, "--child-batch", str(bs),
                                              "--child-loop", loop_mode], capture_output=True,
                                             text=True, check=True).stdout
                        runs.append(json.loads(out.strip().splitlines()[-1]))
                    row = {"busy_core": busy, "wait_policy": policy, "batch_size": bs, "steps": steps,
                           "threads": threads, "loop_threads": loop_mode,
                           "fit_s": float(np.median([r["fit_s"] for r in runs])),
                           "fit_s_all": " ".join(f"{r['fit_s']:.2f}" for r in runs),
                           "cpu_s": float(np.median([r["cpu_s"] for r in runs]))}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            if loop is not None:
                loop.kill()
                loop.wait()
    table = pd.DataFrame(rows)
    base = table[table.threads == 1].set_index(["busy_core", "wait_policy", "batch_size"])["fit_s"]
    table["vs_1_thread"] = [f / base.get((b, p, s), np.nan) for f, b, p, s in
                            zip(table.fit_s, table.busy_core, table.wait_policy, table.batch_size)]
    print()
    print(f"{args.steps} steps of 128 cells (the same cells seen at other batch sizes), CellBench demo set, {len(os.sched_getaffinity(0))} cores; load before: "
          f"{os.getloadavg()[0]:.2f}")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
