"""Model size as a dimension of every law: how its parameters move with the parameter count.

With data at several model sizes ``N`` (``--size-col``), each per-domain parameter of the step
law and the mixture term gets a power law in ``N`` around a reference size ``N_ref`` (the
geometric mean of the fitted sizes), with ``z = log(N / N_ref)``::

    log_floor(N)     = log_floor     + size_floor     * z     (floor ~ N^size_floor)
    log_reducible(N) = log_reducible + size_reducible * z     (reducible loss at s_ref)
    log_beta(N)      = log_beta      + size_beta      * z     (the step exponent)
    m(r; N)          = m(r) * exp(size_mixture * z)           (the mixture's effect)

so a law's log loss at ``(r, s, N)`` is ``m(r; N) + logaddexp(log_floor(N), log_reducible(N) -
beta(N) x)``. Every law's mixture term is linear in its parameters (``alpha``, ``own``,
``cross``), so scaling the term scales them all: ``size_mixture < 0`` means the mixture matters
less for larger models. The step exponent moves too: each size's runs have their own token
budget and schedule, and least squares on SlimPajama (fit 122M-680M, forecast 937M-2.718B, a
mixture effect shared across sizes) says so: mean relative error 0.72 % without ``size_beta``,
0.54 % with it (2.718B: 1.55 % -> 1.08 %), the error shared by all runs at 2.718B falling from
+1.8 %..-2.2 % to +0.6 %..-1.1 % over its checkpoints.

Why this form: the sizes a team trains its proxies at span a factor of 5-20, where a power law
in ``N`` per parameter is the local form of every published law (Chinchilla's
``E + A N^-a`` floor included), and it keeps the law's own parameters at ``N_ref`` unchanged,
so one definition serves data with and without sizes (``z = 0``).

Examples
--------
>>> import numpy as np
>>> p = {"log_floor": np.array(0.5), "log_reducible": np.array(-1.0), "alpha": np.array(0.1),
...      "beta": np.array(0.6)}
>>> s = {"size_floor": np.array(-0.1), "size_reducible": np.array(0.0),
...      "size_beta": np.array(0.0), "size_mixture": np.array(0.5)}
>>> q = at_size(p, s, np.log(2.0))
>>> round(float(q["log_floor"]), 4), round(float(q["alpha"]), 4)  # 0.5 - 0.1 log 2, 0.1 sqrt 2
(0.4307, 0.1414)
>>> at_size(p, s, 0.0)["alpha"] == p["alpha"]
np.True_
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["MIXTURE_PARAMS", "SIZE_PARAMS", "at_size", "size_reference"]

#: The per-domain size slopes a size-aware fit samples.
SIZE_PARAMS = ("size_floor", "size_reducible", "size_beta", "size_mixture")
#: The law parameters the mixture term is linear in (scaled by ``exp(size_mixture z)``).
MIXTURE_PARAMS = ("alpha", "own", "cross")


def at_size(
    params: Mapping[str, Any],
    size_params: Mapping[str, Any],
    z: Any,
    *,
    math: ModuleType = np,
) -> dict[str, Any]:
    """The law's parameters at ``z = log(N / N_ref)`` (see the module docstring).

    ``params`` and ``size_params`` broadcast against ``z``; ``cross`` has one more (last) axis,
    over training domains. The step exponent is moved as ``beta`` and/or ``log_beta``, whichever
    ``params`` holds.
    """
    out = dict(params)
    out["log_floor"] = params["log_floor"] + size_params["size_floor"] * z
    out["log_reducible"] = params["log_reducible"] + size_params["size_reducible"] * z
    if "log_beta" in params:  # the graph's parametrisation
        out["log_beta"] = params["log_beta"] + size_params["size_beta"] * z
    if "beta" in params:
        out["beta"] = params["beta"] * math.exp(size_params["size_beta"] * z)
    scale = math.exp(size_params["size_mixture"] * z)
    for name in MIXTURE_PARAMS:
        if name in params:
            out[name] = params[name] * (scale[..., None] if name == "cross" else scale)
    return out


def size_reference(sizes: Any) -> float:
    """The reference size ``N_ref``: the geometric mean of the distinct sizes.

    Examples
    --------
    >>> size_reference([1e8, 1e8, 4e8])
    200000000.0
    """
    distinct = np.unique(np.asarray(sizes, dtype=float))
    return float(np.exp(np.log(distinct).mean()))
