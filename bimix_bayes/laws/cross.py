"""Cross-domain mixing laws with a step dimension, written once: log-linear and BiMix-cross.

Ye et al. (Data Mixing Laws, ICLR 2025) let every training domain's share move every evaluation
loss: at a fixed budget ``L_i(r) = c_i + k_i exp(sum_j t_ij r_j)``, finite at zero shares. This
package adds the step (or token) dimension as BiMix does, with the mixture acting on the whole
step law, and a mixture term that is linear in the shares::

    log L_i(r, s) = m_i(r) + logaddexp(log_floor_i, log_reducible_i - beta_i log(s / s_ref))

    log-linear:   m_i(r) = -own_i r_o(i)          + sum_j cross_ij r_j
    BiMix-cross:  m_i(r) = -alpha_i log r_o(i)    + sum_j cross_ij r_j

with ``o(i)`` the training domain that is evaluation domain ``i`` (if any). The log-linear law
is finite at zero shares (a domain may be left out of a run); BiMix-cross is BiMix plus the
other domains' linear effects, and is BiMix exactly when every ``cross_ij`` is 0.

Why the mixture multiplies the whole step law. The form suggested for this package,
``exp(c_i) + exp(sum_j t_ij r_j) (s / s_ref)^-beta_i`` (Ye et al.'s constant ``c_i`` kept
fixed over steps), fits worst of the variants tried with least squares over all checkpoints:
mean relative error 2.73 % in-sample / 5.16 % leaving one mixture out on the embedded study
(BiMix 2.21 % / 2.68 %; this log-linear form 2.73 % / 5.41 %, BiMix-cross 1.52 % / 2.30 %), and
1.79 % / 1.86 % on SlimPajama 122M (BiMix 1.34 % / 1.38 %, this log-linear form 1.21 % / 1.36 %,
BiMix-cross 0.63 % / 0.69 %).
A mixture effect confined to the reducible part fades with the steps; the measured one does not.

Identifiability
---------------
The shares sum to 1, so adding ``k`` to every coefficient of row ``i`` and ``-k`` to its
intercept gives the same law (the reason Olmix drops ``k_i`` and Aioli fixes a base domain).
Here the cross effects of row ``i`` are zero on the own column and **sum to zero over the other
columns** (:func:`project_cross`). Then, under the log-linear law, the step law
``exp(log_floor_i) + exp(log_reducible_i) (s / s_ref)^-beta_i`` is the loss when the domain gets
no share and the others share the mixture evenly, ``own_i > 0`` is how much training on the
domain itself lowers its log loss from a share of 0 to 1, and ``cross_ij`` says which *other*
domains help more (< 0) or less (> 0) than average (under BiMix-cross, the step law is BiMix's
at share 1 of the own domain, the others' effects centred the same way). The
hierarchical prior shrinks the cross effects toward 0, i.e. toward "every other domain helps
alike", which is BiMix's assumption.

A law with BiMix's curvature that is also finite at zero shares puts the cross effects on
log effective shares instead: :mod:`bimix_bayes.laws.effective`.

One definition, two backends: every function takes ``math=numpy`` or ``pytensor.tensor``.

Examples
--------
>>> import numpy as np
>>> cross = project_cross(np.array([[0.0, 0.3, -0.1]]), np.array([0]))
>>> (cross.round(3) + 0.0).tolist()  # own column zero, others centred
[[0.0, 0.2, -0.2]]
>>> shares = np.array([0.0, 0.5, 0.5])
>>> float(loglinear_mixture_term(shares, shares[0], 1.0, cross[0]))  # no own share, even split
0.0
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "bimix_cross_mixture_term",
    "cross_basis",
    "cross_mask",
    "cross_term",
    "loglinear_mixture_term",
    "project_cross",
]


def cross_mask(own_index: np.ndarray, n_train: int) -> np.ndarray:
    """``(domains, n_train)`` with 1 where a cross effect is free (not the own column).

    ``own_index[i]`` is the training-domain column of evaluation domain ``i``, or ``-1`` when
    the evaluation domain is not a training domain (every column is then free).

    Examples
    --------
    >>> cross_mask(np.array([1, -1]), 3).tolist()
    [[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    """
    own_index = np.asarray(own_index, dtype=int)
    mask = np.ones((len(own_index), n_train))
    rows = np.flatnonzero(own_index >= 0)
    mask[rows, own_index[rows]] = 0.0
    return mask


def cross_basis(own_index: np.ndarray, n_train: int, *, centred: bool = True) -> np.ndarray:
    """An orthonormal basis of each row's identifiable cross effects, ``(domains, n_train, k)``.

    Row ``i``'s identifiable effects are the range of the projection of :func:`project_cross`
    (own column zero; with ``centred``, summing to zero over the other columns), of dimension
    ``k_i = n_train - [own column] - [centred]``. Its first ``k_i`` columns are a Helmert basis
    of the free columns (deterministic, so seeded fits reproduce), the others zero: ``B_i B_i^T``
    is that projection and ``B_i^T B_i`` is the identity on those ``k_i`` columns. Sampling
    ``v_i ~ Normal(0, sd^2 I)`` and ``cross_i = B_i v_i`` gives ``cross_i ~ Normal(0, sd^2 B_i
    B_i^T)``, the distribution of ``sd * P(z)``, ``z ~ Normal(0, I)``, without the directions
    the projection removes (``sampler.centre_cross``). ``k = n_train - [centred]`` whatever the
    rows, so that the shape depends on the number of training domains only (one compiled model).

    Examples
    --------
    >>> b = cross_basis(np.array([0]), 3)
    >>> (b[0] @ b[0].T).round(3).tolist()  # the projection: own column 0, the others centred
    [[0.0, 0.0, 0.0], [0.0, 0.5, -0.5], [0.0, -0.5, 0.5]]
    """
    own_index = np.asarray(own_index, dtype=int)
    mask = cross_mask(own_index, n_train)
    basis = np.zeros((len(own_index), n_train, max(n_train - int(centred), 1)))
    for i, free in enumerate(mask > 0):
        columns = np.flatnonzero(free)
        if not centred:
            basis[i, columns, np.arange(len(columns))] = 1.0
            continue
        for j in range(1, len(columns)):  # Helmert: the first j columns against column j
            basis[i, columns[:j], j - 1] = 1.0 / np.sqrt(j * (j + 1))
            basis[i, columns[j], j - 1] = -j / np.sqrt(j * (j + 1))
    return basis


def project_cross(raw: Any, own_index: np.ndarray, *, math: ModuleType = np) -> Any:
    """The identifiable cross effects of unconstrained ``raw`` ``(domains, n_train)``.

    Zero on each row's own column, centred over the others (they sum to zero). The projection
    is linear, so a Normal ``raw`` gives Normal cross effects. Of the two directions it removes
    per row, the row mean is the intercept's (shares sum to 1) under every law; the own entry
    is the own-share term's under ``loglinear`` (``-own r_o``, linear too) but not under
    ``bimix_cross``, where a term linear in the own share is left out by assumption: the own
    share acts through ``-alpha log r_o`` only.

    Examples
    --------
    >>> project_cross(np.array([[1.0, 2.0, 3.0]]), np.array([-1])).tolist()
    [[-1.0, 0.0, 1.0]]
    """
    mask = cross_mask(own_index, int(raw.shape[-1]))
    mean = (raw * mask).sum(axis=-1, keepdims=True) / mask.sum(axis=-1, keepdims=True)
    return (raw - mean) * mask


def cross_term(shares: Any, cross: Any) -> Any:
    """``sum_j cross_j r_j`` over the last axis (training domains) of both arguments.

    Examples
    --------
    >>> round(float(cross_term(np.array([0.25, 0.75]), np.array([0.4, -0.4]))), 12)
    -0.2
    """
    return (shares * cross).sum(axis=-1)


def bimix_cross_mixture_term(
    own_share: Any, shares: Any, alpha: Any, cross: Any, *, math: ModuleType = np
) -> Any:
    """BiMix-cross: ``m(r) = -alpha log r_o + sum_j cross_j r_j``.

    Examples
    --------
    >>> round(float(bimix_cross_mixture_term(0.5, np.array([0.5, 0.5]), 1.0,
    ...                                      np.array([0.0, 0.0]))), 6)  # log 2
    0.693147
    """
    return -alpha * math.log(own_share) + cross_term(shares, cross)


def loglinear_mixture_term(shares: Any, own_share: Any, own: Any, cross: Any) -> Any:
    """Log-linear: ``m(r) = -own r_o + sum_j cross_j r_j`` (log of the mixture factor).

    ``shares`` and ``cross`` broadcast over their last axis (the training domains); ``own_share``
    is the evaluation domain's own share (0 when it is not a training domain).

    Examples
    --------
    >>> float(loglinear_mixture_term(np.array([0.5, 0.5]), 0.5, 1.0, np.array([0.0, 0.0])))
    -0.5
    """
    return -own * own_share + cross_term(shares, cross)
