"""A checkpoint's noise is shared by the domains evaluated on it: its correlation across domains.

The likelihood treats the noise of one checkpoint of one run as independent across evaluation
domains (a working model: each domain's curve is integrated out on its own). But every domain
of a checkpoint is evaluated on the same model state, so a run that happens to sit a little
ahead of its curve at a checkpoint sits ahead on most domains. Measured as below, the
correlation of two domains' checkpoint noise is 0.14-0.84 on SlimPajama's sizes. Forecasts of
one domain do not need it; forecasts of the *mean over domains* do: with independent noise the
mean's noise variance is ``1 / D`` of a domain's, with correlation ``rho`` about
``(1 + (D - 1) rho) / D`` of it, up to four times more with seven domains at 0.5.

Estimate (after sampling, from the posterior mean of every observation's residual): each
checkpoint's residual minus its cell's noise-weighted mean (the cell: one run, at one model
size in a size fit), whitened by the noise weight ``sqrt(1 / v)``
(:mod:`~bimix_bayes.bayes.noise`); the correlation of two domains' deviations over the
checkpoints seen on both (the same run, size and step), at least :data:`MIN_CHECKPOINTS` of
them (fewer: 0), moved to the nearest positive definite correlation. The cell mean takes out
the run's offset, which the run effects already carry. What every run shares at a step (the
law's misfit there) is left in the deviations; with many runs per step it is a small part of
them.

Used by forecasts (``[likelihood] noise_correlation = "residual"``, the default): the noise of
a forecast's domains at one checkpoint of one target is drawn correlated as this matrix, so the
intervals of the mean over domains carry it; each domain's own forecast is unchanged. Size
fits also use it to take the shared noise out of the run x size luck
(:mod:`~bimix_bayes.bayes.run_size_offsets`).

Examples
--------
>>> corr = np.array([[1.0, 0.5], [0.5, 1.0]])
>>> stored_noise_correlation(xr.Dataset(attrs=noise_correlation_attr(corr)), 2).tolist()
[[1.0, 0.5], [0.5, 1.0]]
>>> stored_noise_correlation(xr.Dataset(), 2) is None  # a fit made before it: independent
True
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bimix_bayes.bayes.residual_correlation import checked_correlation, nearest_correlation

__all__ = [
    "MIN_CHECKPOINTS",
    "NOISE_CORRELATION_ATTR",
    "checkpoint_table",
    "correlated_normals",
    "noise_correlation",
    "noise_correlation_attr",
    "stored_noise_correlation",
]

#: The posterior's attribute holding the correlation (JSON, D x D in the posterior's domain
#: order); absent in fits made before it or with ``likelihood.noise_correlation = "none"``.
NOISE_CORRELATION_ATTR = "checkpoint_noise_correlation"
#: Fewest checkpoints seen on both domains that a pair's correlation is estimated from.
MIN_CHECKPOINTS = 5


def checkpoint_table(
    layout: Any, mean_residual: np.ndarray, mean_weight: np.ndarray
) -> pd.DataFrame:
    """One row per observed checkpoint of a layout: its curve, run, domain, size (0 without
    sizes) and step (rounded, to group on), residual ``e`` and noise weight ``w``, and its
    (curve, size) cell's sums ``cell_we = sum(w e)`` and ``cell_w = sum(w)``.

    ``mean_residual`` and ``mean_weight`` are (curve, checkpoint) arrays of the layout's shape
    (:func:`~bimix_bayes.bayes.likelihood.curve_residual_sums` with ``cell_means``).
    """
    rows, cols = np.nonzero(layout.mask > 0)
    weight = mean_weight[rows, cols]
    size = np.round(layout.z[rows, cols], 9) if layout.has_sizes else np.zeros(len(rows))
    frame = pd.DataFrame(
        {
            "curve": rows,
            "run": layout.curve_run[rows],
            "domain": layout.curve_domain[rows],
            "size": size,
            "step": np.round(layout.x[rows, cols], 9),
            "e": mean_residual[rows, cols],
            "w": weight,
            "we": weight * mean_residual[rows, cols],
        }
    )
    sums = frame.groupby(["curve", "size"])[["we", "w"]].transform("sum")
    return frame.assign(cell_we=sums["we"], cell_w=sums["w"])


def noise_correlation(
    layout: Any, mean_residual: np.ndarray, mean_weight: np.ndarray
) -> np.ndarray:
    """How the checkpoint noise of two domains moves together (D x D, positive definite): the
    correlation of each checkpoint's whitened deviation from its cell's mean over the
    checkpoints seen on both domains (module docstring); 0 where a pair shares fewer than
    :data:`MIN_CHECKPOINTS`.

    The arguments are those of :func:`checkpoint_table`.
    """
    frame = checkpoint_table(layout, mean_residual, mean_weight)
    frame["deviation"] = (frame["e"] - frame["cell_we"] / frame["cell_w"]) * np.sqrt(frame["w"])
    wide = frame.pivot_table(
        index=["run", "size", "step"], columns="domain", values="deviation", aggfunc="first"
    )
    n_domains = len(layout.domains)
    corr = wide.corr(min_periods=MIN_CHECKPOINTS).reindex(
        index=range(n_domains), columns=range(n_domains)
    )
    out = np.nan_to_num(corr.to_numpy(), nan=0.0)
    np.fill_diagonal(out, 1.0)
    return nearest_correlation(out)


def noise_correlation_attr(corr: np.ndarray) -> dict[str, str]:
    """The posterior attribute that stores ``corr`` (6 decimals, as the fit file keeps it)."""
    return {NOISE_CORRELATION_ATTR: json.dumps(np.round(corr, 6).tolist())}


def stored_noise_correlation(posterior: xr.Dataset, n_domains: int) -> np.ndarray | None:
    """The fit's checkpoint-noise correlation, or None when it has none (independent noise).

    Raises
    ------
    ValueError
        When the stored matrix is not a D x D positive definite correlation.
    """
    text = posterior.attrs.get(NOISE_CORRELATION_ATTR)
    if not text:
        return None
    remedy = "delete the attribute for noise independent across domains"
    return checked_correlation(json.loads(text), n_domains, NOISE_CORRELATION_ATTR, remedy)


def correlated_normals(
    rng: np.random.Generator, shape: tuple[int, ...], corr: np.ndarray | None
) -> np.ndarray:
    """Standard normals of ``shape`` whose last axis (the domains) is correlated as ``corr``
    (independent when None).

    Examples
    --------
    >>> z = correlated_normals(np.random.default_rng(0), (20000, 2), np.array([[1, .6], [.6, 1]]))
    >>> round(float(np.corrcoef(z.T)[0, 1]), 1), round(float(z.std()), 1)
    (0.6, 1.0)
    """
    z = rng.standard_normal(shape)
    if corr is None:
        return z
    return z @ np.linalg.cholesky(corr).T
