"""Readers for the public loss measurements used to check the package against reality.

The files themselves are never shipped (several have no licence for redistribution; see
``../shared/datasets/README.md``): every loader takes the folder that holds them, which
:func:`find_datasets` finds through ``$BIMIX_SHARED_DATASETS`` or a ``shared/datasets`` folder
beside the source checkout. (:mod:`bimix_bayes.data.public` re-exports :func:`find_datasets`
and :func:`load_slimpajama`.)

* :func:`load_slimpajama` reads the SlimPajama 7-domain runs of Shukor et al. (2025), one model
  size, tokens as volume.
* :func:`load_mixinglaws` reads Ye et al.'s tidy long files (``2Mix``, ``3Mix``, ``5Mix``,
  ``RedPajama``) for one model size. In 2Mix/3Mix the training domains are the evaluation
  domains. RedPajama trains on RedPajama's 7 domains and evaluates on the Pile's five groups
  (evaluation-only targets; :func:`pile_group_weights` gives the "full" loss). 5Mix trains on five
  groups of Pile subsets and evaluates on the 22 subsets: the loss of a group is the
  validation-weighted mean of its subsets' losses (``raw/valid_weight.json``; the README of the
  datasets folder says this reproduces the authors' own "observed" numbers exactly). The special
  validation runs (ids >= 900) are left out, as the authors' pipeline does, and 3Mix's ``last``
  rows (a copy of the 60k checkpoint) are dropped.
* :func:`load_regmix` reads RegMix's 1M-parameter runs (512 training + 256 test mixtures, one
  final loss per run and domain, no steps).

Zero shares are frequent in Ye et al.'s and RegMix's runs. The policy is the caller's
(``zero_policy``, default ``"drop"`` here: the observations of a domain in the runs that gave it
no share are removed and counted in ``MixtureData.notes``; BiMix is undefined at r = 0).

Examples
--------
>>> root = find_datasets()
>>> data = load_slimpajama(root, "122M") if root else None  # doctest: +SKIP
>>> data = load_mixinglaws(root, "2Mix", "70M") if root else None  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.table import DataError, MixtureData, ZeroPolicy

__all__ = [
    "FIVE_MIX_GROUPS",
    "MIXINGLAWS_DIR",
    "MIXINGLAWS_EXPERIMENTS",
    "MIXINGLAWS_NON_EMBEDDING",
    "REGMIX_DIR",
    "SLIMPAJAMA_FILE",
    "find_datasets",
    "load_mixinglaws",
    "load_regmix",
    "load_slimpajama",
    "pile_group_weights",
]

SLIMPAJAMA_FILE = Path("dmsl_slimpajama_shukor2025") / "dmsl_llm_slimpajama.csv"
MIXINGLAWS_DIR = Path("mixinglaws_ye2024")
REGMIX_DIR = Path("regmix_liu2024")
#: Ye et al.'s experiments :func:`load_mixinglaws` reads.
MIXINGLAWS_EXPERIMENTS = ("2Mix", "3Mix", "5Mix", "RedPajama")
#: Non-embedding parameters of Ye et al.'s Pythia-style models (their ``pipeline/utils.py``,
#: ``MODEL_SIZES``): the sizes :func:`load_mixinglaws` gives the model-size dimension.
MIXINGLAWS_NON_EMBEDDING = {
    "70M": 18_915_328,
    "160M": 85_056_000,
    "305M": 201_541_632,
    "410M": 302_311_424,
    "1B": 805_736_448,
}

#: 5Mix training groups and their Pile validation subsets (from the authors' notebook).
FIVE_MIX_GROUPS: dict[str, tuple[str, ...]] = {
    "academic": (
        "ArXiv",
        "PubMed_Abstracts",
        "PhilPapers",
        "NIH_ExPorter",
        "FreeLaw",
        "USPTO_Backgrounds",
        "PubMed_Central",
    ),
    "prose": ("PG19", "Books3", "BookCorpus2"),
    "dialogue": (
        "Ubuntu_IRC",
        "OpenSubtitles",
        "EuroParl",
        "Enron_Emails",
        "HackerNews",
        "YoutubeSubtitles",
    ),
    "symbolic": ("DM_Mathematics", "Github"),
    "internet": ("Pile-CC", "OpenWebText2", "StackExchange", "Wikipedia_en"),
}


def find_datasets(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The public datasets folder: ``root`` when given (it must exist), else
    ``$BIMIX_SHARED_DATASETS``, else ``../shared/datasets`` beside the source checkout or the
    working directory; None when none of these exists.

    Raises
    ------
    FileNotFoundError
        When ``root`` is given and is not a folder.
    """
    if root is not None:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"no datasets folder at {root}")
        return Path(root)
    env = os.environ.get("BIMIX_SHARED_DATASETS")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[3] / "shared" / "datasets",
        Path.cwd().parent / "shared" / "datasets",
    ]
    return next((p for p in candidates if p.is_dir()), None)


