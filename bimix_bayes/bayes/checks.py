"""Prior and posterior predictive checks: replicated loss logs and a figure comparing them.

A replicate of the observed data draws, for every parameter draw, a fresh offset for each
(run, domain) curve and fresh checkpoint noise, exactly as the model's likelihood says. The
figure shows, per domain, each observation against the median of its replicates with the 90 %
interval, and how many observations that interval covers (about 90 % for a model that fits).

Examples
--------
>>> check = posterior_predictive_check(idata)  # doctest: +SKIP
>>> check.coverage  # doctest: +SKIP
>>> check.figure.savefig("ppc.png")  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from bimix_bayes.bayes.likelihood import CurveLayout, draw_offsets
from bimix_bayes.bayes.model import BiMixModel, resolve_s_ref
from bimix_bayes.bayes.persistence import data_from_idata, spec_from_idata
from bimix_bayes.data.table import MixtureData
from bimix_bayes.laws.bimix import bimix_log_loss
from bimix_bayes.report.figures import plain

__all__ = [
    "PredictiveCheck",
    "posterior_predictive_check",
    "prior_predictive_check",
    "replicate_losses",
]


@dataclass
class PredictiveCheck:
    """Replicated losses (dims ``chain, draw, obs``), per-domain coverage and the figure."""

    draws: xr.DataArray
    coverage: pd.DataFrame
    figure: Figure


def replicate_losses(
    params: xr.Dataset, layout: CurveLayout, family: str, nu: float, seed: int = 0
) -> np.ndarray:
    """Replicated losses, shape (chain, draw, obs), from parameter draws (dims chain, draw, domain).

    Each (run, domain) curve gets a fresh offset per draw; each checkpoint fresh noise.
    """
    rng = np.random.default_rng([seed, 3])
    d = layout.curve_domain

    def take(name: str) -> np.ndarray:
        return params[name].transpose("chain", "draw", "domain").to_numpy()[..., d]

    sigma = take("sigma")
    tau = take("tau") if "tau" in params else np.zeros_like(sigma)
    w = (nu / 2, nu / 2) if family == "student_t" else None
    u, scale = draw_offsets({"mean": 0.0, "var": tau**2, "w": w}, rng, sigma.shape)
    mu = bimix_log_loss(
        layout.curve_log_r[:, None],
        layout.x,
        take("log_floor")[..., None],
        take("log_reducible")[..., None],
        np.exp(take("log_alpha"))[..., None],
        np.exp(take("log_beta"))[..., None],
    )
    y = mu + u[..., None] + (scale * sigma)[..., None] * rng.standard_normal(mu.shape)
    return np.exp(y[..., layout.obs_curve, layout.obs_pos])


def _check(draws: np.ndarray, data: MixtureData, title: str) -> PredictiveCheck:
    obs = data.observations
    loss = obs["loss"].to_numpy()
    flat = draws.reshape(-1, draws.shape[-1])
    lo, med, hi = np.quantile(flat, [0.05, 0.5, 0.95], axis=0)
    covered = (lo <= loss) & (loss <= hi)
    coverage = pd.DataFrame(
        {
            "observations": obs.groupby("domain").size(),
            "covered_90": pd.Series(covered).groupby(obs["domain"].to_numpy()).mean(),
        }
    ).reindex(list(data.domains))
    da = xr.DataArray(draws, dims=("chain", "draw", "obs"), name="loss")
    return PredictiveCheck(
        draws=da, coverage=coverage, figure=_figure(obs, lo, med, hi, covered, data.domains, title)
    )


def _figure(obs, lo, med, hi, covered, domains, title):
    n = len(domains)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(3.2 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, domain in zip(axes.flat, domains, strict=False):
        sel = (obs["domain"] == domain).to_numpy()
        y = obs["loss"].to_numpy()[sel]
        ax.errorbar(
            med[sel],
            y,
            xerr=[med[sel] - lo[sel], hi[sel] - med[sel]],
            fmt="none",
            ecolor="#9ab",
            elinewidth=0.6,
            alpha=0.6,
        )
        ax.scatter(med[sel], y, s=5, c=np.where(covered[sel], "#2a6", "#c33"), zorder=3)
        span = [min(lo[sel].min(), y.min()), max(hi[sel].max(), y.max())]
        ax.plot(span, span, color="#555", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{plain(domain)}: 90% covers {100 * covered[sel].mean():.0f}%", fontsize=9)
        ax.set_xlabel("predicted loss (median)", fontsize=8)
        ax.set_ylabel("observed loss", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def prior_predictive_check(
    data: MixtureData, spec: Any = None, draws: int = 500, seed: int = 0
) -> PredictiveCheck:
    """Replicate the data from the prior: do the priors allow losses like the observed ones?"""
    model = BiMixModel(spec)
    pm_model = model.build_model(data)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Potential.*")
        prior = pm.sample_prior_predictive(draws=draws, model=pm_model, random_seed=seed).prior
    layout = CurveLayout.from_data(data, resolve_s_ref(model.spec, data))
    lik = model.spec["likelihood"]
    reps = replicate_losses(prior, layout, lik["family"], lik["nu"], seed)
    return _check(reps, data, "Prior predictive check: observed loss vs prior replicates")


def posterior_predictive_check(
    idata: az.InferenceData, seed: int = 0, max_draws: int = 1000
) -> PredictiveCheck:
    """Replicate the data from the posterior; also stored as ``idata.posterior_predictive``.

    At most ``max_draws`` posterior draws (evenly thinned within each chain) are replicated, so
    that memory stays bounded for long loss logs.
    """
    data = data_from_idata(idata)
    spec = spec_from_idata(idata)
    layout = CurveLayout.from_data(data, float(idata.attrs["s_ref"]))
    lik = spec["likelihood"]
    post = idata.posterior
    thin = int(np.ceil(post.sizes["chain"] * post.sizes["draw"] / max(1, max_draws)))
    post = post.isel(draw=slice(None, None, max(1, thin)))
    reps = replicate_losses(post, layout, lik["family"], lik["nu"], seed)
    check = _check(reps, data, "Posterior predictive check: observed loss vs replicates")
    if "posterior_predictive" in idata.groups():
        del idata.posterior_predictive
    idata.add_groups(
        posterior_predictive=xr.Dataset(
            {"loss": (("chain", "draw", "obs"), reps)},
            coords={
                "chain": post["chain"],
                "draw": post["draw"],
                "obs": idata.observed_data["obs"],
            },
        )
    )
    return check
