"""The ``bimix`` command line: one parser, one data-options helper, one exit-code convention.

* :mod:`~bimix_bayes.cli.app`: the parser and :func:`main` (0 ok, 1 data or fit error, 2 usage);
* :mod:`~bimix_bayes.cli.options`: argument types shared by every command;
* one module per command family: :mod:`~bimix_bayes.cli.bayes` (fit, summary, predict),
  :mod:`~bimix_bayes.cli.decide` (optimize, rank), :mod:`~bimix_bayes.cli.backtest`,
  :mod:`~bimix_bayes.cli.report`, :mod:`~bimix_bayes.cli.proxy` (corpora, train, study,
  verify), :mod:`~bimix_bayes.cli.demo` (the main job on the embedded data).
"""

from bimix_bayes.cli.app import main

__all__ = ["main"]
