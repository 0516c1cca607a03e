"""A proxy study (``bimix study``): a design of mixtures, each trained by
:func:`~bimix_bayes.proxy.trainer.train_run` in parallel worker processes with one thread each.

The design follows the BiMix paper's protocol at laptop scale:

* **uniform**: every domain gets ``1 / D``;
* **entropy proxies**: ``softmax(H / temperature)`` of each domain's byte entropy, one mixture
  per measure (Shannon, conditional, joint, von Neumann: :mod:`bimix_bayes.proxy.entropy`);
* **spread**: a few mixtures that give some domains a high share and the others a low one
  (``low``, default 5 %), rotated so that every domain is seen at a low and at a high share
  (with five domains and three spread mixtures: 5 % and 42.5 %);
* **space-filling** (``design="space-filling"``, instead of or beside the spread ones):
  mixtures chosen by greedy maximin among seeded Dirichlet(1) candidates, every share at least
  ``min_share`` (:func:`space_filling_mixtures`), kept away from the uniform and entropy ones;
* **replicate seeds**: ``replicates={"uniform": 3, ...}`` trains a mixture with seeds
  ``seed, seed + 1, ...``; the runs are ``uniform``, ``uniform_s1``, ``uniform_s2`` (the first
  keeps the plain name, so older studies resume), so the run-to-run seed noise is measured.

Output folder::

    OUT/losses.csv      # canonical long table: run, step, domain, loss, p_<domain>...,
                        #   mixture, seed (the design row and the seed of each run)
    OUT/mixtures.csv    # the design: mixture, <domain>... (``bimix predict --mixture`` layout)
    OUT/entropy.csv     # the domains' entropies behind the entropy mixtures
    OUT/runs.json       # per-run metadata: mixture, config, seed, versions, wall time;
                        #   the learning-rate schedule, the design and its replicates
    OUT/runs/<run>.csv, OUT/runs/<run>.json   # each run as soon as it finishes

Every file is written atomically. A finished run whose saved metadata match (mixture, config,
seed, corpus checksums) is reused, so an interrupted study resumes where it stopped.

The design itself (which mixtures, which seeds) is :mod:`bimix_bayes.proxy.design`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.data.files import atomic_write_text, atomic_write_with
from bimix_bayes.proxy.corpora import read_manifest
from bimix_bayes.proxy.design import (
    _named,
    default_replicate_mixtures,
    design_mixtures,
    design_settings,
    lr_schedule,
    replicate_runs,
    space_filling_mixtures,
    spread_mixtures,
    uniform_mixture,
)
from bimix_bayes.proxy.trainer import RunResult, TrainConfig

__all__ = [
    "STUDY_FORMAT",
    "default_replicate_mixtures",
    "design_mixtures",
    "design_settings",
    "lr_schedule",
    "replicate_runs",
    "run_study",
    "space_filling_mixtures",
    "spread_mixtures",
    "uniform_mixture",
    "write_results",
]

STUDY_FORMAT = "bimix-proxy-study/1"
#: The design settings ``runs.json`` records (under ``design``).
RECORDED_DESIGN = ("n_spread", "low", "temperature", "n_space_filling", "min_share")


# ------------------------------------------------------------------------------ running
def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def _train_in_worker(
    corpora: str, mixture: dict[str, float], config: dict, seed: int, run: str
) -> RunResult:
    from bimix_bayes.proxy.trainer import train_run

    return train_run(corpora, mixture, TrainConfig.from_dict(config), seed=seed, run=run)


def _same_run(meta: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    if meta.get("seed") != want["seed"] or meta.get("config") != want["config"]:
        return False
    have_mix = meta.get("mixture", {})
    if set(have_mix) != set(want["mixture"]) or any(
        abs(have_mix[d] - want["mixture"][d]) > 1e-9 for d in have_mix
    ):
        return False
    have = {d: v.get("sha256") for d, v in meta.get("corpora", {}).get("domains", {}).items()}
    return have == want["sha256"]


def _load_finished(folder: Path, run: str, want: Mapping[str, Any]) -> RunResult | None:
    csv, meta_path = folder / f"{run}.csv", folder / f"{run}.json"
    if not (csv.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not _same_run(meta, want):
        return None
    return RunResult(pd.read_csv(csv), meta)


def _save_run(folder: Path, result: RunResult) -> None:
    run = result.meta["run"]
    atomic_write_with(folder / f"{run}.csv", lambda p: result.rows.to_csv(p, index=False))
    atomic_write_text(folder / f"{run}.json", json.dumps(result.meta, indent=2) + "\n")


def write_results(
    out: str | os.PathLike[str],
    results: Sequence[RunResult],
    mixtures: pd.DataFrame,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``losses.csv`` (long table), ``mixtures.csv`` and ``runs.json`` atomically."""
    from bimix_bayes.proxy.entropy import write_mixtures

    out = Path(out)
    losses = pd.concat([r.rows for r in results], ignore_index=True)
    paths = {
        "losses": out / "losses.csv",
        "mixtures": out / "mixtures.csv",
        "runs": out / "runs.json",
    }
    atomic_write_with(paths["losses"], lambda p: losses.to_csv(p, index=False))
    write_mixtures(mixtures, paths["mixtures"])
    doc = {"format": STUDY_FORMAT, **(extra or {}), "runs": [r.meta for r in results]}
    atomic_write_text(paths["runs"], json.dumps(doc, indent=2) + "\n")
    return paths


