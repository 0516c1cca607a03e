"""Backtest protocols: what a backtest holds out, parsed from ``"last-checkpoint"``,
``"horizon:F"``, ``"holdout-mixtures:K"`` or ``"holdout-runs:PATTERN"``.

* ``last-checkpoint``: the paper's Table 1. Fit every checkpoint but each run's last one; predict
  the last one (an observed run continued one checkpoint further).
* ``horizon:F``: fit the checkpoints up to fraction ``F`` of the last step of the data (``step <=
  F * max step``); predict every later checkpoint (a run with no checkpoint left in the fit is
  predicted as a new mixture).
* ``holdout-mixtures:K``: the paper's Table 2. Fit ``K`` runs chosen at random (all their
  checkpoints); predict every checkpoint of the other runs, as new mixtures. Repeated over
  seeded random splits.
* ``holdout-runs:PATTERN``: a split given by the data. Fit the runs whose names match the
  shell-style pattern (:func:`fnmatch.fnmatchcase`: ``*`` any text, ``?`` one character,
  ``[ab]`` one of a set; case-sensitive), all their checkpoints; predict every checkpoint of the
  other runs, as new mixtures. One split, no randomness: for data that come with their own
  train/test split, e.g. RegMix's 512 training and 256 test mixtures
  (``holdout-runs:train-*``, runs named ``train-<i>`` and ``test-<i>`` by
  :func:`~bimix_bayes.data.public_loaders.load_regmix`).
* ``holdout-size:N``: for data with model sizes (``--size-col``). Fit every run of the sizes
  below ``N`` (``937M``, ``9.37e8``); predict every checkpoint of the sizes ``>= N``: a mixture
  fitted at smaller sizes is continued with its run effects, another is a new mixture.

Examples
--------
>>> p = parse_protocol("horizon:0.5")
>>> p, str(p)
(Protocol(kind='horizon', value=0.5), 'horizon:0.5')
>>> str(parse_protocol("holdout-runs:train-*"))
'holdout-runs:train-*'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PROTOCOL_HELP", "Protocol", "ProtocolError", "ProtocolKind", "parse_protocol"]

ProtocolKind = Literal[
    "last-checkpoint", "horizon", "holdout-mixtures", "holdout-runs", "holdout-size"
]

PROTOCOL_HELP = (
    "last-checkpoint | horizon:F (0 < F < 1) | holdout-mixtures:K (K >= 2 random training "
    "runs) | holdout-runs:PATTERN (fit the runs whose names match the shell pattern, e.g. "
    "'train-*' for RegMix's own split; predict the others) | holdout-size:N (data with model "
    "sizes: fit the sizes below N, e.g. 937M; predict the others)"
)


class ProtocolError(ValueError):
    """A backtest protocol string that cannot be parsed, or one the data cannot support."""


@dataclass(frozen=True)
class Protocol:
    """What a backtest holds out: each run's last checkpoint, the checkpoints past a share of the
    last step, or whole runs; build one with :func:`parse_protocol`.

    Attributes
    ----------
    kind
        ``"last-checkpoint"``, ``"horizon"``, ``"holdout-mixtures"`` or ``"holdout-runs"``.
    value
        The fraction ``F`` of ``horizon:F``, the number ``K`` of training runs of
        ``holdout-mixtures:K``, the run-name pattern of ``holdout-runs:PATTERN``, the smallest
        held-out size ``N`` of ``holdout-size:N``; None for ``last-checkpoint``.
    """

    kind: ProtocolKind
    value: float | int | str | None = None

    def __str__(self) -> str:
        if self.value is None:
            return self.kind
        if self.kind == "holdout-size":
            from bimix_bayes.data.loaders import format_group

            return f"{self.kind}:{format_group(self.value)}"
        if isinstance(self.value, str):
            return f"{self.kind}:{self.value}"
        return f"{self.kind}:{self.value:g}"

    def describe(self) -> str:
        """One sentence saying what is fitted and what is predicted."""
        if self.kind == "last-checkpoint":
            return "fit every checkpoint but each run's last; predict the last (Table 1 of BiMix)"
        if self.kind == "horizon":
            return (
                f"fit the checkpoints up to {self.value:g} x the last step; predict every later "
                "checkpoint"
            )
        if self.kind == "holdout-size":
            return (
                f"fit the model sizes below {str(self).partition(':')[2]}; predict every "
                "checkpoint of the larger sizes (a mixture fitted at smaller sizes keeps its "
                "run effects)"
            )
        if self.kind == "holdout-runs":
            return (
                f"fit the runs named like {self.value!r}; predict every checkpoint of the other "
                "runs as new mixtures (the data's own train/test split)"
            )
        return (
            f"fit {self.value} randomly chosen runs; predict every checkpoint of the other runs "
            "as new mixtures (Table 2 of BiMix)"
        )


def parse_protocol(text: str | Protocol) -> Protocol:
    """Parse ``"last-checkpoint"``, ``"horizon:F"``, ``"holdout-mixtures:K"`` or
    ``"holdout-runs:PATTERN"``.

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
    bimix_bayes.evaluation.protocols.ProtocolError: protocol 'horizon:2': F must lie in (0, 1) ...
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
    if name == "holdout-runs":
        if not value:
            raise ProtocolError(
                f"protocol {text!r}: holdout-runs needs a pattern of the training runs' names, "
                "e.g. holdout-runs:train-*"
            )
        return Protocol("holdout-runs", value)
    if name == "holdout-size":
        from bimix_bayes.data.loaders import parse_size

        size = parse_size(value)
        if size is None or not size > 0:
            raise ProtocolError(
                f"protocol {text!r}: holdout-size needs the smallest held-out model size, "
                "e.g. holdout-size:937M or holdout-size:9.37e8"
            )
        return Protocol("holdout-size", size)
    raise ProtocolError(f"unknown protocol {text!r}; use {PROTOCOL_HELP}")
