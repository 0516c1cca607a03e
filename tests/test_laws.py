"""The mixing laws as units (``bimix_bayes.laws``): one definition for numpy and pytensor, the
identifying projection of the cross effects, BiMix nested in BiMix-cross, the PyMC graph of each
law against the numpy law and likelihood, and decisions under cross-domain laws."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from pytensor.compile.mode import get_mode
from scipy.optimize import approx_fprime

from bimix_bayes.bayes.correlated import RunPatterns
from bimix_bayes.bayes.graph import build_pymc_model, groups_runs
from bimix_bayes.bayes.likelihood import CurveLayout
from bimix_bayes.bayes.model import BiMixModel, pointwise_log_likelihood
from bimix_bayes.bayes.noise import noise_attrs
from bimix_bayes.bayes.persistence import spec_from_idata
from bimix_bayes.bayes.spec import merge_spec
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.data.table import DataError, DataWarning, MixtureData
from bimix_bayes.decision.objectives import Objective
from bimix_bayes.decision.solver import _CrossProblem, solve
from bimix_bayes.decision.surface import LossSurface
from bimix_bayes.laws.cross import cross_mask, loglinear_mixture_term, project_cross
from bimix_bayes.laws.registry import BIMIX, BIMIX_CROSS, EFFECTIVE, LAWS, LOGLINEAR, get_law

N_TRAIN = 4
#: pytensor 2.38's slogdet rewrite fails on the batched determinant of the run likelihood under
#: the default mode (nutpie compiles with numba and is not affected).
MODE = get_mode("FAST_RUN").excluding("slogdet_specialization")


def _law_params(law, rng, n):
    """Random per-row parameters of ``law`` for ``n`` rows over ``N_TRAIN`` training domains."""
    p = {
        "log_floor": rng.normal(0.5, 0.3, n),
        "log_reducible": rng.normal(-1.0, 0.3, n),
        "beta": rng.uniform(0.2, 1.0, n),
        "alpha": rng.uniform(0.01, 0.2, n),
        "own": rng.uniform(0.1, 2.0, n),
        "cross": project_cross(rng.normal(0, 0.5, (n, N_TRAIN)), np.zeros(n, int)),
    }
    return {k: p[k] for k in law.params}


@pytest.mark.parametrize("name", sorted(LAWS))
def test_numpy_and_pytensor_evaluate_the_same_law(name):
    law = get_law(name)
    rng = np.random.default_rng(0)
    shares = rng.dirichlet(np.ones(N_TRAIN), 6)
    x = rng.normal(0, 1, 6)
    params = _law_params(law, rng, 6)
    expected = law.log_loss(shares, shares[:, 0], x, params)
    got = law.log_loss(
        pt.as_tensor(shares),
        pt.as_tensor(shares[:, 0]),
        pt.as_tensor(x),
        {k: pt.as_tensor(v) for k, v in params.items()},
        math=pt,
    ).eval()
    assert np.all(np.isfinite(expected))
    assert np.allclose(got, expected, rtol=1e-12)


def test_only_the_loglinear_and_effective_laws_are_finite_at_zero_shares():
    rng = np.random.default_rng(1)
    shares = np.array([[0.0, 0.5, 0.5, 0.0]])
    for law in (BIMIX, BIMIX_CROSS, LOGLINEAR, EFFECTIVE):
        with np.errstate(divide="ignore"):
            value = law.log_loss(shares, shares[:, 0], 0.0, _law_params(law, rng, 1))
        assert np.isfinite(value).all() == law.finite_at_zero


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    own=st.integers(-1, N_TRAIN - 1),
    shift=st.floats(-3, 3),
)
def test_the_projection_removes_exactly_what_the_data_cannot_see(seed, own, shift):
    """Projected rows are zero on the own column and sum to zero; a common shift of a row is
    removed; and the log-linear law with raw cross effects equals the law with projected ones
    after its intercept and own effect absorb the difference (shares sum to 1)."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 1, (1, N_TRAIN))
    own_index = np.array([own])
    cross = project_cross(raw, own_index)
    mask = cross_mask(own_index, N_TRAIN)
    assert np.allclose(cross * (1 - mask), 0.0)
    assert np.isclose(cross.sum(), 0.0)
    assert np.allclose(project_cross(raw + shift, own_index), cross)
    assert np.allclose(project_cross(cross, own_index), cross)
    shares = rng.dirichlet(np.ones(N_TRAIN), 5)
    own_share = shares[:, own] if own >= 0 else np.zeros(5)
    a = 0.7
    with_raw = loglinear_mixture_term(shares, own_share, a, raw[0] * mask[0])
    mean_others = (raw * mask).sum() / mask.sum()
    absorbed = mean_others + loglinear_mixture_term(
        shares, own_share, a + (mean_others if own >= 0 else 0.0), cross[0]
    )
    assert np.allclose(with_raw, absorbed)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_bimix_cross_without_cross_effects_is_bimix(seed):
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.ones(N_TRAIN), 8)
    x = rng.normal(0, 1, 8)
    params = _law_params(BIMIX_CROSS, rng, 8)
    params["cross"] = np.zeros((8, N_TRAIN))
    assert np.allclose(
        BIMIX_CROSS.log_loss(shares, shares[:, 0], x, params),
        BIMIX.log_loss(shares, shares[:, 0], x, {k: params[k] for k in BIMIX.params}),
    )


