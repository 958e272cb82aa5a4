"""The `figures` target re-renders figures from cached results only: checked with Snakemake's dry run.

On a working directory where every upstream output of the demo study exists and is up to date (created as
empty files, then put in DAG order by `snakemake --touch`), `snakemake -n figures` must schedule figure
rules only — no prepare, integrate, umap or evaluate job — and no figure rule may read
`integrated/*.h5ad`. Nothing is computed: the test takes a few seconds of Snakemake DAG building.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IFNB  # the committed demo copy (data/demo): never skipped

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
CONFIG = REPO / "config" / "demo.yaml"


def snakemake(workdir: Path, *args: str) -> str:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe) if exe.exists() else shutil.which("snakemake") or "snakemake", "-s", str(SNAKEFILE), "-d",
           str(workdir), "--configfile", str(workdir / "demo.yaml"), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def dry_run_jobs(text: str) -> list[dict]:
    """Jobs of a dry run: rule name, input and output files (Snakemake's `rule X:` blocks)."""
    jobs, cur = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):$", line.strip())
        if m:
            cur = {"rule": m.group(1), "input": [], "output": []}
            jobs.append(cur)
            continue
        m = re.match(r"^\s+(input|output): (.*)$", line)
        if cur is not None and m:
            cur[m.group(1)] = [f.strip() for f in m.group(2).split(", ") if f.strip()]
    return jobs


