"""Benchmark: time from data to a converged posterior, against a naive reference; forecast check.

On the SlimPajama 122M group (../shared/datasets or $BIMIX_SHARED_DATASETS):

1. the package's model (identifiable form, run offsets integrated out, nutpie with low-rank mass
   matrix adaptation; default spec): wall seconds with compilation, convergence (max r-hat,
   min bulk ESS, divergences) and min bulk ESS per second; then the same again in the same
   process (compiled model reused: what a second fit costs);
2. the naive reference: the paper's five-coefficient form with i.i.d. noise, sampled with PyMC's
   default NUTS (fewer draws), the same figures;
3. the ratio of min ESS/s (wall time, compilation included on both sides);
4. the forecast check: fit the checkpoints up to half of the last token count, predict the last,
   and print the 90 % interval coverage and mean relative error (least squares beside it).

    python benchmarks/bench_fit.py [--naive-draws 200] [--skip-naive]

With ``--sizes``: the size-aware model (``bimix fit --size-col``) on every SlimPajama size at
once (6 sizes, 61 mixtures, about 15,600 observations): wall seconds cold and warm,
convergence, and the peak memory of the process.

    python benchmarks/bench_fit.py --sizes
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

os.environ.setdefault("NUMBA_OPT", "1")  # as the `bimix` command does (cli.fast_compile_settings)

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bimix_bayes.bayes.forecast import predict
from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.data.public import find_datasets, load_slimpajama
from bimix_bayes.data.table import DataWarning, MixtureData
from bimix_bayes.leastsq.fit import BiMixLeastSquares

PAPER_VARS = ["A", "alpha", "B", "beta", "C"]


def fit_ours(data: MixtureData, label: str) -> float:
    model = BiMixModel()
    t0 = time.perf_counter()
    idata = model.fit(data, seed=0, progress_bar=False)
    wall = time.perf_counter() - t0
    d = model.diagnostics_
    ess_s = d.min_ess_bulk / wall
    print(
        f"{label:<34} wall {wall:6.1f} s (compile {idata.attrs['compile_seconds']:.1f} s, "
        f"sample {idata.attrs['sample_seconds']:.1f} s)  max r-hat {d.max_rhat:.3f}  "
        f"min ESS bulk {d.min_ess_bulk:.0f}  divergences {d.divergences}  "
        f"min ESS/s {ess_s:.1f}  converged: {'yes' if d.passed else 'NO'}"
    )
    return ess_s


def fit_naive(data: MixtureData, draws: int) -> float:
    """The paper's five coefficients, raw steps, i.i.d. noise, PyMC's default NUTS."""
    obs = data.observations
    domains = list(data.domains)
    d = obs["domain"].map({k: i for i, k in enumerate(domains)}).to_numpy()
    r, s, y = data.shares(), obs["step"].to_numpy(), np.log(obs["loss"].to_numpy())
    t0 = time.perf_counter()
    with pm.Model(coords={"domain": domains}):
        A = pm.HalfNormal("A", 5.0, dims="domain")
        alpha = pm.HalfNormal("alpha", 1.0, dims="domain")
        B = pm.HalfNormal("B", 1e3, dims="domain")
        beta = pm.HalfNormal("beta", 1.0, dims="domain")
        C = pm.HalfNormal("C", 5.0, dims="domain")
        sigma = pm.HalfNormal("sigma", 0.1, dims="domain")
        mu = pt.log(A[d] * r ** -alpha[d] * (B[d] * s ** -beta[d] + C[d]))
        pm.Normal("y", mu, sigma[d], observed=y)
        idata = pm.sample(
            draws=draws,
            tune=draws,
            chains=4,
            random_seed=0,
            progressbar=False,
            compute_convergence_checks=False,
        )
    wall = time.perf_counter() - t0
    rhat = float(az.rhat(idata, var_names=PAPER_VARS).to_array().max())
    ess = float(az.ess(idata, var_names=PAPER_VARS, method="bulk").to_array().min())
    div = int(idata.sample_stats["diverging"].sum())
    print(
        f"{'naive: paper form + PyMC NUTS':<34} wall {wall:6.1f} s ({draws} draws + {draws} "
        f"tune x 4 chains)  max r-hat {rhat:.3f}  min ESS bulk {ess:.0f}  divergences {div}  "
        f"min ESS/s {ess / wall:.2f}"
    )
    return ess / wall


def forecast_check(data: MixtureData) -> None:
    last = data.observations["step"].max()
    train = data.subset(max_step=last / 2)
    held = data.observations[data.observations["step"] == last]
    model = BiMixModel()
    idata = model.fit(train, seed=0, progress_bar=False)
    pred = predict(idata, steps=[last], attach=False)
    j = held.merge(pred, left_on=["run", "domain"], right_on=["mixture", "domain"])
    cover90 = ((j["lower_90"] <= j["loss"]) & (j["loss"] <= j["upper_90"])).mean()
    cover50 = ((j["lower_50"] <= j["loss"]) & (j["loss"] <= j["upper_50"])).mean()
    mre = (np.abs(j["median"] / j["loss"] - 1)).mean()
    ls = BiMixLeastSquares(n_bootstrap=0).fit(train)
    lsp = ls.predict(data.mixtures, [last], average=False)
    k = held.merge(lsp, left_on=["run", "domain"], right_on=["mixture", "domain"])
    ls_mre = (np.abs(k["loss_y"] / k["loss_x"] - 1)).mean()
    print(
        f"\nforecast of the last checkpoint ({last:.4g} tokens) from checkpoints <= "
        f"{last / 2:.4g} ({len(j)} held-out observations; fit diagnostics "
        f"{'passed' if model.diagnostics_.passed else 'FAILED'}):"
    )
    print(
        f"  Bayesian: 90% interval coverage {100 * cover90:.1f}%  50% coverage "
        f"{100 * cover50:.1f}%  mean relative error (median) {100 * mre:.2f}%"
    )
    print(f"  least squares (paper): mean relative error {100 * ls_mre:.2f}%")
    per = j.assign(c=(j["lower_90"] <= j["loss"]) & (j["loss"] <= j["upper_90"]))
    print(
        "  90% coverage per domain: "
        + ", ".join(f"{dom} {100 * v:.0f}%" for dom, v in per.groupby("domain")["c"].mean().items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-draws", type=int, default=200)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--sizes", action="store_true", help="the size-aware fit of all sizes")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DataWarning)
    root = find_datasets()
    if root is None:
        print("public datasets not found (../shared/datasets or $BIMIX_SHARED_DATASETS): skipped")
        return
    if args.sizes:
        data = load_slimpajama(root, None, missing_policy="drop")  # 13 NaN losses in the file
        print(f"data: {data.summary()}")
        print(f"numba optimisation level {os.environ['NUMBA_OPT']} (as `bimix fit`); 2 cores\n")
        fit_ours(data, "size-aware (cold: compile + sample)")
        fit_ours(data, "size-aware (warm: compiled reused)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory of the process: {peak:.0f} MiB")
        return
    data = load_slimpajama(root, "122M")
    print(f"data: {data.summary()}")
    print(f"numba optimisation level {os.environ['NUMBA_OPT']} (as `bimix fit`); 2 cores\n")
    ours = fit_ours(data, "bimix-bayes (cold: compile + sample)")
    fit_ours(data, "bimix-bayes (warm: compiled model reused)")
    if not args.skip_naive:
        naive = fit_naive(data, args.naive_draws)
        print(f"\nmin ESS/s ratio (cold, compilation included): {ours / naive:.0f}x")
    forecast_check(data)


if __name__ == "__main__":
    main()
