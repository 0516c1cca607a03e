"""The report of a fit of several model sizes with held-out points (``--holdout``): each point
forecast at its own size and scored per held-out size and overall, the points at the target size
drawn, and held-out points without sizes refused with the option that adds them."""

from __future__ import annotations

import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.bayes.persistence import data_from_idata, save_fit
from bimix_bayes.cli.app import main
from bimix_bayes.data.table import DataError, MixtureData
from bimix_bayes.report import sections
from bimix_bayes.report.html import _score_holdout, build_report
from tests.test_sizes import SIZES, _size_data

#: A quick fit: the scores need forecasts, not a converged fit.
QUICK = {"sampler": {"chains": 2, "draws": 100, "tune": 200, "progress_bar": "never"}}
TARGET = 8e8


@pytest.fixture(scope="module")
def size_study() -> tuple[az.InferenceData, MixtureData, MixtureData]:
    """A fit of three sizes (100M-400M) without its last mixture, and the held-out points: every
    mixture at 800M (fitted runs continued at a larger size) and the last mixture at every size
    (a new mixture)."""
    data = _size_data(seed=3, sizes=(*SIZES, TARGET))
    runs = list(data.runs)
    new = runs[-1]
    obs = data.observations
    fitted = (obs["size"] < TARGET) & (obs["run"] != new)
    fit_data = MixtureData.from_frames(
        data.mixtures.loc[runs[:-1]], obs[fitted], size_kind="total parameters", source="fit"
    )
    holdout = MixtureData.from_frames(
        data.mixtures, obs[~fitted], size_kind="total parameters", source="held-out"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = BiMixModel(QUICK).fit(fit_data, seed=1, retry=False)
    return idata, fit_data, holdout


def _without_sizes(holdout: MixtureData) -> MixtureData:
    """The held-out points at the target size, read as if the file had no size column."""
    obs = holdout.observations
    at_target = obs[obs["size"] == TARGET].drop(columns="size")
    return MixtureData.from_frames(holdout.mixtures, at_target, source="no sizes")


def test_held_out_points_of_a_size_fit_are_scored_at_their_size(size_study):
    """Each held-out size has its row (all domains), beside each domain and the pooled row;
    MRE and coverage are finite; least squares (no size dimension) is left out."""
    idata, _, holdout = size_study
    scores = _score_holdout(idata, data_from_idata(idata), holdout, None, seed=0)
    per_size = [f"all domains at {s}" for s in ("100M", "200M", "400M", "800M")]
    assert list(scores.index[-5:]) == [*per_size, "all domains"]
    assert scores.loc[per_size, "points"].sum() == scores.loc["all domains", "points"]
    assert scores.loc["all domains", "points"] == len(holdout.observations)
    bayes = scores.drop(columns=["points", "MRE least squares (%)"])
    assert np.isfinite(bayes.to_numpy()).all()
    assert (scores["MRE Bayes (%)"] >= 0).all()
    assert (scores["MRE Bayes (%)"] < 5).all()  # a forecast at its size, not at another
    coverage = scores.filter(like="coverage (%)")
    assert ((coverage >= 0) & (coverage <= 100)).all().all()
    assert scores["MRE least squares (%)"].isna().all()


@pytest.fixture
def drawn(monkeypatch) -> dict[str, object]:
    """What the report passes to the extrapolation figure, and the figure (``"figure"``)."""
    seen: dict[str, object] = {}
    draw = sections.extrapolation_figure

    def spy(*args: object, **kwargs: object) -> Figure:
        seen.update(kwargs, figure=draw(*args, **kwargs))
        return seen["figure"]

    monkeypatch.setattr(sections, "extrapolation_figure", spy)
    return seen


def test_the_report_shows_the_scores_per_size_and_draws_those_at_the_target(size_study, drawn):
    """The held-out section lists every held-out size (no least-squares column); the figure
    draws only the held-out points at the target size, and its caption says which size."""
    idata, _, holdout = size_study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = build_report(idata, size=TARGET, holdout=holdout, n_bootstrap=0, seed=0)
    section = page.split('<section id="extrapolation">')[1].split("</section>")[0]
    assert "Held-out points (held-out; at model sizes 100M, 200M, 400M, 800M" in section
    assert "all domains at 800M" in section and "all domains at 100M" in section
    assert "MRE least squares" not in section
    assert "(fitted runs with held-out points)" in section
    points = drawn["holdout"]
    assert isinstance(points, pd.DataFrame) and len(points)
    assert set(points["size"]) == {TARGET}
    assert "held-out points at 800M (x)" in drawn["figure"].get_suptitle()


def test_held_out_points_at_other_sizes_only_are_not_drawn(size_study, drawn):
    """Held-out points none of which is at the target size: none drawn, and the caption says
    so."""
    idata, _, holdout = size_study
    fit = sections.ReportInputs.prepare(idata, step=None, n_bootstrap=0, seed=0, size=TARGET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = sections.section_extrapolation(fit, holdout.subset(max_size=4e8))
    assert context["holdout_source"].endswith(
        "at model sizes 100M, 200M, 400M, each forecast at its size"
    )
    assert len(drawn["holdout"]) == 0
    assert "no held-out point at 800M" in drawn["figure"].get_suptitle()


def test_held_out_points_without_sizes_are_refused_for_a_size_fit(size_study):
    """A size fit's held-out points need their sizes: the error names --size-col."""
    idata, _, holdout = size_study
    with pytest.raises(DataError, match="--size-col"):
        build_report(idata, size=TARGET, holdout=_without_sizes(holdout), n_bootstrap=0)


def test_cli_report_of_a_size_fit_scores_held_out_points(size_study, tmp_path: Path, capsys):
    """`bimix report FIT --size 800M --holdout FILE --size-col size` writes the report with the
    scores per size; without --size-col the held-out file is refused before any work."""
    idata, _, holdout = size_study
    fit = save_fit(idata, tmp_path / "fit.nc")
    held = tmp_path / "held.csv"
    holdout.to_long().to_csv(held, index=False)
    out = tmp_path / "report.html"
    args = ["report", str(fit), "--out", str(out), "--size", "800M", "--holdout", str(held)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--quiet", *args, "--size-col", "size"]) == 0
    text = out.read_text()
    assert "all domains at 800M" in text and f"--holdout {held}" in text
    out.unlink()
    plain = tmp_path / "plain.csv"
    _without_sizes(holdout).to_long().to_csv(plain, index=False)
    capsys.readouterr()
    assert main(["--quiet", *args[:-1], str(plain)]) == 1
    assert "--size-col" in capsys.readouterr().err
    assert not out.exists()
