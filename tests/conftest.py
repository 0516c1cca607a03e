"""Shared fixtures: small simulated data, and the public datasets when they are present."""

from __future__ import annotations

from pathlib import Path

import pytest

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
