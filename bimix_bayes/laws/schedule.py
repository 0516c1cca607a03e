"""Learning-rate schedules and the two step covariates of a schedule-aware step law.

Tissue et al. (2024, arXiv 2408.11029, "Scaling Law with Learning Rate Annealing") found that a
run's loss follows its learning-rate schedule through two areas::

    L(s) = L0 + A * S1(s)**-alpha - C * S2(s)

    S1(s) = sum_{i <= s} eta_i                       the forward area (warm-up included)
    S2(s) = sum_{i <= s} m_i,  m_i = lam m_{i-1} + (eta_{i-1} - eta_i)   the annealing area

with ``eta`` the learning rate divided by its peak and ``lam`` a decay factor (0.999 per step in
the paper). A constant rate gives ``S1 = s`` (after warm-up) and ``S2 = 0``: the plain power law.

This package puts their step term into every law's step factor::

    log L = m(r) + logaddexp(log_floor, log_reducible - beta * x) - anneal * u

    x = log(S1(s) / S1(s_ref))          in place of log(s / s_ref)
    u = (1 - lam) * S2(s)               the annealing covariate, in [0, 1)

Derivation of ``u``. Start the annealing sums at the peak (a warm-up ramps the rate *up*; Tissue
et al. count annealing from the peak on) and write ``d_k = eta_{k-1} - eta_k``. Then
``m_j = sum_{k <= j} lam**(j-k) d_k`` and::

    (1 - lam) S2(s) = sum_k d_k (1 - lam**(s-k+1)) = 1 - eta_tilde(s)

where ``eta_tilde`` is the exponential moving average ``eta_tilde_i = lam eta_tilde_{i-1} +
(1 - lam) eta_i`` started at the peak (``eta_tilde = 1``): ``u`` is how far the *smoothed*
learning rate has fallen, 0 at a constant rate and at most ``1 - final`` (the test checks this
against Tissue et al.'s recurrence step by step).

Why ``- anneal * u`` on the log scale rather than ``- C S2`` on the loss. The law's mixture
factor multiplies its whole step factor (BiMix), so the annealing gain of a domain scales with
its loss, as in the additive form divided by the loss it acts on: ``log(L0 + A S1^-alpha - C S2)
= log(L0 + A S1^-alpha) - C S2 / L + O((C S2 / L)^2)``. Annealing gains are a few per cent of
the loss (second-order term ~0.1 %), and the log form stays positive for every posterior draw,
which the additive one does not when ``C`` is large. ``anneal >= 0`` (a falling rate lowers the
loss); without a schedule ``u = 0`` and ``x = log(s / s_ref)``: every law is unchanged.

Schedules are given in the units of the data's step column (steps, or tokens: then ``lam`` is
per token, ``lam_token = lam_step ** (1 / tokens_per_step)``). After its end a schedule holds
its final rate.

Examples
--------
>>> sched = LRSchedule.parse("cosine:total=4000,warmup=100,final=0.1")
>>> print(sched.describe())
cosine decay to 0.1 of the peak at step 4000 after 100 warm-up steps (lambda 0.999)
>>> [round(float(v), 3) for v in sched.lr([50, 100, 2050, 4000, 5000])]
[0.5, 1.0, 0.55, 0.1, 0.1]
>>> x, u = sched.covariates([1000.0, 4000.0], s_ref=1000.0)
>>> [round(float(v), 3) for v in x], [round(float(v), 3) for v in u]
([0.0, 0.875], [0.028, 0.72])
>>> LRSchedule.parse("constant:warmup=0").covariates([10.0, 1000.0], s_ref=100.0)[1].tolist()
[0.0, 0.0]
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from bimix_bayes.laws.bimix import log_step_factor

__all__ = [
    "ANNEAL",
    "DEFAULT_DECAY",
    "KINDS",
    "LRSchedule",
    "count_value",
    "schedule_of",
    "step_covariates",
    "step_term",
]

#: The per-domain parameter of the annealing term (``anneal >= 0``) in a fit's posterior.
ANNEAL = "anneal"
#: The decay factor of the annealing momentum per step (Tissue et al.'s ``lambda``).
DEFAULT_DECAY = 0.999
#: The parametric schedules: the rate after warm-up, as a function of the schedule's progress.
KINDS = ("constant", "cosine", "linear", "wsd")
#: The most grid points the areas are integrated on (finer for shorter schedules: one per step).
_MAX_GRID = 200_001
_COUNT_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
#: Column names of a schedule file's step and rate (W&B exports ``_step`` and ``lr-AdamW``).
#: In order of preference: W&B's ``_step`` counts logged rows, not optimizer steps, so a
#: ``trainer/global_step`` beside it wins.
_STEP_NAMES = ("step", "global_step", "trainer/global_step", "iteration", "_step", "tokens")
_RATE_NAMES = ("lr", "learning_rate", "learning-rate")


def count_value(text: str) -> float | None:
    """A count with an optional suffix (steps, tokens, parameters): ``"20B"`` -> 2e10, ``"500"``
    -> 500.0; None if it is not one.

    Examples
    --------
    >>> count_value("1.235B"), count_value("410m"), count_value("abc")
    (1235000000.0, 410000000.0, None)
    """
    m = re.fullmatch(r"\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*([kKmMbBgGtT]?)\s*", str(text))
    if not m:
        return None
    return float(m.group(1)) * _COUNT_SUFFIX.get(m.group(2).lower(), 1.0)


def _is_file_with_options(text: str) -> bool:
    """``path.csv:decay=...``: an existing file before the last colon."""
    head, sep, _ = text.rpartition(":")
    return bool(sep) and os.path.exists(head.strip())


def _schedule_columns(columns: list[str], path: str) -> tuple[str, str]:
    """The step and rate columns of a schedule file (``step``/``_step``..., ``lr``/``lr-AdamW``
    ...), or a ValueError naming what was found."""
    lower = {c.lower(): c for c in columns}
    step = next((lower[n] for n in _STEP_NAMES if n in lower), None)
    rates = [
        c
        for c in columns
        if c.lower() in _RATE_NAMES or c.lower().startswith("lr-") or c.lower().endswith("/lr")
    ]
    if step is None or len(rates) != 1:
        what = "no rate column" if not rates else f"several rate columns {rates}"
        raise ValueError(
            f"{path}: a learning-rate schedule file needs a step column ({', '.join(_STEP_NAMES)})"
            f" and one rate column (lr, learning_rate, lr-...); found {columns}"
            + ("" if step is None else f" ({what})")
        )
    return step, rates[0]


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule, relative to its peak rate.

    Parameters
    ----------
    kind
        ``constant``, ``cosine`` (half cosine from 1 to ``final``), ``linear`` (straight line
        to ``final``), ``wsd`` (warm-up, stable, then a linear decay over the last ``cooldown``
        fraction of ``total``; Hu et al. 2024) or ``table`` (``steps`` and ``rates``, linear in
        between, from a file).
    total
        The step at which the decay ends (not used by ``constant``).
    warmup
        Linear warm-up steps from 0 to the peak.
    final
        The rate at the end of the decay, relative to the peak (0 <= final <= 1).
    cooldown
        ``wsd`` only: the fraction of ``total`` the decay takes.
    decay
        The annealing momentum's decay factor per unit of the step axis (``lam``, 0.999).
    steps, rates
        ``table`` only: the schedule's points (steps increasing; rates >= 0, not all 0).
    """

    kind: str
    total: float | None = None
    warmup: float = 0.0
    final: float = 0.0
    cooldown: float = 0.2
    decay: float = DEFAULT_DECAY
    steps: tuple[float, ...] = field(default=())
    rates: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        where = f"learning-rate schedule {self.kind!r}"
        if self.kind not in (*KINDS, "table"):
            raise ValueError(
                f"unknown learning-rate schedule {self.kind!r}: use one of {', '.join(KINDS)} "
                "(as 'cosine:total=4000,warmup=100,final=0.1') or a CSV file with a step and a "
                "rate column"
            )
        if self.kind in ("cosine", "linear", "wsd") and not (self.total and self.total > 0):
            raise ValueError(
                f"{where} needs total= (the step where the decay ends), e.g. total=4000"
            )
        if self.warmup < 0 or (self.total and self.warmup >= self.total):
            raise ValueError(f"{where}: warmup must be >= 0 and below total, got {self.warmup}")
        if not 0.0 <= self.final <= 1.0:
            raise ValueError(
                f"{where}: final is a fraction of the peak in [0, 1], got {self.final}"
            )
        if not 0.0 < self.cooldown <= 1.0:
            raise ValueError(
                f"{where}: cooldown is a fraction of total in (0, 1], got {self.cooldown}"
            )
        if not 0.0 < self.decay < 1.0:
            raise ValueError(
                f"{where}: decay (Tissue et al.'s lambda) must be in (0, 1), got {self.decay}"
            )
        if self.kind == "table":
            s, r = np.asarray(self.steps, float), np.asarray(self.rates, float)
            if len(s) < 2 or len(s) != len(r):
                raise ValueError(f"{where}: needs at least two (step, lr) points of equal count")
            if not (np.all(np.isfinite(s)) and np.all(np.diff(s) > 0) and s[0] >= 0):
                raise ValueError(f"{where}: steps must be finite, >= 0 and strictly increasing")
            if not (np.all(np.isfinite(r)) and np.all(r >= 0) and r.max() > 0):
                raise ValueError(f"{where}: learning rates must be finite, >= 0, not all 0")

    # ------------------------------------------------------------------ construction
    @classmethod
    def parse(cls, text: str) -> LRSchedule:
        """A schedule from ``KIND:key=value,...`` or the path of a CSV file (a step and a rate
        column, :meth:`from_csv`; any scale: the rates are divided by their peak), optionally
        ``PATH:decay=D``.

        Examples
        --------
        >>> LRSchedule.parse("wsd:total=1000,cooldown=0.1").lr([899, 950, 1000]).round(2).tolist()
        [1.0, 0.5, 0.0]
        """
        text = str(text).strip()
        if os.path.exists(text):
            return cls.from_csv(text)
        path = text.rpartition(":")[0] if ":" in text else text
        if path.lower().endswith((".csv", ".tsv", ".txt")) and not os.path.exists(path):
            raise ValueError(f"learning-rate schedule file {path!r} not found")
        kind, _, rest = text.rpartition(":") if _is_file_with_options(text) else text.partition(":")
        options: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key.strip() not in ("total", "warmup", "final", "cooldown", "decay"):
                raise ValueError(
                    f"learning-rate schedule {text!r}: cannot read {item!r}; options are "
                    "total=, warmup=, final=, cooldown=, decay= (e.g. 'cosine:total=4000,"
                    "warmup=100,final=0.1'), or give the path of a CSV file with a step and a "
                    "rate column"
                )
            number = count_value(value) if key.strip() in ("total", "warmup") else None
            try:
                options[key.strip()] = float(value) if number is None else number
            except ValueError:
                raise ValueError(
                    f"learning-rate schedule {text!r}: {key.strip()}={value!r} is not a number"
                ) from None
        if os.path.exists(kind.strip()):  # a file with options: only the decay applies
            unknown = sorted(set(options) - {"decay"})
            if unknown:
                raise ValueError(
                    f"learning-rate schedule {text!r}: a schedule file takes only decay= "
                    f"(its steps and rates are the file's), not {', '.join(unknown)}"
                )
            return cls.from_csv(kind.strip(), **options)
        return cls(kind=kind.strip(), **options)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], *, decay: float = DEFAULT_DECAY) -> LRSchedule:
        """A tabulated schedule from a CSV file: a step column (``step``, ``global_step``,
        ``trainer/global_step``, ``iteration``, W&B's ``_step``, ``tokens``: the first found)
        and one rate column (``lr``, ``learning_rate``, ``lr-...`` as W&B names it, ``.../lr``).
        Rows missing either (W&B logs the rate on some rows only) hold no point and are
        skipped."""
        import pandas as pd

        frame = pd.read_csv(path)
        step, rate = _schedule_columns([str(c) for c in frame.columns], str(path))
        # W&B exports log the rate on some rows only: a row without a step or a rate holds no
        # point of the schedule
        frame = frame.dropna(subset=[step, rate])
        if len(frame) < 2:
            raise ValueError(
                f"{path}: fewer than 2 rows hold both a step ({step!r}) and a rate ({rate!r})"
            )
        frame = frame.sort_values(step)
        return cls(
            kind="table",
            steps=tuple(frame[step].astype(float)),
            rates=tuple(frame[rate].astype(float) / frame[rate].max()),
            decay=decay,
        )

    def to_json(self) -> str:
        """The schedule as JSON (saved with a fit); :meth:`from_json` reads it back."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LRSchedule:
        """The schedule saved by :meth:`to_json`."""
        data = json.loads(text)
        data["steps"], data["rates"] = tuple(data["steps"]), tuple(data["rates"])
        return cls(**data)

    # ------------------------------------------------------------------ evaluation
    @property
    def decays(self) -> bool:
        """Whether the rate falls to an end (every kind but ``constant``, which holds its peak
        after the warm-up for ever)."""
        return self.kind != "constant"

    @property
    def end(self) -> float:
        """The step after which the rate stays at its final value (the warm-up's end for
        ``constant``, which never decays: :attr:`decays`)."""
        if self.kind == "table":
            return float(self.steps[-1])
        return float(self.total or self.warmup)

    def lr(self, steps: Any) -> np.ndarray:
        """The rate at ``steps``, relative to the peak (held at its final value after the end).

        Examples
        --------
        >>> LRSchedule.parse("linear:total=100,final=0.5").lr([0, 50, 100]).tolist()
        [1.0, 0.75, 0.5]
        """
        s = np.asarray(steps, dtype=float)
        if self.kind == "table":
            return np.interp(s, self.steps, self.rates)
        with np.errstate(over="ignore"):  # a warm-up of a tiny fraction of a step
            ramp = np.clip(s / self.warmup, 0.0, 1.0) if self.warmup > 0 else np.ones_like(s)
        if self.kind == "constant":
            return ramp
        if self.kind == "wsd":
            start = self.total * (1.0 - self.cooldown)
            progress = np.clip((s - start) / (self.total - start), 0.0, 1.0)
            return np.where(s < self.warmup, ramp, 1.0 - (1.0 - self.final) * progress)
        progress = np.clip((s - self.warmup) / (self.total - self.warmup), 0.0, 1.0)
        cosine = self.kind == "cosine"
        shape = 0.5 * (1.0 + np.cos(np.pi * progress)) if cosine else 1.0 - progress
        return np.where(s < self.warmup, ramp, self.final + (1.0 - self.final) * shape)

    def areas(self, steps: Any) -> tuple[np.ndarray, np.ndarray]:
        """``S1(s)`` (the forward area, in peak-rate steps) and ``u(s) = (1 - lam) S2(s)`` (the
        annealing covariate) at ``steps`` (any shape, > 0).

        Both are integrated on a grid from 0 to the largest step (one point per step up to
        200,000 steps, then evenly spaced): ``S1`` by the trapezoid rule, ``u`` as the fall of
        the exponential moving average of the rate (decay ``lam ** h`` per grid spacing ``h``),
        counted from the rate's first peak.
        """
        s = np.asarray(steps, dtype=float)
        if s.size == 0:
            return np.zeros_like(s), np.zeros_like(s)
        if not np.all(np.isfinite(s)) or s.min() <= 0:
            raise ValueError("schedule covariates need finite steps > 0")
        last = float(max(s.max(), 1.0))
        grid = np.linspace(0.0, last, int(min(np.ceil(last), _MAX_GRID - 1)) + 1)
        rate = self.lr(grid)
        h = grid[1] - grid[0]
        area = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * h)])
        # the fall is counted from the schedule's own peak (not searched on the grid, whose
        # points need not fall on the end of the warm-up)
        if self.kind == "table":
            top, peak = max(self.rates), self.steps[int(np.argmax(self.rates))]
        else:
            top, peak = 1.0, self.warmup
        held = np.where(grid < peak, top, rate) / top
        smoothed = _ema(held, self.decay**h)
        fall = 1.0 - smoothed
        return np.interp(s, grid, area), np.clip(np.interp(s, grid, fall), 0.0, 1.0)

    def covariates(self, steps: Any, s_ref: float) -> tuple[np.ndarray, np.ndarray]:
        """The law's step covariates at ``steps``: ``x = log(S1(s) / S1(s_ref))`` and ``u``.

        Examples
        --------
        >>> x, u = LRSchedule.parse("constant").covariates([10.0, 100.0], s_ref=10.0)
        >>> x.round(6).tolist(), u.tolist()  # no warm-up, constant: log(s / s_ref), 0
        ([0.0, 2.302585], [0.0, 0.0])
        """
        s = np.asarray(steps, dtype=float)
        area, fall = self.areas(np.append(s.ravel(), float(s_ref)))
        if area[-1] <= 0:
            raise ValueError(
                f"the learning-rate schedule has no area up to the reference step {s_ref:g}: "
                "its warm-up is longer than the steps observed"
            )
        with np.errstate(divide="ignore"):
            x = np.log(area[:-1] / area[-1])
        if not np.all(np.isfinite(x)):
            raise ValueError(
                "the learning-rate schedule is 0 up to an observed step: every observation "
                "needs some training at a positive rate before it"
            )
        return x.reshape(s.shape), fall[:-1].reshape(s.shape)

    def describe(self) -> str:
        """One line for the output."""
        decay = f"lambda {self.decay:g}"
        if self.kind == "table":
            return (
                f"tabulated, {len(self.steps)} points from step {self.steps[0]:g} to "
                f"{self.steps[-1]:g} ({decay})"
            )
        warm = f" after {self.warmup:g} warm-up steps" if self.warmup else ""
        if self.kind == "constant":
            return f"constant{warm} ({decay})"
        what = {"cosine": "cosine decay", "linear": "linear decay", "wsd": "warm-up-stable-decay"}
        tail = f" over the last {self.cooldown:g} of it" if self.kind == "wsd" else ""
        return (
            f"{what[self.kind]} to {self.final:g} of the peak at step {self.total:g}{tail}{warm} "
            f"({decay})"
        )


def _ema(values: np.ndarray, lam: float) -> np.ndarray:
    """``out_i = lam out_{i-1} + (1 - lam) values_i``, ``out_0 = values_0`` (a linear filter)."""
    from scipy.signal import lfilter

    out, _ = lfilter([1.0 - lam], [1.0, -lam], values[1:], zi=[lam * values[0]])
    return np.concatenate([[values[0]], out])


def schedule_of(value: LRSchedule | str | None) -> LRSchedule | None:
    """A schedule from a schedule, its text (:meth:`LRSchedule.parse`) or None."""
    if value is None or isinstance(value, LRSchedule):
        return value
    return LRSchedule.parse(value)


def step_covariates(
    steps: Any, s_ref: float, schedule: LRSchedule | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The laws' step covariates: ``x = log(s / s_ref)`` and no ``u`` without a schedule,
    :meth:`LRSchedule.covariates` with one.

    Examples
    --------
    >>> step_covariates([100.0], 10.0)[0].round(4).tolist(), step_covariates([100.0], 10.0)[1]
    ([2.3026], None)
    """
    s = np.asarray(steps, dtype=float)
    if schedule is None:
        return np.log(s / float(s_ref)), None
    return schedule.covariates(s, float(s_ref))


def step_term(x: Any, params: Mapping[str, Any], u: Any = None, *, math: ModuleType = np) -> Any:
    """The step factor every law shares, with the annealing term when the fit has one:
    ``logaddexp(log_floor, log_reducible - beta x) - anneal u`` (``params`` holds ``log_floor``,
    ``log_reducible``, ``beta`` and, with a schedule, ``anneal``; ``u`` None: no schedule).

    Examples
    --------
    >>> p = {"log_floor": 0.0, "log_reducible": 0.0, "beta": 0.5, "anneal": 0.1}
    >>> round(float(step_term(0.0, p)), 6), round(float(step_term(0.0, p, u=0.5)), 6)
    (0.693147, 0.643147)
    """
    step = log_step_factor(
        x, params["log_floor"], params["log_reducible"], params["beta"], math=math
    )
    if u is not None and ANNEAL in params:
        step = step - params[ANNEAL] * u
    return step
