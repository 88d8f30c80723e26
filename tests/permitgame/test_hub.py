"""The fan-out of an event: one channel message per process, handed to its sockets by its hub.

These prove that an event to a room is ONE message on the channel layer however many seats it
has, that every seat's socket gets the public part and its own part and never another seat's,
that with Redis two processes each deliver to their own sockets while a process without
sockets of the game is sent nothing, that a hub message a full channel drops is counted and
shows the sockets a gap they mend with a snapshot, and that a closing socket unregisters; and
that the hub sends a ready socket its event from its own task (nothing waits behind a command
being answered), while a socket sending a snapshot gets its events after it, queued, and a queue
that overflows is counted and shows a gap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from permitgame import bridge, broadcast, delivery, hub, realtime, selectors, services
from permitgame.client import Player
from permitgame.consumers import CLOSE_RECONNECT, ROLE_CHANGED, ApiConsumer
from tests.permitgame.test_hall import fresh, hall, info_for
from tests.permitgame.wire import (
    ORIGIN,
    Socket,
    api_path,
    assert_sync_sends_the_current_state,
    db,
    html_path,
    redis_layers,
)


def in_memory(capacity: int = 100, group_expiry: int = 86400) -> dict[str, Any]:
    config = {"capacity": capacity, "group_expiry": group_expiry}
    return {"default": {"BACKEND": "permitgame.layers.InMemoryLayer", "CONFIG": config}}


class LayerCount:
    """Counts what is put on a channel layer: group sends by group, and sends."""

    def __init__(self, layer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.groups: Counter[str] = Counter()
        self.sends = 0
        group_send, send = layer.group_send, layer.send

        async def counted_group_send(group: str, message: dict[str, Any]) -> None:
            self.groups[group] += 1
            await group_send(group, message)

        async def counted_send(channel: str, message: dict[str, Any]) -> None:
            self.sends += 1
            await send(channel, message)

        monkeypatch.setattr(layer, "group_send", counted_group_send)
        monkeypatch.setattr(layer, "send", counted_send)


def _own(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] in ("you", "your_results")]


async def started_room() -> tuple[Any, list[Any], list[Socket], Socket]:
    """A started game of 8 labs, 6 of them people: five JSON sockets and a browser's, drained."""
    game, seats = await db(hall)(labs=8, humans=6)
    await db(services.game_start)(game=game)
    sockets = [Socket(api_path(game.code, seat.token), fmt="json") for seat in seats[:5]]
    page = Socket(html_path(game.code, seats[5].token), fmt="html")  # a browser
    for socket in [*sockets, page]:
        await socket.connect()
    for socket in [*sockets, page]:
        await socket.drain(quiet=0.05)
    return game, seats, sockets, page


# ------------------------------------------------------------------------------ one process


