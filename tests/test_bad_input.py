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


def test_a_mixture_file_without_a_training_domain_names_it_not_the_sum(tmp_path):
    """Given the fit's training domains, a row that sums to 0.7 because github has no column
    is refused for the column (it said only "do not sum to 1")."""
    from bimix_bayes.data.loaders import read_mixtures

    path = tmp_path / "cands.csv"
    path.write_text("mixture,web,code\nx,0.4,0.3\n")
    message = r"cands\.csv: no column for the training domain\(s\) \['github'\].* sums to 0\.7"
    with pytest.raises(DataError, match=message):
        read_mixtures(path, domains=["web", "code", "github"])
    with pytest.raises(DataError, match="do not sum to 1"):  # without them: the sum
        read_mixtures(path)
    path.write_text("mixture,web,code\nx,0.6,0.4\n")  # sums to 1: the fit's checks decide
    assert read_mixtures(path, domains=["web", "code", "github"]).shape == (1, 2)


def test_a_mixture_file_in_percent_says_so(tmp_path):
    """Shares given in percent: the refusal says to divide by 100 (the data file's did)."""
    from bimix_bayes.data.loaders import read_mixtures

    path = tmp_path / "pct.csv"
    path.write_text("mixture,web,code\nx,60,40\ny,25,75\n")
    with pytest.raises(DataError, match=r"pct\.csv: proportions .* look like percent: divide"):
        read_mixtures(path)
    path.write_text("mixture,web,code\nx,1.5,-0.5\n")  # out of range, not percent: no hint
    with pytest.raises(DataError) as err:
        read_mixtures(path)
    assert "look like percent" not in str(err.value)


def test_a_zero_column_the_fit_does_not_know_is_harmless(tmp_path):
    """A candidate file with a column of zeros for a domain the fit does not know loses
    nothing when that column is left out: accepted, the fit's shares as given."""
    from bimix_bayes.data.loaders import read_mixtures
    from bimix_bayes.decision.problem import candidate_shares

    path = tmp_path / "candidates.csv"
    path.write_text("mixture,web,code,openhermes\neven,0.5,0.5,0\nweb_heavy,0.8,0.2,0\n")
    shares = candidate_shares(read_mixtures(path), ["web", "code"], np.ones(2), "them")
    assert shares.loc["web_heavy"].tolist() == [0.8, 0.2]


def test_a_candidate_file_missing_a_domain_is_named_with_the_case_typo(tmp_path):
    """The message names the file, the missing domain, a column that differs only in case,
    and the fit's domains."""
    from bimix_bayes.data.loaders import read_mixtures
    from bimix_bayes.data.mixture_input import mixtures_words
    from bimix_bayes.decision.problem import candidate_shares

    path = tmp_path / "cands.csv"
    path.write_text("mixture,Web,code\neven,0.5,0.5\n")
    table = read_mixtures(path)
    what = mixtures_words(table, "the candidate mixtures")
    message = (
        r"cands\.csv\) lack\(s\) the training domain\(s\) \['web'\] "
        r"\(differ\(s\) only in case: 'Web' for 'web'"
    )
    with pytest.raises(DataError, match=message):
        candidate_shares(table, ["web", "code"], np.ones(2), what)


def test_training_domains_without_losses_are_known_columns():
    """A training domain that is not an evaluation domain (RegMix's) is a legitimate column."""
    from bimix_bayes.data.table import prediction_shares

    mix = pd.Series({"web": 0.5, "code": 0.4, "books": 0.1}, name="m")
    shares = prediction_shares(mix, ["web", "code"], training_domains=["web", "code", "books"])
    assert list(shares.columns) == ["web", "code"]


