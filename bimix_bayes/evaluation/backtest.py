"""Backtests: fit on part of the data, forecast the rest, and score the forecasts.

How far to trust a forecast of the law is measured on the user's own runs. A **protocol** says
which observations are held out:

* ``last-checkpoint``: the paper's Table 1. Fit every checkpoint but each run's last one; predict
  the last one (an observed run continued one checkpoint further).
* ``horizon:F``: fit the checkpoints up to fraction ``F`` of the last step of the data (``step <=
  F * max step``); predict every later checkpoint (a run with no checkpoint left in the fit is
  predicted as a new mixture).
* ``holdout-mixtures:K``: the paper's Table 2. Fit ``K`` runs chosen at random (all their
  checkpoints); predict every checkpoint of the other runs, as new mixtures. Repeated over
  ``n_splits`` seeded random splits.

Both methods see the same training data: ``"bayes"`` (the hierarchical model,
:class:`~bimix_bayes.bayes.model.BiMixModel`, forecasts from
:func:`~bimix_bayes.bayes.forecast.predict`) and ``"ls"`` (the paper's least squares,
:class:`~bimix_bayes.leastsq.fit.BiMixLeastSquares`).

Metrics (:func:`score`), per method and evaluation domain, for the plain average over domains
(``"(mean of domains)"``: the average observed loss of a (run, step) where every domain is
observed, against the method's forecast of the average) and pooled over all per-domain points
(``"(all points)"``):

* ``mre``, ``max_re``: mean and maximum relative error ``|predicted / observed - 1|`` of the
  point forecast (Bayes: the predictive median; least squares: the fitted curve);
* ``r2_log``: R^2 of log loss, ``1 - SS_res / SS_tot`` over the held-out points (as the paper);
  for ``"(all points)"`` the mean of the per-domain values (pooling domains would count the
  differences between domains as explained variance);
* ``spearman``: Spearman rank correlation between predicted and observed loss across the
  held-out runs at the last held-out step (per split, averaged over splits; NaN with fewer than
  3 runs); for ``"(all points)"`` the mean of the per-domain values;
* ``cover_50``, ``cover_90``: the share of held-out points inside the central 50 % / 90 %
  interval, and ``width_50``, ``width_90``: the interval's mean width relative to the point
  forecast;
* ``lpd``: mean log predictive density of a held-out point (Bayes only; density of the loss,
  nats; :func:`~bimix_bayes.bayes.forecast.log_predictive_density`).

Least-squares intervals are the run bootstrap of the fitted law (``n_bootstrap`` resamples of
whole runs, each refitted) **plus** the residual noise of the fit: every bootstrap curve gets
Normal noise on log loss with the domain's training RMSE. The bootstrap alone is the band of the
curve, which would not cover a new measurement even when the law is right.

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> parse_protocol("horizon:0.5")
Protocol(kind='horizon', value=0.5)
>>> result = backtest(simulate_default(seed=1), "last-checkpoint", method="ls", n_bootstrap=20)
>>> bool(result.metrics.loc[("ls", "(all points)"), "mre"] < 0.05)
True
"""

from __future__ import annotations

import html
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from bimix_bayes.bayes.spec import Spec
from bimix_bayes.data.files import atomic_write_with
from bimix_bayes.data.table import DataError, MixtureData
from bimix_bayes.leastsq.fit import ALL_DOMAINS, BiMixLeastSquares, BootstrapWarning

__all__ = [
    "ALL_POINTS",
    "BacktestResult",
    "Protocol",
    "ProtocolError",
    "Split",
    "backtest",
    "coverage",
    "make_splits",
    "max_relative_error",
    "mean_relative_error",
    "mean_relative_width",
    "parse_protocol",
    "r2_log",
    "score",
    "spearman",
]

Method = Literal["bayes", "ls", "both"]
ProtocolKind = Literal["last-checkpoint", "horizon", "holdout-mixtures"]

#: Label of the metrics pooled over every per-domain held-out point.
ALL_POINTS = "(all points)"
#: Interval probabilities every method reports.
PROBS = (0.5, 0.9)
#: Share given, for prediction only, to a domain a held-out mixture leaves out (BiMix is
#: undefined at r = 0; those domains have no observations to score, see ``zero_policy``).
_ZERO_STANDIN = 1e-12
_NEW = "new mixture"
_OBSERVED = "observed run"

