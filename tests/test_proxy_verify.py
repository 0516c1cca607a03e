"""The closed loop end to end at CI size: tiny study -> fit -> recommend -> train -> compare."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from bimix_bayes.leastsq.fit import ALL_DOMAINS
from tests.test_proxy_trainer import TINY, corpora  # noqa: F401 - the fixture

pytest.importorskip("torch")


def test_verify_trains_the_recommendation_and_scores_the_forecast(corpora, tmp_path):  # noqa: F811
    """On a 4-run tiny study, `verify` recommends a mixture for twice the trained steps, trains it
    and the baseline, and writes forecasts beside measured losses with the outcome."""
    from bimix_bayes.proxy.study import run_study
    from bimix_bayes.proxy.verify import verify

    design = pd.DataFrame(
        {"prose": [0.2, 0.4, 0.6, 0.8], "code": [0.8, 0.6, 0.4, 0.2]},
        index=pd.Index(["m1", "m2", "m3", "m4"]),
    )
    run_study(corpora, tmp_path / "study", config=TINY, mixtures=design, workers=1, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 4-run toy fit may not pass every diagnostic
        result = verify(tmp_path / "study", corpora, tmp_path / "verify", workers=1)
    assert result["target_step"] == 60 and result["verification_seed"] == 3
    assert result["baseline_forecast"] == "observed run continued"
    assert set(result["recommended"]) == {"prose", "code"}
    assert sum(result["recommended"].values()) == pytest.approx(1.0)
    assert isinstance(result["outcome"]["recommended_beat_baseline"], bool)
    table = pd.read_csv(tmp_path / "verify" / "comparison.csv")
    assert set(table["role"]) == {"recommended", "baseline"}
    baseline_run = result["baseline"]["run"]
    assert set(table["run"]) == {"recommended", baseline_run}
    # Common random numbers: the baseline retraces its study run up to the study's last step.
    study = pd.read_csv(tmp_path / "study" / "losses.csv")
    again = table[(table["run"] == baseline_run) & (table["step"] <= 30)]
    first = again.merge(study, on=["run", "step", "domain"], suffixes=("", "_study"))
    assert len(first) and (first["loss"] - first["loss_study"]).abs().max() < 1e-5
    assert table["step"].max() == 60 and (table["step"] > 30).any()
    assert {"prose", "code", ALL_DOMAINS} == set(table["domain"])
    assert (table["lower_90"] <= table["median"]).all()
    assert json.loads((tmp_path / "verify" / "verify.json").read_text())["domains"]
    text = (tmp_path / "verify" / "verify.md").read_text()
    assert "Closed loop" in text and "beyond the trained steps" in text
    assert (tmp_path / "verify" / "fit.nc").is_file()