def load_slimpajama(
    root: str | os.PathLike[str],
    size: str | None = "122M",
    *,
    openhermes: bool = False,
    **kwargs: Any,
) -> MixtureData:
    """The SlimPajama 7-domain runs (Shukor et al. 2025) of one model size, tokens as volume;
    ``size=None``: every size, model size as a dimension (total parameters, 122M-2.718B; a
    run is a mixture, trained at one to six sizes).

    Leaves out the duplicated last checkpoint (19.998e9 and 20e9 tokens carry identical losses)
    and, unless ``openhermes``, the out-of-domain ``openhermes`` loss: it is not a training
    domain (no proportion), so only a cross-domain law (``loglinear``) can fit it, as an
    evaluation-only target. Extra keyword arguments go to
    :func:`~bimix_bayes.data.loaders.load_data`.
    """
    options = {
        "exclude_domains": [] if openhermes else ["openhermes"],
        "drop_repeated_checkpoints": True,
        "missing_policy": "drop" if openhermes else "refuse",  # 3 openhermes cells are empty
        **kwargs,
    }
    path = Path(root) / SLIMPAJAMA_FILE
    if size is None:
        return load_data(path, size_col="model_size", size_kind="total parameters", **options)
    return load_data(path, group_col="model_size", group=size, **options)


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: not found; is this the public datasets folder?")
    return path


