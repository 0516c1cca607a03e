"""The step law's sampling coordinates: ``level_slope`` samples the same posterior as
``floor_reducible`` (a volume-preserving change of variables), and its three coordinates are
the step factor's value, slope and reducible share at ``s_ref``."""

from __future__ import annotations

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


def _spec(coords: str, pooled: bool) -> dict:
    priors = {name: {"pooled": pooled} for name in STEP}
    return merge_spec({"priors": priors, "sampler": {"step_coordinates": coords}})


def _values(model, names, point) -> dict[str, np.ndarray]:
    outs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(
        outs, inputs=model.value_vars, point_fn=False, on_unused_input="ignore", mode=MODE
    )
    got = fn(*[point[v.name] for v in model.value_vars])
    return {n: np.asarray(v) for n, v in zip(names, got, strict=True)}


def _logp(model, point) -> float:
    return float(model.compile_logp(mode=MODE)(point))


@pytest.mark.parametrize("pooled", [False, True])
def test_level_slope_coordinates_give_the_same_log_density(pooled):
    """At corresponding points both models have the same log density (Jacobian 1), so they
    sample one posterior: the new coordinates change the geometry, not the model."""
    layout = _layout()
    new = build_pymc_model(layout, _spec("level_slope", pooled))
    old = build_pymc_model(layout, _spec("floor_reducible", pooled))
    rng = np.random.default_rng(0)
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in new.initial_point().items()}
        step = _values(new, STEP, point)
        at_old = {v.name: step[v.name] if v.name in STEP else point[v.name] for v in old.value_vars}
        assert set(at_old) - set(STEP) <= set(point)
        assert np.isclose(_logp(new, point), _logp(old, at_old), rtol=1e-10, atol=1e-8)


def test_level_slope_coordinates_are_the_value_slope_and_share_at_s_ref():
    layout = _layout()
    model = build_pymc_model(layout, _spec("level_slope", False))
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    v = _values(model, [*STEP, "step_level", "step_log_slope", "step_logit_share"], point)
    beta = np.exp(v["log_beta"])

    def factor(x):
        return log_step_factor(x, v["log_floor"], v["log_reducible"], beta)

    h = 1e-6
    slope = -(factor(h) - factor(-h)) / (2 * h)
    share = np.exp(v["log_reducible"] - factor(0.0))
    np.testing.assert_allclose(factor(0.0), v["step_level"], rtol=1e-12)
    np.testing.assert_allclose(np.log(slope), v["step_log_slope"], rtol=1e-6)
    np.testing.assert_allclose(np.log(share / (1 - share)), v["step_logit_share"], rtol=1e-9)


def test_level_slope_coordinates_start_at_the_priors_locations():
    model = build_pymc_model(_layout(), _spec("level_slope", False))
    start = _values(model, STEP, model.initial_point())
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
