"""The closed loop (``bimix verify``): fit a study, recommend a mixture, train it, compare.

1. Fit the hierarchical BiMix model to a study's loss table (``bimix study`` output), or take
   an existing fit of it.
2. Recommend the mixture for a target step (by default twice the study's longest run: a target
   beyond the trained steps) with :func:`bimix_bayes.decision.recommend.optimize`; the
   baseline is its default, the observed run with the lowest objective.
3. Train the recommended mixture, the baseline and the uniform mixture to the target, each with
   ``n_seeds`` fresh seeds (seeds the study never used, so every verification run is a new run
   with its own run-to-run variation, as the decision's future run will be).
4. Compare, at every checkpoint of the new runs, the posterior predictive forecast of a new run
   (median and 50 % / 90 % intervals) with the measured loss, per domain and for the mean over
   domains; and at the target, the predicted distribution of the difference
   ``baseline - recommended`` (for the expected loss, for one run against one run, and for the
   mean of the seeds against the mean of the seeds) beside the measured difference with its seed
   spread: was ``P(recommended beats baseline)`` borne out, and was the verdict rule ("practically
   equivalent" when one run beats one run less than 60 % of the time) right?

Output folder::

    OUT/fit.nc              the fit of the study
    OUT/runs/...            the verification runs (``bimix study`` layout)
    OUT/comparison.csv      forecast vs measured, per run, checkpoint and domain
    OUT/verify.json         everything (recommendation, forecasts, differences, outcome)
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
from bimix_bayes.data.labels import ALL_DOMAINS, interval_columns
from bimix_bayes.evaluation.metrics import (
    PROBS,
    coverage,
    inside,
    interval_tag,
    mean_relative_error,
    relative_errors,
    with_domain_mean,
)

__all__ = ["compare_forecasts", "difference_summary", "verify"]

ROLES = ("recommended", "baseline", "uniform")
#: The verdict rule of :attr:`bimix_bayes.decision.recommendation.Recommendation.verdict`.
EQUIVALENCE_THRESHOLD = 0.6


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


def difference_summary(draws: np.ndarray, measured: float | None = None) -> dict[str, float]:
    """Summary of draws of a difference ``baseline - recommended`` (positive: recommended wins).

    Examples
    --------
    >>> s = difference_summary(np.array([0.1, 0.2, 0.3, -0.1]), measured=0.25)
    >>> s["p_positive"], s["measured"], s["measured_quantile"]
    (0.75, 0.25, 0.75)
    """
    draws = np.asarray(draws, dtype=float).ravel()
    out = {
        "mean": float(draws.mean()),
        "median": float(np.median(draws)),
        "lower_90": float(np.quantile(draws, 0.05)),
        "upper_90": float(np.quantile(draws, 0.95)),
        "p_positive": float(np.mean(draws > 0)),
    }
    if measured is not None:
        out["measured"] = float(measured)
        out["measured_quantile"] = float(np.mean(draws <= measured))
        out["measured_inside_90"] = bool(out["lower_90"] <= measured <= out["upper_90"])
    return out


def verify(
    study: str | os.PathLike[str],
    corpora: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    target: float | None = None,
    objective: str = "mean",
    n_seeds: int = 3,
    first_seed: int | None = None,
    fit: str | os.PathLike[str] | None = None,
    min_step: float | None = None,
    fit_seed: int = 0,
    workers: int = 2,
    law: str | None = None,
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
    n_seeds
        Fresh seeds per mixture (at least 2, so the seed spread is measured).
    first_seed
        Seed of each mixture's first verification run; the others use the next seeds. Default:
        one above the largest seed of the study, so no verification run repeats a study run.
    fit
        A saved fit of this study (``bimix fit``) to use instead of fitting it again.
    min_step
        Leave the study's checkpoints before this step out of the fit (the start of training,
        before the loss follows the law; the embedded study uses 500). The verification runs
        are compared at every checkpoint from ``min_step`` on.
    fit_seed
        Seed of the Bayesian fit and of the forecast draws.
    workers
        Parallel training processes.
    law
        The mixing law of the fit (``bimix laws``; default: the default spec's); ignored with
        ``fit``, whose law is its own.
    """
    from bimix_bayes.bayes.forecast import forecast_draws, predict
    from bimix_bayes.bayes.model import BiMixModel
    from bimix_bayes.bayes.persistence import load_fit, save_fit
    from bimix_bayes.data.loaders import load_data
    from bimix_bayes.decision.recommend import optimize
    from bimix_bayes.proxy.study import run_study
    from bimix_bayes.proxy.trainer import TrainConfig

    if n_seeds < 2:
        raise ValueError(f"n_seeds={n_seeds}: at least 2 seeds per mixture measure a seed spread")
    log = log or (lambda msg: None)
    start = time.perf_counter()
    study, out = Path(study), Path(out)
    meta = json.loads((study / "runs.json").read_text())
    config = TrainConfig.from_dict(meta["config"])
    data = load_data(study / "losses.csv", volume="steps", min_step=min_step)
    longest = float(data.observations["step"].max())
    target = float(target) if target is not None else 2.0 * longest
    study_seeds = [int(s) for s in meta.get("seeds", {}).values()] or [int(meta.get("seed", 0))]
    first_seed = max(study_seeds) + 1 if first_seed is None else int(first_seed)
    seeds = list(range(first_seed, first_seed + n_seeds))
    reused = sorted(set(seeds) & set(study_seeds))

    out.mkdir(parents=True, exist_ok=True)
    if fit is not None:
        log(f"loading the fit {fit} ...")
        idata = load_fit(fit)
        fitted = {str(r) for r in idata.constant_data["run"].to_numpy()}
        if fitted != set(map(str, data.runs)):
            raise ValueError(
                f"{fit} is a fit of other runs than {study / 'losses.csv'} "
                f"({len(fitted)} runs vs {data.n_runs}); fit this study or leave out --fit"
            )
    else:
        log(f"fitting the study ({data.n_runs} runs, {len(data.observations)} observations) ...")
        spec = None if law is None else {"law": {"name": law}}
        idata = BiMixModel(spec).fit(data, seed=fit_seed, retry=True)
    save_fit(idata, out / "fit.nc")
    rec = optimize(idata, target, objective=objective, seed=fit_seed)
    log(
        f"recommended for step {target:g}: "
        + ", ".join(f"{d} {v:.3f}" for d, v in rec.mixture.items())
        + f"; baseline {rec.baseline_source}; P(beats) {rec.p_beats_baseline:.3f}"
    )
    domains = list(data.domains)
    uniform = pd.Series(1.0 / len(domains), index=domains)
    design = {"recommended": rec.mixture[domains], "baseline": rec.baseline[domains]}
    same_as = [k for k, v in design.items() if np.allclose(v.to_numpy(), uniform.to_numpy())]
    if not same_as:
        design["uniform"] = uniform
    mixtures = pd.DataFrame(design).T
    run_config = TrainConfig.from_dict({**config.to_dict(), "steps": round(target)})
    log(
        f"training {len(mixtures)} mixtures x {n_seeds} seeds ({seeds[0]}..{seeds[-1]}) to "
        f"{round(target)} steps ..."
    )
    trained = run_study(
        corpora,
        out / "runs",
        config=run_config,
        mixtures=mixtures,
        replicates={m: n_seeds for m in mixtures.index},
        workers=workers,
        seed=first_seed,
        log=log,
    )
    measured = pd.concat([r.rows for r in trained["results"]], ignore_index=True)
    if min_step is not None:
        measured = measured[measured["step"] >= min_step]
    role_of = measured.groupby("run")["mixture"].first()
    seed_of = measured.groupby("run")["seed"].first()
    runs = list(role_of.index)
    per_run = mixtures.loc[role_of.to_numpy()].set_axis(runs)
    steps = np.unique(measured["step"].to_numpy(dtype=float))
    log("forecasting every verification run as a new run of its mixture ...")
    forecast = predict(idata, steps, mixtures=per_run, prob=PROBS, seed=fit_seed, attach=False)
    table = compare_forecasts(forecast, measured[["run", "step", "domain", "loss"]])
    table.insert(1, "role", role_of.reindex(table["run"]).to_numpy())
    table.insert(2, "seed", seed_of.reindex(table["run"]).to_numpy())
    atomic_write_with(
        out / "comparison.csv", lambda p: table.to_csv(p, index=False, float_format="%.6g")
    )
    one_run = forecast_draws(idata, [target], mixtures=per_run, seed=fit_seed)
    law = forecast_draws(idata, [target], mixtures=mixtures, kind="law", seed=fit_seed)
    result = _summarise(table, rec, one_run, law, role_of, target, longest, mixtures)
    result.update(
        seeds=seeds,
        seeds_also_in_study=reused,
        same_as_uniform=same_as,
        wall_seconds=round(time.perf_counter() - start, 1),
        study=str(study),
        corpora=str(corpora),
    )
    atomic_write_text(out / "verify.json", json.dumps(result, indent=2, default=float) + "\n")
    atomic_write_text(out / "verify.md", format_markdown(result, table))
    return result


