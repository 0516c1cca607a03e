"""Noise that falls with the step: a run's first checkpoints scatter more around the law.

On by default (``likelihood.early_noise_scale = 3``; 0 turns it off). The measurement noise of
a cell (one checkpoint of one run on one domain) at log step ``x`` has variance
``sigma[d]^2 v`` with::

    v = 1 + eta[d]^2 g,    g = exp(-2 k (x - x0)),    eta[d] ~ Gamma(2) (early_noise_prior)

``x0`` the first fitted step (``g = 1`` there: the noise variance at the first checkpoint is
``1 + eta^2`` times the floor), ``k`` = ``likelihood.early_noise_power`` (1: the excess sd falls
as ``1 / s``). Beyond the fitted steps ``v`` tends to 1: forecasts of later checkpoints carry the
floor ``sigma``, not the average over a run's early and late checkpoints.

Why: least-squares residuals of log loss (the paper's BiMix fitted to all checkpoints, each
(run, domain) mean and each (domain, step) mean removed, what is left being a run's own noise)
have an sd of 0.0119 / 0.0153 / 0.0108 at the first checkpoint of SlimPajama 122M / 680M /
1.235B, 0.0088 / 0.0058 / 0.0043 at the second, and 0.0028-0.0062 later. One constant ``sigma``
per domain is inflated by the first two, and every forecast of a later checkpoint carries that
inflated noise (90 % intervals of SlimPajama's later points cover 95-99 %).

The likelihood whitens each cell by ``1 / sqrt(v)``: the covariance of a curve's residuals is
``sigma^2 V + tau^2 J (+ kappa^2 x x^T)`` with ``V = diag(v)``, and in whitened coordinates it is
``sigma^2 I + tau^2 a a^T`` with ``a = V^-1/2 1``. Every closed form of
:mod:`~bimix_bayes.bayes.likelihood` and :mod:`~bimix_bayes.bayes.correlated` keeps its shape with
weighted sums (``weights = 1 / v``)::

    n -> sum(w),  S1 -> sum(w e),  S2 -> sum(w e^2),  Sx -> sum(w x),  Sxx -> sum(w x^2),
    Sxe -> sum(w x e),  logdet -> logdet + sum(log v)

with the count of cells (not ``sum(w)``) wherever it counts dimensions (``(n - 1) log sigma^2``,
``n log 2 pi``, the Student-t degrees of freedom). :func:`weighted_sums` computes them, for numpy
and pytensor alike.

Examples
--------
>>> import numpy as np
>>> g = early_noise_decay(np.log([1.0, 2.0, 4.0]), 0.0, power=1.0)
>>> g.round(4).tolist()  # the excess variance falls as 1 / s^2
[1.0, 0.25, 0.0625]
>>> noise_variance_factor(g, 2.0).round(2).tolist()  # eta = 2: 5x the floor at the first step
[5.0, 2.0, 1.25]
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "NOISE_EXCESS",
    "NOISE_POWER_ATTR",
    "NOISE_X0_ATTR",
    "WeightedSums",
    "early_noise_decay",
    "fit_noise_variance",
    "has_early_noise",
    "noise_attrs",
    "noise_decay_attrs",
    "noise_variance_factor",
    "weighted_sums",
]

#: The posterior variable of ``eta[d]``, the early checkpoints' excess noise (sd multiple).
NOISE_EXCESS = "noise_excess"
#: The posterior's attributes that hold ``k`` and ``x0`` of a fit (what forecasts need).
NOISE_POWER_ATTR = "early_noise_power"
NOISE_X0_ATTR = "early_noise_x0"


def has_early_noise(spec: Any) -> bool:
    """Whether ``spec`` lets the noise fall with the step (``likelihood.early_noise_scale > 0``)."""
    return spec["likelihood"].get("early_noise_scale", 0.0) > 0


def noise_attrs(spec: Any, x0: float) -> dict[str, float]:
    """The posterior attributes a fit under ``spec`` whose first fitted step is at ``x0``
    records for forecasts (empty when its noise is constant).

    Examples
    --------
    >>> noise_attrs({"likelihood": {"early_noise_scale": 3.0, "early_noise_power": 1.0}}, -2.0)
    {'early_noise_power': 1.0, 'early_noise_x0': -2.0}
    """
    if not has_early_noise(spec):
        return {}
    return {NOISE_POWER_ATTR: float(spec["likelihood"]["early_noise_power"]), NOISE_X0_ATTR: x0}


def early_noise_decay(x: Any, x0: float, *, power: float, math: ModuleType = np) -> Any:
    """``g = exp(-2 power (x - x0))``: the decay of the excess noise variance at log step ``x``
    (1 at the first fitted step ``x0``)."""
    return math.exp(-2.0 * power * (x - x0))


def noise_variance_factor(decay: Any, eta: Any) -> Any:
    """``v = 1 + eta^2 g``: a cell's noise variance in units of its domain's ``sigma^2``."""
    return 1.0 + eta**2 * decay


def noise_decay_attrs(posterior: xr.Dataset) -> tuple[float, float]:
    """``(power, x0)`` of draws that have :data:`NOISE_EXCESS`, from their ``attrs`` (a fit
    records them); a clear error when draws made outside a fit lack them.

    Examples
    --------
    >>> noise_decay_attrs(xr.Dataset(attrs={NOISE_POWER_ATTR: 1.0, NOISE_X0_ATTR: -2.0}))
    (1.0, -2.0)
    """
    lacking = [a for a in (NOISE_POWER_ATTR, NOISE_X0_ATTR) if a not in posterior.attrs]
    if lacking:
        raise ValueError(
            f"these draws have {NOISE_EXCESS!r} but not the attrs {lacking} that say how the "
            "noise falls with the step; draws made outside a fit need "
            "`draws.attrs.update(noise_attrs(model.spec, layout.noise_x0))` "
            "(bimix_bayes.bayes.noise.noise_attrs)"
        )
    return float(posterior.attrs[NOISE_POWER_ATTR]), float(posterior.attrs[NOISE_X0_ATTR])


def fit_noise_variance(posterior: xr.Dataset, x: np.ndarray) -> xr.DataArray | None:
    """``v`` of a fit at log steps ``x``, over (chain, draw, step, domain); None when the
    fit's noise is constant. The fit's power and first step are in ``posterior.attrs``.

    Examples
    --------
    >>> post = xr.Dataset({NOISE_EXCESS: (("chain", "draw", "domain"), np.full((1, 1, 2), 2.0))},
    ...                   attrs={NOISE_POWER_ATTR: 1.0, NOISE_X0_ATTR: 0.0})
    >>> fit_noise_variance(post, np.log([1.0, 2.0])).values[0, 0, :, 0].tolist()
    [5.0, 2.0]
    """
    if NOISE_EXCESS not in posterior:
        return None
    power, x0 = noise_decay_attrs(posterior)
    decay = early_noise_decay(np.asarray(x, dtype=float), x0, power=power)
    eta = posterior[NOISE_EXCESS].transpose("chain", "draw", "domain")
    return noise_variance_factor(xr.DataArray(decay, dims="step"), eta).transpose(
        "chain", "draw", "step", "domain"
    )


@dataclass(frozen=True)
class WeightedSums:
    """Per-curve sums of residuals ``e`` weighted by ``w = 1 / v`` (module docstring).

    ``n``, ``sx``, ``sxx``: the design's ``sum(w)``, ``sum(w x)``, ``sum(w x^2)``; ``s1``,
    ``s2``, ``sxe``: ``sum(w e)``, ``sum(w e^2)``, ``sum(w x e)``; ``log_v``: ``sum(log v)``
    (what the whitening adds to the log determinant). Without weights they are the plain sums
    and ``log_v = 0``.
    """

    n: Any
    s1: Any
    s2: Any
    sx: Any
    sxx: Any
    sxe: Any
    log_v: Any

    def shifted(self, shift: Any) -> WeightedSums:
        """The sums of ``e - shift`` (one shift per curve) from those of ``e``: ``s1 - shift
        n``, ``s2 - 2 shift s1 + shift^2 n``, ``sxe - shift sx``; the design's are unchanged.

        Examples
        --------
        >>> e = np.array([[0.02, 0.01, 0.0]]); x = np.array([[0.0, 1.0, 2.0]])
        >>> v = np.array([[2.0, 1.0, 1.0]]); m = np.ones_like(e)
        >>> a = weighted_sums(e, m, x, v).shifted(np.array([0.5]))
        >>> b = weighted_sums(e - 0.5, m, x, v)
        >>> all(np.allclose(getattr(a, k), getattr(b, k)) for k in ("s1", "s2", "sxe"))
        True
        """
        return replace(
            self,
            s1=self.s1 - shift * self.n,
            s2=self.s2 - 2 * shift * self.s1 + shift**2 * self.n,
            sxe=None if self.sxe is None else self.sxe - shift * self.sx,
        )


def weighted_sums(
    e: Any,
    mask: Any,
    x: Any,
    v: Any | None = None,
    *,
    log_v: Any | None = None,
    math: ModuleType = np,
    with_x: bool = True,
) -> WeightedSums:
    """Row sums of masked residuals ``e`` (curve x checkpoint), weighted by ``1 / v`` when the
    noise falls with the step (``v`` None: constant noise); ``log_v``: ``log(v)`` per cell when
    the caller has it cheaper (the model graph gathers it from a per-step table).
    ``with_x=False`` skips the sums in ``x`` (``sx``, ``sxx``, ``sxe`` are then None): only a
    run slope needs them.

    Examples
    --------
    >>> e = np.array([[0.02, 0.01, 0.0]]); x = np.array([[0.0, 1.0, 2.0]])
    >>> s = weighted_sums(e, np.ones_like(e), x, np.array([[2.0, 1.0, 1.0]]))
    >>> s.n.tolist(), s.s1.tolist(), s.log_v.round(4).tolist()
    ([2.5], [0.02], [0.6931])
    """
    e = e * mask
    if v is None:
        w, log_v = mask, 0.0
    else:
        w = mask / v
        log_v = (mask * (math.log(v) if log_v is None else log_v)).sum(axis=-1)
    we = w * e
    wx = w * x if with_x else None
    return WeightedSums(
        n=w.sum(axis=-1),
        s1=we.sum(axis=-1),
        s2=(we * e).sum(axis=-1),
        sx=None if wx is None else wx.sum(axis=-1),
        sxx=None if wx is None else (wx * x).sum(axis=-1),
        sxe=None if wx is None else (wx * e).sum(axis=-1),
        log_v=log_v,
    )
