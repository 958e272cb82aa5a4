"""scanpy's kNN graph at 10k cells goes through pynndescent; 0.7 broke it (csr_array has no getnnz)."""

import anndata as ad
import numpy as np
import scanpy as sc


def test_neighbors_above_pynndescent_threshold():
    x = np.random.default_rng(0).normal(size=(10000, 8)).astype(np.float32)
    a = ad.AnnData(obs={"i": np.arange(10000)})
    a.obsm["X_emb"] = x
    sc.pp.neighbors(a, use_rep="X_emb", n_neighbors=10, random_state=0)
    assert a.obsp["connectivities"].shape == (10000, 10000)
    per_row = np.diff(a.obsp["distances"].tocsr().indptr)
    assert per_row.min() >= 9  # every cell has its 9 neighbours besides itself
