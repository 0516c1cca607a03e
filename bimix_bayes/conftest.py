"""Doctest namespace of the package: a small fitted model, so that the Bayesian API's examples
run as doctests instead of being skipped.

Names available in every docstring example under ``bimix_bayes/``:

* ``data``: :func:`~bimix_bayes.data.simulate.simulate_default` (seed 1: 5 domains, 12 runs);
* ``model``: a :class:`~bimix_bayes.bayes.model.BiMixModel` fitted to ``data`` (2 chains x 200
  draws, seeded; made once per test session, about 10 s);
* ``idata``: its ``InferenceData`` (``model.idata_``);
* ``new_mixtures``: two new mixtures over ``data``'s domains (rows ``even`` and ``tilted``).
"""

from __future__ import annotations

import re
import warnings

import pandas as pd
import pytest

SMALL_SAMPLER = {"sampler": {"chains": 2, "draws": 200, "tune": 300, "progress_bar": "never"}}


@pytest.fixture(scope="session")
def _doctest_fit():
    from bimix_bayes.bayes.model import BiMixModel
    from bimix_bayes.data.simulate import simulate_default

    data = simulate_default(seed=1)
    model = BiMixModel(SMALL_SAMPLER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data, seed=0)
    domains = list(data.domains)
    even = [1 / len(domains)] * len(domains)
    tilted = [0.4] + [0.6 / (len(domains) - 1)] * (len(domains) - 1)
    new = pd.DataFrame([even, tilted], index=["even", "tilted"], columns=domains)
    return {"data": data, "model": model, "idata": model.idata_, "new_mixtures": new}


@pytest.fixture(autouse=True)
def _doctest_names(request, doctest_namespace):
    """Fit only for doctests that use the names (the fixture is session-scoped)."""
    if not isinstance(request.node, pytest.DoctestItem):
        return
    text = "\n".join(ex.source for ex in request.node.dtest.examples)
    if re.search(r"\b(idata|new_mixtures)\b|\bmodel\.", text):
        doctest_namespace.update(request.getfixturevalue("_doctest_fit"))
