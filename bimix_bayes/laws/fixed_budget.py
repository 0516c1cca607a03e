"""Every law at a fixed budget: one step per run, the law a linear regression of the log loss.

At a single step the step law of :mod:`bimix_bayes.laws.registry` is a constant per evaluation
domain, absorbed into an intercept ``k_d``, and every law of the package becomes

.. math:: \\log L_d(r) = k_d + m_d(r) = x_d(r)^\\top \\theta_d ,

linear in its coefficients ``theta_d`` with a design row ``x_d(r)`` (:func:`design`):

=============== ================================================ ==============================
law             design row ``x_d(r)``                            coefficients
=============== ================================================ ==============================
``bimix``       ``(1, log r_o)``                                 ``(k, -alpha)``
``bimix_cross`` ``(1, log r_o, r_j - rbar for j != o)``          ``(k, -alpha, cross_j)``
``loglinear``   ``(1, r_o, r_j - rbar for j != o)``              ``(k, -own, cross_j)``
``effective``   ``(1, f(r_o), f(r_j) for j != o)``               ``(k, -alpha, cross_j)``
=============== ================================================ ==============================

with ``f(r) = log(1 + r / eps)`` the log effective share of :mod:`bimix_bayes.laws.effective`
(not centred: its common level is identified, see there).

with ``o`` the training domain that is evaluation domain ``d`` and ``rbar`` the mean share of
the *other* training domains (an evaluation-only domain has no own column; under ``loglinear``
all training domains are then "others").

Identifiability (as :mod:`bimix_bayes.laws.cross`). The shares sum to 1, so the raw row
``(1, r_1, ..., r_J)`` of Ye et al.'s law has one direction too many: adding ``c`` to every
share coefficient and ``-c`` to the intercept changes nothing. Centring the other domains'
shares removes it: ``sum_j cross_j (r_j - rbar) = sum_j (cross_j - mean(cross)) r_j``, so only
the centred cross effects (own column zero, the others summing to zero) reach the loss, exactly
the parametrisation of the hierarchical model (:func:`~bimix_bayes.laws.cross.project_cross`).
We centre instead of dropping a reference column because (a) no domain is singled out, (b) a
prior on the coefficients that is exchangeable over the other domains ("every other domain helps
alike", the hierarchical model's shrinkage target) stays exchangeable, and (c) the intercept
keeps its meaning: ``k_d`` is the log loss when domain ``d`` gets no share and the others share
the mixture evenly (``loglinear``), or when ``d`` is trained alone (``bimix``, ``bimix_cross``:
``r_o = 1``, the others all 0, centred to 0). The centred columns sum to zero, so the design has
one null direction; least squares returns the minimum-norm coefficients (centred cross
effects) and a proper prior makes the Bayesian posterior proper, with the same centred mean.

Zero shares. ``loglinear`` is finite at a zero share, so runs that leave a domain out are kept.
The BiMix laws read ``log r_o``: a zero own share is refused (:class:`ZeroShareError`, naming
``--law loglinear``); zero shares of *other* domains are fine under ``bimix_cross``.

Examples
--------
>>> import numpy as np
>>> shares = np.array([[0.0, 0.5, 0.5], [0.5, 0.25, 0.25]])
>>> design("loglinear", shares, own_index=0)
array([[1. , 0. , 0. , 0. ],
       [1. , 0.5, 0. , 0. ]])
>>> design_columns("loglinear", ["web", "code", "books"], own_index=0)
['intercept', 'own_share', 'cross:code', 'cross:books']
>>> design("bimix", shares, own_index=0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
bimix_bayes.laws.fixed_budget.ZeroShareError: law 'bimix' reads log r of the own share...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bimix_bayes.laws.registry import Law, get_law

__all__ = [
    "ZeroShareError",
    "coefficient_kinds",
    "design",
    "design_columns",
]


class ZeroShareError(ValueError):
    """A BiMix law asked to fit or predict a domain at a zero share of its own (log 0)."""


def _law(law: Law | str) -> Law:
    return law if isinstance(law, Law) else get_law(law)


def _others(n_train: int, own_index: int) -> np.ndarray:
    return np.array([j for j in range(n_train) if j != own_index], dtype=int)


#: The name of the own-share column of :func:`design`, by the law's own-share parameter.
OWN_COLUMNS = {"alpha": "log_share", "own": "own_share"}
#: ... and under a law with a share floor (``effective``: ``f(r_o)``, coefficient ``-alpha``).
EFFECTIVE_OWN_COLUMN = "effective_share"


def _own_column(law: Law) -> str:
    if law.share_floor is not None:
        return EFFECTIVE_OWN_COLUMN
    return OWN_COLUMNS["own" if "own" in law.params else "alpha"]


def design_columns(law: Law | str, training_domains: Sequence[str], own_index: int) -> list[str]:
    """The names of :func:`design`'s columns: ``intercept``, then ``log_share`` (BiMix laws),
    ``own_share`` (``loglinear``) or ``effective_share`` (``effective``) when the domain is
    trained, then ``cross:<domain>``.

    Examples
    --------
    >>> design_columns("bimix_cross", ["web", "code"], own_index=1)
    ['intercept', 'log_share', 'cross:web']
    >>> design_columns("effective", ["web", "code"], own_index=0)
    ['intercept', 'effective_share', 'cross:code']
    """
    law = _law(law)
    names = ["intercept"]
    if own_index >= 0:
        names.append(_own_column(law))
    if law.cross_domain:
        names += [f"cross:{training_domains[j]}" for j in _others(len(training_domains), own_index)]
    return names


def coefficient_kinds(law: Law | str, training_domains: Sequence[str], own_index: int) -> list[str]:
    """Per column of :func:`design`: ``"intercept"``, ``"own"`` or ``"cross"`` (what a prior
    scale applies to).

    Examples
    --------
    >>> coefficient_kinds("loglinear", ["web", "code", "books"], own_index=-1)
    ['intercept', 'cross', 'cross', 'cross']
    """
    names = design_columns(law, training_domains, own_index)
    own = {"log_share", "own_share", EFFECTIVE_OWN_COLUMN}
    return ["own" if n in own else n.partition(":")[0] for n in names]


def design(law: Law | str, shares: Any, own_index: int, *, domain: str | None = None) -> np.ndarray:
    """The design rows ``x_d(r)`` of ``law`` at the mixtures ``shares``: ``(mixtures, columns)``.

    Parameters
    ----------
    law
        A :class:`~bimix_bayes.laws.registry.Law` or its name.
    shares
        ``(mixtures, training domains)``: every training domain's share (rows sum to 1).
    own_index
        The column of the evaluation domain's own training domain; ``-1`` for an
        evaluation-only domain (refused by the BiMix laws, which need an own share).
    domain
        The evaluation domain's name, for messages.

    Raises
    ------
    ZeroShareError
        A BiMix law and a zero own share (``log 0``), or no own domain.

    Examples
    --------
    >>> x = design("bimix_cross", np.array([[0.5, 0.3, 0.2]]), own_index=0)
    >>> x.round(4).tolist()  # 1, log 0.5, and the others centred on their mean 0.25
    [[1.0, -0.6931, 0.05, -0.05]]
    >>> design("effective", np.array([[0.0, 0.99, 0.01]]), own_index=0).round(4).tolist()
    [[1.0, 0.0, 4.6052, 0.6931]]
    """
    law = _law(law)
    shares = np.atleast_2d(np.asarray(shares, dtype=float))
    n, n_train = shares.shape
    name = repr(domain) if domain is not None else f"column {own_index}"
    columns = [np.ones(n)]
    if own_index >= 0:
        own = shares[:, own_index]
        if law.share_floor is not None:
            columns.append(law.cross_features(own))
        elif law.finite_at_zero:
            columns.append(own)
        else:
            zero = np.flatnonzero(own <= 0)
            if zero.size:
                raise ZeroShareError(
                    f"law {law.name!r} reads log r of the own share, and {zero.size} of {n} "
                    f"mixture(s) give domain {name} a zero share (log 0 is -inf); use --law "
                    "loglinear (finite at zero shares; in Python spec={'law': {'name': "
                    "'loglinear'}}), or read the data with zero_policy 'drop' (--zero-policy "
                    "drop) to leave those losses out"
                )
            columns.append(np.log(own))
    elif not law.finite_at_zero:
        raise ZeroShareError(
            f"law {law.name!r} needs the evaluation domain's own share, and domain {name} is not "
            "a training domain; use --law loglinear (every training domain's share enters "
            "linearly)"
        )
    if law.cross_domain:
        others = law.cross_features(shares[:, _others(n_train, own_index)])
        if law.centred_cross:
            others = others - others.mean(axis=1, keepdims=True)
        columns += list(others.T)
    return np.column_stack(columns)
