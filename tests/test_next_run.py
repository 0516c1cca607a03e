"""`bimix next`: the value of a proxy run for the mixture decision (knowledge gradient over
posterior draws reweighted by a fantasy run's likelihood)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal, norm

from bimix_bayes.bayes.checkpoint_noise import stored_noise_correlation
from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.bayes.noise import fit_noise_variance
from bimix_bayes.data.table import DataError
from bimix_bayes.decision.constraints import MixtureConstraints
from bimix_bayes.decision.next_run import (
    UPDATES,
    _greedy_linear,
    _Observation,
    _run_covariance,
    propose_next_runs,
    random_candidates,
)
from bimix_bayes.decision.recommend import optimize
from tests.conftest import CORRELATED_QUICK
from tests.test_cli import run

# Run effects correlated across domains (opt-in): the harder path of the run covariance; the
# default's independent path is checked on a posterior built by hand
# (test_independent_run_effects_give_a_diagonal_covariance).
QUICK = CORRELATED_QUICK
STEP = 40_000.0


@pytest.fixture(scope="module")
def fit(correlated_fit):
    return correlated_fit


@pytest.fixture(scope="module")
def plan(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return propose_next_runs(fit, STEP, batch=2, n_candidates=150, n_fantasies=48)


def test_the_fantasy_likelihood_is_the_dense_multivariate_normal():
    """``log p(y | theta_d)`` from the expanded quadratic form equals scipy's density, up to
    a constant shared by every draw (what importance weights need)."""
    rng = np.random.default_rng(0)
    draws, cands, dom = 7, 3, 4
    mean = rng.normal(0.5, 0.1, (draws, cands, dom))
    a = rng.normal(0, 0.05, (draws, dom, dom))
    cov = a @ np.swapaxes(a, 1, 2) + 0.01**2 * np.eye(dom)
    obs = _Observation.build(mean, cov)
    y = rng.normal(0.5, 0.1, (2, 5, dom))  # 2 candidates x 5 fantasies
    got = obs.log_likelihood(np.array([2, 0]), y)
    for b, c in enumerate([2, 0]):
        dense = np.array(
            [[multivariate_normal(mean[d, c], cov[d]).logpdf(y[b, f]) for d in range(draws)]
             for f in range(5)]
        )  # fmt: skip
        diff = got[b] - dense
        np.testing.assert_allclose(diff, diff[:, :1] * np.ones_like(diff), atol=1e-8)


def test_the_linear_update_matches_the_closed_form_of_a_gaussian_two_mixture_decision():
    """Reference: with the objectives and the runs' log losses jointly Gaussian over the draws
    and two mixtures (today's ``m0`` and ``m1``), ``E[O(m1) - O(m0) | y]`` is normal with mean
    ``mu`` and sd ``s = sqrt(C S^-1 C^T)``, so ``KG = E[max(0, -z)] = s phi(mu/s) - mu Phi(-mu/s)``
    exactly. The linear update's Monte Carlo value must agree, and it must choose the candidate
    of largest exact value."""
    rng = np.random.default_rng(4)
    n, dom, cands = 40_000, 3, 5
    theta = rng.standard_normal((n, 4))  # the law's parameters over the draws
    loadings = rng.normal(0, 0.05, (cands, 4, dom))
    mean = np.einsum("nk,ckd->ncd", theta, loadings)  # (draws, candidates, D)
    cov = np.broadcast_to(0.02**2 * np.eye(dom) + 0.01**2, (n, dom, dom)).copy()
    obs = _Observation.build(mean, cov)
    gap = theta @ np.array([0.01, -0.02, 0.015, 0.0]) + 0.004  # O(m1) - O(m0)
    relative = np.column_stack([np.zeros(n), gap])
    rows = _greedy_linear(obs, relative, 1, 200_000, np.random.default_rng(0))
    exact = []
    for c in range(cands):
        f = mean[:, c] - mean[:, c].mean(axis=0)
        s_y = f.T @ f / (n - 1) + cov[0]
        c_oy = (gap - gap.mean()) @ f / (n - 1)
        sd = np.sqrt(c_oy @ np.linalg.solve(s_y, c_oy))
        mu = gap.mean()
        exact.append(sd * norm.pdf(mu / sd) - mu * norm.cdf(-mu / sd))
    assert rows[0]["candidate"] == int(np.argmax(exact))
    np.testing.assert_allclose(rows[0]["value"], max(exact), rtol=0.02)
    assert rows[0]["value_se"] < 0.01 * rows[0]["value"]
    # the chance of a changed choice is P(z < 0)
    c = int(np.argmax(exact))
    f = mean[:, c] - mean[:, c].mean(axis=0)
    c_oy = (gap - gap.mean()) @ f / (n - 1)
    sd = np.sqrt(c_oy @ np.linalg.solve(f.T @ f / (n - 1) + cov[0], c_oy))
    np.testing.assert_allclose(rows[0]["p_change"], norm.cdf(-gap.mean() / sd), atol=0.01)


def test_both_updates_agree_where_reweighting_keeps_many_draws(fit):
    """On a real fit, at a proxy step where one run says little, reweighting keeps many draws
    and the linear update values the best candidate of a fixed set alike (within half)."""
    rng = np.random.default_rng(7)
    domains = [str(d) for d in fit.posterior["domain"].to_numpy()]
    table = pd.DataFrame(rng.dirichlet(np.ones(len(domains)), 12), columns=domains)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plans = {
            u: propose_next_runs(fit, STEP, candidates=table, update=u, n_fantasies=256)
            for u in UPDATES
        }
    lin, rw = plans["linear"].proposals, plans["reweight"].proposals
    assert np.isnan(lin["ess"]).all() and (rw["ess"] > 50).all()
    v_lin, v_rw = lin["value"].iloc[0], rw["value"].iloc[0]
    se = np.hypot(lin["value_se"].iloc[0], rw["value_se"].iloc[0])
    assert abs(v_lin - v_rw) < max(0.5 * v_rw, 4 * se), (lin, rw)
    assert plans["linear"].settings["update"] == "linear"
    assert "linear (Gaussian) update" in plans["linear"].format()
    assert "ess" not in plans["linear"].display_table()


def test_an_unknown_update_is_refused_and_the_cli_offers_the_same_ones(fit):
    from bimix_bayes.cli import next_run as cli_next

    with pytest.raises(ValueError, match="update must be one of"):
        propose_next_runs(fit, STEP, update="refit")
    assert cli_next.UPDATES == UPDATES


def test_the_run_covariance_has_offsets_correlated_across_domains_plus_noise(fit):
    post = fit.posterior
    cov = _run_covariance(post, np.array([0, 5]), x_proxy=0.3)
    tau = post["tau"].stack(s=("chain", "draw")).to_numpy().T[[0, 5]]
    sigma = post["sigma"].stack(s=("chain", "draw")).to_numpy().T[[0, 5]]
    corr = post["run_corr"].stack(s=("chain", "draw")).transpose("s", ...).to_numpy()[[0, 5]]
    # the noise at the proxy step: sigma^2 (1 + eta^2 g) (bimix_bayes.bayes.noise)
    noise_var = fit_noise_variance(post, np.array([0.3])).isel(step=0)
    v = noise_var.stack(s=("chain", "draw")).transpose("s", ...).to_numpy()[[0, 5]]
    assert np.all(v > 1)
    # one checkpoint's noise, correlated across its domains (bimix_bayes.bayes.checkpoint_noise)
    noise_corr = stored_noise_correlation(post, sigma.shape[1])
    assert not np.allclose(noise_corr, np.eye(sigma.shape[1]))
    noise_sd = sigma * np.sqrt(v)
    expected = tau[:, :, None] * corr * tau[:, None, :]
    expected = expected + noise_sd[:, :, None] * noise_corr * noise_sd[:, None, :]
    np.testing.assert_allclose(cov, expected, rtol=1e-8)


def test_independent_run_effects_give_a_diagonal_covariance():
    """Without run_corr (the default spec), a new run's domains vary independently: tau^2 +
    sigma^2 on the diagonal, plus kappa^2 x^2 with run slopes."""
    import xarray as xr

    rng = np.random.default_rng(1)
    dims = ("chain", "draw", "domain")
    tau, sigma, kappa = (rng.uniform(0.01, 0.05, (2, 3, 4)) for _ in range(3))
    post = xr.Dataset({"tau": (dims, tau), "sigma": (dims, sigma), "kappa": (dims, kappa)})
    cov = _run_covariance(post, np.array([1, 4]), x_proxy=0.5)
    flat = lambda a: a.reshape(-1, 4)[[1, 4]]  # noqa: E731
    expected = flat(tau) ** 2 + flat(sigma) ** 2 + 0.25 * flat(kappa) ** 2
    np.testing.assert_allclose(np.einsum("dii->di", cov), expected)
    assert np.allclose(cov - np.einsum("di,ij->dij", expected, np.eye(4)), 0.0)


def test_a_new_run_of_a_size_fit_carries_its_own_luck_at_its_size():
    """A proposed run is a new (mixture, size) pair: the stored run x size covariance adds to
    its covariance, correlations included; a fit without it is unchanged."""
    import xarray as xr

    from bimix_bayes.bayes.run_size_offsets import RunSizeOffsets

    rng = np.random.default_rng(2)
    dims = ("chain", "draw", "domain")
    tau, sigma = (rng.uniform(0.01, 0.05, (2, 3, 2)) for _ in range(2))
    post = xr.Dataset({"tau": (dims, tau), "sigma": (dims, sigma)}, coords={"domain": ["a", "b"]})
    before = _run_covariance(post, np.array([0, 5]), x_proxy=0.0)
    offsets = RunSizeOffsets(np.array([0.003, 0.004]), np.array([[1.0, 0.5], [0.5, 1.0]]))
    post.attrs.update(offsets.to_attr())
    after = _run_covariance(post, np.array([0, 5]), x_proxy=0.0)
    expected = np.array([[0.003**2, 0.5 * 0.003 * 0.004], [0.5 * 0.003 * 0.004, 0.004**2]])
    np.testing.assert_allclose(after - before, np.broadcast_to(expected, after.shape), atol=1e-15)


def test_values_are_in_nats_and_bounded_by_the_value_of_stopping(plan):
    values = plan.proposals["value"].to_numpy()
    se = plan.proposals["value_se"].to_numpy()
    assert (values >= 0).all()
    assert plan.value_of_stopping > 0
    assert (values <= plan.value_of_stopping + 4 * se).all()
    # the second run adds to the first (a batch is worth at least its first run)
    assert values[1] >= values[0] - 3 * se[1]
    assert np.isclose(plan.proposals["gain"].sum(), values[-1])


def test_the_value_of_stopping_comes_with_one_runs_luck_for_scale(fit, plan, sim_data):
    """The yardstick is the sd of one proxy run's objective around its law (run offsets and
    checkpoint noise): about the fitted run effects' scale, printed beside the regret."""
    luck = plan.run_luck_sd
    tau = float(fit.posterior["tau"].mean())  # sd of a run's log-loss offset, per domain
    mean_loss = float(sim_data.observations["loss"].mean())
    assert 0 < luck < 3 * tau * mean_loss  # the mean over domains averages the domains' luck
    assert f"sd {luck:.2e} nats" in plan.format()
    assert plan.to_dict()["run_luck_sd"] == luck
    one = list(sim_data.domains)[:1]  # an objective of one domain: zero shares elsewhere
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        narrow = propose_next_runs(fit, STEP, domains=one, n_candidates=100, n_fantasies=16)
    assert (narrow.decision == 0).any() and narrow.run_luck_sd > 0  # at the design's centre


