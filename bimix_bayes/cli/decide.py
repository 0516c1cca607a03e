"""``bimix optimize`` and ``bimix rank``: choose a mixture from a saved fit.

Examples
--------
>>> import argparse
>>> sub = argparse.ArgumentParser().add_subparsers()
>>> add_commands(sub)
>>> sorted(sub.choices)
['optimize', 'rank']
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bimix_bayes.cli.options import domain_weights, objective, positive_float, probability, suffix
from bimix_bayes.data.files import atomic_write_text, atomic_write_with

__all__ = ["add_commands", "baseline_argument"]

FAILED_BANNER = (
    "!!! this fit FAILED its convergence diagnostics (see `bimix summary`): do not trust the "
    "ranking !!!"
)


def baseline_argument(text: str | None):
    """A mixture file (its single row) or an observed run's name."""
    if text is None:
        return None
    path = Path(text)
    if path.suffix.lower() in (".csv", ".parquet", ".pq") or path.is_file():
        from bimix_bayes.data.loaders import read_mixtures
        from bimix_bayes.data.table import DataError

        table = read_mixtures(path)
        if len(table) != 1:
            raise DataError(
                f"{path}: a baseline file holds one mixture, found {len(table)}; to compare "
                "several, use `bimix rank --candidates`"
            )
        return table.iloc[0]
    return text


def cmd_optimize(args: argparse.Namespace) -> int:
    from bimix_bayes.bayes.persistence import load_fit
    from bimix_bayes.decision.constraints import load_constraints
    from bimix_bayes.decision.recommend import optimize

    idata = load_fit(args.fit)
    constraints = load_constraints(args.constraints) if args.constraints else None
    rec = optimize(
        idata,
        args.step,
        objective=args.objective,
        weights=args.weights,
        domains=args.domains,
        constraints=constraints,
        baseline=baseline_argument(args.baseline),
        forecast=not args.no_forecast,
        seed=args.seed,
    )
    print(rec.format())
    if args.out is not None:
        if args.out.suffix.lower() == ".json":
            atomic_write_text(args.out, json.dumps(rec.to_dict(), indent=2) + "\n")
        else:
            table = rec.domain_table()
            atomic_write_with(args.out, lambda p: table.to_csv(p, float_format="%.10g"))
        print(f"\nwrote {args.out}")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from bimix_bayes.bayes.persistence import load_fit
    from bimix_bayes.data.loaders import read_mixtures
    from bimix_bayes.decision.recommend import rank

    idata = load_fit(args.fit)
    table = rank(
        idata,
        read_mixtures(args.candidates),
        args.step,
        objective=args.objective,
        weights=args.weights,
        domains=args.domains,
        prob=args.prob,
    )
    if not table.attrs["fit_passed"]:
        print(FAILED_BANNER)
    print(
        f"candidates ranked by {table.attrs['objective_label']} of the weighted loss at "
        f"{args.step:.6g} {idata.attrs.get('data_volume', 'steps')}; p_best: posterior "
        "probability of being the best candidate; p_beats_next: of beating the next one down"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
    if args.out is not None:
        atomic_write_with(args.out, lambda p: table.to_csv(p, index=False, float_format="%.10g"))
        print(f"\nwrote {args.out}")
    return 0


def _add_objective_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("fit", type=Path, help="a fit saved by `bimix fit` (.nc)")
    p.add_argument(
        "--step",
        type=positive_float,
        required=True,
        help="target step (or tokens, as in the fitted data)",
    )
    p.add_argument(
        "--objective",
        type=objective,
        default="mean",
        help="mean (expected loss, default), quantile:Q (e.g. quantile:0.9) or cvar:Q (the mean "
        "of the worst 1-Q of posterior draws)",
    )
    p.add_argument(
        "--weights",
        type=domain_weights,
        help="domain weights of the loss, e.g. code=2 doubles code's weight (unnamed domains "
        "keep 1, 0 leaves one out; default: plain mean)",
    )
    p.add_argument("--domains", nargs="+", metavar="DOMAIN", help="count only these domains")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``optimize`` and ``rank`` on the ``bimix`` sub-parsers."""
    p = sub.add_parser(
        "optimize",
        help="recommend the mixture with the lowest posterior loss at a target step",
        description="Minimise the objective (over all posterior draws) of the weighted loss at "
        "--step over mixtures satisfying the constraints; compare the result with a baseline "
        "(default: the observed run with the lowest objective).",
    )
    _add_objective_options(p)
    p.add_argument(
        "--constraints",
        type=Path,
        help="TOML/YAML file of bounds, fixed shares and available tokens per domain",
    )
    p.add_argument(
        "--baseline",
        metavar="FILE|RUN",
        help="mixture file with one row, or the name of an observed run",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the predictive forecasts")
    p.add_argument(
        "--no-forecast", action="store_true", help="skip the per-domain predictive forecasts"
    )
    p.add_argument(
        "--out",
        type=suffix(".json", ".csv"),
        help="write everything as .json, or the per-domain table as .csv",
    )
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser(
        "rank",
        help="rank candidate mixtures by posterior loss, with intervals and P(best)",
        description="Score each candidate mixture by the objective of its weighted loss at "
        "--step under every posterior draw; sorted best first.",
    )
    _add_objective_options(p)
    p.add_argument(
        "--candidates",
        type=Path,
        required=True,
        help="CSV/Parquet of mixtures: a name column and one column per domain",
    )
    p.add_argument(
        "--prob", type=probability, default=0.9, help="central interval probability (0.9)"
    )
    p.add_argument("--out", type=suffix(".csv"), help="write the ranking as CSV")
    p.set_defaults(func=cmd_rank)
