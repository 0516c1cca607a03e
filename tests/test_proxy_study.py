"""The study design of issue 17: space-filling mixtures, replicate seeds, lr schedule."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.cli.proxy import add_commands
from bimix_bayes.data.loaders import load_data
from bimix_bayes.proxy.corpora import build_corpora
from bimix_bayes.proxy.study import (
    default_replicate_mixtures,
    design_mixtures,
    design_settings,
    lr_schedule,
    replicate_runs,
    run_study,
    space_filling_mixtures,
)
from tests.test_proxy_trainer import SOURCES, TINY, _fetch

DOMAINS = ["python", "licenses", "wordnet", "austen", "pydoc"]


def _min_pairwise(values: np.ndarray) -> float:
    d = np.sqrt(((values[:, None] - values[None]) ** 2).sum(-1))
    return float(d[np.triu_indices(len(values), 1)].min())


# ------------------------------------------------------------------------------ no torch needed
def test_space_filling_is_deterministic_valid_and_spread() -> None:
    a = space_filling_mixtures(DOMAINS, 7, min_share=0.03, seed=0)
    b = space_filling_mixtures(DOMAINS, 7, min_share=0.03, seed=0)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a.index) == [f"fill_{k}" for k in range(1, 8)] and list(a.columns) == DOMAINS
    assert np.allclose(a.sum(axis=1), 1, atol=1e-12)
    assert (a.to_numpy() >= 0.03 - 1e-12).all()
    assert not a.round(6).duplicated().any()
    other = space_filling_mixtures(DOMAINS, 7, min_share=0.03, seed=1)
    assert not np.allclose(a.to_numpy(), other.to_numpy())
    # more spread than random Dirichlet(1) draws of the same size (mapped the same way)
    ours = _min_pairwise(a.to_numpy())
    rng = np.random.default_rng(123)
    random_min = [
        _min_pairwise(0.03 + (1 - 5 * 0.03) * rng.dirichlet(np.ones(5), size=7)) for _ in range(200)
    ]
    assert ours > np.max(random_min)
    assert ours > 2 * np.median(random_min)


def test_space_filling_avoids_given_mixtures_and_checks_input() -> None:
    uniform = pd.DataFrame([[0.2] * 5], columns=DOMAINS)
    mix = space_filling_mixtures(DOMAINS, 5, min_share=0.05, seed=2, avoid=uniform)
    assert (mix.to_numpy() >= 0.05 - 1e-12).all()
    assert np.sqrt(((mix.to_numpy() - 0.2) ** 2).sum(axis=1)).min() > 0.2
    assert space_filling_mixtures(DOMAINS, 0).empty
    with pytest.raises(ValueError, match="min_share"):
        space_filling_mixtures(DOMAINS, 3, min_share=0.2)
    with pytest.raises(ValueError, match="at least 2 domains"):
        space_filling_mixtures(["a"], 3)


def test_replicate_runs_names_and_seeds() -> None:
    mix = pd.DataFrame({"a": [0.5, 0.2, 0.7], "b": [0.5, 0.8, 0.3]}, index=["uniform", "m", "n"])
    runs = replicate_runs(mix, {"uniform": 3, "n": 2}, seed=5)
    assert list(runs.index) == ["uniform", "uniform_s1", "uniform_s2", "m", "n", "n_s1"]
    assert list(runs["seed"]) == [5, 6, 7, 5, 5, 6]
    assert list(runs["mixture"]) == ["uniform"] * 3 + ["m", "n", "n"]
    assert list(replicate_runs(mix).index) == ["uniform", "m", "n"]
    with pytest.raises(ValueError, match="not in the design"):
        replicate_runs(mix, {"zzz": 2})
    clash = pd.DataFrame({"a": [0.5, 0.2], "b": [0.5, 0.8]}, index=["m", "m_s1"])
    with pytest.raises(ValueError, match="clash"):
        replicate_runs(clash, {"m": 2})


def test_default_replicates_start_at_uniform_and_spread_out() -> None:
    fill = space_filling_mixtures(DOMAINS, 6, seed=0)
    uniform = pd.DataFrame([[0.2] * 5], index=["uniform"], columns=DOMAINS)
    design = pd.concat([uniform, fill])
    chosen = default_replicate_mixtures(design, 4)
    assert chosen[0] == "uniform" and len(set(chosen)) == 4
    assert default_replicate_mixtures(design, 4) == chosen
    assert default_replicate_mixtures(design, 0) == []


def test_lr_schedule_matches_the_trainer() -> None:
    schedule = lr_schedule(TINY)
    assert schedule["kind"] == "linear-warmup-constant"
    assert schedule["warmup"] == TINY.warmup and schedule["lr"] == TINY.lr


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bimix")
    add_commands(parser.add_subparsers(dest="command"))
    return parser


def test_design_settings_are_the_defaults_of_design_mixtures(tmp_path: Path) -> None:
    """One set of defaults; run_study refuses a setting design_mixtures does not take, before
    any work."""
    assert design_settings(low=0.1) == {
        "measures": ("se", "ce", "je", "vne"), "temperature": 1.0, "n_spread": 3, "low": 0.1,
        "seed": 0, "n_space_filling": 0, "min_share": 0.03,
    }  # fmt: skip
    with pytest.raises(TypeError, match=r"unknown design setting\(s\) \['n_sprad'\]"):
        run_study(tmp_path / "none", tmp_path / "out", n_sprad=2)
    assert not (tmp_path / "out").exists()


def test_cli_study_options() -> None:
    args = _parser().parse_args(["study", "--corpora", "c", "--out", "o"])
    assert args.design == "spread" and args.spread is None and args.replicates == 1
    assert args.replicate_mixtures is None and args.min_share == 0.03
    args = _parser().parse_args(
        ["study", "--corpora", "c", "--out", "o", "--design", "space-filling",
         "--n-space-filling", "5", "--replicates", "3", "--replicate-mixtures", "uniform,fill_1",
         "--min-share", "0.04"]
    )  # fmt: skip
    assert args.design == "space-filling" and args.n_space_filling == 5
    assert args.replicates == 3 and args.replicate_mixtures == ["uniform", "fill_1"]
    assert args.min_share == 0.04


# ------------------------------------------------------------------------------ torch smoke runs
@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpora")
    build_corpora(out, sources=SOURCES, min_bytes=0, fetch=_fetch, log=lambda m: None)
    return out


def test_design_with_space_filling(corpora: Path) -> None:
    mixtures, _ = design_mixtures(
        corpora, measures=("se",), n_spread=0, n_space_filling=3, min_share=0.1
    )
    assert list(mixtures.index) == ["uniform", "entropy_se", "fill_1", "fill_2", "fill_3"]
    assert np.allclose(mixtures.sum(axis=1), 1) and (mixtures >= 0.1 - 1e-12).all().all()


def test_study_with_replicate_seeds(corpora: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    design = pd.DataFrame(
        {"prose": [0.5, 0.25], "code": [0.5, 0.75]}, index=pd.Index(["uniform", "mostly_code"])
    )
    summary = run_study(
        corpora, tmp_path, config=TINY, mixtures=design, workers=1, seed=3,
        replicates={"uniform": 3},
    )  # fmt: skip
    names = [r.meta["run"] for r in summary["results"]]
    assert names == ["uniform", "uniform_s1", "uniform_s2", "mostly_code"]
    meta = json.loads(summary["paths"]["runs"].read_text())
    assert [r["seed"] for r in meta["runs"]] == [3, 4, 5, 3]
    assert [r["design_mixture"] for r in meta["runs"]] == ["uniform"] * 3 + ["mostly_code"]
    assert meta["seeds"]["uniform_s2"] == 5 and meta["replicates"] == {"uniform": 3}
    assert meta["design"] == {
        "n_spread": 3, "low": 0.05, "temperature": 1.0, "n_space_filling": 0, "min_share": 0.03
    }  # fmt: skip
    assert meta["schedule"] == {
        "kind": "linear-warmup-constant", "warmup": TINY.warmup, "lr": TINY.lr, "decay": None
    }  # fmt: skip
    table = pd.read_csv(summary["paths"]["losses"])
    assert {"mixture", "seed"} <= set(table.columns)
    assert set(table.loc[table["run"] == "uniform_s1", "seed"]) == {4}
    assert set(table.loc[table["run"] == "uniform_s2", "mixture"]) == {"uniform"}
    data = load_data(summary["paths"]["losses"])  # extra columns do not break loading
    assert data.n_runs == 4 and set(data.domains) == {"prose", "code"}
    # the replicates differ by their seed only: same steps, different losses
    by_run = {r.meta["run"]: r.rows for r in summary["results"]}
    assert (by_run["uniform"]["step"] == by_run["uniform_s1"]["step"]).all()
    assert not np.allclose(by_run["uniform"]["loss"], by_run["uniform_s1"]["loss"])
    # resuming reuses every run; the per-run seed is part of the check
    again = run_study(
        corpora, tmp_path, config=TINY, mixtures=design, workers=1, seed=3,
        replicates={"uniform": 3},
    )  # fmt: skip
    assert again["reused"] == names
    # a different base seed retrains everything (uniform_s1 would now be seed 5)
    shifted = run_study(
        corpora, tmp_path / "x", config=TINY, mixtures=design.iloc[:1], workers=1, seed=4
    )
    assert shifted["reused"] == []
    run_dir = tmp_path / "runs"
    (tmp_path / "y" / "runs").mkdir(parents=True)
    for f in run_dir.glob("uniform_s1.*"):
        (tmp_path / "y" / "runs" / f.name.replace("uniform_s1", "uniform")).write_bytes(
            f.read_bytes()
        )
    other_seed = run_study(
        corpora, tmp_path / "y", config=TINY, mixtures=design.iloc[:1], workers=1, seed=3
    )
    assert other_seed["reused"] == []  # a saved run with seed 4 is not taken for seed 3
