"""The self-contained HTML report of a fit.

* :mod:`~bimix_bayes.report.html`: the report's sections, rendered with Jinja2;
* :mod:`~bimix_bayes.report.figures`: its matplotlib figures (PNG data URIs);
* ``templates/``: the page template.
"""
