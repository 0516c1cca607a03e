"""A self-contained HTML report of a fit: diagnostics, forecasts, parameters and the decision.

One file that opens offline: CSS inline, figures embedded as PNG data URIs, no script and no
network reference. Every string from the user's data (domain, run and file names) is escaped by
Jinja2's autoescaping (tables by pandas), so a domain called ``<script>`` is shown as text.

Sections (one function each in :mod:`~bimix_bayes.report.sections`, the decision in
:mod:`~bimix_bayes.report.decision`, the summary in :mod:`~bimix_bayes.report.summary`, the runs
in :mod:`~bimix_bayes.report.runs`): a summary first (what to train at the target, how sure,
against which baseline and its shares, how far the forecasts were found to hold, whether the fit
passed, and a chart of recommended vs baseline shares); the header (data source and hash,
package versions, sampler, seed, draws x chains, wall time); diagnostics with pass/fail badges;
observed vs fitted (posterior predictive check); extrapolation to the target step (50 % and 90 %
bands, least squares and its bootstrap band, held-out points when given, and their scores);
backtests when given; per-domain parameters beside least squares (forest plot and the one
parameter table); the decision (recommended vs baseline, the objective's distribution at each,
P(improvement), constraints); the runs (shares, replicates; every run id in the report links to
its row); an appendix with the spec and the command that reproduces the report.

Examples
--------
>>> import pathlib, tempfile, warnings
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> said = []  # progress: a line as each slow step starts
>>> with warnings.catch_warnings(record=True):  # a FitWarning if the small fit failed its checks
...     path = write_report(idata, d / "report.html", step=4e4, n_bootstrap=0, progress=said.append)
>>> said[0]
'least squares beside the fit...'
>>> page = path.read_text()
>>> page.startswith("<!DOCTYPE html>"), page.count('<img class="figure"')
(True, 5)
>>> [s for s in SECTIONS if f'<section id="{s}">' not in page]
[]
>>> "bimix report FIT.nc --out report.html --step 40000" in page
True
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import arviz as az
import jinja2
import numpy as np
import pandas as pd

from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.bayes.discrepancy import ExtrapolationWarning
from bimix_bayes.bayes.forecast import predict
from bimix_bayes.bayes.persistence import data_from_idata, diagnostics_from_idata
from bimix_bayes.bayes.sizes import SizeExtrapolationWarning, fitted_sizes, size_label
from bimix_bayes.data.files import atomic_write_text
from bimix_bayes.data.holdout_runs import align_holdout_runs
from bimix_bayes.data.labels import ALL_DOMAINS, interval_columns
from bimix_bayes.data.loaders import size_count
from bimix_bayes.data.table import DataError, MixtureData
from bimix_bayes.decision.constraints import MixtureConstraints
from bimix_bayes.evaluation.backtest import BacktestResult
from bimix_bayes.evaluation.metrics import PROBS, coverage, mean_relative_error
from bimix_bayes.evaluation.runner import _bayes_forecasts
from bimix_bayes.evaluation.splits import Split
from bimix_bayes.leastsq.fit import BiMixLeastSquares
from bimix_bayes.report.decision import section_decision, section_next_runs
from bimix_bayes.report.runs import run_anchor, section_runs
from bimix_bayes.report.sections import (
    SECTIONS,
    ReportInputs,
    section_appendix,
    section_backtests,
    section_comparison,
    section_diagnostics,
    section_extrapolation,
    section_fit,
    section_header,
    section_parameters,
)
from bimix_bayes.report.summary import section_summary
from bimix_bayes.report.tables import readable_number

__all__ = ["SECTIONS", "build_report", "check_holdout_sizes", "write_report"]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bimix_bayes.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["run_anchor"] = run_anchor
    env.filters["number"] = readable_number
    return env


def check_holdout_sizes(idata: az.InferenceData, holdout: MixtureData) -> None:
    """Refuse held-out points without model sizes for a fit of several sizes.

    Parameters
    ----------
    idata
        The fit.
    holdout
        The held-out observations.

    Raises
    ------
    DataError
        The fit has sizes and ``holdout`` has no size column (naming ``--size-col``).
    """
    if fitted_sizes(idata) and not holdout.has_sizes:
        labels = ", ".join(size_label(s) for s in fitted_sizes(idata))
        raise DataError(
            f"{holdout.source}: the fit has several model sizes ({labels}) but the held-out "
            "points have none: load them with --size-col naming the column of model sizes "
            "(as the fitted data)"
        )


def _size_holdout_points(
    idata: az.InferenceData, data: MixtureData, holdout: MixtureData, seed: int
) -> pd.DataFrame:
    """The held-out points of a fit of several sizes, each forecast at its own size as the
    ``holdout-size`` backtest does (fitted runs continued with their run effects, new runs as
    new mixtures); columns ``run, step, domain, size, loss, median`` and the intervals."""
    split = Split(name="holdout", train=data, held=holdout.observations)
    parts = []
    for size, held in holdout.observations.groupby("size", sort=True):
        out, _ = _bayes_forecasts(
            idata, split, held.drop(columns="size"), holdout, seed, size=float(size)
        )
        parts.append(out.assign(size=float(size)))
    points = pd.concat(parts, ignore_index=True)
    points = points[points["domain"] != ALL_DOMAINS]  # scored per domain and pooled, as below
    return points.rename(columns={"observed": "loss", "predicted": "median"}).assign(ls=np.nan)


def _scores(points: pd.DataFrame) -> pd.Series:
    """One row of the held-out scores: points, mean relative errors (Bayes, least squares),
    coverage of each Bayesian interval and of the least-squares bootstrap band (%)."""
    row = {
        "points": len(points),
        "MRE Bayes (%)": 100 * mean_relative_error(points["loss"], points["median"]),
        "MRE least squares (%)": 100 * mean_relative_error(points["loss"], points["ls"]),
    }
    for p in PROBS:
        lower, upper = interval_columns(p)
        row[f"Bayes {100 * p:g}% coverage (%)"] = 100 * coverage(
            points["loss"], points[lower], points[upper]
        )
    if "ls_lower" in points:
        row["LS bootstrap 90% coverage (%)"] = 100 * coverage(
            points["loss"], points["ls_lower"], points["ls_upper"]
        )
    return pd.Series(row)


def _score_holdout(
    idata: az.InferenceData,
    data: MixtureData,
    holdout: MixtureData,
    ls: BiMixLeastSquares | None,
    seed: int,
) -> pd.DataFrame:
    """Per-domain scores of the forecasts of every held-out point (observed runs continued, new
    runs as new mixtures): relative error and interval coverage, Bayes vs least squares.

    For a fit of several sizes, each held-out point is forecast at its own size, least squares
    (no size dimension) is left out (its columns NaN), and a row ``all domains at SIZE`` per
    held-out size comes before the pooled ``all domains`` row.
    """
    if fitted_sizes(idata):
        check_holdout_sizes(idata, holdout)
        points = _size_holdout_points(idata, data, holdout, seed)
        points = points[points["median"].notna()].copy()
        table = points.groupby("domain").apply(_scores, include_groups=False)
        for size, part in points.groupby("size", sort=True):
            table.loc[f"all domains at {size_label(float(size))}"] = _scores(part)
        table.loc["all domains"] = _scores(points)
        return table
    obs = holdout.observations
    known = [r for r in holdout.runs if r in set(data.runs)]
    new = [r for r in holdout.runs if r not in set(data.runs)]
    steps = np.unique(obs["step"].to_numpy())
    frames = []
    if known:
        frames.append(predict(idata, steps, runs=known, seed=seed, attach=False))
    if new:
        frames.append(
            predict(idata, steps, mixtures=holdout.mixtures.loc[new], seed=seed, attach=False)
        )
    bayes = pd.concat(frames).rename(columns={"mixture": "run"})
    points = obs.merge(bayes, on=["run", "step", "domain"], how="left")
    if ls is not None:  # None: no domain has BiMix's form (all evaluation-only)
        mix = pd.concat([data.mixtures.loc[known], holdout.mixtures.loc[new]])[list(ls.domains_)]
        ls_pred = ls.predict(mix, steps, interval=0.9, average=False).rename(
            columns={"mixture": "run", "loss": "ls", "lower": "ls_lower", "upper": "ls_upper"}
        )
        points = points.merge(ls_pred, on=["run", "step", "domain"], how="left")
    else:
        points["ls"] = np.nan
    # A point with no forecast (a domain its run gave no share, or one the fit does not have)
    # is left out of every score, not counted as a miss.
    points = points[points["median"].notna()].copy()
    table = points.groupby("domain").apply(_scores, include_groups=False)
    table.loc["all domains"] = _scores(points)
    return table


def build_report(
    idata: az.InferenceData,
    *,
    step: float | None = None,
    holdout: MixtureData | None = None,
    objective: str = "mean",
    constraints: MixtureConstraints | None = None,
    baseline: pd.Series | pd.DataFrame | str | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    command: str | None = None,
    fit_path: str | os.PathLike[str] | None = None,
    backtests: Sequence[BacktestResult] = (),
    compare: Mapping[str, az.InferenceData] | None = None,
    least_squares: BiMixLeastSquares | None = None,
    next_runs: int = 0,
    size: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Render the HTML report of a fit.

    Parameters
    ----------
    idata
        A fit (:meth:`bimix_bayes.bayes.model.BiMixModel.fit` or :func:`bimix_bayes.load_fit`).
    step
        Target of the extrapolation and the decision (default: twice the largest fitted step).
    holdout
        Observations not used in the fit (later checkpoints of fitted runs, or new runs), drawn
        on the extrapolation panels and scored. For a fit of several sizes they need a size
        column (loaded with ``--size-col``): each is forecast at its own size (a fitted run
        keeps its run effects at every size) and scored per held-out size and overall; the
        figure draws those at ``size``.
    objective, constraints, baseline
        Passed to :func:`bimix_bayes.decision.recommend.optimize`.
    n_bootstrap
        Least-squares bootstrap resamples for its band and intervals.
    seed
        Seed of the bootstrap and of the predictive draws.
    command
        The command line that made the report (shown in the appendix).
    fit_path
        The fit file, shown in the header.
    backtests
        Results of :func:`bimix_bayes.evaluation.backtest.backtest` on the same runs, shown in a
        "How far to trust it" section (Bayes beside least squares).
    compare
        Other fits of the same data by name (another law or spec): a "Which model the data
        prefer" section ranks them with this fit by PSIS-LOO over runs.
    least_squares
        The paper's least-squares fit of the same data, when made already (its bootstrap is
        used as it is; ``n_bootstrap`` is then ignored); None fits it here.
    next_runs
        Also propose this many proxy runs to train next, by their value to the decision
        (:func:`~bimix_bayes.decision.next_run.propose_next_runs`; 0: no such section).
    size
        For a fit of several model sizes (required there): the model size the report
        forecasts and decides at; the decision section shows the optimum at every fitted size
        beside it, the extrapolation figure the observed curves of the nearest fitted size
        (and the held-out points at ``size``), and least squares (no size dimension) is left
        out, of the held-out scores too.
    progress
        Optional callable receiving one line as each slow step starts (the least-squares
        bootstrap, scoring the held-out points, the figures, the decision).

    Returns
    -------
    str
        The HTML document.

    Raises
    ------
    DataError
        ``holdout`` without model sizes for a fit of several sizes.
    """
    size = size_count(size)
    if holdout is not None:
        check_holdout_sizes(idata, holdout)  # before any slow step
        holdout = align_holdout_runs(data_from_idata(idata), holdout)
    diag = diagnostics_from_idata(idata)
    diag.warn_if_failed("reporting")
    say = progress or (lambda line: None)
    # Warnings of the forecasts and decisions below are said once each (many sections forecast
    # the same target) and the ones about how far the target lies go into the summary.
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore", FitWarning)  # said once above
            if least_squares is None and not fitted_sizes(idata):  # no size dimension in LS
                resamples = f" ({n_bootstrap} bootstrap resamples)" if n_bootstrap else ""
                say(f"least squares beside the fit{resamples}...")
            fit = ReportInputs.prepare(
                idata,
                step=step,
                n_bootstrap=n_bootstrap,
                seed=seed,
                diag=diag,
                least_squares=least_squares,
                size=size,
            )
            scores = None
            if holdout is not None:
                say(f"scoring the {len(holdout.observations)} held-out observations...")
                scores = _score_holdout(idata, fit.data, holdout, fit.ls, seed)
            say("figures: observed vs fitted, extrapolation, parameters...")
            figures = {
                **section_header(fit, fit_path),
                **section_diagnostics(fit),
                **section_fit(fit),
                **section_extrapolation(fit, holdout, scores),
                **section_parameters(fit),
            }
            say(f"the decision: optimising the mixture ({objective})...")
            decided = section_decision(fit, objective, constraints, baseline)
            if next_runs:
                say(f"what to train next: the value of {next_runs} proxy run(s)...")
            to_train = section_next_runs(fit, next_runs, constraints)
            appendix = section_appendix(
                fit, command=command, fit_path=fit_path, holdout=holdout, objective=objective
            )
            context = {
                **figures,
                **decided,
                **to_train,
                **section_backtests(backtests),
                **section_comparison(fit, compare or {}, name=_fit_name(fit_path)),
                **section_runs(fit.data),
                **appendix,
                "summary": section_summary(
                    fit, decided["decision"], backtests, scores, command=appendix["command"]
                ),
                "sections": SECTIONS,
            }
    finally:  # said even when a section fails
        said = _say_once(caught)
    summary = context["summary"]
    summary["cautions"] = [
        message
        for category, message in said
        if issubclass(category, CAUTIONS) and message != summary["far"]
    ]
    return _environment().get_template("report.html.j2").render(**context)


#: Warnings the report's summary repeats: how far outside the fitted steps and sizes the
#: target lies, and a larger model forecast to lose more.
CAUTIONS = (ExtrapolationWarning, SizeExtrapolationWarning)


def _say_once(caught: Sequence[warnings.WarningMessage]) -> list[tuple[type[Warning], str]]:
    """Emit each distinct warning of ``caught`` once (at the caller of :func:`build_report`)
    and return them as (category, message)."""
    said: dict[tuple[type[Warning], str], None] = {}
    for w in caught:
        said.setdefault((w.category, str(w.message)), None)
    for category, message in said:
        warnings.warn(message, category, stacklevel=3)
    return list(said)


def _fit_name(fit_path: str | os.PathLike[str] | None) -> str:
    """How the comparison names the report's own fit: its file name, or "this fit"."""
    return Path(fit_path).name if fit_path else "this fit"


def write_report(idata: az.InferenceData, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write :func:`build_report` to ``path`` atomically; returns the path."""
    html = build_report(idata, **options)
    return atomic_write_text(path, html)
