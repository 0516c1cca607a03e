"""Do small studies converge? Per study and seed: the default fit's first attempt and the one
retry `bimix fit` makes, under several samplings: the loss level at each domain's typical share
(``sampler.centre_share = true``, the default) or at share 1, drawn given everything else
(``sampler.level = "conditional"``, the default) or as a flat variable (``"free"``), the
exponents drawn around their Laplace approximation given the rest (``sampler.exponent =
"laplace"``, the default) or as they are, and the mixture exponents pooled across domains
with a fixed population sd (``priors.log_alpha.sd_prior = "fixed"``, the default), with a
sampled one (Gamma(2)), or each on its own (``pooled = false``).

With ``--law`` a cross-domain law (bimix_cross, loglinear, effective), the samplings compared
are those of its cross effects instead: centred in the basis of the directions the likelihood
sees (``sampler.centre_cross = true``, the default) or non-centred, and, for loglinear, the
own-share effect's population sd fixed (``priors.log_own.sd_prior = "fixed"``, the default) or
sampled. Zero shares are then kept where the law allows them, and laws that fit evaluation-only
domains add Ye et al.'s RedPajama 70M (7 training domains, 5 Pile groups), the first half of
its steps (as the ``horizon:0.5`` backtest fits).

A fit that fails its diagnostics is refitted once, as ``BiMixModel.fit(retry=True)`` does (same
seed): a longer warm-up (``tune`` 1000), smaller steps (``target_accept`` 0.99) when the chains
diverged, and more draws (2-4x, as the failed ESS asks) when they mixed slowly
(:func:`bimix_bayes.bayes.diagnostics.retry_settings`). Each line says what failed and what the
retry changed; the table counts the seeds that pass.

Studies: the embedded study (20 runs, 5 domains; every seed fits all runs) and its 10 runs left
by the validation's ``holdout-mixtures:10`` split 0, and, when the public
datasets are found (``../shared/datasets`` or ``$BIMIX_SHARED_DATASETS``), Ye et al.'s 5Mix 70M
on 13-run subsets drawn by the seed (5 domains) and their 3Mix 70M (3 runs, 3 domains).

    python benchmarks/retry_cures.py                 # seeds 0-11, about 2 h on 2 cores
    python benchmarks/retry_cures.py --seeds 6 --variants "fixed sd, typical share, free level" \
        "fixed sd, typical share, conditional level" \
        "fixed sd, typical share, conditional level, Laplace exponent (default)"
    python benchmarks/retry_cures.py --seeds 4 --studies embedded
    python benchmarks/retry_cures.py --law loglinear --seeds 3
    python benchmarks/retry_cures.py --seeds 8 --tune 300 --variants \
        "fixed sd, typical share, conditional level, Laplace exponent (default)"

``--tune N`` sets the first attempt's warm-up (the retry keeps its own longer one);
``--tau-prior gamma half_normal`` compares the run offsets' sd priors (``likelihood.tau_prior``)::

    python benchmarks/retry_cures.py --seeds 8 --studies "Ye 3Mix" --tau-prior half_normal gamma \
        --variants "fixed sd, typical share, conditional level, Laplace exponent (default)"
    python benchmarks/retry_cures.py --law loglinear --seeds 3 --studies "embedded less" "Ye Red" \
        --tau-prior half_normal gamma
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from itertools import product

os.environ.setdefault("NUMBA_OPT", "1")  # as the `bimix` command does (cli.fast_compile_settings)

import numpy as np
import pandas as pd

from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.data.embedded import load_default
from bimix_bayes.data.public import find_datasets
from bimix_bayes.data.public_loaders import load_mixinglaws
from bimix_bayes.data.table import MixtureData
from bimix_bayes.evaluation.splits import make_splits
from bimix_bayes.laws.registry import LAWS, get_law

#: The samplings compared, named "exponents, level at" (spec overrides; ``--variants`` picks
#: some by name), each explicit about both settings so that it means the same whatever the
#: default spec says.
_SAMPLINGS = {  # name: (centre_share, log_alpha pooled, its sd_prior, sampler.level, .exponent)
    "pooled, share 1 (the old default)": (False, True, "gamma", "free", "free"),
    "pooled, typical share": (True, True, "gamma", "free", "free"),
    "own, share 1": (False, False, "gamma", "free", "free"),
    "own, typical share": (True, False, "gamma", "free", "free"),
    "fixed sd, typical share, free level": (True, True, "fixed", "free", "free"),
    "fixed sd, typical share, conditional level": (True, True, "fixed", "conditional", "free"),
    "fixed sd, typical share, conditional level, Laplace exponent (default)": (
        True, True, "fixed", "conditional", "laplace",
    ),
}  # fmt: skip
VARIANTS: dict[str, dict] = {
    name: {
        "sampler": {"centre_share": centre, "level": level, "exponent": exponent},
        "priors": {"log_alpha": {"pooled": pooled, "sd_prior": sd_prior}},
    }
    for name, (centre, pooled, sd_prior, level, exponent) in _SAMPLINGS.items()
}
#: The samplings of a cross-domain law's effects: (sampler.centre_cross, priors.log_own.sd_prior;
#: the latter acts under loglinear only).
_CROSS_SAMPLINGS = {  # name: (centre_cross, log_own's sd_prior, sampler.exponent)
    "centred cross, fixed own sd, Laplace exponent (default)": (True, "fixed", "laplace"),
    "centred cross, fixed own sd, free exponent": (True, "fixed", "free"),
    "centred cross, sampled own sd": (True, "gamma", "free"),
    "non-centred cross, fixed own sd": (False, "fixed", "free"),
    "non-centred cross, sampled own sd (the old default)": (False, "gamma", "free"),
}
CROSS_VARIANTS: dict[str, dict] = {
    name: {
        "sampler": {"centre_cross": centre, "exponent": exponent},
        "priors": {"log_own": {"sd_prior": sd_prior}},
    }
    for name, (centre, sd_prior, exponent) in _CROSS_SAMPLINGS.items()
}


def studies(root: str | None, law: str = "bimix") -> dict[str, Callable[[int], MixtureData]]:
    """Each study as a function of the seed (the data a seed fits) that ``law`` can fit."""
    embedded = load_default()
    held_out = make_splits(embedded, "holdout-mixtures:10", seed=0, n_splits=3)[0].train
    out: dict[str, Callable[[int], MixtureData]] = {
        "embedded": lambda seed: embedded,
        # the validation's fits of holdout-mixtures:10, split 0: 10 runs
        "embedded less 10 runs (holdout-mixtures:10 split 0)": lambda seed: held_out,
    }
    if root is None:
        return out
    zero = "keep" if get_law(law).finite_at_zero else "drop"
    five = load_mixinglaws(root, "5Mix", "70M", zero_policy=zero)
    three = load_mixinglaws(root, "3Mix", "70M", zero_policy=zero)

    def five_subset(seed: int) -> MixtureData:
        runs = np.random.default_rng(seed).choice(list(five.runs), 13, replace=False)
        return five.subset(list(runs))

    out["Ye 5Mix 70M (13 runs)"] = five_subset
    out["Ye 3Mix 70M (3 runs)"] = lambda seed: three
    if get_law(law).fits_evaluation_only:
        rpj = load_mixinglaws(root, "RedPajama", "70M", zero_policy=zero)
        first_half = rpj.subset(max_step=0.5 * float(rpj.observations["step"].max()))
        out["Ye RedPajama 70M (first half of the steps)"] = lambda seed: first_half
    return out


def fit_with_retry(
    data: MixtureData,
    variant: dict,
    seed: int,
    law: str = "bimix",
    tune: int | None = None,
    tau_prior: str | None = None,
) -> dict:
    """The first attempt and the retry of one fit of ``law`` under the spec overrides
    ``variant`` (``tune`` warm-up steps at the first attempt and ``likelihood.tau_prior`` when
    given): what passed, what failed, what the retry changed, seconds."""
    sampler = {**variant.get("sampler", {}), "progress_bar": "never"}
    if tune is not None:
        sampler["tune"] = tune
    spec = {**variant, "sampler": sampler, "law": {"name": law}}
    if tau_prior is not None:
        spec["likelihood"] = {**variant.get("likelihood", {}), "tau_prior": tau_prior}
    model = BiMixModel(spec)
    first_draws = model.spec["sampler"]["draws"]
    first_accept = model.spec["sampler"]["target_accept"]
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
        "smaller steps": retried and model.spec["sampler"]["target_accept"] > first_accept,
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
        "--law", choices=sorted(LAWS), default="bimix", help="the law fitted (default bimix)"
    )
    parser.add_argument(
        "--variants",
        nargs="*",
        choices=[*VARIANTS, *CROSS_VARIANTS],
        help="samplings to compare (default: all of the law's)",
    )
    parser.add_argument(
        "--tune",
        type=int,
        help="warm-up steps per chain at the first attempt (default: the spec's; the retry "
        "takes safer_sampler's)",
    )
    parser.add_argument(
        "--tau-prior",
        nargs="*",
        choices=["gamma", "half_normal"],
        help="the run offsets' sd prior(s) to compare (likelihood.tau_prior; default: the spec's)",
    )
    args = parser.parse_args()
    samplings = CROSS_VARIANTS if get_law(args.law).cross_domain else VARIANTS
    variants = {k: v for k, v in samplings.items() if not args.variants or k in args.variants}
    if not variants:
        parser.error(f"none of --variants is a sampling of {args.law}: {', '.join(samplings)}")
    warnings.simplefilter("ignore")
    root = find_datasets()
    if root is None:
        print("public datasets not found: the embedded study only")
    rows = []
    for name, load in studies(root, args.law).items():
        if args.studies and not any(name.startswith(s) for s in args.studies):
            continue
        for seed in range(args.seeds):
            data = load(seed)
            for (label, variant), prior in product(variants.items(), args.tau_prior or [None]):
                if prior is not None:
                    label = f"{label}, tau {prior}"
                row = {"study": name, "sampling": label, "seed": seed}
                row.update(fit_with_retry(data, variant, seed, args.law, args.tune, prior))
                rows.append(row)
                if row["first"]:
                    text = "pass"
                else:
                    kind = (
                        ", ".join(k for k in ("smaller steps", "more draws") if row[k])
                        or "longer warm-up"
                    )
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
