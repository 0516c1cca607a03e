"""The paper's least squares with model size as a dimension: the comparator of size forecasts.

BiMix per domain (:mod:`bimix_bayes.laws.bimix`, identifiable form) with the same power laws in
the model size ``N`` as the Bayesian size-aware model (:func:`bimix_bayes.laws.size.at_size`,
``z = log(N / N_ref)``, ``N_ref`` the geometric mean of the fitted sizes; the law is
:data:`bimix_bayes.laws.registry.BIMIX`'s ``log_loss``)::

    log_floor(N) = log_floor + size_floor z     log_reducible(N) = log_reducible + size_reducible z
    beta(N)      = beta exp(size_beta z)        alpha(N)         = alpha exp(size_mixture z)

eight parameters per domain, fitted by SciPy's Trust Region Reflective method on log-loss
residuals over every size at once. Starts: the size-blind BiMix fit of the domain (its grid of
starts, :func:`bimix_bayes.leastsq.fit._scale_starts`) with the slopes at zero, and the same
with the slopes least squares finds on SlimPajama (floor -0.07, reducible +0.15, beta -0.07).
Intervals come from a bootstrap that resamples whole mixtures (a mixture's runs at every size
together: their errors are correlated) plus Normal residual noise with the domain's training
RMSE, as :func:`bimix_bayes.evaluation.backtest` scores the size-blind least squares. No run
effects and no error shared by the runs at a new size: it is the point-estimate baseline the
Bayesian model is compared with in ``holdout-size`` backtests.

Examples
--------
>>> import pandas as pd
>>> from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
>>> params = default_parameters().iloc[:3]
>>> mixtures = random_mixtures(8, list(params.index), seed=0)
>>> sizes = (1e8, 2e8, 4e8)  # larger models: a lower floor (C falls 5 % per doubling)
>>> obs = pd.concat(
...     simulate(params.assign(C=params["C"] * 0.95 ** i), mixtures, [1e3, 2e3, 4e3, 8e3],
...              seed=i).observations.assign(size=n)
...     for i, n in enumerate(sizes)
... )
>>> data = MixtureData.from_frames(mixtures, obs, size_kind="total parameters")
>>> fit = SizeLeastSquares(n_bootstrap=5, seed=0).fit(data)
>>> at_8e8 = fit.log_loss(fit.params_, mixtures.iloc[:2], [1e4], 8e8)
>>> at_8e8.shape  # mixture x step x domain
(2, 1, 3)
>>> bool((at_8e8 < fit.log_loss(fit.params_, mixtures.iloc[:2], [1e4], 4e8)).all())
True
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bimix_bayes.data.table import DataError, MixtureData, prediction_shares
from bimix_bayes.laws.bimix import IDENTIFIABLE_NAMES
from bimix_bayes.laws.registry import BIMIX
from bimix_bayes.laws.size import SIZE_PARAMS, size_reference
from bimix_bayes.leastsq.curve import FitError, fit_curve
from bimix_bayes.leastsq.fit import (
    MIN_BOOTSTRAP_RUNS,
    BiMixLeastSquares,
    BootstrapWarning,
    DomainArrays,
    _fit_domain,
    _scale_starts,
    check_least_squares_data,
    complete_replicates,
    domain_arrays,
)

__all__ = ["SIZE_LS_PARAMS", "SizeLeastSquares"]

#: The eight parameters per domain, in the order of the fit's vector.
SIZE_LS_PARAMS = (*IDENTIFIABLE_NAMES, *SIZE_PARAMS)
# Bounds: the size-blind fit's, and +-2 per unit of log size for the slopes (a factor e^2 per
# e-fold of N; SlimPajama's least squares finds |slope| < 0.2).
_LOWER = np.array([-30.0, -30.0, 0.0, 0.0, -2.0, -2.0, -2.0, -2.0])
_UPPER = np.array([10.0, 30.0, 5.0, 5.0, 2.0, 2.0, 2.0, 2.0])
_SLOPE_STARTS = (np.zeros(4), np.array([-0.07, 0.15, -0.07, 0.0]))


@dataclass(frozen=True)
class SizedArrays:
    """One domain's observations with their log size offset ``z``."""

    base: DomainArrays
    z: np.ndarray

    def take_runs(self, runs: np.ndarray) -> SizedArrays:
        """Rows of the given run codes, repeated as often as a code repeats (the bootstrap)."""
        idx = np.concatenate([np.flatnonzero(self.base.run_codes == r) for r in runs])
        b = self.base
        rows = DomainArrays(b.log_r[idx], b.x[idx], b.y[idx], b.run_codes[idx])
        return SizedArrays(rows, self.z[idx])


