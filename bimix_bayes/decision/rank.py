"""Ranking candidate mixtures (entropy proxies, DoReMi weights, the current recipe) by a
posterior objective of their weighted loss, with intervals and the probability of being best.

Examples
--------
>>> rank(idata, read_mixtures("candidates.csv"), step=4e10).head()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bimix_bayes.data.loaders import size_count, step_count
from bimix_bayes.data.mixture_input import mixture_frame, mixtures_words
from bimix_bayes.data.table import DataError
from bimix_bayes.decision.objectives import Objective
from bimix_bayes.decision.problem import candidate_shares, prepare
from bimix_bayes.decision.surface import weighted_loss

if TYPE_CHECKING:
    import arviz as az

__all__ = ["rank"]


def rank(
    idata: az.InferenceData,
    candidates: pd.DataFrame,
    step: float | str,
    *,
    objective: Objective | str = "mean",
    weights: Mapping[str, float] | None = None,
    domains: Sequence[str] | None = None,
    prob: float = 0.9,
    size: float | None = None,
) -> pd.DataFrame:
    """Rank candidate mixtures by a posterior objective of the weighted loss at ``step`` (and
    model ``size``, for a fit of data with model sizes).

    Parameters
    ----------
    candidates
        One row per mixture, one column per training domain, named by the index or by a
        ``name``/``mixture``/``run`` column (a table from ``pd.read_csv``; see
        :func:`~bimix_bayes.data.mixture_input.mixture_frame`).
    prob
        Probability of the central interval of each candidate's weighted loss.

    Returns
    -------
    pandas.DataFrame
        Sorted best first: ``rank, mixture, objective, mean, median, lower_XX, upper_XX,
        p_best`` (the posterior probability that the candidate has the lowest weighted loss of
        all candidates) and ``p_beats_next`` (that it beats the next one down; empty for the
        last). Candidates with the same shares (seeds of one mixture) are one row, named
        ``"first (= second, third)"``: the law forecasts them alike, and apart they would tie
        (``p_beats_next`` 0 between equals, ``p_best`` all on the first).

    Examples
    --------
    >>> rank(idata, read_mixtures("candidates.csv"), step=4e10)  # doctest: +SKIP
    """
    step, size = step_count(step), size_count(size)
    objective = Objective.parse(objective) if isinstance(objective, str) else objective
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob!r}")
    diag, surface, _, w = prepare(idata, step, weights, domains, size)
    what = mixtures_words(candidates, "the candidate mixtures")
    shares = candidate_shares(
        mixture_frame(candidates, what),
        surface.columns,
        surface.counted_columns(w),
        what,
        allow_zero=surface.finite_at_zero,
    )
    if len(shares) == 0:
        raise DataError("no candidate mixtures to rank")
    if shares.index.has_duplicates:
        raise DataError(
            f"candidate names repeat: {sorted(set(shares.index[shares.index.duplicated()]))}"
        )
    shares = _merge_identical(shares)
    values = weighted_loss(surface, w, shares.to_numpy())  # (draws, candidates)
    best = np.argmin(values, axis=1)
    lo_name, hi_name = f"lower_{100 * prob:g}", f"upper_{100 * prob:g}"
    table = pd.DataFrame(
        {
            "mixture": [str(i) for i in shares.index],
            "objective": [objective(values[:, j]) for j in range(values.shape[1])],
            "mean": values.mean(axis=0),
            "median": np.median(values, axis=0),
            lo_name: np.quantile(values, (1 - prob) / 2, axis=0),
            hi_name: np.quantile(values, (1 + prob) / 2, axis=0),
            "p_best": np.bincount(best, minlength=values.shape[1]) / values.shape[0],
        }
    )
    order = np.argsort(table["objective"].to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    sorted_values = values[:, order]
    table["p_beats_next"] = np.append(
        np.mean(sorted_values[:, :-1] < sorted_values[:, 1:], axis=0), np.nan
    )
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table.attrs.update(
        objective=objective.name,
        objective_label=objective.label,
        step=float(step),
        fit_passed=diag.passed,
    )
    return table


def _merge_identical(shares: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct mixture (shares equal to 12 decimals), in order of first
    appearance, named ``"first (= others)"``.

    Examples
    --------
    >>> shares = pd.DataFrame({"a": [0.5, 0.2, 0.5], "b": [0.5, 0.8, 0.5]})
    >>> shares.index = ["u", "v", "u_s1"]
    >>> _merge_identical(shares).index.tolist()
    ['u (= u_s1)', 'v']
    """
    key = pd.Series([tuple(row) for row in shares.to_numpy().round(12)], index=shares.index)
    if not key.duplicated().any():
        return shares
    first = ~key.duplicated()
    names = {k: [str(n) for n in group.index] for k, group in key.groupby(key, sort=False)}
    out = shares[first.to_numpy()].copy()
    out.index = [
        names[k][0] + (f" (= {', '.join(names[k][1:])})" if len(names[k]) > 1 else "")
        for k in key[first]
    ]
    return out