def _at_target_mean(draws) -> np.ndarray:
    """(sample, mixture) draws of the mean over domains at the single forecast step."""
    v = draws.isel(step=0, domain=-1).stack(sample=("chain", "draw"))
    return v.transpose("sample", "mixture").to_numpy()


def _summarise(table, rec, one_run, law, role_of, target, longest, mixtures) -> dict[str, Any]:
    final = table[np.isclose(table["step"], table["step"].max())]
    avg = final[final["domain"] == ALL_DOMAINS].set_index("run")
    beyond = table[table["step"] > longest]
    roles = [r for r in ROLES if r in set(role_of)]

    def scores(part: pd.DataFrame) -> dict[str, float]:
        row = {
            "points": len(part),
            "mean_relative_error": mean_relative_error(part["loss"], part["median"]),
        }
        for p in PROBS:
            lower, upper = interval_columns(p)
            row[f"coverage_{interval_tag(p)}"] = coverage(part["loss"], part[lower], part[upper])
        return row

    # Predicted draws at the target: a new run per verification run (fresh run effects, the
    # shared extrapolation error common to all), the law per mixture.
    run_draws = _at_target_mean(one_run)
    run_names = [str(m) for m in one_run["mixture"].to_numpy()]
    law_draws = _at_target_mean(law)
    law_names = [str(m) for m in law["mixture"].to_numpy()]
    runs_of = {r: [n for n in run_names if role_of[n] == r] for r in roles}
    seed_mean = {r: run_draws[:, [run_names.index(n) for n in runs_of[r]]].mean(1) for r in roles}
    first_run = {r: run_draws[:, run_names.index(runs_of[r][0])] for r in roles}
    measured = {r: avg.loc[runs_of[r], "loss"].to_numpy(dtype=float) for r in roles}
    per_role = {}
    for r in roles:
        m = measured[r]
        lo, hi = np.quantile(first_run[r], [0.05, 0.95])
        slo, shi = np.quantile(seed_mean[r], [0.05, 0.95])
        per_role[r] = {
            "shares": {d: float(v) for d, v in mixtures.loc[r].items()},
            "predicted_one_run": {
                "median": float(np.median(first_run[r])),
                "lower_90": float(lo),
                "upper_90": float(hi),
            },
            "predicted_mean_of_seeds": {
                "median": float(np.median(seed_mean[r])),
                "lower_90": float(slo),
                "upper_90": float(shi),
            },
            "measured_per_seed": [float(x) for x in m],
            "measured_mean": float(m.mean()),
            "measured_seed_sd": float(m.std(ddof=1)),
            "measured_mean_inside_90": bool(slo <= m.mean() <= shi),
        }
    b, r = measured["baseline"], measured["recommended"]
    diff = float(b.mean() - r.mean())
    diff_se = float(np.sqrt(b.var(ddof=1) / len(b) + r.var(ddof=1) / len(r)))
    pairs = float(np.mean(r[:, None] < b[None, :]))
    law_at = {name: law_draws[:, law_names.index(name)] for name in ("baseline", "recommended")}
    law_diff = law_at["baseline"] - law_at["recommended"]
    differences = {
        "expected_loss": difference_summary(law_diff),
        "one_run_vs_one_run": difference_summary(first_run["baseline"] - first_run["recommended"]),
        "mean_of_seeds": difference_summary(
            seed_mean["baseline"] - seed_mean["recommended"], measured=diff
        ),
    }
    p_beats = float(rec.p_beats_baseline)
    p_run = None if rec.p_run_beats_baseline is None else float(rec.p_run_beats_baseline)
    said_equivalent = p_run is not None and p_run < EQUIVALENCE_THRESHOLD
    # Equivalent: neither mixture's runs reliably end below the other's.
    measured_equivalent = 1 - EQUIVALENCE_THRESHOLD < pairs < EQUIVALENCE_THRESHOLD
    per_domain = table[table["domain"] != ALL_DOMAINS]
    return {
        "target_step": target,
        "trained_steps_in_study": longest,
        "objective": rec.objective.name,
        "recommended": {k: float(v) for k, v in rec.mixture.items()},
        "baseline": {
            "source": rec.baseline_source,
            "run": rec.baseline_run,
            "shares": {k: float(v) for k, v in rec.baseline.items()},
        },
        "predicted": {
            "p_recommended_beats_baseline": p_beats,
            "p_run_beats_run": p_run,
            "verdict": rec.verdict,
        },
        "mixtures": per_role,
        "differences": differences,
        "outcome": {
            "measured_difference": diff,
            "measured_difference_se": diff_se,
            "recommended_beat_baseline": bool(diff > 0),
            "improvement": diff,
            "pairs_recommended_below_baseline": pairs,
            "probability_borne_out": bool((p_beats > 0.5) == (diff > 0)),
            "difference_inside_predicted_90": differences["mean_of_seeds"]["measured_inside_90"],
            "verdict_said_equivalent": bool(said_equivalent),
            "measured_equivalent": bool(measured_equivalent),
            "verdict_rule_right": bool(said_equivalent == measured_equivalent),
        },
        "scores": {
            "all_checkpoints_per_domain": scores(per_domain),
            "beyond_trained_steps_per_domain": scores(beyond[beyond["domain"] != ALL_DOMAINS]),
            "target_mean_over_domains": scores(avg.reset_index()),
        },
        "domains": [str(d) for d in mixtures.columns],
    }


