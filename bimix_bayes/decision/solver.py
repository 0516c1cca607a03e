"""The mixture optimiser: minimise a posterior summary of the loss over the constrained simplex.

The objective of a mixture under one posterior draw ``d`` is its weighted loss
``O_d(r) = sum_i w_i K_di r_i**-alpha_di`` on the :class:`~bimix_bayes.decision.surface.LossSurface`
of the fit at the target step (under a cross-domain law each term also carries
``exp(-own_di r_i + sum_j cross_dij r_j)``: see "Cross-domain laws" below); the decision
minimises an :class:`~bimix_bayes.decision.objectives.Objective` (mean, quantile, CVaR) of
the ``O_d`` over all draws — never the loss at the posterior mean — subject to ``sum(r) = 1``
and the bounds of :class:`~bimix_bayes.decision.constraints.MixtureConstraints`.

The objective is the BiMix curve itself (``kind="law"`` in
:func:`bimix_bayes.bayes.forecast.predict`): the loss a run at that mixture reaches apart from its
own run-to-run luck, which no mixture controls; the per-domain forecasts reported beside it include
that luck.

How it is solved
----------------
Every ``O_d`` is separable and convex in ``r``; so is any fixed weighting of draws. The solver is
SLSQP (scipy) with the analytic gradient, as in pymc-marketing's budget optimizer, followed by a
polish: projected Newton steps on the exact KKT conditions (a diagonal Hessian plus one equality,
solved exactly per step), re-weighting the draws between steps for the quantile and CVaR. Each
solve reports its scale-free KKT residual and iterations, and warns when it ends at its start
without satisfying the KKT conditions (SLSQP's known failure on tiny gradients).

Cross-domain laws
-----------------
Under ``bimix_cross``, ``loglinear`` (:mod:`bimix_bayes.laws.cross`) or ``effective``
(:mod:`bimix_bayes.laws.effective`) every share moves every
counted loss, so the objective is not separable: every non-fixed domain is a variable (an
uncounted domain may still lower the counted losses), SLSQP gets the exact gradient, and the
polish scales its projected steps by the Hessian's diagonal (a line search on the true
objective keeps each step a descent). ``exp`` of a linear function is convex, so the mean
objective stays convex under ``loglinear``; under ``bimix_cross`` it is a product of convex
and log-convex factors, convex in practice near the optimum (checked against brute force in
tests/test_laws.py). Under ``effective`` a term is ``(1 + r_i / eps)^-alpha_i`` times
``(1 + r_j / eps)^cross_ij``: convex in each share where ``cross_ij <= 0`` (a helping domain),
a concave factor where a domain hurts another (``cross_ij > 0``); the polish's diagonal
Hessian holds both (clipped at a small positive value), its line search keeps each step a
descent, and the brute-force test covers this law too. The per-draw optima are solved draw by
draw (:func:`per_draw_optima`).

The surface, the domain weights and the per-draw closed-form optimum are in
:mod:`bimix_bayes.decision.surface` (their names are importable from here too).

Examples
--------
>>> import numpy as np
>>> surface = LossSurface(("web", "code"), np.log([[3.0, 2.0]]), np.array([[0.1, 0.2]]), 1e4)
>>> solve(surface, np.array([0.5, 0.5])).shares.round(4).tolist()
[0.4228, 0.5772]
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import minimize

from bimix_bayes.decision.constraints import Bounds, ConstraintError, MixtureConstraints
from bimix_bayes.decision.objectives import Objective
from bimix_bayes.decision.surface import (
    MIN_SHARE,
    LossSurface,
    bisect_decreasing,
    closed_form_optimum,
    fill_uncounted,
    objective_weights,
    weighted_loss,
)

__all__ = [
    "MIN_SHARE",
    "LossSurface",
    "OptimizationWarning",
    "SolveResult",
    "closed_form_optimum",
    "objective_weights",
    "per_draw_optima",
    "solve",
    "weighted_loss",
]

KKT_TOL = 1e-6
#: Quantile and CVaR are not differentiable where two draws swap ranks (at the optimum several
#: draws often tie), so the residual of their almost-everywhere gradient can stall near 1e-4 at
#: the optimum; a looser test applies to them.
KKT_TOL_NONSMOOTH = 1e-3


class OptimizationWarning(UserWarning):
    """A mixture optimisation that may not have reached the optimum."""


@dataclass(frozen=True)
class SolveResult:
    """One constrained solve.

    Attributes
    ----------
    shares
        The optimum, one share per domain (sums to 1).
    value
        The objective there.
    kkt_residual
        Largest violation of the KKT conditions (stationarity on free domains, the sign of the
        multiplier on domains at a bound), divided by the largest gradient component: 0 at an
        exact optimum; below 1e-6 counts as converged.
    iterations
        SLSQP iterations + Newton polish iterations.
    seconds
        Wall time of the solve.
    message
        SLSQP's message and what the polish did.
    at_start
        The answer equals the starting point.
    """

    shares: np.ndarray
    value: float
    kkt_residual: float
    iterations: int
    seconds: float
    message: str
    at_start: bool = False
    tolerance: float = KKT_TOL

    @property
    def converged(self) -> bool:
        """Whether the KKT residual is within ``tolerance``."""
        return bool(self.kkt_residual <= self.tolerance)


class _Problem:
    """The objective over the free domains with counted weight: values, gradient, Hessian."""

    def __init__(
        self,
        log_c: np.ndarray,
        alpha: np.ndarray,
        objective: Objective,
        offset: np.ndarray | float = 0.0,
    ) -> None:
        # ``offset``: per draw, the weighted loss of counted domains whose share is fixed (it
        # does not move with x, but it decides which draws are in a quantile or CVaR tail).
        self.log_c, self.alpha, self.objective = log_c, alpha, objective
        self.alpha1 = alpha * (alpha + 1.0)
        self.offset = offset

    def terms(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self.log_c - self.alpha * np.log(x))

    def value(self, x: np.ndarray) -> float:
        return self.objective(self.terms(x).sum(axis=1) + self.offset)

    def derivatives(self, x: np.ndarray, pi: np.ndarray | None = None):
        """Objective value, gradient and diagonal Hessian; ``pi`` fixes the draw weights."""
        t = self.terms(x)
        values = t.sum(axis=1) + self.offset
        if pi is None:
            pi = self.objective.draw_weights(values)
        grad = -(pi @ (self.alpha * t)) / x
        hess = (pi @ (self.alpha1 * t)) / x**2
        return float(pi @ values), grad, hess, pi


class _CrossProblem:
    """The objective of a cross-domain surface over the shares of ``var`` (the others fixed).

    Not separable: every share moves every counted loss, so every non-fixed domain is a
    variable (an uncounted domain may still lower the counted losses). ``derivatives`` returns
    the exact gradient and the diagonal of the Hessian (the projected-Newton polish uses it as
    a scaling; its line search keeps every step a descent).
    """

    def __init__(
        self,
        surface: LossSurface,
        weights: np.ndarray,
        objective: Objective,
        var: np.ndarray,
        base: np.ndarray,
    ) -> None:
        self.surface, self.objective = surface, objective
        self.counted = weights > 0
        self.w = weights[self.counted]
        self.var, self.base = var, base
        cols = surface._own_cols()[self.counted]
        self.own_of = np.zeros((len(cols), len(base)))  # counted row -> its own column
        has_own = cols >= 0  # an evaluation-only row has none
        self.own_of[np.flatnonzero(has_own), cols[has_own]] = 1.0

    def full(self, x: np.ndarray) -> np.ndarray:
        r = self.base.copy()
        r[self.var] = x
        return r

    def value(self, x: np.ndarray) -> float:
        t = np.exp(self.surface.log_losses(self.full(x), self.counted))
        return self.objective(t @ self.w)

    def derivatives(self, x: np.ndarray, pi: np.ndarray | None = None):
        r = self.full(x)
        t, diag, cross = self.surface.gradient_terms(r, self.counted)
        values = t @ self.w
        if pi is None:
            pi = self.objective.draw_weights(values)
        g = pi[:, None] * t * self.w  # (draws, counted): weight of each loss in the objective
        grad = (g * diag).sum(axis=0) @ self.own_of  # own-share parts, per column
        # d^2 t_i / d r_j^2 = t_i ((d log t_i / d r_j)^2 + d^2 log t_i / d r_j^2)
        own_curve, cross_curve = self.surface.curvature_terms(r, self.counted)
        d2 = (g * (diag**2 + own_curve)).sum(axis=0) @ self.own_of
        if cross is not None:
            grad = grad + np.einsum("di,dij->j", g, cross)
            slope = diag[:, :, None] * self.own_of[None] + cross  # d log t_i / d r_j
            d2 = d2 + np.einsum("di,dij->j", g, slope**2) - (g * diag**2).sum(0) @ self.own_of
        if cross_curve is not None:  # the effective-data law: cross effects curve too
            d2 = d2 + np.einsum("di,dij->j", g, cross_curve)
        return float(pi @ values), grad[self.var], np.maximum(d2[self.var], 1e-12), pi


def _solve_cross(
    surface: LossSurface,
    weights: np.ndarray,
    objective: Objective,
    lo: np.ndarray,
    hi: np.ndarray,
    start: np.ndarray | None,
    max_iter: int,
    t0: float,
) -> tuple[SolveResult, np.ndarray]:
    """:func:`solve` for a cross-domain surface: every non-fixed domain is a variable."""
    fixed = hi - lo <= 1e-12
    var = ~fixed
    base = np.where(fixed, lo, 0.0)
    budget = 1.0 - base[fixed].sum()
    # a counted domain under a power law needs a positive share; the log-linear law does not
    needs_share = surface.counted_columns(weights, power_law_only=True)
    lo_v = np.where(needs_share[var], np.maximum(lo[var], MIN_SHARE), lo[var])
    hi_v = hi[var]
    problem = _CrossProblem(surface, weights, objective, var, base)
    if not var.any():  # every share is fixed
        value = problem.value(np.zeros(0))
        result = SolveResult(base, value, 0.0, 0, time.perf_counter() - t0, "no free choice")
        return result, np.zeros(0)
    x0, x, kkt, res, polish_iter = _minimise(
        problem, objective, start, var, lo_v, hi_v, budget, max_iter
    )
    message = f"SLSQP: {res.message} ({res.nit} iterations); scaled polish: {polish_iter}"
    result = SolveResult(
        shares=problem.full(x),
        value=problem.value(x),
        kkt_residual=kkt,
        iterations=int(res.nit) + polish_iter,
        seconds=time.perf_counter() - t0,
        message=message,
        at_start=bool(np.max(np.abs(x - x0)) <= 1e-10),
        tolerance=KKT_TOL if objective.kind == "mean" else KKT_TOL_NONSMOOTH,
    )
    return result, x0


def _slsqp(problem, x0, lo, hi, budget: float, max_iter: int):
    """SLSQP (analytic gradient, scaled by the start's value) on ``{lo <= x <= hi, sum x =
    budget}``; its answer projected back onto the set, or the start when SLSQP failed outright
    (the polish then starts there)."""
    scale = problem.value(x0)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad, _, _ = problem.derivatives(np.clip(x, lo, hi))
        return value / scale, grad / scale

    res = minimize(
        fun,
        x0,
        jac=True,
        method="SLSQP",
        bounds=list(zip(lo, hi, strict=True)),
        constraints=[
            {"type": "eq", "fun": lambda x: x.sum() - budget, "jac": lambda x: np.ones_like(x)}
        ],
        options={"maxiter": max_iter, "ftol": 1e-12},
    )
    x = _project(np.clip(res.x, lo, hi), lo, hi, budget)
    if not problem.value(x) <= problem.value(x0) * (1 + 1e-12):
        x = x0
    return res, x


def _minimise(problem, objective: Objective, start, var, lo, hi, budget: float, max_iter: int):
    """From the start (default: the uniform mixture projected onto the bounds), SLSQP then the
    polish; returns the start, the answer, its KKT residual, SLSQP's result and the polish
    iterations."""
    if start is None:
        x0 = _project(np.full(var.sum(), budget / var.sum()), lo, hi, budget)
    else:
        x0 = _project(np.asarray(start, dtype=float)[var], lo, hi, budget)
    res, x = _slsqp(problem, x0, lo, hi, budget, max_iter)
    x, grad, polish_iter = _polish(
        problem, x, lo, hi, max_iter=15 if objective.kind == "quantile" else 50
    )
    return x0, x, _kkt_residual(x, grad, lo, hi), res, polish_iter


def _kkt_residual(x: np.ndarray, grad: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Scale-free KKT residual of ``min f`` on ``{lo <= x <= hi, sum x = const}``."""
    if x.size == 0:
        return 0.0
    scale = float(np.max(np.abs(grad))) or 1.0
    span = np.maximum(hi - lo, 0.0)
    tol = 1e-9 * np.maximum(span, 1e-12)
    at_lo = x <= lo + tol
    at_hi = x >= hi - tol
    free = ~(at_lo | at_hi)
    # The multiplier: from free domains when any; otherwise the best value for the bounds.
    lam = -float(np.mean(grad[free])) if free.any() else -float(np.median(grad))

    def violation(lam: float) -> float:
        v = np.where(free, np.abs(grad + lam), 0.0)
        v = np.where(at_lo & ~at_hi, np.maximum(0.0, -(grad + lam)), v)
        v = np.where(at_hi & ~at_lo, np.maximum(0.0, grad + lam), v)
        return float(v.max())

    if not free.any():
        candidates = np.concatenate([[lam], -grad])
        lam = min(candidates, key=violation)
    return violation(lam) / scale


