"""Backtests: protocol parsing, leak-free splits, metrics on hand-made numbers, end to end."""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.cli.backtest import add_commands
from bimix_bayes.data.table import MixtureData
from bimix_bayes.evaluation.backtest import (
    ALL_POINTS,
    Protocol,
    ProtocolError,
    backtest,
    coverage,
    make_splits,
    max_relative_error,
    mean_relative_error,
    mean_relative_width,
    parse_protocol,
    r2_log,
    score,
    spearman,
)
from bimix_bayes.leastsq.fit import ALL_DOMAINS

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ protocols
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("last-checkpoint", Protocol("last-checkpoint")),
        ("  Last-Checkpoint ", Protocol("last-checkpoint")),
        ("horizon:0.5", Protocol("horizon", 0.5)),
        ("horizon: 0.25", Protocol("horizon", 0.25)),
        ("holdout-mixtures:4", Protocol("holdout-mixtures", 4)),
    ],
)
def test_parse_protocol(text, expected):
    assert parse_protocol(text) == expected
    assert parse_protocol(str(expected)) == expected  # round trip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("horizon", "needs a fraction"),
        ("horizon:abc", "needs a fraction"),
        ("horizon:0", "F must lie in (0, 1)"),
        ("horizon:1.5", "F must lie in (0, 1)"),
        ("holdout-mixtures:1", "K must be >= 2"),
        ("holdout-mixtures:2.5", "whole number"),
        ("holdout-mixtures", "whole number"),
        ("last-checkpoint:3", "takes no value"),
        ("leave-one-out", "unknown protocol"),
        ("", "unknown protocol"),
    ],
)
def test_parse_protocol_errors(text, message):
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_protocol(text)


def test_parse_protocol_rejects_non_strings():
    with pytest.raises(ProtocolError, match="must be a string"):
        parse_protocol(0.5)


# ------------------------------------------------------------------------------ splits
def _keys(obs: pd.DataFrame) -> set[tuple]:
    return set(zip(obs["run"], obs["step"], obs["domain"], strict=True))


def _check_partition(data: MixtureData, split) -> None:
    train, held = _keys(split.train.observations), _keys(split.held)
    assert not train & held, "an observation is both fitted and held out"
    assert train | held == _keys(data.observations)
    assert len(split.held) == len(held)


@pytest.fixture(scope="module")
def ragged(sim_data) -> MixtureData:
    """Simulated runs where run 0 stops one checkpoint early and run 1 two checkpoints early."""
    obs = sim_data.observations
    steps = np.sort(obs["step"].unique())
    runs = list(sim_data.runs)
    drop = ((obs["run"] == runs[0]) & (obs["step"] == steps[-1])) | (
        (obs["run"] == runs[1]) & (obs["step"] >= steps[-2])
    )
    return MixtureData(
        mixtures=sim_data.mixtures,
        observations=obs[~drop].reset_index(drop=True),
        volume=sim_data.volume,
        source="ragged",
    )


def test_last_checkpoint_holds_out_each_runs_own_last(ragged):
    (split,) = make_splits(ragged, "last-checkpoint")
    _check_partition(ragged, split)
    last = ragged.observations.groupby("run")["step"].max()
    held_last = split.held.groupby("run")["step"].agg(["min", "max"])
    assert (held_last["min"] == last).all() and (held_last["max"] == last).all()
    assert split.held.groupby("run").size().eq(len(ragged.domains)).all()
    assert (split.held["target"] == "observed run").all()
    # nothing at or after a run's last step is in the training part
    t = split.train.observations
    assert (t["step"].to_numpy() < t["run"].map(last).to_numpy()).all()


def test_horizon_split(sim_data):
    (split,) = make_splits(sim_data, "horizon:0.5")
    _check_partition(sim_data, split)
    cut = 0.5 * sim_data.observations["step"].max()
    assert split.train.observations["step"].max() <= cut
    assert split.held["step"].min() > cut


