"""Gene lookup shared by preparation and figures: a name asked for → its column in a matrix.

One rule everywhere a gene list meets a ``var`` table (the marker columns ``prepare.marker_expression``
keeps, the genes the marker figures draw): the exact ``var_name``, then the name case-insensitively, then
``var['symbol']`` case-insensitively (Ensembl-ID ``var_names``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["find_genes"]


def find_genes(var_names: pd.Index, genes: Sequence[str], symbols: pd.Series | None = None) -> dict[str, int]:
    """``{gene: column}`` for the genes found (exact, then case-insensitive, then in ``var['symbol']``), in
    the order asked; genes not found are left out."""
    names = pd.Index(var_names.astype(str))
    upper = pd.Series(names.str.upper())
    sym = None if symbols is None else pd.Series(np.asarray(symbols, dtype=str)).str.upper()
    out = {}
    for g in genes:
        if g in names:
            out[g] = int(names.get_loc(g))
            continue
        hit = np.flatnonzero(upper.to_numpy() == g.upper())
        if not len(hit) and sym is not None:
            hit = np.flatnonzero(sym.to_numpy() == g.upper())
        if len(hit):
            out[g] = int(hit[0])
    return out
