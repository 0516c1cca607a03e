"""Save and load fits as netCDF (never pickle), and rebuild what a saved fit needs.

A saved fit is one self-sufficient ``.nc`` file: the posterior, the fitted data, the spec and how
the fit was made (attrs). Writes are atomic. Loading refuses a file written with another file
format version, a spec this version cannot read, a missing group, data that no longer match their
recorded hash, draws that are not finite or lie outside their parameter's support (``alpha``,
``beta``, ``sigma``, ``tau``... must be > 0), and a posterior or diagnostics that no longer match
each other: :func:`save_fit` records a hash of the posterior, the sampler statistics and the
diagnostics (``posterior_sha256``), checked on load in milliseconds; a file saved before that hash
existed has its diagnostics recomputed from its posterior (about a second) and compared instead.

Examples
--------
>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> save_fit(idata, d / "fit.nc").name
'fit.nc'
>>> loaded = load_fit(d / "fit.nc")
>>> bool(loaded.posterior["alpha"].equals(idata.posterior["alpha"]))
True
>>> data_from_idata(loaded).n_runs, spec_from_idata(loaded) == spec_from_idata(idata)
(12, True)
>>> diagnostics_from_idata(loaded) == diagnostics_from_idata(idata)
True
>>> save_fit(idata, d / "fit.pkl")  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: ...: a fit is saved as netCDF; use a .nc file name
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from bimix_bayes.bayes.diagnostics import FitDiagnostics, diagnose
from bimix_bayes.bayes.law_params import fit_schedule, spec_law
from bimix_bayes.bayes.noise import NOISE_EXCESS, NOISE_POWER_ATTR, NOISE_X0_ATTR, has_early_noise
from bimix_bayes.bayes.spec import PRIOR_NAMES, Spec, SpecError, merge_spec, spec_id
from bimix_bayes.data.files import atomic_path
from bimix_bayes.data.table import DataError, MixtureData
from bimix_bayes.laws.drift import ALPHA_DRIFT

__all__ = [
    "FORMAT_VERSION",
    "POSITIVE_VARS",
    "REQUIRED_GROUPS",
    "FitFileError",
    "data_from_idata",
    "diagnostics_from_idata",
    "load_fit",
    "posterior_hash",
    "save_fit",
    "spec_from_idata",
]

#: Version of the saved-file layout; files of another format version are refused on load.
FORMAT_VERSION = "1"

#: The groups every saved fit holds.
REQUIRED_GROUPS = ("posterior", "sample_stats", "observed_data", "constant_data")

#: Posterior variables that are positive by construction (with every ``sd_*``).
POSITIVE_VARS = frozenset(
    {"alpha", "own", "beta", "sigma", "tau", "kappa", "A", "B", "C"}
    | {"tau_own", "tau_common", "kappa_own", "kappa_common", NOISE_EXCESS}
)

#: The attribute holding :func:`posterior_hash` (written by :func:`save_fit`).
POSTERIOR_HASH_ATTR = "posterior_sha256"


#: Spec keys that change the model, added since 0.2, and the value that means the older model.
_MODEL_BEFORE_0_3 = {
    # fits made before laws were selectable are BiMix; the exponent did not drift before
    # law.alpha_drift (off by default until 2026-12-05; later fits store the key)
    "law": {"name": "bimix", "alpha_drift": False},
    # the noise was constant before likelihood.early_noise_scale
    # and a new run's offsets were independent across domains before new_run_correlation,
    # a forecast's checkpoint noise before noise_correlation; eta and tau had HalfNormal priors
    # before likelihood.early_noise_prior and likelihood.tau_prior
    "likelihood": {
        "run_correlation": False,
        "early_noise_scale": 0.0,
        "early_noise_prior": "half_normal",
        "tau_prior": "half_normal",
        "new_run_correlation": "none",
        "noise_correlation": "none",
    },
    "priors": {name: {"sd_prior": "half_normal", "pooled": True} for name in PRIOR_NAMES},
    # a mixture's runs at several sizes shared their offsets exactly before size.run_size_offset
    "size": {"run_size_offset": "none"},
    # chains started nutpie's way (jitter 1) before sampler.init_jitter; the level was sampled
    # at share 1 before sampler.centre_share; cross effects were non-centred before
    # sampler.centre_cross; the level and the exponents were free variables before
    # sampler.level, sampler.exponent and sampler.cross
    "sampler": {
        "step_coordinates": "floor_reducible",
        "init_jitter": 1.0,
        "centre_share": False,
        "level": "free",
        "exponent": "free",
        "cross": "free",
        "centre_cross": False,
    },
}


class FitFileError(DataError):
    """A saved fit that cannot be used by this version of the package."""


def training_domains_of(idata: az.InferenceData) -> list[str]:
    """The training domains (mixture columns) of the data a fit was made from."""
    return [str(d) for d in idata.constant_data["training_domain"].to_numpy()]


def data_from_idata(idata: az.InferenceData) -> MixtureData:
    """The :class:`MixtureData` a fit was made from (stored in ``constant_data``)."""
    const, observed = idata.constant_data, idata.observed_data
    mixtures = pd.DataFrame(
        const["mixtures"].to_numpy(),
        index=pd.Index([str(r) for r in const["run"].to_numpy()], name="run"),
        columns=[str(d) for d in const["training_domain"].to_numpy()],
    )
    observations = pd.DataFrame(
        {
            "run": const["obs_run"].to_numpy().astype(str),
            "step": const["step"].to_numpy().astype(float),
            "domain": const["obs_domain"].to_numpy().astype(str),
            "loss": observed["loss"].to_numpy().astype(float),
        }
    )
    if "size" in const:
        observations["size"] = const["size"].to_numpy().astype(float)
    attrs = idata.attrs
    return MixtureData(
        mixtures=mixtures,
        observations=observations,
        volume=attrs.get("data_volume", "steps"),
        group=attrs.get("data_group") or None,
        source=attrs.get("data_source", "<saved fit>"),
        notes=tuple(json.loads(attrs.get("data_notes", "[]"))),
        size_kind=attrs.get("size_kind") if "size" in const else None,
        schedule=fit_schedule(attrs),
        runs_named_by_mixture=bool(int(attrs.get("data_runs_named_by_mixture", 0))),
    )


def spec_from_idata(idata: az.InferenceData) -> Spec:
    """The spec a fit was made with (validated by this version of the package)."""
    stored = json.loads(idata.attrs["spec"])
    # Keys added since a file was written keep the model it was fitted with.
    for section, values in _MODEL_BEFORE_0_3.items():
        for key, value in values.items():
            stored.setdefault(section, {}).setdefault(key, value)
    # the size error was correlated across domains as the step's before it had its own setting
    discrepancy = stored.get("discrepancy", {})
    if "domain_correlation" in discrepancy:
        discrepancy.setdefault("size_domain_correlation", discrepancy["domain_correlation"])
    return merge_spec(stored)


def diagnostics_from_idata(idata: az.InferenceData) -> FitDiagnostics:
    """The diagnostics recorded when the fit was made."""
    return FitDiagnostics.from_json(idata.attrs["diagnostics"])


def _check_posterior(idata: az.InferenceData, spec: Spec, path: Path) -> None:
    """The posterior holds what forecasts need, with the data's domains."""
    needed = [*spec_law(spec).params, "sigma"]
    if spec["likelihood"]["run_offset"]:
        needed.append("tau")
    if spec["law"]["alpha_drift"] is True:  # forecasts would drop the drift (laws.drift)
        needed.append(ALPHA_DRIFT)
    if has_early_noise(spec):  # forecasts would carry the early checkpoints' noise wrongly
        needed.append(NOISE_EXCESS)
    if "posterior" not in idata.groups():
        raise FitFileError(f"{path}: no posterior group")
    post = idata.posterior
    missing = [v for v in needed if v not in post]
    if missing:
        raise FitFileError(f"{path}: the posterior lacks {missing}")
    lacking = [a for a in (NOISE_POWER_ATTR, NOISE_X0_ATTR) if NOISE_EXCESS in post
               and a not in post.attrs]  # fmt: skip
    if lacking:
        raise FitFileError(f"{path}: the posterior lacks the attribute(s) {lacking}")
    domains = [str(d) for d in post["domain"].to_numpy()]
    if domains != list(data_from_idata(idata).domains):
        raise FitFileError(f"{path}: the posterior's domains {domains} do not match its data")


