"""What a failed fit's one retry changes (bimix_bayes.bayes.diagnostics.retry_draws and
retry_settings)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bimix_bayes.bayes.diagnostics import (
    MAX_DRAWS_FACTOR,
    SAFE_DRAWS,
    SAFE_TARGET_ACCEPT,
    SAFE_TUNE,
    retry_draws,
    retry_settings,
)

draws_st = st.integers(min_value=100, max_value=20_000)
ess_st = st.integers(min_value=1, max_value=399)


@given(draws=draws_st, ess=ess_st, kind=st.sampled_from(["bulk", "tail"]))
def test_slow_mixing_gets_two_to_four_times_the_draws_and_never_fewer_than_safe(draws, ess, kind):
    n = retry_draws(draws, [f"{kind} ESS {ess} < 400 for log_alpha[web]"])
    assert max(SAFE_DRAWS, 2 * draws) <= n <= max(SAFE_DRAWS, MAX_DRAWS_FACTOR * draws)
    # enough for the ESS to pass if it grows with the draws, unless capped
    assert n * ess / draws >= min(400, MAX_DRAWS_FACTOR * ess) - 1e-9


@given(draws=draws_st, low=ess_st, high=ess_st)
def test_a_lower_ess_never_asks_for_fewer_draws_and_the_lowest_decides(draws, low, high):
    low, high = min(low, high), max(low, high)
    assert retry_draws(draws, [f"tail ESS {low} < 400"]) >= retry_draws(
        draws, [f"tail ESS {high} < 400"]
    )
    both = [f"bulk ESS {high} < 400 for a", f"tail ESS {low} < 400 for b"]
    assert retry_draws(draws, both) == retry_draws(draws, [f"tail ESS {low} < 400"])


@given(draws=draws_st)
def test_divergences_only_raise_the_draws_to_the_safe_minimum(draws):
    assert retry_draws(draws, ["3 divergent transitions (allowed 0)"]) == max(draws, SAFE_DRAWS)


@given(draws=draws_st, ess=ess_st)
def test_smaller_steps_ask_for_more_draws_within_the_cap(draws, ess):
    """The retry's smaller steps lower the ESS per draw: never fewer draws, never past 4x."""
    problems = [f"tail ESS {ess} < 400 for log_alpha[web]"]
    plain, smaller = retry_draws(draws, problems), retry_draws(draws, problems, smaller_steps=True)
    assert plain <= smaller <= max(SAFE_DRAWS, MAX_DRAWS_FACTOR * draws)


@given(
    draws=draws_st,
    ess=ess_st,
    divergences=st.integers(min_value=0, max_value=50),
    target=st.sampled_from([0.8, 0.9, 0.95, 0.99]),
    tune=st.integers(min_value=100, max_value=3000),
)
def test_the_retry_takes_smaller_steps_only_after_divergences(
    draws, ess, divergences, target, tune
):
    """Smaller steps only when the chains diverged (and the fit's steps were not that small
    already); a warm-up of at least SAFE_TUNE; the draws of retry_draws."""
    problems = [f"bulk ESS {ess} < 400 for log_alpha[web]"]
    if divergences:
        problems.append(f"{divergences} divergent transitions (allowed 0)")
    sampler = {"target_accept": target, "tune": tune, "draws": draws}
    out = retry_settings(sampler, problems)
    smaller = bool(divergences) and target < SAFE_TARGET_ACCEPT
    assert ("target_accept" in out) == smaller
    assert out.get("tune", tune) == max(tune, SAFE_TUNE)
    assert out.get("draws", draws) == retry_draws(draws, problems, smaller_steps=smaller)
