"""The hierarchical Bayesian BiMix model: build, sample, and package the posterior.

Per evaluation domain ``d`` the identifiable BiMix form (:mod:`bimix_bayes.laws.bimix`) with
population priors on ``log_floor``, ``log_reducible``, ``log_alpha`` and ``log_beta`` (partial
pooling across domains), per-domain noise ``sigma`` and run-offset sd ``tau``, and the likelihood
of each (run, domain) curve with its offset integrated out (:mod:`bimix_bayes.bayes.likelihood`).
Priors, likelihood and sampler come from a spec (:mod:`bimix_bayes.bayes.spec`, default
``models/bimix.toml``).

:meth:`BiMixModel.fit` returns an ArviZ ``InferenceData`` with groups ``posterior`` (also the
paper's ``A, alpha, B, beta, C`` under the convention C = 1 and each observed run's offset),
``sample_stats``, ``log_likelihood`` (``loss_run``: one value per run, the unit of
leave-one-run-out LOO; without correlated run effects also ``loss_curve`` per (run, domain)
curve), ``observed_data``,
``constant_data`` (the fitted data, so a saved file is self-sufficient) and attrs describing how it
was made. Diagnostics are checked after every fit (:mod:`bimix_bayes.bayes.diagnostics`).

Examples
--------
>>> spec = {"sampler": {"chains": 2, "draws": 200, "tune": 300}}
>>> BiMixModel(spec).sampler_config["sampler"]["draws"]
200
>>> # model = BiMixModel(spec); model.fit(simulate_default(seed=1), seed=0) takes about 10 s;
>>> # here ``model`` is that fit (5 domains, 12 runs).
>>> model.posterior["alpha"].dims
('chain', 'draw', 'domain')
>>> dict(model.posterior.sizes)  # run effects correlated across domains (10 pairs)
{'chain': 2, 'draw': 200, 'domain': 5, 'domain_pair': 10, 'other_domain': 5, 'run': 12}
>>> model.diagnostics.draws, model.idata_.attrs["seed"]
(400, 0)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import warnings
from collections.abc import Mapping
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from bimix_bayes._version import __version__
from bimix_bayes.bayes.correlated import (
    RunSums,
    corr_cholesky,
    effect_cholesky,
    lkj_cpc_shapes,
    run_log_likelihood,
)
from bimix_bayes.bayes.correlated_posterior import (
    CORRELATION_DIM,
    is_correlated,
    observed_run_draws,
    run_log_likelihoods,
)
from bimix_bayes.bayes.diagnostics import FitDiagnostics, diagnose
from bimix_bayes.bayes.likelihood import (
    CurveLayout,
    curve_log_likelihood,
    curve_residual_sums,
    draw_offsets,
)
from bimix_bayes.bayes.persistence import (
    FORMAT_VERSION,
    diagnostics_from_idata,
    load_fit,
    save_fit,
    spec_from_idata,
)
from bimix_bayes.bayes.spec import PRIOR_NAMES, Spec, load_spec, merge_spec, spec_id
from bimix_bayes.data.table import MixtureData
from bimix_bayes.laws.bimix import IdentifiableParams, log_mixture_factor, log_step_factor

__all__ = ["SAFER_SAMPLER", "BiMixModel", "RetryWarning", "SamplerFallbackWarning", "safer_sampler"]

_DATA_VARS = ("step_grid", "grid_index", "y", "mask", "curve_log_r", "curve_domain", "n")


class SamplerFallbackWarning(UserWarning):
    """nutpie could not be used; the fit fell back to PyMC's NUTS."""


class RetryWarning(UserWarning):
    """A fit failed its diagnostics and is being refitted once with safer sampler settings."""


#: What a retry changes: the smaller steps and longer warm-up that cured the failed fits of the
#: public backtests (reports/validation.md) when more draws alone did not.
SAFER_SAMPLER = {"target_accept": 0.99, "tune": 1000}