def _newton_step(x, grad, hess, lo, hi) -> np.ndarray:
    """Exact minimiser of the separable quadratic model on the box, keeping ``sum x``."""

    def d_of(lam: np.ndarray) -> np.ndarray:
        return np.clip(-(grad + lam[..., None]) / hess, lo - x, hi - x)

    left = np.array([np.min(-grad - hess * (hi - x)) - 1.0])
    right = np.array([np.max(-grad - hess * (lo - x)) + 1.0])
    lam = bisect_decreasing(lambda t: d_of(t).sum(axis=-1), np.zeros(1), left, right)
    return d_of(lam)[0]


def _polish(problem: _Problem, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_iter: int = 50):
    """Projected Newton on the KKT conditions, the draw weights re-evaluated at every point.

    Each step minimises the separable quadratic model exactly; a backtracking line search on the
    true objective (draws re-weighted) accepts it.
    """
    value, grad, hess, _ = problem.derivatives(x)
    iterations, stalls = 0, 0
    for iterations in range(1, max_iter + 1):  # noqa: B007
        if _kkt_residual(x, grad, lo, hi) < 1e-13:
            break
        d = _newton_step(x, grad, hess, lo, hi)
        step = 1.0
        while step > 1e-6:
            cand = np.clip(x + step * d, lo, hi)
            cand_value, cand_grad, cand_hess, _ = problem.derivatives(cand)
            if cand_value <= value + 1e-15 * abs(value):
                break
            step *= 0.5
        else:
            break
        stalls = stalls + 1 if cand_value >= value - 1e-15 * abs(value) else 0
        x, value, grad, hess = cand, cand_value, cand_grad, cand_hess
        if stalls >= 3:  # a kink of a non-smooth objective: the value no longer moves
            break
    return x, grad, iterations


