"""The decision problem a fit poses: its loss surface over the training domains, the domain
weights of the objective, and candidate mixtures checked against them.

Shared by :func:`~bimix_bayes.decision.recommend.optimize` and
:func:`~bimix_bayes.decision.rank.rank`; a fit that failed its convergence diagnostics is said
here, once, with :meth:`~bimix_bayes.bayes.diagnostics.FitDiagnostics.warn_if_failed`.

Examples
--------
>>> import numpy as np
>>> surface = LossSurface(("web",), np.log([[3.0]]), np.array([[0.1]]), 1e4)
>>> extend_surface(surface, ["web", "code"]).domains
('web', 'code')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bimix_bayes.bayes.diagnostics import FitDiagnostics
from bimix_bayes.bayes.persistence import data_from_idata, diagnostics_from_idata
from bimix_bayes.data.table import (
    DataError,
    MixtureData,
    check_known_columns,
    prediction_shares,
)
from bimix_bayes.decision.surface import LossSurface, objective_weights

if TYPE_CHECKING:
    import arviz as az

__all__ = [
    "candidate_shares",
    "extend_surface",
    "outside_design",
    "prepare",
    "training_domains",
]


def training_domains(
    idata: az.InferenceData, surface: LossSurface
) -> tuple[list[str], MixtureData]:
    """The fit's training domains (its mixture columns) and its data.

    Raises
    ------
    DataError
        When an evaluation domain of ``surface`` has no training share.
    """
    data = data_from_idata(idata)
    train = [str(c) for c in data.mixtures.columns]
    missing = [d for d in surface.domains if d not in train]
    if missing and not surface.is_cross:
        raise DataError(
            f"evaluation domain(s) {missing} have no training share in the fitted data; BiMix "
            "maps each evaluation domain to the training domain of the same name"
        )
    if surface.is_cross and list(surface.columns) != train:
        raise DataError(
            f"the fit's training domains {list(surface.columns)} differ from its data's "
            f"mixture columns {train}; the saved fit is inconsistent, refit it"
        )
    return train, data


def extend_surface(surface: LossSurface, domains: Sequence[str]) -> LossSurface:
    """A BiMix surface with one row per training domain (its rows are its columns).

    Training domains without an evaluation domain get a placeholder curve (``log K = alpha =
    0``); they get no weight in the objective, so it is never used. A cross-domain surface is
    returned as it is: its rows are the evaluation domains, its columns the training domains.
    """
    if list(surface.domains) == list(domains) or surface.is_cross:
        return surface
    idx = [surface.domains.index(d) if d in surface.domains else -1 for d in domains]
    take = np.array([max(i, 0) for i in idx])
    has = np.array([i >= 0 for i in idx])
    own = cross = None
    if surface.own is not None:
        own = np.where(has, surface.own[:, take], 0.0)
    if surface.cross is not None:  # its last axis already runs over the training domains
        cross = np.where(has[None, :, None], surface.cross[:, take], 0.0)
    return LossSurface(
        tuple(domains),
        np.where(has, surface.log_k[:, take], 0.0),
        np.where(has, surface.alpha[:, take], 0.0),
        surface.step,
        own=own,
        cross=cross,
        own_index=None if cross is None else np.arange(len(domains)),
    )


def prepare(
    idata: az.InferenceData,
    step: float,
    weights: Mapping[str, float] | None,
    domains: Sequence[str] | None,
    size: float | None = None,
) -> tuple[FitDiagnostics, LossSurface, MixtureData, np.ndarray]:
    """Fit check, the loss surface over training domains, and the domain weights.

    Warns (a :class:`~bimix_bayes.bayes.diagnostics.FitWarning`) when the fit failed its
    convergence diagnostics.

    Parameters
    ----------
    idata
        A fit.
    step
        The target step (or tokens).
    weights, domains
        The objective's domain weights and counted domains (:func:`objective_weights`).
    size
        The model size, for a fit of data with model sizes (:mod:`bimix_bayes.laws.size`).

    Returns
    -------
    diagnostics, surface, data, w
        The fit's diagnostics, its surface (columns: every training domain), its data, and the
        weight of each row of the surface (``surface.domains``): under BiMix one row per
        training domain (0 for those without an evaluation domain), under a cross-domain law
        one per evaluation domain.
    """
    diag = diagnostics_from_idata(idata)
    diag.warn_if_failed("choosing a mixture", stacklevel=4)
    surface = LossSurface.from_idata(idata, step, size)
    train, data = training_domains(idata, surface)
    w_eval = dict(
        zip(surface.domains, objective_weights(surface.domains, weights, domains), strict=True)
    )
    surface = extend_surface(surface, train)
    w = np.array([w_eval.get(d, 0.0) for d in surface.domains])
    return diag, surface, data, w


def candidate_shares(
    mixtures: pd.DataFrame | pd.Series,
    train: Sequence[str],
    counted: np.ndarray,
    what: str,
    *,
    allow_zero: bool = False,
) -> pd.DataFrame:
    """Shares of every training domain; counted domains must lie in (0, 1] (``[0, 1]`` with
    ``allow_zero``, under a law finite at zero shares).

    Parameters
    ----------
    mixtures
        One row per mixture, a column per training domain (a Series is one mixture).
    train, counted
        The training domains and which of them count in the objective
        (:meth:`~bimix_bayes.decision.surface.LossSurface.counted_columns`).
    what
        Names the mixtures in messages (``"the candidate mixtures"``).

    Raises
    ------
    DataError
        When a training domain is missing, a column is not a training domain (it would be
        dropped, leaving shares that sum to less than 1), or a share is out of range.

    Examples
    --------
    >>> candidate_shares(pd.Series({"a": 0.25, "b": 0.75}, name="m"), ["a", "b"],
    ...                  np.array([True, False]), "the mixture")
          a     b
    m  0.25  0.75
    """
    frame = mixtures.to_frame().T if isinstance(mixtures, pd.Series) else mixtures
    missing = [d for d in train if d not in frame.columns]
    if missing:
        by_case = {str(c).lower(): c for c in frame.columns if c not in train}
        near = [f"{by_case[d.lower()]!r} for {d!r}" for d in missing if d.lower() in by_case]
        hint = f" (differ(s) only in case: {', '.join(near)}; rename)" if near else ""
        raise DataError(
            f"{what} lack(s) the training domain(s) {missing}{hint}; columns: "
            f"{list(frame.columns)}; give one share column per training domain of the fit "
            f"({list(train)})"
        )
    counted = [d for d, c in zip(train, counted, strict=True) if c]
    check_known_columns(frame, train, what)
    prediction_shares(frame, counted, allow_zero=allow_zero)  # checks, warns on sums off 1
    shares = frame[list(train)].astype(float)
    if (shares < 0).to_numpy().any():
        raise DataError(f"{what}: shares must be non-negative")
    return shares


def outside_design(mixture: pd.Series, fitted: pd.DataFrame, tol: float = 1e-3) -> list[str]:
    """Each share of ``mixture`` outside the range of the fitted runs' shares, in words.

    Examples
    --------
    >>> fitted = pd.DataFrame({"web": [0.4, 0.6], "code": [0.6, 0.4]})
    >>> outside_design(pd.Series({"web": 0.9, "code": 0.1}), fitted)
    ['web 90.0%, fitted 40.0-60.0%', 'code 10.0%, fitted 40.0-60.0%']
    """
    lo, hi = fitted.min(), fitted.max()
    out = []
    for d, r in mixture.items():
        if r < lo[d] - tol or r > hi[d] + tol:
            out.append(f"{d} {100 * r:.1f}%, fitted {100 * lo[d]:.1f}-{100 * hi[d]:.1f}%")
    return out
