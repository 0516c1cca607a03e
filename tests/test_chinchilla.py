"""The least-squares engine reproduces Epoch AI's Chinchilla refit (Besiroglu et al. 2024).

Their recipe: drop the 5 highest-loss points, fit log L = LSE(a - alpha log N, b - beta log D, e)
with a Huber loss (delta = 1e-3) on log loss from a grid of starts. Reported: E = 1.817,
A = 477.7, B = 2142.8, alpha = 0.3473, beta = 0.3672.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp

from bimix_bayes.leastsq.curve import fit_curve

EPOCH = {"E": 1.817, "A": 477.7, "B": 2142.8, "alpha": 0.3473, "beta": 0.3672}


def _significant(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


@pytest.mark.shared_data
def test_reproduces_epoch_chinchilla_refit(datasets_dir):
    """Every coefficient agrees with Epoch's to 3 significant digits."""
    table = pd.read_csv(datasets_dir / "chinchilla_epoch_besiroglu2024" / "svg_extracted_data.csv")
    table = table.sort_values("loss").iloc[:-5]  # drop the 5 highest-loss points
    n = table["Model Size"].to_numpy()
    d = table["Training FLOP"].to_numpy() / (6 * n)
    log_n, log_d, y = np.log(n), np.log(d), np.log(table["loss"].to_numpy())

    def residuals(p: np.ndarray) -> np.ndarray:
        a, b, e, alpha, beta = p
        terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
        return logsumexp(terms, axis=0) - y

    grid = itertools.product([5, 15, 25], [5, 15, 25], [-1, 1], [0.2, 1.0], [0.2, 1.0])
    fit = fit_curve(residuals, [np.array(s, float) for s in grid], loss="huber", huber_delta=1e-3)
    a, b, e, alpha, beta = fit.x
    got = {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta}
    for name, expected in EPOCH.items():
        assert _significant(got[name]) == _significant(expected), (name, got[name])
    assert fit.n_finished == fit.n_starts
