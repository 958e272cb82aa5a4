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

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
CONFIG = REPO / "config" / "demo.yaml"


def snakemake(workdir: Path, *args: str) -> str:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe) if exe.exists() else shutil.which("snakemake") or "snakemake", "-s", str(SNAKEFILE), "-d",
           str(workdir), "--configfile", str(CONFIG), *args]
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
    if not SNAKEFILE.exists() or not CONFIG.exists():
        pytest.skip("Snakefile or config/demo.yaml not present")
    if shutil.which("snakemake") is None and not Path(sys.executable).with_name("snakemake").exists():
        pytest.skip("snakemake not installed")
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "data").symlink_to(REPO / "data")  # the demo config's inputs, relative to the working directory
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
