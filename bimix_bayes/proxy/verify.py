"""The closed loop (``bimix verify``): fit a study, recommend a mixture, train it, compare.

1. Fit the hierarchical BiMix model to a study's loss table (``bimix study`` output).
2. Recommend the mixture for a target step (by default twice the study's longest run: a target
   beyond the trained steps) with :func:`bimix_bayes.decision.recommend.optimize`; the
   baseline is its default, the observed run with the lowest objective.
3. Train the recommended and the baseline mixture to the target with the study's seed (common
   random numbers: the runs differ only by their mixture, and the baseline retraces its study
   run up to the study's last step, then goes on).
4. Compare, at every checkpoint of the new runs: the posterior predictive forecast (median and
   50 % / 90 % intervals; the recommendation as a new mixture with a fresh run offset, the
   baseline as its observed run continued) against the measured loss, per domain and for the
   mean over domains; and whether "recommended beats baseline" held at the target.

Output folder::

    OUT/fit.nc              the fit of the study
    OUT/runs/...            the two verification runs (``bimix study`` layout)
    OUT/comparison.csv      forecast vs measured, per run, checkpoint and domain
    OUT/verify.json         everything (recommendation, forecasts, outcome)
    OUT/verify.md           the summary a person reads

Examples
--------
>>> result = verify("out/study", "out/corpora", "out/verify")  # doctest: +SKIP
>>> result["outcome"]["recommended_beat_baseline"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.data.files import atomic_write_text, atomic_write_with
from bimix_bayes.data.labels import ALL_DOMAINS, NEW, OBSERVED, interval_columns
from bimix_bayes.evaluation.metrics import (
    PROBS,
    coverage,
    inside,
    interval_tag,
    mean_relative_error,
    relative_errors,
    with_domain_mean,
)

__all__ = ["compare_forecasts", "verify"]


def compare_forecasts(forecast: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """Join forecasts (:func:`bimix_bayes.bayes.forecast.predict` output) with measured losses.

    ``measured`` has columns ``run, step, domain, loss``; the mean over domains is added to it.
    Returns one row per (run, step, domain) with the forecast's median and intervals, the
    measured loss, the relative error and whether each interval covers it.

    Examples
    --------
    >>> f = pd.DataFrame({"mixture": ["a"], "step": [10.0], "domain": ["x"], "median": [2.0],
    ...                   "lower_50": [1.9], "upper_50": [2.1], "lower_90": [1.8],
    ...                   "upper_90": [2.2]})
    >>> m = pd.DataFrame({"run": ["a"], "step": [10], "domain": ["x"], "loss": [2.05]})
    >>> row = compare_forecasts(f, m).iloc[0]
    >>> bool(row["in_50"]), round(float(row["relative_error"]), 4)
    (True, 0.0244)
    """
    measured = with_domain_mean(measured[["run", "step", "domain", "loss"]])
    measured = measured.assign(step=measured["step"].astype(float))
    table = forecast.rename(columns={"mixture": "run"}).merge(
        measured, on=["run", "step", "domain"], how="inner"
    )
    table["relative_error"] = relative_errors(table["loss"], table["median"])
    for p in PROBS:
        lower, upper = interval_columns(p)
        table[f"in_{interval_tag(p)}"] = inside(table["loss"], table[lower], table[upper])
    return table


def verify(
    study: str | os.PathLike[str],
    corpora: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    target: float | None = None,
    objective: str = "mean",
    seed: int | None = None,
    fit_seed: int = 0,
    workers: int = 2,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the closed loop on a finished study (see the module docstring).

    Parameters
    ----------
    study
        Folder written by ``bimix study`` (``losses.csv``, ``runs.json``).
    corpora
        The corpora the study was trained on.
    out
        Output folder.
    target
        Target step (default: twice the study's longest run).
    objective
        As in :func:`bimix_bayes.decision.recommend.optimize`.
    seed
        Seed of the two verification runs. Default: the study's seed (common random numbers
        with the study: the baseline run retraces its study run, then continues; it is
        forecast as that observed run continued, the recommendation as a new mixture).
    fit_seed
        Seed of the Bayesian fit.
    workers
        Parallel training processes.
    """
    from bimix_bayes.bayes.forecast import predict
    from bimix_bayes.bayes.model import BiMixModel
    from bimix_bayes.bayes.persistence import save_fit
    from bimix_bayes.data.loaders import load_data
    from bimix_bayes.decision.recommend import optimize
    from bimix_bayes.proxy.study import run_study
    from bimix_bayes.proxy.trainer import TrainConfig

    log = log or (lambda msg: None)
    start = time.perf_counter()
    study, out = Path(study), Path(out)
    meta = json.loads((study / "runs.json").read_text())
    config = TrainConfig.from_dict(meta["config"])
    data = load_data(study / "losses.csv", volume="steps")
    longest = float(data.observations["step"].max())
    target = float(target) if target is not None else 2.0 * longest
    study_seed = int(meta.get("seed", 0))
    seed = study_seed if seed is None else int(seed)

    log(f"fitting the study ({data.n_runs} runs, {len(data.observations)} observations) ...")
    idata = BiMixModel().fit(data, seed=fit_seed)
    out.mkdir(parents=True, exist_ok=True)
    save_fit(idata, out / "fit.nc")
    rec = optimize(idata, target, objective=objective, seed=fit_seed)
    log(
        f"recommended for step {target:g}: "
        + ", ".join(f"{d} {v:.3f}" for d, v in rec.mixture.items())
        + f"; baseline {rec.baseline_source}; P(beats) {rec.p_beats_baseline:.3f}"
    )
    # With the study's seed the baseline run retraces its study run (common random numbers), so
    # it is forecast as that observed run continued; with another seed, as a new mixture.
    continued = rec.baseline_run is not None and seed == study_seed
    base_name = rec.baseline_run if continued else "baseline"
    mixtures = pd.DataFrame([rec.mixture.rename("recommended"), rec.baseline.rename(base_name)])
    run_config = TrainConfig.from_dict({**config.to_dict(), "steps": round(target)})
    log(f"training both mixtures to {round(target)} steps (seed {seed}) ...")
    trained = run_study(
        corpora,
        out / "runs",
        config=run_config,
        mixtures=mixtures,
        workers=workers,
        seed=seed,
        log=log,
    )
    measured = pd.concat([r.rows for r in trained["results"]], ignore_index=True)
    measured = measured[["run", "step", "domain", "loss"]]
    steps = np.unique(measured["step"].to_numpy(dtype=float))
    forecast = predict(
        idata,
        steps,
        mixtures=mixtures.loc[
            ["recommended"] + ([] if continued else [base_name]), list(data.domains)
        ],
        runs=[base_name] if continued else None,
        prob=PROBS,
        seed=fit_seed,
        attach=False,
    )
    table = compare_forecasts(forecast, measured)
    table.insert(1, "role", np.where(table["run"] == "recommended", "recommended", "baseline"))
    atomic_write_with(
        out / "comparison.csv", lambda p: table.to_csv(p, index=False, float_format="%.6g")
    )
    result = _summarise(table, rec, target, longest, seed, data)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["study"] = str(study)
    result["corpora"] = str(corpora)
    atomic_write_text(out / "verify.json", json.dumps(result, indent=2, default=float) + "\n")
    atomic_write_text(out / "verify.md", format_markdown(result, table))
    return result


