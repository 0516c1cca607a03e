"""Model specs: priors, likelihood, sampler and diagnostic thresholds, read from TOML or YAML.

The default spec is the file ``bimix_bayes/bayes/specs/bimix.toml`` (also at ``models/bimix.toml``
in the source tree), which documents every key. A user's spec is merged over it key by key, so a
file may hold only what it changes. An unknown key or an invalid value is a :class:`SpecError`
that names the key (``priors.log_alpha.loc_scale``) and what is expected.

:func:`load_spec` takes a file path or the name of a packaged spec (``"bimix"`` or
``"bimix.toml"``: a file of ``bimix_bayes/bayes/specs/``), so the same call works from any working
directory; :func:`packaged_specs` lists the names.

Examples
--------
>>> spec = load_spec()                                   # the default
>>> spec["sampler"]["backend"], spec["likelihood"]["family"]
('nutpie', 'normal')
>>> load_spec("bimix") == spec, packaged_specs()         # by name, from any folder
(True, ['bimix', 'bimix_cross', 'effective', 'loglinear'])
>>> spec = merge_spec({"sampler": {"draws": 200}})
>>> spec["sampler"]["draws"], spec["sampler"]["chains"]
(200, 4)
>>> merge_spec({"sampler": {"drawz": 200}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
bimix_bayes.bayes.spec.SpecError: sampler.drawz: unknown key; known keys in [sampler]: backend, ...
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from bimix_bayes.bayes.noise import has_early_noise
from bimix_bayes.laws.registry import LAWS

__all__ = [
    "DEFAULT_SPEC_NAME",
    "Spec",
    "SpecError",
    "likelihood_words",
    "load_spec",
    "merge_spec",
    "packaged_specs",
    "resolve_alpha_drift",
    "spec_id",
]

Spec = dict[str, Any]
DEFAULT_SPEC_NAME = "bimix.toml"
#: Every population prior a spec may hold; each law reads its own (``Law.population``).
PRIOR_NAMES = ("log_floor", "log_reducible", "log_alpha", "log_beta", "log_own")
SPEC_SUFFIXES = (".toml", ".yaml", ".yml")
_SPECS_PACKAGE = "bimix_bayes.bayes.specs"


class SpecError(ValueError):
    """A model spec with an unknown key or an invalid value; the message names the key."""


def _number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    open_lo: bool = True,
    open_hi: bool = True,
    integer: bool = False,
) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        kind = "an integer" if integer else "a number"
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or (integer and not isinstance(v, int))
        ):
            return f"expected {kind}, got {v!r}"
        if v != v or v in (float("inf"), float("-inf")):
            return f"expected a finite number, got {v!r}"
        if lo is not None and (v <= lo if open_lo else v < lo):
            return f"expected {kind} {'>' if open_lo else '>='} {lo:g}, got {v!r}"
        if hi is not None and (v >= hi if open_hi else v > hi):
            return f"expected {kind} {'<' if open_hi else '<='} {hi:g}, got {v!r}"
        return None

    return check


def _choice(*options: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return (
            None if v in options else f"expected one of {', '.join(map(repr, options))}, got {v!r}"
        )

    return check


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"expected true or false, got {v!r}"


def _alpha_drift(v: Any) -> str | None:
    if isinstance(v, bool) or v == "auto":
        return None
    return f'expected true, false or "auto", got {v!r}'


def _run_correlation(v: Any) -> str | None:
    if isinstance(v, bool) or v in ("auto", "common"):
        return None
    return f'expected true, false, "auto" or "common", got {v!r}'


def _s_ref(v: Any) -> str | None:
    if v == "geometric_mean":
        return None
    return _number(0)(v) and f'expected "geometric_mean" or a positive number, got {v!r}'


_PRIOR = {
    "loc": _number(),
    "loc_scale": _number(0),
    "sd_scale": _number(0),
    "parametrization": _choice("centered", "non_centered"),
    "sd_prior": _choice("gamma", "half_normal", "fixed"),
    "pooled": _boolean,
}

#: Every key a spec may hold, with its check (None when the value is valid, else the problem).
SCHEMA: dict[str, Any] = {
    "data": {"s_ref": _s_ref},
    "law": {
        "name": _choice(*LAWS),
        "cross_sd_scale": _number(0),
        "alpha_drift": _alpha_drift,
        "alpha_drift_sd": _number(0),
    },
    "priors": {name: dict(_PRIOR) for name in PRIOR_NAMES},
    "likelihood": {
        "family": _choice("normal", "student_t"),
        "nu": _number(0),
        "sigma_scale": _number(0),
        "run_offset": _boolean,
        "tau_scale": _number(0),
        "tau_prior": _choice("gamma", "half_normal"),
        "run_slope": _boolean,
        "slope_scale": _number(0),
        "run_correlation": _run_correlation,
        "new_run_correlation": _choice("residual", "none"),
        "lkj_eta": _number(0),
        "checkpoint_sd_scale": _number(0, open_lo=False),
        "early_noise_scale": _number(0, open_lo=False),
        "early_noise_power": _number(0),
        "early_noise_prior": _choice("gamma", "half_normal"),
        "noise_correlation": _choice("residual", "none"),
    },
    "size": {
        "floor_sd": _number(0),
        "reducible_sd": _number(0),
        "beta_sd": _number(0),
        "mixture_sd": _number(0),
        "run_size_offset": _choice("residual", "none"),
    },
    "schedule": {"anneal_scale": _number(0)},
    "discrepancy": {
        "extrapolation": _boolean,
        "sd_per_doubling": _number(0, open_lo=False),
        "domain_correlation": _number(0, 1, open_lo=False, open_hi=False),
        "size_sd_per_doubling": _number(0, open_lo=False),
        "size_domain_correlation": _number(0, 1, open_lo=False, open_hi=False),
    },
    "sampler": {
        "backend": _choice("nutpie", "pymc"),
        "chains": _number(0, integer=True),
        "draws": _number(0, integer=True),
        "tune": _number(0, integer=True),
        "low_rank_mass_matrix": _boolean,
        "target_accept": _number(0, 1),
        "cores": _number(0, open_lo=False, integer=True),
        "progress_bar": _choice("auto", "always", "never"),
        "step_coordinates": _choice("level_slope", "floor_reducible"),
        "centre_share": _boolean,
        "level": _choice("conditional", "free"),
        "exponent": _choice("laplace", "free"),
        "cross": _choice("conditional", "free"),
        "centre_cross": _boolean,
        "init_jitter": _number(0, open_lo=False),
    },
    "diagnostics": {
        "max_rhat": _number(1, open_lo=False),
        "min_ess_bulk": _number(0, open_lo=False),
        "min_ess_tail": _number(0, open_lo=False),
        "max_divergences": _number(0, open_lo=False, integer=True),
        "min_bfmi": _number(0, open_lo=False),
    },
}


def _validate(values: Mapping[str, Any], schema: Mapping[str, Any], path: str) -> None:
    if not isinstance(values, Mapping):
        raise SpecError(f"{path or 'spec'}: expected a table of keys, got {values!r}")
    for key, value in values.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in schema:
            section = f"[{path}]" if path else "the spec"
            raise SpecError(
                f"{where}: unknown key; known keys in {section}: {', '.join(sorted(schema))}"
            )
        rule = schema[key]
        if isinstance(rule, Mapping):
            _validate(value, rule, where)
        else:
            problem = rule(value)
            if problem:
                raise SpecError(f"{where}: {problem}")


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _default() -> Spec:
    text = resources.files(_SPECS_PACKAGE).joinpath(DEFAULT_SPEC_NAME).read_text("utf-8")
    spec = tomllib.loads(text)
    _validate(spec, SCHEMA, "")
    return spec


def merge_spec(update: Mapping[str, Any] | None = None) -> Spec:
    """The default spec with ``update`` merged over it, validated.

    ``law.alpha_drift = true`` under a law without an own-share exponent (``loglinear``,
    ``effective``) is a :class:`SpecError`; the default, ``"auto"``, is decided per dataset
    (:func:`resolve_alpha_drift`).
    """
    update = {} if update is None else update
    _validate(update, SCHEMA, "")
    spec = _merge(_default(), update)
    _validate(spec, SCHEMA, "")
    law = spec["law"]
    if law["alpha_drift"] is True and not LAWS[law["name"]].can_drift:
        raise SpecError(
            f"law.alpha_drift: the law {law['name']!r} has no own-share exponent to drift (its "
            "own share may be zero); use law 'bimix' or 'bimix_cross', or set alpha_drift = false"
        )
    return spec


def resolve_alpha_drift(spec: Spec, *, has_sizes: bool) -> Spec:
    """``spec`` with ``law.alpha_drift = "auto"`` decided for the data: the mixture exponent
    drifts with the log step (:mod:`bimix_bayes.laws.drift`) under a law with an own-share
    exponent (``bimix``, ``bimix_cross``) fitted to one model size; not under ``loglinear`` or
    ``effective`` (no exponent to drift), nor with model sizes as a dimension (``has_sizes``).
    ``true`` and ``false`` are returned as they are.

    Why not with sizes: the size-aware fit of all six SlimPajama sizes, 4 x 1000 draws, did not
    converge with the drift (r-hat 1.53 on ``log_floor[c4]``, bulk ESS 7) and does without it
    (r-hat 1.005; reports/validation.md of 2026-12-05).

    Examples
    --------
    >>> spec = merge_spec()
    >>> spec["law"]["alpha_drift"]
    'auto'
    >>> [resolve_alpha_drift(spec, has_sizes=s)["law"]["alpha_drift"] for s in (False, True)]
    [True, False]
    >>> loglinear = merge_spec({"law": {"name": "loglinear"}})
    >>> resolve_alpha_drift(loglinear, has_sizes=False)["law"]["alpha_drift"]
    False
    """
    law = spec["law"]
    if law["alpha_drift"] != "auto":
        return spec
    drifts = LAWS[law["name"]].can_drift and not has_sizes
    return {**spec, "law": {**law, "alpha_drift": drifts}}


def _packaged_files() -> dict[str, Traversable]:
    """The spec files shipped with the package, by name (the file name without its suffix)."""
    files = resources.files(_SPECS_PACKAGE).iterdir()
    return {Path(f.name).stem: f for f in files if Path(f.name).suffix in SPEC_SUFFIXES}


def packaged_specs() -> list[str]:
    """The names of the specs shipped with the package (files of ``bimix_bayes/bayes/specs/``).

    Examples
    --------
    >>> packaged_specs()
    ['bimix', 'bimix_cross', 'effective', 'loglinear']
    """
    return sorted(_packaged_files())


def _spec_source(spec: str | os.PathLike[str]) -> tuple[Path | Traversable, str]:
    """The file a spec argument names, and how messages call it.

    An existing file wins; otherwise a bare name (no folder) is looked up among the packaged
    specs. A path that is neither is a :class:`SpecError` listing the packaged names.
    """
    path = Path(spec)
    entry = _packaged_files().get(path.stem) if len(path.parts) == 1 else None
    if entry is not None and not path.is_file() and path.name in (path.stem, entry.name):
        return entry, f"{path} (packaged spec)"
    if not path.exists():
        names = ", ".join(f'"{n}"' for n in packaged_specs())
        raise SpecError(
            f"{path}: cannot read the spec (no such file, looked for from {Path.cwd()}); give a "
            f"path to a .toml or .yaml file, or a packaged spec name: {names}"
        )
    return path, str(path)


def load_spec(spec: str | os.PathLike[str] | None = None) -> Spec:
    """Read a spec merged over the default: a file (``.toml``, ``.yaml``/``.yml``) or the name of
    a packaged spec (:func:`packaged_specs`); None: the default.

    Parameters
    ----------
    spec
        A path (relative to the working directory) or a packaged name, ``"bimix"`` or
        ``"bimix.toml"``. An existing file of that name wins over a packaged spec.

    Raises
    ------
    SpecError
        For a file that cannot be found, read or parsed (the message lists the packaged names),
        an unknown key, or an invalid value; the message names the file and the key.

    Examples
    --------
    >>> load_spec("bimix.toml")["sampler"]["chains"]
    4
    >>> load_spec("no/such/spec.toml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bimix_bayes.bayes.spec.SpecError: no/such/spec.toml: cannot read the spec ... "loglinear"
    """
    if spec is None:
        return merge_spec()
    source, label = _spec_source(spec)
    if source.is_dir():
        raise SpecError(f"{label}: is a folder; give a spec file (.toml or .yaml)")
    try:
        text = source.read_text("utf-8")
    except OSError as exc:
        raise SpecError(f"{label}: cannot read the spec ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{label}: not a text spec (byte {exc.start} is not UTF-8); give a .toml or .yaml "
            "file, saved as UTF-8"
        ) from exc
    suffix = Path(source.name).suffix.lower()
    try:
        if suffix == ".toml":
            update = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            update = yaml.safe_load(text) or {}
        else:
            raise SpecError(f"{label}: unknown spec format; use .toml or .yaml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{label}: not valid {suffix[1:].upper()}: {exc}") from exc
    try:
        return merge_spec(update)
    except SpecError as exc:
        raise SpecError(f"{label}: {exc}") from exc


def likelihood_words(spec: Mapping[str, Any], n_domains: int) -> str:
    """How ``spec`` (its ``run_correlation`` decided: a fit's, or :meth:`BiMixModel.spec_for`'s)
    models the measurements, in a few words: the likelihood, whether the noise falls with the
    step, and the run effects. What ``bimix fit`` and the HTML report say.

    Examples
    --------
    >>> likelihood_words(merge_spec({"likelihood": {"run_correlation": False}}), 7)
    'normal likelihood on log loss, noise falling with the step, run offsets'
    >>> likelihood_words(merge_spec({"likelihood": {"run_correlation": True, "run_slope": True,
    ...                                             "early_noise_scale": 0}}), 5)
    'normal likelihood on log loss, run offsets and slopes correlated across domains'
    >>> likelihood_words(merge_spec(), 7)  # the default "auto", undecided  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: likelihood.run_correlation is still "auto": ...
    """
    lik = spec["likelihood"]
    if lik["run_correlation"] == "auto":
        raise ValueError(
            'likelihood.run_correlation is still "auto": describe the spec a fit used '
            "(BiMixModel.spec_for(data), or a saved fit's spec), where it is decided"
        )
    words = [f"{lik['family']} likelihood on log loss"]
    if has_early_noise(spec):
        words.append("noise falling with the step")
    kinds = [k for k, on in (("offsets", lik["run_offset"]), ("slopes", lik["run_slope"])) if on]
    if not kinds:
        words.append("no run effects")
        return ", ".join(words)
    effects = "run " + " and ".join(kinds)
    if lik["run_correlation"] == "common" and n_domains > 1:
        effects += " with a part every domain of a run shares"
    elif lik["run_correlation"] and n_domains > 1:
        effects += " correlated across domains"
    words.append(effects)
    return ", ".join(words)


def spec_id(spec: Spec) -> str:
    """A short stable hash of a spec (key order does not matter)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
