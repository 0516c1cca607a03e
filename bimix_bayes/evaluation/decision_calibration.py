"""Decision calibration: are the predicted chances that one mixture beats another right?

The decision module says "mixture A ends below mixture B with probability p". In a
``holdout-mixtures`` backtest both runs are held out, so that claim can be scored: for every
pair of held-out runs, ``p`` = the share of joint forecast draws in which run ``a``'s mean loss
over domains (the decision's objective) at the last held-out step is below run ``b``'s, and the
outcome is whether it was. The **Brier score** ``mean((p - outcome)^2)`` is 0 for certain and
right, 0.25 for always saying 0.5; the **reliability table** bins ``p`` and compares each bin's
mean ``p`` with how often the event happened (a calibrated forecaster sits on the diagonal).

Examples
--------
>>> import numpy as np
>>> draws = np.array([[3.0, 3.1, 2.9], [3.05, 3.0, 3.2]])   # 2 draws x 3 runs
>>> pairs = pairwise_probabilities(draws, ["a", "b", "c"])
>>> pairs[["run_a", "run_b", "p_a_below"]].values.tolist()
[['a', 'b', 0.5], ['a', 'c', 0.5], ['b', 'c', 0.5]]
>>> pairs = with_outcomes(pairs, {"a": 3.0, "b": 3.2, "c": 3.1})
>>> round(brier_score(pairs), 3)
0.25
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["brier_score", "pairwise_probabilities", "reliability_table", "with_outcomes"]


def pairwise_probabilities(draws: np.ndarray, runs: Sequence[str]) -> pd.DataFrame:
    """P(run a's loss < run b's) for every pair ``a < b`` (in ``runs`` order), from joint draws.

    Parameters
    ----------
    draws
        Loss draws shaped (draw, run): column ``j`` is run ``runs[j]``, and each row one joint
        draw (the same posterior draw or bootstrap replicate for every run).
    runs
        Run names.

    Returns
    -------
    pandas.DataFrame
        Columns ``run_a, run_b, p_a_below`` (ties count half).
    """
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 2 or draws.shape[1] != len(runs):
        raise ValueError(f"draws must be (draw, run) with {len(runs)} runs, got {draws.shape}")
    a, b = np.triu_indices(len(runs), k=1)
    diff = draws[:, a] - draws[:, b]
    p = (diff < 0).mean(axis=0) + 0.5 * (diff == 0).mean(axis=0)
    names = np.asarray(runs, dtype=object)
    return pd.DataFrame({"run_a": names[a], "run_b": names[b], "p_a_below": p})


def with_outcomes(pairs: pd.DataFrame, observed: Mapping[str, float]) -> pd.DataFrame:
    """``pairs`` with ``a_below`` (1, 0, or 0.5 for a tie) from the observed losses by run."""
    loss_a = pairs["run_a"].map(observed).to_numpy(dtype=float)
    loss_b = pairs["run_b"].map(observed).to_numpy(dtype=float)
    outcome = np.where(loss_a < loss_b, 1.0, np.where(loss_a > loss_b, 0.0, 0.5))
    return pairs.assign(a_below=outcome)


def brier_score(pairs: pd.DataFrame) -> float:
    """Mean squared difference between predicted probability and outcome (NaN without pairs)."""
    if pairs.empty:
        return float("nan")
    return float(np.mean((pairs["p_a_below"] - pairs["a_below"]) ** 2))


def reliability_table(pairs: pd.DataFrame, bins: int = 5) -> pd.DataFrame:
    """Per bin of predicted probability: pairs, mean predicted ``p`` and observed frequency.

    Each pair counts once, oriented so that ``p >= 0.5`` (the favourite's chance), so the bins
    span [0.5, 1]: "when the model gave the favourite 80-90 %, how often did it win?".

    Examples
    --------
    >>> pairs = pd.DataFrame({"p_a_below": [0.9, 0.2, 0.6], "a_below": [1.0, 0.0, 0.0]})
    >>> table = reliability_table(pairs, bins=2)
    >>> table["bin"].tolist(), table["pairs"].tolist(), table["observed"].tolist()
    (['50%-75%', '75%-100%'], [1, 2], [0.0, 1.0])
    """
    fav = np.maximum(pairs["p_a_below"], 1 - pairs["p_a_below"]).to_numpy()
    won = np.where(pairs["p_a_below"] >= 0.5, pairs["a_below"], 1 - pairs["a_below"])
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(fav, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for k in range(bins):
        sel = which == k
        rows.append(
            {
                "bin": f"{edges[k]:.0%}-{edges[k + 1]:.0%}",
                "pairs": int(sel.sum()),
                "predicted": float(fav[sel].mean()) if sel.any() else float("nan"),
                "observed": float(won[sel].mean()) if sel.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows).query("pairs > 0").reset_index(drop=True)
