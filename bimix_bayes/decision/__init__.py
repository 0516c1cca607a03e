"""Decisions from a posterior: which mixture to train.

* :mod:`~bimix_bayes.decision.objectives`: mean, quantile and CVaR over posterior draws;
* :mod:`~bimix_bayes.decision.constraints`: bounds, fixed shares, data availability;
* :mod:`~bimix_bayes.decision.solver`: the loss surface over all draws and its constrained solver;
* :mod:`~bimix_bayes.decision.recommend`: :func:`optimize` and :func:`rank` (the recommendation
  against a baseline).

No module here imports PyMC.
"""
