"""Benchmark: how long `bimix next` takes (issue 18's target: one proposal over 4,000 draws and
1,000 candidate mixtures in <= 30 s on 2 cores).

Fits the embedded study with the default spec (4 chains x 1000 draws), or reads a fit given
with --fit, then times propose_next_runs for a batch of 1 and of 3 (median of --repeats runs,
the same seed) and prints the peak memory of the process.

    python benchmarks/bench_next.py [--fit FIT.nc --step S] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings

from bimix_bayes.decision.next_run import propose_next_runs


def _fit(path: str | None):
    if path is not None:
        from bimix_bayes.bayes.persistence import load_fit

        return load_fit(path)
    from bimix_bayes.bayes.model import BiMixModel
    from bimix_bayes.data.embedded import load_default

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BiMixModel().fit(load_default(), seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", help="a saved fit (default: fit the embedded study)")
    parser.add_argument("--step", type=float, default=8000.0, help="target step (default 8000)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    idata = _fit(args.fit)
    draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    print(f"fit: {draws} posterior draws, {idata.posterior.sizes['domain']} domains")
    for batch in (1, 3):
        seconds = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            plan = propose_next_runs(idata, args.step, batch=batch, n_candidates=1000, seed=0)
            seconds.append(time.perf_counter() - t0)
        print(
            f"batch {batch}: median {statistics.median(seconds):.1f} s over {args.repeats} runs "
            f"(min {min(seconds):.1f}, max {max(seconds):.1f}); {plan.settings['candidates']} "
            f"candidates x {plan.settings['draws']} draws x {plan.settings['fantasies']} "
            f"fantasies; value of the batch {plan.proposals['value'].iloc[-1]:.2e} nats of "
            f"{plan.value_of_stopping:.2e} (value of stopping)"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
