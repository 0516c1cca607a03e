"""Benchmark: does `bimix next` pay? Regret of the recommended mixture against the number of
proxy runs trained, for four ways of choosing the runs (issue 18).

Protocol. A *problem* is a pool of mixtures that could be trained, the true objective of each
(the mean over evaluation domains of the loss at the target step: the last checkpoint) and a way
to "train" a pool mixture (return its loss curves). Each repeat starts every strategy from the
same ``--start`` random pool runs (seeded) and adds runs from the rest of the pool:

* ``random``: the pool in a random order (RegMix's random Dirichlet swarm: the pool mixtures
  are themselves random draws);
* ``space-filling``: greedy maximin distance on the square roots of the shares (a Hellinger-
  like geometry that spreads small shares apart), from the start runs;
* ``entropy``: the entropy-proxy mixtures of the embedded study first (CE, SE, JE, VNE: BiMix
  section 4), then the random order (only where such mixtures exist);
* ``bimix next``: :func:`~bimix_bayes.decision.next_run.propose_next_runs` with the remaining
  pool as candidates, a batch that reaches the next grid point (at most ``--max-batch`` runs per
  refit), refit, propose again.

At every ``n`` of the grid the Bayesian model (packaged spec ``bimix_cross``, reduced sampler)
is fitted on the chosen runs (all their checkpoints) and recommends the pool mixture with the
lowest posterior expected objective (:func:`~bimix_bayes.decision.rank.rank` over the whole
pool). Regret = true objective of the recommended mixture minus the pool's best (nats). Two
cheap baselines ride on the random order: the paper's least squares (BiMix per domain,
:class:`~bimix_bayes.leastsq.fit.BiMixLeastSquares`) recommending the pool mixture with the
lowest predicted mean loss, and "best seen" (the trained run with the lowest observed
objective, no model at all).

Problems:

1. **replay, SlimPajama 122M** (the 60 real runs of Shukor et al., 7 domains, 10 checkpoints):
   a run's truth is its observed objective at 2e10 tokens; the pool is the 60 runs. The entropy
   proxies need the domains' text, which the dataset does not ship: left out.
2. **simulated, SlimPajama-like** and 3. **simulated, embedded-study-like**: the model is
   fitted on all runs of the data (the *truth fit*); each repeat draws one posterior draw as the
   truth. A pool of ``--pool`` random Dirichlet mixtures (every share >= 2 %; on the embedded
   study plus its four entropy-proxy mixtures) is simulated at the data's checkpoints: the law's
   log loss under that draw, plus a fresh run-offset vector drawn from the draw's correlated
   run-effect covariance (``effect_factors``), plus checkpoint noise ``sigma``. A run's truth is
   the law's objective under the draw (no offset: what a mixture is worth, not one seed's luck).

The issue's criterion: ``bimix next`` reaches the regret random swarms reach at ``n`` runs with
at most ``n / 2`` runs. The report compares medians over repeats and says, for each ``n``, how
many runs ``bimix next`` needed to get there (or that it did not within the grid).

Run from the repository root (datasets in ``../shared/datasets`` or ``$BIMIX_SHARED_DATASETS``;
the SlimPajama problems are skipped when absent, the embedded one always runs)::

    python benchmarks/next_run_regret.py                    # the full run (~80 min, 2 cores)
    python benchmarks/next_run_regret.py --quick --out /tmp/regret-quick.md   # smoke (~5 min)
    python benchmarks/next_run_regret.py --problems replay --repeats 3

The report (markdown, written atomically) is rewritten after every repeat, so a long run shows
its progress; scratch files go nowhere else.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_OPT", "1")  # as the `bimix` command does (cli.fast_compile_settings)

import numpy as np
import pandas as pd

import bimix_bayes
from bimix_bayes.bayes.correlated_posterior import effect_factors
from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.bayes.spec import load_spec
from bimix_bayes.data.embedded import load_default
from bimix_bayes.data.labels import ALL_DOMAINS
from bimix_bayes.data.public import find_datasets, load_slimpajama
from bimix_bayes.data.table import DataWarning, MixtureData
from bimix_bayes.decision.constraints import MixtureConstraints
from bimix_bayes.decision.next_run import UPDATES, propose_next_runs, random_candidates
from bimix_bayes.decision.problem import prepare
from bimix_bayes.decision.rank import rank
from bimix_bayes.decision.surface import LossSurface, weighted_loss
from bimix_bayes.leastsq.fit import BiMixLeastSquares

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "reports" / "next_run_regret.md"
SPEC = "bimix_cross"
FULL_SAMPLER = {"chains": 2, "draws": 300, "tune": 300, "progress_bar": "never"}
QUICK_SAMPLER = {"chains": 2, "draws": 150, "tune": 150, "progress_bar": "never"}
TRUTH_SAMPLER = {"chains": 2, "draws": 500, "tune": 500, "progress_bar": "never"}
ENTROPY_ORDER = ("entropy_ce", "entropy_se", "entropy_je", "entropy_vne")  # CE: paper's best
MIN_SHARE = 0.02
MODEL_STRATEGIES = ("random", "space-filling", "entropy", "bimix next")
BASELINES = ("random + LS", "random + best seen")


# ------------------------------------------------------------------------------ problems
@dataclass
class Problem:
    """A pool of trainable mixtures, their true objectives, and their loss curves.

    ``data`` holds every pool run's observations (real or simulated); training a mixture is
    taking its run from it. ``truth`` is indexed like ``data.mixtures``.
    """

    name: str
    data: MixtureData
    truth: pd.Series
    target: float
    entropy: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def pool(self) -> pd.DataFrame:
        """The pool mixtures (one row per run, one column per training domain)."""
        return self.data.mixtures

    def regret(self, mixture: str) -> float:
        """True objective of ``mixture`` minus the pool's best (nats)."""
        return float(self.truth[mixture] - self.truth.min())


