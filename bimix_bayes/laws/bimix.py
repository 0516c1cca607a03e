"""The BiMix law, written once.

BiMix (Ge et al., arXiv 2405.14908, Eq. 3) says that the validation loss on evaluation domain
``i`` after ``s`` training steps (or tokens), with that domain's share ``r_i`` of the training
mixture, is::

    L_i(r_i, s) = A_i * r_i**(-alpha_i) * (B_i * s**(-beta_i) + C_i)

It is the product of two univariate laws: the *mixture law* ``A r**-alpha`` (loss against the
domain's share at a fixed step) and the *step law* ``B s**-beta + C`` (loss against steps for a
fixed mixture).

Identifiability and the convention used everywhere in this package
------------------------------------------------------------------
The five paper coefficients are not identifiable: ``(k A, B / k, C / k)`` gives the same loss for
any ``k > 0``. Only ``A C``, ``A B`` and the exponents are determined by data. This package
therefore works with the **identifiable form**, on the log scale, with the step centred on a
reference step ``s_ref``::

    log L = -alpha * log r + logaddexp(log_floor, log_reducible - beta * log(s / s_ref))

    log_floor     = log(A * C)                       the loss floor (s -> inf) at r = 1
    log_reducible = log(A * B) - beta * log(s_ref)   the reducible loss at s = s_ref, r = 1

and reports the paper's coefficients under the convention **C = 1**: ``A`` is then the loss floor
of the domain trained alone (r = 1, s -> inf) and ``B`` the reducible part relative to that floor
(so ``A * B * s**-beta`` is the reducible loss at r = 1). The conversions between the two forms
are exact (see :class:`PaperParams` and :class:`IdentifiableParams`).

One definition, two backends
----------------------------
Every expression takes a ``math`` argument: ``numpy`` (the default) or ``pytensor.tensor``, so the
least-squares fit and the PyMC model evaluate the very same formula.

Examples
--------
>>> import numpy as np
>>> round(float(bimix_loss(0.25, 1000.0, A=2.0, alpha=0.1, B=30.0, beta=0.5, C=1.0)), 4)
4.4769
>>> p = PaperParams(A=2.0, alpha=0.1, B=30.0, beta=0.5, C=1.0).to_identifiable(s_ref=1000.0)
>>> round(float(np.exp(p.log_loss(np.log(0.25), np.log(1000.0)))), 4)
4.4769
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "IDENTIFIABLE_NAMES",
    "PARAM_NAMES",
    "IdentifiableParams",
    "PaperParams",
    "bimix_log_loss",
    "bimix_log_loss_jacobian",
    "bimix_loss",
    "log_mixture_factor",
    "log_step_factor",
    "mixture_law",
    "step_law",
]

#: The paper's coefficient names, in the order used in tables.
PARAM_NAMES: tuple[str, ...] = ("A", "alpha", "B", "beta", "C")
#: The identifiable parameter names, in the order used by the fits.
IDENTIFIABLE_NAMES: tuple[str, ...] = ("log_floor", "log_reducible", "alpha", "beta")


# --------------------------------------------------------------------------------------------
# The two primitive expressions. Everything else in the package is built from these.
# --------------------------------------------------------------------------------------------
def log_mixture_factor(log_r: Any, alpha: Any) -> Any:
    """Log of the mixture factor ``r**-alpha``: ``-alpha * log r``.

    Works unchanged on numpy arrays and pytensor tensors.

    Examples
    --------
    >>> float(log_mixture_factor(np.log(0.5), 1.0))  # log(0.5 ** -1)
    0.6931471805599453
    """
    return -alpha * log_r


def log_step_factor(
    log_s: Any, log_floor: Any, log_reducible: Any, beta: Any, *, math: ModuleType = np
) -> Any:
    """Log of the step factor ``exp(log_floor) + exp(log_reducible) * s**-beta``.

    Written as ``logaddexp(log_floor, log_reducible - beta * log_s)``, which is stable for any
    magnitude of the two terms. ``log_s`` may be centred (``log(s / s_ref)``), in which case
    ``log_reducible`` is the reducible term at ``s_ref``.

    Examples
    --------
    >>> round(float(np.exp(log_step_factor(0.0, np.log(1.0), np.log(3.0), 0.5))), 12)  # 1 + 3
    4.0
    """
    return math.logaddexp(log_floor, log_reducible - beta * log_s)


def bimix_log_loss(
    log_r: Any,
    log_s: Any,
    log_floor: Any,
    log_reducible: Any,
    alpha: Any,
    beta: Any,
    *,
    math: ModuleType = np,
) -> Any:
    """BiMix Eq. 3 on the log scale, in the identifiable form.

    ``log L = -alpha log r + logaddexp(log_floor, log_reducible - beta log_s)``.

    Parameters
    ----------
    log_r
        Log of the evaluation domain's share of the training mixture (``r > 0``).
    log_s
        Log of the step or token count, usually centred: ``log(s / s_ref)``.
    log_floor, log_reducible, alpha, beta
        The identifiable parameters (see the module docstring); broadcast against the data.
    math
        ``numpy`` or ``pytensor.tensor``.

    Examples
    --------
    >>> round(float(np.exp(bimix_log_loss(0.0, 0.0, 0.0, 0.0, 0.1, 0.5))), 6)  # r=1, s=s_ref: 1+1
    2.0
    """
    return log_mixture_factor(log_r, alpha) + log_step_factor(
        log_s, log_floor, log_reducible, beta, math=math
    )


def bimix_log_loss_jacobian(
    log_r: Any, log_s: Any, log_floor: Any, log_reducible: Any, alpha: Any, beta: Any
) -> np.ndarray:
    """Derivatives of :func:`bimix_log_loss` with respect to its four parameters (numpy).

    Returns an array of shape ``(n, 4)``: columns ``log_floor, log_reducible, alpha, beta``.
    With ``w = exp(log_reducible - beta log_s - log_step_factor)`` (the reducible share of the
    step factor): ``(1 - w, w, -log r, -log_s * w)``.

    Examples
    --------
    >>> bimix_log_loss_jacobian(np.log([0.5]), np.array([0.0]), 0.0, 0.0, 0.1, 0.5).round(4)
    array([[ 0.5   ,  0.5   ,  0.6931, -0.    ]])
    """
    log_r, log_s = np.broadcast_arrays(np.asarray(log_r, float), np.asarray(log_s, float))
    reducible = log_reducible - beta * log_s
    w = np.exp(reducible - log_step_factor(log_s, log_floor, log_reducible, beta))
    return np.column_stack([1.0 - w, w, -log_r, -log_s * w])


# --------------------------------------------------------------------------------------------
# The paper's forms (numpy), built from the primitives above.
# --------------------------------------------------------------------------------------------
def mixture_law(r: Any, A: Any, alpha: Any) -> np.ndarray:
    """The fixed-step univariate law ``A * r**-alpha``.

    Examples
    --------
    >>> float(mixture_law(0.5, A=2.0, alpha=1.0))
    4.0
    """
    return np.asarray(A) * np.exp(log_mixture_factor(np.log(r), alpha))


def step_law(s: Any, B: Any, beta: Any, C: Any) -> np.ndarray:
    """The fixed-mixture univariate law ``B * s**-beta + C``.

    Examples
    --------
    >>> round(float(step_law(100.0, B=10.0, beta=0.5, C=2.0)), 12)
    3.0
    """
    with np.errstate(divide="ignore"):  # C = 0 is allowed: log(0) = -inf is exact here
        return np.exp(log_step_factor(np.log(s), np.log(C), np.log(B), beta))


def bimix_loss(r: Any, s: Any, A: Any, alpha: Any, B: Any, beta: Any, C: Any) -> np.ndarray:
    """BiMix Eq. 3 in the paper's form: ``A * r**-alpha * (B * s**-beta + C)``.

    Vectorised: every argument broadcasts against the others.

    Examples
    --------
    >>> bimix_loss(np.array([0.1, 0.5]), 1e4, A=2.0, alpha=0.05, B=40.0, beta=0.4, C=1.0).round(4)
    array([4.4987, 4.1509])
    """
    return mixture_law(r, A, alpha) * step_law(s, B, beta, C)


# --------------------------------------------------------------------------------------------
# Parameter sets and exact conversions.
# --------------------------------------------------------------------------------------------
def _as_arrays(obj: Any) -> None:
    for f in fields(obj):
        if f.name != "s_ref":
            object.__setattr__(obj, f.name, np.asarray(getattr(obj, f.name), dtype=float))


@dataclass(frozen=True)
class PaperParams:
    """The paper's coefficients ``(A, alpha, B, beta, C)``; scalars or arrays (one per domain).

    Examples
    --------
    >>> p = PaperParams(A=4.0, alpha=0.1, B=10.0, beta=0.5, C=0.5).normalised()
    >>> float(p.A), float(p.B), float(p.C)   # same law, under the C = 1 convention
    (2.0, 20.0, 1.0)
    """

    A: Any
    alpha: Any
    B: Any
    beta: Any
    C: Any

    def __post_init__(self) -> None:
        _as_arrays(self)

    def loss(self, r: Any, s: Any) -> np.ndarray:
        """Predicted loss at share ``r`` and step ``s``."""
        return bimix_loss(r, s, self.A, self.alpha, self.B, self.beta, self.C)

    def to_identifiable(self, s_ref: float) -> IdentifiableParams:
        """The identifiable form with the step centred on ``s_ref`` (exact)."""
        return IdentifiableParams(
            log_floor=np.log(self.A * self.C),
            log_reducible=np.log(self.A * self.B) - self.beta * np.log(s_ref),
            alpha=self.alpha,
            beta=self.beta,
            s_ref=float(s_ref),
        )

    def normalised(self) -> PaperParams:
        """The same law under the package's convention ``C = 1``."""
        return PaperParams(
            A=self.A * self.C,
            alpha=self.alpha,
            B=self.B / self.C,
            beta=self.beta,
            C=np.ones_like(self.C),
        )


