"""Correlated run effects (bayes.correlated) against a dense reference.

The Woodbury form must equal the log density of the run's full residual vector under the dense
covariance ``N + Z Sigma Z^T``, for offsets and slopes, missing domains, the Student-t family,
batch dimensions and the PyTensor backend; the conditional must equal dense Gaussian conditioning.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal, multivariate_t

from bimix_bayes.bayes.correlated import (
    RunPatterns,
    RunSums,
    draw_run_effects,
    effect_cholesky,
    run_conditional,
    run_log_likelihood,
)

D, T = 3, 5
SUM_FIELDS = ("n", "sx", "sxx", "s1", "s2", "sxe")  # constant noise: no count, no log_v
X = np.log(np.array([1.0, 2.0, 4.0, 8.0, 16.0])) - np.log(4.0)


def _random_corr_chol(rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(D, D))
    cov = a @ a.T + 0.5 * np.eye(D)
    sd = np.sqrt(np.diag(cov))
    return np.linalg.cholesky(cov / np.outer(sd, sd))


def _dense(sigma, l_u, l_v, mask):
    """Design Z and covariance of one run's observed residuals (domain-major order)."""
    keep = mask.ravel() > 0
    rows = []
    for d in range(D):
        for t in range(T):
            z = np.zeros(2 * D if l_v is not None else D)
            z[d] = 1.0
            if l_v is not None:
                z[D + d] = X[t]
            rows.append(z)
    z = np.array(rows)[keep]
    chol = l_u if l_v is None else np.block([[l_u, np.zeros((D, D))], [np.zeros((D, D)), l_v]])
    noise = np.diag(np.repeat(sigma**2, T)[keep])
    return z, chol, noise + z @ chol @ chol.T @ z.T


def _case(seed: int, slopes: bool, missing: bool):
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.005, 0.03, D)
    l_u = effect_cholesky(rng.uniform(0.005, 0.05, D), _random_corr_chol(rng))
    l_v = effect_cholesky(rng.uniform(0.001, 0.02, D), _random_corr_chol(rng)) if slopes else None
    mask = np.ones((D, T))
    if missing:
        mask[1] = 0.0  # this run never measured domain 1
        mask[2, :2] = 0.0  # nor the first two checkpoints of domain 2
    e = rng.normal(0, 0.03, size=(D, T))
    return sigma, l_u, l_v, mask, e


@pytest.mark.parametrize("slopes", [False, True])
@pytest.mark.parametrize("missing", [False, True])
@pytest.mark.parametrize("family", ["normal", "student_t"])
def test_woodbury_equals_dense_density(slopes, missing, family):
    sigma, l_u, l_v, mask, e = _case(1 + slopes + 2 * missing, slopes, missing)
    sums = RunSums.from_residuals(e, X, mask)
    got = run_log_likelihood(sums, sigma, l_u, l_v, family=family, nu=4.0)
    _, _, cov = _dense(sigma, l_u, l_v, mask)
    resid = e.ravel()[mask.ravel() > 0]
    if family == "normal":
        want = multivariate_normal(np.zeros(len(resid)), cov).logpdf(resid)
    else:
        want = multivariate_t(np.zeros(len(resid)), cov, df=4.0).logpdf(resid)
    assert got.shape == (1,)
    np.testing.assert_allclose(got[0], want, rtol=1e-10)


@pytest.mark.parametrize("slopes", [False, True])
@pytest.mark.parametrize("family", ["normal", "student_t"])
def test_runs_grouped_by_design_give_the_per_run_density_in_numpy_and_pytensor(slopes, family):
    """The model factorises the capacitance matrix once per distinct run design and gathers it
    per run: the same log densities as one factorisation per run (dense reference above), in
    numpy and in the PyTensor graph, with several runs of each of three designs."""
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(5)
    sigma, l_u, l_v, _, _ = _case(11, slopes, False)
    masks = [np.ones((D, T)), np.ones((D, T)), np.ones((D, T))]
    masks[1][1] = 0.0
    masks[2][2, :2] = 0.0
    runs = [RunSums.from_residuals(rng.normal(0, 0.03, (D, T)), X, masks[k % 3]) for k in range(7)]
    sums = RunSums(*(np.concatenate([getattr(r, f) for r in runs]) for f in SUM_FIELDS))
    patterns = RunPatterns.of(sums.n, sums.sx, sums.sxx)
    assert len(patterns.n) == 3 and patterns.index.tolist() == [
        patterns.index[k % 3] for k in range(7)
    ]
    per_run = run_log_likelihood(sums, sigma, l_u, l_v, family=family, nu=4.0)
    grouped = run_log_likelihood(sums, sigma, l_u, l_v, family=family, nu=4.0, patterns=patterns)
    np.testing.assert_allclose(grouped, per_run, rtol=1e-12)
    graph = run_log_likelihood(
        RunSums(*(pt.constant(getattr(sums, f)) for f in SUM_FIELDS)),
        pt.constant(sigma),
        pt.constant(l_u),
        None if l_v is None else pt.constant(l_v),
        family=family,
        nu=4.0,
        math=pt,
        patterns=RunPatterns(
            *(pt.constant(getattr(patterns, f)) for f in ("member", "n", "sx", "sxx"))
        ),
    )
    np.testing.assert_allclose(pytensor.function([], graph)(), per_run, rtol=1e-10)


def test_independent_domains_equal_the_per_curve_likelihood():
    """With R = I the run density is the sum of the per-curve densities of the 0.2 model."""
    from bimix_bayes.bayes.likelihood import curve_log_likelihood

    sigma, _, _, mask, e = _case(7, False, False)
    tau = np.array([0.02, 0.01, 0.03])
    sums = RunSums.from_residuals(e, X, mask)
    got = run_log_likelihood(sums, sigma, effect_cholesky(tau))
    want = curve_log_likelihood(e.sum(1), (e**2).sum(1), T, sigma, tau).sum()
    np.testing.assert_allclose(got[0], want, rtol=1e-12)


