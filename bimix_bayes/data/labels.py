"""Names every layer shares: row labels of averaged rows, run kinds, interval columns, and the
long (tidy) table built from named dimensions.

Defined once here, at the bottom layer, so that a forecast, a backtest, a decision and a report
label the same thing the same way.

Examples
--------
>>> interval_columns(0.9)
('lower_90', 'upper_90')
>>> interval_columns(0.975)
('lower_97_5', 'upper_97_5')
>>> long_table({"run": ["a", "b"], "step": [10, 20]}, loss=[[1.0, 2.0], [3.0, 4.0]])
  run  step  loss
0   a    10   1.0
1   a    20   2.0
2   b    10   3.0
3   b    20   4.0
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ALL_DOMAINS",
    "ALL_POINTS",
    "NEW",
    "OBSERVED",
    "WEIGHTED_DOMAINS",
    "evaluation_only_hint",
    "interval_columns",
    "long_table",
    "near_names",
]

#: Row label of the plain mean over evaluation domains.
ALL_DOMAINS = "(mean of domains)"
#: Row label of a weighted mean over evaluation domains (user-given weights).
WEIGHTED_DOMAINS = "(weighted mean of domains)"
#: Row label of metrics pooled over every per-domain point.
ALL_POINTS = "(all points)"
#: A forecast target that was trained: its observed run continued to more steps.
OBSERVED = "observed run"
#: A forecast target never trained: a new run of that mixture.
NEW = "new mixture"


def interval_columns(prob: float) -> tuple[str, str]:
    """Column names of the central ``prob`` interval: ``("lower_90", "upper_90")`` for 0.9.

    A fractional percentage writes its point as ``_`` (``lower_97_5``), so that every name is an
    identifier.
    """
    label = f"{100 * float(prob):g}".replace(".", "_")
    return f"lower_{label}", f"upper_{label}"


def long_table(dims: Mapping[str, Sequence[Any] | np.ndarray], **columns: Any) -> pd.DataFrame:
    """A long table from arrays over named dimensions (the product of ``dims``, in order).

    Parameters
    ----------
    dims
        Dimension name -> its labels; the arrays in ``columns`` have shape
        ``tuple(len(v) for v in dims.values())`` (or broadcast to it).
    **columns
        Column name -> array over the dimensions.

    Returns
    -------
    pandas.DataFrame
        One row per cell, the dimension labels as the first columns (C order: the last
        dimension varies fastest).
    """
    names = list(dims)
    index = pd.MultiIndex.from_product([list(v) for v in dims.values()], names=names)
    shape = tuple(len(v) for v in dims.values())
    out = index.to_frame(index=False)
    for name, values in columns.items():
        out[name] = np.broadcast_to(np.asarray(values), shape).ravel()
    return out


def near_names(unknown: Iterable[str], known: Iterable[str]) -> str:
    """``"; did you mean 'github' for 'githb'?"`` for each unknown name close to a known one
    (difflib's ratio at least 0.75), or ``""``: what a message about a misspelt domain adds.

    Examples
    --------
    >>> near_names(["githb", "klingon"], ["github", "arxiv"])
    "; did you mean 'github' for 'githb'?"
    >>> near_names(["klingon"], ["github"])
    ''
    """
    known = [str(k) for k in known]
    pairs = {
        u: m[0] for u in map(str, unknown) if (m := difflib.get_close_matches(u, known, 1, 0.75))
    }
    return "".join(f"; did you mean {m!r} for {u!r}?" for u, m in pairs.items())


def evaluation_only_hint(evaluation_only: Iterable[str], training: Iterable[str]) -> str:
    """What a message about evaluation domains without a share adds when they look like the
    training domains under other names: ``"; did you mean ..."`` for a misspelt one
    (:func:`near_names`), or, when no training domain has losses and each of them contains a
    different training domain's name (``eval/web_loss`` and ``web``), how to name them; else
    ``""``.

    Examples
    --------
    >>> evaluation_only_hint(["eval/web_loss", "eval/code_loss"], ["web", "code"])[:62]
    "; they look like the training domains' names inside other text"
    >>> evaluation_only_hint(["Pile-CC", "ArXiv"], ["web", "code"])
    ''
    """
    names, training = [str(n) for n in evaluation_only], [str(t) for t in training]
    if not set(names).isdisjoint(training):
        return ""
    near = near_names(names, training)
    inside = {
        n: found[0]
        for n in names
        if len(found := [t for t in training if t and t.lower() in n.lower()]) == 1
    }
    if near or len(inside) < len(names) or len(set(inside.values())) < len(inside):
        return near
    shown = ", ".join(f"{n!r} ~ {t!r}" for n, t in list(inside.items())[:3])
    return (
        f"; they look like the training domains' names inside other text ({shown}): if they "
        "are those domains' losses, give them exactly the training domains' names (in a long "
        "file, the domain column's values; in a wide file, a --loss-pattern whose {domain} "
        "stands for the training domain's name, e.g. --loss-pattern 'eval/{domain}_loss' for "
        "columns named like 'eval/web_loss')"
    )
