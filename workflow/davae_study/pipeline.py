"""One function per workflow step, over file paths: what each Snakemake script calls.

Each function reads its inputs, calls the library, and writes its outputs atomically, so a rule's script is
one call and every step can be run (and tested) without Snakemake. Rule → script → function:

=================  ==============================  ==========================
rule               script                          function
=================  ==============================  ==========================
prepare            workflow/scripts/prepare.py     :func:`prepare_application`
marker_expression  workflow/scripts/markers.py     :func:`marker_expression`
integrate          workflow/scripts/integrate.py   :func:`integrate`
umap               workflow/scripts/umap.py        :func:`umap`
evaluate           workflow/scripts/evaluate.py    :func:`evaluate`
aggregate_metrics  workflow/scripts/aggregate.py   :func:`aggregate_metrics`
summary            workflow/scripts/summary.py     :func:`summarise_applications`
figure_*           workflow/scripts/figure.py      :func:`davae_study.plotting.render.render_rule`
transfer, ...      workflow/scripts/transfer*.py   :mod:`davae_study.groundtruth` steps
download_*         workflow/scripts/download.py    :func:`davae_study.data.download.fetch_entry`
(onstart)          workflow/rules/download.smk     :func:`davae_study.data.download.check_downloads`
scaling_*          workflow/scripts/scaling_*.py   :mod:`davae_study.scaling` (6f: ``plotting.runtime_scaling``)
verdicts           workflow/scripts/verdicts.py    :func:`davae_study.verdicts.write_verdicts`
=================  ==============================  ==========================
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd

from .io import read_h5ad, read_tsv, write_h5ad, write_tsv

log = logging.getLogger("davae_study")

TIDY_COLUMNS = ["application", "method", "metric", "group", "value", "n", "note"]


@contextlib.contextmanager
def logged(path: str | os.PathLike | None) -> Iterator[None]:
    """Send logging, warnings and stderr of the block to ``path`` (a rule's ``log:`` file)."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        old_level = root.level
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            with contextlib.redirect_stderr(fh), contextlib.redirect_stdout(fh):
                yield
        except BaseException:
            log.exception("step failed")
            raise
        finally:
            logging.captureWarnings(False)
            root.removeHandler(handler)
            root.setLevel(old_level)


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def prepare_application(
    paths: Mapping[str, str],
    input_spec: Mapping[str, Any],
    prepare_params: Mapping[str, Any],
    out_h5ad: str,
    out_obs: str,
    out_provenance: str | None = None,
    *,
    application: str | None = None,
    sources: str | Mapping[str, Any] | None = None,
    lock_path: str | None = None,
) -> ad.AnnData:
    """Read an application's input files, prepare them, write ``prepared.h5ad``, its ``obs.tsv`` and the
    provenance table (source URL, sha256, download date, observed vs the paper's stated shape)."""
    from .data import read_application
    from .data.download import load_sources
    from .data.provenance import PROVENANCE_COLUMNS, provenance_table
    from .prepare import prepare

    from .data.readers import PAPER_READERS

    application = application or Path(out_h5ad).parent.name
    if sources and input_spec.get("reader") in PAPER_READERS and "sources" not in (input_spec.get("params") or {}):
        # the paper's readers compare with the stated shapes of this data table (not a cwd-relative default)
        input_spec = {**input_spec, "params": {**dict(input_spec.get("params") or {}), "sources": sources}}
    raw = read_application(input_spec, paths)
    log.info("read %s cells x %s genes from %s", raw.n_obs, raw.n_vars, dict(paths))
    checksums = {role: sha256(p) for role, p in paths.items() if Path(p).is_file()}  # each file hashed once
    rows = raw.uns.pop("provenance", None)
    if rows is not None:  # the paper's readers check every part against the stated shape
        table = provenance_table(rows, application=application, sources=load_sources(sources) if sources else None,
                                 lock_path=lock_path, hash_files=False)
        by_key = {"/".join(Path(p).parts[-2:]): checksums.get(role) for role, p in paths.items()}
        table["sha256"] = [by_key.get(f) or s for f, s in zip(table["file"], table["sha256"])]
    else:  # users' own files: record what was read
        table = pd.DataFrame([{"application": application, "part": role, "file": str(p), "sha256": checksums.get(role),
                               "cells": raw.n_obs, "genes": raw.n_vars, "status": "unchecked",
                               "note": "no stated shape for this input"} for role, p in paths.items()])
    table = table.reindex(columns=PROVENANCE_COLUMNS)
    # keyed by file role: paths must not become HDF5 group names
    provenance = {"reader": input_spec["reader"], "files": {k: str(p) for k, p in paths.items()}, "sha256": checksums}
    prepared = prepare(raw, provenance=provenance, **dict(prepare_params))
    log.info("prepared %s cells x %s genes, batches %s", prepared.n_obs, prepared.n_vars,
             prepared.obs["batch"].value_counts().to_dict())
    write_h5ad(prepared, out_h5ad)
    write_tsv(prepared.obs.rename_axis("cell").reset_index(), out_obs)
    if out_provenance is not None:
        write_tsv(table, out_provenance)
    return prepared


def marker_expression(
    paths: Mapping[str, str],
    input_spec: Mapping[str, Any],
    prepare_params: Mapping[str, Any],
    obs_tsv: str,
    out_h5ad: str,
    *,
    genes: Sequence[str],
) -> ad.AnnData:
    """Write ``markers.h5ad``: the marker figures' genes, normalised as ``prepared.h5ad``'s ``X`` but taken
    from every input gene (:func:`davae_study.prepare.marker_expression`), for the cells of ``obs.tsv``.

    Reads the application's input again (``paths``: the rule's inputs; only the roles of
    ``input_spec['files']``, where given, go to the reader) with the application's ``prepare:`` settings,
    and checks that the cells are those of prepare's ``obs.tsv``, in the same order: a mismatch means
    prepared.h5ad was made from other input or settings (one-line error: rerun prepare).
    """
    from .data import read_application
    from .prepare import marker_expression as compute

    files = input_spec.get("files")
    roles = {role: paths[role] for role in files} if files else dict(paths)
    raw = read_application(input_spec, roles)
    raw.uns.pop("provenance", None)
    log.info("read %s cells x %s genes from %s", raw.n_obs, raw.n_vars, roles)
    markers = compute(raw, genes, **dict(prepare_params))
    del raw
    cells = pd.read_csv(obs_tsv, sep="\t", usecols=["cell"], dtype=str)["cell"]
    if len(cells) != markers.n_obs or not (cells.to_numpy() == markers.obs_names.to_numpy()).all():
        raise ValueError(f"the {markers.n_obs} prepared cells of the input are not the {len(cells)} cells of "
                         f"{obs_tsv} (same order); rerun prepare for this application")
    info = markers.uns["markers"]
    log.info("markers: %d of %d genes found (%s); absent: %s", len(info["found"]), len(info["genes"]),
             ", ".join(info["found"]), ", ".join(info["absent"]) or "none")
    write_h5ad(markers, out_h5ad)
    return markers


def integrate(prepared_path: str, out_h5ad: str, *, method: str, module: str | None, params: Mapping[str, Any],
              seed: int = 0, device: str = "auto", on_error: str = "record", threads: int | None = None) -> ad.AnnData:
    """Run one method on ``prepared.h5ad`` and write ``integrated/<method>.h5ad`` (also when it failed).

    ``threads`` caps torch's and the BLAS libraries' thread pools at the job's share of the machine: more
    threads than cores make torch's spin-waiting workers an order of magnitude slower on a busy machine.
    """
    from .methods import method_layers, run_method, thread_limit

    # only the layers the method declares (LAYERS): the counts layer is as large as X
    prepared = read_h5ad(prepared_path, layers=method_layers(method, module))
    with thread_limit(threads):
        result = run_method(method, prepared, module=module, params=params, seed=seed, device=device,
                            on_error=on_error, threads=threads)
    info = result.uns["method"]
    log.info("method %s: %s in %.1f s %s", method, info["status"], info["wall_s"], info.get("error", ""))
    write_h5ad(result, out_h5ad)
    return result


def method_failed(adata: ad.AnnData) -> str | None:
    """The error message of a failed method record, or None when the method succeeded."""
    info = adata.uns.get("method", {})
    if info.get("status") == "failed" or "X_emb" not in adata.obsm:
        return str(info.get("error") or "no embedding")
    return None


def umap(integrated_path: str, out_tsv: str, *, n_neighbors: int = 15, min_dist: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """2-D UMAP of ``obsm['X_emb']`` written as ``cell, umap1, umap2`` (header only for a failed method)."""
    import scanpy as sc

    from .jitcache import jit_cache

    adata = ad.read_h5ad(integrated_path)
    if method_failed(adata):
        table = pd.DataFrame(columns=["cell", "umap1", "umap2"])
    else:
        work = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names))
        work.obsm["X_emb"] = adata.obsm["X_emb"]
        with jit_cache():  # umap-learn's numba code compiled once, not in every job (davae_study.jitcache)
            sc.pp.neighbors(work, use_rep="X_emb", n_neighbors=min(n_neighbors, adata.n_obs - 1), random_state=seed)
            sc.tl.umap(work, min_dist=min_dist, random_state=seed)
        xy = work.obsm["X_umap"]
        table = pd.DataFrame({"cell": adata.obs_names, "umap1": xy[:, 0], "umap2": xy[:, 1]})
    write_tsv(table, out_tsv)
    return table


