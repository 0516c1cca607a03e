"""Mixing laws: each law's math written once, for numpy and pytensor alike.

* :mod:`~bimix_bayes.laws.bimix`: BiMix (Ge et al., arXiv 2405.14908) in the paper's and the
  identifiable parametrisation.
* :mod:`~bimix_bayes.laws.cross`: the cross-domain laws linear in the shares (``bimix_cross``,
  ``loglinear``) and their identifying projection.
* :mod:`~bimix_bayes.laws.effective`: the effective-data law (``effective``), BiMix's curvature
  in the log share, finite at zero shares.
* :mod:`~bimix_bayes.laws.registry`: every law as one unit; :mod:`~bimix_bayes.laws.fixed_budget`:
  each law as a linear regression at one step.
"""