def _log_loss(p: np.ndarray, log_r: np.ndarray, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """BiMix's log loss at size offset ``z`` (the registry's law and size dependence) for the
    parameter vector(s) ``p`` (first axis: :data:`SIZE_LS_PARAMS`)."""
    params = dict(zip(SIZE_LS_PARAMS, p, strict=True))
    return BIMIX.log_loss(None, np.exp(log_r), x, params, z=z)


def _fit_sized(arr: SizedArrays, starts: Sequence[np.ndarray]):
    def residuals(p: np.ndarray) -> np.ndarray:
        return _log_loss(p, arr.base.log_r, arr.base.x, arr.z) - arr.base.y

    return fit_curve(residuals, starts, bounds=(_LOWER, _UPPER))


class SizeLeastSquares:
    """Per-domain least-squares BiMix over several model sizes, with a mixture bootstrap.

    Parameters
    ----------
    n_bootstrap
        Bootstrap resamples of the mixtures (0: point forecasts only).
    seed
        Seed of the bootstrap.

    Attributes
    ----------
    params_ : pandas.DataFrame
        One row per domain, the columns of :data:`SIZE_LS_PARAMS`.
    quality_ : pandas.DataFrame
        Per domain, as :class:`~bimix_bayes.leastsq.fit.BiMixLeastSquares`'s: ``n_obs``,
        ``n_runs``, ``r2_log``, ``rmse_log`` (training RMSE of log loss), ``mre``, ``max_re``...
    bootstrap_ : pandas.DataFrame or None
        One row per (replicate, domain): ``replicate``, ``domain`` and the parameters.
    s_ref_, size_ref_ : float
        Reference step and size (geometric means of the fitted ones).
    """

    def __init__(self, n_bootstrap: int = 200, seed: int = 0) -> None:
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def fit(self, data: MixtureData) -> SizeLeastSquares:
        """Fit every domain on all sizes at once; then the bootstrap (if any).

        Raises
        ------
        DataError
            Data with fewer than two model sizes (the slopes would be arbitrary), evaluation-only
            domains or zero own shares (as the size-blind least squares).
        """
        if len(data.sizes) < 2:
            what = "one model size" if data.has_sizes else "no model-size dimension"
            raise DataError(
                f"{data.source}: {what}; the size slopes need at least two fitted sizes "
                "(BiMixLeastSquares fits one)"
            )
        if self.n_bootstrap < 0:
            raise ValueError(f"n_bootstrap must be >= 0, got {self.n_bootstrap!r}")
        check_least_squares_data(data)
        t0 = time.perf_counter()
        obs = data.observations
        self.s_ref_ = float(np.exp(np.log(obs["step"].to_numpy(dtype=float)).mean()))
        self.size_ref_ = size_reference(obs["size"])
        self.domains_ = data.domains
        self.runs_ = data.runs
        arrays = self._arrays(data)
        rows, quality = [], []
        for domain in self.domains_:
            arr = arrays[domain]
            try:
                blind = _fit_domain(arr.base, _scale_starts(arr.base), "linear", 1e-3).x
                best = _fit_sized(arr, [np.concatenate([blind, s]) for s in _SLOPE_STARTS])
            except FitError as exc:
                raise FitError(f"domain {domain!r}: {exc}") from exc
            rows.append(best.x)
            quality.append(BiMixLeastSquares._quality(arr.base, best))  # same columns
        index = pd.Index(self.domains_, name="domain")
        self.params_ = pd.DataFrame(rows, index=index, columns=list(SIZE_LS_PARAMS))
        self.quality_ = pd.DataFrame(quality, index=index)
        self.bootstrap_ = self._bootstrap(arrays) if self.n_bootstrap else None
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _arrays(self, data: MixtureData) -> dict[str, SizedArrays]:
        out = {}
        for domain in data.domains:
            sizes = data.for_domain(domain)["size"].to_numpy(float)  # the rows domain_arrays has
            base = domain_arrays(data, domain, self.s_ref_)
            out[domain] = SizedArrays(base, np.log(sizes / self.size_ref_))
        return out

    def _bootstrap(self, arrays: dict[str, SizedArrays]) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        n_runs = len(self.runs_)
        records, failed = [], dict.fromkeys(self.domains_, 0)
        for rep in range(self.n_bootstrap):
            sample = rng.integers(0, n_runs, size=n_runs)
            for domain in self.domains_:
                arr = arrays[domain]
                present = sample[np.isin(sample, arr.base.run_codes)]
                boot = arr.take_runs(present) if present.size else None
                if boot is None or min(np.unique(boot.base.log_r).size, np.unique(boot.z).size) < 2:
                    failed[domain] += 1
                    continue
                try:
                    best = _fit_sized(boot, [self.params_.loc[domain].to_numpy()])
                except FitError:
                    failed[domain] += 1
                    continue
                records.append((rep, domain, *best.x))
        problems = [f"only {n_runs} mixtures"] if n_runs < MIN_BOOTSTRAP_RUNS else []
        problems += [
            f"domain {d!r}: {k} of {self.n_bootstrap} resamples failed and are left out"
            for d, k in failed.items()
            if k > 0.1 * self.n_bootstrap
        ]
        if problems:
            warnings.warn(
                "size-aware least-squares bootstrap intervals are unreliable: "
                + "; ".join(problems),
                BootstrapWarning,
                stacklevel=3,
            )
        return pd.DataFrame(records, columns=["replicate", "domain", *SIZE_LS_PARAMS])

    def log_loss(
        self,
        params: pd.DataFrame,
        mixtures: pd.DataFrame,
        steps: Sequence[float] | np.ndarray,
        size: float,
    ) -> np.ndarray:
        """Log loss of ``params`` (one row per domain) at every (mixture, step) and ``size``.

        Returns
        -------
        numpy.ndarray
            Shape (mixture, step, domain).
        """
        shares = prediction_shares(mixtures, self.domains_)
        log_r = np.log(shares.to_numpy())[:, None, :]
        x = np.log(np.asarray(steps, dtype=float) / self.s_ref_)[None, :, None]
        z = np.log(float(size) / self.size_ref_)
        p = params.loc[list(self.domains_), list(SIZE_LS_PARAMS)].to_numpy().T  # param x domain
        return _log_loss(p, log_r, x, np.full_like(p[0], z))

    def replicates(self) -> list[pd.DataFrame]:
        """The bootstrap replicates that fitted every domain, one table (domain rows) each."""
        return complete_replicates(self.bootstrap_, self.domains_)
