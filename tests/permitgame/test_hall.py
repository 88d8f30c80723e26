"""A lecture hall in one room: the mechanisms that keep a phase O(N) and lose nothing silently.

Not timed (the speed is bench/load's): these prove that one move resolves its round once with a
bounded number of queries, that moves and joins reach the room coalesced (fewer messages than
moves), that every message carries a sequence number whose gap a client sees and mends with a
``sync``, that an event dropped from a full channel is noticed, and that the socket answers any
malformed frame with an error and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, replace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from permitgame import bridge, broadcast, delivery, selectors, services, ticker
from permitgame.client import JoinInfo, Player, join
from permitgame.clock import now as clock_now
from permitgame.consumers import ApiConsumer
from permitgame.models import Game, Move
from sim_core import Phase, load_preset
from tests.permitgame.wire import (
    Socket,
    api_path,
    assert_sync_sends_the_current_state,
    db,
    html_path,
)

TIMED = {"bidding": 60, "compliance": 60, "audit": 60, "results": 10}


def hall_scenario(labs: int, rounds: int = 2) -> Any:
    scenario = load_preset("targeted_audit")
    return scenario.with_changes(
        rounds=rounds,
        labs=replace(scenario.labs, count=labs),
        market=replace(scenario.market, token_cap=max(1, labs // 3)),
    )


def hall(
    labs: int, humans: int, *, rounds: int = 2, online: bool = False
) -> tuple[Game, list[Any]]:
    game = services.game_create(
        scenario=hall_scenario(labs, rounds), human_labs=humans, durations=TIMED
    )
    seats = [services.seat_join(game=game, nickname=f"p{i}") for i in range(humans)]
    if online:  # a socket open for each (the deadline gives them defaults, not bots)
        for seat in seats:
            services.seat_connect(seat=seat, channel_name=f"test-{seat.pk}")
    return game, seats


def fresh(game: Game) -> Game:
    return Game.objects.get(pk=game.pk)


class CountResolves:
    """Wraps sim_core's resolver where the server calls it (``bridge``), counting the calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = bridge.resolve_round

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(bridge, "resolve_round", counted)


# ------------------------------------------------------------------------------ the move path


@pytest.mark.django_db
def test_one_move_runs_one_resolve_also_when_it_ends_the_phase(monkeypatch):
    game, seats = hall(labs=12, humans=3)
    services.game_start(game=game)
    resolves = CountResolves(monkeypatch)
    services.round_submit_bid(seat=seats[0], round_no=1, amount=0.1)
    assert resolves.calls == 1
    services.round_submit_bid(seat=seats[1], round_no=1, amount=0.2)
    assert resolves.calls == 2
    # The last bid owed ends bidding: the same resolve clears the market and the phase
    # machine goes on to compliance from it.
    services.round_submit_bid(seat=seats[2], round_no=1, amount=0.3)
    assert resolves.calls == 3
    game = fresh(game)
    assert game.phase == Phase.COMPLIANCE
    assert Move.objects.filter(game=game, action="bid", round_no=1).count() == 12


@pytest.mark.django_db
def test_a_refused_move_is_checked_by_the_one_resolve_and_changes_nothing(monkeypatch):
    game, seats = hall(labs=6, humans=2)
    services.game_start(game=game)
    resolves = CountResolves(monkeypatch)
    before = (Move.objects.filter(game=game).count(), fresh(game).version)
    with pytest.raises(services.NotAllowed):
        services.round_submit_bid(seat=seats[0], round_no=1, amount=1e9)
    assert resolves.calls == 1
    assert (Move.objects.filter(game=game).count(), fresh(game).version) == before


@pytest.mark.django_db
def test_a_move_runs_a_bounded_number_of_queries_whatever_the_room():
    game, seats = hall(labs=40, humans=30, online=True)
    services.game_start(game=game)
    for seat in seats[1:]:  # play to round 2, where the round's start state is read too
        services.round_submit_bid(seat=seat, round_no=1, amount=0.0)
    services.round_submit_bid(seat=seats[0], round_no=1, amount=0.0)
    while fresh(game).round_no < 2:
        services.game_advance_now(game=fresh(game))
    game = fresh(game)
    assert (game.round_no, game.phase) == (2, Phase.BIDDING)
    with CaptureQueriesContext(connection) as queries:
        services.round_submit_bid(seat=seats[0], round_no=2, amount=0.1)
    # Lock, seats, moves, the round's start state, the move, the game (plus the transaction's
    # own statements): was 22 before moves were resolved once.
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) <= 8, statements
    with CaptureQueriesContext(connection) as queries:
        for seat in seats[1:]:
            services.round_submit_bid(seat=seat, round_no=2, amount=0.1)
    assert len(queries.captured_queries) <= 8 * (len(seats) - 1) + 12