@pytest.mark.django_db(transaction=True)
async def test_an_event_is_one_layer_message_and_each_seat_gets_only_its_own_part(
    settings, monkeypatch
):
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = in_memory()
    game, seats, sockets, page = await started_room()
    try:
        layer = get_channel_layer()
        count = LayerCount(layer, monkeypatch)
        before = (await db(fresh)(game)).seq
        await db(services.game_advance_now)(game=await db(fresh)(game))  # bidding ends
        got = [await socket.drain(quiet=0.2) for socket in sockets]
        html = "".join(await page.drain(quiet=0.2))
        # Six joined seats, one process: the event is one group send, put on one channel.
        assert count.groups == Counter({realtime.hub_group(game.pk): 1}), count.groups
        assert count.sends == 1
        for seat, messages in zip(seats, got, strict=False):
            kinds = [m["type"] for m in messages]
            assert "phase" in kinds and "market" in kinds, kinds
            assert {m["seq"] for m in messages} == {before + 1}
            own = _own(messages)
            assert [m["type"] for m in own] == ["you"]
            # its own part, never another lab's (each lab's value is private)
            assert all(m["player_id"] == seat.player_id for m in own)
            assert not {"signals", "audit"} & set(kinds)  # nor the governor's
        # The browser gets the public fragments and its own panel, once.
        assert html.count('id="phase"') == 1 and html.count('id="you"') == 1
        assert f'data-seq="{before + 1}"' in html and 'id="signals"' not in html
    finally:
        for socket in [*sockets, page]:
            await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_closed_while_the_hub_hands_it_an_event_is_passed_over_quietly(
    settings, monkeypatch, caplog
):
    from autobahn.exception import Disconnected
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = in_memory()
    game, seats, sockets, page = await started_room()
    try:
        # The first seat's connection closes as the event goes out (Daphne then refuses the
        # send; its disconnect, which takes the socket out of the hub, comes after).
        (closing,) = hub.hub_for(get_channel_layer()).games[game.pk][seats[0].pk]

        async def closed(message: dict[str, Any]) -> None:
            raise Disconnected("Attempt to send on a closed protocol")

        monkeypatch.setattr(closing, "base_send", closed)
        with caplog.at_level(logging.DEBUG, logger="permitgame.hub"):
            await db(services.game_advance_now)(game=await db(fresh)(game))  # bidding ends
            got = [await socket.drain(quiet=0.2) for socket in sockets[1:]]
        assert all("phase" in [m["type"] for m in messages] for messages in got)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        for socket in [*sockets, page]:
            await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_progress_is_one_layer_message_and_every_socket_hears_it_once(
    settings, monkeypatch
):
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = in_memory()
    game, seats, sockets, page = await started_room()
    try:
        await db(services.round_submit_bid)(seat=seats[0], round_no=1, amount=0.1)
        count = LayerCount(get_channel_layer(), monkeypatch)
        await db(broadcast.flush_progress)(game.pk)
        got = [await socket.drain(quiet=0.2) for socket in sockets]
        html = "".join(await page.drain(quiet=0.2))
        # One group send to the processes' hubs (one here), put on one channel: not a
        # message per socket, and not one per process per socket.
        assert count.groups == Counter({realtime.hub_group(game.pk): 1}), count.groups
        assert count.sends == 1
        for messages in got:
            assert [m["type"] for m in messages] == ["progress"]
            assert messages[0]["waiting"] == 5  # the six humans but the one who bid
        assert html.count('id="waiting"') == 1
    finally:
        for socket in [*sockets, page]:
            await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_closed_socket_unregisters_and_the_last_takes_the_hub_out_of_the_game(settings):
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = in_memory()
    game, seats = await db(hall)(labs=4, humans=2)
    await db(services.game_start)(game=game)
    first = Socket(api_path(game.code, seats[0].token), fmt="json")
    second = Socket(api_path(game.code, seats[1].token), fmt="json")
    await first.connect()
    await second.connect()
    layer = get_channel_layer()
    relay = hub.hub_for(layer)
    group = realtime.hub_group(game.pk)
    assert set(relay.games[game.pk]) == {seats[0].pk, seats[1].pk}
    assert list(layer.groups[group]) == [relay.channel]  # one hub channel, not one per socket
    await first.close()
    assert set(relay.games[game.pk]) == {seats[1].pk}
    await db(services.game_advance_now)(game=await db(fresh)(game))
    got = await second.drain(quiet=0.2)
    assert "market" in [m["type"] for m in got]  # the other socket still hears the room
    await second.close()
    assert game.pk not in relay.games and game.pk not in relay.joined
    assert relay.channel not in layer.groups.get(group, {})
    received = relay.received
    await db(services.game_advance_now)(game=await db(fresh)(game))
    await asyncio.sleep(0.2)
    assert relay.received == received  # no socket of the game here: nothing is sent here