def _summarise(table, rec, target, longest, seed, data) -> dict[str, Any]:
    at_target = table[np.isclose(table["step"], table["step"].max())]
    avg = at_target[at_target["domain"] == ALL_DOMAINS].set_index("role")
    beyond = table[table["step"] > longest]

    def scores(part: pd.DataFrame) -> dict[str, float]:
        row = {
            "points": len(part),
            "mean_relative_error": mean_relative_error(part["loss"], part["median"]),
        }
        for p in PROBS:
            lower, upper = interval_columns(p)
            row[f"coverage_{interval_tag(p)}"] = coverage(part["loss"], part[lower], part[upper])
        return row

    per_domain = table[table["domain"] != ALL_DOMAINS]
    return {
        "target_step": target,
        "trained_steps_in_study": longest,
        "verification_seed": seed,
        "baseline_forecast": f"{OBSERVED} continued"
        if (table["source"] == OBSERVED).any()
        else NEW,
        "objective": rec.objective.name,
        "recommended": {k: float(v) for k, v in rec.mixture.items()},
        "baseline": {
            "source": rec.baseline_source,
            "run": rec.baseline_run,
            "shares": {k: float(v) for k, v in rec.baseline.items()},
        },
        "predicted": {
            "p_recommended_beats_baseline": rec.p_beats_baseline,
            "p_run_beats_run": rec.p_run_beats_baseline,
            "mean_loss_at_target": {
                who: {k: float(avg.loc[who, k]) for k in ("median", "lower_90", "upper_90")}
                for who in ("recommended", "baseline")
            },
        },
        "outcome": {
            "measured_mean_loss_at_target": {
                who: float(avg.loc[who, "loss"]) for who in ("recommended", "baseline")
            },
            "recommended_beat_baseline": bool(
                avg.loc["recommended", "loss"] < avg.loc["baseline", "loss"]
            ),
            "improvement": float(avg.loc["baseline", "loss"] - avg.loc["recommended", "loss"]),
        },
        "scores": {
            "all_checkpoints_per_domain": scores(per_domain),
            "beyond_trained_steps_per_domain": scores(beyond[beyond["domain"] != ALL_DOMAINS]),
            "at_target_mean_over_domains": scores(avg.reset_index()),
        },
        "domains": list(data.domains),
    }


