"""Benchmark: which cheap update of the posterior, after one more proxy run, is closest to a
refit? The linear (Gaussian) update or importance reweighting (`bimix next --update`).

`bimix next` values a candidate run by how it would move the expected objective of every
mixture the decision could pick. It cannot refit for every fantasy, so it updates the draws of
the current fit. This benchmark puts both updates next to a real refit, where the value of a run
is decided: a few runs fitted (``--base-runs``, 6 by default, where `bimix next` starts in
``benchmarks/next_run_regret.py``).

Per dataset (SlimPajama 122M when ``../shared/datasets`` or ``$BIMIX_SHARED_DATASETS`` holds it;
the embedded study always): fit the packaged ``bimix_cross`` spec on ``--base-runs`` random runs;
then, for each of ``--cases`` other runs, take its observed log loss at the last checkpoint
(``y``, one value per domain), and

* **refit** with that checkpoint added (the reference);
* **reweight** the base draws by ``p(y | theta_d)`` (what ``update="reweight"`` does);
* **linear**: ``E[O | y] = E[O] + Cov(O, f) S^-1 (y - E[f])``, ``f`` the law's log loss of the
  run's mixture, ``S = Cov(f) + E[run covariance]`` over the draws (``update="linear"``).

``O`` is the objective (mean loss over domains at the last checkpoint) of every run's mixture
(the decision set). Printed per case: the correlation and slope of each update's move of
``E[O(m)] - E[O(best)]`` over mixtures against the refit's, its RMS error, the effective draws
left by reweighting, and the regret (under the refit's means) of the mixture each update would
pick. A repeat of the base fit with another seed and no new data gives the Monte Carlo floor.

    python benchmarks/next_run_update.py [--base-runs 6] [--cases 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("NUMBA_OPT", "1")  # as the `bimix` command does

import numpy as np
import pandas as pd

from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.bayes.spec import load_spec
from bimix_bayes.data.embedded import load_default
from bimix_bayes.data.public import find_datasets, load_slimpajama
from bimix_bayes.data.table import MixtureData
from bimix_bayes.decision.next_run import _normalised, _observation, _run_covariance
from bimix_bayes.decision.problem import prepare
from bimix_bayes.decision.surface import weighted_loss

SAMPLER = {"chains": 4, "draws": 500, "tune": 500, "progress_bar": "never"}


def _fit(data: MixtureData, observations: pd.DataFrame, seed: int):
    spec = dict(load_spec("bimix_cross"))
    spec["sampler"] = {**spec["sampler"], **SAMPLER}
    runs = list(observations["run"].unique())
    sub = MixtureData.from_frames(
        data.mixtures.loc[runs], observations, volume=data.volume, source=data.source
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model = BiMixModel(spec)
        idata = model.fit(sub, seed=seed, progress_bar=False)
    return idata, time.perf_counter() - t0, model.diagnostics_


def _objective(idata, step: float, shares: np.ndarray, train: list[str]) -> np.ndarray:
    """``(draws, mixtures)`` mean loss over domains at ``step``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, surface, _, w = prepare(idata, step, None, None)
    cols = [train.index(c) for c in surface.columns]
    return weighted_loss(surface, w, shares[:, cols])


