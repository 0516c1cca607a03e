"""The design of a proxy study: which mixtures to train, with which seeds (``bimix study``).

* **uniform**: every domain gets ``1 / D``;
* **entropy proxies**: ``softmax(H / temperature)`` of each domain's byte entropy, one mixture
  per measure (Shannon, conditional, joint, von Neumann: :mod:`bimix_bayes.proxy.entropy`);
* **spread**: mixtures that give some domains a high share and the others a low one;
* **space-filling**: greedy maximin among seeded Dirichlet(1) candidates, every share at least
  ``min_share`` (:func:`space_filling_mixtures`);
* **replicate seeds**: :func:`replicate_runs` names ``m``, ``m_s1``, ``m_s2`` ... with seeds
  ``seed, seed + 1, ...``.

Examples
--------
>>> spread_mixtures(["a", "b", "c", "d", "e"], 3).round(3)  # doctest: +NORMALIZE_WHITESPACE
domain        a      b      c      d      e
mixture
spread_1  0.425  0.050  0.050  0.425  0.050
spread_2  0.050  0.425  0.050  0.050  0.425
spread_3  0.425  0.050  0.425  0.050  0.050
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.proxy.corpora import read_manifest
from bimix_bayes.proxy.trainer import TrainConfig

__all__ = [
    "default_replicate_mixtures",
    "design_mixtures",
    "design_settings",
    "lr_schedule",
    "replicate_runs",
    "space_filling_mixtures",
    "spread_mixtures",
    "uniform_mixture",
]


def uniform_mixture(domains: Sequence[str]) -> pd.DataFrame:
    """One row ``uniform``: ``1 / D`` for every domain."""
    frame = pd.DataFrame([[1 / len(domains)] * len(domains)], index=["uniform"], columns=domains)
    return _named(frame)


def _named(frame: pd.DataFrame) -> pd.DataFrame:
    frame.index.name = "mixture"
    frame.columns = pd.Index(list(frame.columns), name="domain")
    return frame


def _checked_domains(domains: Sequence[str], kind: str, n: int, minimum: int) -> list[str]:
    """``domains`` as a list, once a design of ``kind`` can use them: at least 2 domains, and
    ``n >= minimum`` mixtures."""
    domains = list(domains)
    if len(domains) < 2:
        raise ValueError(f"a {kind} design needs at least 2 domains, got {len(domains)}")
    if n < minimum:
        raise ValueError(f"the number of {kind} mixtures must be >= {minimum}, got {n}")
    return domains


def spread_mixtures(domains: Sequence[str], n: int = 3, low: float = 0.05) -> pd.DataFrame:
    """``n`` mixtures in which ``ceil(D / n)`` domains share the high part and every other
    domain gets ``low``; mixture ``k`` favours domains ``k, k + n, k + 2n, ...`` (mod D), so
    each domain is favoured at least once and, when ``n >= 2``, held low at least once.
    """
    domains = _checked_domains(domains, "spread", n, minimum=1)
    D = len(domains)
    n = min(n, D)
    h = math.ceil(D / n)
    high = (1 - low * (D - h)) / h
    if not 0 < low < 1 / D or high <= low:
        raise ValueError(
            f"low share {low} does not fit {D} domains in {n} spread mixture(s); it must be "
            f"positive and below 1/{D} = {1 / D:.3f}"
        )
    rows, seen = {}, set()
    for k in range(n):
        favoured = frozenset((k + j * n) % D for j in range(h))
        if favoured in seen:
            continue
        seen.add(favoured)
        rows[f"spread_{k + 1}"] = [high if i in favoured else low for i in range(D)]
    return _named(pd.DataFrame.from_dict(rows, orient="index", columns=domains))


def _simplex_points(rng: np.random.Generator, n: int, D: int, min_share: float) -> np.ndarray:
    """``n`` Dirichlet(1) draws mapped affinely onto ``{r : r_d >= min_share, sum r = 1}``."""
    return min_share + (1 - D * min_share) * rng.dirichlet(np.ones(D), size=n)


def _min_distances(points: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    if len(chosen) == 0:
        return np.full(len(points), np.inf)
    return np.sqrt(((points[:, None, :] - chosen[None, :, :]) ** 2).sum(-1)).min(axis=1)


def space_filling_mixtures(
    domains: Sequence[str],
    n: int,
    *,
    min_share: float = 0.03,
    seed: int = 0,
    n_candidates: int = 4096,
    avoid: pd.DataFrame | np.ndarray | None = None,
    prefix: str = "fill",
) -> pd.DataFrame:
    """``n`` mixtures spread over the simplex, every share at least ``min_share``.

    Greedy maximin design: ``n_candidates`` seeded Dirichlet(1) draws are mapped onto the
    shrunken simplex ``{r : r_d >= min_share, sum_d r_d = 1}`` (zero shares are outside the
    BiMix law, whose ``r ** -alpha`` diverges at 0); the chosen set starts empty (or with the
    ``avoid`` mixtures, e.g. the uniform and entropy ones, which are not returned) and each step
    adds the candidate farthest (Euclidean distance on the shares) from everything chosen so far.
    The result is deterministic for a given ``seed`` and spreads the mixtures much more evenly
    than the same number of random draws (a larger minimum pairwise distance).

    Parameters
    ----------
    domains
        Domain names (the columns).
    n
        Number of mixtures (rows ``{prefix}_1`` ... ``{prefix}_n``).
    min_share
        Smallest share of any domain; must be in ``[0, 1 / D)``.
    seed
        Seeds the candidate draws.
    n_candidates
        Number of Dirichlet(1) candidates to choose from.
    avoid
        Mixtures already in the design (rows of shares over ``domains``) to keep away from.
    prefix
        Row-name prefix.

    Returns
    -------
    pandas.DataFrame
        Index ``mixture``, one column per domain, rows summing to 1.

    Examples
    --------
    >>> mix = space_filling_mixtures(["a", "b", "c"], 4, min_share=0.03, seed=0)
    >>> mix.round(3)  # doctest: +NORMALIZE_WHITESPACE
    domain      a      b      c
    mixture
    fill_1  0.033  0.931  0.036
    fill_2  0.930  0.032  0.038
    fill_3  0.041  0.032  0.927
    fill_4  0.340  0.335  0.325
    >>> bool(mix.sum(axis=1).round(12).eq(1).all()), bool((mix >= 0.03).all().all())
    (True, True)
    """
    domains = _checked_domains(domains, "space-filling", n, minimum=0)
    D = len(domains)
    if not 0 <= min_share < 1 / D:
        raise ValueError(
            f"min_share {min_share} does not fit {D} domains; it must be in [0, 1/{D} = "
            f"{1 / D:.3f})"
        )
    if n_candidates < n:
        raise ValueError(f"n_candidates ({n_candidates}) must be >= n ({n})")
    rng = np.random.default_rng([int(seed), 17])
    candidates = _simplex_points(rng, int(n_candidates), D, min_share)
    if avoid is None:
        fixed = np.empty((0, D))
    elif isinstance(avoid, pd.DataFrame):
        fixed = avoid.reindex(columns=domains).fillna(0.0).to_numpy(dtype=float)
    else:
        fixed = np.asarray(avoid, dtype=float).reshape(-1, D)
    dist = _min_distances(candidates, fixed)
    picked: list[int] = []
    for _ in range(n):
        if np.isinf(dist).all():  # nothing chosen yet: start from the candidate farthest
            centre = np.full(D, 1 / D)  # from the centre (a corner), deterministic
            i = int(np.argmax(((candidates - centre) ** 2).sum(axis=1)))
        else:
            i = int(np.argmax(dist))
        picked.append(i)
        dist = np.minimum(dist, _min_distances(candidates, candidates[i : i + 1]))
        dist[i] = -np.inf
    values = candidates[picked] / candidates[picked].sum(axis=1, keepdims=True)
    names = [f"{prefix}_{k + 1}" for k in range(n)]
    return _named(pd.DataFrame(values, index=names, columns=domains))


def default_replicate_mixtures(mixtures: pd.DataFrame, k: int = 4) -> list[str]:
    """``k`` design mixtures to replicate with more seeds: ``uniform`` (when present) and then,
    greedily, the mixture farthest from those already taken, so the seed noise is measured
    across the simplex (deterministic; design order breaks ties).
    """
    names = [str(i) for i in mixtures.index]
    k = max(0, min(k, len(names)))
    if k == 0:
        return []
    values = mixtures.to_numpy(dtype=float)
    first = names.index("uniform") if "uniform" in names else 0
    taken = [first]
    while len(taken) < k:
        dist = _min_distances(values, values[taken])
        dist[taken] = -np.inf
        taken.append(int(np.argmax(dist)))
    return [names[i] for i in taken]


def replicate_runs(
    mixtures: pd.DataFrame, replicates: Mapping[str, int] | None = None, seed: int = 0
) -> pd.DataFrame:
    """The runs of a design: one per (mixture, seed).

    Mixture ``m`` with ``replicates[m] = K`` (default 1) gives the runs ``m`` (seed ``seed``),
    ``m_s1`` (seed ``seed + 1``) ... ``m_s{K-1}``.

    Returns
    -------
    pandas.DataFrame
        Index ``run``; columns ``mixture`` (the design row) and ``seed``, in design order with
        each mixture's replicates after it.

    Examples
    --------
    >>> mix = pd.DataFrame({"a": [0.5, 0.2], "b": [0.5, 0.8]}, index=["uniform", "m"])
    >>> replicate_runs(mix, {"uniform": 3}, seed=10)  # doctest: +NORMALIZE_WHITESPACE
               mixture  seed
    run
    uniform    uniform    10
    uniform_s1 uniform    11
    uniform_s2 uniform    12
    m                m    10
    """
    replicates = dict(replicates or {})
    names = [str(i) for i in mixtures.index]
    unknown = sorted(set(replicates) - set(names))
    if unknown:
        raise ValueError(f"replicates name mixture(s) {unknown} that are not in the design {names}")
    rows = []
    for name in names:
        k = int(replicates.get(name, 1))
        if k < 1:
            raise ValueError(f"replicates of {name!r} must be >= 1, got {k}")
        for j in range(k):
            rows.append((name if j == 0 else f"{name}_s{j}", name, int(seed) + j))
    runs = pd.DataFrame(rows, columns=["run", "mixture", "seed"]).set_index("run")
    dup = runs.index[runs.index.duplicated()].tolist()
    if dup:
        raise ValueError(f"replicate run name(s) {dup} clash with design mixture names")
    return runs


def lr_schedule(config: TrainConfig) -> dict[str, Any]:
    """The learning-rate schedule that :func:`~bimix_bayes.proxy.trainer.train_run` applies:
    linear warm-up over ``warmup`` steps to ``lr``, then constant or a decay to ``final_lr`` of
    it at the last step; ``fit_option`` is what ``bimix fit --lr-schedule`` takes for it.

    >>> lr_schedule(TrainConfig(lr=3e-3, warmup=100))
    {'kind': 'linear-warmup-constant', 'warmup': 100, 'lr': 0.003, 'decay': None}
    >>> lr_schedule(TrainConfig(steps=4000, decay="cosine"))["fit_option"]
    'cosine:total=4000,warmup=100,final=0.1'
    """
    if config.decay == "constant":  # written as before decays existed
        return {
            "kind": "linear-warmup-constant",
            "warmup": config.warmup,
            "lr": config.lr,
            "decay": None,
        }
    return {
        "kind": f"linear-warmup-{config.decay}",
        "warmup": config.warmup,
        "lr": config.lr,
        "decay": config.decay,
        "final_lr": config.final_lr,
        "total": config.steps,
        "fit_option": (
            f"{config.decay}:total={config.steps},warmup={config.warmup},final={config.final_lr:g}"
        ),
    }


def design_mixtures(
    corpora: str | os.PathLike[str],
    *,
    measures: Sequence[str] = ("se", "ce", "je", "vne"),
    temperature: float = 1.0,
    n_spread: int = 3,
    low: float = 0.05,
    seed: int = 0,
    n_space_filling: int = 0,
    min_share: float = 0.03,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The study's mixtures (uniform, entropy proxies, spread, space-filling) and the entropy
    table.

    Entropies are computed on each domain's ``train.txt`` with the byte tokenizer; with no
    ``measures`` the entropy table is None. The ``n_space_filling`` mixtures
    (:func:`space_filling_mixtures`, seeded by ``seed``) keep away from the other ones.
    """
    from bimix_bayes.proxy.entropy import domain_entropies, entropy_mixtures

    corpora = Path(corpora)
    domains = list(read_manifest(corpora)["domains"])
    parts = [uniform_mixture(domains)]
    table = None
    if measures:
        table = domain_entropies(
            {d: corpora / d / "train.txt" for d in domains},
            measures=measures,
            seed=seed,
            progress=False,
        )
        ent = entropy_mixtures(table, temperature)
        ent.index = [f"entropy_{m}" for m in ent.index]
        parts.append(_named(ent[domains]))
    if n_spread:
        parts.append(spread_mixtures(domains, n_spread, low))
    if n_space_filling:
        so_far = pd.concat(parts)
        parts.append(
            space_filling_mixtures(
                domains, n_space_filling, min_share=min_share, seed=seed, avoid=so_far
            )
        )
    mixtures = _named(pd.concat(parts))
    return mixtures, table


def design_settings(**given: Any) -> dict[str, Any]:
    """The keyword settings of :func:`design_mixtures` (``measures``, ``temperature``,
    ``n_spread``, ``low``, ``seed``, ``n_space_filling``, ``min_share``): its defaults, updated
    by ``given``. The defaults are written once, in its signature.

    Raises
    ------
    TypeError
        For a setting :func:`design_mixtures` does not take.

    Examples
    --------
    >>> settings = design_settings(n_spread=0)
    >>> settings["n_spread"], settings["low"], settings["min_share"]
    (0, 0.05, 0.03)
    """
    parameters = inspect.signature(design_mixtures).parameters
    defaults = {k: p.default for k, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(f"unknown design setting(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}