def test_todays_choice_is_the_recommended_mixture(fit, plan):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = optimize(fit, STEP, forecast=False)
    np.testing.assert_allclose(plan.decision.to_numpy(), rec.mixture.to_numpy(), atol=1e-9)


def test_proposals_are_candidates_within_the_constraints_and_seeded(fit, sim_data):
    domains = list(sim_data.domains)
    cons = MixtureConstraints(upper={domains[0]: 0.3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = propose_next_runs(fit, STEP, constraints=cons, n_candidates=80, n_fantasies=16)
        two = propose_next_runs(fit, STEP, constraints=cons, n_candidates=80, n_fantasies=16)
    pd.testing.assert_frame_equal(one.proposals, two.proposals)
    shares = one.proposals[domains].to_numpy()
    assert (shares[:, 0] <= 0.3 + 1e-12).all() and np.allclose(shares.sum(axis=1), 1)
    assert one.decision[domains[0]] <= 0.3 + 1e-9


def test_given_candidates_keep_their_names(fit, sim_data):
    domains = list(sim_data.domains)
    table = pd.DataFrame(
        np.random.default_rng(1).dirichlet(np.ones(len(domains)), 6),
        columns=domains,
        index=[f"mix{i}" for i in range(6)],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = propose_next_runs(fit, STEP, candidates=table, batch=2, n_fantasies=16)
    assert set(plan.proposals.index) <= set(table.index)
    with pytest.raises(DataError, match="lack"):
        propose_next_runs(fit, STEP, candidates=table.drop(columns=domains[0]))
    zero = table.copy()
    zero.iloc[0] = [0.0] + [1 / (len(domains) - 1)] * (len(domains) - 1)
    with pytest.raises(DataError):  # BiMix's loss is infinite at a zero share
        propose_next_runs(fit, STEP, candidates=zero)


def test_a_batch_of_zero_is_refused(fit):
    with pytest.raises(ValueError, match="batch"):
        propose_next_runs(fit, STEP, batch=0)


@settings(max_examples=25, deadline=None)
@given(
    cap=st.floats(0.05, 1.0),
    fixed=st.floats(0.0, 0.5),
    min_share=st.floats(0.0, 0.1),
    seed=st.integers(0, 10_000),
)
def test_random_candidates_respect_bounds_fixed_shares_and_the_least_share(
    cap, fixed, min_share, seed
):
    names = ["a", "b", "c", "d"]
    bounds = MixtureConstraints(upper={"a": cap}, fixed={"d": fixed}).bounds(names)
    try:
        m = random_candidates(names, bounds, 40, np.random.default_rng(seed), min_share)
    except DataError as exc:
        assert "too little room" in str(exc)
        return
    assert m.shape == (40, 4)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    assert (m[:, 0] <= cap + 1e-12).all()
    np.testing.assert_allclose(m[:, 3], fixed)
    assert (m[:, :3] >= min_share - 1e-12).all()


def test_cli_next_prints_and_writes(fit, tmp_path):
    from bimix_bayes.bayes.persistence import save_fit

    path = tmp_path / "fit.nc"
    save_fit(fit, path)
    out = tmp_path / "next.json"
    result = run(
        "next", str(path), "--step", "4e4", "--batch", "2", "--n-candidates", "60",
        "--fantasies", "16", "--update", "linear", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "value of stopping now" in result.stdout and "knowledge gradient" in result.stdout
    saved = json.loads(out.read_text())
    assert len(saved["proposals"]) == 2 and saved["value_of_stopping"] > 0
    assert saved["settings"]["update"] == "linear" and "linear (Gaussian)" in result.stdout


def test_works_under_a_cross_domain_law_and_says_when_the_likelihood_is_approximate(sim_data):
    """Other laws' surfaces and observation models: values in nats, bounded by stopping; a
    Student-t fit's fantasies are scored with a Normal, and the plan says so."""
    spec = {**QUICK, "law": {"name": "effective"}}
    spec["likelihood"] = {**QUICK["likelihood"], "family": "student_t"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = BiMixModel(spec).fit(sim_data, seed=0)
        plan = propose_next_runs(idata, STEP, batch=2, n_candidates=60, n_fantasies=16)
    values, se = plan.proposals["value"], plan.proposals["value_se"]
    assert (values >= 0).all() and (values <= plan.value_of_stopping + 4 * se).all()
    assert any("Student-t" in n for n in plan.notes)


def test_repeated_and_out_of_design_proposals_are_noted():
    """A batch proposing one mixture twice read as a bug, and a proposal far outside the fitted
    shares carried no word that its value is an extrapolation (new user's trial)."""
    from bimix_bayes.decision.next_run import _proposal_notes

    design = pd.DataFrame({"web": [0.4, 0.6], "code": [0.6, 0.4]})
    proposals = pd.DataFrame(
        {"web": [0.05, 0.05, 0.5], "code": [0.95, 0.95, 0.5]},
        index=pd.Index(["c110", "c110", "c7"], name="mixture"),
    )
    notes = _proposal_notes(proposals, design)
    assert notes[0].startswith("'c110' is proposed 2 times: another run of that mixture")
    assert "'c110' lies outside the fitted runs' shares (web 5.0%, fitted 40.0-60.0%" in notes[1]
    assert len(notes) == 2  # c7 is inside and proposed once
