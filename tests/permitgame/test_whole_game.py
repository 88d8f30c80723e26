"""A whole game over both wire formats: two human labs (JSON and HTML), a human governor, bots."""

import pytest

from permitgame import selectors, services
from permitgame.models import Action, Actor, Game, Move, RoundRecord, Status
from sim_core import RoundInputs, initial_state, make_setup, parse_scenario, resolve_round
from tests.permitgame.wire import Socket, api_path, db, html_path

UNTIMED = {"bidding": None, "compliance": None, "audit": None, "results": 0}


def numbers_in(message):
    """Every number anywhere in a JSON message."""
    if isinstance(message, bool):
        return []
    if isinstance(message, int | float):
        return [float(message)]
    if isinstance(message, dict):
        return [n for value in message.values() for n in numbers_in(value)]
    if isinstance(message, list):
        return [n for value in message for n in numbers_in(value)]
    return []


def setup_game(scenario):
    game = services.game_create(
        scenario=scenario, human_labs=2, human_governor=True, durations=UNTIMED, live_standings=True
    )
    lab_a = services.seat_join(game=game, nickname="Ana")
    lab_b = services.seat_join(game=game, nickname="Ben")
    governor = services.seat_join(game=game, nickname="Gil")
    return game, lab_a, lab_b, governor


async def play_to_end(game, sockets):
    """Act for every human who owes a move, through its socket, until the game is over."""
    for _ in range(50):
        game = await db(Game.objects.get)(pk=game.pk)
        if game.status == Status.FINISHED:
            return game
        screens = await db(selectors.game_screens)(game)
        sent = 0
        for seat, socket in sockets:
            if seat.lab_index is not None:
                view = screens.labs[seat.pk]
                if not view.owes_move:
                    continue
                if game.phase == "bidding":
                    amount = round(max(0.0, view.net_value) * 0.8, 4)
                    reply = await socket.send(
                        {"type": "bid", "round": game.round_no, "amount": amount}
                    )
                else:
                    run = view.net_value > view.expected_penalty
                    reply = await socket.send(
                        {"type": "decide", "round": game.round_no, "run": run}
                    )
            else:
                if not screens.governor.owes_move:
                    continue
                flagged = [row.player_id for row in screens.governor.signals if row.signal]
                reply = await socket.send(
                    {"type": "audit", "round": game.round_no, "labs": flagged}
                )
            if socket.fmt == "json":
                assert reply["type"] == "ack", reply
            else:
                assert "flash-ok" in reply, reply
            sent += 1
        assert sent, f"nobody owes a move in {game.status} round {game.round_no} {game.phase}"
        for _, socket in sockets:
            await socket.drain(quiet=0.05)
    raise AssertionError("the game did not end")


