"""Tests of the DAVAE core (davae/): gradient reversal, loss, determinism, API/CLI contract, input errors,
and that a real data set mixes better than uncorrected PCA while keeping cell types apart."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import davae
from davae.cli import main as cli_main
from davae.module import (DAVAEModule, davae_loss, gaussian_reconstruction, ganin_lambda, grad_reverse,
                          scbean_reconstruction, softplus_reconstruction)
from davae.training import resolve_precision, validation_split

from conftest import CELLBENCH

TINY = dict(epochs=2, min_steps=0, batch_size=16, hidden_layers=[16, 8], latent_dim=3)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _toy(n_per_batch=40, n_genes=30, n_batches=2, sparse=True, seed=0) -> ad.AnnData:
    """Counts with two cell types and a multiplicative batch effect."""
    rng = np.random.default_rng(seed)
    n = n_per_batch * n_batches
    ct = rng.integers(0, 2, n)
    batch = np.repeat(np.arange(n_batches), n_per_batch)
    mu = np.where(ct[:, None] == 0, 2.0, 0.5) * rng.uniform(0.5, 2, n_genes)[None]
    mu = mu * np.where(batch[:, None] == 1, rng.uniform(0.3, 3, n_genes)[None], 1.0)
    X = rng.poisson(mu * 3).astype(np.float32)
    X[:, 0] += 1  # no empty cells
    a = ad.AnnData(X=sp.csr_matrix(X) if sparse else X)
    a.obs_names = [f"c{i}" for i in range(n)]
    a.var_names = [f"g{j}" for j in range(n_genes)]
    a.obs["batch"] = pd.Categorical([f"b{k}" for k in batch])
    a.obs["cell_type"] = pd.Categorical([f"t{k}" for k in ct])
    return a


def _lognorm(a: ad.AnnData) -> ad.AnnData:
    b = a.copy()
    X = b.X.toarray() if sp.issparse(b.X) else b.X
    X = np.log1p(X / X.sum(1, keepdims=True) * 1e4).astype(np.float32)
    b.X = sp.csr_matrix(X) if sp.issparse(a.X) else X
    return b


# --- network pieces -----------------------------------------------------------------------------------
def test_gradient_reversal_flips_sign():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(5, 3, dtype=torch.float64)
    y = grad_reverse(x, 0.7)
    assert torch.equal(y, x)  # identity forward
    (y * c).sum().backward()
    assert torch.allclose(x.grad, -0.7 * c)
    x.grad = None
    (x * c).sum().backward()  # without the layer the gradient is +c
    assert torch.allclose(x.grad, c)


def test_scbean_architecture_as_released():
    p = davae.get_params("scbean")
    m = DAVAEModule(n_genes=50, n_batches=3, hidden_layers=p.hidden_layers, latent_dim=p.latent_dim,
                    encoder_batch=p.encoder_batch, decoder_batch=p.decoder_batch,
                    dropout_encoder=p.dropout_encoder, dropout_decoder=p.dropout_decoder,
                    dropout_classifier=p.dropout_classifier)
    lin = [l for l in m.encoder if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in lin] == [(53, 128), (128, 64), (64, 32)]
    assert m.z_mean.out_features == 5
    dec = [l for l in m.decoder if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in dec] == [(8, 32), (32, 64), (64, 128)]
    assert (m.out.in_features, m.out.out_features) == (128, 50)
    bn = m.encoder[1]
    assert bn.bn.weight is None and bn.bias.shape == (128,)  # learned shift, no learned scale
    assert bn.bn.momentum == pytest.approx(0.01) and bn.bn.eps == pytest.approx(1e-3)
    drops = [l.p for l in m.encoder if isinstance(l, torch.nn.Dropout)]
    assert drops == [0.1] * 3
    assert m.classifier[0].out_features == 16 and m.classifier[3].p == pytest.approx(0.01)
    assert p.recon_weight == "reference" and p.lambda_schedule == "constant" and p.lr == 0.01
    assert p.decoder_batch_mode == "input" and m.batch_shift is None


def test_affine_decoder_changes_a_cell_only_by_a_gene_wise_scale_and_shift_between_batches():
    """The default decoder's batch acts after its hidden layers, gene by gene: decoded under batch b1 instead of
    b0, every gene's output (before the softplus) is an affine function of the same gene's output under b0,
    the same function for every cell. So a batch can shift and scale genes, not turn one cell type's
    programme into another's (which the one-hot on the decoder input can)."""
    torch.manual_seed(0)
    p = davae.get_params("default")
    assert p.decoder_batch and p.decoder_batch_mode == "affine"
    m = DAVAEModule(n_genes=20, n_batches=2, hidden_layers=[16, 8], latent_dim=3,
                    decoder_batch_mode=p.decoder_batch_mode).eval()
    assert [l.in_features for l in m.decoder if isinstance(l, torch.nn.Linear)][0] == 3  # z only
    with torch.no_grad():
        m.batch_log_scale.normal_()
        m.batch_shift.normal_()
        z = torch.randn(200, 3)
        eye = torch.eye(2)
        l0 = m.decode_logits(z, eye[[0] * 200]).double()
        l1 = m.decode_logits(z, eye[[1] * 200]).double()
    design = torch.stack([l0, torch.ones_like(l0)], -1).permute(1, 0, 2)  # genes x cells x 2
    coef = torch.linalg.lstsq(design, l1.T.unsqueeze(-1)).solution  # per gene: l1 = a·l0 + c
    fitted = (design @ coef).squeeze(-1).T
    assert torch.allclose(fitted, l1, atol=1e-4)
    ls, sh = m.batch_log_scale.detach().double(), m.batch_shift.detach().double()
    assert torch.allclose(coef[:, 0, 0], torch.exp(ls[1] - ls[0]), rtol=1e-4)
    # the one-hot on the input (scbean) gives no such relation
    mi = DAVAEModule(n_genes=20, n_batches=2, hidden_layers=[16, 8], latent_dim=3, decoder_batch_mode="input").eval()
    with torch.no_grad():
        i0, i1 = mi.decode_logits(z, eye[[0] * 200]).double(), mi.decode_logits(z, eye[[1] * 200]).double()
    d = torch.stack([i0, torch.ones_like(i0)], -1).permute(1, 0, 2)
    resid = (d @ torch.linalg.lstsq(d, i1.T.unsqueeze(-1)).solution).squeeze(-1).T - i1
    assert resid.abs().max() > 1e-2


