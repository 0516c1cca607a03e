"""Log posterior predictive density of held-out losses, the run offset integrated out exactly.

The forecast core (:mod:`~bimix_bayes.bayes.forecast`) draws losses; scoring a forecast against
later checkpoints needs their density instead, from the same conditional of each observed run's
offset (:func:`~bimix_bayes.bayes.targets.observed_conditional`).

Examples
--------
>>> obs = data.observations.tail(3).rename(columns={"run": "mixture"})
>>> lpd = log_predictive_density(idata, obs[["mixture", "step", "domain", "loss"]])
>>> lpd.shape, bool(np.isfinite(lpd).all())
((3,), True)
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
from scipy.special import logsumexp

from bimix_bayes.bayes.checkpoints import CHECKPOINT_Z, checkpoint_terms
from bimix_bayes.bayes.discrepancy import bend_sd, doublings_outside
from bimix_bayes.bayes.law_params import fit_step_covariates, posterior_law, posterior_params
from bimix_bayes.bayes.noise import fit_noise_variance
from bimix_bayes.bayes.persistence import data_from_idata, spec_from_idata
from bimix_bayes.bayes.run_size_offsets import fresh_offset_factors, stored_run_size_offsets
from bimix_bayes.bayes.sizes import size_doublings_outside, size_offset
from bimix_bayes.bayes.targets import observed_conditional, target_shares
from bimix_bayes.data.labels import OBSERVED
from bimix_bayes.data.table import DataError

__all__ = ["log_predictive_density"]


def log_predictive_density(
    idata: az.InferenceData,
    points: pd.DataFrame,
    *,
    mixtures: pd.DataFrame | None = None,
    seed: int = 0,
    size: float | None = None,
) -> np.ndarray:
    """Log posterior predictive density of observed losses (held-out checkpoints), per point.

    For each posterior draw the predictive of a new measurement is log-normal: ``log L`` is
    Normal with mean ``mu + E[u]`` and variance ``W (sigma^2 v + Var[u])``, where ``u`` is the run
    offset (its conditional given the run's fitted checkpoints for an observed run, ``N(0,
    tau^2)`` for a new mixture), integrated out exactly, and ``W`` the Student-t variance factor
    (1 under the Normal likelihood; drawn once per draw otherwise) and ``v`` the noise's
    variance factor at the point's step (1 unless the noise falls with the step,
    :mod:`~bimix_bayes.bayes.noise`); in a fit of several sizes, a point at a size the fit has
    not seen its mixture at adds the run x size variance
    (:mod:`~bimix_bayes.bayes.run_size_offsets`). The density of the loss
    itself (Jacobian ``1 / L`` included) is averaged over draws: ``log mean_draws p(L | draw)``.

    Parameters
    ----------
    idata
        A fit from :meth:`bimix_bayes.bayes.model.BiMixModel.fit`.
    points
        Columns ``mixture`` (an observed run, or a name in ``mixtures``), ``step``, ``domain``
        (a fitted domain) and ``loss`` (> 0).
    mixtures
        Shares of new mixtures named in ``points`` (one row per mixture, a column per domain).
    seed
        Seed of the Student-t variance factors (unused under the Normal likelihood).
    size
        The model size of every point, for a fit of data with model sizes
        (:func:`~bimix_bayes.bayes.sizes.size_offset`).

    Returns
    -------
    numpy.ndarray
        One log density per row of ``points`` (nats, density of the loss).

    Examples
    --------
    >>> pts = pd.DataFrame({"mixture": ["even", "even"], "step": [2e4, 2e4],
    ...                     "domain": ["web", "code"], "loss": [3.0, 3.0]})
    >>> log_predictive_density(idata, pts, mixtures=new_mixtures).shape
    (2,)
    """
    missing = {"mixture", "step", "domain", "loss"} - set(points.columns)
    if missing:
        raise ValueError(f"points lack the column(s) {sorted(missing)}")
    data = data_from_idata(idata)
    z = size_offset(idata, data, size)
    spec = spec_from_idata(idata)
    lik = spec["likelihood"]
    post = idata.posterior
    domains = [str(d) for d in post["domain"].to_numpy()]
    names = points["mixture"].astype(str).to_numpy()
    new_names = set() if mixtures is None else {str(i) for i in mixtures.index}
    runs = sorted({n for n in names if n not in new_names})
    new = None
    if mixtures is not None:
        new = mixtures.copy()
        new.index = new.index.astype(str)
        new = new.loc[sorted(set(names) & new_names)]
    law = posterior_law(post)
    targets = target_shares(
        data, domains, new if new is not None and len(new) else None, runs or None, law
    )
    table = targets.table
    dom = pd.Index(domains).get_indexer(points["domain"].astype(str))
    if (dom < 0).any():
        raise DataError(f"points name domain(s) outside the fit; fitted: {domains}")
    tgt = table.index.get_indexer(names)
    loss = points["loss"].to_numpy(dtype=float)
    steps = points["step"].to_numpy(dtype=float)
    if not (np.all(loss > 0) and np.all(steps > 0)):
        raise ValueError("points need loss > 0 and step > 0")
    shares = targets.own[tgt, dom]
    n_draws = post.sizes["chain"] * post.sizes["draw"]

    def flat(a: np.ndarray) -> np.ndarray:  # (chain, draw, ...) -> (draw, ...)
        return np.reshape(a, (n_draws, -1))

    def param(name: str) -> np.ndarray:  # per draw and point
        return flat(post[name].transpose("chain", "draw", "domain").to_numpy())[:, dom]

    params = posterior_params(post, law)
    if law.cross_domain:  # the cross term per (draw, target, domain) first, then gathered
        features = law.cross_features(targets.training)  # the shares, or effective shares
        cross = np.einsum("cdij,tj->cdti", params.pop("cross"), features)
        params["cross_term"] = cross[:, :, tgt, dom]  # (chain, draw, point)
    params = {
        k: np.reshape(v if k == "cross_term" else np.take(v, dom, axis=2), (n_draws, -1))
        for k, v in params.items()
    }
    sigma = param("sigma")
    tau = param("tau") if "tau" in post else np.zeros_like(sigma)
    x, u = fit_step_covariates(idata.attrs, steps)
    noise_var = fit_noise_variance(post, x)  # a noise that falls with the step
    if noise_var is not None:
        sigma = sigma * np.sqrt(np.reshape(noise_var.to_numpy(), (n_draws, len(x), -1))[
            :, np.arange(len(x)), dom
        ])  # fmt: skip
    with np.errstate(divide="ignore"):
        cross_term = params.pop("cross_term", 0.0)
        if law.cross_domain:  # its effect, summed per point, is cross_term
            params["cross"] = 0.0
        if z is not None:  # cross_term is linear in the cross effects: scaled like them
            cross_term = cross_term * np.exp(params["size_mixture"] * z)
        mu = law.log_loss(
            np.zeros((1, 1)),
            shares[None, :],
            x[None, :],
            params,
            z=z,
            u=None if u is None else u[None, :],
        )
        mu = mu + cross_term
    u_mean, u_var = np.zeros_like(mu), tau**2
    slope_on = bool(lik["run_slope"])
    xs = np.broadcast_to(x[None, :], mu.shape)
    if slope_on:  # fresh slope: v ~ N(0, kappa^2) adds kappa^2 x^2 to the variance
        u_var = u_var + param("kappa") ** 2 * xs**2
    rng = np.random.default_rng([seed, 3])
    if lik["family"] == "student_t":
        nu = lik["nu"]
        w = 1.0 / rng.gamma(nu / 2, 2.0 / nu, size=mu.shape)
    else:
        w = np.ones_like(mu)
    is_obs = np.array([targets.sources[t] == OBSERVED for t in tgt])
    if is_obs.any():
        cond, layout = observed_conditional(idata, data)
        full = cond["mean"].shape
        cond = {k: v if k == "w" else flat(np.broadcast_to(v, full)) for k, v in cond.items()}
        curve_of = {
            (layout.runs[r], layout.domains[d]): c
            for c, (r, d) in enumerate(zip(layout.curve_run, layout.curve_domain, strict=True))
        }
        if cond["w"] is not None:
            shape_w, rate_w = (flat(np.broadcast_to(a, full)) for a in cond["w"])
        for p in np.flatnonzero(is_obs):
            c = curve_of.get((names[p], domains[dom[p]]))
            if c is None:  # an observed run without this domain's curve: a fresh offset
                continue
            xp = xs[:, p]
            if slope_on:  # u + v x: mean and variance of a linear combination
                u_mean[:, p] = cond["mean"][:, c] + cond["slope_mean"][:, c] * xp
                u_var[:, p] = (
                    cond["var"][:, c] + 2 * xp * cond["cov"][:, c] + xp**2 * cond["slope_var"][:, c]
                )
            else:
                u_mean[:, p] = cond["mean"][:, c]
                u_var[:, p] = cond["var"][:, c]
            if cond["w"] is not None:
                w[:, p] = 1.0 / rng.gamma(shape_w[:, c], 1.0 / rate_w[:, c])
    fitted = data.observations["step"].to_numpy(dtype=float)
    h = doublings_outside(steps, first=fitted.min(), last=fitted.max())
    bend_var = bend_sd(h, spec["discrepancy"])[None, :] ** 2  # shared by all runs: Normal
    if spec["discrepancy"]["extrapolation"]:  # and at a size not trained
        h_size = size_doublings_outside(idata, size)
        bend_var = bend_var + (spec["discrepancy"]["size_sd_per_doubling"] * h_size) ** 2
    if CHECKPOINT_Z in post:  # each checkpoint's shock: its posterior at a fitted step,
        # a fresh Normal(0, sd_checkpoint^2) elsewhere (bimix_bayes.bayes.checkpoints)
        shocks, fresh_var = checkpoint_terms(post, np.unique(fitted), steps, dom)
        mu = mu + shocks.reshape(n_draws, -1)
        bend_var = bend_var + fresh_var.reshape(n_draws, -1)
    offsets = stored_run_size_offsets(post) if size is not None else None
    if offsets is not None:  # a run at a size the fit has not seen it at: its own luck there
        factors = fresh_offset_factors(data, list(table.index), targets.sources, domains, size)
        bend_var = bend_var + (factors * offsets.sd**2)[tgt, dom][None, :]
    var = w * (sigma**2 + u_var) + bend_var
    y = np.log(loss)[None, :]
    logp = -0.5 * (np.log(2 * np.pi * var) + (y - mu - u_mean) ** 2 / var) - y
    out = logsumexp(logp, axis=0) - np.log(n_draws)
    defined = np.isfinite(shares) & ((shares > 0) | law.finite_at_zero)
    return np.where(defined, out, np.nan)
