"""The installed package's version, in one place (imported by modules that stamp outputs)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bimix-bayes")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
