"""The noise model, written once: loss curves with a run offset integrated out.

Within one (run, domain) *curve* the share ``r`` is constant, so a latent offset per curve would
compete with ``-alpha log r`` and the sampler would struggle. Instead the offset is integrated
out. With residuals ``e`` (observed minus BiMix log loss) of a curve of ``n`` checkpoints, noise
sd ``sigma`` and offset sd ``tau``, the residuals are jointly Normal with covariance
``sigma^2 I + tau^2 J``, whose log density only needs ``S1 = sum(e)`` and ``S2 = sum(e^2)``::

    logdet = (n - 1) log sigma^2 + log(sigma^2 + n tau^2)
    q      = (S2 - tau^2 / (sigma^2 + n tau^2) * S1^2) / sigma^2
    log p  = -(n log(2 pi) + logdet + q) / 2

The Student-t option is the multivariate t with the same scale matrix (a Normal scale mixture:
one shared variance factor ``W ~ InvGamma(nu/2, nu/2)`` per curve)::

    log p  = lgamma((nu + n)/2) - lgamma(nu/2) - n/2 log(nu pi) - logdet/2
             - (nu + n)/2 log(1 + q / nu)

Opt-in (``likelihood.run_slope``): each curve also gets a random slope ``v`` in the centred log
step ``x``, ``v ~ Normal(0, kappa^2)``, so a run that learns a bit faster or slower than the law
keeps doing so. The covariance becomes ``sigma^2 I + tau^2 J + kappa^2 x x^T`` (rank two above
the diagonal), whose log density needs two more sums per curve, ``Sxe = sum(x e)`` and the
design sums ``Sx = sum(x)``, ``Sxx = sum(x^2)`` (:func:`curve_slope_quadratic`); forecasts far
from the fitted steps then widen as ``kappa^2 x^2``.

Given the data of a curve, its offset ``u`` and the variance factor ``W`` have closed-form
conditionals (:func:`offset_conditional`), used to forecast later checkpoints of an observed run.
Every function takes ``math=numpy`` or ``math=pytensor.tensor``.

The curve layout (:class:`CurveLayout`) pads each curve to a row of a rectangle, so curve sums
are plain row sums in both backends.

Examples
--------
>>> import numpy as np
>>> e = np.array([0.01, -0.02, 0.015])
>>> lp = curve_log_likelihood(e.sum(), (e**2).sum(), 3, 0.02, 0.01)
>>> from scipy.stats import multivariate_normal
>>> cov = 0.02**2 * np.eye(3) + 0.01**2 * np.ones((3, 3))
>>> bool(np.isclose(lp, multivariate_normal(np.zeros(3), cov).logpdf(e)))
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import gammaln

from bimix_bayes.bayes.checkpoints import CHECKPOINT_Z, cell_shocks, checkpoint_slots, slot_index
from bimix_bayes.bayes.law_params import gather, posterior_law, posterior_params
from bimix_bayes.bayes.noise import (
    NOISE_EXCESS,
    early_noise_decay,
    noise_decay_attrs,
    noise_variance_factor,
    weighted_sums,
)
from bimix_bayes.data.table import MixtureData
from bimix_bayes.laws.cross import cross_mask
from bimix_bayes.laws.drift import ALPHA_DRIFT, drift_term
from bimix_bayes.laws.registry import Law
from bimix_bayes.laws.schedule import ANNEAL, step_covariates, step_term
from bimix_bayes.laws.size import size_reference

__all__ = [
    "CurveLayout",
    "CurveSums",
    "curve_log_likelihood",
    "curve_quadratic",
    "curve_residual_sums",
    "curve_slope_quadratic",
    "draw_offsets",
    "draw_offsets_and_slopes",
    "early_noise",
    "gaussian_log_density",
    "level_information",
    "offset_conditional",
]


_CHUNK_VALUES = 4_000_000  # array elements handled at once when looping over posterior draws
_MAX_THREADS = 4  # chunks in flight at once (memory: a few arrays of _CHUNK_VALUES each)


def _gammaln(math: ModuleType) -> Any:
    return gammaln if math is np else math.gammaln


def curve_quadratic(
    s1: Any,
    s2: Any,
    n: Any,
    sigma: Any,
    tau: Any,
    *,
    count: Any = None,
    math: ModuleType = np,
) -> tuple[Any, Any]:
    """``(logdet, q)`` of a curve's residuals under covariance ``sigma^2 I + tau^2 J``.

    With the noise falling with the step (:mod:`~bimix_bayes.bayes.noise`) the sums are
    weighted and ``n = sum(w)``, while ``count`` is the number of checkpoints (default ``n``);
    the whitening's ``sum(log v)`` is not included.
    """
    count = n if count is None else count
    s2_sigma, t2 = sigma**2, tau**2
    total = s2_sigma + n * t2
    logdet = (count - 1) * math.log(s2_sigma) + math.log(total)
    q = (s2 - t2 / total * s1**2) / s2_sigma
    return logdet, q


def curve_slope_quadratic(
    s1: Any,
    s2: Any,
    n: Any,
    sigma: Any,
    tau: Any,
    slope: tuple[Any, Any, Any, Any],
    *,
    count: Any = None,
    math: ModuleType = np,
) -> tuple[Any, Any, dict[str, Any]]:
    """``(logdet, q, parts)`` under covariance ``sigma^2 I + tau^2 J + kappa^2 x x^T``.

    ``slope = (sxe, sx, sxx, kappa)``: per curve ``sum(x e)``, ``sum(x)``, ``sum(x^2)`` and the
    slope sd. With ``U = [1, x]``, ``D = diag(tau^2, kappa^2)``, ``b = U^T e`` and
    ``G = sigma^2 I + D U^T U`` (2 x 2)::

        logdet = n log sigma^2 + log det(G / sigma^2)
        q      = (S2 - b^T G^-1 D b) / sigma^2

    ``parts`` holds ``G^-1 D`` entries (``h11, h12, h21, h22``) and ``b`` (``b1, b2``): the
    conditional of ``(u, v)`` given the residuals is Normal with mean ``G^-1 D b`` and covariance
    ``sigma^2 G^-1 D``. ``kappa = 0`` gives :func:`curve_quadratic` exactly. ``count``: as
    there (weighted sums).
    """
    count = n if count is None else count
    sxe, sx, sxx, kappa = slope
    s2_sigma, t2, k2 = sigma**2, tau**2, kappa**2
    g11, g12 = s2_sigma + t2 * n, t2 * sx
    g21, g22 = k2 * sx, s2_sigma + k2 * sxx
    det_g = g11 * g22 - g12 * g21
    logdet = (count - 2) * math.log(s2_sigma) + math.log(det_g)
    # H = G^-1 D
    h11, h12 = g22 * t2 / det_g, -g12 * k2 / det_g
    h21, h22 = -g21 * t2 / det_g, g11 * k2 / det_g
    quad = s1 * (h11 * s1 + h12 * sxe) + sxe * (h21 * s1 + h22 * sxe)
    q = (s2 - quad) / s2_sigma
    parts = {"h11": h11, "h12": h12, "h21": h21, "h22": h22, "b1": s1, "b2": sxe}
    return logdet, q, parts


def level_information(
    s1: Any,
    n: Any,
    sigma: Any,
    tau: Any,
    *,
    slope: tuple[Any, Any, Any, Any] | None = None,
    math: ModuleType = np,
) -> tuple[Any, Any]:
    """``(1' Sigma^-1 e, 1' Sigma^-1 1)`` of each curve: what its residuals say about a shift
    ``l`` added to all of them.

    The residuals ``e - l 1`` have log density ``const + l a - l^2 b / 2`` with ``a = 1'
    Sigma^-1 e`` and ``b = 1' Sigma^-1 1``, so a Gaussian prior on ``l`` and these sums over
    the curves give its Gaussian conditional (what ``sampler.level = "conditional"`` samples
    around, :mod:`~bimix_bayes.bayes.graph`). With ``Sigma = sigma^2 V + tau^2 J`` (weighted
    sums, ``n = sum(1 / v)``): ``a = s1 / (sigma^2 + n tau^2)``, ``b = n / (sigma^2 + n
    tau^2)``. With the random slope (``slope = (sxe, sx, sxx, kappa)``, ``U = [1, x]``) by
    Woodbury, ``H = G^-1 D`` of :func:`curve_slope_quadratic`::

        a = (s1 - (n, sx) H (s1, sxe)') / sigma^2,   b = (n - (n, sx) H (n, sx)') / sigma^2

    Examples
    --------
    >>> e = np.array([0.01, -0.02, 0.015]); x = np.array([-1.0, 0.0, 1.0])
    >>> cov = 0.02**2 * np.eye(3) + 0.01**2 * np.ones((3, 3)) + 0.03**2 * np.outer(x, x)
    >>> a, b = level_information(e.sum(), 3, 0.02, 0.01, slope=((x * e).sum(), 0.0, 2.0, 0.03))
    >>> dense = np.linalg.solve(cov, np.stack([e, np.ones(3)], axis=1)).sum(axis=0)
    >>> bool(np.allclose([a, b], dense))
    True
    """
    if slope is None:
        total = sigma**2 + n * tau**2
        return s1 / total, n / total
    sxe, sx, _, _ = slope
    _, _, h = curve_slope_quadratic(s1, s1, n, sigma, tau, slope, math=math)
    s2_sigma = sigma**2
    a = s1 - n * (h["h11"] * s1 + h["h12"] * sxe) - sx * (h["h21"] * s1 + h["h22"] * sxe)
    b = n - n * (h["h11"] * n + h["h12"] * sx) - sx * (h["h21"] * n + h["h22"] * sx)
    return a / s2_sigma, b / s2_sigma


def curve_log_likelihood(
    s1: Any,
    s2: Any,
    n: Any,
    sigma: Any,
    tau: Any,
    *,
    family: str = "normal",
    nu: float = 5.0,
    math: ModuleType = np,
    slope: tuple[Any, Any, Any, Any] | None = None,
    count: Any = None,
    log_v: Any = 0.0,
) -> Any:
    """Log density of each curve's residuals, the run offset integrated out.

    Parameters
    ----------
    s1, s2
        Sum and sum of squares of the curve's residuals (observed minus BiMix log loss).
    n
        Number of checkpoints in the curve.
    sigma, tau
        Noise sd and run-offset sd (log loss); ``tau = 0`` gives independent noise.
    family
        ``"normal"`` or ``"student_t"`` (multivariate t with ``nu`` degrees of freedom).
    math
        ``numpy`` or ``pytensor.tensor``.
    slope
        ``(sxe, sx, sxx, kappa)`` for the opt-in random slope per curve (see
        :func:`curve_slope_quadratic`); None: offsets only.
    count, log_v
        With the noise falling with the step (:mod:`~bimix_bayes.bayes.noise`): the sums are
        weighted (``n = sum(w)``), ``count`` is the number of checkpoints and ``log_v`` the
        curve's ``sum(log v)``; None and 0 otherwise.
    """
    count = n if count is None else count
    if slope is None:
        logdet, q = curve_quadratic(s1, s2, n, sigma, tau, count=count, math=math)
    else:
        logdet, q, _ = curve_slope_quadratic(s1, s2, n, sigma, tau, slope, count=count, math=math)
    return gaussian_log_density(count, logdet + log_v, q, family=family, nu=nu, math=math)


def gaussian_log_density(
    n: Any, logdet: Any, q: Any, *, family: str = "normal", nu: float = 5.0, math: ModuleType = np
) -> Any:
    """Log density of ``n`` values with covariance (or t scale) of log det ``logdet`` and
    quadratic form ``q``: multivariate Normal, or multivariate t with ``nu`` degrees of freedom.

    Examples
    --------
    >>> round(float(gaussian_log_density(1, 0.0, 0.0)), 4)  # standard Normal at 0
    -0.9189
    """
    if family == "normal":
        return -0.5 * (n * np.log(2 * np.pi) + logdet + q)
    if family == "student_t":
        lg = _gammaln(math)
        return (
            lg((nu + n) / 2)
            - lg(nu / 2)
            - n / 2 * math.log(nu * np.pi)
            - 0.5 * logdet
            - (nu + n) / 2 * math.log1p(q / nu)
        )
    raise ValueError(f"family must be 'normal' or 'student_t', got {family!r}")


def offset_conditional(
    s1: Any,
    s2: Any,
    n: Any,
    sigma: Any,
    tau: Any,
    *,
    family: str = "normal",
    nu: float = 5.0,
    slope: tuple[Any, Any, Any, Any] | None = None,
    count: Any = None,
) -> dict[str, Any]:
    """Conditional distribution of a curve's offset given its residuals (numpy).

    Returns ``mean`` and ``var`` of the offset given ``W`` (``u | W ~ Normal(mean, W var)``), and
    the Inverse-Gamma ``(shape, rate)`` of the variance factor ``W`` (``None`` for the Normal
    family, where ``W = 1``). A new checkpoint of the same curve is
    ``mu + u + sqrt(W) sigma z``.

    With ``slope = (sxe, sx, sxx, kappa)`` (the opt-in random slope) it also returns
    ``slope_mean``, ``slope_var`` and ``cov`` (of ``u`` and the slope ``v``, given ``W``); a new
    checkpoint at centred log step ``x`` is then ``mu + u + v x + sqrt(W) sigma z``.

    With the noise falling with the step the sums are weighted (``n = sum(w)``) and ``count``
    is the number of checkpoints (:mod:`~bimix_bayes.bayes.noise`); the new checkpoint's noise
    is then ``sqrt(W v) sigma z``.
    """
    count = n if count is None else count
    if slope is not None:
        _, q, h = curve_slope_quadratic(s1, s2, n, sigma, tau, slope, count=count)
        s2_sigma = np.square(sigma)
        out = {
            "mean": h["h11"] * h["b1"] + h["h12"] * h["b2"],
            "slope_mean": h["h21"] * h["b1"] + h["h22"] * h["b2"],
            "var": s2_sigma * h["h11"],
            "slope_var": s2_sigma * h["h22"],
            "cov": s2_sigma * h["h12"],
            "w": None,
        }
        if family == "student_t":
            out["w"] = ((nu + count) / 2, (nu + q) / 2)
        return out
    s2_sigma, t2 = np.square(sigma), np.square(tau)
    total = s2_sigma + n * t2
    out: dict[str, Any] = {"mean": t2 * s1 / total, "var": s2_sigma * t2 / total, "w": None}
    if family == "student_t":
        _, q = curve_quadratic(s1, s2, n, sigma, tau)
        out["w"] = ((nu + count) / 2, (nu + q) / 2)
    return out


def draw_offsets(
    cond: dict[str, Any], rng: np.random.Generator, shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``(u, sqrt(W))`` from a conditional made by :func:`offset_conditional`.

    For a fresh run pass ``{"mean": 0, "var": tau**2, "w": (nu/2, nu/2) or None}``. A new
    checkpoint is then ``mu + u + sqrt(W) * sigma * z``.
    """
    shape = np.broadcast(cond["mean"], cond["var"]).shape if shape is None else shape
    u, scale, _ = draw_offsets_and_slopes(cond, rng, shape, slopes=False)
    return u, scale


