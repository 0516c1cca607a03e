"""``bimix check DATA``: read a loss log as ``bimix fit`` would and say whether it can be fitted.

Nothing is fitted (a second or two): the data line, a note for every change made while reading
(also those `bimix fit` only records), one row per evaluation domain (runs, the range of its
own share, checkpoints), one per model size when the data have sizes, and the verdict: which
laws can fit the data, or what is missing. Exit 0 when a fit can start, 1 when the data are
refused (the message says what, where and how to fix it).

Examples
--------
>>> import argparse
>>> sub = argparse.ArgumentParser(prog="bimix").add_subparsers(dest="command")
>>> add_commands(sub)
>>> sub.choices["check"].parse_args(["runs.csv", "--min-step", "2k"]).min_step
2000.0
"""

from __future__ import annotations

import argparse
import warnings

import pandas as pd

from bimix_bayes.cli import options as opt
from bimix_bayes.data.labels import evaluation_only_hint
from bimix_bayes.data.table import DataError, DataWarning, MixtureData

__all__ = ["add_commands", "cmd_check", "domain_table", "size_table"]


def size_table(data: MixtureData) -> pd.DataFrame:
    """Per model size (data with a size dimension): runs, checkpoints, first and last step,
    and the mixtures the other sizes have but this one lacks.

    Examples
    --------
    >>> obs = pd.DataFrame({"run": ["a", "a", "b"], "step": [1.0, 2.0, 1.0], "domain": "web",
    ...                     "loss": [3.0, 2.9, 3.1], "size": [1e8, 1e8, 4e8]})
    >>> mix = pd.DataFrame({"web": [1.0, 1.0]}, index=["a", "b"])
    >>> data = MixtureData.from_frames(mix, obs, min_mixtures=1, min_steps=1)
    >>> size_table(data)["runs"].tolist()
    [1, 1]
    """
    from bimix_bayes.bayes.sizes import size_label

    obs = data.observations
    every = set(obs["run"])
    rows = {}
    for size, part in obs.groupby("size", sort=True):
        missing = sorted(every - set(part["run"]))
        rows[size_label(float(size))] = {
            "runs": part["run"].nunique(),
            "checkpoints": part["step"].nunique(),
            "first": f"{part['step'].min():.4g}",
            "last": f"{part['step'].max():.4g}",
            "observations": len(part),
            "mixtures not at this size": ", ".join(missing[:4])
            + (f" (and {len(missing) - 4} more)" if len(missing) > 4 else "")
            if missing
            else "-",
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("size")


def domain_table(data: MixtureData) -> pd.DataFrame:
    """Per evaluation domain: runs, its own share's range (evaluation-only: none), checkpoints.

    Examples
    --------
    >>> from bimix_bayes.data.simulate import simulate_default
    >>> table = domain_table(simulate_default(seed=0))
    >>> table.columns.tolist()
    ['runs', 'own share', 'distinct shares', 'checkpoints', 'first', 'last', 'observations']
    """
    obs = data.observations.assign(share=data.shares())
    rows = {}
    for domain in data.domains:
        part = obs[obs["domain"] == domain]
        own = domain not in data.evaluation_only
        share = part["share"]
        rows[domain] = {
            "runs": part["run"].nunique(),
            "own share": f"{100 * share.min():.1f}-{100 * share.max():.1f} %"
            if own
            else "none (evaluation only)",
            "distinct shares": share.nunique() if own else "-",
            "checkpoints": part["step"].nunique(),
            "first": f"{part['step'].min():.4g}",
            "last": f"{part['step'].max():.4g}",
            "observations": len(part),
        }
    return pd.DataFrame(rows).T.rename_axis("domain")


def _verdict(data: MixtureData) -> tuple[bool, str]:
    """Whether a fit can start, and which laws can fit the data (or what is missing)."""
    try:
        data.check_design()
    except DataError as exc:
        return False, f"not ready to fit: {str(exc).split(': ', 1)[-1]}"
    zero = bool((data.shares() <= 0).any())
    if data.evaluation_only or zero:
        why = (
            f"evaluation-only domain(s) {list(data.evaluation_only)}"
            if data.evaluation_only
            else "zero shares of their own domain (kept)"
        )
        silent = [t for t in data.training_domains if t not in data.domains]
        hint = evaluation_only_hint(data.evaluation_only, silent) if data.evaluation_only else ""
        leave_out = " ".join(f"--exclude-domain {d}" for d in data.evaluation_only[:3])
        return True, (
            f"ready to fit with a law whose loss is finite there: {why}; `bimix fit DATA --law "
            "loglinear` (BiMix, its least squares and bimix_cross refuse them)"
            + (f", or leave them out for BiMix: {leave_out}" if leave_out else "")
            + (f"; but first check their names{hint}" if hint else "")
        )
    return True, (
        "ready to fit: every domain has at least 2 distinct shares of its own and 3 "
        "checkpoints; `bimix fit DATA --out fit.nc` (every law), `bimix fit-ls DATA` (the "
        "paper's least squares)"
    )


def cmd_check(args: argparse.Namespace) -> int:
    """Read a loss log as `bimix fit` would and say whether it can be fitted (no fitting).

    Prints what was read (with a note for every change made while reading), one row per
    evaluation domain (runs, the range of its own share, checkpoints) and which laws can fit
    the data, or what is missing. Takes the data options `bimix fit` takes.

    Returns
    -------
    int
        0 when a fit can start; 1 when the data cannot be fitted as they are.
    """
    options = opt.DataOptions.from_args(args)
    kwargs = {**options.to_kwargs(), "min_mixtures": 1, "min_steps": 1}
    from bimix_bayes.data.loaders import load_data

    with warnings.catch_warnings():  # every note is printed below, once (some are not warned)
        warnings.simplefilter("ignore", DataWarning)
        data = options.with_schedule(load_data(args.data, **kwargs))
    print(f"data: {data.summary()}")
    for note in data.notes:
        print(f"note: {note}")
    print(domain_table(data).to_string())
    if data.has_sizes:
        print(size_table(data).to_string())
    ready, verdict = _verdict(data)
    print(verdict)
    return 0 if ready else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``check`` on the ``bimix`` sub-parsers."""
    p = opt.add_command(sub, "check", cmd_check)
    opt.DataOptions.add_arguments(p)
