"""Tests of :meth:`MixtureData.from_frames` (validation at the door) and the MixtureData views."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.data.table import DataError, DataWarning, MixtureData

WEB_SHARES = {"a": 0.2, "b": 0.5, "c": 0.8}  # share of "web"; "code" gets the rest
STEPS = (100.0, 200.0, 400.0)
N_OBS = len(WEB_SHARES) * len(STEPS) * 2

PROPERTY = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------- factories
def make_mixtures(web_shares: dict[str, float] = WEB_SHARES) -> pd.DataFrame:
    """One row per run, columns ``web`` and ``code`` summing to 1."""
    web = pd.Series(web_shares, dtype=float)
    return pd.DataFrame({"web": web, "code": 1.0 - web})


def make_observations(mixtures: pd.DataFrame, steps=STEPS) -> pd.DataFrame:
    """Every run x step x domain; the loss differs at every step (no repeated checkpoint)."""
    rows = [
        (run, step, domain, 2.0 + mixtures.loc[run, domain] + 100.0 / step)
        for run in mixtures.index
        for step in steps
        for domain in mixtures.columns
    ]
    return pd.DataFrame(rows, columns=["run", "step", "domain", "loss"])


def build(mixtures=None, observations=None, **kwargs) -> MixtureData:
    """``from_frames`` on the default data, failing on any DataWarning (nothing may change)."""
    mixtures = make_mixtures() if mixtures is None else mixtures
    observations = make_observations(mixtures) if observations is None else observations
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        return MixtureData.from_frames(mixtures, observations, **kwargs)


def as_text(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """A copy whose ``column`` holds objects, so a cell can be set to any text."""
    return frame.astype({column: object})


def at(location: str) -> str:
    """A regex matching ``location`` as a whole word (``row 5`` but not ``row 50``)."""
    return re.escape(location) + r"\b"


@pytest.fixture
def mixtures() -> pd.DataFrame:
    return make_mixtures()


@pytest.fixture
def observations(mixtures) -> pd.DataFrame:
    return make_observations(mixtures)


@pytest.fixture
def data() -> MixtureData:
    return build()


# ---------------------------------------------------------------- valid input
def test_valid_frames_are_accepted_unchanged(data, mixtures, observations):
    """Clean data passes without notes and keeps every observation and proportion."""
    assert data.notes == ()
    assert len(data.observations) == N_OBS
    assert list(data.observations.columns) == ["run", "step", "domain", "loss"]
    pd.testing.assert_frame_equal(
        data.mixtures, mixtures.rename_axis("run"), check_exact=True, check_names=True
    )
    assert data.volume == "steps" and data.group is None and data.source == "<in memory>"


def test_observations_are_sorted_by_domain_run_step(observations):
    """The canonical table has one order whatever the input order."""
    data = build(observations=observations.iloc[::-1])
    keys = list(data.observations[["domain", "run", "step"]].itertuples(index=False))
    assert keys == sorted(keys)
    assert data.observations.index.tolist() == list(range(N_OBS))


def test_non_string_ids_are_converted_to_text():
    """Integer run ids in both frames are matched as text."""
    mixtures = make_mixtures({1: 0.2, 2: 0.5, 3: 0.8})
    data = build(mixtures)
    assert data.runs == ("1", "2", "3")
    assert data.observations["run"].map(type).eq(str).all()


def test_numeric_text_is_parsed(mixtures, observations):
    """Numbers given as text (e.g. from a CSV read as strings) are accepted."""
    obs = observations.astype({"step": str, "loss": str})
    assert build(mixtures, obs).fingerprint() == build(mixtures, observations).fingerprint()


# ---------------------------------------------------------------- missing / malformed columns
@pytest.mark.parametrize("column", ["run", "step", "domain", "loss"])
def test_missing_observation_column(observations, mixtures, column):
    """A frame without one of run/step/domain/loss is refused, naming the column."""
    with pytest.raises(DataError, match=rf"lack column\(s\) \['{column}'\]"):
        build(mixtures, observations.drop(columns=column))


def test_mixture_without_domain_columns(mixtures, observations):
    """An empty mixture table is refused."""
    with pytest.raises(DataError, match="no domain columns"):
        build(mixtures[[]], observations)


def test_duplicate_run_in_mixture_table(mixtures, observations):
    """A run with two mixtures is refused, naming the run."""
    with pytest.raises(DataError, match=r"appear twice in the mixture table: a"):
        build(pd.concat([mixtures, mixtures.loc[["a"]]]), observations)


def test_run_without_mixture(mixtures, observations):
    """Losses of a run that has no mixture are refused, naming the run."""
    obs = observations.copy()
    obs.loc[obs["run"] == "c", "run"] = "ghost"
    with pytest.raises(DataError, match=r"1 run\(s\) have losses but no mixture: ghost"):
        build(mixtures, obs)


def test_locations_must_match_rows(mixtures, observations):
    """A wrong-length ``locations`` is a programming error, not a data error."""
    with pytest.raises(ValueError, match="one entry per observation row"):
        build(mixtures, observations, locations=["line 2"])


def test_unknown_volume(mixtures, observations):
    """Only steps or tokens can be the volume."""
    with pytest.raises(ValueError, match="volume must be 'steps' or 'tokens', got 'epochs'"):
        build(mixtures, observations, volume="epochs")


# ---------------------------------------------------------------- non-numeric cells
@pytest.mark.parametrize("column", ["step", "loss"])
def test_non_numeric_observation_cell(mixtures, observations, column):
    """A cell that is not a number is refused, naming the column, the row and the text."""
    obs = as_text(observations, column)
    obs.loc[4, column] = "abc"
    with pytest.raises(DataError, match=rf"column '{column}': 1 cell\(s\) are not numbers") as e:
        build(mixtures, obs)
    assert "row 5: 'abc'" in str(e.value)


@pytest.mark.parametrize(
    ("row", "text", "kwargs", "message"),
    [
        pytest.param(2, "3,2", {"locations": [f"line {i + 2}" for i in range(N_OBS)],
                                "source": "runs.csv"},
                     r"line 4: '3,2'", id="uses-given-locations"),
        pytest.param(0, "x", {"source": "runs.csv"}, r"^runs\.csv: ", id="names-the-source"),
        pytest.param(4, "oops", {"missing_policy": "drop"}, r"row 5: 'oops'",
                     id="never-dropped-as-missing"),
    ],
)  # fmt: skip
def test_non_numeric_loss_message(mixtures, observations, row, text, kwargs, message):
    """A loss that is not a number: the message uses the caller's locations (e.g. CSV line
    numbers) and starts with the data's source; ``missing_policy='drop'`` never drops it."""
    obs = as_text(observations, "loss")
    obs.loc[row, "loss"] = text
    with pytest.raises(DataError, match=message):
        build(mixtures, obs, **kwargs)


