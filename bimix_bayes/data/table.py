"""The canonical data table: training runs (their mixtures) and loss observations.

Everything in the package consumes a :class:`MixtureData`, built either by the file loaders in
:mod:`bimix_bayes.data.loaders` or directly from two pandas frames with
:meth:`MixtureData.from_frames`. Both go through the same validation
(:mod:`bimix_bayes.data.validate`), once, at the door:

* ``mixtures``: one row per training run (index ``run``), one column per training domain, each a
  proportion in [0, 1]; each row sums to 1 within ``sum_tol`` (then renormalised exactly).
* ``observations``: columns ``run``, ``step``, ``domain`` (the evaluation domain), ``loss``; the
  step is a step count or a token count (``volume``), > 0; the loss is finite and > 0. Absurd
  magnitudes are refused (:meth:`~bimix_bayes.data.validate.Validator.check_magnitudes`): a loss
  outside (1e-6, 1e4) nats or a factor 1000 away from its domain's median, a step below 1 or
  above 1e16.

BiMix maps an evaluation domain to the training domain of the same name, so every evaluation
domain must have a proportion column.

Zero shares. ``r = 0`` is outside the law (``r**-alpha`` is infinite). ``zero_policy`` decides:
``"refuse"`` (default) raises an error saying how many observations and where; ``"drop"`` removes
the observations of a domain in the runs that gave it a zero share, and says how many;
``"epsilon"`` replaces every zero share by ``epsilon`` (default 1e-4) and renormalises each
affected mixture to sum to 1 (the other shares shrink by a factor ``1 / (1 + k * epsilon)``);
``"keep"`` keeps them, for a law finite at zero shares (``loglinear``, :mod:`bimix_bayes.laws`):
a BiMix fit refuses such data.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from bimix_bayes.data.labels import near_names
from bimix_bayes.laws.schedule import DEFAULT_DECAY, LRSchedule, schedule_of

__all__ = [
    "SIZE_COLUMN",
    "DataError",
    "DataWarning",
    "MixtureData",
    "ZeroPolicy",
    "cell_examples",
    "check_known_columns",
    "describe_locations",
    "prediction_shares",
    "to_numeric",
]

ZeroPolicy = Literal["refuse", "drop", "epsilon", "keep"]
MissingPolicy = Literal["refuse", "drop"]
Volume = Literal["steps", "tokens"]

OBS_COLUMNS = ("run", "step", "domain", "loss")
#: The optional observation column of the model size (parameters) when sizes are a dimension.
SIZE_COLUMN = "size"
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


def cell_examples(mask: np.ndarray, describe: Callable[[int, int], str]) -> list[str]:
    """``describe(i, j)`` of every True cell of a 2-D ``mask``, row by row (for messages).

    Examples
    --------
    >>> cell_examples(np.array([[True, False], [False, True]]), lambda i, j: f"({i}, {j})")
    ['(0, 0)', '(1, 1)']
    """
    rows, cols = np.nonzero(mask)
    return [describe(int(i), int(j)) for i, j in zip(rows, cols, strict=True)]


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


def prediction_shares(
    mixtures: pd.DataFrame | pd.Series,
    domains: Sequence[str],
    *,
    training_domains: Sequence[str] | None = None,
    allow_zero: bool = False,
) -> pd.DataFrame:
    """The shares of ``domains`` in each mixture to predict at, checked to lie in (0, 1].

    ``allow_zero=True`` accepts zero shares (a law finite there, or the shares of other
    domains under a cross-domain law): then [0, 1].

    ``mixtures`` has one row per mixture (its index names it) and a column per domain; other
    training domains may be present. A Series is one mixture.

    With ``training_domains`` (the fit's mixture columns) a numeric column that is neither one
    of ``domains`` nor a training domain is refused: the fit knows nothing of that domain, and
    dropping it would score shares that no longer sum to 1.

    Raises
    ------
    DataError
        A fitted domain without a column, a share out of (0, 1], or an unknown column.

    Examples
    --------
    >>> prediction_shares(pd.Series({"web": 0.6, "code": 0.4}, name="mine"), ["code"])
          code
    mine   0.4
    >>> mix = pd.Series({"web": 0.5, "code": 0.4, "openhermes": 0.1}, name="mine")
    >>> prediction_shares(mix, ["web", "code"], training_domains=["web", "code"])
    Traceback (most recent call last):
    ...
    bimix_bayes.data.table.DataError: the mixtures: column(s) ['openhermes'] are not domains ...
    """
    if isinstance(mixtures, pd.Series):
        mixtures = mixtures.to_frame().T
    missing = [d for d in domains if d not in mixtures.columns]
    if missing:
        source = mixtures.attrs.get("source")
        where = f"{source}: the mixtures" if source else "the mixtures"
        extra = [str(c) for c in mixtures.columns if c not in domains]
        raise DataError(
            f"{where} lack the fitted domain(s) {missing}; columns: {list(mixtures.columns)}"
            f"{near_names(extra, missing)}"
        )
    if training_domains is not None:
        check_known_columns(mixtures, [*domains, *training_domains])
    shares = mixtures[list(domains)].astype(float)
    positive = (shares >= 0) if allow_zero else (shares > 0)
    bad = ~(positive & (shares <= 1)).to_numpy(dtype=bool)
    if bad.any():
        ex = cell_examples(
            bad, lambda i, j: f"{shares.index[i]!r}/{shares.columns[j]!r} = {shares.iat[i, j]:g}"
        )
        rule = "[0, 1]" if allow_zero else "(0, 1] for prediction (BiMix is infinite at r = 0)"
        raise DataError(f"mixture shares must lie in {rule}: {describe_locations(ex)}")
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


def check_known_columns(
    mixtures: pd.DataFrame, known: Sequence[str], what: str = "the mixtures"
) -> None:
    """Refuse a numeric column of ``mixtures`` that is not one of the fit's ``known`` domains.

    Such a column passes a mixture file's sum-to-1 check and would then be dropped, leaving
    shares that sum to less than 1. A column of zeros is accepted (it gives no share to the
    domain, and the fit's shares still sum to 1). ``what`` names the mixtures in the message.

    Raises
    ------
    DataError
        Naming the columns, the fit's domains, and the fix.
    """
    known_set = set(known)
    numeric = mixtures.select_dtypes("number")
    # a column of zeros gives no share to a domain the fit does not know: nothing is lost
    unknown = [c for c in numeric.columns if c not in known_set and (numeric[c] != 0).any()]
    if not unknown:
        return
    kept = numeric.drop(columns=unknown).sum(axis=1)
    left = f"{kept.min():.4g}" + (f" to {kept.max():.4g}" if kept.max() - kept.min() > 1e-9 else "")
    raise DataError(
        f"{what}: column(s) {unknown} are not domains of the fit (its domains: "
        f"{list(dict.fromkeys(known))}); the fit cannot score them, and leaving them out would "
        f"score shares that sum to {left} instead of 1. Remove the column(s) and renormalise the "
        "other shares to sum to 1"
    )


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
    size_kind
        With a model-size dimension (a ``size`` column in ``observations``: a run id then
        names a mixture, trained at one or more sizes): what the sizes count, in words
        (``"total parameters"``, ``"non-embedding parameters"``); None without sizes.
    source
        Where the data came from (a file path, ``"simulated"``...).
    notes
        Everything the validation changed, in words.
    schedule
        The learning-rate schedule every run was trained with, when known
        (:class:`~bimix_bayes.laws.schedule.LRSchedule`; ``bimix fit --lr-schedule``): the
        laws then read the step through its areas (a schedule-aware step term). None: the
        step itself.
    runs_named_by_mixture
        True when the file had no run column and the loader named each run by its mixture in
        order of first appearance (``m000``...): the names then mean nothing outside this
        file (:func:`~bimix_bayes.data.holdout_runs.align_holdout_runs`).
    """

    mixtures: pd.DataFrame
    observations: pd.DataFrame
    volume: Volume = "steps"
    group: str | None = None
    source: str = "<in memory>"
    notes: tuple[str, ...] = field(default=())
    size_kind: str | None = None
    schedule: LRSchedule | None = None
    runs_named_by_mixture: bool = False

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
        min_step: float | None = None,
        min_mixtures: int = 2,
        min_steps: int = 3,
        notes: Sequence[str] = (),
        size_kind: str | None = None,
    ) -> MixtureData:
        """Validate two frames and return the canonical table.

        Parameters
        ----------
        mixtures
            One row per run (the index is the run id), one numeric column per training domain.
        observations
            Columns ``run``, ``step``, ``domain``, ``loss`` (one row per measured loss), and
            ``size`` (the model's parameter count) when model size is a dimension: a run id
            then names one mixture, and its runs at several sizes share its run effects.
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
        min_step
            Leave out the checkpoints before this step (or token count): the start of training,
            before the loss follows a power law in the step (warm-up, the initial plateau). The
            number left out is in ``notes``.
        min_mixtures, min_steps
            The least number of distinct shares and of distinct steps each domain needs so that
            the proportion effect can be separated from the step effect (BiMix needs 2 and 3).
        size_kind
            What the ``size`` column counts, in words (``"total parameters"``,
            ``"non-embedding parameters"``); with sizes and no kind: ``"parameters, total or
            non-embedding unstated"`` (outputs write it in brackets after a size).

        Raises
        ------
        DataError
            On any problem, naming the source, the rows or columns, and how to fix it.
        """
        # Imported here: the validation raises this module's errors.
        from bimix_bayes.data.validate import Validator, check_options

        check_options(volume, zero_policy, epsilon, missing_policy, sum_tol)
        v = Validator(source, list(notes), run_locations or {})
        mixtures, observations = v.check_frames(mixtures, observations, locations)
        v.check_domains(mixtures, observations)
        mixtures = v.check_mixtures(mixtures, sum_tol)
        observations = v.check_observations(observations, missing_policy)
        v.check_sizes(observations)
        observations = v.check_duplicates(observations)
        v.check_domain_coverage(observations)  # before zero shares are dropped (noted apart)
        mixtures, observations = v.apply_zero_policy(mixtures, observations, zero_policy, epsilon)
        observations = v.check_repeated_checkpoints(observations, drop_repeated_checkpoints)
        if min_step is not None:
            observations = v.drop_early_checkpoints(observations, float(min_step))
        v.check_spikes(observations)  # after --min-step: the early checkpoints it leaves out
        v.check_runs_across_sizes(mixtures, observations)
        has_size = SIZE_COLUMN in observations.columns
        order = ["domain", "run", *([SIZE_COLUMN] if has_size else []), "step"]
        observations = observations.sort_values(order, kind="stable").reset_index(drop=True)
        observations = observations[[*OBS_COLUMNS, *([SIZE_COLUMN] if has_size else [])]]
        if has_size and size_kind is None:
            size_kind = "parameters, total or non-embedding unstated"
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
            size_kind=size_kind if has_size else None,
        )
        data.check_design(min_mixtures=min_mixtures, min_steps=min_steps)
        return data

    # ---------------------------------------------------------------- views
    @property
    def domains(self) -> tuple[str, ...]:
        """Evaluation domains with observations: the training domains among them in the order
        of the mixture columns, then the evaluation-only ones (:attr:`evaluation_only`)."""
        present = set(self.observations["domain"].unique())
        trained = tuple(d for d in self.mixtures.columns if d in present)
        return trained + self.evaluation_only

    @property
    def evaluation_only(self) -> tuple[str, ...]:
        """Evaluation domains that are not training domains (no mixture column), sorted.

        Their loss can move with every training share, but they have no share of their own:
        only a cross-domain law finite at zero shares (``loglinear``) can fit them.
        """
        extra = set(self.observations["domain"].unique()) - set(self.mixtures.columns)
        return tuple(sorted(str(d) for d in extra))

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
    def has_sizes(self) -> bool:
        """Whether model size is a dimension of the data (a ``size`` column)."""
        return SIZE_COLUMN in self.observations.columns

    @property
    def sizes(self) -> tuple[float, ...]:
        """The distinct model sizes, ascending; empty without a size dimension."""
        if not self.has_sizes:
            return ()
        return tuple(float(v) for v in np.unique(self.observations[SIZE_COLUMN]))

    @property
    def n_runs(self) -> int:
        """Number of runs with observations."""
        return len(self.runs)

    def shares(self) -> np.ndarray:
        """Each observation's own-domain share ``r`` (aligned with ``observations``); 0 for an
        evaluation-only domain (:attr:`evaluation_only`), which has no share of its own."""
        m = self.mixtures
        rows = m.index.get_indexer(self.observations["run"])
        cols = m.columns.get_indexer(self.observations["domain"])
        own = m.to_numpy(dtype=float)[rows, np.maximum(cols, 0)]
        return np.where(cols >= 0, own, 0.0)

    def for_domain(self, domain: str) -> pd.DataFrame:
        """Observations of one evaluation domain with their share column ``r``."""
        obs = self.observations.assign(r=self.shares())
        out = obs[obs["domain"] == domain]
        if out.empty:
            raise KeyError(f"no observations for domain {domain!r}; domains: {list(self.domains)}")
        return out.reset_index(drop=True)

    def subset(
        self,
        runs: Sequence[str] | None = None,
        max_step: float | None = None,
        *,
        max_size: float | None = None,
        min_size: float | None = None,
    ) -> MixtureData:
        """A copy restricted to some runs, steps ``<= max_step`` and/or model sizes in
        ``[min_size, max_size]`` (no re-validation)."""
        obs = self.observations
        if runs is not None:
            obs = obs[obs["run"].isin(list(runs))]
        if max_step is not None:
            obs = obs[obs["step"] <= max_step]
        if (max_size is not None or min_size is not None) and not self.has_sizes:
            raise DataError(f"{self.source}: the data have no model-size dimension (--size-col)")
        if max_size is not None:
            obs = obs[obs[SIZE_COLUMN] <= max_size]
        if min_size is not None:
            obs = obs[obs[SIZE_COLUMN] >= min_size]
        mixtures = self.mixtures.loc[[r for r in self.mixtures.index if r in set(obs["run"])]]
        return replace(self, mixtures=mixtures, observations=obs.reset_index(drop=True))

    def with_runs_named_by_mixture(self, named: bool = True) -> MixtureData:
        """The same data, saying whether the run ids were made from the mixtures
        (:attr:`runs_named_by_mixture`)."""
        return replace(self, runs_named_by_mixture=named)

    def with_schedule(self, schedule: LRSchedule | str | None) -> MixtureData:
        """The same data with the learning-rate schedule every run was trained with (a
        :class:`~bimix_bayes.laws.schedule.LRSchedule` or its text, e.g.
        ``"cosine:total=4000,warmup=100,final=0.1"``); None removes it.

        The schedule must give every observed step some area (a step inside a warm-up from 0
        is refused) and must not end before every observation (a schedule in optimizer steps
        against a log in tokens); observations after its end read its final rate, and a note
        (a :class:`DataWarning`) says how many; a schedule ending 100 times beyond the last
        observation is noted too (a schedule in tokens against a log in steps).

        Examples
        --------
        >>> from bimix_bayes.data.simulate import simulate_default
        >>> data = simulate_default(seed=0).with_schedule("cosine:total=20000,warmup=100")
        >>> data.schedule.describe()
        'cosine decay to 0 of the peak at step 20000 after 100 warm-up steps (lambda 0.999)'
        """
        sched = schedule_of(schedule)
        if sched is None:
            return replace(self, schedule=None)
        steps = self.observations["step"].to_numpy(dtype=float)
        try:
            sched.covariates(steps, s_ref=float(np.exp(np.log(steps).mean())))
        except ValueError as err:
            raise DataError(f"{self.source}: {err}") from None
        unit = "token" if self.volume == "tokens" else "step"
        if sched.decays and steps.min() > sched.end:
            raise DataError(
                f"{self.source}: the learning-rate schedule ends at {unit} {sched.end:g}, before "
                f"the first observation ({unit} {steps.min():g}): a schedule in optimizer steps "
                "against a log in tokens? Give the schedule in the log's unit, or read the log's "
                "step column with --step-col"
            )
        said = []
        if self.volume == "tokens" and sched.decay == DEFAULT_DECAY:
            said.append(
                "the step column counts tokens and the schedule's annealing decay is the "
                f"default {DEFAULT_DECAY:g} per token: give decay=0.999^(1/tokens per step) "
                "for Tissue et al.'s 0.999 per step (a schedule file takes it as FILE:decay=...)"
            )
        after = int((steps > sched.end).sum()) if sched.decays else 0
        if after:
            said.append(
                f"{after} of {len(steps)} observations lie after the learning-rate schedule's "
                f"end ({unit} {sched.end:g}): the rate is held at its final value there"
            )
        if sched.decays and sched.end > 100 * steps.max():
            said.append(
                f"the learning-rate schedule ends at {unit} {sched.end:g}, "
                f"{sched.end / steps.max():.3g}x beyond the last observation ({steps.max():g}): "
                "a schedule in tokens against a log in steps? Give the schedule in the log's unit"
            )
        for note in said:
            warnings.warn(f"{self.source}: {note}", DataWarning, stacklevel=2)
        return replace(self, schedule=sched, notes=(*self.notes, *said))

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
        if self.has_sizes:
            sizes = ", ".join(f"{s:.4g}" for s in self.sizes)
            grp += f"; {len(self.sizes)} model sizes ({sizes}; {self.size_kind})"
        if self.schedule is not None:
            grp += f"; learning rate: {self.schedule.describe()}"
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
        with_shares = self.observations.assign(r=self.shares())  # once, not per domain
        by_domain = dict(list(with_shares.groupby("domain", sort=False, observed=True)))
        evaluation_only = self.evaluation_only
        for domain in self.domains:
            obs = by_domain[domain]
            n_s = obs["step"].nunique()
            if domain in evaluation_only:  # moved by every share: distinct mixtures count
                n_r = len(self.mixtures.loc[pd.unique(obs["run"])].drop_duplicates())
            else:
                n_r = obs["r"].nunique()
            if n_r < min_mixtures:
                others = [d for d in self.domains if d != domain]
                typo = near_names([domain], others)  # a domain misspelt in a few rows
                problems.append(
                    f"domain {domain!r}: its {obs['run'].nunique()} run(s) give it "
                    f"{n_r} distinct share(s) (need {min_mixtures}); add runs with another share "
                    f"of {domain!r}" + (f", or fix a misspelt name{typo}" if typo else "")
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
