"""The effective-data law (``bimix_bayes.laws.effective``): finite at zero shares, BiMix above
the share floor, the decision surface and solver (exact gradient, Hessian diagonal, brute-force
optimum) and the fixed-budget design row. The numpy = pytensor and graph = numpy-likelihood
checks of every law, the graph with an evaluation-only domain and the fit -> forecast ->
predictive density -> decision path of an evaluation-only target are in test_laws.py
(parametrised over the laws)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import approx_fprime

from bimix_bayes.decision.objectives import Objective
from bimix_bayes.decision.solver import _CrossProblem, solve
from bimix_bayes.decision.surface import LossSurface
from bimix_bayes.laws.effective import SHARE_FLOOR, effective_share
from bimix_bayes.laws.fixed_budget import coefficient_kinds, design, design_columns
from bimix_bayes.laws.registry import BIMIX, EFFECTIVE, get_law
from bimix_bayes.leastsq.fixed_budget import FixedBudgetLaw, at_one_step

N = 4


def _params(rng: np.random.Generator, n: int, own_index: np.ndarray) -> dict[str, np.ndarray]:
    cross = rng.normal(0, 0.05, (n, N))
    rows = np.flatnonzero(own_index >= 0)
    cross[rows, own_index[rows]] = 0.0
    return {
        "log_floor": rng.normal(0.5, 0.3, n),
        "log_reducible": rng.normal(-1.0, 0.3, n),
        "alpha": rng.uniform(0.01, 0.2, n),
        "beta": rng.uniform(0.2, 1.0, n),
        "cross": cross,
    }


def test_the_law_is_registered_finite_at_zero_and_fits_evaluation_only_targets():
    law = get_law("effective")
    assert law is EFFECTIVE and law.share_floor == SHARE_FLOOR
    assert law.finite_at_zero and law.cross_domain and law.fits_evaluation_only
    assert not law.centred_cross
    rng = np.random.default_rng(0)
    shares = np.array([[0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]])
    p = _params(rng, 2, np.zeros(2, int))
    assert np.isfinite(law.log_loss(shares, shares[:, 0], 0.3, p)).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_without_cross_effects_it_is_bimix_at_the_share_plus_the_floor(seed):
    """``cross = 0``: the effective law is BiMix at ``r + eps`` with both intercepts shifted by
    ``alpha log eps`` (exactly), so BiMix's log-share slope far above the floor."""
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.ones(N), 8)
    x = rng.normal(0, 1, 8)
    p = _params(rng, 8, np.zeros(8, int))
    p["cross"] = np.zeros((8, N))
    eff = EFFECTIVE.log_loss(shares, shares[:, 0], x, p)
    shift = p["alpha"] * np.log(SHARE_FLOOR)
    bimix = {
        "log_floor": p["log_floor"] + shift,
        "log_reducible": p["log_reducible"] + shift,
        "alpha": p["alpha"],
        "beta": p["beta"],
    }
    expected = BIMIX.log_loss(None, shares[:, 0] + SHARE_FLOOR, x, bimix)
    assert np.allclose(eff, expected, rtol=1e-12)


def test_an_evaluation_only_row_has_no_own_term():
    """Own share 0 (no own domain): the mixture term is the cross term alone, whatever alpha."""
    rng = np.random.default_rng(1)
    shares = rng.dirichlet(np.ones(N), 5)
    p = _params(rng, 5, np.full(5, -1))
    term = EFFECTIVE.mixture_term(shares, np.zeros(5), p)
    assert np.allclose(term, (p["cross"] * effective_share(shares)).sum(axis=-1))


def _surface(seed: int = 0, n_draws: int = 30, evaluation_only: bool = False) -> LossSurface:
    """An effective-law surface over four training domains (rows: evaluation domains; with
    ``evaluation_only`` the last row has no own domain)."""
    rng = np.random.default_rng(seed)
    own_index = np.array([0, 1, 2, -1 if evaluation_only else 3])
    cross = rng.normal(-0.02, 0.05, (n_draws, N, N))
    for i, j in enumerate(own_index):
        if j >= 0:
            cross[:, i, j] = 0.0
    return LossSurface(
        tuple("abcd") if not evaluation_only else ("a", "b", "c", "held_out"),
        rng.normal(0.8, 0.1, (n_draws, N)),
        rng.uniform(0.03, 0.15, (n_draws, N)),
        1e4,
        cross=cross,
        own_index=own_index,
        training=tuple("abcd"),
        share_floor=SHARE_FLOOR,
    )


