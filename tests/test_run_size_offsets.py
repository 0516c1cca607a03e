"""A mixture's luck differs between model sizes: the run x size offsets ``Omega`` of a size fit,
estimated from its residuals (bimix_bayes.bayes.run_size_offsets)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bimix_bayes.bayes.checkpoint_noise import noise_correlation
from bimix_bayes.bayes.run_size_offsets import (
    RUN_SIZE_ATTR,
    RunSizeOffsets,
    SizeCells,
    fresh_offset_factors,
    run_size_offsets,
    size_cells,
    stored_run_size_offsets,
    two_way_residuals,
)


def _cells(
    rng, omega, corr, *, n_runs=30, noise_sd=0.001, mixture_sd=0.02, size_sd=0.01, noise_corr=None
):
    """Cells of an unbalanced design (every run at the smallest size, two thirds at the second,
    one third at the third: 60 cells per domain) with mixture effects, effects every run of a
    size shares, run x size offsets ~ Normal(0, Omega) and noise of unequal variance,
    correlated across domains as ``noise_corr`` (default: independent)."""
    n_domains = len(omega)
    chol = np.linalg.cholesky(np.asarray(corr) * np.outer(omega, omega))
    noise_chol = np.linalg.cholesky(np.eye(n_domains) if noise_corr is None else noise_corr)
    mixture = rng.normal(0, mixture_sd, (n_runs, n_domains))
    shared = rng.normal(0, size_sd, (3, n_domains))
    rows = []
    for j in range(n_runs):
        for k in range(3 if j < n_runs // 3 else 2 if j < 2 * n_runs // 3 else 1):
            b = chol @ rng.standard_normal(n_domains)
            sd = noise_sd * rng.uniform(0.5, 1.5, n_domains)
            noise = sd * (noise_chol @ rng.standard_normal(n_domains))
            for d in range(n_domains):
                value = mixture[j, d] + shared[k, d] + b[d] + noise[d]
                rows.append((j, k, d, value, sd[d] ** 2))
    run, size, domain, value, noise_var = map(np.array, zip(*rows, strict=True))
    return SizeCells(run, size, domain, value, noise_var)


def test_the_run_x_size_variance_is_unbiased_with_the_noise_taken_out():
    """The moment estimator ``(sum r^2 - sum (1 - h) n) / sum (1 - h)`` is exactly unbiased for
    ``omega^2`` under unequal noise and an unbalanced design: its mean over 300 simulated
    studies lies within 4 % of the truth, while the noise (about as large as omega on the
    first domain) would inflate the raw variance of the residuals by half."""
    rng = np.random.default_rng(0)
    omega = np.array([0.001, 0.003])
    estimates = np.array(
        [run_size_offsets(_cells(rng, omega, np.eye(2)), 2).sd ** 2 for _ in range(300)]
    )
    assert np.allclose(estimates.mean(axis=0), omega**2, rtol=0.04), estimates.mean(0) / omega**2


def test_shared_run_x_size_luck_is_found_and_independent_luck_is_not():
    rng = np.random.default_rng(1)
    omega = np.array([0.003, 0.004, 0.002])
    together = run_size_offsets(_cells(rng, omega, np.full((3, 3), 0.8) + 0.2 * np.eye(3)), 3)
    apart = run_size_offsets(_cells(rng, omega, np.eye(3)), 3)
    off = ~np.eye(3, dtype=bool)
    assert together.corr[off].min() > 0.5, together.corr
    assert np.abs(apart.corr[off]).max() < 0.3, apart.corr
    assert np.allclose(together.sd, omega, rtol=0.35), together.sd
    np.linalg.cholesky(together.corr)  # a valid correlation matrix


@pytest.mark.parametrize(("luck", "noise"), [(0.9, 0.0), (0.0, 0.9), (0.6, 0.6)])
def test_the_correlation_is_the_lucks_once_the_shared_noise_is_taken_out(luck, noise):
    """A checkpoint's noise is shared by the domains evaluated on it: the residuals' own
    correlation mixes the luck's and the noise's (with noise as large as the luck, 0.9 / 0
    reads about 0.3, 0 / 0.9 about 0.6); given the noise's correlation, the estimate is the
    luck's (mean over 40 simulated studies of 200 mixtures, within 0.12)."""
    rng = np.random.default_rng(4)
    omega = np.array([0.0015, 0.0015])
    luck_corr, noise_corr = ([[1.0, c], [c, 1.0]] for c in (luck, noise))
    estimates = [
        run_size_offsets(
            _cells(rng, omega, luck_corr, n_runs=200, noise_sd=0.002, noise_corr=noise_corr),
            2,
            noise_corr=np.asarray(noise_corr),
        ).corr[0, 1]
        for _ in range(40)
    ]
    assert abs(np.mean(estimates) - luck) < 0.12, (np.mean(estimates), luck)


