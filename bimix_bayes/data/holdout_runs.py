"""Held-out runs read from another file, matched to a fit's runs by what they are.

A held-out point of a fitted run is forecast with that run's effects (its luck so far); a
held-out run the fit has not seen is a new mixture. The match is by run id, and a run id must
name the same mixture in both files:

* a log without a run column names its runs by their mixture in order of first appearance
  (``m000``, ``m001``...: :func:`~bimix_bayes.data.mixture_files.runs_from_mixture`), so the
  same name in two files can be two mixtures; such runs are matched by their shares instead;
* a run id the user gave that names other shares in the held-out file than in the fit is
  refused (scored with the wrong run's effects it would make every figure meaningless).

Examples
--------
>>> import pandas as pd
>>> from bimix_bayes.data.table import MixtureData
>>> def data(shares, named_by_mixture):
...     mix = pd.DataFrame(shares, index=["m000", "m001"], columns=["a", "b"])
...     obs = pd.DataFrame([(r, s, d, 2.0 + s / 1e4) for r in mix.index for s in (1e3, 2e3, 3e3)
...                         for d in "ab"], columns=["run", "step", "domain", "loss"])
...     return MixtureData.from_frames(mix, obs).with_runs_named_by_mixture(named_by_mixture)
>>> fitted = data([[0.3, 0.7], [0.6, 0.4]], True)
>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     held = align_holdout_runs(fitted, data([[0.6, 0.4], [0.5, 0.5]], True))
>>> list(held.mixtures.index)  # m000 there is m001 here; its m001 is new
['m001', 'new000']
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from bimix_bayes.data.table import DataError, DataWarning, MixtureData

__all__ = ["align_holdout_runs"]

#: Two mixtures are the same when every share agrees to this (shares are read to 12 digits).
SHARE_TOLERANCE = 1e-9


def _shares(mixtures: pd.DataFrame, domains: list[str]) -> np.ndarray:
    return mixtures.reindex(columns=domains, fill_value=0.0).to_numpy(dtype=float)


def _describe(row: pd.Series) -> str:
    return ", ".join(f"{d} {v:.3g}" for d, v in row.items())


def align_holdout_runs(fitted: MixtureData, holdout: MixtureData) -> MixtureData:
    """``holdout`` with its runs named as the fit names the same mixtures.

    Parameters
    ----------
    fitted
        The fit's data (:func:`~bimix_bayes.bayes.persistence.data_from_idata`).
    holdout
        Observations read from another file (``bimix report --holdout``).

    Returns
    -------
    MixtureData
        ``holdout`` itself when the run ids of both were given and agree; when the runs of
        either were named by their mixture (a file without a run column), each held-out run
        renamed to the fitted run with the same shares (one fitted run only: replicates of one
        mixture cannot be told apart) or, failing that, ``new000``, ``new001``... (a new
        mixture), with a note.

    Raises
    ------
    DataError
        A run id given in both files names different shares: which run, both mixtures, and
        how to fix it.
    """
    domains = list(dict.fromkeys([*fitted.mixtures.columns, *holdout.mixtures.columns]))
    fit_shares = _shares(fitted.mixtures, domains)
    held_shares = _shares(holdout.mixtures, domains)
    if not (holdout.runs_named_by_mixture or fitted.runs_named_by_mixture):
        fit_index = {r: i for i, r in enumerate(fitted.mixtures.index)}
        for j, run in enumerate(holdout.mixtures.index):
            i = fit_index.get(run)
            if i is not None and np.abs(fit_shares[i] - held_shares[j]).max() > SHARE_TOLERANCE:
                raise DataError(
                    f"{holdout.source}: held-out run {run!r} has the mixture "
                    f"({_describe(holdout.mixtures.loc[run])}) but the fitted run {run!r} has "
                    f"({_describe(fitted.mixtures.loc[run])}): a run id names one run; give "
                    "the held-out run its own id (a new mixture) or the shares it was trained with"
                )
        return holdout
    rename: dict[str, str] = {}
    continued = 0
    taken = set(fitted.mixtures.index)
    fresh = (f"new{k:03d}" for k in range(10**6))
    for j, run in enumerate(holdout.mixtures.index):
        same = np.flatnonzero(np.abs(fit_shares - held_shares[j]).max(axis=1) <= SHARE_TOLERANCE)
        match = str(fitted.mixtures.index[same[0]]) if len(same) == 1 else None
        if match is not None and match not in rename.values():  # a replicate: a new run
            rename[run] = match
            continued += 1
        else:
            rename[run] = next(name for name in fresh if name not in taken)
    mixtures = holdout.mixtures.rename(index=rename)
    observations = holdout.observations.assign(run=holdout.observations["run"].map(rename))
    order = ["domain", "run", *(["size"] if holdout.has_sizes else []), "step"]
    observations = observations.sort_values(order, kind="stable").reset_index(drop=True)
    new = len(rename) - continued
    shown = ", ".join(f"{a} -> {b}" for a, b in list(rename.items())[:4])
    whose = "held-out" if holdout.runs_named_by_mixture else "fitted"
    note = (
        f"the {whose} runs were named by their mixture (no run column): matched to the fit's "
        f"runs by their shares, {continued} of {len(rename)} continuing a fitted run"
        f"{f', {new} new mixture(s)' if new else ''} ({shown}{', ...' if len(rename) > 4 else ''})"
    )
    warnings.warn(f"{holdout.source}: {note}", DataWarning, stacklevel=2)
    return dataclasses.replace(
        holdout, mixtures=mixtures, observations=observations, notes=(*holdout.notes, note)
    )
