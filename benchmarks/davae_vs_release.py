"""CPU training time of our DAVAE (preset "scbean") against the released TensorFlow scbean 0.5.6, interleaved.

Both train the same network (scbean's DACVAE: 128-64-32, latent 5, batch one-hot on encoder and decoder)
on the same matrix: real cells of ``seuratTools_ifnb1k.h5ad`` (two batches in ``obs['batch']``),
preprocessed with ``davae.preprocess`` (per-batch CPM + log1p, 2,000 HVGs) and resampled with replacement
to ``--cells`` (seeded), 25 epochs of 128 cells, the same ``domain_lambda``, on the same number of threads.

Timed:

* release: only the released training call ``DACVAE.train(...)`` (Keras ``Model.fit``) of
  ``scbean.model.davae``, set up exactly as ``fit_integration(mode='DACVAE')`` does it (one-hot batch,
  ``loss_weight`` 1 for the first batch and 0 for the other, ``sklearn.utils.shuffle(random_state=0)``,
  ``build()``, ``compile()``), in a persistent subprocess of the release's Python (``--release-python``).
  Imports, data loading, ``build``/``compile`` and the final ``get_output`` are not timed. Keras' progress
  bar goes to /dev/null.
* ours: ``davae.DAVAE(adata, 'batch', preset='scbean', epochs=25, min_steps=0, batch_size=128,
  domain_lambda=...).fit(seed=..., device='cpu', progress=False)`` in this interpreter (model construction
  not timed; ``X`` is the CSR matrix, densified per minibatch as in the pipeline).

Threads: ``OMP_NUM_THREADS=T`` (and MKL_NUM_THREADS) for both, ``torch.set_num_threads(T)`` here, and
``tf.config.threading.set_intra_op_parallelism_threads(T)`` / ``set_inter_op_parallelism_threads(1)`` in
the worker. Runs alternate release, ours, release, ours, ... after one uncounted warm-up of each; every run
builds a fresh model with seed ``--seed + i``. Wall and process-CPU seconds are reported; on a shared
machine the CPU-second ratio is the steadier figure.

Creating the release environment (outside the repository; scbean 0.5.6 pins ``tensorflow==2.4.0`` and
``keras==2.3.1``, which need Python <= 3.8; ``scbean.model`` also imports ``tensorflow_probability``, which
scbean does not declare — 0.12.1 is the release matching TensorFlow 2.4)::

    python3.8 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install --upgrade pip
    /tmp/tfvenv/bin/pip install scbean==0.5.6
    /tmp/tfvenv/bin/pip install tensorflow-probability==0.12.1

Usage::

    python benchmarks/davae_vs_release.py --threads 1 --repeats 5
    python benchmarks/davae_vs_release.py --threads 2 --repeats 3 --release-python /tmp/tfvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HIDDEN = [128, 64, 32, 5]  # scbean's hidden_layers default (last = latent size)


# --------------------------------------------------------------------------------------------------------
# release worker: runs under the TF venv's Python (3.8); imports nothing from this repository
def _worker(npz: str, threads: int, domain_lambda: float, epochs: int, batch_size: int) -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)  # protocol channel; Keras' prints go to /dev/null
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        import numpy as np
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        import scbean
        from scbean.model import davae as sb
        from sklearn.utils import shuffle
        from tensorflow.keras import backend as K
        from tensorflow.keras.utils import to_categorical
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        proto.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        return 3
    try:
        from importlib.metadata import version as _v
        sb_version = _v("scbean")
    except Exception:  # noqa: BLE001
        sb_version = getattr(scbean, "__version__", "?")
    d = np.load(npz)
    X, codes = d["X"], d["codes"]
    loss_weight = (codes == 0).astype(np.float64)  # davae_preprocessing: 1.0 for datasets[0], 0.0 for the rest
    n_batches = int(codes.max()) + 1
    proto.write(json.dumps({"ready": True, "tensorflow": tf.__version__, "scbean": sb_version,
                            "numpy": np.__version__, "python": sys.version.split()[0]}) + "\n")
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] != "fit":
            break
        seed = int(cmd[1])
        tf.random.set_seed(seed)
        np.random.seed(seed)
        # as in scbean.model.davae.fit_integration(mode='DACVAE')
        orig_batch = to_categorical(codes)
        data, batch, lw = shuffle(X, orig_batch, loss_weight, random_state=0)
        net = sb.DACVAE(input_size=data.shape[1], batches=n_batches, domain_scale_factor=domain_lambda,
                        hidden_layers=list(HIDDEN))
        net.build()
        net.compile()
        t, c = time.perf_counter(), time.process_time()
        hist = net.train(data, batch, lw, batch_size=batch_size, epochs=epochs)  # the timed call
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        loss = float(hist.history["loss"][-1])
        del net, hist
        K.clear_session()
        proto.write(json.dumps({"wall": wall, "cpu": cpu, "loss": loss}) + "\n")
    return 0


class Release:
    """A persistent worker process of the release's Python."""

    def __init__(self, python: str, npz: str, args: argparse.Namespace, env: dict):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="davae_vs_release_tf_", suffix=".log", delete=False)
        cmd = [python, os.path.abspath(__file__), "--worker", npz, "--threads", str(args.threads),
               "--domain-lambda", str(args.domain_lambda), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size)]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                  text=True, env=env, cwd=tempfile.gettempdir(), bufsize=1)
        self.info = self._read()
        if "error" in self.info:
            self.p.wait(timeout=60)
            self.log.close()
            os.unlink(self.log.name)
            raise SystemExit(f"error: the release could not be imported with {python}: {self.info['error']} "
                             "(create its venv as described at the top of benchmarks/davae_vs_release.py)")

    def _read(self) -> dict:
        line = self.p.stdout.readline()
        if not line:
            self.log.seek(0)
            tail = self.log.read().strip().splitlines()[-3:]
            raise SystemExit(f"error: the release worker died (log {self.log.name}): {' | '.join(tail)}")
        return json.loads(line)

    def fit(self, seed: int) -> dict:
        self.p.stdin.write(f"fit {seed}\n")
        self.p.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
        except OSError:
            pass
        self.p.wait(timeout=60)
        self.log.close()
        os.unlink(self.log.name)  # kept only when the worker dies


