"""`davae` as a tool: thread control, input checks, small batches, log-friendly progress, CLI messages."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import yaml
from threadpoolctl import threadpool_info

import davae
from davae._progress import EpochProgress
from davae.cli import main as cli_main

from conftest import REPO
from test_davae import TINY, _one_thread  # noqa: F401  (_one_thread: autouse fixture)


def _counts(sizes=(40, 40), n_genes=30, seed=0) -> ad.AnnData:
    """Integer counts, two cell types, one batch per entry of ``sizes``."""
    rng = np.random.default_rng(seed)
    batch = np.repeat(np.arange(len(sizes)), sizes)
    n = len(batch)
    ct = rng.integers(0, 2, n)
    mu = np.where(ct[:, None] == 0, 2.0, 0.5) * rng.uniform(0.5, 2, n_genes)[None]
    X = rng.poisson(mu * 3).astype(np.float32)
    X[:, 0] += 1
    a = ad.AnnData(X=sp.csr_matrix(X))
    a.obs_names = [f"c{i}" for i in range(n)]
    a.var_names = [f"g{j}" for j in range(n_genes)]
    a.obs["batch"] = pd.Categorical([f"b{k}" for k in batch])
    return a


def _lognorm(a: ad.AnnData) -> ad.AnnData:
    b = a.copy()
    X = b.X.toarray()
    b.X = sp.csr_matrix(np.log1p(X / X.sum(1, keepdims=True) * 1e4).astype(np.float32))
    return b


def _pools() -> dict[str, int]:
    """Threads of torch and of every BLAS / OpenMP pool threadpoolctl sees."""
    out = {"torch": torch.get_num_threads()}
    for p in threadpool_info():
        out[f"{p['internal_api']}:{os.path.basename(p['filepath'])}"] = p["num_threads"]
    return out


# --- threads ----------------------------------------------------------------------------------------------
def test_threads_reach_torch_and_the_pools_and_are_restored(monkeypatch):
    import davae.training as T

    seen = []
    real = T.train
    monkeypatch.setattr(T, "train", lambda *a, **k: (seen.append(_pools()), real(*a, **k))[1])
    before = _pools()
    assert before["torch"] == 1
    a = _lognorm(_counts())
    davae.integrate(a, preprocess=False, device="cpu", progress=False, threads=2, **TINY)
    m = davae.DAVAE(a, **TINY).fit(seed=0, device="cpu", progress=False, threads=3)
    assert m.is_trained
    assert set(seen[0].values()) == {2} and set(seen[1].values()) == {3}, seen  # torch and every pool
    after = _pools()
    assert {k: after[k] for k in before} == before  # restored (pools loaded meanwhile are not compared)
    davae.integrate(a, preprocess=False, device="cpu", progress=False, **TINY)  # None: left as it is
    assert {k: seen[2][k] for k in before} == before


def test_minibatch_loop_threads_follow_the_step_size(monkeypatch):
    """On CPU the minibatch loop runs on step_threads() of the fit's threads (one for small steps), the
    local prior's encode on all of them, and the fit's threads are back afterwards."""
    import davae.training as T

    assert T.step_threads(128, 2000, 2) == 1  # a default step: one thread
    assert T.step_threads(4096, 2000, 2) == 2 and T.step_threads(4096, 2000, 16) == 8
    assert T.step_threads(10**6, 10**6, 3) == 3 and T.step_threads(1, 1, 1) == 1
    in_loop, at_prior = [], []
    loss, encode = T.davae_loss, T.encode
    monkeypatch.setattr(T, "davae_loss", lambda *a, **k: (in_loop.append(torch.get_num_threads()), loss(*a, **k))[1])
    monkeypatch.setattr(T, "encode", lambda *a, **k: (at_prior.append(torch.get_num_threads()), encode(*a, **k))[1])
    a = _lognorm(_counts())
    davae.DAVAE(a, **{**TINY, "epochs": 4}).fit(seed=0, device="cpu", progress=False, threads=2)
    assert set(in_loop) == {1} and at_prior == [2]
    monkeypatch.setattr(T, "STEP_ENTRIES_PER_THREAD", 1)  # every step "large": the loop gets the cap
    in_loop.clear()
    davae.DAVAE(a, **TINY).fit(seed=0, device="cpu", progress=False, threads=2)
    assert set(in_loop) == {2}
    assert torch.get_num_threads() == 1  # the test's setting, restored


def test_threads_restored_when_the_fit_fails():
    a = _lognorm(_counts())
    with pytest.raises(ValueError, match="threads must be a positive integer") as e:
        davae.integrate(a, preprocess=False, device="cpu", progress=False, threads=0, **TINY)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="invalid device"):  # raised inside the limited block, by fit
        davae.integrate(a, preprocess=False, device="nonsense:0", progress=False, threads=2, **TINY)
    assert torch.get_num_threads() == 1


def _cli_up_to_the_fit(tmp_path, monkeypatch, warning: str | None = None):
    """``davae integrate`` on a small counts file, the fit replaced by a stub that records its keyword arguments
    (and emits ``warning``), then stops the command; returns ``(run, kwargs)``, ``run(*flags)`` giving the
    exit status."""
    import davae.api

    got = {}

    def fake(adata, **kw):
        got.update(kw)
        if warning is not None:
            warnings.warn(warning, UserWarning)
        raise ValueError("stop here")

    monkeypatch.setattr(davae.api, "integrate_with_model", fake)
    _counts().write_h5ad(tmp_path / "in.h5ad")

    def run(*flags: str) -> int:
        return cli_main(["integrate", str(tmp_path / "in.h5ad"), str(tmp_path / "o.h5ad"), *flags])

    return run, got


def test_cli_threads_default_is_the_cores_this_process_may_use(tmp_path, monkeypatch):
    run, got = _cli_up_to_the_fit(tmp_path, monkeypatch)
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    assert run() == 2
    assert got["threads"] == len(os.sched_getaffinity(0))
    assert run("--threads", "1") == 2
    assert got["threads"] == 1
    # numpy and torch are loaded in this process: the variables would no longer be read, so none is set
    assert {k: os.environ.get(k) for k in env} == env


def test_cli_prior_fallback_flag_reaches_the_fit(tmp_path, monkeypatch):
    run, got = _cli_up_to_the_fit(tmp_path, monkeypatch)
    assert run("--threads", "1") == 2
    assert "prior_fallback" not in got  # the preset's default (False)
    assert run("--threads", "1", "--prior-fallback") == 2
    assert got["prior_fallback"] is True


def test_cli_prints_a_fit_warning_as_one_line(tmp_path, monkeypatch, capsys):
    run, _ = _cli_up_to_the_fit(tmp_path, monkeypatch, warning="DAVAE: these groups of batches share no "
                                                               "neighbourhood in the warm-up latent ...")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert run("--threads", "1") == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "davae: warning: these groups of batches share no neighbourhood in the warm-up latent ..."
    assert err[1:] == ["davae: error: stop here"]


def test_a_fresh_process_sizes_the_pools_before_torch_loads():
    """What the command does first: passive OpenMP waiting and the thread variables, before torch loads."""
    code = ("import os, davae._threads as t; print(t.export_thread_env(1)); import torch; "
            "print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "PASSIVE", "1"]
    # a policy the user chose is kept
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", "import davae, os; print(os.environ['OMP_WAIT_POLICY'])"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ACTIVE"


def test_the_workflow_passes_the_rule_threads_to_davae(tmp_path, monkeypatch):
    from davae_study.pipeline import integrate, logged

    calls = []
    real = davae.integrate

    def spy(adata, **kw):
        calls.append((kw["threads"], torch.get_num_threads()))
        returned.append(real(adata, **kw))
        assert kw["recover"] is False and kw["corrected"] is True
        return returned[-1]

    returned = []

    monkeypatch.setattr(davae, "integrate", spy)
    prepared = _lognorm(_counts(sizes=(60, 50)))
    prepared.write_h5ad(tmp_path / "prepared.h5ad")
    log = tmp_path / "integrate.log"
    with logged(str(log)):
        res = integrate(str(tmp_path / "prepared.h5ad"), str(tmp_path / "davae.h5ad"), method="davae",
                        module="davae_study.methods.davae", params={**TINY, "epochs": 60, "batch_size": 128}, threads=2,
                        on_error="raise")
    assert calls == [(2, 2)]
    assert res.uns["method"]["threads"] == 2 and res.uns["method"]["status"] == "ok"
    # X_emb is the embedding the preset names: the 3-d latent
    assert res.obsm["X_emb"].shape[1] == TINY["latent_dim"] == 3
    # the study's corrected expression is DAVAE's average-batch decode, not the own-batch recovered one
    np.testing.assert_array_equal(res.layers["corrected"], returned[0].layers["davae_corrected"])
    assert "davae_recovered" not in returned[0].layers
    assert torch.get_num_threads() == 1
    # the rule's log gets the short loss table (progress is on by default), not a line per update
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("DAVAE epoch")]
    assert 2 <= len(lines) <= 22 and lines[-1].startswith("DAVAE epoch 60/60"), lines
    assert "\r" not in log.read_text()


# --- progress in a log ------------------------------------------------------------------------------------
def test_progress_is_a_short_table_when_stderr_is_not_a_terminal(capsys):
    a = _lognorm(_counts())
    out = davae.integrate(a, preprocess=False, device="cpu", progress=True, **{**TINY, "epochs": 150})
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(out.uns["davae"]["history"]["loss"]) == 150
    assert 2 <= len(lines) <= 22 and all(ln.startswith("DAVAE epoch") for ln in lines), lines
    assert lines[0].startswith("DAVAE epoch   1/150") and lines[-1].startswith("DAVAE epoch 150/150")
    assert "recon" in lines[-1] and "domain" in lines[-1]
    davae.integrate(a, preprocess=False, device="cpu", progress=False, **TINY)
    assert capsys.readouterr().err == ""


def test_progress_is_a_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    bar = EpochProgress(3, stream=term)
    for _ in bar:
        bar.set_postfix({"recon": "1.0"})
    assert bar._bar is not None and "recon=1.0" in term.getvalue()
    log = io.StringIO()
    bar = EpochProgress(3, stream=log, enabled=False)
    for _ in bar:
        bar.set_postfix({"recon": "1.0"})
    assert log.getvalue() == ""


# --- input checks -----------------------------------------------------------------------------------------
def test_log_normalised_input_with_preprocessing_stops_with_one_line(tmp_path, capsys):
    a = _lognorm(_counts())
    with pytest.raises(ValueError, match="looks log-transformed") as e:
        davae.integrate(a, device="cpu", progress=False, **TINY)
    msg = str(e.value)
    assert "\n" not in msg and "preprocess=False" in msg and "--no-preprocess" in msg and "raw counts in X" in msg
    # the override preprocesses anyway; preprocess=False uses X as given
    assert davae.integrate(a, device="cpu", progress=False, check_counts=False, n_top_genes=20, **TINY).n_vars == 20
    assert davae.integrate(a, preprocess=False, device="cpu", progress=False, **TINY).n_vars == a.n_vars
    # the same through the command line, and its override flag
    a.write_h5ad(tmp_path / "log.h5ad")
    args = ["integrate", str(tmp_path / "log.h5ad"), str(tmp_path / "o.h5ad"), "--epochs", "2", "--min-steps", "0",
            "--batch-size", "16", "--hidden-layers", "16,8", "--n-top-genes", "20", "--no-progress"]
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--no-preprocess" in err and not (tmp_path / "o.h5ad").exists()
    assert cli_main(args + ["--skip-count-check"]) == 0 and (tmp_path / "o.h5ad").exists()


@pytest.mark.parametrize("scale", [1.0, 1e6 / 300])
def test_counts_and_tpm_like_input_pass_the_count_check(scale):
    a = _counts()
    a.X = a.X * np.float32(scale)  # integer counts, or non-integer values on a count scale (TPM, CPM)
    assert davae.integrate(a, device="cpu", progress=False, n_top_genes=20, **TINY).n_vars == 20


def test_duplicate_cell_names_stop_with_one_line(tmp_path):
    a = _counts()
    a.obs_names = [f"c{i % 50}" for i in range(a.n_obs)]
    with pytest.raises(ValueError, match=r"obs_names_make_unique\(\)") as e:
        davae.integrate(a, device="cpu", progress=False, **TINY)
    assert "\n" not in str(e.value) and "30 duplicated" in str(e.value)
    # the command line: exactly one line on stderr (no anndata warnings before it)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.write_h5ad(tmp_path / "dup.h5ad")
    proc = subprocess.run([sys.executable, "-m", "davae", "integrate", str(tmp_path / "dup.h5ad"),
                           str(tmp_path / "o.h5ad")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "obs_names_make_unique()" in proc.stderr, proc.stderr


def test_a_file_that_is_not_hdf5_says_what_it_should_be(tmp_path, capsys):
    (tmp_path / "counts.csv").write_text("cell,g1\nc1,3\n")
    assert cli_main(["integrate", str(tmp_path / "counts.csv"), str(tmp_path / "o.h5ad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not an HDF5 file" in err and ".h5ad AnnData file" in err and "write_h5ad" in err
    assert "signature" not in err


# --- batches smaller than the minibatch -------------------------------------------------------------------
def test_minibatches_are_cut_from_one_permutation_of_all_cells():
    """The draw small batches rely on (unchanged by allowing them): one permutation of all cells per epoch,
    cut into batch_size pieces, whatever the batches' sizes; a trailing single cell joins the previous piece."""
    from davae.training import _minibatches

    cells = np.arange(300)
    got = _minibatches(cells, 128, np.random.default_rng(5))
    assert [len(c) for c in got] == [128, 128, 44]
    np.testing.assert_array_equal(np.concatenate(got), np.random.default_rng(5).permutation(cells))
    for n, sizes in ((257, [128, 129]), (129, [129]), (20, [20])):  # 257, 129: a single cell left over
        got = _minibatches(np.arange(n), 128, np.random.default_rng(0))
        assert [len(c) for c in got] == sizes and sorted(np.concatenate(got)) == list(range(n))