@pytest.mark.django_db
def test_the_setup_is_parsed_once_per_game_and_again_when_the_lobby_changes_it(monkeypatch):
    game, _ = hall(labs=5, humans=1)
    parsed = []
    original = bridge.parse_scenario

    def counted(document: Any) -> Any:
        parsed.append(document["labs"]["count"])
        return original(document)

    monkeypatch.setattr(bridge, "parse_scenario", counted)
    bridge._setups.clear()
    for _ in range(3):
        bridge.setup_of(fresh(game))
    assert parsed == [5]
    services.game_add_bot(game=game)
    assert bridge.setup_of(fresh(game)).lab_count == 6
    assert parsed[-1] == 6


# ------------------------------------------------------------------------------ progress


@pytest.mark.django_db
def test_progress_is_coalesced_the_latest_state_wins(monkeypatch):
    game, seats = hall(labs=10, humans=6)
    services.game_start(game=game)
    broadcast.note_owed(selectors.game_screens(fresh(game)).public)  # what the start's publish does
    sent: list[tuple[str, list[str]]] = []

    def record(update: Any, **kwargs: Any) -> None:
        sent.append((update.group, list(update.json)))

    monkeypatch.setattr(broadcast.realtime, "send", record)
    broadcast._last_progress.clear()
    broadcast._dirty.clear()
    clock = 1000.0
    # Five moves within one progress interval, each followed by a beat of the clock loop.
    for seat in seats[:5]:
        broadcast.progress_changed(game.pk)  # what the move's commit does
        services.round_submit_bid(seat=seat, round_no=1, amount=0.1)
        broadcast.flush_due(now=clock)
        clock += 0.05
    public = [texts for group, texts in sent if group == broadcast.realtime.hub_group(game.pk)]
    assert len(public) == 1  # one progress message for five moves
    broadcast.flush_due(now=clock + broadcast.PROGRESS_SECONDS)
    public = [texts for group, texts in sent if group == broadcast.realtime.hub_group(game.pk)]
    assert len(public) == 2
    latest = json.loads(public[-1][0])
    assert latest["type"] == "progress" and latest["waiting"] == 1 and latest["joined"] == 6
    assert latest["seq"] == fresh(game).seq
    # Nothing changed: the next beat sends nothing until the beacon is due.
    broadcast.flush_due(now=clock + 2 * broadcast.PROGRESS_SECONDS)
    assert len([1 for group, _ in sent if group == broadcast.realtime.hub_group(game.pk)]) == 2


@pytest.mark.django_db
def test_a_lecture_halls_progress_comes_once_a_second_a_class_rooms_three_times(monkeypatch):
    sent: list[Any] = []
    monkeypatch.setattr(broadcast.realtime, "send", lambda update, **kw: sent.append(update))
    for labs, humans, expected in ((20, 16, 4), (60, 50, 2)):
        game, seats = hall(labs=labs, humans=humans)
        services.game_start(game=game)
        broadcast.note_owed(selectors.game_screens(fresh(game)).public)
        broadcast._last_progress.clear()
        broadcast._dirty.clear()
        sent.clear()
        clock = 1000.0
        # A move every 1/8 s for 1.5 s, the clock loop beating after each.
        for seat in seats[:12]:
            services.round_submit_bid(seat=seat, round_no=1, amount=0.1)
            broadcast.progress_changed(game.pk)
            broadcast.flush_due(now=clock)
            clock += 0.125
        public = [item for item in sent if item.group == broadcast.realtime.hub_group(game.pk)]
        assert len(public) == expected, (labs, len(public))
        # The last state is sent once the interval has passed: nothing is left unsaid.
        broadcast.flush_due(now=clock + broadcast.HALL_PROGRESS_SECONDS)
        latest = json.loads(
            [i for i in sent if i.group == broadcast.realtime.hub_group(game.pk)][-1].json[0]
        )
        assert latest["waiting"] == humans - 12


