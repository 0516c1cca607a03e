"""The mixture optimiser: exact against the closed form and brute force, constraints, objectives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.decision import solver as opt
from bimix_bayes.decision.constraints import ConstraintError, MixtureConstraints, load_constraints
from bimix_bayes.decision.objectives import Objective
from bimix_bayes.decision.solver import (
    LossSurface,
    OptimizationWarning,
    closed_form_optimum,
    objective_weights,
    solve,
    weighted_loss,
)


def _surface(k: np.ndarray, alpha: np.ndarray) -> LossSurface:
    k, alpha = np.atleast_2d(k), np.atleast_2d(alpha)
    domains = tuple(f"d{i}" for i in range(k.shape[1]))
    return LossSurface(domains, np.log(k), alpha, 1.0)


def _random_draws(rng: np.random.Generator, draws: int, n: int):
    k = rng.uniform(0.5, 5.0, size=(draws, n))
    alpha = rng.uniform(0.01, 0.4, size=(draws, n))
    return k, alpha


# ------------------------------------------------------------------ closed form vs general solver
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 9),
    bounded=st.booleans(),
)
def test_general_solver_matches_the_closed_form_for_one_draw(seed, n, bounded):
    """For one parameter draw the SLSQP + polish solver agrees with the semi-closed form to 1e-6,
    with or without bounds, and reports a KKT residual below 1e-6."""
    rng = np.random.default_rng(seed)
    k, alpha = _random_draws(rng, 1, n)
    bounds = None
    lower = upper = None
    if bounded:
        lower = rng.uniform(0, 0.6 / n, n)
        upper = np.maximum(lower + 0.01, rng.uniform(1.0 / n, 1.0, n))
        if upper.sum() < 1:
            upper *= 1.2 / upper.sum()
            upper = np.minimum(upper, 1.0)
        c = MixtureConstraints(
            lower={f"d{i}": float(v) for i, v in enumerate(lower)},
            upper={f"d{i}": float(v) for i, v in enumerate(upper)},
        )
        bounds = c.bounds([f"d{i}" for i in range(n)])
    weights = np.full(n, 1.0 / n)
    result = solve(_surface(k, alpha), weights, "mean", bounds)
    exact = closed_form_optimum(weights * k[0], alpha[0], lower, upper)
    assert np.max(np.abs(result.shares - exact)) <= 1e-6
    assert result.kkt_residual <= 1e-6 and result.converged
    assert result.shares.sum() == pytest.approx(1.0, abs=1e-12)
    if bounded:
        assert np.all(result.shares >= lower - 1e-12) and np.all(result.shares <= upper + 1e-12)


def test_closed_form_satisfies_the_stationarity_condition():
    """At an interior optimum, alpha_i K_i r_i^-(1+alpha_i) is the same for every domain (= lam)."""
    k, alpha = np.array([1.0, 2.0, 4.0, 0.7]), np.array([0.05, 0.1, 0.3, 0.2])
    r = closed_form_optimum(k, alpha)
    lam = alpha * k * r ** -(1 + alpha)
    assert r.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.ptp(lam) / lam.mean() < 1e-10


def test_closed_form_is_vectorised_over_draws():
    """A (draws, domains) problem gives the same optima as solving each draw alone."""
    rng = np.random.default_rng(1)
    k, alpha = _random_draws(rng, 50, 6)
    upper = np.full(6, 0.3)
    many = closed_form_optimum(k, alpha, upper=upper)
    one_by_one = np.array([closed_form_optimum(k[d], alpha[d], upper=upper) for d in range(50)])
    np.testing.assert_allclose(many, one_by_one, atol=1e-14)
    assert np.all(many <= 0.3 + 1e-12)


# ------------------------------------------------------------------ brute force
@pytest.mark.parametrize("objective", ["mean", "cvar:0.8", "quantile:0.7"])
def test_solver_beats_a_brute_force_dirichlet_search(objective):
    """On 3 domains and 40 posterior draws, no point of a dense random search of the simplex has a
    lower objective than the solver's answer, and the best points found lie next to it."""
    rng = np.random.default_rng(7)
    k, alpha = _random_draws(rng, 40, 3)
    surface = _surface(k, alpha)
    weights = np.array([0.2, 0.3, 0.5])
    obj = Objective.parse(objective)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizationWarning)  # kinks of quantile/CVaR
        result = solve(surface, weights, obj)
    points = rng.dirichlet(np.ones(3), size=100_000)
    per_draw = np.exp(np.log(k)[:, None, :] - alpha[:, None, :] * np.log(points)[None]) @ weights
    values = np.array([obj(per_draw[:, j]) for j in range(per_draw.shape[1])])
    best = np.argmin(values)
    # Exact for the smooth mean; quantile and CVaR have kinks where draws tie, where the solver
    # may stop a hair away from the optimum.
    assert result.value <= values[best] * (1 + (1e-12 if obj.kind == "mean" else 1e-5))
    assert np.max(np.abs(points[best] - result.shares)) < 0.03
    assert result.value == pytest.approx(obj(surface.losses(result.shares) @ weights), rel=1e-12)


