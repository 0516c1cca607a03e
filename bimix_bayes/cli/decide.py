"""``bimix optimize`` and ``bimix rank``: choose a mixture from a saved fit.

Examples
--------
>>> from bimix_bayes.cli.app import build_parser
>>> args = build_parser().parse_args(["rank", "fit.nc", "--step", "4e4", "--candidates", "c.csv",
...                                   "--objective", "cvar:0.9", "--weights", "code=2"])
>>> args.step, args.objective.name, args.weights, args.prob
(40000.0, 'cvar:0.9', {'code': 2.0}, 0.9)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bimix_bayes.cli import options as opt

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
    """Recommend the mixture with the lowest posterior loss at a target step.

    Minimise the objective (over all posterior draws) of the weighted loss at --step over
    mixtures satisfying the constraints; compare the result with a baseline (default: the
    observed run with the lowest objective).

    Returns
    -------
    int
        0, after printing the recommendation (written with ``--out``: all of it as .json, the
        per-domain table as .csv).
    """
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
        within_design=args.within_design,
        size=args.size,
    )
    print(rec.format())
    opt.write_result(args.out, rec.to_dict(), rec.domain_table())
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    """Rank candidate mixtures by posterior loss, with intervals and P(best).

    Score each candidate mixture by the objective of its weighted loss at --step under every
    posterior draw; sorted best first.

    Returns
    -------
    int
        0, after printing the ranking (written with ``--out``).
    """
    from bimix_bayes.bayes.persistence import diagnostics_from_idata, load_fit, training_domains_of
    from bimix_bayes.bayes.sizes import size_label
    from bimix_bayes.data.loaders import read_mixtures
    from bimix_bayes.decision.recommend import rank

    idata = load_fit(args.fit)
    table = rank(
        idata,
        read_mixtures(args.candidates, domains=training_domains_of(idata)),
        args.step,
        objective=args.objective,
        weights=args.weights,
        domains=args.domains,
        prob=args.prob,
        size=args.size,
    )
    if banner := diagnostics_from_idata(idata).banner("do not trust the ranking"):
        print(banner)
    print(
        f"candidates ranked by {table.attrs['objective_label']} of the weighted loss at "
        f"{args.step:.6g} {idata.attrs.get('data_volume', 'steps')}"
        + ("" if args.size is None else f" at model size {size_label(args.size)}")
        + "; p_best: posterior "
        "probability of being the best candidate; p_beats_next: of beating the next one down"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.5f}", na_rep="-"))
    opt.write_table(args.out, table, index=False)
    return 0


def _add_objective_options(p: argparse.ArgumentParser) -> None:
    opt.add_fit_argument(p)
    p.add_argument(
        "--step",
        type=opt.step_amount,
        required=True,
        help="target step (or tokens, as in the fitted data)",
    )
    opt.add_size(p)
    opt.add_objective(p, help=OBJECTIVE_HELP)
    opt.add_options(
        p,
        ("--weights", opt.domain_weights, None, "domain weights of the loss, comma-separated, "
         "e.g. code=2,books=0.5 (code counts twice; unnamed domains keep 1, 0 leaves one out; "
         "default: plain mean)"),
    )  # fmt: skip
    p.add_argument("--domains", nargs="+", metavar="DOMAIN", help="count only these domains")


def add_decision_inputs(parser: argparse.ArgumentParser, as_in_optimize: bool = False) -> None:
    """``--constraints`` and ``--baseline`` (help "as in `bimix optimize`" when
    ``as_in_optimize``, for the commands that pass them on)."""
    same = "as in `bimix optimize`" if as_in_optimize else None
    opt.add_options(
        parser,
        ("--constraints", Path, None, same or "TOML/YAML file of bounds, fixed shares and "
         "available tokens per domain: [domains.NAME] with min, max, fixed, available_tokens, "
         "max_epochs; top-level total_tokens, max_epochs (README, `bimix optimize`)"),
    )  # fmt: skip
    parser.add_argument(
        "--baseline",
        metavar="FILE|RUN",
        help=same or "mixture file with one row, or the name of an observed run",
    )
    parser.add_argument(
        "--within-design",
        action="store_true",
        help=same
        or "keep every share within the range of the fitted runs' shares (the law "
        "is extrapolated outside it)",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``optimize`` and ``rank`` on the ``bimix`` sub-parsers."""
    p = opt.add_command(sub, "optimize", cmd_optimize)
    _add_objective_options(p)
    add_decision_inputs(p)
    opt.add_seed(p, help="seed of the predictive forecasts")
    p.add_argument(
        "--no-forecast", action="store_true", help="skip the per-domain predictive forecasts"
    )
    opt.add_out(
        p, ".json", ".csv", help="write everything as .json, or the per-domain table as .csv"
    )

    p = opt.add_command(sub, "rank", cmd_rank)
    _add_objective_options(p)
    p.add_argument(
        "--candidates",
        type=Path,
        required=True,
        help="CSV/Parquet of mixtures: a name column and one column per domain",
    )
    opt.add_options(p, ("--prob", opt.probability, 0.9, "central interval probability (0.9)"))
    opt.add_out(p, ".csv", help="write the ranking as CSV")
