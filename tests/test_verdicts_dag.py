"""Rule verdicts in the DAG (Snakemake dry runs, nothing computed): `all` of the demo config writes
results/verdicts.tsv from the analog applications' tables (both DAVAE presets), and the paper config's rule
also reads the scaling benchmark (Fig 6f)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from conftest import REPO
from test_plotting_dag import dry_run_jobs, snakemake


@pytest.fixture
def demo_workdir(tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "data").symlink_to(REPO / "data")
    shutil.copytree(REPO / "config", wd / "config")
    shutil.copy(REPO / "config" / "demo.yaml", wd / "demo.yaml")
    return wd


def verdicts_job(text: str) -> dict:
    jobs = [j for j in dry_run_jobs(text) if j["rule"] == "verdicts"]
    assert len(jobs) == 1, [j["rule"] for j in dry_run_jobs(text)]
    return jobs[0]


def test_demo_all_writes_verdicts_from_the_analogs(demo_workdir):
    job = verdicts_job(snakemake(demo_workdir, "-n", "--forceall", "all"))
    assert job["output"] == ["results/verdicts.tsv"]
    inputs = set(job["input"])
    assert "config/claims.yaml" in inputs  # editing a claim reruns the verdicts
    # the analogs of Figs 2, 3 and 5, with both presets' per-repeat tables (Wilcoxon) and the spots' clusters
    for app in ("samples", "compositions", "spots"):
        assert f"results/{app}/metrics.tsv" in inputs
        for method in ("davae", "davae_released"):
            assert f"results/{app}/metrics/{method}.repeats.tsv" in inputs
    assert "results/spots/spatial/davae_released.clusters.tsv" in inputs
    # not an analog of a paper application, and no scaling benchmark in the demo
    assert not any("transfer_celltech" in f or "scaling" in f for f in inputs), inputs


def test_no_verdicts_section_no_rule(demo_workdir):
    cfg = yaml.safe_load((demo_workdir / "demo.yaml").read_text())
    cfg.pop("verdicts")
    (demo_workdir / "demo.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    jobs = dry_run_jobs(snakemake(demo_workdir, "-n", "--forceall", "all"))
    assert jobs and not any(j["rule"] == "verdicts" for j in jobs)


def test_paper_config_verdicts_read_the_scaling_benchmark(demo_workdir):
    shutil.copy(REPO / "config" / "config.yaml", demo_workdir / "demo.yaml")  # the fixture's --configfile name
    job = verdicts_job(snakemake(demo_workdir, "-n", "--forceall", "results/verdicts.tsv"))
    inputs = set(job["input"])
    assert {"results/scaling/benchmark.tsv", "results/scaling/growth.tsv"} <= inputs
    assert "results/spatial/spatial/pca.clusters.tsv" in inputs  # Fig 5's Moran's I
    assert not any(f.startswith("results/hca/spatial/") for f in inputs)  # no spatial claim on hca
