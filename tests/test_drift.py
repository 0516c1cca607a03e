"""The mixture exponent's drift with the log step (``[law] alpha_drift``): the law, the spec,
the PyMC graph against numpy, the decision surface at a target step, and a fit that finds a
drift the data have."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.bayes.graph import build_pymc_model
from bimix_bayes.bayes.likelihood import CurveLayout
from bimix_bayes.bayes.model import pointwise_log_likelihood
from bimix_bayes.bayes.noise import noise_attrs
from bimix_bayes.bayes.spec import SpecError, load_spec, merge_spec, resolve_alpha_drift
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.decision.surface import LossSurface
from bimix_bayes.laws.drift import ALPHA_DRIFT, alpha_at
from bimix_bayes.laws.registry import BIMIX, BIMIX_CROSS

STEPS = np.geomspace(500, 20000, 10).round()


def _drift_data(drift=(0.02, -0.015, 0.0), seed: int = 3, n_runs: int = 8):
    params = default_parameters().iloc[: len(drift)].copy()
    params[ALPHA_DRIFT] = list(drift)
    mixtures = random_mixtures(n_runs, list(params.index), seed=seed)
    return simulate(params, mixtures, STEPS, seed=seed, noise_sd=0.004, run_sd=0.004), params


@settings(max_examples=50, deadline=None)
@given(
    r=st.floats(0.01, 1.0),
    x=st.floats(-4.0, 4.0),
    alpha=st.floats(0.0, 0.3),
    drift=st.floats(-0.05, 0.05),
)
def test_a_drifting_exponent_is_bimix_at_the_exponent_of_that_step(r, x, alpha, drift):
    base = {"log_floor": 0.3, "log_reducible": -0.8, "beta": 0.5}
    moved = BIMIX.log_loss(None, r, x, {**base, "alpha": alpha_at(alpha, drift, x)})
    got = BIMIX.log_loss(None, r, x, {**base, "alpha": alpha, ALPHA_DRIFT: drift})
    assert got == pytest.approx(moved, abs=1e-12)
    # no drift at s_ref: the exponent there is alpha itself
    at_ref = BIMIX.log_loss(None, r, 0.0, {**base, "alpha": alpha, ALPHA_DRIFT: drift})
    assert at_ref == pytest.approx(BIMIX.log_loss(None, r, 0.0, {**base, "alpha": alpha}))


def test_the_cross_law_drifts_its_own_share_exponent():
    shares = np.array([0.2, 0.5, 0.3])
    p = {"log_floor": 0.3, "log_reducible": -0.8, "beta": 0.5, "alpha": 0.05,
         "cross": np.array([0.0, 0.1, -0.1])}  # fmt: skip
    x = 1.5
    got = BIMIX_CROSS.log_loss(shares, 0.2, x, {**p, ALPHA_DRIFT: 0.02})
    want = BIMIX_CROSS.log_loss(shares, 0.2, x, {**p, "alpha": 0.05 + 0.02 * x})
    assert got == pytest.approx(want, abs=1e-12)


def test_the_spec_refuses_a_drift_where_the_law_has_no_own_share_exponent():
    # the default since 2026-12-05: decided per dataset, on for one model size
    for law in ("bimix", "bimix_cross"):
        spec = merge_spec({"law": {"name": law}})
        assert spec["law"]["alpha_drift"] == "auto"
        assert resolve_alpha_drift(spec, has_sizes=False)["law"]["alpha_drift"] is True
        assert resolve_alpha_drift(spec, has_sizes=True)["law"]["alpha_drift"] is False
    off = merge_spec({"law": {"name": "bimix", "alpha_drift": False}})
    assert resolve_alpha_drift(off, has_sizes=False)["law"]["alpha_drift"] is False
    on = merge_spec({"law": {"name": "bimix", "alpha_drift": True}})
    assert resolve_alpha_drift(on, has_sizes=True)["law"]["alpha_drift"] is True  # as asked
    for law in ("loglinear", "effective"):  # the default drift does not apply to them
        spec = load_spec(law)
        assert resolve_alpha_drift(spec, has_sizes=False)["law"]["alpha_drift"] is False
    for law in ("loglinear", "effective"):
        with pytest.raises(SpecError, match=r"law.alpha_drift: the law .* 'bimix_cross'"):
            merge_spec({"law": {"name": law, "alpha_drift": True}})


@pytest.mark.parametrize("law", ["bimix", "bimix_cross"])
def test_the_drift_graph_equals_the_numpy_law_and_likelihood(law):
    """The PyMC graph's log likelihood at a random point (drift included) equals the numpy law
    + Woodbury run likelihood."""
    from tests.test_laws import _graph_loglik, _posterior_at

    data, _ = _drift_data()
    layout = CurveLayout.from_data(data, 3e3)
    spec = merge_spec({"law": {"name": law, "alpha_drift": True}})
    model = build_pymc_model(layout, spec)
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}
    post = _posterior_at(model, point)
    post.attrs |= {"law": law, **noise_attrs(spec, layout.noise_x0)}
    assert np.abs(post[ALPHA_DRIFT]).min() > 0
    expected = float(pointwise_log_likelihood(post, layout, spec)["loss_run"].sum())
    assert np.isclose(_graph_loglik(model, point), expected, rtol=1e-9)
    # and the drift moves it: the same point without the drift scores differently
    no_drift = post.drop_vars(ALPHA_DRIFT)
    assert not np.isclose(
        float(pointwise_log_likelihood(no_drift, layout, spec)["loss_run"].sum()), expected
    )


@pytest.mark.filterwarnings("ignore::bimix_bayes.decision.surface.DriftedExponentWarning")
def test_the_decision_surface_uses_the_exponent_at_the_target_step():
    from tests.test_laws import _posterior_at

    data, _ = _drift_data()
    s_ref = 3e3
    layout = CurveLayout.from_data(data, s_ref)
    model = build_pymc_model(layout, merge_spec({"law": {"alpha_drift": True}}))
    rng = np.random.default_rng(2)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}
    idata = az.InferenceData(posterior=_posterior_at(model, point))
    idata.attrs.update({"s_ref": s_ref, "law": "bimix"})
    idata.posterior.attrs["law"] = "bimix"
    mixture = np.array([0.5, 0.3, 0.2])
    post = idata.posterior
    for step in (500.0, 3e3, 4e4):
        surface = LossSurface.from_idata(idata, step)
        x = np.log(step / s_ref)
        params = {k: post[k].to_numpy()[0, 0] for k in ("log_floor", "log_reducible")}
        params.update(
            beta=np.exp(post["log_beta"].to_numpy()[0, 0]),
            alpha=np.exp(post["log_alpha"].to_numpy()[0, 0]),
            alpha_drift=post[ALPHA_DRIFT].to_numpy()[0, 0],
        )
        want = BIMIX.log_loss(None, mixture, x, params)
        assert surface.log_losses(mixture)[0] == pytest.approx(want, rel=1e-10)


@pytest.mark.slow
def test_a_drift_fit_finds_the_drift_and_forecasts_the_horizon_better():
    """Simulated runs whose exponent drifts (0.03 per unit of log step on the first domain):
    fitted on the first half of the steps, the drift fit finds the sign and its forecasts of
    the later checkpoints are closer than the plain fit's."""
    from bimix_bayes.evaluation.runner import backtest

    data, _ = _drift_data(drift=(0.03, -0.02, 0.0), n_runs=10)
    sampler = {"chains": 2, "draws": 400, "tune": 600}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = backtest(
            data,
            "horizon:0.5",
            method="bayes",
            spec={"sampler": sampler, "law": {"alpha_drift": False}},  # BiMix's separable law
        )
        drift = backtest(
            data,
            "horizon:0.5",
            method="bayes",
            spec={"sampler": sampler, "law": {"alpha_drift": True}},
        )
    mre_plain = float(plain.metrics.loc[("bayes", "(all points)"), "mre"])
    mre_drift = float(drift.metrics.loc[("bayes", "(all points)"), "mre"])
    assert mre_drift < 0.8 * mre_plain


