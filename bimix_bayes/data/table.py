"""The canonical data table: training runs (their mixtures) and loss observations.

Everything in the package consumes a :class:`MixtureData`, built either by the file loaders in
:mod:`bimix_bayes.data.loaders` or directly from two pandas frames with
:meth:`MixtureData.from_frames`. Both go through the same validation, once, at the door:

* ``mixtures``: one row per training run (index ``run``), one column per training domain, each a
  proportion in [0, 1]; each row sums to 1 within ``sum_tol`` (then renormalised exactly).
* ``observations``: columns ``run``, ``step``, ``domain`` (the evaluation domain), ``loss``; the
  step is a step count or a token count (``volume``), > 0; the loss is finite and > 0.

BiMix maps an evaluation domain to the training domain of the same name, so every evaluation
domain must have a proportion column.

Zero shares. ``r = 0`` is outside the law (``r**-alpha`` is infinite). ``zero_policy`` decides:
``"refuse"`` (default) raises an error saying how many observations and where; ``"drop"`` removes
the observations of a domain in the runs that gave it a zero share, and says how many;
``"epsilon"`` replaces every zero share by ``epsilon`` (default 1e-4) and renormalises each
affected mixture to sum to 1 (the other shares shrink by a factor ``1 / (1 + k * epsilon)``).

Nothing is dropped silently: every change the validation makes (renormalised rows, identical
duplicates merged, dropped observations) is recorded in :attr:`MixtureData.notes` and emitted as a
:class:`DataWarning`.

Examples
--------
>>> import pandas as pd
>>> mixtures = pd.DataFrame({"web": [0.7, 0.3], "code": [0.3, 0.7]}, index=["r1", "r2"])
>>> obs = pd.DataFrame({"run": ["r1", "r1", "r2", "r2"], "step": [100, 200, 100, 200],
...                     "domain": ["web", "code", "web", "code"], "loss": [3.1, 2.0, 3.4, 1.7]})
>>> data = MixtureData.from_frames(mixtures, obs, min_steps=1, min_mixtures=1)
>>> data.domains, data.n_runs, len(data.observations)
(('web', 'code'), 2, 4)
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "DataError",
    "DataWarning",
    "MixtureData",
    "ZeroPolicy",
    "prediction_shares",
    "to_numeric",
]

ZeroPolicy = Literal["refuse", "drop", "epsilon"]
MissingPolicy = Literal["refuse", "drop"]
Volume = Literal["steps", "tokens"]

OBS_COLUMNS = ("run", "step", "domain", "loss")
_MAX_EXAMPLES = 5


class DataError(ValueError):
    """Input data the package cannot use; the message names the source, where, what and the fix."""


class DataWarning(UserWarning):
    """Something the validation changed in the data (and recorded in ``MixtureData.notes``)."""


def describe_locations(where: Sequence[str], total: int | None = None) -> str:
    """Format up to five locations and the total count: ``"line 3, line 9 (and 4 more)"``."""
    where = list(where)
    total = len(where) if total is None else total
    shown = ", ".join(where[:_MAX_EXAMPLES])
    more = total - min(len(where), _MAX_EXAMPLES)
    return shown + (f" (and {more} more)" if more > 0 else "")


_MISSING_WORDS = frozenset({"", "nan", "na", "n/a", "null", "none", "<na>"})


def to_numeric(values: pd.Series, what: str, where: Sequence[str], source: str) -> pd.Series:
    """Parse cells as floats; missing cells become NaN, any other non-number is a DataError.

    ``what`` names the column in messages and ``where`` locates each cell (``"line 5"``).

    Examples
    --------
    >>> to_numeric(pd.Series(["1.5", "", "2e3"]), "column 'step'", ["l2", "l3", "l4"], "f.csv")
    0       1.5
    1       NaN
    2    2000.0
    dtype: float64
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    as_text = values.astype(str).str.strip()
    parsed = pd.to_numeric(as_text, errors="coerce")
    bad = parsed.isna() & ~as_text.str.lower().isin(_MISSING_WORDS) & values.notna()
    if bad.any():
        idx = np.flatnonzero(bad.to_numpy())
        examples = [f"{where[i]}: {as_text.iloc[i]!r}" for i in idx]
        raise DataError(
            f"{source}: {what}: {len(idx)} cell(s) are not numbers "
            f"({describe_locations(examples)}); fix or remove those rows"
        )
    return parsed.astype(float)


