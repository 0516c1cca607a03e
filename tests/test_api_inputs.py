"""What the API takes as given by a user (issue 14, "README and API mismatches"): a spec by
packaged name from any folder, mixtures as a table read with ``pd.read_csv`` (names in a column),
and the same domain order in every table of a fit (``bimix fit`` and ``bimix summary``)."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest

from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.bayes.persistence import load_fit
from bimix_bayes.bayes.spec import SpecError, load_spec, packaged_specs, spec_id
from bimix_bayes.cli.app import main
from bimix_bayes.data.mixture_input import mixture_frame
from bimix_bayes.data.simulate import simulate_default
from bimix_bayes.data.table import DataError

pytestmark = pytest.mark.filterwarnings("ignore:.*FAILED its convergence diagnostics")

MODELS = Path(__file__).resolve().parents[1] / "models"


# ------------------------------------------------------------------ specs by name or path
@pytest.mark.parametrize("name", ["bimix", "bimix.toml"])
def test_a_packaged_spec_loads_by_name_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no models/ folder here
    assert BiMixModel(name).spec == BiMixModel().spec
    assert spec_id(load_spec(Path(name))) == spec_id(load_spec())  # as the CLI's --spec passes it


def test_a_spec_path_still_loads_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_spec(MODELS / "bimix.toml") == load_spec()
    (tmp_path / "bimix.toml").write_text("[sampler]\ndraws = 123\n")
    assert load_spec("bimix.toml")["sampler"]["draws"] == 123  # an existing file wins


@pytest.mark.parametrize("name", ["models/bimix.toml", "nothing", "bimix.yaml"])
def test_an_unknown_spec_lists_the_packaged_names(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert packaged_specs() == ["bimix", "bimix_cross", "effective", "loglinear"]
    with pytest.raises(SpecError, match=rf'{re.escape(name)}: cannot read .* name: "bimix", '):
        BiMixModel(name)


# ------------------------------------------------------------------ mixtures from pd.read_csv
CANDIDATES = """name,web,code,books,wiki,math
uniform,0.2,0.2,0.2,0.2,0.2
booky,0.1,0.1,0.6,0.1,0.1
"""


def test_a_name_column_becomes_the_index():
    table = pd.read_csv(io.StringIO(CANDIDATES.replace("name,", "Run,")))
    frame = mixture_frame(table)
    assert frame.index.tolist() == ["uniform", "booky"]
    assert list(frame.columns) == ["web", "code", "books", "wiki", "math"]
    assert mixture_frame(table.iloc[1]).index.tolist() == ["booky"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pd.DataFrame({"web": [0.5], "note": ["mine"]}), r"column 'note' is not a share column"),
        (pd.DataFrame({"web": [0.5], "code": [True]}), r"column 'code' is not a share column"),
        (pd.DataFrame({"name": ["a", "a"], "web": [1.0, 1.0]}), r"names repeat: \['a'\]"),
        (pd.DataFrame({"name": ["a", None], "web": [1.0, 1.0]}), r"'name' has empty cells"),
    ],
)
def test_a_column_that_is_not_shares_is_refused(table, message):
    with pytest.raises(DataError, match=message):
        mixture_frame(table, "the candidate mixtures")


# ------------------------------------------------------------------ one small fit, via the CLI
@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> dict:
    """``bimix fit`` of the simulated study (domains web, code, books, wiki, math: not in
    alphabetical order), 2 chains x 150 draws; its printed output and the fit."""
    folder = tmp_path_factory.mktemp("api_inputs")
    data = simulate_default(seed=1)
    csv = folder / "runs.csv"
    wide = data.observations.merge(data.mixtures.add_prefix("p_"), left_on="run", right_index=True)
    wide.to_csv(csv, index=False)
    fit = folder / "fit.nc"
    args = ["fit", str(csv), "--out", str(fit), "--chains", "2", "--draws", "150", "--tune", "150"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--quiet", *args, "--no-retry"]) == 0
    return {"data": data, "fit": fit, "idata": load_fit(fit), "fit_output": out.getvalue()}


def _table_rows(text: str, header: str, names: list[str]) -> list[str]:
    """The first words of the lines after ``header`` that name one of ``names``, in order."""
    after = text.split(header, 1)[1]
    words = [line.split()[0] for line in after.splitlines() if line.split()]
    return [w for w in words if w in names]


def test_fit_and_summary_list_domains_in_the_data_order(fitted):
    domains = list(fitted["data"].domains)
    assert domains != sorted(domains)  # the check means something
    fit_rows = _table_rows(fitted["fit_output"], "posterior mean [94% HDI]", domains)
    assert fit_rows == domains
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--quiet", "summary", str(fitted["fit"]), "--bootstrap", "0"]) == 0
    text = out.getvalue()
    per_domain = _table_rows(text, "posterior beside the paper's least squares", domains)
    assert per_domain[: len(domains)] == domains  # then the next parameter, same order
    assert _table_rows(text, "noise on log loss", domains)[: len(domains)] == domains


def test_predict_and_rank_keep_the_names_of_a_read_csv_table(fitted):
    from bimix_bayes.bayes.forecast import predict
    from bimix_bayes.decision.recommend import optimize, rank

    table = pd.read_csv(io.StringIO(CANDIDATES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecast = predict(fitted["idata"], steps=[4e4], mixtures=table)
        ranked = rank(fitted["idata"], table, 4e4)
        rec = optimize(fitted["idata"], 4e4, baseline=table.iloc[1], forecast=False)
    assert sorted(set(forecast["mixture"])) == ["booky", "uniform"]
    assert sorted(ranked["mixture"]) == ["booky", "uniform"]
    assert rec.baseline_source == "given" and rec.baseline_run is None
    assert rec.baseline.to_dict() == pytest.approx(table.iloc[1].drop("name").to_dict())


def test_a_text_column_that_is_not_a_name_is_refused_by_rank(fitted):
    from bimix_bayes.decision.rank import rank

    table = pd.read_csv(io.StringIO(CANDIDATES)).rename(columns={"name": "label"})
    with pytest.raises(DataError, match=r"candidate mixtures: column 'label' is not a share"):
        rank(fitted["idata"], table, 4e4)


def test_mixtures_as_dicts_and_steps_as_text(fitted):
    """`mixtures={"web": 0.4, ...}` and `steps="40k"` raised AttributeError / ValueError (a
    new user's first tries); they mean what a one-row table and `--steps 40k` mean."""
    from bimix_bayes.bayes.forecast import predict
    from bimix_bayes.decision.recommend import optimize, rank

    table = pd.read_csv(io.StringIO(CANDIDATES)).set_index("name")
    booky = table.loc["booky"].to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_table = predict(fitted["idata"], steps=[4e4], mixtures=table.loc[["booky"]])
        by_dict = predict(fitted["idata"], steps="40k", mixtures=booky)
        by_names = predict(fitted["idata"], steps=["40k"], mixtures={"booky": booky})
        ranked = rank(fitted["idata"], table.to_dict(orient="index"), "40k")
        rec = optimize(fitted["idata"], "40k", baseline=booky, forecast=False)
    assert by_dict["mixture"].unique().tolist() == ["mixture"]
    columns = ["step", "domain", "median", "lower_90"]
    pd.testing.assert_frame_equal(by_dict[columns], by_table[columns])
    pd.testing.assert_frame_equal(by_names[columns], by_table[columns])
    assert sorted(ranked["mixture"]) == ["booky", "uniform"] and rec.step == 4e4
    assert rec.baseline_source == "given"  # a dict baseline was ignored for the best run
    assert rec.baseline.to_dict() == pytest.approx(booky)
    with pytest.raises(TypeError, match=r"expected a table .* got int"):
        predict(fitted["idata"], steps=[4e4], mixtures=3)
    with pytest.raises(ValueError, match=r"steps must be numbers .* got 'lots'"):
        predict(fitted["idata"], steps=["lots"], mixtures=booky)
