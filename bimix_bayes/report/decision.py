"""The decision section of the report: the mixture to train at the target, against its baseline.

:func:`section_decision` optimises the mixture (:func:`bimix_bayes.decision.recommend.optimize`)
and returns its tables, figures and a description of the baseline (:func:`baseline_facts`) that
the summary at the top of the report reuses: an observed run by name (linked to its row of the
runs table), or a mixture given from a file or table with its name, never just "given".

Examples
--------
>>> fit = ReportInputs.prepare(idata, step=None, n_bootstrap=0, seed=0)
>>> decision = section_decision(fit)["decision"]
>>> decision["baseline"]["kind"], decision["baseline"]["name"] in fit.data.runs
('run', True)
>>> decision["shares_alt"].startswith("Bar chart of each domain's share")
True
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bimix_bayes.bayes.sizes import size_label
from bimix_bayes.data.mixture_input import mixture_frame
from bimix_bayes.decision.constraints import MixtureConstraints
from bimix_bayes.decision.recommend import optimize
from bimix_bayes.decision.recommendation import Recommendation
from bimix_bayes.report.figures import decision_figure, shares_figure, to_data_uri
from bimix_bayes.report.sections import ReportInputs
from bimix_bayes.report.tables import decision_cells, html_table

__all__ = ["baseline_facts", "section_decision", "section_next_runs", "shares_text"]


def shares_text(shares: pd.Series) -> str:
    """Shares as ``"web 60.0%, code 40.0%"``.

    Examples
    --------
    >>> shares_text(pd.Series({"web": 0.6, "code": 0.4}))
    'web 60.0%, code 40.0%'
    """
    return ", ".join(f"{d} {100 * v:.1f}%" for d, v in shares.items())


def baseline_facts(
    rec: Recommendation, baseline: pd.Series | pd.DataFrame | str | None = None
) -> dict[str, str]:
    """What the recommendation is compared with: ``kind`` (``"run"``: an observed run, or
    ``"given"``: a mixture from a file or table), ``name``, ``why`` and ``shares`` (text).

    Parameters
    ----------
    rec
        The recommendation.
    baseline
        The baseline as given to :func:`~bimix_bayes.decision.recommend.optimize` (a given
        mixture's name is read from it: a Series' name or a table's name column or index).

    Examples
    --------
    >>> rec = optimize(idata, 4e4, baseline=pd.Series({d: 0.2 for d in data.domains}, name="even"))
    >>> facts = baseline_facts(rec, pd.Series({d: 0.2 for d in data.domains}, name="even"))
    >>> facts["kind"], facts["name"], facts["shares"][:9]
    ('given', 'even', 'web 20.0%')
    """
    if rec.baseline_run is not None:
        run = rec.baseline_run
        why = rec.baseline_source.removeprefix(f"observed run {run}").strip()
        return {
            "kind": "run",
            "name": run,
            "why": why or "(chosen as the baseline)",
            "shares": shares_text(rec.baseline),
        }
    name = "baseline"
    if isinstance(baseline, pd.Series | pd.DataFrame):
        label = mixture_frame(baseline, "the baseline mixture").index[0]
        name = "baseline" if label is None else str(label)
    return {
        "kind": "given",
        "name": name,
        "why": "from a --baseline file or table, not an observed run",
        "shares": shares_text(rec.baseline),
    }


def _shares_alt(rec: Recommendation, base_name: str) -> str:
    pairs = "; ".join(
        f"{d} {100 * r:.1f}% vs {100 * b:.1f}%"
        for d, r, b in zip(rec.mixture.index, rec.mixture, rec.baseline, strict=True)
    )
    return (
        f"Bar chart of each domain's share in the recommended mixture and in the baseline "
        f"({base_name}): {pairs}"
    )


def _by_size_cells(by_size: pd.DataFrame) -> pd.DataFrame:
    """The optimum at every fitted size and at the target (``*``) for people: shares in %
    with the sd of the per-draw optima, and the objective."""
    domains = [c for c in by_size.columns if not c.startswith(("sd_", "objective"))]
    cells = pd.DataFrame(index=by_size.index)
    for d in domains:
        cells[f"{d} %"] = [
            f"{100 * v:.1f} ± {100 * sd:.1f}"
            for v, sd in zip(by_size[d], by_size[f"sd_{d}"], strict=True)
        ]
    for c in by_size.columns:
        if c.startswith("objective"):
            cells[c] = by_size[c].map("{:.4f}".format)
    cells.index.name = "model size"
    return cells


def section_decision(
    fit: ReportInputs,
    objective: str = "mean",
    constraints: MixtureConstraints | None = None,
    baseline: pd.Series | pd.DataFrame | str | None = None,
) -> dict[str, Any]:
    """The mixture to train at the target step, against the baseline.

    ``objective``, ``constraints`` and ``baseline`` are passed to
    :func:`bimix_bayes.decision.recommend.optimize`.
    """
    rec = optimize(
        fit.idata,
        fit.target,
        objective=objective,
        constraints=constraints,
        baseline=baseline,
        seed=fit.seed,
        size=fit.size,
    )
    reasons = rec.constraints[
        (rec.constraints["lower_reason"] != "") | (rec.constraints["upper_reason"] != "")
    ][["status", "lower_reason", "upper_reason"]]
    base = baseline_facts(rec, baseline)
    decision = {
        "rec": rec,
        "baseline": base,
        "recommended": shares_text(rec.mixture),
        "table": html_table(decision_cells(rec)),
        "objective_table": html_table(rec.objective_table().map(lambda v: f"{v:.5f}")),
        "constraints": html_table(reasons) if len(reasons) else "",
        "figure": to_data_uri(decision_figure(rec.draws, rec.p_beats_baseline)),
        "shares_figure": to_data_uri(shares_figure(rec.mixture, rec.baseline, base["name"])),
        "shares_alt": _shares_alt(rec, base["name"]),
        "improvement": rec.improvement,
        "by_size": None if rec.by_size is None else html_table(_by_size_cells(rec.by_size)),
    }
    return {"decision": decision, "objective": rec.objective}


def section_next_runs(
    fit: ReportInputs, batch: int, constraints: MixtureConstraints | None
) -> dict[str, Any]:
    """What to train next: the ``batch`` proxy runs worth most to the decision at the report's
    target (:func:`~bimix_bayes.decision.next_run.propose_next_runs`), their value in nats
    and the value of stopping now. Empty when ``batch`` is 0."""
    if not batch:
        return {"next_runs": None}
    from bimix_bayes.decision.next_run import propose_next_runs

    plan = propose_next_runs(
        fit.idata, fit.target, batch=batch, constraints=constraints, size=fit.size
    )
    table = plan.display_table().rename(
        columns={
            "value": "value (nats)",
            "gain": "gain (nats)",
            "value_se": "se",
            "change": "changes the choice",
            "ess": "effective draws",
        }
    )
    return {
        "next_runs": {
            "table": html_table(table),
            "stopping": f"{plan.value_of_stopping:.2e}",
            "recovered": f"{100 * plan.recovered:.0f}",
            "luck": None if plan.run_luck_sd is None else f"{plan.run_luck_sd:.2e}",
            "regret_to_luck": None
            if not plan.run_luck_sd
            else f"{plan.value_of_stopping / plan.run_luck_sd:.2g}",
            "proxy_step": plan.proxy_step,
            "proxy_size": None if plan.proxy_size is None else size_label(plan.proxy_size),
            "settings": plan.settings,
            "method": plan.method,
            "notes": plan.notes,
        }
    }
