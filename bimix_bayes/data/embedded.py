"""The embedded default dataset: real loss curves of tiny language models, made on a laptop.

``bimix study`` trained byte-level GPTs (2 layers, width 64, about 125k parameters) on a CPU, on
mixtures of five text domains taken from package registries (Python standard-library source,
SPDX licence texts, WordNet glosses, Jane Austen's novels, the Python manual): 12 mixtures (the
uniform one, the four entropy-proxy mixtures and seven space-filling mixtures over the simplex,
every share >= 3 %), four of them (uniform, entropy_vne, fill_3, fill_6) with 3 seeds each, so
the run-to-run variation is measured: 20 runs of 4000 steps, each evaluated per domain at 12
log-spaced checkpoints from step 250. The files (``bimix_bayes/data/datasets/tiny_lm_study/``)
are the study's own output: ``losses.csv`` (the canonical long table, with ``mixture`` and
``seed`` columns), ``mixtures.csv``, ``entropy.csv`` and ``runs.json`` (the design, the learning-
rate schedule, and per run: mixture, training config, seed, library versions, wall and CPU time;
the corpus packages, licences and checksums). Regenerate them with::

    bimix corpora --out corpora
    bimix study --corpora corpora --out study --design space-filling --n-space-filling 7 \\
        --min-share 0.03 --replicates 3 --replicate-mixtures uniform,entropy_vne,fill_3,fill_6 \\
        --steps 4000 --checkpoints 12 --first-checkpoint 250 --workers 2

(5,490 CPU seconds of training: about 46 minutes on 2 idle cores.)

The first three checkpoints (steps 250-414, the first tenth of training) are left out by
default (``LAW_MIN_STEP``): there the loss is still leaving its initial plateau (its log-log
slope steepens from step to step), a phase no power law in the step describes. Fitted on
them, the least-squares law extrapolated from steps <= 2000 to 2416-4000 (``horizon:0.5``)
misses by 4.9 % on average (mean over domains 3.9 %); without them by 2.9 % (0.9 %).

Examples
--------
>>> data = load_default()
>>> data.n_runs, list(data.domains)[:2]
(20, ['python', 'licenses'])
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.table import MixtureData

__all__ = ["DEFAULT_STUDY", "LAW_MIN_STEP", "default_metadata", "load_default"]

#: The folder of the embedded study (inside the installed package).
DEFAULT_STUDY = Path(str(resources.files("bimix_bayes.data") / "datasets" / "tiny_lm_study"))

DESCRIPTION = (
    "REAL loss curves of tiny byte-level GPTs (~125k parameters) trained on a CPU by "
    "`bimix study` (12 mixtures, 4 of them with 3 seeds: 20 runs) on 5 text domains from "
    "package registries (Python stdlib source, SPDX licence texts, WordNet glosses, Jane "
    "Austen, the Python manual)"
)


#: How the embedded data names its source (not the install path, which differs per machine).
SOURCE = "bimix-bayes default data (datasets/tiny_lm_study/losses.csv)"


#: Checkpoints before this step are left out of the default data (see the module docstring).
LAW_MIN_STEP = 500.0


def load_default(min_step: float | None = LAW_MIN_STEP) -> MixtureData:
    """The embedded tiny-LM study as validated :class:`~bimix_bayes.data.table.MixtureData`
    (steps), from ``min_step`` on (None: every checkpoint)."""
    data = load_data(DEFAULT_STUDY / "losses.csv", volume="steps", min_step=min_step)
    return replace(data, source=SOURCE)


def default_metadata() -> dict[str, Any]:
    """The study's ``runs.json``: design, training config, versions, corpus checksums."""
    return json.loads((DEFAULT_STUDY / "runs.json").read_text(encoding="utf-8"))
