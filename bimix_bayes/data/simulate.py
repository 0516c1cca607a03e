"""Synthetic loss curves drawn from the BiMix law, for tests and the demo.

Each (run, domain) gets a random offset on the log scale (one run is a bit luckier throughout, as
in real logs) and each checkpoint its own log-normal noise::

    log L[run, domain, step] = log L_BiMix(r, step) + offset[run, domain] + noise

Everything is seeded: the same seed gives the same data.

Examples
--------
>>> data = simulate_default(seed=0)
>>> data.source
'simulated (BiMix law, seed 0)'
>>> data.domains
('web', 'code', 'books', 'wiki', 'math')
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bimix_bayes.data.labels import long_table
from bimix_bayes.data.table import MixtureData
from bimix_bayes.laws.bimix import PARAM_NAMES, PaperParams
from bimix_bayes.laws.drift import ALPHA_DRIFT, drift_term
from bimix_bayes.laws.schedule import LRSchedule, schedule_of, step_covariates

__all__ = [
    "DEFAULT_SIZE_SLOPES",
    "default_parameters",
    "random_mixtures",
    "simulate",
    "simulate_default",
]

#: Size slopes of simulated data with model sizes (per unit of log N, every domain alike),
#: chosen so that a larger model reaches a lower mean loss at every step, as real ones do: the
#: floor falls with the size (Chinchilla's model-size term), the reducible part a little, and
#: the mixture effect grows a little (a domain with a tiny share can then lose a little more
#: early in training). (Least squares on SlimPajama's sizes finds a steeper floor
#: and a reducible part that grows with a flatter step exponent, ``[size]`` in the default spec.)
DEFAULT_SIZE_SLOPES = {
    "size_floor": -0.07,
    "size_reducible": -0.02,
    "size_beta": 0.0,
    "size_mixture": 0.1,
}


def default_parameters() -> pd.DataFrame:
    """Plausible BiMix coefficients (convention C = 1) for five domains, indexed by domain.

    Exponents in the range seen on public data (alpha 0.02-0.15, beta 0.3-0.8 in steps).

    Examples
    --------
    >>> default_parameters().loc["code", "alpha"]
    np.float64(0.12)
    """
    return pd.DataFrame(
        {
            "A": [2.9, 1.1, 3.3, 2.4, 1.5],
            "alpha": [0.05, 0.12, 0.04, 0.08, 0.15],
            "B": [12.0, 30.0, 9.0, 20.0, 25.0],
            "beta": [0.45, 0.6, 0.35, 0.5, 0.55],
            "C": [1.0, 1.0, 1.0, 1.0, 1.0],
        },
        index=pd.Index(["web", "code", "books", "wiki", "math"], name="domain"),
    )


def random_mixtures(
    n: int,
    domains: Sequence[str],
    *,
    concentration: float = 1.0,
    min_share: float = 0.02,
    include_uniform: bool = True,
    seed: int | None = 0,
) -> pd.DataFrame:
    """``n`` mixtures over ``domains``: Dirichlet draws lifted to a minimum share.

    Each mixture is ``min_share + (1 - k * min_share) * Dirichlet(concentration)``, so every share
    is at least ``min_share``. With ``include_uniform`` the first mixture is the uniform one.

    Examples
    --------
    >>> m = random_mixtures(3, ["a", "b"], seed=1)
    >>> m.round(3).to_dict("index")["mix000"]
    {'a': 0.5, 'b': 0.5}
    """
    k = len(domains)
    if n < 1 or k < 1:
        raise ValueError("need at least one mixture and one domain")
    if not 0 <= min_share * k < 1:
        raise ValueError(
            f"min_share {min_share} is too large for {k} domains (it must be below 1/{k} = "
            f"{1 / k:.4g}: the shares sum to 1)"
        )
    rng = np.random.default_rng(seed)
    draws = rng.dirichlet(np.full(k, concentration), size=n)
    if include_uniform:
        draws[0] = 1.0 / k
    shares = min_share + (1 - k * min_share) * draws
    index = pd.Index([f"mix{i:03d}" for i in range(n)], name="run")
    return pd.DataFrame(shares, index=index, columns=list(domains))


def simulate(
    params: pd.DataFrame,
    mixtures: pd.DataFrame,
    steps: Sequence[float],
    *,
    noise_sd: float = 0.01,
    run_sd: float = 0.005,
    seed: int | None = 0,
    volume: str = "steps",
    schedule: LRSchedule | str | None = None,
    sizes: Sequence[float] | None = None,
    size_slopes: dict[str, float] | None = None,
) -> MixtureData:
    """Simulate loss curves of the given mixtures from the BiMix law.

    Parameters
    ----------
    params
        Index: evaluation domains; columns ``A, alpha, B, beta, C`` (paper form).
    mixtures
        Index: run ids; columns: training domains (each row sums to 1); must contain every
        domain of ``params``.
    steps
        Checkpoints (steps or tokens) logged for every run.
    noise_sd
        Standard deviation of the per-checkpoint noise on log loss.
    run_sd
        Standard deviation of the per-(run, domain) offset on log loss.
    seed
        Random seed.
    volume
        ``"steps"`` or ``"tokens"``.
    schedule
        A learning-rate schedule (:mod:`bimix_bayes.laws.schedule`): the law then reads the
        step through its area ``S1`` and loses ``anneal * u`` in log loss (a column
        ``anneal`` of ``params``, default 0.05); the data carry the schedule.
        A column ``alpha_drift`` of ``params`` makes the mixture exponent move with the log
        step, ``alpha + alpha_drift * x`` (:mod:`bimix_bayes.laws.drift`), ``x = log(s /
        s_geo)`` with ``s_geo`` the geometric mean of ``steps`` (``log(S1(s) / S1(s_geo))``
        with a schedule), as a fit with the default ``s_ref`` reads it.
    sizes
        Model sizes (parameter counts): every mixture is trained at each, its parameters moved
        to the size as the size-aware law moves them (:func:`~bimix_bayes.laws.size.at_size`,
        ``size_slopes`` per unit of ``log(N / N_ref)``, ``N_ref`` the geometric mean of the
        sizes, ``params`` the law at ``N_ref``); a mixture keeps its run offsets at every size
        (a run id names a mixture) plus its own luck at each size (sd ``run_sd / 2``). Not
        with a schedule or a drift.
    size_slopes
        The slopes of :data:`DEFAULT_SIZE_SLOPES` to change.

    Returns
    -------
    MixtureData
        Validated data whose ``source`` says it is simulated.
    """
    missing = [c for c in PARAM_NAMES if c not in params.columns]
    if missing:
        raise ValueError(f"params lack column(s) {missing}")
    domains = list(params.index)
    absent = [d for d in domains if d not in mixtures.columns]
    if absent:
        raise ValueError(f"mixtures lack the domain(s) {absent}")
    if noise_sd < 0 or run_sd < 0:
        raise ValueError("noise_sd and run_sd must be >= 0")
    rng = np.random.default_rng(seed)
    steps_arr = np.asarray(steps, dtype=float)
    if sizes is not None:
        if schedule is not None or ALPHA_DRIFT in params:
            raise ValueError("sizes are simulated without a schedule or a drift")
        return _simulate_sizes(
            params, mixtures, steps_arr, sizes, size_slopes, noise_sd, run_sd, rng, seed, volume
        )
    law = PaperParams(**{c: params[c].to_numpy(dtype=float) for c in PARAM_NAMES})
    shares = mixtures[domains].to_numpy(dtype=float)  # run x domain
    sched = schedule_of(schedule)
    if sched is None:
        true = law.loss(shares[:, None, :], steps_arr[None, :, None])  # run x step x domain
    else:
        area, fall = sched.areas(steps_arr)
        anneal = (
            params["anneal"].to_numpy(float) if "anneal" in params else np.full(len(domains), 0.05)
        )
        true = law.loss(shares[:, None, :], area[None, :, None])
        true = true * np.exp(-anneal[None, None, :] * fall[None, :, None])
    if ALPHA_DRIFT in params:  # the fit's x: centred on the geometric mean of the steps
        s_geo = float(np.exp(np.log(steps_arr).mean()))
        x = step_covariates(steps_arr, s_geo, sched)[0][None, :, None]
        drift = params[ALPHA_DRIFT].to_numpy(float)[None, None, :]
        true = true * np.exp(drift_term(np.log(shares)[:, None, :], x, drift))
    offset = rng.normal(0.0, run_sd, size=(len(mixtures), 1, len(domains)))
    noise = rng.normal(0.0, noise_sd, size=true.shape)
    loss = true * np.exp(offset + noise)
    dims = {"run": mixtures.index.astype(str), "step": steps_arr, "domain": domains}
    observations = long_table(dims, loss=loss)
    data = MixtureData.from_frames(
        mixtures,
        observations,
        volume=volume,  # type: ignore[arg-type]
        source=f"simulated (BiMix law, seed {seed})",
    )
    return data if sched is None else data.with_schedule(sched)


def _simulate_sizes(
    params: pd.DataFrame,
    mixtures: pd.DataFrame,
    steps: np.ndarray,
    sizes: Sequence[float],
    size_slopes: dict[str, float] | None,
    noise_sd: float,
    run_sd: float,
    rng: np.random.Generator,
    seed: int | None,
    volume: str,
) -> MixtureData:
    """:func:`simulate` at several model sizes (the law's identifiable form, moved by size)."""
    from bimix_bayes.laws.registry import BIMIX
    from bimix_bayes.laws.size import size_reference

    sizes_arr = np.unique(np.asarray(sizes, dtype=float))
    if not (sizes_arr.size >= 1 and np.all(np.isfinite(sizes_arr) & (sizes_arr > 0))):
        raise ValueError(f"sizes must be positive parameter counts, got {list(sizes)}")
    unknown = sorted(set(size_slopes or {}) - set(DEFAULT_SIZE_SLOPES))
    if unknown:
        raise ValueError(f"unknown size slope(s) {unknown}; known: {list(DEFAULT_SIZE_SLOPES)}")
    domains = list(params.index)
    p = params[list(PARAM_NAMES)].astype(float)
    s_ref = float(np.exp(np.log(steps).mean()))
    n = len(domains)
    law = {
        "log_floor": np.log(p["A"] * p["C"]).to_numpy(),
        "log_reducible": np.log(p["A"] * p["B"]).to_numpy() - p["beta"].to_numpy() * np.log(s_ref),
        "alpha": p["alpha"].to_numpy(),
        "beta": p["beta"].to_numpy(),
        **{k: np.full(n, v) for k, v in {**DEFAULT_SIZE_SLOPES, **(size_slopes or {})}.items()},
    }
    shares = mixtures[domains].to_numpy(dtype=float)[:, None, :]  # run x 1 x domain
    x = np.log(steps / s_ref)[None, :, None]
    offset = rng.normal(0.0, run_sd, size=(len(mixtures), 1, n))  # the mixture's, every size
    n_ref = size_reference(sizes_arr)
    parts = []
    for size in sizes_arr:
        mu = BIMIX.log_loss(None, shares, x, law, z=float(np.log(size / n_ref)))
        luck = rng.normal(0.0, run_sd / 2, size=(len(mixtures), 1, n))
        loss = np.exp(mu + offset + luck + rng.normal(0.0, noise_sd, size=mu.shape))
        dims = {"run": mixtures.index.astype(str), "step": steps, "domain": domains}
        parts.append(long_table(dims, loss=loss).assign(size=size))
    return MixtureData.from_frames(
        mixtures,
        pd.concat(parts, ignore_index=True),
        volume=volume,  # type: ignore[arg-type]
        source=f"simulated (BiMix law at {len(sizes_arr)} model sizes, seed {seed})",
        size_kind="total parameters",
    )


def simulate_default(seed: int | None = 0, n_runs: int = 12) -> MixtureData:
    """The demo's synthetic study: 5 domains, ``n_runs`` mixtures, 10 checkpoints (500-20k steps).

    Parameters are :func:`default_parameters`; noise 0.01 and run offsets 0.005 on log loss.
    """
    params = default_parameters()
    mixtures = random_mixtures(n_runs, list(params.index), seed=seed)
    steps = np.unique(np.round(np.geomspace(500, 20_000, 10), -1))
    return simulate(params, mixtures, steps, seed=seed)
