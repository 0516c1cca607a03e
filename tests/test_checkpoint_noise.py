"""A checkpoint's noise is shared by the domains evaluated on it: the fit measures how much, and
forecasts of the mean over domains carry it (:mod:`bimix_bayes.bayes.checkpoint_noise`)."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from bimix_bayes.bayes.checkpoint_noise import (
    NOISE_CORRELATION_ATTR,
    NOISE_PAIRS_ATTR,
    correlated_normals,
    noise_correlation,
    noise_correlation_attr,
    stored_noise_correlation,
)
from bimix_bayes.data.labels import ALL_DOMAINS

STEPS = np.geomspace(1_000, 20_000, 8)


@pytest.fixture(scope="module")
def shared_noise(quick_fit, shared_factor_study):
    data = shared_factor_study(0.006, ("run", "step"), STEPS, seed=6, n_runs=14, noise_sd=0.002)
    return data, quick_fit(data)


def _off_diagonal(corr: np.ndarray) -> np.ndarray:
    return corr[~np.eye(len(corr), dtype=bool)]


def test_shared_checkpoint_noise_widens_the_mean_over_domains_only(shared_noise, forecast_log_sd):
    """Checkpoints that move every domain together: the fit stores a correlation well above 0,
    and a forecast of an observed run's mean over domains spreads more than with independent
    noise, while each domain's own spread is unchanged."""
    data, idata = shared_noise
    corr = stored_noise_correlation(idata.posterior, len(data.domains))
    assert _off_diagonal(corr).mean() > 0.5, corr.round(2)
    independent = idata.copy()
    independent.posterior.attrs.pop(NOISE_CORRELATION_ATTR)
    observed = {"runs": list(data.mixtures.index[:3])}
    with_corr = forecast_log_sd(idata, [STEPS[-1]], **observed)
    without = forecast_log_sd(independent, [STEPS[-1]], **observed)
    for domain in data.domains:
        assert with_corr[domain] == pytest.approx(without[domain], rel=0.1), domain
    assert with_corr[ALL_DOMAINS] > 1.2 * without[ALL_DOMAINS]


def test_independent_noise_reads_near_zero_and_none_stores_nothing(quick_fit, shared_factor_study):
    data = shared_factor_study(0.0, ("run", "step"), STEPS, seed=6, n_runs=14, noise_sd=0.002)
    corr = stored_noise_correlation(quick_fit(data).posterior, len(data.domains))
    assert abs(_off_diagonal(corr).mean()) < 0.15, corr.round(2)
    off = quick_fit(data, {"likelihood": {"noise_correlation": "none"}})
    assert NOISE_CORRELATION_ATTR not in off.posterior.attrs
    # without run offsets the run's level is part of the noise sigma measures: nothing stored
    no_offsets = quick_fit(data, {"likelihood": {"run_offset": False}})
    assert NOISE_CORRELATION_ATTR not in no_offsets.posterior.attrs


def test_a_saved_fit_keeps_its_noise_correlation_and_the_summary_says_it(
    shared_noise, tmp_path, capsys
):
    from bimix_bayes.bayes.persistence import load_fit, save_fit
    from bimix_bayes.cli.app import main

    data, idata = shared_noise
    path = save_fit(idata, tmp_path / "fit.nc")
    stored = stored_noise_correlation(idata.posterior, len(data.domains))
    loaded = stored_noise_correlation(load_fit(path).posterior, len(data.domains))
    np.testing.assert_allclose(loaded, stored)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["summary", str(path), "--bootstrap", "0", "-q"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "checkpoint's noise moves together" in ln)
    assert f"mean correlation {_off_diagonal(stored).mean():.2f}" in line


def _layout(residual: np.ndarray) -> SimpleNamespace:
    """A layout without sizes over ``residual`` (run, step, domain): one curve per (run, domain)."""
    n_runs, n_steps, n_domains = residual.shape
    rect = residual.transpose(0, 2, 1).reshape(n_runs * n_domains, n_steps)
    return SimpleNamespace(
        mask=np.ones_like(rect),
        curve_run=np.repeat(np.arange(n_runs), n_domains),
        curve_domain=np.tile(np.arange(n_domains), n_runs),
        x=np.tile(np.log(np.arange(1.0, n_steps + 1)), (len(rect), 1)),
        z=None,
        has_sizes=False,
        domains=tuple(f"d{i}" for i in range(n_domains)),
    ), rect


def _equicorrelated(rng, sd: float, rho: float, shape: tuple[int, ...]) -> np.ndarray:
    """Normal draws of ``shape + (3,)`` with sd ``sd``, correlated ``rho`` across the last axis."""
    return rng.multivariate_normal([0, 0, 0], sd**2 * ((1 - rho) * np.eye(3) + rho), shape)


RHO = 0.5


