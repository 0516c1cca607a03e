"""A mixture's luck differs between model sizes: the run x size offsets ``Omega`` of a size fit,
estimated from its residuals (bimix_bayes.bayes.run_size_offsets)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bimix_bayes.bayes.run_size_offsets import (
    RUN_SIZE_ATTR,
    RunSizeOffsets,
    SizeCells,
    run_size_offsets,
    stored_run_size_offsets,
)


def _cells(rng, omega, corr, *, n_runs=30, noise_sd=0.001, mixture_sd=0.02, size_sd=0.01):
    """Cells of an unbalanced design (every run at the smallest size, two thirds at the second,
    one third at the third: 60 cells per domain) with mixture effects, effects every run of a
    size shares, run x size offsets ~ Normal(0, Omega) and noise of unequal variance."""
    n_domains = len(omega)
    chol = np.linalg.cholesky(np.asarray(corr) * np.outer(omega, omega))
    mixture = rng.normal(0, mixture_sd, (n_runs, n_domains))
    shared = rng.normal(0, size_sd, (3, n_domains))
    rows = []
    for j in range(n_runs):
        for k in range(3 if j < n_runs // 3 else 2 if j < 2 * n_runs // 3 else 1):
            b = chol @ rng.standard_normal(n_domains)
            for d in range(n_domains):
                noise_var = (noise_sd * rng.uniform(0.5, 1.5)) ** 2
                value = mixture[j, d] + shared[k, d] + b[d] + rng.normal(0, np.sqrt(noise_var))
                rows.append((j, k, d, value, noise_var))
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