def prediction_shares(mixtures: pd.DataFrame | pd.Series, domains: Sequence[str]) -> pd.DataFrame:
    """The shares of ``domains`` in each mixture to predict at, checked to lie in (0, 1].

    ``mixtures`` has one row per mixture (its index names it) and a column per domain; extra
    columns (other training domains) are ignored. A Series is one mixture.

    Examples
    --------
    >>> prediction_shares(pd.Series({"web": 0.6, "code": 0.4}, name="mine"), ["code"])
          code
    mine   0.4
    """
    if isinstance(mixtures, pd.Series):
        mixtures = mixtures.to_frame().T
    missing = [d for d in domains if d not in mixtures.columns]
    if missing:
        raise DataError(
            f"mixtures lack the fitted domain(s) {missing}; columns: {list(mixtures.columns)}"
        )
    shares = mixtures[list(domains)].astype(float)
    bad = ~((shares > 0) & (shares <= 1)).to_numpy()
    if bad.any():
        rows, cols = np.nonzero(bad)
        ex = [
            f"{shares.index[i]!r}/{shares.columns[j]!r} = {shares.iat[i, j]:g}"
            for i, j in zip(rows, cols, strict=True)
        ]
        raise DataError(
            f"mixture shares must lie in (0, 1] for prediction (BiMix is infinite "
            f"at r = 0): {describe_locations(ex)}"
        )
    totals = mixtures.select_dtypes("number").sum(axis=1)
    off = totals[(totals - 1).abs() > 1e-3]
    if len(off):
        warnings.warn(
            f"{len(off)} mixture(s) do not sum to 1 over their columns "
            f"({describe_locations([f'{i!r}: {v:.4g}' for i, v in off.items()])}); the shares "
            "of the fitted domains are used as given",
            DataWarning,
            stacklevel=3,
        )
    return shares


