"""The demo on **synthetic** data, where every figure can be checked against the truth.

Data simulated from the BiMix law with known parameters, said plainly. It fits the first half of
every run's checkpoints with the paper's least squares and with the hierarchical Bayesian model,
checks the fit, forecasts the held-out later checkpoints and an unseen mixture, and scores
everything against the truth.

From the shell: ``bimix demo --synthetic`` (``bimix demo`` runs on the embedded real data).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bimix_bayes.cli.progress import Progress
from bimix_bayes.data.files import atomic_write_with
from bimix_bayes.data.labels import interval_columns
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate_default
from bimix_bayes.evaluation.metrics import coverage, mean_relative_error
from bimix_bayes.leastsq.fit import BiMixLeastSquares

__all__ = ["run_synthetic_demo"]

#: Columns of the 90 % predictive interval every score below reads.
_BAND = interval_columns(0.9)

BANNER = """\
DEMO DATA: SYNTHETIC. These 12 "runs" are simulated from the BiMix law with known parameters
(5 domains, log-normal noise 1% and a per-(run, domain) offset of 0.5%). Every figure below can
be checked against the truth. (`bimix demo` without --synthetic runs on real loss curves.)
"""


def _coverage(table: pd.DataFrame, truth_col: str, lo: str, hi: str) -> float:
    """Share of ``table[truth_col]`` inside ``[table[lo], table[hi]]`` (the one coverage)."""
    return coverage(table[truth_col], table[lo], table[hi])


def _mre(table: pd.DataFrame, predicted: str) -> float:
    """Mean relative error of ``table[predicted]`` against the measured ``loss``."""
    return mean_relative_error(table["loss"], table[predicted])


def run_synthetic_demo(
    out_dir: str | os.PathLike[str] = "out/demo", seed: int = 0, progress: Progress | None = None
) -> int:
    """Simulate, fit (least squares and Bayesian), forecast, score; write files to ``out_dir``.

    Returns 0 (the command's exit code). ``progress`` says each slow step on stderr as it
    starts (nothing by default).
    """
    from bimix_bayes.bayes.forecast import predict
    from bimix_bayes.bayes.summary import posterior_table
    from bimix_bayes.cli.demo import bayes_fit

    progress = progress or Progress("demo", quiet=True)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # fail now, not after the fit, if it cannot exist
    print(BANNER)
    truth = default_parameters()
    data = simulate_default(seed=seed)
    steps = np.sort(data.observations["step"].unique())
    cutoff = steps[-1] / 2  # the usual protocol: fit up to half of the last step
    train = data.subset(max_step=cutoff)
    print(f"data: {data.summary()}")
    print(
        f"fit on steps <= {cutoff:g} ({len(train.observations)} observations); "
        f"forecast steps {cutoff:g} < s <= {steps[-1]:g}\n"
    )

    ls = BiMixLeastSquares(n_bootstrap=200, interval=0.9, seed=seed).fit(
        train, progress=progress.counted("least squares with 200 bootstrap resamples", "resamples")
    )
    model, idata = bayes_fit(train, seed, "Bayesian fit", compile_time=True, progress=progress)

    post = posterior_table(idata, prob=0.94, var_names=("alpha", "beta"))
    rows = {}
    for name in ("alpha", "beta"):
        p = post.xs(name, level="parameter")
        inside = (p["lower"] <= truth[name]) & (truth[name] <= p["upper"])
        rows[f"{name} true"] = truth[name]
        rows[f"{name} least sq."] = ls.params_[name]
        rows[f"{name} posterior [94% HDI]"] = [
            f"{m:.4f} [{lo:.4f}, {hi:.4f}]{'' if ok else ' (misses)'}"
            for m, lo, hi, ok in zip(p["mean"], p["lower"], p["upper"], inside, strict=True)
        ]
    print("exponents against the truth (convention C = 1):")
    print(pd.DataFrame(rows, index=truth.index).round(4).to_string() + "\n")

    held = data.observations[data.observations["step"] > cutoff]
    held_steps = np.sort(held["step"].unique())
    bayes = predict(idata, steps=held_steps, attach=False)
    ls_pred = ls.predict(data.mixtures, held_steps, average=False)
    scored = held.merge(
        bayes, left_on=["run", "step", "domain"], right_on=["mixture", "step", "domain"]
    )
    scored = scored.merge(
        ls_pred.rename(columns={"loss": "ls_loss", "lower": "ls_lower", "upper": "ls_upper"}),
        on=["mixture", "step", "domain"],
    )
    by = scored.groupby("domain")
    table = pd.DataFrame(
        {
            "Bayes MRE %": 100 * by.apply(_mre, "median"),
            "Bayes 90% covers %": 100 * by.apply(_coverage, "loss", *_BAND),
            "LS MRE %": 100 * by.apply(_mre, "ls_loss"),
            "LS 90% band covers %": 100 * by.apply(_coverage, "loss", "ls_lower", "ls_upper"),
        }
    ).reindex(data.domains)
    print(
        f"forecast of the {len(scored)} held-out checkpoints (steps > {cutoff:g}) of the "
        "observed runs:"
    )
    print(table.round(2).to_string())
    print(
        f"overall: Bayesian 90% predictive interval covers "
        f"{100 * _coverage(scored, 'loss', *_BAND):.0f}% (target 90%); the "
        f"least-squares bootstrap band covers "
        f"{100 * _coverage(scored, 'loss', 'ls_lower', 'ls_upper'):.0f}% (it is a band for "
        "the mean curve, blind to run-to-run and checkpoint noise)\n"
    )

    new = random_mixtures(2, list(truth.index), seed=seed + 1000, include_uniform=False)
    new.index = pd.Index(["new-A", "new-B"], name="mixture")
    target = 2 * steps[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fit that failed would already have said so above
        unseen = predict(idata, steps=[target], mixtures=new, attach=False)
    unseen = unseen[unseen["domain"].isin(truth.index)].copy()
    law = truth.loc[unseen["domain"]]
    r = new.to_numpy()[
        new.index.get_indexer(unseen["mixture"]), truth.index.get_indexer(unseen["domain"])
    ]
    unseen["true law"] = (
        law["A"].to_numpy()
        * r ** -law["alpha"].to_numpy()
        * (law["B"].to_numpy() * target ** -law["beta"].to_numpy() + law["C"].to_numpy())
    )
    print(f"unseen mixtures at {target:g} steps (twice the longest run; fresh run offset):")
    print(
        unseen[["mixture", "domain", "true law", "median", *_BAND]].round(4).to_string(index=False)
    )
    hits = int(_coverage(unseen, "true law", *_BAND) * len(unseen))
    print(
        f"the 90% interval contains the true law for {hits} of {len(unseen)} (mixture, "
        "domain) pairs\n"
    )

    atomic_write_with(out / "data.csv", lambda p: data.to_long().to_csv(p, index=False))
    ls.save(out / "least_squares.json")
    model.save(out / "fit.nc")
    atomic_write_with(out / "forecast.csv", lambda p: scored.to_csv(p, index=False))
    print(
        f"wrote {out / 'data.csv'}, {out / 'least_squares.json'}, {out / 'fit.nc'}, "
        f"{out / 'forecast.csv'}"
    )
    print(
        f"next: bimix summary {out / 'fit.nc'}   |   bimix predict {out / 'fit.nc'} --steps 40000"
    )
    return 0