def load_mixinglaws(
    root: str | os.PathLike[str],
    experiment: str,
    size: str | None,
    *,
    zero_policy: ZeroPolicy = "drop",
    epsilon: float = 1e-4,
    validation_runs: bool = False,
) -> MixtureData:
    """One model size of Ye et al.'s ``2Mix``, ``3Mix``, ``5Mix`` or ``RedPajama`` runs, in steps;
    ``size=None``: every size, model size as a dimension.

    Parameters
    ----------
    root
        The public datasets folder.
    experiment
        ``"2Mix"``, ``"3Mix"``, ``"5Mix"`` (group-aggregated losses) or ``"RedPajama"``: the
        7 RedPajama domains are the training domains, the evaluation domains are the five
        Pile groups (academic, prose, dialogue, symbolic, internet), aggregated as for 5Mix;
        none of them is a training domain, so only the ``loglinear`` law fits them. The Pile's
        "full" loss is their weighted mean with :func:`pile_group_weights`.
    size
        Model size as in the file: ``"70M"``, ``"160M"``, ``"305M"``, ``"410M"``, ``"1B"``; or
        None for every size of the file at once, sizes counted in non-embedding parameters
        (:data:`MIXINGLAWS_NON_EMBEDDING`: the file's names are the Pythia models' total
        sizes, 70M holds 18.9M non-embedding parameters). A run id names one mixture at every
        size (checked), so its runs share their run effects. Every size trains 4,096 x 256
        tokens per step.
    zero_policy, epsilon
        What to do with zero shares (see :class:`~bimix_bayes.data.table.MixtureData`).
    validation_runs
        Keep the authors' validation runs (ids >= 900: the default and optimised mixtures,
        trained longer), left out by default as their fitting pipeline does. In 5Mix they are
        trained only at 1B (to 90k and 100k steps), so a size backtest (``holdout-size:800M``:
        1B holds 805.7M non-embedding parameters) scores them as new mixtures at a new size;
        in RedPajama run 999 is also trained at 70M and 160M, 998 at 70M only, 997 at 1B.

    Examples
    --------
    >>> load_mixinglaws(root, "5Mix", "70M").domains  # doctest: +SKIP
    ('academic', 'prose', 'dialogue', 'symbolic', 'internet')
    >>> load_mixinglaws(root, "5Mix", None).sizes  # doctest: +SKIP
    (18915328.0, 85056000.0, 201541632.0, 302311424.0, 805736448.0)
    """
    if experiment not in MIXINGLAWS_EXPERIMENTS:
        raise ValueError(
            f"experiment must be one of {', '.join(MIXINGLAWS_EXPERIMENTS)}, got {experiment!r}"
        )
    path = _need(Path(root) / MIXINGLAWS_DIR / f"{experiment}_losses_long.csv")
    raw = pd.read_csv(path, dtype={"model_size": str, "step": str})
    if size is not None:
        raw = raw[raw["model_size"] == size]
    if raw.empty:
        sizes = sorted(pd.read_csv(path, usecols=["model_size"])["model_size"].astype(str).unique())
        raise DataError(f"{path}: no model size {size!r}; sizes: {sizes}")
    notes = []
    steps = pd.to_numeric(raw["step"], errors="coerce")
    if steps.isna().any():
        notes.append(
            f"dropped {int(steps.isna().sum())} rows with step 'last' (a copy of the last "
            "numbered checkpoint)"
        )
    raw = raw.assign(step=steps)[steps.notna()]
    special = raw["run_id"] >= 900
    if special.any() and validation_runs:
        notes.append(
            f"kept the validation runs (ids >= 900: {sorted(raw.loc[special, 'run_id'].unique())})"
        )
    elif special.any():
        notes.append(
            f"left out the validation runs (ids >= 900: "
            f"{sorted(raw.loc[special, 'run_id'].unique())}), as the authors' pipeline does"
        )
    raw = raw if validation_runs else raw[~special]
    typo = (
        (raw["run_id"] == 999) & np.isclose(raw["p_C4"], 0.168375)
        if experiment == "RedPajama"
        else pd.Series(False, index=raw.index)
    )
    if typo.any():
        raw = raw.assign(p_C4=raw["p_C4"].where(~typo, 0.1484375))
        notes.append(
            "run 999's C4 share 0.168375 read as 0.1484375 (its shares sum to 1.0199 as "
            "written, exactly 1 with this reading; see the datasets README)"
        )
    props = [c for c in raw.columns if c.startswith("p_")]
    domains = [c[2:] for c in props]
    raw = raw.assign(run=raw["run_id"].astype(str))
    if experiment in ("5Mix", "RedPajama"):
        weights = _pile_subset_weights(root)
        group_of = {sub: g for g, subs in FIVE_MIX_GROUPS.items() for sub in subs}
        raw = raw[raw["eval_domain"].isin(group_of)]
        raw = raw.assign(
            domain=raw["eval_domain"].map(group_of),
            w=raw["eval_domain"].map(weights).astype(float),
        )
        raw = raw.assign(wl=raw["w"] * raw["loss"])
        g = raw.groupby(["run", "model_size", "step", "domain"], sort=False)
        agg = g.agg(wl=("wl", "sum"), w=("w", "sum"), n=("eval_domain", "nunique")).reset_index()
        full = agg["n"] == agg["domain"].map({k: len(v) for k, v in FIVE_MIX_GROUPS.items()})
        if not full.all():
            notes.append(
                f"dropped {int((~full).sum())} (run, step, group) losses with a missing subset"
            )
        agg = agg[full]
        obs = agg.assign(loss=agg["wl"] / agg["w"])[["run", "model_size", "step", "domain", "loss"]]
        notes.append(
            "group losses are the validation-weighted means of their Pile subsets "
            "(raw/valid_weight.json)"
        )
    else:
        obs = raw.rename(columns={"eval_domain": "domain"})
        obs = obs[["run", "model_size", "step", "domain", "loss"]]
    per_size = raw.drop_duplicates(["run", "model_size"])
    mixtures = per_size.drop_duplicates("run").set_index("run")[props]
    if size is None:
        _check_one_mixture_per_run(per_size, mixtures, props, path)
        obs = obs.assign(size=_non_embedding(path, obs["model_size"])).drop(columns="model_size")
        sizes = ", ".join(sorted(per_size["model_size"].unique(), key=MIXINGLAWS_NON_EMBEDDING.get))
        notes.append(f"model size as a dimension ({sizes}), in non-embedding parameters")
    else:
        obs = obs.drop(columns="model_size")
    mixtures.columns = domains
    return _validated(
        notes,
        mixtures,
        obs.reset_index(drop=True),
        volume="steps",
        group=size,
        source=f"{path} ({size or 'every size'})",
        zero_policy=zero_policy,
        epsilon=epsilon,
        size_kind="non-embedding parameters" if size is None else None,
    )