def run_study(
    corpora: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: TrainConfig | None = None,
    mixtures: pd.DataFrame | None = None,
    workers: int = 2,
    seed: int = 0,
    replicates: Mapping[str, int] | None = None,
    n_replicates: int = 1,
    replicate_mixtures: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    **design: Any,
) -> dict[str, Any]:
    """Run every mixture of the design (one training run each) and write the results.

    Parameters
    ----------
    corpora
        Folder written by ``bimix corpora``.
    out
        Output folder (see the module docstring for its files).
    config
        Training options shared by all runs (default :class:`TrainConfig`).
    mixtures
        The design (rows: run names, columns: domains); default :func:`design_mixtures`.
    workers
        Parallel worker processes (spawned; one thread each). ``1`` trains in this process.
    seed
        The seed of every mixture's first run (common random numbers: these runs differ only
        by their mixture); replicates use ``seed + 1``, ``seed + 2``, ...
    replicates
        Mixture name -> number of seeds (default 1): :func:`replicate_runs`, e.g.
        ``{"uniform": 3}`` adds the runs ``uniform_s1`` and ``uniform_s2``.
    n_replicates, replicate_mixtures
        Shorthand: when ``n_replicates > 1``, each of ``replicate_mixtures`` (default
        :func:`default_replicate_mixtures`: uniform and the 3 mixtures farthest apart) gets
        ``n_replicates`` seeds (``replicates`` entries take precedence).
    **design
        The design's settings (``n_spread``, ``low``, ``temperature``, ``n_space_filling``,
        ``min_share``...: :func:`design_settings`), passed to :func:`design_mixtures` with
        ``seed`` when ``mixtures`` is None; :class:`TypeError` for an unknown one.

    Returns
    -------
    dict
        ``paths`` (the files written), ``results`` (the :class:`RunResult` list in run
        order, :func:`replicate_runs`), ``wall_seconds`` and ``reused`` (runs taken from an
        earlier, identical study).

    Examples
    --------
    >>> summary = run_study("out/corpora", "out/study", workers=2)  # doctest: +SKIP
    """
    config = config or TrainConfig()
    log = log or (lambda msg: None)
    settings = {**design_settings(**design), "seed": seed}
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start = time.perf_counter()
    corpora, out = Path(corpora), Path(out)
    manifest = read_manifest(corpora)
    table = None
    if mixtures is None:
        log("design: computing the domains' entropies for the entropy-proxy mixtures ...")
        mixtures, table = design_mixtures(corpora, **settings)
    mixtures = _check_design(mixtures, list(manifest["domains"]))
    if n_replicates < 1:
        raise ValueError(f"n_replicates must be >= 1, got {n_replicates}")
    if n_replicates > 1:
        chosen = list(replicate_mixtures or default_replicate_mixtures(mixtures, 4))
        replicates = {**{m: n_replicates for m in chosen}, **(replicates or {})}
    runs = replicate_runs(mixtures, replicates, seed)
    _check_design(
        mixtures.loc[runs["mixture"]].set_axis(runs.index, axis=0), list(manifest["domains"])
    )
    replicated = {m: int(k) for m, k in (replicates or {}).items() if int(k) > 1}
    seeds_note = "; seeds " + ", ".join(f"{m} x{k}" for m, k in replicated.items())
    seeds_note = seeds_note if replicated else ""
    log(
        f"design: {len(mixtures)} mixtures, {len(runs)} runs x {len(config.checkpoints())} "
        f"checkpoints (steps {config.checkpoints()}), {workers} worker(s)" + seeds_note
    )
    run_dir = out / "runs"
    sha = {d: e["sha256"] for d, e in manifest["domains"].items()}
    pending: dict[str, tuple[dict[str, float], int]] = {}
    results: dict[str, RunResult] = {}
    reused = []
    schedule = lr_schedule(config)
    for run, (name, run_seed) in runs.iterrows():
        mix = {d: float(v) for d, v in mixtures.loc[name].items()}
        want = {"mixture": mix, "seed": int(run_seed), "config": config.to_dict(), "sha256": sha}
        found = _load_finished(run_dir, str(run), want)
        if found is not None:
            results[str(run)] = _with_design(found, name, int(run_seed), schedule)
            reused.append(str(run))
        else:
            pending[str(run)] = (mix, int(run_seed))
    if reused:
        log(f"reusing {len(reused)} finished run(s) from {run_dir}: {', '.join(reused)}")

    def finish(result: RunResult) -> None:
        run = result.meta["run"]
        result = _with_design(
            result, runs.loc[run, "mixture"], int(runs.loc[run, "seed"]), schedule
        )
        _save_run(run_dir, result)
        results[run] = result
        log(
            f"done {run} ({len(results)}/{len(runs)}): "
            f"{result.meta['wall_seconds']:.0f} s, {result.meta['steps_per_second']:.1f} steps/s"
        )

    cfg = config.to_dict()
    if workers == 1 or len(pending) <= 1:
        from bimix_bayes.proxy.trainer import train_run

        for run, (mix, run_seed) in pending.items():
            log(f"start {run} (seed {run_seed})")
            finish(train_run(corpora, mix, config, seed=run_seed, run=run))
    elif pending:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(workers, len(pending)), mp_context=ctx, initializer=_init_worker
        ) as pool:
            futures: dict[Future, str] = {}
            for run, (mix, run_seed) in pending.items():
                futures[pool.submit(_train_in_worker, str(corpora), mix, cfg, run_seed, run)] = run
            log(f"started {len(futures)} run(s) on {min(workers, len(pending))} workers")
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        finish(fut.result())
                    except Exception as exc:
                        for other in remaining:
                            other.cancel()
                        raise RuntimeError(
                            f"run {futures[fut]!r} failed: {exc}; the finished runs are saved in "
                            f"{run_dir} and are reused when the study is started again"
                        ) from exc
    ordered = [results[str(run)] for run in runs.index]
    wall = time.perf_counter() - start
    extra = {
        "corpora": {"path": str(corpora), "domains": manifest["domains"]},
        "config": cfg,
        "schedule": schedule,
        "seed": seed,
        "seeds": {str(run): int(s) for run, s in runs["seed"].items()},
        "replicates": replicated,
        "workers": workers,
        "design": {k: settings[k] for k in RECORDED_DESIGN},
        "wall_seconds": round(wall, 3),
        "reused_runs": reused,
    }
    if table is not None:
        atomic_write_with(out / "entropy.csv", lambda p: table.to_csv(p, float_format="%.6f"))
        extra["entropy"] = {d: {k: float(v) for k, v in row.items()} for d, row in table.iterrows()}
    paths = write_results(out, ordered, mixtures, extra)
    return {"paths": paths, "results": ordered, "wall_seconds": wall, "reused": reused}


