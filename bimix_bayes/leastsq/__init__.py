"""Point-estimate fits, as the papers make them.

* :mod:`~bimix_bayes.leastsq.curve`: a careful bounded least-squares curve fit (multi-start,
  robust loss);
* :mod:`~bimix_bayes.leastsq.fit`: the BiMix paper's per-domain fit with run-bootstrap intervals.
"""
