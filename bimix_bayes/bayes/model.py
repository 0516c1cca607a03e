"""The hierarchical Bayesian BiMix model: build, sample, and package the posterior.

Per evaluation domain ``d`` the identifiable BiMix form (:mod:`bimix_bayes.laws.bimix`) with,
by default, a population prior on ``log_alpha`` (pooled across domains toward a learnt mean,
its sd fixed) and independent priors per domain on ``log_floor``, ``log_reducible`` and
``log_beta`` (sampled in level/slope coordinates, the level at the domain's typical share,
:mod:`bimix_bayes.bayes.graph`), per-domain noise ``sigma`` and
run-offset sd ``tau``, and the likelihood of each run with its offsets integrated out
(:mod:`bimix_bayes.bayes.likelihood`, :mod:`bimix_bayes.bayes.correlated`).
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
>>> sizes = dict(model.posterior.sizes)
>>> {k: sizes[k] for k in ("chain", "draw", "domain", "run")}
{'chain': 2, 'draw': 200, 'domain': 5, 'run': 12}
>>> "run_corr" in model.posterior  # run effects independent across domains by default
False
>>> model.diagnostics.draws, model.idata_.attrs["seed"]
(400, 0)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from bimix_bayes._version import __version__
from bimix_bayes.bayes.checkpoint_noise import noise_correlation, noise_correlation_attr
from bimix_bayes.bayes.checkpoints import CHECKPOINT_DIM
from bimix_bayes.bayes.correlated_posterior import (
    CORRELATION_DIM,
    is_correlated,
    observed_run_draws,
    resolve_run_correlation,
    run_log_likelihoods,
)
from bimix_bayes.bayes.diagnostics import (
    FitDiagnostics,
    cross_coordinates_to_flip,
    diagnose,
    retry_settings,
)
from bimix_bayes.bayes.graph import (
    GRAPH_SAMPLER_KEYS,
    build_pymc_model,
    compiled_nutpie,
    data_names,
    grouping,
    has_checkpoint_shocks,
    jittered_start,
    layout_cross_basis,
    run_patterns,
)
from bimix_bayes.bayes.identifiability import warn_if_run_effects_unidentified
from bimix_bayes.bayes.law_params import SCHEDULE_ATTR, TRAIN_DIM, spec_law
from bimix_bayes.bayes.likelihood import (
    CurveLayout,
    CurveSums,
    curve_residual_sums,
    draw_offsets,
)
from bimix_bayes.bayes.noise import noise_attrs
from bimix_bayes.bayes.persistence import (
    FORMAT_VERSION,
    diagnostics_from_idata,
    load_fit,
    save_fit,
    spec_from_idata,
)
from bimix_bayes.bayes.residual_correlation import correlation_attr, residual_correlation
from bimix_bayes.bayes.run_size_offsets import run_size_offsets, size_cells
from bimix_bayes.bayes.spec import (
    Spec,
    SpecError,
    load_spec,
    merge_spec,
    resolve_alpha_drift,
    spec_id,
)
from bimix_bayes.data.labels import evaluation_only_hint
from bimix_bayes.data.table import DataError, MixtureData
from bimix_bayes.laws.bimix import IdentifiableParams
from bimix_bayes.laws.registry import Law

__all__ = ["BiMixModel", "RetryWarning", "SamplerFallbackWarning", "safer_sampler"]


class SamplerFallbackWarning(UserWarning):
    """nutpie could not be used; the fit fell back to PyMC's NUTS."""


class RetryWarning(UserWarning):
    """A fit failed its diagnostics and is being refitted once with safer sampler settings."""


