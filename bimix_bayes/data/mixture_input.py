"""Mixtures given to the API as a table: rows named by a name column or the index, one numeric
share column per domain.

:func:`mixture_frame` is what :func:`~bimix_bayes.bayes.forecast.predict`,
:func:`~bimix_bayes.decision.rank.rank` and :func:`~bimix_bayes.decision.recommend.optimize`
(its baseline) do first with the mixtures they are given. A table read with ``pd.read_csv`` keeps
its names in a column (``name``, ``mixture``, ``run``...: :data:`MIXTURE_NAME_COLUMNS`) and has a
``0, 1, ...`` index; that column becomes the index, so the mixtures keep their names instead of
being labelled 0, 1. Any other column that is not numbers is refused with a message naming it.
(:func:`~bimix_bayes.data.mixture_files.read_mixtures` reads and checks a mixture file.)

Examples
--------
>>> import io
>>> table = pd.read_csv(io.StringIO("name,web,code\\nuniform,0.5,0.5\\ncode-heavy,0.2,0.8\\n"))
>>> mixtures = mixture_frame(table)
>>> mixtures.index.tolist(), float(mixtures.loc["code-heavy", "code"])
(['uniform', 'code-heavy'], 0.8)
>>> mixture_frame(table.iloc[1]).index.tolist()  # one row of it: a Series
['code-heavy']
>>> mixture_frame({"web": 0.3, "code": 0.7}).loc["mixture", "code"]  # a dict: one mixture
np.float64(0.7)
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from bimix_bayes.data.mixture_files import MIXTURE_NAME_COLUMNS
from bimix_bayes.data.table import DataError, describe_locations

__all__ = ["mixture_frame"]


def _name_column(columns: pd.Index) -> object | None:
    """The column naming the mixtures (the first of :data:`MIXTURE_NAME_COLUMNS`), or None."""
    lower = {str(c).strip().lower(): c for c in columns}
    return next((lower[c] for c in MIXTURE_NAME_COLUMNS if c in lower), None)


def _as_numbers(column: pd.Series, what: str) -> pd.Series:
    """A share column as floats; text that is not a number is a :class:`DataError`."""
    if pd.api.types.is_bool_dtype(column):
        parsed, bad = column.astype(float), column.notna()
    elif pd.api.types.is_numeric_dtype(column):
        return column.astype(float)
    else:
        parsed = pd.to_numeric(column, errors="coerce")
        bad = parsed.isna() & column.notna()
    if bad.any():
        examples = [f"{i!r}: {v!r}" for i, v in column[bad].items()]
        raise DataError(
            f"{what}: column {column.name!r} is not a share column (not numbers: "
            f"{describe_locations(examples)}); give one column naming the mixtures (one of "
            f"{', '.join(MIXTURE_NAME_COLUMNS)}, or the index) and one numeric share column per "
            "training domain"
        )
    return parsed.astype(float)


def mixtures_words(mixtures: pd.DataFrame | pd.Series, what: str) -> str:
    """``what``, with the file the mixtures were read from when known (``attrs["source"]``,
    set by :func:`~bimix_bayes.data.mixture_files.read_mixtures`).

    Examples
    --------
    >>> frame = pd.DataFrame({"web": [1.0]})
    >>> frame.attrs["source"] = "cands.csv"
    >>> mixtures_words(frame, "the candidate mixtures")
    'the candidate mixtures (cands.csv)'
    """
    source = getattr(mixtures, "attrs", {}).get("source")
    return f"{what} ({source})" if source else what


def _as_frame(mixtures: object, what: str) -> pd.DataFrame:
    """A table of the mixtures given as a table, a Series, a dict or a list of dicts."""
    if isinstance(mixtures, pd.Series):
        return mixtures.to_frame().T
    if isinstance(mixtures, pd.DataFrame):
        return mixtures
    if isinstance(mixtures, Mapping) and mixtures:
        if all(isinstance(v, Mapping) for v in mixtures.values()):  # {name: {domain: share}}
            return pd.DataFrame.from_dict(dict(mixtures), orient="index")
        if not any(isinstance(v, Mapping) for v in mixtures.values()):  # {domain: share}
            return pd.DataFrame([dict(mixtures)], index=pd.Index(["mixture"], name="mixture"))
    if isinstance(mixtures, list) and mixtures and all(isinstance(m, Mapping) for m in mixtures):
        return pd.DataFrame(mixtures)  # rows, named by a name key or numbered
    raise TypeError(
        f"{what}: expected a table (pandas DataFrame, one row per mixture and one share column "
        "per domain), a Series or {domain: share} dict for one mixture, or a {name: {domain: "
        f"share}} dict; got {type(mixtures).__name__}"
    )


def mixture_frame(
    mixtures: pd.DataFrame | pd.Series | Mapping | list, what: str = "the mixtures"
) -> pd.DataFrame:
    """Mixtures as one row per mixture, named by the index, and numeric share columns.

    Parameters
    ----------
    mixtures
        A table, one row per mixture and one share column per domain, named by its index or by
        a name column (``mixture``, ``name``, ``run``, ``run_id`` or ``id``, any case: it
        becomes the index, its values stripped text). A Series is one mixture (its name, or its
        entry under a name key, names it); so is a ``{domain: share}`` dict (named
        ``mixture``); ``{name: {domain: share}}`` and a list of such dicts are several.
    what
        Names the mixtures in messages (``"the candidate mixtures"``).

    Returns
    -------
    pandas.DataFrame
        The shares as floats, index ``mixture`` (the names) when a name column was given, else
        the index as given.

    Raises
    ------
    DataError
        For a column that is neither a name column nor numbers, or a missing or repeated name in
        the name column.

    Examples
    --------
    >>> mixture_frame(pd.DataFrame({"web": [0.5], "note": ["my recipe"]}))
    Traceback (most recent call last):
    ...
    bimix_bayes.data.table.DataError: the mixtures: column 'note' is not a share column ...
    """
    frame = _as_frame(mixtures, what)
    name_col = _name_column(frame.columns)
    if name_col is not None:
        names = frame[name_col]
        if names.isna().any():
            raise DataError(f"{what}: the name column {name_col!r} has empty cells")
        names = names.astype(str).str.strip()
        if names.duplicated().any():
            raise DataError(
                f"{what}: mixture names repeat: {sorted(set(names[names.duplicated()]))}"
            )
        frame = frame.drop(columns=[name_col])
        frame.index = pd.Index(names.to_numpy(), name="mixture")
    out = pd.DataFrame({c: _as_numbers(frame[c], what) for c in frame.columns}, index=frame.index)
    out.attrs = dict(getattr(mixtures, "attrs", {}))  # the file they came from, for messages
    return out