@pytest.mark.django_db(transaction=True)
async def test_the_hub_stays_in_its_games_group_past_the_group_expiry(settings):
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = in_memory(group_expiry=1)
    game, seats = await db(hall)(labs=4, humans=1)
    await db(services.game_start)(game=game)
    socket = Socket(api_path(game.code, seats[0].token), fmt="json")
    await socket.connect()
    try:
        await socket.drain(quiet=0.05)
        layer = get_channel_layer()
        await asyncio.sleep(2.5)  # the layer drops memberships older than a second
        layer._cleaned = -float("inf")
        await db(services.game_advance_now)(game=await db(fresh)(game))
        got = await socket.drain(quiet=0.2)
        assert "market" in [m["type"] for m in got]
    finally:
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_an_event_handed_out_here_restarts_this_processs_progress_clock(
    settings, monkeypatch
):
    """Another process published the event; this one hands it to its sockets. Its own progress
    of the game, due before, now waits an interval from the event (a hall's next phase may end
    within it), as in the publishing process. A progress handed out restarts nothing."""
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = in_memory()
    game, seats = await db(hall)(labs=40, humans=2)  # a hall: a second between two progresses
    await db(services.game_start)(game=game)
    socket = Socket(api_path(game.code, seats[0].token), fmt="json")
    await socket.connect()
    sent: list[Any] = []
    try:
        await socket.drain(quiet=0.05)
        relay = hub.hub_for(get_channel_layer())
        game = await db(fresh)(game)
        broadcast._note_size(game.pk, 41)
        text = realtime.dumps({"type": "phase", "seq": game.seq + 1})
        part = realtime.SeatPart("", (text,))

        def from_elsewhere(everyone: bool) -> dict[str, Any]:
            seats_part = {} if everyone else {seats[0].pk: part}
            event = realtime.RoomEvent(game.pk, "", (text,), seats_part, everyone=everyone)
            kind = realtime.PROGRESS if everyone else realtime.SEND
            return event.message(kind, game.seq + 1, game.version)

        monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append(update))
        for everyone, waits in ((True, False), (False, True)):
            broadcast._last_progress[game.pk] = time.monotonic() - 5  # long ago: due
            broadcast.progress_changed(game.pk)  # a move recorded here
            assert await relay.deliver(from_elsewhere(everyone)) == 1
            sent.clear()
            await db(broadcast.flush_due)()
            assert (sent == []) is waits, everyone
        # Once the interval has passed, the move recorded here is told.
        await db(broadcast.flush_due)(now=time.monotonic() + broadcast.HALL_PROGRESS_SECONDS)
        assert [update.everyone for update in sent] == [True]
    finally:
        broadcast._dirty.discard(game.pk)
        await socket.close()


def settle_round_one(game: Any, seats: list[Any]) -> None:
    """Every lab bids, then decides: round 1 settles (the governor is a bot)."""
    services.game_start(game=game)
    for action, payload in (("bid", {"amount": 0.1}), ("decide", {"run": True})):
        commands = [services.MoveCommand(s.pk, action, 1, payload) for s in seats]
        services.round_submit_moves(game_id=game.pk, commands=commands)