def test_noise_correlation_and_cells_from_a_layout():
    """From the residuals of a size fit's layout: each (mixture, size) cell's noise-weighted
    mean and noise variance, and the correlation of the checkpoints' deviations from their cell
    mean across domains."""
    from types import SimpleNamespace

    rng = np.random.default_rng(5)
    n_runs, n_sizes, n_steps, rho = 40, 2, 6, 0.7
    chol = np.linalg.cholesky([[1.0, rho], [rho, 1.0]])
    noise = np.einsum("ij,rksj->rksi", chol, rng.standard_normal((n_runs, n_sizes, n_steps, 2)))
    luck = rng.normal(0, 0.01, (n_runs, n_sizes, 1, 2))
    residual = 0.002 * noise + luck  # (run, size, step, domain)
    # curves are (run, domain) rows holding both sizes' checkpoints, as in a size fit
    curve_run, curve_domain = np.repeat(np.arange(n_runs), 2), np.tile([0, 1], n_runs)
    rect = residual.transpose(0, 3, 1, 2).reshape(2 * n_runs, n_sizes * n_steps)
    z = np.tile(np.repeat([-0.5, 0.5], n_steps), (2 * n_runs, 1))
    x = np.tile(np.tile(np.log(np.arange(1.0, n_steps + 1)), n_sizes), (2 * n_runs, 1))
    weight = np.tile(np.tile([0.25, 1, 1, 1, 1, 1], n_sizes), (2 * n_runs, 1))
    layout = SimpleNamespace(
        mask=np.ones_like(rect), curve_run=curve_run, curve_domain=curve_domain, z=z, x=x,
        domains=("web", "code"), has_sizes=True,
    )  # fmt: skip
    corr = noise_correlation(layout, rect, weight)
    assert abs(corr[0, 1] - rho) < 0.08 and corr[0, 0] == 1.0, corr
    cells = size_cells(layout, rect, weight, np.array([4e-6, 9e-6]))
    assert len(cells.value) == n_runs * n_sizes * 2
    first = (cells.run == 3) & (cells.size == 1) & (cells.domain == 1)
    w = weight[0, :n_steps]
    expected = np.sum(w * residual[3, 1, :, 1]) / w.sum()
    assert np.isclose(cells.value[first][0], expected)
    assert np.isclose(cells.noise_var[first][0], 9e-6 / w.sum())


