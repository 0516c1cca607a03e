"""Each run's mixture, from its name, a file its loader found, or its parameters.

:func:`find_mixtures` is step 2 of :func:`~bimix_bayes.data.run_logs.build_data`: a regular
expression on the run name (one named group per domain), else the mixture a loader read from a
file, else the run's parameters named by a pattern (:data:`LOG_PROP_PATTERNS`; the first pattern
whose shares sum to 1 in every run wins, so ``weight_decay`` does not pass for a domain when
``share_*`` parameters exist), else one parameter holding a dict (:data:`MIXTURE_KEYS`). Shares
that sum to 100 are read as percent, with a note.

Examples
--------
>>> share("0.25"), share("n/a")
(0.25, nan)
>>> clean_domains({"web": "loss/web", "a/b": "loss/a/b"}, None)
{'web': 'loss/web'}
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from bimix_bayes.data.columns import PROP_PATTERNS, pattern_columns
from bimix_bayes.data.table import DataError, DataWarning, describe_locations

if TYPE_CHECKING:
    from bimix_bayes.data.run_logs import LogRun

__all__ = [
    "LOG_PROP_PATTERNS",
    "MIXTURE_KEYS",
    "clean_domains",
    "find_mixtures",
    "note",
    "parse_mapping",
    "share",
    "some",
]

LOG_PROP_PATTERNS = (
    "share_{domain}",
    "mixture.{domain}",
    "mixture/{domain}",
    "mixture_{domain}",
    *PROP_PATTERNS,
)
MIXTURE_KEYS = ("mixture", "data_mixture", "domain_weights", "mixture_weights", "weights")


def note(notes: list[str], source: str, message: str) -> None:
    """Record ``message`` in ``notes`` and emit it as a DataWarning."""
    notes.append(message)
    warnings.warn(f"{source}: {message}", DataWarning, stacklevel=4)


def some(names: Sequence[str], n: int = 20) -> str:
    """The first ``n`` names, and how many more."""
    names = list(names)
    return str(names[:n]) + (f" (and {len(names) - n} more)" if len(names) > n else "")


def parse_mapping(value: object) -> dict[str, object] | None:
    """A dict logged as a parameter (JSON or a Python literal), else None.

    Examples
    --------
    >>> parse_mapping("{'web': 0.7, 'code': 0.3}"), parse_mapping("0.7")
    ({'web': 0.7, 'code': 0.3}, None)
    """
    if isinstance(value, Mapping):
        return dict(value)
    text = str(value).strip()
    if not text.startswith("{"):
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            out = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(out, dict):
            return {str(k): v for k, v in out.items()}
    return None


def share(value: object) -> float:
    """A logged value as a number (NaN when it is not one)."""
    try:
        return float(str(value).strip())
    except ValueError:
        return float("nan")


def find_mixtures(
    runs: Sequence[LogRun],
    prop_pattern: str | None,
    run_name_pattern: str | None,
    tol: float,
    source: str,
    notes: list[str],
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Each run's mixture (runs without one are left out) and where it came from."""
    found: dict[str, dict[str, float]] = {}
    where: dict[str, str] = {}
    if run_name_pattern is not None:
        for run in runs:
            mixture = _from_name(run, run_name_pattern, source)
            if mixture is not None:
                found[run.name] = mixture
                where[run.name] = f"mixture from its name by {run_name_pattern!r}"
    else:
        pattern, keys, sure = _prop_keys(runs, prop_pattern, tol, source)
        for run in runs:
            whole = None if sure and keys.get(run.name) else _dict_param(run, source)
            if run.mixture is not None:
                found[run.name], where[run.name] = dict(run.mixture), str(run.mixture_where)
            elif whole is not None:
                found[run.name], where[run.name] = whole
            elif keys.get(run.name):
                found[run.name] = {d: _number(run, k, source) for d, k in keys[run.name].items()}
                where[run.name] = f"parameters {pattern!r} of {run.where}"
    percent = [
        r
        for r, m in found.items()
        if abs(sum(m.values()) - 100) <= 100 * tol and all(0 <= v <= 100 for v in m.values())
    ]
    if percent:
        for r in percent:
            found[r] = {d: v / 100 for d, v in found[r].items()}
        note(
            notes,
            source,
            f"shares of {len(percent)} run(s) summed to 100 and were read as "
            f"percent ({describe_locations(percent)})",
        )
    return found, where


def _number(run: LogRun, key: str, source: str, value: object = None) -> float:
    value = run.params[key] if value is None else value
    x = share(value)
    if not np.isfinite(x):
        raise DataError(
            f"{source}: {run.where}: parameter {key!r} = {value!r} is not a share (a number "
            "in [0, 1]); fix the logged value or name the share parameters with --prop-pattern"
        )
    return x


def _dict_param(run: LogRun, source: str) -> tuple[dict[str, float], str] | None:
    """The mixture in a parameter holding a dict (:data:`MIXTURE_KEYS`), and where it is."""
    for key, value in run.params.items():
        mapping = parse_mapping(value) if key.lower() in MIXTURE_KEYS else None
        if mapping:
            shares = {str(d): _number(run, key, source, v) for d, v in mapping.items()}
            return shares, f"parameter {key!r} of {run.where}"
    return None


def _prop_keys(
    runs: Sequence[LogRun], given: str | None, tol: float, source: str
) -> tuple[str | None, dict[str, dict[str, str]], bool]:
    """The share-parameter pattern, per run domain -> parameter name, and whether the shares
    sum to 1 in every run (else a dict parameter is preferred where a run has one)."""
    best: tuple[str, dict[str, dict[str, str]], int] | None = None
    for pattern in [given] if given else LOG_PROP_PATTERNS:
        keys = {
            r.name: clean_domains(pattern_columns(list(r.params), pattern), given) for r in runs
        }
        if not given:  # a detected pattern names numbers only (not ``mixture_weights = {...}``)
            keys = {
                name: {d: k for d, k in ks.items() if np.isfinite(share(params[k]))}
                for (name, ks), params in zip(keys.items(), (r.params for r in runs), strict=True)
            }
        n = sum(len(k) for k in keys.values())
        if n == 0:
            continue
        sums = [sum(share(r.params[k]) for k in keys[r.name].values()) for r in runs]
        if all(s == 0 or abs(s - 1) <= tol or abs(s - 100) <= 100 * tol for s in sums):
            return pattern, keys, True
        if best is None or n > best[2]:
            best = (pattern, keys, n)
    if given and best is None:
        params = sorted({k for r in runs for k in r.params})
        raise DataError(
            f"{source}: no run parameter matches the share pattern {given!r}; parameters: "
            f"{some(params)}"
        )
    return (best[0], best[1], given is not None) if best else (None, {}, False)


def clean_domains(found: dict[str, str], given: str | None) -> dict[str, str]:
    """Detected domain names hold no '/' (``loss/{domain}`` must not read ``loss/a/b``)."""
    return found if given else {d: k for d, k in found.items() if "/" not in d}


def _from_name(run: LogRun, pattern: str, source: str) -> dict[str, float] | None:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise DataError(
            f"run name pattern {pattern!r} is not a regular expression ({exc})"
        ) from exc
    if not regex.groupindex:
        raise DataError(
            f"run name pattern {pattern!r} names no domain: use one named group per domain, "
            r"e.g. 'web(?P<web>[\d.]+)_code(?P<code>[\d.]+)'"
        )
    m = regex.search(run.name)
    if m is None:
        return None
    return {d: _number(run, d, source, v) for d, v in m.groupdict().items() if v is not None}
