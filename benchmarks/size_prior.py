"""Calibrate the shared error of forecasts at a model size not trained (``[discrepancy]
size_sd_per_doubling``) on a size backtest that leaves out the sizes the validation scores.

SlimPajama (../shared/datasets or $BIMIX_SHARED_DATASETS), every size up to 680M loaded with
model size as a dimension: fit the 122M and 310M runs with the shared size error switched off,
forecast every checkpoint of the 680M runs (1.13 doublings beyond the fitted sizes), then print
the 90 % coverage of all points and of the mean over domains that each candidate sd per
doubling would give. An extra shared error of sd ``omega h`` widens each Normal (log-loss)
predictive by ``sqrt(s^2 + (omega h)^2)``, ``s`` read off the forecast's 90 % interval: the
coverages are computed from that, without a refit per candidate. The validation
(``benchmarks/validate_public.py``, holdout-size:937M) scores the larger sizes, which this
calibration never sees.

    python benchmarks/size_prior.py        # about 10 min on 2 cores
"""

from __future__ import annotations

import os
import time
import warnings

os.environ.setdefault("NUMBA_OPT", "1")  # as the `bimix` command does (cli.fast_compile_settings)

import numpy as np
import pandas as pd
from scipy.stats import norm

from bimix_bayes.data.labels import ALL_DOMAINS
from bimix_bayes.data.public import find_datasets, load_slimpajama
from bimix_bayes.evaluation.runner import backtest

CANDIDATES = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015)


def coverage(points: pd.DataFrame, doublings: float, omega: float) -> pd.Series:
    """90 % coverage of all points and of the mean over domains with a shared sd ``omega``."""
    lo, hi = np.log(points["lower_90"]), np.log(points["upper_90"])
    z = norm.ppf(0.95)
    s = np.sqrt(((hi - lo) / (2 * z)) ** 2 + (omega * doublings) ** 2)
    inside = np.abs(np.log(points["observed"]) - (lo + hi) / 2) <= z * s
    mean = points["domain"] == ALL_DOMAINS
    return pd.Series({"all points": inside[~mean].mean(), "mean of domains": inside[mean].mean()})


def main() -> None:
    warnings.simplefilter("ignore")
    root = find_datasets()
    if root is None:
        print("public datasets not found (../shared/datasets or $BIMIX_SHARED_DATASETS): skipped")
        return
    data = load_slimpajama(root, None, missing_policy="drop").subset(max_size=7e8)
    print(f"data: {data.summary()}")
    t0 = time.perf_counter()
    spec = {"discrepancy": {"size_sd_per_doubling": 0.0}}
    result = backtest(data, "holdout-size:680M", method="bayes", spec=spec, progress=print)
    print(f"fit and forecast in {time.perf_counter() - t0:.0f} s")
    doublings = float(np.log2(680e6 / 310e6))
    table = pd.DataFrame(
        {omega: coverage(result.points, doublings, omega) for omega in CANDIDATES}
    ).T
    table.index.name = "sd per doubling"
    print(f"90 % coverage at 680M ({doublings:.2f} doublings beyond 310M):")
    print(table.to_string(float_format=lambda v: f"{100 * v:.1f} %"))


if __name__ == "__main__":
    main()