def _non_embedding(path: Path, names: pd.Series) -> pd.Series:
    """The non-embedding parameter count of each size name; a DataError names an unknown one."""
    unknown = sorted(set(names) - set(MIXINGLAWS_NON_EMBEDDING))
    if unknown:
        raise DataError(
            f"{path}: model size(s) {unknown} have no known non-embedding parameter count "
            f"(known: {', '.join(MIXINGLAWS_NON_EMBEDDING)}); load one size at a time"
        )
    return names.map(MIXINGLAWS_NON_EMBEDDING).astype(float)


def _check_one_mixture_per_run(
    per_size: pd.DataFrame, mixtures: pd.DataFrame, props: list[str], path: Path
) -> None:
    """A run id must name the same mixture at every size (its runs share their run effects)."""
    expected = mixtures.loc[per_size["run"], props].to_numpy()
    differs = ~np.isclose(per_size[props].to_numpy(), expected, atol=1e-12).all(axis=1)
    if differs.any():
        bad = per_size.loc[differs, ["run", "model_size"]].head(3).to_numpy().tolist()
        raise DataError(
            f"{path}: run ids name different mixtures at different sizes ({bad}); load one "
            "size at a time"
        )


def _pile_subset_weights(root: str | os.PathLike[str]) -> dict[str, float]:
    """The Pile validation subsets' weights in the full loss (``raw/valid_weight.json``)."""
    path = _need(Path(root) / MIXINGLAWS_DIR / "raw" / "valid_weight.json")
    return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}


def pile_group_weights(root: str | os.PathLike[str]) -> dict[str, float]:
    """Weights of the five Pile groups in the Pile's "full" validation loss.

    The full loss is ``sum_sub w_sub L_sub`` and a group's loss the ``w``-weighted mean of its
    subsets, so the full loss is the mean of the group losses weighted by each group's total
    ``w``. Pass them as the domain weights of a forecast or a decision (``weights=...``, or
    ``--weights academic=...,prose=...`` on the command line) to target the full loss.

    Examples
    --------
    >>> w = pile_group_weights(root)  # doctest: +SKIP
    >>> round(sum(w.values()), 6)  # doctest: +SKIP
    1.0
    """
    weights = _pile_subset_weights(root)
    out = {g: sum(weights[s] for s in subs) for g, subs in FIVE_MIX_GROUPS.items()}
    total = sum(out.values())
    return {g: v / total for g, v in out.items()}


