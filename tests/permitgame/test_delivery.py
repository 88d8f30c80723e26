"""Delivery of events and progress: in seq order, a gap only when an event was really lost.

Events reach a seat's socket from whichever process committed them, the room's progress from
any process's clock loop: they may cross on the way. These tests prove that the socket puts them
back in order (``delivery.SeqStream``) across two processes' Redis layers, that what was really
lost still shows as a gap after the grace period, that the in-memory layer of one process never
deafens a socket whose message expired, and that the channel layer and rate limits are read from
the environment.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from permitgame import bridge, broadcast, delivery, realtime, services
from permitgame.client import Player
from permitgame.layers import InMemoryLayer
from permitgame.models import Game
from tests.harness import REPO_ROOT, app_env
from tests.permitgame.test_hall import fresh, hall, info_for
from tests.permitgame.wire import REDIS_LAYER, Socket, api_path, db, redis_layers


def _event(seq: int, version: int | None = None) -> dict[str, Any]:
    return {"type": "game.send", "seq": seq, "version": version or seq, "json": [f"e{seq}"]}


def _progress(seq: int, version: int) -> dict[str, Any]:
    return {"type": "game.progress", "seq": seq, "version": version, "json": [f"p{seq}.{version}"]}


def _names(items: list[tuple[dict[str, Any], bool]]) -> list[tuple[str, bool]]:
    return [(message["json"][0], gap) for message, gap in items]


# ------------------------------------------------------------------------------ the stream


def test_a_progress_ahead_of_its_event_waits_for_it_and_follows_it():
    stream = delivery.SeqStream(clock=lambda: 0.0)
    stream.snapshot(4)
    assert stream.progress(_progress(5, 20)) == []  # event 5 is still on its way
    assert stream.holding
    assert _names(stream.event(_event(5, 19))) == [("e5", False), ("p5.20", False)]
    assert not stream.holding and stream.seq == 5
    # An older progress after it is old news; the same seq with a newer version is news.
    assert stream.progress(_progress(4, 18)) == []
    assert _names(stream.progress(_progress(5, 21))) == [("p5.21", False)]
    assert stream.progress(_progress(5, 20)) == []


def test_events_that_cross_are_forwarded_in_order():
    stream = delivery.SeqStream(clock=lambda: 0.0)
    assert stream.event(_event(3)) == []  # 1 and 2 not yet here
    assert stream.event(_event(2)) == []
    assert _names(stream.event(_event(1))) == [("e1", False), ("e2", False), ("e3", False)]
    assert stream.event(_event(2)) == []  # a repeat
    assert stream.seq == 3 and not stream.holding


def test_what_waits_past_the_grace_period_is_forwarded_with_its_gap():
    now = [100.0]
    stream = delivery.SeqStream(grace=3.0, clock=lambda: now[0])
    stream.snapshot(1)
    assert stream.event(_event(3)) == []  # event 2 was dropped from a full channel
    stream.progress(_progress(3, 30))
    assert stream.deadline() == 103.0
    now[0] = 102.9
    assert stream.expire() == []
    now[0] = 103.0
    assert _names(stream.expire()) == [("e3", True), ("p3.30", False)]
    assert stream.seq == 3 and stream.deadline() is None
    # the client sees the gap: event 3 after event 1
    player = Player(info_for_seat())
    player.gap({"type": "state", "seq": 1})
    assert player.gap({"type": "phase", "seq": 3})


def test_the_client_takes_an_event_frame_whole_and_answers_a_gap_in_it_with_a_sync():
    player = Player(info_for_seat())
    state = {
        "type": "state",
        "seq": 1,
        "game": {"status": "running", "round": 1, "phase": "bidding", "waiting_for": [1]},
        "rules": {},
        "you": {"round": 1, "phase": "bidding", "owes_move": False, "wealth": 1.0},
        "results": [],
    }
    assert player.frame(json.dumps(state)) == ([], None)
    # One frame, one event: every message of it is taken, in order.
    event = [
        {"type": "phase", "seq": 2, "round": 1, "phase": "compliance", "waiting_for": []},
        {"type": "you", "seq": 2, "round": 1, "phase": "compliance", "wealth": 0.8},
    ]
    assert player.frame(json.dumps(event)) == ([], None)
    assert player.seq == 2 and player.game["phase"] == "compliance"
    assert player.you["wealth"] == 0.8
    # A skipped number: a sync at once, the rest of that event not taken, nothing played
    # until the snapshot that answers it.
    lost = [
        {"type": "phase", "seq": 4, "round": 1, "phase": "results", "waiting_for": []},
        {"type": "you", "seq": 4, "round": 1, "phase": "results", "wealth": 0.1},
    ]
    assert player.frame(json.dumps(lost)) == ([{"type": "sync"}], None)
    assert player.gaps == 1 and player.seq is None and player.you["wealth"] == 0.8
    assert player.frame(json.dumps({"type": "ack", "seq": 4, "command": "bid"})) == ([], None)
    assert player.frame(json.dumps({**state, "seq": 4})) == ([], None)
    assert player.seq == 4
    over = {"type": "game_over", "seq": 5, "standings": []}
    assert player.frame(json.dumps([over])) == ([], over)


def info_for_seat() -> Any:
    from permitgame.client import JoinInfo

    return JoinInfo(1, "t", "lab", "a", "r", "X", "ws://127.0.0.1:1/")


def test_a_snapshot_covers_what_was_held():
    stream = delivery.SeqStream(clock=lambda: 0.0)
    stream.event(_event(3))
    stream.progress(_progress(3, 9))
    stream.snapshot(3)
    assert not stream.holding and stream.deadline() is None
    assert stream.event(_event(2)) == [] and stream.event(_event(3)) == []
    assert _names(stream.event(_event(4))) == [("e4", False)]


# ------------------------------------------------------------------------------ two processes


@pytest.mark.django_db(transaction=True)
async def test_a_progress_sent_by_another_process_before_its_event_makes_no_gap(
    settings, monkeypatch, redis_url
):
    """Process B commits an event and is slow to send it; process A's clock loop sends the
    room's progress (carrying the new seq) first. Each has its own Redis channel layer."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    settings.CHANNEL_LAYERS = redis_layers(redis_url)  # process A: the socket's own
    other = RedisPubSubChannelLayer(hosts=[redis_url])  # process B
    game, seats = await db(hall)(labs=4, humans=2)
    await db(services.game_start)(game=game)
    socket = Socket(api_path(game.code, seats[0].token), fmt="json")
    state = await socket.connect()
    held: list[tuple[Any, dict[str, Any]]] = []
    try:
        player = Player(info_for(seats[0]))
        assert not player.gap(state)
        real_send = realtime.send

        def slow(update: Any, **kwargs: Any) -> None:  # B renders: its send comes later
            held.append((update, kwargs))

        monkeypatch.setattr(realtime, "send", slow)
        for _ in range(2):  # two events, both held back in process B
            await db(services.game_advance_now)(game=await db(fresh)(game))
        monkeypatch.setattr(realtime, "send", real_send)
        current = await db(fresh)(game)
        assert [kw["seq"] for _, kw in held] == [state["seq"] + 1, state["seq"] + 2]
        await db(broadcast.flush_progress)(game.pk)  # process A: the new seq, at once
        await asyncio.sleep(0.2)
        # B sends its two events, the second before the first.
        for update, kwargs in reversed(held):
            kind = kwargs.get("kind", "game.send")
            await other.group_send(
                update.group, update.message(kind, kwargs["seq"], kwargs["version"])
            )
        got = await socket.drain(quiet=0.5)
        kinds = [(m["type"], m["seq"]) for m in got]
        assert [m["seq"] for m in got] == sorted(m["seq"] for m in got), kinds
        assert kinds[-1] == ("progress", current.seq), kinds
        assert not any(player.gap(m) for m in got)
        assert player.seq == current.seq
    finally:
        await socket.close()
        await other.flush()


