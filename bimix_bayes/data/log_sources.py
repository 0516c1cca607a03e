"""Loss logs where teams keep them: TensorBoard folders and MLflow stores, behind ``load_data``.

:func:`~bimix_bayes.data.loaders.load_data` (and so every ``bimix`` command that reads DATA)
hands a folder or an SQLite file to :func:`load_logs`, which recognises it by its content:

* a folder with ``events.out.tfevents.*`` files below it: TensorBoard runs
  (:mod:`~bimix_bayes.data.tensorboard_logs`, needs ``pip install 'bimix-bayes[logs]'``);
* an MLflow file store (``mlruns``, with ``<experiment id>/meta.yaml``) or one experiment's
  folder, or an ``mlflow.db`` SQLite store: MLflow runs (:mod:`~bimix_bayes.data.mlflow_logs`,
  read directly, no MLflow needed).

The options of a table keep their meaning where they have one: ``loss_pattern`` names the loss
tags or metric keys (``eval/{domain}_loss``), ``prop_pattern`` the hparams or params holding the
shares (``share_{domain}``), ``step_col`` a tag or metric holding the token count,
``group_col``/``group`` a param (MLflow: also ``experiment``) and the group to keep,
``run_col`` (MLflow) a param or tag naming the runs; ``volume``, ``exclude_domains`` and the
validation's options are the same. ``layout``, ``domain_col`` and ``loss_col`` describe table
columns and are refused.

Examples
--------
>>> import tempfile, pathlib
>>> is_log_path(pathlib.Path(tempfile.mkdtemp())), is_log_path("runs.csv")
(True, False)
>>> load_logs(pathlib.Path(tempfile.mkdtemp()))
Traceback (most recent call last):
...
bimix_bayes.data.table.DataError: ...: is a folder with neither TensorBoard event files ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Unpack

from bimix_bayes.data.mlflow_logs import is_mlflow_db, is_mlflow_store, load_mlflow
from bimix_bayes.data.table import DataError, MixtureData, Volume
from bimix_bayes.data.tensorboard_logs import EVENT_PREFIX, is_tensorboard_dir, load_tensorboard
from bimix_bayes.data.validate import ValidationOptions

__all__ = ["is_log_path", "load_logs"]


def is_log_path(path: str | os.PathLike[str]) -> bool:
    """True for what :func:`load_logs` reads rather than the table reader: a folder, an SQLite
    file, or a TensorBoard event file (refused with a hint)."""
    path = Path(path)
    return path.is_dir() or path.name.startswith(EVENT_PREFIX) or is_mlflow_db(path)


def load_logs(
    path: str | os.PathLike[str],
    *,
    layout: str = "auto",
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
    **options: Unpack[ValidationOptions],
) -> MixtureData:
    """Read a TensorBoard folder or an MLflow store with the options of
    :func:`~bimix_bayes.data.loaders.load_data` (see the module docstring).

    Raises
    ------
    DataError
        For a folder that is neither, an option that applies to tables only, and every problem
        the loaders find.
    """
    path = Path(path)
    if path.name.startswith(EVENT_PREFIX):
        raise DataError(
            f"{path}: is one TensorBoard event file; pass the folder that holds the run folders "
            f"({path.parent.parent})"
        )
    mlflow = is_mlflow_db(path) or is_mlflow_store(path)
    if not mlflow and not is_tensorboard_dir(path):
        raise DataError(
            f"{path}: is a folder with neither TensorBoard event files ({EVENT_PREFIX}*) nor an "
            "MLflow store (mlruns/<experiment id>/meta.yaml); pass a CSV or Parquet file, a "
            "folder of TensorBoard runs, or an mlruns folder"
        )
    kind = "MLflow runs" if mlflow else "TensorBoard logs"
    table_only = {"--layout": layout != "auto", "--domain-col": domain_col, "--loss-col": loss_col}
    if not mlflow:
        table_only["--run-col"] = run_col
    given = [flag for flag, value in table_only.items() if value]
    if given:
        raise DataError(
            f"{path}: {', '.join(given)} describe(s) the columns of a table, not {kind}; name the "
            "loss tags with --loss-pattern (e.g. 'eval/{domain}_loss') and the share parameters "
            "with --prop-pattern (e.g. 'share_{domain}')"
        )
    common = {
        "loss_pattern": loss_pattern,
        "prop_pattern": prop_pattern,
        "volume": volume,
        "exclude_domains": tuple(exclude_domains),
        "group_key": group_col,
        "group": group,
        "run_name_pattern": run_name_pattern,
    }
    if mlflow:
        return load_mlflow(path, run_key=run_col, step_key=step_col, **common, **options)
    return load_tensorboard(path, step_tag=step_col, **common, **options)
