"""The exit-code convention of every ``bimix`` command, and the errors that map onto it.

=====  =====================================================================================
code   meaning
=====  =====================================================================================
0      success
1      the command line was fine but the work could not be done: a bad or missing input file,
       data the law cannot use, a failed fit with ``--strict``, a training run that failed
2      bad usage, found from the command line alone: argparse errors and contradictory
       options (nothing was read or written)
3      an internal error: a bug in bimix (the message asks for a report with ``--debug``)
130    interrupted (Ctrl-C): the work stopped; no output file is left half-written
=====  =====================================================================================

Commands either return the code or raise one of :data:`USER_ERRORS` (exit code 1) or
:class:`UsageError` (exit code 2); :func:`bimix_bayes.cli.app.main` maps anything else to
:data:`EXIT_BUG`.

Examples
--------
>>> EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BUG
(0, 1, 2, 3)
>>> issubclass(FitFailedError, USER_ERRORS)
True
"""

from __future__ import annotations

import sys

from bimix_bayes.bayes.spec import SpecError
from bimix_bayes.data.table import DataError
from bimix_bayes.leastsq.curve import FitError

__all__ = [
    "EXIT_BUG",
    "EXIT_CODES_HELP",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "USER_ERRORS",
    "FitFailedError",
    "UsageError",
    "fail",
]

PROG = "bimix"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C

#: The table of exit codes, as ``bimix --help`` shows it.
EXIT_CODES_HELP = (
    "exit codes: 0 success; 1 bad input data or files, or the work failed (e.g. a failed fit "
    "with --strict); 2 bad usage (wrong or contradictory options); 3 internal error (a bug: "
    "please report it with the command and its --debug output); 130 interrupted (Ctrl-C; no "
    "output file is left half-written)"
)


class FitFailedError(RuntimeError):
    """``bimix fit --strict`` on a fit that failed its diagnostics (exit code 1)."""


class UsageError(Exception):
    """Options that contradict each other, found after parsing (exit code 2)."""


#: Exceptions that are the user's problem (input, data, spec, a failed fit): exit code 1 with
#: one line on stderr. ``DataError``, ``SpecError`` and the backtest's ``ProtocolError`` are
#: ``ValueError``; a missing or unreadable file is an ``OSError``.
USER_ERRORS: tuple[type[BaseException], ...] = (
    DataError,
    FitError,
    FitFailedError,
    SpecError,
    ValueError,
    OSError,
)


def fail(message: str, code: int = EXIT_ERROR) -> int:
    """Print ``bimix: error: MESSAGE`` on stderr and return ``code`` (the exit code).

    Examples
    --------
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     code = fail("corpora/manifest.json is missing")
    >>> code, err.getvalue()
    (1, 'bimix: error: corpora/manifest.json is missing\\n')
    """
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code