def test_horizon_before_the_first_checkpoint_says_which_fraction_leaves_data_to_fit(sim_data):
    """A horizon fraction below the first checkpoint leaves nothing to fit: the error says so
    and names a fraction that works (it used to surface as "s_ref ... got nan")."""
    steps = np.unique(sim_data.observations["step"])
    low = 0.5 * steps[0] / steps[-1]
    with pytest.raises(ProtocolError, match="nothing is left to fit") as info:
        make_splits(sim_data, f"horizon:{low:.4g}")
    least = float(str(info.value).rsplit("at least ", 1)[1].split(" ")[0])
    (split,) = make_splits(sim_data, f"horizon:{least:.4g}")
    assert split.train.observations["step"].nunique() == 3


def test_horizon_run_without_training_points_is_a_new_mixture(sim_data):
    obs = sim_data.observations
    cut = 0.5 * obs["step"].max()
    late_run = sim_data.runs[0]
    keep = ~((obs["run"] == late_run) & (obs["step"] <= cut))
    data = MixtureData(
        sim_data.mixtures, obs[keep].reset_index(drop=True), sim_data.volume, source="x"
    )
    (split,) = make_splits(data, "horizon:0.5")
    targets = split.held.groupby("run")["target"].unique()
    assert list(targets[late_run]) == ["new mixture"]
    assert all(list(t) == ["observed run"] for r, t in targets.items() if r != late_run)
    assert late_run not in split.train.runs


def test_holdout_mixtures_splits(sim_data):
    splits = make_splits(sim_data, "holdout-mixtures:5", seed=3, n_splits=4)
    assert len(splits) == 4
    seen = set()
    for split in splits:
        _check_partition(sim_data, split)
        train_runs = set(split.train.runs)
        assert len(train_runs) == 5
        assert not train_runs & set(split.held["run"])
        assert set(split.held["run"]) == set(sim_data.runs) - train_runs
        assert (split.held["target"] == "new mixture").all()
        seen.add(frozenset(train_runs))
    assert len(seen) > 1  # the splits differ
    again = make_splits(sim_data, "holdout-mixtures:5", seed=3, n_splits=4)
    assert [set(s.train.runs) for s in again] == [set(s.train.runs) for s in splits]


def test_holdout_needs_runs_left_over(sim_data):
    with pytest.raises(ProtocolError, match="needs more than 12 runs"):
        make_splits(sim_data, "holdout-mixtures:12")