@pytest.mark.django_db(transaction=True)
async def test_an_event_lost_between_processes_shows_as_a_gap_after_the_grace(
    settings, monkeypatch, redis_url
):
    settings.CHANNEL_LAYERS = redis_layers(redis_url)
    monkeypatch.setattr(delivery, "GRACE_SECONDS", 0.4)
    game, seats = await db(hall)(labs=4, humans=2)
    await db(services.game_start)(game=game)
    socket = Socket(api_path(game.code, seats[0].token), fmt="json")
    state = await socket.connect()
    try:
        monkeypatch.setattr(realtime, "send", lambda update, **kw: None)  # lost on the way
        await db(services.game_advance_now)(game=await db(fresh)(game))
        monkeypatch.undo()
        monkeypatch.setattr(delivery, "GRACE_SECONDS", 0.4)
        settings.CHANNEL_LAYERS = redis_layers(redis_url)
        started = time.monotonic()
        await db(broadcast.flush_progress)(game.pk)
        beacon = await socket.next(timeout=5)
        assert time.monotonic() - started >= 0.35  # held for the grace period first
        player = Player(info_for(seats[0]))
        player.gap(state)
        assert beacon["type"] == "progress" and player.gap(beacon)
    finally:
        await socket.close()


# ------------------------------------------------------------------------------ one process


