"""The Bayesian commands of ``bimix``: ``fit``, ``summary``, ``compare`` and ``predict``.

Registered on the main parser by :func:`add_commands` (see :mod:`bimix_bayes.cli.app`).

Examples
--------
>>> from bimix_bayes.cli.app import build_parser
>>> build_parser().parse_args(["predict", "fit.nc", "--steps", "4e10"]).steps
[40000000000.0]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from bimix_bayes.bayes.noise import NOISE_EXCESS
from bimix_bayes.bayes.spec import likelihood_words, load_spec, merge_spec
from bimix_bayes.cli import options as opt
from bimix_bayes.cli.errors import FitFailedError, UsageError
from bimix_bayes.cli.progress import Progress, sampling_words

# The heavy modules (PyMC, ArviZ) are imported inside the commands, so that `bimix --help` and
# the least-squares commands start fast.

__all__ = [
    "FitFailedError",
    "add_commands",
    "cmd_compare",
    "cmd_fit",
    "cmd_predict",
    "cmd_summary",
]

#: What the failed-fit banner (:meth:`~bimix_bayes.bayes.diagnostics.FitDiagnostics.banner`)
#: says above the intervals these commands print.
UNTRUSTED = "the intervals below cannot be trusted"


def _fmt(value: float, lower: float, upper: float) -> str:
    return f"{value:.4g} [{lower:.4g}, {upper:.4g}]"


# ------------------------------------------------------------------------------ fit
def cmd_fit(args: argparse.Namespace) -> int:
    """Fit the hierarchical Bayesian BiMix model.

    Sample the posterior of the hierarchical BiMix model (spec: priors, likelihood, sampler),
    check its convergence, and save it as netCDF.

    Returns
    -------
    int
        0, after printing the diagnostics and the parameters and saving the fit.

    Raises
    ------
    FitFailedError
        With ``--strict``, when the fit failed its diagnostics (exit code 1; the file is still
        written).
    """
    from bimix_bayes.bayes.model import BiMixModel
    from bimix_bayes.bayes.summary import posterior_table

    options = opt.DataOptions.from_args(args)
    data = options.load(args.data)  # --out was checked by main
    spec = opt.model_spec(args) or load_spec()
    if args.sampler is not None:
        spec["sampler"]["backend"] = args.sampler
    model = BiMixModel(merge_spec(spec))
    model.check_data(data)  # refused now, not after "compiling the model"
    cfg = model.spec["sampler"]
    decided = model.spec_for(data)  # run_correlation "auto" decided for these data
    lik = decided["likelihood"]
    auto = model.spec["likelihood"]["run_correlation"] == "auto" and lik["run_correlation"]
    print(f"data: {data.summary()}")
    print(
        f"model: hierarchical, law {model.spec['law']['name']}, "
        f"{likelihood_words(decided, len(data.domains))}"
        + (" (run_correlation auto: evaluation sets that are not training domains)" if auto else "")
        + (
            "; step law through the learning-rate schedule (its area and annealing)"
            if data.schedule is not None
            else ""
        )
        + f"; spec {args.spec or 'default (models/bimix.toml)'}"
        + (f" with --law {args.law}" if args.law else "")
    )
    print(
        f"sampler: {cfg['backend']}, {cfg['chains']} chains x {cfg['draws']} draws "
        f"(+{cfg['tune']} tuning), seed {args.seed}"
    )
    progress = Progress.of(args, "fit")
    with progress.timed(sampling_words(cfg), done="sampled"):
        bar = False if progress.quiet else None  # None: nutpie's bar in a terminal
        # the report below says it (and a banner): no FitWarning repeating it on stderr
        idata = model.fit(data, seed=args.seed, retry=args.retry, progress_bar=bar, warn=False)
    idata.attrs[opt.DATA_OPTIONS_ATTR] = options.reading_json()  # report --holdout reads with them
    model.save(args.out)
    attrs = idata.attrs
    sampler_note = "" if attrs["sampler"] == cfg["backend"] else " (fallback)"
    if retried := _retry_note(attrs, cfg, model.spec["sampler"]):
        print(retried)
    print(
        f"sampled with {attrs['sampler']}{sampler_note} in {attrs['wall_seconds']:.1f} s "
        f"(compile {attrs['compile_seconds']:.1f} s, sampling {attrs['sample_seconds']:.1f} s)"
        + (
            f"; {attrs['wall_seconds'] + attrs['first_attempt_seconds']:.1f} s with the "
            "failed first attempt"
            if "first_attempt_seconds" in attrs
            else ""
        )
    )
    print(model.diagnostics_.report())
    table = posterior_table(idata, prob=0.94)
    print()
    if banner := model.diagnostics_.banner(UNTRUSTED):
        print(banner)
    print(_wide_parameter_table(table))
    print(_seed_spread_note(idata))
    print(f"\nwrote {args.out}")
    if args.strict and not model.diagnostics_.passed:
        raise FitFailedError(
            f"the fit failed its diagnostics (--strict); {args.out} was written for inspection"
        )
    return 0


def _retry_note(attrs: Mapping[str, Any], asked: Mapping[str, Any], used: Mapping[str, Any]) -> str:
    """What the one retry changed, on stdout beside the figures it explains (the saved fit holds
    the retry's draws, not those asked for), or '' when the first attempt was kept.

    Examples
    --------
    >>> first = '{"problems": ["tail ESS 144 < 400 for x"]}'
    >>> print(_retry_note({"first_attempt": first}, {"draws": 300, "tune": 300},
    ...                   {"draws": 2000, "tune": 1000}))  # doctest: +NORMALIZE_WHITESPACE
    retried: the first attempt failed its diagnostics (tail ESS 144 < 400 for x); refitted once
    with safer sampler settings (draws 300 -> 2000, tune 300 -> 1000): the saved fit holds
    these draws (--no-retry keeps a first attempt, e.g. for a quick look)
    """
    if "first_attempt" not in attrs:
        return ""
    problems = json.loads(attrs["first_attempt"]).get("problems", [])
    changed = ", ".join(f"{k} {asked.get(k)} -> {v}" for k, v in used.items() if asked.get(k) != v)
    return (
        f"retried: the first attempt failed its diagnostics ({'; '.join(problems)}); refitted "
        f"once with safer sampler settings ({changed}): the saved fit holds these draws "
        "(--no-retry keeps a first attempt, e.g. for a quick look)"
    )


def _common_effect_note(post, prob: float) -> str:
    """The sds of the run effects every domain shares (``run_correlation = "common"``: the
    offset's and, with run slopes, the slope's), or ''."""
    import arviz as az
    import numpy as np

    lines = []
    for name, what in (("tau", "offsets"), ("kappa", "slopes")):
        if f"{name}_common" not in post:
            continue
        draws = post[f"{name}_common"].to_numpy().ravel()
        lo, hi = az.hdi(draws, hdi_prob=prob)
        own = post[f"{name}_own"].mean(("chain", "draw")).to_numpy()
        lines.append(
            f"run {what}: a part every domain of a run shares, sd {_fmt(draws.mean(), lo, hi)}, "
            f"plus one per domain (sd {np.min(own):.4g}-{np.max(own):.4g}); {name} above is "
            "their total"
        )
    return "\n".join(lines)


def _residual_correlation_note(post) -> str:
    """How a new run's offsets move together across domains (the fitted runs' residual
    correlation, :mod:`~bimix_bayes.bayes.residual_correlation`), or ''."""
    import numpy as np

    from bimix_bayes.bayes.residual_correlation import stored_residual_correlation

    corr = stored_residual_correlation(post)
    if corr is None:
        return ""
    off = corr[~np.eye(len(corr), dtype=bool)]
    domains = [str(d) for d in post["domain"].to_numpy()]
    table = pd.DataFrame(corr, index=domains, columns=domains).round(2)
    return (
        "new runs' offsets are drawn correlated across domains as the fitted runs' are "
        f"(new_run_correlation; mean correlation {off.mean():.2f}, {off.min():.2f} to "
        f"{off.max():.2f}), which widens a new mixture's mean over domains:\n" + table.to_string()
    )


def _noise_correlation_note(post) -> str:
    """How one checkpoint's noise moves across domains (:mod:`~bimix_bayes.bayes.
    checkpoint_noise`), or ''."""
    import numpy as np

    from bimix_bayes.bayes.checkpoint_noise import stored_noise_correlation, stored_noise_pairs

    corr = stored_noise_correlation(post, post.sizes["domain"])
    if corr is None or len(corr) < 2:
        return ""
    off_diagonal = ~np.eye(len(corr), dtype=bool)
    pairs = stored_noise_pairs(post, len(corr))
    seen = off_diagonal if pairs is None else off_diagonal & pairs
    if not seen.any():
        return (
            "a checkpoint's noise across domains: no pair of domains shares checkpoints enough "
            "to estimate it (noise_correlation; forecasts draw it independent)"
        )
    off = corr[seen]
    unseen = int((off_diagonal & ~seen).sum()) // 2
    gap = (
        f"; {unseen} of {int(off_diagonal.sum()) // 2} pairs had too few shared checkpoints "
        "and are taken as uncorrelated"
        if unseen
        else ""
    )
    return (
        "a checkpoint's noise moves together across its domains (noise_correlation; mean "
        f"correlation {off.mean():.2f}, {off.min():.2f} to {off.max():.2f}{gap}): forecasts of "
        "the mean over domains carry it"
    )


def _run_size_note(post) -> str:
    """How a size fit's mixtures' offsets move between sizes (:mod:`~bimix_bayes.bayes.
    run_size_offsets`), or ''."""
    import numpy as np

    from bimix_bayes.bayes.run_size_offsets import stored_run_size_offsets

    offsets = stored_run_size_offsets(post)
    if offsets is None:
        return ""
    varies = offsets.sd > 0  # a domain with sd 0 has no correlation to speak of
    off = offsets.corr[np.ix_(varies, varies)][~np.eye(int(varies.sum()), dtype=bool)]
    sds = ", ".join(
        f"{d} {sd:.4f}" for d, sd in zip(post["domain"].to_numpy(), offsets.sd, strict=True)
    )
    mean = f"; mean correlation across domains {off.mean():.2f} (sd > 0)" if off.size else ""
    return (
        "a mixture at a size the fit has not seen draws fresh luck (run_size_offset): sd of "
        f"the run x size offset (log loss) {sds}{mean}"
    )


def _wide_parameter_table(table: pd.DataFrame) -> str:
    """One row per domain, one 'mean [lower, upper]' cell per parameter."""
    cells = table.apply(lambda r: _fmt(r["mean"], r["lower"], r["upper"]), axis=1)
    wide = cells.unstack("parameter")
    wide = wide.reindex(
        index=table.index.get_level_values("domain").unique(),
        columns=table.index.get_level_values("parameter").unique(),
    )
    return "posterior mean [94% HDI], convention C = 1:\n" + wide.to_string()


def _seed_spread_note(idata) -> str:
    """The measured seed spread beside the fitted run-offset sd (or why there is none)."""
    from bimix_bayes.bayes.persistence import data_from_idata
    from bimix_bayes.bayes.summary import seed_spread_table

    table = seed_spread_table(idata, data_from_idata(idata))
    if table.empty:
        return (
            "\nseed spread: not measured (no mixture was trained with several seeds); the "
            "run-offset sd tau is then inferred from the mixtures alone"
        )
    return (
        "\nrun-to-run variation: sd of log loss between seeds of one mixture (measured, at "
        "their common steps), between mixtures (mixture_sd) and their ratio (snr), beside what "
        "the fit implies for two seeds at those steps (model_sd: run effects and checkpoint "
        "noise) and the fitted run-offset sd tau:\n" + table.to_string()
    )


# ------------------------------------------------------------------------------ summary
def cmd_summary(args: argparse.Namespace) -> int:
    """Parameters, diagnostics, and the least-squares comparison of a fit.

    Print a saved fit's provenance, diagnostics, and per-domain parameters with credible
    intervals beside the paper's least-squares estimates and bootstrap intervals (refitted on the
    stored data).

    Returns
    -------
    int
        0 (the table is written with ``--out``).
    """
    from bimix_bayes.bayes.law_params import posterior_law
    from bimix_bayes.bayes.persistence import diagnostics_from_idata, load_fit
    from bimix_bayes.bayes.summary import (
        comparison_table,
        cross_effects_meaning,
        cross_table,
        least_squares_left_out,
        posterior_table,
    )

    idata = load_fit(args.fit)
    attrs = idata.attrs
    diag = diagnostics_from_idata(idata)
    post = idata.posterior
    versions = json.loads(attrs["package_versions"])
    print(
        f"fit: {args.fit} (bimix-bayes {versions.get('bimix_bayes')}, pymc "
        f"{versions.get('pymc')}, nutpie {versions.get('nutpie')}, arviz {versions.get('arviz')})"
    )
    print(
        f"data: {attrs['data_source']} (sha256 {attrs['data_fingerprint'][:12]}...), "
        f"{idata.observed_data.sizes['obs']} observations, {attrs['data_volume']}"
    )
    print(
        f"sampler: {attrs['sampler']}, {post.sizes['chain']} chains x {post.sizes['draw']} "
        f"draws, seed {attrs['seed']}, {attrs['wall_seconds']:.1f} s; spec id {attrs['spec_id']}"
    )
    print(diag.report())
    print()
    if banner := diag.banner(UNTRUSTED):
        print(banner)
    p = args.prob
    resamples = f" ({args.bootstrap} bootstrap resamples)" if args.bootstrap else ""
    if why := least_squares_left_out(idata):
        print(f"least squares left out: {why}")
        table = comparison_table(idata, prob=p)
    else:
        with Progress.of(args, "summary").timed(
            f"least squares beside the posterior{resamples}", done="least squares done"
        ):
            table = comparison_table(idata, prob=p, n_bootstrap=args.bootstrap, seed=args.seed)
    rows = pd.DataFrame(
        {
            f"posterior mean [{100 * p:g}% HDI]": table.apply(
                lambda r: _fmt(r["mean"], r["lower"], r["upper"]), axis=1
            ),
            "r-hat": table["r_hat"].map("{:.3f}".format),
            "ESS bulk": table["ess_bulk"].map("{:.0f}".format),
            "ESS tail": table["ess_tail"].map("{:.0f}".format),
            f"least squares [{100 * p:g}% bootstrap]": table.apply(
                lambda r: (
                    "-"  # a parameter the paper's law does not have (alpha_drift)
                    if pd.isna(r["ls_estimate"])
                    else _fmt(r["ls_estimate"], r["ls_lower"], r["ls_upper"])
                    if args.bootstrap
                    else f"{r['ls_estimate']:.4g}"
                ),
                axis=1,
            ),
        }
    )
    law = posterior_law(post)
    if table["ls_estimate"].isna().all():
        print(f"per-domain parameters of the {law.name} law ({law.summary}):")
        rows = rows.drop(columns=rows.columns[-1])
    else:
        print(
            f"per-domain parameters (law {law.name}; convention C = 1), posterior beside the "
            "paper's least squares (BiMix):"
        )
    print(rows.to_string())
    cross = cross_table(idata, prob=p)
    if not cross.empty:
        print(f"\n{cross_effects_meaning(idata)}, mean [{100 * p:g}% HDI]:")
        wide = cross.apply(lambda r: _fmt(r["mean"], r["lower"], r["upper"]), axis=1)
        own = cross.index.get_level_values(0) == cross.index.get_level_values(1)
        print(wide.where(~own, "(own)").unstack("training_domain").to_string())
    early = NOISE_EXCESS in idata.posterior
    noise = posterior_table(
        idata, prob=p, var_names=("sigma", "tau", *((NOISE_EXCESS,) if early else ()))
    )
    print(
        f"\nnoise on log loss: sigma (per checkpoint) and tau (per run), mean [{100 * p:g}% HDI]:"
    )
    if early:
        print(
            f"({NOISE_EXCESS}: the first fitted checkpoint's noise sd is sqrt(1 + "
            f"{NOISE_EXCESS}^2) times sigma, falling with the step)"
        )
    print(_wide_parameter_table(noise).split("\n", 1)[1])
    if note := _common_effect_note(idata.posterior, p):
        print(note)
    if note := _residual_correlation_note(idata.posterior):
        print(note)
    if note := _noise_correlation_note(idata.posterior):
        print(note)
    if note := _run_size_note(idata.posterior):
        print(note)
    print(_seed_spread_note(idata))
    opt.write_table(args.out, table)
    return 0


# ------------------------------------------------------------------------------ predict
def cmd_predict(args: argparse.Namespace) -> int:
    """Forecast loss at more steps or for new mixtures.

    Posterior predictive loss per domain and averaged over domains. Without --mixture every
    observed run is continued to --steps; --mixture forecasts new mixtures instead (with a fresh
    run offset; add --runs to include observed runs too).

    Returns
    -------
    int
        0, after printing the forecast (written with ``--out``).
    """
    from bimix_bayes.bayes.forecast import interval_columns, predict
    from bimix_bayes.bayes.persistence import diagnostics_from_idata, load_fit, training_domains_of
    from bimix_bayes.bayes.sizes import size_label
    from bimix_bayes.data.loaders import read_mixtures

    idata = load_fit(args.fit)
    mixtures = (
        read_mixtures(args.mixture, domains=training_domains_of(idata))
        if args.mixture is not None
        else None
    )
    df = predict(
        idata,
        steps=args.steps,
        mixtures=mixtures,
        runs=args.runs or None,
        prob=args.prob,
        kind=args.kind,
        seed=args.seed,
        attach=False,
        size=args.size,
    )
    unit = idata.attrs["data_volume"]
    if args.size is not None:
        unit += f"; model size {size_label(args.size)} ({idata.attrs.get('size_kind')})"
    what = (
        "a new measurement (run offset and checkpoint noise included)"
        if args.kind == "predictive"
        else "the BiMix curve itself (no run effects)"
    )
    if banner := diagnostics_from_idata(idata).banner(UNTRUSTED):
        print(banner)
    dist = "posterior predictive distribution" if args.kind == "predictive" else "posterior"
    print(f"forecast of {what}; step in {unit}; median and central intervals of the {dist}:")
    cols = ["mixture", "source", "step", "domain", "median"]
    for p in args.prob:
        cols += list(interval_columns(p))
    shown = df[cols].copy()
    shown["step"] = shown["step"].map("{:.6g}".format)
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    opt.write_table(args.out, df, index=False)
    return 0


# ------------------------------------------------------------------------------ compare
def cmd_compare(args: argparse.Namespace) -> int:
    """Compare fits of the same data by PSIS-LOO with whole runs left out.

    Ranks models by their expected log predictive density of a run not in the data (the unit
    the mixture decision is about), through ArviZ's PSIS-LOO; runs with Pareto k > 0.7 are
    named (their estimate is unreliable).

    Returns
    -------
    int
        0, after printing the ranking (written with ``--out``).
    """
    from bimix_bayes.bayes.compare import compare_fits
    from bimix_bayes.bayes.persistence import diagnostics_from_idata, load_fit

    if not args.names:
        resolved = [Path(path).resolve() for path in args.fits]
        twice = sorted({str(p) for p in args.fits if resolved.count(Path(p).resolve()) > 1})
        if twice:
            raise UsageError(
                f"the same fit file is given more than once ({', '.join(twice)}): compare "
                "fits of different models of the same data (a fit compared with itself has "
                "nothing to choose)"
            )
    names = args.names or [str(path) for path in args.fits]
    if len(names) != len(args.fits) or len(set(names)) != len(names):
        raise UsageError(
            f"--names needs {len(args.fits)} distinct names, one per fit; got {args.names}"
        )
    fits = {name: load_fit(path) for name, path in zip(names, args.fits, strict=True)}
    for name, fit in fits.items():
        if banner := diagnostics_from_idata(fit).banner(f"{name}'s LOO score cannot be trusted"):
            print(banner)
    with Progress.of(args, "compare").timed(
        f"PSIS-LOO of {len(fits)} fits, whole runs left out", done="PSIS-LOO done"
    ):
        result = compare_fits(fits)
    print(
        "PSIS-LOO, one whole run left out at a time; elpd_loo = expected log predictive density "
        "of a new run (nats, higher is better), elpd_diff/dse = behind the best and its se, "
        "weight = stacking weight:"
    )
    print(result.table.to_string(float_format=lambda v: f"{v:.2f}"))
    print(result.scoring())
    print(result.verdict())
    for line in result.warnings():
        print(f"WARNING: {line}")
    opt.write_table(args.out, result.table)
    return 0


# ------------------------------------------------------------------------------ parser
def cmd_laws(args: argparse.Namespace) -> int:
    """List the mixing laws a fit can use (`bimix fit --law NAME` or the spec's [law] name).

    Each line gives the law's name, its equation and source, whether it keeps zero shares,
    lets other domains' shares move a domain's loss, and fits evaluation domains that are not
    training domains. Compare laws on your data with
    `bimix compare FIT_A.nc FIT_B.nc` (leave-one-run-out LOO) and `bimix backtest --law`.
    """
    from bimix_bayes.bayes.spec import merge_spec
    from bimix_bayes.laws.registry import LAWS

    default_law = merge_spec()["law"]["name"]
    for law in LAWS.values():
        default = " (default)" if law.name == default_law else ""
        traits = [
            "cross-domain" if law.cross_domain else "own share only",
            "zero shares kept" if law.finite_at_zero else "zero shares infinite",
        ]
        if law.fits_evaluation_only:
            traits.append("evaluation-only targets")
        print(f"{law.name}{default}: {law.summary} [{'; '.join(traits)}]")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``fit``, ``laws``, ``summary``, ``compare`` and ``predict`` on the sub-parsers."""
    opt.add_command(sub, "laws", cmd_laws)
    p = opt.add_command(sub, "fit", cmd_fit)
    opt.DataOptions.add_arguments(p)
    g = p.add_argument_group("fitting")
    opt.add_out(g, ".nc", help="where to save the fit (.nc)", required=True)
    opt.add_seed(g)
    opt.add_sampler_overrides(g)
    g.add_argument("--sampler", choices=["nutpie", "pymc"], help="overrides the spec's backend")
    g.add_argument(
        "--strict",
        action="store_true",
        help="exit with an error (code 1) when the fit fails its diagnostics",
    )

    p = opt.add_command(sub, "summary", cmd_summary)
    opt.add_fit_argument(p)
    p.add_argument("--prob", type=opt.probability, default=0.94, help="interval probability (0.94)")
    opt.add_bootstrap(p, help="least-squares bootstrap resamples (default 200; 0 for none)")
    opt.add_seed(p, help="bootstrap seed (default 0)")
    opt.add_out(p, ".csv", help="write the full table as CSV")

    p = opt.add_command(sub, "compare", cmd_compare)
    p.add_argument("fits", type=Path, nargs="+", metavar="FIT", help="fits saved by `bimix fit`")
    p.add_argument("--names", nargs="+", metavar="NAME", help="a short name per fit")
    opt.add_out(p, ".csv", help="write the ranking as CSV")

    p = opt.add_command(sub, "predict", cmd_predict)
    opt.add_fit_argument(p)
    p.add_argument(
        "--steps",
        type=opt.step_amount,
        nargs="+",
        required=True,
        help="steps (or tokens, as in the data) to forecast at",
    )
    opt.add_size(p)
    opt.add_options(
        p,
        ("--mixture", Path, None, "CSV/Parquet of new mixtures: a name column and one column "
         "per domain"),
    )  # fmt: skip
    p.add_argument("--runs", nargs="+", metavar="RUN", help="observed runs to continue")
    p.add_argument(
        "--prob",
        type=opt.probability,
        nargs="+",
        default=[0.5, 0.9],
        help="central interval probabilities (default 0.5 0.9)",
    )
    opt.add_options(
        p,
        ("--kind", ["predictive", "law"], "predictive", "predictive: a new measurement "
         "(default); law: the curve itself"),
    )  # fmt: skip
    opt.add_seed(p, help="seed of the predictive draws")
    opt.add_out(p, ".csv", help="write the table as CSV")
