"""A mixture's luck differs between model sizes: the run x size offset of a size fit.

In a fit with a model-size dimension (``--size-col``) a run id names a mixture, and its runs at
several sizes share one offset per domain (``u[j, d] ~ Normal(0, tau[d]^2)``, integrated out by
the likelihood). But each (mixture, size) is its own training run with its own luck: least
squares per SlimPajama size, the same mixtures matched across sizes, gives offsets that
correlate 0.94-1.00 between two sizes on six domains and 0.74-0.91 on wikipedia; the sd of a
run's offset difference between 680M and 937M is 0.002 (arxiv, book, c4, commoncrawl) to
0.0034-0.005 (stackexchange, wikipedia, github), and those differences correlate across domains
(0.74 on average). Sharing the offset exactly made an observed mixture's forecast at a size it
was not trained at too sure, per domain (90 % coverage of github at 937M's last checkpoint
77.5 %).

So a run at a size has offset ``u[j, d] + b[j, k, d]``::

    b[j, k] ~ Normal(0, Omega),    Omega = diag(omega) R diag(omega)    (D x D)

fresh for every (mixture, size) pair the fit has not seen: a new mixture draws ``u`` and ``b``;
an observed mixture forecast at a new size keeps its conditional ``u``, which pools its sizes
and so already holds (about) the average ``sum_k w_k b[j, k]`` of its luck at them (``w_k`` the
share of its checkpoints at size ``k``), and the luck at the new size differs from that by
``b_new - sum_k w_k b[j, k]``: variance ``(1 + sum_k w_k^2) Omega``, twice ``Omega`` for a
mixture seen at one size (:func:`fresh_offset_factors`). The same variance enters the log
predictive density the backtests score, and a proposed run's covariance in ``bimix next``.
Forecasts at a (mixture, size) pair the fit has seen keep the pooled ``u`` (the pair's own
deviation, visible in its residuals, is not added: at most ``omega``, 0.0007-0.0023 on
SlimPajama). The likelihood keeps the shared offset (a working model, as
:mod:`~bimix_bayes.bayes.residual_correlation` keeps independent domains), and ``Omega`` is
estimated from the fit's residuals:

1. each (mixture j, size k, domain d) cell's residual, averaged over the draws, is averaged over
   its checkpoints with the noise weights ``1 / v`` (:mod:`~bimix_bayes.bayes.noise`):
   ``e[j, k, d]``, with noise variance ``n[j, k, d] = sigma[d]^2 / sum(1 / v)`` (times
   ``E[W] = nu / (nu - 2)`` under the Student-t likelihood);
2. per domain, least squares ``e[j, k] = a[j] + c[k] + r[j, k]``: ``a`` the mixture's offset
   (what the likelihood's ``u`` shares), ``c`` what every run of a size shares (the law's misfit
   at that size, the size error's business); ``r`` the run x size part plus noise;
3. with ``h`` the leverages of that fit, ``E[sum r^2] = sum (1 - h) (omega[d]^2 + n)`` exactly
   (``r = (I - H) e`` with ``H`` the fit's hat matrix, ``I - H`` idempotent), so
   ``omega[d]^2 = (sum r^2 - sum (1 - h) n) / sum (1 - h)`` (0 when negative);
4. the covariance of two domains likewise, ``(sum r_d r_e - rho_n sum (1 - h) sqrt(n_d n_e)) /
   sum (1 - h)`` over the cells seen on both: a checkpoint's noise is shared by the domains
   evaluated on it (the same model state), with correlation ``rho_n`` measured from each
   checkpoint's deviation from its cell's mean, less what the runs share at that step
   (:func:`~bimix_bayes.bayes.checkpoint_noise.noise_correlation`). Left in, it would make
   ``R`` mostly the noise's correlation; taken from the variances alone, it pushed every pair
   to 1. The correlations (clipped to [-1, 1]) are shrunk
   toward their mean (and the mean toward 0) as the residual correlation's are
   (:func:`~bimix_bayes.bayes.residual_correlation.constant_correlation_shrinkage`, over the
   ``r`` table) and moved to the nearest positive definite correlation.

A domain with fewer than :data:`MIN_DEGREES` degrees of freedom (mixtures seen at two sizes or
more, beyond what ``a`` and ``c`` take) gets ``omega = 0`` (no evidence: the shared offset, as
before). Fits without sizes have no ``Omega``.

Measured (``reports/validation.md``, SlimPajama ``holdout-size:937M``): see the README, "Model
size".

Examples
--------
>>> rng = np.random.default_rng(0)
>>> runs, sizes = np.meshgrid(np.arange(40), np.arange(3), indexing="ij")
>>> shared = rng.normal(0, 0.003, size=(40, 3, 1))  # the run x size luck, shared by domains
>>> values = rng.normal(0, 0.02, size=(40, 1, 2)) + shared + rng.normal(0, 0.001, (40, 3, 2))
>>> cells = SizeCells(
...     run=np.repeat(runs.ravel(), 2), size=np.repeat(sizes.ravel(), 2),
...     domain=np.tile([0, 1], 120), value=values.ravel(), noise_var=np.full(240, 0.001**2))
>>> offsets = run_size_offsets(cells, 2)
>>> bool(np.all((offsets.sd > 0.002) & (offsets.sd < 0.0045))), bool(offsets.corr[0, 1] > 0.5)
(True, True)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bimix_bayes.bayes.checkpoint_noise import checkpoint_table
from bimix_bayes.bayes.residual_correlation import (
    constant_correlation_shrinkage,
    nearest_correlation,
)
from bimix_bayes.bayes.sizes import same_size
from bimix_bayes.data.labels import OBSERVED

__all__ = [
    "MIN_DEGREES",
    "RUN_SIZE_ATTR",
    "RunSizeOffsets",
    "SizeCells",
    "fresh_offset_factors",
    "run_size_offsets",
    "size_cells",
    "stored_run_size_offsets",
    "two_way_residuals",
]

#: The posterior's attribute holding ``Omega`` (JSON: ``sd`` per domain and ``correlation``, in
#: the posterior's domain order); absent in fits without sizes, made before it existed, or with
#: ``size.run_size_offset = "none"``.
RUN_SIZE_ATTR = "run_size_offset"
#: Fewest degrees of freedom (cells beyond those the mixture and size effects take) a domain's
#: ``omega`` is estimated from; fewer: 0.
MIN_DEGREES = 4


@dataclass(frozen=True)
class SizeCells:
    """One row per (mixture, size, domain) cell of a size fit: flat arrays of equal length.

    ``run``, ``size``, ``domain``: integer labels; ``value``: the cell's noise-weighted mean
    residual (posterior mean); ``noise_var``: its variance from the checkpoint noise alone.
    """

    run: np.ndarray
    size: np.ndarray
    domain: np.ndarray
    value: np.ndarray
    noise_var: np.ndarray


@dataclass(frozen=True)
class RunSizeOffsets:
    """``Omega = diag(sd) corr diag(sd)``: how a run's offsets move between model sizes.

    Examples
    --------
    >>> omega = RunSizeOffsets(np.array([0.002, 0.004]), np.array([[1.0, 0.5], [0.5, 1.0]]))
    >>> draws = omega.draw((2, 500, 3), np.random.default_rng(0))
    >>> draws.shape, bool(abs(draws[..., 1].std() - 0.004) < 3e-4)
    ((2, 500, 3, 2), True)
    >>> RunSizeOffsets.from_attr(omega.to_attr()[RUN_SIZE_ATTR]) == omega
    True
    """

    sd: np.ndarray
    corr: np.ndarray

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RunSizeOffsets)
            and np.array_equal(self.sd, other.sd)
            and np.array_equal(self.corr, other.corr)
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def covariance(self) -> np.ndarray:
        """``Omega`` (D x D)."""
        return self.corr * np.outer(self.sd, self.sd)

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Draws of ``b``, shaped (*shape, domain)."""
        chol = np.linalg.cholesky(self.corr)
        z = rng.standard_normal((*shape, len(self.sd)))
        return np.einsum("ij,...j->...i", chol, z) * self.sd

    def to_attr(self) -> dict[str, str]:
        """The posterior attribute that stores it (sd to 1e-7 of log loss, correlations to 6
        decimals)."""
        text = json.dumps(
            {"sd": np.round(self.sd, 7).tolist(), "correlation": np.round(self.corr, 6).tolist()}
        )
        return {RUN_SIZE_ATTR: text}

    @classmethod
    def from_attr(cls, text: str) -> RunSizeOffsets:
        """Read :meth:`to_attr`'s text back."""
        stored = json.loads(text)
        return cls(np.asarray(stored["sd"], float), np.asarray(stored["correlation"], float))


