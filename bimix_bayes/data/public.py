"""The public datasets' folder and the SlimPajama runs, under the names existing code imports.

:func:`find_datasets` and :func:`load_slimpajama` live in :mod:`bimix_bayes.data.public_loaders`
with the readers of the other public datasets; this module re-exports them.

Examples
--------
>>> root = find_datasets()
>>> data = load_slimpajama(root, "122M") if root else None  # doctest: +SKIP
"""

from __future__ import annotations

from bimix_bayes.data.public_loaders import SLIMPAJAMA_FILE, find_datasets, load_slimpajama

__all__ = ["SLIMPAJAMA_FILE", "find_datasets", "load_slimpajama"]
