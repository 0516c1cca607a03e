"""Tables of a fit: posterior parameters with intervals and diagnostics, beside least squares.

Examples
--------
>>> table = comparison_table(idata, prob=0.94)
>>> sorted(table.index.get_level_values("parameter").unique())[:3]
['A', 'B', 'alpha']
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bimix_bayes.bayes.law_params import TRAIN_DIM, fit_step_covariates, posterior_law
from bimix_bayes.bayes.noise import NOISE_EXCESS, fit_noise_variance
from bimix_bayes.bayes.persistence import data_from_idata, spec_from_idata
from bimix_bayes.data.replicates import replicate_cells, seed_spread
from bimix_bayes.data.table import MixtureData
from bimix_bayes.laws.drift import ALPHA_DRIFT
from bimix_bayes.laws.schedule import ANNEAL
from bimix_bayes.laws.size import SIZE_PARAMS
from bimix_bayes.leastsq.fit import BiMixLeastSquares

__all__ = [
    "LAW_PARAMS",
    "NOISE_PARAMS",
    "PAPER_PARAMS",
    "comparison_table",
    "cross_effects_meaning",
    "cross_table",
    "law_params",
    "least_squares_left_out",
    "posterior_table",
    "seed_spread_table",
]

PAPER_PARAMS = ("A", "alpha", "B", "beta")
NOISE_PARAMS = ("sigma", "tau", NOISE_EXCESS)
#: The per-domain parameters a summary lists under each law (BiMix's paper coefficients where
#: the law has them; the cross effects have their own table, :func:`cross_table`).
LAW_PARAMS = {
    "bimix": PAPER_PARAMS,
    "bimix_cross": PAPER_PARAMS,
    "loglinear": ("log_floor", "log_reducible", "own", "beta"),
    # the paper's A, B, C read alpha as an exponent of r, not of 1 + r / eps
    "effective": ("log_floor", "log_reducible", "alpha", "beta"),
}


def law_params(idata: az.InferenceData) -> tuple[str, ...]:
    """The per-domain parameters of the fit's law to list (:data:`LAW_PARAMS`)."""
    return LAW_PARAMS[posterior_law(idata.posterior).name]


def cross_effects_meaning(idata: az.InferenceData) -> str:
    """What a cross effect of the fit's law measures, for the header of :func:`cross_table`.

    Examples
    --------
    >>> cross_effects_meaning(idata).startswith("cross effects")
    True
    """
    if posterior_law(idata.posterior).share_floor is not None:
        return (
            "cross effects: the exponent of each training domain's effective share r + eps on "
            "the domain's loss (doubling it multiplies the loss by 2^cross; < 0: helps)"
        )
    return (
        "cross effects on log loss of a unit of each training share, relative to the average "
        "other domain (< 0: helps more)"
    )


def cross_table(idata: az.InferenceData, prob: float = 0.94) -> pd.DataFrame:
    """The cross effects of a cross-domain law: per (domain, training domain), the posterior
    mean and HDI of ``cross`` (the effect of that training share on the domain's log loss,
    relative to the average other domain; under ``effective`` the exponent of its effective
    share, :func:`cross_effects_meaning`; 0 on the domain's own column). Empty under BiMix.

    Examples
    --------
    >>> cross_table(idata).empty == ("cross" not in idata.posterior)  # empty under BiMix
    True
    """
    post = idata.posterior
    if "cross" not in post:
        return pd.DataFrame()
    draws = post["cross"]
    hdi = az.hdi(idata, var_names=["cross"], hdi_prob=prob)["cross"]
    table = pd.DataFrame(
        {
            "mean": draws.mean(("chain", "draw")).to_series(),
            "lower": hdi.sel(hdi="lower").to_series(),
            "upper": hdi.sel(hdi="higher").to_series(),
        }
    )
    table.index = table.index.set_names(["domain", "training_domain"])
    return table