async def test_the_in_memory_layer_keeps_a_socket_whose_message_expired_in_its_groups():
    layer = InMemoryLayer(expiry=1, capacity=10)
    channel = await layer.new_channel()
    await layer.group_add("game-1", channel)
    await layer.send(channel, {"type": "old"})
    # The message expires while the socket is busy elsewhere (not reading its queue).
    layer.channels[channel]._queue[0] = (time.time() - 1, {"type": "old"})
    layer._cleaned = -float("inf")
    await layer.group_send("game-1", {"type": "next"})
    message = await asyncio.wait_for(layer.receive(channel), 1)
    assert message["type"] == "next"  # the expired one is gone, the socket still hears the room
    assert layer.dropped == 1


async def test_the_in_memory_layer_counts_what_a_full_channel_refuses():
    layer = InMemoryLayer(capacity=2)
    channel = await layer.new_channel()
    await layer.group_add("seat-1", channel)
    for n in range(3):
        await layer.group_send("seat-1", {"type": "game.send", "n": n})
    assert layer.dropped == 1
    assert [(await layer.receive(channel))["n"] for _ in range(2)] == [0, 1]


# ------------------------------------------------------------------------------ settings


def _settings_in_a_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import json, permitgame.settings as s; "
        "print(json.dumps([s.CHANNEL_LAYERS['default'], s.RATE_LIMITS, s.CHANNEL_CAPACITY]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=app_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_channel_sizes_and_rate_limits_are_read_from_the_environment():
    result = _settings_in_a_process(
        {
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "CHANNEL_CAPACITY": "5000",
            "DJANGO_CHANNEL_EXPIRY_SECONDS": "300",
            "DJANGO_RATE_LIMITS": "join=5000/60, code_miss=60/30",
        }
    )
    assert result.returncode == 0, result.stderr
    layer, limits, capacity = json.loads(result.stdout)
    # With Redis (pub/sub) the capacity is each socket's queue of events in its process.
    assert layer["BACKEND"] == REDIS_LAYER and capacity == 5000
    assert limits == {"join": [5000, 60], "code_miss": [60, 30]}
    default = _settings_in_a_process({"DJANGO_CHANNEL_EXPIRY_SECONDS": "300"})
    layer, limits, _ = json.loads(default.stdout)
    assert layer["BACKEND"] == "permitgame.layers.InMemoryLayer"
    assert layer["CONFIG"]["capacity"] == 1000 and layer["CONFIG"]["expiry"] == 300
    assert limits == {}