def size_cells(
    layout: Any, mean_residual: np.ndarray, mean_weight: np.ndarray, sigma2: np.ndarray
) -> SizeCells:
    """The cells of a size fit's layout (:class:`~bimix_bayes.bayes.likelihood.CurveLayout`)
    from its residuals and noise weights averaged over draws (curve x checkpoint, as
    :func:`~bimix_bayes.bayes.likelihood.curve_residual_sums` gives them) and each domain's
    noise variance ``sigma^2`` (averaged over draws)."""
    frame = checkpoint_table(layout, mean_residual, mean_weight)
    cells = frame.drop_duplicates(["curve", "size"]).sort_values(["curve", "size"])
    domain = cells["domain"].to_numpy()
    weight = cells["cell_w"].to_numpy()
    return SizeCells(
        run=cells["run"].to_numpy(),
        size=pd.factorize(cells["size"], sort=True)[0],
        domain=domain,
        value=cells["cell_we"].to_numpy() / weight,
        noise_var=sigma2[domain] / weight,
    )


def two_way_residuals(
    runs: np.ndarray, sizes: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(r, h)``: residuals and leverages of the least-squares fit ``values = a[run] +
    c[size] + r`` (integer labels from 0), without forming its n x (J + K) design.

    The fit's projection splits into averaging within each mixture (leverage ``1 / n_j``) and
    the projection onto the size indicators with their mixture means removed, ``B~`` (n x K):
    ``r = e~ - U U^T e~`` with ``e~`` the values less their mixture means and ``U`` the left
    singular vectors of ``B~`` with nonzero singular values (numpy's rank tolerance), and
    ``h = 1 / n_j + |u_i|^2`` per row. Cost O(n K^2) instead of the dense pseudo-inverse's
    O(n (J + K)^2): a study of thousands of mixtures at a few sizes stays fast. Why the SVD of
    ``B~`` and not the pseudo-inverse of ``B~^T B~``: the columns of ``B~`` always sum to zero
    (each row's indicators sum to 1), so that Gram matrix is singular, and its pseudo-inverse
    kept the null direction in some roundings (22 mixtures at 3 sizes, every cell seen: an
    eigenvalue of -2e-14 against 22, residuals off by up to 0.009).

    Examples
    --------
    >>> r, h = two_way_residuals(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]),
    ...                          np.array([1.0, 2.0, 3.0, 4.0]))  # additive: nothing left
    >>> np.allclose(r, 0.0), h.round(2).tolist()
    (True, [0.75, 0.75, 0.75, 0.75])
    """
    counts = np.bincount(runs).astype(float)

    def within(a: np.ndarray) -> np.ndarray:  # each column less its mixture's mean
        sums = np.zeros((len(counts), *a.shape[1:]))
        np.add.at(sums, runs, a)
        return a - (sums / counts.reshape(-1, *([1] * (a.ndim - 1))))[runs]

    indicators = np.zeros((len(runs), sizes.max() + 1))
    indicators[np.arange(len(runs)), sizes] = 1.0
    b, e = within(indicators), within(np.asarray(values, dtype=float))
    u, singular, _ = np.linalg.svd(b, full_matrices=False)
    u = u[:, singular > singular.max() * max(b.shape) * np.finfo(float).eps]
    r = e - u @ (u.T @ e)
    h = 1.0 / counts[runs] + np.sum(u**2, axis=1)
    return r, h


def _domain_residuals(cells: SizeCells, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, r, 1 - h)`` of domain ``d``'s two-way fit ``e = a[run] + c[size] + r``."""
    rows = np.flatnonzero(cells.domain == d)
    runs = pd.factorize(cells.run[rows])[0]
    sizes = pd.factorize(cells.size[rows])[0]
    r, h = two_way_residuals(runs, sizes, cells.value[rows])
    return rows, r, np.clip(1.0 - h, 0.0, 1.0)


def run_size_offsets(
    cells: SizeCells, n_domains: int, noise_corr: np.ndarray | None = None
) -> RunSizeOffsets | None:
    """``Omega`` from a size fit's cells (module docstring), the checkpoint noise correlated
    across domains as ``noise_corr``
    (:func:`~bimix_bayes.bayes.checkpoint_noise.noise_correlation`; None: independent); None when
    no domain has :data:`MIN_DEGREES` degrees of freedom (no mixture seen at two sizes, say)."""
    noise_corr = np.eye(n_domains) if noise_corr is None else np.asarray(noise_corr)
    keys = pd.MultiIndex.from_arrays([cells.run, cells.size])
    cell_index, _ = pd.factorize(keys)
    n_cells = cell_index.max() + 1 if len(cell_index) else 0
    table = np.full((n_cells, n_domains), np.nan)  # r per (run, size) cell and domain
    free = np.zeros((n_cells, n_domains))  # 1 - h
    noise_sd = np.zeros((n_cells, n_domains))
    sd = np.zeros(n_domains)
    for d in range(n_domains):
        rows, r, left = _domain_residuals(cells, d) if (cells.domain == d).any() else ([],) * 3
        if len(rows) == 0 or left.sum() < MIN_DEGREES:
            continue
        at = cell_index[rows]
        table[at, d], free[at, d], noise_sd[at, d] = r, left, np.sqrt(cells.noise_var[rows])
        excess = np.sum(r**2) - np.sum(left * cells.noise_var[rows])
        sd[d] = np.sqrt(max(excess, 0.0) / left.sum())
    if not (sd > 0).any():
        return None
    corr = np.eye(n_domains)
    estimated = np.zeros((n_domains, n_domains), dtype=bool)
    for d in range(n_domains):
        for e in range(d + 1, n_domains):
            both = ~np.isnan(table[:, d]) & ~np.isnan(table[:, e])
            left = np.sqrt(free[both, d] * free[both, e])
            if sd[d] == 0 or sd[e] == 0 or left.sum() < MIN_DEGREES:
                continue
            shared_noise = noise_corr[d, e] * np.sum(left * noise_sd[both, d] * noise_sd[both, e])
            cov = (np.sum(table[both, d] * table[both, e]) - shared_noise) / left.sum()
            corr[d, e] = corr[e, d] = np.clip(cov / (sd[d] * sd[e]), -1.0, 1.0)
            estimated[d, e] = estimated[e, d] = True
    if estimated.any():
        keep = sd > 0  # the shrinkage counts the domains with an omega only
        pairs = estimated[np.ix_(keep, keep)]
        entries, mean = constant_correlation_shrinkage(table[:, keep], pairs)
        target = np.where(estimated, (1.0 - mean) * corr[estimated].mean(), 0.0)
        np.fill_diagonal(target, 1.0)
        corr = nearest_correlation((1.0 - entries) * corr + entries * target)
    return RunSizeOffsets(sd, corr)


def fresh_offset_factors(
    data: Any, targets: Sequence[str], sources: Sequence[str], domains: Sequence[str], size: float
) -> np.ndarray:
    """``(target, domain)``: the multiple of ``Omega``'s variance a forecast at ``size`` adds.

    * 0 where the fit has seen the mixture at that size on that domain (its offsets there are
      its own);
    * ``1 + sum_k w_k^2`` for an observed mixture at a size it was not trained at, ``w_k`` the
      share of its checkpoints on the domain at each fitted size ``k``: its conditional offset
      is (about) the ``w``-weighted average of its luck at those sizes, so the luck at the new
      size differs from it by ``b_new - sum_k w_k b_k`` (2 for a mixture seen at one size);
    * 1 for a new mixture, and for an observed one on a domain it has no curve on.
    """
    out = np.ones((len(targets), len(domains)))
    observed = [i for i, src in enumerate(sources) if src == OBSERVED]
    if not observed:
        return out
    obs = data.observations
    at = same_size(obs["size"].to_numpy(dtype=float), size)
    seen = set(zip(obs.loc[at, "run"].astype(str), obs.loc[at, "domain"].astype(str), strict=True))
    counts = obs.groupby([obs["run"].astype(str), obs["domain"].astype(str)])["size"]
    shares = {key: group.value_counts(normalize=True).to_numpy() for key, group in counts}
    for i in observed:
        for j, domain in enumerate(domains):
            key = (str(targets[i]), str(domain))
            if key in seen:
                out[i, j] = 0.0
            elif key in shares:
                out[i, j] = 1.0 + np.sum(shares[key] ** 2)
    return out


def stored_run_size_offsets(posterior: xr.Dataset) -> RunSizeOffsets | None:
    """``Omega`` of a fit (:data:`RUN_SIZE_ATTR`), or None when it has none; a clear error
    when the stored value does not fit the posterior's domains or is not a covariance."""
    text = posterior.attrs.get(RUN_SIZE_ATTR)
    if not text:
        return None
    try:
        offsets = RunSizeOffsets.from_attr(text)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"the fit's {RUN_SIZE_ATTR} cannot be read ({err}): the file was changed after the "
            "fit; refit, or delete the attribute to share each mixture's offsets across sizes"
        ) from err
    n = posterior.sizes["domain"]
    problem = ""
    if offsets.sd.shape != (n,) or offsets.corr.shape != (n, n):
        problem = f"has {offsets.sd.size} domains, not {n}"
    elif not (np.isfinite(offsets.sd).all() and np.isfinite(offsets.corr).all()):
        problem = "has values that are not finite"
    elif (
        (offsets.sd < 0).any()
        or not np.allclose(offsets.corr, offsets.corr.T)
        or not np.allclose(np.diag(offsets.corr), 1.0)
    ):
        problem = "is not a covariance (a negative sd, or not a correlation matrix)"
    else:
        try:
            np.linalg.cholesky(offsets.corr)
        except np.linalg.LinAlgError:
            problem = "has a correlation that is not positive definite"
    if problem:
        raise ValueError(
            f"the fit's {RUN_SIZE_ATTR} {problem}: the file was changed after the fit; refit, "
            "or delete the attribute to share each mixture's offsets across sizes"
        )
    return offsets
