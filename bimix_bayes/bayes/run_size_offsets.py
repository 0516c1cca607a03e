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

fresh for every (mixture, size) pair the fit has not seen: an observed mixture forecast at a
new size keeps its conditional ``u`` and draws ``b``; a new mixture draws both. The likelihood
keeps the shared offset (a working model, as :mod:`~bimix_bayes.bayes.residual_correlation`
keeps independent domains), and ``Omega`` is estimated from the fit's residuals:

1. each (mixture j, size k, domain d) cell's residual, averaged over the draws, is averaged over
   its checkpoints with the noise weights ``1 / v`` (:mod:`~bimix_bayes.bayes.noise`):
   ``e[j, k, d]``, with noise variance ``n[j, k, d] = sigma[d]^2 / sum(1 / v)``;
2. per domain, least squares ``e[j, k] = a[j] + c[k] + r[j, k]``: ``a`` the mixture's offset
   (what the likelihood's ``u`` shares), ``c`` what every run of a size shares (the law's misfit
   at that size, the size error's business); ``r`` the run x size part plus noise;
3. with ``h`` the leverages of that fit, ``E[sum r^2] = sum (1 - h) (omega[d]^2 + n)`` exactly
   (``r = (I - H) e`` with ``H`` the fit's hat matrix, ``I - H`` idempotent), so
   ``omega[d]^2 = (sum r^2 - sum (1 - h) n) / sum (1 - h)`` (0 when negative);
4. the correlation of two domains is that of their ``r`` over the cells seen on both, noise
   included: a checkpoint's noise is shared by the domains evaluated on it (the same model
   state), so removing the noise from the variances alone would overstate the correlation (on
   SlimPajama it pushed every pair to 1; with the noise in, 0.47-0.92). The correlations are
   shrunk toward their mean (and the mean toward 0) as the residual correlation's are
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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bimix_bayes.bayes.residual_correlation import (
    constant_correlation_shrinkage,
    nearest_correlation,
)

__all__ = [
    "MIN_DEGREES",
    "RUN_SIZE_ATTR",
    "RunSizeOffsets",
    "SizeCells",
    "run_size_offsets",
    "size_cells",
    "stored_run_size_offsets",
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
    rows, cols = np.nonzero(layout.mask > 0)
    frame = pd.DataFrame(
        {
            "curve": rows,
            "size": layout.z[rows, cols],
            "we": (mean_weight * mean_residual)[rows, cols],
            "w": mean_weight[rows, cols],
        }
    )
    cells = frame.groupby(["curve", "size"], sort=True).sum().reset_index()
    curve = cells["curve"].to_numpy()
    domain = layout.curve_domain[curve]
    weight = cells["w"].to_numpy()
    return SizeCells(
        run=layout.curve_run[curve],
        size=pd.factorize(cells["size"].round(9), sort=True)[0],
        domain=domain,
        value=cells["we"].to_numpy() / weight,
        noise_var=sigma2[domain] / weight,
    )


def _domain_residuals(cells: SizeCells, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, r, 1 - h)`` of domain ``d``'s two-way fit ``e = a[run] + c[size] + r``."""
    rows = np.flatnonzero(cells.domain == d)
    runs = pd.factorize(cells.run[rows])[0]
    sizes = pd.factorize(cells.size[rows])[0]
    design = np.zeros((len(rows), runs.max() + 1 + sizes.max() + 1))
    design[np.arange(len(rows)), runs] = 1.0
    design[np.arange(len(rows)), runs.max() + 1 + sizes] = 1.0
    pinv = np.linalg.pinv(design)
    hat_diag = np.einsum("ij,ji->i", design, pinv)
    values = cells.value[rows]
    return rows, values - design @ (pinv @ values), np.clip(1.0 - hat_diag, 0.0, 1.0)


def run_size_offsets(cells: SizeCells, n_domains: int) -> RunSizeOffsets | None:
    """``Omega`` from a size fit's cells (module docstring); None when no domain has
    :data:`MIN_DEGREES` degrees of freedom (no mixture seen at two sizes, say)."""
    keys = pd.MultiIndex.from_arrays([cells.run, cells.size])
    cell_index, _ = pd.factorize(keys)
    n_cells = cell_index.max() + 1 if len(cell_index) else 0
    table = np.full((n_cells, n_domains), np.nan)  # r per (run, size) cell and domain
    free = np.zeros((n_cells, n_domains))  # 1 - h
    sd = np.zeros(n_domains)
    for d in range(n_domains):
        rows, r, left = _domain_residuals(cells, d) if (cells.domain == d).any() else ([],) * 3
        if len(rows) == 0 or left.sum() < MIN_DEGREES:
            continue
        table[cell_index[rows], d], free[cell_index[rows], d] = r, left
        excess = np.sum(r**2) - np.sum(left * cells.noise_var[rows])
        sd[d] = np.sqrt(max(excess, 0.0) / left.sum())
    if not (sd > 0).any():
        return None
    corr = np.eye(n_domains)
    estimated = np.zeros((n_domains, n_domains), dtype=bool)
    for d in range(n_domains):
        for e in range(d + 1, n_domains):
            both = ~np.isnan(table[:, d]) & ~np.isnan(table[:, e])
            degrees = np.sqrt(free[both, d] * free[both, e]).sum()
            if sd[d] == 0 or sd[e] == 0 or degrees < MIN_DEGREES:
                continue
            pair = table[both][:, [d, e]]
            corr[d, e] = corr[e, d] = np.sum(pair[:, 0] * pair[:, 1]) / np.sqrt(
                np.sum(pair[:, 0] ** 2) * np.sum(pair[:, 1] ** 2)
            )
            estimated[d, e] = estimated[e, d] = True
    if estimated.any():
        entries, mean = constant_correlation_shrinkage(table, estimated)
        target = np.where(estimated, (1.0 - mean) * corr[estimated].mean(), 0.0)
        np.fill_diagonal(target, 1.0)
        corr = nearest_correlation((1.0 - entries) * corr + entries * target)
    return RunSizeOffsets(sd, corr)


def stored_run_size_offsets(posterior: xr.Dataset) -> RunSizeOffsets | None:
    """``Omega`` of a fit (:data:`RUN_SIZE_ATTR`), or None when it has none; a clear error
    when the stored value does not fit the posterior's domains or is not a covariance."""
    text = posterior.attrs.get(RUN_SIZE_ATTR)
    if not text:
        return None
    offsets = RunSizeOffsets.from_attr(text)
    n = posterior.sizes["domain"]
    problem = ""
    if offsets.sd.shape != (n,) or offsets.corr.shape != (n, n):
        problem = f"has {offsets.sd.shape[0]} domains, not {n}"
    elif (offsets.sd < 0).any() or not np.allclose(offsets.corr, offsets.corr.T):
        problem = "is not a covariance (negative sd or an asymmetric correlation)"
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
