"""A self-contained HTML report of a fit: diagnostics, forecasts, parameters and the decision.

One file that opens offline: CSS inline, figures embedded as PNG data URIs, no script and no
network reference. Every string from the user's data (domain, run and file names) is escaped by
Jinja2's autoescaping (tables by pandas), so a domain called ``<script>`` is shown as text.

Sections: the header (data source and hash, package versions, sampler, seed, draws x chains,
wall time); diagnostics with pass/fail badges and the parameter summary; observed vs fitted
(posterior predictive check); extrapolation to the target step (50 % and 90 % bands, least
squares and its bootstrap band, held-out points when given, and their scores); per-domain
parameters beside least squares (forest plot and table); the decision (recommended vs baseline,
the objective's distribution at each, P(improvement), constraints); an appendix with the spec
and the command that reproduces the report.

Examples
--------
>>> html = build_report(idata, step=4e10)  # doctest: +SKIP
>>> write_report(idata, "report.html", step=4e10)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import arviz as az
import jinja2
import numpy as np
import pandas as pd

from bimix_bayes._version import __version__
from bimix_bayes.bayes.checks import posterior_predictive_check
from bimix_bayes.bayes.diagnostics import FitDiagnostics, FitWarning
from bimix_bayes.bayes.forecast import predict
from bimix_bayes.bayes.persistence import data_from_idata, diagnostics_from_idata, spec_from_idata
from bimix_bayes.bayes.summary import comparison_table, posterior_table
from bimix_bayes.data.files import atomic_write_text
from bimix_bayes.data.table import MixtureData
from bimix_bayes.decision.constraints import MixtureConstraints
from bimix_bayes.decision.recommend import Recommendation, optimize
from bimix_bayes.evaluation.backtest import BacktestResult, coverage, mean_relative_error
from bimix_bayes.leastsq.fit import BiMixLeastSquares, BootstrapWarning
from bimix_bayes.report.figures import (
    decision_figure,
    extrapolation_figure,
    forest_figure,
    to_data_uri,
)

__all__ = ["build_report", "write_report"]

SECTIONS = ("header", "diagnostics", "fit", "extrapolation", "parameters", "decision", "appendix")
GRID_POINTS = 40


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bimix_bayes.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _html_table(df: pd.DataFrame, **kw: Any) -> str:
    """A DataFrame as an escaped HTML table (Jinja2 marks it safe only after pandas escaped it)."""
    return df.to_html(escape=True, border=0, classes="table", na_rep="", **kw)


def _representative_runs(data: MixtureData, runs: Sequence[str], k: int = 3) -> dict[str, list]:
    """Per domain, up to ``k`` runs spanning that domain's share (lowest, middle, highest)."""
    out = {}
    shares = data.mixtures.loc[list(runs)]
    for domain in data.domains:
        order = shares[domain].sort_values(kind="stable").index.tolist()
        picks = [order[0], order[len(order) // 2], order[-1]][:k] if order else []
        out[domain] = list(dict.fromkeys(picks))
    return out


def _badges(diag: FitDiagnostics) -> list[dict[str, Any]]:
    t = diag.thresholds
    checks = [
        (
            "max r-hat",
            f"{diag.max_rhat:.4f}",
            f"<= {t['max_rhat']:g}",
            diag.max_rhat <= t["max_rhat"],
            diag.worst_rhat_var,
        ),
        (
            "min ESS bulk",
            f"{diag.min_ess_bulk:.0f}",
            f">= {t['min_ess_bulk']:g}",
            diag.min_ess_bulk >= t["min_ess_bulk"],
            diag.worst_ess_var,
        ),
        (
            "min ESS tail",
            f"{diag.min_ess_tail:.0f}",
            f">= {t['min_ess_tail']:g}",
            diag.min_ess_tail >= t["min_ess_tail"],
            "",
        ),
        (
            "divergences",
            f"{diag.divergences} of {diag.draws}",
            f"<= {t['max_divergences']:g}",
            diag.divergences <= t["max_divergences"],
            "",
        ),
        (
            "min BFMI",
            f"{diag.min_bfmi:.2f}",
            f">= {t['min_bfmi']:g}",
            diag.min_bfmi >= t["min_bfmi"],
            "",
        ),
    ]
    return [
        {"name": n, "value": v, "threshold": th, "passed": bool(ok), "where": where}
        for n, v, th, ok, where in checks
    ]


def _score_holdout(
    idata: az.InferenceData,
    data: MixtureData,
    holdout: MixtureData,
    ls: BiMixLeastSquares,
    seed: int,
) -> pd.DataFrame:
    """Per-domain scores of the forecasts of every held-out point (observed runs continued, new
    runs as new mixtures): relative error and interval coverage, Bayes vs least squares."""
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
    mix = pd.concat([data.mixtures.loc[known], holdout.mixtures.loc[new]])[list(ls.domains_)]
    ls_pred = ls.predict(mix, steps, interval=0.9, average=False).rename(
        columns={"mixture": "run", "loss": "ls", "lower": "ls_lower", "upper": "ls_upper"}
    )
    points = obs.merge(bayes, on=["run", "step", "domain"], how="left").merge(
        ls_pred, on=["run", "step", "domain"], how="left"
    )
    # A point with no forecast (a domain its run gave no share, or one the fit does not have)
    # is left out of every score, not counted as a miss.
    points = points[points["median"].notna()].copy()
    has_band = "ls_lower" in points

    def score(g: pd.DataFrame) -> pd.Series:
        row = {
            "points": len(g),
            "MRE Bayes (%)": 100 * mean_relative_error(g["loss"], g["median"]),
            "MRE least squares (%)": 100 * mean_relative_error(g["loss"], g["ls"]),
            "Bayes 50% coverage (%)": 100 * coverage(g["loss"], g["lower_50"], g["upper_50"]),
            "Bayes 90% coverage (%)": 100 * coverage(g["loss"], g["lower_90"], g["upper_90"]),
        }
        if has_band:
            row["LS bootstrap 90% coverage (%)"] = 100 * coverage(
                g["loss"], g["ls_lower"], g["ls_upper"]
            )
        return pd.Series(row)

    table = points.groupby("domain").apply(score, include_groups=False)
    table.loc["all domains"] = score(points)
    return table


def _decision(
    idata: az.InferenceData,
    step: float,
    objective: str,
    constraints: MixtureConstraints | None,
    baseline: pd.Series | str | None,
    seed: int,
) -> dict[str, Any]:
    rec: Recommendation = optimize(
        idata, step, objective=objective, constraints=constraints, baseline=baseline, seed=seed
    )
    domain = rec.domain_table()
    shown = pd.DataFrame(
        {
            "recommended": (100 * domain["recommended"]).map("{:.1f}%".format),
            "baseline": (100 * domain["baseline"]).map("{:.1f}%".format),
            "per-draw optima (5-95%)": [
                f"{100 * a:.1f}-{100 * b:.1f}%"
                for a, b in zip(domain["draw_optimum_q05"], domain["draw_optimum_q95"], strict=True)
            ],
            "bounds": [
                f"[{lo:.3g}, {hi:.3g}]"
                for lo, hi in zip(domain["lower"], domain["upper"], strict=True)
            ],
            "status": domain["status"],
        },
        index=domain.index,
    )
    if rec.unconstrained is not None:
        shown.insert(2, "unconstrained", (100 * domain["unconstrained"]).map("{:.1f}%".format))
    if "forecast_recommended_median" in domain:
        for who in ("recommended", "baseline"):
            shown[f"forecast at {who} (90%)"] = [
                f"{m:.4f} [{lo:.4f}, {hi:.4f}]"
                for m, lo, hi in zip(
                    domain[f"forecast_{who}_median"],
                    domain[f"forecast_{who}_lower_90"],
                    domain[f"forecast_{who}_upper_90"],
                    strict=True,
                )
            ]
    reasons = rec.constraints[
        (rec.constraints["lower_reason"] != "") | (rec.constraints["upper_reason"] != "")
    ][["status", "lower_reason", "upper_reason"]]
    return {
        "rec": rec,
        "table": _html_table(shown),
        "objective_table": _html_table(rec.objective_table().map(lambda v: f"{v:.5f}")),
        "constraints": _html_table(reasons) if len(reasons) else "",
        "figure": to_data_uri(decision_figure(rec.draws, rec.p_beats_baseline)),
        "improvement": rec.improvement,
    }


def build_report(
    idata: az.InferenceData,
    *,
    step: float | None = None,
    holdout: MixtureData | None = None,
    objective: str = "mean",
    constraints: MixtureConstraints | None = None,
    baseline: pd.Series | str | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    command: str | None = None,
    fit_path: str | os.PathLike[str] | None = None,
    backtests: Sequence[BacktestResult] = (),
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
        on the extrapolation panels and scored.
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

    Returns
    -------
    str
        The HTML document.
    """
    data = data_from_idata(idata)
    diag = diagnostics_from_idata(idata)
    if not diag.passed:
        warnings.warn(
            "reporting a fit that FAILED its convergence diagnostics; the report says so on "
            "every section that depends on it.\n" + diag.report(),
            FitWarning,
            stacklevel=2,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # said once above
        spec = spec_from_idata(idata)
        attrs = idata.attrs
        max_step = float(data.observations["step"].max())
        target = float(step) if step is not None else 2.0 * max_step
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BootstrapWarning)
            ls = BiMixLeastSquares(
                n_bootstrap=n_bootstrap, interval=0.9, seed=seed, s_ref=float(attrs["s_ref"])
            ).fit(data)
        # ---- extrapolation
        holdout_runs = [] if holdout is None else [r for r in holdout.runs if r in set(data.runs)]
        runs_by_domain = _representative_runs(data, holdout_runs or list(data.runs))
        shown_runs = sorted({r for runs in runs_by_domain.values() for r in runs})
        grid = np.geomspace(
            float(data.observations["step"].min()), max(target, max_step), GRID_POINTS
        )
        bayes = predict(idata, grid, runs=shown_runs, seed=seed, attach=False)
        ls_curves = ls.predict(data.mixtures.loc[shown_runs], grid, interval=0.9, average=False)
        holdout_scores = None
        holdout_obs = None
        if holdout is not None:
            holdout_obs = holdout.observations
            table = _score_holdout(idata, data, holdout, ls, seed)
            holdout_scores = _html_table(
                table.map("{:.1f}".format).assign(points=table["points"].astype(int))
            )
        extrapolation = to_data_uri(
            extrapolation_figure(
                bayes,
                data.observations,
                list(data.domains),
                runs_by_domain,
                data.mixtures,
                least_squares=ls_curves,
                holdout=holdout_obs,
                last_fitted=max_step,
                target=target,
                unit=data.volume,
            )
        )
        # ---- fit and parameters
        check = posterior_predictive_check(idata.copy(), seed=seed)
        comparison = comparison_table(idata, prob=0.94, least_squares=ls)
        summary = posterior_table(idata, prob=0.94)
        decision = _decision(idata, target, objective, constraints, baseline, seed)
        versions = json.loads(attrs.get("package_versions", "{}"))
        post = idata.posterior
        context = {
            "title": f"BiMix fit report: {data.source}",
            "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "version": __version__,
            "fit_path": str(fit_path) if fit_path is not None else "(in memory)",
            "data": {
                "source": data.source,
                "group": data.group,
                "fingerprint": attrs.get("data_fingerprint", ""),
                "volume": data.volume,
                "observations": len(data.observations),
                "runs": data.n_runs,
                "domains": list(data.domains),
                "steps": f"{data.observations['step'].min():.4g} to {max_step:.4g}",
                "notes": list(data.notes),
            },
            "sampler": {
                "name": attrs.get("sampler", "?"),
                "seed": attrs.get("seed", "?"),
                "chains": post.sizes["chain"],
                "draws": post.sizes["draw"],
                "tune": spec["sampler"].get("tune", "?"),
                "wall": attrs.get("wall_seconds"),
                "compile": attrs.get("compile_seconds"),
                "sample": attrs.get("sample_seconds"),
                "created": attrs.get("created", ""),
                "spec_id": attrs.get("spec_id", ""),
                "likelihood": spec["likelihood"]["family"],
            },
            "versions": versions,
            "diag": diag,
            "badges": _badges(diag),
            "summary": _html_table(summary.map(lambda v: f"{v:.4g}")),
            "ppc_figure": to_data_uri(check.figure),
            "ppc_coverage": _html_table(
                check.coverage.assign(covered_90=lambda t: (100 * t["covered_90"]).round(1)).rename(
                    columns={"covered_90": "inside the 90% interval (%)"}
                )
            ),
            "target": target,
            "max_step": max_step,
            "extrapolation_figure": extrapolation,
            "holdout": holdout is not None,
            "holdout_runs_shown": bool(holdout_runs),
            "holdout_source": None if holdout is None else holdout.source,
            "holdout_scores": holdout_scores,
            "forest_figure": to_data_uri(forest_figure(comparison)),
            "comparison": _html_table(_comparison_cells(comparison)),
            "decision": decision,
            "objective": decision["rec"].objective,
            "spec": json.dumps(spec, indent=2, sort_keys=True),
            "command": command or _default_command(fit_path, target, holdout, objective),
            "sections": SECTIONS,
            "backtests": [
                {
                    "protocol": str(b.protocol),
                    "describe": b.protocol.describe(),
                    "data": b.data_summary,
                    "notes": b.notes(),
                    "table": _html_table(b.table()),
                }
                for b in backtests
            ],
        }
        return _environment().get_template("report.html.j2").render(**context)


def _comparison_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Posterior mean [HDI] beside least squares [bootstrap], one row per (domain, parameter)."""
    return pd.DataFrame(
        {
            "posterior mean [94% HDI]": [
                f"{m:.4g} [{lo:.4g}, {hi:.4g}]"
                for m, lo, hi in zip(table["mean"], table["lower"], table["upper"], strict=True)
            ],
            "least squares [94% bootstrap]": [
                f"{m:.4g} [{lo:.4g}, {hi:.4g}]"
                for m, lo, hi in zip(
                    table["ls_estimate"], table["ls_lower"], table["ls_upper"], strict=True
                )
            ],
            "r-hat": table["r_hat"].map("{:.3f}".format),
            "ESS bulk": table["ess_bulk"].map("{:.0f}".format),
        },
        index=table.index,
    )


def _default_command(fit_path, target, holdout, objective) -> str:
    parts = ["bimix", "report", str(fit_path or "FIT.nc"), "--out", "report.html"]
    parts += ["--step", f"{target:g}"]
    if holdout is not None:
        parts += ["--holdout", str(holdout.source)]
    if objective != "mean":
        parts += ["--objective", objective]
    return " ".join(parts)


def write_report(idata: az.InferenceData, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write :func:`build_report` to ``path`` atomically; returns the path."""
    html = build_report(idata, **options)
    return atomic_write_text(path, html)
