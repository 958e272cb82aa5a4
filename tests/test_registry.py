"""The method registry: contract checks, failure records, PCA reference method."""

import sys
import types

import anndata as ad
import numpy as np
import pytest

from davae_study.io import read_h5ad
from davae_study.methods import check_result, method_layers, run_method


def _register(name, run):
    mod = types.ModuleType(name)
    mod.run = run
    sys.modules[name] = mod
    return name


def test_pca_contract(ifnb_prepared):
    before = ifnb_prepared.X.copy()
    out = run_method("pca", ifnb_prepared, params={"n_comps": 20, "scale": True}, seed=0, device="cpu")
    assert (ifnb_prepared.X != before).nnz == 0  # methods get X shared, and must not modify it
    assert out.uns["method"]["status"] == "ok"
    assert out.obsm["X_emb"].shape == (ifnb_prepared.n_obs, 20)
    assert list(out.obs_names) == list(ifnb_prepared.obs_names)
    assert out.obs["batch"].equals(ifnb_prepared.obs["batch"])
    assert out.uns["method"]["wall_s"] > 0 and out.uns["method"]["peak_rss_mb"] > 0
    again = run_method("pca", ifnb_prepared, params={"n_comps": 20, "scale": True}, seed=0, device="cpu")
    np.testing.assert_allclose(np.abs(out.obsm["X_emb"]), np.abs(again.obsm["X_emb"]), rtol=1e-4, atol=1e-4)


def test_failing_method_becomes_a_record(ifnb_prepared):
    def run(adata, *, seed=0, device="cpu"):
        raise RuntimeError("out of memory on purpose")

    mod = _register("tests_fake_failing_method", run)
    out = run_method("boom", ifnb_prepared, module=mod)
    assert out.uns["method"]["status"] == "failed"
    assert "out of memory on purpose" in out.uns["method"]["error"]
    assert "X_emb" not in out.obsm and out.n_obs == ifnb_prepared.n_obs
    with pytest.raises(RuntimeError, match="on purpose"):
        run_method("boom", ifnb_prepared, module=mod, on_error="raise")


def test_method_notes_go_to_the_record_not_to_the_outputs(tmp_path, ifnb_prepared):
    from davae_study.metrics._table import method_notes

    def noted(adata, *, seed=0, device="cpu"):
        out = ad.AnnData(obs=adata.obs.copy())
        out.obsm["X_emb"] = np.zeros((adata.n_obs, 2))
        out.uns["method_notes"] = ["batches left apart"]
        out.uns["extra"] = {"k": 1}
        return out

    out = run_method("noted", ifnb_prepared, module=_register("tests_fake_noted", noted))
    assert out.uns["method"]["notes"] == ["batches left apart"]
    assert "method_notes" not in out.uns["method_outputs"] and out.uns["method_outputs"]["extra"] == {"k": 1}
    out.write_h5ad(tmp_path / "noted.h5ad")
    assert method_notes(read_h5ad(tmp_path / "noted.h5ad")) == ["batches left apart"]

    def one(adata, *, seed=0, device="cpu"):
        out = noted(adata)
        out.uns["method_notes"] = "a single note"
        return out

    assert run_method("one", ifnb_prepared, module=_register("tests_fake_one", one)).uns["method"]["notes"] == [
        "a single note"]
    plain = run_method("pca", ifnb_prepared, params={"n_comps": 5})
    assert "notes" not in plain.uns["method"] and method_notes(plain) == []


def test_contract_violations_are_failures(ifnb_prepared):
    def reorders(adata, *, seed=0, device="cpu"):
        out = adata[::-1].copy()
        out.obsm["X_emb"] = np.zeros((adata.n_obs, 2))
        return out

    out = run_method("rev", ifnb_prepared, module=_register("tests_fake_reorder", reorders))
    assert out.uns["method"]["status"] == "failed" and "order" in out.uns["method"]["error"]

    def nan_emb(adata, *, seed=0, device="cpu"):
        out = ad.AnnData(obs=adata.obs.copy())
        out.obsm["X_emb"] = np.full((adata.n_obs, 2), np.nan)
        return out

    out = run_method("nan", ifnb_prepared, module=_register("tests_fake_nan", nan_emb))
    assert "NaN" in out.uns["method"]["error"]


