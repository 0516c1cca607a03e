"""Run a backtest: fit each method on the training part of every split, forecast the held-out
points, and score them (:func:`backtest`).

Every method sees the same training data: ``"bayes"`` (the hierarchical model,
:class:`~bimix_bayes.bayes.model.BiMixModel`, forecasts from
:func:`~bimix_bayes.bayes.forecast.predict`), ``"ls"`` (the paper's least squares,
:class:`~bimix_bayes.leastsq.fit.BiMixLeastSquares`; with model sizes
:class:`~bimix_bayes.leastsq.sizes.SizeLeastSquares`) and ``"lightgbm"`` (RegMix's regressor, a
comparator without a law: :class:`~bimix_bayes.evaluation.lightgbm_method.LightGBMForecaster`,
an optional extra). Data at a single step (a fixed budget) are fitted with the fixed-budget law
instead: :class:`~bimix_bayes.bayes.fixed_budget.FixedBudgetConjugate` and
:class:`~bimix_bayes.leastsq.fixed_budget.FixedBudgetLeastSquares` (LightGBM is fitted as it
is: its step feature is then constant, which is RegMix's own setting).

Least-squares intervals are the run bootstrap of the fitted law (``n_bootstrap`` resamples of
whole runs, each refitted) **plus** the residual noise of the fit: every bootstrap curve gets
Normal noise on log loss with the domain's training RMSE. The bootstrap alone is the band of the
curve, which would not cover a new measurement even when the law is right.

Each method gives one table of points (:data:`POINT_COLUMNS`), scored by
:func:`bimix_bayes.evaluation.metrics.score`.

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> result = backtest(simulate_default(seed=1), "last-checkpoint", method="ls", n_bootstrap=20)
>>> bool(result.metrics.loc[("ls", "(all points)"), "mre"] < 0.05)
True
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from bimix_bayes.bayes.sizes import size_label
from bimix_bayes.bayes.spec import Spec
from bimix_bayes.data.labels import ALL_DOMAINS, WEIGHTED_DOMAINS, interval_columns, long_table
from bimix_bayes.data.table import MixtureData
from bimix_bayes.evaluation.decision_calibration import pairwise_probabilities, with_outcomes
from bimix_bayes.evaluation.lightgbm_method import LightGBMForecaster, import_lightgbm
from bimix_bayes.evaluation.metrics import PROBS, score, with_domain_mean
from bimix_bayes.evaluation.protocols import Protocol, parse_protocol
from bimix_bayes.evaluation.result import BacktestResult
from bimix_bayes.evaluation.splits import Split, fixed_budget, make_splits
from bimix_bayes.leastsq.fit import BiMixLeastSquares, BootstrapWarning, complete_replicates
from bimix_bayes.leastsq.sizes import SizeLeastSquares

__all__ = ["METHODS", "POINT_COLUMNS", "backtest", "method_list"]

Method = Literal["bayes", "ls", "lightgbm", "both", "all"]

#: What each ``method`` argument fits, in order.
METHODS: dict[str, tuple[str, ...]] = {
    "bayes": ("bayes",),
    "ls": ("ls",),
    "lightgbm": ("lightgbm",),
    "both": ("bayes", "ls"),
    "all": ("bayes", "ls", "lightgbm"),
}

#: Share given, for prediction only, to a domain a held-out mixture leaves out (BiMix is
#: undefined at r = 0; those domains have no observations to score, see ``zero_policy``).
_ZERO_STANDIN = 1e-12
_INTERVALS = [name for p in PROBS for name in interval_columns(p)]

#: Columns of a backtest's per-point table.
POINT_COLUMNS = (
    "method",
    "split",
    "run",
    "domain",
    "step",
    "target",
    "observed",
    "predicted",
    *_INTERVALS,
    "lpd",
)


def method_list(method: str) -> list[str]:
    """The methods a ``method`` argument fits, in the order the runner fits them.

    Examples
    --------
    >>> method_list("both"), method_list("all")
    (['bayes', 'ls'], ['bayes', 'ls', 'lightgbm'])
    """
    if method not in METHODS:
        names = ", ".join(repr(m) for m in METHODS)
        raise ValueError(f"method must be one of {names}; got {method!r}")
    return list(METHODS[method])


def _prediction_mixtures(
    data: MixtureData, runs: Sequence[str], domains: Sequence[str]
) -> pd.DataFrame:
    shares = data.mixtures.loc[list(runs), list(domains)].astype(float)
    return shares.where(shares > 0, _ZERO_STANDIN)


def _with_mean(values: np.ndarray) -> np.ndarray:
    """Append the mean over the last axis (domains) as one more domain."""
    return np.concatenate([values, values.mean(axis=-1, keepdims=True)], axis=-1)


def _intervals(draws: np.ndarray) -> dict[str, np.ndarray]:
    """The central intervals of :data:`PROBS` over the first axis of ``draws``."""
    bounds = {}
    for p in PROBS:
        lower, upper = interval_columns(p)
        bounds[lower], bounds[upper] = np.quantile(draws, [(1 - p) / 2, (1 + p) / 2], axis=0)
    return bounds


def _scored(held: pd.DataFrame, dims: dict[str, Any], point: np.ndarray, bounds: dict):
    """Held-out rows joined with the forecast table over ``dims`` (NaN where no interval)."""
    columns = {name: bounds.get(name, np.nan) for name in _INTERVALS}
    pred = long_table(dims, predicted=point, **columns)
    out = held.merge(pred, on=["run", "step", "domain"], how="left", validate="many_to_one")
    return out.rename(columns={"loss": "observed"})


def _decision_pairs(
    held: pd.DataFrame, new_runs: Sequence[str], draws_at: Any
) -> pd.DataFrame | None:
    """Pairwise P(a below b) of the held-out new runs' mean loss at their last common step.

    ``draws_at(runs, step)`` gives joint draws (draw, run) of the mean over domains; None when
    fewer than two new runs have that mean observed.
    """
    mean = held[(held["domain"] == ALL_DOMAINS) & held["run"].isin(list(new_runs))]
    if mean["run"].nunique() < 2:
        return None
    last = mean[mean["step"] == mean["step"].max()]
    runs = list(last["run"])
    if len(runs) < 2:
        return None
    pairs = pairwise_probabilities(draws_at(runs, float(last["step"].iloc[0])), runs)
    return with_outcomes(pairs, dict(zip(last["run"], last["loss"], strict=True)))


def _bayes_points(
    split: Split,
    data: MixtureData,
    spec: Spec | Mapping[str, Any] | str | None,
    seed: int,
    retry: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    from bimix_bayes.bayes.diagnostics import FitWarning
    from bimix_bayes.bayes.model import BiMixModel, RetryWarning

    model = BiMixModel(spec)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        warnings.simplefilter("ignore", RetryWarning)  # counted in the fits table
        idata = model.fit(split.train, seed=seed, progress_bar=False, retry=retry)
    if split.train.has_sizes:  # each held-out size forecast at its size, then scored as runs
        parts = []
        for size, held in split.held.groupby("size", sort=True):
            part = held.drop(columns="size")
            out, pairs = _bayes_forecasts(idata, split, part, data, seed, size=float(size))
            parts.append(out.assign(run=out["run"] + "@" + size_label(float(size))))
        out = pd.concat(parts, ignore_index=True)
    else:
        out, pairs = _bayes_forecasts(idata, split, split.held, data, seed)
    diag = model.diagnostics_
    info = {
        "seconds": time.perf_counter() - t0,
        "passed": bool(diag.passed),
        "max_rhat": float(diag.max_rhat),
        "divergences": int(diag.divergences),
        "retried": "first_attempt" in idata.attrs,
        # why a fit failed (divergences, r-hat, ESS), after the retry; "" when it passed
        "problems": "; ".join(diag.problems),
        "pairs": pairs,
    }
    return out, info


def _bayes_forecasts(
    idata: Any,
    split: Split,
    held: pd.DataFrame,
    data: MixtureData,
    seed: int,
    size: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Forecasts (median, intervals, log density) of the held-out points ``held`` of one fit,
    at model size ``size`` (a fit with sizes), and the pairwise decision calibration."""
    from bimix_bayes.bayes.forecast import forecast_draws, log_predictive_density, predict

    domains = list(split.train.domains)
    held = with_domain_mean(held, domains)
    steps = np.sort(held["step"].unique())
    # A run with any fitted checkpoint is continued (a domain curve it lacks gets a fresh
    # offset inside predict); a run with none is a new mixture.
    fitted_runs = set(split.train.runs)
    obs_runs = sorted(set(held["run"]) & fitted_runs)
    new_runs = sorted(set(held["run"]) - fitted_runs)
    # every training share (a cross-domain law reads them all); stand-ins only where the
    # evaluation domain's own share is zero
    new_mix = None
    if new_runs:
        new_mix = data.mixtures.loc[new_runs].astype(float).copy()
        trained = [d for d in domains if d in new_mix.columns]  # not evaluation-only ones
        new_mix[trained] = _prediction_mixtures(data, new_runs, trained)
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if obs_runs:
            frames.append(predict(idata, steps, runs=obs_runs, prob=PROBS, seed=seed, size=size))
        if new_runs:
            frames.append(predict(idata, steps, mixtures=new_mix, prob=PROBS, seed=seed, size=size))
    pred = pd.concat(frames, ignore_index=True).rename(columns={"mixture": "run"})
    pred = pred.replace({"domain": {WEIGHTED_DOMAINS: ALL_DOMAINS}})
    out = held.merge(pred, on=["run", "step", "domain"], how="left", validate="many_to_one")
    out = out.rename(columns={"loss": "observed", "median": "predicted"})
    per = out["domain"] != ALL_DOMAINS
    lpd = np.full(len(out), np.nan)
    pts = out.loc[per, ["run", "step", "domain", "observed"]].rename(
        columns={"run": "mixture", "observed": "loss"}
    )
    lpd[per.to_numpy()] = log_predictive_density(idata, pts, mixtures=new_mix, seed=seed, size=size)
    out["lpd"] = lpd

    def joint_draws(runs: list[str], step: float) -> np.ndarray:
        draws = forecast_draws(idata, [step], mixtures=new_mix.loc[runs], seed=seed, size=size)
        mean = draws.sel(domain=ALL_DOMAINS, step=step).transpose("chain", "draw", "mixture")
        return mean.to_numpy().reshape(-1, len(runs))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = _decision_pairs(held, new_runs, joint_draws) if len(new_runs) > 1 else None
    return out, pairs


