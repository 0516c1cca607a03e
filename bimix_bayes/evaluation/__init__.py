"""How far to trust a forecast: backtests on the user's own runs.

* :mod:`~bimix_bayes.evaluation.backtest`: protocols, splits, fitting paths and results.
"""