@pytest.mark.django_db
def test_a_busy_servers_classes_get_their_progress_less_often(monkeypatch):
    # 20 classes of 31 seats have sockets on this process: each class's progress about once a
    # second, so the process sends about PROGRESS_MESSAGES_PER_SECOND progress messages a second
    # in all. Half of each class's sockets on another process change nothing: each progress
    # sent here reaches the sockets of both (through their hubs).
    sent: list[Any] = []
    monkeypatch.setattr(broadcast.realtime, "send", lambda update, **kw: sent.append(update))
    game, seats = hall(labs=30, humans=16)
    others = range(10_000, 10_019)  # the other classes (their own progress is not looked at)
    sockets = {f"busy-{n}": game_id for n, game_id in enumerate([game.pk, *others] * 15)}
    monkeypatch.setattr(broadcast.realtime, "LOCAL_GAMES", sockets)
    monkeypatch.setattr(broadcast.realtime, "LOCAL_CHANNELS", set(sockets))
    services.game_start(game=game)
    broadcast.note_owed(selectors.game_screens(fresh(game)).public)
    broadcast._last_progress.clear()
    broadcast._dirty.clear()
    for other in others:
        broadcast._note_size(other, 31)
    clock = 1000.0
    for seat in seats[:12]:  # a move every 1/8 s for 1.5 s, the clock beating after each
        services.round_submit_bid(seat=seat, round_no=1, amount=0.1)
        broadcast.progress_changed(game.pk)
        broadcast.flush_due(now=clock)
        clock += 0.125
    public = [item for item in sent if item.group == broadcast.realtime.hub_group(game.pk)]
    interval = 20 * 31 / broadcast.PROGRESS_MESSAGES_PER_SECOND
    assert interval > 1 and len(public) == 2  # at 0 s and at 1.125 s (three times: four)
    broadcast.flush_due(now=clock + interval)  # and the last state once the interval passed
    latest = json.loads(
        [i for i in sent if i.group == broadcast.realtime.hub_group(game.pk)][-1].json[0]
    )
    assert latest["waiting"] == 16 - 12


@pytest.mark.django_db
def test_a_big_room_is_sent_counts_not_the_list_of_players(monkeypatch):
    game, _ = hall(labs=60, humans=50)
    from django.core.cache import cache

    cache.clear()
    sent: list[Any] = []
    monkeypatch.setattr(broadcast.realtime, "send", lambda update, **kw: sent.append(update))
    broadcast.flush_progress(game.pk)
    # No console is open: its view (the largest to render) is not rendered.
    assert [item.group for item in sent] == [broadcast.realtime.hub_group(game.pk)]
    sent.clear()
    broadcast.realtime.note_consoles([game.pk])  # a console opens
    broadcast._last_host.pop(game.pk, None)
    broadcast.flush_progress(game.pk)
    realtime = broadcast.realtime
    public = next(item for item in sent if isinstance(item, realtime.RoomEvent))
    message = json.loads(public.json[0])
    assert message["joined"] == 50 and message["seats"] == 61
    assert message["status"] == "lobby" and message["connected"] == 0
    assert "players" not in message and "waiting_for" not in message
    assert 'id="players"' not in public.html  # the browsers' list is not resent either
    host = next(item for item in sent if isinstance(item, realtime.HostUpdate))
    assert host.group == realtime.hub_group(game.pk)  # to the hubs, for the consoles
    assert host.html.count("<tr data-seat=") == 61  # the console keeps its full view


def events_of(game: Game, monkeypatch: pytest.MonkeyPatch, capture: Any, until: str) -> list[Any]:
    """Start ``game`` and end its phases at once (defaults for the moves) until its status or
    phase is ``until``; return the room events published meanwhile."""
    sent: list[Any] = []
    monkeypatch.setattr(broadcast.realtime, "send", lambda update, **kw: sent.append(update))
    with capture(execute=True):
        services.game_start(game=game)
    while until not in (fresh(game).status, fresh(game).phase):
        with capture(execute=True):
            services.game_advance_now(game=fresh(game))
    return [item for item in sent if isinstance(item, broadcast.realtime.RoomEvent)]


