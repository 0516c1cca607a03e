"""What a backtest measured (:class:`BacktestResult`) and its renderings: text for the
terminal, Markdown, an HTML section for the report, CSV.

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> from bimix_bayes.evaluation.runner import backtest
>>> result = backtest(simulate_default(seed=1), "last-checkpoint", method="ls", n_bootstrap=0)
>>> print(result.to_text().splitlines()[0])  # doctest: +ELLIPSIS
backtest last-checkpoint: fit every checkpoint but each run's last; predict the last (...)
>>> result.headline().index.tolist()
[('ls', '(mean of domains)'), ('ls', '(all points)')]
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bimix_bayes.data.files import atomic_write_with
from bimix_bayes.data.labels import ALL_DOMAINS, ALL_POINTS
from bimix_bayes.evaluation.decision_calibration import brier_score, reliability_table
from bimix_bayes.evaluation.metrics import format_metrics
from bimix_bayes.evaluation.protocols import Protocol

__all__ = ["BacktestResult"]

_HEADERS = {
    "n": "points",
    "mre": "MRE",
    "max_re": "max RE",
    "r2_log": "R2 (log)",
    "spearman": "Spearman",
    "cover_50": "cover 50%",
    "width_50": "width 50%",
    "cover_90": "cover 90%",
    "width_90": "width 90%",
    "lpd": "log pred. density",
}


@dataclass
class BacktestResult:
    """What :func:`backtest` measured.

    Attributes
    ----------
    protocol
        The protocol.
    points
        One row per (method, split, held-out point): ``method, split, run, domain, step,
        target, observed, predicted, lower_50, upper_50, lower_90, upper_90, lpd``; rows with
        domain ``"(mean of domains)"`` are the average over domains of a (run, step).
    metrics
        Index ``(method, domain)``, columns :data:`METRIC_COLUMNS` (see :func:`score`).
    data_summary
        One line describing the data.
    settings
        Methods, seed, splits, bootstrap size, sampler settings and the law (Bayes),
        LightGBM's settings.
    fits
        One row per (method, split): seconds, and for Bayes whether the fit passed its
        diagnostics (``passed``), max r-hat, divergences and whether it was refitted with
        safer sampler settings (``retried``).
    pairs
        ``holdout-mixtures`` only: per (method, split) and pair of held-out runs, the predicted
        probability that run ``a``'s mean loss over domains at the last held-out step is below
        run ``b``'s (``p_a_below``) and what happened (``a_below``)
        (:mod:`~bimix_bayes.evaluation.decision_calibration`); empty otherwise.
    """

    protocol: Protocol
    points: pd.DataFrame
    metrics: pd.DataFrame
    data_summary: str
    settings: dict[str, Any] = field(default_factory=dict)
    fits: pd.DataFrame = field(default_factory=pd.DataFrame)
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)

    def decision_calibration(self) -> pd.DataFrame:
        """Per method: pairs scored and the Brier score of the pairwise predictions.

        Empty when the protocol holds out no pairs of new runs.
        """
        if self.pairs.empty:
            return pd.DataFrame(columns=["pairs", "brier"])
        rows = {
            method: {"pairs": len(group), "brier": brier_score(group)}
            for method, group in self.pairs.groupby("method", sort=False)
        }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")

    def reliability(self) -> pd.DataFrame:
        """Per method and bin of the favourite's predicted chance: predicted vs observed."""
        if self.pairs.empty:
            return pd.DataFrame()
        return pd.concat(
            {m: reliability_table(g) for m, g in self.pairs.groupby("method", sort=False)},
            names=["method", "row"],
        ).droplevel("row")

    def _calibration_lines(self) -> list[str]:
        table = self.decision_calibration()
        if table.empty:
            return []
        parts = [f"{m} {r.brier:.3f}" for m, r in table.iterrows()]
        return [
            "",
            f"decision calibration ({int(table['pairs'].iloc[0])} pairs of held-out runs: "
            "P(a's mean loss over domains ends below b's) against what happened): Brier "
            + ", ".join(parts)
            + " (0 = certain and right; 0.25 = always 50 %)",
            self.reliability().round(3).to_string(),
        ]

    def table(self) -> pd.DataFrame:
        """The formatted metrics with readable column names."""
        return format_metrics(self.metrics).rename(columns=_HEADERS)

    def headline(self) -> pd.DataFrame:
        """The ``"(all points)"`` and ``"(mean of domains)"`` rows of each method (numbers)."""
        keep = self.metrics.index.get_level_values("domain").isin([ALL_POINTS, ALL_DOMAINS])
        return self.metrics[keep]

    def failed_fits(self) -> int:
        """Bayesian fits that failed their convergence diagnostics."""
        if self.fits.empty or "passed" not in self.fits:
            return 0
        return int((self.fits["passed"] == False).sum())  # noqa: E712 (NaN for ls rows)

    def failures(self) -> list[tuple[str, str]]:
        """``(split, problems)`` of each Bayesian fit that failed its diagnostics (after the
        retry); the problems are empty for results saved before they were recorded."""
        if self.fits.empty or "passed" not in self.fits:
            return []
        failed = self.fits[self.fits["passed"] == False]  # noqa: E712 (NaN for ls rows)
        why = failed["problems"] if "problems" in failed else pd.Series("", index=failed.index)
        pairs = zip(failed["split"], why, strict=True)
        return [(str(split), p if isinstance(p, str) else "") for split, p in pairs]

    def _methods(self) -> list[str]:
        return list(dict.fromkeys(self.points["method"])) if "method" in self.points else []

    def notes(self) -> list[str]:
        """Caveats to print beside the table (failed fits; LightGBM asked for later steps)."""
        out = []
        if "lightgbm" in self._methods() and self.protocol.kind in ("horizon", "last-checkpoint"):
            out.append(
                "lightgbm's trees cannot extrapolate in step: a held-out step later than every "
                "fitted one is forecast at about the loss of the last fitted step"
            )
        failed = self.failed_fits()
        if failed:
            total = int(self.fits["passed"].notna().sum())
            out.append(
                f"{failed} of {total} Bayesian fits FAILED their convergence diagnostics; their "
                "forecasts are included but should not be trusted"
            )
            out += [f"  split {split}: {why}" for split, why in self.failures()]
        return out

    def to_text(self) -> str:
        """The table shown on stdout."""
        lines = [
            f"backtest {self.protocol}: {self.protocol.describe()}",
            f"data: {self.data_summary}",
            f"held-out points: {self._held_counts()}",
        ]
        if self.settings.get("fixed_budget") and "law" in self.settings:
            lines.append(
                f"fixed budget (one step per run): law {self.settings['law']} at that step; "
                "Bayes: exact conjugate posterior (no sampler)"
            )
        elif "law" in self.settings:
            lines.append(f"Bayes: law {self.settings['law']}, {self.settings['sampler']}")
        lines += ["", self.table().to_string()]
        lines += self._calibration_lines()
        lines += ["", *self._legend()]
        lines += [f"NOTE: {n}" for n in self.notes()]
        return "\n".join(lines)

    def _held_counts(self) -> str:
        pts = self.points[self.points["domain"] != ALL_DOMAINS]
        if pts.empty:
            return "none"
        first = pts[pts["method"] == pts["method"].iloc[0]]
        n_split = first["split"].nunique()
        by_target = first.groupby("target").size()
        parts = [f"{n} of {t}s" for t, n in by_target.items()]  # "of observed runs"
        return f"{len(first)} per method ({', '.join(parts)}) over {n_split} split(s)"

    def _legend(self) -> list[str]:
        lgb = "lightgbm" in self._methods()
        return [
            "MRE/max RE: |predicted/observed - 1| of the point forecast (Bayes: predictive "
            "median; ls: fitted curve"
            + ("; lightgbm: RegMix's LightGBM regressor on shares and log(step)" if lgb else "")
            + "); R2 (log): on log loss; Spearman: rank correlation of "
            "held-out runs at the last held-out step; cover/width: share of points inside the "
            "central interval and its mean width relative to the forecast (ls: run bootstrap "
            "of the law + residual noise"
            + ("; lightgbm: its quantile regressions" if lgb else "")
            + f"); {ALL_POINTS}: pooled over domains (R2, Spearman: "
            f"mean of the domains); {ALL_DOMAINS}: the average loss over domains",
        ]

    def to_markdown(self, title: str | None = None) -> str:
        """The formatted metrics as a Markdown table (with a title line when given)."""
        table = self.table().reset_index()
        header = "| " + " | ".join(table.columns) + " |"
        rule = "|" + "|".join("---" for _ in table.columns) + "|"
        body = [
            "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
            for row in table.itertuples(index=False)
        ]
        lines = [f"**{title}**", ""] if title else []
        return "\n".join([*lines, header, rule, *body])

    def to_html(self) -> str:
        """An HTML section for the report: heading, description, metrics table (escaped)."""
        notes = "".join(f"<p class='warning'>{html.escape(n)}</p>" for n in self.notes())
        return (
            f"<section class='backtest'><h2>Backtest: {html.escape(str(self.protocol))}</h2>"
            f"<p>{html.escape(self.protocol.describe())}</p>"
            f"<p>Data: {html.escape(self.data_summary)}</p>"
            f"<p>Held-out points: {html.escape(self._held_counts())}</p>{notes}"
            + self.table().to_html(escape=True, classes="metrics")
            + "".join(f"<p>{html.escape(line)}</p>" for line in self._calibration_lines()[1:2])
            + f"<p class='legend'>{html.escape(self._legend()[0])}</p></section>"
        )

    def to_csv(self, path: Any, *, points: bool = False) -> Any:
        """Write the metrics (or, with ``points=True``, the per-point table) as CSV, atomically."""
        frame = self.points if points else self.metrics.reset_index()
        return atomic_write_with(path, lambda p: frame.to_csv(p, index=False, float_format="%.10g"))
