"""Reading a table file and finding its columns: the first step of every loader.

:func:`read_table` reads a CSV (cells kept as text, so that a bad cell can be named) or Parquet
file; :func:`read_rows` adds the location of each row (``"line 2"``: CSV line numbers count the
header as line 1). The column finders detect the run, step, domain and loss columns by their
usual names (:data:`RUN_COLUMNS`...) and the per-domain proportion and loss columns by name
patterns with ``{domain}`` (:data:`PROP_PATTERNS`, :data:`LOSS_PATTERNS`); the parsers turn the
step and proportion columns into floats, naming every bad cell.

Examples
--------
>>> pattern_columns(["p_web", "p_code", "loss"], "p_{domain}")
{'web': 'p_web', 'code': 'p_code'}
>>> pick_column(["Run", "step"], None, RUN_COLUMNS, "run id", "f.csv", "--run-col")
'Run'
"""

from __future__ import annotations

import lzma
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bimix_bayes.data.table import DataError, describe_locations, to_numeric

__all__ = [
    "DOMAIN_COLUMNS",
    "EXAMPLE_PATTERNS",
    "LOSS_COLUMNS",
    "LOSS_PATTERNS",
    "PROP_PATTERNS",
    "RUN_COLUMNS",
    "STEP_COLUMNS",
    "detect_pattern",
    "parse_proportions",
    "parse_steps",
    "pattern_columns",
    "pick_column",
    "read_rows",
    "read_table",
    "row_locations",
]

RUN_COLUMNS = ("run", "run_id", "run_name")
STEP_COLUMNS = ("step", "steps", "tokens", "n_tokens", "num_tokens", "token", "iteration")
DOMAIN_COLUMNS = ("domain", "eval_domain", "evaluation_domain")
LOSS_COLUMNS = ("loss", "val_loss", "valid_loss")
PROP_PATTERNS = (
    "p_{domain}",
    "weight_{domain}",
    "prop_{domain}",
    "proportion_{domain}",
    "r_{domain}",
    "{domain}_weight",
    "{domain}_proportion",
)
LOSS_PATTERNS = ("{domain}_loss", "loss_{domain}", "{domain}_val_loss")
EXAMPLE_PATTERNS = {"--prop-pattern": "share_{domain}", "--loss-pattern": "{domain}_val_loss"}


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV (optionally compressed) or Parquet file, keeping CSV cells as text.

    CSV cells are read as strings so that the validation can point at the exact bad cell.

    Raises
    ------
    DataError
        When the file is missing, a folder, of an unknown type, or cannot be parsed.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass a CSV or Parquet file")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if re.search(r"\.(csv|tsv|txt)(\.(gz|bz2|xz|zst|zip))?$", name):
            sep = "\t" if ".tsv" in name else ","
            table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
            _check_header(path, sep)
            _check_delimiter(path, table, sep)
            return table
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position "
            f"{exc.start}); re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from exc
    except (EOFError, zlib.error, lzma.LZMAError) as exc:
        raise DataError(
            f"{path}: the compressed file is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "copy or download it again"
        ) from exc
    except (OSError, ValueError, ImportError) as exc:
        if isinstance(exc, pd.errors.EmptyDataError):
            raise DataError(f"{path}: the file is empty (no header, no rows)") from exc
        raise DataError(f"{path}: could not be read as a table ({exc})") from exc
    raise DataError(f"{path}: unknown file type; use .csv (.csv.gz, .tsv) or .parquet")


def _check_header(path: Path, sep: str) -> None:
    """Refuse repeated column names (pandas would rename the second ``loss`` to ``loss.1``)."""
    header = pd.read_csv(path, sep=sep, dtype=str, header=None, nrows=1).iloc[0].tolist()
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen:
            raise DataError(
                f"{path}: column {name!r} appears twice (columns {seen[name] + 1} and {i + 1}); "
                "rename or remove one of them"
            )
        seen[name] = i


def _check_delimiter(path: Path, table: pd.DataFrame, sep: str) -> None:
    """A one-column table whose header holds another delimiter was read with the wrong one."""
    if table.shape[1] != 1:
        return
    header = str(table.columns[0])
    for other, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
        if other != sep and other in header:
            raise DataError(
                f"{path}: read as one column {header[:60]!r}; the file seems separated by "
                f"{label}, not {'tabs' if sep == chr(9) else 'commas'}; re-save it "
                "comma-separated (.csv) or tab-separated (.tsv)"
            )


def pick_column(
    columns: Sequence[str],
    given: str | None,
    candidates: Sequence[str],
    what: str,
    source: str,
    hint: str,
) -> str:
    """The column for ``what``: ``given`` if it exists, else the first of ``candidates`` present.

    Candidates match case-insensitively.

    Parameters
    ----------
    columns
        The table's column names.
    given
        The name the user gave (checked to exist), or None to detect it.
    candidates
        Lower-case names to look for, in order.
    what, source, hint
        For messages: what the column holds, the file, and the option naming it
        (``"--run-col"``).

    Raises
    ------
    DataError
        When ``given`` is not a column or no candidate is.
    """
    if given is not None:
        if given not in columns:
            raise DataError(
                f"{source}: no column {given!r} for the {what}; columns: {list(columns)}"
            )
        return given
    lower = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    raise DataError(
        f"{source}: cannot find the {what} column (looked for {list(candidates)}; columns: "
        f"{list(columns)}); name it with {hint}"
    )