def test_unknown_module_and_params_are_recorded(ifnb_prepared):
    out = run_method("nope", ifnb_prepared, module="davae_study.methods.does_not_exist")
    assert out.uns["method"]["status"] == "failed" and "cannot import" in out.uns["method"]["error"]
    out = run_method("pca", ifnb_prepared, params={"not_a_param": 1})
    assert out.uns["method"]["status"] == "failed" and "not_a_param" in out.uns["method"]["error"]


def test_check_result_shape_of_corrected(ifnb_prepared):
    ok = ad.AnnData(obs=ifnb_prepared.obs.copy())
    ok.obsm["X_emb"] = np.zeros((ifnb_prepared.n_obs, 3))
    check_result(ifnb_prepared, ok, "x")  # no corrected layer: fine
    # a corrected layer of the prepared shape (cells x genes) is accepted ...
    full = ad.AnnData(X=np.zeros(ifnb_prepared.shape, dtype=np.float32), obs=ifnb_prepared.obs.copy())
    full.obsm["X_emb"] = ok.obsm["X_emb"]
    full.layers["corrected"] = np.ones(ifnb_prepared.shape, dtype=np.float32)
    check_result(ifnb_prepared, full, "x")
    # ... one over fewer genes is a contract violation, and run_method records it as a failure
    n_genes = ifnb_prepared.n_vars - 1
    fewer = ad.AnnData(X=np.zeros((ifnb_prepared.n_obs, n_genes), dtype=np.float32), obs=ifnb_prepared.obs.copy())
    fewer.obsm["X_emb"] = ok.obsm["X_emb"]
    fewer.layers["corrected"] = np.ones(fewer.shape, dtype=np.float32)
    with pytest.raises(ValueError, match=rf"layers\['corrected'\] has shape \({ifnb_prepared.n_obs}, {n_genes}\)"):
        check_result(ifnb_prepared, fewer, "x")
    out = run_method("short", ifnb_prepared, module=_register("tests_fake_short_corrected", lambda adata, *, seed=0,
                                                              device="cpu": fewer))
    assert out.uns["method"]["status"] == "failed" and "layers['corrected']" in out.uns["method"]["error"]
    with pytest.raises(ValueError, match="returned no obsm"):
        check_result(ifnb_prepared, ad.AnnData(obs=ifnb_prepared.obs.copy()), "x")


def test_methods_get_only_the_layers_they_declare(tmp_path, ifnb_prepared):
    """A method module names the prepared layers it reads in LAYERS; integrate loads only those."""
    from davae_study import pipeline

    path = tmp_path / "prepared.h5ad"
    ifnb_prepared.write_h5ad(path)
    seen = {}

    def run(adata, *, seed=0, device="cpu"):
        seen["layers"] = sorted(adata.layers)
        out = ad.AnnData(obs=adata.obs.copy())
        out.obsm["X_emb"] = np.zeros((adata.n_obs, 2), dtype=np.float32)
        return out

    plain = _register("tests_fake_plain", run)
    counted = _register("tests_fake_counts", run)
    sys.modules[counted].LAYERS = ("counts",)
    assert method_layers("pca") == () and method_layers("x", plain) == ()
    assert method_layers("x", counted) == ("counts",)
    assert method_layers("x", "davae_study.methods.does_not_exist") == ()  # failure recorded by run_method
    pipeline.integrate(str(path), str(tmp_path / "a.h5ad"), method="a", module=plain, params={})
    assert seen["layers"] == []
    pipeline.integrate(str(path), str(tmp_path / "b.h5ad"), method="b", module=counted, params={})
    assert seen["layers"] == ["counts"]
    # the partial read holds the same matrix and annotations as a full read
    full, part = ad.read_h5ad(path), read_h5ad(path, layers=())
    assert (full.X != part.X).nnz == 0 and full.obs.equals(part.obs) and full.var.equals(part.var)
    assert not part.layers and (read_h5ad(path, layers=("counts",)).layers["counts"] != full.layers["counts"]).nnz == 0
    with pytest.raises(ValueError, match="has no layers"):
        read_h5ad(path, layers=("spliced",))
