"""Compare fitted models by how well they predict a whole new run (PSIS-LOO over runs).

The decision is about runs not trained yet, so the unit left out is a **run** (all its
checkpoints of all domains), not a checkpoint: a model that fits each curve's wiggles but
forecasts new runs badly must lose. Each fit stores one log likelihood per run
(``log_likelihood["loss_run"]``, the run's effects integrated out); ArviZ's Pareto-smoothed
importance sampling (``az.loo``, ``az.compare``) estimates the expected log predictive density
of a left-out run (``elpd_loo``) without refitting. A run whose Pareto ``k`` exceeds 0.7
dominates its own fit: the estimate is unreliable there (refit without it to be sure), and the
comparison says which runs.

A fit whose run effects are independent in the likelihood but which forecasts a new run with
its offsets correlated across domains (``likelihood.new_run_correlation = "residual"``, the
default: :mod:`~bimix_bayes.bayes.residual_correlation`) is scored as it forecasts its offsets
(its checkpoint noise stays independent across domains, as the likelihood has it, though
forecasts draw it correlated: :mod:`~bimix_bayes.bayes.checkpoint_noise`): the left-out
run's density is the one with correlated offsets, ``p_C(y_i | theta)``, and the importance
weights that remove the run from the posterior are the likelihood's, ``1 / p(y_i | theta)``
(the posterior was conditioned through it)::

    elpd_i = log sum_s w_is p_C(y_i | theta_s),   w_is = PSIS(1 / p(y_i | theta_s)), sum_s w_is = 1

so the Pareto ``k`` are the working model's: they say whether leaving the run out is well
approximated, not how heavy the tail of ``p_C / p`` is. ``C`` itself was estimated with the run
in (a plug-in, as in the forecasts), which favours such fits a little over fits whose run
effects are correlated in the likelihood (there the correlation is left out with the run).
Under the normal likelihood ``C = I`` gives back the likelihood's own per-run density; under
Student-t a run's domains share one scale when scored with ``C`` (as forecasts draw a new run),
where the likelihood gives each curve its own, so the two differ even at ``C = I``.

Examples
--------
>>> result = compare_fits({"default": idata, "again": idata})
>>> result.table.index.tolist()
['default', 'again']
>>> result.table.columns[:4].tolist()
['rank', 'elpd_loo', 'se', 'elpd_diff']
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bimix_bayes.bayes.persistence import diagnostics_from_idata
from bimix_bayes.data.table import DataError

__all__ = [
    "LOO_VAR",
    "PARETO_K_LIMIT",
    "ComparisonResult",
    "compare_fits",
    "new_run_log_likelihood",
    "with_run_log_likelihood",
]

#: The pointwise log likelihood compared: one value per run.
LOO_VAR = "loss_run"
#: Above this Pareto k the importance-sampling estimate of a left-out run is unreliable.
PARETO_K_LIMIT = 0.7


@dataclass(frozen=True)
class ComparisonResult:
    """Models ranked by expected log predictive density of a new run.

    Attributes
    ----------
    table
        One row per model, best first: ``rank`` (1 the best), ``elpd_loo`` (nats, higher is better),
        ``se``, ``elpd_diff`` and ``dse`` (difference to the best and its standard error),
        ``p_loo`` (effective number of parameters), ``weight`` (stacking), ``bad_k`` (runs
        with Pareto k > 0.7).
    pareto_k
        Pareto k per (model, run).
    """

    table: pd.DataFrame
    pareto_k: pd.DataFrame
    #: Models whose new runs were scored with offsets correlated across domains (their C).
    correlated_new_runs: tuple[str, ...] = ()
    #: Models whose fit failed its convergence diagnostics.
    failed: tuple[str, ...] = ()

    def verdict(self) -> str:
        """Which model the data prefer, by how much, and how sure that is (one sentence).

        "Clearly" when the best model is ahead of the runner-up by more than 2 standard errors
        of the difference (``dse``), "probably" within 1 to 2, "not distinguishable" below 1.
        No verdict when either of the two failed its convergence diagnostics, or when more
        than half of either's runs have Pareto k above :data:`PARETO_K_LIMIT` (PSIS-LOO then
        cannot score a left-out run: the difference is given as a hint, with the backtest
        that can decide).

        Examples
        --------
        >>> t = pd.DataFrame({"elpd_loo": [10.0, 4.0], "elpd_diff": [0.0, 6.0],
        ...                   "dse": [0.0, 2.0], "weight": [0.9, 0.1]}, index=["a", "b"])
        >>> verdict = ComparisonResult(t, pd.DataFrame()).verdict()
        >>> verdict.split(" (")[0]
        'The data clearly prefer a: a new run is predicted 6.0 +- 2.0 nats better'
        """
        names = list(self.table.index)
        if len(names) < 2:
            return f"one model ({names[0]}): nothing to compare it with"
        best, second = names[0], names[1]
        diff, dse = float(self.table.loc[second, "elpd_diff"]), float(self.table.loc[second, "dse"])
        z = diff / dse if dse > 0 else (np.inf if diff > 0 else 0.0)
        how = "clearly" if z > 2 else "probably" if z > 1 else None
        weight = float(self.table.loc[best, "weight"])
        high = (
            (self.pareto_k.loc[[best, second]] > PARETO_K_LIMIT).sum(axis=1)
            if len(self.pareto_k)
            else pd.Series(dtype=int)
        )
        hint = (
            f"{best} scores {diff:.1f} +- {dse:.1f} nats higher (log predictive density of a "
            "new run), a hint only"
        )
        failed = [n for n in (best, second) if n in self.failed]
        if failed:
            return (
                f"No verdict: {' and '.join(failed)} failed "
                f"{'its' if len(failed) == 1 else 'their'} convergence diagnostics, so the LOO "
                "scores are not trustworthy; refit "
                f"(`bimix fit` retries with safer settings) before comparing. {hint}."
            )
        n_runs = self.pareto_k.shape[1]
        if len(high) and (high > n_runs / 2).any():
            return (
                f"PSIS-LOO cannot rank {best} and {second}: "
                f"{' and '.join(str(int(n)) for n in high)} of their {n_runs} runs have Pareto "
                f"k > {PARETO_K_LIMIT}, so a left-out run's score is unreliable for most runs; "
                f"{hint}. Compare them on held-out runs instead (`bimix backtest DATA --protocol "
                "holdout-mixtures:K --law LAW`, or holdout-size:N for a size fit)."
            )
        if how is None:
            return (
                f"The data do not distinguish {best} from {second}: {diff:.1f} +- {dse:.1f} nats "
                "of log predictive density of a new run (PSIS-LOO), within one standard error."
            )
        caveat = (
            f"; but {' and '.join(f'{int(n)}' for n in high)} of their "
            f"{self.pareto_k.shape[1]} runs have Pareto k > {PARETO_K_LIMIT} (their scores, and "
            "so this verdict, are approximate)"
            if high.sum() > 0
            else ""
        )
        return (
            f"The data {how} prefer {best}: a new run is predicted {diff:.1f} +- {dse:.1f} nats "
            f"better (log predictive density, PSIS-LOO) than by {second} (stacking weight "
            f"{weight:.2f}){caveat}."
        )

    def scoring(self) -> str:
        """How a left-out run was scored (one sentence): with its offsets correlated across
        domains as each fit forecasts a new run, or independent, as the likelihood has them.

        Examples
        --------
        >>> t = pd.DataFrame({"elpd_loo": [1.0, 0.0]}, index=["a", "b"])
        >>> ComparisonResult(t, pd.DataFrame(), correlated_new_runs=("a",)).scoring()[:52]
        'A left-out run is scored as each fit forecasts a new'
        """
        names = list(self.table.index)
        correlated = [n for n in names if n in self.correlated_new_runs]
        independent = [n for n in names if n not in self.correlated_new_runs]
        parts = []
        if correlated:
            parts.append(
                "its offsets correlated across domains as the fitted runs' are "
                f'(new_run_correlation "residual"): {", ".join(correlated)}'
            )
        if independent:
            parts.append(f"its offsets as the likelihood has them: {', '.join(independent)}")
        return "A left-out run is scored as each fit forecasts a new one; " + "; ".join(parts) + "."

    def warnings(self) -> list[str]:
        """One line per model with unreliable runs (Pareto k > 0.7), naming the runs."""
        lines = []
        for model, ks in self.pareto_k.iterrows():
            bad = ks[ks > PARETO_K_LIMIT]
            if len(bad):
                runs = ", ".join(f"{r} (k={k:.2f})" for r, k in bad.sort_values().items())
                lines.append(
                    f"{model}: {len(bad)} run(s) with Pareto k > {PARETO_K_LIMIT}: {runs}; "
                    "their leave-one-out estimate is unreliable (refit without them to check)"
                )
        return lines


def with_run_log_likelihood(idata: az.InferenceData) -> az.InferenceData:
    """``idata`` with ``log_likelihood[LOO_VAR]``, summing curves per run for 0.2 files."""
    if "log_likelihood" not in idata.groups():
        raise DataError("this fit has no log_likelihood group; refit it with this version")
    group = idata.log_likelihood
    if LOO_VAR in group:
        return idata
    if "loss_curve" not in group:
        raise DataError(f"this fit has neither {LOO_VAR!r} nor 'loss_curve' log likelihoods")
    curves = group["loss_curve"]
    runs = [str(c).rsplit("/", 1)[0] for c in curves["curve"].to_numpy()]
    per_run = curves.assign_coords(run=("curve", runs)).groupby("run").sum()
    out = idata.copy()
    out.log_likelihood[LOO_VAR] = per_run.rename(LOO_VAR)
    return out


def new_run_log_likelihood(idata: az.InferenceData) -> xr.DataArray | None:
    """Per run, the log density of its checkpoints with its offsets correlated across domains as
    the fit's residual correlation ``C`` says (how the fit forecasts a new run), shaped (chain,
    draw, run); None for a fit without ``C`` (correlated run effects in the likelihood, or
    ``new_run_correlation = "none"``, or saved before ``C`` existed).
    """
    from bimix_bayes.bayes.correlated_posterior import residual_run_log_likelihoods
    from bimix_bayes.bayes.likelihood import CurveLayout
    from bimix_bayes.bayes.persistence import data_from_idata, spec_from_idata
    from bimix_bayes.bayes.residual_correlation import stored_residual_correlation

    post = idata.posterior
    corr = stored_residual_correlation(post)
    if corr is None:
        return None
    data = data_from_idata(idata)
    layout = CurveLayout.from_data(data, float(idata.attrs["s_ref"]), idata.attrs.get("size_ref"))
    values = residual_run_log_likelihoods(post, layout, spec_from_idata(idata), corr)
    return xr.DataArray(
        values,
        dims=("chain", "draw", "run"),
        coords={"chain": post.chain, "draw": post.draw, "run": list(layout.runs)},
        name=LOO_VAR,
    )


def _relative_efficiency(idata: az.InferenceData) -> float:
    """ArviZ's ``reff`` for PSIS: mean ESS of the posterior variables over the draws."""
    post = idata.posterior
    if post.sizes["chain"] == 1:
        return 1.0
    ess = az.ess(post, method="mean")
    values = np.hstack([ess[v].to_numpy().ravel() for v in ess.data_vars])
    return float(values.mean() / (post.sizes["chain"] * post.sizes["draw"]))


