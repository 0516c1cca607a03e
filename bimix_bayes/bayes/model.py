"""The hierarchical Bayesian BiMix model: build, sample, and package the posterior.

Per evaluation domain ``d`` the identifiable BiMix form (:mod:`bimix_bayes.laws.bimix`) with
population priors on ``log_floor``, ``log_reducible``, ``log_alpha`` and ``log_beta`` (partial
pooling across domains), per-domain noise ``sigma`` and run-offset sd ``tau``, and the likelihood
of each (run, domain) curve with its offset integrated out (:mod:`bimix_bayes.bayes.likelihood`).
Priors, likelihood and sampler come from a spec (:mod:`bimix_bayes.bayes.spec`, default
``models/bimix.toml``).

:meth:`BiMixModel.fit` returns an ArviZ ``InferenceData`` with groups ``posterior`` (also the
paper's ``A, alpha, B, beta, C`` under the convention C = 1 and each observed run's offset),
``sample_stats``, ``log_likelihood`` (``loss_curve``: one value per (run, domain) curve, the
unit of leave-one-curve-out LOO; sum a run's curves for leave-one-run-out), ``observed_data``,
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
>>> dict(model.posterior.sizes)
{'chain': 2, 'draw': 200, 'domain': 5, 'run': 12}
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
from bimix_bayes.bayes.diagnostics import FitDiagnostics, diagnose
from bimix_bayes.bayes.likelihood import (
    CurveLayout,
    curve_log_likelihood,
    curve_residual_sums,
    draw_offsets,
    offset_conditional,
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

__all__ = ["BiMixModel", "SamplerFallbackWarning"]

_DATA_VARS = ("step_grid", "grid_index", "y", "mask", "curve_log_r", "curve_domain", "n")


class SamplerFallbackWarning(UserWarning):
    """nutpie could not be used; the fit fell back to PyMC's NUTS."""


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
    """``theta[d] ~ Normal(mu, sd)``, ``mu ~ Normal(loc, loc_scale)``, ``sd ~ HalfNormal``."""
    mu = pm.Normal(f"mu_{name}", prior["loc"], prior["loc_scale"])
    sd = pm.HalfNormal(f"sd_{name}", prior["sd_scale"])
    if prior["parametrization"] == "centered":
        return pm.Normal(name, mu, sd, dims="domain")
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims="domain")
    return pm.Deterministic(name, mu + sd * z, dims="domain")


def build_pymc_model(layout: CurveLayout, spec: Spec) -> pm.Model:
    """The PyMC model of ``layout`` under ``spec`` (data in ``pm.Data`` containers)."""
    lik = spec["likelihood"]
    with pm.Model(coords={"domain": list(layout.domains)}) as model:
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
            if lik["run_offset"]
            else pt.zeros(len(layout.domains))
        )
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
        self, data: MixtureData, *, seed: int = 0, progress_bar: bool | None = None
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
        """
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
        self.diagnostics_.warn_if_failed()
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
        names = (*_DATA_VARS, "x") if self.spec["likelihood"]["run_slope"] else _DATA_VARS
        return compiled.with_data(**{k: getattr(layout, k) for k in names})

    def _sample_nutpie(self, compiled: Any, seed: int, progress_bar: bool) -> az.InferenceData:
        import nutpie

        cfg = self.spec["sampler"]
        return nutpie.sample(
            compiled,
            draws=cfg["draws"],
            tune=cfg["tune"],
            chains=cfg["chains"],
            cores=cfg["cores"] or None,
            seed=seed,
            progress_bar=progress_bar,
            low_rank_modified_mass_matrix=cfg["low_rank_mass_matrix"],
            target_accept=cfg["target_accept"],
            save_warmup=False,
        )

    def _sample_pymc(self, layout: CurveLayout, seed: int, progress_bar: bool) -> az.InferenceData:
        cfg = self.spec["sampler"]
        with build_pymc_model(layout, self.spec):
            return pm.sample(
                draws=cfg["draws"],
                tune=cfg["tune"],
                chains=cfg["chains"],
                cores=cfg["cores"] or None,
                random_seed=seed,
                progressbar=progress_bar,
                target_accept=cfg["target_accept"],
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
        lik = self.spec["likelihood"]
        sums = curve_residual_sums(post, layout, with_slope=bool(lik["run_slope"]))
        s1, s2, sigma, tau, slope = sums.s1, sums.s2, sums.sigma, sums.tau, sums.slope(layout)
        curve_ll = curve_log_likelihood(
            s1, s2, layout.n, sigma, tau, family=lik["family"], nu=lik["nu"], slope=slope
        )
        post["run_offset"] = self._run_offsets(s1, s2, sigma, tau, layout, seed, slope)
        curves = layout.curve_labels()
        log_lik = xr.Dataset(
            {"loss_curve": (("chain", "draw", "curve"), curve_ll)},
            coords={"chain": post.chain, "draw": post.draw, "curve": curves},
        )
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

    def _run_offsets(
        self,
        s1: np.ndarray,
        s2: np.ndarray,
        sigma: np.ndarray,
        tau: np.ndarray,
        layout: CurveLayout,
        seed: int,
        slope: tuple | None = None,
    ) -> xr.DataArray:
        """One draw of each observed curve's offset from its conditional, per posterior draw."""
        lik = self.spec["likelihood"]
        cond = offset_conditional(
            s1, s2, layout.n, sigma, tau, family=lik["family"], nu=lik["nu"], slope=slope
        )
        u, _ = draw_offsets(cond, np.random.default_rng([seed, 1]), s1.shape)
        chains, draws = s1.shape[:2]
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
