"""Mixing laws: each law's math written once, for numpy and pytensor alike.

* :mod:`~bimix_bayes.laws.bimix`: BiMix (Ge et al., arXiv 2405.14908) in the paper's and the
  identifiable parametrisation.
"""
