"""The laws a fit can use, each as one unit: its name, what it says, its parameters, its math.

Every law is evaluated through :meth:`Law.log_loss` with the same arguments, so the Bayesian
model, the forecasts and the checks do not need to know which law they run::

    law.log_loss(shares, own_share, x, params, math=np)

``shares`` holds the training-domain shares (last axis), ``own_share`` the evaluation domain's
own share, ``x = log(s / s_ref)`` and ``params`` the law's per-domain parameters (named by
:attr:`Law.params`; ``cross`` has a last axis over training domains). All broadcast.

Examples
--------
>>> sorted(LAWS)
['bimix', 'bimix_cross', 'effective', 'loglinear']
>>> get_law("loglinear").finite_at_zero
True
>>> get_law("chinchilla")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
KeyError: "unknown law 'chinchilla'; known laws: bimix, bimix_cross, effective, loglinear ..."
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from bimix_bayes.laws.bimix import log_mixture_factor
from bimix_bayes.laws.cross import bimix_cross_mixture_term, loglinear_mixture_term
from bimix_bayes.laws.drift import ALPHA_DRIFT, drift_term
from bimix_bayes.laws.effective import SHARE_FLOOR, effective_mixture_term, effective_share
from bimix_bayes.laws.schedule import step_term
from bimix_bayes.laws.size import SIZE_PARAMS, at_size

__all__ = [
    "BIMIX",
    "BIMIX_CROSS",
    "DEFAULT_LAW",
    "EFFECTIVE",
    "LAWS",
    "LOGLINEAR",
    "Law",
    "get_law",
]


@dataclass(frozen=True)
class Law:
    """One mixing law: a mixture term ``m(r)`` times BiMix's step law.

    Every law of the package has the form ``log L = m(r) + logaddexp(log_floor, log_reducible -
    beta x)``: they differ in the mixture term only (:meth:`mixture_term`).

    Attributes
    ----------
    name
        Its name in specs (``[law] name``) and on the command line (``--law``).
    summary
        One line: the equation and its source.
    params
        The per-domain parameters :meth:`log_loss` reads (posterior variables of a fit).
    population
        The parameters with a ``[priors.NAME]`` prior in a spec (pooled across domains or
        per domain, ``priors.NAME.pooled``); each is the log of a positive parameter or an
        unbounded one.
    finite_at_zero
        Whether a zero share gives a finite loss (observations with zero share are kept).
    cross_domain
        Whether other domains' shares move a domain's loss (a ``cross`` parameter).
    share_floor
        The effective-data law's ``eps`` (:mod:`bimix_bayes.laws.effective`): the cross effects
        act on ``log(1 + r / eps)`` and the own share through ``-alpha log(1 + r / eps)``;
        None: the cross effects act on the shares themselves (:meth:`cross_features`).
    centred_cross
        Whether a row's cross effects are centred over the other domains (the linear-share
        laws, whose common level is the intercept's: :func:`~bimix_bayes.laws.cross.
        project_cross`); else only the own column is zero.
    """

    name: str
    summary: str
    params: tuple[str, ...]
    population: tuple[str, ...]
    finite_at_zero: bool
    cross_domain: bool
    _mixture_term: Callable[..., Any]
    share_floor: float | None = None
    centred_cross: bool = True

    @property
    def fits_evaluation_only(self) -> bool:
        """Whether it can fit an evaluation domain that is not a training domain (no share of
        its own: the own-share term is 0 and every training share acts through ``cross``).

        Examples
        --------
        >>> [law.name for law in LAWS.values() if law.fits_evaluation_only]
        ['loglinear', 'effective']
        """
        return self.cross_domain and self.finite_at_zero

    def cross_features(self, shares: Any, *, math: ModuleType = np) -> Any:
        """What the cross effects multiply: ``m(r) = own term + sum_j cross_j g(r_j)`` with
        ``g(r) = r`` (``bimix_cross``, ``loglinear``) or ``log(1 + r / eps)`` (``effective``).

        Examples
        --------
        >>> EFFECTIVE.cross_features(np.array([0.0, 0.01])).round(4).tolist()
        [0.0, 0.6931]
        >>> LOGLINEAR.cross_features(np.array([0.0, 0.01])).tolist()
        [0.0, 0.01]
        """
        if self.share_floor is None:
            return shares
        return effective_share(shares, self.share_floor, math=math)

    def mixture_term(
        self, shares: Any, own_share: Any, params: Mapping[str, Any], *, math: ModuleType = np
    ) -> Any:
        """``m(r)``: the log of the factor by which the mixture scales the step law.

        Examples
        --------
        >>> round(float(BIMIX.mixture_term(None, 0.5, {"alpha": 1.0})), 6)  # 0.5 ** -1
        0.693147
        """
        return self._mixture_term(shares, own_share, params, math)

    def log_loss(
        self,
        shares: Any,
        own_share: Any,
        x: Any,
        params: Mapping[str, Any],
        *,
        z: Any = None,
        u: Any = None,
        math: ModuleType = np,
    ) -> Any:
        """Log loss of the law; see the module docstring for the arguments.

        With ``z = log(N / N_ref)`` and the size slopes in ``params`` (a fit of data with
        model sizes), the parameters are first moved to that size
        (:func:`~bimix_bayes.laws.size.at_size`). With a learning-rate schedule, ``x`` is
        ``log(S1(s) / S1(s_ref))`` and ``u`` the annealing covariate
        (:mod:`bimix_bayes.laws.schedule`): ``params["anneal"] * u`` is subtracted. With
        ``params["alpha_drift"]`` (``[law] alpha_drift``) the own-share exponent moves with
        ``x`` (:mod:`bimix_bayes.laws.drift`).

        Examples
        --------
        >>> p = {"log_floor": 0.0, "log_reducible": 0.0, "alpha": 0.1, "beta": 0.5}
        >>> round(float(np.exp(BIMIX.log_loss(np.array([1.0]), 1.0, 0.0, p))), 6)
        2.0
        """
        if z is not None and SIZE_PARAMS[0] in params:
            params = at_size(params, params, z, math=math)
        step = step_term(x, params, u, math=math)
        out = self.mixture_term(shares, own_share, params, math=math) + step
        if ALPHA_DRIFT in params:
            out = out + drift_term(math.log(own_share), x, params[ALPHA_DRIFT])
        return out

    @property
    def own_power_law(self) -> bool:
        """Whether the mixture term has BiMix's power law in a positive own share,
        ``-alpha log r_own`` (``bimix``, ``bimix_cross``).

        Examples
        --------
        >>> [law.name for law in LAWS.values() if law.own_power_law]
        ['bimix', 'bimix_cross']
        """
        return "alpha" in self.params and not self.finite_at_zero

    @property
    def can_drift(self) -> bool:
        """Whether the own-share exponent may drift with the step (``[law] alpha_drift``): the
        laws with an :attr:`own_power_law`."""
        return self.own_power_law


def _bimix(shares: Any, own_share: Any, p: Mapping[str, Any], math: ModuleType) -> Any:
    return log_mixture_factor(math.log(own_share), p["alpha"])


def _bimix_cross(shares: Any, own_share: Any, p: Mapping[str, Any], math: ModuleType) -> Any:
    return bimix_cross_mixture_term(own_share, shares, p["alpha"], p["cross"], math=math)


def _loglinear(shares: Any, own_share: Any, p: Mapping[str, Any], math: ModuleType) -> Any:
    return loglinear_mixture_term(shares, own_share, p["own"], p["cross"])


def _effective(shares: Any, own_share: Any, p: Mapping[str, Any], math: ModuleType) -> Any:
    return effective_mixture_term(
        shares, own_share, p["alpha"], p["cross"], EFFECTIVE.share_floor, math=math
    )


BIMIX = Law(
    name="bimix",
    summary=(
        "BiMix (Ge et al. 2024): L_i = A_i r_i^-alpha_i (B_i s^-beta_i + C_i); a domain's loss "
        "depends on its own share only"
    ),
    params=("log_floor", "log_reducible", "alpha", "beta"),
    population=("log_floor", "log_reducible", "log_alpha", "log_beta"),
    finite_at_zero=False,
    cross_domain=False,
    _mixture_term=_bimix,
)

BIMIX_CROSS = Law(
    name="bimix_cross",
    summary=(
        "BiMix with cross-domain effects: L_i = r_i^-alpha_i exp(sum_j cross_ij r_j) "
        "(exp(c_i) + exp(b_i) (s/s_ref)^-beta_i), cross shrunk toward 0 (= BiMix)"
    ),
    params=("log_floor", "log_reducible", "alpha", "beta", "cross"),
    population=("log_floor", "log_reducible", "log_alpha", "log_beta"),
    finite_at_zero=False,
    cross_domain=True,
    _mixture_term=_bimix_cross,
)

LOGLINEAR = Law(
    name="loglinear",
    summary=(
        "log-linear (Ye et al. 2025, with a step law): L_i = exp(-own_i r_i + sum_j "
        "cross_ij r_j) (exp(c_i) + exp(b_i) (s/s_ref)^-beta_i)"
    ),
    params=("log_floor", "log_reducible", "own", "beta", "cross"),
    population=("log_floor", "log_reducible", "log_own", "log_beta"),
    finite_at_zero=True,
    cross_domain=True,
    _mixture_term=_loglinear,
)

EFFECTIVE = Law(
    name="effective",
    summary=(
        "effective data (BiMix's curvature, finite at zero shares): L_i = (1 + r_i/eps)^-alpha_i "
        f"prod_j (1 + r_j/eps)^cross_ij (exp(c_i) + exp(b_i) (s/s_ref)^-beta_i), eps = "
        f"{SHARE_FLOOR:g}, cross shrunk toward 0 (= BiMix above eps)"
    ),
    params=("log_floor", "log_reducible", "alpha", "beta", "cross"),
    population=("log_floor", "log_reducible", "log_alpha", "log_beta"),
    finite_at_zero=True,
    cross_domain=True,
    _mixture_term=_effective,
    share_floor=SHARE_FLOOR,
    centred_cross=False,
)

#: The laws by name.
LAWS: dict[str, Law] = {law.name: law for law in (BIMIX, BIMIX_CROSS, LOGLINEAR, EFFECTIVE)}
#: The law of a fit saved before laws were selectable (the default spec names its own law:
#: ``[law] name`` in ``bimix_bayes/bayes/specs/bimix.toml``).
DEFAULT_LAW = "bimix"


def get_law(name: str) -> Law:
    """The law called ``name``; a ``KeyError`` naming the known laws otherwise."""
    try:
        return LAWS[name]
    except KeyError:
        known = ", ".join(sorted(LAWS))
        raise KeyError(
            f"unknown law {name!r}; known laws: {known} (list them with `bimix laws`)"
        ) from None
