"""The shared core of the run-log loaders: runs read from TensorBoard or MLflow -> MixtureData.

A log loader (:mod:`~bimix_bayes.data.tensorboard_logs`, :mod:`~bimix_bayes.data.mlflow_logs`)
turns each run into a :class:`LogRun`: its name, where it is, its scalar series (tag, step,
value, wall time and where each value is) and its parameters. :func:`build_data` then

1. keeps one group of runs if asked (``group_key``/``group``: a parameter and its value; sizes
   match loosely as in CSV input, ``122M`` selects ``122000000``);
2. finds each run's mixture: a regular expression on the run name (``run_name_pattern``, one
   named group per domain: ``r"web(?P<web>[\\d.]+)_code(?P<code>[\\d.]+)"``), else a mixture
   the loader found in a file, else the run's parameters, named by a pattern
   (:data:`LOG_PROP_PATTERNS`: ``share_{domain}``, ``mixture.{domain}``, ``p_{domain}``...; the
   first whose shares sum to 1 in every run) or one parameter holding a dict
   (:data:`MIXTURE_KEYS`: ``mixture = {"web": 0.7, "code": 0.3}``);
3. finds each domain's loss among the scalar tags (:data:`LOG_LOSS_PATTERNS`:
   ``eval/{domain}_loss``, ``{domain}_loss``, ``loss/{domain}``...; the pattern that names the
   most training domains wins);
4. hands both tables to :meth:`MixtureData.from_frames`: the validation CSV input goes through.

Nothing is dropped silently: a value logged twice at one step (the later write wins, as in
TensorBoard), checkpoints at step 0 (the law needs s > 0), runs with no loss series, tags that
match the loss pattern but name no training domain, shares given in percent: each is counted in
``MixtureData.notes`` and emitted as a :class:`~bimix_bayes.data.table.DataWarning`. A run with
losses but no mixture is an error that names it.

Examples
--------
>>> import pandas as pd
>>> def run(name, web):
...     series = pd.DataFrame({"tag": ["eval/web_loss"] * 3 + ["eval/code_loss"] * 3,
...                            "step": [100, 200, 400] * 2, "value": [3.2, 3.1, 3.0] * 2})
...     return LogRun(name, f"folder {name}", series,
...                   params={"share_web": web, "share_code": 1 - web})
>>> data = build_data([run("a", 0.7), run("b", 0.3)], source="logs", fix="add shares")
>>> data.domains, data.n_runs, data.mixtures.loc["b", "web"]
(('web', 'code'), 2, np.float64(0.3))
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Unpack

import numpy as np
import pandas as pd

from bimix_bayes.data.loaders import match_group
from bimix_bayes.data.log_mixtures import (
    LOG_PROP_PATTERNS,
    MIXTURE_KEYS,
    find_mixtures,
    note,
    parse_mapping,
)
from bimix_bayes.data.log_series import LOG_LOSS_PATTERNS, loss_tags, observations
from bimix_bayes.data.table import DataError, DataWarning, MixtureData, Volume, describe_locations
from bimix_bayes.data.validate import ValidationOptions

__all__ = [
    "LOG_LOSS_PATTERNS",
    "LOG_PROP_PATTERNS",
    "MIXTURE_KEYS",
    "LogRun",
    "MissingExtraError",
    "build_data",
    "parse_mapping",
]


class MissingExtraError(DataError, ImportError):
    """An optional dependency is missing; the message says which ``pip install`` to run."""


@dataclass
class LogRun:
    """One run as a log loader found it.

    Attributes
    ----------
    name
        The run id in the table (a folder path, an MLflow run name).
    where
        Where the run is, for messages (``"run folder 'a'"``).
    series
        Scalar values: columns ``tag``, ``step``, ``value`` and, optionally, ``wall_time`` (the
        later write of a step wins) and ``where`` (for messages; defaults to ``where``).
    params
        Parameters (hyperparameters, MLflow params), their values as logged.
    mixture, mixture_where
        A mixture the loader found itself (in a file), and that file.
    attrs
        What ``group_key`` may name; defaults to ``params``.
    part_of
        The run whose hparams this folder holds (PyTorch's ``add_hparams`` subfolder): left out
        without a note when it has no loss series of its own.
    """

    name: str
    where: str
    series: pd.DataFrame
    params: dict[str, object] = field(default_factory=dict)
    mixture: dict[str, float] | None = None
    mixture_where: str | None = None
    attrs: dict[str, object] | None = None
    part_of: str | None = None


def build_data(
    runs: Sequence[LogRun],
    *,
    source: str,
    fix: str,
    loss_pattern: str | None = None,
    prop_pattern: str | None = None,
    step_key: str | None = None,
    volume: Volume | None = None,
    exclude_domains: Sequence[str] = (),
    group_key: str | None = None,
    group: str | None = None,
    run_name_pattern: str | None = None,
    notes: Sequence[str] = (),
    word: str = "scalar tag",
    **options: Unpack[ValidationOptions],
) -> MixtureData:
    """Mixtures and loss series of ``runs`` -> the validated :class:`MixtureData`.

    Parameters
    ----------
    runs
        The runs a loader read.
    source
        Names the log in every message (the folder).
    fix
        How to give a run its mixture (ends the error naming runs without one).
    loss_pattern, prop_pattern
        The tag pattern of the losses and the parameter pattern of the shares, with
        ``{domain}``; detected when not given.
    step_key
        A scalar tag holding the token count at each step (the volume is then ``"tokens"``).
    volume
        ``"steps"`` or ``"tokens"`` (default: tokens with ``step_key``, else steps).
    exclude_domains, group_key, group, run_name_pattern
        See the module docstring.
    notes
        What the loader itself changed.
    word
        What a series is called in messages (``"scalar tag"``, ``"metric"``).
    **options
        The validation's options (:class:`~bimix_bayes.data.validate.ValidationOptions`).

    Raises
    ------
    DataError
        Naming the source, the run and the tag or parameter, and the fix.
    """
    notes = list(notes)
    for message in notes:  # the loader's own notes, said like the validation's
        warnings.warn(f"{source}: {message}", DataWarning, stacklevel=3)
    if not runs:
        raise DataError(f"{source}: no runs found")
    if group_key is not None:
        runs, group = _select_group(runs, group_key, group, source, notes)
    elif group is not None:
        raise DataError(f"{source}: --group {group!r} needs --group-col naming the parameter")
    tol = float(options.get("sum_tol", 1e-3))
    mixtures, mix_where = find_mixtures(runs, prop_pattern, run_name_pattern, tol, source, notes)
    domains = list(dict.fromkeys(d for m in mixtures.values() for d in m))
    series = pd.concat([_series(r) for r in runs], ignore_index=True)
    tags = list(dict.fromkeys(series["tag"]))
    tag_of = loss_tags(tags, loss_pattern, domains, exclude_domains, source, notes, word)
    obs, obs_where = observations(series, tag_of, step_key, source, notes, word)
    if obs.empty:
        raise DataError(
            f"{source}: the {word}s {sorted(tag_of.values())} hold no loss at a step > 0 "
            "(the law needs s > 0)"
        )
    have_losses = set(obs["run"])
    no_mixture = [r.name for r in runs if r.name in have_losses and r.name not in mixtures]
    if no_mixture:
        if run_name_pattern is not None:
            fix = f"their names do not match the run name pattern {run_name_pattern!r}"
        raise DataError(
            f"{source}: {len(no_mixture)} run(s) have losses but no mixture: "
            f"{describe_locations(no_mixture)}; {fix}"
        )
    idle = [r.name for r in runs if r.name not in have_losses and r.part_of is None]
    if idle:
        note(
            notes,
            source,
            f"left out {len(idle)} run(s) with no loss series ({describe_locations(idle)}); "
            f"loss tags read: {sorted(tag_of.values())}",
        )
    kept = [r.name for r in runs if r.name in have_losses]
    table = pd.DataFrame(
        [[mixtures[r].get(d, 0.0) for d in domains] for r in kept],
        index=pd.Index(kept, name="run"),
        columns=domains,
        dtype=float,
    )
    unset = [f"run {r!r} ({d})" for r in kept for d in domains if d not in mixtures[r]]
    if unset:
        note(notes, source, f"shares not given were taken as 0: {describe_locations(unset)}")
    if volume is None:
        volume = "tokens" if step_key is not None else "steps"
    return MixtureData.from_frames(
        table,
        obs,
        volume=volume,
        group=group,
        source=source,
        locations=obs_where,
        run_locations={r: mix_where[r] for r in kept},
        notes=notes,
        **options,
    )


def _series(run: LogRun) -> pd.DataFrame:
    s = run.series
    out = pd.DataFrame(
        {
            "run": run.name,
            "tag": s["tag"].astype(str).to_numpy() if len(s) else [],
            "step": s["step"].astype(float).to_numpy() if len(s) else [],
            "value": s["value"].astype(float).to_numpy() if len(s) else [],
            "wall_time": s["wall_time"].to_numpy() if "wall_time" in s else np.nan,
            "where": s["where"].to_numpy() if "where" in s else run.where,
        }
    )
    return out.astype({"run": object, "tag": object, "where": object})


def _select_group(
    runs: Sequence[LogRun], key: str, group: str | None, source: str, notes: list[str]
) -> tuple[list[LogRun], str]:
    lacking = [r.name for r in runs if key not in (r.attrs if r.attrs is not None else r.params)]
    if len(lacking) == len(runs):
        names = sorted({k for r in runs for k in (r.attrs if r.attrs is not None else r.params)})
        raise DataError(
            f"{source}: no run has a parameter {key!r} to group by (--group-col); parameters: "
            f"{names[:20]}"
        )
    if lacking:
        notes.append(
            f"left out {len(lacking)} run(s) with no parameter {key!r} to group by: "
            f"{describe_locations(lacking)}"
        )
        runs = [r for r in runs if r.name not in set(lacking)]
    attrs = [r.attrs if r.attrs is not None else r.params for r in runs]
    raw = [str(a[key]).strip() for a in attrs]
    keep, label = match_group(raw, group, source, f"parameter {key!r}")
    if not all(keep):
        notes.append(f"selected group {label} of {key!r}: {sum(keep)} of {len(runs)} runs")
    return [r for r, k in zip(runs, keep, strict=True) if k], label