def test_loss_matches_hand_computation():
    x = np.array([[1.0, 0.0, 2.0], [0.5, 1.5, 0.0]])
    xh = np.array([[0.5, 0.5, 1.0], [1.0, 1.0, 1.0]])
    w = np.array([1.0, 0.0])
    mu = np.array([[0.1, -0.2], [0.3, 0.0]])
    lv = np.array([[0.0, -1.0], [0.5, 0.2]])
    logits = np.array([[2.0, 0.0], [0.0, 1.0]])
    b = np.array([0, 1])
    lam, D = 2.5, 3
    # the decoder output before its softplus, as the network returns it: softplus(log(expm1(x̂))) = x̂
    out = {"mu": torch.tensor(mu), "logvar": torch.tensor(lv), "x_logits": torch.tensor(np.log(np.expm1(xh))),
           "logits": torch.tensor(logits)}
    args = (torch.tensor(x), torch.tensor(b), torch.tensor(w), lam)
    # by hand
    r = w[:, None] * x - w[:, None] * xh
    mse = (r ** 2).mean(1)
    var = r.var()  # numpy: population variance over all entries
    recon_sc = mse * (D / 2) / var + (D / 2) / var * np.log(var)
    kl = -0.5 * (1 + lv - mu ** 2 - np.exp(lv)).sum(1)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ce = -np.log(p[np.arange(2), b])
    dom = ce * D * lam
    got = davae_loss(out, *args, recon_loss="scbean")
    assert float(got["recon"]) == pytest.approx(recon_sc.mean(), rel=1e-12)
    assert float(got["kl"]) == pytest.approx(kl.mean(), rel=1e-12)
    assert float(got["domain"]) == pytest.approx(dom.mean(), rel=1e-12)
    assert float(got["loss"]) == pytest.approx((recon_sc + kl + dom).mean(), rel=1e-12)
    got = davae_loss(out, *args, recon_loss="gaussian")
    assert float(got["recon"]) == pytest.approx((w * 0.5 * ((x - xh) ** 2).sum(1)).mean(), rel=1e-12)