def posterior_table(
    idata: az.InferenceData,
    prob: float = 0.94,
    var_names: tuple[str, ...] = PAPER_PARAMS + SIZE_PARAMS + (ANNEAL, ALPHA_DRIFT) + NOISE_PARAMS,
) -> pd.DataFrame:
    """Per (domain, parameter): mean, sd, HDI bounds, r-hat and bulk/tail ESS.

    ``C`` is 1 by convention and not listed; ``tau`` only when the model has run offsets; the
    size slopes (:mod:`bimix_bayes.laws.size`) only for a fit of data with model sizes (the
    other parameters are then those of the reference size ``attrs["size_ref"]``); ``anneal``
    only for a fit with a learning-rate schedule (:mod:`bimix_bayes.laws.schedule`; ``B`` is
    then relative to the rate's area, in peak-rate steps); ``alpha_drift`` only for a fit with
    ``[law] alpha_drift`` (:mod:`bimix_bayes.laws.drift`; ``alpha`` is then the exponent at
    ``s_ref``). An
    evaluation-only domain (not a training domain) has no own-share parameter (``own`` or
    ``alpha``): the law multiplies it by a zero share, so its draws are the prior's and are not
    listed.
    """
    post = idata.posterior
    names = [v for v in var_names if v in post]
    trained = {str(t) for t in post[TRAIN_DIM].to_numpy()} if TRAIN_DIM in post.dims else None
    hdi = az.hdi(idata, var_names=names, hdi_prob=prob)
    rhat = az.rhat(idata, var_names=names)
    ess_bulk = az.ess(idata, var_names=names, method="bulk")
    ess_tail = az.ess(idata, var_names=names, method="tail")
    rows = []
    for name in names:
        for domain in post["domain"].to_numpy():
            if name in ("own", "alpha") and trained is not None and str(domain) not in trained:
                continue  # evaluation-only: no own share
            sel = {"domain": domain}
            draws = post[name].sel(sel)
            rows.append(
                {
                    "domain": str(domain),
                    "parameter": name,
                    "mean": float(draws.mean()),
                    "sd": float(draws.std()),
                    "lower": float(hdi[name].sel(sel).sel(hdi="lower")),
                    "upper": float(hdi[name].sel(sel).sel(hdi="higher")),
                    "r_hat": float(rhat[name].sel(sel)),
                    "ess_bulk": float(ess_bulk[name].sel(sel)),
                    "ess_tail": float(ess_tail[name].sel(sel)),
                }
            )
    return pd.DataFrame(rows).set_index(["domain", "parameter"])


def least_squares_left_out(idata: az.InferenceData) -> str | None:
    """Why the paper's least squares cannot stand beside this fit's parameters (None: it can).

    Least squares is BiMix's per-domain law, fitted at one model size with the plain step
    term: a fit of several sizes, with a learning-rate schedule, or under another law has
    parameters it does not estimate (the exponent's drift, ``alpha_drift``, is only left blank).

    Examples
    --------
    >>> least_squares_left_out(idata) is None  # the default bimix fit
    True
    """
    if "size" in getattr(idata, "constant_data", {}):
        return (
            "the paper's least squares has no model-size dimension (`bimix backtest DATA "
            "--protocol holdout-size:N --method ls` runs its size-aware form)"
        )
    if idata.attrs.get("lr_schedule"):
        return (
            "the paper's least squares has no learning-rate schedule term, so its parameters "
            "mean other things (its forecasts are still scored beside the fit's on held-out "
            "points)"
        )
    law = posterior_law(idata.posterior)
    if not set(law_params(idata)) <= set(PAPER_PARAMS):
        return f"the {law.name} law's parameters are not BiMix's, which least squares estimates"
    return None


