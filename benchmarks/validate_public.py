"""Backtests of the law's forecasts on public loss measurements; writes reports/validation.md.

Runs :func:`bimix_bayes.evaluation.backtest.backtest` (hierarchical Bayesian model and the
paper's least squares) on the public datasets found by :func:`bimix_bayes.data.public.find_datasets`
(``../shared/datasets`` or ``$BIMIX_SHARED_DATASETS``; skipped with a message when absent):

* SlimPajama 7 domains (Shukor et al.) at 122M, 310M, 680M and 1.235B parameters:
  ``last-checkpoint`` and ``horizon:0.5``; at 122M also ``holdout-mixtures:4`` and
  ``holdout-mixtures:20`` (random splits, reduced draws);
* Ye et al.'s 2Mix (70M, 160M), 3Mix (70M, 160M) and 5Mix (70M, 160M, 410M; group-aggregated
  losses): ``last-checkpoint`` and ``horizon:0.5``; 5Mix 70M also ``holdout-mixtures:13``;
* RegMix 1M (768 mixtures, one final loss each): ``holdout-mixtures:512`` at its fixed budget.

then a calibration study on SlimPajama 122M (residual structure; the opt-in model options beside
the default), and writes the Markdown report atomically.

    python benchmarks/validate_public.py                 # the full run (about 15-25 min)
    python benchmarks/validate_public.py --smoke --out /tmp/validation-smoke.md   # CI: ~20 s
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("NUMBA_OPT", "0")  # as the `bimix` command does (cli.fast_compile_settings)

import numpy as np
import pandas as pd

from bimix_bayes.data.files import atomic_write_text
from bimix_bayes.data.public import find_datasets, load_slimpajama
from bimix_bayes.data.public_loaders import load_mixinglaws, load_regmix
from bimix_bayes.data.table import MixtureData
from bimix_bayes.evaluation.backtest import ALL_POINTS, BacktestResult, backtest
from bimix_bayes.leastsq.fit import ALL_DOMAINS, BiMixLeastSquares

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "reports" / "validation.md"
#: Sampler settings of the many holdout-mixtures fits (the other protocols use the default spec).
HOLDOUT_SPEC = {"sampler": {"chains": 2, "draws": 500, "tune": 500}}
SMOKE_SPEC = {"sampler": {"chains": 2, "draws": 200, "tune": 200}}


@dataclass
class Job:
    """One backtest: a dataset, a protocol and how to run it."""

    dataset: str
    load: Callable[[Path], MixtureData]
    protocol: str
    spec: dict | None = None
    splits: int = 1
    note: str = ""


def jobs(full: bool) -> list[Job]:
    """The backtests of the full run (or of ``--smoke``)."""
    if not full:
        return [
            Job(
                "SlimPajama 122M (first 12 runs)",
                lambda root: _first_runs(load_slimpajama(root, "122M"), 12),
                "last-checkpoint",
                SMOKE_SPEC,
            )
        ]
    out = []
    for size in ("122M", "310M", "680M", "1.235B"):
        label = f"SlimPajama {size}"
        load = _slimpajama(size)
        out.append(Job(label, load, "last-checkpoint"))
        out.append(Job(label, load, "horizon:0.5"))
        if size == "122M":
            out.append(Job(label, load, "holdout-mixtures:4", HOLDOUT_SPEC, 10))
        if size in ("122M", "310M", "680M"):  # the groups with >= 40 runs
            out.append(Job(label, load, "holdout-mixtures:20", HOLDOUT_SPEC, 5))
    for experiment, sizes in (("2Mix", ("70M", "160M")), ("3Mix", ("70M", "160M"))):
        for size in sizes:
            load = _mixinglaws(experiment, size)
            out.append(Job(f"Ye {experiment} {size}", load, "last-checkpoint"))
            out.append(Job(f"Ye {experiment} {size}", load, "horizon:0.5"))
    for size in ("70M", "160M", "410M"):
        load = _mixinglaws("5Mix", size)
        out.append(Job(f"Ye 5Mix {size}", load, "last-checkpoint"))
        out.append(Job(f"Ye 5Mix {size}", load, "horizon:0.5"))
        if size == "70M":
            out.append(Job(f"Ye 5Mix {size}", load, "holdout-mixtures:13", HOLDOUT_SPEC, 5))
    out.append(
        Job(
            "RegMix 1M",
            load_regmix,
            "holdout-mixtures:512",
            None,
            5,
            "RegMix: the 512 training and 256 test mixtures of the 1M-parameter models pooled "
            "(768 runs, one final loss each, 1B tokens); each split fits 512 random runs and "
            "predicts the other 256. A domain is kept when at least 10 runs give it a share "
            "(all 13 evaluation domains are).",
        )
    )
    return out


def _slimpajama(size: str) -> Callable[[Path], MixtureData]:
    # 310M has 16 missing loss cells: those observations are dropped (and counted in the notes).
    return lambda root: load_slimpajama(root, size, missing_policy="drop")


def _mixinglaws(experiment: str, size: str) -> Callable[[Path], MixtureData]:
    return lambda root: load_mixinglaws(root, experiment, size)


def _first_runs(data: MixtureData, n: int) -> MixtureData:
    return data.subset(runs=list(data.runs)[:n])


# ------------------------------------------------------------------------------ formatting
def _pct(v: float, digits: int = 2) -> str:
    return "-" if not np.isfinite(v) else f"{100 * v:.{digits}f} %"


def _num(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{v:.3f}"


def headline_table(result: BacktestResult) -> str:
    """Markdown: per method, the pooled row and the average-over-domains row."""
    rows = [
        "| method | over | points | MRE | max RE | R2 (log) | Spearman | cover 50 % | "
        "cover 90 % | width 90 % | log pred. density |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, domain), r in result.headline().iterrows():
        over = "all points" if domain == ALL_POINTS else "mean of domains"
        rows.append(
            f"| {'Bayes' if method == 'bayes' else 'LS'} | {over} | {r['n']:.0f} | "
            f"{_pct(r['mre'])} | {_pct(r['max_re'])} | {_num(r['r2_log'])} | "
            f"{_num(r['spearman'])} | {_pct(r['cover_50'], 1)} | {_pct(r['cover_90'], 1)} | "
            f"{_pct(r['width_90'], 1)} | {_num(r['lpd'])} |"
        )
    return "\n".join(rows)


def _value(result: BacktestResult, method: str, column: str, domain: str = ALL_POINTS) -> float:
    return float(result.metrics.loc[(method, domain), column])


# ------------------------------------------------------------------------------ calibration
def residual_study(data: MixtureData) -> str:
    """Structure of the least-squares residuals on all checkpoints (log loss, percent)."""
    fit = BiMixLeastSquares(n_bootstrap=0).fit(data)
    steps = np.sort(data.observations["step"].unique())
    pred = fit.predict(data.mixtures, steps, average=False)
    j = data.observations.merge(
        pred, left_on=["run", "step", "domain"], right_on=["mixture", "step", "domain"]
    )
    j["e"] = 100 * np.log(j["loss_x"] / j["loss_y"])
    j["within"] = j["e"] - j.groupby(["run", "domain"])["e"].transform("mean")
    shared = j.groupby(["domain", "step"])["within"].transform("mean")
    j["rest"] = j["within"] - shared
    last = j[j["step"] == steps.max()]
    wide = j.pivot_table(index=["run", "step"], columns="domain", values="rest")
    corr = wide.corr().to_numpy()
    off = corr[~np.eye(len(corr), dtype=bool)]
    rows = [
        "| domain | sd of residual | sd within a run | sd after the common step pattern | "
        "common pattern at the last step | corr(last-step residual, share) |",
        "|---|---|---|---|---|---|",
    ]
    for domain in data.domains:
        part = j[j["domain"] == domain]
        lp = last[last["domain"] == domain]
        share = data.mixtures.loc[lp["run"], domain].to_numpy()
        rows.append(
            f"| {domain} | {part['e'].std():.2f} % | {part['within'].std():.2f} % | "
            f"{part['rest'].std():.2f} % | {lp['within'].mean():+.2f} % | "
            f"{np.corrcoef(lp['within'], share)[0, 1]:+.2f} |"
        )
    rows.append("")
    rows.append(
        f"Mean correlation across domains of the residuals left at one (run, checkpoint) "
        f"after removing run offsets and the common step pattern: **{off.mean():.2f}** "
        f"(range {off.min():.2f} to {off.max():.2f})."
    )
    return "\n".join(rows)


# ------------------------------------------------------------------------------ report
def _per_domain(result: BacktestResult) -> str:
    return result.to_markdown()


def write_report(
    out: Path,
    results: list[tuple[Job, BacktestResult | None, str]],
    command: str,
    seconds: float,
    calibration: str,
    full: bool,
) -> None:
    parts = [
        "# Validation of the law's forecasts on public data",
        "",
        f"Produced by `{command}` "
        f"({'full run' if full else 'SMOKE run: one small dataset, reduced draws'}) in "
        f"{seconds / 60:.1f} min on {platform.machine()} with {os.cpu_count()} cores (shared; "
        "timings are noisy). Rerun that command to regenerate this file; it is written "
        "atomically. The datasets are read from `../shared/datasets` (see its README for "
        "provenance and licences) and are not part of the project.",
        "",
        "## How to read it",
        "",
        "Each backtest fits on part of the data and scores forecasts of the rest "
        "(`bimix_bayes.evaluation.backtest`, `bimix backtest`):",
        "",
        "- `last-checkpoint`: fit all but each run's last checkpoint, predict it (BiMix Table 1);",
        "- `horizon:0.5`: fit the checkpoints up to half the last step, predict all later ones;",
        "- `holdout-mixtures:K`: fit K random runs, predict every checkpoint of the others as new "
        "mixtures (BiMix Table 2), over several seeded splits.",
        "",
        "**Bayes** = the hierarchical model (default spec `bimix_bayes/bayes/specs/bimix.toml`: "
        "4 chains x 1000 draws, 500 tuning; holdout-mixtures splits use 2 chains x 500 draws, "
        "500 tuning), "
        "point forecast = predictive median. **LS** = the paper's per-domain least squares; its "
        "intervals are the run bootstrap of the fitted law (200 resamples of whole runs) **plus** "
        "Normal residual noise on log loss with the domain's training RMSE (the bootstrap alone "
        "is the band of the curve and would not cover a new measurement). LS has no run offsets: "
        "it forecasts a run from its mixture alone, as in the paper.",
        "",
        "Columns: MRE / max RE = mean / max of |predicted/observed - 1|; R2 (log) on log loss "
        "(for 'all points' the mean of the per-domain R2, so that differences between domains "
        "do not count as explained variance); Spearman = rank correlation of the held-out runs' "
        "losses at the last held-out step (mean over splits and domains); cover = share of "
        "held-out points inside the central interval; width = mean interval width relative to "
        "the forecast; log pred. density = mean log predictive density of a held-out loss "
        "(nats; Bayes only). 'mean of domains' scores the plain average loss over domains of "
        "each (run, step) where every domain is observed.",
        "",
        "Reference figures quoted from the papers (as summarised in `../shared/DESIGN.md` and "
        "the datasets README; not recomputed here): BiMix (Ge et al. 2024) reports a mean "
        "relative error **below 0.2 %** when extrapolating to the last checkpoint (its Table 1) "
        "and **R2 on log loss above 0.97** for unseen mixtures (its Table 2), on its own Pile / "
        "SlimPajama runs. Ye et al.'s own predictions of their RedPajama-trained runs "
        "(`RPJ.predictions.json`) have a mean absolute error of **0.0086 nats** (max 0.110).",
        "",
    ]
    parts += _honest_targets(results)
    parts += _targets(results)
    parts += ["## Results", ""]
    current = None
    for job, result, error in results:
        if job.dataset != current:
            current = job.dataset
            parts += [f"### {job.dataset}", ""]
        title = f"**{job.protocol}**"
        if result is None:
            parts += [f"{title}: not run: {error}", ""]
            continue
        extra = [f"{result.settings.get('splits', 1)} split(s)"]
        if "sampler" in result.settings and job.spec is not None:
            extra.append(f"Bayes sampler {result.settings['sampler']}")
        if result.settings.get("fixed_budget"):
            extra.append(
                "fixed budget: one step per run, so BiMix is log L = k - alpha log r; Bayes = "
                "conjugate Bayesian linear regression per domain (reference prior, Student-t "
                "predictive), LS = least squares with run bootstrap + residual noise"
            )
        secs = result.fits["seconds"].sum() if not result.fits.empty else float("nan")
        extra.append(f"{secs:.0f} s of fitting")
        parts += [f"{title} ({'; '.join(extra)}). Held-out: {result._held_counts()}.", ""]
        zero = [n for n in result.settings.get("data_notes", []) if "zero share" in n]
        if zero and job.protocol == _first_protocol(results, job.dataset):
            parts += [
                "Zero shares (BiMix is infinite at r = 0), policy `drop`: a domain's losses in "
                "runs that gave it no share are neither fitted nor scored; the other domains of "
                "those runs are. Loader notes: " + "; ".join(zero),
                "",
            ]
        parts += [headline_table(result), ""]
        for n in result.notes():
            parts += [f"> NOTE: {n}", ""]
        if job.note:
            parts += [job.note, ""]
    parts += ["## Per-domain tables, SlimPajama 122M", ""]
    for job, result, _ in results:
        if job.dataset == "SlimPajama 122M" and result is not None:
            parts += [f"**{job.protocol}**", "", _per_domain(result), ""]
    parts += [calibration, ""]
    atomic_write_text(out, "\n".join(parts) + "\n")


def _first_protocol(results, dataset: str) -> str | None:
    return next((job.protocol for job, r, _ in results if job.dataset == dataset and r), None)


def _find(results, dataset: str, protocol: str) -> BacktestResult | None:
    for job, result, _ in results:
        if job.dataset == dataset and job.protocol == protocol:
            return result
    return None


def _honest_targets(results) -> list[str]:
    """The targets of honest uncertainty: coverage of all points and of the mean of domains,
    fits that pass their diagnostics, decision calibration (Brier)."""
    lines = [
        "## Targets: honest uncertainty",
        "",
        "90 % coverage of the Bayesian intervals, wanted in [85 %, 95 %] for all points and for "
        "the mean of domains (least squares beside it):",
        "",
        "| dataset | protocol | all points Bayes | mean of domains Bayes | all points LS | "
        "mean of domains LS | in range (Bayes)? |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in ("122M", "310M", "680M", "1.235B"):
        for protocol in ("horizon:0.5", "holdout-mixtures:20"):
            res = _find(results, f"SlimPajama {size}", protocol)
            if res is None:
                continue
            b, bm = _value(res, "bayes", "cover_90"), _value(res, "bayes", "cover_90", ALL_DOMAINS)
            ls, lsm = _value(res, "ls", "cover_90"), _value(res, "ls", "cover_90", ALL_DOMAINS)
            ok = all(0.85 <= v <= 0.95 for v in (b, bm))
            lines.append(
                f"| SlimPajama {size} | {protocol} | {_pct(b, 1)} | {_pct(bm, 1)} | {_pct(ls, 1)} "
                f"| {_pct(lsm, 1)} | {'yes' if ok else '**no**'} |"
            )
    fits = [r.fits for _, r, _ in results if r is not None and "passed" in r.fits]
    if fits:
        table = pd.concat(fits)
        bayes = table[table["method"] == "bayes"]
        passed = bayes["passed"].astype(bool)
        retried = bayes.get("retried", pd.Series(False, index=bayes.index)).fillna(False)
        lines += [
            "",
            f"Bayesian fits passing their diagnostics: **{passed.mean():.0%}** "
            f"({int(passed.sum())} of {len(bayes)}; wanted >= 90 %), "
            f"{int(retried.astype(bool).sum())} of them after one retry with safer settings "
            "(target_accept 0.99, tune 1000).",
        ]
    ho = _find(results, "SlimPajama 122M", "holdout-mixtures:20")
    if ho is not None and not ho.pairs.empty:
        brier = ho.decision_calibration()["brier"]
        lines += [
            "",
            "Decision calibration, SlimPajama 122M holdout-mixtures:20 (pairs of held-out runs: "
            "the predicted probability that one ends below the other at the last checkpoint, on "
            "the mean loss over domains, scored against what happened): Brier score "
            f"Bayes **{brier.get('bayes', float('nan')):.3f}**, least squares (bootstrap) "
            f"**{brier.get('ls', float('nan')):.3f}** (lower is better; wanted: Bayes below LS).",
            "",
            "Reliability (the favourite's predicted chance against how often it won):",
            "",
            _markdown_table(ho.reliability().round(3).reset_index()),
        ]
    hz = _find(results, "SlimPajama 122M", "horizon:0.5")
    if hz is not None:
        lines += [
            "",
            f"MRE, SlimPajama 122M horizon:0.5: Bayes {_pct(_value(hz, 'bayes', 'mre'))} "
            "(0.58 % with the 0.2 model; wanted no worse).",
        ]
    return [*lines, ""]


def _markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _targets(results) -> list[str]:
    ds = "SlimPajama 122M"
    lines = ["## Targets (SlimPajama 122M)", ""]
    lc = _find(results, ds, "last-checkpoint")
    hz = _find(results, ds, "horizon:0.5")
    ho = _find(results, ds, "holdout-mixtures:4")
    if lc is None and hz is None and ho is None:
        return [*lines, "Not run (smoke run or dataset absent).", ""]
    lines += ["| target | Bayes | LS | met (Bayes)? |", "|---|---|---|---|"]
    why: list[str] = []
    if lc is not None:
        b, ls = _value(lc, "bayes", "mre"), _value(lc, "ls", "mre")
        gap = "yes" if b <= 0.0035 else f"**no**, by {100 * (b - 0.0035):.2f} points"
        lines.append(f"| last-checkpoint MRE <= 0.35 % | {_pct(b)} | {_pct(ls)} | {gap} |")
        pts = lc.points[(lc.points["method"] == "bayes") & (lc.points["domain"] != ALL_DOMAINS)]
        rest = pts[~pts["domain"].isin(["arxiv", "wikipedia"])]
        why.append(
            f"last-checkpoint: without arxiv and wikipedia the Bayesian MRE is "
            f"{_pct(float(np.mean(np.abs(rest['predicted'] / rest['observed'] - 1))))}; arxiv "
            "and stackexchange drop below the law at the very last checkpoint in every run (end "
            "of the schedule), wikipedia bends up in proportion to its share (see Findings)"
        )
    if hz is not None:
        b, ls = _value(hz, "bayes", "cover_90"), _value(hz, "ls", "cover_90")
        ok = 0.80 <= b <= 0.97
        gap = "yes" if ok else f"**no** ({_pct(b, 1)} outside 80-97 %)"
        lines.append(
            f"| horizon:0.5 90 % coverage in [80 %, 97 %] | {_pct(b, 1)} | {_pct(ls, 1)} | {gap} |"
        )
        b50 = _value(hz, "bayes", "cover_50")
        lines.append(
            f"| (horizon:0.5 50 % coverage, for reference) | {_pct(b50, 1)} | "
            f"{_pct(_value(hz, 'ls', 'cover_50'), 1)} | - |"
        )
        lines.append(
            f"| (horizon:0.5 MRE, for reference) | {_pct(_value(hz, 'bayes', 'mre'))} | "
            f"{_pct(_value(hz, 'ls', 'mre'))} | - |"
        )
    if ho is not None:
        b, ls = _value(ho, "bayes", "r2_log"), _value(ho, "ls", "r2_log")
        gap = "yes" if b >= 0.97 else f"**no**, by {b - 0.97:+.3f}"
        more = _find(results, ds, "holdout-mixtures:20")
        why.append(
            "holdout-mixtures:4: four runs give four shares per domain, too few to pin the "
            "exponent alpha, and the run offsets are as large as the mixture effect in several "
            "domains"
            + (
                f"; with 20 training runs R2 (log) is {_num(_value(more, 'bayes', 'r2_log'))}"
                if more is not None
                else ""
            )
        )
        lines.append(f"| holdout-mixtures:4 R2 (log) >= 0.97 | {_num(b)} | {_num(ls)} | {gap} |")
        lines.append(
            f"| (holdout-mixtures:4 Spearman, per domain / of the average) | "
            f"{_num(_value(ho, 'bayes', 'spearman'))} / "
            f"{_num(_value(ho, 'bayes', 'spearman', ALL_DOMAINS))} | "
            f"{_num(_value(ho, 'ls', 'spearman'))} / "
            f"{_num(_value(ho, 'ls', 'spearman', ALL_DOMAINS))} | - |"
        )
    if why:
        lines += ["", "Why the Bayesian figures are where they are:", ""]
        lines += [f"- {w}" for w in why]
    return [*lines, ""]


# ------------------------------------------------------------------------------ main
def calibration_section(root: Path, results, variants: Sequence[tuple[str, dict]], log) -> str:
    """Residual study and the opt-in model variants on SlimPajama 122M."""
    data = load_slimpajama(root, "122M")
    lines = [
        "## Calibration on real data: what is miscalibrated, and why",
        "",
        "Residuals of the least-squares fit on all checkpoints of SlimPajama 122M (log loss, "
        "percent): their sd; within a run (run offset removed); after also removing the pattern "
        "common to all runs at each checkpoint of the domain; that common pattern at the last "
        "checkpoint; and how the last-checkpoint residual (within the run) correlates with the "
        "run's share of the domain.",
        "",
        residual_study(data),
        "",
    ]
    if variants:
        lines += [
            "Model variants on the same backtests (Bayes; all points unless the column says "
            "otherwise; default spec first; holdout-mixtures:4 with the reduced sampler and 10 "
            "splits as above; run_slope is not run there, a new mixture has no slope to learn):",
            "",
            "| spec | protocol | MRE | R2 (log) | cover 50 % | cover 90 % | width 90 % | "
            "log pred. density | cover 90 % mean of domains | wikipedia cover 90 % |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, spec in variants:
            for protocol in ("last-checkpoint", "horizon:0.5", "holdout-mixtures:4"):
                t0 = time.perf_counter()
                holdout = protocol.startswith("holdout")
                if spec is None:
                    res = _find(results, "SlimPajama 122M", protocol)
                elif holdout and spec["likelihood"].get("run_slope"):
                    continue  # a new mixture has no slope to learn; only wider intervals
                elif holdout:
                    both = {**spec, **HOLDOUT_SPEC}
                    res = backtest(data, protocol, method="bayes", spec=both, n_splits=10)
                else:
                    res = backtest(data, protocol, method="bayes", spec=spec)
                if res is None:
                    continue
                log(f"  calibration: {name} {protocol} ({time.perf_counter() - t0:.0f} s)")
                lines.append(
                    f"| {name} | {protocol} | {_pct(_value(res, 'bayes', 'mre'))} | "
                    f"{_num(_value(res, 'bayes', 'r2_log'))} | "
                    f"{_pct(_value(res, 'bayes', 'cover_50'), 1)} | "
                    f"{_pct(_value(res, 'bayes', 'cover_90'), 1)} | "
                    f"{_pct(_value(res, 'bayes', 'width_90'), 1)} | "
                    f"{_num(_value(res, 'bayes', 'lpd'))} | "
                    f"{_pct(_value(res, 'bayes', 'cover_90', ALL_DOMAINS), 1)} | "
                    f"{_pct(_value(res, 'bayes', 'cover_90', 'wikipedia'), 1)} |"
                )
        lines.append("")
    lines.append(FINDINGS)
    return "\n".join(lines)


#: Written after looking at the numbers above (they are recomputed on every run).
FINDINGS = """### Findings