def _data(seed: int = 3, zero: bool = False) -> MixtureData:
    rng = np.random.default_rng(seed)
    truth = default_parameters().iloc[:3]
    domains = list(truth.index)
    data = simulate(truth, random_mixtures(6, domains, seed=seed), [1e3, 3e3, 1e4, 3e4], seed=seed)
    if not zero:
        return data
    mixtures = data.mixtures.copy()
    mixtures.iloc[0] = [0.0, 0.4, 0.6]  # the first run leaves web out
    obs = data.observations.copy()
    obs["loss"] *= np.exp(rng.normal(0, 0.01, len(obs)))
    return MixtureData.from_frames(mixtures, obs, zero_policy="keep")


def _posterior_at(model, point) -> xr.Dataset:
    """Every free and deterministic variable of ``model`` at ``point``, as a 1 x 1 posterior."""
    names = [v.name for v in model.free_RVs + model.deterministics]
    outs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(
        outs, inputs=model.value_vars, point_fn=False, on_unused_input="ignore", mode=MODE
    )
    values = fn(*[point[v.name] for v in model.value_vars])
    data = {}
    for name, value in zip(names, values, strict=True):
        value = np.asarray(value)
        dims = model.named_vars_to_dims.get(name) or tuple(
            f"{name}_dim_{i}"
            for i in range(value.ndim)  # declared by shape (cross_v)
        )
        data[name] = (("chain", "draw", *dims), value[None, None])
    post = xr.Dataset(data)
    for name in ("alpha", "beta"):
        if f"log_{name}" in post:
            post[name] = np.exp(post[f"log_{name}"])
    return post


def _graph_loglik(model, point) -> float:
    """The model's ``loglik`` potential at ``point``, compiled without the failing rewrite."""
    fn = model.compile_fn(
        model.replace_rvs_by_values([model["loglik"]])[0],
        inputs=model.value_vars,
        point_fn=False,
        on_unused_input="ignore",
        mode=MODE,
    )
    return float(fn(*[point[v.name] for v in model.value_vars]))


def _graph_and_numpy(
    layout: CurveLayout,
    name: str,
    seed: int,
    grouped: bool | None = None,
    likelihood: dict | None = None,
) -> tuple[float, xr.Dataset, float]:
    """At a random point of the law's model: the graph's log likelihood, the point as a 1 x 1
    posterior, and the log likelihood computed in numpy (law + Woodbury run likelihood, one
    factorisation per run); ``grouped``: the graph factorises once per run design;
    ``likelihood``: settings merged over the spec's."""
    spec = merge_spec({"law": {"name": name}, "likelihood": likelihood or {}})
    model = build_pymc_model(layout, spec, grouped=grouped)
    rng = np.random.default_rng(seed)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}
    post = _posterior_at(model, point)
    post.attrs |= {"law": name, **noise_attrs(spec, layout.noise_x0)}
    expected = float(pointwise_log_likelihood(post, layout, spec)["loss_run"].sum())
    return _graph_loglik(model, point), post, expected