def _ls_points(
    split: Split, data: MixtureData, n_bootstrap: int, seed: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The paper's least squares: point forecasts, intervals from the run bootstrap plus
    residual noise, pairwise decision calibration from the joint replicates. Data with model
    sizes: the size-aware fit (:class:`~bimix_bayes.leastsq.sizes.SizeLeastSquares`), each
    held-out size forecast at its size, runs named ``run@SIZE`` as the Bayesian rows'."""
    t0 = time.perf_counter()
    if split.train.has_sizes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BootstrapWarning)
            sized = SizeLeastSquares(n_bootstrap=n_bootstrap, seed=seed).fit(split.train)
        rmse = sized.quality_.loc[list(sized.domains_), "rmse_log"].to_numpy()
        parts, pairs = [], None
        for size, held in split.held.groupby("size", sort=True):

            def curve(params, runs, steps, n=float(size)):
                return sized.log_loss(
                    params, _prediction_mixtures(data, runs, sized.domains_), steps, n
                )

            args = (held.drop(columns="size"), split, sized.domains_, curve, sized.params_)
            out, pairs = _ls_scored(*args, sized.replicates(), rmse, seed)
            parts.append(out.assign(run=out["run"] + "@" + size_label(float(size))))
        # the pairs of the largest held-out size, as the Bayesian rows keep
        return pd.concat(parts, ignore_index=True), {
            "seconds": time.perf_counter() - t0,
            "pairs": pairs,
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BootstrapWarning)
        fit = BiMixLeastSquares(n_bootstrap=n_bootstrap, seed=seed).fit(split.train)
    domains = list(fit.domains_)

    def curve(params, runs, steps):
        shares = _prediction_mixtures(data, runs, domains).to_numpy()
        log_r = np.log(shares)[:, None, :]
        return fit._identifiable(params, domains).log_loss(log_r, np.log(steps)[None, :, None])

    reps = complete_replicates(fit.bootstrap_, domains)
    rmse = fit.quality_.loc[domains, "rmse_log"].to_numpy()
    out, pairs = _ls_scored(split.held, split, domains, curve, fit.params_, reps, rmse, seed)
    return out, {"seconds": time.perf_counter() - t0, "pairs": pairs}