# ------------------------------------------------------------------------------ metrics
def test_metrics_on_hand_made_numbers():
    obs = [2.0, 4.0, 1.0, 5.0]
    pred = [2.2, 3.8, 1.0, 4.0]
    assert mean_relative_error(obs, pred) == pytest.approx((0.1 + 0.05 + 0 + 0.2) / 4)
    assert max_relative_error(obs, pred) == pytest.approx(0.2)
    lo, lp = np.log(obs), np.log(pred)
    expected_r2 = 1 - ((lo - lp) ** 2).sum() / ((lo - lo.mean()) ** 2).sum()
    assert r2_log(obs, pred) == pytest.approx(expected_r2)
    assert r2_log([1.0, 1.0], [1.0, 2.0]) != r2_log([1.0, 1.0], [1.0, 2.0])  # NaN: no spread
    # ranks 2,3,1,4 vs 2,3,1,4 -> 1; swap two -> 1 - 6*2/(4*15) = 0.8
    assert spearman(obs, pred) == pytest.approx(1.0)
    assert spearman([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)
    assert math.isnan(spearman([1.0, 2.0], [1.0, 2.0]))
    assert coverage(obs, [1.9, 4.1, 0.5, 4.0], [2.1, 4.5, 1.5, 6.0]) == pytest.approx(0.75)
    assert coverage(obs, [2.0, 0, 0, 0], [2.0, 0, 0, 0]) == pytest.approx(0.25)  # closed ends
    assert math.isnan(coverage(obs, [np.nan] * 4, [np.nan] * 4))
    assert mean_relative_width([1.0, 2.0], [1.5, 2.4], [1.25, 2.0]) == pytest.approx(0.3)


def _points(method: str, rows: list[tuple]) -> pd.DataFrame:
    cols = ["split", "run", "domain", "step", "observed", "predicted"]
    df = pd.DataFrame(rows, columns=cols).assign(method=method, target="observed run")
    df["lower_50"], df["upper_50"] = df["predicted"] * 0.99, df["predicted"] * 1.01
    df["lower_90"], df["upper_90"] = df["predicted"] * 0.95, df["predicted"] * 1.05
    df["lpd"] = np.where(df["domain"] == ALL_DOMAINS, np.nan, 1.0)
    return df


def test_score_table():
    rows = [
        ("0", "a", "x", 10.0, 2.0, 2.0),
        ("0", "b", "x", 10.0, 3.0, 3.3),
        ("0", "c", "x", 10.0, 4.0, 3.6),
        ("0", "a", "y", 10.0, 1.0, 1.01),
        ("0", "b", "y", 10.0, 1.5, 1.5),
        ("0", "c", "y", 10.0, 2.0, 2.4),
        ("0", "a", ALL_DOMAINS, 10.0, 1.5, 1.505),
    ]
    table = score(_points("bayes", rows))
    x = table.loc[("bayes", "x")]
    assert x["n"] == 3
    assert x["mre"] == pytest.approx((0 + 0.1 + 0.1) / 3)
    assert x["max_re"] == pytest.approx(0.1)
    assert x["cover_50"] == pytest.approx(1 / 3)  # only the exact forecast is within 1 %
    assert x["cover_90"] == pytest.approx(1 / 3)  # 10 % misses are outside 5 %
    assert x["width_90"] == pytest.approx(0.10)
    assert x["spearman"] == pytest.approx(1.0)
    y = table.loc[("bayes", "y")]
    assert y["cover_90"] == pytest.approx(2 / 3)
    pooled = table.loc[("bayes", ALL_POINTS)]
    assert pooled["n"] == 6
    assert pooled["mre"] == pytest.approx((0 + 0.1 + 0.1 + 0.01 + 0 + 0.2) / 6)
    assert pooled["cover_90"] == pytest.approx(3 / 6)
    assert pooled["r2_log"] == pytest.approx((x["r2_log"] + y["r2_log"]) / 2)
    assert pooled["lpd"] == pytest.approx(1.0)
    avg = table.loc[("bayes", ALL_DOMAINS)]
    assert avg["n"] == 1 and avg["mre"] == pytest.approx(0.005 / 1.5)
    assert math.isnan(avg["lpd"])


# ------------------------------------------------------------------------------ end to end
def test_backtest_ls_end_to_end(sim_data, tmp_path):
    res = backtest(sim_data, "horizon:0.5", method="ls", n_bootstrap=30)
    pts = res.points
    assert set(pts["method"]) == {"ls"}
    assert pts["lpd"].isna().all()
    per = pts[pts["domain"] != ALL_DOMAINS]
    assert len(per) == (sim_data.observations["step"] > 0.5 * 20_000).sum()
    assert (per["lower_90"] <= per["upper_90"]).all()
    assert (per["lower_90"] <= per["lower_50"]).all() and (per["upper_50"] <= per["upper_90"]).all()
    m = res.metrics.loc[("ls", ALL_POINTS)]
    assert m["mre"] < 0.03 and m["r2_log"] > 0.8 and 0.5 < m["cover_90"] <= 1.0
    assert "horizon:0.5" in res.to_text()
    md = res.to_markdown("t")
    assert md.startswith("**t**") and "| ls |" in md
    out = res.to_csv(tmp_path / "m.csv")
    back = pd.read_csv(out)
    assert {"method", "domain", "mre", "cover_90"} <= set(back.columns)
    res.to_csv(tmp_path / "p.csv", points=True)
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(pts)


def test_to_html_escapes(sim_data):
    res = backtest(sim_data, "last-checkpoint", method="ls", n_bootstrap=0)
    res.data_summary = "<script>alert(1)</script>"
    html = res.to_html()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<table" in html
    assert math.isnan(res.metrics.loc[("ls", ALL_POINTS), "cover_90"])  # no bootstrap


def test_backtest_bayes_small_spec(sim_data):
    spec = {"sampler": {"chains": 2, "draws": 150, "tune": 150, "progress_bar": "never"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = backtest(
            sim_data, "last-checkpoint", method="both", spec=spec, n_bootstrap=20, retry=False
        )
    b = res.metrics.loc[("bayes", ALL_POINTS)]
    ls = res.metrics.loc[("ls", ALL_POINTS)]
    assert b["mre"] < 0.02 and b["r2_log"] > 0.9
    assert 0.6 <= b["cover_90"] <= 1.0 and np.isfinite(b["lpd"])
    per = res.points[(res.points["method"] == "bayes") & (res.points["domain"] != ALL_DOMAINS)]
    assert per["lpd"].notna().all()
    # the simulated noise is 1 % on log loss: the predictive density of a loss near 2-3 nats
    # must be of the order of 1 / (0.01 * 2.5 * sqrt(2 pi)), log ~ 2.8
    assert 1.0 < b["lpd"] < 4.5
    assert np.isfinite(ls["mre"]) and set(res.fits["method"]) == {"bayes", "ls"}
    # 2 x 150 draws cannot reach an ESS of 400: the fit fails, and the notes say why
    bayes = res.fits[res.fits["method"] == "bayes"].iloc[0]
    assert res.failures() == [(str(bayes["split"]), bayes["problems"])]
    assert "ESS" in bayes["problems"]
    assert f"  split {bayes['split']}: {bayes['problems']}" in res.notes()


def test_fixed_budget_data(sim_data):
    obs = sim_data.observations
    one = obs[obs["step"] == obs["step"].max()].reset_index(drop=True)
    data = MixtureData.from_frames(sim_data.mixtures, one, min_steps=1)
    res = backtest(data, "holdout-mixtures:8", method="both", n_splits=2, n_bootstrap=20)
    assert res.settings["fixed_budget"]
    b = res.metrics.loc[("bayes", ALL_POINTS)]
    assert np.isfinite(b["lpd"]) and b["mre"] < 0.05
    with pytest.raises(ProtocolError, match="single step"):
        backtest(data, "last-checkpoint", method="ls")


# ------------------------------------------------------------------------------ command
@pytest.fixture
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bimix")
    sub = p.add_subparsers(dest="command")
    add_commands(sub)
    return p


def test_cli_backtest_runs_and_writes(parser, sim_data, tmp_path, capsys):
    path = tmp_path / "sim.csv"
    sim_data.to_long().to_csv(path, index=False)
    out = tmp_path / "metrics.csv"
    args = parser.parse_args(
        [
            "backtest",
            str(path),
            "--protocol",
            "last-checkpoint",
            "--method",
            "ls",
            "--bootstrap",
            "10",
            "--out",
            str(out),
            "--points",
            str(tmp_path / "pts.csv"),
        ]
    )
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "backtest last-checkpoint" in text and "(all points)" in text
    assert out.exists() and (tmp_path / "pts.csv").exists()


def test_cli_backtest_bad_protocol_is_usage_error(parser, capsys):
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["backtest", "x.csv", "--protocol", "horizon:7"])
    assert exc.value.code == 2
    assert "F must lie in (0, 1)" in capsys.readouterr().err


def test_cli_backtest_impossible_protocol_is_a_value_error(parser, sim_data, tmp_path):
    path = tmp_path / "sim.csv"
    sim_data.to_long().to_csv(path, index=False)
    args = parser.parse_args(["backtest", str(path), "--protocol", "holdout-mixtures:40"])
    with pytest.raises(ValueError, match="needs more than 40 runs"):
        args.func(args)


def test_main_cli_exit_code_for_impossible_protocol(sim_data, tmp_path, capsys):
    """Through bimix's main(): a protocol the data cannot support is a data error (exit 1)."""
    from bimix_bayes import cli

    path = tmp_path / "sim.csv"
    sim_data.to_long().to_csv(path, index=False)
    assert cli.main(["backtest", str(path), "--protocol", "holdout-mixtures:40"]) == 1
    assert "needs more than 40 runs" in capsys.readouterr().err


# ------------------------------------------------------------------------------ benchmark
@pytest.mark.slow
@pytest.mark.shared_data
def test_validate_public_smoke(datasets_dir, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "validate_public", ROOT / "benchmarks" / "validate_public.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "validate_public", module)  # dataclasses need it
    spec.loader.exec_module(module)
    out = tmp_path / "validation.md"
    assert module.main(["--smoke", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Produced by `python benchmarks/validate_public.py --smoke" in text
    assert "SlimPajama 122M" in text and "| Bayes bimix | all points |" in text
    assert "| LS (the paper's BiMix least squares) | all points |" in text
    # issue 13's targets: the share of fits that passed counts the one smoke fit
    assert "## Targets of issue 13" in text
    assert "of the Bayesian fits in this report pass their diagnostics" in text
    assert " of 1 (" in text
    # a failed fit is listed with its problems, a passed one is not
    passed = "| 1 of 1 (" in text
    assert ("Fits that failed their diagnostics after the retry" in text) != passed


# ------------------------------------------------------------------------------ run_slope option
def test_slope_likelihood_and_conditional_match_dense_gaussian():
    """The opt-in random slope: closed forms against the dense multivariate Normal."""
    from scipy.stats import multivariate_normal

    from bimix_bayes.bayes.likelihood import curve_log_likelihood, offset_conditional

    rng = np.random.default_rng(0)
    x = np.log(np.array([1.0, 2.0, 3.0, 5.0, 8.0]) / 3.0)
    e = rng.normal(size=5) * 0.02
    sigma, tau, kappa = 0.01, 0.02, 0.015
    cov = sigma**2 * np.eye(5) + tau**2 + kappa**2 * np.outer(x, x)
    slope = ((x * e).sum(), x.sum(), (x**2).sum(), kappa)
    got = curve_log_likelihood(e.sum(), (e**2).sum(), 5, sigma, tau, slope=slope)
    assert got == pytest.approx(multivariate_normal(np.zeros(5), cov).logpdf(e), rel=1e-10)
    # kappa = 0 is the offset-only likelihood
    flat = curve_log_likelihood(e.sum(), (e**2).sum(), 5, sigma, tau, slope=(*slope[:3], 0.0))
    assert flat == pytest.approx(curve_log_likelihood(e.sum(), (e**2).sum(), 5, sigma, tau))
    # conditional of (u, v) given the residuals
    u_mat = np.column_stack([np.ones(5), x])
    prec = np.diag([tau**-2, kappa**-2]) + u_mat.T @ u_mat / sigma**2
    post_cov = np.linalg.inv(prec)
    post_mean = post_cov @ u_mat.T @ e / sigma**2
    cond = offset_conditional(e.sum(), (e**2).sum(), 5, sigma, tau, slope=slope)
    assert [cond["mean"], cond["slope_mean"]] == pytest.approx(post_mean.tolist(), rel=1e-9)
    assert [cond["var"], cond["cov"], cond["slope_var"]] == pytest.approx(
        [post_cov[0, 0], post_cov[0, 1], post_cov[1, 1]], rel=1e-9
    )


@pytest.mark.slow
def test_slope_model_fits_through_nutpie_grouped_and_its_intervals_widen_with_the_horizon():
    """A model with run slopes samples with nutpie in the grouped form (every simulated run has
    the same checkpoints: one design) and forecasts an observed run with an interval that
    widens away from the fitted steps."""
    from bimix_bayes.bayes.forecast import predict
    from bimix_bayes.bayes.graph import groups_runs
    from bimix_bayes.bayes.likelihood import CurveLayout
    from bimix_bayes.bayes.model import BiMixModel, resolve_s_ref
    from bimix_bayes.data.simulate import simulate_default

    data = simulate_default(seed=2)
    spec = {
        "likelihood": {"run_slope": True},
        "sampler": {"draws": 150, "tune": 200, "chains": 2, "progress_bar": "never"},
    }
    model = BiMixModel(spec)
    layout = CurveLayout.from_data(data, resolve_s_ref(model.spec, data))
    assert groups_runs(layout, slopes=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short chain may miss the strict thresholds
        idata = model.fit(data, seed=0)
    assert idata.attrs["sampler"] == "nutpie"
    assert idata.posterior["kappa"].dims[-1] == "domain"
    last = float(data.observations["step"].max())
    run = data.runs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = predict(idata, steps=[last, 4 * last], runs=[run], attach=False, seed=0)
    avg = out[out["domain"] == "(mean of domains)"].set_index("step")
    width = (avg["upper_90"] - avg["lower_90"]) / avg["median"]
    assert width.loc[4 * last] > width.loc[last]
