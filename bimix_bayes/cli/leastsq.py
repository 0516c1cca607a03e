"""``bimix fit-ls``: the paper's least-squares fit, per evaluation domain.

Examples
--------
>>> import argparse
>>> sub = argparse.ArgumentParser(prog="bimix").add_subparsers(dest="command")
>>> add_commands(sub)
>>> args = sub.choices["fit-ls"].parse_args(["runs.csv", "--bootstrap", "0", "--huber", "0.01"])
>>> args.bootstrap, args.huber, args.interval
(0, 0.01, 0.9)
"""

from __future__ import annotations

import argparse

import pandas as pd

from bimix_bayes.cli import options as opt
from bimix_bayes.cli.progress import Progress
from bimix_bayes.data.table import MixtureData
from bimix_bayes.leastsq.fit import BiMixLeastSquares

__all__ = ["add_commands", "cmd_fit_ls"]


def _format_ls_table(fit: BiMixLeastSquares) -> str:
    table = fit.summary()
    has_iv = "alpha_lower" in table.columns
    rows = []
    for domain, row in table.iterrows():

        def cell(name: str, row: pd.Series = row) -> str:
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


def cmd_fit_ls(args: argparse.Namespace) -> int:
    """The paper's least-squares fit, per domain.

    Fit BiMix per evaluation domain by least squares on log loss (the paper's method) and print
    the coefficients with run-bootstrap intervals and fit quality.

    Returns
    -------
    int
        0, after printing the per-domain table (and writing it with ``--out``).
    """
    data = opt.DataOptions.from_args(args).load(args.data)
    progress = Progress.of(args, "fit-ls")
    fit = BiMixLeastSquares(
        loss="huber" if args.huber is not None else "linear",
        huber_delta=args.huber if args.huber is not None else 1e-3,
        n_bootstrap=args.bootstrap,
        interval=args.interval,
        seed=args.seed,
    ).fit(
        data,
        progress=progress.counted(
            f"bootstrap: refitting {args.bootstrap} resamples of whole runs",
            "resamples",
            done="bootstrap done",
        ),
    )
    print(_ls_header(fit, data))
    print(_format_ls_table(fit))
    if args.out is not None:
        fit.save(args.out)
        print(f"\nwrote {args.out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``fit-ls`` on the ``bimix`` sub-parsers."""
    p = opt.add_command(sub, "fit-ls", cmd_fit_ls)
    opt.DataOptions.add_arguments(p)
    g = p.add_argument_group("fitting")
    opt.add_bootstrap(g, help="bootstrap resamples of whole runs (default 200; 0 for none)")
    opt.add_options(
        g,
        ("--interval", opt.probability, 0.9, "central probability of the intervals (default 0.9)"),
    )
    g.add_argument(
        "--huber",
        type=opt.positive_float,
        metavar="DELTA",
        help="use a Huber loss with this threshold on log-loss residuals",
    )
    opt.add_seed(g, help="bootstrap seed (default 0)")
    opt.add_out(g, ".csv", ".json", help="write the table: .csv, or .json with settings")
