"""A game with granted permits traded among the labs (MODEL.md §3b), over the JSON protocol."""

import csv
import io

import numpy as np
import pytest

from permitgame import (
    broadcast,
    charts,
    exports,
    host_selectors,
    realtime,
    selectors,
    services,
    ticker,
)
from permitgame.models import Action, Actor, Game, Move, RoundRecord, Status
from permitgame.replay import replay_game
from sim_core import make_setup, parse_scenario
from sim_core.state import granted_permits
from tests.permitgame.wire import Socket, api_path, db

UNTIMED = {"bidding": None, "compliance": None, "audit": None, "results": 0}
SCENARIO = {
    "rounds": 2,
    "labs": {"count": 6},
    "market": {"type": "clearing", "token_cap": 3, "allocation": "grandfathered"},
    "governor": {"policy": "policy"},
}


def seed_granting(scenario, holders, others):
    """The first seed whose incumbents include ``holders`` and none of ``others``."""
    for seed in range(1000):
        granted = granted_permits(make_setup(scenario, seed=seed), 1)
        if all(granted[lab] for lab in holders) and not any(granted[lab] for lab in others):
            return seed
    raise AssertionError("no such seed")


def setup_game(durations=UNTIMED):
    scenario = parse_scenario(SCENARIO)
    seed = seed_granting(scenario, holders=(0, 1), others=(2,))
    game = services.game_create(scenario=scenario, human_labs=3, seed=seed, durations=durations)
    seats = [services.seat_join(game=game, nickname=name) for name in ("Sal", "Kim", "Bea")]
    assert [seat.lab_index for seat in seats] == [0, 1, 2]
    return game, seats


async def last(socket, kind):
    return [m for m in socket.received if m["type"] == kind][-1]


@pytest.mark.django_db(transaction=True)
async def test_a_holder_sells_a_holder_keeps_and_a_non_holder_buys_over_json():
    game, (seller, keeper, buyer) = await db(setup_game)()
    sockets = {
        seat.pk: Socket(api_path(game.code, seat.token), fmt="json")
        for seat in (seller, keeper, buyer)
    }
    sell, keep, buy = (sockets[seat.pk] for seat in (seller, keeper, buyer))
    try:
        for socket in sockets.values():
            state = await socket.connect()
            assert state["rules"]["allocation"] == "grandfathered"
            assert state["rules"]["grant"] == "incumbents"
        await db(services.game_start)(game=game)
        for socket in sockets.values():
            await socket.drain()
        for round_no in (1, 2):
            assert (await last(sell, "you"))["granted"] is True
            assert (await last(buy, "you"))["granted"] is False
            # Wrong moves for one's position are refused with a code, and change nothing.
            refused = await sell.send({"type": "bid", "round": round_no, "amount": 0.1})
            assert refused["type"] == "error" and refused["code"] == "not_allowed"
            refused = await buy.send({"type": "ask", "round": round_no, "amount": 0.1})
            assert refused["type"] == "error" and refused["code"] == "not_allowed"
            refused = await sell.send({"type": "ask", "round": round_no, "amount": -1})
            assert refused["type"] == "error" and refused["code"] == "not_allowed"
            refused = await sell.send({"type": "ask", "round": round_no})
            assert refused["type"] == "error" and refused["code"] == "invalid"
            # The moves: ask 0 (sells to any bid), keep, bid all one's wealth (buys).
            ack = await sell.send({"type": "ask", "round": round_no, "amount": 0})
            assert ack["type"] == "ack" and ack["command"] == "ask" and ack["amount"] == 0.0
            ack = await keep.send({"type": "keep", "round": round_no})
            assert ack["type"] == "ack" and ack["command"] == "keep"
            wealth = (await last(buy, "you"))["wealth"]
            ack = await buy.send({"type": "bid", "round": round_no, "amount": wealth})
            assert ack["type"] == "ack"
            for socket in sockets.values():
                await socket.drain()
            market = await last(buy, "market")
            assert market["round"] == round_no and market["trades"] >= 1
            assert market["price"] is not None and 0 <= market["price"] <= wealth
            assert buyer.player_id in market["winners"] and keeper.player_id in market["winners"]
            assert seller.player_id not in market["winners"]
            you = await last(buy, "you")
            assert you["bought"] is True and you["sold"] is False and you["won"] is True
            you = await last(sell, "you")
            assert you["sold"] is True and you["won"] is False and you["ask"] == 0.0
            you = await last(keep, "you")
            assert you["kept"] is True and you["sold"] is False and you["won"] is True
            # The seller, now without a permit, chooses to stay idle.
            ack = await sell.send({"type": "decide", "round": round_no, "run": False})
            assert ack["type"] == "ack"
            for socket in sockets.values():
                await socket.drain()
    finally:
        for socket in sockets.values():
            await socket.close()

    game = await db(Game.objects.get)(pk=game.pk)
    assert game.status == Status.FINISHED
    records = await db(lambda: list(RoundRecord.objects.filter(game=game).order_by("round_no")))()
    for record in records:
        assert record.trade["sold"][0] and record.trade["bought"][2]
        assert not record.trade["sold"][1] and record.trade["asks"][1] is None
        assert record.metrics["trades"] >= 1 and record.price is not None
        # The buyer paid the price the seller received: its payoff is the price, idle.
        assert record.payoffs[0] == pytest.approx(record.price)
        assert record.payoffs[2] == pytest.approx(record.values[2] - 0.1 - record.price)
    results = [m for m in sell.received if m["type"] == "your_results"]
    assert [m["sold"] for m in results] == [True, True]
    assert [m["price_received"] for m in results] == [r.price for r in records]
    # The log holds the humans' asks, keeps and bids, and a replay reproduces every round.
    asks = await db(
        lambda: list(Move.objects.filter(game=game, action=Action.ASK, actor=Actor.HUMAN))
    )()
    assert sorted(m.payload["amount"] is None for m in asks) == [False, False, True, True]
    report = await db(replay_game)(game)
    assert report.ok, report.summary()
    # The export's trading columns.
    rows = list(csv.DictReader(io.StringIO(await db(exports.table_csv)(game, "labs"))))
    first = {int(row["lab"]): row for row in rows if row["round"] == "1"}
    assert (first[1]["granted"], first[1]["sold"], first[1]["asked"]) == ("1", "1", "0.0")
    assert (first[2]["granted"], first[2]["kept"], first[2]["asked"]) == ("1", "1", "")
    assert (first[3]["granted"], first[3]["bought"]) == ("0", "1")
    assert float(first[3]["price"]) == records[0].price
    metrics = list(csv.DictReader(io.StringIO(await db(exports.table_csv)(game, "metrics"))))
    assert [int(row["trades"]) for row in metrics] == [r.metrics["trades"] for r in records]


