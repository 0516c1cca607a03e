"""Options of the ``bimix`` command line: argument types, the data-reading options, the
option blocks several commands share (one helper each, so that they read the same everywhere),
and the two declarative helpers every command module uses: :func:`add_command` (a command and its
help, taken from the docstring of the function that runs it) and :func:`add_options` (options as
rows of flag, type or choices, default and help).

An argument type checks its value before any work is done: a bad value is an ``argparse``
error, so the command exits with code 2 and says which option.

Examples
--------
>>> probability("0.9")
0.9
>>> count(1)("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be >= 1, got 0
"""

from __future__ import annotations

import argparse
import inspect
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bimix_bayes.bayes.spec import load_spec, merge_spec
from bimix_bayes.cli.errors import UsageError
from bimix_bayes.data.files import atomic_write_with
from bimix_bayes.laws.registry import LAWS
from bimix_bayes.laws.schedule import LRSchedule

if TYPE_CHECKING:
    import pandas as pd

    from bimix_bayes.data.table import MixtureData

__all__ = [
    "DATA_OPTIONS_ATTR",
    "DataOptions",
    "add_bootstrap",
    "add_command",
    "add_fit_argument",
    "add_objective",
    "add_options",
    "add_out",
    "add_sampler_overrides",
    "add_seed",
    "command_help",
    "count",
    "domain_weights",
    "model_spec",
    "nonnegative_float",
    "objective",
    "pattern",
    "positive_float",
    "probability",
    "regex",
    "sampler_overrides",
    "step_amount",
    "step_threshold",
    "suffix",
    "write_table",
]

Parser = argparse.ArgumentParser | argparse._ArgumentGroup
#: A row of :func:`add_options`: flag, argument type (or the list of allowed values), default,
#: help.
OptionRow = tuple[str, Any, Any, str]


# ------------------------------------------------------------------------------ types
def count(minimum: int) -> Callable[[str], int]:
    """An argument type: a whole number ``>= minimum``.

    Examples
    --------
    >>> count(2)("10")
    10
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def _number(*, positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not np.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(
                f"must be a {'positive' if positive else 'non-negative'} number, got {text}"
            )
        return value

    return parse


#: An argument type: a finite number > 0 (``positive_float("4e10") == 4e10``).
positive_float = _number(positive=True)


def step_amount(text: str) -> float:
    """A number of steps or tokens > 0, with an optional suffix as model sizes take:
    ``4e10``, ``40B``, ``20K``.

    Examples
    --------
    >>> step_amount("40B"), step_amount("4e10"), step_amount("20k")
    (40000000000.0, 40000000000.0, 20000.0)
    """
    return _step_amount(text, allow_zero=False)


def step_threshold(text: str) -> float:
    """A number of steps or tokens >= 0 (a cut-off such as ``--min-step``), with the suffixes
    :func:`step_amount` takes.

    Examples
    --------
    >>> step_threshold("2k"), step_threshold("0")
    (2000.0, 0.0)
    """
    return _step_amount(text, allow_zero=True)


def _step_amount(text: str, *, allow_zero: bool) -> float:
    from bimix_bayes.data.loaders import parse_size

    value = parse_size(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"expected a number of steps or tokens such as 4e10 or 40B, got {text!r}"
        )
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(
            f"must be a {'non-negative' if allow_zero else 'positive'} number, got {text}"
        )
    return value


#: An argument type: a finite number >= 0.
nonnegative_float = _number(positive=False)


def suffix(*allowed: str) -> Callable[[str], Path]:
    """An output path whose suffix is one of ``allowed`` (checked before any work is done).

    Examples
    --------
    >>> suffix(".csv", ".json")("table.JSON")
    PosixPath('table.JSON')
    """

    def parse(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() not in allowed:
            raise argparse.ArgumentTypeError(
                f"{text!r}: use a file name ending in {' or '.join(allowed)}"
            )
        return path

    return parse


def pattern(text: str) -> str:
    """A column-name pattern holding ``{domain}``.

    Examples
    --------
    >>> pattern("weight_{domain}")
    'weight_{domain}'
    """
    if "{domain}" not in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} must contain {{domain}} where the domain name goes, e.g. 'weight_{{domain}}'"
        )
    return text


def regex(text: str) -> str:
    """A regular expression that compiles.

    Examples
    --------
    >>> regex("web(?P<web>[0-9.]+)")
    'web(?P<web>[0-9.]+)'
    >>> regex("web(")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: not a regular expression ('web('): missing ), unterminated ...
    """
    import re

    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression ({text!r}): {exc}") from None
    return text


def probability(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def share(text: str) -> float:
    """A share of the mixture: a number in ``[0, 1)``.

    Examples
    --------
    >>> share("0.02")
    0.02
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def objective(text: str) -> Any:
    """``mean``, ``quantile:Q`` or ``cvar:Q``, as an
    :class:`~bimix_bayes.decision.objectives.Objective`.

    Examples
    --------
    >>> objective("quantile:0.9").name
    'quantile:0.9'
    """
    from bimix_bayes.decision.objectives import Objective

    try:
        return Objective.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def domain_weights(text: str) -> dict[str, float]:
    """``name=weight,name=weight`` as a dict.

    Examples
    --------
    >>> domain_weights("code=2, web=1")
    {'code': 2.0, 'web': 1.0}
    """
    out: dict[str, float] = {}
    for item in text.split(","):
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise argparse.ArgumentTypeError(
                f"expected name=weight pairs separated by commas, got {item.strip()!r}"
            )
        out[name.strip()] = _number(positive=False)(value.strip())
    return out


