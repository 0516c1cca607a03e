"""Noise that falls with the step (bayes.noise) against dense references.

With each cell's noise variance ``sigma^2 v`` the weighted per-curve sums must give the log
density of the curve's residuals under the dense covariance ``sigma^2 diag(v) + tau^2 J (+ kappa^2
x x^T)``, and the Woodbury run likelihood that of ``diag(sigma_d^2 v) + Z Sigma Z^T``; the
offset's conditional must be dense Gaussian conditioning; the PyMC graph must equal the numpy
likelihood; and a fit must learn a falling noise, save it, and forecast later checkpoints with
the floor's noise.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal, multivariate_t

from bimix_bayes.bayes.correlated import RunSums, effect_cholesky, run_log_likelihood
from bimix_bayes.bayes.graph import build_pymc_model
from bimix_bayes.bayes.likelihood import CurveLayout, curve_log_likelihood, offset_conditional
from bimix_bayes.bayes.model import BiMixModel, pointwise_log_likelihood
from bimix_bayes.bayes.noise import (
    NOISE_EXCESS,
    NOISE_POWER_ATTR,
    NOISE_X0_ATTR,
    early_noise_decay,
    noise_variance_factor,
    weighted_sums,
)
from bimix_bayes.bayes.spec import SpecError, merge_spec
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.data.table import MixtureData
from tests.test_laws import _data, _graph_loglik, _posterior_at

X = np.log(np.array([1.0, 2.0, 4.0, 8.0, 16.0])) - np.log(4.0)


def _cell_variance(seed: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Residuals and variance factors ``v`` of ``n_rows`` curves at the steps ``X``."""
    rng = np.random.default_rng(seed)
    eta = rng.uniform(0.5, 3.0, (n_rows, 1))
    v = noise_variance_factor(early_noise_decay(X[None, :], X[0], power=1.0), eta)
    return rng.normal(0, 0.03, (n_rows, len(X))), v


@pytest.mark.parametrize("slope", [False, True])
@pytest.mark.parametrize("family", ["normal", "student_t"])
@pytest.mark.parametrize("missing", [False, True])
def test_weighted_curve_sums_give_the_dense_density(slope, family, missing):
    e, v = _cell_variance(1, 1)
    mask = np.ones_like(e)
    if missing:
        mask[0, 1] = 0.0
    sigma, tau, kappa = 0.012, 0.02, 0.01
    sums = weighted_sums(e, mask, X[None, :], v)
    got = curve_log_likelihood(
        sums.s1,
        sums.s2,
        sums.n,
        sigma,
        tau,
        family=family,
        nu=4.0,
        slope=(sums.sxe, sums.sx, sums.sxx, kappa) if slope else None,
        count=mask.sum(axis=-1),
        log_v=sums.log_v,
    )
    keep = mask[0] > 0
    x, resid = X[keep], e[0, keep]
    cov = sigma**2 * np.diag(v[0, keep]) + tau**2 * np.ones((keep.sum(), keep.sum()))
    if slope:
        cov = cov + kappa**2 * np.outer(x, x)
    if family == "normal":
        want = multivariate_normal(np.zeros(keep.sum()), cov).logpdf(resid)
    else:
        want = multivariate_t(np.zeros(keep.sum()), cov, df=4.0).logpdf(resid)
    np.testing.assert_allclose(got[0], want, rtol=1e-10)


def test_constant_noise_is_the_plain_sums():
    """``v = 1`` everywhere gives exactly the unweighted likelihood."""
    e, _ = _cell_variance(2, 3)
    mask = np.ones_like(e)
    plain = curve_log_likelihood(e.sum(-1), (e**2).sum(-1), 5.0, 0.01, 0.02)
    sums = weighted_sums(e, mask, X[None, :], np.ones_like(e))
    weighted = curve_log_likelihood(
        sums.s1, sums.s2, sums.n, 0.01, 0.02, count=5.0, log_v=sums.log_v
    )
    np.testing.assert_allclose(weighted, plain, rtol=1e-12)


def test_offset_conditional_is_dense_gaussian_conditioning():
    e, v = _cell_variance(3, 1)
    sigma, tau = 0.01, 0.03
    sums = weighted_sums(e, np.ones_like(e), X[None, :], v)
    cond = offset_conditional(sums.s1, sums.s2, sums.n, sigma, tau, count=5.0)
    cov_e = sigma**2 * np.diag(v[0]) + tau**2 * np.ones((5, 5))
    gain = tau**2 * np.ones(5) @ np.linalg.inv(cov_e)
    np.testing.assert_allclose(cond["mean"][0], gain @ e[0], rtol=1e-10)
    np.testing.assert_allclose(cond["var"][0], tau**2 - gain @ (tau**2 * np.ones(5)), rtol=1e-10)


