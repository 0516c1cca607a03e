"""Mixtures read from files: a file of candidate mixtures, and the runs' mixtures in a loss log.

* :func:`read_mixtures` reads a file of mixtures to rank or predict at (one row per mixture,
  one proportion column per domain), checked to hold shares in [0, 1] summing to 1;
* :func:`mixtures_from_rows` takes each run's mixture from the rows of a loss log (a run's rows
  must all agree), and :func:`runs_from_mixture` names runs by their mixture when a log has no
  run column.

Examples
--------
>>> props = pd.DataFrame({"web": [0.7, 0.7, 0.3], "code": [0.3, 0.3, 0.7]})
>>> runs_from_mixture(props).tolist()
['m000', 'm000', 'm001']
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bimix_bayes.data.columns import PROP_PATTERNS, parse_proportions, pattern_columns, read_rows
from bimix_bayes.data.table import DataError, cell_examples, describe_locations

__all__ = ["MIXTURE_NAME_COLUMNS", "mixtures_from_rows", "read_mixtures", "runs_from_mixture"]

#: Names of the column that names each mixture in a mixture file (case-insensitive).
MIXTURE_NAME_COLUMNS = ("mixture", "name", "run", "run_id", "id")


def runs_from_mixture(props: pd.DataFrame) -> pd.Series:
    """Name runs by their mixture, in order of first appearance: ``m000``, ``m001``, ...

    Mixtures are compared as numbers (to 12 significant digits), so ``0.5`` and ``0.50`` agree.
    """
    key = props.map(lambda v: f"{v:.12g}").agg("|".join, axis=1)
    codes = {k: f"m{i:03d}" for i, k in enumerate(dict.fromkeys(key))}
    return key.map(codes)


def mixtures_from_rows(
    props: pd.DataFrame,
    run_ids: pd.Series,
    prop_cols: dict[str, str],
    locations: np.ndarray,
    source: str,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """One mixture per run (and where it was first seen); a run's rows must all agree.

    Parameters
    ----------
    props
        The proportions of every row, one column per domain (:func:`parse_proportions`).
    run_ids
        The run of every row.
    prop_cols, locations, source
        For messages: domain -> the file's column, where each row is, and the file.

    Returns
    -------
    mixtures, run_locations
        One row per run (index ``run``, in order of first appearance), and where each run's
        mixture was first seen.

    Raises
    ------
    DataError
        When the proportions change between rows of one run.
    """
    runs = run_ids.to_numpy()
    first_row = pd.Series(np.arange(len(runs))).groupby(runs, sort=False).transform("first")
    first_row = first_row.to_numpy()
    values = props.to_numpy(dtype=float)
    differs = np.abs(values - values[first_row]) > 1e-12
    if differs.any():
        ex = cell_examples(
            differs,
            lambda i, j: (
                f"run {runs[i]!r}: {locations[i]}, column "
                f"{prop_cols[props.columns[j]]!r} = {values[i, j]:g} but "
                f"{values[first_row[i], j]:g} on {locations[first_row[i]]}"
            ),
        )
        raise DataError(
            f"{source}: the proportions change between rows of the same run "
            f"({describe_locations(ex)}); a run has one mixture"
        )
    keep = np.unique(first_row)
    mixtures = pd.DataFrame(
        values[keep], index=pd.Index(runs[keep], name="run"), columns=list(props.columns)
    )
    return mixtures, {runs[i]: str(locations[i]) for i in keep}


def read_mixtures(
    path: str | os.PathLike[str],
    *,
    sum_tol: float = 1e-3,
    domains: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read candidate mixtures: one row per mixture, one proportion column per domain.

    The name column is ``mixture``/``name``/``run``/``id`` (or the first column if it is not
    numeric; otherwise rows are named ``mix1, mix2, ...``). Proportion columns are the domain
    names, optionally with a proportion prefix (``p_web`` or ``weight_web``). Each row must hold
    numbers in [0, 1] summing to 1 within ``sum_tol``. ``domains`` (a fit's training domains):
    a row that does not sum to 1 because one of them has no column is refused for that column.

    Raises
    ------
    DataError
        Naming the file and line of every share out of [0, 1], every row off 1, or repeated names.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "mix.csv"
    ...     _ = p.write_text("name,web,code\\nmine,0.7,0.3\\n")
    ...     read_mixtures(p).loc["mine", "web"]
    np.float64(0.7)
    """
    table, locations, source = read_rows(path, "the mixture file has no rows")
    lower = {c.lower(): c for c in table.columns}
    name_col = next((lower[c] for c in MIXTURE_NAME_COLUMNS if c in lower), None)
    first = table.columns[0]
    if name_col is None and pd.to_numeric(table[first], errors="coerce").isna().all():
        name_col = first
    names = (
        table[name_col].astype(str).str.strip()
        if name_col is not None
        else pd.Series([f"mix{i + 1}" for i in range(len(table))])
    )
    prop_table = table.drop(columns=[name_col] if name_col else [])
    columns = list(prop_table.columns)
    for pattern in PROP_PATTERNS:
        found = pattern_columns(columns, pattern)
        if len(found) == len(columns):
            prop_table = prop_table.rename(columns={c: d for d, c in found.items()})
            break
    props = parse_proportions(prop_table, {c: c for c in prop_table.columns}, locations, source)
    values = props.to_numpy(dtype=float)
    bad = (values < 0) | (values > 1)
    if bad.any():
        ex = cell_examples(
            bad, lambda i, j: f"{locations[i]}, {props.columns[j]!r} = {values[i, j]:g}"
        )
        hint = ""
        if np.allclose(values.sum(axis=1), 100, rtol=1e-3):
            hint = "; every row sums to 100, so they look like percent: divide them by 100"
        raise DataError(
            f"{source}: proportions must lie in [0, 1] ({describe_locations(ex)}){hint}"
        )
    sums = values.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > sum_tol)
    if off.size:
        ex = [f"{locations[i]} ({names.iloc[i]}) sums to {sums[i]:.6g}" for i in off]
        missing = [d for d in domains or () if d not in props.columns]
        if missing:
            raise DataError(
                f"{source}: no column for the training domain(s) {missing} (columns: "
                f"{list(props.columns)}), so {off.size} mixture(s) do not sum to 1 "
                f"({describe_locations(ex)}); add a column per training domain (0 where unused)"
            )
        raise DataError(
            f"{source}: {off.size} mixture(s) do not sum to 1 within {sum_tol:g} "
            f"({describe_locations(ex)}); list every training domain's share"
        )
    if names.duplicated().any():
        raise DataError(f"{source}: mixture names repeat: {sorted(set(names[names.duplicated()]))}")
    props.index = pd.Index(names.to_numpy(), name="mixture")
    props.attrs["source"] = str(source)  # messages about these mixtures name the file
    return props
