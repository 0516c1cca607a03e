"""The simulator: seeded, follows the law, per-(run, domain) offsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.data.simulate import (
    DEFAULT_SIZE_SLOPES,
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


def test_sizes_move_the_law_as_the_size_aware_law_does():
    """With sizes and no noise, the curve at the middle (reference) size is BiMix at the given
    coefficients, and another size is that law moved by the size slopes (at_size); a larger
    model has a lower mean loss at every step; the same seed gives the same data."""
    from bimix_bayes.laws.registry import BIMIX

    truth = default_parameters()
    domains = list(truth.index)
    mixtures = random_mixtures(4, domains, seed=0)
    steps, sizes = [100.0, 1000.0, 10000.0], [1e8, 4e8, 1.6e9]  # N_ref = 4e8
    data = simulate(truth, mixtures, steps, noise_sd=0, run_sd=0, sizes=sizes)
    assert data.sizes == tuple(sizes) and data.size_kind == "total parameters"
    obs = data.observations.assign(r=data.shares())
    middle = obs[obs["size"] == 4e8]
    p = truth.loc[middle["domain"]]
    law = PaperParams(*(p[c].to_numpy() for c in ("A", "alpha", "B", "beta", "C")))
    assert np.allclose(middle["loss"], law.loss(middle["r"].to_numpy(), middle["step"].to_numpy()))
    by_size = obs.pivot_table(index=["run", "step"], columns="size", values="loss")  # mean
    assert (by_size[1e8] > by_size[4e8]).all() and (by_size[4e8] > by_size[1.6e9]).all()
    slopes = {k: np.full(len(domains), v) for k, v in DEFAULT_SIZE_SLOPES.items()}
    s_ref = float(np.exp(np.log(steps).mean()))
    identifiable = {
        "log_floor": np.log(truth["A"] * truth["C"]).to_numpy(),
        "log_reducible": np.log(truth["A"] * truth["B"]).to_numpy()
        - truth["beta"].to_numpy() * np.log(s_ref),
        "alpha": truth["alpha"].to_numpy(),
        "beta": truth["beta"].to_numpy(),
    }
    run = mixtures.index[1]
    big = obs[(obs["size"] == 1.6e9) & (obs["run"] == run) & (obs["step"] == 1000.0)]
    expected = BIMIX.log_loss(
        None,
        mixtures.loc[run, domains].to_numpy(float),
        np.log(1000.0 / s_ref),
        {**identifiable, **slopes},
        z=np.log(4.0),
    )
    assert np.allclose(np.log(big.set_index("domain")["loss"].loc[domains]), expected)
    again = simulate(truth, mixtures, steps, sizes=sizes, seed=3)
    pd.testing.assert_frame_equal(
        again.observations, simulate(truth, mixtures, steps, sizes=sizes, seed=3).observations
    )
    with pytest.raises(ValueError, match="without a schedule"):
        simulate(truth, mixtures, steps, sizes=sizes, schedule="cosine:total=1e4")
    with pytest.raises(ValueError, match="unknown size slope"):
        simulate(truth, mixtures, steps, sizes=sizes, size_slopes={"size_alpha": 1.0})


def test_the_simulate_command_writes_sizes_and_a_schedule(tmp_path, capsys):
    """`bimix simulate --sizes` writes a size column the loader reads with --size-col;
    `--lr-schedule` curves bend with the schedule; both together are refused."""
    from bimix_bayes.cli.app import main
    from bimix_bayes.data.loaders import load_data

    out = tmp_path / "sized.csv"
    assert main(["simulate", "--out", str(out), "--runs", "4", "--sizes", "100M,1B"]) == 0
    assert "size slopes (per unit of log model size" in capsys.readouterr().out
    assert load_data(out, size_col="size").sizes == (1e8, 1e9)
    cosine = "cosine:total=20000,warmup=200,final=0.1"
    sched = tmp_path / "cosine.csv"
    assert main(["simulate", "--out", str(sched), "--runs", "4", "--lr-schedule", cosine]) == 0
    plain = tmp_path / "plain.csv"
    assert main(["simulate", "--out", str(plain), "--runs", "4"]) == 0
    bent, flat = (pd.read_csv(p).groupby("step")["loss"].mean() for p in (sched, plain))
    assert not np.allclose(bent, flat)  # the schedule's area and annealing move the curves
    both = ["simulate", "--out", str(out), "--sizes", "1B,2B", "--lr-schedule", cosine]
    assert main(both) == 2 and "cannot be simulated together" in capsys.readouterr().err