@pytest.mark.parametrize("case", ["offsets", "slopes", "step shocks", "uneven noise"])
def test_the_estimate_reads_the_checkpoint_noise_alone(case):
    """Checkpoint noise correlated 0.5 across three domains, 60 runs x 8 checkpoints, beside
    what must not pass for it: run offsets correlated 0.9 (each run's mean taken out), run
    slopes correlated 0.9 (each run's line, in a fit with slopes), a shock per (step, domain)
    shared by every run and correlated 0.9 (each step's mean over runs), early checkpoints of
    one domain eight times noisier (whitened by the noise weights). The naive estimate (no
    line, no weights) is off where the case needs it."""
    rng = np.random.default_rng(2)
    n_runs, n_steps = 60, 8
    scale = np.ones((1, n_steps, 3))
    if case == "uneven noise":
        scale[0, :2, 0] = [8.0, 4.0]
    residual = _equicorrelated(rng, 0.003, RHO, (n_runs, n_steps)) * scale
    layout, _ = _layout(residual)
    x = layout.x[0]
    if case == "offsets":
        residual = residual + _equicorrelated(rng, 0.02, 0.9, (n_runs,))[:, None, :]
    if case == "slopes":
        slopes = _equicorrelated(rng, 0.005, 0.9, (n_runs,))[:, None, :]
        residual = residual + slopes * (x - x.mean())[None, :, None]
    if case == "step shocks":
        residual = residual + _equicorrelated(rng, 0.003, 0.9, (n_steps,))[None, :, :]
    layout, rect = _layout(residual)
    weight = 1.0 / scale[0].T[layout.curve_domain] ** 2  # (curve, checkpoint)
    corr = noise_correlation(layout, rect, weight, with_slope=case == "slopes")
    assert np.allclose(_off_diagonal(corr), RHO, atol=0.08), corr.round(2)
    assert np.allclose(np.diag(corr), 1.0)
    if case == "slopes":
        naive = noise_correlation(layout, rect, weight)
        assert _off_diagonal(naive).mean() > RHO + 0.2, naive.round(2)
    if case == "uneven noise":
        naive = noise_correlation(layout, rect, np.ones_like(rect))
        assert _off_diagonal(naive)[:2].mean() < RHO - 0.1, naive.round(2)  # pairs with d0


def test_pairs_with_too_few_degrees_of_freedom_stay_independent_and_the_matrix_valid():
    """3 runs x 3 checkpoints: 9 seen on both, less 3 run means and 3 step means, plus 1: 4
    degrees of freedom, fewer than needed; 4 runs x 3 checkpoints leave 6, enough."""
    rng = np.random.default_rng(3)
    shared = rng.normal(0, 0.003, (4, 3, 1))  # all three domains alike: correlation near 1
    layout, rect = _layout(shared[:3] + rng.normal(0, 0.0003, (3, 3, 3)))
    corr = noise_correlation(layout, rect, np.ones_like(rect))
    assert np.allclose(corr, np.eye(3))
    np.linalg.cholesky(corr)
    layout, rect = _layout(shared + rng.normal(0, 0.0003, (4, 3, 3)))
    assert _off_diagonal(noise_correlation(layout, rect, np.ones_like(rect))).min() > 0.9


def test_a_broken_stored_matrix_is_refused_with_what_to_do():
    attrs = {NOISE_CORRELATION_ATTR: json.dumps([[1.0, 1.5], [1.5, 1.0]])}
    with pytest.raises(ValueError, match=rf"{NOISE_CORRELATION_ATTR} is not positive definite.*"):
        stored_noise_correlation(xr.Dataset(attrs=attrs), 2)
    for text in ("[[1, 0.2], [0.2]]", "not json"):
        with pytest.raises(ValueError, match=rf"{NOISE_CORRELATION_ATTR} is not a numeric matrix"):
            stored_noise_correlation(xr.Dataset(attrs={NOISE_CORRELATION_ATTR: text}), 2)
    with pytest.raises(ValueError, match=r"is \(2, 2\), not \(3, 3\).*refit"):
        stored_noise_correlation(xr.Dataset(attrs=noise_correlation_attr(np.eye(2))), 3)


def test_correlated_normals_keep_unit_variance_and_the_asked_correlation():
    corr = np.array([[1.0, -0.4, 0.2], [-0.4, 1.0, 0.5], [0.2, 0.5, 1.0]])
    z = correlated_normals(np.random.default_rng(0), (4, 20_000, 3), corr).reshape(-1, 3)
    np.testing.assert_allclose(np.corrcoef(z.T), corr, atol=0.02)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=0.02)
    plain = correlated_normals(np.random.default_rng(0), (5, 3), None)
    np.testing.assert_array_equal(plain, np.random.default_rng(0).standard_normal((5, 3)))


def test_pairs_without_shared_checkpoints_are_marked_and_left_out_of_the_summary_mean():
    """A domain evaluated on one run only cannot be paired (too few checkpoints once each run's
    and each step's mean are out): the pair is stored as not estimated, and the summary's mean
    correlation is over the estimated pairs (it averaged in their zeros)."""
    from bimix_bayes.cli.bayes import _noise_correlation_note

    rng = np.random.default_rng(3)
    residual = _equicorrelated(rng, 0.003, 0.8, (40, 8))
    layout, rect = _layout(residual)
    rare = (layout.curve_domain == 2) & (layout.curve_run >= 1)
    layout.mask[rare] = 0.0
    corr, estimated = noise_correlation(layout, rect, np.ones_like(rect), with_pairs=True)
    assert estimated.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    assert corr[0, 1] > 0.6 and abs(corr[0, 2]) < 0.05
    post = xr.Dataset(coords={"domain": list(layout.domains)})
    post.attrs.update(noise_correlation_attr(corr, estimated))
    note = _noise_correlation_note(post)
    assert f"mean correlation {corr[0, 1]:.2f}" in note and "2 of 3 pairs" in note
    post.attrs.pop(NOISE_PAIRS_ATTR)  # a fit saved before the pairs were stored: all pairs
    assert f"mean correlation {_off_diagonal(corr).mean():.2f}" in _noise_correlation_note(post)
