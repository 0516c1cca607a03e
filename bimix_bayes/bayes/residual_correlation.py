"""How a new run's offsets move together across domains when the likelihood treats them apart.

With independent run effects (``likelihood.run_correlation = false``, the default among training
domains) each run's offset on domain ``d`` is ``u[d] ~ Normal(0, tau[d]^2)``, independent across
domains. That is a *working* assumption: it keeps the law's mixture coefficients fitted as if
every domain weighed alone (a likelihood with correlated effects weights runs by the inverse of
their covariance, which discounts the direction all domains share: README, "What the model
assumes about runs"). But the fitted runs' offsets do move together (SlimPajama 122M:
least-squares residual correlations -0.58 to +0.88 between domains), and a new run's mean loss
over domains carries that: drawn independently, its 90 % intervals covered 82.8 % of
SlimPajama 122M's new mixtures (``holdout-mixtures:20``, 3 splits).

So a new run's offsets are drawn with the correlation the fitted runs show
(``likelihood.new_run_correlation = "residual"``, the default)::

    u_new = diag(tau) L z,    z ~ Normal(0, I),    L L^T = C

``C`` the residual correlation: per posterior draw, each fitted run's offsets given the data
(their conditional means ``m[j, d]``, the same that continue an observed run) form a run x
domain table; its covariance across runs, averaged over the draws, normalised to a correlation
and shrunk toward the identity by the Ledoit-Wolf intensity of the runs' posterior-mean offsets
(scikit-learn: few runs give a noisy matrix, so it is pulled toward independence). The
conditional means are each domain's offsets shrunk by a factor, which scales their covariance
but not their correlation where every run has the same checkpoints; the factor grows with a
run's checkpoints and shrinks with its noise, so runs of unequal length, and the noise that
falls with the step, pull ``C`` a little toward 0, as the shrinkage does: ``C`` errs on the side
of independence, a plug-in without its own uncertainty. Each domain's own spread stays
``tau[d]`` (forecasts of one domain are unchanged); the mean over domains gets the spread of the
runs' shared luck. An observed run's offsets keep their conditional (the data say where that run
sits; a domain such a run lacks is drawn as a new run's, not conditioned on its other domains).
The law's fit and its log likelihood do not change: PSIS-LOO (``bimix compare``) scores the
working model, with independent offsets, not ``C``; and the parameters' uncertainty along the
direction all domains share stays that of the working model, so small studies stay
under-covered.

Measured (``reports/validation.md``, ``holdout-mixtures``, 4 x 1000 draws, seed 0; 90 %
coverage of the mean over domains of new mixtures, independent -> residual): SlimPajama 122M
bimix 82.8 -> 87.1 %, bimix_cross 77.4 -> 79.1 %, loglinear 86.2 -> 89.1 %; Ye 5Mix 70M
(``:13``) 59.0 -> 59.6 %; the embedded study (``:10``) 66.7 -> 67.0 % (with 10-13 runs the
shrinkage keeps ``C`` near the identity; unshrunk, 65.8 and 70.4 %); coverage of single domains
and the point forecasts unchanged.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> shared = rng.normal(size=(2, 50, 30, 1))  # (chain, draw, run, 1): luck every domain shares
>>> means = shared + 0.5 * rng.normal(size=(2, 50, 30, 3))
>>> C = residual_correlation(means)
>>> C.shape, bool(np.all(np.diag(C) == 1.0)), bool(C[0, 1] > 0.6)
((3, 3), True, True)
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "MIN_RUNS",
    "RESIDUAL_CORRELATION_ATTR",
    "correlated_fresh_offsets",
    "correlation_attr",
    "residual_correlation",
    "stored_residual_correlation",
]

#: The posterior's attribute holding ``C`` (JSON, rows and columns in the posterior's domain
#: order); absent in fits made before it existed or with ``new_run_correlation = "none"``.
RESIDUAL_CORRELATION_ATTR = "new_run_offset_correlation"
#: Fewest runs observed on every domain for ``C`` to be estimated; fewer: independent offsets.
MIN_RUNS = 4


def residual_correlation(means: np.ndarray) -> np.ndarray | None:
    """``C`` from the fitted runs' conditional offset means, shaped (chain, draw, run, domain).

    Runs with a missing domain (NaN) are left out; None when fewer than :data:`MIN_RUNS` runs
    remain or a domain's offsets do not vary.
    """
    means = np.asarray(means, dtype=float)
    complete = ~np.isnan(means).any(axis=(0, 1, 3))
    table = means[:, :, complete, :]
    n_runs = table.shape[2]
    if n_runs < MIN_RUNS or table.shape[-1] < 2:
        return None
    centred = table - table.mean(axis=2, keepdims=True)
    cov = np.einsum("cdri,cdrj->ij", centred, centred) / (
        (n_runs - 1) * table.shape[0] * table.shape[1]
    )
    sd = np.sqrt(np.diag(cov))
    if not np.all(sd > 0):
        return None
    corr = cov / np.outer(sd, sd)
    runs = table.mean(axis=(0, 1))  # posterior-mean offsets: the runs the shrinkage counts
    spread = runs.std(axis=0, ddof=1)
    if not np.all(spread > 0):
        return None
    from sklearn.covariance import ledoit_wolf_shrinkage  # here: 0.3 s, only when fitting

    shrink = float(ledoit_wolf_shrinkage((runs - runs.mean(axis=0)) / spread))
    out = (1.0 - shrink) * corr + shrink * np.eye(len(sd))
    np.fill_diagonal(out, 1.0)
    return out


def stored_residual_correlation(posterior: xr.Dataset) -> np.ndarray | None:
    """``C`` of a fit (:data:`RESIDUAL_CORRELATION_ATTR`), or None when it has none."""
    text = posterior.attrs.get(RESIDUAL_CORRELATION_ATTR)
    if not text:
        return None
    corr = np.asarray(json.loads(text), dtype=float)
    n = posterior.sizes["domain"]
    problem = "" if corr.shape == (n, n) else f"is {corr.shape}, not ({n}, {n})"
    if not problem:
        try:
            np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            problem = "is not positive definite"
        if not (np.allclose(corr, corr.T) and np.allclose(np.diag(corr), 1.0)):
            problem = "is not a correlation matrix (symmetric, unit diagonal)"
    if problem:
        raise ValueError(
            f"the fit's {RESIDUAL_CORRELATION_ATTR} {problem}: the file was changed after the "
            "fit; refit, or delete the attribute for independent offsets"
        )
    return corr


def correlated_fresh_offsets(
    corr: np.ndarray, tau: np.ndarray, n_targets: int, rng: np.random.Generator
) -> np.ndarray:
    """Draws of new runs' offsets ``diag(tau) L z``, shaped (chain, draw, target, domain).

    ``tau`` is (chain, draw, domain); ``corr`` the D x D correlation ``C``.
    """
    chol = np.linalg.cholesky(corr)
    z = rng.standard_normal((*tau.shape[:2], n_targets, tau.shape[-1]))
    return np.einsum("ij,cdtj->cdti", chol, z) * tau[:, :, None, :]


def correlation_attr(corr: np.ndarray | None) -> dict[str, Any]:
    """The posterior attribute that stores ``corr`` (empty when there is none)."""
    if corr is None:
        return {}
    return {RESIDUAL_CORRELATION_ATTR: json.dumps(np.round(corr, 6).tolist())}
