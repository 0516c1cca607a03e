"""The check made before sampling: a law with as many coefficients per domain as there are runs
leaves the run effects' sd unidentified, and the fit says so before it samples."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.bayes.identifiability import (
    RunEffectWarning,
    runs_beyond_law,
    warn_if_run_effects_unidentified,
)
from bimix_bayes.bayes.likelihood import CurveLayout
from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.laws.registry import get_law

#: Coefficients of each law's mixture term per trained domain, intercept included, with
#: ``n_train`` training domains (the centred cross effects lose one direction, the effective
#: law's do not): what generic mixtures identify.
COEFFICIENTS = {
    "bimix": lambda n_train: 2,
    "bimix_cross": lambda n_train: n_train,
    "loglinear": lambda n_train: n_train,
    "effective": lambda n_train: n_train + 1,
}


def _layout(n_runs: int, n_domains: int, seed: int = 0, mixtures=None) -> CurveLayout:
    params = default_parameters().iloc[:n_domains]
    if mixtures is None:
        mixtures = random_mixtures(n_runs, params.index, seed=seed, include_uniform=False)
    data = simulate(params, mixtures, [1e3, 2e3, 4e3], seed=seed)
    return CurveLayout.from_data(data, 2e3)


@settings(max_examples=25, deadline=None)
@given(
    n_runs=st.integers(2, 9),
    n_domains=st.integers(2, 5),
    law=st.sampled_from(sorted(COEFFICIENTS)),
    seed=st.integers(0, 10_000),
)
def test_degrees_of_freedom_are_runs_minus_coefficients(n_runs, n_domains, law, seed):
    """Random mixtures: every domain keeps max(runs - coefficients, 0) degrees of freedom."""
    dof = runs_beyond_law(get_law(law), _layout(n_runs, n_domains, seed))
    expected = max(n_runs - COEFFICIENTS[law](n_domains), 0)
    assert set(dof.values()) == {expected}


def test_another_seed_of_a_mixture_adds_a_degree_of_freedom():
    """Runs of one mixture measure the run effects directly, whatever the law."""
    mixtures = random_mixtures(3, default_parameters().index[:3], seed=1, include_uniform=False)
    seeds = pd.concat([mixtures, mixtures.iloc[[0]].rename(index=lambda r: r + "-seed2")])
    law = get_law("bimix_cross")
    assert set(runs_beyond_law(law, _layout(3, 3, mixtures=mixtures)).values()) == {0}
    assert set(runs_beyond_law(law, _layout(4, 3, mixtures=seeds)).values()) == {1}


def test_the_warning_names_the_remedy_that_works():
    """3 runs of 3 domains (Ye et al.'s 3Mix): the cross laws warn and name bimix, which
    leaves a degree of freedom; bimix itself and data with more runs do not warn; without run
    offsets there is nothing to identify."""
    small = _layout(3, 3)
    with pytest.warns(RunEffectWarning, match="fit with --law bimix"):
        assert warn_if_run_effects_unidentified(get_law("bimix_cross"), small)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_run_effects_unidentified(get_law("bimix"), small)
        assert not warn_if_run_effects_unidentified(get_law("bimix_cross"), _layout(8, 3))
        assert not warn_if_run_effects_unidentified(get_law("loglinear"), small, run_offset=False)
    with pytest.warns(RunEffectWarning, match="add runs") as seen:
        warn_if_run_effects_unidentified(get_law("bimix"), _layout(2, 3))
    assert "--law bimix" not in str(seen[0].message)


def test_a_fit_warns_before_it_samples(monkeypatch):
    """`fit` runs the check once, before any sampling (stopped here before it samples)."""

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before sampling")

    params = default_parameters().iloc[:3]
    data = simulate(params, random_mixtures(3, params.index, seed=2), [1e3, 2e3, 4e3])
    model = BiMixModel({"law": {"name": "loglinear"}})
    monkeypatch.setattr(model, "_compile_nutpie", stop)
    with (
        pytest.warns(RunEffectWarning, match="law loglinear on 3 runs"),
        pytest.raises(RuntimeError, match="stopped before sampling"),
    ):
        model.fit(data)
