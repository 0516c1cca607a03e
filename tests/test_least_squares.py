"""The paper's least-squares fit: recovery, bootstrap, predictions, output files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.data.public import load_slimpajama
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.data.table import DataError, DataWarning, MixtureData
from bimix_bayes.leastsq.fit import ALL_DOMAINS, BiMixLeastSquares

PARAMS = ["A", "alpha", "B", "beta"]
STEPS = np.geomspace(500, 20_000, 10)


def _simulated(seed: int, **kwargs) -> MixtureData:
    truth = default_parameters()
    mixtures = random_mixtures(12, list(truth.index), seed=seed)
    return simulate(truth, mixtures, STEPS, seed=seed, **kwargs)


def test_noiseless_data_are_recovered_exactly():
    """On data that follow the law exactly, the fit returns the true coefficients."""
    fit = BiMixLeastSquares(n_bootstrap=0).fit(_simulated(0, noise_sd=0.0, run_sd=0.0))
    truth = default_parameters()
    assert np.allclose(fit.params_[PARAMS], truth[PARAMS], rtol=1e-6)
    assert (fit.params_["C"] == 1.0).all()
    assert fit.quality_["r2_log"].min() > 0.999999
    assert fit.quality_["converged"].all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_data_are_recovered_within_tolerance(seed):
    """With 1 % noise and run offsets: |alpha| err <= 0.01, beta and A within 10 % and 5 %,
    B within 30 % (B trades off against beta), and most true values inside the 90 % intervals."""
    truth = default_parameters()
    fit = BiMixLeastSquares(n_bootstrap=100, seed=seed).fit(_simulated(seed))
    est = fit.params_
    assert (est["alpha"] - truth["alpha"]).abs().max() <= 0.01
    assert ((est["beta"] - truth["beta"]) / truth["beta"]).abs().max() <= 0.10
    assert ((est["A"] - truth["A"]) / truth["A"]).abs().max() <= 0.05
    assert ((est["B"] - truth["B"]) / truth["B"]).abs().max() <= 0.30
    iv = fit.intervals()
    inside = sum(
        ((iv[f"{n}_lower"] <= truth[n]) & (truth[n] <= iv[f"{n}_upper"])).sum() for n in PARAMS
    )
    assert inside >= 14  # of 20; the run bootstrap with 12 runs is somewhat narrow


def test_bootstrap_is_seeded():
    """The same seed gives the same intervals; another seed gives other ones."""
    data = _simulated(3)
    a = BiMixLeastSquares(n_bootstrap=30, seed=7).fit(data).intervals()
    b = BiMixLeastSquares(n_bootstrap=30, seed=7).fit(data).intervals()
    c = BiMixLeastSquares(n_bootstrap=30, seed=8).fit(data).intervals()
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.to_numpy(), c.to_numpy())


def test_bootstrap_resamples_whole_runs(sim_data):
    """Each replicate refits every domain; the replicate table has one row per (rep, domain)."""
    fit = BiMixLeastSquares(n_bootstrap=12, seed=0).fit(sim_data)
    counts = fit.bootstrap_.groupby("replicate").size()
    assert len(counts) == 12 and (counts == len(sim_data.domains)).all()
    assert sum(fit.bootstrap_failures_.values()) == 0


def test_huber_resists_outliers():
    """A few wild checkpoints pull least squares away; the Huber loss is barely moved."""
    data = _simulated(4, noise_sd=0.003, run_sd=0.0)
    obs = data.observations.copy()
    rng = np.random.default_rng(0)
    hit = rng.choice(np.flatnonzero(obs["domain"] == "web"), size=6, replace=False)
    obs.loc[hit, "loss"] *= 1.5
    bad = MixtureData.from_frames(data.mixtures, obs)
    truth = default_parameters().loc["web", "alpha"]
    ols = BiMixLeastSquares(n_bootstrap=0).fit(bad).params_.loc["web", "alpha"]
    hub = BiMixLeastSquares(loss="huber", huber_delta=0.01, n_bootstrap=0).fit(bad)
    assert abs(hub.params_.loc["web", "alpha"] - truth) < abs(ols - truth)
    assert abs(hub.params_.loc["web", "alpha"] - truth) < 0.01


def test_predict_grid_and_average(sim_data):
    """Predictions cover every (mixture, step, domain), plus the mean over domains, with bands."""
    fit = BiMixLeastSquares(n_bootstrap=20, seed=0).fit(sim_data)
    mixtures = sim_data.mixtures.iloc[:3]
    pred = fit.predict(mixtures, [1e4, 4e4])
    assert len(pred) == 3 * 2 * (len(sim_data.domains) + 1)
    assert (pred["lower"] <= pred["loss"]).all() and (pred["loss"] <= pred["upper"]).all()
    per = pred[pred["domain"] != ALL_DOMAINS].groupby(["mixture", "step"])["loss"].mean()
    avg = pred[pred["domain"] == ALL_DOMAINS].set_index(["mixture", "step"])["loss"]
    assert np.allclose(per.sort_index(), avg.sort_index())
    # More steps -> lower loss (beta > 0).
    wide = pred.pivot_table(index=["mixture", "domain"], columns="step", values="loss")
    assert (wide[4e4] < wide[1e4]).all()


def test_predict_matches_the_law(sim_data):
    """A prediction is the law evaluated at the fitted coefficients."""
    fit = BiMixLeastSquares(n_bootstrap=0).fit(sim_data)
    mixture = sim_data.mixtures.iloc[[5]]
    pred = fit.predict(mixture, [12345.0], average=False).set_index("domain")["loss"]
    p = fit.params_
    r = mixture.iloc[0][p.index]
    manual = p["A"] * r ** -p["alpha"] * (p["B"] * 12345.0 ** -p["beta"] + p["C"])
    assert np.allclose(pred[p.index], manual, rtol=1e-10)


def test_predict_refuses_bad_mixtures(sim_data):
    """Zero shares and missing domains are clear errors at prediction time."""
    fit = BiMixLeastSquares(n_bootstrap=0).fit(sim_data)
    zero = sim_data.mixtures.iloc[[0]].copy()
    zero["web"] = 0.0
    with pytest.raises(DataError, match="web"):
        fit.predict(zero, [1e4])
    with pytest.raises(DataError, match="lack the fitted domain"):
        fit.predict(sim_data.mixtures.iloc[[0]].drop(columns="code"), [1e4])
    with pytest.raises(ValueError, match="steps must be positive"):
        fit.predict(sim_data.mixtures.iloc[[0]], [0.0])


def test_unfitted_estimator_says_what_to_do():
    """Using results before fit() names the method to call."""
    with pytest.raises(RuntimeError, match=r"call \.fit\(data\)"):
        BiMixLeastSquares().summary()


def test_save_json_and_csv(sim_data, tmp_path):
    """Results are written atomically as JSON (with settings) or CSV (the table)."""
    fit = BiMixLeastSquares(n_bootstrap=10, seed=0).fit(sim_data)
    fit.save(tmp_path / "fit.json")
    fit.save(tmp_path / "fit.csv")
    doc = json.loads((tmp_path / "fit.json").read_text())
    assert doc["data_fingerprint"] == sim_data.fingerprint()
    assert [d["domain"] for d in doc["domains"]] == list(sim_data.domains)
    table = pd.read_csv(tmp_path / "fit.csv", index_col=0)
    assert np.allclose(table["alpha"], fit.params_["alpha"], rtol=1e-8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.csv", "fit.json"]
    with pytest.raises(ValueError, match="unknown output type"):
        fit.save(tmp_path / "fit.txt")


def test_design_is_checked_before_fitting(sim_data):
    """A subset with too few checkpoints is refused with the domain named."""
    few = sim_data.subset(max_step=800)
    with pytest.raises(DataError, match="distinct steps"):
        BiMixLeastSquares(n_bootstrap=0).fit(few)


@pytest.mark.shared_data
def test_slimpajama_122m_fits_well(datasets_dir):
    """The paper's method on real data: SlimPajama 122M, tokens as volume, R^2(log) >= 0.95."""
    with pytest.warns(DataWarning, match="identical losses in every domain"):
        data = load_slimpajama(datasets_dir, "122M")
    assert data.volume == "tokens" and data.n_runs == 60 and len(data.domains) == 7
    fit = BiMixLeastSquares(n_bootstrap=0).fit(data)
    assert fit.quality_["r2_log"].mean() >= 0.95
    assert fit.params_["alpha"].between(0.0, 0.2).all()