@pytest.mark.parametrize(
    "env",
    [
        {"DJANGO_RATE_LIMITS": "join=many/60"},
        {"DJANGO_RATE_LIMITS": "join=0/60"},
        {"CHANNEL_CAPACITY": "lots"},
        {"CHANNEL_EXPIRY_SECONDS": "0"},
    ],
)
def test_a_bad_setting_in_the_environment_is_refused_with_its_name(env):
    result = _settings_in_a_process(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    name = next(iter(env)).removeprefix("DJANGO_")
    assert name in result.stderr


# ------------------------------------------------------------------------------ progress


@pytest.mark.django_db
@pytest.mark.parametrize("labs", [10, 100])
def test_a_running_games_progress_is_counted_without_a_resolve_in_a_few_queries(
    monkeypatch, django_capture_on_commit_callbacks, labs
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from permitgame import selectors
    from tests.permitgame.test_hall import CountResolves

    game, seats = hall(labs=labs, humans=labs, online=True)
    # One of them on a page (its fragments are rendered only while a browser is there).
    services.seat_connect(seat=seats[-1], channel_name="page", html=True)
    services.game_start(game=game)
    sent: list[Any] = []
    monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append(update))

    def check(reads: int = 4) -> None:
        # The game, and the room's counts (a hall) or its seats, moves and sockets (a class,
        # whose seats and moves are not read again while a batch of moves carries them on).
        sent.clear()
        resolves = CountResolves(monkeypatch)
        with CaptureQueriesContext(connection) as queries:
            broadcast.flush_progress(game.pk)
        assert resolves.calls == 0
        limit = 2 if labs + 1 > broadcast.LIST_LIMIT else reads
        assert len(queries.captured_queries) <= limit, [q["sql"] for q in queries.captured_queries]
        (item,) = sent
        message = json.loads(item.json[0])
        public = selectors.game_screens(fresh(game)).public  # what the resolver says
        assert message["waiting"] == len(public.waiting_for) and message["seq"] == public.seq
        assert (message["joined"], message["connected"], message["seats"]) == (
            labs,
            labs,
            labs + 1,
        )
        if labs + 1 <= broadcast.LIST_LIMIT:
            assert message["waiting_for"] == list(public.waiting_for)
            assert message["players"] == broadcast.players_json(public)
            assert 'id="waiting"' in item.html and 'id="players"' in item.html
        else:
            assert "players" not in message and 'id="waiting"' in item.html
        monkeypatch.undo()
        monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append(update))

    # What each event's publish does (on_commit, which this test's transaction never runs).
    broadcast.note_owed(selectors.game_screens(fresh(game)).public)
    for seat in seats[: labs // 2]:
        services.round_submit_bid(seat=seat, round_no=1, amount=0.1)
    check()
    for seat in seats[labs // 2 :]:
        services.round_submit_bid(seat=seat, round_no=1, amount=0.2 if seat.pk % 2 else 0.0)
    game = fresh(game)
    assert game.phase == "compliance"  # the labs without a permit owe a choice
    broadcast.note_owed(selectors.game_screens(game).public)
    check()
    losers = [s for s in seats if selectors.game_screens(fresh(game)).labs[s.pk].owes_move]
    with django_capture_on_commit_callbacks(execute=True):  # the batch carries its rows on
        services.round_submit_choice(seat=losers[0], round_no=1, run=False)
    check(reads=2)
    # Nobody on a page: no fragments are rendered.
    services.seat_disconnect(channel_name="page")
    services.round_submit_choice(seat=losers[1], round_no=1, run=True)
    sent.clear()
    broadcast.flush_progress(game.pk)
    (item,) = sent
    assert 'id="waiting"' not in item.html and 'id="seq"' in item.html


@pytest.mark.django_db
def test_a_progress_waits_for_its_events_publish_and_resolves_only_if_it_never_comes(
    monkeypatch,
):
    """The event committed (``seq``) but its publish has not sent it yet (no note of who is
    owed): a progress carrying that seq would overtake it, so it is not sent yet."""
    from django.core.cache import cache

    from tests.permitgame.test_hall import CountResolves

    game, _ = hall(labs=6, humans=3)
    services.game_start(game=game)
    cache.clear()
    sent: list[Any] = []
    monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append(update))
    resolves = CountResolves(monkeypatch)
    broadcast._dirty.discard(game.pk)
    broadcast.flush_progress(game.pk, now=500.0)
    assert sent == [] and game.pk in broadcast._dirty  # tried again at the next beat
    broadcast.flush_progress(game.pk, now=505.0)
    assert sent == []
    broadcast.flush_progress(game.pk, now=500.0 + broadcast.OWED_WAIT_SECONDS)
    assert len(sent) == 1 and resolves.calls == 1
    broadcast.flush_progress(game.pk, now=502.0)
    assert len(sent) == 2 and resolves.calls == 1  # noted: counted from the rows again
    assert json.loads(sent[-1].json[0])["waiting"] == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("carried", [False, True], ids=["rows read", "rows carried on"])
def test_an_event_of_a_game_deleted_before_its_publish_is_not_sent(
    monkeypatch, caplog, django_capture_on_commit_callbacks, carried
):
    """An admin deleted the game between the event's commit and its publish: there is nobody
    left to tell, and nothing to log. So also when the publish builds the event from the rows
    its batch carried on, without reading the game (its sockets' leases went with it)."""
    game, seats = hall(labs=3, humans=3, online=carried)
    services.game_start(game=game)
    commands = [
        services.MoveCommand(seat_id=s.pk, action="bid", round_no=1, payload={"amount": 0.1})
        for s in seats
    ]
    later: list[Any] = []
    with django_capture_on_commit_callbacks(execute=True):
        services.round_submit_moves(game_id=game.pk, commands=commands, publish_later=later)
    assert later  # the bids ended the phase: its event waits to be published
    if not carried:  # as in a process that was not the one to record the bids
        bridge.forget_rows(game.pk)
    assert bridge.holds_rows(Game.objects.get(pk=game.pk)) is carried
    sent: list[Any] = []
    monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append(update))
    game.delete()
    with caplog.at_level("WARNING"):
        services.publish_deferred(later)
    assert sent == [] and caplog.records == []