def _check_groups(idata: az.InferenceData, path: Path) -> None:
    """Every group a fit holds is there, with the variables the data are rebuilt from."""
    missing = [g for g in REQUIRED_GROUPS if g not in idata.groups()]
    if missing:
        raise FitFileError(
            f"{path}: the group(s) {missing} are missing (a saved fit holds "
            f"{list(REQUIRED_GROUPS)}); the file was altered or is damaged: refit with `bimix fit`"
        )
    for group, names in (
        ("constant_data", ("step", "obs_run", "obs_domain", "mixtures")),
        ("observed_data", ("loss",)),
    ):
        lacking = [n for n in names if n not in idata[group]]
        if lacking:
            raise FitFileError(
                f"{path}: the {group} group lacks {lacking}; the file was altered or is "
                "damaged: refit with `bimix fit`"
            )


def _check_draws(idata: az.InferenceData, path: Path) -> None:
    """Every draw is finite, and positive parameters are positive."""
    for name, da in idata.posterior.data_vars.items():
        values = np.asarray(da)
        if not np.issubdtype(values.dtype, np.number):
            continue
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise FitFileError(
                f"{path}: the posterior of {name!r} holds {bad} draw(s) that are NaN or "
                "infinite; the file was altered or is damaged, or the sampler broke down: refit "
                "with `bimix fit`"
            )
        if (name in POSITIVE_VARS or name.startswith("sd_")) and (values <= 0).any():
            raise FitFileError(
                f"{path}: the posterior of {name!r} holds {int((values <= 0).sum())} draw(s) "
                f"<= 0 (smallest {values.min():.4g}), outside its support (it must be > 0); the "
                "file was altered or is damaged: refit with `bimix fit`"
            )


