"""Where the shipped prior of the shared extrapolation error comes from (and a check of it).

Real loss curves leave the law when they are extrapolated, and all runs of a study leave it
together (the learning-rate schedule's end, the data order...): an error common to every run of
a domain, which no per-run term expresses and which nothing in the fitted range foretells. The
model forecasts it as a random bend shared by all runs (``[discrepancy]`` in the spec,
:mod:`bimix_bayes.bayes.discrepancy`)::

    delta[d](s) = omega * log2(s / s_last) * g[d],  g ~ Normal(0, R),  R = (1 - rho) I + rho J

for steps beyond the last fitted one ``s_last``. This script estimates ``omega`` (per doubling
of the step, log loss) and ``rho`` (the cross-domain correlation) from public backtests:

1. for each dataset, fit the paper's least squares on the checkpoints up to a fraction (1/2,
   1/4) of the last step, forecast the later ones;
2. average the log errors over runs per (domain, step): the common-mode error ``c[d, s]``,
   with ``h = log2(s / s_last)``;
3. per dataset ``omega_g^2 = mean(c^2 / h^2)`` and, from the mean over domains,
   ``rho_g``; the shipped values are the medians over datasets (robust to a set the law
   fits badly, such as Ye et al.'s 3Mix with 3-6 runs);
4. leave one dataset out: with ``omega`` and ``rho`` from the others, the share of its
   common-mode errors inside ``+-1.645 omega h`` (90 %), per domain and for the mean of domains;
5. whether the fitted range foretells the width: each dataset's in-range misfit (the root mean
   square of ``c`` at the fitted steps), its correlation with ``omega`` across datasets, and
   the leave-one-out check of a width scaled by it (the others' median ``omega / misfit``
   times the held-out set's misfit) beside the fixed width.

The least-squares errors also hold the fitted law's own error, so ``omega`` errs on the wide
side. Run from the repository root (datasets in ``../shared/datasets`` or
``$BIMIX_SHARED_DATASETS``; skipped when absent)::

    python benchmarks/extrapolation_prior.py            # prints; --out FILE.md writes a report
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bimix_bayes.data.embedded import load_default
from bimix_bayes.data.files import atomic_write_text
from bimix_bayes.data.public import find_datasets, load_slimpajama
from bimix_bayes.data.public_loaders import load_mixinglaws
from bimix_bayes.data.table import MixtureData
from bimix_bayes.evaluation.protocols import ProtocolError
from bimix_bayes.evaluation.splits import make_splits
from bimix_bayes.leastsq.fit import BiMixLeastSquares

FRACTIONS = (0.5, 0.25)
Z90 = 1.6448536269514722


def datasets(root: Path | None) -> dict[str, Callable[[], MixtureData]]:
    """The datasets with shared checkpoints and several runs (the embedded study always)."""
    out: dict[str, Callable[[], MixtureData]] = {"embedded study": load_default}
    if root is None:
        return out
    for size in ("122M", "310M", "680M", "937M", "1.235B", "2.718B"):
        out[f"SlimPajama {size}"] = lambda s=size: load_slimpajama(root, s, missing_policy="drop")
    for exp, sizes in (
        ("2Mix", ("70M", "160M")),
        ("3Mix", ("70M", "160M")),
        ("5Mix", ("70M", "160M", "410M")),
    ):
        for size in sizes:
            out[f"Ye {exp} {size}"] = lambda e=exp, s=size: load_mixinglaws(root, e, s)
    return out


def common_mode_errors(data: MixtureData, fraction: float) -> pd.DataFrame:
    """Per (domain, step) beyond the fitted range: the mean log error over runs, and ``h``."""
    common = common_mode_residuals(data, fraction)
    return common[common["h"] > 0].reset_index(drop=True)


def common_mode_residuals(data: MixtureData, fraction: float) -> pd.DataFrame:
    """Per (domain, step), inside the fitted range (``h <= 0``) and beyond it (``h > 0``): the
    mean over runs of the log error of the least squares fitted on the steps up to
    ``fraction`` of the last, with ``h = log2(step / last fitted step)``; steps seen on fewer
    than 2 runs are left out."""
    empty = pd.DataFrame(columns=["domain", "step", "error", "runs", "h"])
    try:
        (split,) = make_splits(data, f"horizon:{fraction}")
    except ProtocolError:  # too few checkpoints before the cut to fit the law
        return empty
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = BiMixLeastSquares(n_bootstrap=0).fit(split.train)
        except ValueError as exc:  # a group the law cannot be fitted to
            print(f"  horizon:{fraction}: no fit ({exc})", file=sys.stderr)
            return empty
    last = float(split.train.observations["step"].max())
    obs = pd.concat([split.train.observations, split.held[split.held["step"] > last]])
    shares = data.mixtures[list(fit.domains_)]
    positive = shares.index[(shares > 0).all(axis=1)]  # BiMix is undefined at a zero share
    obs = obs[obs["run"].isin(positive)]
    pred = fit.predict(
        data.mixtures.loc[sorted(obs["run"].unique())],
        sorted(obs["step"].unique()),
        average=False,
    )
    pred = pred.rename(columns={"mixture": "run", "loss": "forecast"})
    merged = obs[["run", "step", "domain", "loss"]].merge(pred, on=["run", "step", "domain"])
    merged["error"] = np.log(merged["loss"] / merged["forecast"])
    common = merged.groupby(["domain", "step"], as_index=False).agg(
        error=("error", "mean"), runs=("run", "nunique")
    )
    common["h"] = np.log2(common["step"] / last)
    return common[common["runs"] >= 2].reset_index(drop=True)


def scaled_width_check(table: pd.DataFrame, commons: dict) -> pd.DataFrame:
    """Leave one dataset out, a width scaled by the held-out set's own fitted range: omega =
    (median over the others of omega / misfit) x its misfit, beside the coverage of the fixed
    width (the others' median omega); rho as the main check."""
    ratio = table["omega"] / table["in-range misfit"]
    rows = []
    for name, (common, n_dom) in commons.items():
        others = table.drop(index=name)
        omega_fixed, rho_o = pooled(others)
        omega_scaled = float(ratio.drop(index=name).median() * table.loc[name, "in-range misfit"])
        fixed = coverage(common, n_dom, omega_fixed, rho_o)
        scaled = coverage(common, n_dom, omega_scaled, rho_o)
        rows.append(
            {
                "held-out dataset": name,
                "omega fixed": omega_fixed,
                "omega scaled": omega_scaled,
                "cover per domain, fixed": fixed[0],
                "cover per domain, scaled": scaled[0],
                "cover mean, fixed": fixed[1],
                "cover mean, scaled": scaled[1],
            }
        )
    return pd.DataFrame(rows).set_index("held-out dataset")


def _distance(values: pd.Series) -> float:
    """Mean absolute distance of coverages from 0.9 (NaN left out)."""
    return float((values.dropna() - 0.9).abs().mean())


def estimate(common: pd.DataFrame, n_domains: int) -> tuple[float, float, float]:
    """``(omega, omega_of_mean, rho)`` of one dataset's common-mode errors."""
    omega2 = float(np.mean((common["error"] / common["h"]) ** 2))
    mean = common.groupby("step").agg(
        error=("error", "mean"), h=("h", "first"), d=("domain", "nunique")
    )
    mean = mean[mean["d"] == n_domains]
    omega_mean2 = float(np.mean((mean["error"] / mean["h"]) ** 2)) if len(mean) else np.nan
    # Var(mean of D equicorrelated) = omega^2 (1/D + (1 - 1/D) rho)
    rho = (omega_mean2 / omega2 - 1 / n_domains) / (1 - 1 / n_domains) if n_domains > 1 else 1.0
    return float(np.sqrt(omega2)), float(np.sqrt(omega_mean2)), float(np.clip(rho, 0.0, 1.0))


def pooled(table: pd.DataFrame) -> tuple[float, float]:
    """``(omega, rho)`` over datasets: medians, so that one badly fitted set cannot set them."""
    return float(table["omega"].median()), float(table["rho"].median())


def coverage(common: pd.DataFrame, n_domains: int, omega: float, rho: float) -> tuple[float, float]:
    """Share of common-mode errors inside the 90 % band, per domain and for the mean."""
    per_domain = float(np.mean(np.abs(common["error"]) <= Z90 * omega * common["h"]))
    mean = common.groupby("step").agg(
        error=("error", "mean"), h=("h", "first"), d=("domain", "nunique")
    )
    mean = mean[mean["d"] == n_domains]
    sd_mean = omega * np.sqrt(1 / n_domains + (1 - 1 / n_domains) * rho)
    of_mean = (
        float(np.mean(np.abs(mean["error"]) <= Z90 * sd_mean * mean["h"])) if len(mean) else np.nan
    )
    return per_domain, of_mean


def _markdown(table: pd.DataFrame, digits: int) -> str:
    """A Markdown table of ``table`` (index first), floats to ``digits`` places."""

    def cell(v: object) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    head = [table.index.name or "", *map(str, table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.iterrows():
        lines.append("| " + " | ".join([str(name), *map(cell, row.tolist())]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="also write the tables as Markdown here")
    args = parser.parse_args(argv)
    root = find_datasets()
    if root is None:
        print(
            "public datasets not found (../shared/datasets or $BIMIX_SHARED_DATASETS): "
            "only the embedded study",
            file=sys.stderr,
        )
    rows, commons = [], {}
    for name, load in datasets(root).items():
        print(f"{name} ...", file=sys.stderr, flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the loaders' notes on dropped checkpoints
            data = load()
        both = [common_mode_residuals(data, f) for f in FRACTIONS]
        common = pd.concat([c[c["h"] > 0] for c in both], ignore_index=True)
        inside = pd.concat([c[c["h"] <= 0] for c in both], ignore_index=True)["error"]
        commons[name] = (common, len(data.domains))
        omega, omega_mean, rho = estimate(common, len(data.domains))
        rows.append(
            {
                "dataset": name,
                "domains": len(data.domains),
                "runs": data.n_runs,
                "points": len(common),
                "omega": omega,
                "omega of mean": omega_mean,
                "rho": rho,
                "in-range misfit": float(np.sqrt(np.mean(inside.to_numpy(dtype=float) ** 2))),
            }
        )
    table = pd.DataFrame(rows).set_index("dataset")
    omega_all, rho_all = pooled(table)
    lodo = []
    for name, (common, n_dom) in commons.items():
        others = table.drop(index=name)
        omega_o, rho_o = pooled(others)
        cov_d, cov_m = coverage(common, n_dom, omega_o, rho_o)
        lodo.append(
            {
                "held-out dataset": name,
                "omega (others)": omega_o,
                "rho (others)": rho_o,
                "cover 90 % per domain": cov_d,
                "cover 90 % mean of domains": cov_m,
            }
        )
    lodo_table = pd.DataFrame(lodo).set_index("held-out dataset")
    pd.set_option("display.width", 160)
    fmt = {"omega": "{:.4f}", "omega of mean": "{:.4f}", "rho": "{:.2f}"}
    print(table.to_string(formatters={k: v.format for k, v in fmt.items()}))
    print(
        f"\npooled (median over datasets): omega = {omega_all:.4f} per doubling, "
        f"rho = {rho_all:.2f}"
    )
    print("\nleave one dataset out:")
    print(lodo_table.to_string(float_format=lambda v: f"{v:.3f}"))
    medians = lodo_table[["cover 90 % per domain", "cover 90 % mean of domains"]].median()
    print(f"\nmedian leave-one-out coverage: {medians.round(3).to_dict()}")
    scaled = scaled_width_check(table, commons)
    r = float(np.corrcoef(np.log(table["omega"]), np.log(table["in-range misfit"]))[0, 1])
    ratio_sd = float(np.log(table["omega"] / table["in-range misfit"]).std())
    misfit_text = (
        f"Across the {len(table)} datasets, log omega against log in-range misfit: correlation "
        f"{r:.2f}; the sd of log omega is {float(np.log(table['omega']).std()):.2f}, of log "
        f"(omega / misfit) {ratio_sd:.2f}. Mean distance of the leave-one-out coverages from "
        f"90 %: fixed width {_distance(scaled['cover per domain, fixed']):.3f} per domain, "
        f"{_distance(scaled['cover mean, fixed']):.3f} mean of domains; scaled width "
        f"{_distance(scaled['cover per domain, scaled']):.3f}, "
        f"{_distance(scaled['cover mean, scaled']):.3f}."
    )
    print("\nleave one dataset out, the width scaled by the held-out set's in-range misfit:")
    print(scaled.to_string(float_format=lambda v: f"{v:.3f}"))
    print(misfit_text)
    if args.out:
        text = "\n\n".join(
            [
                "# The shared extrapolation error: estimate and leave-one-dataset-out check",
                "Produced by `python benchmarks/extrapolation_prior.py --out "
                + str(args.out)
                + "`. "
                + __doc__.split("\n\n")[1].replace("\n", " "),
                _markdown(table, 4),
                f"Pooled (median over datasets): **omega = {omega_all:.4f}** log loss per "
                f"doubling of the step, **rho = {rho_all:.2f}**.",
                "Leave one dataset out (omega and rho from the other datasets):",
                _markdown(lodo_table, 3),
                "## Does the fitted range foretell the width?",
                "The in-range misfit is the root mean square of the same common-mode errors "
                "inside the fitted range (the mean over runs of the least squares' log error at "
                "each fitted step and domain). If the error beyond the range grew in proportion "
                "to it, a width scaled by each dataset's own misfit would calibrate better than "
                "one width for all. Leave one dataset out: omega fixed = the others' median "
                "omega (as above); omega scaled = the others' median of omega / misfit, times "
                "the held-out set's misfit.",
                _markdown(scaled, 3),
                misfit_text,
            ]
        )
        atomic_write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
