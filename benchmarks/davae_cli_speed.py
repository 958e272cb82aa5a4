"""Wall time of a default ``davae integrate`` (the whole process) at 350 to 20k cells, idle and beside a busy
core, next to Scanorama's on the same matrix.

Cells of a demo set (default: ``data/demo/seuratTools_ifnb1k.h5ad``, 832 cells, 2 batches, raw counts) are
drawn with replacement to each size and their counts binomially thinned (``methods_scaling.resample``), so no
two cells are identical. Each size is written to an .h5ad and then, in a fresh process each, timed from start
to exit:

- DAVAE: ``davae integrate in.h5ad out.h5ad`` with default flags (read, count check, preprocessing, training
  with the default preset, encoding, recovered expression, gzip-compressed atomic write). Its stderr is a pipe,
  so progress is the short loss table;
- Scanorama: this script's ``--scanorama`` child: read, the same preprocessing (``davae.preprocess``), the
  study's Scanorama module with its defaults, the same gzip-compressed write.

Both run with their default thread counts (all the cores the process may use). "busy" rows run beside a
busy-loop process (``python -c 'while True: pass'``) pinned to the last core.

Usage::

    .venv/bin/python benchmarks/davae_cli_speed.py                        # 350, 1000, 5000, 20000 cells
    .venv/bin/python benchmarks/davae_cli_speed.py --sizes 350 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "data" / "demo" / "seuratTools_ifnb1k.h5ad"


def scanorama_child(src: str, dst: str) -> None:
    """Read, preprocess as ``davae integrate`` does, run the study's Scanorama module, write."""
    import anndata as ad

    from davae.preprocess import preprocess
    from davae_study.methods import scanorama

    adata = ad.read_h5ad(src)
    prep = preprocess(adata, "batch")
    res = scanorama.run(prep, seed=0)
    out = ad.AnnData(obs=prep.obs, var=prep.var)
    out.obsm["X_emb"] = res.obsm["X_emb"]
    out.layers["corrected"] = res.layers["corrected"]
    out.write_h5ad(dst, compression="gzip")


def davae_command() -> list[str]:
    exe = Path(sys.executable).parent / "davae"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "davae"]


def timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return float("nan"), (proc.stderr.strip().splitlines() or ["?"])[-1]
    return wall, ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="raw-count .h5ad with obs['batch']")
    ap.add_argument("--sizes", type=int, nargs="+", default=[350, 1000, 5000, 20000])
    ap.add_argument("--repeats", type=int, default=1, help="runs per cell of the table (median)")
    ap.add_argument("--thin", type=float, default=0.9)
    ap.add_argument("--scanorama", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.scanorama:
        scanorama_child(*args.scanorama)
        return 0

    import anndata as ad
    import numpy as np
    import pandas as pd

    from davae_threads import busy_loop
    from methods_scaling import resample

    raw = ad.read_h5ad(args.data)
    work = Path(tempfile.mkdtemp(prefix="davae_cli_speed."))
    rows = []
    try:
        for n in args.sizes:
            data = resample(raw, n, args.thin, seed=n)
            src = work / f"n{n}.h5ad"
            data.write_h5ad(src)
            for busy in (False, True):
                loop = busy_loop() if busy else None
                try:
                    time.sleep(0.5 if busy else 0.0)
                    times = {"davae": [], "scanorama": []}
                    notes = []
                    for _ in range(args.repeats):
                        for method, cmd in (
                            ("davae", davae_command() + ["integrate", str(src), str(work / "davae.h5ad")]),
                            ("scanorama", [sys.executable, __file__, "--scanorama", str(src),
                                           str(work / "scanorama.h5ad")]),
                        ):
                            wall, note = timed(cmd)
                            times[method].append(wall)
                            if note:
                                notes.append(f"{method}: {note}")
                finally:
                    if loop is not None:
                        loop.kill()
                        loop.wait()
                row = {"cells": data.n_obs, "condition": "busy core" if busy else "idle",
                       "davae_s": float(np.median(times["davae"])),
                       "scanorama_s": float(np.median(times["scanorama"])),
                       "load_1min": os.getloadavg()[0], "note": "; ".join(notes)}
                row["davae_vs_scanorama"] = row["davae_s"] / row["scanorama_s"]
                rows.append(row)
                print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1, float_format="%.2f"),
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = pd.DataFrame(rows)
    idle = table[table.condition == "idle"].set_index("cells")["davae_s"]
    table["davae_busy_vs_idle"] = table["davae_s"] / table["cells"].map(idle)
    cols = ["cells", "condition", "davae_s", "scanorama_s", "davae_vs_scanorama", "davae_busy_vs_idle",
            "load_1min", "note"]
    print()
    print(f"{len(os.sched_getaffinity(0))} cores; data {args.data.name}; {args.repeats} run(s) per cell (median)")
    print(table[cols].to_markdown(index=False, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
