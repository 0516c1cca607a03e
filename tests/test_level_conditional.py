"""``sampler.level = "conditional"``: each domain's level is drawn as its Gaussian conditional
given every other parameter, ``level = mean + step_level_z / sqrt(P)``. A change of variables:
the posterior is the free level's (the log densities differ by the Jacobian), and under the
default likelihood ``step_level_z`` is exactly a standard Normal given the rest."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytensor.compile.mode import get_mode

from bimix_bayes.bayes.graph import CROSS_Z, LEVEL_Z, build_pymc_model
from bimix_bayes.bayes.likelihood import CurveLayout, level_information
from bimix_bayes.bayes.spec import merge_spec
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate

#: pytensor 2.38's slogdet rewrite fails on the batched run likelihood outside numba.
MODE = get_mode("FAST_RUN").excluding("slogdet_specialization")


def _layout() -> CurveLayout:
    truth = default_parameters().iloc[:3]
    data = simulate(truth, random_mixtures(6, list(truth.index), seed=2), [1e3, 3e3, 1e4], seed=2)
    return CurveLayout.from_data(data, 3e3)


def _spec(level: str, law: str = "bimix", **likelihood) -> dict:
    """The level sampled as ``level`` and the exponent and cross effects as they are."""
    sampler = {"level": level, "exponent": "free", "cross": "free"}
    return merge_spec({"law": {"name": law}, "sampler": sampler, "likelihood": likelihood})


def _random_point(model, rng, scale=0.4) -> dict[str, np.ndarray]:
    return {k: v + rng.normal(0, scale, np.shape(v)) for k, v in model.initial_point().items()}


LIKELIHOODS = {
    "default": {},
    "constant noise": {"early_noise_scale": 0.0},
    "run slopes": {"run_slope": True},
    "student_t": {"family": "student_t"},
    "correlated": {"run_correlation": True},
    "common": {"run_correlation": "common"},
    "no run offsets": {"run_offset": False},
}


def _log_jacobian(model_values, model, point, h=1e-5) -> float:
    """sum over domains of log |d level / d z|, by finite differences."""
    level = model_values(model, ["step_level"], point)["step_level"]
    total = 0.0
    for d in range(len(level)):
        moved = dict(point, **{LEVEL_Z: point[LEVEL_Z] + h * (np.arange(len(level)) == d)})
        total += np.log(
            (model_values(model, ["step_level"], moved)["step_level"][d] - level[d]) / h
        )
    return total


CASES = {
    **{name: ("bimix", lik) for name, lik in LIKELIHOODS.items()},
    "bimix_cross": ("bimix_cross", {}),
    "loglinear": ("loglinear", {}),
    "effective": ("effective", {}),
    "loglinear correlated": ("loglinear", {"run_correlation": True}),
}


@pytest.mark.parametrize(("law", "likelihood"), CASES.values(), ids=CASES.keys())
def test_conditional_level_samples_the_free_levels_posterior(law, likelihood, model_values):
    """At corresponding points the log densities differ by exactly log |d level / d z|
    (the change of variables' Jacobian, measured here by finite differences), whatever the
    likelihood and law: the same posterior, other coordinates."""
    layout = _layout()
    conditional = build_pymc_model(layout, _spec("conditional", law, **likelihood))
    free = build_pymc_model(layout, _spec("free", law, **likelihood))
    logp_c = conditional.compile_logp(mode=MODE)
    logp_f = free.compile_logp(mode=MODE)
    rng = np.random.default_rng(0)
    for _ in range(3):
        point = _random_point(conditional, rng)
        level = model_values(conditional, ["step_level"], point)["step_level"]
        at_free = {k: v for k, v in point.items() if k != LEVEL_Z} | {"step_level": level}
        assert set(at_free) == {v.name for v in free.value_vars}
        np.testing.assert_allclose(
            logp_c(point) - logp_f(at_free),
            _log_jacobian(model_values, conditional, point),
            rtol=1e-6,
            atol=1e-5,
        )


EXACT = {
    "default": ("bimix", {}),
    "constant noise": ("bimix", {"early_noise_scale": 0.0}),
    "run slopes": ("bimix", {"run_slope": True}),
    "no run offsets": ("bimix", {"run_offset": False}),
    "bimix_cross": ("bimix_cross", {}),
    "loglinear": ("loglinear", {}),
}


@pytest.mark.parametrize(("law", "likelihood"), EXACT.values(), ids=EXACT.keys())
def test_conditional_level_is_a_standard_normal_given_the_rest(law, likelihood):
    """Under a Normal likelihood with run effects independent across domains the level's
    conditional is exactly Gaussian, so the log density in step_level_z is -z^2 / 2 plus a
    constant at any value of the other parameters: no funnel left between the level and the
    run-offset sd, whatever tau is."""
    layout = _layout()
    # the defaults: the exponent and the cross effects drawn before the level, given the rest
    model = build_pymc_model(layout, merge_spec({"law": {"name": law}, "likelihood": likelihood}))
    logp = model.compile_logp(mode=MODE)
    rng = np.random.default_rng(1)
    names = [LEVEL_Z]
    for scale in (0.4, 2.0):  # tau and sigma far from where the data put them too
        point = _random_point(model, rng, scale)
        base = logp(dict(point, **{n: np.zeros_like(point[n]) for n in names}))
        for _ in range(2):
            z = {n: rng.normal(0, 1.5, np.shape(point[n])) for n in names}
            got = logp(dict(point, **z)) - base
            want = -0.5 * sum((v**2).sum() for v in z.values())
            np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7)


def test_the_chains_start_at_the_levels_conditional_mean():
    model = build_pymc_model(_layout(), _spec("conditional"))
    assert np.all(model.initial_point()[LEVEL_Z] == 0.0)
    assert LEVEL_Z not in build_pymc_model(_layout(), _spec("free")).named_vars


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 8),
    sigma=st.floats(1e-3, 0.1),
    tau=st.floats(0.0, 0.1),
    kappa=st.floats(0.0, 0.1),
    seed=st.integers(0, 2**16),
)
def test_level_information_matches_the_dense_covariance(n, sigma, tau, kappa, seed):
    """``(1' Sigma^-1 e, 1' Sigma^-1 1)`` from the weighted sums equals the dense solve with
    ``Sigma = sigma^2 V + tau^2 J + kappa^2 x x'`` (noise variance factors ``V``)."""
    rng = np.random.default_rng(seed)
    e, x = rng.normal(0, 0.02, n), np.sort(rng.normal(0, 1, n))
    v = 1 + rng.exponential(2, n)
    cov = sigma**2 * np.diag(v) + tau**2 * np.ones((n, n)) + kappa**2 * np.outer(x, x)
    dense = np.linalg.solve(cov, np.stack([e, np.ones(n)], axis=1)).sum(axis=0)
    w = 1 / v
    slope = ((w * x * e).sum(), (w * x).sum(), (w * x * x).sum(), kappa)
    got = level_information((w * e).sum(), w.sum(), sigma, tau, slope=slope)
    np.testing.assert_allclose(got, dense, rtol=1e-7, atol=1e-9)
    if kappa == 0:
        plain = level_information((w * e).sum(), w.sum(), sigma, tau)
        np.testing.assert_allclose(plain, dense, rtol=1e-7, atol=1e-9)


LAPLACE = {
    "bimix": ("bimix", {}, {}),
    "run slopes": ("bimix", {"run_slope": True}, {}),
    "level at share 1": ("bimix", {}, {"centre_share": False}),
    "student_t": ("bimix", {"family": "student_t"}, {}),
    "bimix_cross": ("bimix_cross", {}, {}),
    "loglinear": ("loglinear", {}, {}),
    "effective": ("effective", {}, {}),
    "loglinear correlated": ("loglinear", {"run_correlation": True}, {}),
}


@pytest.mark.parametrize(("law", "likelihood", "sampler"), LAPLACE.values(), ids=LAPLACE.keys())
def test_laplace_exponent_samples_the_same_posterior(law, likelihood, sampler, model_values):
    """``sampler.exponent = "laplace"``: log alpha (loglinear: log own) = mode + z /
    sqrt(curvature), then (cross laws, ``sampler.cross = "conditional"``) each cross effect's
    coordinate given it, then the level. The map from the standardised coordinates is
    triangular, so the log densities differ by the sum of the logs of its diagonal partial
    derivatives, whatever the law and likelihood; the free model samples log alpha, cross_v and
    step_level themselves."""
    layout = _layout()
    own = "log_own" if law == "loglinear" else "log_alpha"
    spec = {"law": {"name": law}, "likelihood": likelihood}
    laplace = build_pymc_model(
        layout, merge_spec({**spec, "sampler": {**sampler, "exponent": "laplace"}})
    )
    free = build_pymc_model(layout, merge_spec({**spec, "sampler": {**sampler, "level": "free"}}))
    assert (CROSS_Z in laplace.named_vars) == (law != "bimix")
    assert f"{own}_z" in laplace.named_vars and own not in {v.name for v in laplace.free_RVs}
    logp_l, logp_f = laplace.compile_logp(mode=MODE), free.compile_logp(mode=MODE)
    rng = np.random.default_rng(2)
    h = 1e-5
    for _ in range(3):
        point = _random_point(laplace, rng)
        got = model_values(laplace, ["step_level", own], point)
        log_jacobian = _log_jacobian(model_values, laplace, point)
        for d in range(3):
            moved = dict(point, **{f"{own}_z": point[f"{own}_z"] + h * (np.arange(3) == d)})
            log_jacobian += np.log((model_values(laplace, [own], moved)[own][d] - got[own][d]) / h)
        at_free = {k: v for k, v in point.items() if k not in (LEVEL_Z, f"{own}_z", CROSS_Z)}
        at_free |= {"step_level": got["step_level"], own: got[own]}
        if CROSS_Z in point:  # the cross effects' coordinates, drawn between the two
            v = model_values(laplace, ["cross_v"], point)["cross_v"]
            for index in np.ndindex(v.shape):
                step = np.zeros_like(point[CROSS_Z])
                step[index] = h
                moved = model_values(
                    laplace, ["cross_v"], dict(point, **{CROSS_Z: point[CROSS_Z] + step})
                )
                log_jacobian += np.log((moved["cross_v"][index] - v[index]) / h)
            at_free["cross_v"] = v
        assert set(at_free) == {v.name for v in free.value_vars}
        np.testing.assert_allclose(
            logp_l(point) - logp_f(at_free), log_jacobian, rtol=1e-6, atol=1e-5
        )


@pytest.mark.parametrize("law", ["bimix", "bimix_cross", "loglinear"])
def test_the_gradient_is_the_log_densitys(law):
    """The gradient the sampler follows (PyTensor's, through the conditional means, the Laplace
    step and the Jacobians) matches central finite differences of the log density."""
    model = build_pymc_model(_layout(), merge_spec({"law": {"name": law}}))
    logp, dlogp = model.compile_logp(mode=MODE), model.compile_dlogp(mode=MODE)
    point = _random_point(model, np.random.default_rng(4))
    grad = dlogp(point)
    numeric, h = [], 1e-6
    for var in model.value_vars:
        values = np.asarray(point[var.name], dtype=float)
        for index in np.ndindex(values.shape):
            up, down = values.copy(), values.copy()
            up[index] += h
            down[index] -= h
            diff = logp(dict(point, **{var.name: up})) - logp(dict(point, **{var.name: down}))
            numeric.append(diff / (2 * h))
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-3)