def test_boolean_losses_are_not_numbers(mixtures, observations):
    """A boolean column is not silently read as 0/1."""
    with pytest.raises(DataError, match=r"column 'loss': 18 cell\(s\) are not numbers"):
        build(mixtures, observations.assign(loss=True))


def test_non_numeric_proportion(mixtures, observations):
    """A proportion that is not a number is refused, naming the run and domain."""
    mix = as_text(mixtures, "web")
    mix.loc["b", "web"] = "half"
    with pytest.raises(DataError, match=r"proportion of 'web'.*run 'b': 'half'"):
        build(mix, observations)


# ---------------------------------------------------------------- missing and bad losses / steps
@pytest.mark.parametrize("missing", [np.nan, None, "", "NaN", "n/a", "NA"])
def test_missing_loss_is_refused_by_default(mixtures, observations, missing):
    """A missing loss (NaN or a missing-value word) is an error naming the row."""
    obs = as_text(observations, "loss")
    obs.loc[4, "loss"] = missing
    with pytest.raises(DataError, match=r"1 loss value\(s\) are missing/NaN \(row 5\)") as e:
        build(mixtures, obs)
    assert "missing_policy='drop'" in str(e.value)


def test_missing_loss_dropped_with_count(mixtures, observations):
    """``missing_policy='drop'`` removes missing losses and says how many."""
    obs = observations.copy()
    obs.loc[[4, 7], "loss"] = np.nan
    with pytest.warns(DataWarning, match=r"dropped 2 observation\(s\) with a missing loss"):
        data = MixtureData.from_frames(mixtures, obs, missing_policy="drop")
    assert len(data.observations) == N_OBS - 2
    assert data.observations["loss"].notna().all()
    assert any("dropped 2 observation(s)" in n for n in data.notes)


def test_unknown_missing_policy(mixtures, observations):
    """A misspelt missing policy is rejected when it matters."""
    obs = observations.copy()
    obs.loc[0, "loss"] = np.nan
    with pytest.raises(ValueError, match="missing_policy"):
        build(mixtures, obs, missing_policy="ignore")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("loss", np.inf, r"1 loss value\(s\) are infinite: row 5 \(inf\)"),
        ("loss", -np.inf, r"1 loss value\(s\) are infinite: row 5 \(-inf\)"),
        ("loss", 0.0, r"1 loss value\(s\) are <= 0 .*: row 5 \(0\)"),
        ("loss", -1.5, r"1 loss value\(s\) are <= 0 .*: row 5 \(-1.5\)"),
        ("step", 0.0, r"1 step value\(s\) are <= 0 .*: row 5 \(0\)"),
        ("step", -100.0, r"1 step value\(s\) are <= 0 .*: row 5 \(-100\)"),
        ("step", np.nan, r"1 step value\(s\) are missing or not finite: row 5 \(nan\)"),
        ("step", np.inf, r"1 step value\(s\) are missing or not finite: row 5 \(inf\)"),
    ],
)
def test_bad_loss_or_step_value(mixtures, observations, column, value, message):
    """Infinite or non-positive losses and non-positive or missing steps name the row."""
    obs = observations.copy()
    obs.loc[4, column] = value
    with pytest.raises(DataError, match=message):
        build(mixtures, obs)


