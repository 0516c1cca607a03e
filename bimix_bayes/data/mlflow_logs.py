"""Read MLflow runs from a local store (an ``mlruns`` folder or an ``mlflow.db``) into
:class:`MixtureData`.

Both local stores are read directly, read-only, with no MLflow installed (and no migration of
the store): the **file store** (``mlruns/<experiment id>/meta.yaml``, one folder per run with
``meta.yaml``, ``params/``, ``metrics/``, ``tags/``; pass ``mlruns`` or one experiment's folder)
and the **SQLite store** (``mlflow.db``, the default of MLflow 3). Deleted runs and experiments
are left out, with a count.

A run's **name** is its ``mlflow.runName`` (or the parameter or tag ``run_key``; the run id is
appended when two runs share a name). Its **mixture** comes from its params, named as in
:data:`~bimix_bayes.data.run_logs.LOG_PROP_PATTERNS` (``share_web``, ``mixture.web``,
``p_web``...) or one param holding a dict (``mixture = {'web': 0.7, 'code': 0.3}``, what
``mlflow.log_params({"mixture": {...}})`` writes), or from the run name
(``run_name_pattern``). Its **losses** are the metrics whose keys match
:data:`~bimix_bayes.data.run_logs.LOG_LOSS_PATTERNS` (``eval/web_loss``, ``web_loss``,
``eval_web_loss`` as Hugging Face's MLflow callback logs it...) or ``loss_pattern``, at their
logged steps (or at the value of a token-count metric, ``step_key``). Runs of several
experiments are refused unless ``group_key="experiment"`` picks one (``group_key`` may also name
any param or tag).

Examples
--------
>>> import pathlib, tempfile
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for i, web in enumerate((0.7, 0.3)):
...     run = root / "1" / f"run{i}"
...     for sub in ("params", "metrics", "tags"):
...         (run / sub).mkdir(parents=True)
...     _ = (run / "meta.yaml").write_text(f"run_id: run{i}\\nexperiment_id: '1'\\nstatus: 3\\n")
...     _ = (run / "tags" / "mlflow.runName").write_text(f"mix-{web}")
...     _ = (run / "params" / "share_web").write_text(str(web))
...     _ = (run / "params" / "share_code").write_text(str(round(1 - web, 2)))
...     _ = (run / "metrics" / "web_loss").write_text(
...         "".join(f"{s} {3 - web / 10 + 50 / s} {s}\\n" for s in (100, 200, 400)))
>>> _ = (root / "1" / "meta.yaml").write_text("experiment_id: '1'\\nname: mix\\n")
>>> data = load_mlflow(root)
>>> data.runs, data.domains
(('mix-0.7', 'mix-0.3'), ('web',))
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

import pandas as pd
import yaml

from bimix_bayes.data.run_logs import LogRun, build_data
from bimix_bayes.data.table import DataError, MixtureData, Volume, describe_locations
from bimix_bayes.data.validate import ValidationOptions

__all__ = ["is_mlflow_db", "is_mlflow_store", "load_mlflow"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
#: The file store writes a run's status as a number.
_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_FIX = (
    "log each run's shares as params (mlflow.log_params({'share_web': 0.7, 'share_code': 0.3})), "
    "name the share params with --prop-pattern, or name the shares in the run names "
    "(run_name_pattern in Python)"
)


@dataclass
class _Run:
    run_id: str
    name: str
    experiment: str
    where: str
    status: str = "FINISHED"
    params: dict[str, object] = field(default_factory=dict)
    tags: dict[str, object] = field(default_factory=dict)
    series: pd.DataFrame = field(default_factory=pd.DataFrame)


def _meta(path: Path) -> dict[str, Any]:
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: could not be read as MLflow metadata ({exc})") from exc
    return meta if isinstance(meta, dict) else {}


def _is_experiment(folder: Path) -> bool:
    meta = folder / "meta.yaml"
    return meta.is_file() and "experiment_id" in _meta(meta) and "run_id" not in _meta(meta)


def is_mlflow_store(path: str | os.PathLike[str]) -> bool:
    """True for an MLflow file store (``mlruns``) or one experiment's folder in it."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / "meta.yaml").is_file():  # an experiment's (or a run's: refused with a hint)
        return "experiment_id" in _meta(path / "meta.yaml")
    return any(c.is_dir() and _is_experiment(c) for c in path.iterdir())


def is_mlflow_db(path: str | os.PathLike[str]) -> bool:
    """True for an SQLite file (an ``mlflow.db`` when it has MLflow's tables)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return path.is_file() and f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _read_tree(folder: Path) -> dict[str, str]:
    """``params/`` or ``tags/``: key (its path below ``folder``) -> the file's text."""
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _read_metrics(folder: Path, root: Path) -> pd.DataFrame:
    """Every metric file of a run: lines ``timestamp value [step]`` (no step: step 0)."""
    frames = []
    for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        rows = []
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                ts, value, step = (
                    float(parts[0]),
                    float(parts[1]),
                    int(parts[2] if parts[2:] else 0),
                )
            except (ValueError, IndexError):
                raise DataError(
                    f"{rel}, line {i}: {line[:60]!r} is not 'timestamp value step' (an MLflow "
                    "metric file); repair or remove the line"
                ) from None
            rows.append(
                (p.relative_to(folder).as_posix(), step, value, ts / 1000, f"{rel}, line {i}")
            )
        frames.append(pd.DataFrame(rows, columns=["tag", "step", "value", "wall_time", "where"]))
    if not frames:
        return pd.DataFrame(columns=["tag", "step", "value", "wall_time", "where"])
    return pd.concat(frames, ignore_index=True)


def _file_store(root: Path, notes: list[str]) -> list[_Run]:
    if (root / "meta.yaml").is_file():
        if not _is_experiment(root):
            raise DataError(
                f"{root}: is one MLflow run; pass its experiment's folder ({root.parent}) or the "
                "mlruns folder"
            )
        experiments = [root]
        base = root.parent
    else:
        experiments = [c for c in sorted(root.iterdir()) if c.is_dir() and _is_experiment(c)]
        base = root
    runs: list[_Run] = []
    deleted = []
    for exp in experiments:
        exp_meta = _meta(exp / "meta.yaml")
        exp_name = str(exp_meta.get("name", exp.name))
        metas = [(c, _meta(c / "meta.yaml")) for c in exp.iterdir() if (c / "meta.yaml").is_file()]
        metas.sort(key=lambda cm: (str(cm[1].get("start_time", "")).zfill(20), cm[0].name))
        for folder, meta in metas:  # in the order the runs started
            if "run_id" not in meta:
                continue
            run_id = str(meta["run_id"])
            if "deleted" in (meta.get("lifecycle_stage"), exp_meta.get("lifecycle_stage")):
                deleted.append(run_id)
                continue
            tags = _read_tree(folder / "tags")
            name = str(tags.get("mlflow.runName") or meta.get("run_name") or run_id)
            status = meta.get("status", 3)
            runs.append(
                _Run(
                    run_id,
                    name,
                    exp_name,
                    f"MLflow run {run_id} ({folder.relative_to(base).as_posix()})",
                    _STATUS.get(status, str(status)) if isinstance(status, int) else str(status),
                    _read_tree(folder / "params"),
                    tags,
                    _read_metrics(folder / "metrics", base),
                )
            )
    if deleted:
        notes.append(f"left out {len(deleted)} deleted run(s): {describe_locations(deleted)}")
    return runs


def _sqlite_store(path: Path, notes: list[str]) -> list[_Run]:
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(f"{path}: could not be opened as an SQLite file ({exc})") from exc
    try:
        runs = pd.read_sql_query(
            "SELECT r.run_uuid, r.name, r.status, r.lifecycle_stage, e.name AS experiment, "
            "e.lifecycle_stage AS exp_stage FROM runs r JOIN experiments e "
            "ON r.experiment_id = e.experiment_id ORDER BY r.start_time, r.run_uuid",
            con,
        )
        params = pd.read_sql_query("SELECT key, value, run_uuid FROM params", con)
        tags = pd.read_sql_query("SELECT key, value, run_uuid FROM tags", con)
        metrics = pd.read_sql_query(
            "SELECT key, value, timestamp, run_uuid, step, is_nan FROM metrics "
            "ORDER BY run_uuid, key, timestamp, step",
            con,
        )
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise DataError(
            f"{path}: is not an MLflow tracking database ({exc}); pass an mlflow.db written by "
            "MLflow's SQLite store, or an mlruns folder"
        ) from exc
    finally:
        con.close()
    gone = (runs["lifecycle_stage"] == "deleted") | (runs["exp_stage"] == "deleted")
    if gone.any():
        ids = list(runs.loc[gone, "run_uuid"])
        notes.append(f"left out {len(ids)} deleted run(s): {describe_locations(ids)}")
    metrics["value"] = metrics["value"].mask(metrics["is_nan"].astype(bool))
    metrics["where"] = [
        f"{path.name}: run {r}, metric {k!r}, step {s}"
        for r, k, s in zip(metrics["run_uuid"], metrics["key"], metrics["step"], strict=True)
    ]
    metrics = metrics.rename(columns={"key": "tag"}).assign(wall_time=metrics["timestamp"] / 1000)
    by_run = dict(tuple(metrics.groupby("run_uuid", sort=False)))
    out = []
    for r in runs[~gone].itertuples(index=False):
        p, t = params[params["run_uuid"] == r.run_uuid], tags[tags["run_uuid"] == r.run_uuid]
        series = by_run.get(r.run_uuid, pd.DataFrame(columns=["tag", "step", "value"]))
        run_tags = dict(zip(t["key"], t["value"], strict=True))
        name = str(run_tags.get("mlflow.runName") or r.name or r.run_uuid)
        out.append(
            _Run(
                r.run_uuid,
                name,
                str(r.experiment),
                f"MLflow run {r.run_uuid}",
                str(r.status),
                dict(zip(p["key"], p["value"], strict=True)),
                run_tags,
                series.reset_index(drop=True),
            )
        )
    return out


def load_mlflow(
    path: str | os.PathLike[str],
    *,
    run_key: str | None = None,
    loss_pattern: str | None = None,
    prop_pattern: str | None = None,
    step_key: str | None = None,
    volume: Volume | None = None,
    exclude_domains: tuple[str, ...] | list[str] = (),
    group_key: str | None = None,
    group: str | None = None,
    run_name_pattern: str | None = None,
    **options: Unpack[ValidationOptions],
) -> MixtureData:
    """Load the runs of an MLflow store into :class:`~bimix_bayes.data.table.MixtureData`.

    Parameters
    ----------
    path
        An ``mlruns`` folder, one experiment's folder in it, or an ``mlflow.db`` file.
    run_key
        A param or tag naming the runs (default: the run name).
    loss_pattern, prop_pattern
        The metric keys of the losses and the params of the shares, with ``{domain}``
        (default: detected).
    step_key
        A metric holding the token count at each step; the volume is then tokens.
    volume
        ``"steps"`` or ``"tokens"`` (what the steps count).
    exclude_domains
        Evaluation domains to leave out.
    group_key, group
        ``"experiment"``, a param or a tag splitting the runs into groups, and the group to keep.
    run_name_pattern
        A regular expression on the run names with one named group per domain.
    **options
        The validation's options (:meth:`MixtureData.from_frames`).

    Raises
    ------
    DataError
        Naming the store, the run, the metric file and line, and the fix.
    """
    path = Path(path)
    notes: list[str] = []
    if path.is_file():
        raw = _sqlite_store(path, notes)
    elif is_mlflow_store(path):
        raw = _file_store(path, notes)
    else:
        raise DataError(
            f"{path}: is not an MLflow store (an mlruns folder with <experiment id>/meta.yaml, "
            "an experiment's folder, or an mlflow.db file)"
        )
    if not raw:
        raise DataError(f"{path}: the MLflow store holds no runs")
    experiments = Counter(r.experiment for r in raw if len(r.series))
    if len(experiments) > 1 and group_key is None:
        raise DataError(
            f"{path}: holds runs of {len(experiments)} experiments "
            f"({', '.join(f'{e!r}: {n} runs' for e, n in experiments.items())}); choose one with "
            "--group-col experiment --group NAME (or pass that experiment's folder)"
        )
    runs = _log_runs(raw, run_key, path, notes)
    return build_data(
        runs,
        source=str(path),
        fix=_FIX,
        loss_pattern=loss_pattern,
        prop_pattern=prop_pattern,
        step_key=step_key,
        volume=volume,
        exclude_domains=exclude_domains,
        group_key=group_key,
        group=group,
        run_name_pattern=run_name_pattern,
        notes=notes,
        word="metric",
        **options,
    )


def _log_runs(raw: list[_Run], run_key: str | None, path: Path, notes: list[str]) -> list[LogRun]:
    names = []
    for r in raw:
        if run_key is None:
            names.append(r.name)
        elif run_key in r.params or run_key in r.tags:
            names.append(str(r.params.get(run_key, r.tags.get(run_key))).strip())
        else:
            raise DataError(f"{path}: {r.where} has no param or tag {run_key!r} (--run-col)")
    counts = Counter(names)
    shared = sorted(n for n, c in counts.items() if c > 1)
    if shared:
        notes.append(
            f"run names shared by several runs got their run id appended: "
            f"{describe_locations(shared)}"
        )
        names = [
            f"{n} ({r.run_id[:8]})" if counts[n] > 1 else n for n, r in zip(names, raw, strict=True)
        ]
    unfinished = [
        f"{n} ({r.status})"
        for n, r in zip(names, raw, strict=True)
        if r.status != "FINISHED" and len(r.series)
    ]
    if unfinished:
        notes.append(
            f"{len(unfinished)} run(s) did not finish; their losses up to the last logged step "
            f"are used: {describe_locations(unfinished)}"
        )
    return [
        LogRun(
            name,
            r.where,
            r.series,
            params=dict(r.params),
            attrs={**r.tags, **r.params, "experiment": r.experiment},
        )
        for name, r in zip(names, raw, strict=True)
    ]