def _compare(move: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Correlation, slope and RMS error of a predicted move against the refit's."""
    slope = float(np.dot(move, ref) / np.dot(ref, ref)) if np.dot(ref, ref) > 0 else np.nan
    return {
        "corr": float(np.corrcoef(move, ref)[0, 1]),
        "slope": slope,
        "rmse_mn": 1e3 * float(np.sqrt(np.mean((move - ref) ** 2))),
    }


def one_dataset(name: str, data: MixtureData, args: argparse.Namespace) -> pd.DataFrame:
    rng = np.random.default_rng(args.seed)
    runs = list(data.mixtures.index)
    order = [runs[i] for i in rng.permutation(len(runs))]
    base_runs, cases = order[: args.base_runs], order[args.base_runs : args.base_runs + args.cases]
    obs = data.observations
    step = float(obs["step"].max())
    train = list(data.training_domains)
    shares = data.mixtures.loc[runs, train].to_numpy(float)
    base_obs = obs[obs["run"].isin(base_runs)]
    base, t_base, diag = _fit(data, base_obs, args.seed)
    print(
        f"[{name}] base fit on {len(base_runs)} runs: {t_base:.0f} s, max r-hat "
        f"{diag.max_rhat:.3f}, {diag.divergences} divergences",
        flush=True,
    )
    o_base = _objective(base, step, shares, train)
    best = int(np.argmin(o_base.mean(axis=0)))
    rel_base = o_base - o_base[:, [best]]
    domains = [str(d) for d in base.posterior["domain"].to_numpy()]
    n_draws = len(o_base)
    draws = np.arange(n_draws)
    rows = []
    again, _, _ = _fit(data, base_obs, args.seed + 1)
    o_again = _objective(again, step, shares, train)
    floor = (o_again - o_again[:, [best]]).mean(axis=0) - rel_base.mean(axis=0)
    rms = 1e3 * np.sqrt(np.mean(floor**2))
    print(f"[{name}] Monte Carlo floor (base refitted, seed + 1): RMS {rms:.2f} millinats")
    for run in cases:
        last = obs[(obs["run"] == run) & (obs["step"] == obs.loc[obs["run"] == run, "step"].max())]
        y = np.log(last.set_index("domain").loc[domains, "loss"].to_numpy())
        refit, t_refit, rdiag = _fit(data, pd.concat([base_obs, last]), args.seed)
        o_refit = _objective(refit, step, shares, train)
        ref = (o_refit - o_refit[:, [best]]).mean(axis=0) - rel_base.mean(axis=0)
        x = data.mixtures.loc[[run], train].to_numpy(float)
        t0 = time.perf_counter()
        observation = _observation(base, step, train, x, draws)
        weights = _normalised(observation.log_likelihood(np.array([0]), y[None, None]))[0, 0]
        reweighted = weights.astype(float) @ rel_base - rel_base.mean(axis=0)
        t_rw = time.perf_counter() - t0
        t0 = time.perf_counter()
        f = observation.mean[0]  # (draws, D)
        x_proxy = float(np.log(step / float(base.attrs["s_ref"])))
        cov_run = _run_covariance(base.posterior, draws, x_proxy).mean(axis=0)
        fc = f - f.mean(axis=0)
        s = fc.T @ fc / (n_draws - 1) + cov_run
        c = (rel_base - rel_base.mean(axis=0)).T @ fc / (n_draws - 1)
        linear = c @ np.linalg.solve(s, y - f.mean(axis=0))
        t_lin = time.perf_counter() - t0
        truth = (o_refit - o_refit[:, [best]]).mean(axis=0)
        row = {"dataset": name, "run": run, "refit_s": t_refit, "refit_rhat": rdiag.max_rhat}
        row["refit move rms_mn"] = 1e3 * float(np.sqrt(np.mean(ref**2)))
        for label, move, secs in (("linear", linear, t_lin), ("reweight", reweighted, t_rw)):
            for k, v in _compare(move, ref).items():
                row[f"{label} {k}"] = v
            pick = int(np.argmin(rel_base.mean(axis=0) + move))
            row[f"{label} regret_mn"] = 1e3 * float(truth[pick] - truth.min())
            row[f"{label} s"] = secs
        row["reweight ess"] = float(1.0 / (weights.astype(float) ** 2).sum())
        row["base regret_mn"] = 1e3 * float(truth[best] - truth.min())
        rows.append(row)
        print(pd.Series(row).to_string(), flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-runs", type=int, default=6)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    datasets = {"embedded study": load_default()}
    root = find_datasets()
    if root is None:
        print(
            "public datasets not found (../shared/datasets or $BIMIX_SHARED_DATASETS): "
            "SlimPajama skipped"
        )
    else:
        datasets = {"SlimPajama 122M": load_slimpajama(root, "122M"), **datasets}
    tables = [one_dataset(name, data, args) for name, data in datasets.items()]
    table = pd.concat(tables, ignore_index=True)
    cols = [
        c for c in table.columns if c.endswith(("corr", "slope", "rmse_mn", "regret_mn", "ess"))
    ]
    print("\nsummary (medians over cases):")
    print(table.groupby("dataset")[cols].median().round(3).T.to_string())


if __name__ == "__main__":
    main()
