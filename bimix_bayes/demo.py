"""The README's main job: the pipeline on the default data, start to finish.

No real dataset is embedded in the package yet, so the demo runs on **synthetic** data simulated
from the BiMix law with known parameters, and says so. It fits the paper's least-squares law on
the first half of every run's checkpoints, forecasts the later ones with run-bootstrap intervals,
and scores the forecast against what was held out and the estimates against the truth.

From the shell: ``bimix demo`` (what ``make demo`` runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from bimix_bayes.io_utils import atomic_write_with
from bimix_bayes.least_squares import BiMixLeastSquares
from bimix_bayes.simulate import default_parameters, simulate_default

__all__ = ["run_demo"]

BANNER = """\
DEMO DATA: SYNTHETIC. No real loss log is embedded in the package yet, so these 12 "runs" are
simulated from the BiMix law with known parameters (5 domains, log-normal noise 1% and a
per-(run, domain) offset of 0.5%). Every figure below can be checked against the truth.
"""


def run_demo(out_dir: str | os.PathLike[str] = "out/demo", seed: int = 0) -> int:
    """Simulate, fit on early checkpoints, forecast later ones, score; write files to ``out_dir``.

    Returns 0 (the command's exit code).
    """
    out = Path(out_dir)
    print(BANNER)
    data = simulate_default(seed=seed)
    steps = np.sort(data.observations["step"].unique())
    cutoff = steps[-1] / 2  # the usual protocol: fit up to half of the last step
    train = data.subset(max_step=cutoff)
    print(f"data: {data.summary()}")
    print(
        f"fit on steps <= {cutoff:g} ({len(train.observations)} observations); "
        f"forecast steps {cutoff:g} < s <= {steps[-1]:g}\n"
    )

    fit = BiMixLeastSquares(n_bootstrap=200, interval=0.9, seed=seed).fit(train)
    truth = default_parameters()
    table = fit.summary()
    iv = fit.intervals()
    compare = pd.DataFrame(
        {
            "alpha true": truth["alpha"],
            "alpha fit": table["alpha"],
            "beta true": truth["beta"],
            "beta fit": table["beta"],
            "A true": truth["A"],
            "A fit": table["A"],
            "B true": truth["B"],
            "B fit": table["B"],
        }
    )
    inside = pd.DataFrame(
        {
            name: (iv[f"{name}_lower"] <= truth[name]) & (truth[name] <= iv[f"{name}_upper"])
            for name in ("A", "alpha", "B", "beta")
        }
    )
    print("least-squares estimates (convention C = 1) against the true parameters:")
    print(compare.round(4).to_string())
    print(
        f"true value inside the 90% run-bootstrap interval: {int(inside.to_numpy().sum())} of "
        f"{inside.size} parameters\n"
    )

    held_out = data.observations[data.observations["step"] > cutoff]
    pred = fit.predict(data.mixtures, sorted(held_out["step"].unique()), average=False)
    scored = held_out.merge(
        pred,
        left_on=["run", "step", "domain"],
        right_on=["mixture", "step", "domain"],
        suffixes=("", "_pred"),
    )
    rel_err = np.abs(scored["loss_pred"] / scored["loss"] - 1)
    covered = (scored["lower"] <= scored["loss"]) & (scored["loss"] <= scored["upper"])
    by_domain = pd.DataFrame(
        {
            "MRE %": 100 * rel_err.groupby(scored["domain"]).mean(),
            "90% band covers %": 100 * covered.groupby(scored["domain"]).mean(),
        }
    ).reindex(data.domains)
    print(f"forecast of the {len(scored)} held-out observations (steps > {cutoff:g}):")
    print(by_domain.round(2).to_string())
    print(
        f"overall: mean relative error {100 * rel_err.mean():.2f}%, the 90% bootstrap band of "
        f"the fitted curve covers {100 * covered.mean():.0f}% of held-out points"
    )
    print(
        "(the band is for the mean curve, not for new noisy observations: it is expected to "
        "cover fewer than 90%; the Bayesian model's predictive intervals address that)\n"
    )

    atomic_write_with(out / "data.csv", lambda p: data.to_long().to_csv(p, index=False))
    fit.save(out / "least_squares.json")
    atomic_write_with(out / "forecast.csv", lambda p: scored.to_csv(p, index=False))
    print(f"wrote {out / 'data.csv'}, {out / 'least_squares.json'}, {out / 'forecast.csv'}")
    return 0
