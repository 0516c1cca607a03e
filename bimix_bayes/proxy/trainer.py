"""Train one tiny byte-level GPT on a mixture of corpora; per-domain validation loss at
log-spaced checkpoints (``bimix train``). Needs PyTorch (the ``proxy`` extra).

One run:

* **data**: each sequence of a batch comes from domain ``d`` with probability ``r_d`` (the
  mixture), at a uniformly random offset of that domain's ``train.txt`` (bytes);
* **optimiser**: AdamW, linear warm-up over ``warmup`` steps, then a constant learning rate
  (the default: the curve is not bent by a schedule) or a ``cosine`` / ``linear`` decay to
  ``final_lr`` of the peak at the last step (:class:`~bimix_bayes.laws.schedule.LRSchedule`),
  gradient clipping;
* **evaluation**: an exponential moving average of the weights (decay ``ema_decay``, with the
  usual ``(1 + t) / (10 + t)`` ramp at the start) is evaluated at log-spaced checkpoints on a
  fixed, seeded set of ``eval_windows`` windows of ``valid.txt`` per domain (the same windows
  for every run and seed): mean cross-entropy in nats per byte;
* **seeded**: the same corpora, mixture, config and seed give bit-identical losses (one thread).

The result is a table in the package's canonical long layout, one row per (checkpoint, domain):
``run, step, domain, loss, p_<domain>...``, which :func:`bimix_bayes.data.loaders.load_data` reads
as it is.

Examples
--------
>>> log_checkpoints(3000, 10)
[600, 717, 858, 1026, 1227, 1467, 1754, 2098, 2509, 3000]
>>> parse_mixture("web=3,code=1")
{'web': 0.75, 'code': 0.25}
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.laws.schedule import LRSchedule
from bimix_bayes.proxy.corpora import read_manifest
from bimix_bayes.proxy.tinygpt import ModelConfig, build_model, count_parameters, import_torch

__all__ = [
    "RunResult",
    "TrainConfig",
    "load_corpora",
    "log_checkpoints",
    "parse_mixture",
    "train_run",
]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run besides the mixture and the seed.

    ``first_checkpoint`` defaults to ``steps // 5``: before that the EMA-evaluated loss of a
    run this small still falls steeply and unevenly; from there to ``steps`` the checkpoints
    are spaced evenly in log steps.

    Examples
    --------
    >>> TrainConfig(steps=40, n_checkpoints=4, first_checkpoint=10).checkpoints()
    [10, 16, 25, 40]
    """

    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    n_checkpoints: int = 10
    first_checkpoint: int | None = None
    eval_windows: int = 128
    eval_seed: int = 20250101
    threads: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)
    decay: str = "constant"
    final_lr: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):  # from JSON
            object.__setattr__(self, "model", ModelConfig(**self.model))
        for name in ("steps", "batch_size", "n_checkpoints", "eval_windows", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.decay not in ("constant", "cosine", "linear"):
            raise ValueError(f"decay must be constant, cosine or linear, got {self.decay!r}")
        if self.decay != "constant" and self.warmup >= self.steps:
            raise ValueError(
                f"a {self.decay} decay needs warmup ({self.warmup}) below steps ({self.steps})"
            )
        if not 0 <= self.final_lr <= 1:
            raise ValueError(f"final_lr is a fraction of lr in [0, 1], got {self.final_lr}")
        if self.first_checkpoint is not None and not 1 <= self.first_checkpoint <= self.steps:
            raise ValueError(
                f"first_checkpoint must be in [1, steps={self.steps}], got {self.first_checkpoint}"
            )

    def checkpoints(self) -> list[int]:
        """The evaluation steps of a run with this config."""
        return log_checkpoints(self.steps, self.n_checkpoints, self.first_checkpoint)

    def schedule(self) -> LRSchedule:
        """The learning-rate schedule of a run, relative to ``lr``.

        Examples
        --------
        >>> TrainConfig(steps=1000, warmup=100, decay="cosine").schedule().lr([50, 1000]).tolist()
        [0.5, 0.1]
        """
        total = self.steps if self.decay != "constant" else None
        return LRSchedule(kind=self.decay, total=total, warmup=self.warmup, final=self.final_lr)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the model config nested). A constant schedule is written
        without ``decay`` and ``final_lr``, as before schedules could decay, so studies made
        then resume (their runs' configs compare equal)."""
        out = asdict(self)
        if self.decay == "constant":
            del out["decay"], out["final_lr"]
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values))


