"""The method registry: contract checks, failure records, PCA reference method."""

import sys
import types

import anndata as ad
import numpy as np
import pytest

from davae_study.methods import check_result, run_method


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
    bad = ad.AnnData(obs=ifnb_prepared.obs.copy())
    bad.obsm["X_emb"] = np.zeros((ifnb_prepared.n_obs, 3))
    bad.layers  # no corrected: fine
    check_result(ifnb_prepared, bad, "x")
    with pytest.raises(ValueError, match="returned no obsm"):
        check_result(ifnb_prepared, ad.AnnData(obs=ifnb_prepared.obs.copy()), "x")