def tables_read_by_screens(game_id: int) -> list[str]:
    """The tables a publish's screens of the game read in this process now."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        selectors.game_screens(fresh_game(game_id))
    return [q["sql"].split(" FROM ", 1)[1].split()[0].strip('"') for q in queries.captured_queries]


def fresh_game(game_id: int) -> Any:
    from permitgame.models import Game

    return Game.objects.get(pk=game_id)


@pytest.mark.django_db(transaction=True)
async def test_a_round_another_process_settled_is_read_here_before_a_phase_change_needs_it(
    settings, monkeypatch
):
    """The process that settles a round keeps its record; any other reads it the first time it
    builds a room of the game after, on the way of a phase change of the next round if that
    change is recorded there. The settled round's event says it settled one, and a process that
    hands such an event out builds the room at once, on a thread of its own: the next phase
    change's screens read no record."""
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = in_memory()
    monkeypatch.setattr(broadcast, "ROOM_DELAY_SECONDS", 0.0)
    game, seats = await db(hall)(labs=12, humans=12)
    socket = Socket(api_path(game.code, seats[0].token), fmt="json")
    await socket.connect()
    sent: list[Any] = []
    try:
        await socket.drain(quiet=0.05)
        monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append(update))
        await db(settle_round_one)(game, seats)
        events = [u for u in sent if isinstance(u, realtime.RoomEvent) and not u.everyone]
        game = await db(fresh)(game)
        assert game.phase == "results"
        # Only the event of the settlement says so (the phase changes before it do not).
        assert [event.settled for event in events] == [False] * (len(events) - 1) + [True]
        message = events[-1].message(realtime.SEND, game.seq, game.version)
        # "Another process": nothing of the game kept here.
        selectors._rooms.clear()
        selectors._ledgers.clear()
        bridge._rows.clear()
        relay = hub.hub_for(get_channel_layer())
        assert await relay.deliver(message) == 1
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: broadcast.ROOMS.submit(lambda: None).result(timeout=10)
        )
        kept = selectors._ledgers.latest(game.pk)
        assert kept is not None and [r.round_no for r in kept.book.records] == [1]
        assert "permitgame_roundrecord" not in await db(tables_read_by_screens)(game.pk)
        # Without the event's word, the screens read the record (what the hand-out spared).
        selectors._rooms.clear()
        selectors._ledgers.clear()
        assert "permitgame_roundrecord" in await db(tables_read_by_screens)(game.pk)
    finally:
        await socket.close()


async def room_with_a_socket(
    settings: Any, monkeypatch: pytest.MonkeyPatch, *, small: bool = False
) -> tuple[Any, list[Any], Socket, dict[str, Any]]:
    """A started game of 4 labs, 2 of them people, the first with a JSON socket connected:
    (game, seats, socket, its snapshot). ``small``: channels that hold two messages, and a
    short grace period for what waits on a lost event."""
    settings.CHANNEL_LAYERS = in_memory(capacity=2 if small else 100)
    if small:
        monkeypatch.setattr(delivery, "GRACE_SECONDS", 0.3)
    game, seats = await db(hall)(labs=4, humans=2)
    await db(services.game_start)(game=game)
    socket = Socket(api_path(game.code, seats[0].token), fmt="json")
    return game, seats, socket, await socket.connect()


async def assert_the_next_beacon_shows_the_gap(
    socket: Socket, game: Any, seat: Any, *, last: int, lost_to: int, run: Any = None
) -> None:
    """The next progress carries the game's seq (``lost_to``): after the grace period the
    socket that last saw ``last`` shows the gap, and the client mends it with a snapshot."""
    await (run or db)(broadcast.flush_progress)(game.pk)
    beacon = next(m for m in await socket.drain(quiet=0.6) if m["type"] == "progress")
    player = Player(info_for(seat))
    player.seq = last
    assert beacon["seq"] == lost_to and player.gap(beacon)
    await assert_sync_sends_the_current_state(socket, game)


@pytest.mark.django_db(transaction=True)
async def test_a_hub_message_a_full_channel_drops_is_counted_and_the_socket_resyncs(
    settings, monkeypatch, caplog
):
    from channels.layers import get_channel_layer

    game, seats, socket, state = await room_with_a_socket(settings, monkeypatch, small=True)
    layer = get_channel_layer()
    relay = hub.hub_for(layer)
    try:
        relay.stop()  # the process is busy: its hub channel is not read meanwhile
        with caplog.at_level(logging.WARNING, logger="permitgame.layers"):
            for _ in range(3):  # three events; the hub channel holds two
                await db(services.game_advance_now)(game=await db(fresh)(game))
        assert layer.dropped == 1
        assert any("dropped" in record.getMessage() for record in caplog.records)
        await relay.start()
        got = await socket.drain(quiet=0.2)
        assert sorted({m["seq"] for m in got}) == [state["seq"] + 1, state["seq"] + 2]
        await assert_the_next_beacon_shows_the_gap(
            socket, game, seats[0], last=state["seq"] + 2, lost_to=state["seq"] + 3
        )
    finally:
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_failed_read_of_the_hub_is_tried_again_at_once_then_more_slowly(
    settings, monkeypatch
):
    """A dropped connection costs the process's sockets no second; a layer that stays down is
    not read in a busy loop."""
    from channels.layers import get_channel_layer

    game, _, socket, state = await room_with_a_socket(settings, monkeypatch)
    layer = get_channel_layer()
    receive, failures, pauses = layer.receive, [3], []

    async def flaky(channel: str) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("the layer dropped the connection")
        return await receive(channel)

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(hub, "_pause", pause)
    try:
        await db(services.game_advance_now)(game=await db(fresh)(game))  # read as before
        assert {m["seq"] for m in await socket.drain(quiet=0.2)} == {state["seq"] + 1}
        monkeypatch.setattr(layer, "receive", flaky)  # from the hub's next read on
        await db(services.game_advance_now)(game=await db(fresh)(game))
        got = await socket.drain(quiet=0.2)
        assert {m["seq"] for m in got} == {state["seq"] + 2}  # nothing lost on the way
        assert pauses == pytest.approx([0.0, 0.05, 0.15])  # at once, then longer each time
        assert max(pauses) <= hub.READ_RETRY_SECONDS
    finally:
        await socket.close()


