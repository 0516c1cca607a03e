"""A checkpoint's noise is shared by the domains evaluated on it: its correlation across domains.

The likelihood treats the noise of one checkpoint of one run as independent across evaluation
domains (a working model: each domain's curve is integrated out on its own). But every domain of a
checkpoint is evaluated on the same model state, so a run that happens to sit a little ahead of its
curve at a checkpoint sits ahead on most domains. Measured as below, the correlation of two
domains' checkpoint noise is 0.01-0.79 on SlimPajama 122M (mean 0.29). Forecasts of one domain do
not need it; forecasts of the *mean over domains* do: with independent noise the mean's noise
variance is ``1 / D`` of a domain's, with correlation ``rho`` about ``(1 + (D - 1) rho) / D`` of
it, up to four times more with seven domains at 0.5.

Estimate (after sampling, from the posterior mean of every observation's residual): each
checkpoint's residual minus its cell's noise-weighted mean (the cell: one run, at one model size in
a size fit; with per-run slopes, ``likelihood.run_slope``, minus its weighted least-squares line in
the log step instead), whitened by the noise weight ``sqrt(1 / v)``
(:mod:`~bimix_bayes.bayes.noise`), less the mean of those deviations over the runs evaluated at the
same (size, step) on that domain; the correlation of two domains' deviations over the checkpoints
seen on both, where at least :data:`MIN_CHECKPOINTS` degrees of freedom are left (fewer: 0), moved
to the nearest positive definite correlation. The cell's mean (line) takes out the run's offset
(slope), which the run effects already carry: a simulation with offsets correlated 0.9 and noise
0.5 reads 0.5, with slopes correlated 0.9 too the same (without the line, slopes of sd 0.005 turned
a noise correlation of 0.3 into 0.77). The mean over runs at a step takes out what every run shares
there (the law's misfit at that step, a shock of the data order): shared by all runs, it is not
diluted by their number (a misfit of sd 0.001 correlated across domains turned a noise correlation
of 0.3 into 0.44 with 60 runs, 0.46 with 600), and it is no run's noise.

Used by forecasts (``[likelihood] noise_correlation = "residual"``, the default): the noise of
a forecast's domains at one checkpoint of one target is drawn correlated as this matrix, so the
intervals of the mean over domains carry it; each domain's own forecast is unchanged. ``bimix
next`` counts it in a proposed run's covariance, and size fits use it to take the shared noise
out of the run x size luck (:mod:`~bimix_bayes.bayes.run_size_offsets`). Not in the likelihood
(a working model, as for the run effects), hence not in ``bimix compare``'s score of a whole
left-out run either, which keeps the likelihood's independent noise. Under the Student-t
likelihood the correlated normals are scaled by each domain's own run scale, which thins the
correlation a little (by ``E[sqrt W]^2 / E[W]``, 0.85 at ``nu = 5``) where those scales are
drawn apart. Fits without run offsets (``likelihood.run_offset = false``) store none: there the
run's level is part of the noise the fit measures.

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
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bimix_bayes.bayes.residual_correlation import checked_correlation, nearest_correlation

__all__ = [
    "MIN_CHECKPOINTS",
    "NOISE_CORRELATION_ATTR",
    "NOISE_PAIRS_ATTR",
    "checkpoint_table",
    "correlated_normals",
    "noise_correlation",
    "noise_correlation_attr",
    "stored_noise_correlation",
    "stored_noise_pairs",
]

#: The posterior's attribute holding the correlation (JSON, D x D in the posterior's domain
#: order); absent in fits made before it or with ``likelihood.noise_correlation = "none"``.
NOISE_CORRELATION_ATTR = "checkpoint_noise_correlation"
#: Posterior attribute: which pairs of it had checkpoints enough to be estimated (JSON 0/1).
NOISE_PAIRS_ATTR = "checkpoint_noise_pairs"
#: Fewest degrees of freedom a pair's correlation is estimated from: the checkpoints seen on
#: both domains less one per run (its mean) and one per step (what the runs share there).
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
    layout: Any,
    mean_residual: np.ndarray,
    mean_weight: np.ndarray,
    *,
    with_slope: bool = False,
    with_pairs: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """How the checkpoint noise of two domains moves together (D x D, positive definite): the
    correlation of each checkpoint's whitened deviation from its cell's mean (its weighted
    least-squares line in the log step ``with_slope``, a fit with per-run slopes), less what
    every run shares at that step, over the checkpoints seen on both domains (module
    docstring); 0 where a pair has fewer than :data:`MIN_CHECKPOINTS` degrees of freedom left.

    The arguments are those of :func:`checkpoint_table`. ``with_pairs``: also return which
    pairs were estimated (D x D, True on the diagonal), the others being 0 by default.
    """
    frame = checkpoint_table(layout, mean_residual, mean_weight)
    centre = frame["cell_we"] / frame["cell_w"]
    deviation = frame["e"] - centre
    if with_slope:  # the run's own trend, which its slope carries, is not noise
        cells = [frame["curve"], frame["size"]]
        dx = (
            frame["step"]
            - (frame["w"] * frame["step"]).groupby(cells).transform("sum") / frame["cell_w"]
        )
        sxx = (frame["w"] * dx**2).groupby(cells).transform("sum")
        sxe = (frame["w"] * dx * deviation).groupby(cells).transform("sum")
        deviation = deviation - (sxe / sxx.where(sxx > 0)).fillna(0.0) * dx
    frame["deviation"] = deviation * np.sqrt(frame["w"])
    # what every run shares at a step (the law's misfit there, a shock of the data order) is
    # not a run's noise: take each (size, step, domain)'s mean over runs out
    by_step = frame.groupby(["size", "step", "domain"])["deviation"]
    shared = by_step.transform("mean").where(by_step.transform("count") > 1)
    frame["deviation"] = frame["deviation"] - shared
    wide = frame.pivot_table(
        index=["run", "size", "step"], columns="domain", values="deviation", aggfunc="first"
    )
    n_domains = len(layout.domains)
    out = np.eye(n_domains)
    estimated = np.eye(n_domains, dtype=bool)
    keys = wide.index.to_frame(index=False)
    for d, e in combinations([c for c in wide.columns if 0 <= c < n_domains], 2):
        both = (wide[d].notna() & wide[e].notna()).to_numpy()
        cells = keys.loc[both, ["run", "size"]].drop_duplicates().shape[0]
        steps = keys.loc[both, ["size", "step"]].drop_duplicates().shape[0]
        if both.sum() - cells - steps + 1 < MIN_CHECKPOINTS:
            continue  # too little left once each run's and each step's mean are out
        a, b = wide[d].to_numpy()[both], wide[e].to_numpy()[both]
        denom = np.sqrt(np.sum(a**2) * np.sum(b**2))
        if denom > 0:
            out[d, e] = out[e, d] = np.clip(np.sum(a * b) / denom, -1.0, 1.0)
            estimated[d, e] = estimated[e, d] = True
    corr = nearest_correlation(out)
    return (corr, estimated) if with_pairs else corr


def noise_correlation_attr(corr: np.ndarray, estimated: np.ndarray | None = None) -> dict[str, str]:
    """The posterior attributes that store ``corr`` (6 decimals, as the fit file keeps it) and,
    when given, which pairs were estimated (the others are 0 for want of checkpoints)."""
    out = {NOISE_CORRELATION_ATTR: json.dumps(np.round(corr, 6).tolist())}
    if estimated is not None:
        out[NOISE_PAIRS_ATTR] = json.dumps(np.asarray(estimated, dtype=int).tolist())
    return out


def stored_noise_pairs(posterior: xr.Dataset, n_domains: int) -> np.ndarray | None:
    """Which pairs of the stored noise correlation were estimated (D x D booleans), or None
    (fits made before it was stored, or a file whose attribute does not fit)."""
    text = posterior.attrs.get(NOISE_PAIRS_ATTR)
    if not text:
        return None
    pairs = np.asarray(json.loads(text), dtype=bool)
    return pairs if pairs.shape == (n_domains, n_domains) else None


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
    return checked_correlation(text, n_domains, NOISE_CORRELATION_ATTR, remedy)


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
