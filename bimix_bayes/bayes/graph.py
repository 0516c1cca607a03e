"""The PyMC graph of the hierarchical BiMix model, and its one compiled nutpie copy.

:func:`build_pymc_model` writes the model of a curve layout under a spec: a prior per law
parameter (pooled across domains, or per domain), per-domain noise, run effects (per curve, or
correlated across domains per run, :mod:`~bimix_bayes.bayes.correlated`) integrated out in the
likelihood. Each domain's level is drawn given everything else (:class:`StepLevel`), the
own-share exponent around its Laplace approximation given the rest (:class:`LaplaceExponent`)
and the cross effects around their Gaussian conditionals (:class:`ConditionalCross`): changes
of variables that leave the posterior as it is and take away the funnels few runs make between
those and the sds of the run effects and of the cross effects. The data live in
``pm.Data`` containers (:func:`data_names`), so :func:`compiled_nutpie` compiles once per (spec,
number of domains) and every later fit swaps its data in.

Examples
--------
>>> from bimix_bayes.bayes.spec import merge_spec
>>> model = build_pymc_model(CurveLayout.placeholder(3), merge_spec({"law": {"name": "bimix"}}))
>>> sorted(v.name for v in model.free_RVs if v.name.startswith(("step_", "log_")))
['log_alpha_z', 'step_level_z', 'step_log_slope', 'step_logit_share']
>>> sorted(v.name for v in model.deterministics if v.name.startswith(("log_", "step_")))
['log_alpha', 'log_beta', 'log_floor', 'log_reducible', 'step_level']
>>> data_names(merge_spec(), 3, evaluation_only=False)[-4:]  # per curve; the noise's fall
('n', 'noise_decay', 'x', 'log_share_centre')
>>> data_names(merge_spec({"likelihood": {"run_correlation": True}}), 3)[-4:]  # per run
('curve_run', 'noise_decay', 'x', 'log_share_centre')
>>> "x" in data_names(merge_spec(), 3, sizes=True, evaluation_only=False)  # no drift by size
False
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bimix_bayes.bayes.checkpoints import (
    CHECKPOINT_DIM,
    CHECKPOINT_SD,
    CHECKPOINT_Z,
)
from bimix_bayes.bayes.correlated import (
    RunPatterns,
    RunSums,
    corr_cholesky,
    effect_cholesky,
    lkj_cpc_shapes,
    run_log_likelihood,
)
from bimix_bayes.bayes.correlated_posterior import (
    CORRELATION_DIM,
    is_correlated,
    resolve_run_correlation,
)
from bimix_bayes.bayes.law_params import TRAIN_DIM, spec_law
from bimix_bayes.bayes.likelihood import CurveLayout, curve_log_likelihood, level_information
from bimix_bayes.bayes.noise import (
    NOISE_EXCESS,
    has_early_noise,
    noise_variance_factor,
    weighted_sums,
)
from bimix_bayes.bayes.spec import Spec, resolve_alpha_drift
from bimix_bayes.laws.bimix import log_mixture_factor
from bimix_bayes.laws.cross import cross_basis
from bimix_bayes.laws.drift import ALPHA_DRIFT, drift_term
from bimix_bayes.laws.registry import Law
from bimix_bayes.laws.schedule import ANNEAL, step_term
from bimix_bayes.laws.size import SIZE_PARAMS, at_size

__all__ = [
    "GROUP_MIN_SAVED",
    "GROUP_RUNS_PER_DESIGN",
    "GROUP_RUNS_PER_DESIGN_SLOPES",
    "SIZE_PRIOR_KEYS",
    "build_pymc_model",
    "compiled_nutpie",
    "data_names",
    "grouping",
    "groups_runs",
    "has_checkpoint_shocks",
    "jittered_start",
    "layout_cross_basis",
    "run_patterns",
]

#: The spec's ``[size]`` key of each size slope's prior sd, in ``SIZE_PARAMS`` order.
SIZE_PRIOR_KEYS = ("floor_sd", "reducible_sd", "beta_sd", "mixture_sd")

#: The sampler settings that change the graph (its coordinates), not only how it is sampled.
GRAPH_SAMPLER_KEYS = (
    "step_coordinates", "centre_share", "centre_cross", "level", "exponent", "cross",
)  # fmt: skip

#: The standardised level the sampler draws under ``sampler.level = "conditional"``
#: (:meth:`StepLevel.finish`).
LEVEL_Z = "step_level_z"
#: The standardised cross effects the sampler draws under ``sampler.cross = "conditional"``
#: (:class:`ConditionalCross`).
CROSS_Z = "cross_v_z"

_DATA_VARS = ("step_grid", "grid_index", "y", "mask", "curve_log_r", "curve_domain", "n")


def _population(name: str, prior: Mapping[str, Any]) -> pt.TensorVariable:
    """``theta[d] ~ Normal(mu, sd)``, ``mu ~ Normal(loc, loc_scale)``, ``sd`` by ``sd_prior``.

    ``sd_prior = "gamma"``: ``sd ~ Gamma(2, 2 / sd_scale)`` (mean ``sd_scale``), zero density
    at ``sd = 0``: with a handful of domains the data cannot rule small sds out, and a prior
    that piles up at zero (``"half_normal"``) lets the chains fall into the funnel's neck
    (divergences, stuck chains). The boundary-avoiding Gamma(2) is the usual cure (Chung et
    al. 2013, Gelman et al. BDA3 5.7); it leaves well-identified sds to the data.
    ``sd_prior = "fixed"``: ``sd = sd_scale``, no population sd to sample (the mixture
    exponent's default: the domains still shrink toward a learnt mean, without the funnel
    between a weakly identified exponent and a sampled sd).
    """
    if not prior["pooled"]:
        return pm.Normal(name, prior["loc"], prior["loc_scale"], dims="domain")
    mu = pm.Normal(f"mu_{name}", prior["loc"], prior["loc_scale"])
    sd = _population_sd(name, prior)
    if prior["parametrization"] == "centered":
        return pm.Normal(name, mu, sd, dims="domain")
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims="domain")
    return pm.Deterministic(name, mu + sd * z, dims="domain")


def centres_share(spec: Spec) -> bool:
    """Whether the model of ``spec`` samples each domain's loss level at its typical share
    (``sampler.centre_share``; only in the ``level_slope`` coordinates of a law whose mixture
    term is BiMix's ``-alpha log r_own``, :attr:`~bimix_bayes.laws.registry.Law.own_power_law`)."""
    sampler = spec["sampler"]
    return (
        sampler["centre_share"]
        and sampler["step_coordinates"] == "level_slope"
        and spec_law(spec).own_power_law
    )


@dataclass
class StepLevel:
    """The part of the step law the sampler's ``level_slope`` coordinates add to every log loss
    of a domain: its level ``F(0)``, made by :meth:`finish` once the residuals without it are
    known (:func:`_step_level_slope`).

    ``relative`` holds ``log_floor``, ``log_reducible`` and ``log_beta`` at level 0 (what the
    mean is built from); ``shift`` the ``centre_share`` shift; ``prior`` each of ``log_floor``
    and ``log_reducible``'s prior ``(loc, scale)``, which are Normal in the level given the
    shape (``log_floor = F(0) - softplus(logit w)``, ``log_reducible = F(0) + log w``).
    """

    relative: dict[str, pt.TensorVariable]
    shift: pt.TensorVariable | None
    prior: dict[str, tuple[Any, Any]]
    mode: str
    start: float
    exponent: LaplaceExponent | None = None
    cross: ConditionalCross | None = None

    def prior_precision_mean(self) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        """The level's conditional prior given the shape: ``(precision, precision * mean)``."""
        precision, weighted = 0.0, 0.0
        for name in ("log_floor", "log_reducible"):
            loc, scale = self.prior[name]
            inv_var = 1.0 / scale**2
            precision = precision + inv_var
            weighted = weighted + inv_var * (loc - self.relative[name])
        return precision, weighted

    def finish(
        self, information: tuple[pt.TensorVariable, pt.TensorVariable] | None, d: pt.TensorVariable
    ) -> tuple[pt.TensorVariable, dict[str, pt.TensorVariable]]:
        """The level ``F(0)`` per domain and the step law's parameters with it (deterministics,
        their priors as potentials).

        ``mode = "free"``: ``step_level`` is a flat variable, ``F(0) = step_level + shift``.
        ``mode = "conditional"``: given everything else, the level is Normal (it adds to every
        residual of its domain; ``information``, per curve, ``a = 1' Sigma^-1 e`` and ``b = 1'
        Sigma^-1 1`` of its residuals without the level, :func:`~bimix_bayes.bayes.likelihood.
        level_information`), with precision ``P = P0 + sum b`` and mean ``(P0 m0 + sum a) /
        P`` under its prior ``Normal(m0, 1 / P0)`` (sums over the domain's curves ``d``). The
        sampler draws ``step_level_z`` and ``F(0) = mean + step_level_z / sqrt(P)``: a change
        of variables with Jacobian ``1 / sqrt(P)`` per domain (a potential), so the posterior
        is unchanged, and ``step_level_z`` is a standard Normal independent of the rest
        whenever the run effects are independent across domains and the noise is Normal (the
        default; otherwise nearly so). Why: with few runs the level's conditional sd follows
        the run-offset sd ``tau`` (Ye et al.'s 3Mix 70M: 0.0002 to 0.017 as ``log tau`` goes
        from -8 to -4), a funnel that no number of draws crossed; here the level's scale moves
        with ``tau`` by construction.
        """
        n = len(pm.modelcontext(None).coords["domain"])
        if self.mode == "free":
            step_level = pm.Flat("step_level", dims="domain", initval=np.full(n, self.start))
            level = step_level if self.shift is None else step_level + self.shift
            return level, self._step_params(level)
        a, b = information
        precision_0, weighted_0 = self.prior_precision_mean()
        precision = precision_0 + by_domain(b, d, n)
        mean = (weighted_0 + by_domain(a, d, n)) / precision
        z = pm.Flat(LEVEL_Z, dims="domain", initval=np.zeros(n))
        level = mean + z / pt.sqrt(precision)
        pm.Potential("level_jacobian", -0.5 * pt.log(precision).sum())
        shifted = level if self.shift is None else level - self.shift
        pm.Deterministic("step_level", shifted, dims="domain")
        return level, self._step_params(level)

    def draw(
        self,
        information: tuple[pt.TensorVariable, pt.TensorVariable] | None,
        d: pt.TensorVariable,
        regressor: pt.TensorVariable | None = None,
    ) -> tuple[pt.TensorVariable, dict[str, pt.TensorVariable]]:
        """What the level, and the own-share exponent and the cross effects when they are drawn
        with it (:class:`LaplaceExponent`, ``regressor`` the exponent's term per unit per curve;
        :class:`ConditionalCross`), add to each curve's log loss, and the parameters made
        (:meth:`finish`). In that order: the exponent given the rest (the level integrated
        out), the cross effects given it, the level given both."""
        theta: dict[str, pt.TensorVariable] = {}
        own_term = 0.0
        if self.exponent is not None:
            log_value = self.exponent.draw(information, regressor, d, self.prior_precision_mean())
            value = pt.exp(log_value)
            theta[self.exponent.name] = log_value
            if self.exponent.centre is not None:  # centre_share: step_level at r_c
                self.shift = (value - self.exponent.start) * self.exponent.centre
            own_term = value[d] * regressor
            a, b = information
            information = (a - own_term * b, b)
        if self.cross is not None:  # then the cross effects given it
            cross_term, information = self.cross.draw(information, d, self.prior_precision_mean())
            own_term = own_term + cross_term
        level, step_params = self.finish(information, d)
        return level[d] + own_term, theta | step_params

    def _step_params(self, level: pt.TensorVariable) -> dict[str, pt.TensorVariable]:
        theta = {}
        for name in ("log_floor", "log_reducible", "log_beta"):
            value = self.relative[name] + (level if name != "log_beta" else 0.0)
            theta[name] = pm.Deterministic(name, value, dims="domain")
            loc, scale = self.prior[name]
            pm.Potential(f"prior_{name}", pm.logp(pm.Normal.dist(loc, scale), theta[name]).sum())
        return theta


def own_parameter(law: Law) -> str | None:
    """The population parameter of ``law``'s own-share term (``log_alpha`` of ``-alpha log r``
    and its kin, ``log_own`` of loglinear's ``-own r``), or None."""
    return next((k for k in ("log_alpha", "log_own") if k in law.population), None)


def laplace_exponent(law: Law, spec: Spec, layout: CurveLayout) -> bool:
    """Whether the model draws the own-share term's parameter with the level
    (:class:`LaplaceExponent`): ``sampler.exponent = "laplace"`` with ``sampler.level =
    "conditional"`` (``level_slope`` coordinates), a law with such a term, no model sizes
    (which scale it within a curve)."""
    sampler = spec["sampler"]
    return (
        sampler["exponent"] == "laplace"
        and sampler["level"] == "conditional"
        and sampler["step_coordinates"] == "level_slope"
        and own_parameter(law) is not None
        and not layout.has_sizes
    )


@dataclass
class LaplaceExponent:
    """The own-share term's parameter of each domain (BiMix's exponent ``alpha``, loglinear's
    ``own``), drawn around a Laplace approximation of its conditional given everything but the
    level, which is integrated out analytically for it (``sampler.exponent = "laplace"``).

    The own-share term ``alpha g`` (``g = -log r`` under BiMix, ``-r`` under loglinear: its
    ``regressor``, constant along a curve) is linear in ``alpha``. Given the rest, the level
    ``l`` and ``alpha`` have a Gaussian likelihood: with per-curve ``a = 1' Sigma^-1 e`` and
    ``b = 1' Sigma^-1 1`` (:func:`~bimix_bayes.bayes.likelihood.level_information`) and the
    level's prior (precision ``P0``, mean ``m0``), the quadratic form in ``(l, alpha)`` has
    ``B = P0 + sum b``, ``G = sum g b``, ``H = sum g^2 b``; ``A = P0 m0 + sum a``, ``Ag = sum g
    a``. Integrating ``l`` out leaves ``alpha``'s likelihood ``exp(h alpha - i alpha^2 / 2)``
    with ``i = H - G^2 / B``, ``h = Ag - G A / B``. With the prior ``log alpha ~ Normal(mu,
    sd)``, the mode ``m`` of ``log alpha`` is approached from the precision-weighted mean of
    ``mu`` and ``log(h / i)`` (the data's estimate, kept positive smoothly) by ``steps`` damped
    Gauss-Newton steps, with the curvature ``c = 1 / sd^2 + i exp(2 m)`` there (from this start
    one step did as well as two or three: Ye et al.'s 3Mix 70M, seeds 0-5, 4 of 6 pass at the
    first attempt and 6 of 6 after the retry, SlimPajama 122M 0 divergences; from ``mu`` alone
    two steps left 4 divergences on SlimPajama 122M; each step adds about 2 s of
    compilation); the sampler draws ``log_alpha_z`` (or
    ``log_own_z``) and ``log alpha = m + z / sqrt(c)`` (Jacobian ``1 / sqrt(c)``, the prior a
    potential). Any smooth ``m`` and ``c`` leave the posterior as it was; these make ``z`` close
    to a standard Normal whatever the run-offset sd ``tau`` is. Why: with few runs ``log
    alpha``'s conditional sd follows ``tau`` (Ye et al.'s 3Mix 70M, Pile-CC: 0.03 to 0.77 across
    the quartiles of ``log tau``), the funnel left once the level was drawn given the rest.
    ``centre`` (``sampler.centre_share``): the level is reported at the typical share,
    ``step_level = F(0) - (alpha - start) log r_c``.
    """

    name: str
    prior: tuple[Any, Any]
    centre: pt.TensorVariable | None = None
    start: float = 0.0
    steps: int = 1

    def draw(
        self,
        information: tuple[pt.TensorVariable, pt.TensorVariable],
        regressor: pt.TensorVariable,
        d: pt.TensorVariable,
        level_prior: tuple[pt.TensorVariable, pt.TensorVariable],
    ) -> pt.TensorVariable:
        """The parameter (``log_alpha`` or ``log_own``, a deterministic) per domain, from the
        per-curve ``(a, b)`` of the residuals without the level or the own-share term, each
        curve's ``regressor`` and the level's prior ``(precision, precision * mean)``."""
        n = len(pm.modelcontext(None).coords["domain"])
        a, b = information
        precision_0, weighted_0 = level_prior
        big_b = precision_0 + by_domain(b, d, n)
        big_g = by_domain(regressor * b, d, n)
        info = by_domain(regressor**2 * b, d, n) - big_g**2 / big_b
        linear = by_domain(regressor * a, d, n) - big_g * (weighted_0 + by_domain(a, d, n)) / big_b
        mu, sd = self.prior
        inv_var = 1.0 / sd**2
        # start between the prior's centre and the data's estimate h / i (smoothly kept
        # positive), weighted by their precisions in log alpha
        data = pt.softplus(_SOFT * linear / (info + 1e-8)) / _SOFT + 1e-12
        weight = info * data**2
        mode = (inv_var * mu + weight * pt.log(data)) / (inv_var + weight)
        for _ in range(self.steps):  # damped Gauss-Newton on -log p(log alpha | rest)
            c = pt.exp(mode)
            grad = (mode - mu) * inv_var + info * c**2 - linear * c
            step = -grad / (inv_var + info * c**2)
            mode = mode + 2.0 * pt.tanh(step / 2.0)
        scale = 1.0 / pt.sqrt(inv_var + info * pt.exp(2.0 * mode))
        z = pm.Flat(f"{self.name}_z", dims="domain", initval=np.zeros(n))
        value = pm.Deterministic(self.name, mode + scale * z, dims="domain")
        pm.Potential(f"{self.name}_jacobian", pt.log(scale).sum())
        pm.Potential(f"prior_{self.name}", pm.logp(pm.Normal.dist(mu, sd), value).sum())
        if self.name == "log_own":  # loglinear's posterior reports own itself
            pm.Deterministic("own", pt.exp(value), dims="domain")
        return value


@dataclass
class ConditionalCross:
    """A cross-domain law's effects in their identified coordinates (``cross[i] = B[i] v[i]``,
    ``sampler.centre_cross``), each drawn around its Gaussian conditional given everything but
    the level (integrated out for it) and the other directions (at 0): ``sampler.cross =
    "conditional"``.

    Every cross law is linear in them (``m(r) = own term + sum_j cross_j g(r_j)``), so a curve
    of domain ``i`` gains ``sum_k v[i, k] R_k`` with ``R = B[i]' g(r)`` (``regressors``, curve x
    direction, constant along a curve). With the level integrated out, direction ``k`` alone has
    the likelihood ``exp(h_k v - i_k v^2 / 2)`` (as for :class:`LaplaceExponent`: ``i_k = H -
    G^2 / B``, ``h_k = Ag - G A / B`` with ``R_k`` for ``g``) and the prior ``Normal(0,
    sd_cross^2)`` (1 for the padding), so ``v[i, k] = h_k / p_k + cross_v_z[i, k] / sqrt(p_k)``
    with ``p_k = i_k + 1 / sd^2``. Centres and scales depend on the other parameters only, so
    the Jacobian is ``prod 1 / sqrt(p_k)`` (the prior a potential) and the posterior is as it
    was; exact given the rest with one direction per domain (three training domains), and the
    scales follow ``sd_cross`` with more. All directions at once: drawing them one after the
    other given the earlier ones made SlimPajama 122M's compilation (5 directions) 73 s. Why:
    with few runs the effects' conditional sd follows ``sd_cross``, a funnel the centred and the
    non-centred forms each leave at one end (Ye et al.'s 3Mix 70M: 23-253 divergences).
    """

    regressors: pt.TensorVariable
    basis: pt.TensorVariable
    used: pt.TensorVariable
    sd: pt.TensorVariable

    def draw(
        self,
        information: tuple[pt.TensorVariable, pt.TensorVariable],
        d: pt.TensorVariable,
        level_prior: tuple[pt.TensorVariable, pt.TensorVariable],
    ) -> tuple[pt.TensorVariable, tuple[pt.TensorVariable, pt.TensorVariable]]:
        """The cross term per curve, and ``information`` with it taken out."""
        n = len(pm.modelcontext(None).coords["domain"])
        a, b = information
        precision_0, weighted_0 = level_prior
        big_b = precision_0 + by_domain(b, d, n)
        big_a = weighted_0 + by_domain(a, d, n)
        r = self.regressors
        big_g = by_domain(r * b[:, None], d, n)
        info = by_domain(r**2 * b[:, None], d, n) - big_g**2 / big_b[:, None]
        linear = by_domain(r * a[:, None], d, n) - big_g * (big_a / big_b)[:, None]
        prior_sd = pt.switch(self.used, self.sd, 1.0)
        precision = info + 1.0 / prior_sd**2
        z = pm.Flat(CROSS_Z, shape=self.used.shape)  # starts at 0
        v = pm.Deterministic("cross_v", linear / precision + z / pt.sqrt(precision))
        pm.Potential("cross_jacobian", -0.5 * pt.log(precision).sum())
        pm.Potential("prior_cross_v", pm.logp(pm.Normal.dist(0.0, prior_sd), v).sum())
        pm.Deterministic(
            "cross", (self.basis * v[:, None, :]).sum(axis=-1), dims=("domain", TRAIN_DIM)
        )
        term = (v[d] * r).sum(axis=1)
        return term, (a - term * b, b)


#: The smoothing of the data's estimate of the exponent kept positive (softplus(k a) / k: a for
#: a above a few thousandths; the exponents of public data are 0.02-0.15).
_SOFT = 1000.0


def by_domain(values: pt.TensorVariable, d: pt.TensorVariable, n: int) -> pt.TensorVariable:
    """Per-curve ``values`` (curve, or curve x anything) summed over each domain's curves
    (``d``: the curves' domains)."""
    shape = (n,) if values.ndim == 1 else (n, values.shape[1])
    return pt.inc_subtensor(pt.zeros(shape)[d], values)


def _populations(
    law: Law,
    spec: Spec,
    log_share_centre: pt.TensorVariable | None = None,
    laplace: bool = False,
) -> tuple[dict[str, pt.TensorVariable], StepLevel | None]:
    """Every population parameter of ``law``; the step law's three in the sampler's coordinates.

    ``sampler.step_coordinates = "level_slope"`` samples ``log_floor``, ``log_reducible`` and
    ``log_beta`` through :func:`_step_level_slope` (same posterior, better geometry), with the
    level taken at the share ``exp(log_share_centre)`` when given (:func:`centres_share`): the
    returned parameters then hold the step law at level 0, and the :class:`StepLevel` adds the
    level once the residuals are known. ``"floor_reducible"`` samples them directly (no
    :class:`StepLevel`). ``laplace`` (:func:`laplace_exponent`): the own-share parameter is left
    out too, for the level's :class:`LaplaceExponent` to draw.
    """
    priors = spec["priors"]
    theta = {}
    level = None
    own = own_parameter(law) if laplace else None
    if spec["sampler"]["step_coordinates"] == "level_slope":
        shift = None
        exponent = None
        start = float(np.exp(priors["log_alpha"]["loc"]))
        if own is not None:
            exponent = LaplaceExponent(
                name=own, prior=_prior_loc_scale(own, priors[own]), centre=log_share_centre,
                start=start,
            )  # fmt: skip
        elif log_share_centre is not None:
            # zero at the start (log_alpha at its prior's location): chains start where they
            # did with the level at share 1
            theta["log_alpha"] = _population("log_alpha", priors["log_alpha"])
            shift = (pt.exp(theta["log_alpha"]) - start) * log_share_centre
        level = _step_level_slope(priors, shift, spec["sampler"]["level"])
        level.exponent = exponent
        theta.update(level.relative)
    for name in law.population:
        if name not in theta and name != own:
            theta[name] = _population(name, priors[name])
    return theta, level


def _own_regressor(law: Law, model: pm.Model, log_r: pt.TensorVariable) -> pt.TensorVariable:
    """Per curve, the own-share term per unit of its parameter (``-log r`` under BiMix; the law's
    mixture term at parameter 1 less at 0, the cross effects at 0, for the others)."""
    if not law.cross_domain:
        return log_mixture_factor(log_r, 1.0)
    shares, own_share = model["curve_shares"], model["curve_own_share"]
    key = own_parameter(law).removeprefix("log_")
    zero = {"cross": pt.zeros_like(shares), key: 0.0}
    at = [law.mixture_term(shares, own_share, {**zero, key: v}, math=pt) for v in (1.0, 0.0)]
    return at[0] - at[1]


def _step_level_slope(
    priors: Mapping[str, Any], shift: pt.TensorVariable | None = None, mode: str = "conditional"
) -> StepLevel:
    """The step law's parameters sampled as the curve's level, slope and reducible share at
    ``s_ref``; the level itself is added by :meth:`StepLevel.finish` (``mode``:
    ``sampler.level``).

    With ``x = log(s / s_ref)`` the step factor is ``F(x) = logaddexp(log_floor, log_reducible -
    beta x)``. At ``x = 0`` the data pin down its value and slope well and its curvature poorly:

    - ``step_level = F(0) = logaddexp(log_floor, log_reducible)``;
    - ``step_log_slope = log(-F'(0)) = log(beta w)``, ``w = exp(log_reducible - F(0))`` the
      reducible share of the loss at ``s_ref``;
    - ``step_logit_share = logit(w)``; the curvature is ``F''(0) = beta^2 w (1 - w)``.

    Back: ``log_reducible = level + log w``, ``log_floor = level + log(1 - w)``, ``log_beta =
    log_slope - log w``. The Jacobian of ``(level, log_slope, logit w) -> (log_floor,
    log_reducible, log_beta)`` has rows ``(1, 0, -w)``, ``(1, 0, 1 - w)``, ``(0, 1, w - 1)``,
    determinant ``-((1 - w) + w) = -1``: the map preserves volume, so the priors of
    ``log_floor``, ``log_reducible`` and ``log_beta`` enter unchanged (as potentials on the
    transformed values) and the posterior is exactly the one sampled in the old coordinates.

    Why: a curve that shows no floor (a pure power law over the observed steps) leaves the
    posterior on a curved ridge in the old coordinates (``log_floor`` falling while
    ``log_reducible`` rises and ``beta`` shrinks to keep the level and slope); here the ridge is
    the straight ``step_logit_share`` axis, and the level and slope are nearly independent of it.

    ``shift`` (``sampler.centre_share``): ``F(0) = step_level + shift``, ``shift = (alpha -
    alpha_0) log r_c``, with ``r_c`` the domain's typical share (the geometric mean of its own
    shares in the data) and ``alpha_0`` the exponent at its prior's location (where chains
    start, so they start where they did without the shift). ``step_level`` is then the log
    loss at ``s_ref`` and at share ``r_c`` plus the constant ``alpha_0 log r_c``. BiMix's level
    ``F(0)`` is the loss at share 1, far outside most data (SlimPajama's shares are near 1/7, the
    embedded study's 3-80 %): the data fix the loss at ``r_c``, ``F(0) - alpha log r_c``, so in
    ``(F(0), log alpha)`` the posterior lies along the curve ``F(0) = const + exp(log alpha) log
    r_c``, which bends most where ``alpha`` is weakly identified. The map ``(step_level, log
    alpha) -> (F(0), log alpha)`` adds to ``step_level`` a function of ``log alpha`` only:
    triangular, determinant 1, so again the posterior is unchanged.
    """
    floor, reducible, beta = (priors[k] for k in ("log_floor", "log_reducible", "log_beta"))
    if any(p["pooled"] and p["parametrization"] != "centered" for p in (floor, reducible, beta)):
        raise ValueError(
            'sampler.step_coordinates = "level_slope" samples log_floor, log_reducible and '
            'log_beta itself: give them parametrization = "centered", or set '
            'sampler.step_coordinates = "floor_reducible"'
        )
    # start where the population means start: the priors' locations
    level0 = float(np.logaddexp(floor["loc"], reducible["loc"]))
    log_w0 = reducible["loc"] - level0
    start = {
        "step_log_slope": beta["loc"] + log_w0,
        "step_logit_share": log_w0 - float(np.log1p(-np.exp(log_w0))),
    }
    n = len(pm.modelcontext(None).coords["domain"])
    free = {k: pm.Flat(k, dims="domain", initval=np.full(n, v)) for k, v in start.items()}
    log_w = -pt.softplus(-free["step_logit_share"])
    relative = {
        "log_floor": -pt.softplus(free["step_logit_share"]),
        "log_reducible": log_w,
        "log_beta": free["step_log_slope"] - log_w,
    }
    prior = {name: _prior_loc_scale(name, priors[name]) for name in relative}
    return StepLevel(relative=relative, shift=shift, prior=prior, mode=mode, start=level0)


def _prior_loc_scale(name: str, prior: Mapping[str, Any]) -> tuple[Any, Any]:
    """The prior ``(loc, scale)`` of ``name``'s per-domain values (Normal, for a potential):
    the population mean and sd when pooled (sampled), else ``loc`` and ``loc_scale``."""
    if not prior["pooled"]:
        return prior["loc"], prior["loc_scale"]
    mu = pm.Normal(f"mu_{name}", prior["loc"], prior["loc_scale"])
    return mu, _population_sd(name, prior)


def _population_sd(name: str, prior: Mapping[str, Any]) -> pt.TensorVariable:
    """The population sd ``sd_NAME`` under ``prior["sd_prior"]`` (see :func:`_population`)."""
    if prior["sd_prior"] == "fixed":
        return pt.as_tensor_variable(float(prior["sd_scale"]))
    if prior["sd_prior"] == "gamma":
        return pm.Gamma(f"sd_{name}", alpha=2.0, beta=2.0 / prior["sd_scale"])
    return pm.HalfNormal(f"sd_{name}", prior["sd_scale"])


#: Group runs by design in the graph (:class:`~bimix_bayes.bayes.correlated.RunPatterns`) when
#: it saves at least this many capacitance factorisations per gradient and the runs share few
#: designs (at most one per :data:`GROUP_RUNS_PER_DESIGN` runs). Measured with nutpie on 2
#: idle cores, cold fits with the default spec: SlimPajama 122M (60 runs, 2 designs) 76.8 ->
#: 62.7 s (sampling 56.0 -> 25.4 s, compilation 15.8 -> 31.6 s; a warm refit 57.1 -> 29.0 s);
#: all its sizes (61 mixtures, 13 designs) 127.3 -> 140.5 s (sampling 80.4 -> 73.6 s,
#: compilation 34.0 -> 54.4 s): with many designs grouping does not repay its compilation, and
#: small studies (the embedded one: 20 runs, 1 design) compile the per-run form faster.
GROUP_MIN_SAVED = 30
GROUP_RUNS_PER_DESIGN = 10
#: With run slopes (``likelihood.run_slope``) the capacitance is ``2D x 2D``, and the per-run
#: form is slow: the embedded study (20 runs, 1 design; nutpie, 2 chains x 300 draws, 2 cores)
#: samples in 36.2 s per run and 10.5 s grouped (cold fits 92.7 and 75.2 s). So slope models
#: group whenever at most one design per this many runs remains (no minimum saving: one
#: measurement, on a one-design study; many designs with slopes, e.g. all SlimPajama sizes,
#: were not timed).
GROUP_RUNS_PER_DESIGN_SLOPES = 2


def run_patterns(layout: CurveLayout, spec: Spec) -> RunPatterns:
    """The run designs of ``layout`` the grouped model factorises once each: with a noise that
    falls with the step (:mod:`~bimix_bayes.bayes.noise`) runs share a design only when their
    steps match too (the weights depend on them)."""
    extra = layout.run_step_sets() if has_early_noise(spec) else None
    return RunPatterns.of(*layout.run_design(), extra=extra)


def groups_runs(layout: CurveLayout, *, slopes: bool = False) -> bool:
    """Whether the model of ``layout`` factorises the capacitance once per run design;
    ``slopes``: the model has run slopes (a ``2D x 2D`` capacitance)."""
    n_runs = len(layout.runs)
    n_designs = len(RunPatterns.of(*layout.run_design()).n)
    if slopes:
        return n_designs * GROUP_RUNS_PER_DESIGN_SLOPES <= n_runs
    return n_runs - n_designs >= GROUP_MIN_SAVED and n_designs * GROUP_RUNS_PER_DESIGN <= n_runs


def grouping(layout: CurveLayout, spec: Spec) -> bool:
    """Whether the model of ``layout`` under ``spec`` is built (and compiled) in the grouped
    form: correlated run effects and :func:`groups_runs`."""
    spec = resolve_run_correlation(spec, evaluation_only=layout.has_evaluation_only)
    return is_correlated(spec, len(layout.domains)) and groups_runs(
        layout, slopes=spec["likelihood"]["run_slope"]
    )


def build_pymc_model(layout: CurveLayout, spec: Spec, *, grouped: bool | None = None) -> pm.Model:
    """The PyMC model of ``layout`` under ``spec`` (data in ``pm.Data`` containers); with
    correlated run effects, ``grouped`` factorises their capacitance once per run design
    (default: :func:`grouping`). ``likelihood.run_correlation = "auto"`` and ``law.alpha_drift =
    "auto"`` are decided for the layout
    (:func:`~bimix_bayes.bayes.correlated_posterior.resolve_run_correlation`,
    :func:`~bimix_bayes.bayes.spec.resolve_alpha_drift`)."""
    spec = resolve_run_correlation(spec, evaluation_only=layout.has_evaluation_only)
    spec = resolve_alpha_drift(spec, has_sizes=layout.has_sizes)
    grouped = grouping(layout, spec) if grouped is None else grouped
    lik = spec["likelihood"]
    domains = list(layout.domains)
    coords = {
        "domain": domains,
        CORRELATION_DIM: domains,
        TRAIN_DIM: list(layout.training_domains),
        # the partial correlations' order (row-major strict lower triangle, lkj_cpc_shapes)
        "domain_pair": [
            f"{domains[i]}~{domains[m]}" for i in range(len(domains)) for m in range(i)
        ],
        CHECKPOINT_DIM: list(range(layout.checkpoint_slots)),
    }
    with pm.Model(coords=coords) as model:
        step_grid = pm.Data("step_grid", layout.step_grid)
        grid_index = pm.Data("grid_index", layout.grid_index)
        y = pm.Data("y", layout.y)
        mask = pm.Data("mask", layout.mask)
        log_r = pm.Data("curve_log_r", layout.curve_log_r)
        d = pm.Data("curve_domain", layout.curve_domain.astype("int64"))
        n = pm.Data("n", layout.n)
        law = spec_law(spec)
        centre = None
        if centres_share(spec):  # the level is sampled at each domain's typical share
            centre = pm.Data("log_share_centre", layout.log_share_centre, dims="domain")
        laplace = laplace_exponent(law, spec, layout)
        theta, step_level = _populations(law, spec, centre, laplace)
        size_scale = None
        if layout.has_sizes:  # the size slopes (bimix_bayes.laws.size), Normal(0, sd) each
            prior = spec["size"]
            for name, key in zip(SIZE_PARAMS, SIZE_PRIOR_KEYS, strict=True):
                theta[name] = pm.Normal(name, 0.0, prior[key], dims="domain")
            theta["grid_z"] = pm.Data("grid_z", layout.grid_z)
            cell_z = pm.Data("cell_z", layout.z)
            size_scale = pt.exp(theta["size_mixture"][d][:, None] * cell_z)
        if layout.has_schedule:  # the annealing effect (bimix_bayes.laws.schedule)
            theta[ANNEAL] = pm.HalfNormal(ANNEAL, spec["schedule"]["anneal_scale"], dims="domain")
            theta["grid_u"] = pm.Data("grid_u", layout.grid_u)
        sigma = pm.HalfNormal("sigma", lik["sigma_scale"], dims="domain")
        tau = (
            _run_offset_sd(lik)
            if lik["run_offset"] and not is_correlated(spec, len(layout.domains))
            else pt.zeros(len(layout.domains))
        )
        correlated = is_correlated(spec, len(layout.domains))
        if correlated:  # the effects' sds and correlations come from LKJ-Cholesky priors
            tau, chol_u = _correlated_effects("tau", "run_corr", lik["tau_scale"], lik, layout)
        slope = None
        drifts = spec["law"]["alpha_drift"]
        x = pm.Data("x", layout.x) if lik["run_slope"] or drifts else None
        if law.cross_domain:
            conditional = (
                step_level is not None
                and step_level.mode == "conditional"
                and spec["sampler"]["cross"] == "conditional"
                and spec["sampler"]["centre_cross"]
                and not layout.has_sizes
            )
            mu, cross = _cross_mean(
                law, theta, layout, spec, d, step_grid, grid_index, size_scale,
                conditional=conditional,
            )  # fmt: skip
            if cross is not None:
                step_level.cross = cross
        else:
            mu = _bimix_mean(theta, log_r, d, step_grid, grid_index, size_scale)
        if drifts:  # the own-share exponent moves with the log step (laws.drift)
            drift = pm.Normal(ALPHA_DRIFT, 0.0, spec["law"]["alpha_drift_sd"], dims="domain")
            log_own = pt.log(model["curve_own_share"]) if law.cross_domain else log_r
            mu = mu + drift_term(log_own[:, None], x, drift[d][:, None])
        if has_checkpoint_shocks(spec):
            mu = mu + _checkpoint_shocks(lik["checkpoint_sd_scale"], layout)
        e = (y - mu) * mask  # without the step level under level_slope (added below)
        v = None
        log_v_cell = None
        if has_early_noise(spec):  # the noise falls with the step (bimix_bayes.bayes.noise)
            eta = _noise_excess(lik)
            # v per (domain, distinct step), gathered to the cells like the step factor: D x
            # grid logs instead of one per cell. SlimPajama 122M, log density + gradient in
            # numba: 0.111 ms with a log per cell, 0.091 ms so, 0.047 ms with constant noise
            # (sums of log v by a (curve x grid) count matrix instead: 0.099 ms)
            decay = pm.Data("noise_decay", layout.grid_noise_decay(lik["early_noise_power"]))
            table = noise_variance_factor(decay[None, :], eta[:, None])
            v = table.ravel()[grid_index]
            log_v_cell = pt.log(table).ravel()[grid_index]
        regressor = None  # the own-share term's per unit of its parameter (LaplaceExponent)
        if step_level is not None and step_level.exponent is not None:
            regressor = _own_regressor(law, model, log_r)
        kappa = None
        if lik["run_slope"] and not correlated:
            kappa = pm.HalfNormal("kappa", lik["slope_scale"], dims="domain")
        if correlated:
            if step_level is not None:
                information = None
                if step_level.mode == "conditional":
                    information = _correlated_level_information(e, mask, v, sigma, tau, d)
                shift, step_params = step_level.draw(information, d, regressor)
                theta.update(step_params)
                e = e - shift[:, None] * mask
            loglik = _correlated_loglik(
                e, mask, sigma, chol_u, layout, spec, d, x, grouped, (v, log_v_cell)
            )
            pm.Potential("loglik", loglik.sum())
            return model
        # per-curve sums (weighted, whitened residuals, when the noise falls with the step)
        sums = weighted_sums(
            e, mask, 0.0 if x is None else x, v, log_v=log_v_cell, math=pt,
            with_x=lik["run_slope"],
        )  # fmt: skip
        if lik["run_slope"]:
            slope = (sums.sxe, sums.sx, sums.sxx, kappa[d])
        if step_level is not None:  # the level shifts every residual of its domain's curves
            information = None
            if step_level.mode == "conditional":
                information = level_information(
                    sums.s1, sums.n, sigma[d], tau[d], slope=slope, math=pt
                )
            shift, step_params = step_level.draw(information, d, regressor)
            theta.update(step_params)
            sums = sums.shifted(shift)
            if lik["run_slope"]:
                slope = (sums.sxe, sums.sx, sums.sxx, kappa[d])
        loglik = curve_log_likelihood(
            sums.s1,
            sums.s2,
            sums.n,
            sigma[d],
            tau[d],
            family=lik["family"],
            nu=lik["nu"],
            math=pt,
            slope=slope,
            count=n,
            log_v=sums.log_v,
        )
        pm.Potential("loglik", loglik.sum())
    return model


def _correlated_level_information(
    e: pt.TensorVariable,
    mask: pt.TensorVariable,
    v: pt.TensorVariable | None,
    sigma: pt.TensorVariable,
    tau: pt.TensorVariable,
    d: pt.TensorVariable,
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Per curve, what its residuals ``e`` (without the level) say about a shift of them all
    when the run effects are correlated across domains: each curve taken alone with its
    domain's offset sd (and no slope; :func:`~bimix_bayes.bayes.likelihood.level_information`).
    Not the exact conditional (that couples the domains of a run), so :meth:`StepLevel.finish`'s
    change of variables standardises the level only nearly; the posterior is the same."""
    sums = weighted_sums(e, mask, 0.0, v, math=pt, with_x=False)
    return level_information(sums.s1, sums.n, sigma[d], tau[d], math=pt)


def _run_offset_sd(lik: Mapping[str, Any], name: str = "tau") -> pt.TensorVariable:
    """The run offsets' sd ``tau[d]`` under ``likelihood.tau_prior``: ``"half_normal"``,
    ``HalfNormal(tau_scale)``; ``"gamma"``, ``Gamma(2)`` with the same mean, zero density at 0."""
    scale = lik["tau_scale"]
    if lik["tau_prior"] == "half_normal":
        return pm.HalfNormal(name, scale, dims="domain")
    mean = scale * float(np.sqrt(2.0 / np.pi))
    return pm.Gamma(name, alpha=2.0, beta=2.0 / mean, dims="domain")


def _noise_excess(lik: Mapping[str, Any]) -> pt.TensorVariable:
    """The early checkpoints' excess noise ``eta[d]`` (:mod:`~bimix_bayes.bayes.noise`) under
    ``likelihood.early_noise_prior``: ``"gamma"``, ``Gamma(2)`` with the mean of
    ``HalfNormal(early_noise_scale)`` (``scale sqrt(2 / pi)``), zero density at 0; or
    ``"half_normal"``, ``HalfNormal(early_noise_scale)`` (fits before 2026-12-05).

    Why Gamma(2): where a domain's first checkpoints are no noisier than the rest, ``eta``'s
    posterior reaches 0, and under the HalfNormal ``log eta`` (what the sampler moves in) has a
    long tail there along the ridge with the late noise ``sigma``: the embedded study's first
    half (the demo's backtest) had tail ESS 72-454 on ``noise_excess`` at 500 draws per chain
    (seeds 0-3; seed 0: 157 after the retry with 2,000), with Gamma(2) 580-598 at the first
    attempt for seeds 0-2 and 1,210 after the retry for seed 3.
    """
    scale = lik["early_noise_scale"]
    if lik["early_noise_prior"] == "half_normal":
        return pm.HalfNormal(NOISE_EXCESS, scale, dims="domain")
    mean = scale * float(np.sqrt(2.0 / np.pi))
    return pm.Gamma(NOISE_EXCESS, alpha=2.0, beta=2.0 / mean, dims="domain")


def has_checkpoint_shocks(spec: Spec) -> bool:
    """Whether ``spec`` gives each (domain, fitted step) a shock every run shares
    (``likelihood.checkpoint_sd_scale > 0``; :mod:`~bimix_bayes.bayes.checkpoints`)."""
    return spec["likelihood"].get("checkpoint_sd_scale", 0.0) > 0


def _checkpoint_shocks(scale: float, layout: CurveLayout) -> pt.TensorVariable:
    """The shock of every (curve, checkpoint) cell: ``sd_checkpoint[d] * z[d, slot]`` gathered
    through the ``checkpoint_index`` container (:mod:`~bimix_bayes.bayes.checkpoints`)."""
    if layout.has_sizes:
        raise ValueError(
            "likelihood.checkpoint_sd_scale > 0 is not available for data with model sizes "
            "(--size-col); set it to 0 in the spec"
        )
    sd = pm.HalfNormal(CHECKPOINT_SD, scale, dims="domain")
    z = pm.Normal(CHECKPOINT_Z, 0.0, 1.0, dims=("domain", CHECKPOINT_DIM))
    index = pm.Data("checkpoint_index", layout.checkpoint_index)
    return (sd[:, None] * z).ravel()[index]


def _bimix_mean(
    theta: Mapping[str, pt.TensorVariable],
    log_r: pt.TensorVariable,
    d: pt.TensorVariable,
    step_grid: pt.TensorVariable,
    grid_index: pt.TensorVariable,
    size_scale: pt.TensorVariable | None = None,
) -> pt.TensorVariable:
    """BiMix's log loss per curve and checkpoint (:func:`~bimix_bayes.laws.bimix.bimix_log_loss`):
    the mixture factor plus the step factor (:func:`_step_factor`).

    With model sizes the mixture factor of each cell is scaled by ``size_scale = exp(
    size_mixture z)``: the law's mixture term is linear in its parameters, so this equals
    :func:`~bimix_bayes.laws.size.at_size`'s scaling of ``alpha``."""
    if "log_alpha" not in theta:  # drawn with the level (LaplaceExponent): added later
        return _step_factor(theta, step_grid, grid_index)
    mixture_factor = log_mixture_factor(log_r, pt.exp(theta["log_alpha"])[d])[:, None]
    if size_scale is not None:
        mixture_factor = mixture_factor * size_scale
    return mixture_factor + _step_factor(theta, step_grid, grid_index)


def _step_factor(
    theta: Mapping[str, pt.TensorVariable],
    step_grid: pt.TensorVariable,
    grid_index: pt.TensorVariable,
) -> pt.TensorVariable:
    """The step law of every (curve, checkpoint), evaluated once per (domain, distinct step),
    or per (domain, distinct (step, size)) with model sizes (:func:`~bimix_bayes.laws.size.
    at_size` moves the floor, the reducible loss and the exponent to each grid point's size);
    with a learning-rate schedule the grid's ``x`` is the log area and ``anneal * u`` is
    subtracted (:mod:`bimix_bayes.laws.schedule`, as ``Law.log_loss`` does)."""
    params = {k: theta[k][:, None] for k in ("log_floor", "log_reducible", "log_beta")}
    if "grid_z" in theta:
        slopes = {k: theta[k][:, None] for k in SIZE_PARAMS}
        params = at_size(params, slopes, theta["grid_z"][None, :], math=pt)
    params["beta"] = pt.exp(params["log_beta"])
    u = None
    if "grid_u" in theta:  # a fit with a learning-rate schedule
        params[ANNEAL], u = theta[ANNEAL][:, None], theta["grid_u"][None, :]
    return step_term(step_grid[None, :], params, u, math=pt).ravel()[grid_index]


def layout_cross_basis(layout: CurveLayout, law: Law) -> np.ndarray:
    """The data's ``cross_basis`` container (``sampler.centre_cross``): each evaluation
    domain's orthonormal basis of its identifiable cross effects under ``law``
    (:func:`~bimix_bayes.laws.cross.cross_basis`)."""
    n_train = len(layout.training_domains)
    return cross_basis(layout.own_index, n_train, centred=law.centred_cross)


def _cross_mean(
    law: Law,
    theta: Mapping[str, pt.TensorVariable],
    layout: CurveLayout,
    spec: Spec,
    d: pt.TensorVariable,
    step_grid: pt.TensorVariable,
    grid_index: pt.TensorVariable,
    size_scale: pt.TensorVariable | None = None,
    *,
    conditional: bool = False,
) -> tuple[pt.TensorVariable, ConditionalCross | None]:
    """A cross-domain law's log loss per curve and checkpoint (:mod:`bimix_bayes.laws.cross`,
    :mod:`bimix_bayes.laws.effective`).

    Cross effects: ``cross = sd_cross * P(z)``, ``z ~ Normal(0, 1)`` per (domain, training
    domain), ``P`` the identifying projection (:func:`~bimix_bayes.laws.cross.project_cross`:
    own column zero, the others centred; under a law whose row is not centred,
    ``Law.centred_cross`` False, only the own column is zeroed), ``sd_cross ~
    HalfNormal(law.cross_sd_scale)``. The directions ``P`` removes per row do not enter the
    likelihood and keep their standard-Normal prior. The step factor is evaluated once per
    (domain, distinct step). With model sizes the mixture term is scaled as in
    :func:`_bimix_mean`. ``conditional`` (centred coordinates): the log loss without the cross
    effects, and the :class:`ConditionalCross` that draws them with the level.
    """
    shares = pm.Data("curve_shares", layout.curve_shares)
    own_share = pm.Data("curve_own_share", layout.curve_own_share)
    sd_cross = pm.HalfNormal("sd_cross", spec["law"]["cross_sd_scale"])
    drawn = None
    if spec["sampler"]["centre_cross"]:  # cross = B v, v ~ Normal(0, sd_cross^2) (cross_basis)
        basis = pm.Data("cross_basis", layout_cross_basis(layout, law))
        used = pt.gt((basis**2).sum(axis=1), 0.5)  # (domain, direction); padding: Normal(0, 1)
    if conditional:
        features = law.cross_features(shares, math=pt)  # (curve, training domain)
        regressors = (basis[d] * features[:, :, None]).sum(axis=1)  # (curve, direction)
        drawn = ConditionalCross(regressors=regressors, basis=basis, used=used, sd=sd_cross)
        cross = pt.zeros_like(basis[:, :, 0])  # (domain, training domain): added later
    elif spec["sampler"]["centre_cross"]:
        v = pm.Normal("cross_v", 0.0, pt.switch(used, sd_cross, 1.0), shape=used.shape)
        cross = pm.Deterministic(
            "cross", (basis * v[:, None, :]).sum(axis=-1), dims=("domain", TRAIN_DIM)
        )
    else:
        mask = pm.Data("cross_mask", layout.cross_mask)
        z = pm.Normal("cross_z", 0.0, 1.0, dims=("domain", TRAIN_DIM))
        if law.centred_cross:
            z = z - (z * mask).sum(axis=-1, keepdims=True) / mask.sum(axis=-1, keepdims=True)
        cross = pm.Deterministic("cross", sd_cross * z * mask, dims=("domain", TRAIN_DIM))
    params = {"cross": cross[d]}
    # the own-share parameter is 0 here when the level's LaplaceExponent adds its term
    params["own"] = params["alpha"] = 0.0
    if "log_own" in theta:
        params["own"] = pm.Deterministic("own", pt.exp(theta["log_own"]), dims="domain")[d]
    if "log_alpha" in theta:
        params["alpha"] = pt.exp(theta["log_alpha"])[d]
    mixture_term = law.mixture_term(shares, own_share, params, math=pt)[:, None]
    if size_scale is not None:
        mixture_term = mixture_term * size_scale
    return mixture_term + _step_factor(theta, step_grid, grid_index), drawn


def _correlated_effects(
    sd_name: str, corr_name: str, scale: float, lik: Mapping[str, Any], layout: CurveLayout
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Per-domain sds and the Cholesky factor of their covariance, ``diag(sd) R diag(sd)``
    (``run_correlation = "common"``: :func:`_common_effects`).

    ``sd ~ HalfNormal(scale)`` and ``R ~ LKJ(lkj_eta)`` are separate parameters, ``R`` through
    its partial correlations (:func:`~bimix_bayes.bayes.correlated.lkj_cpc_shapes`), which
    mixes better than PyMC's packed LKJ-Cholesky covariance (whose sds are row norms).
    """
    n = len(layout.domains)
    if lik["run_correlation"] == "common":
        return _common_effects(sd_name, corr_name, scale)
    sd = (
        _run_offset_sd(lik, sd_name)
        if sd_name == "tau"
        else pm.HalfNormal(sd_name, scale, dims="domain")
    )
    shapes = lkj_cpc_shapes(n, lik["lkj_eta"])
    cpc = pm.Beta(f"{corr_name}_cpc", alpha=shapes, beta=shapes, dims="domain_pair")
    corr_chol = corr_cholesky(2.0 * cpc - 1.0, n, math=pt)
    pm.Deterministic(corr_name, corr_chol @ corr_chol.T, dims=("domain", CORRELATION_DIM))
    return sd, effect_cholesky(sd, corr_chol, math=pt)


def _common_effects(
    sd_name: str, corr_name: str, scale: float
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Per-domain sds and the Cholesky factor of the covariance of a run's effects made of one
    effect every domain of the run shares and one per domain (``run_correlation = "common"``):

        u[j, d] = c[j] + w[j, d],   c ~ N(0, sd_common^2),   w[., d] ~ N(0, sd_own[d]^2),
        Cov(u[j]) = sd_common^2 J + diag(sd_own^2),

    ``sd_common``, ``sd_own[d] ~ HalfNormal(scale)`` (the names ``{sd_name}_common`` and
    ``{sd_name}_own``). The total sds ``sqrt(sd_common^2 + sd_own^2)`` and the implied
    correlations ``sd_common^2 / (sd[d] sd[e])`` are recorded under ``sd_name`` and
    ``corr_name``, as the LKJ form's, so forecasts and the numpy likelihood read both forms
    alike. One parameter more than independent domains, against ``D (D - 1) / 2`` for LKJ: the
    shared part of a run's luck (what the mean over domains carries) is estimable from a few
    runs, where LKJ's correlations stay near their prior.
    """
    own = pm.HalfNormal(f"{sd_name}_own", scale, dims="domain")
    common = pm.HalfNormal(f"{sd_name}_common", scale)
    cov = common**2 + pt.diag(own**2)
    sd = pm.Deterministic(sd_name, pt.sqrt(pt.diag(cov)), dims="domain")
    pm.Deterministic(corr_name, cov / (sd[:, None] * sd[None, :]), dims=("domain", CORRELATION_DIM))
    return sd, pt.linalg.cholesky(cov)


def _correlated_loglik(
    e: pt.TensorVariable,
    mask: pt.TensorVariable,
    sigma: pt.TensorVariable,
    chol_u: pt.TensorVariable,
    layout: CurveLayout,
    spec: Spec,
    d: pt.TensorVariable,
    x: pt.TensorVariable | None,
    grouped: bool = False,
    noise: tuple[pt.TensorVariable | None, pt.TensorVariable | None] = (None, None),
) -> pt.TensorVariable:
    """Each run's log likelihood with its correlated effects integrated out (one per run);
    ``grouped``: the capacitance factorised once per run design; ``noise``: each cell's noise
    variance factor ``v`` and ``log v`` when the noise falls with the step (weighted sums)."""
    lik = spec["likelihood"]
    v, log_v_cell = noise
    run_n = pm.Data("run_n", layout.run_design()[0])
    curve_run = pm.Data("curve_run", layout.curve_run.astype("int64"))
    zeros = pt.zeros_like(run_n)

    def by_run(per_curve: pt.TensorVariable) -> pt.TensorVariable:
        return pt.set_subtensor(zeros[curve_run, d], per_curve)

    chol_v = None
    if lik["run_slope"]:
        _, chol_v = _correlated_effects("kappa", "slope_corr", lik["slope_scale"], lik, layout)
    if v is None:
        sx = sxx = sxe = zeros
        if lik["run_slope"]:
            sx, sxx = by_run((x * mask).sum(axis=1)), by_run((x**2 * mask).sum(axis=1))
            sxe = by_run((e * x).sum(axis=1))
        s1, s2 = by_run(e.sum(axis=1)), by_run((e**2).sum(axis=1))
        sums = RunSums(n=run_n, sx=sx, sxx=sxx, s1=s1, s2=s2, sxe=sxe)
    else:  # weighted sums (whitened residuals); the counts stay the number of checkpoints
        w = weighted_sums(e, mask, 0.0 if x is None else x, v, log_v=log_v_cell, math=pt)
        sums = RunSums(
            n=by_run(w.n),
            sx=by_run(w.sx) if lik["run_slope"] else zeros,
            sxx=by_run(w.sxx) if lik["run_slope"] else zeros,
            s1=by_run(w.s1),
            s2=by_run(w.s2),
            sxe=by_run(w.sxe) if lik["run_slope"] else zeros,
            count=run_n,
            log_v=by_run(w.log_v),
        )
    patterns = None
    if grouped and v is not None:  # the weighted design of each run, the same within a design
        member = pm.Data("run_pattern", run_patterns(layout, spec).member)
        per_design = RunPatterns(member=member, n=None, sx=None, sxx=None)
        patterns = RunPatterns(
            member=member,
            n=per_design.design_means(sums.n),
            sx=per_design.design_means(sums.sx),
            sxx=per_design.design_means(sums.sxx),
        )
    elif grouped:
        design = run_patterns(layout, spec)
        patterns = RunPatterns(
            member=pm.Data("run_pattern", design.member),
            n=pm.Data("pattern_n", design.n),
            sx=pm.Data("pattern_sx", design.sx) if lik["run_slope"] else zeros,
            sxx=pm.Data("pattern_sxx", design.sxx) if lik["run_slope"] else zeros,
        )
    return run_log_likelihood(
        sums, sigma, chol_u, chol_v, family=lik["family"], nu=lik["nu"], math=pt,
        patterns=patterns,
    )  # fmt: skip


def data_names(
    spec: Spec,
    n_domains: int,
    *,
    sizes: bool = False,
    grouped: bool = False,
    schedule: bool = False,
    evaluation_only: bool | None = None,
) -> tuple[str, ...]:
    """The ``pm.Data`` containers of the model of ``spec`` (what a refit swaps in); ``sizes``:
    data with a model-size dimension; ``grouped``: runs grouped by design; ``schedule``: data
    with a learning-rate schedule; ``evaluation_only``: some evaluation domain is not a
    training domain (decides ``likelihood.run_correlation = "auto"``; required then)."""
    if evaluation_only is not None:
        spec = resolve_run_correlation(spec, evaluation_only=evaluation_only)
    spec = resolve_alpha_drift(spec, has_sizes=sizes)
    names = list(_DATA_VARS)
    if sizes:
        names += ["grid_z", "cell_z"]
    if schedule:
        names.append("grid_u")
    if is_correlated(spec, n_domains):  # counts per (run, domain) replace those per curve
        names = [*(k for k in names if k != "n"), "run_n", "curve_run"]
        if grouped and has_early_noise(spec):  # weighted designs come from the runs' sums
            names.append("run_pattern")
        elif grouped:
            names += ["run_pattern", "pattern_n"]
            if spec["likelihood"]["run_slope"]:
                names += ["pattern_sx", "pattern_sxx"]
    if has_early_noise(spec):
        names.append("noise_decay")
    if spec["likelihood"]["run_slope"] or spec["law"]["alpha_drift"]:
        names.append("x")
    if has_checkpoint_shocks(spec):
        names.append("checkpoint_index")
    if centres_share(spec):
        names.append("log_share_centre")
    if spec_law(spec).cross_domain:  # every share of the run replaces its domain's log share
        names = [k for k in names if k != "curve_log_r"]
        names += ["curve_shares", "curve_own_share"]
        names.append("cross_basis" if spec["sampler"]["centre_cross"] else "cross_mask")
    return tuple(names)


@cache
def compiled_nutpie(
    model_json: str,
    n_domains: int,
    n_train: int | None = None,
    sizes: bool = False,
    grouped: bool = False,
    schedule: bool = False,
    checkpoints: int = 2,
) -> Any:
    """Compile once per (model spec, number of domains, of training domains, with or without
    model sizes, runs grouped by design or not, with or without a learning-rate schedule,
    number of checkpoint-shock slots); fits swap their data in (with_data).

    The data live in ``pm.Data`` containers whose sizes are free, so one compiled model serves
    any data set with the same numbers of domains (backtests, simulation studies, refits).
    """
    import nutpie

    spec = json.loads(model_json)  # its "sampler" holds only GRAPH_SAMPLER_KEYS
    if spec["likelihood"].get("run_correlation") == "auto":  # the placeholder cannot decide it
        raise ValueError(
            'compiled_nutpie needs likelihood.run_correlation decided ("auto" resolved for the '
            "data: resolve_run_correlation)"
        )
    model = build_pymc_model(
        CurveLayout.placeholder(
            n_domains, n_train, sizes=sizes, schedule=schedule, steps=checkpoints
        ),
        spec,
        grouped=grouped,
    )
    # chains start at the prior's centre; BiMixModel jitters them by sampler.init_jitter
    return nutpie.compile_pymc_model(model, backend="numba", jitter_rvs=set())


def jittered_start(centre: Any, half_width: float) -> Any:
    """Chain start points ``centre(seed) + U(-half_width, half_width)`` per coordinate, in the
    sampler's unconstrained coordinates, drawn from each chain's seed.

    Why not nutpie's own start (the same centre, half-width 1): on all 61 SlimPajama mixtures at
    six model sizes, 5 of 13 fits left one chain where c4's mixture exponent is near zero and
    c4's run effects carry the mixture's effect (log alpha -7 against -3.7, log density 35 nats
    below the other chains) for the whole run (r-hat 1.53; `bimix fit`'s retry, smaller steps
    from the same start, took 17 minutes and failed again). With half-width 0.1, 12 of 12 seeds
    passed every diagnostic. Small studies do not suffer (seeds 0-15, first attempt, default
    sampler: Ye et al.'s 5Mix 70M, 13-run subsets, 7 passing against 5; the embedded study 10
    against 9).

    Examples
    --------
    >>> start = jittered_start(lambda seed: np.zeros(3), 0.1)
    >>> bool(np.all(np.abs(start(7)) <= 0.1)), bool(np.all(start(7) == start(7)))
    (True, True)
    """

    def start(seed: Any = None) -> np.ndarray:
        point = np.asarray(centre(seed), dtype=float)
        rng = np.random.default_rng(seed)
        return point + rng.uniform(-half_width, half_width, point.shape)

    return start
