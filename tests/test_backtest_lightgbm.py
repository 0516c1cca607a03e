"""The LightGBM comparator of backtests (RegMix's regressor): forecasts, reproducibility, what it
does past the fitted steps, and the error when the optional extra is missing."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.cli.backtest import add_commands
from bimix_bayes.data.labels import ALL_DOMAINS, ALL_POINTS
from bimix_bayes.data.table import MixtureData
from bimix_bayes.evaluation.backtest import backtest
from bimix_bayes.evaluation.lightgbm_method import INSTALL_HINT, import_lightgbm
from bimix_bayes.evaluation.runner import method_list

BOUNDS = ["lower_90", "lower_50", "upper_50", "upper_90"]


@pytest.fixture(scope="module")
def holdout(sim_data):
    pytest.importorskip("lightgbm")
    return backtest(sim_data, "holdout-mixtures:6", method="lightgbm", seed=3, n_splits=2)


def test_holdout_mixtures_forecasts_every_held_out_point(holdout, sim_data):
    pts = holdout.points
    assert set(pts["method"]) == {"lightgbm"}
    per = pts[pts["domain"] != ALL_DOMAINS]
    assert len(per) == 2 * 6 * sim_data.observations.groupby("run").size().iloc[0]
    assert (per["target"] == "new mixture").all()
    values = pts[["predicted", *BOUNDS]].to_numpy()
    assert np.isfinite(values).all() and (values > 0).all()
    ordered = np.diff(pts[BOUNDS].to_numpy(), axis=1)  # quantiles do not cross
    assert (ordered >= 0).all()
    assert pts["lpd"].isna().all()
    m = holdout.metrics.loc[("lightgbm", ALL_POINTS)]
    assert 0 < m["mre"] < 0.2 and 0 <= m["cover_90"] <= 1 and np.isfinite(m["width_90"])
    assert ("lightgbm", ALL_DOMAINS) in holdout.metrics.index
    assert holdout.pairs.empty  # no joint draws: no pairwise decision calibration
    assert list(holdout.fits["method"]) == ["lightgbm", "lightgbm"]
    assert "1000 trees" in holdout.settings["lightgbm"]
    assert "lightgbm" in holdout.to_text() and "RegMix" in holdout.to_text()


def test_seeded_runs_reproduce_exactly(holdout, sim_data):
    again = backtest(sim_data, "holdout-mixtures:6", method="lightgbm", seed=3, n_splits=2)
    pd.testing.assert_frame_equal(again.points, holdout.points)


def test_later_steps_get_the_last_fitted_level(sim_data):
    """Trees do not extrapolate: every step past the fitted ones gets the same forecast."""
    pytest.importorskip("lightgbm")
    res = backtest(sim_data, "horizon:0.5", method="lightgbm")
    per = res.points[res.points["domain"] != ALL_DOMAINS]
    assert per["step"].nunique() > 1
    assert (per.groupby(["run", "domain"])["predicted"].nunique() == 1).all()
    assert any("cannot extrapolate in step" in note for note in res.notes())


def test_fixed_budget_data(sim_data):
    pytest.importorskip("lightgbm")
    obs = sim_data.observations
    one = obs[obs["step"] == obs["step"].max()].reset_index(drop=True)
    data = MixtureData.from_frames(sim_data.mixtures, one, min_steps=1)
    res = backtest(data, "holdout-mixtures:8", method="lightgbm", n_splits=1)
    assert np.isfinite(res.points["predicted"]).all()


def test_method_lists():
    assert method_list("both") == ["bayes", "ls"]
    assert method_list("all") == ["bayes", "ls", "lightgbm"]
    with pytest.raises(ValueError, match="'lightgbm'"):
        method_list("trees")


def test_missing_lightgbm_names_the_extra(monkeypatch, sim_data, tmp_path, capsys):
    from bimix_bayes import cli

    monkeypatch.setitem(sys.modules, "lightgbm", None)  # `import lightgbm` now fails
    with pytest.raises(ImportError, match=r"pip install 'bimix-bayes\[lightgbm\]'"):
        import_lightgbm()
    with pytest.raises(ValueError, match=r"bimix-bayes\[lightgbm\]"):
        backtest(sim_data, "last-checkpoint", method="all")
    path = tmp_path / "sim.csv"
    sim_data.to_long().to_csv(path, index=False)
    argv = ["backtest", str(path), "--protocol", "last-checkpoint", "--method", "lightgbm"]
    assert cli.main(argv) == 1
    assert INSTALL_HINT in capsys.readouterr().err


def test_cli_method_lightgbm_writes_points(sim_data, tmp_path, capsys):
    pytest.importorskip("lightgbm")
    parser = argparse.ArgumentParser(prog="bimix")
    add_commands(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["backtest", "x.csv", "--protocol", "last-checkpoint",
                              "--method", "all"]).method == "all"  # fmt: skip
    path = tmp_path / "sim.csv"
    sim_data.to_long().to_csv(path, index=False)
    out, points = tmp_path / "m.csv", tmp_path / "p.csv"
    argv = ["backtest", str(path), "--protocol", "last-checkpoint", "--method", "lightgbm"]
    args = parser.parse_args([*argv, "--out", str(out), "--points", str(points)])
    assert args.func(args) == 0
    assert "lightgbm" in capsys.readouterr().out
    assert set(pd.read_csv(out)["method"]) == {"lightgbm"}
    assert set(pd.read_csv(points)["method"]) == {"lightgbm"}