@dataclass(frozen=True)
class IdentifiableParams:
    """The identifiable parameters ``(log_floor, log_reducible, alpha, beta)`` and ``s_ref``.

    Examples
    --------
    >>> ip = IdentifiableParams(log_floor=0.5, log_reducible=-1.0, alpha=0.1, beta=0.6, s_ref=1e3)
    >>> back = ip.to_paper().to_identifiable(s_ref=1e3)
    >>> bool(np.allclose(back.log_reducible, ip.log_reducible))
    True
    """

    log_floor: Any
    log_reducible: Any
    alpha: Any
    beta: Any
    s_ref: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.s_ref) and self.s_ref > 0):
            raise ValueError(f"s_ref must be a positive finite number, got {self.s_ref!r}")
        _as_arrays(self)

    def log_loss(self, log_r: Any, log_s: Any, *, centred: bool = False) -> np.ndarray:
        """Predicted log loss; ``log_s`` is the raw log step unless ``centred=True``."""
        x = log_s if centred else np.asarray(log_s) - np.log(self.s_ref)
        return bimix_log_loss(log_r, x, self.log_floor, self.log_reducible, self.alpha, self.beta)

    def loss(self, r: Any, s: Any) -> np.ndarray:
        """Predicted loss at share ``r`` and step ``s`` (raw units)."""
        return np.exp(self.log_loss(np.log(r), np.log(s)))

    def to_paper(self) -> PaperParams:
        """The paper's coefficients under the convention ``C = 1`` (exact)."""
        A = np.exp(self.log_floor)
        B = np.exp(self.log_reducible - self.log_floor + self.beta * np.log(self.s_ref))
        return PaperParams(A=A, alpha=self.alpha, B=B, beta=self.beta, C=np.ones_like(A))

    def recentred(self, s_ref: float) -> IdentifiableParams:
        """The same law with the step centred on another reference (exact)."""
        shift = self.beta * (np.log(s_ref) - np.log(self.s_ref))
        return IdentifiableParams(
            log_floor=self.log_floor,
            log_reducible=self.log_reducible - shift,
            alpha=self.alpha,
            beta=self.beta,
            s_ref=float(s_ref),
        )
