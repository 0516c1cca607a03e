"""A new run's offsets move together across domains as the fitted runs' do, when the likelihood
treats run effects as independent (:mod:`bimix_bayes.bayes.residual_correlation`)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.bayes.forecast import forecast_draws
from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.bayes.residual_correlation import (
    MIN_RUNS,
    RESIDUAL_CORRELATION_ATTR,
    residual_correlation,
    stored_residual_correlation,
)
from bimix_bayes.data.labels import ALL_DOMAINS
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.data.table import MixtureData

STEPS = np.geomspace(1_000, 20_000, 6)
QUICK = {"sampler": {"chains": 2, "draws": 300, "tune": 300}}


def _study(shared_sd: float, seed: int = 4, n_runs: int = 16) -> MixtureData:
    """Simulated runs whose offsets share a part ``shared_sd`` across every domain (log loss)."""
    truth = default_parameters()
    mixtures = random_mixtures(n_runs, list(truth.index), seed=seed)
    data = simulate(truth, mixtures, STEPS, seed=seed, run_sd=0.004, noise_sd=0.004)
    shared = np.random.default_rng(seed).normal(0.0, shared_sd, n_runs)
    obs = data.observations.copy()
    obs["loss"] *= np.exp(obs["run"].map(dict(zip(mixtures.index, shared, strict=True))))
    return MixtureData.from_frames(mixtures, obs)


def _fit(data: MixtureData, spec: dict | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a quick fit: its diagnostics may warn
        return BiMixModel({**QUICK, **(spec or {})}).fit(data, seed=1)


@pytest.fixture(scope="module")
def shared_luck():
    data = _study(shared_sd=0.03)
    return data, _fit(data)


def _log_sd(idata, data) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draws = forecast_draws(idata, [STEPS[-1]], mixtures=data.mixtures.iloc[:3], seed=0)
    sd = np.log(draws).std(("chain", "draw")).mean(("mixture", "step"))
    return {str(d): float(v) for d, v in zip(sd["domain"].values, sd.values, strict=True)}


def test_runs_that_share_their_luck_give_new_runs_a_wider_mean_over_domains(shared_luck):
    """The fitted runs' offsets share a part across domains: the fit stores a correlation well
    above 0, and a new mixture's mean over domains spreads as a run's shared luck does, while
    each domain's own spread is what it was with independent offsets."""
    data, idata = shared_luck
    corr = stored_residual_correlation(idata.posterior)
    off_diagonal = corr[~np.eye(len(corr), dtype=bool)]
    assert off_diagonal.mean() > 0.5, corr.round(2)
    independent = idata.copy()
    independent.posterior.attrs.pop(RESIDUAL_CORRELATION_ATTR)
    with_corr, without = _log_sd(idata, data), _log_sd(independent, data)
    for domain in data.domains:
        assert with_corr[domain] == pytest.approx(without[domain], rel=0.1), domain
    assert with_corr[ALL_DOMAINS] > 1.3 * without[ALL_DOMAINS]


def test_independent_luck_stays_independent_and_none_stores_nothing():
    """Offsets drawn independently per domain: the stored correlation stays near 0 (shrunk
    toward independence); new_run_correlation = "none" stores none (forecasts as before)."""
    data = _study(shared_sd=0.0, seed=5)
    corr = stored_residual_correlation(_fit(data).posterior)
    assert np.abs(corr[~np.eye(len(corr), dtype=bool)]).mean() < 0.3, corr.round(2)
    plain = _fit(data, {"likelihood": {"new_run_correlation": "none"}})
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
    """`bimix next` scores a fantasy run with the covariance forecasts use."""
    from bimix_bayes.decision.next_run import _run_covariance

    _, idata = shared_luck
    post = idata.posterior
    cov = _run_covariance(post, np.arange(5), 0.0)
    sd = np.sqrt(np.einsum("dii->di", cov))
    tau = post["tau"].transpose("chain", "draw", "domain").to_numpy().reshape(-1, sd.shape[1])
    corr = stored_residual_correlation(post)
    expected = tau[:5, :, None] * corr * tau[:5, None, :]
    off = ~np.eye(corr.shape[0], dtype=bool)
    np.testing.assert_allclose(cov[:, off], expected[:, off], rtol=1e-9)


def test_too_few_runs_or_a_missing_domain_leave_those_runs_out():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(2, 20, MIN_RUNS + 2, 3))
    assert residual_correlation(means[:, :, : MIN_RUNS - 1]) is None
    means[:, :, :3, 1] = np.nan  # three runs without domain 1: two complete runs remain
    assert residual_correlation(means) is None
    means[:, :, :3, 1] = 0.0
    assert residual_correlation(means) is not None


@settings(max_examples=40, deadline=None)
@given(
    n_runs=st.integers(MIN_RUNS, 30),
    n_domains=st.integers(2, 8),
    shared=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**16),
)
def test_the_correlation_is_always_a_valid_one(n_runs, n_domains, shared, seed):
    """Whatever the runs: symmetric, unit diagonal, positive definite (its Cholesky exists)."""
    rng = np.random.default_rng(seed)
    common = shared * rng.normal(size=(2, 10, n_runs, 1))
    corr = residual_correlation(common + rng.normal(size=(2, 10, n_runs, n_domains)))
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