def format_markdown(result: dict[str, Any], table: pd.DataFrame) -> str:
    """The closed-loop summary as Markdown."""
    pred, outcome = result["predicted"], result["outcome"]
    beyond = result["target_step"] > result["trained_steps_in_study"]
    lines = [
        "# Closed loop: recommended vs baseline, forecast vs measured",
        "",
        f"Study: `{result['study']}` (runs trained to {result['trained_steps_in_study']:g} "
        f"steps). Target: **{result['target_step']:g} steps**"
        + (" (beyond the trained steps). " if beyond else ". ")
        + f"Objective: {result['objective']}. Verification runs: seed "
        f"{result['verification_seed']} for both mixtures (common random numbers); the baseline "
        f"is forecast as {result['baseline_forecast']}, the recommendation as a new mixture.",
        "",
        "| domain | recommended | baseline |",
        "|---|---|---|",
    ]
    for d in result["domains"]:
        lines.append(
            f"| {d} | {result['recommended'][d]:.3f} | {result['baseline']['shares'][d]:.3f} |"
        )
    lines += [
        "",
        f"Baseline: {result['baseline']['source']}.",
        "",
        "## Mean loss over domains at the target",
        "",
        "| mixture | forecast median [90 %] | measured |",
        "|---|---|---|",
    ]
    for who in ("recommended", "baseline"):
        f = pred["mean_loss_at_target"][who]
        lines.append(
            f"| {who} | {f['median']:.4f} [{f['lower_90']:.4f}, {f['upper_90']:.4f}] | "
            f"{outcome['measured_mean_loss_at_target'][who]:.4f} |"
        )
    lines += [
        "",
        f"- Predicted P(recommended beats baseline) = {pred['p_recommended_beats_baseline']:.3f}"
        " (expected loss)"
        + (
            f"; P(one run beats one run) = {pred['p_run_beats_run']:.3f}."
            if pred["p_run_beats_run"] is not None
            else "."
        ),
        f"- Measured: the recommended mixture "
        f"{'**beat**' if outcome['recommended_beat_baseline'] else '**did not beat**'} the "
        f"baseline (improvement {outcome['improvement']:+.4f} nats).",
        "",
        "## Forecast accuracy of the verification runs",
        "",
        "| checkpoints | points | mean relative error | 50 % coverage | 90 % coverage |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "all_checkpoints_per_domain": "all, per domain",
        "beyond_trained_steps_per_domain": "beyond the trained steps, per domain",
        "at_target_mean_over_domains": "target, mean over domains",
    }
    for key, label in labels.items():
        s = result["scores"][key]
        lines.append(
            f"| {label} | {s['points']} | {100 * s['mean_relative_error']:.2f} % | "
            f"{100 * s['coverage_50']:.0f} % | {100 * s['coverage_90']:.0f} % |"
        )
    lines += ["", "## Per checkpoint and domain", "", _table_markdown(table), ""]
    return "\n".join(lines)


def _table_markdown(table: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    columns = columns or [
        "run",
        "role",
        "step",
        "domain",
        "median",
        "lower_90",
        "upper_90",
        "loss",
        "in_90",
    ]
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, r in table[list(columns)].iterrows():
        cells = []
        for c in columns:
            v = r[c]
            if isinstance(v, float | np.floating):
                cells.append(f"{v:.4f}" if c != "step" else f"{v:g}")
            else:
                cells.append(str(v))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
