"""The mixture exponent's drift with training steps, written once (``[law] alpha_drift``, on by
default for ``bimix`` and ``bimix_cross``).

BiMix is separable: ``log L = -alpha log r + f(s)``, so a domain's share scales the whole
loss curve by the same factor at every step, and two mixtures' curves stay parallel in log
loss. Real runs are not always so: on the embedded tiny-LM study, fitting the first half of
every curve and forecasting the second, the error at the last checkpoint falls with the log
share (correlation -0.96 austen, -0.92 licenses, -0.89 wordnet): runs that give a domain a
larger share keep improving on it faster than the law allows. The smallest extension that
says so lets the exponent move with the log step::

    alpha(s) = alpha + drift * x,        x = log(s / s_ref)  (log S1(s) / S1(s_ref) with a
                                                              learning-rate schedule)
    log L = -alpha(s) log r + f(s) = -alpha log r + f(s) - drift * x * log r

``alpha`` keeps its meaning (the exponent at ``s_ref``); ``drift > 0`` widens the gap between
high- and low-share runs as training goes on. The term is linear in ``drift``, so a Normal
prior ``drift ~ Normal(0, alpha_drift_sd)`` per domain shrinks the law back to BiMix where the
data show no drift. It needs an own-share power law (``bimix``, ``bimix_cross``): under
``loglinear`` and ``effective`` the own share enters otherwise and may be zero.

Examples
--------
>>> import numpy as np
>>> float(drift_term(np.log(0.5), 1.0, 0.1))  # -0.1 * 1 * log 0.5
0.06931471805599453
>>> float(alpha_at(0.05, 0.01, np.log(4.0)).round(4))  # the exponent two doublings past s_ref
0.0639
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALPHA_DRIFT", "alpha_at", "drift_term"]

#: The posterior variable (and law parameter) of the exponent's drift per unit of log step.
ALPHA_DRIFT = "alpha_drift"


def drift_term(log_own_share: Any, x: Any, drift: Any) -> Any:
    """``-drift * x * log r``: what the drift adds to the log loss (numpy or pytensor)."""
    return -drift * x * log_own_share


def alpha_at(alpha: Any, drift: Any, x: Any) -> Any:
    """The mixture exponent at ``x = log(s / s_ref)``: ``alpha + drift * x``."""
    return alpha + drift * x
