"""Argument types of the ``bimix`` command line: each checks its value before any work is done.

A bad value is an ``argparse`` error, so the command exits with code 2 and says which option.

Examples
--------
>>> probability("0.9")
0.9
>>> count(1)("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be >= 1, got 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

__all__ = [
    "count",
    "domain_weights",
    "nonnegative_float",
    "objective",
    "pattern",
    "positive_float",
    "probability",
    "suffix",
]


def count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def _number(*, positive: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not np.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(
                f"must be a {'positive' if positive else 'non-negative'} number, got {text}"
            )
        return value

    return parse


positive_float = _number(positive=True)
nonnegative_float = _number(positive=False)


def suffix(*allowed: str):
    """An output path whose suffix is one of ``allowed`` (checked before any work is done)."""

    def parse(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() not in allowed:
            raise argparse.ArgumentTypeError(
                f"{text!r}: use a file name ending in {' or '.join(allowed)}"
            )
        return path

    return parse


def pattern(text: str) -> str:
    if "{domain}" not in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} must contain {{domain}} where the domain name goes, e.g. 'weight_{{domain}}'"
        )
    return text


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def objective(text: str):
    """``mean``, ``quantile:Q`` or ``cvar:Q``, as an
    :class:`~bimix_bayes.decision.objectives.Objective`."""
    from bimix_bayes.decision.objectives import Objective

    try:
        return Objective.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def domain_weights(text: str) -> dict[str, float]:
    """``name=weight,name=weight`` as a dict.

    Examples
    --------
    >>> domain_weights("code=2, web=1")
    {'code': 2.0, 'web': 1.0}
    """
    out: dict[str, float] = {}
    for item in text.split(","):
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise argparse.ArgumentTypeError(
                f"expected name=weight pairs separated by commas, got {item.strip()!r}"
            )
        out[name.strip()] = _number(positive=False)(value.strip())
    return out
