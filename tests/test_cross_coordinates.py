"""Cross effects sampled centred, in an orthonormal basis of the directions that enter the
likelihood (``sampler.centre_cross``), against the non-centred form ``sd_cross * P(z)``.

Derivation: ``P_i`` (own column zeroed, the others centred; :func:`project_cross`) is an
orthogonal projection, so ``P_i = B_i B_i^T`` with ``B_i`` orthonormal. ``sd * P_i z`` with
``z ~ Normal(0, I)`` is ``Normal(0, sd^2 P_i)``; so is ``B_i v`` with ``v ~ Normal(0, sd^2 I)``.
The two forms give the cross effects the same prior for every ``sd``, hence the same posterior;
only the sampler's coordinates differ (and the centred form has no direction the likelihood
ignores).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.bayes.graph import build_pymc_model
from bimix_bayes.bayes.likelihood import CurveLayout
from bimix_bayes.bayes.spec import merge_spec
from bimix_bayes.laws.cross import cross_basis, cross_mask, project_cross


def _projection(own: int, n_train: int, centred: bool) -> np.ndarray:
    """The dense projection of one row: its effect on each unit vector."""
    eye = np.eye(n_train)
    if centred:
        return project_cross(eye, np.full(n_train, own))
    return np.diag(cross_mask(np.array([own]), n_train)[0])


@settings(max_examples=60, deadline=None)
@given(
    own=st.lists(st.integers(-1, 6), min_size=1, max_size=6),
    n_train=st.integers(2, 7),
    centred=st.booleans(),
)
def test_the_basis_spans_exactly_the_identified_cross_effects(own, n_train, centred):
    own_index = np.array([o if o < n_train else -1 for o in own])
    basis = cross_basis(own_index, n_train, centred=centred)
    assert basis.shape == (len(own_index), n_train, n_train - int(centred))
    for i, o in enumerate(own_index):
        b = basis[i]
        np.testing.assert_allclose(b @ b.T, _projection(o, n_train, centred), atol=1e-12)
        used = (b**2).sum(axis=0) > 0.5
        np.testing.assert_allclose(b.T @ b, np.diag(used.astype(float)), atol=1e-12)
        assert used.sum() == n_train - int(o >= 0) - int(centred)


def _prior_cross(centre: bool, law: str) -> tuple[np.ndarray, np.ndarray]:
    layout = CurveLayout.placeholder(3, 4)  # domain 2 trains; t3 is not evaluated
    layout = layout.__class__(**{**layout.__dict__, "own_index": np.array([0, -1, 2])})
    # the effects sampled as they are (not drawn given the rest, which has no prior to draw from)
    sampler = {"centre_cross": centre, "cross": "free"}
    spec = merge_spec({"law": {"name": law}, "sampler": sampler})
    with build_pymc_model(layout, spec) as model:
        names = {v.name for v in model.free_RVs}
        assert ("cross_v" in names) is centre and ("cross_z" in names) is not centre
        cross, sd = pm.draw([model["cross"], model["sd_cross"]], draws=6000, random_seed=3)
    return cross, sd


def test_centred_cross_effects_have_the_non_centred_prior():
    """The prior of ``cross / sd_cross`` per row is ``Normal(0, P_i)`` in both coordinates
    (Monte Carlo, 6000 draws), for a law with centred rows and one without."""
    for law, centred_rows in (("bimix_cross", True), ("effective", False)):
        for centre in (False, True):
            cross, sd = _prior_cross(centre, law)
            scaled = cross / sd[:, None, None]
            for i, own in enumerate((0, -1, 2)):
                cov = np.cov(scaled[:, i, :].T)
                np.testing.assert_allclose(cov, _projection(own, 4, centred_rows), atol=0.08)


@pytest.mark.slow
def test_a_non_centred_cross_fit_saves_loads_and_forecasts(tmp_path):
    """End to end with the form of fits made before centred cross effects became the default:
    the fit records it, the file loads with it, and the loaded fit forecasts (the default, centred
    form is fitted end to end by the cross laws' slow tests)."""
    from bimix_bayes.bayes.model import BiMixModel
    from bimix_bayes.data.embedded import load_default

    sampler = {"centre_cross": False, "draws": 200, "tune": 200, "progress_bar": "never"}
    model = BiMixModel(merge_spec({"law": {"name": "bimix_cross"}, "sampler": sampler}))
    idata = model.fit(load_default(), seed=0)
    assert "cross_z" in idata.posterior and "cross_v" not in idata.posterior
    loaded = BiMixModel.load(model.save(tmp_path / "fit.nc"))
    assert loaded.spec["sampler"]["centre_cross"] is False
    table = loaded.predict([8000])
    assert table["median"].notna().all() and (table["lower_90"] < table["upper_90"]).all()