@pytest.mark.django_db
def test_a_holder_who_sends_nothing_keeps_its_permit_by_default(frozen_clock):
    game, (seller, keeper, buyer) = setup_game({"bidding": 30, "compliance": 30, "results": 0})
    for seat in (seller, keeper, buyer):
        name = f"test.{seat.pk}"
        services.seat_connect(seat=seat, channel_name=name)
        realtime.LOCAL_CHANNELS.add(name)
    services.game_start(game=game)
    services.round_submit_bid(seat=buyer, round_no=1, amount=1.0)
    frozen_clock.advance(31)
    ticker.tick()
    defaults = Move.objects.filter(game=game, round_no=1, actor=Actor.DEFAULT, action=Action.ASK)
    assert sorted(m.seat_id for m in defaults) == sorted([seller.pk, keeper.pk])
    assert all(m.payload == {"amount": None} for m in defaults)


@pytest.mark.django_db
def test_projector_charts_show_the_traded_price_and_the_trades():
    game, _ = setup_game()
    game = services.game_play_out(game=game)
    public = selectors.game_screens(game).public
    html = broadcast.host_html(public, host_selectors.console_seats(game), with_charts=True)
    assert "Traded price" in html and "Permits held and traded" in html
    records = list(RoundRecord.objects.filter(game=game).order_by("round_no"))
    chart = next(c for c in charts_of(public) if c.name == "permits")
    assert [row.split(",")[-1] for row in chart.csv.splitlines()[1:]] == [
        str(float(r.metrics["trades"])) for r in records
    ]
    # A round without a trade has no price: a gap in the chart, an empty cell in its CSV.
    no_trade = [{**r.metrics, "round": r.round_no, "price": None} for r in records]
    (price,) = [c for c in charts.round_charts(no_trade, rounds=2, token_cap=3, lab_count=6,
                                                traded=True) if c.name == "price"]  # fmt: skip
    assert price.title == "Traded price" and price.csv.splitlines()[1].endswith(",")


def charts_of(public):
    return charts.round_charts(
        public.results, rounds=public.rounds, token_cap=3, lab_count=6, traded=True
    )


def test_client_bots_ask_as_holders_and_bid_otherwise_by_sim_core_strategies():
    from permitgame.client import JoinInfo, Player
    from sim_core.strategies import STRATEGIES, lab_asks

    info = JoinInfo(1, "t", "lab", "Bot", "R", "CODE", "ws://x")
    you = {"round": 1, "phase": "bidding", "owes_move": True, "net_value": 0.6, "wealth": 0.2,
           "risk_profile": 1.0, "p_eff": 0.5, "punishment": 2.0}  # fmt: skip
    holder = Player(info, strategy="truthful", you={**you, "granted": True})
    command = holder.next_command()
    expected = lab_asks(np.array([STRATEGIES["truthful"]]), np.array([0.6]), np.array([1.0]),
                        0.0, np.zeros(1))[0]  # fmt: skip
    assert command == {"type": "ask", "round": 1, "amount": float(expected)}
    assert command["amount"] == pytest.approx(0.6)  # the value of a permit, above the wealth
    bidder = Player(info, strategy="truthful", you={**you, "granted": False})
    assert bidder.next_command() == {"type": "bid", "round": 1, "amount": 0.2}  # wealth caps


@pytest.mark.django_db
def test_debrief_sets_the_class_beside_the_auction_on_the_same_draws():
    from django.template.loader import render_to_string

    from permitgame import debrief

    scenario = parse_scenario({**SCENARIO, "rounds": 4, "governor": {"policy": "policy"}})
    game = services.game_create(scenario=scenario, durations=UNTIMED)
    services.game_start(game=game)  # bots in every seat: the game plays to its end
    comparison = debrief.trade_comparison(game)
    assert comparison.rounds == 4 and comparison.trades > 0
    # Coase: rational bots trade to the auction's holders (up to ties) ...
    assert comparison.same_share == 1.0
    # ... but the money goes to the sellers, not the government.
    assert comparison.sellers_income > 0
    assert comparison.revenue < comparison.auction_revenue
    summary = debrief.debrief_summary(game)
    html = render_to_string("permitgame/console/debrief.html#trade", {"summary": summary})
    assert "what Coase predicts" in html and "100%" in html
    auction = services.game_create(scenario=parse_scenario({"rounds": 1}), durations=UNTIMED)
    services.game_start(game=auction)
    assert debrief.trade_comparison(auction) is None
