"""Shared fixtures: small simulated data, a quick fit with correlated run effects, the public
datasets when they are present, and files for the tests of a reader's error messages."""

from __future__ import annotations

import os

# Sampler code compiled at the level the `bimix` command uses (cli.app.fast_compile_settings),
# before PyMC loads numba: PyTensor's on-disk cache then holds the same code whichever ran first.
os.environ.setdefault("NUMBA_OPT", "1")

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import arviz as az
import pytest

from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.data.public import find_datasets
from bimix_bayes.data.simulate import simulate_default
from bimix_bayes.data.table import MixtureData


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The public datasets folder; the test is skipped when it is absent."""
    path = find_datasets()
    if path is None:
        pytest.skip(
            "public datasets not found (set BIMIX_SHARED_DATASETS or use ../shared/datasets)"
        )
    return path


@pytest.fixture(scope="session")
def sim_data() -> MixtureData:
    """The demo's synthetic study (seed 1): 5 domains, 12 runs, 10 checkpoints."""
    return simulate_default(seed=1)


#: Run effects correlated across domains (opt-in), sampled quickly: the one end-to-end fit of
#: that likelihood in the fast tests (tests/test_next_run.py, tests/test_correlated_forecast.py).
CORRELATED_QUICK: dict[str, Any] = {
    "sampler": {"chains": 2, "draws": 300, "tune": 300, "progress_bar": "never"},
    "likelihood": {"run_correlation": True},
}


@pytest.fixture(scope="session")
def correlated_fit(sim_data: MixtureData) -> az.InferenceData:
    """``sim_data`` fitted with :data:`CORRELATED_QUICK` (seed 3)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BiMixModel(CORRELATED_QUICK).fit(sim_data, seed=3)


@pytest.fixture
def file_at(tmp_path: Path) -> Callable[[str, str | None], Path]:
    """``file_at(name, text)``: the path ``tmp_path / name`` holding ``text``, or no file at all
    when ``text`` is None (the input of a test of a reader's error messages)."""

    def make(name: str, text: str | None) -> Path:
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        return path

    return make


#: A quick sampler for fits whose forecasts a test compares (2 chains x 300 draws).
QUICK_SAMPLER = {"sampler": {"chains": 2, "draws": 300, "tune": 300}}


@pytest.fixture(scope="session")
def quick_fit() -> Callable[..., az.InferenceData]:
    """``fit(data, spec=None)``: ``data`` fitted with :data:`QUICK_SAMPLER` over ``spec``
    (seed 1), its diagnostics' warnings silenced."""

    def fit(data: MixtureData, spec: dict | None = None) -> az.InferenceData:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a quick fit: its diagnostics may warn
            return BiMixModel({**QUICK_SAMPLER, **(spec or {})}).fit(data, seed=1)

    return fit


@pytest.fixture(scope="session")
def shared_factor_study() -> Callable[..., MixtureData]:
    """``study(shared_sd, by, steps, seed, n_runs, noise_sd)``: simulated runs (the default
    law, run offsets sd 0.004) whose log loss also moves by a ``Normal(0, shared_sd)`` draw per
    value of the columns ``by``, shared by every domain: ``("run",)`` a run's luck,
    ``("run", "step")`` a checkpoint's noise."""
    import numpy as np

    from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate

    def study(
        shared_sd: float,
        by: tuple[str, ...],
        steps: Any,
        seed: int,
        n_runs: int,
        noise_sd: float,
    ) -> MixtureData:
        truth = default_parameters()
        mixtures = random_mixtures(n_runs, list(truth.index), seed=seed)
        data = simulate(truth, mixtures, steps, seed=seed, run_sd=0.004, noise_sd=noise_sd)
        obs = data.observations.copy()
        keys = obs[list(by)].drop_duplicates()
        shared = np.random.default_rng(seed).normal(0.0, shared_sd, len(keys))
        factor = keys.assign(factor=np.exp(shared))
        obs["loss"] *= obs.merge(factor, on=list(by), how="left")["factor"].to_numpy()
        return MixtureData.from_frames(mixtures, obs)

    return study


@pytest.fixture(scope="session")
def forecast_log_sd() -> Callable[..., dict[str, float]]:
    """``sd(idata, steps, **targets)``: the posterior predictive sd of log loss per domain (and
    of the mean over domains), averaged over targets and steps (``forecast_draws``, seed 0)."""
    from bimix_bayes.bayes.forecast import forecast_draws

    def sd(idata: az.InferenceData, steps: Any, **targets: Any) -> dict[str, float]:
        import numpy as np

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            draws = forecast_draws(idata, steps, seed=0, **targets)
        out = np.log(draws).std(("chain", "draw")).mean(("mixture", "step"))
        return {str(d): float(v) for d, v in zip(out["domain"].values, out.values, strict=True)}

    return sd


@pytest.fixture(scope="session")
def model_values() -> Callable[..., dict[str, Any]]:
    """``values(model, names, point)``: the model's variables ``names`` at a point of its value
    variables (compiled in PyTensor's C mode, without the slogdet rewrite that fails outside
    numba)."""
    import numpy as np
    from pytensor.compile.mode import get_mode

    mode = get_mode("FAST_RUN").excluding("slogdet_specialization")

    def values(model: Any, names: list[str], point: dict[str, Any]) -> dict[str, Any]:
        outs = model.replace_rvs_by_values([model[n] for n in names])
        fn = model.compile_fn(
            outs, inputs=model.value_vars, point_fn=False, on_unused_input="ignore", mode=mode
        )
        got = fn(*[point[v.name] for v in model.value_vars])
        return {n: np.asarray(v) for n, v in zip(names, got, strict=True)}

    return values
