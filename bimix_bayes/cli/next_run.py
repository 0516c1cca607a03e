"""``bimix next``: which proxy run to train next (the value of information for the decision).

Examples
--------
>>> from bimix_bayes.cli.app import build_parser
>>> args = build_parser().parse_args(["next", "fit.nc", "--step", "8000", "--batch", "3"])
>>> args.batch, args.proxy_step, args.fantasies, args.min_share
(3, None, None, 0.02)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bimix_bayes.cli import options as opt
from bimix_bayes.cli.progress import Progress

#: ``propose_next_runs``'s updates (``decision.next_run.UPDATES``; spelt out here so that the
#: parser does not import the decision layer: tests/test_next_run.py checks they agree).
UPDATES = ("reweight", "linear")

__all__ = ["add_commands", "cmd_next"]


def cmd_next(args: argparse.Namespace) -> int:
    """Propose the proxy runs worth training next for the mixture decision.

    For each candidate mixture, the knowledge gradient: how much lower the expected loss of the
    mixture finally chosen for --step would be once a run of that mixture to --proxy-step is
    observed (the posterior draws reweighted by fantasy runs' likelihoods, or updated
    linearly; no refit). --batch K proposes K runs greedily, each given the earlier ones. Also
    prints the value of stopping now: the expected regret of deciding today.

    Returns
    -------
    int
        0, after printing the proposals (written with ``--out``: .json all, .csv the table).
    """
    from bimix_bayes.bayes.persistence import load_fit, training_domains_of
    from bimix_bayes.data.loaders import read_mixtures
    from bimix_bayes.decision.constraints import load_constraints
    from bimix_bayes.decision.next_run import propose_next_runs

    idata = load_fit(args.fit)
    if banner := _banner(idata):
        print(banner)
    progress = Progress.of(args, "next")
    doing = (
        f"scoring {args.n_candidates if not args.candidates else 'the given'} candidate runs "
        f"(a batch of {args.batch}, greedily)"
    )
    with progress.timed(doing, done="proposals made"):
        plan = propose_next_runs(
            idata,
            args.step,
            batch=args.batch,
            proxy_step=args.proxy_step,
            candidates=(
                read_mixtures(args.candidates, domains=training_domains_of(idata))
                if args.candidates
                else None
            ),
            constraints=load_constraints(args.constraints) if args.constraints else None,
            weights=args.weights,
            domains=args.domains,
            within_design=args.within_design,
            n_candidates=args.n_candidates,
            min_share=args.min_share,
            n_fantasies=args.fantasies,
            update=args.update,
            size=args.size,
            proxy_size=args.proxy_size,
            seed=args.seed,
        )
    print(plan.format())
    opt.write_result(args.out, plan.to_dict(), plan.proposals)
    return 0


def _banner(idata) -> str:
    from bimix_bayes.bayes.persistence import diagnostics_from_idata

    return diagnostics_from_idata(idata).banner("do not trust these values")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``next`` on the ``bimix`` sub-parsers."""
    p = opt.add_command(sub, "next", cmd_next)
    opt.add_fit_argument(p)
    p.add_argument(
        "--step",
        type=opt.step_amount,
        required=True,
        help="target step of the decision (or tokens, as in the fitted data)",
    )
    opt.add_options(
        p,
        ("--batch", opt.count(1), 1, "how many runs to propose (default 1)"),
        ("--proxy-step", opt.step_amount, None, "how long the proposed runs would train "
         "(default: the longest fitted run's last step)"),
        ("--candidates", Path, None, "CSV/Parquet of the mixtures you could train (a name "
         "column and one column per domain); default: random mixtures"),
        ("--n-candidates", opt.count(1), 1000, "random candidate mixtures (default 1000)"),
        ("--min-share", opt.share, 0.02, "least share of each free domain in the random "
         "candidates (default 0.02)"),
        ("--fantasies", opt.count(2), None, "fantasy runs per candidate (default 64 under "
         "reweighting, 512 under the linear update)"),
        ("--constraints", Path, None, "TOML/YAML file of bounds and fixed shares, as in "
         "`bimix optimize`"),
        ("--weights", opt.domain_weights, None, "domain weights of the loss, as in `bimix "
         "optimize`"),
    )  # fmt: skip
    p.add_argument("--domains", nargs="+", metavar="DOMAIN", help="count only these domains")
    p.add_argument(
        "--within-design",
        action="store_true",
        help="keep the decision and the random candidates within the fitted runs' shares",
    )
    opt.add_size(p)
    p.add_argument(
        "--proxy-size",
        type=opt.model_size,
        help="the fitted model size the proposed runs would be trained at (a fit of several "
        "sizes; default: the smallest)",
    )
    p.add_argument(
        "--update",
        choices=UPDATES,
        default="reweight",
        help="how a fantasy run moves the posterior: importance reweighting of the draws "
        "(default) or a linear (Gaussian, Kalman) update of them (every draw kept; values "
        "about half a refit's)",
    )
    opt.add_seed(p, help="seed of the candidates and the fantasies (default 0)")
    opt.add_out(p, ".json", ".csv", help="write everything as .json, or the proposals as .csv")
