"""A lecture hall joining one room (issue "Hall", the joins): each join and each first snapshot
costs the same whatever the room's size, and what they show stays right.

The speed itself is measured by the load benchmark (bench/load); these tests prove the
mechanisms: a join is a fixed number of indexed queries (no read of every seat), a lobby's room
is carried on across joins (the seats that joined since are read, not the whole room), a lab's
JSON snapshot of a big room carries counts, the nickname check stays exact for Unicode
casefolding, and joins racing each other never get one seat twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext

from permitgame import broadcast, clock, selectors, services, ticker
from permitgame.errors import GameFull, NicknameTaken
from permitgame.models import Game, Move, Seat, Status
from sim_core import load_preset
from tests.permitgame.wire import at_once


def room(labs: int, humans: int | None = None, **options: Any) -> Game:
    scenario = load_preset("targeted_audit")
    scenario = scenario.with_changes(
        labs=replace(scenario.labs, count=labs),
        market=replace(scenario.market, token_cap=max(1, labs // 3)),
    )
    return services.game_create(
        scenario=scenario, human_labs=labs if humans is None else humans, **options
    )


def fresh(game: Game) -> Game:
    return Game.objects.get(pk=game.pk)


@contextmanager
def seats_built() -> Iterator[list[int]]:
    """Count the Seat rows turned into objects inside the block (a read of the room shows)."""
    built: list[int] = []

    def counted(sender: Any, instance: Seat, **kwargs: Any) -> None:
        built.append(1)

    post_init.connect(counted, sender=Seat)
    try:
        yield built
    finally:
        post_init.disconnect(counted, sender=Seat)


def state(seat: Seat, fmt: str = "json") -> dict[str, Any]:
    _, [text] = broadcast.snapshot(Seat(pk=seat.pk, game_id=seat.game_id), fmt)
    return json.loads(text)


# ------------------------------------------------------------------------------ cost per join


def join_costs(labs: int) -> tuple[int, int, int, int]:
    """Queries and seats built by the 6th join of a room and by its first JSON snapshot."""
    game = room(labs)
    first = [services.seat_join(game=game, nickname=f"early {i}") for i in range(5)]
    state(first[0])  # the room is read once (a socket of the lobby connected)
    with CaptureQueriesContext(connection) as queries, seats_built() as built:
        seat = services.seat_join(game=game, nickname="sixth")
    join_queries, join_seats = len(queries.captured_queries), len(built)
    services.seat_connect(seat=seat, channel_name=f"test-{seat.pk}")
    socket = Seat(pk=seat.pk, game_id=seat.game_id)  # what a socket knows of its seat
    with CaptureQueriesContext(connection) as queries, seats_built() as built:
        _, [text] = broadcast.snapshot(socket, "json")
    assert json.loads(text)["you"]["nickname"] == "sixth"
    return join_queries, join_seats, len(queries.captured_queries), len(built)


@pytest.mark.django_db
def test_a_join_and_its_first_snapshot_cost_the_same_in_a_room_of_10_and_of_200():
    small = join_costs(10)
    big = join_costs(200)
    assert small == big, (small, big)
    join_queries, join_seats, snapshot_queries, snapshot_seats = big
    # The transaction, the lock, the nickname and rejoin codes taken (one query), the free human
    # seats (one), the seat, the log, the game.
    assert join_queries <= 8
    # The game, the joins since the room was read and their seats, its version, who is online.
    assert snapshot_queries <= 6
    # A join turns at most its own seat and the next free one (is the room full?) into objects;
    # the snapshot only the seat that joined.
    assert join_seats <= 2 and snapshot_seats <= 1


@pytest.mark.django_db
def test_a_join_takes_the_first_fresh_rejoin_code_no_seat_of_the_game_holds(monkeypatch):
    game = room(4)
    ana = services.seat_join(game=game, nickname="Ana")
    bo = services.seat_join(game=game, nickname="Bo")
    # The codes drawn for the next join: the first two are Ana's and Bo's.
    drawn = iter([ana.rejoin_code, bo.rejoin_code, "FRESH1", "LATER1"])
    monkeypatch.setattr(services, "_code", lambda length: next(drawn))
    cy = services.seat_join(game=game, nickname="Cy")
    assert cy.rejoin_code == "FRESH1"
    # All candidates held: more are drawn, one at a time, until one is free.
    drawn = iter([ana.rejoin_code, bo.rejoin_code, cy.rejoin_code, bo.rejoin_code, "FRESH2"])
    assert services.seat_join(game=game, nickname="Di").rejoin_code == "FRESH2"


@pytest.mark.django_db
@pytest.mark.parametrize("governor", [False, True])
def test_an_autostart_game_starts_at_the_join_that_takes_its_last_human_seat(governor):
    game = room(3, humans=2, autostart=True, human_governor=governor)
    services.seat_join(game=game, nickname="Ana")
    assert fresh(game).status == Status.LOBBY
    if governor:  # a human lab is still free after Bo asks for the governor's seat
        services.seat_join(game=game, nickname="Bo", role="governor")
        assert fresh(game).status == Status.LOBBY
    last = services.seat_join(game=game, nickname="Cy")
    assert last.game.status == Status.RUNNING == fresh(game).status


@pytest.mark.django_db
def test_joins_into_a_running_game_take_bot_seats_with_the_same_queries_whatever_the_room():
    costs = []
    for labs in (10, 200):
        game = room(labs, humans=1)
        services.seat_join(game=game, nickname="first")
        services.game_start(game=fresh(game))
        with CaptureQueriesContext(connection) as queries, seats_built() as built:
            seat = services.seat_join(game=fresh(game), nickname="late")
        assert seat.kind == Seat.Kind.HUMAN and seat.lab_index == 1
        costs.append((len(queries.captured_queries), len(built)))
    assert costs[0] == costs[1]


# ------------------------------------------------------------------------------ what is shown


@pytest.mark.django_db
def test_a_snapshot_after_joins_lists_the_players_who_joined():
    game = room(6, humans=6)
    ana = services.seat_join(game=game, nickname="Ana")
    before = state(ana)  # the room is kept from here and carried on across the joins
    assert [row["nickname"] for row in before["players"] if row["human"]] == ["Ana"]
    services.seat_join(game=game, nickname="Bo")
    cy = services.seat_join(game=game, nickname="Cy")
    services.seat_connect(seat=cy, channel_name=f"test-{cy.pk}")
    after = state(ana)
    humans = {row["player_id"]: row for row in after["players"] if row["human"]}
    assert [row["nickname"] for row in humans.values()] == ["Ana", "Bo", "Cy"]
    assert humans[cy.player_id]["connected"] is True
    assert humans[ana.player_id]["connected"] is False
    mine = state(cy)
    assert mine["you"]["nickname"] == "Cy" and mine["you"]["player_id"] == cy.player_id
    # The same as a room read from scratch.
    selectors._rooms.clear()
    selectors._ledgers.clear()
    assert state(ana)["players"] == after["players"]
    page = state_html(cy)
    assert "Bo" in page and "Cy" in page


def state_html(seat: Seat) -> str:
    _, [text] = broadcast.snapshot(Seat(pk=seat.pk, game_id=seat.game_id), "html")
    return text


@pytest.mark.django_db
def test_a_lab_of_a_big_room_gets_counts_and_the_governor_the_whole_list():
    labs = broadcast.LIST_LIMIT + 10
    game = room(labs, human_governor=True)
    governor = services.seat_join(game=game, nickname="Gov", role="governor")
    first = services.seat_join(game=game, nickname="lab one")
    state(first)
    state(governor)
    joined = [services.seat_join(game=game, nickname=f"lab {i}") for i in range(2, 6)]
    for seat in (first, joined[0]):
        services.seat_connect(seat=seat, channel_name=f"test-{seat.pk}")
    lab = state(joined[-1])
    assert lab["players"] is None
    assert lab["room"] == {"seats": labs + 1, "joined": 6, "connected": 2}
    assert lab["you"]["nickname"] == "lab 5"
    rows = state(governor)["players"]
    assert len(rows) == labs + 1
    assert [r["nickname"] for r in rows if r["human"]] == [
        "lab one", "lab 2", "lab 3", "lab 4", "lab 5", "Gov"
    ]  # fmt: skip
    assert sum(r["connected"] for r in rows) == 2


@pytest.mark.django_db
def test_a_big_rooms_counts_leave_out_people_when_the_bots_are_hidden():
    game = room(broadcast.LIST_LIMIT + 5, bot_disclosure="hidden")
    seat = services.seat_join(game=game, nickname="Ana")
    shown = state(seat)
    assert shown["players"] is None
    assert shown["room"] == {"seats": broadcast.LIST_LIMIT + 6, "joined": None, "connected": None}


@pytest.mark.django_db
def test_the_room_is_read_again_after_an_event_of_the_lobby():
    # A seat added by the instructor is an event: the room is read again, not carried on.
    game = room(4, humans=4)
    ana = services.seat_join(game=game, nickname="Ana")
    assert len(state(ana)["players"]) == 5
    services.game_add_bot(game=fresh(game))
    services.seat_join(game=game, nickname="Bo")
    players = state(ana)["players"]
    assert len(players) == 6
    assert [row["nickname"] for row in players if row["human"]] == ["Ana", "Bo"]


# ------------------------------------------------------------------------------ progress


def lobby_progress_sent(labs: int, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The room's progress messages while a join comes at each beat of the clock loop (2 s)."""
    game = room(labs)
    sent: list[Any] = []
    monkeypatch.setattr(broadcast.realtime, "send", lambda update, **kw: sent.append(update))
    broadcast._last_progress.clear()
    broadcast._dirty.clear()
    clock = 5000.0
    for index in range(20):
        services.seat_join(game=game, nickname=f"p{index}")
        broadcast.progress_changed(game.pk)  # what the join's commit does
        broadcast.flush_due(now=clock)
        clock += 0.1
    monkeypatch.undo()
    return [
        json.loads(item.json[0])
        for item in sent
        if item.group == broadcast.realtime.hub_group(game.pk)
    ]


