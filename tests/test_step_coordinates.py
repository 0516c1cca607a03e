"""The step law's sampling coordinates: ``level_slope`` samples the same posterior as
``floor_reducible`` (a volume-preserving change of variables), and its three coordinates are
the step factor's value, slope and reducible share at ``s_ref``; with ``centre_share`` the value
is taken at each domain's typical share, again without changing the posterior."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pytensor.compile.mode import get_mode

from bimix_bayes.bayes.checks import prior_predictive_check
from bimix_bayes.bayes.graph import build_pymc_model
from bimix_bayes.bayes.likelihood import CurveLayout
from bimix_bayes.bayes.spec import merge_spec
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.laws.bimix import log_step_factor

STEP = ("log_floor", "log_reducible", "log_beta")
#: pytensor 2.38's slogdet rewrite fails on the batched run likelihood outside numba.
MODE = get_mode("FAST_RUN").excluding("slogdet_specialization")


def _layout() -> CurveLayout:
    truth = default_parameters().iloc[:3]
    data = simulate(truth, random_mixtures(6, list(truth.index), seed=2), [1e3, 3e3, 1e4], seed=2)
    return CurveLayout.from_data(data, 3e3)


def _spec(coords: str, pooled: bool, centre: bool = False) -> dict:
    priors = {name: {"pooled": pooled} for name in STEP}
    # the level a flat variable, as these tests compare coordinates at a given level
    # (sampler.level = "conditional": tests/test_level_conditional.py)
    sampler = {"step_coordinates": coords, "centre_share": centre, "level": "free"}
    return merge_spec({"priors": priors, "sampler": sampler})


def _logp(model, point) -> float:
    return float(model.compile_logp(mode=MODE)(point))


@pytest.mark.parametrize("pooled", [False, True])
def test_level_slope_coordinates_give_the_same_log_density(pooled, model_values):
    """At corresponding points both models have the same log density (Jacobian 1), so they
    sample one posterior: the new coordinates change the geometry, not the model."""
    layout = _layout()
    new = build_pymc_model(layout, _spec("level_slope", pooled))
    old = build_pymc_model(layout, _spec("floor_reducible", pooled))
    rng = np.random.default_rng(0)
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in new.initial_point().items()}
        step = model_values(new, STEP, point)
        at_old = {v.name: step[v.name] if v.name in STEP else point[v.name] for v in old.value_vars}
        assert set(at_old) - set(STEP) <= set(point)
        assert np.isclose(_logp(new, point), _logp(old, at_old), rtol=1e-10, atol=1e-8)


def test_level_slope_coordinates_are_the_value_slope_and_share_at_s_ref(model_values):
    layout = _layout()
    model = build_pymc_model(layout, _spec("level_slope", False))
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    v = model_values(model, [*STEP, "step_level", "step_log_slope", "step_logit_share"], point)
    beta = np.exp(v["log_beta"])

    def factor(x):
        return log_step_factor(x, v["log_floor"], v["log_reducible"], beta)

    h = 1e-6
    slope = -(factor(h) - factor(-h)) / (2 * h)
    share = np.exp(v["log_reducible"] - factor(0.0))
    np.testing.assert_allclose(factor(0.0), v["step_level"], rtol=1e-12)
    np.testing.assert_allclose(np.log(slope), v["step_log_slope"], rtol=1e-6)
    np.testing.assert_allclose(np.log(share / (1 - share)), v["step_logit_share"], rtol=1e-9)


def test_level_slope_coordinates_start_at_the_priors_locations(model_values):
    model = build_pymc_model(_layout(), _spec("level_slope", False))
    start = model_values(model, STEP, model.initial_point())
    spec = merge_spec()
    for name in STEP:
        np.testing.assert_allclose(start[name], spec["priors"][name]["loc"], atol=1e-12)


def test_level_slope_coordinates_refuse_a_non_centred_pooled_step_prior():
    priors = {"log_beta": {"pooled": True, "parametrization": "non_centered"}}
    spec = merge_spec({"priors": priors, "sampler": {"step_coordinates": "level_slope"}})
    with pytest.raises(ValueError, match="floor_reducible"):
        build_pymc_model(_layout(), spec)
    spec = merge_spec({"priors": priors, "sampler": {"step_coordinates": "floor_reducible"}})
    assert "log_beta_z" in build_pymc_model(_layout(), spec).named_vars


def test_prior_predictive_check_works_under_the_default_coordinates():
    truth = default_parameters().iloc[:2]
    data = simulate(truth, random_mixtures(4, list(truth.index), seed=0), [1e3, 3e3, 1e4], seed=0)
    check = prior_predictive_check(data, draws=20)
    assert np.isfinite(check.draws.to_numpy()).all()


@pytest.mark.parametrize("law", ["bimix", "bimix_cross"])
def test_centring_the_share_gives_the_same_log_density(law):
    """The level at the typical share is a shear of the level at share 1 (it adds alpha log r_c,
    a function of log alpha only): determinant 1, so at corresponding points both models have
    the same log density."""
    layout = _layout()
    spec = {**_spec("level_slope", False, centre=True), "law": {**merge_spec()["law"], "name": law}}
    centred = build_pymc_model(layout, merge_spec(spec))
    at_one = build_pymc_model(
        layout, merge_spec({**spec, "sampler": {"centre_share": False, "level": "free"}})
    )
    assert "log_share_centre" in centred.named_vars
    assert "log_share_centre" not in at_one.named_vars
    rng = np.random.default_rng(3)
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in centred.initial_point().items()}
        alpha = np.exp(point["log_alpha"]) - np.exp(merge_spec()["priors"]["log_alpha"]["loc"])
        shifted = dict(point, step_level=point["step_level"] + alpha * layout.log_share_centre)
        assert np.isclose(_logp(centred, point), _logp(at_one, shifted), rtol=1e-10, atol=1e-8)


def test_centred_level_is_the_log_loss_at_the_typical_share(model_values):
    """step_level is the law's log loss at s_ref and at the domain's typical share r_c (the
    geometric mean of its shares over the runs) plus the constant alpha_0 log r_c (alpha_0 at
    the prior's location, so that chains start where they did); log_share_centre is log r_c."""
    layout = _layout()
    model = build_pymc_model(layout, _spec("level_slope", False, centre=True))
    rng = np.random.default_rng(4)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    v = model_values(model, [*STEP, "step_level", "log_alpha"], point)
    log_r = np.log(layout.curve_own_share)
    centre = np.array([log_r[layout.curve_domain == d].mean() for d in range(len(layout.domains))])
    np.testing.assert_allclose(layout.log_share_centre, centre, rtol=1e-12)
    assert np.all(centre < 0)
    at_share = -np.exp(v["log_alpha"]) * centre + np.logaddexp(v["log_floor"], v["log_reducible"])
    alpha_0 = np.exp(merge_spec()["priors"]["log_alpha"]["loc"])
    np.testing.assert_allclose(at_share + alpha_0 * centre, v["step_level"], rtol=1e-12)


def test_centring_keeps_the_start_point(model_values):
    """At the start (every coordinate at its initial value) the law's parameters are those of
    the model with the level at share 1: the chains start where they did."""
    layout = _layout()
    centred = build_pymc_model(layout, _spec("level_slope", False, centre=True))
    at_one = build_pymc_model(layout, _spec("level_slope", False))
    for name in STEP:
        np.testing.assert_allclose(
            model_values(centred, [name], centred.initial_point())[name],
            model_values(at_one, [name], at_one.initial_point())[name],
            rtol=1e-12,
        )


def test_an_evaluation_only_domain_is_centred_at_share_one():
    """A domain no run trains on has no own share: its level stays at share 1 (centre 0)."""
    layout = CurveLayout.placeholder(3, 2)
    layout = replace(layout, curve_own_share=np.where(layout.curve_domain == 2, 0.0, 0.25))
    np.testing.assert_allclose(layout.log_share_centre, [np.log(0.25), np.log(0.25), 0.0])