# ------------------------------------------------------------------------------ declarations
def command_help(func: Callable[..., Any]) -> tuple[str | None, str | None]:
    """The one-line help and the description of a command, from the docstring of its function.

    The first paragraph, with a lower-case first letter and without its final period, is the line
    ``bimix --help`` lists; the paragraphs after it, up to the first numpy-style section
    (``Returns``, ``Notes``...: notes for programmers), are the description that
    ``bimix COMMAND --help`` shows. (None, None) without a docstring.

    Examples
    --------
    >>> def cmd_hello(args):
    ...     '''Greet the user.
    ...
    ...     Print a greeting on stdout.
    ...
    ...     Returns
    ...     -------
    ...     int
    ...         The exit code, 0.
    ...     '''
    >>> command_help(cmd_hello)
    ('greet the user', 'Print a greeting on stdout.')
    """
    doc = inspect.getdoc(func)
    if not doc:
        return None, None
    first, *rest = doc.split("\n\n")
    kept = []
    for paragraph in rest:
        lines = paragraph.splitlines()
        if len(lines) > 1 and set(lines[1]) == {"-"}:  # a numpy section: the description ends
            break
        kept.append(" ".join(paragraph.split()))
    summary = " ".join(first.split()).removesuffix(".")
    return summary[:1].lower() + summary[1:], "\n\n".join(kept) or None


