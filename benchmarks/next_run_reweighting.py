"""Benchmark: is reweighting posterior draws by one new run's likelihood (what `bimix next`
does instead of a refit) the posterior a refit gives?

On the embedded study: for each held-out run, fit the other runs (the base posterior), then
(a) reweight its draws by the likelihood of the held-out run's last checkpoint (one log loss
per domain, the run's fresh offsets and the noise integrated out: bimix_bayes.decision.next_run)
and (b) refit with that checkpoint added. Prints, per parameter, the base, reweighted and refit
posterior means and sds, the share of the refit's move the reweighting captures, the effective
number of reweighted draws, the expected objective of today's choice at twice the longest run,
and the wall time of both.

    python benchmarks/next_run_reweighting.py [--runs fill_2 entropy_se] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.data.embedded import load_default
from bimix_bayes.data.table import MixtureData
from bimix_bayes.decision.next_run import _normalised, _observation
from bimix_bayes.decision.problem import prepare
from bimix_bayes.decision.solver import solve
from bimix_bayes.decision.surface import weighted_loss

PARAMS = ("alpha", "log_floor", "log_reducible", "beta")


def _subset(data: MixtureData, observations: pd.DataFrame) -> MixtureData:
    runs = observations["run"].unique()
    return MixtureData.from_frames(data.mixtures.loc[runs], observations, source=data.source)


def _flat(posterior, name: str) -> np.ndarray:
    a = posterior[name].transpose("chain", "draw", "domain").to_numpy()
    return a.reshape(-1, a.shape[-1])


def one_case(data: MixtureData, run: str, seed: int) -> tuple[pd.DataFrame, dict[str, float]]:
    obs = data.observations
    others = obs[obs["run"] != run]
    last = obs[(obs["run"] == run) & (obs["step"] == obs.loc[obs["run"] == run, "step"].max())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        base = BiMixModel().fit(_subset(data, others), seed=seed)
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        refit = BiMixModel().fit(_subset(data, pd.concat([others, last])), seed=seed)
        t_refit = time.perf_counter() - t0
    train = list(data.training_domains)
    shares = data.mixtures.loc[[run], train].to_numpy(dtype=float)
    draws = np.arange(base.posterior.sizes["chain"] * base.posterior.sizes["draw"])
    t0 = time.perf_counter()
    observation = _observation(base, float(last["step"].iloc[0]), train, shares, draws)
    domains = [str(d) for d in base.posterior["domain"].to_numpy()]
    y = np.log(last.set_index("domain").loc[domains, "loss"].to_numpy())
    weights = _normalised(observation.log_likelihood(np.array([0]), y[None, None]))[0, 0]
    t_reweight = time.perf_counter() - t0
    rows = []
    for name in PARAMS:
        b, r = _flat(base.posterior, name), _flat(refit.posterior, name)
        w_mean = weights @ b
        w_sd = np.sqrt(weights @ (b - w_mean) ** 2)
        for k, domain in enumerate(domains):
            move = r[:, k].mean() - b[:, k].mean()
            rows.append(
                {
                    "run": run,
                    "parameter": f"{name}[{domain}]",
                    "base": b[:, k].mean(),
                    "reweighted": w_mean[k],
                    "refit": r[:, k].mean(),
                    "move captured": (w_mean[k] - b[:, k].mean()) / move
                    if abs(move) > 1e-12
                    else np.nan,
                    "sd base": b[:, k].std(),
                    "sd reweighted": w_sd[k],
                    "sd refit": r[:, k].std(),
                }
            )
    step = 2 * float(obs["step"].max())
    _, surface, _, w = prepare(base, step, None, None)
    choice = solve(surface, w, "mean", None).shares
    _, surface_refit, _, _ = prepare(refit, step, None, None)
    objective = {
        "objective base": float(weighted_loss(surface, w, choice).mean()),
        "objective reweighted": float(weights @ weighted_loss(surface, w, choice)),
        "objective refit": float(weighted_loss(surface_refit, w, choice).mean()),
        "ess": float(1.0 / (weights.astype(float) ** 2).sum()),
        "seconds base fit": t_base,
        "seconds refit": t_refit,
        "seconds reweight": t_reweight,
    }
    return pd.DataFrame(rows), objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["fill_2", "entropy_se"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_default()
    for run in args.runs:
        print(f"--- held-out run {run}: its last checkpoint added ---", flush=True)
        table, objective = one_case(data, run, args.seed)
        print(table.drop(columns="run").round(5).to_string(index=False))
        moved = table["move captured"].abs() < np.inf
        print(
            "median share of the refit's move captured by reweighting: "
            f"{np.nanmedian(table.loc[moved, 'move captured']):.2f}; "
            + ", ".join(f"{k} {v:.5g}" for k, v in objective.items()),
            flush=True,
        )


if __name__ == "__main__":
    main()
