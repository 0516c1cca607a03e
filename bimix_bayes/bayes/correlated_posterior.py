"""Correlated run effects of a fitted model: from posterior draws to densities and draws.

The math is in :mod:`~bimix_bayes.bayes.correlated`; this module feeds it the posterior of a fit
made with ``likelihood.run_correlation = true`` or ``"common"`` (variables ``tau``, ``run_corr``
and, with the random slope, ``kappa``, ``slope_corr``; under "common" they are computed from a
shared and a per-domain sd), one chain at a time so that memory stays bounded.

Examples
--------
>>> from bimix_bayes.bayes.persistence import spec_from_idata
>>> from bimix_bayes.bayes.spec import merge_spec
>>> is_correlated(merge_spec({"likelihood": {"run_correlation": True}}), n_domains=5)
True
>>> is_correlated(spec_from_idata(idata), n_domains=5)  # training domains: independent
False
>>> resolve_run_correlation(merge_spec(), evaluation_only=True)["likelihood"]["run_correlation"]
True
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from bimix_bayes.bayes.correlated import (
    RunSums,
    block_diag,
    draw_run_effects,
    effect_cholesky,
    run_conditional,
    run_log_likelihood,
)
from bimix_bayes.bayes.law_params import posterior_law
from bimix_bayes.bayes.likelihood import CurveLayout, curve_residual_sums
from bimix_bayes.bayes.spec import Spec

__all__ = [
    "CORRELATION_DIM",
    "effect_factors",
    "fresh_run_draws",
    "is_correlated",
    "observed_curve_marginals",
    "observed_run_draws",
    "residual_run_log_likelihoods",
    "resolve_run_correlation",
    "run_log_likelihoods",
]

#: Second dimension of the correlation matrices in the posterior.
CORRELATION_DIM = "other_domain"


def resolve_run_correlation(spec: Spec, *, evaluation_only: bool) -> Spec:
    """``spec`` with ``likelihood.run_correlation = "auto"`` decided for the data: correlated
    run effects when some evaluation domain is not a training domain (``evaluation_only``),
    independent ones otherwise; any other value is returned as it is.

    Why: evaluation sets that are not training domains (Pile groups scored on a model trained
    on RedPajama's domains) are several views of one model, so a run that is lucky on one is
    lucky on all, and the law (whose cross effects already carry how every share moves each
    set) leaves that luck shared. Ye et al.'s RedPajama 70M runs, loglinear,
    holdout-mixtures:20: 90 % coverage of the full loss 76.1 % independent, 86.7 %
    correlated (reports/validation.md; README, "Evaluation sets that are not training
    domains"). Among training domains under BiMix the shared part of the residuals is mostly
    the law's missing cross effect, and treating it as luck costs the decision
    (``models/bimix.toml``).
    """
    lik = spec["likelihood"]
    if lik.get("run_correlation") != "auto":
        return spec
    return {**spec, "likelihood": {**lik, "run_correlation": bool(evaluation_only)}}


def is_correlated(spec: Spec, n_domains: int) -> bool:
    """Whether a fit with ``spec`` on ``n_domains`` domains has correlated run effects
    (``"auto"`` must have been decided first: :func:`resolve_run_correlation`)."""
    lik = spec["likelihood"]
    if lik.get("run_correlation") == "auto":
        raise ValueError(
            'likelihood.run_correlation = "auto" is decided per dataset; call '
            "resolve_run_correlation(spec, evaluation_only=...) first"
        )
    return bool(lik["run_offset"] and lik.get("run_correlation", False) and n_domains > 1)


def _cholesky(corr: np.ndarray) -> np.ndarray:
    """Cholesky factors of correlation matrices (a hair of jitter where rounding needs it)."""
    try:
        return np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        return np.linalg.cholesky(corr + 1e-10 * np.eye(corr.shape[-1]))


def effect_factors(posterior: xr.Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """``(L_u, L_v)`` per draw, shaped (chain, draw, domain, domain); ``L_v`` None: no slopes."""

    def factor(sd: str, corr: str) -> np.ndarray:
        s = posterior[sd].transpose("chain", "draw", "domain").to_numpy()
        r = posterior[corr].transpose("chain", "draw", "domain", CORRELATION_DIM).to_numpy()
        return effect_cholesky(s, _cholesky(r))

    l_v = factor("kappa", "slope_corr") if "slope_corr" in posterior else None
    return factor("tau", "run_corr"), l_v


def _chains(
    posterior: xr.Dataset, layout: CurveLayout
) -> Iterator[tuple[int, RunSums, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Per chain: its index, the run sums, sigma and the effect factors."""
    # A curve with a zero share (BiMix undefined there) counts as not observed.
    defined = np.isfinite(layout.curve_log_r) | posterior_law(posterior).finite_at_zero

    def by_run(per_curve: np.ndarray) -> np.ndarray:
        return layout.by_run(np.where(defined, per_curve, 0.0))

    sx, sxx = layout.x_sums()
    n, sx, sxx = by_run(layout.n), by_run(sx), by_run(sxx)
    l_u, l_v = effect_factors(posterior)
    sigma = posterior["sigma"].transpose("chain", "draw", "domain").to_numpy()
    for c in range(posterior.sizes["chain"]):
        curves = curve_residual_sums(posterior.isel(chain=[c]), layout, with_slope=True)
        weighted = {}
        if curves.n is not None:  # the noise falls with the step: weighted sums per draw
            weighted = {
                "n": by_run(curves.n[0]),
                "sx": by_run(curves.sx[0]),
                "sxx": by_run(curves.sxx[0]),
                "count": n,
                "log_v": by_run(curves.log_v[0]),
            }
        sums = RunSums(
            **{
                "n": n,
                "sx": sx,
                "sxx": sxx,
                "s1": by_run(curves.s1[0]),
                "s2": by_run(curves.s2[0]),
                "sxe": by_run(curves.sxe[0]),
                **weighted,
            }
        )
        yield c, sums, sigma[c], l_u[c], None if l_v is None else l_v[c]


def run_log_likelihoods(posterior: xr.Dataset, layout: CurveLayout, spec: Spec) -> np.ndarray:
    """Log likelihood of each run's checkpoints, per draw: shaped (chain, draw, run)."""
    lik = spec["likelihood"]
    out = np.empty((posterior.sizes["chain"], posterior.sizes["draw"], len(layout.runs)))
    for c, sums, sigma, l_u, l_v in _chains(posterior, layout):
        out[c] = run_log_likelihood(sums, sigma, l_u, l_v, family=lik["family"], nu=lik["nu"])
    return out


def residual_run_log_likelihoods(
    posterior: xr.Dataset, layout: CurveLayout, spec: Spec, corr: np.ndarray
) -> np.ndarray:
    """Log likelihood of each run's checkpoints, per draw, with its offsets correlated across
    domains as ``corr`` says (the fitted runs' residual correlation ``C`` of a fit whose run
    effects are independent: :mod:`~bimix_bayes.bayes.residual_correlation`): the density of a
    run as forecasts draw a new one, ``u ~ Normal(0, diag(tau) C diag(tau))``, integrated out
    per run (Woodbury, as for correlated effects). Slopes, where the fit has them, stay
    independent across domains and of the offsets, as in the fit. Shaped (chain, draw, run).
    """
    dims = ("chain", "draw", "domain", CORRELATION_DIM)
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], *np.shape(corr))
    extra = {"run_corr": (dims, np.broadcast_to(corr, shape))}
    if "kappa" in posterior:
        extra["slope_corr"] = (dims, np.broadcast_to(np.eye(len(corr)), shape))
    return run_log_likelihoods(posterior.assign(extra), layout, spec)