def test_the_surface_evaluates_the_law():
    """The decision surface's own formula equals ``EFFECTIVE.log_loss`` with the same
    parameters (log K is the step law at the target step)."""
    surface = _surface(seed=3, evaluation_only=True)
    r = np.array([0.0, 0.3, 0.6, 0.1])
    own = surface.own_shares(r, np.ones(N, bool))
    expected = surface.log_k + EFFECTIVE.mixture_term(
        r, own, {"alpha": surface.alpha, "cross": surface.cross}
    )
    assert np.allclose(surface.log_losses(r), expected)
    assert surface.finite_at_zero
    assert not surface.counted_columns(np.full(N, 0.25), power_law_only=True).any()


@pytest.mark.parametrize("evaluation_only", [False, True])
@pytest.mark.parametrize("objective", ["mean", "cvar:0.8"])
def test_the_solver_gradient_and_hessian_diagonal_are_exact(objective, evaluation_only):
    surface = _surface(evaluation_only=evaluation_only)
    w = np.array([0.4, 0.3, 0.3, 0.0])  # d is not counted but its share still matters
    problem = _CrossProblem(surface, w, Objective.parse(objective), np.ones(N, bool), np.zeros(N))
    x = np.array([0.0, 0.3, 0.2, 0.5])  # a zero share: the law is finite and smooth there
    _, grad, hess, pi = problem.derivatives(x)

    def fixed_weights(z):  # the objective with the draw weights held, as the gradient is
        return float(pi @ (np.exp(surface.log_losses(z, w > 0)) @ w[w > 0]))

    assert np.allclose(grad, approx_fprime(x, fixed_weights, 1e-8), rtol=1e-5, atol=1e-6)
    h = 1e-5
    for j in range(N):
        step = np.zeros(N)
        step[j] = h
        # central differences (the law is smooth through r = 0: f is defined for r > -eps)
        second = (fixed_weights(x + step) - 2 * fixed_weights(x) + fixed_weights(x - step)) / h**2
        assert np.isclose(hess[j], max(second, 1e-12), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("seed", [2, 5])
def test_the_solver_finds_the_brute_force_optimum(seed):
    surface = _surface(seed=seed)
    w = np.full(N, 0.25)
    result = solve(surface, w)
    assert result.converged
    rng = np.random.default_rng(0)
    candidates = np.vstack(
        [rng.dirichlet(np.ones(N), 20_000), rng.dirichlet(np.full(N, 0.3), 20_000)]
    )
    values = (np.exp(surface.log_losses(candidates)) @ w).mean(axis=0)
    assert result.value <= values.min() + 1e-9
    assert np.abs(result.shares - candidates[values.argmin()]).max() < 0.05


def test_the_fixed_budget_design_row_is_the_law():
    """``x_d(r)' theta_d`` equals the intercept plus the law's mixture term, for a trained and
    an evaluation-only domain, zero shares included."""
    rng = np.random.default_rng(4)
    shares = rng.dirichlet(np.full(N, 0.5), 20)
    shares[:5, 0] = 0.0
    shares /= shares.sum(axis=1, keepdims=True)
    names = list("abcd")
    for own in (0, 2, -1):
        p = _params(rng, 1, np.array([own]))
        cols = design_columns(EFFECTIVE, names, own)
        theta = [0.7] + ([-p["alpha"][0]] if own >= 0 else [])
        theta += [p["cross"][0, j] for j in range(N) if j != own]
        own_share = shares[:, own] if own >= 0 else np.zeros(len(shares))
        expected = 0.7 + EFFECTIVE.mixture_term(shares, own_share, p)
        assert np.allclose(design(EFFECTIVE, shares, own) @ theta, expected)
        kinds = coefficient_kinds(EFFECTIVE, names, own)
        assert kinds.count("own") == (own >= 0) and len(kinds) == len(cols)


def test_least_squares_recovers_the_law_at_a_fixed_budget():
    from bimix_bayes.data.simulate import simulate_default

    data = at_one_step(simulate_default(seed=1))
    fit = FixedBudgetLaw(law="effective").fit(data)
    assert list(fit.params_.columns) == ["k", "alpha", "rmse_log", "n"]
    assert (fit.params_["alpha"] > 0).all()
    assert np.isnan(np.diag(fit.cross_.loc[list(data.domains), list(data.domains)])).all()
    assert np.allclose(fit.predict(data.mixtures).to_numpy().shape, (len(data.mixtures), 5))
