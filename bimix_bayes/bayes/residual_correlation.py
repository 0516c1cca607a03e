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
domain table; its covariance across runs, averaged over the draws, normalised to a correlation.
A run without some domain (a zero share the law drops, a set it was not scored on) counts for
every pair of domains it has: each entry is estimated over the runs seen on both
(pairwise-complete; before, such runs were left out, and designs where few runs cover every
domain fell back to independence: Ye 5Mix 70M has 8 complete runs of 26). With few runs the
entries are noisy, so they are shrunk toward their mean (every pair at the average
correlation) by Ledoit and Wolf's intensity for that target, and the mean toward 0 by its own
estimation noise (:func:`constant_correlation_shrinkage`, from the runs' posterior-mean
offsets, pair by pair). That target keeps what the mean over domains needs, the average
correlation (an average over the pairs, steadier than any one entry), where shrinking toward
the identity pulled it toward independence as well (with 10-13 runs ``C`` stayed near the
identity).

The conditional means are each domain's offsets shrunk by a factor, which scales their
covariance but not their correlation where every run has the same checkpoints; the factor grows
with a run's checkpoints and shrinks with its noise, so runs of unequal length, and the noise
that falls with the step, pull ``C`` a little toward 0: a plug-in without its own uncertainty.
Each domain's own spread stays ``tau[d]`` (forecasts of one domain are unchanged); the mean
over domains gets the spread of the runs' shared luck. An observed run's offsets keep their
conditional (the data say where that run sits; a domain such a run lacks is drawn as a new
run's, not conditioned on its other domains). The law's fit and its log likelihood do not
change (PSIS-LOO, ``bimix compare``, scores a left-out run with ``C``, as forecasts draw a new
one, weighted through the likelihood: :mod:`~bimix_bayes.bayes.compare`); and the parameters'
uncertainty along the direction all domains share stays that of the working model, so small
studies stay under-covered.

Measured (``reports/validation.md``, ``holdout-mixtures``, 4 x 1000 draws, seed 0; 90 %
coverage of the mean over domains of new mixtures): independent offsets -> ``C`` shrunk toward
the identity over complete runs (fd63f90) -> ``C`` pairwise, shrunk toward the constant
correlation (now): SlimPajama 122M bimix 82.8 -> 87.1 -> 87.6 % (Brier 0.179 -> 0.177 ->
0.177), bimix_cross 77.4 -> 79.1 -> 80.6 %, loglinear 86.2 -> 89.1 -> 91.4 %; Ye 5Mix 70M
(``:13``) 59.0 -> 59.6 -> 68.9 %; the embedded study (``:10``) 66.7 -> 67.0 -> 67.0 %;
coverage of single domains and the point forecasts unchanged.

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
    "MIN_EIGENVALUE",
    "MIN_RUNS",
    "RESIDUAL_CORRELATION_ATTR",
    "checked_correlation",
    "constant_correlation_shrinkage",
    "correlated_fresh_offsets",
    "correlation_attr",
    "nearest_correlation",
    "residual_correlation",
    "stored_residual_correlation",
]

#: The posterior's attribute holding ``C`` (JSON, rows and columns in the posterior's domain
#: order); absent in fits made before it existed or with ``new_run_correlation = "none"``.
RESIDUAL_CORRELATION_ATTR = "new_run_offset_correlation"
#: Fewest runs observed on both domains of a pair for its entry of ``C``; fewer: uncorrelated.
MIN_RUNS = 4
#: Smallest eigenvalue of a stored ``C`` (about: restoring the unit diagonal moves it a little):
#: a pairwise estimate that is not positive definite is moved to the nearest matrix with this
#: floor, far enough from 0 that the 6 decimals it is stored with keep it positive definite.
MIN_EIGENVALUE = 1e-3


