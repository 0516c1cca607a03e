"""Every law at a fixed budget: the design rows against the law's own math, the conjugate
posterior against dense references, zero shares (kept under loglinear, refused under BiMix),
the holdout-runs protocol, and RegMix's own train/test split (skipped without the datasets)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import invgamma, multivariate_t
from scipy.stats import t as student_t

from bimix_bayes.bayes.fixed_budget import (
    ConjugatePrior,
    FixedBudgetConjugate,
    conjugate_posterior,
)
from bimix_bayes.data.table import MixtureData
from bimix_bayes.evaluation.protocols import ProtocolError, parse_protocol
from bimix_bayes.evaluation.runner import backtest
from bimix_bayes.evaluation.splits import make_splits
from bimix_bayes.laws.cross import (
    bimix_cross_mixture_term,
    loglinear_mixture_term,
    project_cross,
)
from bimix_bayes.laws.fixed_budget import ZeroShareError, design, design_columns
from bimix_bayes.leastsq.fixed_budget import FixedBudgetLaw, FixedBudgetLeastSquares

DOMAINS = ["web", "code", "books", "wiki"]


def _shares(n: int, rng: np.random.Generator, zeros: bool = True) -> np.ndarray:
    shares = rng.dirichlet(np.ones(len(DOMAINS)), size=n)
    if zeros:
        shares[rng.random(shares.shape) < 0.3] = 0.0
        shares[shares.sum(axis=1) == 0, 0] = 1.0
    return shares / shares.sum(axis=1, keepdims=True)


def _loglinear_data(n: int = 60, seed: int = 0, noise: float = 0.01) -> MixtureData:
    """Fixed-budget runs from the log-linear law, about 30 % zero shares; runs named
    ``train-<i>`` (first two thirds) and ``test-<i>``."""
    rng = np.random.default_rng(seed)
    shares = _shares(n, rng)
    names = [f"train-{i}" if i < 2 * n // 3 else f"test-{i}" for i in range(n)]
    mix = pd.DataFrame(shares, columns=DOMAINS, index=pd.Index(names, name="run"))
    cross = project_cross(rng.normal(0, 0.3, (4, 4)), np.arange(4))
    rows = []
    for i, domain in enumerate(DOMAINS):
        log_loss = (
            1.0
            + 0.1 * i
            + loglinear_mixture_term(shares, shares[:, i], 0.5 + 0.1 * i, cross[i])
            + noise * rng.standard_normal(n)
        )
        rows.append(pd.DataFrame({"run": names, "domain": domain, "loss": np.exp(log_loss)}))
    obs = pd.concat(rows, ignore_index=True).assign(step=1000.0)
    with pytest.warns(UserWarning):  # the zero shares are noted
        return MixtureData.from_frames(mix, obs, min_steps=1, zero_policy="keep")


# ------------------------------------------------------------------------------ design rows
@pytest.mark.parametrize("law", ["loglinear", "bimix_cross"])
def test_design_times_coefficients_is_the_laws_mixture_term(law):
    rng = np.random.default_rng(1)
    shares = _shares(20, rng, zeros=law == "loglinear")  # BiMix-cross: own share > 0
    cross = project_cross(rng.normal(size=(1, 4)), np.array([1]))[0]
    own, k = 0.7, 1.3
    xs = design(law, shares, own_index=1)
    coef = np.concatenate([[k, -own], np.delete(cross, 1)])
    if law == "loglinear":
        expected = k + loglinear_mixture_term(shares, shares[:, 1], own, cross)
    else:
        expected = k + bimix_cross_mixture_term(shares[:, 1], shares, own, cross)
    np.testing.assert_allclose(xs @ coef, expected, atol=1e-12)
    assert design_columns(law, DOMAINS, 1)[2:] == ["cross:web", "cross:books", "cross:wiki"]


def test_centred_columns_leave_only_the_identifiable_cross_effects():
    """Adding a constant to every cross effect changes nothing (the shares sum to 1)."""
    shares = _shares(10, np.random.default_rng(2))
    xs = design("loglinear", shares, own_index=0)
    coef = np.array([1.0, -0.5, 0.2, -0.1, 0.3])
    shifted = coef + np.array([0, 0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(xs @ coef, xs @ shifted, atol=1e-12)


# ------------------------------------------------------------------------------ posterior
def _posterior_problem(seed: int = 3):
    rng = np.random.default_rng(seed)
    xs = design("loglinear", _shares(15, rng), own_index=0)
    ys = xs @ np.array([1.0, -0.4, 0.2, -0.1, -0.1]) + 0.05 * rng.standard_normal(15)
    prior_sd = np.array([10.0, 1.0, 0.5, 0.5, 0.5])
    return xs, ys, prior_sd, 0.05, 1.5


def test_conjugate_posterior_equals_dense_linear_algebra():
    xs, ys, prior_sd, s0, a0 = _posterior_problem()
    post = conjugate_posterior(xs, ys, prior_sd, s0, a0)
    # ridge as least squares on data augmented with the prior's pseudo-observations
    v0 = (prior_sd / s0) ** 2
    aug_x = np.vstack([xs, np.diag(1 / np.sqrt(v0))])
    aug_y = np.concatenate([ys, np.zeros(len(v0))])
    mean, *_ = np.linalg.lstsq(aug_x, aug_y, rcond=None)
    cov = np.linalg.inv(xs.T @ xs + np.diag(1 / v0))
    np.testing.assert_allclose(post.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(post.cov, cov, rtol=1e-9, atol=1e-14)
    resid = aug_y - aug_x @ mean  # y'y - m' Lambda m = the augmented residual sum of squares
    assert post.rate == pytest.approx(a0 * s0**2 + 0.5 * resid @ resid, rel=1e-9)
    assert post.shape == pytest.approx(a0 + len(ys) / 2)
    # the evidence: y ~ multivariate Student-t(2 a0, 0, b0 / a0 (I + X V0 X'))
    b0 = a0 * s0**2
    marginal = multivariate_t(
        loc=np.zeros(len(ys)),
        shape=b0 / a0 * (np.eye(len(ys)) + xs @ np.diag(v0) @ xs.T),
        df=2 * a0,
    )
    assert post.log_evidence == pytest.approx(marginal.logpdf(ys), rel=1e-9)


def test_student_t_predictive_matches_monte_carlo_from_the_normal_inverse_gamma():
    xs, ys, prior_sd, s0, a0 = _posterior_problem()
    post = conjugate_posterior(xs, ys, prior_sd, s0, a0)
    rng = np.random.default_rng(4)
    x_new = xs[:2] + 0.1
    n = 200_000
    sigma2 = invgamma.rvs(post.shape, scale=post.rate, size=n, random_state=rng)
    chol = np.linalg.cholesky(post.cov)
    theta = post.mean + np.sqrt(sigma2)[:, None] * (
        rng.standard_normal((n, len(post.mean))) @ chol.T
    )
    y_new = theta @ x_new.T + np.sqrt(sigma2)[:, None] * rng.standard_normal((n, 2))
    loc, scale = x_new @ post.mean, post.predictive_scale(x_new)
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        exact = student_t.ppf(q, post.dof, loc=loc, scale=scale)
        np.testing.assert_allclose(np.quantile(y_new, q, axis=0), exact, atol=0.02 * scale.max())


def test_evidence_chooses_a_scale_from_the_grid_and_a_fit_recovers_the_law():
    data = _loglinear_data(n=120, noise=0.005)
    model = FixedBudgetConjugate("loglinear", ConjugatePrior(cross_scale="evidence")).fit(data)
    assert (model.params_["cross_scale"] > 0).all() and model.params_["log_evidence"].notna().all()
    np.testing.assert_allclose(model.params_["own"], [0.5, 0.6, 0.7, 0.8], atol=0.05)
    np.testing.assert_allclose(model.cross_.sum(axis=1, skipna=True), 0.0, atol=1e-9)


# ------------------------------------------------------------------------------ zero shares
def test_zero_shares_are_kept_under_loglinear_and_refused_under_bimix():
    data = _loglinear_data()
    n_zero = int((data.mixtures.to_numpy() == 0).sum())
    assert n_zero > 0
    ls = FixedBudgetLeastSquares(n_bootstrap=5, law="loglinear").fit(data)
    assert (ls.params_["n"] == data.n_runs).all()  # no observation dropped
    assert np.isfinite(ls.predict(data.mixtures).to_numpy()).all()
    bayes = FixedBudgetConjugate(law="loglinear").fit(data)
    assert np.isfinite(bayes.predictive_draws(data.mixtures.iloc[:3], n_draws=10)).all()
    for law in ("bimix", "bimix_cross"):
        with pytest.raises(ZeroShareError, match="--law loglinear"):
            FixedBudgetLaw(law=law).fit(data)
        with pytest.raises(ZeroShareError, match="zero share"):
            backtest(data, "holdout-runs:train-*", method="ls", spec={"law": {"name": law}})


def test_loglinear_least_squares_recovers_the_law_without_noise():
    data = _loglinear_data(noise=0.0)
    fit = FixedBudgetLaw(law="loglinear").fit(data)
    np.testing.assert_allclose(fit.params_["own"], [0.5, 0.6, 0.7, 0.8], atol=1e-9)
    np.testing.assert_allclose(fit.params_["rmse_log"], 0.0, atol=1e-9)


# ------------------------------------------------------------------------------ protocol
def test_holdout_runs_fits_the_named_runs_and_predicts_the_others():
    data = _loglinear_data()
    protocol = parse_protocol("holdout-runs:train-*")
    assert (protocol.kind, protocol.value, str(protocol)) == (
        "holdout-runs",
        "train-*",
        "holdout-runs:train-*",
    )
    (split,) = make_splits(data, protocol, n_splits=5)  # one given split, n_splits ignored
    assert all(r.startswith("train-") for r in split.train.runs)
    assert set(split.held["run"]) == {r for r in data.runs if r.startswith("test-")}
    assert set(split.held["target"]) == {"new mixture"}
    for bad in ("holdout-runs:nothing-*", "holdout-runs:*"):
        with pytest.raises(ProtocolError, match="must pick some runs"):
            make_splits(data, bad)
    with pytest.raises(ProtocolError, match="needs a pattern"):
        parse_protocol("holdout-runs:")


def test_backtest_under_loglinear_with_the_given_split():
    data = _loglinear_data(n=90)
    res = backtest(
        data,
        "holdout-runs:train-*",
        method="both",
        n_bootstrap=30,
        spec={"law": {"name": "loglinear"}},
    )
    assert res.settings["law"] == "loglinear" and res.settings["fixed_budget"]
    held = res.points[res.points["method"] == "bayes"]
    assert held["run"].str.startswith("test-").all() and held["lpd"].notna().any()
    for method in ("bayes", "ls"):
        assert res.metrics.loc[(method, "(all points)"), "mre"] < 0.03


# ------------------------------------------------------------------------------ RegMix
def test_regmix_loglinear_on_its_own_split(datasets_dir):
    from bimix_bayes.data.public_loaders import load_regmix

    data = load_regmix(datasets_dir, zero_policy="keep")
    res = backtest(
        data, "holdout-runs:train-*", method="bayes", spec={"law": {"name": "loglinear"}}
    )
    pile = res.metrics.loc[("bayes", "pile_cc")]
    assert pile["n"] == 256  # every test mixture, zero shares included
    assert pile["spearman"] > 0.85  # measured 0.90
    assert 0.85 <= res.metrics.loc[("bayes", "(all points)"), "cover_90"] <= 0.97  # measured 0.935


def test_cli_backtest_reads_one_step_data_and_the_law(tmp_path, capsys):
    from bimix_bayes.cli import app

    path = tmp_path / "fixed.csv"
    _loglinear_data(n=60).to_long().to_csv(path, index=False)
    argv = ["backtest", str(path), "--protocol", "holdout-runs:train-*", "--method", "ls"]
    argv += ["--law", "loglinear", "--zero-policy", "keep", "--bootstrap", "20", "--quiet"]
    assert app.main(argv) == 0
    out = capsys.readouterr().out
    assert "law loglinear" in out and "holdout-runs:train-*" in out
    bimix = [a for a in argv if a not in ("--law", "loglinear")]
    assert app.main(bimix) == 1  # the default law, bimix, refuses the zero shares
    assert "--law loglinear" in capsys.readouterr().err
