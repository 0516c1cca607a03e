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