def _conditionals(
    posterior: xr.Dataset, layout: CurveLayout, spec: Spec
) -> Iterator[tuple[int, dict[str, Any]]]:
    lik = spec["likelihood"]
    for c, sums, sigma, l_u, l_v in _chains(posterior, layout):
        yield c, run_conditional(sums, sigma, l_u, l_v, family=lik["family"], nu=lik["nu"])


def observed_run_draws(
    posterior: xr.Dataset, layout: CurveLayout, spec: Spec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint draws ``(u, sqrt(W), v)`` of each observed run's effects given its checkpoints.

    Shaped (chain, draw, run, domain); ``v`` is zero without slopes. A domain a run did not
    observe still moves with the ones it did, through the correlation.
    """
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], *layout.by_run(layout.n).shape)
    u, scale, v = np.empty(shape), np.empty(shape), np.empty(shape)
    for c, cond in _conditionals(posterior, layout, spec):
        u[c], scale[c], v[c] = draw_run_effects(cond, rng, len(layout.domains))
    return u, scale, v


def fresh_run_draws(
    posterior: xr.Dataset, n_runs: int, spec: Spec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws ``(u, sqrt(W), v)`` for ``n_runs`` new runs, shaped (chain, draw, run, domain)."""
    lik = spec["likelihood"]
    l_u, l_v = effect_factors(posterior)
    chol = l_u if l_v is None else block_diag(l_u, l_v)
    cov = chol @ np.swapaxes(chol, -1, -2)
    k = cov.shape[-1]
    cond = {
        "mean": np.zeros((*cov.shape[:2], n_runs, k)),
        "cov": cov[:, :, None],
        "w": (lik["nu"] / 2, lik["nu"] / 2) if lik["family"] == "student_t" else None,
    }
    return draw_run_effects(cond, rng, l_u.shape[-1])


def observed_curve_marginals(
    posterior: xr.Dataset, layout: CurveLayout, spec: Spec
) -> dict[str, Any]:
    """Per observed curve, the marginal conditional of its offset (and slope), per draw.

    The same layout as :func:`~bimix_bayes.bayes.likelihood.offset_conditional` (``mean``,
    ``var`` and, with slopes, ``slope_mean``, ``slope_var``, ``cov``; ``w`` the run's
    Inverse-Gamma variance factor under Student-t), arrays shaped (chain, draw, curve): what
    scoring one held-out point at a time needs.
    """
    r, d = layout.curve_run, layout.curve_domain
    n_dom = len(layout.domains)
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], len(r))
    names = ["mean", "var", "slope_mean", "slope_var", "cov", "w_shape", "w_rate"]
    out = {k: np.zeros(shape) for k in names}
    slopes = "slope_corr" in posterior
    for c, cond in _conditionals(posterior, layout, spec):
        mean, cov = cond["mean"][:, r], cond["cov"][:, r]
        out["mean"][c], out["var"][c] = (
            mean[:, np.arange(len(r)), d],
            cov[:, np.arange(len(r)), d, d],
        )
        if slopes:
            idx = np.arange(len(r))
            out["slope_mean"][c] = mean[:, idx, n_dom + d]
            out["slope_var"][c] = cov[:, idx, n_dom + d, n_dom + d]
            out["cov"][c] = cov[:, idx, d, n_dom + d]
        if cond["w"] is not None:
            out["w_shape"][c] = np.broadcast_to(cond["w"][0], cond["w"][1].shape)[:, r]
            out["w_rate"][c] = cond["w"][1][:, r]
    w = (out.pop("w_shape"), out.pop("w_rate"))
    result: dict[str, Any] = {
        "mean": out["mean"],
        "var": out["var"],
        "w": w if spec["likelihood"]["family"] == "student_t" else None,
    }
    if slopes:
        result |= {k: out[k] for k in ("slope_mean", "slope_var", "cov")}
    return result
