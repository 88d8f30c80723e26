"""The Central Exchange (MODEL.md §3)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_core import MarketParams, clear_bids, clear_market
from sim_core.rng import Purpose, stream

from .generators import bid_vectors
from .reference import clear_market_reference

CLEARING = MarketParams(type="clearing", token_cap=2, reserve_price=0.0)


def clear(bids, market=CLEARING, keys=None):
    bids = np.array(bids, dtype=float)
    keys = np.linspace(0.1, 0.9, bids.size) if keys is None else np.array(keys, dtype=float)
    price, won = clear_bids(bids, keys, market)
    return float(price), won


def test_price_is_qth_highest_bid_when_oversubscribed():
    price, won = clear([0.9, 0.2, 0.7, 0.4, 0.1])
    assert price == 0.7
    assert won.tolist() == [True, False, True, False, False]


def test_exactly_cap_win_at_random_when_tied_at_the_margin():
    bids = [0.8, 0.5, 0.5, 0.5, 0.1]
    winners_seen = set()
    for seed in range(40):
        keys = stream(seed, 1, Purpose.TIE_BREAK).random(5)
        price, won = clear(bids, keys=keys)
        assert price == 0.5
        assert won.sum() == 2 and won[0]
        winners_seen.add(int(np.flatnonzero(won[1:4])[0]) + 1)
    assert winners_seen == {1, 2, 3}  # every tied lab can win


def test_tied_winner_is_the_smallest_tie_key():
    price, won = clear([0.5, 0.5, 0.5], keys=[0.7, 0.2, 0.4])
    assert price == 0.5
    assert won.tolist() == [False, True, True]


def test_all_eligible_win_at_reserve_when_fewer_bids_than_cap():
    market = MarketParams(type="clearing", token_cap=3, reserve_price=0.25)
    price, won = clear([0.3, 0.2, 0.9, 0.0], market)
    assert price == 0.25
    assert won.tolist() == [True, False, True, False]


def test_price_is_lowest_eligible_bid_when_exactly_cap_eligible():
    market = MarketParams(type="clearing", token_cap=2, reserve_price=0.25)
    price, won = clear([0.3, 0.2, 0.9, 0.0], market)
    assert price == 0.3
    assert won.tolist() == [True, False, True, False]


def test_bids_below_reserve_never_win_when_oversubscribed():
    market = MarketParams(type="clearing", token_cap=1, reserve_price=0.5)
    price, won = clear([0.45, 0.6, 0.55], market)
    assert price == 0.6
    assert won.tolist() == [False, True, False]


def test_nothing_sold_when_every_bid_is_zero():
    price, won = clear([0.0, 0.0, 0.0])
    assert price == 0.0
    assert not won.any()


def test_nothing_sold_at_reserve_when_cap_is_zero():
    market = MarketParams(type="clearing", token_cap=0, reserve_price=0.1)
    price, won = clear([0.9, 0.8], market)
    assert price == 0.1
    assert not won.any()


def test_every_bid_at_or_above_price_wins_when_fixed_price():
    market = MarketParams(type="fixed_price", fixed_price=0.3, token_cap=None)
    price, won = clear([0.3, 0.29, 0.9, 0.0], market)
    assert price == 0.3
    assert won.tolist() == [True, False, True, False]


def test_zero_bid_never_wins_when_fixed_price_is_zero():
    market = MarketParams(type="fixed_price", fixed_price=0.0, token_cap=None)
    _, won = clear([0.0, 0.01], market)
    assert won.tolist() == [False, True]


def test_single_game_market_draws_a_key_for_every_lab():
    rng = stream(3, 1, Purpose.TIE_BREAK)
    result = clear_market(np.array([0.5, 0.5, 0.5]), CLEARING, rng)
    assert result.permits == 2 and result.price == 0.5
    with pytest.raises(ValueError, match="read-only"):
        result.won[0] = False  # results are read-only


@settings(max_examples=300, deadline=None)
@given(
    bids=bid_vectors(),
    cap=st.integers(min_value=0, max_value=35),
    reserve=st.sampled_from([0.0, 0.1, 0.3]),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_clearing_matches_reference_and_never_exceeds_cap(bids, cap, reserve, seed):
    market = MarketParams(type="clearing", token_cap=cap, reserve_price=reserve)
    keys = stream(seed, 1, Purpose.TIE_BREAK).random(bids.size)
    price, won = clear_bids(bids, keys, market)
    expected_price, expected_winners = clear_market_reference(bids.tolist(), keys.tolist(), market)
    assert float(price) == expected_price
    assert set(np.flatnonzero(won).tolist()) == expected_winners
    assert won.sum() <= cap
    assert float(price) >= reserve
    assert np.all(bids[won] >= price)


@settings(max_examples=100, deadline=None)
@given(bids=bid_vectors(max_labs=12), cap=st.integers(min_value=0, max_value=14))
def test_batched_clearing_equals_row_by_row(bids, cap):
    market = MarketParams(type="clearing", token_cap=cap)
    rng = np.random.default_rng(0)
    batch = np.stack([rng.permutation(bids) for _ in range(5)])
    keys = rng.random(batch.shape)
    prices, won = clear_bids(batch, keys, market)
    for row in range(5):
        row_price, row_won = clear_bids(batch[row], keys[row], market)
        assert prices[row] == row_price
        assert won[row].tolist() == row_won.tolist()
