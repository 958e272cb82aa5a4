"""Lower bound on a DAVAE training step on this CPU: the work no implementation of the scbean architecture
can skip, timed alone, against the time budget of a speed target.

The released DACVAE (scbean 0.5.6) at the settings of ``benchmarks/davae_vs_release.py`` (1,400 cells,
2,000 genes, batch 128, 25 epochs = 275 optimiser steps) does, every step and in any framework:

* five genes-wide matrix products: the input layer's forward and weight gradient
  (128 × (2000 + batches) × 128 each), and the output layer's forward, weight gradient and input gradient
  (r × 128 × 2000 each, r = the minibatch's reference cells: the others have reconstruction weight 0 and
  need no output, as ``davae.training.train`` exploits);
* one Adam update of all ~0.54 M parameters (memory-bound: parameters, gradients and both moments are read
  and written);
* a softplus over the r × 2000 decoder outputs and a sigmoid for its gradient.

Each is timed on its own in float32 with PyTorch (``torch.mm``, the fused Adam kernel), the best of
``--repeats`` runs of ``--steps`` iterations, and the sum is compared with ``--release-seconds / --target``
(defaults: 5.28 s measured for the release by ``benchmarks/davae_vs_release.py``, target 10×). Everything
else a step needs (batch normalisation, dropout, the encoder's middle layers, the classifier, the loss,
minibatch assembly, autograd bookkeeping) comes on top.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/davae_step_floor.py --threads 1
    OMP_NUM_THREADS=2 python benchmarks/davae_step_floor.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch


def _best(fn, steps: int, repeats: int) -> float:
    """Best mean seconds per call of ``fn`` over ``repeats`` runs of ``steps`` calls (after a warm-up)."""
    for _ in range(10):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, (time.perf_counter() - t) / steps)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=275, help="optimiser steps of the timed fit (25 epochs of 1,400)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--ref-fraction", type=float, default=633 / 1400,
                    help="share of cells in the reference batch (reconstruction weight 1); 1 = every cell")
    ap.add_argument("--release-seconds", type=float, default=5.28, help="the release's time for the fit")
    ap.add_argument("--target", type=float, default=10.0, help="speed-up asked for")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from davae.module import DAVAEModule
    from davae.training import make_optimizer
    from davae.presets import get_params

    B, G, H = args.batch_size, args.genes, 128
    r = max(1, round(B * args.ref_fraction))
    x = torch.rand(B, G + args.batches)
    w_in = torch.randn(G + args.batches, H)
    g_h = torch.randn(B, H)
    h = torch.randn(r, H)
    w_out = torch.randn(H, G)
    g_out = torch.randn(r, G)
    logits = torch.randn(r, G)

    gemms = {
        "input layer forward": lambda: torch.mm(x, w_in),
        "input layer weight gradient": lambda: torch.mm(x.t(), g_h),
        "output layer forward": lambda: torch.mm(h, w_out),
        "output layer weight gradient": lambda: torch.mm(h.t(), g_out),
        "output layer input gradient": lambda: torch.mm(g_out, w_out.t()),
    }
    params = get_params("scbean")
    module = DAVAEModule(G, args.batches, hidden_layers=(128, 64, 32), latent_dim=5, encoder_batch=True)
    for p in module.parameters():
        p.grad = torch.randn_like(p)
    opt = make_optimizer([{"params": list(module.parameters())}], params)
    n_params = sum(p.numel() for p in module.parameters())
    rows = [(name, _best(fn, args.steps, args.repeats)) for name, fn in gemms.items()]
    rows.append((f"Adam update ({n_params:,} parameters, fused)", _best(opt.step, args.steps, args.repeats)))
    rows.append((f"softplus + sigmoid ({r} × {G})",
                 _best(lambda: (torch.nn.functional.softplus(logits), torch.sigmoid(logits)), args.steps, args.repeats)))

    budget = args.release_seconds / args.target
    total = sum(s for _, s in rows)
    print(f"torch {torch.__version__}, {args.threads} thread(s); minibatch {B} cells ({r} reference), {G} genes, "
          f"{args.steps} steps")
    print("| part | ms / step | s / fit |")
    print("|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s * 1e3:.3f} | {s * args.steps:.3f} |")
    print(f"| **sum (lower bound)** | **{total * 1e3:.3f}** | **{total * args.steps:.3f}** |")
    print(f"budget for {args.target:g}x the release's {args.release_seconds:g} s: {budget * 1e3 / args.steps:.3f} ms / step, "
          f"{budget:.3f} s / fit; the lower bound uses {total * args.steps / budget:.0%} of it, leaving "
          f"{budget - total * args.steps:.3f} s for everything else")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
