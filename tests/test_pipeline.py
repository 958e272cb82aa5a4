"""Step functions over files (what the rule scripts call), without Snakemake."""

import anndata as ad
import h5py
import pandas as pd
import pytest

from davae_study import pipeline

from conftest import IFNB


def test_prepare_application_writes_h5ad_obs_and_provenance(tmp_path):
    out = tmp_path / "app"
    prepared = pipeline.prepare_application({"counts": str(IFNB)}, {"reader": "h5ad"}, {"n_top_genes": 300},
                                            out / "prepared.h5ad", out / "obs.tsv", out / "provenance.tsv")
    back = ad.read_h5ad(out / "prepared.h5ad")
    assert back.shape == prepared.shape == (832, 300)
    with h5py.File(out / "prepared.h5ad") as fh:  # provenance must not turn paths into HDF5 groups
        assert set(fh) <= {"X", "layers", "obs", "obsm", "obsp", "uns", "var", "varm", "varp", "raw"}
    assert back.uns["prepare"]["provenance"]["sha256"]["counts"] == pipeline.sha256(IFNB)
    obs = pd.read_csv(out / "obs.tsv", sep="\t")
    assert list(obs["cell"]) == list(back.obs_names) and {"batch", "cell_type"} <= set(obs.columns)
    prov = pd.read_csv(out / "provenance.tsv", sep="\t")
    assert prov.loc[0, "sha256"] == pipeline.sha256(IFNB) and prov.loc[0, "cells"] == 832


def test_integrate_umap_evaluate_chain(tmp_path, ifnb_prepared):
    from davae_study.io import write_h5ad

    write_h5ad(ifnb_prepared, tmp_path / "prepared.h5ad")
    res = pipeline.integrate(str(tmp_path / "prepared.h5ad"), str(tmp_path / "pca.h5ad"), method="pca",
                             module=None, params={"n_comps": 10}, seed=0, device="cpu")
    assert res.uns["method"]["status"] == "ok"
    um = pipeline.umap(str(tmp_path / "pca.h5ad"), str(tmp_path / "pca.umap.tsv"))
    assert list(um.columns) == ["cell", "umap1", "umap2"] and len(um) == ifnb_prepared.n_obs
    tidy = pipeline.evaluate(str(tmp_path / "pca.h5ad"), str(tmp_path / "m.tsv"), str(tmp_path / "r.tsv"),
                             application="ifnb", method="pca",
                             params={"enabled": ["ari"], "ari": {"n_iter": 3}})
    assert list(tidy.columns) == pipeline.TIDY_COLUMNS
    assert set(tidy["metric"]) >= {"ari_celltype", "one_minus_ari_batch"}


def test_failed_method_umap_is_header_only(tmp_path, ifnb_prepared):
    from davae_study.io import write_h5ad

    write_h5ad(ifnb_prepared, tmp_path / "prepared.h5ad")
    pipeline.integrate(str(tmp_path / "prepared.h5ad"), str(tmp_path / "x.h5ad"), method="x",
                       module="davae_study.methods.not_there", params={})
    um = pipeline.umap(str(tmp_path / "x.h5ad"), str(tmp_path / "x.tsv"))
    assert um.empty and (tmp_path / "x.tsv").read_text().strip() == "cell\tumap1\tumap2"


def test_marker_expression_writes_markers_aligned_with_prepared(tmp_path):
    """markers.h5ad: the marker genes of every input gene (also those prepare did not select), for the
    cells of prepared.h5ad in its order; genes not in the input are recorded as absent."""
    out = tmp_path / "app"
    spec = {"reader": "h5ad", "files": {"counts": str(IFNB)}}
    params = {"n_top_genes": 300}
    pipeline.prepare_application({"counts": str(IFNB)}, spec, params, out / "prepared.h5ad", out / "obs.tsv")
    genes = ["CD3D", "LYZ", "NOT_A_GENE"]
    # the rule's inputs: the application's files and obs.tsv
    pipeline.marker_expression({"counts": str(IFNB), "obs": str(out / "obs.tsv")}, spec, params, out / "obs.tsv",
                               out / "markers.h5ad", genes=genes)
    prepared, markers = ad.read_h5ad(out / "prepared.h5ad"), ad.read_h5ad(out / "markers.h5ad")
    assert "CD3D" not in prepared.var_names and "LYZ" in prepared.var_names
    assert list(markers.obs_names) == list(prepared.obs_names)
    assert list(markers.var_names) == ["CD3D", "LYZ"] and list(markers.uns["markers"]["absent"]) == ["NOT_A_GENE"]
    lyz = prepared.var_names.get_loc("LYZ")
    assert (markers[:, "LYZ"].X != prepared[:, lyz].X).nnz == 0
    assert markers[:, "CD3D"].X.nnz > 50
    assert sorted(p.name for p in out.iterdir()) == ["markers.h5ad", "obs.tsv", "prepared.h5ad"]  # no temp files

    # obs.tsv of other prepare settings (fewer cells): refused, and nothing written
    pipeline.prepare_application({"counts": str(IFNB)}, spec, {"n_top_genes": 300, "min_genes": 600},
                                 tmp_path / "other.h5ad", tmp_path / "other_obs.tsv")
    with pytest.raises(ValueError, match="rerun prepare"):
        pipeline.marker_expression({"counts": str(IFNB)}, spec, params, tmp_path / "other_obs.tsv",
                                   tmp_path / "markers.h5ad", genes=genes)
    assert not list(tmp_path.glob("*markers.h5ad*"))