@pytest.fixture
def workdir(tmp_path):
    # Snakefile, config/demo.yaml and snakemake (envs/requirements.lock) are part of the project: a missing
    # one fails here (it used to skip, which CI would never have noticed)
    assert SNAKEFILE.exists() and CONFIG.exists()
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "data").symlink_to(REPO / "data")  # the demo config's inputs, relative to the working directory
    shutil.copytree(REPO / "config", wd / "config")  # rules read config/*.yaml relative to the working directory
    # the demo's Fig 2/3 applications: the cached tables these tests fake are those of the core DAG
    import yaml

    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["applications"] = {k: v for k, v in cfg["applications"].items() if k in ("samples", "compositions")}
    cfg.pop("transfer", None)
    (wd / "demo.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return wd


def test_figures_target_touches_no_integration_output(workdir):
    jobs = dry_run_jobs(snakemake(workdir, "-n", "--forceall", "figures"))
    figure_jobs = [j for j in jobs if j["rule"].startswith("figure")]
    upstream = [j for j in jobs if not j["rule"].startswith("figure")]
    assert figure_jobs and any(j["rule"] == "integrate" for j in upstream), "unexpected DAG: no figure/integrate jobs"

    # static: no figure rule reads an integration output
    for j in figure_jobs:
        bad = [f for f in j["input"] if "/integrated/" in f]
        assert not bad, f"rule {j['rule']} reads integration outputs {bad}; read umap/metrics tables instead"

    # every upstream output present and up to date (DAG order via --touch)
    for j in upstream:
        for f in j["output"]:
            p = workdir / f
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    snakemake(workdir, "--touch", "--forceall", "--cores", "1", "figures")

    planned = dry_run_jobs(snakemake(workdir, "-n", "figures"))
    rules = {j["rule"] for j in planned}
    assert rules, "the dry run planned nothing although no figure exists"
    assert all(r.startswith("figure") for r in rules), f"figures would recompute {sorted(rules)}"
    assert {j["rule"] for j in figure_jobs} <= rules

    # control: the check has teeth — a missing cached table is recomputed (only it: umap, not integrate)
    cached = next(f for j in upstream if j["rule"] == "umap" for f in j["output"])
    (workdir / cached).unlink()
    rules_after = {j["rule"] for j in dry_run_jobs(snakemake(workdir, "-n", "figures"))}
    assert "umap" in rules_after and "integrate" not in rules_after, rules_after



def _method_tables(pca, obs, methods: list[str]) -> dict[str, tuple]:
    """Per method: a real 2-D embedding and the tidy + repeats tables ``davae_study.metrics.evaluate`` gives
    for it (a different PCA plane per method; small kBET/ARI settings to stay fast)."""
    import anndata as ad

    from davae_study.metrics import evaluate

    out = {}
    for i, m in enumerate(methods):
        x = pca[:, i: i + 3]
        tidy, rep = evaluate(ad.AnnData(obs=obs[["batch", "cell_type"]].copy(), obsm={"X_emb": x}),
                             application="_", method=m,
                             params={"enabled": ["ari", "kbet"], "kbet": {"n_repeat": 3}, "ari": {"n_iter": 2}})
        out[m] = (x, tidy, rep)
    return out


def _cached_tables(per_method: dict, obs, app: str, methods: list[str]) -> dict[str, object]:
    """Results tables of one application (contract formats), keyed by path under results/. The same real
    tables serve every application (the figures only need the formats; the values are real)."""
    import pandas as pd

    out: dict[str, object] = {f"results/{app}/obs.tsv": obs.rename_axis("cell").reset_index()}
    tidy_all = []
    for m in methods:
        x, tidy, rep = per_method[m]
        out[f"results/{app}/umap/{m}.tsv"] = pd.DataFrame({"cell": obs.index, "umap1": x[:, 0], "umap2": x[:, 1]})
        tidy, rep = tidy.assign(application=app), rep.assign(application=app)
        out[f"results/{app}/metrics/{m}.tsv"] = tidy
        out[f"results/{app}/metrics/{m}.repeats.tsv"] = rep
        tidy_all.append(tidy)
    out[f"results/{app}/metrics.tsv"] = pd.concat(tidy_all, ignore_index=True)
    return out


@pytest.mark.slow
def test_figures_target_renders_from_cached_tables_and_builds_the_report(workdir):
    """`snakemake figures` on real cached tables (integration outputs are empty placeholders that must stay
    untouched), then `snakemake --report` builds the HTML report with every figure and its caption."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    from davae_study.io import write_tsv
    from davae_study.metrics import summarise

    a = ad.read_h5ad(IFNB)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=12, random_state=0)

    jobs = dry_run_jobs(snakemake(workdir, "-n", "--forceall", "figures"))
    upstream = [j for j in jobs if not j["rule"].startswith("figure")]
    umap_outputs = [f for j in upstream if j["rule"] == "umap" for f in j["output"]]
    apps = sorted({f.split("/")[1] for f in umap_outputs})
    obs = a.obs[["batch", "cell_type"]]
    per_method = _method_tables(a.obsm["X_pca"], obs, sorted({Path(f).stem for f in umap_outputs}))
    tables: dict[str, object] = {}
    for app in apps:
        methods = sorted({Path(f).stem for f in umap_outputs if f.startswith(f"results/{app}/")})
        tables.update(_cached_tables(per_method, obs, app, methods))
    metrics = [t for p, t in tables.items() if p.endswith("/metrics.tsv") and p.count("/") == 2]
    tables["results/summary.tsv"] = summarise(pd.concat(metrics, ignore_index=True))
    integration = []
    for j in upstream:
        for f in j["output"]:
            p = workdir / f
            p.parent.mkdir(parents=True, exist_ok=True)
            if f in tables:
                write_tsv(tables[f], p)
            else:
                p.touch()  # prepared/integrated h5ad and the like: placeholders no figure may read
                if "/integrated/" in f:
                    integration.append(p)
    assert integration, "the demo DAG has no integration outputs?"
    snakemake(workdir, "--touch", "--forceall", "--cores", "1", "figures")
    before = {p: p.stat().st_mtime_ns for p in integration}

    log = snakemake(workdir, "--cores", "2", "figures")
    figure_outputs = [f for j in jobs if j["rule"].startswith("figure") for f in j["output"]]
    assert figure_outputs
    for f in figure_outputs:
        assert (workdir / f).stat().st_size > 1_000, f"{f} not written:\n{log[-2000:]}"
    assert {p: p.stat().st_mtime_ns for p in integration} == before and all(p.stat().st_size == 0 for p in integration)
    ran = {j["rule"] for j in dry_run_jobs(log)}
    assert all(r.startswith("figure") for r in ran), ran

    # the verdicts from the same cached tables (the report lists results/verdicts.tsv): only that job runs
    log = snakemake(workdir, "--cores", "1", "results/verdicts.tsv")
    assert {j["rule"] for j in dry_run_jobs(log)} == {"verdicts"}
    assert {p: p.stat().st_mtime_ns for p in integration} == before

    snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text(errors="replace")
    assert len(html) > 10_000
    for name in ("umap_grid.png", "ari.png", "kbet.png", "summary.png", "verdicts.tsv"):
        assert name in html, f"{name} missing from the report"
    assert "ARI cell type against 1" in html  # a caption rendered
    assert "IFN-" in html  # with the application title from the config (Jinja in the caption)


def test_marker_figures_read_markers_h5ad_and_a_marker_edit_reruns_no_integration(workdir):
    """Fig 6 marker figures (as the paper's HCA application draws them) and the Fig 4c gene-activity figure
    read `markers.h5ad`, written by rule marker_expression from the application's input files and prepare's
    `obs.tsv`. Its gene list is a param of that rule only: editing a figure's markers (or genes) re-runs
    marker_expression and the figures, never prepare or an integration."""
    import yaml

    cfg_path = workdir / "demo.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    app = cfg["applications"]["samples"]
    app["figures"] = ["umap_grid", "umap_clusters", "marker_umaps", "marker_violins", "marker_dotplot",
                      "gene_activity"]
    app["transfer"] = {"spatial": {"n_clusters": 4}}  # clusters of the joint embedding, as for HCA
    cfg["applications"] = {"samples": app}
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True))

    jobs = dry_run_jobs(snakemake(workdir, "-n", "--forceall", "figures"))
    by_rule = {}
    for j in jobs:
        by_rule.setdefault(j["rule"], []).append(j)
    for rule in ("figure_marker_umaps", "figure_marker_violins", "figure_marker_dotplot", "figure_gene_activity"):
        (job,) = by_rule[rule]
        assert "results/samples/markers.h5ad" in job["input"], job
        assert not any(f.endswith("prepared.h5ad") for f in job["input"]), job
    (mx,) = by_rule["marker_expression"]
    assert mx["output"] == ["results/samples/markers.h5ad"]
    assert set(mx["input"]) == {app["input"]["files"]["counts"], "results/samples/obs.tsv"}

    # every output present and up to date; then the markers of one figure change
    for j in jobs:
        for f in j["output"]:
            p = workdir / f
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    snakemake(workdir, "--touch", "--forceall", "--cores", "1", "figures")
    assert not dry_run_jobs(snakemake(workdir, "-n", "figures"))
    app["figure_params"] = {"marker_dotplot": {"markers": ["CD3D", "LYZ", "PTPRC"]}}  # PTPRC: a new gene
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    planned = {j["rule"] for j in dry_run_jobs(snakemake(workdir, "-n", "figures"))}
    assert "marker_expression" in planned and "figure_marker_dotplot" in planned, planned
    assert not planned & {"prepare", "integrate", "umap", "evaluate", "spatial_clusters"}, planned

    # the same for the gene-activity figure's genes
    snakemake(workdir, "--touch", "--cores", "1", "figures")
    assert not dry_run_jobs(snakemake(workdir, "-n", "figures"))
    app["figure_params"]["gene_activity"] = {"genes": ["LYN", "PTPRC"]}
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    planned = {j["rule"] for j in dry_run_jobs(snakemake(workdir, "-n", "figures"))}
    assert "marker_expression" in planned and "figure_gene_activity" in planned, planned
    assert not planned & {"prepare", "integrate", "umap", "evaluate", "spatial_clusters"}, planned
