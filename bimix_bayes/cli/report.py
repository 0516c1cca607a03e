"""``bimix report``: a self-contained HTML report of a saved fit.

Examples
--------
>>> import argparse
>>> sub = argparse.ArgumentParser().add_subparsers()
>>> add_commands(sub, lambda p, positional=True: None)
>>> sorted(sub.choices)
['report']
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from bimix_bayes.cli.decide import baseline_argument
from bimix_bayes.cli.options import count, objective, positive_float, suffix

__all__ = ["add_commands"]


def _protocol(text: str):
    from bimix_bayes.evaluation.backtest import parse_protocol

    try:
        return parse_protocol(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_report(args: argparse.Namespace, load_data_from_args: Callable) -> int:
    from bimix_bayes.bayes.persistence import data_from_idata, load_fit
    from bimix_bayes.decision.constraints import load_constraints
    from bimix_bayes.evaluation.backtest import backtest
    from bimix_bayes.report.html import write_report

    t0 = time.perf_counter()
    # Every input is read and checked before the slow work (backtests refit the model).
    idata = load_fit(args.fit)
    constraints = load_constraints(args.constraints) if args.constraints else None
    baseline = baseline_argument(args.baseline)
    holdout = None
    if args.holdout is not None:
        args.data = args.holdout
        holdout = load_data_from_args(args)
    backtests = [
        backtest(
            data_from_idata(idata), p, method="both", seed=args.seed, n_bootstrap=args.bootstrap
        )
        for p in args.backtest
    ]
    path = write_report(
        idata,
        args.out,
        step=args.step,
        holdout=holdout,
        objective=args.objective.name,
        constraints=constraints,
        baseline=baseline,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        command=shlex.join(["bimix", *args.argv]),
        fit_path=args.fit,
        backtests=backtests,
    )
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB, {time.perf_counter() - t0:.1f} s); open it in a browser")
    return 0


def add_commands(sub: argparse._SubParsersAction, add_data_options: Callable) -> None:
    """Register ``report`` on the ``bimix`` sub-parsers."""
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a fit",
        description="One HTML file that opens offline: provenance, diagnostics, observed vs "
        "fitted, extrapolation with least squares beside it, parameters, and the mixture "
        "decision. --holdout marks and scores observations the fit did not see (read with the "
        "same options as `bimix fit`).",
    )
    p.add_argument("fit", type=Path, help="a fit saved by `bimix fit` (.nc)")
    p.add_argument("--out", type=suffix(".html"), required=True, help="the report (.html)")
    p.add_argument(
        "--step",
        type=positive_float,
        help="target of the extrapolation and the decision (default: twice the last checkpoint)",
    )
    p.add_argument("--holdout", type=Path, help="held-out loss log (CSV/Parquet) to mark and score")
    p.add_argument("--objective", type=objective, default="mean", help="as in `bimix optimize`")
    p.add_argument("--constraints", type=Path, help="as in `bimix optimize`")
    p.add_argument("--baseline", metavar="FILE|RUN", help="as in `bimix optimize`")
    p.add_argument(
        "--bootstrap", type=count(0), default=200, help="least-squares bootstrap resamples (200)"
    )
    p.add_argument(
        "--backtest",
        action="append",
        type=_protocol,
        default=[],
        metavar="PROTOCOL",
        help="also backtest the fitted runs (last-checkpoint, horizon:F, holdout-mixtures:K; "
        "repeatable; Bayes and least squares) and show it; each refits the model",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and forecasts")
    add_data_options(p, positional=False)
    p.set_defaults(func=cmd_report, needs_loader=True, data=None)
