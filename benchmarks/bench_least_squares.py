"""Benchmark: the paper's least-squares fit on real and simulated data.

Prints wall seconds (median of repeats, one process) for the per-domain TRF fit and for the
run bootstrap, and the fit quality. Uses ../shared/datasets (or $BIMIX_SHARED_DATASETS) when
present, and the synthetic demo study always.

    python benchmarks/bench_least_squares.py [--repeats 3] [--bootstrap 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from bimix_bayes.data.public import find_datasets, load_slimpajama
from bimix_bayes.data.simulate import simulate_default
from bimix_bayes.data.table import DataWarning, MixtureData
from bimix_bayes.leastsq.fit import BiMixLeastSquares


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name: str, data: MixtureData, repeats: int, n_boot: int) -> None:
    point = _median_seconds(lambda: BiMixLeastSquares(n_bootstrap=0).fit(data), repeats)
    boot = _median_seconds(lambda: BiMixLeastSquares(n_bootstrap=n_boot).fit(data), repeats)
    fit = BiMixLeastSquares(n_bootstrap=0).fit(data)
    q = fit.quality_
    print(
        f"{name:<28} obs {len(data.observations):>5}  domains {len(data.domains)}  "
        f"point fit {point:6.2f} s  with {n_boot} bootstrap {boot:6.2f} s  "
        f"mean R2(log) {q['r2_log'].mean():.4f}  MRE {100 * q['mre'].mean():.2f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DataWarning)
    print(f"median of {args.repeats} repeats, seconds of wall time")
    bench("synthetic demo (5 domains)", simulate_default(seed=0), args.repeats, args.bootstrap)
    root = find_datasets()
    if root is None:
        print("public datasets not found: real-data figures skipped")
        return
    data = load_slimpajama(root, "122M")
    bench("SlimPajama 122M (7 domains)", data, args.repeats, args.bootstrap)


if __name__ == "__main__":
    main()