def test_mean_objective_over_many_draws_is_not_the_optimum_at_the_posterior_mean():
    """The decision uses every draw: with skewed draws the optimum of the expected loss differs
    from the optimum of the loss at the mean parameters."""
    rng = np.random.default_rng(3)
    k = np.column_stack([rng.lognormal(0, 1.0, 400), np.full(400, 1.5)])
    alpha = np.column_stack([np.full(400, 0.3), np.full(400, 0.3)])
    weights = np.array([0.5, 0.5])
    over_draws = solve(_surface(k, alpha), weights).shares
    at_mean = closed_form_optimum(weights * np.exp(np.log(k).mean(axis=0)), alpha[0])
    assert abs(over_draws[0] - at_mean[0]) > 0.02


# ------------------------------------------------------------------ constraints in the solver
def test_fixed_and_uncounted_domains():
    """A fixed domain keeps its share; a domain with no weight gets its lower bound, unless the
    counted domains are capped and cannot take the rest."""
    k, alpha = np.array([[2.0, 3.0, 1.0]]), np.array([[0.2, 0.1, 0.3]])
    s = _surface(k, alpha)
    weights = objective_weights(s.domains, counted=["d0", "d1"])
    c = MixtureConstraints(fixed={"d0": 0.25}, lower={"d2": 0.1})
    r = solve(s, weights, "mean", c.bounds(s.domains)).shares
    assert r[0] == pytest.approx(0.25) and r[2] == pytest.approx(0.1)
    assert r.sum() == pytest.approx(1.0)
    capped = MixtureConstraints(upper={"d0": 0.3, "d1": 0.3}).bounds(s.domains)
    r = solve(s, weights, "mean", capped).shares
    np.testing.assert_allclose(r, [0.3, 0.3, 0.4], atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), objective=st.sampled_from(["mean", "cvar:0.9", "quantile:0.8"]))
def test_any_objective_gives_a_feasible_mixture(seed, objective):
    """Whatever the draws and the objective, the answer sums to 1 and respects every bound."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    k, alpha = _random_draws(rng, 30, n)
    domains = [f"d{i}" for i in range(n)]
    c = MixtureConstraints(upper={domains[0]: 0.2}, lower={domains[-1]: 0.15})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizationWarning)
        r = solve(_surface(k, alpha), np.full(n, 1 / n), objective, c.bounds(domains)).shares
    assert r.sum() == pytest.approx(1.0, abs=1e-9)
    assert r[0] <= 0.2 + 1e-12 and r[-1] >= 0.15 - 1e-12 and np.all(r > 0)


def test_warns_when_the_answer_is_the_unmoved_start(monkeypatch):
    """SLSQP's known failure (returning its start on tiny gradients) is reported, not hidden."""

    class Stuck:
        def __init__(self, x0):
            self.x, self.nit, self.message = x0, 0, "Optimization terminated successfully"

    monkeypatch.setattr(opt, "minimize", lambda fun, x0, **kw: Stuck(np.asarray(x0)))
    monkeypatch.setattr(
        opt, "_polish", lambda problem, x, lo, hi, max_iter=50: (x, problem.derivatives(x)[1], 0)
    )
    s = _surface(np.array([[1.0, 8.0]]), np.array([[1.0, 1.0]]))
    with pytest.warns(OptimizationWarning, match="starting point"):
        result = solve(s, np.array([0.5, 0.5]))
    assert result.at_start and not result.converged


