"""Do small studies converge? Per study and seed: the default fit's first attempt and the one
retry `bimix fit` makes, under several samplings: the loss level at each domain's typical share
(``sampler.centre_share = true``, the default) or at share 1, and the mixture exponents pooled
across domains with a fixed population sd (``priors.log_alpha.sd_prior = "fixed"``, the
default), with a sampled one (Gamma(2)), or each on its own (``pooled = false``).

A fit that fails its diagnostics is refitted once, as ``BiMixModel.fit(retry=True)`` does (same
seed): smaller steps and a longer warm-up (``target_accept`` 0.99, ``tune`` 1000), plus twice
the draws when the chains mixed slowly (r-hat, ESS) rather than only diverged
(:func:`bimix_bayes.bayes.model.safer_sampler`). Each line says what failed and what the retry
changed; the table counts the seeds that pass.

Studies: the embedded study (20 runs, 5 domains; every seed fits all runs), and, when the public
datasets are found (``../shared/datasets`` or ``$BIMIX_SHARED_DATASETS``), Ye et al.'s 5Mix 70M
on 13-run subsets drawn by the seed (5 domains) and their 3Mix 70M (3 runs, 3 domains).

    python benchmarks/retry_cures.py                 # seeds 0-11, about 2 h on 2 cores
    python benchmarks/retry_cures.py --seeds 8 --variants "fixed sd, typical share (default)"
    python benchmarks/retry_cures.py --seeds 4 --studies embedded
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable

os.environ.setdefault("NUMBA_OPT", "0")  # as the `bimix` command does (cli.fast_compile_settings)

import numpy as np
import pandas as pd

from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.data.embedded import load_default
from bimix_bayes.data.public import find_datasets
from bimix_bayes.data.public_loaders import load_mixinglaws
from bimix_bayes.data.table import MixtureData

#: The samplings compared, named "exponents, level at" (spec overrides; ``--variants`` picks
#: some by name), each explicit about both settings so that it means the same whatever the
#: default spec says.
_SAMPLINGS = {  # name: (sampler.centre_share, priors.log_alpha.pooled, its sd_prior)
    "pooled, share 1 (the old default)": (False, True, "gamma"),
    "pooled, typical share": (True, True, "gamma"),
    "own, share 1": (False, False, "gamma"),
    "own, typical share": (True, False, "gamma"),
    "fixed sd, typical share (default)": (True, True, "fixed"),
}
VARIANTS: dict[str, dict] = {
    name: {
        "sampler": {"centre_share": centre},
        "priors": {"log_alpha": {"pooled": pooled, "sd_prior": sd_prior}},
    }
    for name, (centre, pooled, sd_prior) in _SAMPLINGS.items()
}


def studies(root: str | None) -> dict[str, Callable[[int], MixtureData]]:
    """Each study as a function of the seed (the data a seed fits)."""
    out: dict[str, Callable[[int], MixtureData]] = {"embedded": lambda seed: load_default()}
    if root is None:
        return out
    five = load_mixinglaws(root, "5Mix", "70M", zero_policy="drop")
    three = load_mixinglaws(root, "3Mix", "70M", zero_policy="drop")

    def five_subset(seed: int) -> MixtureData:
        runs = np.random.default_rng(seed).choice(list(five.runs), 13, replace=False)
        return five.subset(list(runs))

    out["Ye 5Mix 70M (13 runs)"] = five_subset
    out["Ye 3Mix 70M (3 runs)"] = lambda seed: three
    return out


def fit_with_retry(data: MixtureData, variant: dict, seed: int) -> dict:
    """The first attempt and the retry of one fit under the spec overrides ``variant``: what
    passed, what failed, what the retry changed, seconds."""
    sampler = {**variant.get("sampler", {}), "progress_bar": "never"}
    model = BiMixModel({**variant, "sampler": sampler})
    first_draws = model.spec["sampler"]["draws"]
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        idata = model.fit(data, seed=seed, retry=True)
    retried = "first_attempt" in idata.attrs
    first = idata.attrs.get("first_attempt")
    return {
        "first": not retried and model.diagnostics_.passed,
        "after retry": model.diagnostics_.passed,
        "retried": retried,
        "more draws": retried and model.spec["sampler"]["draws"] > first_draws,
        "seconds": time.perf_counter() - t0,
        "first problems": _problems(first) if retried else [],
        "problems": model.diagnostics_.problems,
    }


def _problems(diagnostics_json: str) -> list[str]:
    from bimix_bayes.bayes.diagnostics import FitDiagnostics

    return FitDiagnostics.from_json(diagnostics_json).problems


def _short(problems: list[str]) -> str:
    return "; ".join(p.split(":")[0][:48] for p in problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12, help="seeds 0..N-1 (default 12)")
    parser.add_argument("--studies", nargs="*", help="names (prefixes) of the studies to run")
    parser.add_argument(
        "--variants", nargs="*", choices=list(VARIANTS), help="samplings to compare (default: all)"
    )
    args = parser.parse_args()
    variants = {k: v for k, v in VARIANTS.items() if not args.variants or k in args.variants}
    warnings.simplefilter("ignore")
    root = find_datasets()
    if root is None:
        print("public datasets not found: the embedded study only")
    rows = []
    for name, load in studies(root).items():
        if args.studies and not any(name.startswith(s) for s in args.studies):
            continue
        for seed in range(args.seeds):
            data = load(seed)
            for label, variant in variants.items():
                row = {"study": name, "sampling": label, "seed": seed}
                row.update(fit_with_retry(data, variant, seed))
                rows.append(row)
                if row["first"]:
                    text = "pass"
                else:
                    kind = "steps and draws" if row["more draws"] else "steps"
                    outcome = "pass" if row["after retry"] else f"FAIL ({_short(row['problems'])})"
                    text = f"FAIL ({_short(row['first problems'])}); retry ({kind}): {outcome}"
                print(f"{name}, {label}, seed {seed}: {text} [{row['seconds']:.0f} s]", flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby(["study", "sampling"], sort=False).agg(
        seeds=("seed", "size"),
        first_attempt=("first", "sum"),
        after_retry=("after retry", "sum"),
        retried_with_more_draws=("more draws", "sum"),
        median_seconds=("seconds", "median"),
    )
    print()
    print("Seeds whose fit passes its diagnostics, at the first attempt and after the retry:")
    print(summary.round(1).to_string())


if __name__ == "__main__":
    main()
