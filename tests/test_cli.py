"""The ``bimix`` command, through the installed console entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BIMIX = Path(sys.executable).with_name("bimix")


def run(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``bimix`` executable (``env``: variables added to this process's)."""
    if not BIMIX.exists():  # pragma: no cover - the package is installed by `make test`
        pytest.fail(f"console script not found at {BIMIX}; install the package (make test)")
    return subprocess.run(
        [str(BIMIX), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def sim_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "sim.csv"
    res = run("simulate", "--out", str(path), "--seed", "3")
    assert res.returncode == 0, res.stderr
    return path


@pytest.mark.parametrize("command", [[], ["fit-ls"], ["simulate"], ["demo"], ["entropy"]])
def test_help_everywhere(command):
    """Every command has --help and exits 0."""
    res = run(*command, "--help")
    assert res.returncode == 0
    assert "usage: bimix" in res.stdout


def test_help_documents_the_exit_codes():
    """`bimix --help` ends with the exit-code table, the internal-error code included."""
    res = run("--help")
    text = " ".join(res.stdout.split())
    for code in ("0 success", "1 bad input", "2 bad usage", "3 internal error", "130 interrupted"):
        assert code in text, code


def test_simulate_writes_a_long_csv(sim_csv):
    """`bimix simulate` writes data the loader reads back."""
    table = pd.read_csv(sim_csv)
    assert {"run", "step", "domain", "loss", "p_web"} <= set(table.columns)
    assert table["run"].nunique() == 12


def test_fit_ls_prints_table_and_writes_files(sim_csv, tmp_path):
    """`bimix fit-ls` prints the per-domain table and writes CSV and JSON."""
    res = run("fit-ls", str(sim_csv), "--bootstrap", "20", "--out", str(tmp_path / "t.json"))
    assert res.returncode == 0, res.stderr
    for word in ("alpha", "beta", "R2(log)", "MRE", "web", "math", "mean R2(log)"):
        assert word in res.stdout
    doc = json.loads((tmp_path / "t.json").read_text())
    assert len(doc["domains"]) == 5 and doc["n_bootstrap"] == 20
    res = run("fit-ls", str(sim_csv), "--bootstrap", "0", "--out", str(tmp_path / "t.csv"))
    assert res.returncode == 0, res.stderr
    assert "[" not in res.stdout.split("law:")[1]  # no intervals without a bootstrap
    assert len(pd.read_csv(tmp_path / "t.csv")) == 5


def test_data_error_exits_1_with_one_line(tmp_path, sim_csv):
    """Bad data: exit 1, one clear line on stderr naming the problem, no traceback."""
    table = pd.read_csv(sim_csv)
    table.loc[7, "loss"] = -1.0
    bad = tmp_path / "bad.csv"
    table.to_csv(bad, index=False)
    res = run("fit-ls", str(bad))
    assert res.returncode == 1
    assert "line 9" in res.stderr and "<= 0" in res.stderr
    assert "Traceback" not in res.stderr
    assert len([x for x in res.stderr.splitlines() if x.startswith("bimix: error")]) == 1
    debug = run("--debug", "fit-ls", str(bad))
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_missing_file_exits_1(tmp_path):
    """A path that does not exist is a data error, not a crash."""
    res = run("fit-ls", str(tmp_path / "nope.csv"))
    assert res.returncode == 1
    assert "no such file" in res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["fit-ls"],
        ["fit-ls", "x.csv", "--interval", "1.5"],
        ["fit-ls", "x.csv", "--bootstrap", "-3"],
        ["simulate"],
        ["simulate", "--out", "x.csv", "--checkpoints", "2"],
        ["fit-ls", "x.csv", "--group", "70M"],  # contradictory: --group needs --group-col
        ["nonsense"],
    ],
)
def test_bad_usage_exits_2(args):
    """Bad usage: exit 2 with argparse's message."""
    res = run(*args)
    assert res.returncode == 2
    assert "error:" in res.stderr


def test_notes_are_printed(tmp_path, sim_csv):
    """What the loader changes is reported on stderr as a note, and the command still works."""
    table = pd.read_csv(sim_csv)
    table = pd.concat([table, table.iloc[[0]]])  # an exact duplicate row
    dup = tmp_path / "dup.csv"
    table.to_csv(dup, index=False)
    res = run("fit-ls", str(dup), "--bootstrap", "0")
    assert res.returncode == 0, res.stderr
    assert "bimix: note:" in res.stderr and "duplicate" in res.stderr


def test_synthetic_demo_runs_and_says_data_are_synthetic(tmp_path):
    """The synthetic demo runs end to end and says plainly that its data are synthetic."""
    res = run("demo", "--synthetic", "--out-dir", str(tmp_path / "demo"))
    assert res.returncode == 0, res.stderr
    assert "SYNTHETIC" in res.stdout
    assert (tmp_path / "demo" / "least_squares.json").exists()


@pytest.mark.slow  # two Bayesian fits of 20 runs and a backtest: minutes (make test-slow)
def test_demo_runs_the_pipeline_on_the_embedded_study(tmp_path):
    """The README's main job: on the embedded real study it fits, backtests, forecasts, decides,
    ranks and writes the report, and says what the data is."""
    # 6.6 min on 2 busy cores (a retried Bayesian fit in the backtest); CI has 90 minutes
    res = run("demo", "--out-dir", str(tmp_path / "demo"), timeout=1800)
    assert res.returncode == 0, res.stderr
    for text in (
        "DEFAULT DATA: REAL loss curves",
        "least squares",
        "how far to trust it",
        "P(recommended beats baseline)",
        "ranked",
    ):
        assert text in res.stdout, text
    for name in ("report.html", "fit.nc", "recommendation.json", "ranking.csv", "forecast.csv"):
        assert (tmp_path / "demo" / name).is_file(), name
