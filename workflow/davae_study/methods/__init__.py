"""Integration methods behind one contract, and the registry that runs them.

Method contract (one module per method, named in the config's ``methods:`` table)::

    def run(adata: AnnData, *, seed: int = 0, device: str = "auto", **params) -> AnnData

``adata`` is a prepared AnnData (docs/CONTRACTS.md) whose expression matrices are shared with the caller:
a method copies before it modifies ``X`` or a layer. It holds the layers the module names in a module-level
``LAYERS`` tuple (e.g. ``LAYERS = ("counts",)`` for a count-based model) and no others: the workflow does not
load the raw counts (as large as ``X``) for methods that do not use them (:func:`method_layers`). The result has the same cells in the same order and
``obsm['X_emb']``, plus ``layers['corrected']`` where the method returns corrected expression. A ``run`` with
a ``threads`` keyword gets the job's thread count (rule ``threads:``) in it.
:func:`run_method` imports the module, times the call, checks the result against the contract and returns
the ``integrated/<method>.h5ad`` object. A method that raises becomes a *failed* record (no embedding,
``uns['method']['status'] == 'failed'``) so that the tables show NA for it instead of the DAG dying.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import inspect
import logging
import platform
import resource
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import anndata as ad
import numpy as np
from davae._threads import prefer_passive_wait

log = logging.getLogger(__name__)

# before any method loads torch: its OpenMP threads then sleep instead of spinning while they wait, which
# keeps a job with several threads fast on a shared machine (docs/davae.md, "Threads")
prefer_passive_wait()

__all__ = ["run_method", "check_result", "failed_result", "resolve_device", "import_method", "method_layers",
           "thread_limit", "peak_rss_mb"]


def resolve_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; anything else is returned as given."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def import_method(module: str):
    """Import a method module and check it has a ``run`` function."""
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"cannot import method module {module!r} ({err}); fix methods.<name>.module in the config") from err
    if not callable(getattr(mod, "run", None)):
        raise ValueError(f"method module {module!r} has no run(adata, *, seed, device, **params) function")
    return mod


def method_layers(name: str, module: str | None = None) -> tuple[str, ...]:
    """Layers of ``prepared.h5ad`` the method reads: its module's ``LAYERS`` (default: none). A module that
    cannot be imported needs none: :func:`run_method` then records the import error as the method's failure."""
    try:
        mod = import_method(module or f"{__name__}.{name}")
    except ValueError:
        return ()
    layers = getattr(mod, "LAYERS", ())
    return (layers,) if isinstance(layers, str) else tuple(layers)


def check_result(prepared: ad.AnnData, result: ad.AnnData, name: str) -> None:
    """Raise ValueError when ``result`` breaks the method contract."""
    if not isinstance(result, ad.AnnData):
        raise ValueError(f"method {name!r} returned {type(result).__name__}, not AnnData")
    if result.n_obs != prepared.n_obs or not np.array_equal(result.obs_names, prepared.obs_names):
        raise ValueError(f"method {name!r} changed the cells or their order ({result.n_obs} vs {prepared.n_obs})")
    if "X_emb" not in result.obsm:
        raise ValueError(f"method {name!r} returned no obsm['X_emb']")
    emb = np.asarray(result.obsm["X_emb"])
    if emb.ndim != 2 or emb.shape[1] < 1:
        raise ValueError(f"method {name!r}: obsm['X_emb'] has shape {emb.shape}, expected (cells, dims)")
    if not np.all(np.isfinite(emb)):
        raise ValueError(f"method {name!r}: obsm['X_emb'] holds NaN or infinite values")
    if "corrected" in result.layers and result.layers["corrected"].shape != prepared.shape:
        raise ValueError(f"method {name!r}: layers['corrected'] has shape {result.layers['corrected'].shape}, expected {prepared.shape}")


def _skeleton(prepared: ad.AnnData) -> ad.AnnData:
    """Same cells, obs and genes as ``prepared``, no expression: what every integrated file starts from."""
    return ad.AnnData(obs=prepared.obs.copy(), var=prepared.var.copy())


def _shallow(prepared: ad.AnnData) -> ad.AnnData:
    """What a method receives: its own obs/var/uns, but the expression matrices shared, not copied (an
    atlas-size copy of X and the counts would double the job's memory). Methods must not modify X in place."""
    return ad.AnnData(X=prepared.X, obs=prepared.obs.copy(), var=prepared.var.copy(), layers=dict(prepared.layers),
                      obsm=dict(prepared.obsm), uns=dict(prepared.uns))