PROTOCOL_HELP = (
    "last-checkpoint | horizon:F (0 < F < 1) | holdout-mixtures:K (K >= 2 training runs)"
)


class ProtocolError(ValueError):
    """A backtest protocol string that cannot be parsed, or one the data cannot support."""


@dataclass(frozen=True)
class Protocol:
    """What a backtest holds out; build with :func:`parse_protocol`.

    Attributes
    ----------
    kind
        ``"last-checkpoint"``, ``"horizon"`` or ``"holdout-mixtures"``.
    value
        The fraction ``F`` of ``horizon:F``, the number ``K`` of training runs of
        ``holdout-mixtures:K``; None for ``last-checkpoint``.
    """

    kind: ProtocolKind
    value: float | int | None = None

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}:{self.value:g}"

    def describe(self) -> str:
        """One sentence saying what is fitted and what is predicted."""
        if self.kind == "last-checkpoint":
            return "fit every checkpoint but each run's last; predict the last (Table 1 of BiMix)"
        if self.kind == "horizon":
            return (
                f"fit the checkpoints up to {self.value:g} x the last step; predict every later "
                "checkpoint"
            )
        return (
            f"fit {self.value} randomly chosen runs; predict every checkpoint of the other runs "
            "as new mixtures (Table 2 of BiMix)"
        )


def parse_protocol(text: str | Protocol) -> Protocol:
    """Parse ``"last-checkpoint"``, ``"horizon:F"`` or ``"holdout-mixtures:K"``.

    Raises
    ------
    ProtocolError
        For an unknown name, a missing or extra value, or a value out of range; the message
        shows the accepted forms.

    Examples
    --------
    >>> parse_protocol("holdout-mixtures:4")
    Protocol(kind='holdout-mixtures', value=4)
    >>> parse_protocol("horizon:2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bimix_bayes.evaluation.backtest.ProtocolError: protocol 'horizon:2': F must lie in (0, 1) ...
    """
    if isinstance(text, Protocol):
        return text
    if not isinstance(text, str):
        raise ProtocolError(f"protocol must be a string, got {text!r}; use {PROTOCOL_HELP}")
    raw = text.strip()
    name, sep, value = raw.partition(":")
    name, value = name.strip().lower(), value.strip()
    if name == "last-checkpoint":
        if sep:
            raise ProtocolError(f"protocol {text!r}: last-checkpoint takes no value")
        return Protocol("last-checkpoint")
    if name == "horizon":
        try:
            frac = float(value)
        except ValueError:
            raise ProtocolError(
                f"protocol {text!r}: horizon needs a fraction, e.g. horizon:0.5"
            ) from None
        if not 0 < frac < 1:
            raise ProtocolError(
                f"protocol {text!r}: F must lie in (0, 1) (fit steps <= F x the last step), "
                f"got {value!r}"
            )
        return Protocol("horizon", frac)
    if name == "holdout-mixtures":
        try:
            k = int(value)
        except ValueError:
            raise ProtocolError(
                f"protocol {text!r}: holdout-mixtures needs a whole number of training runs, "
                "e.g. holdout-mixtures:4"
            ) from None
        if k < 2:
            raise ProtocolError(
                f"protocol {text!r}: K must be >= 2 training runs (two distinct shares per "
                f"domain at least), got {k}"
            )
        return Protocol("holdout-mixtures", k)
    raise ProtocolError(f"unknown protocol {text!r}; use {PROTOCOL_HELP}")


# ------------------------------------------------------------------------------ splits
@dataclass(frozen=True)
class Split:
    """One train/held-out split.

    Attributes
    ----------
    name
        ``"0"``, ``"1"``... (one per random split of holdout-mixtures; ``"0"`` otherwise).
    train
        The data a method may fit.
    held
        Held-out observations (``run, step, domain, loss``) plus ``target``: ``"observed run"``
        (the run has checkpoints in ``train``: it is continued) or ``"new mixture"``.
    """

    name: str
    train: MixtureData
    held: pd.DataFrame


def _with_observations(data: MixtureData, obs: pd.DataFrame) -> MixtureData:
    runs = set(obs["run"])
    mixtures = data.mixtures.loc[[r for r in data.mixtures.index if r in runs]]
    return replace(data, mixtures=mixtures, observations=obs.reset_index(drop=True))


def fixed_budget(data: MixtureData) -> bool:
    """True when every observation has the same step (a fixed budget, e.g. RegMix)."""
    return data.observations["step"].nunique() == 1