def _loo(idata: az.InferenceData) -> tuple[az.ELPDData, bool]:
    """PSIS-LOO over runs; a fit with ``C`` scores the left-out run with correlated offsets
    (module docstring). Returns the estimate and whether ``C`` was used."""
    reff = _relative_efficiency(idata)
    loo = az.loo(idata, var_name=LOO_VAR, pointwise=True, reff=reff, scale="log")
    scored = new_run_log_likelihood(idata)
    if scored is None:
        return loo, False
    working = idata.log_likelihood[LOO_VAR].transpose("chain", "draw", "run")
    if set(working["run"].to_numpy()) != set(scored["run"].to_numpy()):
        raise DataError("the fit's runs and its stored log likelihood disagree; refit it")
    scored = scored.sel(run=working["run"])
    samples = ("chain", "draw")
    log_w, _ = az.psislw(-working.stack(__sample__=samples), reff)
    ll = scored.stack(__sample__=samples).transpose(*log_w.dims)
    loo_i = np.logaddexp.reduce(log_w.to_numpy() + ll.to_numpy(), axis=-1)
    n_samples = ll.sizes["__sample__"]
    lppd = float(np.sum(np.logaddexp.reduce(ll.to_numpy(), axis=-1) - np.log(n_samples)))
    out = loo.copy()
    out["elpd_loo"] = float(loo_i.sum())
    out["se"] = float(np.sqrt(len(loo_i) * np.var(loo_i)))
    out["p_loo"] = lppd - float(loo_i.sum())
    out["loo_i"] = xr.DataArray(loo_i, dims=("run",), coords={"run": ll["run"]}, name="loo_i")
    return out, True


