"""The law: Eq. 3, its univariate forms, the identifiable form, exact conversions, one math."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.laws.bimix import (
    IdentifiableParams,
    PaperParams,
    bimix_log_loss,
    bimix_log_loss_jacobian,
    bimix_loss,
    mixture_law,
    step_law,
)

positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)
exponent = st.floats(min_value=0.0, max_value=3.0, allow_nan=False, allow_infinity=False)
share = st.floats(min_value=1e-4, max_value=1.0, allow_nan=False, allow_infinity=False)
step = st.floats(min_value=1.0, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(r=share, s=step, A=positive, alpha=exponent, B=positive, beta=exponent, C=positive)
def test_bimix_loss_is_eq3(r, s, A, alpha, B, beta, C):
    """The package's law is the paper's A r^-alpha (B s^-beta + C), to rounding."""
    direct = A * r**-alpha * (B * s**-beta + C)
    assert bimix_loss(r, s, A, alpha, B, beta, C) == pytest.approx(direct, rel=1e-12)


def test_univariate_forms_are_the_factors():
    """Fixed step: A r^-alpha; fixed mixture: B s^-beta + C; Eq. 3 is their product."""
    r = np.array([0.05, 0.2, 0.7])
    s = np.array([1e3, 1e4, 1e5])
    assert np.allclose(mixture_law(r, 2.0, 0.1), 2.0 * r**-0.1, rtol=1e-14)
    assert np.allclose(step_law(s, 30.0, 0.4, 1.5), 30.0 * s**-0.4 + 1.5, rtol=1e-14)
    assert np.allclose(
        bimix_loss(r[:, None], s[None, :], 2.0, 0.1, 30.0, 0.4, 1.5),
        mixture_law(r, 2.0, 0.1)[:, None] * step_law(s, 30.0, 0.4, 1.5)[None, :],
        rtol=1e-14,
    )


def test_vectorised_over_domains_and_grids():
    """Arrays broadcast: a (mixture, step, domain) grid in one call."""
    p = PaperParams(A=[2.0, 1.0], alpha=[0.1, 0.2], B=[10.0, 20.0], beta=[0.5, 0.3], C=[1.0, 1.0])
    r = np.full((4, 1, 2), 0.5)
    s = np.geomspace(10, 1e4, 3)[None, :, None]
    assert p.loss(r, s).shape == (4, 3, 2)


@settings(max_examples=200, deadline=None)
@given(A=positive, alpha=exponent, B=positive, beta=exponent, C=positive, s_ref=step)
def test_paper_to_identifiable_and_back_is_exact(A, alpha, B, beta, C, s_ref):
    """Paper -> identifiable -> paper returns the same law under C = 1 (kA, B/k, C/k)."""
    paper = PaperParams(A=A, alpha=alpha, B=B, beta=beta, C=C)
    back = paper.to_identifiable(s_ref).to_paper()
    norm = paper.normalised()
    for name in ("A", "alpha", "B", "beta", "C"):
        assert float(getattr(back, name)) == pytest.approx(float(getattr(norm, name)), rel=1e-9)
    r, s = 0.3, 5000.0
    assert back.loss(r, s) == pytest.approx(paper.loss(r, s), rel=1e-10)


@settings(max_examples=200, deadline=None)
@given(
    lf=st.floats(-3, 3),
    lr=st.floats(-5, 5),
    alpha=exponent,
    beta=exponent,
    s_ref=step,
)
def test_identifiable_to_paper_and_back_is_exact(lf, lr, alpha, beta, s_ref):
    """Identifiable -> paper -> identifiable is the identity."""
    ip = IdentifiableParams(log_floor=lf, log_reducible=lr, alpha=alpha, beta=beta, s_ref=s_ref)
    back = ip.to_paper().to_identifiable(s_ref)
    assert float(back.log_floor) == pytest.approx(lf, abs=1e-9)
    assert float(back.log_reducible) == pytest.approx(lr, abs=1e-8)
    assert float(back.alpha) == alpha and float(back.beta) == beta


def test_scale_ridge_is_invisible_to_the_law():
    """(kA, B/k, C/k) predicts the same loss and maps to the same identifiable parameters."""
    base = PaperParams(A=2.0, alpha=0.1, B=30.0, beta=0.5, C=1.0)
    scaled = PaperParams(A=2.0 * 7, alpha=0.1, B=30.0 / 7, beta=0.5, C=1.0 / 7)
    r, s = np.array([0.1, 0.9]), np.array([100.0, 1e6])
    assert np.allclose(base.loss(r, s), scaled.loss(r, s), rtol=1e-12)
    a, b = base.to_identifiable(1e3), scaled.to_identifiable(1e3)
    assert np.isclose(a.log_floor, b.log_floor) and np.isclose(a.log_reducible, b.log_reducible)


def test_recentring_keeps_predictions():
    """Changing the reference step changes log_reducible only, not the predicted loss."""
    ip = IdentifiableParams(log_floor=0.7, log_reducible=0.1, alpha=0.05, beta=0.6, s_ref=1e3)
    other = ip.recentred(4e5)
    r, s = np.array([0.05, 0.5]), np.array([10.0, 1e7])
    assert np.allclose(ip.loss(r, s), other.loss(r, s), rtol=1e-12)
    assert other.s_ref == 4e5


def test_invalid_reference_step_is_refused():
    """A non-positive s_ref is an error, not a silent NaN."""
    with pytest.raises(ValueError, match="s_ref"):
        IdentifiableParams(log_floor=0.0, log_reducible=0.0, alpha=0.1, beta=0.1, s_ref=0.0)


def test_same_expression_in_pytensor():
    """The PyMC model and the least-squares fit evaluate one definition of the math."""
    rng = np.random.default_rng(0)
    log_r, x = np.log(rng.uniform(0.01, 1, 50)), rng.normal(0, 2, 50)
    theta = (0.4, -0.2, 0.08, 0.7)
    tr, tx = pt.dvector("log_r"), pt.dvector("x")
    tp = [pt.dscalar(n) for n in ("lf", "lr", "a", "b")]
    f = pytensor.function([tr, tx, *tp], bimix_log_loss(tr, tx, *tp, math=pt))
    assert np.allclose(f(log_r, x, *theta), bimix_log_loss(log_r, x, *theta), rtol=1e-12)


def test_jacobian_matches_finite_differences():
    """The analytic Jacobian used by the fit agrees with central differences."""
    rng = np.random.default_rng(1)
    log_r, x = np.log(rng.uniform(0.01, 1, 30)), rng.normal(0, 2, 30)
    theta = np.array([0.3, 0.5, 0.1, 0.8])
    jac = bimix_log_loss_jacobian(log_r, x, *theta)
    h = 1e-6
    for k in range(4):
        e = np.zeros(4)
        e[k] = h
        fd = (bimix_log_loss(log_r, x, *(theta + e)) - bimix_log_loss(log_r, x, *(theta - e))) / (
            2 * h
        )
        assert np.allclose(jac[:, k], fd, atol=1e-7)


def test_extreme_terms_are_stable():
    """logaddexp keeps the log loss finite when one term dwarfs the other."""
    out = bimix_log_loss(np.log(0.5), np.array([-50.0, 50.0]), -20.0, 20.0, 0.1, 3.0)
    assert np.all(np.isfinite(out))
