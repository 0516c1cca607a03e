"""The summary at the top of the report: the first screen answers what to train, how sure the
choice is, what it is compared with, how far the forecasts can be trusted, and whether the fit
passed its diagnostics.

:func:`section_summary` reads what the other sections computed (the decision of
:func:`~bimix_bayes.report.decision.section_decision`, the backtests, the held-out scores) and
adds nothing slow. How far to trust the forecasts (:func:`trust_lines`) comes from the
backtests given to the report and from the held-out points; with neither, the summary says so and
gives the command that would add a backtest.

Examples
--------
>>> from bimix_bayes.report.decision import section_decision
>>> fit = ReportInputs.prepare(idata, step=None, n_bootstrap=0, seed=0)
>>> summary = section_summary(fit, section_decision(fit)["decision"], command="bimix report f.nc")
>>> summary["trust"], summary["trust_command"]
([], 'bimix report f.nc --backtest horizon:0.5')
>>> fit_status(fit.diag)["passed"] == fit.diag.passed
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.bayes.diagnostics import FitDiagnostics
from bimix_bayes.bayes.discrepancy import extrapolation_note
from bimix_bayes.bayes.sizes import size_label
from bimix_bayes.data.labels import ALL_POINTS
from bimix_bayes.evaluation.backtest import BacktestResult
from bimix_bayes.report.sections import ReportInputs

__all__ = ["fit_status", "section_summary", "trust_lines"]

#: The backtest the summary suggests when none was run: fit each run's first half of steps and
#: forecast the rest, as far ahead as the default target (twice the last checkpoint).
SUGGESTED_BACKTEST = "horizon:0.5"
METHOD_LABELS = {"bayes": "Bayes", "ls": "least squares", "lightgbm": "LightGBM"}


def fit_status(diag: FitDiagnostics) -> dict[str, Any]:
    """Whether the fit passed its convergence diagnostics, and the first reason when it did not
    (``passed``, ``reason``: "" when it passed).

    Examples
    --------
    >>> from bimix_bayes.bayes.persistence import diagnostics_from_idata
    >>> sorted(fit_status(diagnostics_from_idata(idata)))
    ['passed', 'reason']
    """
    problems = list(diag.problems)
    reason = problems[0] if problems else ""
    if len(problems) > 1:
        reason += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return {"passed": bool(diag.passed), "reason": reason}


def _method_scores(result: BacktestResult) -> list[str]:
    parts = []
    for method, label in METHOD_LABELS.items():
        key = (method, ALL_POINTS)
        if key not in result.metrics.index:
            continue
        row = result.metrics.loc[key]
        text = f"{label} MRE {100 * row['mre']:.1f}%"
        if np.isfinite(row.get("cover_90", np.nan)):
            text += f", 90% interval covers {100 * row['cover_90']:.0f}%"
        parts.append(text)
    return parts


def trust_lines(
    backtests: Sequence[BacktestResult] = (), scores: pd.DataFrame | None = None
) -> list[str]:
    """One line per backtest (its protocol, held-out points, the mean relative error and 90 %
    coverage of each method over all of them) and one for the held-out points' ``scores``.

    Parameters
    ----------
    backtests
        Results of :func:`bimix_bayes.evaluation.backtest.backtest`.
    scores
        The report's per-domain scores of held-out points (its ``"all domains"`` row is read).

    Examples
    --------
    >>> from bimix_bayes.evaluation.backtest import backtest
    >>> result = backtest(data, "last-checkpoint", method="ls", n_bootstrap=10)
    >>> line = trust_lines([result])[0]
    >>> line.startswith("backtest last-checkpoint ("), "least squares MRE" in line
    (True, True)
    """
    lines = []
    for result in backtests:
        pooled = result.headline().xs(ALL_POINTS, level="domain", drop_level=False)
        held = f" ({pooled['n'].max():.0f} held-out points)" if len(pooled) else ""
        scored = "; ".join(_method_scores(result)) or "no score"
        failed = result.failed_fits()
        caveat = f"; {failed} Bayesian fit(s) FAILED their diagnostics" if failed else ""
        lines.append(f"backtest {result.protocol}{held}: {scored}{caveat}")
    if scores is not None and "all domains" in scores.index:
        row = scores.loc["all domains"]
        ls_mre = row.get("MRE least squares (%)", np.nan)
        ls = f"; least squares MRE {ls_mre:.1f}%" if np.isfinite(ls_mre) else ""
        lines.append(
            f"held-out points ({row['points']:.0f}): Bayes MRE {row['MRE Bayes (%)']:.1f}%, "
            f"90% interval covers {row['Bayes 90% coverage (%)']:.0f}%{ls}"
        )
    return lines


def reach_caveats(fit: ReportInputs, backtests: Sequence[BacktestResult] = ()) -> list[str]:
    """A line per backtest that forecast much nearer its fitted range than the report's target
    lies from the fit's: its scores say little about a forecast that far.

    ``horizon:F`` forecast up to ``1/F`` times its last fitted step; ``holdout-size:N`` up to
    ``N`` over its largest fitted size. The target lies ``target / last fitted step`` (and,
    for a fit of several sizes, ``size / largest fitted size``) beyond; a caveat when that is
    more than 1.5 times the backtest's reach.
    """
    lines = []
    step_reach = fit.target / fit.max_step
    sizes = sorted(float(s) for s in fit.data.sizes) if fit.size is not None else []
    size_reach = fit.size / sizes[-1] if sizes else 1.0
    for result in backtests:
        p = result.protocol
        if p.kind == "horizon" and step_reach > 1.5 / float(p.value):
            lines.append(
                f"backtest {p} forecast up to {1 / float(p.value):.2g}x its last fitted step; "
                f"the target is {step_reach:.2g}x the fit's: its scores say little that far out"
            )
        if p.kind == "holdout-size" and sizes:
            below = [s for s in sizes if s < float(p.value)]
            reach = float(p.value) / below[-1] if below else 1.0
            if size_reach > 1.5 * reach:
                lines.append(
                    f"backtest {p} forecast a size {reach:.2g}x its largest fitted one; the "
                    f"target size is {size_reach:.2g}x the fit's largest: its scores say little "
                    "that far out"
                )
    return lines


def section_summary(
    fit: ReportInputs,
    decision: dict[str, Any],
    backtests: Sequence[BacktestResult] = (),
    scores: pd.DataFrame | None = None,
    command: str = "bimix report FIT.nc --out report.html",
) -> dict[str, Any]:
    """The summary box: the decision, its baseline, the trust in the forecasts and the fit.

    Parameters
    ----------
    fit
        The report's inputs.
    decision
        ``section_decision(...)["decision"]``.
    backtests, scores
        As for :func:`trust_lines`.
    command
        The command that reproduces the report; with no backtest nor held-out points, the
        summary suggests it with ``--backtest horizon:0.5`` (a fit of several sizes:
        ``--backtest holdout-size:LARGEST`` when at least two sizes remain to fit: Bayes beside
        the size-aware least squares).

    Returns
    -------
    dict
        ``recommended`` (shares text), ``baseline`` (:func:`~bimix_bayes.report.decision.
        baseline_facts`), ``rec``, ``horizon`` (target / last fitted step), ``far`` (a warning
        when the target lies beyond what backtests support, else None), ``trust`` (lines),
        ``trust_command``, ``fit`` (:func:`fit_status`) and ``size`` (" at model size ..."
        for a fit of several sizes, else "").
    """
    trust = trust_lines(backtests, scores)
    suggested = f"--backtest {SUGGESTED_BACKTEST}"
    if fit.size is not None and len(fit.data.sizes) >= 3:  # the largest from the others
        largest = size_label(max(fit.data.sizes))
        suggested = f"--backtest holdout-size:{largest}"  # Bayes beside size-aware least squares
    return {
        "recommended": decision["recommended"],
        "baseline": decision["baseline"],
        "rec": decision["rec"],
        "horizon": fit.target / fit.max_step,
        "far": extrapolation_note(
            np.array([fit.target]),
            first=float(fit.data.observations["step"].min()),
            last=fit.max_step,
            unit=fit.data.volume,
        ),
        "trust": trust,
        "reach": reach_caveats(fit, backtests),
        "trust_command": "" if trust else f"{command} {suggested}",
        "size": fit.size_text,
        "fit": fit_status(fit.diag),
    }