def _ls_scored(
    held_part: pd.DataFrame,
    split: Split,
    domains: Sequence[str],
    curve: Callable[..., np.ndarray],
    params: pd.DataFrame,
    reps: Sequence[pd.DataFrame],
    rmse: np.ndarray,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Score least squares' forecasts of ``held_part``: ``curve(params, runs, steps)`` gives the
    log loss (run x step x domain) of a parameter table; the bootstrap replicates ``reps`` plus
    Normal noise of sd ``rmse`` (per domain) give the intervals and the joint draws."""
    domains = list(domains)
    held = with_domain_mean(held_part, domains)
    runs = list(dict.fromkeys(held["run"]))
    steps = np.sort(held["step"].unique())
    point = _with_mean(np.exp(curve(params, runs, steps)))  # run x step x domain
    bounds = {}
    if reps:
        rng = np.random.default_rng([seed, 4])
        draws = np.stack([curve(r, runs, steps) for r in reps])  # rep x run x step x domain
        draws = np.exp(draws + rng.standard_normal(draws.shape) * rmse)
        bounds = _intervals(_with_mean(draws))
    dims = {"run": runs, "step": steps, "domain": [*domains, ALL_DOMAINS]}
    out = _scored(held, dims, point, bounds).assign(lpd=np.nan)
    new_runs = [r for r in runs if r not in set(split.train.runs)]
    pairs = None
    if bounds and len(new_runs) > 1:  # joint bootstrap replicates (with noise) of every run

        def joint_draws(chosen: list[str], step: float) -> np.ndarray:
            at = [runs.index(r) for r in chosen]
            return draws[:, at, int(np.searchsorted(steps, step)), :].mean(axis=-1)

        pairs = _decision_pairs(held, new_runs, joint_draws)
    return out, pairs


def _lightgbm_points(
    split: Split, data: MixtureData, seed: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """RegMix's LightGBM (:mod:`~bimix_bayes.evaluation.lightgbm_method`): point forecasts and
    quantile-regression intervals; the mean over domains averages the domains' forecasts and
    bounds. No densities and no joint draws (no pairwise decision calibration)."""
    t0 = time.perf_counter()
    model = LightGBMForecaster(seed=seed).fit(split.train)
    domains = list(model.domains_)
    held = with_domain_mean(split.held, domains)
    runs = list(dict.fromkeys(held["run"]))
    steps = np.sort(held["step"].unique())
    pred = model.predict(data.mixtures.loc[runs], steps)  # run x step x domain
    point = _with_mean(pred.pop("predicted"))
    bounds = {name: _with_mean(values) for name, values in pred.items()}
    dims = {"run": runs, "step": steps, "domain": [*domains, ALL_DOMAINS]}
    out = _scored(held, dims, point, bounds).assign(lpd=np.nan)
    return out, {"seconds": time.perf_counter() - t0}


def _fixed_budget_law(spec: Spec | Mapping[str, Any] | str | None) -> tuple[str, float]:
    """The law of the fixed-budget fits, and its cross scale: ``[law] name`` and
    ``[law] cross_sd_scale`` of the spec (the default spec's when None)."""
    from bimix_bayes.bayes.spec import load_spec, merge_spec

    full = merge_spec(spec) if spec is None or isinstance(spec, Mapping) else load_spec(spec)
    return full["law"]["name"], float(full["law"]["cross_sd_scale"])


def _fixed_budget_points(
    split: Split,
    data: MixtureData,
    method: str,
    n_bootstrap: int,
    seed: int,
    spec: Spec | Mapping[str, Any] | str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The spec's law at the single step of ``data`` (see :mod:`~bimix_bayes.leastsq.
    fixed_budget` and :mod:`~bimix_bayes.bayes.fixed_budget`): ``ls`` intervals from the
    bootstrap plus residual noise, ``bayes`` from the exact Student-t predictive of the
    conjugate regression, whose cross effects have the prior scale ``[law] cross_sd_scale``
    (its point forecast is the median of the draws)."""
    from bimix_bayes.bayes.fixed_budget import ConjugatePrior, FixedBudgetConjugate
    from bimix_bayes.laws.registry import get_law
    from bimix_bayes.leastsq.fixed_budget import FixedBudgetLeastSquares

    t0 = time.perf_counter()
    law, cross_scale = _fixed_budget_law(spec)
    rng = np.random.default_rng([seed, 5])
    domains = list(split.train.domains)
    held = with_domain_mean(split.held, domains)
    runs = list(dict.fromkeys(held["run"]))
    # every column, so that the shares sum to 1; zero shares kept for a law finite there
    if get_law(law).finite_at_zero:
        mixtures = data.mixtures.loc[runs].astype(float)
    else:
        mixtures = _prediction_mixtures(data, runs, list(data.mixtures.columns))
    n_draws = max(n_bootstrap, 400)
    bounds: dict[str, np.ndarray] = {}
    if method == "bayes":
        prior = ConjugatePrior(cross_scale=cross_scale)
        model = FixedBudgetConjugate(law=law, prior=prior).fit(split.train)
        draws = model.predictive_draws(mixtures, n_draws, rng)
        point = np.median(draws, axis=0)
        bounds = _intervals(_with_mean(draws))
    else:
        model = FixedBudgetLeastSquares(n_bootstrap=max(n_bootstrap, 1), law=law)
        model.fit(split.train)
        point = model.predict(mixtures).to_numpy()
        if n_bootstrap:
            bounds = _intervals(_with_mean(model.predictive_draws(mixtures, n_draws, rng)))
    step = float(data.observations["step"].iloc[0])
    dims = {"run": runs, "step": [step], "domain": [*domains, ALL_DOMAINS]}
    expand = {k: v[:, None, :] for k, v in bounds.items()}
    out = _scored(held, dims, _with_mean(point)[:, None, :], expand)
    lpd = np.full(len(out), np.nan)
    info: dict[str, Any] = {}
    if method == "bayes":
        pts = out.rename(columns={"run": "mixture", "observed": "loss"})
        lpd = model.log_predictive_density(pts, mixtures)
        info.update({"passed": True, "max_rhat": float("nan"), "divergences": 0})
    out["lpd"] = lpd
    return out, {"seconds": time.perf_counter() - t0, **info}


def backtest(
    data: MixtureData,
    protocol: str | Protocol,
    method: Method = "both",
    seed: int = 0,
    spec: Spec | Mapping[str, Any] | str | None = None,
    n_bootstrap: int = 200,
    n_splits: int = 5,
    progress: Any = None,
    retry: bool = True,
) -> BacktestResult:
    """Fit each method on the training part of every split; score its forecasts of the rest.

    Parameters
    ----------
    data
        Validated runs and observations.
    protocol
        ``"last-checkpoint"``, ``"horizon:F"``, ``"holdout-mixtures:K"`` or
        ``"holdout-runs:PATTERN"`` (or a
        :class:`~bimix_bayes.evaluation.protocols.Protocol`).
    method
        ``"bayes"``, ``"ls"``, ``"lightgbm"`` (RegMix's regressor; needs ``pip install
        'bimix-bayes[lightgbm]'``), ``"both"`` (bayes and ls) or ``"all"`` (the three).
    seed
        Seed of the splits, the sampler, the bootstrap and LightGBM.
    spec
        Model spec of the Bayesian fits (a path, a mapping merged over the default, or None).
    n_bootstrap
        Least-squares run-bootstrap resamples (intervals); 0 for point forecasts only.
    n_splits
        Random splits of ``holdout-mixtures`` (ignored by the other protocols).
    progress
        Optional callable receiving one line per finished fit (e.g. ``print``).
    retry
        Refit a Bayesian fit that fails its diagnostics once with safer sampler settings
        (:meth:`~bimix_bayes.bayes.model.BiMixModel.fit`); the fits table says which.

    Returns
    -------
    BacktestResult
        The per-point table, its metrics (:func:`~bimix_bayes.evaluation.metrics.score`) and
        one row per fit.

    Examples
    --------
    >>> from bimix_bayes.data.simulate import simulate_default
    >>> res = backtest(simulate_default(seed=1), "horizon:0.5", method="ls", n_bootstrap=20)
    >>> sorted(res.metrics.index.get_level_values("domain").unique())[:2]
    ['(all points)', '(mean of domains)']
    """
    protocol = parse_protocol(protocol)
    methods = method_list(method)
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if "lightgbm" in methods:
        import_lightgbm()  # a missing extra fails here, before any fit
    if data.has_sizes and "lightgbm" in methods:
        raise ValueError(
            "RegMix's LightGBM has no model-size dimension: backtest data with sizes with "
            "method='bayes' or 'ls' (the size-aware least squares), or select one size "
            "(--group-col)"
        )
    splits = make_splits(data, protocol, seed=seed, n_splits=n_splits)
    if data.has_sizes and fixed_budget(data):
        raise ValueError(
            "data with model sizes at a single step: the fixed-budget fits have no size "
            "dimension; select one size (--group-col)"
        )
    if data.has_sizes and "ls" in methods and any(len(sp.train.sizes) < 2 for sp in splits):
        raise ValueError(
            f"protocol {protocol}: least squares needs at least two fitted model sizes to "
            "estimate how the law moves with size; hold out fewer sizes, or use method='bayes'"
        )
    frames, fits, pair_frames = [], [], []
    for split in splits:
        for m in methods:
            if m == "lightgbm":
                pts, info = _lightgbm_points(split, data, seed)
            elif fixed_budget(data):
                pts, info = _fixed_budget_points(split, data, m, n_bootstrap, seed, spec)
            elif m == "bayes":
                pts, info = _bayes_points(split, data, spec, seed, retry)
            else:
                pts, info = _ls_points(split, data, n_bootstrap, seed)
            frames.append(pts.assign(method=m, split=split.name))
            pair_table = info.pop("pairs", None)
            if pair_table is not None:
                pair_frames.append(pair_table.assign(method=m, split=split.name))
            fits.append({"method": m, "split": split.name, **info})
            if progress is not None:
                extra = ""
                if info.get("passed") is False:
                    extra = f" (diagnostics FAILED: {info.get('problems', '')})"
                progress(
                    f"  {protocol} split {split.name}: {m} fitted and scored in "
                    f"{info['seconds']:.1f} s{extra}"
                )
    points = pd.concat(frames, ignore_index=True)[list(POINT_COLUMNS)]
    settings: dict[str, Any] = {
        "protocol": str(protocol),
        "methods": methods,
        "seed": seed,
        "splits": len(splits),
        "n_bootstrap": n_bootstrap,
    }
    if "lightgbm" in methods:
        settings["lightgbm"] = LightGBMForecaster(seed=seed).describe()
    if fixed_budget(data):
        settings["fixed_budget"] = True
        settings["law"] = _fixed_budget_law(spec)[0]
    elif "bayes" in methods:
        from bimix_bayes.bayes.model import BiMixModel

        full = BiMixModel(spec).spec
        cfg = full["sampler"]
        settings["sampler"] = f"{cfg['chains']} chains x {cfg['draws']} draws (+{cfg['tune']})"
        settings["law"] = full["law"]["name"]
    return BacktestResult(
        protocol=protocol,
        points=points,
        metrics=score(points),
        data_summary=data.summary(),
        settings=settings,
        fits=pd.DataFrame(fits),
        pairs=pd.concat(pair_frames, ignore_index=True) if pair_frames else pd.DataFrame(),
    )
