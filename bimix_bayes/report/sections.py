"""The sections of the HTML report, one function each, returning that section's template context.

:func:`bimix_bayes.report.html.build_report` prepares a :class:`ReportInputs` once (the fit, its
data, diagnostics and spec, the least-squares fit beside it, the target step) and merges what the
``section_*`` functions return into the context of ``templates/report.html.j2``:

* :func:`section_header`: data source and hash, package versions, sampler, seed, wall time;
* :func:`section_diagnostics`: pass/fail badges, problems and what to try;
* :func:`section_fit`: observed vs fitted (the posterior predictive check);
* :func:`section_extrapolation`: forecasts to the target step, held-out points and their scores;
* :func:`section_parameters`: per-domain parameters beside least squares (the one parameter
  table: the law's parameters and the noise scales);
* :func:`section_backtests`: how far to trust the forecasts (backtests on the same runs);
* :func:`section_appendix`: the spec and the command that reproduces the report.

Every section but the backtests' takes ``fit``, the :class:`ReportInputs` prepared once. The
decision, the summary at the top and the runs table have their own modules
(:mod:`~bimix_bayes.report.decision`, :mod:`~bimix_bayes.report.summary`,
:mod:`~bimix_bayes.report.runs`).

Each section draws its figures with :mod:`~bimix_bayes.report.figures` (PNG data URIs) and
formats its tables with :mod:`~bimix_bayes.report.tables` (escaped HTML).

Examples
--------
>>> fit = ReportInputs.prepare(idata, step=None, n_bootstrap=0, seed=0)
>>> fit.target == 2 * fit.max_step
True
>>> [b["name"] for b in section_diagnostics(fit)["badges"]]
['max r-hat', 'min ESS bulk', 'min ESS tail', 'divergences', 'min BFMI']
>>> section_appendix(fit, fit_path="fit.nc", objective="mean")["command"]
'bimix report fit.nc --out report.html --step 40000'
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from bimix_bayes._version import __version__
from bimix_bayes.bayes.checks import posterior_predictive_check
from bimix_bayes.bayes.compare import compare_fits
from bimix_bayes.bayes.diagnostics import FitDiagnostics
from bimix_bayes.bayes.forecast import predict
from bimix_bayes.bayes.law_params import posterior_law
from bimix_bayes.bayes.persistence import data_from_idata, diagnostics_from_idata, spec_from_idata
from bimix_bayes.bayes.sizes import size_label, size_offset
from bimix_bayes.bayes.spec import Spec, likelihood_words
from bimix_bayes.bayes.summary import (
    NOISE_PARAMS,
    comparison_table,
    cross_table,
    law_params,
    least_squares_left_out,
    posterior_table,
)
from bimix_bayes.data.table import DataError, DataWarning, MixtureData
from bimix_bayes.evaluation.backtest import BacktestResult
from bimix_bayes.leastsq.fit import BiMixLeastSquares, BootstrapWarning
from bimix_bayes.report.figures import (
    extrapolation_figure,
    forest_figure,
    predictive_check_figure,
    to_data_uri,
)
from bimix_bayes.report.tables import (
    comparison_cells,
    diagnostic_badges,
    estimate_cells,
    html_table,
)

__all__ = [
    "SECTIONS",
    "ReportInputs",
    "section_appendix",
    "section_backtests",
    "section_comparison",
    "section_diagnostics",
    "section_extrapolation",
    "section_fit",
    "section_header",
    "section_parameters",
]

#: The ``id`` of every section the report always has (``validation`` only with backtests).
SECTIONS = (
    "summary",
    "header",
    "diagnostics",
    "fit",
    "extrapolation",
    "parameters",
    "decision",
    "runs",
    "appendix",
)
#: Steps of the grid the extrapolation curves are drawn on.
GRID_POINTS = 40


@dataclass(frozen=True)
class ReportInputs:
    """What several sections read, prepared once per report (:meth:`prepare`): the fit, its data,
    diagnostics and spec, the least-squares fit beside it, and the target step.

    Attributes
    ----------
    idata
        The fit.
    data
        Its fitted data.
    diag
        Its convergence diagnostics.
    spec
        Its model spec.
    ls
        The paper's least-squares fit of the same data (with its bootstrap when asked for).
    target
        The step the report extrapolates to and decides at.
    seed
        Seed of the predictive draws.
    size
        For a fit of several model sizes: the model size the report forecasts and decides at
        (None otherwise).
    """

    idata: az.InferenceData
    data: MixtureData
    diag: FitDiagnostics
    spec: Spec
    ls: BiMixLeastSquares | None  # None when no domain has BiMix's form (all evaluation-only)
    target: float
    seed: int
    size: float | None = None

    @property
    def max_step(self) -> float:
        """The largest fitted step."""
        return float(self.data.observations["step"].max())

    @property
    def shown_size(self) -> float | None:
        """For a fit of several sizes, the fitted size nearest the target size (log scale):
        the one whose observed curves the extrapolation figure draws."""
        if self.size is None:
            return None
        sizes = np.asarray(self.data.sizes, float)
        return float(sizes[np.argmin(np.abs(np.log(sizes / self.size)))])

    @property
    def size_text(self) -> str:
        """`` at model size 7B (total parameters)``, or empty without sizes."""
        if self.size is None:
            return ""
        kind = f" ({self.data.size_kind})" if self.data.size_kind else ""
        return f" at model size {size_label(self.size)}{kind}"

    @classmethod
    def prepare(
        cls,
        idata: az.InferenceData,
        *,
        step: float | None,
        n_bootstrap: int,
        seed: int,
        diag: FitDiagnostics | None = None,
        least_squares: BiMixLeastSquares | None = None,
        size: float | None = None,
    ) -> ReportInputs:
        """Read the fit's data, spec and diagnostics and fit least squares beside it.

        Parameters
        ----------
        idata
            The fit.
        step
            The target step (None: twice the largest fitted step).
        n_bootstrap
            Least-squares bootstrap resamples (0: none).
        seed
            Seed of the bootstrap and of the predictive draws.
        diag
            The fit's diagnostics, when already read.
        least_squares
            A least-squares fit of the same data made already (used as it is, so
            ``n_bootstrap`` is then ignored); None fits one.
        size
            The model size to forecast and decide at: required for a fit of several sizes
            (any size, trained or not), refused otherwise.

        Raises
        ------
        ValueError
            A fit of several sizes without ``size`` (naming the fitted sizes), or a size for a
            fit without sizes.
        """
        size_offset(idata, None, size)  # says which sizes, or that the fit has none
        data = data_from_idata(idata)
        max_step = float(data.observations["step"].max())
        ls = least_squares
        if ls is None and not data.has_sizes:  # the paper's fit has no size dimension
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BootstrapWarning)
                warnings.simplefilter("ignore", DataWarning)  # the note of the trimmed copy
                ls = _least_squares_beside(data, n_bootstrap, seed, float(idata.attrs["s_ref"]))
        return cls(
            idata=idata,
            data=data,
            diag=diag if diag is not None else diagnostics_from_idata(idata),
            spec=spec_from_idata(idata),
            ls=ls,
            target=float(step) if step is not None else 2.0 * max_step,
            seed=seed,
            size=None if size is None else float(size),
        )


def _least_squares_beside(
    data: MixtureData, n_bootstrap: int, seed: int, s_ref: float
) -> BiMixLeastSquares | None:
    """The paper's least squares on the observations BiMix can fit: without zero-share
    observations and evaluation-only domains (kept by a law finite at zero shares); None when
    none is left."""
    if (data.shares() > 0).all():
        ls_data = data
    else:
        trained = data.observations["domain"].isin(data.training_domains)
        if not trained.any():
            return None
        ls_data = MixtureData.from_frames(
            data.mixtures,
            data.observations[trained],
            volume=data.volume,
            source=data.source,
            zero_policy="drop",
            notes=(
                "least squares (BiMix) beside it: without the zero-share observations and the "
                "evaluation-only domains",
            ),
        )
    return BiMixLeastSquares(n_bootstrap=n_bootstrap, interval=0.9, seed=seed, s_ref=s_ref).fit(
        ls_data
    )


def section_header(
    fit: ReportInputs, fit_path: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The page title and the fit's facts: data, sampler, wall time, package versions; the fit
    file ``fit_path`` is named as such (None: "(in memory)")."""
    data, attrs, post = fit.data, fit.idata.attrs, fit.idata.posterior
    return {
        "title": f"Mixing-law fit report: {data.source}",
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
            "steps": f"{data.observations['step'].min():.4g} to {fit.max_step:.4g}",
            "notes": list(data.notes),
        },
        "sampler": {
            "name": attrs.get("sampler", "?"),
            "seed": attrs.get("seed", "?"),
            "chains": post.sizes["chain"],
            "draws": post.sizes["draw"],
            "tune": fit.spec["sampler"].get("tune", "?"),
            "wall": attrs.get("wall_seconds"),
            "first_attempt": attrs.get("first_attempt_seconds"),
            "compile": attrs.get("compile_seconds"),
            "sample": attrs.get("sample_seconds"),
            "created": attrs.get("created", ""),
            "spec_id": attrs.get("spec_id", ""),
            "likelihood": likelihood_words(fit.spec, len(data.domains)),
            "law": fit.spec.get("law", {}).get("name", "bimix"),
        },
        "versions": json.loads(attrs.get("package_versions", "{}")),
    }


