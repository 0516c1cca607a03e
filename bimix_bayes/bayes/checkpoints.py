"""Checkpoint shocks: an error shared by every run evaluated at the same checkpoint of a domain.

Runs of one study are usually trained on the same data order with the same schedule and
evaluated on the same held-out set, so a checkpoint where the loss happens to sit above the law
sits above it for every run. With ``likelihood.checkpoint_sd_scale > 0`` the model adds

    c[d, k] = sd_checkpoint[d] * z[d, k],   z ~ Normal(0, 1),   sd_checkpoint ~ HalfNormal(scale)

to the log loss of every run of domain ``d`` at the ``k``-th distinct fitted step (non-centred,
sampled: the shocks are crossed with the runs, so they cannot be integrated out run by run as
the run effects are; given them, the run effects still are). Without it the model counts ``J``
runs x ``K`` checkpoints as ``J K`` independent pieces of evidence about the curve's shape where
the shared part has only ``K``, and its extrapolations are too sure.

The model is compiled once per number of *slots* (:func:`checkpoint_slots`, a power of two >= 4
at least the number of distinct steps): the shocks of the slots no step uses keep their prior,
which the likelihood never sees (no funnel). A forecast at a fitted step takes that step's
posterior shock; at any other step a fresh draw per posterior draw, shared by every mixture of
the forecast (:func:`forecast_shocks`).

Examples
--------
>>> checkpoint_slots(3), checkpoint_slots(10), checkpoint_slots(16)
(4, 16, 16)
>>> import numpy as np
>>> grid_index = np.array([[0, 1], [3, 4]])  # domain 0 at steps 0, 1; domain 1 at steps 0, 1
>>> slot_index(grid_index, n_grid=3, slots=4).tolist()
[[0, 1], [4, 5]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "CHECKPOINT_DIM",
    "CHECKPOINT_SD",
    "CHECKPOINT_Z",
    "cell_shocks",
    "checkpoint_slots",
    "checkpoint_terms",
    "forecast_shocks",
    "slot_index",
]

CHECKPOINT_SD = "sd_checkpoint"
CHECKPOINT_Z = "checkpoint_z"
CHECKPOINT_DIM = "checkpoint"


def checkpoint_slots(n_grid: int) -> int:
    """The number of shock slots per domain compiled for ``n_grid`` distinct steps: the next
    power of two, at least 4 (so that a few checkpoints more or less reuse the compiled model)."""
    return max(4, 1 << max(0, int(n_grid) - 1).bit_length())


def slot_index(grid_index: np.ndarray, n_grid: int, slots: int) -> np.ndarray:
    """Each cell's position in the flattened (domain x slots) shock table, from its position
    ``grid_index`` in the flattened (domain x ``n_grid``) step grid."""
    domain, step = np.divmod(np.asarray(grid_index), n_grid)
    return domain * slots + step


def _shocks(posterior: xr.Dataset) -> np.ndarray:
    """The shocks ``sd * z`` over (chain, draw, domain, slot)."""
    z = posterior[CHECKPOINT_Z].transpose("chain", "draw", "domain", CHECKPOINT_DIM).to_numpy()
    sd = posterior[CHECKPOINT_SD].transpose("chain", "draw", "domain").to_numpy()
    return z * sd[..., None]


def cell_shocks(
    posterior: xr.Dataset, grid_index: np.ndarray, n_grid: int, sl: tuple[int, slice]
) -> np.ndarray:
    """The shock of every cell of a layout for the draws ``sl`` (``(chain, draw slice)``):
    shaped ``(draws,) + grid_index.shape``."""
    shocks = _shocks(posterior)[sl]
    flat = shocks.reshape(shocks.shape[0], -1)
    return flat[:, slot_index(grid_index, n_grid, shocks.shape[-1])]


def forecast_shocks(
    posterior: xr.Dataset,
    fitted_steps: Sequence[float] | np.ndarray,
    steps: Sequence[float] | np.ndarray,
    rng: Any,
) -> xr.DataArray:
    """The checkpoint shocks of a forecast over (chain, draw, step, domain).

    ``fitted_steps``: the distinct steps of the fit, in the order of its slots (ascending); a
    requested step equal to one of them (relative tolerance 1e-9) takes that slot's posterior
    shock, any other step a fresh ``Normal(0, sd_checkpoint[d]^2)`` per draw and domain, the same
    for every mixture (they are shocks every run shares). ``rng`` draws them over (chain, draw,
    step, domain): a :class:`numpy.random.Generator`, or forecasts'
    :class:`~bimix_bayes.bayes.streams.KeyedStreams` keyed by step (a step's shock then does
    not depend on the other steps asked).

    Examples
    --------
    >>> post = xr.Dataset({
    ...     CHECKPOINT_Z: (("chain", "draw", "domain", CHECKPOINT_DIM), np.ones((1, 2, 1, 4))),
    ...     CHECKPOINT_SD: (("chain", "draw", "domain"), np.full((1, 2, 1), 0.01)),
    ... })
    >>> out = forecast_shocks(post, [100.0, 200.0], [200.0, 400.0], np.random.default_rng(0))
    >>> out.isel(step=0).values.ravel().tolist()  # step 200 was fitted: its posterior shock
    [0.01, 0.01]
    >>> out.dims
    ('chain', 'draw', 'step', 'domain')
    """
    shocks = _shocks(posterior)  # (chain, draw, domain, slot)
    sd = posterior[CHECKPOINT_SD].transpose("chain", "draw", "domain").to_numpy()
    slots = _slot_of(np.asarray(fitted_steps, dtype=float), np.asarray(steps, dtype=float))
    out = np.empty((*sd.shape[:2], len(slots), sd.shape[2]))
    fresh = rng.standard_normal(out.shape)
    for i, slot in enumerate(slots):
        if slot >= 0:
            out[:, :, i, :] = shocks[..., slot]
        else:  # a step the fit never saw: a fresh shock every run shares
            out[:, :, i, :] = sd * fresh[:, :, i, :]
    return xr.DataArray(out, dims=("chain", "draw", "step", "domain"))


def _slot_of(fitted_steps: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Each step's slot among the fitted steps (relative tolerance 1e-9), -1 where none."""
    fitted = np.asarray(fitted_steps, dtype=float)
    close = np.isclose(np.asarray(steps, dtype=float)[:, None], fitted[None, :], rtol=1e-9, atol=0)
    return np.where(close.any(axis=1), close.argmax(axis=1), -1)


