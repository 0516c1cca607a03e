"""What every ``bimix`` command shares: the exit codes, the data options, quiet library warnings."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

from bimix_bayes.cli import app, data_tools, proxy
from bimix_bayes.cli.errors import (
    EXIT_BUG,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
)
from bimix_bayes.cli.options import DataOptions
from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.table import MixtureData
from tests.test_cli import run


# ------------------------------------------------------------------------------ exit codes
@pytest.mark.parametrize(
    "args",
    [
        ["study", "--corpora", "/nonexistent/corpora", "--out", "OUT"],
        ["train", "--corpora", "/nonexistent/corpora", "--mixture", "a=1", "--out", "OUT"],
        ["verify", "--study", "/nonexistent/study", "--corpora", "/nonexistent", "--out", "OUT"],
    ],
)
def test_proxy_command_with_bad_input_exits_1(args, tmp_path):
    """A proxy command whose input folder is missing: a data error (1), one message, no
    traceback, nothing written."""
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    res = run(*args)
    assert res.returncode == EXIT_ERROR, res.stderr
    assert res.stderr.startswith("bimix: error: ") and "/nonexistent" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_proxy_usage_errors_exit_2(tmp_path, capsys):
    """Found from the command line alone: argparse errors and an unknown --domains name."""
    res = run("study", "--corpora", "c", "--out", "o", "--workers", "0")
    assert res.returncode == EXIT_USAGE and "--workers" in res.stderr
    parser = argparse.ArgumentParser(prog="bimix")
    proxy.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["corpora", "--out", str(tmp_path), "--domains", "klingon"])
    assert args.func(args) == EXIT_USAGE
    assert "unknown domain" in capsys.readouterr().err


def test_contradictory_data_options_exit_2(capsys):
    """--group without --group-col is bad usage, caught before the file is read."""
    with pytest.raises(SystemExit) as exc:
        app.main(["fit-ls", "/nonexistent/runs.csv", "--group", "70M"])
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--group needs --group-col" in err and "no such file" not in err


def _boom(args: argparse.Namespace) -> int:
    raise RuntimeError("unexpected state")


def test_internal_error_exits_3_with_a_bug_hint(monkeypatch, capsys, tmp_path):
    """An exception that is not a user error is a bug: exit 3, a short hint, no traceback."""
    monkeypatch.setattr(data_tools, "cmd_simulate", _boom)
    assert app.main(["simulate", "--out", str(tmp_path / "s.csv")]) == EXIT_BUG
    err = capsys.readouterr().err
    assert err.startswith("bimix: internal error: RuntimeError: unexpected state")
    assert "this is a bug, please report it" in err and "--debug" in err
    assert "Traceback" not in err
    assert app.main(["--debug", "simulate", "--out", str(tmp_path / "s.csv")]) == EXIT_BUG
    assert "Traceback" in capsys.readouterr().err


def test_an_unwritable_out_file_is_refused_before_the_command_runs(monkeypatch, capsys, tmp_path):
    """Every --out file is checked first (predict printed its whole table, then failed)."""
    ran = []
    monkeypatch.setattr(data_tools, "cmd_simulate", lambda args: ran.append(args) or 0)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert app.main(["simulate", "--out", str(blocker / "s.csv")]) == EXIT_ERROR
    assert not ran
    assert "checked before any work was done" in capsys.readouterr().err
    assert app.main(["simulate", "--out", str(tmp_path / "s.csv")]) == 0 and ran


def _interrupted(args: argparse.Namespace) -> int:
    raise KeyboardInterrupt


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys, tmp_path):
    """Ctrl-C: exit 130 (128 + SIGINT, what shells report), one line, no traceback."""
    monkeypatch.setattr(data_tools, "cmd_simulate", _interrupted)
    assert app.main(["simulate", "--out", str(tmp_path / "s.csv")]) == EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    assert err.strip() == "bimix: interrupted; no output file is left half-written"
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ValueError("bad value"), EXIT_ERROR),
        (FileNotFoundError("missing.csv"), EXIT_ERROR),
        (UsageError("--a contradicts --b"), EXIT_USAGE),
        (KeyError("x"), EXIT_BUG),
    ],
)
def test_errors_map_to_their_exit_codes(error, code, monkeypatch, capsys, tmp_path):
    """User errors (ValueError, OSError...) stay 1, late usage errors 2, anything else 3."""

    def raise_it(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(data_tools, "cmd_simulate", raise_it)
    assert app.main(["simulate", "--out", str(tmp_path / "s.csv")]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bimix: ")


# ------------------------------------------------------------------------------ quiet output
def test_library_future_warning_is_not_shown(tmp_path):
    """ArviZ warns at import (once a day per cache folder; a fresh folder makes it warn):
    `bimix summary` imports ArviZ before it finds the file is missing, and stderr holds only
    the error."""
    res = run("summary", str(tmp_path / "none.nc"), env={"XDG_CACHE_HOME": str(tmp_path)})
    assert res.returncode == EXIT_ERROR
    assert res.stderr.splitlines() == [f"bimix: error: {tmp_path / 'none.nc'}: no such file"]


# ------------------------------------------------------------------------------ data options
def test_data_options_round_trip(sim_data, tmp_path):
    """Parser -> DataOptions -> load_data's keywords -> the same data as load_data itself."""
    parser = argparse.ArgumentParser(prog="bimix")
    DataOptions.add_arguments(parser)
    path = tmp_path / "sim.csv"
    sim_data.to_long().to_csv(path, index=False)
    argv = [str(path), "--layout", "long", "--exclude-domain", "math", "--missing", "drop"]
    argv += ["--zero-policy", "epsilon", "--epsilon", "0.001", "--drop-repeated-checkpoints"]
    opts = DataOptions.from_args(parser.parse_args(argv))
    assert opts == DataOptions(
        layout="long",
        exclude_domains=("math",),
        missing_policy="drop",
        zero_policy="epsilon",
        epsilon=0.001,
        drop_repeated_checkpoints=True,
    )
    assert DataOptions.from_args(parser.parse_args([str(path)])) == DataOptions()
    data = opts.load(path)
    assert isinstance(data, MixtureData) and "math" not in data.domains
    direct = load_data(path, **opts.to_kwargs())
    assert data.observations.equals(direct.observations)
    with pytest.raises(AttributeError):
        opts.layout = "wide"  # frozen


