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
``n_tokens``; ``domain``/``eval_domain``; ``loss``; see :mod:`bimix_bayes.data.columns`), and
every error names the file, the line (CSV: line numbers count the header as line 1) or column,
the problem, and the fix. Files of candidate mixtures are read by
:func:`~bimix_bayes.data.mixture_files.read_mixtures` (importable from here too).

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
import warnings
from collections.abc import Sequence
from typing import Literal, Unpack

import numpy as np
import pandas as pd

from bimix_bayes.data.columns import (
    DOMAIN_COLUMNS,
    EXAMPLE_PATTERNS,
    LOSS_COLUMNS,
    LOSS_PATTERNS,
    PROP_PATTERNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    detect_pattern,
    parse_proportions,
    parse_steps,
    pattern_columns,
    pick_column,
    read_rows,
    read_table,
)
from bimix_bayes.data.labels import near_names
from bimix_bayes.data.mixture_files import (
    MIXTURE_NAME_COLUMNS,
    mixtures_from_rows,
    read_mixtures,
    runs_from_mixture,
)
from bimix_bayes.data.table import (
    DataError,
    DataWarning,
    MixtureData,
    Volume,
    describe_locations,
    to_numeric,
)
from bimix_bayes.data.validate import ValidationOptions
from bimix_bayes.laws.schedule import count_value

__all__ = [
    "DOMAIN_COLUMNS",
    "EXAMPLE_PATTERNS",
    "LOSS_COLUMNS",
    "LOSS_PATTERNS",
    "MIXTURE_NAME_COLUMNS",
    "PROP_PATTERNS",
    "RUN_COLUMNS",
    "STEP_COLUMNS",
    "format_group",
    "load_data",
    "parse_size",
    "read_mixtures",
    "read_table",
    "size_count",
    "step_count",
    "step_counts",
]

Layout = Literal["auto", "long", "wide"]

#: Columns that may name the runs without being one of RUN_COLUMNS (W&B's ``Name``, a
#: ``mixture`` id): named in the note, never picked on their own.
_RUN_ID_HINTS = ("name", "mixture", "mixture_id", "id", "experiment", "run.name", "display_name")


def parse_size(text: str) -> float | None:
    """Parse a number with an optional size suffix: ``"122M"`` -> 1.22e8; None if not a number.

    Examples
    --------
    >>> parse_size("1.235B"), parse_size("410m"), parse_size("abc")
    (1235000000.0, 410000000.0, None)
    """
    return count_value(text)


def step_counts(values: object, what: str = "steps") -> np.ndarray:
    """Steps (or token counts) given to the API as floats: numbers, or text with the suffixes
    model sizes take (``"32k"``, ``"40B"``), as the command line takes them.

    Examples
    --------
    >>> step_counts(["32k", 4e4]).tolist(), step_counts("40B").tolist()
    ([32000.0, 40000.0], [40000000000.0])
    """
    examples, default = {"size": "'7B' or '122M'", "proxy_size": "'122M'"}, "'32k' or '40B'"
    items = [values] if isinstance(values, (str, bytes)) else np.ravel(np.asarray(values, object))
    out = []
    for item in items:
        value = parse_size(str(item)) if isinstance(item, str) else item
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            raise ValueError(
                f"{what} must be numbers (or text such as "
                f"{examples.get(what, default)}), got {item!r}"
            ) from None
    return np.asarray(out, dtype=float)


def step_count(value: object, what: str = "step") -> float:
    """One step (or token count) given to the API: a number or text such as ``"40B"``.

    Examples
    --------
    >>> step_count("40k"), step_count(4e4)
    (40000.0, 40000.0)
    """
    values = step_counts(value, what)
    if values.size != 1:
        raise ValueError(f"{what} must be one number, got {len(values)}: {value!r}")
    return float(values[0])


def size_count(value: object, what: str = "size") -> float | None:
    """A model size given to the API: a number or text such as ``"7B"`` (as ``--size`` takes
    it); None stays None.

    Examples
    --------
    >>> size_count("7B"), size_count(1.22e8), size_count(None) is None
    (7000000000.0, 122000000.0, True)
    """
    if value is None:
        return None
    count = step_count(value, what)
    if not (np.isfinite(count) and count > 0):
        raise ValueError(f"{what} must be a positive parameter count such as 7e9 or '7B'")
    return count


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