@pytest.mark.django_db
def test_a_big_lobby_filling_up_hears_its_counts_once_a_second(monkeypatch):
    big = lobby_progress_sent(broadcast.LIST_LIMIT + 20, monkeypatch)
    small = lobby_progress_sent(30, monkeypatch)
    # Twenty joins in two seconds: a big lobby's progress once a second (the latest counts),
    # a small one's every PROGRESS_SECONDS with its list.
    assert len(big) == 2 and [m["joined"] for m in big] == [1, 11]
    assert all("players" not in m for m in big)
    assert len(small) == 7 and small[-1]["joined"] == 19 and "players" in small[-1]


# ------------------------------------------------------------------------------ nicknames


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("first", "second"),
    [("äbc", "ÄBC"), ("straße", "STRASSE"), ("Ana", "aNA"), ("ﬃ", "FFI")],
)
def test_a_nickname_taken_in_another_case_is_refused(first, second):
    assert first.casefold() == second.casefold()  # what "the same nickname" means
    game = room(4)
    services.seat_join(game=game, nickname=first)
    with pytest.raises(NicknameTaken):
        services.seat_join(game=game, nickname=second)
    with pytest.raises(NicknameTaken):  # resent with a key: still someone else's nickname
        services.seat_join(game=game, nickname=second, join_key="k" * 20)


