"""The one scoring module: how a forecast of held-out losses is scored, everywhere.

The backtest (:mod:`bimix_bayes.evaluation.runner`), the report's held-out section, the synthetic
demo and the closed-loop verification (:mod:`bimix_bayes.proxy.verify`) all score forecasts with
the functions below, so that "MRE" or "90 % coverage" means the same thing in every output.

Per point (arrays, pandas Series or lists):

* :func:`relative_errors`, :func:`mean_relative_error`, :func:`max_relative_error`: ``|predicted /
  observed - 1|`` of the point forecast, its mean and maximum;
* :func:`r2_log`: R^2 of log loss, ``1 - SS_res / SS_tot`` (as the BiMix paper);
* :func:`spearman`: Spearman rank correlation;
* :func:`inside`, :func:`coverage`: whether the observed value lies in the closed interval, and
  the share that does; :func:`mean_relative_width`: the interval's width relative to the forecast;
* :func:`mean_log_predictive_density`: mean log predictive density of the observed losses (nats).

Per table of points (:func:`score`): the metrics per method and evaluation domain, for the plain
mean over domains (:data:`~bimix_bayes.data.labels.ALL_DOMAINS`, the rows that
:func:`with_domain_mean` adds) and pooled over every per-domain point
(:data:`~bimix_bayes.data.labels.ALL_POINTS`):

* ``mre``, ``max_re``: mean and maximum relative error;
* ``r2_log``: R^2 of log loss; for ``"(all points)"`` the mean of the per-domain values (pooling
  domains would count the differences between domains as explained variance);
* ``spearman``: across the held-out runs at the last step with at least 3 of them (per split,
  averaged over splits); for ``"(all points)"`` the mean of the per-domain values;
* ``cover_50``, ``cover_90``: coverage of the central 50 % / 90 % interval (columns
  :func:`~bimix_bayes.data.labels.interval_columns`), ``width_50``, ``width_90``: its mean
  relative width;
* ``lpd``: mean log predictive density (NaN for a method without densities).

Examples
--------
>>> obs, pred = [2.0, 4.0], [2.2, 3.8]
>>> round(mean_relative_error(obs, pred), 12), coverage(obs, [1.9, 4.1], [2.1, 4.5])
(0.075, 0.5)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from bimix_bayes.data.labels import ALL_DOMAINS, ALL_POINTS, interval_columns

__all__ = [
    "METRIC_COLUMNS",
    "PROBS",
    "coverage",
    "format_metrics",
    "inside",
    "interval_tag",
    "max_relative_error",
    "mean_log_predictive_density",
    "mean_relative_error",
    "mean_relative_width",
    "r2_log",
    "relative_errors",
    "score",
    "spearman",
    "with_domain_mean",
]

#: Probabilities of the central intervals every forecast is scored on.
PROBS = (0.5, 0.9)


def interval_tag(prob: float) -> str:
    """The suffix of the interval columns (``lower_90``) and of the metrics (``cover_90``).

    Examples
    --------
    >>> interval_tag(0.9), interval_tag(0.975)
    ('90', '97_5')
    """
    return interval_columns(prob)[0].removeprefix("lower_")


#: Columns of :func:`score`'s table, in order.
METRIC_COLUMNS = (
    "n",
    "mre",
    "max_re",
    "r2_log",
    "spearman",
    *(f"{kind}_{interval_tag(p)}" for p in PROBS for kind in ("cover", "width")),
    "lpd",
)


def _arrays(*values: Any) -> list[np.ndarray]:
    return [np.asarray(v, dtype=float) for v in values]


# ------------------------------------------------------------------------------ per point
def relative_errors(observed: Any, predicted: Any) -> np.ndarray:
    """``|predicted / observed - 1|`` per point.

    Examples
    --------
    >>> relative_errors([2.0, 4.0], [2.5, 3.0]).tolist()
    [0.25, 0.25]
    """
    obs, pred = _arrays(observed, predicted)
    return np.abs(pred / obs - 1)


def mean_relative_error(observed: Any, predicted: Any) -> float:
    """Mean of ``|predicted / observed - 1|``; NaN without points.

    Examples
    --------
    >>> round(mean_relative_error([2.0, 4.0], [2.2, 3.8]), 12)
    0.075
    """
    return _summary(np.mean, relative_errors(observed, predicted))


def max_relative_error(observed: Any, predicted: Any) -> float:
    """Maximum of ``|predicted / observed - 1|``; NaN without points, as
    :func:`mean_relative_error`.

    Examples
    --------
    >>> max_relative_error([2.0, 4.0], [2.5, 3.0]), max_relative_error([], [])
    (0.25, nan)
    """
    return _summary(np.max, relative_errors(observed, predicted))


def _summary(statistic: Callable[[np.ndarray], Any], values: np.ndarray) -> float:
    """``statistic(values)`` as a float; NaN without values (``np.max`` of none would raise)."""
    return float(statistic(values)) if values.size else float("nan")


def r2_log(observed: Any, predicted: Any) -> float:
    """R^2 of log loss: ``1 - sum((log o - log p)^2) / sum((log o - mean log o)^2)``.

    NaN with fewer than two points or no spread in the observed values.

    Examples
    --------
    >>> import numpy as np
    >>> round(r2_log(np.exp([1.0, 2.0, 3.0]), np.exp([1.0, 2.0, 2.5])), 6)
    0.875
    """
    obs, pred = _arrays(observed, predicted)
    if obs.size < 2:
        return float("nan")
    lo, lp = np.log(obs), np.log(pred)
    ss_tot = float(((lo - lo.mean()) ** 2).sum())
    return 1.0 - float(((lo - lp) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")


def spearman(observed: Any, predicted: Any) -> float:
    """Spearman rank correlation (scipy); NaN with fewer than 3 points or a constant side.

    Examples
    --------
    >>> round(spearman([1.0, 2.0, 3.0, 4.0], [1.1, 1.9, 3.5, 3.2]), 12)
    0.8
    """
    obs, pred = _arrays(observed, predicted)
    if obs.size < 3 or np.ptp(obs) == 0 or np.ptp(pred) == 0:
        return float("nan")
    return float(spearmanr(obs, pred).statistic)


def inside(observed: Any, lower: Any, upper: Any) -> np.ndarray:
    """Whether each observed value lies in the closed interval ``[lower, upper]``.

    A missing (NaN) bound is a miss here; :func:`coverage` leaves such points out instead.

    Examples
    --------
    >>> inside([1.0, 2.0, 3.0], [1.0, 2.5, float("nan")], [1.5, 3.0, 4.0]).tolist()
    [True, False, False]
    """
    obs, lo, hi = _arrays(observed, lower, upper)
    return (lo <= obs) & (obs <= hi)


def coverage(observed: Any, lower: Any, upper: Any) -> float:
    """Share of observed values inside ``[lower, upper]``, over the points with both bounds.

    NaN when no point has an interval.

    Examples
    --------
    >>> coverage([1.0, 2.0, 3.0, 4.0], [0.5, 2.1, 2.0, 3.0], [1.5, 3.0, 4.0, 3.9])
    0.5
    """
    obs, lo, hi = _arrays(observed, lower, upper)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return float("nan")
    return float(np.mean(inside(obs[ok], lo[ok], hi[ok])))


def mean_relative_width(lower: Any, upper: Any, predicted: Any) -> float:
    """Mean of ``(upper - lower) / predicted``: interval width relative to the forecast.

    Examples
    --------
    >>> round(mean_relative_width([0.9, 1.8], [1.1, 2.2], [1.0, 2.0]), 12)
    0.2
    """
    lo, hi, pred = _arrays(lower, upper, predicted)
    ok = np.isfinite(lo) & np.isfinite(hi)
    return float(np.mean((hi[ok] - lo[ok]) / pred[ok])) if ok.any() else float("nan")


def mean_log_predictive_density(lpd: Any) -> float:
    """Mean log predictive density of held-out points (nats); NaN when none has a density.

    A method without densities (least squares) gives NaN for every point.

    Examples
    --------
    >>> mean_log_predictive_density([2.0, 3.0])
    2.5
    >>> mean_log_predictive_density([float("nan")])
    nan
    """
    (values,) = _arrays(lpd)
    return float(np.mean(values)) if np.isfinite(values).any() else float("nan")


# ------------------------------------------------------------------------------ tables
def with_domain_mean(
    points: pd.DataFrame, domains: Sequence[str] | None = None, *, value: str = "loss"
) -> pd.DataFrame:
    """Per-domain rows of ``domains`` plus, for each (run, step) that has every one of them, a
    row with domain :data:`~bimix_bayes.data.labels.ALL_DOMAINS` and the mean of ``value``.

    Parameters
    ----------
    points
        Columns ``run, step, domain`` and ``value``; any other column (``target``) is taken
        from the first row of the (run, step).
    domains
        The evaluation domains (default: every domain in ``points``, in order of appearance).
    value
        The column averaged.

    Returns
    -------
    pandas.DataFrame
        The rows of ``domains``, then the mean rows.

    Examples
    --------
    >>> pts = pd.DataFrame({"run": ["a", "a", "b"], "step": [1, 1, 1], "domain": ["x", "y", "x"],
    ...                     "loss": [2.0, 4.0, 3.0]})
    >>> with_domain_mean(pts)
      run  step             domain  loss
    0   a     1                  x   2.0
    1   a     1                  y   4.0
    2   b     1                  x   3.0
    3   a     1  (mean of domains)   3.0
    """
    domains = list(dict.fromkeys(points["domain"])) if domains is None else list(domains)
    points = points[points["domain"].isin(domains)]
    full = points.groupby(["run", "step"], sort=False)["domain"].transform("nunique") == len(
        domains
    )
    others = [c for c in points.columns if c not in ("run", "step", "domain", value)]
    agg = {value: (value, "mean"), **{c: (c, "first") for c in others}}
    mean = (
        points[full]
        .groupby(["run", "step"], sort=False)
        .agg(**agg)
        .reset_index()
        .assign(domain=ALL_DOMAINS)
    )
    return pd.concat([points, mean], ignore_index=True)


def _rank_score(points: pd.DataFrame) -> float:
    """Spearman across held-out runs at the last step with >= 3 runs, averaged over splits."""
    values = []
    for _, part in points.groupby("split", sort=False):
        counts = part.groupby("step")["run"].nunique()
        steps = counts.index[counts >= 3]
        if len(steps):
            last = part[part["step"] == steps.max()]
            values.append(spearman(last["observed"], last["predicted"]))
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _metrics_row(points: pd.DataFrame) -> dict[str, float]:
    obs, pred = points["observed"], points["predicted"]
    row = {
        "n": float(len(points)),
        "mre": mean_relative_error(obs, pred),
        "max_re": max_relative_error(obs, pred),
        "r2_log": r2_log(obs, pred),
        "spearman": _rank_score(points),
    }
    for p in PROBS:
        lower, upper = interval_columns(p)
        lo, hi = points[lower], points[upper]
        row[f"cover_{interval_tag(p)}"] = coverage(obs, lo, hi)
        row[f"width_{interval_tag(p)}"] = mean_relative_width(lo, hi, pred)
    row["lpd"] = mean_log_predictive_density(points["lpd"])
    return row


def score(points: pd.DataFrame) -> pd.DataFrame:
    """The metrics table of a per-point table (see the module docstring for each metric).

    Parameters
    ----------
    points
        Columns ``method, split, run, domain, step, observed, predicted, lower_50, upper_50,
        lower_90, upper_90, lpd``; rows with domain ``"(mean of domains)"`` are the average.

    Returns
    -------
    pandas.DataFrame
        Index ``(method, domain)``: each domain, ``"(mean of domains)"`` and ``"(all points)"``;
        columns :data:`METRIC_COLUMNS`.

    Examples
    --------
    >>> pts = pd.DataFrame({"method": "ls", "split": "0", "run": ["a", "b", "c"], "domain": "x",
    ...                     "step": 10.0, "observed": [2.0, 3.0, 4.0],
    ...                     "predicted": [2.2, 3.0, 4.0], "lpd": float("nan")})
    >>> for p in PROBS:
    ...     lower, upper = interval_columns(p)
    ...     pts[lower], pts[upper] = 0.95 * pts["predicted"], 1.05 * pts["predicted"]
    >>> table = score(pts)
    >>> table.loc[("ls", "(all points)"), ["n", "max_re", "cover_90", "spearman"]].round(4).tolist()
    [3.0, 0.1, 0.6667, 1.0]
    """
    rows = {}
    for method, part in points.groupby("method", sort=False):
        per_domain = part[part["domain"] != ALL_DOMAINS]
        domains = list(dict.fromkeys(per_domain["domain"]))
        for domain in domains:
            rows[(method, domain)] = _metrics_row(per_domain[per_domain["domain"] == domain])
        average = part[part["domain"] == ALL_DOMAINS]
        if len(average):
            rows[(method, ALL_DOMAINS)] = _metrics_row(average)
        pooled = _metrics_row(per_domain)
        for key in ("r2_log", "spearman"):
            vals = [rows[(method, d)][key] for d in domains]
            vals = [v for v in vals if np.isfinite(v)]
            pooled[key] = float(np.mean(vals)) if vals else float("nan")
        rows[(method, ALL_POINTS)] = pooled
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "domain"])
    return table[list(METRIC_COLUMNS)]


_PERCENT = ("mre", "max_re", *(c for c in METRIC_COLUMNS if c.startswith(("cover_", "width_"))))


def format_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics as strings: errors, coverage and widths in percent; R^2, rho, lpd plain.

    Examples
    --------
    >>> table = pd.DataFrame({"n": [4.0], "mre": [0.01234], "cover_90": [float("nan")],
    ...                       "r2_log": [0.98765]})
    >>> format_metrics(table).iloc[0].tolist()
    ['4', '1.23%', '-', '0.988']
    """
    out = pd.DataFrame(index=metrics.index)
    for col in metrics.columns:
        values = metrics[col]
        if col == "n":
            out[col] = values.map(lambda v: f"{v:.0f}")
        elif col in _PERCENT:
            digits = 2 if col in ("mre", "max_re") else 1
            out[col] = values.map(
                lambda v, k=digits: "-" if not np.isfinite(v) else f"{100 * v:.{k}f}%"
            )
        else:
            out[col] = values.map(lambda v: "-" if not np.isfinite(v) else f"{v:.3f}")
    return out
