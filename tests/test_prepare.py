import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

import davae_study.prepare as prepare_module
from davae_study.data import read_application
from davae_study.prepare import prepare

from conftest import CELLBENCH, shared_file


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
    raw = ifnb_raw.copy()
    raw.uns["note"] = {"kept": [1, 2]}
    X, obs, var = raw.X, raw.obs.copy(), raw.var.copy()
    data, indices, indptr = X.data.copy(), X.indices.copy(), X.indptr.copy()
    p = prepare(raw, n_top_genes=200, min_genes=300)  # drops cells and genes
    assert raw.X is X and raw.shape == (ifnb_raw.n_obs, ifnb_raw.n_vars)
    assert np.array_equal(X.data, data) and np.array_equal(X.indices, indices) and np.array_equal(X.indptr, indptr)
    pd.testing.assert_frame_equal(raw.obs, obs)
    pd.testing.assert_frame_equal(raw.var, var)
    assert set(raw.uns) == {"counts_kind", "note"} and raw.uns["note"] == {"kept": [1, 2]}
    # the CSR float32 input is read in place, so the result must own its arrays
    for out in (p.X, p.layers["counts"]):
        for a in (out.data, out.indices, out.indptr):
            assert not any(np.shares_memory(a, b) for b in (X.data, X.indices, X.indptr))
    p.uns["note"]["kept"].append(3)
    assert raw.uns["note"] == {"kept": [1, 2]}


def _scanpy_reference(adata, *, n_top_genes=2000, target_sum=1e4, normalize_per_batch=False, min_cells=3, min_genes=1):
    """What prepare() computed before it read X in blocks: scanpy's filters, normalisation, log1p and
    highly_variable_genes(flavor='seurat', batch_key='batch') on a full copy."""
    adata = adata.copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    sc.pp.filter_cells(adata, min_genes=min_genes)
    sc.pp.filter_genes(adata, min_cells=min_cells)
    adata.layers["counts"] = adata.X.copy()
    if target_sum is not None or normalize_per_batch:
        depth = np.asarray(adata.X.sum(axis=1)).ravel().astype(np.float64)
        if target_sum is not None:
            target = np.full_like(depth, float(target_sum))
        else:
            target = pd.Series(depth).groupby(adata.obs["batch"].to_numpy()).transform("median").to_numpy()
        scale = np.divide(target, depth, out=np.zeros_like(depth), where=depth > 0).astype(np.float32)
        adata.X = sp.csr_matrix(sp.diags(scale) @ adata.X, dtype=np.float32)
    sc.pp.log1p(adata)
    if n_top_genes < adata.n_vars:
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes, flavor="seurat", batch_key="batch")
        adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    else:
        adata.var["highly_variable"] = True
        adata.var["highly_variable_nbatches"] = adata.obs["batch"].nunique()
    for key in ("batch", "cell_type"):
        if key in adata.obs:
            adata.obs[key] = adata.obs[key].astype("category").cat.remove_unused_categories()
    return adata


def _assert_same_prepared(got, ref):
    assert got.shape == ref.shape
    pd.testing.assert_frame_equal(got.obs, ref.obs, check_exact=True)
    pd.testing.assert_frame_equal(got.var, ref.var, check_exact=True)  # genes, n_cells, means, dispersions, ...
    assert list(got.layers) == list(ref.layers) == ["counts"]
    for mine, theirs in ((got.X, ref.X), (got.layers["counts"], ref.layers["counts"])):
        assert sp.isspmatrix_csr(mine) and mine.dtype == theirs.dtype == np.float32
        # same stored entries and values, bit for bit (the sparse product left ref.X's rows in reverse order)
        mine, theirs = mine.copy(), theirs.copy()
        mine.sort_indices()
        theirs.sort_indices()
        for part in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(getattr(mine, part), getattr(theirs, part), err_msg=part)