def evaluate(integrated_path: str, out_tsv: str, out_repeats: str, *, application: str, method: str,
             params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Score one method's embedding; write the tidy table and the per-repeat table."""
    from .metrics import evaluate as evaluate_metrics

    adata = ad.read_h5ad(integrated_path)
    tidy, repeats = evaluate_metrics(adata, application=application, method=method, params=dict(params or {}))
    write_tsv(tidy, out_tsv)
    write_tsv(repeats, out_repeats)
    return tidy


def aggregate_metrics(paths: Sequence[str], out_tsv: str) -> pd.DataFrame:
    """Concatenate per-method tidy tables (and transfer metric tables) into one application table."""
    tables = [read_tsv(p) for p in paths]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=TIDY_COLUMNS)
    write_tsv(table, out_tsv)
    return table


def summarise_applications(paths: Sequence[str], out_tsv: str) -> pd.DataFrame:
    """Concatenate application tables and add the cross-method scores (Tran's normalisation and F1)."""
    from .metrics import summarise

    table = pd.concat([read_tsv(p) for p in paths], ignore_index=True)
    summary = summarise(table)
    write_tsv(summary, out_tsv)
    return summary


__all__ = [
    "TIDY_COLUMNS", "aggregate_metrics", "evaluate", "integrate", "logged", "marker_expression", "method_failed",
    "prepare_application", "summarise_applications", "umap", "sha256",
]
