"""The figures of the HTML report, drawn with matplotlib and embedded as PNG data URIs.

Every function returns a :class:`matplotlib.figure.Figure` (no global pyplot state);
:func:`to_data_uri` turns one into the ``src`` of an ``<img>``, so the report needs no other file.
Text from the user's data (domain and run names) goes through :func:`plain`, so that a name with
``$`` signs is drawn as written, never parsed as mathtext.

Examples
--------
>>> fig = Figure(figsize=(2, 1))
>>> to_data_uri(fig).startswith("data:image/png;base64,")
True
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from bimix_bayes.data.labels import interval_columns

if TYPE_CHECKING:
    from matplotlib.axis import Axis

    from bimix_bayes.bayes.checks import PredictiveCheck

__all__ = [
    "decision_figure",
    "extrapolation_figure",
    "forest_figure",
    "number_log_axis",
    "plain",
    "predictive_check_figure",
    "shares_figure",
    "to_data_uri",
]

#: Colour-blind-safe colours (Okabe-Ito) for the runs drawn in one panel.
RUN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
LS_COLOUR = "#444444"
#: Colours of the recommended and baseline mixtures (as in :func:`decision_figure`).
RECOMMENDED_COLOUR, BASELINE_COLOUR = RUN_COLOURS[0], RUN_COLOURS[1]


def plain(text: object) -> str:
    """Text as matplotlib should draw it literally (``$`` escaped; a leading ``_``, which
    matplotlib would hide from legends, kept visible)."""
    out = str(text).replace("$", r"\$")
    return " " + out if out.startswith("_") else out


def to_data_uri(fig: Figure, dpi: int = 110) -> str:
    """PNG of a figure as a ``data:`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def number_log_axis(axis: Axis) -> None:
    """Label a log-scaled axis with plain numbers (``1.5``, ``2000``), never none.

    Matplotlib labels a log axis at powers of ten only, so a loss axis from 1.2 to 2.6 would
    carry no number. Under a decade, about six evenly spaced round values are labelled; up to
    two decades, the powers of ten with 2 and 5 between; beyond, the powers of ten. Call it once
    the data are drawn.

    Examples
    --------
    >>> fig = Figure()
    >>> ax = fig.subplots()
    >>> _ = ax.plot([1.2, 2.6], [1.2, 2.6])
    >>> ax.set_yscale("log")
    >>> number_log_axis(ax.yaxis)
    >>> [ax.yaxis.get_major_formatter()(t) for t in ax.get_yticks()]
    ['1.2', '1.4', '1.6', '1.8', '2', '2.2', '2.4', '2.6']
    """
    lo, hi = sorted(axis.get_view_interval())
    if hi < 10 * lo:
        ticks = MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        axis.set_major_locator(FixedLocator([t for t in ticks if lo <= t <= hi]))
    else:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if hi < 100 * lo else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _grid(
    n: int, width: float = 3.4, height: float = 2.9, max_cols: int = 3
) -> tuple[Figure, np.ndarray]:
    """A figure of ``n`` panels of ``width`` x ``height`` inches, at most ``max_cols`` a row."""
    cols = min(max_cols, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def extrapolation_figure(
    bayes: pd.DataFrame,
    observed: pd.DataFrame,
    domains: Sequence[str],
    runs_by_domain: Mapping[str, Sequence[str]],
    shares: pd.DataFrame,
    *,
    least_squares: pd.DataFrame | None = None,
    holdout: pd.DataFrame | None = None,
    holdout_size: str | None = None,
    last_fitted: float | None = None,
    target: float | None = None,
    unit: str = "steps",
) -> Figure:
    """Per domain: observed checkpoints, the posterior predictive median with 50 % and 90 %
    bands, the least-squares curve with its bootstrap band (dashed), and held-out points.

    Parameters
    ----------
    bayes
        :func:`bimix_bayes.bayes.forecast.predict` output over a grid of steps (``lower_50`` ...
        ``upper_90`` columns).
    observed
        The fitted observations (``run, step, domain, loss``).
    runs_by_domain
        The runs drawn in each domain's panel.
    shares
        Each run's shares (for the legend).
    least_squares
        :meth:`BiMixLeastSquares.predict` output over the same grid (``loss, lower, upper``).
    holdout
        Held-out observations (``run, step, domain, loss``), drawn as crosses.
    holdout_size
        For a fit of several sizes, the model size of the forecasts and of the ``holdout``
        points (``"800M"``), named in the caption; None otherwise.
    last_fitted, target
        Steps marked with vertical lines.
    """
    fig, axes = _grid(len(domains))
    for ax, domain in zip(axes, domains, strict=False):
        for colour, run in zip(RUN_COLOURS, runs_by_domain[domain], strict=False):
            f = bayes[(bayes["mixture"] == run) & (bayes["domain"] == domain)]
            ax.fill_between(f["step"], f["lower_90"], f["upper_90"], color=colour, alpha=0.15, lw=0)
            ax.fill_between(f["step"], f["lower_50"], f["upper_50"], color=colour, alpha=0.3, lw=0)
            share = shares.loc[run, domain] if domain in shares.columns else np.nan
            label = f"{run} (r={share:.3g})" if np.isfinite(share) else str(run)  # eval-only: no r
            ax.plot(f["step"], f["median"], color=colour, lw=1.2, label=plain(label))
            if least_squares is not None:
                g = least_squares[
                    (least_squares["mixture"] == run) & (least_squares["domain"] == domain)
                ]
                ax.plot(g["step"], g["loss"], color=LS_COLOUR, lw=0.9, ls="--")
                if "lower" in g:
                    ax.plot(g["step"], g["lower"], color=LS_COLOUR, lw=0.5, ls=":")
                    ax.plot(g["step"], g["upper"], color=LS_COLOUR, lw=0.5, ls=":")
            o = observed[(observed["run"] == run) & (observed["domain"] == domain)]
            ax.scatter(o["step"], o["loss"], s=9, color=colour, zorder=3)
            if holdout is not None:
                h = holdout[(holdout["run"] == run) & (holdout["domain"] == domain)]
                ax.scatter(h["step"], h["loss"], s=28, marker="x", color="black", zorder=4)
        for x, style in ((last_fitted, ":"), (target, "-")):
            if x is not None:
                ax.axvline(x, color="#888", lw=0.8, ls=style)
        ax.set_xscale("log")
        number_log_axis(ax.xaxis)
        ax.set_title(plain(domain), fontsize=9)
        ax.set_xlabel(unit, fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, frameon=False, loc="upper right")
    parts = ["Posterior predictive median, 50 % and 90 % bands (shaded)"]
    if least_squares is not None:
        parts.append("least squares and its bootstrap band (dashed, dotted)")
    parts.append("fitted points (dots)")
    if holdout is not None and holdout_size is None:
        parts.append("held-out points (x)")
    elif holdout is not None and len(holdout):
        parts.append(f"held-out points at {holdout_size} (x)")
    elif holdout is not None:
        parts.append(f"no held-out point at {holdout_size} (those at other sizes not drawn)")
    fig.suptitle("; ".join(parts), fontsize=8)
    fig.tight_layout()
    return fig


def forest_figure(
    table: pd.DataFrame, parameters: Sequence[str] = ("A", "alpha", "B", "beta")
) -> Figure:
    """Per parameter, each domain's posterior mean and HDI (dots) beside least squares and its
    bootstrap interval (open squares).

    ``table`` is :func:`bimix_bayes.bayes.summary.comparison_table` output.
    """
    domains = list(dict.fromkeys(table.index.get_level_values("domain")))
    fig = Figure(figsize=(3.0 * len(parameters), 0.35 * len(domains) + 1.2))
    axes = fig.subplots(1, len(parameters), sharey=True, squeeze=False)[0]
    y = np.arange(len(domains))
    for ax, name in zip(axes, parameters, strict=True):
        t = table.xs(name, level="parameter").reindex(domains)
        ax.errorbar(
            t["mean"],
            y - 0.12,
            xerr=[(t["mean"] - t["lower"]).clip(lower=0), (t["upper"] - t["mean"]).clip(lower=0)],
            fmt="o",
            ms=4,
            color=RUN_COLOURS[0],
            lw=1.2,
            label="posterior (HDI)",
        )
        ls_err = [
            (t["ls_estimate"] - t["ls_lower"]).clip(lower=0).fillna(0),
            (t["ls_upper"] - t["ls_estimate"]).clip(lower=0).fillna(0),
        ]
        ax.errorbar(
            t["ls_estimate"],
            y + 0.12,
            xerr=ls_err,
            fmt="s",
            ms=4,
            mfc="white",
            color=LS_COLOUR,
            lw=0.9,
            label="least squares (bootstrap)",
        )
        if name == "B":
            ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", lw=0.3)
    axes[0].set_yticks(y, [plain(d) for d in domains])
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=7, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def decision_figure(draws: pd.DataFrame, p_beats: float) -> Figure:
    """Posterior of the weighted loss at each mixture, and of the improvement over the baseline."""
    fig = Figure(figsize=(9.0, 2.8))
    left, right = fig.subplots(1, 2)
    lo, hi = np.quantile(draws.to_numpy(), [0.001, 0.999])
    bins = np.linspace(lo, hi, 60)
    for colour, name in zip(RUN_COLOURS, draws.columns, strict=False):
        left.hist(draws[name], bins=bins, color=colour, alpha=0.45, label=plain(name))
    left.set_xlabel("weighted loss at the target", fontsize=8)
    left.set_ylabel("posterior draws", fontsize=8)
    left.legend(fontsize=7, frameon=False)
    left.tick_params(labelsize=7)
    improvement = draws["baseline"] - draws["recommended"]
    right.hist(improvement, bins=60, color=RUN_COLOURS[2], alpha=0.7)
    right.axvline(0, color="black", lw=0.8)
    right.set_xlabel("baseline minus recommended (> 0: recommended better)", fontsize=8)
    right.set_title(f"P(recommended beats baseline) = {p_beats:.3f}", fontsize=9)
    right.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def predictive_check_figure(check: PredictiveCheck) -> Figure:
    """Per domain, each observation against the median of its replicates, with the 90 % interval
    (green: inside it, red: outside) and the share of observations it covers.

    ``check`` is :func:`bimix_bayes.bayes.checks.prior_predictive_check` or
    :func:`~bimix_bayes.bayes.checks.posterior_predictive_check` output.

    Examples
    --------
    >>> from bimix_bayes.bayes.checks import posterior_predictive_check
    >>> fig = predictive_check_figure(posterior_predictive_check(idata.copy()))
    >>> [ax.get_title().split(":")[0] for ax in fig.axes if ax.get_visible()]
    ['web', 'code', 'books', 'wiki', 'math']
    """
    points = check.intervals
    lower, upper = interval_columns(0.9)
    domains = list(check.coverage.index)
    fig, axes = _grid(len(domains), width=3.2, height=3.0, max_cols=4)
    for ax, domain in zip(axes, domains, strict=False):
        p = points[points["domain"] == domain]
        lo, med, hi = (p[c].to_numpy() for c in (lower, "median", upper))
        y = p["loss"].to_numpy()
        covered = p["covered"].to_numpy(dtype=bool)
        ax.errorbar(
            med,
            y,
            xerr=[med - lo, hi - med],
            fmt="none",
            ecolor="#9ab",
            elinewidth=0.6,
            alpha=0.6,
        )
        ax.scatter(med, y, s=5, c=np.where(covered, "#2a6", "#c33"), zorder=3)
        span = [min(lo.min(), y.min()), max(hi.max(), y.max())]
        ax.plot(span, span, color="#555", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            number_log_axis(axis)
        ax.set_title(f"{plain(domain)}: 90% covers {100 * covered.mean():.0f}%", fontsize=9)
        ax.set_xlabel("fitted loss (predictive median, log scale)", fontsize=8)
        ax.set_ylabel("observed loss (log scale)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(check.title, fontsize=10)
    fig.tight_layout()
    return fig


def shares_figure(recommended: pd.Series, baseline: pd.Series, baseline_label: str) -> Figure:
    """Grouped bars: each training domain's share (%) in the recommended and baseline mixtures,
    each bar labelled with its value.

    Examples
    --------
    >>> rec = pd.Series({"web": 0.6, "code": 0.4})
    >>> fig = shares_figure(rec, pd.Series({"web": 0.5, "code": 0.5}), "uniform")
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['web', 'code']
    >>> fig.axes[0].get_legend_handles_labels()[1]
    ['recommended', 'baseline: uniform']
    """
    domains = list(recommended.index)
    x = np.arange(len(domains))
    fig = Figure(figsize=(max(4.6, 0.75 * len(domains) + 1.0), 2.7))
    ax = fig.subplots()
    width = 0.4
    for offset, shares, colour, label in (
        (-width / 2, recommended, RECOMMENDED_COLOUR, "recommended"),
        (
            width / 2,
            baseline.reindex(domains),
            BASELINE_COLOUR,
            plain(f"baseline: {baseline_label}"),
        ),
    ):
        bars = ax.bar(
            x + offset, 100 * shares.to_numpy(dtype=float), width, color=colour, label=label
        )
        ax.bar_label(bars, fmt="%.0f", fontsize=6, padding=1)
    crowded = len(domains) > 8 or max(len(str(d)) for d in domains) > 11
    ax.set_xticks(
        x,
        [plain(d) for d in domains],
        fontsize=7,
        rotation=30 if crowded else 0,
        ha="right" if crowded else "center",
        rotation_mode="anchor",
    )
    ax.set_ylabel("share of training data (%)", fontsize=8)
    ax.set_ylim(0, 100 * max(recommended.max(), baseline.max()) * 1.2)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(0, 1.18), ncols=2)
    fig.tight_layout()
    return fig