PREPARE_CASES = [
    ("ifnb", dict(n_top_genes=2000)),
    ("ifnb", dict(n_top_genes=500, min_genes=300, min_cells=10)),  # drops cells and genes
    ("ifnb", dict(n_top_genes=300, target_sum=None, normalize_per_batch=True)),
    ("ifnb", dict(n_top_genes=1000, target_sum=None)),  # TPM-like: log1p of the input only
    ("cellbench", dict(n_top_genes=300, target_sum=1e6)),  # 3 batches
    ("cellbench", dict(n_top_genes=5000)),  # fewer genes than asked: all kept
]


@pytest.mark.parametrize("block_nnz", [None, 997])
@pytest.mark.parametrize("name, params", PREPARE_CASES)
def test_same_result_as_scanpy(ifnb_raw, cellbench_raw, name, params, block_nnz, monkeypatch):
    """Block by block (also with blocks of a few rows) prepare() gives what scanpy gives on a full copy."""
    if block_nnz is not None:
        monkeypatch.setattr(prepare_module, "_BLOCK_NNZ", block_nnz)
    raw = {"ifnb": ifnb_raw, "cellbench": cellbench_raw}[name]
    got = prepare(raw, **params)
    ref = _scanpy_reference(raw, **params)
    _assert_same_prepared(got, ref)
    assert got.uns["prepare"]["output_shape"] == list(ref.shape)


@pytest.mark.parametrize(
    "file, params",
    [
        ("cellbench_3cl_celseq2_dropseq.h5ad", {}),  # 15k genes, unsorted column indices
        ("harmony_pbmc_stim.h5ad", {"label_key": None}),  # 2,000 cells, 9k genes, no labels
    ],
)
def test_same_genes_as_scanpy_on_shared_data(file, params):
    raw = read_application({"reader": "h5ad", "params": params}, {"counts": str(shared_file(file))})
    got = prepare(raw, n_top_genes=2000)
    _assert_same_prepared(got, _scanpy_reference(raw, n_top_genes=2000))


def test_annotations_follow_scanpy(ifnb_raw):
    """obs/var columns, string columns, unused categories, uns, obsm and layers go through as before."""
    raw = ifnb_raw.copy()
    raw.obs["donor"] = np.where(np.arange(raw.n_obs) % 2, "d1", "d2")  # string column: categorical, as scanpy does
    raw.obs["cell_type"] = raw.obs["cell_type"].cat.add_categories(["unused"])
    raw.var["chrom"] = np.where(np.arange(raw.n_vars) % 3, "chr1", "chr2")
    raw.obsm["X_extra"] = np.arange(raw.n_obs * 2, dtype=float).reshape(-1, 2)
    raw.uns["batch_colors"] = ["#000000", "#ffffff"]
    got = prepare(raw, n_top_genes=400, min_genes=200)
    ref = _scanpy_reference(raw, n_top_genes=400, min_genes=200)
    pd.testing.assert_frame_equal(got.obs, ref.obs)
    pd.testing.assert_frame_equal(got.var, ref.var)
    assert isinstance(got.obs["donor"].dtype, pd.CategoricalDtype) and "unused" not in got.obs["cell_type"].cat.categories
    np.testing.assert_array_equal(got.obsm["X_extra"], ref.obsm["X_extra"])
    assert list(got.uns["batch_colors"]) == list(ref.uns["batch_colors"])
    assert set(got.uns) == {"batch_colors", "prepare"}


def test_converted_input_types(ifnb_raw):
    """CSC / float64 / csr_array input is converted (a copy) and gives the same result as CSR float32."""
    want = prepare(ifnb_raw, n_top_genes=300)
    for X in (sp.csc_matrix(ifnb_raw.X), ifnb_raw.X.astype(np.float64), sp.csr_array(ifnb_raw.X)):
        raw = ad.AnnData(X=X, obs=ifnb_raw.obs, var=ifnb_raw.var, uns=dict(ifnb_raw.uns))
        _assert_same_prepared(prepare(raw, n_top_genes=300), want)


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


