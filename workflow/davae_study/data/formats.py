"""Readers of the raw file formats the paper's data come in; each returns a cells x features AnnData.

All counts stay sparse (CSR, float32) from file to AnnData: 10x HDF5 stores a features x cells CSC matrix,
which *is* the cells x features CSR matrix, so even the 384,000-cell HCA files are read without densifying.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import posixpath
import tarfile
from pathlib import Path
from typing import Iterable, Sequence

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
from scipy import sparse

__all__ = ["read_10x_h5", "read_10x_mtx", "read_visium_spatial", "read_geo_table", "read_csv_counts_chunked"]


def _str(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind in "US":
        return a.astype(str)
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a])


def _finish(X: sparse.spmatrix, obs_names: Sequence[str], var: pd.DataFrame) -> ad.AnnData:
    X = sparse.csr_matrix(X, dtype=np.float32)
    a = ad.AnnData(X=X, obs=pd.DataFrame(index=pd.Index(np.asarray(obs_names, dtype=str))), var=var)
    a.var_names_make_unique()
    a.obs_names_make_unique()
    return a


def read_10x_h5(
    path: str | os.PathLike,
    *,
    genome: str | None = None,
    feature_types: Iterable[str] | None = ("Gene Expression",),
) -> ad.AnnData:
    """Read a 10x Genomics HDF5 matrix, layout v2 (one group per genome) or v3 (``/matrix``), never densifying.

    ``var_names`` are the feature names (gene symbols, or peak names ``chr:start-end`` for scATAC) made
    unique; ``var['gene_ids']`` the IDs, ``var['feature_types']`` the type (v3). ``feature_types`` keeps only
    those types in v3 files (``None``: all; peaks files are ``"Peaks"``); ``genome`` picks the v2 group.
    """
    with h5py.File(path, "r") as f:
        is_v3 = "matrix" in f
        if is_v3:
            g = f["matrix"]
            feat = g["features"]
            names, ids = _str(feat["name"][:]), _str(feat["id"][:])
            ftype = _str(feat["feature_type"][:]) if "feature_type" in feat else np.full(len(ids), "Gene Expression")
        else:
            groups = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
            if genome is None:
                if len(groups) != 1:
                    raise ValueError(f"{path}: several genomes {groups}; pass genome=")
                genome = groups[0]
            if genome not in f:
                raise ValueError(f"{path}: no genome group {genome!r}; it has {groups}")
            g = f[genome]
            names, ids = _str(g["gene_names"][:]), _str(g["genes"][:])
            ftype = np.full(len(ids), "Gene Expression")
        n_feat, n_cells = (int(x) for x in g["shape"][:])
        X = sparse.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=(n_cells, n_feat))
        barcodes = _str(g["barcodes"][:])
    var = pd.DataFrame({"gene_ids": ids, "feature_types": ftype}, index=pd.Index(names))
    if feature_types is not None and is_v3:
        keep = np.isin(ftype, list(feature_types))
        if not keep.any():
            raise ValueError(f"{path}: no features of type {list(feature_types)}; it has {sorted(set(ftype))}")
        X, var = X[:, keep], var.iloc[keep]
    return _finish(X, barcodes, var)


def _open_member(tar: tarfile.TarFile, member: tarfile.TarInfo):
    fh = tar.extractfile(member)
    return gzip.GzipFile(fileobj=fh) if member.name.endswith(".gz") else fh


def read_10x_mtx(path: str | os.PathLike, *, genome: str | None = None, gene_column: int = 1) -> ad.AnnData:
    """Read a 10x Market-Exchange matrix from a ``.tar.gz`` archive (or an unpacked folder), any nesting.

    Looks for ``matrix.mtx[.gz]``, ``genes.tsv``/``features.tsv[.gz]`` and ``barcodes.tsv[.gz]`` in one folder
    (``genome`` picks among folders whose path contains it, e.g. ``hg19``). ``gene_column`` is the column
    of the genes file used as ``var_names`` (1: symbols).
    """
    path = Path(path)
    if path.is_dir():
        files = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if p.is_file()}
        opener = lambda name: gzip.open(files[name]) if name.endswith(".gz") else open(files[name], "rb")  # noqa: E731
        names = list(files)
        tar = None
    else:
        tar = tarfile.open(path)
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        opener = lambda name: _open_member(tar, members[name])  # noqa: E731
        names = list(members)
    try:
        mats = [n for n in names if Path(n).name in ("matrix.mtx", "matrix.mtx.gz")]
        if genome is not None:
            mats = [n for n in mats if genome in n]
        if len(mats) != 1:
            which = f" for genome {genome}" if genome else ""
            raise ValueError(f"{path}: expected one matrix.mtx{which}, found {mats}; pass genome=")
        folder = posixpath.dirname(mats[0]) or "."  # keeps a './' prefix of tar member names

        def find(*cands):
            for c in cands:
                n = c if folder == "." else f"{folder}/{c}"
                if n in names:
                    return n
            raise ValueError(f"{path}: {folder}/ lacks {cands[0]}")

        with opener(mats[0]) as fh:
            M = scipy.io.mmread(fh)
        with opener(find("genes.tsv", "features.tsv.gz", "features.tsv", "genes.tsv.gz")) as fh:
            genes = pd.read_csv(fh, sep="\t", header=None, dtype=str)
        with opener(find("barcodes.tsv", "barcodes.tsv.gz")) as fh:
            barcodes = pd.read_csv(fh, sep="\t", header=None, dtype=str)[0].to_numpy()
    finally:
        if tar is not None:
            tar.close()
    col = gene_column if genes.shape[1] > gene_column else 0
    var = pd.DataFrame({"gene_ids": genes[0].to_numpy()}, index=pd.Index(genes[col].to_numpy()))
    if genes.shape[1] > 2:
        var["feature_types"] = genes[2].to_numpy()
    return _finish(sparse.csr_matrix(M).T, barcodes, var)


def read_visium_spatial(path: str | os.PathLike, barcodes: Sequence[str], *, library_id: str) -> dict:
    """Spot positions, scale factors and images of a Visium ``spatial/`` folder or ``*_spatial.tar.gz``.

    Returns ``{'spatial': (n, 2) array [x=pxl_col, y=pxl_row] in full-resolution pixels, 'positions':
    DataFrame, 'uns': {library_id: {'images': {...}, 'scalefactors': {...}, 'metadata': {...}}}}`` in the
    layout scanpy's ``pl.spatial`` reads. ``barcodes`` orders the rows; every barcode must have a position.
    """
    path = Path(path)
    if path.is_dir():
        files = {p.name: p for p in path.rglob("*") if p.is_file()}
        read = lambda n: files[n].read_bytes()  # noqa: E731
        names = set(files)
    else:
        with tarfile.open(path) as tar:
            blobs = {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        read = blobs.__getitem__
        names = set(blobs)
    if "tissue_positions_list.csv" in names:  # Space Ranger 1.x: no header
        pos = pd.read_csv(io.BytesIO(read("tissue_positions_list.csv")), header=None,
                          names=["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres",
                                 "pxl_col_in_fullres"])
    elif "tissue_positions.csv" in names:  # Space Ranger 2.x: header
        pos = pd.read_csv(io.BytesIO(read("tissue_positions.csv")))
    else:
        raise ValueError(f"{path}: no tissue_positions_list.csv / tissue_positions.csv; "
                         "is this a Visium spatial folder?")
    pos = pos.set_index("barcode")
    missing = pd.Index(barcodes).difference(pos.index)
    if len(missing):
        raise ValueError(f"{path}: {len(missing)} barcodes of the matrix have no spot position (e.g. {missing[0]}); "
                         "matrix and spatial folder are from different samples")
    pos = pos.loc[list(barcodes)]
    scale = json.loads(read("scalefactors_json.json")) if "scalefactors_json.json" in names else {}
    images = {}
    for res in ("hires", "lowres"):
        name = f"tissue_{res}_image.png"
        if name in names:
            import matplotlib.image as mpimg

            images[res] = mpimg.imread(io.BytesIO(read(name)), format="png")
    xy = pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)
    return {"spatial": xy, "positions": pos,
            "uns": {library_id: {"images": images, "scalefactors": scale, "metadata": {"source": str(path)}}}}


def read_geo_table(path: str | os.PathLike, *, sep: str = "\t") -> ad.AnnData:
    """Read a GEO supplementary genes x cells text table (``.txt[.gz]``), first column gene names."""
    df = pd.read_csv(path, sep=sep, index_col=0)
    if df.shape[1] == 0 or not all(np.issubdtype(t, np.number) for t in df.dtypes):
        raise ValueError(f"{path}: expected a genes x cells numeric table with gene names in the first column")
    var = pd.DataFrame(index=pd.Index(df.index.astype(str)))
    return _finish(sparse.csr_matrix(df.to_numpy(dtype=np.float32).T), df.columns.astype(str), var)


def read_csv_counts_chunked(path: str | os.PathLike, *, chunksize: int = 2000, sep: str = ",") -> ad.AnnData:
    """Read a large dense genes x cells CSV (e.g. Tasic 2018's 45,768 x 23,178 exon counts) chunk by chunk
    into a sparse cells x genes AnnData, so the dense table never sits in memory whole."""
    blocks, genes, cells = [], [], None
    for chunk in pd.read_csv(path, sep=sep, index_col=0, chunksize=chunksize):
        if cells is None:
            cells = chunk.columns.astype(str)
        genes.append(chunk.index.astype(str).to_numpy())
        blocks.append(sparse.csr_matrix(chunk.to_numpy(dtype=np.float32)))
    if cells is None:
        raise ValueError(f"{path}: empty table")
    X = sparse.vstack(blocks, format="csr").T.tocsr()
    return _finish(X, cells, pd.DataFrame(index=pd.Index(np.concatenate(genes))))
