"""The ``bimix`` command line: one parser, one data-options helper, one exit-code convention.

* :mod:`~bimix_bayes.cli.app`: the parser and :func:`main`;
* :mod:`~bimix_bayes.cli.errors`: the exit codes (0 ok, 1 data or fit error, 2 usage,
  3 internal error) and the errors that map onto them;
* :mod:`~bimix_bayes.cli.options`: argument types, :class:`~bimix_bayes.cli.options.DataOptions`
  (the data-reading options), the option blocks several commands share, and the declarations:
  :func:`~bimix_bayes.cli.options.add_command` registers a command whose help is the docstring
  of its ``cmd_*`` function, :func:`~bimix_bayes.cli.options.add_options` adds options given as
  rows (flag, type or choices, default, help);
* one module per command family: :mod:`~bimix_bayes.cli.leastsq` (fit-ls),
  :mod:`~bimix_bayes.cli.data_tools` (simulate, entropy), :mod:`~bimix_bayes.cli.bayes` (fit,
  summary, predict), :mod:`~bimix_bayes.cli.decide` (optimize, rank),
  :mod:`~bimix_bayes.cli.backtest`, :mod:`~bimix_bayes.cli.report`,
  :mod:`~bimix_bayes.cli.proxy` (corpora, train, study, verify), :mod:`~bimix_bayes.cli.demo`
  (the main job on the embedded data).
"""

from bimix_bayes.cli.app import main

__all__ = ["main"]
