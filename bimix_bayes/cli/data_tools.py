"""Commands that make data rather than fit it: ``bimix simulate`` (a synthetic study drawn from
the law) and ``bimix entropy`` (candidate mixtures from the domains' text, no training).

Examples
--------
>>> import argparse
>>> sub = argparse.ArgumentParser(prog="bimix").add_subparsers(dest="command")
>>> add_simulate(sub)
>>> add_entropy(sub)
>>> sub.choices["simulate"].parse_args(["--out", "sim.csv"]).runs
12
>>> sub.choices["entropy"].parse_args(["web=web.txt", "code=src/"]).sources
[('web', 'web.txt'), ('code', 'src/')]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bimix_bayes.cli import options as opt
from bimix_bayes.cli.errors import UsageError
from bimix_bayes.cli.progress import Progress
from bimix_bayes.data.files import atomic_write_with
from bimix_bayes.data.simulate import (
    DEFAULT_SIZE_SLOPES,
    default_parameters,
    random_mixtures,
    simulate,
)
from bimix_bayes.data.table import DataError
from bimix_bayes.laws.schedule import LRSchedule

__all__ = ["add_entropy", "add_simulate", "cmd_entropy", "cmd_simulate"]


# ------------------------------------------------------------------------------ simulate
def cmd_simulate(args: argparse.Namespace) -> int:
    """Write a synthetic dataset drawn from the BiMix law.

    Simulate loss curves from the BiMix law (log-normal noise and a per-(run, domain) offset) and
    write them as a long CSV.

    Returns
    -------
    int
        0, after printing the true parameters.
    """
    params = default_parameters() if args.params is None else _read_params(args.params)
    mixtures = random_mixtures(
        args.runs, list(params.index), seed=args.seed, min_share=args.min_share
    )
    steps = np.unique(np.round(np.geomspace(args.first_step, args.last_step, args.checkpoints)))
    if args.sizes and args.lr_schedule:
        raise UsageError("--sizes and --lr-schedule cannot be simulated together (yet)")
    try:
        schedule = None if args.lr_schedule is None else LRSchedule.parse(args.lr_schedule)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--lr-schedule: {exc}") from None
    data = simulate(
        params,
        mixtures,
        steps,
        noise_sd=args.noise_sd,
        run_sd=args.run_sd,
        seed=args.seed,
        schedule=schedule,
        sizes=args.sizes,
    )
    atomic_write_with(args.out, lambda p: data.to_long().to_csv(p, index=False))
    print(f"wrote {args.out}: {data.summary().replace('source: ', 'synthetic, ')}")
    at = "" if not args.sizes else " at the geometric mean of the sizes"
    print(f"true parameters (convention C = 1){at}:")
    print(params.to_string())
    if args.sizes:
        slopes = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_SIZE_SLOPES.items())
        print(f"size slopes (per unit of log model size, every domain): {slopes}")
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


def add_simulate(sub: argparse._SubParsersAction) -> None:
    """Register ``simulate`` on the ``bimix`` sub-parsers."""
    p = opt.add_command(sub, "simulate", cmd_simulate)
    opt.add_out(p, ".csv", help="CSV file to write", required=True)
    opt.add_options(
        p,
        ("--params", Path, None, "CSV of true parameters: domain, A, alpha, B, beta, C (default: "
         "5 built-in domains)"),
        ("--runs", opt.count(2), 12, "number of mixtures (default 12)"),
        ("--min-share", opt.nonnegative_float, 0.02, "smallest share of any domain (default 0.02)"),
        ("--first-step", opt.step_amount, 500.0, "first checkpoint (default 500)"),
        ("--last-step", opt.step_amount, 20_000.0, "last checkpoint (default 20000)"),
        ("--checkpoints", opt.count(3), 10, "log-spaced checkpoints per run (default 10)"),
        ("--noise-sd", opt.nonnegative_float, 0.01, "sd of the per-checkpoint noise on log loss "
         "(default 0.01)"),
        ("--run-sd", opt.nonnegative_float, 0.005, "sd of the per-(run, domain) offset on log loss "
         "(default 0.005)"),
        ("--sizes", _model_sizes, None, "model sizes, comma-separated (e.g. 122M,310M,680M): "
         "every mixture at each, in a size column (read it with --size-col size)"),
        ("--lr-schedule", str, None, "a learning-rate schedule every run was trained with, as "
         "bimix fit takes it (e.g. cosine:total=20000,warmup=200,final=0.1): the curves bend "
         "with it (fit them with the same option); not with --sizes"),
    )  # fmt: skip
    opt.add_seed(p)


def _model_sizes(text: str) -> list[float]:
    """``122M,310M,680M`` -> sizes (each as ``--size`` reads it); a size given twice is an
    error."""
    sizes = [opt.model_size(part) for part in text.split(",") if part.strip()]
    if len(set(sizes)) < len(sizes):
        raise argparse.ArgumentTypeError(f"a size is given twice in {text!r}")
    return sizes


# ------------------------------------------------------------------------------ entropy
def _domain_source(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), path.strip()


def cmd_entropy(args: argparse.Namespace) -> int:
    """Candidate mixtures from the domains' text entropy (no training).

    Entropy proxies of BiMix (section 4): Shannon (se), conditional (ce), joint (je) and von
    Neumann (vne) entropy of each domain's tokens, and the mixtures softmax(entropy) gives. Text
    is streamed; memory stays bounded.

    Returns
    -------
    int
        0, after printing the entropies and the mixtures (written with ``--out``).
    """
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
    progress = Progress.of(args, "entropy")
    with progress.timed(
        f"reading the text of {len(sources)} domains ({args.tokenizer} tokenizer)",
        done="entropies measured",
    ):
        table = domain_entropies(
            sources,
            measures=measures,
            tokenizer=args.tokenizer,
            chunk_size=args.chunk_size,
            sample_chunks=args.sample_chunks,
            correction=args.correction,
            seed=args.seed,
            text_field=args.text_field,
            progress=False if progress.quiet else None,  # None: a bar in a terminal
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


def add_entropy(sub: argparse._SubParsersAction) -> None:
    """Register ``entropy`` on the ``bimix`` sub-parsers."""
    p = opt.add_command(sub, "entropy", cmd_entropy)
    p.add_argument(
        "sources",
        nargs="+",
        type=_domain_source,
        metavar="NAME=PATH",
        help="a domain and its text: a file, a folder, a glob pattern or a .jsonl",
    )
    opt.add_options(
        p,
        ("--measure", ["se", "ce", "je", "vne", "all"], "all", "which entropy (default all; the "
         "paper recommends ce)"),
        ("--tokenizer", None, "byte", "byte (default), bpe (trained here on a sample), or a "
         "tokenizer file"),
        ("--chunk-size", opt.count(2), 1024, "tokens per chunk (1024)"),
        ("--sample-chunks", opt.count(2), 500, "chunks sampled per domain for vne (default 500)"),
        ("--correction", ["none", "miller_madow"], "none", "small-sample correction of the "
         "plug-in entropies"),
        ("--temperature", opt.positive_float, 1.0, "softmax temperature (default 1)"),
        ("--text-field", None, "text", "JSONL field holding the text"),
    )  # fmt: skip
    opt.add_seed(p, help="seed of the sampling (default 0)")
    opt.add_out(p, ".csv", help="write the mixtures as CSV")
