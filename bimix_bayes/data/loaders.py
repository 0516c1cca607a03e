"""Read loss logs from CSV or Parquet, in the long or the wide layout, into :class:`MixtureData`.

Layouts
-------
**long**: one row per (run, step, evaluation domain) with columns for the run id, the step (or
token count), the domain, the loss, and the run's proportions as one column per training domain
named by a pattern (default ``p_{domain}``)::

    run,step,domain,loss,p_web,p_code
    a,1000,web,3.21,0.7,0.3
    a,1000,code,2.02,0.7,0.3

**wide**: one row per (run, step) with one proportion column and one loss column per domain
(default patterns are detected: ``weight_{domain}`` / ``p_{domain}`` / ``prop_{domain}`` and
``{domain}_loss`` / ``loss_{domain}``), like the SlimPajama file of Shukor et al.::

    weight_web,weight_code,n_tokens,web_loss,code_loss
    0.7,0.3,2e9,3.21,2.02

In the wide layout a run is identified by its run column if there is one, otherwise by its mixture
(one run per distinct mixture within the selected group).

Column names are detected when not given (``run``/``run_id``; ``step``/``steps``/``tokens``/
``n_tokens``; ``domain``/``eval_domain``; ``loss``), and every error names the file, the line
(CSV: line numbers count the header as line 1) or column, the problem, and the fix.

Examples
--------
>>> import tempfile, pathlib
>>> text = "run,step,domain,loss,p_web,p_code\\n" + "\\n".join(
...     f"{run},{s},{d},{l},{pw},{1 - pw}"
...     for run, pw in (("a", 0.7), ("b", 0.3))
...     for s in (100, 200, 400)
...     for d, l in (("web", 3.0 + pw / s), ("code", 2.0 + pw / s)))
>>> with tempfile.TemporaryDirectory() as d:
...     path = pathlib.Path(d) / "runs.csv"
...     _ = path.write_text(text)
...     data = load_data(path)
>>> data.domains, data.n_runs
(('web', 'code'), 2)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from bimix_bayes.data.table import (
    DataError,
    MissingPolicy,
    MixtureData,
    Volume,
    ZeroPolicy,
    describe_locations,
    to_numeric,
)

__all__ = ["format_group", "load_data", "parse_size", "read_table"]

Layout = Literal["auto", "long", "wide"]

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
_SIZE_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV (optionally compressed) or Parquet file, keeping CSV cells as text.

    CSV cells are read as strings so that the validation can point at the exact bad cell.
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
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, ValueError, UnicodeDecodeError, ImportError) as exc:
        raise DataError(f"{path}: could not be read as a table ({exc})") from exc
    raise DataError(f"{path}: unknown file type; use .csv (.csv.gz, .tsv) or .parquet")


def parse_size(text: str) -> float | None:
    """Parse a number with an optional size suffix: ``"122M"`` -> 1.22e8; None if not a number.

    Examples
    --------
    >>> parse_size("1.235B"), parse_size("410m"), parse_size("abc")
    (1235000000.0, 410000000.0, None)
    """
    m = re.fullmatch(r"\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*([kKmMbBgGtT]?)\s*", str(text))
    if not m:
        return None
    return float(m.group(1)) * _SIZE_SUFFIX.get(m.group(2).lower(), 1.0)


def format_group(value: object) -> str:
    """Readable label of a group value: ``122000000.0`` -> ``"122M"``; text stays as is.

    Examples
    --------
    >>> format_group("1.235e9"), format_group(70e6), format_group("seed-1")
    ('1.235B', '70M', 'seed-1')
    """
    x = parse_size(str(value))
    if x is None or x < 1e3 or x != x:
        return str(value).strip()
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.4g}{suffix}"
    return str(value)  # pragma: no cover


def _pick(
    columns: Sequence[str],
    given: str | None,
    candidates: Sequence[str],
    what: str,
    source: str,
    hint: str,
) -> str:
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


def _pattern_columns(columns: Sequence[str], pattern: str) -> dict[str, str]:
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


def _detect_pattern(
    columns: Sequence[str],
    given: str | None,
    candidates: Sequence[str],
    what: str,
    source: str,
    flag: str,
) -> tuple[str, dict[str, str]]:
    if given is not None:
        found = _pattern_columns(columns, given)
        if not found:
            raise DataError(
                f"{source}: no column matches the {what} pattern {given!r}; "
                f"columns: {list(columns)}"
            )
        return given, found
    best: tuple[str, dict[str, str]] | None = None
    for pattern in candidates:
        found = _pattern_columns(columns, pattern)
        if found and (best is None or len(found) > len(best[1])):
            best = (pattern, found)
    if best is None:
        raise DataError(
            f"{source}: cannot find {what} columns (tried patterns {list(candidates)}; columns: "
            f"{list(columns)}); give the pattern with {flag}, e.g. {flag} "
            f"'{EXAMPLE_PATTERNS[flag]}'"
        )
    return best


def _locations(table: pd.DataFrame, path: Path) -> list[str]:
    is_csv = not path.name.lower().endswith((".parquet", ".pq"))
    return [f"line {i + 2}" if is_csv else f"row {i + 1}" for i in range(len(table))]


def load_data(
    path: str | os.PathLike[str],
    *,
    layout: Layout = "auto",
    run_col: str | None = None,
    step_col: str | None = None,
    domain_col: str | None = None,
    loss_col: str | None = None,
    group_col: str | None = None,
    group: str | None = None,
    prop_pattern: str | None = None,
    loss_pattern: str | None = None,
    volume: Volume | None = None,
    exclude_domains: Sequence[str] = (),
    zero_policy: ZeroPolicy = "refuse",
    epsilon: float = 1e-4,
    sum_tol: float = 1e-3,
    missing_policy: MissingPolicy = "refuse",
    drop_repeated_checkpoints: bool = False,
    min_mixtures: int = 2,
    min_steps: int = 3,
) -> MixtureData:
    """Load a loss log into the canonical :class:`~bimix_bayes.data.table.MixtureData`.

    Parameters
    ----------
    path
        A ``.csv`` (``.csv.gz``, ``.tsv``) or ``.parquet`` file.
    layout
        ``"long"``, ``"wide"`` or ``"auto"`` (long if a domain column is found, else wide).
    run_col, step_col, domain_col, loss_col
        Column names; detected when not given (see the module docstring).
    group_col, group
        A column that splits the file into groups (model size, seed...) and the group to keep.
        Sizes match loosely: ``"122M"`` selects ``122000000.0``. Required when the column has
        several values.
    prop_pattern, loss_pattern
        Column name patterns with ``{domain}``: ``"weight_{domain}"``, ``"{domain}_loss"``.
    volume
        ``"steps"`` or ``"tokens"``; by default ``"tokens"`` when the step column's name
        contains "token", else ``"steps"``.
    exclude_domains
        Evaluation domains to leave out (e.g. an out-of-domain eval set with no proportion).
    zero_policy, epsilon, sum_tol, missing_policy
        See :meth:`MixtureData.from_frames`.
    drop_repeated_checkpoints, min_mixtures, min_steps
        See :meth:`MixtureData.from_frames`.

    Returns
    -------
    MixtureData

    Raises
    ------
    DataError
        Naming the file, the line or column, the problem and the fix.
    """
    path = Path(path)
    source = str(path)
    table = read_table(path)
    if table.empty:
        raise DataError(f"{source}: the file has no data rows")
    table.columns = [str(c).strip() for c in table.columns]
    columns = list(table.columns)
    locations = np.asarray(_locations(table, path), dtype=object)

    notes: list[str] = []
    if group_col is not None:
        table, locations, group = _select_group(table, locations, group_col, group, source, notes)
    elif group is not None:
        raise DataError(f"{source}: --group {group!r} needs --group-col naming the group column")

    guessed_wide = False
    if layout == "auto":
        has_domain = domain_col is not None or any(c.lower() in DOMAIN_COLUMNS for c in columns)
        layout = "long" if has_domain else "wide"
        guessed_wide = layout == "wide"
    if layout not in ("long", "wide"):
        raise ValueError(f"layout must be 'auto', 'long' or 'wide', got {layout!r}")

    step_col = _pick(columns, step_col, STEP_COLUMNS, "step (or token count)", source, "--step-col")
    if volume is None:
        volume = "tokens" if "token" in step_col.lower() else "steps"
    _, prop_cols = _detect_pattern(
        columns, prop_pattern, PROP_PATTERNS, "proportion", source, "--prop-pattern"
    )
    excluded = set(exclude_domains)
    unknown_excl = excluded - set(prop_cols)

    if layout == "long":
        run_col = _pick(columns, run_col, RUN_COLUMNS, "run id", source, "--run-col")
        domain_col = _pick(
            columns, domain_col, DOMAIN_COLUMNS, "evaluation domain", source, "--domain-col"
        )
        loss_col = _pick(columns, loss_col, LOSS_COLUMNS, "loss", source, "--loss-col")
        keep = ~table[domain_col].astype(str).isin(excluded).to_numpy()
        unknown_excl -= set(table[domain_col].astype(str))
        if not keep.all():
            notes.append(
                f"left out {int((~keep).sum())} row(s) of excluded domain(s) {sorted(excluded)}"
            )
        table, locations = table[keep].reset_index(drop=True), locations[keep]
        run_ids = table[run_col].astype(str).str.strip()
        props = _proportions(table, prop_cols, locations, source)
        observations = pd.DataFrame(
            {
                "run": run_ids,
                "step": _steps(table, step_col, locations, source),
                "domain": table[domain_col].astype(str).str.strip(),
                "loss": to_numeric(table[loss_col], f"column {loss_col!r}", locations, source),
            }
        )
        obs_locations = list(locations)
    else:
        try:
            _, loss_cols = _detect_pattern(
                columns, loss_pattern, LOSS_PATTERNS, "loss", source, "--loss-pattern"
            )
        except DataError as exc:
            if not guessed_wide:
                raise
            raise DataError(
                f"{exc}. No evaluation-domain column was found (looked for "
                f"{list(DOMAIN_COLUMNS)}), so the file was read in the wide layout; if it is "
                "long (one row per run, step and domain), name that column with --domain-col"
            ) from exc
        unknown_excl -= set(loss_cols)
        loss_cols = {d: c for d, c in loss_cols.items() if d not in excluded}
        if run_col is None and any(c.lower() in RUN_COLUMNS for c in columns):
            run_col = _pick(columns, None, RUN_COLUMNS, "run id", source, "--run-col")
        props = _proportions(table, prop_cols, locations, source)
        if run_col is not None:
            run_ids = table[_pick(columns, run_col, RUN_COLUMNS, "run id", source, "--run-col")]
            run_ids = run_ids.astype(str).str.strip()
        else:
            run_ids = _runs_from_mixture(props)
        steps = _steps(table, step_col, locations, source)
        parts = []
        obs_locations = []
        for domain, col in loss_cols.items():
            loss = to_numeric(table[col], f"column {col!r}", locations, source)
            parts.append(
                pd.DataFrame({"run": run_ids, "step": steps, "domain": domain, "loss": loss})
            )
            obs_locations.extend(f"{loc}, column {col!r}" for loc in locations)
        observations = pd.concat(parts, ignore_index=True)
    mixtures, run_locations = _mixtures_from_rows(props, run_ids, prop_cols, locations, source)
    if unknown_excl:
        raise DataError(
            f"{source}: excluded domain(s) {sorted(unknown_excl)} do not occur in the file"
        )
    if excluded:
        notes.append(f"excluded evaluation domain(s) by request: {sorted(excluded)}")
    return MixtureData.from_frames(
        mixtures,
        observations,
        volume=volume,
        group=group,
        source=source,
        locations=obs_locations,
        run_locations=run_locations,
        zero_policy=zero_policy,
        epsilon=epsilon,
        sum_tol=sum_tol,
        missing_policy=missing_policy,
        drop_repeated_checkpoints=drop_repeated_checkpoints,
        min_mixtures=min_mixtures,
        min_steps=min_steps,
        notes=notes,
    )


def _select_group(
    table: pd.DataFrame,
    locations: np.ndarray,
    group_col: str,
    group: str | None,
    source: str,
    notes: list[str],
) -> tuple[pd.DataFrame, np.ndarray, str]:
    if group_col not in table.columns:
        raise DataError(f"{source}: no group column {group_col!r}; columns: {list(table.columns)}")
    raw = table[group_col].astype(str).str.strip()
    labels = raw.map(format_group)
    available = list(dict.fromkeys(labels))
    if group is None:
        if len(available) > 1:
            raise DataError(
                f"{source}: column {group_col!r} has {len(available)} groups "
                f"({', '.join(available)}); choose one with --group"
            )
        group = available[0]
    wanted = parse_size(group)
    match = (raw == group) | (labels == group)
    if wanted is not None:
        numeric = raw.map(parse_size)
        match |= numeric.map(lambda v: v is not None and np.isclose(v, wanted, rtol=1e-9, atol=0))
    if not match.any():
        raise DataError(
            f"{source}: group {group!r} not found in column {group_col!r}; "
            f"available: {', '.join(available)}"
        )
    label = labels[match].iloc[0]
    if not match.all():
        notes.append(
            f"selected group {label} of column {group_col!r}: {int(match.sum())} of "
            f"{len(table)} rows"
        )
    keep = match.to_numpy()
    return table[keep].reset_index(drop=True), locations[keep], label


def _steps(table: pd.DataFrame, col: str, locations: np.ndarray, source: str) -> pd.Series:
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


def _proportions(
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


def _runs_from_mixture(props: pd.DataFrame) -> pd.Series:
    """Name runs by their mixture, in order of first appearance: ``m000``, ``m001``, ...

    Mixtures are compared as numbers (to 12 significant digits), so ``0.5`` and ``0.50`` agree.
    """
    key = props.map(lambda v: f"{v:.12g}").agg("|".join, axis=1)
    codes = {k: f"m{i:03d}" for i, k in enumerate(dict.fromkeys(key))}
    return key.map(codes)


def _mixtures_from_rows(
    props: pd.DataFrame,
    run_ids: pd.Series,
    prop_cols: dict[str, str],
    locations: np.ndarray,
    source: str,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """One mixture per run (and where it was first seen); a run's rows must all agree."""
    runs = run_ids.to_numpy()
    first_row = pd.Series(np.arange(len(runs))).groupby(runs, sort=False).transform("first")
    first_row = first_row.to_numpy()
    values = props.to_numpy(dtype=float)
    differs = np.abs(values - values[first_row]) > 1e-12
    if differs.any():
        rows, cols = np.nonzero(differs)
        ex = [
            f"run {runs[i]!r}: {locations[i]}, column {prop_cols[props.columns[j]]!r} = "
            f"{values[i, j]:g} but {values[first_row[i], j]:g} on {locations[first_row[i]]}"
            for i, j in zip(rows, cols, strict=True)
        ]
        raise DataError(
            f"{source}: the proportions change between rows of the same run "
            f"({describe_locations(ex)}); a run has one mixture"
        )
    keep = np.unique(first_row)
    mixtures = pd.DataFrame(
        values[keep], index=pd.Index(runs[keep], name="run"), columns=list(props.columns)
    )
    return mixtures, {runs[i]: str(locations[i]) for i in keep}


