"""The README's main job: the whole pipeline on the embedded real data, start to finish.

On the embedded tiny-LM study (:mod:`bimix_bayes.data.embedded`): the paper's least-squares fit;
how far to trust a forecast (fit the first half of the checkpoints, forecast the rest, Bayes
beside least squares); the hierarchical Bayesian fit of all checkpoints with its diagnostics;
forecasts at twice the longest run; the recommended mixture for that target with the chance it
beats the best observed run; the design's mixtures ranked; and the HTML report. Files go to
``out_dir``. ``synthetic=True`` runs :func:`bimix_bayes.cli.demo_synthetic.run_synthetic_demo`
instead (simulated data, scored against the truth).

From the shell: ``bimix demo`` (what ``make demo`` runs).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bimix_bayes.cli import options as opt
from bimix_bayes.cli.progress import Progress, backtest_progress, sampling_words
from bimix_bayes.data.embedded import DEFAULT_STUDY, DESCRIPTION, default_metadata, load_default
from bimix_bayes.data.files import atomic_write_text, atomic_write_with
from bimix_bayes.leastsq.fit import ALL_DOMAINS, BiMixLeastSquares

if TYPE_CHECKING:
    import arviz as az

    from bimix_bayes.bayes.model import BiMixModel
    from bimix_bayes.data.table import MixtureData

__all__ = ["BACKTEST_SPEC", "add_commands", "bayes_fit", "cmd_demo", "run_demo"]

#: The spec of the demo's backtest fit: the default with 500 draws per chain (2,000 draws give
#: its 90 % intervals; the full fit keeps 1,000).
BACKTEST_SPEC = {"sampler": {"draws": 500}}


def _banner(data, meta) -> str:
    config = meta.get("config", {})
    wall = meta.get("wall_seconds")
    return (
        f"DEFAULT DATA: {DESCRIPTION}.\n"
        f"{data.n_runs} runs ({data.mixtures.round(12).drop_duplicates().shape[0]} mixtures, "
        f"some with several seeds) x {data.observations['step'].nunique()} checkpoints "
        f"(steps {data.observations['step'].min():g}-{data.observations['step'].max():g}, "
        f"batch {config.get('batch_size', '?')} x {config.get('model', {}).get('context', '?')} "
        f"bytes), validation loss in nats per byte; study wall time "
        f"{'?' if wall is None else f'{wall / 60:.0f} min'} on 2 CPU cores.\n"
        f"Files: {DEFAULT_STUDY}. Regenerate: see the README there (`bimix corpora`, then "
        "`bimix study` with the design it gives).\n"
    )


def bayes_fit(
    data: MixtureData,
    seed: int,
    title: str,
    compile_time: bool = False,
    progress: Progress | None = None,
) -> tuple[BiMixModel, az.InferenceData]:
    """Fit the hierarchical model to ``data`` and print what the sampler did and its diagnostics.

    The first line reads ``TITLE: sampler, chains x draws in N s`` (and the compile time with
    ``compile_time``), then the diagnostics report and a blank line. Returns ``(model, idata)``.
    ``progress`` says on stderr that the fit starts and when it is done (nothing by default).

    Examples
    --------
    >>> from bimix_bayes.data.simulate import simulate_default
    >>> model, idata = bayes_fit(simulate_default(seed=1), 0, "Bayesian fit")  # doctest: +SKIP
    Bayesian fit: nutpie, 4 chains x 1000 draws in 9.1 s
    ...
    """
    from bimix_bayes.bayes.model import BiMixModel

    progress = progress or Progress("demo", quiet=True)
    model = BiMixModel()
    cfg = model.spec["sampler"]
    with progress.timed(
        f"Bayesian fit: {sampling_words(cfg, progress.model_compiled)}", done="Bayesian fit done"
    ):
        idata = model.fit(
            data,
            seed=seed,
            progress_bar=False if progress.quiet else None,
            retry=True,
            warn=False,  # the report is printed below
        )
    progress.model_compiled = True
    attrs, post = idata.attrs, idata.posterior
    took = f" (compile {attrs['compile_seconds']:.1f} s)" if compile_time else ""
    print(
        f"{title}: {attrs['sampler']}, {post.sizes['chain']} chains x {post.sizes['draw']} draws "
        f"in {attrs['wall_seconds']:.1f} s{took}"
    )
    print(model.diagnostics_.report() + "\n")
    return model, idata


def run_demo(
    out_dir: str | os.PathLike[str] = "out/demo",
    seed: int = 0,
    synthetic: bool = False,
    report: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> int:
    """Run the main job; returns 0 (the command's exit code). ``report`` is where the HTML report
    goes (default ``out_dir/report.html``); ``progress`` says each step on stderr as it starts
    (nothing by default)."""
    progress = progress or Progress("demo", quiet=True)
    if synthetic:
        from bimix_bayes.cli.demo_synthetic import run_synthetic_demo

        return run_synthetic_demo(out_dir, seed, progress=progress)
    from bimix_bayes.bayes.forecast import predict
    from bimix_bayes.decision.recommend import optimize, rank
    from bimix_bayes.evaluation.backtest import backtest
    from bimix_bayes.report.html import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # fail now, not after the fit, if it cannot exist
    data = load_default()
    print(_banner(data, default_metadata()))

    # 1. the paper's method
    ls = BiMixLeastSquares(n_bootstrap=200, interval=0.9, seed=seed).fit(
        data, progress=progress.counted("least squares with 200 bootstrap resamples", "resamples")
    )
    r2 = ls.summary()["r2_log"]
    print(
        f"1. least squares (the paper's fit), per domain: R2 on log loss "
        f"{r2.min():.4f}-{r2.max():.4f} (mean {r2.mean():.4f})\n"
    )

    # 2. how far to trust a forecast: fit the first half of the steps, forecast the rest (500
    # draws per chain: its intervals need no more, and the demo stays within a minute)
    lines = backtest_progress(progress, data, "horizon:0.5", seed=seed, prefix="backtest: ")
    trust = backtest(
        data,
        "horizon:0.5",
        method="both",
        seed=seed,
        spec=BACKTEST_SPEC,
        progress=lines,
    )
    print("2. how far to trust it (`bimix backtest --protocol horizon:0.5`):")
    print(trust.to_text() + "\n")

    # 3. the Bayesian fit of everything
    model, idata = bayes_fit(
        data,
        seed,
        f"3. Bayesian fit of all {len(data.observations)} observations",
        progress=progress,
    )

    # 4. forecasts at twice the longest run
    target = 2 * float(data.observations["step"].max())
    progress("forecasts, the recommended mixture and the ranking...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failed fit has said so above
        forecast = predict(idata, steps=[target], attach=False, seed=seed)
        avg = forecast[forecast["domain"] == ALL_DOMAINS].set_index("mixture")
        print(
            f"4. mean loss over domains at {target:g} steps (twice the longest run), each run "
            "continued (median [90% interval]):"
        )
        for run, row in avg.sort_values("median").iterrows():
            print(f"   {run:<16}{row['median']:.4f} [{row['lower_90']:.4f}, {row['upper_90']:.4f}]")
        print()

        # 5. the decision, and the design's mixtures ranked against it
        rec = optimize(idata, target, seed=seed)
        print(f"5. the mixture to train for {target:g} steps:")
        print(rec.format() + "\n")
        candidates = pd.concat([data.mixtures, rec.mixture.to_frame().T])
        ranking = rank(idata, candidates, target)
        print("   every design mixture and the recommendation, ranked at the target:")
        print(ranking.round(4).to_string(index=False, na_rep="-") + "\n")

        # 6. files and the report
        report = write_report(
            idata,
            report or out / "report.html",
            step=target,
            seed=seed,
            fit_path=out / "fit.nc",
            backtests=[trust],
            least_squares=ls,
            command="bimix demo --report report.html  # the embedded study's fit",
            progress=progress.prefixed("report: "),
        )
    model.save(out / "fit.nc")
    atomic_write_with(out / "data.csv", lambda p: data.to_long().to_csv(p, index=False))
    atomic_write_with(out / "forecast.csv", lambda p: forecast.to_csv(p, index=False))
    atomic_write_text(out / "recommendation.json", json.dumps(rec.to_dict(), indent=2) + "\n")
    atomic_write_with(out / "ranking.csv", lambda p: ranking.to_csv(p, index=False))
    print(
        f"6. wrote {report} (open it in a browser), {out / 'fit.nc'}, {out / 'data.csv'}, "
        f"{out / 'forecast.csv'}, {out / 'recommendation.json'}, {out / 'ranking.csv'}"
    )
    print(
        "The recommendation was trained and measured: see reports/closed_loop.md (`bimix verify`)."
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the default data, start to finish.

    Run the full pipeline (least squares, a forecast backtest, the Bayesian fit, forecasts, the
    recommended mixture, a ranking, the HTML report) on the embedded real data: loss curves of
    tiny language models trained on 5 text domains by `bimix study`. --synthetic runs it on
    simulated data scored against the known truth.

    Returns
    -------
    int
        0 (:func:`run_demo` with the command's options).
    """
    return run_demo(
        out_dir=args.out_dir,
        seed=args.seed,
        synthetic=args.synthetic,
        report=args.report,
        progress=Progress.of(args, "demo"),
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``demo`` on the ``bimix`` sub-parsers.

    Examples
    --------
    >>> sub = argparse.ArgumentParser(prog="bimix").add_subparsers(dest="command")
    >>> add_commands(sub)
    >>> sub.choices["demo"].parse_args(["--synthetic"]).out_dir
    PosixPath('out/demo')
    """
    p = opt.add_command(sub, "demo", cmd_demo)
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="simulated data with known parameters instead of the embedded study",
    )
    opt.add_options(
        p,
        ("--report", opt.suffix(".html"), None, "where to write the HTML report (default: "
         "OUT_DIR/report.html)"),
        ("--out-dir", Path, Path("out/demo"), "folder for the demo's files (default out/demo)"),
    )  # fmt: skip
    opt.add_seed(p)
