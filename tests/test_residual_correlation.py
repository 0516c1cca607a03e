"""A new run's offsets move together across domains as the fitted runs' do, when the likelihood
treats run effects as independent (:mod:`bimix_bayes.bayes.residual_correlation`)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.bayes.residual_correlation import (
    MIN_EIGENVALUE,
    MIN_RUNS,
    RESIDUAL_CORRELATION_ATTR,
    constant_correlation_shrinkage,
    correlation_attr,
    residual_correlation,
    stored_residual_correlation,
)
from bimix_bayes.data.labels import ALL_DOMAINS

STEPS = np.geomspace(1_000, 20_000, 6)


@pytest.fixture(scope="module")
def shared_luck(quick_fit, shared_factor_study):
    data = shared_factor_study(0.03, ("run",), STEPS, seed=4, n_runs=16, noise_sd=0.004)
    return data, quick_fit(data)


def test_runs_that_share_their_luck_give_new_runs_a_wider_mean_over_domains(
    shared_luck, forecast_log_sd
):
    """The fitted runs' offsets share a part across domains: the fit stores a correlation well
    above 0, and a new mixture's mean over domains spreads as a run's shared luck does, while
    each domain's own spread is what it was with independent offsets."""
    data, idata = shared_luck
    corr = stored_residual_correlation(idata.posterior)
    off_diagonal = corr[~np.eye(len(corr), dtype=bool)]
    assert off_diagonal.mean() > 0.5, corr.round(2)
    independent = idata.copy()
    independent.posterior.attrs.pop(RESIDUAL_CORRELATION_ATTR)
    new = {"mixtures": data.mixtures.iloc[:3]}
    with_corr = forecast_log_sd(idata, [STEPS[-1]], **new)
    without = forecast_log_sd(independent, [STEPS[-1]], **new)
    for domain in data.domains:
        assert with_corr[domain] == pytest.approx(without[domain], rel=0.1), domain
    assert with_corr[ALL_DOMAINS] > 1.3 * without[ALL_DOMAINS]


def test_independent_luck_stays_independent_and_none_stores_nothing(quick_fit, shared_factor_study):
    """Offsets drawn independently per domain: the stored correlation stays near 0 (its
    entries shrunk toward their mean, itself near 0); new_run_correlation = "none" stores none
    (forecasts as before)."""
    data = shared_factor_study(0.0, ("run",), STEPS, seed=5, n_runs=16, noise_sd=0.004)
    corr = stored_residual_correlation(quick_fit(data).posterior)
    assert np.abs(corr[~np.eye(len(corr), dtype=bool)]).mean() < 0.3, corr.round(2)
    plain = quick_fit(data, {"likelihood": {"new_run_correlation": "none"}})
    assert stored_residual_correlation(plain.posterior) is None


def test_a_saved_fit_keeps_its_correlation(shared_luck, tmp_path):
    from bimix_bayes import load_fit, save_fit

    _, idata = shared_luck
    loaded = load_fit(save_fit(idata, tmp_path / "fit.nc"))
    np.testing.assert_allclose(
        stored_residual_correlation(loaded.posterior),
        stored_residual_correlation(idata.posterior),
        atol=1e-6,
    )


def test_the_next_run_design_sees_the_same_covariance(shared_luck):
    """`bimix next` scores a fantasy run with the covariance forecasts use (the checkpoint
    noise's correlation, tested in tests/test_next_run.py, set aside)."""
    from bimix_bayes.bayes.checkpoint_noise import NOISE_CORRELATION_ATTR
    from bimix_bayes.decision.next_run import _run_covariance

    _, idata = shared_luck
    post = idata.posterior.copy()
    post.attrs.pop(NOISE_CORRELATION_ATTR, None)
    cov = _run_covariance(post, np.arange(5), 0.0)
    sd = np.sqrt(np.einsum("dii->di", cov))
    tau = post["tau"].transpose("chain", "draw", "domain").to_numpy().reshape(-1, sd.shape[1])
    corr = stored_residual_correlation(post)
    expected = tau[:5, :, None] * corr * tau[:5, None, :]
    off = ~np.eye(corr.shape[0], dtype=bool)
    np.testing.assert_allclose(cov[:, off], expected[:, off], rtol=1e-9)