def _project(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: float) -> np.ndarray:
    """Euclidean projection of ``y`` onto ``{lo <= x <= hi, sum x = budget}``."""
    theta = bisect_decreasing(
        lambda t: np.clip(y - t[..., None], lo, hi).sum(axis=-1),
        np.array([budget]),
        np.array([float(np.min(y - hi)) - 1.0]),
        np.array([float(np.max(y - lo)) + 1.0]),
    )
    return np.clip(y - theta[0], lo, hi)


def solve(
    surface: LossSurface,
    weights: np.ndarray,
    objective: Objective | str = "mean",
    bounds: Bounds | None = None,
    start: np.ndarray | None = None,
    *,
    max_iter: int = 500,
) -> SolveResult:
    """Minimise ``objective`` of the per-draw weighted loss over the constrained simplex.

    Parameters
    ----------
    surface
        The posterior loss at the target step (:meth:`LossSurface.from_idata`).
    weights
        Domain weights (:func:`objective_weights`), aligned with ``surface.domains``.
    objective
        An :class:`~bimix_bayes.decision.objectives.Objective` or its text (``"cvar:0.9"``).
    bounds
        From :meth:`MixtureConstraints.bounds` (default: only ``sum r = 1``).
    start
        Starting mixture (default: the uniform mixture projected onto the bounds).

    Examples
    --------
    >>> s = LossSurface(("a", "b"), np.log([[1.0, 8.0]]), np.array([[1.0, 1.0]]), 1.0)
    >>> solve(s, np.array([1.0, 1.0])).shares.round(6).tolist()
    [0.261204, 0.738796]
    """
    t0 = time.perf_counter()
    objective = Objective.parse(objective) if isinstance(objective, str) else objective
    weights = np.asarray(weights, dtype=float)
    if bounds is None:
        bounds = MixtureConstraints().bounds(surface.columns)
    lo, hi = bounds.lower.copy(), bounds.upper.copy()
    counted = weights > 0
    needs_share = surface.counted_columns(weights, power_law_only=True)
    starved = [d for d, n, h in zip(surface.columns, needs_share, hi, strict=True) if n and h <= 0]
    if starved:
        raise ConstraintError(
            f"{', '.join(starved)} count(s) in the objective but the constraints allow no share "
            "(BiMix loss is infinite at r = 0); give them a positive cap, or leave them out of "
            "the objective (domains=... / --domains)"
        )
    if surface.is_cross:
        result, _ = _solve_cross(surface, weights, objective, lo, hi, start, max_iter, t0)
        _warn_unconverged(result)
        return result
    fixed = hi - lo <= 1e-12
    var = counted & ~fixed
    r = np.where(fixed, lo, 0.0)
    # Uncounted domains cost share and gain nothing: they sit at their lower bound unless the
    # counted ones cannot take the rest.
    r = np.where(~counted & ~fixed, lo, r)
    budget = 1.0 - r[~var].sum()
    lo_v, hi_v = np.maximum(lo[var], MIN_SHARE), hi[var]
    if not var.any() or hi_v.sum() <= budget + 1e-12:
        r[var] = hi_v
        r = fill_uncounted(r, counted | fixed, hi, 1.0)
        return SolveResult(
            shares=r,
            value=objective(weighted_loss(surface, weights, r)),
            kkt_residual=0.0,
            iterations=0,
            seconds=time.perf_counter() - t0,
            message="no free choice: every counted domain is fixed or at its cap",
        )
    pinned = counted & fixed
    offset = (
        np.exp(
            np.log(weights[pinned])
            + surface.log_k[:, pinned]
            - surface.alpha[:, pinned] * np.log(lo[pinned])
        ).sum(axis=1)
        if pinned.any()
        else 0.0
    )
    problem = _Problem(
        np.log(weights[var]) + surface.log_k[:, var], surface.alpha[:, var], objective, offset
    )
    x0, x, kkt, res, polish_iter = _minimise(
        problem, objective, start, var, lo_v, hi_v, budget, max_iter
    )
    r[var] = x
    at_start = bool(np.max(np.abs(x - x0)) <= 1e-10)
    message = f"SLSQP: {res.message} ({res.nit} iterations); Newton polish: {polish_iter}"
    result = SolveResult(
        shares=r,
        value=problem.value(x),
        kkt_residual=kkt,
        iterations=int(res.nit) + polish_iter,
        seconds=time.perf_counter() - t0,
        message=message,
        at_start=at_start,
        tolerance=KKT_TOL if objective.kind == "mean" else KKT_TOL_NONSMOOTH,
    )
    _warn_unconverged(result)
    return result