@dataclass(frozen=True)
class MixtureData:
    """Validated runs and loss observations. Build with :meth:`from_frames` or a loader.

    Attributes
    ----------
    mixtures
        Index ``run`` (str); one column per training domain; rows sum to 1.
    observations
        Columns ``run`` (str), ``step`` (float, > 0), ``domain`` (str), ``loss`` (float, > 0),
        sorted by domain, run and step.
    volume
        ``"steps"`` or ``"tokens"``: what the ``step`` column counts.
    group
        The group (model size, seed...) these runs were selected from, if any.
    source
        Where the data came from (a file path, ``"simulated"``...).
    notes
        Everything the validation changed, in words.
    """

    mixtures: pd.DataFrame
    observations: pd.DataFrame
    volume: Volume = "steps"
    group: str | None = None
    source: str = "<in memory>"
    notes: tuple[str, ...] = field(default=())

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_frames(
        cls,
        mixtures: pd.DataFrame,
        observations: pd.DataFrame,
        *,
        volume: Volume = "steps",
        group: str | None = None,
        source: str = "<in memory>",
        locations: Sequence[str] | None = None,
        run_locations: Mapping[str, str] | None = None,
        zero_policy: ZeroPolicy = "refuse",
        epsilon: float = 1e-4,
        sum_tol: float = 1e-3,
        missing_policy: MissingPolicy = "refuse",
        drop_repeated_checkpoints: bool = False,
        min_mixtures: int = 2,
        min_steps: int = 3,
        notes: Sequence[str] = (),
    ) -> MixtureData:
        """Validate two frames and return the canonical table.

        Parameters
        ----------
        mixtures
            One row per run (the index is the run id), one numeric column per training domain.
        observations
            Columns ``run``, ``step``, ``domain``, ``loss`` (one row per measured loss).
        volume
            ``"steps"`` or ``"tokens"``.
        locations
            For error messages: where each observation row came from (``"line 12, column
            'c4_loss'"``); defaults to ``"row i"``.
        run_locations
            For error messages: where each run's mixture came from (``"line 3"``).
        zero_policy, epsilon
            What to do with observations of a domain that has a zero share in its run (see the
            module docstring).
        sum_tol
            Largest accepted ``|sum(r) - 1|``; rows within it are renormalised to sum to exactly 1.
        missing_policy
            ``"refuse"`` (default) or ``"drop"`` observations whose loss is missing (NaN).
        drop_repeated_checkpoints
            Some logs repeat a run's last checkpoint under two step counts with identical losses
            in every domain; by default this is reported, with ``True`` the earlier one is dropped.
        min_mixtures, min_steps
            The least number of distinct shares and of distinct steps each domain needs so that
            the proportion effect can be separated from the step effect (BiMix needs 2 and 3).

        Raises
        ------
        DataError
            On any problem, naming the source, the rows or columns, and how to fix it.
        """
        _check_options(volume, zero_policy, epsilon, missing_policy, sum_tol)
        v = _Validator(source, list(notes), run_locations or {})
        mixtures, observations = v.check_frames(mixtures, observations, locations)
        v.check_domains(mixtures, observations)
        mixtures = v.check_mixtures(mixtures, sum_tol)
        observations = v.check_observations(observations, missing_policy)
        observations = v.check_duplicates(observations)
        mixtures, observations = v.apply_zero_policy(mixtures, observations, zero_policy, epsilon)
        observations = v.check_repeated_checkpoints(observations, drop_repeated_checkpoints)
        observations = observations.sort_values(["domain", "run", "step"], kind="stable")
        observations = observations.reset_index(drop=True)[list(OBS_COLUMNS)]
        used_runs = pd.unique(observations["run"])
        unused = [r for r in mixtures.index if r not in set(used_runs)]
        if unused:
            v.note(
                f"{len(unused)} run(s) have a mixture but no loss observations: "
                f"{describe_locations(unused)}; they are kept in `mixtures` only"
            )
        data = cls(
            mixtures=mixtures,
            observations=observations,
            volume=volume,
            group=group,
            source=source,
            notes=tuple(v.notes),
        )
        data.check_design(min_mixtures=min_mixtures, min_steps=min_steps)
        return data

    # ---------------------------------------------------------------- views
    @property
    def domains(self) -> tuple[str, ...]:
        """Evaluation domains with observations, in the order of the mixture columns."""
        present = set(self.observations["domain"])
        return tuple(d for d in self.mixtures.columns if d in present)

    @property
    def training_domains(self) -> tuple[str, ...]:
        """All training domains (the mixture columns)."""
        return tuple(self.mixtures.columns)

    @property
    def runs(self) -> tuple[str, ...]:
        """Run ids with at least one observation, in the order of ``mixtures``."""
        present = set(self.observations["run"])
        return tuple(r for r in self.mixtures.index if r in present)

    @property
    def n_runs(self) -> int:
        """Number of runs with observations."""
        return len(self.runs)

    def shares(self) -> np.ndarray:
        """Each observation's own-domain share ``r`` (aligned with ``observations``)."""
        m = self.mixtures
        rows = m.index.get_indexer(self.observations["run"])
        cols = m.columns.get_indexer(self.observations["domain"])
        return m.to_numpy(dtype=float)[rows, cols]

    def for_domain(self, domain: str) -> pd.DataFrame:
        """Observations of one evaluation domain with their share column ``r``."""
        obs = self.observations.assign(r=self.shares())
        out = obs[obs["domain"] == domain]
        if out.empty:
            raise KeyError(f"no observations for domain {domain!r}; domains: {list(self.domains)}")
        return out.reset_index(drop=True)

    def subset(
        self, runs: Sequence[str] | None = None, max_step: float | None = None
    ) -> MixtureData:
        """A copy restricted to some runs and/or steps ``<= max_step`` (no re-validation)."""
        obs = self.observations
        if runs is not None:
            obs = obs[obs["run"].isin(list(runs))]
        if max_step is not None:
            obs = obs[obs["step"] <= max_step]
        mixtures = self.mixtures.loc[[r for r in self.mixtures.index if r in set(obs["run"])]]
        return replace(self, mixtures=mixtures, observations=obs.reset_index(drop=True))

    def fingerprint(self) -> str:
        """SHA-256 of the canonical tables: equal data give equal hashes."""
        h = hashlib.sha256()
        h.update(self.volume.encode())
        mixtures = self.mixtures.sort_index(axis=0).sort_index(axis=1)
        h.update(mixtures.to_csv(float_format="%.17g").encode())
        h.update(self.observations.to_csv(index=False, float_format="%.17g").encode())
        return h.hexdigest()

    def to_long(self) -> pd.DataFrame:
        """One row per observation with the run's proportions as ``p_<domain>`` columns.

        This is the long layout :func:`bimix_bayes.data.loaders.load_data` reads back.
        """
        props = self.mixtures.add_prefix("p_")
        props.index.name = "run"
        out = self.observations.merge(props, left_on="run", right_index=True, how="left")
        if self.group is not None:
            out.insert(1, "group", self.group)
        return out

    def summary(self) -> str:
        """A one-paragraph description: runs, domains, steps, source."""
        steps = np.sort(self.observations["step"].unique())
        grp = f", group {self.group}" if self.group is not None else ""
        if steps.size == 0:
            return f"0 observations from {self.n_runs} runs{grp}; source: {self.source}"
        return (
            f"{len(self.observations)} observations from {self.n_runs} runs{grp}; "
            f"{len(self.domains)} evaluation domains ({', '.join(self.domains)}); "
            f"{len(steps)} distinct {self.volume} from {steps[0]:.6g} to {steps[-1]:.6g}; "
            f"source: {self.source}"
        )

    # ---------------------------------------------------------------- design check
    def check_design(self, *, min_mixtures: int = 2, min_steps: int = 3) -> None:
        """Raise :class:`DataError` if some domain cannot separate share from step effects.

        BiMix needs, per evaluation domain, at least two distinct shares of that domain (to see
        ``alpha``) and three distinct steps (to see ``B``, ``beta`` and ``C``).
        """
        problems = []
        for domain in self.domains:
            obs = self.for_domain(domain)
            n_r = obs["r"].nunique()
            n_s = obs["step"].nunique()
            if n_r < min_mixtures:
                problems.append(
                    f"domain {domain!r}: its {obs['run'].nunique()} run(s) give it "
                    f"{n_r} distinct share(s) (need {min_mixtures}); add runs with another share "
                    f"of {domain!r}"
                )
            if n_s < min_steps:
                problems.append(
                    f"domain {domain!r}: {n_s} distinct {self.volume} (need {min_steps} to fit "
                    f"B s^-beta + C); log more checkpoints"
                )
        if problems:
            raise DataError(
                f"{self.source}: too few distinct mixtures or {self.volume} to separate the "
                "proportion effect from the step effect:\n  " + "\n  ".join(problems)
            )