def residual_correlation(means: np.ndarray) -> np.ndarray | None:
    """``C`` from the fitted runs' conditional offset means, shaped (chain, draw, run, domain).

    A run without some domain (NaN there: a zero share the law cannot score, a set it was not
    evaluated on) still counts for every pair of domains it has: each entry is the correlation
    over the runs observed on both domains (pairwise-complete). The entries are shrunk toward
    their mean, and the mean toward 0, by :func:`constant_correlation_shrinkage` (each entry
    counted with its own runs). A pair shared by fewer than :data:`MIN_RUNS` runs, or a domain
    whose offsets do not vary, is set to 0; None when no pair is left. Pairwise entries need
    not form a positive definite matrix: the nearest one with eigenvalues of at least
    :data:`MIN_EIGENVALUE` is returned (which can move the zeros a little).
    """
    means = np.asarray(means, dtype=float)
    if means.ndim != 4:
        raise ValueError(f"means must be (chain, draw, run, domain), not {means.shape}")
    n_domains = means.shape[-1]
    seen = ~np.isnan(means).any(axis=(0, 1))  # (run, domain): a run's domain is seen or not
    runs = means.mean(axis=(0, 1))  # posterior-mean offsets (NaN: unseen): the shrinkage counts
    corr = np.eye(n_domains)
    estimated = np.zeros((n_domains, n_domains), dtype=bool)
    for i in range(n_domains):
        for j in range(i + 1, n_domains):
            both = seen[:, i] & seen[:, j]
            if both.sum() < MIN_RUNS:
                continue
            pair = means[:, :, both][..., [i, j]]
            centred = pair - pair.mean(axis=2, keepdims=True)
            cov = np.einsum("cdri,cdrj->ij", centred, centred)  # summed over draws and runs
            if not (cov[0, 0] > 0 and cov[1, 1] > 0 and np.ptp(runs[both][:, [i, j]], 0).all()):
                continue
            corr[i, j] = corr[j, i] = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
            estimated[i, j] = estimated[j, i] = True
    if not estimated.any():
        return None
    entries, mean = constant_correlation_shrinkage(np.where(seen, runs, np.nan), estimated)
    target = np.where(estimated, (1.0 - mean) * corr[estimated].mean(), 0.0)
    np.fill_diagonal(target, 1.0)
    return nearest_correlation((1.0 - entries) * corr + entries * target)


