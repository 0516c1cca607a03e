"""Model size as a dimension (issue 16): loading, the law's size slopes, the graph against the
numpy likelihood, forecasts and decisions at a size, and the holdout-size backtest."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.bayes.forecast import predict
from bimix_bayes.bayes.graph import SIZE_PRIOR_KEYS, build_pymc_model
from bimix_bayes.bayes.likelihood import CurveLayout
from bimix_bayes.bayes.model import BiMixModel, pointwise_log_likelihood
from bimix_bayes.bayes.noise import noise_attrs
from bimix_bayes.bayes.sizes import SizeExtrapolationWarning, fitted_sizes
from bimix_bayes.bayes.spec import merge_spec
from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate_default
from bimix_bayes.data.table import DataError, MixtureData
from bimix_bayes.evaluation.splits import make_splits
from bimix_bayes.laws.registry import BIMIX, BIMIX_CROSS
from bimix_bayes.laws.size import SIZE_PARAMS, at_size, size_reference

SIZES = (1e8, 2e8, 4e8)
SLOPES = {"size_floor": -0.08, "size_reducible": 0.1, "size_beta": -0.05, "size_mixture": 0.2}


def _size_data(seed: int = 0, sizes=SIZES, n_runs: int = 6, n_domains: int = 3) -> MixtureData:
    """BiMix curves at several sizes with known size slopes, one run offset per mixture shared by
    its sizes, and checkpoint noise."""
    rng = np.random.default_rng(seed)
    truth = default_parameters().iloc[:n_domains]
    domains = list(truth.index)
    mixtures = random_mixtures(n_runs, domains, seed=seed)
    s_ref, n_ref = 3e3, size_reference(sizes)
    params = {
        "log_floor": np.log(truth["A"].to_numpy() * truth["C"].to_numpy()),
        "log_reducible": np.log(truth["A"] * truth["B"]).to_numpy()
        - truth["beta"].to_numpy() * np.log(s_ref),
        "alpha": truth["alpha"].to_numpy(),
        "beta": truth["beta"].to_numpy(),
    }
    slopes = {k: np.full(n_domains, v) for k, v in SLOPES.items()}
    rows = []
    for run, shares in mixtures.iterrows():
        offset = rng.normal(0, 0.01, n_domains)
        for size in sizes:
            for step in (1e3, 2e3, 4e3, 8e3):
                mu = BIMIX.log_loss(
                    None,
                    shares.to_numpy(),
                    np.log(step / s_ref),
                    {**params, **slopes},
                    z=np.log(size / n_ref),
                )
                loss = np.exp(mu + offset + rng.normal(0, 0.005, n_domains))
                rows += [
                    {"run": run, "step": step, "size": size, "domain": d, "loss": v}
                    for d, v in zip(domains, loss, strict=True)
                ]
    return MixtureData.from_frames(mixtures, pd.DataFrame(rows), size_kind="total parameters")


def test_size_data_keep_one_run_per_mixture_and_say_what_the_sizes_count():
    data = _size_data()
    assert data.has_sizes and data.sizes == SIZES
    assert data.n_runs == 6  # a run id is a mixture, trained at three sizes
    assert "3 model sizes" in data.summary() and "total parameters" in data.summary()
    assert data.subset(max_size=2e8).sizes == (1e8, 2e8)
    plain = simulate_default(seed=1)
    assert not plain.has_sizes and plain.sizes == ()
    with pytest.raises(DataError, match="no model-size dimension"):
        plain.subset(max_size=1e8)


def test_two_losses_at_one_step_need_a_size_column():
    data = _size_data()
    obs = data.observations.drop(columns="size")
    with pytest.raises(DataError, match="--size-col"):
        MixtureData.from_frames(data.mixtures, obs)


def test_wide_loader_reads_sizes_as_a_dimension(tmp_path):
    path = tmp_path / "runs.csv"
    rng = np.random.default_rng(0)
    lines = ["weight_web,weight_code,model_size,n_tokens,web_loss,code_loss"]
    for w in (0.2, 0.5, 0.8):
        for size in ("122M", "1.2e9"):
            for t in (1e9, 2e9, 4e9):
                lines.append(f"{w},{1 - w},{size},{t},{3 + rng.random()},{2 + rng.random()}")
    path.write_text("\n".join(lines))
    data = load_data(path, size_col="model_size", size_kind="non-embedding parameters")
    assert data.n_runs == 3 and data.sizes == (122e6, 1.2e9)
    assert data.size_kind == "non-embedding parameters"
    with pytest.raises(DataError, match="both the group column and the size column"):
        load_data(path, size_col="model_size", group_col="model_size", group="122M")
    bad = tmp_path / "bad.csv"
    bad.write_text(path.read_text().replace("1.2e9", "big", 1))
    with pytest.raises(DataError, match=r"not positive numbers.*line 5: 'big'"):
        load_data(bad, size_col="model_size")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), z=st.floats(-2, 2))
def test_scaling_the_mixture_term_is_scaling_its_parameters(seed, z):
    """at_size scales alpha and cross by exp(size_mixture z); the graph scales the whole mixture
    term instead: the same because every law's mixture term is linear in its parameters."""
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.ones(4), 5)
    params = {
        "log_floor": rng.normal(0.5, 0.3, 5),
        "log_reducible": rng.normal(-1, 0.3, 5),
        "alpha": rng.uniform(0.01, 0.2, 5),
        "beta": rng.uniform(0.3, 1.0, 5),
        "cross": rng.normal(0, 0.3, (5, 4)) * np.array([0, 1, 1, 1]),
    }
    slopes = {k: rng.normal(0, 0.2, 5) for k in SIZE_PARAMS}
    moved = at_size(params, slopes, z)
    term = BIMIX_CROSS.mixture_term(shares, shares[:, 0], params)
    assert np.allclose(
        BIMIX_CROSS.mixture_term(shares, shares[:, 0], moved),
        term * np.exp(slopes["size_mixture"] * z),
    )
    assert np.allclose(moved["log_floor"], params["log_floor"] + slopes["size_floor"] * z)
    assert np.allclose(np.log(moved["beta"]), np.log(params["beta"]) + slopes["size_beta"] * z)
    assert at_size(params, slopes, 0.0)["alpha"] is not None
    assert np.allclose(at_size(params, slopes, 0.0)["alpha"], params["alpha"])


