"""The closed loop end to end at CI size: tiny study -> fit -> recommend -> train -> compare."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from bimix_bayes.leastsq.fit import ALL_DOMAINS
from tests.test_proxy_trainer import TINY, corpora  # noqa: F401 - the fixture

pytest.importorskip("torch")


def test_verify_trains_fresh_seeds_and_scores_forecast_and_difference(corpora, tmp_path):  # noqa: F811
    """On a 4-run tiny study, `verify` recommends a mixture for twice the trained steps, trains
    it, the baseline and the uniform mixture with 2 fresh seeds each, and writes forecasts beside
    measured losses, the predicted difference beside the measured one, and the verdicts."""
    from bimix_bayes.proxy.study import run_study
    from bimix_bayes.proxy.verify import verify

    design = pd.DataFrame(
        {"prose": [0.2, 0.4, 0.6, 0.8], "code": [0.8, 0.6, 0.4, 0.2]},
        index=pd.Index(["m1", "m2", "m3", "m4"]),
    )
    run_study(corpora, tmp_path / "study", config=TINY, mixtures=design, workers=1, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 4-run toy fit may not pass every diagnostic
        result = verify(tmp_path / "study", corpora, tmp_path / "verify", n_seeds=2, workers=1)
    assert result["target_step"] == 60
    assert result["seeds"] == [4, 5] and result["seeds_also_in_study"] == []
    assert set(result["recommended"]) == {"prose", "code"}
    assert sum(result["recommended"].values()) == pytest.approx(1.0)
    assert list(result["mixtures"]) == ["recommended", "baseline", "uniform"]
    for role in result["mixtures"].values():
        assert len(role["measured_per_seed"]) == 2 and role["measured_seed_sd"] >= 0
        pred = role["predicted_mean_of_seeds"]
        assert pred["lower_90"] <= pred["median"] <= pred["upper_90"]
    outcome = result["outcome"]
    base = result["mixtures"]["baseline"]["measured_mean"]
    rec = result["mixtures"]["recommended"]["measured_mean"]
    assert outcome["measured_difference"] == pytest.approx(base - rec)
    assert outcome["recommended_beat_baseline"] == (base > rec)
    assert 0 <= outcome["pairs_recommended_below_baseline"] <= 1
    diff = result["differences"]["mean_of_seeds"]
    assert diff["measured"] == pytest.approx(base - rec) and 0 <= diff["measured_quantile"] <= 1
    # one run against one run is noisier than the mean of the seeds against the mean
    one = result["differences"]["one_run_vs_one_run"]
    assert one["upper_90"] - one["lower_90"] > diff["upper_90"] - diff["lower_90"]
    table = pd.read_csv(tmp_path / "verify" / "comparison.csv")
    assert set(table["role"]) == {"recommended", "baseline", "uniform"}
    assert table.groupby("role")["run"].nunique().eq(2).all()
    assert set(table["seed"]) == {4, 5}
    assert table["step"].max() == 60 and (table["step"] > 30).any()
    assert {"prose", "code", ALL_DOMAINS} == set(table["domain"])
    assert (table["lower_90"] <= table["median"]).all()
    assert json.loads((tmp_path / "verify" / "verify.json").read_text())["domains"]
    text = (tmp_path / "verify" / "verify.md").read_text()
    assert "Closed loop" in text and "beyond the trained steps" in text
    assert "Baseline minus recommended" in text and "seed pairs" in text
    assert (tmp_path / "verify" / "fit.nc").is_file()
    # Given the saved fit, verify reuses it (no refit) and reuses the finished runs.
    again = verify(
        tmp_path / "study",
        corpora,
        tmp_path / "verify",
        n_seeds=2,
        workers=1,
        fit=tmp_path / "verify" / "fit.nc",
    )
    assert again["outcome"] == outcome


def test_verify_refuses_one_seed_and_a_fit_of_other_runs(corpora, tmp_path):  # noqa: F811
    from bimix_bayes.proxy.verify import verify

    with pytest.raises(ValueError, match="at least 2 seeds"):
        verify(tmp_path, corpora, tmp_path / "v", n_seeds=1)