# ---------------------------------------------------------------- marker_expression (markers.h5ad)

# ifnb1k with n_top_genes=300: CD3D, IL7R, CST3 and PPBP are expressed but not selected; LYZ, CD79A are selected
NOT_SELECTED = ["CD3D", "IL7R", "CST3", "PPBP"]
SELECTED = ["LYZ", "CD79A"]


def _column(adata, gene, layer=None):
    m = adata.layers[layer] if layer else adata.X
    col = m[:, adata.var_names.get_loc(gene)]
    return np.asarray(col.todense() if sp.issparse(col) else col, dtype=np.float64).ravel()


def _straightforward(raw, *, target_sum=1e4, normalize_per_batch=False, min_cells=3, min_genes=1):
    """scanpy on a full copy: the filters, normalize_total (per batch: to the batch's median depth, scanpy's
    target_sum=None on each batch's cells) and log1p of every gene."""
    a = raw.copy()
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    sc.pp.filter_cells(a, min_genes=min_genes)
    sc.pp.filter_genes(a, min_cells=min_cells)
    if normalize_per_batch:
        parts = []
        for b in a.obs["batch"].cat.categories:
            part = a[a.obs["batch"] == b].copy()
            sc.pp.normalize_total(part, target_sum=None)
            parts.append(part)
        a = ad.concat(parts, merge="same")[a.obs_names].copy()
    elif target_sum is not None:
        sc.pp.normalize_total(a, target_sum=target_sum)
    sc.pp.log1p(a)
    return a


@pytest.mark.parametrize("params", [
    dict(n_top_genes=300),
    dict(n_top_genes=300, min_genes=300, min_cells=10),  # drops cells and genes
    dict(n_top_genes=300, target_sum=None, normalize_per_batch=True),
])
def test_markers_outside_the_selected_genes_are_normalised_as_prepared(ifnb_raw, params):
    from davae_study.prepare import marker_expression

    raw = ifnb_raw.copy()
    raw.obs["donor"] = np.where(np.arange(raw.n_obs) % 2, "d1", "d2")  # a string column, as readers give
    prepared = prepare(raw, **params)
    assert not set(NOT_SELECTED) & set(prepared.var_names) and set(SELECTED) <= set(prepared.var_names)
    markers = marker_expression(raw, NOT_SELECTED + SELECTED + ["NOT_A_GENE"], **params)

    # same cells, same order, same obs as prepared.h5ad
    assert list(markers.obs_names) == list(prepared.obs_names)
    pd.testing.assert_frame_equal(markers.obs, prepared.obs)
    assert list(markers.var_names) == NOT_SELECTED + SELECTED
    assert markers.uns["markers"]["absent"] == ["NOT_A_GENE"]
    assert sp.isspmatrix_csr(markers.X) and markers.X.dtype == np.float32

    ref = _straightforward(ifnb_raw, **{k: v for k, v in params.items() if k != "n_top_genes"})
    assert list(ref.obs_names) == list(markers.obs_names)
    for gene in NOT_SELECTED + SELECTED:
        got = _column(markers, gene)
        assert (got > 0).sum() > 10, f"{gene} barely expressed: a weak check"
        np.testing.assert_allclose(got, _column(ref, gene), rtol=1e-6, atol=1e-7, err_msg=gene)
        np.testing.assert_array_equal(_column(markers, gene, "counts"),
                                      _column(ifnb_raw[markers.obs_names], gene), err_msg=gene)
    for gene in SELECTED:  # a selected gene: prepared X's column, bit for bit
        np.testing.assert_array_equal(_column(markers, gene), _column(prepared, gene), err_msg=gene)


