"""The posterior loss surface of a fit at one step, and its minimum for each posterior draw.

For posterior draw ``d`` and evaluation domain ``i`` the BiMix loss at the target step ``s`` is
``K_di * r_i**-alpha_di`` with ``K_di = A_di (B_di s**-beta_di + C_di)`` (the loss at share 1):
:class:`LossSurface` holds ``log K`` and ``alpha`` over all draws. The objective of a mixture
under one draw is the weighted sum over domains (:func:`objective_weights`; default the plain
mean, as in the paper) ``O_d(r) = sum_i w_i K_di r_i**-alpha_di`` (:func:`weighted_loss`).

For one draw the optimum has a semi-closed form: ``r_i = (w_i alpha_i K_i / lam)**(1/(1+alpha_i))``
clipped to the bounds, with one scalar ``lam`` making the shares sum to 1
(:func:`closed_form_optimum`, vectorised over draws: the spread of the per-draw optima says how
stable the choice is). The constrained solver over all draws is
:func:`bimix_bayes.decision.solver.solve`.

Examples
--------
>>> import numpy as np
>>> surface = LossSurface(("web", "code"), np.log([[3.0, 2.0]]), np.array([[0.1, 0.2]]), 1e4)
>>> weighted_loss(surface, np.array([0.5, 0.5]), np.array([0.5, 0.5])).round(4).tolist()
[2.7564]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bimix_bayes.bayes.law_params import (
    TRAIN_DIM,
    fit_step_covariates,
    posterior_law,
    posterior_params,
)
from bimix_bayes.bayes.sizes import size_offset
from bimix_bayes.data.labels import near_names
from bimix_bayes.data.table import DataError
from bimix_bayes.laws.drift import ALPHA_DRIFT, alpha_at
from bimix_bayes.laws.effective import effective_share, effective_share_derivatives
from bimix_bayes.laws.schedule import step_term
from bimix_bayes.laws.size import at_size

if TYPE_CHECKING:
    import arviz as az

__all__ = [
    "MIN_SHARE",
    "LossSurface",
    "bisect_decreasing",
    "closed_form_optimum",
    "fill_uncounted",
    "objective_weights",
    "weighted_loss",
]

#: Shares of counted domains never go below this (BiMix is infinite at r = 0).
MIN_SHARE = 1e-9


@dataclass(frozen=True)
class LossSurface:
    """The posterior of the BiMix loss at one step, as a function of the mixture.

    Attributes
    ----------
    domains
        Evaluation domains.
    log_k
        ``(draws, domains)``: log of the loss at share 1, ``log K_di``.
    alpha
        ``(draws, domains)``: the mixture exponents (0 under the log-linear law).
    step
        The target step (or tokens).
    own, cross
        Cross-domain laws (:mod:`bimix_bayes.laws.cross`): ``own`` ``(draws, domains)``, the
        log-linear law's own-share coefficient (None otherwise), and ``cross`` ``(draws,
        domains, training domains)``, the other domains' linear effects on the log loss (None
        under BiMix). With them the loss of domain ``i`` is ``K_i r_i**-alpha_i exp(-own_i r_i
        + sum_j cross_ij r_j)`` and ``shares`` run over the training domains.
    own_index
        Each domain's column among the training domains (default: the same position); -1 for
        an evaluation-only domain (no share of its own; only under the log-linear law).
    training
        The training domains (the columns of ``shares``, the decision's variables); default:
        ``domains``. A cross-domain surface keeps its evaluation domains as rows and the
        training domains as columns; a BiMix surface has one row per column
        (:func:`~bimix_bayes.decision.problem.extend_surface`).
    share_floor
        The effective-data law's ``eps`` (:mod:`bimix_bayes.laws.effective`): the loss is then
        ``K_i (1 + r_i / eps)**-alpha_i exp(sum_j cross_ij log(1 + r_j / eps))``, finite at
        zero shares. None under the other laws.

    Examples
    --------
    >>> s = LossSurface(("a", "b"), np.log([[2.0, 3.0]]), np.array([[0.1, 0.2]]), 1e3)
    >>> s.losses(np.array([0.5, 0.5])).round(4).tolist()
    [[2.1435, 3.4461]]
    """

    domains: tuple[str, ...]
    log_k: np.ndarray
    alpha: np.ndarray
    step: float
    own: np.ndarray | None = None
    cross: np.ndarray | None = None
    own_index: np.ndarray | None = None
    training: tuple[str, ...] | None = None
    share_floor: float | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The training domains: what the shares of a mixture run over."""
        return self.domains if self.training is None else self.training

    def counted_columns(self, weights: np.ndarray, *, power_law_only: bool = False) -> np.ndarray:
        """Which training domains are the own domain of a row with positive weight.

        With ``power_law_only``, only rows with a mixture exponent (``alpha != 0``): those
        need a positive share (the loss is infinite at zero).

        Examples
        --------
        >>> s = LossSurface(("a", "e"), np.zeros((1, 2)), np.zeros((1, 2)), 1.0,
        ...                 own_index=np.array([0, -1]), training=("a", "b"))
        >>> s.counted_columns(np.array([0.5, 0.5])).tolist()
        [True, False]
        """
        rows = np.asarray(weights) > 0
        if power_law_only and self.share_floor is not None:  # finite at zero shares
            rows = np.zeros_like(rows)
        elif power_law_only:
            rows = rows & np.any(self.alpha != 0, axis=0)
        cols = self._own_cols()[rows]
        out = np.zeros(len(self.columns), bool)
        out[cols[cols >= 0]] = True
        return out

    def own_shares(self, shares: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Each row's own share in ``shares`` (last axis over :attr:`columns`); 0 for an
        evaluation-only row."""
        cols = self._own_cols()[rows]
        own = np.asarray(shares)[..., np.maximum(cols, 0)]
        return np.where(cols >= 0, own, 0.0)

    @property
    def is_cross(self) -> bool:
        """Whether other domains' shares move a domain's loss (a cross-domain law)."""
        return self.cross is not None

    @property
    def finite_at_zero(self) -> bool:
        """Whether a zero share gives a finite loss (no mixture exponent anywhere, or the
        effective-data law's share floor)."""
        return self.share_floor is not None or bool(np.all(self.alpha == 0))

    def _features(self, shares: np.ndarray) -> np.ndarray:
        """What ``alpha`` and ``cross`` multiply: the log own share (own term, BiMix laws) and
        the shares (cross term); both ``log(1 + r / eps)`` under the effective-data law."""
        if self.share_floor is None:
            return shares
        return effective_share(shares, self.share_floor)

    def _own_cols(self) -> np.ndarray:
        return np.arange(len(self.domains)) if self.own_index is None else self.own_index

    @classmethod
    def from_idata(
        cls, idata: az.InferenceData, step: float, size: float | None = None
    ) -> LossSurface:
        """The surface of a fit at ``step`` (in the fit's unit, steps or tokens) and, for a fit
        of data with model sizes, at model ``size`` (:mod:`bimix_bayes.laws.size`)."""
        if not (np.isfinite(step) and step > 0):
            raise ValueError(f"the target step must be a positive number, got {step!r}")
        post = idata.posterior
        n = post.sizes["chain"] * post.sizes["draw"]
        law = posterior_law(post)
        params = posterior_params(post, law)
        z = size_offset(idata, None, size)
        if z is not None:
            params = at_size(params, params, z)
        params = {k: v.reshape(n, *v.shape[2:]) for k, v in params.items()}
        x, u = fit_step_covariates(idata.attrs, [step])
        log_k = step_term(x[0], params, None if u is None else u[0])
        domains = tuple(str(d) for d in post["domain"].to_numpy())
        alpha = params["alpha"] if "alpha" in law.params else np.zeros_like(log_k)
        if ALPHA_DRIFT in params:  # the exponent at the target step (laws.drift)
            alpha = alpha_at(alpha, params[ALPHA_DRIFT], x[0])
            _warn_if_exponent_not_positive(alpha, post["domain"].to_numpy(), step)
        if not law.cross_domain:
            return cls(domains, log_k, alpha, float(step))
        training = [str(t) for t in post[TRAIN_DIM].to_numpy()]
        return cls(
            domains,
            log_k,
            alpha,
            float(step),
            own=params.get("own"),
            cross=params["cross"],
            own_index=np.array([training.index(d) if d in training else -1 for d in domains]),
            training=tuple(training),
            share_floor=law.share_floor,
        )

    @property
    def n_draws(self) -> int:
        """Number of posterior draws (rows of ``log_k`` and ``alpha``)."""
        return self.log_k.shape[0]

    def losses(self, shares: np.ndarray) -> np.ndarray:
        """Per-draw loss of each domain: ``(draws, domains)``, or ``(draws, m, domains)`` for an
        ``(m, domains)`` array of mixtures."""
        return np.exp(self.log_losses(shares))

    def log_losses(self, shares: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Log of :meth:`losses`; ``rows`` (a boolean mask) keeps only those domains."""
        shares = np.asarray(shares, dtype=float)
        rows = np.ones(len(self.domains), bool) if rows is None else np.asarray(rows, bool)
        own_share = self.own_shares(shares, rows)
        alpha = self.alpha[:, rows]
        lead = (slice(None), None) if shares.ndim == 2 else (slice(None),)
        if self.share_floor is not None:  # -alpha log(1 + r / eps): 0 at a zero share
            m = -alpha[lead] * effective_share(own_share, self.share_floor)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                m = np.where(alpha[lead] == 0, 0.0, -alpha[lead] * np.log(own_share))
        if self.own is not None:
            m = m - self.own[:, rows][lead] * own_share
        if self.cross is not None:
            pattern = "dij,mj->dmi" if shares.ndim == 2 else "dij,j->di"
            m = m + np.einsum(pattern, self.cross[:, rows], self._features(shares))
        return self.log_k[:, rows][lead] + m

    def gradient_terms(self, shares: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """For one mixture: losses ``t`` (draws, rows) and the parts of ``d log t_i / d r_j``.

        Returns ``(t, diag, cross)``: ``d log t_i / d r_j = diag_i [j = own(i)] + cross_ij``
        with ``diag_i = -alpha_i / r_own(i) - own_i``; ``cross`` is None under BiMix. Under the
        effective-data law ``diag_i = -alpha_i / (r_own(i) + eps)`` and the cross part is
        ``cross_ij / (r_j + eps)``.
        """
        t = np.exp(self.log_losses(shares, rows))
        if self.share_floor is not None:
            slope, _ = effective_share_derivatives(shares, self.share_floor)
            cols = self._own_cols()[rows]
            diag = -self.alpha[:, rows] * np.where(cols >= 0, slope[np.maximum(cols, 0)], 0.0)
            cross = None if self.cross is None else self.cross[:, rows] * slope
            return t, diag, cross
        own_share = np.maximum(self.own_shares(shares, rows), MIN_SHARE)
        diag = -self.alpha[:, rows] / own_share
        if self.own is not None:
            diag = diag - self.own[:, rows]
        cross = None if self.cross is None else self.cross[:, rows]
        return t, diag, cross

    def curvature_terms(
        self, shares: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """For one mixture: the second derivatives of the log losses, ``d^2 log t_i / d r_j^2
        = own_i [j = own(i)] + cross_ij``.

        Returns ``(own, cross)``: ``own_i = alpha_i / r_own(i)^2`` and ``cross`` None (linear in
        the shares) under the other laws; ``alpha_i / (r_own(i) + eps)^2`` and ``-cross_ij /
        (r_j + eps)^2`` under the effective-data law.

        Examples
        --------
        >>> s = LossSurface(("a", "b"), np.zeros((1, 2)), np.full((1, 2), 0.5), 1.0,
        ...                 cross=np.array([[[0.0, 0.2], [0.1, 0.0]]]), share_floor=1.0)
        >>> own, cross = s.curvature_terms(np.array([0.0, 1.0]), np.ones(2, bool))
        >>> own.tolist(), cross.tolist()
        ([[0.5, 0.125]], [[[-0.0, -0.05], [-0.1, -0.0]]])
        """
        cols = self._own_cols()[rows]
        if self.share_floor is None:
            own_share = np.maximum(self.own_shares(shares, rows), MIN_SHARE)
            return self.alpha[:, rows] / own_share**2, None
        _, curve = effective_share_derivatives(shares, self.share_floor)
        own_curve = np.where(cols >= 0, curve[np.maximum(cols, 0)], 0.0)
        cross = None if self.cross is None else self.cross[:, rows] * curve
        return -self.alpha[:, rows] * own_curve, cross


def weighted_loss(surface: LossSurface, weights: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Per draw, the weighted loss of a mixture: ``(draws,)``, or ``(draws, m)`` for ``m``
    mixtures given as an ``(m, domains)`` array. Domains of zero weight may have zero share.

    Examples
    --------
    >>> s = LossSurface(("a", "b"), np.log([[2.0, 3.0]]), np.array([[0.1, 0.2]]), 1e3)
    >>> weighted_loss(s, np.array([1.0, 0.0]), np.array([1.0, 0.0])).tolist()
    [2.0]
    """
    counted = np.asarray(weights) > 0
    shares = np.asarray(shares, dtype=float)
    if surface.is_cross:  # every share moves the counted losses
        return np.exp(surface.log_losses(shares, counted)) @ np.asarray(weights)[counted]
    sub = LossSurface(
        tuple(np.asarray(surface.domains)[counted]),
        surface.log_k[:, counted],
        surface.alpha[:, counted],
        surface.step,
    )
    return sub.losses(shares[..., counted]) @ np.asarray(weights)[counted]


def objective_weights(
    domains: Sequence[str],
    weights: Mapping[str, float] | None = None,
    counted: Sequence[str] | None = None,
) -> np.ndarray:
    """Normalised domain weights of the objective: plain mean by default.

    ``weights`` names the domains whose weight is not 1 (``{"code": 2}`` doubles code's
    weight; ``0`` leaves a domain out). ``counted`` keeps only those domains.

    Examples
    --------
    >>> objective_weights(["a", "b", "c"], counted=["a", "c"]).tolist()
    [0.5, 0.0, 0.5]
    >>> objective_weights(["a", "b"], weights={"a": 3}).tolist()
    [0.75, 0.25]
    """
    domains = list(domains)
    for what, names in (("weights", weights or {}), ("domains", counted or [])):
        unknown = sorted(set(names) - set(domains))
        if unknown:
            raise DataError(
                f"{what}: unknown domain(s) {unknown}; the fit has {domains}"
                f"{near_names(unknown, domains)}"
            )
    if weights:
        w = np.array([float(weights.get(d, 1.0)) for d in domains])
    else:
        w = np.ones(len(domains))
    if counted is not None:
        w = np.where(np.isin(domains, list(counted)), w, 0.0)
    if np.any(~np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise DataError(
            "domain weights must be non-negative with at least one positive weight among the "
            f"counted domains; got {dict(zip(domains, w.tolist(), strict=True))}"
        )
    return w / w.sum()


# ============================================================================ closed form
def bisect_decreasing(
    total: Callable[[np.ndarray], np.ndarray],
    target: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    iterations: int = 200,
) -> np.ndarray:
    """Vectorised bisection for ``total(t) = target`` with ``total`` non-increasing in ``t``.

    Parameters
    ----------
    total
        Maps an array of ``t`` (one per problem) to the totals, same shape.
    target, lo, hi
        Per problem: the total sought and a bracket of ``t`` (``total(lo) >= target >=
        total(hi)``).
    iterations
        At most this many halvings (it stops early at relative precision 1e-15).

    Examples
    --------
    >>> t = bisect_decreasing(lambda t: -t, np.array([-2.0]), np.array([0.0]), np.array([5.0]))
    >>> t.round(9).tolist()
    [2.0]
    """
    lo, hi = lo.astype(float).copy(), hi.astype(float).copy()
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        above = total(mid) > target
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
        if np.all(hi - lo <= 1e-15 * np.maximum(1.0, np.abs(mid))):
            break
    return 0.5 * (lo + hi)


def closed_form_optimum(
    k: np.ndarray,
    alpha: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    budget: float = 1.0,
) -> np.ndarray:
    """Minimiser of ``sum_i k_i r_i**-alpha_i`` on ``{lower <= r <= upper, sum r = budget}``.

    The semi-closed form: ``r_i = clip((alpha_i k_i / lam)**(1/(1+alpha_i)), lower_i, upper_i)``
    with the scalar ``lam`` found by bisection (on ``log lam``). ``k`` and ``alpha`` may carry
    leading dimensions (one problem per row, e.g. per posterior draw); ``k`` already includes any
    domain weight. Domains with ``k = 0``, or ``alpha <= 0`` (a drifted exponent,
    :mod:`bimix_bayes.laws.drift`: more share does not lower that loss), stay at their lower
    bound; what the others cannot take is spread over them (:func:`fill_uncounted`).

    Examples
    --------
    >>> r = closed_form_optimum(np.array([1.0, 1.0]), np.array([0.5, 0.5]))
    >>> r.round(6).tolist()
    [0.5, 0.5]
    >>> closed_form_optimum(np.array([1.0, 8.0]), np.array([1.0, 1.0])).round(6).tolist()
    [0.261204, 0.738796]
    >>> closed_form_optimum(np.array([1.0, 1.0]), np.array([0.5, -0.01])).round(6).tolist()
    [1.0, 0.0]
    """
    k = np.asarray(k, dtype=float)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=float), k.shape)
    n = k.shape[-1]
    lower = np.zeros(n) if lower is None else np.asarray(lower, dtype=float)
    upper = np.ones(n) * budget if upper is None else np.asarray(upper, dtype=float)
    counted = (k > 0) & (alpha > 0)
    lo_eff = np.where(counted, np.maximum(lower, MIN_SHARE), lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ak = np.where(counted, np.log(alpha * k), -np.inf)
    exponent = 1.0 / (1.0 + alpha)

    def shares(log_lam: np.ndarray) -> np.ndarray:
        r = np.exp((log_ak - log_lam[..., None]) * exponent)
        return np.clip(r, lo_eff, upper)

    # Bracket log(lam): below it every counted share is at its cap, above it at its floor.
    with np.errstate(divide="ignore", invalid="ignore"):
        at_cap = np.where(
            counted, log_ak - (1 + alpha) * np.log(np.maximum(upper, MIN_SHARE)), np.inf
        )
        at_floor = np.where(counted, log_ak - (1 + alpha) * np.log(lo_eff), -np.inf)
    any_counted = counted.any(axis=-1)  # a row with none: every share at its floor, then filled
    left = np.where(any_counted, at_cap.min(axis=-1) - 1.0, 0.0)
    right = np.where(any_counted, at_floor.max(axis=-1) + 1.0, 1.0)
    log_lam = bisect_decreasing(
        lambda t: shares(t).sum(axis=-1), np.full(left.shape, budget), left, right
    )
    r = shares(log_lam)
    return fill_uncounted(r, counted, upper, budget)


class DriftedExponentWarning(UserWarning):
    """A drifted mixture exponent (``[law] alpha_drift``) is not positive at the target step."""


def _warn_if_exponent_not_positive(alpha: np.ndarray, domains: np.ndarray, step: float) -> None:
    """Say where ``alpha + alpha_drift x`` is <= 0 in some posterior draws (rows of ``alpha``)."""
    share = (alpha <= 0).mean(axis=0)
    if not share.any():
        return
    where = ", ".join(f"{d} ({100 * f:.0f} %)" for d, f in zip(domains, share, strict=True) if f)
    warnings.warn(
        f"at step {step:g} the drifted mixture exponent alpha + alpha_drift x is <= 0 in some "
        f"posterior draws for {where}: there the law says a larger share does not lower that "
        "loss, and optimize/next give the domain its least share in those draws. Check the "
        "fit's alpha_drift (bimix summary) or fit without [law] alpha_drift.",
        DriftedExponentWarning,
        stacklevel=3,
    )


def fill_uncounted(
    r: np.ndarray, counted: np.ndarray, upper: np.ndarray, budget: float
) -> np.ndarray:
    """When the counted domains are all capped, spread the rest over the uncounted ones.

    Parameters
    ----------
    r
        Shares (one row per problem), the counted ones already set.
    counted
        The domains whose shares are set; the others receive what ``r`` lacks of ``budget``,
        in proportion to their room below ``upper``.

    Examples
    --------
    >>> fill_uncounted(np.array([0.2, 0.0, 0.0]), np.array([True, False, False]),
    ...                np.array([0.2, 1.0, 0.6]), 1.0).round(3).tolist()
    [0.2, 0.5, 0.3]
    """
    short = budget - r.sum(axis=-1, keepdims=True)
    if np.all(short <= 1e-12):
        return r
    room = np.where(counted, 0.0, upper - r)
    total_room = room.sum(axis=-1, keepdims=True)
    share = np.divide(short, total_room, out=np.zeros_like(short), where=total_room > 0)
    return r + np.where(short > 1e-12, room * np.minimum(share, 1.0), 0.0)
