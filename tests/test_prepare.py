import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from davae_study.data import read_application
from davae_study.prepare import prepare

from conftest import CELLBENCH


def test_prepared_contract(ifnb_raw):
    p = prepare(ifnb_raw, n_top_genes=500)
    assert p.shape == (ifnb_raw.n_obs, 500)
    assert sp.isspmatrix_csr(p.X) and p.X.dtype == np.float32
    assert p.layers["counts"].shape == p.shape
    assert isinstance(p.obs["batch"].dtype, pd.CategoricalDtype)
    assert isinstance(p.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert set(p.obs["batch"].cat.categories) == {"CTRL", "STIM"}
    assert p.uns["prepare"]["n_top_genes"] == 500
    # X is log1p of counts scaled to target_sum per cell (depth over the genes kept by min_cells)
    counts = np.asarray(p.layers["counts"][:5].todense())
    raw = ifnb_raw[p.obs_names[:5]].X
    kept = np.asarray((ifnb_raw.X > 0).sum(axis=0)).ravel() >= 3  # genes that survive min_cells=3
    depth_all = np.asarray(raw[:, kept].sum(axis=1)).ravel()
    expected = np.log1p(counts / depth_all[:, None] * 1e4)
    np.testing.assert_allclose(np.asarray(p.X[:5].todense()), expected, rtol=1e-4, atol=1e-5)
    # genes are ranked by the number of batches that call them variable
    assert p.var["highly_variable_nbatches"].min() >= 1


def test_raw_input_not_modified(ifnb_raw):
    before = ifnb_raw.X.copy()
    prepare(ifnb_raw, n_top_genes=200)
    assert (ifnb_raw.X != before).nnz == 0


def test_keeps_all_genes_when_fewer_than_requested(cellbench_raw):
    p = prepare(cellbench_raw, n_top_genes=5000)
    assert p.n_vars <= cellbench_raw.n_vars and p.var["highly_variable"].all()


def test_compositions_design_subsets_batches():
    a = read_application(
        {"reader": "h5ad", "params": {"keep": {"10x": ["H1975"], "sc_celseq2": ["H2228"]}}}, {"counts": str(CELLBENCH)}
    )
    counts = a.obs.groupby(["batch", "cell_type"], observed=True).size()
    assert set(counts.loc["10x"].index) == {"H1975"}
    assert set(counts.loc["sc_celseq2"].index) == {"H2228"}
    assert set(counts.loc["sc_dropseq"].index) == {"H1975", "H2228", "HCC827"}


def test_per_batch_median_normalisation(ifnb_raw):
    p = prepare(ifnb_raw, n_top_genes=200, target_sum=None, normalize_per_batch=True)
    assert p.uns["prepare"]["normalize_per_batch"] is True
    assert np.isfinite(p.X.data).all()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.obs.drop(columns="batch", inplace=True), "no 'batch' column"),
        (lambda a: a.obs.__setitem__("batch", "one"), "only one batch"),
        (lambda a: a.X.data.__setitem__(0, -1.0), "negative values"),
        (lambda a: a.X.data.__setitem__(0, np.nan), "NaN or infinite"),
    ],
)
def test_bad_input_one_line_errors(ifnb_raw, mutate, message):
    a = ifnb_raw.copy()
    mutate(a)
    with pytest.raises(ValueError, match=message) as err:
        prepare(a)
    assert "\n" not in str(err.value)


def test_reader_errors_name_the_fix():
    with pytest.raises(ValueError, match="unknown reader 'nope'"):
        read_application({"reader": "nope"}, {})
    with pytest.raises(ValueError, match="label_key"):
        read_application({"reader": "h5ad", "params": {"label_key": "missing"}}, {"c": str(CELLBENCH)})
    with pytest.raises(ValueError, match="unknown batches"):
        read_application({"reader": "h5ad", "params": {"keep": {"nope": ["H1975"]}}}, {"c": str(CELLBENCH)})
