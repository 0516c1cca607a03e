"""Posterior predictive forecasts of loss for any grid of (mixture, step).

Two kinds of target:

* an **observed run** continued to more steps: its own run offset is drawn, per posterior draw,
  from its conditional given the run's observed checkpoints;
* a **new mixture** (never trained): a fresh run offset is drawn, so the interval carries the
  run-to-run variation the model has seen.

``kind="predictive"`` (default) forecasts a new measurement (offset and checkpoint noise
included); ``kind="law"`` gives the credible band of the BiMix curve itself (no run effects).
Per domain, and as a weighted average over domains (computed per draw, then summarised).

Examples
--------
>>> df = predict(idata, steps=[4e4], mixtures=my_mixtures, prob=(0.5, 0.9))  # doctest: +SKIP
>>> df.columns[:6].tolist()  # doctest: +SKIP
['mixture', 'source', 'step', 'domain', 'mean', 'median']
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.bayes.likelihood import (
    CurveLayout,
    curve_residual_sums,
    draw_offsets,
    draw_offsets_and_slopes,
    offset_conditional,
)
from bimix_bayes.bayes.persistence import data_from_idata, diagnostics_from_idata, spec_from_idata
from bimix_bayes.data.labels import (
    ALL_DOMAINS,
    NEW,
    OBSERVED,
    WEIGHTED_DOMAINS,
    interval_columns,
)
from bimix_bayes.data.table import DataError, prediction_shares
from bimix_bayes.laws.bimix import bimix_log_loss

__all__ = ["NEW", "OBSERVED", "interval_columns", "log_predictive_density", "predict"]

_CHUNK_VALUES = 4_000_000  # draws x steps x domains x mixtures handled at once


def _targets(data, domains, mixtures, runs) -> tuple[pd.DataFrame, list[str]]:
    """Shares of every target (rows) and whether each is an observed run or a new mixture."""
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
        shares = prediction_shares(mixtures, domains)
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


def _weights(domains: Sequence[str], weights: Mapping[str, float] | None) -> tuple[np.ndarray, str]:
    if weights is None:
        return np.full(len(domains), 1.0 / len(domains)), ALL_DOMAINS
    unknown = sorted(set(weights) - set(domains))
    if unknown:
        raise DataError(f"weights for unknown domain(s) {unknown}; domains: {list(domains)}")
    w = np.array([float(weights.get(d, 0.0)) for d in domains])
    if np.any(w < 0) or not w.sum() > 0:
        raise DataError("domain weights must be >= 0 with a positive sum")
    return w / w.sum(), WEIGHTED_DOMAINS


def predict(
    idata: az.InferenceData,
    steps: Sequence[float] | np.ndarray,
    *,
    mixtures: pd.DataFrame | pd.Series | None = None,
    runs: Sequence[str] | None = None,
    prob: Sequence[float] = (0.5, 0.9),
    weights: Mapping[str, float] | None = None,
    kind: Literal["predictive", "law"] = "predictive",
    seed: int = 0,
    attach: bool = True,
) -> pd.DataFrame:
    """Forecast the loss at every (target, step), per domain and averaged over domains.

    Parameters
    ----------
    idata
        A fit from :meth:`bimix_bayes.bayes.model.BiMixModel.fit` or :func:`~bimix_bayes.load_fit`.
    steps
        Steps (or tokens, as in the fitted data), e.g. beyond the last observed checkpoint.
    mixtures
        New mixtures: one row per mixture (the index names it), a column per domain.
    runs
        Observed runs to continue. With neither ``mixtures`` nor ``runs``: every observed run.
    prob
        Probabilities of the central intervals (``lower_90``/``upper_90`` columns for 0.9).
    weights
        Domain weights of the average (default: the plain mean over evaluation domains).
    kind
        ``"predictive"`` (a new measurement) or ``"law"`` (the BiMix curve, no run effects).
    seed
        Seed of the predictive draws.
    attach
        Also store the draws as the ``predictions`` group of ``idata`` (replacing any).

    Returns
    -------
    pandas.DataFrame
        Columns ``mixture, source, step, domain, mean, median, sd`` and the interval bounds.
        Under a Student-t likelihood the predictive loss has no finite mean: ``mean`` and
        ``sd`` are NaN there (use the median and quantiles). Domains an observed run gave no
        share are NaN.
        ``attrs["fit_passed"]`` is False (and a :class:`FitWarning` is raised) when the fit
        failed its diagnostics.
    """
    if kind not in ("predictive", "law"):
        raise ValueError(f"kind must be 'predictive' or 'law', got {kind!r}")
    probs = [float(p) for p in prob]
    if not all(0 < p < 1 for p in probs):
        raise ValueError(f"interval probabilities must lie in (0, 1), got {probs}")
    steps_arr = np.asarray(steps, dtype=float).ravel()
    if steps_arr.size == 0 or not np.all(np.isfinite(steps_arr) & (steps_arr > 0)):
        raise ValueError(f"steps must be positive finite numbers, got {list(steps_arr)}")
    diag = diagnostics_from_idata(idata)
    if not diag.passed:
        warnings.warn(
            "forecasting from a fit that FAILED its convergence diagnostics; these "
            "intervals cannot be trusted.\n" + diag.report(),
            FitWarning,
            stacklevel=2,
        )
    data = data_from_idata(idata)
    spec = spec_from_idata(idata)
    post = idata.posterior
    domains = [str(d) for d in post["domain"].to_numpy()]
    table, sources = _targets(data, domains, mixtures, runs)
    w, avg_label = _weights(domains, weights)
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    n_draws = chains * draws

    def flat(name: str) -> np.ndarray:
        return post[name].transpose("chain", "draw", "domain").to_numpy().reshape(n_draws, -1)

    lf, lr, alpha, beta, sigma = (
        flat(k) for k in ("log_floor", "log_reducible", "alpha", "beta", "sigma")
    )
    tau = flat("tau") if "tau" in post else np.zeros_like(sigma)
    lik = spec["likelihood"]
    # Under a Student-t likelihood exp(noise) has no finite mean: report medians and quantiles.
    heavy_tails = kind == "predictive" and lik["family"] == "student_t"
    rng = np.random.default_rng([seed, 2])
    slopes = None
    if lik["run_slope"] and kind == "predictive":
        offsets, scales, slopes = _offsets_and_slopes(
            idata, data, table, sources, domains, lik, tau, flat("kappa"), rng
        )
    else:
        offsets, scales = _offsets(idata, data, table, sources, domains, lik, tau, rng, kind)

    x = np.log(steps_arr / float(idata.attrs["s_ref"]))
    shares = table.to_numpy(dtype=float)
    # An observed run may give a domain no share (its observations were dropped under
    # zero_policy="drop"): the law says nothing there, so those cells (and an average that
    # needs them) are NaN rather than infinite.
    outside = shares == 0
    if outside.any():
        rows, cols = np.nonzero(outside)
        warnings.warn(
            f"{len(rows)} (run, domain) pair(s) have a zero share, where BiMix is undefined; "
            "their forecasts are NaN: "
            + ", ".join(
                f"{table.index[i]}/{domains[j]}" for i, j in zip(rows[:5], cols[:5], strict=True)
            ),
            stacklevel=2,
        )
    log_r = np.log(np.where(outside, 1.0, shares))  # placeholder where outside: masked below
    chunk = max(1, _CHUNK_VALUES // (n_draws * len(x) * len(domains)))
    summaries, kept = [], []
    for start in range(0, len(table), chunk):
        sl = slice(start, start + chunk)
        mu = bimix_log_loss(
            log_r[None, sl, None, :],
            x[None, None, :, None],
            lf[:, None, None, :],
            lr[:, None, None, :],
            alpha[:, None, None, :],
            beta[:, None, None, :],
        )
        if kind == "predictive":
            noise = rng.standard_normal(mu.shape) * (
                scales[:, sl, None, :] * sigma[:, None, None, :]
            )
            mu = mu + offsets[:, sl, None, :] + noise
            if slopes is not None:  # the opt-in random slope per (run, domain) curve
                mu = mu + slopes[:, sl, None, :] * x[None, None, :, None]
        loss = np.where(outside[None, sl, None, :], np.nan, np.exp(mu))
        average = np.where(w > 0, loss * w, 0.0).sum(axis=-1, keepdims=True)
        needed = (outside[:, w > 0]).any(axis=1)[None, sl, None, None]
        loss = np.concatenate([loss, np.where(needed, np.nan, average)], axis=-1)
        summaries.append(_summarise(loss, probs, finite_mean=heavy_tails is False))
        if attach:
            kept.append(loss.astype(np.float32))
    labels = [*domains, avg_label]
    out = _tidy(summaries, table.index, sources, steps_arr, labels, probs)
    out.attrs["fit_passed"] = diag.passed
    out.attrs["kind"] = kind
    if attach:
        draws_arr = np.concatenate(kept, axis=1).reshape(chains, draws, len(table), len(x), -1)
        ds = xr.Dataset(
            {"loss": (("chain", "draw", "mixture", "step", "domain"), draws_arr)},
            coords={
                "chain": post["chain"],
                "draw": post["draw"],
                "mixture": list(table.index),
                "step": steps_arr,
                "domain": labels,
                "source": ("mixture", sources),
            },
            attrs={"kind": kind, "seed": seed},
        )
        if "predictions" in idata.groups():
            del idata.predictions
        idata.add_groups(predictions=ds)
    return out


def _offsets(idata, data, table, sources, domains, lik, tau, rng, kind):
    """Per draw, target and domain: run offset ``u`` and noise scale ``sqrt(W)``."""
    n_draws = tau.shape[0]
    shape = (n_draws, len(table), len(domains))
    if kind == "law":
        return np.zeros(shape), np.zeros(shape)
    fresh_w = (lik["nu"] / 2, lik["nu"] / 2) if lik["family"] == "student_t" else None
    u, scale = draw_offsets(
        {"mean": 0.0, "var": np.broadcast_to(tau[:, None, :] ** 2, shape), "w": fresh_w}, rng, shape
    )
    if OBSERVED in sources:
        layout = CurveLayout.from_data(data, float(idata.attrs["s_ref"]))
        s1, s2, sig, ta = (
            a.reshape(n_draws, -1) for a in curve_residual_sums(idata.posterior, layout)
        )
        cond = offset_conditional(s1, s2, layout.n, sig, ta, family=lik["family"], nu=lik["nu"])
        cu, cscale = draw_offsets(cond, rng, s1.shape)
        run_pos = {r: i for i, r in enumerate(table.index)}
        for c, (r, d) in enumerate(zip(layout.curve_run, layout.curve_domain, strict=True)):
            target = run_pos.get(layout.runs[r])
            if target is not None and sources[target] == OBSERVED:
                u[:, target, d] = cu[:, c]
                scale[:, target, d] = cscale[:, c]
    return u, scale


def _offsets_and_slopes(idata, data, table, sources, domains, lik, tau, kappa, rng):
    """As :func:`_offsets`, with the opt-in random slope: ``(u, sqrt(W), v)`` per draw,
    target and domain (fresh ``u ~ N(0, tau^2)``, ``v ~ N(0, kappa^2)`` for a new mixture)."""
    n_draws = tau.shape[0]
    shape = (n_draws, len(table), len(domains))
    fresh_w = (lik["nu"] / 2, lik["nu"] / 2) if lik["family"] == "student_t" else None
    fresh = {
        "mean": 0.0,
        "var": np.broadcast_to(tau[:, None, :] ** 2, shape),
        "slope_mean": 0.0,
        "slope_var": np.broadcast_to(kappa[:, None, :] ** 2, shape),
        "cov": 0.0,
        "w": fresh_w,
    }
    u, scale, v = draw_offsets_and_slopes(fresh, rng, shape)
    if OBSERVED in sources:
        cond, layout = _observed_conditional(idata, data, lik, n_draws)
        cu, cscale, cv = draw_offsets_and_slopes(cond, rng, cond["mean"].shape)
        run_pos = {r: i for i, r in enumerate(table.index)}
        for c, (r, d) in enumerate(zip(layout.curve_run, layout.curve_domain, strict=True)):
            target = run_pos.get(layout.runs[r])
            if target is not None and sources[target] == OBSERVED:
                u[:, target, d] = cu[:, c]
                scale[:, target, d] = cscale[:, c]
                v[:, target, d] = cv[:, c]
    return u, scale, v


def _observed_conditional(idata, data, lik, n_draws):
    """Conditional of each observed curve's offset (and slope, when on), per draw."""
    layout = CurveLayout.from_data(data, float(idata.attrs["s_ref"]))
    if lik["run_slope"]:
        s1, s2, sig, ta, sxe, ka = (
            a.reshape(n_draws, -1)
            for a in curve_residual_sums(idata.posterior, layout, with_slope=True)
        )
        slope = (sxe, *layout.x_sums(), ka)
    else:
        s1, s2, sig, ta = (
            a.reshape(n_draws, -1) for a in curve_residual_sums(idata.posterior, layout)
        )
        slope = None
    cond = offset_conditional(
        s1, s2, layout.n, sig, ta, family=lik["family"], nu=lik["nu"], slope=slope
    )
    cond["mean"] = np.broadcast_to(cond["mean"], s1.shape)
    return cond, layout