def _min_steps(data: MixtureData) -> int:
    return 1 if fixed_budget(data) else 3


def _split(name: str, data: MixtureData, train_mask: np.ndarray, protocol: Protocol) -> Split:
    obs = data.observations
    train = _with_observations(data, obs[train_mask])
    held = obs[~train_mask].reset_index(drop=True)
    if held.empty:
        raise ProtocolError(f"protocol {protocol}: nothing is held out of {data.source}")
    fitted = set(zip(train.observations["run"], train.observations["domain"], strict=True))
    observed = [(r, d) in fitted for r, d in zip(held["run"], held["domain"], strict=True)]
    held = held.assign(target=np.where(observed, _OBSERVED, _NEW))
    try:
        train.check_design(min_steps=_min_steps(data))
    except DataError as exc:
        raise ProtocolError(
            f"protocol {protocol}: the training part of split {name} cannot be fitted: {exc}"
        ) from None
    return Split(name, train, held)


def make_splits(
    data: MixtureData, protocol: str | Protocol, *, seed: int = 0, n_splits: int = 5
) -> list[Split]:
    """The train/held-out splits of ``data`` under ``protocol``.

    Parameters
    ----------
    data
        Validated runs and observations.
    protocol
        A :class:`Protocol` or its string (see :func:`parse_protocol`).
    seed
        Seed of the random runs of ``holdout-mixtures`` (split ``i`` uses ``[seed, i]``).
    n_splits
        Random splits for ``holdout-mixtures`` (one split otherwise).

    Returns
    -------
    list of Split
        Every observation of ``data`` is either in ``train`` or in ``held`` of each split,
        never both.

    Examples
    --------
    >>> from bimix_bayes.data.simulate import simulate_default
    >>> data = simulate_default(seed=1)
    >>> (split,) = make_splits(data, "last-checkpoint")
    >>> sorted(split.held["step"].unique()) == [data.observations["step"].max()]
    True
    """
    protocol = parse_protocol(protocol)
    obs = data.observations
    step = obs["step"].to_numpy(dtype=float)
    if fixed_budget(data) and protocol.kind != "holdout-mixtures":
        raise ProtocolError(
            f"protocol {protocol}: the data have a single step (a fixed budget); only "
            "holdout-mixtures:K applies"
        )
    if protocol.kind == "last-checkpoint":
        last = obs.groupby("run")["step"].transform("max").to_numpy(dtype=float)
        return [_split("0", data, step < last, protocol)]
    if protocol.kind == "horizon":
        cutoff = float(protocol.value) * float(step.max())
        return [_split("0", data, step <= cutoff, protocol)]
    k = int(protocol.value)
    runs = np.array(data.runs)
    if k >= len(runs):
        raise ProtocolError(
            f"protocol {protocol}: needs more than {k} runs to hold some out; the data have "
            f"{len(runs)}"
        )
    if n_splits < 1:
        raise ProtocolError(f"n_splits must be >= 1, got {n_splits}")
    splits = []
    for i in range(n_splits):
        rng = np.random.default_rng([seed, i])
        chosen = None
        for _ in range(100):  # redraw until the training runs can separate r from s
            pick = set(rng.choice(runs, size=k, replace=False))
            candidate = obs["run"].isin(pick).to_numpy()
            try:
                _with_observations(data, obs[candidate]).check_design(min_steps=_min_steps(data))
            except DataError:
                continue
            chosen = candidate
            break
        if chosen is None:
            raise ProtocolError(
                f"protocol {protocol}: 100 random draws of {k} runs never gave two distinct "
                "shares and three steps per domain; use a larger K"
            )
        splits.append(_split(str(i), data, chosen, protocol))
    return splits


# ------------------------------------------------------------------------------ metrics
def _arrays(*values: Any) -> list[np.ndarray]:
    return [np.asarray(v, dtype=float) for v in values]


def mean_relative_error(observed: Any, predicted: Any) -> float:
    """Mean of ``|predicted / observed - 1|``.

    Examples
    --------
    >>> round(mean_relative_error([2.0, 4.0], [2.2, 3.8]), 12)
    0.075
    """
    obs, pred = _arrays(observed, predicted)
    return float(np.mean(np.abs(pred / obs - 1))) if obs.size else float("nan")


