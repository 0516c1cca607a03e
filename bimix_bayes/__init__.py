"""bimix-bayes: Bayesian BiMix data-mixing laws for LLM pretraining.

Fit the BiMix law (Ge et al., arXiv 2405.14908) to loss logs of proxy runs, forecast the loss of a
mixture after more steps, and compare with the paper's least-squares fit.

Examples
--------
>>> from bimix_bayes import BiMixLeastSquares, simulate_default
>>> fit = BiMixLeastSquares(n_bootstrap=0).fit(simulate_default(seed=0))
>>> len(fit.params_) == 5
True
"""

from bimix_bayes._version import __version__
from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.simulate import simulate, simulate_default
from bimix_bayes.data.table import DataError, DataWarning, MixtureData
from bimix_bayes.laws.bimix import IdentifiableParams, PaperParams, bimix_loss
from bimix_bayes.leastsq.fit import BiMixLeastSquares

# The Bayesian parts import PyMC (seconds): load them on first use, so that `import bimix_bayes`
# and the least-squares commands stay fast.
_LAZY = {
    "BiMixModel": "bimix_bayes.bayes.model",
    "predict": "bimix_bayes.bayes.forecast",
    "load_fit": "bimix_bayes.bayes.persistence",
    "save_fit": "bimix_bayes.bayes.persistence",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bimix_bayes' has no attribute {name!r}")


__all__ = [
    "BiMixLeastSquares",
    "BiMixModel",
    "DataError",
    "DataWarning",
    "IdentifiableParams",
    "MixtureData",
    "PaperParams",
    "__version__",
    "bimix_loss",
    "load_data",
    "load_fit",
    "predict",
    "save_fit",
    "simulate",
    "simulate_default",
]