@pytest.mark.django_db(transaction=True)
async def test_whole_game_ends_with_results_each_seat_may_see_when_two_labs_and_governor_are_human(
    small_scenario,
):
    game, lab_a, lab_b, governor = await db(setup_game)(small_scenario)
    sock_a = Socket(api_path(game.code, lab_a.token), fmt="json")
    sock_b = Socket(html_path(game.code, lab_b.token), fmt="html")
    sock_g = Socket(api_path(game.code, governor.token), fmt="json")
    try:
        state_a = await sock_a.connect()
        assert state_a["type"] == "state" and state_a["game"]["status"] == "lobby"
        assert state_a["you"]["player_id"] == lab_a.player_id and state_a["you"]["role"] == "lab"
        assert 'id="phase"' in await sock_b.connect()
        state_g = await sock_g.connect()
        assert state_g["you"]["role"] == "governor" and state_g["signals"] is None

        await db(services.game_start)(game=game)
        for socket in (sock_a, sock_b, sock_g):
            await socket.drain()
        phases = [m for m in sock_a.received if m["type"] == "phase"]
        assert phases[-1]["phase"] == "bidding" and phases[-1]["round"] == 1

        game = await play_to_end(game, [(lab_a, sock_a), (lab_b, sock_b), (governor, sock_g)])
        for socket in (sock_a, sock_b, sock_g):
            await socket.drain()
    finally:
        for socket in (sock_a, sock_b, sock_g):
            await socket.close()

    records = await db(lambda: list(RoundRecord.objects.filter(game=game).order_by("round_no")))()
    assert [r.round_no for r in records] == [1, 2]

    # Lab A (JSON) saw the public events and its own, never a signal or another lab's value.
    types_a = {m["type"] for m in sock_a.received}
    assert {
        "state",
        "phase",
        "market",
        "round_results",
        "you",
        "your_results",
        "game_over",
        "ack",
    } <= types_a
    assert not types_a & {"signals", "audit"}
    others = {
        value
        for record in records
        for lab, value in enumerate(record.values)
        if lab != lab_a.lab_index
    }
    seen = {n for m in sock_a.received for n in numbers_in(m)}
    assert not others & seen
    for message in sock_a.received:
        assert "signals" not in message and "audits" not in message
        if message["type"] == "you":
            assert message["player_id"] == lab_a.player_id
    own_results = [m for m in sock_a.received if m["type"] == "your_results"]
    assert [m["round"] for m in own_results] == [1, 2]
    assert [m["payoff"] for m in own_results] == [r.payoffs[lab_a.lab_index] for r in records]
    game_over = [m for m in sock_a.received if m["type"] == "game_over"][-1]
    assert len(game_over["standings"]) == small_scenario.labs.count
    # Its own place is sent live (`rank` in `you`), by the scores summed from the records.
    scores = [sum(r.payoffs[lab] for r in records) for lab in range(small_scenario.labs.count)]
    order = sorted(range(len(scores)), key=lambda lab: (-scores[lab], lab))
    ranks = [m["rank"] for m in sock_a.received if m["type"] == "you" and m["rank"] is not None]
    assert ranks and ranks[-1] == order.index(lab_a.lab_index) + 1

    # Lab B (HTML) got fragments for htmx: its own panel, never the governor's.
    html_b = "".join(sock_b.received)
    assert 'id="you" hx-swap-oob="morph"' in html_b and 'id="market"' in html_b
    for governor_only in ('id="signals"', 'id="governor-action"', 'id="audit-results"'):
        assert governor_only not in html_b
    assert 'id="game-over"' in html_b and "Final ranking" in html_b

    # The governor saw every lab's signal each round, and the audit results.
    signals = [m for m in sock_g.received if m["type"] == "signals"]
    assert [m["round"] for m in signals] == [1, 2]
    assert all(len(m["labs"]) == small_scenario.labs.count for m in signals)
    for message, record in zip(signals, records, strict=True):
        assert [row["signal"] for row in message["labs"]] == [int(s) for s in record.signals]
    audits = [m for m in sock_g.received if m["type"] == "audit"]
    assert [m["caught"] for m in audits] == [
        [i + 1 for i, c in enumerate(r.caught) if c] for r in records
    ]
    assert not any(m["type"] == "you" for m in sock_g.received)

    # Every move of the humans is in the log, by a human, with how long it took.
    human_moves = await db(
        lambda: list(
            Move.objects.filter(game=game, actor=Actor.HUMAN, action__in=["bid", "decide", "audit"])
        )
    )()
    assert human_moves and all(m.latency_ms is not None for m in human_moves)
    assert {m.seat_id for m in human_moves} == {lab_a.pk, lab_b.pk, governor.pk}


def replay(game):
    """Recompute every round from the seed and the logged moves alone, through sim_core."""
    scenario = parse_scenario(game.scenario)
    setup = make_setup(scenario, seed=game.seed, human_governor=game.human_governor)
    state = initial_state(setup)
    rows = []
    for round_no in range(1, game.round_no + 1):
        moves = Move.objects.filter(
            game=game, round_no=round_no, action__in=["bid", "decide", "audit"]
        )
        bids, runs, audits = {}, {}, None
        for move in moves.select_related("seat"):
            if move.action == Action.BID:
                bids[move.seat.lab_index] = move.payload["amount"]
            elif move.action == Action.DECIDE:
                runs[move.seat.lab_index] = move.payload["run"]
            else:
                audits = frozenset(move.payload["labs"])
        progress = resolve_round(setup, state, RoundInputs(bids=bids, runs=runs, audits=audits))
        rows.append((progress.metrics.as_dict(), [float(w) for w in progress.settlement.wealth]))
        state = progress.next_state
    return rows


@pytest.mark.django_db(transaction=True)
async def test_outcome_equals_sim_core_replay_of_the_log_when_humans_played(small_scenario):
    game, lab_a, lab_b, governor = await db(setup_game)(small_scenario)
    sockets = [
        (lab_a, Socket(api_path(game.code, lab_a.token), fmt="json")),
        (lab_b, Socket(html_path(game.code, lab_b.token), fmt="html")),
        (governor, Socket(api_path(game.code, governor.token), fmt="json")),
    ]
    try:
        for _, socket in sockets:
            await socket.connect()
        await db(services.game_start)(game=game)
        game = await play_to_end(game, sockets)
    finally:
        for _, socket in sockets:
            await socket.close()

    def stored():
        return [
            (r.metrics, r.wealth)
            for r in RoundRecord.objects.filter(game=game).order_by("round_no")
        ]

    assert await db(replay)(game) == await db(stored)()