def test_no_warning_when_the_start_is_already_optimal():
    """A symmetric problem's optimum is the uniform start: that is reported as converged."""
    s = _surface(np.array([[2.0, 2.0, 2.0]]), np.array([[0.1, 0.1, 0.1]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizationWarning)
        result = solve(s, np.full(3, 1 / 3))
    assert result.converged
    np.testing.assert_allclose(result.shares, 1 / 3, atol=1e-12)


def test_bench_sized_problem_converges_quickly():
    """4,000 draws x 22 domains: converged (the timing itself is in benchmarks/)."""
    rng = np.random.default_rng(0)
    k, alpha = _random_draws(rng, 4000, 22)
    result = solve(_surface(k, alpha), np.full(22, 1 / 22))
    assert result.kkt_residual <= 1e-6


# ------------------------------------------------------------------ objectives
def test_objective_weights_reproduce_the_summaries():
    """Mean and CVaR weights give the exact mean / tail mean; the Harrell-Davis quantile is close to
    the sample quantile on many draws."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=5000)
    assert Objective.parse("mean")(v) == pytest.approx(v.mean())
    tail = np.sort(v)[-500:]
    assert Objective.parse("cvar:0.9")(v) == pytest.approx(tail.mean())
    assert Objective.parse("quantile:0.9")(v) == pytest.approx(np.quantile(v, 0.9), abs=0.01)
    for text in ("mean", "cvar:0.75", "quantile:0.3"):
        w = Objective.parse(text).draw_weights(v)
        assert w.min() >= 0 and w.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["median", "quantile", "cvar:1.5", "quantile:x", "mean:0.5"])
def test_bad_objectives_are_refused(text):
    """An objective that cannot be read says how to write it."""
    with pytest.raises(ValueError, match="objective"):
        Objective.parse(text)


def test_domain_weights_validate_names():
    """Weights for a domain the fit does not have are an error naming it."""
    with pytest.raises(ValueError, match="unknown domain"):
        objective_weights(["a", "b"], weights={"c": 1.0})
    with pytest.raises(ValueError, match="did you mean 'github' for 'githb'"):
        objective_weights(["github", "arxiv"], weights={"githb": 2.0})
    with pytest.raises(ValueError, match="positive weight"):
        objective_weights(["a", "b"], weights={"a": 0.0, "b": 0.0})


# ------------------------------------------------------------------ constraints
def test_availability_caps_the_share():
    """Tokens available x epochs / total tokens is an upper bound, with its reason."""
    c = MixtureConstraints(
        available_tokens={"wiki": 3e9}, total_tokens=1e10, max_epochs=1, epochs={"wiki": 2}
    )
    b = c.bounds(["web", "wiki"])
    assert b.upper[1] == pytest.approx(0.6)
    assert "3e+09 tokens x 2 epoch" in b.upper_reason[1]


@pytest.mark.parametrize(
    ("constraints", "names"),
    [
        (MixtureConstraints(lower={"a": 0.6, "b": 0.5}), ["a at least 0.6", "b at least 0.5"]),
        (MixtureConstraints(upper={"a": 0.2, "b": 0.2, "c": 0.3}), ["a at most 0.2", "c at most"]),
        (MixtureConstraints(lower={"a": 0.5}, upper={"a": 0.4}), ["a: lower bound 0.5"]),
        (
            MixtureConstraints(fixed={"b": 0.5}, available_tokens={"b": 1e9}, total_tokens=1e10),
            ["b: fixed at 0.5", "available 1e+09"],
        ),
    ],
)
def test_infeasible_constraints_name_the_conflict(constraints, names):
    """No mixture satisfies them: the error says which constraints are in conflict."""
    with pytest.raises(ConstraintError) as info:
        constraints.bounds(["a", "b", "c"])
    for name in names:
        assert name in str(info.value)


def test_availability_needs_total_tokens():
    """Available tokens without the run's size cannot be turned into a share: say so."""
    with pytest.raises(ConstraintError, match="total_tokens"):
        MixtureConstraints(available_tokens={"a": 1e9}).bounds(["a", "b"])


def test_constraints_file_toml_and_yaml(tmp_path):
    """The documented file layout reads the same from TOML and YAML; unknown keys are refused."""
    toml = tmp_path / "c.toml"
    toml.write_text(
        "total_tokens = 1e10\nmax_epochs = 2\n[domains.a]\nmin = 0.1\nmax = 0.7\n"
        "[domains.b]\navailable_tokens = 1e9\n[domains.c]\nfixed = 0.2\n"
    )
    yaml = tmp_path / "c.yaml"
    yaml.write_text(
        "total_tokens: 1.0e10\nmax_epochs: 2\ndomains:\n  a: {min: 0.1, max: 0.7}\n"
        "  b: {available_tokens: 1.0e9}\n  c: {fixed: 0.2}\n"
    )
    for path in (toml, yaml):
        b = load_constraints(path).bounds(["a", "b", "c"])
        np.testing.assert_allclose(b.lower, [0.1, 0.0, 0.2])
        np.testing.assert_allclose(b.upper, [0.7, 0.2, 0.2])
    bad = tmp_path / "bad.toml"
    bad.write_text("[domains.a]\nmaximum = 0.5\n")
    with pytest.raises(ConstraintError, match=r"domains\.a: unknown key.*maximum"):
        load_constraints(bad)
    with pytest.raises(ConstraintError, match="unknown domain"):
        load_constraints(toml).bounds(["a", "b"])
    # a typo is named with its file, its key and the fit's domain it is closest to
    typo = tmp_path / "typo.toml"
    typo.write_text("[domains.pyton]\nmax = 0.1\n")
    message = r"typo\.toml: \[domains\.pyton\] \(max\): unknown .* did you mean 'python'"
    with pytest.raises(ConstraintError, match=message):
        load_constraints(typo).bounds(["python", "web"])
    # a bound in percent is named by its file and key, with the share it likely means
    percent = tmp_path / "percent.toml"
    percent.write_text("[domains.web]\nmax = 25\n")
    message = r"percent\.toml: \[domains\.web\] max must be a share .* \(percent\? write 0\.25"
    with pytest.raises(ConstraintError, match=message):
        load_constraints(percent).bounds(["python", "web"])


def test_fixed_counted_domains_count_in_risk_objectives():
    """A counted domain with a fixed share still adds its loss to every draw: it changes which
    draws are in a CVaR tail, so the optimum and the reported value use the full objective."""
    rng = np.random.default_rng(4)
    shared = rng.lognormal(0, 0.8, 200)
    k = np.column_stack([shared, rng.lognormal(0, 0.3, 200), 5 * shared**2])
    alpha = np.full((200, 3), 0.3)
    s = _surface(k, alpha)
    w = np.full(3, 1 / 3)
    bounds = MixtureConstraints(fixed={"d2": 0.2}).bounds(s.domains)
    obj = Objective.parse("cvar:0.9")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizationWarning)
        result = solve(s, w, obj, bounds)
    assert result.shares[2] == pytest.approx(0.2)
    assert result.value == pytest.approx(obj(weighted_loss(s, w, result.shares)), rel=1e-9)
    grid = np.linspace(0.01, 0.79, 781)
    shares = np.column_stack([grid, 0.8 - grid, np.full_like(grid, 0.2)])
    values = weighted_loss(s, w, shares)
    best = min(obj(values[:, j]) for j in range(values.shape[1]))
    assert result.value <= best * (1 + 1e-5)


def test_a_counted_domain_without_any_share_is_an_error():
    """A counted domain capped at 0 would have infinite loss: the error says what to do."""
    s = _surface(np.array([[2.0, 3.0]]), np.array([[0.1, 0.2]]))
    bounds = MixtureConstraints(upper={"d1": 0.0}).bounds(s.domains)
    with pytest.raises(ConstraintError, match="d1 count"):
        solve(s, np.array([0.5, 0.5]), "mean", bounds)
    # Left out of the objective, it may get no share.
    r = solve(s, np.array([1.0, 0.0]), "mean", bounds).shares
    np.testing.assert_allclose(r, [1.0, 0.0])


def test_unnamed_domains_keep_weight_one():
    """--weights code=2 doubles code's weight; the other domains still count."""
    np.testing.assert_allclose(
        objective_weights(["a", "b", "c"], weights={"a": 2}), [0.5, 0.25, 0.25]
    )


def test_bound_status_names_a_share_left_out():
    """A share of 0 that no bound imposes (a law finite at zero chose it) reads 'left out',
    not 'free' (a new user's trial); bounds keep their own words."""
    from bimix_bayes.decision.constraints import Bounds

    bounds = Bounds(
        ("a", "b", "c", "d"),
        np.array([0.0, 0.1, 0.0, 0.2]),
        np.array([1.0, 1.0, 0.5, 0.2]),
        ("", "min", "", "fixed"),
        ("", "", "max", "fixed"),
    )
    shares = np.array([0.0, 0.1, 0.5, 0.2])
    assert bounds.status(shares) == ["left out", "at lower bound", "at upper bound", "fixed"]
    assert bounds.status(np.array([0.3, 0.2, 0.3, 0.2]))[:3] == ["free", "free", "free"]
