"""A proxy study (``bimix study``): a design of mixtures, each trained by
:func:`~bimix_bayes.proxy.trainer.train_run` in parallel worker processes with one thread each.

The design follows the BiMix paper's protocol at laptop scale:

* **uniform**: every domain gets ``1 / D``;
* **entropy proxies**: ``softmax(H / temperature)`` of each domain's byte entropy, one mixture
  per measure (Shannon, conditional, joint, von Neumann: :mod:`bimix_bayes.entropy`);
* **spread**: a few mixtures that give some domains a high share and the others a low one
  (``low``, default 5 %), rotated so that every domain is seen at a low and at a high share
  (with five domains and three spread mixtures: 5 % and 42.5 %).

Output folder::

    OUT/losses.csv      # canonical long table: run, step, domain, loss, p_<domain>...
    OUT/mixtures.csv    # the design: mixture, <domain>... (``bimix predict --mixture`` layout)
    OUT/entropy.csv     # the domains' entropies behind the entropy mixtures
    OUT/runs.json       # per-run metadata: mixture, config, seed, versions, wall time
    OUT/runs/<run>.csv, OUT/runs/<run>.json   # each run as soon as it finishes

Every file is written atomically. A finished run whose saved metadata match (mixture, config,
seed, corpus checksums) is reused, so an interrupted study resumes where it stopped.

Examples
--------
>>> spread_mixtures(["a", "b", "c", "d", "e"], 3).round(3)  # doctest: +NORMALIZE_WHITESPACE
domain        a      b      c      d      e
mixture
spread_1  0.425  0.050  0.050  0.425  0.050
spread_2  0.050  0.425  0.050  0.050  0.425
spread_3  0.425  0.050  0.425  0.050  0.050
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.io_utils import atomic_write_text, atomic_write_with
from bimix_bayes.proxy.corpora import read_manifest
from bimix_bayes.proxy.trainer import RunResult, TrainConfig

__all__ = [
    "STUDY_FORMAT",
    "design_mixtures",
    "run_study",
    "spread_mixtures",
    "uniform_mixture",
    "write_results",
]

STUDY_FORMAT = "bimix-proxy-study/1"


# ------------------------------------------------------------------------------ design
def uniform_mixture(domains: Sequence[str]) -> pd.DataFrame:
    """One row ``uniform``: ``1 / D`` for every domain."""
    frame = pd.DataFrame([[1 / len(domains)] * len(domains)], index=["uniform"], columns=domains)
    return _named(frame)


def _named(frame: pd.DataFrame) -> pd.DataFrame:
    frame.index.name = "mixture"
    frame.columns = pd.Index(list(frame.columns), name="domain")
    return frame


def spread_mixtures(domains: Sequence[str], n: int = 3, low: float = 0.05) -> pd.DataFrame:
    """``n`` mixtures in which ``ceil(D / n)`` domains share the high part and every other
    domain gets ``low``; mixture ``k`` favours domains ``k, k + n, k + 2n, ...`` (mod D), so
    each domain is favoured at least once and, when ``n >= 2``, held low at least once.
    """
    domains = list(domains)
    D = len(domains)
    if D < 2:
        raise ValueError(f"a spread design needs at least 2 domains, got {D}")
    if n < 1:
        raise ValueError(f"the number of spread mixtures must be >= 1, got {n}")
    n = min(n, D)
    h = math.ceil(D / n)
    high = (1 - low * (D - h)) / h
    if not 0 < low < 1 / D or high <= low:
        raise ValueError(
            f"low share {low} does not fit {D} domains in {n} spread mixture(s); it must be "
            f"positive and below 1/{D} = {1 / D:.3f}"
        )
    rows, seen = {}, set()
    for k in range(n):
        favoured = frozenset((k + j * n) % D for j in range(h))
        if favoured in seen:
            continue
        seen.add(favoured)
        rows[f"spread_{k + 1}"] = [high if i in favoured else low for i in range(D)]
    return _named(pd.DataFrame.from_dict(rows, orient="index", columns=domains))


def design_mixtures(
    corpora: str | os.PathLike[str],
    *,
    measures: Sequence[str] = ("se", "ce", "je", "vne"),
    temperature: float = 1.0,
    n_spread: int = 3,
    low: float = 0.05,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The study's mixtures (uniform, entropy proxies, spread) and the entropy table.

    Entropies are computed on each domain's ``train.txt`` with the byte tokenizer; with no
    ``measures`` the entropy table is None.
    """
    from bimix_bayes.entropy import domain_entropies, entropy_mixtures

    corpora = Path(corpora)
    domains = list(read_manifest(corpora)["domains"])
    parts = [uniform_mixture(domains)]
    table = None
    if measures:
        table = domain_entropies(
            {d: corpora / d / "train.txt" for d in domains},
            measures=measures,
            seed=seed,
            progress=False,
        )
        ent = entropy_mixtures(table, temperature)
        ent.index = [f"entropy_{m}" for m in ent.index]
        parts.append(_named(ent[domains]))
    if n_spread:
        parts.append(spread_mixtures(domains, n_spread, low))
    mixtures = _named(pd.concat(parts))
    return mixtures, table


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
    from bimix_bayes.entropy import write_mixtures

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
    n_spread: int = 3,
    low: float = 0.05,
    temperature: float = 1.0,
    log: Callable[[str], None] | None = None,
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
        The seed of every run (common random numbers: the runs differ only by their mixture).
    n_spread, low, temperature
        Passed to :func:`design_mixtures` when ``mixtures`` is None.

    Returns
    -------
    dict
        ``paths`` (the files written), ``results`` (the :class:`RunResult` list in design
        order), ``wall_seconds`` and ``reused`` (runs taken from an earlier, identical study).

    Examples
    --------
    >>> summary = run_study("out/corpora", "out/study", workers=2)  # doctest: +SKIP
    """
    config = config or TrainConfig()
    log = log or (lambda msg: None)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start = time.perf_counter()
    corpora, out = Path(corpora), Path(out)
    manifest = read_manifest(corpora)
    table = None
    if mixtures is None:
        log("design: computing the domains' entropies for the entropy-proxy mixtures ...")
        mixtures, table = design_mixtures(
            corpora, n_spread=n_spread, low=low, temperature=temperature, seed=seed
        )
    mixtures = _check_design(mixtures, list(manifest["domains"]))
    log(
        f"design: {len(mixtures)} runs x {len(config.checkpoints())} checkpoints "
        f"(steps {config.checkpoints()}), {workers} worker(s)"
    )
    run_dir = out / "runs"
    sha = {d: e["sha256"] for d, e in manifest["domains"].items()}
    pending: dict[str, dict[str, float]] = {}
    results: dict[str, RunResult] = {}
    reused = []
    for run, row in mixtures.iterrows():
        mix = {d: float(v) for d, v in row.items()}
        want = {"mixture": mix, "seed": seed, "config": config.to_dict(), "sha256": sha}
        found = _load_finished(run_dir, str(run), want)
        if found is not None:
            results[str(run)] = found
            reused.append(str(run))
        else:
            pending[str(run)] = mix
    if reused:
        log(f"reusing {len(reused)} finished run(s) from {run_dir}: {', '.join(reused)}")

    def finish(result: RunResult) -> None:
        _save_run(run_dir, result)
        results[result.meta["run"]] = result
        log(
            f"done {result.meta['run']} ({len(results)}/{len(mixtures)}): "
            f"{result.meta['wall_seconds']:.0f} s, {result.meta['steps_per_second']:.1f} steps/s"
        )

    cfg = config.to_dict()
    if workers == 1 or len(pending) <= 1:
        from bimix_bayes.proxy.trainer import train_run

        for run, mix in pending.items():
            log(f"start {run}")
            finish(train_run(corpora, mix, config, seed=seed, run=run))
    elif pending:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(workers, len(pending)), mp_context=ctx, initializer=_init_worker
        ) as pool:
            futures: dict[Future, str] = {}
            for run, mix in pending.items():
                futures[pool.submit(_train_in_worker, str(corpora), mix, cfg, seed, run)] = run
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
    ordered = [results[str(run)] for run in mixtures.index]
    wall = time.perf_counter() - start
    extra = {
        "corpora": {"path": str(corpora), "domains": manifest["domains"]},
        "config": cfg,
        "seed": seed,
        "workers": workers,
        "design": {"n_spread": n_spread, "low": low, "temperature": temperature},
        "wall_seconds": round(wall, 3),
        "reused_runs": reused,
    }
    if table is not None:
        atomic_write_with(out / "entropy.csv", lambda p: table.to_csv(p, float_format="%.6f"))
        extra["entropy"] = {d: {k: float(v) for k, v in row.items()} for d, row in table.iterrows()}
    paths = write_results(out, ordered, mixtures, extra)
    return {"paths": paths, "results": ordered, "wall_seconds": wall, "reused": reused}


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