def safer_sampler(
    sampler: Mapping[str, Any], problems: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The sampler settings a retry changes, or None when there is nothing safer to try.

    A longer warm-up and at least :data:`~bimix_bayes.bayes.diagnostics.SAFE_DRAWS` draws per
    chain whatever failed; smaller steps (``target_accept`` 0.99) when the chains diverged;
    when ``problems`` (the failed fit's) say the chains mixed slowly (r-hat, ESS), twice the
    draws or as many as the failed ESS asks for, up to four times
    (:func:`~bimix_bayes.bayes.diagnostics.retry_settings`, which has the evidence: where the
    chains only mixed slowly, smaller steps lowered the ESS per draw 2-3x and the retry failed
    again); and the other coordinates of the cross effects (``centre_cross`` flipped) when the
    problems name them or their sd, or say the divergences sit at the end of that sd where the
    current coordinates have their funnel
    (:func:`~bimix_bayes.bayes.diagnostics.cross_coordinates_to_flip`). The centred form suits
    cross effects the runs pin down, the non-centred one effects they leave loose; a failure on
    ``sd_cross`` says the fit is in the wrong one. loglinear, the embedded study's
    ``holdout-mixtures:10`` split 2 (10 runs): centred, 9 divergences, 6 of them at small
    ``sd_cross``; retried centred, 36 divergences and tail ESS 179 on ``sd_cross``; retried
    non-centred, passes; Ye 5Mix 70M (13 runs, seed 2), centred, 20 divergences: retried
    non-centred, passes. Divergences only: the smaller steps make the draws more correlated,
    so the draws are raised to :data:`~bimix_bayes.bayes.diagnostics.SAFE_DRAWS` too (the
    embedded study's ``holdout-mixtures:10`` split 0 under loglinear: 1 divergence; retried
    with 1000 draws, tail ESS 252 on a cross effect; with 2000, passes).

    Examples
    --------
    >>> default = {"target_accept": 0.9, "tune": 300, "draws": 1000}
    >>> safer_sampler(default, ["2 divergent transitions"])
    {'target_accept': 0.99, 'tune': 1000, 'draws': 2000}
    >>> safer_sampler(default, ["r-hat 1.02 > 1.01 for sigma[web]"])
    {'tune': 1000, 'draws': 2000}
    >>> safer_sampler(default, ["tail ESS 157 < 400"])  # 1.5 x 400 / 157 = 3.8 times
    {'tune': 1000, 'draws': 4000}
    >>> safer_sampler(default, ["tail ESS 372 < 400", "3 divergent transitions"])
    {'target_accept': 0.99, 'tune': 1000, 'draws': 4000}
    >>> safer_sampler({"target_accept": 0.995, "tune": 2000, "draws": 2000}) is None
    True
    >>> safer_sampler({**default, "centre_cross": True}, ["5 divergent transitions",
    ...                                                   "tail ESS 334 < 400 for sd_cross"])
    {'target_accept': 0.99, 'tune': 1000, 'draws': 4000, 'centre_cross': False}
    """
    out = retry_settings(sampler, problems)
    if "centre_cross" in sampler and cross_coordinates_to_flip(
        problems, bool(sampler["centre_cross"])
    ):
        out["centre_cross"] = not sampler["centre_cross"]
    return out or None


def _package_versions() -> dict[str, str]:
    out = {"bimix_bayes": __version__}
    for name in ("pymc", "pytensor", "arviz", "nutpie", "numpy", "scipy", "pandas"):
        try:
            out[name] = version(name)
        except Exception:  # pragma: no cover - optional packages
            out[name] = "not installed"
    return out


def _coords(posterior: xr.Dataset, layout: CurveLayout) -> dict[str, list[str]]:
    """The data's labels for the domain dimensions (a compiled model holds placeholders)."""
    domains = list(layout.domains)
    out = {"domain": domains}
    if CORRELATION_DIM in posterior.dims:
        out[CORRELATION_DIM] = domains
    if "domain_pair" in posterior.dims:
        out["domain_pair"] = [
            f"{domains[i]}~{domains[m]}" for i in range(len(domains)) for m in range(i)
        ]
    if TRAIN_DIM in posterior.dims:
        out[TRAIN_DIM] = list(layout.training_domains)
    if CHECKPOINT_DIM in posterior.dims:  # slots beyond the fitted steps keep their prior
        out[CHECKPOINT_DIM] = list(range(posterior.sizes[CHECKPOINT_DIM]))
    return out


def _run_size_attr(
    post: xr.Dataset,
    layout: CurveLayout,
    sums: CurveSums,
    noise: np.ndarray,
    family: str,
    nu: float,
) -> dict[str, str]:
    """The attribute storing how a size fit's mixtures' offsets move between sizes
    (:mod:`~bimix_bayes.bayes.run_size_offsets`) from the residual sums with cell means and the
    checkpoint noise's correlation ``noise``; empty when nothing could be estimated."""
    sigma2 = (post["sigma"] ** 2).mean(("chain", "draw")).transpose("domain").to_numpy()
    if family == "student_t" and nu > 2:  # noise variance sigma^2 W, E[W] = nu / (nu - 2)
        sigma2 = sigma2 * nu / (nu - 2)
    cells = size_cells(layout, sums.mean_residual, sums.mean_weight, sigma2)
    offsets = run_size_offsets(cells, len(layout.domains), noise_corr=noise)
    return {} if offsets is None else offsets.to_attr()


def _check_law_fits_data(law: Law, layout: CurveLayout) -> None:
    """Refuse data the law cannot express: zero own shares, or an evaluation domain that is
    not a training domain, under a law infinite at zero shares (BiMix)."""
    untrained = [d for d, i in zip(layout.domains, layout.own_index, strict=True) if i < 0]
    if untrained and not law.fits_evaluation_only:
        silent = [t for t in layout.training_domains if t not in layout.domains]
        raise DataError(
            f"evaluation domain(s) {untrained} are not training domains"
            f"{evaluation_only_hint(untrained, silent)}. The {law.name} law needs each "
            "evaluation domain's own share. Fit them with --law loglinear, whose loss depends "
            "on every training share, or leave them out of this fit with "
            + " ".join(f"--exclude-domain {d}" for d in untrained[:3])
        )
    zero = (layout.curve_own_share <= 0) & (layout.own_index[layout.curve_domain] >= 0)
    if zero.any() and not law.finite_at_zero:
        labels = [lbl for lbl, z in zip(layout.curve_labels(), zero, strict=True) if z][:5]
        raise DataError(
            f"{int(zero.sum())} (run, domain) curve(s) have a zero share of their own domain "
            f"(e.g. {', '.join(labels)}); the {law.name} law is infinite there. Fit with "
            "--law loglinear (finite at zero shares), or load with --zero-policy drop"
        )


def resolve_s_ref(spec: Spec, data: MixtureData) -> float:
    """The reference step of ``spec`` for ``data`` (the geometric mean of the steps by default)."""
    value = spec["data"]["s_ref"]
    if value == "geometric_mean":
        return float(np.exp(np.log(data.observations["step"].to_numpy(dtype=float)).mean()))
    return float(value)


#: The spec settings each fit decides for its data when they are "auto" (section, key).
_PER_DATASET = (("likelihood", "run_correlation"), ("law", "alpha_drift"))


class BiMixModel:
    """Hierarchical Bayesian BiMix, configured by a spec (see ``models/bimix.toml``).

    Parameters
    ----------
    spec
        A spec file path, the name of a packaged spec (``"bimix"``, the default; see
        :func:`~bimix_bayes.bayes.spec.packaged_specs`), a mapping merged over the default spec,
        or None for the default.

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
    >>> BiMixModel("bimix").spec == BiMixModel().spec  # a packaged spec, from any folder
    True
    """

    def __init__(self, spec: Mapping[str, Any] | str | os.PathLike[str] | None = None) -> None:
        if spec is None or isinstance(spec, Mapping):
            self.spec = merge_spec(spec)
        else:
            self.spec = load_spec(spec)
        # the per-dataset settings as given ("auto" included): each fit decides them for its
        # data (spec_for); what the last fit decided, to tell it from an edit of self.spec
        # made after that fit
        self._given = {key: self.spec[section][key] for section, key in _PER_DATASET}
        self._decided: dict[str, Any] = {}

    def spec_for(self, data: MixtureData) -> Spec:
        """The spec a fit of ``data`` uses: ``likelihood.run_correlation = "auto"`` decided for
        it (correlated run effects when some evaluation domain is not a training domain:
        :func:`~bimix_bayes.bayes.correlated_posterior.resolve_run_correlation`), and ``law.
        alpha_drift = "auto"`` (the exponent drifts unless the law has none or the data have
        model sizes: :func:`~bimix_bayes.bayes.spec.resolve_alpha_drift`). A fit saves this
        spec, so a saved fit never holds "auto".

        Examples
        --------
        >>> from bimix_bayes.data.simulate import simulate_default
        >>> BiMixModel().spec_for(simulate_default(seed=0))["likelihood"]["run_correlation"]
        False
        """
        given = self._given_settings()
        spec = {**self.spec}
        for section, key in _PER_DATASET:
            spec[section] = {**spec[section], key: given[key]}
        spec = resolve_run_correlation(spec, evaluation_only=bool(data.evaluation_only))
        return resolve_alpha_drift(spec, has_sizes=data.has_sizes)

    def check_data(self, data: MixtureData) -> None:
        """Refuse, before anything is compiled, data this model cannot fit: a design that
        cannot separate share from step effects, or domains the law cannot express (an
        evaluation set that is not a training domain, a zero own share, under BiMix).

        Examples
        --------
        >>> from bimix_bayes.data.simulate import simulate_default
        >>> BiMixModel().check_data(simulate_default(seed=0))  # fits: nothing happens
        """
        data.check_design()
        layout = CurveLayout.from_data(data, resolve_s_ref(self.spec, data))
        _check_law_fits_data(spec_law(self.spec), layout)

    def _given_settings(self) -> dict[str, Any]:
        """The per-dataset settings as given: the spec's values, unless one is what the last
        fit decided from the value given then ("auto")."""
        out = {}
        for section, key in _PER_DATASET:
            current = self.spec[section][key]
            decided = key in self._decided and current == self._decided[key]
            out[key] = self._given[key] if decided else current
        return out

    @property
    def model_config(self) -> dict[str, Any]:
        """The model part of the spec: law, data, priors, likelihood."""
        return {k: self.spec[k] for k in ("law", "data", "priors", "likelihood")}

    @property
    def sampler_config(self) -> dict[str, Any]:
        """The sampler part of the spec: sampler settings and diagnostic thresholds."""
        return {k: self.spec[k] for k in ("sampler", "diagnostics")}

    def build_model(self, data: MixtureData) -> pm.Model:
        """The PyMC model for ``data`` (for inspection or custom sampling)."""
        spec = self.spec_for(data)
        return build_pymc_model(CurveLayout.from_data(data, resolve_s_ref(spec, data)), spec)

    def prior_model(self, data: MixtureData) -> pm.Model:
        """The same model with every parameter sampled directly, for prior draws
        (``pm.sample_prior_predictive``): the default step-law coordinates are flat variables
        with the priors as potentials, which PyMC cannot draw from."""
        spec = self.spec_for(data)
        direct = {**spec["sampler"], "step_coordinates": "floor_reducible"}
        return BiMixModel({**spec, "sampler": direct}).build_model(data)

    # ------------------------------------------------------------------ sampling
    def fit(
        self,
        data: MixtureData,
        *,
        seed: int = 0,
        progress_bar: bool | None = None,
        retry: bool = False,
        warn: bool = True,
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
            (:func:`safer_sampler`: smaller steps, longer warm-up, at least 2000 draws per
            chain, two to four times the draws when the chains mixed slowly, as the failed
            ESS asks), say so with a
            :class:`RetryWarning`, and keep the refit (its spec records the settings used).
        warn
            Emit a :class:`~bimix_bayes.bayes.diagnostics.FitWarning` with the diagnostics'
            report when the (kept) fit failed them. Callers that print
            ``diagnostics_.report()`` themselves pass False, so that the report is not shown
            twice (the commands ``bimix fit`` and ``bimix demo``).
        """
        self._given = self._given_settings()
        self.spec = self.spec_for(data)
        self._decided = {key: self.spec[section][key] for section, key in _PER_DATASET}
        self._warn_if_runs_cannot_measure_luck(data)
        idata = self._fit_once(data, seed, progress_bar)
        safer = safer_sampler(self.spec["sampler"], self.diagnostics_.problems) if retry else None
        if safer is not None and not self.diagnostics_.passed:
            first = self.diagnostics_
            changed = ", ".join(f"{k} {self.spec['sampler'][k]} -> {v}" for k, v in safer.items())
            warnings.warn(
                f"the fit failed its diagnostics ({'; '.join(first.problems)}); refitting once "
                f"with safer sampler settings ({changed})",
                RetryWarning,
                stacklevel=2,
            )
            first_seconds = idata.attrs.get("wall_seconds")
            self.spec = merge_spec({**self.spec, "sampler": {**self.spec["sampler"], **safer}})
            idata = self._fit_once(data, seed, progress_bar)
            idata.attrs["first_attempt"] = first.to_json()
            if first_seconds is not None:
                idata.attrs["first_attempt_seconds"] = round(float(first_seconds), 3)
        if warn:
            self.diagnostics_.warn_if_failed()
        return idata

    def _warn_if_runs_cannot_measure_luck(self, data: MixtureData) -> None:
        """Before sampling: warn when the law fits every run's mean exactly, so that nothing
        measures the run effects' sd (:mod:`bimix_bayes.bayes.identifiability`)."""
        data.check_design()
        layout = CurveLayout.from_data(data, resolve_s_ref(self.spec, data))
        _check_law_fits_data(spec_law(self.spec), layout)
        warn_if_run_effects_unidentified(
            spec_law(self.spec),
            layout,
            run_offset=self.spec["likelihood"]["run_offset"],
            stacklevel=4,
        )

    def _fit_once(
        self, data: MixtureData, seed: int, progress_bar: bool | None
    ) -> az.InferenceData:
        """One fit under ``self.spec`` (diagnosed, not warned about)."""
        data.check_design()
        t_start = time.perf_counter()
        layout = CurveLayout.from_data(data, resolve_s_ref(self.spec, data))
        _check_law_fits_data(spec_law(self.spec), layout)
        if layout.has_sizes and has_checkpoint_shocks(self.spec):  # before nutpie's fallback
            raise SpecError(
                "likelihood.checkpoint_sd_scale > 0 is not available for data with model sizes "
                "(--size-col); set it to 0 in the spec"
            )
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
        self.diagnostics_ = diagnose(idata, self.spec["diagnostics"], self.spec["sampler"])
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
        """The compiled model with this data swapped in and its chains' start points jittered by
        ``sampler.init_jitter`` (:func:`~bimix_bayes.bayes.graph.jittered_start`); None (and a
        warning) if nutpie fails.

        Only installing and compiling fall back to PyMC's NUTS; errors while sampling surface.
        """
        spec = resolve_run_correlation(self.spec, evaluation_only=layout.has_evaluation_only)
        spec = resolve_alpha_drift(spec, has_sizes=layout.has_sizes)
        graph_part = {k: spec[k] for k in ("law", "priors", "likelihood", "size", "schedule")}
        graph_part["sampler"] = {k: spec["sampler"][k] for k in GRAPH_SAMPLER_KEYS}
        # grouping only changes the graph with correlated effects (and keys the compile cache)
        grouped = grouping(layout, spec)
        try:
            compiled = compiled_nutpie(
                json.dumps(graph_part, sort_keys=True),
                len(layout.domains),
                len(layout.training_domains),
                layout.has_sizes,
                grouped,
                layout.has_schedule,
                layout.checkpoint_slots if has_checkpoint_shocks(spec) else 2,
            )
        except Exception as exc:  # an install or compiler problem: fall back, loudly
            warnings.warn(
                f"nutpie could not compile this model ({type(exc).__name__}: {exc}); falling "
                "back to PyMC's NUTS (slower). Run with --debug for the traceback.",
                SamplerFallbackWarning,
                stacklevel=3,
            )
            return None
        patterns = run_patterns(layout, spec)
        values = {
            "noise_decay": layout.grid_noise_decay(spec["likelihood"]["early_noise_power"]),
            "run_n": layout.run_design()[0],
            "cell_z": layout.z,
            "run_pattern": patterns.member,
            "pattern_n": patterns.n,
            "pattern_sx": patterns.sx,
            "pattern_sxx": patterns.sxx,
        }
        names = data_names(
            spec,
            len(layout.domains),
            sizes=layout.has_sizes,
            grouped=grouped,
            schedule=layout.has_schedule,
            evaluation_only=layout.has_evaluation_only,
        )
        if "cross_basis" in names:  # sampler.centre_cross
            values["cross_basis"] = layout_cross_basis(layout, spec_law(spec))
        compiled = compiled.with_data(**{k: values.get(k, getattr(layout, k, None)) for k in names})
        start = jittered_start(compiled.initial_point_func, spec["sampler"]["init_jitter"])
        return dataclasses.replace(compiled, initial_point_func=start)

    def _sampler_settings(self) -> dict[str, Any]:
        """The settings both backends take under the same names."""
        cfg = self.spec["sampler"]
        keys = ("draws", "tune", "chains", "target_accept")
        return {**{k: cfg[k] for k in keys}, "cores": cfg["cores"] or None}

    def _sample_nutpie(self, compiled: Any, seed: int, progress_bar: bool) -> az.InferenceData:
        import nutpie

        sampler = nutpie.sample(
            compiled,
            **self._sampler_settings(),
            seed=seed,
            progress_bar=progress_bar,
            low_rank_modified_mass_matrix=self.spec["sampler"]["low_rank_mass_matrix"],
            save_warmup=False,
            blocking=False,
        )
        try:
            return sampler.wait()
        except KeyboardInterrupt:
            # nutpie's blocking call would return the draws made so far (NaN-padded) as if the
            # run had finished, and the fit would be checked, retried and saved; stop instead
            sampler.cancel()
            raise

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
        post = idata.posterior.assign_coords(_coords(idata.posterior, layout))
        keep = [v for v in post.data_vars if not (v.startswith("loglik") or v.endswith("__"))]
        post = post[keep]
        law = spec_law(self.spec)
        post.attrs["law"] = law.name
        post.attrs.update(noise_attrs(self.spec, layout.noise_x0))  # a noise that falls
        post["beta"] = np.exp(post["log_beta"])
        if "log_alpha" in law.population:  # BiMix's paper coefficients (cross effects aside)
            post["alpha"] = np.exp(post["log_alpha"])
            # with a schedule the law's step is the learning-rate area S1 (peak-rate steps)
            step_ref = layout.s_ref
            if data.schedule is not None:
                step_ref = float(data.schedule.areas([layout.s_ref])[0][0])
            paper = IdentifiableParams(
                log_floor=post["log_floor"],
                log_reducible=post["log_reducible"],
                alpha=post["alpha"],
                beta=post["beta"],
                s_ref=step_ref,
            ).to_paper()
            for name in ("A", "B", "C"):
                post[name] = (post["alpha"].dims, np.asarray(getattr(paper, name)))
        sums = cond = None  # the residual sums serve the log likelihood and the run offsets
        lik = self.spec["likelihood"]
        by_size = self.spec["size"]["run_size_offset"] != "none"
        by_size = layout.has_sizes and lik["run_offset"] and by_size
        # a checkpoint's noise shared by its domains (without run offsets the run's level is
        # part of the noise sigma measures, which the deviations from a run's mean leave out)
        noise_shared = lik["noise_correlation"] == "residual" and lik["run_offset"]
        cell_means = by_size or noise_shared  # what the residuals' cell means feed
        if not is_correlated(self.spec, len(layout.domains)):
            sums = curve_residual_sums(
                post, layout, with_slope=bool(lik["run_slope"]), cell_means=cell_means
            )
            cond = sums.conditional(layout, family=lik["family"], nu=lik["nu"])
        log_lik = pointwise_log_likelihood(post, layout, self.spec, sums=sums)
        post["run_offset"] = self._run_offsets(post, layout, seed, cond=cond)
        if cond is not None and lik["run_offset"] and lik["new_run_correlation"] == "residual":
            # how a new run's offsets move together (bimix_bayes.bayes.residual_correlation)
            means = np.full(
                (*cond["mean"].shape[:2], len(layout.runs), len(layout.domains)), np.nan
            )
            means[:, :, layout.curve_run, layout.curve_domain] = cond["mean"]
            post.attrs.update(correlation_attr(residual_correlation(means)))
        if cell_means:
            if sums is None:  # correlated run effects: the residuals were not summed yet
                sums = curve_residual_sums(post, layout, cell_means=True)
            # the checkpoint noise two domains share (bimix_bayes.bayes.checkpoint_noise)
            noise, estimated = noise_correlation(
                layout,
                sums.mean_residual,
                sums.mean_weight,
                with_slope=bool(lik["run_slope"]),
                with_pairs=True,
            )
            if noise_shared:
                post.attrs.update(noise_correlation_attr(noise, estimated))
            if by_size:  # how a mixture's offsets move between sizes (run_size_offsets)
                attr = _run_size_attr(post, layout, sums, noise, lik["family"], lik["nu"])
                post.attrs.update(attr)
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
        if data.has_sizes:
            constant["size"] = ("obs", obs["size"].to_numpy(dtype=float))
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
                "data_runs_named_by_mixture": int(data.runs_named_by_mixture),
                "s_ref": layout.s_ref,
                **(
                    {"size_ref": layout.size_ref, "size_kind": str(data.size_kind)}
                    if layout.has_sizes
                    else {}
                ),
                **({SCHEDULE_ATTR: data.schedule.to_json()} if data.schedule is not None else {}),
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        return out

    def _run_offsets(
        self,
        post: xr.Dataset,
        layout: CurveLayout,
        seed: int,
        *,
        cond: dict[str, Any] | None = None,
    ) -> xr.DataArray:
        """One draw of each observed run's offsets from their conditional, per posterior draw.

        Where a run has no curve of a domain (a zero share dropped, a missing evaluation), its
        offset is drawn as a new run's: from ``Normal(0, tau[d])`` without correlated effects
        (what the conditional is with no data; not conditioned on the run's other domains
        through the residual correlation of :mod:`~bimix_bayes.bayes.residual_correlation`),
        from the correlation with the run's other domains with them. Saved posteriors hold no
        NaN (loading refuses them).
        """
        rng = np.random.default_rng([seed, 1])
        lik = self.spec["likelihood"]
        if is_correlated(self.spec, len(layout.domains)):
            grid = observed_run_draws(post, layout, self.spec, rng)[0]
        else:
            if cond is None:
                sums = curve_residual_sums(post, layout, with_slope=bool(lik["run_slope"]))
                cond = sums.conditional(layout, family=lik["family"], nu=lik["nu"])
            u, _ = draw_offsets(cond, rng, cond["mean"].shape)
            chains, draws = cond["mean"].shape[:2]
            shape = (chains, draws, len(layout.runs), len(layout.domains))
            tau = np.zeros((chains, draws, shape[-1]))
            if "tau" in post:
                tau = post["tau"].transpose("chain", "draw", "domain").to_numpy()
            grid = rng.standard_normal(shape) * tau[:, :, None, :]  # runs' unobserved domains
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


def pointwise_log_likelihood(
    post: xr.Dataset, layout: CurveLayout, spec: Spec, *, sums: CurveSums | None = None
) -> xr.Dataset:
    """Pointwise log likelihood, in numpy, of the data in ``layout`` under the posterior draws
    ``post``: ``loss_run`` per run (the unit of leave-one-run-out LOO: the decision is about new
    runs) and, without correlated run effects, ``loss_curve`` per (run, domain) curve. The run
    effects are integrated out as in the PyMC graph (Woodbury per run when they are correlated
    across domains, per curve otherwise), so its sum equals the graph's log likelihood.
    ``sums``: the posterior's :func:`curve_residual_sums` (independent run effects), where the
    caller has them already. ``likelihood.run_correlation = "auto"`` is decided for the layout.
    """
    spec = resolve_run_correlation(spec, evaluation_only=layout.has_evaluation_only)
    lik = spec["likelihood"]
    coords = {"chain": post.chain, "draw": post.draw}
    dims = ("chain", "draw")
    if is_correlated(spec, len(layout.domains)):
        per_run = run_log_likelihoods(post, layout, spec)
        return xr.Dataset(
            {"loss_run": ((*dims, "run"), per_run)}, coords={**coords, "run": list(layout.runs)}
        )
    if sums is None:
        sums = curve_residual_sums(post, layout, with_slope=bool(lik["run_slope"]))
    curve_ll = sums.log_likelihood(layout, family=lik["family"], nu=lik["nu"])
    return xr.Dataset(
        {
            "loss_run": ((*dims, "run"), layout.by_run(curve_ll).sum(axis=-1)),
            "loss_curve": ((*dims, "curve"), curve_ll),
        },
        coords={**coords, "run": list(layout.runs), "curve": layout.curve_labels()},
    )