def last_checkpoint_objective(data: MixtureData) -> pd.Series:
    """Per run, the mean over domains of the observed loss at its last checkpoint."""
    obs = data.observations
    last = obs[obs["step"] == obs.groupby("run")["step"].transform("max")]
    return last.groupby("run")["loss"].mean().reindex(data.mixtures.index)


def replay_problem(data: MixtureData) -> Problem:
    """The real runs as the pool, each worth its observed objective."""
    return Problem(
        name="replay, SlimPajama 122M",
        data=data,
        truth=last_checkpoint_objective(data),
        target=float(data.observations["step"].max()),
        note="truth = the run's observed mean loss over the 7 domains at 2e10 tokens",
    )


def _flat(posterior, name: str) -> np.ndarray:
    """``(draws, domain)`` of a posterior variable, chains stacked."""
    a = posterior[name].transpose("chain", "draw", "domain").to_numpy()
    return a.reshape(-1, a.shape[-1])


def _one_draw(surface: LossSurface, d: int) -> LossSurface:
    """The surface of posterior draw ``d`` alone."""
    return replace(
        surface,
        log_k=surface.log_k[[d]],
        alpha=surface.alpha[[d]],
        own=None if surface.own is None else surface.own[[d]],
        cross=None if surface.cross is None else surface.cross[[d]],
    )


