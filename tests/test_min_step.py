"""Leaving out the start of training (``min_step`` / ``--min-step``)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from bimix_bayes.cli.app import main
from bimix_bayes.data.embedded import LAW_MIN_STEP, load_default
from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.simulate import simulate_default
from bimix_bayes.data.validate import DataError


@pytest.fixture
def sim_csv(tmp_path):
    path = tmp_path / "sim.csv"
    simulate_default(seed=2).to_long().to_csv(path, index=False)
    return path


def test_min_step_leaves_out_earlier_checkpoints_and_says_how_many(sim_csv):
    full = load_data(sim_csv)
    steps = sorted(full.observations["step"].unique())
    cut = steps[2]
    with pytest.warns(UserWarning, match=r"left out \d+ observation\(s\) before step"):
        data = load_data(sim_csv, min_step=cut)
    assert data.observations["step"].min() == cut
    dropped = (full.observations["step"] < cut).sum()
    assert len(data.observations) == len(full.observations) - dropped
    assert any(f"left out {dropped} observation(s)" in n for n in data.notes)
    # nothing else is lost: every later observation is still there
    later = full.observations[full.observations["step"] >= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(data.observations.reset_index(drop=True), later)


def test_min_step_beyond_every_checkpoint_is_refused(sim_csv):
    with pytest.raises(DataError, match=r"every observation is before min_step.*lower --min-step"):
        load_data(sim_csv, min_step=1e12)


def test_min_step_that_leaves_too_few_steps_is_refused_by_the_design_check(sim_csv):
    full = load_data(sim_csv)
    last_two = sorted(full.observations["step"].unique())[-2]
    with pytest.raises(DataError, match="step"):
        load_data(sim_csv, min_step=last_two)


def test_embedded_data_starts_where_the_law_holds():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_default()
        everything = load_default(min_step=None)
    assert data.observations["step"].min() >= LAW_MIN_STEP
    assert everything.observations["step"].min() < LAW_MIN_STEP
    assert data.n_runs == everything.n_runs == 20


def test_cli_min_step_option(sim_csv, capsys):
    with pytest.raises(SystemExit) as bad:
        main(["fit-ls", str(sim_csv), "--min-step", "-1"])
    assert bad.value.code == 2 and "--min-step" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit-ls", str(sim_csv), "--min-step", "1000", "-q"]) == 0
    out = capsys.readouterr()
    assert "left out" in out.err + out.out