def test_a_batch_smaller_than_the_minibatch_trains():
    a = _lognorm(_counts(sizes=(60, 5)))
    out = davae.integrate(a, preprocess=False, device="cpu", progress=False, **{**TINY, "batch_size": 32})
    assert np.isfinite(out.obsm["X_davae"]).all() and out.uns["davae"]["params"]["batch_size"] == 32
    # a data set smaller than the minibatch: one minibatch of all its cells per epoch
    b = _lognorm(_counts(sizes=(12, 8)))
    out = davae.integrate(b, preprocess=False, device="cpu", progress=False, **{**TINY, "batch_size": 128})
    assert len(out.uns["davae"]["history"]["loss"]) == TINY["epochs"] and np.isfinite(out.obsm["X_davae"]).all()
    # one cell more than the minibatch (it joins the last minibatch)
    c = _lognorm(_counts(sizes=(10, 7)))
    out = davae.integrate(c, preprocess=False, device="cpu", progress=False, **{**TINY, "batch_size": 16})
    assert np.isfinite(out.obsm["X_davae"]).all()


def test_the_demo_compositions_design_fits_with_default_flags(tmp_path):
    """config/demo.yaml's compositions application (CEL-seq2 keeps 81 cells) through the command line with
    default training flags: no --batch-size, and no DAVAE method_params in the demo config either."""
    from davae_study.data import read_application

    app = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["applications"]["compositions"]
    assert "davae" not in (app.get("method_params") or {})
    raw = read_application(app["input"], {k: str(REPO / v) for k, v in app["input"]["files"].items()})
    sizes = raw.obs["batch"].value_counts()
    assert sizes.min() < davae.PRESETS["default"].batch_size
    raw.write_h5ad(tmp_path / "compositions.h5ad")
    # --embedding only adds the corrected PCs after training (the fit and the latent are the same without it)
    rc = cli_main(["integrate", str(tmp_path / "compositions.h5ad"), str(tmp_path / "out.h5ad"), "--threads", "1",
                   "--embedding", "corrected_pca"])
    assert rc == 0
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert list(out.obs_names) == list(raw.obs_names)
    assert np.isfinite(out.obsm["X_davae"]).all()
    assert out.uns["davae"]["params"]["batch_size"] == davae.PRESETS["default"].batch_size
    # the cell lines stay apart although 10x holds only H1975 and CEL-seq2 only H2228: each of those two
    # batches' cells has (almost) only its own line among its 15 nearest neighbours. With the batch one-hot on
    # the decoder input (the previous default) the decoder explained H1975 vs H2228 through the batch and the
    # two merged (seed 0: CEL-seq2 0.85, 10x 0.97; now 0.97 and 1.00; docs/davae.md)
    from sklearn.neighbors import NearestNeighbors

    line = out.obs["cell_type"].astype(str).to_numpy()
    assert out.uns["davae"]["embedding"] == "X_davae_pca"
    for key in ("X_davae", "X_davae_pca"):  # the latent, and the corrected PCs made from it
        idx = NearestNeighbors(n_neighbors=16).fit(out.obsm[key]).kneighbors(return_distance=False)[:, :15]
        own_line = (line[idx] == line[:, None]).mean(1)
        for batch in ("10x", "sc_celseq2"):
            assert own_line[(out.obs["batch"] == batch).to_numpy()].mean() >= 0.95, (key, batch)
    # and Tran's k-means finds the three lines in the corrected PCs: in the latent the populous H1975
    # spreads so far that k-means splits it (docs/davae.md, "The embedding"). Here, after the command's own
    # preprocessing: 0.93 at seeds 0 and 1, the latent 0.41 / 0.42.
    from davae_study.metrics.ari import ari_tran

    ari = {r["metric"]: r["value"] for r in ari_tran(out.obsm["X_davae_pca"], out.obs["batch"], line, seed=0)[0]}
    assert ari["ari_celltype"] >= 0.9, ari


def test_study_notes_name_the_batch_groups_the_prior_left_apart_or_aligned():
    from davae_study.methods.davae import prior_notes

    info = {"batch_categories": ["rna", "atac_1", "atac_2"], "prior_groups": np.array([0, 1, 1]),
            "prior_fallback_applied": False}
    (note,) = prior_notes(info)
    assert "(rna | atac_1, atac_2) left unaligned" in note and "prior_fallback: true" in note
    (note,) = prior_notes({**info, "prior_fallback_applied": True})
    assert note.endswith("(rna | atac_1, atac_2) aligned by prior_fallback")
    assert prior_notes({**info, "prior_groups": np.array([0, 0, 0])}) == []
    assert prior_notes({"batch_categories": ["a", "b"]}) == []  # scbean: no local prior, no record