MIXTURE_NAME_COLUMNS = ("mixture", "name", "run", "run_id", "id")


def read_mixtures(path: str | os.PathLike[str], *, sum_tol: float = 1e-3) -> pd.DataFrame:
    """Read candidate mixtures: one row per mixture, one proportion column per domain.

    The name column is ``mixture``/``name``/``run``/``id`` (or the first column if it is not
    numeric; otherwise rows are named ``mix1, mix2, ...``). Proportion columns are the domain
    names, optionally with a proportion prefix (``p_web`` or ``weight_web``). Each row must hold
    numbers in [0, 1] summing to 1 within ``sum_tol``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "mix.csv"
    ...     _ = p.write_text("name,web,code\\nmine,0.7,0.3\\n")
    ...     read_mixtures(p).loc["mine", "web"]
    np.float64(0.7)
    """
    path = Path(path)
    source = str(path)
    table = read_table(path)
    if table.empty:
        raise DataError(f"{source}: the mixture file has no rows")
    table.columns = [str(c).strip() for c in table.columns]
    locations = np.asarray(_locations(table, path), dtype=object)
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
        found = _pattern_columns(columns, pattern)
        if len(found) == len(columns):
            prop_table = prop_table.rename(columns={c: d for d, c in found.items()})
            break
    props = _proportions(prop_table, {c: c for c in prop_table.columns}, locations, source)
    values = props.to_numpy(dtype=float)
    bad = (values < 0) | (values > 1)
    if bad.any():
        rows, cols = np.nonzero(bad)
        ex = [
            f"{locations[i]}, {props.columns[j]!r} = {values[i, j]:g}"
            for i, j in zip(rows, cols, strict=True)
        ]
        raise DataError(f"{source}: proportions must lie in [0, 1] ({describe_locations(ex)})")
    sums = values.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > sum_tol)
    if off.size:
        ex = [f"{locations[i]} ({names.iloc[i]}) sums to {sums[i]:.6g}" for i in off]
        raise DataError(
            f"{source}: {off.size} mixture(s) do not sum to 1 within {sum_tol:g} "
            f"({describe_locations(ex)}); list every training domain's share"
        )
    if names.duplicated().any():
        raise DataError(f"{source}: mixture names repeat: {sorted(set(names[names.duplicated()]))}")
    props.index = pd.Index(names.to_numpy(), name="mixture")
    return props