@pytest.mark.django_db
def test_a_halls_market_counts_the_permit_holders_and_each_lab_reads_its_own(
    monkeypatch, django_capture_on_commit_callbacks
):
    # N labs are not each sent the ids of a third of N: in a hall the market's ``winners`` is
    # null and ``permits`` counts them; each lab's ``you`` says whether it won. A class's room
    # still names them.
    def market(labs: int) -> tuple[dict[str, Any], Any, Any]:
        game, _ = hall(labs, humans=labs)
        events = events_of(game, monkeypatch, django_capture_on_commit_callbacks, "results")
        for event in events:
            for message in map(json.loads, event.json):
                if message["type"] == "market":
                    return message, event, selectors.game_screens(fresh(game)).public
        raise AssertionError("no market was sent")

    message, event, public = market(60)
    winners = set(public.market.winners)
    assert message["winners"] is None and message["permits"] == len(winners) > 0
    for part in event.seats.values():
        you = json.loads(part.json[-1])
        assert you["won"] == (you["player_id"] in winners)
    html = broadcast.public_html(public)
    assert f"Permit holders:\n      {len(winners)} labs." in html
    assert 'class="holder"' not in html

    message, _, public = market(12)
    assert message["winners"] == list(public.market.winners)
    assert 'class="holder"' in broadcast.public_html(public)


@pytest.mark.django_db
def test_a_halls_game_over_ranks_the_first_forty_and_its_pages_count_the_players(
    monkeypatch, django_capture_on_commit_callbacks
):
    # N labs are not each sent the whole ranking of N when a lecture hall's game ends: the
    # list holds the first LIST_LIMIT ranks and counts the labs; each lab's own rank and score
    # come in its ``you``. A class's room is sent the whole ranking.
    def game_over(labs: int) -> tuple[dict[str, Any], Any, Any]:
        game, _ = hall(labs, humans=labs, rounds=1)
        events = events_of(game, monkeypatch, django_capture_on_commit_callbacks, "finished")
        event = events[-1]
        over = next(m for m in map(json.loads, event.json) if m["type"] == "game_over")
        return over, event, selectors.game_screens(fresh(game)).public

    over, event, public = game_over(labs=60)
    limit = broadcast.LIST_LIMIT
    assert over["labs"] == 60 and len(public.standings) == 60
    assert [row["rank"] for row in over["standings"]] == [s.rank for s in public.standings[:limit]]
    assert len(over["standings"]) == limit
    last = public.standings[-1]  # ranked below the list: its place is in its own ``you``
    part = next(
        p for p in event.seats.values() if json.loads(p.json[-1])["player_id"] == last.player_id
    )
    you = json.loads(part.json[-1])
    assert you["type"] == "you" and you["rank"] == last.rank == 60 and you["score"] == last.score
    html = broadcast.public_html(public)
    board = html[html.index('<section id="game-over"') :]
    assert board[: board.index("</section>")].count("<li data-player-id=") == limit
    assert f"The first {limit} of 60 labs" in board
    # Nor the list of players, at any event: the phones of a hall get the room's counts.
    players = html[html.index('<section id="players"') :]
    players = players[: players.index("</section>")]
    assert "<li" not in players and "61 seats: 60 with a player, 0 online." in players

    over, _, public = game_over(labs=12)
    assert over["labs"] == 12 and len(over["standings"]) == 12
    html = broadcast.public_html(public)
    assert "The first" not in html and "seats:" not in html
    assert html.count('<li data-player-id="') == 12 + 13  # the ranking, and the players