@pytest.mark.parametrize("family", ["normal", "student_t"])
def test_weighted_run_sums_give_the_dense_woodbury_density(family):
    """Correlated run effects: the run's residual vector has covariance ``diag(sigma_d^2 v) +
    Z Sigma Z^T``; the Woodbury form on weighted sums must equal it."""
    d = 3
    e, v = _cell_variance(4, d)
    rng = np.random.default_rng(4)
    sigma = rng.uniform(0.005, 0.03, d)
    a = rng.normal(size=(d, d))
    corr = a @ a.T + np.eye(d)
    sd = np.sqrt(np.diag(corr))
    l_u = effect_cholesky(rng.uniform(0.01, 0.04, d), np.linalg.cholesky(corr / np.outer(sd, sd)))
    w = weighted_sums(e, np.ones_like(e), np.broadcast_to(X, e.shape), v)
    sums = RunSums(
        n=w.n[None],
        sx=w.sx[None],
        sxx=w.sxx[None],
        s1=w.s1[None],
        s2=w.s2[None],
        sxe=w.sxe[None],
        count=np.full((1, d), 5.0),
        log_v=w.log_v[None],
    )
    got = run_log_likelihood(sums, sigma, l_u, family=family, nu=4.0)
    z = np.kron(np.eye(d), np.ones((5, 1)))
    cov = np.diag((sigma[:, None] ** 2 * v).ravel()) + z @ l_u @ l_u.T @ z.T
    if family == "normal":
        want = multivariate_normal(np.zeros(5 * d), cov).logpdf(e.ravel())
    else:
        want = multivariate_t(np.zeros(5 * d), cov, df=4.0).logpdf(e.ravel())
    np.testing.assert_allclose(got[0], want, rtol=1e-10)


@pytest.mark.parametrize(
    "likelihood",
    [
        {"run_correlation": False},
        {"run_correlation": False, "run_slope": True},
        {"run_correlation": True},
        {"run_correlation": True, "run_slope": True},
        {"run_correlation": "common"},
    ],
)
@pytest.mark.parametrize("grouped", [False, True])
def test_the_graph_equals_the_numpy_likelihood(likelihood, grouped):
    """The PyMC graph (weights from its ``noise_decay`` data) and the numpy likelihood (weights
    from the posterior's attributes) agree, per curve, per run and per run design."""
    if grouped and likelihood["run_correlation"] is False:
        pytest.skip("grouping applies to correlated run effects")
    layout = CurveLayout.from_data(_data(), 3e3)
    lik = {**likelihood, "early_noise_scale": 2.0, "early_noise_power": 0.7}
    spec = merge_spec({"likelihood": lik})
    model = build_pymc_model(layout, spec, grouped=grouped)
    rng = np.random.default_rng(8)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}
    post = _posterior_at(model, point)
    assert NOISE_EXCESS in post
    post.attrs |= {"law": "bimix", NOISE_POWER_ATTR: 0.7, NOISE_X0_ATTR: layout.noise_x0}
    loglik = _graph_loglik(model, point)
    expected = float(pointwise_log_likelihood(post, layout, spec)["loss_run"].sum())
    assert np.isclose(loglik, expected, rtol=1e-9)
    # and the weights matter: the same point under constant noise gives another value
    flat = post.drop_vars(NOISE_EXCESS)
    off = merge_spec({"likelihood": {**likelihood, "early_noise_scale": 0.0}})
    constant = float(pointwise_log_likelihood(flat, layout, off)["loss_run"].sum())
    assert not np.isclose(constant, expected, rtol=1e-6)


def test_the_spec_refuses_a_negative_scale_or_a_zero_power():
    with pytest.raises(SpecError, match="early_noise_scale"):
        merge_spec({"likelihood": {"early_noise_scale": -1.0}})
    with pytest.raises(SpecError, match="early_noise_power"):
        merge_spec({"likelihood": {"early_noise_power": 0.0}})


def test_a_fit_saved_before_the_option_keeps_its_constant_noise():
    """A file whose spec has no early_noise_scale was fitted with constant noise: it loads as
    such (and is not asked for a noise_excess it never had)."""
    import json

    import arviz as az

    from bimix_bayes.bayes.persistence import spec_from_idata
    from bimix_bayes.bayes.spec import load_spec

    old = load_spec()
    for key in ("early_noise_scale", "early_noise_power"):
        del old["likelihood"][key]
    idata = az.InferenceData()
    idata.attrs["spec"] = json.dumps(old)
    spec = spec_from_idata(idata)
    assert spec["likelihood"]["early_noise_scale"] == 0.0
    assert load_spec()["likelihood"]["early_noise_scale"] > 0  # while new fits use it


def _falling_noise_data() -> MixtureData:
    """Simulated runs whose first checkpoints are 4x noisier than the later ones."""
    truth = default_parameters().iloc[:3]
    steps = [1e3, 2e3, 4e3, 8e3, 1.6e4, 3.2e4]
    mixtures = random_mixtures(10, list(truth.index), seed=2)
    data = simulate(truth, mixtures, steps, noise_sd=0.0, seed=2)  # run offsets only
    obs = data.observations.copy()
    rng = np.random.default_rng(7)
    sd = 0.004 * np.sqrt(1 + 15 * (1e3 / obs["step"]) ** 2)
    obs["loss"] *= np.exp(rng.normal(0, 1, len(obs)) * sd)
    return MixtureData.from_frames(data.mixtures, obs)