def max_relative_error(observed: Any, predicted: Any) -> float:
    """Maximum of ``|predicted / observed - 1|``.

    Examples
    --------
    >>> round(max_relative_error([2.0, 4.0], [2.2, 3.8]), 12)
    0.1
    """
    obs, pred = _arrays(observed, predicted)
    return float(np.max(np.abs(pred / obs - 1))) if obs.size else float("nan")


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


def coverage(observed: Any, lower: Any, upper: Any) -> float:
    """Share of observed values inside ``[lower, upper]``; NaN without intervals.

    Examples
    --------
    >>> coverage([1.0, 2.0, 3.0, 4.0], [0.5, 2.1, 2.0, 3.0], [1.5, 3.0, 4.0, 3.9])
    0.5
    """
    obs, lo, hi = _arrays(observed, lower, upper)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return float("nan")
    return float(np.mean((lo[ok] <= obs[ok]) & (obs[ok] <= hi[ok])))


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
        tag = f"{100 * p:g}"
        lo, hi = points[f"lower_{tag}"], points[f"upper_{tag}"]
        row[f"cover_{tag}"] = coverage(obs, lo, hi)
        row[f"width_{tag}"] = mean_relative_width(lo, hi, pred)
    lpd = points["lpd"].to_numpy(dtype=float)
    row["lpd"] = float(np.mean(lpd)) if np.isfinite(lpd).any() else float("nan")
    return row


METRIC_COLUMNS = (
    "n",
    "mre",
    "max_re",
    "r2_log",
    "spearman",
    "cover_50",
    "width_50",
    "cover_90",
    "width_90",
    "lpd",
)


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


# ------------------------------------------------------------------------------ result
_PERCENT = ("mre", "max_re", "cover_50", "width_50", "cover_90", "width_90")


