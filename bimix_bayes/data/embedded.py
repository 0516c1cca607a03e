"""The embedded default dataset: real loss curves of tiny language models, made on a laptop.

``bimix study`` trained byte-level GPTs (2 layers, width 64, about 125k parameters) on a CPU, on
mixtures of five text domains taken from package registries (Python standard-library source,
SPDX licence texts, WordNet glosses, Jane Austen's novels, the Python manual): a uniform mixture,
the four entropy-proxy mixtures and three spread mixtures, each evaluated per domain at ten
log-spaced checkpoints. The files (``bimix_bayes/data/datasets/tiny_lm_study/``) are the study's own
output: ``losses.csv`` (the canonical long table), ``mixtures.csv``, ``entropy.csv`` and
``runs.json`` (per run: mixture, training config, seed, library versions, wall time; the corpus
packages, licences and checksums). Regenerate them with::

    bimix corpora --out corpora
    bimix study --corpora corpora --out study      # about 15 minutes on 2 cores

Examples
--------
>>> data = load_default()
>>> data.n_runs, list(data.domains)[:2]
(8, ['python', 'licenses'])
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.table import MixtureData

__all__ = ["DEFAULT_STUDY", "default_metadata", "load_default"]

#: The folder of the embedded study (inside the installed package).
DEFAULT_STUDY = Path(str(resources.files("bimix_bayes.data") / "datasets" / "tiny_lm_study"))

DESCRIPTION = (
    "REAL loss curves of tiny byte-level GPTs (~125k parameters) trained on a CPU by "
    "`bimix study` on 5 text domains from package registries (Python stdlib source, SPDX "
    "licence texts, WordNet glosses, Jane Austen, the Python manual)"
)


#: How the embedded data names its source (not the install path, which differs per machine).
SOURCE = "bimix-bayes default data (datasets/tiny_lm_study/losses.csv)"


def load_default() -> MixtureData:
    """The embedded tiny-LM study as validated :class:`~bimix_bayes.data.table.MixtureData`
    (steps)."""
    return replace(load_data(DEFAULT_STUDY / "losses.csv", volume="steps"), source=SOURCE)


def default_metadata() -> dict[str, Any]:
    """The study's ``runs.json``: design, training config, versions, corpus checksums."""
    return json.loads((DEFAULT_STUDY / "runs.json").read_text(encoding="utf-8"))
