"""Benchmark: choosing a mixture over 4,000 posterior draws x 22 domains.

Prints, for each objective, the median wall time of a full constrained solve (SLSQP + Newton
polish), its KKT residual and iterations, plus the time of the per-draw closed-form optima (the
"how stable is the choice" spread). Targets (issue #4): <= 1 s and KKT residual <= 1e-6 for the
mean objective.

The draws imitate a real posterior: per domain a loss at share 1 between 1 and 4 nats and a
mixture exponent between 0.02 and 0.15 (the range fitted on SlimPajama and the Pile), with
posterior spreads of a few percent, correlated within a draw as in a hierarchical fit.

Run: ``python benchmarks/bench_optimize.py [--repeats 7]``
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

from bimix_bayes.decision.constraints import MixtureConstraints
from bimix_bayes.decision.solver import (
    LossSurface,
    OptimizationWarning,
    closed_form_optimum,
    objective_weights,
    solve,
)

DRAWS, DOMAINS = 4000, 22


def posterior_like(seed: int = 0) -> LossSurface:
    rng = np.random.default_rng(seed)
    log_k_mean = np.log(rng.uniform(1.0, 4.0, DOMAINS))
    alpha_mean = rng.uniform(0.02, 0.15, DOMAINS)
    shared = rng.normal(size=(DRAWS, 1))  # a population-level shift common to all domains
    log_k = log_k_mean + 0.01 * shared + 0.02 * rng.normal(size=(DRAWS, DOMAINS))
    alpha = alpha_mean * np.exp(0.05 * shared + 0.08 * rng.normal(size=(DRAWS, DOMAINS)))
    domains = tuple(f"domain{i:02d}" for i in range(DOMAINS))
    return LossSurface(domains, log_k, alpha, 1.0)


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    surface = posterior_like()
    w = objective_weights(surface.domains)
    d = surface.domains
    constraints = MixtureConstraints(
        lower={d[0]: 0.05}, upper={d[1]: 0.02, d[2]: 0.03}, fixed={d[3]: 0.04}
    ).bounds(d)
    print(f"{DRAWS} posterior draws x {DOMAINS} domains; median of {args.repeats} solves\n")
    header = f"{'objective':<14}{'constraints':<13}{'time (s)':>10}{'KKT residual':>15}"
    print(header + f"{'iterations':>12}")
    for objective in ("mean", "cvar:0.9", "quantile:0.9"):
        for label, bounds in (("simplex", None), ("4 bounds", constraints)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizationWarning)
                seconds, result = timed(
                    lambda o=objective, b=bounds: solve(surface, w, o, b), args.repeats
                )
            print(
                f"{objective:<14}{label:<13}{seconds:>10.3f}{result.kkt_residual:>15.1e}"
                f"{result.iterations:>12}"
            )
    seconds, per_draw = timed(
        lambda: closed_form_optimum(w * np.exp(surface.log_k), surface.alpha), args.repeats
    )
    print(f"\nper-draw closed-form optima ({DRAWS} problems, vectorised): {seconds:.3f} s")
    print(f"spread of the per-draw optima: mean sd {per_draw.std(axis=0).mean():.4f} per domain")


if __name__ == "__main__":
    main()
