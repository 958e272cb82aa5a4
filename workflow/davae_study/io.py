"""Atomic file writing: write beside the target under a temporary name, then rename.

A crashed or killed job therefore never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import anndata as ad
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` when the block succeeds.

    The temporary file keeps the target's suffix (some writers dispatch on it) and is removed on error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the final file the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike, compression: str | None = "gzip") -> None:
    """Write ``adata`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression=compression)


def read_h5ad(path: str | os.PathLike, *, layers: tuple[str, ...] | None = None) -> ad.AnnData:
    """Read an ``.h5ad``; with ``layers`` given, only those layers are loaded (the others never reach memory).

    ``X``, ``obs``, ``var``, ``uns``, ``obsm``, ``varm`` and ``obsp`` are always read. A named layer the
    file lacks is a one-line error.
    """
    if layers is None:
        return ad.read_h5ad(path)
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        parts = {k: read_elem(f[k]) for k in ("X", "obs", "var", "uns", "obsm", "varm", "obsp") if k in f}
        have = set(f["layers"]) if "layers" in f else set()
        missing = [name for name in layers if name not in have]
        if missing:
            raise ValueError(f"{path} has no layers {missing} (it has {sorted(have)}); rerun the step that writes it")
        parts["layers"] = {name: read_elem(f["layers"][name]) for name in layers}
    return ad.AnnData(**parts)


def write_tsv(df: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> None:
    """Write a tab-separated table atomically (NaN as empty field, pandas' default)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=index)


def read_tsv(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")
