"""Can the runs tell run-to-run luck from the law? A check made before sampling.

A run's offset on domain ``d`` (``likelihood.run_offset``) and the law's mixture term both
move the whole curve of that run. At a fixed step the mixture term is linear in its
coefficients, ``k_d + m_d(r) = x_d(r)^T theta_d`` (:func:`bimix_bayes.laws.fixed_budget.design`),
so the runs' mean log losses on ``d`` carry ``n_runs - rank(X_d)`` degrees of freedom beyond
what the law fits exactly. When that is 0 the law passes through every run's mean whatever the
offsets are: nothing in the data measures the offsets' sd ``tau[d]``, its posterior is its prior,
and the law's coefficients slide with it (small ``tau``: pinned; large: loose), a funnel NUTS
cannot sample. Ye et al.'s 3Mix 70M (3 runs of 3 domains) is that case under the cross-domain
laws (3 coefficients per domain for 3 runs): every ``bimix_cross`` and ``loglinear`` fit of it
diverged (25-236 divergences, ``reports/validation.md``, README "Cross effects in the
coordinates..."), after the retry too, while ``bimix`` (2 coefficients, one degree of freedom
left) passes every fit of it.

Examples
--------
>>> from bimix_bayes.bayes.likelihood import CurveLayout
>>> from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
>>> from bimix_bayes.laws.registry import get_law
>>> params = default_parameters().iloc[:3]
>>> data = simulate(params, random_mixtures(3, params.index), [1e3, 2e3, 4e3])
>>> layout = CurveLayout.from_data(data, 2e3)
>>> set(runs_beyond_law(get_law("bimix_cross"), layout).values())
{0}
>>> set(runs_beyond_law(get_law("bimix"), layout).values())
{1}
"""

from __future__ import annotations

import warnings

import numpy as np

from bimix_bayes.bayes.likelihood import CurveLayout
from bimix_bayes.laws.fixed_budget import ZeroShareError, design
from bimix_bayes.laws.registry import BIMIX, Law

__all__ = ["RunEffectWarning", "runs_beyond_law", "warn_if_run_effects_unidentified"]


class RunEffectWarning(UserWarning):
    """The law has as many coefficients per domain as there are runs: the run effects' sd is
    not identified and the fit will most likely fail its diagnostics."""


def runs_beyond_law(law: Law, layout: CurveLayout) -> dict[str, int]:
    """Per evaluation domain: its distinct runs minus the rank of ``law``'s mixture design over
    them, the degrees of freedom the runs' means leave to the run effects.

    Runs of one mixture (seeds) count separately: they measure the run effects directly.

    Parameters
    ----------
    law
        The law fitted.
    layout
        The data's curves (:class:`~bimix_bayes.bayes.likelihood.CurveLayout`).

    Returns
    -------
    dict
        Domain name -> degrees of freedom (0: the law fits every run's mean exactly).

    Raises
    ------
    ZeroShareError
        ``law`` cannot be evaluated at these shares (a BiMix law at a zero own share).
    """
    out = {}
    for d, name in enumerate(layout.domains):
        curves = np.flatnonzero(layout.curve_domain == d)
        _, first = np.unique(layout.curve_run[curves], return_index=True)
        shares = layout.curve_shares[curves[first]]
        x = design(law, shares, int(layout.own_index[d]), domain=name)
        out[name] = int(len(first) - np.linalg.matrix_rank(x))
    return out


def warn_if_run_effects_unidentified(
    law: Law, layout: CurveLayout, *, run_offset: bool = True, stacklevel: int = 2
) -> bool:
    """Warn (:class:`RunEffectWarning`) when ``law`` fits some domain's run means exactly, so
    that the run effects' sd is not identified; True if it warned.

    The advice names ``bimix`` when it leaves every domain a degree of freedom (it passes every
    fit of Ye et al.'s 3Mix 70M, where the cross-domain laws fail every fit), and more runs.

    Examples
    --------
    >>> from bimix_bayes.bayes.likelihood import CurveLayout
    >>> from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
    >>> from bimix_bayes.laws.registry import get_law
    >>> params = default_parameters().iloc[:3]
    >>> data = simulate(params, random_mixtures(3, params.index), [1e3, 2e3, 4e3])
    >>> layout = CurveLayout.from_data(data, 2e3)
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     warn_if_run_effects_unidentified(get_law("loglinear"), layout)
    True
    >>> print(str(seen[0].message)[:72])
    law loglinear on 3 runs: for every domain it has as many coefficients as
    >>> warn_if_run_effects_unidentified(get_law("bimix"), layout)
    False
    """
    if not run_offset:
        return False
    dof = runs_beyond_law(law, layout)
    exact = [name for name, k in dof.items() if k <= 0]
    if not exact:
        return False
    n_runs = len(np.unique(layout.curve_run))
    where = "every domain" if len(exact) == len(dof) else f"domain(s) {', '.join(exact)}"
    advice = "add runs (other mixtures, or other seeds of these)"
    if law.name != BIMIX.name and _bimix_leaves_room(layout):
        advice = (
            "fit with --law bimix (one coefficient per domain fewer; on Ye et al.'s 3Mix it "
            "passes every fit), or " + advice
        )
    warnings.warn(
        f"law {law.name} on {n_runs} runs: for {where} it has as many coefficients as runs, so "
        "it fits every run's mean loss exactly and nothing in the data measures how much runs "
        "differ by luck (the run effects' sd tau); the sampler is then likely to diverge (on "
        "Ye et al.'s 3Mix, 3 runs of 3 domains, every bimix_cross and loglinear fit did). "
        f"To fix it: {advice}",
        RunEffectWarning,
        stacklevel=stacklevel,
    )
    return True


def _bimix_leaves_room(layout: CurveLayout) -> bool:
    try:
        return min(runs_beyond_law(BIMIX, layout).values()) > 0
    except ZeroShareError:  # zero own shares or evaluation-only domains: bimix cannot fit them
        return False