@pytest.mark.parametrize(("correlated", "grouped"), [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("name", sorted(LAWS))
def test_the_model_graph_equals_the_numpy_law_and_likelihood(name, correlated, grouped):
    """The PyMC graph's log likelihood at a random point equals the one computed in numpy from
    the law's numpy form and the Woodbury run likelihood (the dense Gaussian is checked
    against it in test_correlated), with the runs' capacitance factorised per run and per
    run design (what studies of many runs compile); and, with independent run effects (the
    default), the per-curve likelihood."""
    law = get_law(name)
    layout = CurveLayout.from_data(_data(zero=law.finite_at_zero), 3e3)
    loglik, _, expected = _graph_and_numpy(
        layout, name, seed=4, grouped=grouped, likelihood={"run_correlation": correlated}
    )
    assert np.isfinite(expected)
    assert np.isclose(loglik, expected, rtol=1e-9)


@pytest.mark.parametrize(("slopes", "grouped"), [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("name", ["bimix", "bimix_cross"])
def test_a_common_run_effect_is_the_covariance_it_claims_and_the_graph_equals_numpy(
    name, slopes, grouped
):
    """run_correlation = "common": a run's effects are one shared effect plus one per domain,
    so their covariance is sd_common^2 J + diag(sd_own^2) (a dense reference built from the
    sampled sds), the recorded tau and run_corr are that covariance's sds and correlations,
    and the graph's log likelihood equals the numpy Woodbury one computed from them (itself
    checked against the dense Gaussian in test_correlated)."""
    layout = CurveLayout.from_data(_data(), 3e3)
    lik = {"run_correlation": "common", "run_slope": slopes}
    loglik, post, expected = _graph_and_numpy(layout, name, seed=6, grouped=grouped, likelihood=lik)
    assert np.isclose(loglik, expected, rtol=1e-9)
    pairs = [("tau", "run_corr")] + ([("kappa", "slope_corr")] if slopes else [])
    for sd_name, corr_name in pairs:
        common = float(post[f"{sd_name}_common"].squeeze())
        own = post[f"{sd_name}_own"].to_numpy().ravel()
        dense = common**2 * np.ones((own.size, own.size)) + np.diag(own**2)
        sd = post[sd_name].to_numpy().ravel()
        corr = post[corr_name].to_numpy().reshape(own.size, own.size)
        assert np.allclose(sd[:, None] * corr * sd[None, :], dense, rtol=1e-12)
        assert common > 0 and np.all(corr[~np.eye(own.size, dtype=bool)] > 0)


def test_a_fit_with_a_common_run_effect_saves_loads_and_forecasts_new_mixtures(tmp_path):
    """run_correlation = "common" end to end: the fit samples the shared and per-domain sds,
    saves and loads, and a new mixture's forecast of the mean over domains is wider than its
    per-domain draws averaged as if independent (the shared part does not average out)."""
    from bimix_bayes import load_fit, predict
    from bimix_bayes.bayes.forecast import forecast_draws

    data = _data(seed=5)
    spec = {"likelihood": {"run_correlation": "common"}, "sampler": {"draws": 200, "tune": 200}}
    model = BiMixModel(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a short fit may fail its diagnostics
        model.fit(data, seed=1)
    idata = load_fit(model.save(tmp_path / "common.nc"))
    assert spec_from_idata(idata)["likelihood"]["run_correlation"] == "common"
    assert {"tau_common", "tau_own", "tau", "run_corr"} <= set(idata.posterior)
    new = pd.DataFrame([[0.4, 0.3, 0.3]], index=["new"], columns=list(data.training_domains))
    table = predict(idata, steps=[3e4], mixtures=new)
    assert np.isfinite(table["median"]).all() and len(table) == 4  # 3 domains and their mean
    draws = np.log(forecast_draws(idata, [3e4], mixtures=new, seed=0))
    per_domain = draws.isel(domain=slice(0, -1)).squeeze().stack(s=("chain", "draw"))
    mean_var = float(per_domain.mean("domain").var())
    independent = float(per_domain.var("s").sum()) / per_domain.sizes["domain"] ** 2
    assert mean_var > independent


@pytest.mark.parametrize("grouped", [False, True])
def test_the_slope_model_graph_equals_numpy_with_runs_of_several_designs(grouped):
    """With run slopes (a 2D x 2D capacitance, which slope models group by design whenever
    designs are at most half the runs) and runs that differ in their checkpoints (three
    designs), the graph's log likelihood equals the numpy one in both forms."""
    data = _data()
    obs = data.observations
    runs = list(data.mixtures.index)
    drop = ((obs["run"] == runs[0]) & (obs["step"] == 3e4)) | (
        (obs["run"] == runs[1]) & (obs["step"] == 1e3) & (obs["domain"] == obs["domain"].iloc[0])
    )
    layout = CurveLayout.from_data(MixtureData.from_frames(data.mixtures, obs[~drop]), 3e3)
    assert len(RunPatterns.of(*layout.run_design()).n) == 3
    assert groups_runs(layout, slopes=True) and not groups_runs(layout)
    loglik, _, expected = _graph_and_numpy(
        layout,
        "bimix",
        seed=5,
        grouped=grouped,
        likelihood={"run_slope": True, "run_correlation": True},
    )
    assert np.isfinite(expected)
    assert np.isclose(loglik, expected, rtol=1e-9)


def test_bimix_refuses_zero_shares_and_names_the_law_that_keeps_them():
    data = _data(zero=True)
    with pytest.raises(DataError, match="--law loglinear"):
        BiMixModel({"sampler": {"draws": 10, "tune": 10}}).fit(data)


def _cross_surface(seed: int = 0, n_draws: int = 40, alpha: float = 0.1) -> LossSurface:
    rng = np.random.default_rng(seed)
    n = 4
    cross = project_cross(rng.normal(0, 0.3, (n_draws * n, n)), np.tile(np.arange(n), n_draws))
    return LossSurface(
        tuple("abcd"),
        rng.normal(0.5, 0.1, (n_draws, n)),
        np.full((n_draws, n), alpha),
        1e4,
        cross=cross.reshape(n_draws, n, n),
    )


@pytest.mark.parametrize("objective", ["mean", "cvar:0.8"])
def test_cross_gradient_is_exact(objective):
    surface = _cross_surface()
    w = np.array([0.4, 0.3, 0.3, 0.0])  # d is not counted but its share still matters
    problem = _CrossProblem(surface, w, Objective.parse(objective), np.ones(4, bool), np.zeros(4))
    x = np.array([0.1, 0.3, 0.2, 0.4])
    _, grad, _, pi = problem.derivatives(x)

    def fixed_weights(z):  # the objective with the draw weights held, as the gradient is
        return float(pi @ (np.exp(surface.log_losses(z, w > 0)) @ w[w > 0]))

    assert np.allclose(grad, approx_fprime(x, fixed_weights, 1e-7), atol=1e-6)


def test_cross_solver_finds_the_brute_force_optimum():
    surface = _cross_surface(seed=2)
    w = np.full(4, 0.25)
    result = solve(surface, w)
    assert result.converged
    rng = np.random.default_rng(0)
    candidates = rng.dirichlet(np.ones(4), 20_000)
    values = (np.exp(surface.log_losses(candidates)) @ w).mean(axis=0)
    assert result.value <= values.min() + 1e-9
    assert np.abs(result.shares - candidates[values.argmin()]).max() < 0.05


def test_loglinear_surface_allows_zero_shares():
    surface = _cross_surface(seed=5, alpha=0.0)
    surface = LossSurface(
        surface.domains,
        surface.log_k,
        surface.alpha,
        surface.step,
        own=np.full_like(surface.log_k, 1.0),
        cross=surface.cross,
    )
    assert surface.finite_at_zero
    values = surface.losses(np.array([0.0, 0.5, 0.5, 0.0]))
    assert np.all(np.isfinite(values))
    assert solve(surface, np.full(4, 0.25)).converged


def test_cross_laws_fit_forecast_and_decide_end_to_end(tmp_path):
    """A small BiMix-cross fit: saved and loaded, forecast for a new mixture, optimised."""
    from bimix_bayes import load_fit, predict
    from bimix_bayes.decision.recommend import optimize

    data = _data(seed=7)
    model = BiMixModel(
        {"law": {"name": "bimix_cross"}, "sampler": {"draws": 150, "tune": 150, "chains": 2}}
    )
    model.fit(data, seed=1)
    path = model.save(tmp_path / "cross.nc")
    idata = load_fit(path)
    assert idata.posterior.attrs["law"] == "bimix_cross"
    assert idata.posterior["cross"].dims == ("chain", "draw", "domain", "training_domain")
    new = pd.DataFrame([[0.5, 0.3, 0.2]], index=["mine"], columns=list(data.domains))
    table = predict(idata, steps=[5e4], mixtures=new)
    assert np.isfinite(table["median"]).all()
    with pytest.warns(UserWarning):  # a short fit: it fails its diagnostics, and says so
        rec = optimize(idata, 5e4)
    assert np.isclose(rec.mixture.sum(), 1.0)
    assert rec.draw_optima["sd"].notna().all()


def test_least_squares_refuses_zero_shares_and_says_what_to_do():
    from bimix_bayes.leastsq.fit import BiMixLeastSquares

    with pytest.raises(DataError, match="--law loglinear"):
        BiMixLeastSquares(n_bootstrap=0).fit(_data(zero=True))


def test_cross_solver_with_every_share_fixed_returns_them():
    from bimix_bayes.decision.constraints import MixtureConstraints

    surface = _cross_surface(seed=3)
    fixed = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
    bounds = MixtureConstraints(fixed=fixed).bounds(surface.domains)
    result = solve(surface, np.full(4, 0.25), "mean", bounds)
    assert np.allclose(result.shares, [0.1, 0.2, 0.3, 0.4])
    assert np.isfinite(result.value)


def test_identical_fits_are_not_distinguished():
    from bimix_bayes.bayes.compare import ComparisonResult

    table = pd.DataFrame(
        {"elpd_loo": [5.0, 5.0], "elpd_diff": [0.0, 0.0], "dse": [0.0, 0.0], "weight": [0.5, 0.5]},
        index=["a", "b"],
    )
    assert "do not distinguish" in ComparisonResult(table, pd.DataFrame()).verdict()


def test_a_verdict_says_when_unreliable_runs_make_it_approximate():
    """ "Clearly prefer" is qualified when some left-out runs have Pareto k > 0.7 (their
    PSIS scores are unreliable), and not when none has."""
    from bimix_bayes.bayes.compare import ComparisonResult

    table = pd.DataFrame(
        {"elpd_loo": [10.0, 4.0], "elpd_diff": [0.0, 6.0], "dse": [0.0, 2.0], "weight": [0.9, 0.1]},
        index=["a", "b"],
    )
    k = pd.DataFrame(
        [[0.8, 0.2, 0.9, 0.1], [0.1, 0.75, 0.3, 0.2]], index=["a", "b"], columns=list("wxyz")
    )
    verdict = ComparisonResult(table, k).verdict()
    assert verdict.startswith("The data clearly prefer a")
    assert "but 2 and 1 of their 4 runs have Pareto k > 0.7" in verdict
    assert "approximate" not in ComparisonResult(table, k.clip(upper=0.5)).verdict()


def test_no_verdict_when_most_runs_are_unreliable_or_a_fit_failed():
    """With most left-out runs unreliable (Pareto k > 0.7), or a fit that failed its
    diagnostics, the comparison gives the difference as a hint and says what can decide."""
    from bimix_bayes.bayes.compare import ComparisonResult

    table = pd.DataFrame(
        {"elpd_loo": [10.0, 4.0], "elpd_diff": [0.0, 6.0], "dse": [0.0, 2.0], "weight": [0.5, 0.5]},
        index=["a", "b"],
    )
    k = pd.DataFrame([[0.8, 0.2, 0.9], [0.1, 0.75, 0.3]], index=["a", "b"], columns=list("xyz"))
    verdict = ComparisonResult(table, k).verdict()
    assert verdict.startswith("PSIS-LOO cannot rank a and b: 2 and 1 of their 3 runs")
    assert "a scores 6.0 +- 2.0 nats higher" in verdict and "bimix backtest" in verdict
    failed = ComparisonResult(table, k.clip(upper=0.5), failed=("b",)).verdict()
    assert failed.startswith("No verdict: b failed its convergence diagnostics")
    assert "prefer" not in verdict + failed
    close = table.assign(dse=[0.0, 10.0])  # within one standard error: still no verdict
    assert ComparisonResult(close, k).verdict().startswith("PSIS-LOO cannot rank a and b")
    failed = ComparisonResult(close, k.clip(upper=0.5), failed=("a",)).verdict()
    assert failed.startswith("No verdict: a failed")


def _evaluation_only_data(seed: int = 3) -> MixtureData:
    """Three training domains; the third is evaluated on another set (``held_out``), which is
    therefore an evaluation-only target."""
    data = _data(seed=seed)
    third = data.training_domains[2]
    obs = data.observations.assign(domain=data.observations["domain"].replace({third: "held_out"}))
    with pytest.warns(DataWarning, match="not training domains"):
        return MixtureData.from_frames(data.mixtures, obs)


@pytest.mark.parametrize("name", ["loglinear", "effective"])
def test_the_graph_equals_the_numpy_law_with_an_evaluation_only_domain(name):
    """The graph of a law that fits evaluation-only domains, with one (own share 0, no own
    term, every column free), equals the numpy law and likelihood."""
    layout = CurveLayout.from_data(_evaluation_only_data(), 3e3)
    assert layout.own_index.tolist() == [0, 1, -1]
    assert layout.cross_mask[-1].tolist() == [1.0, 1.0, 1.0]
    loglik, post, expected = _graph_and_numpy(layout, name, seed=5)
    cross = post["cross"].to_numpy()[0, 0]
    assert cross[-1].std() > 0 and np.allclose(np.diag(cross[:2, :2]), 0.0)  # all free
    # centred under the linear-share law, not under the effective-data law
    assert np.allclose(cross.sum(axis=-1), 0.0) == get_law(name).centred_cross
    assert np.isclose(loglik, expected, rtol=1e-9)


def test_run_correlation_auto_correlates_run_effects_only_for_evaluation_only_targets():
    """The default ("auto") correlates a run's effects across domains when some evaluation
    domain is not a training domain, and not otherwise; true and false are kept as given, and
    one model decides afresh for each dataset it fits."""
    eval_only, trained = _evaluation_only_data(), _data(seed=3)
    model = BiMixModel({"law": {"name": "loglinear"}})
    assert model.spec["likelihood"]["run_correlation"] == "auto"
    assert model.spec_for(eval_only)["likelihood"]["run_correlation"] is True
    assert model.spec_for(trained)["likelihood"]["run_correlation"] is False
    assert "run_corr" in model.build_model(eval_only).named_vars
    assert "run_corr" not in model.build_model(trained).named_vars
    for value in (True, False):
        fixed = BiMixModel({"law": {"name": "loglinear"}, "likelihood": {"run_correlation": value}})
        assert fixed.spec_for(eval_only)["likelihood"]["run_correlation"] is value
        assert fixed.spec_for(trained)["likelihood"]["run_correlation"] is value
    # the graph decides "auto" from the layout when built directly
    layout = CurveLayout.from_data(eval_only, 3e3)
    assert "run_corr" in build_pymc_model(layout, merge_spec({"law": {"name": "loglinear"}}))
    # where nothing tells the data apart, an undecided "auto" is refused, not guessed
    from bimix_bayes.bayes.graph import compiled_nutpie, data_names

    with pytest.raises(ValueError, match="resolve_run_correlation"):
        data_names(merge_spec(), 3)
    with pytest.raises(ValueError, match="decided"):
        compiled_nutpie(json.dumps(merge_spec()), 3)


@pytest.mark.parametrize("name", ["bimix", "bimix_cross"])
def test_laws_with_an_own_share_refuse_evaluation_only_domains(name):
    data = _evaluation_only_data()
    with pytest.raises(DataError, match=r"\['held_out'\] are not training domains.*loglinear"):
        BiMixModel({"law": {"name": name}, "sampler": {"draws": 10, "tune": 10}}).fit(data)


@pytest.mark.parametrize("name", ["loglinear", "effective"])
def test_evaluation_only_targets_fit_forecast_and_decide(tmp_path, name):
    """A law that fits evaluation-only targets, one such target: forecast from the training
    shares, optimise and rank the mixture for that target alone (rows and columns of the
    decision differ), and its predictive density."""
    from bimix_bayes import load_fit, predict
    from bimix_bayes.decision.rank import rank
    from bimix_bayes.decision.recommend import optimize

    data = _evaluation_only_data(seed=8)
    model = BiMixModel({"law": {"name": name}, "sampler": {"draws": 150, "tune": 150, "chains": 2}})
    model.fit(data, seed=2)
    idata = load_fit(model.save(tmp_path / "eval_only.nc"))
    # run_correlation "auto" (the default) chose correlated run effects, and the fit says so
    assert spec_from_idata(idata)["likelihood"]["run_correlation"] is True
    assert "run_corr" in idata.posterior
    # the model decides "auto" afresh for other data, and an edit of its spec after the fit wins
    assert model.spec_for(_data(seed=3))["likelihood"]["run_correlation"] is False
    model.spec["likelihood"]["run_correlation"] = False
    assert model.spec_for(data)["likelihood"]["run_correlation"] is False
    train = list(data.training_domains)
    new = pd.DataFrame([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], index=["a", "b"], columns=train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a short fit fails its diagnostics
        table = predict(idata, steps=[5e4], mixtures=new, weights={"held_out": 1.0})
        rec = optimize(idata, 5e4, weights={"web": 0.0, "code": 0.0})
        ranked = rank(idata, new, step=5e4, domains=["held_out"])
    held = table[table["domain"] == "held_out"]
    assert len(held) == 2 and np.isfinite(held["median"]).all()
    # the two mixtures differ in the forecast of the evaluation-only target
    assert held["median"].iloc[0] != held["median"].iloc[1]
    assert list(rec.mixture.index) == train and np.isclose(rec.mixture.sum(), 1.0)
    assert list(rec.weights.index) == ["held_out"]
    assert list(rec.evaluation_only_forecasts().index) == ["held_out"]
    assert "evaluation only" in rec.format()
    from bimix_bayes.report.html import write_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        html = write_report(idata, tmp_path / "r.html", n_bootstrap=0).read_text()
    assert "held_out" in html  # its curves, parameters and cross effects, no least squares
    assert rec.draw_optima.shape[0] == len(train)
    assert set(ranked["mixture"]) == {"a", "b"}
    from bimix_bayes.bayes.predictive_density import log_predictive_density

    points = pd.DataFrame(
        {"mixture": ["a", "b"], "step": [5e4] * 2, "domain": ["held_out"] * 2, "loss": [3.0] * 2}
    )
    assert np.isfinite(log_predictive_density(idata, points, mixtures=new)).all()