def format_markdown(result: dict[str, Any], table: pd.DataFrame) -> str:
    """The closed-loop summary as Markdown."""
    pred, outcome, mix = result["predicted"], result["outcome"], result["mixtures"]
    roles = list(mix)
    beyond = result["target_step"] > result["trained_steps_in_study"]
    seeds = result["seeds"]
    lines = [
        "# Closed loop: recommended vs baseline vs uniform, forecast vs measured",
        "",
        f"Study: `{result['study']}` (runs trained to {result['trained_steps_in_study']:g} "
        f"steps). Target: **{result['target_step']:g} steps**"
        + (" (beyond the trained steps). " if beyond else ". ")
        + f"Objective: {result['objective']}. Each mixture trained with {len(seeds)} fresh "
        f"seeds ({', '.join(map(str, seeds))}; the study used "
        + ("some of them" if result["seeds_also_in_study"] else "none of them")
        + "), each run forecast as a new run of its mixture.",
        "",
        "| domain | " + " | ".join(roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for d in result["domains"]:
        lines.append(f"| {d} | " + " | ".join(f"{mix[r]['shares'][d]:.3f}" for r in roles) + " |")
    lines += [
        "",
        f"Baseline: {result['baseline']['source']}."
        + (
            f" The uniform mixture is the {', '.join(result['same_as_uniform'])} mixture."
            if result["same_as_uniform"]
            else ""
        ),
        "",
        "## Mean loss over domains at the target",
        "",
        "| mixture | forecast, one run: median [90 %] | forecast, mean of the seeds | "
        "measured per seed | measured mean (seed sd) |",
        "|---|---|---|---|---|",
    ]
    for r in roles:
        one, avg = mix[r]["predicted_one_run"], mix[r]["predicted_mean_of_seeds"]
        lines.append(
            f"| {r} | {one['median']:.4f} [{one['lower_90']:.4f}, {one['upper_90']:.4f}] | "
            f"{avg['median']:.4f} [{avg['lower_90']:.4f}, {avg['upper_90']:.4f}] | "
            + ", ".join(f"{x:.4f}" for x in mix[r]["measured_per_seed"])
            + f" | {mix[r]['measured_mean']:.4f} ({mix[r]['measured_seed_sd']:.4f}) |"
        )
    diffs = result["differences"]
    lines += [
        "",
        "## Baseline minus recommended at the target (positive: the recommendation wins)",
        "",
        "| predicted for | median [90 %] | P(> 0) |",
        "|---|---|---|",
    ]
    for key, label in (
        ("expected_loss", "the expected loss (the decision's objective)"),
        ("one_run_vs_one_run", "one run against one run"),
        ("mean_of_seeds", f"the mean of {len(seeds)} seeds against the mean of {len(seeds)}"),
    ):
        d = diffs[key]
        lines.append(
            f"| {label} | {d['median']:+.4f} [{d['lower_90']:+.4f}, {d['upper_90']:+.4f}] | "
            f"{d['p_positive']:.2f} |"
        )
    d = diffs["mean_of_seeds"]
    lines += [
        "",
        f"**Measured**: {outcome['measured_difference']:+.4f} nats (standard error from the seed "
        f"spread {outcome['measured_difference_se']:.4f}); the recommended mixture "
        f"{'**beat**' if outcome['recommended_beat_baseline'] else '**did not beat**'} the "
        f"baseline on average, and one recommended run was below one baseline run in "
        f"{100 * outcome['pairs_recommended_below_baseline']:.0f} % of the "
        f"{len(seeds) ** 2} seed pairs. The measured difference is at the "
        f"{100 * d['measured_quantile']:.0f}th percentile of its predicted distribution "
        f"({'inside' if d['measured_inside_90'] else 'outside'} the 90 % interval).",
        "",
        f"- P(recommended beats baseline) = {pred['p_recommended_beats_baseline']:.3f} (expected "
        f"loss): {'borne out' if outcome['probability_borne_out'] else 'not borne out'} "
        "(the measured difference has the sign the probability favoured"
        + ("" if outcome["probability_borne_out"] else " - it does not")
        + ").",
        f'- Verdict printed by the package: "{pred["verdict"]}". P(one run beats one run) = '
        + ("n/a" if pred["p_run_beats_run"] is None else f"{pred['p_run_beats_run']:.3f}")
        + f"; measured {outcome['pairs_recommended_below_baseline']:.2f} over the seed pairs. "
        f'The "practically equivalent" rule (below {EQUIVALENCE_THRESHOLD}) '
        + ("said equivalent" if outcome["verdict_said_equivalent"] else "said not equivalent")
        + " and the measured pairs "
        + ("agree" if outcome["verdict_rule_right"] else "disagree")
        + ".",
        "",
        "## Forecast accuracy of the verification runs",
        "",
        "| checkpoints | points | mean relative error | 50 % coverage | 90 % coverage |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "all_checkpoints_per_domain": "all, per domain",
        "beyond_trained_steps_per_domain": "beyond the trained steps, per domain",
        "target_mean_over_domains": "target, mean over domains",
    }
    for key, label in labels.items():
        s = result["scores"][key]
        lines.append(
            f"| {label} | {s['points']} | {100 * s['mean_relative_error']:.2f} % | "
            f"{100 * s['coverage_50']:.0f} % | {100 * s['coverage_90']:.0f} % |"
        )
    lines += [
        "",
        "## Mean over domains per checkpoint (per domain: comparison.csv)",
        "",
        _table_markdown(table[table["domain"] == ALL_DOMAINS]),
        "",
    ]
    return "\n".join(lines)


def _table_markdown(table: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    columns = columns or [
        "run",
        "role",
        "seed",
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