def test_batch_dimensions_broadcast():
    """(chain, draw) in front of the parameters and (run, domain) sums give one value each."""
    rng = np.random.default_rng(3)
    runs = [RunSums.from_residuals(rng.normal(0, 0.02, (D, T)), X) for _ in range(4)]
    stacked = RunSums(*(np.concatenate([getattr(r, f) for r in runs]) for f in SUM_FIELDS))
    sigma = rng.uniform(0.01, 0.02, (2, 3, D))
    l_u = effect_cholesky(rng.uniform(0.01, 0.03, (2, 3, D)), _random_corr_chol(rng))
    batched = run_log_likelihood(stacked, sigma, l_u)
    assert batched.shape == (2, 3, 4)
    one = run_log_likelihood(runs[2], sigma[1, 0], l_u[1, 0])
    np.testing.assert_allclose(batched[1, 0, 2], one[0])


@pytest.mark.parametrize("slopes", [False, True])
def test_pytensor_backend_matches_numpy(slopes):
    pt = pytest.importorskip("pytensor.tensor")
    import pytensor

    sigma, l_u, l_v, mask, e = _case(11, slopes, True)
    sums = RunSums.from_residuals(e, X, mask)
    args = [sigma, l_u] + ([l_v] if slopes else [])
    sym = [pt.as_tensor_variable(a) for a in args]
    sym_sums = RunSums(*(pt.as_tensor_variable(getattr(sums, f)) for f in SUM_FIELDS))
    out = run_log_likelihood(sym_sums, *sym[:2], sym[2] if slopes else None, math=pt)
    got = pytensor.function([], out)()
    np.testing.assert_allclose(got, run_log_likelihood(sums, sigma, l_u, l_v), rtol=1e-10)


@pytest.mark.parametrize("slopes", [False, True])
def test_conditional_equals_dense_gaussian_conditioning(slopes):
    sigma, l_u, l_v, mask, e = _case(5, slopes, True)
    sums = RunSums.from_residuals(e, X, mask)
    cond = run_conditional(sums, sigma, l_u, l_v)
    z, chol, cov = _dense(sigma, l_u, l_v, mask)
    resid = e.ravel()[mask.ravel() > 0]
    prior = chol @ chol.T
    gain = prior @ z.T @ np.linalg.inv(cov)
    np.testing.assert_allclose(cond["mean"][0], gain @ resid, atol=1e-12)
    np.testing.assert_allclose(cond["cov"][0], prior - gain @ z @ prior, atol=1e-12)
    # the unobserved domain 1 keeps (through the correlation) a shifted mean, not zero
    assert abs(cond["mean"][0, 1]) > 0


def test_draws_have_the_conditional_moments():
    sigma, l_u, l_v, mask, e = _case(2, True, False)
    cond = run_conditional(RunSums.from_residuals(e, X, mask), sigma, l_u, l_v)
    rep = {
        "mean": np.broadcast_to(cond["mean"], (40_000, *cond["mean"].shape)),
        "cov": cond["cov"],
        "w": None,
    }
    u, scale, v = draw_run_effects(rep, np.random.default_rng(0), D)
    gamma = np.concatenate([u, v], axis=-1)[:, 0]
    np.testing.assert_allclose(
        gamma.mean(0), cond["mean"][0], atol=4 * np.sqrt(np.diag(cond["cov"][0]).max() / 40_000)
    )
    np.testing.assert_allclose(
        np.cov(gamma.T), cond["cov"][0], atol=0.05 * np.abs(cond["cov"][0]).max()
    )
    assert np.all(scale == 1.0)


@pytest.mark.parametrize("n, eta", [(2, 1.0), (3, 2.0), (4, 0.7), (5, 3.0)])
def test_beta_partial_correlations_are_the_lkj_prior(n, eta):
    """sum log Beta(z) - log |d vech(R) / d z| = (eta - 1) log det R + a constant, for any z."""
    from scipy.stats import beta

    from bimix_bayes.bayes.correlated import corr_cholesky, lkj_cpc_shapes

    lower = np.tril_indices(n, -1)
    shapes = lkj_cpc_shapes(n, eta)

    def corr_entries(z):
        chol = corr_cholesky(z, n)
        return (chol @ chol.T)[lower]

    rng = np.random.default_rng(n)
    gaps = []
    for _ in range(4):
        z = rng.uniform(-0.8, 0.8, len(shapes))
        chol = corr_cholesky(z, n)
        corr = chol @ chol.T
        np.testing.assert_allclose(np.diag(corr), 1.0)
        eps = 1e-6
        jac = np.array(
            [
                (corr_entries(z + eps * e) - corr_entries(z - eps * e)) / (2 * eps)
                for e in np.eye(len(z))
            ]
        )
        prior = beta(shapes, shapes).logpdf((z + 1) / 2).sum()
        lkj = (eta - 1) * np.linalg.slogdet(corr)[1]
        gaps.append(prior - np.linalg.slogdet(jac)[1] - lkj)
    np.testing.assert_allclose(gaps, gaps[0], atol=1e-6)


def test_corr_factor_pytensor_matches_numpy():
    pt = pytest.importorskip("pytensor.tensor")
    import pytensor

    from bimix_bayes.bayes.correlated import corr_cholesky

    z = np.array([0.4, -0.7, 0.2, 0.9, -0.3, 0.05])
    sym = corr_cholesky(pt.as_tensor_variable(z), 4, math=pt)
    np.testing.assert_allclose(pytensor.function([], sym)(), corr_cholesky(z, 4))
