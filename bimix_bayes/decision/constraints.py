"""Constraints on a training mixture: bounds, fixed shares and how much data each domain has.

Real mixtures are not free points of the simplex. A team may want at least 5 % code, must keep
the licensed books at exactly 3 %, and cannot use more high-quality text than it has: with
``available_i`` tokens of domain ``i`` and at most ``max_epochs`` passes over it, a run of
``total_tokens`` tokens needs ``r_i * total_tokens <= max_epochs * available_i``. Every constraint
becomes a lower and an upper bound per domain; together with ``sum(r) = 1`` that is the feasible
set. Conflicting constraints are a :class:`ConstraintError` that names them.

A constraints file (TOML or YAML) holds any of::

    total_tokens = 2e10     # tokens of the planned run (default: the target step when the
                            # fit's data volume is tokens)
    max_epochs = 4          # default passes over any domain's available data (default 1)

    [domains.github]
    min = 0.05
    max = 0.30
    [domains.book]
    fixed = 0.03
    [domains.wikipedia]
    available_tokens = 1.2e9
    max_epochs = 2          # overrides the default for this domain

Examples
--------
>>> c = MixtureConstraints(lower={"code": 0.1}, upper={"web": 0.5})
>>> b = c.bounds(["web", "code", "books"])
>>> b.lower.tolist(), b.upper.tolist()
([0.0, 0.1, 0.0], [0.5, 1.0, 1.0])
>>> MixtureConstraints(fixed={"web": 0.7}, lower={"code": 0.4}).bounds(["web", "code"])
Traceback (most recent call last):
...
bimix_bayes.decision.constraints.ConstraintError: the lower bounds sum to 1.1 > 1: web fixed at \
0.7, code at least 0.4 (min); lower some of them
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bimix_bayes.data.labels import near_names
from bimix_bayes.data.table import DataError

__all__ = ["Bounds", "ConstraintError", "MixtureConstraints", "load_constraints"]

_TOL = 1e-9
_DOMAIN_KEYS = ("min", "max", "fixed", "available_tokens", "max_epochs")
_TOP_KEYS = ("total_tokens", "max_epochs", "domains")


class ConstraintError(DataError):
    """Constraints that no mixture satisfies, or a constraints file that cannot be read."""


@dataclass(frozen=True)
class Bounds:
    """Per-domain lower and upper share bounds, with the reason each bound holds.

    ``lower_reason[i]`` / ``upper_reason[i]`` say which constraint set the bound (empty when it is
    the simplex's own 0 or 1).
    """

    domains: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    lower_reason: tuple[str, ...]
    upper_reason: tuple[str, ...]

    @property
    def binding_any(self) -> bool:
        """Whether any bound is tighter than the simplex's own [0, 1]."""
        return bool(np.any(self.lower > 0) or np.any(self.upper < 1))

    def status(self, shares: np.ndarray, tol: float = 1e-7) -> list[str]:
        """Per domain: ``fixed``, ``at lower bound``, ``at upper bound``, ``left out`` (a
        share of 0 that no bound imposes: a law finite at zero chose it) or ``free``."""
        out = []
        for lo, hi, r in zip(self.lower, self.upper, shares, strict=True):
            if hi - lo <= tol:
                out.append("fixed")
            elif r <= lo + tol and lo > 0:
                out.append("at lower bound")
            elif r >= hi - tol and hi < 1:
                out.append("at upper bound")
            elif r <= tol:
                out.append("left out")
            else:
                out.append("free")
        return out


@dataclass(frozen=True)
class MixtureConstraints:
    """Bounds, fixed shares and data availability for a mixture.

    Parameters
    ----------
    lower, upper
        Minimum / maximum share per domain (domains not named: 0 and 1).
    fixed
        Domains whose share is set (both bounds).
    available_tokens
        Tokens of text available per domain; with ``total_tokens`` and ``max_epochs`` it caps the
        share at ``max_epochs * available / total_tokens``.
    total_tokens
        Tokens of the planned run. Needed with ``available_tokens``;
        :func:`~bimix_bayes.decision.recommend.optimize` fills it with the target when the fit
        counts tokens.
    max_epochs
        Passes allowed over a domain's data (default 1); ``epochs`` overrides it per domain.
    epochs
        Per-domain override of ``max_epochs``.
    design_lower, design_upper
        The lowest and highest share of each domain among the fitted runs
        (:meth:`within_design`): a law fitted there is extrapolated outside.
    source
        Where the constraints were read from (a file), named in messages; "" when built in code.

    Examples
    --------
    >>> c = MixtureConstraints(available_tokens={"wiki": 1e9}, total_tokens=1e10, max_epochs=2)
    >>> b = c.bounds(["web", "wiki"])
    >>> float(b.upper[1]), b.upper_reason[1]
    (0.2, 'available 1e+09 tokens x 2 epoch(s) / 1e+10 total tokens')
    """

    lower: Mapping[str, float] = field(default_factory=dict)
    upper: Mapping[str, float] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)
    available_tokens: Mapping[str, float] = field(default_factory=dict)
    total_tokens: float | None = None
    max_epochs: float = 1.0
    epochs: Mapping[str, float] = field(default_factory=dict)
    design_lower: Mapping[str, float] = field(default_factory=dict)
    design_upper: Mapping[str, float] = field(default_factory=dict)
    source: str = ""

    @property
    def is_empty(self) -> bool:
        """True when nothing constrains the mixture beyond the simplex."""
        return not (
            self.lower or self.upper or self.fixed or self.available_tokens or self.design_upper
        )

    def with_total_tokens(self, total_tokens: float) -> MixtureConstraints:
        """A copy whose ``total_tokens`` is set (when it was not given)."""
        if self.total_tokens is not None:
            return self
        return replace(self, total_tokens=float(total_tokens))

    def within_design(self, mixtures: pd.DataFrame) -> MixtureConstraints:
        """A copy that also keeps every share within the range of the fitted runs' shares.

        A law is fitted where the runs are; a mixture with a share outside that range relies
        on the law's form alone (a log-linear law's optimum often lies at a corner of the
        simplex no run came near).

        Examples
        --------
        >>> runs = pd.DataFrame({"web": [0.2, 0.6], "code": [0.8, 0.4]})
        >>> b = MixtureConstraints().within_design(runs).bounds(["web", "code"])
        >>> b.lower.tolist(), b.upper.tolist(), b.upper_reason[0]
        ([0.2, 0.4], [0.6, 0.8], 'at most 0.6 (the highest share in the fitted runs)')
        """
        shares = mixtures.astype(float)
        return replace(
            self,
            design_lower={str(d): float(v) for d, v in shares.min().items()},
            design_upper={str(d): float(v) for d, v in shares.max().items()},
        )

    def _check_names(self, domains: Sequence[str]) -> None:
        known = set(domains)
        for what, key, table in (
            ("lower", "min", self.lower),
            ("upper", "max", self.upper),
            ("fixed", "fixed", self.fixed),
            ("available_tokens", "available_tokens", self.available_tokens),
            ("max_epochs", "max_epochs", self.epochs),
        ):
            unknown = sorted(set(table) - known)
            if unknown:
                hint = near_names(unknown, domains)
                where = (
                    f"{self.source}: [domains.{', '.join(unknown)}] ({key}):"
                    if self.source
                    else f"{what}:"
                )
                raise ConstraintError(
                    f"{where} unknown domain(s) {unknown}; the fit's domains are "
                    f"{list(domains)}{hint}"
                )
            for name, value in table.items():
                v = float(value)
                ok = (
                    0 <= v <= 1
                    if what in ("lower", "upper", "fixed")
                    else v > 0 or (what == "available_tokens" and v >= 0)
                )
                if not np.isfinite(v) or not ok:
                    share = what in ("lower", "upper", "fixed")
                    want = "a share in [0, 1]" if share else "positive"
                    where = (
                        f"{self.source}: [domains.{name}] {key}"
                        if self.source
                        else (f"{what} of {name!r}")
                    )
                    hint = (
                        f" (percent? write {v / 100:g} for {value!r})"
                        if share and 1 < v <= 100
                        else ""
                    )
                    raise ConstraintError(f"{where} must be {want}, got {value!r}{hint}")
        if self.available_tokens and self.total_tokens is None:
            raise ConstraintError(
                "available_tokens needs total_tokens (the tokens of the planned run): set "
                "total_tokens in the constraints, or target a token count with a fit on tokens"
            )
        if self.total_tokens is not None and not self.total_tokens > 0:
            raise ConstraintError(f"total_tokens must be positive, got {self.total_tokens!r}")
        if not self.max_epochs > 0:
            raise ConstraintError(f"max_epochs must be positive, got {self.max_epochs!r}")

    def bounds(self, domains: Sequence[str]) -> Bounds:
        """Lower and upper share per domain, checked for feasibility.

        Raises
        ------
        ConstraintError
            When a domain's lower bound exceeds its upper bound, or the lower bounds sum above 1,
            or the upper bounds sum below 1; the message names the constraints in conflict.
        """
        domains = [str(d) for d in domains]
        self._check_names(domains)
        n = len(domains)
        lo, hi = np.zeros(n), np.ones(n)
        lo_why, hi_why = [""] * n, [""] * n
        for i, d in enumerate(domains):
            if d in self.lower:
                lo[i], lo_why[i] = float(self.lower[d]), f"at least {float(self.lower[d]):g} (min)"
            if d in self.upper:
                hi[i], hi_why[i] = float(self.upper[d]), f"at most {float(self.upper[d]):g} (max)"
            if d in self.design_lower and self.design_lower[d] > lo[i]:
                lo[i] = float(self.design_lower[d])
                lo_why[i] = f"at least {lo[i]:.4g} (the lowest share in the fitted runs)"
            if d in self.design_upper and self.design_upper[d] < hi[i]:
                hi[i] = float(self.design_upper[d])
                hi_why[i] = f"at most {hi[i]:.4g} (the highest share in the fitted runs)"
            if d in self.available_tokens:
                epochs = float(self.epochs.get(d, self.max_epochs))
                avail = float(self.available_tokens[d])
                cap = epochs * avail / float(self.total_tokens)  # type: ignore[arg-type]
                if cap < hi[i]:
                    hi[i] = cap
                    hi_why[i] = (
                        f"available {avail:g} tokens x {epochs:g} epoch(s) / "
                        f"{self.total_tokens:g} total tokens"
                    )
            if d in self.fixed:
                v = float(self.fixed[d])
                if v < lo[i] - _TOL or v > hi[i] + _TOL:
                    limit = lo_why[i] if v < lo[i] else hi_why[i]
                    raise ConstraintError(
                        f"{d}: fixed at {v:g} conflicts with its other bound ({limit}); "
                        "drop one of them"
                    )
                lo[i] = hi[i] = v
                lo_why[i] = hi_why[i] = f"fixed at {v:g}"
        for i, d in enumerate(domains):
            if lo[i] > hi[i] + _TOL:
                raise ConstraintError(
                    f"{d}: lower bound {lo[i]:.4g} ({lo_why[i]}) exceeds upper bound "
                    f"{hi[i]:.4g} ({hi_why[i]}); relax one of them"
                )
        if lo.sum() > 1 + _TOL:
            named = [f"{d} {lo_why[i]}" for i, d in enumerate(domains) if lo[i] > 0]
            raise ConstraintError(
                f"the lower bounds sum to {lo.sum():.4g} > 1: {', '.join(named)}; lower some of "
                "them"
            )
        if hi.sum() < 1 - _TOL:
            named = [f"{d} {hi_why[i]}" for i, d in enumerate(domains) if hi[i] < 1]
            free = [d for i, d in enumerate(domains) if hi[i] >= 1]
            raise ConstraintError(
                f"the upper bounds sum to {hi.sum():.4g} < 1, so no mixture fills the run: "
                f"{', '.join(named)}"
                + (f" (unbounded: {', '.join(free)})" if free else "")
                + "; raise some caps (more data, more epochs or fewer total tokens)"
            )
        return Bounds(tuple(domains), lo, np.minimum(hi, 1.0), tuple(lo_why), tuple(hi_why))

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], source: str = "constraints"
    ) -> MixtureConstraints:
        """Constraints from the nested mapping of a constraints file (see the module docs)."""
        unknown = sorted(set(values) - set(_TOP_KEYS))
        if unknown:
            raise ConstraintError(
                f"{source}: unknown key(s) {unknown}; known: {', '.join(_TOP_KEYS)} "
                "(per-domain settings go under [domains.NAME])"
            )
        tables: dict[str, dict[str, float]] = {
            "min": {},
            "max": {},
            "fixed": {},
            "available_tokens": {},
            "max_epochs": {},
        }
        domains = values.get("domains", {}) or {}
        if not isinstance(domains, Mapping):
            raise ConstraintError(f"{source}: 'domains' must be a table of domain names")
        for name, settings in domains.items():
            if not isinstance(settings, Mapping):
                raise ConstraintError(
                    f"{source}: domains.{name} must be a table with keys {', '.join(_DOMAIN_KEYS)}"
                )
            bad = sorted(set(settings) - set(_DOMAIN_KEYS))
            if bad:
                raise ConstraintError(
                    f"{source}: domains.{name}: unknown key(s) {bad}; known: "
                    f"{', '.join(_DOMAIN_KEYS)}"
                )
            for key, value in settings.items():
                tables[key][str(name)] = _number(value, f"{source}: domains.{name}.{key}")
        top = {
            k: _number(values[k], f"{source}: {k}")
            for k in ("total_tokens", "max_epochs")
            if k in values
        }
        return cls(
            lower=tables["min"],
            upper=tables["max"],
            fixed=tables["fixed"],
            available_tokens=tables["available_tokens"],
            total_tokens=top.get("total_tokens"),
            max_epochs=top.get("max_epochs", 1.0),
            epochs=tables["max_epochs"],
            source=source,
        )


def _number(value: Any, where: str) -> float:
    if isinstance(value, str):  # PyYAML reads 1.0e9 (no sign in the exponent) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConstraintError(f"{where}: expected a number, got {value!r}")
    return float(value)


def load_constraints(path: str | os.PathLike[str]) -> MixtureConstraints:
    """Read a constraints file (``.toml``, ``.yaml`` or ``.yml``; layout in the module docs).

    Examples
    --------
    >>> load_constraints("missing.toml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bimix_bayes.decision.constraints.ConstraintError: constraints file missing.toml does not exist
    """
    p = Path(path)
    if not p.is_file():
        raise ConstraintError(f"constraints file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            values = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            values = yaml.safe_load(text) or {}
        else:
            raise ConstraintError(
                f"constraints file {p}: unknown extension {p.suffix!r}; use .toml, .yaml or .yml"
            )
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConstraintError(f"constraints file {p} is not valid: {exc}") from exc
    if not isinstance(values, Mapping):
        raise ConstraintError(f"constraints file {p}: expected a table of settings at the top")
    return MixtureConstraints.from_mapping(values, source=str(p))