- **Per-domain intervals are roughly calibrated, except on wikipedia, and the learning-rate
  schedule is not the main cause there.** Wikipedia's residual at the last checkpoint grows with
  the run's share of wikipedia (last column of the residual table): runs that train on more
  wikipedia flatten out late. BiMix is separable (the share only scales the curve), so it cannot
  bend curves differently for different shares; repetition of the small wikipedia domain at
  high shares is the likely mechanism. Under the default Normal noise the model learns
  wikipedia's noise from checkpoints where the law still fits, so its intervals stay narrow
  while the forecasts drift: far below nominal 90 % coverage on horizon:0.5 (per-domain table).
  Arxiv and stackexchange show the opposite, smaller, pattern at the very last checkpoint (loss
  below the law, common to all runs, and varying with the share: the end of the schedule);
  that common drop is most of the remaining last-checkpoint error.
- **The average over domains is overconfident.** Domains are modelled independently, but a
  checkpoint that is lucky in one domain is lucky in the others (cross-domain correlation of the
  residuals, under the residual table). The sd of the average is understated, so the 90 %
  interval of the mean of domains covers less than 90 %. Fixing it needs correlated noise across
  domains in the likelihood (not done).
- **Run-to-run variation is handled**: the run offsets absorb most of the residual variance
  (first two sd columns), and with them the Bayesian forecast of an observed run is 2-4 times
  closer than least squares, which has none. Residuals also drift within a run: on 122M a per-run
  slope in log step has an sd comparable to the checkpoint noise, and the slope seen in the first
  half of a run predicts its later deviation (correlation about 0.4-0.6).