# ------------------------------------------------------------------------------ saved fits
@pytest.fixture(scope="module")
def small_fit(sim_data, tmp_path_factory):
    """A short fit (2 chains x 100 draws: it fails its diagnostics), saved, and its path."""
    import warnings

    from bimix_bayes.bayes.model import BiMixModel

    model = BiMixModel(
        {"sampler": {"chains": 2, "draws": 100, "tune": 100, "progress_bar": "never"}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(sim_data, seed=0, retry=False)
    return model.save(tmp_path_factory.mktemp("fit") / "fit.nc")


def _altered(src, dst, change, *, rehash=False):
    """A copy of the fit at ``src`` with ``change(idata)`` applied; with ``rehash`` it is saved
    by save_fit (a valid hash of the altered content), else written as an older version did
    (no posterior hash)."""
    import arviz as az

    from bimix_bayes.bayes.persistence import POSTERIOR_HASH_ATTR, save_fit

    idata = az.from_netcdf(str(src), engine="h5netcdf")
    change(idata)
    if rehash:
        save_fit(idata, dst)
    else:
        idata.attrs = {k: v for k, v in idata.attrs.items() if k != POSTERIOR_HASH_ATTR}
        idata.to_netcdf(str(dst), engine="h5netcdf")
    return dst


def _passing_diagnostics(idata):
    import json

    diag = json.loads(idata.attrs["diagnostics"])
    diag.update(max_rhat=1.001, min_ess_bulk=900.0, min_ess_tail=800.0, problems=[])
    idata.attrs["diagnostics"] = json.dumps(diag)


def _edit_hashed_diagnostics(src, dst):
    import arviz as az

    idata = az.from_netcdf(str(src), engine="h5netcdf")
    _passing_diagnostics(idata)
    idata.to_netcdf(str(dst), engine="h5netcdf")  # keeps the recorded hash
    return dst


def _set(name, value):
    def change(idata):
        values = idata.posterior[name].values.copy()
        values.flat[0] = value
        idata.posterior[name] = (idata.posterior[name].dims, values)

    return change


def _negate(name):
    def change(idata):
        idata.posterior[name] = -idata.posterior[name]

    return change


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda src, dst: _altered(src, dst, _passing_diagnostics),
            r"recorded diagnostics do not match its posterior \(recorded: diagnostics PASSED.*"
            r"recomputed from the draws: diagnostics FAILED",
        ),
        (_edit_hashed_diagnostics, "do not match their recorded hash; the file was altered"),
        (
            lambda src, dst: _altered(src, dst, _set("alpha", np.nan), rehash=True),
            r"the posterior of 'alpha' holds 1 draw\(s\) that are NaN or infinite",
        ),
        (
            lambda src, dst: _altered(src, dst, _negate("alpha"), rehash=True),
            r"the posterior of 'alpha' holds 1000 draw\(s\) <= 0 .*outside its support",
        ),
        (
            lambda src, dst: _altered(src, dst, _set("sigma", -1.0), rehash=True),
            r"the posterior of 'sigma' holds 1 draw\(s\) <= 0",
        ),
        (
            lambda src, dst: _altered(src, dst, lambda i: delattr(i, "constant_data")),
            r"the group\(s\) \['constant_data'\] are missing",
        ),
    ],
    ids=["diagnostics-edited", "hashed-diagnostics-edited", "nan", "negative-alpha",
         "negative-sigma", "no-constant-data"],
)  # fmt: skip
def test_an_altered_fit_is_refused(small_fit, tmp_path, make, message, capsys):
    """The fit file's integrity covers the posterior and its diagnostics, not only the data:
    a FitFileError naming the problem (and `bimix predict` exits 1, no traceback)."""
    from bimix_bayes.bayes.persistence import FitFileError, load_fit

    path = make(small_fit, tmp_path / "altered.nc")
    with pytest.raises(FitFileError, match=message):
        load_fit(path)
    assert main(["predict", str(path), "--steps", "30000"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bimix: error:") and "Traceback" not in err


def test_fits_with_and_without_the_posterior_hash_load(small_fit, tmp_path):
    """A fit saved now carries the hash; one saved by the previous version (none) still loads
    (its diagnostics are recomputed and agree)."""
    from bimix_bayes.bayes.persistence import (
        POSTERIOR_HASH_ATTR,
        diagnostics_from_idata,
        load_fit,
    )

    loaded = load_fit(small_fit)
    assert POSTERIOR_HASH_ATTR in loaded.attrs and not diagnostics_from_idata(loaded).passed
    old = load_fit(_altered(small_fit, tmp_path / "old.nc", lambda i: None))
    assert POSTERIOR_HASH_ATTR not in old.attrs
    assert diagnostics_from_idata(old) == diagnostics_from_idata(loaded)


def test_a_folder_given_as_a_fit_says_so(tmp_path, capsys):
    from bimix_bayes.bayes.persistence import FitFileError, load_fit

    with pytest.raises(FitFileError, match="is a folder, not a fit"):
        load_fit(tmp_path)
    assert main(["summary", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_one_chain_diagnostics_say_rhat_is_not_computable():
    import arviz as az

    from bimix_bayes.bayes.diagnostics import diagnose

    rng = np.random.default_rng(0)
    idata = az.from_dict(
        posterior={"x": rng.normal(size=(1, 500))},
        sample_stats={"diverging": np.zeros((1, 500), bool)},
    )
    thresholds = {"max_rhat": 1.01, "min_ess_bulk": 100, "min_ess_tail": 100,
                  "max_divergences": 0, "min_bfmi": 0.3}  # fmt: skip
    report = diagnose(idata, thresholds).report()
    assert "r-hat not computable with 1 chain" in report and "-inf" not in report
    assert "run at least 2 chains" in report


def test_diagnostics_skip_entries_fixed_by_the_parametrisation():
    """A cross effect's own-domain zero is constant over the draws: arviz gives it the number
    of draws as ESS, which named it the worst-mixing parameter; the real worst is named."""
    import arviz as az

    from bimix_bayes.bayes.diagnostics import diagnose

    rng = np.random.default_rng(0)
    noise = rng.normal(size=(4, 500, 2, 2))
    cross = noise.copy()  # antithetic chains (AR(1), phi -0.5): ESS above the draws' count
    for t in range(1, 500):
        cross[:, t] = -0.5 * cross[:, t - 1] + noise[:, t]
    cross[..., 0, 0] = cross[..., 1, 1] = 0.0  # the diagonal, zero by construction
    slow = np.cumsum(rng.normal(size=(4, 500)), axis=1)  # a random walk: low ESS
    idata = az.from_dict(
        posterior={"cross": cross, "slow": slow},
        sample_stats={"diverging": np.zeros((4, 500), bool)},
    )
    thresholds = {"max_rhat": 1.01, "min_ess_bulk": 100, "min_ess_tail": 100,
                  "max_divergences": 0, "min_bfmi": 0.3}  # fmt: skip
    diag = diagnose(idata, thresholds)
    assert diag.worst_ess_var == "slow" and diag.min_ess_bulk < 100
    stats = {"diverging": np.zeros((4, 500), bool)}
    only_cross = diagnose(az.from_dict(posterior={"cross": cross}, sample_stats=stats), thresholds)
    assert only_cross.worst_ess_var.startswith("cross[")
    assert only_cross.worst_ess_var not in ("cross[0, 0]", "cross[1, 1]")
    assert only_cross.min_ess_bulk > 2000  # a varying entry's ESS, not the draws' count


# ------------------------------------------------------------------------------ other files
def test_a_binary_spec_file_is_named(tmp_path):
    from bimix_bayes.bayes.spec import SpecError, load_spec

    path = tmp_path / "spec.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(SpecError, match=f"{path}: not a text spec .* saved as UTF-8"):
        load_spec(path)


def test_entropy_refuses_a_domain_too_small_for_vne(tmp_path, capsys):
    """One chunk cannot give a von Neumann entropy (it compares chunks): refused with the
    domain's size and the minimum, instead of a NaN share."""
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("a small domain of text")
    large.write_text("some more text, " * 200)
    out = tmp_path / "mix.csv"
    assert main(["entropy", f"a={small}", f"b={large}", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "domain 'a' has 22 tokens, 1 chunk of 1024" in err
    assert "needs at least 2 (more than 1024 tokens)" in err and not out.exists()


def test_comparing_fits_of_different_data_names_their_sources():
    """Fits of different data cannot be compared: the refusal says where each one's data came
    from (source, group, observations), not only their fingerprints."""
    import arviz as az

    from bimix_bayes.bayes.compare import compare_fits

    def fit(source: str, group: str, n: int, fingerprint: str) -> az.InferenceData:
        idata = az.from_dict(posterior={"x": np.zeros((2, 5))}, observed_data={"loss": np.ones(n)})
        idata.attrs.update(data_source=source, data_group=group, data_fingerprint=fingerprint)
        return idata

    with pytest.raises(DataError) as err:
        compare_fits({"a.nc": fit("sp.csv", "122M", 4158, "8de9525c46e2" + "0" * 52),
                      "b.nc": fit("ye.csv", "", 700, "1c134b12aaaa" + "0" * 52)})  # fmt: skip
    text = str(err.value)
    assert "a.nc: sp.csv, group 122M, 4158 observations (data 8de9525c46e2)" in text
    assert "b.nc: ye.csv, 700 observations" in text and "same file and options" in text
