"""Convergence diagnostics checked after every fit: r-hat, bulk and tail ESS, divergences, BFMI.

A fit that fails any threshold (from the spec's ``[diagnostics]``) is reported loudly with a
:class:`FitWarning` that says what failed and what to try; everything that presents intervals
from such a fit says so too.

ArviZ calls are kept in this module (and :mod:`bimix_bayes.bayes.model`) so that moving to ArviZ 1.x
touches few places.

Examples
--------
>>> import arviz as az, numpy as np
>>> idata = az.from_dict(posterior={"x": np.random.default_rng(0).normal(size=(4, 500))},
...                      sample_stats={"diverging": np.zeros((4, 500), bool),
...                                    "energy": np.random.default_rng(1).normal(size=(4, 500))})
>>> diag = diagnose(idata, {"max_rhat": 1.01, "min_ess_bulk": 400, "min_ess_tail": 400,
...                         "max_divergences": 0, "min_bfmi": 0.3})
>>> diag.passed
True
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DERIVED_VARS",
    "FitDiagnostics",
    "FitWarning",
    "cross_coordinates_to_flip",
    "diagnose",
    "divergence_end",
    "level_funnel_domains",
    "retry_draws",
    "retry_settings",
]

#: Posterior variables computed from the sampled ones (not diagnosed on their own; the
#: correlations through their partial correlations ``run_corr_cpc``, ``slope_corr_cpc``). The
#: cross effects ``cross`` are diagnosed rather than the raw ``cross_z``, two directions of
#: which per row do not enter the likelihood, or their coordinates ``cross_v`` (whose padding
#: does not either); their structural zeros (own columns) are skipped. The standardised
#: coordinates the sampler draws the level, the exponent and the cross effects in
#: (``*_z``, bimix_bayes/bayes/graph.py) are diagnosed through what they make (``step_level``,
#: ``log_alpha``, ``cross``), the names a user knows and the advice reads.
DERIVED_VARS = frozenset(
    {"alpha", "beta", "own", "A", "B", "C", "run_offset", "run_corr", "slope_corr"}
    | {"cross_z", "cross_v", "cross_v_z", "step_level_z", "log_alpha_z", "log_own_z"}
)


#: The problem of a fit with one chain (r-hat compares chains).
_ONE_CHAIN = "r-hat needs at least 2 chains"
#: The sampler settings that cured the failed fits of the public backtests (smaller steps, a
#: longer warm-up); a retry takes them as :func:`retry_settings` says.
SAFE_TARGET_ACCEPT = 0.99
SAFE_TUNE = 1000
#: The draws per chain a retry uses at least: twice the default, what cured Ye et al.'s 5Mix
#: fits where smaller steps alone did not (slow mixing), and the embedded study's fit that
#: diverged once and, at the smaller steps with 1000 draws, mixed too slowly.
SAFE_DRAWS = 2000
#: A retry after slow mixing draws at least twice and at most this many times the draws of the
#: failed fit (what a retry may cost).
MAX_DRAWS_FACTOR = 4
#: The margin on the draws a failed ESS implies (ESS grows about in proportion to the draws; its
#: estimate, the tail ESS especially, is noisy).
ESS_MARGIN = 1.5
#: What smaller steps (``target_accept`` 0.9 -> 0.99) cost in ESS per draw where the chains mix
#: slowly: the draws a retry that takes them asks for are multiplied by this. Measured at the
#: same seed, tune 1000 and 2000 draws per chain, target_accept 0.9 against 0.99: bimix_cross
#: on Ye et al.'s 5Mix 70M (13 runs, seed 0) tail ESS 998 against 390 on tau[dialogue]; their
#: 5Mix sizes below 800M (seed 0) 504 against 183; loglinear on their RedPajama 70M (seed 5)
#: 673 at 0.9 against 387 at 0.99 (tail ESS of noise_excess[internet]).
SMALLER_STEPS_ESS_COST = 2.0
_ESS_PROBLEM = re.compile(r"(?:bulk|tail) ESS (\d+(?:\.\d+)?) < (\d+(?:\.\d+)?)")


def retry_draws(draws: int, problems: Sequence[str], *, smaller_steps: bool = False) -> int:
    """The draws per chain the one retry of a failed fit uses (and the advice names).

    At least :data:`SAFE_DRAWS`. When the chains mixed slowly (:func:`slow_mixing`), at least
    twice ``draws``, and as many as the lowest ESS asks for: ``ESS_MARGIN x threshold / ESS``
    times ``draws`` (times :data:`SMALLER_STEPS_ESS_COST` when the retry also takes smaller
    steps, ``smaller_steps``), rounded up to a thousand, at most :data:`MAX_DRAWS_FACTOR` times
    ``draws``. Why not always twice: Ye et al.'s 5Mix sizes below 800M (the ``holdout-size:
    800M`` backtest's fit, seed 0) failed with tail ESS 157 at 1000 draws; the retry at 2000
    (``target_accept`` 0.99) failed again, tail ESS 183 (size_mixture[dialogue]), and passed at
    4000 (bulk 1107, tail 531), which 1.5 x 400 / 157 asks for.

    Examples
    --------
    >>> retry_draws(1000, ["2 divergent transitions (allowed 0)"])
    2000
    >>> retry_draws(1000, ["bulk ESS 330 < 400 for log_alpha[prose]"])  # 1.8x: twice
    2000
    >>> retry_draws(1000, ["tail ESS 157 < 400 for size_mixture[dialogue]: intervals are noisy"])
    4000
    >>> retry_draws(1000, ["tail ESS 76 < 400 for log_alpha[prose]"])  # capped at 4x
    4000
    >>> retry_draws(1500, ["r-hat 1.02 > 1.01 for sigma[web]: chains disagree"])
    3000
    >>> retry_draws(1000, ["tail ESS 372 < 400", "3 divergent transitions"], smaller_steps=True)
    4000
    """
    if not slow_mixing(problems):
        return max(int(draws), SAFE_DRAWS)
    factor = 2.0
    for ess, threshold in _ESS_PROBLEM.findall(" ".join(problems)):
        if float(ess) > 0:
            factor = max(factor, ESS_MARGIN * float(threshold) / float(ess))
    if smaller_steps:
        factor *= SMALLER_STEPS_ESS_COST
    wanted = int(np.ceil(draws * factor / 1000.0)) * 1000 if factor > 2.0 else 2 * int(draws)
    return max(SAFE_DRAWS, min(wanted, MAX_DRAWS_FACTOR * int(draws)))


def retry_settings(sampler: Mapping[str, Any], problems: Sequence[str]) -> dict[str, Any]:
    """The ``target_accept``, ``tune`` and ``draws`` the one retry of a failed fit changes
    (empty when it would change none): what ``bimix fit`` retries with
    (:func:`bimix_bayes.bayes.model.safer_sampler`) and what the advice names.

    Always a longer warm-up (:data:`SAFE_TUNE`) and at least :data:`SAFE_DRAWS` draws. Smaller
    steps (:data:`SAFE_TARGET_ACCEPT`) only when the chains diverged (or nothing else is
    recognised): they cure divergences, but where the chains only mixed slowly they lower the
    ESS per draw 2-3x (:data:`SMALLER_STEPS_ESS_COST`) and a retry with them failed again where
    one without them passed -- bimix_cross on Ye et al.'s 5Mix 70M (13 runs, seed 0: tail ESS
    378 at 1000 draws; at 0.99 and 2000 draws 390, at 0.9 and 2000 998) and loglinear on their
    RedPajama 70M (seed 5: 388; 387 against 673). Then the draws follow the lowest ESS
    (:func:`retry_draws`); when the chains both diverged and mixed slowly, scaled for the
    smaller steps (Ye et al.'s 5Mix sizes below 800M, seed 0, tail ESS 372 and 3 divergences:
    at 0.99 2000 draws gave 183, 3000 gave 343, 4000 passed).

    Examples
    --------
    >>> first = {"target_accept": 0.9, "tune": 300, "draws": 1000}
    >>> retry_settings(first, ["2 divergent transitions (allowed 0)"])
    {'target_accept': 0.99, 'tune': 1000, 'draws': 2000}
    >>> retry_settings(first, ["tail ESS 378 < 400 for tau[dialogue]: intervals are noisy"])
    {'tune': 1000, 'draws': 2000}
    >>> retry_settings({"target_accept": 0.99, "tune": 1000, "draws": 2000}, ["1 divergent"])
    {}
    """
    out: dict[str, Any] = {}
    text = " ".join(p for p in problems if _ONE_CHAIN not in p)
    smaller_steps = "divergen" in text or not slow_mixing(problems)
    smaller_steps = smaller_steps and sampler.get("target_accept", 0.0) < SAFE_TARGET_ACCEPT
    if smaller_steps:
        out["target_accept"] = SAFE_TARGET_ACCEPT
    if sampler.get("tune", 0) < SAFE_TUNE:
        out["tune"] = SAFE_TUNE
    draws = int(sampler.get("draws", 0))
    wanted = retry_draws(draws, problems, smaller_steps=smaller_steps)
    if wanted > draws:
        out["draws"] = wanted
    return out


def _retry_tip(retry: Mapping[str, Any], *, slow_only: bool = True) -> str:
    """The advice that names the settings of :func:`retry_settings`, spec keys and flags
    (``slow_only``: the chains mixed slowly and did not diverge, which the advice says).

    Examples
    --------
    >>> _retry_tip({"target_accept": 0.99, "tune": 1000, "draws": 2000})[:55]
    'smaller steps, a longer warm-up and more draws: sampler'
    >>> _retry_tip({"draws": 4000}).split(": ")[1]
    'sampler.draws = 4000 in the spec (or --draws 4000)'
    """
    changes = [w for k, w in (("tune", "a longer warm-up"), ("draws", "more draws")) if k in retry]
    if "target_accept" in retry:
        words = " and ".join([", ".join(["smaller steps", *changes[:-1]]), *changes[-1:]])
    else:
        words = " and ".join(changes)
        if slow_only:
            words += (
                " (the chains mixed slowly without diverging; smaller steps would lower the "
                "ESS per draw)"
            )
    flags = {"target_accept": "--target-accept", "tune": "--tune", "draws": "--draws"}
    keys = [k for k in flags if k in retry]
    spec = ", ".join(f"sampler.{k} = {retry[k]:g}" for k in keys)
    cli = " ".join(f"{flags[k]} {retry[k]:g}" for k in keys)
    return f"{words}: {spec} in the spec (or {cli})"


def slow_mixing(problems: Sequence[str]) -> bool:
    """True when a failed fit's problems say its chains mixed slowly (r-hat or ESS), which more
    draws cure, rather than only that they diverged, which smaller steps cure.

    Examples
    --------
    >>> slow_mixing(["tail ESS 144 < 400 for log_alpha[dialogue]: intervals are noisy"])
    True
    >>> slow_mixing(["1 divergent transitions (allowed 0)"]), slow_mixing([_ONE_CHAIN])
    (False, False)
    """
    text = " ".join(p for p in problems if _ONE_CHAIN not in p)
    return "r-hat" in text or "ESS" in text


#: The parameters of one domain that trade off with its run offsets' sd when the runs are few
#: (the level: ``step_level``, and the floor and reducible loss derived from it; ``tau``).
_LEVEL_FUNNEL = re.compile(r"for (step_level|log_floor|log_reducible|tau)\[([^\]]+)\]")


def level_funnel_domains(problems: Sequence[str]) -> list[str]:
    """The domains whose level or run-offset sd the failed checks name: with few runs the
    level and that sd trade off (three runs fix the level to within the sd over the square root
    of 3, and the sd's small end is a funnel), which more draws do not cure.

    Examples
    --------
    >>> level_funnel_domains(["r-hat 1.013 > 1.01 for step_level[Pile-CC]: chains disagree",
    ...                       "bulk ESS 287 < 400 for tau[Pile-CC]", "tail ESS 90 < 400 for x"])
    ['Pile-CC']
    >>> level_funnel_domains(["tail ESS 144 < 400 for log_alpha[dialogue]"])
    []
    """
    found = (m.group(2) for p in problems for m in _LEVEL_FUNNEL.finditer(p))
    return list(dict.fromkeys(found))


def cross_coordinates_to_flip(problems: Sequence[str], centred: bool) -> bool:
    """Whether a retry should sample the cross effects (a cross-domain law) in their other
    coordinates: the failed checks name them or their sd (their mixing), or say the divergences
    sit at the end of ``sd_cross`` where the current coordinates have their funnel (small for
    centred effects, large for non-centred ones: :func:`divergence_end`).

    Examples
    --------
    >>> small = ["9 divergent transitions (allowed 0), 6 of them at small sd_cross"]
    >>> cross_coordinates_to_flip(small, centred=True), cross_coordinates_to_flip(small, False)
    (True, False)
    >>> cross_coordinates_to_flip(["tail ESS 63 < 400 for cross[a, b]"], centred=False)
    True
    """
    named = any(re.search(r"for (sd_cross|cross\[)", p) for p in problems)
    funnel = "small" if centred else "large"
    return named or any(f"at {funnel} sd_cross" in p for p in problems)


#: :func:`divergence_end`: the posterior tails (their mass) a divergent draw is counted in,
#: and the share of divergent draws one tail must hold (chance: the tail's mass).
DIVERGENCE_TAIL = 0.1
DIVERGENCE_SHARE = 0.5
#: ... and the fewest divergent draws that say anything about where they sit.
DIVERGENCE_MIN = 3


def divergence_end(values: np.ndarray, diverging: np.ndarray) -> tuple[str, int] | None:
    """Where the divergent draws of one scalar parameter sit, when they cluster at one end.

    ``("small", k)`` when ``k`` of the divergent draws, at least :data:`DIVERGENCE_SHARE` of
    them (chance gives :data:`DIVERGENCE_TAIL`), lie below the parameter's
    :data:`DIVERGENCE_TAIL` quantile over all draws; ``("large", k)`` above its upper one;
    None otherwise or with fewer than :data:`DIVERGENCE_MIN` divergent draws.

    Used on the cross effects' sd (``sd_cross``): divergences at its small end are the funnel of
    the centred cross effects (``sampler.centre_cross = true``; the effects the runs leave
    loose), at its large end the non-centred form's (effects the runs pin down). The embedded
    study's ``holdout-mixtures:10`` split 2 under the loglinear law (centred, seed 0): 9
    divergences, sd_cross median 0.021 at them against a posterior median 0.089 (10 % quantile
    0.037); retried non-centred, it passes (centred again, it failed with 36).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sd = rng.gamma(4.0, 0.02, size=(4, 500))
    >>> diverging = sd < np.quantile(sd, 0.02)  # every divergence in the small tail
    >>> divergence_end(sd, diverging)
    ('small', 40)
    >>> divergence_end(sd, rng.random(sd.shape) < 0.01) is None  # scattered: no end
    True
    """
    values, diverging = np.ravel(values), np.ravel(diverging).astype(bool)
    n = int(diverging.sum())
    if n < DIVERGENCE_MIN or diverging.size != values.size:
        return None
    low, high = np.quantile(values, [DIVERGENCE_TAIL, 1 - DIVERGENCE_TAIL])
    for end, count in (
        ("small", int((values[diverging] < low).sum())),
        ("large", int((values[diverging] > high).sum())),
    ):
        if count >= DIVERGENCE_SHARE * n:
            return end, count
    return None


class FitWarning(UserWarning):
    """The sampler did not converge: intervals from this fit cannot be trusted."""


#: Parameters of the mixture term (the own-share exponent, its drift, the cross effects):
#: when one of these mixes slowly, the runs' shares may not identify it.
_MIXTURE_PARAMETER = re.compile(
    r"for (?:(?:mu_|sd_)?(?:log_)?(?:alpha|own|cross)\w*|size_mixture)\b"
)


@dataclass
class FitDiagnostics:
    """Summary of the convergence checks of one fit.

    Attributes
    ----------
    max_rhat, min_ess_bulk, min_ess_tail
        Worst r-hat and smallest effective sample sizes over the sampled parameters.
    worst_rhat_var, worst_ess_var
        Where they occur (``"alpha[github]"``).
    divergences, draws
        Divergent transitions and total draws (all chains).
    min_bfmi
        Smallest Bayesian fraction of missing information over chains.
    thresholds
        The thresholds used.
    problems
        One sentence per failed check; empty when the fit passed.
    chains
        Number of chains (None in diagnostics recorded before it was).
    sampler
        The sampler's ``target_accept``, ``tune``, ``draws`` per chain and ``centre_cross``
        (1 or 0; None when not recorded; keys are missing from diagnostics recorded before
        they were): the advice does not suggest settings the fit already used.
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    worst_rhat_var: str
    worst_ess_var: str
    divergences: int
    draws: int
    min_bfmi: float
    thresholds: dict[str, float]
    problems: list[str] = field(default_factory=list)
    chains: int | None = None
    sampler: dict[str, float] | None = None

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return not self.problems

    def advice(self) -> list[str]:
        """What to try, given what failed."""
        tips = []
        if any(_ONE_CHAIN in p for p in self.problems):
            tips.append(
                "run at least 2 chains so that convergence can be checked: sampler.chains in "
                "the spec (or --chains; the default is 4)"
            )
        text = " ".join(p for p in self.problems if _ONE_CHAIN not in p)
        used = self.sampler or {}
        # the retry's warm-up and draws were used (its steps only when the fit diverged; the
        # draws were not recorded before 2026-12-04)
        retried = used.get("tune", 0) >= SAFE_TUNE and used.get("draws", SAFE_DRAWS) >= SAFE_DRAWS
        retry = retry_settings(used, self.problems)
        failed_sampling = "divergen" in text or slow_mixing(self.problems)
        if failed_sampling and retry and ("target_accept" in retry or not retried):
            # What cured the failed fits of the public backtests (reports/validation.md) and of
            # the small studies (benchmarks/retry_cures.py); `bimix fit` and backtests retry once
            # with it (model.safer_sampler)
            tips.append(_retry_tip(retry, slow_only="divergen" not in text))
        elif "divergen" in text:
            tips.append(
                f"this fit already used target_accept {used['target_accept']:g} and tune "
                f"{used['tune']:g}; divergences that remain there mark a region of the posterior "
                "the sampler cannot enter (pair-plot the divergent draws of the population "
                "sds and of the failing domain's step_logit_share, arviz.plot_pair(idata, "
                "divergences=True)): treat the intervals as approximate; if the spec turns "
                'likelihood.run_correlation on (or its default "auto" did, for evaluation '
                "sets that are not training domains), try run_correlation = false (the "
                "cross-domain law's fit "
                "of SlimPajama 122M that diverged with it converged without it)"
            )
        funnel = level_funnel_domains(self.problems)
        if funnel and retried and used:
            # Ye et al.'s 3Mix 70M (3 runs), default spec at the retry's settings (2026-12-04):
            # seeds 0, 2, 3, 4 pass, 1 and 5 fail on Pile-CC's level and tau (r-hat 1.010-1.013,
            # ESS 287-343); seed 1 with 4000 draws r-hat 1.013, with 8 chains 1.018;
            # likelihood.run_offset = false passes (r-hat 1.003; loglinear too, 1.003); with
            # sampler.level = "conditional" and exponent = "laplace" (2026-12-05) seeds 0-5 pass
            # (benchmarks/retry_cures.py)
            names = ", ".join(funnel)
            tips.append(
                f"the level and the run offsets' sd (tau) of {names} trade off: with few runs "
                "the data cannot tell a small run effect from none, and that end of tau is a "
                "funnel; more draws or chains do not cure it (Ye et al.'s 3Mix, 3 runs: 4000 "
                "draws or 8 chains left r-hat at 1.013-1.018, while 4 of 6 seeds passed at "
                "target_accept 0.99 and tune 1000, with the level sampled freely). Drawing the "
                "level and the exponent given the rest cured it there "
                '(sampler.level = "conditional", sampler.exponent = "laplace", the defaults '
                "since 2026-12-05: 6 of 6 seeds "
                'passed): if your spec sets either to "free", drop that. Otherwise read the '
                "level's and tau's intervals as approximate, refit with another --seed to check "
                "the forecasts you use do not move, or add runs; likelihood.run_offset = false "
                "converges (the run effects then fold into the noise: forecasts of new mixtures "
                "lose their run-to-run spread)"
            )
        elif slow_mixing(self.problems) and retried and used:
            tips.append(
                f"this fit already used {used.get('draws', 0):g} draws per chain: the parameter "
                "named above mixes slowly (on public data, the mixture exponent of a domain "
                "whose share barely moves its loss, or the early noise's excess noise_excess, "
                "which trades off with the late noise sigma); read its intervals as "
                "approximate, or raise sampler.draws further (ESS grows with the draws: Ye et "
                "al.'s RedPajama 70M, noise_excess r-hat 1.014 at 2000 draws, passed at 4000)"
            )
        if "centre_cross" in used and cross_coordinates_to_flip(
            self.problems, bool(used["centre_cross"])
        ):
            other = "false" if used["centre_cross"] else "true"
            tips.append(
                "the cross effects mixed slowly (or the divergences sit at one end of their sd): "
                "sample them in the other coordinates, "
                f"sampler.centre_cross = {other} in the spec (a failed fit's retry does; if this "
                "fit is that retry, both were tried: these runs pin the cross effects down too "
                "loosely for either, read their intervals as approximate or add runs)"
            )
        if "BFMI" in text:
            tips.append(
                "low BFMI: the population sd priors may be too wide; tighten "
                "priors.<name>.sd_scale (pooled priors: log_own by default)"
            )
        if _MIXTURE_PARAMETER.search(text):
            tips.append(
                "check the data: a domain whose share barely varies across the runs cannot "
                "identify its mixture exponent"
            )
        return tips

    def rhat_text(self) -> str:
        """``max r-hat 1.002 (alpha[web])``, or why r-hat could not be computed.

        Examples
        --------
        >>> diag = FitDiagnostics(float("-inf"), 300, 250, "", "sigma[web]", 0, 1000, 0.9, {},
        ...                       ["r-hat needs at least 2 chains"], chains=1)
        >>> diag.rhat_text()
        'r-hat not computable with 1 chain'
        """
        if np.isfinite(self.max_rhat):
            return f"max r-hat {self.max_rhat:.3f} ({self.worst_rhat_var})"
        if self.chains is not None and self.chains < 2:
            return f"r-hat not computable with {self.chains} chain"
        return "r-hat not computable (it needs at least 2 chains)"

    def report(self) -> str:
        """A few lines: status, the figures, and (on failure) what to try."""
        status = "PASSED" if self.passed else "FAILED"
        lines = [
            f"diagnostics {status}: {self.rhat_text()}, "
            f"min ESS bulk {self.min_ess_bulk:.0f} ({self.worst_ess_var}) / tail "
            f"{self.min_ess_tail:.0f}, divergences {self.divergences} of {self.draws} draws, "
            + (
                f"min BFMI {self.min_bfmi:.2f}"
                if np.isfinite(self.min_bfmi)
                else "no BFMI (no energy statistics)"
            )
        ]
        if not self.passed:
            lines += [f"  - {p}" for p in self.problems]
            lines += [f"  try: {t}" for t in self.advice()]
        return "\n".join(lines)

    def warn_if_failed(self, doing: str | None = None, stacklevel: int = 3) -> bool:
        """Emit the :class:`FitWarning` of a failed fit; True if emitted.

        Every part of the package that reads a posterior (fit, forecast, decision, report)
        warns through this method, so a failed fit reads the same everywhere. The fit's own
        warning (``doing`` None) carries the whole :meth:`report`, what failed and what to try;
        the later ones (``doing="forecasting"``) one line with the figures and where to read the
        rest, so that a script using a failed fit five times does not print its report five
        times.

        Parameters
        ----------
        doing
            What is being done with the fit (``"forecasting"``), named in the message.
        stacklevel
            Passed to :func:`warnings.warn`.

        Examples
        --------
        >>> import warnings
        >>> diag = FitDiagnostics(1.2, 50, 20, "alpha[web]", "beta[web]", 3, 4000, 0.5, {},
        ...                       ["r-hat 1.2 > 1.01"])
        >>> with warnings.catch_warnings(record=True) as seen:
        ...     warnings.simplefilter("always")
        ...     diag.warn_if_failed("forecasting")
        True
        >>> print(seen[0].message)  # doctest: +NORMALIZE_WHITESPACE
        forecasting from a fit that FAILED its convergence diagnostics (max r-hat 1.200
        (alpha[web]), min ESS bulk 50 / tail 20, divergences 3); its intervals cannot be
        trusted. What failed and what to try: `bimix summary FIT`, or in Python
        diagnostics_from_idata(idata).report() (bimix_bayes.bayes.persistence)
        """
        if self.passed:
            return False
        if doing is None:
            message = (
                "the fit FAILED its convergence diagnostics; its intervals cannot be trusted.\n"
                + self.report()
            )
        else:
            message = (
                f"{doing} from a fit that FAILED its convergence diagnostics ("
                f"{self.rhat_text()}, min ESS bulk {self.min_ess_bulk:.0f} / tail "
                f"{self.min_ess_tail:.0f}, divergences {self.divergences}); its intervals "
                "cannot be trusted. What failed and what to try: `bimix summary FIT`, or in "
                "Python diagnostics_from_idata(idata).report() (bimix_bayes.bayes.persistence)"
            )
        warnings.warn(message, FitWarning, stacklevel=stacklevel)
        return True

    def banner(self, consequence: str = "do not trust the figures below") -> str:
        """The one line a command prints above output from a failed fit ("" when it passed).

        Examples
        --------
        >>> diag = FitDiagnostics(1.2, 50, 20, "alpha[web]", "beta[web]", 3, 4000, 0.5, {},
        ...                       ["r-hat 1.2 > 1.01"])
        >>> diag.banner("do not trust it")
        '!!! this fit FAILED its convergence diagnostics (see `bimix summary`): do not trust it !!!'
        """
        if self.passed:
            return ""
        return (
            "!!! this fit FAILED its convergence diagnostics (see `bimix summary`): "
            f"{consequence} !!!"
        )

    def to_json(self) -> str:
        """JSON text (stored in the InferenceData attrs)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FitDiagnostics:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


def _worst(ds: Any, pick: str, varies: Mapping[str, np.ndarray]) -> tuple[float, str]:
    """Worst value over all variables and their elements, with a readable location; elements
    that do not vary over the draws (``varies`` False: an entry fixed by the parametrisation,
    such as a cross effect's own-domain zero) are not diagnosed (arviz gives them the number of
    draws as ESS, which then named a constant as the worst-mixing parameter)."""
    best_val, best_name = (np.inf if pick == "min" else -np.inf), ""
    for name, da in ds.data_vars.items():
        values = np.where(varies[name], np.asarray(da, dtype=float), np.nan)
        if values.size == 0 or np.all(np.isnan(values)):
            continue
        idx = np.nanargmin(values) if pick == "min" else np.nanargmax(values)
        val = values.flat[idx]
        if (pick == "min" and val < best_val) or (pick == "max" and val > best_val):
            coords = np.unravel_index(idx, values.shape)
            labels = [str(da[dim].values[i]) for dim, i in zip(da.dims, coords, strict=True)]
            best_val = float(val)
            best_name = name + (f"[{', '.join(labels)}]" if labels else "")
    return best_val, best_name


def diagnose(
    idata: Any, thresholds: Mapping[str, float], sampler: Mapping[str, Any] | None = None
) -> FitDiagnostics:
    """Compute r-hat, ESS, divergences and BFMI of ``idata`` and compare with ``thresholds``.

    ``thresholds`` holds ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``max_divergences``
    and ``min_bfmi`` (the spec's ``[diagnostics]`` section); ``sampler`` the spec's
    ``[sampler]`` section (its ``target_accept``, ``tune`` and ``draws`` are recorded for the
    advice).
    """
    import arviz as az  # here, so that importing this module (for FitWarning) stays light

    names = [v for v in idata.posterior.data_vars if v not in DERIVED_VARS]
    varies = {v: np.asarray(idata.posterior[v].std(("chain", "draw")) > 0) for v in names}
    # arviz 0.23 logs through its own Logger instance (not logging.getLogger("arviz"))
    arviz_log = getattr(az, "_log", None) or logging.getLogger("arviz")
    level = arviz_log.level
    if idata.posterior.sizes["chain"] < 2:  # said in the problems; not arviz's raw log line
        arviz_log.setLevel(logging.ERROR)
    try:
        with np.errstate(invalid="ignore", divide="ignore"):  # constant entries: NaN, skipped
            rhat, rhat_var = _worst(az.rhat(idata, var_names=names), "max", varies)
    finally:
        arviz_log.setLevel(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        ess_bulk, ess_var = _worst(az.ess(idata, var_names=names, method="bulk"), "min", varies)
        ess_tail, tail_var = _worst(az.ess(idata, var_names=names, method="tail"), "min", varies)
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    draws = int(idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"])
    bfmi = float(np.min(az.bfmi(idata))) if "energy" in stats else float("nan")
    t = dict(thresholds)
    problems = []
    if idata.posterior.sizes["chain"] < 2 or not np.isfinite(rhat):
        problems.append(f"{_ONE_CHAIN}: convergence cannot be checked")
    if not rhat <= t["max_rhat"]:
        digits = 3 if round(rhat, 3) > t["max_rhat"] else 4  # not "1.010 > 1.01"
        problems.append(
            f"r-hat {rhat:.{digits}f} > {t['max_rhat']} for {rhat_var}: chains disagree"
        )
    if not ess_bulk >= t["min_ess_bulk"]:
        problems.append(f"bulk ESS {ess_bulk:.0f} < {t['min_ess_bulk']:.0f} for {ess_var}")
    if not ess_tail >= t["min_ess_tail"]:
        problems.append(
            f"tail ESS {ess_tail:.0f} < {t['min_ess_tail']:.0f} for {tail_var}: intervals are noisy"
        )
    if divergences > t["max_divergences"]:
        where = ""
        if "sd_cross" in idata.posterior and idata.posterior["sd_cross"].ndim == 2:
            end = divergence_end(idata.posterior["sd_cross"].values, stats["diverging"].values)
            where = f", {end[1]} of them at {end[0]} sd_cross" if end else ""
        problems.append(
            f"{divergences} divergent transitions (allowed {t['max_divergences']}){where}: "
            "the sampler missed part of the posterior"
        )
    if np.isfinite(bfmi) and bfmi < t["min_bfmi"]:
        problems.append(f"BFMI {bfmi:.2f} < {t['min_bfmi']}: poor exploration of the energy")
    return FitDiagnostics(
        max_rhat=rhat,
        min_ess_bulk=ess_bulk,
        min_ess_tail=ess_tail,
        worst_rhat_var=rhat_var,
        worst_ess_var=ess_var,
        divergences=divergences,
        draws=draws,
        min_bfmi=bfmi,
        thresholds={k: float(v) for k, v in t.items()},
        problems=problems,
        chains=int(idata.posterior.sizes["chain"]),
        sampler=None
        if sampler is None
        else {
            key: float(sampler[key])
            for key in ("target_accept", "tune", "draws", "centre_cross")
            if key in sampler
        },
    )