def test_data_options_match_load_data():
    """Every field is a keyword of load_data, with load_data's default where it names one
    (the others go through its ``**options``); every keyword load_data names is a field (so
    that the command line can set it)."""
    params = inspect.signature(load_data).parameters
    takes_options = any(p.kind is p.VAR_KEYWORD for p in params.values())
    fields = DataOptions().to_kwargs()
    for name, value in fields.items():
        if name not in params:
            assert takes_options, name
            continue
        default = params[name].default
        assert value == (tuple(default) if isinstance(default, list) else default), name
    named = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
    assert [n for n in named if n not in fields] == []


def test_run_name_pattern_reaches_load_data():
    """--run-name-pattern is a data option (TensorBoard and MLflow logs), checked to compile."""
    parser = argparse.ArgumentParser(prog="bimix")
    DataOptions.add_arguments(parser)
    args = parser.parse_args(["logs", "--run-name-pattern", r"web(?P<web>[\d.]+)"])
    assert DataOptions.from_args(args).to_kwargs()["run_name_pattern"] == r"web(?P<web>[\d.]+)"
    with pytest.raises(SystemExit):
        parser.parse_args(["logs", "--run-name-pattern", "web("])


def test_run_name_pattern_reads_a_tensorboard_folder(tmp_path, capsys):
    """`bimix fit-ls LOGS --run-name-pattern REGEX`: the shares come from the run names."""
    pytest.importorskip("tbparse")
    writer = pytest.importorskip("tensorboard.summary").Writer
    from tests.test_log_loaders import SHARES, write_tb

    names = {f"web{int(w * 100)}_code{int(100 - w * 100)}": w for w in SHARES.values()}
    root = write_tb(tmp_path / "tb", writer, names, files="none")
    pattern = r"web(?P<web>\d+)_code(?P<code>\d+)"
    argv = ["fit-ls", str(root), "--run-name-pattern", pattern, "--bootstrap", "0"]
    assert app.main(argv) == 0
    assert "3 runs" in capsys.readouterr().out


def test_report_reads_holdout_with_the_data_options(tmp_path):
    """`bimix report` has no DATA: its data options read --holdout."""
    out = str(tmp_path / "r.html")
    argv = ["report", "fit.nc", "--out", out, "--holdout", "h.csv", "--exclude-domain", "web"]
    args = app.build_parser().parse_args(argv)
    assert args.holdout == Path("h.csv") and not hasattr(args, "data")
    assert DataOptions.from_args(args).exclude_domains == ("web",)


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "fit.nc", "--steps", "STEP"],
        ["rank", "fit.nc", "--step", "STEP", "--candidates", "c.csv"],
        ["optimize", "fit.nc", "--step", "STEP"],
        ["next", "fit.nc", "--step", "STEP"],
        ["report", "fit.nc", "--out", "r.html", "--step", "STEP"],
    ],
)
def test_steps_and_tokens_take_the_suffixes_model_sizes_take(argv, capsys):
    """`--step 40B` is 4e10 tokens, as `--size 7B` is 7e9 parameters (it was refused)."""
    parser = app.build_parser()
    for text, value in (("40B", 4e10), ("4e10", 4e10), ("20k", 2e4)):
        args = parser.parse_args([text if a == "STEP" else a for a in argv])
        got = args.steps[0] if argv[0] == "predict" else args.step
        assert got == value
    with pytest.raises(SystemExit):
        parser.parse_args(["40X" if a == "STEP" else a for a in argv])
    assert "such as 4e10 or 40B" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "data.csv", "--out", "f.nc", "--min-step", "STEP"],
        ["verify", "--study", "s", "--corpora", "c", "--out", "o", "--min-step", "STEP"],
    ],
)
def test_min_step_takes_step_suffixes_and_zero(argv, capsys):
    """`--min-step 2k` leaves out checkpoints before step 2000 (it took plain numbers only)."""
    parser = app.build_parser()
    for text, value in (("2k", 2e3), ("500", 500.0), ("0", 0.0)):
        args = parser.parse_args([text if a == "STEP" else a for a in argv])
        assert args.min_step == value
    with pytest.raises(SystemExit):
        parser.parse_args(["-5" if a == "STEP" else a for a in argv])
    assert "non-negative" in capsys.readouterr().err