def posterior_hash(idata: az.InferenceData) -> str:
    """SHA-256 of the posterior, the sampler statistics and the recorded diagnostics.

    Recorded by :func:`save_fit` and checked by :func:`load_fit`, so that neither the draws
    nor the diagnostics can change without the other (in milliseconds, where recomputing the
    diagnostics takes about a second).

    Examples
    --------
    >>> len(posterior_hash(idata))
    64
    """
    h = hashlib.sha256()
    h.update(str(idata.attrs.get("diagnostics", "")).encode())
    for group in ("posterior", "sample_stats"):
        if group not in idata.groups():
            continue
        ds = idata[group]
        for name in sorted(str(v) for v in ds.data_vars):
            values = np.asarray(ds[name])
            h.update(f"{group}/{name}{ds[name].dims}{values.shape}".encode())
            if np.issubdtype(values.dtype, np.number) or values.dtype == bool:
                h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
            else:
                h.update("\x1f".join(map(str, values.ravel())).encode())
    return h.hexdigest()


#: How far recomputed diagnostics may differ from the recorded ones (another ArviZ version):
#: (absolute, relative) tolerance per figure.
_DIAGNOSTICS_TOLERANCE = {
    "max_rhat": (1e-3, 0.0),
    "min_ess_bulk": (1.0, 0.02),
    "min_ess_tail": (1.0, 0.02),
    "min_bfmi": (0.01, 0.0),
}


def _same_diagnostics(recorded: FitDiagnostics, recomputed: FitDiagnostics) -> bool:
    """Whether two diagnostics agree: verdict, counts, and figures within a small tolerance."""
    counts = ("passed", "divergences", "draws")
    if any(getattr(recorded, k) != getattr(recomputed, k) for k in counts):
        return False
    for key, (absolute, relative) in _DIAGNOSTICS_TOLERANCE.items():
        a, b = float(getattr(recorded, key)), float(getattr(recomputed, key))
        if not (np.isfinite(a) or np.isfinite(b)):
            continue  # neither computable (one chain; no energy statistics)
        if not abs(a - b) <= absolute + relative * abs(b):
            return False
    return True


