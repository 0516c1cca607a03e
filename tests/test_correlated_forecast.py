"""Forecasts and predictive densities of a fit with run effects correlated across domains, end to
end: the joint draws of :mod:`~bimix_bayes.bayes.targets` (fresh runs and observed ones) and the
per-curve marginals that score held-out points."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.bayes.forecast import predict
from bimix_bayes.bayes.predictive_density import log_predictive_density

MEAN = "(mean of domains)"


@pytest.fixture(scope="module")
def last_points(sim_data):
    """Every domain's loss of every run at the last fitted checkpoint."""
    obs = sim_data.observations
    return obs[obs["step"] == obs["step"].max()].reset_index(drop=True)


def _predict(idata, *args, **kwargs) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a quick fit: its diagnostics may warn
        return predict(idata, *args, **kwargs)


def _lpd(idata, points, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return log_predictive_density(idata, points, **kwargs)


def _width(table: pd.DataFrame) -> pd.Series:
    return (table["upper_90"] - table["lower_90"]) / table["median"]


def _with_effects(idata, tau: float, rho: float):
    """A copy of ``idata`` whose run effects have sd ``tau`` in every domain and correlation
    ``rho`` between any two (the simulated study's fitted effects are small beside its noise,
    tau/sigma 0.2-0.8, too small to show what the joint draws do)."""
    out = idata.copy()
    post = out.posterior
    n = post.sizes["domain"]
    corr = np.full((n, n), rho) + (1.0 - rho) * np.eye(n)
    post["run_corr"] = post["run_corr"].copy(data=np.broadcast_to(corr, post["run_corr"].shape))
    post["tau"] = post["tau"].copy(data=np.full(post["tau"].shape, tau))
    return out


def test_an_observed_run_is_forecast_from_its_own_effects(correlated_fit, sim_data):
    """At the fitted steps, an observed run's joint conditional draw puts its forecast on its
    own data: closer to what it measured, with narrower intervals, than a new run of the same
    mixture (whose effects are fresh joint draws)."""
    steps = sorted(sim_data.observations["step"].unique())
    runs = list(sim_data.runs)
    same_mixtures = sim_data.mixtures.loc[runs].rename(index=lambda r: f"new {r}")
    table = _predict(correlated_fit, steps, runs=runs, mixtures=same_mixtures)
    assert np.isfinite(table[["median", "lower_90", "upper_90"]].to_numpy()).all()
    assert (table["lower_90"] < table["median"]).all()
    assert (table["median"] < table["upper_90"]).all()

    measured = sim_data.observations.set_index(["run", "step", "domain"])["loss"]
    per_domain = table[table["domain"] != MEAN]
    scores = {}
    for observed, part in per_domain.groupby(per_domain["source"] == "observed run"):
        runs = part["mixture"].str.removeprefix("new ")
        key = list(zip(runs, part["step"], part["domain"], strict=True))
        error = np.abs(np.log(part["median"].to_numpy() / measured.loc[key].to_numpy()))
        scores[observed] = (error.mean(), _width(part).mean())
    assert scores[True][0] < scores[False][0]  # closer to its own data
    assert scores[True][1] < scores[False][1]  # and surer of it


def test_the_mean_over_domains_carries_the_correlation_of_the_run_effects(correlated_fit, sim_data):
    """A new run's mean over domains comes from one joint draw of its effects: with the run
    effects correlated +0.95 its interval is much wider than with them independent (independent
    domains average out), while each domain's own interval stays as it was."""
    mixture = sim_data.mixtures.iloc[[0]].rename(index=lambda r: "new")
    widths = {}
    for rho in (0.0, 0.95):
        table = _predict(_with_effects(correlated_fit, 0.05, rho), [40_000.0], mixtures=mixture)
        widths[rho] = _width(table).set_axis(table["domain"])
    assert widths[0.95][MEAN] > 1.5 * widths[0.0][MEAN]
    per_domain = widths[0.0].index != MEAN
    np.testing.assert_allclose(widths[0.95][per_domain], widths[0.0][per_domain], rtol=0.15)


def test_held_out_points_of_observed_runs_are_scored_with_the_runs_effects(
    correlated_fit, sim_data, last_points
):
    """The predictive density of an observed run's measured loss: finite, higher than that of a
    loss 5 % away, and, where run effects are large, higher than the density of the same loss
    for a new run of the mixture (whose effects are unknown)."""
    points = last_points.rename(columns={"run": "mixture"})
    as_new = points.assign(mixture="new " + points["mixture"])
    new_mixtures = sim_data.mixtures.rename(index=lambda r: f"new {r}")
    own = _lpd(correlated_fit, points)
    shifted = _lpd(correlated_fit, points.assign(loss=points["loss"] * 1.05))
    assert np.isfinite(own).all()
    assert (own > shifted).all()
    large = _with_effects(correlated_fit, 0.05, 0.5)
    own, fresh = _lpd(large, points), _lpd(large, as_new, mixtures=new_mixtures)
    assert np.isfinite(fresh).all()
    assert (own > fresh).mean() > 0.9