@pytest.mark.parametrize("kind,ref", [("scbean", scbean_reconstruction), ("gaussian", gaussian_reconstruction)])
def test_fused_reconstruction_equals_the_written_term(kind, ref):
    """The fused softplus + reconstruction (training's path) gives the value and the gradient of the term
    as written, applied to softplus(logits) and averaged over cells."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(9, 6, dtype=torch.float64, generator=g, requires_grad=True)
    x = torch.rand(9, 6, dtype=torch.float64, generator=g) * 3
    w = torch.tensor([1.0, 0, 1, 1, 0, 1, 1, 0, 1], dtype=torch.float64)
    fused = softplus_reconstruction(logits, x, w, kind)
    (g_fused,) = torch.autograd.grad(fused, logits)
    written = ref(x, torch.nn.functional.softplus(logits), w).mean()
    (g_written,) = torch.autograd.grad(written, logits)
    assert float(fused.detach()) == pytest.approx(float(written.detach()), rel=1e-12)
    assert torch.allclose(g_fused, g_written, rtol=1e-10, atol=1e-14)
    assert torch.autograd.gradcheck(lambda l: softplus_reconstruction(l, x, w, kind), (logits,))
    # in float32, on a minibatch of the real size, within float32 rounding of the written term
    l32 = torch.randn(128, 2000, generator=g) - 2
    x32 = torch.relu(torch.randn(128, 2000, generator=g))
    w32 = (torch.arange(128) % 2).float()
    want = ref(x32.double(), torch.nn.functional.softplus(l32.double()), w32.double()).mean()
    assert float(softplus_reconstruction(l32, x32, w32, kind)) == pytest.approx(float(want), rel=1e-5)


@pytest.mark.parametrize("kind", ["scbean", "gaussian"])
def test_skipping_zero_weight_cells_changes_nothing(kind):
    """Training computes the output layer and the reconstruction term only for cells of non-zero weight
    (recon_rows); loss and every parameter gradient equal those of the whole minibatch."""
    g = torch.Generator().manual_seed(5)
    x = torch.relu(torch.randn(16, 30, dtype=torch.float64, generator=g))
    b = torch.arange(16) % 2
    onehot = torch.eye(2, dtype=torch.float64)[b]
    w = (b == 0).double()
    module = DAVAEModule(30, 2, (12, 8), 3, encoder_batch=True).double()
    rows = torch.nonzero(w).flatten()
    results = []
    for recon_rows in (None, rows):
        torch.manual_seed(0)  # the same z noise and dropout masks
        module.zero_grad()
        out = module(x, onehot, grl_scale=1.0, recon_rows=recon_rows)
        assert out["x_logits"].shape[0] == (16 if recon_rows is None else 8)
        parts = davae_loss(out, x, b, w, 1.5, kind, recon_rows=recon_rows)
        parts["loss"].backward()
        results.append(((float(parts["recon"]), float(parts["loss"])), [p.grad.clone() for p in module.parameters()]))
    (full, g_full), (sub, g_sub) = results
    assert sub[0] == pytest.approx(full[0], rel=1e-12)  # the reconstruction term
    assert sub[1] == pytest.approx(full[1], rel=1e-12)  # the whole loss
    assert all(torch.allclose(a, c, rtol=1e-10, atol=1e-13) for a, c in zip(g_full, g_sub))


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None  # float32 on CPU
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", cpu)


def test_bf16_autocast_trains_with_float32_loss():
    a = _lognorm(_toy())
    res = davae.integrate(a, preprocess=False, precision="bf16", progress=False, **TINY)
    assert res.obsm["X_davae"].dtype == np.float32 and np.isfinite(res.obsm["X_davae"]).all()
    assert res.uns["davae"]["precision"] == "bf16"
    assert np.isfinite(res.uns["davae"]["history"]["loss"]).all()


@pytest.mark.parametrize("sparse", [True, False])
def test_rows_on_device_train_the_same(sparse):
    """Gathering minibatches from one dense device copy (auto on CUDA) gives the same training as
    densifying CSR rows per step (the CPU default)."""
    from davae.training import MinibatchSource, train

    a = _lognorm(_toy(sparse=sparse))
    codes = a.obs["batch"].cat.codes.to_numpy()
    w = np.ones(a.n_obs, dtype=np.float32)
    src = MinibatchSource(a.X, codes, w, 2, torch.device("cpu"), on_device=True, chunk=7)
    idx = np.array([5, 0, 79, 33])
    x, b, onehot, ww = src(idx)
    dense = a.X.toarray() if sparse else a.X
    assert np.array_equal(x.numpy(), dense[idx]) and b.tolist() == codes[idx].tolist()
    assert onehot.argmax(1).tolist() == codes[idx].tolist() and ww.tolist() == [1.0] * 4
    assert not MinibatchSource(a.X, codes, w, 2, torch.device("cpu")).on_device  # auto: never on CPU
    p = davae.get_params("default", **TINY)
    runs = []
    for on_device in (False, True):
        m = DAVAEModule(a.n_vars, 2, p.hidden_layers, p.latent_dim)
        torch.manual_seed(0)
        m.reset_parameters()
        h = train(m, a.X, codes, w, p, seed=0, progress=False, rows_on_device=on_device)
        runs.append((h["loss"], [t.detach().clone() for t in m.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(u, v) for u, v in zip(runs[0][1], runs[1][1]))


def test_an_epochs_indices_go_to_the_device_in_one_copy(monkeypatch):
    """Minibatch (and weighted-row) indices are sent once per epoch, so on CUDA no step waits on a
    host-to-device copy; every step gets its indices already on the device."""
    from davae import training

    a = _lognorm(_toy(sparse=True))
    codes = a.obs["batch"].cat.codes.to_numpy()
    w = (codes == 0).astype(np.float32)  # zero weights: weighted rows are sent too
    sent, steps = [], []
    to_device, call = training.MinibatchSource.to_device, training.MinibatchSource.__call__

    def spy_to_device(self, index_sets):
        out = to_device(self, index_sets)
        sent.append([i.tolist() for i in out])
        assert [t.tolist() for t in out] == [np.asarray(i).tolist() for i in index_sets]  # values unchanged
        return out

    def spy_call(self, idx, it=None):
        steps.append(it is not None and it.tolist() == np.asarray(idx).tolist())
        return call(self, idx, it)

    monkeypatch.setattr(training.MinibatchSource, "to_device", spy_to_device)
    monkeypatch.setattr(training.MinibatchSource, "__call__", spy_call)
    p = davae.get_params("scbean", epochs=3, min_steps=0, batch_size=32)
    m = DAVAEModule(a.n_vars, 2, p.hidden_layers, p.latent_dim, encoder_batch=True)
    training.train(m, a.X, codes, w, p, seed=0, progress=False)
    rng = np.random.default_rng(0)  # train's minibatch order for seed 0
    assert len(sent) == 3  # one copy per epoch
    for epoch in sent:
        chunks = training._minibatches(np.arange(a.n_obs), 32, rng)
        mixed = [np.flatnonzero(w[c] != 0) for c in chunks if 0 < (w[c] != 0).sum() < len(c)]
        assert mixed  # the toy batches are interleaved, so there is something to send
        # the epoch's minibatches, then the weighted rows of each minibatch that has some of both
        assert epoch == [c.tolist() for c in chunks] + [k.tolist() for k in mixed]
    assert len(steps) == 3 * len(chunks) and all(steps)


def test_validation_split_is_stratified_and_disjoint():
    codes = np.repeat([0, 1, 2], [50, 20, 30])
    tr, va = validation_split(codes, 0.1, seed=0)
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).size == 100
    assert np.bincount(codes[va]).tolist() == [5, 2, 3]
    assert np.array_equal(va, validation_split(codes, 0.1, seed=0)[1])  # seeded
    with pytest.raises(ValueError, match="too few to hold out"):
        validation_split(np.repeat([0, 1], [50, 2]), 0.1, seed=0)
    with pytest.raises(ValueError, match="batch 'stim' has 2 cells"):  # named by its label when known
        validation_split(np.repeat([0, 1], [50, 2]), 0.1, seed=0, batch_names=["ctrl", "stim"])


def test_early_stopping_stops_after_patience_and_keeps_best():
    a = _lognorm(_toy(n_per_batch=60))
    model = davae.DAVAE(a, "batch", epochs=300, min_steps=0, batch_size=16, hidden_layers=[16, 8], latent_dim=3,
                        early_stopping=True, patience=5, lr=1e-2)
    model.fit(seed=0, progress=False)
    h = model.history
    val = np.asarray(h["val_loss"])
    assert len(val) == len(h["loss"]) < 300  # stopped early, one held-out loss per epoch
    # the best epoch (by the 1e-3 relative rule) is exactly `patience` epochs before the last one
    best = 0
    for e in range(1, len(val)):
        if val[best] - val[e] > 1e-3 * abs(val[best]):
            best = e
    assert len(val) - 1 - best == 5
    assert "val_loss" not in davae.DAVAE(a, "batch", **TINY).fit(seed=0, progress=False).history


def test_ganin_ramp():
    """Ganin et al. (2016), eq. 14: lambda_p = 2 / (1 + exp(-gamma p)) - 1 with gamma = 10."""
    assert ganin_lambda(0.0) == 0.0
    # by hand: tanh(5p) == 2 / (1 + exp(-10p)) - 1; tanh(5) = 0.9999092, tanh(1) = 0.7615942, tanh(2.5) = 0.9866143
    assert ganin_lambda(1.0) == pytest.approx(0.9999092, abs=1e-7)
    assert ganin_lambda(0.2) == pytest.approx(0.7615942, abs=1e-7)
    assert ganin_lambda(0.5) == pytest.approx(0.9866143, abs=1e-7)
    for p in np.linspace(0, 1, 11):
        assert ganin_lambda(float(p)) == pytest.approx(np.tanh(5 * p), rel=1e-12, abs=1e-15)


# --- API ------------------------------------------------------------------------------------------------
def test_integrate_writes_the_corrected_expression_on_request():
    a = _lognorm(_toy(n_batches=3))
    kw = dict(preprocess=False, seed=0, device="cpu", progress=False, **TINY)
    out, m = davae.integrate_with_model(a, corrected=True, **kw)
    np.testing.assert_array_equal(out.layers["davae_corrected"], m.corrected())
    assert out.layers["davae_corrected"].shape == a.shape and out.layers["davae_corrected"].dtype == np.float32
    # own batch vs average batch: the same latent, different decodes
    assert not np.allclose(out.layers["davae_corrected"], out.layers["davae_recovered"])
    assert "davae_corrected" not in davae.integrate(a, **kw).layers  # off by default


@pytest.mark.parametrize("sparse", [True, False])
def test_integrate_contract_preprocess_false(sparse):
    a = _lognorm(_toy(sparse=sparse))
    a.obs["extra"] = np.arange(a.n_obs)
    out = davae.integrate(a, preprocess=False, seed=0, device="cpu", progress=False, **TINY)
    assert list(out.obs_names) == list(a.obs_names) and list(out.var_names) == list(a.var_names)
    assert (out.obs["extra"].to_numpy() == np.arange(a.n_obs)).all()
    assert out.obsm["X_davae"].shape == (a.n_obs, 3)
    assert out.layers["davae_recovered"].shape == a.shape
    assert np.isfinite(out.obsm["X_davae"]).all()
    assert out.uns["davae"]["preset"] == "default"
    assert out.uns["davae"]["params"]["epochs"] == 2
    assert len(out.uns["davae"]["history"]["loss"]) == 2
    assert sp.issparse(out.X) == sparse
    assert "X_davae" not in a.obsm  # copy=True leaves the input alone


def _assert_pcs_of(got: np.ndarray, decoded: np.ndarray) -> None:
    """``got`` are the PCs of ``decoded`` (an SVD of the centred matrix), up to each component's sign, and that
    sign is the convention's: the largest loading of each component is positive."""
    centred = decoded - decoded.mean(0)
    want = centred @ np.linalg.svd(centred, full_matrices=False)[2][: got.shape[1]].T
    for j in range(got.shape[1]):
        sign = np.sign(got[:, j] @ want[:, j])
        np.testing.assert_allclose(got[:, j], sign * want[:, j], rtol=0, atol=1e-4 * np.abs(want[:, j]).max())
        loading = centred.T @ got[:, j]
        assert loading[np.abs(loading).argmax()] > 0


