"""``bimix report``: a self-contained HTML report of a saved fit.

Examples
--------
>>> from bimix_bayes.cli.app import build_parser
>>> args = build_parser().parse_args(["report", "fit.nc", "--out", "fit.html",
...                                   "--backtest", "last-checkpoint", "--holdout", "new.csv"])
>>> args.backtest, args.holdout, args.layout
([Protocol(kind='last-checkpoint', value=None)], PosixPath('new.csv'), 'auto')
"""

from __future__ import annotations

import argparse
import shlex
import time
import warnings
from pathlib import Path

from bimix_bayes.cli import options as opt
from bimix_bayes.cli.backtest import protocol_argument
from bimix_bayes.cli.decide import add_decision_inputs, baseline_argument
from bimix_bayes.cli.errors import UsageError
from bimix_bayes.cli.progress import Progress, backtest_progress, duration

__all__ = ["add_commands", "cmd_report"]


def cmd_report(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report of a fit.

    One HTML file that opens offline: provenance, diagnostics, observed vs fitted, extrapolation
    with least squares beside it, parameters, and the mixture decision. --holdout marks and
    scores observations the fit did not see (read with the same options as `bimix fit`; for a
    fit of several sizes with --size-col, each forecast at its own size).

    Returns
    -------
    int
        0, once the report is written (with ``--holdout`` and ``--backtest`` when given).
    """
    from bimix_bayes.bayes.persistence import data_from_idata, load_fit, spec_from_idata
    from bimix_bayes.bayes.sizes import SizeExtrapolationWarning, size_offset
    from bimix_bayes.data.table import DataError
    from bimix_bayes.decision.constraints import MixtureConstraints, load_constraints
    from bimix_bayes.evaluation.backtest import backtest
    from bimix_bayes.evaluation.lightgbm_method import import_lightgbm
    from bimix_bayes.evaluation.runner import method_list
    from bimix_bayes.report.html import check_holdout_sizes, write_report

    t0 = time.perf_counter()
    if getattr(args, "lr_schedule", None):
        raise UsageError(
            "report reads the learning-rate schedule saved with the fit; --lr-schedule is not "
            "used here (refit with it: `bimix fit DATA --lr-schedule ...`)"
        )
    # Every input is read and checked before the slow work (backtests refit the model).
    if args.backtest and "lightgbm" in method_list(args.backtest_method):
        import_lightgbm()  # a missing extra fails before anything is fitted
    idata = load_fit(args.fit)  # --out was checked by main
    with warnings.catch_warnings():  # how far the size lies: the report says it, once
        warnings.simplefilter("ignore", SizeExtrapolationWarning)
        size_offset(idata, None, args.size)  # a size fit needs --size, others refuse it: say now
    constraints = load_constraints(args.constraints) if args.constraints else None
    if args.within_design:  # the fitted runs' range of shares, as `optimize --within-design`
        data = data_from_idata(idata)
        constraints = (constraints or MixtureConstraints()).within_design(
            data.mixtures.loc[list(data.runs)]
        )
    baseline = baseline_argument(args.baseline)
    names = [p.name for p in args.compare]
    if len(set(names) | {args.fit.name}) < len(names) + 1:  # same file names: full paths
        names = [str(p) for p in args.compare]
    others = {name: load_fit(path) for name, path in zip(names, args.compare, strict=True)}
    progress = Progress.of(args, "report")
    holdout = None
    if args.holdout is not None:
        options = opt.DataOptions.from_args(args)
        recorded = idata.attrs.get(opt.DATA_OPTIONS_ATTR)
        reused = options.is_default() and bool(recorded)
        if reused:  # an export like the fit's: read it likewise
            options = opt.DataOptions.from_reading_json(recorded)
            progress(f"reading {args.holdout} with the options the fit's data were read with")
        try:
            holdout = options.load(args.holdout, to_fit=False)
        except DataError as exc:
            if not reused:
                raise
            raise DataError(
                f"{exc} (read with the options the fit's data were read with: "
                f"{options.reading_words()}; give the data options for this file to read it "
                "otherwise)"
            ) from exc
        check_holdout_sizes(idata, holdout)  # a size fit needs them with sizes: say now
    backtests = []
    for i, protocol in enumerate(args.backtest, start=1):
        t1 = time.perf_counter()
        data = data_from_idata(idata)
        named = f"backtest {protocol} ({i} of {len(args.backtest)}): "
        lines = backtest_progress(
            progress, data, protocol, method=args.backtest_method, seed=args.seed, prefix=named
        )
        backtests.append(
            backtest(
                data,
                protocol,
                method=args.backtest_method,
                seed=args.seed,
                n_bootstrap=args.bootstrap,
                spec=spec_from_idata(idata),  # the fit's own model and sampler settings
                progress=lines,
            )
        )
        progress(f"{named}done in {duration(time.perf_counter() - t1)}")
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
        compare=others,
        next_runs=args.next,
        size=args.size,
        progress=progress,
    )
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB, {time.perf_counter() - t0:.1f} s); open it in a browser")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``report`` on the ``bimix`` sub-parsers."""
    p = opt.add_command(sub, "report", cmd_report)
    opt.add_fit_argument(p)
    opt.add_out(p, ".html", help="the report (.html)", required=True)
    opt.add_options(
        p,
        ("--step", opt.step_amount, None, "target of the extrapolation and the decision "
         "(default: twice the last checkpoint)"),
        ("--holdout", Path, None, "held-out loss log (CSV/Parquet) to mark and score (a fit of "
         "several sizes: each at its size, read with --size-col)"),
    )  # fmt: skip
    opt.add_objective(p)
    opt.add_size(p)
    add_decision_inputs(p, as_in_optimize=True)
    opt.add_bootstrap(p, help="least-squares bootstrap resamples (200)")
    p.add_argument(
        "--backtest",
        action="append",
        type=protocol_argument,
        default=[],
        metavar="PROTOCOL",
        help="also backtest the fitted runs (last-checkpoint, horizon:F, holdout-mixtures:K, "
        "holdout-runs:PATTERN; repeatable) and show it; each refits the model",
    )
    opt.add_options(
        p,
        ("--backtest-method", ["bayes", "ls", "lightgbm", "both", "all"], "both", "methods of "
         "--backtest: both = Bayes + least squares (default), all = also RegMix's LightGBM "
         "(pip install 'bimix-bayes[lightgbm]')"),
    )  # fmt: skip
    p.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        default=[],
        metavar="FIT",
        help="other fits of the same data (another law or spec): the report says which model "
        "the data prefer (PSIS-LOO over runs, as `bimix compare`)",
    )
    opt.add_options(
        p,
        ("--next", opt.count(0), 0, "also propose this many proxy runs to train next, by their "
         "value to the decision (as `bimix next`; default 0: none)"),
    )  # fmt: skip
    opt.add_seed(p, help="seed of the bootstrap and forecasts")
    opt.DataOptions.add_arguments(p, positional=False)
