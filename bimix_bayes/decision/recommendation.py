"""The recommendation: the chosen mixture against its baseline, how sure the choice is, and its
plain-text and JSON forms.

:func:`~bimix_bayes.decision.recommend.optimize` builds a :class:`Recommendation`;
:meth:`Recommendation.format` is the terminal report, :meth:`Recommendation.to_dict` the JSON.

Examples
--------
>>> rec = optimize(idata, step=4e10, objective="cvar:0.9")  # doctest: +SKIP
>>> rec.verdict  # doctest: +SKIP
'the recommendation is expected to be better by 0.0123'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.bayes.diagnostics import FitDiagnostics
from bimix_bayes.bayes.sizes import size_label
from bimix_bayes.decision.objectives import Objective
from bimix_bayes.decision.solver import SolveResult

__all__ = ["Recommendation"]


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
    notes
        What else to know (a baseline that breaks the constraints, forecasts left out).
    diagnostics
        The fit's convergence diagnostics (their banner heads :meth:`format` when they failed).
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
    diagnostics: FitDiagnostics | None = None
    size: float | None = None
    size_kind: str = ""
    by_size: pd.DataFrame | None = None

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
        text = self._verdict()
        if not self.solve.converged:  # the comparison holds for the mixture shown
            text += (
                " (the optimiser did not converge: a better mixture may exist; the comparison "
                "holds for the mixture shown)"
            )
        return text

    def _verdict(self) -> str:
        imp = self.improvement
        if np.all(imp == 0):
            return "the recommendation is the baseline mixture"
        obj = self.objective_table()["objective"]
        gain = float(obj["baseline"] - obj["recommended"])  # in the objective's own terms
        if self.objective.kind != "mean":  # the improvement line above is the expected loss's
            gain_text = f"{gain:.4g} in the {self.objective.name} objective"
        else:
            gain_text = f"{gain:.4g}"
        if self.p_beats_baseline < 0.5:
            return "the baseline is expected to do better than the recommendation (constraints?)"
        if self.p_run_beats_baseline is not None and self.p_run_beats_baseline < 0.6:
            return (
                f"the expected gain ({gain_text}) is within run-to-run variation: one run at each "
                f"mixture would show it only {100 * self.p_run_beats_baseline:.0f}% of the time; "
                "the two mixtures are practically equivalent"
            )
        if self.p_beats_baseline < 0.9:
            return f"the recommendation is probably better (gain {gain_text}), but not surely"
        return f"the recommendation is expected to be better by {gain_text}"

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

    def evaluation_only_forecasts(self) -> pd.DataFrame:
        """Forecasts of the evaluation domains that are not training domains (no share of
        their own, so not in :meth:`domain_table`): one row per domain, median and 90 %
        interval at the recommended mixture and the baseline; empty without any."""
        if self.forecasts is None:
            return pd.DataFrame()
        f = self.forecasts
        f = f[~f["domain"].isin(self.mixture.index) & ~f["domain"].str.startswith("(")]
        parts = {
            who: f[f["mixture"] == who].set_index("domain")[["median", "lower_90", "upper_90"]]
            for who in ("recommended", "baseline")
        }
        return pd.concat([p.add_prefix(f"{who}_") for who, p in parts.items()], axis=1)

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON-able values."""
        imp = self.improvement
        obj = self.objective_table()
        return {
            "target": {
                "step": self.step,
                "unit": self.unit,
                **({} if self.size is None else {"size": self.size, "size_kind": self.size_kind}),
            },
            **({} if self.by_size is None else {"by_size": self.by_size.to_dict(orient="index")}),
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


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _by_size_lines(by_size: pd.DataFrame) -> list[str]:
    """How the optimum moves with model size: one row per size, share (sd of per-draw optima)."""
    domains = [c for c in by_size.columns if not c.startswith(("sd_", "objective"))]
    lines = [
        "how the optimum moves with model size (same target and constraints; share, and in "
        "brackets the sd of the per-draw optima):",
        f"{'size':<10}{'objective':>10}  " + "".join(f"{d[:13]:>15}" for d in domains),
    ]
    for label, row in by_size.iterrows():
        cells = "".join(f"{_pct(row[d]) + ' (' + _pct(row['sd_' + d]) + ')':>15}" for d in domains)
        lines.append(f"{label!s:<10}{row['objective']:>10.5f}  {cells}")
    return lines


def _format_recommendation(rec: Recommendation) -> str:
    lines = []
    banner = rec.diagnostics.banner("do not trust this decision") if rec.diagnostics else ""
    if banner:
        lines.append(banner)
    counted = list(rec.weights.index)
    plain = np.allclose(rec.weights.to_numpy(), 1 / len(counted))
    what = (
        f"plain mean over {len(counted)} domains"
        if plain
        else "weighted mean (" + ", ".join(f"{d} {v:.3g}" for d, v in rec.weights.items()) + ")"
    )
    at_size = "" if rec.size is None else f" at model size {size_label(rec.size)} ({rec.size_kind})"
    lines.append(
        f"target: {rec.step:.6g} {rec.unit}{at_size}; loss = {what}; objective: "
        f"{rec.objective.label}"
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
    extra = rec.evaluation_only_forecasts()
    if len(extra):
        lines.append("")
        lines.append(f"{'evaluation only':<16}{'forecast: recommended':<26}{'baseline':<24}")
        for d, row in extra.iterrows():
            cells = [
                f"{row[f'{who}_median']:.4f} [{row[f'{who}_lower_90']:.4f}, "
                f"{row[f'{who}_upper_90']:.4f}]"
                for who in ("recommended", "baseline")
            ]
            lines.append(f"{d!s:<16}{cells[0]:<26}{cells[1]:<24}")
    if has_fc or len(extra):
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
        f"loss improvement {imp.mean():.5f} [90%: {np.quantile(imp, 0.05):.5f}, "
        f"{np.quantile(imp, 0.95):.5f}]"
    )
    if rec.p_run_beats_baseline is not None:
        lines.append(
            f"P(one run at recommended ends below one run at baseline) = "
            f"{rec.p_run_beats_baseline:.3f} (run-to-run variation included)"
        )
    lines.append(f"VERDICT: {rec.verdict}")
    if rec.by_size is not None:
        lines.append("")
        lines.extend(_by_size_lines(rec.by_size))
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