def format_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics as strings: errors, coverage and widths in percent; R^2, rho, lpd plain."""
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


_HEADERS = {
    "n": "points",
    "mre": "MRE",
    "max_re": "max RE",
    "r2_log": "R2 (log)",
    "spearman": "Spearman",
    "cover_50": "cover 50%",
    "width_50": "width 50%",
    "cover_90": "cover 90%",
    "width_90": "width 90%",
    "lpd": "log pred. density",
}


@dataclass
class BacktestResult:
    """What :func:`backtest` measured.

    Attributes
    ----------
    protocol
        The protocol.
    points
        One row per (method, split, held-out point): ``method, split, run, domain, step,
        target, observed, predicted, lower_50, upper_50, lower_90, upper_90, lpd``; rows with
        domain ``"(mean of domains)"`` are the average over domains of a (run, step).
    metrics
        Index ``(method, domain)``, columns :data:`METRIC_COLUMNS` (see :func:`score`).
    data_summary
        One line describing the data.
    settings
        Methods, seed, splits, bootstrap size, sampler settings.
    fits
        One row per (method, split): seconds, and for Bayes whether the fit passed its
        diagnostics (``passed``), max r-hat and divergences.
    """

    protocol: Protocol
    points: pd.DataFrame
    metrics: pd.DataFrame
    data_summary: str
    settings: dict[str, Any] = field(default_factory=dict)
    fits: pd.DataFrame = field(default_factory=pd.DataFrame)

    def table(self) -> pd.DataFrame:
        """The formatted metrics with readable column names."""
        return format_metrics(self.metrics).rename(columns=_HEADERS)

    def headline(self) -> pd.DataFrame:
        """The ``"(all points)"`` and ``"(mean of domains)"`` rows of each method (numbers)."""
        keep = self.metrics.index.get_level_values("domain").isin([ALL_POINTS, ALL_DOMAINS])
        return self.metrics[keep]

    def failed_fits(self) -> int:
        """Bayesian fits that failed their convergence diagnostics."""
        if self.fits.empty or "passed" not in self.fits:
            return 0
        return int((self.fits["passed"] == False).sum())  # noqa: E712 (NaN for ls rows)

    def notes(self) -> list[str]:
        """Caveats to print beside the table (failed fits)."""
        out = []
        failed = self.failed_fits()
        if failed:
            total = int(self.fits["passed"].notna().sum())
            out.append(
                f"{failed} of {total} Bayesian fits FAILED their convergence diagnostics; their "
                "forecasts are included but should not be trusted"
            )
        return out

    def to_text(self) -> str:
        """The table shown on stdout."""
        lines = [
            f"backtest {self.protocol}: {self.protocol.describe()}",
            f"data: {self.data_summary}",
            f"held-out points: {self._held_counts()}",
            "",
            self.table().to_string(),
        ]
        lines += ["", *self._legend()]
        lines += [f"NOTE: {n}" for n in self.notes()]
        return "\n".join(lines)

    def _held_counts(self) -> str:
        pts = self.points[self.points["domain"] != ALL_DOMAINS]
        if pts.empty:
            return "none"
        first = pts[pts["method"] == pts["method"].iloc[0]]
        n_split = first["split"].nunique()
        by_target = first.groupby("target").size()
        parts = [f"{n} {t}" for t, n in by_target.items()]
        return f"{len(first)} per method ({', '.join(parts)}) over {n_split} split(s)"

    def _legend(self) -> list[str]:
        return [
            "MRE/max RE: |predicted/observed - 1| of the point forecast (Bayes: predictive "
            "median; ls: fitted curve); R2 (log): on log loss; Spearman: rank correlation of "
            "held-out runs at the last held-out step; cover/width: share of points inside the "
            "central interval and its mean width relative to the forecast (ls: run bootstrap "
            f"of the law + residual noise); {ALL_POINTS}: pooled over domains (R2, Spearman: "
            f"mean of the domains); {ALL_DOMAINS}: the average loss over domains",
        ]

    def to_markdown(self, title: str | None = None) -> str:
        """The formatted metrics as a Markdown table (with a title line when given)."""
        table = self.table().reset_index()
        header = "| " + " | ".join(table.columns) + " |"
        rule = "|" + "|".join("---" for _ in table.columns) + "|"
        body = [
            "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
            for row in table.itertuples(index=False)
        ]
        lines = [f"**{title}**", ""] if title else []
        return "\n".join([*lines, header, rule, *body])

    def to_html(self) -> str:
        """An HTML section for the report: heading, description, metrics table (escaped)."""
        notes = "".join(f"<p class='warning'>{html.escape(n)}</p>" for n in self.notes())
        return (
            f"<section class='backtest'><h2>Backtest: {html.escape(str(self.protocol))}</h2>"
            f"<p>{html.escape(self.protocol.describe())}</p>"
            f"<p>Data: {html.escape(self.data_summary)}</p>"
            f"<p>Held-out points: {html.escape(self._held_counts())}</p>{notes}"
            + self.table().to_html(escape=True, classes="metrics")
            + f"<p class='legend'>{html.escape(self._legend()[0])}</p></section>"
        )

    def to_csv(self, path: Any, *, points: bool = False) -> Any:
        """Write the metrics (or, with ``points=True``, the per-point table) as CSV, atomically."""
        frame = self.points if points else self.metrics.reset_index()
        return atomic_write_with(path, lambda p: frame.to_csv(p, index=False, float_format="%.10g"))


# ------------------------------------------------------------------------------ methods
def _held_with_average(held: pd.DataFrame, domains: Sequence[str]) -> pd.DataFrame:
    """Per-domain held-out rows plus the average of each (run, step) with every domain."""
    held = held[held["domain"].isin(domains)]
    g = held.groupby(["run", "step"], sort=False)
    full = g["domain"].transform("nunique") == len(domains)
    avg = (
        held[full]
        .groupby(["run", "step"], sort=False)
        .agg(loss=("loss", "mean"), target=("target", "first"))
        .reset_index()
        .assign(domain=ALL_DOMAINS)
    )
    return pd.concat([held, avg], ignore_index=True)


def _prediction_mixtures(data: MixtureData, runs: Sequence[str], domains: Sequence[str]):
    shares = data.mixtures.loc[list(runs), list(domains)].astype(float)
    return shares.where(shares > 0, _ZERO_STANDIN)


def _bayes_points(
    split: Split, data: MixtureData, spec: Spec | None, seed: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    from bimix_bayes.bayes.diagnostics import FitWarning
    from bimix_bayes.bayes.forecast import log_predictive_density, predict
    from bimix_bayes.bayes.model import BiMixModel

    model = BiMixModel(spec)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        idata = model.fit(split.train, seed=seed, progress_bar=False)
    domains = list(split.train.domains)
    held = _held_with_average(split.held, domains)
    steps = np.sort(held["step"].unique())
    # A run with any fitted checkpoint is continued (a domain curve it lacks gets a fresh
    # offset inside predict); a run with none is a new mixture.
    fitted_runs = set(split.train.runs)
    obs_runs = sorted(set(held["run"]) & fitted_runs)
    new_runs = sorted(set(held["run"]) - fitted_runs)
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if obs_runs:
            frames.append(predict(idata, steps, runs=obs_runs, prob=PROBS, seed=seed, attach=False))
        if new_runs:
            new_mix = _prediction_mixtures(data, new_runs, domains)
            frames.append(
                predict(idata, steps, mixtures=new_mix, prob=PROBS, seed=seed, attach=False)
            )
    pred = pd.concat(frames, ignore_index=True).rename(columns={"mixture": "run"})
    pred = pred.replace({"domain": {"(weighted mean of domains)": ALL_DOMAINS}})
    out = held.merge(pred, on=["run", "step", "domain"], how="left", validate="many_to_one")
    out = out.rename(columns={"loss": "observed", "median": "predicted"})
    per = out["domain"] != ALL_DOMAINS
    lpd = np.full(len(out), np.nan)
    pts = out.loc[per, ["run", "step", "domain", "observed"]].rename(
        columns={"run": "mixture", "observed": "loss"}
    )
    new_mix = _prediction_mixtures(data, new_runs, domains) if new_runs else None
    lpd[per.to_numpy()] = log_predictive_density(idata, pts, mixtures=new_mix, seed=seed)
    out["lpd"] = lpd
    diag = model.diagnostics_
    info = {
        "seconds": time.perf_counter() - t0,
        "passed": bool(diag.passed),
        "max_rhat": float(diag.max_rhat),
        "divergences": int(diag.divergences),
    }
    return out, info


def _ls_points(
    split: Split, data: MixtureData, n_bootstrap: int, seed: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    from bimix_bayes.laws.bimix import IdentifiableParams

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BootstrapWarning)
        fit = BiMixLeastSquares(n_bootstrap=n_bootstrap, seed=seed).fit(split.train)
    domains = list(fit.domains_)
    held = _held_with_average(split.held, domains)
    runs = list(dict.fromkeys(held["run"]))
    shares = _prediction_mixtures(data, runs, domains).to_numpy()
    log_r = np.log(shares)[:, None, :]
    steps = np.sort(held["step"].unique())
    log_s = np.log(steps)[None, :, None]

    def curve(params: pd.DataFrame) -> np.ndarray:
        p = params.loc[domains]
        return IdentifiableParams(
            log_floor=p["log_floor"].to_numpy(),
            log_reducible=p["log_reducible"].to_numpy(),
            alpha=p["alpha"].to_numpy(),
            beta=p["beta"].to_numpy(),
            s_ref=fit.s_ref_,
        ).log_loss(log_r, log_s)

    point = np.exp(curve(fit.params_))  # run x step x domain
    point = np.concatenate([point, point.mean(axis=-1, keepdims=True)], axis=-1)
    bounds = {}
    if fit.bootstrap_ is not None and not fit.bootstrap_.empty:
        rng = np.random.default_rng([seed, 4])
        rmse = fit.quality_.loc[domains, "rmse_log"].to_numpy()
        reps = [
            rep.set_index("domain")
            for _, rep in fit.bootstrap_.groupby("replicate")
            if set(domains) <= set(rep["domain"])
        ]
        draws = np.stack([curve(r) for r in reps])  # rep x run x step x domain
        draws = np.exp(draws + rng.standard_normal(draws.shape) * rmse)
        draws = np.concatenate([draws, draws.mean(axis=-1, keepdims=True)], axis=-1)
        for p in PROBS:
            tag = f"{100 * p:g}"
            bounds[f"lower_{tag}"], bounds[f"upper_{tag}"] = np.quantile(
                draws, [(1 - p) / 2, (1 + p) / 2], axis=0
            )
    labels = [*domains, ALL_DOMAINS]
    m, s, d = np.meshgrid(
        np.arange(len(runs)), np.arange(len(steps)), np.arange(len(labels)), indexing="ij"
    )
    pred = pd.DataFrame(
        {
            "run": np.asarray(runs, dtype=object)[m.ravel()],
            "step": steps[s.ravel()],
            "domain": np.asarray(labels, dtype=object)[d.ravel()],
            "predicted": point.ravel(),
        }
    )
    for p in PROBS:
        tag = f"{100 * p:g}"
        for side in ("lower", "upper"):
            key = f"{side}_{tag}"
            pred[key] = bounds[key].ravel() if key in bounds else np.nan
    out = held.merge(pred, on=["run", "step", "domain"], how="left", validate="many_to_one")
    out = out.rename(columns={"loss": "observed"}).assign(lpd=np.nan)
    return out, {"seconds": time.perf_counter() - t0}


def _fixed_budget_points(
    split: Split, data: MixtureData, method: str, n_bootstrap: int, seed: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """BiMix at one step, ``log L = k_d - alpha_d log r_d``, per domain.

    ``ls``: ordinary least squares, intervals from the run bootstrap plus residual noise (as for
    the bivariate law). ``bayes``: the conjugate Bayesian linear regression with the reference
    prior (flat on ``(k, alpha)``, ``1/sigma^2`` on the variance), whose predictive for a new
    mixture is Student-t with ``n - 2`` degrees of freedom on log loss: exact, no sampling.
    With one measurement per run, run offsets and checkpoint noise cannot be told apart.
    """
    from scipy.stats import t as student_t

    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 5])
    train = split.train
    domains = list(train.domains)
    held = _held_with_average(split.held, domains)
    runs = list(dict.fromkeys(held["run"]))
    shares = _prediction_mixtures(data, runs, domains).to_numpy()
    n_draws = max(n_bootstrap, 400)
    draws = np.empty((n_draws, len(runs), len(domains)))
    point = np.empty((len(runs), len(domains)))
    dens = {}
    for j, domain in enumerate(domains):
        obs = train.for_domain(domain)
        xs = np.column_stack([np.ones(len(obs)), np.log(obs["r"].to_numpy(dtype=float))])
        ys = np.log(obs["loss"].to_numpy(dtype=float))
        coef, *_ = np.linalg.lstsq(xs, ys, rcond=None)
        resid = ys - xs @ coef
        dof = max(len(ys) - 2, 1)
        s2 = float(resid @ resid) / dof
        x_new = np.column_stack([np.ones(len(runs)), np.log(shares[:, j])])
        mean = x_new @ coef
        point[:, j] = np.exp(mean)
        if method == "bayes":
            xtx_inv = np.linalg.pinv(xs.T @ xs)
            scale = np.sqrt(s2 * (1 + np.einsum("ij,jk,ik->i", x_new, xtx_inv, x_new)))
            draws[:, :, j] = np.exp(
                mean + scale * student_t.rvs(dof, size=(n_draws, len(runs)), random_state=rng)
            )
            dens[domain] = (mean, scale, dof)
        else:
            reps = []
            for _ in range(max(n_bootstrap, 1)):
                idx = rng.integers(0, len(ys), size=len(ys))
                c, *_ = np.linalg.lstsq(xs[idx], ys[idx], rcond=None)
                reps.append(x_new @ c)
            reps = np.array(reps)
            pick = rng.integers(0, len(reps), size=n_draws)
            draws[:, :, j] = np.exp(
                reps[pick]
                + rng.standard_normal(reps[pick].shape) * np.sqrt(float(resid @ resid) / len(ys))
            )
    if method == "bayes":
        point = np.median(draws, axis=0)
    point = np.concatenate([point, point.mean(axis=-1, keepdims=True)], axis=-1)
    draws = np.concatenate([draws, draws.mean(axis=-1, keepdims=True)], axis=-1)
    labels = [*domains, ALL_DOMAINS]
    m, d = np.meshgrid(np.arange(len(runs)), np.arange(len(labels)), indexing="ij")
    step = float(data.observations["step"].iloc[0])
    pred = pd.DataFrame(
        {
            "run": np.asarray(runs, dtype=object)[m.ravel()],
            "step": step,
            "domain": np.asarray(labels, dtype=object)[d.ravel()],
            "predicted": point.ravel(),
        }
    )
    if n_bootstrap or method == "bayes":
        for p in PROBS:
            tag = f"{100 * p:g}"
            lo, hi = np.quantile(draws, [(1 - p) / 2, (1 + p) / 2], axis=0)
            pred[f"lower_{tag}"], pred[f"upper_{tag}"] = lo.ravel(), hi.ravel()
    else:
        for p in PROBS:
            tag = f"{100 * p:g}"
            pred[f"lower_{tag}"] = pred[f"upper_{tag}"] = np.nan
    out = held.merge(pred, on=["run", "step", "domain"], how="left", validate="many_to_one")
    out = out.rename(columns={"loss": "observed"})
    lpd = np.full(len(out), np.nan)
    if method == "bayes":
        pos = {r: i for i, r in enumerate(runs)}
        for domain, (mean, scale, dof) in dens.items():
            sel = (out["domain"] == domain).to_numpy()
            i = out.loc[sel, "run"].map(pos).to_numpy()
            y = np.log(out.loc[sel, "observed"].to_numpy(dtype=float))
            lpd[sel] = student_t.logpdf(y, dof, loc=mean[i], scale=scale[i]) - y
    out["lpd"] = lpd
    info: dict[str, Any] = {"seconds": time.perf_counter() - t0}
    if method == "bayes":
        info.update({"passed": True, "max_rhat": float("nan"), "divergences": 0})
    return out, info


POINT_COLUMNS = (
    "method",
    "split",
    "run",
    "domain",
    "step",
    "target",
    "observed",
    "predicted",
    "lower_50",
    "upper_50",
    "lower_90",
    "upper_90",
    "lpd",
)


def backtest(
    data: MixtureData,
    protocol: str | Protocol,
    method: Method = "both",
    seed: int = 0,
    spec: Spec | Mapping[str, Any] | str | None = None,
    n_bootstrap: int = 200,
    n_splits: int = 5,
    progress: Any = None,
) -> BacktestResult:
    """Fit each method on the training part of every split; score its forecasts of the rest.

    Parameters
    ----------
    data
        Validated runs and observations.
    protocol
        ``"last-checkpoint"``, ``"horizon:F"`` or ``"holdout-mixtures:K"`` (or a
        :class:`Protocol`).
    method
        ``"bayes"``, ``"ls"`` or ``"both"``.
    seed
        Seed of the splits, the sampler and the bootstrap.
    spec
        Model spec of the Bayesian fits (a path, a mapping merged over the default, or None).
    n_bootstrap
        Least-squares run-bootstrap resamples (intervals); 0 for point forecasts only.
    n_splits
        Random splits of ``holdout-mixtures`` (ignored by the other protocols).
    progress
        Optional callable receiving one line per finished fit (e.g. ``print``).

    Returns
    -------
    BacktestResult

    Examples
    --------
    >>> from bimix_bayes.data.simulate import simulate_default
    >>> res = backtest(simulate_default(seed=1), "horizon:0.5", method="ls", n_bootstrap=20)
    >>> sorted(res.metrics.index.get_level_values("domain").unique())[:2]
    ['(all points)', '(mean of domains)']
    """
    protocol = parse_protocol(protocol)
    if method not in ("bayes", "ls", "both"):
        raise ValueError(f"method must be 'bayes', 'ls' or 'both', got {method!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    methods = ["bayes", "ls"] if method == "both" else [method]
    splits = make_splits(data, protocol, seed=seed, n_splits=n_splits)
    frames, fits = [], []
    for split in splits:
        for m in methods:
            if fixed_budget(data):
                pts, info = _fixed_budget_points(split, data, m, n_bootstrap, seed)
            elif m == "bayes":
                pts, info = _bayes_points(split, data, spec, seed)
            else:
                pts, info = _ls_points(split, data, n_bootstrap, seed)
            frames.append(pts.assign(method=m, split=split.name))
            fits.append({"method": m, "split": split.name, **info})
            if progress is not None:
                extra = "" if m == "ls" else (" (diagnostics FAILED)" if not info["passed"] else "")
                progress(
                    f"  {protocol} split {split.name}: {m} fitted and scored in "
                    f"{info['seconds']:.1f} s{extra}"
                )
    points = pd.concat(frames, ignore_index=True)[list(POINT_COLUMNS)]
    settings: dict[str, Any] = {
        "protocol": str(protocol),
        "methods": methods,
        "seed": seed,
        "splits": len(splits),
        "n_bootstrap": n_bootstrap,
    }
    if fixed_budget(data):
        settings["fixed_budget"] = True
    elif "bayes" in methods:
        from bimix_bayes.bayes.model import BiMixModel

        cfg = BiMixModel(spec).spec["sampler"]
        settings["sampler"] = f"{cfg['chains']} chains x {cfg['draws']} draws (+{cfg['tune']})"
    return BacktestResult(
        protocol=protocol,
        points=points,
        metrics=score(points),
        data_summary=data.summary(),
        settings=settings,
        fits=pd.DataFrame(fits),
    )