def add_command(
    sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """Register the command ``name``, run by ``func(args)``; returns its parser for the options.

    The help is the function's docstring, written once (:func:`command_help`).

    Examples
    --------
    >>> def cmd_hello(args):
    ...     '''Greet the user.'''
    ...     return 0
    >>> sub = argparse.ArgumentParser(prog="bimix").add_subparsers(dest="command")
    >>> parser = add_command(sub, "hello", cmd_hello)
    >>> parser.parse_args([]).func(None), sub.choices["hello"] is parser
    (0, True)
    """
    summary, description = command_help(func)
    parser = sub.add_parser(name, help=summary, description=description)
    parser.set_defaults(func=func)
    return parser


def add_options(parser: Parser, *rows: OptionRow) -> None:
    """Add one option per ``(flag, kind, default, help)`` row.

    ``kind`` is an argument type (``count(1)``, ``positive_float``...; None for a string) or the
    list (or tuple) of the values allowed. Options with more to say (``nargs``, ``action``,
    ``metavar``, ``required``) are added with ``add_argument`` itself.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_options(
    ...     p,
    ...     ("--runs", count(2), 12, "number of mixtures (default 12)"),
    ...     ("--kind", ["predictive", "law"], "predictive", "what to forecast"),
    ... )
    >>> p.parse_args(["--runs", "3"])
    Namespace(runs=3, kind='predictive')
    """
    for flag, kind, default, help in rows:
        if isinstance(kind, list | tuple):
            parser.add_argument(flag, choices=kind, default=default, help=help)
        else:
            parser.add_argument(flag, type=kind, default=default, help=help)


def write_table(path: Path | None, table: pd.DataFrame, *, index: bool = True) -> None:
    """With ``--out PATH``: write ``table`` there as CSV (atomically, numbers as ``%.10g``) and
    print ``wrote PATH`` after a blank line; nothing when ``path`` is None.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> write_table(path, pd.DataFrame({"loss": [1 / 3]}), index=False)  # doctest: +ELLIPSIS
    <BLANKLINE>
    wrote .../t.csv
    >>> path.read_text().splitlines()
    ['loss', '0.3333333333']
    """
    if path is not None:
        atomic_write_with(path, lambda p: table.to_csv(p, index=index, float_format="%.10g"))
        print(f"\nwrote {path}")


def write_result(path: Path | None, everything: dict[str, Any], table: pd.DataFrame) -> None:
    """With ``--out PATH``: ``everything`` as JSON when PATH ends in .json, else ``table`` as
    CSV (:func:`write_table`); prints ``wrote PATH``. Nothing when ``path`` is None.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "r.json"
    >>> write_result(path, {"value": 1}, pd.DataFrame())  # doctest: +ELLIPSIS
    <BLANKLINE>
    wrote .../r.json
    >>> import json; json.loads(path.read_text())
    {'value': 1}
    """
    if path is not None and path.suffix.lower() == ".json":
        import json

        from bimix_bayes.data.files import atomic_write_text

        atomic_write_text(path, json.dumps(everything, indent=2) + "\n")
        print(f"\nwrote {path}")
    else:
        write_table(path, table)


# ------------------------------------------------------------------------------ data options
#: The fit attribute that records how ``bimix fit`` read its data (:meth:`DataOptions.
#: reading_json`): ``bimix report --holdout`` reads a file with it when given no data option.
DATA_OPTIONS_ATTR = "data_reading_options"


@dataclass(frozen=True)
class DataOptions:
    """How to read a loss log: the options every data-reading command shares.

    One field per keyword argument of :func:`bimix_bayes.data.loaders.load_data`;
    :meth:`add_arguments` puts them on a parser, :meth:`from_args` reads them back, and
    :meth:`load` reads a file with them.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="bimix")
    >>> DataOptions.add_arguments(parser)
    >>> args = parser.parse_args(["runs.csv", "--layout", "wide", "--exclude-domain", "math"])
    >>> opts = DataOptions.from_args(args)
    >>> opts.layout, opts.exclude_domains, opts.zero_policy
    ('wide', ('math',), 'refuse')
    >>> DataOptions.from_args(parser.parse_args(["x.csv", "--group", "70M"]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bimix_bayes.cli.errors.UsageError: --group needs --group-col...
    """

    layout: str = "auto"
    run_col: str | None = None
    step_col: str | None = None
    domain_col: str | None = None
    loss_col: str | None = None
    group_col: str | None = None
    group: str | None = None
    prop_pattern: str | None = None
    loss_pattern: str | None = None
    volume: str | None = None
    exclude_domains: tuple[str, ...] = ()
    run_name_pattern: str | None = None
    zero_policy: str = "refuse"
    epsilon: float = 1e-4
    sum_tol: float = 1e-3
    missing_policy: str = "refuse"
    drop_repeated_checkpoints: bool = False
    min_step: float | None = None
    size_col: str | None = None
    size_kind: str | None = None
    lr_schedule: str | None = None

    #: argparse destinations whose name differs from the field's.
    _DEST: ClassVar[dict[str, str]] = {
        "exclude_domains": "exclude_domain",
        "missing_policy": "missing",
    }

    #: The fields that say how a file is read (not which rows are kept, nor the schedule):
    #: what a fit records and ``report --holdout`` reuses for a file of the same export.
    READING: ClassVar[tuple[str, ...]] = (
        "layout", "run_col", "step_col", "domain_col", "loss_col", "prop_pattern",
        "loss_pattern", "volume", "exclude_domains", "zero_policy", "epsilon", "sum_tol",
        "missing_policy", "drop_repeated_checkpoints", "size_col", "size_kind",
    )  # fmt: skip

    def reading_json(self) -> str:
        """The reading options (:data:`READING`) as JSON, as a fit records them.

        Examples
        --------
        >>> opts = DataOptions(size_col="size", exclude_domains=("ood",))
        >>> DataOptions.from_reading_json(opts.reading_json()) == opts
        True
        """
        values = {name: getattr(self, name) for name in self.READING}
        values["exclude_domains"] = list(values["exclude_domains"])
        return json.dumps(values)

    @classmethod
    def from_reading_json(cls, text: str) -> DataOptions:
        """The options recorded by :meth:`reading_json` (the others at their defaults)."""
        values = {k: v for k, v in json.loads(text).items() if k in cls.READING}
        values["exclude_domains"] = tuple(values.get("exclude_domains") or ())
        return cls(**values)

    def reading_words(self) -> str:
        """The reading options that differ from the defaults, as command-line flags.

        Examples
        --------
        >>> DataOptions(size_col="size", exclude_domains=("ood",)).reading_words()
        '--exclude-domain ood --size-col size'
        """
        default = type(self)()
        flags = []
        for name in self.READING:
            value = getattr(self, name)
            if value == getattr(default, name):
                continue
            flag = "--" + self._DEST.get(name, name).replace("_", "-")
            if isinstance(value, bool):
                flags.append(flag)
            elif isinstance(value, tuple):
                flags += [f"{flag} {v}" for v in value]
            else:
                flags.append(f"{flag} {value}")
        return " ".join(flags) or "the defaults"

    def is_default(self) -> bool:
        """No data option was given."""
        return self == type(self)()

    def __post_init__(self) -> None:
        if self.group is not None and self.group_col is None:
            raise UsageError("--group needs --group-col naming the column that holds the groups")
        if self.size_kind is not None and self.size_col is None:
            raise UsageError("--size-kind needs --size-col naming the column of model sizes")

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
        """Add the positional DATA (when ``positional``) and the data-reading options.

        Without ``positional`` the group is titled "reading --holdout" (``bimix report``).
        """
        if positional:
            parser.add_argument(
                "data",
                type=Path,
                help="loss log: CSV (.csv, .csv.gz, .tsv) or Parquet; or a folder of "
                "TensorBoard runs, an MLflow mlruns folder or mlflow.db",
            )
        g = parser.add_argument_group("reading the data" if positional else "reading --holdout")
        add_options(
            g,
            ("--layout", ["auto", "long", "wide"], "auto", "long: one row per (run, step, "
             "domain); wide: one row per (run, step) with a loss column per domain (default: "
             "detect)"),
            ("--run-col", None, None, "run id column (detected: run, run_id, run_name)"),
            ("--step-col", None, None, "step or token column (detected: step, tokens, "
             "n_tokens...)"),
            ("--domain-col", None, None, "long layout: evaluation domain column"),
            ("--loss-col", None, None, "long layout: loss column"),
            ("--prop-pattern", pattern, None, "proportion column pattern, e.g. 'weight_{domain}'"),
            ("--loss-pattern", pattern, None, "wide layout: loss column pattern, e.g. "
             "'{domain}_loss'"),
            ("--volume", ["steps", "tokens"], None, "what the step column counts (default: tokens "
             "if its name says so)"),
            ("--group-col", None, None, "column splitting the file into groups (model size...)"),
            ("--group", None, None, "group to keep, e.g. 122M"),
            ("--size-col", None, None, "column of model sizes (parameters) to keep every size "
             "as a dimension of the law: fit several sizes together, forecast others (--size)"),
            ("--size-kind", ["total", "non-embedding"], None, "what --size-col counts: total "
             "or non-embedding parameters (printed with every size-aware output)"),
            ("--lr-schedule", None, None, "the learning-rate schedule every run was trained "
             "with, in the step column's unit: KIND:total=N,warmup=N,final=F (KIND constant, "
             "cosine, linear or wsd; e.g. cosine:total=4000,warmup=100,final=0.1 or total=20B) "
             "or a CSV file with a step and a rate column (step/_step, lr/lr-AdamW; FILE:decay=D "
             "for a log in tokens). The law then reads the step through the rate's area and "
             "its annealing (Tissue et al. 2024)"),
        )  # fmt: skip
        g.add_argument(
            "--exclude-domain",
            action="append",
            default=[],
            metavar="DOMAIN",
            help="leave out an evaluation domain (repeatable)",
        )
        g.add_argument(
            "--run-name-pattern",
            type=regex,
            metavar="REGEX",
            help="TensorBoard/MLflow logs: a regular expression on the run names with one named "
            r"group per domain giving its share, e.g. 'web(?P<web>[\d.]+)_code(?P<code>[\d.]+)'",
        )
        add_options(
            g,
            ("--zero-policy", ["refuse", "drop", "epsilon", "keep"], "refuse", "observations of "
             "a domain with a zero share: refuse (default), drop them, set zero shares to "
             "--epsilon and renormalise, or keep them (for the laws finite at zero, e.g. bimix fit "
             "--law loglinear)"),
            ("--epsilon", float, 1e-4, "share used by --zero-policy epsilon (default 1e-4)"),
            ("--sum-tol", float, 1e-3, "accepted |sum of proportions - 1| (default 1e-3)"),
            ("--missing", ["refuse", "drop"], "refuse", "observations with a missing loss: refuse "
             "(default) or drop them"),
        )  # fmt: skip
        g.add_argument(
            "--drop-repeated-checkpoints",
            action="store_true",
            help="drop the earlier of a run's last two checkpoints when their losses are "
            "identical in every domain (a checkpoint logged twice)",
        )
        add_options(
            g,
            ("--min-step", step_threshold, None, "leave out checkpoints before this step (or "
             "token count): the start of training, before the loss follows the law"),
        )  # fmt: skip

    @classmethod
    def present(cls, args: argparse.Namespace) -> bool:
        """True when ``args`` came from a parser given :meth:`add_arguments`."""
        return hasattr(args, "layout") and hasattr(args, "drop_repeated_checkpoints")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DataOptions:
        """The options parsed into ``args``; :class:`UsageError` if they contradict each other."""
        values = {}
        for f in fields(cls):
            values[f.name] = getattr(args, cls._DEST.get(f.name, f.name))
        values["exclude_domains"] = tuple(values["exclude_domains"] or ())
        return cls(**values)

    @property
    def size_kind_text(self) -> str | None:
        """``--size-kind`` in words (``"total parameters"``), as the data record it."""
        return None if self.size_kind is None else f"{self.size_kind} parameters"

    def to_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~bimix_bayes.data.loaders.load_data`.

        Examples
        --------
        >>> DataOptions(missing_policy="drop").to_kwargs()["missing_policy"]
        'drop'
        """
        kwargs = {**asdict(self), "size_kind": self.size_kind_text}
        del kwargs["lr_schedule"]  # applied to the loaded data (MixtureData.with_schedule)
        return kwargs

    def load(self, path: str | Path, *, to_fit: bool = True) -> MixtureData:
        """Read ``path`` with these options (:func:`~bimix_bayes.data.loaders.load_data`).

        ``to_fit=False`` reads points to score rather than to fit (``report --holdout``): one
        run or one checkpoint is enough, the design check a fit needs is skipped.

        Examples
        --------
        >>> from bimix_bayes.data.simulate import simulate_default
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sim.csv"
        >>> simulate_default(seed=1).to_long().to_csv(path, index=False)
        >>> DataOptions(exclude_domains=("math",)).load(path).domains
        ('web', 'code', 'books', 'wiki')
        """
        from bimix_bayes.data.loaders import load_data

        design = {} if to_fit else {"min_mixtures": 1, "min_steps": 1}
        return self.with_schedule(load_data(path, **self.to_kwargs(), **design))

    def with_schedule(self, data: MixtureData) -> MixtureData:
        """``data`` with ``--lr-schedule`` (:meth:`MixtureData.with_schedule`); unchanged
        without it. A schedule that cannot be read is a usage error naming the option."""
        if self.lr_schedule is None:
            return data
        try:
            schedule = LRSchedule.parse(self.lr_schedule)
        except (ValueError, OSError) as exc:
            raise UsageError(f"--lr-schedule: {exc}") from None
        return data.with_schedule(schedule)


# ------------------------------------------------------------------------------ shared blocks
def add_fit_argument(parser: Parser) -> None:
    """The positional FIT: a fit saved by ``bimix fit``."""
    parser.add_argument("fit", type=Path, help="a fit saved by `bimix fit` (.nc)")


def add_seed(
    parser: Parser, help: str = "random seed (default 0)", default: int | None = 0
) -> None:
    """``--seed`` (an integer; ``default`` 0, which the help states when it does not).

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_seed(p, help="seed of the forecasts")
    >>> p._actions[-1].help
    'seed of the forecasts (default 0)'
    """
    if default is not None and "default" not in help and f"({default})" not in help:
        help = f"{help} (default {default})"
    parser.add_argument("--seed", type=int, default=default, help=help)


def add_out(parser: Parser, *suffixes: str, help: str, required: bool = False) -> None:
    """``--out``: a file ending in one of ``suffixes`` (any path when none is given).

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_out(p, ".csv", help="write the table as CSV")
    >>> p.parse_args(["--out", "t.csv"]).out
    PosixPath('t.csv')
    """
    kind = suffix(*suffixes) if suffixes else Path
    parser.add_argument("--out", type=kind, required=required, help=help)
    if suffixes:  # a file: main checks it can be written before the work starts
        parser.set_defaults(out_is_file=True)


def add_size(parser: Parser) -> None:
    """``--size``: the model size to forecast or decide at (a fit of data with sizes)."""
    parser.add_argument(
        "--size",
        type=model_size,
        help="model size (parameters, e.g. 2.7e9 or 2.7B) for a fit of several sizes "
        "(--size-col): any size, trained or not",
    )


def model_size(text: str) -> float:
    """A model size: ``2.7e9``, ``2.7B``, ``122M``.

    Examples
    --------
    >>> model_size("2.7B")
    2700000000.0
    """
    from bimix_bayes.data.loaders import parse_size

    value = parse_size(text)
    if value is None or not value > 0:
        raise argparse.ArgumentTypeError(
            f"expected a model size such as 2.7e9 or 2.7B, got {text!r}"
        )
    return value


def add_objective(parser: Parser, help: str = "as in `bimix optimize`") -> None:
    """``--objective``: mean (default), quantile:Q or cvar:Q."""
    parser.add_argument("--objective", type=objective, default="mean", help=help)


def add_bootstrap(parser: Parser, help: str) -> None:
    """``--bootstrap``: least-squares run-bootstrap resamples (default 200; 0 for none)."""
    parser.add_argument("--bootstrap", type=count(0), default=200, help=help)


def add_sampler_overrides(parser: Parser) -> None:
    """``--spec`` and the ``--draws``/``--tune``/``--chains`` overrides of its sampler."""
    parser.add_argument(
        "--spec", type=Path, help="model spec (.toml/.yaml; default models/bimix.toml)"
    )
    parser.add_argument(
        "--law",
        choices=sorted(LAWS),
        help="the mixing law (overrides the spec's [law] name; `bimix laws` lists them)",
    )
    default = load_spec()["sampler"]  # what the help states as the default

    def given(what: str, key: str, extra: str = "") -> str:
        return f"{what} (overrides the spec; the default spec: {default[key]:g}{extra})"

    parser.add_argument("--draws", type=count(1), help=given("draws per chain", "draws"))
    parser.add_argument("--tune", type=count(1), help=given("tuning steps per chain", "tune"))
    parser.add_argument("--chains", type=count(1), help=given("chains", "chains"))
    parser.add_argument(
        "--target-accept",
        type=probability,
        help=given(
            "NUTS target acceptance rate, 0-1",
            "target_accept",
            "; 0.99: smaller steps, fewer divergences",
        ),
    )
    parser.add_argument(
        "--no-retry",
        dest="retry",
        action="store_false",
        help="do not refit once with safer sampler settings when the fit fails its diagnostics",
    )


def model_spec(args: argparse.Namespace) -> dict[str, Any] | None:
    """The spec of ``--spec`` with ``--law`` and the sampler overrides applied; None when no
    option was given (the default spec).

    Examples
    --------
    >>> spec = model_spec(argparse.Namespace(spec=None, law="loglinear", draws=100))
    >>> spec["law"]["name"], spec["sampler"]["draws"]
    ('loglinear', 100)
    >>> model_spec(argparse.Namespace(spec=None, law=None)) is None
    True
    """
    overrides = sampler_overrides(args)
    law = getattr(args, "law", None)
    if getattr(args, "spec", None) is None and not overrides and law is None:
        return None
    spec = load_spec(getattr(args, "spec", None))
    spec["sampler"].update(overrides)
    if law is not None:
        spec["law"]["name"] = law
    return merge_spec(spec)


def sampler_overrides(args: argparse.Namespace) -> dict[str, int | float]:
    """The ``--draws``/``--tune``/``--chains``/``--target-accept`` given (others left out).

    Examples
    --------
    >>> sampler_overrides(argparse.Namespace(draws=100, tune=None, chains=2))
    {'draws': 100, 'chains': 2}
    """
    return {
        key: getattr(args, key)
        for key in ("draws", "tune", "chains", "target_accept")
        if getattr(args, key, None) is not None
    }
