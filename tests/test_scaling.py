"""Runtime-scaling benchmark (Fig 6f): cell sampling, noise, tables, growth exponents, and the Snakemake rules
on a small real data set."""

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from davae_study.prepare import prepare
from davae_study.scaling import (
    benchmark_table,
    check_scaling_config,
    downsample,
    growth_table,
    make_size,
    method_note,
    resample_with_noise,
)

REPO = Path(__file__).resolve().parents[1]
IFNB = REPO / "data" / "demo" / "seuratTools_ifnb1k.h5ad"  # committed (data/demo): never skipped


@pytest.fixture(scope="module")
def prepared():
    return prepare(ad.read_h5ad(IFNB), n_top_genes=500)


def test_downsample_uniform_seeded_without_replacement(prepared):
    a = downsample(prepared, 300, seed=3)
    b = downsample(prepared, 300, seed=3)
    c = downsample(prepared, 300, seed=4)
    assert a.n_obs == 300 and a.obs_names.is_unique
    assert list(a.obs_names) == list(b.obs_names) and list(a.obs_names) != list(c.obs_names)
    pos = prepared.obs_names.get_indexer(a.obs_names)
    assert np.all(pos >= 0) and np.all(np.diff(pos) > 0)  # a subset, in the source order
    assert sp.isspmatrix_csr(a.X) and sp.issparse(a.layers["counts"])
    np.testing.assert_array_equal(a.X.toarray(), prepared.X[pos].toarray())
    assert a.obs["batch"].tolist() == prepared.obs["batch"].iloc[pos].tolist()
    with pytest.raises(ValueError, match="mode: resample"):
        downsample(prepared, prepared.n_obs + 1)


def test_resample_with_noise_grows_sparse_counts(prepared):
    n = 3 * prepared.n_obs
    out = resample_with_noise(prepared, n, seed=1)
    again = resample_with_noise(prepared, n, seed=1)
    assert out.shape == (n, prepared.n_vars) and out.obs_names.is_unique
    assert sp.isspmatrix_csr(out.X) and sp.isspmatrix_csr(out.layers["counts"])
    assert (out.X != again.X).nnz == 0  # seeded
    counts = out.layers["counts"]
    assert np.all(counts.data == np.round(counts.data)) and counts.data.min() > 0  # counts, no stored zeros
    # every drawn cell keeps its source's obs and can only lose genes (noise never adds a zero-count gene)
    src = prepared.obs_names.get_indexer(out.obs_names.str.rsplit("-", n=1).str[0])
    assert np.all(src >= 0)
    assert out.obs["cell_type"].tolist() == prepared.obs["cell_type"].iloc[src].tolist()
    src_counts = prepared.layers["counts"][src]
    assert (counts.astype(bool) > src_counts.astype(bool)).nnz == 0
    # noise changes values but keeps the depth on average (Poisson with a mean-one-ish depth factor)
    assert (counts != src_counts).nnz > 0
    ratio = counts.sum() / src_counts.sum()
    assert 0.9 < ratio < 1.15
    # X is log1p of the counts normalised to prepare's target sum
    target = prepared.uns["prepare"]["target_sum"]
    row = 5
    c = counts[row].toarray().ravel()
    np.testing.assert_allclose(out.X[row].toarray().ravel(), np.log1p(c * target / c.sum()), rtol=1e-5)


def test_resample_dense_and_errors(prepared):
    dense = prepared.copy()
    dense.layers["counts"] = dense.layers["counts"].toarray()
    out = resample_with_noise(dense, 50, seed=0, depth_sd=0.0, target_sum="none")
    assert isinstance(out.X, np.ndarray) and out.X.dtype == np.float32
    np.testing.assert_allclose(out.X, np.log1p(out.layers["counts"]), rtol=1e-6)
    no_counts = ad.AnnData(prepared.X.copy(), obs=prepared.obs.copy())
    with pytest.raises(ValueError, match="counts"):
        resample_with_noise(no_counts, 10)
    with pytest.raises(ValueError, match="mode"):
        make_size(prepared, 10, mode="bootstrap")


def test_growth_table_recovers_power_law():
    n = np.array([1e4, 2e4, 5e4, 1e5])
    rows = []
    for rep in range(2):
        for k in n:
            rows.append({"method": "a", "n_cells": int(k), "repeat": rep, "s": 3e-4 * k**1.5, "max_rss": 200 + 0 * k})
            rows.append({"method": "b", "n_cells": int(k), "repeat": rep, "s": 0.01 * k, "max_rss": 0.05 * k})
    g = growth_table(pd.DataFrame(rows)).set_index(["method", "quantity"])
    assert g.loc[("a", "s"), "exponent"] == pytest.approx(1.5)
    assert g.loc[("a", "s"), "prefactor"] == pytest.approx(3e-4)
    assert g.loc[("a", "max_rss"), "exponent"] == pytest.approx(0.0, abs=1e-9)
    assert g.loc[("b", "max_rss"), "exponent"] == pytest.approx(1.0)
    assert g.loc[("b", "s"), "n_sizes"] == 4 and g.loc[("b", "s"), "max_cells"] == 100000
    one = growth_table(pd.DataFrame(rows[:2]))
    assert one["exponent"].isna().all()


