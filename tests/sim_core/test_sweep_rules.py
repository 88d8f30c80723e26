"""The rule functions' batched fast paths, which the sweep relies on, against plain references.

``clear_bids``, ``lab_bids`` and ``lab_runs`` have fast paths (one strategy for every lab, ties
only where they occur, float32 through integer views): they must give the same numbers as the
rules written loop by loop, in float64 and float32, one game or a batch with shared tie keys.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_core import STRATEGIES, STRATEGY_NAMES, MarketParams, clear_bids
from sim_core.strategies import lab_bids, lab_runs

from .generators import bid_vectors
from .reference import clear_market_reference


def bid_reference(name, u, penalty, racing_value, wealth, uniform):
    """MODEL.md §5 for one lab, then the wealth cap of §4 step 1."""
    if name in ("rational", "adaptive"):
        bid = max(0.0, min(u, penalty - racing_value))
    elif name in ("truthful", "compliant"):
        bid = max(0.0, u)
    elif name == "random":
        bid = uniform * max(u, 0.0)
    else:
        bid = 0.0
    return min(bid, max(wealth, 0.0))


def run_reference(name, d, uniform):
    if name == "compliant":
        return False
    if name == "reckless":
        return True
    if name == "random":
        return uniform < 0.5
    return d > 0


population = st.lists(st.sampled_from(STRATEGY_NAMES), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    names=population,
    single=st.booleans(),
    seed=st.integers(min_value=0, max_value=10_000),
    racing_value=st.sampled_from([0.0, 0.1]),
    endless=st.booleans(),
)
def test_bids_and_runs_equal_the_rules_lab_by_lab_when_batched(
    names, single, seed, racing_value, endless
):
    if single:
        names = [names[0]] * len(names)
    rng = np.random.default_rng(seed)
    labs = len(names)
    codes = np.array([STRATEGIES[name] for name in names])
    net_values = rng.uniform(-0.3, 1.0, labs)
    penalties = rng.uniform(0.0, 1.0, (3, labs))  # a batch of three cells
    wealth = math.inf if endless else rng.uniform(-0.5, 1.5, (3, labs))
    uniforms = rng.random(labs)
    bids = lab_bids(codes, net_values, penalties, racing_value, wealth, uniforms)
    d = net_values + racing_value - penalties
    runs = lab_runs(codes, d, uniforms)
    assert bids.shape == runs.shape == (3, labs)
    for cell in range(3):
        for lab, name in enumerate(names):
            cap = wealth if endless else wealth[cell, lab]
            expected = bid_reference(
                name, net_values[lab], penalties[cell, lab], racing_value, cap, uniforms[lab]
            )
            assert bids[cell, lab] == expected
            assert runs[cell, lab] == run_reference(name, d[cell, lab], uniforms[lab])
    bids[0, 0] = 1.0  # the caller may overwrite a bot's move with a given one
    runs[0, 0] = True


@settings(max_examples=300, deadline=None)
@given(
    bids=bid_vectors(),
    cap=st.integers(min_value=0, max_value=35),
    reserve=st.sampled_from([0.0, 0.1, 0.3]),
    seed=st.integers(min_value=0, max_value=1000),
    dtype=st.sampled_from([np.float64, np.float32]),
    negative=st.booleans(),
)
def test_clearing_matches_reference_in_both_precisions(bids, cap, reserve, seed, dtype, negative):
    if negative:  # bids are never negative in a game, but the array rule must not care
        bids = np.where(bids == 0.0, -np.random.default_rng(seed).random(bids.size), bids)
    bids = bids.astype(dtype)
    market = MarketParams(type="clearing", token_cap=cap, reserve_price=reserve)
    keys = np.random.default_rng(seed).random(bids.size)
    price, won = clear_bids(bids, keys, market)
    reference_market = MarketParams(
        type="clearing", token_cap=cap, reserve_price=float(dtype(reserve))
    )
    expected_price, expected_winners = clear_market_reference(
        bids.astype(float).tolist(), keys.tolist(), reference_market
    )
    assert float(price) == pytest.approx(expected_price, abs=1e-7)
    assert set(np.flatnonzero(won).tolist()) == expected_winners


@settings(max_examples=100, deadline=None)
@given(bids=bid_vectors(max_labs=12), cap=st.integers(min_value=0, max_value=14))
def test_batched_clearing_with_shared_keys_equals_row_by_row(bids, cap):
    market = MarketParams(type="clearing", token_cap=cap)
    rng = np.random.default_rng(1)
    batch = np.stack([rng.permutation(bids) for _ in range(6)]).reshape(2, 3, -1)
    keys = rng.random(bids.size)  # one key per lab, shared by every cell (common random numbers)
    prices, won = clear_bids(batch, keys, market)
    assert prices.shape == (2, 3) and won.shape == batch.shape
    for index in np.ndindex(2, 3):
        row_price, row_won = clear_bids(batch[index], keys, market)
        assert prices[index] == row_price
        assert won[index].tolist() == row_won.tolist()


def test_negative_zero_bid_never_wins():
    market = MarketParams(type="clearing", token_cap=2)
    price, won = clear_bids(np.array([-0.0, 0.5, 0.0]), np.array([0.1, 0.2, 0.3]), market)
    assert price == 0.0
    assert won.tolist() == [False, True, False]


@settings(max_examples=40, deadline=None)
@given(
    labs=st.integers(min_value=500, max_value=1100),
    cap_share=st.floats(min_value=0.0, max_value=1.0),
    levels=st.integers(min_value=2, max_value=2000),
    seed=st.integers(min_value=0, max_value=1000),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_clearing_long_rows_matches_reference_when_sorted_whole_or_partitioned(
    labs, cap_share, levels, seed, dtype
):
    # Rows longer than FAST_SELECT_LENGTH (512) are sorted whole up to twice that, partitioned
    # beyond; few levels mean many ties, some bids are zero or negative.
    rng = np.random.default_rng(seed)
    bids = (rng.integers(-2, levels, (3, labs)) / levels).astype(dtype)
    bids[0, :5] = -0.0
    cap = round(cap_share * labs)
    market = MarketParams(type="clearing", token_cap=cap, reserve_price=0.0)
    keys = rng.random(labs)
    prices, won = clear_bids(bids, keys, market)
    for row in range(3):
        expected_price, expected_winners = clear_market_reference(
            bids[row].astype(float).tolist(), keys.tolist(), market
        )
        assert float(prices[row]) == expected_price
        assert set(np.flatnonzero(won[row]).tolist()) == expected_winners