@pytest.mark.parametrize("block_nnz", [None, 997])
def test_marker_values_do_not_depend_on_blocks_or_input_type(ifnb_raw, block_nnz, monkeypatch):
    from davae_study.prepare import marker_expression

    genes = NOT_SELECTED + SELECTED
    want = marker_expression(ifnb_raw, genes, n_top_genes=300)
    if block_nnz is not None:
        monkeypatch.setattr(prepare_module, "_BLOCK_NNZ", block_nnz)
    for X in (ifnb_raw.X, sp.csc_matrix(ifnb_raw.X), ifnb_raw.X.toarray()):
        raw = ad.AnnData(X=X, obs=ifnb_raw.obs, var=ifnb_raw.var, uns=dict(ifnb_raw.uns))
        got = marker_expression(raw, genes, n_top_genes=300)
        assert sp.issparse(got.X) == sp.issparse(X)  # sparse stays sparse, dense stays dense
        assert list(got.obs_names) == list(want.obs_names) and list(got.var_names) == genes
        for gene in genes:
            np.testing.assert_array_equal(_column(got, gene), _column(want, gene), err_msg=gene)


def test_markers_found_by_symbol_and_case(ifnb_raw):
    """Genes are found as the figures find them: any case, or through var['symbol'] (Ensembl-ID var_names)."""
    from davae_study.prepare import marker_expression

    raw = ad.read_h5ad(shared_file("cellbench_3cl_celseq2_dropseq.h5ad"))  # as stored: var['symbol'] kept
    assert "symbol" in raw.var and not raw.var_names.str.upper().isin(["ACTB", "GAPDH"]).any()
    m = marker_expression(raw, ["actb", "GAPDH", "NOT_A_GENE"])
    assert list(m.var["symbol"].str.upper()) == ["ACTB", "GAPDH"]
    assert m.uns["markers"]["found"] == list(m.var_names) and m.uns["markers"]["absent"] == ["NOT_A_GENE"]
    ref = _straightforward(raw)
    for name in m.var_names:
        np.testing.assert_allclose(_column(m, name), _column(ref, name), rtol=1e-6, atol=1e-7)
    assert marker_expression(ifnb_raw, ["cd3d"]).var_names.tolist() == ["CD3D"]


def test_marker_expression_with_no_gene_found(ifnb_raw):
    from davae_study.prepare import marker_expression

    m = marker_expression(ifnb_raw, ["NOT_A_GENE"])
    assert m.shape == (prepare(ifnb_raw, n_top_genes=200).n_obs, 0)
    assert m.uns["markers"]["absent"] == ["NOT_A_GENE"] and list(m.uns["markers"]["found"]) == []


def test_marker_expression_copies_only_the_marker_columns(ifnb_raw, monkeypatch):
    """Memory: the input is read in place in blocks; no full-gene copy, dense or sparse, is made."""
    import tracemalloc

    from davae_study.prepare import marker_expression

    # four copies of the cells: what the function copies must not grow with the input (blocks stay small)
    raw = ad.concat([ifnb_raw] * 4, index_unique="-", uns_merge="first")
    raw.X = sp.csr_matrix(raw.X, dtype=np.float32)
    X = raw.X
    data, indices, indptr = X.data.copy(), X.indices.copy(), X.indptr.copy()
    input_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    monkeypatch.setattr(prepare_module, "_BLOCK_NNZ", 20_000)
    marker_expression(raw, NOT_SELECTED)  # warm-up: imports and caches are not the function's memory
    tracemalloc.start()
    try:
        m = marker_expression(raw, NOT_SELECTED)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # a copy of the input's values alone would be half of it, a dense copy 20 times it
    assert peak < 0.2 * input_bytes, f"peak {peak / 1e6:.2f} MB for an input of {input_bytes / 1e6:.2f} MB"
    assert raw.X is X and np.array_equal(X.data, data) and np.array_equal(X.indices, indices)
    assert np.array_equal(X.indptr, indptr)
    for a in (m.X.data, m.layers["counts"].data):
        assert not np.shares_memory(a, X.data)