def pattern_columns(columns: Sequence[str], pattern: str) -> dict[str, str]:
    """Map domain -> column for the columns matching ``pattern`` (with ``{domain}``)."""
    if "{domain}" not in pattern:
        raise ValueError(f"column pattern {pattern!r} must contain '{{domain}}'")
    head, tail = pattern.split("{domain}", 1)
    regex = re.compile(re.escape(head) + r"(.+)" + re.escape(tail) + r"$")
    out = {}
    for c in columns:
        m = regex.match(c)
        if m:
            out[m.group(1)] = c
    return out


def detect_pattern(
    columns: Sequence[str],
    given: str | None,
    candidates: Sequence[str],
    what: str,
    source: str,
    flag: str,
) -> tuple[str, dict[str, str]]:
    """The per-domain columns of ``what``: the pattern and its ``domain -> column`` map.

    With ``given`` that pattern must match some column; otherwise the candidate pattern that
    matches the most columns wins (the first one on a tie).

    Parameters
    ----------
    columns
        The table's column names.
    given
        A pattern with ``{domain}`` the user gave, or None to detect one.
    candidates
        Patterns to try (:data:`PROP_PATTERNS`, :data:`LOSS_PATTERNS`).
    what, source, flag
        For messages: what the columns hold, the file, and the option naming the pattern (a key
        of :data:`EXAMPLE_PATTERNS`).

    Raises
    ------
    DataError
        When no column matches.

    Examples
    --------
    >>> detect_pattern(["weight_a", "weight_b", "a_loss"], None, PROP_PATTERNS, "proportion",
    ...                "f.csv", "--prop-pattern")
    ('weight_{domain}', {'a': 'weight_a', 'b': 'weight_b'})
    """
    if given is not None:
        found = pattern_columns(columns, given)
        if not found:
            raise DataError(
                f"{source}: no column matches the {what} pattern {given!r}; "
                f"columns: {list(columns)}"
            )
        return given, found
    best: tuple[str, dict[str, str]] | None = None
    for pattern in candidates:
        found = pattern_columns(columns, pattern)
        if found and (best is None or len(found) > len(best[1])):
            best = (pattern, found)
    if best is None:
        raise DataError(
            f"{source}: cannot find {what} columns (tried patterns {list(candidates)}; columns: "
            f"{list(columns)}); give the pattern with {flag}, e.g. {flag} "
            f"'{EXAMPLE_PATTERNS[flag]}'"
        )
    return best


def row_locations(table: pd.DataFrame, path: Path) -> list[str]:
    """Where each row is, for messages: ``"line i"`` in a CSV (the header is line 1), else
    ``"row i"``.

    Examples
    --------
    >>> row_locations(pd.DataFrame({"a": [1, 2]}), Path("runs.csv"))
    ['line 2', 'line 3']
    """
    is_csv = not path.name.lower().endswith((".parquet", ".pq"))
    return [f"line {i + 2}" if is_csv else f"row {i + 1}" for i in range(len(table))]


def read_rows(
    path: str | os.PathLike[str], empty: str = "the file has no data rows"
) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Read a table for a loader: its rows (column names stripped), where each row is, its name.

    Parameters
    ----------
    path
        A ``.csv`` (``.csv.gz``, ``.tsv``) or ``.parquet`` file.
    empty
        The message (after the file name) when the file has no rows.

    Returns
    -------
    table, locations, source
        The table (cells as text for a CSV), one location per row (``"line 2"`` or
        ``"row 1"``, see :func:`row_locations`) and the file name for messages.

    Raises
    ------
    DataError
        When the file cannot be read or has no rows.
    """
    path = Path(path)
    source = str(path)
    table = read_table(path)
    if table.empty:
        raise DataError(f"{source}: {empty}")
    table.columns = [str(c).strip() for c in table.columns]
    return table, np.asarray(row_locations(table, path), dtype=object), source


def parse_steps(table: pd.DataFrame, col: str, locations: np.ndarray, source: str) -> pd.Series:
    """The step column as floats; non-numbers, missing and non-positive steps name the column."""
    steps = to_numeric(table[col], f"column {col!r}", locations, source)
    bad = ~(np.isfinite(steps.to_numpy()) & (steps.to_numpy() > 0))
    if bad.any():
        ex = [f"{loc} ({v:g})" for loc, v in zip(locations[bad], steps[bad], strict=True)]
        raise DataError(
            f"{source}: column {col!r}: {int(bad.sum())} step value(s) are missing, not finite "
            f"or <= 0 ({describe_locations(ex)}); the law needs s > 0 (drop initial checkpoints)"
        )
    return steps


def parse_proportions(
    table: pd.DataFrame, prop_cols: dict[str, str], locations: np.ndarray, source: str
) -> pd.DataFrame:
    """Proportion columns as floats (one column per domain); a missing cell is an error."""
    props = pd.DataFrame(index=table.index)
    for domain, col in prop_cols.items():
        values = to_numeric(table[col], f"column {col!r}", locations, source)
        missing = values.isna().to_numpy()
        if missing.any():
            raise DataError(
                f"{source}: column {col!r}: {int(missing.sum())} proportion(s) are missing "
                f"({describe_locations(list(locations[missing]))})"
            )
        props[domain] = values
    return props
