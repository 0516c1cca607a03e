"""The LightGBM comparator of a backtest: RegMix's regressor, fitted on the same training data
as the law (:class:`LightGBMForecaster`).

RegMix (Liu et al. 2024, "RegMix: Data Mixture as Regression for Language Model Pre-training",
repository ``sail-sg/regmix``, ``regression_fitting/regression.ipynb``) fits one
``lightgbm.LGBMRegressor`` per target loss on the runs' mixture proportions, with
``boosting_type="gbdt"``, ``objective="regression"`` (squared error), 1000 iterations,
``learning_rate=1e-2``, ``seed=42`` and LightGBM's defaults for the rest (31 leaves, at least 20
rows per leaf). Those are the settings used here (:data:`REGMIX_PARAMS`), with three changes:

* **No early stopping.** RegMix stops after 3 rounds without improvement on its *test* set;
  in a backtest that would fit on the held-out points, so all 1000 trees are kept.
* **A step feature.** RegMix fits the losses of a fixed budget. Here the features are the run's
  shares of every training domain **plus log(step)**, so that one model per evaluation domain
  covers every checkpoint. Trees interpolate between fitted steps but cannot extrapolate past
  them: under ``horizon:F`` and ``last-checkpoint`` a step later than every fitted one gets about
  the loss of the last fitted step (for similar mixtures). That is how the method behaves and
  the backtest reports it as it is. On fixed-budget data the step is constant and ignored,
  which is RegMix's own setting.
* **Log loss as the target** (RegMix fits the loss itself; the trees' splits are the same, the
  leaves average on the log scale like the law's fits).

Seeded and reproducible: ``random_state`` is the backtest's seed, with ``deterministic=True``,
``force_row_wise=True`` and one thread.

Intervals: **LightGBM quantile regression** (``objective="quantile"``, same settings) at the
bounds of the central intervals of :data:`~bimix_bayes.evaluation.metrics.PROBS` (alpha 0.05,
0.25, 0.75, 0.95), so that coverage and width are scored like the other methods'. Quantiles
that cross are sorted (rearrangement). The interval of the mean over domains averages the
domains' bounds (exact when the domains' errors move together, as they mostly do within a run;
wider otherwise). There is no predictive density (``lpd`` is NaN) and no joint draws, so no
pairwise decision calibration either.

LightGBM is an optional dependency (``pip install 'bimix-bayes[lightgbm]'``), imported only
when a model is fitted (:func:`import_lightgbm`).

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> data = simulate_default(seed=1)
>>> model = LightGBMForecaster(seed=0, n_estimators=50).fit(data)
>>> pred = model.predict(data.mixtures.iloc[:2], [1000.0, 20000.0])
>>> pred["predicted"].shape  # run x step x domain
(2, 2, 5)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.data.labels import interval_columns
from bimix_bayes.data.run_logs import MissingExtraError
from bimix_bayes.data.table import MixtureData
from bimix_bayes.evaluation.metrics import PROBS

__all__ = ["INSTALL_HINT", "REGMIX_PARAMS", "LightGBMForecaster", "import_lightgbm"]

#: How to install the optional dependency.
INSTALL_HINT = "pip install 'bimix-bayes[lightgbm]'"

#: RegMix's LightGBM settings (``sail-sg/regmix``, ``regression_fitting/regression.ipynb``:
#: ``boosting_type='gbdt'``, ``objective='regression'``, ``num_iterations=1000``,
#: ``learning_rate=1e-2``); the seed is the backtest's instead of their 42.
REGMIX_PARAMS: dict[str, Any] = {
    "boosting_type": "gbdt",
    "objective": "regression",
    "n_estimators": 1000,
    "learning_rate": 1e-2,
}

#: Settings for reproducible, quiet fits (not RegMix's: they do not change the model).
_DETERMINISTIC: dict[str, Any] = {
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


def import_lightgbm() -> ModuleType:
    """The ``lightgbm`` module, or a clear error naming the extra to install.

    Raises
    ------
    MissingExtraError
        LightGBM is not installed (a ``ValueError``, so ``bimix`` exits with code 1 and the
        message, and an ``ImportError``).

    Examples
    --------
    >>> import_lightgbm().__name__
    'lightgbm'
    """
    try:
        return importlib.import_module("lightgbm")
    except ImportError as exc:
        raise MissingExtraError(
            "the lightgbm method (RegMix's regressor) needs LightGBM, which is not installed; "
            f"install the optional extra with `{INSTALL_HINT}`"
        ) from exc
    except OSError as exc:  # the wheel is there but its OpenMP runtime is not
        raise MissingExtraError(
            f"LightGBM is installed but cannot load its library ({exc}); install the OpenMP "
            "runtime (Debian/Ubuntu: apt-get install libgomp1; macOS: brew install libomp)"
        ) from exc


def quantile_levels(probs: Sequence[float] = PROBS) -> list[float]:
    """The lower and upper quantile levels of the central intervals ``probs``, sorted.

    Examples
    --------
    >>> quantile_levels((0.5, 0.9))
    [0.05, 0.25, 0.75, 0.95]
    """
    return sorted({round(q, 10) for p in probs for q in ((1 - p) / 2, (1 + p) / 2)})


def features(mixtures: pd.DataFrame, runs: Sequence[str], steps: Sequence[float]) -> np.ndarray:
    """Feature rows of the (run, step) pairs: the run's shares of every column, then log(step).

    Examples
    --------
    >>> mix = pd.DataFrame({"web": [0.7, 0.2], "code": [0.3, 0.8]}, index=["a", "b"])
    >>> features(mix, ["b", "a"], [100.0, 1.0]).round(3).tolist()
    [[0.2, 0.8, 4.605], [0.7, 0.3, 0.0]]
    """
    shares = mixtures.loc[list(runs)].to_numpy(dtype=float)
    return np.column_stack([shares, np.log(np.asarray(steps, dtype=float))])


class LightGBMForecaster:
    """One LightGBM regressor of log loss per evaluation domain, plus quantile regressors.

    Parameters
    ----------
    seed
        ``random_state`` of every regressor.
    intervals
        Also fit the quantile regressors of :func:`quantile_levels` (interval bounds).
    n_jobs
        Threads per fit (1: reproducible whatever the machine).
    **params
        Overrides of :data:`REGMIX_PARAMS` (``n_estimators=50`` for a quick look).

    Attributes
    ----------
    shares_
        The training domains (mixture columns) used as features, in order.
    domains_
        The evaluation domains, one set of models each.
    models_
        ``{domain: {"point": model, 0.05: model, ...}}``.

    Examples
    --------
    >>> LightGBMForecaster(seed=3).params()["learning_rate"]
    0.01
    """

    def __init__(
        self, seed: int = 0, *, intervals: bool = True, n_jobs: int = 1, **params: Any
    ) -> None:
        self.seed = seed
        self.intervals = intervals
        self.n_jobs = n_jobs
        self.overrides = params

    def params(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of one ``LGBMRegressor``."""
        return {
            **REGMIX_PARAMS,
            **_DETERMINISTIC,
            "random_state": self.seed,
            "n_jobs": self.n_jobs,
            **self.overrides,
            **extra,
        }

    def fit(self, data: MixtureData) -> LightGBMForecaster:
        """Fit every evaluation domain of ``data`` (all its observations are training rows)."""
        lgb = import_lightgbm()
        self.shares_ = list(data.mixtures.columns)
        self.domains_ = list(data.domains)
        mixtures = data.mixtures[self.shares_]
        self.models_: dict[str, dict[Any, Any]] = {}
        for domain in self.domains_:
            obs = data.observations[data.observations["domain"] == domain]
            X = features(mixtures, obs["run"], obs["step"])
            y = np.log(obs["loss"].to_numpy(dtype=float))
            models = {"point": lgb.LGBMRegressor(**self.params()).fit(X, y)}
            if self.intervals:
                for q in quantile_levels():
                    reg = lgb.LGBMRegressor(**self.params(objective="quantile", alpha=q))
                    models[q] = reg.fit(X, y)
            self.models_[domain] = models
        return self

    def predict(self, mixtures: pd.DataFrame, steps: Sequence[float]) -> dict[str, np.ndarray]:
        """Loss forecasts of every run of ``mixtures`` at every step, per evaluation domain.

        Parameters
        ----------
        mixtures
            Index run; the columns :attr:`shares_` (any other column is ignored).
        steps
            Steps to forecast.

        Returns
        -------
        dict
            ``"predicted"`` and, with intervals, the interval columns of
            :data:`~bimix_bayes.evaluation.metrics.PROBS` (``"lower_90"``...): arrays
            (run, step, domain) of losses, domains in the order of :attr:`domains_`.
        """
        runs = list(mixtures.index)
        steps = np.asarray(steps, dtype=float)
        grid_runs = np.repeat(runs, len(steps))
        grid_steps = np.tile(steps, len(runs))
        X = features(mixtures[self.shares_], grid_runs, grid_steps)
        shape = (len(runs), len(steps))
        levels = quantile_levels() if self.intervals else []
        point = np.empty((*shape, len(self.domains_)))
        quant = np.empty((len(levels), *shape, len(self.domains_)))
        for d, domain in enumerate(self.domains_):
            models = self.models_[domain]
            point[..., d] = models["point"].predict(X).reshape(shape)
            for i, q in enumerate(levels):
                quant[i, ..., d] = models[q].predict(X).reshape(shape)
        out = {"predicted": np.exp(point)}
        if levels:
            quant = np.exp(np.sort(quant, axis=0))  # rearranged: no crossing
            at = {q: i for i, q in enumerate(levels)}
            for p in PROBS:
                lower, upper = interval_columns(p)
                out[lower] = quant[at[round((1 - p) / 2, 10)]]
                out[upper] = quant[at[round((1 + p) / 2, 10)]]
        return out

    def describe(self) -> str:
        """The settings in one line (for a backtest's settings).

        Examples
        --------
        >>> LightGBMForecaster(seed=0).describe()
        'gbdt, objective regression, 1000 trees, learning rate 0.01, features shares + log(step), target log loss; intervals: quantile regression at 0.05, 0.25, 0.75, 0.95'
        """  # noqa: E501
        p = self.params()
        text = (
            f"{p['boosting_type']}, objective {p['objective']}, {p['n_estimators']} trees, "
            f"learning rate {p['learning_rate']:g}, features shares + log(step), target log loss"
        )
        if self.intervals:
            text += "; intervals: quantile regression at " + ", ".join(
                f"{q:g}" for q in quantile_levels()
            )
        return text