def test_a_drifted_exponent_below_zero_is_said_and_the_optimum_stays_a_mixture():
    """Far from s_ref a negative drift can take the exponent below 0 in some draws: the surface
    says so, and the closed-form optimum gives that domain its least share instead of NaN."""
    from bimix_bayes.decision.surface import DriftedExponentWarning, closed_form_optimum
    from tests.test_laws import _posterior_at

    data, _ = _drift_data()
    layout = CurveLayout.from_data(data, 3e3)
    # log_alpha a variable of its own (not drawn given the rest), so that the point sets it
    spec = merge_spec({"law": {"alpha_drift": True}, "sampler": {"exponent": "free"}})
    model = build_pymc_model(layout, spec)
    point = dict(model.initial_point())
    point["log_alpha"] = np.log(np.array([0.05, 0.05, 0.05]))
    point[ALPHA_DRIFT] = np.array([0.0, -0.05, 0.0])  # exponent 0.05 - 0.05 x: < 0 past e s_ref
    idata = az.InferenceData(posterior=_posterior_at(model, point))
    idata.attrs.update({"s_ref": 3e3, "law": "bimix"})
    with pytest.warns(DriftedExponentWarning, match=r"<= 0 .* for .*\(100 %\)"):
        surface = LossSurface.from_idata(idata, 3e3 * np.exp(2.0))
    r = closed_form_optimum(np.exp(surface.log_k), surface.alpha)
    assert np.isfinite(r).all() and r.sum() == pytest.approx(1.0)
    assert r[0, 1] == pytest.approx(0.0, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # at s_ref the exponent is alpha: no warning
        LossSurface.from_idata(idata, 3e3)


def test_simulated_drift_is_the_law_term_at_the_fits_step_covariate():
    params = default_parameters().iloc[:2].copy()
    mixtures = random_mixtures(4, list(params.index), seed=0)
    plain = simulate(params, mixtures, STEPS, noise_sd=0.0, run_sd=0.0)
    params[ALPHA_DRIFT] = [0.03, -0.02]
    drifted = simulate(params, mixtures, STEPS, noise_sd=0.0, run_sd=0.0)
    a, b = plain.observations, drifted.observations
    x = np.log(a["step"].to_numpy() / np.exp(np.log(STEPS).mean()))
    share = np.array([mixtures.loc[r, d] for r, d in zip(a["run"], a["domain"], strict=True)])
    drift = a["domain"].map(dict(zip(params.index, params[ALPHA_DRIFT], strict=True)))
    expected = np.log(a["loss"].to_numpy()) - drift.to_numpy() * x * np.log(share)
    assert np.log(b["loss"].to_numpy()) == pytest.approx(expected, abs=1e-12)


def test_a_fit_saved_before_the_drift_was_the_default_keeps_its_exponent_fixed():
    """A file whose spec has no alpha_drift was fitted without it: it loads so (forecasts do
    not ask for an alpha_drift it never had), while new fits drift."""
    import json

    from bimix_bayes.bayes.persistence import spec_from_idata

    old = load_spec()
    for key in ("alpha_drift", "alpha_drift_sd"):
        del old["law"][key]
    idata = az.InferenceData()
    idata.attrs["spec"] = json.dumps(old)
    assert spec_from_idata(idata)["law"]["alpha_drift"] is False
    assert load_spec()["law"]["alpha_drift"] == "auto"  # new fits decide it for their data
