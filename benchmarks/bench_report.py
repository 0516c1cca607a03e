"""Benchmark: the HTML report of the SlimPajama 122M fit (target: <= 15 s).

Fits the SlimPajama 122M group with the default spec (../shared/datasets or
$BIMIX_SHARED_DATASETS), holds out the checkpoints after 10B tokens to mark and score them,
then times :func:`bimix_bayes.report.html.write_report` (least squares with 200 bootstrap resamples,
forecasts, posterior predictive check, decision, figures) and prints the median of the repeats
and the size of the file.

    python benchmarks/bench_report.py [--repeats 3] [--out out/bench_report.html]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("NUMBA_OPT", "1")  # as the `bimix` command does

from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.data.public import find_datasets, load_slimpajama
from bimix_bayes.data.table import DataWarning
from bimix_bayes.report.html import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="out/bench_report.html")
    args = parser.parse_args()
    root = find_datasets()
    if root is None:
        print("skipped: public datasets not found (set BIMIX_SHARED_DATASETS)")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = load_slimpajama(root, "122M")
    fit_data = data.subset(max_step=1e10)
    late = data.observations[data.observations["step"] > 1e10]
    holdout = type(data).from_frames(
        data.mixtures, late, volume="tokens", source=f"{data.source} (after 1e10 tokens)"
    )
    t0 = time.perf_counter()
    idata = BiMixModel().fit(fit_data, seed=0)
    print(f"fit (checkpoints <= 1e10 tokens): {time.perf_counter() - t0:.1f} s")
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        path = write_report(idata, args.out, step=4e10, holdout=holdout, seed=0)
        times.append(time.perf_counter() - t0)
    print(
        f"report: median {statistics.median(times):.1f} s over {args.repeats} runs "
        f"(min {min(times):.1f}, max {max(times):.1f}); target <= 15 s; "
        f"{path.stat().st_size / 1e6:.2f} MB at {path}"
    )


if __name__ == "__main__":
    main()
