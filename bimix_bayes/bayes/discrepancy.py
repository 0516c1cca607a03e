"""The error all runs share when a forecast leaves the fitted steps, written once.

Real loss curves leave the law when extrapolated, and every run of a study leaves it together:
the end of the learning-rate schedule, the data order and the evaluation set are shared, so
the error is common to all runs of a domain and correlated across domains. On public backtests
its sign and size differ between studies and nothing in the fitted range foretells its sign;
its size grows with how far the runs' mean leaves the law inside the range across very
different studies (log-log correlation 0.86 over 14), but a width scaled by that misfit
calibrates the embedded study and SlimPajama worse than one width for all
(``reports/extrapolation_prior.md``). No term fitted to one study can calibrate it, so its width
is a prior estimated across studies, shipped in the spec's ``[discrepancy]`` section::

    delta[d](s) = omega * h(s) * g[d],     g ~ Normal(0, R),  R = (1 - rho) I + rho J
    h(s) = log2(s / s_last) beyond the last fitted step, log2(s_first / s) before the first,
           0 inside the fitted range

``omega`` (``sd_per_doubling``, 0.0125) and ``rho`` (``domain_correlation``, 0.5) were calibrated
on Bayesian ``horizon:0.5`` backtests of 14 public studies (SlimPajama's six sizes, Ye et al.'s
seven sets, the embedded study): the values whose 90 % intervals came closest to 90 % across
them (``benchmarks/extrapolation_prior_bayes.py``, ``reports/extrapolation_prior_bayes.md``),
and the values each leave-one-study-out fold picks from the other 13.
``g`` is drawn once per posterior draw and shared by every mixture and step of a forecast: it
widens each forecast's interval (and the mean over domains, through ``rho``) but cancels when
two mixtures are compared at the same step, as it should, since it moves every run alike.

A fit of several model sizes (``--size-col``) gets the same kind of term for a forecast at a
size outside the fitted ones: ``omega_N h_N g_N[d]``, ``h_N`` the doublings of the size beyond
the fitted sizes, ``omega_N = size_sd_per_doubling`` (0.005) and its own correlation across
domains ``rho_N = size_domain_correlation`` (0.5), both calibrated on size backtests of
SlimPajama and Ye et al.'s 5Mix that leave out the sizes the validation scores
(``benchmarks/size_prior.py``), drawn independently of the step's.

Examples
--------
>>> import numpy as np
>>> h = doublings_outside(np.array([500.0, 2000.0, 8000.0]), first=1000.0, last=4000.0)
>>> h.tolist()
[1.0, 0.0, 1.0]
>>> bend = shared_bend(h, 3, omega=0.01, rho=0.5, shape=(4, 250), rng=np.random.default_rng(0))
>>> bend.shape, bool((bend[:, :, 1] == 0).all())
((4, 250, 3, 3), True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "EXTRAPOLATION_LIMIT",
    "ExtrapolationWarning",
    "bend_sd",
    "doublings_outside",
    "extrapolation_note",
    "shared_bend",
]

#: Doublings of the step beyond the fitted range (8x) past which a forecast is flagged: the
#: public backtests check at most 2x-4x, so beyond 8x no measurement supports the intervals.
EXTRAPOLATION_LIMIT = 3.0


class ExtrapolationWarning(UserWarning):
    """A forecast far outside the fitted steps: its interval is a prior guess, not a measurement."""


def doublings_outside(steps: np.ndarray, *, first: float, last: float) -> np.ndarray:
    """``h``: how many doublings of the step each of ``steps`` lies outside ``[first, last]``."""
    steps = np.asarray(steps, dtype=float)
    return np.maximum(np.log2(steps / last), 0.0) + np.maximum(np.log2(first / steps), 0.0)


def shared_bend(
    h: np.ndarray,
    n_domains: int,
    *,
    omega: float,
    rho: float,
    shape: tuple[int, ...],
    rng: np.random.Generator,
) -> np.ndarray:
    """Draws of ``delta``, shaped (*shape, step, domain): one ``g`` per draw, shared by steps."""
    common = rng.standard_normal((*shape, 1))
    own = rng.standard_normal((*shape, n_domains))
    g = np.sqrt(rho) * common + np.sqrt(1.0 - rho) * own
    return omega * np.asarray(h, dtype=float)[:, None] * g[..., None, :]


def bend_sd(h: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """The sd of ``delta`` at ``h`` for one domain under the spec's ``[discrepancy]`` settings."""
    if not settings["extrapolation"]:
        return np.zeros_like(np.asarray(h, dtype=float))
    return settings["sd_per_doubling"] * np.asarray(h, dtype=float)


def extrapolation_note(
    steps: np.ndarray, *, first: float, last: float, unit: str = "steps"
) -> str | None:
    """A sentence when a step lies more than :data:`EXTRAPOLATION_LIMIT` doublings outside
    ``[first, last]``; None otherwise.

    Examples
    --------
    >>> extrapolation_note(np.array([2e4]), first=1e3, last=1e4) is None
    True
    >>> print(extrapolation_note(np.array([1e6]), first=1e3, last=1e4))  # doctest: +ELLIPSIS
    forecast at 1e+06 steps is 100x the last fitted step (1e+04); beyond 8x ...
    """
    steps = np.asarray(steps, dtype=float)
    h = doublings_outside(steps, first=first, last=last)
    worst = int(np.argmax(h))
    if h[worst] <= EXTRAPOLATION_LIMIT:
        return None
    s = steps[worst]
    where = (
        f"{s / last:.3g}x the last fitted step ({last:.3g})"
        if s > last
        else f"1/{first / s:.3g} of the first fitted step ({first:.3g})"
    )
    return (
        f"forecast at {s:.3g} {unit} is {where}; beyond {2**EXTRAPOLATION_LIMIT:.0f}x no "
        "backtest supports the law or its intervals (the shared extrapolation error grows with "
        "log2 of the ratio, but the law itself may no longer hold): treat it as a guess"
    )
