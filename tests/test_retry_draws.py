"""The draws a failed fit's one retry uses (bimix_bayes.bayes.diagnostics.retry_draws)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bimix_bayes.bayes.diagnostics import MAX_DRAWS_FACTOR, SAFE_DRAWS, retry_draws

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
