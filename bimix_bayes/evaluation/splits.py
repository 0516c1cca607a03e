"""Train/held-out splits of a backtest: leak-free, seeded, and checked to be fittable.

Every observation is either fitted or held out, never both. A held-out observation whose run and
domain have checkpoints in the training part is an :data:`~bimix_bayes.data.labels.OBSERVED`
target (the run continued); any other is a :data:`~bimix_bayes.data.labels.NEW` target (a new
mixture).

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> (split,) = make_splits(simulate_default(seed=1), "horizon:0.5")
>>> sorted(split.held["target"].unique())
['observed run']
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

import numpy as np
import pandas as pd

from bimix_bayes.data.labels import NEW, OBSERVED
from bimix_bayes.data.table import DataError, MixtureData
from bimix_bayes.data.validate import run_keys
from bimix_bayes.evaluation.protocols import Protocol, ProtocolError, parse_protocol

__all__ = ["Split", "fixed_budget", "make_splits"]


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
        Held-out observations (``run, step, domain, loss``, and ``size`` for data with model
        sizes) plus ``target``: ``"observed run"``
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
    held = held.assign(target=np.where(observed, OBSERVED, NEW))
    try:
        train.check_design(min_steps=_min_steps(data))
    except DataError as exc:
        raise ProtocolError(
            f"protocol {protocol}: the training part of split {name} cannot be fitted: {exc}"
        ) from None
    return Split(name, train, held)


def _named_split(data: MixtureData, protocol: Protocol) -> Split:
    """The one split of ``holdout-runs:PATTERN``: the runs matching the pattern are fitted."""
    pattern = str(protocol.value)
    runs = list(data.runs)
    chosen = [r for r in runs if fnmatchcase(str(r), pattern)]
    if not chosen or len(chosen) == len(runs):
        what = "no run" if not chosen else "every run"
        raise ProtocolError(
            f"protocol {protocol}: {what} of {data.source} matches {pattern!r} ({len(runs)} "
            f"runs, e.g. {runs[:3]}); the pattern must pick some runs to fit and leave others "
            "to predict"
        )
    return _split("0", data, data.observations["run"].isin(chosen).to_numpy(), protocol)


def _size_split(data: MixtureData, protocol: Protocol) -> Split:
    """The one split of ``holdout-size:N``: the sizes below ``N`` are fitted."""
    if not data.has_sizes:
        raise ProtocolError(
            f"protocol {protocol}: {data.source} has no model-size dimension; load it with "
            "--size-col naming the size column"
        )
    below = [s for s in data.sizes if s < float(protocol.value)]
    listed = ", ".join(f"{s:.4g}" for s in data.sizes)
    if not below or len(below) == len(data.sizes):
        raise ProtocolError(
            f"protocol {protocol}: the data's sizes are {listed}; N must leave some sizes to "
            "fit and some to predict"
        )
    if len(below) < 2:
        raise ProtocolError(
            f"protocol {protocol}: the data's sizes are {listed}; N must leave at least two "
            "sizes to fit: the size slopes are learnt from the fitted sizes, and from one they "
            "are the prior's (fitting one size of 2 and forecasting the other gave intervals "
            "94 % wide); choose a larger N, or backtest another way (horizon:0.5)"
        )
    return _split("0", data, data.observations["size"].to_numpy() < float(protocol.value), protocol)


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
        Random splits for ``holdout-mixtures`` (one split otherwise; ``holdout-runs`` is one
        given split).

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
    if fixed_budget(data) and protocol.kind not in ("holdout-mixtures", "holdout-runs"):
        raise ProtocolError(
            f"protocol {protocol}: the data have a single step (a fixed budget); only "
            "holdout-mixtures:K and holdout-runs:PATTERN apply"
        )
    if protocol.kind == "last-checkpoint":
        last = obs.groupby(run_keys(obs))["step"].transform("max").to_numpy(dtype=float)
        return [_split("0", data, step < last, protocol)]
    if protocol.kind == "horizon":
        cutoff = float(protocol.value) * float(step.max())
        if not (step <= cutoff).any():
            distinct = np.unique(step)
            least = distinct[min(2, len(distinct) - 1)] / distinct[-1]  # three steps to fit
            unit = 10.0 ** (np.floor(np.log10(least)) - 2)
            least = np.ceil(least / unit) * unit  # 3 significant digits, rounded up
            raise ProtocolError(
                f"protocol {protocol}: it fits the steps up to {protocol.value} x the last "
                f"({cutoff:.4g}), but the first checkpoint of {data.source} is at "
                f"{distinct[0]:.4g}: nothing is left to fit; use horizon:F with F of at least "
                f"{least:.3g} (three distinct steps to fit)"
            )
        return [_split("0", data, step <= cutoff, protocol)]
    if protocol.kind == "holdout-runs":
        return [_named_split(data, protocol)]
    if protocol.kind == "holdout-size":
        return [_size_split(data, protocol)]
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