def draw_offsets_and_slopes(
    cond: dict[str, Any],
    rng: np.random.Generator,
    shape: tuple[int, ...] | None = None,
    *,
    slopes: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``(u, sqrt(W), v)``: offset, scale factor and (opt-in) slope of each curve.

    ``cond`` comes from :func:`offset_conditional` (with ``slope=...`` for correlated ``(u, v)``)
    or, for a fresh run, ``{"mean": 0, "var": tau**2, "slope_mean": 0, "slope_var": kappa**2,
    "cov": 0, "w": ...}``. Without slope entries (or with ``slopes=False``) ``v`` is zero and the
    draws of ``u`` and ``W`` are exactly those of :func:`draw_offsets`.
    """
    shape = np.broadcast(cond["mean"], cond["var"]).shape if shape is None else shape
    if cond["w"] is None:
        scale = np.ones(shape)
    else:
        shape_w, rate_w = cond["w"]
        scale = np.sqrt(
            1.0 / rng.gamma(np.broadcast_to(shape_w, shape), 1.0 / np.broadcast_to(rate_w, shape))
        )
    z1 = rng.standard_normal(shape)
    u = cond["mean"] + scale * np.sqrt(cond["var"]) * z1
    if not slopes or "slope_var" not in cond:
        return u, scale, np.zeros(shape)
    # v | u: Normal(m_v + cov / var (u - m_u), slope_var - cov^2 / var), scaled by W
    var_u = np.broadcast_to(cond["var"], shape)
    cov = np.broadcast_to(cond["cov"], shape)
    safe = np.where(var_u > 0, var_u, 1.0)
    reg = np.where(var_u > 0, cov / safe, 0.0)
    rest = np.maximum(np.broadcast_to(cond["slope_var"], shape) - reg * cov, 0.0)
    z2 = rng.standard_normal(shape)
    v = cond["slope_mean"] + reg * (u - cond["mean"]) + scale * np.sqrt(rest) * z2
    return u, scale, v


@dataclass(frozen=True)
class CurveLayout:
    """Observations arranged as one padded row per (run, domain) curve.

    Attributes
    ----------
    domains, runs
        Labels; curves index into them with ``curve_domain`` and ``curve_run``.
    curve_run, curve_domain, curve_log_r, n
        Per curve: run index, domain index, log share of its domain, number of checkpoints.
    training_domains, curve_shares, curve_own_share, own_index
        The training domains; per curve the run's shares of them (curve x training domain) and
        the share of its own domain (0 for an evaluation domain that is not trained on); per
        evaluation domain its column among the training domains (-1 when it has none). What a
        cross-domain law (:mod:`bimix_bayes.laws.registry`) reads.
    obs_curve, obs_pos
        Per observation (in ``data.observations`` order): its curve and column in the rectangle.
    x, y, mask
        Rectangles (curve x max checkpoints): centred log step, log loss, 1 where observed.
    step_grid, grid_index
        The distinct centred log steps (with sizes: of the distinct (step, size) pairs), and
        for each cell of the rectangle the position of (its domain, its grid point) in the
        flattened (domain x step_grid) table. The step factor of the law depends on the domain
        and the step (and size) only, so the model evaluates it once per (domain, grid point)
        and gathers it: far fewer exp/log evaluations per gradient.
    s_ref
        Reference step of the centring.
    z, grid_z, size_ref
        With a model-size dimension (:attr:`has_sizes`): the centred log size
        ``log(N / size_ref)`` of each cell and of each grid point (:mod:`bimix_bayes.laws.size`);
        zeros and ``size_ref = 0`` without sizes.
    u, grid_u, has_schedule
        With a learning-rate schedule (``data.schedule``, :mod:`bimix_bayes.laws.schedule`):
        ``x`` and ``step_grid`` are ``log(S1(s) / S1(s_ref))``, ``u`` and ``grid_u`` the
        annealing covariate of each cell and grid point; zeros without one.
    noise_x0
        The ``x`` of the first fitted step, where the early checkpoints' excess noise is
        measured from (:mod:`~bimix_bayes.bayes.noise`).
    """

    domains: tuple[str, ...]
    runs: tuple[str, ...]
    curve_run: np.ndarray
    curve_domain: np.ndarray
    curve_log_r: np.ndarray
    n: np.ndarray
    obs_curve: np.ndarray
    obs_pos: np.ndarray
    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    step_grid: np.ndarray
    grid_index: np.ndarray
    s_ref: float
    training_domains: tuple[str, ...] = ()
    curve_shares: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    curve_own_share: np.ndarray = field(default_factory=lambda: np.zeros(0))
    own_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    z: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    grid_z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    size_ref: float = 0.0
    u: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    grid_u: np.ndarray = field(default_factory=lambda: np.zeros(0))
    has_schedule: bool = False
    noise_x0: float = 0.0

    def noise_decay(self, power: float, x0: float | None = None) -> np.ndarray:
        """Per cell the decay ``g`` of the early checkpoints' excess noise variance
        (:func:`~bimix_bayes.bayes.noise.early_noise_decay`), from ``x0`` (default: this
        layout's first step); zero where nothing is observed."""
        x0 = self.noise_x0 if x0 is None else x0
        return early_noise_decay(self.x, x0, power=power) * self.mask

    def grid_noise_decay(self, power: float) -> np.ndarray:
        """:meth:`noise_decay` at each point of ``step_grid`` (what the model graph reads)."""
        return early_noise_decay(self.step_grid, self.noise_x0, power=power)

    @property
    def log_share_centre(self) -> np.ndarray:
        """Per domain, the mean log own share over its curves (0 for a domain with no positive
        own share, e.g. an evaluation-only domain): the share at which
        ``sampler.centre_share`` samples the loss level (:func:`~bimix_bayes.bayes.graph.
        _step_level_slope`)."""
        positive = self.curve_own_share > 0
        with np.errstate(divide="ignore"):
            log_share = np.where(positive, np.log(self.curve_own_share), 0.0)
        n_domains = len(self.domains)
        total = np.bincount(self.curve_domain, log_share, minlength=n_domains)
        count = np.bincount(self.curve_domain, positive, minlength=n_domains)
        return np.where(count > 0, total / np.maximum(count, 1), 0.0)

    @property
    def checkpoint_slots(self) -> int:
        """Checkpoint-shock slots per domain for this grid (:func:`~bimix_bayes.bayes.
        checkpoints.checkpoint_slots`)."""
        return checkpoint_slots(len(self.step_grid))

    @property
    def checkpoint_index(self) -> np.ndarray:
        """Each cell's position in the flattened (domain x slots) checkpoint-shock table."""
        return slot_index(self.grid_index, len(self.step_grid), self.checkpoint_slots)

    @property
    def has_sizes(self) -> bool:
        """Whether the data have a model-size dimension (the law's size slopes are fitted)."""
        return self.size_ref > 0

    @property
    def has_evaluation_only(self) -> bool:
        """Whether some evaluation domain is not a training domain (no own share)."""
        return bool((self.own_index < 0).any())

    @classmethod
    def from_data(
        cls, data: MixtureData, s_ref: float, size_ref: float | None = None
    ) -> CurveLayout:
        """Build the layout of ``data`` with steps centred on ``s_ref`` (through the areas of
        ``data.schedule`` when it has one) and, when the data have sizes, sizes on ``size_ref``
        (default: :func:`~bimix_bayes.laws.size.size_reference`); ``noise_x0`` is the ``x`` of
        its first step."""
        obs = data.observations
        domains, runs = data.domains, data.runs
        dom_idx = pd.Index(domains).get_indexer(obs["domain"])
        run_idx = pd.Index(runs).get_indexer(obs["run"])
        key = dom_idx * len(runs) + run_idx
        uniq, obs_curve = np.unique(key, return_inverse=True)
        curve_domain, curve_run = np.divmod(uniq, len(runs))
        obs_pos = pd.Series(obs_curve).groupby(obs_curve).cumcount().to_numpy()
        n = np.bincount(obs_curve, minlength=len(uniq))
        shape = (len(uniq), int(n.max()))
        x = np.zeros(shape)
        y = np.zeros(shape)
        mask = np.zeros(shape)
        grid_index = np.zeros(shape, dtype=np.int64)
        x_obs, u_obs = step_covariates(obs["step"].to_numpy(dtype=float), s_ref, data.schedule)
        u_obs = np.zeros(len(obs)) if u_obs is None else u_obs
        z = np.zeros(shape)
        if data.has_sizes:
            sizes = obs["size"].to_numpy(dtype=float)
            size_ref = size_reference(sizes) if size_ref is None else float(size_ref)
            z_obs = np.log(sizes / size_ref)
        else:
            size_ref, z_obs = 0.0, np.zeros(len(obs))
        pairs, step_of_obs = np.unique(
            np.column_stack([x_obs, z_obs, u_obs]), axis=0, return_inverse=True
        )
        step_grid, grid_z, grid_u = pairs[:, 0], pairs[:, 1], pairs[:, 2]
        step_of_obs = step_of_obs.ravel()
        z[obs_curve, obs_pos] = z_obs
        u = np.zeros(shape)
        u[obs_curve, obs_pos] = u_obs
        x[obs_curve, obs_pos] = x_obs
        y[obs_curve, obs_pos] = np.log(obs["loss"].to_numpy(dtype=float))
        mask[obs_curve, obs_pos] = 1.0
        grid_index[obs_curve, obs_pos] = curve_domain[obs_curve] * len(step_grid) + step_of_obs
        training = [str(c) for c in data.mixtures.columns]
        all_shares = data.mixtures.loc[list(runs), training].to_numpy(dtype=float)
        own_index = np.array([training.index(d) if d in training else -1 for d in domains])
        own_of_curve = own_index[curve_domain]
        own_share = np.where(
            own_of_curve >= 0, all_shares[curve_run, np.maximum(own_of_curve, 0)], 0.0
        )
        with np.errstate(divide="ignore"):
            curve_log_r = np.where(own_of_curve >= 0, np.log(own_share), -np.inf)
        return cls(
            domains=tuple(domains),
            runs=tuple(runs),
            curve_run=curve_run,
            curve_domain=curve_domain,
            curve_log_r=curve_log_r,
            n=n.astype(float),
            obs_curve=obs_curve,
            obs_pos=obs_pos,
            x=x,
            y=y,
            mask=mask,
            step_grid=step_grid,
            grid_index=grid_index,
            s_ref=float(s_ref),
            training_domains=tuple(training),
            curve_shares=all_shares[curve_run],
            curve_own_share=own_share,
            own_index=own_index,
            z=z,
            grid_z=grid_z,
            size_ref=float(size_ref),
            u=u,
            grid_u=grid_u,
            has_schedule=data.schedule is not None,
            noise_x0=float(x_obs.min()),
        )

    @classmethod
    def placeholder(
        cls,
        n_domains: int,
        n_train: int | None = None,
        *,
        sizes: bool = False,
        schedule: bool = False,
        steps: int = 2,
    ) -> CurveLayout:
        """A layout with the right number of domains and dummy data (to compile a model).

        Every data axis has length >= 2, so no axis is taken as broadcastable. The training
        domains default to the evaluation domains (``n_train = n_domains``); ``sizes`` gives it
        a model-size dimension, ``schedule`` an annealing covariate; ``steps`` (>= 2) distinct
        steps in its grid (what sizes the checkpoint shocks, :mod:`~bimix_bayes.bayes.
        checkpoints`).
        """
        if steps < 2:
            raise ValueError(f"a placeholder needs at least 2 distinct steps, got {steps}")
        n_train = n_domains if n_train is None else n_train
        curves = 2 * n_domains
        return cls(
            domains=tuple(f"d{i}" for i in range(n_domains)),
            runs=("r0", "r1"),
            curve_run=np.arange(curves) // n_domains,
            curve_domain=np.arange(curves) % n_domains,
            curve_log_r=np.full(curves, np.log(0.5)),
            n=np.full(curves, 2.0),
            obs_curve=np.repeat(np.arange(curves), 2),
            obs_pos=np.tile([0, 1], curves),
            x=np.tile([-1.0, 1.0], (curves, 1)),
            y=np.zeros((curves, 2)),
            mask=np.ones((curves, 2)),
            step_grid=np.linspace(-1.0, 1.0, steps),
            grid_index=(np.arange(curves) % n_domains)[:, None] * steps + np.array([0, 1]),
            s_ref=1.0,
            training_domains=tuple(f"t{i}" for i in range(n_train)),
            curve_shares=np.full((curves, n_train), 1.0 / n_train),
            curve_own_share=np.full(curves, 0.5),
            own_index=np.where(np.arange(n_domains) < n_train, np.arange(n_domains), -1),
            z=np.tile([-0.5, 0.5], (curves, 1)) if sizes else np.zeros((curves, 2)),
            grid_z=np.array([-0.5, 0.5]) if sizes else np.zeros(2),
            size_ref=1.0 if sizes else 0.0,
            u=np.tile([0.0, 0.5], (curves, 1)) if schedule else np.zeros((curves, 2)),
            grid_u=np.array([0.0, 0.5]) if schedule else np.zeros(2),
            has_schedule=schedule,
            noise_x0=-1.0,
        )

    @property
    def cross_mask(self) -> np.ndarray:
        """``(domain, training domain)``: 1 where a cross effect is free (not the own column)."""
        return cross_mask(self.own_index, len(self.training_domains))

    def x_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Per curve: ``sum(x)`` and ``sum(x^2)`` over its checkpoints (random-slope option)."""
        return (self.x * self.mask).sum(axis=1), (self.x**2 * self.mask).sum(axis=1)

    def by_run(self, per_curve: np.ndarray) -> np.ndarray:
        """Values per curve (last axis) laid out per (run, domain); zero where there is no curve.

        Examples
        --------
        >>> layout = CurveLayout.placeholder(3)
        >>> layout.by_run(layout.n).shape  # (run, domain)
        (2, 3)
        """
        out = np.zeros((*np.shape(per_curve)[:-1], len(self.runs), len(self.domains)))
        out[..., self.curve_run, self.curve_domain] = per_curve
        return out

    def run_design(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per (run, domain): ``n``, ``sum(x)`` and ``sum(x^2)`` (correlated run effects)."""
        sx, sxx = self.x_sums()
        return self.by_run(self.n), self.by_run(sx), self.by_run(sxx)

    def run_step_sets(self) -> np.ndarray:
        """Per run, an id of its set of (domain, step) cells: runs with the same id have the
        same checkpoints in every domain (``(run, 1)``, float)."""
        cells: list[list[tuple[int, float]]] = [[] for _ in self.runs]
        for c, (r, d) in enumerate(zip(self.curve_run, self.curve_domain, strict=True)):
            observed = self.x[c][self.mask[c] > 0]
            cells[r].extend((int(d), float(v)) for v in np.round(observed, 12))
        ids: dict[tuple[tuple[int, float], ...], int] = {}
        index = [ids.setdefault(tuple(sorted(run)), len(ids)) for run in cells]
        return np.asarray(index, dtype=float)[:, None]

    def curve_labels(self) -> list[str]:
        """``"run/domain"`` label of each curve."""
        return [
            f"{self.runs[r]}/{self.domains[d]}"
            for r, d in zip(self.curve_run, self.curve_domain, strict=True)
        ]


@dataclass(frozen=True)
class CurveSums:
    """What the likelihood needs of each curve, per posterior draw: shaped (chain, draw, curve).

    Attributes
    ----------
    s1, s2
        Sum and sum of squares of the curve's residuals (observed minus BiMix log loss).
    sigma, tau
        Noise sd and run-offset sd of the curve's domain (``tau`` is zero without run offsets).
    sxe, kappa
        The random-slope option: ``sum(x e)`` and the slope sd of the curve's domain; None when
        the option is off.
    n, sx, sxx, log_v
        With the noise falling with the step (:mod:`~bimix_bayes.bayes.noise`): the weighted
        design sums and ``sum(log v)`` per draw and curve (``s1``, ``s2``, ``sxe`` are then
        weighted too; ``sx``, ``sxx`` None without run slopes, which alone need them); None:
        constant noise, the layout's plain sums.
    mean_residual, mean_weight
        With model sizes, per cell of the layout's rectangle (curve x checkpoint): the residual
        and the noise weight ``1 / v`` averaged over the draws (zero where nothing is observed;
        the weight is 1 under constant noise), what the run x size offsets are estimated from
        (:mod:`~bimix_bayes.bayes.run_size_offsets`); None for a layout without sizes.
    """

    s1: np.ndarray
    s2: np.ndarray
    sigma: np.ndarray
    tau: np.ndarray
    sxe: np.ndarray | None = None
    kappa: np.ndarray | None = None
    n: np.ndarray | None = None
    sx: np.ndarray | None = None
    sxx: np.ndarray | None = None
    log_v: np.ndarray | None = None
    mean_residual: np.ndarray | None = None
    mean_weight: np.ndarray | None = None

    def design(self, layout: CurveLayout) -> tuple[Any, Any, Any]:
        """``(n, sx, sxx)`` of each curve: weighted per draw (``sx``, ``sxx`` None when the sums
        were made without run slopes), or the layout's plain sums."""
        if self.n is None:
            return (layout.n, *layout.x_sums())
        return self.n, self.sx, self.sxx

    def slope(self, layout: CurveLayout) -> tuple[Any, Any, Any, Any] | None:
        """``(sxe, sx, sxx, kappa)`` of :func:`curve_slope_quadratic`; None without slopes."""
        if self.sxe is None:
            return None
        return (self.sxe, *self.design(layout)[1:], self.kappa)

    def _curve_args(self, layout: CurveLayout) -> tuple[Any, ...]:
        """``(s1, s2, n, sigma, tau)``: the leading arguments of the per-curve closed forms."""
        return (self.s1, self.s2, self.design(layout)[0], self.sigma, self.tau)

    def log_likelihood(self, layout: CurveLayout, *, family: str, nu: float) -> np.ndarray:
        """:func:`curve_log_likelihood` of every curve, shaped like the sums."""
        log_v = 0.0 if self.log_v is None else self.log_v
        slope = self.slope(layout)
        return curve_log_likelihood(
            *self._curve_args(layout), family=family, nu=nu, slope=slope, count=layout.n,
            log_v=log_v,
        )  # fmt: skip

    def conditional(self, layout: CurveLayout, *, family: str, nu: float) -> dict[str, Any]:
        """:func:`offset_conditional` of every curve; ``mean`` broadcast to the sums' shape."""
        slope = self.slope(layout)
        cond = offset_conditional(
            *self._curve_args(layout), family=family, nu=nu, slope=slope, count=layout.n
        )
        cond["mean"] = np.broadcast_to(cond["mean"], self.s1.shape)
        return cond


#: The step factor's parameters, shared by every law (:func:`~bimix_bayes.laws.schedule.step_term`).
STEP_PARAMS = ("log_floor", "log_reducible", "beta", ANNEAL)


def _mean_on_grid(
    law: Law,
    layout: CurveLayout,
    by_domain: Mapping[str, np.ndarray],
    by_curve: Mapping[str, np.ndarray],
    sl: tuple[int, slice],
) -> np.ndarray:
    """``law.log_loss`` of every cell for the draws ``sl``, ``(draws, curve, checkpoint)``:
    the mixture term per curve plus the step factor per (domain, grid step), gathered, plus
    the exponent's drift (the curve's log share times ``x``) where the posterior has one."""
    mixture = law.mixture_term(
        layout.curve_shares,
        layout.curve_own_share,
        {k: v[sl] for k, v in by_curve.items()},  # the mixture's (and drift's) parameters
    )
    grid = {k: by_domain[k][sl][..., None] for k in STEP_PARAMS if k in by_domain}
    u = layout.grid_u[None, None, :] if layout.has_schedule else None
    factor = step_term(layout.step_grid[None, None, :], grid, u)
    flat = factor.reshape(factor.shape[0], -1)
    out = mixture[..., None] + flat[:, layout.grid_index]
    if ALPHA_DRIFT in by_curve:
        log_own = np.log(layout.curve_own_share)[:, None]
        out += drift_term(log_own, layout.x, by_curve[ALPHA_DRIFT][sl][..., None])
    return out


def curve_residual_sums(
    posterior: xr.Dataset,
    layout: CurveLayout,
    *,
    with_slope: bool = False,
    cell_means: bool | None = None,
) -> CurveSums:
    """Per draw and curve: ``S1``, ``S2`` of the residuals, and ``sigma``, ``tau`` of its domain.

    Arrays are shaped (chain, draw, curve). Draws are processed in chunks so that memory stays
    bounded however long the loss logs are, one thread per core up to four (the results do not
    depend on the number of threads). With ``with_slope=True`` the sums also hold
    ``Sxe = sum(x e)`` and ``kappa`` of the curve's domain (the random-slope option; zero when
    the posterior has no ``kappa``). With ``cell_means`` (default: with model sizes) the
    residual and noise weight of every cell, averaged over the draws, come along
    (``mean_residual``, ``mean_weight``: what the checkpoint noise's correlation and a size
    fit's run x size luck are estimated from).
    """
    d = layout.curve_domain
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], len(d))

    def by_curve(name: str) -> np.ndarray:
        if name not in posterior:  # tau without run offsets, kappa without slopes
            return np.zeros(shape)
        return posterior[name].transpose("chain", "draw", "domain").to_numpy()[..., d]

    law = posterior_law(posterior)
    by_domain = posterior_params(posterior, law)
    # The law's two factors evaluated apart, as the model graph does: the mixture term once per
    # curve, the step factor once per (domain, distinct step), gathered to the cells (the
    # exponent's drift, the log share times x, added per cell). Model sizes (which move both)
    # take the whole law per cell instead.
    on_grid = not layout.has_sizes
    per_curve = {k: v for k, v in by_domain.items() if not (on_grid and k in STEP_PARAMS)}
    params = gather(per_curve, d)
    shocks = CHECKPOINT_Z in posterior  # each checkpoint's shock, shared by every run
    s1, s2 = np.empty(shape), np.empty(shape)
    sxe = np.empty(shape) if with_slope else None
    decay = early_noise(posterior, layout)
    if decay is not None:  # the noise falls with the step: weighted sums per draw
        eta = by_curve(NOISE_EXCESS)
        n_w, log_v = np.empty(shape), np.empty(shape)
        sx_w, sxx_w = (np.empty(shape), np.empty(shape)) if with_slope else (None, None)
    cells = layout.has_sizes if cell_means is None else cell_means
    mean_residual, mean_weight = np.zeros(layout.x.shape), np.zeros(layout.x.shape)
    step = max(1, _CHUNK_VALUES // max(1, layout.x.size * max(1, len(layout.training_domains))))

    def one_chunk(sl: tuple[int, slice]) -> tuple[Any, Any]:
        """Fill the sums of the draws ``sl``; return their cells' residual and weight totals."""
        if on_grid:
            mu = _mean_on_grid(law, layout, by_domain, params, sl)
        else:
            mu = law.log_loss(
                layout.curve_shares[:, None, :],
                layout.curve_own_share[:, None],
                layout.x,
                {k: v[sl][..., None, :] if k == "cross" else v[sl][..., None]
                 for k, v in params.items()},
                z=layout.z if layout.has_sizes else None,
                u=layout.u if layout.has_schedule else None,
            )  # fmt: skip
        if shocks:  # likelihood.checkpoint_sd_scale > 0
            mu = mu + cell_shocks(posterior, layout.grid_index, len(layout.step_grid), sl)
        v = None if decay is None else noise_variance_factor(decay, eta[sl][..., None])
        residual = layout.y - mu
        totals = (0.0, 0.0)
        if cells:
            totals = (residual.sum(axis=0), len(residual) if v is None else (1.0 / v).sum(axis=0))
        sums = weighted_sums(residual, layout.mask, layout.x, v, with_x=with_slope)
        s1[sl], s2[sl] = sums.s1, sums.s2
        if with_slope:
            sxe[sl] = sums.sxe
        if decay is not None:
            n_w[sl], log_v[sl] = sums.n, sums.log_v
            if with_slope:
                sx_w[sl], sxx_w[sl] = sums.sx, sums.sxx
        return totals

    # chunks write disjoint slices; numpy releases the GIL in their array arithmetic, so a
    # thread per core shares the work (at most _MAX_THREADS: each holds a chunk's temporaries);
    # the cell totals are added in chunk order (reproducible)
    chunks = [(c, slice(a, a + step)) for c in range(shape[0]) for a in range(0, shape[1], step)]
    threads = min(len(chunks), os.cpu_count() or 1, _MAX_THREADS)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for res, weight in pool.map(one_chunk, chunks):
            mean_residual += res
            mean_weight += weight
    extra: dict[str, np.ndarray | None] = {}
    if decay is not None:
        extra = {"n": n_w, "sx": sx_w, "sxx": sxx_w, "log_v": log_v}
    if cells:
        n_draws = shape[0] * shape[1]
        extra["mean_residual"] = mean_residual * layout.mask / n_draws
        extra["mean_weight"] = mean_weight * layout.mask / n_draws
    return CurveSums(
        s1=s1,
        s2=s2,
        sigma=by_curve("sigma"),
        tau=by_curve("tau"),
        sxe=sxe,
        kappa=None if sxe is None else by_curve("kappa"),
        **extra,
    )


def early_noise(posterior: xr.Dataset, layout: CurveLayout) -> np.ndarray | None:
    """Per cell of ``layout`` the decay ``g`` of the early checkpoints' excess noise under the
    fit of ``posterior`` (its power and first step, ``attrs``); None when its noise is constant
    (:mod:`~bimix_bayes.bayes.noise`)."""
    if NOISE_EXCESS not in posterior:
        return None
    return layout.noise_decay(*noise_decay_attrs(posterior))