def test_too_few_runs_leave_a_pair_uncorrelated():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(2, 20, MIN_RUNS + 2, 1))
    means = shared + 0.3 * rng.normal(size=(2, 20, MIN_RUNS + 2, 3))
    assert residual_correlation(means[:, :, : MIN_RUNS - 1]) is None
    means[:, :, :3, 1] = np.nan  # three runs without domain 1: its pairs have 3 runs in common
    corr = residual_correlation(means)
    assert corr[0, 1] == corr[1, 2] == 0.0 and corr[0, 2] != 0.0
    means[:, :, :, 2] = np.nan
    assert residual_correlation(means) is None  # no pair left


def test_runs_missing_a_domain_still_count_for_the_domains_they_have():
    """Zero-share designs (every run lacks some domain) used to fall back to independence:
    each pair of domains is now estimated over the runs that have both."""
    rng = np.random.default_rng(2)
    n_runs, n_domains = 40, 5
    means = rng.normal(size=(2, 30, n_runs, 1)) + 0.5 * rng.normal(size=(2, 30, n_runs, n_domains))
    complete = residual_correlation(means)
    for run in range(n_runs):  # no run is complete
        means[:, :, run, run % n_domains] = np.nan
    corr = residual_correlation(means)
    off = ~np.eye(n_domains, dtype=bool)
    assert corr[off].mean() > 0.6  # the simulated runs share most of their luck (0.8)
    np.testing.assert_allclose(corr[off], complete[off], atol=0.1)


def test_few_runs_keep_the_average_correlation():
    """The mean over domains depends on the average correlation; shrinking the entries toward
    their mean keeps most of it with 8 runs that share their luck (only the mean's own noise
    pulls it toward 0), where shrinking toward the identity lost most of it."""
    rng = np.random.default_rng(6)
    means = rng.normal(size=(2, 40, 8, 1)) + 0.6 * rng.normal(size=(2, 40, 8, 5))
    corr = residual_correlation(means)
    centred = means - means.mean(axis=2, keepdims=True)
    cov = np.einsum("cdri,cdrj->ij", centred, centred)
    raw = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    off = ~np.eye(5, dtype=bool)
    assert 0.8 * raw[off].mean() < corr[off].mean() <= raw[off].mean()
    assert corr[off].std() <= raw[off].std()


