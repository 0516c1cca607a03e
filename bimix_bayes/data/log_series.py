"""Each domain's loss series among a run's scalars: the tags, then the observations.

:func:`loss_tags` (step 3 of :func:`~bimix_bayes.data.run_logs.build_data`) finds the tag that
holds each domain's loss (:data:`LOG_LOSS_PATTERNS`, or a pattern given); :func:`observations`
turns those series into observations (run, step, domain, loss), the later write of a step
winning and steps <= 0 left out, each counted in a note; with a token-count tag the step becomes
its value at that step.

Examples
--------
>>> tags = ["train/loss", "eval/web_loss", "eval/code_loss"]
>>> loss_tags(tags, None, ["web", "code"], (), "logs", [])
{'web': 'eval/web_loss', 'code': 'eval/code_loss'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from bimix_bayes.data.columns import LOSS_PATTERNS, pattern_columns
from bimix_bayes.data.log_mixtures import clean_domains, note, some
from bimix_bayes.data.table import DataError, describe_locations

__all__ = ["LOG_LOSS_PATTERNS", "loss_tags", "observations"]

_LOSS_PREFIXES = ("eval/", "val/", "valid/", "validation/", "evaluation/", "test/", "")
LOG_LOSS_PATTERNS = tuple(
    dict.fromkeys(
        prefix + base
        for prefix in _LOSS_PREFIXES
        for base in (*LOSS_PATTERNS, "eval_{domain}_loss", "loss/{domain}", "{domain}/loss")
    )
)


def loss_tags(
    tags: Sequence[str],
    given: str | None,
    domains: Sequence[str],
    exclude: Iterable[str],
    source: str,
    notes: list[str],
    word: str = "scalar tag",
) -> dict[str, str]:
    """domain -> the tag holding its loss (``word`` names a tag in messages: "metric")."""
    excluded = set(exclude)
    if given is not None:
        pattern, found = given, pattern_columns(tags, given)
        if not found:
            raise DataError(
                f"{source}: no {word} matches the loss pattern {given!r}; {word}s: {some(tags)}"
            )
    else:
        best = max(
            LOG_LOSS_PATTERNS,
            key=lambda p: len(set(clean_domains(pattern_columns(tags, p), None)) & set(domains)),
        )
        all_found = clean_domains(pattern_columns(tags, best), None)
        found = {d: t for d, t in all_found.items() if d in domains}
        if not found:
            raise DataError(
                f"{source}: no {word} holds the loss of a training domain "
                f"({list(domains) or 'no run has a mixture'}); tried patterns such as "
                f"'eval/{{domain}}_loss', '{{domain}}_loss' and 'loss/{{domain}}'; {word}s: "
                f"{some(tags)}. Name the pattern with --loss-pattern, e.g. --loss-pattern "
                "'val/{domain}/loss'"
            )
        others = sorted(t for d, t in all_found.items() if d not in found and d not in excluded)
        if others:
            note(
                notes,
                source,
                f"{word}(s) {others} match {best!r} but name no training domain; left out (give "
                "those domains a share, or name the pattern with --loss-pattern)",
            )
        pattern, found = best, all_found
    unknown = sorted(excluded - set(found))
    if unknown:
        raise DataError(
            f"{source}: excluded domain(s) {unknown} have no {word} matching {pattern!r}"
        )
    if excluded:
        notes.append(f"excluded evaluation domain(s) by request: {sorted(excluded)}")
    keep = domains if given is None else found
    return {d: t for d, t in found.items() if d not in excluded and d in keep}


def observations(
    series: pd.DataFrame,
    tag_of: Mapping[str, str],
    step_key: str | None,
    source: str,
    notes: list[str],
    word: str = "scalar tag",
) -> tuple[pd.DataFrame, list[str]]:
    """The loss series as observations (run, step, domain, loss) and where each one is."""
    domain_of = {t: d for d, t in tag_of.items()}
    s = series[series["tag"].isin(domain_of)].copy()
    s = s.sort_values("wall_time", kind="stable", na_position="first")
    twice = s.duplicated(["run", "tag", "step"], keep="last")
    if twice.any():
        ex = [
            f"run {r!r}, {t!r} step {x:g}"
            for r, t, x in s.loc[twice, ["run", "tag", "step"]].itertuples(index=False)
        ]
        note(
            notes,
            source,
            f"{int(twice.sum())} value(s) were logged twice at the same step (a restarted run?); "
            f"the later write was kept ({describe_locations(ex)})",
        )
        s = s[~twice]
    s = s.sort_index(kind="stable")
    if step_key is not None:
        s["step"] = _token_counts(series, s, step_key, source, word)
    low = s["step"] <= 0
    if low.any():
        note(
            notes,
            source,
            f"left out {int(low.sum())} value(s) at step 0 or below (the law needs s > 0; "
            f"e.g. {describe_locations(list(s.loc[low, 'where'])[:2])})",
        )
        s = s[~low]
    obs = pd.DataFrame(
        {
            "run": s["run"].to_numpy(),
            "step": s["step"].to_numpy(dtype=float),
            "domain": s["tag"].map(domain_of).to_numpy(),
            "loss": s["value"].to_numpy(dtype=float),
        }
    )
    return obs, [str(w) for w in s["where"]]


def _token_counts(
    series: pd.DataFrame, s: pd.DataFrame, key: str, source: str, word: str
) -> pd.Series:
    tokens = series[series["tag"] == key].sort_values("wall_time", kind="stable")
    if tokens.empty:
        raise DataError(
            f"{source}: no {word} {key!r} holds the token counts (--step-col); {word}s: "
            f"{some(list(dict.fromkeys(series['tag'])))}"
        )
    table = tokens.drop_duplicates(["run", "step"], keep="last").set_index(["run", "step"])
    index = pd.MultiIndex.from_arrays([s["run"], s["step"]])
    counts = table["value"].reindex(index).to_numpy()
    missing = np.isnan(counts)
    if missing.any():
        ex = [
            f"run {r!r} step {x:g}"
            for r, x in zip(s["run"][missing], s["step"][missing], strict=True)
        ]
        raise DataError(
            f"{source}: {int(missing.sum())} loss value(s) have no {key!r} value at their step "
            f"({describe_locations(ex)}); log the token count at every evaluation step"
        )
    return pd.Series(counts, index=s.index)
