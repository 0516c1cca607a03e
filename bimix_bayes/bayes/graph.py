"""The PyMC graph of the hierarchical BiMix model, and its one compiled nutpie copy.

:func:`build_pymc_model` writes the model of a curve layout under a spec: population priors
per law parameter, per-domain noise, run effects (per curve, or correlated across domains per
run, :mod:`~bimix_bayes.bayes.correlated`) integrated out in the likelihood. The data live in
``pm.Data`` containers (:func:`data_names`), so :func:`compiled_nutpie` compiles once per (spec,
number of domains) and every later fit swaps its data in.

Examples
--------
>>> from bimix_bayes.bayes.spec import merge_spec
>>> model = build_pymc_model(CurveLayout.placeholder(3), merge_spec({"law": {"name": "bimix"}}))
>>> sorted(v.name for v in model.free_RVs)[:3]
['log_alpha', 'log_beta', 'log_floor']
>>> data_names(merge_spec(), 3)[-2:]
('run_n', 'curve_run')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

import pymc as pm
import pytensor.tensor as pt

from bimix_bayes.bayes.correlated import (
    RunSums,
    corr_cholesky,
    effect_cholesky,
    lkj_cpc_shapes,
    run_log_likelihood,
)
from bimix_bayes.bayes.correlated_posterior import CORRELATION_DIM, is_correlated
from bimix_bayes.bayes.law_params import TRAIN_DIM, spec_law
from bimix_bayes.bayes.likelihood import CurveLayout, curve_log_likelihood
from bimix_bayes.bayes.spec import Spec
from bimix_bayes.laws.bimix import log_mixture_factor, log_step_factor
from bimix_bayes.laws.registry import Law

__all__ = ["build_pymc_model", "compiled_nutpie", "data_names"]

_DATA_VARS = ("step_grid", "grid_index", "y", "mask", "curve_log_r", "curve_domain", "n")


def _population(name: str, prior: Mapping[str, Any]) -> pt.TensorVariable:
    """``theta[d] ~ Normal(mu, sd)``, ``mu ~ Normal(loc, loc_scale)``, ``sd`` by ``sd_prior``.

    ``sd_prior = "gamma"``: ``sd ~ Gamma(2, 2 / sd_scale)`` (mean ``sd_scale``), zero density
    at ``sd = 0``: with a handful of domains the data cannot rule small sds out, and a prior
    that piles up at zero (``"half_normal"``) lets the chains fall into the funnel's neck
    (divergences, stuck chains). The boundary-avoiding Gamma(2) is the usual cure (Chung et
    al. 2013, Gelman et al. BDA3 5.7); it leaves well-identified sds to the data.
    """
    mu = pm.Normal(f"mu_{name}", prior["loc"], prior["loc_scale"])
    if prior["sd_prior"] == "gamma":
        sd = pm.Gamma(f"sd_{name}", alpha=2.0, beta=2.0 / prior["sd_scale"])
    else:
        sd = pm.HalfNormal(f"sd_{name}", prior["sd_scale"])
    if prior["parametrization"] == "centered":
        return pm.Normal(name, mu, sd, dims="domain")
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims="domain")
    return pm.Deterministic(name, mu + sd * z, dims="domain")


def build_pymc_model(layout: CurveLayout, spec: Spec) -> pm.Model:
    """The PyMC model of ``layout`` under ``spec`` (data in ``pm.Data`` containers)."""
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
        theta = {name: _population(name, spec["priors"][name]) for name in law.population}
        sigma = pm.HalfNormal("sigma", lik["sigma_scale"], dims="domain")
        tau = (
            pm.HalfNormal("tau", lik["tau_scale"], dims="domain")
            if lik["run_offset"] and not is_correlated(spec, len(layout.domains))
            else pt.zeros(len(layout.domains))
        )
        correlated = is_correlated(spec, len(layout.domains))
        if correlated:  # the effects' sds and correlations come from LKJ-Cholesky priors
            tau, chol_u = _correlated_effects("tau", "run_corr", lik["tau_scale"], lik, layout)
        slope = None
        x = pm.Data("x", layout.x) if lik["run_slope"] else None
        if law.cross_domain:
            mu = _cross_mean(law, theta, layout, spec, d, step_grid, grid_index)
        else:
            mu = _bimix_mean(theta, log_r, d, step_grid, grid_index)
        e = (y - mu) * mask
        if correlated:
            loglik = _correlated_loglik(e, mask, sigma, chol_u, layout, lik, d, x)
            pm.Potential("loglik", loglik.sum())
            return model
        if lik["run_slope"]:
            kappa = pm.HalfNormal("kappa", lik["slope_scale"], dims="domain")
            slope = (
                (e * x).sum(axis=1),
                (x * mask).sum(axis=1),
                (x**2 * mask).sum(axis=1),
                kappa[d],
            )
        loglik = curve_log_likelihood(
            e.sum(axis=1),
            (e**2).sum(axis=1),
            n,
            sigma[d],
            tau[d],
            family=lik["family"],
            nu=lik["nu"],
            math=pt,
            slope=slope,
        )
        pm.Potential("loglik", loglik.sum())
    return model


def _bimix_mean(
    theta: Mapping[str, pt.TensorVariable],
    log_r: pt.TensorVariable,
    d: pt.TensorVariable,
    step_grid: pt.TensorVariable,
    grid_index: pt.TensorVariable,
) -> pt.TensorVariable:
    """BiMix's log loss per curve and checkpoint (:func:`~bimix_bayes.laws.bimix.bimix_log_loss`):
    the mixture factor plus the step factor (:func:`_step_factor`)."""
    mixture_factor = log_mixture_factor(log_r, pt.exp(theta["log_alpha"])[d])
    return mixture_factor[:, None] + _step_factor(theta, step_grid, grid_index)


def _step_factor(
    theta: Mapping[str, pt.TensorVariable],
    step_grid: pt.TensorVariable,
    grid_index: pt.TensorVariable,
) -> pt.TensorVariable:
    """The step law of every (curve, checkpoint), evaluated once per (domain, distinct step)."""
    step_factor = log_step_factor(
        step_grid[None, :],
        theta["log_floor"][:, None],
        theta["log_reducible"][:, None],
        pt.exp(theta["log_beta"])[:, None],
        math=pt,
    )
    return step_factor.ravel()[grid_index]


def _cross_mean(
    law: Law,
    theta: Mapping[str, pt.TensorVariable],
    layout: CurveLayout,
    spec: Spec,
    d: pt.TensorVariable,
    step_grid: pt.TensorVariable,
    grid_index: pt.TensorVariable,
) -> pt.TensorVariable:
    """A cross-domain law's log loss per curve and checkpoint (:mod:`bimix_bayes.laws.cross`,
    :mod:`bimix_bayes.laws.effective`).

    Cross effects: ``cross = sd_cross * P(z)``, ``z ~ Normal(0, 1)`` per (domain, training
    domain), ``P`` the identifying projection (:func:`~bimix_bayes.laws.cross.project_cross`:
    own column zero, the others centred; under a law whose row is not centred,
    ``Law.centred_cross`` False, only the own column is zeroed), ``sd_cross ~
    HalfNormal(law.cross_sd_scale)``. The directions ``P`` removes per row do not enter the
    likelihood and keep their standard-Normal prior. The step factor is evaluated once per
    (domain, distinct step).
    """
    shares = pm.Data("curve_shares", layout.curve_shares)
    own_share = pm.Data("curve_own_share", layout.curve_own_share)
    mask = pm.Data("cross_mask", layout.cross_mask)
    sd_cross = pm.HalfNormal("sd_cross", spec["law"]["cross_sd_scale"])
    z = pm.Normal("cross_z", 0.0, 1.0, dims=("domain", TRAIN_DIM))
    if law.centred_cross:
        z = z - (z * mask).sum(axis=-1, keepdims=True) / mask.sum(axis=-1, keepdims=True)
    cross = pm.Deterministic("cross", sd_cross * z * mask, dims=("domain", TRAIN_DIM))
    params = {"cross": cross[d]}
    if "log_own" in theta:
        params["own"] = pm.Deterministic("own", pt.exp(theta["log_own"]), dims="domain")[d]
    if "log_alpha" in theta:
        params["alpha"] = pt.exp(theta["log_alpha"])[d]
    mixture_term = law.mixture_term(shares, own_share, params, math=pt)
    return mixture_term[:, None] + _step_factor(theta, step_grid, grid_index)


def _correlated_effects(
    sd_name: str, corr_name: str, scale: float, lik: Mapping[str, Any], layout: CurveLayout
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Per-domain sds and the Cholesky factor of their covariance, ``diag(sd) R diag(sd)``.

    ``sd ~ HalfNormal(scale)`` and ``R ~ LKJ(lkj_eta)`` are separate parameters, ``R`` through
    its partial correlations (:func:`~bimix_bayes.bayes.correlated.lkj_cpc_shapes`), which
    mixes better than PyMC's packed LKJ-Cholesky covariance (whose sds are row norms).
    """
    n = len(layout.domains)
    sd = pm.HalfNormal(sd_name, scale, dims="domain")
    shapes = lkj_cpc_shapes(n, lik["lkj_eta"])
    cpc = pm.Beta(f"{corr_name}_cpc", alpha=shapes, beta=shapes, dims="domain_pair")
    corr_chol = corr_cholesky(2.0 * cpc - 1.0, n, math=pt)
    pm.Deterministic(corr_name, corr_chol @ corr_chol.T, dims=("domain", CORRELATION_DIM))
    return sd, effect_cholesky(sd, corr_chol, math=pt)


