"""Thread control of a fit: torch's intra-op pool and the BLAS / OpenMP pools, set for a block and restored.

torch's CPU wheels run their intra-op work (and MKL's, linked in) on GNU OpenMP (``libgomp``), whose threads
spin while they wait at a barrier. On a shared machine a spinning thread burns the core that the thread it
waits for needs: on the study's 2-core machine beside other jobs a fit on 2 threads took 43-57 s where it took
2.2 s on one thread, and 2.7 s on 2 threads with ``OMP_WAIT_POLICY=PASSIVE`` (docs/davae.md, "Threads";
``benchmarks/davae_threads.py``). libgomp reads its wait policy once, when it is loaded (with torch), so
:func:`prefer_passive_wait` exports ``OMP_WAIT_POLICY=PASSIVE`` at ``import davae`` unless the caller chose a
policy or torch is already loaded. Pool sizes can change at any time: :func:`limit_threads`.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
from typing import Iterator

#: variables read by OpenMP, MKL and OpenBLAS when they load
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_threads(threads) -> int | None:
    """``threads`` as a positive int, or None (leave the thread settings as they are)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or int(threads) < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


def prefer_passive_wait() -> bool:
    """Export ``OMP_WAIT_POLICY=PASSIVE`` when torch is not loaded yet and no policy is set; True if done."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def export_thread_env(threads: int) -> bool:
    """Export ``OMP/MKL/OPENBLAS_NUM_THREADS=threads`` so that the pools start at that size, if neither numpy
    nor torch is loaded yet (later the variables are no longer read); True if done. For a process's start
    (the command line), not for a library call: the variables stay set."""
    if "numpy" in sys.modules or "torch" in sys.modules:
        return False
    for name in THREAD_ENV:
        os.environ[name] = str(int(threads))
    return True


@contextlib.contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op pool and the BLAS / OpenMP pools (threadpoolctl) at ``threads``,
    then restore the previous sizes; ``None`` leaves everything as it is."""
    threads = check_threads(threads)
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads), torch_threads(threads):
        yield


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with torch's intra-op pool at ``threads`` (only torch's: the BLAS / OpenMP pools that
    threadpoolctl sees are left as they are), then restore its previous size, also when the block fails."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