# ------------------------------------------------------------------------------ the clock


@pytest.mark.django_db(transaction=True)
async def test_a_deadline_fires_on_time_while_the_progress_is_slow_to_send(monkeypatch):
    import datetime as dt

    from permitgame import ticker
    from permitgame.clock import now as clock_now
    from permitgame.models import Game

    game, _ = await db(hall)(labs=3, humans=1)
    await db(services.game_start)(game=game)
    stuck, release = threading.Event(), threading.Event()

    def stuck_progress(**kwargs: Any) -> int:  # a beat of a lecture hall's progress, held
        stuck.set()
        release.wait(10)
        return 0

    monkeypatch.setattr(broadcast, "flush_due", stuck_progress)
    loop = asyncio.ensure_future(ticker.run_forever(interval=0.05))
    try:
        for _ in range(40):  # the progress loop is in its held beat
            if stuck.is_set():
                break
            await asyncio.sleep(0.05)
        assert stuck.is_set()
        due = clock_now() + dt.timedelta(seconds=0.2)
        await db(lambda: Game.objects.filter(pk=game.pk).update(phase_deadline=due))()
        for _ in range(100):
            if (await db(fresh)(game)).phase != "bidding":
                break
            await asyncio.sleep(0.05)
        # The phase changed while the progress beat was still held: the deadline did not wait.
        assert (await db(fresh)(game)).phase != "bidding" and not release.is_set()
    finally:
        release.set()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


@pytest.mark.django_db(transaction=True)
async def test_the_clock_wakes_for_a_deadline_sooner_than_its_next_beat():
    import datetime as dt

    from permitgame import ticker
    from permitgame.clock import now as clock_now
    from permitgame.models import Game

    game, _ = await db(hall)(labs=3, humans=1)
    await db(services.game_start)(game=game)
    soon = clock_now() + dt.timedelta(seconds=0.8)
    await db(lambda: Game.objects.filter(pk=game.pk).update(phase_deadline=soon))()
    # One beat every 30 s: the first finds nothing due, and the deadline passes long before
    # the next unless the loop sleeps only until the soonest deadline.
    loop = asyncio.ensure_future(ticker.run_forever(interval=30.0))
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            current = await db(fresh)(game)
            if current.phase != "bidding":
                break
        assert current.phase != "bidding"
    finally:
        loop.cancel()
