"""The mixture decision: :func:`optimize` recommends a mixture and compares it with a baseline.

Built on :mod:`bimix_bayes.decision.solver` (the constrained solver) over the fit's
:mod:`~bimix_bayes.decision.surface` (:mod:`bimix_bayes.decision.problem` sets the problem up).
:func:`optimize` returns a :class:`~bimix_bayes.decision.recommendation.Recommendation`: the
recommended mixture, the posterior distribution of the objective at it and at a baseline (by
default the observed run with the lowest objective), the probability that it beats the baseline,
the spread of the per-draw optima, the unconstrained optimum when constraints bind, and
per-domain forecasts with intervals. :func:`~bimix_bayes.decision.rank.rank` (importable from
here too) orders candidate mixtures (entropy proxies, DoReMi weights, the current recipe) with
intervals and P(best).

Examples
--------
>>> rec = optimize(idata, step=4e10, objective="cvar:0.9")  # doctest: +SKIP
>>> print(rec.format())  # doctest: +SKIP
>>> rank(idata, read_mixtures("candidates.csv"), step=4e10).head()  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.bayes.discrepancy import ExtrapolationWarning, extrapolation_note
from bimix_bayes.bayes.sizes import fitted_sizes, size_label
from bimix_bayes.data.loaders import size_count, step_count
from bimix_bayes.data.mixture_input import mixture_frame
from bimix_bayes.data.table import DataError, MixtureData
from bimix_bayes.decision.constraints import Bounds, MixtureConstraints
from bimix_bayes.decision.objectives import Objective
from bimix_bayes.decision.problem import (
    candidate_shares,
    extend_surface,
    outside_design,
    prepare,
)
from bimix_bayes.decision.rank import rank
from bimix_bayes.decision.recommendation import Recommendation
from bimix_bayes.decision.solver import per_draw_optima, solve
from bimix_bayes.decision.surface import LossSurface, weighted_loss

__all__ = ["Recommendation", "optimize", "rank"]


def _baseline(
    baseline: pd.Series | pd.DataFrame | Mapping[str, Any] | str | None,
    data: MixtureData,
    surface: LossSurface,
    w: np.ndarray,
    objective: Objective,
    train: Sequence[str],
    bounds: Bounds,
) -> tuple[pd.Series, str]:
    """The baseline mixture and where it came from. By default the observed run with the lowest
    objective among those that satisfy the constraints (among all runs when none does)."""
    if baseline is not None and not isinstance(baseline, str):  # a table, Series or dict
        what = "the baseline mixture"
        frame = mixture_frame(baseline, what)
        if len(frame) != 1:
            raise DataError(f"{what}: give one mixture (one row), got {len(frame)} rows")
        counted = surface.counted_columns(w)
        shares = candidate_shares(
            frame, train, counted, what, allow_zero=surface.finite_at_zero
        ).iloc[0]
        return shares.rename(str(frame.index[0] or "baseline")), "given"
    runs = data.mixtures[list(train)].astype(float)
    if isinstance(baseline, str):
        if baseline not in runs.index:
            raise DataError(
                f"baseline {baseline!r} is not an observed run; runs: {list(runs.index)[:10]}"
                f"{' ...' if len(runs) > 10 else ''}"
            )
        counted = surface.counted_columns(w)
        zero = [d for d, c in zip(train, counted, strict=True) if c and runs.loc[baseline, d] <= 0]
        if zero and not surface.finite_at_zero:
            raise DataError(
                f"baseline run {baseline!r} gives no share to {', '.join(zero)}, which count in "
                "the objective (BiMix loss is infinite at r = 0); pick another baseline"
            )
        return runs.loc[baseline], f"observed run {baseline}"
    counted = surface.counted_columns(w)
    usable = (runs.to_numpy()[:, counted] > 0).all(axis=1) | surface.finite_at_zero
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
    n = int(pool.sum())
    return runs.loc[best], (
        f"observed run {best} (the lowest objective of {n} observed run{'s' * (n != 1)}{which})"
    )


def optimize(
    idata: az.InferenceData,
    step: float | str,
    *,
    objective: Objective | str = "mean",
    weights: Mapping[str, float] | None = None,
    domains: Sequence[str] | None = None,
    constraints: MixtureConstraints | None = None,
    baseline: pd.Series | pd.DataFrame | Mapping[str, Any] | str | None = None,
    forecast: bool = True,
    seed: int = 0,
    within_design: bool = False,
    size: float | None = None,
) -> Recommendation:
    """Recommend the mixture that minimises a posterior objective of the loss at ``step`` within
    the ``constraints``, and compare it with the ``baseline``.

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
        The mixture to compare with: a Series of shares (a row of ``pd.read_csv``'s table
        keeps its ``name``), a one-row table as ``rank`` takes, or an observed run's name
        (default: the observed run with the lowest objective).
    forecast
        Also forecast each domain's loss (predictive, with intervals) at both mixtures.
    seed
        Seed of those predictive draws.
    within_design
        Also keep every share within the range of the fitted runs' shares
        (:meth:`~bimix_bayes.decision.constraints.MixtureConstraints.within_design`). Without
        it, a recommendation outside that range carries a note that says so.
    size
        The target model size, for a fit of data with model sizes (required there): the
        decision is made at that size, and :attr:`Recommendation.by_size` shows the optimum at
        every fitted size beside it (how the recommendation moves with scale).

    Returns
    -------
    Recommendation

    Examples
    --------
    >>> rec = optimize(idata, 4e10, objective="cvar:0.9")  # doctest: +SKIP
    >>> print(rec.format())  # doctest: +SKIP
    """
    step, size = step_count(step), size_count(size)
    objective = Objective.parse(objective) if isinstance(objective, str) else objective
    diag, surface, data, w = prepare(idata, step, weights, domains, size)
    train = list(surface.columns)
    constraints = constraints or MixtureConstraints()
    if data.volume == "tokens":
        constraints = constraints.with_total_tokens(step)
    design = data.mixtures.loc[list(data.runs), train].astype(float)
    if within_design:
        constraints = constraints.within_design(design)
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
    per_draw = per_draw_optima(surface, w, bounds)
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
    fitted = data.observations["step"].to_numpy(dtype=float)
    far = extrapolation_note(
        np.array([step]), first=fitted.min(), last=fitted.max(), unit=data.volume
    )
    if far:
        notes.append(far)
    broken = _violations(base, bounds)
    if broken:
        notes.append("the baseline breaks the constraints: " + "; ".join(broken))
    outside = outside_design(mixture, design)
    if outside:
        notes.append(
            "the recommended mixture lies outside the fitted runs' shares ("
            + "; ".join(outside)
            + "): the law is extrapolated there, so trust it less; within_design=True "
            "(--within-design) keeps every share inside that range"
        )
    forecasts, p_run = None, None
    if forecast:
        forecasts, p_run, note = _forecasts(idata, step, mixture, base, w, surface, seed, size)
        if note:
            notes.append(note)
    draws_df = pd.DataFrame(draws)
    return Recommendation(
        step=float(step),
        unit=data.volume,
        objective=objective,
        weights=pd.Series(w, index=list(surface.domains))[w > 0],
        mixture=mixture,
        baseline=base.rename("baseline"),
        baseline_source=base_source,
        baseline_run=None if isinstance(baseline, pd.Series | pd.DataFrame) else str(base.name),
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
        diagnostics=diag,
        size=None if size is None else float(size),
        size_kind=str(idata.attrs.get("size_kind", "")),
        by_size=None if size is None else _by_size(idata, step, size, objective, bounds, w, train),
    )


def _by_size(
    idata: az.InferenceData,
    step: float,
    size: float,
    objective: Objective,
    bounds: Bounds,
    w: np.ndarray,
    train: list[str],
) -> pd.DataFrame:
    """The optimum at ``step`` at every fitted model size and at ``size``: its shares, its
    objective and the sd of the per-draw optima (how the recommendation moves with scale)."""
    rows = {}
    for s in sorted({*fitted_sizes(idata), float(size)}):
        surface = LossSurface.from_idata(idata, step, s)
        surface = extend_surface(surface, train)
        result = solve(surface, w, objective, bounds)
        spread = per_draw_optima(surface, w, bounds).std(axis=0)
        label = size_label(s) + (" *" if s == float(size) else "")
        rows[label] = {
            **dict(zip(train, result.shares, strict=True)),
            **{f"sd_{c}": v for c, v in zip(train, spread, strict=True)},
            "objective": float(result.value),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _p_lower(a: np.ndarray, b: np.ndarray) -> float:
    """P(a < b) over paired draws, ties counting half (identical mixtures give 0.5)."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.mean(a < b) + 0.5 * np.mean(a == b))