def failed_result(prepared: ad.AnnData, info: dict[str, Any]) -> ad.AnnData:
    out = _skeleton(prepared)
    out.uns["method"] = info
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss where /proc is absent, e.g. macOS).

    ru_maxrss is avoided on Linux: a child started by fork inherits its parent's peak there.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Cap torch's and the BLAS/OpenMP thread pools at ``threads`` for the block (no-op for None/0).

    More threads than a job's cores make torch's spin-waiting workers an order of magnitude slower on a busy
    machine (measured: 0.8 s vs 30 ms per DAVAE step).
    """
    if not threads:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with threadpool_limits(limits=int(threads)):
            yield
    finally:
        torch.set_num_threads(before)


def _versions(module) -> dict[str, str]:
    """Versions of the libraries a result depends on (the method's own top-level package included)."""
    out = {"python": platform.python_version()}
    top = module.__name__.split(".")[0]
    for pkg in ("numpy", "scanpy", "anndata", "torch", "davae-study", "scanorama", "harmonypy", "scvi-tools", "lightning", top):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def run_method(
    name: str,
    prepared: ad.AnnData,
    *,
    module: str | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
    on_error: str = "record",
    threads: int | None = None,
) -> ad.AnnData:
    """Run one integration method on a prepared AnnData and return the ``integrated/<method>.h5ad`` object.

    Parameters
    ----------
    name
        The method's name in the config (used in tables and figures).
    prepared
        Prepared AnnData (not modified).
    module
        Python module implementing the method (default ``davae_study.methods.<name>``).
    params
        Keyword arguments for the method's ``run``.
    seed, device
        Passed to the method; ``device='auto'`` picks CUDA when available.
    on_error
        ``record`` (default): a method that raises returns a failed record; ``raise``: re-raise.
    threads
        The job's threads, passed as ``threads=`` to a ``run`` that accepts that keyword (unless ``params``
        sets it); the caller caps the thread pools itself (:func:`thread_limit`).
    """
    if on_error not in ("record", "raise"):
        raise ValueError(f"on_error must be 'record' or 'raise', not {on_error!r}")
    params = dict(params or {})
    module = module or f"{__name__}.{name}"
    info: dict[str, Any] = {"name": name, "module": module, "params": params, "seed": int(seed)}
    if threads:
        info["threads"] = int(threads)
    device = resolve_device(device)
    info["device"] = device
    start = time.perf_counter()
    try:
        mod = import_method(module)
        kwargs = dict(params)
        if threads and "threads" not in kwargs and "threads" in inspect.signature(mod.run).parameters:
            kwargs["threads"] = int(threads)
        result = mod.run(_shallow(prepared), seed=seed, device=device, **kwargs)
        check_result(prepared, result, name)
    except Exception as err:  # noqa: BLE001 - a failed method is data, see on_error
        if on_error == "raise":
            raise
        log.error("method %s failed: %s", name, err)
        info.update(status="failed", error=f"{type(err).__name__}: {err}".splitlines()[0][:500],
                    traceback=traceback.format_exc()[-4000:], wall_s=time.perf_counter() - start)
        return failed_result(prepared, info)
    info.update(status="ok", error="", wall_s=time.perf_counter() - start, peak_rss_mb=peak_rss_mb(),
                versions=_versions(mod))
    if device.startswith("cuda"):
        import torch

        info["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 1024**2

    out = _skeleton(prepared)
    out.obsm["X_emb"] = np.asarray(result.obsm["X_emb"], dtype=np.float32)
    for key, value in result.obsm.items():
        if key != "X_emb" and key not in prepared.obsm:
            out.obsm[key] = value
    for col in result.obs.columns.difference(prepared.obs.columns):
        out.obs[col] = result.obs[col].to_numpy()
    if "corrected" in result.layers:
        out.layers["corrected"] = result.layers["corrected"]
    notes = result.uns.get("method_notes", [])
    notes = [notes] if isinstance(notes, str) else [str(n) for n in notes]  # one note, or a list of them
    if notes:
        info["notes"] = notes
    extra = {k: v for k, v in result.uns.items() if k not in prepared.uns and k not in ("method", "method_notes")}
    if extra:
        out.uns["method_outputs"] = extra
    out.uns["method"] = info
    return out
