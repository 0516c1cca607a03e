"""Small file helpers shared by every module that writes results: atomic writes only.

A result file is either complete or absent: it is written to a temporary file in the same folder
and renamed over the target, so a crash or a full disk never leaves half a file behind.

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     p = pathlib.Path(d) / "out.txt"
...     _ = atomic_write_text(p, "hello\\n")
...     p.read_text()
'hello\\n'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_with", "check_writable"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable(target: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Fail now, not after an hour of work, when ``target`` cannot be written.

    Creates the parent folder if needed and writes (then removes) a temporary file beside
    ``target``. Raises :class:`OSError` naming the path, the reason and ``option``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> check_writable(folder / "fits" / "fit.nc").name
    'fit.nc'
    >>> check_writable(folder)
    Traceback (most recent call last):
    ...
    IsADirectoryError: ... is a folder; give --out a file name (e.g. .../fit.nc)
    """
    target = Path(target)
    if target.is_dir():
        raise IsADirectoryError(
            f"{target} is a folder; give {option} a file name (e.g. {target}/fit.nc)"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise type(exc)(
            f"cannot write {target} ({exc.strerror or exc}); choose another {option} "
            "(checked before any work was done)"
        ) from exc
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_with(target: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` and atomically move the result to ``target``."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    return atomic_write_with(target, lambda p: p.write_text(text, encoding="utf-8"))
