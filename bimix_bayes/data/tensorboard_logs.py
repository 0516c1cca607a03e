"""Read a folder of TensorBoard logs (one run per folder) into :class:`MixtureData`.

A run is a folder that holds ``events.out.tfevents.*`` files (TensorBoard's own meaning); its
name is its path below the folder given (``mix_a``, ``70M/mix_a``). The event files are read
with `tbparse <https://github.com/j3soon/tbparse>`_ (``pip install 'bimix-bayes[logs]'``), both
the classic scalars (PyTorch's ``SummaryWriter``) and the scalar tensors of TensorFlow 2 and
``tensorboard.summary.Writer``.

Each run's **mixture**, first found of:

1. ``run_name_pattern``: a regular expression on the run name with one named group per domain;
2. a ``mixture.json`` (``{"web": 0.7, "code": 0.3}``) or one-row ``mixture.csv`` (``web,code``)
   in the run folder or the nearest folder above it (up to the folder given);
3. a row of ``mixtures.csv`` in the folder given (``run,web,code``: a run folder's path or name);
4. the run's hparams (``add_hparams`` / the HParams plugin; PyTorch's ``add_hparams`` writes them
   to a subfolder, which is read for the run above it), named as in
   :data:`~bimix_bayes.data.run_logs.LOG_PROP_PATTERNS` (``share_web``, ``mixture.web``...) or
   one hparam holding a dict (``mixture = "{'web': 0.7, 'code': 0.3}"``).

The **losses** are the scalar tags matching a pattern (``eval/{domain}_loss``,
``{domain}_loss``, ``loss/{domain}``...: :data:`~bimix_bayes.data.run_logs.LOG_LOSS_PATTERNS`,
or ``loss_pattern``), the **steps** the event steps (or the value of a token-count tag,
``step_tag``). Everything then goes through :func:`~bimix_bayes.data.run_logs.build_data` and
the validation CSV input goes through.

Examples
--------
>>> import json, tempfile, pathlib
>>> from tensorboard.summary import Writer  # doctest: +SKIP
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for name, web in (("a", 0.7), ("b", 0.3)):  # doctest: +SKIP
...     writer = Writer(str(root / name))
...     for step in (100, 200, 400):
...         writer.add_scalar("eval/web_loss", 3 - web / 10 + 50 / step, step)
...         writer.add_scalar("eval/code_loss", 2.7 + web / 10 + 50 / step, step)
...     writer.close()
...     _ = (root / name / "mixture.json").write_text(json.dumps({"web": web, "code": 1 - web}))
>>> data = load_tensorboard(root)  # doctest: +SKIP
>>> data.domains, data.runs  # doctest: +SKIP
(('web', 'code'), ('a', 'b'))
>>> is_tensorboard_dir(pathlib.Path(tempfile.mkdtemp()))
False
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import pandas as pd

from bimix_bayes.data.mixture_files import read_mixtures
from bimix_bayes.data.run_logs import LogRun, MissingExtraError, build_data
from bimix_bayes.data.table import DataError, MixtureData, Volume, describe_locations
from bimix_bayes.data.validate import ValidationOptions

__all__ = [
    "EVENT_PREFIX",
    "MIXTURE_FILES",
    "find_event_files",
    "is_tensorboard_dir",
    "load_tensorboard",
]

EVENT_PREFIX = "events.out.tfevents."
#: A run's own mixture file, looked for in the run folder and the folders above it.
MIXTURE_FILES = ("mixture.json", "mixture.csv")
#: The table of every run's mixture, in the folder given.
MIXTURES_TABLE = "mixtures.csv"
INSTALL_HINT = "pip install 'bimix-bayes[logs]'"
_FIX = (
    'give each run folder a mixture.json ({{"web": 0.7, "code": 0.3}}), add a row to '
    "{root}/mixtures.csv (run,web,code), log hparams such as share_web, or name the shares in "
    "the run names (run_name_pattern in Python)"
)


def find_event_files(root: str | os.PathLike[str]) -> dict[Path, list[Path]]:
    """The event files under ``root``, by folder (sorted; symbolic links not followed).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "a").mkdir()
    >>> _ = (root / "a" / "events.out.tfevents.1.host").write_bytes(b"")
    >>> {str(k.relative_to(root)): len(v) for k, v in find_event_files(root).items()}
    {'a': 1}
    """
    out: dict[Path, list[Path]] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        events = sorted(f for f in files if f.startswith(EVENT_PREFIX))
        if events:
            out[Path(folder)] = [Path(folder) / f for f in events]
    return out


def is_tensorboard_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder with an ``events.out.tfevents.*`` file somewhere below."""
    if not Path(path).is_dir():
        return False
    return any(f.startswith(EVENT_PREFIX) for _, _, files in os.walk(path) for f in files)