def log_checkpoints(steps: int, n: int, first: int | None = None) -> list[int]:
    """``n`` evaluation steps spaced evenly in log between ``first`` (default ``steps // 5``)
    and ``steps``, rounded; fewer when rounding makes some equal. The last one is ``steps``.
    """
    if steps < 1 or n < 1:
        raise ValueError(f"steps and the number of checkpoints must be >= 1, got {steps}, {n}")
    first = max(1, steps // 5) if first is None else int(first)
    if n == 1 or first >= steps:
        return [steps]
    points = np.rint(np.geomspace(first, steps, n)).astype(int)
    return sorted({int(p) for p in points} | {steps})


def parse_mixture(text: str | Mapping[str, float], *, sum_tol: float = 1e-3) -> dict[str, float]:
    """Parse ``"name=share,name=share"`` (or a dict) into proportions summing to 1.

    Shares summing to 1 within ``sum_tol`` are renormalised; whole numbers (``web=3,code=1``)
    are read as weights; anything else that does not sum to 1, negative or non-numeric shares,
    duplicate names and an all-zero mixture are errors.
    """
    if isinstance(text, Mapping):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ValueError(
                    f"mixture entry {part!r} is not NAME=SHARE (e.g. web=0.7,code=0.3)"
                )
            items.append((name.strip(), value.strip()))
    if not items:
        raise ValueError("empty mixture; give NAME=SHARE pairs, e.g. web=0.7,code=0.3")
    shares: dict[str, float] = {}
    for name, value in items:
        try:
            share = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"mixture share of {name!r} is not a number: {value!r}") from None
        if not np.isfinite(share) or share < 0:
            raise ValueError(f"mixture share of {name!r} must be a finite number >= 0, got {value}")
        if name in shares:
            raise ValueError(f"mixture names {name!r} twice")
        shares[name] = share
    total = sum(shares.values())
    if total <= 0:
        raise ValueError("mixture shares sum to 0; give at least one positive share")
    if abs(total - 1) > sum_tol and not all(float(v).is_integer() for v in shares.values()):
        raise ValueError(
            f"mixture shares sum to {total:g}, not 1; give proportions summing to 1 or whole "
            "number weights (e.g. web=3,code=1)"
        )
    return {k: v / total for k, v in shares.items()}


# ------------------------------------------------------------------------------ data
@dataclass
class Corpora:
    """Training and validation bytes of every domain, plus the manifest they came from."""

    path: Path
    train: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    manifest: dict

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.train)


def load_corpora(path: str | os.PathLike[str], domains: Sequence[str] | None = None) -> Corpora:
    """Read ``DIR/<domain>/{train,valid}.txt`` as byte arrays (all manifest domains by default)."""
    path = Path(path)
    manifest = read_manifest(path)
    available = list(manifest["domains"])
    chosen = list(domains) if domains is not None else available
    missing = [d for d in chosen if d not in available]
    if missing:
        raise ValueError(
            f"domain(s) {missing} are not in the corpora at {path} (it has {available}); "
            "fix the mixture or rebuild the corpora with `bimix corpora`"
        )
    train = {d: np.fromfile(path / d / "train.txt", dtype=np.uint8) for d in chosen}
    valid = {d: np.fromfile(path / d / "valid.txt", dtype=np.uint8) for d in chosen}
    return Corpora(path, train, valid, manifest)


def _windows(n_bytes: int, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n_bytes - length + 1, size=n)


def validation_windows(corpora: Corpora, n: int, length: int, seed: int) -> dict[str, np.ndarray]:
    """Fixed windows (``n`` x ``length`` bytes) of each domain's validation text, seeded by
    ``seed`` and the domain name only, so every run sees the same ones.
    """
    out = {}
    for domain, data in corpora.valid.items():
        if len(data) < length:
            raise ValueError(
                f"{corpora.path / domain / 'valid.txt'}: {len(data)} bytes, shorter than one "
                f"evaluation window ({length}); rebuild the corpora with a larger validation share"
            )
        rng = np.random.default_rng([seed, zlib.crc32(domain.encode())])
        starts = _windows(len(data), n, length, rng)
        out[domain] = data[starts[:, None] + np.arange(length)]
    return out


# ------------------------------------------------------------------------------ training
@dataclass
class RunResult:
    """One finished run: its long loss table and its metadata (JSON-able)."""

    rows: pd.DataFrame
    meta: dict


def versions() -> dict[str, str]:
    """Versions of what produced a run (for the run metadata)."""
    import bimix_bayes

    torch = import_torch()
    return {
        "bimix_bayes": bimix_bayes.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _set_threads(torch: Any, threads: int) -> None:
    torch.set_num_threads(threads)
    # only allowed once per process, before any parallel work
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)