def load_data(
    path: str | os.PathLike[str] | pd.DataFrame,
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
    run_name_pattern: str | None = None,
    size_col: str | None = None,
    size_kind: str | None = None,
    **options: Unpack[ValidationOptions],
) -> MixtureData:
    """Load a loss log into the canonical :class:`~bimix_bayes.data.table.MixtureData`.

    Parameters
    ----------
    path
        A ``.csv`` (``.csv.gz``, ``.tsv``) or ``.parquet`` file; or a folder of TensorBoard
        runs, an MLflow ``mlruns`` folder or ``mlflow.db``, read by
        :func:`~bimix_bayes.data.log_sources.load_logs` (where the patterns name tags and
        parameters, see there); or a pandas DataFrame holding such a table (messages then
        name its rows, ``row 1`` the first).
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
    run_name_pattern
        Logs only: a regular expression on the run names with one named group per domain,
        giving each run's shares (``r"web(?P<web>[\\d.]+)"``).
    size_col, size_kind
        A column of model sizes (parameter counts; ``"122M"`` and ``1.22e8`` both read) that
        makes size a dimension of the data: every size is kept, and a run id names one mixture
        trained at one or more sizes (in the wide layout without a run column, one run per
        distinct mixture across sizes), whose runs share their run effects.
        ``size_kind`` says what the sizes count (``"total parameters"``,
        ``"non-embedding parameters"``); it is printed with every size-aware output.
    **options
        The validation's options, passed on to :meth:`MixtureData.from_frames`:
        ``zero_policy``, ``epsilon``, ``sum_tol``, ``missing_policy``,
        ``drop_repeated_checkpoints``, ``min_step`` (leave out earlier checkpoints),
        ``min_mixtures``, ``min_steps``.

    Returns
    -------
    MixtureData

    Raises
    ------
    DataError
        Naming the file, the line or column, the problem and the fix.
    """
    from bimix_bayes.data.log_sources import is_log_path, load_logs  # they import this module

    if not isinstance(path, pd.DataFrame) and is_log_path(path) and size_col is not None:
        raise DataError(
            f"{path}: --size-col reads CSV or Parquet tables; export the logs to a long CSV "
            "with a size column (MixtureData.to_long) to fit several model sizes together"
        )
    if not isinstance(path, pd.DataFrame) and is_log_path(path):
        return load_logs(
            path,
            layout=layout,
            run_col=run_col,
            step_col=step_col,
            domain_col=domain_col,
            loss_col=loss_col,
            group_col=group_col,
            group=group,
            prop_pattern=prop_pattern,
            loss_pattern=loss_pattern,
            volume=volume,
            exclude_domains=exclude_domains,
            run_name_pattern=run_name_pattern,
            **options,
        )
    if run_name_pattern is not None:
        where = "the table" if isinstance(path, pd.DataFrame) else str(path)
        raise DataError(f"{where}: run_name_pattern applies to TensorBoard and MLflow runs only")
    if isinstance(path, pd.DataFrame):  # a table in memory, read as a Parquet file is
        if path.empty:
            raise DataError("the table given to load_data has no rows")
        named = [n for n in path.index.names if n is not None and n not in path.columns]
        # a named index (set_index("run"), a groupby) holds columns; an unnamed one is positions
        table = path.reset_index(level=named) if named else path
        table = table.reset_index(drop=True).rename(columns=lambda c: str(c).strip())
        source = "the table given to load_data"
        locations = np.asarray([f"row {i + 1}" for i in range(len(table))], dtype=object)
    else:
        table, locations, source = read_rows(path)
    columns = list(table.columns)

    notes: list[str] = []
    if size_col is not None and size_col == group_col:
        raise DataError(
            f"{source}: {size_col!r} is both the group column and the size column; use "
            "--group-col to keep one size, or --size-col to keep every size as a dimension"
        )
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

    step_col = pick_column(
        columns, step_col, STEP_COLUMNS, "step (or token count)", source, "--step-col"
    )
    if volume is None:
        volume = "tokens" if "token" in step_col.lower() else "steps"
    table = _read_suffixed_steps(table, step_col, locations, source, notes)
    table, locations = _drop_step_zero(table, step_col, locations, source, notes)
    prop_cols = _share_columns(
        table, columns, prop_pattern, layout, domain_col, loss_pattern, source, notes
    )
    excluded = set(exclude_domains)
    unknown_excl = excluded - set(prop_cols)
    present = set(prop_cols)  # the domain names the file holds, for the message below

    if layout == "long":
        run_col = pick_column(columns, run_col, RUN_COLUMNS, "run id", source, "--run-col")
        domain_col = pick_column(
            columns, domain_col, DOMAIN_COLUMNS, "evaluation domain", source, "--domain-col"
        )
        loss_col = pick_column(columns, loss_col, LOSS_COLUMNS, "loss", source, "--loss-col")
        keep = ~table[domain_col].astype(str).isin(excluded).to_numpy()
        present |= set(table[domain_col].astype(str))
        unknown_excl -= present
        if not keep.all():
            notes.append(
                f"left out {int((~keep).sum())} row(s) of excluded domain(s) {sorted(excluded)}"
            )
        table, locations = table[keep].reset_index(drop=True), locations[keep]
        run_ids = table[run_col].astype(str).str.strip()
        props = parse_proportions(table, prop_cols, locations, source)
        observations = pd.DataFrame(
            {
                "run": run_ids,
                "step": parse_steps(table, step_col, locations, source),
                "domain": table[domain_col].astype(str).str.strip(),
                "loss": to_numeric(table[loss_col], f"column {loss_col!r}", locations, source),
            }
        )
        obs_locations = list(locations)
    else:
        # columns that cannot hold the domains of a long file read as wide by mistake
        not_domains = {step_col, run_col, group_col, size_col, *prop_cols.values()}
        not_domains |= {c for c in columns if c.lower() in RUN_COLUMNS}
        try:
            _, loss_cols = detect_pattern(
                columns, loss_pattern, LOSS_PATTERNS, "loss", source, "--loss-pattern"
            )
        except DataError as exc:
            if not guessed_wide:
                raise
            _refuse_long_read_as_wide(table, columns, not_domains, prop_cols, source)
            raise DataError(
                f"{exc}. No evaluation-domain column was found (looked for "
                f"{list(DOMAIN_COLUMNS)}), so the file was read in the wide layout; if it is "
                "long (one row per run, step and domain), name that column with --domain-col"
            ) from exc
        if loss_pattern is None:
            loss_cols = _training_loss_columns(loss_cols, prop_cols, columns, source, notes)
        if guessed_wide and set(loss_cols).isdisjoint(prop_cols):
            _refuse_long_read_as_wide(table, columns, not_domains, prop_cols, source)
        present |= set(loss_cols)
        unknown_excl -= present
        loss_cols = {d: c for d, c in loss_cols.items() if d not in excluded}
        if run_col is None and any(c.lower() in RUN_COLUMNS for c in columns):
            run_col = pick_column(columns, None, RUN_COLUMNS, "run id", source, "--run-col")
        props = parse_proportions(table, prop_cols, locations, source)
        if run_col is not None:
            run_col = pick_column(columns, run_col, RUN_COLUMNS, "run id", source, "--run-col")
            run_ids = table[run_col].astype(str).str.strip()
        else:
            run_ids = runs_from_mixture(props)
            notes.append(_runs_named_by_mixture_note(columns, run_ids))
        steps = parse_steps(table, step_col, locations, source)
        parts = []
        obs_locations = []
        for domain, col in loss_cols.items():
            loss = to_numeric(table[col], f"column {col!r}", locations, source)
            parts.append(
                pd.DataFrame({"run": run_ids, "step": steps, "domain": domain, "loss": loss})
            )
            obs_locations.extend(f"{loc}, column {col!r}" for loc in locations)
        observations = pd.concat(parts, ignore_index=True)
    if size_col is not None:
        sizes = read_sizes(table, size_col, locations, source)
        observations["size"] = np.tile(sizes, len(observations) // len(table))
    mixtures, run_locations = mixtures_from_rows(props, run_ids, prop_cols, locations, source)
    if unknown_excl:
        raise DataError(
            f"{source}: excluded domain(s) {sorted(unknown_excl)} do not occur in the file; "
            f"its domains: {sorted(present)}{near_names(sorted(unknown_excl), present)}"
        )
    if excluded:
        notes.append(f"excluded evaluation domain(s) by request: {sorted(excluded)}")
    data = MixtureData.from_frames(
        mixtures,
        observations,
        volume=volume,
        group=group,
        source=source,
        locations=obs_locations,
        run_locations=run_locations,
        notes=notes,
        size_kind=size_kind,
        **options,
    )
    return data.with_runs_named_by_mixture(layout == "wide" and run_col is None)


def _runs_named_by_mixture_note(columns: Sequence[str], run_ids: pd.Series) -> str:
    """The note for a wide file without a run column, naming the columns that might be one."""
    maybe = [c for c in columns if c.lower() in _RUN_ID_HINTS]
    hint = f" (is it {' or '.join(repr(c) for c in maybe)}?)" if maybe else ""
    return (
        f"no run-id column (looked for {list(RUN_COLUMNS)}): each of the "
        f"{run_ids.nunique()} mixtures is one run, named m000, m001... in order of first "
        f"appearance; name the run column with --run-col{hint}"
    )


def _share_columns(
    table: pd.DataFrame,
    columns: Sequence[str],
    prop_pattern: str | None,
    layout: str,
    domain_col: str | None,
    loss_pattern: str | None,
    source: str,
    notes: list[str],
) -> dict[str, str]:
    """The share columns (domain -> column): by their pattern, or else, when no pattern
    matches (or the pattern is the bare ``{domain}``, which matched the run column too), the
    columns named after the domains themselves (``web,code`` beside a domain column with
    ``web`` and ``code``, or beside loss columns ``web_loss, code_loss``), with a note."""
    bare = prop_pattern is not None and prop_pattern.strip() == "{domain}"
    if not bare:
        try:
            return detect_pattern(
                columns, prop_pattern, PROP_PATTERNS, "proportion", source, "--prop-pattern"
            )[1]
        except DataError as exc:
            if prop_pattern is not None:
                raise
            failure = exc
    names: set[str] = set()
    if layout == "long" or domain_col is not None:
        col = domain_col or next((c for c in columns if c.lower() in DOMAIN_COLUMNS), None)
        if col is not None and col in table.columns:
            names = set(table[col].astype(str).str.strip())
    else:
        try:
            loss_cols = detect_pattern(
                columns, loss_pattern, LOSS_PATTERNS, "loss", source, "--loss-pattern"
            )[1]
            names = set(loss_cols)
        except DataError:
            names = set()
    found = {c: c for c in columns if c in names}
    if not found:
        if bare:
            raise DataError(
                f"{source}: --prop-pattern '{{domain}}' reads the columns named after the "
                "domains, but no column is named after a domain of the file; columns: "
                f"{list(columns)}"
            )
        raise failure
    if not bare:
        _note(
            notes,
            source,
            f"no share column matched the usual patterns ({list(PROP_PATTERNS)}); the columns "
            f"named after the domains were read as the shares: {sorted(found)} (give "
            "--prop-pattern to read others)",
        )
    return found


def _refuse_long_read_as_wide(
    table: pd.DataFrame,
    columns: Sequence[str],
    not_domains: set[str | None],
    prop_cols: dict[str, str],
    source: str,
) -> None:
    """Refuse a file guessed wide (no column named like a domain column) whose loss columns
    name no training domain and that has a column of training-domain names (not the run,
    step, share, group or size column): it is long, its columns named otherwise
    (``eval_set``), and read as wide it made up a domain and runs (a new user's
    ``experiment,iteration,eval_set,val_loss``). Names the columns to give, guessed where the
    names say so."""
    domains = set(prop_cols)
    rest = [c for c in columns if c not in not_domains]
    # CSV cells are read as text: a column is numeric when its cells all read as numbers
    numeric = [c for c in rest if pd.to_numeric(table[c], errors="coerce").notna().all()]
    text = [c for c in rest if c not in numeric]
    for col in text:
        values = set(table[col].astype(str).str.strip())
        named = values & domains
        if len(named) < min(2, len(domains)) or len(values) > 4 * len(domains):
            continue
        others = [c for c in text if c != col]
        run = next((c for c in others if table[c].nunique() > 1), "COLUMN")
        loss = next(
            (c for c in numeric if "loss" in c.lower()), numeric[0] if numeric else "COLUMN"
        )
        raise DataError(
            f"{source}: no column is named like an evaluation-domain column (looked for "
            f"{list(DOMAIN_COLUMNS)}), so the file was read in the wide layout, but column "
            f"{col!r} holds training domains' names ({sorted(named)}): the file looks long (one "
            f"row per run, step and domain). Read it with --layout long --domain-col {col} "
            f"--run-col {run} --loss-col {loss} (in Python: layout='long', domain_col=..., "
            "run_col=..., loss_col=...); if it is wide, say so with --layout wide"
        )


def _training_loss_columns(
    loss_cols: dict[str, str],
    prop_cols: dict[str, str],
    columns: Sequence[str],
    source: str,
    notes: list[str],
) -> dict[str, str]:
    """The wide layout's loss columns, named through the training domains when the detected
    pattern named none of them but another pattern names some (``eval/web_loss`` for domain
    ``web``: ``eval/{domain}_loss``, what W&B and most trainers write), with a note; the loss
    columns it does not name keep their detected names (evaluation-only targets, such as a
    held-out ``eval/wiki_loss``). Otherwise ``loss_cols`` as detected.

    Examples
    --------
    >>> import warnings
    >>> cols = ["weight_web", "weight_code", "eval/web_loss", "eval/code_loss", "eval/wiki_loss"]
    >>> found = {"eval/web": "eval/web_loss", "eval/code": "eval/code_loss",
    ...          "eval/wiki": "eval/wiki_loss"}
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     _training_loss_columns(found, {"web": "weight_web", "code": "weight_code"}, cols,
    ...                            "f.csv", [])
    {'web': 'eval/web_loss', 'code': 'eval/code_loss', 'eval/wiki': 'eval/wiki_loss'}
    """
    if not set(loss_cols).isdisjoint(prop_cols):
        return loss_cols
    patterns = {
        c.replace(domain, "{domain}", 1)
        for c in loss_cols.values()
        for domain in prop_cols
        if domain in c
    }
    best: dict[str, str] = {}
    for pattern in sorted(patterns):
        named = {
            d: c
            for d, c in pattern_columns(columns, pattern).items()
            if d in prop_cols and c in loss_cols.values()
        }
        if len(named) > len(best):
            best, chosen = named, pattern
    if len(best) < min(2, len(prop_cols)):
        return loss_cols
    rest = {d: c for d, c in loss_cols.items() if c not in best.values()}
    _note(
        notes,
        source,
        f"no loss column is named after a training domain by the usual patterns, but "
        f"{chosen!r} names {len(best)} ({describe_locations(list(best.values()))}): read as "
        f"the losses of {sorted(best)}"
        + (f"; {sorted(rest.values())} stay evaluation-only targets" if rest else "")
        + " (give --loss-pattern to read them otherwise)",
    )
    return {**best, **rest}


def _note(notes: list[str], source: str, message: str) -> None:
    """Record a change the loader made unasked in ``notes`` and say it (a DataWarning at the
    caller of :func:`load_data`), as the validation does."""
    notes.append(message)
    warnings.warn(f"{source}: {message}", DataWarning, stacklevel=4)


def _read_suffixed_steps(
    table: pd.DataFrame, step_col: str, locations: np.ndarray, source: str, notes: list[str]
) -> pd.DataFrame:
    """``table`` with the step cells written with the suffixes model sizes take (``10k``,
    ``1.5B``) read as numbers, as ``--step 40B`` is, with a note; unchanged without any."""
    cells = table[step_col]
    if pd.api.types.is_numeric_dtype(cells):
        return table
    text = cells.astype(str).str.strip()
    sized = text.map(parse_size)
    suffixed = (pd.to_numeric(text, errors="coerce").isna() & sized.notna()).to_numpy()
    if not suffixed.any():
        return table
    examples = [f"{loc}: {c!r}" for loc, c in zip(locations[suffixed], text[suffixed], strict=True)]
    _note(
        notes,
        source,
        f"read {int(suffixed.sum())} column {step_col!r} value(s) written with a suffix "
        f"({describe_locations(examples)}; k = 1e3, M = 1e6, B = 1e9)",
    )
    return table.assign(**{step_col: np.where(suffixed, sized, text)})


def _drop_step_zero(
    table: pd.DataFrame, step_col: str, locations: np.ndarray, source: str, notes: list[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """``table`` without its rows at step 0 (the evaluation before training, which most
    training loops log; the law needs s > 0), with a note, as the TensorBoard and MLflow
    readers do. Other steps that are not positive are refused later (``parse_steps``)."""
    steps = to_numeric(table[step_col], f"column {step_col!r}", locations, source)
    zero = (steps == 0).to_numpy()
    if not zero.any():
        return table, locations
    _note(
        notes,
        source,
        f"left out {int(zero.sum())} row(s) at step 0 ({describe_locations(list(locations[zero]))}"
        "): the evaluation before training; the law needs s > 0",
    )
    return table[~zero].reset_index(drop=True), locations[~zero]


def read_sizes(
    table: pd.DataFrame, size_col: str, locations: Sequence[str], source: str
) -> np.ndarray:
    """The model size of every row of ``table`` (``"122M"``, ``1.22e8``...), or a DataError.

    Examples
    --------
    >>> read_sizes(pd.DataFrame({"n": ["122M", "1.2e9"]}), "n", ["l2", "l3"], "f.csv").tolist()
    [122000000.0, 1200000000.0]
    """
    if size_col not in table.columns:
        raise DataError(f"{source}: no size column {size_col!r}; columns: {list(table.columns)}")
    parsed = [parse_size(str(v)) for v in table[size_col]]
    bad = [
        f"{where}: {v!r}"
        for where, v, x in zip(locations, table[size_col], parsed, strict=True)
        if x is None or not np.isfinite(x) or x <= 0
    ]
    if bad:
        raise DataError(
            f"{source}: column {size_col!r}: {len(bad)} model size(s) are not positive numbers "
            f"({describe_locations(bad)}); write parameter counts such as 1.22e8 or 122M"
        )
    return np.asarray(parsed, dtype=float)


def match_group(
    raw: Sequence[str], group: str | None, source: str, where: str
) -> tuple[np.ndarray, str]:
    """Which of the group values ``raw`` (one per row or run) are ``group``, and its label.

    A value matches by its text, its label (:func:`format_group`) or, for sizes, its number
    (``122M`` selects ``122000000.0``). Without ``group`` there must be one group only.
    ``where`` names the values in errors (``"column 'model_size'"``).

    Examples
    --------
    >>> match_group(["1.22e8", "3.1e8"], "122M", "runs.csv", "column 'size'")
    (array([ True, False]), '122M')
    """
    labels = [format_group(v) for v in raw]
    available = list(dict.fromkeys(labels))
    if group is None:
        if len(available) > 1:
            raise DataError(
                f"{source}: {where} has {len(available)} groups "
                f"({', '.join(available)}); choose one with --group"
            )
        group = available[0]
    wanted = parse_size(group)

    def matches(text: str, label: str) -> bool:
        value = parse_size(text)
        close = value is not None and wanted is not None
        return (
            text == group
            or label == group
            or bool(close and np.isclose(value, wanted, rtol=1e-9, atol=0))
        )

    keep = np.array([matches(t, lab) for t, lab in zip(raw, labels, strict=True)], dtype=bool)
    if not keep.any():
        raise DataError(
            f"{source}: group {group!r} not found in {where}; available: {', '.join(available)}"
        )
    return keep, labels[int(np.argmax(keep))]


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
    keep, label = match_group(list(raw), group, source, f"column {group_col!r}")
    if not keep.all():
        notes.append(
            f"selected group {label} of column {group_col!r}: {int(keep.sum())} of "
            f"{len(table)} rows"
        )
    return table[keep].reset_index(drop=True), locations[keep], label
