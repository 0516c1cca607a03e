"""The runs of the report: one table row per fitted run (its shares), and links to it.

Every run gets an HTML ``id`` (:func:`run_anchor`: ``run-`` and the name, any character other
than letters, digits, ``-`` and ``.`` written as ``_hex_``, so that distinct names never share
one); the template's ``run_link`` macro links a run id anywhere in the report to its row of the
runs table (:func:`section_runs`), so a name like ``m015`` always leads to its mixture.

Examples
--------
>>> run_anchor("m015"), run_anchor("run <3>"), run_anchor("a_b")
('run-m015', 'run-run_20__3c_3_3e_', 'run-a_5f_b')
>>> from bimix_bayes.data.simulate import simulate_default
>>> runs = section_runs(simulate_default(seed=1))
>>> runs["runs_domains"][:2], runs["runs_table"][0]["anchor"]
(['web', 'code'], 'run-mix000')
"""

from __future__ import annotations

import re
from typing import Any

from bimix_bayes.data.replicates import replicate_groups
from bimix_bayes.data.table import MixtureData

__all__ = ["run_anchor", "section_runs"]

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


def run_anchor(run: object) -> str:
    """The HTML ``id`` of a run's row in the runs table (safe in an ``id`` and a URL fragment).

    Examples
    --------
    >>> f'<a href="#{run_anchor("m015")}">'
    '<a href="#run-m015">'
    """
    return "run-" + _UNSAFE.sub(lambda m: f"_{ord(m.group()):x}_", str(run))


def section_runs(data: MixtureData) -> dict[str, Any]:
    """The runs table: per fitted run, its anchor, shares (%) per training domain, checkpoints
    fitted, their steps, and the other runs of the same mixture (replicates: other seeds).

    Parameters
    ----------
    data
        The fitted data.

    Returns
    -------
    dict
        ``runs_table`` (one dict per run: ``run, anchor, shares, checkpoints, steps,
        replicates``), ``runs_domains`` (the share columns) and ``runs_replicated`` (whether
        any run has replicates, to show that column).
    """
    same: dict[str, list[str]] = {}
    for group in replicate_groups(data):
        for run in group:
            same[run] = [r for r in group if r != run]
    steps = data.observations.groupby("run")["step"].agg(["nunique", "min", "max"])
    domains = list(data.mixtures.columns)
    rows = []
    for run, shares in data.mixtures.iterrows():
        n, lo, hi = steps.loc[run] if run in steps.index else (0, float("nan"), float("nan"))
        rows.append(
            {
                "run": str(run),
                "anchor": run_anchor(run),
                "shares": [f"{100 * shares[d]:.1f}%" for d in domains],
                "checkpoints": int(n),
                "steps": f"{lo:.4g} to {hi:.4g}",
                "replicates": same.get(str(run), []),
            }
        )
    return {"runs_table": rows, "runs_domains": domains, "runs_replicated": bool(same)}
