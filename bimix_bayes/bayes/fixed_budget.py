"""BiMix at a fixed training budget, the Bayesian way: a conjugate regression, exact predictive.

At one step the law of each evaluation domain is the line ``log L_d = k_d - alpha_d log r_d``
(:mod:`bimix_bayes.leastsq.fixed_budget`). With Normal noise on log loss and the reference prior
(flat on ``(k, alpha)``, ``1 / sigma^2`` on the variance), the posterior predictive of the log
loss of a new run with design row ``x = (1, log r)`` is Student-t, exactly, without sampling:

* ``n - 2`` degrees of freedom (``n`` fitted runs),
* location ``x' b`` (``b`` the least-squares coefficients),
* scale ``sqrt(s^2 (1 + x' (X'X)^-1 x))``, with ``s^2 = RSS / (n - 2)``.

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
(10, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from bimix_bayes.leastsq.fixed_budget import FixedBudgetLaw, Seed

__all__ = ["FixedBudgetConjugate", "LogStudentT"]


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
    dof: int

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
    """Conjugate Bayesian regression of the fixed-budget law, reference prior, per domain.

    Fitted like :class:`~bimix_bayes.leastsq.fixed_budget.FixedBudgetLaw` (the posterior mean
    of ``(k, -alpha)`` is the least-squares line); the predictive is
    :meth:`predictive`. See the module docstring for the model and an example.
    """

    def predictive(self, mixtures: pd.DataFrame | pd.Series) -> dict[str, LogStudentT]:
        """The exact posterior predictive of a new run of each mixture, per domain.

        Parameters
        ----------
        mixtures
            One row per mixture (its index names it), a column per fitted domain (shares in
            (0, 1]); a Series is one mixture.

        Returns
        -------
        dict of str to LogStudentT
            Per fitted domain, in order.
        """
        return self._predictive(self._shares(mixtures).to_numpy())

    def _predictive(self, shares: np.ndarray) -> dict[str, LogStudentT]:
        out = {}
        for j, domain in enumerate(self.domains_):
            line = self.lines_[domain]
            xs = line.design
            x_new = line.design_at(shares[:, j])
            xtx_inv = np.linalg.pinv(xs.T @ xs)
            s2 = line.rss / line.dof
            scale = np.sqrt(s2 * (1 + np.einsum("ij,jk,ik->i", x_new, xtx_inv, x_new)))
            out[domain] = LogStudentT(loc=x_new @ line.coef, scale=scale, dof=line.dof)
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
        shares = self._shares(mixtures)
        predictive, names = self._predictive(shares.to_numpy()), shares.index
        lpd = np.full(len(points), np.nan)
        for domain, dist in predictive.items():
            sel = (points["domain"] == domain).to_numpy()
            index = names.get_indexer(points.loc[sel, "mixture"])
            lpd[sel] = dist.log_density(points.loc[sel, "loss"], index)
        return lpd
