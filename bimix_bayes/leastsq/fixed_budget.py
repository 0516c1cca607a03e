"""BiMix at a fixed training budget: a log-linear law per domain, fitted by least squares.

When every run is measured at the same step (a fixed budget, as RegMix's proxy runs), the step
factor of BiMix is a constant, and the law of each evaluation domain ``d`` is a straight line in
the log share:

.. math:: \\log L_d = k_d - \\alpha_d \\log r_d .

:class:`FixedBudgetLaw` fits it per domain by ordinary least squares.
:class:`FixedBudgetLeastSquares` adds predictive draws for new mixtures: the bootstrap of the
fitted runs (resampled with replacement, the line refitted) **plus** the residual noise of the
fit (Normal on log loss, sd the root mean squared residual), so that its intervals are meant to
cover a new measurement, not only the line. With one measurement per run, run offsets and
measurement noise cannot be told apart: both are the residual.

The conjugate Bayesian model of the same regression is
:class:`bimix_bayes.bayes.fixed_budget.FixedBudgetConjugate`.

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> data = at_one_step(simulate_default(seed=1))  # every run at its last checkpoint
>>> model = FixedBudgetLeastSquares(n_bootstrap=50).fit(data)
>>> model.params_["alpha"].round(2).tolist()  # simulated with 0.05, 0.12, 0.04, 0.08, 0.15
[0.04, 0.12, 0.04, 0.07, 0.14]
>>> model.predictive_draws(data.mixtures.iloc[:2], n_draws=400, seed=0).shape
(400, 2, 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd

from bimix_bayes.data.table import MixtureData, prediction_shares

__all__ = [
    "FixedBudgetLaw",
    "FixedBudgetLeastSquares",
    "LogLinearFit",
    "at_one_step",
    "fit_log_linear",
]

#: What :func:`numpy.random.default_rng` accepts: a seed, a seed sequence or a generator.
Seed = int | Sequence[int] | np.random.Generator | None


def at_one_step(data: MixtureData, step: float | None = None) -> MixtureData:
    """The observations of ``data`` at one step (default: the last), as fixed-budget data.

    Runs without an observation at that step are dropped; the result is validated again (one
    step per run allowed).

    Examples
    --------
    >>> from bimix_bayes.data.simulate import simulate_default
    >>> data = at_one_step(simulate_default(seed=1), 5850.0)
    >>> data.observations["step"].unique().tolist(), data.n_runs
    ([5850.0], 12)
    """
    obs = data.observations
    step = float(obs["step"].max()) if step is None else float(step)
    at = obs[obs["step"] == step].reset_index(drop=True)
    mixtures = data.mixtures.loc[[r for r in data.mixtures.index if r in set(at["run"])]]
    return MixtureData.from_frames(
        mixtures, at, volume=data.volume, source=f"{data.source} at step {step:g}", min_steps=1
    )


@dataclass(frozen=True)
class LogLinearFit:
    """The least-squares line ``log L = k - alpha log r`` of one domain.

    Attributes
    ----------
    design
        ``(n, 2)``: a column of ones and the log shares of the fitted runs.
    log_loss
        ``(n,)``: their observed log losses.
    coef
        ``(k, -alpha)``.
    """

    design: np.ndarray
    log_loss: np.ndarray
    coef: np.ndarray

    @property
    def k(self) -> float:
        """Intercept: the log loss of the domain alone (``r = 1``)."""
        return float(self.coef[0])

    @property
    def alpha(self) -> float:
        """Exponent of the share: the loss scales as ``r^-alpha``."""
        return float(-self.coef[1])

    @property
    def rss(self) -> float:
        """Residual sum of squares on log loss."""
        resid = self.log_loss - self.design @ self.coef
        return float(resid @ resid)

    @property
    def dof(self) -> int:
        """Residual degrees of freedom, ``n - 2`` (at least 1)."""
        return max(len(self.log_loss) - 2, 1)

    def design_at(self, shares: Any) -> np.ndarray:
        """The design rows ``(1, log r)`` of the shares ``r`` to predict at."""
        shares = np.asarray(shares, dtype=float)
        return np.column_stack([np.ones(len(shares)), np.log(shares)])


def fit_log_linear(shares: Any, losses: Any) -> LogLinearFit:
    """Ordinary least squares of ``log losses`` on ``(1, log shares)``.

    Examples
    --------
    >>> import numpy as np
    >>> r = np.array([0.1, 0.2, 0.5, 0.8])
    >>> line = fit_log_linear(r, 2.0 * r**-0.1)
    >>> round(line.alpha, 6), round(float(np.exp(line.k)), 6)
    (0.1, 2.0)
    """
    xs = np.column_stack([np.ones(len(shares)), np.log(np.asarray(shares, dtype=float))])
    ys = np.log(np.asarray(losses, dtype=float))
    coef, *_ = np.linalg.lstsq(xs, ys, rcond=None)
    return LogLinearFit(design=xs, log_loss=ys, coef=coef)


class FixedBudgetLaw:
    """The fixed-budget law ``log L_d = k_d - alpha_d log r_d``, one line per domain (OLS).

    Attributes
    ----------
    domains_ : tuple of str
        The fitted evaluation domains.
    lines_ : dict of str to LogLinearFit
        The line of each domain.
    params_ : pandas.DataFrame
        Per domain: ``k``, ``alpha``, ``rmse_log`` (root mean squared residual on log loss) and
        ``n`` (fitted runs).

    Examples
    --------
    >>> import pandas as pd
    >>> mix = pd.DataFrame({"a": [0.2, 0.5, 0.8], "b": [0.8, 0.5, 0.2]},
    ...                    index=pd.Index(["r1", "r2", "r3"], name="run"))
    >>> obs = pd.DataFrame({"run": ["r1", "r2", "r3"], "step": 100, "domain": "a",
    ...                     "loss": 3.0 * mix["a"].to_numpy() ** -0.1})
    >>> data = MixtureData.from_frames(mix, obs, min_steps=1)
    >>> law = FixedBudgetLaw().fit(data)
    >>> law.params_[["k", "alpha"]].round(4).to_dict("index")  # k = log 3
    {'a': {'k': 1.0986, 'alpha': 0.1}}
    >>> law.predict(mix.iloc[:1]).round(4).to_dict("index")
    {'r1': {'a': 3.5239}}
    """

    def fit(self, data: MixtureData) -> Self:
        """Fit one line per evaluation domain of ``data`` (every observation at one step)."""
        self.domains_ = tuple(data.domains)
        self.lines_ = {}
        for domain in self.domains_:
            obs = data.for_domain(domain)
            self.lines_[domain] = fit_log_linear(obs["r"], obs["loss"])
        self.params_ = pd.DataFrame(
            {
                "k": [line.k for line in self.lines_.values()],
                "alpha": [line.alpha for line in self.lines_.values()],
                "rmse_log": [np.sqrt(ln.rss / len(ln.log_loss)) for ln in self.lines_.values()],
                "n": [len(line.log_loss) for line in self.lines_.values()],
            },
            index=pd.Index(self.domains_, name="domain"),
        )
        return self

    def _shares(self, mixtures: pd.DataFrame | pd.Series) -> pd.DataFrame:
        """The fitted domains' shares of ``mixtures``, checked to lie in (0, 1]."""
        return prediction_shares(mixtures, self.domains_)

    def log_mean(self, mixtures: pd.DataFrame | pd.Series) -> np.ndarray:
        """The fitted log loss ``k_d - alpha_d log r_d``: ``(mixtures, domains)``."""
        return self._log_mean(self._shares(mixtures).to_numpy())

    def _log_mean(self, shares: np.ndarray) -> np.ndarray:
        return np.column_stack(
            [
                self.lines_[d].design_at(shares[:, j]) @ self.lines_[d].coef
                for j, d in enumerate(self.domains_)
            ]
        )

    def predict(self, mixtures: pd.DataFrame | pd.Series) -> pd.DataFrame:
        """The point forecast ``exp(k_d) r_d^-alpha_d``: one row per mixture, a column per domain.

        ``mixtures`` has one row per mixture (its index names it) and a column per fitted domain
        (shares in (0, 1]); a Series is one mixture.
        """
        shares = self._shares(mixtures)
        return pd.DataFrame(
            np.exp(self._log_mean(shares.to_numpy())), index=shares.index, columns=shares.columns
        )


