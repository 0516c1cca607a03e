"""The hierarchical Bayesian model and what reads its posterior.

* :mod:`~bimix_bayes.bayes.spec`: model specs (priors, likelihood, sampler) as data;
* :mod:`~bimix_bayes.bayes.likelihood`: the curve likelihood with run effects integrated out;
* :mod:`~bimix_bayes.bayes.model`: :class:`BiMixModel` (build, sample, diagnose);
* :mod:`~bimix_bayes.bayes.diagnostics`: r-hat, ESS, divergences, BFMI and the failed-fit warning;
* :mod:`~bimix_bayes.bayes.persistence`: netCDF save/load with integrity checks;
* :mod:`~bimix_bayes.bayes.forecast`: the forecast core (draws and their summary table);
* :mod:`~bimix_bayes.bayes.checks`: prior and posterior predictive checks;
* :mod:`~bimix_bayes.bayes.summary`: parameter tables beside least squares.
"""

import warnings as _warnings

# PyTensor's note that it found no BLAS, printed when PyMC is first imported (six lines on every
# Python API session; `bimix` hides it too, cli.app.quiet_library_warnings): the sampler's code
# is compiled by numba (nutpie), and the few small matrix products left to PyTensor's C backend
# do not need BLAS. Only this one message is filtered.
_warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