@pytest.mark.django_db
def test_a_big_rooms_phase_counts_whom_it_waits_for_and_names_only_the_governor(
    monkeypatch, django_capture_on_commit_callbacks
):
    # N labs are not each sent a list of N at every phase: in a hall the phase message counts
    # the seats waited for and names only the governor; a class's room still names them all.
    def first_phase(labs: int, humans: int) -> tuple[Game, list[Any], dict[str, Any]]:
        game = services.game_create(
            scenario=hall_scenario(labs), human_labs=humans, human_governor=True, durations=TIMED
        )
        seats = [services.seat_join(game=game, nickname=f"p{i}") for i in range(humans + 1)]
        sent: list[Any] = []
        monkeypatch.setattr(broadcast.realtime, "send", lambda update, **kw: sent.append(update))
        with django_capture_on_commit_callbacks(execute=True):
            services.game_start(game=game)
        event = next(item for item in sent if isinstance(item, broadcast.realtime.RoomEvent))
        phase = next(m for m in map(json.loads, event.json) if m["type"] == "phase")
        return game, seats, phase

    game, seats, phase = first_phase(labs=60, humans=50)
    assert phase["phase"] == "bidding" and phase["waiting"] == 50
    assert phase["waiting_for"] == []  # the governor owes nothing in bidding
    lab = next(s for s in seats if s.role == "lab")
    governor = next(s for s in seats if s.role == "governor")
    _, (lab_state,) = broadcast.snapshot(lab, "json")
    assert json.loads(lab_state)["game"]["waiting_for"] == []
    assert json.loads(lab_state)["game"]["waiting"] == 50
    _, (governor_state,) = broadcast.snapshot(governor, "json")
    assert len(json.loads(governor_state)["game"]["waiting_for"]) == 50  # the governor's: all
    # Every lab has bid: the audit phase waits for the governor alone, and names it.
    for seat in seats:
        if seat.role == "lab":
            services.round_submit_bid(seat=seat, round_no=1, amount=0.1)
    game = fresh(game)
    if game.phase == "compliance":
        owed = selectors.game_screens(game).public.waiting_for
        for seat in seats:
            if seat.role == "lab" and seat.player_id in owed:
                services.round_submit_choice(seat=seat, round_no=1, run=False)
    screens = selectors.game_screens(fresh(game))
    assert screens.public.phase == "audit"
    message = broadcast.phase_message(screens.public)
    assert message["waiting_for"] == [0] and message["waiting"] == 1

    _, _, small = first_phase(labs=12, humans=10)
    assert small["waiting"] == 10 and len(small["waiting_for"]) == 10


@pytest.mark.django_db(transaction=True)
async def test_sockets_get_fewer_messages_than_moves_over_a_phase():
    game, seats = await db(hall)(labs=12, humans=10)
    await db(services.game_start)(game=game)
    sockets = [Socket(api_path(game.code, seat.token), fmt="json") for seat in seats]
    for socket in sockets:
        await socket.connect()
    try:
        for socket in sockets:
            await socket.drain(quiet=0.05)
            socket.received.clear()
        for index, socket in enumerate(sockets):
            reply = await socket.send({"type": "bid", "round": 1, "amount": 0.05})
            assert reply["type"] == "ack"
            if index % 3 == 2:  # the clock loop's beat, a few times in the phase
                await db(broadcast.flush_progress)(game.pk)
        moves = len(seats)
        for socket in sockets:
            await socket.drain(quiet=0.1)
            kinds = [m["type"] for m in socket.received]
            assert "phase" in kinds and "market" in kinds  # the phase changed: heard
            assert all(isinstance(m["seq"], int) for m in socket.received)
            # Per socket O(1) for the phase (its ack, the progress beats, the event), where a
            # broadcast per move would be at least one message per move.
            assert len([k for k in kinds if k != "ack"]) < moves, kinds
            assert "waiting" not in kinds and "players" not in kinds
    finally:
        for socket in sockets:
            await socket.close()


# ------------------------------------------------------------------------------ sequence numbers


@pytest.mark.django_db(transaction=True)
async def test_events_are_numbered_one_by_one_and_sync_answers_a_snapshot():
    game, seats = await db(hall)(labs=4, humans=2)
    socket = Socket(api_path(game.code, seats[0].token), fmt="json")
    state = await socket.connect()
    try:
        assert state["type"] == "state" and state["seq"] == 0
        await db(services.game_start)(game=game)
        await db(services.game_advance_now)(game=game)
        got = await socket.drain()
        events = sorted({m["seq"] for m in got})
        assert events == [1, 2]
        assert [m["type"] for m in got if m["seq"] == 1] == ["phase", "you"]
        assert {m["type"] for m in got if m["seq"] == 2} >= {"market", "phase", "you"}
        reply = await socket.send({"type": "bid", "round": 1, "amount": 0.1})
        assert reply["type"] == "error" and reply["seq"] == 2  # a reply repeats the number
        await socket.communicator.send_to(text_data=json.dumps({"type": "sync"}))
        snapshot = await socket.next()
        assert snapshot["type"] == "state" and snapshot["seq"] == 2
        assert snapshot["game"]["phase"] == "compliance"
    finally:
        await socket.close()


