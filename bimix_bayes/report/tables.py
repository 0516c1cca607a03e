"""The tables of the HTML report: numbers formatted for reading, rendered as escaped HTML.

Every string from the user's data (domain and run names) is escaped by pandas in
:func:`html_table`, so the template may mark the result safe. Every table comes inside a
horizontally scrollable ``<div class="scroll">``, so a wide one never widens the page.

Examples
--------
>>> import pandas as pd
>>> print(html_table(pd.DataFrame({"loss": [2.5]}, index=["<b>web</b>"])))  # doctest: +ELLIPSIS
<div class="scroll"><table class="dataframe table">
...
      <th>&lt;b&gt;web&lt;/b&gt;</th>
      <td>2.5</td>
...
</table></div>
>>> estimate_cells(pd.Series([1.0, None]), pd.Series([0.5, None]), pd.Series([2.0, None]))
['1 [0.5, 2]', '']
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bimix_bayes.bayes.diagnostics import FitDiagnostics
from bimix_bayes.decision.recommend import Recommendation

__all__ = [
    "comparison_cells",
    "decision_cells",
    "diagnostic_badges",
    "estimate_cells",
    "html_table",
    "readable_number",
]

#: The least-squares columns of :func:`comparison_cells`' input.
LS_COLUMNS = ("ls_estimate", "ls_lower", "ls_upper")
#: The badges of the diagnostics section: label, the diagnostic, its threshold in the spec,
#: how it must compare with it, its format, and the attribute naming where the worst value is.
BADGES = (
    ("max r-hat", "max_rhat", "max_rhat", "<=", "{:.4f}", "worst_rhat_var"),
    ("min ESS bulk", "min_ess_bulk", "min_ess_bulk", ">=", "{:.0f}", "worst_ess_var"),
    ("min ESS tail", "min_ess_tail", "min_ess_tail", ">=", "{:.0f}", None),
    ("divergences", "divergences", "max_divergences", "<=", "{} of {draws}", None),
    ("min BFMI", "min_bfmi", "min_bfmi", ">=", "{:.2f}", None),
)


def html_table(df: pd.DataFrame, **kw: Any) -> str:
    """A DataFrame as an escaped HTML table (Jinja2 marks it safe only after pandas escaped it),
    in a horizontally scrollable wrapper."""
    table = df.to_html(escape=True, border=0, classes="table", na_rep="", **kw)
    return f'<div class="scroll">{table}</div>'


def readable_number(value: float) -> str:
    """A step or token count as people write it: ``50000``, ``1.5e10`` (not ``5e+04``), whole
    from 100 on.

    Examples
    --------
    >>> [readable_number(v) for v in (50_000, 4e10, 5848.04, 0.5)]
    ['50000', '4e10', '5848', '0.5']
    """
    if abs(value) >= 1e6:
        mantissa, _, exponent = f"{value:.3g}".partition("e")
        return f"{mantissa}e{int(exponent)}" if exponent else mantissa
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def diagnostic_badges(diag: FitDiagnostics) -> list[dict[str, Any]]:
    """One badge per convergence check: ``name, value, threshold, passed, where`` (the variable
    with the worst value, or "")."""
    out = []
    for name, attr, key, op, fmt, where in BADGES:
        value, limit = getattr(diag, attr), diag.thresholds[key]
        passed = value <= limit if op == "<=" else value >= limit
        out.append(
            {
                "name": name,
                "value": fmt.format(value, draws=diag.draws),
                "threshold": f"{op} {limit:g}",
                "passed": bool(passed),
                "where": getattr(diag, where) if where else "",
            }
        )
    return out


def estimate_cells(estimate: pd.Series, lower: pd.Series, upper: pd.Series) -> list[str]:
    """``"estimate [lower, upper]"`` per row, to 4 significant digits ("" without an estimate,
    "estimate" alone without bounds)."""
    return [_estimate(m, lo, hi) for m, lo, hi in zip(estimate, lower, upper, strict=True)]


def _estimate(value: float, lower: float, upper: float) -> str:
    if pd.isna(value):
        return ""
    if pd.isna(lower) or pd.isna(upper):
        return f"{value:.4g}"
    return f"{value:.4g} [{lower:.4g}, {upper:.4g}]"


def comparison_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Posterior mean [HDI] beside least squares [bootstrap], one row per (domain, parameter).

    ``table`` is :func:`bimix_bayes.bayes.summary.comparison_table` output, possibly with rows
    of :func:`~bimix_bayes.bayes.summary.posterior_table` (no least-squares columns: blank).
    """
    table = table.reindex(columns=list(dict.fromkeys([*table.columns, *LS_COLUMNS])))
    cells = pd.DataFrame(
        {
            "posterior mean [94% HDI]": estimate_cells(
                table["mean"], table["lower"], table["upper"]
            ),
            "least squares [94% bootstrap]": estimate_cells(
                table["ls_estimate"], table["ls_lower"], table["ls_upper"]
            ),
            "r-hat": table["r_hat"].map("{:.3f}".format),
            "ESS bulk": table["ess_bulk"].map("{:.0f}".format),
        },
        index=table.index,
    )
    if table["ls_estimate"].isna().all():  # no least squares beside this fit: no empty column
        cells = cells.drop(columns="least squares [94% bootstrap]")
    return cells


def _percent(values: pd.Series) -> pd.Series:
    return (100 * values).map("{:.1f}%".format)


def decision_cells(rec: Recommendation) -> pd.DataFrame:
    """Per domain: the recommended, baseline (and unconstrained) shares, the per-draw optima,
    the bounds, the constraint status and, when forecast, the loss at each mixture."""
    domain = rec.domain_table()
    shown = pd.DataFrame(
        {
            "recommended": _percent(domain["recommended"]),
            "baseline": _percent(domain["baseline"]),
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
        shown.insert(2, "unconstrained", _percent(domain["unconstrained"]))
    if "forecast_recommended_median" in domain:
        for who in ("recommended", "baseline"):
            shown[f"forecast at {who} (90%)"] = estimate_cells(
                domain[f"forecast_{who}_median"],
                domain[f"forecast_{who}_lower_90"],
                domain[f"forecast_{who}_upper_90"],
            )
    return shown
