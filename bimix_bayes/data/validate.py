"""The one-pass validation behind :meth:`MixtureData.from_frames`: options, checks and notes.

:func:`check_options` refuses invalid settings before any data is looked at; a
:class:`Validator` then checks the two frames in one pass (columns and numbers, domains,
proportions, losses and steps and their plausible magnitudes, duplicates, zero shares, repeated
checkpoints). Every problem raises a :class:`~bimix_bayes.data.table.DataError` naming the
source, the rows and the fix; every change it makes is recorded in its ``notes`` and emitted as
a :class:`~bimix_bayes.data.table.DataWarning`.

:class:`ValidationOptions` names the keyword options of the validation, so that a loader can
pass them on without repeating them.

Examples
--------
>>> import pandas as pd
>>> check_options("steps", "refuse", 1e-4, "refuse", 1e-3)
>>> v = Validator("demo", [], {"r1": "line 2"})
>>> v.check_mixtures(pd.DataFrame({"web": [1.2], "code": [-0.2]}, index=["r1"]), sum_tol=1e-3)
Traceback (most recent call last):
...
bimix_bayes.data.table.DataError: demo: 1 proportion(s) are negative (run 'r1' (line 2), ...
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TypedDict

import numpy as np
import pandas as pd

from bimix_bayes.data.labels import evaluation_only_hint, near_names
from bimix_bayes.data.table import (
    OBS_COLUMNS,
    SIZE_COLUMN,
    DataError,
    DataWarning,
    MissingPolicy,
    ZeroPolicy,
    cell_examples,
    describe_locations,
    to_numeric,
)

__all__ = [
    "LOSS_RANGE",
    "OUTLIER_MADS",
    "OUTLIER_ORDERS",
    "STEP_RANGE",
    "ValidationOptions",
    "Validator",
    "check_options",
]

#: Plausible losses (mean cross-entropy per token, nats); values outside are refused.
LOSS_RANGE = (1e-6, 1e4)
#: Plausible step or token counts; values outside are refused (1e16 tokens is hundreds of
#: times the largest training run to date).
STEP_RANGE = (1.0, 1e16)
#: A loss further than this many orders of magnitude (log10) from its domain's median is
#: refused ...
OUTLIER_ORDERS = 3.0
#: ... unless the domain's losses spread so widely that it lies within this many (scaled)
#: median absolute deviations of log10 loss.
OUTLIER_MADS = 10.0
#: A loss above (or below) both neighbouring checkpoints of its curve by more than this factor
#: is noted as a possible glitch (kept): a loss curve falls smoothly; on the public sets the
#: largest such jump is a factor 1.03 (SlimPajama, all sizes; Ye et al.'s 70M sets and the
#: embedded study at most 1.01), where a logging glitch is a factor 10.
SPIKE_FACTOR = 2.0


class ValidationOptions(TypedDict, total=False):
    """The keyword options of the validation (see :meth:`MixtureData.from_frames`)."""

    zero_policy: ZeroPolicy
    epsilon: float
    sum_tol: float
    missing_policy: MissingPolicy
    drop_repeated_checkpoints: bool
    min_mixtures: int
    min_steps: int


def check_options(
    volume: str, zero_policy: str, epsilon: float, missing_policy: str, sum_tol: float
) -> None:
    """Refuse invalid settings at once, before any data is looked at.

    Raises
    ------
    ValueError
        Naming the setting and the values it accepts.

    Examples
    --------
    >>> check_options("days", "refuse", 1e-4, "refuse", 1e-3)
    Traceback (most recent call last):
    ...
    ValueError: volume must be 'steps' or 'tokens', got 'days'
    """
    if volume not in ("steps", "tokens"):
        raise ValueError(f"volume must be 'steps' or 'tokens', got {volume!r}")
    if zero_policy not in ("refuse", "drop", "epsilon", "keep"):
        raise ValueError(
            f"zero_policy must be 'refuse', 'drop', 'epsilon' or 'keep', got {zero_policy!r}"
        )
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must lie in (0, 1), got {epsilon!r}")
    if missing_policy not in ("refuse", "drop"):
        raise ValueError(f"missing_policy must be 'refuse' or 'drop', got {missing_policy!r}")
    if not sum_tol >= 0:
        raise ValueError(f"sum_tol must be >= 0, got {sum_tol!r}")


class Validator:
    """The checks behind :meth:`MixtureData.from_frames`, with the source name and notes.

    Parameters
    ----------
    source
        Names the data in every message (a file path, ``"simulated"``...).
    notes
        Collects, in words, every change the checks make (appended to in place).
    run_locations
        Where each run's mixture came from (``"line 3"``), for messages.
    """

    def __init__(self, source: str, notes: list[str], run_locations: Mapping[str, str]) -> None:
        self.source = source
        self.notes = notes
        self.run_locations = run_locations

    def run_label(self, run: str) -> str:
        """``run 'a' (line 3)``: a run and where its mixture came from."""
        where = self.run_locations.get(run)
        return f"run {run!r}" + (f" ({where})" if where else "")

    def fail(self, message: str) -> DataError:
        """The :class:`DataError` to raise, its message prefixed with the source."""
        return DataError(f"{self.source}: {message}")

    def note(self, message: str) -> None:
        """Record a change in ``notes`` and emit it as a :class:`DataWarning`."""
        self.notes.append(message)
        warnings.warn(f"{self.source}: {message}", DataWarning, stacklevel=4)

    def check_frames(
        self, mixtures: pd.DataFrame, observations: pd.DataFrame, locations: Sequence[str] | None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Required columns, string ids, numeric cells, unique run ids; adds a ``where`` column."""
        missing = [c for c in OBS_COLUMNS if c not in observations.columns]
        if missing:
            raise self.fail(
                f"observations lack column(s) {missing}; they need {list(OBS_COLUMNS)} "
                f"(found {list(observations.columns)})"
            )
        if mixtures.shape[1] == 0:
            raise self.fail("the mixture table has no domain columns")
        columns = [*OBS_COLUMNS, *([SIZE_COLUMN] if SIZE_COLUMN in observations.columns else [])]
        obs = observations[columns].copy()
        if locations is None:
            locations = [f"row {i + 1}" for i in range(len(obs))]
        if len(locations) != len(obs):
            raise ValueError("locations must have one entry per observation row")
        obs["where"] = list(locations)
        obs = obs.reset_index(drop=True)
        obs["run"] = obs["run"].astype(str)
        obs["domain"] = obs["domain"].astype(str)
        mixtures = mixtures.copy()
        mixtures.index = mixtures.index.astype(str)
        mixtures.index.name = "run"
        mixtures.columns = [str(c) for c in mixtures.columns]
        if mixtures.index.has_duplicates:
            dup = mixtures.index[mixtures.index.duplicated()].unique()
            raise self.fail(
                f"run id(s) appear twice in the mixture table: {describe_locations(dup)}"
            )
        for col in ("step", "loss"):
            obs[col] = self._numeric(obs[col], f"column {col!r}", obs["where"])
        if SIZE_COLUMN in obs.columns:
            obs[SIZE_COLUMN] = self._numeric(obs[SIZE_COLUMN], "the model size", obs["where"])
        for col in mixtures.columns:
            where = [self.run_label(r) for r in mixtures.index]
            mixtures[col] = self._numeric(mixtures[col], f"proportion of {col!r}", where)
        return mixtures, obs

    def _numeric(self, values: pd.Series, what: str, where: Sequence[str]) -> pd.Series:
        return to_numeric(values, what, where, self.source)

    def check_mixtures(self, mixtures: pd.DataFrame, sum_tol: float) -> pd.DataFrame:
        """Proportions in [0, 1], rows summing to 1 within ``sum_tol`` (then renormalised)."""
        values = mixtures.to_numpy(dtype=float)
        for test, what in (
            (~np.isfinite(values), "are missing or not finite"),
            (values < 0, "are negative"),
            (values > 1, "are greater than 1"),
        ):
            if test.any():
                ex = cell_examples(
                    test,
                    lambda i, j: (
                        f"{self.run_label(mixtures.index[i])}, "
                        f"{mixtures.columns[j]!r} = {values[i, j]:g}"
                    ),
                )
                hint = ""
                if what == "are greater than 1" and np.allclose(values.sum(axis=1), 100, rtol=1e-3):
                    hint = (
                        ": every run's shares sum to 100, so they look like percent; divide "
                        "them by 100"
                    )
                raise self.fail(
                    f"{len(ex)} proportion(s) {what} ({describe_locations(ex)}); "
                    f"proportions must lie in [0, 1]{hint}"
                )
        sums = values.sum(axis=1)
        off = np.abs(sums - 1.0)
        bad = np.flatnonzero(off > sum_tol)
        if bad.size:
            ex = [f"{self.run_label(mixtures.index[i])} sums to {sums[i]:.6g}" for i in bad]
            raise self.fail(
                f"{bad.size} mixture(s) do not sum to 1 within tolerance {sum_tol:g} "
                f"({describe_locations(ex)}); fix the proportions, check that every training "
                "domain has a column, or raise the tolerance (sum_tol / --sum-tol)"
            )
        # Rows off by no more than float rounding are kept exactly as given.
        fix = off > 1e-9
        if fix.any():
            self.note(
                f"{int(fix.sum())} mixture(s) summed to within {sum_tol:g} of 1 (largest "
                f"deviation {off.max():.2g}) and were renormalised to sum to 1"
            )
            mixtures = mixtures.copy()
            mixtures.loc[fix] = values[fix] / sums[fix, None]
        return mixtures

    def check_observations(self, obs: pd.DataFrame, missing_policy: MissingPolicy) -> pd.DataFrame:
        """Losses finite and > 0 (missing ones refused or dropped), steps finite and > 0, and
        both of a plausible magnitude (:meth:`check_magnitudes`)."""
        loss, step = obs["loss"].to_numpy(), obs["step"].to_numpy()
        nan_loss = np.isnan(loss)
        if nan_loss.any():
            where = obs["where"][nan_loss]
            if missing_policy == "drop":
                self.note(
                    f"dropped {int(nan_loss.sum())} observation(s) with a missing loss "
                    f"({describe_locations(where)})"
                )
                obs = obs[~nan_loss].reset_index(drop=True)
                loss, step = obs["loss"].to_numpy(), obs["step"].to_numpy()
            else:
                raise self.fail(
                    f"{int(nan_loss.sum())} loss value(s) are missing/NaN "
                    f"({describe_locations(where)}); fill them, remove those rows, or pass "
                    "missing_policy='drop' (--missing drop) to drop them with a count"
                )
        negative = bool((loss < 0).all())  # a whole column below 0: a log-likelihood
        checks = (
            (np.isinf(loss), "loss value(s) are infinite", "fix or remove those rows"),
            (
                loss <= 0,
                "loss value(s) are <= 0 (a cross-entropy loss is positive)",
                "every loss is negative: a log-likelihood? give its negative"
                if negative
                else "a logging error? fix or remove those rows",
            ),
            (~np.isfinite(step), "step value(s) are missing or not finite", "fix those rows"),
            (
                step <= 0,
                "step value(s) are <= 0 (the law needs s > 0; drop initial checkpoints)",
                "remove those rows",
            ),
        )
        for test, what, fix in checks:
            if test.any():
                values = obs["loss"] if "loss" in what else obs["step"]
                ex = [f"{w} ({v:g})" for w, v in zip(obs["where"][test], values[test], strict=True)]
                raise self.fail(f"{int(test.sum())} {what}: {describe_locations(ex)}; {fix}")
        self.check_magnitudes(obs)
        return obs

    def check_magnitudes(self, obs: pd.DataFrame) -> None:
        """Refuse absurd values: losses and steps outside a plausible range, and losses orders
        of magnitude away from the other losses of their domain.

        A loss is a mean cross-entropy in nats per token: it must lie in ``LOSS_RANGE`` and
        within ``max(OUTLIER_ORDERS, OUTLIER_MADS * MAD)`` orders of magnitude of its domain's
        median (MAD: the scaled median absolute deviation of the domain's ``log10`` losses, so
        that a domain whose losses legitimately spread widely is not flagged). A step or token
        count must lie in ``STEP_RANGE``. Such values are unit or typing errors (a perplexity, a
        sum over tokens, a misplaced exponent) that would silently distort the fit.

        Examples
        --------
        >>> obs = pd.DataFrame({"run": ["a", "b", "c"], "step": [10.0, 10.0, 10.0],
        ...                     "domain": ["web"] * 3, "loss": [3.1, 2.9, 3120.0],
        ...                     "where": ["line 2", "line 3", "line 4"]})
        >>> Validator("f.csv", [], {}).check_magnitudes(obs)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        bimix_bayes.data.table.DataError: f.csv: 1 loss value(s) lie more than a factor 1000 ...
        """
        loss, step = obs["loss"].to_numpy(dtype=float), obs["step"].to_numpy(dtype=float)
        lo, hi = LOSS_RANGE
        log_loss = np.log10(loss)
        center = pd.Series(log_loss).groupby(obs["domain"].to_numpy()).transform("median")
        center = center.to_numpy()
        spread = pd.Series(np.abs(log_loss - center)).groupby(obs["domain"].to_numpy())
        mad = 1.4826 * spread.transform("median").to_numpy()
        limit = np.maximum(OUTLIER_ORDERS, OUTLIER_MADS * mad)
        unit_hint = (
            "a loss is the mean cross-entropy per token in nats: is the column a perplexity "
            "(take its log), a sum over tokens (divide by their count) or mistyped?"
        )
        checks = (
            (loss > hi, f"loss value(s) are implausibly large (> {hi:g} nats)", unit_hint),
            (loss < lo, f"loss value(s) are implausibly small (< {lo:g} nats)", unit_hint),
            (
                np.abs(log_loss - center) > limit,
                f"loss value(s) lie more than a factor {10**OUTLIER_ORDERS:g} (and "
                f"{OUTLIER_MADS:g} median absolute deviations of log loss) from the median loss "
                "of their domain",
                "a unit, exponent or decimal-point error?",
            ),
            (
                step > STEP_RANGE[1],
                f"step value(s) are implausibly large (> {STEP_RANGE[1]:g}, more tokens than "
                "any training run)",
                "a unit or exponent error?",
            ),
            (
                step < STEP_RANGE[0],
                f"step value(s) are below {STEP_RANGE[0]:g} (a step or token count starts at 1)",
                "if the column counts thousands, millions or billions of tokens, or epochs, "
                "convert it to a count.",
            ),
        )
        for test, what, hint in checks:
            if test.any():
                idx = np.flatnonzero(test)
                ex = [
                    f"{obs['where'].iat[i]} (run {obs['run'].iat[i]!r}, domain "
                    f"{obs['domain'].iat[i]!r}: loss {loss[i]:.4g}, step {step[i]:.6g}"
                    + (f"; domain median {10 ** center[i]:.4g})" if "median" in what else ")")
                    for i in idx
                ]
                raise self.fail(
                    f"{idx.size} {what}: {describe_locations(ex)}; {hint} Fix or remove those rows"
                )

    def check_domains(self, mixtures: pd.DataFrame, obs: pd.DataFrame) -> None:
        """Every run with losses has a mixture; evaluation domains without a proportion column
        are evaluation-only targets (noted), unless their name looks like a misspelt column."""
        unknown_runs = sorted(set(obs["run"]) - set(mixtures.index))
        if unknown_runs:
            raise self.fail(
                f"{len(unknown_runs)} run(s) have losses but no mixture: "
                f"{describe_locations(unknown_runs)}"
            )
        no_prop = [str(d) for d in pd.unique(obs["domain"]) if d not in mixtures.columns]
        if not no_prop:
            return
        columns = {_plain(c): str(c) for c in mixtures.columns}
        misspelt = {d: columns[_plain(d)] for d in no_prop if _plain(d) in columns}
        if misspelt:
            pairs = ", ".join(f"{d!r} vs column {c!r}" for d, c in misspelt.items())
            raise self.fail(
                f"evaluation domain(s) {list(misspelt)} have losses but no proportion column of "
                f"the same name, though a column differs only in case or punctuation ({pairs}). "
                "Rename the columns so they match exactly"
            )
        evaluated = set(map(str, pd.unique(obs["domain"])))
        silent = [str(c) for c in mixtures.columns if str(c) not in evaluated]
        typo = evaluation_only_hint(no_prop, silent)
        if typo.startswith("; did you mean"):  # beside a training domain with no losses
            typo += " (a training domain with no losses of its own)"
        self.note(
            f"evaluation domain(s) {no_prop} are not training domains (no proportion column): "
            "kept as evaluation-only targets, whose loss every training share may move. Only a "
            "law with cross-domain terms fits them (--law loglinear); BiMix refuses them. Leave "
            f"them out with exclude_domains / --exclude-domain{typo}"
        )

    def check_sizes(self, obs: pd.DataFrame) -> None:
        """Model sizes (when the data have a size column) must be finite and > 0."""
        if SIZE_COLUMN not in obs.columns:
            return
        size = obs[SIZE_COLUMN].to_numpy(dtype=float)
        bad = ~(np.isfinite(size) & (size > 0))
        if bad.any():
            ex = [f"{w}: {v:g}" for w, v in zip(obs["where"][bad], size[bad], strict=True)]
            raise self.fail(
                f"{int(bad.sum())} model size(s) are missing, not finite or not > 0 "
                f"({describe_locations(ex)}); give every row its model's parameter count"
            )
        distinct = np.unique(size)
        close = [(a, b) for a, b in itertools.pairwise(distinct) if b < 1.05 * a]
        if close:
            pairs = ", ".join(f"{a:.4g} and {b:.4g}" for a, b in close)
            self.note(
                f"model sizes {pairs} differ by less than 5 %: one size written two ways (680M "
                "and 0.7B)? Each is fitted as its own size; write every run's size one way"
            )

    def check_runs_across_sizes(self, mixtures: pd.DataFrame, obs: pd.DataFrame) -> None:
        """Note mixtures logged under one run id per size (W&B names each run): in a fit of
        several sizes a run id names a mixture, whose runs at every size share their run
        effects, so such ids make each size's run an unrelated mixture (SlimPajama, 14
        mixtures at 4 sizes fitted that way: the held-out size's mean relative error 1.23 %
        against 0.42 % with one id per mixture).

        Examples
        --------
        >>> import warnings
        >>> mix = pd.DataFrame({"a": [0.3, 0.3, 0.6], "b": [0.7, 0.7, 0.4]},
        ...                    index=["x-122M", "x-310M", "y-122M"])
        >>> obs = pd.DataFrame({"run": ["x-122M", "x-310M", "y-122M"], "size": [1.22e8, 3.1e8,
        ...                     1.22e8]})
        >>> v = Validator("f.csv", [], {})
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     v.check_runs_across_sizes(mix, obs)
        >>> v.notes[0][:63]
        "1 mixture(s) are logged under a run id per model size (e.g. 'x-"
        """
        if SIZE_COLUMN not in obs.columns:
            return
        sizes_of = obs.groupby("run", sort=False)[SIZE_COLUMN].nunique()
        single = mixtures.loc[[r for r in mixtures.index if sizes_of.get(r, 0) == 1]]
        if single.empty:
            return
        key = single.round(12).astype(str).agg("|".join, axis=1)
        size_of = obs.groupby("run", sort=False)[SIZE_COLUMN].first()
        split = [
            list(runs)
            for runs in key.groupby(key, sort=False).groups.values()
            if size_of.loc[list(runs)].nunique() > 1
        ]
        if not split:
            return
        example = ", ".join(repr(r) for r in split[0][:3]) + (", ..." if len(split[0]) > 3 else "")
        self.note(
            f"{len(split)} mixture(s) are logged under a run id per model size (e.g. {example}): "
            "each is fitted as a separate mixture, so its runs do not share their run effects "
            "across sizes (most of what a size fit learns); give each mixture one id at every "
            "size (e.g. --run-col with a mixture column)"
        )

    def check_spikes(self, obs: pd.DataFrame) -> None:
        """Note losses more than :data:`SPIKE_FACTOR` above or below both neighbouring
        checkpoints of their curve (a logging glitch, a loss spike): kept, since a real spike
        is data, but said, since one such point moves a least-squares fit visibly (a 10x spike
        took R2 on log loss from 0.99 to 0.67).

        Examples
        --------
        >>> import warnings
        >>> obs = pd.DataFrame({"run": "a", "step": [1.0, 2.0, 3.0, 4.0], "domain": "web",
        ...                     "loss": [4.0, 43.5, 3.8, 3.7], "where": ["l2", "l3", "l4", "l5"]})
        >>> v = Validator("f.csv", [], {})
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     v.check_spikes(obs)
        >>> v.notes[0][:73]
        '1 loss value(s) lie more than a factor 2 above or below both neighbouring'
        """
        keys = [*run_keys(obs), "domain"]
        ordered = obs.sort_values([*keys, "step"], kind="stable")
        log_loss = np.log(ordered["loss"].to_numpy(dtype=float))
        same = ordered[keys].shift(1).eq(ordered[keys]).all(axis=1).to_numpy()
        before = np.where(same, np.roll(log_loss, 1), np.nan)
        after = np.where(np.roll(same, -1), np.roll(log_loss, -1), np.nan)  # same curve next
        limit = np.log(SPIKE_FACTOR)
        with np.errstate(invalid="ignore"):
            spike = (log_loss - np.fmax(before, after) > limit) & np.isfinite(before + after)
            spike |= (np.fmin(before, after) - log_loss > limit) & np.isfinite(before + after)
        if not spike.any():
            return
        idx = np.flatnonzero(spike)
        loss = ordered["loss"].to_numpy(dtype=float)
        where = ordered["where"].to_numpy() if "where" in ordered else ordered.index.to_numpy()
        examples = [
            f"{where[i]} ({loss[i]:.4g} between {loss[i - 1]:.4g} and {loss[i + 1]:.4g})"
            for i in idx
        ]
        self.note(
            f"{idx.size} loss value(s) lie more than a factor {SPIKE_FACTOR:g} above or below "
            f"both neighbouring checkpoints of their run: {describe_locations(examples)}; kept "
            "(a logging glitch? remove those rows; a real loss spike moves the fit)"
        )

    def check_domain_coverage(self, obs: pd.DataFrame) -> None:
        """Note the runs without losses of a domain most runs have (a domain misspelt in one
        run's rows, or its losses not logged): nothing is dropped, but a run missing a domain
        informs the others less, and the user should know.

        Examples
        --------
        >>> import warnings
        >>> obs = pd.DataFrame({"run": ["a", "a", "b", "b", "c"], "step": 1.0,
        ...                     "domain": ["web", "code", "web", "code", "web"], "loss": 2.0})
        >>> v = Validator("f.csv", [], {})
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     v.check_domain_coverage(obs)
        >>> v.notes
        ["1 run(s) have no losses of 'code', which 2 of 3 runs have: run 'c'"]
        """
        runs_of = obs.groupby("domain", sort=False)["run"].unique()
        n_runs = obs["run"].nunique()
        for domain, runs in runs_of.items():
            missing = sorted(set(obs["run"]) - set(runs))
            if not missing or len(runs) < n_runs / 2:
                continue
            # a misspelling is a domain few runs have (the incomplete runs' odd name)
            rare = [str(d) for d, r in runs_of.items() if d != domain and len(r) < n_runs / 2]
            typo = near_names(rare, [str(domain)])
            self.note(
                f"{len(missing)} run(s) have no losses of {domain!r}, which {len(runs)} of "
                f"{n_runs} runs have: {describe_locations([self.run_label(r) for r in missing])}"
                + (f" (a misspelt domain in their rows{typo})" if typo else "")
            )

    def check_duplicates(self, obs: pd.DataFrame) -> pd.DataFrame:
        """Merge exact duplicate observations; refuse a (run, step, domain) with two losses."""
        key = ["run", *run_keys(obs)[1:], "step", "domain"]
        dup = obs.duplicated(key, keep=False)
        if not dup.any():
            return obs
        groups = obs[dup].groupby(key, sort=False)
        conflicting = groups["loss"].nunique() > 1
        if conflicting.any():
            ex = []
            for k in conflicting[conflicting].index:
                rows = groups.get_group(k)
                ex.append(
                    f"run {k[0]!r} step {k[-2]:g} domain {k[-1]!r}: "
                    f"{' vs '.join(f'{x:g}' for x in rows['loss'])} "
                    f"({' and '.join(rows['where'])})"
                )
            raise self.fail(
                f"{int(conflicting.sum())} (run, step, domain) key(s) have different losses "
                f"({describe_locations(ex)}). If the file holds several model sizes or seeds, "
                "select one with a group column (group_col / --group-col) or make the size a "
                "dimension (size_col / --size-col); seeds of one mixture are best given each "
                "its own run id (e.g. mix3_s1, mix3_s2): they are then replicates, which measure "
                "the seed noise; otherwise remove the wrong rows"
            )
        n_extra = int(dup.sum() - groups.ngroups)
        self.note(
            f"merged {n_extra} exact duplicate observation row(s) (same run, step, domain "
            f"and loss; e.g. {describe_locations(list(obs['where'][dup])[:2])})"
        )
        return obs.drop_duplicates(key).reset_index(drop=True)

    def apply_zero_policy(
        self, mixtures: pd.DataFrame, obs: pd.DataFrame, policy: ZeroPolicy, epsilon: float
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Zero own-domain shares: refuse, drop those observations, set them to ``epsilon``, or
        keep them (for a law finite at zero shares)."""
        rows = mixtures.index.get_indexer(obs["run"])
        cols = mixtures.columns.get_indexer(obs["domain"])
        # evaluation-only domains (cols == -1) have no own share to be zero
        zero = (cols >= 0) & (mixtures.to_numpy(dtype=float)[rows, np.maximum(cols, 0)] == 0)
        if not zero.any():
            return mixtures, obs
        pairs = obs.loc[zero, ["run", "domain"]].drop_duplicates()
        ex = [f"run {r!r} / {d!r}" for r, d in pairs.itertuples(index=False)]
        what = (
            f"{int(zero.sum())} observation(s) in {len(pairs)} (run, domain) pair(s) have a "
            f"zero share of their own domain ({describe_locations(ex)})"
        )
        if policy == "refuse":
            raise self.fail(
                f"{what}; BiMix's r^-alpha is infinite at r = 0. Choose zero_policy='drop' "
                "(--zero-policy drop) to drop those observations, 'epsilon' to replace zero "
                "shares by a small epsilon and renormalise, or 'keep' to keep them for a law "
                "finite at zero shares (--zero-policy keep --law loglinear)"
            )
        if policy == "keep":  # for a law finite at zero shares (loglinear)
            self.note(f"{what}: kept for a law finite at zero shares (--law loglinear)")
            return mixtures, obs
        if policy == "drop":
            self.note(f"dropped {what}")
            return mixtures, obs[~zero].reset_index(drop=True)
        # policy == "epsilon" (validated by check_options)
        is_zero = mixtures == 0
        fixed = mixtures.mask(is_zero, epsilon)
        fixed = fixed.div(fixed.sum(axis=1), axis=0)
        self.note(
            f"{what}: zero shares in {int(is_zero.any(axis=1).sum())} mixture(s) set "
            f"to epsilon = {epsilon:g} and those mixtures renormalised"
        )
        return fixed, obs

    def drop_early_checkpoints(self, obs: pd.DataFrame, min_step: float) -> pd.DataFrame:
        """Leave out observations before ``min_step``, saying how many; refuse to leave none."""
        if not np.isfinite(min_step) or min_step < 0:
            raise DataError(f"{self.source}: min_step must be a finite step >= 0, got {min_step}")
        early = obs["step"].to_numpy(dtype=float) < min_step
        if early.all():
            raise DataError(
                f"{self.source}: every observation is before min_step {min_step:g} (the last "
                f"step is {obs['step'].max():g}); lower --min-step"
            )
        if early.any():
            steps = np.unique(obs.loc[early, "step"].to_numpy(dtype=float))
            self.note(
                f"left out {int(early.sum())} observation(s) before step {min_step:g} "
                f"(--min-step; {len(steps)} checkpoint step(s) from {steps[0]:g} to {steps[-1]:g})"
            )
        return obs[~early]

    def check_repeated_checkpoints(self, obs: pd.DataFrame, drop: bool) -> pd.DataFrame:
        """Find runs whose last two checkpoints have identical losses in every domain."""
        keys = run_keys(obs)
        wide = obs.pivot_table(index=[*keys, "step"], columns="domain", values="loss")
        repeated = []
        for run, frame in wide.groupby(level=keys, sort=False):
            if len(frame) < 2:
                continue
            last, prev = frame.iloc[-1], frame.iloc[-2]
            both = last.notna() & prev.notna()
            if both.any() and np.array_equal(last[both].to_numpy(), prev[both].to_numpy()):
                repeated.append((run, frame.index[-2][-1], frame.index[-1][-1]))
        if not repeated:
            return obs
        ex = [f"run {_run_text(r)}: {a:g} and {b:g}" for r, a, b in repeated]
        if drop:
            self.note(
                f"dropped the earlier of two checkpoints with identical losses in every "
                f"domain in {len(repeated)} run(s) ({describe_locations(ex)})"
            )
            drop_keys = {(*(r if isinstance(r, tuple) else (r,)), a) for r, a, _ in repeated}
            rows = zip(*(obs[k] for k in keys), obs["step"], strict=True)
            keep = [tuple(row) not in drop_keys for row in rows]
            return obs[np.asarray(keep)].reset_index(drop=True)
        self.note(
            f"{len(repeated)} run(s) end with two checkpoints whose losses are identical in "
            f"every domain ({describe_locations(ex)}): probably one checkpoint logged twice; "
            "pass drop_repeated_checkpoints=True (--drop-repeated-checkpoints) to keep one"
        )
        return obs


def run_keys(obs: pd.DataFrame) -> list[str]:
    """The columns that identify one training run's curve: the run, and its model size when the
    data have a size dimension (a run id then names a mixture trained at several sizes)."""
    return ["run", SIZE_COLUMN] if SIZE_COLUMN in obs.columns else ["run"]


def _run_text(key: object) -> str:
    """``'a'`` or ``'a' at size 1.22e+08`` for a run key of :func:`run_keys`."""
    if isinstance(key, tuple) and len(key) == 2:
        return f"{key[0]!r} at size {key[1]:.4g}"
    return repr(key[0] if isinstance(key, tuple) else key)


def _plain(name: object) -> str:
    """A domain name without case and punctuation (to catch near-miss column names)."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())
