"""`bimix fit`, `bimix summary` and `bimix predict` end to end, through the real executable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.test_cli import run


@pytest.fixture(scope="module")
def fit_file(tmp_path_factory) -> Path:
    """Simulate a small study and fit it once with the CLI."""
    folder = tmp_path_factory.mktemp("bayes_cli")
    data = folder / "sim.csv"
    assert run("simulate", "--out", str(data), "--runs", "8", "--seed", "4").returncode == 0
    out = folder / "fit.nc"
    res = run("fit", str(data), "--out", str(out), "--seed", "1", "--strict")
    assert res.returncode == 0, res.stderr
    assert "diagnostics PASSED" in res.stdout
    assert "posterior mean [94% HDI]" in res.stdout
    assert "bimix: fit: compiling the model" in res.stderr  # stage lines (issue 14)
    assert "bimix: fit: sampled in " in res.stderr
    return out


def test_fit_writes_a_self_sufficient_file(fit_file):
    """The saved fit exists and summary works from it alone."""
    res = run("summary", str(fit_file), "--bootstrap", "20")
    assert res.returncode == 0, res.stderr
    for text in ("diagnostics PASSED", "least squares", "r-hat", "ESS bulk", "sigma", "alpha"):
        assert text in res.stdout, text
    assert "FAILED" not in res.stdout


def test_summary_stderr_has_no_library_future_warning(fit_file, tmp_path):
    """ArviZ's import-time FutureWarning (once a day, per cache folder) never reaches the user:
    a fresh cache folder makes ArviZ emit it, and `bimix` must filter it."""
    res = run("summary", str(fit_file), "--bootstrap", "0", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert "ArviZ" not in res.stderr and "FutureWarning" not in res.stderr
    assert "refactor" not in res.stderr


def test_summary_writes_csv(fit_file, tmp_path):
    """`summary --out` writes the comparison table."""
    res = run("summary", str(fit_file), "--bootstrap", "0", "--out", str(tmp_path / "s.csv"))
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(tmp_path / "s.csv")
    assert {"domain", "parameter", "mean", "lower", "upper", "ls_estimate"} <= set(table)


def test_predict_observed_runs_and_a_mixture_file(fit_file, tmp_path):
    """`predict` continues observed runs and forecasts new mixtures from a file."""
    mix = tmp_path / "mix.csv"
    mix.write_text("name,web,code,books,wiki,math\nuniform,0.2,0.2,0.2,0.2,0.2\n")
    out = tmp_path / "p.csv"
    res = run(
        "predict",
        str(fit_file),
        "--steps",
        "20000",
        "40000",
        "--mixture",
        str(mix),
        "--runs",
        "mix001",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(out)
    assert set(table["mixture"]) == {"uniform", "mix001"}
    assert set(table["source"]) == {"new mixture", "observed run"}
    assert {"lower_90", "upper_90", "lower_50", "upper_50", "median"} <= set(table)
    assert "uniform" in res.stdout and "(mean of domains)" in res.stdout


def test_predict_bad_mixture_file_exits_1(fit_file, tmp_path):
    """A mixture that does not sum to 1 is a data error naming the line."""
    mix = tmp_path / "bad.csv"
    mix.write_text("name,web,code,books,wiki,math\nx,0.5,0.5,0.5,0.2,0.2\n")
    res = run("predict", str(fit_file), "--steps", "20000", "--mixture", str(mix))
    assert res.returncode == 1
    assert "line 2" in res.stderr and "sum to 1" in res.stderr


def test_strict_exits_1_on_a_failed_fit(tmp_path):
    """With --strict a fit that fails its diagnostics exits 1 (the file is still written)."""
    data = tmp_path / "sim.csv"
    assert run("simulate", "--out", str(data), "--runs", "6").returncode == 0
    out = tmp_path / "bad.nc"
    res = run(
        "fit", str(data), "--out", str(out), "--draws", "10", "--tune", "10", "--strict",
        "--no-retry",
    )  # fmt: skip
    assert res.returncode == 1
    assert "--strict" in res.stderr
    # the diagnostics' report is printed once (stdout, with a banner), not repeated on stderr
    assert (res.stdout + res.stderr).count("diagnostics FAILED") == 1
    assert "this fit FAILED its convergence diagnostics" in res.stdout
    assert out.exists()
    summary = run("summary", str(out), "--bootstrap", "0")
    assert "this fit FAILED its convergence diagnostics" in summary.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "x.csv", "--out", "fit.txt"],
        ["fit", "x.csv"],
        ["predict", "fit.nc"],
        ["predict", "fit.nc", "--steps", "-5"],
        ["summary", "fit.nc", "--prob", "1.2"],
    ],
)
def test_bad_usage_exits_2(args):
    """Bad usage of the Bayesian commands exits 2 before any work."""
    assert run(*args).returncode == 2


def test_missing_fit_file_exits_1(tmp_path):
    """A fit file that does not exist is a clear error."""
    res = run("summary", str(tmp_path / "none.nc"))
    assert res.returncode == 1 and "no such file" in res.stderr


def test_bad_spec_exits_1_naming_the_key(tmp_path):
    """A spec with an unknown key stops the fit before sampling."""
    spec = tmp_path / "spec.toml"
    spec.write_text("[sampler]\ndrawz = 10\n")
    data = tmp_path / "sim.csv"
    assert run("simulate", "--out", str(data)).returncode == 0
    res = run("fit", str(data), "--spec", str(spec), "--out", str(tmp_path / "f.nc"))
    assert res.returncode == 1 and "sampler.drawz" in res.stderr


def test_compare_ranks_fits_by_leave_one_run_out(fit_file, tmp_path):
    """`compare` ranks fits by PSIS-LOO over whole runs and writes the ranking."""
    out = tmp_path / "loo.csv"
    res = run("compare", str(fit_file), str(fit_file), "--names", "a", "b", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "one whole run left out" in res.stdout and "elpd_loo" in res.stdout
    assert "scored as each fit forecasts a new one" in res.stdout
    table = pd.read_csv(out)
    assert set(table.iloc[:, 0]) == {"a", "b"}
    assert table["elpd_diff"].abs().max() < 1e-6  # the same fit twice: no difference
    assert run("compare", str(fit_file), "--names", "a", "b").returncode == 2
    # the same file twice without names: said so, not blamed on --names
    res = run("compare", str(fit_file), str(fit_file))
    assert res.returncode == 2 and "given more than once" in res.stderr
    assert "--names" not in res.stderr


def test_summary_names_the_run_effect_every_domain_shares():
    """A fit with run_correlation = "common" gets a line with the shared sd and its interval;
    other fits get none."""
    import numpy as np
    import xarray as xr

    from bimix_bayes.cli.bayes import _common_effect_note

    rng = np.random.default_rng(0)
    post = xr.Dataset(
        {
            "tau_common": (("chain", "draw"), 0.003 + 0.0005 * rng.standard_normal((2, 200))),
            "tau_own": (("chain", "draw", "domain"), np.full((2, 200, 3), [0.001, 0.002, 0.01])),
        }
    )
    note = _common_effect_note(post, 0.94)
    assert note.startswith("run offsets: a part every domain of a run shares, sd 0.00")
    mean = float(note.split("sd ")[1].split(" ")[0])
    assert abs(mean - float(post["tau_common"].mean())) < 1e-6
    assert "(sd 0.001-0.01)" in note
    assert _common_effect_note(post.drop_vars("tau_common"), 0.94) == ""
    slopes = post.assign(kappa_common=post["tau_common"] / 10, kappa_own=post["tau_own"] / 10)
    lines = _common_effect_note(slopes, 0.94).splitlines()
    assert len(lines) == 2 and lines[1].startswith("run slopes: a part every domain")


def test_summary_says_how_a_mixtures_offsets_move_between_sizes():
    """A size fit with run x size offsets gets a line with each domain's sd and the mean
    correlation; a fit without them gets none."""
    import numpy as np
    import xarray as xr

    from bimix_bayes.bayes.run_size_offsets import RunSizeOffsets
    from bimix_bayes.cli.bayes import _run_size_note

    corr = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.0], [0.0, 0.0, 1.0]])
    offsets = RunSizeOffsets(np.array([0.0012, 0.0031, 0.0]), corr)
    post = xr.Dataset(coords={"domain": ["web", "code", "math"]}, attrs=offsets.to_attr())
    note = _run_size_note(post)
    assert "web 0.0012, code 0.0031, math 0.0000" in note
    assert note.endswith("mean correlation across domains 0.60 (sd > 0)")  # not diluted by math
    assert _run_size_note(xr.Dataset(coords={"domain": ["web", "code", "math"]})) == ""


def test_data_the_law_cannot_fit_are_refused_before_compiling(tmp_path):
    """An evaluation set that is not a training domain under BiMix: refused at once, naming
    --exclude-domain and --law loglinear, before any 'compiling the model' stage."""
    from bimix_bayes.data.simulate import simulate_default

    frame = simulate_default(seed=0).to_long()
    extra = frame[frame["domain"] == "web"].assign(domain="heldout", loss=lambda f: f["loss"] + 1)
    path = tmp_path / "extra.csv"
    pd.concat([frame, extra]).to_csv(path, index=False)
    res = run("fit", str(path), "--out", str(tmp_path / "fit.nc"))
    assert res.returncode == 1
    assert "--exclude-domain heldout" in res.stderr and "--law loglinear" in res.stderr
    assert "compiling" not in res.stderr and "sampling" not in res.stderr
    assert not (tmp_path / "fit.nc").exists()
