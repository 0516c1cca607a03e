"""The forecast core: draws over named dimensions, their summary table, and predict on top."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bimix_bayes.bayes.forecast as forecast
from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.bayes.forecast import (
    DRAW_DIMS,
    NEW,
    OBSERVED,
    forecast_draws,
    predict,
    summarise_draws,
)
from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.data.labels import ALL_DOMAINS, WEIGHTED_DOMAINS
from bimix_bayes.data.simulate import simulate_default

SMALL = {"sampler": {"chains": 2, "draws": 150, "tune": 200, "progress_bar": "never"}}
STEPS = [5e3, 4e4]


@pytest.fixture(scope="module")
def fit():
    """A short fit (convergence is not the point here) and two new mixtures."""
    data = simulate_default(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        idata = BiMixModel(SMALL).fit(data, seed=0)
    domains = list(data.domains)
    new = pd.DataFrame(
        [[0.2] * 5, [0.4, 0.15, 0.15, 0.15, 0.15]], index=["even", "tilted"], columns=domains
    )
    return idata, data, new


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        yield


def test_draws_have_named_dims_and_coords(fit):
    """Draws are a DataArray over (chain, draw, mixture, step, domain); source on mixture."""
    idata, data, new = fit
    runs = list(data.runs[:2])
    draws = forecast_draws(idata, STEPS, mixtures=new, runs=runs, seed=1)
    assert draws.name == "loss"
    assert draws.dims == DRAW_DIMS
    assert draws.sizes["chain"] == idata.posterior.sizes["chain"]
    assert draws.sizes["draw"] == idata.posterior.sizes["draw"]
    assert draws["mixture"].to_numpy().tolist() == [*runs, "even", "tilted"]
    assert draws["source"].dims == ("mixture",)
    assert draws["source"].to_numpy().tolist() == [OBSERVED, OBSERVED, NEW, NEW]
    assert draws["step"].to_numpy().tolist() == STEPS
    assert draws["domain"].to_numpy().tolist() == [*data.domains, ALL_DOMAINS]
    assert draws.attrs["kind"] == "predictive" and draws.attrs["seed"] == 1
    assert np.isfinite(draws).all()
    weighted = forecast_draws(idata, STEPS, mixtures=new, weights={"web": 1.0})
    assert weighted["domain"].to_numpy()[-1] == WEIGHTED_DOMAINS


@pytest.mark.parametrize("weights", [None, {"code": 3.0, "math": 1.0}])
def test_average_is_the_weighted_mean_of_the_domains_per_draw(fit, weights):
    """The last domain is, draw by draw, the (weighted) mean of the per-domain draws."""
    idata, data, new = fit
    draws = forecast_draws(idata, STEPS, mixtures=new, runs=[data.runs[3]], weights=weights)
    w = pd.Series(weights or dict.fromkeys(data.domains, 1.0)).reindex(data.domains, fill_value=0)
    per_domain = draws.sel(domain=list(data.domains))
    manual = (per_domain * (w / w.sum()).to_numpy()).sum("domain")
    assert np.allclose(draws.isel(domain=-1), manual, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kind", ["predictive", "law"])
def test_summary_of_the_draws_is_predict(fit, kind, monkeypatch):
    """predict is summarise_draws of forecast_draws, chunked or not (same seed, same numbers)."""
    idata, data, new = fit
    args = {"mixtures": new, "runs": list(data.runs), "kind": kind, "seed": 4}
    prob = (0.5, 0.8, 0.95)
    table = predict(idata, STEPS, prob=prob, **args)
    pd.testing.assert_frame_equal(
        table, summarise_draws(forecast_draws(idata, STEPS, **args), prob)
    )
    assert table.attrs == {
        "fit_passed": table.attrs["fit_passed"],
        "kind": kind,
        "extrapolation": "",
    }
    monkeypatch.setattr(forecast, "_CHUNK_VALUES", 20_000)  # several chunks of targets
    chunked = predict(idata, STEPS, prob=prob, **args)
    pd.testing.assert_frame_equal(
        chunked, summarise_draws(forecast_draws(idata, STEPS, **args), prob)
    )
    assert list(table.columns) == [
        *("mixture", "source", "step", "domain", "mean", "median", "sd"),
        *("lower_50", "upper_50", "lower_80", "upper_80", "lower_95", "upper_95"),
    ]


def test_same_seed_same_draws(fit):
    """The seed alone fixes the draws."""
    idata, _, new = fit
    a = forecast_draws(idata, STEPS, mixtures=new, seed=3)
    assert a.identical(forecast_draws(idata, STEPS, mixtures=new, seed=3))
    assert not np.array_equal(a, forecast_draws(idata, STEPS, mixtures=new, seed=4))


def test_a_targets_draws_do_not_depend_on_the_other_targets(fit):
    """A mixture (or run) forecast alone, beside others, under another name or at fewer steps
    gets the same draws: predict of one candidate and of a file of candidates agree; two
    targets, or the same shares twice in one request, differ."""
    idata, data, new = fit
    run = data.runs[2]
    both = forecast_draws(idata, STEPS, mixtures=new, runs=[run], seed=5)
    alone = forecast_draws(idata, STEPS[1:], mixtures=new.loc[["tilted"]], seed=5)
    same = {"rtol": 1e-12, "atol": 0}  # the same draws, up to the order of the arithmetic
    tilted = both.sel(mixture="tilted", step=STEPS[1])
    assert np.allclose(tilted, alone.sel(mixture="tilted", step=STEPS[1]), **same)
    observed = forecast_draws(idata, STEPS, runs=[run], seed=5)
    assert np.allclose(both.sel(mixture=run), observed.sel(mixture=run), **same)
    even, tilted = (both.sel(mixture=m, domain=data.domains[0]) for m in ("even", "tilted"))
    assert not np.allclose(even / even.mean(), tilted / tilted.mean())  # their own luck
    renamed = forecast_draws(idata, STEPS, mixtures=new.rename({"tilted": "t2"}).loc[["t2"]])
    alone = forecast_draws(idata, STEPS, mixtures=new.loc[["tilted"]])
    assert np.allclose(renamed, alone, **same)  # the shares, not the name, key a new mixture
    twice = pd.concat([new.loc[["tilted"]], new.loc[["tilted"]].rename({"tilted": "t2"})])
    pair = forecast_draws(idata, STEPS, mixtures=twice).isel(domain=0)
    assert not np.allclose(pair.sel(mixture="tilted"), pair.sel(mixture="t2"))  # two runs


def test_attaching_the_draws_is_opt_in(fit):
    """A default predict leaves the InferenceData alone; attach=True stores the draws."""
    idata, data, new = fit
    idata = idata.copy()
    predict(idata, STEPS, mixtures=new)
    assert "predictions" not in idata.groups()
    predict(idata, STEPS, mixtures=new, runs=[data.runs[0]], seed=2, attach=True)
    stored = idata.predictions
    assert stored.attrs == {"kind": "predictive", "seed": 2}
    assert stored["loss"].dims == DRAW_DIMS and stored["loss"].dtype == np.float32
    assert list(stored.coords) == [*DRAW_DIMS, "source"]
    draws = forecast_draws(idata, STEPS, mixtures=new, runs=[data.runs[0]], seed=2)
    assert np.array_equal(stored["loss"], draws.astype(np.float32))


def test_the_shared_extrapolation_error_widens_forecasts_beyond_the_data_only(fit):
    """Inside the fitted steps the shared error is zero; beyond them it widens every forecast
    alike, and it cancels between two mixtures of the same draw (it moves all runs)."""
    idata, data, new = fit
    last = float(data.observations["step"].max())
    steps = [last / 2, 4 * last]
    on = forecast_draws(idata, steps, mixtures=new, seed=3)
    off_spec = {"discrepancy": {"extrapolation": False}}
    monkey = pytest.MonkeyPatch()
    original = forecast.spec_from_idata
    monkey.setattr(forecast, "spec_from_idata", lambda i: {**original(i), **off_spec})
    try:
        off = forecast_draws(idata, steps, mixtures=new, seed=3)
    finally:
        monkey.undo()
    inside = {"step": steps[0]}
    np.testing.assert_allclose(on.sel(inside), off.sel(inside))  # no extra draws inside

    def width(d):
        return float(d.quantile(0.95, ("chain", "draw")) - d.quantile(0.05, ("chain", "draw")))

    beyond = {"step": steps[1], "domain": ALL_DOMAINS, "mixture": "even"}
    assert width(on.sel(beyond)) > width(off.sel(beyond))
    gap_on = on.sel(step=steps[1], mixture="even") - on.sel(step=steps[1], mixture="tilted")
    gap_off = off.sel(step=steps[1], mixture="even") - off.sel(step=steps[1], mixture="tilted")
    assert float(gap_on.std()) == pytest.approx(float(gap_off.std()), rel=0.05)


def test_far_extrapolation_is_flagged(fit):
    """A forecast more than 8x beyond the fitted steps warns, and the table says so."""
    from bimix_bayes.bayes.discrepancy import ExtrapolationWarning

    idata, data, new = fit
    last = float(data.observations["step"].max())
    with pytest.warns(ExtrapolationWarning, match="50x the last fitted step"):
        table = predict(idata, [50 * last], mixtures=new)
    assert "treat it as a guess" in table.attrs["extrapolation"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        assert predict(idata, [2 * last], mixtures=new).attrs["extrapolation"] == ""


def test_a_mixture_column_the_fit_does_not_know_is_refused(fit):
    """A share of a domain the fit never saw is not dropped silently (shares would sum < 1)."""
    idata, _, new = fit
    extra = (new * 0.9).assign(openhermes=0.1)
    with pytest.raises(ValueError, match="openhermes"):
        predict(idata, [1e4], mixtures=extra)