def _summarise(loss: np.ndarray, probs: list[float], finite_mean: bool = True) -> dict:
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


def _tidy(summaries, names, sources, steps, labels, probs) -> pd.DataFrame:
    stats = {k: np.concatenate([s[k] for s in summaries], axis=0) for k in summaries[0]}
    m, t, d = np.meshgrid(
        np.arange(len(names)), np.arange(len(steps)), np.arange(len(labels)), indexing="ij"
    )
    out = pd.DataFrame(
        {
            "mixture": np.asarray(names, dtype=object)[m.ravel()],
            "source": np.asarray(sources, dtype=object)[m.ravel()],
            "step": steps[t.ravel()],
            "domain": np.asarray(labels, dtype=object)[d.ravel()],
        }
    )
    for key, values in stats.items():
        out[key] = values.ravel()
    return out


def log_predictive_density(
    idata: az.InferenceData,
    points: pd.DataFrame,
    *,
    mixtures: pd.DataFrame | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Log posterior predictive density of observed losses (held-out checkpoints), per point.

    For each posterior draw the predictive of a new measurement is log-normal: ``log L`` is
    Normal with mean ``mu + E[u]`` and variance ``W (sigma^2 + Var[u])``, where ``u`` is the run
    offset (its conditional given the run's fitted checkpoints for an observed run, ``N(0,
    tau^2)`` for a new mixture), integrated out exactly, and ``W`` the Student-t variance factor
    (1 under the Normal likelihood; drawn once per draw otherwise). The density of the loss
    itself (Jacobian ``1 / L`` included) is averaged over draws: ``log mean_draws p(L | draw)``.

    Parameters
    ----------
    idata
        A fit from :meth:`bimix_bayes.bayes.model.BiMixModel.fit`.
    points
        Columns ``mixture`` (an observed run, or a name in ``mixtures``), ``step``, ``domain``
        (a fitted domain) and ``loss`` (> 0).
    mixtures
        Shares of new mixtures named in ``points`` (one row per mixture, a column per domain).
    seed
        Seed of the Student-t variance factors (unused under the Normal likelihood).

    Returns
    -------
    numpy.ndarray
        One log density per row of ``points`` (nats, density of the loss).

    Examples
    --------
    >>> pts = pd.DataFrame({"mixture": ["r1"], "step": [4e4], "domain": ["web"],
    ...                     "loss": [2.9]})
    >>> log_predictive_density(idata, pts)  # doctest: +SKIP
    array([3.1])
    """
    from scipy.special import logsumexp

    missing = {"mixture", "step", "domain", "loss"} - set(points.columns)
    if missing:
        raise ValueError(f"points lack the column(s) {sorted(missing)}")
    data = data_from_idata(idata)
    lik = spec_from_idata(idata)["likelihood"]
    post = idata.posterior
    domains = [str(d) for d in post["domain"].to_numpy()]
    names = points["mixture"].astype(str).to_numpy()
    new_names = set() if mixtures is None else {str(i) for i in mixtures.index}
    runs = sorted({n for n in names if n not in new_names})
    new = None
    if mixtures is not None:
        new = mixtures.copy()
        new.index = new.index.astype(str)
        new = new.loc[sorted(set(names) & new_names)]
    table, sources = _targets(
        data, domains, new if new is not None and len(new) else None, runs or None
    )
    dom = pd.Index(domains).get_indexer(points["domain"].astype(str))
    if (dom < 0).any():
        raise DataError(f"points name domain(s) outside the fit; fitted: {domains}")
    tgt = table.index.get_indexer(names)
    loss = points["loss"].to_numpy(dtype=float)
    steps = points["step"].to_numpy(dtype=float)
    if not (np.all(loss > 0) and np.all(steps > 0)):
        raise ValueError("points need loss > 0 and step > 0")
    shares = table.to_numpy(dtype=float)[tgt, dom]
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    n_draws = chains * draws

    def flat(name: str) -> np.ndarray:
        return post[name].transpose("chain", "draw", "domain").to_numpy().reshape(n_draws, -1)

    lf, lr, alpha, beta, sigma = (
        flat(k)[:, dom] for k in ("log_floor", "log_reducible", "alpha", "beta", "sigma")
    )
    tau = flat("tau")[:, dom] if "tau" in post else np.zeros_like(sigma)
    x = np.log(steps / float(idata.attrs["s_ref"]))
    with np.errstate(divide="ignore"):
        mu = bimix_log_loss(np.log(shares)[None, :], x[None, :], lf, lr, alpha, beta)
    u_mean, u_var = np.zeros_like(mu), tau**2
    slope_on = bool(lik["run_slope"])
    xs = np.broadcast_to(x[None, :], mu.shape)
    if slope_on:  # fresh slope: v ~ N(0, kappa^2) adds kappa^2 x^2 to the variance
        u_var = u_var + flat("kappa")[:, dom] ** 2 * xs**2
    rng = np.random.default_rng([seed, 3])
    if lik["family"] == "student_t":
        nu = lik["nu"]
        w = 1.0 / rng.gamma(nu / 2, 2.0 / nu, size=mu.shape)
    else:
        w = np.ones_like(mu)
    is_obs = np.array([sources[t] == OBSERVED for t in tgt])
    if is_obs.any():
        cond, layout = _observed_conditional(idata, data, lik, n_draws)
        curve_of = {
            (layout.runs[r], layout.domains[d]): c
            for c, (r, d) in enumerate(zip(layout.curve_run, layout.curve_domain, strict=True))
        }
        if cond["w"] is not None:
            shape_w, rate_w = (np.broadcast_to(a, cond["mean"].shape) for a in cond["w"])
        for p in np.flatnonzero(is_obs):
            c = curve_of.get((names[p], domains[dom[p]]))
            if c is None:  # an observed run without this domain's curve: a fresh offset
                continue
            xp = xs[:, p]
            if slope_on:  # u + v x: mean and variance of a linear combination
                u_mean[:, p] = cond["mean"][:, c] + cond["slope_mean"][:, c] * xp
                u_var[:, p] = (
                    cond["var"][:, c] + 2 * xp * cond["cov"][:, c] + xp**2 * cond["slope_var"][:, c]
                )
            else:
                u_mean[:, p] = cond["mean"][:, c]
                u_var[:, p] = cond["var"][:, c]
            if cond["w"] is not None:
                w[:, p] = 1.0 / rng.gamma(shape_w[:, c], 1.0 / rate_w[:, c])
    var = w * (sigma**2 + u_var)
    y = np.log(loss)[None, :]
    logp = -0.5 * (np.log(2 * np.pi * var) + (y - mu - u_mean) ** 2 / var) - y
    out = logsumexp(logp, axis=0) - np.log(n_draws)
    return np.where(np.isfinite(shares) & (shares > 0), out, np.nan)