@pytest.mark.django_db
def test_nicknames_that_only_look_alike_are_different_players():
    game = room(4)
    services.seat_join(game=game, nickname="abc")
    other = services.seat_join(game=game, nickname="abç")
    assert other.nickname == "abç"
    assert Seat.objects.filter(game=game, nickname_key__isnull=False).count() == 2


@pytest.mark.django_db
def test_a_resent_join_gets_its_seat_and_the_same_key_with_another_name_a_new_one():
    game = room(4)
    seat = services.seat_join(game=game, nickname="Ana", join_key="k" * 20)
    again = services.seat_join(game=game, nickname="Ana", join_key="k" * 20)
    assert again.pk == seat.pk and again.token == seat.token
    assert again.game.status == Status.LOBBY
    other = services.seat_join(game=game, nickname="Bo", join_key="k" * 20)
    assert other.pk != seat.pk


@pytest.mark.django_db
def test_the_last_seat_starts_an_autostart_game_and_the_join_says_so(client):
    game = room(2, humans=2, autostart=True)
    services.seat_join(game=game, nickname="Ana")
    response = client.post(
        f"/api/games/{game.code}/join", {"nickname": "Bo"}, content_type="application/json"
    )
    assert response.status_code == 201
    assert response.json()["status"] == Status.RUNNING == fresh(game).status
    with pytest.raises(GameFull):  # every lab is a person's, the governor a bot's
        services.seat_join(game=game, nickname="Cy")


# ------------------------------------------------------------------------------ concurrency