@settings(max_examples=40, deadline=None)
@given(
    n_runs=st.integers(MIN_RUNS, 30),
    n_domains=st.integers(2, 8),
    shared=st.floats(0.0, 3.0),
    missing=st.sampled_from([0.0, 0.2, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_the_correlation_is_always_a_valid_one(n_runs, n_domains, shared, missing, seed):
    """Whatever the runs and whichever domains they lack: symmetric, unit diagonal, positive
    definite (its Cholesky exists)."""
    rng = np.random.default_rng(seed)
    common = shared * rng.normal(size=(2, 10, n_runs, 1))
    means = common + rng.normal(size=(2, 10, n_runs, n_domains))
    means[:, :, rng.random((n_runs, n_domains)) < missing] = np.nan
    corr = residual_correlation(means)
    if corr is None:  # no pair of domains shared by enough runs
        return
    np.testing.assert_allclose(corr, corr.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    np.linalg.cholesky(corr)


def test_summary_says_how_new_runs_offsets_move_together(shared_luck, tmp_path, capsys):
    from bimix_bayes import save_fit
    from bimix_bayes.cli.app import main

    _, idata = shared_luck
    path = save_fit(idata, tmp_path / "fit.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["summary", str(path), "--bootstrap", "0", "-q"]) == 0
    out = capsys.readouterr().out
    assert "new runs' offsets are drawn correlated across domains" in out
    mean = float(re.search(r"mean correlation (-?[\d.]+)", out).group(1))
    assert mean > 0.6  # the simulated runs share most of their luck


def test_fresh_offsets_follow_the_stored_correlation_under_either_family(shared_luck):
    """The offsets drawn for new mixtures correlate across domains as ``C`` says, also under a
    Student-t likelihood (one scale per run: scales drawn per domain would shrink it), and a
    fit saved before ``size_domain_correlation`` keeps the step's correlation for its size error."""
    import json

    from bimix_bayes.bayes.persistence import data_from_idata, spec_from_idata
    from bimix_bayes.bayes.targets import run_effects

    data, idata = shared_luck
    corr = stored_residual_correlation(idata.posterior)
    table = data.mixtures.iloc[:4]
    for family in ("normal", "student_t"):
        spec = json.loads(idata.attrs["spec"])
        spec["likelihood"].update(family=family, nu=4.0)
        fit = idata.copy()
        fit.attrs = {**idata.attrs, "spec": json.dumps(spec)}
        rng = np.random.default_rng(0)
        u = run_effects(fit, data_from_idata(fit), table, ["new mixture"] * 4, rng)["offset"]
        tau = idata.posterior["tau"]
        z = (u / tau).transpose("chain", "draw", "mixture", "domain").to_numpy()
        drawn = np.corrcoef(z.reshape(-1, z.shape[-1]).T)
        np.testing.assert_allclose(drawn, corr, atol=0.05, err_msg=family)
    old = json.loads(idata.attrs["spec"])
    old["discrepancy"].pop("size_domain_correlation")
    old["discrepancy"]["domain_correlation"] = 0.5
    fit = idata.copy()
    fit.attrs = {**idata.attrs, "spec": json.dumps(old)}
    assert spec_from_idata(fit)["discrepancy"]["size_domain_correlation"] == 0.5


def _ledoit_wolf_cov_cor(x: np.ndarray) -> float:
    """Dense reference: the intensity of Ledoit and Wolf's covCor (constant-correlation target;
    "Honey, I shrunk the sample covariance matrix", 2004), transcribed from their published
    code, on complete data."""
    t, n = x.shape
    x = x - x.mean(axis=0)
    sample = x.T @ x / t
    var = np.diag(sample)
    sqrtvar = np.sqrt(var)
    rbar = (np.sum(sample / np.outer(sqrtvar, sqrtvar)) - n) / (n * (n - 1))
    prior = rbar * np.outer(sqrtvar, sqrtvar)
    np.fill_diagonal(prior, var)
    y = x**2
    phi_mat = y.T @ y / t - 2 * (x.T @ x) * sample / t + sample**2
    phi = phi_mat.sum()
    term1 = (x**3).T @ x / t
    help_ = x.T @ x / t
    theta = term1 - np.diag(help_)[:, None] * sample - help_ * var[:, None] + var[:, None] * sample
    np.fill_diagonal(theta, 0.0)
    rho = np.trace(phi_mat) + rbar * np.sum(np.outer(1 / sqrtvar, sqrtvar) * theta)
    gamma = np.sum((sample - prior) ** 2)
    return float(max(0.0, min(1.0, (phi - rho) / gamma / t)))


@pytest.mark.parametrize("n_runs", [6, 20, 80])
def test_the_constant_correlation_intensity_matches_ledoit_and_wolf(n_runs):
    """On complete standardised runs, the entries' intensity is covCor's (applied to the
    correlation matrix, as here)."""
    rng = np.random.default_rng(n_runs)
    table = rng.normal(size=(n_runs, 5)) + 0.6 * rng.normal(size=(n_runs, 1))
    table[:, :2] += 1.5 * rng.normal(size=(n_runs, 1))  # not quite a constant correlation
    standard = (table - table.mean(axis=0)) / table.std(axis=0)
    expected = _ledoit_wolf_cov_cor(standard)
    assert 0.0 < expected < 1.0  # not clipped: the formula itself is compared
    entries, _ = constant_correlation_shrinkage(table, ~np.eye(5, dtype=bool))
    assert entries == pytest.approx(expected, rel=1e-9)


def test_the_mean_correlation_shrinks_by_its_own_noise():
    """Two domains, one pair: the mean is the entry, and its own estimation noise is all the
    shrinkage; four runs with independent luck then give little correlation, while many runs
    that share their luck keep it (dense reference for the variance: the bootstrap of runs)."""
    rng = np.random.default_rng(0)
    few = [
        residual_correlation(rng.normal(size=(1, 20, 4, 2)) * 0.1 + rng.normal(size=(1, 1, 4, 2)))
        for _ in range(200)
    ]
    assert np.mean([abs(c[0, 1]) for c in few]) < 0.3  # unshrunk: about 0.46
    shared = rng.normal(size=(2, 20, 60, 1)) + 0.5 * rng.normal(size=(2, 20, 60, 2))
    assert residual_correlation(shared)[0, 1] > 0.7
    table = rng.normal(size=(30, 4)) + rng.normal(size=(30, 1))
    _, mean = constant_correlation_shrinkage(table, ~np.eye(4, dtype=bool))
    z = (table - table.mean(axis=0)) / table.std(axis=0)
    rbar = (z.T @ z / 30)[~np.eye(4, dtype=bool)].mean()
    boot = []
    for _ in range(2000):
        b = z[rng.integers(0, 30, 30)]
        boot.append((b.T @ b / 30)[~np.eye(4, dtype=bool)].mean())
    assert mean == pytest.approx(np.var(boot) / rbar**2, rel=0.15)


def test_pairs_not_estimated_do_not_set_the_shrinkage():
    rng = np.random.default_rng(3)
    table = rng.normal(size=(12, 4)) + rng.normal(size=(12, 1))
    table[:10, 1] = np.nan  # domain 1 seen on 2 runs: its pairs are not estimated
    pairs = ~np.eye(4, dtype=bool)
    pairs[1, :] = pairs[:, 1] = False
    only = constant_correlation_shrinkage(table[:, [0, 2, 3]], ~np.eye(3, dtype=bool))
    assert constant_correlation_shrinkage(table, pairs) == pytest.approx(only)


@settings(max_examples=60, deadline=None)
@given(
    n_runs=st.integers(MIN_RUNS, 13),
    n_domains=st.integers(2, 8),
    missing=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_a_stored_correlation_loads_back(n_runs, n_domains, missing, seed):
    """The matrix a fit stores (rounded to 6 decimals) is one the fit accepts when it reads it
    back: pairwise estimates that are not positive definite are moved far enough from 0."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    means = rng.normal(size=(2, 10, n_runs, 1)) + rng.normal(size=(2, 10, n_runs, n_domains))
    means[:, :, rng.random((n_runs, n_domains)) < missing] = np.nan
    corr = residual_correlation(means)
    if corr is None:
        return
    assert np.linalg.eigvalsh(corr).min() >= MIN_EIGENVALUE / 2  # the unit diagonal moves it
    post = xr.Dataset(coords={"domain": np.arange(n_domains)}, attrs=correlation_attr(corr))
    np.testing.assert_allclose(stored_residual_correlation(post), corr, atol=1e-6)


def _with_correlation(idata, corr: np.ndarray | None):
    """A copy of the fit whose stored C is ``corr`` (None: without C)."""
    import json

    out = idata.copy()
    out.posterior.attrs.pop(RESIDUAL_CORRELATION_ATTR, None)
    if corr is not None:
        out.posterior.attrs[RESIDUAL_CORRELATION_ATTR] = json.dumps(np.asarray(corr).tolist())
    return out


@pytest.mark.parametrize("slopes", [False, True])
def test_a_run_scored_with_identity_correlation_is_scored_as_the_likelihood_does(
    shared_luck, slopes, quick_fit
):
    """Dense reference for the new-run density: with C = I the correlated scoring (Woodbury per
    run) is the likelihood's own per-run log density (each curve's offset integrated out), also
    with run slopes and the noise that falls with the step."""
    from bimix_bayes.bayes.compare import new_run_log_likelihood

    data, idata = shared_luck
    if slopes:
        idata = quick_fit(data, {"likelihood": {"run_slope": True}})
    eye = _with_correlation(idata, np.eye(len(data.domains)))
    scored = new_run_log_likelihood(eye).transpose("chain", "draw", "run")
    working = idata.log_likelihood["loss_run"].transpose("chain", "draw", "run")
    np.testing.assert_allclose(scored.to_numpy(), working.to_numpy(), rtol=0, atol=1e-8)
    assert new_run_log_likelihood(_with_correlation(idata, None)) is None


def test_compare_scores_a_new_run_as_the_fit_forecasts_it(shared_luck):
    """`bimix compare` scores a left-out run with the offsets correlated as the fit's C: on runs
    that share their luck that predicts new runs better than independent offsets, and with
    C = I it is plain PSIS-LOO of the likelihood (ArviZ's)."""
    import arviz as az

    from bimix_bayes.bayes.compare import LOO_VAR, compare_fits

    _, idata = shared_luck
    eye = _with_correlation(idata, np.eye(idata.posterior.sizes["domain"]))
    result = compare_fits({"residual C": idata, "independent": eye})
    assert result.table.index[0] == "residual C"
    assert result.table.loc["independent", "elpd_diff"] > 2 * result.table.loc["independent", "dse"]
    assert set(result.correlated_new_runs) == {"residual C", "independent"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = az.loo(idata, var_name=LOO_VAR)
    assert result.table.loc["independent", "elpd_loo"] == pytest.approx(plain["elpd_loo"], abs=1e-6)
    none = compare_fits({"no C": _with_correlation(idata, None)})
    assert none.correlated_new_runs == ()
    assert none.table.loc["no C", "elpd_loo"] == pytest.approx(plain["elpd_loo"], abs=1e-6)