def _correlated_loglik(
    e: pt.TensorVariable,
    mask: pt.TensorVariable,
    sigma: pt.TensorVariable,
    chol_u: pt.TensorVariable,
    layout: CurveLayout,
    lik: Mapping[str, Any],
    d: pt.TensorVariable,
    x: pt.TensorVariable | None,
) -> pt.TensorVariable:
    """Each run's log likelihood with its correlated effects integrated out (one per run)."""
    run_n = pm.Data("run_n", layout.run_design()[0])
    curve_run = pm.Data("curve_run", layout.curve_run.astype("int64"))
    zeros = pt.zeros_like(run_n)

    def by_run(per_curve: pt.TensorVariable) -> pt.TensorVariable:
        return pt.set_subtensor(zeros[curve_run, d], per_curve)

    chol_v = None
    sx = sxx = sxe = zeros
    if lik["run_slope"]:
        _, chol_v = _correlated_effects("kappa", "slope_corr", lik["slope_scale"], lik, layout)
        sx, sxx = by_run((x * mask).sum(axis=1)), by_run((x**2 * mask).sum(axis=1))
        sxe = by_run((e * x).sum(axis=1))
    sums = RunSums(
        n=run_n, sx=sx, sxx=sxx, s1=by_run(e.sum(axis=1)), s2=by_run((e**2).sum(axis=1)), sxe=sxe
    )
    return run_log_likelihood(
        sums, sigma, chol_u, chol_v, family=lik["family"], nu=lik["nu"], math=pt
    )


def data_names(spec: Spec, n_domains: int) -> tuple[str, ...]:
    """The ``pm.Data`` containers of the model of ``spec`` (what a refit swaps in)."""
    names = list(_DATA_VARS)
    if is_correlated(spec, n_domains):  # counts per (run, domain) replace those per curve
        names = [*(k for k in names if k != "n"), "run_n", "curve_run"]
    if spec["likelihood"]["run_slope"]:
        names.append("x")
    if spec_law(spec).cross_domain:  # every share of the run replaces its domain's log share
        names = [k for k in names if k != "curve_log_r"]
        names += ["curve_shares", "curve_own_share", "cross_mask"]
    return tuple(names)


@cache
def compiled_nutpie(model_json: str, n_domains: int, n_train: int | None = None) -> Any:
    """Compile once per (model spec, number of domains, of training domains); fits swap their
    data in (with_data).

    The data live in ``pm.Data`` containers whose sizes are free, so one compiled model serves
    any data set with the same numbers of domains (backtests, simulation studies, refits).
    """
    import nutpie

    spec = json.loads(model_json)
    return nutpie.compile_pymc_model(
        build_pymc_model(CurveLayout.placeholder(n_domains, n_train), spec), backend="numba"
    )