def test_benchmark_table(tmp_path):
    cols = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    paths = []
    for k, s in enumerate((1.5, 4.0)):
        p = tmp_path / f"b{k}.tsv"
        p.write_text(cols + f"{s}\t0:00:01\t100.0\t-\t-\t-\t-\t-\t50\t1.0\n" + f"{s + 1}\t0:00:02\t110\t-\t-\t-\t-\t-\t50\t1.0\n")
        paths.append(p)
    t = benchmark_table(zip(["pca", "pca"], [1000, 2000], paths), [{"wall_s": 1.0, "device": "cpu"}] * 2)
    assert t.shape[0] == 4 and t["repeat"].tolist() == [0, 1, 0, 1]
    assert t["n_cells"].tolist() == [1000, 1000, 2000, 2000] and np.isnan(t["max_vms"]).all()
    assert t["method_device"].eq("cpu").all()
    capped = benchmark_table(zip(["desc"], [1000], paths[:1]), [{"wall_s": 1.0, "note": "desc: stopped"}])
    assert capped["method_note"].eq("desc: stopped").all()
    bad = tmp_path / "bad.tsv"
    bad.write_text("x\n1\n")
    with pytest.raises(ValueError, match="benchmark"):
        benchmark_table([("pca", 10, bad)])


def test_check_scaling_config():
    methods, apps = {"pca": {}, "davae": {}}, {"samples": {}}
    check_scaling_config({}, methods, apps)
    ok = {"source": "samples", "sizes": [100, 200], "methods": ["pca"]}
    check_scaling_config(ok, methods, apps)
    for bad, msg in [({**ok, "sizes": [100, 100]}, "sizes"), ({**ok, "methods": ["harmony"]}, "methods"),
                     ({**ok, "source": "nope"}, "source"), ({**ok, "mode": "x"}, "mode"),
                     ({**ok, "repeats": 0}, "repeats"), ({**ok, "params": {"DESC": {"max_rounds": 5}}}, "params")]:
        with pytest.raises(ValueError, match=msg):
            check_scaling_config(bad, methods, apps)


def test_method_note_collects_the_methods_own_notes():
    result = ad.AnnData(np.zeros((2, 1), dtype=np.float32))
    assert method_note(result) == ""
    result.uns["method_outputs"] = {"desc": {"note": "desc: clustering stopped at max_rounds=20", "n_rounds": 20},
                                    "other": {"note": ""}, "plain": 3}
    assert method_note(result) == "desc: clustering stopped at max_rounds=20"


def test_shipped_scaling_configs_cap_desc():
    import yaml

    for name in ("config.yaml", "scaling_offline.yaml"):
        scaling = yaml.safe_load((REPO / "config" / name).read_text())["scaling"]
        assert "desc" in scaling["methods"]
        assert 1 <= int(scaling["params"]["desc"]["max_rounds"]) < 1000, name  # below the original's 1000


SCALING_CONFIG = """
seed: 0
device: auto
applications:
  ifnb:
    input: {reader: h5ad, files: {counts: data/ifnb1k.h5ad}}
    prepare: {n_top_genes: 300}
    methods: [pca]
methods:
  pca: {module: davae_study.methods.pca, params: {n_comps: 10}, threads: 1}
scaling:
  source: ifnb
  mode: resample
  sizes: [400, 1600]
  methods: [pca]
  repeats: 2
  seed: 1
"""


def scaling_workdir(tmp_path: Path) -> Path:
    """A working copy of the workflow that includes rules/scaling.smk (the repository's Snakefile when it
    already does)."""
    work = tmp_path / "wf"
    work.mkdir()
    for name in ("workflow", "envs", "config"):
        (work / name).symlink_to(REPO / name)
    (work / "data").mkdir()
    (work / "data" / "ifnb1k.h5ad").symlink_to(IFNB)  # relative: see the report on absolute-path uns keys
    snakefile = (REPO / "Snakefile").read_text()
    if "scaling.smk" not in snakefile:
        snakefile = snakefile.replace('include: "workflow/rules/core.smk"\n',
                                      'include: "workflow/rules/core.smk"\ninclude: "workflow/rules/scaling.smk"\n')
    assert "scaling.smk" in snakefile
    (work / "Snakefile").write_text(snakefile)
    (work / "scaling.yaml").write_text(SCALING_CONFIG)
    return work


@pytest.mark.slow
def test_scaling_rules_end_to_end(tmp_path):
    work = scaling_workdir(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "snakemake", "scaling", "--cores", "2", "--configfile", "scaling.yaml",
           "--directory", str(work), "--snakefile", str(work / "Snakefile")]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(work / "results/scaling/benchmark.tsv", sep="\t")
    assert sorted(table["n_cells"].unique()) == [400, 1600]
    assert table.groupby("n_cells").size().tolist() == [2, 2]  # repeats: 2
    assert table["method"].eq("pca").all() and (table["s"] > 0).all()
    assert table["method_status"].eq("ok").all() and table["method_device"].eq("cpu").all()
    growth = pd.read_csv(work / "results/scaling/growth.tsv", sep="\t")
    assert set(growth["quantity"]) >= {"s", "max_rss"} and growth["n_sizes"].eq(2).all()
    big = ad.read_h5ad(work / "results/scaling/1600/integrated/pca.h5ad")
    assert big.n_obs == 1600 and big.obsm["X_emb"].shape == (1600, 10) and "corrected" not in big.layers
    assert big.uns["method"]["n_cells"] == 1600
    small = ad.read_h5ad(work / "results/scaling/400/prepared.h5ad")
    assert small.uns["scaling"]["mode"] == "resample" and sp.isspmatrix_csr(small.X)
    assert (work / "results/scaling/runtime.png").stat().st_size > 0
