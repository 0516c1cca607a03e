"""The forecast core: posterior predictive draws of loss for any grid of (mixture, step).

Two kinds of target (:mod:`~bimix_bayes.bayes.targets`):

* an **observed run** continued to more steps: its own run offset is drawn, per posterior draw,
  from its conditional given the run's observed checkpoints;
* a **new mixture** (never trained): a fresh run offset is drawn, so the interval carries the
  run-to-run variation the model has seen.

In a fit of several model sizes a target at a size the fit has not seen it at (an observed
mixture at a new size, any new mixture) also draws the luck of that training run, a fresh run x
size offset (:mod:`~bimix_bayes.bayes.run_size_offsets`).

``kind="predictive"`` (default) forecasts a new measurement (run effects, checkpoint noise,
correlated across domains as the fit's checkpoints show
(:mod:`~bimix_bayes.bayes.checkpoint_noise`), and, beyond the fitted steps, the error all runs
share (:mod:`~bimix_bayes.bayes.discrepancy`) included); ``kind="law"`` gives the credible band
of the law's curve itself (none of those). Per domain, and as a weighted average over domains
(computed per draw, then summarised).

:func:`forecast_draws` gives the draws over named dimensions, :func:`summarise_draws` the tidy
table of them, and :func:`predict` both in one step (chunk by chunk, so memory stays bounded).

Examples
--------
>>> draws = forecast_draws(idata, [4e4], mixtures=new_mixtures)
>>> draws.dims
('chain', 'draw', 'mixture', 'step', 'domain')
>>> df = predict(idata, steps=[4e4], mixtures=new_mixtures, prob=(0.5, 0.9))
>>> df.columns[:6].tolist()
['mixture', 'source', 'step', 'domain', 'mean', 'median']
>>> df.equals(summarise_draws(draws, prob=(0.5, 0.9)))
True
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bimix_bayes.bayes.checkpoint_noise import correlated_normals, stored_noise_correlation
from bimix_bayes.bayes.checkpoints import CHECKPOINT_Z, forecast_shocks
from bimix_bayes.bayes.discrepancy import (
    ExtrapolationWarning,
    doublings_outside,
    extrapolation_note,
    shared_bend,
)
from bimix_bayes.bayes.law_params import (
    fit_schedule,
    fit_step_covariates,
    posterior_law,
    posterior_params,
)
from bimix_bayes.bayes.noise import fit_noise_variance
from bimix_bayes.bayes.persistence import data_from_idata, diagnostics_from_idata, spec_from_idata
from bimix_bayes.bayes.predictive_density import log_predictive_density
from bimix_bayes.bayes.run_size_offsets import fresh_offset_factors, stored_run_size_offsets
from bimix_bayes.bayes.sizes import (
    SizeExtrapolationWarning,
    fitted_sizes,
    size_doublings_outside,
    size_label,
    size_offset,
)
from bimix_bayes.bayes.streams import KeyedStreams, step_key, target_keys
from bimix_bayes.bayes.targets import domain_weights, run_effects, target_shares
from bimix_bayes.data.labels import NEW, OBSERVED, interval_columns, long_table
from bimix_bayes.data.loaders import size_count, step_counts
from bimix_bayes.data.mixture_input import mixture_frame
from bimix_bayes.laws.registry import Law

__all__ = [
    "DRAW_DIMS",
    "NEW",
    "OBSERVED",
    "forecast_draws",
    "interval_columns",
    "log_predictive_density",
    "predict",
    "summarise_draws",
]

#: Dimensions of forecast draws, in order.
DRAW_DIMS = ("chain", "draw", "mixture", "step", "domain")
_CHUNK_VALUES = 4_000_000  # draws x steps x domains x mixtures handled at once

Kind = Literal["predictive", "law"]


def forecast_draws(
    idata: az.InferenceData,
    steps: Sequence[float | str] | np.ndarray | float | str,
    *,
    mixtures: pd.DataFrame | pd.Series | None = None,
    runs: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    kind: Kind = "predictive",
    seed: int = 0,
    size: float | None = None,
) -> xr.DataArray:
    """Draws of the loss at every (target, step), per domain and averaged over domains.

    Parameters
    ----------
    idata
        A fit from :meth:`bimix_bayes.bayes.model.BiMixModel.fit` or :func:`~bimix_bayes.load_fit`.
    steps
        Steps (or tokens, as in the fitted data), e.g. beyond the last observed checkpoint:
        numbers, or text with a suffix (``"32k"``, ``"40B"``).
    mixtures
        New mixtures: one row per mixture, a column per domain, named by the index or by a
        ``name``/``mixture``/``run`` column (a table from ``pd.read_csv``; see
        :func:`~bimix_bayes.data.mixture_input.mixture_frame`), or a dict: ``{domain: share}``
        for one mixture, ``{name: {domain: share}}`` for several.
    runs
        Observed runs to continue. With neither ``mixtures`` nor ``runs``: every observed run.
    weights
        Domain weights of the average (default: the plain mean over evaluation domains).
    kind
        ``"predictive"`` (a new measurement) or ``"law"`` (the BiMix curve, no run effects).
    seed
        Seed of the predictive draws (the same seed gives the same draws as :func:`predict`).
    size
        The model size (parameters, as in the fitted data) to forecast, for a fit of data with
        model sizes (required there, refused otherwise): any size, trained or not. An observed
        run (a mixture) keeps its run effects at every size; at a size it was not trained at,
        and for a new mixture, a fresh run x size offset is added (the luck of that training
        run, :mod:`~bimix_bayes.bayes.run_size_offsets`).

    Returns
    -------
    xarray.DataArray
        ``loss`` over ``DRAW_DIMS`` (chain, draw, mixture, step, domain); coordinate ``source``
        on ``mixture`` (``OBSERVED`` or ``NEW``, observed runs first); the last ``domain`` is the
        average (``ALL_DOMAINS`` or, with ``weights``, ``WEIGHTED_DOMAINS``): take it with
        ``draws.isel(domain=-1)`` and the domains with ``draws.isel(domain=slice(0, -1))``
        (``draws.mean("domain")`` would average the average in). Domains an observed
        run gave no share (and an average that needs them) are NaN. ``attrs``: ``kind``,
        ``seed``, ``family`` (of the likelihood) and ``fit_passed`` (False, with a
        :class:`~bimix_bayes.bayes.diagnostics.FitWarning`, when the fit failed its diagnostics).

    Examples
    --------
    >>> draws = forecast_draws(idata, [1e4, 4e4], mixtures=new_mixtures, runs=["mix000"])
    >>> dict(draws.sizes)
    {'chain': 2, 'draw': 200, 'mixture': 3, 'step': 2, 'domain': 6}
    >>> draws["source"].to_numpy().tolist()
    ['observed run', 'new mixture', 'new mixture']
    >>> str(draws["domain"][-1].item())
    '(mean of domains)'
    """
    forecast = _prepare(idata, steps, mixtures, runs, weights, kind, seed, size)
    return _joined(list(forecast.chunks()))


def summarise_draws(draws: xr.DataArray, prob: Sequence[float] = (0.5, 0.9)) -> pd.DataFrame:
    """The tidy table of forecast draws: one row per (mixture, step, domain).

    Parameters
    ----------
    draws
        From :func:`forecast_draws` (or the ``predictions`` group attached by :func:`predict`).
    prob
        Probabilities of the central intervals (``lower_90``/``upper_90`` columns for 0.9).

    Returns
    -------
    pandas.DataFrame
        Columns ``mixture, source, step, domain, mean, median, sd`` and the interval bounds,
        over the draws of all chains. Under a Student-t predictive (``attrs`` ``kind`` and
        ``family``) the loss has no finite mean: ``mean`` and ``sd`` are NaN (use the median
        and quantiles). ``attrs`` keeps ``fit_passed`` and ``kind`` of the draws.

    Examples
    --------
    >>> draws = forecast_draws(idata, [4e4], mixtures=new_mixtures, kind="law")
    >>> table = summarise_draws(draws, prob=(0.9,))
    >>> table.columns.tolist()
    ['mixture', 'source', 'step', 'domain', 'mean', 'median', 'sd', 'lower_90', 'upper_90']
    >>> len(table)  # 2 mixtures x 1 step x (5 domains and their mean)
    12
    """
    probs = _probabilities(prob)
    attrs = draws.attrs
    values = draws.transpose(*DRAW_DIMS).to_numpy()
    heavy_tails = attrs.get("kind") == "predictive" and attrs.get("family") == "student_t"
    stats = _summarise(values.reshape(-1, *values.shape[2:]), probs, finite_mean=not heavy_tails)
    labels = {dim: draws[dim].to_numpy() for dim in DRAW_DIMS[2:]}
    out = long_table(labels, source=draws["source"].to_numpy()[:, None, None], **stats)
    out.insert(1, "source", out.pop("source"))
    keys = ("fit_passed", "kind", "extrapolation", "size")
    out.attrs.update({k: attrs[k] for k in keys if k in attrs})
    return out


def predict(
    idata: az.InferenceData,
    steps: Sequence[float | str] | np.ndarray | float | str,
    *,
    mixtures: pd.DataFrame | pd.Series | None = None,
    runs: Sequence[str] | None = None,
    prob: Sequence[float] = (0.5, 0.9),
    weights: Mapping[str, float] | None = None,
    kind: Kind = "predictive",
    seed: int = 0,
    attach: bool = False,
    size: float | None = None,
) -> pd.DataFrame:
    """Forecast the loss at every (target, step), per domain and averaged over domains.

    :func:`summarise_draws` of :func:`forecast_draws`, made chunk by chunk over the targets so
    that memory stays bounded however many mixtures are asked for.

    Parameters
    ----------
    idata, steps, mixtures, runs, weights, kind, seed, size
        As :func:`forecast_draws`.
    prob
        Probabilities of the central intervals (``lower_90``/``upper_90`` columns for 0.9).
    attach
        Also store the draws (float32) as the ``predictions`` group of ``idata``, replacing
        any (variable ``loss`` over ``DRAW_DIMS``; ``attrs`` ``kind`` and ``seed``).

    Returns
    -------
    pandas.DataFrame
        As :func:`summarise_draws`: columns ``mixture, source, step, domain, mean, median, sd``
        and the interval bounds. ``attrs["fit_passed"]`` is False (and a
        :class:`~bimix_bayes.bayes.diagnostics.FitWarning` is raised) when the fit failed its
        diagnostics.

    Examples
    --------
    >>> table = predict(idata, steps=[4e4], runs=["mix000"])
    >>> table[["mixture", "source", "domain"]].iloc[-1].tolist()
    ['mix000', 'observed run', '(mean of domains)']
    >>> "predictions" in idata.groups()  # attaching is opt-in (attach=True)
    False
    """
    probs = _probabilities(prob)
    forecast = _prepare(idata, steps, mixtures, runs, weights, kind, seed, size)
    tables, kept = [], []
    for draws in forecast.chunks():
        tables.append(summarise_draws(draws, probs))
        if attach:
            kept.append(draws.astype(np.float32))
    out = pd.concat(tables, ignore_index=True)
    out.attrs = dict(tables[0].attrs)
    if attach:
        if "predictions" in idata.groups():
            del idata.predictions
        group = xr.Dataset(
            {"loss": _joined(kept).drop_attrs(deep=False)}, attrs={"kind": kind, "seed": seed}
        )
        idata.add_groups(predictions=group)
    return out


def _joined(chunks: list[xr.DataArray]) -> xr.DataArray:
    """Chunks of draws joined along ``mixture``."""
    joined = xr.concat(chunks, dim="mixture", coords="minimal", compat="override", join="exact")
    return _ordered(joined, chunks[0].attrs)


def _ordered(loss: xr.DataArray, attrs: dict[str, Any]) -> xr.DataArray:
    """``loss`` with its coordinates in the order ``DRAW_DIMS``, ``source``."""
    coords = {name: loss[name].variable for name in (*DRAW_DIMS, "source")}
    return xr.DataArray(loss.data, coords, DRAW_DIMS, name="loss", attrs=attrs)


def _probabilities(prob: Sequence[float]) -> list[float]:
    probs = [float(p) for p in prob]
    if not all(0 < p < 1 for p in probs):
        raise ValueError(f"interval probabilities must lie in (0, 1), got {probs}")
    return probs


@dataclass(frozen=True)
class _Forecast:
    """A forecast ready to draw, over named dimensions; :meth:`chunks` draws it."""

    law: Law
    params: dict[str, np.ndarray]  # the law's parameters over (chain, draw, domain[, training])
    sigma: xr.DataArray  # (chain, draw, domain)
    own_share: xr.DataArray  # (mixture, domain); 1 where the law is undefined (see `outside`)
    train_shares: np.ndarray  # (mixture, training domain)
    outside: xr.DataArray  # (mixture, domain): a zero share where the law is undefined
    x: xr.DataArray  # (step): centred log step
    weights: xr.DataArray  # (domain): weights of the average
    labels: list[str]  # the domains and the average's label
    effects: xr.Dataset | None  # run effects over (chain, draw, mixture, domain); None: law
    # errors every run shares over (chain, draw, step, domain): beyond the fitted steps
    # (discrepancy) and each checkpoint's shock (checkpoints)
    bend: xr.DataArray | None
    # (mixture, step): the key of each checkpoint's noise (streams.step_key), drawn from
    # random stream [seed, 3] keyed by it, so a target's draws do not depend on the others
    noise_keys: np.ndarray
    seed: int
    attrs: dict[str, Any]
    z: float | None = None  # log(N / N_ref) of a fit with model sizes
    u: np.ndarray | None = None  # (step): the annealing covariate of a fit with a schedule
    # (chain, draw, step, domain): the noise variance factor of a noise that falls with the step
    noise_var: xr.DataArray | None = None
    # (domain, domain): the checkpoint noise's correlation across domains; None: independent
    noise_corr: np.ndarray | None = None

    def chunks(self) -> Iterator[xr.DataArray]:
        """The draws, a few targets at a time (each target's noise from its own stream)."""
        sizes = self.sigma.sizes
        n_values = sizes["chain"] * sizes["draw"] * self.x.size * sizes["domain"]
        n_values *= max(1, self.train_shares.shape[1]) if self.law.cross_domain else 1
        chunk = max(1, _CHUNK_VALUES // n_values)
        for start in range(0, self.own_share.sizes["mixture"], chunk):
            yield self._draw(slice(start, start + chunk))

    def _draw(self, targets: slice) -> xr.DataArray:
        w = self.weights
        outside = self.outside.isel(mixture=targets)
        own = self.own_share.isel(mixture=targets)
        # (chain, draw, mixture, step, domain[, training domain])
        params = {
            k: v[:, :, None, None, :, :] if k == "cross" else v[:, :, None, None, :]
            for k, v in self.params.items()
        }
        mu = self.law.log_loss(
            self.train_shares[targets][None, None, :, None, None, :],
            own.to_numpy()[None, None, :, None, :],
            self.x.to_numpy()[None, None, None, :, None],
            params,
            z=self.z,
            u=None if self.u is None else self.u[None, None, None, :, None],
        )
        coords = {k: self.sigma[k] for k in ("chain", "draw", "domain")}
        mu = xr.DataArray(
            mu,
            dims=DRAW_DIMS,
            coords={**coords, "mixture": own["mixture"], "step": self.x["step"]},
        )
        if self.effects is not None:
            run = self.effects.isel(mixture=targets)
            # one checkpoint's noise, correlated across its domains (DRAW_DIMS ends in domain)
            z = xr.DataArray(
                correlated_normals(
                    KeyedStreams(self.seed, 3, self.noise_keys[targets]), mu.shape, self.noise_corr
                ),
                dims=DRAW_DIMS,
            )
            noise = self.sigma if self.noise_var is None else self.sigma * np.sqrt(self.noise_var)
            mu = mu + run["offset"] + z * (run["scale"] * noise)
            mu = mu + run["slope"] * self.x  # zero without the random-slope option
        if self.bend is not None:
            mu = mu + self.bend  # the same for every mixture: shared by all runs
        loss = np.exp(mu).where(~outside)
        average = (loss * w).where(w > 0, 0.0).sum("domain", skipna=False)
        average = average.where(~outside.isel(domain=w.to_numpy() > 0).any("domain"))
        loss = xr.concat([loss, average.expand_dims(domain=[self.labels[-1]], axis=-1)], "domain")
        return _ordered(loss.assign_coords(domain=self.labels), self.attrs)


def _prepare(
    idata: az.InferenceData,
    steps: Sequence[float] | np.ndarray,
    mixtures: pd.DataFrame | pd.Series | None,
    runs: Sequence[str] | None,
    weights: Mapping[str, float] | None,
    kind: str,
    seed: int,
    size: float | None = None,
) -> _Forecast:
    """Check the request, warn about a failed fit and zero shares, and draw the run effects."""
    if kind not in ("predictive", "law"):
        raise ValueError(f"kind must be 'predictive' or 'law', got {kind!r}")
    steps_arr = step_counts(steps)
    size = size_count(size)
    if steps_arr.size == 0 or not np.all(np.isfinite(steps_arr) & (steps_arr > 0)):
        raise ValueError(f"steps must be positive finite numbers, got {list(steps_arr)}")
    diag = diagnostics_from_idata(idata)
    diag.warn_if_failed("forecasting", stacklevel=4)  # points at the caller of predict
    data = data_from_idata(idata)
    z = size_offset(idata, data, size)
    post = idata.posterior
    domains = [str(d) for d in post["domain"].to_numpy()]
    if mixtures is not None:
        mixtures = mixture_frame(mixtures)
    law = posterior_law(post)
    targets = target_shares(data, domains, mixtures, runs, law)
    table, sources = targets.table, targets.sources
    w, avg_label = domain_weights(domains, weights)
    # Each target's draws come from streams keyed by it (bimix_bayes/bayes/streams.py): a
    # mixture's forecast does not depend on what else is asked; the observed curves' effects
    # from one stream over all of the fit's curves.
    keys = target_keys(sources, [str(n) for n in table.index], table.to_numpy(float))
    effects = None
    if kind == "predictive":
        fresh, observed = KeyedStreams(seed, 2, keys), np.random.default_rng([seed, 8])
        effects = run_effects(idata, data, table, sources, fresh, observed)
    if effects is not None and size is not None:  # a run at a size it was not trained at
        effects = _with_run_size_offsets(effects, post, data, table, sources, size, seed, keys)
    shares = xr.DataArray(
        targets.own,
        dims=("mixture", "domain"),
        coords={"mixture": list(table.index), "source": ("mixture", sources)},
    )
    train_shares = targets.training  # (targets, 0) unless a cross-domain law reads them all
    # An observed run may give a domain no share (its observations were dropped under
    # zero_policy="drop"): BiMix says nothing there, so those cells (and an average that
    # needs them) are NaN rather than infinite. A law finite at zero shares forecasts them.
    outside = (shares == 0) & (not law.finite_at_zero)  # (never an evaluation-only domain)
    if outside.any():
        rows, cols = np.nonzero(outside.to_numpy())
        warnings.warn(
            f"{len(rows)} (run, domain) pair(s) have a zero share, where BiMix is undefined; "
            "their forecasts are NaN: "
            + ", ".join(
                f"{table.index[i]}/{domains[j]}" for i, j in zip(rows[:5], cols[:5], strict=True)
            ),
            stacklevel=3,
        )
    spec = spec_from_idata(idata)
    family = spec["likelihood"]["family"]
    fitted = data.observations["step"].to_numpy(dtype=float)
    note = extrapolation_note(
        steps_arr,
        first=fitted.min(),
        last=fitted.max(),
        unit=str(idata.attrs.get("data_volume", "steps")),
    )
    if note:
        warnings.warn(note, ExtrapolationWarning, stacklevel=3)
    x, u = fit_step_covariates(idata.attrs, steps_arr)
    _warn_if_past_the_schedule(idata, steps_arr)
    bend = None
    if kind == "predictive" and spec["discrepancy"]["extrapolation"]:
        settings = spec["discrepancy"]
        h = doublings_outside(steps_arr, first=fitted.min(), last=fitted.max())
        omega, rho = settings["sd_per_doubling"], settings["domain_correlation"]
        bend = _shared_error(h, omega, rho, post, len(domains), seed, 4)
        h_size = size_doublings_outside(idata, size)
        if h_size > 0:  # the error every run shares at a size not trained
            h = np.full(len(steps_arr), h_size)
            omega, rho = settings["size_sd_per_doubling"], settings["size_domain_correlation"]
            bend = bend + _shared_error(h, omega, rho, post, len(domains), seed, 5)
    if kind == "predictive" and CHECKPOINT_Z in post:  # likelihood.checkpoint_sd_scale > 0
        by_step = KeyedStreams(seed, 6, [step_key(b"shock", s) for s in steps_arr])
        shocks = forecast_shocks(post, np.unique(fitted), steps_arr, by_step)
        bend = shocks if bend is None else bend + shocks
    forecast = _Forecast(
        law=law,
        params=posterior_params(post, law),
        sigma=post["sigma"],
        own_share=shares.where(~outside, 1.0),
        train_shares=train_shares,
        outside=outside,
        x=xr.DataArray(x, dims="step", coords={"step": steps_arr}),
        weights=xr.DataArray(w, dims="domain"),
        labels=[*domains, avg_label],
        effects=effects,
        bend=bend,
        noise_keys=np.array([[step_key(k, s) for s in steps_arr] for k in keys], dtype=object),
        seed=seed,
        attrs={
            "kind": kind,
            "seed": seed,
            "family": family,
            "fit_passed": diag.passed,
            "extrapolation": note or "",
            **({} if size is None else {"size": float(size)}),
        },
        z=z,
        u=u,
        noise_var=None if kind == "law" else fit_noise_variance(post, x),
        noise_corr=None if kind == "law" else stored_noise_correlation(post, len(domains)),
    )
    if size is not None:
        _warn_if_loss_rises_with_size(forecast, idata, float(size))
    return forecast


def _warn_if_past_the_schedule(idata: az.InferenceData, steps: np.ndarray) -> None:
    """Warn when a forecast step lies after the end of the fit's learning-rate schedule: the
    law reads the proxies' schedule held at its final rate there, not the schedule a longer
    run would be trained with."""
    schedule = fit_schedule(idata.attrs)
    if schedule is None or not schedule.decays or not (steps > schedule.end).any():
        return
    warnings.warn(
        f"step {steps.max():g} lies after the end of the fit's learning-rate schedule "
        f"({schedule.end:g}): the forecast reads it held at its final rate there, not the "
        "schedule a longer run would have (its own warm-up and decay); the annealing gain of "
        "a run decayed to that step is not in it",
        ExtrapolationWarning,
        stacklevel=4,
    )


def _warn_if_loss_rises_with_size(
    forecast: _Forecast, idata: az.InferenceData, size: float
) -> None:
    """Warn when, beyond the largest fitted size, the law's mean loss at ``size`` is above its
    mean loss at that largest size for some domain (a larger model losing more: the fitted size
    slopes carried past where they hold; a new user read ``--size 7e12`` as a forecast).

    The law alone (no run effects, no shared error) at the same targets and steps, both sizes.
    """
    sizes = fitted_sizes(idata)
    if not sizes or size <= sizes[-1] * (1 + 1e-3):
        return
    law = dataclasses.replace(forecast, effects=None, bend=None, noise_var=None, noise_corr=None)
    largest = dataclasses.replace(law, z=float(np.log(sizes[-1] / float(idata.attrs["size_ref"]))))

    def mean_loss(f: _Forecast) -> xr.DataArray:
        return xr.concat([d.mean(("chain", "draw")) for d in f.chunks()], "mixture")

    rise = (mean_loss(law) / mean_loss(largest) - 1.0).isel(domain=slice(0, -1))  # no average
    worst = rise.max(("mixture", "step"), skipna=True)
    up = worst.where(worst > 1e-3, drop=True)
    if up.size == 0:
        return
    order = np.argsort(-up.to_numpy())
    listed = ", ".join(
        f"{up['domain'].to_numpy()[k]} (+{100 * float(up.to_numpy()[k]):.1f} %)" for k in order
    )
    warnings.warn(
        f"at size {size_label(size)} the law forecasts a higher loss than at the largest fitted "
        f"size {size_label(sizes[-1])} for {listed}: a larger model losing more is the fitted "
        "size slopes carried past where the data hold them, not a forecast; forecast sizes "
        "nearer the fitted ones, or fit larger proxies",
        SizeExtrapolationWarning,
        stacklevel=4,
    )


def _with_run_size_offsets(
    effects: xr.Dataset,
    post: xr.Dataset,
    data: Any,
    table: pd.DataFrame,
    sources: Sequence[str],
    size: float,
    seed: int,
    keys: Sequence[bytes],
) -> xr.Dataset:
    """``effects`` with each target's fresh run x size offset added where the fit has not seen
    it at ``size`` (a new mixture, or an observed one at a new size, its variance scaled by
    :func:`~bimix_bayes.bayes.run_size_offsets.fresh_offset_factors`), from random stream
    ``[seed, 7]`` keyed by each target's ``keys``; drawn on the Normal scale (not times a
    Student-t run scale, which would inflate its variance and thin its correlation)."""
    offsets = stored_run_size_offsets(post)
    if offsets is None:
        return effects
    domains = [str(d) for d in post["domain"].to_numpy()]
    factors = fresh_offset_factors(data, list(table.index), sources, domains, size)
    if not factors.any():
        return effects
    shape = (post.sizes["chain"], post.sizes["draw"], len(table))
    b = offsets.draw(shape, KeyedStreams(seed, 7, keys)) * np.sqrt(factors)
    return effects.assign(offset=effects["offset"] + xr.DataArray(b, dims=effects["offset"].dims))


def _shared_error(
    h: np.ndarray,
    omega: float,
    rho: float,
    post: xr.Dataset,
    n_domains: int,
    seed: int,
    stream: int,
) -> xr.DataArray:
    """Draws of an error shared by every run (:func:`~bimix_bayes.bayes.discrepancy.
    shared_bend`) over (chain, draw, step, domain), from random stream ``[seed, stream]``."""
    return xr.DataArray(
        shared_bend(
            h,
            n_domains,
            omega=omega,
            rho=rho,
            shape=(post.sizes["chain"], post.sizes["draw"]),
            rng=np.random.default_rng([seed, stream]),
        ),
        dims=("chain", "draw", "step", "domain"),
    )


def _summarise(loss: np.ndarray, probs: list[float], finite_mean: bool = True) -> dict:
    """Mean, median, sd and interval bounds over the first axis (the draws)."""
    qs = sorted({0.5, *[(1 - p) / 2 for p in probs], *[(1 + p) / 2 for p in probs]})
    quant = dict(zip(qs, np.quantile(loss, qs, axis=0), strict=True))
    if finite_mean:
        mean, sd = loss.mean(axis=0), loss.std(axis=0)
    else:
        mean = sd = np.full(loss.shape[1:], np.nan)
    out = {"mean": mean, "median": quant[0.5], "sd": sd}
    for p in probs:
        lo, hi = interval_columns(p)
        out[lo], out[hi] = quant[(1 - p) / 2], quant[(1 + p) / 2]
    return out
