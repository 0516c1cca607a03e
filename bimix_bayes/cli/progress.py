"""What a long ``bimix`` command is doing, said on stderr: :class:`Progress`.

Every step that takes more than a few seconds (compiling and sampling the model, each split of
a backtest, the least-squares bootstrap, the report's backtests and figures) writes one *stage
line* on stderr before it starts and, for the long ones, one when it is done::

    bimix: fit: compiling the model (15-35 s), then sampling 4 chains x 1000 draws...
    bimix: fit: sampled in 41 s

Stage lines are written whether or not stderr is a terminal, so that CI logs, notebooks and
``nohup`` files show them; in a terminal a counted loop (the bootstrap's resamples) also draws a
one-line bar that it redraws in place, and nutpie draws its own while it samples. stdout holds
the results only, unchanged. The global ``--quiet`` (``bimix --quiet fit ...`` or ``bimix fit
... --quiet``, registered by :func:`add_quiet`) silences all of it; notes, warnings and errors
still print.

The library never prints progress: its long functions take an optional ``progress`` callable
(:func:`bimix_bayes.evaluation.runner.backtest`, :meth:`bimix_bayes.leastsq.fit.BiMixLeastSquares.
fit`, :func:`bimix_bayes.report.html.build_report`), which the commands fill in from here.

Examples
--------
>>> import io
>>> err = io.StringIO()
>>> progress = Progress("fit-ls", stream=err)
>>> progress("bootstrap 200 resamples of whole runs...")
>>> Progress("fit-ls", quiet=True, stream=err)("not shown")
>>> err.getvalue()
'bimix: fit-ls: bootstrap 200 resamples of whole runs...\\n'
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, TextIO

from bimix_bayes.cli.errors import PROG

if TYPE_CHECKING:
    from bimix_bayes.data.table import MixtureData
    from bimix_bayes.evaluation.protocols import Protocol

__all__ = [
    "Progress",
    "add_quiet",
    "backtest_progress",
    "duration",
    "sampling_words",
]

#: Help of ``--quiet``.
QUIET_HELP = "say nothing on stderr about what a long command is doing (errors still print)"
#: Characters of the terminal bar.
BAR_WIDTH = 30


def duration(seconds: float) -> str:
    """A duration as a person says it: ``3.1 s``, ``41 s``, ``5 min 30 s``.

    Examples
    --------
    >>> duration(3.14), duration(41.4), duration(330.2)
    ('3.1 s', '41 s', '5 min 30 s')
    """
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def sampling_words(sampler: dict, compiled: bool = False) -> str:
    """What a Bayesian fit under the spec's ``sampler`` table will do, in a few words
    (``compiled``: this process has compiled the model already). Compiling takes about 15 s
    once PyTensor's on-disk cache holds the model's pieces, about 35 s the first time after
    installing (SlimPajama 122M, 2 cores).

    Examples
    --------
    >>> sampling_words({"backend": "nutpie", "chains": 4, "draws": 1000, "tune": 1000})
    'compiling the model (15-35 s), then sampling 4 chains x 1000 draws (+1000 tuning)'
    """
    compiles = sampler["backend"] == "nutpie" and not compiled
    return (
        f"{'compiling the model (15-35 s), then ' * compiles}sampling "
        f"{sampler['chains']} chains x {sampler['draws']} draws (+{sampler['tune']} tuning)"
    )


class Progress:
    """Stage lines of one ``bimix`` command on stderr (``bimix: COMMAND: TEXT``).

    Call it with a line; :meth:`timed` wraps a step in a line before and one after (with the
    time it took); :meth:`counted` is a ``(done, total)`` callable for a counted loop, which
    also draws a bar in a terminal.

    Parameters
    ----------
    command
        The command's name, shown after ``bimix:``.
    quiet
        Say nothing (``--quiet``).
    stream
        Where to write; default: ``sys.stderr`` at the time of writing.
    tty
        Whether ``stream`` is a terminal (a bar is drawn); default: ask the stream.

    Examples
    --------
    >>> import io
    >>> err = io.StringIO()
    >>> progress = Progress("report", stream=err)
    >>> with progress.timed("figures", done="figures drawn"):
    ...     pass
    >>> err.getvalue().splitlines()
    ['bimix: report: figures...', 'bimix: report: figures drawn in 0.0 s']
    """

    def __init__(
        self,
        command: str,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.command = command
        self.quiet = quiet
        self._stream = stream
        self._tty = tty
        self._bar_open = False
        self._bar_drawn = 0.0
        #: Whether a Bayesian fit has run in this process (the model is compiled once).
        self.model_compiled = False

    @classmethod
    def of(cls, args: argparse.Namespace, command: str | None = None) -> Progress:
        """The progress of the command ``args`` were parsed for (``--quiet`` read from them).

        Examples
        --------
        >>> Progress.of(argparse.Namespace(command="fit", quiet=True)).quiet
        True
        >>> Progress.of(argparse.Namespace(), "backtest").command  # a parser without --quiet
        'backtest'
        """
        name = command or getattr(args, "command", None) or PROG
        return cls(name, quiet=bool(getattr(args, "quiet", False)))

    @property
    def stream(self) -> TextIO:
        """Where the lines go."""
        return self._stream if self._stream is not None else sys.stderr

    @property
    def tty(self) -> bool:
        """Whether :attr:`stream` is a terminal."""
        if self._tty is not None:
            return self._tty
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):  # a closed or unusual stream
            return False

    def __call__(self, text: str) -> None:
        """Write the stage line ``bimix: COMMAND: text`` (nothing with ``quiet``)."""
        if self.quiet:
            return
        self._close_bar()
        with suppress(OSError, ValueError):  # stdout's lines first where they share a file
            sys.stdout.flush()
        print(f"{PROG}: {self.command}: {text}", file=self.stream, flush=True)

    def prefixed(self, prefix: str) -> Callable[[str], None]:
        """A line callable that writes ``prefix`` before each line (for a library's
        ``progress``).

        Examples
        --------
        >>> import io
        >>> err = io.StringIO()
        >>> Progress("report", stream=err).prefixed("backtest horizon:0.5: ")("split 1 of 1")
        >>> err.getvalue()
        'bimix: report: backtest horizon:0.5: split 1 of 1\\n'
        """
        return lambda line: self(f"{prefix}{line.strip()}")

    @contextmanager
    def timed(self, doing: str, done: str | None = None) -> Iterator[None]:
        """Say ``doing...`` before the block and ``done in N s`` after it.

        ``done`` defaults to ``doing: done``. Nothing is said after a block that raises (the
        error says why).
        """
        self(f"{doing}...")
        t0 = time.perf_counter()
        yield
        self(f"{done or doing + ': done'} in {duration(time.perf_counter() - t0)}")

    def counted(
        self, doing: str, label: str, done: str | None = None
    ) -> Callable[[int, int], None]:
        """A ``(done, total)`` callable for a counted loop (a library's ``progress``).

        At ``done`` 0 it says ``doing...``; at ``done == total``, ``done in N s`` (``done``
        defaults to ``doing: done``, as in :meth:`timed`); in between, in a terminal only, it
        redraws a bar named ``label`` in place.

        Examples
        --------
        >>> import io
        >>> err = io.StringIO()
        >>> step = Progress("fit-ls", stream=err, tty=True).counted("bootstrap", "resamples")
        >>> step(0, 2); step(2, 2)
        >>> print(err.getvalue().replace("\\r", "\\n(redrawn) "), end="")  # doctest: +ELLIPSIS
        bimix: fit-ls: bootstrap...
        <BLANKLINE>
        (redrawn) bimix: fit-ls: resamples [------------------------------] 0/2
        (redrawn) bimix: fit-ls: resamples [##############################] 2/2
        bimix: fit-ls: bootstrap: done in ... s
        """
        t0 = time.perf_counter()

        finished = done or f"{doing}: done"

        def step(count: int, total: int) -> None:
            nonlocal t0
            if count == 0:
                t0 = time.perf_counter()
                self(f"{doing}...")
            self._draw_bar(label, count, total)
            if count >= total:
                self(f"{finished} in {duration(time.perf_counter() - t0)}")

        return step

    def _draw_bar(self, label: str, done: int, total: int) -> None:
        """In a terminal: ``bimix: COMMAND: label [####----] done/total``, redrawn in place."""
        if self.quiet or not self.tty:
            return
        now = time.perf_counter()
        if 0 < done < total and now - self._bar_drawn < 0.1:
            return  # at most ten redraws a second
        self._bar_drawn = now
        filled = int(BAR_WIDTH * done / total) if total else BAR_WIDTH
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        print(
            f"\r{PROG}: {self.command}: {label} [{bar}] {done}/{total}",
            end="",
            file=self.stream,
            flush=True,
        )
        self._bar_open = True

    def _close_bar(self) -> None:
        if self._bar_open:
            print(file=self.stream, flush=True)
            self._bar_open = False


def backtest_progress(
    progress: Progress,
    data: MixtureData,
    protocol: str | Protocol,
    *,
    method: str = "both",
    seed: int = 0,
    n_splits: int = 5,
    prefix: str = "",
) -> Callable[[str], None]:
    """Stage lines for a backtest: which split starts (k of n) and what each fit took.

    Makes the backtest's splits (so that a protocol the data cannot support fails here, before
    any line), says the first fit starts, and returns the callable to pass as ``progress`` to
    :func:`~bimix_bayes.evaluation.runner.backtest` with the same arguments: it receives one
    line per finished fit (the runner fits every method on each split in turn), restates it as
    ``split k of n: ...`` and says which fit starts next.

    Parameters
    ----------
    progress
        Where the lines go.
    data, protocol, method, seed, n_splits
        As given to :func:`~bimix_bayes.evaluation.runner.backtest`.
    prefix
        Put before each line (``bimix report`` names the backtest).

    Examples
    --------
    >>> import io
    >>> from bimix_bayes.data.simulate import simulate_default
    >>> err = io.StringIO()
    >>> line = backtest_progress(
    ...     Progress("backtest", stream=err), simulate_default(seed=1), "holdout-mixtures:6",
    ...     method="ls", n_splits=2,
    ... )
    >>> line("  holdout-mixtures:6 split 0: ls fitted and scored in 1.2 s")
    >>> line("  holdout-mixtures:6 split 1: ls fitted and scored in 1.1 s")
    >>> print(err.getvalue(), end="")
    bimix: backtest: split 1 of 2: fitting ls...
    bimix: backtest: split 1 of 2: ls fitted and scored in 1.2 s
    bimix: backtest: split 2 of 2: fitting ls...
    bimix: backtest: split 2 of 2: ls fitted and scored in 1.1 s
    """
    from bimix_bayes.evaluation.protocols import parse_protocol
    from bimix_bayes.evaluation.runner import method_list
    from bimix_bayes.evaluation.splits import fixed_budget, make_splits

    protocol = parse_protocol(protocol)
    splits = make_splits(data, protocol, seed=seed, n_splits=n_splits)
    methods = method_list(method)
    fits = [(k, s.name, m) for k, s in enumerate(splits, start=1) for m in methods]
    compiles = not fixed_budget(data)  # the fixed-budget Bayesian fit is exact: no sampler
    finished = 0

    def starting(index: int) -> None:
        k, _, m = fits[index]
        first = compiles and m == "bayes" and not progress.model_compiled
        note = " (compiling the model first, ~20 s)" if first else ""
        progress(f"{prefix}split {k} of {len(splits)}: fitting {m}{note}...")

    def finish(line: str) -> None:
        nonlocal finished
        if finished >= len(fits):  # more fits than expected: pass the line on as it is
            progress(f"{prefix}{line.strip()}")
            return
        k, name, m = fits[finished]
        text = line.strip().removeprefix(f"{protocol} split {name}: ")
        progress(f"{prefix}split {k} of {len(splits)}: {text}")
        progress.model_compiled |= compiles and m == "bayes"
        finished += 1
        if finished < len(fits):
            starting(finished)

    starting(0)
    return finish


def add_quiet(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """Add ``-q``/``--quiet`` to ``parser``.

    On the top parser (``top``) it defaults to False; on a command's parser its default is
    suppressed, so that ``bimix --quiet fit ...`` is not undone by the command's own default
    and ``bimix fit ... --quiet`` works too.

    Examples
    --------
    >>> top = argparse.ArgumentParser(prog="bimix")
    >>> add_quiet(top, top=True)
    >>> sub = top.add_subparsers(dest="command")
    >>> add_quiet(sub.add_parser("fit"))
    >>> [top.parse_args(a).quiet for a in (["fit"], ["-q", "fit"], ["fit", "--quiet"])]
    [False, True, True]
    """
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help=QUIET_HELP,
    )