def info_for(seat: Any) -> JoinInfo:
    return JoinInfo(
        player_id=seat.player_id,
        token=seat.token,
        role="lab",
        nickname=seat.nickname,
        rejoin_code=seat.rejoin_code,
        game="X",
        ws_url="ws://127.0.0.1:1/",
    )


def test_the_client_sees_a_gap_in_its_stream_and_only_then():
    player = Player(JoinInfo(1, "t", "lab", "a", "r", "X", "ws://127.0.0.1:1/"))
    assert not player.gap({"type": "state", "seq": 4})
    assert not player.gap({"type": "progress", "seq": 4})
    assert not player.gap({"type": "phase", "seq": 5})
    assert not player.gap({"type": "you", "seq": 5})  # one event, several messages
    assert not player.gap({"type": "ack", "seq": 5})
    assert player.gap({"type": "progress", "seq": 6})  # event 6 never came
    assert player.gap({"type": "phase", "seq": 7})  # event 6 never came
    assert not player.gap({"type": "progress", "seq": 3})  # an old progress: no news


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "backend", ["channels.layers.InMemoryChannelLayer", "permitgame.layers.InMemoryLayer"]
)
async def test_a_full_channel_never_drops_an_event_unnoticed(settings, monkeypatch, backend):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": backend, "CONFIG": {"capacity": 2}}}
    # What arrives ahead of a lost event waits this long for it, then shows the gap.
    monkeypatch.setattr(delivery, "GRACE_SECONDS", 0.3)
    game, seats = await db(hall)(labs=4, humans=2)
    await db(services.game_start)(game=game)
    socket = Socket(api_path(game.code, seats[0].token), fmt="json")
    state = await socket.connect()
    try:
        seen = state["seq"]
        # The first event stalls on its way out (as a process under a room's load does):
        # meanwhile the process's hub reads no more of its channel.
        gate = asyncio.Event()
        forward = ApiConsumer.forward

        async def stalled(self: Any, event: Any, *, gap: bool) -> None:
            await gate.wait()
            await forward(self, event, gap=gap)

        monkeypatch.setattr(ApiConsumer, "forward", stalled)
        # Five events while the channel holds two (and the hub one more): the layer drops the
        # last ones.
        for _ in range(5):
            await db(services.game_advance_now)(game=game)
        await asyncio.sleep(0.2)
        monkeypatch.setattr(ApiConsumer, "forward", forward)
        gate.set()
        got = await socket.drain()
        events = sorted({m["seq"] for m in got if m["type"] not in ("ack", "error")})
        assert events == list(range(seen + 1, seen + 1 + len(events)))
        assert len(events) < 5  # some never arrived: nothing said so yet
        last = events[-1]
        # The next progress beat carries the game's seq: it waits for the events it follows
        # for the grace period, then comes, and the loss shows as a gap.
        await db(broadcast.flush_progress)(game.pk)
        got = await socket.drain(quiet=0.6)
        beacon = next(m for m in got if m["type"] == "progress")
        player = Player(info_for(seats[0]))
        player.seq = last
        assert beacon["seq"] == seen + 5 and player.gap(beacon)
        await assert_sync_sends_the_current_state(socket, game)
    finally:
        await socket.close()


def database_sync_to_async_unbound(function: Any) -> Any:
    """Run a database function in a thread of its own (not the sockets' shared one)."""
    from channels.db import database_sync_to_async

    return database_sync_to_async(function, thread_sensitive=False)


@pytest.mark.django_db(transaction=True)
async def test_the_page_socket_mends_a_gap_itself_with_the_whole_screen(settings, monkeypatch):
    # An event ahead of the page waits this long for the ones before it, then mends the gap.
    monkeypatch.setattr(delivery, "GRACE_SECONDS", 0.3)
    game, seats = await db(hall)(labs=4, humans=2)
    await db(services.game_start)(game=game)
    socket = Socket(html_path(game.code, seats[0].token), fmt="html")
    first = await socket.connect()
    try:
        assert 'id="seq"' in first and 'data-kind="snapshot"' in first
        from channels.layers import get_channel_layer

        realtime = broadcast.realtime
        current = (await db(fresh)(game)).seq
        # An event two ahead of the socket (the one between was lost on the way).
        part = realtime.SeatPart("X", ())
        event = realtime.RoomEvent(game.pk, "", (), {seats[0].pk: part})
        await get_channel_layer().group_send(
            event.group, event.message(realtime.SEND, current + 2, 0)
        )
        reply = await socket.next()
        assert 'data-kind="snapshot"' in reply and 'id="lab-action"' in reply
    finally:
        await socket.close()


