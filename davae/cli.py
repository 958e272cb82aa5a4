"""Command line: ``davae integrate in.h5ad out.h5ad --batch-key batch`` (also ``python -m davae ...``)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

from ._threads import available_cores, check_threads, export_thread_env
from .presets import PRESETS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="davae", description="Domain-adversarial VAE for single-cell integration.")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("integrate", help="integrate the batches of an .h5ad file",
                       description="Read raw counts, preprocess (unless --no-preprocess), train DAVAE, and write "
                                   "the input's obs with obsm['X_davae'] (latent mean; with --embedding "
                                   "corrected_pca also obsm['X_davae_pca']) and layers['davae_recovered'].")
    i.add_argument("input", help="input .h5ad (raw counts in X, or log-normalised with --no-preprocess)")
    i.add_argument("output", help="output .h5ad (written atomically)")
    i.add_argument("--batch-key", default="batch", help="obs column with each cell's batch (default: batch)")
    i.add_argument("--preset", default="default", choices=sorted(PRESETS), help="parameter preset")
    i.add_argument("--no-preprocess", action="store_true", help="X is already log-normalised; use it as given")
    i.add_argument("--skip-count-check", action="store_true",
                   help="preprocess X even when it looks log-transformed (values not integers, max < 30)")
    i.add_argument("--threads", type=int,
                   help="CPU threads (torch, BLAS, OpenMP); default: the cores this process may use "
                        f"(here {available_cores()})")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    i.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on a CUDA device that supports it, float32 on CPU")
    i.add_argument("--early-stopping", action="store_true", default=None,
                   help="hold out 10%% of the cells and stop when their loss stops improving")
    i.add_argument("--epochs", type=int)
    i.add_argument("--batch-size", type=int)
    i.add_argument("--domain-lambda", type=float)
    i.add_argument("--latent-dim", type=int)
    i.add_argument("--hidden-layers", help="comma-separated encoder widths, e.g. 128,64,32")
    i.add_argument("--min-steps", type=int)
    i.add_argument("--lr", type=float)
    i.add_argument("--n-top-genes", type=int)
    i.add_argument("--embedding", choices=["latent", "corrected_pca", "latent_and_pcs"],
                   help="embedding to recommend (uns['davae']['embedding']); corrected_pca also writes "
                        "obsm['X_davae_pca'], PCs of the batch-corrected expression; latent_and_pcs also "
                        "obsm['X_davae_joint'], the latent and those PCs side by side (default: latent)")
    i.add_argument("--prior-fallback", action="store_true", default=None,
                   help="when the warm-up latent shows no shared neighbourhood between groups of batches, align "
                        "them with the global adversary instead of leaving them apart (the fit warns when so)")
    i.add_argument("--corrected", action="store_true",
                   help="also write layers['davae_corrected']: the expression decoded under the average batch "
                        "(batch-corrected; dense cells x genes)")
    i.add_argument("--save-model", help="also write the trained model to this file")
    i.add_argument("--no-progress", action="store_true",
                   help="no progress (default: a bar on a terminal, a loss line every few epochs in a log)")
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings during the command as one line on stderr (``davae: warning: ...``), without the source line
    Python's default format adds."""
    text = str(message)
    text = text[len("DAVAE: "):] if text.startswith("DAVAE: ") else f"{category.__name__}: {text}"
    print(f"davae: warning: {text}", file=sys.stderr if file is None else file)


def _integrate(args: argparse.Namespace) -> None:
    import anndata as ad
    import h5py

    from .api import integrate_with_model

    src = Path(args.input)
    if not src.exists():
        raise ValueError(f"input file {src} does not exist")
    if not src.is_file() or not h5py.is_hdf5(src):
        raise ValueError(f"{src} is not an HDF5 file; davae integrate reads an .h5ad AnnData file (e.g. written by "
                         "adata.write_h5ad), with raw counts in X and the batch of each cell in obs")
    with warnings.catch_warnings():  # duplicated names: our one-line error below, not anndata's warnings
        warnings.filterwarnings("ignore", message=".*names are not unique", category=UserWarning)
        adata = ad.read_h5ad(src)
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "domain_lambda", "latent_dim",
                                                "hidden_layers", "min_steps", "lr", "n_top_genes",
                                                "early_stopping", "embedding", "prior_fallback")
                 if getattr(args, k) is not None}
    with warnings.catch_warnings():  # restores showwarning afterwards
        warnings.showwarning = _show_warning
        out, model = integrate_with_model(adata, batch_key=args.batch_key, preset=args.preset,
                                          preprocess=not args.no_preprocess, seed=args.seed, device=args.device,
                                          precision=args.precision, progress=not args.no_progress,
                                          threads=args.threads, check_counts=not args.skip_count_check,
                                          corrected=args.corrected, **overrides)
    dst = Path(args.output)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp.h5ad", dir=dst.parent)
    os.close(fd)
    try:
        out.write_h5ad(tmp, compression="gzip")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if args.save_model:
        model.save(args.save_model)
    key = out.uns["davae"]["embedding"]
    print(f"davae: wrote {dst} ({out.n_obs} cells x {out.n_vars} genes, embedding obsm['{key}'] "
          f"{out.obsm[key].shape[1]}-d)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``davae`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "integrate":
            args.threads = check_threads(available_cores() if args.threads is None else args.threads)
            # the pools start at this size when torch and numpy are not loaded yet (run as a command)
            export_thread_env(args.threads)
            _integrate(args)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"davae: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
