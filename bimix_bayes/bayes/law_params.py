"""Which law a spec or a fit uses, and its parameters as arrays ready to evaluate.

The law of a spec is ``[law] name``; a fit records it in its spec and in the posterior's
``attrs["law"]`` (fits saved before laws were selectable are BiMix). :func:`posterior_params`
returns the law's parameters per posterior draw and domain, :func:`gather` picks them per curve
or target, so every consumer evaluates ``law.log_loss`` the same way.

Examples
--------
>>> from bimix_bayes.bayes.spec import merge_spec
>>> spec_law(merge_spec({"law": {"name": "loglinear"}})).name
'loglinear'
>>> spec_law(merge_spec({"law": {"name": "bimix"}})).params
('log_floor', 'log_reducible', 'alpha', 'beta')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from bimix_bayes.laws.drift import ALPHA_DRIFT
from bimix_bayes.laws.registry import DEFAULT_LAW, Law, get_law
from bimix_bayes.laws.schedule import ANNEAL, LRSchedule, step_covariates
from bimix_bayes.laws.size import SIZE_PARAMS

__all__ = [
    "SCHEDULE_ATTR",
    "TRAIN_DIM",
    "fit_schedule",
    "fit_step_covariates",
    "gather",
    "posterior_law",
    "posterior_params",
    "spec_law",
]

#: The posterior's dimension of a parameter's training-domain axis (``cross``).
TRAIN_DIM = "training_domain"
#: The attribute of a fit that holds its learning-rate schedule (JSON), when it has one.
SCHEDULE_ATTR = "lr_schedule"


def spec_law(spec: Mapping[str, Any]) -> Law:
    """The law a spec names (BiMix when it names none)."""
    return get_law(spec.get("law", {}).get("name", DEFAULT_LAW))


def posterior_law(posterior: xr.Dataset) -> Law:
    """The law of a fit's posterior (``attrs["law"]``; BiMix for fits made before laws)."""
    return get_law(str(posterior.attrs.get("law", DEFAULT_LAW)))


def posterior_params(posterior: xr.Dataset, law: Law | None = None) -> dict[str, np.ndarray]:
    """The law's parameters as arrays ``(chain, draw, domain)`` (``cross``: ``(..., training)``),
    the size slopes of a fit of data with model sizes (:mod:`bimix_bayes.laws.size`), the
    annealing effect of a fit with a learning-rate schedule (:mod:`bimix_bayes.laws.schedule`)
    and the exponent's drift of a fit with ``[law] alpha_drift`` (:mod:`bimix_bayes.laws.drift`).

    Works on prior draws too: a positive parameter missing from ``posterior`` is the exponential
    of its ``log_`` population variable.

    Examples
    --------
    >>> p = posterior_params(idata.posterior)
    >>> {"alpha", "beta", "log_floor", "log_reducible"} <= set(p)
    True
    >>> p["alpha"].shape[-1] == idata.posterior.sizes["domain"]
    True
    """
    law = law or posterior_law(posterior)
    out = {}
    # model sizes (laws.size), a schedule (laws.schedule), the exponent's drift (laws.drift)
    for name in (*SIZE_PARAMS, ANNEAL, ALPHA_DRIFT):
        if name in posterior:
            out[name] = posterior[name].transpose("chain", "draw", "domain").to_numpy()
    for name in law.params:
        if name == "cross":
            out[name] = posterior[name].transpose("chain", "draw", "domain", TRAIN_DIM).to_numpy()
        elif name in posterior:
            out[name] = posterior[name].transpose("chain", "draw", "domain").to_numpy()
        else:  # prior draws hold the logs of positive parameters (log_alpha, log_beta...)
            out[name] = np.exp(posterior[f"log_{name}"].transpose("chain", "draw", "domain"))
            out[name] = out[name].to_numpy()
    return out


def gather(params: Mapping[str, np.ndarray], domain_index: np.ndarray) -> dict[str, np.ndarray]:
    """Each parameter at the given domains: the domain axis (third) becomes ``domain_index``'s.

    Examples
    --------
    >>> p = {"beta": np.arange(6.0).reshape(1, 2, 3)}
    >>> gather(p, np.array([2, 2, 0]))["beta"].tolist()
    [[[2.0, 2.0, 0.0], [5.0, 5.0, 3.0]]]
    """
    return {k: np.take(v, domain_index, axis=2) for k, v in params.items()}


def fit_schedule(attrs: Mapping[str, Any]) -> LRSchedule | None:
    """The learning-rate schedule a fit was made with (``idata.attrs``), or None."""
    text = attrs.get(SCHEDULE_ATTR)
    return LRSchedule.from_json(str(text)) if text else None


def fit_step_covariates(
    attrs: Mapping[str, Any], steps: Any
) -> tuple[np.ndarray, np.ndarray | None]:
    """The step covariates ``(x, u)`` of a fit (``idata.attrs``) at ``steps``: the law's
    ``x = log(s / s_ref)``, or through the fit's schedule (:mod:`bimix_bayes.laws.schedule`).

    Examples
    --------
    >>> x, u = fit_step_covariates({"s_ref": 100.0}, [1000.0])
    >>> x.round(4).tolist(), u
    ([2.3026], None)
    """
    return step_covariates(steps, float(attrs["s_ref"]), fit_schedule(attrs))