def test_bad_values_are_counted(mixtures, observations):
    """Several bad values are counted, and the first few are shown."""
    obs = observations.copy()
    obs.loc[:7, "loss"] = -1.0
    with pytest.raises(DataError, match=r"8 loss value\(s\) are <= 0.*\(and 3 more\)"):
        build(mixtures, obs)


# ---------------------------------------------------------------- proportions
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.1, r"1 proportion\(s\) are negative \(run 'b', 'web' = -0.1\)"),
        (1.2, r"1 proportion\(s\) are greater than 1 \(run 'b', 'web' = 1.2\)"),
        (np.nan, r"1 proportion\(s\) are missing or not finite \(run 'b', 'web' = nan\)"),
        (np.inf, r"1 proportion\(s\) are missing or not finite \(run 'b', 'web' = inf\)"),
    ],
)
def test_proportion_out_of_range(mixtures, observations, value, message):
    """A proportion outside [0, 1] or missing is refused, naming the run and domain."""
    mix = mixtures.copy()
    mix.loc["b", "web"] = value
    with pytest.raises(DataError, match=message):
        build(mix, observations)


def test_shares_in_percent_are_refused_with_the_fix(mixtures, observations):
    """Every run's shares summing to 100 reads as percent: the message says so and how to fix
    it; a single share above 1 does not get that hint."""
    with pytest.raises(DataError, match="they look like percent; divide them by 100"):
        build(mixtures * 100, observations)
    mix = mixtures.copy()
    mix.loc["b", "web"] = 1.2
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]$"):
        build(mix, observations)


@pytest.mark.parametrize("total", [1.01, 0.98])
def test_mixture_not_summing_to_one(mixtures, observations, total):
    """A mixture off by more than ``sum_tol`` is refused with its sum and the tolerance."""
    mix = mixtures.copy()
    mix.loc["c", "web"] += total - 1.0
    with pytest.raises(
        DataError, match=rf"do not sum to 1 within tolerance 0.001 .*run 'c' sums to {total}"
    ):
        build(mix, observations)