def _with_design(result: RunResult, mixture: str, seed: int, schedule: dict) -> RunResult:
    """The run with its design row and seed as ``mixture``/``seed`` columns of the long table
    (``load_data`` ignores extra columns) and in its metadata, plus the lr schedule."""
    rows = result.rows.copy()
    rows["mixture"] = mixture
    rows["seed"] = int(seed)
    meta = {**result.meta, "design_mixture": mixture, "schedule": schedule}
    return RunResult(rows, meta)


def _check_design(mixtures: pd.DataFrame, domains: list[str]) -> pd.DataFrame:
    if mixtures.empty:
        raise ValueError("the study design has no mixtures")
    unknown = [c for c in mixtures.columns if c not in domains]
    if unknown:
        raise ValueError(f"design domain(s) {unknown} are not in the corpora ({domains})")
    names = [str(i) for i in mixtures.index]
    if len(set(names)) != len(names):
        raise ValueError("the study design names a mixture twice; give each run its own name")
    bad = [n for n in names if not n or any(ch in n for ch in '/\\:*?"<>|') or n.startswith(".")]
    if bad:
        raise ValueError(f"run name(s) {bad} cannot be file names; use letters, digits, _ and -")
    values = mixtures.reindex(columns=domains).fillna(0.0).astype(float)
    sums = values.sum(axis=1).to_numpy()
    if (values.to_numpy() < 0).any() or not np.allclose(sums, 1, atol=1e-3):
        raise ValueError("every design mixture needs shares >= 0 summing to 1")
    values = values.div(sums, axis=0)
    values.index = pd.Index(names, name="mixture")
    return _named(values)
