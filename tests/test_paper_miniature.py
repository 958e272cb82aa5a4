"""The paper's config (config/config.yaml) end to end on a miniature of its inputs served through data.mirror.

A seeded miniature of every file of config/data_sources.yaml (davae_study.data.miniature) is served by a
loopback web server; `snakemake all` runs the paper config with only what must change for minutes on two
cores overridden (mirror, the miniature's data table, the lock file, scaling sizes, training lengths: QUICK,
scVI's included, kBET repeats and ARI iterations, and one thread for the rules that ask for more, so that two
jobs share the two cores: SINGLE_THREADED). These are cost knobs only: every rule of the five applications
still runs. The download rules fetch and verify every file (pinned sha256 via ensure(), the rest learnt into
the lock), the paper readers read them, every method of the config runs, then metrics, transfer, spatial,
markers, every figure and the report.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import yaml

from davae_study.data.download import load_sources, read_lock, sha256sum
from davae_study.data.miniature import main as write_miniature

from conftest import REPO

pytestmark = pytest.mark.slow

PAPER = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

# Shorter training by method module (the config's methods are read, not listed here: a method not named
# below runs with its own parameters).
QUICK = {
    # the miniature's batches hold 36-112 cells: minibatches of 32 (the presets' 128 needs larger batches)
    "davae_study.methods.davae": {"epochs": 3, "min_steps": 0, "batch_size": 32},
    "davae_study.methods.desc": {"pretrain_epochs": 3, "max_rounds": 2, "epochs_per_round": 1},
    # scVI's own heuristic trains 400 epochs on a few hundred cells
    "davae_study.methods.scvi": {"max_epochs": 3},
}


# One thread for the jobs that ask for more (the methods' threads: 4-8, transfer and spatial_clusters: 2): on
# the miniature they are mostly imports, and a 2-thread job holds both cores while the second one idles.
SINGLE_THREADED = [f"{rule}=1" for rule in ("integrate", "scaling_integrate", "transfer", "spatial_clusters")]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output short
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    assert write_miniature([str(root), "--seed", "0", "--sources", str(REPO / "config" / "data_sources.yaml")]) == 0
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def overrides(mirror_root, url, workdir) -> dict:
    methods = {}
    for name, entry in PAPER["methods"].items():
        params = dict(entry.get("params") or {})
        # a method not in QUICK: any configured '*epochs' parameter capped at 3
        quick = QUICK.get(entry.get("module")) or {k: min(int(v), 3) for k, v in params.items() if k.endswith("epochs")}
        if quick:
            methods[name] = {"params": {**params, **quick}}
    apps = {}
    for app, spec in PAPER["applications"].items():
        mp = {m: {**p, **QUICK.get(PAPER["methods"][m].get("module"), {})}
              for m, p in (spec.get("method_params") or {}).items()}
        if mp:
            apps[app] = {"method_params": mp}
    scaling_params = {m: {**p, **QUICK.get(PAPER["methods"][m].get("module"), {})}
                      for m, p in (PAPER["scaling"].get("params") or {}).items()}
    return {
        "device": "cpu",
        "data": {"sources": str(mirror_root / "data_sources.yaml"), "mirror": url,
                 "lock": str(workdir / "data.lock.yaml"), "retries": 1, "backoff_s": 0.1},
        "methods": methods,
        "applications": apps,
        "scaling": {"sizes": [80, 160], "params": scaling_params},
        "metrics": {"kbet": {"n_repeat": 5}, "ari": {"n_iter": 2}},
    }


def snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(REPO / "config" / "config.yaml"), str(workdir / "overrides.yaml"),
           "--set-threads", *SINGLE_THREADED, "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    proc.output = proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def study(mirror, tmp_path_factory):
    root, url = mirror
    workdir = tmp_path_factory.mktemp("paper")
    (workdir / "overrides.yaml").write_text(yaml.safe_dump(overrides(root, url, workdir)))
    t0 = time.perf_counter()
    proc = snakemake(workdir, "all")
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted((workdir / "logs").rglob("*.log"))
                         if "Error" in p.read_text() or "Traceback" in p.read_text())
        raise AssertionError(f"snakemake all failed ({proc.returncode}):\n{proc.output[-6000:]}\n{logs[-8000:]}")
    print(f"\npaper config on the miniature: snakemake all took {wall:.0f} s")
    return workdir, root


def test_downloads_verified_and_locked(study):
    workdir, root = study
    table = load_sources(root / "data_sources.yaml")
    lock = read_lock(workdir / "data.lock.yaml")
    for key, entry in table.items():
        assert (workdir / "logs" / "download" / f"{key}.log").exists(), key
        if entry.get("extract"):  # the label file kept out of the archive; the lock pins the archive
            assert lock[key]["sha256"] == sha256sum(root / key) and lock[key]["member"] == entry["extract"]
            continue
        assert sha256sum(workdir / "resources" / key) == sha256sum(root / key), key
        if entry["sha256"]:  # pinned: checked against the table (and by Snakemake's ensure), not learnt
            assert key not in lock, key
        else:  # learnt on first download, from the mirror
            assert lock[key]["sha256"] == sha256sum(root / key)
            assert lock[key]["fetched_from"].startswith("http://127.0.0.1")


def test_every_application_read_and_checked(study):
    workdir, _ = study
    for app in PAPER["applications"]:
        prov = pd.read_csv(workdir / "results" / app / "provenance.tsv", sep="\t")
        # the miniature's table states the miniature's shapes: every part read matches them
        assert len(prov) and (prov["status"] == "ok").all(), prov
        assert prov["sha256"].notna().all()
    prov = pd.read_csv(workdir / "results" / "cell_lines" / "provenance.tsv", sep="\t")
    assert prov["note"].str.contains("label file covers the filtered cells of all 3 batches").any()


def test_every_method_metric_transfer_and_figure(study):
    workdir, _ = study
    res = workdir / "results"
    for app, spec in PAPER["applications"].items():
        metrics = pd.read_csv(res / app / "metrics.tsv", sep="\t")
        for method in spec["methods"]:
            assert (res / app / "integrated" / f"{method}.h5ad").stat().st_size > 0, (app, method)
            assert (res / app / "umap" / f"{method}.tsv").exists(), (app, method)
            got = metrics[metrics["method"] == method]
            # no method failed: its rows carry values, not the NA rows of a failed method
            failed = got["note"].fillna("").str.contains("failed").any()
            assert len(got) and got["value"].notna().any() and not failed, (app, method, got.head())
        for figure in spec.get("figures", ["umap_grid", "ari", "kbet"]):
            for ext in ("png", "pdf"):
                assert (res / app / "figures" / f"{figure}.{ext}").stat().st_size > 0, (app, figure, ext)
        if spec.get("transfer", {}).get("key"):
            for method in spec["methods"]:
                assert (res / app / "transfer" / f"{method}.tsv").exists(), (app, method)
    assert (res / "summary.tsv").exists() and (res / "figures" / "summary.png").exists()
    # Fig 6f: the runtime benchmark over the scaling sizes
    bench = pd.read_csv(res / "scaling" / "benchmark.tsv", sep="\t")
    assert set(bench["method"]) == set(PAPER["scaling"]["methods"])
    assert (res / "scaling" / "runtime.png").stat().st_size > 0


def test_nothing_left_and_report_builds(study):
    workdir, _ = study
    out = snakemake(workdir, "all", "-n").output
    assert "Nothing to be done" in out, out[-2000:]
    proc = snakemake(workdir, "all", "--report", str(workdir / "report.html"))
    assert proc.returncode == 0, proc.output[-3000:]
    assert (workdir / "report.html").stat().st_size > 10_000