# --------------------------------------------------------------------------------------------------------
def _data(args: argparse.Namespace):
    import anndata as ad
    import numpy as np

    import davae
    from davae._validate import batch_codes

    raw = ad.read_h5ad(DATA / args.source)
    prep = davae.preprocess(raw, "batch", n_top_genes=args.genes)
    rng = np.random.default_rng(args.data_seed)
    idx = np.sort(rng.integers(0, prep.n_obs, args.cells))
    with warnings.catch_warnings():  # duplicated obs names until renamed below
        warnings.simplefilter("ignore", UserWarning)
        big = prep[idx].copy()
    big.obs_names = [f"c{i}" for i in range(args.cells)]
    codes, cats = batch_codes(big, "batch")
    return big, np.asarray(codes), cats


def _fmt(xs: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in xs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--release-python", default="/tmp/tfvenv/bin/python",
                    help="Python of the venv with scbean 0.5.6 (see the top of this file)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cells", type=int, default=1400)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--domain-lambda", type=float, default=1.0, help="scbean's domain_lambda (same for both)")
    ap.add_argument("--seed", type=int, default=0, help="training seed of the first run (run i: seed + i)")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the resampling of cells")
    ap.add_argument("--source", default="seuratTools_ifnb1k.h5ad", help="file in ../shared/data")
    ap.add_argument("--worker", metavar="NPZ", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.threads, args.domain_lambda, args.epochs, args.batch_size)

    if not os.path.isfile(args.release_python):
        print(f"error: release python {args.release_python} not found; create the scbean 0.5.6 venv as "
              "described at the top of benchmarks/davae_vs_release.py, or pass --release-python", file=sys.stderr)
        return 2
    T = str(args.threads)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = T  # before torch / numpy's BLAS start their pools
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH="", CUDA_VISIBLE_DEVICES="")

    import numpy as np
    import torch

    import davae

    torch.set_num_threads(args.threads)
    adata, codes, cats = _data(args)
    with tempfile.TemporaryDirectory(prefix="davae_vs_release_") as tmp:
        npz = os.path.join(tmp, "data.npz")
        X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
        np.savez(npz, X=X.astype(np.float32), codes=codes.astype(np.int64))
        release = Release(args.release_python, npz, args, env)

        def ours(seed: int) -> dict:
            model = davae.DAVAE(adata, "batch", preset="scbean", epochs=args.epochs, min_steps=0,
                                batch_size=args.batch_size, domain_lambda=args.domain_lambda)
            t, c = time.perf_counter(), time.process_time()
            model.fit(seed=seed, device="cpu", progress=False)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            return {"wall": wall, "cpu": cpu, "loss": float(model.history["loss"][-1]) if "loss" in model.history
                    else float("nan")}

        print(f"release: scbean {release.info['scbean']}, tensorflow {release.info['tensorflow']}, numpy "
              f"{release.info['numpy']}, Python {release.info['python']} ({args.release_python})")
        print(f"ours:    davae (preset 'scbean'), torch {torch.__version__}, numpy {np.__version__}, Python "
              f"{sys.version.split()[0]}")
        print(f"data: {args.source} resampled to {adata.n_obs} cells (seed {args.data_seed}) x {adata.n_vars} genes, "
              f"batches {dict(zip(cats, np.bincount(codes).tolist()))} (first = reference); {args.epochs} epochs, "
              f"batch {args.batch_size}, domain_lambda {args.domain_lambda:g}, {args.threads} thread(s)")
        la0 = os.getloadavg()
        print(f"load average before: {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f} on {os.cpu_count()} CPUs", flush=True)
        release.fit(args.seed + 10_000)  # warm-ups, not counted
        ours(args.seed + 10_000)
        rel, our = [], []
        print("| run | release wall s | ours wall s | ratio wall | release CPU s | ours CPU s | ratio CPU |")
        print("|---|---|---|---|---|---|---|")
        for i in range(args.repeats):
            a = release.fit(args.seed + i)
            b = ours(args.seed + i)
            rel.append(a)
            our.append(b)
            print(f"| {i + 1} | {a['wall']:.2f} | {b['wall']:.2f} | {a['wall'] / b['wall']:.1f}x | {a['cpu']:.2f} | "
                  f"{b['cpu']:.2f} | {a['cpu'] / b['cpu']:.1f}x |", flush=True)
        release.close()
        la1 = os.getloadavg()

    rw, ow = [r["wall"] for r in rel], [r["wall"] for r in our]
    rc, oc = [r["cpu"] for r in rel], [r["cpu"] for r in our]
    mrw, mow, mrc, moc = map(statistics.median, (rw, ow, rc, oc))
    ce = adata.n_obs * args.epochs
    print(f"| median | {mrw:.2f} | {mow:.2f} | {mrw / mow:.1f}x | {mrc:.2f} | {moc:.2f} | {mrc / moc:.1f}x |")
    print(f"pairwise ratio release/ours (wall): {_fmt([a / b for a, b in zip(rw, ow)])}; median "
          f"{statistics.median([a / b for a, b in zip(rw, ow)]):.1f}x")
    print(f"cells·epochs/s (wall, median run): release {ce / mrw:.0f}, ours {ce / mow:.0f}; per CPU-s: release "
          f"{ce / mrc:.0f}, ours {ce / moc:.0f}")
    print(f"final training loss (last run): release {rel[-1]['loss']:.1f}, ours {our[-1]['loss']:.1f} "
          "(Keras' loss is the released objective; ours reports its own sum, shown only as a sanity check)")
    print(f"load average after: {la1[0]:.2f} {la1[1]:.2f} {la1[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
