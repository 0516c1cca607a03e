"""Every law at a fixed budget, the Bayesian way: a conjugate regression, exact predictive.

At one step every law is a linear regression of the log loss on its design row ``x_d(r)``
(:mod:`bimix_bayes.laws.fixed_budget`; :mod:`bimix_bayes.leastsq.fixed_budget` for the least
squares of the same regressions). Per evaluation domain, with ``n`` fitted runs:

.. math::

    y = X \\theta + \\varepsilon, \\quad \\varepsilon \\sim N(0, \\sigma^2 I), \\quad
    \\theta \\mid \\sigma^2 \\sim N\\!\\left(0, \\frac{\\sigma^2}{\\sigma_0^2} S\\right), \\quad
    \\sigma^2 \\sim \\mathrm{InvGamma}(a_0, a_0 \\sigma_0^2),

a Normal-inverse-gamma prior (:class:`ConjugatePrior`): ``S = diag(s_j^2)`` holds one prior
scale per column, in log loss per unit of the column: ``intercept_scale`` (10, vague),
``own_scale`` for ``-alpha`` / ``-own`` (1) and ``cross_scale`` for every cross effect (0.5,
the hierarchical model's ``cross_sd_scale``). The prior is centred on 0 for every cross effect:
it shrinks toward "every other domain helps alike" (BiMix's assumption), as the hierarchical
model's ``cross ~ Normal(0, sd_cross)`` does; on the centred columns it is the projected prior
of :func:`~bimix_bayes.laws.cross.project_cross`, exactly (under ``effective``, whose
columns are not centred, it is the hierarchical model's unprojected prior). The conjugate form
ties the coefficients' prior sd to the noise sd (a prior on the signal-to-noise ratio): at
``sigma = sigma_0`` (``noise_scale``, 0.05 on log loss) the sds are the scales above. The noise
is per domain (each domain its own ``sigma``). Posterior (exact, no sampling):

* ``Lambda_n = S^-1 sigma_0^2 + X'X``, ``mean = Lambda_n^-1 X'y``,
* ``a_n = a_0 + n / 2``, ``b_n = b_0 + (y'y - mean' Lambda_n mean) / 2``,
* predictive of a new run's log loss at ``x``: Student-t, ``2 a_n`` degrees of freedom,
  location ``x' mean``, scale ``sqrt(b_n / a_n (1 + x' Lambda_n^-1 x))``,
* evidence ``p(y)`` (a multivariate Student-t) in closed form (:func:`conjugate_posterior`).

``cross_scale="evidence"`` chooses the cross effects' scale per domain by the marginal
likelihood (type-II maximum likelihood over a log grid, :data:`EVIDENCE_GRID`): exact here, and
fitted on the training runs only.

With one measurement per run, run offsets and measurement noise cannot be told apart: both are
in ``sigma``. The hierarchical model (:mod:`bimix_bayes.bayes.model`) needs several steps per run.

Examples
--------
>>> from bimix_bayes.data.simulate import simulate_default
>>> from bimix_bayes.leastsq.fixed_budget import at_one_step
>>> model = FixedBudgetConjugate().fit(data := at_one_step(simulate_default(seed=1)))
>>> draws = model.predictive_draws(data.mixtures.iloc[:2], n_draws=1000, seed=0)
>>> draws.shape
(1000, 2, 5)
>>> pred = model.predictive(data.mixtures.iloc[:2])["web"]
>>> pred.dof, bool(abs(np.median(draws[:, 0, 0]) / pred.median()[0] - 1) < 0.01)
(14.0, True)
>>> FixedBudgetConjugate(law="loglinear").fit(data).cross_.shape  # domains x training domains
(5, 5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
from scipy.special import gammaln
from scipy.stats import t as student_t

from bimix_bayes.data.table import MixtureData
from bimix_bayes.laws.registry import DEFAULT_LAW
from bimix_bayes.leastsq.fixed_budget import FixedBudgetLaw, LogLinearFit, Seed, _with_coef

__all__ = [
    "EVIDENCE_GRID",
    "ConjugatePosterior",
    "ConjugatePrior",
    "FixedBudgetConjugate",
    "LogStudentT",
    "conjugate_posterior",
]

#: The cross scales (log loss per unit share) ``cross_scale="evidence"`` chooses among.
EVIDENCE_GRID = tuple(float(v) for v in np.geomspace(1e-3, 1e2, 31))


@dataclass(frozen=True)
class ConjugatePrior:
    """The Normal-inverse-gamma prior of the fixed-budget regressions (module docstring).

    Attributes
    ----------
    cross_scale
        Prior sd of a cross effect at ``sigma = noise_scale`` (log loss per unit share, per
        unit of log effective share under ``effective``; default 0.5, the hierarchical model's
        ``[law] cross_sd_scale``), or ``"evidence"``: chosen per domain by the marginal
        likelihood among :data:`EVIDENCE_GRID`.
    own_scale
        Prior sd of the own-share coefficient (``-alpha`` under the BiMix laws, ``-own`` under
        ``loglinear``), same units.
    intercept_scale
        Prior sd of the intercept ``k`` (log loss; vague).
    noise_scale
        ``sigma_0``: the centre of the noise prior (sd of log loss), ``E[1 / sigma^2] =
        1 / sigma_0^2``.
    noise_shape
        ``a_0`` of the inverse-gamma prior of ``sigma^2`` (1: weak).

    Examples
    --------
    >>> ConjugatePrior().scales(["intercept", "own", "cross"]).tolist()
    [10.0, 1.0, 0.5]
    """

    cross_scale: float | Literal["evidence"] = 0.5
    own_scale: float = 1.0
    intercept_scale: float = 10.0
    noise_scale: float = 0.05
    noise_shape: float = 1.0

    def __post_init__(self) -> None:
        for name in ("own_scale", "intercept_scale", "noise_scale", "noise_shape"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ConjugatePrior.{name} must be > 0, got {getattr(self, name)}")
        if self.cross_scale != "evidence" and not (
            isinstance(self.cross_scale, int | float) and self.cross_scale > 0
        ):
            raise ValueError(
                f"ConjugatePrior.cross_scale must be > 0 or 'evidence', got {self.cross_scale!r}"
            )

    def scales(self, kinds: list[str], cross_scale: float | None = None) -> np.ndarray:
        """The prior sd of each column, by its kind (``intercept``, ``own``, ``cross``)."""
        cross = self.cross_scale if cross_scale is None else cross_scale
        by_kind = {"intercept": self.intercept_scale, "own": self.own_scale, "cross": cross}
        return np.array([float(by_kind[k]) for k in kinds])


@dataclass(frozen=True)
class ConjugatePosterior:
    """The Normal-inverse-gamma posterior of one domain's coefficients.

    ``theta | sigma^2 ~ N(mean, sigma^2 cov)``, ``sigma^2 ~ InvGamma(shape, rate)``;
    ``log_evidence`` is ``log p(y)`` under the prior (nats).
    """

    mean: np.ndarray
    cov: np.ndarray
    shape: float
    rate: float
    log_evidence: float

    @property
    def dof(self) -> float:
        """Degrees of freedom of the Student-t predictive, ``2 a_n``."""
        return 2.0 * self.shape

    def predictive_scale(self, xs: np.ndarray) -> np.ndarray:
        """Scale of the Student-t predictive of a new measurement at the design rows ``xs``."""
        quad = np.einsum("ij,jk,ik->i", xs, self.cov, xs)
        return np.sqrt(self.rate / self.shape * (1.0 + quad))


def conjugate_posterior(
    xs: np.ndarray, ys: np.ndarray, prior_sd: np.ndarray, noise_scale: float, noise_shape: float
) -> ConjugatePosterior:
    """The exact posterior of ``ys = xs theta + N(0, sigma^2)`` under the module's prior.

    Parameters
    ----------
    xs, ys
        ``(n, p)`` design and ``(n,)`` responses.
    prior_sd
        ``(p,)``: each coefficient's prior sd at ``sigma = noise_scale``.
    noise_scale, noise_shape
        ``sigma_0`` and ``a_0`` (``sigma^2 ~ InvGamma(a_0, a_0 sigma_0^2)``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> xs = np.column_stack([np.ones(50), rng.normal(size=50)])
    >>> post = conjugate_posterior(xs, xs @ [1.0, 2.0] + 0.1 * rng.normal(size=50),
    ...                            np.array([10.0, 10.0]), 0.1, 1.0)
    >>> post.mean.round(1).tolist(), round(float(np.sqrt(post.rate / post.shape)), 1)
    ([1.0, 2.0], 0.1)
    """
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    n = len(ys)
    prior_prec = (noise_scale / np.asarray(prior_sd, dtype=float)) ** 2  # diag of V0^-1
    prec = xs.T @ xs + np.diag(prior_prec)
    chol = np.linalg.cholesky(prec)
    mean = np.linalg.solve(prec, xs.T @ ys)
    cov = np.linalg.inv(prec)
    a0, b0 = noise_shape, noise_shape * noise_scale**2
    shape = a0 + n / 2
    rate = b0 + 0.5 * max(float(ys @ ys - mean @ prec @ mean), 0.0)
    log_det_prec = 2.0 * np.sum(np.log(np.diag(chol)))
    log_evidence = (
        -0.5 * n * np.log(2 * np.pi)
        + 0.5 * (np.sum(np.log(prior_prec)) - log_det_prec)
        + a0 * np.log(b0)
        - shape * np.log(rate)
        + gammaln(shape)
        - gammaln(a0)
    )
    return ConjugatePosterior(mean, cov, shape, rate, float(log_evidence))


@dataclass(frozen=True)
class LogStudentT:
    """A loss whose log is Student-t: the predictive of one domain at several mixtures.

    Attributes
    ----------
    loc, scale
        Location and scale of the log loss, one per mixture.
    dof
        Degrees of freedom.

    Examples
    --------
    >>> d = LogStudentT(loc=np.log([2.0]), scale=np.array([0.1]), dof=5)
    >>> d.median().tolist()
    [2.0]
    """

    loc: np.ndarray
    scale: np.ndarray
    dof: float

    def median(self) -> np.ndarray:
        """The predictive median of the loss, ``exp(loc)``."""
        return np.exp(self.loc)

    def draws(self, n_draws: int, rng: np.random.Generator) -> np.ndarray:
        """``(n_draws, mixtures)`` draws of the loss."""
        noise = student_t.rvs(self.dof, size=(n_draws, len(self.loc)), random_state=rng)
        return np.exp(self.loc + self.scale * noise)

    def log_density(self, loss: Any, index: Any) -> np.ndarray:
        """Log density of ``loss`` (nats; the density of the loss, Jacobian ``1 / L`` included)
        under the predictive of the mixtures at positions ``index``."""
        y = np.log(np.asarray(loss, dtype=float))
        i = np.asarray(index, dtype=int)
        return student_t.logpdf(y, self.dof, loc=self.loc[i], scale=self.scale[i]) - y


class FixedBudgetConjugate(FixedBudgetLaw):
    """Conjugate Bayesian regression of a law at a fixed budget, per domain.

    Parameters
    ----------
    law
        ``"bimix"`` (default), ``"bimix_cross"``, ``"loglinear"`` or ``"effective"``
        (:class:`~bimix_bayes.leastsq.fixed_budget.FixedBudgetLaw`).
    prior
        The Normal-inverse-gamma prior (:class:`ConjugatePrior`; default: its defaults).

    Attributes
    ----------
    posterior_ : dict of str to ConjugatePosterior
        Per domain. ``lines_`` hold the posterior means as coefficients; ``params_`` adds
        ``cross_scale`` (the scale used, the chosen one under ``"evidence"``) and
        ``log_evidence``.

    Examples
    --------
    See the module docstring.
    """

    def __init__(self, law: str = DEFAULT_LAW, prior: ConjugatePrior | None = None) -> None:
        self.law = law
        self.prior = prior

    def _fit_domain(self, domain: str, line: LogLinearFit, kinds: list[str]) -> LogLinearFit:
        prior = self.prior if self.prior is not None else ConjugatePrior()
        grid = [prior.cross_scale] if prior.cross_scale != "evidence" else list(EVIDENCE_GRID)
        if "cross" not in kinds:
            grid = grid[:1] if prior.cross_scale != "evidence" else [np.nan]
        best = None
        for scale in grid:
            post = conjugate_posterior(
                line.design,
                line.log_loss,
                prior.scales(kinds, cross_scale=1.0 if np.isnan(scale) else scale),
                prior.noise_scale,
                prior.noise_shape,
            )
            if best is None or post.log_evidence > best[1].log_evidence:
                best = (float(scale), post)
        self._cross_scales[domain], self.posterior_[domain] = best
        return _with_coef(line, best[1].mean)

    def fit(self, data: MixtureData) -> Self:
        """Fit the exact posterior of every domain of ``data`` (every observation at one step).

        Raises
        ------
        ZeroShareError
            A BiMix law and a zero own share (the message names ``--law loglinear``).
        """
        self.posterior_: dict[str, ConjugatePosterior] = {}
        self._cross_scales: dict[str, float] = {}
        super().fit(data)
        self.params_ = self.params_.assign(
            cross_scale=[self._cross_scales[d] for d in self.domains_],
            log_evidence=[self.posterior_[d].log_evidence for d in self.domains_],
        )
        return self

    def predictive(self, mixtures: pd.DataFrame | pd.Series) -> dict[str, LogStudentT]:
        """The exact posterior predictive of a new run of each mixture, per domain.

        Parameters
        ----------
        mixtures
            One row per mixture (its index names it), the columns
            :meth:`~bimix_bayes.leastsq.fixed_budget.FixedBudgetLaw.predict` reads; a Series is
            one mixture.

        Returns
        -------
        dict of str to LogStudentT
            Per fitted domain, in order.
        """
        return self._predictive(self._shares(mixtures))

    def _predictive(self, shares: np.ndarray) -> dict[str, LogStudentT]:
        out = {}
        for domain, xs in self._designs(shares).items():
            post = self.posterior_[domain]
            out[domain] = LogStudentT(
                loc=xs @ post.mean, scale=post.predictive_scale(xs), dof=post.dof
            )
        return out

    def predictive_draws(
        self, mixtures: pd.DataFrame | pd.Series, n_draws: int = 400, seed: Seed = 0
    ) -> np.ndarray:
        """Draws of a new run's loss: ``(n_draws, mixtures, domains)`` (domains in order).

        ``seed`` is a seed or a :class:`numpy.random.Generator` (advanced, not copied).
        """
        rng = np.random.default_rng(seed)
        predictive = self.predictive(mixtures)
        return np.stack([predictive[d].draws(n_draws, rng) for d in self.domains_], axis=-1)

    def log_predictive_density(
        self, points: pd.DataFrame, mixtures: pd.DataFrame | pd.Series
    ) -> np.ndarray:
        """Log predictive density of observed losses, per point (NaN for an unfitted domain).

        Parameters
        ----------
        points
            Columns ``mixture`` (a name in ``mixtures``' index), ``domain`` and ``loss`` (> 0).
        mixtures
            The shares of the mixtures named in ``points``.

        Returns
        -------
        numpy.ndarray
            One log density per row (nats, density of the loss itself).

        Examples
        --------
        >>> from bimix_bayes.data.simulate import simulate_default
        >>> from bimix_bayes.leastsq.fixed_budget import at_one_step
        >>> data = at_one_step(simulate_default(seed=2))
        >>> model = FixedBudgetConjugate().fit(data)
        >>> pts = pd.DataFrame({"mixture": "mix003", "domain": ["web", "other"], "loss": 3.0})
        >>> np.isfinite(model.log_predictive_density(pts, data.mixtures)).tolist()
        [True, False]
        """
        predictive, names = self._predictive(self._shares(mixtures)), self._names(mixtures)
        lpd = np.full(len(points), np.nan)
        for domain, dist in predictive.items():
            sel = (points["domain"] == domain).to_numpy()
            index = names.get_indexer(points.loc[sel, "mixture"])
            lpd[sel] = dist.log_density(points.loc[sel, "loss"], index)
        return lpd