def load_regmix(
    root: str | os.PathLike[str],
    *,
    zero_policy: ZeroPolicy = "drop",
    epsilon: float = 1e-4,
    min_share_runs: int = 10,
) -> MixtureData:
    """RegMix's 1M-parameter runs: 512 training + 256 test mixtures, final loss only.

    The 17 training-domain columns ``train_the_pile_<d>`` are the mixture (rounded to three
    decimals by the authors; each row is renormalised to sum to 1), the 13 validation losses
    ``metric/the_pile_<d>_val_loss`` the observations, all at one step (1B tokens, the fixed
    budget). Runs are named ``train-<index>`` and ``test-<index>``.

    Parameters
    ----------
    root
        The public datasets folder.
    zero_policy, epsilon
        Zero shares: ``"drop"`` (default) removes a domain's loss in the runs that gave it no
        share; ``"epsilon"`` replaces zero shares by ``epsilon``; ``"keep"`` keeps them for a
        law finite at zero shares (``loglinear``).
    min_share_runs
        A domain is kept only if at least this many runs give it a positive share.

    Notes
    -----
    With one step per run BiMix reduces to ``log L = k_d - alpha_d log r_d``; the data are built
    with ``min_steps=1`` and cannot be fitted by the bivariate law (see
    :mod:`bimix_bayes.evaluation.backtest` for the fixed-budget backtest).
    """
    folder = Path(root) / REGMIX_DIR
    frames_m, frames_l = [], []
    for part, mix_file, loss_file in (
        ("train", "train_mixture_1m.csv", "train_pile_loss_1m.csv"),
        ("test", "test_mixture_1m.csv", "test_pile_loss_1m.csv"),
    ):
        mix = pd.read_csv(_need(folder / mix_file)).set_index("index")
        loss = pd.read_csv(_need(folder / loss_file)).set_index("index")
        mix.index = [f"{part}-{i}" for i in mix.index]
        loss.index = [f"{part}-{i}" for i in loss.index]
        frames_m.append(mix)
        frames_l.append(loss)
    mix = pd.concat(frames_m)
    mix.columns = [c.removeprefix("train_the_pile_") for c in mix.columns]
    mix = mix.div(mix.sum(axis=1), axis=0)
    loss = pd.concat(frames_l)
    loss.columns = [c.removeprefix("metric/the_pile_").removesuffix("_val_loss") for c in loss]
    keep = [
        d for d in loss.columns if d in mix.columns and int((mix[d] > 0).sum()) >= min_share_runs
    ]
    long = (
        loss[keep]
        .rename_axis("run")
        .reset_index()
        .melt(id_vars="run", var_name="domain", value_name="loss")
        .assign(step=1e9)
    )
    n_zero = int((mix[keep] == 0).to_numpy().sum())
    outcome = {
        "drop": "and their losses were dropped",
        "keep": "kept (for a law finite at zero shares, --law loglinear)",
    }.get(zero_policy, f"set to {epsilon:g} (rows renormalised)")
    note = (
        f"zero-share policy {zero_policy!r}: {n_zero} (run, domain) pairs have a zero share "
        f"{outcome}"
    )
    return _validated(
        [note],
        mix.rename_axis("run"),
        long[["run", "step", "domain", "loss"]],
        volume="tokens",
        group="1M",
        source=f"{folder} (1M, train + test)",
        zero_policy=zero_policy,
        epsilon=epsilon,
        sum_tol=1e-2,
        min_steps=1,
    )


def _validated(
    notes: list[str], mixtures: pd.DataFrame, observations: pd.DataFrame, **kwargs: Any
) -> MixtureData:
    """:meth:`MixtureData.from_frames` without its warnings, ``notes`` put before its own.

    The loader's notes say what it changed; the validation's notes are kept but not shown.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = MixtureData.from_frames(mixtures, observations, **kwargs)
    return replace(data, notes=(*notes, *data.notes))
