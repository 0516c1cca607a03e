"""The run offsets' sd ``tau`` under ``likelihood.tau_prior``: Gamma(2) with the HalfNormal's
mean (no density at 0) or the HalfNormal itself, in the independent and the correlated
likelihoods; files saved before the option keep the HalfNormal."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pymc as pm
import pytest
from scipy.stats import gamma as gamma_dist
from scipy.stats import halfnorm

from bimix_bayes.bayes.graph import build_pymc_model
from bimix_bayes.bayes.likelihood import CurveLayout
from bimix_bayes.bayes.persistence import spec_from_idata
from bimix_bayes.bayes.spec import SpecError, load_spec, merge_spec
from tests.test_laws import _data

SCALE = 0.05


def _tau_draws(prior: str, run_correlation: bool) -> np.ndarray:
    layout = CurveLayout.from_data(_data(), 3e3)
    lik = {"tau_prior": prior, "tau_scale": SCALE, "run_correlation": run_correlation}
    model = build_pymc_model(layout, merge_spec({"likelihood": lik}))
    return np.asarray(pm.draw(model["tau"], draws=20_000, random_seed=1))


@pytest.mark.parametrize("run_correlation", [False, True])
def test_both_priors_have_the_half_normal_mean_and_only_gamma_avoids_zero(run_correlation):
    """Same prior mean (scale sqrt(2 / pi)); the Gamma(2) keeps tau off 0, where the sampler
    meets the funnel of a run effect the data cannot tell from none."""
    mean = SCALE * np.sqrt(2.0 / np.pi)
    half, gamma = (_tau_draws(p, run_correlation) for p in ("half_normal", "gamma"))
    assert half.shape == gamma.shape and half.shape[1] == 3  # one sd per domain
    for draws in (half, gamma):
        assert abs(draws.mean() / mean - 1.0) < 0.02
    # P(tau < a tenth of the mean): 0.064 under the HalfNormal, 0.018 under Gamma(2)
    small = 0.1 * mean
    expected = (halfnorm(scale=SCALE).cdf(small), gamma_dist(2.0, scale=mean / 2.0).cdf(small))
    for draws, p in zip((half, gamma), expected, strict=True):
        assert abs(np.mean(draws < small) - p) < 4 * np.sqrt(p / draws.size)
    assert expected[1] < expected[0] / 3


def test_the_default_is_gamma_and_the_spec_refuses_other_names():
    assert load_spec()["likelihood"]["tau_prior"] == "gamma"
    with pytest.raises(SpecError, match="tau_prior"):
        merge_spec({"likelihood": {"tau_prior": "exponential"}})


def test_a_fit_saved_before_the_option_keeps_the_half_normal():
    """A file whose spec has no tau_prior was fitted with the HalfNormal: it loads as such."""
    old = load_spec()
    del old["likelihood"]["tau_prior"]
    idata = az.InferenceData()
    idata.attrs["spec"] = json.dumps(old)
    assert spec_from_idata(idata)["likelihood"]["tau_prior"] == "half_normal"
