"""The development panel's held-out designs (``benchmarks/davae_panel.py``): scanpy's ``pbmc68k_reduced``
turned back into counts, split at random, and the shift design's removed types."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import benchmark_module


@pytest.fixture(scope="module")
def panel():
    return benchmark_module("davae_panel")


def test_pbmc68k_counts_are_recovered_from_its_log_normalised_raw(panel):
    import scanpy as sc

    a = panel._pbmc68k()
    src = sc.datasets.pbmc68k_reduced()
    x = a.X.toarray()
    assert a.shape == src.raw.shape and list(a.var_names) == list(src.raw.var_names)
    assert np.all(x >= 0) and np.array_equal(x, np.rint(x))
    # the counts normalise back to the stored log1p(counts per 10^4) up to the stored float precision
    logn = np.log1p(x / src.obs["n_counts"].to_numpy()[:, None] * 1e4)
    np.testing.assert_allclose(logn, src.raw.X.toarray(), atol=2e-3)
    assert set(a.obs["batch"]) == {"half_a", "half_b"}
    assert list(a.obs["cell_type"]) == list(src.obs["bulk_labels"].astype(str))


def test_heldout_designs(panel):
    split, kind = panel.design("pbmc68k_split")
    assert kind == "nobatch" and split.n_obs == 700
    shift, kind = panel.design("pbmc68k_split_no_mono_b")
    assert kind == "shift"
    gone = {"CD14+ Monocyte", "CD19+ B"}
    half_b = shift.obs["batch"] == "half_b"
    assert not shift.obs.loc[half_b, "cell_type"].isin(gone).any()
    assert shift.obs.loc[~half_b, "cell_type"].isin(gone).sum() == split.obs.loc[
        split.obs["batch"] == "half_a", "cell_type"].isin(gone).sum() > 0
    # the same random halves in both designs
    assert (split.obs.loc[shift.obs_names, "batch"] == shift.obs["batch"]).all()
