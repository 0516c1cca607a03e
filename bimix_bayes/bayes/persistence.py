"""Save and load fits as netCDF (never pickle), and rebuild what a saved fit needs.

A saved fit is one self-sufficient ``.nc`` file: the posterior, the fitted data, the spec and how
the fit was made (attrs). Writes are atomic. Loading refuses a file written with another file
format version, a spec this version cannot read, or data that no longer match their recorded hash.

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

import json
import os
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from bimix_bayes.bayes.diagnostics import FitDiagnostics
from bimix_bayes.bayes.spec import PRIOR_NAMES, Spec, SpecError, merge_spec, spec_id
from bimix_bayes.data.files import atomic_path
from bimix_bayes.data.table import DataError, MixtureData

__all__ = [
    "FORMAT_VERSION",
    "FitFileError",
    "data_from_idata",
    "diagnostics_from_idata",
    "load_fit",
    "save_fit",
    "spec_from_idata",
]

#: Version of the saved-file layout; files of another format version are refused on load.
FORMAT_VERSION = "1"


#: Spec keys that change the model, added in 0.3, and the value that means the older model.
_MODEL_BEFORE_0_3 = {
    "likelihood": {"run_correlation": False},
    "priors": {name: {"sd_prior": "half_normal"} for name in PRIOR_NAMES},
}


class FitFileError(DataError):
    """A saved fit that cannot be used by this version of the package."""


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
    attrs = idata.attrs
    return MixtureData(
        mixtures=mixtures,
        observations=observations,
        volume=attrs.get("data_volume", "steps"),
        group=attrs.get("data_group") or None,
        source=attrs.get("data_source", "<saved fit>"),
        notes=tuple(json.loads(attrs.get("data_notes", "[]"))),
    )


def spec_from_idata(idata: az.InferenceData) -> Spec:
    """The spec a fit was made with (validated by this version of the package)."""
    stored = json.loads(idata.attrs["spec"])
    # Keys added since a file was written keep the model it was fitted with.
    for section, values in _MODEL_BEFORE_0_3.items():
        for key, value in values.items():
            stored.setdefault(section, {}).setdefault(key, value)
    return merge_spec(stored)


def diagnostics_from_idata(idata: az.InferenceData) -> FitDiagnostics:
    """The diagnostics recorded when the fit was made."""
    return FitDiagnostics.from_json(idata.attrs["diagnostics"])


def _check_posterior(idata: az.InferenceData, spec: Spec, path: Path) -> None:
    """The posterior holds what forecasts need, with the data's domains."""
    needed = ["log_floor", "log_reducible", "alpha", "beta", "sigma"]
    if spec["likelihood"]["run_offset"]:
        needed.append("tau")
    if "posterior" not in idata.groups():
        raise FitFileError(f"{path}: no posterior group")
    post = idata.posterior
    missing = [v for v in needed if v not in post]
    if missing:
        raise FitFileError(f"{path}: the posterior lacks {missing}")
    domains = [str(d) for d in post["domain"].to_numpy()]
    if domains != list(data_from_idata(idata).domains):
        raise FitFileError(f"{path}: the posterior's domains {domains} do not match its data")


def save_fit(idata: az.InferenceData, path: str | os.PathLike[str]) -> Path:
    """Write ``idata`` to ``path`` (netCDF) atomically; returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".nc", ".netcdf", ".nc4"):
        raise ValueError(f"{path}: a fit is saved as netCDF; use a .nc file name")
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp), engine="h5netcdf")
    return path


def load_fit(path: str | os.PathLike[str]) -> az.InferenceData:
    """Read a fit saved by :func:`save_fit`, refusing files this version cannot use.

    Raises
    ------
    FitFileError
        Missing or unreadable file, another file format version, an invalid spec, or data
        whose hash differs from the one recorded at fit time.
    """
    path = Path(path)
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
    _check_posterior(idata, spec, path)
    data = data_from_idata(idata)
    if data.fingerprint() != attrs.get("data_fingerprint"):
        raise FitFileError(
            f"{path}: the stored data do not match their recorded hash; the file "
            "was altered or is damaged"
        )
    if not np.isfinite(float(attrs.get("s_ref", np.nan))):
        raise FitFileError(f"{path}: missing reference step (s_ref)")
    return idata
