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
