"""Held-out runs from another file are matched to the fit's runs by what they are."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.data.holdout_runs import align_holdout_runs
from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.table import DataError, DataWarning

SHARES = {"a": [0.2, 0.5, 0.8], "b": [0.8, 0.5, 0.2]}


def _wide(path, order, steps, run_col=None):
    """A wide log (no run column unless named) with the mixtures in ``order``."""
    rows = []
    for i in order:
        a, b = SHARES["a"][i], SHARES["b"][i]
        for s in steps:
            row = {"step": s, "prop_a": a, "prop_b": b}
            row |= {"loss_a": 2 * a**-0.1 * (1 + 9 / s), "loss_b": 3 * b**-0.1 * (1 + 9 / s)}
            rows.append(({run_col: f"run{i}"} if run_col else {}) | row)
    pd.DataFrame(rows).to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_data(path)


def test_runs_named_by_their_mixture_are_matched_by_shares(tmp_path):
    """Two files without a run column list the mixtures in another order: m000 in one is not
    m000 in the other. Matched by shares, each held-out run continues the fitted run with its
    mixture, and a mixture the fit has not seen is new, with a note saying so."""
    fitted = _wide(tmp_path / "fit.csv", [0, 1], [100, 200, 300])
    held = _wide(tmp_path / "late.csv", [1, 2, 0], [400, 500, 600])
    assert fitted.runs_named_by_mixture and held.runs_named_by_mixture
    assert list(held.mixtures.index) == ["m000", "m001", "m002"]  # file order: 1, 2, 0
    with pytest.warns(DataWarning, match="matched to the fit's runs by their shares, 2 of 3"):
        aligned = align_holdout_runs(fitted, held)
    for run in aligned.mixtures.index:
        if run in fitted.mixtures.index:
            assert np.allclose(aligned.mixtures.loc[run], fitted.mixtures.loc[run])
    assert sorted(aligned.mixtures.index) == ["m000", "m001", "new000"]
    assert set(aligned.observations["run"]) == set(aligned.mixtures.index)
    assert len(aligned.observations) == len(held.observations)  # nothing dropped
    assert "named by their mixture" in aligned.notes[-1]


def test_a_given_run_id_with_other_shares_is_refused(tmp_path):
    """Run ids the user gave must name the same mixture in both files."""
    fitted = _wide(tmp_path / "fit.csv", [0, 1], [100, 200, 300], run_col="run")
    same = _wide(tmp_path / "late.csv", [1, 0], [400, 500, 600], run_col="run")
    assert align_holdout_runs(fitted, same) is same  # ids agree: unchanged, in any order
    frame = pd.read_csv(tmp_path / "late.csv")
    frame["run"] = frame["run"].map({"run0": "run1", "run1": "run0"})  # swapped ids
    frame.to_csv(tmp_path / "swapped.csv", index=False)
    with pytest.raises(DataError, match=r"held-out run 'run0' has the mixture \(a 0.5"):
        align_holdout_runs(fitted, load_data(tmp_path / "swapped.csv"))


def test_a_file_without_run_column_says_how_its_runs_are_named(tmp_path):
    """The loader says it named the runs, and points at a column that may name them."""
    frame = pd.DataFrame(
        {
            "Name": ["x-1", "x-1", "x-1", "x-2", "x-2", "x-2"],
            "step": [100, 200, 300] * 2,
            "prop_a": [0.3] * 3 + [0.6] * 3,
            "prop_b": [0.7] * 3 + [0.4] * 3,
            "loss_a": [3.0, 2.9, 2.8, 2.9, 2.8, 2.7],
            "loss_b": [3.1, 3.0, 2.9, 3.2, 3.1, 3.0],
        }
    )
    frame.to_csv(tmp_path / "w.csv", index=False)
    data = load_data(tmp_path / "w.csv")  # a note (bimix check, the report), not a warning
    assert data.runs == ("m000", "m001")
    said = [n for n in data.notes if n.startswith("no run-id column")]
    assert len(said) == 1 and said[0].endswith("name the run column with --run-col (is it 'Name'?)")
    assert not load_data(tmp_path / "w.csv", run_col="Name").runs_named_by_mixture


def test_a_fit_whose_runs_were_named_by_mixture_matches_held_out_ids_by_shares(tmp_path):
    """The fit's file had no run column (m000...), the held-out file has one: its runs are
    matched to the fitted ones by their shares too, not all taken as new mixtures."""
    fitted = _wide(tmp_path / "fit.csv", [0, 1], [100, 200, 300])
    held = _wide(tmp_path / "late.csv", [1, 2], [400, 500, 600], run_col="run")
    assert fitted.runs_named_by_mixture and not held.runs_named_by_mixture
    with pytest.warns(DataWarning, match="the fitted runs were named by their mixture"):
        aligned = align_holdout_runs(fitted, held)
    assert list(aligned.mixtures.index) == ["m001", "new000"]  # run1 is the fit's m001


def test_two_held_out_replicates_of_a_fitted_mixture_do_not_merge(tmp_path):
    """Held-out seeds of one mixture (their own ids) against a fit named by mixture: the first
    continues the fitted run, the second is a run of its own (not merged into one id)."""
    fitted = _wide(tmp_path / "fit.csv", [0, 1], [100, 200, 300])
    _wide(tmp_path / "late.csv", [1, 2], [400, 500, 600], run_col="run")
    late = pd.read_csv(tmp_path / "late.csv").query("run == 'run1'")
    pd.concat([late.assign(run=f"seed{k}") for k in (1, 2)]).to_csv(
        tmp_path / "seeds.csv", index=False
    )
    held = load_data(tmp_path / "seeds.csv", min_mixtures=1)  # scored, not fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        aligned = align_holdout_runs(fitted, held)
    assert sorted(aligned.mixtures.index) == ["m001", "new000"]
    assert len(aligned.observations) == len(held.observations)