def _violations(shares: pd.Series, bounds: Bounds) -> list[str]:
    """Each bound the mixture breaks, in words (with the reason of the bound)."""
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


def _forecasts(idata, step, mixture, base, w, surface, seed, size=None):
    """Per-domain predictive forecasts at both mixtures, and P(a run at one beats the other)."""
    from bimix_bayes.bayes.forecast import forecast_draws, summarise_draws

    eval_domains = [str(d) for d in idata.posterior["domain"].to_numpy()]
    both = pd.DataFrame([mixture.rename("recommended"), base.rename("baseline")])
    zero = [d for d in eval_domains if d in both.columns and (both[d] <= 0).any()]
    if zero and not surface.finite_at_zero:
        return (
            None,
            None,
            (
                f"no per-domain forecasts: {', '.join(zero)} get(s) no share in one of the "
                "mixtures (BiMix is infinite at r = 0)"
            ),
        )
    weights = dict(zip(surface.domains, w, strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # already said once
        warnings.simplefilter("ignore", ExtrapolationWarning)  # a note of the recommendation
        draws = forecast_draws(
            idata,
            [step],
            mixtures=both,
            weights={d: weights[d] for d in eval_domains},
            seed=seed,
            size=size,
        )
    # Compared at float32, the precision the draws were once read back at (same P as before).
    avg = draws.isel(step=0, domain=-1).astype(np.float32)
    rec_runs = avg.sel(mixture="recommended").to_numpy().ravel()
    base_runs = avg.sel(mixture="baseline").to_numpy().ravel()
    return summarise_draws(draws, prob=(0.5, 0.9)), _p_lower(rec_runs, base_runs), None