@pytest.mark.parametrize(("correlated", "grouped"), [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("law", ["bimix", "bimix_cross"])
def test_the_size_graph_equals_the_numpy_law_and_likelihood(law, correlated, grouped):
    """The PyMC graph's log likelihood at a random point (size slopes included) equals the numpy
    law (at_size) + Woodbury run likelihood, on a layout whose curves span three sizes."""
    from tests.test_laws import _graph_loglik, _posterior_at

    layout = CurveLayout.from_data(_size_data(), 3e3)
    assert layout.has_sizes and len(layout.step_grid) == 12  # 4 steps x 3 sizes
    spec = merge_spec({"law": {"name": law}, "likelihood": {"run_correlation": correlated}})
    model = build_pymc_model(layout, spec, grouped=grouped)
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}
    post = _posterior_at(model, point)
    post.attrs |= {"law": law, **noise_attrs(spec, layout.noise_x0)}
    assert np.abs(post["size_mixture"]).max() > 0.01  # the slopes are not all zero
    expected = float(pointwise_log_likelihood(post, layout, spec)["loss_run"].sum())
    assert np.isclose(_graph_loglik(model, point), expected, rtol=1e-9)


@pytest.fixture(scope="module")
def size_fit():
    # three fitted sizes: with two, the floor, reducible and exponent slopes trade off (one
    # environment recovered size_reducible 0.035 for 0.1); 8e8 is held out
    data = _size_data(seed=3, sizes=(*SIZES, 8e8))
    model = BiMixModel({"sampler": {"draws": 150, "tune": 300, "chains": 2}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.fit(data.subset(max_size=4e8), seed=1)
    return data, idata


def test_a_size_fit_recovers_the_slopes_and_forecasts_a_larger_size(size_fit, tmp_path):
    from bimix_bayes import load_fit, predict, save_fit

    data, idata = size_fit
    post = idata.posterior
    assert fitted_sizes(idata) == SIZES
    assert idata.attrs["size_kind"] == "total parameters"
    prior = BiMixModel().spec["size"]
    prior_sd = dict(zip(SIZE_PARAMS, [prior[k] for k in SIZE_PRIOR_KEYS], strict=True))
    for name, value in SLOPES.items():  # each domain's slope within 3 posterior sds of the truth
        mean, sd = post[name].mean(("chain", "draw")), post[name].std(("chain", "draw"))
        assert (np.abs(mean - value) < 3 * sd + 0.01).all(), (name, mean.values, sd.values)
        # and the data pin it down: the posterior sd is at most a third of the prior's (the
        # mixture slope scales alpha log r, so it is as loose as the domain's exponent)
        assert float(sd.max()) < prior_sd[name] / 3, (name, sd.values)
    path = save_fit(idata, tmp_path / "fit.nc")
    loaded = load_fit(path)
    assert fitted_sizes(loaded) == SIZES
    with pytest.raises(ValueError, match="say which size"):
        predict(loaded, [8e3], runs=["mix000"])
    table = predict(loaded, [8e3], runs=list(data.runs), size=8e8, prob=(0.9,))
    obs = data.observations
    held = obs[(obs["size"] == 8e8) & (obs["step"] == 8e3)]
    merged = held.merge(table.rename(columns={"mixture": "run"}), on=["run", "domain"])
    inside = (merged["lower_90"] <= merged["loss"]) & (merged["loss"] <= merged["upper_90"])
    assert inside.mean() >= 0.8
    assert (merged["median"] / merged["loss"] - 1).abs().mean() < 0.02
    with pytest.warns(SizeExtrapolationWarning, match="outside the fitted sizes"):
        predict(loaded, [8e3], runs=["mix000"], size=1e10)


def test_a_forecast_where_a_larger_model_loses_more_says_so(size_fit):
    """The simulated reducible loss grows with size (size_reducible 0.1 against a floor's
    -0.08): far enough out the law forecasts a larger model worse, which is the fitted slopes
    carried too far, not a forecast (a new user read `--size 7e12` as one)."""
    from bimix_bayes import predict

    _, idata = size_fit
    with pytest.warns(SizeExtrapolationWarning, match="higher loss than at the largest fitted"):
        predict(idata, [8e3], runs=["mix000"], size=1e15)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SizeExtrapolationWarning)
        predict(idata, [8e3], runs=["mix000"], size=3e8)  # inside the fitted sizes: no check


def test_the_size_error_has_its_own_correlation_across_domains(size_fit):
    """At a size not trained, the error all runs share is correlated across domains by
    ``size_domain_correlation``, not by the step's ``domain_correlation``: uncorrelated, it
    leaves each domain's spread as it is and narrows the mean over domains'."""
    import json

    from bimix_bayes.bayes.forecast import forecast_draws
    from bimix_bayes.data.labels import ALL_DOMAINS

    data, idata = size_fit

    def log_sd(rho_n):
        spec = json.loads(idata.attrs["spec"])
        spec["discrepancy"].update(
            size_sd_per_doubling=0.1, size_domain_correlation=rho_n, domain_correlation=1.0
        )
        fit = idata.copy()
        fit.attrs = {**idata.attrs, "spec": json.dumps(spec)}
        draws = forecast_draws(fit, [8e3], mixtures=data.mixtures.iloc[:1], size=8e8, seed=0)
        return np.log(draws).std(("chain", "draw")).squeeze()

    together, apart = log_sd(1.0), log_sd(0.0)
    domains = [d for d in together["domain"].values if d != ALL_DOMAINS]
    ratio = apart.sel(domain=domains) / together.sel(domain=domains)
    assert np.allclose(ratio, 1.0, atol=0.1), ratio.values
    n = len(domains)  # the shared error (0.1 per doubling) dominates: about 1 / sqrt(n)
    mean_ratio = float(apart.sel(domain=ALL_DOMAINS) / together.sel(domain=ALL_DOMAINS))
    assert mean_ratio < 0.5 * (1 + 1 / np.sqrt(n)), mean_ratio


def test_a_mixture_draws_fresh_luck_at_a_size_it_was_not_trained_at(size_fit):
    """Each (mixture, size) is its own training run: the fit stores how a mixture's offsets
    move between sizes (here none: the simulation shares them exactly), and a forecast adds a
    fresh run x size offset wherever the fit has not seen the pair (an observed mixture at a
    new size, any new mixture), never at a pair it has."""
    from bimix_bayes.bayes.forecast import forecast_draws
    from bimix_bayes.bayes.predictive_density import log_predictive_density
    from bimix_bayes.bayes.run_size_offsets import (
        RUN_SIZE_ATTR,
        RunSizeOffsets,
        stored_run_size_offsets,
    )

    data, idata = size_fit
    fitted = stored_run_size_offsets(idata.posterior)  # None when every domain's estimate is 0
    assert fitted is None or fitted.sd.max() < 0.004, fitted  # noise sd 0.0025 per cell
    n = idata.posterior.sizes["domain"]
    wide, shared = idata.copy(), idata.copy()
    wide.posterior.attrs.update(RunSizeOffsets(np.full(n, 0.05), np.eye(n)).to_attr())
    shared.posterior.attrs.pop(RUN_SIZE_ATTR, None)

    def draws(fit, size, **target):
        return forecast_draws(fit, [8e3], size=size, seed=0, **target)

    same = draws(wide, 4e8, runs=["mix000"]), draws(shared, 4e8, runs=["mix000"])
    assert np.array_equal(*same)  # a fitted (mixture, size) pair keeps its offsets
    # an observed mixture at a new size: 1 + sum w_k^2 = 4/3 of Omega (seen at three sizes with
    # equal checkpoints: its offset is the average of its luck there); a new mixture: Omega
    cases = (({"runs": ["mix000"]}, 4 / 3), ({"mixtures": data.mixtures.iloc[:1]}, 1.0))
    for target, factor in cases:
        base = np.log(draws(shared, 8e8, **target)).std(("chain", "draw")).squeeze()[:n]
        widened = np.log(draws(wide, 8e8, **target)).std(("chain", "draw")).squeeze()[:n]
        expected = np.sqrt(base**2 + factor * 0.05**2)
        assert np.allclose(widened, expected, rtol=0.1), (target, widened.values, base.values)
    # the backtests' log score carries it too: at the fitted size unchanged, at the new one a
    # point 10 % off the median is likelier with the wider predictive
    obs = data.observations
    for size, same in ((4e8, True), (8e8, False)):
        point = obs[(obs["run"] == "mix000") & (obs["size"] == size)].tail(1)
        point = point.rename(columns={"run": "mixture"})[["mixture", "step", "domain", "loss"]]
        point = point.assign(loss=point["loss"] * 1.1)
        lpd = [log_predictive_density(fit, point, size=size)[0] for fit in (wide, shared)]
        assert np.isclose(*lpd) if same else lpd[0] > lpd[1] + 1.0, (size, lpd)


def test_a_fit_without_sizes_refuses_a_size():
    import arviz as az
    import xarray as xr

    from bimix_bayes.bayes.sizes import size_offset

    plain = az.InferenceData(constant_data=xr.Dataset({"step": ("obs", [1.0, 2.0])}))
    assert size_offset(plain, None, None) is None
    with pytest.raises(ValueError, match="no model-size dimension"):
        size_offset(plain, None, 1e9)


def test_optimize_at_a_size_shows_how_the_optimum_moves(size_fit):
    from bimix_bayes.decision.recommend import optimize

    _, idata = size_fit
    rec = optimize(idata, 8e3, size=8e8, forecast=False)
    assert list(rec.by_size.index) == ["100M", "200M", "400M", "800M *"]
    shares = rec.by_size[list(rec.mixture.index)]
    assert np.allclose(shares.sum(axis=1), 1.0)
    assert np.allclose(shares.iloc[-1].to_numpy(), rec.mixture.to_numpy(), atol=1e-6)
    text = rec.format()
    assert "at model size 800M (total parameters)" in text
    assert "how the optimum moves with model size" in text


def test_the_api_takes_sizes_as_the_command_line_does(size_fit):
    """``size="800M"`` (or ``"8e8"``) is 8e8, in predict, optimize and rank, as ``--size``."""
    from bimix_bayes.decision.rank import rank
    from bimix_bayes.decision.recommend import optimize

    data, idata = size_fit
    run = data.runs[0]
    by_text = predict(idata, ["8k"], runs=[run], size="800M")
    pd.testing.assert_frame_equal(by_text, predict(idata, [8e3], runs=[run], size=8e8))
    rec = optimize(idata, 8e3, size="8e8", forecast=False)
    assert rec.format().count("at model size 800M") == 1
    assert len(rank(idata, data.mixtures.iloc[:2], step=8e3, size="800M")) == 2
    with pytest.raises(ValueError, match=r"size must be numbers \(or text such as '7B'"):
        predict(idata, [8e3], runs=[run], size="big")


def test_holdout_size_fits_the_small_sizes_and_predicts_the_large():
    data = _size_data()
    (split,) = make_splits(data, "holdout-size:400M")
    assert split.train.sizes == (1e8, 2e8)
    assert set(split.held["size"]) == {4e8}
    assert set(split.held["target"]) == {"observed run"}  # every mixture was fitted smaller
    from bimix_bayes.evaluation.protocols import ProtocolError

    with pytest.raises(ProtocolError, match="leave some sizes"):
        make_splits(data, "holdout-size:1M")
    with pytest.raises(ProtocolError, match="at least two sizes to fit: the size slopes"):
        make_splits(data, "holdout-size:200M")  # one fitted size: its slopes are the prior's


def test_backtest_by_size_refuses_lightgbm_which_has_no_size_dimension():
    from bimix_bayes.evaluation.runner import backtest

    for method in ("lightgbm", "all"):
        with pytest.raises(ValueError, match="LightGBM has no model-size dimension"):
            backtest(_size_data(seed=5), "holdout-size:400M", method=method)


def test_size_least_squares_forecasts_a_larger_size_from_the_smaller_ones():
    """The paper's least squares with the size power laws: fitted on 100M and 200M, it forecasts
    the 400M curves of the simulated law (known slopes) within their noise, and finds the
    mixture term's size slope's sign; it refuses data with fewer than two sizes (the slopes
    would be arbitrary), and a backtest that leaves it one fitted size says so before fitting."""
    from bimix_bayes.leastsq.sizes import SIZE_LS_PARAMS, SizeLeastSquares

    data = _size_data(seed=3, n_runs=10)
    (split,) = make_splits(data, "holdout-size:400M")
    fit = SizeLeastSquares(n_bootstrap=20, seed=0).fit(split.train)
    assert list(fit.params_.columns) == list(SIZE_LS_PARAMS)
    assert (fit.params_["size_mixture"] > 0).all()  # the truth: +0.2
    held = split.held
    for domain, part in held.groupby("domain"):
        runs = list(part["run"])
        pred = fit.log_loss(fit.params_, data.mixtures.loc[runs], part["step"].to_numpy(), 4e8)
        at = [list(fit.domains_).index(domain)]
        diag = np.exp(pred[np.arange(len(runs)), np.arange(len(runs)), at[0]])
        mre = np.mean(np.abs(diag / part["loss"].to_numpy() - 1))
        assert mre < 0.02, (domain, mre)  # run offsets (sd 1 %) + noise (0.5 %) are not modelled
    assert len(fit.replicates()) == 20
    again = SizeLeastSquares(n_bootstrap=20, seed=0).fit(split.train)
    pd.testing.assert_frame_equal(fit.bootstrap_, again.bootstrap_)  # seeded
    with pytest.raises(DataError, match="no model-size dimension"):
        SizeLeastSquares().fit(simulate_default(seed=0))
    with pytest.raises(DataError, match=r"one model size.*at least two fitted sizes"):
        SizeLeastSquares().fit(data.subset(max_size=1e8))
    from bimix_bayes.evaluation.runner import backtest

    with pytest.raises(ValueError, match="at least two sizes to fit"):
        backtest(data, "holdout-size:200M", method="both")


def test_backtest_by_size_scores_least_squares_at_each_size():
    """`backtest(..., method='ls')` on data with sizes: the size-aware least squares, each
    held-out size forecast at its size, runs named mixture@SIZE as the Bayesian rows are."""
    from bimix_bayes.evaluation.runner import backtest

    data = _size_data(seed=5, n_runs=8)
    result = backtest(data, "holdout-size:400M", method="ls", n_bootstrap=30)
    assert set(result.points["run"]) == {f"{r}@400M" for r in data.runs}
    pooled = result.metrics.loc[("ls", "(all points)")]
    assert pooled["mre"] < 0.03
    assert 0.3 <= pooled["cover_90"] <= 1.0


@pytest.mark.slow
def test_backtest_by_size_scores_each_size():
    from bimix_bayes.evaluation.runner import backtest

    data = _size_data(seed=5)
    spec = {"sampler": {"draws": 100, "tune": 200, "chains": 2}}
    result = backtest(data, "holdout-size:400M", method="bayes", spec=spec)
    runs = set(result.points["run"])
    assert runs == {f"{r}@400M" for r in data.runs}
    assert result.metrics.loc[("bayes", "(all points)"), "mre"] < 0.03


def test_next_runs_for_a_size_fit_decide_at_the_target_and_simulate_a_fitted_size(size_fit):
    """`bimix next` on a fit of several sizes: the decision at the target size (today's choice
    is `optimize`'s there), the proposed runs at the smallest fitted size unless told, a size
    never trained refused as a proxy (its runs cannot be simulated from the fit's noise)."""
    from bimix_bayes.decision.next_run import propose_next_runs
    from bimix_bayes.decision.recommend import optimize

    _, idata = size_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = propose_next_runs(idata, 8e3, size=8e8, n_candidates=60, n_fantasies=16)
        rec = optimize(idata, 8e3, size=8e8, forecast=False)
        at_large = propose_next_runs(  # a size as its label shows it (4 significant digits)
            idata, 8e3, size=8e8, proxy_size=4.0004e8, n_candidates=60, n_fantasies=16
        )
    np.testing.assert_allclose(plan.decision.to_numpy(), rec.mixture.to_numpy(), atol=1e-6)
    assert plan.proxy_size == SIZES[0] and at_large.proxy_size == 4e8
    assert "at model size 800M (total parameters): runs at model size 100M" in plan.format()
    assert plan.to_dict()["size"] == 8e8
    with pytest.raises(ValueError, match="say which size"):
        propose_next_runs(idata, 8e3, n_candidates=20, n_fantasies=4)
    with pytest.raises(ValueError, match="not a fitted size"):
        propose_next_runs(idata, 8e3, size=8e8, proxy_size=8e8, n_candidates=20)


def test_the_report_of_a_size_fit_forecasts_and_decides_at_the_target_size(size_fit):
    """The HTML report of a fit of several sizes: forecasts and the decision at the target
    size, the optimum at every fitted size, the next runs at the smallest size; a target size
    is required (naming the fitted sizes), held-out points are scored at their size, and least
    squares (size-blind) is left out."""
    from bimix_bayes.report.html import build_report

    data, idata = size_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = build_report(idata, size=8e8, n_bootstrap=0, next_runs=1, seed=0)
    assert "Summary: train this mixture at" in page and "at model size 800M" in page
    assert "How the optimum moves with model size" in page and "800M *" in page
    assert "at model size 100M" in page  # the proxy runs' size
    assert "least squares is not drawn for a fit of several sizes" in page
    assert "No least-squares column: the paper" in page and "has no model-size dimension" in page
    assert "least squares [94% bootstrap]" not in page  # no empty column
    assert "--backtest holdout-size:400M" in page
    with pytest.raises(ValueError, match="say which size"):
        build_report(idata, n_bootstrap=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = build_report(idata, size=8e8, holdout=data.subset(min_size=8e8), n_bootstrap=0)
    assert "all domains at 800M" in page and "least squares MRE" not in page


def test_the_report_says_how_far_outside_the_fitted_sizes_its_target_lies(size_fit):
    """A target far beyond the fitted sizes: the summary carries the warning, which the report
    emits once (every section forecasts the same target), and says that a size backtest that
    reached much less far says little about it."""
    from bimix_bayes.evaluation.runner import backtest
    from bimix_bayes.report.html import build_report

    data, idata = size_fit
    trust = backtest(data, "holdout-size:800M", method="ls", n_bootstrap=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        page = build_report(idata, size=1e10, n_bootstrap=0, seed=0, backtests=[trust])
    far = [w for w in caught if issubclass(w.category, SizeExtrapolationWarning)]
    messages = [str(w.message) for w in far]
    assert len(messages) == len(set(messages)) and any("25x outside" in m for m in messages)
    summary = page.split('<section id="summary">')[1].split("</section>")[0]
    assert "is 25x outside the fitted sizes" in summary and "treat it as a guess" in summary
    # the backtest forecast 800M from 400M (2x); the target is 25x the fit's largest size
    assert "forecast a size 2x its largest fitted one; the target size is 25x" in summary


def test_cli_report_checks_the_size_before_any_backtest(size_fit, tmp_path):
    """`bimix report` on a size fit without --size fails at once, naming the fitted sizes,
    instead of after the backtests' refits."""
    from bimix_bayes import save_fit
    from tests.test_cli import run

    _, idata = size_fit
    path = save_fit(idata, tmp_path / "fit.nc")
    result = run(
        "report", str(path), "--out", str(tmp_path / "r.html"),
        "--backtest", "holdout-size:400M", "--backtest-method", "bayes",
    )  # fmt: skip
    assert result.returncode != 0
    assert "say which size" in result.stderr and "backtest" not in result.stdout
    assert not (tmp_path / "r.html").exists()
    result = run("optimize", str(path), "--size", "10B", "--step", "8k")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("outside the fitted sizes") == 1  # said once, not per forecast
    result = run("summary", str(path))
    assert result.returncode == 0, result.stderr
    assert "least squares left out: the paper's least squares has no model-size" in result.stdout
    assert "least squares" not in result.stderr  # no 'least squares beside...' stage line


def test_checkpoint_shocks_with_model_sizes_are_refused_before_compiling():
    """The spec key to change is named at once (not after nutpie fails and PyMC is tried)."""
    from bimix_bayes.bayes.spec import SpecError

    model = BiMixModel(spec={"likelihood": {"checkpoint_sd_scale": 0.01}})
    with pytest.raises(SpecError, match="checkpoint_sd_scale"):
        model.fit(_size_data(), seed=0, progress_bar=False)


def test_a_size_fit_scores_a_left_out_run_across_its_sizes(size_fit):
    """`bimix compare` on a size fit: a run's checkpoints at every size are one unit, scored
    with its offsets correlated as the fit's C; with C = I, as the likelihood scores it."""
    import json

    from bimix_bayes.bayes.compare import compare_fits, new_run_log_likelihood
    from bimix_bayes.bayes.residual_correlation import RESIDUAL_CORRELATION_ATTR

    _, idata = size_fit
    assert RESIDUAL_CORRELATION_ATTR in idata.posterior.attrs
    scored = new_run_log_likelihood(idata)
    assert scored.sizes["run"] == idata.log_likelihood.sizes["run"]
    assert np.isfinite(scored).all()
    eye = idata.copy()
    eye.posterior.attrs[RESIDUAL_CORRELATION_ATTR] = json.dumps(
        np.eye(idata.posterior.sizes["domain"]).tolist()
    )
    working = idata.log_likelihood["loss_run"].transpose("chain", "draw", "run").to_numpy()
    np.testing.assert_allclose(
        new_run_log_likelihood(eye).transpose("chain", "draw", "run").to_numpy(), working, atol=1e-8
    )
    assert compare_fits({"sizes": idata}).correlated_new_runs == ("sizes",)


def test_a_size_fit_leaves_the_exponents_drift_out_unless_asked():
    """The default drift ("auto") is decided per dataset: off with model sizes as a dimension
    (the size-aware fits did not converge with it), on for one size; asked for, it stays."""
    from bimix_bayes.bayes.model import BiMixModel
    from bimix_bayes.data.simulate import simulate_default

    sized, single = _size_data(), simulate_default(seed=0)
    model = BiMixModel()
    assert model.spec_for(sized)["law"]["alpha_drift"] is False
    assert model.spec_for(single)["law"]["alpha_drift"] is True
    asked = BiMixModel({"law": {"alpha_drift": True}})
    assert asked.spec_for(sized)["law"]["alpha_drift"] is True