- **Noise model: the Student-t likelihood (existing option, `likelihood.family = "student_t"`)
  is the best variant measured** (variant table): lower MRE and higher log predictive density on
  both step protocols, wikipedia's and the average's coverage much closer to nominal. Zigzag
  checkpoints (arxiv's residuals alternate in sign) no longer inflate the noise of every point,
  and the heavier tails cover the drifting curves. It is **not made the default** here: on
  held-out mixtures (holdout-mixtures:4) it is slightly worse (higher MRE, lower R2 and log
  density in the variant table), so it does not improve every target; its predictive loss has no
  finite mean, so `forecast.predict` reports `mean`/`sd` as NaN, which code that ranks mixtures
  by expected loss would have to handle first; and it has only been compared on SlimPajama 122M.
  For forecasting more checkpoints of observed runs it is the better choice: pass a spec with
  `[likelihood] family = "student_t"` (`bimix fit/backtest --spec`).
- **New opt-in option `likelihood.run_slope = true`** (random slope per (run, domain) curve in
  log step, integrated out exactly like the offset; `forecast.predict` and the log predictive
  density follow it). It improves last-checkpoint forecasts (MRE, log density, coverage of the
  average) but not horizon:0.5, where five early checkpoints per run cannot pin a slope, and it
  samples several times slower. Off by default.
- **What remains**: wikipedia's share-dependent bend (needs a share x step interaction term in
  the law), the shared end-of-schedule drop (needs the schedule, or a discrepancy term fitted on
  other runs), the cross-domain correlation of the noise, and the step protocols of Ye et al.'s
  runs that extend to 100k steps (5Mix horizon:0.5 predicts only those long runs beyond 50k:
  the law misses their late curve and every method is far off). With 4 training runs the
  exponents alpha are poorly identified (held-out mixtures R2 (log) about 0.94; 0.97 with 20).
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one small dataset, fast (CI)")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"report path (default {DEFAULT_OUT}; "
        "with --smoke nothing is written unless --out is given)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-calibration", action="store_true", help="skip the calibration study (model variants)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="TEXT",
        help="run only the jobs whose 'dataset protocol' contains one of these texts "
        "(e.g. 'SlimPajama 122M horizon' 'holdout-mixtures:20')",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    root = find_datasets()
    if root is None:
        print("public datasets not found (../shared/datasets or $BIMIX_SHARED_DATASETS): skipped")
        return 0
    full = not args.smoke
    out = args.out if args.out is not None else (DEFAULT_OUT if full else None)
    command = "python benchmarks/validate_public.py" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
    )
    command = command.strip()

    def log(line: str) -> None:
        print(line, flush=True)

    t_start = time.perf_counter()
    results = []
    selected = [
        job
        for job in jobs(full)
        if not args.only or any(text in f"{job.dataset} {job.protocol}" for text in args.only)
    ]
    for job in selected:
        t0 = time.perf_counter()
        try:
            data = job.load(root)
        except (OSError, ValueError) as exc:
            log(f"{job.dataset} {job.protocol}: skipped ({exc})")
            results.append((job, None, str(exc)))
            continue
        try:
            res = backtest(
                data,
                job.protocol,
                method="both",
                seed=args.seed,
                spec=job.spec,
                n_splits=job.splits,
            )
        except ValueError as exc:
            log(f"{job.dataset} {job.protocol}: not run ({exc})")
            results.append((job, None, str(exc)))
            continue
        res.settings["data_notes"] = list(data.notes)
        results.append((job, res, ""))
        b = res.metrics.loc[("bayes", ALL_POINTS)]
        ls = res.metrics.loc[("ls", ALL_POINTS)]
        log(
            f"{job.dataset:<22} {job.protocol:<21} MRE bayes {_pct(b['mre'])} ls "
            f"{_pct(ls['mre'])}  cover90 bayes {_pct(b['cover_90'], 1)} ls "
            f"{_pct(ls['cover_90'], 1)}  R2 bayes {_num(b['r2_log'])} ls {_num(ls['r2_log'])}  "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    variants = (
        []
        if (args.no_calibration or not full)
        else [
            ("default", None),
            ("independent domains (0.2 model)", {"likelihood": {"run_correlation": False}}),
            ("run_slope", {"likelihood": {"run_slope": True}}),
        ]
    )
    calibration = (
        calibration_section(root, results, variants, log)
        if full
        else "(calibration study: full run only)"
    )
    seconds = time.perf_counter() - t_start
    if out is not None:
        write_report(out, results, command, seconds, calibration, full)
        log(f"wrote {out} ({seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
