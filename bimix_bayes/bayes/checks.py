"""Prior and posterior predictive checks: losses replicated from the model, against the observed.

A replicate of the observed data draws, for every parameter draw, a fresh offset for each
(run, domain) curve and fresh checkpoint noise, exactly as the model's likelihood says. A check
returns the replicates, each observation beside the median of its replicates and their 90 %
interval, and per domain how many observations that interval covers (about 90 % for a model that
fits). Drawing it is left to the report (``predictive_check_figure`` in ``report/figures.py``).

Examples
--------
>>> fit = idata.copy()
>>> check = posterior_predictive_check(fit)
>>> check.draws.dims, check.draws.sizes["obs"]
(('chain', 'draw', 'obs'), 600)
>>> check.coverage["observations"].to_dict()
{'web': 120, 'code': 120, 'books': 120, 'wiki': 120, 'math': 120}
>>> bool(check.coverage["covered_90"].between(0.8, 1.0).all())
True
>>> list(check.intervals.columns)
['run', 'step', 'domain', 'loss', 'median', 'lower_90', 'upper_90', 'covered']
>>> "posterior_predictive" in fit.groups()  # the replicates are also stored in the fit
True
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

from bimix_bayes.bayes.law_params import gather, posterior_law, posterior_params
from bimix_bayes.bayes.likelihood import CurveLayout, draw_offsets, early_noise
from bimix_bayes.bayes.model import BiMixModel, resolve_s_ref
from bimix_bayes.bayes.noise import NOISE_EXCESS, noise_attrs, noise_variance_factor
from bimix_bayes.bayes.persistence import data_from_idata, spec_from_idata
from bimix_bayes.data.labels import interval_columns
from bimix_bayes.data.table import OBS_COLUMNS, MixtureData

__all__ = [
    "PredictiveCheck",
    "posterior_predictive_check",
    "prior_predictive_check",
    "replicate_losses",
]


@dataclass
class PredictiveCheck:
    """What a predictive check found: the replicates and how well they cover the observations.

    Attributes
    ----------
    draws
        Replicated losses, dims ``chain, draw, obs`` (``obs`` in the order of the observations).
    intervals
        One row per observation: its ``run, step, domain, loss``, the replicates' ``median``
        and central 90 % interval (``lower_90``, ``upper_90``), and whether that interval
        ``covered`` the observed loss.
    coverage
        Per domain (in the data's order): ``observations`` and ``covered_90``, the share of them
        inside their 90 % interval (about 0.9 for a model that fits).
    title
        What was replicated (the title of the check's figure in the report).
    """

    draws: xr.DataArray
    intervals: pd.DataFrame
    coverage: pd.DataFrame
    title: str


def replicate_losses(
    params: xr.Dataset, layout: CurveLayout, family: str, nu: float, seed: int = 0
) -> np.ndarray:
    """Replicated losses of the observations, from parameter draws.

    Each (run, domain) curve gets a fresh offset per draw; each checkpoint fresh noise.

    Parameters
    ----------
    params
        Parameter draws of the law (:func:`~bimix_bayes.bayes.law_params.posterior_params`:
        e.g. ``log_floor``, ``log_reducible``, ``log_alpha``, ``log_beta``), ``sigma`` and
        optionally ``tau``, dims ``chain, draw, domain``; ``attrs["law"]`` names the law
        (BiMix when absent).
    layout
        The curves and checkpoints of the observations.
    family, nu
        The likelihood's family (``"normal"`` or ``"student_t"``) and its degrees of freedom.
    seed
        Seed of the offsets and the noise.

    Returns
    -------
    numpy.ndarray
        Losses, shape ``(chain, draw, obs)``.
    """
    rng = np.random.default_rng([seed, 3])
    d = layout.curve_domain

    def take(name: str) -> np.ndarray:
        return params[name].transpose("chain", "draw", "domain").to_numpy()[..., d]

    sigma = take("sigma")
    tau = take("tau") if "tau" in params else np.zeros_like(sigma)
    w = (nu / 2, nu / 2) if family == "student_t" else None
    u, scale = draw_offsets({"mean": 0.0, "var": tau**2, "w": w}, rng, sigma.shape)
    law = posterior_law(params)
    mu = law.log_loss(
        layout.curve_shares[:, None, :],
        layout.curve_own_share[:, None],
        layout.x,
        {
            k: v[..., None, :] if k == "cross" else v[..., None]
            for k, v in gather(posterior_params(params, law), d).items()
        },
        z=layout.z if layout.has_sizes else None,
        u=layout.u if layout.has_schedule else None,
    )
    noise = (scale * sigma)[..., None]
    decay = early_noise(params, layout)  # a noise that falls with the step
    if decay is not None:
        noise = noise * np.sqrt(noise_variance_factor(decay, take(NOISE_EXCESS)[..., None]))
    y = mu + u[..., None] + noise * rng.standard_normal(mu.shape)
    return np.exp(y[..., layout.obs_curve, layout.obs_pos])


def _check(draws: np.ndarray, data: MixtureData, title: str) -> PredictiveCheck:
    """Summarise replicates (chain, draw, obs) of ``data``'s observations as a check."""
    obs = data.observations
    loss = obs["loss"].to_numpy()
    flat = draws.reshape(-1, draws.shape[-1])
    lo, med, hi = np.quantile(flat, [0.05, 0.5, 0.95], axis=0)
    covered = (lo <= loss) & (loss <= hi)
    lower, upper = interval_columns(0.9)
    intervals = obs[list(OBS_COLUMNS)].reset_index(drop=True)
    intervals = intervals.assign(median=med, **{lower: lo, upper: hi}, covered=covered)
    coverage = pd.DataFrame(
        {
            "observations": obs.groupby("domain").size(),
            "covered_90": pd.Series(covered).groupby(obs["domain"].to_numpy()).mean(),
        }
    ).reindex(list(data.domains))
    da = xr.DataArray(draws, dims=("chain", "draw", "obs"), name="loss")
    return PredictiveCheck(draws=da, intervals=intervals, coverage=coverage, title=title)


def prior_predictive_check(
    data: MixtureData, spec: Any = None, draws: int = 500, seed: int = 0
) -> PredictiveCheck:
    """Replicate the data from the prior: do the priors allow losses like the observed ones?

    Parameters
    ----------
    data
        The observations to replicate.
    spec
        The model spec (as :class:`~bimix_bayes.bayes.model.BiMixModel` takes it; None: the
        default).
    draws
        Prior draws.
    seed
        Seed of the prior draws and the replicates.

    Returns
    -------
    PredictiveCheck
        Replicates with dims ``chain`` (one), ``draw`` and ``obs``.
    """
    model = BiMixModel(spec)
    pm_model = model.prior_model(data)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Potential.*")
        prior = pm.sample_prior_predictive(draws=draws, model=pm_model, random_seed=seed).prior
    layout = CurveLayout.from_data(data, resolve_s_ref(model.spec, data))
    lik = model.spec["likelihood"]
    prior.attrs["law"] = model.spec["law"]["name"]
    prior.attrs.update(noise_attrs(model.spec, layout.noise_x0))  # a noise that falls
    reps = replicate_losses(prior, layout, lik["family"], lik["nu"], seed)
    return _check(reps, data, "Prior predictive check: observed loss vs prior replicates")


def posterior_predictive_check(
    idata: az.InferenceData, seed: int = 0, max_draws: int = 1000
) -> PredictiveCheck:
    """Replicate the data from the posterior; also stored as ``idata.posterior_predictive``.

    Parameters
    ----------
    idata
        A fit; its ``posterior_predictive`` group is replaced (pass ``idata.copy()`` to keep it).
    seed
        Seed of the replicates.
    max_draws
        At most this many posterior draws (evenly thinned within each chain) are replicated, so
        that memory stays bounded for long loss logs.

    Returns
    -------
    PredictiveCheck
        Replicates with the posterior's (thinned) ``chain`` and ``draw`` dims.
    """
    data = data_from_idata(idata)
    spec = spec_from_idata(idata)
    layout = CurveLayout.from_data(data, float(idata.attrs["s_ref"]), idata.attrs.get("size_ref"))
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
