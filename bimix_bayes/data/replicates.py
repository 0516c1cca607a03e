"""Replicates: runs of the same mixture with different seeds, and the spread they measure.

Runs whose shares are identical (every training domain) are replicates of one mixture, whatever
their names or seed column: the model treats each as its own run of that mixture, so the
between-seed variation informs the run-offset sd. Their spread at common steps is the run-to-run
variation a forecast of a new run must carry, measured directly.

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> data = simulate_default(seed=1)
>>> replicate_groups(data)  # every simulated run has its own mixture
[]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bimix_bayes.data.table import MixtureData

__all__ = ["replicate_groups", "seed_spread"]


def replicate_groups(data: MixtureData) -> list[list[str]]:
    """Groups of two or more runs with identical shares (in run order)."""
    shares = data.mixtures.round(12)
    groups = shares.groupby(list(shares.columns), sort=False).groups.values()
    return [list(map(str, g)) for g in groups if len(g) > 1]


def seed_spread(data: MixtureData) -> pd.DataFrame:
    """Per domain: the sd of log loss between replicates of a mixture, at their common steps.

    The pooled within-group sample variance over every (group, step) that two or more
    replicates observed. Columns ``seed_sd`` (log loss), ``groups``, ``cells`` (group x step
    cells pooled); empty without replicates.
    """
    groups = replicate_groups(data)
    if not groups:
        return pd.DataFrame(columns=["seed_sd", "groups", "cells"])
    obs = data.observations
    label = {run: k for k, group in enumerate(groups) for run in group}
    rep = obs[obs["run"].isin(label)].assign(
        group=lambda d: d["run"].map(label), log_loss=lambda d: np.log(d["loss"])
    )
    cells = rep.groupby(["domain", "group", "step"])["log_loss"].agg(["var", "count"])
    cells = cells[cells["count"] > 1]
    pooled = cells.groupby("domain").apply(
        lambda c: pd.Series(
            {
                "seed_sd": float(np.sqrt(np.average(c["var"], weights=c["count"] - 1))),
                "groups": c.index.get_level_values("group").nunique(),
                "cells": len(c),
            }
        ),
        include_groups=False,
    )
    return pooled.reindex([d for d in data.domains if d in pooled.index])
