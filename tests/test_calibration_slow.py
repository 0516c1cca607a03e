"""Simulation-based calibration (Talts et al. 2018) of a small model: slow, run with -m slow.

Parameters are drawn from the prior, data are simulated from the model given them, the model is
fitted, and the rank of each true value among its posterior draws is recorded. If the sampler
and the likelihood are right, the ranks are uniform. The prior is drawn in the step law's direct
coordinates and the fits sample the default (level/slope) ones: the test also checks that both
describe one model.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy.stats import chisquare

from bimix_bayes.bayes.checks import replicate_losses
from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.bayes.likelihood import CurveLayout
from bimix_bayes.bayes.model import BiMixModel, resolve_s_ref
from bimix_bayes.bayes.noise import noise_attrs
from bimix_bayes.data.simulate import random_mixtures, simulate
from bimix_bayes.data.table import MixtureData

N_SIMULATIONS = 80
N_RANK_DRAWS = 99  # posterior draws kept per fit: ranks run 0..99
SPEC = {
    "priors": {
        "log_floor": {"loc": 0.7, "loc_scale": 0.3, "sd_scale": 0.2},
        "log_reducible": {"loc": -0.5, "loc_scale": 0.3, "sd_scale": 0.2},
        "log_alpha": {"loc": -2.5, "loc_scale": 0.3, "sd_scale": 0.2},
        "log_beta": {"loc": -0.7, "loc_scale": 0.2, "sd_scale": 0.1},
    },
    "likelihood": {"sigma_scale": 0.03, "tau_scale": 0.03},
    "sampler": {"draws": 300, "tune": 400, "chains": 2},
}
PARAMS = ("log_floor", "log_reducible", "log_alpha", "log_beta", "sigma", "tau", "noise_excess")


@pytest.mark.slow
def test_simulation_based_calibration():
    """Ranks of the true parameters among posterior draws are uniform (chi-square, 10 bins)."""
    truth = pd.DataFrame(
        {
            "A": [2.0, 3.0],
            "alpha": [0.1, 0.05],
            "B": [20.0, 10.0],
            "beta": [0.5, 0.4],
            "C": [1.0, 1.0],
        },
        index=pd.Index(["a", "b"], name="domain"),
    )
    mixtures = random_mixtures(6, ["a", "b"], min_share=0.05, seed=0)
    template = simulate(truth, mixtures, np.geomspace(100, 10_000, 6), seed=0)
    model = BiMixModel(SPEC)
    layout = CurveLayout.from_data(template, resolve_s_ref(model.spec, template))
    with warnings.catch_warnings():  # the likelihood Potential plays no part in prior draws
        warnings.filterwarnings("ignore", message=".*Potentials.*")
        prior = pm.sample_prior_predictive(
            draws=N_SIMULATIONS, model=model.prior_model(template), random_seed=1
        ).prior
    prior.attrs.update(noise_attrs(model.spec, layout.noise_x0))  # how the noise falls (as fits)
    ranks = {name: [] for name in PARAMS}
    for i in range(N_SIMULATIONS):
        draw = prior.isel(draw=[i])
        losses = replicate_losses(draw, layout, "normal", 5.0, seed=i)[0, 0]
        obs = template.observations.assign(loss=losses)
        data = MixtureData.from_frames(template.mixtures, obs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            post = model.fit(data, seed=i).posterior
        for name in PARAMS:
            samples = post[name].stack(s=("chain", "draw")).transpose("s", ...).to_numpy()
            keep = samples[np.linspace(0, len(samples) - 1, N_RANK_DRAWS).astype(int)]
            true = draw[name].to_numpy()[0, 0]
            ranks[name].extend((keep < true).sum(axis=0).tolist())
    for name, values in ranks.items():
        counts = np.histogram(values, bins=10, range=(0, N_RANK_DRAWS + 1))[0]
        p = chisquare(counts).pvalue
        assert p > 0.001, f"{name}: rank histogram {counts.tolist()} (p = {p:.2g})"