def safer_sampler(sampler: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sampler settings a retry changes, or None when they are already that safe.

    Examples
    --------
    >>> safer_sampler({"target_accept": 0.9, "tune": 500})
    {'target_accept': 0.99, 'tune': 1000}
    >>> safer_sampler({"target_accept": 0.995, "tune": 2000}) is None
    True
    """
    out = {}
    if sampler["target_accept"] < SAFER_SAMPLER["target_accept"]:
        out["target_accept"] = SAFER_SAMPLER["target_accept"]
    if sampler["tune"] < SAFER_SAMPLER["tune"]:
        out["tune"] = SAFER_SAMPLER["tune"]
    return out or None


def _package_versions() -> dict[str, str]:
    out = {"bimix_bayes": __version__}
    for name in ("pymc", "pytensor", "arviz", "nutpie", "numpy", "scipy", "pandas"):
        try:
            out[name] = version(name)
        except Exception:  # pragma: no cover - optional packages
            out[name] = "not installed"
    return out


def resolve_s_ref(spec: Spec, data: MixtureData) -> float:
    """The reference step of ``spec`` for ``data`` (the geometric mean of the steps by default)."""
    value = spec["data"]["s_ref"]
    if value == "geometric_mean":
        return float(np.exp(np.log(data.observations["step"].to_numpy(dtype=float)).mean()))
    return float(value)


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
        theta = {name: _population(name, spec["priors"][name]) for name in PRIOR_NAMES}
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
        # BiMix (law.bimix_log_loss) is the mixture factor plus the step factor; the step factor
        # depends on (domain, step) only, so it is evaluated once per distinct step and gathered.
        step_factor = log_step_factor(
            step_grid[None, :],
            theta["log_floor"][:, None],
            theta["log_reducible"][:, None],
            pt.exp(theta["log_beta"])[:, None],
            math=pt,
        )
        mixture_factor = log_mixture_factor(log_r, pt.exp(theta["log_alpha"])[d])
        mu = mixture_factor[:, None] + step_factor.ravel()[grid_index]
        e = (y - mu) * mask
        if correlated:
            pm.Potential("loglik", _correlated_loglik(e, mask, sigma, chol_u, layout, lik, d).sum())
            return model
        if lik["run_slope"]:
            x = pm.Data("x", layout.x)
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
        x = pm.Data("x", layout.x)
        _, chol_v = _correlated_effects("kappa", "slope_corr", lik["slope_scale"], lik, layout)
        sx, sxx = by_run((x * mask).sum(axis=1)), by_run((x**2 * mask).sum(axis=1))
        sxe = by_run((e * x).sum(axis=1))
    sums = RunSums(
        n=run_n, sx=sx, sxx=sxx, s1=by_run(e.sum(axis=1)), s2=by_run((e**2).sum(axis=1)), sxe=sxe
    )
    return run_log_likelihood(
        sums, sigma, chol_u, chol_v, family=lik["family"], nu=lik["nu"], math=pt
    )


def _data_names(spec: Spec, n_domains: int) -> tuple[str, ...]:
    """The ``pm.Data`` containers of the model of ``spec`` (what a refit swaps in)."""
    names = list(_DATA_VARS)
    if is_correlated(spec, n_domains):  # counts per (run, domain) replace those per curve
        names = [*(k for k in names if k != "n"), "run_n", "curve_run"]
    if spec["likelihood"]["run_slope"]:
        names.append("x")
    return tuple(names)


@cache
def _compiled_nutpie(model_json: str, n_domains: int) -> Any:
    """Compile once per (model spec, number of domains); fits swap their data in (with_data).

    The data live in ``pm.Data`` containers whose sizes are free, so one compiled model serves
    any data set with the same number of domains (backtests, simulation studies, refits).
    """
    import nutpie

    spec = json.loads(model_json)
    return nutpie.compile_pymc_model(
        build_pymc_model(CurveLayout.placeholder(n_domains), spec), backend="numba"
    )


class BiMixModel:
    """Hierarchical Bayesian BiMix, configured by a spec (see ``models/bimix.toml``).

    Parameters
    ----------
    spec
        A spec file path, a mapping merged over the default spec, or None for the default.

    Attributes
    ----------
    spec : dict
        The full validated spec.
    model_config, sampler_config : dict
        Its model part (data, priors, likelihood) and sampler part (sampler, diagnostics).
    idata_ : arviz.InferenceData
        After :meth:`fit`: the posterior and everything needed to use it.
    diagnostics_ : FitDiagnostics
        After :meth:`fit`: r-hat, ESS, divergences, BFMI and whether the fit passed.

    Examples
    --------
    >>> BiMixModel().sampler_config["sampler"]["backend"]
    'nutpie'
    """

    def __init__(self, spec: Spec | str | Any | None = None) -> None:
        if spec is None or isinstance(spec, Mapping):
            self.spec = merge_spec(spec)
        else:
            self.spec = load_spec(spec)

    @property
    def model_config(self) -> dict[str, Any]:
        """The model part of the spec: data, priors, likelihood."""
        return {k: self.spec[k] for k in ("data", "priors", "likelihood")}

    @property
    def sampler_config(self) -> dict[str, Any]:
        """The sampler part of the spec: sampler settings and diagnostic thresholds."""
        return {k: self.spec[k] for k in ("sampler", "diagnostics")}

    def build_model(self, data: MixtureData) -> pm.Model:
        """The PyMC model for ``data`` (for inspection, prior checks or custom sampling)."""
        return build_pymc_model(
            CurveLayout.from_data(data, resolve_s_ref(self.spec, data)), self.spec
        )

    # ------------------------------------------------------------------ sampling
    def fit(
        self,
        data: MixtureData,
        *,
        seed: int = 0,
        progress_bar: bool | None = None,
        retry: bool = False,
    ) -> az.InferenceData:
        """Sample the posterior of ``data``; check it; return the ``InferenceData``.

        Parameters
        ----------
        data
            Validated runs and observations.
        seed
            Random seed: the same seed, data and spec give the same draws.
        progress_bar
            Override the spec's ``sampler.progress_bar`` (by default: only in a terminal).
        retry
            When the fit fails its diagnostics, refit once with safer sampler settings
            (:func:`safer_sampler`: smaller steps, longer warm-up), say so with a
            :class:`RetryWarning`, and keep the refit (its spec records the settings used).
        """
        idata = self._fit_once(data, seed, progress_bar)
        safer = safer_sampler(self.spec["sampler"]) if retry else None
        if safer is not None and not self.diagnostics_.passed:
            first = self.diagnostics_
            changed = ", ".join(f"{k} {self.spec['sampler'][k]} -> {v}" for k, v in safer.items())
            warnings.warn(
                f"the fit failed its diagnostics ({'; '.join(first.problems)}); refitting once "
                f"with safer sampler settings ({changed})",
                RetryWarning,
                stacklevel=2,
            )
            self.spec = merge_spec({**self.spec, "sampler": {**self.spec["sampler"], **safer}})
            idata = self._fit_once(data, seed, progress_bar)
            idata.attrs["first_attempt"] = first.to_json()
        self.diagnostics_.warn_if_failed()
        return idata

    def _fit_once(
        self, data: MixtureData, seed: int, progress_bar: bool | None
    ) -> az.InferenceData:
        """One fit under ``self.spec`` (diagnosed, not warned about)."""
        data.check_design()
        t_start = time.perf_counter()
        layout = CurveLayout.from_data(data, resolve_s_ref(self.spec, data))
        cfg = self.spec["sampler"]
        if progress_bar is None:
            progress_bar = {"always": True, "never": False}.get(
                cfg["progress_bar"], sys.stderr.isatty()
            )
        sampler = cfg["backend"]
        t_compile = 0.0
        compiled = None
        if sampler == "nutpie":
            t0 = time.perf_counter()
            compiled = self._compile_nutpie(layout)
            t_compile = time.perf_counter() - t0
            sampler = "nutpie" if compiled is not None else "pymc"
        if compiled is not None:
            idata = self._sample_nutpie(compiled, seed, progress_bar)
        else:
            idata = self._sample_pymc(layout, seed, progress_bar)
        t_sample = time.perf_counter() - t_start - t_compile
        idata = self._package(idata, data, layout, sampler, seed)
        self.diagnostics_ = diagnose(idata, self.spec["diagnostics"])
        idata.attrs.update(
            {
                "compile_seconds": round(t_compile, 3),
                "sample_seconds": round(t_sample, 3),
                "wall_seconds": round(time.perf_counter() - t_start, 3),
                "diagnostics": self.diagnostics_.to_json(),
            }
        )
        self.idata_ = idata
        return idata

    def _compile_nutpie(self, layout: CurveLayout) -> Any | None:
        """The compiled model with this data swapped in; None (and a warning) if nutpie fails.

        Only installing and compiling fall back to PyMC's NUTS; errors while sampling surface.
        """
        graph_part = {k: self.spec[k] for k in ("priors", "likelihood")}
        try:
            compiled = _compiled_nutpie(json.dumps(graph_part, sort_keys=True), len(layout.domains))
        except Exception as exc:  # an install or compiler problem: fall back, loudly
            warnings.warn(
                f"nutpie could not compile this model ({type(exc).__name__}: {exc}); falling "
                "back to PyMC's NUTS (slower). Run with --debug for the traceback.",
                SamplerFallbackWarning,
                stacklevel=3,
            )
            return None
        values = {"run_n": layout.run_design()[0]}
        names = _data_names(self.spec, len(layout.domains))
        return compiled.with_data(**{k: values.get(k, getattr(layout, k, None)) for k in names})

    def _sampler_settings(self) -> dict[str, Any]:
        """The settings both backends take under the same names."""
        cfg = self.spec["sampler"]
        keys = ("draws", "tune", "chains", "target_accept")
        return {**{k: cfg[k] for k in keys}, "cores": cfg["cores"] or None}

    def _sample_nutpie(self, compiled: Any, seed: int, progress_bar: bool) -> az.InferenceData:
        import nutpie

        return nutpie.sample(
            compiled,
            **self._sampler_settings(),
            seed=seed,
            progress_bar=progress_bar,
            low_rank_modified_mass_matrix=self.spec["sampler"]["low_rank_mass_matrix"],
            save_warmup=False,
        )

    def _sample_pymc(self, layout: CurveLayout, seed: int, progress_bar: bool) -> az.InferenceData:
        with build_pymc_model(layout, self.spec):
            return pm.sample(
                **self._sampler_settings(),
                random_seed=seed,
                progressbar=progress_bar,
                nuts_sampler="pymc",
                compute_convergence_checks=False,
            )

    # ------------------------------------------------------------------ packaging
    def _package(
        self,
        idata: az.InferenceData,
        data: MixtureData,
        layout: CurveLayout,
        sampler: str,
        seed: int,
    ) -> az.InferenceData:
        post = idata.posterior.assign_coords(domain=list(layout.domains))
        keep = [v for v in post.data_vars if not (v.startswith("loglik") or v.endswith("__"))]
        post = post[keep]
        post["alpha"] = np.exp(post["log_alpha"])
        post["beta"] = np.exp(post["log_beta"])
        paper = IdentifiableParams(
            log_floor=post["log_floor"],
            log_reducible=post["log_reducible"],
            alpha=post["alpha"],
            beta=post["beta"],
            s_ref=layout.s_ref,
        ).to_paper()
        for name in ("A", "B", "C"):
            post[name] = (post["alpha"].dims, np.asarray(getattr(paper, name)))
        log_lik = self._log_likelihood(post, layout)
        post["run_offset"] = self._run_offsets(post, layout, seed)
        obs = data.observations
        observed = xr.Dataset(
            {"loss": ("obs", obs["loss"].to_numpy(dtype=float))},
            coords={"obs": np.arange(len(obs))},
        )
        constant = xr.Dataset(
            {
                "step": ("obs", obs["step"].to_numpy(dtype=float)),
                "obs_run": ("obs", obs["run"].to_numpy(dtype=str)),
                "obs_domain": ("obs", obs["domain"].to_numpy(dtype=str)),
                "share": ("obs", data.shares()),
                "mixtures": (("run", "training_domain"), data.mixtures.to_numpy(dtype=float)),
            },
            coords={
                "obs": np.arange(len(obs)),
                "run": list(data.mixtures.index),
                "training_domain": list(data.mixtures.columns),
            },
        )
        out = az.InferenceData(
            posterior=post,
            sample_stats=idata.sample_stats,
            log_likelihood=log_lik,
            observed_data=observed,
            constant_data=constant,
        )
        out.attrs.update(
            {
                "bimix_format": FORMAT_VERSION,
                "model": "bimix-hierarchical",
                "package_versions": json.dumps(_package_versions()),
                "spec": json.dumps(self.spec, sort_keys=True),
                "spec_id": spec_id(self.spec),
                "sampler": sampler,
                "seed": int(seed),
                "data_fingerprint": data.fingerprint(),
                "data_source": data.source,
                "data_volume": data.volume,
                "data_group": "" if data.group is None else str(data.group),
                "data_notes": json.dumps(list(data.notes)),
                "s_ref": layout.s_ref,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        return out

    def _log_likelihood(self, post: xr.Dataset, layout: CurveLayout) -> xr.Dataset:
        """Pointwise log likelihood: ``loss_run`` per run (the unit of leave-one-run-out LOO:
        the decision is about new runs) and, without correlated effects, ``loss_curve`` per
        (run, domain) curve."""
        lik = self.spec["likelihood"]
        coords = {"chain": post.chain, "draw": post.draw}
        dims = ("chain", "draw")
        if is_correlated(self.spec, len(layout.domains)):
            per_run = run_log_likelihoods(post, layout, self.spec)
            return xr.Dataset(
                {"loss_run": ((*dims, "run"), per_run)}, coords={**coords, "run": list(layout.runs)}
            )
        sums = curve_residual_sums(post, layout, with_slope=bool(lik["run_slope"]))
        curve_ll = curve_log_likelihood(
            sums.s1,
            sums.s2,
            layout.n,
            sums.sigma,
            sums.tau,
            family=lik["family"],
            nu=lik["nu"],
            slope=sums.slope(layout),
        )
        return xr.Dataset(
            {
                "loss_run": ((*dims, "run"), layout.by_run(curve_ll).sum(axis=-1)),
                "loss_curve": ((*dims, "curve"), curve_ll),
            },
            coords={**coords, "run": list(layout.runs), "curve": layout.curve_labels()},
        )

    def _run_offsets(self, post: xr.Dataset, layout: CurveLayout, seed: int) -> xr.DataArray:
        """One draw of each observed run's offsets from their conditional, per posterior draw.

        NaN where a run has no curve of a domain (without correlated effects; with them every
        domain's offset is drawn, the unobserved ones informed through the correlation).
        """
        rng = np.random.default_rng([seed, 1])
        lik = self.spec["likelihood"]
        if is_correlated(self.spec, len(layout.domains)):
            grid = observed_run_draws(post, layout, self.spec, rng)[0]
        else:
            sums = curve_residual_sums(post, layout, with_slope=bool(lik["run_slope"]))
            cond = sums.conditional(layout, family=lik["family"], nu=lik["nu"])
            u, _ = draw_offsets(cond, rng, sums.s1.shape)
            chains, draws = sums.s1.shape[:2]
            grid = np.full((chains, draws, len(layout.runs), len(layout.domains)), np.nan)
            grid[:, :, layout.curve_run, layout.curve_domain] = u
        return xr.DataArray(
            grid, dims=("chain", "draw", "run", "domain"), coords={"run": list(layout.runs)}
        )

    # ------------------------------------------------------------------ results
    def _check_fitted(self) -> None:
        if not hasattr(self, "idata_"):
            raise RuntimeError(
                "this BiMixModel is not fitted yet; call .fit(data) first "
                "(or BiMixModel.load(path))"
            )

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior group of the fit."""
        self._check_fitted()
        return self.idata_.posterior

    @property
    def diagnostics(self) -> FitDiagnostics:
        """Diagnostics of the fit."""
        self._check_fitted()
        return self.diagnostics_

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the fit as netCDF (atomic); see :func:`bimix_bayes.bayes.persistence.save_fit`."""
        self._check_fitted()
        return save_fit(self.idata_, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BiMixModel:
        """A fitted model from a saved file (refuses incompatible files)."""
        idata = load_fit(path)
        model = cls(spec_from_idata(idata))
        model.idata_ = idata
        model.diagnostics_ = diagnostics_from_idata(idata)
        return model

    def predict(self, steps: Any, **kwargs: Any) -> Any:
        """Forecast loss; see :func:`bimix_bayes.bayes.forecast.predict` (same arguments)."""
        from bimix_bayes.bayes.forecast import predict

        self._check_fitted()
        return predict(self.idata_, steps=steps, **kwargs)