def test_mixture_within_tolerance_is_renormalised(mixtures, observations):
    """A mixture a little off is renormalised to sum to 1, with a warning and a note."""
    mix = mixtures.copy()
    mix.loc["c", "web"] += 0.0005
    with pytest.warns(
        DataWarning, match=r"1 mixture\(s\) summed to within 0.001 of 1.*renormalised"
    ):
        data = MixtureData.from_frames(mix, observations)
    np.testing.assert_allclose(data.mixtures.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(data.mixtures.loc["c"], mix.loc["c"] / 1.0005)
    assert data.mixtures.loc["a", "web"] == 0.2  # exact rows untouched
    assert any("renormalised" in n for n in data.notes)


def test_exact_proportions_are_kept_as_given(observations):
    """Proportions that sum to 1 up to float rounding are kept exactly as given."""
    mix = pd.DataFrame(
        {"web": [0.6, 0.3, 0.45], "code": [0.3, 0.6, 0.45], "books": [0.1, 0.1, 0.1]},
        index=["a", "b", "c"],
    )
    data = build(mix, observations)
    pd.testing.assert_frame_equal(data.mixtures, mix.rename_axis("run"), check_exact=True)
    again = build(data.mixtures, data.observations)
    assert again.fingerprint() == data.fingerprint()


def test_sum_tolerance_is_configurable(mixtures, observations):
    """``sum_tol`` widens the accepted deviation; the row is then renormalised."""
    mix = mixtures.copy()
    mix.loc["c", "web"] += 0.01
    with pytest.raises(DataError, match=r"tolerance 0\.001\b"):
        build(mix, observations)
    with pytest.warns(DataWarning, match=r"within 0\.02 of 1"):
        data = MixtureData.from_frames(mix, observations, sum_tol=0.02)
    assert data.mixtures.loc["c"].sum() == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(DataError, match=r"tolerance 0\.0001\b"):
        build(mixtures.assign(web=mixtures["web"] + 0.0005), observations, sum_tol=1e-4)


# ---------------------------------------------------------------- duplicates
def test_conflicting_duplicates_are_refused(mixtures, observations):
    """Two losses for the same (run, step, domain) are an error naming both rows."""
    extra = observations.iloc[[2]].assign(loss=9.5)
    obs = pd.concat([observations, extra], ignore_index=True)
    with pytest.raises(DataError, match=r"1 \(run, step, domain\) key\(s\) have different") as e:
        build(mixtures, obs)
    key = observations.iloc[2]
    assert f"run 'a' step 200 domain '{key['domain']}'" in str(e.value)
    assert f"(row 3 and row {N_OBS + 1})" in str(e.value)
    assert "group_col" in str(e.value)


def test_identical_duplicates_are_merged(mixtures, observations):
    """Exact duplicate rows are merged into one, with a warning giving the count."""
    obs = pd.concat([observations, observations.iloc[[2, 5]]], ignore_index=True)
    with pytest.warns(DataWarning, match=r"merged 2 exact duplicate observation row\(s\)"):
        data = MixtureData.from_frames(mixtures, obs)
    assert len(data.observations) == N_OBS
    assert data.fingerprint() == build(mixtures, observations).fingerprint()


# ---------------------------------------------------------------- domains
def test_domain_without_proportion_column_is_an_evaluation_only_target(mixtures, observations):
    """Losses of a domain with no proportion column are kept as an evaluation-only target,
    with a note that names the law that fits them and how to leave them out."""
    extra = observations[observations["domain"] == "web"].assign(domain="ood")
    obs = pd.concat([observations, extra], ignore_index=True)
    with pytest.warns(DataWarning, match="not training domains"):
        data = MixtureData.from_frames(mixtures, obs)
    assert data.evaluation_only == ("ood",)
    assert data.domains[-1] == "ood" and "ood" not in data.training_domains
    note = next(n for n in data.notes if "ood" in n)
    assert "--law loglinear" in note and "exclude_domains" in note
    assert (data.shares()[data.observations["domain"] == "ood"] == 0).all()


def test_near_miss_domain_name_is_refused(mixtures, observations):
    """A loss domain that differs from a proportion column only in case is a typo, refused."""
    obs = observations.assign(domain=observations["domain"].replace({"web": "Web"}))
    with pytest.raises(DataError, match=r"\['Web'\].*'Web' vs column 'web'"):
        build(mixtures, obs)


def test_a_one_letter_typo_of_an_unevaluated_training_domain_is_suggested(mixtures, observations):
    """'cdoe' has losses but no column, 'code' a column but no losses: the note asks whether
    one is the other (a legitimate evaluation-only target far from every name gets no hint)."""
    obs = observations.assign(domain=observations["domain"].replace({"code": "cdoe"}))
    with pytest.warns(
        DataWarning, match=r"did you mean 'code' for 'cdoe'\? \(a training domain with no losses"
    ):
        MixtureData.from_frames(mixtures, obs)
    extra = observations[observations["domain"] == "web"].assign(domain="pile_cc")
    with pytest.warns(DataWarning) as seen:
        MixtureData.from_frames(mixtures, pd.concat([observations, extra], ignore_index=True))
    assert not any("did you mean" in str(w.message) for w in seen)


def test_training_domain_without_losses(observations):
    """A training domain that is never evaluated is kept in the mixture only."""
    mix = pd.DataFrame(
        {"web": [0.2, 0.4, 0.6], "code": [0.7, 0.5, 0.3], "books": [0.1, 0.1, 0.1]},
        index=["a", "b", "c"],
    )
    data = build(mix, make_observations(mix[["web", "code"]]))
    assert data.domains == ("web", "code")
    assert data.training_domains == ("web", "code", "books")


def test_domains_follow_mixture_column_order():
    """``domains`` uses the mixture's column order, not alphabetical order."""
    mix = make_mixtures()[["code", "web"]]
    assert build(mix).domains == ("code", "web")


# ---------------------------------------------------------------- design check
def test_too_few_distinct_shares_names_domain():
    """A domain whose share never changes cannot show the proportion effect."""
    mix = pd.DataFrame(  # binary fractions: every row sums to exactly 1.0
        {"web": [0.25, 0.25, 0.25], "code": [0.125, 0.5, 0.625], "math": [0.625, 0.25, 0.125]},
        index=["a", "b", "c"],
    )
    with pytest.raises(DataError, match=r"too few distinct mixtures or steps") as e:
        build(mix)
    msg = str(e.value)
    assert "domain 'web': its 3 run(s) give it 1 distinct share(s) (need 2)" in msg
    assert "'code'" not in msg.split("\n", 1)[1]


def test_float_rounding_does_not_create_distinct_shares():
    """Rows that sum to 1 up to float rounding keep equal shares equal (design check holds)."""
    mix = pd.DataFrame(
        {"web": [0.2, 0.2, 0.2], "code": [0.3, 0.5, 0.7], "math": [0.5, 0.3, 0.1]},
        index=["a", "b", "c"],
    )
    assert mix.sum(axis=1).iloc[2] != 1.0  # 0.2 + 0.7 + 0.1 == 0.9999999999999999
    with pytest.raises(DataError, match=r"domain 'web': its 3 run\(s\) give it 1 distinct"):
        build(mix)


def test_too_few_steps_names_domain(mixtures):
    """A domain with fewer than three distinct steps cannot show the step effect."""
    obs = make_observations(mixtures, steps=(100.0, 200.0))
    with pytest.raises(DataError, match=r"domain 'web': 2 distinct steps \(need 3"):
        build(mixtures, obs)
    with pytest.raises(DataError, match=r"2 distinct tokens \(need 3"):
        build(mixtures, obs, volume="tokens")


def test_only_the_short_domain_is_named(mixtures, observations):
    """The design error names only the domain that lacks steps."""
    obs = observations[~((observations["domain"] == "code") & (observations["step"] == 400))]
    with pytest.raises(DataError, match="domain 'code': 2 distinct steps") as e:
        build(mixtures, obs)
    assert "domain 'web'" not in str(e.value)


def test_design_minimums_are_configurable(mixtures):
    """``min_mixtures`` and ``min_steps`` can be lowered for small studies."""
    one = mixtures.iloc[:1]
    data = build(one, make_observations(one, steps=(100.0,)), min_mixtures=1, min_steps=1)
    assert data.n_runs == 1 and len(data.observations) == 2
    with pytest.raises(DataError, match="need 2"):
        build(one, make_observations(one))


def test_check_design_method(data):
    """``check_design`` can ask for more than the defaults."""
    data.check_design()
    with pytest.raises(DataError, match=r"3 distinct steps \(need 4"):
        data.check_design(min_steps=4)
    with pytest.raises(DataError, match=r"3 distinct share\(s\) \(need 5\)"):
        data.check_design(min_mixtures=5)


# ---------------------------------------------------------------- zero shares
@pytest.fixture
def zero_mixtures(mixtures) -> pd.DataFrame:
    """The default mixtures plus a run ``z`` that trains on code only."""
    return pd.concat([mixtures, pd.DataFrame({"web": [0.0], "code": [1.0]}, index=["z"])])


def test_zero_share_refused_by_default(zero_mixtures):
    """Observations of a domain with a zero share are an error saying how many and where."""
    with pytest.raises(DataError, match=r"3 observation\(s\) in 1 \(run, domain\) pair") as e:
        build(zero_mixtures)
    assert "run 'z' / 'web'" in str(e.value)
    assert "zero_policy='drop'" in str(e.value)


def test_zero_share_drop(zero_mixtures):
    """``zero_policy='drop'`` removes those observations with a warning giving the count."""
    obs = make_observations(zero_mixtures)
    with pytest.warns(DataWarning, match=r"dropped 3 observation\(s\).*run 'z' / 'web'"):
        data = MixtureData.from_frames(zero_mixtures, obs, zero_policy="drop")
    assert len(data.observations) == len(obs) - 3
    z = data.observations[data.observations["run"] == "z"]
    assert set(z["domain"]) == {"code"} and len(z) == 3
    assert (data.shares() > 0).all()


def test_zero_share_epsilon(zero_mixtures):
    """``zero_policy='epsilon'`` replaces zero shares and renormalises only that mixture."""
    obs = make_observations(zero_mixtures)
    eps = 1e-3
    with pytest.warns(DataWarning, match=r"set to epsilon = 0.001"):
        data = MixtureData.from_frames(zero_mixtures, obs, zero_policy="epsilon", epsilon=eps)
    assert len(data.observations) == len(obs)
    assert data.mixtures.loc["z", "web"] == pytest.approx(eps / (1 + eps))
    assert data.mixtures.loc["z", "code"] == pytest.approx(1 / (1 + eps))
    np.testing.assert_allclose(data.mixtures.sum(axis=1), 1.0)
    pd.testing.assert_frame_equal(
        data.mixtures.loc[["a", "b", "c"]], zero_mixtures.iloc[:3].rename_axis("run")
    )
    assert (data.shares() > 0).all()


@pytest.mark.parametrize("epsilon", [0.0, 1.0, -1e-4])
def test_zero_share_epsilon_range(zero_mixtures, epsilon):
    """Epsilon must lie strictly between 0 and 1."""
    with pytest.raises(ValueError, match="epsilon must lie in"):
        build(zero_mixtures, zero_policy="epsilon", epsilon=epsilon)


def test_zero_share_of_unobserved_domain_is_fine(observations):
    """A zero share of a domain that is not evaluated needs no policy."""
    mix = pd.DataFrame(
        {"web": [0.2, 0.5, 0.8], "code": [0.8, 0.5, 0.2], "books": [0.0, 0.0, 0.0]},
        index=["a", "b", "c"],
    )
    data = build(mix, observations)
    assert data.training_domains == ("web", "code", "books")


def test_unknown_zero_policy(zero_mixtures):
    """A misspelt zero policy is rejected when zero shares occur."""
    with pytest.raises(ValueError, match="zero_policy"):
        build(zero_mixtures, zero_policy="ignore")


# ---------------------------------------------------------------- repeated checkpoints
@pytest.fixture
def repeated_obs(mixtures) -> pd.DataFrame:
    """Run ``a`` logged its last checkpoint twice: losses at 800 equal those at 400."""
    obs = make_observations(mixtures, steps=(*STEPS, 800.0))
    last = (obs["run"] == "a") & (obs["step"] == 800.0)
    prev = (obs["run"] == "a") & (obs["step"] == 400.0)
    obs.loc[last, "loss"] = obs.loc[prev, "loss"].to_numpy()
    return obs


def test_repeated_checkpoint_is_reported(mixtures, repeated_obs):
    """A final checkpoint logged twice is kept but reported."""
    with pytest.warns(
        DataWarning, match=r"1 run\(s\) end with two checkpoints.*run 'a': 400 and 800"
    ):
        data = MixtureData.from_frames(mixtures, repeated_obs)
    assert len(data.observations) == len(repeated_obs)


def test_repeated_checkpoint_dropped_on_request(mixtures, repeated_obs):
    """``drop_repeated_checkpoints=True`` drops the earlier copy, with a warning."""
    with pytest.warns(DataWarning, match=r"dropped the earlier of two checkpoints.*run 'a'"):
        data = MixtureData.from_frames(mixtures, repeated_obs, drop_repeated_checkpoints=True)
    a_steps = set(data.observations.loc[data.observations["run"] == "a", "step"])
    assert a_steps == {100.0, 200.0, 800.0}
    assert len(data.observations) == len(repeated_obs) - 2


def test_different_final_losses_are_not_repeated(mixtures):
    """Normal runs give no repeated-checkpoint note, even with drop requested."""
    data = build(mixtures, drop_repeated_checkpoints=True)
    assert len(data.observations) == N_OBS


# ---------------------------------------------------------------- runs without losses
def test_run_without_losses_is_noted(mixtures, observations):
    """A mixture with no losses is kept in ``mixtures`` only, with a note."""
    mix = pd.concat([mixtures, pd.DataFrame({"web": [0.4], "code": [0.6]}, index=["idle"])])
    with pytest.warns(
        DataWarning, match=r"1 run\(s\) have a mixture but no loss observations: idle"
    ):
        data = MixtureData.from_frames(mix, observations)
    assert "idle" in data.mixtures.index
    assert data.runs == ("a", "b", "c") and data.n_runs == 3


# ---------------------------------------------------------------- views
def test_runs_and_domains(data):
    """``runs`` and ``domains`` list what has observations, in table order."""
    assert data.runs == ("a", "b", "c")
    assert data.n_runs == 3
    assert data.domains == ("web", "code")
    assert data.training_domains == ("web", "code")


def test_shares_align_with_observations(data, mixtures):
    """``shares()`` gives each observation its run's share of its own domain."""
    expected = [
        mixtures.loc[r, d]
        for r, d in zip(data.observations["run"], data.observations["domain"], strict=True)
    ]
    np.testing.assert_array_equal(data.shares(), expected)


def test_for_domain(data):
    """``for_domain`` returns one domain's observations with their share ``r``."""
    web = data.for_domain("web")
    assert set(web["domain"]) == {"web"} and len(web) == 9
    assert web.index.tolist() == list(range(9))
    np.testing.assert_array_equal(web["r"], web["run"].map(WEB_SHARES))
    code = data.for_domain("code")
    np.testing.assert_allclose(code["r"], 1 - code["run"].map(WEB_SHARES))


def test_for_domain_unknown(data):
    """Asking for a domain without observations lists the available ones."""
    with pytest.raises(KeyError, match=r"no observations for domain 'math'.*\['web', 'code'\]"):
        data.for_domain("math")


def test_subset_by_runs(data):
    """``subset(runs=...)`` keeps those runs' observations and mixtures only."""
    sub = data.subset(runs=["a", "c"])
    assert sub.runs == ("a", "c")
    assert list(sub.mixtures.index) == ["a", "c"]
    assert len(sub.observations) == 12
    assert sub.observations.index.tolist() == list(range(12))
    assert data.n_runs == 3  # the original is untouched


def test_subset_by_max_step(data):
    """``subset(max_step=...)`` keeps steps up to and including the bound."""
    sub = data.subset(max_step=200)
    assert set(sub.observations["step"]) == {100.0, 200.0}
    assert sub.runs == data.runs
    assert sub.volume == data.volume and sub.source == data.source
    both = data.subset(runs=["b"], max_step=100)
    assert both.observations[["run", "step"]].drop_duplicates().values.tolist() == [["b", 100.0]]


def test_fingerprint_is_stable_and_sensitive(data, mixtures, observations):
    """Equal data give equal fingerprints; any changed value changes it."""
    fp = data.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert build().fingerprint() == fp
    assert build(source="elsewhere", group="g").fingerprint() == fp  # metadata is not data
    obs = observations.copy()
    obs.loc[0, "loss"] += 1e-12
    assert build(mixtures, obs).fingerprint() != fp
    assert build(mixtures, observations, volume="tokens").fingerprint() != fp
    assert build(make_mixtures({"a": 0.2, "b": 0.5, "c": 0.7})).fingerprint() != fp


def test_fingerprint_ignores_mixture_row_order(mixtures, observations):
    """The same runs given in another order have the same fingerprint."""
    assert build(mixtures.iloc[::-1], observations).fingerprint() == build().fingerprint()


def test_to_long(data):
    """``to_long`` gives one row per observation with ``p_<domain>`` proportion columns."""
    long = data.to_long()
    assert list(long.columns) == ["run", "step", "domain", "loss", "p_web", "p_code"]
    assert len(long) == N_OBS
    np.testing.assert_array_equal(long["p_web"], long["run"].map(WEB_SHARES))
    pd.testing.assert_frame_equal(long[["run", "step", "domain", "loss"]], data.observations)


def test_to_long_with_group():
    """A group label travels as a ``group`` column after ``run``."""
    long = build(group="122M").to_long()
    assert list(long.columns[:2]) == ["run", "group"]
    assert set(long["group"]) == {"122M"}


def test_summary(data):
    """``summary`` describes counts, domains, step range and source in one line."""
    assert data.summary() == (
        "18 observations from 3 runs; 2 evaluation domains (web, code); "
        "3 distinct steps from 100 to 400; source: <in memory>"
    )
    text = build(volume="tokens", group="122M", source="runs.csv").summary()
    assert "3 runs, group 122M;" in text and "distinct tokens" in text and "runs.csv" in text


def test_summary_of_empty_subset(data):
    """Restricting to nothing gives a summary saying so, not a crash."""
    assert data.subset(max_step=1).summary().startswith("0 observations")


def test_data_is_frozen(data):
    """MixtureData is immutable (changes go through ``subset`` / ``from_frames``)."""
    with pytest.raises(AttributeError):
        data.volume = "tokens"


# ---------------------------------------------------------------- property tests
DOMAIN_POOL = ("web", "code", "math", "wiki")


@st.composite
def valid_frames(draw):
    """Random valid (mixtures, observations): 1-4 domains, 1-5 runs, 1-5 steps per run."""
    n_domains = draw(st.integers(1, 4))
    domains = list(DOMAIN_POOL[:n_domains])
    n_runs = draw(st.integers(1, 5))
    runs = [f"r{i:02d}" for i in range(n_runs)]
    weights = draw(
        st.lists(
            st.lists(st.integers(1, 50), min_size=n_domains, max_size=n_domains),
            min_size=n_runs,
            max_size=n_runs,
        )
    )
    w = np.asarray(weights, dtype=float)
    mixtures = pd.DataFrame(w / w.sum(axis=1, keepdims=True), index=runs, columns=domains)
    loss = st.floats(0.05, 20.0, allow_nan=False, allow_infinity=False)
    rows = []
    for run in runs:
        steps = draw(st.lists(st.integers(1, 10**7), min_size=1, max_size=5, unique=True))
        for step in steps:
            for domain in domains:
                rows.append((run, float(step), domain, draw(loss)))
    observations = pd.DataFrame(rows, columns=["run", "step", "domain", "loss"])
    return mixtures, observations


def lenient(mixtures, observations, **kwargs) -> MixtureData:
    """``from_frames`` without design minimums, ignoring notes (e.g. repeated checkpoints)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return MixtureData.from_frames(
            mixtures, observations, min_mixtures=1, min_steps=1, **kwargs
        )


@PROPERTY
@given(valid_frames())
def test_property_valid_frames_keep_every_observation(frames):
    """Valid input is accepted; every observation's key and loss is preserved exactly."""
    mixtures, observations = frames
    data = lenient(mixtures, observations)
    assert len(data.observations) == len(observations)
    got = sorted(data.observations.itertuples(index=False, name=None))
    assert got == sorted(observations.itertuples(index=False, name=None))
    expected = [
        mixtures.loc[r, d]
        for r, d in zip(data.observations["run"], data.observations["domain"], strict=True)
    ]
    np.testing.assert_allclose(data.shares(), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(data.mixtures.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@PROPERTY
@given(valid_frames(), st.randoms(use_true_random=False))
def test_property_row_order_does_not_change_fingerprint(frames, rnd):
    """Shuffling the observation rows gives the same canonical table and fingerprint."""
    mixtures, observations = frames
    order = list(range(len(observations)))
    rnd.shuffle(order)
    shuffled = observations.iloc[order]
    a, b = lenient(mixtures, observations), lenient(mixtures, shuffled)
    assert a.fingerprint() == b.fingerprint()
    pd.testing.assert_frame_equal(a.observations, b.observations)


OBS_CORRUPTIONS = {
    "negative loss": ("loss", -1.0, r"loss value\(s\) are <= 0"),
    "zero loss": ("loss", 0.0, r"loss value\(s\) are <= 0"),
    "infinite loss": ("loss", np.inf, r"loss value\(s\) are infinite"),
    "missing loss": ("loss", np.nan, r"loss value\(s\) are missing"),
    "text loss": ("loss", "x1", r"column 'loss': 1 cell\(s\) are not numbers"),
    "zero step": ("step", 0.0, r"step value\(s\) are <= 0"),
    "negative step": ("step", -5.0, r"step value\(s\) are <= 0"),
    "text step": ("step", "ten", r"column 'step': 1 cell\(s\) are not numbers"),
}


@PROPERTY
@given(valid_frames(), st.sampled_from(sorted(OBS_CORRUPTIONS)), st.data())
def test_property_corrupted_observation_names_its_row(frames, kind, draw):
    """Any single bad loss or step cell is refused, naming that row."""
    mixtures, observations = frames
    column, value, message = OBS_CORRUPTIONS[kind]
    i = draw.draw(st.integers(0, len(observations) - 1), label="row")
    obs = as_text(observations, column)
    obs.loc[i, column] = value
    with pytest.raises(DataError, match=message) as e:
        lenient(mixtures, obs)
    assert re.search(at(f"row {i + 1}"), str(e.value)), str(e.value)
    assert str(e.value).count("row ") == 1, "only the corrupted row is named"


MIX_CORRUPTIONS = {
    "negative": (-0.25, "are negative"),
    "above one": (1.5, "are greater than 1"),
    "missing": (np.nan, "are missing or not finite"),
}


@PROPERTY
@given(valid_frames(), st.sampled_from(sorted(MIX_CORRUPTIONS)), st.data())
def test_property_corrupted_proportion_names_its_run(frames, kind, draw):
    """Any single bad proportion is refused, naming that run and domain."""
    mixtures, observations = frames
    value, message = MIX_CORRUPTIONS[kind]
    run = draw.draw(st.sampled_from(list(mixtures.index)), label="run")
    domain = draw.draw(st.sampled_from(list(mixtures.columns)), label="domain")
    mix = mixtures.copy()
    mix.loc[run, domain] = value
    with pytest.raises(DataError, match=rf"1 proportion\(s\) {message} \(run '{run}', '{domain}'"):
        lenient(mix, observations)


@PROPERTY
@given(valid_frames(), st.floats(0.002, 0.5), st.data())
def test_property_sum_outside_tolerance_names_the_run(frames, excess, draw):
    """Scaling one mixture away from 1 beyond ``sum_tol`` is refused, naming that run."""
    mixtures, observations = frames
    run = draw.draw(st.sampled_from(list(mixtures.index)), label="run")
    mix = mixtures.copy()
    mix.loc[run] = mix.loc[run] * (1 - excess)
    with pytest.raises(DataError, match=rf"1 mixture\(s\) do not sum to 1.*run '{run}' sums to"):
        lenient(mix, observations)


def test_a_mixture_logged_under_one_run_id_per_size_is_noted():
    """W&B names one run per (mixture, size): in a size fit those ids make each size's run a
    separate mixture, which a note says (with one id per mixture, no note)."""
    steps = [100.0, 200.0, 300.0]
    shares = {"x": (0.3, 0.7), "y": (0.6, 0.4)}
    rows, mix = [], {}
    for name, (a, b) in shares.items():
        for size in (1e8, 3e8):
            run = f"{name}-{size:.0e}"
            mix[run] = {"a": a, "b": b}
            rows += [(run, s, d, 3.0 - s / 1e3, size) for s in steps for d in "ab"]
    obs = pd.DataFrame(rows, columns=["run", "step", "domain", "loss", "size"])
    mixtures = pd.DataFrame(mix).T
    with pytest.warns(DataWarning, match=r"2 mixture\(s\) are logged under a run id per model"):
        MixtureData.from_frames(mixtures, obs)
    one_id = obs.assign(run=obs["run"].str[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        data = MixtureData.from_frames(mixtures.groupby(mixtures.index.str[0]).first(), one_id)
    assert data.runs == ("x", "y")
