"""Bad input files get a clear ``DataError`` (what, where, how to fix), never a traceback."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.cli import main
from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.table import DataError


@pytest.fixture
def long_csv(sim_data, tmp_path):
    path = tmp_path / "runs.csv"
    sim_data.to_long().to_csv(path, index=False)
    return path


def test_truncated_gzip_is_a_data_error(long_csv, tmp_path, capsys):
    whole = gzip.compress(long_csv.read_bytes())
    path = tmp_path / "runs.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_data(path)
    assert main(["fit-ls", str(path), "--bootstrap", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bimix: error:") and "Traceback" not in err


def test_duplicate_column_names_are_refused(long_csv, tmp_path):
    text = long_csv.read_text().splitlines()
    header = text[0] + ",loss"
    rows = [line + ",1.0" for line in text[1:]]
    path = tmp_path / "dup.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(DataError, match="'loss' appears twice"):
        load_data(path)


@pytest.mark.parametrize(("sep", "word"), [(";", "semicolons"), ("\t", "tabs")])
def test_wrong_delimiter_gets_a_hint(long_csv, tmp_path, sep, word):
    path = tmp_path / "runs.csv"
    path.write_text(long_csv.read_text().replace(",", sep))
    with pytest.raises(DataError, match=f"separated by {word}"):
        load_data(path)


def test_latin1_file_says_utf8(long_csv, tmp_path):
    path = tmp_path / "latin.csv"
    text = long_csv.read_text().replace("web", "wéb")
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text .* re-save the file as UTF-8"):
        load_data(path)


def test_closed_pipe_is_quiet(long_csv, monkeypatch, capsys):
    """`bimix fit-ls runs.csv | head -1`: no Broken pipe message, exit 0 (as Unix tools)."""
    import io

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["fit-ls", str(long_csv), "--bootstrap", "0"]) == 0
    err = capsys.readouterr().err
    assert "Broken pipe" not in err and "Errno 32" not in err


@pytest.mark.parametrize("command", ["fit", "backtest", "report"])
def test_unwritable_out_is_refused_first(long_csv, tmp_path, monkeypatch, capsys, command):
    """A fit that takes minutes must not be lost because --out cannot be written."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file, so nothing can be written below it")
    out = blocker / {"fit": "fit.nc", "backtest": "metrics.csv", "report": "r.html"}[command]

    def no_work(*args, **kwargs):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr("bimix_bayes.data.loaders.load_data", no_work)
    monkeypatch.setattr("bimix_bayes.bayes.persistence.load_fit", no_work)
    argv = {
        "fit": ["fit", str(long_csv), "--out", str(out)],
        "backtest": ["backtest", str(long_csv), "--protocol", "horizon:0.5", "--out", str(out)],
        "report": ["report", str(tmp_path / "fit.nc"), "--out", str(out)],
    }[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out}" in err and "choose another --out" in err


# ------------------------------------------------------------------------------ absurd values
@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("loss", 1e308, r"implausibly large \(> 10000 nats\): line 7 \(run 'mix000', domain "),
        ("loss", 1e-300, r"implausibly small \(< 1e-06 nats\): line 7 .*loss 1e-300"),
        ("loss", 1e-3, r"more than a factor 1000 .* domain median 5\.\d+\)"),
        ("step", 1e308, r"step value\(s\) are implausibly large .* step 1e\+308\)"),
        ("step", 0.5, r"below 1 .* step 0\.5\).* convert it to a count"),
    ],
)
def test_absurd_values_are_refused_with_the_row(long_csv, tmp_path, column, value, message):
    """A loss or step orders of magnitude off (a unit or typing error) would silently wreck a
    domain's fit: refused, naming the file, line, run, domain, value and what to check."""
    table = pd.read_csv(long_csv)
    table.loc[5, column] = value  # line 7 of the file (after the header)
    path = tmp_path / "absurd.csv"
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match=message) as info:
        load_data(path)
    assert str(info.value).startswith(f"{path}: ") and "Fix or remove those rows" in str(info.value)


def test_absurd_loss_exits_1_before_fitting(long_csv, tmp_path, capsys):
    table = pd.read_csv(long_csv)
    table.loc[5, "loss"] = 1e308
    path = tmp_path / "absurd.csv"
    table.to_csv(path, index=False)
    assert main(["fit-ls", str(path), "--bootstrap", "0"]) == 1
    captured = capsys.readouterr()
    assert "implausibly large" in captured.err and captured.out == ""


def test_a_widely_spread_domain_is_not_an_outlier(sim_data):
    """Losses from initialisation (about log of the vocabulary) down to a small floor are
    legitimate: the outlier rule widens with the domain's own spread."""
    from bimix_bayes.data.table import MixtureData

    obs = sim_data.observations.copy()
    web = obs.index[obs["domain"] == "web"]
    obs.loc[web, "loss"] = np.geomspace(0.004, 10.8, len(web))  # 3.4 orders of magnitude
    data = MixtureData.from_frames(sim_data.mixtures, obs)
    assert data.observations["loss"].min() == pytest.approx(0.004)


# ------------------------------------------------------------------------------ mixture files
@pytest.fixture
def extra_column_candidates(tmp_path):
    """Candidates whose shares sum to 1 only with a domain the fit does not know."""
    path = tmp_path / "candidates.csv"
    path.write_text(
        "mixture,web,code,books,wiki,math,openhermes\n"
        "even,0.18,0.18,0.18,0.18,0.18,0.1\n"
        "web_heavy,0.5,0.1,0.1,0.1,0.1,0.1\n"
    )
    return path


def test_a_mixture_column_the_fit_does_not_know_is_refused(extra_column_candidates):
    """It passes the file's sum-to-1 check and would then be dropped, scoring shares that
    sum to 0.9: refused, naming the column, the fit's domains and the fix."""
    from bimix_bayes.data.loaders import read_mixtures
    from bimix_bayes.data.table import prediction_shares
    from bimix_bayes.decision.problem import candidate_shares

    table = read_mixtures(extra_column_candidates)  # sums to 1 with the extra column
    domains = ["web", "code", "books", "wiki", "math"]
    message = (
        r"column\(s\) \['openhermes'\] are not domains of the fit \(its domains: \['web', "
        r"'code', 'books', 'wiki', 'math'\]\).* sum to 0\.9 instead of 1\. Remove the column"
    )
    with pytest.raises(DataError, match=message):
        prediction_shares(table, domains, training_domains=domains)
    with pytest.raises(DataError, match="the candidate mixtures: column"):
        candidate_shares(table, domains, np.ones(5), "the candidate mixtures")


def test_training_domains_without_losses_are_known_columns():
    """A training domain that is not an evaluation domain (RegMix's) is a legitimate column."""
    from bimix_bayes.data.table import prediction_shares

    mix = pd.Series({"web": 0.5, "code": 0.4, "books": 0.1}, name="m")
    shares = prediction_shares(mix, ["web", "code"], training_domains=["web", "code", "books"])
    assert list(shares.columns) == ["web", "code"]
