"""Backtests: fit on part of the data, forecast the rest, and score the forecasts.

How far to trust a forecast of the law is measured on the user's own runs. This module gathers
the public names of the backtest, which live in modules with one job each:

* :mod:`~bimix_bayes.evaluation.protocols`: what is held out (:func:`parse_protocol`);
* :mod:`~bimix_bayes.evaluation.splits`: the train/held-out splits (:func:`make_splits`);
* :mod:`~bimix_bayes.evaluation.runner`: fitting both methods and forecasting (:func:`backtest`);
* :mod:`~bimix_bayes.evaluation.metrics`: the one scoring module (:func:`score`);
* :mod:`~bimix_bayes.evaluation.result`: :class:`BacktestResult` and its renderings.

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> parse_protocol("horizon:0.5")
Protocol(kind='horizon', value=0.5)
>>> result = backtest(simulate_default(seed=1), "last-checkpoint", method="ls", n_bootstrap=20)
>>> bool(result.metrics.loc[("ls", ALL_POINTS), "mre"] < 0.05)
True
"""

from __future__ import annotations

from bimix_bayes.data.labels import ALL_DOMAINS, ALL_POINTS
from bimix_bayes.evaluation.metrics import (
    METRIC_COLUMNS,
    PROBS,
    coverage,
    format_metrics,
    max_relative_error,
    mean_log_predictive_density,
    mean_relative_error,
    mean_relative_width,
    r2_log,
    score,
    spearman,
)
from bimix_bayes.evaluation.protocols import PROTOCOL_HELP, Protocol, ProtocolError, parse_protocol
from bimix_bayes.evaluation.result import BacktestResult
from bimix_bayes.evaluation.runner import POINT_COLUMNS, backtest
from bimix_bayes.evaluation.splits import Split, fixed_budget, make_splits

__all__ = [
    "ALL_DOMAINS",
    "ALL_POINTS",
    "METRIC_COLUMNS",
    "POINT_COLUMNS",
    "PROBS",
    "PROTOCOL_HELP",
    "BacktestResult",
    "Protocol",
    "ProtocolError",
    "Split",
    "backtest",
    "coverage",
    "fixed_budget",
    "format_metrics",
    "make_splits",
    "max_relative_error",
    "mean_log_predictive_density",
    "mean_relative_error",
    "mean_relative_width",
    "parse_protocol",
    "r2_log",
    "score",
    "spearman",
]
