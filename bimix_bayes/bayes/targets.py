"""What a forecast is about: its targets, the weights of the domain average, and run effects.

A target is an **observed run** continued to more steps, or a **new mixture** never trained.
Per posterior draw and domain each target has a run offset ``u``, a noise scale ``sqrt(W)``
(``W`` the Student-t variance factor; 1 under Normal noise) and, with the opt-in random slope,
a slope ``v`` (zero when the option is off). An observed run draws them from their conditional
given the run's checkpoints (:meth:`~bimix_bayes.bayes.likelihood.CurveSums.conditional`), a new
mixture fresh: ``u ~ N(0, tau^2)``, ``v ~ N(0, kappa^2)``, ``W ~ InvGamma(nu/2, nu/2)``.

Examples
--------
>>> table, sources = forecast_targets(data, list(data.domains), new_mixtures, runs=["mix000"])
>>> sources
['observed run', 'new mixture', 'new mixture']
>>> effects = run_effects(idata, data, table, sources, np.random.default_rng(0))
>>> effects["offset"].dims
('chain', 'draw', 'mixture', 'domain')
>>> bool((effects["slope"] == 0).all())  # the random-slope option is off in this fit
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bimix_bayes.bayes.correlated_posterior import (
    fresh_run_draws,
    is_correlated,
    observed_curve_marginals,
    observed_run_draws,
)
from bimix_bayes.bayes.likelihood import CurveLayout, curve_residual_sums, draw_offsets_and_slopes
from bimix_bayes.bayes.persistence import spec_from_idata
from bimix_bayes.bayes.residual_correlation import (
    correlated_fresh_offsets,
    stored_residual_correlation,
)
from bimix_bayes.bayes.spec import Spec
from bimix_bayes.bayes.streams import KeyedStreams
from bimix_bayes.data.labels import ALL_DOMAINS, NEW, OBSERVED, WEIGHTED_DOMAINS
from bimix_bayes.data.table import DataError, DataWarning, MixtureData, prediction_shares
from bimix_bayes.laws.registry import Law

__all__ = [
    "TargetShares",
    "domain_weights",
    "forecast_targets",
    "observed_conditional",
    "run_effects",
    "target_shares",
]


def forecast_targets(
    data: MixtureData,
    domains: Sequence[str],
    mixtures: pd.DataFrame | pd.Series | None,
    runs: Sequence[str] | None,
    *,
    allow_zero: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """Shares of every target (rows; observed runs first) and the source of each.

    Parameters
    ----------
    data
        The fitted data (its runs can be continued).
    domains
        The evaluation domains (the columns of the table).
    mixtures
        New mixtures: one row per mixture (the index names it), a column per domain.
    runs
        Observed runs to continue. With neither ``mixtures`` nor ``runs``: every observed run.
    allow_zero
        Accept zero shares in new mixtures (a law finite at zero, or the training shares a
        cross-domain law reads).

    Returns
    -------
    tuple
        The shares (one row per target, named by its index) and, per row, ``OBSERVED`` or
        ``NEW``.
    """
    frames, sources = [], []
    if runs is None and mixtures is None:
        runs = list(data.runs)
    if runs is not None:
        unknown = [r for r in runs if r not in data.runs]
        if unknown:
            raise DataError(
                f"run(s) {unknown} are not in the fitted data; observed runs: "
                f"{list(data.runs)[:10]}{' ...' if data.n_runs > 10 else ''}"
            )
        frames.append(data.mixtures.loc[list(runs), list(domains)])
        sources += [OBSERVED] * len(runs)
    if mixtures is not None:
        shares = prediction_shares(
            mixtures,
            domains,
            training_domains=list(data.mixtures.columns),
            allow_zero=allow_zero,
        )
        shares.index = shares.index.astype(str)
        frames.append(shares)
        sources += [NEW] * len(shares)
    if not sources:
        raise DataError("nothing to forecast: give observed runs (runs=...) or new mixtures")
    table = pd.concat(frames)
    if table.index.has_duplicates:
        dup = sorted(set(table.index[table.index.duplicated()]))
        raise DataError(
            f"mixture names must be unique; repeated: {dup} (an observed run and a "
            "new mixture may not share a name)"
        )
    return table, sources


@dataclass(frozen=True)
class TargetShares:
    """The shares a law reads at each target (:func:`target_shares`).

    Attributes
    ----------
    table
        One row per target (observed runs first; the index names them). Its columns are the
        evaluation domains' own shares, or every training domain when some evaluation domain
        is not a training domain.
    sources
        ``OBSERVED`` or ``NEW``, per row.
    own
        ``(targets, domains)``: each evaluation domain's own share; 0 for an evaluation-only
        domain (it has none).
    training
        ``(targets, training domains)``: every training share (a cross-domain law reads them
        all); ``(targets, 0)`` under a law that reads only the own share.
    """

    table: pd.DataFrame
    sources: list[str]
    own: np.ndarray
    training: np.ndarray


def target_shares(
    data: MixtureData,
    domains: Sequence[str],
    mixtures: pd.DataFrame | pd.Series | None,
    runs: Sequence[str] | None,
    law: Law,
) -> TargetShares:
    """The own and training shares of every target under ``law``, checked.

    The own shares are checked as :func:`forecast_targets` does (in (0, 1] unless the law is
    finite at zero shares); an evaluation domain that is not a training domain has own share 0
    and its loss moves with the training shares only.

    Examples
    --------
    >>> from bimix_bayes.laws.registry import BIMIX
    >>> t = target_shares(data, list(data.domains), None, ["mix000"], BIMIX)
    >>> t.own.shape == (1, len(data.domains)), t.training.shape
    (True, (1, 0))
    """
    training = [str(t) for t in data.mixtures.columns]
    evaluation_only = [d for d in domains if d not in training]
    table, sources = forecast_targets(
        data,
        training if evaluation_only else domains,
        mixtures,
        runs,
        allow_zero=law.finite_at_zero,
    )
    own = np.column_stack(
        [
            table[d].to_numpy(dtype=float) if d in table.columns else np.zeros(len(table))
            for d in domains
        ]
    )
    train = np.zeros((len(table), 0))
    if law.cross_domain and evaluation_only:
        train = table[training].to_numpy(dtype=float)
    elif law.cross_domain:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # said once for the table above
            train_table, _ = forecast_targets(data, training, mixtures, runs, allow_zero=True)
        train = train_table.to_numpy(dtype=float)
    return TargetShares(table, sources, own, train)


def domain_weights(
    domains: Sequence[str], weights: Mapping[str, float] | None
) -> tuple[np.ndarray, str]:
    """Normalised weights of the domain average and the label of its row.

    Examples
    --------
    >>> domain_weights(["a", "b"], {"a": 3})
    (array([1., 0.]), '(weighted mean of domains)')
    """
    if weights is None:
        return np.full(len(domains), 1.0 / len(domains)), ALL_DOMAINS
    unknown = sorted(set(weights) - set(domains))
    if unknown:
        raise DataError(f"weights for unknown domain(s) {unknown}; domains: {list(domains)}")
    w = np.array([float(weights.get(d, 0.0)) for d in domains])
    if np.any(w < 0) or not w.sum() > 0:
        raise DataError("domain weights must be >= 0 with a positive sum")
    return w / w.sum(), WEIGHTED_DOMAINS


def observed_conditional(
    idata: az.InferenceData, data: MixtureData
) -> tuple[dict[str, Any], CurveLayout]:
    """Conditional of each observed curve's offset (and slope, when on), per draw.

    Returns the conditional of :meth:`~bimix_bayes.bayes.likelihood.CurveSums.conditional`
    (arrays shaped (chain, draw, curve)) and the layout that names the curves.
    """
    spec = spec_from_idata(idata)
    lik = spec["likelihood"]
    layout = CurveLayout.from_data(data, float(idata.attrs["s_ref"]), idata.attrs.get("size_ref"))
    if is_correlated(spec, len(layout.domains)):  # the marginal of each curve's joint draw
        return observed_curve_marginals(idata.posterior, layout, spec), layout
    sums = curve_residual_sums(idata.posterior, layout, with_slope=bool(lik["run_slope"]))
    return sums.conditional(layout, family=lik["family"], nu=lik["nu"]), layout


def run_effects(
    idata: az.InferenceData,
    data: MixtureData,
    table: pd.DataFrame,
    sources: Sequence[str],
    rng: np.random.Generator | KeyedStreams,
    observed_rng: np.random.Generator | None = None,
) -> xr.Dataset:
    """Draw each target's run effects: ``offset`` u, ``scale`` sqrt(W) and ``slope`` v.

    Parameters
    ----------
    idata, data
        The fit and its data (:func:`~bimix_bayes.bayes.persistence.data_from_idata`).
    table, sources
        The targets, from :func:`forecast_targets`.
    rng
        Consumed in a fixed order: the fresh effects of every target (then their offsets again,
        correlated across domains, when the fit holds the fitted runs' residual correlation:
        :mod:`~bimix_bayes.bayes.residual_correlation`), then (when there are observed runs
        and no ``observed_rng``) the conditional ones of every observed curve. Forecasts pass
        :class:`~bimix_bayes.bayes.streams.KeyedStreams` over the targets (axis 2).
    observed_rng
        Draws the observed curves' conditional effects (all of the fit's curves, in its
        order); None: ``rng`` does.

    Returns
    -------
    xarray.Dataset
        ``offset``, ``scale`` and ``slope`` over (chain, draw, mixture, domain); ``slope`` is
        zero without the random-slope option.
    """
    spec = spec_from_idata(idata)
    lik = spec["likelihood"]
    post = idata.posterior
    observed = np.asarray(sources) == OBSERVED
    observed_rng = rng if observed_rng is None else observed_rng
    if is_correlated(spec, post.sizes["domain"]):
        draws = _joint_draws(idata, spec, data, table.index, observed, rng, observed_rng)
        return _effects_dataset(*draws, table)

    def sd(name: str) -> np.ndarray:  # (chain, draw, 1, domain); zero when not in the model
        if name not in post:
            return np.zeros((post.sizes["chain"], post.sizes["draw"], 1, post.sizes["domain"]))
        return post[name].transpose("chain", "draw", "domain").to_numpy()[:, :, None, :]

    tau = sd("tau")
    shape = (*tau.shape[:2], len(table), tau.shape[-1])
    fresh: dict[str, Any] = {"mean": 0.0, "var": np.broadcast_to(tau**2, shape), "w": None}
    if lik["family"] == "student_t":
        fresh["w"] = (lik["nu"] / 2, lik["nu"] / 2)
    if lik["run_slope"]:
        slope_var = np.broadcast_to(sd("kappa") ** 2, shape)
        fresh |= {"slope_mean": 0.0, "slope_var": slope_var, "cov": 0.0}
    u, scale, v = draw_offsets_and_slopes(fresh, rng, shape)
    corr = stored_residual_correlation(post)
    if corr is not None:  # a new run's offsets move together as the fitted runs' do
        if lik["family"] == "student_t":  # one scale W per run, or the correlation would shrink
            shared = np.broadcast_to(scale[..., :1], shape)
            v = v * shared / scale  # a fresh slope's draw is its scale times a Normal
            scale = shared.copy()
        u = scale * correlated_fresh_offsets(corr, tau[:, :, 0, :], len(table), rng)
    if OBSERVED in sources:
        cond, layout = observed_conditional(idata, data)
        cu, cscale, cv = draw_offsets_and_slopes(cond, observed_rng, cond["mean"].shape)
        target = table.index.get_indexer([layout.runs[r] for r in layout.curve_run])
        keep = (target >= 0) & observed[target]
        at = (..., target[keep], layout.curve_domain[keep])
        u[at], scale[at], v[at] = cu[..., keep], cscale[..., keep], cv[..., keep]
    return _effects_dataset(u, scale, v, table)


def _effects_dataset(
    u: np.ndarray, scale: np.ndarray, v: np.ndarray, table: pd.DataFrame
) -> xr.Dataset:
    dims = ("chain", "draw", "mixture", "domain")
    return xr.Dataset(
        {"offset": (dims, u), "scale": (dims, scale), "slope": (dims, v)},
        coords={"mixture": list(table.index)},
    )


def _joint_draws(
    idata: az.InferenceData,
    spec: Spec,
    data: MixtureData,
    targets: pd.Index,
    observed: np.ndarray,
    rng: np.random.Generator | KeyedStreams,
    observed_rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run effects correlated across domains: one joint draw per target (fresh or observed)."""
    post = idata.posterior
    u, scale, v = fresh_run_draws(post, len(targets), spec, rng)
    if observed.any():
        layout = CurveLayout.from_data(
            data, float(idata.attrs["s_ref"]), idata.attrs.get("size_ref")
        )
        cu, cscale, cv = observed_run_draws(post, layout, spec, observed_rng)
        target = targets.get_indexer(list(layout.runs))
        keep = (target >= 0) & observed[np.maximum(target, 0)]
        u[:, :, target[keep]] = cu[:, :, keep]
        scale[:, :, target[keep]] = cscale[:, :, keep]
        v[:, :, target[keep]] = cv[:, :, keep]
    return u, scale, v