def constant_correlation_shrinkage(table: np.ndarray, pairs: np.ndarray) -> tuple[float, float]:
    """Shrinkage intensities for a correlation matrix estimated pair by pair from ``table``
    (run x domain, NaN where a run lacks a domain), over the ``pairs`` (D x D, symmetric) that
    were estimated: ``(entries, mean)``.

    ``entries`` pulls each entry toward the mean correlation: Ledoit and Wolf's intensity for
    the constant-correlation target ("Honey, I shrunk the sample covariance matrix", 2004; their
    ``covCor``), applied to the standardised columns ``x`` with each entry counted over the
    ``n_ij`` runs seen on both domains: ``s_ij = mean_k x_ki x_kj``, ``rbar`` the mean of the
    ``s_ij``; the intensity is ``sum_ij (pi_ij - rbar (t_iij + t_jij) / 2) / n_ij`` over
    ``sum_ij (s_ij - rbar)^2``, clipped to [0, 1], with ``pi_ij = mean_k (x_ki x_kj - s_ij)^2``
    and ``t_iij = mean_k (x_ki^2 - mean_k x_ki^2) (x_ki x_kj - s_ij)``.

    ``mean`` pulls the mean correlation itself toward 0 by the same rule for one number: its
    estimation variance over its square, ``var(rbar) / rbar^2`` clipped to [0, 1], with
    ``var(rbar) = sum_k d_k^2`` and ``d_k`` run ``k``'s part of ``rbar - E rbar``. With one
    pair (two domains) the first has nothing to pull toward and the second is all the
    shrinkage; with many pairs and runs that share their luck it stays near 0.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(200, 4)) + rng.normal(size=(200, 1))  # many runs, shared luck
    >>> entries, mean = constant_correlation_shrinkage(x, ~np.eye(4, dtype=bool))
    >>> bool(mean < 0.05), entries  # a constant correlation: the entries go all the way
    (True, 1.0)
    """
    table = np.asarray(table, dtype=float)
    seen = ~np.isnan(table)
    centred = table - np.nanmean(table, axis=0)
    sd = np.sqrt(np.nanmean(centred**2, axis=0))
    x = np.where(seen, centred / np.where(sd > 0, sd, 1.0), 0.0)
    mask = seen.astype(float)
    counts = mask.T @ mask
    safe = np.maximum(counts, 1.0)
    s = (x.T @ x) / safe
    off = np.asarray(pairs, dtype=bool) & ~np.eye(len(s), dtype=bool) & (counts > 1)
    if not off.any():
        return 1.0, 1.0
    rbar = s[off].mean()
    weights = np.where(off, 1.0 / (off.sum() * safe), 0.0)  # rbar = sum_ij weights_ij s_ij
    products = np.einsum("ki,kj->kij", x, x) - s * np.einsum("ki,kj->kij", mask, mask)
    deviations = np.einsum("kij,ij->k", products, weights)  # run k's part of rbar - E rbar
    mean = 1.0 if rbar == 0 else float(min(1.0, np.sum(deviations**2) / rbar**2))
    pi = ((x**2).T @ (x**2) / safe) - s**2
    sq = (x**2).T @ mask / safe  # mean of x_i^2 over the runs seen on both i and j
    # t[i, j] = mean_k (x_ki^2 - sq_ij)(x_ki x_kj - s_ij) = mean_k x_ki^3 x_kj - sq_ij s_ij
    t = (x**3).T @ x / safe - sq * s
    numerator = np.sum(((pi - rbar * (t + t.T) / 2) / safe)[off])
    denominator = np.sum((s[off] - rbar) ** 2)
    entries = 1.0 if denominator <= 0 else float(np.clip(numerator / denominator, 0.0, 1.0))
    return entries, mean


def nearest_correlation(corr: np.ndarray) -> np.ndarray:
    """``corr`` made positive definite (eigenvalues >= :data:`MIN_EIGENVALUE`), unit diagonal."""
    corr = (corr + corr.T) / 2
    values, vectors = np.linalg.eigh(corr)
    if values.min() < MIN_EIGENVALUE:
        corr = (vectors * np.maximum(values, MIN_EIGENVALUE)) @ vectors.T
        scale = np.sqrt(np.diag(corr))
        corr = corr / np.outer(scale, scale)
    np.fill_diagonal(corr, 1.0)
    return corr


def stored_residual_correlation(posterior: xr.Dataset) -> np.ndarray | None:
    """``C`` of a fit (:data:`RESIDUAL_CORRELATION_ATTR`), or None when it has none."""
    text = posterior.attrs.get(RESIDUAL_CORRELATION_ATTR)
    if not text:
        return None
    return checked_correlation(
        text,
        posterior.sizes["domain"],
        RESIDUAL_CORRELATION_ATTR,
        "delete the attribute for independent offsets",
    )


def checked_correlation(text: str, n: int, name: str, remedy: str) -> np.ndarray:
    """A correlation stored as JSON ``text`` in a fit's attribute ``name``, as an ``n x n``
    array; refused (ValueError naming the attribute and the ``remedy``) unless it is a positive
    definite correlation matrix.

    Examples
    --------
    >>> checked_correlation("[[1, 0.2], [0.2, 1]]", 2, "corr", "refit").tolist()
    [[1.0, 0.2], [0.2, 1.0]]
    """
    try:
        corr = np.asarray(json.loads(text), dtype=float)
    except (ValueError, TypeError):  # JSON that does not parse, or rows of unequal length
        corr, problem = None, "is not a numeric matrix"
    else:
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
            f"the fit's {name} {problem}: the file was changed after the fit; refit, or {remedy}"
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