def simulate_pool(
    truth_fit, data: MixtureData, pool: pd.DataFrame, draw: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.Series]:
    """Loss curves of every pool mixture under one posterior draw, and their true objectives.

    Log loss at checkpoint ``s`` = the law's log loss under the draw + the run's offsets
    ``L_u z`` (correlated across domains) + checkpoint noise ``sigma * e``.
    """
    post = truth_fit.posterior
    steps = np.sort(data.observations["step"].unique())
    with warnings.catch_warnings():  # the truth fit's diagnostics are reported once, apart
        warnings.simplefilter("ignore")
        _, surface, _, w = prepare(truth_fit, float(steps[-1]), None, None)
    shares = pool[list(surface.columns)].to_numpy()
    truth = weighted_loss(_one_draw(surface, draw), w, shares)[0]
    l_u, _ = effect_factors(post)
    n_dom = l_u.shape[-1]
    chol = l_u.reshape(-1, n_dom, n_dom)[draw]
    sigma = _flat(post, "sigma")[draw]
    offsets = rng.standard_normal((len(pool), n_dom)) @ chol.T  # (runs, domains)
    domains = [str(d) for d in post["domain"].to_numpy()]
    frames = []
    for s in steps:
        mu = _one_draw(LossSurface.from_idata(truth_fit, float(s)), draw).log_losses(shares)[0]
        log_loss = mu + offsets + sigma * rng.standard_normal(mu.shape)
        frames.append(
            pd.DataFrame(
                {
                    "run": np.repeat(pool.index.to_numpy(), n_dom),
                    "step": float(s),
                    "domain": np.tile(domains, len(pool)),
                    "loss": np.exp(log_loss).ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True), pd.Series(truth, index=pool.index)


def simulated_problem(
    name: str,
    truth_fit,
    data: MixtureData,
    n_pool: int,
    rng: np.random.Generator,
    entropy: pd.DataFrame | None = None,
    truth_note: str = "",
) -> Problem:
    """A pool of random mixtures (plus ``entropy`` mixtures) simulated under one random
    posterior draw of ``truth_fit``."""
    train = list(data.training_domains)
    bounds = MixtureConstraints().bounds(train)
    shares = random_candidates(train, bounds, n_pool, rng, min_share=MIN_SHARE)
    pool = pd.DataFrame(shares, columns=train, index=[f"p{i:03d}" for i in range(n_pool)])
    if entropy is not None:
        pool = pd.concat([pool, entropy[train]])
    pool.index.name = "run"
    n_draws = truth_fit.posterior.sizes["chain"] * truth_fit.posterior.sizes["draw"]
    draw = int(rng.integers(n_draws))
    obs, truth = simulate_pool(truth_fit, data, pool, draw, rng)
    sim = MixtureData.from_frames(pool, obs, volume=data.volume, source=f"simulated ({name})")
    return Problem(
        name=name,
        data=sim,
        truth=truth,
        target=float(obs["step"].max()),
        entropy=[] if entropy is None else list(entropy.index),
        note=f"truth = posterior draw {draw} of the truth fit ({truth_note})",
    )


# ------------------------------------------------------------------------------ fitting
@dataclass
class FitRecord:
    """What one fit cost and how well it sampled."""

    seconds: float
    max_rhat: float
    divergences: int
    passed: bool


class Fitter:
    """Fits the Bayesian model (packaged spec ``bimix_cross``, reduced sampler) on some runs."""

    def __init__(self, sampler: dict[str, Any]) -> None:
        spec = dict(load_spec(SPEC))
        spec["sampler"] = {**spec["sampler"], **sampler}
        self.spec = spec
        self.sampler = spec["sampler"]
        self.records: list[FitRecord] = []

    def fit(self, data: MixtureData, runs: Sequence[str], seed: int):
        """The posterior of ``runs`` (all their checkpoints)."""
        model = BiMixModel(self.spec)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = model.fit(data.subset(runs=list(runs)), seed=seed, progress_bar=False)
        d = model.diagnostics_
        self.records.append(
            FitRecord(time.perf_counter() - t0, float(d.max_rhat), int(d.divergences), d.passed)
        )
        return idata

    @property
    def last(self) -> str:
        """The last fit in words."""
        r = self.records[-1]
        return f"fit {r.seconds:.0f} s, r-hat {r.max_rhat:.3f}, {r.divergences} div."


def recommend(idata, problem: Problem) -> str:
    """The pool mixture with the lowest posterior expected objective at the target step."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = rank(idata, problem.pool, problem.target)
    return str(table["mixture"].iloc[0])


def least_squares_recommend(problem: Problem, runs: Sequence[str]) -> str:
    """The pool mixture with the lowest mean loss predicted by the paper's least squares."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = BiMixLeastSquares(n_bootstrap=0).fit(problem.data.subset(runs=list(runs)))
        pred = fit.predict(problem.pool, [problem.target], average=True)
    mean = pred[pred["domain"] == ALL_DOMAINS].set_index("mixture")["loss"]
    return str(mean.idxmin())


# ------------------------------------------------------------------------------ strategies
def random_order(problem: Problem, start: Sequence[str], rng: np.random.Generator) -> list[str]:
    """The start runs, then the rest of the pool in a random order."""
    rest = [r for r in problem.pool.index if r not in set(start)]
    return list(start) + [rest[i] for i in rng.permutation(len(rest))]


def space_filling_order(problem: Problem, start: Sequence[str], n_max: int) -> list[str]:
    """The start runs, then greedily the pool run farthest (sqrt-share distance) from all
    runs chosen so far (maximin)."""
    x = np.sqrt(problem.pool.to_numpy())
    names = list(problem.pool.index)
    chosen = [names.index(r) for r in start]
    dist = np.min(np.linalg.norm(x[:, None] - x[chosen][None], axis=-1), axis=1)
    while len(chosen) < min(n_max, len(names)):
        dist[chosen] = -np.inf
        pick = int(np.argmax(dist))
        chosen.append(pick)
        dist = np.minimum(dist, np.linalg.norm(x - x[pick], axis=1))
    return [names[i] for i in chosen]


def entropy_order(problem: Problem, random: Sequence[str], n_start: int) -> list[str]:
    """The start runs, the entropy-proxy mixtures (CE first), then the random order."""
    proxies = [e for e in ENTROPY_ORDER if e in problem.entropy]
    head = list(random[:n_start]) + proxies
    return head + [r for r in random[n_start:] if r not in set(proxies)]


# ------------------------------------------------------------------------------ one repeat
@dataclass
class Settings:
    """How a run of the benchmark is sized."""

    grid: tuple[int, ...]
    max_batch: int
    n_fantasies: int | None
    update: str
    seed: int


def _row(
    problem: Problem, repeat: int, strategy: str, mixture: str, runs: Sequence[str], n0: int
) -> dict[str, Any]:
    """One result: the recommendation after training ``runs`` (the first ``n0`` shared), its
    regret, and the mean regret of the runs trained after the start (what training cost)."""
    added = [problem.regret(r) for r in runs[n0:]]
    return {
        "problem": problem.name,
        "repeat": repeat,
        "strategy": strategy,
        "n": len(runs),
        "mixture": mixture,
        "regret": problem.regret(mixture),
        "trained_regret": float(np.mean(added)) if added else np.nan,
    }


def passive_rows(
    problem: Problem,
    strategy: str,
    order: Sequence[str],
    first,
    fitter: Fitter,
    settings: Settings,
    repeat: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Fit the first ``n`` runs of a fixed order at every grid point; recommend; score."""
    n0 = settings.grid[0]
    rows = [_row(problem, repeat, strategy, recommend(first, problem), order[:n0], n0)]
    for n in settings.grid[1:]:
        idata = fitter.fit(problem.data, order[:n], seed=settings.seed + n)
        rows.append(_row(problem, repeat, strategy, recommend(idata, problem), order[:n], n0))
        log(f"{strategy} n={n}: {fitter.last}; regret {rows[-1]['regret']:.4f}")
    return rows


def next_rows(
    problem: Problem,
    start: Sequence[str],
    first,
    fitter: Fitter,
    settings: Settings,
    repeat: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """`bimix next` in batches up to each grid point, refitting after every batch."""
    chosen, idata = list(start), first
    n0 = settings.grid[0]
    rows = [_row(problem, repeat, "bimix next", recommend(first, problem), chosen, n0)]
    for n in settings.grid[1:]:
        while len(chosen) < n:
            k = min(settings.max_batch, n - len(chosen))
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                plan = propose_next_runs(
                    idata,
                    problem.target,
                    batch=k,
                    candidates=problem.pool.drop(index=chosen),
                    n_fantasies=settings.n_fantasies,
                    update=settings.update,
                    seed=settings.seed + len(chosen),
                )
            chosen += [str(m) for m in plan.proposals.index]
            last = plan.proposals.iloc[-1]
            ess = plan.proposals["ess"].min()
            log(
                f"bimix next: proposed {k} at n={len(chosen) - k} in "
                f"{time.perf_counter() - t0:.0f} s (value {last['value']:.2e} of "
                f"{plan.value_of_stopping:.2e} nats, changes the choice in "
                f"{100 * last['p_change']:.0f} % of fantasies"
                + (f", ESS {ess:.0f})" if np.isfinite(ess) else ")")
            )
            idata = fitter.fit(problem.data, chosen, seed=settings.seed + len(chosen))
        rows.append(_row(problem, repeat, "bimix next", recommend(idata, problem), chosen, n0))
        log(f"bimix next n={n}: {fitter.last}; regret {rows[-1]['regret']:.4f}")
    return rows


def baseline_rows(
    problem: Problem, order: Sequence[str], settings: Settings, repeat: int
) -> list[dict[str, Any]]:
    """Least squares and best-seen recommendations on the random order."""
    rows, n0 = [], settings.grid[0]
    for n in settings.grid:
        runs = list(order[:n])
        ls = least_squares_recommend(problem, runs)
        rows.append(_row(problem, repeat, "random + LS", ls, runs, n0))
        best_seen = str(last_checkpoint_objective(problem.data.subset(runs=runs)).idxmin())
        rows.append(_row(problem, repeat, "random + best seen", best_seen, runs, n0))
    return rows


def run_repeat(
    problem: Problem, fitter: Fitter, settings: Settings, repeat: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Every strategy on one problem from one shared start."""
    rng = np.random.default_rng([settings.seed, repeat])
    n0, n_max = settings.grid[0], settings.grid[-1]
    start = [str(r) for r in rng.choice(problem.pool.index.to_numpy(), n0, replace=False)]
    first = fitter.fit(problem.data, start, seed=settings.seed)
    log(f"start n={n0}: {fitter.last}")
    random = random_order(problem, start, rng)
    orders = {"random": random, "space-filling": space_filling_order(problem, start, n_max)}
    if problem.entropy:
        orders["entropy"] = entropy_order(problem, random, n0)
    rows = baseline_rows(problem, random, settings, repeat)
    for strategy, order in orders.items():
        rows += passive_rows(problem, strategy, order, first, fitter, settings, repeat, log)
    rows += next_rows(problem, start, first, fitter, settings, repeat, log)
    return rows


def all_runs_reference(problem: Problem, fitter: Fitter, seed: int) -> str:
    """The regret of the recommendation from a fit of every pool run: the floor the model
    reaches on this pool (a report line)."""
    idata = fitter.fit(problem.data, list(problem.pool.index), seed=seed)
    mixture = recommend(idata, problem)
    return (
        f"Reference: the same model fitted on all {len(problem.pool)} pool runs recommends "
        f"{mixture}, regret {1000 * problem.regret(mixture):.1f} millinats ({fitter.last}): "
        "no strategy can be expected to do better than about this with the model."
    )


# ------------------------------------------------------------------------------ report
def _cell(values: pd.Series) -> str:
    """Median [interquartile range] of regrets, in millinats."""
    q = 1000 * values.quantile([0.25, 0.5, 0.75])
    return f"{q[0.5]:.1f} [{q[0.25]:.1f}, {q[0.75]:.1f}]"


def regret_table(rows: pd.DataFrame) -> str:
    """Markdown: strategies x n, median [IQR] of regret over repeats (millinats)."""
    order = [s for s in (*MODEL_STRATEGIES, *BASELINES) if s in set(rows["strategy"])]
    grid = sorted(rows["n"].unique())
    lines = [
        "| strategy | " + " | ".join(f"n = {n}" for n in grid) + " |",
        "|---|" + "---:|" * len(grid),
    ]
    for s in order:
        sub = rows[rows["strategy"] == s]
        cells = [_cell(sub.loc[sub["n"] == n, "regret"]) for n in grid]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    means = []
    for s in order:
        sub = rows[rows["strategy"] == s].groupby("n")["regret"]
        m, sd = 1000 * sub.mean(), 1000 * sub.std()
        means.append(
            f"| {s} | " + " | ".join(f"{m[n]:.1f} ± {sd.get(n, np.nan):.1f}" for n in grid) + " |"
        )
    return "\n".join(
        [
            *lines,
            "",
            "Mean ± sd over repeats (millinats):",
            "",
            lines[0],
            lines[1],
            *means,
        ]
    )


def _needed(curve: pd.Series, target: float) -> int | None:
    """The fewest runs (grid points) at which ``curve`` (regret by n) is <= ``target``."""
    reach = [int(n) for n, v in curve.items() if v <= target + 1e-12]
    return min(reach) if reach else None


def criterion(rows: pd.DataFrame) -> tuple[str, list[str]]:
    """The issue's criterion per ``n``, on medians and on means over repeats: the fewest runs
    with which `bimix next`'s regret is at most random's at ``n``, and whether that is <= n/2
    (a markdown table; the verdicts on medians)."""
    grid = sorted(rows["n"].unique())
    stats = {k: rows.groupby(["strategy", "n"])["regret"].agg(k) for k in ("median", "mean")}
    lines = [
        "| n | random at n | random at <= n/2 | bimix next at <= n/2 | runs `bimix next` needed "
        "to match random at n | <= n/2? |",
        "|---:|---:|---:|---:|---:|:---:|",
    ]
    verdicts = []
    for n in grid[1:]:
        half = max([m for m in grid if m <= n / 2], default=None)
        cells, needed_cells, ok_cells = [[], [], []], [], []
        for k in ("median", "mean"):
            st = stats[k]
            target = st[("random", n)]
            cells[0].append(f"{1000 * target:.1f}")
            for c, name in ((1, "random"), (2, "bimix next")):
                cells[c].append(f"{1000 * st[(name, half)]:.1f}" if half else "n/a")
            needed = _needed(st["bimix next"], target)
            ok = needed is not None and needed <= n / 2
            needed_cells.append(str(needed) if needed is not None else f"> {grid[-1]}")
            ok_cells.append("yes" if ok else "no")
            if k == "median":
                verdicts.append("yes" if ok else "no")
        half_txt = f" (n = {half})" if half else ""
        lines.append(
            f"| {n} | {' / '.join(cells[0])} | {' / '.join(cells[1])}{half_txt} | "
            f"{' / '.join(cells[2])} | {' / '.join(needed_cells)} | {' / '.join(ok_cells)} |"
        )
    return "\n".join(lines), verdicts


def trained_table(rows: pd.DataFrame) -> str:
    """Markdown: per strategy, the mean true regret of the runs it trained after the start
    (median over repeats, at the largest n): how far from the best its runs were."""
    last = rows[rows["n"] == rows["n"].max()]
    order = [s for s in MODEL_STRATEGIES if s in set(last["strategy"])]
    cells = [
        f"{1000 * last.loc[last['strategy'] == s, 'trained_regret'].median():.1f}" for s in order
    ]
    return "\n".join(
        [
            "| " + " | ".join(order) + " |",
            "|" + "---:|" * len(order),
            "| " + " | ".join(cells) + " |",
        ]
    )


def fit_summary(records: Sequence[FitRecord]) -> str:
    """One line: how many fits, their time and their diagnostics."""
    if not records:
        return "no fit"
    secs = np.array([r.seconds for r in records])
    rhat = np.array([r.max_rhat for r in records])
    div = np.array([r.divergences for r in records])
    return (
        f"{len(records)} fits, median {np.median(secs):.0f} s (total {secs.sum() / 60:.1f} min); "
        f"max r-hat median {np.median(rhat):.3f}, worst {rhat.max():.3f}; r-hat > 1.05 in "
        f"{int((rhat > 1.05).sum())}; divergences in {int((div > 0).sum())} fits "
        f"({int(div.sum())} in all); passed every diagnostic (r-hat 1.01, ESS 400, 0 div.): "
        f"{sum(r.passed for r in records)}"
    )


@dataclass
class Section:
    """A problem's results so far."""

    problem: Problem
    rows: list[dict[str, Any]] = field(default_factory=list)
    records: list[FitRecord] = field(default_factory=list)
    repeats: int = 0
    seconds: float = 0.0
    extra: list[str] = field(default_factory=list)


def section_text(sec: Section) -> list[str]:
    """The markdown of one problem."""
    p = sec.problem
    out = [
        f"## {p.name}",
        "",
        f"{sec.repeats} repeat(s), {sec.seconds / 60:.1f} min. Pool: {len(p.pool)} mixtures, "
        f"{p.data.observations['step'].nunique()} checkpoints each, target {p.target:g} "
        f"{p.data.volume}; {p.note}. Pool objective: best {p.truth.min():.4f}, median "
        f"{p.truth.median():.4f}, sd {p.truth.std():.4f} nats (of the last repeat's pool).",
        "",
    ]
    if not sec.rows:
        return [*out, "(no repeat finished)", ""]
    rows = pd.DataFrame(sec.rows)
    table, _ = criterion(rows)
    out += [
        "Regret of the recommendation (millinats = 1e-3 nats of the mean loss over domains): "
        "median [25 %, 75 %] over repeats:",
        "",
        regret_table(rows),
        "",
        "The issue's criterion (each cell: median / mean over repeats, millinats; `bimix "
        "next` at the largest grid point <= n/2):",
        "",
        table,
        "",
        "Mean true regret of the runs each strategy trained after the start (millinats; "
        "median over repeats, at the largest n):",
        "",
        trained_table(rows),
        "",
        f"Fits: {fit_summary(sec.records)}.",
        "",
        *sec.extra,
    ]
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report(sections: Sequence[Section], args: argparse.Namespace, wall: float, done: bool) -> str:
    """The whole markdown report."""
    status = "finished" if done else "IN PROGRESS (rewritten after every repeat)"
    cmd = "python benchmarks/next_run_regret.py " + " ".join(sys.argv[1:])
    sampler = QUICK_SAMPLER if args.quick else FULL_SAMPLER
    head = [
        "# Which proxy run to train next: regret against the number of runs (issue 18)",
        "",
        f"Written by `benchmarks/next_run_regret.py` ({status}); command `{cmd.strip()}`; "
        f"wall time {wall / 60:.1f} min; bimix-bayes {bimix_bayes.__version__} "
        f"({Path(bimix_bayes.__file__).parent}), Python {platform.python_version()}, "
        f"{os.cpu_count()} cores.",
        "",
        "Protocol (the module docstring has it in full): every strategy starts from the same "
        f"{args.grid[0]} random pool runs per repeat and adds runs from the rest of the pool; at "
        f"n in {list(args.grid)} the Bayesian model (packaged spec `{SPEC}`, sampler "
        f"{sampler['chains']} chains x {sampler['draws']} draws + {sampler['tune']} tuning) is "
        "fitted on the chosen runs and recommends the pool mixture of lowest posterior expected "
        "objective (`rank`); regret = its true objective minus the pool's best. `bimix next` "
        f"proposes batches up to the next grid point (at most {args.max_batch} runs per refit; "
        f"{args.update} update of every posterior draw, "
        f"{args.fantasies or 'the default number of'} fantasies) with the remaining pool as "
        "candidates. `random + LS`: the paper's least squares on the random order; `random + "
        "best seen`: the trained run with the lowest observed objective (no model). Entropy "
        "proxies need the domains' text: only the embedded study has them (its four entropy "
        "mixtures trained first, CE, SE, JE, VNE, then the random order); SlimPajama ships no "
        "text, so they are left out there.",
        "",
    ]
    body = [line for sec in sections for line in section_text(sec)]
    return "\n".join([*head, *body, ""])


# ------------------------------------------------------------------------------ main
def simulator(
    name: str, data: MixtureData, args: argparse.Namespace, log: Callable[[str], None]
) -> Callable[[int], Problem]:
    """Fit the truth posterior on all of ``data``; return the problem of each repeat (its own
    posterior draw and pool)."""
    truth_fitter = Fitter(QUICK_SAMPLER if args.quick else TRUTH_SAMPLER)
    truth_fit = truth_fitter.fit(data, list(data.mixtures.index), seed=1)
    s = truth_fitter.sampler
    truth_note = (
        f"`{SPEC}` fitted on all {data.n_runs} runs, {s['chains']} chains x {s['draws']} "
        f"draws: {truth_fitter.last}"
    )
    log(f"{name}: truth {truth_note}")
    entropy = None
    if name == "sim-embedded":
        entropy = data.mixtures.loc[[e for e in ENTROPY_ORDER if e in data.mixtures.index]]
    label = {
        "sim-slimpajama": "simulated, SlimPajama 122M posterior",
        "sim-embedded": "simulated, embedded-study posterior",
    }[name]

    def factory(r: int) -> Problem:
        rng = np.random.default_rng([args.seed, 1000 + r])
        return simulated_problem(label, truth_fit, data, args.pool, rng, entropy, truth_note)

    return factory


def make_problems(args: argparse.Namespace, log: Callable[[str], None]):
    """Yield ``(name, repeats, factory)``; ``factory(repeat)`` builds the problem of a repeat.
    Lazily: a simulator's truth fit runs when its turn comes."""
    root = find_datasets()
    sp = load_slimpajama(root, "122M") if root is not None else None
    if sp is None and any(p in ("replay", "sim-slimpajama") for p in args.problems):
        log(
            "public datasets not found (../shared/datasets or $BIMIX_SHARED_DATASETS): "
            "the SlimPajama problems are skipped"
        )
    for name in args.problems:
        if name == "replay" and sp is not None:
            problem = replay_problem(sp)
            yield name, args.repeats, (lambda r, p=problem: p)
        elif name == "sim-slimpajama" and sp is not None:
            yield name, args.sim_repeats, simulator(name, sp, args, log)
        elif name == "sim-embedded":
            yield name, args.sim_repeats, simulator(name, load_default(), args, log)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; --quick shrinks everything to a smoke run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small smoke version (a few minutes)")
    p.add_argument("--repeats", type=int, default=None, help="replay repeats (default 5; quick 1)")
    p.add_argument(
        "--sim-repeats", type=int, default=None, help="repeats per simulator (default 5; quick 1)"
    )
    p.add_argument(
        "--problems",
        nargs="+",
        default=["replay", "sim-slimpajama", "sim-embedded"],
        choices=["replay", "sim-slimpajama", "sim-embedded"],
    )
    p.add_argument("--pool", type=int, default=None, help="simulated pool size (200; quick 40)")
    p.add_argument("--max-batch", type=int, default=6, help="most runs `bimix next` adds per refit")
    p.add_argument(
        "--fantasies",
        type=int,
        default=None,
        help="fantasies per candidate (default: the update's)",
    )
    p.add_argument(
        "--update", choices=UPDATES, default="reweight", help="how `bimix next` updates the draws"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--rows", type=Path, help="also write every result row to this CSV")
    args = p.parse_args(argv)
    args.grid = (6, 9) if args.quick else (6, 9, 12, 18, 24)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    args.sim_repeats = (
        args.sim_repeats if args.sim_repeats is not None else (1 if args.quick else 5)
    )
    args.pool = args.pool if args.pool is not None else (40 if args.quick else 200)
    return args


class Runner:
    """Runs the problems one repeat at a time and rewrites the report after each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t_start = time.perf_counter()
        self.settings = Settings(args.grid, args.max_batch, args.fantasies, args.update, args.seed)
        self.fitter = Fitter(QUICK_SAMPLER if args.quick else FULL_SAMPLER)
        self.sections: list[Section] = []

    def log(self, msg: str) -> None:
        """A stage line with the minutes elapsed."""
        print(f"[{(time.perf_counter() - self.t_start) / 60:5.1f} min] {msg}", flush=True)

    def write(self, done: bool) -> None:
        """Rewrite the report."""
        wall = time.perf_counter() - self.t_start
        write_atomic(self.args.out, report(self.sections, self.args, wall, done))
        if self.args.rows is not None:
            rows = pd.DataFrame([row for sec in self.sections for row in sec.rows])
            write_atomic(self.args.rows, rows.to_csv(index=False))

    def problem(self, name: str, repeats: int, factory: Callable[[int], Problem]) -> None:
        """Every repeat of one problem."""
        sec: Section | None = None
        for r in range(repeats):
            problem = factory(r)
            if sec is None:
                sec = Section(problem)
                self.sections.append(sec)
            sec.problem = problem
            t0, n_fits = time.perf_counter(), len(self.fitter.records)
            prefix = f"{name} {r + 1}/{repeats}: "
            sec.rows += run_repeat(
                problem, self.fitter, self.settings, r, lambda m, p=prefix: self.log(p + m)
            )
            sec.records += self.fitter.records[n_fits:]
            sec.repeats += 1
            sec.seconds += time.perf_counter() - t0
            self.write(done=False)
            self.log(f"{name}: repeat {r + 1} done; report rewritten ({self.args.out})")
        if sec is not None and name == "replay" and not self.args.quick:
            sec.extra.append(all_runs_reference(sec.problem, self.fitter, self.args.seed))
            self.log(sec.extra[-1])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    warnings.simplefilter("ignore", DataWarning)
    runner = Runner(args)
    for name, repeats, factory in make_problems(args, runner.log):
        runner.problem(name, repeats, factory)
    runner.write(done=True)
    minutes = (time.perf_counter() - runner.t_start) / 60
    runner.log(f"done in {minutes:.1f} min; report: {args.out}")


if __name__ == "__main__":
    main()
