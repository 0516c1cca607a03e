"""Long commands say what they are doing on stderr (issue 14), and ``--quiet`` silences them."""

from __future__ import annotations

import io

import pytest

from bimix_bayes.cli.app import build_parser
from bimix_bayes.cli.progress import Progress, backtest_progress, duration
from tests import test_cli
from tests.test_cli import run

#: A study written by `bimix simulate` (the fixture of tests/test_cli.py, one per module).
sim_csv = test_cli.sim_csv


# ------------------------------------------------------------------------------ the helper
def test_stage_lines_name_the_command_and_quiet_silences_them():
    err = io.StringIO()
    Progress("fit", stream=err)("sampling...")
    Progress("fit", stream=err, quiet=True)("not shown")
    assert err.getvalue() == "bimix: fit: sampling...\n"


def test_timed_says_before_and_after_but_not_after_an_error():
    err = io.StringIO()
    progress = Progress("report", stream=err)
    with progress.timed("figures"):
        pass
    with pytest.raises(RuntimeError), progress.timed("decision"):
        raise RuntimeError("boom")
    lines = err.getvalue().splitlines()
    assert lines[:2] == ["bimix: report: figures...", "bimix: report: figures: done in 0.0 s"]
    assert lines[2:] == ["bimix: report: decision..."]


@pytest.mark.parametrize("tty", [False, True])
def test_counted_loop_draws_a_bar_only_in_a_terminal(tty):
    err = io.StringIO()
    step = Progress("fit-ls", stream=err, tty=tty).counted("bootstrap", "resamples", done="ok")
    for k in range(4):
        step(k, 3)
    text = err.getvalue()
    assert text.startswith("bimix: fit-ls: bootstrap...\n")
    assert text.rstrip("\n").splitlines()[-1].startswith("bimix: fit-ls: ok in ")
    assert ("\r" in text) is tty and ("3/3" in text) is tty
    if tty:  # the bar's line is ended before the next stage line
        assert "3/3\nbimix: fit-ls: ok in" in text


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (0.04, 9.94, 31.2, 119.4, 330.0)] == [
        "0.0 s",
        "9.9 s",
        "31 s",
        "119 s",
        "5 min 30 s",
    ]


def test_backtest_lines_count_splits_and_say_each_start(sim_data):
    err = io.StringIO()
    progress = Progress("report", stream=err)
    line = backtest_progress(progress, sim_data, "last-checkpoint", prefix="backtest: ")
    assert err.getvalue().splitlines() == [
        "bimix: report: backtest: split 1 of 1: fitting bayes (compiling the model first, ~20 s)..."
    ]
    line("  last-checkpoint split 0: bayes fitted and scored in 31.0 s (diagnostics FAILED)")
    line("  last-checkpoint split 0: ls fitted and scored in 1.0 s")
    line("  an unexpected line")  # more lines than fits: passed on as they are
    assert err.getvalue().splitlines()[1:] == [
        "bimix: report: backtest: split 1 of 1: bayes fitted and scored in 31.0 s (diagnostics "
        "FAILED)",
        "bimix: report: backtest: split 1 of 1: fitting ls...",
        "bimix: report: backtest: split 1 of 1: ls fitted and scored in 1.0 s",
        "bimix: report: backtest: an unexpected line",
    ]
    assert progress.model_compiled  # a second backtest does not announce a compile
    backtest_progress(progress, sim_data, "last-checkpoint")
    assert err.getvalue().splitlines()[-1] == "bimix: report: split 1 of 1: fitting bayes..."


def test_backtest_lines_refuse_an_impossible_protocol_before_any_line(sim_data):
    err = io.StringIO()
    with pytest.raises(ValueError, match="needs more than 40 runs"):
        backtest_progress(Progress("backtest", stream=err), sim_data, "holdout-mixtures:40")
    assert err.getvalue() == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--quiet", "backtest", "x.csv", "--protocol", "last-checkpoint"],
        ["backtest", "x.csv", "--protocol", "last-checkpoint", "-q"],
        ["-q", "fit-ls", "x.csv"],
        ["report", "fit.nc", "--out", "r.html", "--quiet"],
    ],
)
def test_quiet_goes_before_or_after_the_command(argv):
    assert build_parser().parse_args(argv).quiet is True
    plain = [a for a in argv if a not in ("-q", "--quiet")]
    assert build_parser().parse_args(plain).quiet is False
    assert Progress.of(build_parser().parse_args(argv)).command == plain[0]


# ------------------------------------------------------------------------------ commands
def test_fit_ls_says_its_bootstrap(sim_csv):
    """Not a terminal (captured): stage lines on stderr, stdout unchanged, none with --quiet."""
    args = ["fit-ls", str(sim_csv), "--bootstrap", "20"]
    loud = run(*args)
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert lines[0] == "bimix: fit-ls: bootstrap: refitting 20 resamples of whole runs..."
    assert lines[1].startswith("bimix: fit-ls: bootstrap done in ") and lines[1].endswith(" s")
    assert "\r" not in loud.stderr  # no bar outside a terminal
    quiet = run(*args, "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout == loud.stdout


def test_backtest_says_each_split(sim_csv):
    args = ["--protocol", "holdout-mixtures:8", "--splits", "2", "--method", "ls"]
    args += ["--bootstrap", "20"]
    loud = run("backtest", str(sim_csv), *args)
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert lines[0] == "bimix: backtest: split 1 of 2: fitting ls..."
    assert lines[1].startswith("bimix: backtest: split 1 of 2: ls fitted and scored in ")
    assert lines[2] == "bimix: backtest: split 2 of 2: fitting ls..."
    assert lines[3].startswith("bimix: backtest: split 2 of 2: ls fitted and scored in ")
    assert lines[4].startswith("bimix: backtest: done in ") and lines[4].endswith("(2 fits)")
    assert len(lines) == 5
    quiet = run("--quiet", "backtest", str(sim_csv), *args)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout == loud.stdout


def test_errors_still_print_with_quiet(tmp_path):
    res = run("--quiet", "fit-ls", str(tmp_path / "missing.csv"))
    assert res.returncode == 1 and res.stderr.startswith("bimix: error: ")
