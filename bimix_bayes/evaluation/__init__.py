"""How far to trust a forecast: backtests on the user's own runs, and the one scoring module.

* :mod:`~bimix_bayes.evaluation.protocols`: what a backtest holds out (``last-checkpoint``,
  ``horizon:F``, ``holdout-mixtures:K``);
* :mod:`~bimix_bayes.evaluation.splits`: leak-free train/held-out splits;
* :mod:`~bimix_bayes.evaluation.metrics`: the one scoring module (relative error, R^2 of log
  loss, rank correlation, coverage, interval width, log predictive density);
* :mod:`~bimix_bayes.evaluation.runner`: :func:`~bimix_bayes.evaluation.runner.backtest`, fitting
  each method on every split and forecasting the held-out points;
* :mod:`~bimix_bayes.evaluation.result`: what a backtest measured, as text, Markdown, HTML, CSV;
* :mod:`~bimix_bayes.evaluation.backtest`: the public names of all of the above, in one place.
"""
