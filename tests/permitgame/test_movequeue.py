"""Group commit of moves: the moves of a game that wait together are recorded together.

Not timed (bench/load measures the speed): these prove that moves arriving while the database
thread is busy go in as ONE transaction with ONE resolve, that each refused command of a batch
gets its own error while the others are stored, that a move is acknowledged only once it is
stored, that resends keep their meaning, and that the log's hash chain and the replay hold.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from permitgame import broadcast, movequeue, replay, services
from permitgame.errors import AlreadySubmitted, NotAllowed, StaleMove
from permitgame.models import Game, Move
from permitgame.services import MoveCommand, MoveResult
from sim_core import Phase
from tests.permitgame.test_hall import CountResolves, fresh, hall
from tests.permitgame.wire import Socket, api_path, at_once, db, html_path


def unbound(function: Any) -> Any:
    """Run a database function in a thread of its own (not the sockets' shared one)."""
    from channels.db import database_sync_to_async

    return database_sync_to_async(function, thread_sensitive=False)


class CountBatches:
    """Wraps ``services.round_submit_moves`` (what the queue calls), keeping each batch's size.

    ``started``: the calls begun (a batch counts its size when it takes its moves).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self.started = 0
        original = services.round_submit_moves

        def counted(*, game_id: int, commands: Any, **kwargs: Any) -> Any:
            self.started += 1
            if not callable(commands):
                self.sizes.append(len(commands))
                return original(game_id=game_id, commands=commands, **kwargs)

            def take(given: Any = commands) -> Any:
                taken = given()
                self.sizes.append(len(taken))
                return taken

            return original(game_id=game_id, commands=take, **kwargs)

        monkeypatch.setattr(services, "round_submit_moves", counted)


def bid(seat: Any, amount: float, round_no: int = 1) -> MoveCommand:
    return MoveCommand(seat_id=seat.pk, action="bid", round_no=round_no, payload={"amount": amount})


def stored_bids(game: Game) -> dict[int, float]:
    return {
        m.seat_id: m.payload["amount"]
        for m in Move.objects.filter(game=game, action="bid", actor="human")
    }


async def connect_all(game: Game, seats: list[Any]) -> list[Socket]:
    sockets = [Socket(api_path(game.code, seat.token), fmt="json") for seat in seats]
    for socket in sockets:
        await socket.connect()
        await socket.drain(quiet=0.05)
    return sockets


async def started(labs: int, humans: int) -> tuple[Game, list[Any]]:
    """A hall of ``labs`` labs, ``humans`` of them joined, started (round 1's bidding)."""
    game, seats = await db(hall)(labs=labs, humans=humans)
    await db(services.game_start)(game=game)
    return game, seats


async def held_thread() -> tuple[threading.Event, asyncio.Future[Any]]:
    """Hold the threads that record the moves until the event is set (a busy database)."""
    release = threading.Event()
    loop = asyncio.get_running_loop()
    held = asyncio.gather(
        *(
            loop.run_in_executor(movequeue.RECORDERS, release.wait)
            for _ in range(movequeue.RECORDERS._max_workers)
        )
    )
    await asyncio.sleep(0.05)
    return release, held


async def until_waiting(game: Game, count: int) -> None:
    for _ in range(200):
        if movequeue.waiting(game.pk) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{movequeue.waiting(game.pk)} moves queued, expected {count}")


async def reply_of(socket: Socket) -> Any:
    while True:
        message = await socket.next()
        if message["type"] in ("ack", "error"):
            return message


def hold_the_game(game: Game) -> tuple[threading.Event, threading.Thread]:
    """Another transaction holds the game's lock (another process's batch) until released."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                services._lock(game.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    return release, holder


# ------------------------------------------------------------------------------ the service


@pytest.mark.django_db
def test_a_batch_of_moves_is_one_resolve_and_the_queries_of_one_move(monkeypatch):
    game, seats = hall(labs=40, humans=30, online=True)
    services.game_start(game=game)
    with CaptureQueriesContext(connection) as one:
        services.round_submit_bid(seat=seats[0], round_no=1, amount=0.1)
    resolves = CountResolves(monkeypatch)
    with CaptureQueriesContext(connection) as many:
        outcomes = services.round_submit_moves(
            game_id=game.pk, commands=[bid(seat, 0.01 * i) for i, seat in enumerate(seats[1:20])]
        )
    assert all(isinstance(o, MoveResult) and not o.duplicate for o in outcomes)
    assert resolves.calls == 1
    # 19 moves cost what one move costs (the moves are one write).
    assert len(many.captured_queries) <= len(one.captured_queries)
    assert len(stored_bids(game)) == 20
    assert fresh(game).phase == Phase.BIDDING


@pytest.mark.django_db
def test_a_batch_that_ends_the_phase_resolves_once_and_moves_on(monkeypatch):
    game, seats = hall(labs=12, humans=6)
    services.game_start(game=game)
    resolves = CountResolves(monkeypatch)
    outcomes = services.round_submit_moves(
        game_id=game.pk, commands=[bid(seat, 0.1) for seat in seats]
    )
    assert all(isinstance(o, MoveResult) for o in outcomes)
    assert resolves.calls == 1  # the check of the six moves is the resolve that clears
    game = fresh(game)
    assert game.phase == Phase.COMPLIANCE
    assert Move.objects.filter(game=game, action="bid", round_no=1).count() == 12


@pytest.mark.django_db
def test_each_refused_command_of_a_batch_gets_its_own_error_the_others_go_in():
    game, seats = hall(labs=8, humans=6)
    services.game_start(game=game)
    version = fresh(game).version
    outcomes = services.round_submit_moves(
        game_id=game.pk,
        commands=[
            bid(seats[0], 0.1),
            bid(seats[1], 1e9),  # sim_core: more than the lab's wealth
            bid(seats[2], 0.2, round_no=2),  # not this round
            bid(seats[3], 0.3),
            MoveCommand(seat_id=seats[4].pk, action="audit", round_no=1, payload={"labs": []}),
            bid(seats[5], -1.0),  # sim_core again
        ],
    )
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == [
        "MoveResult",
        "NotAllowed",
        "StaleMove",
        "MoveResult",
        "WrongRole",
        "NotAllowed",
    ]
    assert isinstance(outcomes[1], NotAllowed) and "wealth" in outcomes[1].message.lower()
    assert stored_bids(game) == {seats[0].pk: 0.1, seats[3].pk: 0.3}
    assert fresh(game).version == version + 1  # one commit for the batch


@pytest.mark.django_db
def test_a_batch_of_refused_commands_changes_nothing():
    game, seats = hall(labs=4, humans=2)
    services.game_start(game=game)
    before = (Move.objects.filter(game=game).count(), fresh(game).version, fresh(game).log_head)
    outcomes = services.round_submit_moves(
        game_id=game.pk, commands=[bid(seats[0], 1e9), bid(seats[1], 0.1, round_no=3)]
    )
    assert [type(o) for o in outcomes] == [NotAllowed, StaleMove]
    game = fresh(game)
    assert (Move.objects.filter(game=game).count(), game.version, game.log_head) == before


@pytest.mark.django_db
def test_resends_in_a_batch_mean_what_they_meant_one_by_one():
    game, seats = hall(labs=6, humans=3)
    services.game_start(game=game)
    services.round_submit_bid(seat=seats[2], round_no=1, amount=0.3)
    outcomes = services.round_submit_moves(
        game_id=game.pk,
        commands=[
            bid(seats[0], 0.1),
            bid(seats[0], 0.1),  # the same move again: a duplicate
            bid(seats[1], 0.2),
            bid(seats[1], 0.25),  # another bid of the same seat: already submitted
            bid(seats[2], 0.3),  # a repeat of the logged move
            bid(seats[2], 0.35),  # another bid than the logged one
        ],
    )
    assert [(type(o).__name__, getattr(o, "duplicate", None)) for o in outcomes] == [
        ("MoveResult", False),
        ("MoveResult", True),
        ("MoveResult", False),
        ("AlreadySubmitted", None),
        ("MoveResult", True),
        ("AlreadySubmitted", None),
    ]
    assert stored_bids(game) == {seats[0].pk: 0.1, seats[1].pk: 0.2, seats[2].pk: 0.3}


@pytest.mark.django_db
def test_a_refused_bid_then_a_good_one_of_the_same_seat_in_one_batch_goes_in():
    game, seats = hall(labs=4, humans=2)
    services.game_start(game=game)
    outcomes = services.round_submit_moves(
        game_id=game.pk, commands=[bid(seats[0], 1e9), bid(seats[0], 0.1), bid(seats[1], 0.2)]
    )
    assert [type(o) for o in outcomes] == [NotAllowed, MoveResult, MoveResult]
    assert stored_bids(game) == {seats[0].pk: 0.1, seats[1].pk: 0.2}
    assert fresh(game).phase == Phase.COMPLIANCE


@pytest.mark.django_db
def test_the_hash_chain_holds_and_the_game_replays_after_batched_moves():
    game, seats = hall(labs=10, humans=8, rounds=2)
    services.game_start(game=game)
    for round_no in (1, 2):
        outcomes = services.round_submit_moves(
            game_id=game.pk,
            commands=[bid(seat, 0.05 * (i % 4), round_no) for i, seat in enumerate(seats)],
        )
        assert all(isinstance(o, MoveResult) for o in outcomes), outcomes
        game = fresh(game)
        decide = [
            MoveCommand(seat_id=s.pk, action="decide", round_no=round_no, payload={"run": True})
            for s in seats
        ]
        services.round_submit_moves(game_id=game.pk, commands=decide)  # holders: refused
        while fresh(game).round_no == round_no and fresh(game).status == "running":
            services.game_advance_now(game=fresh(game))
    game = fresh(game)
    assert game.status == "finished"
    chain = replay.verify_game_chain(game)
    assert chain.ok, chain.summary()
    report = replay.replay_game(game)
    assert report.ok, report


# ------------------------------------------------------------------------------ the sockets


@pytest.mark.django_db(transaction=True)
async def test_moves_sent_while_the_database_is_busy_go_in_as_one_batch(monkeypatch):
    game, seats = await started(labs=12, humans=9)
    sockets = await connect_all(game, seats[:8])  # one bid still owed: no phase change
    batches = CountBatches(monkeypatch)
    resolves = CountResolves(monkeypatch)
    release, held = await held_thread()
    try:
        for index, socket in enumerate(sockets):
            amount = 0.01 * index
            frame = {"type": "bid", "round": 1, "amount": amount}
            await socket.communicator.send_to(text_data=json.dumps(frame))
        await until_waiting(game, len(sockets))
        # Nothing is acknowledged while nothing is stored.
        assert await sockets[0].communicator.receive_nothing(timeout=0.2)
        assert await unbound(stored_bids)(game) == {}
        release.set()
        await held
        replies = [await reply_of(socket) for socket in sockets]
        assert [r["type"] for r in replies] == ["ack"] * len(sockets)
        assert [r["amount"] for r in replies] == [0.01 * i for i in range(len(sockets))]
        assert batches.sizes == [len(sockets)]  # one transaction
        assert resolves.calls == 1  # one resolve for the eight moves
        assert len(await unbound(stored_bids)(game)) == len(sockets)
    finally:
        release.set()
        for socket in sockets:
            await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_is_acknowledged_only_once_its_move_is_stored(monkeypatch):
    game, seats = await started(labs=4, humans=2)
    [socket] = await connect_all(game, seats[:1])
    seen_at_ack: list[dict[int, float]] = []
    original = movequeue._answer

    def answer(taken: Any, outcomes: Any) -> None:
        # Read from another connection (a thread of its own) right before the sockets are
        # answered: the move is committed by then.
        reader = threading.Thread(target=lambda: seen_at_ack.append(stored_bids(game)))
        reader.start()
        reader.join()
        original(taken, outcomes)

    monkeypatch.setattr(movequeue, "_answer", answer)
    try:
        reply = await socket.send({"type": "bid", "round": 1, "amount": 0.1})
        assert reply["type"] == "ack" and reply["duplicate"] is False
        assert seen_at_ack == [{seats[0].pk: 0.1}]
    finally:
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_bad_command_in_a_batch_gets_its_error_and_the_others_their_acks():
    game, seats = await started(labs=6, humans=4)
    sockets = await connect_all(game, seats)
    release, held = await held_thread()
    frames = [
        {"type": "bid", "round": 1, "amount": 0.1},
        {"type": "bid", "round": 1, "amount": 1e9},
        {"type": "decide", "round": 1, "run": True},
        {"type": "bid", "round": 1, "amount": 0.2},
    ]
    try:
        for socket, frame in zip(sockets, frames, strict=True):
            await socket.communicator.send_to(text_data=json.dumps(frame))
        await until_waiting(game, len(sockets))
        release.set()
        await held
        replies = [await reply_of(socket) for socket in sockets]
        assert [(r["type"], r.get("code")) for r in replies] == [
            ("ack", None),
            ("error", "not_allowed"),
            ("error", "stale"),
            ("ack", None),
        ]
        assert replies[1]["command"] == "bid" and replies[2]["command"] == "decide"
        bids = await unbound(stored_bids)(game)
        assert bids == {seats[0].pk: 0.1, seats[3].pk: 0.2}
        # The refused one may bid again, and is acknowledged.
        again = await sockets[1].send({"type": "bid", "round": 1, "amount": 0.05})
        assert again["type"] == "ack"
    finally:
        release.set()
        for socket in sockets:
            await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_move_resent_from_a_new_socket_is_a_duplicate_in_the_batch_and_after_it():
    # A socket answers its own commands in order, so a seat's commands meet in one batch only
    # from several sockets: a phone that reconnected and resent while the first socket's move
    # was still waiting, or two tabs.
    game, seats = await started(labs=6, humans=3)
    sockets = await connect_all(game, [seats[0]] * 3)
    release, held = await held_thread()
    try:
        frames = [
            {"type": "bid", "round": 1, "amount": 0.1},
            {"type": "bid", "round": 1, "amount": 0.1},
            {"type": "bid", "round": 1, "amount": 0.3},
        ]
        for socket, frame in zip(sockets, frames, strict=True):
            await socket.communicator.send_to(text_data=json.dumps(frame))
        await until_waiting(game, 3)
        release.set()
        await held
        replies = [await reply_of(socket) for socket in sockets]
        assert [(r["type"], r.get("duplicate"), r.get("code")) for r in replies] == [
            ("ack", False, None),
            ("ack", True, None),
            ("error", None, AlreadySubmitted.code),
        ]
        later = await sockets[2].send({"type": "bid", "round": 1, "amount": 0.1})
        assert later["type"] == "ack" and later["duplicate"] is True
        assert await unbound(stored_bids)(game) == {seats[0].pk: 0.1}
    finally:
        release.set()
        for socket in sockets:
            await socket.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("fmt", "first"), [("json", "published"), ("html", "answered 3")], ids=["programs", "pages"]
)
async def test_a_batch_that_ends_the_phase_publishes_its_event_first_unless_a_page_waits(
    monkeypatch, fmt, first
):
    """Programs' moves: the room's event is rendered before the event loop sends the batch's
    acks (the two would take turns at one interpreter). A page's move: its answer (its own card
    and flash) goes first, before the event renders every page's card. Every move is answered
    once, and the room hears the new phase either way."""
    game, seats = await started(labs=5, humans=3)
    path = api_path if fmt == "json" else html_path
    sockets = [Socket(path(game.code, seat.token), fmt=fmt) for seat in seats]
    for socket in sockets:
        await socket.connect()
        await socket.drain(quiet=0.05)
    order: list[str] = []
    publish, answer = broadcast.publish, movequeue._answer

    def published(**kwargs: Any) -> None:
        publish(**kwargs)
        order.append("published")

    def answered(taken: Any, outcomes: Any) -> None:
        order.append(f"answered {len(taken)}")
        answer(taken, outcomes)

    monkeypatch.setattr(broadcast, "publish", published)
    monkeypatch.setattr(movequeue, "_answer", answered)
    release, held = await held_thread()
    try:
        for socket in sockets:
            frame = {"type": "bid", "round": 1, "amount": 0.1, "HEADERS": {"HX-Request": "true"}}
            await socket.communicator.send_to(text_data=json.dumps(frame))
        await until_waiting(game, len(sockets))
        release.set()
        await held
        for socket in sockets:
            got = await socket.drain(quiet=0.3)
            if fmt == "json":
                assert [m["type"] for m in got].count("ack") == 1
                phases = [m["phase"] for m in got if m["type"] == "phase"]
                assert phases[-1:] == ["compliance"]
            else:
                assert sum('class="flash flash-ok"' in m for m in got) == 1
                assert any('data-round="1" data-phase="compliance"' in m for m in got)
        assert order[0] == first and sorted(order) == ["answered 3", "published"]
    finally:
        release.set()
        for socket in sockets:
            await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_move_is_recorded_while_the_shared_database_thread_is_busy():
    # The thread that the process's other socket and page calls share (a lecture hall's joins,
    # the snapshots) is held: a room already playing still has its moves recorded and acked.
    game, seats = await started(labs=4, humans=2)
    sockets = await connect_all(game, seats)
    release = threading.Event()
    shared = asyncio.ensure_future(db(release.wait)())
    try:
        await asyncio.sleep(0.05)
        await sockets[0].communicator.send_to(
            text_data=json.dumps({"type": "bid", "round": 1, "amount": 0.3})
        )
        reply = await asyncio.wait_for(reply_of(sockets[0]), timeout=10)
        assert reply["type"] == "ack" and not shared.done()
        assert await unbound(stored_bids)(game) == {seats[0].pk: 0.3}
    finally:
        release.set()
        await shared
        for socket in sockets:
            await socket.close()


@pytest.mark.django_db(transaction=True)
def test_batches_of_two_processes_at_once_are_ordered_by_the_games_lock():
    # Two Daphnes each record their own batch of the same game at the same moment: the game's
    # row lock orders the two transactions, both go in, and the log's chain holds.
    game, seats = hall(labs=12, humans=10)
    services.game_start(game=game)
    halves = [seats[:5], seats[5:]]
    results: list[Any] = [None, None]

    def record(index: int) -> None:
        results[index] = services.round_submit_moves(
            game_id=game.pk, commands=[bid(seat, 0.1) for seat in halves[index]]
        )

    at_once(record, 2, timeout=30)
    assert all(isinstance(o, MoveResult) for half in results for o in half)
    assert len(stored_bids(game)) == 10
    game = fresh(game)
    assert game.phase == Phase.COMPLIANCE  # the second batch ended the phase
    chain = replay.verify_game_chain(game)
    assert chain.ok, chain.summary()


@pytest.mark.django_db(transaction=True)
async def test_moves_that_arrive_while_the_batch_waits_for_the_games_lock_join_that_batch(
    monkeypatch,
):
    game, seats = await started(labs=10, humans=9)
    sockets = await connect_all(game, seats[:8])  # one bid still owed: no phase change
    batches = CountBatches(monkeypatch)
    release, holder = await unbound(hold_the_game)(game)
    try:
        first, *others = sockets
        frame = {"type": "bid", "round": 1, "amount": 0.0}
        await first.communicator.send_to(text_data=json.dumps(frame))
        for _ in range(200):  # the batch has begun: it waits for the lock
            if batches.started:
                break
            await asyncio.sleep(0.01)
        assert batches.started == 1 and batches.sizes == []
        for index, socket in enumerate(others, start=1):
            frame = {"type": "bid", "round": 1, "amount": 0.01 * index}
            await socket.communicator.send_to(text_data=json.dumps(frame))
        await until_waiting(game, len(sockets))  # none taken while the lock is held
        release.set()
        replies = [await reply_of(socket) for socket in sockets]
        assert [r["type"] for r in replies] == ["ack"] * len(sockets)
        assert batches.sizes == [len(sockets)]  # the first move's batch took them all
        assert len(await unbound(stored_bids)(game)) == len(sockets)
    finally:
        release.set()
        await asyncio.get_running_loop().run_in_executor(None, holder.join)
        for socket in sockets:
            await socket.close()
