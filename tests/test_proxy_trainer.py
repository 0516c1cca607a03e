"""CI-sized smoke runs through the real proxy trainer (tiny model, a few dozen steps)."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.cli.proxy import add_commands
from bimix_bayes.data.loaders import load_data, read_mixtures
from bimix_bayes.proxy.corpora import Fetched, Source, build_corpora
from bimix_bayes.proxy.study import design_mixtures, run_study, spread_mixtures
from bimix_bayes.proxy.tinygpt import ModelConfig
from bimix_bayes.proxy.trainer import TrainConfig, log_checkpoints, parse_mixture, train_run

WORDS = ["the", "a", "of", "and", "to", "in", "is", "was", "her", "she", "he", "said", "not",
         "be", "with", "for", "as", "at", "but", "his"]  # fmt: skip


def _prose(root: Path):
    rng = random.Random(1)
    for i in range(40):
        yield f"p{i}", " ".join(rng.choice(WORDS) for _ in range(120)).capitalize() + "."


def _code(root: Path):
    rng = random.Random(2)
    for i in range(40):
        lines = [f"def f{i}_{j}(x):\n    return x * {rng.randint(0, 99)}\n" for j in range(12)]
        yield f"c{i}.py", "\n".join(lines)


SOURCES = (
    Source("prose", "debian", "fake-prose", "CC0-1.0", "random words", _prose),
    Source("code", "debian", "fake-code", "CC0-1.0", "tiny functions", _code),
)
TINY = TrainConfig(
    steps=30,
    batch_size=8,
    lr=1e-2,
    warmup=5,
    n_checkpoints=4,
    first_checkpoint=6,
    eval_windows=8,
    model=ModelConfig(n_layer=1, d_model=16, n_head=2, context=32),
)
MIXTURES = pd.DataFrame(
    {"prose": [0.25, 0.75], "code": [0.75, 0.25]}, index=pd.Index(["mostly_code", "mostly_prose"])
)


def _fetch(source: Source, work: Path) -> Fetched:
    archive = work / f"{source.package}.deb"
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(source.package.encode())
    return Fetched(work, "1.0", archive)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpora")
    build_corpora(out, sources=SOURCES, min_bytes=0, fetch=_fetch, log=lambda m: None)
    return out


# ------------------------------------------------------------------------------ no torch needed
def test_checkpoints_are_log_spaced() -> None:
    steps = log_checkpoints(3000, 10)
    assert steps[0] == 600 and steps[-1] == 3000 and len(steps) == 10
    ratios = np.diff(np.log(steps))
    assert np.allclose(ratios, ratios.mean(), atol=0.01)
    assert log_checkpoints(5, 10, 1) == [1, 2, 3, 4, 5]
    assert log_checkpoints(100, 1) == [100]


def test_parse_mixture() -> None:
    assert parse_mixture("a=0.3, b=0.7") == {"a": 0.3, "b": 0.7}
    assert parse_mixture("a=1,b=3") == {"a": 0.25, "b": 0.75}
    for bad, msg in [
        ("a", "NAME=SHARE"),
        ("a=x", "not a number"),
        ("a=-1,b=2", ">= 0"),
        ("a=0.3,b=0.3", "sum to 0.6"),
        ("a=0.5,a=0.5", "twice"),
        ("a=0", "sum to 0"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_mixture(bad)


def test_spread_design_covers_low_and_high() -> None:
    for n_domains, n in [(5, 3), (4, 3), (2, 2), (7, 3)]:
        domains = [f"d{i}" for i in range(n_domains)]
        mix = spread_mixtures(domains, n, low=0.05)
        assert np.allclose(mix.sum(axis=1), 1)
        assert (mix.max() > 1 / n_domains).all() and (mix.min() == 0.05).all()
        assert not mix.duplicated().any()
    with pytest.raises(ValueError, match="does not fit"):
        spread_mixtures(["a", "b"], 2, low=0.6)


def test_design_has_uniform_entropy_and_spread(corpora: Path) -> None:
    mixtures, table = design_mixtures(corpora, measures=("se", "ce"), n_spread=2)
    assert list(mixtures.index) == ["uniform", "entropy_se", "entropy_ce", "spread_1", "spread_2"]
    assert np.allclose(mixtures.sum(axis=1), 1) and (mixtures > 0).all().all()
    assert table is not None and set(table.index) == {"prose", "code"}


# ------------------------------------------------------------------------------ torch smoke runs
def test_smoke_study_loads_and_reproduces(corpora: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    logs: list[str] = []
    summary = run_study(
        corpora, tmp_path, config=TINY, mixtures=MIXTURES, workers=1, seed=3, log=logs.append
    )
    paths = summary["paths"]
    data = load_data(paths["losses"])  # the canonical long layout, no conversion
    assert set(data.domains) == {"prose", "code"} and data.n_runs == 2
    data.check_design()
    losses = data.observations["loss"].to_numpy()
    assert np.isfinite(losses).all() and (losses > 0).all() and losses.max() < 8
    assert sorted(data.observations["step"].unique()) == TINY.checkpoints() == [6, 10, 18, 30]
    mixes = read_mixtures(paths["mixtures"])
    assert mixes.loc["mostly_code", "code"] == pytest.approx(0.75)
    meta = json.loads(paths["runs"].read_text())
    run = meta["runs"][0]
    assert run["seed"] == 3 and run["config"]["steps"] == 30 and run["versions"]["torch"]
    assert run["wall_seconds"] > 0 and run["mixture"] == {"prose": 0.25, "code": 0.75}
    # the loss falls from the first to the last checkpoint
    first = data.observations.groupby(["run", "domain"])["loss"].first()
    last = data.observations.groupby(["run", "domain"])["loss"].last()
    assert (last < first).all()

    # same seed: bit-identical (run with 2 spawned workers, one thread each); finished runs
    # of an identical study are reused
    again = run_study(
        corpora, tmp_path / "again", config=TINY, mixtures=MIXTURES, workers=2, seed=3
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(paths["losses"]), pd.read_csv(again["paths"]["losses"]), check_exact=True
    )
    reused = run_study(corpora, tmp_path, config=TINY, mixtures=MIXTURES, workers=1, seed=3)
    assert reused["reused"] == ["mostly_code", "mostly_prose"]
    other = train_run(corpora, MIXTURES.loc["mostly_code"].to_dict(), TINY, seed=4, run="x")
    first_run = summary["results"][0].rows
    assert not np.allclose(other.rows["loss"], first_run["loss"])
    assert (other.rows["step"] == first_run["step"]).all()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bimix")
    add_commands(parser.add_subparsers(dest="command"))
    return parser


TINY_ARGS = [
    "--steps", "20", "--checkpoints", "3", "--first-checkpoint", "5", "--batch-size", "4",
    "--layers", "1", "--width", "16", "--heads", "2", "--context", "16", "--eval-windows", "4",
]  # fmt: skip


def test_cli_train(corpora: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("torch")
    args = _parser().parse_args(
        ["train", "--corpora", str(corpora), "--mixture", "prose=0.5,code=0.5",
         "--out", str(tmp_path), "--name", "half", *TINY_ARGS]
    )  # fmt: skip
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "half" in captured.out and "step 20/20" in captured.err
    table = pd.read_csv(tmp_path / "losses.csv")
    assert list(table.columns) == ["run", "step", "domain", "loss", "p_prose", "p_code"]
    assert sorted(table["step"].unique()) == [5, 10, 20]


def test_cli_bad_input_exits_1_and_bad_usage_2(corpora: Path, tmp_path: Path, capsys) -> None:
    args = _parser().parse_args(
        ["train", "--corpora", str(corpora), "--mixture", "poetry=1", "--out", str(tmp_path)]
    )
    assert args.func(args) == 1
    assert "poetry" in capsys.readouterr().err
    args = _parser().parse_args(["study", "--corpora", str(tmp_path), "--out", str(tmp_path)])
    assert args.func(args) == 1
    assert "bimix corpora" in capsys.readouterr().err
    bad_design = tmp_path / "design.csv"
    bad_design.write_text("mixture,prose,verse\na,0.5,0.5\n")
    args = _parser().parse_args(
        ["study", "--corpora", str(corpora), "--out", str(tmp_path), "--mixtures",
         str(bad_design), *TINY_ARGS]
    )  # fmt: skip
    assert args.func(args) == 1
    assert "verse" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["train", "--corpora", "c", "--mixture", "a=0.2", "--out", "o"])
    assert exc.value.code == 2