@pytest.mark.slow
def test_a_fit_learns_the_falling_noise_and_forecasts_with_the_floor(tmp_path):
    """End to end (the default spec, less the widths both fits would share beyond the data:
    the exponent's drift and the shared bend): the fit finds a large excess at the first
    checkpoint, saves and loads it, and the 90 % interval of an observed run's later checkpoint
    is narrower than under a constant noise (which averages the noisy first checkpoints in)."""
    from bimix_bayes import load_fit, predict

    data = _falling_noise_data()
    fits = {}
    for name, lik in (("falling", {}), ("constant", {"early_noise_scale": 0.0})):
        spec = {
            "likelihood": lik,
            "law": {"alpha_drift": False},
            "discrepancy": {"extrapolation": False},
            "sampler": {"draws": 300, "tune": 300},
        }
        model = BiMixModel(spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model.fit(data, seed=0)
        fits[name] = load_fit(model.save(tmp_path / f"{name}.nc"))
    eta = fits["falling"].posterior[NOISE_EXCESS].median(("chain", "draw"))
    assert float(eta.min()) > 1.5  # the truth is sqrt(15) ~ 3.9
    run = str(data.runs[0])
    width = {}
    for name, idata in fits.items():
        table = predict(idata, steps=[6.4e4], runs=[run])
        width[name] = float((table["upper_90"] - table["lower_90"]).mean())
    assert width["falling"] < 0.8 * width["constant"]
    assert pd.notna(width["falling"])


@pytest.mark.parametrize(
    ("noise", "slopes", "family"),
    [(True, False, "normal"), (False, False, "normal"), (True, True, "normal"),
     (True, False, "student_t")],
)  # fmt: skip
def test_the_seed_spread_table_compares_like_with_like(noise, slopes, family):
    """``model_sd`` is the model's between-seed sd at the very cells the measured spread pools
    (weights replicates - 1): ``tau^2 + sigma^2 v(s)`` (+ ``kappa^2 x^2`` with slopes, times
    ``nu / (nu - 2)`` under Student-t), larger than ``sqrt(tau^2 + sigma^2)`` when the
    replicates' common steps include the noisy first ones."""
    import json

    import arviz as az
    import xarray as xr

    from bimix_bayes.bayes.summary import seed_spread_table
    from bimix_bayes.data.replicates import replicate_cells

    params = default_parameters().iloc[:2]
    mixtures = random_mixtures(3, list(params.index), min_share=0.1, seed=0)
    mixtures.loc["rep"] = mixtures.iloc[0].to_numpy()  # a second seed of the first mixture
    steps = np.array([100.0, 200.0, 400.0, 800.0])
    data = simulate(params, mixtures, steps, seed=1)
    domains = list(data.domains)
    sigma, tau, eta, kappa = [0.01, 0.02], [0.03, 0.01], [2.0, 0.5], [0.004, 0.002]
    power, x0, s_ref, nu = 1.0, 0.0, 100.0, 5.0
    values = [("sigma", sigma), ("tau", tau)]
    values += [(NOISE_EXCESS, eta)] if noise else []
    values += [("kappa", kappa)] if slopes else []
    post = xr.Dataset(
        {
            name: (("chain", "draw", "domain"), np.broadcast_to(value, (1, 2, 2)).copy())
            for name, value in values
        },
        coords={"domain": domains},
        attrs={NOISE_POWER_ATTR: power, NOISE_X0_ATTR: x0} if noise else {},
    )
    spec = merge_spec({"likelihood": {"family": family, "nu": nu, "run_slope": slopes,
                                      "early_noise_scale": 3.0 if noise else 0.0}})  # fmt: skip
    idata = az.InferenceData(posterior=post)
    idata.attrs.update(s_ref=s_ref, spec=json.dumps(spec))
    table = seed_spread_table(idata, data)
    cells = replicate_cells(data).reset_index()
    scale = nu / (nu - 2) if family == "student_t" else 1.0
    for i, domain in enumerate(domains):
        c = cells[cells["domain"] == domain]
        x = np.log(c["step"].to_numpy() / s_ref)
        v = 1 + eta[i] ** 2 * np.exp(-2 * power * (x - x0)) if noise else 1.0
        var = scale * (tau[i] ** 2 + sigma[i] ** 2 * v + (kappa[i] * x) ** 2 * slopes)
        expected = np.sqrt(np.average(var, weights=c["count"] - 1))
        assert np.isclose(table.loc[domain, "model_sd"], expected, atol=5e-5)
        if noise or slopes or family == "student_t":
            assert table.loc[domain, "model_sd"] > np.hypot(tau[i], sigma[i])
    assert set(table.columns) >= {"seed_sd", "mixture_sd", "snr", "model_sd", "tau"}