def test_corrected_pca_is_the_pca_of_the_expression_decoded_under_the_average_batch():
    a = _lognorm(_toy(n_per_batch=50, n_batches=3))
    m = davae.DAVAE(a, batch_key="batch", **TINY).fit(seed=0, device="cpu", progress=False)
    z = m.transform()
    # the reference: decode every cell under each batch, average the logits' batch terms = the mean one-hot
    mod = m.module.eval()
    with torch.no_grad():
        dec = mod.decode(torch.from_numpy(z), torch.full((len(z), 3), 1 / 3)).double().numpy()
    from davae.training import corrected_pca
    got = corrected_pca(mod, z, 4, batch_size=37)  # several chunks, the last one short
    assert got.shape == (a.n_obs, 4) and got.dtype == np.float32
    _assert_pcs_of(got, dec)
    # chunking changes only the rounding of the sums
    np.testing.assert_allclose(got, corrected_pca(mod, z, 4, batch_size=4096), rtol=0, atol=1e-5)
    # the model's method is the same function of its cells' latent means (no batch codes enter)
    np.testing.assert_array_equal(m.corrected_pca(n_comps=4, latent=z), corrected_pca(mod, z, 4))
    # the batch-corrected expression is that decoded matrix itself; integrate writes it on request
    np.testing.assert_allclose(m.corrected(latent=z), dec, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(m.corrected(), m.corrected(latent=z))
    # fewer cells than genes (30): the cells × cells route gives the same components, same sign convention
    _assert_pcs_of(corrected_pca(mod, z[:20], 4), dec[:20])
    assert corrected_pca(mod, z[:3], 30).shape == (3, 2)  # at most n_cells - 1 components


def test_the_latent_is_the_embedding_unless_the_corrected_pcs_are_asked_for():
    a = _lognorm(_toy())
    kw = dict(preprocess=False, seed=0, device="cpu", progress=False, recover=False, **TINY)
    lat = davae.integrate(a, **kw)
    assert lat.uns["davae"]["embedding"] == "X_davae" and "X_davae_pca" not in lat.obsm
    out = davae.integrate(a, embedding="corrected_pca", embedding_pcs=5, **kw)
    assert out.uns["davae"]["embedding"] == "X_davae_pca" and out.obsm["X_davae_pca"].shape == (a.n_obs, 5)
    assert np.isfinite(out.obsm["X_davae_pca"]).all()
    np.testing.assert_array_equal(lat.obsm["X_davae"], out.obsm["X_davae"])  # the same fit either way
    assert davae.get_params("scbean").embedding == davae.get_params().embedding == "latent"
    with pytest.raises(ValueError, match="embedding must be one of"):
        davae.get_params(embedding="umap")
    joint = davae.integrate(a, embedding="latent_and_pcs", embedding_pcs=5, **kw)
    assert joint.uns["davae"]["embedding"] == "X_davae_joint"
    np.testing.assert_array_equal(joint.obsm["X_davae_pca"], out.obsm["X_davae_pca"])
    np.testing.assert_array_equal(joint.obsm["X_davae_joint"],
                                  davae.training.joint_embedding(lat.obsm["X_davae"], out.obsm["X_davae_pca"]))


def test_joint_embedding_puts_the_pcs_at_the_latents_total_variance():
    rng = np.random.default_rng(0)
    z, pcs = rng.normal(0, 1, (200, 3)), rng.normal(0, 10, (200, 5))
    j = davae.training.joint_embedding(z, pcs)
    assert j.shape == (200, 8) and j.dtype == np.float32
    np.testing.assert_allclose(j[:, :3], z, rtol=1e-6)
    assert j[:, 3:].var(0).sum() == pytest.approx(z.var(0).sum(), rel=1e-5)
    np.testing.assert_allclose(j[:, 3:] / pcs, (j[:, 3] / pcs[:, 0])[0], rtol=1e-5)  # one scale for all PCs
    assert np.all(davae.training.joint_embedding(z, np.zeros((200, 2)))[:, 3:] == 0)  # no variance: no NaN
    with pytest.raises(ValueError, match="same cells"):
        davae.training.joint_embedding(z, pcs[:10])


def test_corrected_pcs_from_the_corrected_layer_equal_a_fresh_decoding_and_decode_once(monkeypatch):
    a = _lognorm(_toy(n_per_batch=50, n_batches=3))  # 150 cells, 30 genes: the genes × genes route
    m = davae.DAVAE(a, batch_key="batch", **TINY).fit(seed=0, device="cpu", progress=False)
    z = m.transform()
    from davae import training
    for cells in (slice(None), slice(0, 20)):  # more cells than genes, and fewer (the cells × cells route)
        dec = training.decode(m.module, z[cells], None, batch_size=37)
        np.testing.assert_array_equal(training.corrected_pca(m.module, z[cells], 4, batch_size=37, decoded=dec),
                                      training.corrected_pca(m.module, z[cells], 4, batch_size=37))
    np.testing.assert_array_equal(m.corrected_pca(n_comps=4, latent=z, corrected=m.corrected(latent=z)),
                                  m.corrected_pca(n_comps=4, latent=z))
    with pytest.raises(ValueError, match="decoded has shape"):
        training.corrected_pca(m.module, z, 4, decoded=m.corrected(latent=z)[:10])
    # integrate with the corrected layer and the corrected PCs decodes the cells once, same results
    kw = dict(preprocess=False, seed=0, device="cpu", progress=False, recover=False, embedding="corrected_pca",
              embedding_pcs=4, **TINY)
    calls = []
    chunks = training._decoded_chunks
    monkeypatch.setattr(training, "_decoded_chunks", lambda *a_, **k: calls.append(1) or chunks(*a_, **k))
    both = davae.integrate(a, corrected=True, **kw)
    assert len(calls) == 1
    pcs_only = davae.integrate(a, **kw)
    np.testing.assert_array_equal(both.obsm["X_davae_pca"], pcs_only.obsm["X_davae_pca"])
    layer_only = davae.integrate(a, corrected=True, **dict(kw, embedding="latent"))
    np.testing.assert_array_equal(both.layers["davae_corrected"], layer_only.layers["davae_corrected"])


def test_integrate_preprocess_selects_genes():
    a = _toy(n_genes=40)
    out = davae.integrate(a, preset="scbean", n_top_genes=25, seed=0, device="cpu", progress=False,
                          **{k: v for k, v in TINY.items()})
    assert out.n_vars == 25 and list(out.obs_names) == list(a.obs_names)
    assert set(out.var_names) <= set(a.var_names)
    np.testing.assert_array_equal(out.layers["counts"].toarray(), a[:, out.var_names].X.toarray())
    assert out.X.max() < 20  # log-normalised, not counts


def test_same_seed_same_embedding():
    a = _lognorm(_toy())
    kw = dict(preprocess=False, device="cpu", progress=False, **TINY)
    e1 = davae.integrate(a, seed=3, **kw).obsm["X_davae"]
    e2 = davae.integrate(a, seed=3, **kw).obsm["X_davae"]
    e3 = davae.integrate(a, seed=4, **kw).obsm["X_davae"]
    np.testing.assert_array_equal(e1, e2)
    assert not np.allclose(e1, e3)


def test_model_save_load_roundtrip(tmp_path):
    a = _lognorm(_toy())
    m = davae.DAVAE(a, batch_key="batch", **TINY).fit(seed=0, device="cpu", progress=False)
    z = m.transform()
    m.save(tmp_path / "m.pt")
    m2 = davae.DAVAE.load(tmp_path / "m.pt", adata=a, device="cpu")
    np.testing.assert_allclose(m2.transform(), z, rtol=0, atol=1e-6)
    np.testing.assert_allclose(m2.recover(), m.recover(), rtol=0, atol=1e-5)
    assert m2.recover(target_batch="b0").shape == a.shape
    assert m2.history == m.history and m2.params == m.params
    assert m2.fit_info == m.fit_info and m.fit_info["prior_fallback_applied"] is False


def test_cli_integrate(tmp_path):
    a = _toy()
    a.write_h5ad(tmp_path / "in.h5ad")
    rc = cli_main(["integrate", str(tmp_path / "in.h5ad"), str(tmp_path / "out.h5ad"), "--batch-key", "batch",
                   "--epochs", "2", "--min-steps", "0", "--batch-size", "16", "--hidden-layers", "16,8",
                   "--n-top-genes", "20", "--no-progress", "--save-model", str(tmp_path / "m.pt")])
    assert rc == 0
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert list(out.obs_names) == list(a.obs_names) and list(out.obs.columns) == list(a.obs.columns)
    assert out.n_vars == 20 and "X_davae" in out.obsm and "davae_recovered" in out.layers
    assert (tmp_path / "m.pt").exists()
    assert out.uns["davae"]["precision"] == "auto" and not out.uns["davae"]["params"]["early_stopping"]


def test_cli_precision_and_early_stopping(tmp_path):
    _toy(n_per_batch=60).write_h5ad(tmp_path / "in.h5ad")
    rc = cli_main(["integrate", str(tmp_path / "in.h5ad"), str(tmp_path / "out.h5ad"), "--epochs", "3",
                   "--min-steps", "0", "--batch-size", "16", "--hidden-layers", "16,8", "--n-top-genes", "20",
                   "--no-progress", "--precision", "fp32", "--early-stopping"])
    assert rc == 0
    u = ad.read_h5ad(tmp_path / "out.h5ad").uns["davae"]
    assert u["precision"] == "fp32" and u["params"]["early_stopping"]
    assert len(u["history"]["val_loss"]) == len(u["history"]["loss"]) == 3


def test_cli_error_is_one_line(tmp_path, capsys):
    a = _toy()
    a.write_h5ad(tmp_path / "in.h5ad")
    rc = cli_main(["integrate", str(tmp_path / "in.h5ad"), str(tmp_path / "o.h5ad"), "--batch-key", "nope"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "batch key 'nope'" in err
    assert not (tmp_path / "o.h5ad").exists()


# --- bad input ------------------------------------------------------------------------------------------
def _bad(kind: str) -> tuple[ad.AnnData, dict]:
    a = _lognorm(_toy(sparse=False))
    kw: dict = {}
    if kind == "missing_key":
        kw["batch_key"] = "sample"
    elif kind == "one_batch":
        a.obs["batch"] = "b0"
    elif kind == "nan":
        a.X[3, 2] = np.nan
    elif kind == "inf":
        a.X[3, 2] = np.inf
    elif kind == "negative":
        a.X[1, 1] = -0.5
    elif kind == "no_genes":
        a = a[:, []].copy()
    elif kind == "missing_labels":
        a.obs["batch"] = a.obs["batch"].astype(object)
        a.obs.iloc[0, a.obs.columns.get_loc("batch")] = np.nan
    elif kind == "text_matrix":
        a = ad.AnnData(X=np.full((80, 3), "x", dtype=object), obs=a.obs)
    elif kind == "bad_param":
        kw["not_a_param"] = 1
    return a, kw


@pytest.mark.parametrize("kind,match", [
    ("missing_key", "batch key 'sample' not in adata.obs"),
    ("one_batch", "only one batch"),
    ("nan", "NaN or inf"),
    ("inf", "NaN or inf"),
    ("negative", "negative values"),
    ("no_genes", "at least one cell and one gene"),
    ("missing_labels", "missing labels"),
    ("text_matrix", "convert it to float32"),
    ("bad_param", "unknown DAVAE parameter"),
])
def test_bad_input_one_line_errors(kind, match):
    a, kw = _bad(kind)
    kw = {"batch_key": "batch", "preprocess": False, "device": "cpu", "progress": False, **TINY, **kw}
    with pytest.raises(ValueError, match=match) as e:
        davae.integrate(a, **kw)
    assert "\n" not in str(e.value)


def test_numeric_batch_labels_are_categories():
    a = _lognorm(_toy())
    a.obs["batch"] = (a.obs["batch"] == "b1").astype(int)  # 0/1 integers
    out = davae.integrate(a, preprocess=False, device="cpu", progress=False, **TINY)
    assert out.uns["davae"]["batch_categories"] == ["0", "1"]


# --- real data ------------------------------------------------------------------------------------------
def _mix(x, batch, k=15):
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    return float((batch[idx] != batch[:, None]).mean())


def _purity(x, labels, k=15):
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    return float((labels[idx] == labels[:, None]).mean())


def test_real_data_mixes_better_than_pca_and_keeps_types():
    import scanpy as sc

    # the committed demo copy (data/demo): the test always runs, never skipped for want of ../shared/data
    prep = davae.preprocess(ad.read_h5ad(CELLBENCH), "batch")
    b, ct = prep.obs["batch"].to_numpy(), prep.obs["cell_type"].to_numpy()
    pca = prep.copy()
    sc.pp.pca(pca, n_comps=30, random_state=0)
    out = davae.integrate(prep, preprocess=False, seed=0, device="cpu", progress=False, min_steps=300)
    z = out.obsm["X_davae"]
    mix_pca, mix_dav = _mix(pca.obsm["X_pca"], b), _mix(z, b)
    pur_pca, pur_dav = _purity(pca.obsm["X_pca"], ct), _purity(z, ct)
    print(f"15-NN other-batch fraction PCA {mix_pca:.3f} DAVAE {mix_dav:.3f}; purity PCA {pur_pca:.3f} DAVAE {pur_dav:.3f}")
    assert mix_dav > 2 * mix_pca, (mix_dav, mix_pca)
    assert pur_dav > 0.9, (pur_dav, pur_pca)
