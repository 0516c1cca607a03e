"""The paper's point-estimate fit: BiMix per domain by least squares on log loss.

The baseline every Bayesian result is compared with. Per evaluation domain, the identifiable form
of the law (:mod:`bimix_bayes.laws.bimix`) is fitted with SciPy's Trust Region Reflective method on
log-loss residuals ``log L_obs - log L_pred`` from a grid of starts (the scales of each start are
solved exactly by non-negative least squares for its exponents), keeping the best. A Huber loss is
optional. Uncertainty comes from a bootstrap that resamples whole runs (checkpoints of one run are
correlated, so resampling single points would be overconfident).

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> data = simulate_default(seed=1)
>>> fit = BiMixLeastSquares(n_bootstrap=20, seed=0).fit(data)
>>> float(fit.quality_["r2_log"].min()) > 0.95
True
>>> pred = fit.predict(data.mixtures.iloc[:1], steps=[20_000])
>>> list(pred.columns)
['mixture', 'step', 'domain', 'loss', 'lower', 'upper']
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from bimix_bayes._version import __version__
from bimix_bayes.data.files import atomic_write_text
from bimix_bayes.data.labels import ALL_DOMAINS, evaluation_only_hint, long_table
from bimix_bayes.data.table import DataError, MixtureData, prediction_shares
from bimix_bayes.laws.bimix import (
    IDENTIFIABLE_NAMES,
    PARAM_NAMES,
    IdentifiableParams,
    bimix_log_loss,
    bimix_log_loss_jacobian,
)
from bimix_bayes.leastsq.curve import FitError, RobustLoss, fit_curve

__all__ = [
    "ALL_DOMAINS",
    "BiMixLeastSquares",
    "BootstrapWarning",
    "DomainArrays",
    "check_least_squares_data",
    "complete_replicates",
    "domain_arrays",
]

#: Fewer runs than this make the run bootstrap's intervals too narrow (a warning says so).
MIN_BOOTSTRAP_RUNS = 5


def complete_replicates(
    bootstrap: pd.DataFrame | None, domains: Sequence[str]
) -> list[pd.DataFrame]:
    """The bootstrap replicates that fitted every domain, one parameter table (domain rows) each.

    Examples
    --------
    >>> boot = pd.DataFrame({"replicate": [0, 0, 1], "domain": ["a", "b", "a"], "alpha": [1, 2, 3]})
    >>> [len(t) for t in complete_replicates(boot, ["a", "b"])]  # replicate 1 lacks domain b
    [2]
    """
    if bootstrap is None or bootstrap.empty:
        return []
    return [
        rep.set_index("domain")
        for _, rep in bootstrap.groupby("replicate")
        if set(domains) <= set(rep["domain"])
    ]


def domain_arrays(data: MixtureData, domain: str, s_ref: float) -> DomainArrays:
    """One domain's observations as the fit's arrays (steps as ``log(step / s_ref)``), in the
    order of :meth:`MixtureData.for_domain` (run codes: positions in ``data.runs``)."""
    obs = data.for_domain(domain)
    run_code = {r: i for i, r in enumerate(data.runs)}
    return DomainArrays(
        log_r=np.log(obs["r"].to_numpy(dtype=float)),
        x=np.log(obs["step"].to_numpy(dtype=float) / s_ref),
        y=np.log(obs["loss"].to_numpy(dtype=float)),
        run_codes=obs["run"].map(run_code).to_numpy(),
    )


def check_least_squares_data(data: MixtureData) -> None:
    """Raise a DataError if BiMix's least squares cannot fit ``data``: a design that cannot
    separate share from step effects, evaluation-only domains, zero own shares.

    Examples
    --------
    >>> from bimix_bayes.data.simulate import simulate_default
    >>> check_least_squares_data(simulate_default(seed=0))  # fittable: no error
    """
    data.check_design()
    if data.evaluation_only:
        silent = [t for t in data.training_domains if t not in data.domains]
        raise DataError(
            f"evaluation domain(s) {list(data.evaluation_only)} are not training domains"
            f"{evaluation_only_hint(data.evaluation_only, silent)}. BiMix's least squares "
            "needs each evaluation domain's own share. Use the Bayesian log-linear law instead "
            "(bimix fit ... --law loglinear; in bimix backtest, --law loglinear --method bayes), "
            "or leave them out (--exclude-domain)"
        )
    zero = data.shares() <= 0
    if zero.any():
        raise DataError(
            f"{int(zero.sum())} observation(s) have a zero share of their own domain (kept "
            "with --zero-policy keep); BiMix's least squares is infinite there. Use the "
            "Bayesian log-linear law instead (bimix fit ... --law loglinear; in bimix backtest, "
            "--law loglinear --method bayes), or load the "
            "data with --zero-policy drop for least squares"
        )


class BootstrapWarning(UserWarning):
    """The run bootstrap cannot give trustworthy intervals (too few runs or failed resamples)."""


#: Label of the plain average over evaluation domains in prediction tables.

# Bounds of (log_floor, log_reducible, alpha, beta); wide, but they keep TRF out of overflow.
_LOWER = np.array([-30.0, -30.0, 0.0, 0.0])
_UPPER = np.array([10.0, 30.0, 5.0, 5.0])
_ALPHA_STARTS = (0.02, 0.1, 0.5)
_BETA_STARTS = (0.1, 0.3, 0.7, 1.5)


@dataclass(frozen=True)
class DomainArrays:
    """One evaluation domain's observations as arrays: the fit's inputs."""

    log_r: np.ndarray
    x: np.ndarray  # log(step / s_ref)
    y: np.ndarray  # log loss
    run_codes: np.ndarray  # integer code of each observation's run

    def take_runs(self, runs: np.ndarray) -> DomainArrays:
        """Rows of the given run codes, repeated as often as a code repeats (for the bootstrap)."""
        idx = np.concatenate([np.flatnonzero(self.run_codes == r) for r in runs])
        return DomainArrays(self.log_r[idx], self.x[idx], self.y[idx], self.run_codes[idx])


def _scale_starts(arr: DomainArrays) -> list[np.ndarray]:
    """Starts on a grid of exponents; for each, the two scales solved exactly by NNLS."""
    starts = []
    loss = np.exp(arr.y)
    for alpha in _ALPHA_STARTS:
        target = loss * np.exp(alpha * arr.log_r)  # = floor + reducible * exp(-beta x)
        for beta in _BETA_STARTS:
            design = np.column_stack([np.ones_like(arr.x), np.exp(-beta * arr.x)])
            coef, _ = nnls(design, target)
            floor, reducible = np.maximum(coef, 1e-3 * target.mean())
            starts.append(np.array([np.log(floor), np.log(reducible), alpha, beta]))
    return starts


def _fit_domain(
    arr: DomainArrays, starts: Sequence[np.ndarray], loss: RobustLoss, huber_delta: float
):
    def residuals(p: np.ndarray) -> np.ndarray:
        return bimix_log_loss(arr.log_r, arr.x, *p) - arr.y

    def jacobian(p: np.ndarray) -> np.ndarray:
        return bimix_log_loss_jacobian(arr.log_r, arr.x, *p)

    return fit_curve(
        residuals, starts, bounds=(_LOWER, _UPPER), loss=loss, huber_delta=huber_delta, jac=jacobian
    )


class BiMixLeastSquares:
    """Per-domain least-squares BiMix fit with a run-level bootstrap (the paper's method).

    Parameters
    ----------
    loss
        ``"linear"`` (the paper's ordinary least squares) or ``"huber"``.
    huber_delta
        Huber threshold on log-loss residuals when ``loss="huber"``.
    n_bootstrap
        Bootstrap replicates (whole runs resampled with replacement); 0 for none.
    interval
        Central probability of the bootstrap intervals (0.9 gives the 5 %-95 % percentiles).
    seed
        Seed of the bootstrap: the same seed gives the same intervals.
    s_ref
        Reference step for centring; default: the geometric mean of the observed steps.

    Attributes
    ----------
    params_ : pandas.DataFrame
        Per domain: the paper's ``A, alpha, B, beta, C`` (convention C = 1) and the identifiable
        ``log_floor, log_reducible``.
    quality_ : pandas.DataFrame
        Per domain: ``n_obs, n_runs, r2_log, rmse_log, mre, max_re, cost, converged``.
    bootstrap_ : pandas.DataFrame or None
        One row per (replicate, domain) with the same parameter columns.
    s_ref_ : float
        The reference step.

    Examples
    --------
    >>> from bimix_bayes.data.simulate import simulate_default
    >>> fit = BiMixLeastSquares(n_bootstrap=0).fit(simulate_default(seed=0))
    >>> sorted(fit.params_.columns)
    ['A', 'B', 'C', 'alpha', 'beta', 'log_floor', 'log_reducible']
    """

    def __init__(
        self,
        loss: RobustLoss = "linear",
        huber_delta: float = 1e-3,
        n_bootstrap: int = 200,
        interval: float = 0.9,
        seed: int | None = 0,
        s_ref: float | None = None,
    ) -> None:
        self.loss = loss
        self.huber_delta = huber_delta
        self.n_bootstrap = n_bootstrap
        self.interval = interval
        self.seed = seed
        self.s_ref = s_ref

    # ------------------------------------------------------------------ fitting
    def fit(
        self, data: MixtureData, progress: Callable[[int, int], None] | None = None
    ) -> BiMixLeastSquares:
        """Fit every evaluation domain of ``data``; then bootstrap. Returns ``self``.

        ``progress``, when given, is called as ``progress(done, n_bootstrap)`` before the first
        resample (``done`` 0) and after each one (a command's progress bar).

        Examples
        --------
        >>> from bimix_bayes.data.simulate import simulate_default
        >>> seen = []
        >>> _ = BiMixLeastSquares(n_bootstrap=3).fit(
        ...     simulate_default(seed=0), progress=lambda done, total: seen.append(done)
        ... )
        >>> seen
        [0, 1, 2, 3]
        """
        if self.loss not in ("linear", "huber"):
            raise ValueError(f"loss must be 'linear' or 'huber', got {self.loss!r}")
        if not 0 < self.interval < 1:
            raise ValueError(f"interval must lie in (0, 1), got {self.interval!r}")
        if self.n_bootstrap < 0:
            raise ValueError(f"n_bootstrap must be >= 0, got {self.n_bootstrap!r}")
        if data.has_sizes:
            raise DataError(
                f"{data.source}: the paper's least squares has no model-size dimension; fit one "
                "size (data.subset(min_size=N, max_size=N), or --group-col on the command line), "
                "or every size with bimix_bayes.leastsq.sizes.SizeLeastSquares"
            )
        check_least_squares_data(data)
        t0 = time.perf_counter()
        steps = data.observations["step"].to_numpy(dtype=float)
        self.s_ref_ = (
            float(np.exp(np.log(steps).mean())) if self.s_ref is None else float(self.s_ref)
        )
        self.domains_ = data.domains
        self.volume_ = data.volume
        self.data_source_ = data.source
        self.data_fingerprint_ = data.fingerprint()
        self.runs_ = data.runs
        arrays = self._arrays(data)
        rows, quality = [], []
        for domain in self.domains_:
            arr = arrays[domain]
            try:
                best = _fit_domain(arr, _scale_starts(arr), self.loss, self.huber_delta)
            except FitError as exc:
                raise FitError(f"domain {domain!r}: {exc}") from exc
            rows.append(best.x)
            quality.append(self._quality(arr, best))
        ident = pd.DataFrame(
            rows, index=pd.Index(self.domains_, name="domain"), columns=list(IDENTIFIABLE_NAMES)
        )
        self.params_ = self._paper_table(ident)
        self.quality_ = pd.DataFrame(quality, index=ident.index)
        self.bootstrap_ = self._bootstrap(arrays, ident, progress) if self.n_bootstrap else None
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _arrays(self, data: MixtureData) -> dict[str, DomainArrays]:
        return {domain: domain_arrays(data, domain, self.s_ref_) for domain in data.domains}

    @staticmethod
    def _quality(arr: DomainArrays, best) -> dict[str, Any]:
        resid = best.residuals  # predicted - observed, log scale
        ss_tot = float(((arr.y - arr.y.mean()) ** 2).sum())
        rel = np.abs(np.expm1(resid))
        return {
            "n_obs": int(arr.y.size),
            "n_runs": int(np.unique(arr.run_codes).size),
            "r2_log": 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
            "rmse_log": float(np.sqrt((resid**2).mean())),
            "mre": float(rel.mean()),
            "max_re": float(rel.max()),
            "cost": best.cost,
            "converged": best.success,
        }

    def _paper_table(self, ident: pd.DataFrame) -> pd.DataFrame:
        p = IdentifiableParams(
            **{k: ident[k].to_numpy() for k in IDENTIFIABLE_NAMES}, s_ref=self.s_ref_
        ).to_paper()
        table = pd.DataFrame({k: getattr(p, k) for k in PARAM_NAMES}, index=ident.index)
        return pd.concat([table, ident[["log_floor", "log_reducible"]]], axis=1)

    def _bootstrap(
        self,
        arrays: dict[str, DomainArrays],
        ident: pd.DataFrame,
        progress: Callable[[int, int], None] | None = None,
    ) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        n_runs = len(self.runs_)
        records = []
        self.bootstrap_failures_: dict[str, int] = {d: 0 for d in self.domains_}
        for rep in range(self.n_bootstrap):
            if progress is not None:
                progress(rep, self.n_bootstrap)  # resamples done so far
            sample = rng.integers(0, n_runs, size=n_runs)
            for domain in self.domains_:
                arr = arrays[domain]
                present = sample[np.isin(sample, arr.run_codes)]
                boot = arr.take_runs(present) if present.size else None
                if boot is None or np.unique(boot.log_r).size < 2 or np.unique(boot.x).size < 3:
                    self.bootstrap_failures_[domain] += 1
                    continue
                start = ident.loc[domain].to_numpy()
                try:
                    best = _fit_domain(boot, [start], self.loss, self.huber_delta)
                except FitError:
                    self.bootstrap_failures_[domain] += 1
                    continue
                records.append((rep, domain, *best.x))
        if progress is not None:
            progress(self.n_bootstrap, self.n_bootstrap)
        self._warn_if_unreliable(n_runs)
        ident_boot = pd.DataFrame(records, columns=["replicate", "domain", *IDENTIFIABLE_NAMES])
        table = self._paper_table(ident_boot.set_index("domain"))
        table.insert(0, "replicate", ident_boot["replicate"].to_numpy())
        return table.reset_index()

    def _warn_if_unreliable(self, n_runs: int) -> None:
        """Warn when the run bootstrap cannot give trustworthy intervals."""
        problems = []
        if n_runs < MIN_BOOTSTRAP_RUNS:
            problems.append(
                f"only {n_runs} runs: resampling so few runs understates the uncertainty, so "
                "the intervals are too narrow"
            )
        for domain, failed in self.bootstrap_failures_.items():
            if failed > 0.1 * self.n_bootstrap:
                problems.append(
                    f"domain {domain!r}: {failed} of {self.n_bootstrap} resamples could not be "
                    "fitted (too few distinct shares or steps) and are left out"
                )
        if problems:
            warnings.warn(
                "least-squares bootstrap intervals are unreliable: " + "; ".join(problems),
                BootstrapWarning,
                stacklevel=4,
            )

    # ------------------------------------------------------------------ results
    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError("this BiMixLeastSquares is not fitted yet; call .fit(data) first")

    def intervals(self, interval: float | None = None) -> pd.DataFrame:
        """Bootstrap percentile intervals of each parameter: columns ``<name>_lower/_upper``."""
        self._check_fitted()
        if self.bootstrap_ is None or self.bootstrap_.empty:
            raise RuntimeError("no bootstrap replicates: fit with n_bootstrap > 0")
        q = self.interval if interval is None else interval
        lo, hi = (1 - q) / 2, (1 + q) / 2
        g = self.bootstrap_.groupby("domain")[list(PARAM_NAMES[:-1])]
        lower = g.quantile(lo).add_suffix("_lower")
        upper = g.quantile(hi).add_suffix("_upper")
        return pd.concat([lower, upper], axis=1).reindex(self.params_.index)

    def summary(self) -> pd.DataFrame:
        """Per-domain table: coefficients, bootstrap intervals (if any) and fit quality."""
        self._check_fitted()
        table = self.params_[list(PARAM_NAMES)].copy()
        if self.bootstrap_ is not None and not self.bootstrap_.empty:
            iv = self.intervals()
            for name in PARAM_NAMES[:-1]:
                pos = table.columns.get_loc(name) + 1
                table.insert(pos, f"{name}_upper", iv[f"{name}_upper"])
                table.insert(pos, f"{name}_lower", iv[f"{name}_lower"])
        return pd.concat([table, self.quality_], axis=1)

    def _identifiable(self, params: pd.DataFrame, domains: Sequence[str]) -> IdentifiableParams:
        sub = params.loc[list(domains)]
        return IdentifiableParams(
            log_floor=sub["log_floor"].to_numpy(),
            log_reducible=sub["log_reducible"].to_numpy(),
            alpha=sub["alpha"].to_numpy(),
            beta=sub["beta"].to_numpy(),
            s_ref=self.s_ref_,
        )

    def predict(
        self,
        mixtures: pd.DataFrame,
        steps: Sequence[float] | np.ndarray,
        *,
        interval: float | None = None,
        average: bool = True,
    ) -> pd.DataFrame:
        """Predicted loss at every (mixture, step), per domain and averaged over domains.

        Parameters
        ----------
        mixtures
            One row per mixture (the index names it), one column per evaluation domain (other
            training domains may be present); shares must be > 0 for the fitted domains.
        steps
            Steps (or tokens, as in the fitted data) to predict at.
        interval
            Central probability of the bootstrap band of the fitted curve (default: the
            estimator's ``interval``); no band without bootstrap replicates.
        average
            Also return the plain mean over domains (domain label ``"(mean of domains)"``).

        Returns
        -------
        pandas.DataFrame
            Columns ``mixture, step, domain, loss`` and, with a bootstrap, ``lower, upper``.
        """
        self._check_fitted()
        shares = prediction_shares(mixtures, self.domains_)
        steps_arr = np.asarray(steps, dtype=float).ravel()
        if steps_arr.size == 0 or not np.all(np.isfinite(steps_arr) & (steps_arr > 0)):
            raise ValueError(f"steps must be positive finite numbers, got {list(steps_arr)}")
        domains = list(self.domains_)
        log_r = np.log(shares.to_numpy())[:, None, :]  # mixture x step x domain
        log_s = np.log(steps_arr)[None, :, None]
        point = np.exp(self._identifiable(self.params_, domains).log_loss(log_r, log_s))
        draws = None
        if self.bootstrap_ is not None and not self.bootstrap_.empty:
            reps = []
            for _, rep in self.bootstrap_.groupby("replicate"):
                rep = rep.set_index("domain")
                if set(domains) <= set(rep.index):
                    reps.append(np.exp(self._identifiable(rep, domains).log_loss(log_r, log_s)))
            draws = np.stack(reps) if reps else None
        return _tidy(
            point,
            draws,
            shares.index,
            steps_arr,
            domains,
            self.interval if interval is None else interval,
            average,
        )

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: settings, data fingerprint and the per-domain table."""
        self._check_fitted()
        table = self.summary().reset_index()
        return {
            "method": "least squares (scipy TRF) on log loss, per domain",
            "package_version": __version__,
            "loss": self.loss,
            "huber_delta": self.huber_delta if self.loss == "huber" else None,
            "n_bootstrap": self.n_bootstrap,
            "bootstrap_failures": getattr(self, "bootstrap_failures_", None),
            "interval": self.interval,
            "seed": self.seed,
            "s_ref": self.s_ref_,
            "volume": self.volume_,
            "convention": "C = 1: A is the loss floor at r = 1, B the reducible part relative to A",
            "data_source": self.data_source_,
            "data_fingerprint": self.data_fingerprint_,
            "domains": json.loads(table.to_json(orient="records", double_precision=15)),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the per-domain table as ``.csv`` or the full description as ``.json`` (atomic)."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        if path.suffix.lower() == ".csv":
            return atomic_write_text(path, self.summary().to_csv(float_format="%.10g"))
        raise ValueError(f"{path}: unknown output type; use .csv or .json")


def _tidy(
    point: np.ndarray,
    draws: np.ndarray | None,
    mixture_ids: pd.Index,
    steps: np.ndarray,
    domains: list[str],
    interval: float,
    average: bool,
) -> pd.DataFrame:
    """Long table from arrays shaped (mixture, step, domain) [+ leading draw axis]."""
    labels = list(domains)
    if average:
        point = np.concatenate([point, point.mean(axis=-1, keepdims=True)], axis=-1)
        if draws is not None:
            draws = np.concatenate([draws, draws.mean(axis=-1, keepdims=True)], axis=-1)
        labels.append(ALL_DOMAINS)
    out = long_table({"mixture": mixture_ids, "step": steps, "domain": labels}, loss=point)
    if draws is not None:
        lo, hi = np.quantile(draws, [(1 - interval) / 2, (1 + interval) / 2], axis=0)
        out["lower"], out["upper"] = lo.ravel(), hi.ravel()
    return out
