"""Grandfathered permits and the call market (MODEL.md §3b), from the rule to whole games."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_core import (
    ActionError,
    Phase,
    RoundInputs,
    ScenarioError,
    initial_state,
    load_preset,
    make_setup,
    parse_scenario,
    resolve_round,
    run_game,
    scenario_to_dict,
    theory_summary,
)
from sim_core.batch import replicate_draws
from sim_core.cli import main
from sim_core.enforcement import trade_transfers
from sim_core.market import clear_trades, grant_permits
from sim_core.round import ASK_NEGATIVE, ASK_WITHOUT_PERMIT, BID_BY_HOLDER, NO_TRADING
from sim_core.state import granted_permits
from sim_core.theory import expected_net_value_at_rank, expected_trade_price

from .reference import clear_trades_reference
from .test_sweep import assert_equal_to_games

INF = math.inf
KEEP = None


def trade(orders, keys=None):
    """Clear a market given as a list of ("bid", b) / ("ask", a) / ("keep",) per lab."""
    granted = np.array([order[0] != "bid" for order in orders])
    bids = np.array([order[1] if order[0] == "bid" else 0.0 for order in orders])
    asks = np.array([order[1] if order[0] == "ask" else INF for order in orders])
    keys = np.linspace(0.1, 0.9, len(orders)) if keys is None else np.array(keys, dtype=float)
    price, bought, sold = clear_trades(bids, asks, granted, keys)
    value = float(price)
    return (
        None if math.isnan(value) else value,
        set(np.flatnonzero(bought).tolist()),
        set(np.flatnonzero(sold).tolist()),
    )


# (name, orders, tie keys or None, price, buyers, sellers): worked out by hand from §3b.
HAND_COMPUTED = [
    ("no trade: bids below asks", [("bid", 0.2), ("ask", 0.5)], None, None, set(), set()),
    # b = 0.9, 0.5, 0.3; a = 0.2, 0.6: k = 1; [max(0.2, 0.5), min(0.9, 0.6)] = [0.5, 0.6].
    (
        "one trade",
        [("bid", 0.9), ("ask", 0.2), ("bid", 0.5), ("ask", 0.6), ("bid", 0.3)],
        None,
        0.55,
        {0},
        {1},
    ),
    # b = 0.9, 0.8; a = 0.1, 0.2: k = 2; b(3) missing -> lower a(2) = 0.2, a(3) missing -> 0.8.
    (
        "all trade",
        [("ask", 0.1), ("ask", 0.2), ("bid", 0.9), ("bid", 0.8)],
        None,
        0.5,
        {2, 3},
        {0, 1},
    ),
    ("a bid equal to an ask: no trade", [("bid", 0.5), ("ask", 0.5)], None, None, set(), set()),
    # b = 0.6, 0.6, 0.2; a = 0.1: k = 1, [max(0.1, 0.6), min(0.6, inf)] = 0.6; key 0.3 < 0.7.
    (
        "tie at the bid: the smaller key buys",
        [("bid", 0.6), ("bid", 0.6), ("bid", 0.2), ("ask", 0.1)],
        [0.7, 0.3, 0.5, 0.9],
        0.6,
        {1},
        {3},
    ),
    # a = 0.3, 0.3; b = 0.9: k = 1, [max(0.3, 0), min(0.9, 0.3)] = 0.3; key 0.2 < 0.8.
    (
        "tie at the ask: the smaller key sells",
        [("ask", 0.3), ("ask", 0.3), ("bid", 0.9)],
        [0.8, 0.2, 0.5],
        0.3,
        {2},
        {1},
    ),
    # k = 1; b(2) missing -> lower = a(1) = 0.1; upper = min(0.7, a(2) = 0.4) = 0.4.
    ("missing b(k+1)", [("bid", 0.7), ("ask", 0.1), ("ask", 0.4)], None, 0.25, {0}, {1}),
    # k = 1; lower = max(0.1, b(2) = 0.3) = 0.3; a(2) missing -> upper = b(1) = 0.7.
    ("missing a(k+1)", [("bid", 0.7), ("bid", 0.3), ("ask", 0.1)], None, 0.5, {0}, {2}),
    ("an ask of 0 sells to any bid above 0", [("ask", 0.0), ("bid", 0.4)], None, 0.2, {1}, {0}),
    ("a bid of 0 never buys", [("ask", 0.0), ("bid", 0.0)], None, None, set(), set()),
    ("a holder that keeps never sells", [("keep",), ("bid", 0.9)], None, None, set(), set()),
    # The keeper is not an ask: a(2) is missing, so upper = b(1).
    ("a keeper is no a(k+1)", [("ask", 0.2), ("keep",), ("bid", 0.6)], None, 0.4, {2}, {0}),
]


@pytest.mark.parametrize(
    ("orders", "keys", "price", "buyers", "sellers"),
    [pytest.param(*case[1:], id=case[0]) for case in HAND_COMPUTED],
)
def test_call_market_matches_hand_computed_table(orders, keys, price, buyers, sellers):
    got_price, got_buyers, got_sellers = trade(orders, keys)
    assert got_price == (None if price is None else pytest.approx(price, abs=1e-15))
    assert (got_buyers, got_sellers) == (buyers, sellers)


def test_every_tied_lab_can_win_the_tie():
    orders = [("bid", 0.6), ("bid", 0.6), ("bid", 0.6), ("ask", 0.1)]
    winners = {min(trade(orders, np.random.default_rng(seed).random(4))[1]) for seed in range(40)}
    assert winners == {0, 1, 2}


def test_call_market_clears_rows_of_a_batch_as_it_clears_each_alone():
    rng = np.random.default_rng(3)
    bids = rng.choice([0.0, 0.2, 0.5, 0.8], size=(4, 3, 7))
    asks = rng.choice([0.0, 0.2, 0.5, INF], size=(4, 3, 7))
    granted = rng.random((4, 3, 7)) < 0.5
    keys = rng.random(7)  # one key per lab, shared by the batch
    price, bought, sold = clear_trades(bids, asks, granted, keys)
    assert price.shape == (4, 3) and bought.shape == sold.shape == (4, 3, 7)
    for i in range(4):
        for j in range(3):
            alone = clear_trades(bids[i, j], asks[i, j], granted[i, j], keys)
            np.testing.assert_array_equal(price[i, j], alone[0])
            np.testing.assert_array_equal(bought[i, j], alone[1])
            np.testing.assert_array_equal(sold[i, j], alone[2])


LEVELS = [0.0, 0.05, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0]


@st.composite
def markets(draw):
    """Orders with many ties: holders ask a level or keep, the others bid a level."""
    labs = draw(st.integers(min_value=1, max_value=25))
    granted = draw(st.lists(st.booleans(), min_size=labs, max_size=labs))
    bids = draw(st.lists(st.sampled_from(LEVELS), min_size=labs, max_size=labs))
    asks = draw(st.lists(st.sampled_from([*LEVELS, None]), min_size=labs, max_size=labs))
    keys = draw(
        st.lists(
            st.floats(min_value=0, max_value=1, exclude_max=True), min_size=labs, max_size=labs
        )
    )
    return bids, asks, granted, keys


@settings(max_examples=300, deadline=None)
@given(markets())
def test_call_market_properties(market):
    bids, asks, granted, keys = market
    holders = np.array(granted)
    ask_array = np.array([INF if ask is None else ask for ask in asks])
    price, bought, sold = clear_trades(np.array(bids), ask_array, holders, np.array(keys))
    trades = int(bought.sum())
    eligible_bidders = sum(1 for bid, g in zip(bids, granted, strict=True) if not g and bid > 0)
    assert trades <= holders.sum() and trades <= eligible_bidders
    assert int(sold.sum()) == trades  # every buyer is matched with a seller
    after = (holders & ~sold) | bought
    assert after.sum() == holders.sum()  # permits are conserved
    assert not (bought & holders).any() and not (sold & ~holders).any()
    if trades == 0:
        assert math.isnan(float(price))
        return
    price = float(price)
    # Money is conserved: each buyer pays exactly what its seller receives.
    transfers = trade_transfers(price, bought, sold)
    assert (transfers[bought] == -price).all() and (transfers[sold] == price).all()
    assert (transfers[~(bought | sold)] == 0).all()
    # The price lies in [a(k), b(k)], and no trade leaves either side worse off at it.
    bid_array = np.array(bids)
    assert ask_array[sold].max() <= price <= bid_array[bought].min()
    # Nobody left out would rather have traded at the price.
    waiting = ~holders & ~bought & (bid_array > 0)
    assert (bid_array[waiting] <= price).all()
    assert (ask_array[holders & ~sold] >= price).all()
    # And it is §3b to the letter (the plain reference).
    expected = clear_trades_reference(bids, asks, granted, keys)
    assert price == expected[0]
    assert set(np.flatnonzero(bought).tolist()) == expected[1]
    assert set(np.flatnonzero(sold).tolist()) == expected[2]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=2, max_value=30).flatmap(
        lambda labs: st.tuples(
            st.lists(
                st.floats(min_value=0.001, max_value=1.0), min_size=labs, max_size=labs, unique=True
            ),
            st.integers(min_value=0, max_value=labs),
            st.integers(min_value=0, max_value=2**32 - 1),
        )
    )
)
def test_trading_among_truthful_labs_ends_where_the_auction_would(case):
    # Coase: whoever is granted the permits, the Q highest values hold them after trading.
    values, cap, seed = case
    values = np.array(values)
    rng = np.random.default_rng(seed)
    granted = grant_permits(rng.random(values.size), cap)
    _, bought, sold = clear_trades(values, values, granted, rng.random(values.size))
    after = (granted & ~sold) | bought
    top = set(np.argsort(-values)[:cap].tolist())
    assert set(np.flatnonzero(after).tolist()) == top


@pytest.mark.parametrize("grant", ["incumbents", "lottery"])
def test_rational_bots_trade_to_the_auction_allocation_on_the_same_draws(grant):
    auction = load_preset("targeted_audit")
    granted = parse_scenario(
        scenario_to_dict(auction)
        | {"market": {"token_cap": 10, "allocation": "grandfathered", "grant": grant}}
    )
    traded_somewhere = False
    for seed in range(25):
        by_auction = resolve_round(*start(auction, seed), RoundInputs())
        by_trade = resolve_round(*start(granted, seed), RoundInputs())
        bids = np.sort(by_auction.bids)[::-1]
        if bids[9] == bids[10]:  # a tie at the margin: either lab may hold the permit
            continue
        np.testing.assert_array_equal(by_trade.market.won, by_auction.market.won)
        np.testing.assert_array_equal(by_trade.values, by_auction.values)  # the same draws
        traded_somewhere |= by_trade.trade.trades > 0
        # The price lies between the (Q+1)-th and Q-th highest value, like the auction's.
        assert bids[10] <= by_trade.market.price <= bids[9]
    assert traded_somewhere


def start(scenario, seed=None, *, human_governor=False):
    setup = make_setup(scenario, seed=seed, human_governor=human_governor)
    return setup, initial_state(setup)


def grandfathered(**market):
    return parse_scenario(
        {
            "labs": {"count": 8, "endowment": 2.0},
            "market": {"type": "clearing", "token_cap": 3, "allocation": "grandfathered"} | market,
            "governor": {"policy": "policy"},
        }
    )


def test_incumbents_hold_every_round_and_a_lottery_draws_afresh():
    setup = make_setup(grandfathered())
    rounds = [granted_permits(setup, t) for t in range(1, 6)]
    assert all(g.sum() == 3 for g in rounds)
    assert all((g == rounds[0]).all() for g in rounds)
    lottery = make_setup(grandfathered(grant="lottery"))
    draws = {tuple(np.flatnonzero(granted_permits(lottery, t))) for t in range(1, 11)}
    assert len(draws) > 3 and all(len(d) == 3 for d in draws)
    every = make_setup(grandfathered(token_cap=12))
    assert granted_permits(every, 1).all()
    assert granted_permits(make_setup(load_preset("targeted_audit")), 1) is None


def test_the_grant_shifts_no_other_draw():
    # Granted or auctioned, a game draws the same values, risk profiles and strategies.
    auction = parse_scenario({"labs": {"count": 8}, "market": {"token_cap": 3}})
    plain, granted = make_setup(auction), make_setup(grandfathered())
    np.testing.assert_array_equal(plain.risk_profile, granted.risk_profile)
    np.testing.assert_array_equal(plain.base_values, granted.base_values)
    np.testing.assert_array_equal(plain.strategies, granted.strategies)


def test_humans_ask_keep_and_bid_phase_by_phase():
    setup, state = start(grandfathered())
    holders = np.flatnonzero(granted_permits(setup, 1)).tolist()
    others = [lab for lab in range(8) if lab not in holders]
    seller, keeper, buyer = holders[0], holders[1], others[0]
    humans = frozenset({seller, keeper, buyer})
    waiting = resolve_round(setup, state, RoundInputs(human_labs=humans))
    assert waiting.awaiting is Phase.BIDDING and waiting.waiting_for == humans
    assert waiting.granted[seller] and not waiting.granted[buyer]
    part = resolve_round(setup, state, RoundInputs(asks={seller: 0.0}, human_labs=humans))
    assert part.waiting_for == {keeper, buyer}
    inputs = RoundInputs(asks={seller: 0.0, keeper: KEEP}, bids={buyer: 2.0}, human_labs=humans)
    progress = resolve_round(setup, state, inputs)
    assert progress.awaiting is not Phase.BIDDING
    trade_result = progress.trade
    assert trade_result.bought[buyer] and trade_result.sold[seller]
    assert not trade_result.sold[keeper] and progress.market.won[keeper]
    assert progress.market.won[buyer] and not progress.market.won[seller]
    price = progress.market.price
    assert 0.0 <= price <= 2.0
    # Settle (bots decide the rest): the buyer pays the price the seller receives.
    settled = resolve_round(
        setup, state, replace(inputs, runs={seller: False, **progress_runs(progress, humans)})
    )
    payoffs = settled.settlement.payoffs
    assert payoffs[buyer] == pytest.approx(settled.net_values[buyer] - price)
    assert payoffs[seller] == pytest.approx(price)  # sold and stayed idle
    assert settled.metrics.trades == trade_result.trades
    assert settled.metrics.revenue == pytest.approx(
        settled.metrics.caught * 0.5  # fines and collateral only: trades pay labs
    )


def progress_runs(progress, humans):
    """Idle for every human lab without a permit after trading (but the seller, given apart)."""
    return {lab: False for lab in humans if not progress.market.won[lab]}


def test_moves_the_trading_rules_forbid_are_refused():
    setup, state = start(grandfathered())
    holder = int(np.flatnonzero(granted_permits(setup, 1))[0])
    other = int(np.flatnonzero(~granted_permits(setup, 1))[0])
    with pytest.raises(ActionError, match=BID_BY_HOLDER.format(lab=holder + 1)):
        resolve_round(setup, state, RoundInputs(bids={holder: 0.3}))
    with pytest.raises(ActionError, match=ASK_WITHOUT_PERMIT.format(lab=other + 1)):
        resolve_round(setup, state, RoundInputs(asks={other: 0.3}))
    with pytest.raises(ActionError, match="cannot be negative"):
        resolve_round(setup, state, RoundInputs(asks={holder: -0.1}))
    with pytest.raises(ActionError, match="must be a number"):
        resolve_round(setup, state, RoundInputs(asks={holder: "0.1"}))
    with pytest.raises(ActionError, match="must be a number"):
        resolve_round(setup, state, RoundInputs(asks={holder: math.inf}))
    auction_setup, auction_state = start(load_preset("targeted_audit"))
    with pytest.raises(ActionError, match=NO_TRADING):
        resolve_round(auction_setup, auction_state, RoundInputs(asks={0: 0.1}))
    assert ASK_NEGATIVE.format(ask=-1.0).startswith("An ask")


def test_a_round_without_a_trade_has_no_price_and_optimal_keeps_its_pi1():
    # Every lab holds a permit (Q >= N): nobody can buy, so nothing trades in any round.
    scenario = parse_scenario(
        {
            "labs": {"count": 4},
            "market": {"type": "clearing", "token_cap": 4, "allocation": "grandfathered"},
            "audit": {"high_prob": 0.37},
            "governor": {"policy": "optimal"},
        }
    )
    game = run_game(scenario)
    assert all(row.price is None and row.trades == 0 for row in game.rows)
    assert game.summary["price"] is None and game.summary["trades"] == 0
    setup, state = start(scenario)
    assert resolve_round(setup, state, RoundInputs()).announced_high_prob == 0.37


def test_scenario_keys_are_validated_naming_the_key():
    def fails(market):
        with pytest.raises(ScenarioError) as error:
            parse_scenario({"market": market})
        return error.value.key

    assert fails({"type": "fixed_price", "allocation": "grandfathered"}) == "market.allocation"
    assert fails({"allocation": "grandfathered", "reserve_price": 0.1}) == "market.reserve_price"
    assert fails({"allocation": "free"}) == "market.allocation"
    assert fails({"allocation": "grandfathered", "grant": "auction"}) == "market.grant"
    assert fails({"grant": "lottery"}) == "market.grant"
    assert fails({"allocation": True}) == "market.allocation"
    document = scenario_to_dict(grandfathered(grant="lottery"))
    assert document["market"] | {} == {
        "type": "clearing",
        "token_cap": 3,
        "reserve_price": 0.0,
        "allocation": "grandfathered",
        "grant": "lottery",
    }
    assert parse_scenario(document) == grandfathered(grant="lottery")
    # Auction documents look as they did before §3b.
    assert "allocation" not in scenario_to_dict(load_preset("targeted_audit"))["market"]


def test_grandfathered_preset_is_scenario_3_with_granted_permits():
    preset, scenario_3 = load_preset("grandfathered"), load_preset("targeted_audit")
    assert preset.market.grandfathered and preset.market.grant == "incumbents"
    assert preset.audit == scenario_3.audit and preset.governor == scenario_3.governor
    assert replace(preset.market, allocation="auction") == scenario_3.market


@pytest.mark.parametrize("grant", ["incumbents", "lottery"])
def test_sweep_cells_of_a_grandfathered_scenario_equal_whole_games(grant):
    scenario = parse_scenario(
        scenario_to_dict(load_preset("grandfathered"))
        | {
            "labs": scenario_to_dict(load_preset("grandfathered"))["labs"]
            | {"count": 9, "endowment": 0.8, "strategy": {"rational": 0.5, "random": 0.5}},
            "market": {"token_cap": 4, "allocation": "grandfathered", "grant": grant},
        }
    )
    assert_equal_to_games(scenario, [0.05, 0.5, 2.5], [0.9, 0.5, 0.25], seeds=[3, 11], rounds=8)


def test_sweep_draws_the_grant_of_each_game():
    scenario = grandfathered(grant="lottery")
    draws = replicate_draws(scenario, seeds=[5, 6], rounds=3)
    assert draws.grant_keys.shape == (3, 2, 8)
    setup = make_setup(scenario, seed=6)
    expected = granted_permits(setup, 2)
    np.testing.assert_array_equal(grant_permits(draws.grant_keys[1, 1], 3), expected)


def test_theory_of_trading():
    scenario = load_preset("grandfathered")
    summary = theory_summary(scenario)
    trade_theory = summary.trade
    upper = expected_net_value_at_rank(scenario, 10)
    lower = expected_net_value_at_rank(scenario, 11)
    assert lower < trade_theory.expected_trade_price < upper
    assert summary.expected_price == trade_theory.expected_trade_price
    assert trade_theory.expected_trades == pytest.approx(10 * 10 / 20)
    assert trade_theory.value_after_trading > trade_theory.value_as_granted
    assert trade_theory.grandfathered_revenue == 0 and trade_theory.auction_revenue > 0
    assert theory_summary(load_preset("targeted_audit")).trade is None
    assert expected_trade_price(grandfathered(token_cap=8)) is None


def test_expected_trade_price_matches_truthful_games():
    scenario = load_preset("grandfathered")
    truthful = replace(
        scenario,
        labs=replace(scenario.labs, strategy={"truthful": 1.0}),
        market=replace(scenario.market, grant="lottery"),
    )
    prices = [row.price for seed in range(20) for row in run_game(truthful, seed=seed).rows]
    traded = [price for price in prices if price is not None]
    assert np.mean(traded) == pytest.approx(expected_trade_price(truthful), abs=0.03)


def test_command_line_runs_a_grandfathered_game(capsys, tmp_path):
    assert main(["run", "grandfathered", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["summary"]["trades"] > 0
    assert all("trades" in row for row in document["rounds"])
    everyone = tmp_path / "everyone.json"
    everyone.write_text(
        json.dumps(
            {"labs": {"count": 3}, "market": {"token_cap": 3, "allocation": "grandfathered"}}
        )
    )
    assert main(["run", str(everyone), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["summary"]["price"] is None
    assert [row["price"] for row in document["rounds"]] == [None] * 10
    assert main(["theory", "grandfathered", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trade"]["grandfathered_revenue"] == 0
    sweep_args = ["--grid", "3x3", "--replicates", "2", "--labs", "10", "--json"]
    assert main(["sweep", "grandfathered", *sweep_args]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert len(sweep["values"]) == 3