def _import_reader() -> Any:
    try:
        from tbparse import SummaryReader
    except ImportError as exc:
        raise MissingExtraError(
            f"reading TensorBoard logs needs tbparse and tensorboard, which are not installed; "
            f"install the optional extra with `{INSTALL_HINT}`"
        ) from exc
    return SummaryReader


def _read_events(file: Path, root: Path, reader: Any) -> tuple[pd.DataFrame, dict[str, object]]:
    """The scalar values of one event file (with where each is) and its hparams."""
    rel = file.relative_to(root).as_posix()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="tbparse")  # its pandas deprecations
            r = reader(
                str(file),
                pivot=False,
                extra_columns={"wall_time"},
                event_types={"scalars", "tensors", "hparams"},
            )
            parts = [r.scalars, r.tensors]
            hparams = r.hparams
    except Exception as exc:  # a damaged file fails deep inside tensorboard, in many ways
        raise DataError(
            f"{rel}: could not be read as a TensorBoard event file ({type(exc).__name__}: "
            f"{exc}); remove or replace the file"
        ) from exc
    frames = []
    for part in parts:
        if part.empty or "value" not in part:
            continue
        scalar = part["value"].map(lambda v: np.ndim(v) == 0)
        part = part[scalar.to_numpy(dtype=bool)]
        frames.append(part[["tag", "step", "value", "wall_time"]])
    series = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["tag", "step", "value", "wall_time"])
    )
    series["value"] = pd.to_numeric(series["value"], errors="coerce").astype(float)
    series["where"] = [
        f"{rel}, tag {t!r} step {s}" for t, s in zip(series["tag"], series["step"], strict=True)
    ]
    params = {} if hparams.empty else dict(zip(hparams["tag"], hparams["value"], strict=True))
    return series, params


def _mixture_file(folder: Path, root: Path, sum_tol: float) -> tuple[dict[str, float], str] | None:
    """The mixture in ``folder``/mixture.json or mixture.csv, or in the nearest folder above."""
    here = folder
    while True:
        for name in MIXTURE_FILES:
            path = here / name
            if path.is_file():
                return _read_mixture_file(path, sum_tol), path.relative_to(root).as_posix()
        if here == root or root not in here.parents:
            return None
        here = here.parent


def _read_mixture_file(path: Path, sum_tol: float) -> dict[str, float]:
    if path.suffix == ".csv":
        table = read_mixtures(path, sum_tol=sum_tol)
        if len(table) != 1:
            raise DataError(
                f"{path}: holds {len(table)} mixtures; a run's mixture.csv holds one row "
                "(put the table of every run's mixture in the top folder's mixtures.csv)"
            )
        return {str(d): float(v) for d, v in table.iloc[0].items()}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: is not valid JSON ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("mixture"), dict):
        data = data["mixture"]
    if not isinstance(data, dict) or not data:
        raise DataError(f'{path}: must hold an object of shares, e.g. {{"web": 0.7, "code": 0.3}}')
    bad = [k for k, v in data.items() if isinstance(v, bool) or not isinstance(v, int | float)]
    if bad:
        raise DataError(f"{path}: the share(s) of {bad} are not numbers")
    return {str(k): float(v) for k, v in data.items()}


