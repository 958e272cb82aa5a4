"""scVI (scvi-tools) behind the method contract: raw counts in, embedding and corrected expression out, cell
order kept, seeded, a failing fit recorded as NA rows. Real data (ifnb1k), two epochs."""

from __future__ import annotations

import numpy as np
import pytest

from davae_study.methods import method_layers, run_method

FAST = {"max_epochs": 2}


@pytest.fixture(scope="module")
def shuffled(ifnb_prepared):
    """ifnb1k prepared (1,000 genes) in a shuffled cell order, so that the two batches interleave."""
    order = np.random.default_rng(0).permutation(ifnb_prepared.n_obs)
    return ifnb_prepared[order].copy()


@pytest.fixture(scope="module")
def fitted(shuffled):
    import torch

    torch.set_num_threads(1)
    before_x, before_counts = shuffled.X.copy(), shuffled.layers["counts"].copy()
    first = run_method("scvi", shuffled, params=FAST, seed=0, device="cpu")
    again = run_method("scvi", shuffled, params=FAST, seed=0, device="cpu")
    # no method may modify its input (X and the counts are shared with the caller)
    assert (shuffled.X != before_x).nnz == 0 and (shuffled.layers["counts"] != before_counts).nnz == 0
    return first, again


def test_declares_the_counts_layer():
    assert method_layers("scvi") == ("counts",)


def test_contract_on_raw_counts(shuffled, fitted):
    out, _ = fitted
    info = out.uns["method"]
    assert info["status"] == "ok", info.get("error")
    assert info["device"] == "cpu" and info["versions"]["scvi-tools"] == "1.4.2"
    assert list(out.obs_names) == list(shuffled.obs_names)
    assert out.obs["batch"].equals(shuffled.obs["batch"])
    assert out.obsm["X_emb"].shape == (shuffled.n_obs, 10) and out.obsm["X_emb"].dtype == np.float32
    corrected = np.asarray(out.layers["corrected"])
    assert corrected.shape == shuffled.shape and np.isfinite(corrected).all() and corrected.min() >= 0
    rec = out.uns["method_outputs"]["scvi"]
    assert rec["max_epochs"] == 2 and rec["epochs_trained"] == 2 and np.isfinite(rec["elbo_train"])
    assert list(rec["transform_batch"]) == sorted(shuffled.obs["batch"].astype(str).unique())


def test_corrected_is_on_the_prepared_scale(shuffled, fitted):
    """log1p of expression scaled to prepare's target_sum (1e4): expm1 of each cell's row sums to 1e4 over the
    decoded (selected) genes, as the prepared X's rows do over all input genes."""
    out, _ = fitted
    sums = np.expm1(np.asarray(out.layers["corrected"], dtype=np.float64)).sum(1)
    np.testing.assert_allclose(sums, 1e4, rtol=1e-3)


def test_same_seed_same_embedding_other_seed_differs(shuffled, fitted):
    first, again = fitted
    np.testing.assert_array_equal(first.obsm["X_emb"], again.obsm["X_emb"])
    np.testing.assert_array_equal(first.layers["corrected"], again.layers["corrected"])
    other = run_method("scvi", shuffled, params={**FAST, "corrected": False}, seed=1, device="cpu")
    assert "corrected" not in other.layers
    assert np.abs(other.obsm["X_emb"] - first.obsm["X_emb"]).max() > 1e-3


def test_logs_stay_quiet(shuffled, capfd):
    """No Lightning banner, seed line or progress bar in a rule's log (stderr) or stdout."""
    out = run_method("scvi", shuffled, params={"max_epochs": 1, "corrected": False}, seed=0, device="cpu")
    assert out.uns["method"]["status"] == "ok"
    captured = capfd.readouterr()
    text = captured.out + captured.err
    for noise in ("GPU available", "Seed set", "Epoch 1/1", "Tip:", "Trainer.fit"):
        assert noise not in text, text[-2000:]


def test_failing_fit_becomes_na_rows(shuffled):
    """A fit that raises inside scvi-tools (an impossible train split) and input without counts are failed
    records; evaluate turns them into NaN rows whose note names the error."""
    from davae_study.metrics.evaluate import evaluate

    bad = run_method("scvi", shuffled, params={**FAST, "train_kwargs": {"train_size": 2.0}}, seed=0, device="cpu")
    assert bad.uns["method"]["status"] == "failed" and "train_size" in bad.uns["method"]["error"]
    assert "X_emb" not in bad.obsm and list(bad.obs_names) == list(shuffled.obs_names)
    tidy, _ = evaluate(bad, application="samples", method="scvi", params={"enabled": ["ari", "kbet"]})
    assert len(tidy) and tidy["value"].isna().all()
    assert tidy["note"].str.startswith("method failed: ValueError").all()

    no_counts = shuffled.copy()
    del no_counts.layers["counts"]
    out = run_method("scvi", no_counts, params=FAST, seed=0, device="cpu")
    assert out.uns["method"]["status"] == "failed" and "layers['counts']" in out.uns["method"]["error"]
    unknown = run_method("scvi", shuffled, params={**FAST, "transform_batch": ["nope"]}, seed=0, device="cpu")
    assert unknown.uns["method"]["status"] == "failed" and "transform_batch" in unknown.uns["method"]["error"]


def test_device_rule():
    from davae_study.methods.scvi import trainer_device

    assert trainer_device("cpu") == ("cpu", 1)
    assert trainer_device("cuda") == ("gpu", 1)
    assert trainer_device("cuda:1") == ("gpu", [1])
    assert trainer_device("mps") == ("mps", 1)
    import torch

    assert trainer_device("auto") == (("gpu", 1) if torch.cuda.is_available() else ("cpu", 1))
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        trainer_device("tpu")
