"""The self-contained HTML report of a fit.

* :mod:`~bimix_bayes.report.html`: assembles the report and renders it with Jinja2;
* :mod:`~bimix_bayes.report.summary`: the summary at the top (the decision, its baseline, how far
  the forecasts held, whether the fit passed);
* :mod:`~bimix_bayes.report.sections`: the other sections (fit, diagnostics, observed vs fitted,
  extrapolation, parameters, backtests, appendix);
* :mod:`~bimix_bayes.report.decision`: the decision section and the baseline's description;
* :mod:`~bimix_bayes.report.runs`: the runs table and the anchors run ids link to;
* :mod:`~bimix_bayes.report.figures`: its matplotlib figures (PNG data URIs);
* :mod:`~bimix_bayes.report.tables`: its tables (escaped HTML in scroll wrappers);
* ``templates/``: the page template.
"""
