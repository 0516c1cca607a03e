"""The scoring module: hand-computed values, and properties every forecast score must have."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bimix_bayes.data.labels import ALL_DOMAINS, ALL_POINTS, interval_columns
from bimix_bayes.evaluation.metrics import (
    METRIC_COLUMNS,
    PROBS,
    coverage,
    format_metrics,
    inside,
    interval_tag,
    max_relative_error,
    mean_log_predictive_density,
    mean_relative_error,
    mean_relative_width,
    r2_log,
    relative_errors,
    score,
    spearman,
    with_domain_mean,
)

# positive, finite losses of a plausible range (no overflow in ratios or logs)
losses = arrays(
    float, st.integers(1, 30), elements=st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False)
)


# ------------------------------------------------------------------------------ hand-computed
def test_relative_errors_by_hand():
    obs, pred = [2.0, 4.0, 1.0, 5.0], [2.2, 3.8, 1.0, 4.0]
    assert relative_errors(obs, pred) == pytest.approx([0.1, 0.05, 0.0, 0.2])
    assert mean_relative_error(obs, pred) == pytest.approx(0.0875)
    assert max_relative_error(obs, pred) == pytest.approx(0.2)
    assert math.isnan(mean_relative_error([], []))
    assert math.isnan(max_relative_error([], []))


def test_r2_log_by_hand():
    # log o = 1, 2, 3 (mean 2, SS_tot 2); log p = 1, 2, 2.5 (SS_res 0.25) -> 1 - 0.25 / 2
    assert r2_log(np.exp([1.0, 2.0, 3.0]), np.exp([1.0, 2.0, 2.5])) == pytest.approx(0.875)
    assert math.isnan(r2_log([2.0], [2.0]))  # one point
    assert math.isnan(r2_log([2.0, 2.0], [2.0, 3.0]))  # no spread


def test_spearman_by_hand():
    # one swap of adjacent ranks among 4: 1 - 6 * 2 / (4 * 15)
    assert spearman([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1.0, 2.0], [1.0, 2.0]))  # fewer than 3
    assert math.isnan(spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))  # constant forecast


def test_coverage_and_width_by_hand():
    obs = [2.0, 4.0, 1.0, 5.0]
    assert coverage(obs, [1.9, 4.1, 0.5, 4.0], [2.1, 4.5, 1.5, 6.0]) == pytest.approx(0.75)
    assert coverage(obs, [2.0, 0, 0, 0], [2.0, 0, 0, 0]) == pytest.approx(0.25)  # closed ends
    # a point without an interval is left out of coverage, but is a miss for `inside`
    assert coverage(obs, [1.0, np.nan, 0.0, 0.0], [3.0, np.nan, 0.5, 9.0]) == pytest.approx(2 / 3)
    assert inside(obs, [1.0, np.nan, 0.0, 0.0], [3.0, np.nan, 0.5, 9.0]).tolist() == [
        True,
        False,
        False,
        True,
    ]
    assert math.isnan(coverage(obs, [np.nan] * 4, [np.nan] * 4))
    assert mean_relative_width([1.0, 2.0], [1.5, 2.4], [1.25, 2.0]) == pytest.approx(0.3)
    assert math.isnan(mean_relative_width([np.nan], [np.nan], [1.0]))


def test_mean_log_predictive_density():
    assert mean_log_predictive_density([1.0, 2.0, 4.5]) == pytest.approx(2.5)
    assert math.isnan(mean_log_predictive_density([np.nan, np.nan]))
    assert math.isnan(mean_log_predictive_density([]))


def test_interval_names_follow_the_labels():
    assert [interval_columns(p) for p in PROBS] == [
        ("lower_50", "upper_50"),
        ("lower_90", "upper_90"),
    ]
    assert interval_tag(0.975) == "97_5"
    assert METRIC_COLUMNS == (
        "n",
        "mre",
        "max_re",
        "r2_log",
        "spearman",
        "cover_50",
        "width_50",
        "cover_90",
        "width_90",
        "lpd",
    )


def test_with_domain_mean_only_for_complete_run_steps():
    pts = pd.DataFrame(
        {
            "run": ["a", "a", "b", "c"],
            "step": [1.0, 1.0, 1.0, 1.0],
            "domain": ["x", "y", "x", "z"],
            "loss": [2.0, 4.0, 3.0, 9.0],
            "target": ["observed run", "observed run", "new mixture", "new mixture"],
        }
    )
    out = with_domain_mean(pts, ["x", "y"])
    assert set(out["domain"]) == {"x", "y", ALL_DOMAINS}  # z is not evaluated
    mean = out[out["domain"] == ALL_DOMAINS]
    assert mean[["run", "loss", "target"]].values.tolist() == [["a", 3.0, "observed run"]]


def test_score_pools_and_averages():
    rows = []
    for run, (ox, px, oy, py) in {
        "a": (2.0, 2.0, 1.0, 1.1),
        "b": (3.0, 3.3, 1.5, 1.5),
        "c": (4.0, 3.6, 2.0, 2.4),
    }.items():
        rows += [(run, "x", ox, px), (run, "y", oy, py)]
    pts = pd.DataFrame(rows, columns=["run", "domain", "observed", "predicted"]).assign(
        method="ls", split="0", step=10.0, lpd=np.nan
    )
    for p in PROBS:
        lower, upper = interval_columns(p)
        pts[lower], pts[upper] = pts["predicted"] * (1 - p / 10), pts["predicted"] * (1 + p / 10)
    table = score(pts)
    assert list(table.columns) == list(METRIC_COLUMNS)
    assert table.index.tolist() == [("ls", "x"), ("ls", "y"), ("ls", ALL_POINTS)]
    pooled = table.loc[("ls", ALL_POINTS)]
    assert pooled["n"] == 6
    assert pooled["mre"] == pytest.approx((0 + 0.1 + 0.1 + 0.1 + 0 + 0.2) / 6)
    assert pooled["max_re"] == pytest.approx(0.2)
    # R^2 and Spearman of the pool: the mean of the domains'
    x, y = table.loc[("ls", "x")], table.loc[("ls", "y")]
    assert pooled["r2_log"] == pytest.approx((x["r2_log"] + y["r2_log"]) / 2)
    assert x["spearman"] == pytest.approx(1.0)
    # the 90 % band is +-9 %: it holds the exact forecasts (2 of 6)... and nothing of 10 % off
    assert pooled["cover_90"] == pytest.approx(2 / 6)
    assert pooled["width_90"] == pytest.approx(0.18)
    assert math.isnan(pooled["lpd"])
    text = format_metrics(table).loc[("ls", ALL_POINTS)]
    assert text["mre"] == "8.33%" and text["lpd"] == "-" and text["n"] == "6"


# ------------------------------------------------------------------------------ properties
@settings(max_examples=60, deadline=None)
@given(obs=losses)
def test_interval_from_min_to_max_covers_everything(obs):
    lo = np.full_like(obs, obs.min())
    hi = np.full_like(obs, obs.max())
    assert coverage(obs, lo, hi) == 1.0
    assert inside(obs, lo, hi).all()


@settings(max_examples=60, deadline=None)
@given(obs=losses)
def test_perfect_forecasts_score_perfectly(obs):
    assert mean_relative_error(obs, obs) == 0.0
    assert max_relative_error(obs, obs) == 0.0
    if obs.size >= 2 and np.ptp(np.log(obs)) > 1e-6:
        assert r2_log(obs, obs) == 1.0
    assert coverage(obs, obs, obs) == 1.0  # closed ends
    assert mean_relative_width(obs, obs, obs) == 0.0


@settings(max_examples=60, deadline=None)
@given(obs=losses, ratio=st.floats(0.5, 2.0), scale=st.floats(1e-3, 1e3))
def test_relative_error_is_scale_invariant(obs, ratio, scale):
    pred = obs * ratio
    assert mean_relative_error(obs, pred) == pytest.approx(abs(ratio - 1), rel=1e-9, abs=1e-12)
    assert mean_relative_error(scale * obs, scale * pred) == pytest.approx(
        mean_relative_error(obs, pred), rel=1e-9, abs=1e-12
    )
    assert max_relative_error(scale * obs, scale * pred) == pytest.approx(
        max_relative_error(obs, pred), rel=1e-9, abs=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(obs=losses, noise=st.floats(-0.5, 0.5), scale=st.floats(1e-2, 1e2))
def test_r2_log_is_scale_invariant_and_at_most_one(obs, noise, scale):
    assume(obs.size >= 2 and np.ptp(np.log(obs)) > 1e-6)  # R^2 needs spread in the observed
    pred = obs * np.exp(noise * np.sin(np.arange(obs.size)))
    r2 = r2_log(obs, pred)
    assert r2 <= 1.0 + 1e-12
    assert r2_log(scale * obs, scale * pred) == pytest.approx(r2, rel=1e-6, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(obs=losses, lo=losses, width=st.floats(0.0, 10.0))
def test_coverage_is_a_share_and_grows_with_the_interval(obs, lo, width):
    n = min(obs.size, lo.size)
    obs, lower = obs[:n], lo[:n]
    narrow = coverage(obs, lower, lower + width)
    wide = coverage(obs, lower / 2, lower + 2 * width + 1)
    assert 0.0 <= narrow <= wide <= 1.0