def comparison_table(
    idata: az.InferenceData,
    prob: float = 0.94,
    n_bootstrap: int = 200,
    seed: int = 0,
    least_squares: BiMixLeastSquares | None = None,
) -> pd.DataFrame:
    """Posterior (mean, HDI, r-hat, ESS) beside least squares (estimate, bootstrap interval).

    The least-squares fit (the paper's method) is refitted on the same data stored in the fit,
    with ``n_bootstrap`` run-level bootstrap resamples and the same interval probability, unless
    an already fitted ``least_squares`` is given (its bootstrap intervals are then taken at
    ``prob``). The least squares are BiMix's (the paper's method): under the log-linear law,
    whose parameters differ, and for a fit of several model sizes or with a learning-rate
    schedule (the paper's fit has neither), the least-squares columns are NaN; so are they on the
    rows of the exponent's drift (``alpha_drift``), which the paper's law does not have.
    """
    table = posterior_table(idata, prob, law_params(idata) + SIZE_PARAMS + (ANNEAL, ALPHA_DRIFT))
    if least_squares_left_out(idata):
        for key in ("ls_estimate", "ls_lower", "ls_upper"):  # least squares is BiMix's law
            table[key] = np.nan
        return table
    if least_squares is None:
        least_squares = BiMixLeastSquares(
            n_bootstrap=n_bootstrap, interval=prob, seed=seed, s_ref=float(idata.attrs["s_ref"])
        ).fit(data_from_idata(idata))
    ls = least_squares
    has_bootstrap = ls.bootstrap_ is not None and not ls.bootstrap_.empty
    iv = ls.intervals(prob) if has_bootstrap else None
    ls_cols = {"ls_estimate": [], "ls_lower": [], "ls_upper": []}
    for domain, name in table.index:
        if name == ALPHA_DRIFT:
            for values in ls_cols.values():
                values.append(float("nan"))
            continue
        ls_cols["ls_estimate"].append(float(ls.params_.loc[domain, name]))
        ls_cols["ls_lower"].append(
            float(iv.loc[domain, f"{name}_lower"]) if iv is not None else float("nan")
        )
        ls_cols["ls_upper"].append(
            float(iv.loc[domain, f"{name}_upper"]) if iv is not None else float("nan")
        )
    for key, values in ls_cols.items():
        table[key] = values
    return table


def seed_spread_table(idata: az.InferenceData, data: MixtureData) -> pd.DataFrame:
    """Measured seed spread per domain beside what the fit implies for it.

    Two seeds of one mixture at one step differ, under the model, by their run effects and
    their checkpoint noise: the model's between-seed variance at step ``s`` is ``tau^2 + sigma^2
    v(s)`` (``v`` the early checkpoints' excess, :mod:`~bimix_bayes.bayes.noise`; 1 under a
    constant noise), plus ``kappa^2 x^2`` with run slopes (``x`` the fit's step covariate),
    times ``nu / (nu - 2)`` under the Student-t likelihood (offsets and noise share its scale).
    ``model_sd`` is the square root of that variance's posterior mean, pooled over the cells
    the measured spread pools, with the same weights (replicates - 1), so the two compare like
    for like. Columns ``seed_sd``, ``mixture_sd``, ``snr``, ``groups``, ``cells`` (measured,
    :func:`~bimix_bayes.data.replicates.seed_spread`), ``model_sd`` and ``tau``; empty without
    replicates.

    Examples
    --------
    >>> seed_spread_table(idata, data).empty  # no replicated mixtures in the doctest fit
    True
    """
    measured = seed_spread(data)
    if measured.empty:
        return measured
    post = idata.posterior
    cells = replicate_cells(data).reset_index()
    steps = np.unique(cells["step"].to_numpy(dtype=float))
    x, _ = fit_step_covariates(idata.attrs, steps)
    x_da = xr.DataArray(x, dims="step", coords={"step": steps})
    tau = post["tau"] if "tau" in post else 0.0 * post["sigma"]
    variance = tau**2 + post["sigma"] ** 2 * (fit_noise_variance(post, x) if NOISE_EXCESS in post
                                              else 1.0)  # fmt: skip
    if "kappa" in post:
        variance = variance + post["kappa"] ** 2 * x_da**2
    lik = spec_from_idata(idata)["likelihood"]
    if lik["family"] == "student_t" and lik["nu"] > 2:  # E[W] of the shared scale mixture
        variance = variance * lik["nu"] / (lik["nu"] - 2)
    variance = variance.mean(("chain", "draw"))
    if "step" not in variance.dims:
        variance = variance.expand_dims(step=steps)
    variance = variance.assign_coords(step=steps).transpose("step", "domain").to_pandas()
    domains = [str(d) for d in post["domain"].to_numpy()]
    cell_var = variance.stack().rename("model_var").rename_axis(["step", "domain"])
    cells = cells.join(cell_var, on=["step", "domain"])
    pooled = (
        cells.assign(w=cells["count"] - 1)
        .groupby("domain")[["model_var", "w"]]
        .apply(lambda c: np.average(c["model_var"], weights=c["w"]))
    )
    fitted = pd.DataFrame(
        {
            "model_sd": np.sqrt(pooled.reindex(domains)).to_numpy(),
            "tau": tau.mean(("chain", "draw")).to_numpy(),
        },
        index=domains,
    )
    return measured.join(fitted).round(4)
