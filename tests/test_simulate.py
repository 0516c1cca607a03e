"""The simulator: seeded, follows the law, per-(run, domain) offsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.data.simulate import (
    default_parameters,
    random_mixtures,
    simulate,
    simulate_default,
)
from bimix_bayes.laws.bimix import PaperParams


def test_same_seed_same_data():
    """Seeded runs reproduce; another seed gives other data."""
    a, b, c = simulate_default(seed=5), simulate_default(seed=5), simulate_default(seed=6)
    pd.testing.assert_frame_equal(a.observations, b.observations)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_noiseless_simulation_is_the_law():
    """With no noise the simulated loss is BiMix at the given coefficients."""
    truth = default_parameters()
    mixtures = random_mixtures(4, list(truth.index), seed=0)
    data = simulate(truth, mixtures, [100.0, 1000.0, 5000.0], noise_sd=0, run_sd=0)
    obs = data.observations.assign(r=data.shares())
    p = truth.loc[obs["domain"]]
    law = PaperParams(*(p[c].to_numpy() for c in ("A", "alpha", "B", "beta", "C")))
    assert np.allclose(obs["loss"], law.loss(obs["r"].to_numpy(), obs["step"].to_numpy()))


def test_run_offsets_are_constant_within_a_run_and_domain():
    """The run offset is shared by all checkpoints of one (run, domain)."""
    truth = default_parameters()
    mixtures = random_mixtures(6, list(truth.index), seed=1)
    steps = [100.0, 1000.0, 5000.0]
    clean = simulate(truth, mixtures, steps, noise_sd=0, run_sd=0).observations
    offset = simulate(truth, mixtures, steps, noise_sd=0, run_sd=0.05, seed=3).observations
    ratio = np.log(offset["loss"] / clean["loss"])
    spread = ratio.groupby([offset["run"], offset["domain"]]).agg(np.ptp)
    assert spread.max() < 1e-12
    assert ratio.std() > 0.01


def test_mixtures_are_valid():
    """Random mixtures sum to 1, respect the minimum share, start with the uniform one."""
    m = random_mixtures(50, list("abcde"), min_share=0.03, seed=2)
    assert np.allclose(m.sum(axis=1), 1.0)
    assert (m.to_numpy() >= 0.03 - 1e-12).all()
    assert np.allclose(m.iloc[0], 0.2)
    with pytest.raises(ValueError, match="too large"):
        random_mixtures(3, list("abcde"), min_share=0.25)


def test_simulated_source_says_so():
    """Simulated data are labelled as such wherever the source is shown."""
    assert "simulated" in simulate_default(seed=0).summary()