# ------------------------------------------------------------------------------ the hand-out


@pytest.mark.django_db(transaction=True)
async def test_a_socket_answering_a_command_still_hears_the_room_at_once(settings, monkeypatch):
    """The hub sends a ready socket its event from its own task: nothing queues behind a reply."""
    game, _, socket, state = await room_with_a_socket(settings, monkeypatch)
    queued: list[Any] = []
    take = ApiConsumer.take
    monkeypatch.setattr(
        ApiConsumer, "take", lambda self, event: queued.append(event) or take(self, event)
    )
    gate = asyncio.Event()
    answer = ApiConsumer.send_error

    async def stalled(self: Any, error: Any, *, command: Any = None) -> None:
        await gate.wait()
        await answer(self, error, command=command)

    monkeypatch.setattr(ApiConsumer, "send_error", stalled)
    try:
        await socket.communicator.send_to(text_data=json.dumps({"type": "bid", "round": 1}))
        await asyncio.sleep(0.1)  # the command is being answered (stalled)
        await db(services.game_advance_now)(game=await db(fresh)(game))  # bidding ends
        got = await socket.drain(quiet=0.2)
        assert "phase" in [m["type"] for m in got]  # before the reply, not after it
        assert {m["seq"] for m in got} == {state["seq"] + 1}
        assert queued == []  # sent by the hub, not queued for the socket's reader
        gate.set()
        reply = await socket.next()
        assert reply["type"] == "error" and reply["seq"] == state["seq"] + 1
    finally:
        gate.set()
        await socket.close()


