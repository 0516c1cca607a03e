"""Every law at a fixed training budget, fitted by least squares (the paper's LS, Ye et al.'s fit).

When every run is measured at the same step (a fixed budget, as RegMix's proxy runs), the step
law is a constant per evaluation domain and every law of the package is a linear regression of
the log loss on the law's design row (:mod:`bimix_bayes.laws.fixed_budget`):

.. math:: \\log L_d = k_d + m_d(r) = x_d(r)^\\top \\theta_d .

* ``bimix`` (the default): ``log L_d = k_d - alpha_d log r_d``, a line in the log own share;
* ``bimix_cross``: plus ``sum_j cross_dj r_j`` over the other training domains (centred);
* ``loglinear`` (Ye et al. 2025, the form of RegMix's linear baseline on log loss):
  ``log L_d = k_d - own_d r_d + sum_j cross_dj r_j``, finite at zero shares, so runs that leave
  a domain out are kept (load the data with ``zero_policy="keep"``);
* ``effective`` (:mod:`bimix_bayes.laws.effective`): ``log L_d = k_d - alpha_d f(r_d) + sum_j
  cross_dj f(r_j)`` with ``f(r) = log(1 + r / eps)``: BiMix's curvature in the log share, finite
  at zero shares (the cross effects are not centred).

:class:`FixedBudgetLaw` fits each domain by ordinary least squares (the minimum-norm solution:
the cross effects come out centred, the identifiable parametrisation of
:mod:`bimix_bayes.laws.cross`). :class:`FixedBudgetLeastSquares` adds predictive draws for new
mixtures: the bootstrap of the fitted runs (resampled with replacement, the regression refitted)
**plus** the residual noise of the fit (Normal on log loss, sd the root mean squared residual),
so that its intervals are meant to cover a new measurement, not only the law. With one
measurement per run, run offsets and measurement noise cannot be told apart: both are the
residual.

The conjugate Bayesian model of the same regressions is
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
>>> FixedBudgetLeastSquares(law="loglinear").fit(data).params_.columns.tolist()
['k', 'own', 'rmse_log', 'n']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd

from bimix_bayes.data.table import MixtureData, prediction_shares
from bimix_bayes.laws.fixed_budget import (
    EFFECTIVE_OWN_COLUMN,
    coefficient_kinds,
    design,
    design_columns,
)
from bimix_bayes.laws.registry import DEFAULT_LAW, Law, get_law

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
    """The regression of one domain's log loss on its law's design row.

    Attributes
    ----------
    design
        ``(n, p)``: the design rows of the fitted runs (:func:`~bimix_bayes.laws.fixed_budget.
        design`).
    log_loss
        ``(n,)``: their observed log losses.
    coef
        ``(p,)``: the fitted coefficients (``(k, -alpha)`` under ``bimix``).
    columns
        The names of the columns (:func:`~bimix_bayes.laws.fixed_budget.design_columns`).
    law
        The law's name.
    own_index
        The training-domain column of the domain (``-1``: an evaluation-only domain).
    """

    design: np.ndarray
    log_loss: np.ndarray
    coef: np.ndarray
    columns: tuple[str, ...] = ("intercept", "log_share")
    law: str = DEFAULT_LAW
    own_index: int = 0

    def _coef(self, name: str) -> float:
        return float(self.coef[self.columns.index(name)]) if name in self.columns else np.nan

    @property
    def k(self) -> float:
        """Intercept: the log loss of the domain alone (``r = 1``; BiMix laws), or with no share
        and the others even (``loglinear``)."""
        return float(self.coef[0])

    @property
    def alpha(self) -> float:
        """Exponent of the own share (BiMix laws): the loss scales as ``r^-alpha``; under
        ``effective`` as ``(1 + r / eps)^-alpha``."""
        if EFFECTIVE_OWN_COLUMN in self.columns:
            return -self._coef(EFFECTIVE_OWN_COLUMN)
        return -self._coef("log_share")

    @property
    def own(self) -> float:
        """Own-share effect (``loglinear``): the log loss falls by ``own`` from a share 0 to 1."""
        return -self._coef("own_share")

    @property
    def cross(self) -> dict[str, float]:
        """The cross effects by training domain (centred over the other domains)."""
        return {
            c.removeprefix("cross:"): float(v)
            for c, v in zip(self.columns, self.coef, strict=True)
            if c.startswith("cross:")
        }

    @property
    def rss(self) -> float:
        """Residual sum of squares on log loss."""
        resid = self.log_loss - self.design @ self.coef
        return float(resid @ resid)

    @property
    def dof(self) -> int:
        """Residual degrees of freedom, ``n - rank(design)`` (at least 1)."""
        return max(len(self.log_loss) - int(np.linalg.matrix_rank(self.design)), 1)

    def design_at(self, shares: Any) -> np.ndarray:
        """The design rows at ``shares`` ``(mixtures, training domains)``; a 1-d array is the
        own shares (``bimix`` only, as :func:`fit_log_linear`'s lines)."""
        shares = np.asarray(shares, dtype=float)
        if shares.ndim == 1:
            return np.column_stack([np.ones(len(shares)), np.log(shares)])
        return design(self.law, shares, self.own_index)


def least_squares(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The minimum-norm least-squares coefficients of ``ys`` on ``xs``.

    Examples
    --------
    >>> least_squares(np.array([[1.0, 1.0], [1.0, -1.0], [1.0, 0.0]]), np.array([3.0, 1.0, 2.0]))
    array([2., 1.])
    """
    coef, *_ = np.linalg.lstsq(xs, ys, rcond=None)
    return coef


def fit_log_linear(shares: Any, losses: Any) -> LogLinearFit:
    """Ordinary least squares of ``log losses`` on ``(1, log shares)`` (the ``bimix`` line).

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
    return LogLinearFit(design=xs, log_loss=ys, coef=least_squares(xs, ys))


class FixedBudgetLaw:
    """A law at a fixed budget, one regression per evaluation domain (least squares).

    Parameters
    ----------
    law
        ``"bimix"`` (default), ``"bimix_cross"``, ``"loglinear"`` or ``"effective"``
        (:data:`~bimix_bayes.laws.registry.LAWS`). The BiMix laws refuse a zero own share
        (:class:`~bimix_bayes.laws.fixed_budget.ZeroShareError`).

    Attributes
    ----------
    law_ : Law
        The law fitted.
    domains_ : tuple of str
        The fitted evaluation domains.
    training_domains_ : tuple of str
        The mixture columns of the fitted data (what a cross-domain law reads).
    lines_ : dict of str to LogLinearFit
        The regression of each domain.
    params_ : pandas.DataFrame
        Per domain: ``k``, ``alpha`` (BiMix laws) or ``own`` (``loglinear``), ``rmse_log``
        (root mean squared residual on log loss) and ``n`` (fitted runs).
    cross_ : pandas.DataFrame or None
        Cross-domain laws: the cross effects, a row per domain and a column per training domain
        (NaN on the own column); None under ``bimix``.

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

    def __init__(self, law: str = DEFAULT_LAW) -> None:
        self.law = law

    # ------------------------------------------------------------------ fitting
    def fit(self, data: MixtureData) -> Self:
        """Fit one regression per evaluation domain of ``data`` (every observation at one step).

        Raises
        ------
        ZeroShareError
            A BiMix law and a run that gives a domain no share of its own (the message names
            ``--law loglinear``).
        """
        self.law_: Law = get_law(self.law)
        self.training_domains_ = tuple(data.training_domains)
        self.domains_ = tuple(data.domains)
        self.lines_: dict[str, LogLinearFit] = {}
        training = list(self.training_domains_)
        for domain in self.domains_:
            obs = data.for_domain(domain)
            own = training.index(domain) if domain in training else -1
            shares = data.mixtures.loc[obs["run"], training].to_numpy(dtype=float)
            xs = design(self.law_, shares, own, domain=domain)
            line = LogLinearFit(
                design=xs,
                log_loss=np.log(obs["loss"].to_numpy(dtype=float)),
                coef=np.zeros(xs.shape[1]),
                columns=tuple(design_columns(self.law_, training, own)),
                law=self.law_.name,
                own_index=own,
            )
            kinds = coefficient_kinds(self.law_, training, own)
            self.lines_[domain] = self._fit_domain(domain, line, kinds)
        self.params_ = self._params_table()
        self.cross_ = self._cross_table() if self.law_.cross_domain else None
        return self

    def _fit_domain(self, domain: str, line: LogLinearFit, kinds: list[str]) -> LogLinearFit:
        """Fit one domain's coefficients (least squares here; a subclass may change how)."""
        return _with_coef(line, least_squares(line.design, line.log_loss))

    def _params_table(self) -> pd.DataFrame:
        lines = self.lines_.values()
        slope = "own" if "own" in self.law_.params else "alpha"
        return pd.DataFrame(
            {
                "k": [line.k for line in lines],
                slope: [getattr(line, slope) for line in lines],
                "rmse_log": [np.sqrt(line.rss / len(line.log_loss)) for line in lines],
                "n": [len(line.log_loss) for line in lines],
            },
            index=pd.Index(self.domains_, name="domain"),
        )

    def _cross_table(self) -> pd.DataFrame:
        table = pd.DataFrame(
            np.nan,
            index=pd.Index(self.domains_, name="domain"),
            columns=pd.Index(self.training_domains_, name="training_domain"),
        )
        for domain, line in self.lines_.items():
            for other, value in line.cross.items():
                table.loc[domain, other] = value
        return table

    # ------------------------------------------------------------------ predicting
    def _shares(self, mixtures: pd.DataFrame | pd.Series) -> np.ndarray:
        """``(mixtures, training domains)`` shares to predict at, checked.

        Cross-domain laws read every training domain (shares in [0, 1]; a BiMix law still
        refuses a zero own share in :func:`~bimix_bayes.laws.fixed_budget.design`); ``bimix``
        reads the fitted domains' own shares only (in (0, 1]), the other columns NaN.
        """
        if self.law_.cross_domain:
            frame = prediction_shares(
                mixtures,
                self.training_domains_,
                training_domains=self.training_domains_,
                allow_zero=True,
            )
        else:
            frame = prediction_shares(mixtures, self.domains_)
        return frame.reindex(columns=list(self.training_domains_)).to_numpy(dtype=float)

    def _names(self, mixtures: pd.DataFrame | pd.Series) -> pd.Index:
        frame = mixtures.to_frame().T if isinstance(mixtures, pd.Series) else mixtures
        return frame.index

    def log_mean(self, mixtures: pd.DataFrame | pd.Series) -> np.ndarray:
        """The fitted log loss ``x_d(r)' theta_d``: ``(mixtures, domains)``."""
        return self._log_mean(self._shares(mixtures))

    def _designs(self, shares: np.ndarray) -> dict[str, np.ndarray]:
        return {d: self.lines_[d].design_at(shares) for d in self.domains_}

    def _log_mean(self, shares: np.ndarray) -> np.ndarray:
        xs = self._designs(shares)
        return np.column_stack([xs[d] @ self.lines_[d].coef for d in self.domains_])

    def predict(self, mixtures: pd.DataFrame | pd.Series) -> pd.DataFrame:
        """The point forecast ``exp(x_d(r)' theta_d)``: one row per mixture, a column per domain.

        ``mixtures`` has one row per mixture (its index names it) and a column per fitted domain
        (shares in (0, 1]) under ``bimix``, a column per training domain (shares in [0, 1],
        summing to 1) under the cross-domain laws; a Series is one mixture.
        """
        shares = self._shares(mixtures)
        return pd.DataFrame(
            np.exp(self._log_mean(shares)),
            index=self._names(mixtures),
            columns=pd.Index(self.domains_, name="domain"),
        )


def _with_coef(line: LogLinearFit, coef: np.ndarray) -> LogLinearFit:
    return LogLinearFit(
        design=line.design,
        log_loss=line.log_loss,
        coef=np.asarray(coef, dtype=float),
        columns=line.columns,
        law=line.law,
        own_index=line.own_index,
    )


class FixedBudgetLeastSquares(FixedBudgetLaw):
    """A law at a fixed budget by least squares, with predictive draws from a bootstrap plus
    residual noise.

    Parameters
    ----------
    n_bootstrap
        Bootstrap refits of each domain's regression (runs resampled with replacement).
    law
        The law (:class:`FixedBudgetLaw`).

    Examples
    --------
    See the module docstring.
    """

    def __init__(self, n_bootstrap: int = 200, law: str = DEFAULT_LAW) -> None:
        if n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
        self.n_bootstrap = n_bootstrap
        self.law = law

    def predictive_draws(
        self, mixtures: pd.DataFrame | pd.Series, n_draws: int = 400, seed: Seed = 0
    ) -> np.ndarray:
        """Draws of a new measurement's loss: ``(n_draws, mixtures, domains)``.

        Per domain (in order), ``n_bootstrap`` regressions are refitted on resampled runs; each
        draw picks one of them at random and adds Normal noise on log loss with sd the root mean
        squared residual of the fit.

        Parameters
        ----------
        mixtures
            One row per mixture, the columns :meth:`predict` reads.
        n_draws
            Draws per mixture and domain.
        seed
            Seed or :class:`numpy.random.Generator` (a generator is advanced, not copied).
        """
        rng = np.random.default_rng(seed)
        shares = self._shares(mixtures)
        x_new = self._designs(shares)
        draws = np.empty((n_draws, len(shares), len(self.domains_)))
        for j, domain in enumerate(self.domains_):
            line = self.lines_[domain]
            xs, ys = line.design, line.log_loss
            reps = []
            for _ in range(self.n_bootstrap):
                idx = rng.integers(0, len(ys), size=len(ys))
                reps.append(x_new[domain] @ least_squares(xs[idx], ys[idx]))
            reps = np.array(reps)
            pick = rng.integers(0, len(reps), size=n_draws)
            draws[:, :, j] = np.exp(
                reps[pick] + rng.standard_normal(reps[pick].shape) * np.sqrt(line.rss / len(ys))
            )
        return draws