def section_diagnostics(fit: ReportInputs) -> dict[str, Any]:
    """The verdict and one pass/fail badge per convergence check (each parameter's r-hat and
    ESS are in the parameters section's table)."""
    return {"diag": fit.diag, "badges": diagnostic_badges(fit.diag)}


def section_fit(fit: ReportInputs) -> dict[str, Any]:
    """Observed vs fitted: the posterior predictive check's figure and per-domain coverage."""
    check = posterior_predictive_check(fit.idata.copy(), seed=fit.seed)
    coverage = check.coverage.assign(covered_90=lambda t: (100 * t["covered_90"]).round(1))
    return {
        "ppc_figure": to_data_uri(predictive_check_figure(check)),
        "ppc_coverage": html_table(
            coverage.rename(columns={"covered_90": "inside the 90% interval (%)"})
        ),
    }


def _representative_runs(data: MixtureData, runs: Sequence[str], k: int = 3) -> dict[str, list]:
    """Per domain, up to ``k`` runs spanning that domain's share (lowest, middle, highest); for
    an evaluation-only domain (no share), spanning its mean observed loss."""
    out = {}
    shares = data.mixtures.loc[list(runs)]
    obs = data.observations[data.observations["run"].isin(list(runs))]
    for domain in data.domains:
        if domain in shares.columns:
            key = shares[domain]
        else:
            key = obs[obs["domain"] == domain].groupby("run")["loss"].mean()
        order = key.sort_values(kind="stable").index.tolist()
        picks = [order[0], order[len(order) // 2], order[-1]][:k] if order else []
        out[domain] = list(dict.fromkeys(picks))
    return out


def _holdout_at_size(fit: ReportInputs, holdout: MixtureData) -> pd.DataFrame:
    """The held-out observations the extrapolation figure draws: all of them, or for a fit of
    several sizes those at the report's target size (its forecasts are at that size)."""
    obs = holdout.observations
    if fit.size is None or not holdout.has_sizes:
        return obs
    return obs[np.isclose(obs["size"].to_numpy(float), fit.size)]


def section_extrapolation(
    fit: ReportInputs,
    holdout: MixtureData | None = None,
    scores: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Forecasts of representative runs to the target step, beside least squares.

    The ``holdout`` observations are drawn when they continue fitted runs, and named; their
    per-domain ``scores`` (a ``points`` column and percentages; a column all NaN, least squares
    where it is left out, is not shown) are shown as a table. For a fit of several sizes, the
    held-out points drawn are those at the target size (the figure says which); the runs drawn
    are fitted runs with held-out points there, else at any size.
    """
    data = fit.data
    observed = data.observations
    if fit.shown_size is not None:  # a fit of several sizes: the curves of the nearest size
        observed = observed[np.isclose(observed["size"].to_numpy(float), fit.shown_size)]
    drawn = None if holdout is None else _holdout_at_size(fit, holdout)
    holdout_runs = []
    if holdout is not None:
        continued = [r for r in holdout.runs if r in set(data.runs)]
        at_size = set(drawn["run"])
        holdout_runs = [r for r in continued if r in at_size] or continued
    runs_by_domain = _representative_runs(
        data, holdout_runs or list(dict.fromkeys(observed["run"]))
    )
    shown_runs = sorted({r for runs in runs_by_domain.values() for r in runs})
    grid = np.geomspace(
        float(data.observations["step"].min()), max(fit.target, fit.max_step), GRID_POINTS
    )
    bayes = predict(fit.idata, grid, runs=shown_runs, seed=fit.seed, attach=False, size=fit.size)
    ls_curves = (
        None
        if fit.ls is None
        else fit.ls.predict(data.mixtures.loc[shown_runs], grid, interval=0.9, average=False)
    )
    figure = extrapolation_figure(
        bayes,
        observed,
        list(data.domains),
        runs_by_domain,
        data.mixtures,
        least_squares=ls_curves,
        holdout=drawn,
        holdout_size=None if fit.size is None else size_label(fit.size),
        last_fitted=fit.max_step,
        target=fit.target,
        unit=data.volume,
    )
    shown_scores = None
    if scores is not None:
        shown = scores.dropna(axis=1, how="all")
        shown_scores = html_table(
            shown.map("{:.1f}".format).assign(points=shown["points"].astype(int))
        )
    source = None if holdout is None else str(holdout.source)
    if holdout is not None and fit.size is not None and holdout.has_sizes:
        sizes = ", ".join(size_label(s) for s in holdout.sizes)
        plural = "s" if len(holdout.sizes) > 1 else ""
        source += f"; at model size{plural} {sizes}, each forecast at its size"
    return {
        "target": fit.target,
        "max_step": fit.max_step,
        "size_text": fit.size_text,
        "shown_size": None if fit.shown_size is None else size_label(fit.shown_size),
        "runs_shown": runs_by_domain,
        "extrapolation_figure": to_data_uri(figure),
        "holdout": holdout is not None,
        "holdout_runs_shown": bool(holdout_runs),
        "holdout_source": source,
        "holdout_scores": shown_scores,
    }


def section_parameters(fit: ReportInputs) -> dict[str, Any]:
    """Per-domain parameters: posterior mean and HDI beside least squares and its bootstrap,
    then the noise scales (``sigma``, ``tau``: posterior only), with r-hat and ESS: the report's
    one parameter table."""
    table = comparison_table(fit.idata, prob=0.94, least_squares=fit.ls)
    noise = posterior_table(fit.idata, prob=0.94, var_names=NOISE_PARAMS)
    cross = cross_table(fit.idata, prob=0.94)
    if not cross.empty:
        own = cross.index.get_level_values(0) == cross.index.get_level_values(1)
        cells = pd.Series(
            estimate_cells(cross["mean"], cross["lower"], cross["upper"]), index=cross.index
        )
        cross = cells.where(~own, "(own)").unstack("training_domain")
    return {
        "law": posterior_law(fit.idata.posterior).name,
        "forest_figure": to_data_uri(forest_figure(table, law_params(fit.idata))),
        "comparison": html_table(comparison_cells(pd.concat([table, noise]))),
        "least_squares_left_out": least_squares_left_out(fit.idata),
        "cross": None if cross.empty else html_table(cross),
    }


def section_backtests(backtests: Sequence[BacktestResult] = ()) -> dict[str, Any]:
    """Each backtest's protocol, data, notes and score table (the section shows when any)."""
    return {
        "backtests": [
            {
                "protocol": str(b.protocol),
                "describe": b.protocol.describe(),
                "data": b.data_summary,
                "notes": b.notes(),
                "table": html_table(b.table()),
            }
            for b in backtests
        ]
    }


def section_comparison(
    fit: ReportInputs, others: Mapping[str, az.InferenceData], name: str = "this fit"
) -> dict[str, Any]:
    """Which model the data prefer: PSIS-LOO with whole runs left out
    (:func:`~bimix_bayes.bayes.compare.compare_fits`) of the report's fit beside ``others``
    (fits of the same data, e.g. under another law), the verdict with how sure it is, and the
    runs whose estimate is unreliable. Empty without ``others``."""
    if not others:
        return {"comparison_models": None}
    fits = {f"{name} ({posterior_law(fit.idata.posterior).name})": fit.idata}
    for other, idata in others.items():
        label = f"{other} ({posterior_law(idata.posterior).name})"
        if label in fits:
            raise DataError(
                f"two fits compared under one name, {label!r}: name them apart (their paths)"
            )
        fits[label] = idata
    failed = [n for n, f in fits.items() if not diagnostics_from_idata(f).passed]
    result = compare_fits(fits)
    table = result.table.rename(
        columns={"elpd_loo": "elpd_loo (nats)", "elpd_diff": "behind the best", "dse": "its se"}
    )
    return {
        "comparison_models": {
            "table": html_table(table.round(2)),
            "verdict": result.verdict(),
            "scoring": result.scoring(),
            "warnings": result.warnings(),
            "failed": failed,
        }
    }


def section_appendix(
    fit: ReportInputs,
    *,
    command: str | None = None,
    fit_path: str | os.PathLike[str] | None = None,
    holdout: MixtureData | None = None,
    objective: str = "mean",
) -> dict[str, Any]:
    """The model spec and the command that reproduces the report: ``command``, the command line
    that made it, or when None or empty the ``bimix report`` command of the report's options
    ``fit_path``, ``holdout`` and ``objective``."""
    if not command:
        parts = ["bimix", "report", str(fit_path or "FIT.nc"), "--out", "report.html"]
        parts += ["--step", f"{fit.target:g}"]
        if fit.size is not None:
            parts += ["--size", f"{fit.size:g}"]
        if holdout is not None:
            parts += ["--holdout", str(holdout.source)]
        if objective != "mean":
            parts += ["--objective", objective]
        command = " ".join(parts)
    return {"spec": json.dumps(fit.spec, indent=2, sort_keys=True), "command": command}