def compare_fits(fits: Mapping[str, az.InferenceData]) -> ComparisonResult:
    """Rank fits of the same data by PSIS-LOO with whole runs left out.

    Parameters
    ----------
    fits
        Name -> fit (from :meth:`~bimix_bayes.bayes.model.BiMixModel.fit` or
        :func:`~bimix_bayes.bayes.persistence.load_fit`); at least one. All must be fits of
        the same data (same data fingerprint), or the comparison means nothing.

    Returns
    -------
    ComparisonResult
    """
    if not fits:
        raise ValueError("give at least one fit to compare")
    prints = {name: fit.attrs.get("data_fingerprint") for name, fit in fits.items()}
    if len(set(prints.values())) > 1:
        raise DataError(
            "the fits were made from different data, so their LOO scores cannot be compared: "
            + "; ".join(f"{n}: {_data_words(fit)}" for n, fit in fits.items())
            + ". Fit every model to the same file and options (group, excluded domains, "
            "dropped rows)"
        )
    prepared = {name: with_run_log_likelihood(fit) for name, fit in fits.items()}
    pareto, estimates, correlated = {}, {}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Pareto k are reported by name below
        for name, fit in prepared.items():
            estimates[name], used = _loo(fit)
            if used:
                correlated.append(name)
            k = estimates[name].pareto_k
            runs = k["run"].to_numpy() if isinstance(k, xr.DataArray) and "run" in k.dims else None
            pareto[name] = pd.Series(np.asarray(k), index=runs)
        table = az.compare(estimates, ic="loo", method="stacking", scale="log")
    bad = {name: int((ks > PARETO_K_LIMIT).sum()) for name, ks in pareto.items()}
    failed = tuple(name for name, fit in fits.items() if not diagnostics_from_idata(fit).passed)
    keep = ["rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight"]
    out = table[keep].astype({"rank": int})
    out["rank"] += 1  # best = 1, as `bimix rank` counts (ArviZ counts from 0)
    out["bad_k"] = [bad[name] for name in out.index]
    return ComparisonResult(
        table=out,
        pareto_k=pd.DataFrame(pareto).T,
        correlated_new_runs=tuple(correlated),
        failed=failed,
    )


def _data_words(fit: az.InferenceData) -> str:
    """Where a fit's data came from, in words: source, group, observations, fingerprint."""
    attrs = fit.attrs
    group = f", group {attrs['data_group']}" if attrs.get("data_group") else ""
    n = fit.observed_data["loss"].size if "observed_data" in fit.groups() else "?"
    print_ = str(attrs.get("data_fingerprint", "?"))[:12]
    return (
        f"{attrs.get('data_source', '<unknown source>')}{group}, {n} observations (data {print_})"
    )