def _check_diagnostics(idata: az.InferenceData, spec: Spec, path: Path) -> None:
    """The recorded diagnostics belong to this posterior (hash, or recomputed for old files)."""
    recorded_hash = idata.attrs.get(POSTERIOR_HASH_ATTR)
    if recorded_hash is not None:
        if posterior_hash(idata) != recorded_hash:
            raise FitFileError(
                f"{path}: its posterior, sampler statistics or diagnostics do not match their "
                "recorded hash; the file was altered or is damaged: refit with `bimix fit`"
            )
        return
    # Saved before the hash was recorded: recompute the diagnostics (about a second).
    recorded = diagnostics_from_idata(idata)
    recomputed = diagnose(idata, spec["diagnostics"], spec["sampler"])
    if not _same_diagnostics(recorded, recomputed):
        first = recorded.report().splitlines()[0]
        again = recomputed.report().splitlines()[0]
        raise FitFileError(
            f"{path}: its recorded diagnostics do not match its posterior (recorded: {first}; "
            f"recomputed from the draws: {again}); the file was altered or is damaged: refit "
            "with `bimix fit`"
        )


def save_fit(idata: az.InferenceData, path: str | os.PathLike[str]) -> Path:
    """Write ``idata`` to ``path`` (netCDF) atomically; returns the path.

    The file records :func:`posterior_hash` (attribute ``posterior_sha256``); ``idata``
    itself is not changed.
    """
    path = Path(path)
    if path.suffix.lower() not in (".nc", ".netcdf", ".nc4"):
        raise ValueError(f"{path}: a fit is saved as netCDF; use a .nc file name")
    attrs = dict(idata.attrs)
    idata.attrs = {**attrs, POSTERIOR_HASH_ATTR: posterior_hash(idata)}
    try:
        with atomic_path(path) as tmp:
            idata.to_netcdf(str(tmp), engine="h5netcdf")
    finally:
        idata.attrs = attrs
    return path


def load_fit(path: str | os.PathLike[str]) -> az.InferenceData:
    """Read a fit saved by :func:`save_fit`, refusing files this version cannot use.

    Raises
    ------
    FitFileError
        Missing or unreadable file (or a folder), another file format version, an invalid
        spec, a missing group, data whose hash differs from the one recorded at fit time,
        non-finite or out-of-support draws, or a posterior whose diagnostics were changed.
    """
    path = Path(path)
    if path.is_dir():
        raise FitFileError(
            f"{path}: is a folder, not a fit; give the .nc file `bimix fit --out` wrote"
        )
    if not path.is_file():
        raise FitFileError(f"{path}: no such file")
    try:
        idata = az.from_netcdf(str(path), engine="h5netcdf")
    except (OSError, ValueError) as exc:
        raise FitFileError(f"{path}: not a readable netCDF fit ({exc})") from exc
    attrs = idata.attrs
    if "bimix_format" not in attrs:
        raise FitFileError(f"{path}: not a bimix-bayes fit (no 'bimix_format' attribute)")
    versions = json.loads(attrs.get("package_versions", "{}"))
    written_by = versions.get("bimix_bayes", "unknown")
    if str(attrs["bimix_format"]) != FORMAT_VERSION:
        raise FitFileError(
            f"{path}: written by bimix-bayes {written_by} in file format "
            f"{attrs['bimix_format']}; this version reads format {FORMAT_VERSION}. Refit the "
            "data with this version (`bimix fit`) or use the version that wrote it"
        )
    try:
        stored = json.loads(attrs["spec"])
        spec = spec_from_idata(idata)
        diagnostics_from_idata(idata)
    except (SpecError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise FitFileError(
            f"{path}: its model spec or diagnostics are not valid for this version ({exc}); "
            f"it was written by bimix-bayes {written_by}"
        ) from exc
    if spec_id(stored) != attrs.get("spec_id"):
        raise FitFileError(
            f"{path}: its spec does not match its recorded spec id; the file was altered or "
            "is damaged"
        )
    _check_groups(idata, path)
    _check_posterior(idata, spec, path)
    data = data_from_idata(idata)
    if data.fingerprint() != attrs.get("data_fingerprint"):
        raise FitFileError(
            f"{path}: the stored data do not match their recorded hash; the file "
            "was altered or is damaged"
        )
    if not np.isfinite(float(attrs.get("s_ref", np.nan))):
        raise FitFileError(f"{path}: missing reference step (s_ref)")
    _check_draws(idata, path)
    _check_diagnostics(idata, spec, path)
    return idata
