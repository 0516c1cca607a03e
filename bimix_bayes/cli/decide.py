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
from typing import TYPE_CHECKING

from bimix_bayes.cli.options import (
    add_fit_argument,
    add_objective,
    add_out,
    add_seed,
    domain_weights,
    positive_float,
    probability,
)
from bimix_bayes.data.files import atomic_write_text, atomic_write_with

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["add_commands", "add_decision_inputs", "baseline_argument", "cmd_optimize", "cmd_rank"]

OBJECTIVE_HELP = (
    "mean (expected loss, default), quantile:Q (e.g. quantile:0.9) or cvar:Q (the mean "
    "of the worst 1-Q of posterior draws)"
)


def baseline_argument(text: str | None) -> pd.Series | str | None:
    """A mixture file (its single row) or an observed run's name.

    Examples
    --------
    >>> baseline_argument("mix003")
    'mix003'
    >>> baseline_argument(None) is None
    True
    """
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
    """Recommend a mixture for ``--step``, print it, and write it with ``--out``; returns 0."""
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
    """Rank ``--candidates`` at ``--step``, print the table, write it with ``--out``."""
    from bimix_bayes.bayes.persistence import diagnostics_from_idata, load_fit
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
    if banner := diagnostics_from_idata(idata).banner("do not trust the ranking"):
        print(banner)
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
    add_fit_argument(p)
    p.add_argument(
        "--step",
        type=positive_float,
        required=True,
        help="target step (or tokens, as in the fitted data)",
    )
    add_objective(p, help=OBJECTIVE_HELP)
    p.add_argument(
        "--weights",
        type=domain_weights,
        help="domain weights of the loss, e.g. code=2 doubles code's weight (unnamed domains "
        "keep 1, 0 leaves one out; default: plain mean)",
    )
    p.add_argument("--domains", nargs="+", metavar="DOMAIN", help="count only these domains")


def add_decision_inputs(parser: argparse.ArgumentParser, as_in_optimize: bool = False) -> None:
    """``--constraints`` and ``--baseline`` (help "as in `bimix optimize`" when
    ``as_in_optimize``, for the commands that pass them on)."""
    parser.add_argument(
        "--constraints",
        type=Path,
        help="as in `bimix optimize`"
        if as_in_optimize
        else "TOML/YAML file of bounds, fixed shares and available tokens per domain",
    )
    parser.add_argument(
        "--baseline",
        metavar="FILE|RUN",
        help="as in `bimix optimize`"
        if as_in_optimize
        else "mixture file with one row, or the name of an observed run",
    )


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
    add_decision_inputs(p)
    add_seed(p, help="seed of the predictive forecasts")
    p.add_argument(
        "--no-forecast", action="store_true", help="skip the per-domain predictive forecasts"
    )
    add_out(p, ".json", ".csv", help="write everything as .json, or the per-domain table as .csv")
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
    add_out(p, ".csv", help="write the ranking as CSV")
    p.set_defaults(func=cmd_rank)
