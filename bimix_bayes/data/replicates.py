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

__all__ = ["replicate_cells", "replicate_groups", "seed_spread"]


def replicate_groups(data: MixtureData) -> list[list[str]]:
    """Groups of two or more runs with identical shares (in run order)."""
    shares = data.mixtures.round(12)
    groups = shares.groupby(list(shares.columns), sort=False).groups.values()
    return [list(map(str, g)) for g in groups if len(g) > 1]


def replicate_cells(data: MixtureData) -> pd.DataFrame:
    """Every (domain, replicate group, step) that two or more replicates observed (and model
    size, for data with sizes): the sample variance of their log losses (``var``) and how many
    they are (``count``); index ``(domain, group[, size], step)``, empty without replicates.
    :func:`seed_spread` pools them.

    Examples
    --------
    >>> from bimix_bayes.data.embedded import load_default
    >>> cells = replicate_cells(load_default())
    >>> list(cells.index.names), bool((cells["count"] >= 2).all())
    (['domain', 'group', 'step'], True)
    """
    groups = replicate_groups(data)
    index = pd.MultiIndex.from_tuples([], names=["domain", "group", "step"])
    if not groups:
        return pd.DataFrame({"var": [], "count": []}, index=index)
    obs = data.observations
    label = {run: k for k, group in enumerate(groups) for run in group}
    rep = obs[obs["run"].isin(label)].assign(
        group=lambda d: d["run"].map(label), log_loss=lambda d: np.log(d["loss"])
    )
    keys = ["domain", "group", *(["size"] if "size" in rep.columns else []), "step"]
    cells = rep.groupby(keys)["log_loss"].agg(["var", "count"])  # seeds at one size only
    return cells[cells["count"] > 1]


def seed_spread(data: MixtureData) -> pd.DataFrame:
    """Per domain: the sd of log loss between replicates of a mixture, at their common steps,
    beside the spread between mixtures (is the mixture effect larger than seed noise?).

    ``seed_sd`` is the pooled within-group sample variance over every (group, step) that two
    or more replicates observed; ``mixture_sd`` the pooled variance between the mixtures' mean
    log losses (replicates averaged) at each step every mixture observed; ``snr`` their ratio.
    Columns ``seed_sd``, ``mixture_sd``, ``snr``, ``groups``, ``cells`` (group x step cells
    pooled); empty without replicates.

    Examples
    --------
    >>> from bimix_bayes.data.embedded import load_default
    >>> table = seed_spread(load_default())
    >>> list(table.columns)
    ['seed_sd', 'mixture_sd', 'snr', 'groups', 'cells']
    >>> bool((table["snr"] > 1).all())  # the mixtures differ more than seeds in every domain
    True
    """
    cells = replicate_cells(data)
    if cells.empty:
        return pd.DataFrame(columns=["seed_sd", "groups", "cells"])
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
    pooled = pooled.astype({"groups": int, "cells": int})  # counts (a row Series made floats)
    pooled.insert(1, "mixture_sd", _mixture_sd(data).reindex(pooled.index))
    pooled.insert(2, "snr", pooled["mixture_sd"] / pooled["seed_sd"])
    return pooled.reindex([d for d in data.domains if d in pooled.index])


def _mixture_sd(data: MixtureData) -> pd.Series:
    """Per domain: the sd between distinct mixtures of their mean log loss (replicates
    averaged), pooled over the steps at which every mixture was observed."""
    shares = data.mixtures.round(12)
    mixture = shares.groupby(list(shares.columns), sort=False).ngroup()
    obs = data.observations.assign(
        mixture=lambda d: d["run"].map(mixture), log_loss=lambda d: np.log(d["loss"])
    )
    means = obs.groupby(["domain", "step", "mixture"])["log_loss"].mean().unstack("mixture")
    means = means.dropna()  # steps every mixture observed
    return np.sqrt(means.var(axis=1, ddof=1).groupby("domain").mean())
