"""Decisions from a posterior: which mixture to train.

* :mod:`~bimix_bayes.decision.objectives`: mean, quantile and CVaR over posterior draws;
* :mod:`~bimix_bayes.decision.constraints`: bounds, fixed shares, data availability;
* :mod:`~bimix_bayes.decision.surface`: the loss surface over all draws, the domain weights and
  the per-draw closed-form optimum;
* :mod:`~bimix_bayes.decision.solver`: the constrained solver (SLSQP and a KKT polish);
* :mod:`~bimix_bayes.decision.problem`: the problem a fit poses (surface over training domains,
  weights, candidate shares);
* :mod:`~bimix_bayes.decision.recommend`: :func:`optimize` (the recommendation against a
  baseline), returning a :class:`~bimix_bayes.decision.recommendation.Recommendation`;
* :mod:`~bimix_bayes.decision.rank`: :func:`rank` (candidate mixtures, with P(best)).

No module here imports PyMC.
"""
