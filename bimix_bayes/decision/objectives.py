"""What "best mixture" means: a summary of the posterior distribution of the loss.

The decision module scores a mixture by its loss under every posterior draw; an
:class:`Objective` turns those draws into one number to minimise:

* ``mean``: the expected posterior loss (risk-neutral, the default);
* ``quantile:q``: the q-quantile, e.g. ``quantile:0.9`` = "90 % sure the loss is below this",
  estimated by Harrell and Davis (1982): a weighted average of all order statistics with Beta
  weights, smoother than numpy's two-point interpolation and so fit for a gradient solver;
* ``cvar:q``: the conditional value at risk, the mean of the worst ``1 - q`` share of draws
  (convex, so a safer target for optimisation than a quantile).

Each is a weighted sum of the draws, with weights that depend on the draws' order
(:meth:`Objective.draw_weights`); its gradient is the same weighted sum of the per-draw
gradients.

Examples
--------
>>> import numpy as np
>>> v = np.arange(1.0, 11.0)
>>> [round(Objective.parse(o)(v), 9) for o in ("mean", "quantile:0.9", "cvar:0.8")]
[5.5, 9.435115177, 9.5]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import beta as beta_dist

__all__ = ["Objective"]

Kind = Literal["mean", "quantile", "cvar"]


@dataclass(frozen=True)
class Objective:
    """A summary of the posterior draws of a loss, to be minimised.

    Parameters
    ----------
    kind
        ``"mean"``, ``"quantile"`` or ``"cvar"``.
    level
        The quantile (or the CVaR level) in (0, 1); ``None`` for the mean.
    """

    kind: Kind = "mean"
    level: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("mean", "quantile", "cvar"):
            raise ValueError(f"objective must be mean, quantile or cvar, got {self.kind!r}")
        if self.kind == "mean":
            if self.level is not None:
                raise ValueError("the mean objective takes no level")
        elif self.level is None or not 0 < self.level < 1:
            raise ValueError(f"{self.kind} needs a level in (0, 1), got {self.level!r}")

    @classmethod
    def parse(cls, text: str) -> Objective:
        """Read ``mean``, ``quantile:0.9`` or ``cvar:0.9``.

        Examples
        --------
        >>> Objective.parse("cvar:0.95").label
        'CVaR 95% (mean of the worst 5% of draws)'
        >>> Objective.parse("quantile")
        Traceback (most recent call last):
        ...
        ValueError: objective 'quantile' needs a level: write quantile:0.9
        """
        name, _, level = text.strip().lower().partition(":")
        if name == "mean":
            if level:
                raise ValueError(f"objective {text!r}: the mean takes no level; write mean")
            return cls("mean")
        if name not in ("quantile", "cvar"):
            raise ValueError(
                f"unknown objective {text!r}; use mean, quantile:Q or cvar:Q with Q in (0, 1)"
            )
        if not level:
            raise ValueError(f"objective {text!r} needs a level: write {name}:0.9")
        try:
            q = float(level)
        except ValueError:
            raise ValueError(f"objective {text!r}: {level!r} is not a number") from None
        if not 0 < q < 1:
            raise ValueError(f"objective {text!r}: the level must lie in (0, 1)")
        return cls(name, q)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        """The objective as written on the command line (``cvar:0.9``)."""
        return "mean" if self.kind == "mean" else f"{self.kind}:{self.level!r}"

    @property
    def label(self) -> str:
        """A description for tables and reports."""
        if self.kind == "mean":
            return "expected loss (posterior mean)"
        pct = f"{100 * self.level:g}%"  # type: ignore[operator]
        if self.kind == "quantile":
            return f"{pct} quantile of the loss"
        return f"CVaR {pct} (mean of the worst {100 * (1 - self.level):.3g}% of draws)"  # type: ignore[operator]

    def draw_weights(self, values: np.ndarray) -> np.ndarray:
        """Weights ``w`` (non-negative, summing to 1) with ``objective(values) = w @ values``.

        For the quantile these are the Harrell-Davis weights of the order statistics (the
        ``j``-th smallest draw gets ``I((j)/n) - I((j-1)/n)``, ``I`` the Beta((n+1)q, (n+1)(1-q))
        distribution function); for the CVaR the worst ``(1 - q) n`` draws, the boundary draw
        taking its fraction.
        """
        values = np.asarray(values, dtype=float)
        n = values.size
        if self.kind == "mean":
            return np.full(n, 1.0 / n)
        order = np.argsort(values, kind="stable")
        w = np.zeros(n)
        if self.kind == "quantile":
            q = float(self.level)  # type: ignore[arg-type]
            cdf = beta_dist.cdf(np.arange(n + 1) / n, (n + 1) * q, (n + 1) * (1 - q))
            w[order] = np.diff(cdf)
            return w / w.sum()
        tail = (1.0 - self.level) * n  # type: ignore[operator]
        whole = int(np.floor(tail + 1e-12))
        worst = order[::-1]
        w[worst[:whole]] = 1.0 / tail
        if whole < n and tail - whole > 1e-12:
            w[worst[whole]] = (tail - whole) / tail
        return w

    def __call__(self, values: np.ndarray) -> float:
        """The objective's value for a vector of per-draw losses."""
        values = np.asarray(values, dtype=float)
        return float(self.draw_weights(values) @ values)
