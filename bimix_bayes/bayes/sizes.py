"""What a fit knows about model sizes: which it was fitted on, and where a forecast size lies.

A fit of data with a model-size dimension (``--size-col``; :mod:`bimix_bayes.laws.size`) stores
its reference size ``size_ref`` and what the sizes count (``size_kind``) in its attributes, and
every observation's size in ``constant_data``. Forecasts and decisions at a size go through
:func:`size_offset`, which refuses a size the fit cannot use and warns when it is far outside
the fitted sizes.

Examples
--------
>>> fitted_sizes(idata)  # a fit without sizes
()
>>> size_offset(idata, None, None) is None
True
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import arviz as az

    from bimix_bayes.data.table import MixtureData

__all__ = [
    "SIZE_EXTRAPOLATION_LIMIT",
    "SizeExtrapolationWarning",
    "fitted_sizes",
    "same_size",
    "size_doublings_outside",
    "size_label",
    "size_offset",
]

#: Doublings of the size beyond the fitted sizes after which a forecast is flagged as a guess.
SIZE_EXTRAPOLATION_LIMIT = 3.0


class SizeExtrapolationWarning(UserWarning):
    """A forecast at a model size far outside the fitted sizes."""


def fitted_sizes(idata: az.InferenceData) -> tuple[float, ...]:
    """The distinct model sizes a fit was made on, ascending; empty for a fit without sizes."""
    const = getattr(idata, "constant_data", None)
    if const is None or "size" not in const:
        return ()
    return tuple(float(v) for v in np.unique(const["size"].to_numpy()))


def same_size(values: np.ndarray, size: float) -> np.ndarray:
    """Which of ``values`` are the model size ``size`` (relative tolerance 1e-3: size labels
    keep four significant digits, so ``--size 1.235B`` names a fit's 1,234,567,890).

    Examples
    --------
    >>> same_size(np.array([1.234567890e9, 2.7e9]), 1.235e9).tolist()
    [True, False]
    """
    return np.isclose(np.asarray(values, dtype=float), float(size), rtol=1e-3, atol=0.0)


def size_doublings_outside(idata: az.InferenceData, size: float | None) -> float:
    """How many doublings ``size`` lies outside the fitted sizes (0 inside or without sizes).

    The shared error of a forecast at a size not trained grows with it (``[discrepancy]
    size_sd_per_doubling``, :mod:`bimix_bayes.bayes.discrepancy`).
    """
    sizes = fitted_sizes(idata)
    if not sizes or size is None:
        return 0.0
    return float(max(np.log2(size / sizes[-1]), np.log2(sizes[0] / size), 0.0))


def size_label(size: float) -> str:
    """``1.22e8`` -> ``"122M"`` (the loaders' group label).

    Examples
    --------
    >>> size_label(2.718e9), size_label(122e6)
    ('2.718B', '122M')
    """
    from bimix_bayes.data.loaders import format_group

    return format_group(size)


def size_offset(
    idata: az.InferenceData, data: MixtureData | None, size: float | None
) -> float | None:
    """``z = log(size / size_ref)`` of a forecast at ``size``; None for a fit without sizes.

    Raises
    ------
    ValueError
        A fit with sizes and no ``size`` (naming the fitted sizes), a size given to a fit
        without sizes, or a size that is not a positive number.
    """
    sizes = fitted_sizes(idata)
    if not sizes:
        if size is not None:
            raise ValueError(
                f"size {size:g} given, but this fit has no model-size dimension (it was fitted "
                "on one size); refit with --size-col naming the size column to forecast other "
                "sizes"
            )
        return None
    listed = ", ".join(size_label(s) for s in sizes)
    kind = idata.attrs.get("size_kind", "parameters")
    if size is None:
        raise ValueError(
            f"this fit spans model sizes {listed} ({kind}): say which size to forecast "
            "(size=... / --size), e.g. the largest fitted one or your target model's"
        )
    size = float(size)
    if not (np.isfinite(size) and size > 0):
        raise ValueError(f"size must be a positive number of parameters, got {size!r}")
    doublings = max(np.log2(size / sizes[-1]), np.log2(sizes[0] / size), 0.0)
    if doublings > SIZE_EXTRAPOLATION_LIMIT:
        warnings.warn(
            f"forecast at size {size_label(size)} is {2**doublings:.3g}x outside the fitted "
            f"sizes ({listed}); beyond {2**SIZE_EXTRAPOLATION_LIMIT:.0f}x no backtest supports "
            "the size slopes: treat it as a guess",
            SizeExtrapolationWarning,
            stacklevel=4,
        )
    return float(np.log(size / float(idata.attrs["size_ref"])))
