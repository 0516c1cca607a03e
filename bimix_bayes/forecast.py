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

from bimix_bayes.data import DataError, prediction_shares
from bimix_bayes.diagnostics import FitWarning
from bimix_bayes.law import bimix_log_loss
from bimix_bayes.least_squares import ALL_DOMAINS
from bimix_bayes.likelihood import (
    CurveLayout,
    curve_residual_sums,
    draw_offsets,
    offset_conditional,
)
from bimix_bayes.persistence import data_from_idata, diagnostics_from_idata, spec_from_idata

__all__ = ["NEW", "OBSERVED", "interval_columns", "predict"]

OBSERVED = "observed run"
NEW = "new mixture"
_CHUNK_VALUES = 4_000_000  # draws x steps x domains x mixtures handled at once


def interval_columns(prob: float) -> tuple[str, str]:
    """Column names of a central interval: ``(lower_90, upper_90)`` for 0.9."""
    label = f"{100 * prob:g}".replace(".", "_")
    return f"lower_{label}", f"upper_{label}"


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
    return w / w.sum(), "(weighted mean of domains)"


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
        A fit from :meth:`bimix_bayes.model.BiMixModel.fit` or :func:`~bimix_bayes.load_fit`.
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