# ------------------------------------------------------------------------------ malformed frames


MALFORMED = [
    '{"type": "bid", "round": 1, "amount": ' + "[" * 5000 + "]" * 5000 + "}",
    json.dumps({"type": "bid", "round": 1, "amount": int("9" * 400)}),
    json.dumps({"type": "bid", "round": int("9" * 400), "amount": 0.1}),
    json.dumps({"type": "audit", "round": 1, "labs": ["--1"]}),
    json.dumps({"type": "audit", "round": 1, "labs": ["²"]}),
    json.dumps({"type": "decide", "round": 1, "run": {"a": [1]}}),
    json.dumps({"type": "bid", "round": 1, "amount": "1e400"}),
    "[" * 100000,
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", MALFORMED, ids=range(len(MALFORMED)))
async def test_a_malformed_frame_gets_an_error_with_a_code_and_changes_nothing(frame):
    game, seats = await db(hall)(labs=4, humans=2)
    await db(services.game_start)(game=game)

    # Presence during play is logged (connect, drop); the frame itself must add nothing.
    def count() -> int:
        return Move.objects.exclude(action__in=("connect", "drop")).count()

    before = await db(lambda: (count(), fresh(game).version))()
    socket = Socket(api_path(game.code, seats[0].token), fmt="json")
    await socket.connect()
    try:
        await socket.communicator.send_to(text_data=frame)
        reply = await socket.next()
        while reply["type"] not in ("error", "ack"):
            reply = await socket.next()
        assert reply["type"] == "error"
        assert reply["code"] in ("invalid", "bad_request", "not_allowed", "stale")
        assert isinstance(reply["message"], str) and reply["message"]
        # The socket is still open and answers the next command.
        ok = await socket.send({"type": "bid", "round": 1, "amount": 0.1})
        assert ok["type"] == "ack"
    finally:
        await socket.close()
    after = await db(lambda: (count(), fresh(game).version))()
    assert after[0] == before[0] + 1  # only the good bid


# ------------------------------------------------------------------------------ the clock


@pytest.mark.django_db(transaction=True)
async def test_the_clock_fires_a_deadline_while_the_sockets_commands_are_held():
    game, _ = await db(hall)(labs=3, humans=1)
    await db(services.game_start)(game=game)
    unbound = database_sync_to_async_unbound
    await unbound(services.game_extend)(game=game, seconds=1)
    await unbound(lambda: Game.objects.filter(pk=game.pk).update(phase_deadline=clock_now()))()
    release = threading.Event()
    held = asyncio.ensure_future(db(release.wait)())  # every socket's commands wait behind this
    loop = asyncio.ensure_future(ticker.run_forever(interval=0.05))
    try:
        for _ in range(60):
            await asyncio.sleep(0.05)
            current = await unbound(fresh)(game)
            if current.phase != Phase.BIDDING:
                break
        assert current.phase != Phase.BIDDING  # fired within 3 s, the shared thread held
        assert not held.done()
    finally:
        loop.cancel()
        release.set()
        await held


# ------------------------------------------------------------------------------ the client


@dataclass
class HeldPlayer(Player):
    """A client that makes no move until released: its game (bots move at once, no results
    screen) is still on when the test takes its server down."""

    held: bool = True

    def next_command(self) -> dict[str, Any] | None:
        return None if self.held else super().next_command()


@pytest.mark.slow
def test_the_client_outlasts_a_server_down_longer_than_it_used_to_and_plays_on(tmp_path):
    from tests import harness
    from tests.permitgame.test_processes import create_game, daphne

    # A copy of the session's migrated database (migrated_sqlite fails if migrate does).
    env = {"DATABASE_URL": harness.migrated_sqlite(tmp_path)}
    code = create_game(env, tmp_path, "--labs", "4", "--human-labs", "1", "--phase-seconds", "600")
    port = harness.free_port()

    async def play() -> tuple[dict[str, Any], Player]:
        with daphne(env, tmp_path, port) as (process, url):
            player = HeldPlayer(join(url, code, "Ana"), reconnect_seconds=120, reconnect_cap=0.1)
            task = asyncio.ensure_future(player.play())
            for _ in range(100):
                await asyncio.sleep(0.1)
                if any(m.get("type") == "state" for m in player.received):
                    break
            harness.stop_process(process)
        # Down for more tries than the client used to make (20, about 31 s at the default
        # backoff; this client waits at most 0.1 s between tries): polled, not slept out.
        for _ in range(600):
            if player.reconnects > 20 or task.done():
                break
            await asyncio.sleep(0.1)
        assert player.reconnects > 20
        assert not task.done()
        player.held = False
        with daphne(env, tmp_path, port):
            result = await asyncio.wait_for(task, 120)
        return result, player

    result, player = asyncio.run(play())
    assert result["type"] == "game_over" and len(result["standings"]) == 4
    assert player.reconnects > 20
    states = [m for m in player.received if m.get("type") == "state"]
    assert len(states) >= 2  # resumed from a fresh snapshot after the restart


# ------------------------------------------------------------------------------ connections


def connect_costs(labs: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, int, int]:
    """Queries and lab screens built of two snapshots (the first after a change, then another)."""
    game, seats = hall(labs=labs, humans=labs, online=True)
    services.game_start(game=game)
    services.round_submit_bid(seat=seats[0], round_no=1, amount=0.1)  # a new version
    built = []
    original = selectors.LabView

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(selectors, "LabView", counted)
    costs = []
    for seat in (seats[1], seats[2]):
        built.clear()
        with CaptureQueriesContext(connection) as queries:
            seq, [text] = broadcast.snapshot(seat, "json")
        state = json.loads(text)
        assert state["type"] == "state" and state["you"]["player_id"] == seat.player_id
        if labs + 1 <= broadcast.LIST_LIMIT:
            assert len(state["players"]) == labs + 1 and state["seq"] == seq
        else:  # a lab of a big room is sent counts, not the list
            assert state["players"] is None and state["room"]["seats"] == labs + 1
            assert state["room"]["joined"] == labs and state["seq"] == seq
        costs += [len(queries.captured_queries), len(built)]
    first_queries, first_built, next_queries, next_built = costs
    return first_queries, first_built, next_queries, next_built


@pytest.mark.django_db
def test_a_snapshot_builds_only_its_own_seats_screen_whatever_the_room(monkeypatch):
    small = connect_costs(10, monkeypatch)
    big = connect_costs(100, monkeypatch)
    assert small == big
    first_queries, first_built, next_queries, next_built = big
    # One lab screen each (not the room's 100); the game's rows are read once per version.
    assert first_built == next_built == 1
    assert next_queries < first_queries


@pytest.mark.django_db
def test_a_snapshot_after_a_change_shows_the_change(monkeypatch):
    game, seats = hall(labs=6, humans=3, online=True)
    services.game_start(game=game)
    _, [before] = broadcast.snapshot(seats[1], "json")
    assert json.loads(before)["you"]["bid"] is None
    services.round_submit_bid(seat=seats[1], round_no=1, amount=0.25)
    _, [after] = broadcast.snapshot(seats[1], "json")
    state = json.loads(after)
    assert state["you"]["bid"] == 0.25
    assert state["game"]["waiting_for"] == [seats[0].player_id, seats[2].player_id]


@pytest.mark.django_db
def test_a_snapshot_reads_who_is_online_each_time():
    # In the lobby, coming and going is no change of the game (no new version).
    game, seats = hall(labs=6, humans=3, online=True)
    _, [before] = broadcast.snapshot(seats[1], "json")
    version = fresh(game).version
    services.seat_disconnect(channel_name=f"test-{seats[2].pk}")
    assert fresh(game).version == version
    _, [later] = broadcast.snapshot(seats[1], "json")
    online = {row["player_id"]: row["connected"] for row in json.loads(before)["players"]}
    assert online[seats[2].player_id] is True
    online = {row["player_id"]: row["connected"] for row in json.loads(later)["players"]}
    assert online[seats[2].player_id] is False and online[seats[1].player_id] is True