def _check_options(
    volume: str, zero_policy: str, epsilon: float, missing_policy: str, sum_tol: float
) -> None:
    """Refuse invalid settings at once, before any data is looked at."""
    if volume not in ("steps", "tokens"):
        raise ValueError(f"volume must be 'steps' or 'tokens', got {volume!r}")
    if zero_policy not in ("refuse", "drop", "epsilon"):
        raise ValueError(f"zero_policy must be 'refuse', 'drop' or 'epsilon', got {zero_policy!r}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must lie in (0, 1), got {epsilon!r}")
    if missing_policy not in ("refuse", "drop"):
        raise ValueError(f"missing_policy must be 'refuse' or 'drop', got {missing_policy!r}")
    if not sum_tol >= 0:
        raise ValueError(f"sum_tol must be >= 0, got {sum_tol!r}")


class _Validator:
    """The checks behind :meth:`MixtureData.from_frames`, with the source name and notes."""

    def __init__(self, source: str, notes: list[str], run_locations: Mapping[str, str]) -> None:
        self.source = source
        self.notes = notes
        self.run_locations = run_locations

    def run_label(self, run: str) -> str:
        where = self.run_locations.get(run)
        return f"run {run!r}" + (f" ({where})" if where else "")

    def fail(self, message: str) -> DataError:
        return DataError(f"{self.source}: {message}")

    def note(self, message: str) -> None:
        self.notes.append(message)
        warnings.warn(f"{self.source}: {message}", DataWarning, stacklevel=4)

    def check_frames(
        self, mixtures: pd.DataFrame, observations: pd.DataFrame, locations: Sequence[str] | None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        missing = [c for c in OBS_COLUMNS if c not in observations.columns]
        if missing:
            raise self.fail(
                f"observations lack column(s) {missing}; they need {list(OBS_COLUMNS)} "
                f"(found {list(observations.columns)})"
            )
        if mixtures.shape[1] == 0:
            raise self.fail("the mixture table has no domain columns")
        obs = observations[list(OBS_COLUMNS)].copy()
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
        for col in mixtures.columns:
            where = [self.run_label(r) for r in mixtures.index]
            mixtures[col] = self._numeric(mixtures[col], f"proportion of {col!r}", where)
        return mixtures, obs

    def _numeric(self, values: pd.Series, what: str, where: Sequence[str]) -> pd.Series:
        return to_numeric(values, what, where, self.source)

    def check_mixtures(self, mixtures: pd.DataFrame, sum_tol: float) -> pd.DataFrame:
        values = mixtures.to_numpy(dtype=float)
        for test, what in (
            (~np.isfinite(values), "are missing or not finite"),
            (values < 0, "are negative"),
            (values > 1, "are greater than 1"),
        ):
            if test.any():
                rows, cols = np.nonzero(test)
                ex = [
                    f"{self.run_label(mixtures.index[i])}, {mixtures.columns[j]!r} = "
                    f"{values[i, j]:g}"
                    for i, j in zip(rows, cols, strict=True)
                ]
                raise self.fail(
                    f"{len(rows)} proportion(s) {what} ({describe_locations(ex)}); "
                    "proportions must lie in [0, 1]"
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
        checks = (
            (np.isinf(loss), "loss value(s) are infinite"),
            (loss <= 0, "loss value(s) are <= 0 (a cross-entropy loss is positive)"),
            (~np.isfinite(step), "step value(s) are missing or not finite"),
            (step <= 0, "step value(s) are <= 0 (the law needs s > 0; drop initial checkpoints)"),
        )
        for test, what in checks:
            if test.any():
                values = obs["loss"] if "loss" in what else obs["step"]
                ex = [f"{w} ({v:g})" for w, v in zip(obs["where"][test], values[test], strict=True)]
                raise self.fail(f"{int(test.sum())} {what}: {describe_locations(ex)}")
        return obs

    def check_domains(self, mixtures: pd.DataFrame, obs: pd.DataFrame) -> None:
        unknown_runs = sorted(set(obs["run"]) - set(mixtures.index))
        if unknown_runs:
            raise self.fail(
                f"{len(unknown_runs)} run(s) have losses but no mixture: "
                f"{describe_locations(unknown_runs)}"
            )
        no_prop = [d for d in pd.unique(obs["domain"]) if d not in mixtures.columns]
        if no_prop:
            raise self.fail(
                f"evaluation domain(s) {no_prop} have losses but no proportion column; BiMix maps "
                f"each evaluation domain to the training domain of the same name (training "
                f"domains: {list(mixtures.columns)}). Rename the columns so they match, or "
                "exclude those domains (exclude_domains / --exclude-domain)"
            )

    def check_duplicates(self, obs: pd.DataFrame) -> pd.DataFrame:
        key = ["run", "step", "domain"]
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
                    f"run {k[0]!r} step {k[1]:g} domain {k[2]!r}: "
                    f"{' vs '.join(f'{x:g}' for x in rows['loss'])} "
                    f"({' and '.join(rows['where'])})"
                )
            raise self.fail(
                f"{int(conflicting.sum())} (run, step, domain) key(s) have different losses "
                f"({describe_locations(ex)}). If the file holds several model sizes or seeds, "
                "select one with a group column (group_col / --group-col); otherwise remove the "
                "wrong rows"
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
        rows = mixtures.index.get_indexer(obs["run"])
        cols = mixtures.columns.get_indexer(obs["domain"])
        zero = mixtures.to_numpy(dtype=float)[rows, cols] == 0
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
                "(--zero-policy drop) to drop those observations, or 'epsilon' to replace zero "
                "shares by a small epsilon and renormalise"
            )
        if policy == "drop":
            self.note(f"dropped {what}")
            return mixtures, obs[~zero].reset_index(drop=True)
        # policy == "epsilon" (validated by _check_options)
        is_zero = mixtures == 0
        fixed = mixtures.mask(is_zero, epsilon)
        fixed = fixed.div(fixed.sum(axis=1), axis=0)
        self.note(
            f"{what}: zero shares in {int(is_zero.any(axis=1).sum())} mixture(s) set "
            f"to epsilon = {epsilon:g} and those mixtures renormalised"
        )
        return fixed, obs

    def check_repeated_checkpoints(self, obs: pd.DataFrame, drop: bool) -> pd.DataFrame:
        """Find runs whose last two checkpoints have identical losses in every domain."""
        wide = obs.pivot_table(index=["run", "step"], columns="domain", values="loss")
        repeated = []
        for run, frame in wide.groupby(level="run", sort=False):
            if len(frame) < 2:
                continue
            last, prev = frame.iloc[-1], frame.iloc[-2]
            both = last.notna() & prev.notna()
            if both.any() and np.array_equal(last[both].to_numpy(), prev[both].to_numpy()):
                repeated.append((run, frame.index[-2][1], frame.index[-1][1]))
        if not repeated:
            return obs
        ex = [f"run {r!r}: {a:g} and {b:g}" for r, a, b in repeated]
        if drop:
            self.note(
                f"dropped the earlier of two checkpoints with identical losses in every "
                f"domain in {len(repeated)} run(s) ({describe_locations(ex)})"
            )
            drop_keys = {(r, a) for r, a, _ in repeated}
            keep = [(r, s) not in drop_keys for r, s in zip(obs["run"], obs["step"], strict=True)]
            return obs[np.asarray(keep)].reset_index(drop=True)
        self.note(
            f"{len(repeated)} run(s) end with two checkpoints whose losses are identical in "
            f"every domain ({describe_locations(ex)}): probably one checkpoint logged twice; "
            "pass drop_repeated_checkpoints=True (--drop-repeated-checkpoints) to keep one"
        )
        return obs
