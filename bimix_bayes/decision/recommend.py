"""The mixture decision: recommend, compare with a baseline, rank candidates.

Built on :mod:`bimix_bayes.decision.solver` (the loss surface and the solver). :func:`optimize`
returns a :class:`Recommendation`: the recommended mixture, the posterior distribution of the
objective at it and at a baseline (by default the observed run with the lowest objective), the
probability that it beats the baseline, the spread of the per-draw optima, the unconstrained
optimum when constraints bind, and per-domain forecasts with intervals. :func:`rank` orders
candidate mixtures (entropy proxies, DoReMi weights, the current recipe) with intervals and P(best).

Examples
--------
>>> rec = optimize(idata, step=4e10, objective="cvar:0.9")  # doctest: +SKIP
>>> print(rec.format())  # doctest: +SKIP
>>> rank(idata, read_mixtures("candidates.csv"), step=4e10).head()  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.bayes.persistence import data_from_idata, diagnostics_from_idata
from bimix_bayes.data.table import DataError, prediction_shares
from bimix_bayes.decision.constraints import MixtureConstraints
from bimix_bayes.decision.objectives import Objective
from bimix_bayes.decision.solver import (
    LossSurface,
    SolveResult,
    closed_form_optimum,
    objective_weights,
    solve,
    weighted_loss,
)

__all__ = ["Recommendation", "optimize", "rank"]


# ============================================================================ the decision
@dataclass
class Recommendation:
    """The recommended mixture, the baseline it is compared with, and how sure the choice is.

    Attributes
    ----------
    step, unit
        The target (``unit`` is ``"steps"`` or ``"tokens"``, as in the fitted data).
    objective
        What was minimised.
    weights
        Weight of each evaluation domain in the objective (sums to 1).
    mixture
        The recommended share of every training domain.
    baseline, baseline_source
        The mixture it is compared with and where it came from.
    baseline_run
        The observed run the baseline is (``None`` for a given mixture).
    draws
        Per posterior draw, the weighted loss of ``recommended``, ``baseline`` and (when
        constraints bind) ``unconstrained``.
    p_beats_baseline
        Posterior probability that the recommended mixture has the lower weighted loss (the
        law's loss: which mixture is better in expectation).
    p_run_beats_baseline
        Probability that one new run at the recommended mixture ends below one new run at the
        baseline, each with its own run-to-run luck (``None`` without forecasts).
    solve
        The solver's report (KKT residual, iterations, time).
    constraints
        Per training domain: bounds, why they hold, and whether the optimum sits on one.
    unconstrained
        The optimum under ``sum r = 1`` alone, when some constraint binds (else ``None``).
    draw_optima
        Per domain: the spread of the optimum of each posterior draw (mean, sd, 5/50/95 %).
    forecasts
        Posterior predictive loss per domain (and the average) at the recommended mixture and
        the baseline, from :func:`bimix_bayes.bayes.forecast.predict`.
    fit_passed
        False when the fit failed its convergence diagnostics.
    """

    step: float
    unit: str
    objective: Objective
    weights: pd.Series
    mixture: pd.Series
    baseline: pd.Series
    baseline_source: str
    baseline_run: str | None
    draws: pd.DataFrame
    p_beats_baseline: float
    p_run_beats_baseline: float | None
    solve: SolveResult
    constraints: pd.DataFrame
    unconstrained: pd.Series | None
    draw_optima: pd.DataFrame
    forecasts: pd.DataFrame | None
    fit_passed: bool = True
    notes: list[str] = field(default_factory=list)

    def objective_table(self, prob: float = 0.9) -> pd.DataFrame:
        """The objective and the posterior of the weighted loss at each mixture."""
        rows = {}
        for name in self.draws.columns:
            v = self.draws[name].to_numpy()
            rows[name] = {
                "objective": self.objective(v),
                "mean": v.mean(),
                "median": np.median(v),
                f"lower_{100 * prob:g}": np.quantile(v, (1 - prob) / 2),
                f"upper_{100 * prob:g}": np.quantile(v, (1 + prob) / 2),
            }
        return pd.DataFrame(rows).T

    @property
    def verdict(self) -> str:
        """One sentence: is the recommendation worth a run, given the posterior and run noise?

        ``P(one run beats one run)`` below 0.6 means the expected gain is within one run's own
        variation: a single confirmation run will not tell the two mixtures apart (the closed
        loop in ``reports/closed_loop.md`` is such a case).
        """
        imp = self.improvement
        if np.all(imp == 0):
            return "the recommendation is the baseline mixture"
        obj = self.objective_table()["objective"]
        gain = float(obj["baseline"] - obj["recommended"])  # in the objective's own terms
        if self.p_beats_baseline < 0.5:
            return "the baseline is expected to do better than the recommendation (constraints?)"
        if self.p_run_beats_baseline is not None and self.p_run_beats_baseline < 0.6:
            return (
                f"the expected gain ({gain:.4g}) is within run-to-run variation: one run at each "
                f"mixture would show it only {100 * self.p_run_beats_baseline:.0f}% of the time; "
                "the two mixtures are practically equivalent"
            )
        if self.p_beats_baseline < 0.9:
            return f"the recommendation is probably better (gain {gain:.4g}), but not surely"
        return f"the recommendation is expected to be better by {gain:.4g}"

    @property
    def improvement(self) -> np.ndarray:
        """Per draw: baseline loss minus recommended loss (positive = recommended better)."""
        return (self.draws["baseline"] - self.draws["recommended"]).to_numpy()

    def domain_table(self) -> pd.DataFrame:
        """Per training domain: shares, per-draw optimum spread, bounds and forecasts."""
        table = pd.DataFrame(
            {
                "recommended": self.mixture,
                "baseline": self.baseline,
                "draw_optimum_mean": self.draw_optima["mean"],
                "draw_optimum_q05": self.draw_optima["q05"],
                "draw_optimum_q95": self.draw_optima["q95"],
            }
        )
        if self.unconstrained is not None:
            table["unconstrained"] = self.unconstrained
        table = table.join(self.constraints[["lower", "upper", "status"]])
        table["weight"] = self.weights.reindex(table.index).fillna(0.0)
        if self.forecasts is not None:
            f = self.forecasts
            for who in ("recommended", "baseline"):
                part = f[f["mixture"] == who].set_index("domain")
                table[f"forecast_{who}_median"] = part["median"]
                table[f"forecast_{who}_lower_90"] = part["lower_90"]
                table[f"forecast_{who}_upper_90"] = part["upper_90"]
        table.index.name = "domain"
        return table

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON-able values."""
        imp = self.improvement
        obj = self.objective_table()
        return {
            "target": {"step": self.step, "unit": self.unit},
            "objective": {"name": self.objective.name, "label": self.objective.label},
            "domain_weights": _floats(self.weights),
            "recommended": _floats(self.mixture),
            "baseline": {
                "source": self.baseline_source,
                "run": self.baseline_run,
                "shares": _floats(self.baseline),
            },
            "objective_summary": {k: _floats(v) for k, v in obj.iterrows()},
            "p_recommended_beats_baseline": self.p_beats_baseline,
            "p_run_at_recommended_beats_run_at_baseline": self.p_run_beats_baseline,
            "verdict": self.verdict,
            "improvement": {
                "mean": float(imp.mean()),
                "lower_90": float(np.quantile(imp, 0.05)),
                "upper_90": float(np.quantile(imp, 0.95)),
            },
            "unconstrained": None if self.unconstrained is None else _floats(self.unconstrained),
            "per_draw_optima": {k: _floats(v) for k, v in self.draw_optima.iterrows()},
            "constraints": {
                k: {c: (v[c] if isinstance(v[c], str) else float(v[c])) for c in v.index}
                for k, v in self.constraints.iterrows()
            },
            "solver": {
                "kkt_residual": self.solve.kkt_residual,
                "converged": self.solve.converged,
                "iterations": self.solve.iterations,
                "seconds": self.solve.seconds,
                "message": self.solve.message,
            },
            "forecasts": None
            if self.forecasts is None
            else self.forecasts.replace({np.nan: None}).to_dict(orient="records"),
            "fit_passed": self.fit_passed,
            "notes": list(self.notes),
        }

    def format(self) -> str:
        """A plain-text report for the terminal."""
        return _format_recommendation(self)


def _floats(series: pd.Series) -> dict[str, float]:
    return {str(k): float(v) for k, v in series.items()}


def _training_domains(idata: az.InferenceData, surface: LossSurface) -> tuple[list[str], Any]:
    data = data_from_idata(idata)
    train = [str(c) for c in data.mixtures.columns]
    missing = [d for d in surface.domains if d not in train]
    if missing:
        raise DataError(
            f"evaluation domain(s) {missing} have no training share in the fitted data; BiMix "
            "maps each evaluation domain to the training domain of the same name"
        )
    return train, data


def _extend(surface: LossSurface, domains: Sequence[str]) -> LossSurface:
    """The surface over all training domains (those without an evaluation domain get no
    weight, so their placeholder curve is never used)."""
    if list(surface.domains) == list(domains):
        return surface
    idx = [surface.domains.index(d) if d in surface.domains else -1 for d in domains]
    take = np.array([max(i, 0) for i in idx])
    has = np.array([i >= 0 for i in idx])
    return LossSurface(
        tuple(domains),
        np.where(has, surface.log_k[:, take], 0.0),
        np.where(has, surface.alpha[:, take], 0.0),
        surface.step,
    )


def _prepare(idata: az.InferenceData, step: float, weights, domains):
    """Fit check, the loss surface over training domains, and the domain weights."""
    diag = diagnostics_from_idata(idata)
    if not diag.passed:
        warnings.warn(
            "choosing a mixture from a fit that FAILED its convergence diagnostics; the decision "
            "cannot be trusted.\n" + diag.report(),
            FitWarning,
            stacklevel=3,
        )
    surface = LossSurface.from_idata(idata, step)
    train, data = _training_domains(idata, surface)
    w_eval = dict(
        zip(surface.domains, objective_weights(surface.domains, weights, domains), strict=True)
    )
    w = np.array([w_eval.get(d, 0.0) for d in train])
    return diag, _extend(surface, train), data, w


def _candidate_shares(
    mixtures: pd.DataFrame | pd.Series, train: Sequence[str], w: np.ndarray, what: str
) -> pd.DataFrame:
    """Shares of every training domain; counted domains must lie in (0, 1]."""
    frame = mixtures.to_frame().T if isinstance(mixtures, pd.Series) else mixtures
    missing = [d for d in train if d not in frame.columns]
    if missing:
        raise DataError(
            f"{what} lack(s) the training domain(s) {missing}; columns: {list(frame.columns)}"
        )
    counted = [d for d, wi in zip(train, w, strict=True) if wi > 0]
    prediction_shares(frame, counted)  # checks (0, 1] and warns when rows do not sum to 1
    shares = frame[list(train)].astype(float)
    if (shares < 0).to_numpy().any():
        raise DataError(f"{what}: shares must be non-negative")
    return shares


def _baseline(
    baseline: pd.Series | str | None, data, surface, w, objective, train, bounds
) -> tuple[pd.Series, str]:
    """The baseline mixture and where it came from. By default the observed run with the lowest
    objective among those that satisfy the constraints (among all runs when none does)."""
    if isinstance(baseline, pd.Series):
        shares = _candidate_shares(baseline, train, w, "the baseline mixture").iloc[0]
        return shares.rename(str(baseline.name or "baseline")), "given"
    runs = data.mixtures[list(train)].astype(float)
    if isinstance(baseline, str):
        if baseline not in runs.index:
            raise DataError(
                f"baseline {baseline!r} is not an observed run; runs: {list(runs.index)[:10]}"
                f"{' ...' if len(runs) > 10 else ''}"
            )
        counted = w > 0
        zero = [d for d, c in zip(train, counted, strict=True) if c and runs.loc[baseline, d] <= 0]
        if zero:
            raise DataError(
                f"baseline run {baseline!r} gives no share to {', '.join(zero)}, which count in "
                "the objective (BiMix loss is infinite at r = 0); pick another baseline"
            )
        return runs.loc[baseline], f"observed run {baseline}"
    counted = w > 0
    usable = (runs.to_numpy()[:, counted] > 0).all(axis=1)
    if not usable.any():
        raise DataError(
            "no observed run gives every counted domain a positive share; pass a baseline mixture"
        )
    shares = runs.to_numpy()
    feasible = usable & np.all(
        (shares >= bounds.lower - 1e-9) & (shares <= bounds.upper + 1e-9), axis=1
    )
    pool, which = (feasible, "that satisfy the constraints") if feasible.any() else (usable, "")
    if bounds.binding_any and not feasible.any():
        which = "; none satisfies the constraints"
    values = weighted_loss(surface, w, shares[pool])
    scores = np.array([objective(values[:, j]) for j in range(values.shape[1])])
    best = runs.index[pool][int(np.argmin(scores))]
    if not bounds.binding_any:
        which = ""
    elif feasible.any():
        which = " " + which
    return runs.loc[best], (
        f"observed run {best} (the lowest objective of {int(pool.sum())} observed runs{which})"
    )


def optimize(
    idata: az.InferenceData,
    step: float,
    *,
    objective: Objective | str = "mean",
    weights: Mapping[str, float] | None = None,
    domains: Sequence[str] | None = None,
    constraints: MixtureConstraints | None = None,
    baseline: pd.Series | str | None = None,
    forecast: bool = True,
    seed: int = 0,
) -> Recommendation:
    """Recommend the mixture that minimises a posterior objective of the loss at ``step``.

    Parameters
    ----------
    idata
        A fit (:meth:`bimix_bayes.bayes.model.BiMixModel.fit` or :func:`bimix_bayes.load_fit`).
    step
        Target step (or tokens, as in the fitted data), e.g. the planned run's length.
    objective
        ``"mean"`` (expected posterior loss), ``"quantile:0.9"`` or ``"cvar:0.9"``.
    weights
        Weight of each evaluation domain in the objective (default: the plain mean).
    domains
        Count only these evaluation domains.
    constraints
        Bounds, fixed shares and data availability. With a fit on tokens, ``total_tokens``
        defaults to ``step``.
    baseline
        The mixture to compare with: a Series of shares, or an observed run's name (default: the
        observed run with the lowest objective).
    forecast
        Also forecast each domain's loss (predictive, with intervals) at both mixtures.
    seed
        Seed of those predictive draws.

    Returns
    -------
    Recommendation

    Examples
    --------
    >>> rec = optimize(idata, 4e10, objective="cvar:0.9")  # doctest: +SKIP
    >>> print(rec.format())  # doctest: +SKIP
    """
    objective = Objective.parse(objective) if isinstance(objective, str) else objective
    diag, surface, data, w = _prepare(idata, step, weights, domains)
    train = list(surface.domains)
    constraints = constraints or MixtureConstraints()
    if data.volume == "tokens":
        constraints = constraints.with_total_tokens(step)
    bounds = constraints.bounds(train)
    result = solve(surface, w, objective, bounds)
    mixture = pd.Series(result.shares, index=train, name="recommended")
    base, base_source = _baseline(baseline, data, surface, w, objective, train, bounds)
    draws = {
        "recommended": weighted_loss(surface, w, result.shares),
        "baseline": weighted_loss(surface, w, base.to_numpy()),
    }
    unconstrained = None
    status = bounds.status(result.shares)
    if any(s in ("at lower bound", "at upper bound") for s in status) or any(
        s == "fixed" for s in status
    ):
        free = solve(surface, w, objective, None)
        unconstrained = pd.Series(free.shares, index=train, name="unconstrained")
        draws["unconstrained"] = weighted_loss(surface, w, free.shares)
    per_draw = closed_form_optimum(
        w * np.exp(surface.log_k), surface.alpha, bounds.lower, bounds.upper
    )
    draw_optima = pd.DataFrame(
        {
            "mean": per_draw.mean(axis=0),
            "sd": per_draw.std(axis=0),
            "q05": np.quantile(per_draw, 0.05, axis=0),
            "median": np.median(per_draw, axis=0),
            "q95": np.quantile(per_draw, 0.95, axis=0),
        },
        index=train,
    )
    table = pd.DataFrame(
        {
            "lower": bounds.lower,
            "upper": bounds.upper,
            "share": result.shares,
            "status": status,
            "lower_reason": bounds.lower_reason,
            "upper_reason": bounds.upper_reason,
        },
        index=train,
    )
    notes = []
    broken = _violations(base, bounds)
    if broken:
        notes.append("the baseline breaks the constraints: " + "; ".join(broken))
    forecasts, p_run = None, None
    if forecast:
        forecasts, p_run, note = _forecasts(idata, step, mixture, base, w, surface, seed)
        if note:
            notes.append(note)
    draws_df = pd.DataFrame(draws)
    return Recommendation(
        step=float(step),
        unit=data.volume,
        objective=objective,
        weights=pd.Series(w, index=train)[w > 0],
        mixture=mixture,
        baseline=base.rename("baseline"),
        baseline_source=base_source,
        baseline_run=None if isinstance(baseline, pd.Series) else str(base.name),
        draws=draws_df,
        p_beats_baseline=_p_lower(draws_df["recommended"], draws_df["baseline"]),
        p_run_beats_baseline=p_run,
        solve=result,
        constraints=table,
        unconstrained=unconstrained,
        draw_optima=draw_optima,
        forecasts=forecasts,
        fit_passed=diag.passed,
        notes=notes,
    )


def _p_lower(a, b) -> float:
    """P(a < b) over paired draws, ties counting half (identical mixtures give 0.5)."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.mean(a < b) + 0.5 * np.mean(a == b))


def _violations(shares: pd.Series, bounds) -> list[str]:
    out = []
    for d, lo, hi, lo_why, hi_why in zip(
        bounds.domains,
        bounds.lower,
        bounds.upper,
        bounds.lower_reason,
        bounds.upper_reason,
        strict=True,
    ):
        r = float(shares[d])
        if r < lo - 1e-9:
            out.append(f"{d} {100 * r:.3g}% < {100 * lo:.3g}% ({lo_why})")
        elif r > hi + 1e-9:
            out.append(f"{d} {100 * r:.3g}% > {100 * hi:.3g}% ({hi_why})")
    return out


def _forecasts(idata, step, mixture, base, w, surface, seed):
    """Per-domain predictive forecasts at both mixtures, and P(a run at one beats the other)."""
    from bimix_bayes.bayes.forecast import predict

    eval_domains = [str(d) for d in idata.posterior["domain"].to_numpy()]
    both = pd.DataFrame([mixture.rename("recommended"), base.rename("baseline")])
    zero = [d for d in eval_domains if (both[d] <= 0).any()]
    if zero:
        return (
            None,
            None,
            (
                f"no per-domain forecasts: {', '.join(zero)} get(s) no share in one of the "
                "mixtures (BiMix is infinite at r = 0)"
            ),
        )
    weights = dict(zip(surface.domains, w, strict=True))
    # A light copy, so that the predictive draws never replace the caller's `predictions`.
    light = az.InferenceData(
        posterior=idata.posterior,
        observed_data=idata.observed_data,
        constant_data=idata.constant_data,
    )
    light.attrs = dict(idata.attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # already said once
        df = predict(
            light,
            [step],
            mixtures=both[eval_domains],
            prob=(0.5, 0.9),
            weights={d: weights[d] for d in eval_domains},
            seed=seed,
            attach=True,
        )
    avg = light.predictions["loss"].isel(step=0, domain=-1)
    rec_runs = avg.sel(mixture="recommended").to_numpy().ravel()
    base_runs = avg.sel(mixture="baseline").to_numpy().ravel()
    return df, _p_lower(rec_runs, base_runs), None


def rank(
    idata: az.InferenceData,
    candidates: pd.DataFrame,
    step: float,
    *,
    objective: Objective | str = "mean",
    weights: Mapping[str, float] | None = None,
    domains: Sequence[str] | None = None,
    prob: float = 0.9,
) -> pd.DataFrame:
    """Rank candidate mixtures by a posterior objective of the weighted loss at ``step``.

    Parameters
    ----------
    candidates
        One row per mixture (the index names it), one column per training domain.
    prob
        Probability of the central interval of each candidate's weighted loss.

    Returns
    -------
    pandas.DataFrame
        Sorted best first: ``rank, mixture, objective, mean, median, lower_XX, upper_XX,
        p_best`` (the posterior probability that the candidate has the lowest weighted loss of
        all candidates) and ``p_beats_next`` (that it beats the next one down).

    Examples
    --------
    >>> rank(idata, read_mixtures("candidates.csv"), step=4e10)  # doctest: +SKIP
    """
    objective = Objective.parse(objective) if isinstance(objective, str) else objective
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob!r}")
    diag, surface, _, w = _prepare(idata, step, weights, domains)
    shares = _candidate_shares(candidates, surface.domains, w, "the candidate mixtures")
    if len(shares) == 0:
        raise DataError("no candidate mixtures to rank")
    if shares.index.has_duplicates:
        raise DataError(
            f"candidate names repeat: {sorted(set(shares.index[shares.index.duplicated()]))}"
        )
    values = weighted_loss(surface, w, shares.to_numpy())  # (draws, candidates)
    best = np.argmin(values, axis=1)
    lo_name, hi_name = f"lower_{100 * prob:g}", f"upper_{100 * prob:g}"
    table = pd.DataFrame(
        {
            "mixture": [str(i) for i in shares.index],
            "objective": [objective(values[:, j]) for j in range(values.shape[1])],
            "mean": values.mean(axis=0),
            "median": np.median(values, axis=0),
            lo_name: np.quantile(values, (1 - prob) / 2, axis=0),
            hi_name: np.quantile(values, (1 + prob) / 2, axis=0),
            "p_best": np.bincount(best, minlength=values.shape[1]) / values.shape[0],
        }
    )
    order = np.argsort(table["objective"].to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    sorted_values = values[:, order]
    table["p_beats_next"] = np.append(
        np.mean(sorted_values[:, :-1] < sorted_values[:, 1:], axis=0), np.nan
    )
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table.attrs.update(
        objective=objective.name,
        objective_label=objective.label,
        step=float(step),
        fit_passed=diag.passed,
    )
    return table


# ============================================================================ formatting
def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _format_recommendation(rec: Recommendation) -> str:
    lines = []
    if not rec.fit_passed:
        lines.append(
            "!!! the fit FAILED its convergence diagnostics: do not trust this decision !!!"
        )
    counted = list(rec.weights.index)
    plain = np.allclose(rec.weights.to_numpy(), 1 / len(counted))
    what = (
        f"plain mean over {len(counted)} domains"
        if plain
        else "weighted mean (" + ", ".join(f"{d} {v:.3g}" for d, v in rec.weights.items()) + ")"
    )
    lines.append(
        f"target: {rec.step:.6g} {rec.unit}; loss = {what}; objective: {rec.objective.label}"
    )
    lines.append(f"baseline: {rec.baseline_source}")
    lines.append("")
    t = rec.domain_table()
    has_fc = "forecast_recommended_median" in t
    header = (
        f"{'domain':<16}{'recommended':>12}{'baseline':>10}   {'per-draw optima 5-95%':<22}"
        f"{'bounds':<16}{'status':<16}"
    )
    if has_fc:
        header += f"{'forecast: recommended':<26}{'baseline':<24}"
    lines.append(header)
    for d, row in t.iterrows():
        bounds = f"[{row['lower']:.3g}, {row['upper']:.3g}]"
        line = (
            f"{d!s:<16}{_pct(row['recommended']):>12}{_pct(row['baseline']):>10}   "
            f"{_pct(row['draw_optimum_q05']) + ' - ' + _pct(row['draw_optimum_q95']):<22}"
            f"{bounds:<16}{row['status']:<16}"
        )
        if has_fc and not np.isnan(row["forecast_recommended_median"]):
            for who, width in (("recommended", 26), ("baseline", 24)):
                cell = (
                    f"{row[f'forecast_{who}_median']:.4f} "
                    f"[{row[f'forecast_{who}_lower_90']:.4f}, "
                    f"{row[f'forecast_{who}_upper_90']:.4f}]"
                )
                line += f"{cell:<{width}}"
        lines.append(line)
    lines.append(
        "(per-draw optima: the optimum under each posterior draw; a narrow range is a stable "
        "choice)"
    )
    if has_fc:
        lines.append("(forecasts: posterior predictive median [90% interval] of a run's loss)")
    lines.append("")
    obj = rec.objective_table()
    lines.append(f"{'weighted loss':<16}{'objective':>10}{'median':>10}   90% interval")
    for name, row in obj.iterrows():
        lines.append(
            f"{name!s:<16}{row['objective']:>10.5f}{row['median']:>10.5f}   "
            f"[{row['lower_90']:.5f}, {row['upper_90']:.5f}]"
        )
    imp = rec.improvement
    lines.append("")
    lines.append(
        f"P(recommended beats baseline) = {rec.p_beats_baseline:.3f} (expected loss); "
        f"improvement {imp.mean():.5f} [90%: {np.quantile(imp, 0.05):.5f}, "
        f"{np.quantile(imp, 0.95):.5f}]"
    )
    if rec.p_run_beats_baseline is not None:
        lines.append(
            f"P(one run at recommended ends below one run at baseline) = "
            f"{rec.p_run_beats_baseline:.3f} (run-to-run variation included)"
        )
    lines.append(f"VERDICT: {rec.verdict}")
    if rec.unconstrained is not None:
        cost = obj.loc["recommended", "objective"] - obj.loc["unconstrained", "objective"]
        lines.append(
            "constraints bind; the unconstrained optimum would be "
            + ", ".join(f"{d} {_pct(v)}" for d, v in rec.unconstrained.items())
            + f" (its objective is lower by {cost:.5f})"
        )
    s = rec.solve
    lines.append(
        f"solver: KKT residual {s.kkt_residual:.1e} "
        f"({'converged' if s.converged else 'NOT converged'}),"
        f" {s.iterations} iterations, {s.seconds:.3f} s over {len(rec.draws)} posterior draws"
    )
    lines.extend(f"note: {n}" for n in rec.notes)
    return "\n".join(lines)