def test_how_much_of_omega_each_forecast_carries():
    """0 at a (mixture, size) pair the fit has seen; 1 + sum w_k^2 for an observed mixture at
    a new size (2 when seen at one size, 4/3 at three with equal checkpoints); 1 for a new
    mixture and where an observed one has no curve."""
    from types import SimpleNamespace

    import pandas as pd

    rows = [("one", 1e8, "web"), ("one", 1e8, "code")]
    rows += [("three", size, "web") for size in (1e8, 2e8, 4e8)]
    obs = pd.DataFrame(
        [
            {"run": run, "size": size, "domain": dom, "step": step, "loss": 3.0}
            for run, size, dom in rows
            for step in (1e3, 2e3)
        ]
    )
    data = SimpleNamespace(observations=obs)  # all it reads of the fitted data
    targets, sources = ["one", "three", "fresh"], ["observed run", "observed run", "new mixture"]
    at_new = fresh_offset_factors(data, targets, sources, ["web", "code"], 8e8)
    np.testing.assert_allclose(at_new, [[2.0, 2.0], [4 / 3, 1.0], [1.0, 1.0]])
    at_fitted = fresh_offset_factors(data, targets, sources, ["web", "code"], 1.0004e8)
    np.testing.assert_allclose(at_fitted, [[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def test_noise_alone_gives_run_x_size_offsets_far_below_the_noise():
    """Cells that differ between sizes by checkpoint noise only (sd 0.0015-0.0045 per cell
    mean): the raw residual sd is the noise's; with the noise taken out, what is left is the
    estimator's own scatter (sd of omega^2 about 6e-7 with 600 mixtures), under half of it."""
    rng = np.random.default_rng(2)
    cells = _cells(rng, np.zeros(3) + 1e-9, np.eye(3), n_runs=600, noise_sd=0.003)
    offsets = run_size_offsets(cells, 3)
    assert offsets is None or offsets.sd.max() < 0.0015, offsets


def test_without_a_mixture_at_two_sizes_there_is_nothing_to_estimate():
    cells = SizeCells(
        run=np.arange(8),
        size=np.arange(8) % 2,
        domain=np.zeros(8, dtype=int),
        value=np.linspace(0, 0.01, 8),
        noise_var=np.full(8, 1e-6),
    )
    assert run_size_offsets(cells, 1) is None


def test_a_domain_without_enough_cells_keeps_its_offsets_shared_across_sizes():
    rng = np.random.default_rng(3)
    cells = _cells(rng, np.array([0.003, 0.003]), np.eye(2))
    keep = (cells.domain == 0) | (cells.run < 2)  # domain 1: two mixtures (2 degrees)
    few = SizeCells(*(getattr(cells, f)[keep] for f in SizeCells.__dataclass_fields__))
    offsets = run_size_offsets(few, 2)
    assert offsets.sd[0] > 0.001 and offsets.sd[1] == 0.0
    assert offsets.corr[0, 1] == 0.0


def test_stored_offsets_round_trip_and_a_changed_file_is_refused():
    offsets = RunSizeOffsets(np.array([0.0012345, 0.002]), np.array([[1.0, 0.4], [0.4, 1.0]]))
    post = xr.Dataset(coords={"domain": ["a", "b"]}, attrs=offsets.to_attr())
    assert stored_run_size_offsets(post) == offsets
    assert stored_run_size_offsets(xr.Dataset(coords={"domain": ["a", "b"]})) is None
    broken = RunSizeOffsets(np.array([0.001, 0.002]), np.array([[1.0, 1.5], [1.5, 1.0]]))
    post.attrs = broken.to_attr()
    with pytest.raises(ValueError, match=f"{RUN_SIZE_ATTR} has a correlation that is not"):
        stored_run_size_offsets(post)
    post = xr.Dataset(coords={"domain": ["a", "b", "c"]}, attrs=offsets.to_attr())
    with pytest.raises(ValueError, match="has 2 domains, not 3"):
        stored_run_size_offsets(post)
    post = xr.Dataset(coords={"domain": ["a", "b"]}, attrs={RUN_SIZE_ATTR: '{"sd": [NaN, 0.1]'})
    with pytest.raises(ValueError, match="cannot be read"):
        stored_run_size_offsets(post)
    nan = RunSizeOffsets(np.array([np.nan, 0.002]), np.eye(2))
    post = xr.Dataset(coords={"domain": ["a", "b"]}, attrs=nan.to_attr())
    with pytest.raises(ValueError, match="not finite"):
        stored_run_size_offsets(post)


@settings(max_examples=60, deadline=None)
@given(
    n_runs=st.integers(2, 30),
    n_sizes=st.integers(1, 4),
    keep=st.floats(0.3, 1.0),
    seed=st.integers(0, 10_000),
)
# every cell seen: the size indicators' Gram matrix is singular, and its pseudo-inverse kept the
# null direction here (residuals off by 0.009 before the SVD of the centred indicators)
@example(n_runs=22, n_sizes=3, keep=1.0, seed=0)
def test_two_way_residuals_match_the_dense_least_squares_fit(n_runs, n_sizes, keep, seed):
    """The residuals and leverages of the mixture + size fit, computed without its design
    matrix, equal the dense pseudo-inverse's on unbalanced designs (mixtures seen at some sizes
    only, some at one), to 1e-9."""
    rng = np.random.default_rng(seed)
    pairs = [(j, k) for j in range(n_runs) for k in range(n_sizes) if rng.random() < keep]
    pairs += [(j, 0) for j in range(n_runs) if all(p[0] != j for p in pairs)]  # every run once
    runs, sizes = (np.array(a) for a in zip(*pairs, strict=True))
    sizes = np.unique(sizes, return_inverse=True)[1]
    values = rng.normal(size=len(runs))
    design = np.zeros((len(runs), n_runs + sizes.max() + 1))
    design[np.arange(len(runs)), runs] = 1.0
    design[np.arange(len(runs)), n_runs + sizes] = 1.0
    pinv = np.linalg.pinv(design)
    r, h = two_way_residuals(runs, sizes, values)
    np.testing.assert_allclose(r, values - design @ (pinv @ values), atol=1e-9)
    np.testing.assert_allclose(h, np.einsum("ij,ji->i", design, pinv), atol=1e-9)
