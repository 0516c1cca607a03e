"""The ``bimix backtest`` command: how good are the law's forecasts on the user's own runs?

Registered on the main parser by :func:`add_commands` (see :mod:`bimix_bayes.cli.app`); the work is
done by :func:`bimix_bayes.evaluation.backtest.backtest`.

Examples
--------
>>> from bimix_bayes.cli.app import build_parser
>>> args = build_parser().parse_args(["backtest", "runs.csv", "--protocol", "horizon:0.5"])
>>> args.protocol, args.method
(Protocol(kind='horizon', value=0.5), 'both')
"""

from __future__ import annotations

import argparse
import time

from bimix_bayes.cli import options as opt
from bimix_bayes.cli.progress import Progress, backtest_progress, duration
from bimix_bayes.data.files import check_writable
from bimix_bayes.data.table import DataError, MixtureData
from bimix_bayes.evaluation.backtest import PROTOCOL_HELP, Protocol, ProtocolError, parse_protocol

__all__ = ["add_commands", "cmd_backtest", "protocol_argument"]


def protocol_argument(text: str) -> Protocol:
    """argparse type: a parsed protocol (a bad string is a usage error, exit code 2).

    Examples
    --------
    >>> protocol_argument("last-checkpoint")
    Protocol(kind='last-checkpoint', value=None)
    """
    try:
        return parse_protocol(text)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_backtest(args: argparse.Namespace) -> int:
    """Fit on part of the data, forecast the rest, and score the forecasts.

    Measure how good the law's forecasts are on these runs: fit on part of the data, predict the
    held-out part, and report mean/max relative error, R^2 on log loss, Spearman rank
    correlation of held-out mixtures, coverage and width of the 50% and 90% intervals, and
    (Bayesian) the log predictive density, per domain, for the average over domains and pooled.
    Protocols: last-checkpoint (fit all but each run's last checkpoint, predict it), horizon:F
    (fit steps <= F x the last step, predict the later ones), holdout-mixtures:K (fit K random
    runs, predict the others; --splits random splits), holdout-runs:PATTERN (fit the runs whose
    names match the shell pattern, predict the others: the data's own split, e.g. train-* for
    RegMix), holdout-size:N (data with --size-col: fit the sizes below N, at least two, and
    predict the others at their sizes). Methods: bayes, ls, lightgbm (RegMix's regressor, an
    optional extra; no size dimension), both (bayes and ls) or all (the three).

    Returns
    -------
    int
        0, after printing the metrics table and writing the CSV files asked for.

    Raises
    ------
    ValueError
        Data, spec and protocol problems (``DataError``, ``SpecError``, ``ProtocolError``), which
        ``bimix`` turns into exit code 1 with one message on stderr; a malformed ``--protocol``
        is a usage error (exit code 2).
    """
    from bimix_bayes.evaluation.backtest import backtest
    from bimix_bayes.evaluation.lightgbm_method import import_lightgbm
    from bimix_bayes.evaluation.runner import method_list

    methods = method_list(args.method)
    if "lightgbm" in methods:
        import_lightgbm()  # a missing extra fails before the data are read
    if args.points is not None:  # --out was checked by main
        check_writable(args.points, option="--points")
    data = _load(args)
    spec = opt.model_spec(args)

    progress = Progress.of(args, "backtest")
    t0 = time.perf_counter()
    common = {"method": args.method, "seed": args.seed, "n_splits": args.splits}
    lines = backtest_progress(progress, data, args.protocol, **common)
    result = backtest(
        data,
        args.protocol,
        spec=spec,
        n_bootstrap=args.bootstrap,
        progress=lines,
        **common,
    )
    fits = len(result.fits)
    progress(f"done in {duration(time.perf_counter() - t0)} ({fits} fit{'s' * (fits > 1)})")
    print(result.to_text())
    if args.out is not None:
        result.to_csv(args.out)
        print(f"\nwrote {args.out} (metrics)")
    if args.points is not None:
        result.to_csv(args.points, points=True)
        print(f"wrote {args.points} (one row per held-out point)")
    return 0


def _load(args: argparse.Namespace) -> MixtureData:
    """The data of ``bimix backtest``: one step per run (a fixed budget, e.g. RegMix's runs) is
    accepted and fitted by the fixed-budget law; otherwise three steps per domain are needed,
    as for ``bimix fit``."""
    from bimix_bayes.data.loaders import load_data
    from bimix_bayes.evaluation.splits import fixed_budget

    options = opt.DataOptions.from_args(args)
    data = options.with_schedule(load_data(args.data, **options.to_kwargs(), min_steps=1))
    if not fixed_budget(data):
        try:
            data.check_design(min_steps=3)
        except DataError as exc:
            raise DataError(f"{args.data}: {exc}") from None
    return data


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``backtest`` on the ``bimix`` sub-parsers (DATA and the data-reading options of
    :class:`~bimix_bayes.cli.options.DataOptions`, like ``fit``)."""
    p = opt.add_command(sub, "backtest", cmd_backtest)
    opt.DataOptions.add_arguments(p)
    g = p.add_argument_group("backtest")
    g.add_argument(
        "--protocol",
        type=protocol_argument,
        required=True,
        metavar="P",
        help=PROTOCOL_HELP,
    )
    opt.add_options(
        g,
        ("--method", ["bayes", "ls", "lightgbm", "both", "all"], "both", "hierarchical "
         "Bayesian model, the paper's least squares, RegMix's LightGBM regressor (needs "
         "pip install 'bimix-bayes[lightgbm]'), both = bayes + ls (default), or all three"),
    )  # fmt: skip
    opt.add_seed(g, help="seed of splits, sampler, bootstrap, LightGBM (0)")
    opt.add_options(
        g, ("--splits", opt.count(1), 5, "random splits for holdout-mixtures (default 5)")
    )
    opt.add_bootstrap(
        g, help="least-squares run-bootstrap resamples for its intervals (default 200)"
    )
    opt.add_sampler_overrides(g)
    opt.add_out(g, ".csv", help="write the metrics table as CSV")
    opt.add_options(
        g, ("--points", opt.suffix(".csv"), None, "write the per-point table (forecasts) as CSV")
    )
    g.add_argument(
        "--verbose",
        action="store_true",
        help="kept for old scripts: a line per split and fit is now always written to stderr "
        "(--quiet hides it)",
    )