def load_tensorboard(
    path: str | os.PathLike[str],
    *,
    loss_pattern: str | None = None,
    prop_pattern: str | None = None,
    step_tag: str | None = None,
    volume: Volume | None = None,
    exclude_domains: tuple[str, ...] | list[str] = (),
    group_key: str | None = None,
    group: str | None = None,
    run_name_pattern: str | None = None,
    **options: Unpack[ValidationOptions],
) -> MixtureData:
    """Load a folder of TensorBoard runs into :class:`~bimix_bayes.data.table.MixtureData`.

    Parameters
    ----------
    path
        The folder holding the run folders (or one run folder).
    loss_pattern
        The scalar tags of the losses, with ``{domain}`` (default: detected).
    prop_pattern
        The hparams holding the shares, with ``{domain}`` (default: detected).
    step_tag
        A scalar tag holding the token count at each step; the volume is then tokens.
    volume
        ``"steps"`` or ``"tokens"`` (what the steps count).
    exclude_domains
        Evaluation domains to leave out.
    group_key, group
        An hparam splitting the runs into groups, and the group to keep.
    run_name_pattern
        A regular expression on the run names with one named group per domain.
    **options
        The validation's options (:meth:`MixtureData.from_frames`).

    Raises
    ------
    DataError
        Naming the folder, the run, the file or tag, and the fix; a
        :class:`~bimix_bayes.data.run_logs.MissingExtraError` when tbparse is missing.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    found = find_event_files(root)
    if not found:
        raise DataError(f"{root}: holds no TensorBoard event files ({EVENT_PREFIX}*)")
    reader = _import_reader()
    sum_tol = float(options.get("sum_tol", 1e-3))
    table = _mixtures_table(root, sum_tol)
    runs: dict[Path, LogRun] = {}
    for folder, files in found.items():
        name = folder.relative_to(root).as_posix() if folder != root else root.name
        read = [_read_events(f, root, reader) for f in files]
        series = pd.concat([s for s, _ in read], ignore_index=True)
        params = {k: v for _, p in read for k, v in p.items()}
        run = LogRun(name, f"run folder {name!r}", series, params)
        own = _mixture_file(folder, root, sum_tol)
        if own is not None:
            run.mixture, run.mixture_where = own[0], own[1]
        elif name in table or folder.name in table:
            key = name if name in table else folder.name
            run.mixture, run.mixture_where = table[key], f"{MIXTURES_TABLE}, row {key!r}"
        runs[folder] = run
    notes = _inherit_hparams(runs, root)
    unused = sorted(set(table) - {r.name for r in runs.values()} - {f.name for f in runs})
    if unused:
        notes.append(
            f"{len(unused)} row(s) of {MIXTURES_TABLE} name no run folder: "
            f"{describe_locations(unused)}"
        )
    return build_data(
        list(runs.values()),
        source=str(root),
        fix=_FIX.format(root=root),
        loss_pattern=loss_pattern,
        prop_pattern=prop_pattern,
        step_key=step_tag,
        volume=volume,
        exclude_domains=exclude_domains,
        group_key=group_key,
        group=group,
        run_name_pattern=run_name_pattern,
        notes=notes,
        **options,
    )


def _mixtures_table(root: Path, sum_tol: float) -> dict[str, dict[str, float]]:
    path = root / MIXTURES_TABLE
    if not path.is_file():
        return {}
    table = read_mixtures(path, sum_tol=sum_tol)
    return {str(i): {str(d): float(v) for d, v in row.items()} for i, row in table.iterrows()}


def _inherit_hparams(runs: dict[Path, LogRun], root: Path) -> list[str]:
    """A run without hparams takes those of its one subfolder that has some (PyTorch's
    ``add_hparams`` writes them to a subfolder named by the time)."""
    taken = []
    for folder, run in runs.items():
        if run.params:
            continue
        children = [c for f, c in runs.items() if f.parent == folder and c.params]
        if len(children) == 1:
            run.params = dict(children[0].params)
            children[0].part_of = run.name
            taken.append(children[0].name)
    if not taken:
        return []
    return [
        f"the hparams of {len(taken)} run(s) were read from the subfolder that PyTorch's "
        f"add_hparams writes ({describe_locations(taken)})"
    ]
