"""The ``bimix`` command line: :func:`build_parser` and :func:`main`.

Each command family registers itself (``add_commands``) from its own module; :func:`main` parses,
runs the command, and maps what it raises onto one exit-code convention for every command
(:mod:`bimix_bayes.cli.errors`): 0 success, 1 a data or fit error (one message on stderr; the
traceback only with ``--debug``), 2 bad usage, 3 an internal error (a bug).

Examples
--------
>>> build_parser().parse_args(["fit-ls", "runs.csv", "--group-col", "size", "--group", "70M"]).group
'70M'
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from bimix_bayes._version import __version__
from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.cli import (
    backtest,
    bayes,
    check,
    data_tools,
    decide,
    demo,
    leastsq,
    next_run,
    proxy,
    report,
)
from bimix_bayes.cli.errors import (
    EXIT_BUG,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    USER_ERRORS,
    UsageError,
    fail,
)
from bimix_bayes.cli.options import DataOptions
from bimix_bayes.cli.progress import add_quiet
from bimix_bayes.data.files import check_writable
from bimix_bayes.data.table import DataWarning

__all__ = ["build_parser", "fast_compile_settings", "main", "quiet_library_warnings"]

#: Printed after an internal error (exit code 3).
BUG_HINT = "this is a bug, please report it with the command and `--debug` output"


def build_parser() -> argparse.ArgumentParser:
    """The ``bimix`` parser with every command registered (in the order ``--help`` lists them).

    Examples
    --------
    >>> parser = build_parser()
    >>> parser.parse_args(["simulate", "--out", "sim.csv"]).func.__name__
    'cmd_simulate'
    >>> "3 internal error" in parser.epilog
    True
    >>> for argv in (["simulate"], ["--quiet", "simulate"], ["simulate", "-q"]):
    ...     print(parser.parse_args([*argv, "--out", "s.csv"]).quiet)
    False
    True
    True
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="BiMix data-mixing laws: fit loss logs of proxy runs, forecast, decide.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    add_quiet(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in (
        check.add_commands,  # check
        leastsq.add_commands,  # fit-ls
        data_tools.add_simulate,
        demo.add_commands,
        data_tools.add_entropy,
        bayes.add_commands,  # fit, summary, predict
        decide.add_commands,  # optimize, rank
        next_run.add_commands,  # next
        report.add_commands,
        backtest.add_commands,
        proxy.add_commands,  # corpora, train, study, verify
    ):
        register(sub)
    for command in sub.choices.values():  # `bimix fit ... --quiet` as well as `bimix --quiet fit`
        add_quiet(command)
    return parser


#: The warnings printed so far in this command: one said from several places (each forecast
#: of a report, optimize's target and baseline) is printed once.
_SAID: set[tuple[type[Warning], str]] = set()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if (category, str(message)) in _SAID:
        return
    _SAID.add((category, str(message)))
    if issubclass(category, DataWarning):
        kind = "note"
    elif issubclass(category, FitWarning):
        kind = "WARNING"
    else:
        kind = "warning"
    print(f"{PROG}: {kind}: {message}", file=sys.stderr)


def fast_compile_settings() -> None:
    """Compile sampler code with LLVM optimisation level 1 unless the user chose a level.

    Measured on SlimPajama 122M (numba 0.65, PyTensor 2.38, 2 cores): level 1 compiles the
    model about 2 s faster than numba's default 3 (medians of 3 processes: 15.7 s against
    17.5 s from data to a converged fit) and samples as fast. Level 0 must not be used: code
    compiled at level 0 samples about 25 times slower (73 s against 2 s) and PyTensor does not
    write it to its on-disk cache, so every process pays again. Numba reads the level when it is
    first imported, so this only works before PyMC is loaded; it applies to this process only.
    """
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_OPT", "1")


def quiet_library_warnings() -> None:
    """Hide the libraries' ``FutureWarning`` notices (ArviZ prints one when it is imported)
    and PyTensor's BLAS note.

    They speak to the library's programmers, not to a user of ``bimix``; the package's own
    warnings (data notes, failed fits, fallbacks) are kept. Call it before the libraries are
    imported; it changes the warning filters of this process.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     quiet_library_warnings()
    ...     warnings.warn_explicit("upcoming change", FutureWarning, "arviz/__init__.py", 1,
    ...                            module="arviz")
    ...     warnings.warn_explicit("ours", FutureWarning, "x.py", 1, module="bimix_bayes.x")
    >>> [str(w.message) for w in seen]
    ['ours']
    """
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("default", category=FutureWarning, module=r"bimix_bayes(\.|$)")
    # PyTensor's note on its C backend; the sampler's code is compiled by numba (nutpie), and
    # the few small matrix products left to the C backend do not need BLAS.
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 data or fit error, 2 usage, 3 bug).

    Argparse errors exit with code 2 through :class:`SystemExit`, as argparse does.

    Examples
    --------
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     code = main(["fit-ls", "/nonexistent/runs.csv"])
    >>> code, err.getvalue().startswith("bimix: error:")
    (1, True)
    """
    fast_compile_settings()
    quiet_library_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if DataOptions.present(args):
        try:
            DataOptions.from_args(args)  # contradictory data options: usage, before any work
        except UsageError as exc:
            parser.error(str(exc))
    _SAID.clear()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("default", DataWarning)
        try:
            if getattr(args, "out_is_file", False) and args.out is not None:
                check_writable(args.out)  # not after the work, as a table is printed
            return int(args.func(args))
        except BrokenPipeError:
            return _reader_went_away()
        except KeyboardInterrupt:
            if args.debug:
                traceback.print_exc()
            print(f"\n{PROG}: interrupted; no output file is left half-written", file=sys.stderr)
            return EXIT_INTERRUPTED
        except UsageError as exc:
            if args.debug:
                traceback.print_exc()
            return fail(str(exc), EXIT_USAGE)
        except USER_ERRORS as exc:
            if args.debug:
                traceback.print_exc()
            return fail(str(exc))
        except Exception as exc:
            if args.debug:
                traceback.print_exc()
            what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            print(f"{PROG}: internal error: {what}; {BUG_HINT}", file=sys.stderr)
            return EXIT_BUG


def _reader_went_away() -> int:
    """The reader of stdout closed it (``bimix summary fit.nc | head``): stop quietly, as Unix
    tools do, and keep Python from complaining when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a notebook, a test)
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
