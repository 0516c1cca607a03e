"""The effective-data law: BiMix's log-share curvature, finite at zero shares, written once.

Effective-data laws (AutoScale, Kang et al. 2024; Hernandez et al.'s transfer as effective
data) write a domain's loss as a power law of the data it *effectively* sees: its own tokens
plus what the other domains transfer, ``L_i = L0_i + sum_j (N0_ij + D r_j)^-gamma_ij``. A
domain left out of a run (``r = 0``) still sees ``N0``: the loss is finite there, which
BiMix's ``r^-alpha`` is not. In this package's multiplicative form (the mixture scales the
whole step law, :mod:`bimix_bayes.laws.cross`), at a fixed budget ``D``, each domain's
effective share is its share plus a floor ``eps``, and each effective share acts as a power
law::

    L_i ∝ (r_o + eps)^-alpha_i * prod_{j != o} (r_j + eps)^cross_ij

with ``o = o(i)`` the training domain that is evaluation domain ``i``. Taking logs and moving
the constants ``log eps`` into the step law's intercepts gives the mixture term of the law
``effective`` (:data:`~bimix_bayes.laws.registry.EFFECTIVE`)::

    m_i(r) = -alpha_i f(r_o) + sum_{j != o} cross_ij f(r_j),    f(r) = log(1 + r / eps)

    log L_i(r, s) = m_i(r) + logaddexp(log_floor_i, log_reducible_i - beta_i log(s / s_ref))

The sum of power laws is replaced by a product (a first-order expansion of ``log sum`` in the
logs of its terms), which keeps the law a linear regression at one step
(:mod:`bimix_bayes.laws.fixed_budget`) and one exponent per (domain, training domain), the
parametrisation of the other cross-domain laws.

What it keeps and what it changes
---------------------------------
* **BiMix's curvature.** For ``r >> eps``, ``f(r) = log r - log eps + O(eps / r)``: with
  ``cross = 0`` the law is BiMix (``L ∝ r^-alpha``) with intercepts shifted by ``alpha log
  eps``; as ``eps -> 0`` it is BiMix at every positive share. The log-linear law (``-own
  r``) has no such curvature: on RegMix it cannot say that the first percent of a domain
  matters far more than the next ten.
* **Finite at zero.** ``f(0) = 0``: a domain left out of a run has the loss of its step law
  (``exp(log_floor) + ...`` times the others' factors), which is BiMix's loss at the share
  ``eps``: zero shares are kept (``--zero-policy keep``).
* **Evaluation-only targets.** A domain with no share of its own has no own term (``f`` of
  no share is 0, as under ``loglinear``): every training share acts through ``cross``.
* **Cross effects on effective shares.** ``cross_ij`` is the exponent of training domain
  ``j``'s effective share: doubling ``r_j + eps`` multiplies ``L_i`` by ``2^cross_ij``;
  ``cross_ij < 0``: domain ``j`` helps domain ``i``. ``cross = 0`` is BiMix's assumption
  (the others' shares do not matter), the target of the prior's shrinkage.

The share floor ``eps`` (:data:`SHARE_FLOOR` = 0.01)
-----------------------------------------------------
One fixed value for every domain, a property of the law (not fitted, not set per spec): one
share point, the order of the smallest shares that public mixture designs use on purpose
(SlimPajama 122M: 0.02; RegMix: half of its positive shares are below 0.026). It was chosen
on RegMix 1M's 512 training runs only (5-fold cross-validation of the fixed-budget conjugate
regression, never the 256 test runs), cross effects not centred:

==========  ==============  =====================  ================  ==============
``eps``     Spearman        Spearman of the mean   MRE (all          CV log density
            Pile-CC         over 13 domains        domains)          (nats, summed)
==========  ==============  =====================  ================  ==============
0.0001      0.897           0.946                  3.57 %            11572
0.001       0.939           0.953                  3.47 %            **12283**
0.003       0.959           0.948                  3.80 %            12231
**0.01**    **0.976**       0.933                  4.38 %            11789
0.03        0.981           0.908                  5.06 %            11062
loglinear   0.888           0.567                  8.10 %            7762
==========  ==============  =====================  ================  ==============

A smaller floor fits the domains that jump from their first token on (dm_mathematics) and
the loss averaged over domains better; a larger one ranks the web text better (Pile-CC, RegMix's
target, learns much from other domains: its own share matters less near 0). 0.01 sits where
the ranking of the target domain is within 0.005 of its best and the all-domain fit within 4 %
of its best (log density) and far above the log-linear law's on every column; it is a choice
of the law, so every data set gets the same one. A per-domain floor would be a parameter with a
prior (nonlinear in the regression); not done here.

Identifiability
---------------
The row is not projected as the linear-share laws' is (:func:`~bimix_bayes.laws.cross.
project_cross`): ``f`` is strictly concave, so ``sum_{j != o} f(r_j)`` is not a function of
``r_o`` and the intercept through ``sum r = 1`` (the linear-share laws' reason to centre), and
the common level of a row is a real effect: how much spreading the rest of the mixture over the
other domains, rather than concentrating it, changes the loss. Only the own column is zero (the
own share acts through ``alpha``). Centring it away did worse in the same cross-validation
(eps 0.01: Pile-CC 0.958, mean 0.895, log density 11256). Weakly identified:

* the **common level of a row** against ``alpha`` and the intercept: when the runs' shares of
  the other domains fall as the own share rises, ``sum_{j != o} f(r_j)`` moves against
  ``f(r_o)``; and for a larger ``eps``, ``f(r) ≈ r / eps`` turns linear and the common level
  tends to the exact non-identifiability of the linear-share laws. The prior (``cross``
  shrunk toward 0) decides what the data leave open;
* ``cross_ij`` of a training domain whose share hardly varies over the runs;
* the floor itself, which is fixed (above), not fitted.

One definition, two backends: every function takes ``math=numpy`` or ``pytensor.tensor``.

Examples
--------
>>> import numpy as np
>>> float(effective_share(0.0))  # finite at zero: no own data, no own term
0.0
>>> shares = np.array([0.0, 0.25, 0.75])
>>> round(float(effective_mixture_term(shares, 0.25, 0.1, np.array([0.0, 0.0, -0.05]))), 4)
-0.5423
>>> r = np.array([0.2, 0.5])  # far above the floor: BiMix's slope in log r, nearly
>>> (np.diff(effective_share(r)) / np.diff(np.log(r))).round(3).tolist()
[0.968]
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from bimix_bayes.laws.cross import cross_term

__all__ = [
    "SHARE_FLOOR",
    "effective_mixture_term",
    "effective_share",
    "effective_share_derivatives",
]

#: ``eps``: the share every domain effectively has when a run leaves it out (module docstring).
SHARE_FLOOR = 0.01


def effective_share(shares: Any, floor: float = SHARE_FLOOR, *, math: ModuleType = np) -> Any:
    """``f(r) = log(1 + r / eps)``: the log effective share, 0 at a zero share.

    Examples
    --------
    >>> effective_share(np.array([0.0, 0.01, 1.0])).round(4).tolist()
    [0.0, 0.6931, 4.6151]
    """
    return math.log1p(shares / floor)


def effective_share_derivatives(
    shares: np.ndarray, floor: float = SHARE_FLOOR
) -> tuple[np.ndarray, np.ndarray]:
    """``f'(r) = 1 / (r + eps)`` and ``f''(r) = -1 / (r + eps)^2`` (numpy; for the solver).

    Examples
    --------
    >>> [v.tolist() for v in effective_share_derivatives(np.array([0.0]), 0.5)]
    [[2.0], [-4.0]]
    """
    slope = 1.0 / (np.asarray(shares, dtype=float) + floor)
    return slope, -(slope**2)


def effective_mixture_term(
    shares: Any,
    own_share: Any,
    alpha: Any,
    cross: Any,
    floor: float = SHARE_FLOOR,
    *,
    math: ModuleType = np,
) -> Any:
    """``m(r) = -alpha f(r_o) + sum_j cross_j f(r_j)`` with ``f`` :func:`effective_share`.

    ``shares`` and ``cross`` broadcast over their last axis (the training domains; ``cross``
    is 0 on the own column); ``own_share`` is the evaluation domain's own share (0 when it is
    not a training domain: no own term).

    Examples
    --------
    >>> float(effective_mixture_term(np.array([0.0, 1.0]), 0.0, 0.1, np.array([0.0, 0.0])))
    0.0
    """
    own = -alpha * effective_share(own_share, floor, math=math)
    return own + cross_term(effective_share(shares, floor, math=math), cross)