class FixedBudgetLeastSquares(FixedBudgetLaw):
    """The fixed-budget law by OLS, with predictive draws from a bootstrap plus residual noise.

    Parameters
    ----------
    n_bootstrap
        Bootstrap refits of each domain's line (runs resampled with replacement).

    Examples
    --------
    See the module docstring.
    """

    def __init__(self, n_bootstrap: int = 200) -> None:
        if n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
        self.n_bootstrap = n_bootstrap

    def predictive_draws(
        self, mixtures: pd.DataFrame | pd.Series, n_draws: int = 400, seed: Seed = 0
    ) -> np.ndarray:
        """Draws of a new measurement's loss: ``(n_draws, mixtures, domains)``.

        Per domain (in order), ``n_bootstrap`` lines are refitted on resampled runs; each draw
        picks one of them at random and adds Normal noise on log loss with sd the root mean
        squared residual of the fit.

        Parameters
        ----------
        mixtures
            One row per mixture, a column per fitted domain (shares in (0, 1]).
        n_draws
            Draws per mixture and domain.
        seed
            Seed or :class:`numpy.random.Generator` (a generator is advanced, not copied).
        """
        rng = np.random.default_rng(seed)
        shares = self._shares(mixtures).to_numpy()
        draws = np.empty((n_draws, len(shares), len(self.domains_)))
        for j, domain in enumerate(self.domains_):
            line = self.lines_[domain]
            xs, ys = line.design, line.log_loss
            x_new = line.design_at(shares[:, j])
            reps = []
            for _ in range(self.n_bootstrap):
                idx = rng.integers(0, len(ys), size=len(ys))
                c, *_ = np.linalg.lstsq(xs[idx], ys[idx], rcond=None)
                reps.append(x_new @ c)
            reps = np.array(reps)
            pick = rng.integers(0, len(reps), size=n_draws)
            draws[:, :, j] = np.exp(
                reps[pick] + rng.standard_normal(reps[pick].shape) * np.sqrt(line.rss / len(ys))
            )
        return draws
