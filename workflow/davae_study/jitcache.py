"""numba's on-disk cache for the compiled code of umap-learn and pynndescent (what scanpy's neighbour graph
and UMAP run).

umap-learn and pynndescent declare most of their numba functions without ``cache=True``, so every new
process compiles them again: 6-7 s of CPU before the first ``sc.pp.neighbors`` or ``sc.tl.umap`` returns,
most of a UMAP, evaluate or spatial-clusters job on small data (the rules run one process per job). Inside
:func:`jit_cache`, ``numba.njit`` and ``numba.jit`` default to ``cache=True`` for functions defined in a
file, so the libraries imported there (and the kernels umap-learn builds per call) are compiled once and
loaded from numba's cache by later processes. numba keeps that cache in ``__pycache__`` beside the
library's source, or in the user-wide cache directory when that is read-only; ``NUMBA_CACHE_DIR`` moves
it. Results do not change: the same machine code is loaded instead of compiled, and numba recompiles when
a library's source file changes.

Only a library first imported inside the context is affected (a ``umap`` imported earlier in the process
keeps its uncached functions: slower, not different); an explicit ``cache=`` argument is left as given.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Iterator


def _cachable(func) -> bool:
    """numba can cache a plain function whose source file exists (not one made by ``exec``)."""
    return inspect.isfunction(func) and os.path.isfile(func.__code__.co_filename)


def _default_cache(decorator):
    """``decorator`` (``numba.njit`` or ``numba.jit``) with ``cache=True`` unless the call sets ``cache``."""

    @functools.wraps(decorator)
    def wrapped(*args, **kwargs):
        if "cache" in kwargs:
            return decorator(*args, **kwargs)
        if args and inspect.isfunction(args[0]):  # @numba.njit, numba.njit(func, ...)
            return decorator(*args, cache=_cachable(args[0]), **kwargs)

        def decorate(func):  # @numba.njit(...), numba.njit(signature, ...)
            return decorator(*args, cache=_cachable(func), **kwargs)(func)

        return decorate

    wrapped.__davae_study_cache__ = True
    return wrapped


@contextlib.contextmanager
def jit_cache() -> Iterator[None]:
    """Within the block, numba functions are compiled with ``cache=True`` unless they say otherwise.

    Wrap the scanpy calls that build a neighbour graph or a UMAP (``sc.pp.neighbors``, ``sc.tl.umap``),
    so that umap-learn and pynndescent are imported, and their kernels compiled, inside it. Nests; does
    nothing when numba is not installed.
    """
    try:
        import numba
    except ImportError:  # nothing to cache
        yield
        return
    if getattr(numba.njit, "__davae_study_cache__", False):  # an enclosing block already set it
        yield
        return
    saved = numba.njit, numba.jit
    numba.njit, numba.jit = _default_cache(numba.njit), _default_cache(numba.jit)
    try:
        yield
    finally:
        numba.njit, numba.jit = saved


__all__ = ["jit_cache"]