@pytest.mark.django_db(transaction=True)
def test_joins_racing_each_other_never_get_one_seat_twice():
    # Four processes' worth of joins at once (threads with their own connections; on the
    # PostgreSQL pass, real concurrent transactions queued on the game's row lock).
    labs = 24
    game = room(labs, humans=labs // 2)
    taken: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def join(index: int) -> None:
        try:
            for n in range(labs // 4):
                seat = services.seat_join(game=game, nickname=f"p{index}-{n}")
                with lock:
                    taken.append(seat.pk)
        except BaseException as error:
            failures.append(error)

    at_once(join, 4)
    assert not failures, failures
    assert len(taken) == len(set(taken)) == labs
    seats = list(Seat.objects.filter(game=game, token__isnull=False))
    assert len(seats) == labs and len({s.rejoin_code for s in seats}) == labs
    assert {s.lab_index for s in seats} == set(range(labs))
    with pytest.raises(GameFull):
        services.seat_join(game=game, nickname="one too many", role="lab")


# ------------------------------------------------------------------------------ the clocks


def due_rooms(count: int, frozen: Any) -> list[Game]:
    """Rooms of bots and one human each, their bidding deadlines just passed."""
    games = []
    for _ in range(count):
        game = room(4, humans=1, durations={"bidding": 30, "compliance": 30, "results": 5})
        services.seat_join(game=game, nickname="Ana")
        services.game_start(game=game)
        games.append(game)
    frozen.advance(31)
    return games


@pytest.mark.django_db(transaction=True)
def test_a_beat_changes_every_due_rooms_phase_before_it_sends_any_event(monkeypatch):
    # Rooms whose deadlines coincide all change phase first, then their events go out: the
    # last room does not wait behind the sending of the others (and the moves it sets off).
    seen: list[list[str]] = []

    def send(update: Any, **kwargs: Any) -> None:
        seen.append([fresh(game).phase for game in games])

    with clock.frozen() as frozen:
        games = due_rooms(4, frozen)
        monkeypatch.setattr(broadcast.realtime, "send", send)
        assert ticker.tick(heartbeat=False, progress=False) == len(games)
    assert len(seen) == len(games)  # one event a room, each sent after every room moved on
    assert all(phase != "bidding" for phases in seen for phase in phases), seen


@pytest.mark.django_db(transaction=True)
def test_a_beat_goes_through_the_due_rooms_in_an_order_of_its_own(monkeypatch):
    # When deadlines coincide no room is always served last, and the clocks of several
    # processes (each skipping a room another holds) start on different rooms.
    import random

    fired: list[int] = []
    expire = services.game_expire_phase

    def counted(*, game_id: int, **kwargs: Any) -> bool:
        fired.append(game_id)
        return expire(game_id=game_id, **kwargs)

    monkeypatch.setattr(services, "game_expire_phase", counted)
    with clock.frozen() as frozen:
        games = due_rooms(6, frozen)
        ids = sorted(game.pk for game in games)
        monkeypatch.setattr(ticker, "ORDER", random.Random(7))
        assert ticker.tick(heartbeat=False, progress=False) == 6
    expected = list(ids)
    random.Random(7).shuffle(expected)
    assert fired == expected and fired != ids


@pytest.mark.django_db(transaction=True)
def test_the_clocks_of_several_processes_fire_each_due_deadline_once():
    # Three processes' clocks at one beat over the same due games (threads with their own
    # connections; on the PostgreSQL pass each skips a game another is firing).
    with clock.frozen() as frozen:
        games = due_rooms(6, frozen)
        fired: list[bool] = []
        lock = threading.Lock()

        def beat(index: int) -> None:
            for game in games:
                done = services.game_expire_phase(game_id=game.pk)
                with lock:
                    fired.append(done)

        at_once(beat, 3)
    assert sum(fired) == len(games) and len(fired) == 3 * len(games)
    for game in games:  # the bidding ended once (its absent player's bot played on)
        assert fresh(game).phase != "bidding"
        assert Move.objects.filter(game=game, action="phase", phase="compliance").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_clock_skips_a_game_another_transaction_holds_and_fires_it_at_the_next_beat():
    if connection.vendor != "postgresql":
        pytest.skip("row locks: the PostgreSQL pass (SQLite locks the whole file)")
    with clock.frozen() as frozen:
        (game,) = due_rooms(1, frozen)
        holding, release = threading.Event(), threading.Event()

        def hold(index: int) -> None:  # another process firing it, or a batch of moves
            with transaction.atomic():
                Game.objects.select_for_update().get(pk=game.pk)
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=at_once, args=(hold, 1))
        holder.start()
        try:
            assert holding.wait(30)
            assert services.game_expire_phase(game_id=game.pk) is False  # not waited for
            assert fresh(game).phase == "bidding"
        finally:
            release.set()
            holder.join(30)
        assert services.game_expire_phase(game_id=game.pk) is True
    assert fresh(game).phase != "bidding"


# ------------------------------------------------------------------------------ the migration


def migrate_to_latest() -> None:
    """Bring the test database back to the latest migrations (a test that went back)."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_the_seats_of_existing_games_their_nickname_keys():
    from django.db.migrations.executor import MigrationExecutor

    game = room(4)
    joined = services.seat_join(game=game, nickname="Straße")
    before = [("permitgame", "0011_study2_bot_disclosure")]
    after = [("permitgame", "0012_halljoin_nickname_key")]
    MigrationExecutor(connection).migrate(before)  # a database from before the keys
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
        keys = dict(Seat.objects.filter(game=game).values_list("pk", "nickname_key"))
    finally:
        migrate_to_latest()
    assert keys.pop(joined.pk) == "strasse"
    assert set(keys.values()) == {None}  # the seats nobody joined yet
    with pytest.raises(NicknameTaken):
        services.seat_join(game=game, nickname="STRASSE")


@pytest.mark.django_db(transaction=True)
def test_writers_of_one_process_queue_for_sqlite_in_the_process_not_in_its_busy_sleeps():
    # Under many writers SQLite's own wait sleeps and retries (up to 100 ms a time; whoever
    # waited longest sleeps longest). permitgame.sqlite queues a process's writers on a lock of
    # its own: a second writer here waits for the first to commit even with SQLite's wait set
    # to nothing, where SQLite alone would refuse it at once ("database is locked").
    if connection.vendor != "sqlite":
        pytest.skip("the embedded SQLite's writers (PostgreSQL locks rows)")
    from django.db import connections

    from permitgame.sqlite.base import WRITER

    game = room(3)
    first_in, first_may_commit = threading.Event(), threading.Event()
    second: list[object] = []

    def first() -> None:
        with transaction.atomic():
            assert WRITER.locked()
            Game.objects.filter(pk=game.pk).update(title="first")
            first_in.set()
            first_may_commit.wait(10)
        connections.close_all()

    def then_second() -> None:
        first_in.wait(10)
        connection.connection or connection.connect()
        connection.connection.execute("PRAGMA busy_timeout = 0")  # no SQLite wait at all
        try:
            with transaction.atomic():
                second.append(Game.objects.get(pk=game.pk).title)
                Game.objects.filter(pk=game.pk).update(title="second")
        except Exception as error:  # what SQLite alone answers
            second.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=then_second)]
    for thread in threads:
        thread.start()
    first_in.wait(10)
    threads[1].join(0.3)  # the second writer is waiting, not refused
    assert threads[1].is_alive() and second == []
    first_may_commit.set()
    for thread in threads:
        thread.join(10)
    assert second == ["first"]  # it began once the first had committed, and saw its write
    assert fresh(game).title == "second" and not WRITER.locked()
    with pytest.raises(RuntimeError), transaction.atomic():  # a rollback lets go too
        raise RuntimeError("undone")
    assert not WRITER.locked()


def test_a_rooms_moves_and_the_clock_go_ahead_of_a_halls_joins_for_the_sqlite_writers_turn():
    # permitgame.sqlite's queue of writers: one transaction at a time; a thread marked ahead
    # (a batch of moves, the clock) is served before writers that were waiting longer (joins).
    from permitgame.sqlite.base import Writers

    writers = Writers()
    order: list[str] = []
    assert writers.acquire(first=False, timeout=1)  # a join's transaction holds the turn

    def take(name: str, first: bool) -> None:
        assert writers.acquire(first=first, timeout=10)
        order.append(name)
        writers.release()

    joins = [threading.Thread(target=take, args=(f"join {i}", False)) for i in range(3)]
    for thread in joins:
        thread.start()
    moves = threading.Thread(target=take, args=("moves", True))
    while writers._first_waiting == 0:  # the joins wait; then the moves come to wait too
        if not moves.is_alive() and not order:
            moves.start()
        threading.Event().wait(0.01)
    writers.release()
    for thread in [*joins, moves]:
        thread.join(10)
    assert order[0] == "moves" and sorted(order[1:]) == ["join 0", "join 1", "join 2"]
    assert not writers.locked()
    assert writers.acquire(first=False, timeout=1) and not writers.acquire(first=True, timeout=0.05)
