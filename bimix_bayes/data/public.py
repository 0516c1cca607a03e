"""Readers for the public loss measurements used to check the package against reality.

The files themselves are never shipped (several have no licence for redistribution): these
functions take the folder that holds them, or find it through ``$BIMIX_SHARED_DATASETS`` or a
``shared/datasets`` folder beside the source checkout.

Examples
--------
>>> root = find_datasets()
>>> data = load_slimpajama(root, "122M") if root else None  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.table import MixtureData

__all__ = ["SLIMPAJAMA_FILE", "find_datasets", "load_slimpajama"]

SLIMPAJAMA_FILE = Path("dmsl_slimpajama_shukor2025") / "dmsl_llm_slimpajama.csv"


def find_datasets() -> Path | None:
    """The public datasets folder: ``$BIMIX_SHARED_DATASETS``, else ``../shared/datasets``
    beside the source checkout or the working directory; None when absent."""
    env = os.environ.get("BIMIX_SHARED_DATASETS")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[3] / "shared" / "datasets",
        Path.cwd().parent / "shared" / "datasets",
    ]
    return next((p for p in candidates if p.is_dir()), None)


def load_slimpajama(root: str | os.PathLike[str], size: str = "122M", **kwargs) -> MixtureData:
    """The SlimPajama 7-domain runs (Shukor et al. 2025) of one model size, tokens as volume.

    Leaves out the out-of-domain ``openhermes`` loss (it has no proportion) and the duplicated
    last checkpoint (19.998e9 and 20e9 tokens carry identical losses). Extra keyword arguments go
    to :func:`~bimix_bayes.data.loaders.load_data`.
    """
    options = {"exclude_domains": ["openhermes"], "drop_repeated_checkpoints": True, **kwargs}
    return load_data(Path(root) / SLIMPAJAMA_FILE, group_col="model_size", group=size, **options)