def _warn_unconverged(result: SolveResult) -> None:
    """Warn when a solve did not meet the KKT conditions (and say what to try)."""
    kkt, message = result.kkt_residual, result.message
    nonsmooth = result.tolerance == KKT_TOL_NONSMOOTH
    if result.at_start and not result.converged:
        warnings.warn(
            "the optimiser stopped at its starting point without meeting the KKT conditions "
            f"(residual {kkt:.2g}); the gradient may be too small to move. Try another start or "
            "check that the fit's mixture exponents are not all near zero.",
            OptimizationWarning,
            stacklevel=3,
        )
    elif not result.converged:
        warnings.warn(
            "the optimiser's answer does not meet the KKT conditions (scale-free residual "
            f"{kkt:.2g} > {result.tolerance:g}; the solvers' own reports: {message}): it may "
            "not be the optimum, e.g. where the objective barely moves with the shares (then "
            "the per-draw optima spread widely and the choice matters little)."
            + (
                " Quantile and CVaR objectives are not smooth where posterior draws tie; with "
                "few draws the answer may be slightly off the optimum (more draws help)."
                if nonsmooth
                else ""
            ),
            OptimizationWarning,
            stacklevel=3,
        )


def per_draw_optima(
    surface: LossSurface, weights: np.ndarray, bounds: Bounds, *, max_draws: int = 200
) -> np.ndarray:
    """The optimum under each posterior draw ``(draws, training domains)``: how stable the
    choice is.

    BiMix: the semi-closed form of every draw (:func:`closed_form_optimum`). A cross-domain
    law has no closed form: :func:`solve` per draw, on at most ``max_draws`` draws evenly
    spaced over the posterior (about 10 ms each).

    Examples
    --------
    >>> s = LossSurface(("a", "b"), np.log([[1.0, 8.0]]), np.array([[1.0, 1.0]]), 1.0)
    >>> b = MixtureConstraints().bounds(s.domains)
    >>> per_draw_optima(s, np.array([0.5, 0.5]), b).round(6).tolist()
    [[0.261204, 0.738796]]
    """
    if not surface.is_cross:
        return closed_form_optimum(
            weights * np.exp(surface.log_k), surface.alpha, bounds.lower, bounds.upper
        )
    take = np.unique(
        np.linspace(0, surface.n_draws - 1, min(max_draws, surface.n_draws)).astype(int)
    )
    out = np.empty((len(take), len(surface.columns)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizationWarning)
        for row, d in enumerate(take):
            one = replace(
                surface,
                log_k=surface.log_k[[d]],
                alpha=surface.alpha[[d]],
                own=None if surface.own is None else surface.own[[d]],
                cross=surface.cross[[d]],
            )
            out[row] = solve(one, weights, "mean", bounds).shares
    return out
