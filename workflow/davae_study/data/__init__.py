"""Reading an application's input files into one raw AnnData.

Each application in the config names a ``reader`` and its ``files``; :func:`read_application` dispatches to
the reader registered under that name. A reader takes the local paths (file key → path) and its params and
returns an AnnData with raw counts (or TPM, said in ``uns['counts_kind']``) in ``X``, ``obs['batch']`` and,
where known, ``obs['cell_type']``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anndata as ad

from .h5ad import read_h5ad_input
from .readers import hca_immune, pbmc_rna_atac, tenx_293t_jurkat, villani_dc, visium_mouse_brain

Reader = Callable[..., ad.AnnData]

#: reader name (config ``applications.<app>.input.reader``) → function(paths, **params) -> AnnData
READERS: dict[str, Reader] = {
    "h5ad": read_h5ad_input,
    # the paper's five applications (downloaded files; see docs/data.md)
    "villani_dc": villani_dc,
    "tenx_293t_jurkat": tenx_293t_jurkat,
    "pbmc_rna_atac": pbmc_rna_atac,
    "visium_mouse_brain": visium_mouse_brain,
    "hca_immune": hca_immune,
}


def read_application(spec: Mapping[str, Any], paths: Mapping[str, str]) -> ad.AnnData:
    """Read one application's input.

    Parameters
    ----------
    spec
        The application's ``input`` mapping from the config: ``reader`` (a key of :data:`READERS`) and
        optional ``params`` passed to the reader.
    paths
        File key → local path of every input file of the application.
    """
    name = spec["reader"]
    try:
        reader = READERS[name]
    except KeyError:
        raise ValueError(f"unknown reader {name!r}; use one of {sorted(READERS)}") from None
    return reader(dict(paths), **dict(spec.get("params") or {}))
