"""Which proxy run to train next: the value of information for the mixture decision.

The decision (:func:`~bimix_bayes.decision.recommend.optimize`) picks the mixture ``m`` of a set
``M`` with the lowest expected objective ``E[O(m)]``, the weighted loss over domains at the
target step, expected under the posterior. Training one more proxy run at mixture ``c`` to
the proxy step ``s_p`` would show its loss ``y`` (one value per evaluation domain) and move the
posterior; the decision would then be ``min_m E[O(m) | y]``. Its value is the **knowledge
gradient**::

    KG(c) = E_y[ E[O(m0) | y] - min_m E[O(m) | y] ] = min_m E[O(m)] - E_y[ min_m E[O(m) | y] ]

(``m0`` today's choice; the two forms are equal because ``E_y[E[O(m0) | y]] = E[O(m0)]``; the
first is a mean of non-negative terms, so its Monte Carlo estimate never goes below zero). It
is in nats of the objective: how much lower the loss of the mixture finally chosen is expected
to be, thanks to that run. The **value of stopping now** is the expected regret of deciding
today, ``E[O(m0) - min_m O(m)]`` (the expected value of perfect information): no run can be
worth more than that.

How ``y`` moves the posterior. Under the model a new run of mixture ``c`` at ``s_p`` has per domain
log loss ``y_i = mu_i(c, s_p; theta) + u_i + e_i``: the law, the run's fresh offsets ``u ~ N(0,
diag(tau) R diag(tau))`` (``R`` the fitted runs' residual correlation when the run effects are
independent in the likelihood: :mod:`~bimix_bayes.bayes.residual_correlation`; plus ``x_p^2`` times
the slopes' covariance when the fit has run slopes) and checkpoint noise ``e ~ N(0, diag(sigma) R_n
diag(sigma))`` (``R_n`` the noise's correlation across domains the fit measured:
:mod:`~bimix_bayes.bayes.checkpoint_noise`). That likelihood is exact and needs no refit: the
posterior after ``y`` is the posterior draws reweighted by ``p(y | theta_d)`` (importance weights;
their effective sample size is reported). A fantasy draws ``theta_f`` from the posterior and ``y``
from its likelihood; the knowledge gradient averages over fantasies, with common random numbers
across candidates (a fantasy's own draw is left out of its reweighted posterior: it made ``y`` and
would take most of the weight). A batch of ``K`` runs is chosen greedily: the ``k``-th proposal
maximises the value of the first ``k`` runs observed together (joint fantasies, likelihoods
multiplied), so a second run near the first is worth only what it adds.

``update="linear"`` replaces the reweighting by a Kalman update: over the draws, the runs' log
losses and the objectives are taken as jointly Gaussian, ``E[O | y] = E[O] + C S^-1 (y - E[y])``
(``C = Cov(O, y)``, ``S = Cov(y)``). It keeps every draw however much a run says, but the
posterior is not Gaussian: against refits it moves the expected objectives about half as far
(``benchmarks/next_run_update.py``), so reweighting is the default.

Examples
--------
>>> plan = propose_next_runs(idata, 4e4, batch=2, n_candidates=50, n_fantasies=16)
>>> len(plan.proposals), bool(plan.value_of_stopping > 0)
(2, True)
>>> bool((plan.proposals["value"] <= plan.value_of_stopping).all())
True
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bimix_bayes.bayes.checkpoint_noise import stored_noise_correlation
from bimix_bayes.bayes.correlated_posterior import effect_factors
from bimix_bayes.bayes.law_params import fit_step_covariates
from bimix_bayes.bayes.noise import fit_noise_variance
from bimix_bayes.bayes.persistence import spec_from_idata
from bimix_bayes.bayes.residual_correlation import stored_residual_correlation
from bimix_bayes.bayes.run_size_offsets import stored_run_size_offsets
from bimix_bayes.bayes.sizes import fitted_sizes, same_size, size_label
from bimix_bayes.data.loaders import size_count, step_count
from bimix_bayes.data.mixture_input import mixture_frame, mixtures_words
from bimix_bayes.data.table import DataError
from bimix_bayes.decision.constraints import Bounds, MixtureConstraints
from bimix_bayes.decision.problem import candidate_shares, outside_design, prepare
from bimix_bayes.decision.solver import per_draw_optima, solve
from bimix_bayes.decision.surface import LossSurface, weighted_loss

if TYPE_CHECKING:
    import arviz as az

__all__ = ["UPDATES", "NextRuns", "propose_next_runs", "random_candidates"]

#: How a fantasy run updates the posterior (:func:`propose_next_runs`'s ``update``).
UPDATES = ("reweight", "linear")


@dataclass(frozen=True)
class NextRuns:
    """Proposed proxy runs and what they are worth (:func:`propose_next_runs`).

    Attributes
    ----------
    proposals
        One row per proposed run, in the order chosen: its shares (one column per training
        domain), ``value`` (knowledge gradient of the runs up to this one together, nats of
        the objective), ``gain`` (what this run adds to the earlier ones), ``value_se`` (Monte
        Carlo standard error of ``value``), ``p_change`` (the probability that the runs up to
        this one change the choice) and ``ess`` (median effective sample size of the
        reweighted draws over fantasies; NaN under the linear update, which keeps every draw).
    value_of_stopping
        The expected regret of deciding today, ``E[O(m0) - min_m O(m)]`` (nats): an upper
        bound on what any run can be worth.
    decision
        Today's choice ``m0`` among the decision set (shares).
    step, proxy_step
        The target step of the decision and the step the proposed runs would be trained to.
    unit
        ``"steps"`` or ``"tokens"``.
    settings
        Draws, candidates, fantasies, update and seed used.
    notes
        Caveats (a failed fit, few effective draws, ...).
    size, proxy_size, size_kind
        For a fit of several model sizes: the target model's size, the size the proposed runs
        would be trained at, and what the sizes count (the fit's words, e.g. ``"total
        parameters"``); None, None and ``""`` otherwise.
    run_luck_sd
        The yardstick: the sd (nats) of one proxy run's objective around its law, at today's
        choice, the proxy size and the proxy step (no later than the last fitted one): its run
        offsets and checkpoint noise, which no choice of mixture removes. None when not
        measured.
    """

    proposals: pd.DataFrame
    value_of_stopping: float
    decision: pd.Series
    step: float
    proxy_step: float
    unit: str
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    size: float | None = None
    proxy_size: float | None = None
    size_kind: str = ""
    run_luck_sd: float | None = None

    @property
    def recovered(self) -> float:
        """The share of the value of stopping the whole batch is expected to recover."""
        best = float(self.proposals["value"].iloc[-1]) if len(self.proposals) else 0.0
        return best / self.value_of_stopping if self.value_of_stopping > 0 else 0.0

    @property
    def method(self) -> str:
        """How a fantasy run updated the posterior, in words."""
        how = {"linear": "a linear (Gaussian) update", "reweight": "importance reweighting"}
        used, total = self.settings["draws"], self.settings.get("posterior_draws")
        thinned = f", thinned evenly from {total} (max_draws)" if total and total > used else ""
        return f"{how[self.settings['update']]} of {used} posterior draws{thinned}"

    def display_table(self) -> pd.DataFrame:
        """The proposals for people: shares and the chance of a changed choice in %, values in
        nats (3 digits), the effective draws (reweighting only) rounded."""
        shares = (100 * self.proposals[list(self.decision.index)]).round(1)
        table = shares.add_suffix(" %").assign(
            value=self.proposals["value"].map("{:.2e}".format),
            gain=self.proposals["gain"].map("{:.2e}".format),
            value_se=self.proposals["value_se"].map("{:.1e}".format),
            change=(100 * self.proposals["p_change"]).round().astype(int).astype(str) + " %",
        )
        if self.proposals["ess"].notna().all():
            table["ess"] = self.proposals["ess"].round().astype(int)
        return table

    def format(self) -> str:
        """The proposals as text, with the value of stopping now."""
        table = self.display_table()
        s = self.settings
        at_size = of_size = ""
        if self.size is not None and self.proxy_size is not None:
            kind = f" ({self.size_kind})" if self.size_kind else ""
            at_size = f" at model size {size_label(self.size)}{kind}"
            of_size = f" at model size {size_label(self.proxy_size)}"
        lines = [
            f"what to train next for the decision at {self.step:g} {self.unit}{at_size}: "
            f"runs{of_size} to {self.proxy_step:g} {self.unit}, chosen by the knowledge "
            "gradient over "
            f"{s['candidates']} candidate mixtures ({self.method}, {s['fantasies']} fantasies "
            "each)",
            table.to_string(),
            "(value: expected fall of the chosen mixture's objective, nats, once the runs up to "
            "this one are observed; gain: this run's part of it; change: how often they change "
            "the choice"
            + (
                "; ess: effective posterior draws after the update, median over fantasies)"
                if "ess" in table
                else ")"
            ),
            f"value of stopping now: the expected regret of deciding today is "
            f"{self.value_of_stopping:.2e} nats (no run can be worth more); today's choice: "
            + ", ".join(f"{d} {100 * v:.1f} %" for d, v in self.decision.items()),
        ]
        lines.append(
            f"the {len(self.proposals)} proposed run(s) are expected to recover "
            f"{100 * self.recovered:.0f} % of that regret"
        )
        if self.run_luck_sd:
            ratio = self.value_of_stopping / self.run_luck_sd
            lines.append(
                f"for scale: one proxy run's own luck (its run offsets and checkpoint noise) "
                f"moves its objective by sd {self.run_luck_sd:.2e} nats; the regret of deciding "
                f"today is {ratio:.2g} of that"
                + (
                    ": a better-informed choice would gain less than a tenth of what luck moves "
                    "one run"
                    if ratio < 0.1
                    else ""
                )
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "step": self.step,
            "proxy_step": self.proxy_step,
            "unit": self.unit,
            "size": self.size,
            "proxy_size": self.proxy_size,
            "size_kind": self.size_kind or None,
            "value_of_stopping": self.value_of_stopping,
            "run_luck_sd": self.run_luck_sd,
            "decision": self.decision.to_dict(),
            "proposals": json.loads(self.proposals.to_json(orient="records")),
            "settings": self.settings,
            "notes": list(self.notes),
        }


def random_candidates(
    train: Sequence[str],
    bounds: Bounds,
    n: int,
    rng: np.random.Generator,
    min_share: float = 0.0,
) -> np.ndarray:
    """``n`` mixtures drawn uniformly on the simplex (Dirichlet(1), RegMix's sampler) within
    ``bounds`` and with every free share at least ``min_share``; fixed shares are set, the free
    ones scaled to the rest.

    Raises a :class:`~bimix_bayes.data.table.DataError` when the bounds leave too little room
    to find ``n`` such mixtures.

    Examples
    --------
    >>> from bimix_bayes.decision.constraints import MixtureConstraints
    >>> b = MixtureConstraints(upper={"a": 0.2}).bounds(["a", "b", "c"])
    >>> m = random_candidates(["a", "b", "c"], b, 50, np.random.default_rng(0))
    >>> m.shape, bool((m[:, 0] <= 0.2).all()), bool(np.allclose(m.sum(axis=1), 1))
    ((50, 3), True, True)
    """
    lower, upper = np.asarray(bounds.lower, float), np.asarray(bounds.upper, float)
    fixed = np.isclose(lower, upper)
    free_total = 1.0 - lower[fixed].sum()
    kept: list[np.ndarray] = []
    for _ in range(50):
        raw = rng.dirichlet(np.ones(int((~fixed).sum())), size=max(4 * n, 1000))
        shares = np.empty((len(raw), len(train)))
        shares[:, fixed] = lower[fixed]
        shares[:, ~fixed] = free_total * raw
        ok = np.all((shares >= lower - 1e-12) & (shares <= upper + 1e-12), axis=1)
        ok &= np.all(shares[:, ~fixed] >= min_share, axis=1)
        kept.append(shares[ok])
        if sum(len(k) for k in kept) >= n:
            return np.concatenate(kept)[:n]
    raise DataError(
        f"the constraints leave too little room: fewer than {n} of "
        f"{50 * max(4 * n, 1000)} random mixtures satisfy them; pass --candidates FILE with "
        "the mixtures you could train"
    )


def _run_covariance(posterior, draws: np.ndarray, x_proxy: float) -> np.ndarray:
    """Per draw, the covariance over domains of a new run's log loss at the proxy step:
    run offsets (and slopes, times ``x_p^2``), in a fit of several sizes the run's own luck at
    its size (:mod:`~bimix_bayes.bayes.run_size_offsets`), plus checkpoint noise, correlated
    across domains as the fit measured it (:mod:`~bimix_bayes.bayes.checkpoint_noise`).
    ``(draws, D, D)``."""

    def flat(name: str) -> np.ndarray:
        a = posterior[name].transpose("chain", "draw", "domain").to_numpy()
        return a.reshape(-1, a.shape[-1])[draws]

    sigma = flat("sigma")
    n_dom = sigma.shape[1]
    if "run_corr" in posterior:
        l_u, l_v = effect_factors(posterior)
        l_u = l_u.reshape(-1, n_dom, n_dom)[draws]
        cov = l_u @ np.swapaxes(l_u, -1, -2)
        if l_v is not None:
            l_v = l_v.reshape(-1, n_dom, n_dom)[draws]
            cov = cov + x_proxy**2 * (l_v @ np.swapaxes(l_v, -1, -2))
    else:
        tau = flat("tau") if "tau" in posterior else np.zeros_like(sigma)
        corr = stored_residual_correlation(posterior)  # the fitted runs' residual correlation
        cov = tau[:, :, None] * (np.eye(n_dom) if corr is None else corr) * tau[:, None, :]
        if "kappa" in posterior:
            cov = cov + np.einsum("di,ij->dij", x_proxy**2 * flat("kappa") ** 2, np.eye(n_dom))
    by_size = stored_run_size_offsets(posterior)  # a new (mixture, size) pair: its own luck
    if by_size is not None:
        cov = cov + by_size.covariance
    noise_var = fit_noise_variance(posterior, np.array([x_proxy]))  # noise falling with step
    if noise_var is not None:
        sigma = sigma * np.sqrt(noise_var.to_numpy()[:, :, 0].reshape(-1, n_dom)[draws])
    noise_corr = stored_noise_correlation(posterior, n_dom)  # one checkpoint, all its domains
    noise_corr = np.eye(n_dom) if noise_corr is None else noise_corr
    return cov + sigma[:, :, None] * noise_corr * sigma[:, None, :]


@dataclass(frozen=True)
class _Observation:
    """What a fantasy run shows and how likely it is under each draw.

    The Gaussian log density ``-(y - mu)^T P (y - mu) / 2 - log det(L)`` is expanded as
    ``y^T P y - 2 y^T (P mu) + mu^T P mu`` so that, for one candidate and all fantasies, it is
    two matrix products over the draws (``P mu`` and ``mu^T P mu`` precomputed).
    """

    mean: np.ndarray  # (candidates, draws, D): law log loss at the proxy step
    chol: np.ndarray  # (draws, D, D): Cholesky factor of the new run's covariance
    precision: np.ndarray  # (draws, D * D): its inverse, flattened
    precision_mean: np.ndarray  # (candidates, D, draws): P mu
    quad_mean: np.ndarray  # (candidates, draws): mu^T P mu
    half_logdet: np.ndarray  # (draws,)

    @classmethod
    def build(cls, mean: np.ndarray, cov: np.ndarray) -> _Observation:
        """From the law's means ``(draws, candidates, D)`` and covariances ``(draws, D, D)``."""
        scale = np.einsum("dii->di", cov).max(axis=-1)
        chol = np.linalg.cholesky(cov + 1e-12 * scale[:, None, None] * np.eye(cov.shape[-1]))
        chol_inv = np.linalg.inv(chol)
        precision = np.swapaxes(chol_inv, -1, -2) @ chol_inv
        precision_mean = np.einsum("dij,dcj->cid", precision, mean, optimize=True)
        return cls(
            mean=np.ascontiguousarray(np.swapaxes(mean, 0, 1)),
            chol=chol,
            precision=precision.reshape(len(precision), -1),
            precision_mean=np.ascontiguousarray(precision_mean),
            quad_mean=np.einsum("dci,cid->cd", mean, precision_mean),
            half_logdet=np.log(np.einsum("dii->di", chol)).sum(axis=-1),
        )

    def fantasies(self, candidates: np.ndarray, truth: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``y`` ``(B, F, D)`` of each of ``candidates`` (B,) for fantasies whose true draws
        are ``truth`` (F,), noise ``z`` (F, D) shared by the candidates."""
        return self.mean[candidates][:, truth] + np.einsum("fij,fj->fi", self.chol[truth], z)

    def log_likelihood(self, candidates: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``log p(y_bf | theta_d)`` up to a constant: ``(B, F, draws)``."""
        b, f, d = y.shape
        outer = (y[..., :, None] * y[..., None, :]).reshape(b * f, d * d)
        quad = (outer @ self.precision.T).reshape(b, f, -1)
        quad -= 2.0 * (y @ self.precision_mean[candidates])
        return -0.5 * (quad + self.quad_mean[candidates][:, None]) - self.half_logdet


def _observation(
    idata, data_step: float, train, candidates, draws, size: float | None = None
) -> _Observation:
    """The observation model of a new run at ``data_step`` (and model ``size``, for a fit of
    several sizes) for every candidate."""
    surface = LossSurface.from_idata(idata, data_step, size)
    cols = [train.index(c) for c in surface.columns]
    mean = surface.log_losses(candidates[:, cols])[draws]  # (draws, C, D)
    x_proxy = float(fit_step_covariates(idata.attrs, [data_step])[0][0])
    return _Observation.build(mean, _run_covariance(idata.posterior, draws, x_proxy))


def _normalised(log_w: np.ndarray) -> np.ndarray:
    """Importance weights from log weights (last axis), in float32 (their precision is ample
    for weights that multiply loss differences)."""
    w = np.exp((log_w - log_w.max(axis=-1, keepdims=True)).astype(np.float32))
    return w / w.sum(axis=-1, keepdims=True)


def _knowledge_gradient(weights: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """Per fantasy: ``E[O(m0) | y] - min_m E[O(m) | y] = -min_m E[O(m) - O(m0) | y]``, from
    weights ``(..., F, draws)`` and ``relative = O - O(m0)`` ``(draws, M)`` (zero in ``m0``'s
    column): ``(..., F)``. Differences of nearly equal losses keep their precision in float32,
    which halves the time of the product."""
    lead = weights.shape[:-1]
    flat = weights.reshape(-1, weights.shape[-1])  # one matrix product, not one per batch
    return -(flat @ relative).min(axis=-1).reshape(lead)


def propose_next_runs(
    idata: az.InferenceData,
    step: float | str,
    *,
    batch: int = 1,
    proxy_step: float | str | None = None,
    candidates: pd.DataFrame | None = None,
    constraints: MixtureConstraints | None = None,
    weights: Mapping[str, float] | None = None,
    domains: Sequence[str] | None = None,
    within_design: bool = False,
    n_candidates: int = 1000,
    min_share: float = 0.02,
    n_fantasies: int | None = None,
    max_draws: int = 4000,
    update: str = "reweight",
    size: float | None = None,
    proxy_size: float | None = None,
    seed: int = 0,
) -> NextRuns:
    """Propose the ``batch`` proxy runs whose results are worth most to the mixture decision.

    Parameters
    ----------
    idata
        A fit.
    step
        The target step (or tokens) of the decision, as in
        :func:`~bimix_bayes.decision.recommend.optimize` (objective: expected loss).
    batch
        How many runs to propose (chosen greedily, each given the earlier ones).
    proxy_step
        How long the proposed runs would train (default: the longest fitted run's last step).
    candidates
        The mixtures that could be trained (one row each, a column per training domain);
        default: ``n_candidates`` random mixtures within the constraints. They are also the
        decision set (with today's optimum added).
    constraints
        Bounds and fixed shares, for the decision and the random candidates.
    weights, domains
        The objective's domain weights and counted domains (as ``optimize``).
    within_design
        Keep the decision and the random candidates within the fitted runs' share range (as
        ``optimize``).
    n_candidates, min_share
        How many random candidates, and the least share of each free domain in them (a
        run at a near-zero share mostly tests the law where it is extrapolated furthest).
    n_fantasies, max_draws
        Fantasies per candidate (default 64 under reweighting, 512 under the linear update),
        and posterior draws used (evenly thinned).
    size, proxy_size
        For a fit of several model sizes: the target model's size (the decision is made
        there, as in ``optimize``; required) and the fitted size the proposed runs would be
        trained at (default: the smallest). Run it once per proxy size to weigh a run's
        value against its cost.
    update
        How a fantasy run moves the posterior: ``"reweight"`` (default: importance
        reweighting of the draws by the run's likelihood, exact in the limit of many draws;
        one informative run can leave few effective draws, reported as ``ess``) or
        ``"linear"`` (the runs' log losses and the objectives jointly Gaussian over the draws,
        a Kalman update: every draw kept, but it moves the expected objectives about half as
        far as a refit: ``benchmarks/next_run_update.py``).
    seed
        Seed of the candidates, the thinning and the fantasies.

    Returns
    -------
    NextRuns
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if update not in UPDATES:
        raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {update!r}")
    size, proxy_size = size_count(size), size_count(proxy_size, "proxy_size")
    sizes = fitted_sizes(idata)
    if sizes and proxy_size is None:
        proxy_size = sizes[0]  # the cheapest proxy
    elif proxy_size is not None and not sizes:
        raise ValueError(
            "--proxy-size needs a fit of data with model sizes (--size-col); this fit has none"
        )
    elif proxy_size is not None and not same_size(np.asarray(sizes), proxy_size).any():
        raise ValueError(
            f"the proxy size {proxy_size:g} is not a fitted size; choose one of "
            + ", ".join(size_label(v) for v in sizes)
            + " (a run at a size never trained cannot be simulated from the fit's noise)"
        )
    if proxy_size is not None:  # the fitted size meant (labels keep 4 significant digits)
        proxy_size = min(sizes, key=lambda v: abs(np.log(v / float(proxy_size))))
    step = step_count(step)
    diag, surface, data, w = prepare(idata, step, weights, domains, size)
    train = list(surface.columns)
    constraints = constraints or MixtureConstraints()
    if data.volume == "tokens":
        constraints = constraints.with_total_tokens(step)
    if within_design:
        constraints = constraints.within_design(data.mixtures.loc[list(data.runs), train])
    bounds = constraints.bounds(train)
    rng = np.random.default_rng(seed)
    if candidates is None:
        pool = random_candidates(train, bounds, n_candidates, rng, min_share)
        names = [f"candidate {i + 1}" for i in range(len(pool))]
    else:  # every evaluation domain's loss must be finite: its share too, under a power law
        what = mixtures_words(candidates, "the candidate mixtures")
        every_row = np.ones(len(surface.domains))
        frame = candidate_shares(
            mixture_frame(candidates, what),
            train,
            surface.counted_columns(every_row, power_law_only=True),
            what,
            allow_zero=surface.finite_at_zero,
        )
        if len(frame) == 0:
            raise DataError(f"{what}: the table holds no mixture")
        pool, names = frame.to_numpy(), [str(n) for n in frame.index]
    # the decision set: the candidates, each draw's own optimum (what could become best once
    # more is known) and today's optimum
    optimum = solve(surface, w, "mean", bounds).shares
    optima = per_draw_optima(surface, w, bounds)
    optima = optima[np.unique(np.linspace(0, len(optima) - 1, min(200, len(optima))).astype(int))]
    decision_set = np.vstack([pool, optima, optimum])
    n_all = surface.n_draws
    draws = np.unique(np.linspace(0, n_all - 1, min(max_draws, n_all)).round().astype(int))
    objective = _objective(surface, w, decision_set, draws)  # (draws, M)
    m0 = int(np.argmin(objective.mean(axis=0)))
    regret = float((objective[:, m0] - objective.min(axis=1)).mean())
    today = decision_set[m0]
    contenders = _contenders(objective, m0)
    # relative to today's choice, in the fast layout for weights @ it
    relative = np.asfortranarray(objective[:, contenders] - objective[:, [m0]], np.float32)
    longest = _longest_last_step(data, proxy_size)
    proxy = step_count(proxy_step, "proxy_step") if proxy_step is not None else longest
    obs = _observation(idata, proxy, train, pool, draws, proxy_size)
    if update == "reweight":
        fantasies = 64 if n_fantasies is None else int(n_fantasies)
        rows = _greedy_reweighted(obs, relative, batch, fantasies, rng)
    else:
        fantasies = 512 if n_fantasies is None else int(n_fantasies)
        rows = _greedy_linear(obs, relative, batch, fantasies, rng)
    for row in rows:
        c = row.pop("candidate")
        row.update({"mixture": names[c], **dict(zip(train, pool[c], strict=True))})
    columns = ["mixture", *train, "value", "gain", "value_se", "p_change", "ess"]
    proposals = pd.DataFrame(rows)[columns].set_index("mixture")
    notes = []
    if spec_from_idata(idata)["likelihood"]["family"] == "student_t":
        notes.append(
            "the fit's likelihood is Student-t; a fantasy run is scored with the Normal of the "
            "same scales (heavier tails would move the draws less): the values are approximate"
        )
    if not diag.passed:
        notes.append("the fit FAILED its convergence diagnostics: these values are rough")
    notes += _proposal_notes(proposals, data.mixtures.loc[list(data.runs), train].astype(float))
    if update == "reweight" and proposals["ess"].min() < 50:
        notes.append(
            "after some fantasy updates fewer than 50 effective draws remain: the values are "
            "noisy; refit with more draws (--draws), or use the linear update (`bimix next "
            "--update linear`: every draw kept, values about half a refit's)"
        )
    if proxy > longest:
        notes.append(
            f"the proxy step {proxy:g} is beyond every fitted run: a fantasy run's loss there "
            "is itself an extrapolation"
        )
    at = min(proxy, longest)
    luck = _run_luck_sd(idata, today, train, at, surface.domains, w, proxy_size)
    if luck is None:  # a zero share the law cannot forecast: a run's luck at the design's centre
        centre = data.mixtures.loc[list(data.runs), train].astype(float).mean().to_numpy()
        luck = _run_luck_sd(idata, centre, train, at, surface.domains, w, proxy_size)
    if luck is None:
        notes.append("no yardstick: one run's luck could not be forecast at today's choice")
    return NextRuns(
        proposals=proposals,
        value_of_stopping=regret,
        run_luck_sd=luck,
        decision=pd.Series(today, index=train, name="decision"),
        step=float(step),
        proxy_step=proxy,
        unit=data.volume,
        settings={
            "draws": len(draws),
            "posterior_draws": int(n_all),
            "candidates": len(pool),
            "fantasies": fantasies,
            "update": update,
            "seed": int(seed),
        },
        notes=notes,
        size=None if size is None else float(size),
        proxy_size=None if proxy_size is None else float(proxy_size),
        size_kind=str(idata.attrs.get("size_kind", "")) if sizes else "",
    )


def _proposal_notes(proposals: pd.DataFrame, design: pd.DataFrame) -> list[str]:
    """What a reader of the proposals should know: a mixture proposed more than once (one more
    run of it, another seed, is worth more than any other candidate), and one outside the
    fitted runs' shares (its fantasy result is the law extrapolated there)."""
    notes = []
    counts = proposals.index.value_counts(sort=False)
    for name, n in counts[counts > 1].items():
        notes.append(
            f"{name!r} is proposed {n} times: another run of that mixture (a second seed) is "
            "worth more than any other candidate once the first is known"
        )
    for name in counts.index:
        outside = outside_design(proposals.loc[[name], list(design.columns)].iloc[0], design)
        if outside:
            notes.append(
                f"{name!r} lies outside the fitted runs' shares ({'; '.join(outside)}): its "
                "fantasy result is the law extrapolated there (and its value with it); "
                "--within-design keeps the candidates inside"
            )
    return notes


def _greedy_reweighted(
    obs: _Observation,
    relative: np.ndarray,
    batch: int,
    n_fantasies: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Greedy batch by importance reweighting: fantasies draw a posterior draw and ``y`` from
    its likelihood; the draws are reweighted by ``p(y | theta_d)`` (exact under the model, but
    few draws keep weight when one run says much)."""
    truth = rng.integers(0, obs.mean.shape[1], n_fantasies)
    noise = rng.standard_normal((batch, n_fantasies, obs.mean.shape[-1]))
    chunk = 16  # candidates scored together: one matrix product each
    rows = []
    base_log_w = np.zeros((n_fantasies, obs.mean.shape[1]))
    # a fantasy's own draw is left out of its reweighted posterior: it made y, so it would take
    # most of the weight and overstate what the run teaches (with 600 draws it was the heaviest
    # draw in 38 % of fantasies, doubling the values: benchmarks/next_run_regret.py)
    base_log_w[np.arange(n_fantasies), truth] = -np.inf
    previous = 0.0
    for k in range(batch):
        best = None
        for start in range(0, len(obs.mean), chunk):
            cs = np.arange(start, min(start + chunk, len(obs.mean)))
            log_w = base_log_w + obs.log_likelihood(cs, obs.fantasies(cs, truth, noise[k]))
            weights_c = _normalised(log_w)  # (B, F, draws)
            kg = _knowledge_gradient(weights_c, relative)  # (B, F)
            b = int(np.argmax(kg.mean(axis=1)))
            if best is None or kg[b].mean() > best[1].mean():
                best = (int(cs[b]), kg[b], weights_c[b])
        c, kg, weights_c = best
        one = np.array([c])
        base_log_w = base_log_w + obs.log_likelihood(one, obs.fantasies(one, truth, noise[k]))[0]
        rows.append(_row(c, kg, previous, ess=float(np.median(1.0 / (weights_c**2).sum(axis=1)))))
        previous = rows[-1]["value"]
    return rows


def _greedy_linear(
    obs: _Observation,
    relative: np.ndarray,
    batch: int,
    n_fantasies: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Greedy batch by the linear (Gaussian) update: over the posterior draws, the runs' log
    losses ``y`` (law at the proxy step plus the runs' offsets and noise) and the objectives
    ``O`` are taken as jointly Gaussian, so ``E[O | y] = E[O] + C S^-1 (y - E[y])`` with
    ``C = Cov(O, y)`` and ``S = Cov(y)`` (the law's spread over draws plus the mean run
    covariance; runs share the law, not their offsets). Before ``y`` is seen,
    ``y - E[y] = L xi`` with ``S = L L^T``, ``xi ~ N(0, I)``, so the updated means are
    ``E[O] + (L^-1 C^T)^T xi``: every draw keeps its weight however much a run says, which is
    what importance reweighting cannot do with a few hundred draws."""
    n_cand, n_draws, n_dom = obs.mean.shape
    noise_cov = np.einsum("dij,djk->ik", obs.chol, np.swapaxes(obs.chol, -1, -2)) / n_draws
    rel = np.asarray(relative, float)
    mean_rel = rel.mean(axis=0)
    rel_c = np.ascontiguousarray((rel - mean_rel).T) / np.sqrt(n_draws - 1.0)  # (M, draws)
    xi = rng.standard_normal((n_fantasies, batch * n_dom))
    chosen = np.zeros((n_draws, 0))  # centred law log losses of the runs chosen so far
    chunk = 32
    rows = []
    previous = 0.0
    for k in range(batch):
        p = chosen.shape[1]
        cov_pp = chosen.T @ chosen + np.kron(np.eye(k), noise_cov)
        cross_p = rel_c @ chosen  # (M, P)
        best = None
        for start in range(0, n_cand, chunk):
            f = obs.mean[start : start + chunk]
            f = (f - f.mean(axis=1, keepdims=True)) / np.sqrt(n_draws - 1.0)  # (B, draws, D)
            size = len(f)
            cov = np.empty((size, p + n_dom, p + n_dom))
            cov[:, :p, :p] = cov_pp
            cov[:, :p, p:] = np.einsum("np,bnd->bpd", chosen, f, optimize=True)
            cov[:, p:, :p] = np.swapaxes(cov[:, :p, p:], 1, 2)
            cov[:, p:, p:] = np.swapaxes(f, 1, 2) @ f + noise_cov
            cross = np.empty((size, rel_c.shape[0], p + n_dom))
            cross[:, :, :p] = cross_p
            cross[:, :, p:] = rel_c @ f  # (B, M, D)
            gain = np.linalg.solve(np.linalg.cholesky(cov), np.swapaxes(cross, 1, 2))
            updated = mean_rel + xi[:, : p + n_dom] @ gain  # (B, F, M)
            kg = -updated.min(axis=-1)
            b = int(np.argmax(kg.mean(axis=1)))
            if best is None or kg[b].mean() > best[1].mean():
                best = (start + b, kg[b], f[b])
        c, kg, f = best
        chosen = np.hstack([chosen, f])
        rows.append(_row(c, kg, previous, ess=np.nan))
        previous = rows[-1]["value"]
    return rows


def _row(candidate: int, kg: np.ndarray, previous: float, ess: float) -> dict[str, Any]:
    """A proposal's values from its knowledge gradient per fantasy ``kg``."""
    value = float(kg.mean())
    return {
        "candidate": candidate,
        "value": value,
        "gain": value - previous,
        "value_se": float(kg.std(ddof=1) / np.sqrt(len(kg))),
        "p_change": float((kg > 1e-12).mean()),
        "ess": ess,
    }


def _objective(
    surface: LossSurface, w: np.ndarray, mixtures: np.ndarray, draws: np.ndarray, chunk: int = 200
) -> np.ndarray:
    """The weighted loss of each mixture under each of ``draws``: ``(draws, mixtures)``."""
    parts = [
        weighted_loss(surface, w, mixtures[i : i + chunk])[draws]
        for i in range(0, len(mixtures), chunk)
    ]
    return np.concatenate(parts, axis=1)


def _contenders(objective: np.ndarray, m0: int, k: int = 64) -> np.ndarray:
    """The mixtures a run could make the choice: the ``k`` best in expectation and the ``k``
    most often best under a single draw (with today's choice ``m0``). Restricting the
    minimum over the decision set to them keeps each fantasy update a small product."""
    by_mean = np.argsort(objective.mean(axis=0))[:k]
    wins = np.bincount(objective.argmin(axis=1), minlength=objective.shape[1])
    by_wins = np.argsort(-wins)[:k]
    by_wins = by_wins[wins[by_wins] > 0]
    return np.unique(np.concatenate([by_mean, by_wins, [m0]]))


def _run_luck_sd(
    idata: az.InferenceData,
    shares: np.ndarray,
    train: Sequence[str],
    step: float,
    domains: Sequence[str],
    w: np.ndarray,
    size: float | None,
) -> float | None:
    """The sd of one run's objective around its law at ``shares`` (a fresh run's offsets and
    its checkpoint noise; at a fitted step and size, so no error shared by every run enters);
    None when the forecast cannot be drawn there (a zero share under BiMix)."""
    from bimix_bayes.bayes.forecast import forecast_draws

    mixture = pd.DataFrame([shares], columns=list(train), index=["today"])
    weights = {d: float(x) for d, x in zip(domains, w, strict=True) if x > 0}
    with warnings.catch_warnings():  # a forecast of the choice: the decision said its warnings
        warnings.simplefilter("ignore")
        try:
            run, law = (
                forecast_draws(idata, [step], mixtures=mixture, weights=weights, size=size, kind=k)
                for k in ("predictive", "law")
            )
        except (ValueError, DataError):  # a target the forecasts cannot draw: no yardstick
            return None
    luck = (run - law).isel(domain=-1).to_numpy().ravel()  # the weighted mean's last label
    luck = luck[np.isfinite(luck)]
    return float(luck.std()) if luck.size > 1 else None


def _longest_last_step(data, size: float | None = None) -> float:
    """The last step of the longest fitted run (at ``size``, for data with model sizes)."""
    obs = data.observations
    if size is not None:
        obs = obs[np.isclose(obs["size"].to_numpy(float), float(size))]
    return float(obs["step"].max())
