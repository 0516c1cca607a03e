"""Choosing the mixture from a real (simulated-data) fit: optimize, rank, and their commands."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.bayes.persistence import save_fit
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.data.table import DataError
from bimix_bayes.decision.constraints import ConstraintError, MixtureConstraints
from bimix_bayes.decision.recommend import optimize, rank
from bimix_bayes.decision.solver import closed_form_optimum
from tests.test_cli import run

STEPS = np.geomspace(500, 20_000, 10)
TARGET = 50_000.0


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return default_parameters()


@pytest.fixture(scope="module")
def idata(truth):
    mixtures = random_mixtures(14, list(truth.index), seed=5)
    data = simulate(truth, mixtures, STEPS, seed=5)
    return BiMixModel().fit(data, seed=2)


@pytest.fixture(scope="module")
def fit_file(idata, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decide") / "fit.nc"
    save_fit(idata, path)
    return path


def _true_optimum(truth: pd.DataFrame, step: float) -> np.ndarray:
    k = truth["A"] * (truth["B"] * step ** -truth["beta"] + truth["C"])
    return closed_form_optimum(k.to_numpy() / len(k), truth["alpha"].to_numpy())


def test_recommendation_recovers_the_true_optimum(idata, truth):
    """On data simulated from known parameters, the recommended mixture is close to the mixture
    that truly minimises the mean loss at the target, and beats the best observed run."""
    rec = optimize(idata, TARGET)
    assert list(rec.mixture.index) == list(truth.index)
    assert rec.mixture.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(rec.mixture.to_numpy(), _true_optimum(truth, TARGET), atol=0.04)
    assert rec.solve.converged and rec.solve.kkt_residual <= 1e-6
    table = rec.objective_table()
    assert table.loc["recommended", "objective"] <= table.loc["baseline", "objective"]
    assert rec.p_beats_baseline > 0.5
    assert 0 <= rec.p_run_beats_baseline <= 1
    assert rec.baseline_source.startswith("observed run")
    assert rec.unconstrained is None  # nothing binds
    # The per-draw optima bracket the recommendation.
    inside = (rec.draw_optima["q05"] - 0.01 <= rec.mixture) & (
        rec.mixture <= rec.draw_optima["q95"] + 0.01
    )
    assert inside.all()


def test_the_default_baseline_is_the_best_observed_run(idata):
    """Without a baseline, the comparison is with the observed run whose objective is lowest."""
    rec = optimize(idata, TARGET, forecast=False)
    runs = rank(idata, rec_runs(idata), TARGET)
    assert rec.baseline_source.split()[2] == runs["mixture"].iloc[0]


def rec_runs(idata) -> pd.DataFrame:
    from bimix_bayes.bayes.persistence import data_from_idata

    return data_from_idata(idata).mixtures


def test_constraints_bind_and_are_reported(idata):
    """A cap that binds holds exactly; the unconstrained optimum and the status are reported, and
    the constrained objective is no better than the unconstrained one."""
    free = optimize(idata, TARGET, forecast=False)
    top = free.mixture.idxmax()
    cap = float(free.mixture[top]) / 2
    rec = optimize(idata, TARGET, constraints=MixtureConstraints(upper={top: cap}), forecast=False)
    assert rec.mixture[top] == pytest.approx(cap, abs=1e-9)
    assert rec.constraints.loc[top, "status"] == "at upper bound"
    assert rec.unconstrained is not None
    np.testing.assert_allclose(rec.unconstrained, free.mixture, atol=1e-6)
    obj = rec.objective_table()["objective"]
    assert obj["recommended"] >= obj["unconstrained"]


def test_risk_objectives_and_weights_change_the_answer(idata):
    """Counting one domain only pushes its share up; CVaR is at least the mean objective."""
    base = optimize(idata, TARGET, forecast=False)
    code = optimize(idata, TARGET, domains=["code"], forecast=False)
    assert code.mixture["code"] > base.mixture["code"] + 0.2
    cvar = optimize(idata, TARGET, objective="cvar:0.9", forecast=False)
    assert (
        cvar.objective_table().loc["recommended", "objective"]
        >= (base.objective_table().loc["recommended", "objective"])
    )


def test_forecasts_do_not_touch_the_callers_fit(idata):
    """Per-domain predictive forecasts come with the recommendation; the caller's InferenceData
    gains no group."""
    groups = list(idata.groups())
    rec = optimize(idata, TARGET)
    assert list(idata.groups()) == groups
    assert set(rec.forecasts["mixture"]) == {"recommended", "baseline"}
    assert {"median", "lower_90", "upper_90"} <= set(rec.forecasts.columns)
    doc = json.loads(json.dumps(rec.to_dict()))
    assert doc["solver"]["converged"] is True
    assert set(doc["recommended"]) == set(rec.mixture.index)


def test_baseline_by_name_and_bad_baselines(idata):
    """A baseline may be an observed run or a mixture; unknown names are errors."""
    name = rec_runs(idata).index[3]
    rec = optimize(idata, TARGET, baseline=name, forecast=False)
    assert rec.baseline_source == f"observed run {name}"
    with pytest.raises(DataError, match="not an observed run"):
        optimize(idata, TARGET, baseline="nope", forecast=False)
    with pytest.raises(ConstraintError, match="lower bounds sum"):
        optimize(
            idata,
            TARGET,
            constraints=MixtureConstraints(lower={"web": 0.6, "code": 0.6}),
            forecast=False,
        )


def test_rank_orders_candidates_with_probabilities(idata, truth):
    """Candidates come back best first; P(best) sums to 1; the true optimum ranks first."""
    names = list(truth.index)
    candidates = pd.DataFrame(
        [np.full(5, 0.2), _true_optimum(truth, TARGET), [0.6, 0.1, 0.1, 0.1, 0.1]],
        index=["uniform", "optimum", "web-heavy"],
        columns=names,
    )
    table = rank(idata, candidates, TARGET)
    assert table["mixture"].iloc[0] == "optimum"
    assert list(table["rank"]) == [1, 2, 3]
    assert table["objective"].is_monotonic_increasing
    assert table["p_best"].sum() == pytest.approx(1.0)
    assert (table["lower_90"] <= table["median"]).all() and (
        table["median"] <= table["upper_90"]
    ).all()
    with pytest.raises(DataError, match="lack"):
        rank(idata, candidates.drop(columns="math"), TARGET)


def test_seeds_of_one_mixture_are_ranked_as_one_candidate(idata, truth):
    """Replicates (same shares, other names) are one row: apart they tied, with P(beats the
    next) 0 between equals and P(best) all on the first name."""
    names = list(truth.index)
    candidates = pd.DataFrame(
        [np.full(5, 0.2), [0.6, 0.1, 0.1, 0.1, 0.1], np.full(5, 0.2), np.full(5, 0.2)],
        index=["uniform", "web-heavy", "uniform_s1", "uniform_s2"],
        columns=names,
    )
    table = rank(idata, candidates, TARGET)
    assert sorted(table["mixture"]) == ["uniform (= uniform_s1, uniform_s2)", "web-heavy"]
    assert table["p_best"].sum() == pytest.approx(1.0)
    assert table["p_beats_next"].iloc[:-1].between(0, 1).all()
    assert np.isnan(table["p_beats_next"].iloc[-1])


def test_optimize_and_rank_commands(fit_file, tmp_path):
    """`bimix optimize` prints a readable table and writes JSON/CSV; `bimix rank` ranks a file;
    infeasible constraints exit 1 naming them; a bad objective exits 2."""
    out = tmp_path / "rec.json"
    res = run("optimize", str(fit_file), "--step", str(TARGET), "--out", str(out))
    assert res.returncode == 0, res.stderr
    for text in ("recommended", "baseline", "P(recommended beats baseline)", "KKT residual"):
        assert text in res.stdout, text
    assert json.loads(out.read_text())["target"]["step"] == TARGET
    csv = tmp_path / "rec.csv"
    res = run(
        "optimize",
        str(fit_file),
        "--step",
        str(TARGET),
        "--objective",
        "cvar:0.9",
        "--no-forecast",
        "--out",
        str(csv),
    )
    assert res.returncode == 0, res.stderr
    assert pd.read_csv(csv, index_col="domain")["recommended"].sum() == pytest.approx(1.0)

    constraints = tmp_path / "c.toml"
    constraints.write_text("[domains.web]\nmin = 0.7\n[domains.code]\nmin = 0.4\n")
    res = run("optimize", str(fit_file), "--step", "1e5", "--constraints", str(constraints))
    assert res.returncode == 1
    assert "web at least 0.7" in res.stderr and "code at least 0.4" in res.stderr
    res = run("optimize", str(fit_file), "--step", "1e5", "--objective", "median")
    assert res.returncode == 2 and "unknown objective" in res.stderr

    cands = tmp_path / "cands.csv"
    cands.write_text(
        "name,web,code,books,wiki,math\nuniform,0.2,0.2,0.2,0.2,0.2\nheavy,0.6,0.1,0.1,0.1,0.1\n"
    )
    res = run(
        "rank",
        str(fit_file),
        "--candidates",
        str(cands),
        "--step",
        "1e5",
        "--out",
        str(tmp_path / "rank.csv"),
    )
    assert res.returncode == 0, res.stderr
    assert "p_best" in res.stdout
    assert len(pd.read_csv(tmp_path / "rank.csv")) == 2


def test_a_failed_fit_is_flagged(idata):
    """Choosing from a fit that failed its diagnostics warns and marks the result."""
    bad = idata.copy()
    diag = json.loads(bad.attrs["diagnostics"])
    diag["problems"] = ["max r-hat 1.2 > 1.01"]
    bad.attrs["diagnostics"] = json.dumps(diag)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = optimize(bad, TARGET, forecast=False)
    assert not rec.fit_passed
    assert any("FAILED" in str(w.message) for w in caught)
    assert "FAILED" in rec.format()


def test_verdict_says_when_the_gain_is_within_run_noise(idata):
    """The verdict separates a real expected gain from one a single run could not show."""
    from dataclasses import replace

    rec = optimize(idata, TARGET, forecast=False)
    assert rec.p_run_beats_baseline is None
    assert "better" in rec.verdict
    coin_flip = replace(rec, p_run_beats_baseline=0.52)
    assert "within run-to-run variation" in coin_flip.verdict
    assert "52%" in coin_flip.verdict
    assert "VERDICT: " + coin_flip.verdict in coin_flip.format()
    worse = replace(rec, p_beats_baseline=0.2)
    assert "baseline is expected to do better" in worse.verdict
    # a solve that did not converge keeps its comparison but says the mixture may not be best
    # (a new user's flat objective printed 'probably better' under 'NOT converged')
    assert rec.solve.converged and "did not converge" not in rec.verdict
    stuck = replace(rec, solve=replace(rec.solve, kkt_residual=1.0))
    assert stuck.verdict.startswith(rec.verdict) and "a better mixture may exist" in stuck.verdict


def test_a_risk_objective_s_gain_is_named_apart_from_the_loss_improvement(idata):
    """Under cvar:0.9 the verdict's gain is the objective's, not the mean loss improvement
    printed above it (a user read two different 'improvements')."""
    rec = optimize(idata, TARGET, objective="cvar:0.9", forecast=False)
    text = rec.format()
    assert "loss improvement " in text
    assert "in the cvar:0.9 objective" in rec.verdict
    assert "objective" not in optimize(idata, TARGET, forecast=False).verdict


def test_a_baseline_equal_to_the_recommendation_is_a_tie(idata):
    """Comparing a mixture with itself gives P(beats) = 0.5 and says so, not 'baseline better'."""
    rec = optimize(idata, TARGET, forecast=False)
    same = optimize(idata, TARGET, baseline=rec.mixture, forecast=False)
    assert same.p_beats_baseline == pytest.approx(0.5)
    assert same.verdict == "the recommendation is the baseline mixture"


def test_within_design_keeps_the_mixture_where_the_runs_were(idata):
    """Outside the fitted runs' range of shares the recommendation says so; --within-design
    keeps every share inside it, with the reason in the constraints table."""
    from bimix_bayes.bayes.persistence import data_from_idata

    data = data_from_idata(idata)
    fitted = data.mixtures.loc[list(data.runs)]
    lo, hi = fitted.min(), fitted.max()
    free = optimize(idata, 2e4, forecast=False)
    inside = optimize(idata, 2e4, forecast=False, within_design=True)
    assert ((inside.mixture >= lo - 1e-9) & (inside.mixture <= hi + 1e-9)).all()
    assert not any("outside the fitted runs' shares" in n for n in inside.notes)
    outside = (free.mixture < lo - 1e-3) | (free.mixture > hi + 1e-3)
    assert any("outside the fitted runs' shares" in n for n in free.notes) == bool(outside.any())
    reasons = inside.constraints["lower_reason"] + inside.constraints["upper_reason"]
    assert reasons.str.contains("in the fitted runs").any()