def stall_snapshots(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make each snapshot wait, once read, until the returned event is set.

    It holds the database thread the sockets share: the test changes the game from another
    (``elsewhere``), as another process would.
    """
    gate = threading.Event()
    read = ApiConsumer._snapshot

    def stalled(self: Any, connect: bool) -> Any:
        snapshot = read(self, connect)
        gate.wait(5)
        return snapshot

    monkeypatch.setattr(ApiConsumer, "_snapshot", stalled)
    return gate


def elsewhere(function: Any) -> Any:
    """Run a sync (database) function on a thread of its own, not the sockets' database thread."""
    return database_sync_to_async(function, thread_sensitive=False)


@pytest.mark.django_db(transaction=True)
async def test_an_event_committed_while_a_snapshot_is_sent_comes_after_it(settings, monkeypatch):
    game, _, socket, _ = await room_with_a_socket(settings, monkeypatch)
    gate = stall_snapshots(monkeypatch)
    try:
        await socket.communicator.send_to(text_data=json.dumps({"type": "sync"}))
        await asyncio.sleep(0.1)  # the snapshot is read, not yet sent
        for _ in range(2):
            await elsewhere(services.game_advance_now)(game=await elsewhere(fresh)(game))
        await asyncio.sleep(0.1)
        gate.set()
        got = await socket.drain(quiet=0.2)
        assert got[0]["type"] == "state"
        seen = got[0]["seq"]
        assert sorted({m["seq"] for m in got[1:]}) == [seen + 1, seen + 2]
        assert [m["seq"] for m in got[1:]] == sorted(m["seq"] for m in got[1:])
    finally:
        gate.set()
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_queue_that_overflows_is_counted_and_the_socket_resyncs(
    settings, monkeypatch, caplog
):
    from channels.layers import get_channel_layer

    game, seats, socket, _ = await room_with_a_socket(settings, monkeypatch, small=True)
    relay = hub.hub_for(get_channel_layer())
    gate = stall_snapshots(monkeypatch)
    try:
        await socket.communicator.send_to(text_data=json.dumps({"type": "sync"}))
        await asyncio.sleep(0.1)
        with caplog.at_level(logging.WARNING, logger="permitgame.hub"):
            # While its snapshot is sent, the socket's queue holds two and its reader one.
            for _ in range(5):
                await elsewhere(services.game_advance_now)(game=await elsewhere(fresh)(game))
            await asyncio.sleep(0.1)
        assert relay.dropped == 2
        assert any("socket queue full" in record.getMessage() for record in caplog.records)
        gate.set()
        got = await socket.drain(quiet=0.2)
        seen = got[0]["seq"]
        assert got[0]["type"] == "state" and sorted({m["seq"] for m in got[1:]}) == [
            seen + 1,
            seen + 2,
            seen + 3,
        ]
        await assert_the_next_beacon_shows_the_gap(
            socket, game, seats[0], last=seen + 3, lost_to=seen + 5, run=elsewhere
        )
    finally:
        gate.set()
        await socket.close()


async def outputs_until_closed(socket: Socket, timeout: float = 2) -> list[Any]:
    """Every output of ``socket`` (text frames parsed) up to and with its close."""
    got: list[Any] = []
    while True:
        output = await socket.communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return [*got, output]
        got.append(json.loads(output["text"]))


async def assert_role_change_reaches_the_seats_sockets(
    game: Any, seats: list[Any], moved: list[Socket], others: list[Socket]
) -> None:
    """The instructor makes ``seats[0]`` the governor in the lobby: every socket of that seat is
    told to reconnect and closed (4012), through the hubs; the others stay open."""
    for socket in [*moved, *others]:
        await socket.drain(quiet=0.05)
    await db(services.game_set_governor)(game=await db(fresh)(game), seat=seats[0])
    for socket in moved:
        *texts, close = await outputs_until_closed(socket)
        assert texts[-1]["type"] == "reconnect" and texts[-1]["reason"] == ROLE_CHANGED
        assert close["code"] == CLOSE_RECONNECT
    for socket in others:
        got = await socket.drain(quiet=0.3)
        assert "reconnect" not in [m["type"] for m in got]
        assert "players" in [m["type"] for m in got]  # the room's new seats, still open


@pytest.mark.django_db(transaction=True)
async def test_a_seat_whose_role_changes_is_told_through_the_hub_on_each_of_its_sockets(
    settings,
):
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = in_memory()
    game, seats = await db(hall)(labs=4, humans=2)
    tabs = [Socket(api_path(game.code, seats[0].token), fmt="json") for _ in range(2)]
    other = Socket(api_path(game.code, seats[1].token), fmt="json")
    for socket in [*tabs, other]:
        await socket.connect()
    try:
        # A players' socket has no channel on the layer: only the hub's is in a group.
        layer = get_channel_layer()
        assert {name for members in layer.groups.values() for name in members} == {
            hub.hub_for(layer).channel
        }
        await assert_role_change_reaches_the_seats_sockets(game, seats, tabs, [other])
    finally:
        await other.close()


# ------------------------------------------------------------------------------ Redis


def socket_in(alias: str, code: str, token: str) -> Socket:
    """A JSON socket served by the process whose channel layer is ``alias``."""

    class Consumer(ApiConsumer):
        channel_layer_alias = alias

    app = URLRouter([path("ws/api/games/<str:code>/", Consumer.as_asgi())])
    socket = Socket(api_path(code, token), fmt="json")
    socket.communicator = WebsocketCommunicator(app, api_path(code, token), headers=ORIGIN)
    return socket


@pytest.mark.django_db(transaction=True)
async def test_with_redis_a_committed_event_is_sent_from_its_threads_own_loop(
    settings, monkeypatch, redis_url
):
    """The thread that committed an event sends it itself: not queued behind the server's loop."""
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = redis_layers(redis_url, "default")
    game, seats = await db(hall)(labs=4, humans=1)
    await db(services.game_start)(game=game)
    socket = socket_in("default", game.code, seats[0].token)
    await socket.connect()
    try:
        await socket.drain(quiet=0.05)
        layer = get_channel_layer()
        loops: list[Any] = []
        group_send = layer.group_send

        async def noted(group: str, message: dict[str, Any]) -> None:
            loops.append(asyncio.get_running_loop())
            await group_send(group, message)

        monkeypatch.setattr(layer, "group_send", noted)
        await db(services.game_advance_now)(game=await db(fresh)(game))
        got = await socket.drain(quiet=0.3)
        assert "market" in [m["type"] for m in got]
        assert loops and asyncio.get_running_loop() not in loops
    finally:
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_with_redis_a_role_change_reaches_the_seats_sockets_in_every_process(
    settings, redis_url
):
    settings.CHANNEL_LAYERS = redis_layers(redis_url, "default", "b")
    game, seats = await db(hall)(labs=4, humans=2)
    tabs = [socket_in(alias, game.code, seats[0].token) for alias in ("default", "b")]
    other = socket_in("b", game.code, seats[1].token)
    for socket in [*tabs, other]:
        await socket.connect()
    try:
        await assert_role_change_reaches_the_seats_sockets(game, seats, tabs, [other])
    finally:
        await other.close()


@pytest.mark.django_db(transaction=True)
async def test_with_redis_a_console_in_a_process_without_players_gets_the_updates(
    settings, redis_url, django_user_model
):
    """The console reads no channel of its own: its process's hub joins the game for it."""
    from channels.auth import AuthMiddlewareStack

    from permitgame.console.consumers import HostConsumer
    from tests.permitgame.console_fixtures import make_instructor, small_game
    from tests.permitgame.test_console_socket import session_cookie

    class Console(HostConsumer):
        channel_layer_alias = "b"

    settings.CHANNEL_LAYERS = redis_layers(redis_url, "default", "b")
    ana = await db(make_instructor)(django_user_model, "ana")
    game = await db(small_game)(ana)
    app = AuthMiddlewareStack(URLRouter([path("ws/host/<str:code>/", Console.as_asgi())]))
    headers = [*ORIGIN, (b"cookie", await db(session_cookie)(ana))]
    console = WebsocketCommunicator(app, f"/ws/host/{game.code}/", headers=headers)
    connected, _ = await console.connect(timeout=5)
    try:
        assert connected and 'data-status="lobby"' in await console.receive_from(timeout=5)
        await db(services.game_start)(game=await db(fresh)(game))  # sent by process "default"
        update = await console.receive_from(timeout=5)
        while 'data-status="running"' not in update:
            update = await console.receive_from(timeout=5)
    finally:
        await console.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_two_processes_each_deliver_to_their_own_sockets_and_a_third_gets_nothing(
    settings, monkeypatch, redis_url
):
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = redis_layers(redis_url, "default", "b", "c")
    game, seats = await db(hall)(labs=6, humans=4)
    other, other_seats = await db(hall)(labs=3, humans=1)
    await db(services.game_start)(game=game)
    await db(services.game_start)(game=other)
    sockets = [
        socket_in("default", game.code, seats[0].token),
        socket_in("default", game.code, seats[1].token),
        socket_in("b", game.code, seats[2].token),
        socket_in("b", game.code, seats[3].token),
        socket_in("c", other.code, other_seats[0].token),  # process c: another game only
    ]
    for socket in sockets:
        await socket.connect()
    try:
        for socket in sockets:
            await socket.drain(quiet=0.05)
        hubs = {alias: hub.hub_for(get_channel_layer(alias)) for alias in ("default", "b", "c")}
        assert len({relay.channel for relay in hubs.values()}) == 3
        received = {alias: relay.received for alias, relay in hubs.items()}
        count = LayerCount(get_channel_layer(), monkeypatch)  # the process that publishes
        before = (await db(fresh)(game)).seq
        await db(services.game_advance_now)(game=await db(fresh)(game))
        got = [await socket.drain(quiet=0.3) for socket in sockets]
        assert count.groups == Counter({realtime.hub_group(game.pk): 1}), count.groups
        for seat, messages in zip(seats, got[:4], strict=True):
            kinds = [m["type"] for m in messages]
            assert "market" in kinds and {m["seq"] for m in messages} == {before + 1}, kinds
            assert [m["player_id"] for m in _own(messages)] == [seat.player_id]
        assert got[4] == []  # the other game's socket
        assert hubs["default"].received == received["default"] + 1
        assert hubs["b"].received == received["b"] + 1
        assert hubs["c"].received == received["c"]  # no socket of the game: sent nothing
    finally:
        for socket in sockets:
            await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_with_redis_a_hub_whose_subscription_dropped_hears_its_game_again(
    settings, monkeypatch, redis_url
):
    """Redis closed the process's subscriber connection (a restart, or a subscriber too slow for
    its output buffer): the layer connects and subscribes again, the socket hears the game again,
    and an event missed meanwhile shows as a gap in the seq numbers, never silently."""
    import redis

    settings.CHANNEL_LAYERS = redis_layers(redis_url)
    monkeypatch.setattr(delivery, "GRACE_SECONDS", 0.4)  # what comes after a missed event waits
    game, seats = await db(hall)(labs=4, humans=1)
    await db(services.game_start)(game=game)
    socket = socket_in("default", game.code, seats[0].token)
    player = Player(info_for(seats[0]))
    player.gap(await socket.connect())
    try:
        for message in await socket.drain(quiet=0.05):
            player.gap(message)
        with redis.Redis.from_url(redis_url) as admin:
            assert admin.client_kill_filter(_type="pubsub") >= 1
        await db(services.game_advance_now)(game=await db(fresh)(game))  # while it reconnects
        current = await db(fresh)(game)
        heard: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while player.seq != current.seq and time.monotonic() < deadline:
            await db(broadcast.flush_progress)(game.pk)  # the room's beacon: its seq
            for message in await socket.drain(quiet=0.3):
                heard.append(message)
                if player.gap(message):  # missed: the client asks for a snapshot
                    await assert_sync_sends_the_current_state(socket, game)
                    player.seq = current.seq
        assert player.seq == current.seq, heard
    finally:
        await socket.close()


def test_a_message_is_written_as_the_same_json_whatever_numbers_a_view_holds():
    # Every text a socket is sent goes through realtime.dumps: numpy's scalars from a resolve
    # are written as the numbers they hold, keys as strings, and what cannot be a JSON number
    # as null (never the invalid NaN).
    import json

    import numpy as np

    message = {
        "type": "you",
        "value": np.float64(0.7703),
        "won": np.bool_(True),
        "player_id": np.int64(3),
        "price": 0.2254,
        "terms": [{"name": "value", "amount": -0.1}],
        "by_lab": {1: "a"},
        "nan": float("nan"),
    }
    text = realtime.dumps(message)
    assert json.loads(text) == {
        "type": "you",
        "value": 0.7703,
        "won": True,
        "player_id": 3,
        "price": 0.2254,
        "terms": [{"name": "value", "amount": -0.1}],
        "by_lab": {"1": "a"},
        "nan": None,
    }
    assert " " not in text  # compact: a room's event is several hundred of these
    with pytest.raises(TypeError):
        realtime.dumps({"when": object()})
