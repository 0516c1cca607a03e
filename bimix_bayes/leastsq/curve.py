"""A careful multi-start nonlinear least-squares engine (SciPy's Trust Region Reflective).

Scaling laws have many local optima and flat ridges; one start is not enough. :func:`fit_curve`
runs :func:`scipy.optimize.least_squares` (``method="trf"``) from every start in a list, optionally
with a Huber loss, and keeps the start with the lowest cost. It knows nothing about BiMix: the
BiMix fit (:mod:`bimix_bayes.leastsq.fit`) and the Chinchilla reproduction test both use it.

SciPy's ``loss="huber"`` with ``f_scale = delta`` minimises exactly ``sum(huber_delta(r))`` with
``huber_delta(r) = r**2 / 2`` for ``|r| <= delta`` and ``delta * (|r| - delta / 2)`` beyond, the
objective of Epoch AI's Chinchilla refit.

Examples
--------
>>> import numpy as np
>>> x = np.linspace(1, 10, 20); y = 3.0 * x ** -0.5 + 1.0
>>> fit = fit_curve(lambda p: p[0] * x ** -p[1] + p[2] - y, [np.array([1.0, 1.0, 0.0])])
>>> np.round(fit.x, 4)
array([3. , 0.5, 1. ])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import least_squares

__all__ = ["CurveFit", "FitError", "fit_curve"]

RobustLoss = Literal["linear", "huber"]


class FitError(RuntimeError):
    """No start of a fit produced a finite result."""


@dataclass(frozen=True)
class CurveFit:
    """The best of several least-squares runs.

    Attributes
    ----------
    x
        Best parameter vector.
    cost
        Its objective value (SciPy's ``cost``: half the sum of the robust loss of the residuals).
    residuals
        Residuals at ``x``.
    success, message, nfev
        SciPy's report for the best start.
    n_starts, n_finished
        Starts tried, and starts that ended with a finite cost.
    costs
        The final cost of every start (NaN where a start failed), to judge how multimodal it is.
    """

    x: np.ndarray
    cost: float
    residuals: np.ndarray
    success: bool
    message: str
    nfev: int
    n_starts: int
    n_finished: int
    costs: np.ndarray


def _strictly_inside(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Clip ``x`` into the bounds and nudge it off them (TRF needs a strictly feasible start)."""
    x, lo, hi = np.broadcast_arrays(np.clip(x, lo, hi), lo, hi)
    x = x.copy()
    nudge_lo = np.isfinite(lo) & (x <= lo)
    nudge_hi = np.isfinite(hi) & (x >= hi)
    x[nudge_lo] = lo[nudge_lo] + 1e-9 * np.maximum(1.0, np.abs(lo[nudge_lo]))
    x[nudge_hi] = hi[nudge_hi] - 1e-9 * np.maximum(1.0, np.abs(hi[nudge_hi]))
    return x


def fit_curve(
    residuals: Callable[[np.ndarray], np.ndarray],
    starts: Iterable[np.ndarray],
    *,
    bounds: tuple[np.ndarray | float, np.ndarray | float] = (-np.inf, np.inf),
    loss: RobustLoss = "linear",
    huber_delta: float = 1e-3,
    jac: Callable[[np.ndarray], np.ndarray] | str = "2-point",
    max_nfev: int | None = None,
    xtol: float = 1e-10,
    ftol: float = 1e-10,
    gtol: float = 1e-10,
) -> CurveFit:
    """Minimise ``sum(loss(residuals(x)))`` from several starts with TRF; keep the best.

    Parameters
    ----------
    residuals
        Function of the parameter vector returning the residual vector.
    starts
        Starting parameter vectors; each is clipped into ``bounds``.
    bounds
        Lower and upper bounds (scalars or arrays).
    loss
        ``"linear"`` (ordinary least squares) or ``"huber"``.
    huber_delta
        The Huber threshold (SciPy's ``f_scale``) when ``loss="huber"``.
    jac
        Jacobian function or a finite-difference scheme name.
    max_nfev, xtol, ftol, gtol
        Passed to :func:`scipy.optimize.least_squares`.

    Returns
    -------
    CurveFit

    Raises
    ------
    FitError
        If no start finished with a finite cost.
    """
    if loss not in ("linear", "huber"):
        raise ValueError(f"loss must be 'linear' or 'huber', got {loss!r}")
    if not huber_delta > 0:
        raise ValueError(f"huber_delta must be positive, got {huber_delta!r}")
    lo, hi = (np.asarray(b, dtype=float) for b in bounds)
    best = None
    costs = []
    errors = []
    for start in starts:
        x0 = _strictly_inside(np.asarray(start, dtype=float), lo, hi)
        try:
            res = least_squares(
                residuals,
                x0,
                jac=jac,
                bounds=(lo, hi),
                method="trf",
                loss=loss,
                f_scale=huber_delta if loss == "huber" else 1.0,
                max_nfev=max_nfev,
                xtol=xtol,
                ftol=ftol,
                gtol=gtol,
            )
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
            costs.append(np.nan)
            errors.append(str(exc))
            continue
        cost = float(res.cost) if np.all(np.isfinite(res.fun)) else np.nan
        costs.append(cost)
        if np.isfinite(cost) and (best is None or cost < best.cost):
            best = res
    if best is None:
        detail = f" (last error: {errors[-1]})" if errors else ""
        raise FitError(f"none of {len(costs)} starts gave a finite fit{detail}")
    costs_arr = np.asarray(costs, dtype=float)
    return CurveFit(
        x=np.asarray(best.x, dtype=float),
        cost=float(best.cost),
        residuals=np.asarray(best.fun),
        success=bool(best.success),
        message=str(best.message),
        nfev=int(best.nfev),
        n_starts=len(costs),
        n_finished=int(np.isfinite(costs_arr).sum()),
        costs=costs_arr,
    )