def checkpoint_terms(
    posterior: xr.Dataset,
    fitted_steps: Sequence[float] | np.ndarray,
    steps: Sequence[float] | np.ndarray,
    domain_index: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per draw and point (a step and a domain index): the posterior shock where the step is a
    fitted one (else 0) and the variance of a fresh shock where it is not (else 0), shaped
    (chain, draw, point). What an exact predictive density adds to the mean and the variance.

    Examples
    --------
    >>> post = xr.Dataset({
    ...     CHECKPOINT_Z: (("chain", "draw", "domain", CHECKPOINT_DIM), np.ones((1, 1, 2, 4))),
    ...     CHECKPOINT_SD: (("chain", "draw", "domain"), np.array([[[0.1, 0.2]]])),
    ... })
    >>> mean, var = checkpoint_terms(post, [10.0, 20.0], [20.0, 40.0], np.array([1, 0]))
    >>> mean.ravel().round(3).tolist(), var.ravel().round(3).tolist()
    ([0.2, 0.0], [0.0, 0.01])
    """
    shocks = _shocks(posterior)  # (chain, draw, domain, slot)
    sd = posterior[CHECKPOINT_SD].transpose("chain", "draw", "domain").to_numpy()
    slot = _slot_of(np.asarray(fitted_steps, dtype=float), np.asarray(steps, dtype=float))
    dom = np.asarray(domain_index)
    seen = slot >= 0
    mean = np.where(seen, shocks[:, :, dom, np.maximum(slot, 0)], 0.0)
    var = np.where(seen, 0.0, sd[:, :, dom] ** 2)
    return mean, var
