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

from bimix_bayes.bayes.persistence import data_from_idata
from bimix_bayes.data.replicates import seed_spread
from bimix_bayes.data.table import MixtureData
from bimix_bayes.leastsq.fit import BiMixLeastSquares

__all__ = [
    "NOISE_PARAMS",
    "PAPER_PARAMS",
    "comparison_table",
    "posterior_table",
    "seed_spread_table",
]

PAPER_PARAMS = ("A", "alpha", "B", "beta")
NOISE_PARAMS = ("sigma", "tau")


def posterior_table(
    idata: az.InferenceData,
    prob: float = 0.94,
    var_names: tuple[str, ...] = PAPER_PARAMS + NOISE_PARAMS,
) -> pd.DataFrame:
    """Per (domain, parameter): mean, sd, HDI bounds, r-hat and bulk/tail ESS.

    ``C`` is 1 by convention and not listed; ``tau`` only when the model has run offsets.
    """
    post = idata.posterior
    names = [v for v in var_names if v in post]
    hdi = az.hdi(idata, var_names=names, hdi_prob=prob)
    rhat = az.rhat(idata, var_names=names)
    ess_bulk = az.ess(idata, var_names=names, method="bulk")
    ess_tail = az.ess(idata, var_names=names, method="tail")
    rows = []
    for name in names:
        for domain in post["domain"].to_numpy():
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
    ``prob``).
    """
    table = posterior_table(idata, prob, PAPER_PARAMS)
    if least_squares is None:
        least_squares = BiMixLeastSquares(
            n_bootstrap=n_bootstrap, interval=prob, seed=seed, s_ref=float(idata.attrs["s_ref"])
        ).fit(data_from_idata(idata))
    ls = least_squares
    has_bootstrap = ls.bootstrap_ is not None and not ls.bootstrap_.empty
    iv = ls.intervals(prob) if has_bootstrap else None
    ls_cols = {"ls_estimate": [], "ls_lower": [], "ls_upper": []}
    for domain, name in table.index:
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

    Two seeds of one mixture at one step differ, under the model, by their run offsets and
    checkpoint noise: the model's between-seed sd is ``sqrt(tau^2 + sigma^2)`` (posterior
    mean). Columns ``seed_sd`` (measured, :func:`~bimix_bayes.data.replicates.seed_spread`),
    ``groups``, ``cells``, ``model_sd`` and ``tau``; empty without replicates.

    Examples
    --------
    >>> seed_spread_table(idata, data).empty  # no replicated mixtures in the doctest fit
    True
    """
    measured = seed_spread(data)
    if measured.empty:
        return measured
    post = idata.posterior
    sigma = post["sigma"]
    tau = post["tau"] if "tau" in post else 0.0 * sigma
    model_sd = np.sqrt(tau**2 + sigma**2).mean(("chain", "draw"))
    domains = [str(d) for d in post["domain"].to_numpy()]
    fitted = pd.DataFrame(
        {"model_sd": model_sd.to_numpy(), "tau": tau.mean(("chain", "draw")).to_numpy()},
        index=domains,
    )
    return measured.join(fitted).round(4)