def train_run(
    corpora: str | os.PathLike[str] | Corpora,
    mixture: str | Mapping[str, float],
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    run: str = "run",
    log: Any = None,
) -> RunResult:
    """Train one tiny GPT on ``mixture`` and evaluate it on every domain of the corpora.

    Parameters
    ----------
    corpora
        Folder written by ``bimix corpora`` (or a loaded :class:`Corpora`).
    mixture
        Domain -> share (or ``"name=share,..."``); domains of the corpora left out get share 0
        (they are still evaluated).
    config
        Training options (default :class:`TrainConfig`).
    seed
        Seeds the initial weights and the batches.
    run
        Run id written in the ``run`` column.
    log
        ``log(message)`` for progress lines, or None.

    Returns
    -------
    RunResult
        ``rows``: ``run, step, domain, loss, p_<domain>...``; ``meta``: the mixture, config,
        seed, checkpoints, versions, parameter count, wall time and corpus provenance.

    Examples
    --------
    >>> result = train_run("out/corpora", "python=0.5,austen=0.5",
    ...                    TrainConfig(steps=60))  # doctest: +SKIP
    """
    config = config or TrainConfig()
    torch = import_torch()
    _set_threads(torch, config.threads)
    data = corpora if isinstance(corpora, Corpora) else load_corpora(corpora)
    shares = parse_mixture(mixture)
    unknown = [d for d in shares if d not in data.domains]
    if unknown:
        raise ValueError(
            f"mixture domain(s) {unknown} are not in the corpora at {data.path} (it has "
            f"{list(data.domains)})"
        )
    domains = list(data.domains)
    p = np.array([shares.get(d, 0.0) for d in domains])
    context = config.model.context
    short = [d for d in domains if p[domains.index(d)] > 0 and len(data.train[d]) <= context + 1]
    if short:
        raise ValueError(f"domain(s) {short}: training text shorter than one window")

    start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(config.model)
    ema = copy.deepcopy(model).eval()
    for param in ema.parameters():
        param.requires_grad_(False)
    params = [q for q in model.parameters()]
    ema_params = [q for q in ema.parameters()]
    opt = torch.optim.AdamW(
        params, lr=config.lr, betas=(0.9, 0.99), weight_decay=config.weight_decay
    )
    checkpoints = config.checkpoints()
    wanted = set(checkpoints)
    rates = config.schedule().lr(np.arange(1, config.steps + 1))
    eval_ids = {
        d: torch.from_numpy(w.astype(np.int64))
        for d, w in validation_windows(
            data, config.eval_windows, context + 1, config.eval_seed
        ).items()
    }
    big = np.concatenate([data.train[d] for d in domains])
    starts = np.cumsum([0] + [len(data.train[d]) for d in domains])[:-1]
    spans = np.array([len(data.train[d]) - context for d in domains])
    offsets = np.arange(context + 1)
    cross_entropy = torch.nn.functional.cross_entropy
    rows: list[dict[str, Any]] = []
    train_loss = float("nan")
    for step in range(1, config.steps + 1):
        which = rng.choice(len(domains), size=config.batch_size, p=p)
        first = starts[which] + (rng.random(config.batch_size) * spans[which]).astype(np.int64)
        batch = torch.from_numpy(big[first[:, None] + offsets].astype(np.int64))
        x, y = batch[:, :-1], batch[:, 1:]
        lr = config.lr * float(rates[step - 1])
        for group in opt.param_groups:
            group["lr"] = lr
        loss = cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        value = loss.item()
        train_loss = value if step == 1 else 0.98 * train_loss + 0.02 * value
        if not np.isfinite(value):
            raise FloatingPointError(
                f"run {run!r}: training loss is {value} at step {step}; lower the learning rate"
            )
        if step in wanted:
            losses = _evaluate(torch, ema, eval_ids)
            for d in domains:
                rows.append({"run": run, "step": step, "domain": d, "loss": losses[d]})
            if log is not None:
                shown = " ".join(f"{d}={losses[d]:.3f}" for d in domains)
                log(
                    f"{run}: step {step}/{config.steps} ({time.perf_counter() - start:.0f} s) "
                    f"{shown}"
                )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    table = pd.DataFrame(rows, columns=["run", "step", "domain", "loss"])
    for d, share in zip(domains, p, strict=True):
        table[f"p_{d}"] = float(share)
    meta = {
        "run": run,
        "mixture": {d: float(s) for d, s in zip(domains, p, strict=True)},
        "seed": int(seed),
        "config": config.to_dict(),
        "checkpoints": checkpoints,
        "n_parameters": count_parameters(model),
        "tokens_per_step": config.batch_size * context,
        "final_train_loss_smoothed": train_loss,
        "wall_seconds": round(wall, 3),
        "steps_per_second": round(config.steps / wall, 2),
        "cpu_seconds": round(cpu, 3),
        "versions": versions(),
        "corpora": {
            "path": str(data.path),
            "domains": {
                d: {k: data.manifest["domains"][d][k] for k in ("package", "version", "sha256")}
                for d in domains
            },
        },
    }
    return RunResult(table, meta)


def _evaluate(torch: Any, model: Any, eval_ids: Mapping[str, Any], chunk: int = 64) -> dict:
    """Mean next-byte cross-entropy (nats/byte) of ``model`` on each domain's windows."""
    out = {}
    with torch.inference_mode():
        for domain, ids in eval_ids.items():
            total, count = 0.0, 0
            for i in range(0, len(ids), chunk):
                batch = ids[i : i + chunk]
                logits = model(batch[:, :-1])
                total += float(
                    torch.nn.functional.cross_entropy(
                        logits.reshape(-1, 256), batch[:, 1:].reshape(-1), reduction="sum"
                    )
                )
                count += batch[:, 1:].numel()
            out[domain] = total / count
    return out
