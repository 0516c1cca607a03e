"""The ``bimix`` command line.

Exit codes: 0 on success, 1 on a data or fit error (one message on stderr; the traceback only
with ``--debug``), 2 on bad usage.

Examples
--------
>>> build_parser().parse_args(["fit-ls", "runs.csv", "--group-col", "size", "--group", "70M"]).group
'70M'
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bimix_bayes._version import __version__
from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.bayes.spec import SpecError
from bimix_bayes.cli import backtest as cli_backtest
from bimix_bayes.cli import decide as cli_decide
from bimix_bayes.cli import proxy as cli_proxy
from bimix_bayes.cli import report as cli_report
from bimix_bayes.cli.bayes import FitFailedError, add_commands
from bimix_bayes.cli.options import (
    count,
    nonnegative_float,
    pattern,
    positive_float,
    probability,
    suffix,
)
from bimix_bayes.data.files import atomic_write_with
from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.data.table import DataError, DataWarning, MixtureData
from bimix_bayes.leastsq.curve import FitError
from bimix_bayes.leastsq.fit import BiMixLeastSquares

__all__ = ["main"]

PROG = "bimix"


# ------------------------------------------------------------------------------ options
def _add_data_options(p: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        p.add_argument("data", type=Path, help="loss log: CSV (.csv, .csv.gz, .tsv) or Parquet")
    g = p.add_argument_group("reading the data" if positional else "reading --holdout")
    g.add_argument(
        "--layout",
        choices=["auto", "long", "wide"],
        default="auto",
        help="long: one row per (run, step, domain); wide: one row per (run, step) "
        "with a loss column per domain (default: detect)",
    )
    g.add_argument("--run-col", help="run id column (detected: run, run_id, run_name)")
    g.add_argument("--step-col", help="step or token column (detected: step, tokens, n_tokens...)")
    g.add_argument("--domain-col", help="long layout: evaluation domain column")
    g.add_argument("--loss-col", help="long layout: loss column")
    g.add_argument(
        "--prop-pattern", type=pattern, help="proportion column pattern, e.g. 'weight_{domain}'"
    )
    g.add_argument(
        "--loss-pattern",
        type=pattern,
        help="wide layout: loss column pattern, e.g. '{domain}_loss'",
    )
    g.add_argument(
        "--volume",
        choices=["steps", "tokens"],
        help="what the step column counts (default: tokens if its name says so)",
    )
    g.add_argument("--group-col", help="column splitting the file into groups (model size...)")
    g.add_argument("--group", help="group to keep, e.g. 122M")
    g.add_argument(
        "--exclude-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="leave out an evaluation domain (repeatable)",
    )
    g.add_argument(
        "--zero-policy",
        choices=["refuse", "drop", "epsilon"],
        default="refuse",
        help="observations of a domain with a zero share: refuse (default), drop "
        "them, or set zero shares to --epsilon and renormalise",
    )
    g.add_argument(
        "--epsilon",
        type=float,
        default=1e-4,
        help="share used by --zero-policy epsilon (default 1e-4)",
    )
    g.add_argument(
        "--sum-tol",
        type=float,
        default=1e-3,
        help="accepted |sum of proportions - 1| (default 1e-3)",
    )
    g.add_argument(
        "--missing",
        choices=["refuse", "drop"],
        default="refuse",
        help="observations with a missing loss: refuse (default) or drop them",
    )
    g.add_argument(
        "--drop-repeated-checkpoints",
        action="store_true",
        help="drop the earlier of a run's last two checkpoints when their losses are "
        "identical in every domain (a checkpoint logged twice)",
    )


def _load(args: argparse.Namespace) -> MixtureData:
    return load_data(
        args.data,
        layout=args.layout,
        run_col=args.run_col,
        step_col=args.step_col,
        domain_col=args.domain_col,
        loss_col=args.loss_col,
        group_col=args.group_col,
        group=args.group,
        prop_pattern=args.prop_pattern,
        loss_pattern=args.loss_pattern,
        volume=args.volume,
        exclude_domains=args.exclude_domain,
        zero_policy=args.zero_policy,
        epsilon=args.epsilon,
        sum_tol=args.sum_tol,
        missing_policy=args.missing,
        drop_repeated_checkpoints=args.drop_repeated_checkpoints,
    )


# ------------------------------------------------------------------------------ output
def _format_ls_table(fit: BiMixLeastSquares) -> str:
    table = fit.summary()
    has_iv = "alpha_lower" in table.columns
    rows = []
    for domain, row in table.iterrows():

        def cell(name: str, row=row) -> str:
            if has_iv:
                return f"{row[name]:.4g} [{row[name + '_lower']:.4g}, {row[name + '_upper']:.4g}]"
            return f"{row[name]:.4g}"

        rows.append(
            {
                "domain": domain,
                "obs": int(row["n_obs"]),
                "runs": int(row["n_runs"]),
                "A": cell("A"),
                "alpha": cell("alpha"),
                "B": cell("B"),
                "beta": cell("beta"),
                "R2(log)": f"{row['r2_log']:.4f}",
                "MRE": f"{100 * row['mre']:.2f}%",
                "max RE": f"{100 * row['max_re']:.2f}%",
            }
        )
    out = pd.DataFrame(rows).to_string(index=False)
    q = table["r2_log"]
    mre = 100 * table["mre"].mean()
    return f"{out}\n\nmean R2(log) {q.mean():.4f}; mean relative error {mre:.2f}%"


def _ls_header(fit: BiMixLeastSquares, data: MixtureData) -> str:
    iv = (
        f"; brackets: {100 * fit.interval:.0f}% bootstrap intervals over "
        f"{fit.n_bootstrap} resamples of whole runs"
        if fit.n_bootstrap
        else ""
    )
    loss = (
        "ordinary least squares" if fit.loss == "linear" else f"Huber (delta {fit.huber_delta:g})"
    )
    return (
        f"data: {data.summary()}\n"
        f"fit: BiMix per domain, {loss} on log loss (scipy TRF, best of several starts){iv}\n"
        f"law: L = A r^-alpha (B s^-beta + C), s in {data.volume}, convention C = 1 "
        f"(A = loss floor of the domain trained alone)\n"
    )


# ------------------------------------------------------------------------------ commands
def cmd_fit_ls(args: argparse.Namespace) -> int:
    data = _load(args)
    fit = BiMixLeastSquares(
        loss="huber" if args.huber is not None else "linear",
        huber_delta=args.huber if args.huber is not None else 1e-3,
        n_bootstrap=args.bootstrap,
        interval=args.interval,
        seed=args.seed,
    ).fit(data)
    print(_ls_header(fit, data))
    print(_format_ls_table(fit))
    if args.out is not None:
        fit.save(args.out)
        print(f"\nwrote {args.out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    params = default_parameters() if args.params is None else _read_params(args.params)
    mixtures = random_mixtures(
        args.runs, list(params.index), seed=args.seed, min_share=args.min_share
    )
    steps = np.unique(np.round(np.geomspace(args.first_step, args.last_step, args.checkpoints)))
    data = simulate(
        params, mixtures, steps, noise_sd=args.noise_sd, run_sd=args.run_sd, seed=args.seed
    )
    atomic_write_with(args.out, lambda p: data.to_long().to_csv(p, index=False))
    print(f"wrote {args.out}: {data.summary().replace('source: ', 'synthetic, ')}")
    print("true parameters (convention C = 1):")
    print(params.to_string())
    return 0


def _read_params(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, index_col=0)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: could not be read as a CSV of parameters ({exc})") from exc
    missing = [c for c in ("A", "alpha", "B", "beta", "C") if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: parameter table lacks column(s) {missing}; it needs one row per "
            "domain (first column: domain) and columns A, alpha, B, beta, C"
        )
    return table


def _domain_source(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), path.strip()


def cmd_entropy(args: argparse.Namespace) -> int:
    from bimix_bayes.proxy.entropy import (
        MEASURES,
        domain_entropies,
        entropy_mixtures,
        write_mixtures,
    )

    sources = dict(args.sources)
    if len(sources) != len(args.sources):
        raise DataError("each domain name may appear only once")
    measures = MEASURES if args.measure == "all" else (args.measure,)
    table = domain_entropies(
        sources,
        measures=measures,
        tokenizer=args.tokenizer,
        chunk_size=args.chunk_size,
        sample_chunks=args.sample_chunks,
        correction=args.correction,
        seed=args.seed,
        text_field=args.text_field,
    )
    mixtures = entropy_mixtures(table, args.temperature)
    print(
        f"tokenizer: {table.attrs['tokenizer']}; chunks of {args.chunk_size} tokens; entropy "
        f"in nats{'' if args.correction == 'none' else ' (Miller-Madow corrected)'}"
        + (
            f"; VNE on a sample of up to {args.sample_chunks} chunks per domain"
            if "vne" in measures
            else ""
        )
    )
    shown = table.copy()
    shown["tokens"] = shown["tokens"].map("{:,.0f}".format)
    print(shown.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"\nproportions: softmax(entropy / {args.temperature:g}) per measure (paper Eq. 13):")
    print(mixtures.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.out is not None:
        write_mixtures(mixtures, args.out)
        print(f"\nwrote {args.out} (read by `bimix predict --mixture`)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bimix_bayes.cli.demo import run_demo

    return run_demo(
        out_dir=args.out_dir, seed=args.seed, synthetic=args.synthetic, report=args.report
    )


# ------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="BiMix data-mixing laws: fit loss logs of proxy runs, forecast, decide.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "fit-ls",
        help="the paper's least-squares fit, per domain",
        description="Fit BiMix per evaluation domain by least squares on log "
        "loss (the paper's method) and print the coefficients with "
        "run-bootstrap intervals and fit quality.",
    )
    _add_data_options(p)
    g = p.add_argument_group("fitting")
    g.add_argument(
        "--bootstrap",
        type=count(0),
        default=200,
        help="bootstrap resamples of whole runs (default 200; 0 for none)",
    )
    g.add_argument(
        "--interval",
        type=probability,
        default=0.9,
        help="central probability of the intervals (default 0.9)",
    )
    g.add_argument(
        "--huber",
        type=positive_float,
        metavar="DELTA",
        help="use a Huber loss with this threshold on log-loss residuals",
    )
    g.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    g.add_argument(
        "--out", type=suffix(".csv", ".json"), help="write the table: .csv, or .json with settings"
    )
    p.set_defaults(func=cmd_fit_ls)

    p = sub.add_parser(
        "simulate",
        help="write a synthetic dataset drawn from the BiMix law",
        description="Simulate loss curves from the BiMix law (log-normal noise "
        "and a per-(run, domain) offset) and write them as a long CSV.",
    )
    p.add_argument("--out", type=suffix(".csv"), required=True, help="CSV file to write")
    p.add_argument(
        "--params",
        type=Path,
        help="CSV of true parameters: domain, A, alpha, B, beta, C (default: 5 built-in domains)",
    )
    p.add_argument("--runs", type=count(2), default=12, help="number of mixtures (default 12)")
    p.add_argument(
        "--min-share",
        type=nonnegative_float,
        default=0.02,
        help="smallest share of any domain (default 0.02)",
    )
    p.add_argument(
        "--first-step", type=positive_float, default=500.0, help="first checkpoint (default 500)"
    )
    p.add_argument(
        "--last-step",
        type=positive_float,
        default=20_000.0,
        help="last checkpoint (default 20000)",
    )
    p.add_argument(
        "--checkpoints",
        type=count(3),
        default=10,
        help="log-spaced checkpoints per run (default 10)",
    )
    p.add_argument(
        "--noise-sd",
        type=nonnegative_float,
        default=0.01,
        help="sd of the per-checkpoint noise on log loss (default 0.01)",
    )
    p.add_argument(
        "--run-sd",
        type=nonnegative_float,
        default=0.005,
        help="sd of the per-(run, domain) offset on log loss (default 0.005)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "demo",
        help="the main job on the default data, start to finish",
        description="Run the full pipeline (least squares, a forecast backtest, the Bayesian "
        "fit, forecasts, the recommended mixture, a ranking, the HTML report) on the embedded "
        "real data: loss curves of tiny language models trained on 5 text domains by `bimix "
        "study`. --synthetic runs it on simulated data scored against the known truth.",
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="simulated data with known parameters instead of the embedded study",
    )
    p.add_argument(
        "--report",
        type=suffix(".html"),
        help="where to write the HTML report (default: OUT_DIR/report.html)",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=Path("out/demo"),
        help="folder for the demo's files (default out/demo)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "entropy",
        help="candidate mixtures from the domains' text entropy (no training)",
        description="Entropy proxies of BiMix (section 4): Shannon (se), conditional (ce), "
        "joint (je) and von Neumann (vne) entropy of each domain's tokens, and the mixtures "
        "softmax(entropy) gives. Text is streamed; memory stays bounded.",
    )
    p.add_argument(
        "sources",
        nargs="+",
        type=_domain_source,
        metavar="NAME=PATH",
        help="a domain and its text: a file, a folder, a glob pattern or a .jsonl",
    )
    p.add_argument(
        "--measure",
        choices=["se", "ce", "je", "vne", "all"],
        default="all",
        help="which entropy (default all; the paper recommends ce)",
    )
    p.add_argument(
        "--tokenizer",
        default="byte",
        help="byte (default), bpe (trained here on a sample), or a tokenizer file",
    )
    p.add_argument("--chunk-size", type=count(2), default=1024, help="tokens per chunk (1024)")
    p.add_argument(
        "--sample-chunks",
        type=count(2),
        default=500,
        help="chunks sampled per domain for vne (default 500)",
    )
    p.add_argument(
        "--correction",
        choices=["none", "miller_madow"],
        default="none",
        help="small-sample correction of the plug-in entropies",
    )
    p.add_argument(
        "--temperature", type=positive_float, default=1.0, help="softmax temperature (default 1)"
    )
    p.add_argument("--text-field", default="text", help="JSONL field holding the text")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    p.add_argument("--out", type=suffix(".csv"), help="write the mixtures as CSV")
    p.set_defaults(func=cmd_entropy)

    add_commands(sub, _add_data_options)
    cli_decide.add_commands(sub)
    cli_report.add_commands(sub, _add_data_options)
    cli_backtest.add_commands(sub, _add_data_options)
    cli_proxy.add_commands(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, DataWarning):
        kind = "note"
    elif issubclass(category, FitWarning):
        kind = "WARNING"
    else:
        kind = "warning"
    print(f"{PROG}: {kind}: {message}", file=sys.stderr)


def fast_compile_settings() -> None:
    """Compile sampler code with LLVM optimisation level 0 unless the user chose a level.

    For the BiMix model this cuts nutpie's compile time by about 4 s with no measurable cost in
    sampling speed (benchmarks/bench_fit.py). Numba reads the level when it is first imported,
    so this only works before PyMC is loaded; it applies to this process only.
    """
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_OPT", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    fast_compile_settings()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "group", None) is not None and getattr(args, "group_col", None) is None:
        parser.error("--group needs --group-col naming the column that holds the groups")
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("default", DataWarning)
        try:
            if getattr(args, "needs_loader", False):
                return int(args.func(args, _load))
            return int(args.func(args))
        except (DataError, FitError, FitFailedError, SpecError, ValueError, OSError) as exc:
            if args.debug:
                traceback.print_exc()
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
